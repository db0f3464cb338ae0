"""The callbacks of this process by the local code address ctypes made for each.

A copy of that address (a structure's function pointer field the callback was stored in, a
`cast` of it to `c_void_p`) is that callback: a call that ships such a field by pointer has
the worker store the callback's closure there (Relocation.callback), and the field gets its
local address back after the call.

ctypes keeps a callback's code alive in every object it was stored in (`Ops(PROTOTYPE(f))`
keeps the code, not the PROTOTYPE instance: bindings build such tables from temporaries), so
an instance is held here for as long as any object other than itself keeps its code."""
import sys
import threading
import weakref
from typing import Dict

local_callbacks: "weakref.WeakValueDictionary[int, object]" = weakref.WeakValueDictionary()
# Code address -> instance, oldest first, while other objects keep its code. The newest are
# never let go: an instance is made before the structure that keeps its code (the arguments
# of `Ops(START(f), COMBINE(g))` come first), and a structure may take many.
_held: Dict[int, object] = {}
_NEWEST_HELD = 1024
_lock = threading.Lock()
_look_again_at = 2 * _NEWEST_HELD  # how many held make the next registration look at them


def register(address: int, instance) -> None:
    """Records CFUNCTYPE `instance` (made from a Python callable) at its code `address`."""
    global _look_again_at
    let_go = []  # dropped once the lock is released: a finalizer may run then
    with _lock:
        if len(_held) >= _look_again_at:
            for held_address, held in list(_held.items())[:-_NEWEST_HELD]:
                # Its keep-alive dict (which holds the code) is referred to by the instance
                # alone, and by getrefcount's argument: nothing else keeps the code.
                if held._objects is None or sys.getrefcount(held._objects) <= 2:
                    let_go.append(_held.pop(held_address))
            _look_again_at = max(2 * _NEWEST_HELD, 2 * len(_held))
        _held.pop(address, None)
        _held[address] = instance
        local_callbacks[address] = instance
    del let_go
