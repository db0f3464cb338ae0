"""Fixtures for tests that talk to a real ffiboxd through stubs generated from the proto.

The server and the stubs come from the Bazel build (scripts/test.sh builds them first).
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bazel-bin")
sys.path.insert(0, os.path.join(BIN, "proto"))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))

import grpc  # noqa: E402
from ffibox.v1 import ffibox_pb2, ffibox_pb2_grpc  # noqa: E402

TEST_LIB = os.path.join(BIN, "tests", "testlibs", "libffibox_test.so")
HOSTILE_LIB = os.path.join(BIN, "tests", "testlibs", "libffibox_hostile.so")
PROBE_LIB = os.path.join(BIN, "tests", "testlibs", "libffibox_probe.so")


def varint(value: int) -> bytes:
    """`value` as a protobuf varint."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# What an HTTP/2 client sends first: the connection preface and an empty SETTINGS frame.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def frame_types(received):
    """The types of the HTTP/2 frames in `received`, in order."""
    types, at = [], 0
    while at + 9 <= len(received):
        length = int.from_bytes(received[at:at + 3], "big")
        types.append(received[at + 3])
        at += 9 + length
    return types


# An empty CallResult.blocks entry: two bytes on the wire, a whole object once parsed.
EMPTY_BLOCK = b"\x12\x00"


def forged_empty_blocks(about: int, to_broker: bool):
    """The start of a forged worker frame of about `about` bytes that goes on with EMPTY_BLOCK
    over and over: a Response (id 1) whose call result holds nothing else, inside a
    WorkerReply when `to_broker`. Returns (start, the frame's exact length)."""
    blocks = about - about % 2
    response = b"\x08\x01\x6a" + varint(blocks)
    start = b"\x0a" + varint(len(response) + blocks) + response if to_broker else response
    return start, len(start) + blocks


def forge_empty_blocks(lib, to_client: bool, pid: int, about: int = 48 << 20):
    """Has the hostile library (tests/testlibs/hostile.c) forge a frame of about `about`
    bytes of empty returned blocks, to its client on the same-host channel when `to_client`,
    else to the broker, while process `pid`'s resident size is sampled. Returns (the
    ffibox.Error the call raised or None, seconds it took, MiB the peak grew by)."""
    import ctypes
    import time
    import ffibox
    start, total = forged_empty_blocks(about, to_broker=not to_client)
    forge = lib.hostile_whole_frame
    forge.restype = ctypes.c_long
    forge.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_long, ctypes.c_char_p,
                      ctypes.c_long, ctypes.c_long]
    raised = None
    started = time.monotonic()
    with PeakRss(pid) as rss:
        try:
            forge(1 if to_client else 0, start, len(start), EMPTY_BLOCK, len(EMPTY_BLOCK),
                  total)
        except ffibox.Error as error:
            raised = error
    return raised, time.monotonic() - started, rss.peak - rss.before


def status_kib(pid: int, field: str) -> int:
    """A size field of /proc/PID/status (VmRSS, VmHWM, ...), in KiB."""
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


class PeakRss:
    """The resident size of process `pid` (MiB) when entered (`before`) and its peak while
    in use (`peak`): the kernel's high-water mark, reset on entry (/proc/PID/clear_refs)."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.before = self.peak = 0.0

    def __enter__(self):
        with open("/proc/%d/clear_refs" % self._pid, "w") as refs:
            refs.write("5")  # resets VmHWM to the current resident size
        self.before = status_kib(self._pid, "VmHWM") / 1024
        return self

    def __exit__(self, *exc) -> None:
        self.peak = status_kib(self._pid, "VmHWM") / 1024



def close_channel_from_client(local):
    """Writes a frame that is no call (a ping) on the same-host channel `local` (a
    LocalChannel): the worker closes the channel and says it did; waits until it has."""
    ping = ffibox_pb2.Request(id=99, ping=ffibox_pb2.Ping()).SerializeToString()
    local._write(len(ping).to_bytes(4, "little") + ping, time.monotonic() + 5)
    deadline = time.monotonic() + 5
    while not local.closed_by_worker and time.monotonic() < deadline:
        time.sleep(0.01)
    assert local.closed_by_worker


def run_script(script, *args):
    """Runs Python `script` in a child process (a crash there is its exit status, not the
    end of the suite) with the client on its path; the CompletedProcess (text)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "client", "python"))
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          env=env, text=True, timeout=60)


