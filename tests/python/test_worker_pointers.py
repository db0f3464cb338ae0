"""Worker memory handed back through typed pointers never crashes the caller.

Each pattern is the ordinary ctypes code a binding writes; it runs in a child process (a
crash there is a failed test, not the end of the suite) against a real ffiboxd, and must
give what the stdlib gives with the library in-process.
"""
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, TEST_LIB, check_pattern, check_patterns_with_the_stdlib, run_script

PRELUDE = textwrap.dedent("""
    import os, sys
    os.environ["FFIBOX_ADDRESS"] = sys.argv[1]
    from ffibox import ctypes
    from ffibox.ctypes import *
    lib = CDLL(sys.argv[2])
    class Record(Structure):
        _fields_ = [("id", c_int), ("name", c_char_p), ("numbers", POINTER(c_int))]
""")

# struct ListNode of tests/testlibs/ffibox_test.h: a list whose head lives in the library.
LIST_NODE = """
        import gc
        class ListNode(Structure):
            pass
        VISIT = CFUNCTYPE(c_int, c_int)
        ListNode._fields_ = [("value", c_int), ("next", POINTER(ListNode)), ("visit", VISIT),
                             ("name", c_char_p), ("data", c_void_p)]
        lib.list_head.restype = POINTER(ListNode)
"""

# A Record the library filled, copied into worker memory at `address` (libc's malloc).
RECORD_IN_WORKER_MEMORY = """
        libc = CDLL("libc.so.6")
        libc.malloc.restype = c_void_p
        libc.malloc.argtypes = [c_size_t]
        libc.memcpy.argtypes = [c_void_p, c_void_p, c_size_t]
        source = Record()
        lib.fill_record(byref(source))
        address = libc.malloc(sizeof(Record))
        libc.memcpy(address, byref(source), sizeof(Record))
"""

