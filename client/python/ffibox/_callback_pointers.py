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

The bytes written to a new twin are the object's with its own pointer positions translated
the same way, followed to what they point to (a node linking the caller's next node, a
record holding a callback or a string): the library finds worker addresses there, never
this process's. A callback's word is its closure in the worker; a `c_char_p` or
`c_wchar_p` word into a string the object holds is a copy of the string, with a twin of its
own; a union's words only where they are the address of an object it keeps. What a twin's
words reach, its owner keeps (ffibox._twins.PINS). A twin that exists already is written
again only when it is the one stored, not when it is reached: it holds what a call last
sent it, which the library reads until a call passes it again.
"""
import collections
import ctypes as _ct
import struct
import warnings
import gc
from typing import Dict, Iterator, List, Optional, Set, Tuple

from ffibox import _addresses, _callback_code, _twins, _types

MAX_KEPT_OBJECTS = 256  # objects looked at among a pointee's keep-alive references
_WORD = struct.Struct("<Q")
_DATA = (_ct.Structure, _ct.Union, _ct.Array, _ct._SimpleCData, _ct._Pointer)
_CArgObject = type(_ct.byref(_ct.c_int()))


def _kept_objects(keep) -> Iterator[object]:
    # ctypes keeps what an object's memory points to in `_objects`: a dict of ctypes
    # objects, bytes and nested dicts, which may hold the object itself (`cast` files its
    # result in its source's dict, and the source in the result's): each looked at once,
    # breadth first (what a pointer reaches directly comes before what that reaches in turn:
    # a node's `_objects` holds its whole list after it).
    pending, seen, looked = collections.deque([keep]), 0, set()
    while pending and seen < MAX_KEPT_OBJECTS:
        item = pending.popleft()
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
    # Twins to write (owner, worker address, whether new, its local start and size), each
    # object once: a graph with cycles, or a long list, is followed without recursion.
    pending: List[Tuple[object, int, bool, int, int]] = []
    written: Set[int] = set()
    mapped = _mapped(session, word, keep, generation, pending, written, rewrite=True)
    _write_pending(session, generation, pending, written)
    return mapped


def worker_bytes(session, value, generation: int) -> Tuple[bytes, Dict[int, object]]:
    """The bytes of ctypes object `value` (a record or array stored by value into worker
    memory) as the worker must find them, its pointers translated as a twin's are (the
    objects they reach given twins), and what they reach ({offset: object}: the caller
    keeps it alive as long as the bytes stand)."""
    pending: List[Tuple[object, int, bool, int, int]] = []
    written: Set[int] = set()
    data, reached = _translated(session, value, _ct.addressof(value), _ct.sizeof(value),
                                generation, pending, written)
    _write_pending(session, generation, pending, written)
    return data, reached


def _write_pending(session, generation: int, pending, written) -> None:
    # Writes the twins `pending` names, and those their own pointers need in turn; each
    # twin's owner keeps what its pointers reach (ffibox._twins.PINS).
    while pending:
        owner, worker, new, local, size = pending.pop()
        data, reached = _translated(session, owner, local, size, generation, pending, written)
        _twins.pin(owner, reached)
        if new:
            _write_watched(session, worker, data, generation)
        else:
            # Watched already (since its call placed it, or since it was made below): what
            # is written is what the caller holds, no change of the library's to report.
            session.memory.write(worker, data, generation, held=True)


def _mapped(session, word: int, keep, generation: int, pending, written,
            rewrite: bool = False) -> int:
    # worker_word's answer for one word; the twins it needs written go to `pending`. An
    # existing twin is written again only when it is what was stored (`rewrite`); one it
    # reaches holds what a call last sent, as the library reads it (docs/python.md).
    if not word or _addresses.classify(word)[0] != "local" or session.images.find(word):
        return word
    found = session.twins.twin_at(word)
    if found is not None and found[1].generation == generation:
        owner, twin = found
        if rewrite and not twin.busy and id(owner) not in written:
            written.add(id(owner))
            pending.append((owner, twin.worker, False, twin.local, twin.size))
        return twin.worker + (word - twin.local)
    owner = holder(keep, word)
    if owner is None or type(owner).__weakrefoffset__ == 0:
        return word
    size = _ct.sizeof(owner)
    worker = session.memory.alloc(size)
    twin = session.twins.kept(owner, size, worker, generation, first=True)
    if twin.worker != worker:  # another thread's store gave it its twin meanwhile
        return twin.worker + (word - twin.local)
    written.add(id(owner))
    pending.append((owner, worker, True, _ct.addressof(owner), size))
    return worker + (word - _ct.addressof(owner))


def _translated(session, owner, local: int, size: int, generation: int, pending,
                written) -> Tuple[bytes, Dict[int, object]]:
    """`owner`'s bytes (`size` at `local`) as the worker must find them, each pointer
    position that holds an address of this process translated, and what the translated
    words reach ({offset: object}). A union's words are translated only where they are
    the address of an object they keep (which member the union holds is not known)."""
    data = _ct.string_at(local, size)
    if not isinstance(owner, _DATA):
        return data, {}  # a bytes object's text
    offsets = _types.pointer_offsets(type(owner))
    if not offsets:
        return data, {}
    certain = {offset for offset, _ in _types.pointer_offsets(type(owner), unions=False)}
    data = bytearray(data)
    reached_at: Dict[int, object] = {}
    for offset, t in offsets:
        if offset + _WORD.size > len(data):
            continue
        word = _WORD.unpack_from(data, offset)[0]
        if not word or _addresses.classify(word)[0] != "local":
            continue
        reached = None
        if _types.is_function(t):
            mapped = closure_word(session, word)
            reached = _callback_code.local_callbacks.get(word)
        else:
            mapped = _mapped(session, word, owner._objects, generation, pending, written)
            if mapped != word:
                reached = session.twins.owner_at(word)
            elif _types.code_of(t) in ("z", "Z") and offset in certain:
                # The text of a string the object keeps (a bytes ctypes stored there).
                mapped, reached = string_copy_word(session, local_text(word, t), generation)
        if mapped != word:
            if reached is not None:
                reached_at[offset] = reached
            _WORD.pack_into(data, offset, mapped)
    return bytes(data), reached_at


def closure_word(session, word: int) -> int:
    """What the worker must find for `word`, a function pointer of this process: the
    closure of the callback whose local code it is, or `word` itself."""
    callback = _callback_code.local_callbacks.get(word)
    if callback is None:
        return word
    closure = session.closure_address(callback)
    return word if closure is None else closure


def local_text(word: int, t):
    """The NUL-terminated string at `word`, an address of this process stored as a `t`
    (c_char_p: bytes; c_wchar_p: str)."""
    return _ct.wstring_at(word) if _types.code_of(t) == "Z" else _ct.string_at(word)


def string_copy_word(session, text, generation: int) -> Tuple[int, object]:
    """A copy in the worker of `text` (bytes: a char* string; str: a wchar_t* one), for a
    string of this process stored where the library reads it: (its worker address, the
    local copy, which the worker's lives as long as)."""
    copy = _ct.create_unicode_buffer(text) if isinstance(text, str) else \
        _ct.create_string_buffer(text)
    return worker_word(session, _ct.addressof(copy), {"0": copy}, generation), copy


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
