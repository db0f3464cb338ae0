"""Python values to protocol Values and memory blocks for one call, and results back.

The rules are ctypes' (argtypes conversion, inference without argtypes, result conversion).
Client memory a pointer argument reaches (byref targets, buffers, arrays, structs, and what
their pointer fields reach through ctypes' keep-alive references) is shipped as memory
blocks with relocations; after the call the library's changes, rewired pointers included,
are copied back into the same local objects.
"""
import ctypes as _ct
import re
import struct
from typing import Any, Dict, List, Optional, Tuple

from ffibox import _addresses, _remote, _twins, _types
from ffibox._remote import RemotePointer
from ffibox._stubs import pb
from ffibox._worker_address import WorkerAddress, address_of

_CArgObject = type(_ct.byref(_ct.c_int()))
_CData = _ct._SimpleCData.__mro__[1]
_ADDRESS_IN_REPR = re.compile(r"\(0x([0-9a-f]+)\)")
_NULL = pb.Value(pointer=pb.PointerValue(null=True))
_WORD = struct.Struct("<Q")


# One exception class for both modules: code catching ctypes.ArgumentError keeps working.
ArgumentError = _ct.ArgumentError


_bytes_address = _twins.bytes_address


def _kept_alive(keep, limit: Optional[int] = None):
    """The objects ctypes' keep-alive references `keep` (an `_objects` value: a dict, a
    ctypes object, bytes) hold, depth first, each once, through nested `_objects`; at most
    `limit` visited."""
    stack, seen = [keep], set()
    while stack and (limit is None or len(seen) < limit):
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            stack.extend(item.values())
        elif item is not None:
            yield item
            if isinstance(item, _CData):
                stack.append(getattr(item, "_objects", None))


