"""What ffibox adds to ctypes: a crash, a hang or an exit in the library is a typed error,
and the session's next call works in a fresh worker. Never run with the stdlib ctypes."""
import ctypes as stdlib_ctypes  # ffibox takes the stdlib's data types
import errno
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ffibox
from conftest import PROBE_LIB, ROOT, TEST_LIB, Server, run_script


@pytest.fixture
def session(ffibox_client):
    with ffibox_client.session(timeout=2) as s:
        yield s


def test_a_callers_descriptor_number_fails_at_once_in_the_library(session, tmp_path):
    # Descriptors are the worker's (docs/python.md): a binding that hands a library the
    # number of a file it opened itself gets EBADF at once, whatever the number, as from
    # any number the worker does not have open; none of them is the worker's own channel
    # socket (a read of which would wait until the call's deadline) or its crash pipe.
    import errno
    from ffibox import ctypes as ct
    libc = session.CDLL("libc.so.6", use_errno=True)
    libc.read.argtypes = [ct.c_int, ct.c_void_p, ct.c_size_t]
    libc.write.argtypes = [ct.c_int, ct.c_char_p, ct.c_size_t]
    generation = session.generation
    opened = [os.open(tmp_path / ("f%d" % i), os.O_RDWR | os.O_CREAT) for i in range(4)]
    try:
        buffer = ct.create_string_buffer(16)
        for fd in sorted(set(range(3, 8)) | set(opened)):
            ct.set_errno(0)
            assert libc.read(fd, buffer, 16) == -1, "fd %d" % fd
            assert ct.get_errno() == errno.EBADF, "fd %d: errno %d" % (fd, ct.get_errno())
            assert libc.write(fd, b"x" * 40, 40) == -1, "fd %d" % fd
            assert ct.get_errno() == errno.EBADF, "fd %d: errno %d" % (fd, ct.get_errno())
    finally:
        for fd in opened:
            os.close(fd)
    assert session.generation == generation, "the worker was replaced"


def counting_requests(session):
    """A list that gets the kind of each request `session` sends from now on."""
    sent, request = [], session.stream.request

    def counted(*args, **fields):
        sent.extend(fields)
        return request(*args, **fields)

    session.stream.request = counted
    return sent


def test_a_large_buffer_the_library_hands_back_arrives_whole_a_read_a_chunk(ffibox_client):
    # `lib.get(byref(p), byref(n)); p[:n]`: the slice was made of a bytes object per byte
    # (90 times its size in this process's memory: 6 GiB and 18 s for 64 MiB), and a read
    # past the server's largest message (64 MiB) was refused.
    import tracemalloc
    from ffibox import ctypes as ct
    size = 80 << 20
    with ffibox_client.session(timeout=60) as session:
        libc = session.CDLL("libc.so.6")
        libc.malloc.restype = ct.POINTER(ct.c_char)
        libc.malloc.argtypes = [ct.c_size_t]
        libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
        p = libc.malloc(size)
        libc.memset(p, ord("A"), size)
        sent = counting_requests(session)
        tracemalloc.start()
        try:
            data = p[:size]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(data) == size and data.count(b"A") == size
        assert set(sent) == {"read_memory"} and len(sent) <= 6, sent  # up to 16 MiB each
        assert peak < 4 * size, peak
        assert p[size - 3:size] == b"AAA" and p[5:0:-2] == b"AAA"


def test_a_slice_of_an_array_the_library_hands_back_is_one_read(ffibox_client):
    # The `contents` of a POINTER(c_char * n) or POINTER(c_int * n) result, sliced: a read
    # for the view, one for the slice (a request an element before: 64 KiB took 12 to 19 s).
    from ffibox import ctypes as ct
    with ffibox_client.session() as session:
        libc = session.CDLL("libc.so.6")
        libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
        libc.malloc.argtypes = [ct.c_size_t]
        libc.malloc.restype = ct.POINTER(ct.c_char * 65536)
        chars = libc.malloc(65536)
        libc.memset(chars, ord("x"), 65536)
        libc.malloc.restype = ct.POINTER(ct.c_int * 1000)
        ints = libc.malloc(4000)
        libc.memset(ints, 1, 4000)
        sent = counting_requests(session)
        assert chars.contents[:] == b"x" * 65536
        assert chars.contents[10:20:3] == b"xxxx"
        assert ints.contents[:] == [0x01010101] * 1000
        assert ints.contents[-1:-5:-2] == [0x01010101] * 2
        assert ints.contents[7:3] == []
        assert sent == ["read_memory"] * 9, sent  # ints.contents[7:3] reads no element


def test_library_output_that_this_process_stderr_does_not_take_is_dropped_not_waited_for():
    # The caller's stderr is a pipe nobody reads while it runs: the library's output, which
    # the thread that reads the session's answers writes there, filled it, that thread
    # waited, and the session was closed as if ffiboxd had sent nothing. It is dropped
    # instead (said once stderr takes bytes again), and every call is answered.
    script = textwrap.dedent("""
        import os, sys
        from ffibox import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        chunk = b"x" * 16383 + b"\\n"
        answered = [libc.write(2, chunk, len(chunk)) for _ in range(24)]
        os.write(1, b"%d %d\\n" % (answered.count(len(chunk)), libc.labs(-7)))
    """)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "client", "python"))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
    try:
        child.wait(timeout=60)  # stderr unread until it ends
    finally:
        child.kill()
    out, err = child.stdout.read().decode(), child.stderr.read().decode()
    assert child.returncode == 0, err[-2000:]
    assert out.strip() == "24 7", (out, err[-2000:])
    assert 0 < err.count("x") < 24 * 16383  # what the pipe took; the rest was dropped


def test_a_session_whose_output_handler_does_not_return_says_so(ffibox_client):
    # An output handler of the caller's that blocks holds up the thread that reads the
    # session's answers: the session ends when its answers are overdue, saying that, where it
    # blamed ffiboxd for sending nothing.
    from ffibox import ctypes as ct
    with ffibox_client.session(same_host=False, timeout=1, answer_margin=0.5) as session:
        libc = session.CDLL("libc.so.6")
        libc.write.argtypes = [ct.c_int, ct.c_char_p, ct.c_size_t]
        release = threading.Event()
        session.stream.on_output = lambda stream, data: release.wait(20)
        try:
            with pytest.raises(ffibox.SessionClosed) as closed:
                libc.write(1, b"printed\n", 8)
        finally:
            release.set()
        assert "output handler (session.stream.on_output)" in str(closed.value), closed.value
        assert "ffiboxd sent nothing" not in str(closed.value)


