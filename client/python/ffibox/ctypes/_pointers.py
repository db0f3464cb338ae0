"""Pointer objects (`POINTER(T)()`) that check their word before ctypes dereferences it.

ctypes reads a pointer object's target (`p[i]`, `p[a:b]`, `p.contents`, `p[i] = v`) through
C slots of its immutable `_Pointer` type. A worker address can reach a pointer object's own
word past the library's stores: written through an alias of another type
(`c_void_p.from_buffer(p).value = address`), copied in as bytes (`memmove(byref(p), ...)`),
or read as an element of an array of pointers that got there so. ctypes would dereference it
in this process. Each `POINTER(T)` class is a heap type, so ffibox puts its own item access
and `contents` on the class: the word is made this process's first (ffibox._slots.ensure_local:
a worker address, as ffibox._addresses reads it, gets an image, bound to its worker address
and written back before the session's next call, as a library's store into a pointer field
does; with no session, ValueError instead of a crash), then ctypes' own access runs. A word
inside an object the pointer keeps alive (ctypes made it point there) is this process's
whatever the worker handed back, and a word found to be this process's is remembered (about
0.3 µs an access). A `char*` / `wchar_t*` element a pointer reads (`POINTER(c_char_p)`,
`char**`) is checked the same way: a worker address there is the worker's string, as the
`c_char_p` object at that element reads it (ffibox.ctypes). An access through a pointer into
an image that reaches past the image's bytes (an element, a slice, a larger pointee's
`contents`) is the worker's memory there, read and written through the server
(ffibox._image_reach).

The classes are the stdlib's: `ffibox.ctypes.POINTER` and `pointer` guard the classes they
give, and the classes that exist when ffibox.ctypes is imported are guarded then. A class
made later by the stdlib alone (`ctypes.pointer` in C of a type no one asked for a pointer
type of, a direct subclass of `_Pointer`) is ctypes' own until ffibox gives it.
"""
import ctypes as _ct
import operator
import struct

from ffibox import _addresses, _images, _memory_owners, _remote, _slots, _types
from ffibox._memory import PAGE_BYTES as _PAGE_BYTES
from ffibox._image_reach import INDEX

_MARK = "_ffibox_guarded"
_IMAGE_KEPT = "_ffibox_image_kept"  # an object made over an image's memory keeps the image
_STDLIB_CONTENTS = _ct._Pointer.__dict__["contents"]
_STDLIB_GETITEM = _ct._Pointer.__getitem__
_STDLIB_SETITEM = _ct._Pointer.__setitem__
_CDATA = _ct._SimpleCData.__mro__[1]  # every ctypes object's base


_word = struct.Struct("P").unpack_from
_in_no_image = INDEX.in_no_image
_local_words = _slots.local_words
_epoch = _addresses.epoch
# How many of a pointer's keep-alive references are looked through for its target.
_KEPT_LOOKED_AT = 64


def _check(pointer) -> None:
    # _slots.ensure_local, with its cache looked at first (the common case, inlined).
    word = _word(pointer)[0]
    if not word or _local_words.get(word) == _epoch():
        return
    if _into_kept(pointer, word):
        _slots.remember_local(word)
    else:
        _slots.ensure_local(pointer, 0)


def _into_kept(pointer, word: int) -> bool:
    """Whether `word` lies inside an object `pointer` keeps alive: ctypes made it point
    there (`pointer(obj)`, `cast(obj, ...)`, `p.contents = obj`), so it is this process's
    whatever the worker handed back."""
    for item in _memory_owners.kept_alive(getattr(pointer, "_objects", None), _KEPT_LOOKED_AT):
        if issubclass(type(item), _CDATA):
            start = _ct.addressof(item)
            if start <= word < start + max(_ct.sizeof(item), 1):
                return True
    return False


def _keeping_image(item, word: int):
    """`item`, which ctypes made over the memory a pointer holding `word` points to (its
    `contents`, a structure, array or pointer element), made to keep alive the image that
    memory belongs to, if any: ctypes keeps only the pointer (its `_b_base_`), and the pointer
    may come to point elsewhere (a library's change to the memory holding it, a store) while
    `item`, or a `pointer(item)` kept for a later call, still uses the image's bytes and
    its worker address."""
    if word and not _in_no_image(word):
        reach = INDEX.holding(word)
        kept = getattr(item, "__dict__", None)  # (none: a stdlib Structure with __slots__)
        if reach is not None and kept is not None:
            kept[_IMAGE_KEPT] = reach.image
    return item


def _getitem(self, index):
    _check(self)
    beyond = _beyond_image(self, index)
    if beyond is not None:
        return beyond.get(index)
    item = _STDLIB_GETITEM(self, index)
    # (An element of a simple type comes out as a Python value: nothing to keep.)
    return _keeping_image(item, _word(self)[0]) if isinstance(item, _CDATA) else item


def _getitem_strings(self, index):
    # Of a pointer to char* / wchar_t*.
    _check(self)
    beyond = _beyond_image(self, index)
    if beyond is not None:
        return beyond.get(index)
    strings = _worker_strings(self, index)
    return _STDLIB_GETITEM(self, index) if strings is None else strings


