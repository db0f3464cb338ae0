"""An image passed back to the library is the library's own memory, not a copy of it.

A pointer the library stores into caller memory (an out-parameter, a field it fills, a
callback's `char**`) leaves an image there: a local copy of the worker memory it names
(ffibox._images). However the caller passes that memory back (the record where its POINTER
goes, as ctypes passes it by reference; `byref` of it, with an offset or not; a field, a
nested record, an array element; its address as an integer; a pointer into it stored into
the library's memory), the library must get its own object, as in-process: pyglet's
`av_guess_frame_rate(ctx, ctx.contents.streams[i].contents, None)` handed FFmpeg a copy of
the AVStream the size pyglet declares, and FFmpeg read past it. The `ct` fixture runs each
test under the stdlib ctypes in-process and ffibox.ctypes.
"""
import pytest

from conftest import TEST_LIB
from test_images_follow_the_library import face_types


def record_types(ct):
    """A record holding a nested record and an array of them (offsets 0, 8, 16, 40)."""
    class Inner(ct.Structure):
        _fields_ = [("a", ct.c_int), ("b", ct.c_int)]

    class Outer(ct.Structure):
        _fields_ = [("tag", ct.c_long), ("inner", Inner), ("items", Inner * 3),
                    ("name", ct.c_char_p)]

    return Inner, Outer


def library_record(ct, Outer):
    """A POINTER(Outer) the library filled through an out-parameter, to a zeroed Outer it
    allocated: its `.contents` is an image under ffibox.ctypes."""
    libc = ct.CDLL("libc.so.6")
    libc.calloc.restype = ct.c_void_p
    libc.calloc.argtypes = [ct.c_size_t, ct.c_size_t]
    libc.memcpy.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_size_t]
    record = ct.POINTER(Outer)()
    libc.memcpy(ct.byref(record), ct.byref(ct.c_size_t(libc.calloc(1, ct.sizeof(Outer)))), 8)
    return record


def where_the_library_sees(ct, lib, parameter):
    """ptr_offset(p, 0) declared with a first parameter of type `parameter`: the address the
    library gets for an argument passed there (a c_void_p result)."""
    seen = ct.CFUNCTYPE(ct.c_void_p, parameter, ct.c_long)(("ptr_offset", lib))
    return lambda argument: seen(argument, 0)


# (the parameter's type, the argument, the offset of what it names in the record)
BY_REFERENCE = {
    "the_record_where_its_pointer_goes": lambda ct, Inner, Outer, o: (ct.POINTER(Outer), o, 0),
    "byref_of_the_record": lambda ct, Inner, Outer, o: (ct.POINTER(Outer), ct.byref(o), 0),
    "a_nested_record_where_its_pointer_goes":
        lambda ct, Inner, Outer, o: (ct.POINTER(Inner), o.inner, 8),
    "byref_of_a_nested_record": lambda ct, Inner, Outer, o: (ct.POINTER(Inner),
                                                             ct.byref(o.inner), 8),
    "an_array_field": lambda ct, Inner, Outer, o: (ct.POINTER(Inner), o.items, 16),
    "an_element_of_an_array_field":
        lambda ct, Inner, Outer, o: (ct.POINTER(Inner), o.items[1], 24),
    "byref_with_an_offset": lambda ct, Inner, Outer, o: (ct.c_void_p, ct.byref(o, 8), 8),
    "byref_of_an_element_with_an_offset":
        lambda ct, Inner, Outer, o: (ct.c_void_p, ct.byref(o.items[2], 4), 36),
}


@pytest.mark.parametrize("form", sorted(BY_REFERENCE))
def test_an_image_passed_by_reference_is_the_librarys_own_memory(ct, testlib, form):
    """And what the library writes there shows in the image after the call."""
    Inner, Outer = record_types(ct)
    record = library_record(ct, Outer)
    own = where_the_library_sees(ct, testlib, ct.c_void_p)(record)
    parameter, argument, offset = BY_REFERENCE[form](ct, Inner, Outer, record.contents)
    assert where_the_library_sees(ct, testlib, parameter)(argument) == own + offset
    memset = ct.CFUNCTYPE(ct.c_void_p, parameter, ct.c_int, ct.c_size_t)(
        ("memset", ct.CDLL("libc.so.6")))
    memset(argument, 0x11, 4)
    assert bytes(record.contents)[:offset + 8] == bytes(offset) + b"\x11" * 4 + bytes(4)


