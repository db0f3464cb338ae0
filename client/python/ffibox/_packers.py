"""Precompiled packers for the calls code makes most often, on the same-host channel: a
function whose result is void, a fundamental scalar type (c_int, c_uint, c_long, c_size_t,
c_double, c_float, c_bool, ...; no character type), c_void_p or c_char_p, and whose
parameters are fundamental scalar types or pointers (c_char_p, c_void_p, POINTER(T)).

A packer is made once per function and signature. It writes each call's request in
protobuf's wire format from a prefix made once (the request's field tags and the function's
handle) and the arguments' values. It reads an answer of the one shape the worker gives
such a call (the id, the generation, the result, the bytes of the caller's buffers it
passed, where it kept the strings it was asked to keep, nothing else) straight from its
bytes. Any other answer (an error, changed blocks, pointers the library wrote, a field it
does not expect) is parsed and checked in full by protobuf (LocalChannel.checked_answer)
and handled as every call's answer.

Values are converted as ffibox._marshal converts them, which is ctypes' own conversion: an
argument of another Python type than the parameter's usual one (an int for a c_int, an int
or float for a c_double, a bool for a c_bool) goes the general way (`pack` gives None), so
its error is the one ctypes raises. A pointer-sized integer equal to an address inside
caller memory a call reached, or inside an image of worker memory (ffibox._images), goes
the general way too (ffibox._blocks maps it).

A pointer argument is packed when it is None (NULL), bytes (for c_char_p, c_void_p or
POINTER(c_char)), an array that owns its memory and holds no pointer (for c_void_p, for
c_char_p when its elements are c_char, for POINTER(T) when they are T), or byref of an object
that owns its memory and holds no pointer, at its start (for c_void_p, for POINTER(T) when it
is a T), 16 KiB of them in all. They travel INOUT, as ffibox._blocks ships them (bytes too:
C writes into them in place with ctypes): placed at the object's worker twin (ffibox._twins) when an earlier call made one that
no call in flight uses, else kept by the worker (a new string, buffer or out-parameter each
call), watched either way, the twin recorded from the answer. The objects' bytes are written
back before their twins are free again. A call that keeps an object, or finds objects
collected, also releases the twins nothing holds any more (Call.release), as every call of
the general way does (a scalar call that finds objects collected is packed that way too).
An object passed twice, one whose twin another call uses, a view, an array made from_buffer
or from_address, byref with an offset, a larger object and anything else go the general way.
"""
import ctypes as _ct
import functools
import struct
from types import BuiltinFunctionType
from typing import Optional

from ffibox import _addresses, _callback_code, _twins, _types
from ffibox._answer_shape import CALL_ANSWER_BASE_BYTES
from ffibox._image_reach import INDEX
from ffibox._stubs import pb

