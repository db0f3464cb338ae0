"""Worker memory seen from the client: pointers the library returned, and views of values
that live in the worker (`.contents`, `in_dll`). Every access is a request to the server;
a worker address is never dereferenced in this process."""
import ctypes as _ct
import struct
import threading
from typing import Any, Dict, Optional

from ffibox import _addresses, _callback_pointers, _twins, _types
from ffibox._worker_address import WorkerAddress, address_of, set_address
from ffibox.errors import Error, StaleHandle

_views: Dict[type, type] = {}
# Where a RemotePointer's local slot holds the caller's object a call pointed it at (and
# None in a slot that holds none), for RemotePointer.local_target; set by ffibox._blocks.
TARGET = "_ffibox_target"
_named_pointers: Dict[type, type] = {}  # T -> the RemotePointer subclass for POINTER(T)
_naming = threading.Lock()
# A view's or RemotePointer's root: the object ctypes would keep what is stored through it
# alive in (the base of `p.contents` is `p`; a field's, its record's). What the caller stores
# into worker memory through it (a pointer to its own object, whose twin the worker then
# holds; a callback) lives as long as the root (root_of, keep_stored), as ctypes keeps it in
# the root's `_objects`: the library is not left with the address of a freed twin.
ROOT = "_ffibox_root"
STORED = "_ffibox_stored"


def read_word(at: WorkerAddress) -> int:
    """The pointer-sized word at worker address `at`."""
    return struct.unpack("<Q", at.session.memory.read(at.address, 8, at.generation))[0]


def _pointee(at: WorkerAddress) -> WorkerAddress:
    # The worker address stored at `at`, in the same worker.
    return WorkerAddress(at.session, read_word(at), at.generation)


def root_of(obj):
    """The object what is stored through view or RemotePointer `obj` is kept alive with."""
    return obj.__dict__.get(ROOT, obj)


def _rooted(obj, root):
    # `obj` (a view or RemotePointer made through `root`), holding its root, as ctypes'
    # objects made through another hold it as their base.
    if root is not None:
        obj.__dict__[ROOT] = root
    return obj


def keep_stored(root, address: int, value) -> None:
    """Keeps `value`, stored at worker address `address` through an object of `root`, alive
    as long as `root` (or until another value is stored there), as ctypes keeps what is
    assigned into memory in its container's `_objects`."""
    if root is None or value is None or value == {} or \
            isinstance(value, (int, float, bytes, str)):
        return
    try:
        held = root.__dict__
    except AttributeError:  # a record with __slots__: it keeps nothing (nor would ctypes)
        return
    held.setdefault(STORED, {})[address] = value  # (one dict, whichever thread)


def load(t, at: WorkerAddress, root=None) -> Any:
    """The Python value ctypes gives for a `t` stored at worker address `at` (a field, an
    element, a dereferenced pointer); `root`: what a view or pointer it gives keeps alive
    what is stored through it with (root_of the object it was read through)."""
    _types.refuse_py_object_in_library_memory(t)
    code = _types.code_of(t)
    memory = at.session.memory
    if code in ("z", "Z"):
        target = read_word(at)
        return memory.read_string(target, code == "Z", at.generation) if target else None
    if code == "P":
        return read_word(at) or None
    if _types.is_pointer(t):
        word = read_word(at)
        # Into caller memory a call reached (the library stored &x): the caller's own object.
        twin = at.session.twins.local(word, at.generation) if word else None
        if twin is not None:
            return _twins.pointer_into(t, twin)
        return _rooted(RemotePointer(at.session, word, at.generation, t._type_), root)
    if _types.is_function(t):
        return function_pointer(t, _pointee(at))
    if _types.is_fundamental(t):
        return t.from_buffer_copy(memory.read(at.address, _ct.sizeof(t), at.generation)).value
    return view(t, at, root)


