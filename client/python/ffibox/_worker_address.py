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


def address_of(obj) -> Optional[WorkerAddress]:
    """The WorkerAddress `obj` carries, else None (views override attribute access, so it
    is read past their __getattribute__)."""
    try:
        return object.__getattribute__(obj, ATTRIBUTE)
    except AttributeError:
        return None


def set_address(obj, address: WorkerAddress) -> None:
    """Makes `obj` carry `address` (past a view's __setattr__)."""
    object.__setattr__(obj, ATTRIBUTE, address)
