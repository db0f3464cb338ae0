"""Worker twins: one worker address for each caller object a call reaches, for its life.

The first call that reaches a ctypes object (a byref target, a buffer, a structure, what its
pointers reach) asks the worker to keep the object's memory block after the call
(`MemoryBlock.keep`); later calls place the block at the same worker address
(`MemoryBlock.at`). The contents are still synced at call boundaries, both ways: a call that
places the block copies it in and back, and every block is watched (`MemoryBlock.watch`),
so a call that does not pass it reports it when the library wrote into it through a pointer
it kept (CallResult.changed, written into the owner by ffibox._blocks). So a
library may keep a pointer to the caller's structure between calls (zlib's z_stream, a
parser's buffer), and a worker address inside a twin that comes back (a result, a pointer
field, an integer used with from_address) maps to the caller's own object.

The twin belongs to the object's memory owner (the object whose buffer it is: a field
view's or an element view's base, or the twinned object a view points into), so a view and
its base share one twin. When the owner is collected its twin is released with one of the
session's next calls (`Call.release`). Twins of an older worker generation (the worker was
restarted) are forgotten.

While a call is in flight, the twins it placed are *busy*: the worker's copy is the live one
(the library works on it), so a nested call (from a callback) passes a busy twin's worker
address without syncing the caller's stale bytes into it, and a worker address inside a busy
twin is not mapped to the caller's object (it reads and writes the worker's memory).
"""
import bisect
import collections
import ctypes as _ct
import sys
import threading
import weakref
from typing import Callable, Dict, List, Optional, Tuple

from ffibox.errors import Error

# Twins released per call (Call.release); the rest wait for the next calls.
RELEASES_PER_CALL = 1024

# A twin's worker address to release (Call.release's RemoteAddress, as take_releases gives it).
Released = collections.namedtuple("Released", "address generation")

# Every TwinTable of the process (one per session), for mapping plain integers.
_tables: "weakref.WeakSet[TwinTable]" = weakref.WeakSet()


def map_worker_address(address: int):
    """(owner, local address) when `address` lies in a live twin of any session, else None."""
    for table in list(_tables):
        found = table.local(address, None)
        if found is not None:
            return found
    return None


def local_end(address: int) -> Optional[int]:
    """Where the memory of the caller's object that holds local `address` ends, when that
    object has a live twin in any session (a call passed it), else None."""
    for table in list(_tables):
        found = table.twin_at(address)
        if found is not None:
            return found[1].local + found[1].size
    return None


def pointer_into(t, found):
    """A `t` (a ctypes pointer type) to the caller's object of `found` (what
    TwinTable.local gives: the owner, and the local address in it), keeping it alive."""
    result = _ct.cast(_ct.c_void_p(found[1]), t)
    result._ffibox_twin_owner = found[0]
    return result


# Where an object with a twin keeps what its twin's pointers reach (PINS): ctypes' keep-alive
# references (`_objects`) follow the caller's object, which may be pointed elsewhere since
# (`s.ptr = pointer(other)`) while the library still reads the twin as the worker last got
# it; the objects that twin points to must live until it is written again.
PINS = "_ffibox_pins"


def pin(owner, pinned: dict) -> None:
    """Makes `owner` keep `pinned` (offset -> object its twin points to there), in place of
    what it pinned before; an owner without a __dict__ (bytes, a record with __slots__)
    pins nothing."""
    try:
        held = owner.__dict__
    except AttributeError:
        return
    if pinned:
        held[PINS] = pinned
    else:
        held.pop(PINS, None)


def owner_of(obj):
    """The ctypes object whose buffer `obj` lives in (itself when it owns its memory)."""
    while getattr(obj, "_b_base_", None) is not None:
        obj = obj._b_base_
    return obj


def _bytes_address_by_ctypes(data: bytes) -> int:
    return _ct.cast(_ct.c_char_p(data), _ct.c_void_p).value


# Where a bytes object's contents start, from the object's own address (CPython's id).
_probe = b"ffibox"
BYTES_DATA_OFFSET = _bytes_address_by_ctypes(_probe) - id(_probe)