class CallBuilder:
    """The blocks of one call, and how to copy them back into client memory."""

    def __init__(self, session) -> None:
        self.session = session
        self.blocks: List[Any] = []
        self._extents: List[Tuple[int, int, int]] = []    # local start, end, block index
        self._owners: List[Any] = []                        # block index -> local object
        # block index -> {offset: the caller's own word} for pointer slots sent as worker
        # addresses (images), restored after the call unless the library changed them.
        self._own_words: Dict[int, Dict[int, int]] = {}
        self._candidates: List[Tuple[int, int, Any]] = []  # reachable local memory
        self._sources: Dict[int, int] = {}  # id(bytes or str shipped) -> block index
        self.twins_used: List[Any] = []  # twins the blocks are placed at (busy in flight)

    # -- building --------------------------------------------------------------------------

    def _memory_owner(self, obj):
        """The object whose buffer holds `obj`'s memory, and so whose twin it shares: its
        base (for a field or element view), an object an earlier call twinned (for a view
        of it such as `p.contents`), an object the base keeps alive that holds it, or
        itself."""
        start, end = _ct.addressof(obj), _ct.addressof(obj) + _ct.sizeof(obj)

        def holds(other) -> bool:
            return _ct.addressof(other) <= start and end <= _ct.addressof(other) + _ct.sizeof(
                other)

        owner = _twins.owner_of(obj)
        if owner is obj or holds(owner):
            return owner
        twinned = self.session.twins.owner_at(start)
        if twinned is not None and not isinstance(twinned, (bytes, str)) and holds(twinned):
            return twinned
        for item in _kept_alive(getattr(owner, "_objects", None), limit=256):
            if isinstance(item, _CData) and item is not obj and holds(item):
                return _twins.owner_of(item) if holds(_twins.owner_of(item)) else item
        return obj

    def add_object(self, obj) -> Optional[int]:
        """Ships the memory of ctypes object `obj` (all of its owner's buffer, which has one
        worker twin, and what its pointers reach) INOUT; the block index. None when its twin
        is busy (a call in flight works on it: see pointer_to)."""
        # What the view's bases keep alive (ctypes files a field's keep-alive references
        # under the view's root, which may be a pointer: p.contents.buf = cast(b, ...)).
        view = obj
        while view is not None:
            self._collect(getattr(view, "_objects", None))
            view = getattr(view, "_b_base_", None)
        obj = self._memory_owner(obj)
        start = _ct.addressof(obj)
        if self.session.twins.busy_worker_address(start) is not None:
            return None
        found = self._shipped(start)
        if found is not None and found[1] == 0 and _ct.sizeof(obj) <= len(
                self.blocks[found[0]].data):
            return found[0]
        size = _ct.sizeof(obj)
        slots = _types.pointer_offsets(type(obj))
        images = self.session.images
        index = self._new_block(start, size, obj, images.worker_bytes(start, size, slots),
                                pb.INOUT)
        self._collect(getattr(obj, "_objects", None))
        for offset, ptype in slots:
            word = _types.word_at(start + offset).value
            if word and images.worker_address(word) is not None:  # sent as a worker address
                self._own_words.setdefault(index, {})[offset] = word
            elif word:
                self._relocate(index, offset, ptype, word)
        return index

    def add_bytes(self, data: bytes, terminator: bytes = b"\0", source=None) -> int:
        """Ships immutable bytes (plus a terminator) IN, at the worker twin of `source` (the
        str they encode; by default the bytes themselves), so a library that keeps the
        pointer reads the same string in later calls, as with ctypes; the block index."""
        source = data if source is None else source
        index = self._sources.get(id(source))
        if index is not None:
            return index
        start = _bytes_address(data) if source is data else 0
        index = self._new_block(start, len(data) + len(terminator), source, data + terminator,
                                pb.IN)
        self._sources[id(source)] = index
        return index

    def _new_block(self, start: int, size: int, owner, data: bytes, direction) -> int:
        index = len(self.blocks)
        block = pb.MemoryBlock(data=data, size=size, direction=direction)
        if owner is not None:
            twin = self.session.twins.place(block, owner, size, self.session.generation)
            if twin is not None:
                self.twins_used.append(twin)
        self.blocks.append(block)
        self._owners.append(owner)
        if start:
            self._extents.append((start, start + size, index))
        return index

    def _collect(self, keep) -> None:
        for item in _kept_alive(keep):
            if isinstance(item, _CData):
                start = _ct.addressof(item)
                self._candidates.append((start, start + _ct.sizeof(item), item))
            elif isinstance(item, bytes):
                start = _bytes_address(item)
                self._candidates.append((start, start + len(item) + 1, item))

    def _shipped(self, address: int) -> Optional[Tuple[int, int]]:
        for start, end, index in self._extents:
            if start <= address < end or (address == start == end):
                return index, address - start
        return None

    def locate(self, address: int) -> Optional[Tuple[int, int]]:
        """(block, offset) of a local address inside client memory this call ships."""
        found = self._shipped(address)
        if found is not None:
            return found
        for start, end, item in list(self._candidates):
            if start <= address < end:
                if isinstance(item, bytes):
                    return self.add_bytes(item), address - start
                self.add_object(item)
                return self._shipped(address)
        # An object an earlier call reached (a library may have linked to it since).
        owner = self.session.twins.owner_at(address)
        if isinstance(owner, bytes):
            return self.add_bytes(owner), address - _bytes_address(owner)
        if owner is not None:
            self.add_object(owner)
            return self._shipped(address)
        return None

    def _relocate(self, index: int, offset: int, ptype, word: int) -> None:
        target = self.locate(word)
        if target is None:
            return  # not client memory this call knows: a worker address, left as it is
        self.blocks[index].relocations.add(
            offset=offset, target=pb.BlockRef(block=target[0], offset=target[1]))

    def pointer_to(self, obj, offset: int = 0):
        """A pointer Value to `offset` bytes into local ctypes object `obj` (its worker
        address, unsynced, when a call in flight works on its twin)."""
        busy = self.session.twins.busy_worker_address(_ct.addressof(obj))
        if busy is not None:
            return remote_value(busy[0] + offset, busy[1])
        index = self.add_object(obj)
        base = self.locate(_ct.addressof(obj))
        return pb.Value(pointer=pb.PointerValue(
            block=pb.BlockRef(block=index, offset=(base[1] if base else 0) + offset)))

    def worker_integer(self, address: int) -> Optional[int]:
        """The worker address of local `address` when it lies in a twinned object (which
        the call then ships, synced, at its twin), else None."""
        found = self.session.twins.twin_at(address)
        if found is None or isinstance(found[0], (bytes, str)):
            return None
        owner, twin = found
        if not twin.busy:
            index = self.add_object(owner)
            if index is None or not self.blocks[index].HasField("at"):
                return None
        return twin.worker + (address - twin.local)

    def local_pointer_via(self, address: int, keep):
        """local_pointer for an address whose memory `keep` (ctypes' keep-alive references
        of a cast result) holds."""
        self._collect(keep)
        return self.local_pointer(address)

    def local_pointer(self, address: int):
        """A pointer Value for a local pointer's value; remote when not client memory."""
        if not address:
            return _NULL
        mapped = self.session.images.worker_address(address)
        if mapped is not None:
            return remote_value(*mapped)
        target = self.locate(address)
        if target is None:
            return remote_value(address, self.session.generation)
        return pb.Value(pointer=pb.PointerValue(
            block=pb.BlockRef(block=target[0], offset=target[1])))

    # -- copying back ----------------------------------------------------------------------

    def copy_back(self, result, generation: int) -> None:
        """Writes the OUT/INOUT blocks of `result` into the local objects they came from.

        A pointer slot the library left as it was gets the caller's own value back; one it
        pointed into memory this call shipped is rewired to the local object; one it set to
        other worker memory gets a local image of the typed pointee (ffibox._images), never
        the raw worker address."""
        for kept in result.kept:
            owner = self._owners[kept.block] if kept.block < len(self._owners) else None
            if owner is not None:
                self.session.twins.kept(owner, self.blocks[kept.block].size,
                                        kept.address.address, kept.address.generation)
        budget = self.session.images.budget()
        for contents in result.blocks:
            owner = self._owners[contents.block] if contents.block < len(self._owners) else None
            if owner is None or isinstance(owner, (bytes, str)):
                continue
            start = _ct.addressof(owner)
            data = contents.data[:_ct.sizeof(owner)]
            _ct.memmove(start, data, len(data))
            relocated = {p.offset: p.target for p in contents.pointers}
            sent = self.blocks[contents.block].data
            own_words = self._own_words.get(contents.block, {})
            # Words inside unions may be another member's bytes: only rewired, never imaged.
            certain = {off for off, _ in _types.pointer_offsets(type(owner), unions=False)}
            for offset, ptype in _types.pointer_offsets(type(owner)):
                target = relocated.get(offset)
                if target is None and offset not in certain:
                    continue
                into_text = target is not None and target.block < len(self._owners) and \
                    isinstance(self._owners[target.block], str)
                if (target is None or into_text) and offset + 8 <= len(data):
                    # Not into caller memory (a str's encoding is the worker's own copy).
                    returned = _WORD.unpack_from(data, offset)[0]
                    if not into_text and offset + 8 <= len(sent) and \
                            returned == _WORD.unpack_from(sent, offset)[0]:
                        if offset in own_words:
                            _types.word_at(start + offset).value = own_words[offset]
                    elif returned:
                        local = self.session.images.bind(owner, offset, ptype, returned,
                                                         generation, budget)
                        if local is not None:
                            _types.word_at(start + offset).value = local
                        else:  # void* and function pointers stay worker addresses
                            _addresses.note_worker_address(returned)
                    continue
                if target is None or target.block >= len(self._owners):
                    continue
                target_owner = self._owners[target.block]
                if target_owner is None:
                    continue
                base = (_bytes_address(target_owner) if isinstance(target_owner, bytes)
                        else _ct.addressof(target_owner))
                _types.word_at(start + offset).value = base + target.offset


