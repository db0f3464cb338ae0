"""What a plain integer used as an address means: the caller's memory or the worker's.

ctypes code turns addresses into integers and back (`c_void_p` results, `addressof`,
`from_address`, `cast(int, ...)`, `string_at`, `memmove`). With the library in another
process an integer may name either side, so ffibox.ctypes decides, in this order:

1. inside a worker twin of a caller object (ffibox._twins): the caller's own object;
2. an address of this process the caller passed to the library as a plain integer (the
   library may hand it back, e.g. a callback's user data): the caller's;
3. at or up to 4 KiB past an integer the worker handed out (a `void*` result, field,
   out-parameter or callback argument; the last 4096 are remembered): the worker's;
4. readable in this process (probed with process_vm_readv, which honours page protections,
   so a wrong guess never faults), but for the executable's own image (its file's mappings
   and the zeroed data after them) beyond the text of a bytes object there: the caller's;
5. otherwise the worker's.

The caller's memory is thus never dereferenced at an address this process does not have
mapped, and an address the library returned is read in the worker even when the same
number happens to be mapped here. The executable's image is left out because a library
knows it without being told: an executable built without position independence (Debian's
python3.11) is mapped at the same addresses in every process, interpreter state and type
objects among them, and a hostile library returning one of those as "its buffer" would
have the caller write over its own interpreter. No object the caller could hand out as a
bare address lives there.
"""
import bisect
import collections
import ctypes
import os
import struct
import threading
from typing import Optional, Tuple

from ffibox import _twins

REMEMBERED = 4096
NEAR_BYTES = 4096

# Re-entrant, as every lock a call may take: a signal handler or finalizer that Python runs
# on a thread while it holds one may call a function, which must not wait for that thread.
_lock = threading.RLock()
_order: collections.deque = collections.deque()  # worker integers, oldest first
_sorted = []                                     # the same, in order of value
_local_sent: "collections.OrderedDict[int, None]" = collections.OrderedDict()
_epoch = 0  # counts the worker integers noted: a cached "local" answer holds within one


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_process_vm_readv = _libc.process_vm_readv
_process_vm_readv.restype = ctypes.c_ssize_t
_process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong,
                              ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.c_ulong]
_probe = ctypes.create_string_buffer(1)


def note_local_address(address: int) -> None:
    """Remembers an address of this process sent to the library as a plain integer."""
    with _lock:
        _local_sent[address] = None
        _local_sent.move_to_end(address)
        while len(_local_sent) > REMEMBERED:
            _local_sent.popitem(last=False)


def note_worker_address(address: int) -> None:
    """Remembers an integer the worker handed out as an address (unless it is one this
    process sent: the library handing the caller's own address back)."""
    global _epoch
    if not address:
        return
    with _lock:
        if address in _local_sent:
            return
        _epoch += 1
        if len(_order) >= REMEMBERED:
            old = _order.popleft()
            del _sorted[bisect.bisect_left(_sorted, old)]
        _order.append(address)
        bisect.insort(_sorted, address)


def epoch() -> int:
    """A number that changes whenever a worker integer is noted: what classify() said an
    address is can change only then (or when this process unmaps memory it had)."""
    return _epoch


def _executable_image() -> Tuple[Tuple[int, int], ...]:
    """The address ranges of this process's executable: the mappings of its file and the
    anonymous one right after them (its zeroed data), read once from /proc/self/maps."""
    try:
        executable = os.readlink("/proc/self/exe")
        with open("/proc/self/maps") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return ()
    ranges = []
    for line in lines:
        fields = line.split(None, 5)
        start, end = (int(part, 16) for part in fields[0].split("-"))
        path = fields[5].strip() if len(fields) > 5 else ""
        if path == executable:
            ranges.append((start, end))
        elif ranges and not path and ranges[-1][1] == start:
            ranges.append((start, end))  # the data the executable's file leaves zeroed
            break
        elif ranges:
            break
    return tuple(ranges)


_EXECUTABLE_IMAGE = _executable_image()


def in_executable_image(address: int, size: int = 1) -> bool:
    """Whether [address, address + size) touches the executable's image (_executable_image)."""
    return any(address < end and address + max(size, 1) > start
               for start, end in _EXECUTABLE_IMAGE)


