"""Which object's memory a ctypes object lies in, and what it keeps alive: the object a
call ships (with its one worker twin) for a view, an element, an object made `from_buffer`
of another or of a bytearray, and the objects ctypes' keep-alive references hold, which the
call may reach through pointers (ffibox._blocks)."""
import ctypes as _ct
import threading
import weakref
from typing import List, Optional

from ffibox import _twins, _types

_CData = _ct._SimpleCData.__mro__[1]


# id(numpy array) -> (weak reference to it, a `c_char` array over its memory): one per array
# while it lives, so that one twin stands for that memory (a library may keep the pointer
# across calls). Made at the array's address, it keeps no reference to the array, and the
# entry goes with the array (arrays are unhashable: no WeakKeyDictionary).
_arrays: dict = {}
_arrays_lock = threading.Lock()


def _forget_array(key: int, ref) -> None:
    with _arrays_lock:
        if _arrays.get(key, (None,))[0] is ref:
            del _arrays[key]


def numpy_memory(array):
    """A `c_char` array over the memory of numpy array `array`, or of the array it is a
    view of when it is not contiguous itself; TypeError when neither is (ffibox could not
    say where the library may read)."""
    for _ in range(16):
        flags = getattr(array, "flags", None)
        if flags is not None and (flags["C_CONTIGUOUS"] or flags["F_CONTIGUOUS"]):
            with _arrays_lock:
                entry = _arrays.get(id(array))
                if entry is None or entry[0]() is not array:
                    address = array.__array_interface__["data"][0]
                    entry = (weakref.ref(array, lambda ref, key=id(array):
                                         _forget_array(key, ref)),
                             (_ct.c_char * max(array.nbytes, 1)).from_address(address))
                    _arrays[id(array)] = entry
            return entry[1]
        array = getattr(array, "base", None)
        if array is None or not hasattr(array, "__array_interface__"):
            break
    raise TypeError("ffibox: a numpy array that is not contiguous, nor a view of one, cannot "
                    "be passed by its pointer")


def known_numpy_array_at(address: int):
    """The live numpy array ffibox has met (numpy_memory) whose memory holds `address`, else
    None."""
    with _arrays_lock:
        entries = list(_arrays.values())
    for ref, memory in entries:
        start = _ct.addressof(memory)
        if start <= address < start + _ct.sizeof(memory):
            array = ref()
            if array is not None:
                return array
    return None


def numpy_array_of(obj):
    """The numpy array `obj` is (an ndarray) or stands for (numpy's `arr.ctypes`), else
    None."""
    array = getattr(obj, "_arr", obj) if type(obj).__name__ == "_ctypes" else obj
    return array if hasattr(array, "__array_interface__") and hasattr(array, "nbytes") else None


def kept_alive(keep, limit: Optional[int] = None):
    """The objects ctypes' keep-alive references `keep` (an `_objects` value: a dict, a
    ctypes object, bytes, or the tuple (references, array) ctypes keeps for an array
    assigned to a pointer field) hold, depth first, each once, through nested `_objects`
    (and ffibox's `_ffibox_keep`); at most `limit` visited."""
    stack, seen = [keep], set()
    while stack and (limit is None or len(seen) < limit):
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, tuple):
            stack.extend(item)
        elif item is not None:
            yield item
            if issubclass(type(item), _CData):
                stack.append(getattr(item, "_objects", None))
                # What ffibox's cast keeps where ctypes keeps nothing (cast bytes, a byref's
                # object).
                stack.append(getattr(item, "_ffibox_keep", None))


def buffer_exporters(obj) -> List:
    """The objects whose memory `obj` was made on with `from_buffer` (through any number of
    such steps), nearest first: the owner of each ctypes object on the way (ctypes keeps its
    buffer, a memoryview, in `obj._objects`, or as it), then, made on another exporter's
    buffer (a bytearray, an `array.array`, an mmap), the rest of that buffer from `obj` on
    (_rest_of_buffer): a library reads on past the object (`byref(c_char.from_buffer(code))`
    for the bytes of `code`), as in the caller's process."""
    found, first = [], obj
    for _ in range(64):
        keep = getattr(obj, "_objects", None)
        if obj._b_needsfree_ or type(keep) not in (dict, memoryview):
            break
        # A record or an array keeps the buffer in a dict, a simple object keeps it itself.
        views = [keep] if type(keep) is memoryview else [
            item for item in keep.values() if isinstance(item, memoryview)]
        if len(views) != 1:
            break
        if not isinstance(views[0].obj, _CData):
            rest = _rest_of_buffer(first, views[0])
            if rest is not None:
                found.append(rest)
            break
        obj = _twins.owner_of(views[0].obj)
        found.append(obj)
    return found


def _rest_of_buffer(obj, view):
    """A `c_char` array over `view`'s buffer from where `obj` starts to its end, kept by
    `obj` (one twin stands for that memory while `obj` lives, as for `obj` itself); None
    when `obj` reaches the end already, or the buffer cannot be viewed so."""
    rest = obj.__dict__.get("_ffibox_rest")
    if rest is not None:
        return rest
    try:
        base = _ct.addressof(_ct.c_char.from_buffer(view))
    except (TypeError, ValueError):  # released, read-only or not contiguous
        return None
    offset = _ct.addressof(obj) - base
    if not 0 <= offset or offset + _ct.sizeof(obj) >= view.nbytes:
        return None
    rest = (_ct.c_char * (view.nbytes - offset)).from_buffer(view, offset)
    obj.__dict__["_ffibox_rest"] = rest
    return rest


