#!/usr/bin/python3
"""Times the same Python call, cos(0.5) with argtypes/restype set, through the stdlib ctypes
in-process and through `ffibox.ctypes` (the library in a worker), in one run.

Prints one line per variant in the shape bench/run.sh reads, then the ratio:

    BM_PythonCtypesCos        <median> ns   min <ns> ns   max <ns> ns   (<repeats> x <calls> calls)
    BM_PythonFfiboxCos        <median> ns   ...
    BM_PythonFfiboxLocalCos   <median> ns   ...
    ratio ffibox/ctypes <x>, same-host <y>
    BM_PythonCtypesQsortCallback      <median> ns   ...
    BM_PythonFfiboxQsortCallback      <median> ns   ...
    BM_PythonFfiboxLocalQsortCallback <median> ns   ...
    BM_PythonFfiboxChannelQsortCallback <median> ns   ...
    ratio of a callback ffibox/ctypes <x>, same-host <y>, on the channel <z>
    BM_PythonCtypesQsortStrings       <median> ns   ...
    BM_PythonFfiboxQsortStrings       <median> ns   ...
    BM_PythonFfiboxChannelQsortStrings <median> ns  ...
    BM_PythonCtypesStringArray/4000   <median> ns   ...
    BM_PythonFfiboxStringArray/4000   <median> ns   ...
    BM_PythonCtypesStrlen             <median> ns   ...
    BM_PythonFfiboxLocalStrlen        <median> ns   ...
    BM_PythonCtypesStrlenEncoded      <median> ns   ...
    BM_PythonFfiboxLocalStrlenEncoded <median> ns   ...
    BM_PythonCtypesMemset             <median> ns   ...
    BM_PythonFfiboxLocalMemset        <median> ns   ...
    BM_PythonCtypesMemsetNewBuffer    <median> ns   ...
    BM_PythonFfiboxLocalMemsetNewBuffer <median> ns ...
    BM_PythonCtypesHandle             <median> ns   ...
    BM_PythonFfiboxLocalHandle        <median> ns   ...
    BM_PythonCtypesStringAt           <median> ns   ...
    BM_PythonFfiboxStringAt           <median> ns   ...
    BM_PythonFfiboxLocalStringAt      <median> ns   ...
    BM_PythonCtypesFreetypeGlyph      <median> ns   ...
    BM_PythonFfiboxLocalFreetypeGlyph <median> ns   ...

BM_PythonFfiboxCos goes over gRPC (FFIBOX_SAME_HOST=0 for the default session, which would
take the same-host channel by default on a private server); BM_PythonFfiboxLocalCos is the
same call on a session with the same-host channel (`session(same_host=True)`,
docs/protocol.md): calls go to the worker through shared memory. The QsortCallback trio
sorts 32 ints with libc's qsort and a Python comparator taking two `POINTER(c_int)` (ctypes'
own tutorial example), per comparator call: in-process, on the default session over gRPC,
on a same-host session whose callbacks come through the broker (`channel_callbacks=False`),
and on one whose callbacks take the channel (the default of a same-host session). The
QsortStrings trio sorts 64 `char*` (a `c_char_p * 64`) with a comparator taking two
`POINTER(c_char_p)`, per comparator call: in-process, over gRPC and on the channel (each
argument's image takes up to 64 strings). The StringArray pair passes
an array of 4000 `char*` (`(c_char_p * 4000)(*names)`, as argv-like APIs take) to libc's
`memchr`, which reads its first word: the cost of a call that reaches thousands of strings.
The Strlen, StrlenEncoded, Memset and MemsetNewBuffer pairs are calls that pass memory, on
a same-host session: libc's `strlen(b"hello")` (`c_char_p`, the bytes travel to the worker),
`strlen(name.encode())` (a new bytes object each call, which the worker keeps until a later
call releases it, as for any string passed), `memset(buf, 66, 8)` on a 64-byte
`create_string_buffer` (`c_void_p, c_int, c_size_t`, restype `c_void_p`: the buffer travels
both ways) and the same on a new 64-byte buffer each call
(`memset(create_string_buffer(64), 66, 8)`, the buffer made in the time too). The Handle
pair is libc's `malloc_usable_size(handle)` with a `c_void_p` parameter given the integer
`malloc` returned: a call on an opaque handle, as bindings hold them. The StringAt
trio reads memory the library owns: `string_at(p, 8)` of a `POINTER(c_char)` libc's malloc
returned, in-process, over gRPC and on the same-host channel (a read request each,
docs/protocol.md "The same-host channel", item 6). The FreetypeGlyph pair is a whole
Debian binding, python3-freetype, per glyph: `face.load_char(c)` and the glyph slot's
metrics and bitmap size read (FreeType rewrites the slot the binding holds on each load), in
a child process with the stdlib ctypes and one with ffibox.ctypes swapped in for it
(`FFIBOX_SAME_HOST=1`); both must read the same values.

ffibox uses FFIBOX_ADDRESS, else the default socket, else a private ffiboxd (as any user of
`from ffibox import ctypes`): run it from the repository root after the build. With
`--json FILE` it also writes both variants' repeats in Google Benchmark's JSON shape
(bench/bench_json.py).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import timeit

import bench_json

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "client", "python"))


def time_cos(module, number: int, repeat: int, libm=None):
    libm = libm if libm is not None else module.CDLL("libm.so.6")
    cos = libm.cos
    cos.argtypes = [module.c_double]
    cos.restype = module.c_double
    if cos(0.5) != math.cos(0.5):
        raise SystemExit("%s cos(0.5) returned a wrong value" % module.__name__)
    timer = timeit.Timer("cos(0.5)", globals={"cos": cos})
    return sorted(t / number * 1e9 for t in timer.repeat(repeat=repeat, number=number))


def time_string_array(module, number: int, repeat: int, count: int = 4000):
    libc = module.CDLL("libc.so.6")
    libc.memchr.restype = module.c_void_p
    names = (module.c_char_p * count)(*[b"name %d" % i for i in range(count)])
    # The first word is an address (the string's, local or in the worker): below 2**48, so
    # one of its bytes is zero, at the latest the one at offset 6 of the (8-aligned) array.
    found = libc.memchr(names, 0, 8)
    if found is None or found % 8 > 6:
        raise SystemExit("%s memchr over a string array returned a wrong value"
                         % module.__name__)
    timer = timeit.Timer("memchr(names, 0, 8)", globals={"memchr": libc.memchr, "names": names})
    return sorted(t / number * 1e9 for t in timer.repeat(repeat=repeat, number=number))


def time_memory_calls(module, number: int, repeat: int, libc=None):
    """(strlen runs, strlen of a new string runs, memset runs, memset of a new buffer runs,
    handle runs): ns per call of libc's strlen(b"hello"), of strlen(name.encode()), of
    memset(buf, 66, 8) on a 64-byte buffer, of memset(create_string_buffer(64), 66, 8) and
    of malloc_usable_size(handle) for a c_void_p parameter given the integer malloc
    returned (an opaque handle, as bindings hold them)."""
    libc = libc if libc is not None else module.CDLL("libc.so.6")
    strlen, memset = libc.strlen, libc.memset
    malloc, usable = libc.malloc, libc.malloc_usable_size
    malloc.argtypes, malloc.restype = [module.c_size_t], module.c_void_p
    usable.argtypes, usable.restype = [module.c_void_p], module.c_size_t
    handle = malloc(64)
    if not isinstance(handle, int) or usable(handle) < 64:
        raise SystemExit("%s malloc_usable_size returned a wrong value" % module.__name__)
    strlen.argtypes, strlen.restype = [module.c_char_p], module.c_size_t
    memset.argtypes = [module.c_void_p, module.c_int, module.c_size_t]
    memset.restype = module.c_void_p
    buf = module.create_string_buffer(64)
    name = "hello"
    if strlen(b"hello") != 5 or strlen(name.encode()) != 5 or \
            memset(buf, 66, 8) != module.addressof(buf) or buf.raw != b"B" * 8 + bytes(56):
        raise SystemExit("%s strlen or memset returned a wrong value" % module.__name__)
    runs = []
    for statement in ('strlen(b"hello")', "strlen(name.encode())", "memset(buf, 66, 8)",
                      "memset(create_string_buffer(64), 66, 8)", "usable(handle)"):
        timer = timeit.Timer(statement, globals={
            "strlen": strlen, "memset": memset, "buf": buf, "name": name,
            "usable": usable, "handle": handle,
            "create_string_buffer": module.create_string_buffer})
        runs.append(sorted(t / number * 1e9 for t in timer.repeat(repeat=repeat,
                                                                   number=number)))
    return runs


def time_string_at(module, number: int, repeat: int, libc=None):
    """ns per string_at(p, 8) of 8 bytes at a POINTER(c_char) libc's malloc returned."""
    libc = libc if libc is not None else module.CDLL("libc.so.6")
    malloc, memset = libc.malloc, libc.memset
    malloc.argtypes, malloc.restype = [module.c_size_t], module.POINTER(module.c_char)
    memset.argtypes = [module.POINTER(module.c_char), module.c_int, module.c_size_t]
    memset.restype = None
    p = malloc(64)
    memset(p, 66, 8)
    if module.string_at(p, 8) != b"B" * 8:
        raise SystemExit("%s string_at read a wrong value" % module.__name__)
    timer = timeit.Timer("string_at(p, 8)", globals={"string_at": module.string_at, "p": p})
    return sorted(t / number * 1e9 for t in timer.repeat(repeat=repeat, number=number))


FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # fonts-dejavu-core
GLYPHS = "The quick brown fox jumps over the lazy dog 0123456789"


def freetype_glyphs_child(variant: str, number: int, repeat: int) -> None:
    """In a child process: prints as JSON the ns per glyph of each repeat of `number`
    passes over GLYPHS through freetype-py with `variant` ("ctypes", or "ffibox" swapped in
    for it before the binding is imported), and the values the glyphs read."""
    if variant == "ffibox":
        import ffibox.ctypes
        import ffibox.ctypes.util
        sys.modules["ctypes"] = ffibox.ctypes
        sys.modules["ctypes.util"] = ffibox.ctypes.util
    import freetype
    face = freetype.Face(FONT)
    face.set_char_size(24 * 64)

    def glyphs():
        values = []
        for char in GLYPHS:
            face.load_char(char)
            slot = face.glyph
            values.append((slot.metrics.width, slot.metrics.horiAdvance, slot.bitmap.rows,
                           slot.bitmap.width))
        return values

    values = glyphs()
    runs = sorted(t / (number * len(GLYPHS)) * 1e9
                  for t in timeit.Timer(glyphs).repeat(repeat=repeat, number=number))
    print(json.dumps({"runs": runs, "values": values}))


def time_freetype_glyphs(variant: str, number: int, repeat: int):
    """freetype_glyphs_child's (runs, values) from a child process of its own."""
    env = dict(os.environ, FFIBOX_SAME_HOST="1")
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--freetype_child",
                            variant, "--number", str(number), "--repeat", str(repeat)],
                           env=env, capture_output=True, text=True)
    if child.returncode != 0:
        raise SystemExit("the %s freetype glyphs failed:\n%s" % (variant, child.stderr))
    result = json.loads(child.stdout.splitlines()[-1])
    return result["runs"], result["values"]


