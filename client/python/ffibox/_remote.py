"""Worker memory seen from the client: pointers the library returned, and views of values
that live in the worker (`.contents`, `in_dll`). Every access is a request to the server;
a worker address is never dereferenced in this process."""
import ctypes as _ct
import struct
from typing import Any, Dict, Tuple

from ffibox import _types

_views: Dict[type, type] = {}


def _word(session, address: int, generation: int) -> int:
    return struct.unpack("<Q", session.read(address, 8, generation))[0]


def load(session, t, address: int, generation: int) -> Any:
    """The Python value ctypes gives for a `t` stored at worker `address` (a field, an
    element, a dereferenced pointer)."""
    code = _types.code_of(t)
    if code in ("z", "Z"):
        target = _word(session, address, generation)
        return session.read_string(target, code == "Z", generation) if target else None
    if code == "P":
        return _word(session, address, generation) or None
    if _types.is_pointer(t):
        return RemotePointer(session, _word(session, address, generation), generation, t._type_)
    if _types.is_function(t):
        return session.remote_function(t, _word(session, address, generation), generation)
    if _types.is_fundamental(t):
        return t.from_buffer_copy(session.read(address, _ct.sizeof(t), generation)).value
    return view(session, t, address, generation)


def store(session, t, address: int, generation: int, value: Any) -> None:
    """Writes `value` as a `t` at worker `address`."""
    if isinstance(value, _ct._SimpleCData) and not _types.is_simple(t):
        value = value.value
    if _types.is_fundamental(t) and _types.code_of(t) not in ("z", "Z", "P"):
        data = bytes(value if isinstance(value, t) else t(value))
        session.write(address, data, generation)
        return
    if isinstance(value, (_ct.Structure, _ct.Union, _ct.Array)):
        session.write(address, bytes(value), generation)
        return
    session.write_typed(address, t, value, generation)


def view(session, t, address: int, generation: int):
    """An instance of (a subclass of) `t` whose reads and writes go to worker memory."""
    cls = _views.get(t)
    if cls is None:
        if _types.is_simple(t):
            cls = type(t.__name__, (t,), {"value": property(_simple_get, _simple_set),
                                          "__repr__": _simple_repr})
        elif _types.is_record(t):
            cls = type(t.__name__, (t,), {"__getattribute__": _record_get,
                                          "__setattr__": _record_set,
                                          "_ffibox_fields": {f[0]: f for f in
                                                             _types.all_fields(t)}})
        elif _types.is_array(t):
            cls = type(t.__name__, (t,), {"__getitem__": _array_get, "__setitem__": _array_set})
        else:
            raise TypeError("ffibox: no remote view of %r" % (t,))
        cls._ffibox_base = t
        _views[t] = cls
    instance = cls()
    object.__setattr__(instance, "_ffibox_at", (session, address, generation))
    # The local bytes start as a snapshot of the worker's (bytes(), .raw, memoryview and
    # constructors that copy an instance read them); field, element and value access always
    # goes to the worker. Pointer slots stay NULL: a worker address is never left in caller
    # memory.
    if _types.code_of(t) not in ("z", "Z", "P"):
        from ffibox.errors import Error
        try:
            data = session.read(address, _ct.sizeof(t), generation)
            _ct.memmove(_ct.addressof(instance), data, len(data))
            for offset, _ in _types.pointer_offsets(t):
                _types.word_at(_ct.addressof(instance) + offset).value = None
        except Error:
            pass
    return instance


def _at(obj) -> Tuple[Any, int, int]:
    return object.__getattribute__(obj, "_ffibox_at")


def _simple_get(self):
    session, address, generation = _at(self)
    return load(session, type(self)._ffibox_base, address, generation)


def _simple_set(self, value):
    session, address, generation = _at(self)
    store(session, type(self)._ffibox_base, address, generation, value)


def _simple_repr(self):
    return "%s(%r)" % (type(self).__name__, self.value)


def _record_get(self, name):
    fields = type(self)._ffibox_fields
    if name in fields and len(fields[name]) == 2:
        session, address, generation = _at(self)
        offset = getattr(type(self)._ffibox_base, name).offset
        return load(session, fields[name][1], address + offset, generation)
    if name in fields:  # a bit field: refresh the local copy, let ctypes extract the bits
        session, address, generation = _at(self)
        data = session.read(address, _ct.sizeof(self), generation)
        _ct.memmove(_ct.addressof(self), data, len(data))
    return object.__getattribute__(self, name)


