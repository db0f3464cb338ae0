"""ctypes.util for ffibox: the stdlib's functions (same host, same dynamic linker), so
find_library names a library the worker can load."""
import ctypes.util as _util
from ctypes.util import find_library  # noqa: F401

__all__ = ["find_library"]


def __getattr__(name: str):
    # The rest of ctypes.util (find_msvcrt, _findSoname_ldconfig, ...), as the stdlib has it.
    return getattr(_util, name)
