"""How arguments are converted, side by side with the stdlib in-process (the `ct` fixture
runs each test under both): a ctypes subclass's own from_param decides what goes, an int
without a declared type is refused where ctypes refuses it, and ArgumentError reads as the
stdlib's."""
import sys
import threading

import pytest


def test_a_subclass_from_param_result_is_what_goes(ct, testlib):
    class Scaled(ct.c_int):
        @classmethod
        def from_param(cls, value):
            return ct.c_int(value * 100)

    testlib.add_int.argtypes = [Scaled, Scaled]
    assert testlib.add_int(1, 2) == 300


def test_a_c_char_p_subclass_that_takes_str(ct, testlib):
    class Text(ct.c_char_p):
        @classmethod
        def from_param(cls, value):
            if isinstance(value, str):
                value = value.encode("utf-8")
            return ct.c_char_p(value)

    testlib.str_len.argtypes = [Text]
    testlib.str_len.restype = ct.c_size_t
    assert testlib.str_len("hello") == 5
    assert testlib.str_len(b"bytes too") == 9


def test_a_from_param_that_refuses_is_an_argument_error(ct, testlib):
    class Positive(ct.c_int):
        @classmethod
        def from_param(cls, value):
            if value < 0:
                raise ValueError("must not be negative")
            return ct.c_int(value)

    testlib.add_int.argtypes = [Positive, ct.c_int]
    assert testlib.add_int(4, 5) == 9
    with pytest.raises(ct.ArgumentError) as refused:
        testlib.add_int(-4, 5)
    assert str(refused.value) == "argument 1: ValueError: must not be negative"


def test_an_untyped_int_beyond_a_c_long_is_an_overflow(ct, testlib):
    testlib.is_even.argtypes = None
    assert testlib.is_even(4) == 1
    for huge in (2 ** 64, 2 ** 64 + 1, -(2 ** 63) - 1, 10 ** 30):
        with pytest.raises(ct.ArgumentError) as refused:
            testlib.is_even(huge)
        assert str(refused.value) == "argument 1: OverflowError: int too long to convert"


def test_a_pointer_into_part_of_an_array_reaches_the_rest_of_it(ct, libc):
    # What the library writes past the element a pointer names lands in the array, as the
    # memory is the array's: through cast(byref(array, offset), ...) and through a from_buffer
    # view of one element.
    libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
    numbers = (ct.c_int * 4)()
    libc.memset(ct.cast(ct.byref(numbers, 4), ct.POINTER(ct.c_int)), 1, 12)
    assert list(numbers) == [0, 0x01010101, 0x01010101, 0x01010101]
    numbers = (ct.c_int * 4)()
    libc.memset(ct.pointer(ct.c_int.from_buffer(numbers, 4)), 2, 12)
    assert list(numbers) == [0, 0x02020202, 0x02020202, 0x02020202]


def test_wide_strings_with_units_that_are_no_characters_read_as_ctypes_reads_them(ct, testlib):
    # A lone surrogate is kept; a unit past U+10FFFF is a ValueError naming it.
    testlib.odd_wide.restype = ct.c_void_p
    testlib.odd_wide_out.argtypes = [ct.POINTER(ct.c_wchar_p), ct.c_int]
    p = ct.c_wchar_p()
    testlib.odd_wide_out(ct.byref(p), 0)
    assert p.value == "A\ud800B"
    assert ct.wstring_at(testlib.odd_wide(0), 3) == "A\ud800B"
    with pytest.raises(ValueError, match="U\\+110000 is not in range"):
        ct.wstring_at(testlib.odd_wide(1), 3)
    # The call that stores such a string succeeds; reading it raises.
    p = ct.c_wchar_p()
    testlib.odd_wide_out(ct.byref(p), 1)
    with pytest.raises(ValueError, match="U\\+110000 is not in range"):
        p.value


def test_wide_string_results_with_units_that_are_no_characters_read_as_ctypes_reads_them(
        ct, testlib):
    testlib.odd_wide.restype = ct.c_wchar_p
    assert testlib.odd_wide(0) == "A\ud800B"
    with pytest.raises(ValueError, match="U\\+110000 is not in range"):
        testlib.odd_wide(1)
    testlib.odd_wide.restype = ct.c_void_p
    assert ct.wstring_at(testlib.odd_wide(0)) == "A\ud800B"
    assert ct.cast(testlib.odd_wide(0), ct.c_wchar_p).value == "A\ud800B"


