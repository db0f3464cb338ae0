"""Python values to protocol Values for one call, and results back to Python values.

The rules are ctypes' (argtypes conversion, inference without argtypes, result conversion).
What a pointer argument reaches in client memory goes into the call's memory blocks
(ffibox._blocks); worker memory a value names goes as its worker address
(ffibox._worker_address).
"""
import ctypes as _ct
import re
import sys
from typing import Optional

from ffibox import (_addresses, _callback_code, _callback_pointers, _memory_owners, _remote,
                    _twins, _types)
from ffibox._blocks import NULL, CallBuilder, block_value, remote_value
from ffibox._remote import RemotePointer
from ffibox._stubs import pb
from ffibox._worker_address import WorkerAddress, address_of
from ffibox.errors import Error

_CArgObject = type(_ct.byref(_ct.c_int()))
_ADDRESS_IN_REPR = re.compile(r"\(0x([0-9a-f]+)\)")


# One exception class for both modules: code catching ctypes.ArgumentError keeps working.
ArgumentError = _ct.ArgumentError


_bytes_address = _twins.bytes_address

# CFUNCTYPE callbacks by the local code address ctypes made for them, while they live: a
# copy of that address (a structure's function pointer field read back) is that callback.
local_callbacks = _callback_code.local_callbacks


# -- arguments -------------------------------------------------------------------------

def infer_type(value):
    """The ctypes type ctypes gives an argument passed without argtypes (None = NULL)."""
    if hasattr(value, "_as_parameter_"):
        return infer_type(value._as_parameter_)
    if isinstance(value, bool) or isinstance(value, int):
        return _ct.c_int
    if isinstance(value, bytes):
        return _ct.c_char_p
    if isinstance(value, str):
        return _ct.c_wchar_p
    if value is None or isinstance(value, (RemotePointer, _CArgObject)) or \
            getattr(type(value), "_ffibox_library_function", False):
        # A library's function (`qsort(..., libc.strcmp)`): its address, as ctypes passes it.
        return _ct.c_void_p
    if isinstance(value, (_ct.Array,)):
        return _ct.POINTER(value._type_)
    if isinstance(value, _ct._SimpleCData.__mro__[1]):
        return type(value)
    raise TypeError("Don't know how to convert parameter")


def as_parameter(value):
    """What ctypes passes for `value`: its `_as_parameter_`, followed as far as it goes (an
    object's may itself have one), unless it is a ctypes instance or a value ctypes converts
    itself (an int, float, bytes or str, even of a subclass with an `_as_parameter_`)."""
    for _ in range(sys.getrecursionlimit()):
        if isinstance(value, (_ct._SimpleCData.__mro__[1], int, float, bytes, str)) or \
                not hasattr(value, "_as_parameter_"):
            return value
        value = value._as_parameter_
    raise RecursionError("maximum recursion depth exceeded while following _as_parameter_")


def encode(t, value, builder: Optional[CallBuilder], session):
    """The Value for argument `value` of declared type `t` (TypeError when ctypes would)."""
    if _types.is_py_object(t):
        # Any object, as ctypes' py_object takes it (its _as_parameter_ unused); without a
        # builder, a callback's result, which native code holds as ctypes' own reference.
        return _encode_py_object(t, value, session, hold=builder is None)
    value = as_parameter(value)
    if _types.is_simple(t):
        return _encode_simple(t, value, builder, session)
    if _types.is_pointer(t) or _types.is_array(t):
        return _encode_pointer(t, value, builder, session)
    if _types.is_record(t):
        if not isinstance(value, t):
            raise TypeError("expected %s instance instead of %s"
                            % (t.__name__, type(value).__name__))
        at = _own_view_address(value, session)
        if at is not None:  # a view of worker memory by value: its current bytes
            return pb.Value(raw=session.memory.read(at.address, _ct.sizeof(t), at.generation))
        if builder is not None and any(
                _types.word_at(_ct.addressof(value) + off).value
                for off, _ in _types.pointer_offsets(t)):
            builder.reach_from(value)
            return _encode_aggregate(t, value, builder, session)
        return pb.Value(raw=bytes(value))
    if _types.is_function(t):
        if (value is not None and not isinstance(value, int) and _types.is_function(type(value))
                and not isinstance(value, t)):
            address = _types.word_at(_ct.addressof(value)).value or 0
            if address and address not in local_callbacks and \
                    _addresses.classify(address)[0] == "local":
                # The stdlib's own callback (numba's cfunc.ctypes), whose names read the same.
                raise TypeError(
                    "expected %s instance instead of %s made by the stdlib's ctypes: its code "
                    "is this process's, which the worker cannot call; make callbacks with "
                    "ffibox.ctypes.CFUNCTYPE (docs/python.md)"
                    % (t.__name__, type(value).__name__))
            raise TypeError("expected %s instance instead of %s"
                            % (t.__name__, type(value).__name__))
        return _encode_function(value, session)
    raise TypeError("ffibox: cannot pass a %r argument" % (t,))


