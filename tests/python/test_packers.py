"""Calls on the same-host channel of scalar functions, and calls passing strings (new ones
kept by the worker, earlier ones released) and buffers that have twins, take a precompiled
packer (client/python/ffibox/_packers.py): they must
give exactly what the general way gives over the stream and the stdlib's ctypes gives, raise
the same errors, and hand anything unusual in the answer (blocks the library changed, a
crash) to the general handling. A real ffiboxd and jailed worker, and packers alone.
"""
import ctypes
import threading

import pytest

import ffibox
from conftest import TEST_LIB, Server, twinned_and_collected
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
    assert _packers.packable((ct.c_char_p, ct.POINTER(ct.c_int)), ct.c_void_p)
    assert _packers.packable((ct.c_int,), ct.c_char_p)
    assert not _packers.packable((ct.c_wchar_p,), ct.c_int)
    assert not _packers.packable((ct.c_int,), ct.c_wchar_p)
    assert results(client, True) == results(client, False)


def pointer_calls(c, load, session=None):
    """Calls that pass caller memory, made with ctypes module `c` and its `load` (CDLL), in
    two rounds (the first makes the twins a packer needs): what each gave and what the
    caller's memory holds after it, and for each round how many calls the packers of
    `session` read (None when it has no same-host channel)."""
    lib, libc = load(TEST_LIB), load("libc.so.6")
    lib.str_len.argtypes, lib.str_len.restype = [c.c_char_p], c.c_size_t
    lib.sum_bytes.argtypes, lib.sum_bytes.restype = [c.POINTER(c.c_ubyte), c.c_size_t], c.c_size_t
    lib.reverse_in_place.argtypes, lib.reverse_in_place.restype = [c.c_char_p, c.c_size_t], None
    lib.divmod.argtypes = [c.c_int, c.c_int, c.POINTER(c.c_int), c.POINTER(c.c_int)]
    lib.ptr_offset.argtypes, lib.ptr_offset.restype = [c.c_void_p, c.c_long], c.c_void_p
    libc.memmove.argtypes = [c.c_void_p, c.c_void_p, c.c_size_t]
    libc.memmove.restype = c.c_void_p
    libc.memset.argtypes = [c.c_void_p, c.c_int, c.c_size_t]
    libc.memset.restype = c.c_void_p
    text, numbers = b"hello, packer", (c.c_ubyte * 5)(1, 2, 3, 250, 255)
    word, quotient, remainder = c.create_string_buffer(b"abcdef"), (c.c_int * 1)(), \
        (c.c_int * 1)()
    doubles = (c.c_double * 3)(1.5, -2.0, 8.25)
    got, read = [], []
    for _ in range(2):
        packed = count_packed(session) if session is not None else []
        got.append(lib.str_len(text))
        got.append(lib.sum_bytes(numbers, 5))
        lib.reverse_in_place(word, 6)
        got.append(word.raw)
        got.append(lib.divmod(47, 5, quotient, remainder))
        got.append((quotient[0], remainder[0]))
        # A c_void_p result into caller memory is the caller's address, as with ctypes.
        got.append(lib.ptr_offset(doubles, 8) - c.addressof(doubles))
        got.append(libc.memset(doubles, 0x40, 8) == c.addressof(doubles))
        got.append(list(doubles))
        # One array twice: the second placement finds the twin busy (the general way).
        got.append(libc.memmove(word, word, 3) == c.addressof(word))
        got.append(lib.ptr_offset(None, 0))  # None: NULL
        end_round(session, packed, read)
    return got, read


def end_round(session, packed, read):
    """Ends a round of pointer_calls or byref_and_none_calls: notes in `read` how many of
    its calls `session`'s packers read (`packed`, count_packed's), None without a same-host
    channel, and stops counting."""
    if session is not None:
        read.append(packed.count(True) if session.stream.local_enabled else None)
        session.stream.send_packed = type(session.stream).send_packed.__get__(session.stream)


def in_every_way(client, calls, read_by_packers):
    """What `calls(c, load, session)` gives on a same-host session, which it gives on the
    stream and with the stdlib's ctypes too; its packers read `read_by_packers` calls of
    each round."""
    with client.session(same_host=True) as session:
        on_channel, read = calls(ct, session.CDLL, session)
    assert read == read_by_packers
    with client.session(same_host=False) as session:
        assert calls(ct, session.CDLL, session) == (on_channel, [None, None])
    assert calls(ctypes, ctypes.CDLL) == (on_channel, [])
    return on_channel


def test_calls_passing_memory_give_what_the_stream_and_ctypes_give(client):
    # In the first round packed calls ask the worker to keep each string and array (their
    # twins), in the second they place them at their twins; in both each call but the one
    # the general way takes (an array passed twice) is read by its packer.
    on_channel = in_every_way(client, pointer_calls, [7, 7])
    assert on_channel[:3] == [13, 511, b"fedcba\0"] and on_channel[10:13] == [13, 511,
                                                                             b"abcdef\0"]


def test_an_answer_with_changes_elsewhere_is_read_in_full(client):
    # fill_and_add writes the caller's buffer and an int the library kept from an earlier
    # call: the answer also carries that change (CallResult.changed), so it is parsed and
    # checked in full, and both writes reach the caller.
    with client.session(same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        total = ct.c_int(10)
        lib.register_total(ct.byref(total))
        lib.fill_and_add.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_int]
        buf = ct.create_string_buffer(8)
        assert lib.fill_and_add(buf, 3, 5) == 15  # the general way: buf gets its twin
        packed = count_packed(session)
        assert [lib.fill_and_add(buf, 6, 2), total.value, buf.raw] == [17, 17, b"x" * 6 + b"\0\0"]
        assert packed == [False]
        assert session.stream.local_enabled


class _NoTwins:
    """Twins of a session that has none: no integer is an address inside caller memory."""

    def twin_at(self, address):
        return None

    def handed(self, address):
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


