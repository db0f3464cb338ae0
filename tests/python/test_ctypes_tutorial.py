"""The ctypes tutorial's examples, run once with the stdlib ctypes in-process and once with
`ffibox.ctypes` (the library in a worker): both must give the same results."""
import gc
import os

import pytest

from conftest import TEST_LIB


# -- loading and calling ------------------------------------------------------------------

def test_loading_by_cdll_attribute_and_loadlibrary(ct):
    libc = ct.cdll.LoadLibrary("libc.so.6")
    assert libc.strlen(b"spam") == 4
    libm = ct.CDLL("libm.so.6")
    assert libm.abs(-7) == 7


def test_functions_by_attribute_and_by_item(ct, testlib):
    assert testlib.add_int(40, 2) == 42
    assert testlib["add_int"](1, 2) == 3


def test_missing_function_is_attribute_error(ct, testlib):
    with pytest.raises(AttributeError):
        testlib.no_such_function
    with pytest.raises(AttributeError):
        testlib["no_such_function"]


def test_missing_library_is_os_error(ct):
    with pytest.raises(OSError):
        ct.CDLL("/nonexistent/libnope.so")


def test_find_library(ct):
    import importlib
    util = importlib.import_module(ct.__name__ + ".util")
    name = util.find_library("c")
    assert name and "libc" in name
    assert ct.CDLL(name).strlen(b"abc") == 3


def test_float_without_argtypes_is_argument_error(ct):
    libm = ct.CDLL("libm.so.6")
    with pytest.raises(ct.ArgumentError):
        libm.fabs(1.5)


def test_argtypes_check_arguments(ct, testlib):
    testlib.add_int.argtypes = [ct.c_int, ct.c_int]
    with pytest.raises(ct.ArgumentError):
        testlib.add_int("x", 1)
    with pytest.raises(TypeError):
        testlib.add_int(1)


def test_pointers_the_library_returned_are_type_checked_as_arguments(ct, testlib):
    # A POINTER(Node) the library returned (or the record it points to), passed where another
    # pointer type goes: the
    # ArgumentError ctypes raises (ffibox passed any pointer it had from the library); a
    # pointer to a subclass of the pointee, or an array of one, goes (ffibox refused both).
    Node = make_types(ct)[6]
    testlib.make_list.restype = ct.POINTER(Node)
    testlib.make_list.argtypes = [ct.c_int]
    head = testlib.make_list(3)
    testlib.sum_array.argtypes = [ct.POINTER(ct.c_int)]
    with pytest.raises(ct.ArgumentError, match="expected LP_c_int instance instead of LP_"):
        testlib.sum_array(head)
    # Nor the record it points to, itself or by reference (a view of library memory).
    with pytest.raises(ct.ArgumentError):
        testlib.sum_array(head.contents)
    with pytest.raises(ct.ArgumentError):
        testlib.sum_array(ct.byref(head.contents))
    testlib.str_len.argtypes = [ct.c_char_p]
    testlib.str_len.restype = ct.c_size_t
    with pytest.raises(ct.ArgumentError, match="wrong type"):
        testlib.str_len(head)
    testlib.sum_list.argtypes = [ct.c_void_p]
    assert testlib.sum_list(head) == 0 + 1 + 2
    testlib.sum_list.argtypes = [ct.POINTER(Node)]
    assert testlib.sum_list(head.contents) == 0 + 1 + 2
    testlib.greeting.restype = ct.POINTER(ct.c_char)
    assert testlib.str_len(testlib.greeting()) == len(b"hello, ffibox")

    class Int(ct.c_int):
        pass

    numbers = (Int * 5)(1, 2, 3, 4, 5)
    assert testlib.sum_array(numbers) == 15
    assert testlib.sum_array(ct.pointer(numbers[0])) == 15


# -- fundamental types -------------------------------------------------------------------

SCALARS = [
    ("is_even", "c_bool", ["c_int"], [4], True),
    ("next_char", "c_char", ["c_char"], [b"a"], b"b"),
    ("neg_schar", "c_byte", ["c_byte"], [5], -5),
    ("add_uchar", "c_ubyte", ["c_ubyte", "c_ubyte"], [200, 100], 44),
    ("add_short", "c_short", ["c_short", "c_short"], [-3, 1], -2),
    ("add_ushort", "c_ushort", ["c_ushort", "c_ushort"], [65535, 2], 1),
    ("add_uint", "c_uint", ["c_uint", "c_uint"], [2**32 - 1, 2], 1),
    ("add_long", "c_long", ["c_long", "c_long"], [2**40, 1], 2**40 + 1),
    ("add_ulong", "c_ulong", ["c_ulong", "c_ulong"], [2**64 - 1, 1], 0),
    ("add_longlong", "c_longlong", ["c_longlong", "c_longlong"], [-2**62, -5], -2**62 - 5),
    ("neg_int8", "c_int8", ["c_int8"], [7], -7),
    ("add_uint16", "c_uint16", ["c_uint16", "c_uint16"], [1, 2], 3),
    ("neg_int64", "c_int64", ["c_int64"], [2**62], -2**62),
    ("twice_size", "c_size_t", ["c_size_t"], [21], 42),
    ("neg_ssize", "c_ssize_t", ["c_ssize_t"], [9], -9),
    ("mul_float", "c_float", ["c_float", "c_float"], [1.5, 2.5], 3.75),
    ("mul_double", "c_double", ["c_double", "c_double"], [0.1, 3.0], 0.1 * 3.0),
    ("ld_half", "c_longdouble", ["c_longdouble"], [5.0], 2.5),
    ("upper_wchar", "c_wchar", ["c_wchar"], ["q"], "Q"),  # ASCII: the worker runs in the C locale
    ("sum_mixed", "c_double", ["c_int", "c_double", "c_long", "c_float", "c_ubyte"],
     [1, 2.5, 3, 0.5, 4], 11.0),
]


@pytest.mark.parametrize("name,restype,argtypes,args,expected", SCALARS,
                         ids=[s[0] for s in SCALARS])
def test_fundamental_types(ct, testlib, name, restype, argtypes, args, expected):
    function = getattr(testlib, name)
    function.restype = getattr(ct, restype)
    function.argtypes = [getattr(ct, a) for a in argtypes]
    assert function(*args) == expected


def test_simple_type_values_are_mutable(ct):
    i = ct.c_int(42)
    i.value = -99
    assert i.value == -99 and ct.sizeof(i) == 4 and ct.alignment(ct.c_double) == 8


def test_ctypes_instances_as_arguments_without_argtypes(ct):
    libm = ct.CDLL("libm.so.6")
    libm.pow.restype = ct.c_double
    assert libm.pow(ct.c_double(2.0), ct.c_double(10.0)) == 1024.0


# -- strings and buffers -----------------------------------------------------------------

