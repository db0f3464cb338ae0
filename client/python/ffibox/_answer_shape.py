"""How much a worker's answer may hold, checked on its encoding before it is parsed: the
rules of core/encoding_limits.h, for the answers the Python client reads on the same-host
channel.

A parsed message can take fifty times the bytes of its encoding and more: an empty
submessage is two bytes on the wire and a whole object once parsed. So an answer larger
than SHAPE_CHECKED_BYTES is walked first, copying nothing, and refused when it holds more
of a repeated field than the request allows (a returned block holds a pointer per word of
its data in the answer before them without counting), a singular field twice in one
message, a value longer than the message around it, or more than MAX_UNKNOWN_FIELDS fields
this client does not know. What passes parses into a bounded number of objects: the blocks
and changed runs the request allows, and pointers as many as the words of returned data,
which an honest answer may also report.
"""
from typing import Callable, Dict, Optional

from google.protobuf.descriptor import FieldDescriptor

from ffibox._stubs import pb

# core/encoding_limits.h's kMaxUnknownFields and kShapeCheckedBytes.
MAX_UNKNOWN_FIELDS = 64
SHAPE_CHECKED_BYTES = 64 << 10

# core/call_shape.h's kMaxWatchedBytes (the most bytes of one watched block or read, so the
# highest offset of a changed run) and kMaxChangedBytes: what one answer may report changed.
# A worker counts each watched block and read as whole 8-byte words and reports runs of
# words.
MAX_WATCHED_BYTES = 4 << 20
MAX_CHANGED_BYTES = 8 << 20
MAX_CHANGED_RUNS = MAX_CHANGED_BYTES // 8

# The most bytes a same-host answer may take at all (core/types.h's max_type_size: a
# record returned by value may be that large).
MAX_ANSWER_BYTES = 1 << 30
# What any call's answer may hold besides a record result and its returned blocks: a string
# result (at most 16 MiB, core/marshal.h's kMaxResultStringBytes), a scalar or pointer, an
# error's message, and what the library changed in watched blocks and reads, at most
# MAX_CHANGED_BYTES in runs of at least a word with at most 42 bytes of framing each (50 MiB
# at worst).
CALL_ANSWER_BASE_BYTES = 72 << 20
# A returned block's data with a pointer reported in each of its 8-byte words (a Relocation
# takes at most 32 bytes, framed), and the framing of each returned and kept block.
_RETURNED_BYTES_PER_BYTE = 5
_BLOCK_FRAMING = 64
# The padding a field may bring before it and a record after its last (alignments are at
# most 16 bytes).
_MOST_PADDING = 16
_UNION = 2  # pb.RecordType.UNION


def layout_bytes(t) -> int:
    """An upper bound on the layout size of the proto Type `t`, as written by a client
    (signatures inline): MAX_ANSWER_BYTES for a registered type, which it does not see."""
    kind = t.WhichOneof("kind")
    if kind == "array":
        size = t.array.length * layout_bytes(t.array.element)
    elif kind == "record":
        fields = [layout_bytes(field.type) + _MOST_PADDING for field in t.record.fields]
        size = (max(fields, default=0) if t.record.kind == _UNION else sum(fields)) + \
            _MOST_PADDING
    elif kind == "registered":
        size = MAX_ANSWER_BYTES
    else:
        size = 16  # a scalar (long double the largest), a pointer or a function pointer
    return min(size, MAX_ANSWER_BYTES)


def result_answer_bytes(signature) -> int:
    """What the result of a function of the proto `signature` adds to a call's answer beyond
    CALL_ANSWER_BASE_BYTES: a record comes back as its bytes (core/marshal.h's
    UnmarshalResult); anything else is within the base."""
    result = signature.result
    if result.WhichOneof("kind") in ("record", "registered"):
        return layout_bytes(result) + _BLOCK_FRAMING
    return 0


def call_answer_bound(request, result_bytes: Optional[int]) -> int:
    """The most bytes the worker's answer to the call `request` may take, for a function
    whose result adds `result_bytes` (result_answer_bytes; None when not known:
    MAX_ANSWER_BYTES): the base, the result, and each OUT or INOUT block's data with a
    pointer in each word, whether it returns in the frame or in the shared area."""
    if result_bytes is None:
        return MAX_ANSWER_BYTES
    bound = CALL_ANSWER_BASE_BYTES + result_bytes
    for block in request.call.blocks:
        bound += _BLOCK_FRAMING
        if block.direction != pb.IN:
            bound += _RETURNED_BYTES_PER_BYTE * (block.size if block.size else len(block.data))
    return min(bound, MAX_ANSWER_BYTES)


