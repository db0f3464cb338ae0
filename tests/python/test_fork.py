"""Processes that fork with ffibox sessions open: the child's copies of the parent's sessions
end at once with the reason instead of waiting forever (gRPC's channels do not work in a
forked child) or sharing the parent's same-host channel; the parent goes on. With gRPC's
fork support on, a child opens its own default session, so a multiprocessing pool of
forked workers can use ffibox.ctypes.

Each case runs in a child process through the private default server, as a script of a
user would, on the stream and on the same-host channel.
"""
import math
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

FORK_WITH_THE_PARENTS_SESSION = textwrap.dedent("""
    import os
    os.environ.pop("FFIBOX_ADDRESS", None)
    from ffibox import ctypes
    from ffibox.errors import SessionClosed
    libm = ctypes.CDLL("libm.so.6")
    libm.cos.restype = ctypes.c_double
    libm.cos.argtypes = [ctypes.c_double]
    print("parent", libm.cos(0.5), flush=True)
    child = os.fork()
    if child == 0:
        for attempt in (lambda: libm.cos(0.25), lambda: ctypes.CDLL("libm.so.6")):
            try:
                attempt()
                print("child: no error", flush=True)
            except SessionClosed as error:
                print("child:", error.code, "do not cross fork" in str(error),
                      str(os.getppid()) in str(error), flush=True)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    print("parent", libm.cos(0.5), os.waitstatus_to_exitcode(status), flush=True)
""")

POOL_OF_FORKED_WORKERS = textwrap.dedent("""
    import multiprocessing, os
    os.environ.pop("FFIBOX_ADDRESS", None)
    from ffibox import ctypes

    def cos(x):
        libm = ctypes.CDLL("libm.so.6")
        libm.cos.restype = ctypes.c_double
        libm.cos.argtypes = [ctypes.c_double]
        return libm.cos(x)

    if __name__ == "__main__":
        print(cos(0.5), flush=True)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            print(" ".join(repr(v) for v in pool.map(cos, [0.0, 0.25, 0.5])), flush=True)
        print(cos(0.5), flush=True)
""")


def run(script, **env):
    environment = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "client", "python"), **env)
    return subprocess.run([sys.executable, "-c", script], capture_output=True,
                          env=environment, text=True, timeout=60)


@pytest.mark.parametrize("same_host", ["0", "1"], ids=["stream", "same_host"])
def test_a_forked_child_is_told_the_parents_session_is_not_its_and_the_parent_goes_on(
        same_host):
    result = run(FORK_WITH_THE_PARENTS_SESSION, FFIBOX_SAME_HOST=same_host)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        "parent %r" % math.cos(0.5),
        "child: FAILED_PRECONDITION True True",
        "child: FAILED_PRECONDITION True True",
        "parent %r 0" % math.cos(0.5),
    ]


def test_with_grpc_fork_support_a_pool_of_forked_workers_calls_through_their_own_sessions():
    result = run(POOL_OF_FORKED_WORKERS, GRPC_ENABLE_FORK_SUPPORT="1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        repr(math.cos(0.5)),
        " ".join(repr(math.cos(x)) for x in (0.0, 0.25, 0.5)),
        repr(math.cos(0.5)),
    ]
