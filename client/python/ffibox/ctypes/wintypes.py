"""ctypes.wintypes: the stdlib's Windows type names (plain data types, usable anywhere).

Loaded from the stdlib's own file: under the one-import swap `ctypes.wintypes` names this
module, so a plain import of the stdlib's would find this module again.
"""
import importlib.util as _util
import os as _os

from ffibox.ctypes import _ct  # the stdlib's ctypes (`ctypes` may name ffibox.ctypes here)

_spec = _util.spec_from_file_location(
    "ffibox.ctypes._stdlib_wintypes", _os.path.join(_os.path.dirname(_ct.__file__), "wintypes.py"))
_stdlib = _util.module_from_spec(_spec)
_spec.loader.exec_module(_stdlib)
globals().update({name: value for name, value in vars(_stdlib).items()
                  if not name.startswith("__")})
del _spec, _stdlib, _util, _os, _ct
