"""Python signal handlers that call foreign functions, as they may with the stdlib ctypes.

Python runs a signal handler on the main thread between two bytecodes, so with ffibox it can
run in the middle of the client's own work for a call: while it holds a lock, or while its
request is on the same-host channel. The handler's calls must never wait for that thread
(a hang): they are served, or refused at once with FAILED_PRECONDITION where the worker
could only serve them after the interrupted call, which waits for the handler
(docs/python.md, "Signal handlers"). The interrupted call gives its own answer. The same
holds for code the client's own threads run: a finalizer gc runs there, the output handler.
"""
import ctypes as stdlib_ctypes
import gc
import json
import signal
import textwrap
import threading
import time

import pytest

import ffibox
from conftest import TEST_LIB, run_script
from ffibox import _addresses, _local_channel
from ffibox import ctypes as ct
from ffibox._stream import SessionStream
from ffibox._twins import TwinTable


class Hung(Exception):
    pass


@pytest.fixture
def hang_alarm():
    """Raises Hung on the main thread after 20 s: a lock acquisition that waits for its own
    thread is interrupted by it, so a hang fails the test instead of the suite."""
    def ring(signum, frame):
        raise Hung("the main thread waited 20 s: a signal handler's call waited for it")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


class SignalWhileHeld:
    """A lock that, the first time it is acquired, raises `signum` on this thread while
    holding it: Python runs the signal's handler before the acquisition returns."""

    def __init__(self, lock, signum):
        self._lock, self._signum, self.raised = lock, signum, False

    def acquire(self, blocking=True, timeout=-1):
        taken = self._lock.acquire(blocking, timeout)
        if taken and not self.raised:
            self.raised = True
            signal.raise_signal(self._signum)
        return taken

    def release(self):
        self._lock.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def handle_with(signum, call):
    """Installs a handler of `signum` that runs `call()`; returns the list it appends the
    result, or the ffibox.Error's code, to."""
    seen = []

    def handler(number, frame):
        try:
            seen.append(call())
        except ffibox.Error as error:
            seen.append(error.code)

    signal.signal(signum, handler)
    return seen


def test_a_handler_calling_on_another_same_host_session_while_a_channel_fences(
        server, monkeypatch, hang_alarm):
    """The handler runs while this thread is inside the channel's memory fence of one
    session (it holds the fence's lock) and calls on another session's channel, whose
    writes fence too."""
    with ffibox.connect(server.address) as client, \
            client.session(same_host=True) as first, client.session(same_host=True) as second:
        libc_first = first.CDLL("libc.so.6")
        libc_second = second.CDLL("libc.so.6")
        assert libc_first.labs(-1) == 1 and libc_second.labs(-2) == 2
        assert first.stream.local_enabled and second.stream.local_enabled
        fence = SignalWhileHeld(_local_channel._fence_lock, signal.SIGUSR1)
        seen = handle_with(signal.SIGUSR1, lambda: libc_second.labs(-5))
        try:
            monkeypatch.setattr(_local_channel, "_fence_lock", fence)
            assert libc_first.labs(-3) == 3
        finally:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        assert fence.raised
        assert seen == [5]
        assert first.stream.local_enabled and second.stream.local_enabled
        assert libc_first.labs(-4) == 4 and libc_second.labs(-6) == 6


@pytest.mark.parametrize("same_host", [True, False])
def test_a_handler_calling_while_the_client_notes_an_address(server, monkeypatch, hang_alarm,
                                                              same_host):
    """The handler runs while this thread holds the lock of the addresses the caller sent
    as integers, and passes such an address itself."""
    with ffibox.connect(server.address) as client, \
            client.session(same_host=same_host) as session:
        lib = session.CDLL(TEST_LIB)
        same = lib.ptr_offset  # (char*)p + 0: the caller's address handed back
        same.restype = ct.c_void_p
        same.argtypes = [ct.c_void_p, ct.c_long]
        mine = stdlib_ctypes.create_string_buffer(8)
        theirs = stdlib_ctypes.create_string_buffer(8)
        at, other = stdlib_ctypes.addressof(mine), stdlib_ctypes.addressof(theirs)
        assert same(at, 0) == at
        held = SignalWhileHeld(_addresses._lock, signal.SIGUSR1)
        seen = handle_with(signal.SIGUSR1, lambda: same(other, 0))
        try:
            monkeypatch.setattr(_addresses, "_lock", held)
            assert same(at, 0) == at
        finally:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        assert held.raised
        # Before the call's request was written: served (through the broker on the
        # same host, as the thread holds the channel).
        assert seen == [other]
        assert same(other, 0) == other