def _encode_aggregate(t, value, builder, session):
    """A record or array holding pointers into client memory, field by field (a union
    through one member: _encode_union)."""
    if isinstance(t, type(_ct.Union)):
        return _encode_union(t, value, builder, session)
    if _types.is_array(t):
        return pb.Value(aggregate=pb.Aggregate(elements=[
            encode_stored(t._type_, value, i * _ct.sizeof(t._type_), builder, session)
            for i in range(t._length_)]))
    elements = []
    for entry in _types.wire_fields(t):
        offset = getattr(t, entry[0]).offset
        if len(entry) > 2:
            elements.append(pb.Value(int_value=getattr(value, entry[0])))
        else:
            elements.append(encode_stored(entry[1], value, offset, builder, session))
    return pb.Value(aggregate=pb.Aggregate(elements=elements))


def _encode_union(t, value, builder, session):
    """A union through one member, the worker zeroing its other bytes. A member may carry it
    when every pointer word in it (outside a nested union, which chooses for itself) is
    NULL or a client pointer, and at least one is a client pointer. Of those, the first
    wide enough for every byte set wins ({char* p; size_t len;} over a lone char*), else
    the widest (the bytes past it are another member's, left over). Without one, or with
    a server that sets only a union's first member, its bytes."""
    address = _ct.addressof(value)
    data = bytes(value)
    used = len(data.rstrip(b"\0"))
    if session is not None and not getattr(session, "union_members", True):
        return pb.Value(raw=data)  # an older server would set the first member whatever
    chosen = None
    for member, entry in enumerate(_types.wire_fields(t)):
        if len(entry) > 2:
            continue  # a bit field holds no pointer
        words = [_types.word_at(address + off).value
                 for off, _ in _types.pointer_offsets(entry[1], unions=False)]
        if not all(builder.knows(word) for word in words if word):
            continue
        if not any(builder.knows(word) for word in (
                _types.word_at(address + off).value
                for off, _ in _types.pointer_offsets(entry[1])) if word):
            continue
        if chosen is None or _ct.sizeof(entry[1]) > _ct.sizeof(chosen[1][1]):
            chosen = (member, entry)
        if _ct.sizeof(entry[1]) >= used:
            break
    if chosen is None:
        return pb.Value(raw=data)
    member, (name, member_type) = chosen[0], chosen[1][:2]
    element = encode_stored(member_type, value, getattr(t, name).offset, builder, session)
    return pb.Value(aggregate=pb.Aggregate(elements=[element], member=member))


def encode_stored(t, owner, offset: int, builder, session):
    """The Value of the `t` stored at `offset` inside local object `owner`."""
    address = _ct.addressof(owner) + offset
    if _types.holds_address(t):
        return builder.local_pointer(_types.word_at(address).value or 0)
    if _types.is_record(t) or _types.is_array(t):
        if not _types.holds_words(t):
            # Nothing to translate: its bytes, which the worker takes as they are (an array
            # of a million ints is 4 MiB, not a million values).
            return pb.Value(raw=_ct.string_at(address, _ct.sizeof(t)))
        return _encode_aggregate(t, _types.local_at(t, address), builder, session)
    return _encode_simple(t, _types.local_at(t, address), builder, session)