def slots_within(view, holder) -> bool:
    """Whether every pointer slot of `view` is a pointer slot of `holder` (which holds the
    view's memory) at the same place."""
    shift = _ct.addressof(view) - _ct.addressof(holder)
    kind, whole = type(view), type(holder)
    while _types.is_array(whole) and kind is not whole:  # an element (or a run) of an array
        element = whole._type_
        if kind is element or (_types.is_array(kind) and kind._type_ is element):
            return shift % max(_ct.sizeof(element), 1) == 0
        whole, shift = element, shift % max(_ct.sizeof(element), 1)
    if kind is whole:
        return shift == 0 or not _types.pointer_offsets(kind)
    own = _types.pointer_offsets(kind)
    if not own:
        return True
    held = {offset for offset, _ in _types.pointer_offsets(whole)}
    return all(offset + shift in held for offset, _ in own)


def memory_owner(obj, twins):
    """The object whose buffer holds ctypes object `obj`'s memory, and so whose twin it
    shares (`twins`: the session's TwinTable): its base (for a field or element view), the
    ctypes object it was made `from_buffer` of, an object an earlier call twinned (for a
    view of it such as `p.contents`), an object the base keeps alive that holds it, or
    itself."""
    start, end = _ct.addressof(obj), _ct.addressof(obj) + _ct.sizeof(obj)

    def holds(other) -> bool:
        return _ct.addressof(other) <= start and end <= _ct.addressof(other) + _ct.sizeof(
            other)

    owner = _twins.owner_of(obj)
    if owner is obj or holds(owner):
        # Its base, or what that was made on (_made_on).
        exporter = _made_on(owner)
        return owner if exporter is None else exporter
    twinned = twins.owner_at(start)
    if twinned is not None and not _twins.held_strongly(twinned) and holds(twinned):
        return twinned
    # The largest object kept alive that holds it: another view of the same element
    # (`cast(array, POINTER(T))[0]` twice) would ship apart from the array around both.
    # Any object of at least its size holding it wins over the view itself (`p.contents` is
    # the object p points to, not the temporary view, whose twin dies with it).
    best = obj
    # An element reached by indexing a pointer to another (`pointer(a[0])[2]`) is held
    # by the base of what the pointer keeps.
    for item in kept_alive(getattr(owner, "_objects", None), limit=256):
        if not issubclass(type(item), _CData) or item is obj:
            continue
        base = _twins.owner_of(item)
        if holds(base):
            item = base
        elif not holds(item):
            continue
        if _ct.sizeof(item) > _ct.sizeof(best) or best is obj:
            best = item
    # What that was made on, as for a base above (`pointer(a[0]).contents` of an array made
    # over a larger one ships as the larger one, as a[1] passed by reference does).
    return best if best is obj else (_made_on(best) or best)


def _made_on(view):
    """The outermost object `view` (its own base) was made on with from_buffer that holds it
    and whose type has a pointer slot wherever the view's does (the block carries the slots
    of its own type; a record made over a char buffer ships apart from it), noted as made
    over by the view (views_of); None when there is none."""
    start, end = _ct.addressof(view), _ct.addressof(view) + _ct.sizeof(view)
    for exporter in reversed(buffer_exporters(view)):
        if _ct.addressof(exporter) <= start and end <= _ct.addressof(exporter) + _ct.sizeof(
                exporter) and slots_within(view, exporter):
            _made_over(exporter, view)
            return exporter
    return None


def note_view(view) -> None:
    """Notes a ctypes object just made with from_buffer: when it ships as the object it was
    made on, what it keeps alive (pointers stored into it, before any call passes it) goes
    with that object's block."""
    if _types.holds_words(type(view)):
        _made_on(view)


def _made_over(exporter, view) -> None:
    # Notes that `view` (a ctypes object made on `exporter`'s memory) ships as `exporter`:
    # what the view keeps alive (its pointer fields' targets) goes with the exporter's block
    # too (views_of), as long as the view lives.
    # By id (ctypes objects are unhashable); the dead go each time the count doubles.
    views = exporter.__dict__.setdefault(_VIEWS, {})
    known = views.get(id(view))
    if known is not None and known() is view:
        return
    if len(views) >= 16 and len(views) & (len(views) - 1) == 0:
        for key in [key for key, ref in list(views.items()) if ref() is None]:
            views.pop(key, None)  # another thread may have let it go already
    views[id(view)] = weakref.ref(view)


_VIEWS = "_ffibox_views"


def views_of(owner) -> List:
    """The live objects made on `owner`'s memory that ship as `owner` (memory_owner)."""
    views = getattr(owner, "__dict__", {}).get(_VIEWS)
    if not views:
        return []
    return [view for view in (ref() for ref in list(views.values())) if view is not None]
