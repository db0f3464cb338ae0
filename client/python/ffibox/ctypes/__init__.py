"""`from ffibox import ctypes`: the stdlib ctypes API, with libraries in a jailed worker.

Data types are the stdlib's own (c_int, Structure, arrays, POINTER, byref, sizeof, ...), so
local values behave exactly as in ctypes. What touches a library goes through ffibox: CDLL
and its functions, CFUNCTYPE callbacks, in_dll, and cast / string_at / wstring_at / memmove /
memset on pointers the library returned (worker addresses are never dereferenced here).
Plain integers used as addresses are read as ffibox._addresses says (the caller's object, the
worker's memory or this process's). docs/python.md lists what differs.
"""
import ctypes as _ct
import operator
import struct
import sys
import threading
from ctypes import (  # the stdlib data types are ffibox's data types
    ARRAY, ArgumentError, Array, BigEndianStructure, LittleEndianStructure, SetPointerType,
    alignment, c_bool, c_buffer, c_byte, c_char, c_char_p,
    c_double, c_float, c_int, c_int8, c_int16, c_int32, c_int64, c_long, c_longdouble,
    c_longlong, c_short, c_size_t, c_ssize_t, c_ubyte, c_uint, c_uint8, c_uint16, c_uint32,
    c_uint64, c_ulong, c_ulonglong, c_ushort, c_void_p, c_voidp, c_wchar, c_wchar_p,
    create_string_buffer, create_unicode_buffer, resize)
from ctypes import RTLD_GLOBAL, RTLD_LOCAL, DEFAULT_MODE
# Names real bindings import. A py_object parameter or result is a token to the library
# (ffibox._py_objects); a py_object field or pointee cannot cross (TypeError).
from ctypes import BigEndianUnion, LittleEndianUnion, py_object
from typing import Any, Optional

from ffibox import (_addresses, _callback_pointers, _images, _library, _marshal, _memory,
                    _memory_owners, _py_objects, _remote, _slots, _twins, _types,
                    _worker_address)
from ffibox._image_reach import INDEX as _IMAGES
from ffibox._default import default_session as _default_session
from ffibox._default import opened_session as _opened_session
from ffibox._functions import CFUNCTYPE, PYFUNCTYPE, get_errno, set_errno
from ffibox._library import CDLL as _CDLL
from ffibox._library import LibraryLoader
from ffibox._remote import RemotePointer
from ffibox._worker_address import WorkerAddress, address_of
from ffibox.ctypes import _fields, _metatypes, _pointers
from ffibox.ctypes._pointers import POINTER

__version__ = _ct.__version__
# The stdlib's private names real bindings import too (`from ctypes import _Pointer`).
_CFuncPtr = _ct._CFuncPtr
_FUNCFLAG_CDECL = _ct._FUNCFLAG_CDECL
_FUNCFLAG_PYTHONAPI = _ct._FUNCFLAG_PYTHONAPI
_FUNCFLAG_USE_ERRNO = _ct._FUNCFLAG_USE_ERRNO
_FUNCFLAG_USE_LASTERROR = _ct._FUNCFLAG_USE_LASTERROR
_Pointer = _ct._Pointer
_SimpleCData = _ct._SimpleCData
_pointer_type_cache = _ct._pointer_type_cache

# What `from ffibox.ctypes import *` gives: the stdlib's names and ffibox's own.
__all__ = [
    "ARRAY", "ArgumentError", "Array", "BigEndianStructure", "BigEndianUnion", "CDLL",
    "CFUNCTYPE", "DEFAULT_MODE", "PYFUNCTYPE", "LibraryLoader", "LittleEndianStructure", "LittleEndianUnion",
    "LoadLibrary", "POINTER", "RTLD_GLOBAL", "RTLD_LOCAL", "RemotePointer", "SetPointerType",
    "Structure", "Union", "addressof", "alignment", "byref", "c_bool", "c_buffer", "c_byte",
    "c_char", "c_char_p", "c_double", "c_float", "c_int", "c_int16", "c_int32", "c_int64",
    "c_int8", "c_long", "c_longdouble", "c_longlong", "c_short", "c_size_t", "c_ssize_t",
    "c_ubyte", "c_uint", "c_uint16", "c_uint32", "c_uint64", "c_uint8", "c_ulong",
    "c_ulonglong", "c_ushort", "c_void_p", "c_voidp", "c_wchar", "c_wchar_p", "cast", "cdll",
    "create_string_buffer", "create_unicode_buffer", "from_address", "get_errno", "in_dll",
    "memmove", "memset", "pointer", "py_object", "pythonapi", "resize", "scratch_directory", "set_errno",
    "sizeof", "string_at", "wstring_at",
]

