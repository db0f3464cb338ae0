"""A structure the library handed out and rewrites in later calls (a FreeType face's glyph
slot) reads as the library left it, through the pointers the caller has held since: the
worker watches what an image of it was read from (ReadMemory.watch) and each call's answer
brings the words the library changed (CallResult.changed). The `ct` fixture runs the first
tests under both the stdlib ctypes in-process and ffibox.ctypes."""
import ctypes as std
import gc
import weakref

import pytest

from conftest import TEST_LIB


def face_types(ct, lib):
    """tests/testlibs/ffibox_test.c's struct Face and struct GlyphSlot, declared on `lib`."""
    class GlyphSlot(ct.Structure):
        _fields_ = [("index", ct.c_int), ("width", ct.c_int),
                    ("bitmap", ct.POINTER(ct.c_ubyte)), ("loads", ct.c_long)]

    class Face(ct.Structure):
        _fields_ = [("family", ct.c_char_p), ("glyph", ct.POINTER(GlyphSlot)),
                    ("glyphs_loaded", ct.c_int)]

    lib.face_open.argtypes = [ct.c_char_p, ct.POINTER(ct.POINTER(Face))]
    lib.face_load_glyph.argtypes = [ct.POINTER(Face), ct.c_int]
    lib.face_close.argtypes = [ct.POINTER(Face)]
    lib.face_close.restype = None
    return Face


def open_face(ct, lib, Face, family=b"Sans"):
    face = ct.POINTER(Face)()
    assert lib.face_open(family, ct.byref(face)) == 0
    return face


def test_a_slot_the_library_rewrites_reads_as_it_left_it(ct, testlib):
    Face = face_types(ct, testlib)
    face = open_face(ct, testlib, Face)
    glyph = face.contents.glyph  # held across the loads, as freetype-py's Face.glyph is
    slot = glyph.contents        # a view of the slot, held too
    assert (slot.index, slot.width, bool(slot.bitmap), slot.loads) == (0, 0, False, 0)
    for loads, index in enumerate((3, 7, 0, 200, 3), start=1):
        assert testlib.face_load_glyph(face, index) == 0
        for seen in (glyph.contents, slot, face.contents.glyph.contents):
            assert (seen.index, seen.width, seen.loads) == (index, 2 * index, loads)
            if index:  # a new buffer each load; 400 bytes for glyph 200
                assert [seen.bitmap[i] for i in range(seen.width)] == [index] * (2 * index)
            else:
                assert not seen.bitmap
        assert face.contents.glyphs_loaded == loads
        assert face.contents.family == b"Sans"
    testlib.face_close(face)


def test_what_the_caller_changed_reaches_the_library_which_rewrites_it(ct, testlib):
    Face = face_types(ct, testlib)
    face = open_face(ct, testlib, Face)
    face.contents.glyphs_loaded = 100
    glyph = face.contents.glyph
    glyph.contents.loads = 40
    assert testlib.face_load_glyph(face, 5) == 0
    assert face.contents.glyphs_loaded == 101
    assert (glyph.contents.index, glyph.contents.loads) == (5, 41)
    testlib.face_close(face)


def test_the_library_putting_back_what_the_caller_changed_is_seen(ct, testlib):
    Face = face_types(ct, testlib)
    face = open_face(ct, testlib, Face)
    glyph = face.contents.glyph
    assert testlib.face_load_glyph(face, 3) == 0
    glyph.contents.index = 99  # reaches the library before its next call, which sets 3 again
    assert testlib.face_load_glyph(face, 3) == 0
    assert (glyph.contents.index, glyph.contents.loads) == (3, 2)
    testlib.face_close(face)


