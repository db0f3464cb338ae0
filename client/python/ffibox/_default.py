"""The process's default session: the one `from ffibox import ctypes` uses, and the one a
plain integer address names (`cast`, `string_at`, `from_address`, `PROTOTYPE(address)`).

It is opened on first use by the opener ffibox.client sets when it is imported
(`connect().session()`), so the modules under the client reach it without importing the
client or the ctypes facade.
"""
import threading
from typing import Any, Callable, Optional

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