# Names newer stdlibs have (3.12's c_time_t and SIZEOF_TIME_T), where they have them.
for _name in ("c_time_t", "SIZEOF_TIME_T"):
    if hasattr(_ct, _name):
        globals()[_name] = getattr(_ct, _name)
        __all__.append(_name)


def scratch_directory() -> Optional[str]:
    """The default session's scratch directory: a writable directory the library sees at
    the same path (put input files there, read what the library writes), removed when the
    process ends. None unless FFIBOX_SCRATCH=1 was set before the first ffibox call (and the
    server has a scratch root: the private server always does)."""
    return _default_session().scratch_directory


class CDLL(_CDLL):
    """ctypes.CDLL: the library is loaded in the default session's worker."""


LoadLibrary = CDLL
cdll = LibraryLoader(CDLL)


def in_dll(t, library, name: str):
    """`t.in_dll(library, name)`: a view of the library's variable; reads and writes go to
    the worker."""
    if isinstance(library, _PythonApi):
        raise NotImplementedError(
            "ffibox.ctypes: %s.in_dll(pythonapi, %r): the Python C API's variables are this "
            "process's, which ffibox.ctypes does not reach; read them through the stdlib "
            "ctypes (a module that needs them, such as numba, must keep the stdlib ctypes: "
            "do not swap ffibox.ctypes in for it in sys.modules)" % (t.__name__, name))
    if not isinstance(library, _CDLL):
        method = type(t).in_dll  # the stdlib's (an array type's is this, _metatypes)
        return getattr(method, "stdlib", method)(t, library, name)
    try:
        address = library.address_of(name)
    except AttributeError as error:
        raise ValueError(str(error)) from None  # as ctypes says it
    view = _remote.view(t, address)
    # Looked up again after its worker died (_worker_address.address_of); not an array whose
    # local bytes are an image of the worker's (numpy over it would keep the dead worker's).
    if not _remote.mirrored(t):
        _worker_address.set_address(view, _worker_address.VariableAddress(
            address.session, address.address, address.generation, library, name))
    return view


def addressof(obj) -> int:
    """ctypes.addressof. For a view of worker memory (`.contents` of a RemotePointer,
    `in_dll`) it is the worker address, so address arithmetic on it (`from_address`,
    `cast`, `memmove`) reaches the worker's memory, not the view's local snapshot."""
    at = _remote.view_address(obj)
    if at is not None:
        _addresses.note_worker_address(at.address)
        return at.address
    address = _ct.addressof(obj)
    # The caller's memory, shown: an integer in it is this process's (ffibox._addresses).
    _addresses.note_local_object(address, _ct.sizeof(obj))
    return address


def byref(obj, offset: int = 0):
    """ctypes.byref. Of a RemotePointer (a `POINTER(T)` the library returned), a reference
    to a local `POINTER(T)` holding its worker address: what the library stores through it
    (`destroy(&p)` setting it to NULL, `create(&p)`) is what the RemotePointer then holds."""
    if isinstance(obj, RemotePointer):
        return _ct.byref(obj.local_slot(), offset)
    return _ct.byref(obj, offset)


def pointer(obj):
    """ctypes.pointer. Of a view of worker memory (`in_dll`, `.contents` of a
    RemotePointer), a RemotePointer to where it lives: reads and writes through it reach
    the worker's value, not the view's local snapshot. Of a RemotePointer, a pointer to a
    local `POINTER(T)` holding its worker address (as `byref`)."""
    if isinstance(obj, RemotePointer):
        result = _ct.pointer(obj.local_slot())
        _pointers.guard(type(result))
        return result
    at = _remote.view_address(obj)
    if at is not None:
        return RemotePointer(at.session, at.address, at.generation, type(obj)._ffibox_base)
    result = _ct.pointer(obj)
    _pointers.guard(type(result))
    return result


def sizeof(obj_or_type) -> int:
    """ctypes.sizeof; a RemotePointer is a pointer."""
    if isinstance(obj_or_type, RemotePointer):
        return _ct.sizeof(c_void_p)
    return _ct.sizeof(obj_or_type)


