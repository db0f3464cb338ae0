"""How one call's memory blocks are built from caller memory, and copied back: in this
process only, no server. The results the worker would send are written out as it sends them
(proto/ffibox/v1/ffibox.proto: CallResult, BlockContents, KeptBlock)."""
import ctypes

import pytest

from ffibox._blocks import CallBuilder
from ffibox._images import ImageTable
from ffibox._stubs import pb
from ffibox._twins import TwinTable, bytes_address

GENERATION = 1


class Node(ctypes.Structure):
    pass


Node._fields_ = [("value", ctypes.c_int), ("next", ctypes.POINTER(Node))]


class Holder(ctypes.Structure):
    _fields_ = [("count", ctypes.c_int), ("items", ctypes.POINTER(ctypes.c_int)),
                ("opaque", ctypes.c_void_p)]


ITEMS = Holder.items.offset
OPAQUE = Holder.opaque.offset
NEXT = Node.next.offset


def new_builder(twins=None):
    """A builder over a session's state as it is before any call: no twins, no images
    (images are only made from worker memory, which none of these tests reads)."""
    twins = twins if twins is not None else TwinTable(lambda: GENERATION)
    return CallBuilder(twins, ImageTable(None, twins), lambda: GENERATION)


def relocations(block):
    """{offset: (target block, target offset)} of a block."""
    return {r.offset: (r.target.block, r.target.offset) for r in block.relocations}


def word(address: int) -> int:
    return ctypes.c_void_p.from_address(address).value or 0


def test_a_buffer_is_one_inout_block_holding_its_bytes():
    buffer = ctypes.create_string_buffer(b"abc", 8)
    builder = new_builder()
    index = builder.add_object(buffer)
    assert index == 0 and len(builder.blocks) == 1
    block = builder.blocks[0]
    assert block.data == b"abc\0\0\0\0\0"
    assert block.size == 8
    assert block.direction == pb.INOUT
    assert block.keep  # its first call: the worker keeps it as the buffer's twin


def test_what_a_pointer_field_points_to_is_shipped_and_relocated():
    items = (ctypes.c_int * 3)(10, 20, 30)
    holder = Holder(3, ctypes.cast(items, ctypes.POINTER(ctypes.c_int)))
    builder = new_builder()
    builder.add_object(holder)
    assert len(builder.blocks) == 2
    assert relocations(builder.blocks[0]) == {ITEMS: (1, 0)}
    assert bytes(builder.blocks[1].data) == bytes(items)


def test_a_pointer_to_an_element_ships_its_whole_array_and_points_at_the_element():
    nodes = (Node * 3)()
    head = Node(1, ctypes.pointer(nodes[2]))
    builder = new_builder()
    builder.add_object(head)
    assert len(builder.blocks) == 2
    assert builder.blocks[1].size == ctypes.sizeof(nodes)
    assert relocations(builder.blocks[0]) == {NEXT: (1, 2 * ctypes.sizeof(Node))}


def test_memory_two_objects_point_to_is_shipped_once():
    shared = (ctypes.c_int * 2)(5, 6)
    first = Holder(1, ctypes.cast(shared, ctypes.POINTER(ctypes.c_int)))
    second = Holder(2, ctypes.cast(shared, ctypes.POINTER(ctypes.c_int)))
    builder = new_builder()
    builder.add_object(first)
    builder.add_object(second)
    assert len(builder.blocks) == 3  # first, shared, second
    assert relocations(builder.blocks[0]) == {ITEMS: (1, 0)}
    assert relocations(builder.blocks[2]) == {ITEMS: (1, 0)}
    assert builder.blocks[1].data == bytes(shared)


def test_a_cycle_ships_each_node_once_pointing_at_each_other():
    a, b = Node(1), Node(2)
    a.next = ctypes.pointer(b)
    b.next = ctypes.pointer(a)
    builder = new_builder()
    index = builder.add_object(a)
    assert len(builder.blocks) == 2
    other = 1 - index
    assert relocations(builder.blocks[index]) == {NEXT: (other, 0)}
    assert relocations(builder.blocks[other]) == {NEXT: (index, 0)}


def test_an_object_passed_twice_is_one_block():
    buffer = ctypes.create_string_buffer(8)
    builder = new_builder()
    assert builder.add_object(buffer) == builder.add_object(buffer) == 0
    assert len(builder.blocks) == 1


