"""The worker jail fails closed: every worker gets every layer, or no worker runs.

Real ffiboxd processes, real jailed workers and a real hostile library
(tests/testlibs/hostile.c) attacking its host: the host's files, another process's memory,
the broker's log, the broker's command line, descriptors it should not hold. Each test
asserts what a user would check: that the attack failed and that the session says which
layers its workers have. These tests need root (one of them acts as an ordinary user).
"""
import ctypes
import errno
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time

import pytest

import ffibox
from conftest import BIN, HTTP2_PREFACE, ROOT, TEST_LIB, Server, frame_types
from hostile_client import HostileLibrary

HOSTILE_LIB = os.path.join(BIN, "tests", "testlibs", "libffibox_hostile.so")
FFIBOXD = os.path.join(BIN, "server", "ffiboxd")
WORKER = os.path.join(BIN, "server", "ffibox-worker")
INIT = os.path.join(BIN, "server", "ffibox-init")
PROTO = os.path.join(BIN, "proto")
CLIENT = os.path.join(ROOT, "client", "python")
HOSTILE_CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile_client.py")
PYTHON = "/usr/bin/python3"

# What SessionOpened.jail_layers must list on this host, which provides every layer.
EVERY_LAYER = ["user", "pid", "net", "ipc", "uts", "mount", "filesystem", "proc", "seccomp"]
# As root the cgroup layer is there too; an ordinary user's private server waives it by name
# when the host delegates no cgroups to users (this one does not).
EVERY_ROOT_LAYER = EVERY_LAYER + ["cgroup"]
# The unprivileged user the ordinary-user tests run as (created when missing, and kept).
ORDINARY_USER = "ffibox-t1"
# The lines of `ffiboxd --check-jail`, one per layer.
CHECK_SANDBOX_LABELS = [
    "user namespace", "pid namespace", "net namespace", "ipc namespace", "uts namespace",
    "mount namespace", "filesystem (pivot_root)", "/proc (fresh, pid namespace only)", "ids",
    "capabilities dropped", "no_new_privs", "rlimits", "seccomp"]
ROOT_DEFAULT_SOCKET = "/run/ffibox/ffiboxd.sock"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests run as root (scripts/test.sh does): they act as other users "
                    "and check a root broker's jail")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail("%s (util-linux, Essential in Debian) is not installed on this host" % name)
    return path


@pytest.fixture
def library_dir():
    """A fresh world-readable directory under /tmp holding a copy of the hostile library and
    a world-readable file the library must still not see ("secret")."""
    directory = tempfile.mkdtemp(prefix="ffibox-hostile-", dir="/tmp")
    os.chmod(directory, 0o755)
    library = os.path.join(directory, "libffibox_hostile.so")
    shutil.copyfile(HOSTILE_LIB, library)
    os.chmod(library, 0o644)
    secret = os.path.join(directory, "secret")
    with open(secret, "w") as f:
        f.write("next to the library, readable by everyone\n")
    os.chmod(secret, 0o644)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def open_hostile(session, path: str) -> HostileLibrary:
    import ctypes
    return HostileLibrary(session.CDLL(path), ctypes)


def layers_missing(layers, every=None) -> list:
    every = every if every is not None else (EVERY_ROOT_LAYER if os.geteuid() == 0
                                             else EVERY_LAYER)
    return [layer for layer in every if layer not in layers]


def descriptor_problems(descriptors: dict, library_inode: int, window: int = 256) -> list:
    """What is wrong with a worker's descriptors (as HostileLibrary.descriptors() reports
    them): 0 is /dev/null, 1 and 2 are pipes (relayed to the client); the worker's own, the
    channel socket, the crash pipe and the descriptor socket, are the top three numbers of
    its open-files window (`window`, server/worker/own_descriptors.h); besides them only the
    loaded library's file, in the window's upper half: the low numbers are the library's."""
    found = {int(fd): tuple(value) for fd, value in descriptors.items()}
    expected = {0: stat.S_IFCHR, 1: stat.S_IFIFO, 2: stat.S_IFIFO, window - 3: stat.S_IFSOCK,
                window - 2: stat.S_IFIFO, window - 1: stat.S_IFSOCK}
    problems = []
    for fd, kind in expected.items():
        if fd not in found:
            problems.append("fd %d is not open" % fd)
        elif found[fd][0] != kind:
            problems.append("fd %d has type 0o%o, not 0o%o" % (fd, found[fd][0], kind))
    for fd, (kind, inode) in sorted(found.items()):
        if fd in expected:
            continue
        if not (kind == stat.S_IFREG and inode == library_inode):
            problems.append("fd %d (type 0o%o, inode %d) is not the library" % (fd, kind, inode))
        elif fd < window // 2:
            problems.append("fd %d, the library's file, is below the window's upper half" % fd)
    return problems


