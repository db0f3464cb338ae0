"""Caller addresses a callback stores into memory the library reads after it returns.

A callback handed a `void**` or `T**` may store a pointer to the caller's own object there
(libarchive's read callback: `*buffer = cast(buf, c_void_p)`, the block it just filled),
which the library reads once the callback has returned. In the worker that word must be
the address of the object's twin (ffibox._twins), holding the object's bytes as the
callback left them. ffibox._functions' callback handler asks `worker_word` for each
pointer-sized word of such a pointee:

- a word inside a twin no call in flight is using: the object's bytes are written to the
  twin, and the word becomes the twin's address;
- a word inside a twin a call in flight placed (the worker's copy is the live one): the
  twin's address, nothing written; this includes the twin of an object the call passes for
  the first time, which the call's first invocation recorded (CallbackInvoke.kept,
  CallBuilder.kept_early);
- a word inside an object ctypes keeps alive for the pointee (what was stored into it by
  assignment, and what that keeps: the `cast` object and its source): the object gets a
  twin in worker memory it allocates now (freed when the object is collected), written
  with its bytes;
- anything else (an image, 0, a worker address, memory of unknown extent): unchanged.
"""
import ctypes as _ct
import warnings
import gc
from typing import Iterator, Optional

from ffibox import _addresses, _twins

MAX_KEPT_OBJECTS = 256  # objects looked at among a pointee's keep-alive references
_DATA = (_ct.Structure, _ct.Union, _ct.Array, _ct._SimpleCData, _ct._Pointer)


def _kept_objects(keep) -> Iterator[object]:
    # ctypes keeps what an object's memory points to in `_objects`: a dict of ctypes
    # objects, bytes and nested dicts, which may hold the object itself (`cast` files its
    # result in its source's dict, and the source in the result's): each looked at once.
    pending, seen, looked = [keep], 0, set()
    while pending and seen < MAX_KEPT_OBJECTS:
        item = pending.pop()
        if id(item) in looked:
            continue
        looked.add(id(item))
        seen += 1
        if isinstance(item, dict):
            pending.extend(item.values())
        elif issubclass(type(item), _DATA) and not issubclass(type(item), _ct._CFuncPtr):
            yield item
            pending.append(item._objects)


def local_object_at(word: int) -> Optional[object]:
    """The ctypes object whose memory holds `word`, an address of this process, among every
    live one (a scan of the collector's objects: for an address that came as a bare number,
    with nothing that keeps its object alive to look in), or None."""
    for obj in gc.get_objects():
        if issubclass(type(obj), _DATA) and not issubclass(type(obj), _ct._CFuncPtr):
            owner = _twins.owner_of(obj)
            start = _ct.addressof(owner)
            if start <= word < start + _ct.sizeof(owner):
                return owner
    return None


def holder(keep, word: int) -> Optional[object]:
    """The object ctypes keeps alive in `keep` (an `_objects`) whose memory holds `word`."""
    for obj in _kept_objects(keep):
        owner = _twins.owner_of(obj)
        start = _ct.addressof(owner)
        if start <= word < start + _ct.sizeof(owner):
            return owner
    return None


def worker_word(session, word: int, keep, generation: int) -> int:
    """What the worker must find for `word`, a pointer the callback stored in memory whose
    ctypes keep-alive references are `keep` (see the module comment)."""
    if not word or _addresses.classify(word)[0] != "local" or session.images.find(word):
        return word
    found = session.twins.twin_at(word)
    if found is not None and found[1].generation == generation:
        owner, twin = found
        if not twin.busy:
            # Watched already (since its call placed it, or since it was made below): what
            # is written is what the caller holds, no change of the library's to report.
            session.memory.write(twin.worker, _ct.string_at(twin.local, twin.size), generation,
                                 held=True)
        return twin.worker + (word - twin.local)
    owner = holder(keep, word)
    if owner is None or type(owner).__weakrefoffset__ == 0:
        return word
    size = _ct.sizeof(owner)
    worker = session.memory.alloc(size)
    session.twins.kept(owner, size, worker, generation)
    _write_watched(session, worker, _ct.string_at(_ct.addressof(owner), size), generation)
    return worker + (word - _ct.addressof(owner))


def _write_watched(session, worker: int, data: bytes, generation: int) -> None:
    """Writes a twin the callback stored a pointer to, watched as every twin is: the library
    writes into it through the pointer it keeps. Past the worker's watch budget, says so
    once a session: those writes reach the object only when a call passes it."""
    if session.memory.write(worker, data, generation, watch=True) or \
            session.stream.closed_at_exit or session.warned_of_unwatched:
        return
    session.warned_of_unwatched = True
    warnings.warn("ffibox: %d bytes a callback handed the library are past the 4 MiB of "
                  "memory its worker watches; what the library writes there (if it does) "
                  "reaches the object when a call passes it (docs/python.md)" % len(data),
                  RuntimeWarning, stacklevel=3)
