"""A callback's pointer argument to pointer-free data is backed in the client by a local
buffer of 64 KiB holding the worker's bytes from the pointer on (`char*` buffers of unknown
length, `int*` arrays). Those bytes come with the invocation (DefineCallback.buffer_bytes,
PointeeData.following): filling the buffer reads no worker memory, so a callback costs one
round trip whatever pointers it takes. Real ffiboxd, real jailed workers, libc's qsort."""
import threading
import time

import pytest

import ffibox
from conftest import TEST_LIB, run_script
from ffibox import ctypes as ct

PROT_READ, PROT_WRITE, PROT_NONE = 1, 2, 0
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20


def ops_sent(session):
    """The ops of the requests `session` sends from now on, in order."""
    sent = []
    send = session.stream.send

    def recording(request):
        sent.append(request.WhichOneof("op"))
        return send(request)

    session.stream.send = recording
    return sent


def test_a_comparator_reads_whole_rows_behind_its_pointers_without_reading_worker_memory(
        ffibox_client):
    session = ffibox_client.session(same_host=False)
    libc = session.CDLL("libc.so.6")
    CMP = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_int), ct.POINTER(ct.c_int))

    calls = []

    def compare(a, b):  # rows of four ints: elements past the first are read too
        calls.append(1)
        x, y = [a[i] for i in range(4)], [b[i] for i in range(4)]
        return (x > y) - (x < y)

    rows = [(3, 1, 4, 1), (3, 1, 2, 9), (0, 7, 7, 7), (3, 0, 9, 9), (0, 7, 7, 6)]
    table = (ct.c_int * 20)(*[v for row in rows for v in row])
    libc.qsort.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_size_t, CMP]
    libc.qsort.restype = None
    comparator = CMP(compare)
    libc.qsort(table, 5, 16, comparator)  # defines the callback
    table = (ct.c_int * 20)(*[v for row in rows for v in row])
    sent = ops_sent(session)
    del calls[:]
    libc.qsort(table, 5, 16, comparator)
    assert [tuple(table[i:i + 4]) for i in range(0, 20, 4)] == sorted(rows)
    assert len(calls) >= 4
    assert sent == ["call"], sent  # no read of worker memory
    session.close()


def test_bytes_after_a_pointee_stop_where_the_worker_memory_stops(ffibox_client):
    """Two ints at the end of a page whose next page is unreadable: the callback gets them
    (the worker ships what is readable, up to that page's end), and zeros beyond."""
    session = ffibox_client.session(same_host=False)
    libc = session.CDLL("libc.so.6")
    libc.mmap.restype = ct.c_void_p
    libc.mmap.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_int, ct.c_int, ct.c_int, ct.c_long]
    libc.mprotect.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_int]
    libc.memcpy.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_size_t]
    pages = libc.mmap(None, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    assert pages not in (None, 2 ** 64 - 1)
    assert libc.mprotect(pages + 4096, 4096, PROT_NONE) == 0
    last_two = pages + 4096 - 8
    libc.memcpy(last_two, (ct.c_int * 2)(9, 4), 8)
    seen = []
    CMP = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_int), ct.POINTER(ct.c_int))

    def compare(a, b):
        seen.append((a[0], a[1], b[0], b[1]))
        return a[0] - b[0]

    libc.qsort.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_size_t, CMP]
    libc.qsort.restype = None
    libc.qsort(last_two, 2, 4, CMP(compare))
    # The first int's next is the second; past the page's end, the local buffer holds zeros
    # (whichever order the sort compares them in).
    assert seen in ([(9, 4, 4, 0)], [(4, 0, 9, 4)]), seen
    check = (ct.c_int * 2)()
    libc.memcpy(check, last_two, 8)
    assert list(check) == [4, 9]
    session.close()


def test_a_callback_asking_for_more_than_the_limit_is_refused(ffibox_client, pb):
    session = ffibox_client.session(same_host=False)
    signature = pb.Signature(params=[pb.Type(pointer=pb.PointerType(
        pointee=pb.Type(scalar=pb.INT)))])
    try:
        session.stream.request(define_callback=pb.DefineCallback(signature=signature,
                                                                 buffer_bytes=65537))
    except ffibox.Error as error:
        assert error.code == "INVALID_ARGUMENT", error
        assert "buffer_bytes" in str(error), error
    else:
        raise AssertionError("a buffer of 65537 bytes was accepted")
    session.close()


