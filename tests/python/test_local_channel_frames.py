"""How the client's end of a same-host channel (client/python/ffibox/_local_channel.py) moves
frames through its rings: whole ones in one piece, and the ones that wrap the ring's end,
arrive in parts or carry impossible positions. The worker's end of the rings is played by a
thread of this test, on a real sealed memfd of the channel's layout, so that every position
and every byte the worker could write is chosen here (the real worker's end is tested with
ffiboxd in test_same_host.py).
"""
import ctypes
import fcntl
import mmap
import os
import socket
import struct
import threading
import time

import pytest

from conftest import ffibox_pb2 as pb
from ffibox import _local_channel as lc
from ffibox import _packers
from ffibox.errors import Error

RING = lc._MIN_RING  # 4 KiB: a few frames reach its end


class WorkerEnd:
    """The worker's end of a channel made here: reads ring 0, writes ring 1. Its positions
    are read and written whole (8-byte words of its own mapping), as the worker's are."""

    def __init__(self):
        fd = os.memfd_create("ffibox-test-channel", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, lc._CONTROL_BYTES + 2 * RING)
        os.pwrite(fd, struct.pack("<QIIQ", lc._MAGIC, lc._VERSION, RING, 0), 0)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        self.client = lc.LocalChannel(pb.LocalChannelOpened(generation=1), fd=os.dup(fd))
        self.memory = mmap.mmap(fd, lc._CONTROL_BYTES + 2 * RING)
        os.close(fd)

        def word(ring, offset, kind=ctypes.c_uint64):
            return kind.from_buffer(self.memory, lc._RING_LINES + ring * lc._RING_STRIDE + offset)

        self.request_head, self.request_tail = word(0, lc._HEAD), word(0, lc._TAIL)
        self.answer_head = word(1, lc._HEAD)
        self.answer_closed = word(1, lc._PRODUCER_CLOSED, ctypes.c_uint32)
        self.read = 0     # bytes taken from ring 0
        self.written = 0  # bytes put in ring 1
        self.requests = []  # the requests answered, as taken from ring 0

    def take_request(self, timeout=5.0, tell=True):
        """The next frame the client wrote in ring 0 (wrapped or not), its payload. Without
        `tell` the read position is not published once the frame is whole (the client
        then sees less room than there is); it always is while the frame is incomplete."""
        deadline = time.monotonic() + timeout
        data = b""
        while True:
            head = self.request_head.value
            while self.read < head:
                offset = self.read % RING
                take = min(head - self.read, RING - offset)
                at = lc._CONTROL_BYTES + offset
                data += self.memory[at:at + take]
                self.read += take
            if len(data) >= 4 and len(data) >= 4 + struct.unpack_from("<I", data)[0]:
                if tell:
                    self.request_tail.value = self.read
                return data[4:]
            self.request_tail.value = self.read
            assert time.monotonic() < deadline, "no request from the client"
            time.sleep(0.001)

    def put(self, data, publish=True):
        """Writes `data` into ring 1 after what was written (wrapping at its end) and, with
        `publish`, makes it visible (the head moves)."""
        while data:
            offset = self.written % RING
            piece = data[:RING - offset]
            at = lc._CONTROL_BYTES + RING + offset
            self.memory[at:at + len(piece)] = piece
            self.written += len(piece)
            data = data[len(piece):]
        if publish:
            self.publish()

    def publish(self, head=None):
        self.answer_head.value = self.written if head is None else head
        if self.client._in_waiting.value:
            lc.LocalChannel._wake(self.client._in_waiting)

    def answer(self, payload, pieces=1, pause=0.0, tell=True):
        """Answers the next request with `payload` as one frame, published in `pieces`
        (`tell`: take_request's)."""
        frame = struct.pack("<I", len(payload)) + payload
        cut = [len(frame) * i // pieces for i in range(pieces + 1)]
        self.requests.append(self.take_request(tell=tell))
        for start, end in zip(cut, cut[1:]):
            time.sleep(pause)
            self.put(frame[start:end])

    def close(self):
        self.client.close()
        del self.request_head, self.request_tail, self.answer_head, self.answer_closed
        self.memory.close()


@pytest.fixture
def worker():
    end = WorkerEnd()
    yield end
    end.close()


def exchange(worker, request, answer, **how):
    """The client's transfer of `request`, while the worker answers with `answer`."""
    thread = threading.Thread(target=worker.answer, args=(answer,), kwargs=how)
    thread.start()
    try:
        return worker.client.transfer(request, time.monotonic() + 5)
    finally:
        thread.join()


def test_only_the_broker_says_a_request_never_reached_a_worker():
    # A client sends the releases of such a call again: a worker that claimed it would have
    # them freed twice.
    request = pb.Request(id=7, call=pb.Call(function=1))
    answer = pb.Response(id=7, error=pb.Error(code=pb.MEMORY_FAULT, message="no"))
    assert lc.check_call_answer(request, answer) is None
    answer.error.never_reached_worker = True
    assert lc.check_call_answer(request, answer) == "says its request never reached a worker"
    read = pb.Request(id=7, read_memory=pb.ReadMemory(size=4))
    assert lc.check_nested_answer(read, answer) == "says its request never reached a worker"


@pytest.mark.parametrize("tell_every", [1, 3])
def test_frames_both_ways_whole_and_across_the_rings_end(worker, tell_every):
    # Sizes that are no divisor of the ring: frames start at many offsets, and some of them
    # (requests and answers alike) wrap its end, also while the client knows of less room
    # than there is (the worker publishes its read position late).
    for i in range(60):
        request = bytes([i]) * (97 + 13 * i % 1500)
        answer = bytes([255 - i]) * (61 + 29 * i % 1700)
        assert exchange(worker, request, answer, tell=i % tell_every == 0) == answer
        assert worker.requests[-1] == request
    assert worker.read > 3 * RING and worker.written > 3 * RING
    assert worker.client._tail == worker.written


def test_an_answer_that_arrives_in_parts_is_read_whole(worker):
    answer = bytes(range(256)) * 3
    for pieces in (2, 3, 7):
        assert exchange(worker, b"request", answer, pieces=pieces, pause=0.01) == answer


def test_a_length_split_by_the_rings_end_and_a_frame_that_ends_there(worker):
    # Both ways: the first frame ends 2 bytes before the ring's end, so the second one's
    # length is split by it; the third ends exactly at the end, the fourth starts at 0.
    for payload in (RING - 6, 100, RING - 106, 50):
        request, answer = b"q" * payload, bytes(range(256)) * (payload // 256) + b"a" * (
            payload % 256)
        assert exchange(worker, request, answer) == answer
        assert worker.requests[-1] == request
    assert worker.written == worker.read == 2 * RING + 54


def test_a_write_position_that_moves_back_ends_the_channel_at_once(worker):
    # An answer and three bytes more, which the client sees; then the position goes back.
    thread = threading.Thread(target=lambda: (worker.take_request(),
                                              worker.put(struct.pack("<I", 2) + b"ok" + b"xyz")))
    thread.start()
    assert worker.client.transfer(b"request", time.monotonic() + 5) == b"ok"
    thread.join()
    worker.publish(head=worker.written - 3)  # before the client's next look
    started = time.monotonic()
    error = failed_transfer(worker, lambda: None)
    assert error.code == "INTERNAL" and "impossible" in str(error), error
    assert time.monotonic() - started < 2


def test_an_empty_answer_and_the_smallest_request(worker):
    assert exchange(worker, b"", b"") == b""
    assert exchange(worker, b"x", b"y") == b"y"


def failed_transfer(worker, misbehave, send=None, taken=None):
    """The error of the client's `send()` (by default a transfer with a 5 s deadline) while
    the worker takes the request (appended to `taken`, when given), then does `misbehave()`
    instead of answering."""
    def worker_side():
        request = worker.take_request()
        if taken is not None:
            taken.append(request)
        misbehave()

    thread = threading.Thread(target=worker_side)
    thread.start()
    try:
        with pytest.raises(Error) as raised:
            if send is None:
                worker.client.transfer(b"request", time.monotonic() + 5)
            else:
                send()
    finally:
        thread.join()
    return raised.value


def test_a_write_position_past_the_ring_ends_the_channel(worker):
    # More than the ring holds unread.
    error = failed_transfer(worker, lambda: worker.publish(head=RING + 1))
    assert error.code == "INTERNAL" and "impossible" in str(error)
    with pytest.raises(Error) as again:
        worker.client.transfer(b"request", time.monotonic() + 5)
    assert again.value.code == "UNAVAILABLE", again.value


def test_an_announced_length_past_the_limit_ends_the_channel(worker):
    error = failed_transfer(
        worker, lambda: worker.put(struct.pack("<I", lc.MAX_ANSWER_BYTES + 1) + b"tail"))
    assert error.code == "INTERNAL" and "more than the request can be answered with" in str(error)


def test_a_packed_calls_answer_is_capped_far_lower(worker):
    # A scalar function's answer is a few bytes: a worker announcing more than
    # PACKED_ANSWER_BYTES ends the channel before the caller holds any of it.
    packed = _packers.Packer(7, [ctypes.c_int], ctypes.c_int).pack((41,), ())
    assert packed is not None
    taken = []
    error = failed_transfer(
        worker, lambda: worker.put(struct.pack("<I", _packers.PACKED_ANSWER_BYTES + 1) + b"tail"),
        send=lambda: packed.exchange(worker.client, 5, time.monotonic() + 5), taken=taken)
    assert error.code == "INTERNAL" and "more than the request can be answered with" in str(error), error
    assert taken == [packed.payload(5)]


def test_an_answer_past_the_calls_limit_ends_the_channel_before_it_is_taken():
    # With callbacks on the channel a frame may be an invocation, whose limit is far higher
    # than a call's answer: the frame's first byte (an answer's id tag) tells them apart, so
    # an answer announcing more than the call can be answered with is refused there, not
    # after the client took all of it (a library forged 1 GiB: 2 GiB in the caller).
    for first, length in ((lc._ID_TAG, 101), (b"\x12", lc.MAX_INVOCATION_BYTES + 1)):
        # An answer past its call's limit, anything else past an invocation's.
        end = WorkerEnd()
        try:
            end.client._serve = lambda *args: None
            error = failed_transfer(
                end, lambda: end.put(struct.pack("<I", length) + first),
                send=lambda: end.client.transfer(b"request", time.monotonic() + 5,
                                                 max_answer=100))
        finally:
            end.close()
        assert error.code == "INTERNAL", error
        assert "an answer of %d bytes, more than the request can be answered with" % length \
            in str(error), error


@pytest.mark.parametrize("request_, most", [
    (pb.Request(id=5, read_memory=pb.ReadMemory(size=8)), 8 + 4096),
    (pb.Request(id=5, read_memory_list=pb.ReadMemoryList(reads=[
        pb.ReadMemory(size=100), pb.ReadMemory(size=28)])), 128 + 2 * 16 + 4096),
    (pb.Request(id=5, read_string=pb.ReadString(max_length=10, wide=True)), 40 + 4096),
    (pb.Request(id=5, write_memory=pb.WriteMemory(data=b"x" * 100000)), 4096),
])
def test_a_memory_requests_answer_is_capped_by_what_it_asks_for(worker, request_, most):
    # An 8-byte read answered with a frame of 1 GiB would have the client hold it: a frame
    # longer than the request can be answered with ends the channel before it is read.
    assert lc.answer_bound(request_) == most
    taken = []
    error = failed_transfer(
        worker, lambda: worker.put(struct.pack("<I", most + 1) + b"tail"),
        send=lambda: worker.client.exchange_nested(request_, time.monotonic() + 5),
        taken=taken)
    assert error.code == "INTERNAL", error
    assert "an answer of %d bytes, more than the request can be answered with" % (
        most + 1) in str(error)
    assert taken == [request_.SerializeToString()]


def test_no_answer_is_a_deadline_and_so_is_a_stalled_one(worker):
    started = time.monotonic()
    with pytest.raises(Error) as raised:
        worker.client.transfer(b"request", time.monotonic() + 0.2)
    assert raised.value.code == "DEADLINE_EXCEEDED"
    assert 0.2 <= time.monotonic() - started < 2
    # Part of an answer, then nothing: the deadline too.
    worker.take_request()
    worker.put(struct.pack("<I", 100) + b"part")
    with pytest.raises(Error) as stalled:
        worker.client.transfer(b"request", time.monotonic() + 0.2)
    assert stalled.value.code == "DEADLINE_EXCEEDED"


def test_closing_the_channel_ends_a_call_waiting_on_another_thread_at_once(worker):
    # The session closes (another thread) while a call waits for its answer: the call ends
    # with UNAVAILABLE then, not at its deadline 10 s later.
    def close_while_waiting():
        time.sleep(0.3)  # the call is asleep on its waiting word by then
        worker.client.close()

    started = time.monotonic()
    error = failed_transfer(
        worker, close_while_waiting,
        send=lambda: worker.client.transfer(b"request", time.monotonic() + 10))
    assert error.code == "UNAVAILABLE", error
    assert time.monotonic() - started < 5


def test_a_worker_that_closes_its_end_before_answering(worker):
    def close_without_answer():
        worker.answer_closed.value = 1
        worker.publish()

    error = failed_transfer(worker, close_without_answer)
    assert error.code == "UNAVAILABLE", error


def test_fetching_a_channel_from_a_door_whose_backlog_is_full_waits_for_room(tmp_path,
                                                                           monkeypatch):
    # Other processes of the user flooding the door with connections that send nothing: the
    # fetch failed at once with EAGAIN (a non-blocking connect), and the session's channel
    # was lost. It waits for room, up to its timeout. (The check of the door's owner, which
    # connects too, is left out: room may come between the two connects.)
    monkeypatch.setattr(lc, "check_unix_server", lambda address, timeout: None)
    os.chmod(tmp_path, 0o700)
    path = str(tmp_path / "door")
    door = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    door.bind(path)
    door.listen(0)
    queued = []
    try:
        while True:  # fill the backlog: the next connect has no room
            peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            peer.setblocking(False)
            try:
                peer.connect(path)
            except BlockingIOError:
                peer.close()
                break
            queued.append(peer)
        started = time.monotonic()
        with pytest.raises(Error) as failed:
            lc._fetch_memfd(path, b"t" * 32, 1.0)
        assert time.monotonic() - started > 0.9, failed.value
        assert failed.value.code == "UNAVAILABLE"
    finally:
        for peer in queued:
            peer.close()
        door.close()
