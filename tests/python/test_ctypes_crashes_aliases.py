"""Worker addresses that reach caller memory past the library's own stores never crash the
caller: written through an alias of another type, copied in as raw bytes, seen through
`from_buffer`, copied out of a view of worker memory, or read through a pointer object.

Each pattern is valid ctypes code with the library in-process. It runs in a child process
(a crash there is a failed test, not the end of the suite) against a real ffiboxd, and must
print what the stdlib prints with the library in-process.
"""
import textwrap

import pytest

from conftest import TEST_LIB, check_pattern, check_patterns_with_the_stdlib, run_script

PRELUDE = textwrap.dedent("""
    import os, sys
    os.environ["FFIBOX_ADDRESS"] = sys.argv[1]
    from ffibox import ctypes
    from ffibox.ctypes import *
    lib = CDLL(sys.argv[2])
    libc = CDLL("libc.so.6")
    libc.strdup.restype = c_void_p
    libc.strdup.argtypes = [c_char_p]
    libc.calloc.restype = c_void_p
    libc.calloc.argtypes = [c_size_t, c_size_t]
    libc.memcpy.argtypes = [c_void_p, c_void_p, c_size_t]
    class Record(Structure):
        _fields_ = [("id", c_int), ("name", c_char_p), ("numbers", POINTER(c_int))]
    class Outer(Structure):
        _fields_ = [("k", c_int), ("record", Record)]
    # Worker memory: four ints, three names (char*[3]) and a Record the library filled.
    ints = libc.calloc(4, sizeof(c_int))
    libc.memcpy(ints, (c_int * 4)(1, 2, 3, 4), sizeof(c_int) * 4)
    names = libc.calloc(3, sizeof(c_char_p))
    lib.fill_names.argtypes = [c_void_p, c_int]
    lib.fill_names(names, 3)
    source = Record()
    lib.fill_record(byref(source))
    record = libc.calloc(1, sizeof(Record))
    libc.memcpy(record, byref(source), sizeof(Record))
""")

