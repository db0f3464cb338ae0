"""Real Debian ctypes bindings run unmodified with `ctypes` swapped for `ffibox.ctypes`.

python3-magic (libmagic: an opaque cookie, c_char_p results, an errcheck, byref(c_size_t)
out-parameters) and python3-libarchive-c (libarchive: CFUNCTYPE read/write callbacks,
c_void_p handles, POINTER(c_void_p) out-parameters) and python3-ijson's yajl2 backend
(libyajl: a structure of CFUNCTYPE callbacks, built from temporaries, that yajl keeps across
calls) and python3-freetype (FreeType: a face whose glyph slot, and the bitmap it points to,
each load rewrites behind the pointers the binding holds) and python3-clang-14 (libclang's own
binding: structures returned by value, callbacks handed `py_object` client data, handles it
checks with isinstance, a `c_char_p` subclass for strings; a C file that includes system
headers parsed in the jail) and python3-pycryptodome (its own C modules through ctypes, and
`ctypes.pythonapi` named at import). Each case (binding_cases.py) runs in
its own process, once with the stdlib ctypes and once with the one-import swap of the whole
binding (sys.modules['ctypes'] = ffibox.ctypes before the binding is imported); the results
must be equal. The cases still failing are strict expected failures naming what they need,
so each one that starts passing fails the suite until its mark is removed.
"""
import importlib
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "binding_cases.py")
# case -> what it still needs (docs/python.md)
NOT_YET = {}
CASE_NAMES = ("magic_from_buffer", "magic_objects", "magic_error", "libarchive_custom_writer",
              "libarchive_memory_reader", "libarchive_stream_reader",
              "libarchive_memory_writer", "ijson_yajl2_events", "ijson_yajl2_error",
              "freetype_glyphs", "clang_ast", "clang_error", "pycryptodome_ciphers",
              "pycryptodome_errors")


def run(case, address=None):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "client", "python"))
    args = [sys.executable, CASES, case]
    if address is not None:
        env["FFIBOX_ADDRESS"] = address
        args.insert(2, "--ffibox")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, "%s exited %d:\n%s" % (args, proc.returncode, proc.stderr[-3000:])
    return json.loads(proc.stdout.splitlines()[-1]), proc.stderr


def test_the_bindings_are_installed():
    # scripts/install-deps.sh installs them; a missing one is a failure, not a skip.
    for binding in ("libarchive", "magic", "ijson.backends.yajl2", "freetype", "clang.cindex",
                    "Cryptodome.Cipher.AES"):
        importlib.import_module(binding)


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=[pytest.mark.xfail(reason=NOT_YET[c], strict=True)]
                 if c in NOT_YET else []) for c in CASE_NAMES])
def test_the_binding_gives_what_it_gives_with_the_stdlib(server, case):
    expected, _ = run(case)
    assert "ok" in expected, expected
    got, _ = run(case, server.address)
    assert got == expected
