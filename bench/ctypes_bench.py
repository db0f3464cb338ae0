#!/usr/bin/python3
"""Times cos(0.5) through the stdlib ctypes, in-process: the floor a Python caller knows.

Prints one line in the shape of Google Benchmark's console output, so that bench/run.sh can
put it in the same table as bench/call_bench:

    BM_PythonCtypesCos   <median> ns   min <ns> ns   max <ns> ns   (<repeats> x <calls> calls)

Times are per call over each timeit repeat (median, fastest and slowest repeat), including
the Python call overhead and the argument conversion that ctypes performs on every call.
With `--json FILE` it also writes the repeats in Google Benchmark's JSON shape
(bench/bench_json.py).
"""
import argparse
import ctypes
import math
import statistics
import timeit

import bench_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000, help="calls per repeat")
    parser.add_argument("--repeat", type=int, default=5, help="timeit repeats")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()

    libm = ctypes.CDLL("libm.so.6")
    cos = libm.cos
    cos.argtypes = [ctypes.c_double]
    cos.restype = ctypes.c_double
    if cos(0.5) != math.cos(0.5):
        raise SystemExit("ctypes cos(0.5) returned a wrong value")

    timer = timeit.Timer("cos(0.5)", globals={"cos": cos})
    per_call = sorted(t / args.number * 1e9
                      for t in timer.repeat(repeat=args.repeat, number=args.number))
    median = statistics.median(per_call)
    print(f"BM_PythonCtypesCos {median:12.1f} ns   min {per_call[0]:.1f} ns   "
          f"max {per_call[-1]:.1f} ns   ({args.repeat} x {args.number} calls)")
    if args.json:
        bench_json.write(args.json, bench_json.entries("BM_PythonCtypesCos", per_call, args.number),
                         "bench/ctypes_bench.py")


if __name__ == "__main__":
    main()