class _BeyondImage:
    """Element access through a pointer into an image (ffibox._images) that reaches past the
    image's bytes: the elements there are the worker's, read and written there (as C reads
    on past the first elements of the library's array); those inside stay the image's."""

    def __init__(self, pointer, remote, local: range) -> None:
        self._pointer = pointer
        self._remote = remote  # a RemotePointer at the worker address the pointer names
        self._local = local    # the indices inside the image

    def get(self, index):
        if not isinstance(index, slice):
            index = operator.index(index)
            imaged = self._imaged(index)
            return self._remote[index] if imaged is None else imaged
        step = 1 if index.step is None else index.step
        start = 0 if index.start is None else index.start
        if step != 1 or not self._local.start <= start < self._local.stop:
            return self._remote[index]
        # The image's part as this pointer reads it (its checks included), the rest from
        # the worker in one read.
        split = min(index.stop, self._local.stop)
        return (type(self._pointer).__getitem__(self._pointer, slice(start, split)) +
                self._remote[split:index.stop])

    def _imaged(self, index):
        """Element `index` of a pointer-free type as read from an image of the worker's
        memory there: one the session already has over it (a plain image, up to date), else
        one made as the first was (up to 64 elements, to the end of the worker's page, in one
        watched read; brought up to date after each call and written back before the next),
        kept with the pointer. A loop over a library's array costs a read a chunk, not a view
        and a read a field. None for other types, for a worker that is gone, or when the
        memory cannot be imaged (the element is then the worker's, read there)."""
        t = self._pointer._type_
        plain = _PLAIN_ELEMENTS.get(t)
        if plain is None:
            plain = _PLAIN_ELEMENTS[t] = _plain_element(t)
        if not plain:
            return None
        size = _ct.sizeof(t)
        at = self._remote._ffibox_address
        session = at.session
        if at.generation != session.stream.generation:
            return None  # the worker's memory is gone: reading it says so
        worker = at.address + index * size
        images = session.images
        image = images.plain_covering(worker, size, at.generation)
        if image is None:
            # What a new image there would mirror (ffibox._images._make_pointee): one that
            # overlaps another would be a second copy of some elements, so then the element
            # is the worker's, read there.
            room = min(_PAGE_BYTES - worker % _PAGE_BYTES, _images.MAX_ELEMENTS * size)
            if images.plain_overlapping(worker, worker + max(room - room % size, size),
                                        at.generation):
                return None
            try:
                image = images.image_of(_ct.POINTER(t), worker, at.generation)
            except Exception:  # an image past the budget, memory that cannot be read
                return None
            if image is None or image.size < size or image.worker != worker:
                return None
            chunks = self._pointer.__dict__.setdefault(_CHUNKS, [])
            if len(chunks) >= _MAX_CHUNKS:
                images.write_back(chunks.pop(0))  # the caller's changes there go first
            chunks.append(image)  # alive at least while the pointer is
        # A pointer of this process to the element in the image: ctypes' own element access
        # through it (the element keeps the pointer alive, and the pointer the image).
        local = _ct.POINTER(t)()
        _ct.c_void_p.from_buffer(local).value = image.start + (worker - image.worker)
        local.__dict__["_ffibox_images"] = {0: image}
        return _STDLIB_GETITEM(local, 0)

    def set(self, index, value) -> None:
        self._remote[index] = value

    def contents(self):
        return self._remote.contents


# Where a pointer keeps the images of the chunks of a library's array read past its first
# image (_BeyondImage._imaged), and how many it keeps (the oldest go first).
_CHUNKS = "_ffibox_chunks"
_MAX_CHUNKS = 256
# Element type -> whether its arrays are read past the first image in chunks (no pointers).
_PLAIN_ELEMENTS = {}


def _plain_element(t) -> bool:
    """Whether elements of `t` are read past a first image from images of their chunks: a
    type the protocol describes (a py_object inside is not) holding no pointers."""
    if _ct.sizeof(t) == 0 or _types.is_pointer(t) or _types.is_function(t) or \
            _types.code_of(t) in ("z", "Z", "P", "O") or _types.pointer_offsets(t):
        return False
    try:
        _types.to_proto(t)
    except TypeError:
        return False
    return True


