"""A callback invocation is always answered, as ctypes answers one: callbacks that call the
library that calls them again recurse as deep as the recursion limit lets them, and at the
limit the deepest fails (native code gets zero, the failure printed as ctypes prints it) and
the call returns, the session, its worker and its same-host channel going on; a failure whose
report fails itself is answered all the same. Through the broker and on the same-host
channel. Real ffiboxd, real jailed workers, tests/testlibs/callbacks.c."""
import sys
import time

import pytest

from conftest import TEST_LIB
from ffibox import ctypes as ct

HANDLER = ct.CFUNCTYPE(ct.c_int, ct.c_int)
# Where a call that should return at once is taken for hung (the session's call timeout is
# longer: a hang is a CALL_TIMEOUT after it).
PROMPT = 2.0


@pytest.fixture(params=[False, True], ids=["stream", "channel"])
def session(request, module_client):
    with module_client.session(timeout=5, same_host=request.param) as s:
        assert s.stream.local_enabled == request.param
        yield s


def _recursing(session, descend):
    """The library, its `fire_handler(x)` calling a handler registered with `descend(x, lib)`
    (which calls fire_handler again to go deeper), the deepest x it was called with, and the
    handler's CFUNCTYPE instance, to be kept alive while the library may call it."""
    lib = session.CDLL(TEST_LIB)
    lib.register_handler.argtypes = [HANDLER]
    lib.register_handler.restype = None
    lib.fire_handler.argtypes = [ct.c_int]
    lib.add_int.argtypes = [ct.c_int, ct.c_int]
    deepest = [0]

    def handler(x):
        deepest[0] = max(deepest[0], x)
        return descend(x, lib)

    handler = HANDLER(handler)
    lib.register_handler(handler)
    return lib, deepest, handler


def _frames_here() -> int:
    frame, count = sys._getframe(1), 0
    while frame is not None:
        frame, count = frame.f_back, count + 1
    return count


def test_callbacks_recurse_through_the_library_to_a_depth_as_ctypes_would(session):
    lib, deepest, kept = _recursing(
        session, lambda x, lib: x if x >= 40 else lib.fire_handler(x + 1))
    assert lib.fire_handler(0) == 40
    assert deepest[0] == 40


def test_each_nesting_of_callbacks_costs_the_recursion_limit_about_15_frames(session):
    # ctypes' callbacks nest about 500 deep within 1000 frames; ffibox's take the frames
    # of a call and of the invocation's handling besides, and keep 48 for answering.
    lib, deepest, kept = _recursing(session, lambda x, lib: lib.fire_handler(x + 1))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_frames_here() + 1000)
    try:
        assert lib.fire_handler(0) == 0
    finally:
        sys.setrecursionlimit(limit)
    assert deepest[0] >= 60


def test_at_the_recursion_limit_the_deepest_callback_fails_and_the_call_returns(
        session, capsys):
    # Whichever frame meets the limit (the user's, ffibox's as it takes the invocation, or
    # as it reports the failure), for a limit in each position over more than the frames
    # one level of recursion takes: native code gets zero from the deepest callback, and
    # the call returns with it, at once.
    lib, deepest, kept = _recursing(session, lambda x, lib: lib.fire_handler(x + 1))
    generation, on_channel = session.generation, session.stream.local_enabled
    outer = _frames_here()
    limit = sys.getrecursionlimit()
    try:
        for more in range(200, 240):
            sys.setrecursionlimit(outer + more)
            deepest[0] = 0
            started = time.monotonic()
            assert lib.fire_handler(0) == 0
            assert time.monotonic() - started < PROMPT, "a limit of %d frames more" % more
            sys.setrecursionlimit(limit)
            assert deepest[0] > 5
            report = capsys.readouterr().err
            # One failure, printed as ctypes prints a callback's: the deepest callback's.
            assert report.count("Exception ignored on calling ctypes callback function") == 1
            assert "RecursionError" in report
    finally:
        sys.setrecursionlimit(limit)
    # The session and its worker go on, on the same-host channel when it was on it.
    assert lib.add_int(2, 3) == 5
    assert session.generation == generation
    assert session.stream.local_enabled == on_channel


def test_a_callback_recursing_in_python_to_the_limit_fails_and_the_call_returns(session):
    def spin(n):
        return spin(n + 1) + 1

    lib, deepest, kept = _recursing(
        session, lambda x, lib: spin(0) if x >= 3 else lib.fire_handler(x + 1))
    generation = session.generation
    for _ in range(3):
        started = time.monotonic()
        assert lib.fire_handler(0) == 0
        assert time.monotonic() - started < PROMPT
    assert deepest[0] == 3
    assert lib.add_int(2, 3) == 5
    assert session.generation == generation


class _BrokenStderr:
    def write(self, text):
        raise OSError("stderr is gone")

    def flush(self):
        raise OSError("stderr is gone")


class _Unprintable(Exception):
    def __str__(self):
        raise ValueError("no message")


def test_a_failed_callback_whose_report_fails_is_answered_all_the_same(session,
                                                                         monkeypatch):
    def fail(x, lib):
        raise _Unprintable()

    lib, deepest, kept = _recursing(session, fail)
    generation = session.generation
    monkeypatch.setattr(sys, "stderr", _BrokenStderr())
    started = time.monotonic()
    assert lib.fire_handler(7) == 0
    assert time.monotonic() - started < PROMPT
    monkeypatch.undo()
    assert deepest[0] == 7
    assert lib.add_int(2, 3) == 5
    assert session.generation == generation
