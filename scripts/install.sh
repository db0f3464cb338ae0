#!/usr/bin/env bash
# Builds ffibox and installs it under a prefix (docs/install.md):
#   PREFIX/bin/ffiboxd                      the broker
#   PREFIX/bin/ffibox                       the command-line client
#   PREFIX/libexec/ffibox/ffibox-worker     the worker (ffiboxd finds it there by itself)
#   PREFIX/libexec/ffibox/ffibox-init       the init of each worker's pid namespace (beside it)
#   PREFIX/lib/systemd/system/ffiboxd.service
#   SYSCONFDIR/ffibox/ffiboxd.conf          only when missing: edits survive a reinstall
#   PREFIX/lib/python3.X/dist-packages/ffibox   with --python
#   PREFIX/share/ffibox/installed-files     what was installed (--uninstall removes it)
# Idempotent: running it again replaces the same files.
#
# usage: scripts/install.sh [--prefix=DIR] [--sysconfdir=DIR] [--destdir=DIR] [--python]
#                           [--enable] [--no-build]
#        scripts/install.sh --uninstall [--prefix=DIR] [--destdir=DIR]
#   --prefix=DIR      where to install (default /usr/local)
#   --sysconfdir=DIR  where ffibox/ffiboxd.conf goes (default /etc for the prefixes /usr and
#                     /usr/local, else PREFIX/etc)
#   --destdir=DIR     stage the files under DIR (for packaging); paths inside them still name
#                     PREFIX
#   --python          also install the Python client for /usr/bin/python3 (pip, offline,
#                     no dependencies fetched: Debian's python3-grpcio and python3-protobuf)
#   --enable          enable and start ffiboxd.service (systemctl); never done otherwise
#   --no-build        install what bazel-bin holds instead of building first
#   --uninstall       remove every file the last install listed (the configuration stays)
# BAZEL (environment): the bazel command to build with (default "bazel").
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
sysconfdir=""
destdir=""
python=0
enable=0
build=1
uninstall=0
# usage [STATUS]: prints the options above and exits (2 unless told).
usage() {
  sed -n '/^# usage:/,/^# BAZEL/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}
for arg in "$@"; do
  case "$arg" in
    --prefix=*) prefix="${arg#*=}" ;;
    --sysconfdir=*) sysconfdir="${arg#*=}" ;;
    --destdir=*) destdir="${arg#*=}" ;;
    --python) python=1 ;;
    --enable) enable=1 ;;
    --no-build) build=0 ;;
    --uninstall) uninstall=1 ;;
    -h | --help) usage 0 ;;
    *) usage ;;
  esac