def test_a_restarted_worker_ships_the_rows_too(ffibox_client):
    """The callback is defined again in the worker that replaces a crashed one, with the
    bytes it asked for: the comparator still reads whole rows."""
    session = ffibox_client.session(same_host=False)
    libc = session.CDLL("libc.so.6")
    lib = session.CDLL(TEST_LIB)
    CMP = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_int), ct.POINTER(ct.c_int))

    def compare(a, b):
        x, y = [a[i] for i in range(4)], [b[i] for i in range(4)]
        return (x > y) - (x < y)

    comparator = CMP(compare)
    libc.qsort.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_size_t, CMP]
    libc.qsort.restype = None
    rows = [(3, 1, 4, 1), (3, 1, 2, 9), (0, 7, 7, 7), (3, 0, 9, 9), (0, 7, 7, 6)]

    def sort():
        table = (ct.c_int * 20)(*[v for row in rows for v in row])
        libc.qsort(table, 5, 16, comparator)
        return [tuple(table[i:i + 4]) for i in range(0, 20, 4)]

    assert sort() == sorted(rows)
    generation = session.stream.generation
    try:
        lib.crash_abort()
    except ffibox.WorkerCrashed:
        pass
    assert sort() == sorted(rows)
    assert session.stream.generation > generation  # sorted by the next worker
    session.close()


def fill_function(session):
    """call_fill of the test library, typed: it calls fill(buffer, n) once."""
    lib = session.CDLL(TEST_LIB)
    FILL = ct.CFUNCTYPE(None, ct.POINTER(ct.c_ubyte), ct.c_int)
    lib.call_fill.argtypes = [FILL, ct.POINTER(ct.c_ubyte), ct.c_int]
    lib.call_fill.restype = None
    return lib.call_fill, FILL


def test_a_pointer_into_an_array_the_call_passed_reaches_its_end_and_zeros_after_it(
        ffibox_client):
    """The worker ships the bytes after a pointee no further than the end of the call's block
    that holds it (the array the caller passed), whatever its memory holds past it, so a
    qsort comparator's two pointers cost their array, not 128 KiB. The local buffer of a
    callback that took more before (4 KiB of 'Z') holds none of them the next time."""
    for same_host in (False, True):
        session = ffibox_client.session(same_host=same_host)
        call_fill, FILL = fill_function(session)
        seen = []

        def fill(buffer, n):
            seen.append(ct.string_at(buffer, 64))

        callback = FILL(fill)
        call_fill(callback, (ct.c_ubyte * 4096)(*[ord("Z")] * 4096), 4096)
        call_fill(callback, (ct.c_ubyte * 16)(*[ord("A")] * 16), 16)
        assert seen == [b"Z" * 64, b"A" * 16 + bytes(48)], (same_host, seen)
        session.close()


def test_a_callback_that_keeps_its_pointer_keeps_the_bytes_it_was_given(ffibox_client):
    """A callback's local buffers are taken again by later invocations only once nothing
    refers to them: a pointer (or its `contents`) the callback kept still reads what it was
    given."""
    session = ffibox_client.session()
    call_fill, FILL = fill_function(session)
    kept, contents = [], []

    def fill(buffer, n):
        kept.append(buffer)
        contents.append(buffer.contents)

    callback = FILL(fill)
    for letter in b"pqrs":
        call_fill(callback, (ct.c_ubyte * 8)(*[letter] * 8), 8)
    assert [ct.string_at(pointer, 8) for pointer in kept] == [b"p" * 8, b"q" * 8, b"r" * 8,
                                                              b"s" * 8]
    assert [c.value for c in contents] == list(b"pqrs")
    session.close()