def untyped_calls(c, load, session=None):
    """Calls of functions without argtypes, and of a POINTER(T) parameter given a T itself,
    made with ctypes module `c` and its `load`, in two rounds, as pointer_calls: what each
    gave (or raised) and the caller's memory after it, and how many calls the packers of
    `session` read in each round."""
    lib, libc = load(TEST_LIB), load("libc.so.6")
    libc.memset.restype = libc.malloc.restype = c.c_void_p
    libc.free.restype = None
    lib.str_len.restype = c.c_size_t

    class Raising:
        @property
        def _as_parameter_(self):
            raise ValueError("no parameter here")

    class Pair(c.Structure):
        _fields_ = [("a", c.c_int), ("b", c.c_int)]

    fill_pair = c.CFUNCTYPE(c.c_void_p, c.POINTER(Pair), c.c_int, c.c_size_t)(("memset", libc))
    buffer, pair = c.create_string_buffer(8), Pair(1, 2)
    got, read = [], []
    for round_number in range(2):
        packed = count_packed(session) if session is not None else []
        got.append(lib.add_int(2**31 - 1, 1))  # ints as C ints, as ctypes passes them
        got.append(lib.add_int(2**40 + 5, -7))
        got.append(lib.str_len(b"no argtypes"))
        got.append(libc.memset(buffer, 0x41 + round_number, 4) == c.addressof(buffer))
        got.append(buffer.raw)
        got.append(fill_pair(pair, 0x01, 4) == c.addressof(pair))  # a Pair for Pair*
        got.append((pair.a, pair.b))
        got.append(lib.add_int(c.c_int(3), 4))  # a c_int passes its value
        handle = libc.malloc(8)
        got.append(libc.free(c.c_void_p(handle)))  # a c_void_p passes its address
        for bad in ((1.5, 2), (2**64, 1), (Raising(), 1)):  # the general way raises ctypes'
            with pytest.raises(c.ArgumentError) as raised:
                lib.add_int(*bad)
            got.append(str(raised.value))
        end_round(session, packed, read)
    return got, read


def test_untyped_calls_and_a_record_for_its_pointer_are_packed_as_ctypes_passes_them(client):
    # Bindings that never set argtypes (pycryptodome's ctypes backend, mpsolve) and a
    # structure passed for its POINTER parameter took the general way on the same-host
    # channel: several times the cost of a packed call.
    on_channel = in_every_way(client, untyped_calls, [8, 8])
    assert on_channel[:9] == [-2**31, -2, 11, True, b"AAAA\0\0\0\0", True, (0x01010101, 2),
                              7, None]
    assert "convert parameter 1" in on_channel[9] and "int too long" in on_channel[10]
    assert on_channel[11] == "argument 1: ValueError: no parameter here"


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


class _Twin:
    def __init__(self, worker, generation):
        self.worker, self.generation, self.busy = worker, generation, 0


class _FakeTwins(_NoTwins):
    """Twins at made-up worker addresses, one per object, held as TwinTable holds them."""

    def __init__(self):
        self.twins, self.unheld = {}, []

    def hold(self, owner, size, generation):
        twin = self.twins.setdefault(id(owner), _Twin(0x7F0000001000 + 0x100 * len(self.twins),
                                                      generation))
        if twin.busy:
            return None
        twin.busy += 1
        return twin

    def unhold(self, twins):
        for twin in twins:
            twin.busy -= 1

    def has_releases(self):
        return False

    def begin_keep(self, owner):
        return False  # its twin is busy: hold gives every object one


def test_pointer_requests_are_what_protobuf_makes_of_them():
    packer = _packers.Packer(9, [ct.c_char_p, ct.c_int, ct.POINTER(ct.c_double), ct.c_void_p],
                             ct.c_void_p)
    text, doubles, buf = b"a string", (ct.c_double * 2)(0.5, -1.0), ct.create_string_buffer(300)
    for generation in (0, 1, 200):
        twins = _FakeTwins()
        packed = packer.pack((text, -3, doubles, buf), twins, generation)

        def block(data, direction, owner):
            twin = twins.twins[id(owner)]
            return pb.MemoryBlock(data=data, size=len(data), direction=direction, watch=True,
                                  at=pb.RemoteAddress(address=twin.worker,
                                                      generation=twin.generation))
        expected = pb.Request(id=5, call=pb.Call(function=9, args=[
            pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=0))),
            pb.Value(int_value=-3),
            pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=1))),
            pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=2)))], blocks=[
                block(text + b"\0", pb.INOUT, text), block(bytes(doubles), pb.INOUT, doubles),
                block(buf.raw, pb.INOUT, buf)]))
        expected.call.blocks[0].only_if_changed = True  # bytes: back when the library wrote
        assert packed.payload(5) == expected.SerializeToString()
        assert [t.busy for t in twins.twins.values()] == [1, 1, 1]
        packed.release()
        packed.release()
        assert [t.busy for t in twins.twins.values()] == [0, 0, 0]
    # What the general way ships: an element view, an array made from_buffer, a list, an
    # array of pointers, an array of another type, bytes for a c_double pointer,
    # an object passed twice (its twin is busy by then), an array or bytes too large to pack,
    # arrays too large together.
    twins = _FakeTwins()
    rows = ((ct.c_double * 2) * 2)()
    for args in ((text, 1, rows[1], buf),
                 (text, 1, (ct.c_double * 1).from_buffer(doubles, 8), buf),
                 (text, 1, doubles[1:], buf), (text, 1, doubles, (ct.c_void_p * 2)()),
                 (text, 1, (ct.c_float * 2)(), buf),
                 (text, 1, b"12345678", buf), (text, 1, doubles, doubles),
                 (text, 1, doubles, ct.create_string_buffer(64 << 10)),
                 (b"x" * (16 << 10), 1, doubles, buf),
                 (text, 1, doubles, ct.create_string_buffer(16 << 10))):
        assert packer.pack(args, twins, 1) is None
        assert all(not t.busy for t in twins.twins.values())
    grown = ct.create_string_buffer(32)  # an array ctypes.resize made larger than its type
    ctypes.resize(grown, 64 << 10)
    assert _packers.Packer(9, [ct.c_void_p], None).pack((grown,), _FakeTwins(), 1) is None
    alone = _packers.Packer(9, [ct.c_char_p], None)
    fits, too_large = b"x" * ((16 << 10) - 1), b"x" * (16 << 10)  # and their NUL
    assert alone.pack((fits,), _FakeTwins(), 1) is not None
    assert alone.pack((too_large,), _FakeTwins(), 1) is None


