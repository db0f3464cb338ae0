#!/usr/bin/env bash
# Profiles one call_bench benchmark with `perf record -g` across everything it runs (the bench
# process, the ffiboxd it starts and that server's workers: perf follows child processes) and
# prints where the CPU time goes per process and kind of work (bench/perf_breakdown.py).
#
# Usage: ./bench/profile.sh BENCHMARK_REGEX [SECONDS] [perf_breakdown.py arguments...]
#   e.g. ./bench/profile.sh '^BM_FfiboxCallCos/' 5
#        ./bench/profile.sh '^BM_BareGrpcRoundTrip/' 5 --threads
# Builds like bench/run.sh (BAZEL names the bazel command). Sampling starts 3 s after the
# start, past the servers' start-up and Google Benchmark's sizing runs; the benchmark then
# runs for SECONDS (default 5). cpu-clock sampling at 2 kHz works without hardware counters
# (virtual machines). Leaves the profile in /tmp/ffibox-profile.<pid>/ for perf report.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
  echo "usage: $0 BENCHMARK_REGEX [SECONDS] [perf_breakdown.py arguments...]" >&2
  exit 2
fi
filter="$1"
seconds="${2:-5}"
shift $(($# < 2 ? $# : 2))

${BAZEL:-bazel} build //bench:call_bench //server:ffiboxd //server:ffibox-worker \
  //tests/testlibs:libffibox_test.so
out="/tmp/ffibox-profile.$$"
mkdir -p "$out"
perf record -e cpu-clock -F 2000 -g -D 3000 -o "$out/perf.data" -- \
  bazel-bin/bench/call_bench --benchmark_filter="$filter" --benchmark_min_time="$seconds" \
  --benchmark_out="$out/result.json" --benchmark_out_format=json
op_ns="$(/usr/bin/python3 - "$out/result.json" <<'PY'
import sys
sys.path.insert(0, "bench")
import results
measured = [r.median for r in results.load(sys.argv[1]).values() if r.median]
print(measured[-1] if len(measured) == 1 else "")
PY
)"
echo
/usr/bin/python3 bench/perf_breakdown.py "$out/perf.data" ${op_ns:+--op-ns "$op_ns"} "$@"
echo
echo "profile: $out/perf.data (perf report -i $out/perf.data)"