_DOUBLE = struct.Struct("<d")
# Wire tags: Request.id (1, varint), Request.call (13, bytes); Call.function (1, varint),
# Call.args (2, bytes); Value.bool_value (1, varint), int_value (2, zigzag varint),
# uint_value (3, varint), float_value (4, 64-bit); Response.id (1), Response.generation (3,
# varint), Response.call (13); CallResult.result (1, bytes).
_ID, _CALL, _FUNCTION, _ARG = b"\x08", b"\x6a", b"\x08", b"\x12"
_BOOL, _INT, _UINT, _FLOAT = 0x08, 0x10, 0x18, 0x21
_GENERATION_TAG, _CALL_TAG, _RESULT_TAG = 0x18, 0x6a, 0x0a
_FLOAT_TAG, _INT_TAG, _UINT_TAG = bytes((_FLOAT,)), bytes((_INT,)), bytes((_UINT,))
# A c_void_p result (Value.pointer): NULL, or a worker address (PointerValue.remote).
_POINTER = 0x3a
_NULL_POINTER = b"\x3a\x02\x08\x01"
# A c_char_p result: the string's bytes, which the worker read (Value.bytes_value), or NULL.
_TEXT = 0x2a
_REMOTE_TAG, _ADDRESS_TAG, _GENERATION_IN_ADDRESS_TAG = 0x12, 0x08, 0x10
# Call.blocks (3); MemoryBlock.data (1), size (2), direction (3, IN 1, INOUT 3), at (6),
# watch (7); CallResult.blocks (2); BlockContents.block (1), data (2).
_BLOCK, _DATA, _SIZE, _AT, _WATCH = b"\x1a", b"\x0a", b"\x10", b"\x32", b"\x38\x01"
_IN, _INOUT = b"\x18\x01", b"\x18\x03"
_RETURNED_TAG, _BLOCK_INDEX, _RETURNED_DATA = b"\x12", b"\x08", b"\x12"
# MemoryBlock.only_if_changed (9): bytes come back only when the library wrote them.
_IF_CHANGED = b"\x48\x01"
# MemoryBlock.keep (5); Call.release (8, RemoteAddress); CallResult.kept (4): KeptBlock.block
# (1), address (2).
_KEEP, _RELEASE, _KEPT_TAG = b"\x28\x01", b"\x42", 0x22
# A packed call's blocks together: well under the smallest request a worker reads and the
# shared area's blocks (ffibox._local_channel.MIN_SHARED_BLOCK_BYTES).
_MOST_BLOCK_BYTES = 16 << 10
# A whole Call.args field of a double, and of a bool.
_FLOAT_ARG = _ARG + b"\x09" + _FLOAT_TAG
_TRUE_ARG, _FALSE_ARG = _ARG + b"\x02\x08\x01", _ARG + b"\x02\x08\x00"
_SIGNED, _UNSIGNED = frozenset("bhilq"), frozenset("BHILQ")
_MASK64 = (1 << 64) - 1
_LEAST_MAPPED = 1 << 16
_SMALL = [bytes((number,)) for number in range(0x80)]  # the one-byte varints
# The longest answer a packed call takes: its result is a scalar or a string, its arrays at
# most _MOST_BLOCK_BYTES (within the room _answer_shape.CALL_ANSWER_BASE_BYTES leaves), an
# error a message, and what the library changed in watched twins and images; a worker that
# announces more ends the channel instead of making the caller hold it.
PACKED_ANSWER_BYTES = CALL_ANSWER_BASE_BYTES


