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
   so a wrong guess never faults): the caller's, but for the executable's own image (its
   file's mappings and the zeroed data after them), beyond the text of a bytes object there,
   and for the brk heap, beyond memory the caller shows it has there (an address
   ffibox.ctypes.addressof gave, a live ctypes object, bytearray or numpy array, the text of
   a bytes object);
5. otherwise the worker's.

The caller's memory is thus never dereferenced at an address this process does not have
mapped, and an address the library returned is read in the worker even when the same
number happens to be mapped here. The executable's image is left out because a library
knows it without being told: an executable built without position independence (Debian's
python3.11) is mapped at the same addresses in every process, interpreter state and type
objects among them, and a hostile library returning one of those as "its buffer" would
have the caller write over its own interpreter. No object the caller could hand out as a
bare address lives there. The brk heap follows it at an offset of at most 1 GiB, a range
a library can sweep (handing out one address after another, each mapped in the worker so a
miss tells it so) until the caller writes into its own heap: there an address is the
caller's only inside memory it is known to have.
"""
import bisect
import collections
import ctypes
import gc
import os
import struct
import sys
import threading
import types
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
_sbrk = _libc.sbrk
_sbrk.restype = ctypes.c_void_p
_sbrk.argtypes = [ctypes.c_ssize_t]


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


def _heap_start() -> int:
    """Where the brk heap begins (its start never moves; its end is sbrk(0))."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if line.rstrip().endswith("[heap]"):
                    return int(line.split("-", 1)[0], 16)
    except OSError:
        pass
    return _sbrk(0) or 0


_HEAP_START = _heap_start()


def in_brk_heap(address: int, size: int = 1) -> bool:
    """Whether [address, address + size) touches the brk heap."""
    return address < (_sbrk(0) or 0) and address + max(size, 1) > _HEAP_START


# Ranges of this process's memory its caller showed it has (ffibox.ctypes.addressof, or an
# object a scan found): the last REMEMBERED, as (start, end).
_shown: "collections.OrderedDict[int, int]" = collections.OrderedDict()


_shown_starts: list = []  # the same starts, in order of value


def note_local_object(address: int, size: int) -> None:
    """Remembers [address, address + size) as memory of a caller's object."""
    if size <= 0:
        return
    with _lock:
        if address not in _shown:
            bisect.insort(_shown_starts, address)
        if _shown.get(address, 0) < address + size:
            _shown[address] = address + size
        _shown.move_to_end(address)
        while len(_shown) > REMEMBERED:
            old, _ = _shown.popitem(last=False)
            del _shown_starts[bisect.bisect_left(_shown_starts, old)]


# How many remembered ranges starting below an address are looked at (objects seldom nest).
_SHOWN_LOOK_BACK = 8


def _shown_holds(address: int, size: int) -> bool:
    with _lock:
        index = bisect.bisect_right(_shown_starts, address)
        for start in _shown_starts[max(index - _SHOWN_LOOK_BACK, 0):index]:
            if address + size <= _shown[start]:
                return True
        return False


def _buffer_extent(obj) -> Optional[Tuple[int, int]]:
    """(start, size) of the memory a ctypes object, bytearray or numpy array keeps, or
    None for anything else."""
    # By its own type: a view of worker memory passes isinstance, and has no local memory.
    if issubclass(type(obj), _CDATA):
        return ctypes.addressof(obj), ctypes.sizeof(obj)
    if type(obj) is bytearray:
        return (ctypes.addressof((ctypes.c_char * len(obj)).from_buffer(obj)), len(obj)) \
            if obj else None
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(obj, numpy.ndarray):
        return obj.__array_interface__["data"][0], obj.nbytes
    return None


_CDATA = ctypes._SimpleCData.__mro__[1]


def _untracked_buffer(obj) -> bool:
    """Whether `obj` is a buffer the collector does not track: a bytearray, or a numpy
    ndarray (or one of its subclasses) once numpy is imported."""
    if type(obj) is bytearray:
        return True
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)


def _live_object_holds(address: int, size: int) -> bool:
    """Whether a live ctypes object, bytearray or numpy array of this process holds
    [address, address + size) (live_holder). The object found is remembered
    (note_local_object)."""
    holder = live_holder(address, size)
    if holder is None:
        return False
    note_local_object(*_buffer_extent(holder))
    return True


def live_holder(address: int, size: int = 1):
    """The live ctypes object, bytearray or numpy array of this process that holds
    [address, address + size), else None, for an address found nowhere else."""
    for obj in _live_objects():
        extent = _buffer_extent(obj)
        if extent is not None and extent[0] <= address and address + size <= sum(extent):
            return obj
    return None


def live_numpy_arrays() -> list:
    """The numpy arrays of this process that something holds (a variable, an attribute, an
    element); none before numpy is imported."""
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return []
    return list({id(obj): obj for obj in _live_objects()
                 if isinstance(obj, numpy.ndarray)}.values())


def _live_objects():
    """The objects the collector tracks, and the buffers it does not track that they or the
    variables of every thread's running functions hold (bytearrays and numpy arrays are in
    no tracked object there, and 3.11 makes a function's frame an object only when asked)."""
    for frame in list(sys._current_frames().values()):
        while frame is not None:
            for value in list(frame.f_locals.values()):
                if _untracked_buffer(value):
                    yield value
            frame = frame.f_back
    for obj in gc.get_objects():
        yield obj
        if type(obj) in _CONTAINERS:
            for referent in gc.get_referents(obj):
                if _untracked_buffer(referent):
                    yield referent


# Where untracked buffers are found: what holds them (variables, attributes, elements).
_CONTAINERS = (dict, list, tuple, types.FrameType)


def _known_in_heap(address: int, size: int) -> bool:
    """Whether the caller is known to have [address, address + size) of the brk heap."""
    return _shown_holds(address, size) or _within_bytes_text(address, size) or \
        _live_object_holds(address, size)


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
             strict: bool = False) -> Tuple[str, Optional[object], int]:
    """("twin", owner, local address), ("worker", None, address) or ("local", None,
    address) for integer `address` used for `size` bytes. `strict` (memmove, memset,
    string_at: ffibox.ctypes' own functions, which nothing but code swapped to it calls):
    the executable's image and the brk heap are the caller's only where it is known to
    have memory; otherwise (from_address of the stdlib's types, which ffibox.ctypes teaches
    process-wide, the stdlib's own objects) they are this process's when readable, as an
    integer the worker handed out there is not (note_worker_integer)."""
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
    if locally_mapped(address, size) and not _past_its_object(address, size) and (
            not strict or
            (not in_executable_image(address, size) or _within_bytes_text(address, size)) and
            (not in_brk_heap(address, size) or _known_in_heap(address, size))):
        return "local", None, address
    return "worker", None, address


def note_worker_integer(value: int) -> None:
    """Notes an integer result of the worker's (of an integer type) that lies in this
    process's executable image or brk heap as the worker's: a library handing out one of
    those as "its buffer" (a uintptr_t handle) would otherwise have the caller read and
    write its own memory there (from_address, or the stdlib's objects over it)."""
    if value >= LOWEST_NOTED and (in_executable_image(value) or in_brk_heap(value)):
        note_worker_address(value)


# Below the executable's image nothing is noted: the small numbers most results are.
LOWEST_NOTED = min((start for start, _ in _EXECUTABLE_IMAGE), default=1 << 16)


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
