"""`from_buffer` and `from_buffer_copy` of every ctypes type give images to the worker
addresses they bring into typed pointer slots.

`(c_char_p * n).from_buffer_copy(string_at(address, size))` copies the library's `char*`
words into an array ctypes would dereference here; `T.from_buffer(bytearray(...))` sees
them in place. The stdlib's array, pointer, structure and union types are made by ctypes'
own metaclasses, which are immutable types with no hook, and `T * n` makes array types
ffibox never sees. So ffibox replaces the two class methods in those metaclasses' own
namespaces (CPython keeps a static type's attributes in a dictionary it reaches through
`__dict__`; `PyType_Modified` drops its lookup cache): the stdlib's method runs, then
ffibox._slots.image_worker_words converts the worker addresses among the new object's
typed pointers, as ffibox.ctypes' memmove does. A view of worker memory as the source of a
copy gives the worker's bytes (its local snapshot has NULL pointers). This is
process-wide, like ffibox.ctypes' `in_dll` and `from_address` on the simple types; with no
ffibox session open it changes nothing.
"""
import ctypes as _ct
import gc

from ffibox import _images, _remote, _slots

_METATYPES = (type(_ct.c_int * 1), type(_ct.POINTER(_ct.c_int)), type(_ct.Structure),
              type(_ct.Union))
_MARK = "_ffibox_images_worker_words"


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

    from_buffer_copy.__doc__ = original.__doc__
    from_buffer_copy.stdlib = original
    return from_buffer_copy


def _from_buffer(original):
    def from_buffer(cls, source, *offset):
        obj = original(cls, source, *offset)
        _slots.image_worker_words(obj)
        return obj

    from_buffer.__doc__ = original.__doc__
    return from_buffer


def install() -> bool:
    """Replaces from_buffer and from_buffer_copy in ctypes' metaclasses (once); False when
    this interpreter does not let it (not CPython), leaving the stdlib's."""
    for metatype in _METATYPES:
        if _MARK in metatype.__dict__:
            continue
        try:
            namespace = gc.get_referents(metatype.__dict__)[0]
            if not isinstance(namespace, dict):
                return False
            namespace["from_buffer"] = _from_buffer(namespace["from_buffer"])
            namespace["from_buffer_copy"] = _from_buffer_copy(namespace["from_buffer_copy"])
            namespace[_MARK] = True
            _ct.pythonapi.PyType_Modified(_ct.py_object(metatype))
        except (AttributeError, IndexError, KeyError):
            return False
    return True