STORM = textwrap.dedent("""
    import json, signal, sys, time
    import ffibox
    from ffibox import ctypes as ct
    address, lib_path, same_host, seconds = sys.argv[1], sys.argv[2], sys.argv[3] == "1", \\
        float(sys.argv[4])
    session = ffibox.connect(address).session(same_host=same_host)
    lib = session.CDLL(lib_path)
    lib.add_int.argtypes = [ct.c_int, ct.c_int]
    lib.add_int.restype = ct.c_int
    libc = session.CDLL("libc.so.6")
    libc.strlen.argtypes = [ct.c_char_p]
    libc.strlen.restype = ct.c_size_t
    libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
    assert lib.add_int(0, 1) == 1 and libc.strlen(b"x") == 1
    seen = {"served": 0, "refused": 0, "wrong": [], "main": 0, "main_wrong": [],
            "same_host": session.stream.local_enabled}
    inside = []

    def handler(signum, frame):
        if inside:
            return  # one handler at a time, as a handler slower than the timer would nest
        inside.append(1)
        try:
            k = 1000 + seen["served"]
            got = (lib.add_int(k, 1), libc.strlen(b"abc"))
            if got != (k + 1, 3):
                seen["wrong"].append([k, list(got)])
            seen["served"] += 1
        except ffibox.Error as error:
            if error.code != "FAILED_PRECONDITION":
                seen["wrong"].append(str(error))
            seen["refused"] += 1
        finally:
            inside.pop()

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    end = time.monotonic() + seconds
    n = 0
    kept = []  # fresh buffers each call, a few alive: their twins are made and released
    while time.monotonic() < end:
        buffer = (ct.c_char * 64)()
        kept = kept[-8:] + [buffer]
        try:
            libc.memset(buffer, 65 + n % 26, 64)
            got = (lib.add_int(n, 2), libc.strlen(b"hello"), buffer.raw)
            if got != (n + 2, 5, bytes([65 + n % 26]) * 64):
                seen["main_wrong"].append([n, repr(got)])
        except Exception as error:  # the interrupted calls give their own answers
            seen["main_wrong"].append([n, repr(error)])
        n += 1
    signal.setitimer(signal.ITIMER_REAL, 0)
    seen["main"] = n
    twins = session.twins
    seen["twins_in_step"] = (twins._local_starts == sorted(twins._by_local) and
                             twins._worker_starts == sorted(twins._by_worker))
    print(json.dumps(seen))
""")


