"""Callbacks on the same-host channel (on by default; `session(channel_callbacks=False)`
turns them off): a callback that native code calls during a call on the channel comes on the
channel, runs on the thread that made the call, and its own calls and memory reads and
writes go there too; what the channel does not carry (loads, look-ups, definitions,
allocations) goes through the broker and runs inside the invocation all the same; an
invocation the client cannot take ends the channel, never the caller. Real ffiboxd, real
jailed workers."""
import copy
import textwrap
import threading
import time

import pytest

import ffibox
from conftest import (HOSTILE_LIB, TEST_LIB, Server, close_channel_from_client, run_script,
                      twinned_and_collected)
from ffibox import ctypes as ct
from ffibox._stubs import pb


@pytest.fixture(scope="module")
def client(module_client):
    return module_client


class Point(ct.Structure):
    _fields_ = [("x", ct.c_int), ("y", ct.c_int)]


def test_a_comparator_runs_on_the_calling_thread_and_sorts(client):
    with client.session(same_host=True, channel_callbacks=True) as session:
        assert session.stream.local_enabled
        libc = session.CDLL("libc.so.6")
        CMP = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_int), ct.POINTER(ct.c_int))
        threads = set()

        def compare(a, b):
            threads.add(threading.current_thread())
            return a[0] - b[0]

        libc.qsort.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_size_t, CMP]
        libc.qsort.restype = None
        values = (ct.c_int * 200)(*range(200, 0, -1))
        libc.qsort(values, 200, 4, CMP(compare))
        assert list(values) == list(range(1, 201))
        # Through the broker, a same-host session's callbacks run on its callback thread.
        assert threads == {threading.current_thread()}


def test_a_handler_that_outlives_its_calls_deadline_gets_the_calls_loss(client):
    # python3-unicorn's hook wrapper calls uc_emu_stop after its hook: a request through
    # ffiboxd (here a function's first look-up) from a handler whose call's worker was killed
    # meanwhile read FAILED_PRECONDITION "the session has no same-host channel", no error a
    # binding is told to catch.
    with client.session(same_host=True, channel_callbacks=True, timeout=1) as session:
        libc = session.CDLL("libc.so.6")
        CMP = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_int), ct.POINTER(ct.c_int))
        raised = []

        def compare(a, b):
            if not raised:
                time.sleep(2.5)  # past the deadline: the worker is killed meanwhile
                try:
                    libc.labs(-3)
                except ffibox.Error as error:
                    raised.append(error)
            return a[0] - b[0]

        values = (ct.c_int * 4)(3, 1, 2, 0)
        with pytest.raises(ffibox.CallTimeout):
            libc.qsort(values, 4, 4, CMP(compare))
        assert len(raised) == 1 and isinstance(raised[0], ffibox.CallTimeout), raised
        assert libc.labs(-5) == 5


@pytest.mark.parametrize("same_host", [False, True])
def test_a_callbacks_store_of_memory_its_call_passes_is_that_memory(client, same_host):
    # The first invocation of a call tells where the call placed the blocks it keeps
    # (CallbackInvoke.kept), through the broker and on the channel alike: a pointer to such
    # memory that the callback stores for the library is that memory's worker address.
    from test_ctypes_tutorial import check_a_callbacks_store_of_memory_its_call_passes
    with client.session(same_host=same_host, channel_callbacks=same_host) as session:
        assert session.stream.local_enabled == same_host
        check_a_callbacks_store_of_memory_its_call_passes(ct, session.CDLL(TEST_LIB))


def test_without_channel_callbacks_they_come_through_the_broker(client):
    with client.session(same_host=True, channel_callbacks=False) as session:
        lib = session.CDLL(TEST_LIB)
        threads = []
        F = ct.CFUNCTYPE(ct.c_int, ct.c_int)
        lib.call_twice_nested.argtypes = [F, ct.c_int]
        assert lib.call_twice_nested(
            F(lambda x: threads.append(threading.current_thread().name) or x + 1), 1) == 3
        assert threads == ["ffibox-callbacks"] * 2


