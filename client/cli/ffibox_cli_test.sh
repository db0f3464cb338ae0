#!/bin/bash
# The ffibox CLI against a real ffiboxd: printed results, typed errors and exit codes; its
# TLS and token flags against a TCP listener with mutual TLS; and its refusal of a socket
# another user squats.
set -u

runfiles="${TEST_SRCDIR}/ffibox"
ffibox="${runfiles}/client/cli/ffibox"
ffiboxd="${runfiles}/server/ffiboxd"
lib="${runfiles}/tests/testlibs/libffibox_test.so"
squatter="${runfiles}/tests/support/unix_squatter"

dir="$(mktemp -d /tmp/ffibox-cli-test.XXXXXX)"
socket="${dir}/ffiboxd.sock"
"${ffiboxd}" --listen="unix:${socket}" --worker="${runfiles}/server/ffibox-worker" \
  --allow_root="$(dirname "$(realpath "${lib}")")" \
  >"${dir}/stdout" 2>"${dir}/stderr" &
server=$!
tls_server=""
squatter_pid=""
squat_dir=""
cleanup() {
  kill -TERM "${server}" ${tls_server} 2>/dev/null
  wait "${server}" ${tls_server} 2>/dev/null
  if [[ -n "${squatter_pid}" ]]; then
    kill -KILL "${squatter_pid}" 2>/dev/null
    wait "${squatter_pid}" 2>/dev/null
  fi
  rm -rf "${dir}" "${squat_dir}"
}
trap cleanup EXIT
for _ in $(seq 1 500); do
  [[ -S "${socket}" ]] && grep -q "listening" "${dir}/stdout" && break
  sleep 0.02
done

failures=0
# The server `expect` talks to.
address="unix:${socket}"
# expect EXIT_CODE EXPECTED_STDOUT ARGS... ; stderr must start with "error: " on failure.
expect() {
  local want_code="$1" want_out="$2"
  shift 2
  local out code
  out="$("${ffibox}" --address="${address}" "$@" 2>"${dir}/err")"
  code=$?
  if [[ "${code}" != "${want_code}" || "${out}" != "${want_out}" ]]; then
    echo "FAIL: ffibox $*: exit ${code} (want ${want_code}), stdout '${out}' (want" \
      "'${want_out}'), stderr: $(cat "${dir}/err")"
    failures=$((failures + 1))
  fi
  if [[ "${want_code}" != 0 ]] && ! grep -q '^error: \|^usage: ' "${dir}/err"; then
    echo "FAIL: ffibox $*: no error line on stderr: $(cat "${dir}/err")"
    failures=$((failures + 1))
  fi
}
# expect_error CODE_NAME ARGS... : exit 1 with "error: CODE_NAME: ..." on stderr.
expect_error() {
  local code_name="$1"
  shift
  expect 1 "" "$@"
  if ! grep -q "^error: ${code_name}: " "${dir}/err"; then
    echo "FAIL: ffibox $*: want error ${code_name}, got: $(cat "${dir}/err")"
    failures=$((failures + 1))
  fi
}

expect 0 "0.87758256189037276" call libm.so.6 'double cos(double)' 0.5
# What the library prints reaches the caller's stdout, before the result.
expect 0 $'printed by the library\n23' call libc.so.6 \
  'long write(int, const char*, unsigned long)' 1 $'printed by the library\n' 23
expect 0 "0" --require_jail=all call "${lib}" 'int add_int(int a, int b)' 0 0
# A name that is no layer is refused as such, not reported as a layer the server lacks: a
# bad command line (exit 2), naming the flag.
expect 2 "" --require_jail=filesystem,teleportation call libm.so.6 'double cos(double)' 0.5
if ! grep -q "^error: INVALID_ARGUMENT: --require_jail: no jail layer is called 'teleportation'" \
  "${dir}/err"; then
  echo "FAIL: --require_jail=teleportation: $(cat "${dir}/err")"
  failures=$((failures + 1))
fi
expect 0 "-5" call "${lib}" 'int add_int(int a, int b)' -2 -3
expect 0 "44" call "${lib}" 'unsigned char add_uchar(unsigned char, unsigned char)' 200 100
expect 0 "18446744073709551614" call "${lib}" \
  'unsigned long long add_ulonglong(unsigned long long, unsigned long long)' \
  18446744073709551615 18446744073709551615