def test_string_results_and_arguments(ct, testlib):
    testlib.greeting.restype = ct.c_char_p
    assert testlib.greeting() == b"hello, ffibox"
    testlib.wgreeting.restype = ct.c_wchar_p
    assert testlib.wgreeting() == "h\u00e9llo \u4e16\u754c"
    testlib.null_string.restype = ct.c_char_p
    assert testlib.null_string() is None
    testlib.str_len.restype = ct.c_size_t
    assert testlib.str_len(b"Hello") == 5
    testlib.wstr_len.restype = ct.c_size_t
    assert testlib.wstr_len("h\u00e9llo") == 5


def test_create_string_buffer_is_filled_by_the_library(ct, testlib):
    buffer = ct.create_string_buffer(b"Hello", 10)
    assert ct.sizeof(buffer) == 10 and buffer.raw == b"Hello\0\0\0\0\0"
    testlib.fill_buffer(buffer, ct.c_size_t(3), ct.c_char(b"x"))
    assert buffer.value == b"xxxlo"
    testlib.reverse_in_place(buffer, ct.c_size_t(5))
    assert buffer.value == b"olxxx"


def test_unicode_buffer(ct, testlib):
    buffer = ct.create_unicode_buffer("h\u00e9llo", 8)
    testlib.wstr_len.restype = ct.c_size_t
    testlib.wstr_len.argtypes = [ct.c_wchar_p]
    assert testlib.wstr_len(buffer) == 5


def test_sprintf_into_a_buffer(ct, libc):
    buffer = ct.create_string_buffer(64)
    n = libc.sprintf(buffer, b"%s %d %.3f", b"spam", 42, ct.c_double(3.14159))
    assert (n, buffer.value) == (13, b"spam 42 3.142")


def test_str_dup_returns_malloced_pointer_read_as_string(ct, testlib, libc):
    testlib.str_dup_upper.restype = ct.c_void_p
    address = testlib.str_dup_upper(b"abc")
    assert ct.string_at(address) == b"ABC"
    assert ct.string_at(address, 2) == b"AB"
    libc.free.argtypes = [ct.c_void_p]
    libc.free(address)


# -- byref, out parameters, pointers -----------------------------------------------------

def test_byref_out_parameters(ct, testlib):
    quotient, remainder = ct.c_int(), ct.c_int()
    assert testlib.divmod(17, 5, ct.byref(quotient), ct.byref(remainder)) == 0
    assert (quotient.value, remainder.value) == (3, 2)


def test_pointer_and_auto_byref(ct, testlib):
    i = ct.c_int(41)
    testlib.increment(ct.pointer(i))
    testlib.increment.argtypes = [ct.POINTER(ct.c_int)]
    testlib.increment(i)  # ctypes passes a byref automatically
    testlib.increment(ct.byref(i))
    assert i.value == 44


def test_pointer_contents_and_indexing_locally(ct):
    i = ct.c_int(42)
    p = ct.pointer(i)
    assert p.contents.value == 42 and p[0] == 42
    p[0] = 7
    assert i.value == 7
    assert not ct.POINTER(ct.c_int)()


def test_sscanf_with_byref(ct, libc):
    i, f, s = ct.c_int(), ct.c_float(), ct.create_string_buffer(32)
    assert libc.sscanf(b"1 3.14 Hello", b"%d %f %s", ct.byref(i), ct.byref(f), s) == 3
    assert (i.value, round(f.value, 5), s.value) == (1, 3.14, b"Hello")


def test_returned_pointer_is_read_by_cast_and_indexing(ct, testlib):
    testlib.ptr_offset.restype = ct.POINTER(ct.c_char)
    testlib.greeting.restype = ct.c_void_p
    p = testlib.ptr_offset(ct.c_void_p(testlib.greeting()), ct.c_long(7))
    assert p[0] == b"f" and p[:6] == b"ffibox"
    assert ct.cast(p, ct.c_char_p).value == b"ffibox"


# -- structures, unions, bit fields, arrays ----------------------------------------------

def make_types(ct):
    class POINT(ct.Structure):
        _fields_ = [("x", ct.c_double), ("y", ct.c_double)]

    class RECT(ct.Structure):
        _fields_ = [("min", POINT), ("max", POINT)]

    class IntPair(ct.Structure):
        _fields_ = [("a", ct.c_int), ("b", ct.c_int)]

    class IntOrFloat(ct.Union):
        _fields_ = [("i", ct.c_int), ("f", ct.c_float)]

    class Packed1(ct.Structure):
        _pack_ = 1
        _fields_ = [("c", ct.c_char), ("i", ct.c_int), ("s", ct.c_short)]

    class Bits(ct.Structure):
        _fields_ = [("a", ct.c_uint, 3), ("b", ct.c_int, 5), ("c", ct.c_uint, 12),
                    ("d", ct.c_int, 1), ("e", ct.c_ulong, 40), ("f", ct.c_byte, 4)]

    class Node(ct.Structure):
        pass
    Node._fields_ = [("value", ct.c_int), ("next", ct.POINTER(Node))]
    return POINT, RECT, IntPair, IntOrFloat, Packed1, Bits, Node


def test_structures_by_value(ct, testlib):
    POINT, RECT, IntPair, *_ = make_types(ct)
    testlib.point_add.restype = POINT
    testlib.point_add.argtypes = [POINT, POINT]
    p = testlib.point_add(POINT(1, 2), POINT(0.5, -4))
    assert (p.x, p.y) == (1.5, -2)
    testlib.swap_pair.restype = IntPair
    q = testlib.swap_pair(IntPair(1, 2))
    assert (q.a, q.b) == (2, 1)
    testlib.rect_area.restype = ct.c_double
    assert testlib.rect_area(RECT(POINT(0, 0), POINT(2, 3))) == 6.0


def test_structure_by_pointer_is_changed_by_the_library(ct, testlib):
    POINT, RECT, *_ = make_types(ct)
    r = RECT(POINT(1, 2), POINT(3, 4))
    testlib.scale_rect(ct.byref(r), ct.c_double(2))
    assert (r.min.x, r.min.y, r.max.x, r.max.y) == (2, 4, 6, 8)
    points = (POINT * 3)(POINT(1, 5), POINT(-2, 0), POINT(4, 1))
    out = RECT()
    testlib.rect_bounds(points, 3, ct.byref(out))
    assert (out.min.x, out.min.y, out.max.x, out.max.y) == (-2, 0, 4, 5)


def test_unions(ct, testlib):
    _, _, _, IntOrFloat, *_ = make_types(ct)
    testlib.iof_from_float.restype = IntOrFloat
    testlib.iof_from_float.argtypes = [ct.c_float]
    u = testlib.iof_from_float(1.0)
    assert u.i == 0x3F800000
    u.i = 7
    assert testlib.iof_bits(u) == 7