def test_what_a_callback_wrote_where_nothing_came_is_gone_the_next_time(ffibox_client, capfd):
    """A callback writes past the end of the readable memory it was handed (dropped, with a
    message); the next invocation's local buffer holds zeros there, not that write."""
    session = ffibox_client.session(same_host=False)
    libc = session.CDLL("libc.so.6")
    libc.mmap.restype = ct.c_void_p
    libc.mmap.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_int, ct.c_int, ct.c_int, ct.c_long]
    libc.mprotect.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_int]
    pages = libc.mmap(None, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    assert pages not in (None, 2 ** 64 - 1)
    assert libc.mprotect(pages + 4096, 4096, PROT_NONE) == 0
    lib = session.CDLL(TEST_LIB)
    FILL = ct.CFUNCTYPE(None, ct.POINTER(ct.c_ubyte), ct.c_int)
    lib.call_fill.argtypes = [FILL, ct.c_void_p, ct.c_int]
    lib.call_fill.restype = None
    seen = []

    def fill(buffer, n):
        seen.append(buffer[100])
        buffer[100] = 7

    callback = FILL(fill)
    lib.call_fill(callback, pages + 4096 - 8, 8)  # 8 readable bytes, then the unreadable page
    assert "that came with the invocation" in capfd.readouterr().err
    lib.call_fill(callback, pages + 4096 - 8, 8)
    assert seen == [0, 0]
    session.close()


def test_a_callback_that_stores_its_pointer_keeps_the_bytes_it_was_given(ffibox_client):
    """A pointer stored in a structure field or an array element (which keeps the buffer
    alive through ctypes' keep-alive dict, not through the pointer object) still reads what
    the callback was given after later invocations, and a write through it between calls
    reaches no later invocation."""
    session = ffibox_client.session()
    call_fill, FILL = fill_function(session)

    class Holder(ct.Structure):
        _fields_ = [("data", ct.POINTER(ct.c_ubyte))]

    holder, slots, seen = Holder(), (ct.POINTER(ct.c_ubyte) * 1)(), []

    def fill(buffer, n):
        seen.append(bytes(buffer[0:16]))
        if not seen[1:]:
            holder.data = buffer
            slots[0] = buffer

    callback = FILL(fill)
    call_fill(callback, (ct.c_ubyte * 8)(*b"AAAAAAAA"), 8)
    holder.data[1000] = 0x5A  # past what came: only this process's buffer holds it
    call_fill(callback, (ct.c_ubyte * 8)(*b"BBBBBBBB"), 8)
    call_fill(callback, (ct.c_ubyte * 8)(*b"CCCCCCCC"), 8)
    assert ct.string_at(holder.data, 8) == b"AAAAAAAA"
    assert ct.string_at(slots[0], 8) == b"AAAAAAAA"
    assert seen == [b"A" * 8 + bytes(8), b"B" * 8 + bytes(8), b"C" * 8 + bytes(8)]
    session.close()


def test_what_a_callback_writes_past_the_array_it_was_handed_is_dropped_once(ffibox_client,
                                                                             capfd):
    """A callback handed a pointer into an array the call passed writes inside the array and
    past its end: the caller's array gets what was written inside; what was written past it,
    where the worker's memory belongs to other objects, is dropped, with one message."""
    for same_host in (False, True):
        session = ffibox_client.session(same_host=same_host)
        call_fill, FILL = fill_function(session)

        def fill(buffer, n):
            buffer[1] = ord("x")
            for i in range(n, n + 400):
                buffer[i] = i & 0xFF or 1

        data = (ct.c_ubyte * 16)(*b"abcdefghijklmnop")
        call_fill(FILL(fill), data, 16)
        assert bytes(data) == b"axcdefghijklmnop", same_host
        err = capfd.readouterr().err
        assert err.count("that came with the invocation") == 1, err
        assert "past the 16 bytes from its pointer argument on" in err, err
        session.close()


def test_a_buffer_serves_the_next_invocation_unless_a_call_inside_the_callback_passed_it(
        ffibox_client):
    """Consecutive invocations share one local buffer (a comparator's arguments allocate
    nothing), except one a call inside the callback passed to the library: that buffer has a
    twin in the worker, which the library may hold, so it is never handed out again."""
    session = ffibox_client.session()
    call_fill, FILL = fill_function(session)
    libc = session.CDLL("libc.so.6")
    # The pointer passed as it came (a c_void_p conversion would keep it alive).
    libc.memset.argtypes = [ct.POINTER(ct.c_ubyte), ct.c_int, ct.c_size_t]
    libc.memset.restype = None
    addresses, nested = [], []

    def fill(buffer, n):
        addresses.append(ct.addressof(buffer.contents))
        if nested:
            libc.memset(buffer, ord("m"), 4)  # a twin of the buffer now lives in the worker

    callback = FILL(fill)
    data = (ct.c_ubyte * 8)()
    call_fill(callback, data, 8)
    call_fill(callback, data, 8)
    assert addresses[0] == addresses[1]
    nested.append(True)
    call_fill(callback, data, 8)
    assert bytes(data[:4]) == b"mmmm"
    del nested[:]
    call_fill(callback, data, 8)
    assert addresses[3] != addresses[2]
    session.close()


def test_a_callback_that_fills_more_than_its_buffer_reaches_does_not_harm_the_caller(
        ffibox_client, capfd):
    """A callback fills the whole 200 000-byte buffer the library handed it: the first 64 KiB
    (what came with the invocation) go back to the library; the rest lands in memory this
    process reserved for the buffer, not on its heap, and is dropped with a message. The
    next invocation's buffer holds none of it."""
    session = ffibox_client.session()
    call_fill, FILL = fill_function(session)
    size, seen = 200000, []

    def fill(buffer, n):
        seen.append(ct.string_at(ct.addressof(buffer.contents) + 65536, 64))
        ct.memset(buffer, 0x41, n)

    callback = FILL(fill)
    data = (ct.c_ubyte * size)()
    call_fill(callback, data, size)
    assert bytes(data) == b"A" * 65536 + bytes(size - 65536)
    assert "that came with the invocation" in capfd.readouterr().err
    call_fill(callback, (ct.c_ubyte * 8)(), 8)
    assert seen == [bytes(64), bytes(64)]
    assert session.CDLL("libc.so.6").abs(-5) == 5  # the caller and its session still work
    session.close()


def test_two_pointer_arguments_into_one_array_share_it_as_in_c(ffibox_client):
    """`f(p, p)` and `f(p, p + 1)`: a write through one argument is seen through the other
    during the callback, and reaches the library, not undone by the other's copy (an
    in-place `f(dst, src)`)."""
    for same_host in (False, True):
        session = ffibox_client.session(same_host=same_host)
        lib = session.CDLL(TEST_LIB)
        PAIR = ct.CFUNCTYPE(None, ct.POINTER(ct.c_int), ct.POINTER(ct.c_int))
        lib.call_with_pair.argtypes = [PAIR, ct.POINTER(ct.c_int), ct.POINTER(ct.c_int)]
        lib.call_with_pair.restype = ct.c_int
        seen = []

        def store(dst, src):  # src untouched
            dst[0] = 42
            seen.append(src[0])

        x = ct.c_int(5)
        assert lib.call_with_pair(PAIR(store), ct.byref(x), ct.byref(x)) == 42, same_host
        assert (x.value, seen) == (42, [42]), same_host

        def shift(a, b):  # b is a + 1: writes through both, reads through the other
            a[1] = 9
            b[1] = 8
            seen.append((a[2], b[0]))

        for length in (4, 20000):  # 20000: each pointer's 64 KiB end at different places
            values = (ct.c_int * length)(1, 2, 3, 4)
            second = ct.cast(ct.byref(values, 4), ct.POINTER(ct.c_int))
            lib.call_with_pair(PAIR(shift), values, second)
            assert list(values[:4]) == [1, 9, 8, 4], (same_host, length)
            assert seen[-1] == (8, 9), (same_host, length)
        session.close()


def test_a_callback_that_returns_one_of_its_pointer_arguments_returns_the_library_its_own(
        ffibox_client):
    """A "pick the larger" callback returns one of its two `int*` arguments as a `void*`
    (`addressof(a.contents)`, `cast(a, c_void_p)`): the library gets back its own pointer,
    not the address of the client's copy."""
    for same_host in (False, True):
        session = ffibox_client.session(same_host=same_host)
        lib = session.CDLL(TEST_LIB)
        P = ct.POINTER(ct.c_int)
        PICK = ct.CFUNCTYPE(ct.c_void_p, P, P)
        lib.pick_index.argtypes = [PICK, P, ct.c_int]
        lib.pick_index.restype = ct.c_int
        for pick in (lambda a, b: ct.addressof((a if a[0] >= b[0] else b).contents),
                     lambda a, b: ct.cast(a if a[0] >= b[0] else b, ct.c_void_p).value):
            values = (ct.c_int * 6)(4, 9, 2, 11, 7, 1)
            assert lib.pick_index(PICK(pick), values, 6) == 3, same_host
        # Past the 64 KiB that came with the invocation: element 16384 of a longer array,
        # and one past the end of that memory.
        for far in (16384, 16383):
            values = (ct.c_int * 20000)()
            assert lib.pick_index(PICK(lambda a, b, far=far: ct.addressof(a.contents) + 4 * far
                                       if not a[0] else ct.addressof(a.contents)),
                                  values, 2) == far, (same_host, far)
        session.close()


def test_callbacks_that_keep_their_buffers_take_a_bounded_number_of_mappings(ffibox_client):
    """A callback that casts its pointer (`cast(p, c_void_p).value`) keeps its buffer out of
    reuse, so each invocation takes a new one: past MAX_RESERVATIONS live at once they come
    from the heap, and the process's memory map stays bounded (Linux refuses every mapping
    past 65530)."""
    import gc
    from ffibox import _scratch_buffers
    session = ffibox_client.session()
    call_fill, FILL = fill_function(session)
    seen = []

    def casting(p, n):
        seen.append(ct.cast(p, ct.c_void_p).value)

    callback, data = FILL(casting), (ct.c_ubyte * 8)(*b"abcdefgh")

    def maps():
        with open("/proc/self/maps") as listing:
            return sum(1 for _ in listing)

    gc.collect()
    gc.disable()
    try:
        before = maps()
        for _ in range(_scratch_buffers.MAX_RESERVATIONS + 500):
            call_fill(callback, data, 8)
        grown = maps() - before
    finally:
        gc.enable()
        gc.collect()
    assert len(set(seen)) == len(seen)  # none reused: each is kept
    # Two entries per reservation (its guard page), a few for anything else.
    assert grown <= 2 * _scratch_buffers.MAX_RESERVATIONS + 64, grown
    assert bytes(data) == b"abcdefgh"
    session.close()


def test_an_object_collected_with_a_buffer_may_read_through_its_pointer_in_its_del():
    """An object in a reference cycle keeps a callback's pointer and reads through it in its
    `__del__`, collected in the same pass as the buffer: the buffer's memory is still
    there (in a child process: a crash is its status)."""
    result = run_script("""
import ctypes, gc
from ffibox import _scratch_buffers
window = _scratch_buffers._reserved_window()
ctypes.memset(window, 7, 1)
pointer = ctypes.cast(window, ctypes.POINTER(ctypes.c_int))
class Keeper:
    def __del__(self):
        print("read", self.pointer[0], flush=True)
keeper = Keeper()
keeper.pointer, keeper.me = pointer, keeper
del window, pointer, keeper
gc.collect()
print("survived")
""")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["read", "7", "survived"], result.stdout


VISIT = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_char_p), ct.c_int)


