"""ctypes.util for ffibox: find_library names a library the worker (on this host) can load."""
from ctypes.util import find_library  # noqa: F401 - same host, same dynamic linker

__all__ = ["find_library"]
