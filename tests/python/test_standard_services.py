"""The standard gRPC services on every ffiboxd listener, as a load balancer, a Kubernetes
probe or grpcurl sees them: grpc.health.v1.Health (SERVING for "" and ffibox.v1.Ffibox, no
token needed, NOT_SERVING once the server shuts down) and server reflection (lists
ffibox.v1.Ffibox and describes its Session method). The stubs are generated from Debian's
grpc-proto package."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import grpc
import pytest
from google.protobuf import descriptor_pb2

import ffibox
from conftest import (BIN, HTTP2_PREFACE, TEST_LIB, Certificates, Server, ffibox_pb2, frame_types,
                      ffibox_pb2_grpc, status_kib)

HEALTH = "/grpc.health.v1.Health/"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return Certificates(tmp_path_factory.mktemp("standard_tls"))


@pytest.fixture
def tls_server(certificates):
    s = Server(tls=certificates)
    yield s
    s.stop()


def tls_channel(server, certificates):
    return grpc.secure_channel(
        server.tcp_address, grpc.ssl_channel_credentials(root_certificates=certificates.ca_pem))


def listener_channel(listener, server, certificates):
    """A channel to `server`'s unix socket (plaintext) or TCP port (TLS), without a token."""
    if listener == "unix":
        return grpc.insecure_channel(server.address)
    return tls_channel(server, certificates)