def remote_value(address: int, generation: int):
    if not address:
        return _NULL
    return pb.Value(pointer=pb.PointerValue(
        remote=pb.RemoteAddress(address=address, generation=generation)))


def _arg_error(position: int, error: Exception) -> Exception:
    return ArgumentError("argument %d: %s: %s" % (position, type(error), error))


# -- arguments -------------------------------------------------------------------------

def infer_type(value):
    """The ctypes type ctypes gives an argument passed without argtypes (None = NULL)."""
    if hasattr(value, "_as_parameter_"):
        return infer_type(value._as_parameter_)
    if isinstance(value, bool) or isinstance(value, int):
        return _ct.c_int
    if isinstance(value, bytes):
        return _ct.c_char_p
    if isinstance(value, str):
        return _ct.c_wchar_p
    if value is None or isinstance(value, (RemotePointer, _CArgObject)):
        return _ct.c_void_p
    if isinstance(value, (_ct.Array,)):
        return _ct.POINTER(value._type_)
    if isinstance(value, _ct._SimpleCData.__mro__[1]):
        return type(value)
    raise TypeError("Don't know how to convert parameter")


def encode(t, value, builder: Optional[CallBuilder], session):
    """The Value for argument `value` of declared type `t` (TypeError when ctypes would)."""
    if hasattr(value, "_as_parameter_") and not isinstance(value, _ct._SimpleCData.__mro__[1]):
        value = value._as_parameter_
    if _types.is_simple(t):
        return _encode_simple(t, value, builder, session)
    if _types.is_pointer(t) or _types.is_array(t):
        return _encode_pointer(t, value, builder, session)
    if _types.is_record(t):
        if not isinstance(value, t):
            raise TypeError("expected %s instance instead of %s"
                            % (t.__name__, type(value).__name__))
        at = _remote.view_address(value)
        if at is not None:  # a view of worker memory by value: its current bytes
            return pb.Value(raw=session.memory.read(at.address, _ct.sizeof(t), at.generation))
        if builder is not None and any(
                _types.word_at(_ct.addressof(value) + off).value
                for off, _ in _types.pointer_offsets(t)):
            return _encode_aggregate(t, value, builder, session)
        return pb.Value(raw=bytes(value))
    if _types.is_function(t):
        if (value is not None and not isinstance(value, int) and _types.is_function(type(value))
                and not isinstance(value, t)):
            raise TypeError("expected %s instance instead of %s"
                            % (t.__name__, type(value).__name__))
        return _encode_function(value, session)
    raise TypeError("ffibox: cannot pass a %r argument" % (t,))


