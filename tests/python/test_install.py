"""Installation as docs/install.md describes it: scripts/install.sh into a temporary prefix,
the Python client pip-installed offline into a venv, then programs that know nothing of the
checkout (no PYTHONPATH, started from an unrelated directory with a clean environment) call
cos through the installed ffiboxd and its worker.

install.sh builds with $BAZEL (default `bazel`), which reuses what scripts/test.sh built.
"""
import math
import os
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
COS_HALF = repr(math.cos(0.5))

# Run by the installed client: cos through a private server, and which binary served it.
CALL_COS = """
from ffibox import ctypes
import ffibox._server
libm = ctypes.CDLL("libm.so.6")
libm.cos.restype = ctypes.c_double
print(libm.cos(ctypes.c_double(0.5)))
private = ffibox._server._private
print(private.command[0] if private is not None else "no private server")
print(ctypes.__file__)
"""


def clean_env(home, path):
    """A minimal environment: no PYTHONPATH, no FFIBOX_* settings, no XDG_RUNTIME_DIR."""
    return {"PATH": path, "HOME": home, "LANG": "C.UTF-8"}


def run(command, **kwargs):
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=900, **kwargs)
    assert result.returncode == 0, "%s failed (%d):\n%s\n%s" % (
        command, result.returncode, result.stdout, result.stderr)
    return result


@pytest.fixture(scope="module")
def work():
    directory = tempfile.mkdtemp(prefix="ffibox-install-test-")
    os.chmod(directory, 0o700)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def prefix(work):
    """A prefix scripts/install.sh installed into (with --python), built as the suite's
    other tests were."""
    target = os.path.join(work, "prefix")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    run([os.path.join(ROOT, "scripts", "install.sh"), "--prefix=" + target, "--python"],
        env=env)
    return target


@pytest.fixture(scope="module")
def venv(work, prefix):
    """A venv over Debian's Python and its packages, with the client pip-installed offline
    as docs/install.md says; the package was told the prefix (FFIBOX_PREFIX)."""
    home = os.path.join(work, "home")
    os.makedirs(home, exist_ok=True)
    target = os.path.join(work, "venv")
    env = clean_env(home, "/usr/bin:/bin")
    run([PYTHON, "-m", "venv", "--system-site-packages", target], env=env, cwd=work)
    env["FFIBOX_PREFIX"] = prefix
    # --no-index: the install must not need a package index (none is reachable here).
    run([os.path.join(target, "bin", "pip"), "install", "--no-index", "--no-build-isolation",
         os.path.join(ROOT, "client", "python")], env=env, cwd=work)
    # The build leaves nothing in the checkout (scripts/test.sh lints client/python).
    leftovers = [name for name in os.listdir(os.path.join(ROOT, "client", "python"))
                 if name == "build" or name.endswith(".egg-info")]
    assert not leftovers
    return target


def unrelated_directory(work):
    directory = os.path.join(work, "elsewhere")
    os.makedirs(directory, exist_ok=True)
    return directory


def test_install_puts_each_file_in_its_place(prefix):
    for path, mode in [("bin/ffiboxd", 0o755), ("bin/ffibox", 0o755),
                       ("libexec/ffibox/ffibox-worker", 0o755),
                       ("libexec/ffibox/ffibox-init", 0o755),
                       ("lib/systemd/system/ffiboxd.service", 0o644),
                       ("etc/ffibox/ffiboxd.conf", 0o644)]:
        full = os.path.join(prefix, path)
        assert os.path.isfile(full), path
        assert os.stat(full).st_mode & 0o777 == mode, path
    assert not os.path.exists(os.path.join(prefix, "bin", "ffibox-worker"))
    with open(os.path.join(prefix, "lib/systemd/system/ffiboxd.service")) as unit:
        text = unit.read()
    assert "ExecStart=%s/bin/ffiboxd --config=%s/etc/ffibox/ffiboxd.conf" % (prefix, prefix) in text
    assert "RuntimeDirectory=ffibox" in text and "RuntimeDirectoryMode=0700" in text
    assert "@" not in text.replace("multi-user.target", "")