def test_a_record_declared_shorter_than_the_librarys_is_read_whole(ct, testlib):
    """pyglet's case: the binding declares the first fields of a record the library hands
    out, and passes it where its pointer goes; the library reads the fields past them."""
    class FaceHead(ct.Structure):
        _fields_ = [("family", ct.c_char_p)]  # struct Face goes on: glyph, glyphs_loaded

    testlib.face_open.argtypes = [ct.c_char_p, ct.POINTER(ct.POINTER(FaceHead))]
    testlib.face_load_glyph.argtypes = [ct.POINTER(FaceHead), ct.c_int]
    testlib.face_close.argtypes = [ct.POINTER(FaceHead)]
    testlib.face_close.restype = None
    face = ct.POINTER(FaceHead)()
    assert testlib.face_open(b"Sans", ct.byref(face)) == 0
    head = face.contents
    assert testlib.face_load_glyph(head, 3) == 0
    assert testlib.face_load_glyph(ct.byref(head), 7) == 0

    Face = face_types(ct, ct.CDLL(TEST_LIB))  # declared whole, on a library object of its own
    libc = ct.CDLL("libc.so.6")
    libc.memcpy.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_size_t]
    whole = ct.POINTER(Face)()
    libc.memcpy(ct.byref(whole), ct.byref(face), 8)  # the same face, declared whole
    slot = whole.contents.glyph.contents
    assert (whole.contents.glyphs_loaded, slot.index, slot.width, slot.loads) == (2, 7, 14, 2)
    assert head.family == b"Sans"
    testlib.face_close(face)


def test_an_opaque_handle_passed_by_its_contents_is_the_librarys_object(ct, testlib):
    """An incomplete record's image is an address-only placeholder: by reference, it is the
    library's object (a copy would be of no bytes at all)."""
    class Handle(ct.Structure):
        pass

    testlib.handle_out.argtypes = [ct.c_int, ct.POINTER(ct.POINTER(Handle))]
    testlib.handle_get.argtypes = testlib.handle_free.argtypes = [ct.POINTER(Handle)]
    testlib.handle_free.restype = None
    handle = ct.POINTER(Handle)()
    testlib.handle_out(1234, ct.byref(handle))
    assert testlib.handle_get(handle.contents) == 1234
    assert testlib.handle_get(ct.byref(handle.contents)) == 1234
    testlib.handle_free(handle.contents)


def test_a_pointer_the_library_keeps_into_an_image_is_into_its_own_memory(ct, testlib):
    """The caller's change to the image reaches the library before the next call, and what
    the library writes through the pointer it kept shows in the image after it."""
    testlib.out_int_array.argtypes = [ct.POINTER(ct.POINTER(ct.c_int))]
    testlib.register_total.argtypes = [ct.POINTER(ct.c_int)]
    testlib.register_total.restype = None
    testlib.set_owned_number.restype = None
    numbers = ct.POINTER(ct.c_int)()
    testlib.out_int_array(ct.byref(numbers))  # {7, 8, 9, 10}, the library's own array
    try:
        testlib.register_total(ct.byref(numbers.contents, 4))  # &numbers[1]
        numbers[1] = 20
        assert testlib.add_to_total(1) == 21
        assert numbers[1] == 21
        testlib.set_owned_number(1, 50)
        assert testlib.add_to_total(1) == 51
        assert (numbers[1], testlib.owned_number_at(1)) == (51, 51)
    finally:
        testlib.set_owned_number(1, 8)


def test_an_image_of_the_librarys_array_of_strings_passed_back_is_the_whole_array(ct, testlib):
    """The first element of a `char**` out-parameter, where a `const char* const*` goes
    (by reference, as ctypes passes it) and by `byref`, with an offset too: the library
    reads the elements after it."""
    testlib.out_many_names.argtypes = [ct.POINTER(ct.POINTER(ct.c_char_p))]
    testlib.total_length.argtypes = [ct.POINTER(ct.c_char_p), ct.c_int]
    testlib.total_length.restype = ct.c_size_t
    names = ct.POINTER(ct.c_char_p)()
    testlib.out_many_names(ct.byref(names))  # "name0", "name1", "name2", NULL, ...
    assert testlib.total_length(names, 3) == 15
    assert testlib.total_length(names.contents, 3) == 15
    assert testlib.total_length(ct.byref(names.contents), 3) == 15
    assert testlib.total_length(ct.byref(names.contents, 8), 2) == 10


def test_an_image_a_callback_is_handed_passed_back_from_it_is_the_librarys_memory(
        ct, testlib):
    """each_row hands its row callback the library's `char** values`; the callback passes
    them back to the library (a call from inside it) by reference."""
    ROW = ct.CFUNCTYPE(ct.c_int, ct.c_void_p, ct.c_int, ct.POINTER(ct.c_char_p))
    testlib.each_row.argtypes = [ROW, ct.c_void_p]
    testlib.total_length.argtypes = [ct.POINTER(ct.c_char_p), ct.c_int]
    testlib.total_length.restype = ct.c_size_t
    seen = where_the_library_sees(ct, testlib, ct.c_void_p)
    lengths, offsets = [], []

    def row(context, columns, values):
        lengths.extend([testlib.total_length(values, columns),
                        testlib.total_length(values.contents, columns),
                        testlib.total_length(ct.byref(values.contents), columns),
                        testlib.total_length(ct.byref(values.contents, 8), columns - 1)])
        own = seen(values)
        offsets.extend([seen(ct.byref(values.contents)) - own,
                        seen(ct.byref(values.contents, 16)) - own,
                        seen(ct.addressof(values.contents)) - own])
        return 0

    callback = ROW(row)
    assert testlib.each_row(callback, None) == 0
    assert lengths == [16, 16, 16, 11]  # "first", "second", "third"
    assert offsets == [0, 16, 0]