def check_pattern(server, script, expected):
    """Runs `script` (given the server's address and the test library) against `server`;
    asserts it exits normally and prints `expected`."""
    result = run_script(script, server.address, TEST_LIB)
    assert result.returncode == 0, "exit %d: %s" % (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip() == expected


def check_patterns_with_the_stdlib(prelude, patterns, expected):
    """Runs each of `patterns` (name -> body, after `prelude`) with the stdlib ctypes in
    place of ffibox.ctypes and the library in-process, and asserts it prints `expected`."""
    for pattern, body in patterns.items():
        script = (prelude.replace("from ffibox import ctypes\n", "import ctypes\n")
                  .replace("from ffibox.ctypes import *", "from ctypes import *")
                  + textwrap.dedent(body))
        result = run_script(script, "unused", TEST_LIB)
        assert result.returncode == 0, (pattern, result.stderr[-2000:])
        assert result.stdout.strip() == expected[pattern], pattern

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


def certificates_with_token(directory, token: str) -> Certificates:
    """Certificates made in `directory`, and beside them `ffiboxd.conf` (its path:
    `.path("ffiboxd.conf")`) naming one identity, "tenant", whose bearer token is `token`."""
    certificates = Certificates(directory)
    with open(certificates.path("ffiboxd.conf"), "w") as conf:
        conf.write('identities { name: "tenant" bearer_token: "%s" }\n' % token)
    return certificates


class Server:
    """A real ffiboxd on a private unix socket.

    `flags` are added to its command line; `allow_root` is its allowed library root;
    `wrapper` is a command that runs it (e.g. ["prlimit", "--nofile=128:128", "--"]);
    `stderr` is where its log goes (a file object, or subprocess.DEVNULL). With `tls` (a
    Certificates), it also listens on a free loopback TCP port with TLS: `tcp_address`.
    """

    def __init__(self, *flags, allow_root="/", wrapper=(), stderr=subprocess.DEVNULL,
                 tls=None):
        if threading.current_thread() is threading.main_thread():
            # Ended with the test process, also when that crashes (its parent-death signal
            # follows the thread that started it: only the main thread lives as long).
            flags = ("--exit_with_parent", *flags)
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


GRPC_PROTO = "/usr/share/grpc-proto"
HEALTH_PROTO = "grpc/health/v1/health.proto"
REFLECTION_PROTO = "grpc/reflection/v1alpha/reflection.proto"


@pytest.fixture(scope="session")
def standard_stubs(tmp_path_factory):
    """(health_pb2, reflection_pb2) of the standard gRPC services, generated by protoc from
    Debian's grpc-proto and loaded by file path (a package named `grpc` would collide with
    grpcio's)."""
    out = tmp_path_factory.mktemp("standard_stubs")
    subprocess.run(["protoc", "-I", GRPC_PROTO, "--python_out", str(out), HEALTH_PROTO,
                    REFLECTION_PROTO], check=True)

    def load(proto):
        path = os.path.join(str(out), proto.replace(".proto", "_pb2.py"))
        spec = importlib.util.spec_from_file_location(
            "ffibox_test_" + os.path.basename(path)[:-3], path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load(HEALTH_PROTO), load(REFLECTION_PROTO)


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

    def pipeline(self, *requests):
        """Sends every request (dicts of one op each) before reading any answer; returns the
        requests' ids and their answers, in the order sent."""
        ids = []
        for op in requests:
            request = ffibox_pb2.Request(id=self.next_id, **op)
            self.next_id += 1
            ids.append(request.id)
            self.requests.put(request)
        answers = {}
        for response in self.responses:
            if response.id == 0:
                self.events.append(response)
                continue
            assert response.id in ids and response.id not in answers, response
            answers[response.id] = response
            if len(answers) == len(ids):
                return ids, [answers[i] for i in ids]
        raise RuntimeError("stream ended")

    def close(self):
        self.requests.put(None)
        self.channel.close()


@pytest.fixture
def session(server):
    s = RawSession(server.address)
    yield s
    s.close()


@pytest.fixture(scope="module")
def module_client():
    """A client of a server of the test module's own (a module may define `client` so)."""
    import ffibox
    server = Server()
    c = ffibox.connect(server.address)
    yield c
    c.close()
    server.stop()


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


def twinned_and_collected(session, count):
    """The worker addresses of `count` buffers twinned by a call each, then collected (their
    releases waiting)."""
    from ffibox import ctypes as ct
    libc = session.CDLL("libc.so.6")
    libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
    buffers = [ct.create_string_buffer(4000) for _ in range(count)]
    for buffer in buffers:
        libc.memset(buffer, 1, 1)
    twins = [session.twins._by_owner[id(b)] for b in buffers]
    addresses = [ffibox_pb2.RemoteAddress(address=twin.worker, generation=twin.generation)
                 for twin in twins]
    del buffers, buffer
    assert session.twins.has_releases()
    return addresses
