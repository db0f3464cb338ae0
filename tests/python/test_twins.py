"""Caller memory keeps one worker address for its life, and integers name the right side.

Libraries keep pointers to what the caller passed (zlib's z_stream, strtok's position,
putenv's string) and hand back pointers into it (memchr). Each pattern below is ordinary
ctypes code; it runs in a child process once with the stdlib ctypes (the library in
process) and once with `from ffibox import ctypes` against a real ffiboxd, and the two must
print the same. A crash of the child is a failed test, not the end of the suite.
"""
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from conftest import ROOT, TEST_LIB

import ffibox
from ffibox import ctypes as fctypes

PRELUDE = textwrap.dedent("""
    import gc, os, sys
    if sys.argv[1] == "ffibox":
        os.environ["FFIBOX_ADDRESS"] = sys.argv[2]
        from ffibox import ctypes
        from ffibox.ctypes import *
    else:
        import ctypes
        from ctypes import *
    libc = CDLL("libc.so.6")
    z = CDLL("libz.so.1")
""")

# zlib's stream, as zlib.h declares it.
Z_STREAM = """
        class z_stream(Structure):
            _fields_ = [("next_in", POINTER(c_ubyte)), ("avail_in", c_uint),
                        ("total_in", c_ulong), ("next_out", POINTER(c_ubyte)),
                        ("avail_out", c_uint), ("total_out", c_ulong), ("msg", c_char_p),
                        ("state", c_void_p), ("zalloc", c_void_p), ("zfree", c_void_p),
                        ("opaque", c_void_p), ("data_type", c_int), ("adler", c_ulong),
                        ("reserved", c_ulong)]
"""

# A stream that writes into the caller's 64-byte `buffer`, which the library keeps.
FMEMOPEN = """
        libc.fmemopen.restype = c_void_p
        libc.fmemopen.argtypes = [c_void_p, c_size_t, c_char_p]
        libc.fputs.argtypes = [c_char_p, c_void_p]
        libc.fflush.argtypes = libc.fclose.argtypes = [c_void_p]
        buffer = create_string_buffer(64)
        stream = libc.fmemopen(buffer, len(buffer), b"w")
"""