def from_address(t, address: int):
    """`t.from_address(address)`, with the address read as ffibox._addresses says: the
    caller's own object for an address inside a worker twin, a view whose reads and writes
    go to the worker for a worker address, the stdlib's object for this process's memory.
    A worker address with no session to read it raises ValueError."""
    kind, owner, address = _addresses.classify(operator.index(address), sizeof(t))
    if kind == "twin":
        obj = _types.local_at(t, address)
        obj.__dict__["_ffibox_twin_owner"] = owner  # the object's memory stays alive
        return obj
    if kind == "local":
        at = _worker_past_image(address, sizeof(t))
        if at is None:
            return _types.local_at(t, address)
        return _remote.view(t, at)
    session = _opened_session()  # integers name the default session's worker, as in cast()
    if session is None:
        raise ValueError("from_address: 0x%x is not an address of this process, and no ffibox "
                         "session has a worker it could belong to" % address)
    return _remote.view(t, WorkerAddress(session, address, session.generation))


def _worker_past_image(address: int, size: int) -> Optional[WorkerAddress]:
    """For `size` bytes at local `address` inside an image (ffibox._images) that does not
    hold them all (the first elements of a library's array, a placeholder of memory the
    worker could not read): the worker memory they stand for, which an object that size
    must be a view of (the image's bytes end where this process's heap goes on). None for
    any other local memory."""
    reach = None if _IMAGES.in_no_image(address) else _IMAGES.holding(address)
    if reach is None or (not reach.image.unreadable and
                         size <= reach.local_bytes - reach.offset):
        return None
    return WorkerAddress(reach.session, reach.image.worker + reach.offset,
                         reach.image.generation)


def _refuse_stdlib_objects_at_worker_addresses() -> None:
    # The stdlib's own from_address (that of array and pointer types, which ffibox cannot
    # hook, and of classes made from the stdlib's bases) makes an object over any integer: at
    # a worker's address it would read this process's memory there, or crash this process.
    # Every such object is announced by the "ctypes.cdata" audit event before it exists (a
    # from_buffer's right after a "ctypes.cdata/buffer" event for the same local address),
    # and an audit hook that raises stops it: the caller gets an exception, never a crash.
    state = threading.local()

    def hook(event: str, args: tuple) -> None:
        if event == "ctypes.cdata/buffer":
            state.buffer = args[0] + args[2]
            return
        if event != "ctypes.cdata":
            return
        address = args[0]
        if getattr(state, "buffer", None) == address:
            state.buffer = None
            return
        try:
            if _types.local_at_in_progress() or \
                    _addresses.classify(address)[0] == "local":
                return
        except Exception:  # ffibox torn down at exit: the stdlib's behaviour
            return
        raise ValueError("from_address: 0x%x is not memory of this process (an address in "
                         "the library's worker, or none at all); ffibox.ctypes.from_address("
                         "TYPE, address) gives a view of worker memory" % address)

    sys.addaudithook(hook)


_refuse_stdlib_objects_at_worker_addresses()


def _install_in_dll(t) -> None:
    # Data types are the stdlib's, so `c_int.in_dll(lib, ...)` looks the method up on them:
    # this classmethod serves ffibox libraries and hands every other library to ctypes.
    # from_address likewise maps worker addresses and leaves this process's alone.
    if "in_dll" not in t.__dict__:
        t.in_dll = classmethod(in_dll)
    if "from_address" not in t.__dict__:
        t.from_address = classmethod(from_address)


def _from_buffer(t, *args):
    if t in (Structure, Union):
        raise TypeError("abstract class")
    return type(t).from_buffer(t, *args)


def _from_buffer_copy(t, *args):
    if t in (Structure, Union):
        raise TypeError("abstract class")
    return type(t).from_buffer_copy(t, *args)  # images worker words (_metatypes)


class Structure(_ct.Structure, metaclass=_fields.StructType):
    """ctypes.Structure (ffibox's adds `in_dll` for ffibox libraries, maps worker
    addresses in `from_address`, and checks its pointer fields as ffibox.ctypes._fields
    says)."""

    in_dll = classmethod(in_dll)
    from_address = classmethod(from_address)
    # ctypes' own bases are abstract: no instances from buffers.
    from_buffer = classmethod(_from_buffer)
    from_buffer_copy = classmethod(_from_buffer_copy)


class Union(_ct.Union, metaclass=_fields.UnionType):
    """ctypes.Union (ffibox's adds `in_dll` for ffibox libraries, maps worker addresses
    in `from_address`, and reads its pointer members as ffibox.ctypes._fields says)."""

    in_dll = classmethod(in_dll)
    from_address = classmethod(from_address)
    # ctypes' own bases are abstract: no instances from buffers.
    from_buffer = classmethod(_from_buffer)
    from_buffer_copy = classmethod(_from_buffer_copy)