def store(t, at: WorkerAddress, value: Any, root=None) -> None:
    """Writes `value` as a `t` at worker address `at`; what it places in the worker for
    `value` (a twin of the caller's object, a callback) lives as long as `root`
    (keep_stored)."""
    memory = at.session.memory
    if isinstance(value, _ct._SimpleCData) and not _types.is_simple(t):
        value = value.value
    if _types.is_fundamental(t) and _types.code_of(t) not in ("z", "Z", "P"):
        data = bytes(value if isinstance(value, t) else t(value))
        memory.write(at.address, data, at.generation)
        return
    if isinstance(value, (_ct.Structure, _ct.Union, _ct.Array)) and not _types.holds_address(t):
        # By value (an array for a pointer is its address, below, as ctypes stores it).
        if not isinstance(value, t):
            raise TypeError("incompatible types, %s instance instead of %s instance"
                            % (type(value).__name__, t.__name__))
        source = view_address(value)
        if source is not None:  # a view of worker memory: the worker's bytes, pointers and all
            memory.copy(at.address, source.address, _ct.sizeof(t), at.generation)
            keep_stored(root, at.address, value)  # (with what its root keeps, as ctypes)
            return
        # Its pointers as the worker must find them (the caller's objects they reach given
        # twins, kept alive as long as the bytes stand, as ctypes keeps them with the record
        # stored, whatever becomes of `value` since).
        data, reached = _callback_pointers.worker_bytes(at.session, value, at.generation)
        memory.write(at.address, data[:_ct.sizeof(t)], at.generation)
        keep_stored(root, at.address, (value, reached))
        # And as long as `value`: ctypes stores the address of what `value` holds (the text
        # of a bytes object it keeps), which lives with `value` whatever becomes of `root`.
        keep_stored(value, at.address, reached)
        return
    if _types.code_of(t) == "P" and isinstance(value, _ct._SimpleCData) and \
            type(value)._type_ == "P" and view_address(value) is None and value.value:
        # A c_void_p holding the address of the caller's object (`cast(buffer, c_void_p)`,
        # which keeps `buffer`): that object's twin.
        word = value.value
        mapped = _callback_pointers.worker_word(at.session, word, value._objects,
                                                at.generation)
        if mapped != word:
            _write_word(at, mapped)
            keep_stored(root, at.address, value)
            return
    code = _types.code_of(t)
    if code in ("z", "Z") and isinstance(value, _ct._SimpleCData) and \
            type(value)._type_ == code and view_address(value) is None:
        # A c_char_p of this process: where its address is the caller's object
        # (`cast(buffer, c_char_p)`), that object's twin; into worker memory (`cast(address,
        # c_char_p)` of the library's string), that address (below).
        word = _ct.c_void_p.from_buffer(value).value or 0
        into_image = at.session.images.image_address(word) if word else None
        if into_image is not None:  # an image of the library's string: that string
            _write_word(at, into_image[0])
            return
        mapped = _callback_pointers.worker_word(at.session, word, value._objects,
                                                at.generation) if word else 0
        if mapped != word:
            _write_word(at, mapped)
            keep_stored(root, at.address, value)
            return
        if not word or _addresses.classify(word)[0] != "local":
            value = None if not word else word  # the worker's own string, or NULL
    if code in ("z", "Z") and (isinstance(value, (bytes, str)) or (
            isinstance(value, _ct._SimpleCData) and type(value)._type_ == code and
            view_address(value) is None and value.value is not None)):
        # A string of this process (`p.contents.name = b"x"`, a c_char_p holding the text of
        # a bytes object): a copy in the worker, which lives as long as ctypes would keep
        # the string (with `root`).
        string = value if isinstance(value, _ct._SimpleCData) else \
            (_ct.c_char_p if code == "z" else _ct.c_wchar_p)(value)  # ctypes' TypeError
        word, copy = _callback_pointers.string_copy_word(at.session, string.value,
                                                         at.generation)
        _write_word(at, word)
        keep_stored(root, at.address, (string, copy))
        return
    memory.write_typed(at.address, t, value, at.generation)
    keep_stored(root, at.address, value)


