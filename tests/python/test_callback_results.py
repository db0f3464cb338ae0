"""What a Python callback returns reaches native code as ctypes would hand it over, on the
session stream and on the same-host channel: a `bytes` for `c_char_p` (kept for good, with
ctypes' "memory leak" warning), a pointer into a caller object (the object's worker twin);
and an answer the broker refuses gives native code zero at once, never a wait for the
call's deadline."""
import time

import pytest

import ffibox
from conftest import TEST_LIB
from ffibox import ctypes as ct
from ffibox._stubs import pb


@pytest.fixture(params=[False, True], ids=["stream", "channel"])
def session(request, server):
    client = ffibox.connect(server.address)
    with client.session(timeout=20, same_host=request.param) as s:
        assert s.stream.local_enabled == request.param
        yield s
    client.close()


def test_bytes_for_a_c_char_p_result_is_kept_as_ctypes_keeps_it(session):
    lib = session.CDLL(TEST_LIB)
    MAKE = ct.CFUNCTYPE(ct.c_char_p)
    lib.length_of_made.argtypes = [MAKE]
    lib.length_of_made.restype = ct.c_size_t
    made = MAKE(lambda: b"twelve chars")
    with pytest.warns(RuntimeWarning, match="memory leak in callback function"):
        assert lib.length_of_made(made) == 12
    assert lib.length_of_made(MAKE(lambda: None)) == 0
    assert not [e for e in session.stream.events if e.kind == pb.SessionEvent.CALLBACK_ERROR]


def test_a_pointer_into_a_caller_object_is_its_twin(session):
    lib = session.CDLL(TEST_LIB)
    MAKE = ct.CFUNCTYPE(ct.c_void_p)
    lib.length_of_made.argtypes = [MAKE]
    lib.length_of_made.restype = ct.c_size_t
    # A cast keeps its source: the buffer gets a twin holding its bytes.
    fresh = ct.create_string_buffer(b"hello")
    assert lib.length_of_made(MAKE(lambda: ct.cast(fresh, ct.c_void_p))) == 5
    # A bare address of an object a call placed in worker memory: that twin, as it is now.
    used = ct.create_string_buffer(b"seven!!", 16)
    lib.str_len.argtypes = [ct.c_char_p]
    assert lib.str_len(used) == 7
    used.value = b"four"
    assert lib.length_of_made(MAKE(lambda: ct.addressof(used))) == 4
    assert lib.length_of_made(MAKE(lambda: ct.addressof(used) + 2)) == 2


def test_a_bare_address_of_a_caller_object_no_call_passed_is_its_twin(session):
    # python3-graphite2's table callback returns addressof(buffer) of buffers the binding
    # keeps: the worker crashed on this process's address.
    lib = session.CDLL(TEST_LIB)
    MAKE = ct.CFUNCTYPE(ct.c_void_p)
    lib.length_of_made.argtypes = [MAKE]
    lib.length_of_made.restype = ct.c_size_t
    tables = {"name": ct.create_string_buffer(b"a table of 22 bytes...")}
    assert lib.length_of_made(MAKE(lambda: ct.addressof(tables["name"]))) == 22
    assert lib.length_of_made(MAKE(lambda: ct.addressof(tables["name"]) + 8)) == 14
    # An address of this process that is no ctypes object's: the callback fails (native
    # code gets NULL), the worker lives.
    generation = session.generation
    text = b"not a ctypes object"
    assert lib.length_of_made(MAKE(lambda: id(text))) == 0
    assert session.generation == generation