PATTERNS = {
    "char_p_out_parameter": """
        p = c_char_p()
        lib.out_malloced_string(byref(p))
        print(p.value)
    """,
    "int_pointer_out_parameter": """
        p = POINTER(c_int)()
        lib.out_int_array(byref(p))
        print(p[0], p[1], p[3])
    """,
    # A buffer and its length handed back (200 000 bytes, far past the image of the first
    # elements): every element, slice and copy of it is the library's.
    "buffer_and_length_out_parameters": """
        p, n = POINTER(c_ubyte)(), c_size_t()
        lib.out_counting_bytes(byref(p), byref(n))
        expected = bytes(i * 7 % 256 for i in range(n.value))
        print(n.value, bytes(p[:n.value]) == expected, p[199999], p[100] == 700 % 256)
        print(string_at(p, n.value) == expected, string_at(p, 10) == expected[:10])
        copy = create_string_buffer(n.value)
        memmove(copy, p, n.value)
        print(copy.raw == expected)
        whole = cast(p, POINTER(c_ubyte * n.value)).contents
        print(bytes(whole) == expected, whole[150000] == expected[150000])
    """,
    "buffer_out_parameter_written_past_its_first_elements": """
        p, n = POINTER(c_ubyte)(), c_size_t()
        lib.out_counting_bytes(byref(p), byref(n))
        lib.counting_byte_at.restype = c_ubyte
        lib.counting_byte_at.argtypes = [c_size_t]
        for i in range(60, 300):
            p[i] = 1
        memset(p, 2, 10)
        memmove(p, create_string_buffer(b"\\x03" * 200, 200), 200)
        print([lib.counting_byte_at(i) for i in (0, 199, 200, 299, 300)], p[250], p[300])
        memset(p, 4, 5000)
        print([lib.counting_byte_at(i) for i in (0, 4999, 5000)])
    """,
    # An array of 300 records handed back (capstone's cs_disasm gives its instructions so),
    # read, written and read again far past the first elements: the caller's writes reach
    # the library at its next call, and what the library writes shows in the elements.
    "record_array_read_and_written_past_its_first_elements": """
        class Insn(Structure):
            _fields_ = [("id", c_uint), ("address", c_uint64), ("size", c_uint16),
                        ("text", c_char * 21)]
        n = 300
        libc = CDLL("libc.so.6")
        libc.calloc.restype = c_void_p
        libc.calloc.argtypes = [c_size_t, c_size_t]
        libc.memcpy.argtypes = [c_void_p, c_void_p, c_size_t]
        libc.memset.argtypes = [c_void_p, c_int, c_size_t]
        insns, address = POINTER(Insn)(), libc.calloc(n, sizeof(Insn))
        libc.memcpy(byref(insns), byref(c_void_p(address)), 8)
        for i in range(n):
            insns[i].id, insns[i].address, insns[i].size = i, 1 << 40 | i, i % 7
            insns[i].text = b"insn %d" % i
        insns[299].id += 1
        print(sum(insns[i].address for i in range(n)), insns[150].text, insns[299].id)
        copy = create_string_buffer(n * sizeof(Insn))
        libc.memcpy(copy, insns, n * sizeof(Insn))
        copied = [Insn.from_buffer_copy(copy.raw, i * sizeof(Insn)) for i in range(n)]
        print([(r.id, r.size, r.text) for r in copied[::37]], copied[299].id)
        libc.memset(insns, 0, 200 * sizeof(Insn))
        libc.memset(address + 250 * sizeof(Insn), 1, 4)
        print(insns[5].id, insns[199].text, insns[200].text, insns[250].id, insns[251].id)
        print([x.id for x in insns[198:202]])
        # A second pointer to the same array: one element, whichever pointer writes last.
        other = POINTER(Insn)()
        libc.memcpy(byref(other), byref(c_void_p(address)), 8)
        other[260].id
        insns[260].id = 2
        other[260].id = 1
        libc.memcpy(copy, insns, n * sizeof(Insn))
        print(insns[260].id, Insn.from_buffer_copy(copy.raw, 260 * sizeof(Insn)).id)
    """,
    # The same array reached through a pointer into its middle, read there first, then
    # written through both: each element is one, whichever pointer writes last.
    "record_array_written_through_a_pointer_into_its_middle": """
        class Insn(Structure):
            _fields_ = [("id", c_uint), ("address", c_uint64), ("text", c_char * 21)]
        libc = CDLL("libc.so.6")
        libc.calloc.restype = c_void_p
        libc.calloc.argtypes = [c_size_t, c_size_t]
        libc.memcpy.argtypes = [c_void_p, c_void_p, c_size_t]
        address = libc.calloc(300, sizeof(Insn))
        p1, p2 = POINTER(Insn)(), POINTER(Insn)()
        libc.memcpy(byref(p1), byref(c_void_p(address)), 8)
        libc.memcpy(byref(p2), byref(c_void_p(address + 100 * sizeof(Insn))), 8)
        print(p2[10].id, p1[90].id)
        p1[110].id = 1
        p2[10].id = 2
        copy = create_string_buffer(300 * sizeof(Insn))
        libc.memcpy(copy, c_void_p(address), 300 * sizeof(Insn))
        print(p1[110].id, p2[10].id, Insn.from_buffer_copy(copy.raw, 110 * sizeof(Insn)).id)
    """,
    # 20 000 records written one by one through one pointer (far more chunks of the array
    # than a pointer keeps): every write reaches the library.
    "record_array_written_past_many_chunks": """
        class Insn(Structure):
            _fields_ = [("id", c_uint), ("address", c_uint64), ("text", c_char * 21)]
        n = 20000
        libc = CDLL("libc.so.6")
        libc.calloc.restype = c_void_p
        libc.calloc.argtypes = [c_size_t, c_size_t]
        libc.memcpy.argtypes = [c_void_p, c_void_p, c_size_t]
        insns, address = POINTER(Insn)(), libc.calloc(n, sizeof(Insn))
        libc.memcpy(byref(insns), byref(c_void_p(address)), 8)
        for i in range(n):
            insns[i].id = i + 1
        copy = create_string_buffer(n * sizeof(Insn))
        libc.memcpy(copy, c_void_p(address), n * sizeof(Insn))
        ids = [Insn.from_buffer_copy(copy.raw, i * sizeof(Insn)).id for i in range(n)]
        print(sum(ids[i] != i + 1 for i in range(n)), insns[100].id, insns[n - 1].id)
    """,
    # An array of 200 strings with a NULL hole: elements, slices across the end of what
    # was imaged, and the hole, as the library's array holds them.
    "char_pointer_array_read_past_its_first_elements": """
        names = POINTER(c_char_p)()
        lib.out_many_names(byref(names))
        print(names[0], names[2], names[3], names[4], names[63], names[64], names[199])
        print(names[60:66], len(names[0:200]), names[0:200][150], names[198:201])
    """,
    # Index objects (numpy's integers) index as integers do.
    "buffer_out_parameter_indexed_with_index_objects": """
        class Index:
            def __init__(self, value):
                self.value = value
            def __index__(self):
                return self.value
        p, n = POINTER(c_ubyte)(), c_size_t()
        lib.out_counting_bytes(byref(p), byref(n))
        lib.counting_byte_at.restype = c_ubyte
        lib.counting_byte_at.argtypes = [c_size_t]
        p[Index(300)] = 1
        print(p[Index(5)], p[Index(300)], p[Index(301)], lib.counting_byte_at(300))
    """,
    # A view of the whole buffer and the pointer's own elements see one memory.
    "buffer_out_parameter_and_a_view_of_all_of_it": """
        p, n = POINTER(c_ubyte)(), c_size_t()
        lib.out_counting_bytes(byref(p), byref(n))
        lib.counting_byte_at.restype = c_ubyte
        lib.counting_byte_at.argtypes = [c_size_t]
        whole = cast(p, POINTER(c_ubyte * 1000)).contents
        whole[0] = 77
        whole[500] = 78
        print(p[0], p[500], lib.counting_byte_at(0))
        p[0] = 0
        print(lib.counting_byte_at(0), whole[0])
    """,
    # The library changes its array and hands the pointer back again: both pointers read
    # what it holds now.
    "pointer_handed_back_again_reads_what_the_library_left": """
        p, q = POINTER(c_int)(), POINTER(c_int)()
        lib.out_int_array(byref(p))
        lib.set_owned_number(0, 70)
        lib.out_int_array(byref(q))
        print(q[0], p[0], q[1])
        lib.set_owned_number(0, 7)
    """,
    # byref of a view at an image, over more than the image holds.
    "byref_of_a_buffer_out_parameter_over_all_of_it": """
        p, n = POINTER(c_ubyte)(), c_size_t()
        lib.out_counting_bytes(byref(p), byref(n))
        lib.counting_byte_at.restype = c_ubyte
        lib.counting_byte_at.argtypes = [c_size_t]
        expected = bytes(i * 7 % 256 for i in range(1000))
        print(string_at(byref(p.contents), 1000) == expected)
        memset(byref(p.contents), 9, 1000)
        print(lib.counting_byte_at(0), lib.counting_byte_at(999), lib.counting_byte_at(1000))
    """,
    "errcheck_that_gives_the_arguments_back": """
        def check(result, function, arguments):
            if result < 0:
                raise OSError(result)
            return arguments
        lib.add_int.argtypes = [c_int, c_int]
        lib.add_int.errcheck = check
        add = CFUNCTYPE(c_int, c_int, c_int)(("add_int", lib))
        add.errcheck = check
        print(lib.add_int(2, 3), add(4, 5))
    """,
    # A binding that checks what it got (python3-clang asserts isinstance(obj, c_object_p) of
    # every handle) and makes a pointer to it for an out-parameter in both of ctypes' ways
    # (ctypes' own code reads an object of a pointer type it is given as one: never a crash).
    "pointer_result_is_an_instance_of_its_pointer_type": """
        class Handle(Structure):
            pass
        lib.handle_new.restype = POINTER(Handle)
        lib.handle_new.argtypes = [c_int]
        lib.handle_get.argtypes = [POINTER(Handle)]
        lib.handle_out.argtypes = [c_int, POINTER(POINTER(Handle))]
        h = lib.handle_new(7)
        print(isinstance(h, POINTER(Handle)), isinstance(h, ctypes._Pointer),
              isinstance(h, POINTER(c_int)), lib.handle_get(h))
        import ctypes as stdlib  # the stdlib's own POINTER, as a module of the program has it
        out = stdlib.POINTER(stdlib.POINTER(Handle))(h)
        lib.handle_out(9, out)
        print(lib.handle_get(h), lib.handle_get(out[0]))
        again = POINTER(POINTER(Handle))()
        again.contents = h
        lib.handle_out(11, again)
        print(lib.handle_get(h), lib.handle_get(again.contents))
        lib.handle_out(13, h)  # where a Handle** goes, a Handle* is passed by reference
        print(lib.handle_get(h))
    """,
    # python3-clang's c_interop_string: a c_char_p subclass whose own `value` decodes.
    "c_char_p_subclass_result_with_its_own_value": """
        class Text(c_char_p):
            def __init__(self, p=None):  # never called for a result
                c_char_p.__init__(self, b"" if p is None else p)
            @property
            def value(self):
                raw = super(c_char_p, self).value
                return None if raw is None else raw.decode()
        lib.greeting.restype = Text
        lib.null_string.restype = Text
        print(repr(lib.greeting().value), lib.null_string().value)
    """,
    # pysdl2's SDL_Color: a record whose __init__ sets its fields, read through a pointer
    # (ctypes makes objects at an address without calling __init__), and pysdl2's
    # `if not (renderer and renderer.contents)` of a c_void_p subclass view.
    "records_with_their_own_init_and_pointer_views_read_through_pointers": """
        class Color(Structure):
            _fields_ = [("r", c_uint8), ("g", c_uint8), ("b", c_uint8), ("a", c_uint8)]
            def __init__(self, r=255, g=255, b=255, a=255):
                Structure.__init__(self, r, g, b, a)
        class Window(c_void_p):
            pass
        libc = CDLL("libc.so.6")
        libc.calloc.restype = POINTER(Color)
        libc.calloc.argtypes = [c_size_t, c_size_t]
        colors = libc.calloc(4, 4)
        print(tuple(colors[1]._fields_[i][0] for i in range(4)), colors[1].r, colors.contents.a)
        libc.strdup.restype = c_void_p
        libc.strdup.argtypes = [c_char_p]
        text = libc.strdup(b"abcdefgh")
        libc.calloc.restype = c_void_p
        zeros = libc.calloc(1, 8)
        print(bool(cast(text, POINTER(Window)).contents), bool(cast(zeros, POINTER(Window)).contents),
              bool(cast(zeros, POINTER(c_int)).contents), bool(cast(text, POINTER(c_char)).contents))
    """,
    "record_with_pointer_fields_filled_by_the_library": """
        r = Record()
        lib.fill_record(byref(r))
        print(r.id, r.name, r.numbers[2])
    """,
    "array_of_char_p_filled_by_the_library": """
        names = (c_char_p * 3)()
        lib.fill_names(names, 3)
        print(names[0], names[1], names[2])
    """,
    "callback_receiving_char_pointer_pointer": """
        ROW = CFUNCTYPE(c_int, c_void_p, c_int, POINTER(c_char_p))
        seen = []
        def row(context, columns, values):
            seen.append([values[i] for i in range(columns)])
            return 0
        lib.each_row.argtypes = [ROW, c_void_p]
        print(lib.each_row(ROW(row), None), seen)
    """,
    "pointer_out_parameter_passed_back_to_the_library": """
        p = POINTER(c_int)()
        lib.out_int_array(byref(p))
        p[1] = 80
        lib.owned_number_at.restype = c_int
        print(p[1], lib.owned_number_at(1))
    """,
    "opaque_handle": """
        class Handle(Structure):
            pass
        lib.handle_new.restype = POINTER(Handle)
        lib.handle_new.argtypes = [c_int]
        lib.handle_get.argtypes = [POINTER(Handle)]
        h = lib.handle_new(5)
        out = POINTER(Handle)()
        lib.handle_out(6, byref(out))
        print(lib.handle_get(h), lib.handle_get(out), bool(out))
    """,
    "cyclic_graph_is_followed_a_bounded_depth": """
        class Node(Structure):
            pass
        Node._fields_ = [("value", c_int), ("next", POINTER(Node))]
        head = POINTER(Node)()
        lib.get_cycle(byref(head))
        n = head.contents
        for _ in range(5):
            n = n.next.contents
        print(head.contents.value, n.value)
    """,
    "union_member_bytes_are_not_mistaken_for_pointers": """
        class Ints(Structure):
            _fields_ = [("type", c_uint32), ("ts", c_uint32), ("a", c_uint32), ("b", c_int)]
        class WithPtr(Structure):
            _fields_ = [("type", c_uint32), ("ts", c_uint32), ("file", c_char_p)]
        class Event(Union):
            _fields_ = [("type", c_uint32), ("ints", Ints), ("drop", WithPtr)]
        libc = CDLL("libc.so.6")
        libc.memcpy.argtypes = [POINTER(Event), POINTER(Event), c_size_t]
        src, dst = Event(), Event()
        src.ints.type, src.ints.a, src.ints.b = 1, 5, 42
        libc.memcpy(byref(dst), byref(src), sizeof(Event))
        print(dst.ints.type, dst.ints.a, dst.ints.b)
    """,
    "view_of_worker_memory_passed_back_as_pointer": """
        class tm(Structure):
            _fields_ = [(n, c_int) for n in ("sec", "min", "hour", "mday", "mon", "year",
                                             "wday", "yday", "isdst")] + [
                ("gmtoff", c_long), ("zone", c_char_p)]
        libc = CDLL("libc.so.6")
        libc.gmtime.restype = POINTER(tm)
        libc.gmtime.argtypes = [POINTER(c_long)]
        libc.asctime.restype = c_char_p
        libc.asctime.argtypes = [POINTER(tm)]
        t = libc.gmtime(byref(c_long(86400 * 365)))
        print(libc.asctime(t.contents).decode().strip(), bytes(t.contents)[20:24] != bytes(4))
    """,
    "cast_of_local_memory_to_void_pointer": """
        libc = CDLL("libc.so.6")
        libc.strlen.argtypes = [c_void_p]
        libc.memset.argtypes = [c_void_p, c_int, c_size_t]
        buf = create_string_buffer(8)
        libc.memset(cast(buf, c_void_p), ord("x"), 4)
        print(libc.strlen(cast(b"hello", c_void_p)), buf.value)
    """,
    "null_callback_unsets": """
        libc = CDLL("libc.so.6")
        CMP = CFUNCTYPE(c_int, c_void_p, c_void_p)
        libc.qsort.argtypes = [c_void_p, c_size_t, c_size_t, CMP]
        libc.qsort(None, 0, 4, CMP())
        print("ok")
    """,
    "callback_buffer_typed_as_char_pointer": """
        libc = CDLL("libc.so.6")
        CMP = CFUNCTYPE(c_int, POINTER(c_char), POINTER(c_char))
        def compare(a, b):
            x, y = string_at(a, 16), string_at(b, 16)
            return (x > y) - (x < y)
        rows = create_string_buffer(b"ccc1" + bytes(12) + b"aaa2" + bytes(12) + b"bbb3" + bytes(12), 48)
        libc.qsort(rows, 3, 16, CMP(compare))
        print(rows.raw[0:4], rows.raw[16:20], rows.raw[32:36])
    """,
    "callback_filling_a_large_buffer": """
        FILL = CFUNCTYPE(None, POINTER(c_ubyte), c_int)
        def fill(buffer, n):
            memset(buffer, 7, n)   # as an audio callback fills its buffer
        libc = CDLL("libc.so.6")
        data = (c_ubyte * 8192)()
        CALLER = CFUNCTYPE(None, FILL, POINTER(c_ubyte), c_int)
        # Call the callback through qsort-free means: a function pointer taken from it.
        lib.call_fill.argtypes = [FILL, POINTER(c_ubyte), c_int]
        lib.call_fill(FILL(fill), data, 8192)
        print(sum(data), data[8191])
    """,
    "record_embedding_a_field_less_record": """
        class Hidden(Union):
            pass
        class Ops(Structure):
            _fields_ = [("size", c_long), ("hidden", Hidden), ("kind", c_int)]
        libc = CDLL("libc.so.6")
        libc.memcpy.argtypes = [POINTER(Ops), POINTER(Ops), c_size_t]
        a, b = Ops(3, Hidden(), 4), Ops()
        libc.memcpy(byref(b), byref(a), sizeof(Ops))
        print(b.size, b.kind)
    """,
    "record_with_pointer_fields_returned_by_value": """
        lib.make_record.restype = Record
        r = lib.make_record()
        print(r.id, r.name, r.numbers[1])
    """,
    "long_list_out_parameter_is_followed_whole": """
        class Node(Structure):
            pass
        Node._fields_ = [("value", c_int), ("next", POINTER(Node))]
        lib.out_list.argtypes = [c_int, POINTER(POINTER(Node))]
        head = POINTER(Node)()
        lib.out_list(3000, byref(head))
        count, total, node = 0, 0, head
        while node:
            count, total, node = count + 1, total + node.contents.value, node.contents.next
        print(count, total)
    """,
    "char_p_object_as_argument": """
        lib.str_len.restype = c_size_t
        print(lib.str_len(c_char_p(b"hello")))
    """,
    "worker_record_copied_into_a_local_record_with_memmove": RECORD_IN_WORKER_MEMORY + """
        r, rs = Record(), (Record * 2)()
        memmove(byref(r), address, sizeof(Record))
        memmove(byref(rs, sizeof(Record)), address, sizeof(Record))
        print(r.id, r.name, r.numbers[1], rs[1].name, rs[1].numbers[2], rs[0].name)
    """,
    "worker_char_p_array_copied_into_a_local_array_with_memmove": """
        libc = CDLL("libc.so.6")
        libc.malloc.restype = c_void_p
        libc.malloc.argtypes = [c_size_t]
        lib.fill_names.argtypes = [c_void_p, c_int]
        address = libc.malloc(3 * sizeof(c_char_p))
        lib.fill_names(address, 3)
        names = (c_char_p * 3)()
        memmove(names, address, sizeof(names))
        print(names[0], names[1], names[2])
    """,
    "record_made_from_bytes_of_worker_memory": RECORD_IN_WORKER_MEMORY + """
        r = Record.from_buffer_copy(string_at(address, sizeof(Record)))
        local = create_string_buffer(b"mine")
        mine = Record.from_buffer_copy(bytes(Record(5, cast(local, c_char_p))))
        print(r.id, r.name, r.numbers[3], mine.name)
    """,
    "copies_of_filled_objects_keep_their_images_alive": """
        import gc
        class Outer(Structure):
            _fields_ = [("record", Record), ("k", c_int)]
        outer, records, held = Outer(), (Record * 2)(), (POINTER(c_int) * 1)()
        r = Record()
        lib.fill_record(byref(r))
        outer.record = r
        records[1] = r
        p = POINTER(c_int)()
        lib.out_int_array(byref(p))
        held[0] = p
        del r, p
        gc.collect()
        junk = [create_string_buffer(b"Z" * 40) for _ in range(2000)]
        print(outer.record.name, outer.record.numbers[1], records[1].name, held[0][3])
    """,
    "worker_function_pointers_in_structure_fields": """
        libc = CDLL("libc.so.6")
        libc.dlopen.restype = c_void_p
        libc.dlopen.argtypes = [c_char_p, c_int]
        libc.dlsym.restype = c_void_p
        libc.dlsym.argtypes = [c_void_p, c_char_p]
        F1 = CFUNCTYPE(c_int, c_int)
        F2 = CFUNCTYPE(c_double, c_double, c_double)
        class Ops(Structure):
            _fields_ = [("unary", F1), ("binary", F2)]
        libm = libc.dlopen(b"libm.so.6", 2)
        ops = Ops()
        # Filled as bytes (the library's memory copied in), and by assignment of a function
        # returned as a prototype.
        memmove(byref(ops), (c_void_p * 2)(libc.dlsym(None, b"abs"), libc.dlsym(libm, b"fmax")),
                sizeof(ops))
        libc.dlsym.restype = F1
        other = Ops()
        other.unary = libc.dlsym(None, b"abs")
        lib.fold.restype = c_double
        lib.fold.argtypes = [F2, POINTER(c_double), c_int, c_double]
        add = F2(lambda a, b: a + b)
        other.binary = add
        xs = (c_double * 3)(3, 9, 2)
        print(ops.unary(-3), ops.binary(1.0, 2.0), other.unary(-4),
              lib.fold(ops.binary, xs, 3, 0.0), other.binary(1.0, 2.0),
              lib.fold(other.binary, xs, 3, 0.0))
    """,
    "address_arithmetic_on_worker_memory": """
        libc = CDLL("libc.so.6")
        libc.calloc.restype = POINTER(c_int)
        p = libc.calloc(4, sizeof(c_int))
        p[2] = 7
        base = addressof(p.contents)
        c_int.from_address(base + 4).value = 5
        print(sizeof(p), c_int.from_address(base + 8).value, p[1],
              cast(base + 8, POINTER(c_int))[0])
    """,
    "pointer_members_of_a_union_the_library_set": """
        class Value(Union):
            _fields_ = [("text", c_char_p), ("number", c_long), ("numbers", POINTER(c_int))]
        class Tagged(Structure):
            _fields_ = [("tag", c_int), ("value", Value)]
        string, array = Value(), Tagged()
        lib.out_malloced_string(byref(string))
        lib.out_int_array(byref(array, Tagged.value.offset))
        print(string.number != 0, string.text, array.value.numbers[3])
    """,
    "contents_of_a_worker_pointer_to_a_pointer": """
        libc = CDLL("libc.so.6")
        libc.calloc.restype = POINTER(POINTER(c_int))
        libc.malloc.restype = POINTER(c_int)
        table, row = libc.calloc(2, sizeof(c_void_p)), libc.malloc(2 * sizeof(c_int))
        row[0], row[1] = 11, 12
        table[0] = row
        print(table.contents.contents.value, table.contents[1], table[0][1], bool(table[1]))
    """,
    "pointer_to_a_library_variable": """
        counter = c_int.in_dll(lib, "ffibox_test_counter")
        p = pointer(counter)
        p.contents.value = 50
        lib.increment.argtypes = [POINTER(c_int)]
        lib.increment(p)
        print(counter.value, p[0])
    """,
    "string_the_library_rewrites_in_place_between_calls": """
        libc = CDLL("libc.so.6")
        libc.fmemopen.restype = c_void_p
        libc.fmemopen.argtypes = [c_void_p, c_size_t, c_char_p]
        libc.getline.argtypes = [POINTER(c_char_p), POINTER(c_size_t), c_void_p]
        libc.getline.restype = c_ssize_t
        libc.fclose.argtypes = [c_void_p]
        text = create_string_buffer(b"first line\\nsecond\\nthird")
        stream = libc.fmemopen(text, len(text.value), b"r")
        line, size, lines = c_char_p(), c_size_t(0), []
        while libc.getline(byref(line), byref(size), stream) >= 0:  # one buffer, reused
            lines.append(line.value)
        libc.fclose(stream)
        print(lines)
    """,
    "worker_address_held_locally_copied_into_a_char_p_array": """
        libc = CDLL("libc.so.6")
        libc.strdup.restype = c_void_p
        libc.strdup.argtypes = [c_char_p]
        names, mine = (c_char_p * 2)(), create_string_buffer(b"mine")
        memmove(names, (c_void_p * 2)(libc.strdup(b"worker's"), addressof(mine)), sizeof(names))
        print(names[0], names[1])
    """,
    # distorm3: `info.code = cast(byref(buf, offset), c_char_p)`, the structure passed by
    # reference. The buffer was not shipped from the field (a c_char_p hands on no
    # references to the fields it is stored in): the worker crashed on this process's address.
    "cast_of_a_byref_to_c_char_p_in_a_field": """
        libc = CDLL("libc.so.6")
        libc.strsep.argtypes = [c_void_p, c_char_p]
        libc.strsep.restype = c_char_p
        class Info(Structure):
            _fields_ = [("code", c_char_p), ("length", c_int)]
        buffer = create_string_buffer(b"xx,abc,def")
        info = Info(cast(byref(buffer, 3), c_char_p), 7)
        print(libc.strsep(byref(info), b","), info.code)
        void = Info(cast(cast(byref(buffer), c_void_p), c_char_p), 7)
        print(libc.strsep(byref(void), b","), void.code)
    """,
    # imageio's FreeImage plugin: numpy over `(c_char * n).from_address(bits)` of the
    # library's bitmap, filled, then saved by the library (every image it wrote was zeros):
    # what the buffer protocol writes into a view reaches the library, what the library
    # writes later shows through it, slices of the view are stored as ctypes stores them.
    "buffer_protocol_over_a_view_of_library_memory": """
        import numpy
        libc = CDLL("libc.so.6")
        libc.calloc.restype = c_void_p
        libc.calloc.argtypes = [c_size_t, c_size_t]
        libc.strlen.argtypes = [c_void_p]
        libc.memset.argtypes = [c_void_p, c_int, c_size_t]
        p = libc.calloc(1, 16)
        view = (c_char * 16).from_address(p)
        pixels = numpy.ndarray((16,), dtype=numpy.uint8, buffer=view)
        pixels[:5] = numpy.frombuffer(b"hello", numpy.uint8)
        print(libc.strlen(p), string_at(p, 5))
        memoryview(view).cast("B")[5:7] = b"!?"
        libc.memset(p, ord("A"), 3)
        print(bytes(pixels[:8]), view.raw[:8], view[:8])
        view[7:9] = b"xy"
        print(libc.strlen(p), bytes(memoryview(view)[:10]), bytes(pixels[6:9]))
        numbers = cast(libc.calloc(4, 4), POINTER(c_int * 4)).contents
        memoryview(numbers).cast("B")[4:8] = (1234).to_bytes(4, "little")
        print(numbers[0], numbers[1], bytes(numbers)[4:6])
        # imageio's set_image_data: numpy over a view filled, both gone before the call that
        # reads what they wrote (the collector may take them first).
        import gc
        def fill(address):
            pixels = numpy.ndarray((4,), numpy.uint8, buffer=(c_char * 4).from_address(address))
            pixels[:] = [1, 2, 3, 4]
        q, r = libc.calloc(1, 4), libc.calloc(1, 4)
        fill(q)
        fill(r)
        gc.collect()
        print(string_at(q, 4), libc.strlen(r))
    """,
    # parasail wraps the library's matrices with pythonapi.PyMemoryView_FromMemory (which
    # raised NotImplementedError): a read-only or writable memoryview of library memory,
    # and of this process's own.
    "memoryview_of_library_memory_through_pythonapi": """
        libc = CDLL("libc.so.6")
        libc.calloc.restype = c_void_p
        libc.calloc.argtypes = [c_size_t, c_size_t]
        libc.memset.argtypes = [c_void_p, c_int, c_size_t]
        p = libc.calloc(1, 8)
        libc.memset(p, 7, 4)
        from_memory = ctypes.pythonapi.PyMemoryView_FromMemory
        from_memory.restype = py_object
        from_memory.argtypes = (c_void_p, c_int, c_int)
        readonly, writable = from_memory(p, 8, 0x100), from_memory(p, 8, 0x200)
        print(bytes(readonly), readonly.readonly, writable.readonly, writable.format)
        writable[6] = 9
        print(string_at(p, 8))
        mine = create_string_buffer(b"abc")
        print(bytes(from_memory(addressof(mine), 3, 0x100)))
    """,
    # What a callback writes through numpy into a view of the library's array reaches the
    # library as it goes on (qsort then sees 7, not 3), and is not taken as seen after.
    "a_callbacks_write_into_a_view_reaches_the_library": """
        import numpy
        libc = CDLL("libc.so.6")
        libc.calloc.restype = c_void_p
        libc.calloc.argtypes = [c_size_t, c_size_t]
        libc.qsort.restype = None
        compare = CFUNCTYPE(c_int, c_void_p, c_void_p)
        libc.qsort.argtypes = [c_void_p, c_size_t, c_size_t, compare]
        p = libc.calloc(1, 64)
        a = numpy.ctypeslib.as_array((c_ubyte * 64).from_address(p))
        a[0], a[1] = 5, 3
        def swap_after_changing(x, y):
            a[1], a[40] = 7, 85
            return 1
        libc.qsort(p, 2, 1, compare(swap_after_changing))
        print(a[0], a[1], a[40], list(string_at(p, 41)[i] for i in (0, 1, 40)))
    """,
    # An out-parameter's image holds the first 64 elements: a memoryview or an array of the
    # whole length over its address is the library's memory (it read this process's heap
    # past the image, and a write there crashed this process).
    "whole_length_views_over_an_out_parameter": """
        lib.out_counting_bytes.argtypes = [POINTER(POINTER(c_ubyte)), POINTER(c_size_t)]
        out, n = POINTER(c_ubyte)(), c_size_t()
        lib.out_counting_bytes(byref(out), byref(n))
        from_memory = ctypes.pythonapi.PyMemoryView_FromMemory
        from_memory.restype = py_object
        from_memory.argtypes = (c_void_p, c_ssize_t, c_int)
        expected = bytes(i * 7 % 256 for i in range(n.value))
        whole = (c_ubyte * n.value).from_address(cast(out, c_void_p).value)
        print(bytes(from_memory(out, n.value, 0x100)) == expected, bytes(whole) == expected)
        writable = from_memory(out, n.value, 0x200)
        writable[5000] = 1
        lib.add_int(0, 0)  # (a large view's changes are written back before a call)
        print(whole[5000], out[5000], string_at(out, 5001)[5000])
    """,
    # The caller's nodes linked into a list the library keeps, stored through a temporary
    # `.contents` of the library's head, an element of its array of pointers, with a callback
    # and a string in them: ctypes keeps each alive with the object it was stored through (the
    # head's pointer, the array), so the library walks them calls later, after it reused its
    # heap. Their worker copies were freed with the Python objects: the library read freed
    # blocks (the worker crashed, or summed what its heap held).
    "callers_nodes_linked_into_a_list_the_library_keeps": LIST_NODE + """
        head = lib.list_head()
        first = ListNode(5)
        first.next = pointer(ListNode(6, name=b"six"))
        head.contents.next = pointer(first)
        del first
        slots = (POINTER(ListNode) * 4).in_dll(lib, "list_slots")
        slots[1] = pointer(ListNode(7))
        visited = ListNode(4)
        visited.visit = VISIT(lambda value: value * 10)
        slots[3] = pointer(visited)
        del visited
        gc.collect()
        lib.heap_churn()
        print(lib.list_sum())
        slots[1] = pointer(ListNode(8))  # the node stored there before may go now
        gc.collect()
        lib.heap_churn()
        print(lib.list_sum())
    """,
    # More stores into the library's memory, as ctypes makes them: a c_char_p of the
    # library's own string (it was copied, so the library's later writes were not seen),
    # one over the caller's buffer that the library then fills (a one-byte copy it
    # overflowed), a list of 300 of the caller's nodes (past 85, refused or stored as this
    # process's addresses), a record copied from one view to another (what the first kept
    # went with it), and a node whose string the caller also passed to a call.
    "more_stores_into_the_librarys_memory": LIST_NODE + """
        libc = CDLL("libc.so.6")
        libc.strcpy.argtypes = [c_void_p, c_char_p]
        libc.strcpy.restype = c_void_p
        libc.calloc.argtypes = [c_size_t, c_size_t]
        libc.calloc.restype = c_void_p
        lib.str_dup_upper.restype = c_void_p
        lib.list_head.restype = POINTER(ListNode)
        lib.set_list_slot.argtypes = [c_int, c_void_p]
        head = lib.list_head()
        own = lib.str_dup_upper(b"hello" + b"-" * 20)
        head.contents.name = cast(own, c_char_p)
        libc.strcpy(own, b"x" * 20)
        print(lib.list_sum())
        buffer = create_string_buffer(64)
        head.contents.name = cast(buffer, c_char_p)
        libc.strcpy(cast(head, POINTER(c_void_p * 5)).contents[3], b"filled by the library")
        lib.heap_churn()
        print(buffer.value)
        head.contents.name = None
        nodes = [ListNode(1) for _ in range(300)]
        for first, second in zip(nodes, nodes[1:]):
            first.next = pointer(second)
        head.contents.next = pointer(nodes[0])
        del nodes
        gc.collect()
        lib.heap_churn()
        print(lib.list_sum())
        head.contents.next = None
        first = cast(c_void_p(libc.calloc(1, sizeof(ListNode))), POINTER(ListNode))
        second = cast(c_void_p(libc.calloc(1, sizeof(ListNode))), POINTER(ListNode))
        first[0].next = pointer(ListNode(9))
        second[0] = first[0]
        lib.set_list_slot(2, cast(second, c_void_p))
        del first
        gc.collect()
        lib.heap_churn()
        print(lib.list_sum())
        lib.set_list_slot(2, None)
        text = b"hello" + str(7).encode()
        lib.register_buffer.argtypes = [c_char_p, c_size_t]
        lib.register_buffer(text, len(text))
        head.contents.next = pointer(ListNode(5, name=text))
        print(lib.list_sum())
    """,
    # The caller's objects stored into the library's head node through an out-parameter's
    # image of it: a node holding a callback, a `cast(byref(number), c_void_p)`, a string, a
    # node in place of one stored before, the library's own node through its image. The
    # worker got this process's addresses (it crashed there), or kept the pointer it had
    # (the store lost).
    "callers_objects_stored_into_an_image_of_the_librarys_memory": LIST_NODE + """
        head = POINTER(ListNode)()
        lib.out_list_head(byref(head))
        head.contents.next = pointer(ListNode(5, visit=VISIT(lambda value: value * 10)))
        number = c_int(100)
        head.contents.data = cast(byref(number), c_void_p)
        head.contents.name = ("f" + "our").encode()
        gc.collect()
        lib.heap_churn()
        print(lib.list_sum())
        head.contents.next = pointer(ListNode(6))
        gc.collect()
        lib.heap_churn()
        print(lib.list_sum(), head.contents.next.contents.value, head.contents.name)
        spare = POINTER(ListNode)()
        lib.out_list_spare(byref(spare))
        head.contents.next = spare  # another node of the library's, through its image
        print(lib.list_sum())
    """,
    # Values of this process stored into the library's own head node: a record by value
    # whose pointer is the caller's node, an array for a pointer (its first element's
    # address), strings and a `cast(buffer, c_void_p)`. The library found this process's
    # addresses in them (its worker crashed there), the array's bytes written over the
    # head's fields, a string refused with an error of the protocol.
    "values_and_strings_stored_into_the_librarys_memory": LIST_NODE + """
        head = lib.list_head()
        head[0] = ListNode(0, pointer(ListNode(9, name=b"nine")))
        gc.collect()
        lib.heap_churn()
        print(lib.list_sum())
        pair = (ListNode * 2)(ListNode(1), ListNode(2))
        pair[0].next = pointer(pair[1])
        head.contents.next = pair
        del pair
        head.contents.name = b"twelve chars"
        number = c_int(100)
        head.contents.data = cast(byref(number), c_void_p)
        gc.collect()
        lib.heap_churn()
        print(lib.list_sum(), head.contents.name)
        head.contents.name = c_char_p(b"abc")
        gc.collect()
        lib.heap_churn()
        print(lib.list_sum(), head.contents.next.contents.value)
    """,
}