def test_a_union_by_value_with_its_pointer_in_a_later_member(ct, testlib):
    class NumberOrText(ct.Union):
        _fields_ = [("number", ct.c_long), ("text", ct.c_char_p)]

    class Variant(ct.Structure):
        _fields_ = [("is_text", ct.c_int), ("as_", NumberOrText)]

    testlib.number_or_text_measure.restype = ct.c_long
    testlib.number_or_text_measure.argtypes = [NumberOrText, ct.c_int]
    testlib.variant_measure.restype = ct.c_long
    testlib.variant_measure.argtypes = [Variant]
    value = NumberOrText()
    value.text = b"eleven long"
    assert testlib.number_or_text_measure(value, 1) == 11
    value.number = -5
    assert testlib.number_or_text_measure(value, 0) == -5
    variant = Variant(1)
    variant.as_.text = b"seven!!"
    assert testlib.variant_measure(variant) == 7
    variant = Variant(0, NumberOrText(number=1 << 40))
    assert testlib.variant_measure(variant) == 1 << 40


def test_wide_strings_a_structure_holds(ct, testlib):
    class WideLabel(ct.Structure):
        _fields_ = [("id", ct.c_int), ("text", ct.c_wchar_p)]

    testlib.wide_label_len.restype = ct.c_size_t
    label = WideLabel(1, "h\u00e9llo w\u00f6rld")
    assert testlib.wide_label_len(ct.byref(label)) == 11
    assert testlib.wide_label_len(ct.byref(label)) == 11  # again: ffibox reuses its twin
    label.text = "\u4e16\u754c"
    assert testlib.wide_label_len(ct.byref(label)) == 2
    labels = (WideLabel * 2)(WideLabel(1, "one"), WideLabel(2, "three"))
    assert testlib.wide_label_len(ct.byref(labels[1])) == 5


def test_packed_structures(ct, testlib):
    Packed1 = make_types(ct)[4]
    assert ct.sizeof(Packed1) == 7 and Packed1.i.offset == 1 and Packed1.s.offset == 5
    v = Packed1(b"a", 1, 2)
    assert (v.c, v.i, v.s) == (b"a", 1, 2)


def test_packed_structure_by_value_in_the_worker(shared_server):
    # Not compared with the stdlib: CPython 3.11's ctypes passes this packed struct by value
    # wrongly (libffi gets a naturally aligned layout); ffibox describes it to the worker.
    from ffibox import ctypes
    Packed1 = make_types(ctypes)[4]
    testlib = ctypes.CDLL(TEST_LIB)
    testlib.packed1_sum.restype = ctypes.c_long
    assert testlib.packed1_sum(Packed1(b"\x01", 1000, -3)) == 998
    testlib.packed1_bump.restype = Packed1
    v = testlib.packed1_bump(Packed1(b"a", 1, 2))
    assert (v.c, v.i, v.s) == (b"b", 2, 3)


def test_bit_fields_locally(ct):
    class Flags(ct.Structure):
        _fields_ = [("a", ct.c_uint, 3), ("b", ct.c_int, 5), ("c", ct.c_uint, 12),
                    ("d", ct.c_int, 1)]
    v = Flags(5, -9, 4000, -1)
    assert (v.a, v.b, v.c, v.d) == (5, -9, 4000, -1) and ct.sizeof(Flags) == 4
    assert bytes(v) == (5 | (23 << 3) | (4000 << 8) | (1 << 20)).to_bytes(4, "little")


def test_bit_field_layout_ctypes_gets_wrong_is_refused(shared_server):
    # ctypes lays out `unsigned long e:40` after 21 bits of ints differently from gcc
    # (12 bytes instead of 16): ffibox compares layouts with the worker and refuses the call
    # rather than exchange misread bytes.
    from ffibox import ctypes
    Bits = make_types(ctypes)[5]
    testlib = ctypes.CDLL(TEST_LIB)
    testlib.bits_make.restype = Bits
    # Refused again on every call, not only the first; and in a function passing it too.
    for _ in range(2):
        with pytest.raises(TypeError, match="layout of Bits differs"):
            testlib.bits_make(5, -9, 4000, -1, 2**39, -3)
    testlib.bits_sum.restype = ctypes.c_long
    testlib.bits_sum.argtypes = [Bits]
    with pytest.raises(TypeError, match="layout of Bits differs"):
        testlib.bits_sum(Bits())


def test_a_refused_record_stays_refused_behind_pointers(shared_server):
    # A record that points to itself and holds (or is) a record whose layout ctypes gets
    # wrong: refused by value, and then behind one or two pointers too (the pointer's check
    # rested on the record's, which failed).
    from ffibox import ctypes
    Bits = make_types(ctypes)[5]

    class Node(ctypes.Structure):
        pass
    Node._fields_ = [("next", ctypes.POINTER(Node)), ("bits", Bits)]

    class Self(ctypes.Structure):  # Bits' 40-bit field after 21 bits, behind an int
        pass
    Self._fields_ = [("me", ctypes.POINTER(Self)), ("x", ctypes.c_int),
                     ("a", ctypes.c_uint, 3), ("b", ctypes.c_int, 5), ("c", ctypes.c_uint, 12),
                     ("d", ctypes.c_int, 1), ("e", ctypes.c_ulong, 40), ("f", ctypes.c_byte, 4),
                     ("tail", ctypes.c_int)]
    counter_next = ctypes.CDLL(TEST_LIB).counter_next
    counter_next.restype = ctypes.c_int
    for record, differs in ((Node, "Bits"), (Self, "Self")):
        for argtype in (record, ctypes.POINTER(record), ctypes.POINTER(ctypes.POINTER(record))):
            counter_next.argtypes = [argtype]
            with pytest.raises(TypeError, match="layout of %s differs" % differs):
                counter_next(None if argtype is not record else record())


def _unused_bits(ct, testlib):
    Bits = make_types(ct)[5]
    testlib.bits_make.restype = Bits
    testlib.bits_make.argtypes = [ct.c_uint, ct.c_int, ct.c_uint, ct.c_int, ct.c_ulong,
                                  ct.c_int]
    v = testlib.bits_make(5, -9, 4000, -1, 2**39, -3)
    assert (v.a, v.b, v.c, v.d, v.e, v.f) == (5, -9, 4000, -1, 2**39, -3)
    testlib.bits_sum.restype = ct.c_long
    assert testlib.bits_sum(v) == 5 - 9 + 4000 - 1 + 2**39 - 3


def test_arrays(ct, testlib):
    IntArray5 = ct.c_int * 5
    numbers = IntArray5(5, 1, 7, 33, 99)
    assert len(numbers) == 5 and list(numbers) == [5, 1, 7, 33, 99]
    assert testlib.sum_array(numbers) == 145
    matrix = ((ct.c_int * 3) * 3)((1, 2, 3), (4, 5, 6), (7, 8, 9))
    assert testlib.trace3(matrix) == 15
    squares = (ct.c_int * 6)()
    testlib.fill_squares(squares, 6)
    assert list(squares) == [0, 1, 4, 9, 16, 25]