PATTERNS = {
    "worker_string_stored_into_a_char_p_field_through_a_void_p_alias": """
        r = Record()
        c_void_p.from_buffer(r, Record.name.offset).value = libc.strdup(b"worker's")
        print(r.name)
    """,
    "worker_array_stored_into_a_pointer_field_through_a_cast_alias": """
        r = Record()
        cast(pointer(r), POINTER(c_void_p))[Record.numbers.offset // sizeof(c_void_p)] = ints
        print(r.numbers[3], r.numbers.contents.value, r.numbers[1])
    """,
    "worker_string_stored_into_a_nested_record_through_an_alias": """
        o = Outer()
        at = Outer.record.offset + Record.name.offset
        c_void_p.from_buffer(o, at).value = libc.strdup(b"nested")
        print(o.record.name)
    """,
    "worker_array_stored_into_a_pointer_object_through_an_alias": """
        p = POINTER(c_int)()
        c_void_p.from_buffer(p).value = ints
        print(p[2], p.contents.value, p[1:3])
    """,
    "worker_array_copied_into_pointer_objects_then_written_through_them": """
        p, q = POINTER(c_int)(), pointer(c_int(7))
        memmove(byref(p), byref(c_void_p(ints)), sizeof(c_void_p))
        c_void_p.from_buffer(q).value = ints
        print(q.contents.value, end=" ")
        p[0] = 10
        q[1] += 20
        print(p[0], q[1], string_at(ints, sizeof(c_int) * 2) == bytes((c_int * 2)(10, 22)))
    """,
    "worker_strings_read_through_a_pointer_to_char_p": """
        words = (c_void_p * 3)()
        memmove(words, names, 3 * sizeof(c_void_p))
        p = cast(words, POINTER(c_char_p))
        print(p[0], p[1:3], p.contents.value)
    """,
    "copy_into_worker_memory_after_a_change_through_an_image": """
        p = POINTER(c_int)()
        lib.out_int_array(byref(p))
        lib.ptr_offset.restype = lib.greeting.restype = c_void_p
        lib.ptr_offset.argtypes = [c_void_p, c_long]
        numbers = lib.ptr_offset(p, 0)
        p[0] = 100
        memmove(numbers, lib.greeting(), 4)
        print(lib.owned_number_at(0) == int.from_bytes(b"hell", "little"))
    """,
    "worker_array_reached_through_an_array_of_pointers": """
        pointers = (POINTER(c_int) * 2)()
        c_void_p.from_buffer(pointers, sizeof(c_void_p)).value = ints
        print(pointers[1][3], pointers[1].contents.value, bool(pointers[0]))
    """,
    "char_p_array_made_from_bytes_of_worker_memory": """
        copy = (c_char_p * 3).from_buffer_copy(string_at(names, 3 * sizeof(c_char_p)))
        print(copy[0], copy[1], copy[2])
    """,
    "record_array_made_from_bytes_of_worker_memory": """
        copy = (Record * 1).from_buffer_copy(string_at(record, sizeof(Record)))
        print(copy[0].id, copy[0].name, copy[0].numbers[1])
    """,
    "record_over_a_bytearray_of_worker_bytes": """
        data = bytearray(string_at(record, sizeof(Record)))
        r = Record.from_buffer(data)
        print(r.id, r.name, r.numbers[2])
    """,
    "char_p_array_over_a_bytearray_of_worker_bytes": """
        data = bytearray(string_at(names, 3 * sizeof(c_char_p)))
        copy = (c_char_p * 3).from_buffer(data)
        print(copy[0], copy[2])
    """,
    "view_of_worker_memory_copied_as_a_value": """
        view = cast(record, POINTER(Record)).contents
        copy = Record.from_buffer_copy(view)
        o = Outer()
        o.record = view
        print(copy.name, copy.numbers[3], o.record.name, o.record.numbers[0])
    """,
    "char_array_field_of_a_view_is_bytes_as_ctypes_gives_it": """
        class Entry(Structure):
            _fields_ = [("kind", c_int), ("name", c_char * 16)]
        entry = libc.calloc(1, sizeof(Entry))
        libc.memcpy(entry, byref(Entry(3, b"readdir-like")), sizeof(Entry))
        print(cast(entry, POINTER(Entry)).contents.name)
    """,
    "worker_string_cast_to_char_p_and_copied_by_assignment": """
        w = libc.strdup(b"cast")
        r, names = Record(), (c_char_p * 2)()
        r.name = cast(w, c_char_p)
        names[1] = cast(w, c_char_p)
        aliased = Record()
        cast(pointer(aliased), POINTER(c_char_p))[1] = cast(w, c_char_p)
        print(r.name, names[1], aliased.name)
    """,
    "view_of_worker_memory_copied_with_memmove_of_its_byref": """
        view = cast(record, POINTER(Record)).contents
        view.id = 5
        copy = Record()
        memmove(byref(copy), byref(view), sizeof(Record))
        print(copy.id, copy.name, copy.numbers[2], bytes(view)[:4] == bytes(c_int(5)))
    """,
    "array_types_made_at_worker_addresses": """
        print((c_int * 4).from_address(ints)[3], (c_char_p * 3).from_address(names)[1],
              (c_char * 6).from_address(libc.strdup(b"hello")).value)
    """,
}