@pytest.mark.parametrize("same_host", [True, False])
def test_a_timers_handler_calling_during_a_stream_of_calls(server, same_host):
    """A handler called every 2 ms (SIGALRM) calls two functions while the main thread
    calls them and fills fresh buffers back to back for 4 s, in a process of its own: it
    never hangs, no answer is wrong or lost, the table of the caller's buffers in the
    worker stays in step, and the handler's calls are served (or refused with
    FAILED_PRECONDITION: on the same-host channel while the interrupted call's request is on
    it, or while the interrupted thread updated that table)."""
    result = run_script(STORM, server.address, TEST_LIB, "1" if same_host else "0", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["same_host"] is same_host
    assert seen["main_wrong"] == [] and seen["wrong"] == []
    assert seen["twins_in_step"]
    assert seen["main"] > 100
    assert seen["served"] > 20


def test_a_handlers_uncaught_refusal_interrupts_the_call_and_the_channel_comes_back(
        server, monkeypatch, hang_alarm):
    """A handler that runs while this thread's call (one passing a string: its answer is not
    known to be small) waits for its answer on the same-host channel and lets the refusal of
    its own call escape: the call raises that very error, as any exception a handler raises
    interrupts what it ran in; the channel, out of step, is closed, and the next worker
    answer over the stream opens a new one."""
    with ffibox.connect(server.address) as client, client.session(same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        lib.add_int.argtypes = [ct.c_int, ct.c_int]
        libc = session.CDLL("libc.so.6")
        libc.strlen.argtypes = [ct.c_char_p]
        libc.strlen.restype = ct.c_size_t
        assert lib.add_int(1, 1) == 2 and libc.strlen(b"x") == 1
        assert session.stream.local_enabled
        raised = []

        def handler(signum, frame):
            try:
                lib.add_int(5, 5)
            except ffibox.Error as error:
                raised.append(error)
                raise

        original = _local_channel.LocalChannel._read_frame

        def read_after_signal(self, *args):
            monkeypatch.setattr(_local_channel.LocalChannel, "_read_frame", original)
            signal.raise_signal(signal.SIGUSR1)
            return original(self, *args)

        signal.signal(signal.SIGUSR1, handler)
        try:
            monkeypatch.setattr(_local_channel.LocalChannel, "_read_frame", read_after_signal)
            with pytest.raises(ffibox.Error) as interrupted:
                libc.strlen(b"hello")
        finally:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        assert len(raised) == 1 and interrupted.value is raised[0]
        assert interrupted.value.code == "FAILED_PRECONDITION"
        assert lib.add_int(3, 3) == 6  # through the stream: the channel was closed
        assert [lib.add_int(i, 1) for i in range(3)] == [1, 2, 3]
        assert session.stream.local_enabled  # a new one


def libc_with_labs(session):
    """`session`'s libc with labs typed (long -> long) and called once."""
    libc = session.CDLL("libc.so.6")
    libc.labs.argtypes = [ct.c_long]
    libc.labs.restype = ct.c_long
    assert libc.labs(-1) == 1
    return libc


def sort_with_python_comparator(libc, count=64):
    """libc's qsort of `count` ints given in reverse order, comparing them with a Python
    callback (ctypes' tutorial example); returns the array."""
    compare = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_int), ct.POINTER(ct.c_int))(
        lambda a, b: a[0] - b[0])
    values = (ct.c_int * count)(*range(count, 0, -1))
    libc.qsort.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_size_t, type(compare)]
    libc.qsort(values, count, ct.sizeof(ct.c_int), compare)
    return values


def test_a_timers_handler_calling_while_a_call_runs_python_callbacks(server):
    """Over gRPC, a call whose native code calls back into Python on this thread (qsort with
    a comparator) is interrupted every 2 ms by a handler that calls a function. The worker
    runs the handler's call after the sort, so while the handler waits it runs the sort's
    comparisons itself; interrupted while it had taken one and not yet answered it, the
    handler's call is refused at once (native code waits for this very thread). Neither
    waits for the call's deadline (8 s: the bound on a hang here), and every result is
    right."""
    with ffibox.connect(server.address) as client, \
            client.session(same_host=False, timeout=8) as session:
        libc = libc_with_labs(session)
        seen, inside = [], []

        def handler(signum, frame):
            if inside:
                return  # one handler at a time: one slower than the timer would nest
            inside.append(True)
            try:
                seen.append(libc.labs(-7))
            except ffibox.Error as error:
                seen.append(error.code)
            finally:
                inside.clear()

        signal.signal(signal.SIGUSR2, handler)
        signal.signal(signal.SIGALRM, lambda *_: signal.raise_signal(signal.SIGUSR2))
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
            started = time.monotonic()
            values = sort_with_python_comparator(libc, 128)
            took = time.monotonic() - started
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGUSR2, signal.SIG_DFL)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
        assert list(values) == list(range(1, 129))
        assert took < 6, "the sort took %.1f s: it waited for its deadline" % took
        assert seen and set(seen) <= {7, "FAILED_PRECONDITION"}, seen
        assert 7 in seen
        assert libc.labs(-9) == 9


