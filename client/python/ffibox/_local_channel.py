"""The client's end of a same-host channel (docs/protocol.md, "The same-host channel").

Calls go to the session's worker through shared memory instead of gRPC: a memfd holding two
single-producer single-consumer byte rings (core/shm_channel.h, whose layout this module
reads: a header page, then the rings' data), fetched from ffiboxd's door with the token the
session's `open_local_channel` answer carries. The client is the channel's creator end: it
writes the first ring and reads the second. After the rings, the memfd holds a shared area:
blocks of 64 KiB or more have their bytes there instead of in the frames (both ways), and
only a block's bytes are ever read from it.

Everything in the shared memory may be written by the worker at any time, so, as the C++
end does: positions read from it are checked before use (an impossible one ends the channel),
bytes are copied out before they are parsed, a frame's announced length is capped, an
answer's encoding holds no more than the request allows before it is parsed
(ffibox/_answer_shape.py), and an answer is used only if it passes the broker's own check
of a call's answer (`check_call_answer`, core/call_answer.h). Anything else raises `Error` (INTERNAL), and the
caller stops using the channel.

Waiting: a short spin, then a futex sleep on the ring's `waiting` word (announced as 1, then
the position looked at again), as the worker's end expects; each sleep is bounded
(`_LONGEST_SLEEP`). Publishing a position is followed by a full fence and a look at the
worker's `waiting` word, and a FUTEX_WAKE only when it announced a sleep.
"""
import array
import errno
import ctypes
import fcntl
import mmap
import os
import platform
import socket
import struct
import sys
import threading
import time
from typing import Optional

from ffibox._answer_shape import (MAX_ANSWER_BYTES, MAX_CHANGED_BYTES, MAX_WATCHED_BYTES,
                                  call_answer_bound, call_answer_limits, check_answer_shape,
                                  invoke_limits, layout_answer_limits, read_list_limits)
from ffibox._memory import MAX_STRING_UNITS
from ffibox._stubs import pb
from ffibox._unix_server_check import check_unix_server
from ffibox.errors import Error

_MAGIC = 0x632d786f62666666  # "ffibox-c"
_VERSION = 2
_CONTROL_BYTES = 4096
_MIN_RING, _MAX_RING = 4 << 10, 256 << 20
_SHARED_ALIGNMENT, _MAX_SHARED = 64 << 10, 1 << 30
_REQUIRED_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
_REFUSED_SEALS = fcntl.F_SEAL_WRITE | getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x10)
# The two rings' lines (each 64 bytes) start at 64: ring 0 (the creator writes it), ring 1.
_RING_LINES = 64
_RING_STRIDE = 128
_HEAD, _PRODUCER_CLOSED, _PRODUCER_WAITING = 0, 8, 12
_TAIL, _CONSUMER_CLOSED, _CONSUMER_WAITING = 64, 72, 76

_SPIN_SECONDS = 50e-6
# How many looks at the worker's write position an answer's read starts with, before the
# timed spin (_SPIN_SECONDS): a look is a few tens of nanoseconds.
_QUICK_SPINS = 200
_LONGEST_SLEEP = 0.05
# An answer is read as it arrives, so the client holds only what the worker did send, and
# once started it must keep coming; at most what its request allows (answer_bound), and
# MAX_ANSWER_BYTES in all.
# The most a callback invocation on the channel may take: a pointee of at most 64 KiB, what
# follows it included (kMaxCallbackBufferBytes), for each of at most 256 parameters, and the
# blocks its call keeps, with room to spare.
MAX_INVOCATION_BYTES = 64 << 20
_ANSWER_PROGRESS = 10.0
_LENGTH = struct.Struct("<I")  # a frame's length, before its payload
# After this many wakes in a row that found nothing (a worker rewriting the word this end
# sleeps on), a wait pauses before it sleeps again: from _FIRST_PAUSE, doubling, to
# _LONGEST_PAUSE.
_STALE_WAKES = 3
_FIRST_PAUSE, _LONGEST_PAUSE = 50e-6, 0.02
# The status word the worker sets when it closes the channel itself (core/local_channel.h).
_STATUS_WORDS = _CONTROL_BYTES // 2
_CLOSED_WORD = 3
# How many calls the worker ran from their arguments' bits, without the request's parse
# (kLocalScalarCallsWord): the worker's count, a statistic never acted on.
_SCALAR_CALLS_WORD = 4
_CLOSED_BY_WORKER = 1

# The futex system call's number is the architecture's: this end is x86-64 only
# (`available()`); elsewhere sessions keep their calls on the stream.
_SYS_FUTEX = 202
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


# Acquiring a lock is an atomic read-modify-write, a full memory barrier: between announcing
# a sleep and looking at the position again, the announcement must be visible first.
_fence_lock = threading.Lock()


def _fence() -> None:
    # Never waits: the lock is held by another thread, or by this one when a signal handler
    # runs between its acquire and release (a handler's own request would wait for itself).
    # A fresh lock's acquire is the barrier then.
    if _fence_lock.acquire(False):
        _fence_lock.release()
    else:
        threading.Lock().acquire()


class ChannelError(Error):
    """A failure of the same-host channel itself: it is gone, or out of step with the worker.
    Any other exception that leaves an exchange (one a signal handler raised into it, a
    KeyboardInterrupt) reaches the caller as it was raised, and the channel is closed."""

    @property
    def reason(self) -> str:
        """The message without the code it starts with (for a protocol Error, whose code
        travels apart)."""
        text, code = str(self), self.code + ": "
        return text[len(code):] if text.startswith(code) else text


