"""The same-host channel from Python (docs/protocol.md, "The same-host channel"): calls go
to the worker through shared memory, with a real ffiboxd and jailed worker; a crash, an
overrun and callbacks behave as over gRPC; `FFIBOX_SAME_HOST=1` turns it on for the
one-import swap; a TCP client is refused it; a hostile answer is refused, never used.
"""
import errno
import gc
import os
import signal
import textwrap
import threading
import time

import pytest

import ffibox
from conftest import (EMPTY_BLOCK, HOSTILE_LIB, TEST_LIB, Certificates, PeakRss, Server,
                      close_channel_from_client, forge_empty_blocks, forged_empty_blocks,
                      run_script, varint)
from ffibox import _answer_shape, _local_channel
from ffibox import ctypes as ct
from ffibox._images import ImageTable
from ffibox._stubs import pb


TOKEN = "same-host-test-token-0123456789abcdef"


@pytest.fixture
def client(server):
    c = ffibox.connect(server.address)
    yield c
    c.close()


def test_calls_give_what_they_give_over_the_stream(client):
    results = []
    for same_host in (False, True):
        with client.session(same_host=same_host) as session:
            assert session.stream.local_enabled == same_host
            libm = session.CDLL("libm.so.6")
            libm.cos.restype = ct.c_double
            libm.cos.argtypes = [ct.c_double]
            libc = session.CDLL("libc.so.6")
            buffer = ct.create_string_buffer(b"x" * 10, 700000)  # past a ring
            libc.memset(buffer, 0x41, 600000)
            lib = session.CDLL(TEST_LIB)
            out = ct.c_char_p()
            lib.out_malloced_string(ct.byref(out))
            results.append((libm.cos(0.5), buffer.raw[599998:600002], out.value,
                            [lib.add_int(i, 1) for i in range(100)]))
            assert session.stream.local_enabled == same_host
    assert results[0] == results[1]
    assert results[1][1] == b"AA\0\0"


def count_on_channel(session):
    """The ops of the requests `session` sends on its same-host channel outside calls, as
    they are sent (LocalChannel.exchange_nested, wrapped)."""
    local, sent = session.stream._local, []
    exchange = local.exchange_nested

    def counted(request, deadline):
        sent.append(request.WhichOneof("op"))
        return exchange(request, deadline)

    local.exchange_nested = counted
    return sent


def malloc_in(session, size, data):
    """libc, and `size` bytes libc's malloc returned in `session`'s worker, `data` written
    at their start."""
    libc = session.CDLL("libc.so.6")
    libc.malloc.restype = ct.c_void_p
    libc.malloc.argtypes = [ct.c_size_t]
    at = libc.malloc(size)
    session.write(at, data)
    return libc, at


def memory_round(session):
    """Reads, writes, string reads, a read list, a typed write and a watched read of a worker
    block (malloc'd through a call), and the worker's refusals: what a user of Session sees."""
    _libc, at = malloc_in(session, 64, b"hello, worker\0" + bytes(range(50)))
    seen = [session.read(at, 16), session.read_string(at),
            session.memory.read_list([(at, 5), (at + 7, 6)])]
    session.write_typed(at + 32, ct.c_int, -7)
    seen.append(int.from_bytes(session.read(at + 32, 4), "little", signed=True))
    seen.append(session.memory.read_watched(at, 8, session.stream.generation))
    with pytest.raises(ffibox.MemoryFault) as fault:
        session.read(8, 8)
    seen.append(fault.value.code)
    with pytest.raises(ffibox.StaleHandle) as stale:
        session.read(at, 8, generation=session.stream.generation + 1)
    seen.append(stale.value.code)
    with pytest.raises(ffibox.Error) as refused:  # a typed read may not be watched
        session.stream.request(read_memory=pb.ReadMemory(
            address=pb.RemoteAddress(address=at, generation=session.stream.generation),
            type=pb.Type(scalar=pb.Scalar.Value("INT32")), watch=True))
    seen.append((refused.value.code, "read_memory.watch" in str(refused.value)))
    return seen


def test_memory_requests_go_on_the_channel_and_give_what_they_give_over_the_stream(client):
    results = []
    for same_host in (False, True):
        with client.session(same_host=same_host) as session:
            sent = count_on_channel(session) if same_host else []
            results.append(memory_round(session))
            assert session.stream.local_enabled == same_host  # refusals left the channel up
            if same_host:
                assert session.stream._local.memory_requests
                # All but the typed read, which the broker checks (its size is the type's).
                assert sent == ["write_memory", "read_memory", "read_string",
                                "read_memory_list", "write_memory", "read_memory",
                                "read_memory", "read_memory", "read_memory"]
                assert session.CDLL(TEST_LIB).add_int(2, 3) == 5  # still in step
    assert results[0] == results[1]
    assert results[1][:4] == [b"hello, worker\0\0\1", b"hello, worker",
                              [b"hello", b"worker"], -7]
    assert results[1][4] == (b"hello, w", True)
    assert results[1][5:] == ["MEMORY_FAULT", "STALE_HANDLE",
                              ("INVALID_ARGUMENT", True)]


def test_memory_requests_stay_on_the_stream_where_the_channel_does_not_take_them(client):
    # A server that does not announce LocalChannelOpened.memory_requests (an older one, whose
    # worker would close the channel on such a frame): they go through the broker.
    with client.session(same_host=True) as session:
        session.stream._local.memory_requests = False
        sent = count_on_channel(session)
        assert memory_round(session)[:2] == [b"hello, worker\0\0\1", b"hello, worker"]
        assert sent == []
        assert session.stream.local_enabled