def _encode_py_object(t, value, session, hold: bool):
    if session is None:
        raise TypeError("ffibox: a py_object crosses to a library only as an argument or "
                        "result")
    if isinstance(value, t):
        try:
            value = value.value
        except ValueError:  # py_object() holds NULL: passed as NULL
            return pb.Value(uint_value=0)
    return pb.Value(uint_value=session.py_objects.token(value, hold))


def _scalar_value(code: str, number):
    if code == "?":
        return pb.Value(bool_value=bool(number))
    if code in _types.FLOAT_CODES:
        return pb.Value(float_value=number)
    if code in _types.UNSIGNED_CODES:
        return pb.Value(uint_value=number)
    return pb.Value(int_value=number)


def _encode_simple(t, value, builder, session):
    code = t._type_
    if code in ("z", "Z", "P"):
        return _encode_string_or_void(t, code, value, builder, session)
    if isinstance(value, (_ct._SimpleCData,)) and type(value)._type_ == code:
        number = value.value
    else:
        t.from_param(value)  # raises TypeError exactly where ctypes does
        number = t(value).value
    if code == "c":
        return pb.Value(int_value=_ct.c_byte(number[0]).value)
    if code == "u":
        return pb.Value(int_value=ord(number))
    if builder is not None and number and _ct.sizeof(t) == 8 and code not in _types.FLOAT_CODES:
        # A pointer-sized integer inside caller memory a call reached (an address that came
        # back as an integer) goes as that memory's worker address, as results come back.
        mapped = builder.worker_integer(number)
        if mapped is not None:
            number = mapped
    return _scalar_value(code, number)