def _box_functions(ct, testlib):
    """box_new, box_destroy and box_renew of the test library, declared."""
    class Box(ct.Structure):
        _fields_ = [("value", ct.c_int)]

    testlib.box_new.restype = ct.POINTER(Box)
    testlib.box_new.argtypes = [ct.c_int]
    testlib.box_destroy.argtypes = [ct.POINTER(ct.POINTER(Box))]
    testlib.box_renew.argtypes = [ct.POINTER(ct.POINTER(Box)), ct.c_int]


def test_byref_of_a_pointer_the_library_returned_takes_what_it_stores(ct, testlib):
    # The "destroy and NULL it" idiom (dmtxEncodeDestroy(byref(encoder))), and a library
    # that replaces the object behind the caller's pointer.
    _box_functions(ct, testlib)
    box = testlib.box_new(7)
    assert box and box.contents.value == 7
    testlib.box_renew(ct.byref(box), 8)
    assert box.contents.value == 8
    testlib.box_renew(ct.pointer(box), 9)
    assert box.contents.value == 9
    assert testlib.box_destroy(ct.byref(box)) == 9
    assert not box
    assert testlib.box_destroy(ct.byref(box)) == -1


def test_a_returned_pointer_stays_a_dict_key_while_the_library_changes_it(ct, testlib):
    _box_functions(ct, testlib)
    box = testlib.box_new(7)
    if ct.__name__ == "ctypes":  # the stdlib's pointers are no keys at all
        with pytest.raises(TypeError, match="unhashable"):
            hash(box)
        return
    owners = {box: "first"}
    testlib.box_renew(ct.byref(box), 8)
    assert owners[box] == "first" and box in owners
    assert testlib.box_destroy(ct.byref(box)) == 8
    assert owners.pop(box) == "first"


def test_threads_passing_byref_of_one_returned_pointer_change_that_pointer(ct, testlib):
    # The threads' first byref of a pointer, at once: what the library stores through any of
    # them is what the pointer holds (a slot made twice would leave it holding the old one).
    _box_functions(ct, testlib)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch within the first byref
    try:
        for value in range(300):
            box = testlib.box_new(value)
            barrier = threading.Barrier(8)
            references = []

            def take():
                barrier.wait()
                references.append(ct.byref(box))

            threads = [threading.Thread(target=take) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert testlib.box_destroy(references[0]) == value
            assert not box, value
    finally:
        sys.setswitchinterval(interval)


def test_a_library_function_passed_without_argtypes_is_its_address(ct, libc):
    # qsort(..., libc.strcmp): ctypes passes the function's address (pycryptodome's
    # raw_api passes functions of its own libraries so).
    names = (ct.c_char * 4 * 3)()
    names[0].value, names[1].value, names[2].value = b"ccc", b"aaa", b"bbb"
    libc.qsort.restype = None
    libc.qsort(names, 3, 4, libc.strcmp)
    assert [bytes(name.value) for name in names] == [b"aaa", b"bbb", b"ccc"]


def test_an_address_where_a_string_goes_is_refused(ct, libc):
    # c_char_p.from_param takes no integer: an ArgumentError, not a library reading there.
    libc.strlen.argtypes = [ct.c_char_p]
    with pytest.raises(ct.ArgumentError, match="wrong type"):
        libc.strlen(12345)
    assert libc.strlen(b"four") == 4


def test_a_cast_of_a_view_reaches_the_memory_the_view_lies_in(ct, libc, testlib):
    # cast(record.field, POINTER(T)), cast(pointer(a).contents, ...): ctypes keeps no
    # reference to such a view, and the library reads and writes the memory it lies in (the
    # worker was handed the caller's own address and crashed).
    class Node(ct.Structure):
        pass

    Node._fields_ = [("value", ct.c_int), ("next", ct.POINTER(Node))]

    class Holder(ct.Structure):
        _fields_ = [("count", ct.c_int), ("data", ct.c_ubyte * 8), ("nodes", Node * 2)]

    holder = Holder(7)
    libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
    libc.memset(ct.cast(holder.data, ct.POINTER(ct.c_ubyte)), 0x41, 4)
    libc.memset(ct.cast(ct.pointer(holder).contents.data, ct.c_void_p), 0x42, 2)
    assert bytes(holder.data) == b"BBAA\0\0\0\0" and holder.count == 7

    source = (ct.c_ubyte * 4)(1, 2, 3, 4)
    target = (ct.c_ubyte * 4)()
    libc.memcpy.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_size_t]
    libc.memcpy(target, ct.cast(ct.pointer(source).contents, ct.POINTER(ct.c_ubyte)), 4)
    libc.memcpy(target, ct.cast(ct.pointer(source)[0], ct.POINTER(ct.c_ubyte)), 3)
    assert list(target) == [1, 2, 3, 4]

    # Stored into a pointer field, the cast still reaches the record it points into.
    holder.nodes[0].value, holder.nodes[1].value = 1, 2
    holder.nodes[0].next = ct.pointer(holder.nodes[1])
    head = Node(5, ct.cast(holder.nodes, ct.POINTER(Node)))
    testlib.sum_list.argtypes = [ct.POINTER(Node)]
    assert testlib.sum_list(ct.byref(head)) == 8


