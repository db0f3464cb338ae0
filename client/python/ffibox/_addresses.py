"""What a plain integer used as an address means: the caller's memory or the worker's.

ctypes code turns addresses into integers and back (`c_void_p` results, `addressof`,
`from_address`, `cast(int, ...)`, `string_at`, `memmove`). With the library in another
process an integer may name either side, so ffibox.ctypes decides, in this order:

1. inside a worker twin of a caller object (ffibox._twins): the caller's own object;
2. at or up to 4 KiB past an integer the worker handed out (a `void*` result, field,
   out-parameter or callback argument; the last 4096 are remembered): the worker's;
3. readable in this process (probed through /proc/self/mem, so a wrong guess never
   faults): the caller's;
4. otherwise the worker's.

The caller's memory is thus never dereferenced at an address this process does not have
mapped, and an address the library returned is read in the worker even when the same
number happens to be mapped here.
"""
import bisect
import collections
import os
import threading
from typing import Optional, Tuple

from ffibox import _twins

REMEMBERED = 4096
NEAR_BYTES = 4096

_lock = threading.Lock()
_order: collections.deque = collections.deque()  # worker integers, oldest first
_sorted = []                                     # the same, in order of value
_proc_mem = [None, 0]  # descriptor of /proc/self/mem and the pid that opened it


def note_worker_address(address: int) -> None:
    """Remembers an integer the worker handed out as an address."""
    if not address:
        return
    with _lock:
        if len(_order) >= REMEMBERED:
            old = _order.popleft()
            del _sorted[bisect.bisect_left(_sorted, old)]
        _order.append(address)
        bisect.insort(_sorted, address)


def _near_worker_address(address: int) -> bool:
    with _lock:
        index = bisect.bisect_right(_sorted, address) - 1
        return index >= 0 and address - _sorted[index] < NEAR_BYTES


def locally_mapped(address: int, size: int = 1) -> bool:
    """Whether this process can read the first and last byte of [address, address + size)."""
    size = max(size, 1)
    if address <= 0 or address + size > 1 << 63:
        return False
    if _proc_mem[0] is None or _proc_mem[1] != os.getpid():
        _proc_mem[0] = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
        _proc_mem[1] = os.getpid()
    try:
        return (len(os.pread(_proc_mem[0], 1, address)) == 1
                and len(os.pread(_proc_mem[0], 1, address + size - 1)) == 1)
    except OSError:
        return False


def classify(address: int, size: int = 1) -> Tuple[str, Optional[object], int]:
    """("twin", owner, local address), ("worker", None, address) or ("local", None,
    address) for integer `address` used for `size` bytes."""
    twin = _twins.map_worker_address(address)
    if twin is not None:
        return "twin", twin[0], twin[1]
    if _near_worker_address(address):
        return "worker", None, address
    if locally_mapped(address, size):
        return "local", None, address
    return "worker", None, address