def _encode_aggregate(t, value, builder, session):
    """A record or array holding pointers into client memory, field by field."""
    if _types.is_array(t):
        return pb.Value(aggregate=pb.Aggregate(elements=[
            encode_stored(t._type_, value, i * _ct.sizeof(t._type_), builder, session)
            for i in range(t._length_)]))
    elements = []
    for entry in _types.all_fields(t):
        offset = getattr(t, entry[0]).offset
        if len(entry) > 2:
            elements.append(pb.Value(int_value=getattr(value, entry[0])))
        else:
            elements.append(encode_stored(entry[1], value, offset, builder, session))
        if isinstance(t, type(_ct.Union)):
            break
    return pb.Value(aggregate=pb.Aggregate(elements=elements))


def encode_stored(t, owner, offset: int, builder, session):
    """The Value of the `t` stored at `offset` inside local object `owner`."""
    address = _ct.addressof(owner) + offset
    if _types.is_pointer(t) or _types.code_of(t) in ("P", "z", "Z") or _types.is_function(t):
        return builder.local_pointer(_types.word_at(address).value or 0)
    if _types.is_record(t) or _types.is_array(t):
        return _encode_aggregate(t, _types.local_at(t, address), builder, session)
    return _encode_simple(t, _types.local_at(t, address), builder, session)