def test_an_object_made_on_a_bytearray_reaches_the_rest_of_its_buffer(ct, libc):
    # capstone passes its code as byref(c_char.from_buffer(bytearray(code))): the library
    # reads and writes on past the one c_char, in the bytearray (only that one byte went,
    # and the library read the worker's bytes after it).
    import array
    text = bytearray(b"hello, world\0")
    libc.strlen.restype = ct.c_size_t
    assert libc.strlen(ct.byref(ct.c_char.from_buffer(text))) == 12
    assert libc.strlen(ct.byref(ct.c_char.from_buffer(text, 7))) == 5
    out = bytearray(10)
    libc.memset(ct.byref(ct.c_char.from_buffer(out, 1)), 0x41, 8)
    assert out == b"\0AAAAAAAA\0"
    numbers = array.array("i", [5, 6, 7, 8])
    libc.memset(ct.byref(ct.c_int.from_buffer(numbers, 4)), 0, 8)
    assert list(numbers) == [5, 0, 0, 8]


def test_a_callback_passed_as_a_void_pointer_is_that_callback(ct, libc):
    # cast(callback, c_void_p), and its value as an integer (llvmlite's add_symbol takes a
    # Python function so): the library calls the callback (the worker was handed the
    # caller's code address and crashed).
    CMP = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_int), ct.POINTER(ct.c_int))
    compare = CMP(lambda a, b: a[0] - b[0])
    libc.qsort.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_size_t, ct.c_void_p]
    libc.qsort.restype = None
    for given in (ct.cast(compare, ct.c_void_p), ct.cast(compare, ct.c_void_p).value,
                  ct.c_void_p(ct.cast(compare, ct.c_void_p).value)):
        numbers = (ct.c_int * 4)(4, 2, 3, 1)
        libc.qsort(numbers, 4, ct.sizeof(ct.c_int), given)
        assert list(numbers) == [1, 2, 3, 4], given


def test_a_numpy_array_passed_by_its_ctypes_pointer_is_reached(ct, libc):
    # `ndarray.ctypes.data_as(...)` keeps the array on the pointer it makes (wand's
    # Image.from_array, and numpy code at large): the library reads and writes the array (the
    # worker was handed the caller's address and crashed).
    import numpy
    values = numpy.arange(8, dtype=numpy.float64)
    libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
    libc.memset(values.ctypes.data_as(ct.c_void_p), 0, 16)
    libc.memset(values.ctypes.data_as(ct.POINTER(ct.c_double)), 0, 24)
    libc.memset(values[4:].ctypes.data_as(ct.c_void_p), 0, 8)  # a view of the array
    assert list(values) == [0, 0, 0, 3, 0, 5, 6, 7]
    copied = numpy.zeros(4, dtype=numpy.int32)
    libc.memcpy.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_size_t]
    libc.memcpy(copied.ctypes.data_as(ct.POINTER(ct.c_int32)),
                numpy.array([1, 2, 3, 4], dtype=numpy.int32).ctypes.data_as(ct.c_void_p), 16)
    assert list(copied) == [1, 2, 3, 4]


def test_cast_refuses_a_record_as_ctypes_does_wherever_it_lives(ct, libc):
    # A record of the library's (p.contents) was cast as if it were a pointer: code written
    # against ffibox then broke under ctypes.
    class Pair(ct.Structure):
        _fields_ = [("a", ct.c_int), ("b", ct.c_int)]

    libc.calloc.restype = ct.POINTER(Pair)
    libc.calloc.argtypes = [ct.c_size_t, ct.c_size_t]
    for record in (Pair(1, 2), libc.calloc(1, ct.sizeof(Pair)).contents):
        for typ in (ct.POINTER(Pair), ct.c_void_p):
            with pytest.raises(ct.ArgumentError, match="wrong type"):
                ct.cast(record, typ)