def _time_qsort(module, element, items, compare, number: int, repeat: int, libc=None):
    """ns per comparator call of libc's qsort sorting `items` (values of ctypes type
    `element`) with a Python comparator taking two `POINTER(element)` that compares what they
    point to with compare(x, y), and the comparisons one sort makes."""
    libc = libc if libc is not None else module.CDLL("libc.so.6")
    CMP = module.CFUNCTYPE(module.c_int, module.POINTER(element), module.POINTER(element))
    calls = [0]

    def comparator_of(a, b):
        calls[0] += 1
        return compare(a[0], b[0])

    comparator = CMP(comparator_of)
    libc.qsort.argtypes = [module.c_void_p, module.c_size_t, module.c_size_t, CMP]
    libc.qsort.restype = None
    values = (element * len(items))()

    def sort():
        values[:] = items
        libc.qsort(values, len(items), module.sizeof(element), comparator)

    sort()
    if list(values) != sorted(items):
        raise SystemExit("%s qsort with a Python comparator did not sort" % module.__name__)
    calls[0] = 0
    runs = timeit.Timer(sort).repeat(repeat=repeat, number=number)
    per_sort = calls[0] // (repeat * number)
    return sorted(t / (number * per_sort) * 1e9 for t in runs), per_sort


def time_qsort_callback(module, number: int, repeat: int, libc=None, count: int = 32):
    """ns per comparator call of libc's qsort sorting `count` ints given in reverse order,
    the comparator taking two `POINTER(c_int)` (as ctypes' own tutorial sorts)."""
    return _time_qsort(module, module.c_int, list(range(count, 0, -1)),
                       lambda x, y: x - y, number, repeat, libc)


def time_qsort_strings(module, number: int, repeat: int, libc=None, count: int = 64):
    """ns per comparator call of libc's qsort sorting an array of `count` `char*` (a
    `(c_char_p * count)`), the comparator taking two `POINTER(c_char_p)` and comparing the
    strings they point to."""
    return _time_qsort(module, module.c_char_p,
                       [b"word-%05d" % ((i * 7919) % count) for i in range(count)],
                       lambda x, y: (x > y) - (x < y), number, repeat, libc)