class NotSent(ChannelError):
    """The request did not reach the worker whole: the call did not run."""


def _internal(why: str) -> ChannelError:
    return ChannelError("INTERNAL: the same-host channel: %s" % why, "INTERNAL")


def _unavailable(why: str) -> ChannelError:
    return ChannelError("UNAVAILABLE: the same-host channel: %s" % why, "UNAVAILABLE")


def available() -> bool:
    """Whether this process can use a same-host channel (x86-64 Linux)."""
    return platform.machine() == "x86_64" and sys.platform.startswith("linux")


def _receive_descriptors(sock, size: int, most: int):
    """Up to `size` bytes and up to `most` descriptors (SCM_RIGHTS) from `sock`, the
    descriptors close-on-exec from the start (MSG_CMSG_CLOEXEC, which socket.recv_fds does
    not pass on): a child another thread starts meanwhile must not inherit them."""
    fds = array.array("i")
    data, ancillary, flags, _ = sock.recvmsg(size, socket.CMSG_LEN(most * fds.itemsize),
                                             socket.MSG_CMSG_CLOEXEC)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    if flags & socket.MSG_CTRUNC and not fds:
        # The kernel drops descriptors this process has no room for (RLIMIT_NOFILE).
        raise OSError(errno.EMFILE, "the descriptors sent were dropped: this process has no "
                                    "room for more open files (its RLIMIT_NOFILE)")
    return data, list(fds)


def _fetch_memfd(door_path: str, token: bytes, timeout: float) -> int:
    """The memfd the door at `door_path` hands over for `token` (after checking the door
    belongs to this user or root, as ffiboxd's own socket is checked)."""
    check_unix_server("unix:" + door_path, timeout)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as door:
        # Blocking, with the kernel's timeouts: a connect to a door whose backlog is full
        # waits for room (non-blocking, settimeout's, fails at once with EAGAIN).
        wait = struct.pack("ll", int(max(timeout, 0.001)), int((max(timeout, 0.001) % 1) * 1e6))
        door.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, wait)
        door.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, wait)
        try:
            door.connect(door_path)
            door.sendall(token)
            tag, fds = _receive_descriptors(door, 8, 4)
        except OSError as error:
            raise _unavailable("the door %s: %s" % (door_path, error)) from None
    if len(fds) != 1 or len(tag) != 8:
        for fd in fds:
            os.close(fd)
        raise _unavailable("the door %s handed over no channel" % door_path)
    return fds[0]