def _scalar_value(code: str, number):
    if code == "?":
        return pb.Value(bool_value=bool(number))
    if code in _types.FLOAT_CODES:
        return pb.Value(float_value=number)
    if code in _types.UNSIGNED_CODES:
        return pb.Value(uint_value=number)
    return pb.Value(int_value=number)


def _encode_simple(t, value, builder, session):
    code = t._type_
    if code in ("z", "Z", "P"):
        return _encode_string_or_void(t, code, value, builder, session)
    if isinstance(value, (_ct._SimpleCData,)) and type(value)._type_ == code:
        number = value.value
    else:
        t.from_param(value)  # raises TypeError exactly where ctypes does
        number = t(value).value
    if code == "c":
        return pb.Value(int_value=_ct.c_byte(number[0]).value)
    if code == "u":
        return pb.Value(int_value=ord(number))
    if builder is not None and number and _ct.sizeof(t) == 8 and code not in _types.FLOAT_CODES:
        # A pointer-sized integer inside caller memory a call reached (an address that came
        # back as an integer) goes as that memory's worker address, as results come back.
        mapped = builder.worker_integer(number)
        if mapped is not None:
            number = mapped
    return _scalar_value(code, number)


def _encode_string_or_void(t, code, value, builder, session):
    if value is None:
        return _NULL
    if isinstance(value, RemotePointer):
        return remote_value(value.address, value.generation)
    if isinstance(value, int) and not isinstance(value, bool):
        if builder is not None and session.twins.owner_at(value) is not None:
            return builder.local_pointer(value)  # the caller's object (an earlier result)
        if value and _addresses.locally_mapped(value):
            # An address of this process as user data: if the library hands it back, it is
            # the caller's (ffibox._addresses).
            _addresses.note_local_address(value)
        return remote_value(value, session.generation)
    if isinstance(value, bytes) and code in ("z", "P") and builder is not None:
        return _block_pointer(builder, builder.add_bytes(value))
    if isinstance(value, str) and code in ("Z", "P") and builder is not None:
        return _block_pointer(builder, builder.add_bytes(value.encode("utf-32-le"),
                                                         b"\0\0\0\0", value))
    if code == "z" and isinstance(value, bytes):
        return pb.Value(bytes_value=value)
    if code == "Z" and isinstance(value, str):
        return pb.Value(text_value=value)
    if isinstance(value, _CArgObject) and builder is not None:
        t.from_param(value)  # c_char_p refuses byref(c_int), as in ctypes
        return _byref_value(value, builder)
    if isinstance(value, _ct._SimpleCData) and type(value)._type_ in ("z", "Z", "P"):
        at = address_of(value)
        if at is not None and _remote.view_address(value) is None:
            # A c_char_p result bound to the worker's string: that address.
            return remote_value(at.address, at.generation)
        if type(value)._type_ == "P":
            # cast(local_object, c_void_p) keeps the object in _objects (ffibox's cast also
            # keeps cast bytes): ship what it points into.
            keep = getattr(value, "_objects", None) or getattr(value, "_ffibox_keep", None)
            if builder is not None and keep:
                return builder.local_pointer_via(value.value or 0, keep)
            return _encode_string_or_void(t, code, value.value, builder, session)
        address = _ct.c_void_p.from_buffer(value).value or 0
        mapped = session.images.worker_address(address) if address else None
        if mapped is not None:
            return remote_value(*mapped)
        if builder is not None and builder.locate(address) is not None:
            return builder.local_pointer(address)
        # A c_char_p / c_wchar_p object of the caller: its string travels with the call (a
        # c_char_p made from bytes at the twin of those bytes).
        text = value.value
        if text is None:
            return _NULL
        wide = type(value)._type_ == "Z"
        kept = getattr(value, "_objects", None)
        if builder is not None and isinstance(kept, bytes) and address == _bytes_address(kept):
            return _block_pointer(builder, builder.add_bytes(kept))
        if code == "P":
            if builder is None:
                raise TypeError("ffibox: client strings cannot be returned from a callback")
            return _block_pointer(builder, builder.add_bytes(
                text.encode("utf-32-le") if wide else text, b"\0\0\0\0" if wide else b"\0"))
        return pb.Value(text_value=text) if wide else pb.Value(bytes_value=text)
    if builder is not None and isinstance(value, _ct.Array) and (
            code == "P" or value._type_ is {"z": _ct.c_char, "Z": _ct.c_wchar}[code]):
        return builder.pointer_to(value)
    if builder is not None and isinstance(value, _ct._Pointer) and (
            code == "P" or value._type_ is {"z": _ct.c_char, "Z": _ct.c_wchar}[code]):
        return builder.local_pointer_via(_ct.cast(value, _ct.c_void_p).value or 0,
                                         getattr(value, "_objects", None))
    if code == "P" and _types.is_function(type(value)):
        return _encode_function(value, session)
    raise TypeError("wrong type")