def test_a_handler_between_a_callbacks_answer_and_its_post_is_refused(server, monkeypatch,
                                                                       hang_alarm):
    """The handler runs once this thread has answered a comparison of the sort and before
    that answer is sent: its call is refused at once, the sort goes on."""
    with ffibox.connect(server.address) as client, \
            client.session(same_host=False, timeout=8) as session:
        libc = libc_with_labs(session)
        seen = handle_with(signal.SIGUSR1, lambda: libc.labs(-7))
        original = SessionStream.post

        def post_after_signal(self, request):
            if request.HasField("callback_return") and not seen:
                signal.raise_signal(signal.SIGUSR1)
            return original(self, request)

        try:
            monkeypatch.setattr(SessionStream, "post", post_after_signal)
            started = time.monotonic()
            values = sort_with_python_comparator(libc)
            took = time.monotonic() - started
        finally:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        assert list(values) == list(range(1, 65))
        assert seen == ["FAILED_PRECONDITION"]
        assert took < 6, "the sort took %.1f s: it waited for its deadline" % took
        assert libc.labs(-9) == 9


class TimeVal(ct.Structure):
    _fields_ = [("sec", ct.c_long), ("usec", ct.c_long)]


def test_a_handler_waiting_for_another_threads_layout_check_while_its_thread_holds_the_channel(
        server, hang_alarm):
    """The main thread's call is on the same-host channel for 0.4 s; another thread's first
    call with a record checks the record's layout (holding the check's lock) and waits for
    the channel; the main thread's handler uses the same record and waits for that check.
    The other thread stops waiting for the channel and goes through the broker, whose
    request the worker runs after the main thread's call: nobody waits for ever."""
    with ffibox.connect(server.address) as client, client.session(same_host=True) as session:
        libc = session.CDLL("libc.so.6")
        libc.usleep.argtypes = [ct.c_uint]
        assert libc.usleep(1) == 0 and session.stream.local_enabled
        now = libc.gettimeofday
        now.argtypes = [ct.POINTER(TimeVal), ct.c_void_p]
        other = []

        def second_thread():
            time.sleep(0.05)  # once the main thread's call is on the channel
            value = TimeVal()
            other.append((now(ct.byref(value), None), value.sec > 0))

        seen = handle_with(signal.SIGUSR1, lambda: now(ct.byref(TimeVal()), None))
        thread = threading.Thread(target=second_thread, daemon=True)
        thread.start()
        # The handler runs at 0.15 s, while usleep(400 ms) is on the channel.
        timer = threading.Timer(0.15, lambda: signal.pthread_kill(threading.main_thread().ident,
                                                                   signal.SIGUSR1))
        timer.start()
        try:
            assert libc.usleep(400000) == 0
        finally:
            timer.join()
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        thread.join(10)
        assert not thread.is_alive()
        assert other == [(0, True)]
        assert seen in ([0], ["FAILED_PRECONDITION"])
        assert session.stream.local_enabled