def test_array_of_strings(ct, testlib):
    words = (ct.c_char_p * 3)(b"alpha", b"", b"gamma")
    assert testlib.count_chars(words, 3) == 10
    testlib.join_words.restype = ct.c_char_p
    assert testlib.join_words(words, 3) == b"alpha++gamma"


def test_linked_list_is_rewired_by_the_library(ct, testlib):
    Node = make_types(ct)[6]
    n1 = Node(20)
    n0 = Node(1, ct.pointer(n1))
    head = ct.pointer(n0)
    assert testlib.sum_list(head) == 21
    testlib.reverse_list(ct.byref(head))
    assert head.contents.value == 20
    assert head.contents.next.contents.value == 1
    assert not head.contents.next.contents.next


def test_a_list_linked_inside_one_array_goes_in_call_after_call(ct, testlib):
    # Each node's next points into the same array. Once the array has a twin in the worker,
    # those slots go as addresses in the twin (the worker was handed the caller's addresses
    # and crashed on the second call).
    Node = make_types(ct)[6]
    nodes = (Node * 3)()
    for i in range(3):
        nodes[i].value = 10 ** i
    nodes[0].next, nodes[1].next = ct.pointer(nodes[1]), ct.pointer(nodes[2])
    testlib.sum_list.argtypes = [ct.POINTER(Node)]
    testlib.reverse_list.argtypes = [ct.POINTER(ct.POINTER(Node))]
    assert [testlib.sum_list(arg) for arg in (nodes[0], ct.byref(nodes[0]), nodes,
                                              ct.pointer(nodes[1]))] == [111, 111, 111, 110]
    head = ct.pointer(nodes[0])
    testlib.reverse_list(ct.byref(head))
    assert ct.addressof(head.contents) == ct.addressof(nodes[2])
    assert ct.addressof(nodes[2].next.contents) == ct.addressof(nodes[1])
    assert ct.addressof(nodes[1].next.contents) == ct.addressof(nodes[0])
    assert not nodes[0].next
    assert [testlib.sum_list(head), testlib.sum_list(nodes[1]), testlib.sum_list(nodes)] == [
        111, 11, 1]


def test_a_pointer_the_library_returned_goes_into_a_pointer_field(ct, testlib):
    # As a handle goes into a record the library reads (pysdl2's `Data(flags, window)`).
    Node = make_types(ct)[6]
    testlib.make_list.restype = ct.POINTER(Node)
    testlib.sum_list.argtypes = [ct.POINTER(Node)]
    in_library = testlib.make_list(4)  # 0, 1, 2, 3
    # Its type says what it points to, as ctypes' does (pysdl2 checks `str(type(p))`).
    assert type(in_library).__name__.endswith("LP_Node") and "LP_Node" in str(type(in_library))
    head = Node(100, in_library)
    assert testlib.sum_list(ct.byref(head)) == 106
    assert [head.next.contents.value, head.next.contents.next.contents.value] == [0, 1]
    assert testlib.sum_list(head.next) == 6
    later = Node(7)
    later.next = in_library
    later.next = in_library  # again: the same
    assert testlib.sum_list(later) == 13
    later.next = None
    assert testlib.sum_list(later) == 7

    class Ints(ct.Structure):
        _fields_ = [("first", ct.POINTER(ct.c_int))]

    with pytest.raises(TypeError):
        Ints(in_library)


def test_the_type_of_a_record_read_through_a_pointer_makes_local_records(ct, testlib):
    # capstone copies each instruction so: `dst = type(src)(); memmove(...)`; also
    # `type(v).from_buffer_copy(...)` and arrays of `type(v)`.
    Node = make_types(ct)[6]
    testlib.make_list.restype = ct.POINTER(Node)
    second = testlib.make_list(3)[1]
    made = type(second)()
    assert made.value == 0 and not made.next
    made.value = 41
    made.value += 1
    assert made.value == 42 and bytes(made)[:4] == (42).to_bytes(4, "little")
    copied = type(second).from_buffer_copy(bytes(made))
    assert copied.value == 42
    pair = (type(second) * 2)()
    pair[1].value = 9
    assert [pair[0].value, pair[1].value] == [0, 9]
    assert second.value == 1  # the worker's node itself is as it was
    counter = ct.c_int.in_dll(testlib, "ffibox_test_counter")
    before = counter.value
    local = type(counter)(before + 5)
    assert local.value == before + 5 and local
    local.value = 0
    assert not local and counter.value == before


def test_a_callback_links_the_record_it_is_handed_to_another_of_the_callers(ct, testlib):
    # `node.contents.next = pointer(tail)` inside the callback: the library finds the
    # caller's tail there (the worker was handed the caller's address and crashed).
    Node = make_types(ct)[6]
    VISIT = ct.CFUNCTYPE(None, ct.POINTER(Node))
    head, tail = Node(1), Node(5)

    def link(node):
        node.contents.next = ct.pointer(tail)

    visit = VISIT(link)
    testlib.visit_node.argtypes = [ct.POINTER(Node), VISIT]
    testlib.visit_node.restype = None
    testlib.visit_node(ct.byref(head), visit)
    assert ct.addressof(head.next.contents) == ct.addressof(tail)
    tail.value = 7
    testlib.sum_list.argtypes = [ct.POINTER(Node)]
    assert testlib.sum_list(ct.byref(head)) == 8


def test_an_element_reached_through_two_casts_is_changed_in_its_array(ct, testlib):
    # `cast(array, POINTER(T))[0]` made twice: both views are of the array's memory, which
    # goes as one block (the element went as a block of its own too, and the copy of one
    # overwrote the library's changes made through the other).
    Node = make_types(ct)[6]
    nodes = (Node * 2)(Node(1), Node(2))
    first = Node(5, ct.pointer(nodes[1]))
    # Another record keeps a pointer to another view of element 0; the cast shares the
    # array's keep-alive references, which then hold that view too.
    keeper = Node(9, ct.pointer(ct.cast(nodes, ct.POINTER(Node))[0]))
    nodes[0].next = ct.pointer(first)
    nodes[1].next = ct.pointer(keeper.next.contents)
    nodes[1].next = None
    head = ct.pointer(ct.cast(nodes, ct.POINTER(Node))[0])
    testlib.reverse_list.argtypes = [ct.POINTER(ct.POINTER(Node))]
    testlib.reverse_list(ct.byref(head))  # nodes[1] -> first -> nodes[0]
    assert ct.addressof(head.contents) == ct.addressof(nodes[1])
    assert ct.addressof(nodes[1].next.contents) == ct.addressof(first)
    assert ct.addressof(first.next.contents) == ct.addressof(nodes[0])
    assert not nodes[0].next


def _node_functions(ct, testlib, Node):
    PNode = ct.POINTER(Node)
    testlib.set_next.argtypes = [PNode, PNode]
    testlib.store_node.argtypes = [ct.POINTER(PNode), PNode]
    testlib.bump_list.argtypes = [PNode, ct.c_int]
    testlib.make_list.restype = PNode
    testlib.make_list.argtypes = [ct.c_int]