class Done:
    """A packed call's answer, read: the function's result (None for void)."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value


def _varint(number: int) -> bytes:
    if 0 <= number < 0x80:
        return _SMALL[number]
    if 0 <= number < 0x4000:
        return bytes((number & 0x7F | 0x80, number >> 7))
    if 0 <= number < 0x200000:  # a session's request ids, for its first two million calls
        return bytes((number & 0x7F | 0x80, number >> 7 & 0x7F | 0x80, number >> 14))
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _read_varint(data: bytes, at: int):
    """(the varint at `at`, the position after it); (None, at) when there is none."""
    if at < len(data) and data[at] < 0x80:  # one byte: most of them
        return data[at], at + 1
    number, shift = 0, 0
    while at < len(data) and shift < 64:
        byte = data[at]
        number |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            # Wider than 64 bits is no varint a worker may send (protobuf would cut it).
            return (number, at) if number <= _MASK64 else (None, at)
        shift += 7
    return None, at


def _kind(t) -> Optional[int]:
    """The Value tag a fundamental scalar type travels in, None for the others."""
    if not _types.is_fundamental(t):
        return None
    code = t._type_
    if code == "?":
        return _BOOL
    if code in ("f", "d"):
        return _FLOAT
    if code in _SIGNED:
        return _INT
    if code in _UNSIGNED:
        return _UINT
    return None


def _converter(t):
    """The value ctypes gives an argument of type `t` (a float, or an int or float for a
    double; an int for an integer type), as `t(value).value` gives it."""
    code = t._type_
    if code == "d":
        return float
    if code in _SIGNED or code in _UNSIGNED:
        bits = 8 * _ct.sizeof(t)
        mask, half = (1 << bits) - 1, 1 << (bits - 1)
        if code in _UNSIGNED:
            return lambda value: value & mask
        return lambda value: ((value + half) & mask) - half
    return lambda value: t(value).value


def _encoder(t):
    """encode(value, twins): the whole Call.args field of `value` passed as a `t` (a
    fundamental scalar type): a Python number, or a `t` itself (`c_size_t(n)`), whose value
    ctypes passes; None when it must go the general way (another type; an integer that is an
    address inside a twin of `twins`, an image or a callback's code, for a pointer-sized
    `t`).
    Raises what the conversion raises (TypeError, ValueError, OverflowError)."""
    kind, convert = _kind(t), _converter(t)
    if kind == _BOOL:
        def encode(value, twins):
            kind_of_value = type(value)
            if kind_of_value is not bool:
                if kind_of_value is not t:
                    return None
                value = value.value
            return _TRUE_ARG if value else _FALSE_ARG
        return encode
    if kind == _FLOAT:
        def encode(value, twins):
            kind_of_value = type(value)
            if kind_of_value is not float and kind_of_value is not int:
                if kind_of_value is not t:
                    return None
                value = value.value
            return _FLOAT_ARG + _DOUBLE.pack(convert(value))
        return encode
    signed, word = kind == _INT, _ct.sizeof(t) == 8
    tag = _INT_TAG if signed else _UINT_TAG
    # The whole field of each value whose varint is one byte (most arguments).
    small = [_ARG + b"\x02" + tag + _SMALL[number] for number in range(0x80)]

    def encode(value, twins):
        kind_of_value = type(value)
        if kind_of_value is not int:
            if kind_of_value is not t:
                return None
            value = value.value
        number = convert(value)
        # Small numbers, most such arguments (sizes, counts), are no address of an object.
        if word and number >= _LEAST_MAPPED and (
                twins.twin_at(number) is not None or _in_an_image(number) or
                number in _callback_code.local_callbacks):
            return None
        if signed:
            number = (number << 1) ^ (number >> 63)
        if number < 0x80:
            return small[number]
        encoded = tag + _varint(number)
        return _ARG + _SMALL[len(encoded)] + encoded
    return encode


def _in_an_image(address: int) -> bool:
    """Whether `address` lies in an image of worker memory (ffibox._images), which the
    general way sends as that worker address. Small numbers, most such arguments (sizes,
    counts), are looked up nowhere: no ctypes object lives in the first 64 KiB of the
    address space (its memory is the allocator's, whose heap follows the program's binary
    and whose mappings the kernel places near the top)."""
    return address >= _LEAST_MAPPED and not INDEX.in_no_image(address) and \
        INDEX.holding(address) is not None


def _is_void_pointer(t) -> bool:
    return _types.is_fundamental(t) and t._type_ == "P"


def _is_string(t) -> bool:
    return _types.is_fundamental(t) and t._type_ == "z"


def _plain_memory(t) -> bool:
    """Whether objects of ctypes type `t` are plain bytes to a library: a scalar, an array, a
    structure or a union holding no pointer (nor a Python object), not a view of worker
    memory."""
    if hasattr(t, "_ffibox_base"):
        return False
    if _types.is_simple(t):
        return t._type_ not in ("z", "Z", "P", "O")
    return (_types.is_array(t) or _types.is_record(t)) and not _types.pointer_offsets(t)


def _pointer_encoder(t):
    """encode(value, twins, held, generation) for a pointer parameter of type `t` (c_char_p,
    c_void_p, POINTER(T)), as _encoder: None when `value` is not None, bytes, an array of its
    own this parameter takes, byref of such an object or (for POINTER(T)) a T of its own
    (the general way ships it). Appends to `held` what the call places (at a free twin of
    `generation` in `twins`, or to be kept):
    (the twin, held until Packed.release, or None; the object to copy back into, bytes
    too; its size; the block's bytes; its direction; the object to keep, or None;
    _IF_CHANGED for bytes, else empty).
    Returns the Call.args field of a pointer to that block, or of NULL for None."""
    void = _is_void_pointer(t)
    target = _ct.c_char if not _types.is_pointer(t) else t._type_
    takes_bytes = void or target is _ct.c_char
    arrays = {}  # array type -> whether it is one this parameter takes as a plain buffer
    targets = {}  # type of a byref target -> whether this parameter takes it as plain memory

    def takes(array_type) -> bool:
        took = arrays.get(array_type)
        if took is None:
            took = (_types.is_array(array_type) and
                    not hasattr(array_type, "_ffibox_base") and  # not a view of worker memory
                    (void or array_type._type_ is target) and
                    not _types.pointer_offsets(array_type))
            arrays[array_type] = took
        return took

    def takes_target(target_type) -> bool:
        # As ctypes' from_param: c_void_p takes byref of anything, POINTER(T) of a T, and
        # c_char_p of nothing.
        took = targets.get(target_type)
        if took is None:
            took = (void or (_types.is_pointer(t) and target_type is target)) and \
                _plain_memory(target_type)
            targets[target_type] = took
        return took

    # POINTER(T) takes a T as byref of it (not POINTER(c_char) a c_char: ctypes refuses it).
    takes_by_reference = not void and target not in (_ct.c_char, _ct.c_wchar) and \
        takes_target(target)

    def encode(value, twins, held, generation):
        kind_of_value = type(value)
        if void and kind_of_value is t:  # a c_void_p itself: its address, as ctypes passes it
            value = value.value
            kind_of_value = type(value)
        if value is None:
            return _NULL_ARG
        if kind_of_value is int:
            # A handle the worker of this generation handed out (a c_void_p result): its
            # address, as the general way sends it; any other integer (the caller's own, one
            # inside a twin or of a callback) goes the general way.
            if not void or not generation or twins.handed(value) != generation or \
                    value in _callback_code.local_callbacks or twins.twin_at(value) is not None:
                return None
            return _remote_arg(value, generation)
        if len(held) >= len(_BLOCK_ARGS):
            return None
        if kind_of_value is bytes:
            size = len(value) + 1
            if not takes_bytes or size > _MOST_BLOCK_BYTES:
                return None
            data = value + b"\0"
            twin = twins.hold(value, size, generation)
            # INOUT, as the general way ships bytes: what the library writes into them is
            # written into the object (they come back only then).
            if twin is None:  # its first call: the worker keeps it, as the general way asks
                if not twins.begin_keep(value):
                    return None
                entry = (None, value, size, data, _INOUT, value, _IF_CHANGED)
            else:
                entry = (twin, value, size, data, _INOUT, None, _IF_CHANGED)
        else:
            # An array that owns its memory, or byref(obj) of an object that does, at its
            # start: no other argument's memory overlaps it (one made from_buffer or
            # from_address may alias another, which the general way ships once).
            if kind_of_value is _CArgObject:
                owner = value._obj
                if not takes_target(type(owner)) or not owner._b_needsfree_ or \
                        not repr(value).endswith("(%#x)>" % _ct.addressof(owner)):
                    return None  # another type (ctypes' TypeError), a view, an offset
            elif takes(kind_of_value) and value._b_needsfree_:
                owner = value
            elif kind_of_value is target and takes_by_reference and value._b_needsfree_:
                owner = value  # a POINTER(T) parameter takes a T as byref of it, as ctypes
            else:
                return None
            size = _ct.sizeof(owner)  # its type's size, or what ctypes.resize made it
            if not 0 < size <= _MOST_BLOCK_BYTES:
                return None
            data = bytes(owner)  # its memory
            twin = twins.hold(owner, size, generation)
            if twin is not None:
                entry = (twin, owner, size, data, _INOUT, None, b"")
            elif twins.begin_keep(owner):  # its first call: kept, as the general way asks
                entry = (None, owner, size, data, _INOUT, owner, b"")
            else:
                return None
        try:
            held.append(entry)
        except BaseException:  # out of memory, or interrupted: the twin is not held
            _let_go(twins, (entry,))
            raise
        return _BLOCK_ARGS[len(held) - 1]
    return encode


def _let_go(twins, held) -> None:
    """Frees what `held` entries hold: their twins, and the owners they were keeping."""
    placed = [entry[0] for entry in held if entry[0] is not None]
    if placed:
        twins.unhold(placed)
    keeping = [entry[5] for entry in held if entry[5] is not None]
    if keeping:
        twins.keeps_done(keeping)


def _block_arg(index: int) -> bytes:
    """The whole Call.args field of a pointer to the start of block `index`."""
    block_ref = (_BLOCK_INDEX + _varint(index)) if index else b""
    pointer = b"\x1a" + _SMALL[len(block_ref)] + block_ref
    value = bytes((_POINTER,)) + _SMALL[len(pointer)] + pointer
    return _ARG + _SMALL[len(value)] + value


_BLOCK_ARGS = [_block_arg(index) for index in range(16)]
# The whole Call.args field of NULL.
_NULL_ARG = _ARG + _SMALL[len(_NULL_POINTER)] + _NULL_POINTER


def _remote_arg(address: int, generation: int) -> bytes:
    """The whole Call.args field of a pointer to worker `address` of `generation`."""
    remote = bytes((_ADDRESS_TAG,)) + _varint(address) + \
        bytes((_GENERATION_IN_ADDRESS_TAG,)) + _varint(generation)
    pointer = bytes((_REMOTE_TAG,)) + _SMALL[len(remote)] + remote
    value = bytes((_POINTER,)) + _SMALL[len(pointer)] + pointer
    return _ARG + _SMALL[len(value)] + value
_CArgObject = type(_ct.byref(_ct.c_int()))


@functools.lru_cache(maxsize=4096)
def _place(worker: int, generation: int) -> bytes:
    """The MemoryBlock.at and .watch fields of a block placed at a twin's worker address."""
    at = bytes((_ADDRESS_TAG,)) + _varint(worker)
    if generation:
        at += bytes((_GENERATION_IN_ADDRESS_TAG,)) + _varint(generation)
    return _AT + _SMALL[len(at)] + at + _WATCH


