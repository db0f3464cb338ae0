"""ctypes types as protocol `Type`s (no I/O: ffibox._layout_check asks the worker).

Local values keep the stdlib ctypes types and their layout (sizeof, alignment, Structure
fields, bit fields, _pack_); this module only describes those types to the server.
"""
import ctypes as _ct
import functools
import threading
from typing import List, Tuple

from ffibox._stubs import pb

SCALAR_BY_CODE = {
    "?": pb.BOOL, "c": pb.CHAR, "b": pb.SCHAR, "B": pb.UCHAR, "h": pb.SHORT, "H": pb.USHORT,
    "i": pb.INT, "I": pb.UINT, "l": pb.LONG, "L": pb.ULONG, "q": pb.LONGLONG,
    "Q": pb.ULONGLONG, "f": pb.FLOAT, "d": pb.DOUBLE, "g": pb.LONGDOUBLE, "u": pb.WCHAR,
    "P": pb.POINTER, "z": pb.CSTRING, "Z": pb.WSTRING,
}
UNSIGNED_CODES = frozenset("BHILQ")
INTEGER_CODES = frozenset("bBhHiIlLqQ")
FLOAT_CODES = frozenset("fdg")

_SimpleType = type(_ct.c_int)
_PointerType = type(_ct.POINTER(_ct.c_int))
_ArrayType = type(_ct.c_int * 1)
_StructType = type(_ct.Structure)
_UnionType = type(_ct.Union)
_FuncType = type(_ct.CFUNCTYPE(None))


_trusted = threading.local()


def local_at(t, address: int):
    """`t.from_address(address)` as the stdlib does it: a local address, always (ffibox.ctypes
    teaches from_address to map worker addresses, and refuses the stdlib's own from_address
    at them; ffibox's own code never wants either)."""
    method = type(t).from_address
    _trusted.local = True
    try:
        return getattr(method, "stdlib", method)(t, address)
    finally:
        _trusted.local = False


def local_at_in_progress() -> bool:
    """Whether this thread is inside local_at (the address is known to be this process's)."""
    return getattr(_trusted, "local", False)


def copy_of(t, data: bytes):
    """`t.from_buffer_copy(data)` as the stdlib does it (ffibox.ctypes gives the copy's
    worker addresses images, which ffibox's own decoding makes itself, for its session)."""
    method = type(t).from_buffer_copy
    return getattr(method, "stdlib", method)(t, data)


def word_at(address: int):
    """The pointer-sized word at local `address`, as a c_void_p aliasing it."""
    return local_at(_ct.c_void_p, address)


def is_simple(t) -> bool:
    return isinstance(t, _SimpleType)


def is_pointer(t) -> bool:
    return isinstance(t, _PointerType)


def is_array(t) -> bool:
    return isinstance(t, _ArrayType)


def is_record(t) -> bool:
    return isinstance(t, (_StructType, _UnionType))


def is_function(t) -> bool:
    return isinstance(t, _FuncType)


def code_of(t) -> str:
    return getattr(t, "_type_", "") if is_simple(t) else ""


def holds_address(t) -> bool:
    """Whether a `t` is an address: a pointer, a function pointer, `void*`, `char*` or
    `wchar_t*`."""
    return is_pointer(t) or is_function(t) or code_of(t) in ("P", "z", "Z")


def is_fundamental(t) -> bool:
    """A simple type whose values ctypes converts to Python values (not a subclass)."""
    return is_simple(t) and t.__bases__[0] is _ct._SimpleCData


def to_proto(t, _depth: int = 0, _open: tuple = ()):
    """The protocol Type of ctypes type `t` (None is VOID); TypeError if it has none.

    A pointer back to a record being described (`struct Node { Node* next; }`) becomes
    `void*`: the proto's types are trees, and the layout is the same."""
    if _depth > 32:
        raise TypeError("ffibox: type nested too deeply")
    if t is None:
        return pb.Type(scalar=pb.VOID)
    if is_simple(t):
        scalar = SCALAR_BY_CODE.get(t._type_)
        if scalar is None:
            raise TypeError("ffibox: ctypes type %s (code %r) cannot cross a process boundary"
                            % (t.__name__, t._type_))
        return pb.Type(scalar=scalar)
    if is_pointer(t):
        # A pointer back to a record being described, or to an incomplete record (an
        # opaque handle: `class Handle(Structure): pass`), is a void* on the wire.
        if t._type_ in _open or is_incomplete(t._type_):
            return pb.Type(scalar=pb.POINTER)
        return pb.Type(pointer=pb.PointerType(pointee=to_proto(t._type_, _depth + 1, _open)))
    if is_array(t):
        return pb.Type(array=pb.ArrayType(element=to_proto(t._type_, _depth + 1, _open),
                                          length=t._length_))
    if is_record(t):
        return pb.Type(record=record_proto(t, _depth, _open + (t,)))
    if is_function(t):
        return pb.Type(function=signature(t._restype_, t._argtypes_ or (), False, _depth + 1,
                                          _open))
    raise TypeError("ffibox: %r is not a ctypes type" % (t,))


