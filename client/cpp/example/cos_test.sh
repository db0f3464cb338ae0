#!/bin/bash
# The README's C++ example against a real ffiboxd: its result, and a failure printed as the
# typed error (code and message), not the status with its binary payload.
set -u

runfiles="${TEST_SRCDIR}/ffibox"
cos="${runfiles}/client/cpp/example/cos"
ffiboxd="${runfiles}/server/ffiboxd"

dir="$(mktemp -d /tmp/ffibox-cos-test.XXXXXX)"
socket="${dir}/ffiboxd.sock"
servers=()
cleanup() {
  kill -TERM "${servers[@]}" 2>/dev/null
  wait "${servers[@]}" 2>/dev/null
  rm -rf "${dir}"
}
trap cleanup EXIT
# start_server NAME FLAGS...: ffiboxd on unix:${dir}/NAME.sock, its output in ${dir}/NAME.*;
# the test stops when it does not listen within 10 s.
start_server() {
  local name="$1"
  shift
  "${ffiboxd}" --listen="unix:${dir}/${name}.sock" --worker="${runfiles}/server/ffibox-worker" \
    "$@" >"${dir}/${name}.out" 2>"${dir}/${name}.err" &
  servers+=($!)
  for _ in $(seq 1 500); do
    [[ -S "${dir}/${name}.sock" ]] && grep -q "listening" "${dir}/${name}.out" && return
    sleep 0.02
  done
  echo "FAIL: ffiboxd ${name} did not start: $(cat "${dir}/${name}.err")"
  exit 1
}
start_server ffiboxd

failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

out="$("${cos}" 0.5 "unix:${socket}" 2>"${dir}/err")"
code=$?
[[ "${code}" == 0 && "${out}" == "0.87758256189037276" ]] ||
  fail "cos 0.5: exit ${code}, stdout '${out}', stderr: $(cat "${dir}/err")"

# expect_failure WHAT PATTERN ARGS...: exit 1, nothing on stdout, and one printable line on
# stderr that matches PATTERN.
expect_failure() {
  local what="$1" pattern="$2"
  shift 2
  local out code
  out="$("${cos}" "$@" 2>"${dir}/err")"
  code=$?
  [[ "${code}" == 1 && -z "${out}" ]] || fail "${what}: exit ${code}, stdout '${out}'"
  grep -q "${pattern}" "${dir}/err" || fail "${what}: stderr: $(cat -v "${dir}/err")"
  [[ "$(wc -l <"${dir}/err")" == 1 ]] || fail "${what}: not one line: $(cat -v "${dir}/err")"
  if LC_ALL=C grep -q '[^[:print:]]' "${dir}/err"; then
    fail "${what}: unprintable bytes in: $(cat -v "${dir}/err")"
  fi
}

expect_failure "no server" '^connect: UNAVAILABLE: no ffiboxd at ' 0.5 "unix:${dir}/nobody.sock"

# A server whose local clients may load only what lies in an empty directory: the load of
# libm is refused with a typed error that carries its details (the status payload).
mkdir "${dir}/roots"
cat >"${dir}/config.textproto" <<CONFIG
identities {
  name: "local"
  allowed_library_roots: "${dir}/roots"
}
CONFIG
start_server strict --config="${dir}/config.textproto"
expect_failure "not allowed" '^load: LIBRARY_NOT_ALLOWED: .*libm' 0.5 "unix:${dir}/strict.sock"

for args in "" "abc" "0.5x" "1e999"; do
  # shellcheck disable=SC2086
  "${cos}" ${args} >/dev/null 2>"${dir}/err"
  code=$?
  [[ "${code}" == 2 ]] && grep -q '^usage: ' "${dir}/err" || fail "cos '${args}': exit ${code}"
done

if [[ "${failures}" != 0 ]]; then
  echo "${failures} failed"
  exit 1
fi
echo "all passed"