def bytes_address(data: bytes) -> int:
    """Where CPython keeps the contents of `data`."""
    if type(data) is bytes:
        return id(data) + BYTES_DATA_OFFSET
    return _bytes_address_by_ctypes(data)


def write_into_bytes(owner: bytes, returned: bytes, start: int = 0) -> None:
    """Writes what a library left in the copy of bytes object `owner` from offset `start`
    (`returned`: those bytes of the copy, maybe its terminator after them) into the object
    where it differs, as C writing into it in place with ctypes would have; never past its
    bytes (the terminator stays), and never into a one-byte object, which CPython shares
    process-wide (every b"x" is the same object: a library's write would change them all)."""
    size = len(owner) - start
    if len(owner) > 1 and size > 0 and returned[:size] != owner[start:start + size]:
        _ct.memmove(bytes_address(owner) + start, returned, min(size, len(returned)))


# The keep-alive CPython's ctypes makes for a c_wchar_p set from a str (a field, an array
# element, a c_wchar_p object): a capsule of this name holding the wchar_t string it made.
_WIDE_KEEP_NAME = b"_ctypes/cfield.c pymem"
_capsule_is_valid = _ct.PYFUNCTYPE(_ct.c_int, _ct.py_object, _ct.c_char_p)(
    ("PyCapsule_IsValid", _ct.pythonapi))
_capsule_pointer = _ct.PYFUNCTYPE(_ct.c_void_p, _ct.py_object, _ct.c_char_p)(
    ("PyCapsule_GetPointer", _ct.pythonapi))


def wide_kept(owner) -> int:
    """The address of the wchar_t string `owner` holds when it is such a capsule, else 0."""
    if type(owner).__name__ != "PyCapsule" or not _capsule_is_valid(owner, _WIDE_KEEP_NAME):
        return 0
    return _capsule_pointer(owner, _WIDE_KEEP_NAME) or 0


def wide_kept_bytes(owner) -> bytes:
    """The wchar_t string of a wide_kept capsule, its terminator included."""
    address = wide_kept(owner)
    return _ct.string_at(address, (len(_ct.wstring_at(address)) + 1) * _ct.sizeof(_ct.c_wchar))


def held_strongly(owner) -> bool:
    """Whether a twin holds `owner` itself (bytes, str, a wide string's capsule: immutable
    sources nothing tells the death of) rather than weakly."""
    return isinstance(owner, (bytes, str)) or wide_kept(owner) != 0


class Twin:
    """A ctypes owner's twin (held weakly), or a bytes / str argument's or a wide string's
    capsule (held strongly, as nothing tells when such an object dies: it is released once
    only the twin holds it)."""

    __slots__ = ("ref", "strong", "local", "size", "worker", "generation", "busy")

    def __init__(self, owner, local: int, size: int, worker: int, generation: int,
                 on_collect) -> None:
        if held_strongly(owner):
            self.ref = None
            self.strong = owner
        else:
            self.ref = weakref.ref(owner, on_collect)
            self.strong = None
        self.local = local  # 0 for str: its twin holds an encoding, not its memory
        self.size = size
        self.worker = worker
        self.generation = generation
        self.busy = 0  # calls in flight that placed it

    def alive(self):
        """The owner while it still has the memory this twin stands for, else None."""
        if self.strong is not None:
            return self.strong
        owner = self.ref()
        if owner is None or _ct.addressof(owner) != self.local or _ct.sizeof(owner) < self.size:
            return None
        return owner

    def only_held_here(self) -> bool:
        # getrefcount counts this twin's reference and its own argument.
        return self.strong is not None and sys.getrefcount(self.strong) <= 2


def _weakly_referable(owner) -> bool:
    return held_strongly(owner) or type(owner).__weakrefoffset__ != 0