def test_after_a_crash_memory_requests_wait_for_the_next_workers_channel(client):
    with client.session(same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        _libc, address = malloc_in(session, 8, bytes(8))
        generation = session.stream.generation
        with pytest.raises(ffibox.WorkerCrashed):
            lib.crash_null_deref()
        # No channel until the next worker answered a call: the read goes through the broker.
        with pytest.raises(ffibox.StaleHandle):
            session.read(address, 4, generation=generation)
        assert not session.stream.local_enabled
        assert lib.add_int(1, 1) == 2
        assert session.stream.local_enabled
        sent = count_on_channel(session)
        with pytest.raises(ffibox.StaleHandle):
            session.read(address, 4, generation=generation)
        assert sent == ["read_memory"]


class Finalized:
    """A reference cycle whose finalizer runs `use()` and records its result, or its error's
    code, in `seen`."""

    def __init__(self, use, seen):
        self.use, self.seen, self.me = use, seen, self

    def __del__(self):
        try:
            self.seen.append(self.use())
        except ffibox.Error as error:
            self.seen.append(error.code)


def run_with_collection_inside(monkeypatch, method, call, when=lambda *args: True,
                               after=False, owner=_local_channel.LocalChannel):
    """Runs `call()` on a thread of its own while `owner.<method>` is patched to collect
    garbage first (or, `after`, once it returned) when `when(self, *args)`; returns
    `call()`'s results, or fails when it hangs."""
    original = getattr(owner, method)

    def collecting(self, *args, **kwargs):
        collect = when(self, *args)
        if collect and not after:
            gc.collect()
        result = original(self, *args, **kwargs)
        if collect and after:
            gc.collect()
        return result

    monkeypatch.setattr(owner, method, collecting)
    results = []
    caller = threading.Thread(target=lambda: results.append(call()), daemon=True)
    caller.start()
    caller.join(20)
    monkeypatch.setattr(owner, method, original)
    assert not caller.is_alive(), "hung"
    return results


@pytest.mark.parametrize("use", ["read", "call"])
def test_a_finalizer_between_a_threads_exchanges_on_the_channel_is_served(client, monkeypatch,
                                                                          use):
    """A collection right after the channel's exchange (this thread still holds the channel)
    runs a finalizer that reads worker memory, or calls, as freetype-py's `__del__` calls
    FT_Done_Face: it cannot wait for the channel its own thread holds, nor open one; it goes
    through the broker, and both it and the call are answered."""
    with client.session(same_host=True) as session:
        libc, at = malloc_in(session, 8, b"finalize")
        libc.abs.argtypes = [ct.c_int]
        seen = []
        Finalized(lambda: session.read(at, 8) if use == "read" else libc.abs(-7), seen)
        results = run_with_collection_inside(monkeypatch, "transfer", lambda: libc.labs(-3),
                                             after=True)
        assert results == [3]
        assert seen == [b"finalize" if use == "read" else 7]
        assert session.stream.local_enabled


@pytest.mark.parametrize("owner, method, outcome", [
    (_local_channel.LocalChannel, "_take_invocation", "FAILED_PRECONDITION"),
    (ImageTable, "budget", b"finalize"),
])
def test_a_finalizer_during_a_callbacks_invocation_on_the_channel(client, monkeypatch, owner,
                                                                   method, outcome):
    """A collection once a callback's invocation has come on the channel, the worker waiting
    for this thread: before its handler runs (`_take_invocation`), the finalizer's read can
    be served by nobody until this thread answers, so it fails at once instead of stalling
    the call to its deadline; while the handler runs (the budget of the images it makes of
    its arguments, the first thing it takes), it is one of the handler's requests inside the
    invocation, served on the channel. The call and the channel go on."""
    with client.session(same_host=True, timeout=30) as session:
        libc, at = malloc_in(session, 8, b"finalize")
        compare = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_int), ct.POINTER(ct.c_int))(
            lambda a, b: a[0] - b[0])
        values = (ct.c_int * 3)(3, 1, 2)
        seen = []
        Finalized(lambda: session.read(at, 8), seen)
        started = time.monotonic()
        run_with_collection_inside(monkeypatch, method, lambda: libc.qsort(
            values, 3, ct.sizeof(ct.c_int), compare), owner=owner,
            when=lambda *args: owner is not ImageTable or session.stream.current_invocation())
        assert time.monotonic() - started < 10
        assert list(values) == [1, 2, 3]
        assert seen == [outcome]
        assert session.stream.local_enabled
        assert session.read(at, 8) == b"finalize"


def test_a_finalizer_while_a_large_answer_arrives_on_the_channel(client, monkeypatch):
    """A collection once a read larger than the channel's ring is sent and before its
    answer is taken (the worker fills the ring and waits for this thread to take more): the
    finalizer's read fails at once instead of waiting for a worker that waits for this
    thread; the large read and the channel go on."""
    with client.session(same_host=True) as session:
        size = 4 << 20
        libc, at = malloc_in(session, size, b"finalize")
        seen = []
        Finalized(lambda: session.read(at, 8), seen)
        started = time.monotonic()
        results = run_with_collection_inside(monkeypatch, "_read_frame",
                                             lambda: session.read(at, size))
        assert time.monotonic() - started < 10
        assert len(results[0]) == size and results[0][:8] == b"finalize"
        assert seen == ["FAILED_PRECONDITION"]
        assert session.stream.local_enabled