PATTERNS = {
    "zlib_keeps_its_stream_between_calls": Z_STREAM + """
        z.zlibVersion.restype = c_char_p
        z.deflateInit_.argtypes = [POINTER(z_stream), c_int, c_char_p, c_int]
        z.deflate.argtypes = [POINTER(z_stream), c_int]
        z.deflateEnd.argtypes = [POINTER(z_stream)]
        z.inflateInit_.argtypes = [POINTER(z_stream), c_char_p, c_int]
        z.inflate.argtypes = [POINTER(z_stream), c_int]
        z.inflateEnd.argtypes = [POINTER(z_stream)]
        data = b"a stream of bytes, " * 4000
        packed = (c_ubyte * 65536)()
        s = z_stream()
        codes = [z.deflateInit_(byref(s), 6, z.zlibVersion(), sizeof(z_stream))]
        s.next_out, s.avail_out = cast(packed, POINTER(c_ubyte)), len(packed)
        for piece in range(4):  # four calls, each feeding the next quarter
            chunk = (c_ubyte * 19000).from_buffer_copy(data[piece * 19000:(piece + 1) * 19000])
            s.next_in, s.avail_in = cast(chunk, POINTER(c_ubyte)), len(chunk)
            codes.append(z.deflate(byref(s), 0))
        codes.append(z.deflate(byref(s), 4))
        codes.append(z.deflateEnd(byref(s)))
        size = s.total_out
        out = (c_ubyte * len(data))()
        t = z_stream()
        codes.append(z.inflateInit_(byref(t), z.zlibVersion(), sizeof(z_stream)))
        t.next_in, t.avail_in = cast(packed, POINTER(c_ubyte)), size
        t.next_out, t.avail_out = cast(out, POINTER(c_ubyte)), 1000
        while t.avail_in and len(codes) < 200:  # a little output room per call
            codes.append(z.inflate(byref(t), 0))
            t.avail_out = min(1000, len(data) - t.total_out)
            if not t.avail_out:
                break
        codes.append(z.inflateEnd(byref(t)))
        print(sorted(set(codes)), bytes(out) == data, size < len(data) // 10)
    """,
    "strtok_keeps_its_position_in_the_callers_buffer": """
        libc.strtok.restype = c_char_p
        libc.strtok.argtypes = [c_char_p, c_char_p]
        line = create_string_buffer(b"alpha beta  gamma")
        tokens = [libc.strtok(line, b" ")]
        while tokens[-1] is not None:
            tokens.append(libc.strtok(None, b" "))
        print(tokens, line.raw[:6])
    """,
    "putenv_keeps_the_callers_string": """
        entry = b"FFIBOX_TWIN_TEST=kept"
        libc.putenv.argtypes = [c_char_p]
        libc.getenv.restype = c_char_p
        libc.putenv(entry)
        libc.strlen(b"another call, another string")
        gc.collect()
        print(libc.getenv(b"FFIBOX_TWIN_TEST"))
    """,
    "pointer_result_into_an_argument_is_the_callers_object": """
        libc.memchr.restype = POINTER(c_char)
        libc.memchr.argtypes = [c_void_p, c_int, c_size_t]
        buf = create_string_buffer(b"abcdef")
        p = libc.memchr(buf, ord("d"), 6)
        p[0] = b"D"
        print(type(p).__name__, addressof(p.contents) - addressof(buf), buf.value)
    """,
    "void_p_result_used_with_from_address_and_string_at": """
        libc.memchr.restype = c_void_p
        libc.memchr.argtypes = [c_void_p, c_int, c_size_t]
        buf = create_string_buffer(b"abcdef")
        a = libc.memchr(buf, ord("c"), 6)
        c_char.from_address(a).value = b"C"
        print(a - addressof(buf), buf.value, string_at(a), cast(a, POINTER(c_char))[1])
    """,
    "struct_pointer_field_into_another_argument": """
        class Span(Structure):
            _fields_ = [("start", POINTER(c_char)), ("length", c_size_t)]
        libc.memcpy.argtypes = [POINTER(Span), POINTER(Span), c_size_t]
        text = create_string_buffer(b"hello")
        a = Span(cast(text, POINTER(c_char)), 5)
        b = Span()
        libc.memcpy(byref(b), byref(a), sizeof(Span))
        b.start[0] = b"J"
        print(text.value, addressof(b.start.contents) == addressof(text), b.length)
    """,
    "worker_memory_integer_used_with_from_address": """
        libc.malloc.restype = c_void_p
        libc.malloc.argtypes = [c_size_t]
        libc.free.argtypes = [c_void_p]
        m = libc.malloc(16)
        c_int.from_address(m).value = 42
        c_int.from_address(m + 4).value = 43
        local = (c_int * 2)()
        memmove(addressof(local), m, 8)
        print(c_int.from_address(m).value, list(local))
        libc.free(m)
    """,
    "c_char_p_of_integer_addresses": """
        libc.strdup.restype = c_void_p
        libc.strdup.argtypes = [c_char_p]
        libc.memchr.restype = c_void_p
        libc.memchr.argtypes = [c_void_p, c_int, c_size_t]
        buf, wide = create_string_buffer(b"in buffer"), create_unicode_buffer("wide")
        copy = libc.strdup(b"library string")
        inside = libc.memchr(buf, ord("b"), 9)
        print(c_char_p(copy).value, c_char_p(addressof(buf)).value, c_char_p(inside).value,
              c_wchar_p(addressof(wide)).value)
    """,
    "bytes_held_by_one_variable_stay_for_the_library": """
        libc.putenv.argtypes = [c_char_p]
        libc.getenv.restype = c_char_p
        entry = ("FFIBOX_ONE_REF=" + "held").encode()  # one reference: this variable
        libc.putenv(entry)
        libc.strlen(b"x")
        libc.strlen(b"y")
        print(libc.getenv(b"FFIBOX_ONE_REF"))
    """,
    "stream_reached_through_pointer_contents": Z_STREAM + """
        z.zlibVersion.restype = c_char_p
        z.deflateInit_.argtypes = [POINTER(z_stream), c_int, c_char_p, c_int]
        z.deflate.argtypes = [POINTER(z_stream), c_int]
        p = pointer(z_stream())
        first = z.deflateInit_(p, 6, z.zlibVersion(), sizeof(z_stream))
        data = b"hello world " * 100
        inbuf = create_string_buffer(data, len(data))
        out = (c_ubyte * 4096)()
        p.contents.next_in, p.contents.avail_in = cast(inbuf, POINTER(c_ubyte)), len(data)
        p[0].next_out, p[0].avail_out = cast(out, POINTER(c_ubyte)), len(out)
        print(first, z.deflate(byref(p.contents), 4), p.contents.total_out < 100)
    """,
    "callback_calls_back_with_the_array_being_sorted": """
        CMP = CFUNCTYPE(c_int, POINTER(c_int), POINTER(c_int))
        arr = (c_int * 8)(8, 3, 6, 1, 7, 2, 5, 4)
        libc.memchr.argtypes = [c_void_p, c_int, c_size_t]
        libc.memchr.restype = c_void_p
        libc.memchr(arr, 0, 0)
        def compare(a, b):
            libc.memchr(arr, 0, 0)
            return a[0] - b[0]
        libc.qsort.argtypes = [c_void_p, c_size_t, c_size_t, CMP]
        libc.qsort.restype = None
        libc.qsort(arr, 8, sizeof(c_int), CMP(compare))
        print(list(arr))
    """,
    "void_p_callback_arguments_into_the_array_being_sorted": """
        CMP = CFUNCTYPE(c_int, c_void_p, c_void_p)
        def compare(a, b):
            return c_int.from_address(a).value - c_int.from_address(b).value
        cmp = CMP(compare)
        libc.qsort.argtypes = [c_void_p, c_size_t, c_size_t, CMP]
        libc.qsort.restype = None
        arr = (c_int * 8)(8, 3, 6, 1, 7, 2, 5, 4)
        libc.qsort(arr, 8, sizeof(c_int), cmp)
        first = list(arr)
        arr[:] = [5, 9, 2, 7, 1, 8, 3, 6]
        libc.qsort(arr, 8, sizeof(c_int), cmp)
        print(first, list(arr))
    """,
    "address_returned_as_integer_passed_back_as_integer": """
        libc.memchr.restype = c_size_t
        libc.memchr.argtypes = [c_void_p, c_int, c_size_t]
        libc.strlen.argtypes = [c_size_t]
        libc.strlen.restype = c_size_t
        buf = create_string_buffer(b"hello world")
        p = libc.memchr(buf, ord("w"), 11)
        print(p - addressof(buf), libc.strlen(p))
    """,
    "callers_address_as_user_data_comes_back_to_a_callback": """
        CMP = CFUNCTYPE(c_int, POINTER(c_int), POINTER(c_int), c_void_p)
        class Ctx(Structure):
            _fields_ = [("calls", c_int)]
        ctx = Ctx()
        def compare(a, b, user):
            cast(user, POINTER(Ctx)).contents.calls += 1
            return a[0] - b[0]
        cmp = CMP(compare)
        libc.qsort_r.argtypes = [c_void_p, c_size_t, c_size_t, CMP, c_void_p]
        libc.qsort_r.restype = None
        arr = (c_int * 5)(5, 3, 4, 1, 2)
        libc.qsort_r(arr, 5, sizeof(c_int), cmp, addressof(ctx))
        print(list(arr), ctx.calls > 0)
    """,
    "callers_addresses_the_library_moves_stay_the_callers": """
        # qsort moves the caller's own addresses inside the caller's array (user data, as
        # plain integers): they come back the caller's, and so does the memory near them.
        a, b, c = c_int(30), c_int(10), c_int(20)
        slots = (c_void_p * 3)(addressof(a), addressof(b), addressof(c))
        CMP = CFUNCTYPE(c_int, POINTER(c_void_p), POINTER(c_void_p))
        libc.qsort.argtypes = [c_void_p, c_size_t, c_size_t, CMP]
        libc.qsort.restype = None
        by_value = CMP(lambda x, y: c_int.from_address(x[0]).value -
                       c_int.from_address(y[0]).value)
        libc.qsort(slots, 3, sizeof(c_void_p), by_value)
        print([c_int.from_address(s).value for s in slots], end=" ")
        print(cast(slots[0], POINTER(c_int))[0], end=" ")
        text = create_string_buffer(b"hello world")
        libc.memchr.restype = POINTER(c_char)
        libc.memchr.argtypes = [c_void_p, c_int, c_size_t]
        found = libc.memchr(text, ord("w"), 11)
        found[0] = b"W"
        print(text.value)
    """,
    "structure_with_slots": """
        # The stdlib's Structure (ffibox.ctypes keeps it as ctypes._ct): with __slots__ its
        # instances cannot be referenced weakly, so they get no twin.
        class Pair(getattr(ctypes, "_ct", ctypes).Structure):
            __slots__ = ()
            _fields_ = [("a", c_int), ("b", c_int)]
        p = Pair(1, 2)
        libc.memset.argtypes = [c_void_p, c_int, c_size_t]
        libc.memset(byref(p), 0, sizeof(p))
        libc.memset(byref(p), 0, sizeof(p))
        print(p.a, p.b)
    """,
    "local_addresses_stay_local": """
        x = c_int(7)
        y = c_int.from_address(addressof(x))
        y.value = 8
        buf = create_string_buffer(b"local")
        print(x.value, string_at(addressof(buf)), cast(addressof(x), POINTER(c_int))[0])
    """,
    "zlib_stream_fields_set_to_an_array_and_to_cast_bytes": Z_STREAM + """
        z.zlibVersion.restype = c_char_p
        data = b"hello hello hello hello " * 100
        source = (c_ubyte * len(data)).from_buffer_copy(data)
        packed, out = (c_ubyte * 4096)(), (c_ubyte * len(data))()
        s = z_stream()
        codes = [z.deflateInit_(byref(s), 6, z.zlibVersion(), sizeof(s))]
        s.next_in, s.avail_in, s.next_out, s.avail_out = source, len(data), packed, len(packed)
        codes.append(z.deflate(byref(s), 4))
        codes.append(z.deflateEnd(byref(s)))
        compressed = bytes(packed[:s.total_out])
        t = z_stream()
        codes.append(z.inflateInit_(byref(t), z.zlibVersion(), sizeof(t)))
        t.next_in, t.avail_in = cast(compressed, POINTER(c_ubyte)), len(compressed)
        t.next_out, t.avail_out = out, len(out)
        codes.append(z.inflate(byref(t), 4))
        codes.append(z.inflateEnd(byref(t)))
        print(codes, bytes(out) == data)
    """,
    # The library writes through pointers it kept in calls that do not pass them.
    "open_memstream_updates_the_callers_pointer_and_size_on_flush": """
        libc.open_memstream.restype = c_void_p
        libc.open_memstream.argtypes = [POINTER(c_char_p), POINTER(c_size_t)]
        libc.fputs.argtypes = [c_char_p, c_void_p]
        libc.fflush.argtypes = libc.fclose.argtypes = [c_void_p]
        text, size = c_char_p(), c_size_t()
        stream = libc.open_memstream(byref(text), byref(size))
        libc.fputs(b"written ", stream)
        libc.fputs(b"later", stream)
        libc.fflush(stream)
        flushed = size.value
        libc.fputs(b", and more", stream)
        libc.fclose(stream)
        print(flushed, text.value, size.value)
    """,
    "fmemopen_writes_into_the_callers_buffer_on_later_calls": FMEMOPEN + """
        libc.fputs(b"kept buffer", stream)
        libc.fflush(stream)
        print(buffer.value, end=" ")
        libc.fputs(b", written again", stream)
        libc.fclose(stream)
        print(buffer.value)
    """,
    "what_the_caller_wrote_elsewhere_stays_when_the_library_writes_its_buffer": FMEMOPEN + """
        buffer[40:45] = b"local"
        libc.fputs(b"kept", stream)
        libc.fflush(stream)
        print(buffer.raw[:5], buffer.raw[40:45])
        libc.fclose(stream)
    """,
}