def test_numpy_arrays_behind_an_array_of_pointers_are_reached(ct, libc, testlib):
    # python3-gmsh's _ivectorvectordouble: `(POINTER(c_double) * n)(*(cast(a.ctypes,
    # POINTER(c_double)) for a in arrays))`, or data_as's pointers stored so: the pointers
    # lose their hold on the arrays, and the worker was handed the caller's addresses.
    import numpy
    rows = [numpy.arange(3, dtype=numpy.float64), numpy.arange(4, dtype=numpy.float64) + 10]
    testlib.sum_and_double_rows.argtypes = [ct.POINTER(ct.POINTER(ct.c_double)),
                                            ct.POINTER(ct.c_size_t), ct.c_size_t]
    testlib.sum_and_double_rows.restype = ct.c_double
    lengths = (ct.c_size_t * 2)(3, 4)
    for make in (lambda row: ct.cast(row.ctypes, ct.POINTER(ct.c_double)),
                 lambda row: row.ctypes.data_as(ct.POINTER(ct.c_double))):
        pointers = (ct.POINTER(ct.c_double) * 2)(*(make(row) for row in rows))
        total = sum(float(row.sum()) for row in rows)
        assert testlib.sum_and_double_rows(pointers, lengths, 2) == total
        assert float(sum(row.sum() for row in rows)) == 2 * total  # written back
    # A cast of arr.ctypes passed alone.
    memset = libc.memset
    memset.argtypes = [ct.POINTER(ct.c_double), ct.c_int, ct.c_size_t]
    memset(ct.cast(rows[1].ctypes, ct.POINTER(ct.c_double)), 0, 16)
    assert list(rows[1]) == [0.0, 0.0, 48.0, 52.0]


def test_memory_made_on_a_buffer_stays_reachable_while_the_library_keeps_its_pointer(
        ct, testlib):
    # The library keeps the pointer and writes through it in a later call: the write reaches
    # the bytearray or numpy array, as in the caller's process (the memory the call shipped
    # was let go after the call, and the write landed in another object's).
    import gc
    import numpy
    testlib.register_buffer.argtypes = [ct.c_void_p, ct.c_size_t]
    testlib.fill_registered.argtypes = [ct.c_int]
    text = bytearray(32)
    start = ct.c_char.from_buffer(text, 8)
    testlib.register_buffer(ct.byref(start), 16)
    gc.collect()
    testlib.fill_registered(ord("Z"))
    assert text == b"\0" * 8 + b"Z" * 16 + b"\0" * 8
    values = numpy.zeros(16, dtype=numpy.uint8)
    testlib.register_buffer(values.ctypes.data_as(ct.c_void_p), 16)
    gc.collect()
    testlib.fill_registered(ord("Q"))
    assert bytes(values) == b"Q" * 16
    # Read-only and Fortran-ordered arrays are reached too.
    readonly = numpy.frombuffer(b"hello, world\0", dtype=numpy.uint8)
    testlib.str_len.argtypes = [ct.c_void_p]
    testlib.str_len.restype = ct.c_size_t
    assert testlib.str_len(readonly.ctypes.data_as(ct.c_void_p)) == 12
    fortran = numpy.asfortranarray(numpy.arange(6, dtype=numpy.float64).reshape(2, 3))
    testlib.register_buffer(fortran.ctypes.data_as(ct.c_void_p), 8)
    testlib.fill_registered(0)
    assert fortran.ravel(order="F").tolist()[:2] == [0.0, 3.0]


