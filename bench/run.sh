#!/usr/bin/env bash
# Runs every ffibox benchmark in one go and prints ffibox beside its floors:
#   1. installs missing Debian packages, builds call_bench, ffiboxd and ffibox-worker;
#   2. runs bench/call_bench (which starts its own ffiboxd servers, from its runfiles, on
#      private sockets);
#   3. runs bench/ctypes_bench.py (stdlib ctypes, in-process) and bench/python_bench.py
#      (the same Python call through stdlib ctypes and through ffibox.ctypes);
#   4. merges the three reports and prints one table (bench/summary.py): every benchmark that
#      results are compared by (a missing one is printed as missing), wall-clock ns per
#      operation (median, fastest and slowest of the repetitions), the ratio of the medians to
#      the cross-process round trip, throughputs and counters; then the performance targets,
#      met or missed and by how much.
#
# Usage: ./bench/run.sh [--json=FILE] [--plots[=DIR]] [call_bench arguments...]
#   --json=FILE    write the merged report there: Google Benchmark's JSON (every repetition
#                  and the mean/median/stddev aggregates) with the Python benchmarks' entries
#                  in the same shape (bench/bench_json.py)
#   --plots[=DIR]  draw the plots with bench/plot.py into DIR (default docs/img); installs
#                  python3-matplotlib if it is missing
# Other arguments go to call_bench, e.g. ./bench/run.sh --benchmark_filter=Ffibox.
# BAZEL names the bazel command (default: bazel), e.g. BAZEL="bazel --output_user_root=/x".
# Leaves the shared Bazel server running (other sessions use it).
set -euo pipefail
cd "$(dirname "$0")/.."

json_out=""
plots_dir=""
call_bench_args=()
for arg in "$@"; do
  case "$arg" in
    --json=*) json_out="${arg#--json=}" ;;
    --plots) plots_dir="docs/img" ;;
    --plots=*) plots_dir="${arg#--plots=}" ;;
    *) call_bench_args+=("$arg") ;;
  esac
done

./scripts/install-deps.sh ${plots_dir:+--plots}
${BAZEL:-bazel} build //bench:call_bench //server:ffiboxd //server:ffibox-worker \
  //tests/testlibs:libffibox_test.so //proto:ffibox_py

scratch="$(mktemp -d /tmp/ffibox-bench-results.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
status=0

echo
echo "== bench/call_bench"
bazel-bin/bench/call_bench \
  --benchmark_min_time=0.5 \
  --benchmark_repetitions=5 \
  --benchmark_display_aggregates_only=true \
  --benchmark_out="$scratch/call_bench.json" \
  --benchmark_out_format=json \
  "${call_bench_args[@]}" || status=$?

echo
echo "== bench/ctypes_bench.py"
/usr/bin/python3 bench/ctypes_bench.py --json "$scratch/ctypes_bench.json" || status=$?

echo
echo "== bench/python_bench.py (the same calls: stdlib ctypes vs ffibox.ctypes)"
/usr/bin/python3 bench/python_bench.py --json "$scratch/python_bench.json" || status=$?

reports=()
for report in call_bench ctypes_bench python_bench; do
  if [ -s "$scratch/$report.json" ]; then
    reports+=("$scratch/$report.json")
  else
    echo "warning: $report wrote no results" >&2
  fi
done
if [ ${#reports[@]} -eq 0 ]; then
  echo "error: no benchmark wrote results" >&2
  exit 1
fi
merged="${json_out:-$scratch/merged.json}"

echo
/usr/bin/python3 bench/summary.py --json "$merged" "${reports[@]}"
if [ -n "$json_out" ]; then echo "merged report: $json_out"; fi

if [ -n "$plots_dir" ]; then
  echo
  /usr/bin/python3 bench/plot.py "$merged" --out-dir "$plots_dir"
fi
exit "$status"