@functools.lru_cache(maxsize=4096)
def _returned_prefix(index: int, size: int) -> bytes:
    """How CallResult.blocks starts for the `size` bytes of block `index`."""
    inner = (_BLOCK_INDEX + _varint(index) if index else b"") + _RETURNED_DATA + _varint(size)
    return _RETURNED_TAG + _varint(len(inner) + size) + inner


def _write_back(owner, data: bytes) -> None:
    """Writes a returned block's bytes into the object it was shipped from (a bytes object
    only where the library changed it, _twins.write_into_bytes)."""
    if type(owner) is bytes:
        _twins.write_into_bytes(owner, data)
    else:
        _ct.memmove(_ct.addressof(owner), data, len(data))


def _block(twin, data: bytes, direction: bytes, if_changed: bytes = b"") -> bytes:
    """The whole Call.blocks field of `data` placed at `twin` (None: to be kept), watched, as
    ffibox._blocks ships a twinned object (and one it has not twinned yet); `if_changed`:
    _IF_CHANGED for bytes, else empty."""
    size = _varint(len(data))
    body = b"".join((_DATA, size, data, _SIZE, size, direction,
                     _place(twin.worker, twin.generation) if twin is not None else
                     _KEEP + _WATCH, if_changed))
    return _BLOCK + _varint(len(body)) + body


