"""Every request of the Python client has a deadline of its own: when the server sends
nothing for longer than the requests waiting may take (a request's deadline in the worker
plus `answer_margin`, counted from the server's last message), the server is taken for gone
and they raise SessionClosed DEADLINE_EXCEEDED instead of waiting forever, though its
connection stays up (keepalive notices that only after 50 s by default). A server that is
merely busy (a slow call, a call queued behind it, a slow handler) is not taken for gone.
Real ffiboxd, stopped with SIGSTOP."""
import contextlib
import os
import signal
import subprocess
import threading
import time

import pytest

import ffibox
from ffibox import ctypes as ct
from ffibox._stubs import pb
from conftest import TEST_LIB

INT = pb.Type(scalar=pb.INT)


def all_threads_stopped(pid):
    """Whether no thread of `pid` runs its code any more: a SIGSTOP takes effect in each
    thread on its own, some time after kill() returns. A thread in uninterruptible sleep (D)
    counts: it stops before it runs any of its code again. One can stay there while the rest
    is stopped: a worker launch that waits in clone() for its child, which waits for another
    thread of ffiboxd."""
    states = []
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, task)) as stat:
            states.append(stat.read().rsplit(")", 1)[1].split()[0])
    return bool(states) and all(state in ("T", "t", "D") for state in states)


@contextlib.contextmanager
def same_host_session(server):
    """A same-host session on `server` (calls of 2 s, an answer margin of 1 s) and the handle
    of the test library's sleep_ms, resolved in it; its client is closed after."""
    client = ffibox.connect(server.address)
    try:
        with client.session(timeout=2, answer_margin=1, same_host=True) as session:
            assert session.stream.local_enabled
            sleep = session.resolve(pb.ResolveFunction(
                library=session.load_library(TEST_LIB), symbol="sleep_ms",
                signature=pb.Signature(result=INT, params=[INT])))
            yield session, sleep
    finally:
        client.close()


def test_a_server_that_stops_answering_fails_the_call_at_its_deadline_plus_the_margin(server):
    client = ffibox.connect(server.address)
    try:
        session = client.session(timeout=1, answer_margin=1, same_host=False)
        lib = session.CDLL(TEST_LIB)
        assert lib.add_int(1, 2) == 3
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 5
            while not all_threads_stopped(server.process.pid):
                assert time.monotonic() < deadline, "ffiboxd did not stop"
                time.sleep(0.01)
            started = time.monotonic()
            with pytest.raises(ffibox.SessionClosed) as failed:
                lib.add_int(2, 3)
            waited = time.monotonic() - started
            with pytest.raises(ffibox.SessionClosed) as later:
                lib.add_int(1, 2)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert failed.value.code == "DEADLINE_EXCEEDED", failed.value
        assert "ffiboxd sent nothing for" in str(failed.value)
        assert 1.99 <= waited < 6
        assert later.value.code == "DEADLINE_EXCEEDED"
        # The server answers again: a new session works.
        with client.session(same_host=False) as again:
            assert again.CDLL(TEST_LIB).add_int(2, 3) == 5
    finally:
        client.close()


def test_an_answer_that_came_while_this_process_was_stopped_is_taken(server):
    """This process is stopped (SIGSTOP; a shell it started sends SIGCONT) from before its
    call's answer until a little after the call's bound was due: too little after it to be
    taken for a stop of the process, so the silence counts. The answer came meanwhile and
    waits unread: it is taken, and the session goes on, the next time too."""
    client = ffibox.connect(server.address)
    try:
        with client.session(timeout=2, answer_margin=1, same_host=False) as session:
            lib = session.CDLL(TEST_LIB)
            lib.sleep_ms.argtypes = [ct.c_int]
            assert lib.add_int(1, 2) == 3
            for stop in (1, 2):
                results = {}

                def call():
                    try:
                        results["slept"] = lib.sleep_ms(1500)  # bound 3 s, answered at 1.5 s
                    except ffibox.Error as error:
                        results["slept"] = error

                caller = threading.Thread(target=call)
                caller.start()
                time.sleep(0.3)
                waker = subprocess.Popen(["/bin/sh", "-c",
                                          "sleep 3.1; kill -CONT %d" % os.getpid()])
                os.kill(os.getpid(), signal.SIGSTOP)
                waker.wait()
                caller.join()
                assert results == {"slept": 1500}, stop
                assert lib.add_int(2, 3) == 5
    finally:
        client.close()