def _encode_string_or_void(t, code, value, builder, session):
    if value is None:
        return NULL
    if code == "P" and getattr(type(value), "_ffibox_library_function", False):
        at = address_of(value)  # a library's function as a void*: its address
        return remote_value(at.address, at.generation)
    if isinstance(value, RemotePointer):
        _own_view_address(value, session)
        if code != "P" and value._type_ is not None and \
                not _points_to(value._type_, _ct.c_char if code == "z" else _ct.c_wchar):
            raise TypeError("wrong type")  # as c_char_p.from_param, c_wchar_p.from_param
        return _remote_pointer_value(value, builder, session)
    if isinstance(value, int) and not isinstance(value, bool):
        if code != "P" and builder is not None:
            raise TypeError("wrong type")  # c_char_p.from_param takes no address, as ctypes
        mapped = session.images.image_address(value) if value else None
        if mapped is not None:
            # `addressof(out.contents)`, an image of worker memory: that memory, as a pointer
            # into the image passes it.
            return remote_value(*mapped)
        if builder is not None and session.twins.owner_at(value) is not None:
            return builder.local_pointer(value)  # the caller's object (an earlier result)
        if value and _addresses.locally_mapped(value):
            callback = local_callbacks.get(value)
            if callback is not None:
                # A callback's code address as an integer (`cast(callback, c_void_p).value`,
                # as llvmlite's add_symbol takes it): its closure in the worker.
                return _encode_function(callback, session)
            # An address of this process as user data: if the library hands it back, it is
            # the caller's (ffibox._addresses).
            _addresses.note_local_address(value)
            if builder is not None:
                builder.local_integers.append(value)
        return remote_value(value, session.integer_generation(value))
    if isinstance(value, bytes) and code in ("z", "P") and builder is not None:
        return block_value(builder.add_bytes(value))
    if isinstance(value, str) and code in ("Z", "P") and builder is not None:
        return block_value(builder.add_bytes(value.encode("utf-32-le"), b"\0\0\0\0", value))
    if code == "z" and isinstance(value, bytes):
        return pb.Value(bytes_value=value)
    if code == "Z" and isinstance(value, str):
        return pb.Value(text_value=value)
    if isinstance(value, _CArgObject) and builder is not None:
        t.from_param(value)  # c_char_p refuses byref(c_int), as in ctypes
        base = _own_view_address(value._obj, session)
        if base is not None:  # byref of a view of worker memory: that memory, as POINTER(T)
            return remote_value(base.address + byref_target(value)[1], base.generation)
        return _byref_value(value, builder)
    if isinstance(value, _ct._SimpleCData) and type(value)._type_ in ("z", "Z", "P"):
        if code == "P" and t is not _ct.c_void_p and type(value)._type_ == "P":
            # A c_void_p subclass takes no other c_void_p object (ctypes' own check, of the
            # types alone: TypeError "wrong type").
            t.from_param(value)
        at = address_of(value)
        if at is not None and _remote.view_address(value) is None:
            # A c_char_p result bound to the worker's string: that address.
            _of_session(at, value, session)
            return remote_value(at.address, at.generation)
        if type(value)._type_ == "P":
            # cast(local_object, c_void_p) keeps the object in _objects (ffibox's cast also
            # keeps cast bytes): ship what it points into. cast(callback, c_void_p) is that
            # callback's code (its closure in the worker).
            keep = _keep_of(value)
            if builder is not None and keep and local_callbacks.get(value.value or 0) is None:
                return builder.local_pointer_via(value.value or 0, keep)
            return _encode_string_or_void(t, code, value.value, builder, session)
        address = _ct.c_void_p.from_buffer(value).value or 0
        mapped = session.images.worker_address(address) if address else None
        if mapped is not None:
            return remote_value(*mapped)
        if builder is not None and builder.locate(address) is not None:
            return builder.local_pointer(address)
        keep = _keep_of(value)
        if builder is not None and keep is not None and not isinstance(keep, bytes):
            # cast(buffer, c_char_p) keeps the buffer: it is that memory, which the library
            # may write, or return a pointer into, as in ctypes (not a copy of its text).
            builder.reach(keep)
            if builder.locate(address) is not None:
                return builder.local_pointer(address)
        # A c_char_p / c_wchar_p object of the caller: its string travels with the call (a
        # c_char_p made from bytes at the twin of those bytes).
        text = value.value
        if text is None:
            return NULL
        wide = type(value)._type_ == "Z"
        kept = getattr(value, "_objects", None)
        if builder is not None and isinstance(kept, bytes) and address == _bytes_address(kept):
            return block_value(builder.add_bytes(kept))
        if code == "P":
            if builder is None:
                raise TypeError("ffibox: client strings cannot be returned from a callback")
            return block_value(builder.add_bytes(
                text.encode("utf-32-le") if wide else text, b"\0\0\0\0" if wide else b"\0"))
        return pb.Value(text_value=text) if wide else pb.Value(bytes_value=text)
    if builder is not None and isinstance(value, _ct.Array) and (
            code == "P" or value._type_ is {"z": _ct.c_char, "Z": _ct.c_wchar}[code]):
        return builder.pointer_to(value)
    if builder is not None and isinstance(value, _ct._Pointer) and (
            code == "P" or value._type_ is {"z": _ct.c_char, "Z": _ct.c_wchar}[code]):
        return builder.local_pointer_via(_types.word_at(_ct.addressof(value)).value or 0,
                                         _keep_of(value))
    if code == "P" and _types.is_function(type(value)):
        return _encode_function(value, session)
    raise TypeError("wrong type")


def local_string_argument(declared, original, value, builder):
    """What `value`, as a `declared` parameter's from_param made it of `original`, passes:
    for a char* type (c_char_p or a subclass) made the plain address of a Python bytes
    object's text (PyOpenGL's GLcharArray gives it so), those bytes, as passing them would
    (`original` itself when it is those bytes: kept as bytes passed are, else a copy for
    the call); else `value` as it is."""
    if builder is None or _types.code_of(declared) != "z":
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        address = value
    elif type(value) is _ct.c_void_p and _keep_of(value) is None:
        address = value.value or 0
    else:
        return value
    if not address or builder.knows(address):
        return value
    if type(original) is bytes and address == _bytes_address(original):
        return original
    text = _addresses.local_bytes_text(address)
    return value if text is None else text


