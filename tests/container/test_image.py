"""The container image of deploy/Containerfile, run with the security context of
deploy/k8s/ffiboxd.yaml, checked from outside the container as a client would use it.

deploy/check-container.sh builds the image and runs these tests; scripts/test.sh does not
(it needs a container engine, and building the image takes a quarter of an hour). The
container shares the host's network so that its loopback ports are this machine's; the
jail's own empty network namespace is made inside it, as in a pod.
"""
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python"))
from conftest import Certificates  # noqa: E402

import grpc  # noqa: E402

import ffibox  # noqa: E402
from ffibox import ctypes  # noqa: E402

ENGINE = os.environ.get("CONTAINER_ENGINE") or shutil.which("podman") or shutil.which("docker")
IMAGE = os.environ.get("FFIBOX_IMAGE", "ffibox/ffiboxd:check")
LIBM = "/usr/lib/x86_64-linux-gnu/libm.so.6"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


def pod_security():
    """The pod's securityContext (deploy/k8s/ffiboxd.yaml) as the engine's flags."""
    unmasked_proc = ("--security-opt=systempaths=unconfined"
                     if os.path.basename(ENGINE) == "docker" else "--security-opt=unmask=ALL")
    return ["--user=0:0", "--cap-drop=ALL", "--cap-add=SETUID,SETGID,KILL",
            "--security-opt=no-new-privileges", "--security-opt=seccomp=unconfined",
            "--security-opt=apparmor=unconfined", unmasked_proc, "--read-only",
            "--tmpfs=/run/ffibox", "--tmpfs=/tmp", "--network=host"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """The pod's files: TLS (secret ffiboxd-tls), a token (secret ffiboxd-tokens) and the
    ConfigMap's configuration with loopback ports and libc's directory allowed."""
    assert ENGINE, "no podman or docker (CONTAINER_ENGINE names one)"
    directory = str(tmp_path_factory.mktemp("container"))
    certificates = Certificates(directory)
    tls = os.path.join(directory, "tls")
    tokens = os.path.join(directory, "tokens")
    os.mkdir(tls)
    os.mkdir(tokens)
    shutil.copy(certificates.path("server.pem"), os.path.join(tls, "tls.crt"))
    shutil.copy(certificates.path("server.key"), os.path.join(tls, "tls.key"))
    token = secrets.token_hex(16)
    with open(os.path.join(tokens, "app"), "w") as f:
        f.write(token)
    port, health_port = free_port(), free_port()
    conf = os.path.join(directory, "ffiboxd.conf")
    with open(conf, "w") as f:
        f.write('listeners { tcp_address: "127.0.0.1:%d" tls { cert_file: '
                '"/etc/ffibox/tls/tls.crt" key_file: "/etc/ffibox/tls/tls.key" } }\n'
                'identities { name: "app" token_file: "/etc/ffibox/tokens/app" }\n'
                'allowed_library_roots: "/usr/lib/x86_64-linux-gnu"\n'
                'jail { waive_layers: "cgroup" }\n'
                'worker_pool { size: 2 }\n' % port)
    mounts = ["--volume=%s:/etc/ffibox/ffiboxd.conf:ro" % conf,
              "--volume=%s:/etc/ffibox/tls:ro" % tls,
              "--volume=%s:/etc/ffibox/tokens:ro" % tokens]
    return {"certificates": certificates, "token": token, "port": port,
            "health_port": health_port, "mounts": mounts}


def run_flags(deployment):
    return pod_security() + deployment["mounts"]


@pytest.fixture(scope="module")
def server(deployment):
    """ffiboxd in the container, started as the Deployment starts it."""
    name = "ffibox-check-%d" % os.getpid()
    subprocess.run([ENGINE, "run", "--detach", "--name=" + name] + run_flags(deployment) +
                   [IMAGE, "--config=/etc/ffibox/ffiboxd.conf",
                    "--health_listen=127.0.0.1:%d" % deployment["health_port"]],
                   check=True, capture_output=True)
    yield name
    subprocess.run([ENGINE, "rm", "--force", name], capture_output=True)


def connect(deployment, token=None):
    return ffibox.connect("127.0.0.1:%d" % deployment["port"], timeout=30,
                          token=token or deployment["token"],
                          root_certificates=deployment["certificates"].ca_pem,
                          server_name="localhost")


def health(deployment, service):
    """grpc.health.v1.Health/Check on the plaintext probe port, as a kubelet asks it."""
    name = service.encode()
    with grpc.insecure_channel("127.0.0.1:%d" % deployment["health_port"]) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        deadline = time.monotonic() + 30
        while True:
            try:
                # HealthCheckRequest{service}; the answer is HealthCheckResponse{status}.
                return check(b"\n" + bytes([len(name)]) + name, timeout=5)
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def test_the_jail_check_passes_with_the_pods_security_context(deployment):
    check = subprocess.run([ENGINE, "run", "--rm"] + run_flags(deployment) +
                           [IMAGE, "--config=/etc/ffibox/ffiboxd.conf", "--check-jail"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    # One line per layer after the first: every one active but the cgroup layer, which the
    # pod's configuration waives (a container's cgroup tree is read-only).
    states = dict(line.split(":", 1) for line in check.stdout.splitlines()[1:] if ":" in line)
    assert len(states) == 14, check.stdout
    for label, state in states.items():
        expected = "waived" if label.startswith("cgroup") else "active"
        assert state.strip().startswith(expected), check.stdout
    assert "all requested layers are active" in check.stdout


def test_the_readiness_probe_sees_serving(deployment, server):
    assert health(deployment, "ffibox.v1.Ffibox") == b"\x08\x01"  # SERVING
    assert health(deployment, "") == b"\x08\x01"


def test_a_client_calls_through_tls_with_its_token(deployment, server):
    client = connect(deployment)
    with client.session() as session:
        libm = session.CDLL(LIBM)
        libm.cos.restype = ctypes.c_double
        libm.cos.argtypes = [ctypes.c_double]
        assert libm.cos(0.5) == pytest.approx(0.8775825618903728, abs=0)


def test_a_wrong_token_is_refused(deployment, server):
    with pytest.raises(ffibox.Error) as refused:
        with connect(deployment, token="not-the-token").session() as session:
            session.CDLL(LIBM)
    assert refused.value.code == "UNAUTHENTICATED"


def test_a_crash_in_the_library_kills_only_its_worker(deployment, server):
    client = connect(deployment)
    with client.session() as session:
        libc = session.CDLL(LIBC)
        with pytest.raises(ffibox.WorkerCrashed) as crashed:
            libc.abort()
        assert crashed.value.signal == signal.SIGABRT
        libm = session.CDLL(LIBM)
        libm.cos.restype = ctypes.c_double
        libm.cos.argtypes = [ctypes.c_double]
        assert libm.cos(0.0) == 1.0


def test_sigterm_stops_the_container_cleanly(deployment, server):
    started = time.monotonic()
    subprocess.run([ENGINE, "stop", "--time=10", server], check=True, capture_output=True)
    assert time.monotonic() - started < 10
    state = subprocess.run([ENGINE, "inspect", "--format={{.State.ExitCode}}", server],
                           check=True, capture_output=True, text=True)
    assert state.stdout.strip() == "0"