@pytest.mark.parametrize("high", [False, True], ids=["low", "past_1023"])
def test_the_default_output_handler_says_what_it_dropped_once_stderr_takes_bytes_again(
        monkeypatch, high):
    # `high`: stderr on a descriptor past 1023, which select.select refuses (then every
    # byte was dropped, unsaid).
    import resource
    from ffibox import _stream
    read_end, write_end = os.pipe()
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    if high:
        if limits[0] < 2048:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, limits[1]), limits[1]))
        moved = fcntl.fcntl(write_end, fcntl.F_DUPFD_CLOEXEC, 1500)
        os.close(write_end)
        write_end = moved
        assert write_end >= 1024
    try:
        with os.fdopen(write_end, "w", closefd=False) as stderr:
            monkeypatch.setattr(sys, "stderr", stderr)
            monkeypatch.setattr(_stream, "_OUTPUT_WAIT", 0.05)
            monkeypatch.setattr(_stream, "_output_state", [False, 0])
            size = fcntl.fcntl(write_end, 1032)  # F_GETPIPE_SZ
            _stream.write_worker_output("stderr", b"a" * size)  # fills the pipe
            started = time.monotonic()
            _stream.write_worker_output("stdout", b"b" * 5000)  # dropped
            _stream.write_worker_output("stderr", b"c" * 7)     # dropped, not waited for
            assert time.monotonic() - started < 2
            assert os.read(read_end, size) == b"a" * size
            _stream.write_worker_output("stderr", b"d\n")
        taken = os.read(read_end, 1 << 16)
        assert taken == b"ffibox: 5007 bytes the library printed were dropped: this " \
            b"process's stderr took nothing for 0.05 s\nd\n", taken
    finally:
        os.close(read_end)
        os.close(write_end)
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def test_a_crash_after_a_forked_child_exited_is_described_by_the_workers_own_report():
    # Under the permissive policy, which lets a library fork: the child inherits the
    # worker's exit handler and crash pipe, its exit(127) wrote the first report, the broker
    # believes only the first, and the worker's own (the fault's address) was lost.
    server = Server("--jail_policy=permissive")
    try:
        with ffibox.connect(server.address) as client, client.session() as session:
            probe = session.CDLL(PROBE_LIB)
            with pytest.raises(ffibox.WorkerCrashed) as crash:
                probe.probe_fork_exiting_child_then_crash()
            assert "SIGSEGV" in str(crash.value) and "at address 0x0" in str(crash.value), \
                crash.value
    finally:
        server.stop()


def test_slices_of_a_library_array_of_a_simple_types_subclass_share_its_memory(session):
    # ctypes gives elements of a subclass of a simple type as objects over the array's
    # memory: a slice's elements too, so a write through one reaches the library.
    from ffibox import ctypes as ct

    class Color(ct.c_int):
        pass

    libc = session.CDLL("libc.so.6")
    libc.calloc.argtypes = [ct.c_size_t, ct.c_size_t]
    libc.calloc.restype = ct.POINTER(Color * 4)
    colors = libc.calloc(4, 4)
    first, second = colors.contents[0:2]
    assert isinstance(first, Color) and first.value == 0
    second.value = 7
    assert ct.cast(colors, ct.POINTER(ct.c_int))[1] == 7


def test_a_slice_with_a_large_step_reads_its_elements_not_the_span(session):
    from ffibox import ctypes as ct
    libc = session.CDLL("libc.so.6")
    libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
    libc.malloc.argtypes = [ct.c_size_t]
    libc.malloc.restype = ct.POINTER(ct.c_int)
    count = 4 << 20  # 16 MiB of ints
    ints = libc.malloc(count * 4)
    libc.memset(ints, 2, count * 4)
    sent = counting_requests(session)
    assert ints[0:count:100000] == [0x02020202] * 42
    assert sent == ["read_memory_list"], sent


def test_crash_is_worker_crashed_and_next_call_works(session):
    lib = session.CDLL(TEST_LIB)
    assert lib.counter_next() == 1
    assert lib.counter_next() == 2
    with pytest.raises(ffibox.WorkerCrashed) as crash:
        lib.crash_null_deref()
    assert crash.value.signal == signal.SIGSEGV
    assert crash.value.function == "crash_null_deref"
    assert lib.counter_next() == 1  # a fresh worker: the library's state started over


@pytest.mark.parametrize("change", ["removed", "replaced"])
def test_a_library_that_cannot_be_loaded_again_after_a_crash_says_so(session, tmp_path, change):
    # The library's file is gone when the worker that crashed is replaced (the broker cannot
    # open it), or is no library any more (the new worker's dlopen fails): the new worker
    # cannot be given it, and every later call naming it says why, the one that started that
    # worker included (it said only "function handle 1 is not resolved").
    import shutil
    path = tmp_path / "libgone.so"
    shutil.copy(TEST_LIB, path)
    lib = session.CDLL(str(path))
    assert lib.add_int(2, 3) == 5
    if change == "removed":
        path.unlink()
    else:
        (tmp_path / "text").write_text("not a library\n")
        os.replace(tmp_path / "text", path)  # a new file: the live worker keeps its own
    with pytest.raises(ffibox.WorkerCrashed):
        lib.crash_null_deref()
    for _ in range(2):
        with pytest.raises(ffibox.Error) as lost:
            lib.add_int(2, 3)
        assert lost.value.code == "NOT_FOUND"
        assert "it was lost with its worker: dlopen %s (replay) failed" % path in \
            str(lost.value), lost.value
    assert session.CDLL(TEST_LIB).add_int(4, 5) == 9  # the session goes on


def test_a_library_that_crashes_when_loaded_again_loses_itself_only(tmp_path):
    # The library's file is replaced, between its load and a crash, by one whose constructor
    # crashes: the next worker dies loading it again, before it is given libm. libm was lost
    # with it (every later call NOT_FOUND); it is given to the worker after that, and only
    # the library that crashed is lost.
    import shutil
    from ffibox import ctypes as ct
    from conftest import HOSTILE_LIB
    path = tmp_path / "libswapped.so"
    shutil.copy(TEST_LIB, path)
    server = Server("--allow_env=FFIBOX_TEST_*")
    try:
        with ffibox.connect(server.address) as client, \
                client.session(env={"FFIBOX_TEST_HOSTILE_AT_LOAD": "crash"}) as session:
            swapped = session.CDLL(str(path))
            assert swapped.add_int(2, 3) == 5
            libm = session.CDLL("libm.so.6")
            libm.cos.restype = ct.c_double
            libm.cos.argtypes = [ct.c_double]
            assert libm.cos(0.0) == 1.0
            shutil.copy(HOSTILE_LIB, tmp_path / "new.so")
            os.replace(tmp_path / "new.so", path)
            with pytest.raises(ffibox.WorkerCrashed):
                swapped.crash_null_deref()
            with pytest.raises(ffibox.WorkerCrashed) as replayed:
                libm.cos(0.0)  # started the worker that died loading the library again
            assert "dlopen %s (replay)" % path in str(replayed.value), replayed.value
            for _ in range(2):
                assert libm.cos(0.0) == 1.0
            with pytest.raises(ffibox.Error) as lost:
                swapped.add_int(2, 3)
            assert lost.value.code == "NOT_FOUND", lost.value
            assert "it was lost with its worker: dlopen %s (replay) failed" % path in \
                str(lost.value), lost.value
    finally:
        server.stop()


def test_a_crash_at_an_address_of_this_process_passed_as_an_integer_says_so(session):
    # PyOpenGL passes a numpy array's data address as c_void_p(int), and strings as c_char_p
    # elements cast from their addresses: the worker cannot reach this process's memory and
    # faults there. The crash says which integer it was and what to pass instead.
    from ffibox import ctypes as ct
    libc = session.CDLL("libc.so.6")
    libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
    libc.strlen.argtypes = [ct.c_void_p]
    local = bytearray(64)
    address = ct.addressof(ct.c_char.from_buffer(local))
    with pytest.raises(ffibox.WorkerCrashed) as crash:
        libc.memset(address + 16, 7, 16)
    assert "0x%x is an address of this process, passed to the library as a plain integer" \
        % (address + 16) in str(crash.value), crash.value
    assert "data_as" in str(crash.value)
    lib = session.CDLL(TEST_LIB)
    # A crash elsewhere says nothing of it; the session goes on.
    with pytest.raises(ffibox.WorkerCrashed) as crash:
        lib.crash_null_deref()
    assert "an address of this process" not in str(crash.value)
    assert lib.add_int(2, 3) == 5


