#!/usr/bin/python3
"""Merges benchmark reports into one and prints bench/run.sh's summary.

    summary.py [--json OUT] CALL_BENCH_JSON [PYTHON_JSON ...]

The first report is bench/call_bench's Google Benchmark JSON; the others are the Python
benchmarks' (bench/bench_json.py). With --json, the merged report (the first report's context,
every report's entries; a benchmark name already present is not added again) is written to
OUT. The summary prints every benchmark required for comparisons across changes, in a fixed
order, each marked `missing` when the run did not produce it, then the other benchmarks,
then the performance targets, met or missed and by how much.
"""
import argparse
import json
import os
import sys
from typing import Dict, List, Optional

import results as bench_results

# Benchmarks every run must report (a name ending in "/*" is a family: any of its members).
REQUIRED = [
    "BM_InProcessLibffi",
    "BM_PythonCtypesCos",
    "BM_BareGrpcRoundTrip",
    "BM_BareShmRoundTrip",
    "BM_FfiboxCallAdd",
    "BM_FfiboxLocalCallAdd",
    "BM_FfiboxCallAddBatched/*",
    "BM_FfiboxBulkInout/67108864",
    "BM_FfiboxLocalBulkInout/67108864",
    "BM_BareGrpcBulk/4194304",
    "BM_SessionStartWithPool",
    "BM_BareGrpcSessionStart",
    "BM_CrashToNextCall",
    "BM_FfiboxCallbackRoundTrip",
    "BM_FfiboxLocalCallbackRoundTrip",
    "BM_FfiboxConcurrentSessions/200",
]
FLOOR = "BM_CrossProcessRoundTrip"
MIB = 1 << 20


def merge(paths: List[str]) -> Dict:
    """The first report's context and every report's entries, without repeated benchmarks."""
    merged: Optional[Dict] = None
    seen = set()
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        if merged is None:
            merged = {"context": report.get("context", {}), "benchmarks": []}
            merged["context"]["merged_reports"] = []
        merged["context"]["merged_reports"].append(os.path.basename(path))
        names = set()
        for entry in report["benchmarks"]:
            name = bench_results.benchmark_name(entry)
            if name in seen:
                continue
            names.add(name)
            merged["benchmarks"].append(entry)
        seen |= names
    return merged


def note(name: str, result: bench_results.Result) -> str:
    """Throughput and the counters that matter, of the median repetition."""
    counters = result.counters
    parts = []
    if "bytes_per_second" in counters:
        parts.append("%.1f MiB/s" % (counters["bytes_per_second"] / MIB))
    if "items_per_second" in counters:
        parts.append("%.0f calls/s" % counters["items_per_second"])
    if "request_bytes" in counters:
        parts.append("request %d B, response %d B" % (counters["request_bytes"],
                                                       counters["response_bytes"]))
    if "crash_ms" in counters:
        parts.append("crash reported %.1f ms + next call %.1f ms" % (counters["crash_ms"],
                                                                    counters["next_call_ms"]))
    if "load_ms" in counters:
        parts.append("open %.1f + load %.1f + resolve %.1f + call %.1f ms" % (
            counters["open_ms"], counters["load_ms"], counters["resolve_ms"],
            counters["call_ms"]))
    if "broker_rss_per_idle_session" in counters:
        parts.append("errors %d, per idle session: broker RSS %.0f KiB, workers PSS %.0f KiB" % (
            counters["errors"], counters["broker_rss_per_idle_session"] / 1024,
            counters["workers_pss_per_idle_session"] / 1024))
    return "; ".join(parts)


def required_names(results: Dict[str, bench_results.Result]) -> List[str]:
    """REQUIRED with each family expanded to the members that ran (or kept as is)."""
    names = []
    for required in REQUIRED:
        if required.endswith("/*"):
            members = [name for name in results if name.startswith(required[:-1])]
            names.extend(members or [required])
        else:
            names.append(required)
    return names


def print_table(results: Dict[str, bench_results.Result]) -> None:
    floor = results.get(FLOOR)
    floor_median = floor.median if floor else None
    row = "%-34s %13s %12s %12s %8s  %s"
    print(row % ("benchmark", "median ns/op", "min", "max", "x floor", "note"))
    print(row % ("-" * 34, "-" * 13, "-" * 12, "-" * 12, "-" * 8, "-" * 16))
    required = required_names(results)
    others = [name for name in results if name not in required]
    for name in required + [None] + others:
        if name is None:
            print("%-34s" % "-- other benchmarks")
            continue
        result = results.get(name)
        if result is None:
            print(row % (name, "missing", "", "", "", "not produced by this run"))
        elif result.median is None:
            print(row % (name, "error", "", "", "", result.error or "no repetition ran"))
        else:
            times = result.times_ns or [result.median]
            ratio = "%8.3g" % (result.median / floor_median) if floor_median else "%8s" % "n/a"
            remark = note(name, result)
            if result.error:
                remark = "; ".join(filter(None, [remark, "ERROR in a repetition: " + result.error]))
            print("%-34s %13.1f %12.1f %12.1f %s  %s" % (
                name, result.median, min(times), max(times), ratio, remark))


