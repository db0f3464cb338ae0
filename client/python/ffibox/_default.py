"""The process's default session: the one `from ffibox import ctypes` uses, and the one a
plain integer address names (`cast`, `string_at`, `from_address`, `PROTOTYPE(address)`).

It is opened on first use by the opener ffibox.client sets when it is imported
(`connect().session()`), so the modules under the client reach it without importing the
client or the ctypes facade.
"""
import os
import threading
from typing import Any, Callable, Optional

from ffibox._channel import GRPC_FORK_SUPPORT
from ffibox.errors import Error

# Re-entrant: a signal handler or finalizer that Python runs on the thread opening the
# session (a private server's start takes a while) is refused, not left waiting for itself.
_lock = threading.RLock()
_opening = False  # the thread holding _lock opens the session now
_session: Optional[Any] = None
_opener: Optional[Callable[[], Any]] = None


def set_opener(opener: Callable[[], Any]) -> None:
    """Sets how the default session is opened (a callable returning a new Session)."""
    global _opener
    _opener = opener


def default_session():
    """The default session; the first call opens it (one per process)."""
    global _session, _opening
    with _lock:
        if _session is None:
            if _opening:
                raise Error("FAILED_PRECONDITION: the default session cannot be used from a "
                            "signal handler or finalizer that ran while this thread opened it",
                            "FAILED_PRECONDITION")
            _opening = True
            try:
                _session = _opener()
            finally:
                _opening = False
        return _session


def opened_session():
    """The default session if one was opened, else None (nothing is opened)."""
    return _session


def _after_fork_in_child() -> None:
    # The parent's default session ended in the child (ffibox._stream). With gRPC's fork
    # support on, the child may open its own, and does on first use; without it, the child
    # may not use gRPC at all (ffibox._channel), so the ended session stays and says why.
    global _lock, _opening, _session
    _lock = threading.RLock()
    _opening = False
    if GRPC_FORK_SUPPORT:
        _session = None


os.register_at_fork(after_in_child=_after_fork_in_child)
