"""ffibox's versions of class methods of ctypes' own metaclasses, for the types ffibox
cannot otherwise reach.

The stdlib's array, pointer, structure and union types are made by ctypes' metaclasses,
which are immutable types with no hook, and `T * n` makes array types ffibox never sees.
So ffibox replaces a few class methods in those metaclasses' own namespaces (CPython keeps
a static type's attributes in a dictionary it reaches through `__dict__`;
`PyType_Modified` drops its lookup cache), process-wide, like ffibox.ctypes' `in_dll` and
`from_address` on the simple types; each replacement keeps the stdlib's method as its
`stdlib` attribute, which ffibox's own code calls (ffibox._types.local_at, copy_of):

- `from_buffer` and `from_buffer_copy` of array, pointer, structure and union types: the
  stdlib's method, then ffibox._slots.image_worker_words converts the worker addresses
  among the new object's typed pointers, as ffibox.ctypes' memmove does
  (`(c_char_p * n).from_buffer_copy(string_at(address, size))` copies the library's
  `char*` words; `T.from_buffer(bytearray(...))` sees them in place). A view of worker
  memory as the source of a copy gives the worker's bytes (its local snapshot has NULL
  pointers). With no ffibox session open nothing changes. A view made with `from_buffer`
  is noted on the object it ships as (ffibox._memory_owners.note_view), so that what it
  keeps alive goes with that object's block, also before any call passes the view.
- `from_address` and `in_dll` of array types, `in_dll` of pointer and function pointer types:
  ffibox.ctypes' (a worker address gives a view of worker memory; an ffibox library's
  variable is the worker's), so `(c_char * 32).from_address(address)` reads the side the
  address belongs to, and `POINTER(c_char_p).in_dll(libc, "environ")` the worker's variable
  (the stdlib's would look the worker's library handle up in this process).
"""
import ctypes as _ct
import gc

from ffibox import _images, _memory_owners, _remote, _slots

_ARRAY_TYPE = type(_ct.c_int * 1)
_POINTER_TYPE = type(_ct.POINTER(_ct.c_int))
_FUNCTION_TYPE = type(_ct.CFUNCTYPE(None))
_METATYPES = (_ARRAY_TYPE, _POINTER_TYPE, type(_ct.Structure), type(_ct.Union), _FUNCTION_TYPE)
_MARK = "_ffibox_methods"


def _from_buffer_copy(original):
    def from_buffer_copy(cls, source, *offset):
        at = _remote.view_address(source)
        if at is None:
            obj = original(cls, source, *offset)
            _slots.image_worker_words(obj)
            return obj
        data = at.session.memory.read(at.address, _ct.sizeof(source), at.generation)
        obj = original(cls, data, *offset)
        if _images.has_typed_pointers(cls):
            at.session.images.convert_slots(obj, at.generation)
        return obj

    return from_buffer_copy


def _from_buffer(original):
    def from_buffer(cls, source, *offset):
        obj = original(cls, source, *offset)
        _slots.image_worker_words(obj)
        _memory_owners.note_view(obj)
        return obj

    return from_buffer


def _replacing(original, function):
    # `function` with the stdlib's method `original`'s documentation, and the method itself.
    function.__doc__ = original.__doc__
    function.stdlib = original
    return function


def install(from_address, in_dll) -> bool:
    """Replaces the methods (once); `from_address(t, address)` and `in_dll(t, library,
    name)` are ffibox.ctypes'. False when this interpreter does not let it (not CPython),
    leaving the stdlib's."""
    for metatype in _METATYPES:
        if _MARK in metatype.__dict__:
            continue
        try:
            namespace = gc.get_referents(metatype.__dict__)[0]
            if not isinstance(namespace, dict):
                return False
            replacements = {"from_buffer": _from_buffer, "from_buffer_copy": _from_buffer_copy}
            if metatype in (_ARRAY_TYPE, _POINTER_TYPE, _FUNCTION_TYPE):
                # The stdlib's in_dll of an ffibox library would look its worker handle
                # up in this process (a crash).
                replacements["in_dll"] = lambda _: lambda cls, library, name: in_dll(
                    cls, library, name)
            if metatype is _ARRAY_TYPE:
                replacements["from_address"] = lambda _: lambda cls, address: from_address(
                    cls, address)
            for name, make in replacements.items():
                original = namespace[name]
                namespace[name] = _replacing(original, make(original))
            namespace[_MARK] = True
            _ct.pythonapi.PyType_Modified(_ct.py_object(metatype))
        except (AttributeError, IndexError, KeyError):
            return False
    return True