def client_environment(runtime_dir: str, home: str, install: dict) -> dict:
    """A clean environment for a client that has no server address: the default socket is
    empty, so the client starts its private ffiboxd (`install` names the binaries)."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "XDG_RUNTIME_DIR": runtime_dir,
        "PYTHONPATH": install["client"],
        "FFIBOX_SERVER": install["ffiboxd"],
        "FFIBOX_PROTO_PATH": install["proto"],
        "LANG": "C.UTF-8",
    }


def run_hostile_client(environment: dict, wanted: dict, script: str = HOSTILE_CLIENT,
                       user: str = None):
    """Runs hostile_client.py (as `user` via runuser, else as this user) and returns what it
    printed as JSON, and its stderr (where the library's output arrives)."""
    command = ["env", "-i"] + ["%s=%s" % item for item in environment.items()]
    command += [PYTHON, script, json.dumps(wanted)]
    if user is not None:
        command = [require_tool("runuser"), "-u", user, "--"] + command
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/",
                          timeout=120)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, "hostile_client.py failed (%d):\n%s" % (done.returncode, stderr)
    return json.loads(done.stdout.decode().strip().splitlines()[-1]), stderr


def assert_nothing_listens_at(path: str) -> None:
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return
    finally:
        probe.close()
    pytest.fail("a server listens at the default socket %s; the test needs the client to "
                "start its private server" % path)


def assert_hostile_client_was_contained(results: dict, stderr: str, wanted: dict,
                                        as_root: bool = True) -> None:
    """What a user checks after hostile_client.py ran `wanted`: every read and create of
    the library failed and created nothing, neither the client's nor ffiboxd's memory
    opened, the worker held only its own descriptors, the library's output reached the
    client, and the session reported every layer."""
    for path in wanted["read"]:
        assert results["read"][path] in (-errno.ENOENT, -errno.EACCES), (path, results["read"])
    for path, result in results["create"].items():
        assert result < 0, "the library created %s" % path
        assert not os.path.exists(path), "the library created %s" % path
    assert len(results["server_pids"]) == 1, "no private ffiboxd found: %r" % results
    for pid, result in results["open_memory"].items():
        assert result < 0, "the library opened /proc/%s/mem read-write" % pid
    assert descriptor_problems(results["descriptors"], results["library_inode"]) == []
    # What the library printed reached the client (its stderr), nowhere else.
    assert results["output_relayed"]
    assert wanted["stdout_text"] in stderr and wanted["stderr_text"] in stderr
    every = EVERY_ROOT_LAYER if as_root else EVERY_LAYER
    assert layers_missing(results["jail_layers"] or [], every) == [], results["jail_layers"]
    waived = results["waived_jail_layers"] or []
    if as_root:
        assert waived == []
    else:  # nothing but the cgroup layer, and only when the host does not delegate it
        assert all(entry.startswith("cgroup (") for entry in waived), waived
        assert ("cgroup" in results["jail_layers"]) != bool(waived), results


# -- the Python client's default path: a private server, as root ---------------------------

def test_private_server_as_root_contains_a_hostile_library_from_tmp(library_dir):
    require_root()
    assert_nothing_listens_at(ROOT_DEFAULT_SOCKET)
    runtime_dir = tempfile.mkdtemp(prefix="ffibox-runtime-", dir="/tmp")
    planted = "/etc/ffibox-hostile-%d" % os.getpid()
    library = os.path.join(library_dir, "libffibox_hostile.so")
    wanted = {
        "library": library,
        # The view never shows the host's "/", the library's directory or the library.
        "read": ["/etc/shadow", "/etc/passwd", os.path.join(library_dir, "secret"), library],
        "create": [planted, os.path.join(library_dir, "planted")],
        "stdout_text": "hostile stdout %d\n" % os.getpid(),
        "stderr_text": "hostile stderr %d\n" % os.getpid(),
    }
    install = {"client": CLIENT, "ffiboxd": FFIBOXD, "proto": PROTO}
    try:
        results, stderr = run_hostile_client(
            client_environment(runtime_dir, "/root", install), wanted)
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
        if os.path.exists(planted):
            os.unlink(planted)
    assert_hostile_client_was_contained(results, stderr, wanted)
    assert results["read"]["/etc/passwd"] == -errno.ENOENT
    assert results["read"][os.path.join(library_dir, "secret")] == -errno.ENOENT


# -- the same as an ordinary user ----------------------------------------------------------

def local_user(name: str, *useradd_options: str):
    """(uid, gid, home) of user `name`, made by useradd with `useradd_options` and a 0700 home
    directory when missing."""
    require_root()
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run([require_tool("useradd"), "-m", "-s", "/bin/sh", *useradd_options, name],
                       check=True, timeout=60)
        entry = pwd.getpwnam(name)
    os.makedirs(entry.pw_dir, exist_ok=True)
    os.chown(entry.pw_dir, entry.pw_uid, entry.pw_gid)
    os.chmod(entry.pw_dir, 0o700)
    return entry.pw_uid, entry.pw_gid, entry.pw_dir