def test_a_callback_calls_the_library_and_changes_memory_behind_its_pointer(client):
    with client.session(same_host=True, channel_callbacks=True) as session:
        lib = session.CDLL(TEST_LIB)
        add = lib.add_int
        add.argtypes = [ct.c_int, ct.c_int]
        assert add(1, 2) == 3  # resolved before the callback needs it
        MUTATE = ct.CFUNCTYPE(None, ct.POINTER(Point))
        lib.mutate_point.argtypes = [MUTATE, ct.POINTER(Point)]
        lib.mutate_point.restype = None

        def mutate(p):
            p.contents.x = add(p.contents.x, 100)  # a call nested in the invocation
            p.contents.y = -1

        point = Point(3, 4)
        lib.mutate_point(MUTATE(mutate), ct.byref(point))
        assert (point.x, point.y) == (103, -1)
        # Nested invocations: the callback's own call calls back again.
        F = ct.CFUNCTYPE(ct.c_int, ct.c_int)
        twice = lib.call_twice_nested
        twice.argtypes = [F, ct.c_int]
        inner = F(lambda x: x * 2)
        # outer(x) = inner(inner(x)) + 1 = 4x + 1, called twice on 1: 5, then 21.
        assert twice(F(lambda x: twice(inner, x) + 1), 1) == 21


def test_a_callback_loads_looks_up_and_defines_through_the_broker(client):
    """What the channel does not carry (a CDLL, a look-up, a new CFUNCTYPE object's
    definition) goes through the broker, naming the invocation, and the worker's thread that
    waits on the channel runs it: the handler works as in-process ctypes, on the calling
    thread, and the session stays on the channel."""
    with client.session(same_host=True, channel_callbacks=True) as session:
        lib = session.CDLL(TEST_LIB)
        F = ct.CFUNCTYPE(ct.c_int, ct.c_int)
        twice = lib.call_twice_nested
        twice.argtypes = [F, ct.c_int]
        threads = set()

        def needs_the_broker(x):
            threads.add(threading.current_thread())
            libc = session.CDLL("libc.so.6")  # a load
            strlen = libc.strlen  # a look-up
            strlen.argtypes = [ct.c_char_p]
            inner = F(lambda y: y * 10)  # defined at its first use, inside the invocation
            return twice(inner, x) + strlen(b"four")

        # outer(x) = 100x + 4, called twice on 1: 104, then 10404.
        assert twice(F(needs_the_broker), 1) == 10404
        assert threads == {threading.current_thread()}
        assert session.stream.local_enabled


def test_the_broker_checks_what_names_an_invocation_on_the_channel(client):
    """Request.channel_invocation: the broker refuses it without a channel, beside
    `invocation`, or on a request the channel carries; the worker refuses one naming no
    invocation that waits on the channel."""
    with client.session(same_host=False) as session:
        with pytest.raises(ffibox.Error, match="no same-host channel") as raised:
            session.stream.request(alloc_memory=pb.AllocMemory(size=8), channel_invocation=7)
        assert raised.value.code == "FAILED_PRECONDITION"
    with client.session(same_host=True, channel_callbacks=True) as session:
        stream = session.stream
        with pytest.raises(ffibox.Error, match="not with `invocation`") as raised:
            stream.request(alloc_memory=pb.AllocMemory(size=8), channel_invocation=7,
                           invocation=7)
        assert raised.value.code == "INVALID_ARGUMENT"
        with pytest.raises(ffibox.Error, match="channel_invocation") as raised:
            stream.request(ping=pb.Ping(), channel_invocation=7)
        assert raised.value.code == "INVALID_ARGUMENT"
        with pytest.raises(ffibox.Error, match="invocation 7 is not waiting on the same-host "
                                               "channel") as raised:
            stream.request(alloc_memory=pb.AllocMemory(size=8), channel_invocation=7)
        assert raised.value.code == "FAILED_PRECONDITION"
        assert session.CDLL("libc.so.6").strlen(b"still served") == 12
        assert stream.local_enabled
        # Once the worker closed the channel (a frame that is no call), nothing waits on it:
        # a request naming an invocation there is refused, not run as a top-level one.
        close_channel_from_client(stream._local)
        for _ in range(5):  # whichever of the worker's threads reads the stream by then
            time.sleep(0.05)
            with pytest.raises(ffibox.Error, match="is not waiting on the same-host channel"):
                stream.request(alloc_memory=pb.AllocMemory(size=8), channel_invocation=7)


