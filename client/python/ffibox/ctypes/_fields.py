"""The fields of ffibox.ctypes' Structure and Union classes: ctypes' own, with checks where
a worker address could reach this process's dereference.

ffibox keeps ctypes' field descriptors (the class still gives them: `Record.name.offset`)
and puts one of these in front of a field only where needed, from the classes' metaclasses,
whether `_fields_` is set in the class body or later:

- a structure's `char*` / `wchar_t*` / `T*` field checks its word before ctypes reads it
  (ffibox._slots.ensure_local): a worker address that got there past the library's own
  stores (an alias, bytes copied in, a `from_buffer` object) gets an image first;
- a structure's record or array field that holds such pointers, assigned a view of worker
  memory (`outer.record = p.contents`), takes the worker's bytes, pointers imaged, not the
  view's local snapshot (whose pointer slots are NULL);
- a union's pointer member is read as _UnionPointerField says;
- a function pointer field keeps the callback stored in it (_CallbackField).
"""
import ctypes as _ct
import weakref

from ffibox import _addresses, _images, _slots, _types
from ffibox._default import opened_session
from ffibox._remote import RemotePointer


def _set_pointer(field, t, obj, value) -> None:
    """Sets pointer field `field` (of type `t`) of `obj`: a RemotePointer to what `t` points
    to is held as an image of the worker memory it names (ffibox._slots), anything else is
    ctypes' to take or refuse."""
    if isinstance(value, RemotePointer) and _types.is_pointer(t) and value._type_ is t._type_:
        _slots.store_worker_pointer(obj, field.offset, t, value)
    else:
        field.__set__(obj, value)


class _FieldInFront:
    """One of ctypes' field descriptors with a check in front; the class still gives the
    descriptor itself (`Record.name.offset`)."""

    __slots__ = ("field", "offset")

    def __init__(self, field) -> None:
        self.field = field
        self.offset = field.offset

    def __get__(self, obj, owner=None):
        if obj is None:
            return self.field
        return self.field.__get__(obj, owner)

    def __set__(self, obj, value) -> None:
        self.field.__set__(obj, value)


class _CheckedPointerField(_FieldInFront):
    """A `char*` / `wchar_t*` / `T*` field of a structure: its word is made this process's
    (ffibox._slots.ensure_local) before ctypes dereferences it. A `T*` field takes a
    RemotePointer to `T` (a handle the library returned: `Data(flags, window)`) as ctypes
    takes a pointer of the field's type."""

    __slots__ = ("type",)

    def __init__(self, field, t) -> None:
        super().__init__(field)
        self.type = t

    def __get__(self, obj, owner=None):
        if obj is None:
            return self.field
        _slots.ensure_local(obj, self.offset)
        return self.field.__get__(obj, owner)

    def __set__(self, obj, value) -> None:
        _set_pointer(self.field, self.type, obj, value)


class _ValueField(_FieldInFront):
    """A record or array field holding typed pointers: a view of worker memory assigned to
    it is copied from the worker, its pointers imaged (ctypes would copy the view's local
    snapshot, whose pointer slots are NULL)."""

    __slots__ = ()

    def __set__(self, obj, value) -> None:
        if not _slots.copy_from_view(obj, self.offset, value):
            self.field.__set__(obj, value)


class _CallbackField(_FieldInFront):
    """A function pointer field: a callback stored in it is kept by the structure, as ctypes
    keeps its code (ctypes keeps no more, and a table built from temporaries,
    `Ops(PROTOTYPE(f))`, would lose the instance that says which callback the code is:
    ffibox._callback_code)."""

    __slots__ = ()

    def __set__(self, obj, value) -> None:
        self.field.__set__(obj, value)
        kept = obj.__dict__.setdefault("_ffibox_callbacks", {})
        if getattr(value, "_ffibox_callable", None) is not None:
            kept[self.offset] = value
        else:
            kept.pop(self.offset, None)