def test_a_caller_buffer_a_callback_stores_for_the_library_gets_what_it_writes(session):
    # python3-vlc's video callbacks: the lock callback stores the caller's frame buffer in
    # the library's plane pointers and the library renders into it; the buffer stayed zero.
    lib = session.CDLL(TEST_LIB)
    LOCK = ct.CFUNCTYPE(ct.c_void_p, ct.POINTER(ct.c_void_p))
    lib.fill_locked_plane.argtypes = [LOCK, ct.c_int, ct.c_size_t]
    lib.fill_locked_plane.restype = ct.c_size_t
    frame = ct.create_string_buffer(64)

    def lock(planes):
        planes[0] = ct.cast(frame, ct.c_void_p)

    locking = LOCK(lock)
    for value in (0x41, 0x42):
        assert lib.fill_locked_plane(locking, value, 48) == 48
        assert frame.raw == bytes([value]) * 48 + bytes(16)
    # Past the 4 MiB a worker watches (a 1080p RGBA frame), it says so rather than leave
    # the buffer as it was without a word; a call that passes the buffer brings it.
    frame = ct.create_string_buffer(1920 * 1080 * 4)
    with pytest.warns(RuntimeWarning, match="past the 4 MiB of memory its worker watches"):
        assert lib.fill_locked_plane(locking, 0x43, 64) == 64
    lib.ptr_offset.argtypes = [ct.c_void_p, ct.c_long]
    lib.ptr_offset(frame, 0)
    assert frame.raw[:64] == b"C" * 64


def test_a_callback_handed_over_as_a_plain_pointer_comes_back_as_itself(session):
    # python3-llvmlite's add_symbol then address_of_symbol: the number came back as the
    # worker's closure, neither the callback's address nor callable here.
    lib = session.CDLL(TEST_LIB)
    lib.ptr_offset.argtypes = [ct.c_void_p, ct.c_long]
    lib.ptr_offset.restype = ct.c_void_p
    CB = ct.CFUNCTYPE(ct.c_int, ct.c_int)
    tripled = CB(lambda value: value * 3)
    address = ct.cast(tripled, ct.c_void_p).value
    back = lib.ptr_offset(address, 0)
    assert back == address
    assert CB(back)(7) == 21  # called here, as ctypes calls it
    lib.call_from_thread.argtypes = [CB, ct.c_int]
    lib.call_from_thread.restype = ct.c_int
    assert lib.call_from_thread(CB(back), 9) == 27  # and by the library, as that callback
    lib.call_from_thread.argtypes = [ct.c_size_t, ct.c_int]  # a function pointer as uintptr_t
    assert lib.call_from_thread(back, 4) == 12


def test_an_answer_the_broker_refuses_gives_native_code_zero_at_once(server, capfd):
    client = ffibox.connect(server.address)
    with client.session(timeout=20, same_host=False) as session:
        lib = session.CDLL(TEST_LIB)
        CB = ct.CFUNCTYPE(ct.c_int, ct.c_int)
        lib.call_twice_nested.argtypes = [CB, ct.c_int]
        callback = CB(lambda x: x + 1)
        assert lib.call_twice_nested(callback, 1) == 3
        # A client that answers with a value of the wrong kind (text for an int): the
        # broker refuses it and leaves the invocation open; the client answers again.
        (_, callback_id), = session._callbacks.values()
        session.stream._handlers[callback_id] = lambda stream, invoke: pb.CallbackReturn(
            result=pb.Value(text_value="three"))
        started = time.monotonic()
        assert lib.call_twice_nested(callback, 1) == 0
        assert time.monotonic() - started < 10
        assert "the server refused the callback's answer" in capfd.readouterr().err
        errors = [e for e in session.stream.events if e.kind == pb.SessionEvent.CALLBACK_ERROR]
        assert errors and "refused the callback's answer" in errors[-1].error.message
        assert session.generation == 1
    client.close()


def test_only_the_last_thousand_events_are_kept(session):
    # Each call of a freed callback is an event (a library's thread may call one without
    # end): a caller that never takes them keeps the last 1000, not all.
    import gc
    from ffibox._stream import KEPT_EVENTS
    lib = session.CDLL(TEST_LIB)
    lib.register_handler.argtypes = [ct.CFUNCTYPE(ct.c_int, ct.c_int)]
    lib.register_handler.restype = None
    lib.register_handler(ct.CFUNCTYPE(ct.c_int, ct.c_int)(lambda x: x + 1))
    gc.collect()
    assert not session._callbacks  # freed in its worker
    lib.fire_handler.argtypes = [ct.c_int]
    for i in range(1500):
        assert lib.fire_handler(i) == 0
    # Its look-up goes through ffiboxd, answered after the events the worker sent before it.
    assert lib.add_int(2, 3) == 5
    errors = [e for e in session.stream.events if e.kind == pb.SessionEvent.CALLBACK_ERROR]
    assert KEPT_EVENTS == 1000
    assert len(session.stream.events) == len(errors) == 1000