def _near_worker_address(address: int) -> bool:
    with _lock:
        index = bisect.bisect_right(_sorted, address) - 1
        return index >= 0 and address - _sorted[index] < NEAR_BYTES


def _copy_local(into: int, address: int, size: int) -> bool:
    """Copies `size` bytes of this process at `address` to `into` with process_vm_readv,
    which honours page protections and never faults; whether all of them could be read."""
    local = _IoVec(into, size)
    remote = _IoVec(address, size)
    return _process_vm_readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1,
                             0) == size


def locally_mapped(address: int, size: int = 1) -> bool:
    """Whether this process can read the first and last byte of [address, address + size)."""
    size = max(size, 1)
    if address <= 0 or address + size > 1 << 63:
        return False
    probe = ctypes.addressof(_probe)
    return all(_copy_local(probe, at, 1) for at in {address, address + size - 1})


def _read_local(address: int, size: int) -> Optional[bytes]:
    """`size` bytes of this process at `address` (_copy_local); None where they cannot all
    be read."""
    buffer = ctypes.create_string_buffer(max(size, 1))
    return buffer.raw[:size] if _copy_local(ctypes.addressof(buffer), address, size) else None


_BYTES_HEADER = struct.Struct("qPq")  # a PyBytesObject's ob_refcnt, ob_type and ob_size
MAX_BYTES_TEXT = 16 << 20


def local_bytes_text(address: int) -> Optional[bytes]:
    """A copy of the text of the Python `bytes` object whose contents start at `address` of
    this process (`cast(c_char_p(b), c_void_p).value`, as PyOpenGL passes strings), when
    the memory there is one: its header in front says `bytes`, its size fits, and its
    terminating NUL is where CPython keeps it. None otherwise (a buffer of unknown extent,
    memory that cannot be read). Read with process_vm_readv: never a fault."""
    start = address - _twins.BYTES_DATA_OFFSET
    header = _read_local(start, _BYTES_HEADER.size) if address > 0 and start > 0 else None
    if header is None:
        return None
    references, kind, size = _BYTES_HEADER.unpack(header)
    if kind != id(bytes) or references <= 0 or not 0 <= size <= MAX_BYTES_TEXT:
        return None
    text = _read_local(address, size + 1)
    if text is None or text[-1:] != b"\0":
        return None
    return text[:-1]


def classify(address: int, size: int = 1,
             executable: bool = False) -> Tuple[str, Optional[object], int]:
    """("twin", owner, local address), ("worker", None, address) or ("local", None,
    address) for integer `address` used for `size` bytes. `executable`: the executable's
    image may be this process's (for an object something else in this process made there,
    such as the stdlib's `c_int.in_dll(pythonapi, ...)`)."""
    twin = _twins.map_worker_address(address)
    if twin is not None:
        if _past_its_object(twin[1], size):
            return "worker", None, address
        return "twin", twin[0], twin[1]
    with _lock:
        sent = address in _local_sent
    if sent:
        return "local", None, address
    if _near_worker_address(address):
        return "worker", None, address
    if locally_mapped(address, size) and (executable or
                                          not in_executable_image(address, size) or
                                          _within_bytes_text(address, size)) and \
            not _past_its_object(address, size):
        return "local", None, address
    return "worker", None, address


def _past_its_object(local: int, size: int) -> bool:
    """Whether `size` bytes at local address `local`, inside an object a call passed, run past
    that object's end. A library that hands back an address in what it was passed (as
    "its buffer", of the size it says) would otherwise have the caller write over whatever
    follows in its heap: those bytes are not the caller's to give, and go to the worker."""
    end = _twins.local_end(local)
    return end is not None and local + max(size, 1) > end


def _within_bytes_text(address: int, size: int) -> bool:
    """Whether [address, address + size) lies in the text (with its NUL) of a Python bytes
    object: b"" and the one-byte bytes live in the executable's image, and the caller makes
    char* of them (`cast(c_char_p(b""), c_void_p).value`, as PyOpenGL makes its strings)."""
    text = local_bytes_text(address)
    return text is not None and size <= len(text) + 1
