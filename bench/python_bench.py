#!/usr/bin/python3
"""Times the same Python call, cos(0.5) with argtypes/restype set, through the stdlib ctypes
in-process and through `ffibox.ctypes` (the library in a worker), in one run.

Prints one line per variant in the shape bench/run.sh reads, then the ratio:

    BM_PythonCtypesCos        <median> ns   min <ns> ns   max <ns> ns   (<repeats> x <calls> calls)
    BM_PythonFfiboxCos        <median> ns   ...
    BM_PythonFfiboxLocalCos   <median> ns   ...
    ratio ffibox/ctypes <x>, same-host <y>
    BM_PythonCtypesStringArray/4000   <median> ns   ...
    BM_PythonFfiboxStringArray/4000   <median> ns   ...

BM_PythonFfiboxCos goes over gRPC (FFIBOX_SAME_HOST=0 for the default session, which would
take the same-host channel by default on a private server); BM_PythonFfiboxLocalCos is the
same call on a session with the same-host channel (`session(same_host=True)`,
docs/protocol.md): calls go to the worker through shared memory. The StringArray pair passes
an array of 4000 `char*` (`(c_char_p * 4000)(*names)`, as argv-like APIs take) to libc's
`memchr`, which reads its first word: the cost of a call that reaches thousands of strings.

ffibox uses FFIBOX_ADDRESS, else the default socket, else a private ffiboxd (as any user of
`from ffibox import ctypes`): run it from the repository root after the build. With
`--json FILE` it also writes both variants' repeats in Google Benchmark's JSON shape
(bench/bench_json.py).
"""
import argparse
import math
import os
import statistics
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
    args = parser.parse_args()

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
    array_local_runs = time_string_array(ctypes, 2000, args.repeat)
    report("BM_PythonCtypesStringArray/4000", array_local_runs, args.repeat, 2000)
    array_runs = time_string_array(fctypes, 4, args.repeat)
    report("BM_PythonFfiboxStringArray/4000", array_runs, args.repeat, 4)
    if args.json:
        bench_json.write(args.json,
                         bench_json.entries("BM_PythonCtypesCos", local_runs, args.number) +
                         bench_json.entries("BM_PythonFfiboxCos", remote_runs,
                                            args.ffibox_number) +
                         bench_json.entries("BM_PythonFfiboxLocalCos", same_host_runs,
                                            args.ffibox_number) +
                         bench_json.entries("BM_PythonCtypesStringArray/4000", array_local_runs,
                                            2000) +
                         bench_json.entries("BM_PythonFfiboxStringArray/4000", array_runs, 4),
                         "bench/python_bench.py")


if __name__ == "__main__":
    main()