done
for dir in "$prefix" "${sysconfdir:-/}" "${destdir:-/}"; do
  if [[ "$dir" != /* ]]; then
    echo "error: $dir: paths must be absolute" >&2
    exit 2
  fi
done
prefix="${prefix%/}"
if [[ -z "$sysconfdir" ]]; then
  case "$prefix" in
    /usr | /usr/local) sysconfdir=/etc ;;
    *) sysconfdir="$prefix/etc" ;;
  esac
fi
destdir="${destdir%/}"

bindir="$prefix/bin"
workerdir="$prefix/libexec/ffibox"
unitdir="$prefix/lib/systemd/system"
config="$sysconfdir/ffibox/ffiboxd.conf"
manifest="$prefix/share/ffibox/installed-files"
python_version=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pythondir="$prefix/lib/python$python_version/dist-packages"
# systemd runs with a unit only when it is the init and nothing is staged.
systemd_running() { [[ -z "$destdir" && -d /run/systemd/system ]]; }

if [[ "$uninstall" -eq 1 ]]; then
  if [[ ! -f "$destdir$manifest" ]]; then
    echo "error: $destdir$manifest not found: nothing installed under $prefix" >&2
    exit 1
  fi
  if systemd_running && systemctl is-enabled --quiet ffiboxd.service 2>/dev/null; then
    systemctl disable --now ffiboxd.service
  fi
  while IFS= read -r path; do
    if [[ "$path" != "$prefix"/* ]]; then
      echo "error: $destdir$manifest lists $path, outside $prefix; not removed" >&2
      continue
    fi
    rm -rf -- "$destdir$path"
    echo "removed $path"
  done <"$destdir$manifest"
  rm -f -- "$destdir$manifest"
  rmdir --ignore-fail-on-non-empty "$destdir$workerdir" "$destdir$prefix/share/ffibox"
  if systemd_running; then systemctl daemon-reload; fi
  echo "kept $config (remove it yourself if you no longer want it)"
  exit 0
fi

if [[ "$enable" -eq 1 ]] && ! systemd_running; then
  echo "error: --enable: systemd is not running here (or --destdir stages the files)" >&2
  exit 2
fi

if [[ "$build" -eq 1 ]]; then
  ./scripts/install-deps.sh
  ${BAZEL:-bazel} build //server:ffiboxd //server:ffibox-worker //client/cli:ffibox >&2
fi
for built in server/ffiboxd server/ffibox-worker server/ffibox-init client/cli/ffibox; do
  if [[ ! -x "bazel-bin/$built" ]]; then
    echo "error: bazel-bin/$built is missing; run without --no-build" >&2
    exit 1
  fi
done

installed=()
# put MODE SOURCE TARGET: installs one file (replacing it: a running ffiboxd keeps its own
# copy) and lists it.
put() {
  install -D -m "$1" "$2" "$destdir$3"
  installed+=("$3")
}
put 0755 bazel-bin/server/ffiboxd "$bindir/ffiboxd"
put 0755 bazel-bin/client/cli/ffibox "$bindir/ffibox"
put 0755 bazel-bin/server/ffibox-worker "$workerdir/ffibox-worker"
put 0755 bazel-bin/server/ffibox-init "$workerdir/ffibox-init"

unit=$(mktemp)
trap 'rm -f "$unit"' EXIT
sed -e "s|@BINDIR@|$bindir|g" -e "s|@SYSCONFDIR@|$sysconfdir|g" \
  deploy/systemd/ffiboxd.service.in >"$unit"
put 0644 "$unit" "$unitdir/ffiboxd.service"

if [[ ! -e "$destdir$config" ]]; then
  install -D -m 0644 deploy/systemd/ffiboxd.conf "$destdir$config"
  echo "wrote $config"
else
  echo "kept $config"
fi

if [[ "$python" -eq 1 ]]; then
  # --target writes the package into the prefix's dist-packages (on /usr/bin/python3's path
  # for /usr/local) and leaves Debian's packages alone: --no-deps, since grpcio and protobuf
  # come from Debian, --no-index and --no-build-isolation, so nothing is fetched.
  rm -rf -- "$destdir$pythondir"/ffibox "$destdir$pythondir"/ffibox-*.dist-info
  FFIBOX_PREFIX="$prefix" /usr/bin/python3 -m pip install --quiet --no-index --no-deps \
    --no-build-isolation --no-warn-script-location --root-user-action=ignore --upgrade \
    --target="$destdir$pythondir" ./client/python >&2
  for path in "$destdir$pythondir"/ffibox "$destdir$pythondir"/ffibox-*.dist-info; do
    installed+=("${path#"$destdir"}")
  done
fi

installed+=("$manifest")
mkdir -p "$(dirname "$destdir$manifest")"
printf '%s\n' "${installed[@]}" >"$destdir$manifest"
printf 'installed %s\n' "${installed[@]}"

if systemd_running; then
  systemctl daemon-reload
  if [[ "$enable" -eq 1 ]]; then
    # A unit outside systemd's search path (an unusual prefix) is enabled by its path.
    systemctl enable --now "$unitdir/ffiboxd.service"
  fi
fi