# The repeated fields a call's answer may hold (any other may not occur at all).
_BLOCKS = "ffibox.v1.CallResult.blocks"
_KEPT = "ffibox.v1.CallResult.kept"
_POINTERS = "ffibox.v1.BlockContents.pointers"
_CHANGED = "ffibox.v1.CallResult.changed"
_LAYOUT_FIELDS = "ffibox.v1.LayoutResult.fields"
_INVOKE_ARGS = "ffibox.v1.CallbackInvoke.args"
_INVOKE_POINTEES = "ffibox.v1.CallbackInvoke.pointees"
_INVOKE_KEPT = "ffibox.v1.CallbackInvoke.kept"
_MEMORY_READS = "ffibox.v1.MemoryDataList.reads"
# core/types.h's TypeLimits.max_args: the most parameters a callback has; max_blocks: the
# most blocks a call sends (so the most it keeps).
MAX_PARAMS = 256
MAX_BLOCKS = 4096

_BLOCK_CONTENTS = pb.BlockContents.DESCRIPTOR
_DATA_NUMBER = pb.BlockContents.DATA_FIELD_NUMBER
_POINTERS_NUMBER = pb.BlockContents.POINTERS_FIELD_NUMBER
_POINTERS_TAG = _POINTERS_NUMBER << 3 | 2

# protobuf's own bound on nesting.
_MAX_DEPTH = 100

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_WIRE_TYPE = {
    FieldDescriptor.TYPE_DOUBLE: _FIXED64, FieldDescriptor.TYPE_FLOAT: _FIXED32,
    FieldDescriptor.TYPE_INT64: _VARINT, FieldDescriptor.TYPE_UINT64: _VARINT,
    FieldDescriptor.TYPE_INT32: _VARINT, FieldDescriptor.TYPE_FIXED64: _FIXED64,
    FieldDescriptor.TYPE_FIXED32: _FIXED32, FieldDescriptor.TYPE_BOOL: _VARINT,
    FieldDescriptor.TYPE_STRING: _LENGTH, FieldDescriptor.TYPE_GROUP: 3,
    FieldDescriptor.TYPE_MESSAGE: _LENGTH, FieldDescriptor.TYPE_BYTES: _LENGTH,
    FieldDescriptor.TYPE_UINT32: _VARINT, FieldDescriptor.TYPE_ENUM: _VARINT,
    FieldDescriptor.TYPE_SFIXED32: _FIXED32, FieldDescriptor.TYPE_SFIXED64: _FIXED64,
    FieldDescriptor.TYPE_SINT32: _VARINT, FieldDescriptor.TYPE_SINT64: _VARINT,
}
_NOT_PACKABLE = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES,
                 FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP)


def call_answer_limits(request) -> Dict[str, int]:
    """What the answer to the call `request` may hold (core/encoding_limits.h's
    CallAnswerLimits): its returned blocks, its kept blocks, a pointer per 8-byte word of each
    lasting block in the shared area (whose words are scanned but whose data is not in the
    answer: any other block holds a pointer per word of its data in the answer without
    counting), and the changed runs of watched memory."""
    limits = {_BLOCKS: 0, _KEPT: 0, _POINTERS: 0, _CHANGED: MAX_CHANGED_RUNS}
    for block in request.call.blocks:
        if block.keep:
            limits[_KEPT] += 1
        if block.direction == pb.IN:
            continue
        limits[_BLOCKS] += 1
        if block.HasField("shared_offset") and (block.keep or block.HasField("at")):
            limits[_POINTERS] += (block.size if block.size else len(block.data)) // 8
    return limits


def layout_answer_limits(t) -> Dict[str, int]:
    """What the answer to get_layout of the proto Type `t` may hold: a field layout per
    field of its record."""
    return {_LAYOUT_FIELDS: len(t.record.fields) if t.HasField("record") else 0}


def read_list_limits(request) -> Dict[str, int]:
    """What the answer to the read_memory_list `request` may hold: a read per read."""
    return {_MEMORY_READS: len(request.read_memory_list.reads)}


def invoke_limits() -> Dict[str, int]:
    """What a callback invocation on the same-host channel may hold (core/encoding_limits.h's
    InvokeLimits): an argument and a pointee per parameter, of a callback's most, and where
    the call that made it placed the blocks it keeps, of a call's most (CallBuilder.
    kept_early checks them against the call)."""
    return {_INVOKE_ARGS: MAX_PARAMS, _INVOKE_POINTEES: MAX_PARAMS, _INVOKE_KEPT: MAX_BLOCKS}


class _Refused(Exception):
    pass


