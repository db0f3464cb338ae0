"""Which image of worker memory (ffibox._images) holds a local address, whatever the session.

An image mirrors only the first bytes of the worker memory a pointer names (a `T*` out-
parameter: the rest of the worker's page, up to 64 elements). An access through that pointer
that reaches past them (`p[i]`, `p[a:b]`, `p.contents` of a larger pointee, `string_at`,
`memmove`, `memset`) is an access to the worker's memory there, as C would read on in the
library's: ffibox.ctypes sends it to the worker. INDEX tells those accesses where they stand.
"""
import ctypes as _ct
import threading
import weakref
from typing import Dict, List, NamedTuple, Optional, Tuple


class Reach(NamedTuple):
    """A local address inside an image: the session whose image it is, the image, the
    address's offset in it, and how many of the image's bytes from its start mirror the
    worker's (what an access from there may read or write locally)."""
    session: object
    image: object
    offset: int
    local_bytes: int


class ImageIndex:
    """Every session's ImageTable, and a memo of the addresses looked up (the same pointer is
    indexed in loops): an address found in no image stays in none until another image is
    made; one found in an image stays there while the session and the image live and no other
    image is made."""

    _KEPT = 4096  # memo entries of each kind before the memo starts again

    def __init__(self) -> None:
        self._lock = threading.RLock()  # re-entrant: see ffibox._addresses._lock
        self._tables: List["weakref.ref"] = []
        self._made = 0
        self._absent: Dict[int, int] = {}  # address -> images made when it was in none
        # address -> (images made, weak references to the session and the image, offset,
        # local bytes)
        self._present: Dict[int, Tuple] = {}

    def add_table(self, table) -> None:
        """Makes `table` (an ImageTable whose `session` is set) one the lookups search."""
        with self._lock:
            self._tables = [ref for ref in self._tables if ref() is not None]
            self._tables.append(weakref.ref(table))

    def image_made(self) -> None:
        """Called once a table holds a new image: earlier lookups may be out of date."""
        with self._lock:
            self._made += 1

    def in_no_image(self, address: int) -> bool:
        """Whether `address` was found in no image since the last image was made (the common
        case, a pointer to the caller's own memory, answered without a lookup)."""
        return self._absent.get(address) == self._made

    def holding(self, address: int) -> Optional[Reach]:
        """Where local `address` stands in an image of any session, or None."""
        made = self._made  # read first: an image made meanwhile makes the memo miss later
        if not made or self._absent.get(address) == made:
            return None  # no image yet anywhere (the calls of scalars alone), or not in one
        known = self._present.get(address)
        if known is not None and known[0] == made:
            session, image = known[1](), known[2]()
            if session is not None and image is not None:
                return Reach(session, image, known[3], known[4])
        with self._lock:
            tables = [ref() for ref in self._tables]
        reach = None
        for table in tables:
            found = table.find(address) if table is not None else None
            session = table.session() if found is not None else None
            if session is not None:
                image, offset = found
                # An opaque handle's placeholder keeps its zeroed room; one for memory the
                # worker could not read has none (an access reads the worker, and faults).
                reach = Reach(session, image, offset,
                              0 if image.unreadable else image.size or _ct.sizeof(image.buffer))
                break
        if reach is None:
            if len(self._absent) >= self._KEPT:
                self._absent = {}
            self._absent[address] = made
        else:
            if len(self._present) >= self._KEPT:
                self._present = {}
            self._present[address] = (made, weakref.ref(reach.session),
                                      weakref.ref(reach.image), reach.offset, reach.local_bytes)
        return reach


INDEX = ImageIndex()