def test_a_crash_at_an_address_of_this_process_written_in_a_string_says_it_may_be_one(session):
    # xgboost writes its numpy arrays' addresses into a JSON string: no client can see them,
    # and the worker faulted with nothing said.
    from ffibox import ctypes as ct
    probe = session.CDLL(PROBE_LIB)
    probe.probe_read_address_in_text.argtypes = [ct.c_char_p]
    local = ct.create_string_buffer(64)
    address = ct.addressof(local) + 8
    with pytest.raises(ffibox.WorkerCrashed) as crash:
        probe.probe_read_address_in_text(b"%d" % address)
    assert "0x%x is mapped in this process" % address in str(crash.value), crash.value


def test_a_char_pointer_holding_the_address_of_a_bytes_objects_text_is_that_text(session):
    # PyOpenGL's glShaderSource passes strings as c_char_p elements cast from the addresses
    # of bytes objects' text (plain integers): the element is that text, as the bytes would
    # be (the worker crashed on it), and the caller's array keeps its own words. An address
    # of other memory (a buffer, whose extent is unknown) still goes as it is.
    from ffibox import ctypes as ct
    lib = session.CDLL(TEST_LIB)
    lib.total_length.argtypes = [ct.POINTER(ct.c_char_p), ct.c_int]
    lib.total_length.restype = ct.c_size_t
    texts = [b"void main() {}", b"", b"gl_FragColor"]
    addresses = [stdlib_ctypes.cast(stdlib_ctypes.c_char_p(t), stdlib_ctypes.c_void_p).value
                 for t in texts]
    strings = (ct.c_char_p * 3)()
    for i, address in enumerate(addresses):
        strings[i] = ct.cast(address, ct.c_char_p)
    assert lib.total_length(strings, 3) == 26
    assert [ct.cast(strings, ct.POINTER(ct.c_void_p))[i] for i in range(3)] == addresses
    assert [strings[i] for i in range(3)] == texts
    # Moved by the library inside the text (strsep): the same place of the caller's bytes.
    libc = session.CDLL("libc.so.6")
    libc.strsep.argtypes = [ct.POINTER(ct.c_char_p), ct.c_char_p]
    libc.strsep.restype = ct.c_void_p
    fields = b"alpha,beta"
    address = stdlib_ctypes.cast(stdlib_ctypes.c_char_p(fields), stdlib_ctypes.c_void_p).value
    cursor = (ct.c_char_p * 1)(ct.cast(address, ct.c_char_p))
    libc.strsep(cursor, b",")
    assert ct.cast(cursor, ct.POINTER(ct.c_void_p))[0] == address + 6
    assert cursor[0] == b"beta"
    buffer = stdlib_ctypes.create_string_buffer(b"not bytes", 16)
    strings[1] = ct.cast(stdlib_ctypes.addressof(buffer), ct.c_char_p)
    with pytest.raises(ffibox.WorkerCrashed) as crash:
        lib.total_length(strings, 3)
    assert "0x%x is an address of this process" % stdlib_ctypes.addressof(buffer) in \
        str(crash.value), crash.value
    strings[1] = ct.cast(addresses[1], ct.c_char_p)
    assert lib.total_length(strings, 3) == 26  # in the next worker


def test_a_char_pointer_parameter_given_the_address_of_a_bytes_objects_text_is_that_text(
        session):
    # PyOpenGL's GLcharArray, a c_char_p whose from_param gives the address of a bytes
    # object's text as an integer (glGetUniformLocation's name): those bytes go, kept as
    # bytes passed are when they are the argument itself (putenv keeps its string).
    from ffibox import ctypes as ct
    cache = {}

    class Chars(ct.c_char_p):
        @classmethod
        def from_param(cls, value):
            if isinstance(value, str):  # converted, the bytes kept elsewhere, as PyOpenGL's
                value = cache.setdefault(value, value.encode())
            return stdlib_ctypes.cast(stdlib_ctypes.c_char_p(value),
                                      stdlib_ctypes.c_void_p).value

    libc = session.CDLL("libc.so.6")
    libc.strlen.argtypes = [Chars]
    libc.strlen.restype = ct.c_size_t
    assert libc.strlen(b"hello") == 5
    assert libc.strlen("converted text") == 14
    libc.putenv.argtypes = [Chars]
    libc.getenv.restype = ct.c_char_p
    setting = b"FFIBOX_KEPT=yes"
    assert libc.putenv(setting) == 0
    assert libc.getenv(b"FFIBOX_KEPT") == b"yes"  # the worker's copy lives on
    assert session.generation == 1


def test_a_prototypes_function_of_a_library_survives_a_crash(session):
    # PROTOTYPE(("name", lib)), as PyOpenGL makes every GL function: it was bound to the
    # crashed worker's address, and every later call was StaleHandle, the binding dead.
    from ffibox import ctypes as ct
    lib = session.CDLL(TEST_LIB)
    add = ct.CFUNCTYPE(ct.c_int, ct.c_int, ct.c_int)(("add_int", lib))
    assert add(2, 3) == 5
    with pytest.raises(ffibox.WorkerCrashed):
        lib.crash_null_deref()
    assert add(4, 5) == 9
    assert session.generation == 2


def test_abort_and_exit_are_worker_crashed(session):
    lib = session.CDLL(TEST_LIB)
    with pytest.raises(ffibox.WorkerCrashed) as crash:
        lib.crash_abort()
    assert crash.value.signal == signal.SIGABRT
    with pytest.raises(ffibox.WorkerCrashed) as crash:
        lib.crash_exit3()
    assert crash.value.exit_code == 3
    assert lib.add_int(2, 3) == 5


def test_handles_of_a_crashed_worker_are_stale_in_arrays_and_records_too(session):
    # xgboost passes its handles in an array (`c_array(c_void_p, [d.handle])`): after a
    # restart they reached the new worker as wild addresses and crashed it too.
    from ffibox import ctypes as ct

    class Holder(ct.Structure):
        _fields_ = [("tag", ct.c_int), ("handle", ct.c_void_p)]

    libc = session.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ct.c_void_p, [ct.c_size_t]
    libc.memcpy.restype = ct.c_void_p
    libc.memcpy.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_size_t]
    handle = libc.malloc(16)
    in_array, in_record = (ct.c_void_p * 2)(None, handle), Holder(1, handle)
    target = ct.create_string_buffer(16)
    assert libc.memcpy(target, in_array, 16) is not None  # the live worker's: passed
    with pytest.raises(ffibox.WorkerCrashed):
        session.CDLL(TEST_LIB).crash_abort()
    for holding in (in_array, ct.byref(in_record)):
        with pytest.raises(ffibox.StaleHandle) as stale:
            libc.memcpy(target, holding, 16)
        assert "0x%x" % handle in str(stale.value) and "generation 1" in str(stale.value)
    fresh = libc.malloc(16)
    assert libc.memcpy(target, (ct.c_void_p * 2)(None, fresh), 16) is not None


