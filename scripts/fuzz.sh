#!/usr/bin/env bash
# Builds ffibox's libFuzzer targets (fuzz/*_fuzzer.cc) with clang and runs each for SECONDS
# (default 60) on a fresh copy of its seed corpus (fuzz/corpus/<target>/). Needs no Bazel:
# the protobuf sources are generated with Debian's protoc into .fuzz-build/, which also
# holds the objects, the binaries, the working corpora, the logs and any findings. Rebuilds
# only what changed. Ends with "N passed, M failed": a target passes when it ran its time,
# executing inputs, without a finding; one that does not build fails. Exits 1 when any failed.
# docs/fuzzing.md says what each target checks. `scripts/fuzz.sh --build-only` builds the
# targets and runs none (the test command builds them while its Python tests run).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

build_only=false
if [ "${1:-}" = "--build-only" ]; then
  build_only=true
  shift
fi
seconds=${1:-60}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
  echo "usage: scripts/fuzz.sh [--build-only] [SECONDS]   (seconds per target, default 60)" >&2
  exit 2
fi

CXX=${CXX:-clang++-14}
build=.fuzz-build
jobs=$(nproc 2>/dev/null || echo 2)
# shellcheck disable=SC2054  # the commas belong to -fsanitize=
CXXFLAGS=(-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
  -Wall -Wno-sign-compare -I. -I"$build/gen")
# protoc's generated code is protobuf's, not ours: compiled with coverage for the fuzzer but
# without the sanitizers and debug information, which make it take four times as long.
GENERATED_CXXFLAGS=(-std=c++17 -O1 -fsanitize=fuzzer-no-link -I. -I"$build/gen")

# The libraries the fuzzers link, as Bazel links them (third_party/libraries.bzl).
mapfile -t absl_libs < <(sed -n '/^ABSL_LIBRARIES = \[/,/^\]/p' third_party/libraries.bzl |
  grep -o '"absl_[^"]*"' | tr -d '"' | sed 's/^/-l/')
if [[ "${#absl_libs[@]}" -eq 0 ]]; then
  echo "fuzz.sh: no Abseil libraries found in third_party/libraries.bzl" >&2
  exit 1
fi
LIBS=(-lprotobuf "${absl_libs[@]}" -lffi -lpthread)

# What each target is built from, besides fuzz/<target>.cc and the generated protobuf code.
declare -A SOURCES=(
  [request_validation_fuzzer]="fuzz/proto_mutator.cc server/broker/request_validation.cc server/broker/call_validation.cc
    server/broker/handle_table.cc core/call_answer.cc core/call_shape.cc core/types.cc
    core/layout.cc core/errors.cc core/encoding_limits.cc core/piece_stream.cc
    core/malloc_tuning.cc"
  [worker_frame_fuzzer]="fuzz/proto_mutator.cc server/broker/worker_reply.cc core/encoding_limits.cc core/call_answer.cc core/call_shape.cc
    core/piece_stream.cc core/malloc_tuning.cc core/types.cc
    core/layout.cc core/errors.cc"
  [marshal_fuzzer]="fuzz/proto_mutator.cc fuzz/typed_values.cc core/marshal.cc core/blocks.cc
    core/arena.cc core/safe_memory.cc core/utf8.cc core/ffi_types.cc core/types.cc core/layout.cc
    core/errors.cc core/malloc_tuning.cc"
  [call_fuzzer]="fuzz/proto_mutator.cc core/call.cc core/call_shape.cc core/marshal.cc core/blocks.cc core/arena.cc
    core/safe_memory.cc core/utf8.cc core/ffi_types.cc core/types.cc core/layout.cc core/errors.cc
    server/worker/memory_requests.cc server/broker/request_validation.cc server/broker/worker_reply.cc
    core/encoding_limits.cc core/call_answer.cc core/piece_stream.cc core/malloc_tuning.cc
    core/scalar_wire.cc"
  [c_declaration_fuzzer]="core/c_declaration.cc core/types.cc core/errors.cc"
)
TARGETS=(request_validation_fuzzer worker_frame_fuzzer marshal_fuzzer call_fuzzer
  c_declaration_fuzzer)
