"""Local images of worker memory the library hands back through typed pointers.

A pointer slot of caller memory (an out-parameter, a structure field, an array element, a
callback's pointee) that the library filled with a worker address must not keep that
address: the caller would dereference it in its own address space and crash. The slot gets
the address of a local *image* instead, bound to the worker address:

- `char*` / `wchar_t*`: the string;
- `T*` for a pointer-free `T`: `T` and the rest of the worker's page, up to 64 elements
  (an `int*` that points into an array reads its elements; what an access reaches past an
  image's bytes is the worker's memory there: ffibox._image_reach);
- `T**` (an array of pointers such as `char** argv`): its elements up to the first NULL,
  each converted in turn;
- `T*` for a record `T`: one `T`, its own pointer fields converted in turn;
- an incomplete `T` (an opaque handle): an address-only placeholder;
- memory the worker cannot read: a placeholder through which every access reads the worker
  (a MemoryFault, where C would fault), never zeros.

A view of a pointer-free array of worker memory (ffibox._remote.view: `(c_char *
n).from_address(address)`, `p.contents` of a pointer to an array) is made over an image of
its own (ImageTable.mirror), so that what the buffer protocol writes into its bytes (numpy,
a memoryview) reaches the library, even after the view is gone, and what the library writes
later shows there.

The graph is followed breadth first, each (worker address, type) imaged once per operation
(so cycles and shared nodes stay one image, as in the worker), to any depth, within a budget
of images per operation (`Session.max_images`, default 4096, or `FFIBOX_MAX_IMAGES`) and of
the bytes they hold here (`Session.max_image_bytes`, default 256 MiB, or
`FFIBOX_MAX_IMAGE_BYTES`): past either the operation raises ImageBudgetExceeded, never a
silently truncated graph. Every image's bytes count, strings, records and arrays alike, and
each image of memory another one overlaps counts again (records a library lays over one
buffer 8 bytes apart are thousands of copies of it here), so what the library hands back
costs the caller no more than the budget, whatever it costs the worker.

Passing an image back to the library (a pointer into it, the record where its pointer goes,
`byref` of any part of it, its address as an integer) passes the worker address, and local
changes to an image are written back before the session's next call (a pointer to the
caller's own object stored into it as that object's twin, ImageTable._write_stored). An
image lives
as long as the caller's object that holds it. `void*` and function pointers keep the worker
address, as ctypes keeps addresses: they are integers, not dereferenced here.
"""
import bisect
import collections
import ctypes as _ct
import operator
import re
import struct
import sys
import threading
import weakref
from typing import Dict, List, Optional, Set, Tuple

from ffibox import _addresses, _callback_code, _callback_pointers, _twins, _types
from ffibox._image_reach import INDEX
from ffibox._memory import MAX_READS_PER_LIST, MAX_STRING_UNITS, PAGE_BYTES, string_too_long
from ffibox._scratch_buffers import ScratchBuffers
from ffibox.errors import Error, MemoryFault

MAX_ELEMENTS = 64
# How many images one operation (a call's copy-back, a callback's arguments) may make by
# default: a hostile graph costs bounded time and memory.
DEFAULT_MAX_IMAGES = 4096
_tables: "weakref.WeakSet[ImageTable]" = weakref.WeakSet()  # every session's
# How many bytes of images (strings, records, arrays) one operation may make by default: a
# library cannot make the caller read and hold gigabytes (thousands of distinct strings of
# 16 Mi characters each, thousands of large records laid over one buffer of its own).
DEFAULT_MAX_IMAGE_BYTES = 256 << 20
# Where a view of worker memory (ffibox._remote.view) keeps the image of its bytes.
VIEW_IMAGE = "_ffibox_image"
# The most views (mirror) whose images the worker watches at once; past it a view's image
# follows the library at calls that pass it, not after every call.
MAX_WATCHED_VIEWS = 256
# Images from this size on are compared with what was last seen in place (this process's
# memcmp), not copied first: a 64 MiB view alive costs each call a few milliseconds, not 50.
_COMPARED_IN_PLACE = 64 << 10
# How long a callback handler's watched read waits for another thread's before it reads
# unwatched (seconds).
_WATCH_LOCK_WAIT = 0.05
_memcmp = _ct.CDLL(None).memcmp
_memcmp.argtypes = [_ct.c_void_p, _ct.c_void_p, _ct.c_size_t]
_memcmp.restype = _ct.c_int


def _orphaned(orphans: List["Image"], image: "Image") -> None:
    # A view's finalizer: its image waits for the next sync only if the caller changed it.
    if image.seen is not None and len(image.seen) == image.size and \
            _same_bytes(image.start, image.seen, image.size):
        return
    if len(image.synced) == image.size and _same_bytes(image.start, image.synced, image.size):
        return
    orphans.append(image)


def _same_bytes(address: int, data, size: int) -> bool:
    """Whether local memory [address, address + size) holds `data` (bytes or bytearray of
    that size), looked at in place."""
    other = _ct.byref(_ct.c_char.from_buffer(data)) if isinstance(data, bytearray) else data
    return not _memcmp(address, other, size)


class ImageBudgetExceeded(Error):
    """The library handed back a pointer graph larger than the session follows."""

    def __init__(self, limit: int, in_bytes: bool = False) -> None:
        super().__init__(
            ("RESOURCE_EXHAUSTED: the library handed back memory (strings, records, arrays) "
             "that takes more than %d bytes to copy; raise Session.max_image_bytes (or "
             "FFIBOX_MAX_IMAGE_BYTES) to read it"
             if in_bytes else
             "RESOURCE_EXHAUSTED: the library handed back a pointer graph of more than %d "
             "objects; raise Session.max_images (or FFIBOX_MAX_IMAGES) to follow it") % limit,
            "RESOURCE_EXHAUSTED")