def test_handles_of_a_crashed_worker_are_stale_in_the_next_one(session):
    # Integers the library handed back (c_void_p handles) name the dead worker's memory:
    # passed back after the restart, each is refused as stale, never read in the new worker.
    from ffibox import ctypes as ct
    lib = session.CDLL(TEST_LIB)
    lib.handle_new.restype, lib.handle_new.argtypes = ct.c_void_p, [ct.c_int]
    lib.handle_get.argtypes = [ct.c_void_p]
    handles = [lib.handle_new(value) for value in range(3)]
    with pytest.raises(ffibox.WorkerCrashed):
        lib.crash_abort()
    for handle in reversed(handles):
        with pytest.raises(ffibox.StaleHandle):
            lib.handle_get(handle)
    fresh = lib.handle_new(7)
    assert lib.handle_get(fresh) == 7
    # The same for a handle the library stores through a void** out-parameter.
    lib.handle_out.argtypes = [ct.c_int, ct.POINTER(ct.c_void_p)]
    stored = ct.c_void_p()
    lib.handle_out(9, ct.byref(stored))
    assert lib.handle_get(stored) == 9
    with pytest.raises(ffibox.WorkerCrashed):
        lib.crash_abort()
    assert lib.add_int(2, 3) == 5  # the new worker
    with pytest.raises(ffibox.StaleHandle):
        lib.handle_get(stored)
    # A value that is no address (a sentinel such as (void*)1) is never stale.
    libc = session.CDLL("libc.so.6")
    libc.labs.restype, libc.labs.argtypes = ct.c_void_p, [ct.c_long]
    assert libc.labs(-1) == 1
    with pytest.raises(ffibox.WorkerCrashed):
        lib.crash_abort()
    assert lib.add_int(2, 3) == 5  # the new worker
    libc.labs.restype, libc.labs.argtypes = ct.c_long, [ct.c_void_p]
    assert libc.labs(1) == 1


def test_an_integer_the_caller_made_up_is_never_stale(session):
    # A number the caller passes where a void* goes (user data, a tag) that no worker
    # handed out is the library's to judge in whichever worker runs the call: right after a
    # crash too, before the session has heard of its new worker (it was sent as the dead
    # worker's, and refused as stale).
    from ffibox import ctypes as ct
    lib = session.CDLL(TEST_LIB)
    libc = session.CDLL("libc.so.6")
    libc.labs.restype, libc.labs.argtypes = ct.c_long, [ct.c_void_p]
    for _ in range(2):
        with pytest.raises(ffibox.WorkerCrashed):
            lib.crash_abort()
        assert libc.labs(0x12345678) == 0x12345678


def test_a_pointer_the_library_aimed_at_the_callers_record_outlives_the_worker(session):
    # A pointer the library returned and then set, through byref, to a caller's record is
    # the record's, not a worker's: after a crash the new worker gets the record (its
    # address in this process went to the new worker as the worker's, and crashed it).
    from ffibox import ctypes as ct

    class Node(ct.Structure):
        pass
    Node._fields_ = [("value", ct.c_int), ("next", ct.POINTER(Node))]
    lib = session.CDLL(TEST_LIB)
    lib.make_list.restype, lib.make_list.argtypes = ct.POINTER(Node), [ct.c_int]
    lib.store_node.argtypes = [ct.POINTER(ct.POINTER(Node)), ct.POINTER(Node)]
    lib.bump_list.argtypes = [ct.POINTER(Node), ct.c_int]
    mine = Node(5)
    found = lib.make_list(0)
    lib.store_node(ct.byref(found), mine)
    with pytest.raises(ffibox.WorkerCrashed):
        lib.crash_null_deref()
    assert found.contents.value == 5
    lib.bump_list(found, 1)
    assert mine.value == 6 and found[0].value == 6


def test_hang_is_call_timeout_and_next_call_works(session):
    lib = session.CDLL(TEST_LIB)
    started = time.monotonic()
    with pytest.raises(ffibox.CallTimeout):
        lib.hang_forever()
    assert time.monotonic() - started < 10
    assert lib.add_int(40, 2) == 42


def test_no_restart_session_stays_down(ffibox_client):
    with ffibox_client.session(restart=False) as s:
        lib = s.CDLL(TEST_LIB)
        with pytest.raises(ffibox.WorkerCrashed):
            lib.crash_null_deref()
        with pytest.raises(ffibox.Error):
            lib.add_int(1, 2)


def test_memory_limit_caps_the_session(ffibox_client):
    with ffibox_client.session(memory_limit=256 << 20) as capped, \
            ffibox_client.session() as uncapped:
        assert capped.CDLL(TEST_LIB).allocate_mib(512) == 0
        assert uncapped.CDLL(TEST_LIB).allocate_mib(512) == 1
        assert capped.CDLL(TEST_LIB).allocate_mib(16) == 1


def test_a_library_a_memory_limit_has_no_room_for_fails_naming_the_limit(ffibox_client):
    # The loader says only "failed to map segment from shared object": the error also names
    # the cap it did not fit under, so the user knows which setting to raise.
    large = os.path.join(os.path.dirname(TEST_LIB), "libffibox_large_data.so")
    with ffibox_client.session(memory_limit=128 << 20) as capped, \
            ffibox_client.session() as uncapped:
        with pytest.raises(ffibox.errors.LibraryLoadFailed) as failed:
            capped.CDLL(large)
        assert "failed to map segment" in str(failed.value) or \
            "cannot map zero-fill pages" in str(failed.value), failed.value
        assert "capped at 128 MiB, the session's memory limit" in str(failed.value)
        assert capped.CDLL(TEST_LIB).add_int(2, 3) == 5  # the session goes on
        assert uncapped.CDLL(large).large_data_byte(1 << 20) == 0
        with pytest.raises(ffibox.errors.LibraryLoadFailed) as missing:
            uncapped.CDLL("/nonexistent/libnothing.so")
        assert "capped" not in str(missing.value)


def test_memory_limit_below_the_minimum_is_refused(ffibox_client):
    with pytest.raises(ffibox.Error):
        ffibox_client.session(memory_limit=1 << 20)


def test_remote_pointers_of_a_dead_worker_are_stale(session):
    lib = session.CDLL(TEST_LIB)
    lib.greeting.restype = session_ctypes().c_void_p
    address = lib.greeting()
    pointer = session_ctypes().cast(
        ffibox.RemotePointer(session, address, session.generation, None),
        session_ctypes().c_char_p)
    assert pointer.value == b"hello, ffibox"
    with pytest.raises(ffibox.WorkerCrashed):
        lib.crash_null_deref()
    lib.add_int(1, 1)
    with pytest.raises(ffibox.StaleHandle):
        pointer.value


def session_ctypes():
    from ffibox import ctypes
    return ctypes


def test_bad_remote_address_is_memory_fault_not_a_crash(session):
    from ffibox import ctypes
    session.CDLL(TEST_LIB).add_int(1, 2)  # a worker, so that there is a generation
    with pytest.raises(ffibox.MemoryFault):
        ctypes.string_at(ffibox.RemotePointer(session, 16, session.generation, None), 4)


def test_library_not_allowed_is_an_os_error():
    assert issubclass(ffibox.LibraryNotAllowed, OSError)
    assert issubclass(ffibox.LibraryNotAllowed, ffibox.Error)


def test_sessions_are_isolated(ffibox_client):
    with ffibox_client.session() as a, ffibox_client.session() as b:
        lib_a, lib_b = a.CDLL(TEST_LIB), b.CDLL(TEST_LIB)
        assert (lib_a.counter_next(), lib_a.counter_next(), lib_b.counter_next()) == (1, 2, 1)
        with pytest.raises(ffibox.WorkerCrashed):
            lib_a.crash_null_deref()
        assert lib_b.counter_next() == 2


PRIVATE_SERVER_CHILD = textwrap.dedent("""
    import os, sys
    os.environ["FFIBOX_ADDRESS"] = "unix:/nonexistent-ffibox/ffiboxd.sock"
    from ffibox import ctypes, _server
    lib = ctypes.CDLL(sys.argv[1])
    assert lib.add_int(2, 3) == 5
    server = _server.private_server()
    print(server.process.pid, server.directory, flush=True)
    sys.stdin.read()
""")