def test_venv_client_starts_installed_server_found_on_path(work, prefix, venv):
    env = clean_env(os.path.join(work, "home"), os.path.join(prefix, "bin") + ":/usr/bin:/bin")
    result = run([os.path.join(venv, "bin", "python"), "-c", CALL_COS], env=env,
                 cwd=unrelated_directory(work))
    value, server, module = result.stdout.split()
    assert value == COS_HALF
    assert server == os.path.join(prefix, "bin", "ffiboxd")
    assert module.startswith(os.path.join(venv, "lib"))


def test_venv_client_starts_installed_server_from_its_prefix_without_path(work, prefix, venv):
    env = clean_env(os.path.join(work, "home"), "/usr/bin:/bin")
    result = run([os.path.join(venv, "bin", "python"), "-c", CALL_COS], env=env,
                 cwd=unrelated_directory(work))
    value, server, _ = result.stdout.split()
    assert value == COS_HALF
    assert server == os.path.join(prefix, "bin", "ffiboxd")


def test_install_python_option_puts_client_in_prefix_dist_packages(work, prefix):
    # /usr/bin/python3 reads <prefix>/lib/python3.X/dist-packages when the prefix is
    # /usr/local; a temporary prefix is named here with -c's sys.path instead.
    version = "%d.%d" % tuple(int(part) for part in subprocess.check_output(
        [PYTHON, "-c", "import sys; print(*sys.version_info[:2])"], text=True).split())
    packages = os.path.join(prefix, "lib", "python" + version, "dist-packages")
    assert os.path.isfile(os.path.join(packages, "ffibox", "v1", "ffibox_pb2.py"))
    script = "import sys; sys.path.insert(0, %r)\n%s" % (packages, CALL_COS)
    env = clean_env(os.path.join(work, "home"), "/usr/bin:/bin")
    result = run([PYTHON, "-c", script], env=env, cwd=unrelated_directory(work))
    value, server, module = result.stdout.split()
    assert value == COS_HALF
    assert server == os.path.join(prefix, "bin", "ffiboxd")
    assert module.startswith(packages)


def test_checkout_client_prefers_its_own_build_to_an_installed_server(prefix, monkeypatch):
    # This test runs the checkout's client (conftest puts client/python first on sys.path).
    from ffibox import _server
    monkeypatch.delenv("FFIBOX_SERVER", raising=False)
    monkeypatch.setenv("PATH", os.path.join(prefix, "bin") + ":/usr/bin:/bin")
    assert _server.find_server_binary() == os.path.join(ROOT, "bazel-bin", "server", "ffiboxd")