def _keep_of(value):
    """What a pointer object keeps alive that it may point into: ctypes' own references,
    else those ffibox's cast keeps where ctypes keeps none (cast bytes, a byref's object),
    else the array numpy's `ndarray.ctypes.data_as(...)` keeps on the pointer it makes."""
    keep = getattr(value, "_objects", None) or getattr(value, "_ffibox_keep", None)
    array = getattr(value, "_arr", None)
    if array is not None and hasattr(array, "__array_interface__"):
        return {"numpy": _memory_owners.numpy_memory(array), "kept": keep}
    return keep


def _own_view_address(obj, session):
    """Where `obj` lives in the worker of `session` when it is a view of worker memory (or a
    RemotePointer), else None; ValueError when it is memory of another session's worker,
    which this one cannot reach (the same address there is other memory)."""
    at = address_of(obj) if isinstance(obj, RemotePointer) else _remote.view_address(obj)
    return _of_session(at, obj, session) if at is not None else None


def _of_session(at, obj, session):
    """`at`, the worker address `obj` stands for, when it is in `session`'s worker; else
    ValueError."""
    if at.session is not session:
        raise ValueError("ffibox: %s is memory of another session's worker"
                         % type(obj).__name__)
    return at


def byref_target(value) -> tuple:
    """(object, byte offset) that `byref(object, offset)` made `value` from."""
    obj = value._obj
    match = _ADDRESS_IN_REPR.search(repr(value))
    return obj, int(match.group(1), 16) - _ct.addressof(obj) if match else 0


def _byref_value(value, builder):
    return builder.pointer_to(*byref_target(value))


def _encode_pointer(t, value, builder, session):
    target = t._type_
    value = _remote.held_by_pointer_view(value)
    if value is None:
        return NULL
    if isinstance(value, RemotePointer):
        _own_view_address(value, session)
        if builder is not None and value._type_ is not None and \
                getattr(target, "_type_", None) is value._type_ and _types.is_pointer(target):
            # As ctypes: a POINTER(T) where a POINTER(POINTER(T)) goes is passed by
            # reference, as byref(value): a pointer to its local slot.
            return _byref_value(_ct.byref(value.local_slot()), builder)
        if value._type_ is not None and not _points_to(value._type_, target):
            raise TypeError("expected %s instance instead of %s" % (
                t.__name__, _ct.POINTER(value._type_).__name__))
        return _remote_pointer_value(value, builder, session)
    at = _own_view_address(value, session)
    if at is not None:  # a view of worker memory (.contents, in_dll): its worker address
        t.from_param(value)  # of the declared type, or the TypeError ctypes raises
        return remote_value(at.address, at.generation)
    base = _own_view_address(value._obj, session) if isinstance(value, _CArgObject) else None
    if base is not None:
        t.from_param(value)  # byref of another type: the TypeError ctypes raises
        return remote_value(base.address + byref_target(value)[1], base.generation)
    if builder is None:
        fits = isinstance(value, (_ct._Pointer, _ct.Array)) and _points_to(value._type_, target)
        stored = _stored_twin(value, session) if fits else None
        if stored is not None:
            return stored
        raise TypeError(_UNSTORABLE)
    if isinstance(value, _CArgObject):
        t.from_param(value)  # byref of another type: the TypeError ctypes raises
        return _byref_value(value, builder)
    # As ctypes: bytes for POINTER(c_char), str for POINTER(c_wchar) (NUL-terminated).
    if isinstance(value, bytes) and target is _ct.c_char:
        return block_value(builder.add_bytes(value))
    if isinstance(value, str) and target is _ct.c_wchar:
        return block_value(builder.add_bytes(value.encode("utf-32-le"), b"\0\0\0\0", value))
    if isinstance(value, _ct.Array) and _points_to(value._type_, target):
        return builder.pointer_to(value)
    if isinstance(value, _ct._SimpleCData) and (target, type(value)._type_) in (
            (_ct.c_char, "z"), (_ct.c_wchar, "Z")):
        # As ctypes: a c_char_p / c_wchar_p for POINTER(c_char) / POINTER(c_wchar).
        return _encode_string_or_void(_ct.c_void_p, "P", value, builder, session)
    if isinstance(value, _ct._Pointer) and _points_to(value._type_, target):
        builder.add_object(value)
        return builder.local_pointer_via(_types.word_at(_ct.addressof(value)).value or 0,
                                         getattr(value, "_ffibox_keep", None) or _keep_of(value))
    if isinstance(value, target):
        return builder.pointer_to(value)
    t.from_param(value)  # the TypeError ctypes raises
    raise TypeError("expected %s instance instead of %s" % (t.__name__, type(value).__name__))


