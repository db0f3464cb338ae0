"""Finds a server for clients given no address: FFIBOX_ADDRESS, the default socket, or a
private ffiboxd started for this process and tied to its life."""
import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from typing import List, Optional

_PR_SET_PDEATHSIG = 1
_lock = threading.Lock()
_private: Optional["PrivateServer"] = None


def default_address() -> str:
    """The address clients and ffiboxd agree on (docs/configuration.md)."""
    if os.environ.get("FFIBOX_ADDRESS"):
        return os.environ["FFIBOX_ADDRESS"]
    if os.geteuid() == 0:
        return "unix:/run/ffibox/ffiboxd.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return "unix:%s/ffibox/ffiboxd.sock" % runtime
    return "unix:/tmp/ffibox-%d/ffiboxd.sock" % os.getuid()


def find_server_binary() -> str:
    """ffiboxd via FFIBOX_SERVER, then PATH, then the repository's build output."""
    candidates: List[str] = []
    if os.environ.get("FFIBOX_SERVER"):
        candidates.append(os.environ["FFIBOX_SERVER"])
    on_path = shutil.which("ffiboxd")
    if on_path:
        candidates.append(on_path)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    candidates.append(os.path.join(repo, "bazel-bin", "server", "ffiboxd"))
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "ffibox: no server to start: set FFIBOX_ADDRESS to a running ffiboxd, or FFIBOX_SERVER "
        "to the ffiboxd binary, or build it (bazel build //server:ffiboxd //server:ffibox-worker)")


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel sends SIGKILL to ffiboxd when the
    # thread that started it dies (that thread lives as long as this process, see below).
    # The stdlib ctypes is the right tool here: this is the client's own process.
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class PrivateServer:
    """An ffiboxd on an owner-only unix socket, killed when this process ends in any way."""

    def __init__(self, binary: str) -> None:
        base = os.environ.get("XDG_RUNTIME_DIR")
        if not base or not os.access(base, os.W_OK):
            base = None
        self.directory = tempfile.mkdtemp(prefix="ffibox-private-", dir=base)
        os.chmod(self.directory, 0o700)
        self.address = "unix:" + os.path.join(self.directory, "ffiboxd.sock")
        # --allow_root=/: this server runs as the user, for the user, so it may load whatever
        # the user's own ctypes could; the jail still confines what the library then does.
        self.command = [binary, "--listen=" + self.address, "--allow_root=/"]
        self.process: Optional[subprocess.Popen] = None
        self._ready = threading.Event()
        self._first_line = ""
        # PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so the child is
        # started from a daemon thread that lives until the process does (it drains stdout).
        self._thread = threading.Thread(target=self._run, name="ffibox-private-server",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if "listening on" not in self._first_line:
            self.stop()
            raise RuntimeError("ffibox: the private ffiboxd (%s) did not start: %r"
                               % (binary, self._first_line))
        atexit.register(self.stop)

    def _run(self) -> None:
        try:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True, preexec_fn=_die_with_parent)
        except OSError as error:
            self._first_line = str(error)
            self._ready.set()
            return
        self._first_line = self.process.stdout.readline()
        self._ready.set()
        for _ in self.process.stdout:
            pass
        self.process.wait()

    def stop(self) -> None:
        """Terminates the server (and with it its workers) and removes its directory."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def private_server() -> PrivateServer:
    """The process's private server, started on first use."""
    global _private
    with _lock:
        if _private is None or (_private.process is not None
                                and _private.process.poll() is not None):
            _private = PrivateServer(find_server_binary())
        return _private