def verdict(value: float, target: float, unit: str) -> str:
    if value <= target:
        return "met (%.3g %s <= %.3g %s)" % (value, unit, target, unit)
    return "MISSED by %.3g %s (%.0f %% over the %.3g %s target)" % (
        value - target, unit, (value / target - 1) * 100, target, unit)


def print_targets(results: Dict[str, bench_results.Result]) -> None:
    def median(name: str) -> Optional[float]:
        result = results.get(name)
        return result.median if result else None

    print("%-44s %s" % ("target", "result"))
    bare = median("BM_BareGrpcRoundTrip")
    add = median("BM_FfiboxCallAdd")
    if add is None or bare is None:
        line = "missing " + " and ".join(
            n for n, v in (("BM_FfiboxCallAdd", add), ("BM_BareGrpcRoundTrip", bare)) if v is None)
        cos = median("BM_FfiboxCallCos")
        if cos is not None and bare is not None:
            line += "; for reference BM_FfiboxCallCos is %.2fx bare gRPC" % (cos / bare)
    else:
        line = verdict(add / bare, 1.25, "x")
    print("%-44s %s" % ("add(1, 2) <= 1.25x bare gRPC (same bytes)", line))

    shm = median("BM_BareShmRoundTrip")
    local = median("BM_FfiboxLocalCallAdd")
    print("%-44s %s" % ("same-host add(1, 2) <= 3x bare shm round trip",
                        verdict(local / shm, 3, "x") if local and shm else "missing"))

    for label, callback, call in (
            ("a call with one callback <= 2x a call", "BM_FfiboxCallbackRoundTrip",
             "BM_FfiboxCallAdd"),
            ("same-host: the same <= 2x", "BM_FfiboxLocalCallbackRoundTrip",
             "BM_FfiboxLocalCallAdd")):
        with_callback, plain = median(callback), median(call)
        print("%-44s %s" % (label, verdict(with_callback / plain, 2, "x")
                            if with_callback and plain else "missing"))

    ctypes_cos = median("BM_PythonCtypesCos")
    python_local = median("BM_PythonFfiboxLocalCos")
    print("%-44s %s" % ("Python same-host cos <= 60x stdlib ctypes",
                        verdict(python_local / ctypes_cos, 60, "x")
                        if python_local and ctypes_cos else "missing"))

    for label, name, floor in (
            ("session start from the pool <= 2 ms", "BM_SessionStartWithPool",
             "BM_BareGrpcSessionStart"),
            ("the same, load/resolve/call pipelined", "BM_SessionStartPipelined",
             "BM_BareGrpcSessionStartPipelined")):
        start, bare_start = median(name), median(floor)
        line = verdict(start / 1e6, 2, "ms") if start else "missing"
        if start and bare_start:
            line += "; bare gRPC's own start %.2f ms" % (bare_start / 1e6)
        print("%-44s %s" % (label, line))
    crash = median("BM_CrashToNextCall")
    print("%-44s %s" % ("crash -> next call <= 20 ms",
                        verdict(crash / 1e6, 20, "ms") if crash else "missing"))

    crowd = results.get("BM_FfiboxConcurrentSessions/200")
    if crowd is None:
        line = "missing"
    elif crowd.error or crowd.median is None:
        line = "FAILED: " + (crowd.error or "no repetition ran")
    else:
        counters = crowd.counters
        line = "%d errors, %.0f calls/s, broker RSS %.0f KiB per idle session" % (
            counters["errors"], counters.get("items_per_second", 0),
            counters["broker_rss_per_idle_session"] / 1024)
    print("%-44s %s" % ("200 sessions calling at once, 0 errors", line))

    bulk = results.get("BM_FfiboxBulkInout/67108864")
    grpc = results.get("BM_BareGrpcBulk/4194304")
    def mib_s(result):
        if result is None or "bytes_per_second" not in result.counters:
            return "missing"
        return "%.1f MiB/s" % (result.counters["bytes_per_second"] / MIB)
    print("%-44s %s (bare gRPC 4 MiB: %s)" % ("64 MiB INOUT over gRPC", mib_s(bulk), mib_s(grpc)))
    local_bulk = results.get("BM_FfiboxLocalBulkInout/67108864")
    if local_bulk is None or "bytes_per_second" not in local_bulk.counters:
        line = "missing"
    else:
        rate = local_bulk.counters["bytes_per_second"] / 1e9
        line = ("met (%.3g GB/s >= 4 GB/s)" % rate if rate >= 4 else
                "MISSED by %.3g GB/s (%.0f %% under the 4 GB/s target)" % (
                    4 - rate, (1 - rate / 4) * 100))
    print("%-44s %s" % ("same-host 64 MiB INOUT >= 4 GB/s", line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="OUT", help="write the merged report here")
    parser.add_argument("reports", nargs="+", help="call_bench's JSON first, then the others")
    args = parser.parse_args()
    merged = merge(args.reports)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(merged, f, indent=1)
            f.write("\n")
    results = bench_results.read(merged["benchmarks"])
    print("== summary (wall-clock ns per operation; median, fastest and slowest repetition;")
    print("   x floor = median / median of %s)" % FLOOR)
    print_table(results)
    print()
    print("== targets (medians)")
    print_targets(results)


if __name__ == "__main__":
    sys.exit(main())