def _install_string_value(t, wide: bool) -> None:
    # `c_char_p(address).value` reads the string at an integer address: on the side the
    # address belongs to (ffibox._addresses), never the caller's memory at a worker address.
    stdlib = _ct._SimpleCData.value

    def get(self):
        address = _types.word_at(_ct.addressof(self)).value
        if address:
            kind, _, local = _addresses.classify(address)
            if kind == "twin":
                return _ct.wstring_at(local) if wide else _ct.string_at(local)
            if kind == "worker":
                session = _opened_session()
                if session is None:
                    raise ValueError("%s: 0x%x is not an address of this process, and no "
                                     "ffibox session has a worker it could belong to"
                                     % (t.__name__, address))
                return session.memory.read_string(address, wide, session.generation)
            at = _worker_past_image(address, 1)  # a placeholder of unreadable memory
            if at is not None:
                return at.session.memory.read_string(at.address, wide, at.generation)
        return stdlib.__get__(self)

    if "value" not in t.__dict__:
        t.value = property(get, stdlib.__set__, doc=stdlib.__doc__)


_install_string_value(c_char_p, False)
_install_string_value(c_wchar_p, True)

_metatypes.install(from_address, in_dll)
_library.install_dl_functions()
_pointers.guard_existing()

for _t in (c_bool, c_byte, c_char, c_char_p, c_double, c_float, c_int, c_long, c_longdouble,
           c_longlong, c_short, c_ubyte, c_uint, c_ulong, c_ulonglong, c_ushort, c_void_p,
           c_wchar, c_wchar_p):
    _install_in_dll(_t)


def _remote_address(obj, size: int = 1, strict: bool = False) -> Optional[WorkerAddress]:
    """The worker memory `obj` stands for as a pointer, when it is the worker's: what a
    RemotePointer, a c_char_p bound to a worker string or a worker function points to,
    where a view lives (what it holds, for a view of a pointer), a worker address as an
    integer or c_void_p (of the default session), what `byref` of a view points to. `size`:
    the bytes to be used there (an integer past the end of the caller's object it lies in is
    the worker's); `strict`: for ffibox.ctypes' own memory functions (ffibox._addresses)."""
    if isinstance(obj, int) and not isinstance(obj, bool) or (
            isinstance(obj, c_void_p) and address_of(obj) is None):
        address = obj if isinstance(obj, int) else obj.value or 0
        if address and _addresses.classify(address, max(size, 1), strict)[0] != "worker":
            return None  # this process's memory (_local_form maps twins)
        session = _default_session()
        return WorkerAddress(session, address, session.generation)
    if isinstance(obj, _marshal._CArgObject):  # byref(view, offset): where it points
        target, offset = _marshal.byref_target(obj)
        at = _remote.view_address(target)
        return None if at is None else at + offset
    at = address_of(obj)
    if at is not None and _remote.view_address(obj) is not None and \
            _types.holds_address(type(obj)._ffibox_base):  # a pointer variable: what it holds
        return WorkerAddress(at.session, _remote.read_word(at), at.generation)
    return at


def _local_form(obj):
    """An integer (or plain c_void_p) inside a worker twin, as the caller's own address;
    anything else unchanged."""
    if type(obj) is c_void_p:
        address = obj.value or 0
    elif isinstance(obj, int) and not isinstance(obj, bool):
        address = obj
    else:
        return obj
    kind, owner, local = _addresses.classify(address)
    if kind != "twin":
        return obj
    return local if isinstance(obj, int) else c_void_p(local)


def _in_an_image(obj) -> bool:
    """Whether what `obj` names (a pointer's target, an integer or c_void_p address, a byref's
    object, an object) lies in an image of the library's memory (ffibox._images)."""
    if isinstance(obj, bool):
        return False
    if isinstance(obj, int):
        word = obj
    elif isinstance(obj, _ct.c_void_p):
        word = obj.value
    elif isinstance(obj, _ct._Pointer):
        word = _ct.cast(obj, _ct.c_void_p).value
    elif isinstance(obj, _marshal._CArgObject):
        word = _ct.addressof(obj._obj)
    elif isinstance(obj, (_ct.Structure, _ct.Union, _ct.Array, _ct._SimpleCData)):
        word = _ct.addressof(obj)
    else:
        return False
    return bool(word) and _IMAGES.holding(word) is not None


