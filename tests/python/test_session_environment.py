"""Per-session environment variables: what the operator allows reaches the library before
its constructors run; anything else is refused by name; nothing is forwarded by default."""
import ctypes as std_ctypes
import os
import subprocess
import sys
import textwrap

import pytest

import ffibox
from conftest import ROOT, TEST_LIB, Server


@pytest.fixture
def env_server():
    server = Server("--allow_env=FFIBOX_TEST_*,LANG")
    yield server
    server.stop()


def _lib(session):
    lib = session.CDLL(TEST_LIB)
    lib.env_at_load.restype = std_ctypes.c_char_p
    lib.env_value.restype = std_ctypes.c_char_p
    lib.env_value.argtypes = [std_ctypes.c_char_p]
    return lib


def test_allowed_variables_are_set_before_the_library_loads(env_server):
    client = ffibox.connect(env_server.address)
    with client.session(env={"FFIBOX_TEST_AT_LOAD": "early", "LANG": "C.UTF-8"}) as session:
        lib = _lib(session)
        assert lib.env_at_load() == b"early"
        assert lib.env_value(b"LANG") == b"C.UTF-8"
        # The worker's own environment holds nothing else (the broker's is never passed on).
        assert lib.env_value(b"PATH") is None


def test_a_session_language_sets_the_character_locale_as_python_does(env_server):
    # towupper of é is É in C.UTF-8 and unchanged in the C locale; mbstowcs takes UTF-8.
    client = ffibox.connect(env_server.address)
    with client.session(env={"LANG": "C.UTF-8"}) as session:
        libc = session.CDLL("libc.so.6")
        libc.towupper.restype, libc.towupper.argtypes = std_ctypes.c_uint, [std_ctypes.c_uint]
        libc.setlocale.restype = std_ctypes.c_char_p
        libc.setlocale.argtypes = [std_ctypes.c_int, std_ctypes.c_char_p]
        assert libc.setlocale(0, None) == b"C.UTF-8"  # LC_CTYPE
        assert libc.towupper(0xE9) == 0xC9
        # Set once, as a Python process does at startup: a later load leaves the caller's.
        assert libc.setlocale(0, b"C") == b"C"
        session.CDLL(TEST_LIB)
        assert libc.setlocale(0, None) == b"C"
    with client.session() as session:  # no environment: the C locale
        libc = session.CDLL("libc.so.6")
        libc.towupper.restype, libc.towupper.argtypes = std_ctypes.c_uint, [std_ctypes.c_uint]
        assert libc.towupper(0xE9) == 0xE9


def test_the_environment_survives_a_worker_restart(env_server):
    client = ffibox.connect(env_server.address)
    with client.session(env={"FFIBOX_TEST_AT_LOAD": "again"}) as session:
        lib = _lib(session)
        with pytest.raises(ffibox.WorkerCrashed):
            lib.crash_null_deref()
        assert lib.env_at_load() == b"again"


def test_a_variable_the_server_does_not_allow_is_refused_by_name(env_server):
    client = ffibox.connect(env_server.address)
    with pytest.raises(ffibox.Error) as refused:
        client.session(env={"LD_PRELOAD": "/tmp/evil.so"})
    assert refused.value.code == "INVALID_ARGUMENT"
    assert "LD_PRELOAD" in str(refused.value)


def test_by_default_the_server_accepts_no_variable(server):
    client = ffibox.connect(server.address, env={})
    with pytest.raises(ffibox.Error) as refused:
        client.session(env={"LANG": "C"})
    assert "jail.env_allow" in str(refused.value)
    with client.session() as session:  # and nothing is forwarded unasked
        assert _lib(session).env_value(b"HOME") is None


FORWARDING_CHILD = textwrap.dedent("""
    import ctypes as std, os, sys
    os.environ["FFIBOX_ADDRESS"] = "unix:/nonexistent-ffibox/ffiboxd.sock"
    from ffibox import ctypes
    lib = ctypes.CDLL(sys.argv[1])
    lib.env_at_load.restype = ctypes.c_char_p
    lib.env_value.restype = ctypes.c_char_p
    print(lib.env_at_load(), lib.env_value(b"FFIBOX_TEST_OTHER"), lib.env_value(b"HOME"))
""")


def test_ffibox_env_forwards_the_named_variables_through_the_private_server():
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "client", "python"),
               FFIBOX_ENV="FFIBOX_TEST_*", FFIBOX_TEST_AT_LOAD="forwarded",
               FFIBOX_TEST_OTHER="too", HOME="/root")
    result = subprocess.run([sys.executable, "-c", FORWARDING_CHILD, TEST_LIB],
                            capture_output=True, env=env, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["b'forwarded'", "b'too'", "None"]