@pytest.mark.parametrize("same_host", [True, False], ids=["channel", "grpc"])
@pytest.mark.parametrize("spacing, offset", [(16, 0), (4104, 8), (16, 4093)],
                         ids=["one-page", "a-page-each", "past-a-page"])
def test_a_callback_gets_every_string_of_its_char_pointer_array_wherever_they_lie(
        ffibox_client, same_host, spacing, offset):
    """The strings of a `char**` argument: packed in one page, one per page, and one that
    runs past its page into the next (which a read of its page alone would cut)."""
    session = ffibox_client.session(same_host=same_host)
    lib = session.CDLL(TEST_LIB)
    lib.visit_names.argtypes = [VISIT, ct.c_int, ct.c_int, ct.c_int]
    seen = []

    def visit(names, n):
        seen.extend(names[i] for i in range(n + 1))
        return n

    assert lib.visit_names(VISIT(visit), 40, spacing, offset) == 40 * 256 + ord("n")
    assert seen == [b"name-%d" % i for i in range(40)] + [None]
    session.close()


@pytest.mark.parametrize("same_host", [True, False], ids=["channel", "grpc"])
def test_what_a_callback_writes_through_a_string_of_its_char_pointer_array_reaches_the_library(
        ffibox_client, same_host):
    session = ffibox_client.session(same_host=same_host)
    lib = session.CDLL(TEST_LIB)
    lib.visit_names.argtypes = [VISIT, ct.c_int, ct.c_int, ct.c_int]

    def visit(names, n):
        ct.memset(ct.cast(names, ct.POINTER(ct.c_void_p))[0], ord("N"), 1)
        return n

    assert lib.visit_names(VISIT(visit), 40, 16, 0) == 40 * 256 + ord("N")
    session.close()


