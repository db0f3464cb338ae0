"""What a hostile library makes its call's answer say, or hands back through out-parameters,
is checked before the caller sees it: a forged result of the wrong kind or range is a typed
error, on the same-host channel and through ffiboxd alike, and strings handed back are read
no further than the session's byte budget."""
import pytest

import ffibox
from ffibox import ctypes as ct
from ffibox._stubs import pb
from conftest import HOSTILE_LIB


class Pair(ct.Structure):
    _fields_ = [("a", ct.c_long), ("b", ct.c_long)]


def value(**kind):
    return pb.Response(call=pb.CallResult(result=pb.Value(**kind))).SerializeToString()


# (restype, the forged result, what the error names)
FORGED = [
    (ct.c_int, value(raw=b"\x01"), "1 raw bytes where a c_int"),
    (ct.c_int, value(text_value="not an int"), "text_value where a c_int"),
    (ct.c_ubyte, value(uint_value=1000), "uint_value 1000 where a c_ubyte"),
    (ct.c_int, value(int_value=1 << 40), "int_value 1099511627776 where a c_int"),
    (ct.c_double, value(aggregate=pb.Aggregate()), "aggregate where a c_double"),
    (ct.c_char, value(float_value=1.5), "float_value where a c_char"),
    (Pair, value(int_value=3), "int_value where a Pair"),
    (ct.POINTER(ct.c_int), value(pointer=pb.PointerValue(block=pb.BlockRef(block=7))),
     "a pointer to block where a LP_c_int"),
    (ct.c_void_p, value(text_value="x"), "text_value where a c_void_p"),
]


def forged_call(client, same_host: bool, forged: bytes, restype):
    """What a call of restype `restype` gives when its library answers it with `forged`, on
    a session of its own (the same-host channel, or through ffiboxd)."""
    session = client.session(same_host=same_host)
    try:
        hostile = session.CDLL(HOSTILE_LIB)
        hostile.hostile_stash_answer.argtypes = [ct.c_char_p, ct.c_long]
        assert hostile.hostile_stash_answer(forged, len(forged)) == len(forged)
        forge = hostile.hostile_answer_running_call
        forge.argtypes = [ct.c_int]
        forge.restype = restype
        return forge(1 if same_host else 0)
    finally:
        session.close()


@pytest.mark.parametrize("same_host", [True, False], ids=["channel", "broker"])
def test_a_forged_result_of_the_wrong_kind_or_range_is_a_typed_error(shared_server, same_host):
    client = ffibox.connect(shared_server.address)
    try:
        for restype, forged, named in FORGED:
            with pytest.raises(ffibox.Error) as raised:
                forged_call(client, same_host, forged, restype)
            assert raised.value.code == "INTERNAL" and named in str(raised.value), \
                (restype, raised.value)
    finally:
        client.close()


def test_a_forged_result_of_the_right_kind_is_what_the_caller_gets(shared_server):
    # The check refuses only what does not fit: the same forge with a fitting value is taken
    # (the forge works, so the refusals above are the check's).
    client = ffibox.connect(shared_server.address)
    try:
        for same_host in (True, False):
            assert forged_call(client, same_host, value(uint_value=255), ct.c_ubyte) == 255
    finally:
        client.close()


def test_strings_handed_back_are_read_no_further_than_the_byte_budget(shared_server):
    # Eight distinct strings of about 256 KiB in one buffer of the library's: 2 MiB to copy.
    client = ffibox.connect(shared_server.address)
    try:
        session = client.session()
        strings = session.CDLL(HOSTILE_LIB).hostile_distinct_long_strings
        strings.argtypes = [ct.POINTER(ct.c_char_p), ct.c_int, ct.c_long]
        out = (ct.c_char_p * 8)()
        assert strings(out, 8, 256 << 10) == 0
        assert [len(s) for s in out] == [(256 << 10) - i for i in range(8)]
        assert set(b"".join(out)) == {ord("x")}
        session.max_image_bytes = 1 << 20
        out = (ct.c_char_p * 8)()
        with pytest.raises(ffibox.Error) as raised:
            strings(out, 8, 256 << 10)
        assert raised.value.code == "RESOURCE_EXHAUSTED", raised.value
        assert "max_image_bytes" in str(raised.value)
        session.close()
    finally:
        client.close()


def test_the_byte_budget_comes_from_the_environment(monkeypatch, shared_server):
    monkeypatch.setenv("FFIBOX_MAX_IMAGE_BYTES", "12345")
    client = ffibox.connect(shared_server.address)
    try:
        assert client.session().max_image_bytes == 12345
        monkeypatch.setenv("FFIBOX_MAX_IMAGE_BYTES", "lots")
        with pytest.raises(ValueError, match="FFIBOX_MAX_IMAGE_BYTES"):
            client.session()
    finally:
        client.close()
