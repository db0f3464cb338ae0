#!/usr/bin/env bash
# Runs every ffibox benchmark in one go and prints ffibox beside its floors:
#   1. installs missing Debian packages, builds call_bench, ffiboxd and ffibox-worker;
#   2. runs bench/call_bench (which starts its own ffiboxd, from its runfiles, on a private
#      socket);
#   3. runs bench/ctypes_bench.py (stdlib ctypes, in-process) and bench/python_bench.py
#      (the same Python call through stdlib ctypes and through ffibox.ctypes);
#   4. prints one table: wall-clock ns per operation (median, fastest and slowest of the
#      repetitions) and the ratio of the medians to the cross-process round trip, the floor
#      of any out-of-process design.
# Extra arguments go to call_bench, e.g. ./bench/run.sh --benchmark_filter=Ffibox.
# Leaves the shared Bazel server running (other sessions use it).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
bazel build //bench:call_bench //server:ffiboxd //server:ffibox-worker \
  //tests/testlibs:libffibox_test.so //proto:ffibox_py

results="$(mktemp /tmp/ffibox-bench-results.XXXXXX)"
trap 'rm -f "$results"' EXIT

echo
echo "== bench/call_bench"
bazel-bin/bench/call_bench \
  --benchmark_min_time=0.5 \
  --benchmark_repetitions=5 \
  --benchmark_display_aggregates_only=true \
  --benchmark_out="$results" \
  --benchmark_out_format=json \
  "$@"

echo
echo "== bench/ctypes_bench.py"
ctypes_line="$(/usr/bin/python3 bench/ctypes_bench.py)"
echo "$ctypes_line"

echo
echo "== bench/python_bench.py (the same cos call: stdlib ctypes vs ffibox.ctypes)"
/usr/bin/python3 bench/python_bench.py

echo
echo "== summary (wall-clock ns per operation over 5 repetitions; x floor = median / median"
echo "   of BM_CrossProcessRoundTrip)"
/usr/bin/python3 - "$results" "$ctypes_line" <<'PY'
import json
import statistics
import sys

with open(sys.argv[1]) as f:
    report = json.load(f)
runs = {}   # name -> [ns per op of each repetition]
notes = {}  # name -> throughput of the median repetition
for b in report["benchmarks"]:
    if b.get("run_type") != "iteration" or b.get("error_occurred"):
        continue
    scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
    name = b.get("run_name", b["name"]).replace("/real_time", "")
    runs.setdefault(name, []).append(b["real_time"] * scale)
rows = []  # (name, median, min, max, note)
for name, times in runs.items():
    median = statistics.median(times)
    note = ""
    if name.startswith("BM_FfiboxCallBuffer/"):
        size = int(name.split("/")[1])
        note = "%.1f MiB/s" % (size / (median * 1e-9) / (1 << 20))
    elif name.startswith("BM_FfiboxCallCosPipelined/") or name == "BM_FfiboxCallAdd":
        note = "%.0f calls/s" % (1e9 / median)
    elif name.startswith("BM_FfiboxCallAddBatched/"):
        size = int(name.split("/")[1])
        note = "%.0f calls/s" % (size * 1e9 / median)
    elif name == "BM_FfiboxCallbackRoundTrip":
        note = "call + 1 callback to the client"
    elif name == "BM_CgroupPerRequest":
        note = "the cgroup layer's work per request (broker CPU)"
    rows.append((name, median, min(times), max(times), note))
fields = sys.argv[2].split()
rows.append((fields[0], float(fields[1]), float(fields[4]), float(fields[7]),
             "stdlib ctypes, in-process"))

floor = next((median for name, median, *_ in rows if name == "BM_CrossProcessRoundTrip"), None)
header = ("benchmark", "median ns/op", "min", "max", "x floor", "note")
print("%-30s %13s %12s %12s %9s  %s" % header)
print("%-30s %13s %12s %12s %9s  %s" % ("-" * 30, "-" * 13, "-" * 12, "-" * 12, "-" * 9, "-" * 16))
for name, median, low, high, note in rows:
    ratio = "%9.3g" % (median / floor) if floor else "%9s" % "n/a"
    print("%-30s %13.1f %12.1f %12.1f %s  %s" % (name, median, low, high, ratio, note))
PY
