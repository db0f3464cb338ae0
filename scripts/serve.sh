#!/usr/bin/env bash
# Installs what is missing, builds ffibox, and runs ffiboxd in the foreground on its default
# address (or the one given with --listen=...; any ffiboxd flag may be passed, e.g.
# --config=FILE, see docs/configuration.md).
#
# Besides the system library directories, this development server allows the repository's
# test libraries (bazel-bin/tests/testlibs), so the README's examples work; a deployment
# names its library roots in its configuration instead.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
bazel build //server:ffiboxd //server:ffibox-worker //client/cli:ffibox \
  //tests/testlibs:libffibox_test.so >&2
exec bazel-bin/server/ffiboxd --allow_root="$(realpath bazel-bin/tests/testlibs)" "$@"
