"""The gRPC channel a client talks to ffiboxd through: TLS, the bearer token, and load
balancing over several servers.

A unix-socket target is one local server: a plaintext channel (the socket's owner checks in
`_unix_server_check` come first), pick_first. Any other target (`host:port`,
`ipv4:127.0.0.1:7001,127.0.0.1:7002`, `dns:///ffibox.example:7000`) may name several
servers: the channel spreads sessions over every address the name resolves to with gRPC's
`round_robin` policy and sends new sessions only to servers whose `grpc.health.v1` status
for `ffibox.v1.Ffibox` is SERVING (gRPC's client-side health checking). A session is one
stream, so it stays on the server it started on.
"""
import json
import os
from typing import Optional, Union

import grpc

from ffibox.errors import Error

# gRPC's own switch, read as gRPC reads it when imported: with it, a forked child may make
# channels of its own (the parent's stay the parent's).
GRPC_FORK_SUPPORT = os.environ.get("GRPC_ENABLE_FORK_SUPPORT", "0").lower() in (
    "yes", "true", "1")
_channels_made = False
_forked_from: Optional[int] = None  # in a forked child of a process that made channels


def _after_fork_in_child() -> None:
    global _forked_from
    if _channels_made:
        _forked_from = os.getppid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def fork_advice() -> str:
    """What a forked child of a process that used ffibox may do instead."""
    if GRPC_FORK_SUPPORT:
        return "connect again in this process (ffibox.connect())"
    return ("gRPC does not work in a child forked from a process that used it unless "
            "GRPC_ENABLE_FORK_SUPPORT=1 was set before gRPC was imported: set it, or start "
            "children with multiprocessing's 'spawn' or 'forkserver' method")


def check_usable_here() -> None:
    """Raises FAILED_PRECONDITION in a forked child where gRPC would hang or crash (its
    channels then share the parent's polling state: using one even brought the parent
    down)."""
    if _forked_from is not None and not GRPC_FORK_SUPPORT:
        raise Error("FAILED_PRECONDITION: this process was forked from process %d, which "
                    "used ffibox: %s" % (_forked_from, fork_advice()), "FAILED_PRECONDITION")

# The service the health checks of a load-balanced channel ask about.
FFIBOX_SERVICE = "ffibox.v1.Ffibox"
LOAD_BALANCING_POLICIES = ("round_robin", "pick_first")

Pem = Union[bytes, str, None]


# gRPC keepalive, as in core/keepalive.h: a ping every 30 s while a session is open, the
# connection ended when one is not acknowledged within 20 s.
KEEPALIVE = 30.0
KEEPALIVE_TIMEOUT = 20.0


class ChannelSettings:
    """How to reach servers beyond the local unix socket.

    `tls`: None turns TLS on for TCP targets (ffiboxd serves TCP only with TLS) and off for
    unix sockets (TLS to one is a ValueError); `root_certificates`: PEM CAs for the
    servers' certificates (None: the system's); `certificate_chain` / `private_key`: a PEM
    client certificate and its key, for mutual TLS; `server_name`: the name to check in the
    servers' certificates instead of the target's host (one name for every server behind a
    list); `token`: sent as `authorization: Bearer <token>` on every session;
    `load_balancing`: the gRPC policy for TCP targets, "round_robin" (default) or
    "pick_first"; `health_check`: with round_robin,
    only servers that report SERVING get sessions; `keepalive` / `keepalive_timeout`
    (seconds): while a session is open the client pings the server that often and ends the
    connection when a ping is not acknowledged in time, so a server that stopped answering
    (its host gone, its process stopped) fails the requests in flight with UNAVAILABLE
    instead of leaving them waiting forever (ffiboxd takes pings as often as once a second;
    core/keepalive.h).
    """

    def __init__(self, *, tls: Optional[bool] = None, root_certificates: Pem = None,
                 certificate_chain: Pem = None, private_key: Pem = None,
                 server_name: Optional[str] = None, token: Optional[str] = None,
                 load_balancing: str = "round_robin", health_check: bool = True,
                 keepalive: float = KEEPALIVE, keepalive_timeout: float = KEEPALIVE_TIMEOUT
                 ) -> None:
        if not keepalive > 0 or not keepalive_timeout > 0:
            raise ValueError("keepalive and keepalive_timeout must be positive seconds")
        self.keepalive = keepalive
        self.keepalive_timeout = keepalive_timeout
        if load_balancing not in LOAD_BALANCING_POLICIES:
            raise ValueError("load_balancing must be one of %s, not %r"
                             % (", ".join(LOAD_BALANCING_POLICIES), load_balancing))
        if (certificate_chain is None) != (private_key is None):
            raise ValueError("a client certificate needs both certificate_chain and private_key")
        self.tls = tls
        self.root_certificates = _pem(root_certificates)
        self.certificate_chain = _pem(certificate_chain)
        self.private_key = _pem(private_key)
        self.server_name = server_name
        self.token = token
        self.load_balancing = load_balancing
        self.health_check = health_check

    def wants_tls(self, address: str) -> bool:
        if self.tls is not None:
            return self.tls
        if self.root_certificates or self.certificate_chain:
            return True
        return not is_unix_target(address)


