"""Precompiled packers for the calls code makes most often: a function whose parameters and
result are fundamental scalar types (c_int, c_uint, c_long, c_size_t, c_double, c_float,
c_bool, ...; no pointer, string or character type), on the same-host channel.

A packer is made once per function and signature. It writes each call's request in
protobuf's wire format from a prefix made once (the request's field tags and the function's
handle) and the arguments' values. It reads an answer of the one shape the worker gives
such a call (the id, the generation, the result, nothing else) straight from its bytes. Any
other answer (an error, changed blocks, a field it does not expect) is parsed and checked
in full by protobuf (LocalChannel.checked_answer) and handled as every call's answer.

Values are converted as ffibox._marshal converts them, which is ctypes' own conversion: an
argument of another Python type than the parameter's usual one (an int for a c_int, an int
or float for a c_double, a bool for a c_bool) goes the general way (`pack` gives None), so
its error is the one ctypes raises. A pointer-sized integer equal to an address inside
caller memory a call reached goes the general way too (ffibox._blocks maps it).
"""
import ctypes as _ct
import struct
from typing import Optional

from ffibox import _types
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
# A whole Call.args field of a double, and of a bool.
_FLOAT_ARG = _ARG + b"\x09" + _FLOAT_TAG
_TRUE_ARG, _FALSE_ARG = _ARG + b"\x02\x08\x01", _ARG + b"\x02\x08\x00"
_SIGNED, _UNSIGNED = frozenset("bhilq"), frozenset("BHILQ")
_MASK64 = (1 << 64) - 1
_SMALL = [bytes((number,)) for number in range(0x80)]  # the one-byte varints
# The longest answer a packed call takes: its result is a scalar (a few bytes), an error a
# message; a worker that announces more ends the channel instead of making the caller hold it.
PACKED_ANSWER_BYTES = 1 << 20


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
    fundamental scalar type), or None when it must go the general way (another Python type;
    an integer that is an address inside a twin of `twins`, for a pointer-sized `t`).
    Raises what the conversion raises (TypeError, ValueError, OverflowError)."""
    kind, convert = _kind(t), _converter(t)
    if kind == _BOOL:
        def encode(value, twins):
            if type(value) is not bool:
                return None
            return _TRUE_ARG if value else _FALSE_ARG
        return encode
    if kind == _FLOAT:
        def encode(value, twins):
            kind_of_value = type(value)
            if kind_of_value is not float and kind_of_value is not int:
                return None
            return _FLOAT_ARG + _DOUBLE.pack(convert(value))
        return encode
    signed, word = kind == _INT, _ct.sizeof(t) == 8
    tag = _INT_TAG if signed else _UINT_TAG
    # The whole field of each value whose varint is one byte (most arguments).
    small = [_ARG + b"\x02" + tag + _SMALL[number] for number in range(0x80)]

    def encode(value, twins):
        if type(value) is not int:
            return None
        number = convert(value)
        if word and number and twins.twin_at(number & _MASK64) is not None:
            return None
        if signed:
            number = (number << 1) ^ (number >> 63)
        if number < 0x80:
            return small[number]
        encoded = tag + _varint(number)
        return _ARG + _SMALL[len(encoded)] + encoded
    return encode


def packable(argtypes, restype) -> bool:
    """Whether calls with these (checked) argtypes and restype can have a packer: all of
    them fundamental scalar types (restype None: void)."""
    return argtypes is not None and all(_kind(t) is not None for t in argtypes) and (
        restype is None or _kind(restype) is not None)


class Packer:
    """Packs calls of function `handle` with one `packable` signature and reads their
    answers."""

    def __init__(self, handle: int, argtypes, restype) -> None:
        self.function = handle
        self._encoders = tuple(_encoder(t) for t in argtypes)
        self._restype = restype
        result_kind = None if restype is None else _kind(restype)
        self._result_kind = result_kind
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
        self._call_prefix = _FUNCTION + _varint(handle)

    def pack(self, args, twins) -> Optional["Packed"]:
        """The call with `args`, packed; None when one of them must go the general way
        (another Python type, a wrong count, an integer inside a twin of `twins`)."""
        encoders = self._encoders
        if len(args) != len(encoders):
            return None
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

    def read(self, head: bytes, answer: bytes) -> Optional[Done]:
        """The result in `answer` when it has the one shape expected (starting with `head`,
        the request's id field), each length in one byte, else None (the answer is then
        parsed and checked in full)."""
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
        fixed = self._fixed
        if fixed is not None:
            if not answer.startswith(fixed, at):
                return None
            if self._restype is None:
                return Done(None) if end == at + 2 else None
            # As ffibox._marshal.decode gives a fundamental type's result: the worker's value.
            return Done(_DOUBLE.unpack_from(answer, at + 5)[0]) if end == at + 13 else None
        # The call field, its result field and the value's tag, then the value's varint.
        if end - at < 6 or answer[at] != _CALL_TAG or answer[at + 2] != _RESULT_TAG or \
                answer[at + 4] != self._result_kind:
            return None
        length = answer[at + 1]
        if at + 2 + length != end or answer[at + 3] != length - 2:
            return None
        number, after = _read_varint(answer, at + 5)
        if number is None or after != end:
            return None
        if self._result_kind == _BOOL:
            return Done(bool(number))
        if self._result_kind == _INT:
            number = (number >> 1) ^ -(number & 1)
        return Done(number)


class Packed:
    """One call, packed: what _stream.Stream.send_packed sends and reads (`exchange`)."""

    __slots__ = ("_packer", "_body", "function")

    def __init__(self, packer: Packer, call: bytes) -> None:
        self._packer = packer
        self._body = _CALL + _varint(len(call)) + call  # the Request's call field
        self.function = packer.function

    def payload(self, request_id: int) -> bytes:
        """The serialized Request, with `request_id`."""
        return _ID + _varint(request_id) + self._body

    def exchange(self, local, request_id: int, deadline: float):
        """The call sent on the same-host channel `local` as request `request_id`: Done with
        the result when the worker's answer has the one shape expected, else the answer
        parsed and checked in full (a pb.Response, LocalChannel.checked_answer); the
        channel's errors."""
        head = _ID + _varint(request_id)  # the request's id field, as its answer starts
        payload = head + self._body
        answer = local.transfer(payload, deadline, PACKED_ANSWER_BYTES)
        done = self._packer.read(head, answer)
        if done is not None:
            return done
        return local.checked_answer(pb.Request.FromString(payload), answer)