def cast(obj, typ):
    """ctypes.cast. Local objects are cast locally; pointers into the worker (RemotePointer,
    integers, c_void_p values) give RemotePointers or values read through the server. A
    `py_object` token (user data a callback got as a `void*`) gives its object."""
    if _types.is_py_object(typ):
        word = obj if isinstance(obj, int) and not isinstance(obj, bool) else (
            obj.value if isinstance(obj, c_void_p) else None)
        found = _py_objects.find(word) if word else None
        if found is not None:
            return typ(found[0]) if _types.is_fundamental(typ) else \
                _marshal.result_instance(typ, found[0])
    array = _memory_owners.numpy_array_of(obj)
    obj = _local_form(obj)
    if isinstance(obj, RemotePointer) and obj.local_target() is not None:
        obj = obj.local_target()[0]  # pointed at the caller's object: cast as its pointer
    at = _remote_address(obj)
    base = getattr(type(obj), "_ffibox_base", None)
    if at is not None and base is not None and _remote.view_address(obj) is not None and \
            not (_types.holds_address(base) or _types.is_array(base)) and \
            not hasattr(obj, "_as_parameter_"):
        # A record or a number of the worker's, as ctypes refuses a local one.
        raise ArgumentError("argument 1: TypeError: wrong type")
    if _types.is_pointer(typ) and (at is not None or _in_an_image(obj)):
        _types.refuse_py_object_in_library_memory(typ._type_)
    if at is None:
        result = _ct.cast(obj, typ)
        if isinstance(obj, _ct._SimpleCData.__mro__[1]) and not _types.is_pointer(type(obj)):
            # Its memory, shown as an address (`cast(buffer, c_void_p).value`): an integer in
            # it is this process's (ffibox._addresses).
            owner = _twins.owner_of(obj)
            _addresses.note_local_object(_ct.addressof(owner), _ct.sizeof(owner))
        if array is not None:
            # A numpy array's `arr.ctypes` (gmsh's cast of it): the array, as the pointer
            # its data_as makes holds it (ffibox._marshal._keep_of), and met, should the
            # pointer lose that hold (stored in an array of pointers).
            result._arr = array
            try:
                _memory_owners.numpy_memory(array)
            except TypeError:
                pass  # not contiguous, nor a view of such an array: passed, it is refused
        elif isinstance(obj, bytes):
            # ctypes keeps no reference to cast bytes; ffibox needs one to ship them, also
            # from a structure the pointer is stored in (`stream.next_in = cast(data, ...)`).
            result._ffibox_keep = {"bytes": obj}
            _images.keep_with_copies(result, 0, obj)
        elif isinstance(obj, _marshal._CArgObject) and _types.code_of(typ) in ("z", "Z", "P"):
            # A c_char_p (c_wchar_p, c_void_p) has no keep-alive references of its own that
            # ctypes hands on to the fields it is stored in (distorm3: `info.code =
            # cast(byref(buf, offset), c_char_p)`): made through a POINTER, whose references
            # ctypes carries into the cast, the byref's object follows it there.
            return cast(cast(obj, POINTER(c_char)), typ)
        elif isinstance(obj, _marshal._CArgObject):
            # Nor to the object of a byref (`cast(byref(array, 4), POINTER(c_int))`): ffibox
            # ships that object's memory where the pointer points.
            result._ffibox_keep = {"byref": obj._obj}
            _images.keep_with_copies(result, 0, obj._obj)  # also once stored in a field
        elif getattr(obj, "_b_base_", None) is not None and result._objects is None:
            # Nor to a view (a field, an element, a pointer's contents: `cast(s.buf,
            # POINTER(c_char))`): ctypes keeps no reference to it. ffibox ships the memory it
            # lies in, also from a structure the pointer is stored in.
            result._ffibox_keep = {"view": obj}
            _images.keep_with_copies(result, 0, obj)
        if getattr(obj, "_ffibox_callable", None) is not None or getattr(
                obj, "_ffibox_cast_of", None) is not None:
            # A callback cast to another prototype is still that callback for the library.
            result._ffibox_cast_of = getattr(obj, "_ffibox_cast_of", None) or obj
        return result
    if _types.is_pointer(typ):
        return RemotePointer(at.session, at.address, at.generation, typ._type_)
    if _types.is_function(typ):
        return _remote.function_pointer(typ, at)
    if _types.code_of(typ) == "P":
        return typ(at.address or None)
    if _types.code_of(typ) in ("z", "Z"):
        return _remote.string_pointer(typ, at)
    raise TypeError("cast() argument 2 must be a pointer type, not %s" % typ.__name__)


_WORD = struct.Struct("P")