def test_bytes_ship_once_with_their_terminator_and_come_back():
    data = b"hello"
    builder = new_builder()
    first = builder.add_bytes(data)
    assert builder.add_bytes(data) == first
    assert len(builder.blocks) == 1
    assert builder.blocks[first].data == b"hello\0"
    # C writes into a bytes object in place with ctypes: what the library wrote comes back.
    assert builder.blocks[first].direction == pb.INOUT
    assert builder.blocks[first].only_if_changed  # as a rule they come back as they went


def test_a_pointer_to_an_offset_names_the_block_and_the_offset():
    buffer = ctypes.create_string_buffer(16)
    builder = new_builder()
    value = builder.pointer_to(buffer, 4)
    assert value.pointer.block.block == 0 and value.pointer.block.offset == 4


def test_an_address_of_no_shipped_memory_goes_as_a_worker_address():
    builder = new_builder()
    value = builder.local_pointer(0x7000_0000_1000)
    assert value.pointer.remote.address == 0x7000_0000_1000
    assert value.pointer.remote.generation == GENERATION
    assert builder.local_pointer(0).pointer.null


def test_copy_back_writes_the_librarys_bytes_into_the_callers_object():
    buffer = ctypes.create_string_buffer(8)
    builder = new_builder()
    index = builder.add_object(buffer)
    result = pb.CallResult(blocks=[pb.BlockContents(block=index, data=b"written\0")])
    builder.copy_back(result, GENERATION)
    assert buffer.value == b"written"


def test_copy_back_rewires_a_pointer_the_library_moved_to_another_shipped_object():
    before = (ctypes.c_int * 2)(1, 2)
    after = (ctypes.c_int * 2)(3, 4)
    holder = Holder(2, ctypes.cast(before, ctypes.POINTER(ctypes.c_int)))
    builder = new_builder()
    index = builder.add_object(holder)
    other = builder.add_object(after)
    # In the worker, items now points at after[1]: a worker address, reported as a pointer
    # into block `other`.
    returned = bytearray(bytes(holder))
    returned[ITEMS:ITEMS + 8] = (0x7000_0000_2004).to_bytes(8, "little")
    result = pb.CallResult(blocks=[pb.BlockContents(
        block=index, data=bytes(returned),
        pointers=[pb.Relocation(offset=ITEMS, target=pb.BlockRef(block=other, offset=4))])])
    builder.copy_back(result, GENERATION)
    assert word(ctypes.addressof(holder) + ITEMS) == ctypes.addressof(after) + 4
    assert holder.items[0] == 4


def test_copy_back_puts_the_callers_pointer_back_where_the_library_left_it():
    items = (ctypes.c_int * 2)(1, 2)
    holder = Holder(2, ctypes.cast(items, ctypes.POINTER(ctypes.c_int)))
    builder = new_builder()
    index = builder.add_object(holder)
    target = relocations(builder.blocks[index])[ITEMS]
    returned = bytearray(bytes(Holder(7)))  # the library set count to 7, left items alone
    returned[ITEMS:ITEMS + 8] = (0x7000_0000_3000).to_bytes(8, "little")  # the worker's copy
    result = pb.CallResult(blocks=[pb.BlockContents(
        block=index, data=bytes(returned),
        pointers=[pb.Relocation(offset=ITEMS, target=pb.BlockRef(block=target[0]))])])
    builder.copy_back(result, GENERATION)
    assert holder.count == 7
    assert word(ctypes.addressof(holder) + ITEMS) == ctypes.addressof(items)
    assert holder.items[1] == 2


def test_copy_back_leaves_a_void_pointer_to_worker_memory_as_the_workers_address():
    holder = Holder()
    builder = new_builder()
    index = builder.add_object(holder)
    returned = bytearray(bytes(holder))
    returned[OPAQUE:OPAQUE + 8] = (0x7000_0000_4000).to_bytes(8, "little")
    builder.copy_back(pb.CallResult(blocks=[pb.BlockContents(block=index,
                                                            data=bytes(returned))]),
                      GENERATION)
    assert holder.opaque == 0x7000_0000_4000


