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

from conftest import ROOT, TEST_LIB

PRELUDE = textwrap.dedent("""
    import os, sys
    os.environ["FFIBOX_ADDRESS"] = sys.argv[1]
    from ffibox import ctypes
    from ffibox.ctypes import *
    lib = CDLL(sys.argv[2])
    class Record(Structure):
        _fields_ = [("id", c_int), ("name", c_char_p), ("numbers", POINTER(c_int))]
""")

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
    "char_p_object_as_argument": """
        lib.str_len.restype = c_size_t
        print(lib.str_len(c_char_p(b"hello")))
    """,
}

EXPECTED = {
    "char_p_out_parameter": "b'made by the library'",
    "int_pointer_out_parameter": "7 8 10",
    "record_with_pointer_fields_filled_by_the_library": "42 b'record name' 9",
    "array_of_char_p_filled_by_the_library": "b'alpha' b'beta' b'gamma'",
    "callback_receiving_char_pointer_pointer": "0 [[b'first', b'second', b'third']]",
    "pointer_out_parameter_passed_back_to_the_library": "80 80",
    "opaque_handle": "5 6 True",
    "char_p_object_as_argument": "5",
    "cyclic_graph_is_followed_a_bounded_depth": "17 17",
}


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_the_pattern_works_as_with_the_stdlib_and_never_crashes_the_caller(server, pattern):
    script = PRELUDE + textwrap.dedent(PATTERNS[pattern])
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "client", "python"))
    result = subprocess.run([sys.executable, "-c", script, server.address, TEST_LIB],
                            capture_output=True, env=env, text=True, timeout=60)
    assert result.returncode == 0, "exit %d: %s" % (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip() == EXPECTED[pattern]


def test_the_patterns_give_the_same_with_the_stdlib_in_process():
    # The expectations above are the stdlib's: check them against ctypes itself.
    for pattern, body in PATTERNS.items():
        script = (PRELUDE.replace("from ffibox import ctypes\n", "import ctypes\n")
                  .replace("from ffibox.ctypes import *", "from ctypes import *")
                  + textwrap.dedent(body))
        result = subprocess.run([sys.executable, "-c", script, "unused", TEST_LIB],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (pattern, result.stderr[-2000:])
        assert result.stdout.strip() == EXPECTED[pattern], pattern


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
