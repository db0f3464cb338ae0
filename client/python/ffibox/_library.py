"""CDLL: a library loaded in a session's worker, with ctypes' attribute and item access."""
import ctypes as _ct
import os
import threading
import weakref
from typing import Dict, Optional, Tuple, Union

from ffibox import _default
from ffibox._functions import _FuncPtr
from ffibox._worker_address import WorkerAddress
from ffibox.errors import Error, SymbolNotFound

# The `_handle` of every CDLL made, never an address (ctypes hands a library's `_handle` to
# _ctypes.dlsym and dlclose, which install_dl_functions makes take these): what each names,
# (its session, weakly; the session's handle of the library; its path), kept while the
# session lives, as a stdlib handle stays valid after its CDLL went
# (`_ctypes.dlsym(CDLL(name)._handle, symbol)`).
_by_token: Dict[int, Tuple["weakref.ref", int, str]] = {}
_last_token = [0]
_issue_lock = threading.Lock()


class CDLL:
    """ctypes.CDLL over a session: `name` is dlopen'ed in the worker, functions run there.

    `mode` is dlopen's as in ctypes: with `RTLD_GLOBAL` the library's symbols serve the
    libraries loaded after it in the same worker (RTLD_NOW is always on); `handle`,
    `use_last_error` and `winmode` are accepted for compatibility; `use_errno` works as in
    ctypes (see get_errno/set_errno)."""

    _func_flags_ = 1
    _func_restype_ = None

    def __init__(self, name: Optional[str], mode: int = 0, handle: Optional[int] = None,
                 use_errno: bool = False, use_last_error: bool = False,
                 winmode: Optional[int] = None, *, session=None) -> None:
        if session is None:
            session = _default.default_session()
        self._name = name
        self._session = session
        # As ctypes: a subclass may ask for errno through its _func_flags_.
        self._use_errno = use_errno or bool(self._func_flags_ & _ct._FUNCFLAG_USE_ERRNO)
        # CDLL(None) is the main program in ctypes; the worker's main program exports
        # nothing useful, so it is the C library (where such code looks for printf & co).
        path = "libc.so.6" if name is None else os.fspath(name)
        if os.sep in path and not os.path.isabs(path):
            path = os.path.abspath(path)  # the worker's working directory is not ours
        self._path = path
        self._library = session.load_library(path, bool(mode & _ct.RTLD_GLOBAL))
        with _issue_lock:
            _last_token[0] += 1
            self._handle = _last_token[0]
            _by_token[self._handle] = (weakref.ref(session), self._library, path)
            if self._handle & (self._handle - 1) == 0:  # now and then: those of ended sessions
                for token, (owner, _, _) in list(_by_token.items()):
                    if owner() is None:
                        del _by_token[token]

        class _FuncPtrOfThisLibrary(_FuncPtr):
            _restype_ = self._func_restype_ or _FuncPtr._restype_
        self._FuncPtr = _FuncPtrOfThisLibrary

    @property
    def session(self):
        """The ffibox Session whose worker loaded the library (an ffibox addition)."""
        return self._session

    @property
    def library_handle(self) -> int:
        """The session's handle of the library (an ffibox addition); `_handle`, which
        ctypes code hands to _ctypes.dlsym and dlclose, is a number of this process's."""
        return self._library

    def __repr__(self) -> str:
        return "<%s '%s' in ffibox session %s>" % (type(self).__name__, self._name,
                                                   self._session.session_id)

    def __getattr__(self, name: str) -> _FuncPtr:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        function = self.__getitem__(name)
        setattr(self, name, function)
        return function

    def __getitem__(self, name_or_ordinal: Union[str, int]) -> _FuncPtr:
        if not isinstance(name_or_ordinal, str):
            raise TypeError("ffibox: functions are looked up by name (ELF has no ordinals)")
        return self._FuncPtr(name_or_ordinal, self._session, self._library,
                             use_errno=self._use_errno, library_name=self._name,
                             address=self.address_of(name_or_ordinal))

    def address_of(self, symbol: str) -> WorkerAddress:
        """The worker address of `symbol` (AttributeError, as ctypes, when it is missing)."""
        if self._session.stream.closed_at_exit:
            # A function first named in a __del__ at interpreter exit: calls do nothing then.
            return WorkerAddress(self._session, 0, 0)
        try:
            return self._session.lookup(self._library, symbol)
        except SymbolNotFound as error:
            raise SymbolNotFound(_undefined(self._path, symbol), error.code) from None


def _undefined(path: str, symbol: str) -> str:
    """What dlsym says of a symbol `path` lacks."""
    return "%s: undefined symbol: %s" % (path, symbol)


def install_dl_functions() -> None:
    """Makes _ctypes.dlsym and _ctypes.dlclose, which ctypes code calls with a library's
    `_handle` (sasmodels unloads its kernels so), take an ffibox CDLL's: dlsym gives the
    symbol's worker address, dlclose leaves the library loaded in its worker (ffibox unloads
    nothing before the session ends); the stdlib's take every other handle. Without this
    the stdlib's would take the small number for a library of this process and crash it."""
    import _ctypes
    stdlib_dlsym = getattr(_ctypes.dlsym, "stdlib", _ctypes.dlsym)
    stdlib_dlclose = getattr(_ctypes.dlclose, "stdlib", _ctypes.dlclose)

    def dlsym(handle, name):
        if not _is_token(handle):
            return stdlib_dlsym(handle, name)
        named = _by_token.get(handle)
        session = named[0]() if named is not None else None
        if session is None:
            raise OSError("ffibox: the session of library handle %d has ended" % handle)
        try:
            return session.lookup(named[1], name).address
        except SymbolNotFound:
            raise OSError(_undefined(named[2], name)) from None
        except Error as error:  # the session closed, its worker lost
            raise OSError("ffibox: %s" % error) from None

    def dlclose(handle):
        if not _is_token(handle):
            return stdlib_dlclose(handle)
        return None  # loaded in its worker until the session ends

    dlsym.stdlib, dlclose.stdlib = stdlib_dlsym, stdlib_dlclose
    _ctypes.dlsym, _ctypes.dlclose = dlsym, dlclose


def _is_token(handle) -> bool:
    """Whether `handle` is a CDLL's `_handle` (of a session ended or not): a number up to the
    last one issued, far below any address a library of this process has."""
    return type(handle) is int and 0 < handle <= _last_token[0]


class LibraryLoader:
    """ctypes.LibraryLoader: `cdll.libc` / `cdll.LoadLibrary(name)` over one session."""

    def __init__(self, dlltype, session_getter=None) -> None:
        self._dlltype = dlltype
        self._session_getter = session_getter

    def __getattr__(self, name: str):
        if name[0] == "_":
            raise AttributeError(name)
        library = self.LoadLibrary(name)
        setattr(self, name, library)
        return library

    def __getitem__(self, name: str):
        return getattr(self, name)

    def LoadLibrary(self, name: str):
        session = self._session_getter() if self._session_getter else None
        return self._dlltype(name, session=session)