def is_incomplete(t) -> bool:
    """A record declared without fields (C's incomplete type): usable only through
    pointers."""
    return is_record(t) and not all_fields(t)


def wire_fields(t) -> List[tuple]:
    """The fields that exist in C: all_fields without members of an incomplete (field-less,
    size 0) record type, which take no room (a placeholder such as SDL_RWops.hidden)."""
    return [f for f in all_fields(t) if not is_incomplete(f[1])]


def all_fields(t) -> List[tuple]:
    """`_fields_` of a record including those inherited from record base classes."""
    fields: List[tuple] = []
    for base in reversed(t.__mro__):
        if is_record(base) and "_fields_" in base.__dict__:
            fields.extend(base.__dict__["_fields_"])
    return fields


def record_proto(t, depth: int = 0, open_records: tuple = ()):
    kind = pb.RecordType.UNION if isinstance(t, _UnionType) else pb.RecordType.STRUCT
    record = pb.RecordType(kind=kind, name=t.__name__, pack=getattr(t, "_pack_", 0) or 0)
    for entry in wire_fields(t):
        field = pb.Field(name=entry[0], type=to_proto(entry[1], depth + 1, open_records))
        if len(entry) > 2:
            field.bit_width = entry[2]
        record.fields.append(field)
    return record


def signature(restype, argtypes, variadic: bool = False, _depth: int = 0, _open: tuple = ()):
    """The protocol Signature; `_depth` and `_open` as for to_proto when the signature is
    part of a type being described (a function pointer field whose parameters point back
    to the record holding it)."""
    sig = pb.Signature(params=[param_proto(a, _depth, _open) for a in argtypes],
                       variadic=variadic)
    if restype is not None:
        sig.result.CopyFrom(param_proto(restype, _depth, _open))
    return sig


def is_py_object(t) -> bool:
    """`py_object` (or a subclass): a Python object, which crosses only as a parameter or
    result, as a token (ffibox._py_objects)."""
    return is_simple(t) and t._type_ == "O"


def holds_py_object(t) -> bool:
    """Whether a `t` holds a py_object (is one, or a record or array with one inside): its
    bytes in the library's memory would be read as a PyObject* of this process."""
    if is_py_object(t):
        return True
    if is_array(t):
        return holds_py_object(t._type_)
    if is_record(t):
        return any(holds_py_object(field[1]) for field in all_fields(t))
    return False


def refuse_py_object_in_library_memory(t) -> None:
    """TypeError when a `t` read from the library's memory would hold a py_object."""
    if holds_py_object(t):
        raise TypeError(
            "ffibox: cannot read a %s from the library's memory: it holds a py_object, and "
            "the library's bytes there are no object of this interpreter (a py_object "
            "crosses only as a parameter or result)" % t.__name__)


def param_proto(t, depth: int = 0, open_records: tuple = ()):
    """to_proto of a parameter's or result's type: a py_object is a token, a pointer-sized
    integer to the worker; anywhere else (a field, an element, a pointee) to_proto refuses
    it."""
    return pb.Type(scalar=pb.ULONGLONG) if is_py_object(t) else to_proto(t, depth, open_records)


def pointer_offsets(t, base: int = 0, unions: bool = True) -> List[Tuple[int, object]]:
    """(offset, pointer type) of every pointer-holding word inside a value of type `t`.
    `unions=False` leaves out the members of unions: which member a union holds is not
    known, so a word there may be a pointer or the bytes of another member."""
    if is_pointer(t) or is_function(t) or code_of(t) in ("P", "z", "Z"):
        return [(base, t)]
    if not unions and isinstance(t, _UnionType):
        return []
    if is_array(t):
        inner = pointer_offsets(t._type_, 0, unions)
        if not inner:
            return []
        size = _ct.sizeof(t._type_)
        return [(base + i * size + off, pt) for i in range(t._length_) for off, pt in inner]
    if is_record(t):
        result = []
        for entry in all_fields(t):
            if len(entry) > 2:
                continue
            result.extend(pointer_offsets(entry[1], base + getattr(t, entry[0]).offset, unions))
        return result
    return []


@functools.lru_cache(maxsize=1024)
def holds_words(t) -> bool:
    """Whether a value of type `t` holds a pointer, or a pointer-sized integer (which may
    stand for an address a call translates): what cannot travel as its bytes alone."""
    if is_pointer(t) or is_function(t) or code_of(t) in ("P", "z", "Z"):
        return True
    if is_array(t):
        return holds_words(t._type_)
    if is_record(t):
        return any(holds_words(entry[1]) for entry in all_fields(t) if len(entry) <= 2)
    return is_simple(t) and _ct.sizeof(t) == 8 and code_of(t) not in FLOAT_CODES


def is_ctypes_type(t) -> bool:
    """A ctypes data type ffibox can describe (simple, pointer, array, record, function)."""
    return is_simple(t) or is_pointer(t) or is_array(t) or is_record(t) or is_function(t)


def guard_unions(t) -> None:
    """Guards the pointer members of the unions inside values of type `t` before a call or
    a result can leave a library's words there (ffibox.ctypes._fields, which replaces this
    function once imported)."""