def report(name: str, per_call, repeat: int, number: int) -> float:
    median = statistics.median(per_call)
    print(f"{name} {median:12.1f} ns   min {per_call[0]:.1f} ns   "
          f"max {per_call[-1]:.1f} ns   ({repeat} x {number} calls)")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000, help="ctypes calls per repeat")
    parser.add_argument("--ffibox_number", type=int, default=5_000,
                        help="ffibox calls per repeat")
    parser.add_argument("--repeat", type=int, default=5, help="timeit repeats")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    parser.add_argument("--freetype_child", choices=("ctypes", "ffibox"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.freetype_child:
        freetype_glyphs_child(args.freetype_child, args.number, args.repeat)
        return

    import ctypes
    os.environ["FFIBOX_SAME_HOST"] = "0"  # the default session over gRPC
    from ffibox import ctypes as fctypes
    local_runs = time_cos(ctypes, args.number, args.repeat)
    local = report("BM_PythonCtypesCos", local_runs, args.repeat, args.number)
    remote_runs = time_cos(fctypes, args.ffibox_number, args.repeat)
    remote = report("BM_PythonFfiboxCos", remote_runs, args.repeat, args.ffibox_number)
    from ffibox import _default
    same_host = _default.default_session().client.session(same_host=True)
    same_host_runs = time_cos(fctypes, args.ffibox_number, args.repeat,
                              same_host.CDLL("libm.so.6"))
    same_host_median = report("BM_PythonFfiboxLocalCos", same_host_runs, args.repeat,
                              args.ffibox_number)
    same_host.close()
    print(f"ratio ffibox/ctypes {remote / local:.1f}, same-host {same_host_median / local:.1f}")
    # glibc's qsort makes the same comparisons for the same input: `per_sort` is the same for
    # every variant (each checks it sorted).
    callback_local_runs, per_sort = time_qsort_callback(ctypes, 500, args.repeat)
    callback_local = report("BM_PythonCtypesQsortCallback", callback_local_runs, args.repeat,
                            500 * per_sort)
    callback_runs, _ = time_qsort_callback(fctypes, 4, args.repeat)
    callback = report("BM_PythonFfiboxQsortCallback", callback_runs, args.repeat,
                      4 * per_sort)
    same_host = _default.default_session().client.session(same_host=True,
                                                          channel_callbacks=False)
    callback_same_host_runs, _ = time_qsort_callback(fctypes, 4, args.repeat,
                                                     same_host.CDLL("libc.so.6"))
    callback_same_host = report("BM_PythonFfiboxLocalQsortCallback", callback_same_host_runs,
                                args.repeat, 4 * per_sort)
    same_host.close()
    channel = _default.default_session().client.session(same_host=True, channel_callbacks=True)
    callback_channel_runs, _ = time_qsort_callback(fctypes, 4, args.repeat,
                                                   channel.CDLL("libc.so.6"))
    callback_channel = report("BM_PythonFfiboxChannelQsortCallback", callback_channel_runs,
                              args.repeat, 4 * per_sort)
    channel.close()
    print(f"ratio of a callback ffibox/ctypes {callback / callback_local:.0f}, "
          f"same-host {callback_same_host / callback_local:.0f}, "
          f"on the channel {callback_channel / callback_local:.0f}")
    strings_local_runs, per_sort = time_qsort_strings(ctypes, 200, args.repeat)
    report("BM_PythonCtypesQsortStrings", strings_local_runs, args.repeat, 200 * per_sort)
    strings_runs, _ = time_qsort_strings(fctypes, 1, args.repeat)
    report("BM_PythonFfiboxQsortStrings", strings_runs, args.repeat, per_sort)
    channel = _default.default_session().client.session(same_host=True, channel_callbacks=True)
    strings_channel_runs, _ = time_qsort_strings(fctypes, 1, args.repeat,
                                                 channel.CDLL("libc.so.6"))
    report("BM_PythonFfiboxChannelQsortStrings", strings_channel_runs, args.repeat, per_sort)
    channel.close()
    array_local_runs = time_string_array(ctypes, 2000, args.repeat)
    report("BM_PythonCtypesStringArray/4000", array_local_runs, args.repeat, 2000)
    array_runs = time_string_array(fctypes, 4, args.repeat)
    report("BM_PythonFfiboxStringArray/4000", array_runs, args.repeat, 4)
    memory_local_runs = time_memory_calls(ctypes, args.number, args.repeat)
    same_host = _default.default_session().client.session(same_host=True)
    memory_runs = time_memory_calls(fctypes, args.ffibox_number, args.repeat,
                                    same_host.CDLL("libc.so.6"))
    string_at_local_runs = time_string_at(ctypes, args.number, args.repeat)
    report("BM_PythonCtypesStringAt", string_at_local_runs, args.repeat, args.number)
    string_at_runs = time_string_at(fctypes, args.ffibox_number, args.repeat)
    report("BM_PythonFfiboxStringAt", string_at_runs, args.repeat, args.ffibox_number)
    string_at_same_host_runs = time_string_at(fctypes, args.ffibox_number, args.repeat,
                                              same_host.CDLL("libc.so.6"))
    report("BM_PythonFfiboxLocalStringAt", string_at_same_host_runs, args.repeat,
           args.ffibox_number)
    same_host.close()
    glyph_number = max(1, args.ffibox_number // 250)  # passes of 54 glyphs
    glyph_local_runs, local_values = time_freetype_glyphs("ctypes", 100 * glyph_number,
                                                          args.repeat)
    report("BM_PythonCtypesFreetypeGlyph", glyph_local_runs, args.repeat,
           100 * glyph_number * len(GLYPHS))
    glyph_runs, values = time_freetype_glyphs("ffibox", glyph_number, args.repeat)
    report("BM_PythonFfiboxLocalFreetypeGlyph", glyph_runs, args.repeat,
           glyph_number * len(GLYPHS))
    if values != local_values:
        raise SystemExit("freetype-py read other glyphs through ffibox.ctypes")
    memory_entries = bench_json.entries(
        "BM_PythonCtypesFreetypeGlyph", glyph_local_runs, 100 * glyph_number * len(GLYPHS)) + \
        bench_json.entries("BM_PythonFfiboxLocalFreetypeGlyph", glyph_runs,
                           glyph_number * len(GLYPHS)) + bench_json.entries(
        "BM_PythonCtypesStringAt", string_at_local_runs, args.number) + bench_json.entries(
        "BM_PythonFfiboxStringAt", string_at_runs, args.ffibox_number) + bench_json.entries(
        "BM_PythonFfiboxLocalStringAt", string_at_same_host_runs, args.ffibox_number)
    for name, local_runs_of, runs_of in zip(("Strlen", "StrlenEncoded", "Memset",
                                             "MemsetNewBuffer", "Handle"),
                                            memory_local_runs, memory_runs):
        report("BM_PythonCtypes" + name, local_runs_of, args.repeat, args.number)
        report("BM_PythonFfiboxLocal" + name, runs_of, args.repeat, args.ffibox_number)
        memory_entries += bench_json.entries("BM_PythonCtypes" + name, local_runs_of,
                                             args.number) + \
            bench_json.entries("BM_PythonFfiboxLocal" + name, runs_of, args.ffibox_number)
    if args.json:
        bench_json.write(args.json,
                         bench_json.entries("BM_PythonCtypesCos", local_runs, args.number) +
                         bench_json.entries("BM_PythonFfiboxCos", remote_runs,
                                            args.ffibox_number) +
                         bench_json.entries("BM_PythonFfiboxLocalCos", same_host_runs,
                                            args.ffibox_number) +
                         bench_json.entries("BM_PythonCtypesQsortCallback", callback_local_runs,
                                            500 * per_sort) +
                         bench_json.entries("BM_PythonFfiboxQsortCallback", callback_runs,
                                            4 * per_sort) +
                         bench_json.entries("BM_PythonFfiboxLocalQsortCallback",
                                            callback_same_host_runs, 4 * per_sort) +
                         bench_json.entries("BM_PythonFfiboxChannelQsortCallback",
                                            callback_channel_runs, 4 * per_sort) +
                         bench_json.entries("BM_PythonCtypesQsortStrings", strings_local_runs,
                                            200 * per_sort) +
                         bench_json.entries("BM_PythonFfiboxQsortStrings", strings_runs,
                                            per_sort) +
                         bench_json.entries("BM_PythonFfiboxChannelQsortStrings",
                                            strings_channel_runs, per_sort) +
                         bench_json.entries("BM_PythonCtypesStringArray/4000", array_local_runs,
                                            2000) +
                         bench_json.entries("BM_PythonFfiboxStringArray/4000", array_runs, 4) +
                         memory_entries,
                         "bench/python_bench.py")


if __name__ == "__main__":
    main()