def test_a_record_by_value_over_memory_without_pointer_slots_keeps_its_links(ct, testlib):
    # Records made from_buffer over integers, linked by the library (no keep-alives), then
    # passed by value: the memory their links reach ships as the records, whose pointer slots
    # are rewired, not as the integers (the worker followed this process's addresses).
    Node = make_types(ct)[6]
    _node_functions(ct, testlib, Node)
    testlib.next_next_value.argtypes = [Node]
    words = ct.sizeof(Node) // 8
    n = Node.from_buffer((ct.c_int64 * words)())
    n.value = 974
    testlib.set_next(ct.byref(n), ct.byref(n))
    assert testlib.next_next_value(n) == 974
    nodes = (Node * 3).from_buffer((ct.c_int64 * (3 * words))())
    for i in range(3):
        nodes[i].value = i + 1
    testlib.set_next(nodes[0], ct.byref(nodes[1]))
    testlib.set_next(nodes[1], ct.byref(nodes[2]))
    assert testlib.next_next_value(nodes[0]) == 3


def test_a_store_through_a_view_of_an_array_made_over_another_is_kept(ct, testlib):
    # `byref(pointer(a[0]).contents, off)` where a was made over a larger array, and a[1]
    # passed beside it: one memory, one block (two copies went, and the stale one won).
    Node = make_types(ct)[6]
    testlib.store_node.argtypes = [ct.c_void_p, ct.c_void_p]
    a = (Node * 3).from_buffer((Node * 4)())
    testlib.store_node(ct.byref(ct.pointer(a[0]).contents, Node.next.offset), ct.byref(a[1]))
    assert ct.cast(a[0].next, ct.c_void_p).value == ct.addressof(a[1])


def test_a_buffer_cast_to_c_char_p_is_that_buffer(ct, testlib, libc):
    # cast(buffer, c_char_p) keeps the buffer: the library writes into it, and a pointer it
    # returns points into it (a copy of its text went, and both were lost).
    testlib.fill_buffer.argtypes = [ct.c_char_p, ct.c_size_t, ct.c_char]
    testlib.fill_buffer.restype = None
    buffer = ct.create_string_buffer(b"xxxx", 8)
    testlib.fill_buffer(ct.cast(buffer, ct.c_char_p), 4, b"A")
    assert buffer.value == b"AAAA"
    libc.strchr.argtypes = [ct.c_char_p, ct.c_int]
    libc.strchr.restype = ct.POINTER(ct.c_char)
    text = ct.create_string_buffer(b"aabcbba", 10)
    found = libc.strchr(ct.cast(text, ct.c_char_p), ord("c"))
    assert ct.cast(found, ct.c_void_p).value == ct.addressof(text) + 3
    found[0] = b"Z"
    assert text.value == b"aabZbba"


def _store_from_callback(ct, testlib, Node, passed, target):
    # visit_node(passed, visit): the callback sets passed->next = &target, where `target` is
    # memory the same call passes for the first time (the record itself, or another element
    # of the array passed).
    PNode = ct.POINTER(Node)
    VISIT = ct.CFUNCTYPE(None, PNode)
    testlib.visit_node.argtypes = [PNode, VISIT]
    testlib.next_value.argtypes = [Node]

    def visit(node):
        node.contents.next = ct.pointer(target)

    testlib.visit_node(passed, VISIT(visit))


def check_a_callbacks_store_of_memory_its_call_passes(ct, testlib):
    """What test_a_callback_stores_a_pointer_to_memory_its_own_call_passes checks, in a
    session of `ct`'s (a module or an ffibox session)."""
    Node = make_types(ct)[6]
    x = Node(1)
    _store_from_callback(ct, testlib, Node, ct.byref(x), x)
    assert ct.addressof(x.next.contents) == ct.addressof(x)
    x.value = 100
    assert x.next.contents.value == 100
    assert testlib.next_value(x) == 100  # the library follows x->next to x as it is now
    nodes = (Node * 3)()
    _store_from_callback(ct, testlib, Node, nodes, nodes[2])
    assert ct.addressof(nodes[0].next.contents) == ct.addressof(nodes[2])
    nodes[2].value = 7
    assert testlib.next_value(nodes[0]) == 7


def test_a_callback_stores_a_pointer_to_memory_its_own_call_passes(ct, testlib):
    # The call passes x (or an array) for the first time and its callback stores &x (or a
    # pointer to another element) into it: the library holds x's own worker memory, where the
    # call placed x, so x.next is x and x's later changes are seen through it (the library
    # was handed a second copy, which x.next then stood for).
    check_a_callbacks_store_of_memory_its_call_passes(ct, testlib)


def test_an_element_made_from_buffer_of_its_array_is_the_arrays_memory(ct, testlib):
    # `Node.from_buffer(nodes, 0)` and the array it was made over, reached in one call: the
    # library's change through one is the change of the other (each went as a block of its
    # own, and the array's copy overwrote what the library wrote through the view).
    Node = make_types(ct)[6]
    _node_functions(ct, testlib, Node)
    nodes = (Node * 2)(Node(1), Node(2))
    testlib.set_next(nodes[0], nodes[1])
    head = Node(5, ct.pointer(Node.from_buffer(nodes, 0)))
    testlib.bump_list(ct.byref(head), 10)
    assert [head.value, nodes[0].value, nodes[1].value] == [15, 11, 12]


@pytest.mark.parametrize("how", ["from_buffer", "pointer_index"])
def test_an_element_made_apart_from_its_array_points_into_it(ct, testlib, how):
    # The array and an element made as an object of its own (`Node.from_buffer(nodes, off)`,
    # `pointer(nodes[0])[2]`) in one call: the element is the array's memory there (the
    # server refused the call: the element's offset in the array, in a block of its own).
    Node = make_types(ct)[6]
    _node_functions(ct, testlib, Node)
    nodes = (Node * 3)()
    third = (Node.from_buffer(nodes, 2 * ct.sizeof(Node)) if how == "from_buffer"
             else ct.pointer(nodes[0])[2])
    testlib.set_next(nodes[0], third)
    assert ct.addressof(nodes[0].next.contents) == ct.addressof(nodes[2])
    testlib.bump_list(nodes[0], 3)
    assert [n.value for n in nodes] == [3, 0, 3]


def test_a_returned_pointer_the_library_points_at_the_callers_record_is_that_record(ct,
                                                                                   testlib):
    # A pointer the library returned, passed by reference as an out-parameter through which
    # it stores the address of a caller's record: the pointer then points to that record,
    # not to its copy in the library's process.
    Node = make_types(ct)[6]
    _node_functions(ct, testlib, Node)
    mine = Node(1)
    found = testlib.make_list(0)  # NULL
    testlib.store_node(ct.byref(found), mine)
    assert ct.addressof(found.contents) == ct.addressof(mine)
    found.contents.value = 77
    assert mine.value == 77
    mine.value = 5
    assert found[0].value == 5
    testlib.bump_list(found, 1)
    assert mine.value == 6
    assert ct.cast(found, ct.c_void_p).value == ct.addressof(mine)
    # Stored into the library's memory, it is the record as it is now.
    mine.value = 40
    theirs = testlib.make_list(1)  # one node of the library's, value 0
    theirs.contents.next = found
    assert testlib.sum_list(theirs) == 40
    # Where a Node** goes it is passed by reference, as ctypes passes a POINTER(Node) there:
    # the library points it at another record, and the first is left as it was.
    other = Node(2)
    testlib.store_node(found, other)
    assert ct.addressof(found.contents) == ct.addressof(other)
    assert found.contents.value == 2 and mine.value == 40