def _descendants(pid):
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry))
    return children


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_private_server_and_workers_die_with_a_killed_client():
    # The session has a scratch directory (in the private directory), so that the server
    # must remove what its sessions made before its own directory can go.
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "client", "python"),
               FFIBOX_SCRATCH="1")
    child = subprocess.Popen([sys.executable, "-c", PRIVATE_SERVER_CHILD, TEST_LIB],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    pid, directory = child.stdout.readline().split(" ", 1)
    server_pid, directory = int(pid), directory.strip()
    workers = _descendants(server_pid)
    assert _alive(server_pid) and workers
    assert os.listdir(os.path.join(directory, "scratch"))  # the session's scratch directory
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (any(_alive(p) for p in [server_pid, *workers])
                                           or os.path.exists(directory)):
        time.sleep(0.05)
    assert not any(_alive(p) for p in [server_pid, *workers])
    # No atexit hook ran in the client: the server removed its directory, log included.
    assert not os.path.exists(directory), os.listdir(directory)


SWAP_BEFORE_FIRST_USE_CHILD = textwrap.dedent("""
    import os, sys
    os.environ["FFIBOX_ADDRESS"] = "unix:/nonexistent-ffibox/ffiboxd.sock"
    import ffibox.ctypes
    sys.modules["ctypes"] = ffibox.ctypes   # how a whole binding is swapped
    import ctypes
    libm = ctypes.CDLL("libm.so.6")
    libm.cos.restype = ctypes.c_double
    print(libm.cos(ctypes.c_double(0.0)), flush=True)
""")


def test_swapping_sys_modules_ctypes_before_first_use_starts_the_private_server():
    # The private server must start without running Python code in a forked child: with
    # ctypes swapped, such code would import ffibox.ctypes while another thread holds the
    # import lock, and hang.
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "client", "python"))
    result = subprocess.run([sys.executable, "-c", SWAP_BEFORE_FIRST_USE_CHILD],
                            capture_output=True, env=env, text=True, timeout=25)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1.0"


def test_a_handle_freed_in_a_del_at_interpreter_exit_is_quiet_and_nothing_hangs(shared_server):
    # A module-level object whose __del__ frees a native handle (rtree's, freetype's, many
    # bindings'): at exit the session is already closed (its reader thread cannot answer
    # during teardown), and the call does nothing, as the stdlib's leaves nothing to see.
    result = run_script("""
import os, sys
import ffibox.ctypes as ctypes
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
class Handle:
    def __init__(self):
        self.p = libc.malloc(16)
    def __del__(self):
        libc.free(self.p)
handle = Handle()
print("made", bool(handle.p), flush=True)
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "made True\n"
    assert result.stderr == "", result.stderr


def test_what_a_del_does_at_interpreter_exit_is_quiet_whatever_it_touches(shared_server):
    # As bindings' __del__ methods do at exit (python3-tidylib, python3-z3, python3-sdl2): a
    # function named for the first time there, a result checked against an error code, a
    # field of library memory read, a string and a pointer field of it: each does nothing
    # and gives zero (NULL, an empty string), quietly.
    result = run_script("""
import sys
import ffibox.ctypes as ctypes
libc = ctypes.CDLL("libc.so.6")
libc.abs.restype = ctypes.c_int
libc.abs(0)
class Rec(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_int), ("name", ctypes.c_char_p),
                ("next", ctypes.c_void_p), ("scale", ctypes.c_double)]
libc.calloc.restype = ctypes.POINTER(Rec)
rec = libc.calloc(1, ctypes.sizeof(Rec))
rec.contents.flags = 7
class Ast(ctypes.c_void_p):  # as python3-z3's
    def __init__(self, handle):
        self._as_parameter_ = handle
class Teardown:
    # What __del__ uses is held here: module globals may be gone when it runs.
    def __init__(self):
        self.ctypes, self.libc, self.rec, self.out = ctypes, libc, rec, sys.stdout
    def __del__(self):
        ctypes, libc, rec = self.ctypes, self.libc, self.rec
        seen = []
        libc.malloc.restype = ctypes.c_void_p
        seen.append(libc.malloc(8))              # named for the first time here
        seen.append(libc.abs(-5))                # an int result
        libc.strtod.restype = ctypes.c_double
        seen.append(libc.strtod(b"1.5", None))
        libc.strdup.restype = ctypes.POINTER(Rec)
        seen.append(bool(libc.strdup(b"x")))     # a NULL pointer object
        libc.getenv.restype = Ast                # a subclass whose __init__ takes a handle
        made = libc.getenv(b"HOME")
        seen.append((type(made).__name__, made.value))
        seen.append([rec.contents.flags, rec.contents.name, rec.contents.next,
                     rec.contents.scale])
        rec.contents.flags = 9                   # a write does nothing
        ctypes.memset(rec, 1, 4)
        self.out.write(repr(seen) + "\\n")
        self.out.flush()
keep = Teardown()
print("made", rec.contents.flags, flush=True)
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("made 7\n[None, 0, 0.0, False, ('Ast', None), "
                             "[0, None, None, 0.0]]\n"), result.stdout
    assert result.stderr == "", result.stderr


FINALIZERS_ON_GRPC_THREADS = """
import gc, os, sys, time
os.environ["FFIBOX_ADDRESS"] = sys.argv[1]
os.environ["FFIBOX_SAME_HOST"] = "0"
from ffibox import ctypes as ct
libc = ct.CDLL("libc.so.6")
for name, restype, argtypes in (("calloc", ct.c_void_p, [ct.c_size_t, ct.c_size_t]),
                                ("memset", ct.c_void_p, [ct.c_void_p, ct.c_int, ct.c_size_t]),
                                ("malloc", ct.c_void_p, [ct.c_size_t]),
                                ("free", None, [ct.c_void_p]),
                                ("abs", ct.c_int, [ct.c_int])):
    getattr(libc, name).restype, getattr(libc, name).argtypes = restype, argtypes
ROUNDS, PER_ROUND = 5, 300
marks = libc.calloc(ROUNDS * PER_ROUND, 1)  # each handle's finalizer marks its byte
stream = libc.session.stream
on_event_loop = []
class Handle:
    def __init__(self, index):
        self.index = index
        self.p = libc.malloc(16)
        self.cycle = self  # freed by the collector, on whichever thread it runs
    def __del__(self):
        on_event_loop.append(stream.defers_calls_here())
        libc.memset(marks + self.index, 1, 1)
        libc.free(self.p)
gc.set_threshold(1, 1, 1)  # the collector runs on every thread that allocates, gRPC's too
made = 0
for _ in range(ROUNDS):  # until the collector has run on gRPC's thread (a machine's load
    for i in range(PER_ROUND):  # decides where it runs)
        Handle(made)
        made += 1
        assert libc.abs(-i) == i
    if any(on_event_loop):
        break
gc.set_threshold(700, 10, 10)
deadline = time.monotonic() + 10  # those made on the event loop run a moment later
while (len(on_event_loop) < made or ct.string_at(marks, made).count(1) < made) and \
        time.monotonic() < deadline:
    gc.collect()  # (a collection running on another thread meanwhile makes this one a no-op)
    time.sleep(0.01)
print(len(on_event_loop) == made, any(on_event_loop), ct.string_at(marks, made).count(1) == made)
"""


def test_a_finalizer_on_grpcs_own_thread_does_not_stop_the_session(shared_server):
    # pycryptodome's and many bindings' __del__ free native handles; Python runs a finalizer
    # on whatever thread its collector runs, the gRPC channel's event loop too, which
    # delivers the answers: a call made there waited for itself, and the session hung. Such
    # calls run on a thread of ffibox's own; nothing hangs, and every one runs.
    result = run_script(FINALIZERS_ON_GRPC_THREADS, shared_server.address)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "True True True\n", result.stdout
    assert "Exception" not in result.stderr, result.stderr


