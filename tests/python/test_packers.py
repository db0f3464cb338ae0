"""Calls of scalar functions on the same-host channel take a precompiled packer
(client/python/ffibox/_packers.py): they must give exactly what the general way gives over
the stream, raise the same errors, and hand anything unusual in the answer (blocks the
library changed, a crash) to the general handling. A real ffiboxd and jailed worker.
"""
import ctypes

import pytest

import ffibox
from conftest import TEST_LIB
from ffibox import _packers
from ffibox import ctypes as ct
from ffibox._stubs import pb

# (function, argtypes, restype, arguments): each type class the packer takes, at its edges.
CASES = [
    ("add_int", [ct.c_int, ct.c_int], ct.c_int, (2**31 - 1, 1)),
    ("add_int", [ct.c_int, ct.c_int], ct.c_int, (2**40 + 5, -7)),
    ("add_uint", [ct.c_uint, ct.c_uint], ct.c_uint, (-1, 3)),
    ("add_long", [ct.c_long, ct.c_long], ct.c_long, (-2**63, -1)),
    ("add_ulong", [ct.c_ulong, ct.c_ulong], ct.c_ulong, (2**64 - 1, 2)),
    ("add_longlong", [ct.c_longlong, ct.c_longlong], ct.c_longlong, (-5, 2**62)),
    ("add_ulonglong", [ct.c_ulonglong, ct.c_ulonglong], ct.c_ulonglong, (2**63, 2**63 - 1)),
    ("add_uchar", [ct.c_ubyte, ct.c_ubyte], ct.c_ubyte, (300, 255)),
    ("neg_schar", [ct.c_byte], ct.c_byte, (-128,)),
    ("add_short", [ct.c_short, ct.c_short], ct.c_short, (-32768, -1)),
    ("add_ushort", [ct.c_ushort, ct.c_ushort], ct.c_ushort, (65535, 2)),
    ("neg_int8", [ct.c_int8], ct.c_int8, (127,)),
    ("neg_int64", [ct.c_int64], ct.c_int64, (-2**63 + 1,)),
    ("add_uint64", [ct.c_uint64, ct.c_uint64], ct.c_uint64, (2**64 - 1, 1)),
    ("twice_size", [ct.c_size_t], ct.c_size_t, (2**62,)),
    ("neg_ssize", [ct.c_ssize_t], ct.c_ssize_t, (0,)),
    ("is_even", [ct.c_int], ct.c_bool, (4,)),
    ("not_bool", [ct.c_bool], ct.c_bool, (True,)),
    ("mul_float", [ct.c_float, ct.c_float], ct.c_float, (1.1, 3)),
    ("mul_double", [ct.c_double, ct.c_double], ct.c_double, (-0.0, 7.25)),
    ("mul_double", [ct.c_double, ct.c_double], ct.c_double, (float("inf"), 2)),
    ("sum_mixed", [ct.c_int, ct.c_double, ct.c_long, ct.c_float, ct.c_ubyte], ct.c_double,
     (1, 2.5, -3, 0.25, 255)),
    ("counter_next", [], ct.c_int, ()),
    ("register_total", [ct.c_int], None, (0,)),  # void: None (NULL is a fine int*)
]


@pytest.fixture
def client(server):
    c = ffibox.connect(server.address)
    yield c
    c.close()


def results(client, same_host):
    with client.session(same_host=same_host) as session:
        lib = session.CDLL(TEST_LIB)
        packed = count_packed(session)
        got = []
        for name, argtypes, restype, args in CASES:
            function = getattr(lib, name)
            function.argtypes, function.restype = argtypes, restype
            value = function(*args)
            got.append((name, type(value).__name__, value))
        assert packed == ([True] * len(CASES) if same_host else [])
        return got


def count_packed(session):
    """The calls sent packed from now on: True for each answer read by its packer."""
    sent, send = [], session.stream.send_packed

    def counting(packed):
        answer = send(packed)
        sent.append(isinstance(answer, _packers.Done))
        return answer

    session.stream.send_packed = counting
    return sent


def test_every_scalar_type_gives_what_the_stream_gives(client):
    assert _packers.packable((ct.c_int, ct.c_double), ct.c_bool)
    assert not _packers.packable((ct.c_char_p,), ct.c_int)
    assert not _packers.packable((ct.c_int,), ct.c_void_p)
    assert results(client, True) == results(client, False)


class _NoTwins:
    """Twins of a session that has none: no integer is an address inside caller memory."""

    def twin_at(self, address):
        return None