EXPECTED = {
    "what_the_caller_wrote_elsewhere_stays_when_the_library_writes_its_buffer":
        "b'kept\\x00' b'local'",
    "open_memstream_updates_the_callers_pointer_and_size_on_flush":
        "13 b'written later, and more' 23",
    "fmemopen_writes_into_the_callers_buffer_on_later_calls":
        "b'kept buffer' b'kept buffer, written again'",
    "zlib_stream_fields_set_to_an_array_and_to_cast_bytes": "[0, 1, 0, 0, 1, 0] True",
    "zlib_keeps_its_stream_between_calls": "[0, 1] True True",
    "strtok_keeps_its_position_in_the_callers_buffer":
        "[b'alpha', b'beta', b'gamma', None] b'alpha\\x00'",
    "putenv_keeps_the_callers_string": "b'kept'",
    "pointer_result_into_an_argument_is_the_callers_object": "LP_c_char 3 b'abcDef'",
    "void_p_result_used_with_from_address_and_string_at": "2 b'abCdef' b'Cdef' b'd'",
    "struct_pointer_field_into_another_argument": "b'Jello' True 5",
    "worker_memory_integer_used_with_from_address": "42 [42, 43]",
    "local_addresses_stay_local": "8 b'local' 8",
    "c_char_p_of_integer_addresses": "b'library string' b'in buffer' b'buffer' wide",
    "bytes_held_by_one_variable_stay_for_the_library": "b'held'",
    "stream_reached_through_pointer_contents": "0 1 True",
    "callback_calls_back_with_the_array_being_sorted": "[1, 2, 3, 4, 5, 6, 7, 8]",
    "void_p_callback_arguments_into_the_array_being_sorted":
        "[1, 2, 3, 4, 5, 6, 7, 8] [1, 2, 3, 5, 6, 7, 8, 9]",
    "address_returned_as_integer_passed_back_as_integer": "6 5",
    "callers_address_as_user_data_comes_back_to_a_callback": "[1, 2, 3, 4, 5] True",
    "structure_with_slots": "0 0",
    "callers_addresses_the_library_moves_stay_the_callers": "[10, 20, 30] 10 b'hello World'",
}


