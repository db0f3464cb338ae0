"""Fixtures for tests that talk to a real ffiboxd through stubs generated from the proto.

The server and the stubs come from the Bazel build (scripts/test.sh builds them first).
"""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bazel-bin")
sys.path.insert(0, os.path.join(BIN, "proto"))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))

import grpc  # noqa: E402
from ffibox.v1 import ffibox_pb2, ffibox_pb2_grpc  # noqa: E402

TEST_LIB = os.path.join(BIN, "tests", "testlibs", "libffibox_test.so")


class Certificates:
    """A throwaway certificate authority (ca.pem) and a server certificate for localhost and
    127.0.0.1 (server.pem, server.key) it signed, made by openssl in `directory`."""

    def __init__(self, directory):
        self.dir = str(directory)
        new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        with open(os.path.join(self.dir, "server.ext"), "w") as ext:
            ext.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                      "extendedKeyUsage=serverAuth\n")
        for command in (
                ["openssl", "req", "-x509", *new_key, "-keyout", "ca.key", "-out", "ca.pem",
                 "-days", "2", "-subj", "/CN=ffibox test CA"],
                ["openssl", "req", *new_key, "-keyout", "server.key", "-out", "server.csr",
                 "-subj", "/CN=localhost"],
                ["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey",
                 "ca.key", "-CAcreateserial", "-days", "2", "-out", "server.pem", "-extfile",
                 "server.ext"]):
            subprocess.run(command, cwd=self.dir, check=True, capture_output=True)
        self.ca_pem = self.read("ca.pem")

    def path(self, name):
        return os.path.join(self.dir, name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()


class Server:
    """A real ffiboxd on a private unix socket.

    `flags` are added to its command line; `allow_root` is its allowed library root;
    `wrapper` is a command that runs it (e.g. ["prlimit", "--nofile=128:128", "--"]);
    `stderr` is where its log goes (a file object, or subprocess.DEVNULL). With `tls` (a
    Certificates), it also listens on a free loopback TCP port with TLS: `tcp_address`.
    """

    def __init__(self, *flags, allow_root="/", wrapper=(), stderr=subprocess.DEVNULL,
                 tls=None):
        self.dir = tempfile.mkdtemp(prefix="ffibox-pytest-")
        os.chmod(self.dir, 0o700)
        self.address = "unix:" + os.path.join(self.dir, "ffiboxd.sock")
        listen = [self.address]
        if tls is not None:
            listen.append("127.0.0.1:0")
            flags = ("--tls_cert_file=" + tls.path("server.pem"),
                     "--tls_key_file=" + tls.path("server.key"), *flags)
        self.process = subprocess.Popen(
            # --allow_root=/ by default: the tests load libraries from the build tree and the
            # system (the allowlist itself is tested by tests/integration/limits_test).
            [*wrapper, os.path.join(BIN, "server", "ffiboxd"), "--listen=" + ",".join(listen),
             "--allow_root=" + allow_root, *flags],
            stdout=subprocess.PIPE, stderr=stderr, text=True)
        line = self.process.stdout.readline()
        if "listening on" not in line:
            self.process.kill()
            raise RuntimeError("ffiboxd did not start: %r" % line)
        self.tcp_address = None
        if tls is not None:
            # "ffiboxd listening on 127.0.0.1:PORT (TLS)"
            line = self.process.stdout.readline()
            if "(TLS)" not in line:
                self.process.kill()
                raise RuntimeError("ffiboxd did not listen on TCP: %r" % line)
            self.tcp_address = line.split(" on ")[1].split()[0]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def pb():
    return ffibox_pb2


class RawSession:
    """A session stream driven request by request (answers matched by id)."""

    def __init__(self, address):
        self.channel = grpc.insecure_channel(address)
        self.stub = ffibox_pb2_grpc.FfiboxStub(self.channel)
        import queue
        self.requests = queue.Queue()
        self.responses = self.stub.Session(iter(self.requests.get, None))
        self.next_id = 1
        self.events = []

    def send(self, **op):
        request = ffibox_pb2.Request(id=self.next_id, **op)
        self.next_id += 1
        self.requests.put(request)
        for response in self.responses:
            if response.id == 0:
                self.events.append(response)
                continue
            assert response.id == request.id
            return response
        raise RuntimeError("stream ended")

    def close(self):
        self.requests.put(None)
        self.channel.close()


@pytest.fixture
def session(server):
    s = RawSession(server.address)
    yield s
    s.close()


# -- the ctypes drop-in: one shared server for the whole run ----------------------------

@pytest.fixture(scope="session")
def shared_server():
    s = Server()
    os.environ["FFIBOX_ADDRESS"] = s.address  # ffibox.ctypes' default session uses it
    yield s
    s.stop()


@pytest.fixture(params=["ctypes", "ffibox"])
def ct(request, shared_server):
    """The module under test: the stdlib ctypes in-process, or ffibox.ctypes."""
    if request.param == "ctypes":
        import ctypes
        return ctypes
    from ffibox import ctypes
    return ctypes


@pytest.fixture
def testlib(ct):
    return ct.CDLL(TEST_LIB)


@pytest.fixture
def libc(ct):
    return ct.CDLL("libc.so.6")


@pytest.fixture
def ffibox_client(shared_server):
    import ffibox
    return ffibox.connect(shared_server.address)