EXPECTED = {
    "callers_nodes_linked_into_a_list_the_library_keeps": "61\n62",
    "values_and_strings_stored_into_the_librarys_memory": "13\n115 b'twelve chars'\n106 1",
    "more_stores_into_the_librarys_memory": "20\nb'filled by the library'\n300\n9\n11",
    "callers_objects_stored_into_an_image_of_the_librarys_memory": "154\n110 6 b'four'\n144",
    "a_callbacks_write_into_a_view_reaches_the_library": "7 5 85 [7, 5, 85]",
    "whole_length_views_over_an_out_parameter": "True True\n1 1 1",
    "memoryview_of_library_memory_through_pythonapi":
        "b'\\x07\\x07\\x07\\x07\\x00\\x00\\x00\\x00' True False B\n"
        "b'\\x07\\x07\\x07\\x07\\x00\\x00\\t\\x00'\nb'abc'",
    "buffer_protocol_over_a_view_of_library_memory":
        "5 b'hello'\nb'AAAlo!?\\x00' b'AAAlo!?\\x00' b'AAAlo!?\\x00'\n"
        "9 b'AAAlo!?xy\\x00' b'?xy'\n0 1234 b'\\xd2\\x04'\nb'\\x01\\x02\\x03\\x04' 4",
    "record_array_written_through_a_pointer_into_its_middle": "0 0\n2 2 2",
    "record_array_written_past_many_chunks": "0 101 20000",
    "record_array_read_and_written_past_its_first_elements":
        "329853488377650 b'insn 150' 300\n"
        "[(0, 0, b'insn 0'), (37, 2, b'insn 37'), (74, 4, b'insn 74'), (111, 6, b'insn 111'), "
        "(148, 1, b'insn 148'), (185, 3, b'insn 185'), (222, 5, b'insn 222'), "
        "(259, 0, b'insn 259'), (296, 2, b'insn 296')] 300\n"
        "0 b'' b'insn 200' 16843009 251\n"
        "[0, 0, 200, 201]\n"
        "1 1",
    "worker_address_held_locally_copied_into_a_char_p_array": "b\"worker's\" b'mine'",
    "string_the_library_rewrites_in_place_between_calls":
        "[b'first line\\n', b'second\\n', b'third']",
    "pointer_to_a_library_variable": "51 51",
    "contents_of_a_worker_pointer_to_a_pointer": "11 12 12 False",
    "pointer_members_of_a_union_the_library_set": "True b'made by the library' 10",
    "worker_function_pointers_in_structure_fields": "3 2.0 4 9.0 3.0 14.0",
    "address_arithmetic_on_worker_memory": "8 7 5 7",
    "copies_of_filled_objects_keep_their_images_alive": "b'record name' 8 b'record name' 10",
    "worker_record_copied_into_a_local_record_with_memmove": "42 b'record name' 8 b'record name' 9 None",
    "worker_char_p_array_copied_into_a_local_array_with_memmove": "b'alpha' b'beta' b'gamma'",
    "record_made_from_bytes_of_worker_memory": "42 b'record name' 10 b'mine'",
    "char_p_out_parameter": "b'made by the library'",
    "int_pointer_out_parameter": "7 8 10",
    "record_with_pointer_fields_filled_by_the_library": "42 b'record name' 9",
    "array_of_char_p_filled_by_the_library": "b'alpha' b'beta' b'gamma'",
    "callback_receiving_char_pointer_pointer": "0 [[b'first', b'second', b'third']]",
    "pointer_out_parameter_passed_back_to_the_library": "80 80",
    "opaque_handle": "5 6 True",
    "char_p_object_as_argument": "5",
    "long_list_out_parameter_is_followed_whole": "3000 4498500",
    "record_with_pointer_fields_returned_by_value": "7 b'by value' 8",
    "cyclic_graph_is_followed_a_bounded_depth": "17 17",
    "union_member_bytes_are_not_mistaken_for_pointers": "1 5 42",
    "view_of_worker_memory_passed_back_as_pointer": "Fri Jan  1 00:00:00 1971 True",
    "cast_of_local_memory_to_void_pointer": "5 b'xxxx'",
    "null_callback_unsets": "ok",
    "callback_buffer_typed_as_char_pointer": "b'aaa2' b'bbb3' b'ccc1'",
    "callback_filling_a_large_buffer": "57344 7",
    "record_embedding_a_field_less_record": "3 4",
    "buffer_and_length_out_parameters": "200000 True 185 True\nTrue True\nTrue\nTrue True",
    "buffer_out_parameter_written_past_its_first_elements": "[3, 3, 1, 1, 52] 1 52\n[4, 4, 184]",
    "char_pointer_array_read_past_its_first_elements":
        "b'name0' b'name2' None b'name4' b'name63' b'name64' b'name199'\n"
        "[b'name60', b'name61', b'name62', b'name63', b'name64', b'name65'] 200 b'name150' "
        "[b'name198', b'name199', None]",
    "buffer_out_parameter_indexed_with_index_objects": "35 1 59 1",
    "buffer_out_parameter_and_a_view_of_all_of_it": "77 78 77\n0 0",
    "errcheck_that_gives_the_arguments_back": "5 9",
    "pointer_result_is_an_instance_of_its_pointer_type": "True True False 7\n9 9\n11 11\n13",
    "c_char_p_subclass_result_with_its_own_value": "'hello, ffibox' None",
    "records_with_their_own_init_and_pointer_views_read_through_pointers":
        "('r', 'g', 'b', 'a') 0 0\nTrue False False True",
    "pointer_handed_back_again_reads_what_the_library_left": "70 70 8",
    "byref_of_a_buffer_out_parameter_over_all_of_it": "True\n9 9 88",
    "cast_of_a_byref_to_c_char_p_in_a_field": "b'abc' b'def'\nb'xx' b'abc'",
}


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_the_pattern_works_as_with_the_stdlib_and_never_crashes_the_caller(server, pattern):
    check_pattern(server, PRELUDE + textwrap.dedent(PATTERNS[pattern]), EXPECTED[pattern])