def run(script, *args):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "client", "python"))
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                            env=env, text=True, timeout=120)
    assert result.returncode == 0, "exit %d: %s" % (result.returncode, result.stderr[-2000:])
    return result.stdout.strip()


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_the_pattern_gives_what_the_stdlib_gives(server, pattern):
    script = PRELUDE + textwrap.dedent(PATTERNS[pattern])
    assert run(script, "stdlib") == EXPECTED[pattern]
    assert run(script, "ffibox", server.address) == EXPECTED[pattern]


LARGE_KEPT_BUFFER = """
        libc.fmemopen.restype = c_void_p
        libc.fmemopen.argtypes = [c_void_p, c_size_t, c_char_p]
        libc.fputs.argtypes = [c_char_p, c_void_p]
        libc.fflush.argtypes = libc.fclose.argtypes = [c_void_p]
        libc.strlen.argtypes = [c_void_p]
        buffer = create_string_buffer(5 << 20)  # past the worker's 4 MiB watch budget
        stream = libc.fmemopen(buffer, len(buffer), b"w")
        libc.fputs(b"kept buffer", stream)
        libc.fflush(stream)
        buffer[4000000:4000005] = b"local"
        print(libc.strlen(buffer), buffer.raw[:11], buffer.raw[4000000:4000005], end=" ")
        libc.fputs(b", again", stream)
        libc.fflush(stream)
        print(libc.strlen(buffer), buffer.value, buffer.raw[4000000:4000005])
        libc.fclose(stream)
"""