def test_slow_calls_queued_calls_and_slow_handlers_are_not_taken_for_a_silent_server(server):
    """A short call queued behind a slow one waits far longer than its own bound, and a slow
    call queued behind both is answered later than any bound counted from when they were
    sent: the wait counts the longest bound waiting, from the server's latest message. A
    handler slower than the margin holds nothing up either."""
    client = ffibox.connect(server.address)
    try:
        with client.session(timeout=2, answer_margin=1, same_host=False) as session:
            lib = session.CDLL(TEST_LIB)
            lib.sleep_ms.argtypes = [ct.c_int]
            add = session.resolve(pb.ResolveFunction(
                library=session.load_library(TEST_LIB), symbol="add_int",
                signature=pb.Signature(result=INT, params=[INT, INT])))
            results = {}
            started = time.monotonic()
            first = threading.Thread(  # bound 3 s, answered at 1.5 s
                target=lambda: results.update(first=lib.sleep_ms(1500)))
            second = threading.Thread(  # bound 1.2 s, answered after the first
                target=lambda: results.update(second=session.call(pb.Call(
                    function=add, timeout_ms=200,
                    args=[pb.Value(int_value=1), pb.Value(int_value=2)])).call.result.int_value))
            third = threading.Thread(  # bound 3 s, answered at 3.3 s
                target=lambda: results.update(third=lib.sleep_ms(1800)))
            first.start()
            time.sleep(0.1)
            second.start()
            time.sleep(0.1)
            third.start()
            for thread in (first, second, third):
                thread.join()
            assert results == {"first": 1500, "second": 3, "third": 1800}
            assert time.monotonic() - started > 3.3

            @ct.CFUNCTYPE(ct.c_int, ct.c_int)
            def slow_increment(x):
                time.sleep(1.2)
                return x + 1

            lib.register_handler.argtypes = [ct.CFUNCTYPE(ct.c_int, ct.c_int)]
            lib.register_handler(slow_increment)
            assert lib.fire_handler(1) == 2
            assert lib.add_int(2, 3) == 5
    finally:
        client.close()


def test_requests_through_the_broker_may_wait_behind_a_call_on_the_channel(server):
    """A call on the same-host channel sends nothing on the stream, but requests through the
    broker wait behind it in the worker (whose deadline the broker starts again once, when it
    passes during such a call): they are not taken for a silent server's."""
    with same_host_session(server) as (session, sleep):
        slept = []
        slow = threading.Thread(target=lambda: slept.append(session.call(pb.Call(
            function=sleep, timeout_ms=5000,
            args=[pb.Value(int_value=3500)])).call.result.int_value))
        slow.start()
        time.sleep(0.2)
        # Through the broker; the worker runs it once the call on the channel returns, at
        # 3.5 s, past its own bound (3 s) counted from when it was sent.
        libm = session.load_library("libm.so.6")
        slow.join()
        assert slept == [3500]
        assert libm
        lib = session.CDLL(TEST_LIB)
        assert lib.add_int(1, 2) == 3


def test_a_call_on_the_channel_may_wait_behind_a_request_through_the_broker(server):
    """The other way round: a call on the channel waits in the worker behind a request
    through the broker that runs first, longer than the call's own deadline and margin; its
    wait counts that request's bound too, so it is not taken for a call that got no
    answer."""
    with same_host_session(server) as (session, sleep):
        lib = session.CDLL(TEST_LIB)
        lib.sleep_ms.argtypes = [ct.c_int]
        assert lib.sleep_ms(1) == 1  # loaded and resolved: the call below is the channel's
        slept = []
        # A batch goes through the broker.
        slow = threading.Thread(target=lambda: slept.append(session.batch(
            [pb.Call(function=sleep, timeout_ms=8000, args=[pb.Value(int_value=6000)])],
            timeout=8).batch.results[0].result.int_value))
        slow.start()
        time.sleep(0.3)  # the worker runs it by now
        # On the channel: it starts in the worker at 6 s, past its deadline (2 s) and the
        # channel's margin (5 s) counted from when it was sent.
        assert lib.sleep_ms(1500) == 1500
        slow.join()
        assert slept == [6000]
        assert session.stream.local_enabled
        assert lib.add_int(1, 2) == 3


@pytest.mark.parametrize("margin", [0, -1, float("inf"), float("nan"), "10", True])
def test_a_margin_that_is_not_a_positive_number_is_refused(server, margin):
    client = ffibox.connect(server.address)
    try:
        with pytest.raises(ValueError, match="answer_margin"):
            client.session(answer_margin=margin)
    finally:
        client.close()