@pytest.fixture
def ordinary_user():
    """(uid, gid, home) of ORDINARY_USER, created with a home directory when missing."""
    return local_user(ORDINARY_USER)


@pytest.fixture
def user_install():
    """The server, its worker and the jail's init, the stubs, the client, the hostile library and
    hostile_client.py copied into a fresh 0755 directory under /tmp any user can read (the
    build tree lies in root's cache)."""
    directory = tempfile.mkdtemp(prefix="ffibox-install-", dir="/tmp")
    os.chmod(directory, 0o755)
    os.mkdir(os.path.join(directory, "bin"))
    for binary in (FFIBOXD, WORKER, INIT):
        shutil.copy(binary, os.path.join(directory, "bin"))
    only_python = shutil.ignore_patterns("*.runfiles*", "*.so", "*.a", "*.params", "*.o")
    shutil.copytree(os.path.join(PROTO, "ffibox"), os.path.join(directory, "proto", "ffibox"),
                    ignore=only_python)
    shutil.copytree(os.path.join(CLIENT, "ffibox"), os.path.join(directory, "client", "ffibox"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(HOSTILE_LIB, directory)
    shutil.copy(TEST_LIB, directory)
    shutil.copy(HOSTILE_CLIENT, directory)
    for parent, subdirectories, files in os.walk(directory):
        for name in subdirectories:
            os.chmod(os.path.join(parent, name), 0o755)
        for name in files:
            path = os.path.join(parent, name)
            os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)
    yield {
        "directory": directory,
        "ffiboxd": os.path.join(directory, "bin", "ffiboxd"),
        "client": os.path.join(directory, "client"),
        "proto": os.path.join(directory, "proto"),
        "library": os.path.join(directory, "libffibox_hostile.so"),
        "limits_library": os.path.join(directory, os.path.basename(TEST_LIB)),
        "script": os.path.join(directory, "hostile_client.py"),
    }
    shutil.rmtree(directory, ignore_errors=True)


def run_as_ordinary_user(ordinary_user, user_install: dict, wanted: dict):
    """hostile_client.py run as ORDINARY_USER with no server address (its private ffiboxd)
    and a fresh runtime directory of its own: (its JSON, its stderr)."""
    uid, gid, home = ordinary_user
    runtime_dir = tempfile.mkdtemp(prefix="ffibox-runtime-", dir="/tmp")
    os.chown(runtime_dir, uid, gid)
    try:
        return run_hostile_client(client_environment(runtime_dir, home, user_install), wanted,
                                  script=user_install["script"], user=ORDINARY_USER)
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)


def test_private_server_as_ordinary_user_keeps_the_library_out_of_home(ordinary_user,
                                                                         user_install):
    uid, gid, home = ordinary_user
    secret = os.path.join(home, "ffibox-secret-%d" % os.getpid())
    planted = os.path.join(home, "ffibox-planted-%d" % os.getpid())
    with open(secret, "w") as f:
        f.write("the user's secret\n")
    os.chown(secret, uid, gid)
    os.chmod(secret, 0o600)
    wanted = {
        "library": user_install["library"],
        "read": [secret, "/etc/passwd", "/etc/shadow"],
        "create": [planted, os.path.join(user_install["directory"], "planted")],
        "stdout_text": "hostile stdout as %s\n" % ORDINARY_USER,
        "stderr_text": "hostile stderr as %s\n" % ORDINARY_USER,
    }
    try:
        results, stderr = run_as_ordinary_user(ordinary_user, user_install, wanted)
    finally:
        for path in (secret, planted):
            if os.path.exists(path):
                os.unlink(path)
    assert_hostile_client_was_contained(results, stderr, wanted, as_root=False)
    assert results["read"][secret] == -errno.ENOENT
    assert results["read"]["/etc/passwd"] == -errno.ENOENT
    # ffiboxd is not dumpable: not even its own user (here its parent) may open its memory.
    assert list(results["client_opens_server_memory"].values()) == [errno.EACCES], results


def test_private_server_as_ordinary_user_caps_each_workers_threads(ordinary_user,
                                                                    user_install):
    # No cgroups for an ordinary user here (the private server waives the layer): the cap
    # is the worker's own RLIMIT_NPROC, counted in its own user namespace, so one library
    # cannot take the user's pids and another session's worker still gets its threads.
    wanted = {"limits_library": user_install["limits_library"], "threads": 3000}
    results, stderr = run_as_ordinary_user(ordinary_user, user_install, wanted)
    assert results["worker_pids_max"] == 256, results
    assert 200 <= results["started"] < 256, results
    assert any("threads and processes" in message for message in results["limit_events"]), \
        (results, stderr)
    assert results["bystander_started"] == 50, results