def _file_bytes(ring: int, shared: int) -> int:
    """The size of a channel's memfd: the control page, two rings of `ring` bytes, then, at
    the next multiple of 64 KiB, a shared area of `shared` bytes (none when 0)."""
    rings = _CONTROL_BYTES + 2 * ring
    if not shared:
        return rings
    return -(-rings // _SHARED_ALIGNMENT) * _SHARED_ALIGNMENT + shared


class LocalChannel:
    """The client's end of one same-host channel. One call at a time (`exchange` holds the
    channel's lock; the thread of that call, serving a callback invocation, may send the
    requests of the invocation meanwhile); `close` from any thread."""

    def __init__(self, opened, timeout: float = 5.0, fd: Optional[int] = None,
                 serve=None) -> None:
        """The channel `opened` (a LocalChannelOpened) announces, its memfd fetched from
        the door it names; or `fd`, a memfd the caller already holds (taken over).

        `serve`, when the channel was opened with callbacks (OpenLocalChannel.callbacks):
        serve(response, channel, deadline) runs the callback invocation a call's native code
        made (`response.callback_invoke`, its form and nesting already checked here) on the
        calling thread, its requests sent with `exchange_nested` until `deadline`, and
        returns its pb.CallbackReturn, or raises Error when the invocation is not one this
        client can take (the channel then ends)."""
        self.generation = opened.generation
        self._serve = serve
        # The server takes requests naming an invocation on this channel through the stream
        # (loads, look-ups, definitions, allocations from inside a callback).
        self.channel_invocations = opened.channel_invocations
        # The worker takes memory and layout requests at the top level too (TOP_LEVEL_OPS).
        self.memory_requests = opened.memory_requests
        # Why a request made inside an invocation ended the channel (None: none did).
        self.broken: Optional[Error] = None
        self._invocations = []  # the invocations being served, innermost last
        self._max_request = opened.max_request_bytes
        if fd is None:
            fd = _fetch_memfd(opened.door_path, opened.token, timeout)
        # The shared area (large blocks' bytes, docs/protocol.md) is mapped at its first use,
        # from a copy of the descriptor kept until then.
        self._area = None
        self._area_fd = -1
        # Taken (and set to -1) under it by whoever closes the descriptor: the caller mapping
        # the area, or close() from another thread.
        self._area_fd_lock = threading.RLock()  # a signal handler may close the channel
        self._area_usable = False
        try:
            self._map(fd)
            if self._shared_bytes:
                self._area_fd = os.dup(fd)
                self._area_usable = True
        except OSError as error:  # mmap or fcntl refused
            raise _unavailable("mapping the channel: %s" % error) from None
        finally:
            os.close(fd)
        # Reentrant: requests made inside an invocation go while the call's exchange waits.
        self._lock = threading.RLock()
        # The thread whose request is on the channel now, from its first byte written to its
        # answer read (None: none is): the broker's requests wait behind it in the worker.
        self.in_flight: Optional[int] = None
        # The request in flight's answer is small (transfer's `small`).
        self.in_flight_small = False
        self._head = 0       # bytes this end wrote into ring 0
        self._seen_tail = 0  # the worker's last checked read position in it
        self._tail = 0       # bytes this end read from ring 1
        self._seen_head = 0  # the worker's last checked write position in it
        self._closed = False

    def _map(self, fd: int) -> None:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        if seals & _REQUIRED_SEALS != _REQUIRED_SEALS or seals & _REFUSED_SEALS:
            raise _internal("the memfd is not sealed as a channel must be")
        size = os.fstat(fd).st_size
        if size < _CONTROL_BYTES or size > _file_bytes(_MAX_RING, _MAX_SHARED):
            raise _internal("a memfd of %d bytes" % size)
        # The header says how much of the file the rings take; the shared area after them
        # is mapped at the first call that needs it (_area_view).
        magic, version, ring, shared = struct.unpack("<QIIQ", os.pread(fd, 24, 0))
        if (magic != _MAGIC or version != _VERSION or not _MIN_RING <= ring <= _MAX_RING or
                ring & (ring - 1) or shared > _MAX_SHARED or shared % _SHARED_ALIGNMENT or
                _file_bytes(ring, shared) != size):
            raise _internal("no channel header of this version")
        self._map_bytes = mmap.mmap(fd, _CONTROL_BYTES + 2 * ring)
        self._shared_bytes = shared
        self._area_offset = _file_bytes(ring, shared) - shared
        self._ring = ring
        m = self._map_bytes

        def word(ring_index, offset, kind):
            return kind.from_buffer(m, _RING_LINES + ring_index * _RING_STRIDE + offset)

        # Ring 0: this end produces; ring 1: this end consumes.
        self._out_head = word(0, _HEAD, ctypes.c_uint64)
        self._out_closed = word(0, _PRODUCER_CLOSED, ctypes.c_uint32)
        self._out_waiting = word(0, _PRODUCER_WAITING, ctypes.c_uint32)
        self._peer_tail = word(0, _TAIL, ctypes.c_uint64)
        self._peer_reader_closed = word(0, _CONSUMER_CLOSED, ctypes.c_uint32)
        self._peer_reader_waiting = word(0, _CONSUMER_WAITING, ctypes.c_uint32)
        self._peer_head = word(1, _HEAD, ctypes.c_uint64)
        self._peer_writer_closed = word(1, _PRODUCER_CLOSED, ctypes.c_uint32)
        self._peer_writer_waiting = word(1, _PRODUCER_WAITING, ctypes.c_uint32)
        self._in_tail = word(1, _TAIL, ctypes.c_uint64)
        self._in_closed = word(1, _CONSUMER_CLOSED, ctypes.c_uint32)
        self._in_waiting = word(1, _CONSUMER_WAITING, ctypes.c_uint32)
        self._closed_word = ctypes.c_uint64.from_buffer(m, _STATUS_WORDS + 8 * _CLOSED_WORD)
        self._scalar_calls_word = ctypes.c_uint64.from_buffer(
            m, _STATUS_WORDS + 8 * _SCALAR_CALLS_WORD)
        self._out_data = _CONTROL_BYTES
        self._in_data = _CONTROL_BYTES + ring

    # -- waiting ---------------------------------------------------------------------------

    @staticmethod
    def _wake(word) -> None:
        word.value = 0
        _syscall(_SYS_FUTEX, ctypes.byref(word), _FUTEX_WAKE, 0x7fffffff, None, None, 0)

    @classmethod
    def _wake_if_asleep(cls, word) -> None:
        """After publishing a position: wakes the worker if it announced a sleep on `word`.
        The fence orders the publication before the look, as the worker orders its
        announcement before its look at the position, so one of the two sees the other's."""
        _fence()
        if word.value:
            cls._wake(word)

    def _wait(self, word, ready, deadline: float) -> None:
        """Until `ready()`, spinning, then sleeping on `word` (this end's waiting word)."""
        spin_until = time.monotonic() + _SPIN_SECONDS
        stale, pause = 0, _FIRST_PAUSE
        while not ready():
            now = time.monotonic()
            if now >= deadline:
                raise ChannelError("DEADLINE_EXCEEDED: the same-host channel's deadline passed",
                                   "DEADLINE_EXCEEDED")
            if now < spin_until:
                continue
            if stale >= _STALE_WAKES:  # woken for nothing, again and again
                time.sleep(min(pause, max(deadline - now, 0)))
                stale, pause = 0, min(2 * pause, _LONGEST_PAUSE)
                continue
            word.value = 1
            _fence()
            if ready():
                break
            left = min(deadline - now, _LONGEST_SLEEP)
            sleep = _Timespec(int(left), int((left - int(left)) * 1e9))
            _syscall(_SYS_FUTEX, ctypes.byref(word), _FUTEX_WAIT, 1, ctypes.byref(sleep), None,
                     0)
            if not ready() and time.monotonic() < now + left:
                stale += 1  # woken before the sleep's end, and nothing came
        word.value = 0

    # -- the worker's positions, checked ---------------------------------------------------

    def _checked_peer_tail(self) -> int:
        tail = self._peer_tail.value
        if tail < self._seen_tail or tail > self._head:
            self._break("the worker's read position %d is impossible" % tail)
        self._seen_tail = tail
        return tail

    def _checked_peer_head(self) -> int:
        head = self._peer_head.value
        if head < self._seen_head or head > self._tail + self._ring:
            self._break("the worker's write position %d is impossible" % head)
        self._seen_head = head
        return head

    def _break(self, why: str) -> None:
        self.close()
        raise _internal(why)

    # -- bytes -----------------------------------------------------------------------------

    def _write(self, data: bytes, deadline: float) -> None:
        ring, m, at = self._ring, self._map_bytes, self._out_data
        done, total = 0, len(data)
        head = self._head
        offset = head & (ring - 1)
        if offset + total <= ring and ring - (head - self._seen_tail) >= total and \
                not self._closed and not self._peer_reader_closed.value:
            # Room as last seen, and no wrap (most frames): one copy, published once.
            m[at + offset:at + offset + total] = data
            self._head = head + total
            self._out_head.value = head + total
            self._wake_if_asleep(self._peer_reader_waiting)
            return
        while done < total:
            if self._closed:
                raise _unavailable("closed")
            if self._peer_reader_closed.value:
                raise _unavailable("the worker's end is closed")
            # The worker's last checked read position mostly leaves room enough (a frame then
            # goes in one piece); its position is read and checked again when it does not.
            room = ring - (self._head - self._seen_tail)
            if room < total - done:
                room = ring - (self._head - self._checked_peer_tail())
            if room == 0:
                self._wait(self._out_waiting,
                           lambda: (self._peer_tail.value != self._seen_tail or
                                    self._peer_reader_closed.value != 0 or self._closed),
                           deadline)
                continue
            size = min(room, total - done)
            offset = self._head & (ring - 1)
            first = min(size, ring - offset)
            m[at + offset:at + offset + first] = data[done:done + first]
            if size > first:
                m[at:at + size - first] = data[done + first:done + size]
            self._head += size
            done += size
            self._out_head.value = self._head
            self._wake_if_asleep(self._peer_reader_waiting)

    def _read_frame(self, deadline: float, max_bytes: int,
                    max_answer: Optional[int] = None) -> bytes:
        """One frame's payload: a 4-byte little-endian length (at most `max_bytes`, and at
        most `max_answer` for an answer, whose first byte is its id's tag: checked before
        the rest of it is taken), then that many bytes, taken as they become available."""
        ring, m, at = self._ring, self._map_bytes, self._in_data
        # A short spin on the worker's position alone first: a call's answer mostly comes
        # within it.
        head, tail = self._peer_head, self._tail
        for _ in range(_QUICK_SPINS):
            if head.value != tail:
                break
        received = bytearray()
        wanted = _HEADER  # the length and the payload's first byte, which says what it is
        while len(received) < wanted:
            writer_closed = self._peer_writer_closed.value != 0
            available = self._checked_peer_head() - self._tail
            if available == 0:
                if writer_closed or self._closed:
                    raise _unavailable("the worker's end is closed")
                stall = deadline if not received else min(
                    deadline, time.monotonic() + _ANSWER_PROGRESS)
                try:
                    self._wait(self._in_waiting,
                               lambda: (self._peer_head.value != self._tail or
                                        self._peer_writer_closed.value != 0 or self._closed),
                               stall)
                except Error:
                    if received and time.monotonic() < deadline:
                        self._break("the worker's answer stalled")
                    raise
                continue
            offset = self._tail & (ring - 1)
            if not received and available >= _HEADER:
                # The length first, so that a frame already whole is taken in one piece.
                if offset + _HEADER <= ring:
                    wanted = 4 + self._frame_length(m, max_bytes, max_answer, at + offset)
                else:
                    first = ring - offset
                    header = m[at + offset:at + ring] + m[at:at + _HEADER - first]
                    wanted = 4 + self._frame_length(header, max_bytes, max_answer)
                if available >= wanted and offset + wanted <= ring:
                    # Whole and not wrapped (most answers): one copy, straight from the ring.
                    payload = m[at + offset + 4:at + offset + wanted]
                    self._tail += wanted
                    self._in_tail.value = self._tail
                    self._wake_if_asleep(self._peer_writer_waiting)
                    return payload
                if available < wanted <= ring and offset + wanted <= ring:
                    # The worker writes a large frame in pieces, and the ring has room for
                    # all of it: waited for whole, it is taken in one copy, not piece by piece.
                    try:
                        self._wait(self._in_waiting,
                                   lambda: (self._peer_head.value - self._tail >= wanted or
                                            self._peer_writer_closed.value != 0 or
                                            self._closed),
                                   min(deadline, time.monotonic() + _ANSWER_PROGRESS))
                    except Error:
                        if time.monotonic() < deadline:
                            self._break("the worker's answer stalled")
                        raise
                    if self._peer_head.value - self._tail < wanted and (
                            self._peer_writer_closed.value != 0 or self._closed):
                        raise _unavailable("the worker's end is closed")
                    wanted = _HEADER
                    continue
            # Not past the length before it is known: an empty frame's is all of it.
            take = min(available, (4 if len(received) < 4 else wanted) - len(received))
            first = min(take, ring - offset)
            received += m[at + offset:at + offset + first]
            if take > first:
                received += m[at:at + take - first]
            self._tail += take
            self._in_tail.value = self._tail
            self._wake_if_asleep(self._peer_writer_waiting)
            if wanted == _HEADER and len(received) >= 4 and (
                    len(received) == _HEADER or not _LENGTH.unpack_from(received)[0]):
                wanted = 4 + self._frame_length(received, max_bytes, max_answer)
        del received[:4]  # in place: the answer is copied once, below
        return bytes(received)

    def _frame_length(self, header, max_bytes: int, max_answer: Optional[int],
                      at: int = 0) -> int:
        """The length at `at` of `header` (bytes, or the mapping itself; the payload's first
        byte follows it unless the length is 0), checked: at most `max_bytes`, and with
        `max_answer` given (a frame that may be an invocation), at most that for an answer
        and MAX_INVOCATION_BYTES for anything else."""
        length, = _LENGTH.unpack_from(header, at)
        if max_answer is not None and length > 0:
            max_bytes = min(max_bytes, max_answer if header[at + 4] == _ID_TAG[0]
                            else MAX_INVOCATION_BYTES)
        if length > max_bytes:
            self._break("an answer of %d bytes, more than the request can be answered with" % length)
        return length

    # -- calls -----------------------------------------------------------------------------

    def too_large_payload(self, size: int) -> bool:
        """Whether a request of `size` bytes, none of them in the shared area, is larger
        than the worker reads from the channel."""
        return bool(self._max_request) and size > self._max_request

    def too_large(self, request) -> bool:
        """Whether `request` is larger than the worker reads from the channel (the broker
        refuses such a request the same way: send it there); blocks that would travel in the
        shared area do not count."""
        size = request.ByteSize()
        if not self.too_large_payload(size):
            return False
        for index, _offset, _size in self._plan_shared(request):
            size -= len(request.call.blocks[index].data)
        return size > self._max_request

    # -- the shared area -------------------------------------------------------------------

    def _plan_shared(self, request):
        """[(block index, area offset, size)] of the call's blocks whose bytes travel in the
        shared area: those of MIN_SHARED_BLOCK_BYTES or more, as many as fit."""
        if not self._area_usable or not request.HasField("call"):
            return []
        planned = []
        next_offset = 0
        for index, block in enumerate(request.call.blocks):
            size = _block_size(block)
            if size < MIN_SHARED_BLOCK_BYTES or block.HasField("shared_offset") or \
                    size > self._shared_bytes - next_offset:
                continue
            planned.append((index, next_offset, size))
            next_offset += -(-size // _SHARED_ALIGNMENT) * _SHARED_ALIGNMENT
        return planned

    def _area_view(self):
        """The shared area, mapped at the first call; None when it cannot be (then no block
        goes there again)."""
        if self._area is None and self._area_usable:
            with self._area_fd_lock:
                fd, self._area_fd = self._area_fd, -1
            if fd < 0:  # closed meanwhile
                self._area_usable = False
                return None
            try:
                self._area = mmap.mmap(fd, self._shared_bytes, offset=self._area_offset)
            except OSError:
                self._area_usable = False
            finally:
                os.close(fd)
        return self._area

    def _share(self, request, planned):
        """Writes the planned blocks' bytes into the area and takes them out of `request`;
        returns what _unshare needs to put them back."""
        area = self._area_view()
        if area is None:
            return []
        saved = []
        try:
            for index, offset, size in planned:
                block = request.call.blocks[index]
                data = block.data
                if block.direction != pb.OUT:
                    area[offset:offset + len(data)] = data
                    if len(data) < size:
                        area[offset + len(data):offset + size] = bytes(size - len(data))
                saved.append((index, offset, size, data, block.size))
                block.size = size
                block.ClearField("data")
                block.shared_offset = offset
        except BaseException:
            self._unshare(request, saved)
            raise
        return saved

    @staticmethod
    def _unshare(request, saved) -> None:
        for index, _offset, _size, data, size in saved:
            block = request.call.blocks[index]
            block.ClearField("shared_offset")
            block.data = data
            block.size = size

    @property
    def worker_scalar_calls(self) -> int:
        """How many calls the worker says it ran from their arguments' bits, without parsing
        the request (its count in the channel: a statistic, never to act on); 0 once closed."""
        return 0 if self._map_bytes.closed else self._scalar_calls_word.value

    @property
    def lost(self) -> bool:
        """Whether the worker's end is gone without its closing the channel (it died, or
        ffiboxd killed it: a call's deadline passed)."""
        return not self._map_bytes.closed and self._peer_writer_closed.value != 0 and \
            self._closed_word.value != _CLOSED_BY_WORKER

    @property
    def closed_by_worker(self) -> bool:
        """Whether the worker closed the channel itself (it was not lost)."""
        return not self._map_bytes.closed and self._closed_word.value == _CLOSED_BY_WORKER

    def exchange(self, request, deadline: float, result_bytes: Optional[int] = None):
        """Sends `request` (a top-level call with its id, of a function whose result adds
        `result_bytes` to its answer: _answer_shape.call_answer_bound) and returns the
        worker's checked answer (a pb.Response, its generation the channel's); a longer answer
        ends the channel before the caller holds more of it. Raises NotSent when the request
        could not be sent whole (the channel had ended: the call did not run), else Error:
        UNAVAILABLE when the channel ended after (the worker was lost, or closed it:
        `closed_by_worker`), DEADLINE_EXCEEDED, INTERNAL for an answer that fails the checks or
        stalls. A request `too_large` must not be sent here. Its blocks of
        MIN_SHARED_BLOCK_BYTES or more travel in the channel's shared area when it has one (a
        worker that cannot map it gets the call again in frames); `request` is as it was
        whenever this raises."""
        planned = self._plan_shared(request)
        saved = []
        try:
            saved = self._share(request, planned)
            if planned and not saved and self.too_large(request):
                # This process could not map the area: the call fits no frame.
                return too_large_answer(request, self._max_request, self.generation)
            most = call_answer_bound(request, result_bytes)
            response = self.checked_answer(
                request, self.transfer(request.SerializeToString(), deadline, most))
        except BaseException:
            self._unshare(request, saved)
            raise
        if not saved:
            return response
        if response.HasField("error"):
            self._unshare(request, saved)
            if response.error.code == pb.RESOURCE_EXHAUSTED and \
                    response.error.field.endswith(".shared_offset"):
                # The worker could not map the area and did not run the call: in frames.
                self._area_usable = False
                if self.too_large(request):
                    return too_large_answer(request, self._max_request, self.generation)
                return self.checked_answer(
                    request, self.transfer(request.SerializeToString(), deadline, most))
            return response
        # The checked answer marks exactly the OUT/INOUT blocks that travelled in the area:
        # their bytes are copied out of it (the worker may still change them: nothing parses
        # them) as if they had come in the frame.
        offsets = {index: (offset, size) for index, offset, size, _data, _size in saved}
        for returned in response.call.blocks:
            if returned.shared:
                offset, size = offsets[returned.block]
                returned.data = self._area[offset:offset + size]
                returned.shared = False
        return response

    def transfer(self, payload: bytes, deadline: float, max_answer: int = MAX_ANSWER_BYTES,
                 invocation: int = 0, call: bool = True, small: bool = False) -> bytes:
        """Sends the serialized request `payload` (made inside `invocation`, or at the top
        level; a call unless `call` is False) and returns the worker's answer, unparsed and
        unchecked (exchange's errors); an answer longer than `max_answer` ends the channel.
        Callback invocations that come before a call's answer are served meanwhile
        (`serve`). `small`: the answer is a few bytes (a call of scalars), which the worker
        writes whole into the empty ring and goes on (`in_flight_small`)."""
        with self._lock:
            outer = self.in_flight, self.in_flight_small
            self.in_flight, self.in_flight_small = threading.get_ident(), small
            try:
                head = self._head
                try:
                    self._write(_LENGTH.pack(len(payload)) + payload, deadline)
                except ChannelError as error:
                    if self._head != head:
                        # Part of it, or all, was published: the worker may run it; it is
                        # not sent again.
                        raise
                    raise NotSent(str(error), error.code) from None  # nothing of it went
                if self._serve is None or not call:
                    # No invocation may come (an answer to anything else is refused as one).
                    return self._read_frame(deadline, max_answer)
                while True:
                    # An answer's id comes first; an invocation has none (id 0).
                    frame = self._read_frame(deadline, MAX_ANSWER_BYTES, max_answer)
                    if frame[:1] == _ID_TAG:
                        if len(frame) > max_answer:
                            self._break("an answer of %d bytes, more than the request can be "
                                        "answered with" % len(frame))
                        return frame
                    self._take_invocation(frame, invocation, deadline)
            except ChannelError:
                raise
            except BaseException:
                # Interrupted (Ctrl-C, or any exception a signal handler raised, an
                # ffibox.Error included) or out of memory half-way: the channel is out of step
                # with the worker and is never used again.
                self.close()
                raise
            finally:
                self.in_flight, self.in_flight_small = outer

    def _take_invocation(self, frame: bytes, parent: int, deadline: float) -> None:
        """Checks the callback invocation in `frame` (made by native code during a request
        of `parent`), has `serve` run it and writes its callback_return."""
        why = check_answer_shape(frame, invoke_limits)
        if why is not None:
            self._break("the worker's invocation %s" % why)
        response = pb.Response()
        try:
            response.ParseFromString(frame)
        except Exception:  # google.protobuf.message.DecodeError
            self._break("the worker's frame does not parse")
        if response.id != 0 or response.WhichOneof("result") != "callback_invoke" or \
                response.HasField("error"):
            self._break("the worker sent a frame that is neither the answer nor an invocation")
        invoke = response.callback_invoke
        if invoke.parent_invocation != parent:
            self._break("the worker's invocation %d names parent %d, not %d" % (
                invoke.invocation, invoke.parent_invocation, parent))
        if invoke.invocation == 0 or invoke.invocation in self._invocations:
            self._break("the worker's invocation id %d is not fresh" % invoke.invocation)
        if len(self._invocations) >= MAX_INVOCATION_DEPTH:
            self._break("the worker's invocation %d is nested deeper than %d" % (
                invoke.invocation, MAX_INVOCATION_DEPTH))
        response.generation = self.generation
        self._invocations.append(invoke.invocation)
        try:
            # `serve` clears in_flight while the handler runs (the worker then waits for this
            # thread's frames: its requests inside the invocation, its callback_return).
            answer = self._serve(response, self, deadline)
        except Error as error:
            self._break("the worker's invocation %d: %s" % (invoke.invocation, error))
        finally:
            self._invocations.pop()
        if self._closed:
            # A request of the handler found the channel broken: that failure (UNAVAILABLE
            # when the worker's end closed), else this end closed it meanwhile.
            raise self.broken if self.broken is not None else _internal(
                "closed by this end during a callback's invocation")
        answer.invocation = invoke.invocation
        reply = pb.Request(callback_return=answer).SerializeToString()
        if self._max_request and len(reply) > self._max_request:
            # Native code gets zero, as for a handler that failed.
            reply = pb.Request(callback_return=pb.CallbackReturn(
                invocation=invoke.invocation,
                error="the callback's answer is too large for the same-host channel: %d bytes "
                      "exceed the limit of %d bytes" % (len(reply), self._max_request))
            ).SerializeToString()
        # Small, unless the handler wrote large pointees back: the worker reads it at once.
        self._write(_LENGTH.pack(len(reply)) + reply,
                    min(deadline, time.monotonic() + _ANSWER_PROGRESS))

    def exchange_nested(self, request, deadline: float, result_bytes: Optional[int] = None):
        """Sends `request`, made inside the invocation `request.invocation` this thread
        serves (a call, read_memory, read_string, write_memory or get_layout,
        IN_INVOCATION_OPS), or at the top level one of TOP_LEVEL_OPS (invocation 0, where
        the server announced `memory_requests`), and returns the worker's checked answer
        (exchange's errors; `result_bytes` as there, for a call). A call's blocks travel in
        frames: the outer call's are in the shared area."""
        if self._max_request and request.ByteSize() > self._max_request:
            return too_large_answer(request, self._max_request, self.generation)
        try:
            return self.checked_answer(
                request, self.transfer(request.SerializeToString(), deadline,
                                       max_answer=answer_bound(request, result_bytes),
                                       invocation=request.invocation,
                                       call=request.HasField("call")))
        except Error as error:
            # The worker and this end are out of step: the channel ends with the call.
            if self.broken is None:
                self.broken = ChannelError(str(error), error.code)
            self.close()
            raise

    def checked_answer(self, request, answer: bytes):
        """The worker's `answer` to `request` (a call, or a request of IN_INVOCATION_OPS),
        parsed and checked (exchange's): its encoding first (ffibox/_answer_shape.py), so that
        nothing the request does not allow is parsed into memory."""
        op = request.WhichOneof("op")

        def limits():
            if op == "get_layout":
                return layout_answer_limits(request.get_layout.type)
            if op == "read_memory_list":
                return read_list_limits(request)
            return call_answer_limits(request) if op == "call" else {}

        why = check_answer_shape(answer, limits)
        if why is not None:
            raise _internal("the worker's answer %s" % why)
        response = pb.Response()
        try:
            response.ParseFromString(answer)
        except Exception:  # google.protobuf.message.DecodeError
            raise _internal("the worker's answer does not parse") from None
        why = (check_call_answer if op == "call" else check_nested_answer)(request, response)
        if why is not None:
            raise _internal("the worker's answer %s" % why)
        response.generation = self.generation
        return response

    def close(self) -> None:
        """Tells the worker this end is done (it stops reading this channel)."""
        if self._closed:
            return
        self._closed = True
        with self._area_fd_lock:
            fd, self._area_fd = self._area_fd, -1
        if fd >= 0:
            os.close(fd)
        self._out_closed.value = 1
        self._in_closed.value = 1
        self._wake(self._peer_reader_waiting)
        self._wake(self._peer_writer_waiting)
        # A call of another thread waiting on this end returns at once.
        self._wake(self._in_waiting)
        self._wake(self._out_waiting)


# Codes no worker may answer with: the broker's verdicts, and UNAVAILABLE, only clients' own.
_BROKER_ONLY_CODES = ("WORKER_CRASHED", "SANDBOX_VIOLATION", "JAIL_UNAVAILABLE", "UNAVAILABLE")

# What a handler of an invocation that came on the channel sends through the broker, naming it
# (Request.channel_invocation), where the server announces it (LocalChannelOpened.
# channel_invocations): core/local_channel.h's AllowedThroughBrokerInChannelInvocation.
THROUGH_BROKER_OPS = frozenset((
    "load_library", "resolve_function", "lookup_symbol", "define_callback", "free_callback",
    "alloc_memory", "free_memory", "fill_memory", "copy_memory", "read_memory", "write_memory",
    "read_memory_list", "read_string", "get_layout"))

# The requests a client may send inside an invocation that came on the channel
# (core/local_channel.h's AllowedInChannelInvocation), and the result each is answered with.
IN_INVOCATION_OPS = {"call": "call", "read_memory": "memory", "read_memory_list": "memory_list",
                     "read_string": "string", "write_memory": "done", "get_layout": "layout"}
# What a client sends on the channel at the top level besides calls, where the server
# announces it (LocalChannelOpened.memory_requests): the same requests the worker answers
# alone.
TOP_LEVEL_OPS = frozenset(op for op in IN_INVOCATION_OPS if op != "call")
# What an answer to a memory request holds besides the bytes it asked for (its id, tags,
# lengths, generation, an error's message).
_ANSWER_OVERHEAD = 4096


def answer_bound(request, result_bytes: Optional[int] = None) -> int:
    """The most bytes the worker's answer to `request` may take: for a call, what
    _answer_shape.call_answer_bound allows (its function's result adding `result_bytes`);
    for a raw read, a list of them, a string read and a write, what they ask for and
    _ANSWER_OVERHEAD (a little more per read of a list); else, and at most,
    MAX_ANSWER_BYTES."""
    op = request.WhichOneof("op")
    bound = MAX_ANSWER_BYTES
    if op == "call":
        bound = call_answer_bound(request, result_bytes)
    elif op == "read_memory" and not request.read_memory.HasField("type"):
        bound = request.read_memory.size + _ANSWER_OVERHEAD
    elif op == "read_memory_list" and not any(read.HasField("type")
                                              for read in request.read_memory_list.reads):
        bound = sum(read.size + 16 for read in request.read_memory_list.reads) + \
            _ANSWER_OVERHEAD
    elif op == "read_string":
        units = min(request.read_string.max_length or MAX_STRING_UNITS, MAX_STRING_UNITS)
        bound = units * (4 if request.read_string.wide else 1) + _ANSWER_OVERHEAD
    elif op == "write_memory":
        bound = _ANSWER_OVERHEAD
    return min(bound, MAX_ANSWER_BYTES)
# core/local_channel.h's kMaxChannelInvocationDepth.
MAX_INVOCATION_DEPTH = 256
_ID_TAG = b"\x08"  # Response.id's, a varint: first in every answer
_HEADER = 5  # a frame's length, and its payload's first byte


def _block_size(block) -> int:
    return block.size if block.size else len(block.data)


# Blocks of at least this many bytes travel in the channel's shared area when it has one.
MIN_SHARED_BLOCK_BYTES = 64 << 10


def too_large_answer(request, limit: int, generation: int):
    """The broker's answer to a request larger than it reads (the stream's clients answer
    it themselves rather than send it)."""
    return pb.Response(id=request.id, generation=generation, error=pb.Error(
        code=pb.RESOURCE_EXHAUSTED, message="request of %d bytes exceeds the limit of %d bytes" % (
            request.ByteSize(), limit)))


def _check_error(response) -> Optional[str]:
    """Why the error `response` carries cannot be the worker's (core/call_answer.h's
    CheckErrorAnswer), else None."""
    code = response.error.code
    name = pb.ErrorCode.Name(code) if code in pb.ErrorCode.values() else None
    if name is None or code == 0 or name in _BROKER_ONLY_CODES:
        return "has error code %d, which the worker may not report" % code
    if response.WhichOneof("result") is not None:
        return "carries both an error and a result"
    if response.error.HasField("batch_index"):
        return "names a batch call"
    if response.error.never_reached_worker:  # the broker's word only (releases sent again)
        return "says its request never reached a worker"
    return None


def check_nested_answer(request, response) -> Optional[str]:
    """Why `response` cannot be the worker's answer to `request`, a request of
    IN_INVOCATION_OPS other than a call, else None (core/call_answer.h's
    CheckNestedAnswer)."""
    if response.id != request.id:
        return "answers request %d, not %d" % (response.id, request.id)
    if response.HasField("error"):
        return _check_error(response)
    op = request.WhichOneof("op")
    if response.WhichOneof("result") != IN_INVOCATION_OPS.get(op):
        return "carries the result %s to %s" % (response.WhichOneof("result"), op)
    if op == "read_memory":
        return _check_read(response.memory, request.read_memory)
    if op == "read_memory_list":
        reads, answers = request.read_memory_list.reads, response.memory_list.reads
        if len(answers) != len(reads):
            return "returns %d reads of the %d asked" % (len(answers), len(reads))
        for index, (memory, read) in enumerate(zip(answers, reads)):
            wrong = _check_read(memory, read)
            if wrong is not None:
                return "read %d %s" % (index, wrong)
    return None


def _check_read(memory, read) -> Optional[str]:
    """Why `memory` cannot be what the ReadMemory `read` read, else None."""
    if not read.HasField("type"):
        if len(memory.data) != read.size or memory.HasField("value"):
            return "returns %d bytes of the %d read" % (len(memory.data), read.size)
    elif memory.data or memory.value.WhichOneof("kind") is None:
        return "returns no value for a typed read"
    return None


def check_call_answer(request, response) -> Optional[str]:
    """Why `response` cannot be the worker's answer to the call `request`, else None: the
    checks of core/call_answer.h (CheckWorkerError, CheckCallResult), as the broker applies
    them to every worker's answer."""
    if response.id != request.id:
        return "answers request %d, not %d" % (response.id, request.id)
    if response.HasField("error"):
        return _check_error(response)
    if response.WhichOneof("result") != "call":
        return "carries no call result"
    changed_bytes = 0
    for changed in response.call.changed:
        changed_bytes += len(changed.data)
        if not changed.address.address or not changed.data or changed.offset % 8 or \
                changed.offset >= MAX_WATCHED_BYTES or changed_bytes > MAX_CHANGED_BYTES:
            return "reports a changed run at 0x%x offset %d of %d bytes" % (
                changed.address.address, changed.offset, len(changed.data))
    blocks = request.call.blocks
    if not blocks:  # the common case: nothing may come back but the result
        if response.call.blocks or response.call.kept:
            return "returns blocks the call did not send"
        return None
    sizes = [_block_size(block) for block in blocks]
    seen = set()
    for returned in response.call.blocks:
        index = returned.block
        if index >= len(blocks) or index in seen or blocks[index].direction == pb.IN:
            return "returns block %d, which was not sent back" % index
        block = blocks[index]
        if returned.shared != block.HasField("shared_offset"):
            return "returns block %d %s the shared area" % (
                index, "claiming" if returned.shared else "not marked as in")
        if returned.shared:
            if returned.data or (returned.pointers and not (block.keep or block.HasField("at"))):
                return "returns block %d of the shared area with data or pointers" % index
        elif len(returned.data) != sizes[index]:
            return "returns block %d, which was not sent back with its size" % index
        seen.add(index)
        next_offset = 0
        for pointer in returned.pointers:
            offset = pointer.offset
            if offset % 8 or offset < next_offset or offset + 8 > sizes[index]:
                return "reports a pointer at offset %d of block %d" % (offset, index)
            next_offset = offset + 8
            if not pointer.HasField("target"):
                return "reports a pointer at offset %d of block %d that is not into a block" % (
                    offset, index)
            target = pointer.target
            if target.block >= len(blocks) or target.offset > sizes[target.block]:
                return "reports a pointer outside the call's blocks"
    kept = [i for i, block in enumerate(blocks) if block.keep]
    if [k.block for k in response.call.kept] != kept or any(
            k.address.address == 0 for k in response.call.kept):
        return "reports other kept blocks than the call kept"
    return None