def test_the_patterns_give_the_same_with_the_stdlib_in_process():
    # The expectations above are the stdlib's: check them against ctypes itself.
    check_patterns_with_the_stdlib(PRELUDE, PATTERNS, EXPECTED)


def test_an_image_lives_as_long_as_the_caller_object_holding_it(server):
    import ctypes as std
    import gc
    import ffibox
    with ffibox.connect(server.address).session() as session:
        lib = session.CDLL(TEST_LIB)
        p = std.c_char_p()
        lib.out_malloced_string(std.byref(p))
        address = std.c_void_p.from_buffer(p).value
        assert session.images.find(address) is not None
        assert p.value == b"made by the library"
        del p
        gc.collect()
        assert session.images.find(address) is None


def test_a_root_broker_refuses_a_library_only_root_may_read(tmp_path):
    # A root ffiboxd's workers run as nobody; it never hands them a file only root may read
    # (a client could otherwise read it through the worker).
    import shutil
    import ffibox
    from conftest import Server
    private = tmp_path / "libprivate.so"
    shutil.copy(TEST_LIB, private)
    os.chmod(private, 0o600)
    server = Server(allow_root=str(tmp_path))
    try:
        with ffibox.connect(server.address).session() as session:
            with pytest.raises(ffibox.Error, match="not readable by others"):
                session.CDLL(str(private))
            os.chmod(private, 0o644)
            assert session.CDLL(str(private)).add_int(2, 3) == 5
    finally:
        server.stop()