def test_a_batch_inside_a_callback_on_the_channel_is_refused_and_the_rest_goes_on(client):
    """A batch would wait for the worker's thread that waits for the callback: refused
    there (FAILED_PRECONDITION in the callback), while a ping still goes through."""
    with client.session(same_host=True) as session:
        lib = session.CDLL(TEST_LIB)
        INT = pb.Type(scalar=pb.INT)
        function = session.resolve(pb.ResolveFunction(
            library=session.load_library(TEST_LIB), symbol="add_int",
            signature=pb.Signature(result=INT, params=[INT, INT])))
        F = ct.CFUNCTYPE(ct.c_int, ct.c_int)
        twice = lib.call_twice_nested
        twice.argtypes = [F, ct.c_int]
        seen = []

        def batches(x):
            session.stream.request(ping=pb.Ping())
            try:
                session.batch([pb.Call(function=function,
                                       args=[pb.Value(int_value=1), pb.Value(int_value=2)])])
            except ffibox.Error as error:
                seen.append((error.code, "batch cannot be sent" in str(error)))
            return x + 1

        assert twice(F(batches), 1) == 3
        assert seen == [("FAILED_PRECONDITION", True)] * 2
        assert session.stream.local_enabled


def forged_invoke_frame(callback: int, data: bytes) -> bytes:
    """A Response holding a CallbackInvoke (invocation 5, at the top level) of `callback`,
    whose one pointer argument comes with pointee bytes `data`."""
    return pb.Response(callback_invoke=pb.CallbackInvoke(
        invocation=5, callback=callback,
        args=[pb.Value(pointer=pb.PointerValue(remote=pb.RemoteAddress(address=4096)))],
        pointees=[pb.PointeeData(arg=0, data=data)])).SerializeToString()


def invoke_forger(session):
    """The hostile library's hostile_whole_frame_to_client_taken(prefix, prefix length,
    pattern, pattern length, length) on `session`'s worker: a frame written on the channel to
    this client during the call, behind the worker's back, and left until the client took it."""
    forge = session.CDLL(HOSTILE_LIB).hostile_whole_frame_to_client_taken
    forge.restype = ct.c_long
    forge.argtypes = [ct.c_char_p, ct.c_long, ct.c_char_p, ct.c_long, ct.c_long]
    return forge


def test_an_invocation_the_client_cannot_take_ends_the_channel_not_the_caller(client):
    with client.session(same_host=True, channel_callbacks=True) as session:
        called = []
        callback = ct.CFUNCTYPE(None, ct.POINTER(Point))(lambda p: called.append(1))
        callback_id = session.callback_id(callback)
        forge = invoke_forger(session)
        frame = forged_invoke_frame(callback_id, bytes(9))  # a Point is 8 bytes
        with pytest.raises(ffibox.Error) as raised:
            forge(frame, len(frame), b"\0", 1, len(frame))
        assert raised.value.code == "INTERNAL", raised.value
        assert "ships 9 bytes for argument 0, whose pointee is 8" in str(raised.value)
        assert called == []
        assert not session.stream.local_enabled
        assert session.CDLL("libc.so.6").strlen(b"still served") == 12


def test_a_forged_invocation_of_the_right_shape_runs_like_any(client):
    """The same forged frame with an 8-byte pointee passes the checks: what the checks
    refuse above is the size, nothing else."""
    with client.session(same_host=True, channel_callbacks=True) as session:
        seen = []
        callback = ct.CFUNCTYPE(None, ct.POINTER(Point))(
            lambda p: seen.append((p.contents.x, p.contents.y)))
        callback_id = session.callback_id(callback)
        forge = invoke_forger(session)
        frame = forged_invoke_frame(callback_id, bytes([7, 0, 0, 0, 9, 0, 0, 0]))
        # The frame went behind the worker's back: the worker finds its ring out of step and
        # closes the channel, so the call itself fails; the invocation ran before that.
        with pytest.raises(ffibox.Error):
            forge(frame, len(frame), b"\0", 1, len(frame))
        assert seen == [(7, 9)]
        assert session.CDLL("libc.so.6").strlen(b"still served") == 12