@pytest.mark.parametrize("spacing", [16, 4104], ids=["one-page", "a-page-each"])
def test_the_strings_of_a_callbacks_char_pointer_array_come_with_one_read(ffibox_client, spacing):
    """40 strings, in one page or one per page: the array comes with the invocation, and its
    strings' pages with one read_memory_list, not a read_string each."""
    session = ffibox_client.session(same_host=False)
    lib = session.CDLL(TEST_LIB)
    lib.visit_names.argtypes = [VISIT, ct.c_int, ct.c_int, ct.c_int]
    callback = VISIT(lambda names, n: len(b"".join(names[i] for i in range(n))))
    total = sum(len(b"name-%d" % i) for i in range(40))
    assert lib.visit_names(callback, 40, spacing, 8) // 256 == total
    sent = ops_sent(session)
    assert lib.visit_names(callback, 40, spacing, 8) // 256 == total
    assert sent == ["call", "read_memory_list"], sent
    session.close()


@pytest.mark.parametrize("same_host", [True, False], ids=["channel", "grpc"])
def test_a_dangling_element_of_a_callbacks_char_pointer_array_spoils_none_of_the_others(
        ffibox_client, same_host):
    """One element points into an unreadable page: the one read of the strings' pages fails,
    so each page is read alone; the callback gets every other string, and the dangling one
    as an empty string (in-process it would crash)."""
    session = ffibox_client.session(same_host=same_host)
    libc = session.CDLL("libc.so.6")
    libc.mmap.restype = ct.c_void_p
    libc.mmap.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_int, ct.c_int, ct.c_int, ct.c_long]
    libc.mprotect.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_int]
    libc.strcpy.argtypes = [ct.c_void_p, ct.c_char_p]
    libc.memcpy.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_size_t]
    pages = libc.mmap(None, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    assert pages not in (None, 2 ** 64 - 1)
    words = [b"alpha", b"beta", None, b"delta", b"epsilon"]
    elements = []
    for index, word in enumerate(words):
        if word is None:
            elements.append(pages + 4096 + 64)  # into the page made unreadable below
            continue
        address = pages + (2 * 4096 if index > 2 else 0) + 32 * index
        libc.strcpy(address, word)
        elements.append(address)
    array = pages + 2 * 4096 + 1024
    libc.memcpy(array, (ct.c_void_p * 6)(*elements, None), 48)
    assert libc.mprotect(pages + 4096, 4096, PROT_NONE) == 0
    lib = session.CDLL(TEST_LIB)
    PAIR = ct.CFUNCTYPE(None, ct.POINTER(ct.c_char_p), ct.POINTER(ct.c_char_p))
    lib.call_with_pair.argtypes = [PAIR, ct.c_void_p, ct.c_void_p]
    seen = []

    def pair(a, b):
        seen.append([a[i] for i in range(6)])

    lib.call_with_pair(PAIR(pair), array, array)
    assert seen == [[b"alpha", b"beta", b"", b"delta", b"epsilon", None]]
    session.close()


@pytest.mark.parametrize("same_host", [True, False], ids=["channel", "grpc"])
def test_writes_through_two_strings_of_one_page_leave_what_the_library_changed_between_them(
        ffibox_client, same_host):
    """Two strings of a callback's char** in one page are one image of that page: what the
    callback changes in both goes back change by change, not as one span that would write
    its stale copy of the bytes between them over what the library wrote there since."""
    session = ffibox_client.session(same_host=same_host)
    lib = session.CDLL(TEST_LIB)
    lib.visit_names.argtypes = [VISIT, ct.c_int, ct.c_int, ct.c_int]
    lib.poke_first_name.argtypes = [ct.POINTER(ct.c_char_p), ct.c_int, ct.c_char]
    lib.poke_first_name.restype = None
    lib.name_byte.argtypes = [ct.POINTER(ct.c_char_p), ct.c_int, ct.c_int]
    seen = []

    def visit(names, n):
        first, second = ct.cast(names, ct.POINTER(ct.c_void_p))[0:2]
        assert second - first == 16
        lib.poke_first_name(names, 8, b"X")  # the library writes between the two strings
        ct.memset(first, ord("N"), 1)  # and the callback writes into each
        ct.memset(second, ord("M"), 1)
        # What the library sees once the changes went back (before each call).
        seen.append(bytes(lib.name_byte(names, i, at) for i, at in ((0, 0), (0, 8), (1, 0))))
        return n

    assert lib.visit_names(VISIT(visit), 2, 16, 0) == 2 * 256 + ord("N")
    assert seen == [b"NXM"]
    session.close()


class _Full(ct.Structure):
    pass


class _Head(ct.Structure):
    _fields_ = [("tag", ct.c_char_p), ("full", ct.POINTER(_Full))]


_Full._fields_ = [("tag", ct.c_char_p), ("full", ct.POINTER(_Full)), ("extra", ct.c_char_p),
                  ("x", ct.c_long)]


@pytest.mark.parametrize("same_host", [True, False], ids=["channel", "grpc"])
def test_a_callback_finds_the_larger_record_its_smaller_pointee_begins(ffibox_client, same_host):
    """C's "base struct first": the callback gets a Full as a Head, and the Full through a
    pointer to the same address; its image holds the whole Full, not the Head's bytes that
    came with the invocation."""
    session = ffibox_client.session(same_host=same_host)
    lib = session.CDLL(TEST_LIB)
    HEAD = ct.CFUNCTYPE(ct.c_long, ct.POINTER(_Head))
    lib.call_head.argtypes = [HEAD]
    lib.call_head.restype = ct.c_long
    seen = []

    def head(h):
        full = h.contents.full.contents
        seen.append((h.contents.tag, full.tag, full.extra, full.x))
        return full.x

    assert lib.call_head(HEAD(head)) == 42
    assert seen == [(b"tag", b"tag", b"extra", 42)]
    session.close()


@pytest.mark.parametrize("same_host", ["1", "0"], ids=["channel", "grpc"])
def test_a_view_made_while_a_call_runs_does_not_hold_up_its_callbacks_images(
        shared_server, monkeypatch, same_host):
    # Thread B makes a view of worker memory (a watched read, which took the image table's
    # watch lock until answered) while thread C's call runs; B's read waits in the worker
    # behind C's call, whose callback's argument image wanted that lock: both hung.
    from ffibox import _default
    monkeypatch.setenv("FFIBOX_SAME_HOST", same_host)
    monkeypatch.setattr(_default, "_session", None)
    session = _default.default_session()
    lib = session.CDLL(TEST_LIB)
    HEAD = ct.CFUNCTYPE(ct.c_long, ct.POINTER(_Head))
    lib.call_head_later.argtypes = [HEAD, ct.c_int]
    lib.call_head_later.restype = ct.c_long
    libc = session.CDLL("libc.so.6")
    libc.calloc.argtypes, libc.calloc.restype = [ct.c_size_t, ct.c_size_t], ct.c_void_p
    memory = libc.calloc(4, 8)
    done = {}
    callback = HEAD(lambda h: h.contents.full.contents.x)

    def call():
        done["call"] = lib.call_head_later(callback, 300)

    def view():
        time.sleep(0.1)  # the call runs in the worker
        done["view"] = list((ct.c_long * 4).from_address(memory))

    threads = [threading.Thread(target=call, daemon=True), threading.Thread(target=view,
                                                                            daemon=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert done == {"call": 42, "view": [0, 0, 0, 0]}
    session.close()


@pytest.mark.parametrize("same_host", [True, False], ids=["channel", "grpc"])
def test_a_callback_whose_arguments_exceed_the_image_budget_gives_native_code_zero_at_once(
        ffibox_client, same_host, capfd):
    """40 strings, a page each, past a budget of 8 images: the handler cannot make the
    arguments, so the callback fails as one that raised (native code gets zero), on the
    gRPC path too, where the invocation was left unanswered until the call's deadline."""
    session = ffibox_client.session(same_host=same_host, timeout=20)
    session.images.max_images = 8
    lib = session.CDLL(TEST_LIB)
    lib.visit_names.argtypes = [VISIT, ct.c_int, ct.c_int, ct.c_int]
    callback = VISIT(lambda names, n: n)
    assert lib.visit_names(callback, 40, 4104, 8) == ord("n")  # visit gave 0
    assert "RESOURCE_EXHAUSTED" in capfd.readouterr().err
    session.images.max_images = 4096
    assert lib.visit_names(callback, 40, 4104, 8) == 40 * 256 + ord("n")
    session.close()


@pytest.mark.parametrize("same_host", [True, False], ids=["channel", "grpc"])
def test_a_callback_reading_its_char_pointer_array_past_a_null_hole_reads_the_worker_array(
        ffibox_client, same_host):
    """An array {"first", NULL, "third", NULL} read by count: the image stops at the first
    NULL, and what is read past it is the worker's array, as C reads it (sqlite3_exec's row
    of values with a NULL column), not whatever lies past the image in this process; a
    garbage word past the array is a MemoryFault, where C would crash."""
    session = ffibox_client.session(same_host=same_host)
    lib = session.CDLL(TEST_LIB)
    libc = session.CDLL("libc.so.6")
    libc.malloc.restype = ct.c_void_p
    libc.malloc.argtypes = [ct.c_size_t]
    libc.memcpy.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_size_t]
    first, third, array = libc.malloc(16), libc.malloc(16), libc.malloc(64)
    libc.memcpy(first, b"first\0", 6)
    libc.memcpy(third, b"third\0", 6)
    libc.memcpy(array, (ct.c_void_p * 5)(first, None, third, None, 0x16), 40)
    PAIR = ct.CFUNCTYPE(None, ct.POINTER(ct.c_char_p), ct.POINTER(ct.c_char_p))
    lib.call_with_pair.argtypes = [PAIR, ct.c_void_p, ct.c_void_p]
    seen = []

    def pair(a, b):
        seen.append([a[i] for i in range(4)])
        try:
            seen.append(a[4])
        except ffibox.MemoryFault:
            seen.append("MemoryFault")

    lib.call_with_pair(PAIR(pair), array, array)
    assert seen == [[b"first", None, b"third", None], "MemoryFault"]
    session.close()


def test_without_read_memory_list_the_strings_pages_are_read_one_by_one(ffibox_client):
    """A server before read_memory_list (SessionOpened.memory_lists false) refuses it, and
    its worker closes a same-host channel it comes on: the client reads each page alone."""
    session = ffibox_client.session(same_host=False)
    assert session.memory.lists  # this server takes it
    session.memory.lists = False
    lib = session.CDLL(TEST_LIB)
    lib.visit_names.argtypes = [VISIT, ct.c_int, ct.c_int, ct.c_int]
    seen = []
    callback = VISIT(lambda names, n: seen.append([names[i] for i in range(n)]) or n)
    lib.visit_names(callback, 3, 4104, 8)
    sent = ops_sent(session)
    assert lib.visit_names(callback, 3, 4104, 8) == 3 * 256 + ord("n")
    assert seen == [[b"name-0", b"name-1", b"name-2"]] * 2
    assert sent == ["call", "read_memory", "read_memory", "read_memory"], sent
    session.close()


def test_pointers_a_callback_stores_beside_the_ints_it_sets_reach_the_library(ffibox_client):
    # rtree's stream loading: the callback sets an id and a length (int64_t*, size_t*) and
    # stores two pointers (double**) that lie between them in the library's frame. What it
    # wrote past its first int went back as one span from the id to the length, with the
    # pointer slots between as they came (NULL): the library read NULL, or crashed.
    with ffibox_client.session() as session:
        lib = session.CDLL(TEST_LIB)
        rows = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_int64),
                            ct.POINTER(ct.POINTER(ct.c_double)),
                            ct.POINTER(ct.POINTER(ct.c_double)), ct.POINTER(ct.c_uint32),
                            ct.POINTER(ct.c_size_t))
        lib.consume_rows.argtypes = [rows]
        lib.consume_rows.restype = ct.c_double
        lo, hi = (ct.c_double * 2)(1.0, 2.0), (ct.c_double * 2)(10.0, 20.0)
        left = iter(range(3))

        def next_row(p_id, p_lo, p_hi, p_count, p_length):
            try:
                n = next(left)
            except StopIteration:
                return 1
            p_id[0] = 100 * n
            p_lo[0] = ct.cast(lo, ct.POINTER(ct.c_double))
            p_hi[0] = ct.cast(hi, ct.POINTER(ct.c_double))
            p_count[0] = 2
            p_length[0] = n
            return 0

        # Rows 0, 1, 2: ids 0 + 100 + 200, lengths 0 + 1 + 2, values 33 each.
        assert lib.consume_rows(rows(next_row)) == 300 + 3 + 3 * 33
