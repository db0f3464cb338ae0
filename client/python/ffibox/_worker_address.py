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


@dataclasses.dataclass(frozen=True)
class VariableAddress(WorkerAddress):
    """Where a library's variable lives, as `in_dll` found it: `name` in `library`, looked up
    again there (address_of) once its worker is replaced."""

    library: Any = None
    name: str = ""


def address_of(obj) -> Optional[WorkerAddress]:
    """The WorkerAddress `obj` carries, else None (views override attribute access, so it
    is read past their __getattribute__). A view of a library's variable (`in_dll`) made in
    a worker that was since replaced (after a crash) is looked up again by name in the new
    one, as a function is: a binding keeps such views from its import on."""
    try:
        at = object.__getattribute__(obj, ATTRIBUTE)
    except AttributeError:
        return None
    if type(at) is VariableAddress and (at.generation != at.session.generation or
                                        at.generation <= at.session.stream.lost_generation):
        try:
            found = at.library.address_of(at.name)
        except Exception:  # the library was lost with its worker: the old address, stale
            return at
        at = VariableAddress(found.session, found.address, found.generation, at.library,
                             at.name)
        set_address(obj, at)
    return at


def set_address(obj, address: WorkerAddress) -> None:
    """Makes `obj` carry `address` (past a view's __setattr__)."""
    object.__setattr__(obj, ATTRIBUTE, address)