def _range_beyond_image(obj, count: Optional[int], unit: int = 1):
    """When `obj` (a pointer object, a ctypes object, a `byref`, or an address as an integer)
    points into an image of worker memory (ffibox._images) and `count` bytes from there
    (None: a string of `unit`-byte characters, up to its NUL) run past the image's bytes:
    (the local address, how many of the bytes are the image's, the worker address the
    pointer names). Those bytes are the worker's: C would read on in the library's memory. A
    ctypes object or a `byref` of one counts where it lies (`byref(p.contents)` lies in an
    image). None otherwise."""
    if isinstance(obj, int) and not isinstance(obj, bool):
        address = obj
    elif isinstance(obj, RemotePointer):
        return None  # the worker's memory, not an image's
    elif isinstance(obj, (_ct._Pointer, c_void_p, c_char_p, c_wchar_p)):
        address = _WORD.unpack_from(obj)[0]
    elif isinstance(obj, _marshal._CArgObject):  # byref(p.contents, offset): where it points
        if _IMAGES.in_no_image(_ct.addressof(obj._obj)):
            return None
        target, offset = _marshal.byref_target(obj)
        address = _ct.addressof(target) + offset
    elif isinstance(obj, _ct._SimpleCData.__mro__[1]):  # an object at an image (a view)
        address = _ct.addressof(obj)
    else:
        return None
    reach = _IMAGES.holding(address) if address else None
    if reach is None:
        return None
    local = max(reach.local_bytes - reach.offset, 0)
    if count is None:
        text = memoryview(_ct.string_at(address, local - local % unit))
        if 0 in (text if unit == 1 else text.cast("I")):
            return None  # the string ends inside the image
    elif count <= local:
        return None
    return address, local, WorkerAddress(reach.session, reach.image.worker + reach.offset,
                                         reach.image.generation)


def string_at(ptr, size: int = -1) -> bytes:
    """ctypes.string_at: from worker memory for remote pointers, locally for local objects."""
    ptr = _local_form(ptr)
    at = _remote_address(ptr, size, strict=True)
    if at is None:
        past = _range_beyond_image(ptr, size if size >= 0 else None)
        if past is None:
            return _ct.string_at(ptr, size)
        at = past[2]
    memory = at.session.memory
    if size < 0:
        return memory.read_string(at.address, False, at.generation)
    return memory.read(at.address, size, at.generation)


def wstring_at(ptr, size: int = -1) -> str:
    """ctypes.wstring_at, as string_at."""
    ptr = _local_form(ptr)
    at = _remote_address(ptr, size * sizeof(c_wchar), strict=True)
    if at is None:
        past = _range_beyond_image(ptr, size * sizeof(c_wchar) if size >= 0 else None,
                                   sizeof(c_wchar))
        if past is None:
            return _ct.wstring_at(ptr, size)
        at = past[2]
    memory = at.session.memory
    if size < 0:
        return memory.read_string(at.address, True, at.generation)
    return _memory.decode_wide(memory.read(at.address, size * sizeof(c_wchar), at.generation))


def memmove(dst, src, count: int) -> Any:
    """ctypes.memmove between any mix of local objects and worker memory."""
    dst, src = _local_form(dst), _local_form(src)
    remote_dst = _remote_address(dst, count, strict=True)
    remote_src = _remote_address(src, count, strict=True)
    past_src = _range_beyond_image(src, count) if remote_src is None else None
    if past_src is not None:
        remote_src = past_src[2]
    past_dst = _range_beyond_image(dst, count) if remote_dst is None else None
    if past_dst is not None:
        # The image's bytes here, the worker's past them.
        address, local, rest = past_dst
        data = string_at(src, count)
        _ct.memmove(address, data, local)
        rest.session.memory.write(rest.address + local, data[local:], rest.generation)
        return address
    if remote_dst is None and remote_src is None:
        result = _ct.memmove(dst, src, count)
        _image_copied_pointers(dst, count, None)
        return result
    if remote_dst is None:
        data = remote_src.session.memory.read(remote_src.address, count, remote_src.generation)
        result = _ct.memmove(dst, data, count)
        _image_copied_pointers(dst, count, remote_src)
        return result
    memory = remote_dst.session.memory
    if remote_src is None:
        data = src[:count] if isinstance(src, bytes) else _ct.string_at(src, count)
        memory.write(remote_dst.address, data, remote_dst.generation)
    else:
        memory.copy(remote_dst.address, remote_src.address, count, remote_dst.generation)
    return remote_dst.address