DEFAULT_SESSION_HANG = """
import sys, time
import ffibox
from ffibox import ctypes
lib = ctypes.CDLL(sys.argv[1])
started = time.monotonic()
try:
    lib.hang_forever()
except ffibox.CallTimeout:
    print("timeout", time.monotonic() - started < 5)
print(lib.add_int(2, 3))
"""


def test_ffibox_timeout_sets_the_default_sessions_deadline(shared_server, monkeypatch):
    # A program that only swapped its import has no session to pass `timeout=` to.
    monkeypatch.setenv("FFIBOX_TIMEOUT", "0.5")
    result = run_script(DEFAULT_SESSION_HANG, TEST_LIB)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["timeout", "True", "5"]
    monkeypatch.setenv("FFIBOX_TIMEOUT", "soon")
    result = run_script(DEFAULT_SESSION_HANG, TEST_LIB)
    assert result.returncode != 0
    assert "$FFIBOX_TIMEOUT is 'soon': expected a positive number of seconds" in result.stderr


def probe_under(script, *flags):
    """The CompletedProcess of Python `script` run against a server of its own started with
    `flags` (a jail policy, a configuration)."""
    server = Server(*flags)
    try:
        return run_script(script, server.address)
    finally:
        server.stop()


MEMFD_PROBE = """
import errno, sys
import ffibox
from ffibox import ctypes as ct
session = ffibox.connect(sys.argv[1]).session()
libc = session.CDLL("libc.so.6", use_errno=True)
libc.memfd_create.argtypes = [ct.c_char_p, ct.c_uint]
fd = libc.memfd_create(b"pool", 1)  # MFD_CLOEXEC
print(fd >= 0, errno.errorcode.get(ct.get_errno()) if fd < 0 else "", session.generation)
"""


