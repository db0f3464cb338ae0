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

_lock = threading.Lock()
_session: Optional[Any] = None
_opener: Optional[Callable[[], Any]] = None


def set_opener(opener: Callable[[], Any]) -> None:
    """Sets how the default session is opened (a callable returning a new Session)."""
    global _opener
    _opener = opener


def default_session():
    """The default session; the first call opens it (one per process)."""
    global _session
    with _lock:
        if _session is None:
            _session = _opener()
        return _session


def opened_session():
    """The default session if one was opened, else None (nothing is opened)."""
    return _session


def _after_fork_in_child() -> None:
    # The parent's default session ended in the child (ffibox._stream). With gRPC's fork
    # support on, the child may open its own, and does on first use; without it, the child
    # may not use gRPC at all (ffibox._channel), so the ended session stays and says why.
    global _lock, _session
    _lock = threading.Lock()
    if GRPC_FORK_SUPPORT:
        _session = None


os.register_at_fork(after_in_child=_after_fork_in_child)
