"""Library calls that finalizers made where they could not run at once (ffibox._functions:
on a thread a session's requests or answers wait for, or inside the client's own work for a
call), run later in the order they were made, on a thread of the session's own. Each
session has its own queue and thread: a deferred call stuck in one session's worker (until
its deadline) holds back only that session's, which would wait for that worker anyway. A
thread with nothing to run for a while ends; the next deferred call starts another."""
import os
import queue
import sys
import threading
import traceback
import weakref
from typing import Callable, Optional

from ffibox.errors import SessionClosed

_STOP = object()
_STARTING = object()  # DeferredCalls._thread while its thread is being made
# How long a session's thread waits for another deferred call before it ends.
IDLE_SECONDS = 10.0


class DeferredCalls:
    """One session's deferred calls and the thread that runs them, started by the first."""

    def __init__(self) -> None:
        self._reset()
        _EVERY.add(self)

    def _reset(self) -> None:
        # SimpleQueue's put is reentrant: a finalizer may run in the middle of another put.
        self._queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self._thread: Optional[object] = None  # the thread, _STARTING, or None
        # Reentrant: a finalizer that defers a call may run on a thread holding it.
        self._lock = threading.RLock()
        self._closed = False

    def put(self, call: Callable[[], object]) -> None:
        """Runs `call` after every call put before it, on this session's thread."""
        self._queue.put(call)
        with self._lock:
            if self._closed or self._thread is not None:
                return
            # Taken before the thread is made: a collection meanwhile may put a call of its
            # own on this thread, which must not start a second one.
            self._thread = _STARTING
            thread = threading.Thread(target=self._run, name="ffibox-deferred-calls",
                                      daemon=True)
            self._thread = thread
            thread.start()

    def close(self) -> None:
        """The session has closed: the thread ends after the calls already put (each fails
        quietly: the worker whose state it would have changed is gone)."""
        with self._lock:
            self._closed = True
        self._queue.put(_STOP)

    def _run(self) -> None:
        while True:
            try:
                call = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if call is _STOP:
                return
            try:
                call()
            except SessionClosed:
                pass  # the session ended first: its worker, and what the call was for, are gone
            except Exception:  # as Python reports an exception in a finalizer
                sys.stderr.write("Exception ignored in a library call a finalizer made:\n")
                traceback.print_exc()


_EVERY: "weakref.WeakSet[DeferredCalls]" = weakref.WeakSet()


def _forget_in_child() -> None:
    # The parent's queued calls are its sessions' (forsaken in a child), their threads are
    # not the child's, and a lock may have been held at the fork.
    for deferred in list(_EVERY):
        deferred._reset()


os.register_at_fork(after_in_child=_forget_in_child)