# Why a pointer into this process's memory cannot be stored into the library's.
_UNSTORABLE = ("ffibox: a pointer to memory of this process that ffibox cannot give a lasting "
               "copy in the worker cannot be stored into the library's memory (an object "
               "whose class has __slots__ without __weakref__, or memory no ctypes object "
               "holds); pass the object to a call instead")


def _points_to(item, target) -> bool:
    """Whether a pointer to, or an array of, `item` goes where a POINTER(`target`) does: as
    ctypes, when `item` is `target` or a subclass of it."""
    return item is target or (isinstance(item, type) and isinstance(target, type) and
                              issubclass(item, target))


def _remote_pointer_value(value, builder, session):
    """The pointer Value of RemotePointer `value`: the worker address it names, or, when a
    call pointed it at the caller's own object (RemotePointer.local_target), that object:
    shipped with the call, or stored into worker memory as its twin's address, written
    with the object's bytes as they are now (as a pointer to it would be)."""
    local = value.local_target()
    if local is None:
        return remote_value(value.address, value.generation)
    slot, target = local
    word = _ct.c_void_p.from_buffer(slot).value
    if builder is not None:
        return builder.pointer_to(target, word - _ct.addressof(target))
    generation = session.generation
    worker = _callback_pointers.worker_word(session, word, {"0": target}, generation)
    if worker == word:
        raise TypeError(_UNSTORABLE)
    return remote_value(worker, generation)


def _stored_twin(value, session):
    """A local array, or a pointer into one, stored into worker memory outside a call (a
    callback's `out[0] = cast(buffer, POINTER(T))` through a pointer to the library's
    memory, which the library reads once the callback returns): the pointer Value of its
    object's twin in the worker, written with the object's bytes as they are now
    (ffibox._callback_pointers.worker_word), or None. Into an image of worker memory (a
    pointer the library handed back, stored for it again): that worker address."""
    if isinstance(value, _ct._Pointer):
        word = _ct.c_void_p.from_buffer(value).value or 0
    elif isinstance(value, _ct.Array):
        word = _ct.addressof(value)
    else:
        return None
    mapped = session.images.image_address(word) if word else None
    if mapped is not None:
        return remote_value(*mapped)
    generation = session.generation
    worker = _callback_pointers.worker_word(session, word, {"0": value}, generation)
    return None if worker == word else remote_value(worker, generation)