def _write_word(at: WorkerAddress, word: int) -> None:
    # Writes pointer-sized `word` at worker address `at`.
    at.session.memory.write(at.address, word.to_bytes(8, "little"), at.generation)


def view(t, at: WorkerAddress, root=None):
    """An instance of (a subclass of) `t` whose reads and writes go to worker memory at
    `at`; `root`: what it keeps alive what is stored through it with (itself when None)."""
    _types.refuse_py_object_in_library_memory(t)
    cls = _views.get(t)
    if cls is None:
        if _types.is_simple(t):
            methods = {"value": property(_simple_get, _simple_set), "__bool__": _simple_bool}
            # ctypes shows a simple type with its value, a subclass of one as an object (and
            # a binding's own __repr__, an enum's, as the binding does).
            if t.__mro__[1] is _ct._SimpleCData:
                methods["__repr__"] = _simple_repr
            cls = _view_class(t, methods)
        elif _types.is_record(t):
            cls = _view_class(t, {"__getattribute__": _record_get, "__setattr__": _record_set,
                                  "_ffibox_fields": {f[0]: f for f in _types.all_fields(t)}})
        elif _types.is_array(t):
            cls = _view_class(t, {"__getitem__": _array_get, "__setitem__": _array_set})
        elif _types.is_pointer(t):
            # A pointer variable (`POINTER(c_char_p).in_dll(libc, "environ")`): what it
            # points to is read from the worker each time, as the pointer it holds then.
            cls = _view_class(t, {
                "_type_": t._type_,
                "contents": property(lambda self: _held(self).contents, _set_held_contents),
                "__getitem__": lambda self, index: _held(self)[index],
                "__setitem__": lambda self, index, value: _held(self).__setitem__(index, value),
                "__bool__": lambda self: bool(read_word(address_of(self)))})
        elif _types.is_function(t):
            # A function pointer variable, or a function itself seen as one (genometools
            # passes `addressof(PROTOTYPE.in_dll(lib, "a_function"))` as that function):
            # called, it calls the function whose address it holds.
            cls = _view_class(t, {
                "_flags_": t._flags_, "_argtypes_": t._argtypes_, "_restype_": t._restype_,
                "__call__": lambda self, *args: _held(self)(*args),
                "__bool__": lambda self: bool(read_word(address_of(self)))})
        else:
            raise TypeError("ffibox: no remote view of %r" % (t,))
        cls._ffibox_base = t
        _views[t] = cls
    # Field, element and value access always goes to the worker. The local bytes (which
    # bytes(), .raw, the buffer protocol and constructors that copy an instance read) of a
    # pointer-free array are an image of the worker's (ffibox._images): numpy over them
    # reads what the library wrote and writes what it will read. Other views' start as a
    # snapshot, their pointer slots NULL: a worker address is never left in caller memory.
    # (Not records: each image alive costs every call a look, and a list of the records of
    # a library's array, `[p[i] for i in range(n)]`, is ordinary ctypes code.)
    imaged = mirrored(t)
    instance = at.session.images.mirror(cls, at.address, at.generation) if imaged else None
    if instance is None:
        instance = cls.__new__(cls)  # as ctypes makes objects at an address: no __init__
    set_address(instance, at)
    if not imaged and _types.code_of(t) not in ("z", "Z", "P"):
        try:
            data = at.session.memory.read(at.address, _ct.sizeof(t), at.generation)
            _ct.memmove(_ct.addressof(instance), data, len(data))
            for offset, _ in _types.pointer_offsets(t):
                _types.word_at(_ct.addressof(instance) + offset).value = None
        except Error:
            pass
        _rooted(instance, root)  # (a mirrored array holds no pointer: nothing stored to keep)
    return instance


