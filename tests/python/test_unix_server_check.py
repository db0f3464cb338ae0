"""Whom the Python client agrees to talk to on a unix socket: only this user or root. Real
directories, real sockets and real listening processes (unix_squatter.py), some of them run
as nobody; those tests need root and fail without it."""
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

import ffibox
from ffibox._unix_server_check import check_unix_server

NOBODY = 65534
SQUATTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unix_squatter.py")


@pytest.fixture
def as_root() -> None:
    # Failed, not skipped, as another user: scripts/test.sh runs as root, as these tests must
    # to act as another user.
    if os.geteuid() != 0:
        pytest.fail("needs root to act as another user")


class Squatter:
    """unix_squatter.py listening at `path`, as `uid` (-1: this user)."""

    def __init__(self, path: str, uid: int = -1, bind_first: bool = False) -> None:
        command = [sys.executable, SQUATTER, path, "--uid=%d" % uid]
        if bind_first:
            command.append("--bind-first")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        self.output = ""
        if not self.wait_for("listening\n", 10):
            self.stop()
            raise RuntimeError("unix_squatter did not listen on %s: %r" % (path, self.output))

    def _read_some(self, deadline: float) -> bool:
        ready, _, _ = select.select([self.process.stdout], [], [],
                                    max(deadline - time.monotonic(), 0))
        if not ready:
            return False
        data = os.read(self.process.stdout.fileno(), 4096)
        self.output += data.decode()
        return bool(data)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if not self._read_some(deadline):
                return False
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def report(self) -> str:
        """Waits (up to 5 s) until every accepted connection is closed, stops the squatter and
        returns all it printed: "accepted", "received N" per read of N bytes, "closed"."""
        deadline = time.monotonic() + 5
        while (self.output.count("accepted\n") != self.output.count("closed\n")
               and self._read_some(deadline)):
            pass
        self.stop()
        while self._read_some(time.monotonic() + 5):
            pass
        self.process.stdout.close()
        return self.output


@pytest.fixture
def directory():
    """A fresh mode-0700 directory under /tmp (reachable by nobody, short enough for a socket
    path)."""
    path = tempfile.mkdtemp(prefix="ffibox-check-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def squatters():
    started = []

    def start(*args, **kwargs) -> Squatter:
        squatter = Squatter(*args, **kwargs)
        started.append(squatter)
        return squatter

    yield start
    for squatter in started:
        squatter.stop()


@pytest.mark.usefixtures("as_root")
def test_connect_refuses_a_squatter_owning_the_directory_before_sending_anything(
        directory, squatters):
    os.chown(directory, NOBODY, NOBODY)
    socket_path = os.path.join(directory, "ffiboxd.sock")
    squatter = squatters(socket_path, uid=NOBODY)
    address = "unix:" + socket_path
    with pytest.raises(ffibox.UntrustedServer) as refused:
        ffibox.connect(address)
    assert str(refused.value) == (
        "PERMISSION_DENIED: refusing %s: directory %s is owned by uid 65534, not by you (root)"
        % (address, directory))
    assert refused.value.code == "PERMISSION_DENIED"
    assert isinstance(refused.value, ffibox.Error)
    assert isinstance(refused.value, PermissionError)
    assert "received" not in squatter.report()


@pytest.mark.usefixtures("as_root")
def test_the_default_address_refuses_a_squatter_instead_of_starting_a_private_server(
        directory, squatters, monkeypatch):
    os.chown(directory, NOBODY, NOBODY)
    socket_path = os.path.join(directory, "ffiboxd.sock")
    squatter = squatters(socket_path, uid=NOBODY)
    monkeypatch.setenv("FFIBOX_ADDRESS", "unix:" + socket_path)
    with pytest.raises(ffibox.UntrustedServer) as refused:
        ffibox.connect()
    assert "directory %s is owned by uid 65534" % directory in str(refused.value)
    assert "received" not in squatter.report()


@pytest.mark.usefixtures("as_root")
def test_connect_refuses_a_listener_running_as_another_user(directory, squatters):
    socket_path = os.path.join(directory, "ffiboxd.sock")
    squatter = squatters(socket_path, uid=NOBODY, bind_first=True)
    address = "unix:" + socket_path
    with pytest.raises(ffibox.UntrustedServer) as refused:
        ffibox.connect(address)
    assert str(refused.value) == (
        "PERMISSION_DENIED: refusing %s: the process listening on %s (pid %d) runs as uid "
        "65534, not as you (root)" % (address, socket_path, squatter.process.pid))
    assert "received" not in squatter.report()


@pytest.mark.usefixtures("as_root")
def test_connect_refuses_a_socket_owned_by_another_user(directory, squatters):
    socket_path = os.path.join(directory, "ffiboxd.sock")
    squatters(socket_path)
    os.lchown(socket_path, NOBODY, NOBODY)
    with pytest.raises(ffibox.UntrustedServer, match="socket %s is owned by uid 65534"
                       % socket_path):
        ffibox.connect("unix:" + socket_path)


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770], ids=["0777", "1777", "0770"])
def test_connect_refuses_a_directory_other_users_can_write_to(directory, squatters, mode):
    os.chmod(directory, mode)
    socket_path = os.path.join(directory, "ffiboxd.sock")
    squatter = squatters(socket_path)
    with pytest.raises(ffibox.UntrustedServer) as refused:
        ffibox.connect("unix:" + socket_path)
    assert ("directory %s is writable by other users (mode %04o)" % (directory, mode)
            in str(refused.value))
    assert "received" not in squatter.report()


def test_the_check_sends_nothing_but_a_client_that_passes_does(directory, squatters):
    socket_path = os.path.join(directory, "ffiboxd.sock")
    squatter = squatters(socket_path)
    check_unix_server("unix:" + socket_path, 5)
    assert squatter.wait_for("closed\n", 5)
    assert squatter.report() == "listening\naccepted\nclosed\n"

    # A listener of this user is trusted, so the client goes on to speak gRPC to it: that is
    # what the refusals above keep a squatter from seeing.
    os.unlink(socket_path)
    squatter = squatters(socket_path)
    try:
        ffibox.connect("unix:" + socket_path, timeout=1).close()
    except ffibox.Error:
        pass  # the squatter never answers like ffiboxd
    assert "received" in squatter.report()


def test_nothing_listening_is_unavailable(directory):
    with pytest.raises(ffibox.Error) as unavailable:
        ffibox.connect("unix:" + os.path.join(directory, "ffiboxd.sock"), timeout=0.2)
    assert unavailable.value.code == "UNAVAILABLE"
    assert not isinstance(unavailable.value, ffibox.UntrustedServer)


def test_own_server_is_trusted_and_serves(server):
    with ffibox.connect(server.address) as client, client.session() as session:
        assert session.CDLL("libc.so.6").abs(-7) == 7


def test_without_a_server_the_private_one_passes_the_check(directory, monkeypatch):
    # Nothing listens at the (trusted) default address, so connect() starts a private ffiboxd
    # and checks its socket like any other.
    monkeypatch.setenv("FFIBOX_ADDRESS", "unix:" + os.path.join(directory, "ffiboxd.sock"))
    with ffibox.connect() as client, client.session() as session:
        assert client.address != os.environ["FFIBOX_ADDRESS"]
        assert session.CDLL("libc.so.6").abs(-7) == 7
