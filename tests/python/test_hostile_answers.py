"""What a hostile library makes its call's answer say, or hands back through out-parameters,
is checked before the caller sees it: a forged result of the wrong kind or range is a typed
error, on the same-host channel and through ffiboxd alike, and strings and records handed
back are copied no further than the session's byte budget, records laid over one another
each counted."""
import os
import struct

import pytest

import ffibox
from ffibox import ctypes as ct
from ffibox._stubs import pb
from conftest import HOSTILE_LIB, TEST_LIB, PeakRss


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


def test_a_call_answered_past_any_honest_answer_ends_its_worker_before_the_caller_sees_it(
        shared_server):
    # 100 MiB of text for a char* result (16 MiB at most, in an answer of at most 72 MiB), of
    # a call and of a batch's call: ffiboxd ends the worker rather than relay it, and the
    # caller never holds it (it got the whole string before).
    client = ffibox.connect(shared_server.address)
    try:
        session = client.session(same_host=False)
        library = session.load_library(HOSTILE_LIB)
        forge = session.resolve(pb.ResolveFunction(
            library=library, symbol="hostile_answer_running_call_with_text",
            signature=pb.Signature(result=pb.Type(scalar=pb.CSTRING),
                                   params=[pb.Type(scalar=pb.LONG), pb.Type(scalar=pb.INT)])))
        for in_batch in (0, 1):
            call = pb.Call(function=forge, args=[pb.Value(int_value=100 << 20),
                                                 pb.Value(int_value=in_batch)])
            with PeakRss(os.getpid()) as rss:
                with pytest.raises(ffibox.Error) as raised:
                    session.batch([call]) if in_batch else session.call(call)
            assert raised.value.code == "WORKER_CRASHED", raised.value
            assert "bytes to a call whose answer takes at most" in str(raised.value), \
                raised.value
            assert rss.peak - rss.before < 50, "the caller grew by %.0f MiB" % (
                rss.peak - rss.before)
            assert session.CDLL(TEST_LIB).add_int(2, 3) == 5  # a new worker serves it
        session.close()
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


OVERLAP_DATA = 64 << 10


class Overlapping(ct.Structure):
    pass


Overlapping._fields_ = [("data", ct.c_char * OVERLAP_DATA), ("next", ct.POINTER(Overlapping))]


def overlapping_out(session, count: int):
    """A pointer handed back through an ordinary out-parameter (strtol's `endptr`, which
    names the string it was given when that holds no number) to the first of `count`
    records of 64 KiB laid in one buffer of the worker's, each 8 bytes after the one before
    and its `next` the one after it: 64 KiB and 8 bytes a record in the worker, `count`
    records of 64 KiB each to copy in the caller."""
    libc = session.CDLL("libc.so.6")
    libc.malloc.argtypes = [ct.c_size_t]
    libc.malloc.restype = ct.c_void_p
    base = libc.malloc(OVERLAP_DATA + 8 * count + 16)
    session.write(base, b"o" * OVERLAP_DATA + b"".join(
        struct.pack("<Q", base + 8 * (i + 1) if i + 1 < count else 0) for i in range(count)))
    strtol = libc.strtol
    strtol.argtypes = [ct.c_void_p, ct.POINTER(ct.POINTER(Overlapping)), ct.c_int]
    p = ct.POINTER(Overlapping)()
    strtol(base, ct.byref(p), 10)
    return p


def test_records_laid_over_one_buffer_arrive_whole_within_the_byte_budget(shared_server):
    client = ffibox.connect(shared_server.address)
    try:
        with client.session() as session:
            p = overlapping_out(session, 64)
            records = 0
            while p:
                record = p.contents
                # Record i starts 8 i bytes in: its data, the others' `next` fields after it.
                assert record.data[:OVERLAP_DATA - 8 * records] == \
                    b"o" * (OVERLAP_DATA - 8 * records)
                records += 1
                p = record.next
            assert records == 64
    finally:
        client.close()


def test_records_laid_over_one_buffer_each_count_against_the_byte_budget(shared_server):
    # 400 records over 90 KiB of the worker's: 25 MiB of copies (and their room), which the
    # caller made, and held, until records counted against the byte budget as strings did.
    client = ffibox.connect(shared_server.address)
    try:
        with client.session() as session:
            session.max_image_bytes = 4 << 20
            with PeakRss(os.getpid()) as rss:
                with pytest.raises(ffibox.Error) as raised:
                    overlapping_out(session, 400)
            assert raised.value.code == "RESOURCE_EXHAUSTED", raised.value
            assert "max_image_bytes" in str(raised.value)
            assert rss.peak - rss.before < 16, (rss.before, rss.peak)
            assert overlapping_out(session, 16).contents.data[:2] == b"oo"
    finally:
        client.close()
