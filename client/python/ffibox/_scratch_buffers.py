"""Local buffers backing callbacks' pointer arguments to pointer-free data (`char*`, `int*`).

Such a pointer often points to a buffer of unknown length that the callback reads or fills.
The worker ships the bytes from the pointer on (up to CALLBACK_BUFFER_BYTES); the callback
gets a local buffer holding them, reserved further (SCRATCH_RESERVED_BYTES, only the pages
touched take memory) so that reads and writes past them stay in memory this process owns.
After the callback, what changed is found in place (memcmp, mincore) and sent back.
"""
import ctypes as _ct
import mmap
import sys
import threading
import weakref
from typing import List, Tuple

# What a callback's pointer to a buffer of unknown length is backed by locally: the
# worker's bytes from the pointer on come for this many bytes at most.
CALLBACK_BUFFER_BYTES = 64 << 10
# The memory such a buffer reserves: writes past its CALLBACK_BUFFER_BYTES up to here (a
# callback filling a larger buffer the library handed it) land in memory of its own, found
# again by mincore and never written back; the last page faults.
SCRATCH_RESERVED_BYTES = 4 << 20
# Zeros to compare a scratch buffer's tail with, in place (never written).
_ZEROS = _ct.create_string_buffer(CALLBACK_BUFFER_BYTES)
_libc = _ct.CDLL(None, use_errno=True)
_memcmp = _libc.memcmp
_memcmp.restype = _ct.c_int
_memcmp.argtypes = [_ct.c_void_p, _ct.c_void_p, _ct.c_size_t]
_mmap = _libc.mmap
_mmap.restype = _ct.c_void_p
_mmap.argtypes = [_ct.c_void_p, _ct.c_size_t, _ct.c_int, _ct.c_int, _ct.c_int, _ct.c_long]
_munmap = _libc.munmap
_munmap.argtypes = [_ct.c_void_p, _ct.c_size_t]
_mprotect = _libc.mprotect
_mprotect.argtypes = [_ct.c_void_p, _ct.c_size_t, _ct.c_int]
_mincore = _libc.mincore
_mincore.argtypes = [_ct.c_void_p, _ct.c_size_t, _ct.c_void_p]
_madvise = _libc.madvise
_madvise.argtypes = [_ct.c_void_p, _ct.c_size_t, _ct.c_int]
_PROT_NONE, _PROT_READ_WRITE = 0, 3
_MAP_PRIVATE_ANONYMOUS_NORESERVE = 0x02 | 0x20 | 0x4000
_MADV_DONTNEED = 4
_MADV_NOHUGEPAGE = 15
# At most this many reservations live outside the pools at once (a callback that keeps its
# pointers, or casts them, keeps each): past it, buffers come from the heap, as they did
# before reservations, so the process's map count stays bounded.
MAX_RESERVATIONS = 1024
_reservations = 0  # live now
_reservations_lock = threading.RLock()  # re-entrant: see ffibox._addresses._lock
# Reservations whose buffer was collected, unmapped by the next _reserved_window: not in
# the collection that found the buffer, whose objects' __del__ may still read through a
# pointer into it (weakref callbacks run before them).
_unmap_later: List[int] = []
_PAGE = mmap.PAGESIZE
# Past a scratch buffer's window, before its last page: where writes land unseen.
_PAST_BYTES = SCRATCH_RESERVED_BYTES - CALLBACK_BUFFER_BYTES - _PAGE
_PAST_PAGES = _PAST_BYTES // _PAGE
_residency = threading.local()  # mincore's answer for one buffer, one per thread
_Window = _ct.c_char * CALLBACK_BUFFER_BYTES


def _release_later(address: int) -> None:
    _unmap_later.append(address)


def _reserved_window():
    """A buffer of CALLBACK_BUFFER_BYTES at the start of a fresh reservation of
    SCRATCH_RESERVED_BYTES (its last page inaccessible, no huge pages: a byte written would
    otherwise take 2 MiB), unmapped after the buffer is collected; None when the memory
    cannot be mapped or MAX_RESERVATIONS are live."""
    global _reservations
    with _reservations_lock:
        while _unmap_later:
            _munmap(_unmap_later.pop(), SCRATCH_RESERVED_BYTES)
            _reservations -= 1
        if _reservations >= MAX_RESERVATIONS:
            return None
        address = _mmap(None, SCRATCH_RESERVED_BYTES, _PROT_READ_WRITE,
                        _MAP_PRIVATE_ANONYMOUS_NORESERVE, -1, 0)
        if address is None or address == _ct.c_void_p(-1).value:
            return None
        guard = address + SCRATCH_RESERVED_BYTES - _PAGE
        if _mprotect(guard, _PAGE, _PROT_NONE) != 0:
            _munmap(address, SCRATCH_RESERVED_BYTES)
            return None
        _madvise(address, SCRATCH_RESERVED_BYTES - _PAGE, _MADV_NOHUGEPAGE)  # best effort
        _reservations += 1
    window = _Window.from_address(address)
    weakref.finalize(window, _release_later, address)
    return window