def test_a_pointer_graph_past_the_budget_raises_instead_of_being_cut(server):
    script = PRELUDE + textwrap.dedent("""
        import ffibox
        class Node(Structure):
            pass
        Node._fields_ = [("value", c_int), ("next", POINTER(Node))]
        lib.out_list.argtypes = [c_int, POINTER(POINTER(Node))]
        ctypes._default_session().max_images = 100
        head = POINTER(Node)()
        lib.out_list(99, byref(head))    # within the budget
        try:
            lib.out_list(101, byref(head))
        except ffibox.Error as error:
            print(error.code, "101" not in str(error) and "100" in str(error))
    """)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "client", "python"))
    result = subprocess.run([sys.executable, "-c", script, server.address, TEST_LIB],
                            capture_output=True, env=env, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "RESOURCE_EXHAUSTED True"


def test_a_pointer_to_memory_the_worker_cannot_read_faults_instead_of_reading_zeros(server):
    # The library stores an address nothing is mapped at (where C would fault on a read)
    # in the caller's pointer slots: every read through them is a MemoryFault, never the
    # zeros of a placeholder; a pointer to an opaque type still gives its (empty) contents.
    check_pattern(server, PRELUDE + textwrap.dedent("""
        import struct, ffibox
        libc = CDLL("libc.so.6")
        def stored(t, address):
            libc.memcpy.argtypes = [POINTER(t), c_char_p, c_size_t]
            slot = t()
            libc.memcpy(byref(slot), struct.pack("<Q", address), 8)
            return slot
        class Pair(Structure):
            _fields_ = [("a", c_int), ("b", c_double)]
        class Opaque(Structure):
            pass
        numbers, pair = stored(POINTER(c_int), 0x10), stored(POINTER(Pair), 0x20)
        text, handle = stored(c_char_p, 0x30), stored(POINTER(Opaque), 0x40)
        past_first = cast(numbers, c_void_p).value + 4  # inside the placeholder's room
        for read in (lambda: numbers[0], lambda: numbers.contents.value,
                     lambda: numbers[:2], lambda: pair.contents.b, lambda: pair[0].a,
                     lambda: text.value, lambda: string_at(text),
                     lambda: cast(past_first, POINTER(c_int))[0],
                     lambda: bytes((c_char * 8).from_address(past_first)),
                     lambda: bytes(ctypes.pythonapi.PyMemoryView_FromMemory(numbers, 8,
                                                                           0x100))):
            try:
                print("read", read())
            except ffibox.MemoryFault as fault:
                print(fault.code, end=" ")
        print()
        print(bool(handle), type(handle.contents).__name__)
    """), "MEMORY_FAULT " * 10 + "\nTrue Opaque")


def test_a_pointer_result_is_an_instance_of_its_type_with_stdlib_types_alone(server):
    # A session used with the stdlib's own types, ffibox.ctypes never imported by the
    # program: the pointer-to-pointer type the stdlib makes afterwards is the guarded one,
    # so the answer holds, and a pointer to the handle made with it reaches its local slot.
    check_pattern(server, textwrap.dedent("""
        import ctypes, sys
        import ffibox
        with ffibox.connect(sys.argv[1]).session() as session:
            lib = session.CDLL(sys.argv[2])
            class Handle(ctypes.Structure):
                pass
            lib.handle_new.restype = ctypes.POINTER(Handle)
            lib.handle_new.argtypes = [ctypes.c_int]
            lib.handle_get.argtypes = [ctypes.POINTER(Handle)]
            lib.handle_out.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.POINTER(Handle))]
            h = lib.handle_new(5)
            before = isinstance(h, ctypes.POINTER(Handle))
            out = ctypes.POINTER(ctypes.POINTER(Handle))(h)
            lib.handle_out(6, out)
            print(before, isinstance(h, ctypes.POINTER(Handle)), lib.handle_get(h))
    """), "True True 6")


def test_an_address_in_the_executables_image_is_never_the_callers():
    # Debian's python3.11 is not position independent: its type objects and interpreter
    # state are at the same addresses in every process, so a hostile library knows them
    # without being told. Handed one as "its buffer" (a uintptr_t handle), the caller wrote
    # over PyLong_Type and died at its next repr(int).
    script = textwrap.dedent("""
        import ctypes as stdlib
        import ffibox
        from ffibox import ctypes as ct
        lib = ct.CDLL(%r)
        # The interpreter's own objects there, the stdlib's idiom: this process's.
        print(stdlib.c_ssize_t.from_address(id(None)).value > 0)
        lib.add_long.restype = ct.c_long
        lib.add_long.argtypes = [ct.c_long, ct.c_long]
        handle = lib.add_long(id(int), 88)  # the library's "buffer": PyLong_Type's tp_repr
        for attempt in (lambda: ct.memmove(handle, b"\\\\0" * 16, 16),
                        lambda: ct.memset(handle, 0, 16),
                        lambda: ct.string_at(handle, 8),
                        lambda: setattr(ct.c_long.from_address(handle), "value", 0)):
            try:
                attempt()
                print("reached")
            except ffibox.MemoryFault:
                print("fault")
        print(repr(12345))
        # The stdlib's own objects there stay the stdlib's.
        print(stdlib.c_int.in_dll(stdlib.pythonapi, "Py_OptimizeFlag").value >= 0)
    """ % TEST_LIB)
    run = run_script(script)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True"] + ["fault"] * 4 + ["12345", "True"], run.stdout


def test_an_address_in_an_object_the_library_was_passed_reaches_no_further_than_it():
    # A library hands back an address inside what it was passed (its twin) as "its buffer":
    # the caller's object's own address, which memmove and from_address then used for as
    # many bytes as the caller wrote, over whatever followed in its heap (SIGSEGV).
    script = textwrap.dedent("""
        import ffibox
        from ffibox import ctypes as ct
        lib = ct.CDLL(%r)
        lib.register_buffer.argtypes = [ct.c_char_p, ct.c_size_t]
        lib.registered_buffer_address.restype = ct.c_void_p
        lib.registered_buffer_address.argtypes = [ct.c_long]
        small = bytes(bytearray(b"0123456789abcdef"))
        neighbours = [bytes(16) for _ in range(2000)]
        lib.register_buffer(small, len(small))
        address = lib.registered_buffer_address(0)
        print(address == id(small) + 32)  # the caller's own object, as ctypes gives it
        ct.memmove(address, b"ABCD", 4)  # within it: the caller's object
        print(small[:6])
        for attempt in (lambda: ct.memmove(address, b"\\xff" * 4096, 4096),
                        lambda: ct.memset(address, 0xff, 4096),
                        lambda: (ct.c_char * 4096).from_address(address).raw):
            try:
                attempt()
                print("reached")
            except ffibox.MemoryFault:
                print("fault")
        print(small[:6], sum(n != bytes(16) for n in neighbours))
    """ % TEST_LIB)
    run = run_script(script)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "True", "b'ABCD45'", "fault", "fault", "fault", "b'ABCD45' 0"], run.stdout