def test_a_handle_the_worker_handed_out_is_packed_as_its_address():
    # A c_void_p parameter given an integer (an opaque handle, as bindings hold them): the
    # packed call when the worker of this generation handed it out, as the general way
    # sends it; the general way for any other integer (the caller's own, one of an earlier
    # worker, one inside a twin, a callback's code address).
    packer = _packers.Packer(9, [ct.c_void_p, ct.c_int], None)
    handle = 0x5A5A00001230

    class Handed(_FakeTwins):
        def __init__(self, generation, inside=None):
            super().__init__()
            self._generation, self._inside = generation, inside

        def handed(self, address):
            return self._generation if address == handle else None

        def twin_at(self, address):
            return self._inside if address == handle else None

    for generation in (1, 300):
        packed = packer.pack((handle, 7), Handed(generation), generation)
        expected = pb.Request(id=2, call=pb.Call(function=9, args=[
            pb.Value(pointer=pb.PointerValue(remote=pb.RemoteAddress(
                address=handle, generation=generation))), pb.Value(int_value=7)]))
        assert packed.payload(2) == expected.SerializeToString()
    assert packer.pack((handle + 8, 7), Handed(1), 1) is None  # the caller's own number
    assert packer.pack((handle, 7), Handed(1), 2) is None  # an earlier worker's
    assert packer.pack((handle, 7), Handed(1, inside=("owner", "twin")), 1) is None
    callback = ct.CFUNCTYPE(None)(lambda: None)
    code = ct.cast(callback, ct.c_void_p).value
    assert packer.pack((code, 7), type("Code", (Handed,), {"handed": lambda s, a: 1})(1),
                       1) is None
    assert _packers.Packer(9, [ct.c_char_p], None).pack((handle,), Handed(1), 1) is None


def test_an_answer_read_in_full_writes_a_bytes_argument_back_as_its_bytes():
    # An answer of another shape (a changed run besides the blocks) is read in full and
    # copied back from there: a bytes argument's block raised TypeError after the call ran.
    packer = _packers.Packer(9, [ct.c_void_p, ct.c_char_p], ct.c_void_p)
    buf = (ct.c_char * 4)()
    text = bytes(bytearray(b"xy"))
    packed = packer.pack((buf, text), _FakeTwins(), 3)
    response = pb.Response(id=5, generation=3, call=pb.CallResult(blocks=[
        pb.BlockContents(block=0, data=b"wxyz"), pb.BlockContents(block=1, data=b"QR\0")]))
    packed._copy_back(packed._held, response)
    assert (buf.raw, text) == (b"wxyz", b"QR")


def test_a_packed_answer_is_read_only_in_its_one_shape():
    # The worker's answer to memmove(buf, text, n) with `buf` a 4-byte array: the result
    # (a worker address), then the array's bytes and the text's. Anything else is left to
    # the full reading, and the array is written only when the whole answer has been read.
    packer = _packers.Packer(9, [ct.c_void_p, ct.c_char_p], ct.c_void_p)
    twins, buf = _FakeTwins(), (ct.c_char * 4)()
    text = bytes(bytearray(b"xy"))  # an object of its own: the library's writes reach it
    packed = packer.pack((buf, text), twins, 3)
    held = packed._held
    head = b"\x08\x05"
    both = [pb.BlockContents(block=0, data=b"wxyz"), pb.BlockContents(block=1, data=b"xy\0")]

    def answer(result=None, blocks=None, extra=b""):
        response = pb.Response(id=5, generation=3, call=pb.CallResult(
            result=result or pb.Value(pointer=pb.PointerValue(remote=pb.RemoteAddress(
                address=0x7F0000001000, generation=3))),
            blocks=both if blocks is None else blocks))
        return response.SerializeToString() + extra

    done = packer.read(head, answer(), held)
    assert (done.value, buf.raw, text) == (0x7F0000001000, b"wxyz", b"xy")
    null = pb.Value(pointer=pb.PointerValue(null=True))
    buf.raw = b"...."
    assert packer.read(head, answer(result=null), held).value == 0 and buf.raw == b"wxyz"
    # The text comes back only when the library wrote it.
    assert packer.read(head, answer(blocks=both[:1]), held) and text == b"xy"
    written = [both[0], pb.BlockContents(block=1, data=b"QR\0")]
    assert packer.read(head, answer(blocks=written), held) and text == b"QR"
    for bad in (answer(blocks=[]), answer(blocks=[pb.BlockContents(block=0, data=b"wxy")]),
                answer(blocks=[pb.BlockContents(block=1, data=b"wxyz")]),
                answer(blocks=[pb.BlockContents(block=0, data=b"wxyz"),
                               pb.BlockContents(block=1, data=b"ab")]),
                answer(blocks=[pb.BlockContents(block=0, data=b"wxyz", pointers=[
                    pb.Relocation(offset=0)])]),
                answer(extra=b"\x20\x01"), answer()[:-1],
                answer(result=pb.Value(uint_value=5)),
                answer(result=pb.Value(pointer=pb.PointerValue(remote=pb.RemoteAddress()))),
                answer(result=pb.Value(pointer=pb.PointerValue(null=True, block=pb.BlockRef()))),
                pb.Response(id=5, generation=3, error=pb.Error(code=pb.INTERNAL)).
                SerializeToString(), b"\x08\x06" + answer()[2:]):
        buf.raw = b"...."
        assert packer.read(head, bad, held) is None, bad
        assert buf.raw == b"...."


def test_arrays_over_one_memory_go_the_general_way(client):
    # An array made from_buffer over another shares its memory, and so its twin: passed
    # with the array it overlays, the call ships one block for both (the general way), as the
    # library must see one memory (memmove between the two overlapping ranges).
    def run(c, load):
        libc = load("libc.so.6")
        libc.memmove.argtypes = [c.c_void_p, c.c_void_p, c.c_size_t]
        libc.memset.argtypes = [c.c_void_p, c.c_int, c.c_size_t]
        base = c.create_string_buffer(b"abcdefgh", 8)
        alias = (c.c_char * 6).from_buffer(base, 2)
        libc.memset(alias, ord("C"), 1)  # each gets its twin
        libc.memset(base, ord("a"), 1)
        libc.memmove(alias, base, 4)
        return base.raw

    with client.session(same_host=True) as session:
        packed = count_packed(session)
        assert run(ct, session.CDLL) == run(ctypes, ctypes.CDLL) == b"ababCdgh"
        # Packed: the memset of `base` (twinned by the alias's memset); not the alias's
        # calls (an array made from_buffer goes the general way).
        assert packed == [True]


def test_a_packed_call_for_another_worker_goes_the_general_way():
    class Channel:
        generation = 4

        def too_large_payload(self, size):
            return size > 100

    twins, buf = _FakeTwins(), ct.create_string_buffer(8)
    packer = _packers.Packer(9, [ct.c_void_p], None)
    assert not packer.pack((buf,), twins, 4).refused_by(Channel())
    twins = _FakeTwins()
    assert packer.pack((buf,), twins, 3).refused_by(Channel())  # twins of the worker before
    twins = _FakeTwins()
    assert packer.pack((ct.create_string_buffer(90),), twins, 4).refused_by(Channel())
    assert not _packers.Packer(9, [ct.c_int], None).pack((1,), twins).refused_by(Channel())
    # Releases alone, of the worker before: the general way too (sent to the session's).
    releasing = _KeepingTwins([pb.RemoteAddress(address=0x7F0000001000, generation=3)])
    assert _packers.Packer(9, [ct.c_int], None).pack((1,), releasing, 3,
                                                     releasing=True).refused_by(Channel())