def _release(address) -> bytes:
    """The whole Call.release field of RemoteAddress `address`."""
    inner = bytes((_ADDRESS_TAG,)) + _varint(address.address)
    if address.generation:
        inner += bytes((_GENERATION_IN_ADDRESS_TAG,)) + _varint(address.generation)
    return _RELEASE + _SMALL[len(inner)] + inner


def _takes_pointer(t) -> bool:
    if _types.is_fundamental(t):
        return t._type_ in ("z", "P")
    # POINTER(T) converting as ctypes does (not a subclass with a from_param of its own).
    return _types.is_pointer(t) and isinstance(getattr(t, "from_param", None),
                                                BuiltinFunctionType)


def packable(argtypes, restype) -> bool:
    """Whether calls with these (checked) argtypes and restype can have a packer: each
    parameter a fundamental scalar type or a pointer a packer takes, the result void, a
    fundamental scalar type, c_void_p or c_char_p."""
    return argtypes is not None and \
        all(_kind(t) is not None or _takes_pointer(t) for t in argtypes) and (
            restype is None or _kind(restype) is not None or _is_void_pointer(restype) or
            _is_string(restype))


class Packer:
    """Packs calls of function `handle` with one `packable` signature and reads their
    answers."""

    def __init__(self, handle: int, argtypes, restype) -> None:
        self.function = handle
        self._pointers = tuple(_kind(t) is None for t in argtypes)
        self._encoders = tuple(_pointer_encoder(t) if pointer else _encoder(t)
                               for t, pointer in zip(argtypes, self._pointers))
        self.any_pointer = any(self._pointers)
        self._restype = restype
        result_kind = None if restype is None else _kind(restype)
        self._result_kind = _POINTER if _is_void_pointer(restype) else (
            _TEXT if _is_string(restype) else result_kind)
        # What follows the answer's id and generation when the result has a fixed size:
        # the whole call field for void, and up to the 8 bytes of the value for a double.
        self._fixed = None
        if restype is None:
            self._fixed = bytes((_CALL_TAG, 0))
        elif result_kind == _FLOAT:
            self._fixed = bytes((_CALL_TAG, 11, _RESULT_TAG, 9, _FLOAT))
        # A pointer-sized integer result, which ffibox._marshal maps into caller memory
        # when it is an address inside a twin.
        self.maps_words = restype is not None and _ct.sizeof(restype) == 8 and \
            result_kind in (_INT, _UINT)
        # An integer result out of the restype's range is parsed in full, and refused there.
        bits = 0 if result_kind not in (_INT, _UINT) else 8 * _ct.sizeof(restype)
        self._result_range = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if result_kind == _INT
                              else (0, (1 << bits) - 1))
        # A c_void_p result: a worker address, mapped as ffibox._marshal.void_pointer maps it.
        self.void_pointer = self._result_kind == _POINTER
        self._call_prefix = _FUNCTION + _varint(handle)

    def pack(self, args, twins, generation: int = 0,
             releasing: bool = False) -> Optional["Packed"]:
        """The call with `args`, packed; None when one of them must go the general way
        (another Python type, a wrong count, an integer inside a twin of `twins`, memory
        another call is keeping). A call with pointer arguments, or `releasing`, also
        releases what `twins` has to release of worker `generation` when it keeps memory or
        objects were collected."""
        encoders = self._encoders
        if len(args) != len(encoders):
            return None
        if self.any_pointer or releasing:
            return self._pack_pointers(args, twins, generation)
        try:
            if len(encoders) == 1:  # the most common case, without a list
                encoded = encoders[0](args[0], twins)
                if encoded is None:
                    return None
                return Packed(self, self._call_prefix + encoded)
            parts = [self._call_prefix]
            for encode, value in zip(encoders, args):
                encoded = encode(value, twins)
                if encoded is None:
                    return None
                parts.append(encoded)
        except (TypeError, ValueError, OverflowError):
            return None  # the general way raises ctypes' error for it
        return Packed(self, b"".join(parts))

    def _pack_pointers(self, args, twins, generation: int) -> Optional["Packed"]:
        held = []
        packed = None
        try:
            parts = [self._call_prefix]
            for encode, pointer, value in zip(self._encoders, self._pointers, args):
                encoded = encode(value, twins, held, generation) if pointer else \
                    encode(value, twins)
                if encoded is None:
                    return None
                parts.append(encoded)
            if len(held) > 1 and sum(entry[2] for entry in held) > _MOST_BLOCK_BYTES:
                return None  # each alone is at most that
            keeps = False
            for entry in held:
                parts.append(_block(entry[0], entry[3], entry[4], entry[6]))
                if entry[5] is not None:
                    keeps = True
            released = ()
            if keeps or twins.has_releases():
                # A call that keeps a block releases what earlier ones kept, as every call
                # of the general way does: a new string or buffer each call does not pile
                # up; so does one that finds objects collected.
                released = twins.take_releases(generation, _twins.RELEASES_PER_CALL)
                parts.extend(_release(address) for address in released)
            packed = Packed(self, b"".join(parts), twins, held, generation, keeps, released)
            return packed
        except (TypeError, ValueError, OverflowError):
            return None  # the general way raises ctypes' error for it
        finally:
            if packed is None and held:
                _let_go(twins, held)

    def read(self, head: bytes, answer: bytes, held=(), generation: int = 0,
             kept=None) -> Optional[Done]:
        """The result in `answer` when it has the one shape expected (starting with `head`,
        the request's id field, then for each array of `held` its bytes, which are copied
        back into it, then, when `held` has objects to keep, where worker `generation` kept
        each, appended to the list `kept` as (object, size, worker address)), else None
        (the answer is then parsed and checked in full)."""
        if not answer.startswith(head):
            return None
        at, end = len(head), len(answer)
        if at + 1 < end and answer[at] == _GENERATION_TAG:
            if answer[at + 1] < 0x80:  # one byte: the first 127 workers of a session
                at += 2
            else:
                number, at = _read_varint(answer, at + 1)
                if number is None:
                    return None
        if self.any_pointer or self._result_kind == _TEXT:  # lengths of any size
            return self._read_with_blocks(answer, at, end, held, generation, kept)
        fixed = self._fixed
        if fixed is not None:
            if not answer.startswith(fixed, at):
                return None
            if self._restype is None:
                return Done(None) if end == at + 2 else None
            # As ffibox._marshal.decode gives a fundamental type's result: the worker's value.
            return Done(_DOUBLE.unpack_from(answer, at + 5)[0]) if end == at + 13 else None
        # The call field, its result field, then the value.
        if end - at < 6 or answer[at] != _CALL_TAG or answer[at + 2] != _RESULT_TAG:
            return None
        length = answer[at + 1]
        if at + 2 + length != end or answer[at + 3] != length - 2:
            return None
        return self._value(answer, at + 4, end)

    def _value(self, answer: bytes, at: int, end: int) -> Optional[Done]:
        # The result's Value, exactly answer[at:end], of the restype's kind.
        kind = self._result_kind
        if kind == _TEXT and answer.startswith(_NULL_POINTER, at):
            return Done(None) if end == at + 4 else None
        if at >= end or answer[at] != kind:
            return None
        if kind == _TEXT:  # as ffibox._marshal.decode gives a c_char_p result: its bytes
            length, after = _read_varint(answer, at + 1)
            return Done(answer[after:end]) if length is not None and after + length == end \
                else None
        if kind == _FLOAT:
            return Done(_DOUBLE.unpack_from(answer, at + 1)[0]) if end == at + 9 else None
        if kind == _POINTER:
            return self._address(answer, at, end)
        number, after = _read_varint(answer, at + 1)
        if number is None or after != end:
            return None
        if kind == _BOOL:
            return Done(bool(number))
        if kind == _INT:
            number = (number >> 1) ^ -(number & 1)
        low, high = self._result_range
        if not low <= number <= high:
            return None
        if number >= _addresses.LOWEST_NOTED:
            _addresses.note_worker_integer(number)  # a handle in this process's memory
        return Done(number)

    @staticmethod
    def _address(answer: bytes, at: int, end: int) -> Optional[Done]:
        # A c_void_p result, exactly answer[at:end]: NULL, or PointerValue.remote with a
        # non-zero address (and the generation, which the answer's own stands for); a Done
        # of the worker's address (0 for NULL).
        if answer.startswith(_NULL_POINTER, at):
            return Done(0) if end == at + 4 else None
        if not 2 <= end - at < 0x82 or answer[at + 1] != end - at - 2:
            return None
        remote = _remote_address(answer, at + 2, end)
        return None if remote is None else Done(remote[0])

    def _read_with_blocks(self, answer: bytes, at: int, end: int, held, generation: int,
                          kept) -> Optional[Done]:
        # The call field: the result, then each object's bytes in the order it was passed,
        # then where each object to keep was kept.
        if at >= end or answer[at] != _CALL_TAG:
            return None
        length, at = _read_varint(answer, at + 1)
        if length is None or at + length != end:
            return None
        done = Done(None)
        if self._restype is not None:
            if at >= end or answer[at] != _RESULT_TAG:
                return None
            length, at = _read_varint(answer, at + 1)
            if length is None or at + length > end:
                return None
            done = self._value(answer, at, at + length)
            if done is None:
                return None
            at += length
        arrays = []
        for index, entry in enumerate(held):
            owner, size = entry[1], entry[2]
            expected = _returned_prefix(index, size)
            if not answer.startswith(expected, at):
                if entry[6]:
                    continue  # bytes the library left as they were
                return None
            at += len(expected)
            arrays.append((owner, at, size))
            at += size
        addresses = []
        if kept is not None:
            for index, entry in enumerate(held):
                if entry[5] is not None:
                    address, at = _kept_address(answer, at, end, index, generation)
                    if address is None:
                        return None
                    addresses.append((entry[5], entry[2], address))
        if at != end:
            return None
        for owner, start, size in arrays:
            _write_back(owner, answer[start:start + size])
        if addresses:
            kept.extend(addresses)
        return done


