#!/usr/bin/env bash
# Installs what is missing, builds ffibox, and runs ffiboxd in the foreground on its default
# address (or the one given with --listen=...; any ffiboxd flag may be passed).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
bazel build //server:ffiboxd //server:ffibox-worker //client/cli:ffibox >&2
exec bazel-bin/server/ffiboxd "$@"