def test_a_pointer_in_library_memory_to_the_callers_record_reads_that_record(ct, testlib):
    # A record in the library's memory whose pointer field the library set to a caller's
    # record: reading the field gives that record, live (it gave the record's copy in the
    # library's process, as of the last call).
    Node = make_types(ct)[6]
    _node_functions(ct, testlib, Node)
    theirs = testlib.make_list(1)
    mine = Node(1)
    testlib.set_next(theirs, ct.byref(mine))
    assert ct.addressof(theirs.contents.next.contents) == ct.addressof(mine)
    mine.value = 7
    assert theirs.contents.next.contents.value == 7
    assert theirs[0].next[0].value == 7


@pytest.mark.parametrize("at", [0, 1])
def test_an_address_in_a_buffer_where_a_record_made_over_it_was(ct, testlib, at):
    # A record made over the buffer (at its start, or in its middle) goes apart from it.
    # Whether the record lives or was collected, an address in the buffer, as a void*, is
    # the buffer's (the record's copy hid the buffer's: same start, or collected first).
    Node = make_types(ct)[6]
    _node_functions(ct, testlib, Node)
    testlib.fill_squares.argtypes = [ct.c_void_p, ct.c_int]
    size = ct.sizeof(Node)
    buffer = (ct.c_char * (3 * size))()
    testlib.fill_squares(buffer, 1)
    record = Node.from_buffer(buffer, at * size)
    assert testlib.sum_list(ct.byref(record)) == 0
    testlib.fill_squares(ct.addressof(buffer) + 2 * size, 4)
    assert list((ct.c_int * 4).from_buffer(buffer, 2 * size)) == [0, 1, 4, 9]
    del record
    gc.collect()
    testlib.fill_squares(ct.addressof(buffer) + at * size + 4, 2)
    assert list((ct.c_int * 2).from_buffer(buffer, at * size + 4)) == [0, 1]


def test_a_library_found_through_debian_alternatives_loads_with_its_dependencies(ct):
    # liblapack.so.3 and its dependency libblas.so.3 are links into /etc/alternatives (the
    # BLAS numpy installs): the worker's view showed no /etc/alternatives, and the load
    # failed on libblas.so.3.
    blas = "/usr/lib/x86_64-linux-gnu/libblas.so.3"
    assert os.readlink(blas).startswith("/etc/alternatives/"), "scripts/install-deps.sh"
    lapack = ct.CDLL("liblapack.so.3")
    dot = lapack.ddot_  # BLAS, through liblapack's dependency
    dot.restype = ct.c_double
    n, one = ct.c_int(3), ct.c_int(1)
    x, y = (ct.c_double * 3)(1, 2, 3), (ct.c_double * 3)(4, 5, 6)
    assert dot(ct.byref(n), x, ct.byref(one), y, ct.byref(one)) == 32.0


def test_an_object_passed_as_a_pointers_contents_is_that_object(ct, testlib):
    # `byref(pointer(x).contents)`: the view is x's memory, and x keeps one copy in the
    # library's process for its life (the copy was the temporary view's, and went with it
    # while the library still pointed there: its next call crashed).
    Node = make_types(ct)[6]
    _node_functions(ct, testlib, Node)
    first, second = Node(1), Node(2)
    testlib.set_next(first, ct.byref(ct.pointer(second).contents))
    gc.collect()
    assert testlib.sum_list(ct.byref(first)) == 3
    assert ct.addressof(first.next.contents) == ct.addressof(second)


@pytest.mark.parametrize("over", ["bytearray", "array"])
def test_records_made_over_memory_made_over_other_memory(ct, testlib, over):
    # Nodes made from_buffer of memory that is itself a view (of a bytearray, or of a
    # larger array of nodes): an element view of them, a field of one, and what ctypes
    # keeps alive for them are the nodes' memory (each went as a block of its own, or was
    # not found: lost links, crashed calls).
    Node = make_types(ct)[6]
    _node_functions(ct, testlib, Node)
    size = ct.sizeof(Node)
    backing = bytearray(4 * size) if over == "bytearray" else (Node * 4)()
    nodes = (Node * 3).from_buffer(backing)
    middle = Node.from_buffer(nodes, size)
    testlib.set_next(middle, ct.byref(nodes[2]))
    assert ct.addressof(nodes[1].next.contents) == ct.addressof(nodes[2])
    testlib.store_node(ct.pointer(Node.from_buffer(nodes, 0).next), ct.byref(nodes[1]))
    assert ct.addressof(nodes[0].next.contents) == ct.addressof(nodes[1])
    testlib.bump_list(nodes[0], 5)
    assert [node.value for node in nodes] == [5, 5, 5]
    # A link stored into a view no call passed: it goes with the memory the view lies in.
    unpassed = Node.from_buffer(nodes, 2 * size)
    unpassed.next = ct.pointer(Node(40))
    assert testlib.sum_list(ct.byref(nodes[2])) == 45
    unpassed.next = None
    # A link ctypes keeps for the nodes, reached through a record the library linked to them.
    head, tail = Node(1), Node(10)
    testlib.set_next(head, ct.byref(nodes[0]))
    nodes[2].next = ct.pointer(tail)
    testlib.bump_list(ct.byref(head), 1)
    assert [head.value, nodes[2].value, tail.value] == [2, 6, 11]


def test_a_record_made_from_buffer_of_another_passed_by_value(ct, testlib):
    # Its pointer field's target, kept alive for the record it was made on, goes with it.
    Node = make_types(ct)[6]
    testlib.next_value.argtypes = [Node]
    source = Node(1, ct.pointer(Node(7)))
    assert testlib.next_value(Node.from_buffer(source)) == 7
    nodes = (Node * 2)(Node(3))
    nodes[1].next = ct.pointer(nodes[0])
    assert testlib.next_value(Node.from_buffer(nodes, ct.sizeof(Node))) == 3


def test_a_pointer_cast_from_an_element_into_the_next_one(ct, testlib):
    # `cast(byref(nodes[0], size), POINTER(Node))` is &nodes[1], which the array holds.
    Node = make_types(ct)[6]
    nodes = (Node * 2)(Node(1), Node(6))
    head = Node(1, ct.cast(ct.byref(nodes[0], ct.sizeof(Node)), ct.POINTER(Node)))
    assert testlib.sum_list(ct.byref(head)) == 7