def test_a_crash_is_worker_crashed_and_the_next_worker_gets_a_channel(client):
    with client.session(same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        assert lib.counter_next() == 1
        with pytest.raises(ffibox.WorkerCrashed) as crash:
            lib.crash_null_deref()
        assert crash.value.signal == signal.SIGSEGV
        assert crash.value.function == "crash_null_deref"
        assert not session.stream.local_enabled
        assert lib.counter_next() == 1  # a fresh worker, reached through the stream
        assert session.stream.local_enabled  # and a channel to it for the calls after
        assert lib.counter_next() == 2


def test_a_function_at_an_address_of_a_dead_worker_is_stale_as_over_the_stream(client):
    # The worker alone cannot tell a handle of an earlier worker from one that never was:
    # such a call goes through the stream, whose broker answers STALE_HANDLE.
    with client.session(same_host=True) as session:
        library = session.load_library(TEST_LIB)
        at = session.lookup(library, "add_int")
        add = session.remote_function(ct.CFUNCTYPE(ct.c_int, ct.c_int, ct.c_int), at.address,
                                      at.generation)
        assert add(2, 3) == 5
        assert session.stream.local_enabled
        lib = session.CDLL(TEST_LIB)
        with pytest.raises(ffibox.WorkerCrashed):
            lib.crash_null_deref()
        assert lib.add_int(1, 1) == 2
        assert session.stream.local_enabled
        with pytest.raises(ffibox.StaleHandle):
            add(2, 3)
        assert lib.add_int(2, 2) == 4


def test_the_broker_ends_a_call_past_its_timeout(client):
    with client.session(timeout=0.5, same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        lib.spin_cpu_seconds.argtypes = [ct.c_int]
        started = time.monotonic()
        with pytest.raises(ffibox.CallTimeout) as overrun:
            lib.spin_cpu_seconds(60)
        assert time.monotonic() - started < 4.5  # not the client's own wait (timeout + 5 s)
        assert "spin_cpu_seconds" in str(overrun.value)
        assert lib.add_int(2, 3) == 5


def test_a_request_queued_behind_a_channel_call_past_its_timeout_says_so(client):
    # python-mpv's event thread blocks in mpv_wait_event on the channel while the main
    # thread's requests go through the broker behind it: when the broker kills the worker,
    # theirs say they waited behind that call (they read as if their own had overrun).
    with client.session(timeout=1, same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        lib.sleep_ms.argtypes = [ct.c_int]
        assert lib.add_int(1, 1) == 2 and session.stream.local_enabled
        outcome = {}

        def block():
            try:
                lib.sleep_ms(10000)
            except ffibox.Error as error:
                outcome["blocked"] = error

        blocker = threading.Thread(target=block)
        blocker.start()
        time.sleep(0.3)  # the call is on the channel
        with pytest.raises(ffibox.CallTimeout) as behind:
            lib.add_int(2, 3)
        blocker.join()
        assert isinstance(outcome.get("blocked"), ffibox.CallTimeout), outcome
        assert "sleep_ms" in str(outcome["blocked"])
        assert "queued behind it" not in str(outcome["blocked"])
        assert "sleep_ms" in str(behind.value)
        assert str(behind.value).endswith("; this request was queued behind it"), behind.value
        assert lib.add_int(4, 5) == 9


def test_a_call_on_the_channel_when_another_thread_closes_the_session(client):
    # As a call on the stream would: SessionClosed, with the reason the stream gives later
    # calls, not a bare error.
    session = client.session(same_host=True)
    lib = session.CDLL(TEST_LIB)
    lib.sleep_ms.argtypes = [ct.c_int]
    assert session.stream.local_enabled
    outcome = {}

    def call():
        try:
            outcome["value"] = lib.sleep_ms(2000)
        except ffibox.Error as error:
            outcome["error"] = error

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)
    started = time.monotonic()
    session.close()
    caller.join()
    assert time.monotonic() - started < 5
    assert isinstance(outcome.get("error"), ffibox.SessionClosed), outcome
    with pytest.raises(ffibox.SessionClosed) as later:
        lib.add_int(1, 2)
    # The same reason (its code may still be the stream's end's when the call ended first).
    assert str(outcome["error"]) == str(later.value)


def test_a_call_on_the_channel_when_ffiboxd_dies_ends_at_once():
    # The channel cannot see ffiboxd die (its worker dies with it): the call waited out its
    # deadline and 5 s more, then read as a timeout of the library's.
    server = Server()
    try:
        client = ffibox.connect(server.address)
        session = client.session(timeout=60, same_host=True)
        lib = session.CDLL(TEST_LIB)
        lib.sleep_ms.argtypes = [ct.c_int]
        assert lib.add_int(1, 1) == 2 and session.stream.local_enabled
        threading.Timer(0.5, server.process.kill).start()
        started = time.monotonic()
        with pytest.raises(ffibox.SessionClosed, match="stream broke"):
            lib.sleep_ms(30000)
        assert time.monotonic() - started < 5
        with pytest.raises(ffibox.SessionClosed):
            lib.add_int(1, 2)
        client.close()
    finally:
        server.stop()


def test_the_worker_runs_scalar_calls_without_the_requests_parse(client):
    """Calls whose arguments and result are scalars, with argtypes or without, are run by the
    worker from their arguments' bits (it counts them in the channel: kLocalScalarCallsWord);
    a call that passes memory or asks for errno goes the general way and is not counted."""
    with client.session(same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        lib.add_int.argtypes = [ct.c_int, ct.c_int]
        lib.add_int.restype = ct.c_int
        assert lib.add_int(1, 2) == 3
        local = session.stream._local
        before = local.worker_scalar_calls
        assert [lib.add_int(i, 1) for i in range(50)] == list(range(1, 51))
        libm = session.CDLL("libm.so.6")
        libm.cos.restype = ct.c_double
        libm.cos.argtypes = [ct.c_double]
        assert libm.cos(0.0) == 1.0
        untyped = session.CDLL(TEST_LIB)
        assert untyped.add_int(40, 2) == 42
        assert local.worker_scalar_calls == before + 52
        before = local.worker_scalar_calls
        libc = session.CDLL("libc.so.6", use_errno=True)
        assert libc.strlen(b"four") == 4
        libc.close(-1)
        assert ct.get_errno() == errno.EBADF
        assert local.worker_scalar_calls == before
        assert session.stream.local_enabled


def test_callbacks_run_during_a_call_on_the_channel(client):
    with client.session(same_host=True) as session:
        libc = session.CDLL("libc.so.6")
        compare = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_int), ct.POINTER(ct.c_int))(
            lambda a, b: a[0] - b[0])
        values = (ct.c_int * 6)(5, 1, 4, 2, 6, 3)
        libc.qsort(values, 6, ct.sizeof(ct.c_int), compare)
        assert list(values) == [1, 2, 3, 4, 5, 6]
        assert session.stream.local_enabled


def test_the_one_import_swap_uses_the_channel_with_ffibox_same_host(server):
    script = textwrap.dedent("""
        import os, sys
        os.environ["FFIBOX_ADDRESS"] = sys.argv[1]
        os.environ["FFIBOX_SAME_HOST"] = "1"
        from ffibox import ctypes
        libm = ctypes.CDLL("libm.so.6")
        libm.cos.restype = ctypes.c_double
        libm.cos.argtypes = [ctypes.c_double]
        print(libm.cos(0.0), libm.session.stream.local_enabled)
    """)
    result = run_script(script, server.address)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1.0", "True"]


def test_the_private_server_is_stopped_after_the_sessions_closed_at_exit():
    # At exit the sessions' streams, and then the clients' channels, are closed before the
    # private server is asked to stop: stopped with either open, it waited out its 2 s drain
    # deadline for them.
    script = textwrap.dedent("""
        import os, subprocess
        os.environ.pop("FFIBOX_ADDRESS", None)
        import ffibox.client
        from ffibox import ctypes, _server, _stream
        libm = ctypes.CDLL("libm.so.6")
        libm.cos.restype = ctypes.c_double
        libm.cos.argtypes = [ctypes.c_double]
        assert libm.cos(0.0) == 1.0 and libm.session.client.private
        server = _server._private.process
        terminate, close = subprocess.Popen.terminate, ffibox.client.Client.close
        closed = []

        def noting_open_streams(process):
            if process is server:
                open_streams = [s for s in _stream._live_streams if not s.closed_at_exit]
                print("open streams at stop:", len(open_streams), flush=True)
                print("clients closed before:", len(closed), flush=True)
            terminate(process)

        def noting_close(client):
            closed.append(client)
            close(client)

        subprocess.Popen.terminate = noting_open_streams
        ffibox.client.Client.close = noting_close
    """)
    done = run_script(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["open streams at stop: 0", "clients closed before: 1"], \
        (done.stdout, done.stderr)


def test_the_private_server_gives_the_one_import_swap_the_channel_by_default():
    # The path users take: no server running, the client starts its own, which serves this
    # process alone; FFIBOX_SAME_HOST=0 and a session that asks for an idle CPU throttle of
    # its own keep the calls on the stream.
    script = textwrap.dedent("""
        import os
        os.environ.pop("FFIBOX_ADDRESS", None)
        os.environ.pop("FFIBOX_SAME_HOST", None)
        from ffibox import ctypes
        libm = ctypes.CDLL("libm.so.6")
        libm.cos.restype = ctypes.c_double
        libm.cos.argtypes = [ctypes.c_double]
        client = libm.session.client
        print(client.private, libm.cos(0.0), libm.session.stream.local_enabled)
        with client.session(idle_cpu_percent=5) as throttled:
            print(throttled.stream.local_enabled)
        os.environ["FFIBOX_SAME_HOST"] = "0"
        with client.session() as plain:
            print(plain.stream.local_enabled, plain.CDLL("libm.so.6").labs(-3))
        os.environ["FFIBOX_SAME_HOST"] = "off"
        with client.session() as off:
            print(off.stream.local_enabled)
        # A value that means nothing is refused, not taken for the default (on, here).
        os.environ["FFIBOX_SAME_HOST"] = "nope"
        try:
            client.session()
        except ValueError as refused:
            print("$FFIBOX_SAME_HOST" in str(refused))
    """)
    result = run_script(script)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "1.0", "True", "False", "False", "3", "False", "True"]


def test_a_client_over_tcp_is_refused_a_channel(tmp_path):
    certificates = Certificates(tmp_path)
    with open(certificates.path("ffiboxd.conf"), "w") as conf:
        conf.write('identities { name: "tenant" bearer_token: "%s" }\n' % TOKEN)
    server = Server("--config=" + certificates.path("ffiboxd.conf"), tls=certificates)
    try:
        client = ffibox.connect(server.tcp_address, timeout=5, token=TOKEN,
                                root_certificates=certificates.ca_pem)
        with pytest.raises(ffibox.Error) as refused:
            client.session(same_host=True)
        assert refused.value.code == "FAILED_PRECONDITION"
        assert "unix-socket" in str(refused.value)
        # FFIBOX_SAME_HOST asks for it only where it can be had.
        os.environ["FFIBOX_SAME_HOST"] = "1"
        try:
            with client.session() as session:
                assert not session.stream.local_enabled
                # (A system library: this tenant may not have the test library, in root's
                # home, which others may not search.)
                assert session.CDLL("libc.so.6").labs(-3) == 3
        finally:
            del os.environ["FFIBOX_SAME_HOST"]
        client.close()
    finally:
        server.stop()


def test_bad_input_on_the_channel_closes_it_and_the_session_goes_on(client):
    with client.session(same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        assert lib.add_int(1, 1) == 2
        # Inside an invocation a channel is refused, with the field named.
        with pytest.raises(ffibox.Error) as refused:
            session.stream.request(open_local_channel=pb.OpenLocalChannel(), invocation=7)
        assert refused.value.code == "FAILED_PRECONDITION", refused.value
        assert "invocation" in str(refused.value)
        # A frame that is no call: the worker closes the channel (and says it did it).
        local = session.stream._local
        close_channel_from_client(local)
        # The next call finds the channel closed before sending: it goes through the stream,
        # and the worker that refused the frame is alive and answers.
        assert lib.add_int(2, 3) == 5
        assert lib.counter_next() == 1
        assert lib.counter_next() == 2


def call_with_blocks():
    request = pb.Request(id=7)
    request.call.function = 3
    request.call.blocks.add(data=b"\0" * 16, direction=pb.INOUT)
    request.call.blocks.add(data=b"\0" * 8, direction=pb.IN)
    request.call.blocks.add(size=8, direction=pb.OUT, keep=True)
    return request


def good_answer():
    response = pb.Response(id=7)
    response.call.blocks.add(block=0, data=b"\1" * 16)
    response.call.blocks.add(block=2, data=b"\2" * 8)
    response.call.kept.add(block=2).address.address = 0x1000
    return response


@pytest.mark.parametrize("spoil", [
    lambda r: setattr(r, "id", 8),
    lambda r: r.error.CopyFrom(pb.Error(code=pb.WORKER_CRASHED)),
    lambda r: r.call.blocks.add(block=1, data=b"\0" * 8),       # an IN block comes back
    lambda r: setattr(r.call.blocks[0], "data", b"\1" * 17),     # not its size
    lambda r: r.call.blocks.add(block=0, data=b"\1" * 16),       # twice
    lambda r: r.call.blocks[0].pointers.add(offset=12),          # not 8-aligned
    lambda r: r.call.blocks[0].pointers.add(offset=8).target.CopyFrom(
        pb.BlockRef(block=5)),                                   # outside the call's blocks
    lambda r: r.call.ClearField("kept"),                         # a kept block unreported
    lambda r: setattr(r.call.kept[0].address, "address", 0),
    lambda r: r.call.changed.add(data=b"x"),                     # a change at address 0
    lambda r: setattr(r.call.changed.add().address, "address", 0x2000),  # an empty change
    lambda r: r.call.changed.add(data=b"x", offset=4).address.CopyFrom(
        pb.RemoteAddress(address=0x2000)),                       # not at a word
    lambda r: [r.call.changed.add(data=b"x" * (1 << 21)).address.CopyFrom(
        pb.RemoteAddress(address=0x2000 + i)) for i in range(5)],  # past the watch budgets
])
def test_a_hostile_answer_is_refused(spoil):
    request = call_with_blocks()
    assert _local_channel.check_call_answer(request, good_answer()) is None
    answer = good_answer()
    spoil(answer)
    assert _local_channel.check_call_answer(request, answer) is not None


def test_an_answer_that_would_parse_into_far_more_memory_is_refused_unparsed(client):
    """A hostile library forges its worker's answer on the channel: 40 MiB of empty returned
    blocks (under what a packed call reads, _packers.PACKED_ANSWER_BYTES, as its call passes
    new strings), which parsed whole would take this process GiBs and tens of seconds. The
    client walks the encoding first and refuses it at once; the session goes on."""
    with client.session(same_host=True) as session:
        lib = session.CDLL(HOSTILE_LIB)
        error, seconds, grown = forge_empty_blocks(lib, True, os.getpid(), 40 << 20)
        assert seconds < 10, "refused after %.1f s" % seconds
        # The frame itself is read whole (48 MiB, and the ring's copies): nothing like the
        # GiBs of its parse.
        assert grown < 250, "the client grew by %.0f MiB" % grown
        assert error is not None and error.code == "INTERNAL", error
        assert "holds more ffibox.v1.CallResult.blocks than the request allows" in str(error)
        assert session.CDLL("libc.so.6").strlen(b"still served") == 12


def test_an_answer_longer_than_its_call_allows_is_refused_before_it_is_read(client):
    """A hostile library announces a 300 MiB answer on the channel to a call the packers do
    not take (a 20 KiB block): the call's answer may hold its result, its returned blocks
    and what the library changed (_answer_shape.call_answer_bound, about 72 MiB here), so
    the client refuses it from its length, holding none of it (it read all 300 MiB, and held
    twice that, before). The library keeps writing into a ring no one reads: its worker is
    killed at the call's deadline and the session goes on."""
    with client.session(same_host=True, timeout=3) as session:
        lib, libc = session.CDLL(HOSTILE_LIB), session.CDLL("libc.so.6")
        assert libc.strlen(b"served") == 6
        start, total = forged_empty_blocks(300 << 20, to_broker=False)
        forge = lib.hostile_whole_frame
        forge.restype = ct.c_long
        forge.argtypes = [ct.c_int, ct.c_char_p, ct.c_long, ct.c_char_p, ct.c_long, ct.c_long]
        started = time.monotonic()
        with PeakRss(os.getpid()) as rss:
            with pytest.raises(ffibox.Error) as raised:
                forge(1, start + bytes(20 << 10), len(start), EMPTY_BLOCK, len(EMPTY_BLOCK),
                      total)
        assert raised.value.code == "INTERNAL", raised.value
        assert "more than the request can be answered with" in str(raised.value)
        assert time.monotonic() - started < 2
        assert rss.peak - rss.before < 32, "the client grew by %.0f MiB" % (
            rss.peak - rss.before)
        deadline = time.monotonic() + 30
        while True:
            try:
                assert libc.strlen(b"still served") == 12
                break
            except ffibox.CallTimeout:
                assert time.monotonic() < deadline  # queued behind the hung call once


def test_a_call_answer_is_bounded_by_its_blocks_and_its_record_result():
    request = call_with_blocks()
    returned = sum(block.size or len(block.data) for block in request.call.blocks
                   if block.direction != pb.IN)
    small = _answer_shape.call_answer_bound(request, 0)
    assert _answer_shape.CALL_ANSWER_BASE_BYTES + 5 * returned <= small
    assert small < _answer_shape.CALL_ANSWER_BASE_BYTES + 5 * returned + (64 << 10)
    assert _answer_shape.call_answer_bound(request, None) == _answer_shape.MAX_ANSWER_BYTES
    big = pb.RecordType(kind=pb.RecordType.STRUCT, fields=[
        pb.Field(name="a", type=pb.Type(array=pb.ArrayType(
            element=pb.Type(scalar=pb.DOUBLE), length=1 << 20)))])
    result = _answer_shape.result_answer_bytes(pb.Signature(result=pb.Type(record=big)))
    assert (8 << 20) < result < (17 << 20)  # 8 MiB of doubles, at most 16 bytes each
    assert _answer_shape.call_answer_bound(request, result) == small + result
    for scalar in (pb.CSTRING, pb.DOUBLE):  # within the base
        assert _answer_shape.result_answer_bytes(
            pb.Signature(result=pb.Type(scalar=scalar))) == 0


def test_the_walk_bounds_pointers_by_the_words_of_their_blocks_data():
    request = call_with_blocks()
    request.call.blocks[0].ClearField("data")
    request.call.blocks[0].size = 1 << 20
    limits = _answer_shape.call_answer_limits(request)
    answer = pb.Response(id=7)
    block = answer.call.blocks.add(block=0)
    for _ in range(40000):  # empty pointers, without the block's data: objects for nothing
        block.pointers.add()
    why = _answer_shape.check_answer_shape(answer.SerializeToString(), lambda: limits)
    assert why == "holds more ffibox.v1.BlockContents.pointers than the request allows"
    block.data = b"\1" * (1 << 20)  # with its data before them, a pointer per word passes
    assert _answer_shape.check_answer_shape(answer.SerializeToString(), lambda: limits) is None
    for _ in range((1 << 17) - 40000):
        block.pointers.add()
    assert _answer_shape.check_answer_shape(answer.SerializeToString(), lambda: limits) is None
    block.pointers.add()
    assert _answer_shape.check_answer_shape(answer.SerializeToString(), lambda: limits) is not None


def test_the_walk_takes_plain_pointers_in_a_run_and_walks_any_other():
    """Pointers as protobuf writes them are taken a run at a time; one holding anything else
    (an unknown field, its fields in another order) is walked as any message is."""
    request = call_with_blocks()
    request.call.blocks[0].ClearField("data")
    request.call.blocks[0].size = 1 << 20
    limits = _answer_shape.call_answer_limits(request)
    answer = pb.Response(id=7)
    block = answer.call.blocks.add(block=0, data=b"\1" * (1 << 20))
    for offset in range(0, 1 << 20, 8):
        block.pointers.add(offset=offset, target=pb.BlockRef(block=2, offset=offset % 300))
    plain = answer.SerializeToString()
    assert _answer_shape.check_answer_shape(plain, lambda: limits) is None
    # The target before the offset (the pointer at offset 8): protobuf parses it the same.
    target = b"\x12\x04\x08\x02\x10\x08"
    reordered = plain.replace(b"\x1a\x08\x08\x08" + target, b"\x1a\x08" + target + b"\x08\x08",
                              1)
    assert reordered != plain and pb.Response.FromString(reordered) == answer
    assert _answer_shape.check_answer_shape(reordered, lambda: limits) is None
    # The fast path itself: the whole run in one go, up to what the block's data allows.
    at = plain.index(b"\x1a", plain.index(b"\x01" * 64) + (1 << 20))
    assert _answer_shape._plain_pointers(plain, at, len(plain), 1 << 20) == (len(plain), 1 << 17)
    assert _answer_shape._plain_pointers(plain, at, len(plain), 5)[1] == 5
    # ... not the reordered pointer, nor one whose varint runs past ten bytes (which protobuf
    # refuses): the walk of its own takes those.
    assert _answer_shape._plain_pointers(reordered, at, len(reordered), 1 << 20)[1] == 1
    overlong = b"\x1a\x0c\x08" + b"\x80" * 10 + b"\x00"
    assert _answer_shape._plain_pointers(overlong, 0, len(overlong), 1) == (0, 0)
    # An unknown field in each of 65 pointers: past the 64 an answer may hold.
    for pointer in block.pointers[:65]:
        pointer.target.MergeFromString(b"\x18\x01")
    assert (_answer_shape.check_answer_shape(answer.SerializeToString(), lambda: limits) ==
            "holds more than 64 unknown fields")


def test_the_walk_lets_a_lasting_block_in_the_shared_area_report_its_pointers():
    request = call_through_the_area()
    request.call.blocks[2].size = 1 << 20
    limits = _answer_shape.call_answer_limits(request)
    assert limits["ffibox.v1.BlockContents.pointers"] == (1 << 20) // 8
    answer = answer_through_the_area()
    for offset in range(0, 1 << 20, 8):
        answer.call.blocks[1].pointers.add(offset=offset)
    assert _answer_shape.check_answer_shape(answer.SerializeToString(), lambda: limits) is None
    answer.call.blocks[0].pointers.add()  # the placed block, not lasting: none of its own
    assert _answer_shape.check_answer_shape(answer.SerializeToString(), lambda: limits) is not None


def test_the_walk_refuses_a_value_longer_than_the_message_around_it():
    """protobuf's parser would read such a value through what follows (here a Value's
    aggregate of 2^20 empty elements, hidden in an unknown field of Response)."""
    elements = b"\x0a\x00" * (1 << 20)
    tail = b"\x42" + varint(len(elements)) + elements
    value = b"\x0a" + varint(len(tail) + 1)
    encoded = b"\x08\x07\x6a" + varint(len(value)) + value + tail
    why = _answer_shape.check_answer_shape(
        encoded, lambda: _answer_shape.call_answer_limits(call_with_blocks()))
    assert why == "is not a valid encoding"


def call_through_the_area():
    """call_with_blocks with its INOUT block in the shared area and its kept OUT block's
    bytes carried there (as LocalChannel.exchange sends blocks of 64 KiB or more)."""
    request = call_with_blocks()
    request.call.blocks[0].ClearField("data")
    request.call.blocks[0].size = 16
    request.call.blocks[0].shared_offset = 0
    request.call.blocks[2].shared_offset = 64 << 10
    return request


def answer_through_the_area():
    response = good_answer()
    for returned in response.call.blocks:
        returned.ClearField("data")
        returned.shared = True
    return response


@pytest.mark.parametrize("spoil", [
    lambda r: setattr(r.call.blocks[0], "shared", False),        # not marked
    lambda r: setattr(r.call.blocks[0], "data", b"\1" * 16),     # data beside the mark
    # a placed block: no scan
    lambda r: r.call.blocks[0].pointers.add(offset=8, target=pb.BlockRef(block=0)),
])
def test_a_hostile_answer_about_the_shared_area_is_refused(spoil):
    request = call_through_the_area()
    answer = answer_through_the_area()
    # The kept block's words are scanned as any lasting block's: it may report pointers.
    answer.call.blocks[1].pointers.add(offset=0, target=pb.BlockRef(block=0))
    assert _local_channel.check_call_answer(request, answer) is None
    spoil(answer)
    assert _local_channel.check_call_answer(request, answer) is not None
    # And a block sent in the frame may not claim the area.
    claimed = good_answer()
    claimed.call.blocks[0].ClearField("data")
    claimed.call.blocks[0].shared = True
    assert _local_channel.check_call_answer(call_with_blocks(), claimed) is not None


def test_a_call_larger_than_a_message_is_refused_and_the_session_goes_on():
    """A request past the session's max_message_bytes on the stream is the broker's
    RESOURCE_EXHAUSTED; the client does not write it (gRPC ends the whole stream over a
    message four times that size), so the session goes on."""
    server = Server("--max_message_bytes=1048576", "--pool_size=1")
    same_host = False
    try:
        c = ffibox.connect(server.address)
        with c.session(same_host=same_host) as session:
            libc = session.CDLL("libc.so.6")
            big = ct.create_string_buffer(b"a" * 100, 6 << 20)
            with pytest.raises(ffibox.Error) as refused:
                libc.memset(big, ord("b"), 10)
            assert refused.value.code == "RESOURCE_EXHAUSTED"
            assert "exceeds the limit of 1048576 bytes" in str(refused.value)
            small = ct.create_string_buffer(16)
            libc.memset(small, ord("c"), 4)
            assert small.raw[:5] == b"cccc\0"
            assert session.stream.local_enabled == same_host
        c.close()
    finally:
        server.stop()


def test_a_buffer_larger_than_a_message_travels_in_the_shared_area(client):
    """A caller's buffer past the session's max_message_bytes (16 MiB) works on the same-host
    channel: its twin's bytes travel in the channel's shared area both ways, and it is still
    the caller's object (a pointer the library hands back into it is the caller's)."""
    with client.session(same_host=True) as session:
        libc = session.CDLL("libc.so.6")
        libc.memchr.restype = ct.c_void_p
        size = 20 << 20
        buf = ct.create_string_buffer(b"start", size)
        for fill in (0x41, 0x42):
            libc.memset(ct.byref(buf, 8), fill, size - 9)
            raw = buf.raw
            assert raw[:5] == b"start" and raw[5:8] == b"\0\0\0"
            assert raw[8:12] == bytes([fill]) * 4 and raw[-2:] == bytes([fill]) + b"\0"
            assert raw.count(bytes([fill])) == size - 9
        buf[size - 100] = b"Z"  # the caller's change goes back with the next call
        found = libc.memchr(buf, ord("Z"), size)
        assert found - ct.addressof(buf) == size - 100
        assert session.stream.local_enabled
    with client.session(same_host=False) as session:
        libc = session.CDLL("libc.so.6")
        with pytest.raises(ffibox.Error) as refused:
            libc.memset(buf, 0x43, 10)
        assert refused.value.code == "RESOURCE_EXHAUSTED"


def test_after_a_crash_a_buffer_larger_than_a_message_reaches_the_next_worker(client):
    """After the worker is lost, a call whose buffer fits no message opens the channel to
    the next worker and goes through its area, instead of being refused on the stream."""
    with client.session(same_host=True) as session:
        libc = session.CDLL("libc.so.6")
        size = 20 << 20
        buf = ct.create_string_buffer(size)
        for fill in (0x41, 0x42):
            libc.memset(buf, fill, size - 1)
            assert buf.raw[:2] == bytes([fill]) * 2 and buf.raw[-2:] == bytes([fill]) + b"\0"
            with pytest.raises(ffibox.WorkerCrashed):
                libc.abort()
            assert not session.stream.local_enabled


def test_a_callback_answer_too_large_to_send_fails_the_callback_at_once():
    """A callback's answer larger than the server reads (a 60000-byte pointee written back,
    against a 32 KiB limit) goes as the callback's failure: native code gets zero at once
    and a CALLBACK_ERROR event says why, instead of the call waiting for its deadline (and
    its worker being killed)."""
    server = Server("--max_message_bytes=32768", "--call_timeout_ms=30000", "--pool_size=0")
    try:
        c = ffibox.connect(server.address)
        with c.session() as session:
            lib = session.CDLL(TEST_LIB)
            libc = session.CDLL("libc.so.6")
            libc.malloc.restype = ct.c_void_p
            libc.malloc.argtypes = [ct.c_size_t]
            memory = libc.malloc(60000)
            assert memory
            block = ct.c_ubyte * 60000
            FILL = ct.CFUNCTYPE(None, ct.POINTER(block), ct.c_int)
            filled = []

            def fill(pointee, n):
                pointee.contents[n - 1] = 7
                filled.append(n)

            lib.call_fill.argtypes = [FILL, ct.c_void_p, ct.c_int]
            lib.call_fill.restype = None
            started = time.monotonic()
            lib.call_fill(FILL(fill), memory, 60000)
            assert time.monotonic() - started < 10
            assert filled == [60000]
            errors = [e for e in session.stream.events
                      if e.kind == pb.SessionEvent.CALLBACK_ERROR]
            assert len(errors) == 1, errors
            assert "too large to send" in errors[0].error.message
            # The same worker goes on.
            assert session.generation == 1
            assert lib.add_int(2, 3) == 5
        c.close()
    finally:
        server.stop()


def test_the_channel_arrives_close_on_exec(client):
    """The memfd the door hands over is close-on-exec from the moment it arrives: a child
    another thread starts meanwhile does not inherit the rings."""
    with client.session(same_host=False) as session:
        opened = session.stream.request(open_local_channel=pb.OpenLocalChannel()).local_channel
        fd = _local_channel._fetch_memfd(opened.door_path, opened.token, 5.0)
        try:
            assert not os.get_inheritable(fd)
        finally:
            os.close(fd)


def _memfds_of(pid: int) -> int:
    """How many memfds process `pid` holds open."""
    count = 0
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            count += os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("/memfd:")
        except OSError:
            pass  # closed meanwhile
    return count


def test_a_channel_never_fetched_is_closed_when_its_session_ends():
    """A session's channel that its client never fetched from the door is closed when the
    session ends, not when its token expires: it holds no memory past the session."""
    server = Server("--pool_size=0")
    try:
        c = ffibox.connect(server.address)
        before = _memfds_of(server.process.pid)
        session = c.session(same_host=False)
        session.CDLL(TEST_LIB).add_int(2, 3)  # the session's worker
        session.stream.request(open_local_channel=pb.OpenLocalChannel())  # never fetched
        assert _memfds_of(server.process.pid) > before
        session.close()
        deadline = time.monotonic() + 5  # the token itself would last 10 s
        while _memfds_of(server.process.pid) > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _memfds_of(server.process.pid) == before
        c.close()
    finally:
        server.stop()


def test_a_file_size_limit_below_the_shared_area_refuses_the_channel_not_the_server():
    # Under RLIMIT_FSIZE (ulimit -f) below the channel's shared area, making the area killed
    # ffiboxd with SIGXFSZ, and every other session with it.
    server = Server(wrapper=["prlimit", "--fsize=100000000:100000000", "--"])
    try:
        client = ffibox.connect(server.address)
        with client.session() as bystander:
            libc = bystander.CDLL("libc.so.6")
            with pytest.raises(ffibox.Error, match="File too large") as refused:
                client.session(same_host=True)
            assert refused.value.code == "RESOURCE_EXHAUSTED"
            assert server.process.poll() is None
            assert libc.strlen(b"still") == 5
        client.close()
    finally:
        server.stop()


def test_a_channel_dropped_for_want_of_descriptors_says_so():
    # The kernel drops a descriptor the receiver has no room for (MSG_CTRUNC): the door's
    # answer read as "handed over no channel", naming neither cause nor limit.
    run = run_script(textwrap.dedent("""
        import os, resource, socket
        from ffibox import _local_channel
        left, right = socket.socketpair()
        reader, writer = os.pipe()
        socket.send_fds(left, [b"tag45678"], [reader])
        lowest_free = os.dup(0)
        os.close(lowest_free)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
        try:
            _local_channel._receive_descriptors(right, 8, 4)
            print("received")
        except OSError as error:
            print(error.errno, error.strerror)
    """))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("%d the descriptors sent were dropped" % errno.EMFILE), run.stdout
    assert "RLIMIT_NOFILE" in run.stdout