def _reentered() -> None:
    """Refuses a signal handler's or finalizer's call that Python ran on a thread inside one
    of a TwinTable's sections: the call would use the table half-changed (or, were the lock
    not re-entrant, wait for its own thread). (Weakref callbacks, which may run anywhere,
    only append to a deque.) A handler that runs before the lock is taken, or once it is
    given back, finds the table whole and may use it."""
    raise Error("FAILED_PRECONDITION: a signal handler or finalizer that ran while this thread "
                "updated the table of the caller's objects in the worker cannot make a call "
                "that uses it", "FAILED_PRECONDITION")


class TwinTable:
    """A session's twins, found by owner, by worker address and by local address.
    `generation` tells the session's current worker generation."""

    def __init__(self, generation: Callable[[], int] = lambda: 0) -> None:
        self._generation = generation
        self._lock = threading.RLock()  # entered once at a time by a thread (_section)
        self._owned = self._lock._is_owned
        self._by_owner: Dict[int, Twin] = {}   # id(owner) -> twin
        self._worker_starts: List[int] = []     # sorted
        self._by_worker: Dict[int, Twin] = {}
        # Local memory: twins by start, sorted. Twins may overlap (an object made over part of
        # another's memory that a call twinned apart from it, or over the rest of a buffer):
        # the largest twin at a start is indexed, the others there are its shadows; starts
        # of twins that hold another twin's start are the outer starts (_holding).
        self._local_starts: List[int] = []
        self._by_local: Dict[int, Twin] = {}
        self._shadows: Dict[int, List[Twin]] = {}
        self._outer_starts: List[int] = []
        # Twins whose owner was collected, released with the next calls. A weakref callback
        # only appends here (it may run inside any code of this thread, this table's
        # included).
        self._collected: collections.deque = collections.deque()
        self._strong = set()  # keys of bytes / str twins
        # Owners whose block a call in flight is keeping (place set `keep`): their twin is
        # recorded when it returns; meanwhile other calls ship them for themselves alone.
        self._keeping = set()
        self._newest_generation = 0
        self._longest_local = 0  # the most bytes a local twin has held
        # The generation of the worker that handed integer `address` out as an address
        # (Session.remember_handed), else None: set by the session.
        self.handed: Callable[[int], Optional[int]] = lambda address: None
        _tables.add(self)

    def entered_here(self) -> bool:
        """Whether this thread is inside one of the table's sections (a finalizer or signal
        handler that Python ran there)."""
        return self._owned()

    def _section(self):
        """The table's lock, to enter with `with`; refuses a call from a signal handler or
        finalizer that runs on a thread already inside a section (_reentered)."""
        if self._owned():
            _reentered()
        return self._lock

    # -- placing blocks --------------------------------------------------------------------

    def place(self, block, owner, size: int, generation: int) -> Optional[Twin]:
        """Sets `block` to reuse `owner`'s twin (returned, busy until `unhold`), or to be kept
        when it has none yet (or it is too small, or of an older generation). An owner that
        cannot be referenced weakly (a Structure with __slots__) gets no twin: a block per
        call; so does one whose block another call is keeping now (two threads' first calls
        with one object), until that call has recorded its twin (`kept`, `keeps_done`)."""
        with self._section():
            twin = self._current(owner, size, generation)
            if twin is not None:
                twin.busy += 1
                block.at.address = twin.worker
                block.at.generation = twin.generation
                block.watch = True
                return twin
            if not _weakly_referable(owner) or id(owner) in self._keeping:
                return None
            self._keeping.add(id(owner))
        block.keep = True
        block.watch = True
        return None

    def hold(self, owner, size: int, generation: int) -> Optional[Twin]:
        """`owner`'s twin, busy until `unhold`, when it has one of `generation` for at least
        `size` bytes that no call in flight uses; else None (the call then goes the general
        way, `place`)."""
        if id(owner) not in self._by_owner:  # most objects without a twin: no lock taken
            return None
        with self._section():
            twin = self._current(owner, size, generation)
            if twin is None or twin.busy:
                return None
            twin.busy += 1
            return twin

    def begin_keep(self, owner) -> bool:
        """Whether a call may ask the worker to keep `owner`'s block (bytes, or an object
        referable weakly, with no twin, that no call in flight is keeping); it is then
        recorded as being kept until `keeps_done`, as `place` records it. False for an owner
        with a twin of its own (busy, of another generation or too small: the general way
        places it). A twin left by a collected object whose id this one reuses is released
        once this one's is recorded (`kept`)."""
        key = id(owner)
        if not _weakly_referable(owner):
            return False
        with self._section():
            twin = self._by_owner.get(key)
            if (twin is not None and twin.alive() is owner) or key in self._keeping:
                return False
            self._keeping.add(key)
            return True

    def _current(self, owner, size: int, generation: int) -> Optional[Twin]:
        # `owner`'s twin when a block of `size` bytes of `generation` may be placed at it.
        twin = self._by_owner.get(id(owner))
        if twin is not None and twin.generation == generation and twin.size >= size and \
                twin.alive() is owner:
            return twin
        return None

    def keeps_done(self, owners) -> None:
        """The call that kept blocks for `owners` is over (their twins recorded, or not)."""
        with self._section():
            for owner in owners:
                self._keeping.discard(id(owner))

    def kept(self, owner, size: int, worker: int, generation: int, busy: bool = False,
             first: bool = False) -> Twin:
        """Records where the worker kept `owner`'s block (a previous twin is released) and
        returns its twin; the same place recorded again is that twin. `busy`: a call in
        flight placed it (the twin is busy until its `unhold`). `first`: the block was made
        for an owner that had no twin; if another thread gave it one meanwhile, that twin
        stands and is returned, and the block at `worker` is released."""
        key = id(owner)
        with self._section():
            old = self._by_owner.get(key)
            if old is not None and old.worker == worker and old.generation == generation and \
                    old.size == size and old.alive() is owner:
                self._keeping.discard(key)
                old.busy += busy
                return old
        if isinstance(owner, bytes):
            local = bytes_address(owner)
        elif isinstance(owner, str):
            local = 0
        elif wide_kept(owner):
            local = wide_kept(owner)
        else:
            local = _ct.addressof(owner)
        twin = Twin(owner, local, size, worker, generation,
                    lambda ref, key=key: self._collected.append((key, ref)))
        twin.busy = int(busy)
        with self._section():
            old = self._by_owner.get(key)
            if first and old is not None and old.generation == generation and \
                    old.size >= size and old.alive() is owner:
                self._collected.append((None, twin))  # released with the next call
                return old
            self._keeping.discard(key)
            if old is not None:
                self._drop(old)
                if old.generation != generation or old.alive() is not owner:
                    self._collected.append((None, old))
                # Else a twin of this same object in this worker, made while the call that
                # kept this block ran (a callback's store of a pointer to it, where the call
                # could not say where it placed it): the library may hold its address, so
                # its memory stays (CallbackInvoke.kept makes this rare).
            self._by_owner[key] = twin
            if twin.strong is not None:
                self._strong.add(key)
            bisect.insort(self._worker_starts, worker)
            self._by_worker[worker] = twin
            if local:
                self._index_local(twin)
        return twin

    def unhold(self, twins) -> None:
        """The call that placed `twins` is over."""
        with self._section():
            for twin in twins:
                twin.busy -= 1

    def has_releases(self) -> bool:
        """Whether twins of collected objects wait for a call to release them (those of
        bytes and str only ffibox holds any more are found by take_releases)."""
        return bool(self._collected)

    def take_releases(self, generation: int, limit: int) -> List[Released]:
        """At most `limit` worker addresses to release with the next call (of this
        generation only: older twins died with their worker)."""
        released = []
        with self._section():
            for key in list(self._strong):
                twin = self._by_owner.get(key)
                if twin is None or twin.strong is None:
                    self._strong.discard(key)
                elif twin.only_held_here() and not twin.busy:
                    self._strong.discard(key)
                    self._collected.append((None, twin))
                    del self._by_owner[key]
                    self._drop(twin)
            in_flight = []
            while self._collected and len(released) < limit:
                key, item = self._collected.popleft()
                twin = item if isinstance(item, Twin) else None
                if twin is None:  # a collected owner: its current twin, if still that one
                    twin = self._by_owner.get(key)
                    if twin is None or twin.ref is not item:
                        continue
                    del self._by_owner[key]
                    self._drop(twin)
                if twin.busy or twin.generation > generation:
                    # A call still names it, or it is of a worker newer than the caller
                    # knew of: released later.
                    in_flight.append((None, twin))
                elif twin.generation == generation:
                    released.append(Released(twin.worker, twin.generation))
            self._collected.extend(in_flight)
        return released

    def requeue(self, released) -> None:
        """Releases a call did not send: sent with a later call. Never those of a call that
        reached the worker, which freed them first: a later keep may have been given the
        address since (the worker ignores addresses it no longer has, not reused ones)."""
        for address in released:
            self._collected.append((None, Twin(b"", 0, 0, address.address, address.generation,
                                               None)))

    def note_generation(self, generation: int) -> None:
        """Forgets the twins of workers older than `generation` when it is new."""
        if generation > self._newest_generation:
            self._newest_generation = generation
            self.forget_older(generation)

    def forget_older(self, generation: int) -> None:
        """Drops every twin of a worker generation before `generation` (those workers are
        gone, and their memory with them)."""
        with self._section():
            for key, twin in list(self._by_owner.items()):
                if twin.generation < generation:
                    del self._by_owner[key]
                    self._strong.discard(key)
                    self._drop(twin)

    def _drop(self, twin: Twin) -> None:
        if self._by_worker.get(twin.worker) is twin:
            del self._by_worker[twin.worker]
            del self._worker_starts[bisect.bisect_left(self._worker_starts, twin.worker)]
        shadows = self._shadows.get(twin.local)
        if shadows is not None and twin in shadows:
            shadows.remove(twin)
        elif self._by_local.get(twin.local) is twin:
            if shadows:  # the largest shadow takes its place
                largest = max(shadows, key=lambda shadow: shadow.size)
                shadows.remove(largest)
                self._by_local[twin.local] = largest
            else:
                del self._by_local[twin.local]
                del self._local_starts[bisect.bisect_left(self._local_starts, twin.local)]
                at = bisect.bisect_left(self._outer_starts, twin.local)
                if at < len(self._outer_starts) and self._outer_starts[at] == twin.local:
                    del self._outer_starts[at]
        if shadows is not None and not shadows:
            del self._shadows[twin.local]

    # -- mapping addresses -----------------------------------------------------------------

    def local(self, worker: int, generation: Optional[int]) -> Optional[Tuple[object, int]]:
        """(owner, local address) for a worker address inside a live twin of `generation`
        (None: the session's current one) that no call in flight is using, else None."""
        if generation is None:
            generation = self._generation()
        with self._section():
            if not self._worker_starts:
                return None
            twin = self._find(self._worker_starts, self._by_worker, worker)
        if twin is None or twin.generation != generation or twin.busy or \
                worker - twin.worker > twin.size:
            return None
        owner = twin.alive()
        if owner is None or not twin.local:
            return None
        return owner, twin.local + (worker - twin.worker)

    def locals_of(self, words, generation: int) -> Dict[int, Tuple[object, int]]:
        """local() of each of the worker addresses `words` that has one, by address, with
        one look at the table for all (the elements of a pointer array)."""
        found: Dict[int, Tuple[object, int]] = {}
        with self._section():
            if not self._worker_starts:
                return found
            twins = [(word, self._find(self._worker_starts, self._by_worker, word))
                     for word in words]
        for word, twin in twins:
            if twin is None or twin.generation != generation or twin.busy or \
                    word - twin.worker > twin.size or not twin.local:
                continue
            owner = twin.alive()
            if owner is not None:
                found[word] = (owner, twin.local + (word - twin.worker))
        return found

    def watched(self, worker: int, generation: int,
                size: int) -> Optional[Tuple[object, Twin]]:
        """(owner, twin) of the live twin that starts at `worker`, of `generation`, holds at
        least `size` bytes of its owner's memory and no call in flight uses: where a run of
        a changed block the worker reports (CallResult.changed) may be written. Else None."""
        with self._section():
            twin = self._by_worker.get(worker)
        if twin is None or twin.generation != generation or twin.busy or not twin.local or \
                size > twin.size:
            return None
        owner = twin.alive()
        return None if owner is None else (owner, twin)

    def twin_at(self, address: int) -> Optional[Tuple[object, Twin]]:
        """(owner, twin) of the live twin whose local memory holds `address`, else None."""
        with self._section():
            if not self._local_starts:
                return None
            return self._holding(address)

    def owner_at(self, address: int):
        """The twinned owner whose local memory holds `address`, else None."""
        found = self.twin_at(address)
        return None if found is None else found[0]

    def busy_worker_address(self, address: int) -> Optional[Tuple[int, int]]:
        """(worker address, generation) for a local address inside a busy twin, else None."""
        found = self.twin_at(address)
        if found is None or not found[1].busy:
            return None
        twin = found[1]
        return twin.worker + (address - twin.local), twin.generation

    def _index_local(self, twin: Twin) -> None:
        # Adds `twin` to the local index: at its start (the largest there indexed, the others
        # shadows), its start or a neighbour's among the outer starts when one holds the
        # other's start.
        local, size = twin.local, max(twin.size, 1)
        self._longest_local = max(self._longest_local, size)
        indexed = self._by_local.get(local)
        if indexed is None:
            bisect.insort(self._local_starts, local)
            self._by_local[local] = twin
        elif indexed.size < twin.size:
            self._by_local[local] = twin
            self._shadows.setdefault(local, []).append(indexed)
        else:
            self._shadows.setdefault(local, []).append(twin)
        at = bisect.bisect_left(self._local_starts, local)
        if at > 0:
            before = self._by_local[self._local_starts[at - 1]]
            if before.local + max(before.size, 1) > local:
                self._add_outer(before.local)
        if at + 1 < len(self._local_starts) and self._local_starts[at + 1] < local + size:
            self._add_outer(local)

    def _add_outer(self, start: int) -> None:
        at = bisect.bisect_left(self._outer_starts, start)
        if at == len(self._outer_starts) or self._outer_starts[at] != start:
            self._outer_starts.insert(at, start)

    def _holding(self, address: int) -> Optional[Tuple[object, Twin]]:
        # (owner, twin) of a live twin whose local memory holds `address`: one at the nearest
        # start below it, else one at an outer start below it, nearest first, as far back as
        # the longest twin reaches (an inner twin that ends before the address, or whose
        # object died, does not hide the one around it). Only twins that hold another's
        # start are looked at so: most lookups end at the nearest start.
        index = bisect.bisect_right(self._local_starts, address) - 1
        if index >= 0:
            found = self._live_at(self._local_starts[index], address)
            if found is not None:
                return found
        index = bisect.bisect_right(self._outer_starts, address) - 1
        while index >= 0 and address - self._outer_starts[index] < self._longest_local:
            found = self._live_at(self._outer_starts[index], address)
            if found is not None:
                return found
            index -= 1
        return None

    def _live_at(self, start: int, address: int) -> Optional[Tuple[object, Twin]]:
        # (owner, twin) of a live twin starting at `start` that holds `address`.
        twin = self._by_local.get(start)
        if twin is not None and address - start < max(twin.size, 1):
            owner = twin.alive()
            if owner is not None:
                return owner, twin
        for twin in self._shadows.get(start, ()):
            if address - start < max(twin.size, 1):
                owner = twin.alive()
                if owner is not None:
                    return owner, twin
        return None

    @staticmethod
    def _find(starts: List[int], table: Dict[int, Twin], address: int) -> Optional[Twin]:
        index = bisect.bisect_right(starts, address) - 1
        return table.get(starts[index]) if index >= 0 else None