def test_a_packed_call_whose_library_changed_megabytes_elsewhere_is_read_in_full(client):
    # A library that kept a 2 MiB buffer fills it during a scalar call: the answer reports
    # the change (CallResult.changed), larger than a scalar answer, and the channel reads it.
    with client.session(same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        buf = ct.create_string_buffer(2 << 20)
        lib.register_buffer.argtypes = [ct.c_void_p, ct.c_size_t]
        lib.register_buffer(buf, len(buf))
        lib.fill_registered.argtypes, lib.fill_registered.restype = [ct.c_int], ct.c_size_t
        packed = count_packed(session)
        assert lib.fill_registered(ord("A")) == 2 << 20
        assert buf.raw == b"A" * (2 << 20)
        assert packed == [False] and session.stream.local_enabled


def test_a_void_pointer_result_of_a_scalar_call_is_what_ctypes_gives(client):
    # NULL is None, and an address inside caller memory a call reached the caller's own.
    for same_host in (True, False):
        with client.session(same_host=same_host) as session:
            lib, libc = session.CDLL(TEST_LIB), session.CDLL("libc.so.6")
            libc.malloc.argtypes, libc.malloc.restype = [ct.c_size_t], ct.c_void_p
            buf = ct.create_string_buffer(16)
            lib.register_buffer.argtypes = [ct.c_void_p, ct.c_size_t]
            lib.register_buffer(buf, len(buf))
            lib.registered_buffer_address.argtypes = [ct.c_long]
            lib.registered_buffer_address.restype = ct.c_void_p
            packed = count_packed(session)
            assert libc.malloc(1 << 62) is None
            assert lib.registered_buffer_address(2) == ct.addressof(buf) + 2
            assert packed == ([True, True] if same_host else [])


def test_a_typed_view_made_from_buffer_passes_its_pointers(client):
    # strsep through a char* slot of a (c_char_p * 2) made on a plain buffer: the slot
    # points at the caller's string, and comes back pointing further into it.
    def run(c, load):
        libc = load("libc.so.6")
        libc.strsep.argtypes = [c.POINTER(c.c_char_p), c.c_char_p]
        libc.strsep.restype = c.c_char_p
        memory = (c.c_char * 16)()
        slots = (c.c_char_p * 2).from_buffer(memory)
        text = c.create_string_buffer(b"ab,cd")
        slots[0] = c.cast(text, c.c_char_p)
        return libc.strsep(slots, b","), slots[0]

    with client.session(same_host=True) as session:
        assert run(ct, session.CDLL) == run(ctypes, ctypes.CDLL) == (b"ab", b"cd")


def test_arrays_are_written_back_before_their_twins_are_free_again():
    # Another thread's call may take a twin as soon as it is free: by then the array holds
    # the answer's bytes, so that call never sends bytes older than this one's answer.
    class Twins(_FakeTwins):
        def unhold(self, twins):
            seen.append(buf.raw)
            super().unhold(twins)

    class Channel:
        generation = 3

        def transfer(self, payload, deadline, most, small=False):
            return pb.Response(id=5, generation=3, call=pb.CallResult(
                blocks=[pb.BlockContents(block=0, data=b"wxyz")])).SerializeToString()

    seen, buf = [], (ct.c_char * 4)()
    packed = _packers.Packer(9, [ct.c_void_p], None).pack((buf,), Twins(), 3)
    assert packed.exchange(Channel(), 5, 0.0).value is None
    assert seen == [b"wxyz"] and buf.raw == b"wxyz"


def test_threads_calling_with_buffers_of_their_own_get_their_own_results(client):
    # Packed calls from three threads at once, each passing its own buffer and string: no
    # error, every result and every buffer right, and each thread's calls packed once its
    # objects have twins.
    with client.session(same_host=True) as session:
        lib, libc = session.CDLL(TEST_LIB), session.CDLL("libc.so.6")
        lib.sum_bytes.argtypes = [ct.POINTER(ct.c_ubyte), ct.c_size_t]
        lib.sum_bytes.restype = ct.c_size_t
        lib.str_len.argtypes, lib.str_len.restype = [ct.c_char_p], ct.c_size_t
        libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
        libc.memset.restype = ct.c_void_p
        packed = count_packed(session)
        wrong = []

        def work(k):
            numbers, text = (ct.c_ubyte * 16)(*range(16)), b"thread %d" % k
            for i in range(300):
                got = (lib.sum_bytes(numbers, 16), lib.str_len(text),
                       libc.memset(numbers, k, 1) == ct.addressof(numbers), numbers[0])
                numbers[0] = 0
                if got != (120, len(text), True, k):
                    wrong.append((k, i, got))

        threads = [threading.Thread(target=work, args=(k,)) for k in (1, 2, 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert wrong == []
        assert packed.count(True) >= 3 * 3 * 290  # all but each thread's first calls
        assert session.stream.local_enabled


def test_a_string_result_is_what_the_stream_and_ctypes_give(client):
    # c_char_p results: the worker sends the string's bytes (or NULL), short and long (a
    # length of more than one varint byte), after scalar and string arguments.
    def run(c, load, session=None):
        lib, libc = load(TEST_LIB), load("libc.so.6")
        libc.strerror.argtypes, libc.strerror.restype = [c.c_int], c.c_char_p
        libc.getenv.argtypes, libc.getenv.restype = [c.c_char_p], c.c_char_p
        lib.greeting.argtypes, lib.greeting.restype = [], c.c_char_p
        lib.str_dup_upper.argtypes, lib.str_dup_upper.restype = [c.c_char_p], c.c_char_p
        lib.text_of_length.argtypes, lib.text_of_length.restype = [c.c_int], c.c_char_p
        long_text, missing = b"abc" * 100, b"FFIBOX_NO_SUCH_VARIABLE"
        got = []
        for _ in range(2):  # the second round with twins for the bytes
            packed = count_packed(session) if session is not None else []
            got.append((libc.strerror(2), libc.getenv(missing), lib.greeting(),
                        lib.str_dup_upper(long_text), lib.str_dup_upper(None),
                        lib.text_of_length(300), lib.text_of_length(-1)))
        return got, packed

    assert run(ctypes, ctypes.CDLL)[0] == [(b"No such file or directory", None,
                                            b"hello, ffibox", b"ABC" * 100, None, b"x" * 300,
                                            None)] * 2
    with client.session(same_host=True) as session:
        on_channel, packed = run(ct, session.CDLL, session)
    assert packed == [True] * 7  # None is NULL to a packer too
    with client.session(same_host=False) as session:
        assert run(ct, session.CDLL, session)[0] == on_channel == run(ctypes, ctypes.CDLL)[0]


def test_a_string_answer_is_read_only_in_its_one_shape():
    packer = _packers.Packer(9, [ct.c_int], ct.c_char_p)
    head = b"\x08\x05"

    def answer(result, extra=b""):
        return pb.Response(id=5, generation=3, call=pb.CallResult(
            result=result)).SerializeToString() + extra

    for text in (b"", b"short", b"y" * 200, b"z" * 20000):
        assert packer.read(head, answer(pb.Value(bytes_value=text))).value == text
    assert packer.read(head, answer(pb.Value(pointer=pb.PointerValue(null=True)))).value is None
    for bad in (answer(pb.Value(bytes_value=b"abc"))[:-1],
                answer(pb.Value(bytes_value=b"abc"), b"\x20\x01"),
                answer(pb.Value(text_value="abc")), answer(pb.Value(uint_value=3)),
                answer(pb.Value(pointer=pb.PointerValue(remote=pb.RemoteAddress(address=8)))),
                pb.Response(id=5, generation=3, call=pb.CallResult()).SerializeToString()):
        assert packer.read(head, bad) is None, bad


class _KeepingTwins(_FakeTwins):
    """_FakeTwins for whom bytes and the objects of `new` have no twin yet: a packed call
    asks the worker to keep them and releases `releasable`, as TwinTable does."""

    def __init__(self, releasable=(), new=()):
        super().__init__()
        self.keeping, self.recorded, self.requeued = set(), [], []
        self.releasable = list(releasable)
        self.new = {id(owner) for owner in new}

    def hold(self, owner, size, generation):
        if type(owner) is bytes or id(owner) in self.new:
            return None
        return super().hold(owner, size, generation)

    def has_releases(self):
        return bool(self.releasable)

    def begin_keep(self, owner):
        if id(owner) in self.keeping:
            return False
        self.keeping.add(id(owner))
        return True

    def keeps_done(self, owners):
        for owner in owners:
            self.keeping.discard(id(owner))

    def take_releases(self, generation, limit):
        released, self.releasable = self.releasable[:limit], self.releasable[limit:]
        return released

    def requeue(self, released):
        self.requeued.extend(released)

    def kept(self, owner, size, worker, generation):
        self.recorded.append((owner, size, worker, generation))


def test_a_string_or_array_without_a_twin_is_kept_and_earlier_ones_released():
    # An object's first call asks the worker to keep it (MemoryBlock.keep, watched, as the
    # general way ships it) and releases the twins of objects nothing else holds any more
    # (Call.release); the request is what protobuf makes of it.
    packer = _packers.Packer(9, [ct.c_char_p, ct.c_void_p, ct.c_char_p, ct.POINTER(ct.c_int)],
                             ct.c_size_t)
    first, second, buf = b"first", b"second" * 30, ct.create_string_buffer(4)
    ints = (ct.c_int * 3)(7, -1, 2**31 - 1)
    releasable = [pb.RemoteAddress(address=0x7F00000A0000, generation=3),
                  pb.RemoteAddress(address=2**63 + 8, generation=3)]
    twins = _KeepingTwins(releasable, new=[ints])
    packed = packer.pack((first, buf, second, ints), twins, 3)
    at = pb.RemoteAddress(address=twins.twins[id(buf)].worker, generation=3)
    expected = pb.Request(id=300, call=pb.Call(function=9, args=[
        pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=index)))
        for index in range(4)], blocks=[
            pb.MemoryBlock(data=first + b"\0", size=6, direction=pb.INOUT, keep=True,
                           watch=True, only_if_changed=True),
            pb.MemoryBlock(data=bytes(4), size=4, direction=pb.INOUT, at=at, watch=True),
            pb.MemoryBlock(data=second + b"\0", size=181, direction=pb.INOUT, keep=True,
                           watch=True, only_if_changed=True),
            pb.MemoryBlock(data=bytes(ints), size=12, direction=pb.INOUT, keep=True,
                           watch=True)], release=releasable))
    assert packed.payload(300) == expected.SerializeToString()
    assert twins.keeping == {id(first), id(second), id(ints)}
    # The three are being kept: another call with one of them goes the general way.
    assert packer.pack((b"other", buf, second, ints), twins, 3) is None
    assert twins.keeping == {id(first), id(second), id(ints)} and twins.requeued == []
    packed.requeue_releases()  # the general way releases them instead
    packed.release()
    assert twins.requeued == releasable and twins.keeping == set()
    assert twins.twins[id(buf)].busy == 0
    # A call with twins alone releases what collected objects left (TwinTable.has_releases).
    assert pb.Request.FromString(_packers.Packer(9, [ct.c_void_p], None).pack(
        (buf,), _KeepingTwins(releasable), 3).payload(1)).call.release == pb.Call(
            release=releasable).release