def test_an_address_in_a_buffer_past_many_objects_made_over_it(ct, testlib):
    # A buffer shipped, then many overlapping pairs of objects made at addresses in it,
    # each shipped: an address in the buffer past all of them, as a void*, is still the
    # buffer's (the lookup gave up after eight such pairs, and the library was handed this
    # process's address).
    testlib.fill_squares.argtypes = [ct.c_void_p, ct.c_int]
    buffer = (ct.c_int * 1024)()
    start = ct.addressof(buffer)
    testlib.fill_squares(buffer, 1)
    made = []
    for i in range(12):
        pair = (ct.c_int * 2).from_address(start + 100 * i + 8)
        inner = ct.c_int.from_address(start + 100 * i + 12)
        made += [pair, inner]
        testlib.fill_squares(pair, 0)
        testlib.fill_squares(ct.byref(inner), 0)
    testlib.fill_squares(start + 2000, 3)
    assert list(buffer[500:503]) == [0, 1, 4]


def test_a_field_of_a_subclass_of_a_simple_type_read_in_library_memory(ct, testlib):
    # ctypes gives such a field as an object of the subclass (python3-mpv's
    # `class MpvFormat(c_int)`), whose value is a number: read through a view of library
    # memory, its value was another view, and comparing it recursed without end.
    class Count(ct.c_int):
        pass

    class CountedNode(ct.Structure):
        pass
    CountedNode._fields_ = [("value", Count), ("next", ct.POINTER(CountedNode))]
    testlib.make_list.restype = ct.POINTER(CountedNode)
    testlib.make_list.argtypes = [ct.c_int]
    nodes = testlib.make_list(2)
    second = nodes[0].next.contents.value
    assert isinstance(second, Count)
    assert type(second.value) is int and second.value == 1
    assert nodes[1].value.value == 1 and nodes.contents.value.value == 0


def test_an_address_inside_a_buffer_past_a_record_made_over_it(ct, testlib):
    # A record made over the middle of a char buffer goes apart from the buffer (its pointer
    # slot is no slot of the buffer's type). An address in the buffer past the record, as a
    # void*, is still the buffer's: the library writes there (it was taken for an address
    # of no object the library had seen, and the library wrote to it in its own process).
    Node = make_types(ct)[6]
    _node_functions(ct, testlib, Node)
    size = ct.sizeof(Node)
    buffer = (ct.c_char * (3 * size))()
    middle = Node.from_buffer(buffer, size)
    assert testlib.sum_list(ct.byref(middle)) == 0
    testlib.fill_squares.argtypes = [ct.c_void_p, ct.c_int]
    testlib.fill_squares(buffer, 1)
    testlib.fill_squares(ct.addressof(buffer) + 2 * size, 4)
    assert list((ct.c_int * 4).from_buffer(buffer, 2 * size)) == [0, 1, 4, 9]


def test_char_pointer_out_parameter_points_into_the_buffer(ct, testlib):
    text = ct.create_string_buffer(b"hello brave world")
    rest = ct.c_char_p()
    assert testlib.split_first(text, ct.byref(rest)) == 5
    assert text.value == b"hello" and rest.value == b"brave world"


# -- callbacks ---------------------------------------------------------------------------

def test_qsort_with_a_python_comparison(ct, libc):
    IntArray5 = ct.c_int * 5
    ia = IntArray5(5, 1, 7, 33, 99)
    CMPFUNC = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_int), ct.POINTER(ct.c_int))
    calls = []

    def py_cmp_func(a, b):
        calls.append((a[0], b[0]))
        return a[0] - b[0]

    libc.qsort.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_size_t, CMPFUNC]
    libc.qsort.restype = None
    libc.qsort(ia, len(ia), ct.sizeof(ct.c_int), CMPFUNC(py_cmp_func))
    assert list(ia) == [1, 5, 7, 33, 99] and calls


def test_callback_fold_and_nested_calls(ct, testlib):
    BINOP = ct.CFUNCTYPE(ct.c_double, ct.c_double, ct.c_double)
    testlib.fold.restype = ct.c_double
    testlib.fold.argtypes = [BINOP, ct.POINTER(ct.c_double), ct.c_int, ct.c_double]
    xs = (ct.c_double * 3)(1.5, 2, 4)
    assert testlib.fold(BINOP(lambda a, b: a + b), xs, 3, 0.0) == 7.5
    UNARY = ct.CFUNCTYPE(ct.c_int, ct.c_int)
    testlib.add_int.argtypes = [ct.c_int, ct.c_int]
    twice = UNARY(lambda x: testlib.add_int(x, x))  # calls the library from the callback
    assert testlib.call_twice_nested(twice, 3) == 12


def test_callback_mutates_struct_through_pointer(ct, testlib):
    class Point(ct.Structure):
        _fields_ = [("x", ct.c_int), ("y", ct.c_int)]
    MUTATE = ct.CFUNCTYPE(None, ct.POINTER(Point))

    def mutate(p):
        p.contents.x += 10
        p[0].y = 42
    point = Point(1, 21)
    testlib.mutate_point(MUTATE(mutate), ct.byref(point))
    assert (point.x, point.y) == (11, 42)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_callback_exception_returns_zero(ct, testlib, capsys):
    UNARY = ct.CFUNCTYPE(ct.c_int, ct.c_int)

    def boom(x):
        raise ValueError("boom")
    result = testlib.call_twice_nested(UNARY(boom), 3)
    if ct.__name__ == "ffibox.ctypes":  # the stdlib reports through sys.unraisablehook
        assert "ValueError: boom" in capsys.readouterr().err
        assert result == 0  # ctypes leaves the result undefined; ffibox returns zero


def test_returned_function_pointer(ct, testlib):
    BINOP = ct.CFUNCTYPE(ct.c_int, ct.c_int, ct.c_int)
    testlib.pick_op.restype = BINOP
    assert testlib.pick_op(2)(6, 7) == 42
    assert not testlib.pick_op(9)


# -- values exported from libraries ------------------------------------------------------

def test_in_dll(ct, testlib):
    POINT = make_types(ct)[0]
    assert ct.c_double.in_dll(testlib, "ffibox_scale").value == 2.25
    assert ct.c_char_p.in_dll(testlib, "ffibox_version").value == b"ffibox-test 1.0"
    origin = POINT.in_dll(testlib, "ffibox_origin")
    assert (origin.x, origin.y) == (1.5, -2.5)
    testlib.origin_norm1.restype = ct.c_double
    origin.x = -3.0  # writes the library's variable
    assert testlib.origin_norm1() == 5.5
    origin.x = 1.5
    # byref of it passed as a c_void_p is the library's variable too.
    libc = ct.CDLL("libc.so.6")
    libc.memset.argtypes, libc.memset.restype = [ct.c_void_p, ct.c_int, ct.c_size_t], None
    scale = ct.c_double.in_dll(testlib, "ffibox_scale")
    libc.memset(ct.byref(scale, 6), 0, 2)  # its sign and exponent: 0.0
    assert scale.value == 0.0
    scale.value = 2.25