expect 0 "'b'" call "${lib}" 'char next_char(char)' a
expect 0 "true" call "${lib}" '_Bool is_even(int)' 4
expect 0 "3.75" call "${lib}" 'float mul_float(float, float)' 1.5 2.5
expect 0 "2.5" call "${lib}" 'long double ld_half(long double)' 5
expect 0 "55" call "${lib}" 'int sum_ints(int, int, int, int, int, int, int, int, int, int)' \
  1 2 3 4 5 6 7 8 9 10
expect 0 '"hello, ffibox"' call "${lib}" 'const char* greeting(void)'
expect 0 '"ABC"' call "${lib}" 'char *str_dup_upper(const char *s)' abc
expect 0 "5" call "${lib}" 'size_t str_len(const char*)' hello
# NULL is a null pointer for strings too; \NULL the text.
expect 0 "4" call "${lib}" 'size_t str_len(const char*)' '\NULL'
expect 0 $'[(null)]\n9' call libc.so.6 'int printf(const char*, ...)' $'[%s]\n' 'char*:NULL'
expect 0 '"error:0480006C:lib(9)::reason(108)"' call libcrypto.so.3 \
  'char* ERR_error_string(unsigned long, char*)' 0x0480006C NULL
expect 0 'L"héllo 世界"' call "${lib}" 'const wchar_t* wgreeting(void)'
# A lone surrogate (which no text carries: the worker sends the string's address) and a
# unit past U+10FFFF are escaped by their code points, as ctypes keeps them in the str.
expect 0 'L"A\ud800B"' call "${lib}" 'const wchar_t* odd_wide(int)' 0
expect 0 'L"A\U00110000B"' call "${lib}" 'const wchar_t* odd_wide(int)' 1
expect 0 "NULL" call "${lib}" 'const char* null_string(void)'
expect 0 "0x1005" call "${lib}" 'void* ptr_offset(void*, long)' 0x1000 5
expect 0 "6" call "${lib}" 'int sum_variadic(int, ...)' 3 int:1 int:2 short:3
expect 0 "1" call "${lib}" 'int sleep_ms(int)' 1
expect 0 $'-1\nerrno 7' --print_errno call "${lib}" 'int set_errno_to(int)' 7

expect_error WORKER_CRASHED call "${lib}" 'int crash_null_deref(void)'
grep -q "signal=11" "${dir}/err" || { echo "FAIL: no signal=11: $(cat "${dir}/err")"; failures=$((failures + 1)); }
expect_error WORKER_CRASHED call "${lib}" 'int crash_abort(void)'
expect_error WORKER_CRASHED call "${lib}" 'int crash_exit3(void)'
grep -q "exit_code=3" "${dir}/err" || { echo "FAIL: no exit_code=3: $(cat "${dir}/err")"; failures=$((failures + 1)); }
expect_error CALL_TIMEOUT --timeout_ms=200 call "${lib}" 'int hang_forever(void)'
expect_error SYMBOL_NOT_FOUND call "${lib}" 'int no_such_function(void)'
# The load, the resolve and the call are pipelined: a failed load is still what is reported.
expect_error LIBRARY_LOAD_FAILED call /nonexistent/libnope.so 'int f(void)'
grep -q 'No such file' "${dir}/err" || { echo "FAIL: no reason: $(cat "${dir}/err")"; failures=$((failures + 1)); }
expect_error LIBRARY_LOAD_FAILED call /usr/lib/x86_64-linux-gnu/libc.so 'int getpid(void)'

