"""ctypes._endian (BigEndianStructure and friends): the stdlib's own, since data types are."""
import importlib as _importlib

# The public names of `ctypes._endian`, as `from ctypes._endian import *` gives them.
globals().update({name: value for name, value in
                  vars(_importlib.import_module("ctypes._endian")).items()
                  if not name.startswith("_")})