def _encode_function(value, session):
    value = _remote.held_by_pointer_view(value)
    if value is None:
        return NULL
    at = address_of(value) if _types.is_function(type(value)) or getattr(
        type(value), "_ffibox_library_function", False) else None
    if at is not None:  # a function of the worker
        return remote_value(at.address, at.generation)
    original = getattr(value, "_ffibox_cast_of", None)
    if original is not None:  # cast(callback, OTHER_PROTOTYPE): still that callback
        return _encode_function(original, session)
    if _types.is_function(type(value)) and getattr(value, "_ffibox_callable", None) is None \
            and not value:
        return NULL  # PROTOTYPE(): a NULL function pointer (how bindings unset callbacks)
    if getattr(value, "_ffibox_callable", None) is not None:
        return pb.Value(pointer=pb.PointerValue(callback=session.callback_id(value)))
    if isinstance(value, int):
        return remote_value(value, session.generation)
    if _types.is_function(type(value)):
        # Made by ctypes from bytes (a structure's function pointer field): the callback
        # whose local code address it holds, or a function of the worker.
        address = _types.word_at(_ct.addressof(value)).value or 0
        callback = local_callbacks.get(address)
        if callback is not None:
            return _encode_function(callback, session)
        if address and _addresses.classify(address)[0] != "local":
            return remote_value(address, session.generation)
        if address:
            raise TypeError(
                "%s holds code of this process (a callback made by the stdlib's ctypes, or a "
                "local function's address), which the worker cannot call: make callbacks with "
                "ffibox.ctypes.CFUNCTYPE (docs/python.md)" % type(value).__name__)
    raise TypeError("expected a CFUNCTYPE callback instead of %s" % type(value).__name__)


# -- results ---------------------------------------------------------------------------

def void_pointer(address: int, session, generation: int) -> Optional[int]:
    """The c_void_p result for worker address `address`: into caller memory a call reached,
    the caller's own address, as with ctypes; the closure of one of the session's callbacks,
    that callback's own; elsewhere the worker's, remembered as such."""
    twin = session.twins.local(address, generation) if address else None
    if twin is not None:
        return twin[1]
    function = session.local_function_at(address, generation) if address else None
    if function is not None:
        return function  # a callback handed to the library as a plain pointer, handed back
    _addresses.note_worker_address(address)
    if address:
        session.remember_handed(address, generation)
    return address or None


# The value kinds a result (or a callback's argument) of each simple type may come as,
# beyond `raw` of the type's own size (docs/protocol.md, "Values"); anything else is refused,
# as what the worker sends is not trusted.
_NUMBERS = frozenset(("int_value", "uint_value", "bool_value"))
_KINDS_OF_CODE = {"z": frozenset(("pointer", "bytes_value")),
                  "Z": frozenset(("pointer", "text_value")),
                  "P": frozenset(("pointer",)),
                  "c": _NUMBERS | {"bytes_value"}}
_FLOAT_KINDS = frozenset(("float_value", "int_value", "uint_value"))


def _unexpected(t, kind) -> Error:
    return Error("INTERNAL: the server returned %s where a %s was expected"
                 % (kind or "no value", t.__name__), "INTERNAL")


def _checked_scalar(t, code: str, kind, value):
    """The number a value of simple type `t` carries, once its kind and range fit `t`."""
    if kind == "raw":
        if len(value.raw) != _ct.sizeof(t):
            raise _unexpected(t, "%d raw bytes" % len(value.raw))
        return None
    allowed = _KINDS_OF_CODE.get(code) or (_FLOAT_KINDS if code in _types.FLOAT_CODES
                                           else _NUMBERS)
    if kind not in allowed:
        raise _unexpected(t, kind)
    if kind == "pointer" and value.pointer.WhichOneof("target") not in ("null", "remote"):
        raise _unexpected(t, "a pointer to %s" % value.pointer.WhichOneof("target"))
    if code in ("z", "Z", "P") or code in _types.FLOAT_CODES:
        return None
    number = getattr(value, kind)
    if kind == "bytes_value":
        if len(number) != 1:
            raise _unexpected(t, "%d bytes" % len(number))
        return number
    bits = 8 * _ct.sizeof(t)
    if code == "u":
        low, high = 0, 0x10FFFF
    elif code in _types.UNSIGNED_CODES or code in ("?", "c", "O"):
        low, high = (-(1 << (bits - 1)) if code == "c" else 0), (1 << bits) - 1
    else:
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not low <= int(number) <= high:
        raise _unexpected(t, "%s %d" % (kind, number))
    return number


_SIMPLE_VALUE = _ct._SimpleCData.__dict__["value"]


