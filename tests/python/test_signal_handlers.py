"""Python signal handlers that call foreign functions, as they may with the stdlib ctypes.

Python runs a signal handler on the main thread between two bytecodes, so with ffibox it can
run in the middle of the client's own work for a call: while it holds a lock, or while its
request is on the same-host channel. The handler's calls must never wait for that thread
(a hang): they are served, or refused at once with FAILED_PRECONDITION where the worker
could only serve them after the interrupted call, which waits for the handler
(docs/python.md, "Differences from ctypes"). The interrupted call gives its own answer.
"""
import ctypes as stdlib_ctypes
import json
import signal
import textwrap

import pytest

import ffibox
from conftest import TEST_LIB, run_script
from ffibox import _addresses, _local_channel
from ffibox import ctypes as ct


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
    while time.monotonic() < end:
        got = (lib.add_int(n, 2), libc.strlen(b"hello"))
        if got != (n + 2, 5):
            seen["main_wrong"].append([n, list(got)])
        n += 1
    signal.setitimer(signal.ITIMER_REAL, 0)
    seen["main"] = n
    print(json.dumps(seen))
""")


@pytest.mark.parametrize("same_host", [True, False])
def test_a_timers_handler_calling_during_a_stream_of_calls(server, same_host):
    """A handler called every 2 ms (SIGALRM) calls two functions while the main thread
    calls the same ones back to back for 4 s, in a process of its own: it never hangs, no
    answer is wrong or lost, and the handler's calls are served (or, on the same-host
    channel while the interrupted call's request is on it, refused with
    FAILED_PRECONDITION)."""
    result = run_script(STORM, server.address, TEST_LIB, "1" if same_host else "0", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["same_host"] is same_host
    assert seen["main_wrong"] == [] and seen["wrong"] == []
    assert seen["main"] > 100
    assert seen["served"] > 20
    if not same_host:
        assert seen["refused"] == 0


def test_a_handlers_uncaught_refusal_interrupts_the_call_and_the_channel_comes_back(
        server, monkeypatch, hang_alarm):
    """A handler that runs while this thread's call waits for its answer on the same-host
    channel and lets the refusal of its own call escape: the call raises that very error,
    as any exception a handler raises interrupts what it ran in; the channel, out of step,
    is closed, and the next worker answer over the stream opens a new one."""
    with ffibox.connect(server.address) as client, client.session(same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        lib.add_int.argtypes = [ct.c_int, ct.c_int]
        assert lib.add_int(1, 1) == 2
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
                lib.add_int(2, 2)
        finally:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        assert len(raised) == 1 and interrupted.value is raised[0]
        assert interrupted.value.code == "FAILED_PRECONDITION"
        assert lib.add_int(3, 3) == 6  # through the stream: the channel was closed
        assert [lib.add_int(i, 1) for i in range(3)] == [1, 2, 3]
        assert session.stream.local_enabled  # a new one
