"""A worker's callback invocation names the request whose thread made it
(CallbackInvoke.request_id), and the client may run the callback on that request's caller.
The hostile library (tests/testlibs/hostile.c) forges such an invocation straight into its
worker's ring to the broker, naming a request that is not running: the broker ends the worker
as a protocol violation, the caller gets WORKER_CRASHED, and the session goes on with a new
worker. A forged answer that claims what only the broker may say is ended the same way.
Real ffiboxd, real jailed workers."""
import ctypes
import gc
import os
import re
import time

import ffibox
from ffibox import _stream, ctypes as ct
from ffibox._stubs import pb
from conftest import (HOSTILE_LIB, TEST_LIB, PeakRss, Server, run_script, twinned_and_collected,
                      varint)


def forged_invoke(callback: int, request_id: int) -> bytes:
    """A WorkerReply holding a CallbackInvoke of `callback` (no arguments), invocation 999,
    that says request `request_id` made it."""
    invoke = (b"\x08" + varint(999) + b"\x10" + varint(callback) + b"\x30" +
              varint(request_id))
    return b"\x12" + varint(len(invoke)) + invoke


def frame_forger(session):
    """The hostile library's hostile_whole_frame_taken(prefix, prefix length, pattern,
    pattern length, length) on `session`'s worker: a frame written into the worker's ring to
    the broker, then left until the broker has read it (the worker's own answer would
    otherwise go where the worker believes the ring ends, over it)."""
    forge = session.CDLL(HOSTILE_LIB).hostile_whole_frame_taken
    forge.restype = ctypes.c_long
    forge.argtypes = [ctypes.c_char_p, ctypes.c_long, ctypes.c_char_p, ctypes.c_long,
                      ctypes.c_long]
    return forge


def test_an_invocation_naming_a_request_that_is_not_running_ends_its_worker():
    server = Server()
    try:
        client = ffibox.connect(server.address)
        session = client.session(same_host=False)
        called = []
        callback = ct.CFUNCTYPE(None)(lambda: called.append(1))
        callback_id = session.callback_id(callback)
        forge = frame_forger(session)
        frame = forged_invoke(callback_id, 777777)
        try:
            raised = "returned %d" % forge(frame, len(frame), b"\0", 1, len(frame))
        except ffibox.Error as error:
            raised = error
        assert isinstance(raised, ffibox.Error) and raised.code == "WORKER_CRASHED", raised
        assert "says request 777777 made it, which is not running at the top level" in str(
            raised)
        assert called == [], "the forged invocation reached the client"
        # The session goes on with a new worker, and its callback still works.
        lib = session.CDLL(TEST_LIB)
        twice = lib.call_twice_nested
        twice.argtypes = [ct.CFUNCTYPE(ct.c_int, ct.c_int), ct.c_int]
        assert twice(ct.CFUNCTYPE(ct.c_int, ct.c_int)(lambda x: x + 1), 1) == 3
        session.close()
        client.close()
    finally:
        server.stop()


def test_a_library_saying_again_that_its_worker_started_ends_that_worker_alone():
    # A worker's `started` frame is its first, read before it is given a session: one a
    # library forges later is a protocol violation, never taken for a worker's start.
    server = Server()
    try:
        client = ffibox.connect(server.address)
        session = client.session(same_host=False)
        bystander = client.session(same_host=False)
        forge = frame_forger(session)
        frame = b"\x20\x01"  # WorkerReply{started: true}
        try:
            raised = "returned %d" % forge(frame, len(frame), b"\0", 1, len(frame))
        except ffibox.Error as error:
            raised = error
        assert isinstance(raised, ffibox.Error) and raised.code == "WORKER_CRASHED", raised
        assert "said again that it started" in str(raised), raised
        # The session goes on with a new worker; the other session was never touched.
        assert session.CDLL("libc.so.6").abs(-7) == 7
        assert bystander.CDLL("libc.so.6").abs(-8) == 8 and bystander.generation == 1
        session.close()
        bystander.close()
        client.close()
    finally:
        server.stop()


