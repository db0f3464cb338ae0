"""ctypes._endian (BigEndianStructure and friends): the stdlib's own, since data types are."""
from ctypes._endian import *  # noqa: F401,F403
from ctypes._endian import BigEndianStructure, LittleEndianStructure  # noqa: F401