def _block_pointer(builder, index: int):
    return pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=index)))


def _byref_value(value, builder):
    obj = value._obj
    match = _ADDRESS_IN_REPR.search(repr(value))
    offset = int(match.group(1), 16) - _ct.addressof(obj) if match else 0
    return builder.pointer_to(obj, offset)


def _encode_pointer(t, value, builder, session):
    target = t._type_
    if value is None:
        return _NULL
    if isinstance(value, RemotePointer):
        return remote_value(value.address, value.generation)
    at = _remote.view_address(value)
    if at is not None:  # a view of worker memory (.contents, in_dll): its worker address
        return remote_value(at.address, at.generation)
    if isinstance(value, _CArgObject) and _remote.view_address(value._obj) is not None:
        base = _remote.view_address(value._obj)
        match = _ADDRESS_IN_REPR.search(repr(value))
        offset = int(match.group(1), 16) - _ct.addressof(value._obj) if match else 0
        return remote_value(base.address + offset, base.generation)
    if builder is None:
        raise TypeError("ffibox: a pointer to client memory cannot leave a callback")
    if isinstance(value, _CArgObject):
        t.from_param(value)  # byref of another type: the TypeError ctypes raises
        return _byref_value(value, builder)
    # As ctypes: bytes for POINTER(c_char), str for POINTER(c_wchar) (NUL-terminated).
    if isinstance(value, bytes) and target is _ct.c_char:
        return _block_pointer(builder, builder.add_bytes(value))
    if isinstance(value, str) and target is _ct.c_wchar:
        return _block_pointer(builder, builder.add_bytes(value.encode("utf-32-le"),
                                                         b"\0\0\0\0", value))
    if isinstance(value, _ct.Array) and (value._type_ is target or isinstance(value, t)):
        return builder.pointer_to(value)
    if isinstance(value, _ct._SimpleCData) and (target, type(value)._type_) in (
            (_ct.c_char, "z"), (_ct.c_wchar, "Z")):
        # As ctypes: a c_char_p / c_wchar_p for POINTER(c_char) / POINTER(c_wchar).
        return _encode_string_or_void(_ct.c_void_p, "P", value, builder, session)
    if isinstance(value, _ct._Pointer) and (value._type_ is target or isinstance(value, t)):
        builder.add_object(value)
        return builder.local_pointer(_ct.cast(value, _ct.c_void_p).value or 0)
    if isinstance(value, target):
        return builder.pointer_to(value)
    t.from_param(value)  # the TypeError ctypes raises
    raise TypeError("expected %s instance instead of %s" % (t.__name__, type(value).__name__))