def test_a_block_the_worker_kept_is_placed_at_the_same_address_in_the_next_call():
    buffer = ctypes.create_string_buffer(32)
    twins = TwinTable(lambda: GENERATION)
    first = new_builder(twins)
    index = first.add_object(buffer)
    # The worker's word for the generation is not taken: the block is in the worker that
    # answered (else its twin would never be placed, nor released).
    first.copy_back(pb.CallResult(kept=[pb.KeptBlock(
        block=index, address=pb.RemoteAddress(address=0x7000_0000_5000,
                                              generation=GENERATION + 9))]), GENERATION)
    second = new_builder(twins)
    block = second.blocks[second.add_object(buffer)]
    assert not block.keep
    assert block.at.address == 0x7000_0000_5000 and block.at.generation == GENERATION
    assert len(second.twins_used) == 1
    second.answered()
    # An address inside the twin is the caller's own buffer again.
    assert twins.local(0x7000_0000_5008, GENERATION) == (buffer, ctypes.addressof(buffer) + 8)


def test_an_object_another_call_is_keeping_goes_in_a_block_of_its_own():
    # Two threads' first calls with one object: the one that asked the worker to keep it
    # records its twin; the other ships the object for itself alone, so no second block is
    # kept that would replace the first (whose address the first thread's next calls name).
    buffer = ctypes.create_string_buffer(32)
    twins = TwinTable(lambda: GENERATION)
    first = new_builder(twins)
    assert first.blocks[first.add_object(buffer)].keep
    second = new_builder(twins)
    block = second.blocks[second.add_object(buffer)]
    assert not block.keep and not block.HasField("at")
    second.done()
    first.done()  # answered without the worker keeping it: the next call asks again
    third = new_builder(twins)
    assert third.blocks[third.add_object(buffer)].keep


def kept_twin(twins, obj, address):
    """Gives `obj` a twin at worker `address`, as the first call that reaches it does."""
    builder = new_builder(twins)
    index = builder.add_object(obj) if not isinstance(obj, bytes) else builder.add_bytes(obj)
    assert builder.blocks[index].watch  # every twin is watched
    builder.copy_back(pb.CallResult(kept=[pb.KeptBlock(
        block=index, address=pb.RemoteAddress(address=address, generation=GENERATION))]),
        GENERATION)


def changed(address, data, generation=GENERATION, offset=0):
    return pb.ChangedBlock(address=pb.RemoteAddress(address=address, generation=generation),
                           data=data, offset=offset)


def test_a_watched_twin_the_library_changed_is_written_into_its_owner_bytes_included():
    twins = TwinTable(lambda: GENERATION)
    buffer, used, data = ctypes.create_string_buffer(8), ctypes.c_size_t(), bytes(6)
    kept_twin(twins, buffer, 0x7000_0000_5000)
    kept_twin(twins, used, 0x7000_0000_6000)
    kept_twin(twins, data, 0x7000_0000_7000)
    new_builder(twins).apply_changes([
        changed(0x7000_0000_5000, b"archive\0"), changed(0x7000_0000_6000, bytes(ctypes.c_size_t(7))),
        changed(0x7000_0000_7000, b"PK\3\4\0\0\0")], GENERATION)  # the 7-byte twin's one word
    assert (buffer.value, used.value, data) == (b"archive", 7, b"PK\3\4\0\0")
    # Never past a bytes object's last byte: its terminator stays.
    new_builder(twins).apply_changes([changed(0x7000_0000_7000, b"ZZZZZZZ")], GENERATION)
    assert data == b"ZZZZZZ" and ctypes.string_at(bytes_address(data) + len(data), 1) == b"\0"


def test_what_the_caller_changed_elsewhere_in_a_changed_twin_stays():
    twins = TwinTable(lambda: GENERATION)
    words = (ctypes.c_int * 6)()
    kept_twin(twins, words, 0x7000_0000_5000)
    words[0] = 5  # the caller's own change, not yet seen by the library
    new_builder(twins).apply_changes(
        [changed(0x7000_0000_5000, bytes((ctypes.c_int * 2)(0, 9)), offset=8)], GENERATION)
    assert list(words) == [5, 0, 0, 9, 0, 0]


def test_a_changed_pointer_into_another_twin_is_the_callers_object():
    twins = TwinTable(lambda: GENERATION)
    items, holder = (ctypes.c_int * 2)(5, 6), Holder()
    kept_twin(twins, items, 0x7000_0000_5000)
    kept_twin(twins, holder, 0x7000_0000_6000)
    worker = Holder(count=2)
    ctypes.c_void_p.from_buffer(worker, ITEMS).value = 0x7000_0000_5004
    new_builder(twins).apply_changes([changed(0x7000_0000_6000, bytes(worker))], GENERATION)
    assert holder.count == 2 and holder.items[0] == 6
    assert word(ctypes.addressof(holder) + ITEMS) == ctypes.addressof(items) + 4