def test_a_kept_string_answer_is_read_only_in_its_one_shape():
    # The answer to f(buf, text) with `buf` a 4-byte array and `text` a string to keep: the
    # result, the array's bytes, then where the worker kept the string; anything else is
    # left to the full reading, and nothing is written or recorded until all was read.
    packer = _packers.Packer(9, [ct.c_void_p, ct.c_char_p], ct.c_int)
    text = b"kept text"
    head = b"\x08\x05"

    def answer(kept=None, extra=b"", generation=3):
        if kept is None:
            kept = [pb.KeptBlock(block=1, address=pb.RemoteAddress(address=0x7F0000002000,
                                                                   generation=generation))]
        return pb.Response(id=5, generation=3, call=pb.CallResult(
            result=pb.Value(int_value=-4), blocks=[pb.BlockContents(block=0, data=b"wxyz"),
                                                   pb.BlockContents(block=1,
                                                                    data=text + b"\0")],
            kept=kept)).SerializeToString() + extra

    def read(data):
        twins, buf = _KeepingTwins(), (ct.c_char * 4)()
        packed = packer.pack((buf, text), twins, 3)
        kept = []
        done = packer.read(head, data, packed._held, 3, kept)
        return done, buf.raw, kept

    done, raw, kept = read(answer())
    assert (done.value, raw, kept) == (-4, b"wxyz", [(text, len(text) + 1, 0x7F0000002000)])
    remote = answer()[-12:]  # the KeptBlock's address field: tag, length, address, generation
    assert remote[:3] == b"\x12\x0a\x08"
    for bad in (answer(kept=[]), answer(generation=2), answer(generation=0),
                answer(kept=[pb.KeptBlock(block=0, address=pb.RemoteAddress(
                    address=0x7F0000002000, generation=3))]),
                answer(kept=[pb.KeptBlock(block=1, address=pb.RemoteAddress(generation=3))]),
                answer(kept=[pb.KeptBlock(block=1, address=pb.RemoteAddress(
                    address=0x7F0000002000, generation=3))] * 2),
                answer(extra=b"\x20\x01"), answer()[:-1],
                # The address's length in two bytes: protobuf reads it, this reader
                # takes one-byte lengths only there.
                answer()[:-12] + b"\x12\x8a\x00" + remote[2:]):
        assert read(bad) == (None, b"\0" * 4, []), bad