def _view_class(t, methods):
    """The class of views of `t`: a subclass with `methods`, made by ctypes' own metaclass
    (a binding's metaclass, gumbo's enums', would run again and may refuse a class it did not
    expect) and showing `t` as its `__class__` (a binding's from_param comparing classes,
    gumbo's "can't mix enums", takes a view for a `t`)."""
    methods = dict(methods, __class__=property(lambda self: t))
    metatype = type(t)
    ctypes_metatype = next(m for m in metatype.__mro__ if m.__module__ == "_ctypes")
    cls = ctypes_metatype.__new__(metatype, t.__name__, (t,), methods)
    ctypes_metatype.__init__(cls, t.__name__, (t,), methods)  # where 3.13's ctypes sets it up
    return cls


def _held(pointer_view):
    # What a view of a pointer or function pointer variable holds now, as load gives it.
    return load(type(pointer_view)._ffibox_base, address_of(pointer_view), root_of(pointer_view))


def _set_held_contents(pointer_view, target) -> None:
    # `variable.contents = obj`: the variable then points to obj, which must be the
    # library's memory (a view of it); this process's memory is out of the library's reach.
    at = address_of(pointer_view)
    where = view_address(target)
    if where is None:
        raise TypeError("ffibox: a pointer variable of the library can point to the library's "
                        "memory only (a view of it: .contents of a pointer it gave, in_dll), "
                        "not to an object of this process")
    if where.session is not at.session or where.generation != at.generation:
        raise StaleHandle("STALE_HANDLE: 0x%x is memory of another worker than the variable's"
                          % where.address, "STALE_HANDLE")
    _write_word(at, where.address)


def held_by_pointer_view(obj):
    """What a view of a pointer or function pointer variable holds now (a RemotePointer, a
    function of the worker), which is what passing or casting it passes; `obj` itself when it
    is no such view."""
    base = getattr(type(obj), "_ffibox_base", None)
    if base is not None and (_types.is_pointer(base) or _types.is_function(base)) and \
            address_of(obj) is not None:
        return _held(obj)
    return obj


def mirrored(t) -> bool:
    """Whether a view of `t` has an image of the worker's bytes as its local bytes (a
    pointer-free array)."""
    return bool(_types.is_array(t) and _ct.sizeof(t) and not _types.pointer_offsets(t))


def view_address(obj) -> Optional[WorkerAddress]:
    """Where `obj` lives in the worker when it is a view of worker memory, else None."""
    return address_of(obj) if hasattr(type(obj), "_ffibox_base") else None


def _refresh(view_of_record) -> WorkerAddress:
    # Reads the worker's bytes of a record view into its local copy; its address.
    at = address_of(view_of_record)
    data = at.session.memory.read(at.address, _ct.sizeof(view_of_record), at.generation)
    _ct.memmove(_ct.addressof(view_of_record), data, len(data))
    return at


# A view's class made into a local object (`type(view)()`, `type(view).from_buffer_copy(
# data)`, as capstone copies its records) has no worker address: it is the ctypes type's.

def _simple_get(self):
    at = address_of(self)
    base = type(self)._ffibox_base
    if at is None:
        return base.value.__get__(self)
    if _types.is_fundamental(base) or _types.code_of(base) in ("z", "Z", "P"):
        return load(base, at)
    # A subclass of a simple type (a field of `class Format(c_int)`, which ctypes gives as a
    # Format): its value is its simple type's, read from the worker (load gives the view).
    data = at.session.memory.read(at.address, _ct.sizeof(base), at.generation)
    return base.from_buffer_copy(data).value


def _simple_set(self, value):
    at = address_of(self)
    if at is None:
        type(self)._ffibox_base.value.__set__(self, value)
    else:
        store(type(self)._ffibox_base, at, value, root_of(self))


