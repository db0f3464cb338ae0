"""Scale-out on gRPC's own load balancing with the Python client: three real ffiboxd on
loopback TCP with TLS (a throwaway CA made by openssl) and a bearer token, one client whose
target lists all three (round_robin, health-checked). Sessions spread over every server
(a session id starts with its server's pid); when one server is killed, the sessions on it
fail promptly with UNAVAILABLE and new sessions land on the two others; a reachable server
whose health is NOT_SERVING gets none."""
import contextlib
import socket
import signal
import threading
import time
from concurrent import futures

import grpc

import pytest

from conftest import Certificates, Server, certificates_with_token

import ffibox
from ffibox import ctypes

TOKEN = "scale-out-token-0123456789abcdef"
SERVERS = 3


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return certificates_with_token(tmp_path_factory.mktemp("scale_out_tls"), TOKEN)


@pytest.fixture
def servers(certificates):
    started = [Server("--config=" + certificates.path("ffiboxd.conf"), tls=certificates)
               for _ in range(SERVERS)]
    yield started
    for server in started:
        server.stop()


def connect(servers, certificates, *addresses, **options):
    """A client of `servers` (and of `addresses`) through one round_robin target."""
    target = "ipv4:" + ",".join([server.tcp_address for server in servers] + list(addresses))
    # One name for every server behind the list (the target itself names no host).
    return ffibox.connect(target, timeout=5, token=TOKEN,
                          root_certificates=certificates.ca_pem, server_name="localhost",
                          **options)


def server_of(session, servers):
    """The server a session runs on: ffiboxd numbers its sessions "<its pid>-<n>"."""
    pid = int(session.session_id.split("-")[0])
    return next(i for i, server in enumerate(servers) if server.process.pid == pid)


def working_session(client):
    session = client.session()
    libm = session.CDLL("libm.so.6")
    libm.cos.restype = ctypes.c_double
    libm.cos.argtypes = [ctypes.c_double]
    assert libm.cos(0.0) == 1.0
    return session, libm


def sessions_until_each_of(client, servers, wanted, at_least=3 * SERVERS, at_most=40):
    """Working sessions of `client`: `at_least`, and more (up to `at_most`) until each server
    in `wanted` has one. The client is ready once one server is; another whose health check is
    still under way gets sessions only once it answers."""
    sessions = []
    while len(sessions) < at_least or (
            len(sessions) < at_most
            and not wanted <= {server_of(session, servers) for session, _ in sessions}):
        sessions.append(working_session(client))
    return sessions


def test_sessions_spread_over_every_server(servers, certificates):
    with connect(servers, certificates) as client:
        sessions = sessions_until_each_of(client, servers, set(range(SERVERS)))
        landed = [server_of(session, servers) for session, _ in sessions]
        assert set(landed) == set(range(SERVERS)), landed
        # A session stays on its server: each still calls.
        for session, libm in sessions:
            assert libm.cos(0.0) == 1.0
            session.close()


def test_killed_servers_sessions_fail_unavailable_and_new_sessions_go_elsewhere(
        servers, certificates):
    with connect(servers, certificates) as client:
        sessions = [working_session(client) for _ in range(3 * SERVERS)]
        victim = server_of(sessions[0][0], servers)
        servers[victim].process.send_signal(signal.SIGKILL)
        servers[victim].process.wait(timeout=10)

        for session, libm in sessions:
            on_victim = server_of(session, servers) == victim
            start = time.monotonic()
            if on_victim:
                with pytest.raises(ffibox.Error) as failed:
                    libm.cos(0.0)
                assert failed.value.code == "UNAVAILABLE", failed.value
            else:
                assert libm.cos(0.0) == 1.0
            assert time.monotonic() - start < 4.0  # a lost server's wait is the call's deadline

        others = set(range(SERVERS)) - {victim}
        fresh = sessions_until_each_of(client, servers, others, at_least=2 * SERVERS)
        landed = {server_of(session, servers) for session, _ in fresh}
        assert landed == others
        for session, _ in sessions + fresh:
            session.close()


@contextlib.contextmanager
def not_serving_server(certificates, health_pb2):
    """A gRPC server with the ffibox servers' certificate whose health is NOT_SERVING and
    which has no ffibox service (a session there fails UNIMPLEMENTED); yields its address."""
    stop = threading.Event()
    not_serving = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)

    def watch(request, context):
        yield not_serving
        while context.is_active() and not stop.wait(0.05):
            pass

    handlers = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            lambda request, context: not_serving,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString),
        "Watch": grpc.unary_stream_rpc_method_handler(
            watch, request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handlers])
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(certificates.read("server.key"), certificates.read("server.pem"))]))
    server.start()
    try:
        yield "127.0.0.1:%d" % port
    finally:
        stop.set()
        server.stop(grace=None)


def test_a_server_not_serving_gets_no_session(servers, certificates, standard_stubs):
    """Client-side health checks: a reachable server whose health is not SERVING is left
    out of the rotation (without them, a third of the sessions would go to it)."""
    health_pb2, _ = standard_stubs
    with not_serving_server(certificates, health_pb2) as not_serving, \
            connect(servers[:2], certificates, not_serving) as client:
        sessions = sessions_until_each_of(client, servers, {0, 1})
        assert {server_of(session, servers) for session, _ in sessions} == {0, 1}
        for session, _ in sessions:
            session.close()


def test_wrong_token_is_refused_by_every_server(servers, certificates):
    target = "ipv4:" + ",".join(server.tcp_address for server in servers)
    with ffibox.connect(target, timeout=5, token="not-the-token-0123456789abcdef",
                        root_certificates=certificates.ca_pem,
                        server_name="localhost") as client:
        with pytest.raises(ffibox.Error) as refused:
            client.session()
        assert refused.value.code == "UNAUTHENTICATED"


def test_untrusted_certificate_authority_does_not_connect(servers, tmp_path):
    other = Certificates(tmp_path)
    target = "ipv4:" + ",".join(server.tcp_address for server in servers)
    with pytest.raises(ffibox.Error) as unreachable:
        ffibox.connect(target, timeout=2, token=TOKEN, root_certificates=other.ca_pem,
                       server_name="localhost")
    assert unreachable.value.code == "UNAVAILABLE"


def test_token_without_tls_is_refused_before_anything_is_sent():
    """ffiboxd serves TCP only with TLS: a token on a plaintext TCP channel could only reach
    someone else."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        target = "127.0.0.1:%d" % listener.getsockname()[1]
        with pytest.raises(ValueError, match="only over TLS") as refused:
            ffibox.connect(target, timeout=1, token=TOKEN, tls=False)
        assert TOKEN not in str(refused.value)
        with pytest.raises(socket.timeout):
            listener.accept()


def test_tls_to_a_unix_socket_is_refused(server):
    """ffiboxd's unix sockets are plaintext: TLS there would only time out as 'no ffiboxd
    answers'."""
    with pytest.raises(ValueError, match="TLS is for TCP targets"):
        ffibox.connect(server.address, timeout=1, tls=True)