def test_a_void_pointer_parameter_reaches_an_image_every_way(ct, testlib):
    """`byref`, `cast` and `pointer` of the image or of a part of it, and its address as an
    integer or a `c_void_p`."""
    Inner, Outer = record_types(ct)
    record = library_record(ct, Outer)
    o = record.contents
    seen = where_the_library_sees(ct, testlib, ct.c_void_p)
    own = seen(record)
    arguments = [ct.byref(o), ct.byref(o.inner), ct.byref(o.items[1]), o.items,
                 ct.cast(o.items, ct.c_void_p), ct.cast(ct.byref(o.inner), ct.c_void_p),
                 ct.pointer(o.inner), ct.addressof(o), ct.addressof(o.items[2]),
                 ct.c_void_p(ct.addressof(o.inner))]
    assert [seen(argument) - own for argument in arguments] == [0, 8, 24, 16, 16, 8, 8, 0,
                                                                32, 8]


def test_the_address_of_an_image_as_a_pointer_sized_integer_is_the_librarys(ct, testlib):
    Inner, Outer = record_types(ct)
    record = library_record(ct, Outer)
    own = where_the_library_sees(ct, testlib, ct.c_void_p)(record)
    seen = where_the_library_sees(ct, testlib, ct.c_size_t)
    assert seen(ct.addressof(record.contents)) == own
    assert seen(ct.addressof(record.contents.items)) == own + 16


@pytest.mark.parametrize("same_host", [True, False], ids=["channel", "grpc"])
def test_the_address_of_an_image_as_a_pointer_sized_integer_either_way(ffibox_client,
                                                                        same_host):
    """On the same-host channel a call of scalars goes through its packer
    (ffibox._packers), which leaves such an integer to the general way."""
    from ffibox import ctypes as ct
    session = ffibox_client.session(same_host=same_host)
    lib = session.CDLL(TEST_LIB)
    libc = session.CDLL("libc.so.6")
    libc.calloc.restype = lib.ptr_offset.restype = ct.c_void_p
    libc.calloc.argtypes = [ct.c_size_t, ct.c_size_t]
    libc.memcpy.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_size_t]
    lib.ptr_offset.argtypes = [ct.c_size_t, ct.c_long]
    address = libc.calloc(4, 8)
    numbers = ct.POINTER(ct.c_long)()
    libc.memcpy(ct.byref(numbers), ct.byref(ct.c_size_t(address)), 8)
    for _ in range(2):  # a packer is made by the first call, and used by the next
        assert lib.ptr_offset(ct.addressof(numbers.contents), 8) == address + 8
    assert lib.ptr_offset(1234, 8) == 1242  # a number is a number
    session.close()


def calloc_ints(ct):
    """libc, the address of 4 ints it callocs, and a POINTER(c_int) to them the library
    filled in (an out-parameter: its `.contents` is an image)."""
    libc = ct.CDLL("libc.so.6")
    libc.calloc.restype = ct.c_void_p
    libc.calloc.argtypes = [ct.c_size_t, ct.c_size_t]
    libc.memcpy.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_size_t]
    address = libc.calloc(4, 4)
    numbers = ct.POINTER(ct.c_int)()
    libc.memcpy(ct.byref(numbers), ct.byref(ct.c_size_t(address)), 8)
    return libc, address, numbers


def test_the_address_of_an_image_a_callback_returns_is_the_librarys(ct, testlib):
    """pass_through(f, x) returns f(x), a `void*` callback's result."""
    _, address, numbers = calloc_ints(ct)
    THROUGH = ct.CFUNCTYPE(ct.c_void_p, ct.c_void_p)
    testlib.pass_through.argtypes = [THROUGH, ct.c_void_p]
    testlib.pass_through.restype = ct.c_void_p
    callback = THROUGH(lambda unused: ct.addressof(numbers.contents) + 4)
    assert testlib.pass_through(callback, None) == address + 4


def test_a_pointer_into_an_image_stored_into_the_librarys_memory_is_its_address(ct):
    """Stored through a pointer to the library's memory (`slots[0] = p`), as a callback
    stores a result for the library: the worker address of what the image mirrors."""
    libc, address, numbers = calloc_ints(ct)
    calloc_slots = ct.CFUNCTYPE(ct.POINTER(ct.POINTER(ct.c_int)), ct.c_size_t, ct.c_size_t)(
        ("calloc", libc))
    slots = calloc_slots(3, 8)
    slots[0] = numbers
    slots[1] = ct.pointer(numbers.contents)
    slots[2] = ct.cast(ct.byref(numbers.contents, 8), ct.POINTER(ct.c_int))
    words = ct.cast(slots, ct.POINTER(ct.c_size_t))
    assert [words[i] for i in range(3)] == [address, address, address + 8]
