"""A session's scratch directory: a writable place shared by the caller and the jailed library.

Real ffiboxd, real workers, libc's own file functions as the library: the caller puts a
file in the directory, the library reads it and writes another, the caller reads that; the
directory is private to the server's user and gone when the session ends.
"""
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import ffibox
from conftest import HOSTILE_LIB, ROOT, Server


def libc_files(session):
    libc = session.CDLL("libc.so.6")
    from ffibox import ctypes as ct
    libc.fopen.restype = ct.c_void_p
    libc.fopen.argtypes = [ct.c_char_p, ct.c_char_p]
    libc.fread.argtypes = [ct.c_char_p, ct.c_size_t, ct.c_size_t, ct.c_void_p]
    libc.fwrite.argtypes = [ct.c_char_p, ct.c_size_t, ct.c_size_t, ct.c_void_p]
    libc.fclose.argtypes = [ct.c_void_p]
    return libc, ct


def wait_gone(path, seconds=10):
    deadline = time.time() + seconds
    while os.path.exists(path) and time.time() < deadline:
        time.sleep(0.05)
    return not os.path.exists(path)


@pytest.fixture
def scratch_server():
    root = tempfile.mkdtemp(prefix="ffibox-scratch-test-")
    s = Server("--scratch_root=" + os.path.join(root, "scratch"))
    yield s, os.path.join(root, "scratch")
    s.stop()
    subprocess.run(["rm", "-rf", root], check=False)


def test_the_library_reads_and_writes_files_the_caller_shares(scratch_server):
    server, root = scratch_server
    client = ffibox.connect(server.address)
    session = client.session(scratch_directory=True)
    path = session.scratch_directory
    assert path and os.path.isdir(path) and path.startswith(os.path.realpath(root) + "/")
    # The session's directory is the server user's alone; the shared one is writable by the
    # worker's uid.
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o777
    with open(os.path.join(path, "in.txt"), "wb") as f:
        f.write(b"from the caller")

    libc, ct = libc_files(session)
    handle = libc.fopen(os.path.join(path, "in.txt").encode(), b"rb")
    assert handle, "the library cannot open the caller's file"
    buffer = ct.create_string_buffer(64)
    assert libc.fread(buffer, 1, 64, handle) == 15
    libc.fclose(handle)
    assert buffer.value == b"from the caller"
    out = libc.fopen(os.path.join(path, "out.txt").encode(), b"wb")
    assert out, "the library cannot create a file there"
    assert libc.fwrite(b"from the library", 1, 16, out) == 16
    libc.fclose(out)
    with open(os.path.join(path, "out.txt"), "rb") as f:
        assert f.read() == b"from the library"

    # Elsewhere the view stays read-only.
    assert not libc.fopen(b"/usr/share/ffibox-should-not-exist", b"wb")
    session.close()
    assert wait_gone(os.path.dirname(path)), "the scratch directory outlived its session"
    client.close()


def test_the_directory_survives_a_worker_restart(scratch_server):
    server, _ = scratch_server
    client = ffibox.connect(server.address)
    session = client.session(scratch_directory=True)
    path = session.scratch_directory
    libc, ct = libc_files(session)
    out = libc.fopen(os.path.join(path, "kept").encode(), b"wb")
    libc.fwrite(b"before", 1, 6, out)
    libc.fclose(out)
    with pytest.raises(ffibox.WorkerCrashed):
        getattr(libc, "raise")(11)
    handle = libc.fopen(os.path.join(path, "kept").encode(), b"rb")  # the new worker's view
    buffer = ct.create_string_buffer(16)
    assert handle and libc.fread(buffer, 1, 16, handle) == 6 and buffer.value == b"before"
    libc.fclose(handle)
    session.close()
    client.close()


