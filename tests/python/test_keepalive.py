"""A server that stops answering without closing its connection (its host gone, its process
stopped) fails the Python client's call in flight with UNAVAILABLE once a keepalive ping goes
unacknowledged, instead of leaving it waiting forever; an idle session's pings are taken by a
server that answers. Real ffiboxd, stopped with SIGSTOP."""
import os
import signal
import threading
import time

import pytest

import ffibox
from conftest import TEST_LIB


def test_a_stopped_server_fails_the_call_instead_of_hanging_it(server):
    client = ffibox.connect(server.address, keepalive=1, keepalive_timeout=1)
    try:
        session = client.session()
        lib = session.CDLL(TEST_LIB)
        time.sleep(4)  # pings, and no data between them
        assert lib.add_int(1, 2) == 3
        stopper = threading.Timer(0.3, os.kill, (server.process.pid, signal.SIGSTOP))
        stopper.start()
        started = time.monotonic()
        try:
            with pytest.raises(ffibox.Error) as failed:
                lib.sleep_ms(3000)
            waited = time.monotonic() - started
        finally:
            stopper.join()
            os.kill(server.process.pid, signal.SIGCONT)
        assert failed.value.code == "UNAVAILABLE", failed.value
        assert waited < 10
    finally:
        client.close()


def test_keepalive_settings_are_checked():
    with pytest.raises(ValueError):
        ffibox.connect("unix:/nonexistent/ffiboxd.sock", keepalive=0)