expect 2 "" call "${lib}" 'int add_int(int, int)' 1
expect 2 "" call "${lib}" 'int add_int(int, int' 1 2
expect 2 "" call "${lib}" 'int add_int(int, int)' 1 two
expect 2 "" frobnicate
grep -q "^error: unknown command 'frobnicate'" "${dir}/err" || { echo "FAIL: frobnicate not named: $(cat "${dir}/err")"; failures=$((failures + 1)); }
expect 2 ""
grep -q "^error: no command given" "${dir}/err" || { echo "FAIL: no command not said: $(cat "${dir}/err")"; failures=$((failures + 1)); }
expect 2 "" call "${lib}"
grep -q "^error: call needs a library and a declaration" "${dir}/err" || { echo "FAIL: short call not said: $(cat "${dir}/err")"; failures=$((failures + 1)); }
expect 2 "" call '' 'int f(void)'
expect 2 "" --timeout_ms=-5 call "${lib}" 'int add_int(int, int)' 1 2
expect 2 "" --timeout_ms=99999999999999 call "${lib}" 'int add_int(int, int)' 1 2
# Flags absl's parser refuses (an unknown one, a value that is not a number, a missing
# value) exit 2 like any bad command line, naming the word.
expect 2 "" --bogus call "${lib}" 'int add_int(int, int)' 1 2
grep -q "unknown flag '--bogus'" "${dir}/err" || { echo "FAIL: --bogus not named: $(cat "${dir}/err")"; failures=$((failures + 1)); }
expect 2 "" --timeout_ms=abc call "${lib}" 'int add_int(int, int)' 1 2
expect 2 "" --timeout_ms call "${lib}" 'int add_int(int, int)' 1 2
expect 0 "3" --print_errno=false call "${lib}" 'int add_int(int, int)' 1 2
# --help and -h print the usage those errors point at, and the flags, on stdout; exit 0; after
# `call` too.
for help in --help -h "call --help"; do
  # shellcheck disable=SC2086
  out="$("${ffibox}" ${help} 2>"${dir}/err")"
  code=$?
  if [[ "${code}" != 0 || "${out}" != "call a function of a native library"* ||
    "${out}" != *"call LIB 'DECLARATION'"* || "${out}" != *"usage: ffibox bindgen"* ||
    "${out}" != *"--timeout_ms "*"deadline of the call in milliseconds"* || -s "${dir}/err" ]]; then
    echo "FAIL: ffibox ${help}: exit ${code}, stdout '${out}', stderr: $(cat "${dir}/err")"
    failures=$((failures + 1))
  fi
done
# An integer past 64 bits is out of range for its type, as a smaller one too large is.
for number in 99999999999999999999999 18446744073709551616; do
  expect 2 "" call "${lib}" 'long add_long(long, long)' "${number}" 1
  grep -q "^error: INVALID_ARGUMENT: argument 1: '${number}' is not a valid long: out of range" \
    "${dir}/err" || { echo "FAIL: ${number}: $(cat "${dir}/err")"; failures=$((failures + 1)); }
done
# The files of --token_file, --tls_ca, ... are read up to 1 MiB: one that never ends is a bad
# command line, not read until memory runs out.
out="$(timeout 60 "${ffibox}" --address="${address}" --token_file=/dev/zero \
  call libm.so.6 'double cos(double)' 0.5 2>"${dir}/err")"
code=$?
if [[ "${code}" != 2 || -n "${out}" ]] ||
  ! grep -q "^error: INVALID_ARGUMENT: --token_file: /dev/zero is larger than 1 MiB" "${dir}/err"; then
  echo "FAIL: --token_file=/dev/zero: exit ${code}, stdout '${out}', stderr: $(cat "${dir}/err")"
  failures=$((failures + 1))
fi

# What the CLI prints and cannot write (stdout on a full disk, or closed) is a failure said on
# stderr (exit 1), not a result lost behind exit 0. A closed stdout stays closed to writes
# (EBADF), rather than its number going to a descriptor gRPC opens.
# expect_unwritten WHAT ARGS... : `ffibox ARGS...` fails so, saying it cannot write WHAT.
expect_unwritten() {
  local what="$1"
  shift
  local code reason
  for stdout in full closed; do
    if [[ "${stdout}" == full ]]; then
      "${ffibox}" "$@" >/dev/full 2>"${dir}/err"
      code=$?
      reason="No space left on device"
    else
      "${ffibox}" "$@" >&- 2>"${dir}/err"
      code=$?
      reason="Bad file descriptor"
    fi
    if [[ "${code}" != 1 ]] ||
      ! grep -q "^error: cannot write ${what} to stdout: ${reason}$" "${dir}/err"; then
      echo "FAIL: ffibox $* with stdout ${stdout}: exit ${code} (want 1), stderr: $(cat "${dir}/err")"
      failures=$((failures + 1))
    fi
  done
}
expect_unwritten "the result" --address="${address}" call libm.so.6 'double cos(double)' 0.5
expect_unwritten "the result" --address="${address}" --print_errno call "${lib}" \
  'int set_errno_to(int)' 7
echo 'int twice(int x);' >"${dir}/twice.h"
expect_unwritten "the bindings" bindgen --lang=python --library=libtwice.so "${dir}/twice.h"
expect_unwritten "the usage" --help
# A number that does not fit its type is refused, not sent as an infinity or a zero.
expect 2 "" call libm.so.6 'double cos(double)' 1e999
expect 2 "" call "${lib}" 'float mul_float(float, float)' 1e40 1
# A message quoting bytes that are not UTF-8 arrives once and whole, without protobuf's
# complaints about them.
expect 2 "" call "${lib}" 'size_t wstr_len(const wchar_t*)' $'\xff'
if [[ "$(cat "${dir}/err")" != "error: INVALID_ARGUMENT: argument 1: '\\xff' is not a valid"* ]]; then
  echo "FAIL: the message of a non-UTF-8 argument: $(cat "${dir}/err")"
  failures=$((failures + 1))