LOCK_UP_SCRATCH = """
import json, os, sys, time
import ffibox
from ffibox import ctypes as ct
wanted = json.loads(sys.argv[1])
client = ffibox.connect()  # nothing at the default address: a private server
session = client.session(scratch_directory=True)
path = session.scratch_directory
lock = session.CDLL(wanted["library"]).hostile_lock_up_directory
lock.argtypes = [ct.c_char_p, ct.c_int]
made = lock(path.encode(), 40)
owners = sorted({os.lstat(os.path.join(path, name)).st_uid for name in os.listdir(path)})
entries = sorted(os.listdir(path))
session.close()
deadline = time.time() + 10
while os.path.exists(os.path.dirname(path)) and time.time() < deadline:
    time.sleep(0.05)
left = os.path.exists(os.path.dirname(path))
client.close()
print(json.dumps({"made": made, "entries": entries, "owners": owners, "left": left}))
"""


def test_private_server_as_ordinary_user_removes_what_a_library_locks_up_in_its_scratch(
        ordinary_user, user_install):
    # The worker runs as a subordinate uid: a directory it makes with mode 0700 is closed to
    # the user's server, one with mode 0300 to anyone but root, and a chain of 40 directories
    # of 200-character names is deeper than a path can name. All go with the session.
    script = os.path.join(user_install["directory"], "lock_up_scratch.py")
    with open(script, "w") as f:
        f.write(LOCK_UP_SCRATCH)
    os.chmod(script, 0o644)
    uid, _, _ = ordinary_user
    results, stderr = run_as_ordinary_user(
        ordinary_user, dict(user_install, script=script), {"library": user_install["library"]})
    assert results["made"] == 0, (results, stderr)
    assert results["entries"][-2:] == ["locked", "unlistable"], results
    assert uid not in results["owners"], results  # the worker's files are not the user's
    assert not results["left"], (results, stderr)


def test_check_jail_as_ordinary_user_reports_every_layer_active(ordinary_user,
                                                                   user_install):
    # An ordinary user may not make cgroups unless the host delegates some (this one's v1
    # hierarchies do not): the cgroup layer is waived by name, and reported as such.
    done = subprocess.run(
        [require_tool("runuser"), "-u", ORDINARY_USER, "--", user_install["ffiboxd"],
         "--check-jail", "--waive_jail_layer=cgroup"], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, cwd="/", timeout=120)
    report = done.stdout.decode(errors="replace")
    assert done.returncode == 0, report
    states = {}
    for line in report.splitlines():
        label, _, state = line.partition(":")
        states[label.strip()] = state.strip()
    for label in CHECK_SANDBOX_LABELS:
        assert states.get(label, "").startswith("active"), "%s: %r\n%s" % (
            label, states.get(label), report)
    assert "all requested layers are active" in report
    cgroup = states.get("cgroup (per worker pids, memory, idle cpu)", "")
    assert cgroup.startswith("waived (") or cgroup.startswith("active"), report
    # The user has subordinate ids (Debian's useradd assigns them) and install-deps installs
    # newuidmap: the worker runs as one of them, never as the user.
    user_uid = pwd.getpwnam(ORDINARY_USER).pw_uid
    worker_uid = int(states["ids"].split("host uid ")[1].split()[0])
    assert worker_uid != user_uid and worker_uid != 0, report
    assert "subordinate" in states["ids"], report


# -- descriptor pressure -------------------------------------------------------------------