def result_instance(t, value):
    """An instance of `t`, a subclass of a simple type, holding `value` (None: NULL, for the
    pointer types), made as ctypes makes a result: without calling the subclass's
    `__init__` or `value` setter (python3-clang's c_interop_string makes None a "")."""
    instance = t.__new__(t)
    if value is not None:
        _SIMPLE_VALUE.__set__(instance, value)
    return instance


def decode(t, value, session, generation: int):
    """The Python object ctypes returns for a result (or callback argument) of type `t`."""
    if t is None:
        return None
    kind = value.WhichOneof("kind")
    if _types.is_simple(t):
        code = t._type_
        _checked_scalar(t, code, kind, value)
        if code == "O":
            # A token this session handed out (ffibox._py_objects): its object.
            token = int.from_bytes(value.raw, "little") if kind == "raw" else \
                int(getattr(value, kind) if kind else 0)
            if not token and not _types.is_fundamental(t):
                return result_instance(t, None)  # a subclass's result holds NULL
            result = session.py_objects.object(token & (1 << 64) - 1)
        elif code in ("z", "Z", "P"):
            if kind == "pointer":
                address = value.pointer.remote.address if value.pointer.HasField(
                    "remote") else 0
                if code in ("z", "Z") and address and not _types.is_fundamental(t):
                    # A c_char_p subclass result stays bound to the worker's string (.value
                    # reads it), so passing it back (to a free function) passes that address.
                    return _remote.string_pointer(t, WorkerAddress(session, address, generation))
                if code == "P":
                    result = void_pointer(address, session, generation)
                elif address:
                    # as_is: images were written back before the call
                    result = session.memory.read_string(address, code == "Z", generation,
                                                        as_is=True)
                else:
                    result = None
            else:
                result = value.bytes_value if code == "z" else value.text_value
        elif kind == "raw":
            result = t.from_buffer_copy(value.raw).value
        else:
            number = getattr(value, kind) if kind else 0
            if code == "c":
                result = bytes([number & 0xFF]) if isinstance(number, int) else number
            elif code == "u":
                result = chr(number)
            elif code == "?":
                result = bool(number)
            else:
                result = number
                if _ct.sizeof(t) == 8 and code not in _types.FLOAT_CODES and number:
                    # A pointer-sized integer inside caller memory a call reached is that
                    # memory's address (code that returns addresses as c_long / c_size_t).
                    twin = session.twins.local(number & (1 << 64) - 1, generation)
                    if twin is not None:
                        result = twin[1]
                if result is number and code not in _types.FLOAT_CODES:
                    # In this process's executable or heap, it is the worker's handle.
                    _addresses.note_worker_integer(number)
        return result if _types.is_fundamental(t) else result_instance(t, result)
    if _types.is_pointer(t) or _types.is_function(t):
        if kind != "pointer" or value.pointer.WhichOneof("target") not in ("null", "remote"):
            raise _unexpected(t, kind if kind != "pointer" else
                              "a pointer to %s" % value.pointer.WhichOneof("target"))
    elif (_types.is_record(t) or _types.is_array(t)) and (
            kind != "raw" or len(value.raw) != _ct.sizeof(t)):
        raise _unexpected(t, kind if kind != "raw" else "%d raw bytes" % len(value.raw))
    if _types.is_pointer(t):
        address = value.pointer.remote.address if value.pointer.HasField("remote") else 0
        generation = value.pointer.remote.generation or generation
        twin = session.twins.local(address, generation) if address else None
        if twin is not None:  # into caller memory a call reached: the caller's own object
            return _twins.pointer_into(t, twin)
        return RemotePointer(session, address, generation, t._type_)
    if _types.is_record(t) or _types.is_array(t):
        # A record or array by value holds worker addresses in its pointer fields: images.
        result = _types.copy_of(t, value.raw)
        session.images.convert_slots(result, generation)
        _types.guard_unions(t)
        return result
    if _types.is_function(t):
        address = value.pointer.remote.address if value.pointer.HasField("remote") else 0
        return _remote.function_pointer(t, WorkerAddress(session, address, generation))
    raise TypeError("ffibox: cannot decode a %r" % (t,))