def _pem(value: Pem) -> Optional[bytes]:
    return value.encode("ascii") if isinstance(value, str) else value


def is_unix_target(address: str) -> bool:
    return address.startswith("unix:") or address.startswith("unix-abstract:")


def service_config(settings: ChannelSettings) -> str:
    """The service config of a TCP target: its load-balancing policy and, with round_robin,
    health checking of the ffibox service."""
    config = {"loadBalancingConfig": [{settings.load_balancing: {}}]}
    if settings.health_check and settings.load_balancing == "round_robin":
        config["healthCheckConfig"] = {"serviceName": FFIBOX_SERVICE}
    return json.dumps(config)


class _BearerToken(grpc.StreamStreamClientInterceptor, grpc.UnaryUnaryClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call. (Call credentials would refuse a
    plaintext unix-socket channel, where a token selects another identity than the local
    one.)"""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", "Bearer " + token)

    def _with_token(self, details):
        metadata = list(details.metadata or ()) + [self._header]
        return _CallDetails(details, metadata)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, details, metadata) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


def make_channel(address: str, settings: Optional[ChannelSettings] = None):
    """A channel to `address` that takes replies of any size (the server caps what it sends,
    SessionOpened.max_message_bytes, and a call's INOUT blocks come back whole), with
    `settings`' TLS, token and, for TCP targets, load balancing. ValueError for a token to a
    TCP target without TLS, and for TLS to a unix socket."""
    global _channels_made
    check_usable_here()
    _channels_made = True
    settings = settings or ChannelSettings()
    options = [("grpc.max_receive_message_length", -1),
               ("grpc.keepalive_time_ms", max(1, int(settings.keepalive * 1000))),
               ("grpc.keepalive_timeout_ms", max(1, int(settings.keepalive_timeout * 1000))),
               # A session may wait long for a call's answer with nothing else sent.
               ("grpc.http2.max_pings_without_data", 0)]
    if not is_unix_target(address):
        options.append(("grpc.service_config", service_config(settings)))
        # The policy above is the client's; DNS TXT records do not override it.
        options.append(("grpc.service_config_disable_resolution", 1))
    if is_unix_target(address) and settings.wants_tls(address):
        raise ValueError("TLS is for TCP targets; ffiboxd's unix socket %s is plaintext, "
                         "checked by its owner instead" % address)
    if settings.token and not is_unix_target(address) and not settings.wants_tls(address):
        raise ValueError("a bearer token is sent to a TCP target only over TLS; %s would get "
                         "it in plaintext (ffiboxd serves TCP only with TLS)" % address)
    if settings.wants_tls(address):
        if settings.server_name:
            options.append(("grpc.ssl_target_name_override", settings.server_name))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=settings.root_certificates,
            private_key=settings.private_key,
            certificate_chain=settings.certificate_chain)
        channel = grpc.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    if settings.token:
        channel = grpc.intercept_channel(channel, _BearerToken(settings.token))
    return channel