def touched_past(buffer) -> List[int]:
    """The addresses of the pages past a reserved buffer's window that something touched
    (read or written: resident); [] for a buffer that reserves nothing past it. One mincore;
    an invocation's checks of a buffer take its answer (`past`) from one call."""
    if buffer._b_needsfree_:
        return []  # a plain buffer (no reservation could be made)
    start = _ct.addressof(buffer) + CALLBACK_BUFFER_BYTES
    resident = getattr(_residency, "pages", None)
    if resident is None:
        resident = _residency.pages = _ct.create_string_buffer(_PAST_PAGES)
    if _mincore(start, _PAST_BYTES, resident) != 0:
        return [start + i * _PAGE for i in range(_PAST_PAGES)]
    if _memcmp(resident, _ZEROS, _PAST_PAGES) == 0:
        return []
    return [start + i * _PAGE for i, flags in enumerate(resident.raw) if flags & 1]


class ScratchBuffers:
    """Local buffers backing callbacks' pointer arguments to pointer-free data (`char*`,
    `int*`: often a buffer of unknown length). A buffer holds the worker's bytes from the
    pointer on that came with the invoke (the pointee and what was readable after it, up to
    CALLBACK_BUFFER_BYTES: the callback is defined with DefineCallback.buffer_bytes =
    CALLBACK_BUFFER_BYTES), zeros beyond, so filling it reads no remote memory. Reads and
    writes past those bytes stay in memory this process owns up to SCRATCH_RESERVED_BYTES
    from the pointer (only the pages touched take memory).

    A buffer that nothing outside the invocation holds any more is taken again by a later
    one, with only what was written to it cleared (a sort's comparator takes two per call):
    at most MAX_FREE are kept. Thread-safe (list operations are atomic)."""

    MAX_FREE = 8

    def __init__(self) -> None:
        self._free: List[Tuple[object, int]] = []  # (buffer, zeros from this offset on)

    def take(self, pointee: bytes, following: bytes):
        """A buffer holding `pointee` then `following`, zeros beyond."""
        size = len(pointee) + len(following)
        if size > CALLBACK_BUFFER_BYTES:  # more than an honest worker ships: a buffer of its own
            buffer = _ct.create_string_buffer(size)
            _ct.memmove(buffer, pointee + following, size)
            return buffer
        try:
            buffer, dirty = self._free.pop()
        except IndexError:
            buffer, dirty = _reserved_window(), 0
            if buffer is None:
                buffer = _ct.create_string_buffer(CALLBACK_BUFFER_BYTES)
        base = _ct.addressof(buffer)
        _ct.memmove(base, pointee, len(pointee))
        _ct.memmove(base + len(pointee), following, len(following))
        if dirty > size:
            _ct.memset(base + size, 0, dirty - size)
        return buffer

    @staticmethod
    def untouched(buffer, first: int, following: bytes, past: List[int]) -> bool:
        """Whether `buffer` still holds, from offset `first` on, the `following` bytes that
        came and zeros after them, and nothing touched the memory it reserves past them
        (`past`, touched_past's pages): compared in place, without a copy."""
        if past or _ct.string_at(_ct.addressof(buffer) + first, len(following)) != following:
            return False
        return ScratchBuffers._window_zeros_from(buffer, first + len(following))

    @staticmethod
    def zeros_from(buffer, offset: int, past: List[int]) -> bool:
        """Whether `buffer` holds only zeros from `offset` on, in the pages touched past its
        window (`past`) too."""
        if not ScratchBuffers._window_zeros_from(buffer, offset):
            return False
        return not any(_memcmp(page, _ZEROS, _PAGE) for page in past)

    @staticmethod
    def _window_zeros_from(buffer, offset: int) -> bool:
        base = _ct.addressof(buffer)
        for at in range(offset, len(buffer), CALLBACK_BUFFER_BYTES):
            if _memcmp(base + at, _ZEROS, min(len(buffer) - at, CALLBACK_BUFFER_BYTES)):
                return False
        return True

    @staticmethod
    def reach(buffer) -> int:
        """How far past its start `buffer` is memory of its own (its reservation's, before
        the inaccessible last page, or its own bytes): one past the last byte."""
        return len(buffer) if buffer._b_needsfree_ else SCRATCH_RESERVED_BYTES - _PAGE

    @staticmethod
    def holders(buffer) -> int:
        """How many references hold the keep-alive dict that ctypes' `cast` shares between
        `buffer` and every object made from it (the buffer itself among them), counted the
        same way each time: compared before and after a callback ran."""
        objects = buffer._objects
        return sys.getrefcount(objects) if objects is not None else 0

    def give_back(self, buffer, dirty: int, past: List[int]) -> None:
        """`buffer`, which nothing else refers to, holds zeros from `dirty` on in its window
        (past it, the pages touched, `past`, are cleared here): taken again by a later
        invocation."""
        if len(buffer) != CALLBACK_BUFFER_BYTES or len(self._free) >= self.MAX_FREE:
            return
        if past and \
                _madvise(_ct.addressof(buffer) + CALLBACK_BUFFER_BYTES, _PAST_BYTES,
                         _MADV_DONTNEED) != 0:
            return
        self._free.append((buffer, dirty))
