"""Every request of the Python client has a deadline of its own: when the server sends
nothing for longer than the requests waiting may take (a request's deadline in the worker
plus `answer_margin`, counted from the server's last message), the server is taken for gone
and they raise SessionClosed DEADLINE_EXCEEDED instead of waiting forever, though its
connection stays up (keepalive notices that only after 50 s by default). A server that is
merely busy (a slow call, a call queued behind it, a slow handler) is not taken for gone.
Real ffiboxd, stopped with SIGSTOP."""
import os
import signal
import threading
import time

import pytest

import ffibox
from ffibox import ctypes as ct
from ffibox._stubs import pb
from conftest import TEST_LIB

INT = pb.Type(scalar=pb.INT)


def test_a_server_that_stops_answering_fails_the_call_at_its_deadline_plus_the_margin(server):
    client = ffibox.connect(server.address)
    try:
        session = client.session(timeout=1, answer_margin=1, same_host=False)
        lib = session.CDLL(TEST_LIB)
        assert lib.add_int(1, 2) == 3
        stopper = threading.Timer(0.1, os.kill, (server.process.pid, signal.SIGSTOP))
        stopper.start()
        started = time.monotonic()
        try:
            with pytest.raises(ffibox.SessionClosed) as failed:
                lib.sleep_ms(500)
            waited = time.monotonic() - started
        finally:
            stopper.join()
            os.kill(server.process.pid, signal.SIGCONT)
        assert failed.value.code == "DEADLINE_EXCEEDED", failed.value
        assert "ffiboxd sent nothing for" in str(failed.value)
        assert 2 <= waited < 6
        with pytest.raises(ffibox.SessionClosed) as later:
            lib.add_int(1, 2)
        assert later.value.code == "DEADLINE_EXCEEDED"
        # The server answers again: a new session works.
        with client.session(same_host=False) as again:
            assert again.CDLL(TEST_LIB).add_int(2, 3) == 5
    finally:
        client.close()


def test_slow_calls_queued_calls_and_slow_handlers_are_not_taken_for_a_silent_server(server):
    client = ffibox.connect(server.address)
    try:
        with client.session(timeout=5, answer_margin=0.3, same_host=False) as session:
            lib = session.CDLL(TEST_LIB)
            lib.sleep_ms.argtypes = [ct.c_int]
            slept = []
            slow = threading.Thread(target=lambda: slept.append(lib.sleep_ms(1500)))
            slow.start()
            time.sleep(0.1)
            # Its own bound (0.2 s + 0.3 s) is far shorter than its wait behind the slow call.
            add = session.resolve(pb.ResolveFunction(
                library=session.load_library(TEST_LIB), symbol="add_int",
                signature=pb.Signature(result=INT, params=[INT, INT])))
            queued = session.call(pb.Call(function=add, timeout_ms=200,
                                          args=[pb.Value(int_value=1), pb.Value(int_value=2)]))
            assert queued.call.result.int_value == 3
            slow.join()
            assert slept == [1500]

            @ct.CFUNCTYPE(ct.c_int, ct.c_int)
            def slow_increment(x):
                time.sleep(1)
                return x + 1

            lib.call_twice_nested.argtypes = [ct.CFUNCTYPE(ct.c_int, ct.c_int), ct.c_int]
            assert lib.call_twice_nested(slow_increment, 1) == 3
            assert lib.add_int(2, 3) == 5
    finally:
        client.close()


@pytest.mark.parametrize("margin", [0, -1, float("inf"), float("nan"), "10", True])
def test_a_margin_that_is_not_a_positive_number_is_refused(server, margin):
    client = ffibox.connect(server.address)
    try:
        with pytest.raises(ValueError, match="answer_margin"):
            client.session(answer_margin=margin)
    finally:
        client.close()
