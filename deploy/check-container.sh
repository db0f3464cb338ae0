#!/bin/bash
# Builds the container image from deploy/Containerfile and checks it (tests/container): the
# jail's self-check passes with the pod's security context of deploy/k8s/ffiboxd.yaml, the
# readiness probe's health answer, a call through TLS with a token, a refused token, a crash
# that kills only its worker, and a clean stop on SIGTERM.
#
#   deploy/check-container.sh              # build, then test
#   deploy/check-container.sh --no-build   # test the image built before
#
# CONTAINER_ENGINE names podman or docker (default: whichever is installed, podman first);
# FFIBOX_IMAGE the image's tag (default ffibox/ffiboxd:check). The tests run this checkout's
# Python client on this machine, so the stubs are built first. Not part of scripts/test.sh:
# it needs a container engine and about a quarter of an hour to build the image.
set -euo pipefail
cd "$(dirname "$0")/.."

engine=${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}
if [ -z "$engine" ]; then
  echo "check-container: no container engine (install podman or docker, or set CONTAINER_ENGINE)" >&2
  exit 2
fi
image=${FFIBOX_IMAGE:-ffibox/ffiboxd:check}
if [ "${1:-}" != "--no-build" ]; then
  "$engine" build -f deploy/Containerfile -t "$image" .
fi
bazel build //proto:ffibox_py >/dev/null
CONTAINER_ENGINE=$engine FFIBOX_IMAGE=$image \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/container