def _image_copied_pointers(dst, count: int, source: Optional[WorkerAddress]) -> None:
    # Worker bytes copied into a typed local object (`memmove(byref(record), address, n)`)
    # hold worker addresses in its `char*` / `T*` slots, which the caller would dereference
    # here: they get images, as when the library itself fills those slots. So do worker
    # addresses among local bytes (`source` None: a `c_void_p` holding a `void*` result
    # copied into a `char*` array); this process's addresses stay. An integer destination
    # says nothing about types: its bytes stay as copied.
    if isinstance(dst, _marshal._CArgObject):
        obj, offset = _marshal.byref_target(dst)
    elif isinstance(dst, (_ct.Structure, _ct.Union, _ct.Array)):
        obj, offset = dst, 0
    elif isinstance(dst, (c_char_p, c_wchar_p, _ct._Pointer)) and \
            not isinstance(dst, RemotePointer):
        # ctypes copies to where a pointer points, not over the pointer (python3-dlt's
        # memmove into a record's buffer field): the object it points into, if it keeps it.
        obj, offset = _pointee_object(dst)
        if obj is None:
            return
    else:
        return
    owner, first = _slots.memory_owner(obj, offset)
    if source is None:
        _slots.image_worker_words(owner, first, first + count)
    elif _images.has_typed_pointers(type(owner)):
        source.session.images.convert_slots(owner, source.generation, first=first,
                                            end=first + count)


def _pointee_object(pointer):
    """(the local object `pointer` points into, the offset there) among those it keeps alive
    (`pointer(x)`, `cast(buffer, ...)`), else (None, 0)."""
    address = _ct.cast(pointer, _ct.c_void_p).value
    owner = _callback_pointers.holder(getattr(pointer, "_objects", None), address) \
        if address else None
    return (None, 0) if owner is None else (owner, address - _ct.addressof(owner))


def memset(dst, c: int, count: int) -> Any:
    """ctypes.memset on a local object or worker memory."""
    dst = _local_form(dst)
    at = _remote_address(dst, count, strict=True)
    if at is None:
        past = _range_beyond_image(dst, count)
        if past is None:
            return _ct.memset(dst, c, count)
        # The image's bytes here, the worker's past them.
        address, local, rest = past
        _ct.memset(address, c, local)
        rest.session.memory.fill(rest.address + local, c, count - local, rest.generation)
        return address
    at.session.memory.fill(at.address, c, count, at.generation)
    return at.address


class _PythonApiFunction:
    """A function of ``pythonapi``: a binding may name it and set its ``argtypes``,
    ``restype`` and ``errcheck`` (many do at import), but a call fails, naming it."""

    def __init__(self, name):
        self.__name__ = name
        self.argtypes = None
        self.restype = c_int
        self.errcheck = None

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(
            "ffibox.ctypes: pythonapi.%s is the Python C API of this process, which the "
            "jailed worker cannot call; call it through the stdlib ctypes" % self.__name__)

    def __repr__(self):
        return "<ffibox.ctypes pythonapi function %s, not callable>" % self.__name__


class _MemoryViewFromMemory(_PythonApiFunction):
    """``pythonapi.PyMemoryView_FromMemory(mem, size, flags)``, the one function of the C
    API a binding calls on the library's memory (parasail wraps its matrices so): a
    memoryview of `size` bytes (format ``B``) at `mem`, read-only unless `flags` is
    PyBUF_WRITE. Of worker memory, it is over a view whose bytes are an image of it
    (ffibox._images): what is written through it reaches the library before the session's
    next call; of this process's memory, it is CPython's own."""

    _PYBUF_WRITE = 0x200

    def __call__(self, mem, size, flags):
        size, flags = operator.index(getattr(size, "value", size)), \
            operator.index(getattr(flags, "value", flags))
        if size < 0:
            raise SystemError("PyMemoryView_FromMemory: negative size")
        at = _memory_view_target(mem, size)
        if at is None:
            raise ValueError("ffibox.ctypes: pythonapi.PyMemoryView_FromMemory of a NULL "
                             "pointer")
        if isinstance(at, WorkerAddress):
            view = memoryview(_remote.view(c_char * size, at)).cast("B")
        else:
            view = _stdlib_memory_view(at, size, flags)
        # Writable for PyBUF_WRITE alone, as CPython's.
        view = view if flags == self._PYBUF_WRITE else view.toreadonly()
        return view if self.errcheck is None else self.errcheck(view, self, (mem, size, flags))