def _simple_bool(self):
    # As ctypes: whether any of its bytes is non-zero (the local snapshot of a pointer holds
    # NULL, never the worker's address).
    at = address_of(self)
    if at is None:
        return type(self)._ffibox_base.__bool__(self)
    return any(at.session.memory.read(at.address, _ct.sizeof(self), at.generation))


def _simple_repr(self):
    return "%s(%r)" % (type(self).__name__, self.value)


def _record_get(self, name):
    fields = type(self)._ffibox_fields
    field = fields.get(name)
    if field is None:
        return object.__getattribute__(self, name)
    at = address_of(self)
    if at is None:
        return object.__getattribute__(self, name)
    if len(field) == 2:
        t = field[1]
        at = at + getattr(type(self)._ffibox_base, name).offset
        if _types.is_array(t) and t._type_ in (_ct.c_char, _ct.c_wchar):
            # ctypes gives a record's char and wchar_t array fields as bytes / str, up to
            # the first NUL.
            data = at.session.memory.read(at.address, _ct.sizeof(t), at.generation)
            return getattr(t.from_buffer_copy(data), "value")
        return load(t, at, root_of(self))
    _refresh(self)  # a bit field: refresh the local copy, let ctypes extract the bits
    return object.__getattribute__(self, name)


def _record_set(self, name, value):
    fields = type(self)._ffibox_fields
    if name not in fields or address_of(self) is None:
        object.__setattr__(self, name, value)
        return
    descriptor = getattr(type(self)._ffibox_base, name)
    if len(fields[name]) == 2:
        t = fields[name][1]
        store(t, address_of(self) + descriptor.offset, value, root_of(self))
        if not _types.pointer_offsets(t):
            # The local snapshot follows the caller's own writes, for copies of it.
            descriptor.__set__(self, value)
        return
    at = _refresh(self)
    object.__setattr__(self, name, value)
    at.session.memory.write(at.address, _ct.string_at(_ct.addressof(self), _ct.sizeof(self)),
                            at.generation)


# A slice whose span is past this and eight times its elements reads each element instead.
_SPAN_BYTES = 1 << 20


def _plain_values(t) -> bool:
    """Whether elements of type `t` are plain values a slice gives as copies: a simple type
    itself, not a subclass (whose elements ctypes gives as objects sharing the array's
    memory), and no pointer or string."""
    return _types.is_simple(t) and t.__mro__[1] is _ct._SimpleCData and \
        _types.code_of(t) not in "zZP"


def _read_span(t, at, indexes: range):
    """Elements `indexes` (not empty) of an array of plain `t` values at worker address `at`
    (a WorkerAddress), read at once: a list, or bytes for c_char and str for c_wchar."""
    first, last = indexes[0], indexes[-1]
    low, count = min(first, last), abs(last - first) + 1
    size = _ct.sizeof(t)
    if count > 8 * len(indexes) and count * size > _SPAN_BYTES:
        # Far apart (a large step): each element's bytes, not the span.
        data = b"".join(at.session.memory.read_list(
            [(at.address + i * size, size) for i in indexes], at.generation))
        return (t * len(indexes)).from_buffer_copy(data)[:]
    where = at + low * size
    data = where.session.memory.read(where.address, count * size, where.generation)
    if t is _ct.c_char and indexes.step == 1:
        return data
    span = (t * count).from_buffer_copy(data)
    return span[first - low::indexes.step]


def _index(length: int, index: int) -> int:
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError("invalid index")
    return index


def _array_get(self, index):
    t = type(self)._ffibox_base
    if address_of(self) is None:
        return t.__getitem__(self, index)
    if isinstance(index, slice):
        indexes = range(*index.indices(t._length_))
        if _plain_values(t._type_):
            # One read of the span, as a pointer's slice (was a request an element).
            return _read_span(t._type_, address_of(self), indexes) if len(indexes) else \
                (t._type_ * 0)()[:]
        items = [_array_get(self, i) for i in indexes]
        return b"".join(items) if t._type_ is _ct.c_char else items
    index = _index(t._length_, index)
    return load(t._type_, address_of(self) + index * _ct.sizeof(t._type_), root_of(self))