class Budget:
    """What one operation may still image (images, and bytes of their local copies), the
    images it made (by worker address and type), and the pointer slots still to follow."""

    __slots__ = ("left", "limit", "bytes_left", "max_bytes", "seen", "pending", "strings",
                 "shipped", "current")

    def __init__(self, limit: int, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> None:
        self.left = limit
        self.limit = limit
        self.bytes_left = max_bytes
        self.max_bytes = max_bytes
        self.seen: Dict[Tuple[int, object], "Image"] = {}
        self.pending: collections.deque = collections.deque()
        # Narrow strings read a page at a time, by worker address: the image of their page
        # and the string's offset in it; None: not found that way (read alone).
        self.strings: Dict[int, Optional[Tuple["Image", int]]] = {}
        # Worker memory that came with the operation (a callback's pointee and the bytes
        # after it), by address: an image of it is made from these bytes, not read.
        self.shipped: Dict[int, bytes] = {}
        # The watched images are up to date (a call's changes applied): a pointer to one's
        # worker address, of its type, gets that image, not a new one.
        self.current = False

    def check_bytes(self, size: int) -> None:
        """Raises ImageBudgetExceeded when an image of `size` more bytes does not fit: before
        anything is read for it."""
        if size > self.bytes_left:
            raise ImageBudgetExceeded(self.max_bytes, in_bytes=True)


_WORD = struct.Struct("<Q")
_AT = operator.itemgetter(0)  # the offset of a layout's (offset, pointer type)


# A word below this is no address (a size, a count, a flag): never looked at as one.
_LEAST_LOCAL = 1 << 16


class Image:
    """Local bytes mirroring worker memory at `worker` (of worker `generation`)."""

    __slots__ = ("buffer", "start", "size", "worker", "generation", "synced", "seen", "slots",
                 "children", "plain", "layout", "watched", "kind", "unreadable", "view",
                 "__weakref__")

    def __init__(self, buffer, size: int, worker: int, generation: int) -> None:
        self.buffer = buffer
        self.start = _ct.addressof(buffer)
        self.size = size            # bytes that mirror worker memory; 0: address only
        self.worker = worker
        self.generation = generation
        self.synced = b""           # the worker's bytes as last read or written
        self.seen: Optional[bytes] = None  # the local bytes as sync last saw them
        self.slots: Dict[int, Tuple[int, int]] = {}  # offset -> (local word, worker word)
        self.children: List[object] = []  # images (and twinned caller objects) it points to
        # Its local bytes are the worker's as they are (a string, a page of strings, pointer-
        # free data): no pointer position whose local word differs from the worker's.
        self.plain = False
        # (offset, pointer type) of every pointer position in its bytes, by offset.
        self.layout: Tuple[Tuple[int, object], ...] = ()
        # The worker reports what the library changes in the memory it mirrors after each
        # call (ReadMemory.watch), and apply_changes writes that in.
        self.watched = False
        self.kind = None  # the pointer type it was made for, when watched
        # An address-only placeholder for memory the worker could not read: an access
        # through it reads the worker (and faults there), never the zeroed room.
        self.unreadable = False
        # The image of a view's bytes (mirror): found by no pointer the library hands back,
        # which gets an image of its own, and written back when the view goes.
        self.view = False


class _TableLock:
    """The table's re-entrant lock, which knows whether this thread holds it and runs
    `on_release` before its outermost release."""

    def __init__(self, on_release) -> None:
        self._lock = threading.RLock()
        self._owner: Optional[int] = None
        self._depth = 0
        self._on_release = on_release

    def __enter__(self) -> None:
        self.try_enter(blocking=True)

    def __exit__(self, *exc_info) -> None:
        try:
            if self._depth == 1:
                self._on_release()
        finally:
            self._depth -= 1
            if not self._depth:
                self._owner = None
            self._lock.release()

    def try_enter(self, blocking: bool = False) -> bool:
        """Enters as `with` does (then leave with __exit__); without `blocking`, only if
        the lock is free now: False, without waiting, if another thread holds it."""
        if not self._lock.acquire(blocking=blocking):
            return False
        self._owner = threading.get_ident()
        self._depth += 1
        return True

    def held_here(self) -> bool:
        return self._owner == threading.get_ident()


class ImageTable:
    """A session's images, found by local address (weakly held: owners keep them alive).
    `memory` (ffibox._memory.WorkerMemory) reads what they mirror and takes their changes;
    `twins` (ffibox._twins.TwinTable) maps worker addresses into caller objects."""

    def __init__(self, memory, twins, max_images: int = DEFAULT_MAX_IMAGES,
                 session=None, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> None:
        _tables.add(self)
        self._memory = memory
        self._twins = twins
        self.max_images = max_images
        self.max_image_bytes = max_image_bytes
        # Local start -> image, and the starts in order, so finding the image that holds an
        # address costs a binary search, not a scan, on every pointer a call passes. Images
        # die on whatever thread collects their owner: the lock guards both.
        self._images: Dict[int, "weakref.ref[Image]"] = {}
        self._starts: List[int] = []
        # (worker address, local start) of every image, in order, and the largest image's
        # size: the images over a range of worker memory are found by a binary search.
        self._workers: List[Tuple[int, int]] = []
        self._worker_of: Dict[int, int] = {}
        self._longest = 0
        # Watched images (Image.watched): local start -> (worker address, generation); how
        # many live ones mirror each (worker address, generation); and, by generation, the
        # worker addresses no live image mirrors any more, whose watch the next watched read
        # ends (ReadMemory.unwatch).
        self._watching: Dict[int, Tuple[int, int]] = {}
        self._watch_counts: Dict[Tuple[int, int], int] = {}
        self._unwatch: Dict[int, Set[int]] = {}
        # Images gone, (local start, weak reference), to take out of the tables above. A
        # collection may end an image while this thread is inside the lock, in the middle of
        # a look over the tables: they change when it is released, not under that look.
        self._gone: "collections.deque[Tuple[int, weakref.ref]]" = collections.deque()
        self._lock = _TableLock(self._forget_gone)
        # Local starts of the watched images of views alive (at most MAX_WATCHED_VIEWS: the
        # worker's watches are for the library's pointers first), and the images of views
        # gone since the last sync, kept until it wrote back what the caller changed.
        self._watched_views: Set[int] = set()
        self._orphans: List[Image] = []
        # Held from taking the addresses to unwatch until the watched read that sends them is
        # answered: another thread's watched read of one of them cannot overtake it.
        self._watch_lock = threading.RLock()
        self.scratch = ScratchBuffers()
        # A weak reference to the session whose images these are: with one, accesses past
        # an image reach its worker (ffibox._image_reach).
        self.session = None if session is None else weakref.ref(session)
        if session is not None:
            INDEX.add_table(self)

    # -- finding ---------------------------------------------------------------------------

    def of_another_session(self, address: int) -> bool:
        """Whether local `address` lies in an image of another session's table (a
        RemotePointer of that session stored into a structure's field): memory of another
        worker, which this session's cannot reach."""
        return any(other is not self and other.find(address) is not None
                   for other in list(_tables))

    def find(self, address: int) -> Optional[Tuple[Image, int]]:
        """The image holding local `address`, and the offset into it."""
        if not self._starts:
            return None  # no image (most sessions): no lock to take
        with self._lock:
            index = bisect.bisect_right(self._starts, address) - 1
            if index < 0:
                return None
            start = self._starts[index]
            # (.get: a signal handler may look while this thread is half-way through
            # _register or _forget)
            ref = self._images.get(start)
            image = ref() if ref is not None else None
        extent = image.size or (_ct.sizeof(image.buffer) if image.unreadable else 1) \
            if image is not None else 0
        if image is not None and address < start + extent:
            return image, address - start
        return None

    def worker_address(self, address: int) -> Optional[Tuple[int, int]]:
        """(worker address, generation) for a local address inside an image, or inside a
        twin a call in flight works on (ffibox._twins)."""
        mapped = self.image_address(address)
        return mapped if mapped is not None else self._twins.busy_worker_address(address)

    def image_address(self, address: int) -> Optional[Tuple[int, int]]:
        """(worker address, generation) for a local address inside an image (any part of
        one: a field, an element, a nested record), else None."""
        found = self.find(address)
        if found is None:
            return None
        image, offset = found
        return image.worker + offset, image.generation

    # -- making ----------------------------------------------------------------------------

    def budget(self) -> Budget:
        """A fresh budget for one operation."""
        return Budget(self.max_images, self.max_image_bytes)

    def bind(self, owner, offset: int, pointer_type, worker: int, generation: int,
             budget: Optional[Budget] = None) -> Optional[int]:
        """Makes the image `pointer_type` at `worker` calls for, keeps it alive with
        `owner` (whose slot at `offset` will hold it), and returns its local address; None
        when the pointer stays a worker address (void*, function pointers). Raises
        ImageBudgetExceeded past the budget."""
        twin = self._twins.local(worker, generation)
        if twin is not None:  # caller memory a call reached: the caller's own object
            owner.__dict__.setdefault("_ffibox_twins", {})[offset] = twin[0]
            keep_with_copies(owner, offset, twin[0])
            return twin[1]
        budget = budget if budget is not None else self.budget()
        inside = self._inside(pointer_type, worker, generation)
        image = inside[0] if inside else self._make(pointer_type, worker, generation, budget)
        if image is None:
            return None
        keep = owner.__dict__.setdefault("_ffibox_images", {})
        keep[offset] = image
        keep_with_copies(owner, offset, image)
        return image.start + (inside[1] if inside else 0)

    def _inside(self, pointer_type, worker: int,
                generation: int) -> Optional[Tuple[Image, int]]:
        """For a pointer to pointer-free data at `worker`: a plain image that already mirrors
        that address, brought up to date, and the offset there. Two pointers into one array
        (a range's start and end) then point into one image, and their difference is the
        worker's."""
        if not _types.is_pointer(pointer_type) or _types.pointer_offsets(pointer_type._type_):
            return None
        for image in self._plain_images_at(worker, 1, generation):
            if self._reread(image):
                return image, worker - image.worker
        return None

    def plain_overlapping(self, start: int, end: int, generation: int) -> bool:
        """Whether a live plain image of worker `generation` mirrors part of [start, end)."""
        with self._lock:
            first = bisect.bisect_left(self._workers, (start - self._longest, 0))
            last = bisect.bisect_left(self._workers, (end, 0))
            refs = [self._images[local] for _, local in self._workers[first:last]]
        images = [ref() for ref in refs]
        return any(image is not None and image.plain and image.generation == generation and
                   image.worker < end and start < image.worker + image.size
                   for image in images)

    def write_back(self, image: Image) -> None:
        """Writes back what the caller changed in `image` since it was read (before the last
        reference to it goes)."""
        self._sync_one(image)

    def _plain_images_at(self, worker: int, size: int, generation: int) -> List[Image]:
        """The live plain images of worker `generation` that mirror all of [worker, worker +
        size)."""
        with self._lock:
            first = bisect.bisect_left(self._workers, (worker - self._longest, 0))
            last = bisect.bisect_right(self._workers, (worker, sys.maxsize))
            refs = [self._images[start] for _, start in self._workers[first:last]]
        images = [ref() for ref in refs]
        return [image for image in images
                if image is not None and image.plain and not image.view and
                image.generation == generation and
                image.worker <= worker and worker + size <= image.worker + image.size]

    def plain_covering(self, worker: int, size: int, generation: int) -> Optional[Image]:
        """A live plain image of worker `generation` that mirrors all of [worker, worker +
        size), kept up to date (watched; one that is not is read again first), or None: an
        element read past a pointer's first image is read from it, not from a second image
        of the same memory (two would disagree until the next call, and a write to one
        could undo a later write to the other)."""
        for image in self._plain_images_at(worker, size, generation):
            if image.watched or self._reread(image):
                return image
        return None

    def _reread(self, image: Image) -> bool:
        """Brings plain `image` up to date with the worker (the caller's changes written back
        first): a pointer handed back again into memory it mirrors sees what the library
        left there, as every pointer into that memory does. False when it cannot be read."""
        self._sync_one(image)
        data = self._read(image.worker, image.size, image.generation)
        if data is None or len(data) != image.size:
            return False
        with self._lock:
            # Only what the library changed since the look above: a store of the caller's
            # made meanwhile (another thread's) stays, and is written back with the next sync.
            local = bytearray(_ct.string_at(image.start, image.size))
            for first, end in changed_runs(image.synced, data):
                local[first:end] = data[first:end]
            _ct.memmove(image.start, bytes(local), image.size)
            image.synced = data
            image.seen = None
        return True

    def image_of(self, pointer_type, worker: int, generation: int) -> Optional[Image]:
        """The image `pointer_type` at `worker` calls for (None for void* and function
        pointers), which the caller keeps alive."""
        return self._make(pointer_type, worker, generation, self.budget())

    def convert_slots(self, obj, generation: int, budget: Optional[Budget] = None,
                      first: int = 0, end: Optional[int] = None, is_worker=None) -> None:
        """Replaces every worker address in the pointer slots of local object `obj` (which
        holds worker bytes, such as a callback's pointee) by an image. Only the slots inside
        bytes [first, end) of `obj` when given (what a copy from the worker filled), and only
        the words `is_worker(word)` says are worker addresses when given."""
        budget = budget if budget is not None else self.budget()
        start = _ct.addressof(obj)
        end = _ct.sizeof(obj) if end is None else end
        for offset, pointer_type in _types.pointer_offsets(type(obj), unions=False):
            if offset < first or offset + _WORD.size > end:
                continue
            word = _types.word_at(start + offset).value or 0
            if word and (is_worker is None or is_worker(word)):
                local = self.bind(obj, offset, pointer_type, word, generation, budget)
                if local is not None:
                    _types.word_at(start + offset).value = local

    def _register(self, image: Image) -> Image:
        start = image.start
        with self._lock:
            if start not in self._images:
                bisect.insort(self._starts, start)
            else:
                self._unindex(start)
            self._images[start] = weakref.ref(image, lambda ref, s=start: self._forget(s, ref))
            bisect.insort(self._workers, (image.worker, start))
            self._worker_of[start] = image.worker
            self._longest = max(self._longest, image.size)
            if image.watched:
                key = (image.worker, image.generation)
                self._watching[start] = key
                self._watch_counts[key] = self._watch_counts.get(key, 0) + 1
                self._unwatch.get(image.generation, set()).discard(image.worker)
        if self.session is not None:
            INDEX.image_made()
        return image

    def _forget(self, start: int, ref) -> None:
        # The weak reference's callback: the image at `start` is gone. It never waits for the
        # lock: a collection may run it on a thread inside a section of the twins' table while
        # the lock's holder waits for that table (_caller_changes' worker_address).
        self._gone.append((start, ref))
        if not self._lock.held_here() and self._lock.try_enter():
            self._lock.__exit__()  # its release forgets it (else the holder's release will)

    def _forget_gone(self) -> None:
        # Under the lock, as it is released (a collection meanwhile adds to the queue).
        while self._gone:
            start, ref = self._gone.popleft()
            # Only if a newer image did not take the same address since.
            if self._images.get(start) is ref:
                del self._images[start]
                del self._starts[bisect.bisect_left(self._starts, start)]
                self._unindex(start)

    def _unindex(self, start: int) -> None:
        self._watched_views.discard(start)
        entry = (self._worker_of.pop(start), start)
        del self._workers[bisect.bisect_left(self._workers, entry)]
        key = self._watching.pop(start, None)
        if key is not None:  # the last image mirroring it: its watch ends with the next read
            self._watch_counts[key] -= 1
            if not self._watch_counts[key]:
                del self._watch_counts[key]
                self._unwatch.setdefault(key[1], set()).add(key[0])

    def _take_unwatch(self, generation: int) -> List[int]:
        """Worker addresses of `generation` whose watch the next watched read ends (at most
        MAX_READS_PER_LIST; the rest wait for the read after it); those of older generations
        are forgotten (their worker is gone)."""
        with self._lock:
            self._unwatch = {g: pending for g, pending in self._unwatch.items()
                             if g >= generation and pending}
            pending = self._unwatch.get(generation)
            if not pending:
                return []
            return [pending.pop() for _ in range(min(len(pending), MAX_READS_PER_LIST))]

    def _return_unwatch(self, generation: int, addresses: List[int]) -> None:
        """Puts back the addresses a watched read that failed may not have unwatched, those
        no live image mirrors."""
        with self._lock:
            pending = self._unwatch.setdefault(generation, set())
            pending.update(address for address in addresses
                           if (address, generation) not in self._watch_counts)

    def mirror(self, cls, worker: int, generation: int):
        """A new `cls` object (a view of a pointer-free array at `worker`:
        ffibox._remote.view) whose local bytes are an image of that memory: read now (what
        the caller changed in other images of it written back first), watched within the
        worker's budget and MAX_WATCHED_VIEWS (the library's later changes reach them), and
        what the caller changes in them by any means (numpy over them, a memoryview)
        written back before the session's next call or read there, also once the view is
        gone (numpy over it dropped before that call). The memory's error (MemoryFault,
        StaleHandle) when it cannot be read. The object keeps its image, which keeps the
        bytes (a buffer of its own, which the object is made over): no cycle, so a view made
        in a loop and its image go as soon as it does."""
        size = _ct.sizeof(cls)
        self.sync(worker, size)
        with self._lock:
            may_watch = len(self._watched_views) < MAX_WATCHED_VIEWS
        if may_watch:
            data, watched = self._read_watched(worker, size, generation)
        else:
            data, watched = self._read(worker, size, generation), False
        if data is None:
            # Raises why (a fault, a stale worker): a view over zeros would hand numpy bytes
            # the library never had, and drop what is written there.
            data, watched = self._memory.read(worker, size, generation, as_is=True), False
        buffer = _ct.create_string_buffer(data, size)
        method = type(cls).from_buffer
        view = getattr(method, "stdlib", method)(cls, buffer)
        image = Image(buffer, size, worker, generation)
        image.synced = image.seen = data
        image.plain = image.view = True
        image.watched = watched
        view.__dict__[VIEW_IMAGE] = image
        self._register(image)
        if watched:
            with self._lock:
                self._watched_views.add(image.start)
        # When the view goes, its image waits for the next sync (which writes back what the
        # caller changed) instead of going with it.
        weakref.finalize(view, _orphaned, self._orphans, image)
        return view

    def _address_only(self, worker: int, generation: int, room: int = 8,
                      unreadable: bool = True) -> Image:
        # Zeroed local room for one pointee (so a raw view stays inside memory this process
        # owns), mirroring nothing: never written back, never sent.
        image = Image(_ct.create_string_buffer(max(8, room)), 0, worker, generation)
        image.unreadable = unreadable
        return self._register(image)

    def _read(self, worker: int, size: int, generation: int) -> Optional[bytes]:
        try:
            return self._memory.read(worker, size, generation, as_is=True)
        except Error:
            return None

    def _read_watched(self, worker: int, size: int,
                      generation: int) -> Tuple[Optional[bytes], bool]:
        """The bytes at `worker` (None when they cannot be read), and whether the worker
        watches them now, ending the watches no image needs any more first. A callback's
        handler reads unwatched, as past the watch budget, when another thread's watched read
        does not end within _WATCH_LOCK_WAIT: that one may wait in the worker behind the call
        the handler serves (a callback converting its argument while another thread makes a
        view); every other thread waits for it."""
        session = self.session() if self.session is not None else None
        in_handler = session is not None and session.stream.serves_invocation_here()
        if not self._watch_lock.acquire(timeout=_WATCH_LOCK_WAIT if in_handler else -1):
            return self._read(worker, size, generation), False
        try:
            unwatch = self._take_unwatch(generation)
            try:
                data, watched = self._memory.read_watched(worker, size, generation, unwatch)
            except Error as error:
                if error.code != "MEMORY_FAULT":  # a fault comes after the unwatching
                    self._return_unwatch(generation, unwatch)
                return None, False
            if watched:  # a watch of this address pending its end must not end this one
                with self._lock:
                    self._unwatch.get(generation, set()).discard(worker)
            return data, watched
        finally:
            self._watch_lock.release()

    def _make(self, pointer_type, worker: int, generation: int,
              budget: Budget) -> Optional[Image]:
        """The image for one pointer, then, breadth first, for the pointers inside it."""
        image = self._make_one(pointer_type, worker, generation, budget)
        self._follow(budget, generation)
        return image

    def _follow(self, budget: Budget, generation: int) -> None:
        """Images for the pointer slots `budget.pending` names, breadth first, each written
        into its slot."""
        kept: Set[Tuple[int, int]] = set()  # (parent, page image) pairs already linked
        while budget.pending:
            if _types.code_of(budget.pending[0][2]) == "z" and \
                    budget.pending[0][3] not in budget.strings:
                self._read_strings_ahead(budget, generation)
            parent, offset, slot_type, word = budget.pending.popleft()
            twin = self._twins.local(word, generation)
            if twin is not None:  # into caller memory a call reached: the caller's object
                self._set_slot(parent, offset, twin[1], word, twin[0])
                continue
            in_page = budget.strings.get(word) if _types.code_of(slot_type) == "z" else None
            if in_page is not None:
                child, local = in_page[0], in_page[0].start + in_page[1]
                keep = None
                if (id(parent), id(child)) not in kept:  # one reference for all its strings
                    kept.add((id(parent), id(child)))
                    keep = child
            else:
                child = self._make_one(slot_type, word, generation, budget)
                if child is None:
                    continue
                local = child.start
                keep = child
            self._set_slot(parent, offset, local, word, keep)

    def _set_slot(self, parent: Image, offset: int, local: int, worker: int,
                  keep=None) -> None:
        """Points `parent`'s slot at `offset` to `local`, the image (or twin) of `worker`:
        with the slot's record, under the lock, so that another thread's sync never sees the
        one without the other (it would write the local address back as a change)."""
        with self._lock:
            held = parent.slots.get(offset)
            if held is not None and held != (0, worker):
                return  # repointed since by a newer answer (or already imaged): not ours
            if keep is not None:
                parent.children.append(keep)
            parent.slots[offset] = (local, worker)
            _types.word_at(parent.start + offset).value = local

    def _make_one(self, pointer_type, worker: int, generation: int,
                  budget: Budget) -> Optional[Image]:
        if not _imaged(pointer_type):
            return None
        code = _types.code_of(pointer_type)
        key = (worker, pointer_type)
        if key in budget.seen:
            return budget.seen[key]
        if budget.current:
            for image in self._watched_at(worker, generation):
                if image.kind is pointer_type:
                    budget.seen[key] = image
                    return image
        if budget.left <= 0:
            raise ImageBudgetExceeded(budget.limit)
        budget.left -= 1
        if code in ("z", "Z"):
            image = self._make_string(worker, generation, code == "Z", budget)
        else:
            image = self._make_pointee(pointer_type._type_, worker, generation, budget)
            image.kind = pointer_type
        budget.seen[key] = image
        return image

    def image_strings(self, words, budget: Budget, generation: int) -> None:
        """Images the narrow strings at worker addresses `words` ahead of the pointers that
        name them (the elements of several `char**` a callback gets, with one read), so
        that binding those pointers within `budget` reads nothing more for them."""
        self._image_strings({word for word in words if word}, budget, generation)

    def _read_strings_ahead(self, budget: Budget, generation: int) -> None:
        """Images the narrow strings the pending pointer slots name (_image_strings)."""
        self._image_strings({word for _, _, slot_type, word in budget.pending
                             if _types.code_of(slot_type) == "z"}, budget, generation)

    def _image_strings(self, words, budget: Budget, generation: int) -> None:
        """Images the narrow strings at worker addresses `words` a page at a time: those
        that start in one page of worker memory share one image of that page from the first
        of them to the page's end (the elements of a `char*` array), not an image each, and
        the pages come with one read_memory_list, not a read_string each. budget.strings
        then names each string's image and offset, or None for one left to its pointer's
        own handling: in a twin (the caller's object), running past its page, or alone."""
        words = {word for word in words if word not in budget.strings}
        budget.strings.update(dict.fromkeys(words))  # looked at once, whatever comes of it
        words = sorted(words.difference(self._twins.locals_of(words, generation)))
        if len(words) < 2:
            return
        by_page: Dict[int, List[int]] = collections.defaultdict(list)
        for word in words:
            by_page[word - word % PAGE_BYTES].append(word)
        if len(by_page) > budget.left:
            raise ImageBudgetExceeded(budget.limit)
        budget.check_bytes(len(by_page) * PAGE_BYTES)
        budget.bytes_left -= len(by_page) * PAGE_BYTES
        ranges = [(starts[0], page + PAGE_BYTES - starts[0]) for page, starts in by_page.items()]
        for starts, data in zip(by_page.values(), self._read_pages(ranges, generation)):
            first = starts[0]
            if data is None:
                continue
            ends = {word: data.find(b"\0", word - first) for word in starts}
            if max(ends.values()) < 0:
                continue
            if budget.left <= 0:
                raise ImageBudgetExceeded(budget.limit)
            budget.left -= 1
            # The page's bytes to its end: what a string written longer reaches is local
            # memory of the image, and goes back as it changed (sync).
            image = Image(_ct.create_string_buffer(data, len(data)), len(data), first,
                          generation)
            image.plain = True
            image.synced = data
            self._register(image)
            for word, end in ends.items():
                if end >= 0:
                    budget.strings[word] = (image, word - first)

    def _make_string(self, worker: int, generation: int, wide: bool, budget: Budget) -> Image:
        unit = 4 if wide else 1
        room = budget.bytes_left // unit - 1  # characters that fit, with the terminator
        try:
            if room >= MAX_STRING_UNITS:
                text = self._memory.read_string(worker, wide, generation, as_is=True)
            else:  # read no further than the budget reaches
                text = self._memory.read_string(worker, wide, generation, as_is=True,
                                                length=max(room, 0) + 1)
        except Error as error:
            if error.code == "RESOURCE_EXHAUSTED":
                raise  # longer than any read: never a string cut short
            return self._address_only(worker, generation)
        except ValueError:
            # A unit past U+10FFFF: the image keeps the raw units, and ctypes raises when the
            # string is read, not the call that stored it.
            text = self._wide_units(worker, generation, min(room, MAX_STRING_UNITS))
            if text is None:
                return self._address_only(worker, generation)
        length = len(text) // 4 if isinstance(text, bytes) and wide else len(text)
        if length >= MAX_STRING_UNITS:
            raise string_too_long(worker, wide)
        if length > room:
            raise ImageBudgetExceeded(budget.max_bytes, in_bytes=True)
        budget.bytes_left -= (length + 1) * unit
        if isinstance(text, bytes) and wide:  # raw units: ctypes decodes them when read
            buffer = _ct.create_string_buffer(text + b"\0\0\0\0", len(text) + 4)
        else:
            buffer = _ct.create_unicode_buffer(text) if wide else _ct.create_string_buffer(text)
        image = Image(buffer, _ct.sizeof(buffer), worker, generation)
        image.synced = bytes(buffer)
        image.plain = True
        return self._register(image)

    def _wide_units(self, worker: int, generation: int, room: int) -> Optional[bytes]:
        """WorkerMemory.wide_units, or None when the memory cannot be read."""
        try:
            return self._memory.wide_units(worker, generation, room)
        except Error:
            return None

    def _make_pointee(self, t, worker: int, generation: int, budget: Budget) -> Image:
        element = _ct.sizeof(t)
        if element == 0:
            return self._address_only(worker, generation, unreadable=False)  # an opaque handle
        slots = _types.pointer_offsets(t, unions=False)
        # Arrays: pointer-free elements up to the end of the worker's page, or pointers up
        # to the first NULL, read at once (the first element alone if the rest cannot be). A
        # record stands alone.
        array = not slots or _types.is_pointer(t) or _types.code_of(t) in ("z", "Z")
        # The most its local bytes take, counted before anything is read: a record with
        # pointers gets room for a zeroed one after it, an array of pointers up to
        # MAX_ELEMENTS and a NULL; pointer-free elements are read no further than fits.
        budget.check_bytes(element if not slots else
                           (MAX_ELEMENTS + 1) * element if array else 2 * element)
        shipped = budget.shipped.get(worker)
        data = None
        watched = False  # whether the worker watches what was read: the library may rewrite it
        if shipped is not None and len(shipped) >= element:
            data = shipped[:MAX_ELEMENTS * element if array else element]
            if not slots:
                data = data[:budget.bytes_left]
            data = data[:len(data) - len(data) % element]
        elif array:
            room = min(PAGE_BYTES - worker % PAGE_BYTES, MAX_ELEMENTS * element)
            if not slots:
                room = min(room, budget.bytes_left)
            if room >= 2 * element:
                data, watched = self._read_watched(worker, room - room % element, generation)
        if data is None:
            data, watched = self._read_watched(worker, element, generation)
        if data is None:
            budget.bytes_left -= max(8, element)
            return self._address_only(worker, generation, element)
        if slots and len(data) > element:
            data = _until_null(data, element)
        if _types.code_of(t) == "z":
            return self._make_string_array(data, worker, generation, budget, watched)
        # Zeros past a pointer array's elements, up to MAX_ELEMENTS: what a raw view of the
        # image (an array cast over it) reads there. Through the pointer, elements past the
        # image are the worker's (ffibox._image_reach).
        room = len(data) + element if slots and any(data[len(data) - element:]) else len(data)
        buffer = _ct.create_string_buffer(data, max(room, MAX_ELEMENTS * element) if slots
                                          and array else room)
        budget.bytes_left -= _ct.sizeof(buffer)
        image = Image(buffer, len(data), worker, generation)
        image.synced = bytes(data)
        image.plain = not slots
        image.layout = tuple(sorted(((base + offset, pointer_type)
                                     for base in range(0, len(data) - element + 1, element)
                                     for offset, pointer_type in slots), key=_AT))
        image.watched = watched
        self._register(image)
        for offset, pointer_type in image.layout:
            word = _WORD.unpack_from(data, offset)[0]
            if word:
                budget.pending.append((image, offset, pointer_type, word))
        return image

    def _read_pages(self, ranges: List[Tuple[int, int]],
                    generation: int) -> List[Optional[bytes]]:
        """The bytes of each (address, size) of `ranges`, None where they cannot be read: in
        one request (per MAX_READS_PER_LIST) where the server takes read_memory_list, else,
        or when one of them cannot be read (which fails its list), each alone."""
        if self._memory.lists:
            try:
                return self._memory.read_list(ranges, generation, as_is=True)
            except MemoryFault:
                pass
        return [self._read(first, size, generation) for first, size in ranges]

    def _make_string_array(self, data: bytes, worker: int, generation: int,
                           budget: Budget, watched: bool = False) -> Image:
        """The image of the `char*` elements `data` read at `worker` (up to the first NULL)
        and of the strings they point to, made in one pass rather than a pointer slot at a
        time: a callback's `char**` argument (a qsort comparator's) brings up to
        MAX_ELEMENTS of them on every invocation."""
        count = len(data) // _WORD.size
        words = struct.unpack("<%dQ" % count, data)
        local = list(words)
        children: List[object] = []
        linked: Set[int] = set()
        self._image_strings({word for word in words if word}, budget, generation)
        # Only a string not imaged with its page may be in a twin (_image_strings).
        twins = self._twins.locals_of(
            {word for word in words if word and budget.strings.get(word) is None}, generation)
        for index, word in enumerate(words):
            if not word:
                continue
            if word in twins:  # into caller memory a call reached: the caller's object
                owner, local[index] = twins[word]
            else:
                in_page = budget.strings.get(word)
                if in_page is None:
                    owner = self._make_one(_ct.c_char_p, word, generation, budget)
                    local[index] = owner.start
                else:
                    owner, local[index] = in_page[0], in_page[0].start + in_page[1]
            if id(owner) not in linked:
                linked.add(id(owner))
                children.append(owner)
        # A NULL element after them even when the worker's array did not end within what was
        # read (a caller's `while argv[i]` stops inside the image), and zeros up to
        # MAX_ELEMENTS (a caller reading by count past a NULL hole reads NULLs).
        buffer = _ct.create_string_buffer(
            struct.pack("<%dQ" % count, *local),
            max(len(data) + (_WORD.size if words[-1] else 0), MAX_ELEMENTS * _WORD.size))
        budget.bytes_left -= _ct.sizeof(buffer)
        image = Image(buffer, len(data), worker, generation)
        image.synced = bytes(data)
        image.children = children
        image.slots = {index * _WORD.size: (local[index], word)
                       for index, word in enumerate(words) if word}
        image.layout = tuple((index * _WORD.size, _ct.c_char_p) for index in range(count))
        image.watched = watched
        return self._register(image)

    # -- writing back ----------------------------------------------------------------------

    def worker_bytes(self, address: int, size: int, pointer_slots,
                     mapped: Optional[set] = None) -> bytes:
        """The bytes of local memory [address, address + size) as the worker must see
        them: pointer slots that hold images (or pointers into them) become worker
        addresses. `pointer_slots`: (offset, type) pairs inside the range; the offsets of
        the slots made worker addresses are added to `mapped`, when given."""
        data = bytearray(_ct.string_at(address, size))
        for offset, _ in pointer_slots:
            if offset + 8 > size:
                continue
            word = _WORD.unpack_from(data, offset)[0]
            found = self.worker_address(word) if word else None
            if found is not None:
                _WORD.pack_into(data, offset, found[0])
                if mapped is not None:
                    mapped.add(offset)
        return bytes(data)

    def refresh(self, address: int, size: int, data: Optional[bytes] = None) -> None:
        """Gives the plain images that mirror worker memory within [address, address + size)
        the worker's bytes there (`data`, the bytes just written there, when given; else read
        again), after a write that did not go through them (a view's, a RemotePointer's):
        they read what the worker holds, and a later local store of the old value is still
        written back. An image with pointer positions keeps its local words (a worker
        address written there is not made an image of). The cost is that of the span, not
        of the images (a store into a 64 MiB view is not a copy of it)."""
        if not self._images:
            return
        with self._lock:
            first = bisect.bisect_left(self._workers, (address - self._longest, 0))
            last = bisect.bisect_left(self._workers, (address + size, 0))
            refs = [self._images[start] for _, start in self._workers[first:last]]
        for ref in refs:
            image = ref()
            if image is None or not image.plain or len(image.synced) != image.size:
                continue  # a pointer position keeps its image (its worker word not re-read)
            low = max(address, image.worker)
            high = min(address + size, image.worker + image.size)
            if low >= high:
                continue
            if data is not None and len(data) == size:
                span = data[low - address:high - address]
            else:
                try:
                    span = self._memory.read(low, high - low, image.generation, as_is=True)
                except Error:
                    continue  # nothing to mirror there any more
            offset, end = low - image.worker, high - image.worker
            with self._lock:  # the bytes and what they were synced as, together
                _ct.memmove(image.start + offset, span, high - low)
                synced = image.synced if isinstance(image.synced, bytearray) else \
                    bytearray(image.synced)
                synced[offset:end] = span
                image.synced = synced
                if image.size >= _COMPARED_IN_PLACE and image.seen is not None and \
                        len(image.seen) == image.size:
                    # What was last looked at, with these bytes (a large image is not
                    # copied for a store into it).
                    if not isinstance(image.seen, bytearray):
                        image.seen = bytearray(image.seen)
                    image.seen[offset:end] = span
                else:
                    image.seen = None  # the next sync looks at all of it again

    def sync(self, address: Optional[int] = None, size: int = 0) -> None:
        """Writes back what the caller changed in its images since they were read: all of
        them, or those that mirror worker memory within [address, address + size)."""
        if not self._images:
            return  # most calls: no images (a look at the dict needs no lock)
        while address is None and self._orphans:
            try:
                image = self._orphans.pop()  # (a view going meanwhile appends: atomic)
            except IndexError:
                break
            self._sync_one(image)  # written back now, then gone
        with self._lock:
            if address is None:
                refs = list(self._images.values())
            else:
                first = bisect.bisect_left(self._workers, (address - self._longest, 0))
                last = bisect.bisect_left(self._workers, (address + size, 0))
                refs = [self._images[start] for _, start in self._workers[first:last]]
        changes = []
        stored: List[Tuple[Image, int, int]] = []
        with self._lock:  # one look at all of them: the lock taken once, not per image
            for ref in refs:
                image = ref()
                # A large view's image is looked at before calls only, not before each read
                # or write of memory it mirrors (a look costs its size: an element of a 64
                # MiB view would cost milliseconds).
                if image is not None and image.size and (
                        address is None or not image.view or image.size < _COMPARED_IN_PLACE):
                    runs = self._caller_changes(image, stored)
                    if runs:
                        changes.append((image, runs))
        for image, runs in changes:
            self._write_runs(image, runs)
        if stored:
            self._write_stored(stored)

    def _sync_one(self, image: Image) -> None:
        """Writes back what the caller changed in `image` since it was read."""
        if not image.size:
            return
        # The look and its marking under the lock: another thread applying what its call's
        # library changed writes the image's bytes and what they were synced as together
        # (_apply_runs), so a look between the two never takes the library's bytes for the
        # caller's, to write them back later over what the library wrote since.
        stored: List[Tuple[Image, int, int]] = []
        with self._lock:
            runs = self._caller_changes(image, stored)
        self._write_runs(image, runs)
        if stored:
            self._write_stored(stored)

    def _write_runs(self, image: Image, runs: List[Tuple[int, bytes]]) -> bool:
        """Writes the caller's changed runs of `image` (_caller_changes) to the worker;
        whether all of them landed."""
        for first, data in runs:
            try:
                self._memory.write(image.worker + first, data, image.generation, as_is=True,
                                   held=image.watched)
            except Error as error:
                # Its worker is gone (a restart) or the library freed that memory: the
                # change cannot land; say so once, and stop trying.
                sys.stderr.write("ffibox: a change to worker memory at 0x%x could not be "
                                 "written back: %s\n" % (image.worker + first, error))
                return False
        return True

    def _caller_changes(self, image: Image, stored) -> List[Tuple[int, bytes]]:
        """The runs (offset, bytes) the caller changed in `image` since it was read or
        last looked at, which it is marked synced with (the lock held). A word the caller
        set to an address of its own that the worker cannot take as it is (a pointer to its
        object, a callback's code) is left out, and (image, offset, word) appended to
        `stored` for _write_stored, which needs requests (never made under the lock)."""
        if image.size >= _COMPARED_IN_PLACE and image.seen is not None and \
                len(image.seen) == image.size and \
                _same_bytes(image.start, image.seen, image.size):
            return []  # unchanged since the last look (a large view: no copy to look)
        seen = _ct.string_at(image.start, image.size)
        if seen == image.seen:
            return []  # unchanged since the last look
        current = bytearray(seen)
        for offset, (local, worker) in image.slots.items():
            word = _WORD.unpack_from(current, offset)[0]
            if word == local:
                _WORD.pack_into(current, offset, worker)
            else:
                mapped = self.worker_address(word) if word else (0, 0)
                if mapped is None:
                    stored.append((image, offset, word))
                _WORD.pack_into(current, offset, mapped[0] if mapped else worker)
        if not image.plain and not image.view:
            # Other words the caller set to an address of its own (a NULL pointer field, a
            # function pointer) since the last look: the worker gets what stands for it.
            synced = image.synced
            for offset in range(0, min(len(current), len(synced)) - _WORD.size + 1, _WORD.size):
                word = _WORD.unpack_from(current, offset)[0]
                if offset in image.slots or word == _WORD.unpack_from(synced, offset)[0] or \
                        word < _LEAST_LOCAL:
                    continue
                into_image = self.image_address(word)
                if into_image is not None:  # another image: the memory it mirrors
                    _WORD.pack_into(current, offset, into_image[0])
                elif _addresses.locally_mapped(word):
                    stored.append((image, offset, word))
                    current[offset:offset + _WORD.size] = synced[offset:offset + _WORD.size]
        current = bytes(current)
        if current == image.synced:
            image.seen = seen
            return []
        # Each run of changed bytes alone: the bytes between two runs may have changed in
        # the worker since they were read (a page of strings mirrors what lies between them
        # too).
        runs = [(first, current[first:end]) for first, end in changed_runs(image.synced, current)]
        image.synced = current
        image.seen = seen
        return runs

    def _write_stored(self, stored: List[Tuple[Image, int, int]]) -> None:
        """Gives the worker, for each (image, offset, word) the caller stored into an image
        (`p.contents.next = pointer(node)`, `h.contents.callback = cb`), what stands there
        for `word`: its object's twin (written with its pointers translated), a callback's
        closure; the image's slot then maps the word to it, and the image's buffer pins
        what it reaches (ctypes keeps it in the owner of the pointer that holds the image).
        A word that stands for nothing the worker can take is written as it is."""
        session = self.session() if self.session is not None else None
        if session is None:
            return
        for image, offset, word in stored:
            if image.generation != session.generation:
                continue  # its worker is gone: nothing to write into
            ptype = dict(image.layout).get(offset, _ct.c_void_p)
            reached = _callback_code.local_callbacks.get(word)
            if reached is not None:
                mapped = _callback_pointers.closure_word(session, word)
            else:
                reached = self._twins.owner_at(word) or _callback_pointers.local_object_at(word)
                if reached is not None:
                    mapped = _callback_pointers.worker_word(session, word, {"0": reached},
                                                            image.generation)
                elif _types.code_of(ptype) in ("z", "Z"):
                    # The text of a string ctypes keeps (`p.contents.name = b"x"`).
                    mapped, reached = _callback_pointers.string_copy_word(
                        session, _callback_pointers.local_text(word, ptype), image.generation)
                else:
                    mapped = word
            if not self._write_runs(image, [(offset, _WORD.pack(mapped))]):
                continue
            with self._lock:
                if _WORD.unpack_from(_ct.string_at(image.start + offset, _WORD.size))[0] != word:
                    continue  # changed again meanwhile: the next sync looks at it
                if mapped != word:
                    image.slots[offset] = (word, mapped)
                    pinned = image.buffer.__dict__.setdefault(_twins.PINS, {})
                    pinned[offset] = reached
                synced = bytearray(image.synced)
                _WORD.pack_into(synced, offset, mapped)
                image.synced = bytes(synced)

    # -- following the library -------------------------------------------------------------

    def apply_changes(self, changed, generation: int) -> None:
        """Writes what the library changed in the worker memory watched images mirror
        (`CallResult.changed` of a call's answer: runs of words it rewrote since the images
        were read, such as a FreeType face's glyph slot) into them, as ctypes would see the
        library's memory; a pointer position that now holds another worker address gets an
        image of what it points to, as when the image was made. A run not of a live watched
        image of `generation`, or not within it, is ignored: what the worker says is not
        trusted."""
        if not self._watching:
            return  # most calls: no watched images (a look at the dict needs no lock)
        by_address: Dict[int, List[Tuple[int, bytes]]] = {}
        for entry in changed:
            if entry.address.generation == generation and not entry.offset % _WORD.size:
                by_address.setdefault(entry.address.address, []).append(
                    (entry.offset, entry.data))
        runs = [(image, address_runs) for address, address_runs in by_address.items()
                for image in self._watched_at(address, generation)]
        if not runs:
            return
        budget = self.budget()
        budget.current = True
        repointed: List[Image] = []  # those with a pointer position that changed
        with self._lock:  # each image's bytes and what they were synced as, together
            touched = [image for image, image_runs in runs
                       if self._apply_runs(image, image_runs, budget, repointed)]
        try:
            self._follow(budget, generation)
        except Error as error:
            # The call ran: its answer stands. A pointer position left without an image
            # reads NULL until the library changes it again, and is not written back.
            sys.stderr.write("ffibox: what the library changed in worker memory the caller's "
                             "objects mirror could not all be followed: %s\n" % error)
        finally:
            with self._lock:
                for image in repointed:  # what no slot points to any more is no longer kept
                    held = [local for local, _ in image.slots.values()]
                    image.children = [child for child in image.children
                                      if any(_holds(child, local) for local in held)]
            for image in touched:
                # Not all of it as seen: the caller's own changes elsewhere in it (numpy over a
                # view, a callback's) are still to be written back.
                image.seen = None

    def _watched_at(self, worker: int, generation: int) -> List[Image]:
        """The live watched images of `generation` that start at worker address `worker`."""
        with self._lock:
            first = bisect.bisect_left(self._workers, (worker, 0))
            last = bisect.bisect_right(self._workers, (worker, sys.maxsize))
            refs = [self._images[start] for _, start in self._workers[first:last]
                    if start in self._watching]
        images = [ref() for ref in refs]
        return [image for image in images
                if image is not None and image.generation == generation]

    def _apply_runs(self, image: Image, runs: List[Tuple[int, bytes]], budget: Budget,
                    repointed: List[Image]) -> bool:
        """Writes the runs (offset, data) of the worker memory `image` mirrors into it, in
        order (as much of each as falls within the image), each pointer position they touch
        that now names another worker address queued in `budget` for an image (and the
        image in `repointed`, once). False when none of them falls within the image."""
        if len(image.synced) != image.size:
            return False
        local = synced = None
        layout, offsets, touched = image.layout, None, set()
        for offset, data in runs:
            end = min(offset + len(data), image.size)
            if offset >= end:
                continue
            if local is None:
                local = bytearray(_ct.string_at(image.start, image.size))
                synced = bytearray(image.synced)
            local[offset:end] = synced[offset:end] = data[:end - offset]
            # Every pointer position the run touches, whole or in part (a packed record's
            # pointer at offset 4 straddles two words).
            if offsets is None:
                offsets = [at for at, _ in layout]
            index = bisect.bisect_left(offsets, offset - _WORD.size + 1)
            while index < len(layout) and layout[index][0] < end:
                touched.add(index)
                index += 1
        if local is None:
            return False
        # Each as the worker's word there now is.
        for index in sorted(touched):
            at, pointer_type = layout[index]
            word = _WORD.unpack_from(synced, at)[0]
            held = image.slots.get(at)
            if held is not None and held[1] == word:
                _WORD.pack_into(local, at, held[0])  # the same pointee: the same image
                continue
            if not repointed or repointed[-1] is not image:
                repointed.append(image)
            image.slots.pop(at, None)
            if not _imaged(pointer_type):
                _WORD.pack_into(local, at, word)  # void*, function pointers: the address
            elif word:
                # NULL until _follow writes its image there; meanwhile (and if it cannot) the
                # slot maps NULL back to the worker's word, so nothing is written back.
                _WORD.pack_into(local, at, 0)
                image.slots[at] = (0, word)
                budget.pending.append((image, at, pointer_type, word))
        _ct.memmove(image.start, bytes(local), image.size)
        image.synced = bytes(synced)
        return True


def changed_runs(old: bytes, new: bytes) -> List[Tuple[int, int]]:
    """The [start, end) runs of bytes where `new` differs from `old` (of one length), found
    in C: an XOR of the two as integers, and a search for its non-zero bytes; over a large
    image only in the chunks that differ (a byte changed in a 64 MiB view is one chunk's
    search, not the whole image's)."""
    if len(new) <= _CHUNK:
        return _runs_in(old, new, 0)
    runs: List[Tuple[int, int]] = []
    for first in range(0, len(new), _CHUNK):
        # Slices compared as bytes (a memcmp); memoryviews compare byte by byte.
        old_chunk, new_chunk = old[first:first + _CHUNK], new[first:first + _CHUNK]
        if old_chunk == new_chunk:
            continue
        for start, stop in _runs_in(old_chunk, new_chunk, first):
            if runs and runs[-1][1] == start:  # a run across the chunks' border
                runs[-1] = (runs[-1][0], stop)
            else:
                runs.append((start, stop))
    return runs


def _runs_in(old, new, base: int) -> List[Tuple[int, int]]:
    difference = (int.from_bytes(old, "little") ^ int.from_bytes(new, "little")).to_bytes(
        len(new), "little")
    return [(base + match.start(), base + match.end())
            for match in _NONZERO.finditer(difference)]


_CHUNK = 64 << 10


_NONZERO = re.compile(rb"[^\x00]+")


def keep_with_copies(owner, offset: int, target) -> None:
    """Also keeps `target` (what the slot at `offset` of `owner` points to) in ctypes' own
    keep-alive references of `owner`'s memory, which ctypes hands on to every copy it makes
    by assignment (`outer.field = owner`, `array[i] = owner`): such a copy's pointer then
    keeps the image alive after `owner` is collected, as the library's memory would be.
    Records, arrays and `POINTER` objects have such references; a `c_char_p` has none (its
    copies do not keep the image)."""
    root = _twins.owner_of(owner)  # ctypes keeps references in the base of its views
    if root._objects is None:
        _ct.pointer(owner)  # makes ctypes create them, empty (for types that have them)
    if isinstance(root._objects, dict):
        root._objects["ffibox:%x" % (_ct.addressof(owner) + offset)] = target


def _holds(child, local: int) -> bool:
    """Whether local address `local` lies in `child`: an image, or a caller's object a slot
    points into (one whose extent is not known, such as a bytes object, is said to)."""
    if isinstance(child, Image):
        return child.start <= local < child.start + max(_ct.sizeof(child.buffer), 1)
    try:
        start = _ct.addressof(child)
    except TypeError:
        return True
    return start <= local < start + max(_ct.sizeof(child), 1)


def _imaged(pointer_type) -> bool:
    """Whether a pointer of `pointer_type` gets an image (`char*`, `wchar_t*`, `T*`), or keeps
    the worker address (`void*`, function pointers)."""
    code = _types.code_of(pointer_type)
    return code != "P" and not _types.is_function(pointer_type) and (
        code in ("z", "Z") or _types.is_pointer(pointer_type))


def has_typed_pointers(t) -> bool:
    """Whether values of `t` hold pointers that images replace (`char*`, `T*`; not `void*`
    or function pointers, which stay worker addresses)."""
    return any(_types.code_of(p) in ("z", "Z") or _types.is_pointer(p)
               for _, p in _types.pointer_offsets(t, unions=False))


def _until_null(data: bytes, element: int) -> bytes:
    """`data` cut after the first element that is all zero (a NULL terminator)."""
    for base in range(0, len(data) - element + 1, element):
        if not any(data[base:base + element]):
            return data[:base + element]
    return data