class _UnionPointerField:
    """A `char*` / `wchar_t*` / `T*` member of a union. Which member a union holds is not
    known, so a word the library stores there keeps its bytes (no image: it may be another
    member's number); reading a pointer member reads the address it holds as
    ffibox._addresses says: a worker address is read in the worker, an address inside a
    worker twin is the caller's object, never dereferenced here (about 20 µs a read)."""

    __slots__ = ("field", "type")

    def __init__(self, field, t) -> None:
        self.field = field
        self.type = t

    def __get__(self, obj, owner=None):
        if obj is None:
            return self.field
        word = _types.word_at(_ct.addressof(obj) + self.field.offset).value
        if word:
            kind, _, local = _addresses.classify(word)
            code = _types.code_of(self.type)
            if kind == "twin":
                if code in ("z", "Z"):
                    return _ct.wstring_at(local) if code == "Z" else _ct.string_at(local)
                return _ct.cast(_ct.c_void_p(local), self.type)
            session = opened_session() if kind == "worker" else None
            if session is not None:
                if code in ("z", "Z"):
                    return session.memory.read_string(word, code == "Z", session.generation)
                return RemotePointer(session, word, session.generation, self.type._type_)
        return self.field.__get__(obj, owner)

    def __set__(self, obj, value) -> None:
        _set_pointer(self.field, self.type, obj, value)


def _check_fields(cls, union: bool) -> None:
    for entry in cls.__dict__.get("_fields_", ()):
        name, t = entry[0], entry[1]
        field = cls.__dict__.get(name)
        if type(field).__name__ != "CField" or len(entry) > 2:
            continue
        if _slots.is_typed_pointer(t):
            setattr(cls, name, _UnionPointerField(field, t) if union
                    else _CheckedPointerField(field, t))
        elif not union and (_types.is_record(t) or _types.is_array(t)) and \
                _images.has_typed_pointers(t):
            setattr(cls, name, _ValueField(field))
        elif _types.is_function(t):
            setattr(cls, name, _CallbackField(field))


# Record and array types whose unions are guarded (guard_unions).
_unions_guarded: "weakref.WeakSet[type]" = weakref.WeakSet()


def guard_unions(t) -> None:
    """Guards the pointer members of every union inside values of type `t` that ffibox's
    metaclass did not make (a class derived from the stdlib's `ctypes.Union`, in a module
    that imports the stdlib): a call leaves the library's words in a union's bytes as they
    are, and ctypes' own getter would dereference a worker address there."""
    if t in _unions_guarded:
        return
    stack, seen = [t], set()
    while stack:
        u = stack.pop()
        if id(u) in seen:
            continue
        seen.add(id(u))
        if _types.is_array(u):
            stack.append(u._type_)
        elif _types.is_record(u):
            if issubclass(u, _ct.Union) and not isinstance(u, UnionType):
                for base in u.__mro__:
                    if "_fields_" in base.__dict__ and issubclass(base, _ct.Union) and \
                            base is not _ct.Union:
                        _check_fields(base, True)
                        # ctypes' metaclass stores attributes past the type's lookup cache.
                        _ct.pythonapi.PyType_Modified(_ct.py_object(base))
            stack.extend(field[1] for field in _types.all_fields(u))
    if not _types.is_record(t) or "_fields_" in t.__dict__:  # else fields may come later
        try:
            _unions_guarded.add(t)
        except TypeError:
            pass


_types.guard_unions = guard_unions


class _ChecksFields:
    """Part of a record metaclass: puts the checks in front of the fields of every class,
    whether `_fields_` is set in the class body or later."""

    _union = False

    def __init__(cls, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _check_fields(cls, type(cls)._union)

    def __setattr__(cls, name: str, value) -> None:
        super().__setattr__(name, value)
        if name == "_fields_":
            _check_fields(cls, type(cls)._union)


class StructType(_ChecksFields, type(_ct.Structure)):
    """ctypes' metaclass of structures, checking the pointer fields of every class."""


class UnionType(_ChecksFields, type(_ct.Union)):
    """ctypes' metaclass of unions, guarding the pointer members of every class."""

    _union = True