def _record_set(self, name, value):
    fields = type(self)._ffibox_fields
    if name not in fields:
        object.__setattr__(self, name, value)
        return
    session, address, generation = _at(self)
    base = type(self)._ffibox_base
    descriptor = getattr(base, name)
    if len(fields[name]) == 2:
        store(session, fields[name][1], address + descriptor.offset, generation, value)
        return
    data = session.read(address, _ct.sizeof(self), generation)
    _ct.memmove(_ct.addressof(self), data, len(data))
    object.__setattr__(self, name, value)
    session.write(address, _ct.string_at(_ct.addressof(self), _ct.sizeof(self)), generation)


def _index(length: int, index: int) -> int:
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError("invalid index")
    return index


def _array_get(self, index):
    session, address, generation = _at(self)
    t = type(self)._ffibox_base
    if isinstance(index, slice):
        items = [_array_get(self, i) for i in range(*index.indices(t._length_))]
        return b"".join(items) if t._type_ is _ct.c_char else items
    index = _index(t._length_, index)
    return load(session, t._type_, address + index * _ct.sizeof(t._type_), generation)


def _array_set(self, index, value):
    session, address, generation = _at(self)
    t = type(self)._ffibox_base
    index = _index(t._length_, index)
    store(session, t._type_, address + index * _ct.sizeof(t._type_), generation, value)


class RemotePointer:
    """A `POINTER(T)` the library returned: an address in the worker (of one worker
    generation). `.contents`, indexing, `cast` and `string_at` read through the server."""

    def __init__(self, session, address: int, generation: int, type_) -> None:
        self._session = session
        self.address = address
        self.generation = generation
        self._type_ = type_

    def __bool__(self) -> bool:
        return self.address != 0

    def __eq__(self, other) -> bool:
        return (isinstance(other, RemotePointer) and other.address == self.address
                and other.generation == self.generation)

    def __hash__(self) -> int:
        return hash((self.address, self.generation))

    def __repr__(self) -> str:
        return "<ffibox.RemotePointer LP_%s 0x%x (worker generation %d)>" % (
            getattr(self._type_, "__name__", self._type_), self.address, self.generation)

    def _check(self) -> None:
        if not self.address:
            raise ValueError("NULL pointer access")

    @property
    def contents(self):
        """The pointed-to value, as a view whose reads and writes go to the worker."""
        self._check()
        return view(self._session, self._type_, self.address, self.generation)

    def __getitem__(self, index):
        self._check()
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
            if _types.is_simple(self._type_) and _types.code_of(self._type_) not in "zZP" \
                    and len(indexes) > 0:
                # Plain values: one read of the span, not one per element.
                low, high = min(indexes), max(indexes)
                data = self._session.read(self.address + low * size, (high - low + 1) * size,
                                          self.generation)
                span = (self._type_ * (high - low + 1)).from_buffer_copy(data)
                items = [span[i - low] for i in indexes]
            else:
                items = [self[i] for i in indexes]
            if self._type_ is _ct.c_char:
                return b"".join(items)
            return "".join(items) if self._type_ is _ct.c_wchar else items
        return load(self._session, self._type_, self.address + index * size, self.generation)

    def __setitem__(self, index: int, value) -> None:
        self._check()
        size = _ct.sizeof(self._type_)
        store(self._session, self._type_, self.address + index * size, self.generation, value)


_string_pointers: Dict[type, type] = {}


def string_pointer(session, t, address: int, generation: int):
    """A `c_char_p` / `c_wchar_p` (subclass) instance for a worker address: `.value` reads
    the string through the server."""
    cls = _string_pointers.get(t)
    if cls is None:
        wide = _types.code_of(t) == "Z"

        def get(self):
            s, a, g = object.__getattribute__(self, "_ffibox_remote_pointer_at")
            return s.read_string(a, wide, g) if a else None

        cls = type(t.__name__, (t,), {"value": property(get),
                                      "__repr__": lambda self: "%s(%r)" % (t.__name__,
                                                                            self.value)})
        _string_pointers[t] = cls
    instance = cls()
    instance._ffibox_remote_pointer_at = (session, address, generation)
    instance._ffibox_remote_pointer = (address, generation)
    return instance