def test_changes_the_client_cannot_place_are_ignored():
    twins = TwinTable(lambda: GENERATION)
    buffer = ctypes.create_string_buffer(b"mine", 8)
    kept_twin(twins, buffer, 0x7000_0000_5000)
    new_builder(twins).apply_changes([
        changed(0x7000_0000_5008, b"inside"),             # not where a twin starts
        changed(0x7000_0000_9000, b"nowhere"),            # no twin
        changed(0x7000_0000_5000, b"old", GENERATION + 1),  # another worker's
        changed(0x7000_0000_5000, b"too long!"),          # larger than the twin
        changed(0x7000_0000_5000, b"past", offset=8),      # past its end
    ], GENERATION)
    assert buffer.raw == b"mine\0\0\0\0"
    # A run that is not whole words but at the block's end would split a pointer field.
    new_builder(twins).apply_changes([changed(0x7000_0000_5000, b"half")], GENERATION)
    assert buffer.raw == b"mine\0\0\0\0"
    in_flight = new_builder(twins)  # a call in flight placed the buffer at its twin
    in_flight.add_object(buffer)
    assert len(in_flight.twins_used) == 1
    new_builder(twins).apply_changes([changed(0x7000_0000_5000, b"busy")], GENERATION)
    assert buffer.value == b"mine"


# -- records passed by value --------------------------------------------------------------

class Tagged(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("values", ctypes.c_int * 4),
                ("sizes", ctypes.c_size_t * 2), ("inner", Node)]


def test_a_record_holding_a_pointer_goes_field_by_field_and_plain_arrays_as_bytes():
    from ffibox import _marshal
    tagged = Tagged(b"four", (ctypes.c_int * 4)(1, 2, 3, 4), (ctypes.c_size_t * 2)(5, 6))
    builder = new_builder()
    value = _marshal.encode(Tagged, tagged, builder, None)
    name, values, sizes, inner = value.aggregate.elements
    # The bytes the char* points to are reached through the record's keep-alive references.
    assert name.pointer.HasField("block")
    assert builder.blocks[name.pointer.block.block].data == b"four\0"
    assert values.raw == bytes((ctypes.c_int * 4)(1, 2, 3, 4))
    # Pointer-sized integers may stand for addresses, which a call translates: one by one.
    assert [element.uint_value or element.int_value for element in sizes.aggregate.elements] == [
        5, 6]
    assert inner.HasField("aggregate")  # it holds a pointer field


class Either(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("text", ctypes.c_char_p)]


class Spelled(ctypes.Union):
    _fields_ = [("text", ctypes.c_char_p), ("letters", ctypes.c_char * 16)]


def test_a_union_is_set_through_the_member_that_holds_its_pointer_else_goes_as_its_bytes():
    from ffibox import _marshal
    spelled = Spelled()
    spelled.letters = b"fifteen letters"
    value = _marshal.encode(Spelled, spelled, new_builder(), None)
    assert value.raw == bytes(spelled)  # text, not a pointer: every byte kept
    spelled.text = b"shipped"
    builder = new_builder()
    value = _marshal.encode(Spelled, spelled, builder, None)
    (text,) = value.aggregate.elements
    assert value.aggregate.member == 0
    assert builder.blocks[text.pointer.block.block].data == b"shipped\0"
    either = Either()
    either.text = b"second member"
    builder = new_builder()
    value = _marshal.encode(Either, either, builder, None)
    (text,) = value.aggregate.elements
    assert value.aggregate.member == 1  # the char*, not the int before it
    assert builder.blocks[text.pointer.block.block].data == b"second member\0"
    either.number = 7  # no pointer left: the bytes
    assert _marshal.encode(Either, either, new_builder(), None).raw == bytes(either)


class Span(ctypes.Structure):
    _fields_ = [("p", ctypes.c_char_p), ("length", ctypes.c_size_t)]


class PointerOrSpan(ctypes.Union):
    _fields_ = [("s", ctypes.c_char_p), ("span", Span)]


class NumberOrText(ctypes.Union):
    _fields_ = [("n", ctypes.c_long), ("s", ctypes.c_char_p)]


class Labelled(ctypes.Structure):
    _fields_ = [("tag", ctypes.c_int), ("u", NumberOrText), ("name", ctypes.c_char_p)]