class _MemFree(_PythonApiFunction):
    """``pythonapi.PyMem_Free(p)`` (and ``PyMem_RawFree``) of memory the library returned:
    python3-augeas frees its results so, where CPython hands memory it did not allocate to
    free(). Of a worker address, the worker's free(); of this process's memory, CPython's
    own; NULL does nothing."""

    def __call__(self, pointer):
        at = _memory_view_target(pointer, 1)
        if at is None:
            return None
        reach = None if isinstance(at, WorkerAddress) else _IMAGES.holding(at)
        if reach is not None:
            # The image of the library's memory (augeas frees the array aug_match gave it
            # through the pointer it filled): the worker's memory is freed, never the
            # image's, which CPython did not allocate (freeing it corrupted this heap).
            at = WorkerAddress(reach.session, reach.image.worker + reach.offset,
                               reach.image.generation)
        if isinstance(at, WorkerAddress):
            libc = at.session.CDLL("libc.so.6")
            libc.free.argtypes, libc.free.restype = [c_void_p], None
            libc.free(RemotePointer(at.session, at.address, at.generation, None))
        else:
            getattr(_ct.pythonapi, self.__name__)(_ct.c_void_p(at))
        return None

    def __repr__(self):
        return "<ffibox.ctypes pythonapi function %s>" % self.__name__


def _memory_view_target(mem, size: int):
    """Where PyMemoryView_FromMemory's `mem` points, for `size` bytes: a WorkerAddress (of
    the worker generation a pointer the library returned belongs to: one of a dead worker is
    stale) for worker memory, past an image's bytes included; else the local address; None
    for NULL."""
    if isinstance(mem, RemotePointer):
        return address_of(mem) if mem else None
    if isinstance(mem, (_ct._Pointer, c_void_p, c_char_p)):
        address = cast(mem, c_void_p).value
    elif isinstance(mem, _marshal._CArgObject):  # byref(obj, offset)
        target, offset = _marshal.byref_target(mem)
        address = _ct.addressof(target) + offset
    elif isinstance(mem, _ct._SimpleCData.__mro__[1]):  # an array, a structure: its memory
        address = _ct.addressof(mem)
    else:
        address = mem
    if not address:
        return None
    address = operator.index(address)
    kind, _, local = _addresses.classify(address, max(size, 1))
    if kind == "worker":
        session = _opened_session()
        if session is None:
            raise ValueError("pythonapi.PyMemoryView_FromMemory: 0x%x is not an address of "
                             "this process, and no ffibox session has a worker it could "
                             "belong to" % address)
        return WorkerAddress(session, address, session.generation)
    beyond = _worker_past_image(local, size) if kind == "local" else None
    return beyond if beyond is not None else local


def _stdlib_memory_view(address: int, size: int, flags: int) -> memoryview:
    # CPython's own, through a prototype of this module's (the stdlib's pythonapi function
    # object is shared with every other user of it in this process).
    global _from_memory
    if _from_memory is None:
        _from_memory = _ct.PYFUNCTYPE(_ct.py_object, _ct.c_void_p, _ct.c_ssize_t, _ct.c_int)(
            ("PyMemoryView_FromMemory", _ct.pythonapi))
    return _from_memory(address, size, flags)


_from_memory = None


class _PythonApi:
    """``ctypes.pythonapi`` under the swap: the Python C API lives in this process, not in
    the worker, so its functions can be named (bindings do so at import) but not called
    (but PyMemoryView_FromMemory, above)."""

    def __init__(self):
        self._functions = {"PyMemoryView_FromMemory":
                           _MemoryViewFromMemory("PyMemoryView_FromMemory")}
        for name in ("PyMem_Free", "PyMem_RawFree"):
            self._functions[name] = _MemFree(name)

    def __getattr__(self, name):
        if name in ("_handle", "_name", "_FuncPtr") or (
                name.startswith("__") and name.endswith("__")):
            # Not a function (the library's handle and name: this process's).
            raise AttributeError("ffibox.ctypes: pythonapi has no %s: the Python C API is this "
                                 "process's; use the stdlib ctypes' pythonapi" % name)
        if name not in self._functions:
            self._functions[name] = _PythonApiFunction(name)
        return self._functions[name]

    __getitem__ = __getattr__

    def __repr__(self):
        return "<ffibox.ctypes pythonapi: the Python C API cannot be called from the worker>"


pythonapi = _PythonApi()


def __getattr__(name: str):
    if name in ("pydll", "PyDLL"):
        raise AttributeError(
            "ffibox.ctypes has no %s: the Python C API lives in this process, not in the "
            "worker (use the stdlib ctypes for it)" % name)
    raise AttributeError("module 'ffibox.ctypes' has no attribute %r" % name)