def test_a_kept_string_in_an_answer_read_in_full_is_recorded():
    # An answer of another shape (a change the library made elsewhere) is parsed and checked
    # in full: the array is written back and the string's twin recorded from it too, for
    # the channel's worker whatever generation the worker names.
    from ffibox._local_channel import LocalChannel

    class Channel:
        generation = 3

        def transfer(self, payload, deadline, limit, small=False):
            return pb.Response(id=5, generation=3, call=pb.CallResult(
                result=pb.Value(int_value=1), blocks=[pb.BlockContents(block=0, data=b"wxyz")],
                kept=[pb.KeptBlock(block=1, address=pb.RemoteAddress(address=0x7F0000002000,
                                                                     generation=99))],
                changed=[pb.ChangedBlock(address=pb.RemoteAddress(address=0x7F0000009000,
                                                                  generation=3),
                                         data=b"12345678")])).SerializeToString()

        def checked_answer(self, request, answer):
            return LocalChannel.checked_answer(self, request, answer)

    twins, buf, text = _KeepingTwins(), (ct.c_char * 4)(), b"kept text"
    packed = _packers.Packer(9, [ct.c_void_p, ct.c_char_p], ct.c_int).pack((buf, text), twins, 3)
    response = packed.exchange(Channel(), 5, 0.0)
    assert isinstance(response, pb.Response) and len(response.call.changed) == 1
    assert buf.raw == b"wxyz" and twins.recorded == [(text, 10, 0x7F0000002000, 3)]
    assert twins.keeping == set() and twins.twins[id(buf)].busy == 0


def record_keeps(session):
    """(the packed calls sent from now on, the worker addresses of the twins recorded)."""
    requests, kept, record = [], [], session.twins.kept
    send = session.stream.send_packed

    def recording(packed):
        requests.append(pb.Request.FromString(packed.payload(1)).call)
        return send(packed)

    def kept_at(owner, size, worker, generation):
        kept.append(worker)
        record(owner, size, worker, generation)

    session.stream.send_packed, session.twins.kept = recording, kept_at
    return requests, kept


def test_a_new_string_each_call_is_packed_and_released(client):
    # f(name.encode()): each call is read by its packer, asks the worker to keep its string
    # (as the general way does), and releases the string of the call before, which only
    # ffibox held any more: the session's twins do not pile up.
    with client.session(same_host=True) as session:
        libc = session.CDLL("libc.so.6")
        libc.strlen.argtypes, libc.strlen.restype = [ct.c_char_p], ct.c_size_t
        libc.strlen(b"first")  # the channel is open
        requests, kept = record_keeps(session)
        packed = count_packed(session)
        names = ["name number %d" % number for number in range(200)]
        assert [libc.strlen(name.encode()) for name in names] == [len(n) for n in names]
        assert packed == [True] * 200
        assert all(call.blocks[0].keep for call in requests) and len(kept) == 200
        # Each call releases the string of the one before (the first, the warm-up call's),
        # which the worker frees before it keeps the new one (often at the same address).
        assert [[address.address for address in call.release] for call in requests[1:]] == \
            [[address] for address in kept[:-1]]
        assert len(session.twins._by_owner) <= 2


def test_a_kept_string_is_where_the_library_keeps_it(client):
    # A library that keeps the pointer to a string the caller holds: a later call's c_void_p
    # result into it is the caller's own string, as with ctypes, and the string passed again
    # is placed at its twin; once the caller lets it go, a later call releases it.
    def run(c, load, session=None):
        lib = load(TEST_LIB)
        lib.register_buffer.argtypes = [c.c_char_p, c.c_size_t]
        lib.registered_buffer_address.argtypes = [c.c_long]
        lib.registered_buffer_address.restype = c.c_void_p
        lib.str_len.argtypes, lib.str_len.restype = [c.c_char_p], c.c_size_t
        name = ("kept name %d" % 7).encode()
        start = ctypes.cast(ctypes.c_char_p(name), ctypes.c_void_p).value
        packed = count_packed(session) if session is not None else []
        lib.register_buffer(name, len(name))
        got = [lib.registered_buffer_address(3) - start, lib.str_len(name)]
        return got, packed

    with client.session(same_host=True) as session:
        got, packed = run(ct, session.CDLL, session)
        assert packed == [True, True, True]
        assert len(session.twins._by_owner) == 1
        session.CDLL(TEST_LIB).str_len.argtypes = [ct.c_char_p]
        session.CDLL(TEST_LIB).str_len(b"another".decode().encode())
        assert len(session.twins._by_owner) == 1  # the first string's twin released
    assert got == run(ctypes, ctypes.CDLL)[0] == [3, 11]


def test_releases_of_a_call_the_worker_refused_are_freed_and_not_sent_again():
    # A worker frees a call's releases before it checks the call: a call it refuses (here:
    # more block bytes than the server allows) releases the first string all the same, and
    # the client does not send them again (a later keep may have been given the address).
    server = Server("--max_block_bytes=1000")
    try:
        c = ffibox.connect(server.address)
        with c.session(same_host=True) as session:
            lib = session.CDLL(TEST_LIB)
            lib.str_len.argtypes, lib.str_len.restype = [ct.c_char_p], ct.c_size_t
            first = ("first %d" % 1).encode()
            assert lib.str_len(first) == 7
            twin = session.twins._by_owner[id(first)]
            address = pb.RemoteAddress(address=twin.worker, generation=twin.generation)
            del first, twin  # only its twin holds it: the next call that keeps releases it
            requests, _ = record_keeps(session)
            with pytest.raises(ffibox.Error) as refused:
                lib.str_len(("too long %d" % 2).encode() * 200)
            assert refused.value.code == "RESOURCE_EXHAUSTED"
            # Of another size than the first: the worker keeps it elsewhere.
            assert lib.str_len(("next %d" % 3).encode() * 80) == 480
            assert [len(call.release) for call in requests] == [1, 0]
            with pytest.raises(ffibox.Error) as freed:  # the worker keeps it no more
                session.stream.request(free_memory=pb.FreeMemory(address=address))
            assert freed.value.code == "NOT_FOUND"
        c.close()
    finally:
        server.stop()