def test_requests_are_what_protobuf_makes_of_them():
    # Each argument kind at its edges, and request ids whose varints take one to six bytes.
    packer = _packers.Packer(7, [ct.c_int, ct.c_double, ct.c_bool, ct.c_uint64, ct.c_float],
                             ct.c_int)
    for request_id in (1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**40):
        for ints, double, flag, unsigned in ((0, 0.5, True, 0), (-1, -2.0, False, 2**64 - 1),
                                             (63, 1e300, True, 127), (-65, 3, False, 128),
                                             (2**31 - 1, -0.0, True, 2**63)):
            packed = packer.pack((ints, double, flag, unsigned, 1.1), _NoTwins())
            expected = pb.Request(id=request_id, call=pb.Call(function=7, args=[
                pb.Value(int_value=ints), pb.Value(float_value=double),
                pb.Value(bool_value=flag), pb.Value(uint_value=unsigned),
                pb.Value(float_value=ctypes.c_float(1.1).value)]))
            assert packed.payload(request_id) == expected.SerializeToString(), (request_id, ints)


def test_the_stream_results_are_ctypes_results():
    # The reference above is itself checked against ctypes in this process.
    lib = ctypes.CDLL(TEST_LIB)
    expected = []
    for name, argtypes, restype, args in CASES[:-2]:
        function = getattr(lib, name)
        function.argtypes = [getattr(ctypes, t.__name__) for t in argtypes]
        function.restype = getattr(ctypes, restype.__name__)
        value = function(*args)
        expected.append((name, type(value).__name__, value))
    assert expected == [
        ("add_int", "int", -2**31), ("add_int", "int", -2), ("add_uint", "int", 2),
        ("add_long", "int", 2**63 - 1), ("add_ulong", "int", 1),
        ("add_longlong", "int", 2**62 - 5), ("add_ulonglong", "int", 2**64 - 1),
        ("add_uchar", "int", 43), ("neg_schar", "int", -128), ("add_short", "int", 32767),
        ("add_ushort", "int", 1), ("neg_int8", "int", -127), ("neg_int64", "int", 2**63 - 1),
        ("add_uint64", "int", 0), ("twice_size", "int", 2**63), ("neg_ssize", "int", 0),
        ("is_even", "bool", True), ("not_bool", "bool", False),
        ("mul_float", "float", ctypes.c_float(ctypes.c_float(1.1).value * 3).value),
        ("mul_double", "float", -0.0), ("mul_double", "float", float("inf")),
        ("sum_mixed", "float", 255.75)]


def test_arguments_the_packer_does_not_take_raise_what_ctypes_raises(client):
    with client.session(same_host=True) as session:
        add = session.CDLL(TEST_LIB).add_int
        add.argtypes, add.restype = [ct.c_int, ct.c_int], ct.c_int
        assert add(True, 2) == 3  # a bool is an int to ctypes: the general way
        assert add(1, 2, 3) == 3  # ctypes passes extra arguments after argtypes' too
        for bad in ((1.5, 2), ("1", 2), (1,), (None, 2)):
            with pytest.raises((ct.ArgumentError, TypeError)) as raised:
                add(*bad)
            with pytest.raises(type(raised.value)):
                stdlib = ctypes.CDLL(TEST_LIB).add_int
                stdlib.argtypes, stdlib.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                stdlib(*bad)
        assert session.stream.local_enabled


def test_a_library_writing_a_kept_int_in_a_scalar_call_is_seen(client):
    # add_to_total takes only an int: a packed call, whose answer then also carries the
    # caller's int the library changed (CallResult.changed).
    for same_host in (True, False):
        with client.session(same_host=same_host) as session:
            lib = session.CDLL(TEST_LIB)
            total = ct.c_int(10)
            lib.register_total(ct.byref(total))
            lib.add_to_total.argtypes = [ct.c_int]
            packed = count_packed(session)
            assert [lib.add_to_total(5), total.value] == [15, 15]
            assert [lib.add_to_total(-20), total.value] == [-5, -5]
            assert packed == ([False, False] if same_host else [])  # read in full
            assert session.stream.local_enabled == same_host


def test_a_crash_in_a_packed_call_is_worker_crashed_and_calls_go_on(client):
    with client.session(same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        lib.crash_div_zero.argtypes = [ct.c_int]
        with pytest.raises(ffibox.WorkerCrashed):
            lib.crash_div_zero(1)
        lib.add_int.argtypes = [ct.c_int, ct.c_int]
        assert [lib.add_int(i, i) for i in range(3)] == [0, 2, 4]
        assert session.stream.local_enabled
