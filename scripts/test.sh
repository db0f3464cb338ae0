#!/usr/bin/env bash
# Runs every ffibox test: installs what is missing, builds, runs the Bazel test suite (unit
# and integration tests against real ffiboxd and worker processes), pyflakes over the Python
# code, the Python tests against a real ffiboxd, the Node client's tests, CPython's ctypes
# test suite against ffibox.ctypes, and the fuzz targets for a few seconds each. Ends with
# "N passed, M failed"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

SECONDS=0
# --plots: tests/python/test_bench_summary.py draws bench/plot.py's plots.
./scripts/install-deps.sh --plots || exit 1

passed=0
failed=0
# Where the time goes: each step's end, in seconds since the start, on stderr.
step_done() { echo "test.sh: $1 done at ${SECONDS} s" >&2; }
# Adds a step's counts (name, passed, failed); a step that ran no test is a failure.
count() {
  passed=$((passed + $2))
  failed=$((failed + $3))
  if [ "$2" -eq 0 ] && [ "$3" -eq 0 ]; then
    echo "$1 ran no test" >&2
    failed=$((failed + 1))
  fi
}
# Counts a step (name) whose output (the file) ends with "N passed, M failed", as this
# script's does.
count_summary() {
  if [[ "$(tail -1 "$2")" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    count "$1" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
  else
    echo "$1 ended without a count" >&2
    failed=$((failed + 1))
  fi
}
step_done "installing dependencies"
log=$(mktemp)
trap 'rm -f "$log"; bazel shutdown >/dev/null 2>&1 || true' EXIT

# Bazel: test cases counted from each target's JUnit XML (scripts/count_bazel_tests.py).
# Only what the tests need is built: the benchmarks are built by ./bench/run.sh (about a
# minute of this command's 20 on a 2-core machine).
bazel test //... --build_tests_only --test_output=errors 2>&1 | tee "$log"
bazel_status=${PIPESTATUS[0]}
read -r bazel_passed bazel_failed < <(/usr/bin/python3 scripts/count_bazel_tests.py "$log" ||
  echo "0 1")
passed=$((passed + bazel_passed))
failed=$((failed + bazel_failed))
if [ "$bazel_status" -ne 0 ] && [ "$bazel_failed" -eq 0 ]; then
  echo "bazel test failed (exit $bazel_status) before running tests" >&2
  failed=$((failed + 1))
fi
step_done "bazel test"

# The fuzzers (clang, a tree of their own) are built meanwhile at the lowest priority, on the
# CPU the Python and Node tests leave idle; their step at the end then only runs them.
fuzz_build_log=$(mktemp)
nice -n 19 ./scripts/fuzz.sh --build-only >"$fuzz_build_log" 2>&1 &
fuzz_build=$!

# pyflakes over the Python client and its tests (unused imports, undefined names): one check.
if pyflakes3 client/python tests/python; then
  passed=$((passed + 1))
else
  echo "pyflakes3 found problems in client/python or tests/python" >&2
  failed=$((failed + 1))
fi

# What the Python tests and the ctypes suite run against: stubs generated from the proto, a
# real ffiboxd and its worker, every test library.
bazel build //proto:ffibox_py //server:ffiboxd //server:ffibox-worker //tests/testlibs:all \
  >/dev/null 2>&1

# CPython's own ctypes test suite with ctypes swapped for ffibox.ctypes
# (tests/ctypes_suite/run.py; docs/python.md). It runs in the background, beside the Python
# tests (which wait on servers and workers more than they keep both CPUs busy), and its
# output is shown when it is counted below. It ends with the same "N passed, M failed" line
# as this script.
ctypes_log=$(mktemp)
ctypes_suite=""
if [ -d tests/ctypes_suite ]; then
  /usr/bin/python3 tests/ctypes_suite/run.py >"$ctypes_log" 2>&1 &
  ctypes_suite=$!
fi

# Python: the client's tests, talking to a real ffiboxd started by the tests. They wait on
# servers and workers more than they compute, so two processes (pytest-xdist; a file's tests
# stay in one process, with its fixtures) take about 60 % of one's time, beside the ctypes
# suite.
if [ -d tests/python ]; then
  /usr/bin/python3 -m pytest -q -p no:cacheprovider -rs -n 2 --dist loadfile tests/python 2>&1 |
    tee "$log"
  pytest_status=${PIPESTATUS[0]}
  # The counts of pytest's last line ("N passed, M skipped, K failed in T s"): a skipped test
  # is not a pass, and a run that failed without failing a test (a collection error) is one
  # failure.
  summary=$(tail -1 "$log")
  py_passed=$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)
  py_failed=$(grep -oE '[0-9]+ (failed|errors?|skipped|xpassed)' <<<"$summary" |
    awk '{s += $1} END {print s + 0}')
  if [ "$pytest_status" -ne 0 ] && [ "${py_failed:-0}" -eq 0 ]; then py_failed=1; fi
  count pytest "${py_passed:-0}" "${py_failed:-0}"
fi
step_done "pytest"

# Node: the client's node:test suite against a real ffiboxd started by the tests (client/node;
# npm test). The TAP reporter's summary gives "# pass N", "# fail M", "# cancelled", "# skipped"
# and "# todo".
if [ -d client/node ]; then
  bazel build //server:ffiboxd //server:ffibox-worker //tests/testlibs:all >/dev/null 2>&1
  (cd client/node && node --test --test-reporter=tap test/*.test.js) 2>&1 | tee "$log"
  node_status=${PIPESTATUS[0]}
  node_passed=$(grep -oE '^# pass [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  # A cancelled, skipped or todo test is not a pass.
  node_failed=0
  for outcome in fail cancelled skipped todo; do
    n=$(grep -oE "^# $outcome [0-9]+" "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
    node_failed=$((node_failed + ${n:-0}))
  done
  if [ "$node_status" -ne 0 ] && [ "$node_failed" -eq 0 ]; then node_failed=1; fi
  count "the Node tests" "${node_passed:-0}" "${node_failed}"
fi
step_done "node tests"

# libFuzzer targets over the untrusted inputs (docs/fuzzing.md), briefly: 3 s each here;
# `scripts/fuzz.sh 600` for a real run. Its last line is "N passed, M failed" too. It
# rebuilds whatever the background build above did not finish (a failure shows here).
wait "$fuzz_build"
rm -f "$fuzz_build_log"
./scripts/fuzz.sh 3 2>&1 | tee "$log"
count_summary "the fuzzers" "$log"
step_done "fuzzers"

if [ -n "$ctypes_suite" ]; then
  wait "$ctypes_suite"
  cat "$ctypes_log"
  count_summary "the ctypes suite runner" "$ctypes_log"
fi
rm -f "$ctypes_log"
step_done "ctypes suite"

echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