def test_a_failed_call_never_frees_what_later_calls_keep(client):
    # 1100 collected buffers leave more releases than one call sends (1024); a call that
    # fails after the worker freed the first 1024 (its c_char_p result points nowhere) does
    # not send them again: buffers a later call keeps, which the worker puts at addresses
    # freed then (the only free blocks of their size: the seven small ones), stay theirs.
    with client.session(same_host=True) as session:
        libc, lib = session.CDLL("libc.so.6"), session.CDLL(TEST_LIB)
        libc.memset.argtypes, libc.memset.restype = [ct.c_void_p, ct.c_int, ct.c_size_t], \
            ct.c_void_p
        lib.ptr_offset.argtypes, lib.ptr_offset.restype = [ct.c_char_p, ct.c_long], ct.c_char_p
        # sum_ints given ten pointers: one call that keeps ten buffers.
        lib.sum_ints.argtypes = [ct.c_void_p] * 10
        # Collected last first: the failing call releases the small ones among its 1024.
        buffers = [ct.create_string_buffer(size) for size in [200] * 76 + [48] * 7 +
                   [200] * 1017]
        for buffer in buffers:
            libc.memset(buffer, 1, 1)
        del buffers, buffer
        with pytest.raises(ffibox.Error) as failed:
            lib.ptr_offset(b"q" * 600 + b"%d" % 1, 1 << 46)
        assert failed.value.code == "MEMORY_FAULT"
        kept = [ct.create_string_buffer(48) for _ in range(10)]
        lib.sum_ints(*kept)  # kept by the worker, some where small buffers were
        libc.memset(ct.create_string_buffer(300), 3, 1)  # the releases still waiting
        for number, buffer in enumerate(kept):
            libc.memset(buffer, 65 + number, 4)
        assert [buffer.raw[:5] for buffer in kept] == [
            bytes([65 + number]) * 4 + b"\0" for number in range(10)]
        assert session.stream.local_enabled


def test_a_new_buffer_each_call_is_packed_and_released(client):
    # buf = create_string_buffer(n); f(buf): each call is read by its packer, asks the
    # worker to keep the new buffer and copies it back, and releases the buffer of the call
    # before, which was collected meanwhile (its id is often the new one's): the session's
    # twins do not pile up, and the results are ctypes'.
    def run(c, libc, rounds):
        libc.memset.argtypes = [c.c_void_p, c.c_int, c.c_size_t]
        libc.memset.restype = c.c_void_p
        got = []
        for number in range(rounds):
            buf = c.create_string_buffer(16)
            same = libc.memset(buf, 65 + number % 26, 1 + number % 16) == c.addressof(buf)
            got.append((same, buf.raw))
        return got

    with client.session(same_host=True) as session:
        libc = session.CDLL("libc.so.6")
        run(ct, libc, 1)  # the channel is open
        requests, kept = record_keeps(session)
        packed = count_packed(session)
        got = run(ct, libc, 100)
        assert packed == [True] * 100 and len(kept) == 100
        assert all(call.blocks[0].keep for call in requests)
        assert [[address.address for address in call.release] for call in requests[1:]] == \
            [[address] for address in kept[:-1]]
        assert len(session.twins._by_owner) <= 2
    assert got == run(ctypes, ctypes.CDLL("libc.so.6"), 100)


def byref_and_none_calls(c, load, session=None):
    """Calls passing byref of objects, NULL and strings, made with ctypes module `c` and its
    `load`, twice: what each gave, and how many calls the packers of `session` read."""
    lib, libc = load(TEST_LIB), load("libc.so.6")

    class Point(c.Structure):
        _fields_ = [("x", c.c_double), ("y", c.c_double)]

    class Rect(c.Structure):
        _fields_ = [("min", Point), ("max", Point)]

    lib.divmod.argtypes = [c.c_int, c.c_int, c.POINTER(c.c_int), c.POINTER(c.c_int)]
    lib.rect_bounds.argtypes = [c.POINTER(Point), c.c_int, c.POINTER(Rect)]
    libc.strtol.argtypes = [c.c_char_p, c.POINTER(c.c_char_p), c.c_int]
    libc.strtol.restype = c.c_long
    libc.memset.argtypes, libc.memset.restype = [c.c_void_p, c.c_int, c.c_size_t], c.c_void_p
    got, read = [], []
    for _ in range(2):
        packed = count_packed(session) if session is not None else []
        quotient, remainder = c.c_int(), c.c_int()  # new objects: kept by the worker
        lib.divmod(47, 5, c.byref(quotient), c.byref(remainder))
        got.append((quotient.value, remainder.value))
        lib.divmod(-9, 4, c.byref(quotient), c.byref(remainder))  # at their twins
        got.append((quotient.value, remainder.value))
        points, out = (Point * 3)(Point(1, 5), Point(-2, 0), Point(4, 1)), Rect()
        lib.rect_bounds(points, 3, c.byref(out))
        got.append((out.min.x, out.min.y, out.max.x, out.max.y))
        got.append(libc.strtol(b"-1234", None, 10))  # NULL
        word = c.c_uint64(0)
        got.append((libc.memset(c.byref(word), 0x41, 3) == c.addressof(word), word.value))
        # The general way: byref with an offset, of a view, of another type (ctypes' error).
        raw = (c.c_ubyte * 8)()
        got.append((libc.memset(c.byref(raw, 4), 0x42, 2) == c.addressof(raw) + 4, list(raw)))
        got.append(libc.memset(c.byref(out.max), 0, 8) == c.addressof(out) + 16)
        got.append(out.max.x)
        try:
            lib.divmod(1, 1, c.byref(c.c_long()), c.byref(quotient))
        except c.ArgumentError as error:
            got.append(str(error))
        end_round(session, packed, read)
    return got, read