def hold_connection(path: str) -> socket.socket:
    """A raw connection to the server's socket that stays open (an HTTP/2 client preface
    and empty SETTINGS, so gRPC keeps it as an idle client): one of the server's
    descriptors."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(5)
    connection.connect(path)
    try:
        connection.sendall(HTTP2_PREFACE)
    except (BrokenPipeError, ConnectionResetError):
        pass  # shed by a server short of descriptors: the caller's read sees it closed
    return connection


def attempt_hostile_session(address: str):
    """Connects, opens a session, loads the hostile library and reads /etc/shadow. Returns
    ("ok", jail_layers, bytes read or -errno) or ("error", code, message)."""
    try:
        client = ffibox.connect(address, timeout=2)
    except ffibox.Error as error:
        return ("error", error.code, str(error))
    try:
        with client.session(timeout=10) as session:
            library = open_hostile(session, HOSTILE_LIB)
            return ("ok", session.jail_layers, library.read("/etc/shadow")[0])
    except ffibox.Error as error:
        return ("error", error.code, str(error))
    finally:
        client.close()


class PressuredServer:
    """An ffiboxd run under `prlimit --nofile=limit:limit` without a worker pool (every
    session starts its worker under the pressure), and the raw connections held to it."""

    def __init__(self, limit: int) -> None:
        require_root()
        prlimit = require_tool("prlimit")
        self.limit = limit
        # prlimit execs ffiboxd: the process is ffiboxd. The allowed root is the library's
        # own directory, not "/": nothing but the jail keeps /etc/shadow from the library.
        self.server = Server("--pool_size=0", allow_root=os.path.dirname(HOSTILE_LIB),
                             wrapper=[prlimit, "--nofile=%d:%d" % (limit, limit), "--"])
        self.path = self.server.address[len("unix:"):]
        self.held = []

    @property
    def address(self) -> str:
        return self.server.address

    def open_descriptors(self) -> int:
        return len(os.listdir("/proc/%d/fd" % self.server.process.pid))

    def hold_one(self) -> bool:
        """Holds one more connection; whether the server accepted it (its HTTP/2 SETTINGS
        frame arrived within 2 s). A server short of descriptors closes the connection at
        once (shed) or never answers it."""
        connection = hold_connection(self.path)
        self.held.append(connection)
        connection.settimeout(2)
        try:
            return len(connection.recv(64)) > 0
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            return False

    def release_one(self) -> None:
        self.held.pop().close()

    def stop(self) -> None:
        while self.held:
            self.release_one()
        self.server.stop()


def check_outcomes(outcomes) -> None:
    """Every attempt under pressure either ran with every layer (and the library could not
    read /etc/shadow) or was refused as RESOURCE_EXHAUSTED or UNAVAILABLE."""
    for level, outcome in outcomes:
        if outcome[0] == "ok":
            _, layers, shadow = outcome
            assert layers_missing(layers) == [], (level, outcome)
            assert shadow in (-errno.ENOENT, -errno.EACCES), (level, outcome)
        else:
            assert outcome[1] in ("RESOURCE_EXHAUSTED", "UNAVAILABLE"), (level, outcome)


def test_root_without_cap_sys_admin_makes_every_namespace_inside_the_workers_user_namespace():
    # A container drops CAP_SYS_ADMIN (deploy/k8s/ffiboxd.yaml keeps SETUID, SETGID and KILL).
    # Root then gets each of the worker's namespaces inside its new user namespace, in one
    # clone as the spawn makes them, and every layer is there; probing them without the user
    # namespace reported the pid namespace unavailable and ffiboxd refused to start.
    require_root()
    done = subprocess.run(
        [require_tool("setpriv"), "--bounding-set=-sys_admin", FFIBOXD, "--check-jail",
         "--worker=" + WORKER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd="/",
        timeout=120)
    report = done.stdout.decode(errors="replace")
    assert done.returncode == 0, report
    for label in CHECK_SANDBOX_LABELS:
        line = next((l for l in report.splitlines() if l.startswith(label + ":")), "")
        assert line.partition(":")[2].strip().startswith("active"), report
    assert "all requested layers are active" in report


def test_descriptor_pressure_refuses_sessions_and_never_weakens_the_jail():
    limit = 128
    # The server must stop accepting at least this far below its limit.
    margin = 8
    pressured = PressuredServer(limit)
    outcomes = []
    try:
        kind, layers, shadow = attempt_hostile_session(pressured.address)
        assert kind == "ok" and layers_missing(layers) == [] and shadow < 0, (kind, layers)
        # Fill the server's descriptor table until it sheds connections (it keeps a reserve
        # for worker starts); every few connections a session must either work with every
        # layer or be refused.
        while pressured.hold_one():
            assert pressured.open_descriptors() <= limit - margin, (
                "ffiboxd accepted connections into its last descriptors")
            if len(pressured.held) % 4 == 0:
                outcome = attempt_hostile_session(pressured.address)
                outcomes.append((pressured.open_descriptors(), outcome))
        outcomes.append((pressured.open_descriptors(),
                         attempt_hostile_session(pressured.address)))
        assert any(outcome[0] == "error" for _, outcome in outcomes), (
            "sessions never failed up to %d open descriptors: %r"
            % (pressured.open_descriptors(), outcomes))
        # Release them again, one at a time near the limit (where a jail's setup would run
        # out of descriptors half-way), then four at a time.
        while pressured.held:
            for _ in range(1 if pressured.open_descriptors() > limit - 32 else 4):
                if pressured.held:
                    pressured.release_one()
            outcome = attempt_hostile_session(pressured.address)
            outcomes.append((pressured.open_descriptors(), outcome))
        check_outcomes(outcomes)
        # With every connection released the server serves again, fully jailed.
        kind, layers, shadow = attempt_hostile_session(pressured.address)
        assert kind == "ok", (kind, layers, shadow)
        assert layers_missing(layers) == [] and shadow == -errno.ENOENT, (layers, shadow)
    finally:
        pressured.stop()


def test_server_accepts_connections_again_after_running_out_of_descriptors():
    limit = 128
    pressured = PressuredServer(limit)
    try:
        # Hold connections until the server cannot accept another one.
        while pressured.hold_one():
            assert len(pressured.held) <= limit, "ffiboxd accepted more than its limit"
        kind, code, _ = attempt_hostile_session(pressured.address)
        assert (kind, code) in (("error", "UNAVAILABLE"), ("error", "RESOURCE_EXHAUSTED"))
        while pressured.held:
            pressured.release_one()
        # Every descriptor is free again: a client must be served, fully jailed.
        deadline = time.monotonic() + 10
        outcome = attempt_hostile_session(pressured.address)
        while outcome[0] != "ok" and time.monotonic() < deadline:
            time.sleep(0.5)
            outcome = attempt_hostile_session(pressured.address)
        assert outcome[0] == "ok", outcome
        assert layers_missing(outcome[1]) == [] and outcome[2] == -errno.ENOENT, outcome
    finally:
        pressured.stop()


def test_a_unix_connection_that_sends_nothing_is_closed():
    # A program of the server's owner that leaks connections (or holds them on purpose)
    # held a descriptor each for good (2000 were still open after 100 s), and once the
    # limit was full every other client was shed. One that has not sent the HTTP/2 preface
    # within --handshake_timeout_ms is closed; one that did stays (an idle client's channel,
    # which gRPC clients do not reopen by themselves when it is closed); sessions go on.
    server = Server("--handshake_timeout_ms=500")
    try:
        path = server.address[len("unix:"):]
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.settimeout(10)
        silent.connect(path)
        idle = hold_connection(path)
        started = time.monotonic()
        assert silent.recv(4096) == b""
        assert 0.4 < time.monotonic() - started < 5
        silent.close()
        with ffibox.connect(server.address) as client, client.session() as session:
            libc = session.CDLL("libc.so.6")
            time.sleep(1)  # past the deadline: a session's connection sent its preface
            assert libc.strlen(b"four") == 4
        idle.settimeout(0.5)
        assert frame_types(idle.recv(4096))[0] == 4  # the server's SETTINGS, and open still
        idle.close()
    finally:
        server.stop()


# -- a library in /tmp ---------------------------------------------------------------------

def test_no_worker_gets_a_file_of_the_kernels_own_filesystems():
    # /proc/<pid>/maps is 0444, yet only the process's tracers may open it: a root ffiboxd
    # allowed to load from / opened it as root and handed the descriptor to the worker, where
    # a library loaded before could read ffiboxd's (or any root process's) memory layout.
    server = Server(allow_root="/")
    try:
        with ffibox.connect(server.address) as client, client.session() as session:
            for path, kind in (("/proc/self/maps", "proc"), ("/proc/self/environ", "proc"),
                               ("/sys/kernel/uevent_seqnum", "sysfs")):
                with pytest.raises(ffibox.Error) as refused:
                    session.CDLL(path)
                assert "is a file of the kernel's %s filesystem, not a library" % kind in \
                    str(refused.value), (path, str(refused.value))
                assert refused.value.code == "LIBRARY_LOAD_FAILED"
            libm = session.CDLL("libm.so.6")
            libm.cos.restype, libm.cos.argtypes = ctypes.c_double, [ctypes.c_double]
            assert libm.cos(0.0) == 1.0 and session.generation == 1
    finally:
        server.stop()


def test_library_in_tmp_loads_under_its_own_root_and_its_directory_stays_hidden(library_dir):
    server = Server(allow_root=library_dir)
    try:
        with ffibox.connect(server.address).session() as session:
            library = open_hostile(session, os.path.join(library_dir, "libffibox_hostile.so"))
            assert library.fd_type(0) == stat.S_IFCHR
            assert library.read(os.path.join(library_dir, "secret"))[0] == -errno.ENOENT
            with pytest.raises(ffibox.LibraryNotAllowed):
                session.CDLL(TEST_LIB)
    finally:
        server.stop()


# -- the broker's stdout and stderr --------------------------------------------------------

def test_library_cannot_touch_the_brokers_log_and_its_output_reaches_the_client(tmp_path):
    log_path = str(tmp_path / "ffiboxd.log")
    marker = b"ffiboxd log of test_jail_fails_closed\n"
    with open(log_path, "wb") as log:
        log.write(marker)
    with open(log_path, "ab") as log:
        server = Server(stderr=log)
    try:
        before = os.stat(log_path)
        received = []
        text = "hostile text for stderr %d\n" % os.getpid()
        with ffibox.connect(server.address).session() as session:
            session.stream.on_output = lambda stream, data: received.append((stream, data))
            library = open_hostile(session, HOSTILE_LIB)
            assert library.fd_type(1) == stat.S_IFIFO and library.fd_type(2) == stat.S_IFIFO
            assert library.truncate_fd(2) == -errno.EINVAL
            assert library.allocate_fd(2, 1 << 30) == -errno.ESPIPE
            assert library.write_fd(2, text.encode()) == len(text)
            assert library.write_fd(1, b"to stdout\n") == len("to stdout\n")
            deadline = time.monotonic() + 10
            while (b"".join(d for s, d in received if s == "stderr") != text.encode()
                   and time.monotonic() < deadline):
                time.sleep(0.05)
        assert b"".join(d for s, d in received if s == "stderr") == text.encode()
        assert b"".join(d for s, d in received if s == "stdout") == b"to stdout\n"
        after = os.stat(log_path)
        with open(log_path, "rb") as log:
            contents = log.read()
        assert contents.startswith(marker), contents[:200]
        assert after.st_size >= before.st_size
        assert after.st_blocks * 512 < (1 << 20), "the log has %d bytes allocated" % (
            after.st_blocks * 512)
        assert text.encode() not in contents
    finally:
        server.stop()


# -- the broker's command line -------------------------------------------------------------

def test_init_command_line_shows_nothing_of_the_broker(server):
    with ffibox.connect(server.address).session() as session:
        n, cmdline = open_hostile(session, HOSTILE_LIB).init_cmdline()
    assert n > 0, n
    assert b"ffibox-init" in cmdline
    assert b"ffiboxd" not in cmdline and b"--" not in cmdline, cmdline
    assert b"listen" not in cmdline and server.address.encode() not in cmdline


# -- waivers -------------------------------------------------------------------------------

def start_and_wait(command, timeout=30):
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout)


def test_unknown_waiver_stops_ffiboxd_naming_the_layers(tmp_path):
    address = "unix:%s/ffiboxd.sock" % tmp_path
    done = start_and_wait([FFIBOXD, "--listen=" + address, "--waive_jail_layer=bogus"])
    output = done.stdout.decode(errors="replace")
    assert done.returncode != 0, output
    assert "bogus" in output
    assert "user, pid, net, ipc, uts, mount, filesystem, proc" in output


def test_unknown_waiver_in_the_configuration_file_stops_ffiboxd(tmp_path):
    config = tmp_path / "ffiboxd.conf"
    config.write_text('jail { waive_layers: "bogus" }\n')
    address = "unix:%s/ffiboxd.sock" % tmp_path
    done = start_and_wait([FFIBOXD, "--config=%s" % config, "--listen=" + address])
    output = done.stdout.decode(errors="replace")
    assert done.returncode != 0, output
    assert "bogus" in output
    assert "user, pid, net, ipc, uts, mount, filesystem, proc" in output


def test_an_installation_without_ffibox_init_stops_ffiboxd_whatever_it_may_waive(tmp_path):
    # ffibox-init (the init of each worker's pid namespace) belongs to the installation, not
    # to the host: a missing one is never taken for a host without pid namespaces, so a
    # waiver of that layer cannot turn it off.
    for binary in (FFIBOXD, WORKER):
        shutil.copy(binary, str(tmp_path))
    address = "unix:%s/ffiboxd.sock" % tmp_path
    done = start_and_wait([str(tmp_path / "ffiboxd"), "--listen=" + address, "--pool_size=0",
                           "--waive_jail_layer=pid,proc"])
    output = done.stdout.decode(errors="replace")
    assert done.returncode != 0, output
    assert "no ffibox-init beside the worker binary" in output, output
    assert str(tmp_path / "ffibox-init") in output, output
    assert not os.path.exists(str(tmp_path / "ffiboxd.sock"))


def test_waiving_an_available_layer_changes_nothing():
    server = Server("--waive_jail_layer=filesystem")
    try:
        with ffibox.connect(server.address).session() as session:
            assert layers_missing(session.jail_layers) == [], session.jail_layers
            assert session.waived_jail_layers == []
            library = open_hostile(session, HOSTILE_LIB)
            assert library.read("/etc/passwd")[0] == -errno.ENOENT
    finally:
        server.stop()


# -- require_jail --------------------------------------------------------------------------

def test_require_jail_names_a_layer_the_server_does_not_give():
    server = Server("--nojail")
    try:
        client = ffibox.connect(server.address)
        with pytest.raises(ffibox.Error) as refused:
            client.session(require_jail=["seccomp"])
        assert refused.value.code == "JAIL_UNAVAILABLE"
        assert "the jail layers seccomp (it gives: none)" in str(refused.value)
        with client.session() as session:
            assert session.jail_layers == []
        client.close()
    finally:
        server.stop()


def test_require_jail_takes_every_layer_and_all(ffibox_client):
    with ffibox_client.session(require_jail=EVERY_LAYER) as session:
        assert layers_missing(session.jail_layers) == []
    if os.geteuid() == 0:
        with ffibox_client.session(require_jail=["all"]) as session:
            assert set(session.jail_layers) >= set(ffibox._settings.JAIL_LAYERS)


def test_a_misspelt_layer_is_refused_as_no_layer(ffibox_client, monkeypatch):
    # Taken for a layer the server lacks, it would send the user looking at the server.
    with pytest.raises(ValueError, match="require_jail: no jail layer is called 'filesytem'"):
        ffibox_client.session(require_jail=["filesytem"])
    with pytest.raises(TypeError, match="a list of layer names"):
        ffibox_client.session(require_jail="seccomp")
    monkeypatch.setenv("FFIBOX_REQUIRE_JAIL", "seccomp, landlock")
    with pytest.raises(ValueError, match=r"\$FFIBOX_REQUIRE_JAIL: no jail layer is called "
                                         "'landlock'"):
        ffibox_client.session()
    monkeypatch.setenv("FFIBOX_REQUIRE_JAIL", "all")
    if os.geteuid() == 0:
        with ffibox_client.session() as session:
            assert "cgroup" in session.jail_layers


# -- a user without subordinate ids: the workers run as the user's own uid ----------------

USER_WITHOUT_SUBORDINATE_IDS = "ffibox-t4"

CHANGE_OWN_FILES = """
import json, os, sys
import ffibox
from ffibox import ctypes as ct
wanted = json.loads(sys.argv[1])
client = ffibox.connect()  # nothing at the default address: a private server
session = client.session()
session.CDLL(wanted["library"])  # the user's own file
libc = session.CDLL("libc.so.6", use_errno=True)
libc.open.argtypes = [ct.c_char_p, ct.c_int]
libc.readlink.argtypes = [ct.c_char_p, ct.c_char_p, ct.c_size_t]
libc.write.argtypes = [ct.c_int, ct.c_char_p, ct.c_size_t]
libc.fchmod.argtypes = [ct.c_int, ct.c_uint]
libc.chmod.argtypes = [ct.c_char_p, ct.c_uint]
handed, reopened = [], []
for fd in range(3, 1024):
    target = ct.create_string_buffer(4096)
    if libc.readlink(b"/proc/self/fd/%d" % fd, target, 4096) <= 0:
        continue
    if b"libffibox_test" not in target.value and b"ffibox-library" not in target.value:
        continue
    handed.append(target.value.decode())
    writable = libc.open(b"/proc/self/fd/%d" % fd, os.O_WRONLY | os.O_APPEND)
    if writable >= 0:
        reopened.append(libc.write(writable, b"planted", 7))
    libc.fchmod(fd, 0)  # a mode within 0600: the policy allows it