def _kept_address(answer: bytes, at: int, end: int, index: int, generation: int):
    """(the worker address of a CallResult.kept entry at `at` for block `index` of worker
    `generation`, the position after it); (None, at) when answer[at:end] starts with no such
    entry or its address is NULL."""
    if at >= end or answer[at] != _KEPT_TAG:
        return None, at
    length, at = _read_varint(answer, at + 1)
    if length is None or at + length > end:
        return None, at
    stop = at + length
    if index:
        expected = _BLOCK_INDEX + _varint(index)
        if not answer.startswith(expected, at):
            return None, at
        at += len(expected)
    remote = _remote_address(answer, at, stop)  # KeptBlock.address
    if remote is None or remote[1] != generation:
        return None, at
    return remote[0], stop


def _remote_address(answer: bytes, at: int, stop: int):
    """(address, generation) of the RemoteAddress field that is exactly answer[at:stop] (its
    tag, a one-byte length, the address, then the generation if not 0) when its address is
    not NULL, else None."""
    if not 4 <= stop - at < 0x82 or answer[at] != _REMOTE_TAG or \
            at + 2 + answer[at + 1] != stop or answer[at + 2] != _ADDRESS_TAG:
        return None
    address, at = _read_varint(answer, at + 3)
    if not address or at > stop:
        return None
    generation = 0
    if at < stop:
        if answer[at] != _GENERATION_IN_ADDRESS_TAG:
            return None
        generation, at = _read_varint(answer, at + 1)
        if generation is None:
            return None
    return (address, generation) if at == stop else None