def test_an_object_made_through_a_pointer_keeps_its_memory_when_the_pointer_is_rewritten(ct):
    """gmsh's getElements: `pointer(ptr[i].contents)` for each array a `T**` out-parameter
    names, kept for a later free. When the library then rewrites the array of pointers (or
    free() writes its bookkeeping there), the object made through the old pointer still
    holds that memory, and its pointer still names it: it was the image's bytes, freed with
    the image, and its address reached the worker as this process's (free(): invalid
    pointer in the worker, a crash in this process's collector later)."""
    libc = ct.CDLL("libc.so.6")
    libc.calloc.restype = ct.c_void_p
    libc.calloc.argtypes = [ct.c_size_t, ct.c_size_t]
    libc.memcpy.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_size_t]
    libc.free.argtypes = [ct.c_void_p]
    outer, first, second = libc.calloc(2, 8), libc.calloc(4, 8), libc.calloc(4, 8)
    libc.memcpy(first, (ct.c_size_t * 4)(11, 12, 13, 14), 32)
    libc.memcpy(outer, ct.byref(ct.c_size_t(first)), 8)
    ptr = ct.POINTER(ct.POINTER(ct.c_size_t))()
    libc.memcpy(ct.byref(ptr), ct.byref(ct.c_size_t(outer)), 8)  # an out-parameter
    kept = [ct.pointer(ptr[0].contents)]
    assert [kept[0][i] for i in range(4)] == [11, 12, 13, 14]
    libc.memcpy(outer, ct.byref(ct.c_size_t(second)), 8)  # the library rewrites it
    gc.collect()
    assert ptr[0][0] == 0  # the second array's
    assert [kept[0][i] for i in range(4)] == [11, 12, 13, 14]
    libc.free(kept[0])  # the first array, by the pointer made from it
    libc.free(second)
    libc.free(ptr)


def test_a_stdlib_structure_with_slots_through_a_pointer_into_an_image(ct):
    """Its instances have no __dict__ to keep the image in: they read as in-process."""
    class Pair(std.Structure):
        __slots__ = ()
        _fields_ = [("a", std.c_int), ("b", std.c_int)]

    libc = ct.CDLL("libc.so.6")
    libc.calloc.restype = ct.c_void_p
    libc.calloc.argtypes = [ct.c_size_t, ct.c_size_t]
    libc.memcpy.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_size_t]
    libc.free.argtypes = [ct.c_void_p]
    pairs = ct.POINTER(Pair)()
    libc.memcpy(ct.byref(pairs), ct.byref(ct.c_size_t(libc.calloc(2, 8))), 8)  # out-parameter
    assert (pairs[0].a, pairs[1].b, pairs.contents.b) == (0, 0, 0)
    libc.free(pairs)


def test_a_packed_pointer_across_two_words_follows_the_library(ct, testlib):
    """Its change is in the low half only: reported in the word before it."""
    class Straddled(ct.Structure):
        _fields_ = [("value", ct.c_long)]

    class PackedHolder(ct.Structure):
        _pack_ = 1
        _fields_ = [("tag", ct.c_int), ("inner", ct.POINTER(Straddled)), ("pad", ct.c_int)]

    testlib.packed_open.argtypes = [ct.POINTER(ct.POINTER(PackedHolder))]
    testlib.packed_next.argtypes = [ct.POINTER(PackedHolder)]
    holder = ct.POINTER(PackedHolder)()
    assert testlib.packed_open(ct.byref(holder)) == 0
    assert holder.contents.inner.contents.value == 111
    for tag, value in ((2, 222), (3, 111), (4, 222)):
        assert testlib.packed_next(holder) == tag
        assert (holder.contents.tag, holder.contents.inner.contents.value) == (tag, value)


def test_a_change_past_the_image_budget_leaves_the_call_and_the_library_as_they_are(
        ffibox_client, capfd):
    """The library points a face's fields at new memory, whose images are past the budget:
    the call's result stands, the fields read NULL, and nothing is written back over the
    library's pointers."""
    session = ffibox_client.session(timeout=20)
    lib = session.CDLL(TEST_LIB)
    Face = face_types(std, lib)
    face = open_face(std, lib, Face, b"One")
    image, _ = session.images.find(std.addressof(face.contents))
    other = std.c_void_p()
    lib.face_open.argtypes = [std.c_char_p, std.POINTER(std.c_void_p)]
    assert lib.face_open(b"Two", std.byref(other)) == 0
    libc = session.CDLL("libc.so.6")
    libc.memcpy.argtypes = [std.c_void_p, std.c_void_p, std.c_size_t]
    libc.memcpy.restype = std.c_void_p
    session.images.max_images = 1
    assert libc.memcpy(image.worker, other.value, 16) == image.worker  # family and glyph
    assert "could not all be followed" in capfd.readouterr().err
    session.images.max_images = 4096
    assert not face.contents.glyph
    assert lib.add_int(1, 2) == 3  # a call: the caller's changes go first (none here)
    assert session.memory.read(image.worker, 16) == session.memory.read(other.value, 16)
    session.close()