@pytest.mark.parametrize("policy,config,expected", [
    ("strict", "", "False ENOSYS 1"),
    ("permissive", "", "True  1"),
    ("strict", 'jail { extra_syscalls: "memfd_create" }', "True  1"),
])
def test_memfd_create_fails_with_enosys_unless_the_policy_allows_it(tmp_path, policy, config,
                                                                   expected):
    # PulseAudio's memory pool (SDL_Init of audio) and Wayland's buffers fall back to other
    # memory when memfd_create fails; under the strict policy it fails, and the worker lives.
    path = tmp_path / "ffiboxd.conf"
    path.write_text(config)
    result = probe_under(MEMFD_PROBE, "--jail_policy=" + policy, "--config=%s" % path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


SOCKETPAIR_PROBE = """
import errno, sys
import ffibox
from ffibox import ctypes as ct
session = ffibox.connect(sys.argv[1]).session()
libc = session.CDLL("libc.so.6", use_errno=True)
pair = (ct.c_int * 2)(-1, -1)
made = libc.socketpair(1, 1, 0, pair)  # AF_UNIX, SOCK_STREAM
print(made, errno.errorcode.get(ct.get_errno(), "") if made else "", session.generation)
"""


@pytest.mark.parametrize("config,expected", [
    ("", "-1 EACCES 1"),
    ('jail { extra_syscalls: "socketpair" }', "0  1"),
])
def test_socketpair_fails_with_eacces_unless_the_configuration_adds_it(tmp_path, config,
                                                                       expected):
    # An extra syscall replaces the policy's own refusal of it (it stayed EACCES).
    path = tmp_path / "ffiboxd.conf"
    path.write_text(config)
    result = probe_under(SOCKETPAIR_PROBE, "--config=%s" % path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


INOTIFY_PROBE = """
import errno, sys
import ffibox
from ffibox import ctypes as ct
session = ffibox.connect(sys.argv[1]).session()
libc = session.CDLL("libc.so.6", use_errno=True)
fds = [libc.inotify_init1(0o2000000) for _ in range(200)]  # IN_CLOEXEC
print(sum(fd >= 0 for fd in fds), errno.errorcode.get(ct.get_errno(), ""), end=" ")
# A binding that does not look at the result (aionotify) watches on -1; fanotify likewise.
libc.inotify_add_watch.argtypes = [ct.c_int, ct.c_char_p, ct.c_uint32]
libc.fanotify_mark.argtypes = [ct.c_int, ct.c_uint, ct.c_uint64, ct.c_int, ct.c_char_p]
for call in (lambda: libc.inotify_add_watch(-1, b"/tmp", 2), lambda: libc.inotify_rm_watch(-1, 1),
             lambda: libc.fanotify_init(0, 0), lambda: libc.fanotify_mark(-1, 1, 2, -100, b"/")):
    ct.set_errno(0)
    print(call(), errno.errorcode.get(ct.get_errno(), ""), end=" ")
print(session.generation)
"""


LINK_PROBE = """
import errno, sys
import ffibox
from ffibox import ctypes as ct
session = ffibox.connect(sys.argv[1]).session()
libc = session.CDLL("libc.so.6", use_errno=True)
libc.fopen.restype = ct.c_void_p
libc.fclose.argtypes = [ct.c_void_p]
libc.fclose(libc.fopen(b"/tmp/original", b"w"))
linked = libc.link(b"/tmp/original", b"/tmp/second-name")
print(linked, errno.errorcode.get(ct.get_errno(), "") if linked else "", session.generation)
"""


@pytest.mark.parametrize("policy,expected", [("strict", "-1 EPERM 1"), ("permissive", "0  1")])
def test_hard_links_fail_with_eperm_under_strict_and_work_under_permissive(policy, expected):
    # In a scratch directory on a host with fs.protected_hardlinks off, a link could give a
    # file of the caller's the name of the library's expected output: refused, not a kill.
    result = probe_under(LINK_PROBE, "--jail_policy=" + policy)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("policy", ["strict", "permissive"])
def test_inotify_fails_with_enosys_whatever_the_policy(tmp_path, policy):
    # The kernel counts inotify instances against the host user that owns the workers'
    # namespaces (root here): 200 of them in one permissive worker took all 128 of the
    # host's root, so the host's own inotify_init failed while the session lived. It fails
    # in the worker instead, which lives on (glib polls without it).
    # (The worker's watches and fanotify too: they killed it.)
    result = probe_under(INOTIFY_PROBE, "--jail_policy=" + policy)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 ENOSYS " + "-1 ENOSYS " * 4 + "1"


@pytest.mark.parametrize("policy", ["strict", "permissive"])
def test_libraries_linking_libcap_ng_load(policy):
    # libcap-ng's constructor asks whether an ambient capability is set, which killed the
    # worker under either policy: libcap-ng, libaudit and libpam (every PAM binding) could
    # never load.
    server = Server("--jail_policy=" + policy)
    try:
        with ffibox.connect(server.address) as client, client.session() as session:
            for name in ("libcap-ng.so.0", "libaudit.so.1", "libpam.so.0"):
                session.CDLL(name)
            pam = session.CDLL("libpam.so.0")
            pam.pam_strerror.restype = stdlib_ctypes.c_char_p
            assert pam.pam_strerror(None, 7) == b"Authentication failure"
            assert session.generation == 1
    finally:
        server.stop()


def test_posix_shared_memory_works_in_the_jail_and_a_named_semaphore_fails(session):
    # shm_open lives in /dev/shm: LLVM's OpenMP runtime (pythran's omp) aborted the worker at
    # its first call without it. The jail's own, private one. sem_open links its semaphore
    # there, and hard links fail with EPERM under the strict policy: it fails, the worker
    # lives.
    import errno
    from ffibox import ctypes as ct
    libc = session.CDLL("libc.so.6", use_errno=True)
    libc.shm_open.argtypes = [ct.c_char_p, ct.c_int, ct.c_uint]
    fd = libc.shm_open(b"/ffibox-test", os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o600)
    assert fd >= 0, errno.errorcode.get(ct.get_errno())
    libc.ftruncate.argtypes = [ct.c_int, ct.c_long]
    assert libc.ftruncate(fd, 4096) == 0
    libc.shm_unlink.argtypes = [ct.c_char_p]
    assert libc.shm_unlink(b"/ffibox-test") == 0
    libc.sem_open.restype = ct.c_void_p
    libc.sem_open.argtypes = [ct.c_char_p, ct.c_int, ct.c_uint, ct.c_uint]
    assert libc.sem_open(b"/ffibox-sem", os.O_CREAT, 0o600, 1) is None  # SEM_FAILED
    assert ct.get_errno() == errno.EPERM
    assert not os.path.exists("/dev/shm/ffibox-test")  # not the host's
    assert libc.getpid() > 0 and session.generation == 1


def test_empty_files_past_the_sessions_memory_are_its_out_of_memory_kill(tmp_path):
    # A tmpfs's files cost kernel memory, which the worker's cgroup counts: a library that
    # fills a large /tmp with empty files (an operator's tmp_bytes of 16 GiB: 4 M files
    # allowed) until its session's 1 GiB runs out is killed by the kernel, and the caller is
    # told so. Its init then takes a while to tear the namespace down, past ffiboxd's grace:
    # the caller was told "closed its channel but kept running; ffiboxd killed it".
    config = tmp_path / "ffiboxd.conf"
    config.write_text("jail { tmp_bytes: %d }\nlimits { session_memory_bytes: %d }\n"
                      % (16 << 30, 1 << 30))
    server = Server("--config=%s" % config)
    try:
        with ffibox.connect(server.address) as client, client.session() as session:
            assert "cgroup" in session.jail_layers
            from ffibox import ctypes as ct
            probe = session.CDLL(PROBE_LIB)
            probe.probe_fill_with_empty_files.restype = ct.c_long
            probe.probe_fill_with_empty_files.argtypes = [ct.c_char_p, ct.c_long]
            with pytest.raises(ffibox.Error) as killed:
                probe.probe_fill_with_empty_files(b"/tmp", 4 << 20)
            assert killed.value.code == "RESOURCE_EXHAUSTED", killed.value
            assert "out-of-memory killer" in str(killed.value), killed.value
            assert probe.probe_fill_with_empty_files(b"/tmp", 10) == 10  # a fresh worker
    finally:
        server.stop()


@pytest.mark.parametrize("how", ["exits", "crashes"])
def test_a_library_that_gives_up_when_its_address_space_runs_out_is_told_of_the_cap(
        ffibox_client, how):
    # A JIT or an emulator reserves large ranges (unicorn: 1 GiB an engine), and gives up when
    # a reservation fails: the worker's address space is capped at the session's memory
    # limit, which the caller only learnt from "worker exited with status 1".
    from ffibox import ctypes as ct
    with ffibox_client.session(memory_limit=512 << 20) as session:
        probe = session.CDLL(PROBE_LIB)
        probe.probe_reserve_address_space_then.argtypes = [ct.c_int]
        with pytest.raises(ffibox.WorkerCrashed) as gave_up:
            probe.probe_reserve_address_space_then(0 if how == "exits" else 1)
        message = str(gave_up.value)
        assert ("worker exited with status 1" if how == "exits" else "SIGSEGV") in message
        assert "MiB of address space mapped, of its cap of 512 MiB" in message, message
        with pytest.raises(ffibox.WorkerCrashed) as plain:
            session.CDLL(TEST_LIB).crash_null_deref()  # far below the cap: nothing of it
        assert "address space" not in str(plain.value), plain.value


@pytest.mark.parametrize("limit,expected", [(None, "4 False"), ("8G", "8 True")])
def test_ffibox_memory_limit_raises_the_private_servers_cap(limit, expected):
    # The one-import swap's private server caps each worker's address space at 4 GiB, too
    # little for a library that reserves large ranges (four unicorn engines):
    # FFIBOX_MEMORY_LIMIT gives its sessions another cap.
    script = textwrap.dedent("""
        import os, sys
        os.environ.pop("FFIBOX_ADDRESS", None)
        os.environ.pop("FFIBOX_MEMORY_LIMIT", None)
        if sys.argv[2] != "None":
            os.environ["FFIBOX_MEMORY_LIMIT"] = sys.argv[2]
        from ffibox import ctypes
        probe = ctypes.CDLL(sys.argv[1])
        probe.probe_reserve_address_space_then.argtypes = [ctypes.c_int]
        print(probe.session.memory_limit >> 30, probe.probe_reserve_address_space_then(2) > 4096)
    """)
    done = run_script(script, PROBE_LIB, str(limit))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_the_word_lists_debian_links_from_usr_lib_are_readable_in_the_jail(session):
    # /usr/lib/aspell/*.rws are links into /var/lib/aspell (scripts/install-deps.sh installs
    # aspell-en): without it shown, enchant silently took another speller.
    from ffibox import ctypes as ct
    path = b"/usr/lib/aspell/en-common.rws"
    assert os.readlink(path).startswith(b"/var/lib/aspell/")
    libc = session.CDLL("libc.so.6")
    libc.fopen.restype = ct.c_void_p
    libc.fopen.argtypes = [ct.c_char_p, ct.c_char_p]
    libc.fread.argtypes = [ct.c_char_p, ct.c_size_t, ct.c_size_t, ct.c_void_p]
    libc.fclose.argtypes = [ct.c_void_p]
    stream = libc.fopen(path, b"rb")
    assert stream, "the worker cannot read %s" % path
    head = ct.create_string_buffer(16)
    assert libc.fread(head, 1, 16, stream) == 16
    libc.fclose(stream)
    with open(path, "rb") as f:
        assert head.raw == f.read(16)


def test_process_times_and_numa_policy_calls_are_allowed(session):
    # ImageMagick's MagickWandGenesis calls times(); libnuma, which its coders load, asks for
    # the memory policy: each killed the worker under the strict policy.
    import errno
    from ffibox import ctypes as ct
    libc = session.CDLL("libc.so.6", use_errno=True)
    libc.times.argtypes = [ct.c_void_p]
    libc.times.restype = ct.c_long
    spent = (ct.c_long * 4)()
    assert libc.times(spent) != -1
    mode = ct.c_int(-1)
    libc.syscall.restype = ct.c_long
    found = libc.syscall(ct.c_long(239), ct.byref(mode), None, ct.c_ulong(0), None,
                         ct.c_ulong(0))  # get_mempolicy
    assert found == 0 and mode.value >= 0 or ct.get_errno() == errno.ENOSYS
    assert libc.syscall(ct.c_long(238), ct.c_int(0), None, ct.c_ulong(0)) in (0, -1)
    generation = session.generation
    assert libc.getpid() > 0 and session.generation == generation


def test_a_file_may_be_made_private_but_not_executable(session):
    # ImageMagick makes the temporary file of a blob 0600 with fchmod; a mode with execute,
    # set-id or sticky bits, or that lets others in, fails with EPERM (through chmod,
    # fchmod and fchmodat alike), and the worker lives: SQLite asks for its database's mode
    # for a journal and goes on without it. So do owners (SQLite's fchown of a journal).
    from ffibox import ctypes as ct
    libc = session.CDLL("libc.so.6", use_errno=True)
    libc.open.argtypes = [ct.c_char_p, ct.c_int, ct.c_int]
    libc.fchmod.argtypes = [ct.c_int, ct.c_uint]
    libc.chmod.argtypes = [ct.c_char_p, ct.c_uint]
    libc.fchmodat.argtypes = [ct.c_int, ct.c_char_p, ct.c_uint, ct.c_int]
    libc.fchown.argtypes = [ct.c_int, ct.c_uint, ct.c_uint]
    libc.chown.argtypes = [ct.c_char_p, ct.c_uint, ct.c_uint]
    fd = libc.open(b"/tmp/made", os.O_CREAT | os.O_WRONLY, 0o644)
    assert fd >= 0, ct.get_errno()
    generation = session.generation
    assert libc.fchmod(fd, 0o600) == 0 and libc.fchmod(fd, 0o400) == 0
    assert libc.chmod(b"/tmp/made", 0o600) == 0
    assert libc.fchmodat(-100, b"/tmp/made", 0o200, 0) == 0  # AT_FDCWD
    # fchmodat2 (Linux 6.6, x86_64's 452), which newer C libraries call for fchmodat with
    # flags, by the same rules (a violation before).
    libc.syscall.restype = ct.c_long
    fchmodat2 = lambda mode: libc.syscall(ct.c_long(452), ct.c_int(-100), b"/tmp/made",
                                          ct.c_uint(mode), ct.c_int(0))
    assert fchmodat2(0o600) == 0, ct.get_errno()
    refused = []
    for mode in (0o700, 0o4600, 0o2600, 0o1600, 0o666, 0o640, 0o604, 0o610):
        for change in (lambda: libc.fchmod(fd, mode), lambda: libc.chmod(b"/tmp/made", mode),
                       lambda: libc.fchmodat(-100, b"/tmp/made", mode, 0),
                       lambda: fchmodat2(mode)):
            ct.set_errno(0)
            refused.append((change(), ct.get_errno()))
    assert refused == [(-1, errno.EPERM)] * 32
    ct.set_errno(0)
    assert (libc.fchown(fd, 0, 0), ct.get_errno()) == (-1, errno.EPERM)
    assert (libc.chown(b"/tmp/made", 0, 0), ct.get_errno()) == (-1, errno.EPERM)
    assert session.generation == generation  # the same worker throughout


def test_a_thread_with_a_descriptor_table_of_its_own_is_a_violation(session):
    # A thread cloned without CLONE_FILES had RLIMIT_NOFILE descriptors of its own: one
    # worker's epoll watches took every one the host gives the workers' uid, failing epoll in
    # every other session.
    from ffibox import ctypes as ct
    libc = session.CDLL("libc.so.6")
    libc.syscall.restype = ct.c_long
    clone_vm, clone_sighand, clone_thread = 0x100, 0x800, 0x10000
    with pytest.raises(ffibox.SandboxViolation, match="clone"):
        libc.syscall(ct.c_long(56), ct.c_ulong(clone_vm | clone_sighand | clone_thread), None,
                     None, None, ct.c_ulong(0))
    assert libc.getpid() > 0  # a new worker
    # Nor may a thread unshare its table with close_range(CLOSE_RANGE_UNSHARE): EPERM, and
    # close_range without it closes as it did.
    import errno
    libc = session.CDLL("libc.so.6", use_errno=True)
    libc.syscall.restype = ct.c_long
    close_range = lambda flags: libc.syscall(ct.c_long(436), ct.c_uint(900), ct.c_uint(910),
                                             ct.c_uint(flags))
    generation = session.generation
    ct.set_errno(0)
    assert (close_range(2), ct.get_errno()) == (-1, errno.EPERM)  # CLOSE_RANGE_UNSHARE
    assert close_range(0) == 0 and session.generation == generation


def test_sockets_of_other_families_and_socket_pairs_fail_with_eacces(session):
    # libcurl probes IPv6 as it starts (curl_version killed the worker) and makes a socket
    # pair for its multi interface: each is refused as a security module would, with no
    # socket made, and the worker lives.
    import errno
    from ffibox import ctypes as ct
    libc = session.CDLL("libc.so.6", use_errno=True)
    generation = session.generation
    refused = []
    for family in (2, 10, 17, 44, 1000):  # INET, INET6, PACKET, XDP, none
        ct.set_errno(0)
        refused.append((libc.socket(family, 1, 0), ct.get_errno()))
    pair = (ct.c_int * 2)(-1, -1)
    ct.set_errno(0)
    refused.append((libc.socketpair(1, 1, 0, pair), ct.get_errno()))
    assert refused == [(-1, errno.EACCES)] * 6
    assert list(pair) == [-1, -1] and session.generation == generation


def test_a_variable_viewed_before_a_crash_is_found_again_in_the_new_worker(session):
    # gumbo keeps in_dll views from its import: after one crash each raised StaleHandle for
    # good, where functions are looked up again.
    from ffibox import ctypes as ct
    lib = session.CDLL(TEST_LIB)
    scale = ct.c_double.in_dll(lib, "ffibox_scale")
    version = ct.c_char_p.in_dll(lib, "ffibox_version")
    scale.value = 3.5
    with pytest.raises(ffibox.WorkerCrashed):
        session.CDLL("libc.so.6").abort()
    assert scale.value == 2.25  # the new worker's, as the library starts it
    assert version.value == b"ffibox-test 1.0"
    scale.value = 4.0
    lib.origin_norm1.restype = ct.c_double
    assert ct.c_double.in_dll(lib, "ffibox_scale").value == 4.0


def test_advice_about_a_files_pages_is_allowed(session):
    # libmpv advises on the files it opens (posix_fadvise); it killed the worker under the
    # strict policy.
    from ffibox import ctypes as ct
    libc = session.CDLL("libc.so.6", use_errno=True)
    libc.open.argtypes = [ct.c_char_p, ct.c_int]
    fd = libc.open(b"/etc/ld.so.cache", os.O_RDONLY)  # in the jail's view
    assert fd >= 0, ct.get_errno()
    libc.posix_fadvise.argtypes = [ct.c_int, ct.c_long, ct.c_long, ct.c_int]
    assert libc.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL) == 0
    libc.readahead.argtypes = [ct.c_int, ct.c_long, ct.c_size_t]
    libc.readahead.restype = ct.c_ssize_t
    assert libc.readahead(fd, 0, 4096) == 0
    generation = session.generation
    assert libc.close(fd) == 0 and session.generation == generation


def test_the_console_reads_sdl_makes_fail_and_tiocsti_is_a_violation(session):
    # SDL_Init's probes of a Linux console (KDGKBLED, KDGKBDIACR, on no descriptor): errors
    # in the jail, as in-process without a console; typing into a terminal is not allowed.
    import errno
    from ffibox import ctypes as ct
    libc = session.CDLL("libc.so.6", use_errno=True)
    libc.ioctl.argtypes = [ct.c_int, ct.c_ulong, ct.c_void_p]
    buffer = ct.create_string_buffer(1024)
    for request in (0x4B64, 0x4B4A, 0x4B33):  # KDGKBLED, KDGKBDIACR, KDGKBTYPE
        assert libc.ioctl(-1, request, buffer) == -1
        assert ct.get_errno() == errno.EBADF
    with pytest.raises(ffibox.SandboxViolation) as violation:
        libc.ioctl(1, 0x5412, buffer)  # TIOCSTI
    assert violation.value.syscall == "ioctl"