def _beyond_image(pointer, index):
    """A _BeyondImage when `pointer` points into an image and `index` (an integer, or a slice
    ctypes takes: with a stop) reaches past the image's bytes; else None."""
    base = _word(pointer)[0]
    if not base or _in_no_image(base):
        return None
    if isinstance(index, slice):
        step = 1 if index.step is None else index.step
        if index.stop is None or step == 0 or (step < 0 and index.start is None):
            return None  # ctypes' own error
        indices = range(0 if index.start is None else index.start, index.stop, step)
        if not indices:
            return None
        low, high = min(indices), max(indices)
    else:
        try:
            low = high = operator.index(index)  # as ctypes: anything with __index__
        except TypeError:
            return None  # ctypes' own error
    reach = INDEX.holding(base)
    if reach is None:
        return None
    size = max(_ct.sizeof(pointer._type_), 1)
    local = range(-(reach.offset // size), (reach.local_bytes - reach.offset) // size)
    if low in local and high in local:
        return None
    image = reach.image
    return _BeyondImage(pointer, _remote.RemotePointer(
        reach.session, image.worker + reach.offset, image.generation, pointer._type_), local)


def _worker_strings(pointer, index):
    """`pointer[index]` for a pointer to `char*` / `wchar_t*` when a word it reads there is
    not this process's (read as the `c_char_p` / `c_wchar_p` object at that element reads
    it); None when the stdlib's access is safe (words this process can read), or
    when the stdlib refuses the index (a slice without a stop)."""
    t = pointer._type_
    if isinstance(index, slice):
        step = 1 if index.step is None else index.step
        if index.stop is None or step == 0 or (step < 0 and index.start is None):
            return None
        indices = range(index.start or 0, index.stop, step)
    else:
        indices = range(index, index + 1)
    base, size = _types.word_at(_ct.addressof(pointer)).value, _ct.sizeof(t)
    if not base or all(_local_or_null(_types.word_at(base + i * size).value)
                       for i in indices):
        return None
    values = [t.from_address(base + i * size).value for i in indices]
    return values if isinstance(index, slice) else values[0]


def _local_or_null(word) -> bool:
    return not word or _slots.is_local(word)


def _setitem(self, index, value):
    _check(self)
    beyond = None if isinstance(index, slice) else _beyond_image(self, index)
    if beyond is None:
        _STDLIB_SETITEM(self, index, value)
    else:
        beyond.set(operator.index(index), value)


def _get_contents(self):
    _check(self)
    beyond = _beyond_image(self, 0)  # a pointee larger than the image's bytes: the worker's
    if beyond is not None:
        return beyond.contents()
    return _keeping_image(_STDLIB_CONTENTS.__get__(self), _word(self)[0])  # always a ctypes object


def _contents() -> property:
    return property(_get_contents, _STDLIB_CONTENTS.__set__, doc=_STDLIB_CONTENTS.__doc__)


# A pointer to pointers made to point at a RemotePointer (`POINTER(POINTER(T))(p)`,
# `pp.contents = p`) points at its local slot, as `pointer(p)` does: what the library
# stores through it is what the RemotePointer then holds. ctypes' own code would take the
# RemotePointer for the POINTER(T) object it says it is (RemotePointer.__class__) and read
# it as one; the RemotePointer says so only once its pointer-to-pointer type is guarded.
_STDLIB_INIT = _ct._Pointer.__init__


def _set_contents_to_slot(self, value):
    if isinstance(value, _remote.RemotePointer):
        value = value.local_slot()
    _STDLIB_CONTENTS.__set__(self, value)


def _init_to_slot(self, *args, **kwargs):
    if args and isinstance(args[0], _remote.RemotePointer):
        args = (args[0].local_slot(),) + args[1:]
    _STDLIB_INIT(self, *args, **kwargs)


def guard(cls):
    """Puts the checked item access and `contents` on pointer type `cls`, and on a pointer
    to pointers the construction that takes a RemotePointer (once; a class that defines its
    own keeps them), and returns it."""
    if isinstance(cls, type) and issubclass(cls, _ct._Pointer) and _MARK not in cls.__dict__:
        pointee = getattr(cls, "_type_", None)
        if "__getitem__" not in cls.__dict__:
            strings = isinstance(pointee, type) and _types.is_fundamental(pointee) and \
                _types.code_of(pointee) in ("z", "Z")
            cls.__getitem__ = _getitem_strings if strings else _getitem
        if "__setitem__" not in cls.__dict__:
            cls.__setitem__ = _setitem
        to_pointers = isinstance(pointee, type) and issubclass(pointee, _ct._Pointer)
        if "contents" not in cls.__dict__:
            cls.contents = property(_get_contents, _set_contents_to_slot,
                                    doc=_STDLIB_CONTENTS.__doc__) if to_pointers \
                else _contents()
        if to_pointers and "__init__" not in cls.__dict__:
            cls.__init__ = _init_to_slot
        setattr(cls, _MARK, True)
    return cls


def guarded(cls) -> bool:
    """Whether pointer type `cls` is guarded."""
    return _MARK in cls.__dict__


def guard_pointers_to(t) -> None:
    """Makes and guards `POINTER(POINTER(t))` for the RemotePointers of `t`
    (ffibox._remote.RemotePointer.__class__)."""
    POINTER(POINTER(t))
    _remote._pointers_to_guarded.add(t)


_remote.pointer_type_guarded = guarded
_remote.guard_pointers_to = guard_pointers_to


def POINTER(t):  # noqa: N802 (ctypes' name)
    return guard(_ct.POINTER(t))


POINTER.__doc__ = _ct.POINTER.__doc__


def guard_existing() -> None:
    """Guards the pointer types ctypes has made so far."""
    for cls in list(_ct._pointer_type_cache.values()):
        guard(cls)