exe = [libc.chmod(b"/proc/self/exe", 0o600), libc.chmod(b"/proc/1/exe", 0o600),
       libc.fchmod(libc.open(b"/proc/self/exe", os.O_RDONLY), 0)]
session.close()
with client.session() as later:
    started = later.CDLL("libc.so.6").strlen(b"four")
client.close()
print(json.dumps({"handed": handed, "reopened": reopened, "exe": exe, "started": started}))
"""


@pytest.fixture
def user_without_subordinate_ids():
    """(uid, gid, home) of a user that /etc/subuid and /etc/subgid give no ids."""
    ids = local_user(USER_WITHOUT_SUBORDINATE_IDS, "-K", "SUB_UID_COUNT=0", "-K",
                     "SUB_GID_COUNT=0")
    for listing in ("/etc/subuid", "/etc/subgid"):
        if os.path.exists(listing):
            with open(listing) as f:
                assert not any(line.startswith(USER_WITHOUT_SUBORDINATE_IDS + ":")
                               for line in f), listing
    return ids


def test_workers_of_the_users_own_uid_cannot_change_its_library_or_binaries(
        user_without_subordinate_ids, user_install):
    """The workers run as the user's uid: through /proc/self/fd a library reopened the
    user's library it was handed for writing and made it mode 0, and through /proc/self/exe
    made the user's ffibox-worker unrunnable (no session started after). They get sealed
    copies now."""
    uid, gid, home = user_without_subordinate_ids
    library = os.path.join(home, "libffibox_test.so")
    shutil.copy(TEST_LIB, library)
    os.chown(library, uid, gid)
    os.chmod(library, 0o755)
    binaries = [os.path.join(user_install["directory"], "bin", name)
                for name in ("ffiboxd", "ffibox-worker", "ffibox-init")]
    for path in binaries + [os.path.join(user_install["directory"], "bin")]:
        os.chown(path, uid, gid)  # the user's own installation
    script = os.path.join(user_install["directory"], "change_own_files.py")
    with open(script, "w") as f:
        f.write(CHANGE_OWN_FILES)
    os.chmod(script, 0o644)
    before = {path: (os.stat(path).st_mode, os.stat(path).st_size, os.stat(path).st_mtime)
              for path in binaries + [library]}
    runtime_dir = tempfile.mkdtemp(prefix="ffibox-runtime-", dir="/tmp")
    os.chown(runtime_dir, uid, gid)
    try:
        results, stderr = run_hostile_client(
            client_environment(runtime_dir, home, user_install), {"library": library},
            script=script, user=USER_WITHOUT_SUBORDINATE_IDS)
        after = {path: (os.stat(path).st_mode, os.stat(path).st_size, os.stat(path).st_mtime)
                 for path in before}
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
        os.unlink(library)
    assert results["handed"] and all("memfd:ffibox-library" in name
                                     for name in results["handed"]), results
    # No mode changes at all: the binaries' copies are shared by every worker of the server,
    # whose later launches a mode 0 failed (a copy's mode is put back before each launch,
    # but a library's thread setting it in a loop won the race).
    assert results["exe"] == [-1, -1, -1], results
    assert all(written < 0 for written in results["reopened"]), results
    assert after == before
    assert results["started"] == 4, (results, stderr)
