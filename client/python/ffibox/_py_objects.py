"""Python objects a library is handed as `py_object`: tokens in the worker.

ctypes passes a `py_object` argument as the object's address, and a library keeps it as
opaque data that it hands back, most often to a callback: libclang's `clang_visitChildren`
client data (the Python list its visitor fills), `qsort_r`'s context, `dl_iterate_phdr`'s
data. The library runs in another process, so the worker gets a token instead: a
pointer-sized integer that is no address in any process (a non-canonical x86-64 address, so a
library that dereferences it faults in its worker), drawn at random, so that it tells the
worker nothing about this process and a value the library made up or changed, or another
session's token, is no token of this session's. A token that comes back (a callback's
`py_object` argument, a function's `py_object` result) is the object again; the same object
passed again gets the same token, so a library comparing its user data sees what it would
see in-process.

How long a token stands for its object: an object that takes weak references (instances of
Python classes, functions) for as long as it lives, as in ctypes, which keeps no reference
either; one that does not (a list, a dict, a tuple, an int), and what a callback returns as a
`py_object` (ctypes gives native code a reference of its own), is kept alive by the session
until KEPT other such objects have been passed after it, or for as long as something else
holds it too, since a weak reference cannot say when it died. A token of an object that is
gone, or that this session never handed out, gives ValueError where ctypes would read freed
or arbitrary memory. The session forgets them all when it closes.
"""
import collections
import secrets
import sys
import threading
import weakref

# Bits 63..48 of every token: neither all zeros nor all ones, so no token is a canonical
# x86-64 address (4- or 5-level paging). Bits 47..4 are random; 3..0 are zero.
_TOKEN_HIGH = 0xF0B0 << 48
_RANDOM_BITS = 44
# Objects held for their tokens, past which the oldest that nothing else holds are let go.
KEPT = 4096
# How many held objects one new one looks at for one to let go.
_LOOKED_AT = 8


# Every session's table, for a token that comes back as a plain `void*` (find).
_tables: "weakref.WeakSet[PyObjects]" = weakref.WeakSet()


def find(token: int):
    """(object,) for a token of any session's (a `void*` callback argument cast to
    `py_object`: tokens are random, so no two sessions share one), else None."""
    for table in list(_tables):
        try:
            return (table.object(token & (1 << 64) - 1),)
        except ValueError:
            continue
    return None


class PyObjects:
    """One session's tokens."""

    def __init__(self) -> None:
        _tables.add(self)
        # Re-entrant, as every lock a call may take (a finalizer or signal handler that runs
        # while it is held may pass an object; a weak reference's callback forgets one).
        # Nothing is released while it is held: a finalizer may call the library.
        self._lock = threading.RLock()
        self._token_of = {}  # id(object) -> token, while its entry lives
        # token -> (id(object), weakref.ref to it, or a 1-tuple holding it)
        self._entries = {}
        self._held = collections.OrderedDict()  # tokens of held objects, last passed last

    def token(self, obj, hold: bool = False) -> int:
        """The token standing for `obj` in the worker; `hold` keeps `obj` alive as one
        that takes no weak reference is (a callback's result)."""
        released = []
        try:
            with self._lock:
                return self._token(obj, hold, released)
        finally:
            del released[:]  # outside the lock: their finalizers may call the library

    def _token(self, obj, hold: bool, released: list) -> int:
        token = self._token_of.get(id(obj))
        if token is not None:
            if token in self._held:
                self._held.move_to_end(token)
            elif hold:
                self._entries[token] = (id(obj), (obj,))
                self._held[token] = None
                self._let_go(released)
            return token
        token = _TOKEN_HIGH | secrets.randbits(_RANDOM_BITS) << 4
        while token in self._entries:
            token = _TOKEN_HIGH | secrets.randbits(_RANDOM_BITS) << 4
        reference = None
        if not hold:
            forget = weakref.WeakMethod(self._forget_dead)
            try:
                reference = weakref.ref(obj, lambda _, token=token: _call(forget, token))
            except TypeError:
                pass
        # Making the reference may have run a collection, and a finalizer this object.
        if id(obj) in self._token_of:
            return self._token_of[id(obj)]
        if reference is None:
            self._entries[token] = (id(obj), (obj,))
            self._held[token] = None
            self._let_go(released)
        else:
            self._entries[token] = (id(obj), reference)
        self._token_of[id(obj)] = token
        return token

    def _let_go(self, released: list) -> None:
        # Past KEPT, the oldest held objects nothing else holds go (a few looked at per new
        # one); those something else holds move to the end.
        for _ in range(min(_LOOKED_AT, len(self._held) - KEPT)):
            oldest = next(iter(self._held))
            entry = self._entries[oldest]
            if sys.getrefcount(entry[1][0]) > 2:  # the tuple's and the argument's
                self._held.move_to_end(oldest)
                continue
            released.append(self._remove(oldest))

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
            "weak reference, those nothing else holds are kept for the last %d passed)"
            % (token & (1 << 64) - 1, KEPT))

    def clear(self) -> None:
        """Forgets every token (the session ended)."""
        with self._lock:
            entries = self._entries
            self._entries, self._token_of = {}, {}
            self._held.clear()
        del entries  # outside the lock

    def _forget_dead(self, token: int) -> None:
        with self._lock:
            entry = self._entries.get(token)
            if entry is not None and not isinstance(entry[1], tuple):
                self._remove(token)

    def _remove(self, token: int):
        entry = self._entries.pop(token)
        self._held.pop(token, None)
        if self._token_of.get(entry[0]) == token:
            del self._token_of[entry[0]]
        return entry


def _call(method_ref, token: int) -> None:
    method = method_ref()
    if method is not None:
        method(token)