@pytest.mark.parametrize("same_host", ["0", "1"])
def test_a_large_kept_buffer_shows_the_librarys_writes_at_the_next_call_that_passes_it(
        server, monkeypatch, same_host):
    """Past the watch budget, what the library wrote into a buffer it keeps (OSMesa's frame
    buffer, a stream's) is seen at the next call that passes the buffer, beside what the
    caller changed elsewhere in it: the caller's stale bytes overwrote it there before."""
    monkeypatch.setenv("FFIBOX_SAME_HOST", same_host)
    script = PRELUDE + textwrap.dedent(LARGE_KEPT_BUFFER)
    expected = "11 b'kept buffer' b'local' 18 b'kept buffer, again' b'local'"
    assert run(script, "stdlib") == expected
    assert run(script, "ffibox", server.address) == expected


def test_a_twin_is_released_once_its_object_is_collected(server):
    script = PRELUDE + textwrap.dedent("""
        session = ctypes._default_session()
        libc.memset.argtypes = [c_void_p, c_int, c_size_t]
        keep = create_string_buffer(1 << 16)
        for _ in range(40):  # 40 twins of 1 MiB if twins were never released
            libc.memset(create_string_buffer(1 << 20), 1, 1 << 20)
        libc.memset(keep, 2, 16)
        libc.memset(keep, 3, 16)
        print(len(session.twins._by_owner) <= 3, keep.raw[:2])
    """)
    assert run(script, "ffibox", server.address) == "True b'\\x03\\x03'"