def _array_set(self, index, value):
    t = type(self)._ffibox_base
    at = address_of(self)
    if at is None:
        return t.__setitem__(self, index, value)
    if isinstance(index, slice):
        indexes = range(*index.indices(t._length_))
        # ctypes' own checks and conversions (a sequence of the slice's length, values of
        # the element type), on a local array of the slice's elements.
        values = (t._type_ * len(indexes))()
        values[:] = value
        if _plain_values(t._type_) and indexes.step == 1 and indexes:
            where = at + indexes[0] * _ct.sizeof(t._type_)
            where.session.memory.write(where.address, bytes(values), where.generation)
        else:
            for position, item in zip(indexes, values):
                _array_set(self, position, item)
        return None
    index = _index(t._length_, index)
    store(t._type_, at + index * _ct.sizeof(t._type_), value, root_of(self))


# Makes a RemotePointer's local slot once, whichever thread asks first.
_slot_lock = threading.RLock()  # re-entrant: see ffibox._addresses._lock


def pointer_type_guarded(cls) -> bool:
    """Whether pointer type `cls` takes a RemotePointer as its contents (set by
    ffibox.ctypes._pointers when imported)."""
    return False


def guard_pointers_to(t) -> None:
    """Makes and guards `POINTER(POINTER(t))`, so that a later one made by ctypes alone is
    that guarded class (ffibox.ctypes._pointers, which replaces this function once
    imported: a RemotePointer is made by a session that may not have imported it)."""
    from ffibox.ctypes import _pointers
    _pointers.guard_pointers_to(t)


_pointers_to_guarded = set()


