"""Exceptions raised by the ffibox client; one place maps a protocol Error to them."""
from typing import List, Optional


class Error(Exception):
    """Base of every ffibox error. `code` is the protocol's ErrorCode name.
    `never_reached_worker` is true when the server refused the request before any worker saw
    it (nothing it asked for took effect). For a batch (Session.batch): `batch_index` is the
    index of the call that was refused or failed (None when the batch failed as a whole), and
    `results` the CallResults of the calls that ran before it."""

    def __init__(self, message: str, code: str = "INTERNAL", function: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.function = function
        self.never_reached_worker = False
        self.batch_index: Optional[int] = None
        self.results: List = []


class WorkerCrashed(Error):
    """The worker died while running `function` (killed by `signal`, or exited `exit_code`)."""

    def __init__(self, message: str, signal: int = 0, exit_code: int = -1, function: str = "",
                 fault_address: int = 0) -> None:
        super().__init__(message, "WORKER_CRASHED", function)
        self.signal = signal
        self.exit_code = exit_code
        self.fault_address = fault_address


class CallTimeout(Error):
    """The call's deadline passed; the worker was killed (the session restarts it)."""


class SandboxViolation(Error):
    """The jail killed the worker for a forbidden system call (`syscall`)."""

    def __init__(self, message: str, syscall: str = "", function: str = "") -> None:
        super().__init__(message, "SANDBOX_VIOLATION", function)
        self.syscall = syscall


class LibraryNotAllowed(Error, OSError):
    """The library is outside the server's allowed roots (an OSError, as CDLL raises)."""


class LibraryLoadFailed(Error, OSError):
    """dlopen failed in the worker (ctypes raises OSError for the same)."""


class SymbolNotFound(Error, AttributeError):
    """dlsym failed (ctypes raises AttributeError for the same)."""


class MemoryFault(Error, OSError):
    """A remote address could not be read or written (the worker was not harmed)."""


class StaleHandle(Error):
    """A remote address or callback of a worker generation that has since died."""


class SessionClosed(Error):
    """The session stream ended (closed, or the server went away)."""


class UntrustedServer(Error, PermissionError):
    """A unix socket, its directory or the process listening on it belongs to another user
    than you or root; the client refused it before sending anything. The message names the
    path and its owner. (A PermissionError, code PERMISSION_DENIED.)"""

    def __init__(self, message: str) -> None:
        super().__init__(message, "PERMISSION_DENIED")


def error_from_proto(error, pb, function: Optional[str] = None) -> Error:
    """The exception for a protocol `Error` message."""
    code = pb.ErrorCode.Name(error.code)
    message = "%s: %s" % (code, error.message) if error.message else code
    function = error.function or function or ""
    if error.code == pb.WORKER_CRASHED:
        raised = WorkerCrashed(message, error.signal, error.exit_code, function,
                               error.fault_address)
    elif error.code == pb.SANDBOX_VIOLATION:
        raised = SandboxViolation(message, error.syscall, function)
    else:
        classes = {
            pb.CALL_TIMEOUT: CallTimeout,
            pb.LIBRARY_NOT_ALLOWED: LibraryNotAllowed,
            pb.LIBRARY_LOAD_FAILED: LibraryLoadFailed,
            pb.SYMBOL_NOT_FOUND: SymbolNotFound,
            pb.MEMORY_FAULT: MemoryFault,
            pb.STALE_HANDLE: StaleHandle,
        }
        raised = classes.get(error.code, Error)(message, code, function)
        if error.HasField("batch_index"):
            raised.batch_index = error.batch_index
    raised.never_reached_worker = error.never_reached_worker
    return raised
