"""Builds the ffibox package with its generated gRPC stubs (metadata: pyproject.toml).

The stubs `ffibox/v1/ffibox_pb2.py` and `ffibox/v1/ffibox_pb2_grpc.py` are generated from
`proto/ffibox/v1/ffibox.proto` while the package builds, by the same generators the Bazel build
uses (Debian's `protoc` and `grpc_python_plugin`), so an installed client needs no checkout and
no PYTHONPATH. `ffibox/_installed.py` records the prefix under which `scripts/install.sh` put
ffiboxd (`FFIBOX_PREFIX` at build time, default /usr/local), where the client looks for a
server to start privately.
"""
import atexit
import os
import shutil
import subprocess
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
# The checkout's proto directory; FFIBOX_PROTO_DIR names another (a directory holding
# ffibox/v1/ffibox.proto).
PROTO_DIR = os.environ.get("FFIBOX_PROTO_DIR") or os.path.join(HERE, os.pardir, os.pardir, "proto")
PROTO_FILE = os.path.join("ffibox", "v1", "ffibox.proto")


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit("ffibox: building the Python client needs %s (Debian package %s)"
                         % (name, package))
    return path


class BuildPyWithStubs(build_py):
    """build_py, plus the generated stubs and the install prefix in the build directory."""

    def run(self) -> None:
        super().run()
        if not os.path.isfile(os.path.join(PROTO_DIR, PROTO_FILE)):
            raise SystemExit("ffibox: %s not found under %s; build from a checkout "
                             "(pip install ./client/python) or set FFIBOX_PROTO_DIR"
                             % (PROTO_FILE, os.path.abspath(PROTO_DIR)))
        protoc = _tool("protoc", "protobuf-compiler")
        plugin = _tool("grpc_python_plugin", "protobuf-compiler-grpc")
        subprocess.run([protoc, "--proto_path=" + PROTO_DIR, "--python_out=" + self.build_lib,
                        "--grpc_out=" + self.build_lib, "--plugin=protoc-gen-grpc=" + plugin,
                        PROTO_FILE], check=True)
        stubs = os.path.join(self.build_lib, "ffibox", "v1")
        with open(os.path.join(stubs, "__init__.py"), "w") as init:
            init.write('"""Generated from proto/ffibox/v1/ffibox.proto when the package was '
                       'built."""\n')
        prefix = os.path.abspath(os.environ.get("FFIBOX_PREFIX") or "/usr/local")
        with open(os.path.join(self.build_lib, "ffibox", "_installed.py"), "w") as installed:
            installed.write('"""Written when the package was built (setup.py)."""\n'
                            "PREFIX = %r  # where scripts/install.sh puts bin/ffiboxd\n" % prefix)


# The build's intermediate files (build/, ffibox.egg-info) go to a temporary directory, not
# into the checkout, where they would shadow and lint as sources.
BUILD_BASE = tempfile.mkdtemp(prefix="ffibox-python-build-")
atexit.register(shutil.rmtree, BUILD_BASE, ignore_errors=True)

setup(cmdclass={"build_py": BuildPyWithStubs},
      options={"build": {"build_base": BUILD_BASE}, "egg_info": {"egg_base": BUILD_BASE}})