def _plain_pointers(data, at: int, end: int, most: int):
    """The run of at most `most` BlockContents.pointers at data[at] that protobuf wrote as
    it writes a relocation: its offset, then its target with the block and the offset, each
    at most once and nothing else, so that none holds a repeated or unknown field and none
    needs a walk of its own (a returned block may report one in every word: this keeps the
    walk of a large answer near the cost of its parse). (Where the run ends, how many it
    holds.)"""
    taken = 0
    while taken < most and at + 1 < end and data[at] == _POINTERS_TAG:
        length = data[at + 1]
        stop = at + 2 + length
        if length >= 0x80 or stop > end:
            break
        # Each field a tag byte and a varint of at most ten bytes (q - p of them), in order:
        # the offset, the target (its length ends the relocation), the target's block and
        # offset. Inline: this loop runs once per word of returned data.
        p = at + 2
        for tag in (0x08, 0x12, 0x08, 0x10):
            if p >= stop or data[p] != tag:
                if tag == 0x12:
                    break  # no target: nothing may follow the offset
                continue
            if tag == 0x12:
                if p + 1 >= stop or data[p + 1] != stop - p - 2:
                    break
                p += 2
                continue
            q = p + 1
            while q < stop and data[q] >= 0x80:
                q += 1
            if q - p > 10:
                break
            p = q + 1
        if p != stop:
            break
        at = stop
        taken += 1
    return at, taken


def check_answer_shape(answer, limits: Callable[[], Dict[str, int]],
                       descriptor=pb.Response.DESCRIPTOR) -> Optional[str]:
    """Why the encoded `answer` may not be parsed as a `descriptor` message under `limits()`
    (repeated field full name -> most occurrences in all), else None. Answers of at most
    SHAPE_CHECKED_BYTES pass unwalked, without asking for the limits."""
    if len(answer) <= SHAPE_CHECKED_BYTES:
        return None
    walk = _Walk(answer, limits())
    try:
        walk.message(0, len(answer), descriptor, 0)
    except _Refused as refused:
        return str(refused)
    return None


class _Walk:
    def __init__(self, data, limits: Dict[str, int]) -> None:
        self._data = data
        self._left = dict(limits)
        self._unknown = 0

    def _varint(self, at: int, end: int):
        data = self._data
        value = shift = 0
        while True:
            if at >= end or shift > 63:
                raise _Refused("is not a valid encoding")
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, at
            shift += 7

    def message(self, at: int, end: int, descriptor, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise _Refused("nests messages more than %d deep" % _MAX_DEPTH)
        data = self._data
        fields = descriptor.fields_by_number
        seen = set()
        # In a returned block: the pointers its data seen so far holds, one per word.
        block_contents = descriptor is _BLOCK_CONTENTS
        backed_pointers = 0
        while at < end:
            if block_contents and backed_pointers and data[at] == _POINTERS_TAG:
                at, taken = _plain_pointers(data, at, end, backed_pointers)
                if taken:
                    backed_pointers -= taken
                    continue
            tag = data[at]  # one byte for every field ffibox has; longer ones the slow way
            if tag < 0x80:
                at += 1
            else:
                tag, at = self._varint(at, end)
            number, wire_type = tag >> 3, tag & 7
            field = fields.get(number)
            repeated = field is not None and field.label == FieldDescriptor.LABEL_REPEATED
            known = field is not None and (
                wire_type == _WIRE_TYPE[field.type] or
                (repeated and wire_type == _LENGTH and field.type not in _NOT_PACKABLE))
            if number == 0:
                raise _Refused("is not a valid encoding")
            if not known:
                self._unknown += 1
                if self._unknown > MAX_UNKNOWN_FIELDS:
                    raise _Refused("holds more than %d unknown fields" % MAX_UNKNOWN_FIELDS)
            elif block_contents and number == _POINTERS_NUMBER and backed_pointers > 0:
                backed_pointers -= 1
            elif repeated:
                left = self._left.get(field.full_name, 0)
                if left == 0:
                    raise _Refused("holds more %s than the request allows" % field.full_name)
                self._left[field.full_name] = left - 1
            elif number in seen:
                raise _Refused("holds %s twice in one message" % field.full_name)
            else:
                seen.add(number)
            if wire_type == _VARINT or wire_type == _LENGTH:
                value = data[at] if at < end else 0x80
                if value < 0x80:
                    at += 1
                else:
                    value, at = self._varint(at, end)
                if wire_type == _LENGTH:
                    if value > end - at:
                        raise _Refused("is not a valid encoding")
                    if block_contents and known and number == _DATA_NUMBER:
                        backed_pointers = value // 8
                    if known and field.type == FieldDescriptor.TYPE_MESSAGE:
                        self.message(at, at + value, field.message_type, depth + 1)
                    at += value
            elif wire_type == _FIXED64:
                at += 8
            elif wire_type == _FIXED32:
                at += 4
            else:  # groups: in no ffibox message
                raise _Refused("is not a valid encoding")
        if at != end:
            raise _Refused("is not a valid encoding")