class Packed:
    """One call, packed: what _stream.Stream.send_packed sends and reads (`exchange`)."""

    __slots__ = ("_packer", "_body", "function", "_twins", "_held", "places_blocks",
                 "_generation", "_keeps", "_released")

    def __init__(self, packer: Packer, call: bytes, twins=None, held=(), generation: int = 0,
                 keeps: bool = False, released=()) -> None:
        self._packer = packer
        self._body = _CALL + _varint(len(call)) + call  # the Request's call field
        self.function = packer.function
        self._twins = twins
        # What the call placed at twins or asks the worker to keep (Packer._pack_pointers;
        # `keeps`: objects to keep among them), for worker `generation`, and the twins it
        # releases.
        self._held = held
        self.places_blocks = bool(held) or bool(released)
        self._generation = generation
        self._keeps = keeps
        self._released = released

    def payload(self, request_id: int) -> bytes:
        """The serialized Request, with `request_id`."""
        return _ID + _varint(request_id) + self._body

    def refused_by(self, local) -> bool:
        """Whether the call must go the general way rather than on channel `local`: it
        places, keeps or releases blocks for another worker than the channel's (the
        session's worker changed since it was packed), or it is larger than the worker
        reads."""
        return (bool(self._held) or bool(self._released)) and (
            self._generation != local.generation or
            local.too_large_payload(len(self._body) + 16))

    def release(self) -> None:
        """The call is over (answered, failed or never sent): the twins it placed are free
        again, and the objects it asked the worker to keep are recorded as kept or not.
        Idempotent."""
        held, self._held = self._held, ()
        if held and self._keeps:
            _let_go(self._twins, held)
        elif held:
            self._twins.unhold([entry[0] for entry in held])

    def requeue_releases(self) -> None:
        """The call was not sent (it goes the general way): the twins it was to release are
        released with a later call. Idempotent."""
        released, self._released = self._released, ()
        if released:
            self._twins.requeue(released)

    def exchange(self, local, request_id: int, deadline: float):
        """The call sent on the same-host channel `local` as request `request_id`: Done with
        the result when the worker's answer has the one shape expected (arrays passed
        copied back, objects kept recorded as twins), else the answer parsed and checked in
        full (a pb.Response, LocalChannel.checked_answer; `_copy_back` writes its arrays
        and records its kept objects); the channel's errors."""
        head = _ID + _varint(request_id)  # the request's id field, as its answer starts
        payload = head + self._body
        held = self._held
        try:
            answer = local.transfer(payload, deadline, PACKED_ANSWER_BYTES, small=not held)
            # The arrays are written back while their twins are still held: another
            # thread's call with one of them meanwhile finds it busy (and passes its worker
            # address) rather than sending bytes older than this answer's.
            kept = [] if self._keeps else None
            done = self._packer.read(head, answer, held, self._generation, kept)
            if done is not None:
                if kept:
                    for owner, size, address in kept:
                        self._twins.kept(owner, size, address, self._generation)
                return done
            response = local.checked_answer(pb.Request.FromString(payload), answer)
            self._copy_back(held, response)
            return response
        finally:
            if held:
                self.release()

    def _copy_back(self, held, response) -> None:
        # The arrays' bytes in an answer read in full, as ffibox._blocks copies back a
        # block of an object without pointer slots (checked_answer checked their sizes),
        # and where the worker kept the objects it was asked to.
        if response.HasField("error"):
            return
        for returned in response.call.blocks:
            owner = held[returned.block][1] if returned.block < len(held) else None
            if owner is not None:
                _write_back(owner, returned.data)
        # Checked: exactly the blocks asked to be kept; kept by the worker that answered,
        # whatever it says.
        for kept in response.call.kept:
            entry = held[kept.block]
            self._twins.kept(entry[5], entry[2], kept.address.address, response.generation)