def test_twins_are_renewed_after_the_worker_is_restarted(server):
    script = PRELUDE + textwrap.dedent("""
        import ffibox.errors, signal
        libc.strtok.restype = c_char_p
        libc.strtok.argtypes = [c_char_p, c_char_p]
        line = create_string_buffer(b"one two", 32)
        first = libc.strtok(line, b" ")
        try:
            getattr(libc, "raise")(signal.SIGSEGV)
        except ffibox.errors.WorkerCrashed:
            pass
        # The buffer's twin died with the worker; the next call gives it a new one.
        line.value = b"three four"
        print(first, libc.strtok(line, b" "), libc.strtok(None, b" "))
    """)
    assert run(script, "ffibox", server.address) == "b'one' b'three' b'four'"


def test_an_integer_no_process_has_raises_instead_of_crashing(server):
    script = PRELUDE + textwrap.dedent("""
        import ffibox.errors
        libc.strlen(b"start the session")
        try:
            c_int.from_address(0x10).value
        except ffibox.errors.MemoryFault as error:
            print("MemoryFault")
    """)
    assert run(script, "ffibox", server.address) == "MemoryFault"


def test_from_address_at_a_worker_address_never_reads_this_process(server):
    # Pointer types keep the stdlib's from_address, which would read this process's memory
    # at the worker's address (or crash it): it raises. Array types get ffibox.ctypes' (a
    # view of worker memory), as does ffibox.ctypes.from_address for any type; an address
    # neither process has gives a view whose reads raise MemoryFault. Local memory and
    # from_buffer are untouched.
    script = PRELUDE + textwrap.dedent("""
        import ffibox
        libc.malloc.restype = c_void_p
        libc.malloc.argtypes = [c_size_t]
        m = libc.malloc(16)
        c_int.from_address(m).value = 7
        c_int.from_address(m + 4).value = 8
        for make in (lambda: list((c_int * 2).from_address(m)),
                     lambda: POINTER(c_int).from_address(m),
                     lambda: (c_char * 8).from_address(0x10)[0]):
            try:
                print(make(), end=" ")
            except ValueError:
                print("ValueError", end=" ")
            except ffibox.MemoryFault:
                print("MemoryFault", end=" ")
        local = (c_int * 2)(3, 4)
        print(list(ctypes.from_address(c_int * 2, m)),
              list((c_int * 2).from_address(addressof(local))),
              c_int.from_buffer(local, 4).value)
    """)
    assert run(script, "ffibox", server.address) == \
        "[7, 8] ValueError MemoryFault [7, 8] [3, 4] 4"


def test_released_twins_after_crashes_never_fail_a_call(server):
    script = PRELUDE + textwrap.dedent("""
        import ffibox.errors
        for _ in range(3):
            buf = create_string_buffer(b"before the crash", 32)
            libc.strlen(buf)
            try:
                getattr(libc, "raise")(11)
            except ffibox.errors.WorkerCrashed:
                pass
            del buf  # its twin died with the worker; the release must not fail the next call
            print(libc.strlen(b"after"), end=" ")
    """)
    assert run(script, "ffibox", server.address) == "5 5 5"


def test_thousands_of_collected_twins_are_released_over_the_next_calls(server):
    script = PRELUDE + textwrap.dedent("""
        session = ctypes._default_session()
        libc.memset.argtypes = [c_void_p, c_int, c_size_t]
        buffers = [create_string_buffer(1024) for _ in range(5000)]
        for b in buffers:
            libc.memset(b, 1, 1)
        del buffers, b
        gc.collect()
        for _ in range(6):
            libc.strlen(b"x")
        print(len(session.twins._by_owner) < 10, len(session.twins._collected))
    """)
    assert run(script, "ffibox", server.address) == "True 0"