class RemotePointer:
    """A `POINTER(T)` the library returned: an address in the worker (of one worker
    generation). `.contents`, indexing, `cast` and `string_at` read through the server.
    Made as an instance of a subclass named after ctypes' name of `POINTER(T)`
    (`RemotePointer_LP_T`), so that `str(type(p))` says what it points to (pysdl2 checks
    so) and ctypes' own errors say what it is ("expected LP_T instance, got
    RemotePointer_LP_T")."""

    def __new__(cls, *args, **kwargs):
        # (copy.copy makes one with no arguments, of the subclass already.)
        type_ = args[3] if len(args) > 3 else kwargs.get("type_")
        if cls is RemotePointer and type_ is not None:
            cls = _named_pointers.get(type_) or _named_pointer(type_)
        return object.__new__(cls)

    def __init__(self, session, address: int, generation: int, type_) -> None:
        self._at = WorkerAddress(session, address, generation)
        self._type_ = type_
        self._slot = None  # a local POINTER(T) a call may change (local_slot)
        if type_ not in _pointers_to_guarded and type_ is not None:
            guard_pointers_to(type_)

    @property
    def __class__(self):
        # What ctypes would return, so that `isinstance(p, POINTER(T))` holds (python3-clang
        # asserts it of every handle), as do other checks of ctypes pointer types
        # (`_Pointer`, the base of ctypes objects); type(p) stays RemotePointer. ctypes' C
        # code checks an object's real type before it reads it as a ctypes object, except
        # where a pointer to pointers is pointed at it (`POINTER(POINTER(T))(p)`,
        # `pp.contents = p`), so p says so only while that type is guarded (it then points at
        # p's local slot: ffibox.ctypes._pointers) or not made yet. A subclass of `_Pointer`
        # made by hand with `_type_ = POINTER(T)` is not covered.
        if self._type_ is None:
            return type(self)
        pointer_type = _ct.POINTER(self._type_)
        to_it = _ct._pointer_type_cache.get(pointer_type)
        if to_it is not None and not pointer_type_guarded(to_it):
            return type(self)
        return pointer_type

    @property
    def _ffibox_address(self) -> WorkerAddress:
        slot = self._slot
        if slot is None:
            return self._at
        # What a call left in the slot: NULL, the worker's address, a local image of it, or
        # caller memory the call reached (its twin's address).
        word = _ct.c_void_p.from_buffer(slot).value or 0
        session = self._at.session
        mapped = session.images.worker_address(word) if word else None
        if mapped is None and word:
            found = session.twins.twin_at(word)
            if found is not None:
                mapped = (found[1].worker + word - found[1].local, found[1].generation)
        if mapped is not None:
            return WorkerAddress(session, mapped[0], mapped[1])
        return WorkerAddress(session, word, self._at.generation if word == self._at.address
                             else session.handed_generation(word))

    def local_target(self):
        """(the local POINTER(T) slot, the caller's object) when the last call that changed
        the slot left in it the address of the caller's own object (the library stored `&x`
        through `byref(p)`): this pointer then points to `x` in this process, as a ctypes
        pointer would (and keeps it alive), and reads, writes and calls reach `x` itself,
        not its worker twin, whichever worker runs them. Else None."""
        slot = self._slot
        target = slot.__dict__.get(TARGET) if slot is not None else None
        if target is None:
            return None
        word = _ct.c_void_p.from_buffer(slot).value or 0
        start = _ct.addressof(target)
        if not start <= word < start + max(_ct.sizeof(target), 1):
            return None  # changed since (NULL, the worker's memory): not that object
        return slot, target

    def local_slot(self):
        """A local POINTER(T) holding this pointer's worker address, for `byref` and
        `pointer` of it: a library that stores through it (`destroy(&p)` setting it to NULL,
        `create(&p)`) changes what this pointer holds, as it would a ctypes pointer's. A
        StaleHandle when its worker is gone, as passing it would be."""
        local = self.local_target()
        if local is not None:  # the caller's object: no worker's, so never stale
            return local[0]
        at = self._ffibox_address
        if at.address and at.generation != at.session.generation:
            raise StaleHandle("STALE_HANDLE: the pointer 0x%x belongs to worker generation %d, "
                              "which is gone (the session's worker is generation %d now)"
                              % (at.address, at.generation, at.session.generation),
                              "STALE_HANDLE")
        with _slot_lock:
            # Two slots would split what the library stores through them from what this
            # pointer reads.
            if self._slot is None:
                slot = _ct.cast(_ct.c_void_p(at.address), _ct.POINTER(self._type_))
                slot.__dict__[TARGET] = None  # a RemotePointer's slot (ffibox._blocks)
                self._slot = slot
        return self._slot

    @property
    def address(self) -> int:
        """The worker address it points to."""
        return self._ffibox_address.address

    @property
    def generation(self) -> int:
        """The worker generation the address belongs to."""
        return self._ffibox_address.generation

    def __bool__(self) -> bool:
        return self.address != 0

    # Equal and hashed by the address it was returned with: it stays one key of a dict while
    # the library changes what it holds through `byref` (a ctypes pointer is unhashable).
    def __eq__(self, other) -> bool:
        return (isinstance(other, RemotePointer) and other._at.address == self._at.address
                and other._at.generation == self._at.generation)

    def __hash__(self) -> int:
        return hash((self._at.address, self._at.generation))

    def __repr__(self) -> str:
        return "<ffibox.RemotePointer LP_%s 0x%x (worker generation %d)>" % (
            getattr(self._type_, "__name__", self._type_), self.address, self.generation)

    def _check(self) -> None:
        if not self.address:
            raise ValueError("NULL pointer access")

    @property
    def contents(self):
        """The pointed-to value, as a view whose reads and writes go to the worker (a
        pointer or function pointer: the RemotePointer or function it holds)."""
        self._check()
        local = self.local_target()
        if local is not None:
            return local[0].contents
        if _types.is_pointer(self._type_) or _types.is_function(self._type_):
            return load(self._type_, self._ffibox_address, root_of(self))
        return view(self._type_, self._ffibox_address, root_of(self))

    def __getitem__(self, index):
        self._check()
        local = self.local_target()
        if local is not None:
            return local[0][index]
        size = _ct.sizeof(self._type_)
        if isinstance(index, slice):
            # ctypes' rules for pointers: stop is required, and start too when stepping back.
            step = 1 if index.step is None else index.step
            if index.stop is None:
                raise ValueError("slice stop is required")
            if index.start is None and step < 0:
                raise ValueError("slice start is required for step < 0")
            start = 0 if index.start is None else index.start
            indexes = range(start, index.stop, step)
            if _plain_values(self._type_) and len(indexes) > 0:
                # Plain values: one read of the span, not one per element, sliced as an
                # array of them (bytes for c_char, str for c_wchar, as ctypes gives).
                return _read_span(self._type_, self._ffibox_address, indexes)
            items = [self[i] for i in indexes]
            if self._type_ is _ct.c_char:
                return b"".join(items)
            return "".join(items) if self._type_ is _ct.c_wchar else items
        return load(self._type_, self._ffibox_address + index * size, root_of(self))

    def __setitem__(self, index: int, value) -> None:
        self._check()
        local = self.local_target()
        if local is not None:
            local[0][index] = value
            return
        size = _ct.sizeof(self._type_)
        store(self._type_, self._ffibox_address + index * size, value, root_of(self))


