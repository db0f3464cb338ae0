"""Typed pointer slots of caller memory that hold a worker address, found and given images.

The library's own stores into caller memory get images (ffibox._images). Worker addresses
also reach `char*` / `wchar_t*` / `T*` slots past the library: bytes copied from worker
memory (`memmove`, `from_buffer_copy(string_at(address, n))`), a `from_buffer` object over
a bytearray of such bytes, a word written through an alias of another type
(`c_void_p.from_buffer(record, offset).value = address`). ctypes would dereference such a
slot in this process. Callers here:

- `image_worker_words` after a copy into a typed object (ffibox.ctypes' memmove and
  from_buffer_copy, and every type's from_buffer / from_buffer_copy, patched by
  ffibox.ctypes._metatypes);
- `ensure_local` before ctypes reads a pointer field of an ffibox.ctypes Structure
  (ffibox.ctypes._fields), which catches every way a word got there.

A word this process owns stays; a worker address gets an image (and the slot its local
address), a word inside a worker twin the caller's own object. Which side a word is on is
ffibox._addresses' decision (about 10 µs: a process_vm_readv probe), so a slot found local
is remembered with its word until the next worker address is noted: a field read then costs
a dictionary lookup.
"""
import ctypes as _ct
import struct
from typing import Dict, Optional, Tuple

from ffibox import _addresses, _remote, _types
from ffibox._default import opened_session

_WORD = struct.Struct("P")
# Words found to be this process's addresses -> _addresses.epoch() when found.
local_words: Dict[int, int] = {}
MAX_REMEMBERED_WORDS = 1 << 16
_TYPED_SLOTS = "_ffibox_typed_slots"


def typed_slots(t) -> Tuple[int, ...]:
    """Offsets of the `char*` / `wchar_t*` / `T*` slots inside a value of type `t`, outside
    unions (whose words may be another member's number). Kept in the type itself (records
    once their fields are final)."""
    slots = t.__dict__.get(_TYPED_SLOTS)
    if slots is not None:
        return slots
    slots = tuple(offset for offset, p in _types.pointer_offsets(t, unions=False)
                  if is_typed_pointer(p))
    if not _types.is_record(t) or "_fields_" in t.__dict__:  # else fields may come later
        try:
            setattr(t, _TYPED_SLOTS, slots)
        except TypeError:  # an immutable (stdlib simple) type: nothing to keep
            pass
    return slots


def is_local(word: int) -> bool:
    """Whether non-zero `word` is an address of this process (ffibox._addresses)."""
    epoch = _addresses.epoch()
    if local_words.get(word) == epoch:
        return True
    if _addresses.classify(word)[0] != "local":
        return False
    remember_local(word)
    return True


def remember_local(word: int) -> None:
    """Remembers `word` as this process's until the next worker address is noted."""
    if len(local_words) >= MAX_REMEMBERED_WORDS:
        local_words.clear()
    local_words[word] = _addresses.epoch()


def memory_owner(obj, offset: int = 0) -> Tuple[object, int]:
    """The object owning the memory at `offset` of `obj` (a field or element view shares
    its base's), and that memory's offset in it: images kept by the owner live as long as
    the memory. Stops at a base that does not hold all of `obj` (a from_buffer object over
    another object's bytes is its own owner)."""
    start = _ct.addressof(obj) + offset
    base = getattr(obj, "_b_base_", None)
    while base is not None and _ct.addressof(base) <= _ct.addressof(obj) and \
            _ct.addressof(obj) + _ct.sizeof(obj) <= _ct.addressof(base) + _ct.sizeof(base):
        obj, base = base, getattr(base, "_b_base_", None)
    return obj, start - _ct.addressof(obj)


def image_worker_words(obj, first: int = 0, end: Optional[int] = None) -> None:
    """Gives images to the worker addresses among the typed pointer slots of local object
    `obj` (one that owns its memory, see memory_owner) inside its bytes [first, end) (all
    of them by default), which hold bytes the caller copied; this process's addresses stay.
    Without a default session nothing can be a worker's, and nothing changes."""
    slots = typed_slots(type(obj))
    session = opened_session() if slots else None
    if session is None:
        return
    end = _ct.sizeof(obj) if end is None else end
    for offset in slots:
        if first <= offset and offset + _WORD.size <= end:
            word = _WORD.unpack_from(obj, offset)[0]
            if word and not is_local(word):
                session.images.convert_slots(obj, session.generation, first=first, end=end,
                                             is_worker=lambda w: not is_local(w))
                return


def copy_from_view(obj, offset: int, view) -> bool:
    """Copies what view of worker memory `view` (ffibox._remote) views into local object
    `obj` at `offset`, as ctypes copies a value, with images for the worker addresses among
    its typed pointers (the view's local snapshot has NULL there); False, copying nothing,
    when `view` is not a view."""
    at = _remote.view_address(view)
    if at is None:
        return False
    data = at.session.memory.read(at.address, _ct.sizeof(view), at.generation)
    _ct.memmove(_ct.addressof(obj) + offset, data, len(data))
    owner, first = memory_owner(obj, offset)
    at.session.images.convert_slots(owner, at.generation, first=first, end=first + len(data))
    return True


def store_worker_pointer(obj, offset: int, pointer_type, pointer) -> None:
    """Stores RemotePointer `pointer` in the `pointer_type` slot at `offset` of local object
    `obj`, as ctypes stores a pointer there: the slot holds an image of the worker memory it
    names, kept with the memory's owner, which a call passes as that worker address again
    (a stale handle's image is refused as reading it is: ffibox.StaleHandle)."""
    where, word = _remote.address_of(pointer), 0
    if where.address:
        owner, at = memory_owner(obj, offset)
        word = where.session.images.bind(owner, at, pointer_type, where.address,
                                         where.generation)
    _types.word_at(_ct.addressof(obj) + offset).value = word or where.address


def ensure_local(obj, offset: int) -> None:
    """Makes the typed pointer slot at `offset` of local object `obj` safe for ctypes to
    dereference: a worker address there gets an image (ffibox.Error if the library's graph
    is past the session's budget), a word inside a worker twin becomes the caller's own
    address. Raises ValueError for a word that is no address of this process when no
    session has a worker it could belong to."""
    word = _WORD.unpack_from(obj, offset)[0]
    if not word:
        return
    if is_local(word):
        return
    session = opened_session()
    if session is not None:
        # The images are kept by `obj` and by the owner of its memory (ffibox._images).
        session.images.convert_slots(obj, session.generation, first=offset,
                                     end=offset + _WORD.size)
    if _WORD.unpack_from(obj, offset)[0] == word:
        raise ValueError("0x%x in a pointer field is not an address of this process, and no "
                         "ffibox session has a worker it could belong to" % word)


def is_typed_pointer(t) -> bool:
    """Whether a slot of type `t` is one ctypes dereferences (`char*`, `wchar_t*`, `T*`),
    not a `void*` or function pointer, which stay integers."""
    return _types.code_of(t) in ("z", "Z") or _types.is_pointer(t)