def test_a_field_of_a_bindings_enum_type_keeps_its_class(ct, libc):
    # python3-gumbo's enums: a metaclass that refuses a class without _values_, a __repr__
    # and a from_param that refuses another class. A field read from the library's memory
    # made the metaclass run again (ValueError on every parse), then failed from_param and
    # showed another repr.
    class Meta(type(ct.c_uint)):
        def __new__(mcs, name, bases, namespace):
            if "_values_" not in namespace:
                raise ValueError("No _values_ list found inside enum type.")
            return super().__new__(mcs, name, bases, namespace)

    class Tag(ct.c_uint, metaclass=Meta):
        _values_ = ["HTML", "BODY"]

        def __repr__(self):
            return "Tag." + self._values_[self.value]

        @classmethod
        def from_param(cls, value):
            if isinstance(value, ct.c_uint) and value.__class__ != cls:
                raise ValueError("Can't mix enums of different types")
            return value

    class Node(ct.Structure):
        _fields_ = [("tag", Tag), ("depth", ct.c_int)]

    libc.calloc.restype = ct.POINTER(Node)
    libc.free.argtypes = [ct.POINTER(Node)]
    node = libc.calloc(1, ct.sizeof(Node))
    node.contents.tag = Tag(1)
    tag = node.contents.tag
    assert repr(tag) == "Tag.BODY" and tag.__class__ is Tag and tag.value == 1
    libc.abs.argtypes = [Tag]
    assert libc.abs(tag) == 1
    libc.free(node)


def test_memmove_into_what_a_pointer_points_to_leaves_the_pointer(ct, libc):
    # python3-dlt copies a message into a record's buffer field with memmove: ffibox then
    # "imaged" the copied worker words over the pointer object's own slot, and the record's
    # other pointer field with it.
    class Record(ct.Structure):
        _fields_ = [("data", ct.POINTER(ct.c_ubyte)), ("other", ct.POINTER(ct.c_int))]

    x = ct.c_int(5)
    buffer = (ct.c_ubyte * 16)()
    record = Record(ct.cast(buffer, ct.POINTER(ct.c_ubyte)), ct.pointer(x))
    libc.malloc.restype = libc.memset.restype = ct.c_void_p
    libc.malloc.argtypes = [ct.c_size_t]
    libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
    libc.free.argtypes = [ct.c_void_p]
    library_bytes = libc.malloc(16)
    libc.memset(library_bytes, 0x41, 16)
    ct.memmove(record.data, ct.cast(library_bytes, ct.POINTER(ct.c_ubyte)), 16)
    assert bytes(buffer) == b"A" * 16
    assert ct.cast(record.data, ct.c_void_p).value == ct.addressof(buffer)
    assert record.other.contents.value == 5
    libc.free(library_bytes)


def test_in_dll_of_pointer_and_function_types(ct, testlib):
    # POINTER(T).in_dll and PROTOTYPE.in_dll (genometools' import): ffibox's crashed this
    # process, the stdlib's in_dll looking the worker's library handle up here.
    version = ct.POINTER(ct.c_char).in_dll(testlib, "ffibox_version")
    assert bool(version) and version[0] == b"f" and version.contents.value == b"f"
    # Passed or cast, it is the pointer the variable holds, not the variable's address.
    held = ct.c_void_p.in_dll(testlib, "ffibox_version").value
    assert ct.cast(version, ct.c_void_p).value == held
    strlen = ct.CDLL("libc.so.6").strlen
    strlen.argtypes = [ct.POINTER(ct.c_char)]
    assert strlen(version) == len(b"ffibox-test 1.0")
    # Pointed elsewhere through .contents, the variable holds the new target's address.
    pointer = ct.POINTER(ct.c_double).in_dll(testlib, "ffibox_version")
    pointer.contents = ct.c_double.in_dll(testlib, "ffibox_scale")
    assert pointer[0] == 2.25
    ct.c_void_p.in_dll(testlib, "ffibox_version").value = held  # as it was
    assert version.contents.value == b"f"
    ABS = ct.CFUNCTYPE(ct.c_int, ct.c_int)
    libc = ct.CDLL("libc.so.6")
    symbol = ABS.in_dll(libc, "abs")  # the function's code seen as a variable
    assert ct.addressof(symbol) == ct.cast(libc.abs, ct.c_void_p).value
    assert ABS(ct.addressof(symbol))(-7) == 7  # genometools' way to the function itself
    # A function pointer variable passed where a function pointer goes is what it holds.
    testlib.call_twice_nested.argtypes = [ABS, ct.c_int]
    handler = ABS.in_dll(testlib, "ffibox_abs_handler")
    assert testlib.call_twice_nested(handler, -3) == 3


# -- variadic calls and errno ------------------------------------------------------------

def test_variadic_calls(ct, testlib, libc):
    assert testlib.sum_variadic(3, 10, 20, 12) == 42
    buffer = ct.create_string_buffer(64)
    libc.snprintf.argtypes = [ct.c_char_p, ct.c_size_t, ct.c_char_p]
    assert libc.snprintf(buffer, 64, b"%d|%.2f|%s|%ls", -5, ct.c_double(1.25), b"ok",
                         "w") == 12
    assert buffer.value == b"-5|1.25|ok|w"


def test_errno_with_use_errno(ct):
    lib = ct.CDLL(TEST_LIB, use_errno=True)
    assert lib.set_errno_to(34) == -1
    assert ct.get_errno() == 34
    ct.set_errno(84)
    assert lib.get_errno_value() == 84


def test_errcheck(ct, testlib):
    def check(result, function, args):
        if result < 0:
            raise OSError("failed with %d" % result)
        return result * 10
    testlib.divmod.errcheck = check
    q, r = ct.c_int(), ct.c_int()
    assert testlib.divmod(7, 2, ct.byref(q), ct.byref(r)) == 0
    with pytest.raises(OSError):
        testlib.divmod(7, 0, ct.byref(q), ct.byref(r))
    # Only a callable is an errcheck; `del` unsets it.
    for not_callable in (None, 5):
        with pytest.raises(TypeError, match="must be callable"):
            testlib.divmod.errcheck = not_callable
    assert testlib.divmod.errcheck is check
    del testlib.divmod.errcheck
    assert testlib.divmod.errcheck is None
    assert testlib.divmod(7, 2, ct.byref(q), ct.byref(r)) == 0


def test_memmove_memset_and_cast_locally(ct):
    buffer = ct.create_string_buffer(8)
    ct.memset(buffer, ord("a"), 3)
    ct.memmove(ct.byref(buffer, 3), b"xyz", 3)
    assert buffer.value == b"aaaxyz"
    array = (ct.c_int * 2)(1, 2)
    assert ct.cast(array, ct.POINTER(ct.c_int))[1] == 2
