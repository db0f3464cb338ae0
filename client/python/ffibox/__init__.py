"""ffibox: call native libraries in a jailed worker process, with the stdlib ctypes API.

    from ffibox import ctypes          # instead of `import ctypes`
    libm = ctypes.CDLL("libm.so.6")
    libm.cos.restype = ctypes.c_double

`ffibox.connect()` and `Client.session()` give explicit control over servers and sessions;
`docs/python.md` is the guide. The generated protocol stubs (`ffibox.v1.ffibox_pb2`) are part
of an installed package (`pip install ./client/python`, docs/install.md); in a checkout they
are found through this package's `__path__` (see `_stubs.py`).
"""
import os as _os
import pkgutil as _pkgutil

# Installed, `ffibox.v1` (the stubs protoc generates from proto/ffibox/v1/ffibox.proto) sits in
# this directory. In a checkout it lives outside it: in bazel-bin/proto/ffibox/v1 after the
# build, or wherever FFIBOX_PROTO_PATH (a directory holding ffibox/v1/ffibox_pb2.py) says.
# Extending __path__ makes `ffibox.v1` resolve whichever of the `ffibox` directories comes
# first on sys.path.
if not _os.path.isdir(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "v1")):
    __path__ = _pkgutil.extend_path(__path__, __name__)
    _REPO = _os.path.dirname(_os.path.dirname(_os.path.dirname(_os.path.dirname(
        _os.path.abspath(__file__)))))
    for _root in (_os.environ.get("FFIBOX_PROTO_PATH"),
                  _os.path.join(_REPO, "bazel-bin", "proto")):
        if _root:
            _candidate = _os.path.join(_root, "ffibox")
            if _os.path.isdir(_os.path.join(_candidate, "v1")) and _candidate not in __path__:
                __path__.append(_candidate)

from ffibox.errors import (  # noqa: E402
    CallTimeout, Error, LibraryNotAllowed, MemoryFault, SandboxViolation, SessionClosed,
    StaleHandle, UntrustedServer, WorkerCrashed)
from ffibox.client import Client, Session, connect  # noqa: E402
from ffibox._remote import RemotePointer  # noqa: E402

__all__ = [
    "CallTimeout", "Client", "Error", "LibraryNotAllowed", "MemoryFault", "RemotePointer",
    "SandboxViolation", "Session", "SessionClosed", "StaleHandle", "UntrustedServer",
    "WorkerCrashed",
    "connect",
]