fi

# The server is still serving after all of the above.
expect 0 "3" call "${lib}" 'int add_int(int, int)' 1 2

# TLS and tokens: a TCP listener with mutual TLS (certificates made here with openssl) and
# an identity with a token and a client certificate name.
tls="${dir}/tls"
mkdir -p "${tls}"
token="cli-test-token-0123456789abcdef"
make_certificates() {
  local key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  cd "${tls}" || return 1
  # shellcheck disable=SC2086
  openssl req -x509 ${key} -keyout ca.key -out ca.pem -days 2 -subj /CN=cli-test-ca &&
    echo "subjectAltName=DNS:localhost,IP:127.0.0.1" >server.ext &&
    openssl req ${key} -keyout server.key -out server.csr -subj /CN=localhost &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -out server.pem -extfile server.ext &&
    echo "extendedKeyUsage=clientAuth" >client.ext &&
    openssl req ${key} -keyout client.key -out client.csr -subj /CN=cli.client &&
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -out client.pem -extfile client.ext
}
if ! (make_certificates) >"${tls}/openssl.log" 2>&1; then
  echo "FAIL: openssl could not make the certificates: $(cat "${tls}/openssl.log")"
  failures=$((failures + 1))
else
  printf '  %s\n' "${token}" >"${tls}/token"
  cat >"${tls}/ffiboxd.conf" <<EOF
listeners {
  tcp_address: "127.0.0.1:0"
  tls { cert_file: "${tls}/server.pem" key_file: "${tls}/server.key" client_ca_file: "${tls}/ca.pem" }
}
identities { name: "cli" token_file: "${tls}/token" client_cert_name: "cli.client" }
EOF
  "${ffiboxd}" --config="${tls}/ffiboxd.conf" --worker="${runfiles}/server/ffibox-worker" \
    --pool_size=0 >"${tls}/stdout" 2>"${tls}/stderr" &
  tls_server=$!
  for _ in $(seq 1 500); do
    grep -q "(mutual TLS)" "${tls}/stdout" && break
    sleep 0.02
  done
  # "ffiboxd listening on 127.0.0.1:PORT (mutual TLS)"
  address="$(sed -n 's/^ffiboxd listening on \(127\.0\.0\.1:[0-9]*\) (mutual TLS)$/\1/p' \
    "${tls}/stdout")"
  if [[ -z "${address}" ]]; then
    echo "FAIL: the TLS server did not start: $(cat "${tls}/stdout" "${tls}/stderr")"
    failures=$((failures + 1))
  fi
  client=(--tls_ca="${tls}/ca.pem" --tls_cert="${tls}/client.pem" --tls_key="${tls}/client.key")
  expect 0 "0.87758256189037276" "${client[@]}" --token_file="${tls}/token" \
    call libm.so.6 'double cos(double)' 0.5
  expect 0 "2" "${client[@]}" --token="${token}" call libc.so.6 'int abs(int)' -2
  # The worker's output events reach the caller over TCP as over the unix socket.
  expect 0 $'over tls\n9' "${client[@]}" --token="${token}" call libc.so.6 \
    'long write(int, const char*, unsigned long)' 1 $'over tls\n' 9
  expect 0 "2" "${client[@]}" --token="${token}" --tls_server_name=localhost \
    call libc.so.6 'int abs(int)' -2
  # Refusals: no token; a wrong token; no client certificate (the handshake fails); the
  # server's certificate checked against the system's CAs only, or for another name.
  expect_error UNAUTHENTICATED "${client[@]}" call libm.so.6 'double cos(double)' 0.5
  expect_error UNAUTHENTICATED "${client[@]}" --token=wrong-token-0123456789 \
    call libm.so.6 'double cos(double)' 0.5
  expect_error UNAVAILABLE --tls_ca="${tls}/ca.pem" --token="${token}" \
    call libm.so.6 'double cos(double)' 0.5
  expect_error UNAVAILABLE --tls --tls_cert="${tls}/client.pem" --tls_key="${tls}/client.key" \
    --token="${token}" call libm.so.6 'double cos(double)' 0.5
  expect_error UNAVAILABLE "${client[@]}" --token="${token}" --tls_server_name=elsewhere.example \
    call libm.so.6 'double cos(double)' 0.5
  # A token is never sent over plaintext TCP: refused before connecting.
  expect_error INVALID_ARGUMENT --token="${token}" call libm.so.6 'double cos(double)' 0.5
  if ! grep -q "only over TLS" "${dir}/err" || grep -q -- "${token}" "${dir}/err"; then
    echo "FAIL: a token without TLS: want a refusal not printing it: $(cat "${dir}/err")"
    failures=$((failures + 1))
  fi
  # Without TLS the CLI speaks plaintext, which a TLS listener does not answer.
  expect_error UNAVAILABLE call libm.so.6 'double cos(double)' 0.5
  # Bad flags: exit 2 before anything is sent.
  expect 2 "" --tls_cert="${tls}/client.pem" call libm.so.6 'double cos(double)' 0.5
  expect 2 "" --tls_ca="${tls}/missing.pem" call libm.so.6 'double cos(double)' 0.5
  expect 2 "" --token=a --token_file="${tls}/token" call libm.so.6 'double cos(double)' 0.5
  address="unix:${socket}"