class LabelledOrBytes(ctypes.Union):
    _fields_ = [("t", Labelled), ("raw", ctypes.c_char * 32)]


def test_a_union_member_must_carry_every_byte_set():
    from ffibox import _marshal
    value = PointerOrSpan()
    value.span.p = b"hello"
    value.span.length = 5
    builder = new_builder()
    encoded = _marshal.encode(PointerOrSpan, value, builder, None)
    # `s` holds the same pointer but not the length the worker would zero.
    assert encoded.aggregate.member == 1
    (span,) = encoded.aggregate.elements
    pointer, length = span.aggregate.elements
    assert builder.blocks[pointer.pointer.block.block].data == b"hello\0"
    assert length.uint_value == 5 or length.int_value == 5


def test_a_nested_union_chooses_its_own_member():
    from ffibox import _marshal
    value = LabelledOrBytes()
    value.t.u.n = 5  # a number where the inner union's char* would be
    value.t.name = b"named"
    builder = new_builder()
    encoded = _marshal.encode(LabelledOrBytes, value, builder, None)
    assert encoded.aggregate.member == 0
    (tagged,) = encoded.aggregate.elements
    _, inner, name = tagged.aggregate.elements
    assert inner.raw == bytes(value.t.u)  # the number, as its bytes
    assert builder.blocks[name.pointer.block.block].data == b"named\0"


def test_a_server_that_sets_only_a_unions_first_member_gets_its_bytes():
    from ffibox import _marshal

    class OlderSession:
        union_members = False  # SessionOpened.union_members unset

    either = Either()
    either.text = b"second member"
    assert _marshal.encode(Either, either, new_builder(), OlderSession()).raw == bytes(either)


def test_ranges_find_the_first_added_range_holding_an_address():
    from ffibox._blocks import _Ranges
    ranges = _Ranges()
    for start in (500, 100, 300):  # disjoint, added out of order
        ranges.add(start, start + 50, start)
    assert [ranges.find(a) for a in (99, 100, 149, 150, 320, 549, 550)] == [
        None, 100, 100, None, 300, 500, None]
    ranges.add(700, 700, "empty")
    assert ranges.find(700) is None and ranges.find(700, empty_at=True) == "empty"
    # A range over an earlier one (a view shipped before the array that holds it): the
    # earlier one still answers for the addresses both hold, the later for the rest.
    ranges.add(90, 200, "array")
    assert [ranges.find(a) for a in (95, 120, 160, 320, 700)] == ["array", 100, "array", 300,
                                                                  None]
    assert ranges.find(700, empty_at=True) == "empty"


def test_adjacent_ranges_and_empty_ones_keep_the_lookup_a_bisection():
    # Python's allocator puts equal small buffers side by side: a liblinear problem's rows
    # (feature_node * 6, 96 bytes each) touched, every lookup then went through every range,
    # and a call reaching 4000 rows took seconds.
    from ffibox._blocks import _Ranges
    ranges = _Ranges()
    for start in range(0, 96 * 4000, 96):
        ranges.add(start, start + 96, start)
    ranges.add(96 * 10, 96 * 10, "empty at a row's start")
    ranges.add(96 * 4000, 96 * 4000, "empty past the rows")
    assert ranges._disjoint  # a bisection, not a scan, answers
    assert [ranges.find(a) for a in (0, 95, 96, 96 * 3999 + 95, 96 * 4000)] == [
        0, 0, 96, 96 * 3999, None]
    # The first added of the two at a row's start: the row.
    assert ranges.find(96 * 10, empty_at=True) == 96 * 10
    assert ranges.find(96 * 4000, empty_at=True) == "empty past the rows"
    # An empty range added first answers before the range added after it.
    first_empty = _Ranges()
    first_empty.add(50, 50, "empty")
    first_empty.add(50, 80, "after")
    assert first_empty.find(50, empty_at=True) == "empty" and first_empty.find(50) == "after"


def test_an_array_of_strings_ships_each_string_once_at_its_own_block():
    strings = [b"s%d" % i for i in range(3000)]
    names = (ctypes.c_char_p * len(strings))(*strings)
    builder = new_builder()
    index = builder.add_object(names)
    block = builder.blocks[index]
    assert len(builder.blocks) == len(strings) + 1
    targets = relocations(block)
    for i in (0, 1, 1234, 2999):
        target, offset = targets[8 * i]
        assert (builder.blocks[target].data, offset) == (strings[i] + b"\0", 0)
    # The same string reached again is the same block.
    assert builder.locate(ctypes.cast(names, ctypes.POINTER(ctypes.c_void_p))[5]) == (
        targets[40][0], 0)


