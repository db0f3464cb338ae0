"""Finds a server for clients given no address: FFIBOX_ADDRESS, the default socket, or a
private ffiboxd started for this process and tied to its life."""
import atexit
import os
import shutil
import subprocess
import tempfile
import threading
import weakref
from typing import List, Optional

from ffibox import _settings
from ffibox.errors import Error

_lock = threading.RLock()  # re-entrant: see ffibox._default._lock
_starting = False  # the thread holding _lock starts the private server now
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


def _install_prefix() -> Optional[str]:
    """The prefix recorded when this package was built (setup.py), None in a checkout."""
    try:
        from ffibox._installed import PREFIX
    except ImportError:
        return None
    return PREFIX


def find_server_binary() -> str:
    """ffiboxd via FFIBOX_SERVER; then, for an installed package, PATH and the install
    prefix's bin; for a checkout, the checkout's own build output and then PATH (its client
    and its server are built from one revision, and an installed ffiboxd must not stand in
    for the one under test)."""
    candidates: List[str] = []
    if os.environ.get("FFIBOX_SERVER"):
        candidates.append(os.environ["FFIBOX_SERVER"])
    on_path = shutil.which("ffiboxd")
    prefix = _install_prefix()
    if prefix is not None:
        candidates += [on_path] if on_path else []
        candidates.append(os.path.join(prefix, "bin", "ffiboxd"))
    else:
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))))
        candidates.append(os.path.join(repo, "bazel-bin", "server", "ffiboxd"))
        candidates += [on_path] if on_path else []
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "ffibox: no server to start (no ffiboxd on PATH, nor at %s): set FFIBOX_ADDRESS to a "
        "running ffiboxd, or FFIBOX_SERVER to the ffiboxd binary, or install it "
        "(scripts/install.sh, docs/install.md) or build it (bazel build //server:ffiboxd "
        "//server:ffibox-worker)" % ", ".join(candidates))


class PrivateServer:
    """An ffiboxd on an owner-only unix socket, killed when this process ends in any way.

    It runs as the user, for the user: it may load any library the user can read (the
    broker opens the file and hands the worker its descriptor), while each worker stays
    fully jailed (its filesystem view holds only the system libraries and data). Its log is
    `ffiboxd.log` in its private directory; a failed start raises with the log's last lines.
    """

    def __init__(self, binary: str) -> None:
        # $FFIBOX_MEMORY_LIMIT: its sessions' memory cap (4 GiB by default), which sessions
        # may only lower. Read first: a value that means nothing leaves nothing behind.
        memory = _settings.memory_limit()
        base = os.environ.get("XDG_RUNTIME_DIR")
        if not base or not os.access(base, os.W_OK):
            base = None
        self.owner = os.getpid()  # a forked child's copy is this process's server
        self.directory = tempfile.mkdtemp(prefix="ffibox-private-", dir=base)
        os.chmod(self.directory, 0o700)
        self.address = "unix:" + os.path.join(self.directory, "ffiboxd.sock")
        self.log_path = os.path.join(self.directory, "ffiboxd.log")
        # --allow_root=/ admits any library the user can open (ffiboxd opens it as the user);
        # it adds nothing to the workers' view. --exit_with_parent ties the server's life to
        # this process without running Python code between fork and exec (a forked child
        # must not import anything: another thread may hold the import lock).
        # --allow_env=*: which variables reach the workers is this process's choice
        # (FFIBOX_ENV, connect(env=...); none by default).
        # --scratch_root: sessions may ask for a scratch directory (FFIBOX_SCRATCH=1).
        # --waive_jail_layer=cgroup: an ordinary user's server usually may not make cgroups
        # (it does when it can: a waiver applies only to a layer the host cannot provide);
        # the waiver is reported in session.waived_jail_layers.
        # --private_directory: the server removes this directory when it shuts down, so it
        # does not outlive a process that was killed (which runs no atexit hook).
        self.command = [binary, "--listen=" + self.address, "--allow_root=/",
                        "--allow_env=*", "--exit_with_parent",
                        "--private_directory=" + self.directory,
                        "--scratch_root=" + os.path.join(self.directory, "scratch"),
                        "--waive_jail_layer=cgroup"]
        if memory is not None:
            self.command.append("--session_memory_bytes=%d" % memory)
        self.process: Optional[subprocess.Popen] = None
        # The clients connected to it (ffibox.client.Client), closed before it stops at exit.
        self.clients: "weakref.WeakSet" = weakref.WeakSet()
        self._ready = threading.Event()
        self._first_line = ""
        # PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so the child is
        # started from a daemon thread that lives until the process does (it drains stdout).
        self._thread = threading.Thread(target=self._run, name="ffibox-private-server",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if "listening on" not in self._first_line:
            # Killed, not asked to stop: a server that starts listening meanwhile would take
            # the request to stop for a shutdown after serving, and remove its log.
            self.stop(keep_log=True)
            raise RuntimeError(
                "ffibox: the private ffiboxd (%s) did not start: %s\nits log (%s) ends with:\n%s"
                % (binary, self._first_line.strip() or "no output", self.log_path,
                   self.log_tail()))
        atexit.register(self._stop_at_exit)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        try:
            with open(self.log_path, "r", errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError as error:
            return "(cannot read the log: %s)" % error

    def _run(self) -> None:
        try:
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=log, text=True, close_fds=True)
        except OSError as error:
            self._first_line = str(error)
            self._ready.set()
            return
        self._first_line = self.process.stdout.readline()
        self._ready.set()
        for _ in self.process.stdout:
            pass
        self.process.wait()

    def running(self) -> bool:
        """Whether the server still runs. A forked child sees its parent's server, which it
        cannot wait for (it is not the child's child): it asks the kernel instead."""
        if self.process is None:
            return True
        if os.getpid() == self.owner:
            return self.process.poll() is None
        try:
            os.kill(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return os.path.exists(self.address[len("unix:"):])

    def _stop_at_exit(self) -> None:
        # This hook was registered after ffibox._stream's, so it runs first: the sessions'
        # streams are closed here, before the server is asked to stop, or it would wait out
        # its whole drain deadline (2 s) for them at every exit.
        from ffibox import _stream
        _stream._close_streams_at_exit()
        # And its clients' channels: one left open holds a call the server's shutdown waits
        # for (gRPC's own, once its sessions ended) until that deadline too.
        for client in list(self.clients):
            client.close()
        self.stop()

    def stop(self, keep_log: bool = False) -> None:
        """Terminates the server (and with it its workers) and removes its directory; with
        `keep_log` (a start that failed), kills it and keeps the directory with the log."""
        if os.getpid() != self.owner:
            return  # a forked child's copy (its atexit hooks run too): the parent's server
        process = self.process
        if process is not None and process.poll() is None and keep_log:
            process.kill()
            process.wait()
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if keep_log:
            return
        shutil.rmtree(self.directory, ignore_errors=True)


def private_server() -> PrivateServer:
    """The process's private server, started on first use."""
    global _private, _starting
    with _lock:
        if _private is None or not _private.running():
            if _starting:
                raise Error("FAILED_PRECONDITION: the private server cannot be used from a "
                            "signal handler or finalizer that ran while this thread started "
                            "it", "FAILED_PRECONDITION")
            _starting = True
            try:
                _private = PrivateServer(find_server_binary())
            finally:
                _starting = False
        return _private


def _after_fork_in_child() -> None:
    global _lock, _starting
    _lock = threading.RLock()  # another thread of the parent may have held it
    _starting = False


os.register_at_fork(after_in_child=_after_fork_in_child)