def test_a_worker_that_says_its_request_never_reached_it_is_ended_and_the_client_is_not_told_so():
    """Only the broker may say a request never reached a worker (the client would then send
    the request's releases again, to a worker that may have reused their addresses). A worker
    that answers the call running in it with such an error, forged into its ring, is ended:
    the caller gets WORKER_CRASHED, which does not carry the flag, and the releases the call
    carried are not queued again."""
    server = Server()
    try:
        client = ffibox.connect(server.address)
        session = client.session(same_host=False)
        hostile = session.CDLL(HOSTILE_LIB)
        forge = hostile.hostile_answer_running_request_never_reached
        forge.restype = ctypes.c_long
        twinned_and_collected(session, 3)  # the forge's call carries their releases
        try:
            raised = "returned %d" % forge()
        except ffibox.Error as error:
            raised = error
        assert isinstance(raised, ffibox.Error) and raised.code == "WORKER_CRASHED", raised
        assert "an error saying its request never reached a worker" in str(raised), raised
        assert not raised.never_reached_worker
        assert not session.twins.has_releases(), "the call's releases were queued again"
        # The session goes on with a new worker.
        assert session.CDLL("libc.so.6").strlen(b"still served") == 12
        session.close()
        client.close()
    finally:
        server.stop()


def test_an_invocation_shipping_more_after_a_pointee_than_its_callback_asked_for_ends_its_worker(
        pb):
    """The Python client asks for 64 KiB from a pointer on (DefineCallback.buffer_bytes): a
    worker that ships more after an int than those 65 532 bytes is ended before the client
    sees the invocation."""
    server = Server()
    try:
        client = ffibox.connect(server.address)
        session = client.session(same_host=False)
        called = []
        callback = ct.CFUNCTYPE(None, ct.POINTER(ct.c_int))(lambda p: called.append(1))
        callback_id = session.callback_id(callback)
        forge = frame_forger(session)
        invoke = pb.CallbackInvoke(
            invocation=999, callback=callback_id,
            args=[pb.Value(pointer=pb.PointerValue(remote=pb.RemoteAddress(address=4096)))],
            pointees=[pb.PointeeData(arg=0, data=bytes(4), following=bytes(65533))])
        body = invoke.SerializeToString()
        frame = b"\x12" + varint(len(body)) + body
        try:
            raised = "returned %d" % forge(frame, len(frame), b"\0", 1, len(frame))
        except ffibox.Error as error:
            raised = error
        assert isinstance(raised, ffibox.Error) and raised.code == "WORKER_CRASHED", raised
        assert ("invocation ships 65533 bytes after argument 0's pointee of 4 bytes; the "
                "callback asked for 65536 from the pointer on") in str(raised), raised
        assert called == [], "the forged invocation reached the client"
        session.close()
        client.close()
    finally:
        server.stop()


def test_a_pointee_larger_than_any_worker_ships_gets_a_buffer_of_its_own():
    """A worker ships 5 MiB behind a callback's `POINTER(c_char * 5 MiB)` argument (an honest
    one ships at most 64 KiB; the broker's checks allow it): the client backs it with a
    buffer of that size, not with a 64 KiB scratch buffer and the 4 MiB reserved behind it,
    and neither crashes nor overruns its heap (in a child process: a crash is its status)."""
    server = Server()
    try:
        result = run_script("""
import ctypes, sys, time
import ffibox
from ffibox import _stream, ctypes as ct
from ffibox._stubs import pb
address, hostile = sys.argv[1:3]
session = ffibox.connect(address).session(same_host=False)
size = 5 << 20
seen = []
Big = ct.c_char * size
callback = ct.CFUNCTYPE(None, ct.POINTER(Big))(
    lambda p: seen.append(p.contents[0] + p.contents[size - 1]))
callback_id = session.callback_id(callback)
forge = session.CDLL(hostile).hostile_frame_then_sleep
forge.restype = ctypes.c_long
forge.argtypes = [ctypes.c_char_p, ctypes.c_long, ctypes.c_char_p, ctypes.c_long, ctypes.c_long,
                  ctypes.c_long]
def varint(value):
    out = b""
    while value >= 0x80:
        out += bytes([value & 0x7F | 0x80])
        value >>= 7
    return out + bytes([value])
invoke = pb.CallbackInvoke(
    invocation=999, callback=callback_id,
    args=[pb.Value(pointer=pb.PointerValue(remote=pb.RemoteAddress(address=4096)))],
    pointees=[pb.PointeeData(arg=0, data=b"y" * size)])
body = invoke.SerializeToString()
frame = b"\\x12" + varint(len(body)) + body
try:
    # The handler runs within the 3 s, before the worker's answer ends it (the queued
    # invocations of a lost worker are not run).
    forge(frame, len(frame), b"\\0", 1, len(frame), 3000)
except ffibox.Error as error:
    print("forge:", error.code)
deadline = time.monotonic() + 10
while not seen and time.monotonic() < deadline:
    time.sleep(0.01)
print("seen", seen)
""", server.address, HOSTILE_LIB)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "seen [b'yy']" in result.stdout, (result.stdout, result.stderr[-3000:])
    finally:
        server.stop()