def test_an_answer_on_the_channel_saying_its_call_never_reached_the_worker_is_refused(client):
    """A worker may not say its call never reached it (the client would send the call's
    releases again, to a worker that may have reused their addresses). Forged on the channel
    as the answer to the call running, it is refused and ends the channel, not the session;
    the caller's error does not carry the flag, and the releases are not queued again."""
    with client.session(same_host=True) as session:
        forge = invoke_forger(session)
        assert forge(b"", 0, b"\0", 1, 0) == 0  # resolved, nothing written
        twinned_and_collected(session, 3)  # the forge's call carries their releases
        # That call is the stream's next request: the forged answer is for it.
        call_id = next(copy.copy(session.stream._ids))
        frame = pb.Response(id=call_id, error=pb.Error(
            code=pb.LIBRARY_LOAD_FAILED, message="forged", never_reached_worker=True)
        ).SerializeToString()
        with pytest.raises(ffibox.Error) as raised:
            forge(frame, len(frame), b"\0", 1, len(frame))
        assert raised.value.code == "INTERNAL", raised.value
        assert "says its request never reached a worker" in str(raised.value), raised.value
        assert not raised.value.never_reached_worker
        assert not session.twins.has_releases(), "the call's releases were queued again"
        assert not session.stream.local_enabled
        assert session.CDLL("libc.so.6").strlen(b"still served") == 12


def test_the_one_import_swap_takes_callbacks_on_the_channel_unless_told_not_to():
    """The path users take: no server running, the client starts its own; with
    FFIBOX_CHANNEL_CALLBACKS unset or 1 the default session's comparator runs on the calling
    thread, as in-process ctypes runs it; with 0 on the session's callback thread."""
    script = textwrap.dedent("""
        import os, sys, threading
        os.environ.pop("FFIBOX_ADDRESS", None)
        os.environ.pop("FFIBOX_SAME_HOST", None)
        if sys.argv[1]:
            os.environ["FFIBOX_CHANNEL_CALLBACKS"] = sys.argv[1]
        else:
            os.environ.pop("FFIBOX_CHANNEL_CALLBACKS", None)
        from ffibox import ctypes
        libc = ctypes.CDLL("libc.so.6")
        CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                               ctypes.POINTER(ctypes.c_int))
        names = set()
        def compare(a, b):
            names.add(threading.current_thread().name)
            return a[0] - b[0]
        libc.qsort.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, CMP]
        values = (ctypes.c_int * 5)(5, 1, 4, 2, 3)
        libc.qsort(values, 5, 4, CMP(compare))
        print(list(values), sorted(names), libc.session.stream.local_enabled)
    """)
    for setting, thread in (("", "MainThread"), ("1", "MainThread"), ("0", "ffibox-callbacks")):
        result = run_script(script, setting)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == "[1, 2, 3, 4, 5] ['%s'] True" % thread


def test_a_handler_waiting_for_another_threads_call_ends_at_the_deadline(client):
    """The other thread's call cannot take the channel the handler's call holds: it goes
    through the broker, whose worker runs it only after the call; the broker ends the call
    at its deadline, and with it the wait, instead of the two waiting on each other for
    ever."""
    with client.session(same_host=True, channel_callbacks=True, timeout=2) as session:
        lib = session.CDLL(TEST_LIB)
        add = lib.add_int
        add.argtypes = [ct.c_int, ct.c_int]
        assert add(1, 2) == 3
        F = ct.CFUNCTYPE(ct.c_int, ct.c_int)
        twice = lib.call_twice_nested
        twice.argtypes = [F, ct.c_int]
        outcomes = []

        def other():
            try:
                outcomes.append(add(2, 3))
            except ffibox.Error as error:
                outcomes.append(error.code)

        def waits_for_another_thread(x):
            worker = threading.Thread(target=other)
            worker.start()
            worker.join(20)
            return x + 1

        started = time.monotonic()
        with pytest.raises(ffibox.Error) as raised:
            twice(F(waits_for_another_thread), 1)
        assert raised.value.code == "CALL_TIMEOUT", raised.value
        assert time.monotonic() - started < 15
        assert outcomes and outcomes[0] != 5, outcomes  # it could not run during the call
        assert add(4, 5) == 9  # the session goes on