def health_check(channel, health_pb2, service):
    check = channel.unary_unary(
        HEALTH + "Check", request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    return check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def health_watch(channel, health_pb2, service):
    """The stream of `service`'s health updates (ends after 10 s at the latest)."""
    watch = channel.unary_stream(
        HEALTH + "Watch", request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    return iter(watch(health_pb2.HealthCheckRequest(service=service), timeout=10))


def reflect(channel, reflection_pb2, **request):
    info = channel.stream_stream(
        REFLECTION, request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    return next(iter(info(iter([reflection_pb2.ServerReflectionRequest(**request)]),
                          timeout=5)))


@pytest.mark.parametrize("listener", ["unix", "tcp"])
def test_health_is_serving_without_a_token(tls_server, certificates, standard_stubs,
                                           listener):
    health_pb2, _ = standard_stubs
    with listener_channel(listener, tls_server, certificates) as channel:
        serving = health_pb2.HealthCheckResponse.SERVING
        assert health_check(channel, health_pb2, "") == serving
        assert health_check(channel, health_pb2, "ffibox.v1.Ffibox") == serving
        with pytest.raises(grpc.RpcError) as unknown:
            health_check(channel, health_pb2, "no.such.Service")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_does_not_open_the_door(tls_server, certificates, standard_stubs):
    """The health answer needs no token; a session over TCP still does."""
    health_pb2, _ = standard_stubs
    with tls_channel(tls_server, certificates) as channel:
        assert health_check(channel, health_pb2, "") == health_pb2.HealthCheckResponse.SERVING
        stub = ffibox_pb2_grpc.FfiboxStub(channel)
        responses = stub.Session(iter([ffibox_pb2.Request(id=1, open=ffibox_pb2.OpenSession())]),
                                 timeout=5)
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(responses))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("listener", ["unix", "tcp"])
def test_reflection_lists_and_describes_the_ffibox_service(tls_server, certificates,
                                                           standard_stubs, listener):
    _, reflection_pb2 = standard_stubs
    with listener_channel(listener, tls_server, certificates) as channel:
        listed = reflect(channel, reflection_pb2, list_services="")
        names = {service.name for service in listed.list_services_response.service}
        assert {"ffibox.v1.Ffibox", "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection"} <= names

        described = reflect(channel, reflection_pb2, file_containing_symbol="ffibox.v1.Ffibox")
        files = [descriptor_pb2.FileDescriptorProto.FromString(data) for data in
                 described.file_descriptor_response.file_descriptor_proto]
        ffibox_file = next(f for f in files if f.package == "ffibox.v1")
        service = next(s for s in ffibox_file.service if s.name == "Ffibox")
        session = next(m for m in service.method if m.name == "Session")
        assert session.client_streaming and session.server_streaming
        assert session.input_type == ".ffibox.v1.Request"


def test_health_turns_not_serving_when_the_server_shuts_down(standard_stubs):
    health_pb2, _ = standard_stubs
    server = Server()
    try:
        with grpc.insecure_channel(server.address) as channel:
            updates = health_watch(channel, health_pb2, "ffibox.v1.Ffibox")
            assert next(updates).status == health_pb2.HealthCheckResponse.SERVING
            server.process.send_signal(signal.SIGTERM)
            assert next(updates).status == health_pb2.HealthCheckResponse.NOT_SERVING
            server.process.wait(timeout=10)
    finally:
        server.stop()


def health_listener_address(server):
    """The --health_listen address `server` printed: "ffiboxd health on 127.0.0.1:PORT
    (plaintext, grpc.health.v1 only)"."""
    line = ""
    while "health on" not in line:
        line = server.process.stdout.readline()
        assert line, "ffiboxd printed no health line"
    return line.split(" on ")[1].split()[0]


def test_health_listener_serves_health_in_plaintext_and_no_sessions(standard_stubs):
    """--health_listen: for probes that cannot speak TLS (Kubernetes' grpc probes)."""
    health_pb2, reflection_pb2 = standard_stubs
    server = Server("--health_listen=127.0.0.1:0")
    try:
        with grpc.insecure_channel(health_listener_address(server)) as channel:
            assert (health_check(channel, health_pb2, "ffibox.v1.Ffibox")
                    == health_pb2.HealthCheckResponse.SERVING)
            listed = reflect(channel, reflection_pb2, list_services="")
            assert "ffibox.v1.Ffibox" not in {
                service.name for service in listed.list_services_response.service}
            stub = ffibox_pb2_grpc.FfiboxStub(channel)
            responses = stub.Session(
                iter([ffibox_pb2.Request(id=1, open=ffibox_pb2.OpenSession())]), timeout=5)
            with pytest.raises(grpc.RpcError) as refused:
                next(iter(responses))
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop()


@pytest.mark.parametrize("sent", [b"", HTTP2_PREFACE[:1], HTTP2_PREFACE[:24]],
                         ids=["nothing", "one byte", "the preface without SETTINGS"])
def test_a_silent_connection_to_the_health_listener_is_closed_at_the_handshake_deadline(
        standard_stubs, sent):
    # Anyone who reaches the plaintext port may connect: one that does not send the HTTP/2
    # preface and SETTINGS is closed after --handshake_timeout_ms, as on the TLS listeners
    # (gRPC's own default: 2 minutes; a connection handed to gRPC by descriptor: never).
    health_pb2, _ = standard_stubs
    server = Server("--health_listen=127.0.0.1:0", "--handshake_timeout_ms=1000")
    try:
        host, port = health_listener_address(server).rsplit(":", 1)
        silent = [socket.create_connection((host, int(port)), timeout=10) for _ in range(3)]
        started = time.monotonic()
        for connection in silent:
            connection.sendall(sent)
            try:
                while connection.recv(4096):  # whatever the server sent, then its close
                    pass
            except ConnectionResetError:
                pass  # closed with the peer's bytes unread
        assert time.monotonic() - started < 8
        with grpc.insecure_channel("%s:%s" % (host, port)) as channel:
            assert (health_check(channel, health_pb2, "ffibox.v1.Ffibox")
                    == health_pb2.HealthCheckResponse.SERVING)
    finally:
        server.stop()


def test_an_idle_health_connection_is_closed_and_one_with_a_watch_stays(standard_stubs):
    """A peer that sent the HTTP/2 preface and keeps no call open is sent GOAWAY and closed
    after --health_idle_timeout_ms; a channel that keeps a Watch open (a health-checking
    client's) stays."""
    health_pb2, _ = standard_stubs
    server = Server("--health_listen=127.0.0.1:0", "--health_idle_timeout_ms=1000")
    try:
        address = health_listener_address(server)
        host, port = address.rsplit(":", 1)
        with grpc.insecure_channel(address) as channel:
            updates = health_watch(channel, health_pb2, "")
            assert next(updates).status == health_pb2.HealthCheckResponse.SERVING
            idle = socket.create_connection((host, int(port)), timeout=10)
            idle.sendall(HTTP2_PREFACE)
            started = time.monotonic()
            received = b""
            while True:
                chunk = idle.recv(4096)
                if not chunk:
                    break
                received += chunk
            waited = time.monotonic() - started
            idle.close()
            assert 0.9 < waited < 8, "closed after %.2f s" % waited
            # The server's SETTINGS (type 4) first, its GOAWAY (type 7) last.
            assert received[3] == 4 and 7 in frame_types(received)
            # The Watch's connection is not idle: the next update is the shutdown's.
            time.sleep(1.5)
            server.process.send_signal(signal.SIGTERM)
            assert next(updates).status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        server.stop()


def pressured_server(limit, *flags):
    """An ffiboxd with a health port, run under `prlimit --nofile=limit:limit` (prlimit execs
    it: the process is ffiboxd, which cannot raise its soft limit past that), and the
    health port's address."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.fail("prlimit (util-linux, Essential in Debian) is not installed on this host")
    server = Server("--health_listen=127.0.0.1:0", *flags,
                    wrapper=[prlimit, "--nofile=%d:%d" % (limit, limit), "--"])
    return server, health_listener_address(server)


def flood_health_listener(address, most):
    """Connections to the health port at `address`, each of which sent the HTTP/2 preface
    and SETTINGS and got the server's SETTINGS back, opened until the server takes no more
    (it closes the next one at once; one left unanswered for 10 s, on a machine busy
    elsewhere, ends the flood too); at most `most`. Returns them all, the last one refused."""
    host, port = address.rsplit(":", 1)
    held = []
    while len(held) < most:
        connection = socket.create_connection((host, int(port)), timeout=5)
        held.append(connection)
        connection.settimeout(10)
        try:
            connection.sendall(HTTP2_PREFACE)
            if not connection.recv(64):
                break
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            break
    return held


def test_a_flood_of_health_connections_leaves_descriptors_for_sessions_and_workers(
        standard_stubs):
    """Anyone who reaches the plaintext port may hold connections: they stop well short of
    the descriptors that a session on the unix socket and its worker's start need."""
    limit = 256
    server, address = pressured_server(limit, "--pool_size=0")
    flood = []
    try:
        flood = flood_health_listener(address, limit)
        # Well past what a session and a worker start need, well short of the limit.
        assert 32 < len(flood) < limit, "ffiboxd took %d health connections" % len(flood)
        client = ffibox.connect(server.address, timeout=5)
        try:
            with client.session(timeout=10) as session:
                assert session.CDLL(TEST_LIB).add_int(2, 3) == 5
        finally:
            client.close()
    finally:
        for connection in flood:
            connection.close()
        server.stop()


def test_the_health_listener_serves_again_after_a_flood(standard_stubs):
    """gRPC 1.51's own listener gave its socket up for good at the first EMFILE; the health
    port sheds connections instead, and answers again once the flood is gone."""
    health_pb2, _ = standard_stubs
    limit = 256
    server, address = pressured_server(limit)
    try:
        flood = flood_health_listener(address, limit)
        assert 32 < len(flood) < limit, "ffiboxd took %d health connections" % len(flood)
        for connection in flood:
            connection.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                with grpc.insecure_channel(address) as channel:
                    assert (health_check(channel, health_pb2, "")
                            == health_pb2.HealthCheckResponse.SERVING)
                break
            except grpc.RpcError as error:
                if time.monotonic() > deadline:
                    raise AssertionError("the health port no longer answers: %s" % error)
    finally:
        server.stop()


@pytest.fixture
def health_listener(standard_stubs):
    """(server, a channel to its --health_listen port, the first Watch's update stream,
    health_pb2), once that Watch reported SERVING."""
    health_pb2, _ = standard_stubs
    server = Server("--health_listen=127.0.0.1:0")
    try:
        with grpc.insecure_channel(health_listener_address(server)) as channel:
            updates = health_watch(channel, health_pb2, "")
            assert next(updates).status == health_pb2.HealthCheckResponse.SERVING
            yield server, channel, updates, health_pb2
    finally:
        server.stop()


def test_a_watch_on_the_health_listener_does_not_hold_up_shutdown(health_listener):
    """A Watch never ends by itself, and anyone who reaches the plaintext health port may
    hold one open; SIGTERM still stops ffiboxd within its 2 s drain."""
    server, _, _, _ = health_listener
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=8) == 0


def resident_mib(pid):
    return status_kib(pid, "VmRSS") // 1024


def test_watches_on_one_health_connection_do_not_grow_the_broker(health_listener):
    """The plaintext health port needs no token: one peer opening Watch after Watch on one
    connection (about 16 KiB of ffiboxd's memory each, 5000 of them +80 MiB, before the
    cap) gets 4 streams served and the rest queued at its end."""
    server, channel, _, health_pb2 = health_listener
    before = resident_mib(server.process.pid)
    watches = [health_watch(channel, health_pb2, "") for _ in range(5000)]
    time.sleep(2)
    assert resident_mib(server.process.pid) - before < 20
    for watch in watches:
        watch.cancel()


@pytest.mark.parametrize("health_listen", ["127.0.0.1:99999", "unix:{dir}/health.sock",
                                           "garbage"])
def test_bad_health_listen_address_is_refused_before_serving(health_listen):
    """gRPC alone would bind port 99999 as 34463 and make a socket for a unix: target; the
    flag promises a TCP HOST:PORT, so anything else stops ffiboxd before it listens."""
    with tempfile.TemporaryDirectory(prefix="ffibox-pytest-") as directory:
        os.chmod(directory, 0o700)
        health_listen = health_listen.format(dir=directory)
        started = subprocess.run(
            [os.path.join(BIN, "server", "ffiboxd"),
             "--listen=unix:" + os.path.join(directory, "ffiboxd.sock"),
             "--health_listen=" + health_listen],
            capture_output=True, text=True, timeout=30)
        assert started.returncode == 1
        assert "listening on" not in started.stdout
        assert "--health_listen" in started.stderr and health_listen in started.stderr
        assert os.listdir(directory) == []


def test_watches_past_the_bound_on_the_main_listener_are_refused(
        tls_server, certificates, standard_stubs):
    """The main TLS listener serves health without a token (no client certificate either):
    10,000 Watch streams there once took ffiboxd from 21 to 184 MiB. Now at most 1024 are
    open over the whole server; each one past that is refused with RESOURCE_EXHAUSTED at
    once. (What the broker's memory shows right after a burst of refused streams is their
    allocator high-water mark, 35 to 80 MiB for this one depending on the machine's load, so
    it is not checked here; an open stream's cost is, in the health port's test above.)"""
    health_pb2, _ = standard_stubs
    bound = 1024
    with tls_channel(tls_server, certificates) as channel:
        assert health_check(channel, health_pb2, "") == health_pb2.HealthCheckResponse.SERVING
        watches = [health_watch(channel, health_pb2, "ffibox.v1.Ffibox") for _ in range(5000)]
        serving = refused = 0
        for watch in watches:
            try:
                assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
                serving += 1
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                refused += 1
        assert (serving, refused) == (bound, 5000 - bound)
        # A Check still answers while the Watches are full.
        assert health_check(channel, health_pb2, "") == health_pb2.HealthCheckResponse.SERVING
        for watch in watches:
            watch.cancel()