fi

# Squatters: another user (nobody) stands where the CLI expects ffiboxd. The CLI refuses with
# the path and the owner, and sends nothing. Acting as nobody needs root.
# squat ARGS... : starts unix_squatter on ${squat_dir}/ffiboxd.sock with ARGS.
squat() {
  "${squatter}" --socket="${squat_dir}/ffiboxd.sock" "$@" >"${dir}/squatter.out" 2>&1 &
  squatter_pid=$!
  for _ in $(seq 1 500); do
    grep -q "listening" "${dir}/squatter.out" && break
    sleep 0.02
  done
}
unsquat() {
  kill -KILL "${squatter_pid}" 2>/dev/null
  wait "${squatter_pid}" 2>/dev/null
  squatter_pid=""
  rm -rf "${squat_dir}"
}
# expect_refused WANT_STDERR_PREFIX ARGS... : exit 1, stderr starts with the prefix, and the
# squatter received no byte (a probe connection of the client's own check carries none).
expect_refused() {
  local want="$1"
  shift
  local out code
  out="$("${ffibox}" "$@" call libm.so.6 'double cos(double)' 0.5 2>"${dir}/err")"
  code=$?
  if [[ "${code}" != 1 || -n "${out}" ]] || ! grep -qF -- "${want}" "${dir}/err"; then
    echo "FAIL: ffibox $* against a squatter: exit ${code}, stdout '${out}', stderr:" \
      "$(cat "${dir}/err") (want exit 1 and '${want}')"
    failures=$((failures + 1))
  fi
  local log="${dir}/squatter.out"
  for _ in $(seq 1 250); do
    [[ "$(grep -c accepted "${log}")" == "$(grep -c closed "${log}")" ]] && break
    sleep 0.02
  done
  if grep -q "received" "${log}"; then
    echo "FAIL: ffibox $*: the squatter received data: $(cat "${log}")"
    failures=$((failures + 1))
  fi
}
if [[ "$(id -u)" == 0 ]]; then
  # The directory is nobody's, as /tmp/ffibox-$UID would be if someone else made it first;
  # the address comes from FFIBOX_ADDRESS, as the default address would.
  squat_dir="$(mktemp -d /tmp/ffibox-cli-squat.XXXXXX)"
  chown 65534:65534 "${squat_dir}"
  squat --uid=65534
  squat_socket="${squat_dir}/ffiboxd.sock"
  FFIBOX_ADDRESS="unix:${squat_socket}" expect_refused \
    "error: PERMISSION_DENIED: refusing unix:${squat_socket}: directory ${squat_dir} is owned by uid 65534, not by you (root)"
  unsquat

  # The directory and the socket file are root's, but nobody listens on the socket.
  squat_dir="$(mktemp -d /tmp/ffibox-cli-squat.XXXXXX)"
  squat --uid=65534 --bind_first
  squat_socket="${squat_dir}/ffiboxd.sock"
  expect_refused \
    "error: PERMISSION_DENIED: refusing unix:${squat_socket}: the process listening on ${squat_socket} (pid ${squatter_pid}) runs as uid 65534, not as you (root)" \
    --address="unix:${squat_socket}"
  unsquat
else
  echo "skipping the squatter cases: they need root to act as another user"
fi

if [[ "${failures}" != 0 ]]; then
  echo "${failures} failure(s)"
  exit 1
fi
echo "all passed"