@pytest.mark.parametrize("made_by", ["caller", "library"])
def test_sqlite_keeps_a_database_there_with_its_journal(scratch_server, made_by):
    # SQLite, root in the worker's user namespace, gives each journal its database's owner
    # (fchown) and mode (fchmod, 0666 for a database the caller made writable as the docs
    # say): the jail killed the worker at the first write. Both fail quietly now, and the
    # caller reads what the library wrote.
    import sqlite3
    server, _ = scratch_server
    client = ffibox.connect(server.address)
    session = client.session(scratch_directory=True)
    database = os.path.join(session.scratch_directory, "kept.db")
    if made_by == "caller":
        with sqlite3.connect(database) as mine:
            mine.execute("create table kept (n integer, word text)")
            mine.execute("insert into kept values (0, 'the caller''s')")
        mine.close()
        os.chmod(database, 0o666)
    from ffibox import ctypes as ct
    lib = session.CDLL("libsqlite3.so.0")
    lib.sqlite3_open.argtypes = [ct.c_char_p, ct.POINTER(ct.c_void_p)]
    lib.sqlite3_exec.argtypes = [ct.c_void_p, ct.c_char_p, ct.c_void_p, ct.c_void_p,
                                 ct.POINTER(ct.c_char_p)]
    lib.sqlite3_close.argtypes = [ct.c_void_p]
    handle, error = ct.c_void_p(), ct.c_char_p()
    assert lib.sqlite3_open(database.encode(), ct.byref(handle)) == 0
    statements = [] if made_by == "caller" else ["create table kept (n integer, word text)"]
    statements += ["begin", "insert into kept values (1, 'one')",
                   "insert into kept values (2, 'two')", "commit",
                   "pragma journal_mode=wal", "insert into kept values (3, 'three')"]
    for statement in statements:
        assert lib.sqlite3_exec(handle, statement.encode(), None, None, ct.byref(error)) == 0, \
            (statement, error.value)
    assert lib.sqlite3_close(handle) == 0
    assert session.generation == 1  # the same worker throughout
    with sqlite3.connect(database) as mine:
        words = [word for _, word in mine.execute("select * from kept order by n")]
    mine.close()
    assert words == (["the caller's"] if made_by == "caller" else []) + ["one", "two", "three"]
    session.close()
    client.close()


def lock_up(session, path, depth):
    """The hostile library's hostile_lock_up_directory(path, depth): directories the server's
    user may not enter or list, and a chain deeper than a path can name."""
    from ffibox import ctypes as ct
    lock = session.CDLL(HOSTILE_LIB).hostile_lock_up_directory
    lock.argtypes = [ct.c_char_p, ct.c_int]
    return lock(path.encode(), depth)


def test_what_a_library_locks_up_goes_with_the_session(scratch_server):
    # Here the server is root; as an ordinary user's private server (the worker a subordinate
    # uid): test_jail_fails_closed.py.
    server, _ = scratch_server
    client = ffibox.connect(server.address)
    session = client.session(scratch_directory=True)
    path = session.scratch_directory
    assert lock_up(session, path, 40) == 0
    assert sorted(os.listdir(path))[-2:] == ["locked", "unlistable"]
    session.close()
    assert wait_gone(os.path.dirname(path)), os.listdir(os.path.dirname(path))
    client.close()


def test_sessions_that_do_not_ask_get_none_and_a_server_without_a_root_refuses(server):
    client = ffibox.connect(server.address)
    assert client.session().scratch_directory is None
    with pytest.raises(ffibox.Error) as refused:
        client.session(scratch_directory=True)
    assert refused.value.code == "FAILED_PRECONDITION"
    assert "scratch root" in str(refused.value)
    client.close()


def test_the_private_server_gives_one_with_ffibox_scratch(tmp_path):
    # Nothing listens at FFIBOX_ADDRESS's socket: the client starts its own private server.
    script = textwrap.dedent("""
        import os
        from ffibox import ctypes
        path = ctypes.scratch_directory()
        libc = ctypes.CDLL("libc.so.6")
        libc.fopen.restype = ctypes.c_void_p
        libc.fclose.argtypes = [ctypes.c_void_p]
        f = libc.fopen(os.path.join(path, "made").encode(), b"w")
        libc.fclose(f)
        print(bool(f), os.path.exists(os.path.join(path, "made")))
    """)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "client", "python"),
               FFIBOX_SCRATCH="1", FFIBOX_ADDRESS="unix:" + str(tmp_path / "none.sock"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True True"