def test_installed_cli_calls_cos_on_installed_server(work, prefix):
    socket_dir = tempfile.mkdtemp(prefix="ffibox-install-cli-", dir=work)
    os.chmod(socket_dir, 0o700)
    address = "unix:" + os.path.join(socket_dir, "ffiboxd.sock")
    env = clean_env(os.path.join(work, "home"), "/usr/bin:/bin")
    # No --worker: the installed ffiboxd finds libexec/ffibox/ffibox-worker by itself.
    server = subprocess.Popen([os.path.join(prefix, "bin", "ffiboxd"), "--listen=" + address],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=unrelated_directory(work))
    try:
        line = server.stdout.readline()
        assert "listening on" in line, server.stderr.read() if server.poll() is not None else line
        result = run([os.path.join(prefix, "bin", "ffibox"), "--address=" + address, "call",
                      "libm.so.6", "double cos(double)", "0.5"], env=env,
                     cwd=unrelated_directory(work))
        assert float(result.stdout) == math.cos(0.5)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_running_server_keeps_starting_workers_after_its_installation_is_removed(work, prefix):
    # An upgrade or removal while ffiboxd runs: every worker it starts afterwards is still the
    # build it started with (no pool, so each session below launches a new worker, jailed
    # with its ffibox-init).
    installed = os.path.join(work, "removed-prefix")
    install = os.path.join(ROOT, "scripts", "install.sh")
    run([install, "--prefix=" + installed, "--no-build"])
    socket_dir = tempfile.mkdtemp(prefix="ffibox-install-removed-", dir=work)
    os.chmod(socket_dir, 0o700)
    address = "unix:" + os.path.join(socket_dir, "ffiboxd.sock")
    env = clean_env(os.path.join(work, "home"), "/usr/bin:/bin")
    server = subprocess.Popen([os.path.join(installed, "bin", "ffiboxd"), "--listen=" + address,
                               "--pool_size=0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=unrelated_directory(work))
    call_cos = [os.path.join(prefix, "bin", "ffibox"), "--address=" + address, "call",
                "libm.so.6", "double cos(double)", "0.5"]
    try:
        line = server.stdout.readline()
        assert "listening on" in line, server.stderr.read() if server.poll() is not None else line
        assert float(run(call_cos, env=env).stdout) == math.cos(0.5)
        run([install, "--prefix=" + installed, "--uninstall"])
        assert not os.path.exists(os.path.join(installed, "libexec", "ffibox", "ffibox-worker"))
        assert not os.path.exists(os.path.join(installed, "libexec", "ffibox", "ffibox-init"))
        for _ in range(2):
            assert float(run(call_cos, env=env).stdout) == math.cos(0.5)
    finally:
        server.terminate()
        server.wait(timeout=10)
    log = server.stderr.read()
    assert server.returncode == 0, log
    assert "waived" not in log, log  # every worker had its pid namespace, so its ffibox-init


def test_systemd_unit_verifies(prefix):
    # Not skipped without it: scripts/install-deps.sh installs systemd.
    assert shutil.which("systemd-analyze") is not None, "systemd-analyze is missing"
    unit = os.path.join(prefix, "lib", "systemd", "system", "ffiboxd.service")
    result = subprocess.run(["systemd-analyze", "verify", unit], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    assert "ffiboxd.service" not in result.stdout, result.stdout


def test_installed_config_is_accepted_by_installed_server(prefix):
    # The unit's command line, checking instead of serving (the socket's directory,
    # /run/ffibox, is the service's to make).
    result = subprocess.run([os.path.join(prefix, "bin", "ffiboxd"),
                             "--config=" + os.path.join(prefix, "etc", "ffibox", "ffiboxd.conf"),
                             "--check-jail"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout
    assert "all requested layers are active" in result.stdout, result.stdout
    assert os.path.join(prefix, "bin", "..", "libexec", "ffibox", "ffibox-worker") in result.stdout


def test_reinstall_is_idempotent_and_uninstall_removes_what_it_listed(work, prefix):
    manifest = os.path.join(prefix, "share", "ffibox", "installed-files")
    with open(manifest) as listing:
        first = listing.read().split()
    config = os.path.join(prefix, "etc", "ffibox", "ffiboxd.conf")
    with open(config, "a") as edited:
        edited.write("# edited by the operator\n")
    install = os.path.join(ROOT, "scripts", "install.sh")
    run([install, "--prefix=" + prefix, "--python", "--no-build"])
    with open(manifest) as listing:
        assert listing.read().split() == first
    with open(config) as kept:
        assert kept.read().endswith("# edited by the operator\n")

    staged = os.path.join(work, "staged")
    run([install, "--prefix=" + prefix, "--no-build", "--destdir=" + staged])
    assert os.path.isfile(staged + os.path.join(prefix, "libexec", "ffibox", "ffibox-worker"))
    run([install, "--prefix=" + prefix, "--uninstall", "--destdir=" + staged])

    run([install, "--prefix=" + prefix, "--uninstall"])
    for path in first:
        assert not os.path.exists(path), path
    assert os.path.isfile(config)
    for name in ("ffiboxd", "ffibox"):
        assert not os.path.exists(os.path.join(prefix, "bin", name))