_string_pointers: Dict[type, type] = {}


def _named_pointer(t) -> type:
    """The subclass of RemotePointer whose instances point to `t`s, named after ctypes'
    name of `POINTER(t)`."""
    with _naming:
        named = _named_pointers.get(t)
        if named is None:
            named = type("RemotePointer_LP_%s" % t.__name__, (RemotePointer,), {"__module__": __name__})
            _named_pointers[t] = named
        return named


def string_pointer(t, at: WorkerAddress):
    """A `c_char_p` / `c_wchar_p` (subclass) instance for the worker string at `at`:
    `.value` reads the string through the server, unless the subclass defines its own; its
    bytes hold the address of an image of the string (ffibox._images), which is what copies
    of it point to."""
    cls = _string_pointers.get(t)
    if cls is None:
        wide = _types.code_of(t) == "Z"

        def get(self):
            at = address_of(self)
            return at.session.memory.read_string(at.address, wide, at.generation) \
                if at.address else None

        members = {"__repr__": lambda self: "%s(%r)" % (t.__name__, self.value)}
        if not any("value" in k.__dict__ for k in t.__mro__[:t.__mro__.index(
                _ct.c_wchar_p if wide else _ct.c_char_p)]):
            members["value"] = property(get)
        # else the subclass's own `value` (python3-clang's c_interop_string decodes what
        # c_char_p's gives) reads the string's image, as of the call
        cls = type(t.__name__, (t,), members)
        _string_pointers[t] = cls
    image = at.session.images.image_of(t, at.address, at.generation) if at.address else None
    if image is None:
        instance = cls.__new__(cls)  # NULL; not the subclass's __init__, as ctypes makes it
    else:
        # Its own word is the address of an image of the string, which ctypes' keep-alive
        # references (`_objects`) hold and hand on to the copies it makes by assignment (a
        # structure's field, an array element): a copy is a string this process has, and
        # passing it to the library passes the worker's address.
        instance = _ct.cast(image.buffer, cls)
        instance._objects["ffibox:image"] = image
    set_address(instance, at)
    return instance


def function_pointer(prototype, at: WorkerAddress):
    """An instance of CFUNCTYPE `prototype` for the worker function at `at` (NULL: the
    prototype's NULL instance)."""
    if not at.address:
        return prototype()
    return prototype(RemotePointer(at.session, at.address, at.generation, None))