def test_a_handlers_refused_layout_check_leaves_the_record_to_be_checked_later(
        server, monkeypatch, hang_alarm):
    """A handler's first use of a record whose layout ctypes gets wrong runs while the main
    thread's own first layout check is on the same-host channel: the handler's check is
    refused (FAILED_PRECONDITION) and caught; the record is still checked at its next use,
    and refused with the TypeError a layout mismatch gets."""
    with ffibox.connect(server.address) as client, client.session(same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        libc = session.CDLL("libc.so.6")

        class Bits(ct.Structure):  # bit fields ctypes lays out as the worker does not
            _fields_ = [("a", ct.c_uint, 3), ("b", ct.c_int, 5), ("c", ct.c_uint, 12),
                        ("d", ct.c_int, 1), ("e", ct.c_ulong, 40), ("f", ct.c_byte, 4)]

        lib.bits_sum.restype = ct.c_long
        lib.bits_sum.argtypes = [Bits]
        now = libc.gettimeofday
        now.argtypes = [ct.POINTER(TimeVal), ct.c_void_p]
        assert libc.labs(-1) == 1 and session.stream.local_enabled
        seen = []

        def handler(signum, frame):
            try:
                seen.append(lib.bits_sum(Bits()))
            except ffibox.Error as error:
                seen.append(error.code)

        original = _local_channel.LocalChannel._write

        def write_then_signal(self, data, deadline):
            original(self, data, deadline)
            if not seen and self.in_flight == threading.get_ident():
                signal.raise_signal(signal.SIGUSR1)

        signal.signal(signal.SIGUSR1, handler)
        try:
            monkeypatch.setattr(_local_channel.LocalChannel, "_write", write_then_signal)
            assert now(ct.byref(TimeVal()), None) == 0  # TimeVal's check, on the channel
        finally:
            monkeypatch.setattr(_local_channel.LocalChannel, "_write", original)
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        assert seen == ["FAILED_PRECONDITION"]
        with pytest.raises(TypeError, match="layout of Bits differs"):
            lib.bits_sum(Bits(a=1, b=2, c=3, d=0, e=4, f=5))


def test_a_handlers_call_inside_the_table_of_the_callers_objects_is_refused(
        server, monkeypatch, hang_alarm):
    """The handler runs while this thread releases, with its next call, the worker's copy of
    a buffer the caller dropped (inside the table of the caller's objects in the worker):
    its call, which would use the half-changed table, is refused at once; the interrupted
    call gives its answer and the table stays in step."""
    with ffibox.connect(server.address) as client, \
            client.session(same_host=False) as session:
        libc = session.CDLL("libc.so.6")
        libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
        libc.labs.argtypes = [ct.c_long]
        libc.labs.restype = ct.c_long
        buffer = (ct.c_char * 64)()
        for fill in (65, 66):
            libc.memset(buffer, fill, 64)
        assert buffer.raw == b"B" * 64
        twins = session.twins
        assert len(twins._by_worker) == 1  # the worker keeps the buffer's copy
        del buffer  # released with the next call
        seen = handle_with(signal.SIGUSR1, lambda: libc.labs(-5))
        original = TwinTable._drop

        def drop_then_signal(self, twin):
            original(self, twin)
            if not seen:
                signal.raise_signal(signal.SIGUSR1)

        try:
            monkeypatch.setattr(TwinTable, "_drop", drop_then_signal)
            assert libc.labs(-3) == 3
        finally:
            monkeypatch.setattr(TwinTable, "_drop", original)
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        assert seen == ["FAILED_PRECONDITION"]
        assert twins._by_worker == {} and twins._worker_starts == []
        assert libc.labs(-4) == 4


class CollectedHandle:
    """Garbage in a cycle (freed only by the collector) whose finalizer marks byte `index`
    of `marks` through `libc`'s memset, as a binding's __del__ frees a native handle;
    `returned` holds what its call gave, or the error's code."""

    def __init__(self, libc, marks, index, returned):
        self.libc, self.marks, self.index, self.returned = libc, marks, index, returned
        self.cycle = self

    def __del__(self):
        try:
            self.returned.append(self.libc.memset(self.marks + self.index, 1, 1))
        except ffibox.Error as error:
            self.returned.append(error.code)


def libc_with_marks(session, count):
    """`session`'s libc (libc_with_labs) with memset and calloc typed, and `count` zeroed
    bytes of the worker's heap to mark."""
    libc = libc_with_labs(session)
    libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
    libc.memset.restype = ct.c_void_p
    libc.calloc.argtypes = [ct.c_size_t, ct.c_size_t]
    libc.calloc.restype = ct.c_void_p
    return libc, libc.calloc(count, 1)


def wait_for_marks(session, marks, count):
    """The marks set among the first `count` bytes at `marks` in `session`'s worker, once
    all are or after 10 s (a deferred call runs a moment after its finalizer)."""
    deadline = time.monotonic() + 10
    while session.read(marks, count).count(1) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return session.read(marks, count).count(1)


def test_a_finalizers_call_inside_the_table_of_the_callers_objects_runs_later(
        server, monkeypatch, hang_alarm):
    """The garbage collector runs a finalizer while this thread releases, with its next
    call, the worker's copy of a buffer the caller dropped (inside the table of the caller's
    objects in the worker, where a signal handler's call is refused, above): the finalizer's
    call runs right after on a thread of ffibox's own (it gives its result type's zero
    where it was made), the interrupted call gives its answer and the table stays in step.
    Before, the call was refused and the handle it freed leaked."""
    with ffibox.connect(server.address) as client, \
            client.session(same_host=False) as session:
        libc, marks = libc_with_marks(session, 1)
        buffer = (ct.c_char * 64)()
        for fill in (65, 66):
            libc.memset(buffer, fill, 64)
        twins = session.twins
        assert len(twins._by_worker) == 1  # the worker keeps the buffer's copy
        del buffer  # released with the next call
        returned = []
        original = TwinTable._drop

        def drop_then_collect(self, twin):
            original(self, twin)
            if not returned:
                assert self.entered_here()
                CollectedHandle(libc, marks, 0, returned)
                gc.collect()

        try:
            monkeypatch.setattr(TwinTable, "_drop", drop_then_collect)
            assert libc.labs(-3) == 3
        finally:
            monkeypatch.setattr(TwinTable, "_drop", original)
        assert returned == [None]  # memset's void* result: the zero of its type
        assert wait_for_marks(session, marks, 1) == 1
        assert libc.labs(-4) == 4


def test_a_finalizers_call_while_its_threads_request_is_on_the_same_host_channel_runs_later(
        server, monkeypatch, hang_alarm):
    """The garbage collector runs a finalizer while this thread's call waits for its answer
    on the same-host channel, which serves nothing else until then: the finalizer's call
    runs right after on a thread of ffibox's own, and the interrupted call gives its answer
    on the channel (a signal handler's is refused there: it may need the result)."""
    with ffibox.connect(server.address) as client, client.session(same_host=True) as session:
        libc, marks = libc_with_marks(session, 4)
        libc.strlen.argtypes = [ct.c_char_p]
        libc.strlen.restype = ct.c_size_t
        assert libc.strlen(b"x") == 1 and session.stream.local_enabled
        returned = []
        original = _local_channel.LocalChannel._read_frame

        def collect_then_read(self, *args):
            if not returned:
                assert session.stream.in_flight_here()
                CollectedHandle(libc, marks, 2, returned)
                gc.collect()
            return original(self, *args)

        try:
            monkeypatch.setattr(_local_channel.LocalChannel, "_read_frame", collect_then_read)
            assert libc.strlen(b"hello") == 5
        finally:
            monkeypatch.setattr(_local_channel.LocalChannel, "_read_frame", original)
        assert returned == [None]
        assert wait_for_marks(session, marks + 2, 1) == 1
        assert session.read(marks, 4) == b"\0\0\x01\0"
        assert session.stream.local_enabled and libc.labs(-4) == 4


def deferred_here(session, call):
    """What `call` gives when `session` defers its library calls made on this thread (as on
    a thread its answers wait for: SessionStream.defers_calls_here)."""
    session.stream.defers_calls_here = lambda: True
    try:
        return call()
    finally:
        del session.stream.defers_calls_here


def test_a_deferred_call_stuck_in_one_session_does_not_hold_back_anothers(server, hang_alarm):
    """Each session runs the calls its finalizers deferred on a thread of its own: one stuck
    in a library that sleeps past the others' wait does not hold back another session's
    (they shared one thread, and waited for it until its deadline)."""
    with ffibox.connect(server.address) as client, \
            client.session(same_host=False, timeout=30) as stuck, \
            client.session(same_host=False) as other:
        sleep_ms = stuck.CDLL(TEST_LIB).sleep_ms
        libc, marks = libc_with_marks(other, 1)
        assert deferred_here(stuck, lambda: sleep_ms(15000)) == 0  # the zero of int
        assert deferred_here(other, lambda: libc.memset(marks, 1, 1)) is None
        assert wait_for_marks(other, marks, 1) == 1
        assert libc.labs(-4) == 4


def test_a_sessions_deferred_calls_thread_ends_when_idle_or_closed_and_comes_back(
        server, monkeypatch, hang_alarm):
    from ffibox import _deferred_calls
    monkeypatch.setattr(_deferred_calls, "IDLE_SECONDS", 0.2)
    with ffibox.connect(server.address) as client, client.session(same_host=False) as session:
        libc, marks = libc_with_marks(session, 2)
        deferred = session.deferred_calls
        for index in range(2):
            assert deferred_here(session, lambda: libc.memset(marks + index, 1, 1)) is None
            thread = deferred._thread
            assert thread is not None and thread.name == "ffibox-deferred-calls"
            assert wait_for_marks(session, marks, index + 1) == index + 1
            thread.join(10)
            assert not thread.is_alive() and deferred._thread is None, "idle, it goes on"
        monkeypatch.setattr(_deferred_calls, "IDLE_SECONDS", 60)
        deferred_here(session, lambda: libc.labs(-1))
        thread = deferred._thread
    thread.join(10)
    assert not thread.is_alive(), "the session closed and its thread goes on"


def test_a_handler_right_after_a_call_with_callbacks_is_sent(server, hang_alarm):
    """The handler runs as soon as the sort's request is sent, before its thread waits for
    the answer: its call still runs the sort's comparisons while it waits, and both are
    answered long before the call's deadline."""
    with ffibox.connect(server.address) as client, \
            client.session(same_host=False, timeout=8) as session:
        libc = libc_with_labs(session)
        seen = handle_with(signal.SIGUSR1, lambda: libc.labs(-7))
        stream = session.stream
        queue = stream._outgoing
        armed = []

        class SignalAfterTheCall:
            def put(self, request):
                queue.put(request)
                if armed and request is not None and request.HasField("call"):
                    armed.clear()
                    signal.raise_signal(signal.SIGUSR1)

        stream._outgoing = SignalAfterTheCall()
        try:
            armed.append(True)
            started = time.monotonic()
            values = sort_with_python_comparator(libc)
            took = time.monotonic() - started
        finally:
            stream._outgoing = queue
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        assert list(values) == list(range(1, 65))
        assert seen == [7]
        assert took < 6, "the sort took %.1f s: it waited for its deadline" % took


def test_a_call_from_the_thread_that_reads_the_answers_is_refused_not_left_to_end_the_session(
        server):
    """The output handler (run by the thread that reads the session's answers, as a
    finalizer that gc runs there would be) calls a function over gRPC: it is refused at
    once, where its answer, which that very thread would have to read, ended the session
    once its bound had passed; the session goes on."""
    with ffibox.connect(server.address) as client, \
            client.session(same_host=False, timeout=2) as session:
        libc = session.CDLL("libc.so.6")
        libc.labs.argtypes = [ct.c_long]
        libc.labs.restype = ct.c_long
        libc.write.argtypes = [ct.c_int, ct.c_char_p, ct.c_size_t]
        assert libc.labs(-1) == 1
        seen = []

        def on_output(stream, data):
            started = time.monotonic()
            try:
                seen.append(libc.labs(-3))
            except ffibox.Error as error:
                seen.append((error.code, time.monotonic() - started))

        session.stream.on_output = on_output
        assert libc.write(1, b"printed\n", 8) == 8
        deadline = time.monotonic() + 20
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(seen) == 1 and seen[0][0] == "FAILED_PRECONDITION", seen
        assert seen[0][1] < 1
        assert libc.labs(-4) == 4


def test_a_finalizers_call_on_the_callback_thread_before_an_answer_is_sent_is_refused(
        server, monkeypatch):
    """A callback that native code calls from a thread of its own runs on the client's
    callback thread; a finalizer that calls a function runs there once the callback's answer
    is made and before it is sent (as gc may run it there). Native code waits for that
    answer, so the finalizer's call is refused at once instead of waiting for the call's
    deadline, and the call returns what the callback gave."""
    with ffibox.connect(server.address) as client, \
            client.session(same_host=False, timeout=3) as session:
        lib = session.CDLL(TEST_LIB)
        libc = libc_with_labs(session)
        handler_type = ct.CFUNCTYPE(ct.c_int, ct.c_int)
        plus_one = handler_type(lambda x: x + 1)
        lib.call_from_thread.argtypes = [handler_type, ct.c_int]
        lib.call_from_thread.restype = ct.c_int
        original = SessionStream.post
        seen = []

        def finalizer_then_post(self, request):
            if request.HasField("callback_return") and not seen and \
                    threading.current_thread() is self._callback_thread:
                started = time.monotonic()
                try:
                    seen.append(libc.labs(-2))
                except ffibox.Error as error:
                    seen.append(error.code)
                seen.append(time.monotonic() - started)
            return original(self, request)

        monkeypatch.setattr(SessionStream, "post", finalizer_then_post)
        assert lib.call_from_thread(plus_one, 5) == 6
        assert seen[0] == "FAILED_PRECONDITION" and seen[1] < 1, seen
        monkeypatch.setattr(SessionStream, "post", original)
        assert libc.labs(-3) == 3


@pytest.mark.parametrize("with_callbacks", [False, True])
def test_a_handler_during_a_call_of_scalars_on_the_channel(server, monkeypatch, hang_alarm,
                                                           with_callbacks):
    """The handler runs while this thread's call of scalars waits for its answer on the
    same-host channel. In a session without callbacks that call waits for nothing (native
    code cannot call back into this thread, its answer fits the ring), so the handler's call
    goes through the broker and the worker runs it once the call is done; with a callback
    defined, native code might wait for this very thread, so it is refused at once."""
    with ffibox.connect(server.address) as client, client.session(same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        lib.add_int.argtypes = [ct.c_int, ct.c_int]
        libc = libc_with_labs(session)
        kept = None
        if with_callbacks:
            kept = ct.CFUNCTYPE(ct.c_int, ct.c_int)(lambda x: x)
            lib.register_handler.argtypes = [type(kept)]
            lib.register_handler(kept)
        assert lib.add_int(1, 1) == 2 and session.stream.local_enabled
        seen = handle_with(signal.SIGUSR1, lambda: libc.labs(-5))
        original = _local_channel.LocalChannel._read_frame

        def read_after_signal(self, *args):
            monkeypatch.setattr(_local_channel.LocalChannel, "_read_frame", original)
            signal.raise_signal(signal.SIGUSR1)
            return original(self, *args)

        try:
            monkeypatch.setattr(_local_channel.LocalChannel, "_read_frame", read_after_signal)
            assert lib.add_int(2, 2) == 4
        finally:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        assert seen == (["FAILED_PRECONDITION"] if with_callbacks else [5])
        assert lib.add_int(3, 3) == 6 and session.stream.local_enabled
        del kept


HANDLER_IN_A_FINALIZER = textwrap.dedent("""
    import os, signal, sys, threading
    import ffibox
    from ffibox import _functions, ctypes as ct
    session = ffibox.connect(sys.argv[1]).session(same_host=sys.argv[3] == "1")
    lib = session.CDLL(sys.argv[2])
    lib.add_int.argtypes = [ct.c_int, ct.c_int]
    lib.add_int.restype = ct.c_int
    assert lib.add_int(1, 2) == 3
    got = []

    def handler(signum, frame):
        try:
            got.append(lib.add_int(40, 2))
        except ffibox.Error as error:
            got.append(error.code)

    signal.signal(signal.SIGUSR1, handler)
    # As where Python's garbage collector runs finalizers on this thread while it updates the
    # table of its objects in the worker, and a signal comes: the handler runs in there.
    _functions._collecting[0] = threading.get_ident()
    with session.twins._lock:
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(1000):  # the handler runs between two of these bytecodes
            if got:
                break
    _functions._collecting[0] = None
    print(got, lib.add_int(2, 3))
""")


@pytest.mark.parametrize("same_host", [True, False])
def test_a_handler_that_runs_inside_a_finalizer_is_refused_not_given_zero(server, same_host):
    """A signal handler that Python runs inside a finalizer, while the garbage collector runs
    on a thread inside the table of the caller's objects: its call is refused with
    FAILED_PRECONDITION (a finalizer's own call is run later and its value dropped); it was
    deferred as a finalizer's and gave 0 where 42 is right."""
    result = run_script(HANDLER_IN_A_FINALIZER, server.address, TEST_LIB,
                        "1" if same_host else "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["['FAILED_PRECONDITION']", "5"]