def test_forged_invocations_cannot_fill_the_callers_memory():
    """A library forging invocations of the caller's logging callback, each with a 1 MiB
    string, while the handler is slow: the caller held every one (500 MiB a second until it
    was killed). Invocations outside any other are at most the worker's threads
    (--worker_pids_max), so the worker is ended past them; the caller holds at most those,
    and runs none of what came from the lost worker."""
    server = Server("--worker_pids_max=16")
    try:
        client = ffibox.connect(server.address)
        session = client.session(same_host=False)
        ran = []

        def log(text):
            ran.append(len(text))
            time.sleep(0.5)  # slow: the invocations queue in the caller

        callback = ct.CFUNCTYPE(None, ct.c_char_p)(log)
        callback_id = session.callback_id(callback)
        flood = session.CDLL(HOSTILE_LIB).hostile_invoke_flood
        flood.restype = ctypes.c_long
        flood.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_long]
        raised = None
        with PeakRss(os.getpid()) as rss:
            try:
                raised = "returned %d" % flood(callback_id, 300, 1 << 20)
            except ffibox.Error as error:
                raised = error
            time.sleep(1.5)
        assert isinstance(raised, ffibox.Error) and raised.code == "WORKER_CRASHED", raised
        assert "invocations open at once outside any other" in str(raised), str(raised)
        assert rss.peak - rss.before < 120, "the caller grew by %.0f MiB" % (
            rss.peak - rss.before)
        assert len(ran) <= 17, len(ran)
        lib = session.CDLL(TEST_LIB)
        assert lib.add_int(2, 3) == 5
        session.close()
        client.close()
    finally:
        server.stop()



def test_a_flood_of_callback_errors_reaches_the_client_within_the_sessions_budget(
        shared_server, monkeypatch):
    # A library calling a freed callback 30 000 times in a row (each call a CALLBACK_ERROR
    # event, native code getting zero): ffiboxd relays the events up to the session's budget
    # (1 MiB at once, 64 KiB a second), and the next one relayed after drops says how many
    # it dropped. Every one of them reached the client before.
    monkeypatch.setattr(_stream, "KEPT_EVENTS", 100000)  # every event relayed is kept
    client = ffibox.connect(shared_server.address)
    try:
        session = client.session(same_host=False)
        lib = session.CDLL(TEST_LIB)
        handler = ct.CFUNCTYPE(ct.c_int, ct.c_int)(lambda x: x + 1)
        lib.register_handler.argtypes = [ct.CFUNCTYPE(ct.c_int, ct.c_int)]
        lib.register_handler(handler)
        lib.fire_handler_n.restype = ct.c_long
        assert lib.fire_handler_n(1, 3) == 6
        del handler
        gc.collect()
        assert lib.add_int(2, 3) == 5  # (the freed callback's release goes first)
        started = time.monotonic()
        assert lib.fire_handler_n(1, 30000) == 0
        assert lib.add_int(2, 3) == 5  # (its answer comes after the events relayed)
        elapsed = time.monotonic() - started
        errors = [e for e in session.stream.events if e.kind == pb.SessionEvent.CALLBACK_ERROR]
        relayed = sum(e.ByteSize() for e in errors)
        assert len(errors) < 30000
        assert relayed <= (1 << 20) + elapsed * (64 << 10) + 1024, (len(errors), relayed, elapsed)
        time.sleep(1.0)  # the budget refills
        assert lib.fire_handler_n(1, 1) == 0
        assert lib.add_int(2, 3) == 5
        # Every event is relayed or counted by a note on a later one, the last one's included.
        errors = [e for e in session.stream.events if e.kind == pb.SessionEvent.CALLBACK_ERROR]
        notes = [re.match(r"\[ffibox: (\d+) callback errors dropped before this one",
                          e.error.message) for e in errors]
        assert any(notes), errors[-1].error.message[:200]
        assert len(errors) + sum(int(note.group(1)) for note in notes if note) == 30001
        session.close()
    finally:
        client.close()