def test_a_callback_storing_its_own_buffer_places_a_twin_through_the_broker(client):
    """Storing a pointer to its own buffer in a `void**` makes the client place a twin of
    the buffer in worker memory (alloc_memory, through the broker): native code gets the
    twin's address, which holds the buffer's bytes."""
    with client.session(same_host=True, channel_callbacks=True) as session:
        lib = session.CDLL(TEST_LIB)
        MUTATE = ct.CFUNCTYPE(None, ct.POINTER(ct.c_void_p))
        kept = ct.create_string_buffer(b"kept", 16)

        def stores(slot):
            slot[0] = ct.cast(kept, ct.c_void_p)

        lib.mutate_point.argtypes = [MUTATE, ct.POINTER(ct.c_void_p)]
        lib.mutate_point.restype = None
        slot = ct.c_void_p(0)
        lib.mutate_point(MUTATE(stores), ct.byref(slot))
        assert slot.value  # the twin's address in the worker
        assert ct.string_at(slot.value) == b"kept"
        assert session.stream.local_enabled


def test_against_a_server_that_does_not_take_them_callbacks_stay_on_the_stream(client,
                                                                              monkeypatch,
                                                                              capsys):
    """A server that does not announce LocalChannelOpened.channel_invocations (an older one:
    here the announcement is taken out of the real server's answer) would queue a handler's
    look-up behind the call waiting for that handler: by default the session opens its
    channel without callbacks; asked for them, a look-up inside fails in the callback."""
    from ffibox._stream import SessionStream
    original = SessionStream.request

    def request(self, **op):
        response = original(self, **op)
        if response.HasField("local_channel"):
            response.local_channel.channel_invocations = False
        return response

    monkeypatch.setattr(SessionStream, "request", request)
    F = ct.CFUNCTYPE(ct.c_int, ct.c_int)
    with client.session(same_host=True) as session:
        assert session.stream.local_enabled
        twice = session.CDLL(TEST_LIB).call_twice_nested
        twice.argtypes = [F, ct.c_int]
        names = []
        assert twice(F(lambda x: names.append(threading.current_thread().name) or x + 1),
                     1) == 3
        assert names == ["ffibox-callbacks"] * 2
    with client.session(same_host=True, channel_callbacks=True) as session:
        lib = session.CDLL(TEST_LIB)
        twice = lib.call_twice_nested
        twice.argtypes = [F, ct.c_int]

        def looks_up(x):
            lib.add_int  # a look-up: this server could not run it during the call
            return x + 1

        assert twice(F(looks_up), 1) == 0  # native code got zero, twice
        err = capsys.readouterr().err
        assert err.count("FAILED_PRECONDITION: inside a callback that native code called "
                         "during a call on the same-host channel") == 2, err
        assert twice(F(lambda x: x + 1), 1) == 3
        assert session.stream.local_enabled


@pytest.fixture(scope="module")
def env_client():
    server = Server("--allow_env=FFIBOX_TEST_*")
    c = ffibox.connect(server.address)
    yield c
    c.close()
    server.stop()


def test_a_load_inside_a_callback_whose_constructor_calls_back_does_not_hang(env_client):
    """The worker's thread runs a load the handler sent through the broker while the handler
    waits for the broker's answer, not on the channel: a callback the library's constructor
    calls then is not invoked (the constructor gets zero, the stream a CALLBACK_ERROR), and
    the load and the call that made the callback are answered at once."""
    with env_client.session(same_host=True, timeout=3,
                            env={"FFIBOX_TEST_HOSTILE_AT_LOAD": "fire"}) as session:
        lib = session.CDLL(TEST_LIB)
        F = ct.CFUNCTYPE(ct.c_int, ct.c_int)
        stored = F(lambda x: x * 100)
        lib.register_handler.argtypes = [F]
        lib.register_handler(stored)
        twice = lib.call_twice_nested
        twice.argtypes = [F, ct.c_int]
        loaded = []

        def loads(x):
            if not loaded:
                loaded.append(session.CDLL(HOSTILE_LIB))
            return x + 1

        started = time.monotonic()
        assert twice(F(loads), 1) == 3
        assert time.monotonic() - started < 2
        assert loaded[0].hostile_fired_at_load() == 0  # not invoked: zero
        # The event may come after the call's answer.
        reason = ("not invoked: called while a request that a callback's handler sent "
                  "through the broker ran")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            errors = [e.error.message for e in session.stream.events
                      if e.kind == pb.SessionEvent.CALLBACK_ERROR]
            if errors:
                break
            time.sleep(0.05)
        assert len(errors) == 1 and reason in errors[0], errors
        assert session.stream.local_enabled