def test_a_pointer_passed_to_calls_goes_with_its_last_reference(ct, testlib):
    """No reference cycle keeps it (and the images it holds, which the worker watches) until
    the garbage collector runs. (The face stays open: the words of freed memory are the
    allocator's, and one may point anywhere, at the caller's own objects too.)"""
    Face = face_types(ct, testlib)
    face = open_face(ct, testlib, Face)
    gone = weakref.ref(face)
    gc.collect()  # what earlier tests left in cycles
    collecting = gc.isenabled()
    gc.disable()
    try:
        assert testlib.face_load_glyph(face, 3) == 0
        assert testlib.face_load_glyph(face, 4) == 0
        del face
        assert gone() is None
    finally:
        if collecting:
            gc.enable()


@pytest.mark.parametrize("same_host", [True, False], ids=["channel", "grpc"])
def test_faces_opened_and_dropped_end_their_watches(ffibox_client, same_host):
    """Each face's images (the face, its slot, a bitmap) are watched reads; a worker watches
    at most 4096. The watches of images the caller dropped end with later reads, so the
    1500th face still follows the library."""
    session = ffibox_client.session(same_host=same_host, timeout=20)
    lib = session.CDLL(TEST_LIB)
    Face = face_types(std, lib)
    for round in range(1500):
        face = open_face(std, lib, Face)
        glyph = face.contents.glyph
        index = 1 + round % 255
        assert lib.face_load_glyph(face, index) == 0
        assert (glyph.contents.index, glyph.contents.bitmap[min(2 * index, 64) - 1]) == (index, index)
        lib.face_close(face)
        del face, glyph
    session.close()


def test_a_slot_rewritten_many_times_keeps_only_its_current_bitmap_image(ffibox_client):
    session = ffibox_client.session(timeout=20)
    lib = session.CDLL(TEST_LIB)
    Face = face_types(std, lib)
    face = open_face(std, lib, Face)
    glyph = face.contents.glyph
    image, _ = session.images.find(std.addressof(glyph.contents))
    for index in range(1, 301):
        assert lib.face_load_glyph(face, 1 + index % 255) == 0
        assert glyph.contents.bitmap[0] == 1 + index % 255
        assert len(image.children) == 1  # the bitmap's image; the old ones let go
    assert lib.face_load_glyph(face, 0) == 0
    assert not glyph.contents.bitmap and image.children == []
    lib.face_close(face)
    del face, glyph, image
    gc.collect()
    session.close()


def test_threads_whose_calls_change_what_an_image_mirrors_write_none_of_it_back(ct, testlib):
    # Eight threads of one session, each call bumping a number the library keeps, with an
    # image of that memory held (from a typed out-parameter): what each call's answer says
    # the library changed is applied on the calling thread while another thread's call
    # begins, whose look for the caller's own changes must never take the library's
    # bytes, half applied, for the caller's and write them back over later bumps.
    import threading
    testlib.out_int_array.argtypes = [ct.POINTER(ct.POINTER(ct.c_int))]
    testlib.out_int_array.restype = None
    testlib.bump_owned_number.argtypes = [ct.c_int]
    testlib.bump_owned_number.restype = None
    numbers = ct.POINTER(ct.c_int)()
    testlib.out_int_array(ct.byref(numbers))
    start = testlib.owned_number_at(0)

    def bump():
        for _ in range(500):
            testlib.bump_owned_number(0)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert testlib.owned_number_at(0) == start + 4000
    testlib.bump_owned_number(0)  # its answer brings the number as the library left it
    assert numbers[0] == start + 4001


def test_threads_whose_calls_repoint_a_pointer_an_image_holds_write_none_of_it_back(
        ct, testlib):
    # As above, with a pointer the library repoints on each call: a thread following an
    # older answer's pointer (reading its pointee) set the slot back to it after a newer
    # answer had repointed it, and the next sync wrote that stale pointer into the record.
    import threading

    class Node(ct.Structure):
        _fields_ = [("id", ct.c_long), ("pad", ct.c_long * 3)]

    class Rotating(ct.Structure):
        _fields_ = [("node", ct.POINTER(Node)), ("turns", ct.c_long)]

    testlib.rotating_out.argtypes = [ct.POINTER(ct.POINTER(Rotating))]
    testlib.rotating_out.restype = testlib.rotate.restype = None
    testlib.rotating_foreign_writes.restype = testlib.rotating_node_id.restype = ct.c_long
    rotating = ct.POINTER(Rotating)()
    testlib.rotating_out(ct.byref(rotating))
    record = rotating.contents

    def rotate():
        for _ in range(500):
            testlib.rotate()

    threads = [threading.Thread(target=rotate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert testlib.rotating_foreign_writes() == 0
    testlib.rotate()  # its answer brings the record as the library left it
    assert record.node.contents.id == testlib.rotating_node_id() == record.turns % 16