EXPECTED = {
    "array_types_made_at_worker_addresses": "4 b'beta' b'hello'",
    "char_array_field_of_a_view_is_bytes_as_ctypes_gives_it": "b'readdir-like'",
    "worker_string_cast_to_char_p_and_copied_by_assignment": "b'cast' b'cast' b'cast'",
    "view_of_worker_memory_copied_with_memmove_of_its_byref": "5 b'record name' 9 True",
    "worker_string_stored_into_a_char_p_field_through_a_void_p_alias": "b\"worker's\"",
    "worker_array_stored_into_a_pointer_field_through_a_cast_alias": "4 1 2",
    "worker_string_stored_into_a_nested_record_through_an_alias": "b'nested'",
    "worker_array_stored_into_a_pointer_object_through_an_alias": "3 1 [2, 3]",
    "worker_array_copied_into_pointer_objects_then_written_through_them": "1 10 22 True",
    "worker_array_reached_through_an_array_of_pointers": "4 1 False",
    "copy_into_worker_memory_after_a_change_through_an_image": "True",
    "worker_strings_read_through_a_pointer_to_char_p": "b'alpha' [b'beta', b'gamma'] b'alpha'",
    "char_p_array_made_from_bytes_of_worker_memory": "b'alpha' b'beta' b'gamma'",
    "record_array_made_from_bytes_of_worker_memory": "42 b'record name' 8",
    "record_over_a_bytearray_of_worker_bytes": "42 b'record name' 9",
    "char_p_array_over_a_bytearray_of_worker_bytes": "b'alpha' b'gamma'",
    "view_of_worker_memory_copied_as_a_value": "b'record name' 10 b'record name' 7",
}


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_the_pattern_works_as_with_the_stdlib_and_never_crashes_the_caller(server, pattern):
    check_pattern(server, PRELUDE + textwrap.dedent(PATTERNS[pattern]), EXPECTED[pattern])


def test_the_patterns_give_the_same_with_the_stdlib_in_process():
    # The expectations above are the stdlib's: check them against ctypes itself.
    check_patterns_with_the_stdlib(PRELUDE, PATTERNS, EXPECTED)


def test_a_string_stored_into_worker_memory_is_a_copy_there_kept_as_ctypes_keeps_it(server):
    # As ctypes stores it (it was refused with a TypeError): the library reads a copy in the
    # worker, which lives as long as the view it was stored through, whatever the caller's
    # bytes object does.
    result = run_script(PRELUDE + textwrap.dedent("""
        import gc
        view = cast(record, POINTER(Record)).contents
        view.name = b"mine" + str(7).encode()
        gc.collect()
        print(view.name, cast(record, POINTER(Record)).contents.name)
    """), server.address, TEST_LIB)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "b'mine7' b'mine7'"


def test_a_pointer_to_the_callers_memory_reads_it_whatever_the_worker_said(server):
    # A library can hand back an address of this process (it learned it from a void* field
    # ffibox passed on unchanged): noted as the worker's, it must not turn the caller's own
    # pointer into an image of worker memory.
    result = run_script(PRELUDE + textwrap.dedent("""
        from ffibox import _addresses
        numbers = (c_int * 4)(1, 2, 3, 4)
        p = cast(numbers, POINTER(c_int))
        _addresses.note_worker_address(addressof(numbers))
        numbers[1] = 20
        print(p[1], p.contents.value, cast(p, c_void_p).value == addressof(numbers))
    """), server.address, TEST_LIB)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "20 1 True"


def test_an_address_the_library_hands_back_is_never_read_in_this_process(server):
    # 0x400000 is where a non-PIE executable (this interpreter, on Debian) is mapped: the
    # library's address must be read and written in the worker (where nothing is mapped
    # there: a fault, as C's), never as this process's own memory.
    result = run_script(PRELUDE + textwrap.dedent("""
        import ffibox
        lib.ptr_offset.restype = c_void_p
        lib.ptr_offset.argtypes = [c_void_p, c_long]
        address = lib.ptr_offset(None, 0x400000)
        p = POINTER(c_uint32)()
        c_void_p.from_buffer(p).value = address
        for access in (lambda: p[0], lambda: p.__setitem__(0, 1)):
            try:
                print(access())
            except ffibox.MemoryFault as fault:
                print(fault.code, end=" ")
    """), server.address, TEST_LIB)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "MEMORY_FAULT MEMORY_FAULT"