PROTO_SOURCES=("$build/gen/ffibox/v1/ffibox.pb.cc" "$build/gen/server/protocol/worker_protocol.pb.cc")

./scripts/install-deps.sh || {
  echo "0 passed, ${#TARGETS[@]} failed"
  exit 1
}
if ! command -v "$CXX" >/dev/null || ! command -v protoc >/dev/null; then
  echo "error: $CXX and protoc are needed (sudo ./scripts/install-deps.sh)" >&2
  echo "0 passed, ${#TARGETS[@]} failed"
  exit 1
fi

mkdir -p "$build/gen" "$build/obj" "$build/bin"

# Objects built with other flags or another compiler are stale.
stamp="$build/obj/flags"
if [ "$(cat "$stamp" 2>/dev/null)" != "$CXX ${CXXFLAGS[*]} ${GENERATED_CXXFLAGS[*]}" ]; then
  rm -rf "${build:?}/obj" "${build:?}/bin"
  mkdir -p "$build/obj" "$build/bin"
  echo "$CXX ${CXXFLAGS[*]} ${GENERATED_CXXFLAGS[*]}" >"$stamp"
fi

# newer_than OUT FILE...: whether OUT is missing or older than any FILE.
newer_than() {
  local out=$1
  shift
  [ -e "$out" ] || return 0
  local f
  for f in "$@"; do
    [ "$f" -nt "$out" ] && return 0
  done
  return 1
}

generate_protos() {
  if newer_than "$build/gen/ffibox/v1/ffibox.pb.cc" proto/ffibox/v1/ffibox.proto; then
    protoc --proto_path=proto --cpp_out="$build/gen" proto/ffibox/v1/ffibox.proto || return 1
  fi
  if newer_than "$build/gen/server/protocol/worker_protocol.pb.cc" server/protocol/worker_protocol.proto \
    proto/ffibox/v1/ffibox.proto; then
    protoc --proto_path=. --proto_path=proto --cpp_out="$build/gen" \
      server/protocol/worker_protocol.proto || return 1
  fi
}