def test_a_crash_in_a_load_inside_a_callback_names_the_load(env_client):
    with env_client.session(same_host=True,
                            env={"FFIBOX_TEST_HOSTILE_AT_LOAD": "crash"}) as session:
        lib = session.CDLL(TEST_LIB)
        F = ct.CFUNCTYPE(ct.c_int, ct.c_int)
        twice = lib.call_twice_nested
        twice.argtypes = [F, ct.c_int]

        def loads(x):
            session.CDLL(HOSTILE_LIB)
            return x + 1

        with pytest.raises(ffibox.Error) as raised:
            twice(F(loads), 1)
        assert raised.value.code == "WORKER_CRASHED", raised.value
        assert "libffibox_hostile.so" in str(raised.value), raised.value


@pytest.mark.parametrize("channel_callbacks", [True, False], ids=["channel", "broker"])
def test_a_crash_in_a_call_inside_a_callback_is_worker_crashed_either_way(client,
                                                                          channel_callbacks):
    # The typed error a handler sees does not depend on the path its invocation took.
    with client.session(same_host=True, channel_callbacks=channel_callbacks) as session:
        lib = session.CDLL(TEST_LIB)
        F = ct.CFUNCTYPE(ct.c_int, ct.c_int)
        lib.call_twice_nested.argtypes = [F, ct.c_int]
        seen = []

        def crashing(x):
            try:
                lib.crash_null_deref()
            except ffibox.Error as error:
                seen.append(error)
                raise
            return x

        with pytest.raises(ffibox.WorkerCrashed):
            lib.call_twice_nested(F(crashing), 1)
        # Through the broker the handler runs on the session's callback thread, which may
        # learn of the crash after this one.
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(seen) == 1
        assert isinstance(seen[0], ffibox.WorkerCrashed), seen[0]
        assert "crash_null_deref" in str(seen[0])
        # The session goes on with the next worker.
        assert lib.call_twice_nested(F(lambda x: x + 1), 1) == 3


@pytest.mark.parametrize("same_host", ["1", "0"])
def test_a_callback_released_inside_the_sessions_own_sections_does_not_hang(server, same_host):
    """The collector finalizes a dead callback wherever it happens to run, also on a thread
    inside the session's own sections (their allocations start collections): its release
    takes the same locks again, on the same thread. In a child process: a hang there ends
    it, not the suite."""
    script = textwrap.dedent("""
        import os, sys, threading
        import ffibox
        from ffibox import ctypes as ct
        client = ffibox.connect(sys.argv[1])
        session = client.session(same_host=sys.argv[3] == "1")
        lib = session.CDLL(sys.argv[2])
        F = ct.CFUNCTYPE(ct.c_int, ct.c_int)
        lib.call_twice_nested.argtypes = [F, ct.c_int]
        callback = F(lambda x: x + 1)
        print(lib.call_twice_nested(callback, 1))
        callbacks = len(session._callbacks)
        released = threading.Event()

        def release_inside():
            global callback
            with session._callbacks_lock, session.stream._lock:
                callback = None  # the last reference: finalized here
            released.set()

        threading.Thread(target=release_inside, daemon=True).start()
        if not released.wait(10):
            print("the release hung", flush=True)
            os._exit(3)
        print(callbacks - len(session._callbacks))
        # The session goes on: a new callback works.
        print(lib.call_twice_nested(F(lambda x: x * 3), 2))
        session.close()
        client.close()
    """)
    result = run_script(script, server.address, TEST_LIB, same_host)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert result.stdout.split() == ["3", "1", "18"]