def test_byref_and_none_give_what_the_stream_and_ctypes_give(client):
    # byref of an object that owns its memory (a scalar, a structure without pointers) is
    # packed as an array is, placed at its twin or kept; None is NULL. byref with an offset
    # or of a view, and byref of another type than the parameter's, go the general way.
    on_channel = in_every_way(client, byref_and_none_calls, [5, 5])
    assert on_channel[:4] == [(9, 2), (-2, -1), (-2.0, 0.0, 4.0, 5.0), -1234]
    assert on_channel[4] == (True, 0x414141)
    assert "argument 3" in on_channel[8]


def test_byref_and_none_requests_are_what_protobuf_makes_of_them():
    packer = _packers.Packer(9, [ct.POINTER(ct.c_int), ct.c_void_p, ct.c_char_p], ct.c_int)
    number, pair = ct.c_int(-5), (ct.c_short * 2)(1, 2)
    twins = _KeepingTwins(new=[number])
    packed = packer.pack((ct.byref(number), ct.byref(pair), None), twins, 3)
    at = pb.RemoteAddress(address=twins.twins[id(pair)].worker, generation=3)
    expected = pb.Request(id=7, call=pb.Call(function=9, args=[
        pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=0))),
        pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=1))),
        pb.Value(pointer=pb.PointerValue(null=True))], blocks=[
            pb.MemoryBlock(data=bytes(number), size=4, direction=pb.INOUT, keep=True,
                           watch=True),
            pb.MemoryBlock(data=bytes(pair), size=4, direction=pb.INOUT, at=at, watch=True)]))
    assert packed.payload(7) == expected.SerializeToString()
    packed.release()
    assert twins.keeping == set() and twins.twins[id(pair)].busy == 0
    # Not packed: byref with an offset, of a view, of another type; a pointer type's object.
    rect = (ct.c_int * 4)()
    for args in ((ct.byref(rect, 4), pair, None),
                 (ct.byref(ct.c_int.from_buffer(rect, 4)), pair, None),
                 (ct.byref(ct.c_long()), pair, None),
            (ct.byref(number), ct.byref(ct.c_char_p(b"x")), None),
            (ct.byref(number), ct.byref(ct.py_object(1)), None)):
        assert packer.pack(args, _KeepingTwins(new=[number]), 3) is None


def test_a_scalar_call_releases_what_collected_objects_left(client):
    # Once a twinned buffer is collected, the next scalar call is still packed and carries
    # its release (Call.release), as any call of the general way would.
    with client.session(same_host=True) as session:
        lib, libc = session.CDLL(TEST_LIB), session.CDLL("libc.so.6")
        libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
        lib.add_int.argtypes, lib.add_int.restype = [ct.c_int, ct.c_int], ct.c_int
        buffer = ct.create_string_buffer(16)
        libc.memset(buffer, 1, 1)
        worker = session.twins._by_owner[id(buffer)].worker
        del buffer
        requests, _ = record_keeps(session)
        packed = count_packed(session)
        assert [lib.add_int(2, 3), lib.add_int(4, 5)] == [5, 9]
        assert packed == [True, True]
        assert [[address.address for address in call.release] for call in requests] == [
            [worker], []]
        assert not session.twins.has_releases()


def still_kept(session, addresses):
    """How many of `addresses` the worker still keeps (free_memory frees them)."""
    kept = 0
    for address in addresses:
        try:
            session.stream.request(free_memory=pb.FreeMemory(address=address))
            kept += 1
        except ffibox.Error as error:
            assert error.code == "NOT_FOUND"
    return kept


def test_a_call_too_large_for_the_stream_leaves_its_releases_to_a_later_call(client):
    # The stream refuses a call larger than its messages itself, so the worker would never
    # see its releases: they go with the next call instead.
    with client.session(same_host=False) as session:
        addresses = twinned_and_collected(session, 5)
        lib = session.CDLL(TEST_LIB)
        lib.str_len.argtypes, lib.str_len.restype = [ct.c_char_p], ct.c_size_t
        with pytest.raises(ffibox.Error) as refused:
            lib.str_len(b"x" * (17 << 20))
        assert refused.value.code == "RESOURCE_EXHAUSTED"
        assert lib.str_len(b"next") == 4
        assert still_kept(session, addresses) == 0


def test_a_call_the_server_refuses_leaves_its_releases_to_a_later_call():
    # The broker refuses a call before any worker sees it (here a block over the server's
    # max_block_bytes, which the client does not check): its answer says so, and the
    # releases the call carried go with the next call instead of being lost.
    server = Server("--max_block_bytes=1048576")
    client = ffibox.connect(server.address)
    try:
        with client.session(same_host=False) as session:
            addresses = twinned_and_collected(session, 5)
            libc = session.CDLL("libc.so.6")
            libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
            with pytest.raises(ffibox.Error) as refused:
                libc.memset(ct.create_string_buffer(2 << 20), 1, 1)
            assert refused.value.code == "RESOURCE_EXHAUSTED"
            assert refused.value.never_reached_worker
            assert session.twins.has_releases()
            libc.memset(ct.create_string_buffer(16), 1, 1)  # carries them
            assert still_kept(session, addresses) == 0
            # An error of the worker's own does not say so: freeing what it freed already.
            with pytest.raises(ffibox.Error) as freed:
                session.stream.request(free_memory=pb.FreeMemory(address=addresses[0]))
            assert freed.value.code == "NOT_FOUND"
            assert not freed.value.never_reached_worker
    finally:
        client.close()
        server.stop()


def test_releases_of_a_packed_call_are_sent_once_even_when_its_wait_is_interrupted(client):
    # Interrupted after it was sent (here: a KeyboardInterrupt once the answer is in), a
    # packed call's releases are not sent again: the worker freed them first. Not sent at
    # all (send_packed gives None), they go with the next call.
    with client.session(same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        lib.add_int.argtypes, lib.add_int.restype = [ct.c_int, ct.c_int], ct.c_int
        addresses = twinned_and_collected(session, 3)
        send = session.stream.send_packed

        def interrupted(packed):
            send(packed)
            raise KeyboardInterrupt

        session.stream.send_packed = interrupted
        with pytest.raises(KeyboardInterrupt):
            lib.add_int(1, 2)
        session.stream.send_packed = send
        assert not session.twins.has_releases() and not session.twins._collected
        assert still_kept(session, addresses) == 0
        addresses = twinned_and_collected(session, 3)
        session.stream.send_packed = lambda packed: None
        assert lib.add_int(1, 2) == 3  # the general way, which sends them
        session.stream.send_packed = send
        assert still_kept(session, addresses) == 0
