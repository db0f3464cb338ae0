"""Processes that fork with ffibox sessions open: the child's copies of the parent's sessions
end at once with the reason instead of waiting forever (gRPC's channels do not work in a
forked child) or sharing the parent's same-host channel; the parent goes on. With gRPC's
fork support on, a child opens its own default session, so a multiprocessing pool of
forked workers can use ffibox.ctypes, on the parent's private server.

Each case runs in a child process through the private default server, as a script of a
user would, on the stream and on the same-host channel.
"""
import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

FORK_WITH_THE_PARENTS_SESSION = textwrap.dedent("""
    import os, sys
    os.environ.pop("FFIBOX_ADDRESS", None)
    import ffibox
    from ffibox import ctypes
    libm = ctypes.CDLL("libm.so.6")
    libm.cos.restype = ctypes.c_double
    libm.cos.argtypes = [ctypes.c_double]
    print("parent", libm.cos(0.5), flush=True)
    child = os.fork()
    if child == 0:
        # What the parent made, and (gRPC would hang or crash here, even the parent) a new
        # client: each a prompt error that says why.
        for attempt in (lambda: libm.cos(0.25), lambda: ctypes.CDLL("libm.so.6"),
                        lambda: libm.session.client.session(), ffibox.connect):
            try:
                attempt()
                print("child: no error", flush=True)
            except ffibox.Error as error:
                print("child:", type(error).__name__, error.code,
                      str(os.getppid()) in str(error),
                      "GRPC_ENABLE_FORK_SUPPORT" in str(error), flush=True)
        sys.exit(0)  # a normal exit: the parent's server and its directory stay
    _, status = os.waitpid(child, 0)
    print("parent", libm.cos(0.5), os.waitstatus_to_exitcode(status), flush=True)
    with ffibox.connect().session() as again:
        print("parent", again.CDLL("libm.so.6").labs(-7), flush=True)
""")

POOL_OF_FORKED_WORKERS = textwrap.dedent("""
    import multiprocessing, os
    os.environ.pop("FFIBOX_ADDRESS", None)
    from ffibox import ctypes

    def cos(x):
        libm = ctypes.CDLL("libm.so.6")
        libm.cos.restype = ctypes.c_double
        libm.cos.argtypes = [ctypes.c_double]
        return libm.cos(x), libm.session.client.address

    if __name__ == "__main__":
        value, address = cos(0.5)
        print(value, flush=True)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = pool.map(cos, [0.0, 0.25, 0.5])
        print(" ".join(repr(v) for v, _ in results), flush=True)
        print(all(a == address for _, a in results), flush=True)  # the parent's server
        print(cos(0.5)[0], flush=True)
""")


def run(script, **env):
    """Runs `script` in a session of its own; when it overruns, the whole session is killed:
    the script and the children it forked (a pool's workers), which would outlive it."""
    environment = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "client", "python"), **env)
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=environment, text=True,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # forked children left behind
            except ProcessLookupError:
                pass
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("same_host", ["0", "1"], ids=["stream", "same_host"])
def test_a_forked_child_is_told_the_parents_session_is_not_its_and_the_parent_goes_on(
        same_host):
    result = run(FORK_WITH_THE_PARENTS_SESSION, FFIBOX_SAME_HOST=same_host)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        "parent %r" % math.cos(0.5),
        "child: SessionClosed FAILED_PRECONDITION True True",
        "child: SessionClosed FAILED_PRECONDITION True True",
        "child: Error FAILED_PRECONDITION True True",
        "child: Error FAILED_PRECONDITION True True",
        "parent %r 0" % math.cos(0.5),
        "parent 7",
    ]


def test_with_grpc_fork_support_a_pool_of_forked_workers_calls_through_their_own_sessions():
    result = run(POOL_OF_FORKED_WORKERS, GRPC_ENABLE_FORK_SUPPORT="1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        repr(math.cos(0.5)),
        " ".join(repr(math.cos(x)) for x in (0.0, 0.25, 0.5)),
        "True",
        repr(math.cos(0.5)),
    ]
