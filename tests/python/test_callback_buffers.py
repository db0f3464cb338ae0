"""A callback's pointer argument to pointer-free data is backed in the client by a local
buffer of 64 KiB holding the worker's bytes from the pointer on (`char*` buffers of unknown
length, `int*` arrays). Those bytes come with the invocation (DefineCallback.buffer_bytes,
PointeeData.following): filling the buffer reads no worker memory, so a callback costs one
round trip whatever pointers it takes. Real ffiboxd, real jailed workers, libc's qsort."""
import ffibox
from conftest import TEST_LIB
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