def _encode_function(value, session):
    if value is None:
        return _NULL
    at = address_of(value) if _types.is_function(type(value)) else None
    if at is not None:  # a function of the worker
        return remote_value(at.address, at.generation)
    original = getattr(value, "_ffibox_cast_of", None)
    if original is not None:  # cast(callback, OTHER_PROTOTYPE): still that callback
        return _encode_function(original, session)
    if _types.is_function(type(value)) and getattr(value, "_ffibox_callable", None) is None \
            and not value:
        return _NULL  # PROTOTYPE(): a NULL function pointer (how bindings unset callbacks)
    if getattr(value, "_ffibox_callable", None) is not None:
        return pb.Value(pointer=pb.PointerValue(callback=session.callback_id(value)))
    if isinstance(value, int):
        return remote_value(value, session.generation)
    raise TypeError("expected a CFUNCTYPE callback instead of %s" % type(value).__name__)


# -- results ---------------------------------------------------------------------------

def decode(t, value, session, generation: int):
    """The Python object ctypes returns for a result (or callback argument) of type `t`."""
    if t is None:
        return None
    kind = value.WhichOneof("kind")
    if _types.is_simple(t):
        code = t._type_
        if code in ("z", "Z", "P"):
            if kind == "pointer":
                address = value.pointer.remote.address if value.pointer.HasField(
                    "remote") else 0
                if code in ("z", "Z") and address and not _types.is_fundamental(t):
                    # A c_char_p subclass result stays bound to the worker's string (.value
                    # reads it), so passing it back (to a free function) passes that address.
                    return _remote.string_pointer(t, WorkerAddress(session, address, generation))
                if code == "P":
                    # Into caller memory a call reached: the caller's own address, as with
                    # ctypes; elsewhere the worker's, remembered as such.
                    twin = session.twins.local(address, generation) if address else None
                    if twin is not None:
                        address = twin[1]
                    else:
                        _addresses.note_worker_address(address)
                    result = address or None
                elif address:
                    result = session.memory.read_string(address, code == "Z", generation)
                else:
                    result = None
            else:
                result = value.bytes_value if code == "z" else value.text_value
        elif kind == "raw":
            result = t.from_buffer_copy(value.raw).value
        else:
            number = getattr(value, kind) if kind else 0
            if code == "c":
                result = bytes([number & 0xFF]) if isinstance(number, int) else number
            elif code == "u":
                result = chr(number)
            elif code == "?":
                result = bool(number)
            else:
                result = number
                if _ct.sizeof(t) == 8 and code not in _types.FLOAT_CODES and number:
                    # A pointer-sized integer inside caller memory a call reached is that
                    # memory's address (code that returns addresses as c_long / c_size_t).
                    twin = session.twins.local(number & (1 << 64) - 1, generation)
                    if twin is not None:
                        result = twin[1]
        return result if _types.is_fundamental(t) else t(result)
    if _types.is_pointer(t):
        address = value.pointer.remote.address if value.pointer.HasField("remote") else 0
        generation = value.pointer.remote.generation or generation
        twin = session.twins.local(address, generation) if address else None
        if twin is not None:  # into caller memory a call reached: the caller's own object
            result = _ct.cast(_ct.c_void_p(twin[1]), t)
            result._ffibox_twin_owner = twin[0]
            return result
        return RemotePointer(session, address, generation, t._type_)
    if _types.is_record(t) or _types.is_array(t):
        # A record or array by value holds worker addresses in its pointer fields: images.
        result = t.from_buffer_copy(value.raw)
        session.images.convert_slots(result, generation)
        return result
    if _types.is_function(t):
        address = value.pointer.remote.address if value.pointer.HasField("remote") else 0
        return _remote.function_pointer(t, WorkerAddress(session, address, generation))
    raise TypeError("ffibox: cannot decode a %r" % (t,))