def test_two_threads_first_calls_with_the_same_objects_share_one_twin(server):
    """Both threads' first calls with an object keep a block for it in the worker, on a
    same-host session, where calls are quick enough for the two to cross: the later calls of
    either must name a block that is still there (the twin kept first stays, the other block
    is released)."""
    client = ffibox.connect(server.address)
    try:
        with client.session(same_host=True) as session:
            libc = session.CDLL("libc.so.6")
            shared = ([fctypes.create_string_buffer(b"buffer%d" % i) for i in range(8)] +
                      [b"bytes_%d" % i for i in range(8)])
            errors = []
            both = threading.Barrier(2)

            def run():
                for obj in shared:
                    both.wait()  # the first calls with each object are made at once
                    for _ in range(20):
                        try:
                            if libc.strlen(obj) != 7:
                                errors.append("wrong length")
                        except Exception as error:
                            errors.append(repr(error))

            threads = [threading.Thread(target=run) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
    finally:
        client.close()


# A script run with the server's address and the test library: the library's list node.
LIST_NODE_SCRIPT = """
        import gc, os, sys
        os.environ["FFIBOX_ADDRESS"] = sys.argv[1]
        from ffibox.ctypes import *
        lib = CDLL(sys.argv[2])
        class ListNode(Structure):
            pass
        VISIT = CFUNCTYPE(c_int, c_int)
        ListNode._fields_ = [("value", c_int), ("next", POINTER(ListNode)), ("visit", VISIT),
                             ("name", c_char_p), ("data", c_void_p)]
"""


def test_what_a_kept_object_pointed_to_lives_until_a_call_passes_it_again(server):
    # The library keeps the caller's node (its twin), which points at another node; the caller
    # points the field elsewhere, and ctypes lets the first target go. The library reads the
    # node as the worker last got it until a call passes it again (docs/python.md), and that
    # target's twin with it: it was freed, and the library read freed memory (its heap reused).
    script = textwrap.dedent(LIST_NODE_SCRIPT + """
        node = ListNode(1, name=("n" * 5).encode())
        node.next = pointer(ListNode(5))
        node.visit = VISIT(lambda value: value * 100)
        lib.set_list_slot(0, byref(node))
        node.next = pointer(ListNode(7))
        node.name = ("n" * 9).encode()
        node.visit = VISIT(lambda value: value * 1000)
        # A copy of the node stored by value into the library's memory is no call passing it
        # (it took what the twin still reaches).
        lib.list_head.restype = POINTER(ListNode)
        lib.list_head()[0] = node
        gc.collect()
        lib.heap_churn()
        print(lib.list_sum())
        lib.set_list_slot(0, byref(node))
        gc.collect()
        lib.heap_churn()
        print(lib.list_sum())
    """)
    assert run(script, server.address, TEST_LIB).split() == ["126", "1032"]


def test_two_threads_storing_one_object_first_give_it_one_twin(server):
    # Two threads store a pointer to the same node, which has no twin yet, into the library's
    # slots at once (each thread's worker block is made before either records it). The library
    # must see one node, as ctypes shows it one: before, each store made a twin, one of them
    # was never written again, and the library read the node's old value through it.
    script = textwrap.dedent(LIST_NODE_SCRIPT + """
        import threading
        slots = (POINTER(ListNode) * 4).in_dll(lib, "list_slots")
        node = ListNode(7)
        memory = lib.session.memory
        alloc = memory.alloc
        both = threading.Barrier(2, timeout=5)
        def paced(size):
            address = alloc(size)
            try:
                both.wait()  # both blocks made before either is recorded
            except threading.BrokenBarrierError:
                pass
            return address
        memory.alloc = paced
        threads = [threading.Thread(target=slots.__setitem__, args=(i, pointer(node)))
                   for i in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        memory.alloc = alloc
        node.value = 9
        lib.set_list_slot(2, byref(node))  # a call passes the node: the library sees 9
        print(lib.list_sum())
    """)
    assert run(script, server.address, TEST_LIB) == "27"
