"""WorkerAddress: an address in a session's worker, and which of its workers it belongs to.

Every client object that names worker memory carries one as its `_ffibox_address`
attribute: a view of worker memory (ffibox._remote) carries where the viewed value lives; a
RemotePointer, a `c_char_p` bound to a worker string and a CFUNCTYPE instance for a worker
function carry what they point to. An address dies with its worker: a restarted worker is
the session's next generation, and addresses of older ones raise StaleHandle.
"""
import dataclasses
from typing import Any, Optional

ATTRIBUTE = "_ffibox_address"


@dataclasses.dataclass(frozen=True)
class WorkerAddress:
    """`address` in the worker of `session` (ffibox.Session) of worker generation
    `generation`."""

    session: Any
    address: int
    generation: int

    def __add__(self, offset: int) -> "WorkerAddress":
        """The address `offset` bytes further in the same worker."""
        return WorkerAddress(self.session, self.address + offset, self.generation)


# A library's variable as `in_dll` viewed it: (its library, its name).
VARIABLE = "_ffibox_variable"


def address_of(obj) -> Optional[WorkerAddress]:
    """The WorkerAddress `obj` carries, else None (views override attribute access, so it
    is read past their __getattribute__). A view of a library's variable (`in_dll`) made in
    a worker that was since replaced (after a crash) is looked up again by name in the new
    one, as a function is: a binding keeps such views from its import on."""
    try:
        at = object.__getattribute__(obj, ATTRIBUTE)
    except AttributeError:
        return None
    if at is None:
        return None
    session = at.session
    if at.generation and (at.generation != session.generation or
                          at.generation <= session.stream.lost_generation):
        try:
            library, name = object.__getattribute__(obj, VARIABLE)
        except AttributeError:
            return at
        try:
            at = library.address_of(name)
        except Exception:  # the library was lost with its worker: the old address, stale
            return at
        set_address(obj, at)
    return at


def set_address(obj, address: WorkerAddress) -> None:
    """Makes `obj` carry `address` (past a view's __setattr__)."""
    object.__setattr__(obj, ATTRIBUTE, address)
