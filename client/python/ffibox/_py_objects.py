"""Python objects a library is handed as `py_object`: tokens in the worker.

ctypes passes a `py_object` argument as the object's address, and a library keeps it as
opaque data that it hands back, most often to a callback: libclang's `clang_visitChildren`
client data (the Python list its visitor fills), `qsort_r`'s context, `dl_iterate_phdr`'s
data. The library runs in another process, so the worker gets a token instead: a
pointer-sized integer that is no address in any process (a non-canonical x86-64 address, so a
library that dereferences it faults in its worker), and that tells this process nothing about
its own addresses. A token that comes back (a callback's `py_object` argument or result, a
function's `py_object` result) is the object again; the same object passed again gets the
same token, so a library comparing its user data sees what it would see in-process.

How long a token stands for its object: an object that takes weak references (instances of
Python classes, functions) for as long as it lives, as in ctypes, which keeps no reference
either; one that does not (a list, a dict, a tuple, an int) is kept alive by the session
until KEPT other such objects have been passed after it, since a weak reference cannot say
when it died. A token of an object that is gone, or that this session never handed out,
gives ValueError where ctypes would read freed or arbitrary memory.
"""
import collections
import itertools
import threading
import weakref

# The first token and the distance between two: bits 63..48 are neither all zeros nor all
# ones, so no token is a canonical x86-64 address (4- or 5-level paging).
_TOKEN_BASE = 0xF0B0_0000_0000_0000
_TOKEN_STEP = 16
# Objects without weak references kept alive for their tokens, the most recently passed.
KEPT = 4096


class PyObjects:
    """One session's tokens."""

    def __init__(self) -> None:
        # Re-entrant, as every lock a call may take (a finalizer or signal handler that runs
        # while it is held may pass an object; a weak reference's callback forgets one).
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._token_of = {}  # id(object) -> token, while its entry lives
        # token -> (id(object), weakref.ref to it, or a 1-tuple holding it)
        self._entries = {}
        self._held = collections.OrderedDict()  # tokens of held objects, last passed last

    def token(self, obj) -> int:
        """The token standing for `obj` in the worker."""
        with self._lock:
            token = self._token_of.get(id(obj))
            if token is not None:
                if token in self._held:
                    self._held.move_to_end(token)
                return token
            token = _TOKEN_BASE + _TOKEN_STEP * next(self._counter)
            try:
                reference = weakref.ref(obj, lambda _, token=token: self._forget(token))
            except TypeError:
                reference = (obj,)
                self._held[token] = None
            self._entries[token] = (id(obj), reference)
            self._token_of[id(obj)] = token
            while len(self._held) > KEPT:
                self._forget(next(iter(self._held)))
            return token

    def object(self, token: int):
        """The object `token` stands for; ValueError for 0 (NULL, as ctypes says), for a
        token of an object that is gone, and for a value this session never handed out."""
        if not token:
            raise ValueError("PyObject is NULL")
        with self._lock:
            entry = self._entries.get(token)
        if entry is not None:
            reference = entry[1]
            if isinstance(reference, tuple):
                return reference[0]
            found = reference()
            if found is not None:
                return found
        raise ValueError(
            "ffibox: the library gave 0x%x back as a py_object, which is no object this "
            "session passed to it as one, or one that is gone (of the objects that take no "
            "weak reference, the last %d passed are kept)" % (token & (1 << 64) - 1, KEPT))

    def _forget(self, token: int) -> None:
        with self._lock:
            entry = self._entries.pop(token, None)
            self._held.pop(token, None)
            if entry is not None and self._token_of.get(entry[0]) == token:
                del self._token_of[entry[0]]