def test_a_pointer_to_a_twin_another_thread_makes_busy_meanwhile_is_its_worker_address():
    # Another thread's call takes the twin between the look for a busy twin and the block:
    # the pointer is the twin's worker address, as for a twin found busy at once (it was a
    # block index of no block, which the server refuses).
    buffer = ctypes.create_string_buffer(32)
    twins = TwinTable(lambda: GENERATION)
    kept_twin(twins, buffer, 0x7000_0000_9000)
    looks = [twins.busy_worker_address]

    def first_look_before_the_other_thread(address):
        if len(looks) == 1:
            looks.append(twins.hold(buffer, 32, GENERATION))  # the other thread's call
            return None
        return looks[0](address)

    twins.busy_worker_address = first_look_before_the_other_thread
    builder = new_builder(twins)
    value = builder.pointer_to(buffer, 4)
    assert value.pointer.remote.address == 0x7000_0000_9004 and not builder.blocks


def test_arrays_of_plain_memory_made_from_buffer_share_its_owner_and_typed_ones_do_not():
    buffer = ctypes.create_string_buffer(32)
    builder = new_builder()
    index = builder.add_object((ctypes.c_int * 2).from_buffer(buffer, 8))
    assert builder.blocks[index].size == 32 and builder._owners[index] is buffer
    # A view with pointer slots over plain memory ships by its own type (its slots
    # relocated), not as the bytes of the memory it was made on.
    text = ctypes.create_string_buffer(b"abc")
    slots = (ctypes.c_char_p * 2).from_buffer(buffer)
    slots[0] = ctypes.cast(text, ctypes.c_char_p)
    builder = new_builder()
    index = builder.add_object(slots)
    assert builder._owners[index] is slots and 0 in relocations(builder.blocks[index])


def test_a_pointer_to_an_object_whose_busy_twin_does_not_hold_it_is_an_error_not_a_wait():
    # The twin is busy but no look finds it holding the object (as for an object resized
    # since it was made): the pointer has no worker address; an error, never a block index
    # of no block, nor a loop that waits for the other call.
    buffer = ctypes.create_string_buffer(32)
    twins = TwinTable(lambda: GENERATION)
    kept_twin(twins, buffer, 0x7000_0000_9000)
    assert twins.hold(buffer, 32, GENERATION) is not None
    look = twins.busy_worker_address
    twins.busy_worker_address = lambda address: (
        look(address) if address == ctypes.addressof(buffer) else None)
    with pytest.raises(ValueError, match="in use by a call of another thread"):
        new_builder(twins).pointer_to((ctypes.c_char * 8).from_buffer(buffer, 8))


def test_releases_wait_for_the_worker_generation_they_belong_to():
    # A caller that still knows an older worker generation takes no release of a newer one
    # (and drops none): it goes with a call to that worker.
    table = TwinTable(lambda: 2)
    strings = [("string %d" % number).encode() for number in range(3)]
    for number, text in enumerate(strings):
        table.kept(text, len(text) + 1, 0x7F0000001000 + 64 * number, 1 if number == 0 else 2)
    del strings, text  # only the table holds them now
    assert [tuple(r) for r in table.take_releases(1, 100)] == [(0x7F0000001000, 1)]
    assert sorted(tuple(r) for r in table.take_releases(2, 100)) == [
        (0x7F0000001040, 2), (0x7F0000001080, 2)]
    assert table.take_releases(2, 100) == []


def test_changed_runs_of_a_large_image_are_those_of_the_whole():
    # Over 64 KiB an image's changes are searched chunk by chunk: a run across a chunk's
    # border is one run, and the runs are those a search of the whole finds.
    from ffibox._images import changed_runs
    old = bytes(3 << 20)
    new = bytearray(old)
    for first, end in ((0, 1), (65530, 65546), (131072, 131073), (2_000_000, 2_100_000),
                       ((3 << 20) - 1, 3 << 20)):
        new[first:end] = b"\x01" * (end - first)
    expected = [(0, 1), (65530, 65546), (131072, 131073), (2_000_000, 2_100_000),
                ((3 << 20) - 1, 3 << 20)]
    assert changed_runs(old, bytes(new)) == expected
    assert changed_runs(bytearray(old), bytes(new)) == expected
    assert changed_runs(old, old) == []
