#!/usr/bin/env bash
# Installs the Debian 12 packages ffibox builds and tests with. Idempotent and quick when
# everything is present: apt is only touched when a package is missing.
#   --plots        also what bench/plot.py draws with (python3-matplotlib and its
#                  dependencies: bench/run.sh --plots and the test suite, which draws the plots,
#                  ask for it; serving does not need it)
#   --server-only  only what building ffiboxd and ffibox-worker needs, no Node (the image
#                  build in deploy/Containerfile)
set -euo pipefail

# What `bazel build //server:ffiboxd //server:ffibox-worker` needs.
SERVER_PACKAGES=(
  bazel-bootstrap
  build-essential
  libffi-dev
  libgrpc++-dev
  libgrpc-dev
  grpc-proto               # health.proto and reflection.proto: ffiboxd serves both
  protobuf-compiler
  protobuf-compiler-grpc
  libprotobuf-dev
  libabsl-dev
  libseccomp-dev
  libcivetweb-dev          # ffiboxd --metrics_listen: the HTTP server Prometheus scrapes
)

# Everything the tests, the fuzzers, bindgen and the Python client need besides.
PACKAGES=(
  "${SERVER_PACKAGES[@]}"
  clang-14                 # scripts/fuzz.sh: libFuzzer targets with ASan and UBSan
  libclang-rt-14-dev       # (the sanitizer and libFuzzer runtimes; only recommended by clang)
  libfuzzer-14-dev
  openssl                  # throwaway CA and certificates in the TLS tests
  libgtest-dev
  libgmock-dev
  libbenchmark-dev
  libclang-14-dev          # ffibox bindgen parses C headers with libclang's C API
  zlib1g-dev               # real headers bindgen is tested on (tests/python/test_bindgen.py)
  libsqlite3-dev
  libsodium-dev            # (an umbrella header, records aligned beyond ctypes)
  python3-grpcio
  python3-protobuf
  python3-pytest
  python3-pytest-xdist     # scripts/test.sh runs the Python tests in two processes
  python3-pip              # pip install ./client/python, offline (docs/install.md): pip,
  python3-setuptools       # the build backend, bdist_wheel and venv, all from Debian
  python3-wheel
  python3-venv
  pyflakes3                # scripts/test.sh: unused imports and undefined names in Python
  libpython3.11-testsuite  # CPython's ctypes tests, run against ffibox by tests/ctypes_suite
  python3-magic            # real ctypes bindings run unmodified through the swap
  python3-libarchive-c     # (tests/python/test_debian_bindings.py)
  python3-ijson            # its yajl2 backend: a table of callbacks passed by pointer
  python3-freetype         # FreeType: a face whose glyph slot each load rewrites in place
  fonts-dejavu-core        # the font it renders
  python3-clang-14         # libclang: py_object client data for callbacks, handles by isinstance
  python3-pycryptodome     # its own C modules through ctypes; pythonapi named at import
  python3-numpy            # arrays passed by ndarray.ctypes.data_as (test_ctypes_conversions.py)
  aspell-en                # word lists in /var/lib/aspell behind /usr/lib/aspell's links (the jail shows both)
  procps
  systemd                  # systemd-analyze verifies the installed unit (tests/python/test_install.py)
  uidmap                   # newuidmap/newgidmap: an ordinary user's workers get subordinate ids
)

server_only=false
for arg in "$@"; do
  case "$arg" in
    --plots) PACKAGES+=(python3-matplotlib) ;;
    --server-only)
      PACKAGES=("${SERVER_PACKAGES[@]}")
      server_only=true
      ;;
    *)
      echo "usage: $0 [--plots] [--server-only]" >&2
      exit 2
      ;;
  esac
done

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# The Node client's tests need Node and npm; Debian's nodejs and npm unless a node is present.
if ! $server_only && ! command -v node >/dev/null; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -ne 0 ]; then
  echo "installing: ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing packages and not root; run as root or install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Node client's npm dependencies (client/node/package-lock.json), when node_modules is
# missing or older than the lock file: npm records what it installed in
# node_modules/.package-lock.json.
node_dir="$(dirname "$0")/../client/node"
if ! $server_only && [ -f "$node_dir/package-lock.json" ] &&
  { [ ! -f "$node_dir/node_modules/.package-lock.json" ] ||
    [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]; }; then
  echo "installing the Node client's dependencies (npm ci in client/node)" >&2
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || {
    echo "error: npm ci failed in client/node" >&2
    exit 1
  }
fi