object_of() {
  local src=${1#"$build/gen/"}
  echo "$build/obj/${src%.cc}.o"
}

# Whether the object of SOURCE is missing or older than the source or a header it included
# when it was last compiled (the compiler's -MMD list).
object_is_stale() {
  local src=$1 obj
  obj=$(object_of "$src")
  [ -e "$obj" ] && [ -e "${obj%.o}.d" ] || return 0
  local deps
  deps=$(sed -e 's/\\$//' -e 's/^[^:]*://' "${obj%.o}.d")
  # shellcheck disable=SC2086  # one word per dependency
  newer_than "$obj" $deps
}

compile() {
  local src=$1 obj
  obj=$(object_of "$src")
  mkdir -p "$(dirname "$obj")"
  local flags=("${CXXFLAGS[@]}")
  [[ "$src" == "$build/gen/"* ]] && flags=("${GENERATED_CXXFLAGS[@]}")
  if ! "$CXX" "${flags[@]}" -MMD -MF "${obj%.o}.d" -c "$src" -o "$obj" \
    >"${obj%.o}.log" 2>&1; then
    rm -f "$obj"
    echo "compile failed: $src" >&2
    head -40 "${obj%.o}.log" >&2
    return 1
  fi
}

# Compiles every stale object, `jobs` at a time. Failures show up as missing objects.
build_objects() {
  local sources=("$@") src running=0
  for src in "${sources[@]}"; do
    object_is_stale "$src" || continue
    echo "compiling $src" >&2
    compile "$src" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
      wait -n
      running=$((running - 1))
    fi
  done
  wait
}

link_target() {
  local target=$1 objects=() src
  for src in "fuzz/$target.cc" ${SOURCES[$target]} "${PROTO_SOURCES[@]}"; do
    objects+=("$(object_of "$src")")
  done
  for obj in "${objects[@]}"; do
    [ -e "$obj" ] || return 1
  done
  local bin="$build/bin/$target"
  newer_than "$bin" "${objects[@]}" || return 0
  echo "linking $target" >&2
  if ! "$CXX" "${CXXFLAGS[@]}" "${objects[@]}" -o "$bin" "${LIBS[@]}" >"$bin.log" 2>&1; then
    rm -f "$bin"
    echo "link failed: $target" >&2
    head -40 "$bin.log" >&2
    return 1
  fi
}

# run_target TARGET: fuzzes for `seconds` on the working corpus; returns 1 on a finding.
run_target() {
  local target=$1
  local corpus="$build/corpus/$target" findings="$build/findings/$target"
  local log="$build/logs/$target.log"
  # Each run starts from the seeds: a corpus kept across runs grows without bound.
  rm -rf "$corpus"
  mkdir -p "$corpus" "$findings" "$build/logs"
  if [ -d "fuzz/corpus/$target" ]; then
    cp -p "fuzz/corpus/$target"/* "$corpus"/ 2>/dev/null
  fi
  local flags=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
    -artifact_prefix="$findings/" -print_final_stats=1)
  [ -f "fuzz/$target.dict" ] && flags+=(-dict="fuzz/$target.dict")
  local before
  before=$(find "$findings" -type f | wc -l)
  "$build/bin/$target" "${flags[@]}" "$corpus" >"$log" 2>&1
  local status=$?
  local runs
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
  if [ "$status" -eq 0 ] && [ "${runs:-0}" -gt 0 ]; then
    echo "$target: ran ${seconds}s, ${runs} inputs, no finding"
    return 0
  fi
  if [ "$status" -eq 0 ]; then
    # A run that executed nothing tested nothing.
    echo "$target: ran no input (log $log)"
    return 1
  fi
  echo "$target: FINDING (exit $status; log $log)"
  find "$findings" -type f -newer "$log.start" 2>/dev/null | sed 's/^/  input: /'
  [ "$(find "$findings" -type f | wc -l)" -gt "$before" ] ||
    echo "  (no input was saved; see the log)"
  # The report: from the first line that names the problem.
  local first
  first=$(grep -n -m1 -E 'FUZZ CHECK FAILED|runtime error|==[0-9]+==ERROR' "$log" | cut -d: -f1)
  [ -n "$first" ] || first=$(grep -n -m1 -E 'ERROR|deadly signal|timeout' "$log" | cut -d: -f1)
  tail -n "+${first:-1}" "$log" | head -25 | sed 's/^/  | /'
  return 1
}

passed=0
failed=0
all_sources=()
for target in "${TARGETS[@]}"; do
  # shellcheck disable=SC2206  # word lists
  all_sources+=("fuzz/$target.cc" ${SOURCES[$target]})
done
mapfile -t all_sources < <(printf '%s\n' "${all_sources[@]}" "${PROTO_SOURCES[@]}" | sort -u)

if ! generate_protos; then
  echo "protoc failed" >&2
  echo "0 passed, ${#TARGETS[@]} failed"
  exit 1
fi
build_objects "${all_sources[@]}"

for target in "${TARGETS[@]}"; do
  if ! link_target "$target"; then
    echo "$target: BUILD FAILED"
    failed=$((failed + 1))
    continue
  fi
  [ "$build_only" = true ] && continue
  mkdir -p "$build/logs"
  touch "$build/logs/$target.log.start"
  if run_target "$target"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done

if [ "$build_only" = true ]; then
  echo "built; ${failed} failed to build"
else
  echo "${passed} passed, ${failed} failed"
fi
[ "$failed" -eq 0 ]