def test_a_pointer_of_one_session_stored_in_a_field_is_refused_by_another(ffibox_client):
    # Each session has a worker of its own: passed to the other's call, the field would hand
    # that worker the image's local address.
    import copy
    from ffibox import ctypes as fct

    class Holder(fct.Structure):
        _fields_ = [("count", fct.c_int), ("number", fct.POINTER(fct.c_int))]

    first, second = ffibox_client.session(), ffibox_client.session()
    try:
        libc = {s: s.CDLL("libc.so.6") for s in (first, second)}
        for s in (first, second):
            libc[s].malloc.restype = fct.POINTER(fct.c_int)
            libc[s].memset.argtypes = [fct.c_void_p, fct.c_int, fct.c_size_t]
        number = libc[second].malloc(8)
        assert copy.copy(number) == number and type(copy.copy(number)) is type(number)
        holder = Holder(3, number)
        libc[second].memset(fct.byref(holder), 0, 4)  # its own session: taken
        assert holder.count == 0
        with pytest.raises(fct.ArgumentError, match="another session's worker"):
            libc[first].memset(fct.byref(holder), 0, 4)
    finally:
        first.close()
        second.close()


def test_a_string_the_library_stores_in_a_stdlib_union_reads_as_the_string(ct, testlib):
    # A union class made from the stdlib's own ctypes.Union (a types module that imports the
    # stdlib), not ffibox's: its char* member held the worker's address, which ctypes
    # dereferenced in this process, and the process crashed.
    import ctypes as stdlib

    class NameOrNumber(stdlib.Union):
        _fields_ = [("name", ct.c_char_p), ("number", ct.c_int64)]

    class Holder(stdlib.Structure):
        _fields_ = [("tag", ct.c_int), ("value", NameOrNumber)]

    testlib.get_name.argtypes = [ct.c_void_p]
    value = NameOrNumber()
    testlib.get_name(ct.byref(value))
    holder = Holder()
    testlib.get_name(ct.byref(holder, Holder.value.offset))
    assert value.name == holder.value.name and value.name.startswith(b"ffibox")


def test_a_c_void_p_subclass_parameter_takes_what_ctypes_takes(ct, testlib):
    # pylibtiff declares its buffers as a c_void_p subclass: ctypes refuses another c_void_p
    # object there (ffibox took it, so code written against it failed with the stdlib).
    class Buffer(ct.c_void_p):
        pass

    libc = ct.CDLL("libc.so.6")
    libc.memset.argtypes = [Buffer, ct.c_int, ct.c_size_t]
    libc.memset.restype = None
    data = ct.create_string_buffer(8)
    with pytest.raises(ct.ArgumentError, match="argument 1: TypeError: wrong type"):
        libc.memset(ct.cast(data, ct.c_void_p), 65, 4)
    libc.memset(data, 66, 4)  # an array, as ctypes takes it
    assert data.raw[:4] == b"BBBB"


def test_what_a_library_writes_into_a_bytes_argument_reaches_the_object(ct, libc):
    # ctypes passes a bytes object's own memory: C writes into it in place (pysodium keeps a
    # secretstream's state as bytes, which libsodium advances each message; shipped one way,
    # every message reused the first keystream).
    state = bytes(8)
    libc.memset(state, ord("x"), 3)
    assert state == b"xxx\0\0\0\0\0"
    text = b"hello world"
    libc.strtok.restype = ct.c_char_p
    assert libc.strtok(text, b" ") == b"hello"
    assert text == b"hello\0world"
    unchanged = b"the same"
    libc.strlen.restype = ct.c_size_t
    assert libc.strlen(unchanged) == 8 and unchanged == b"the same"


def test_a_bytes_argument_written_on_the_same_host_channel_reaches_the_object(
        ffibox_client):
    # The channel's precompiled packers ship bytes as the general way does.
    from ffibox import ctypes as ct
    with ffibox_client.session(same_host=True) as session:
        libc = session.CDLL("libc.so.6")
        libc.memset.argtypes = [ct.c_char_p, ct.c_int, ct.c_size_t]
        libc.memset.restype = ct.c_void_p
        state = bytes(16)
        for count in range(1, 4):  # the first call keeps a twin, the next ones reuse it
            libc.memset(state, ord("a") + count, count)
            assert state[:count] == bytes([ord("a") + count]) * count, (count, state)
        assert session.stream.local_enabled


def test_a_one_byte_bytes_argument_is_not_written_into(shared_server):
    # CPython shares every one-byte bytes object process-wide: a library writing into the
    # one it was passed would change b"x" everywhere (as it does in-process with ctypes).
    from ffibox import ctypes as ct
    libc = ct.CDLL("libc.so.6")
    one = bytes([120])
    libc.memset(one, ord("y"), 1)
    assert one == b"x" and bytes([120]) == b"x"
    two = bytes([120, 120])
    libc.memset(two, ord("y"), 2)
    assert two == b"yy"
