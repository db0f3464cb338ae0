"""Room below Python's recursion limit for the callbacks a library call may run.

A callback invocation that comes during a call is taken and answered a few frames below the
call (ffibox._stream, ffibox._local_channel), and it must be answered whatever its handler
did, or native code waits for it until the call's deadline: a handler that recursed into
the library until no frame was left would leave nothing to report its failure or send the
answer with. So a call of a session with callbacks is sent only with ROOM frames to spare
below the limit; else it raises RecursionError before anything is sent, which the callback
that made it reports as any exception (native code gets zero), as the stdlib's callback at
the limit fails.
"""
import sys

# The frames a call keeps below the recursion limit: about 15 from the call to the handler
# of an invocation, and a failure's traceback printed through a replaced sys.stderr (about
# 25 more), with a margin.
ROOM = 48

_NO_ROOM = ("maximum recursion depth exceeded: a library call that may run callbacks needs "
            "%d frames below the recursion limit to answer them" % ROOM)

if sys.version_info < (3, 12):
    # Up to Python 3.11 the limit counts calls of C functions as well as Python frames, and
    # comparing two lists nested ROOM deep takes ROOM of that count, in C: about 0.4 µs,
    # where ROOM Python frames take 1.4.
    def _nested(levels: int) -> list:
        nested = [0]
        for _ in range(levels - 1):
            nested = [nested]
        return nested

    _PROBES = (_nested(ROOM), _nested(ROOM))

    def _has_room() -> bool:
        try:
            return _PROBES[0] == _PROBES[1]
        except RecursionError:
            return False
else:
    # From 3.12 the limit counts Python frames alone.
    def _descend(levels: int) -> None:
        if levels > 1:
            _descend(levels - 1)

    def _has_room() -> bool:
        try:
            _descend(ROOM)
        except RecursionError:
            return False
        return True


def ensure_room() -> None:
    """Raises RecursionError unless ROOM more frames fit below the recursion limit
    (sys.getrecursionlimit())."""
    if not _has_room():
        raise RecursionError(_NO_ROOM)