def test_a_one_byte_bytes_the_library_kept_is_not_written_between_calls():
    # CPython shares each one-byte bytes object process-wide: a library that kept b"\\n"
    # and wrote through it later changed every b"\\n" of the caller (print's newline too).
    script = textwrap.dedent("""
        from ffibox import ctypes as ct
        lib = ct.CDLL(%r)
        lib.register_buffer.argtypes = [ct.c_char_p, ct.c_size_t]
        lib.fill_registered.argtypes = [ct.c_int]
        newline = bytes([10])
        lib.register_buffer(newline, 1)
        lib.fill_registered(ord("Z"))
        lib.fill_registered(ord("Z"))  # its changes are reported by the next call
        print(bytes([10]) == b"\\n", b"a\\nb".split(b"\\n"))
    """ % TEST_LIB)
    run = run_script(script)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "True [b'a', b'b']", run.stdout


def test_an_address_in_the_brk_heap_is_the_callers_only_where_it_has_memory():
    # The brk heap lies within 1 GiB after the executable, a range a library can sweep
    # (its guesses mapped in the worker, so a miss tells it so) until the caller wrote into
    # its own heap. There an integer is the caller's only inside memory it shows it has.
    script = textwrap.dedent("""
        import ctypes as stdlib
        import numpy
        import ffibox
        from ffibox import _addresses
        from ffibox import ctypes as ct
        lib = ct.CDLL(%r)
        lib.add_long.restype = ct.c_long
        lib.add_long.argtypes = [ct.c_long, ct.c_long]
        heap = _addresses._HEAP_START + 64  # malloc's own words: nothing the caller has
        for attempt in (lambda: ct.memmove(lib.add_long(heap, 0), b"x" * 64, 64),
                        lambda: ct.string_at(lib.add_long(heap, 0), 8)):
            try:
                attempt()
                print("reached")
            except ffibox.MemoryFault:
                print("fault")
        # Memory the caller has there, however it got the address, stays its own.
        shown = ct.create_string_buffer(b"shown", 9000)
        buffer = stdlib.create_string_buffer(8000)
        array = numpy.zeros(2000)
        data = bytearray(6000)
        view = (stdlib.c_char * 6000).from_buffer(data)
        for address in (ct.addressof(shown),
                        stdlib.addressof(buffer), array.ctypes.data, stdlib.addressof(view)):
            print(_addresses.in_brk_heap(address), end=" ")
            ct.memmove(address, b"mine", 4)
            print(ct.string_at(address, 4))
    """ % TEST_LIB)
    run = run_script(script)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:2] == ["fault", "fault"], run.stdout
    assert all(line.endswith("b'mine'") for line in lines[2:]) and len(lines) == 6, run.stdout
    assert any(line.startswith("True") for line in lines[2:]), run.stdout  # in the heap
