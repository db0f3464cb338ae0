"""The callbacks of this process by the local code address ctypes made for each.

A copy of that address (a structure's function pointer field the callback was stored in, a
`cast` of it to `c_void_p`) is that callback while it lives: a call that ships such a field
by pointer has the worker store the callback's closure there (Relocation.callback), and the
field gets its local address back after the call. ctypes keeps only a callback's code in a
structure it was stored in (`Ops(PROTOTYPE(f))`, built from temporaries), so the fields of
ffibox.ctypes' structures keep the instance too (ffibox.ctypes._fields)."""
import weakref

local_callbacks: "weakref.WeakValueDictionary[int, object]" = weakref.WeakValueDictionary()


def register(address: int, instance) -> None:
    """Records CFUNCTYPE `instance` (made from a Python callable) at its code `address`."""
    local_callbacks[address] = instance
