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

The bytes written to a twin are the object's with its own pointer positions translated
the same way, followed to what they point to (a node linking the caller's next node, a
record holding a callback or a string): the library finds worker addresses there, never
this process's. A callback's word is its closure in the worker; a `c_char_p` or
`c_wchar_p` word into a string the object holds is a copy of the string the object keeps
(as ctypes keeps the string), with a twin of its own.
"""
import ctypes as _ct
import struct
import warnings
import gc
from typing import Iterator, List, Optional, Set, Tuple

from ffibox import _addresses, _callback_code, _twins, _types

MAX_KEPT_OBJECTS = 256  # objects looked at among a pointee's keep-alive references
_WORD = struct.Struct("<Q")
# Where an object keeps the copies of strings its c_char_p / c_wchar_p fields point to that
# its twin points to (by offset), for the object's life.
_STRING_COPIES = "_ffibox_string_copies"
_DATA = (_ct.Structure, _ct.Union, _ct.Array, _ct._SimpleCData, _ct._Pointer)
_CArgObject = type(_ct.byref(_ct.c_int()))


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
        elif type(item) is _CArgObject:  # a cast of a byref keeps the reference
            pending.append(item._obj)


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
    # Twins to write (owner, worker address, whether new), each object once: a graph with
    # cycles, or a long list, is followed without recursion.
    pending: List[Tuple[object, int, bool]] = []
    written: Set[int] = set()
    mapped = _mapped(session, word, keep, generation, pending, written)
    _write_pending(session, generation, pending, written)
    return mapped


def worker_bytes(session, value, generation: int) -> bytes:
    """The bytes of ctypes object `value` (a record or array stored by value into worker
    memory) as the worker must find them: its pointers translated as a twin's are, the
    objects they reach given twins (which live as long as `value` keeps them)."""
    pending: List[Tuple[object, int, bool]] = []
    written: Set[int] = set()
    data = _twin_bytes(session, value, generation, pending, written)
    _write_pending(session, generation, pending, written)
    return data


def _write_pending(session, generation: int, pending, written) -> None:
    # Writes the twins `pending` names, and those their own pointers need in turn.
    while pending:
        owner, worker, new = pending.pop()
        data = _twin_bytes(session, owner, generation, pending, written)
        if new:
            _write_watched(session, worker, data, generation)
        else:
            # Watched already (since its call placed it, or since it was made below): what
            # is written is what the caller holds, no change of the library's to report.
            session.memory.write(worker, data, generation, held=True)


def _mapped(session, word: int, keep, generation: int, pending, written) -> int:
    # worker_word's answer for one word; the twins it needs written go to `pending`.
    if not word or _addresses.classify(word)[0] != "local" or session.images.find(word):
        return word
    found = session.twins.twin_at(word)
    if found is not None and found[1].generation == generation:
        owner, twin = found
        if not twin.busy and id(owner) not in written:
            written.add(id(owner))
            pending.append((owner, twin.worker, False))
        return twin.worker + (word - twin.local)
    owner = holder(keep, word)
    if owner is None or type(owner).__weakrefoffset__ == 0:
        return word
    size = _ct.sizeof(owner)
    worker = session.memory.alloc(size)
    session.twins.kept(owner, size, worker, generation)
    written.add(id(owner))
    pending.append((owner, worker, True))
    return worker + (word - _ct.addressof(owner))


def _twin_bytes(session, owner, generation: int, pending, written) -> bytes:
    """`owner`'s bytes as its twin must hold them: each pointer position (outside unions,
    whose member is not known) that holds an address of this process translated."""
    data = _ct.string_at(_ct.addressof(owner), _ct.sizeof(owner))
    if isinstance(owner, bytes) or not isinstance(owner, _DATA):
        return data
    offsets = _types.pointer_offsets(type(owner), unions=False)
    if not offsets:
        return data
    data = bytearray(data)
    pinned = {}  # what the twin's pointers reach, which `owner` keeps (ffibox._twins.PINS)
    for offset, t in offsets:
        if offset + _WORD.size > len(data):
            continue
        word = _WORD.unpack_from(data, offset)[0]
        if not word or _addresses.classify(word)[0] != "local":
            continue
        if _types.is_function(t):
            mapped = _closure_word(session, word)
            reached = _callback_code.local_callbacks.get(word)
        else:
            mapped = _mapped(session, word, owner._objects, generation, pending, written)
            if mapped == word and _types.code_of(t) in ("z", "Z"):
                mapped = _string_word(session, owner, offset, word, _types.code_of(t) == "Z",
                                      generation, pending, written)
            reached = session.twins.owner_at(word)
        if reached is not None and mapped != word:
            pinned[offset] = reached
        _WORD.pack_into(data, offset, mapped)
    _twins.pin(owner, pinned)
    return bytes(data)


def _closure_word(session, word: int) -> int:
    # A function pointer field holding a callback's local code: its closure in the worker.
    callback = _callback_code.local_callbacks.get(word)
    if callback is None:
        return word
    closure = session.closure_address(callback)
    return word if closure is None else closure


def _string_word(session, owner, offset: int, word: int, wide: bool, generation: int,
                 pending, written) -> int:
    # A c_char_p / c_wchar_p field of `owner` holding the address of a string it keeps (a
    # bytes or str ctypes stored there): a copy of the string, kept by `owner` while the
    # field holds it, with a twin of its own.
    try:
        copies = owner.__dict__.setdefault(_STRING_COPIES, {})
    except AttributeError:  # a record with __slots__ and no __dict__
        return word
    text = _ct.wstring_at(word) if wide else _ct.string_at(word)
    buffer = copies.get(offset)
    if buffer is None or buffer.value != text:
        buffer = copies[offset] = _ct.create_unicode_buffer(text) if wide else \
            _ct.create_string_buffer(text)
    return _mapped(session, _ct.addressof(buffer), {"0": buffer}, generation, pending,
                   written)


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
