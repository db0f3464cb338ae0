"""FFIBOX_ADDRESS naming a server over TCP: the Python client reaches that server, as the
CLI and the Node client do, and never puts a private ffiboxd of its own in its place. A real
ffiboxd on loopback TCP with TLS (a throwaway CA made by openssl) and a bearer token."""
import socket

import pytest

from conftest import Server, certificates_with_token

import ffibox

TOKEN = "default-address-token-0123456789"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return certificates_with_token(tmp_path_factory.mktemp("tcp_default_address_tls"), TOKEN)


@pytest.fixture(scope="module")
def tcp_server(certificates):
    server = Server("--config=" + certificates.path("ffiboxd.conf"), tls=certificates)
    yield server
    server.stop()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_tcp_target_in_ffibox_address_is_the_server_used(tcp_server, certificates,
                                                            monkeypatch):
    monkeypatch.setenv("FFIBOX_ADDRESS", tcp_server.tcp_address)
    with ffibox.connect(token=TOKEN, root_certificates=certificates.ca_pem,
                        server_name="localhost") as client, client.session() as session:
        assert client.address == tcp_server.tcp_address
        assert not client.private
        # ffiboxd numbers its sessions "<its pid>-<n>": this one runs on that server.
        assert session.session_id.split("-")[0] == str(tcp_server.process.pid)
        assert session.CDLL("libc.so.6").abs(-7) == 7


def test_a_tcp_target_in_ffibox_address_that_does_not_answer_is_unavailable(monkeypatch):
    address = "127.0.0.1:%d" % unused_port()
    monkeypatch.setenv("FFIBOX_ADDRESS", address)
    with pytest.raises(ffibox.Error) as unavailable:
        ffibox.connect(timeout=0.3)
    assert unavailable.value.code == "UNAVAILABLE"
    assert address in str(unavailable.value) and "FFIBOX_ADDRESS" in str(unavailable.value)
