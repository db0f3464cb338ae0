"""deploy/Containerfile's runtime stage installs every Debian package whose shared libraries
ffiboxd and ffibox-worker link (directly or through the dependencies apt pulls in).

The image itself is built and run by deploy/check-container.sh, which needs a container
engine; this check needs none, so a library the binaries start linking cannot be forgotten
in the image unnoticed (libcivetweb1 once was: the image's ffiboxd did not start).
"""
import os
import re
import subprocess

from conftest import BIN, ROOT

BINARIES = [os.path.join(BIN, "server", name) for name in ("ffiboxd", "ffibox-worker")]


def runtime_packages():
    """The packages the Containerfile's last stage names to apt-get install."""
    with open(os.path.join(ROOT, "deploy", "Containerfile")) as f:
        text = f.read()
    runtime = text[text.rindex("\nFROM "):]
    command = re.search(r"apt-get install ([^&]*)", runtime.replace("\\\n", " ")).group(1)
    return [word for word in command.split() if not word.startswith("-")]


def linked_packages(binary):
    """The Debian packages of the shared libraries `binary` links (one dpkg query; dpkg may
    know a library below /lib rather than /usr/lib)."""
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    assert "not found" not in ldd, ldd
    paths = {os.path.realpath(path) for path in re.findall(r"=> (/\S+)", ldd)}
    assert paths, ldd
    candidates = paths | {re.sub(r"^/usr/lib/", "/lib/", path) for path in paths}
    found = subprocess.run(["dpkg-query", "-S"] + sorted(candidates), capture_output=True,
                           text=True).stdout
    owners = {}
    for line in found.splitlines():
        package, _, path = line.partition(": ")
        owners[path] = package.split(":")[0]
    packages = set()
    for path in paths:
        owner = owners.get(path) or owners.get(re.sub(r"^/usr/lib/", "/lib/", path))
        assert owner, "no Debian package installed %s" % path
        packages.add(owner)
    return packages


def dependency_closure(packages):
    """`packages` and everything they depend on (Depends, Pre-Depends), as installed on this
    machine, which has every runtime package (the -dev packages pull them in); apt's
    package lists need not be there."""
    closure, frontier = set(), set(packages)
    while frontier:
        closure |= frontier
        shown = subprocess.run(
            ["dpkg-query", "-W", "-f=${Depends}, ${Pre-Depends}\\n"] + sorted(frontier),
            capture_output=True, text=True)
        names = set()
        for relation in re.split(r"[,|]", shown.stdout):
            name = relation.strip().split(" ")[0].split(":")[0]
            if name:
                names.add(name)
        frontier = names - closure
    return closure


def test_the_image_installs_every_library_the_binaries_link():
    named = runtime_packages()
    assert "libgrpc++1.51" in named, named
    installed = dependency_closure(named)
    for binary in BINARIES:
        missing = linked_packages(binary) - installed
        assert not missing, "%s links libraries of %s, which deploy/Containerfile's runtime " \
            "stage does not install" % (os.path.basename(binary), sorted(missing))
