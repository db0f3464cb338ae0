"""One session stream: request ids, answers matched by id, events, and the callback thread.

Every request gets a fresh id; the reader thread hands each answer to whoever waits for it.
`CallbackInvoke`s never run on the reader (the answers to requests a callback makes arrive
on the stream). One that native code made on the thread running a call or batch of this
client (`CallbackInvoke.request_id`) runs on the thread waiting for that call's answer, as
ctypes runs it; the others (a thread of the library's) run on one dedicated callback thread.
A thread waiting for an answer keeps serving the invokes handed to it: a nested invocation
is a nested call on its stack. Requests made while a thread serves an invocation carry it
(`Request.invocation`).
"""
import atexit
import collections
import itertools
import os
import queue
import select
import sys
import threading
import time
import traceback
import weakref
from typing import Callable, Dict, Optional, Tuple

from ffibox._channel import fork_advice
from ffibox._local_channel import (IN_INVOCATION_OPS, THROUGH_BROKER_OPS, TOP_LEVEL_OPS,
                                   ChannelError, LocalChannel, NotSent, too_large_answer)
from ffibox._recursion_room import ensure_room
from ffibox._stubs import pb, pb_grpc
from ffibox.errors import Error, SessionClosed, error_from_proto

# How much longer than the session's call timeout a call on the same-host channel waits (the
# broker ends an overrun first), and how long a call that found the channel ended waits for
# the broker's report of the loss.
_LOCAL_ANSWER_MARGIN = 5.0
_LOSS_REPORT_WAIT = 5.0
# The most a request's id adds to its size: its tag and a ten-byte varint.
_LARGEST_ID_BYTES = 11
# How often a call waiting for the same-host channel looks whether a handler of another
# thread's call holds it.
_HANDLER_LOOK = 0.001
# How often a request sent from a signal handler or finalizer that interrupted this thread's
# wait for another looks for the invokes of that one's native code besides when woken for
# them (_await_answer).
_OUTER_LOOK = 0.05
# How long a call waits for another thread's call on the same-host channel before it goes
# through the broker instead (SessionStream._through_local).
_CHANNEL_WAIT = 0.05
# How much longer than its deadline in the worker a request's answer may take, by default
# (Client.session(answer_margin=)); what the broker answers at once gets this alone.
DEFAULT_ANSWER_MARGIN = 10.0
_ANSWERED_AT_ONCE = frozenset(("open", "ping", "close", "parse_declaration", "callback_return"))
# How many unsolicited events a session keeps (SessionStream.events), as the C++ and Node
# clients keep.
KEPT_EVENTS = 1000
# A waiter that looks this much later than it meant to was held up with the rest of this
# process (stopped, the machine suspended): that silence is not the server's.
_HELD_UP = 1.0
# How long a server found overdue is given to be heard before the session ends: answers that
# came while this process was stopped, until just after a look was due (too little after it
# to be taken for a stop), wait unread until the stream's reader runs again.
_OVERDUE_CONFIRMATION = 0.2

InvokeHandler = Callable[["SessionStream", object], object]  # CallbackInvoke -> CallbackReturn


def _typed_read(request) -> bool:
    """Whether `request` reads memory as a type (its answer a value the client cannot check
    for size without the type's layout: such reads stay with the broker, which does)."""
    if request.HasField("read_memory"):
        return request.read_memory.HasField("type")
    return any(read.HasField("type") for read in request.read_memory_list.reads)


# The errors that end the worker that answered them.
_WORKER_DEATHS = frozenset((pb.WORKER_CRASHED, pb.CALL_TIMEOUT, pb.SANDBOX_VIOLATION))


def _refusal(request, generation: int, message: str):
    """The answer FAILED_PRECONDITION to `request`, refused by this client with `message`."""
    return pb.Response(id=request.id, generation=generation,
                       error=pb.Error(code=pb.FAILED_PRECONDITION, message=message))


def _call_state_of(channel):
    """The state gRPC's Python channel keeps for its event loop (`_call_state`), through any
    interceptor wrapping the channel; None when this gRPC keeps none there."""
    for _ in range(8):
        state = getattr(channel, "_call_state", None)
        if state is not None:
            return state
        channel = getattr(channel, "_channel", None)
        if channel is None:
            return None
    return None


def failed_callback(function):
    """Reports the exception being handled as ctypes reports a callback that raised
    (`function` the callback's), and returns the CallbackReturn that gives native code zero.
    A report that fails itself (a `repr` that raises, a replaced sys.stderr, no memory) is
    cut to the exception's name and message, or dropped: the invocation is answered all the
    same."""
    failure = sys.exc_info()[1]
    try:
        sys.stderr.write("Exception ignored on calling ctypes callback function: %r\n"
                         % (function,))
        traceback.print_exc()
        error = traceback.format_exc(limit=-1).strip()
    except BaseException:  # noqa: B902 - whatever it is, the answer goes
        error = _named(failure)
        try:
            sys.stderr.write("Exception ignored on calling ctypes callback function (its "
                             "traceback could not be printed): %s\n" % error)
        except BaseException:  # noqa: B902
            pass
    return pb.CallbackReturn(error=error)


def _without_function(invoke):
    """The CallbackReturn of an invocation of a callback with no handler in this client (one
    it freed meanwhile): native code gets zero."""
    return pb.CallbackReturn(error="callback %d has no function in this client"
                             % invoke.callback)


def _named(failure: BaseException) -> str:
    """`failure`'s type and message, or its type alone when its message cannot be had."""
    try:
        return "%s: %s" % (type(failure).__name__, failure)
    except BaseException:  # noqa: B902 - a __str__ of its own that raises
        return type(failure).__name__


class _Serving(threading.local):
    """What the current thread serves: the callback invocation whose handler it runs (0:
    none), and the same-host channel that invocation came on (None: the stream's), with
    the deadline of the call it came in. The class's values are each thread's at first."""

    invocation = 0
    channel = None
    channel_deadline = 0.0
    # This thread holds the session's channel lock, or is taking it: a finalizer or signal
    # handler that runs meanwhile must not wait for it (SessionStream._through_local).
    holds_channel = False
    # (the request this thread waits for the answer of, the invocation it then served) in
    # _await_answer, or None.
    waiting = None
    # For each callback invocation this thread runs and has not posted the return of
    # (_run_invocation), innermost last: the invocation the thread served when it took it.
    # Native code waits for that return.
    owing = ()


class _Wake:
    """Wakes a waiting thread from any thread, without taking a lock the waiter's thread may
    hold (a signal handler that CPython runs on it, inside the wait or elsewhere, may wait
    for the reader thread to wake it in turn): a lock held while there is nothing to wake
    for. Its waits run signal handlers and keep their timeouts, as threading's locks do;
    queue.SimpleQueue.get with a timeout waits for ever once a handler ran past it."""
    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:  # released already: a wake is waiting
            pass

    def wait(self, timeout: float) -> bool:
        """Until woken (True) or `timeout` seconds passed (False)."""
        return self._lock.acquire(timeout=max(timeout, 0.0))


class _Pending:
    """A request waiting for its answer. `done` once the answer is in (or the stream ended),
    and its waiter is woken (`wake`; on the callback thread, whose waits take the invokes of
    other calls too, `shared` gets None instead); `runs_invokes`: the invokes the request's
    own native code makes go to `invokes` (each with its worker's generation), for its
    waiter to run (not to the callback thread), and wake it; `bound`: how long the server
    may take to answer it, in seconds (SessionStream._bound_of). The invokes are taken one
    by one (a queue's get that took one would leave it in no one's hands while a signal
    handler runs: SessionStream._run_waiting_invokes). `outer`: the request whose wait this one's interrupted (a signal
    handler's or finalizer's request), whose invokes this one's waiter runs too; `forward`:
    the wake of such a wait, woken with this one's."""
    __slots__ = ("done", "response", "shared", "wake", "invokes", "runs_invokes", "bound",
                 "outer", "forward")

    def __init__(self, shared: Optional["queue.SimpleQueue"], bound: float) -> None:
        self.done = False
        self.response = None
        self.shared = shared
        self.wake = _Wake() if shared is None else None
        self.invokes: collections.deque = collections.deque()
        self.runs_invokes = False
        self.bound = bound
        self.outer: Optional["_Pending"] = None
        self.forward: Optional[_Wake] = None

    def wake_up(self) -> None:
        if self.shared is not None:
            self.shared.put(None)
        else:
            self.wake.set()
        forward = self.forward
        if forward is not None:
            forward.set()

    def answer(self, response) -> None:
        """Hands the waiter `response` (None: the stream ended)."""
        self.response = response
        self.done = True
        self.wake_up()


# How long the default output handler waits for this process's stderr to take more of the
# library's output before it drops it (a pipe nobody reads: the thread that runs the
# handler reads the session's answers too), and its state, shared by every session:
# [whether stderr took nothing last time (then it is not waited for), bytes dropped since].
_OUTPUT_WAIT = 1.0
_output_state = [False, 0]
_output_lock = threading.Lock()


def write_worker_output(stream: str, data: bytes) -> None:
    """The default output handler: the library's bytes, as written, on this process's
    stderr (both streams: the caller's stdout stays the caller's). When stderr takes nothing
    for _OUTPUT_WAIT (a pipe nobody reads), the bytes are dropped, not waited for, until it
    takes some again: then a note says how many went."""
    target = sys.stderr
    try:
        fd = target.fileno()
    except (AttributeError, OSError, ValueError):  # not a file: a StringIO, a logger
        fd = None
    if fd is None:
        buffer = getattr(target, "buffer", None)
        if buffer is not None:
            buffer.write(data)
        else:
            target.write(data.decode("utf-8", "replace"))
        target.flush()
        return
    with _output_lock:
        try:
            target.flush()  # what Python wrote before it, in order
            if _output_state[1] and _writable(fd, 0 if _output_state[0] else _OUTPUT_WAIT):
                note = ("ffibox: %d bytes the library printed were dropped: this process's "
                        "stderr took nothing for %g s\n" % (_output_state[1], _OUTPUT_WAIT))
                _output_state[1] = 0
                _write_all(fd, note.encode())
            _output_state[0] = not _write_all(fd, data)
        except OSError:
            _output_state[0] = True
            _output_state[1] += len(data)


def _writable(fd: int, wait: float) -> bool:
    poll = select.poll()  # not select.select: stderr may be a descriptor past 1023
    poll.register(fd, select.POLLOUT)
    return any(events & select.POLLOUT for _, events in poll.poll(int(wait * 1000)))


def _write_all(fd: int, data: bytes) -> bool:
    """Writes `data` to `fd` a pipe's atomic piece at a time, each once `fd` is writable
    (within _OUTPUT_WAIT, none when stderr took nothing last time): whether all of it went
    (the rest is counted as dropped)."""
    view = memoryview(data)
    while view:
        if not _writable(fd, 0 if _output_state[0] else _OUTPUT_WAIT):
            _output_state[1] += len(view)
            return False
        view = view[os.write(fd, view[:select.PIPE_BUF]):]
        _output_state[0] = False
    return True


_live_streams: "weakref.WeakSet[SessionStream]" = weakref.WeakSet()
# The main thread's ident (a fork's child has its own): never one a session's requests or
# answers wait for, and the thread most calls come from.
_main_thread = [threading.main_thread().ident]


def _forsake_streams_in_child() -> None:
    # A child of fork() has copies of this process's sessions but none of their threads, and
    # gRPC's channels do not work in it: a request would wait forever for a reader that is
    # not there, and one through a same-host channel would share the parent's rings. The
    # child's copies end at once instead, saying why.
    global _output_lock
    _main_thread[0] = threading.main_thread().ident
    _output_lock = threading.Lock()  # a reader of the parent's may have held it
    parent = os.getppid()
    for stream in list(_live_streams):
        stream._forsake_after_fork(parent)


os.register_at_fork(after_in_child=_forsake_streams_in_child)


@atexit.register
def _close_streams_at_exit() -> None:
    # After atexit the interpreter stops running daemon threads, so the reader could never
    # deliver another answer: a library call from a __del__ during teardown would wait
    # forever. Close the streams now; later requests raise SessionClosed at once (and a
    # library call returns None: ffibox._functions, which reads `closed_at_exit` from the
    # stream, as module globals may be gone by then).
    for stream in list(_live_streams):
        stream.closed_at_exit = True
        stream.close()


def _stream_error_code(error: Exception) -> str:
    """The code requests fail with after the stream broke with `error`: the server's refusal
    of the session as it said it, else UNAVAILABLE (the server or the connection went
    away)."""
    code = getattr(error, "code", None)
    name = code().name if callable(code) else ""
    if name in ("UNAUTHENTICATED", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED"):
        return name
    return "UNAVAILABLE"


class SessionStream:
    """A bidi `Session` stream with a reader thread; thread-safe."""

    def __init__(self, channel, open_request=None,
                 answer_margin: float = DEFAULT_ANSWER_MARGIN) -> None:
        self._stub = pb_grpc.FfiboxStub(channel)
        # The channel's event loop state: the thread that runs `channel_spin` over it delivers
        # every answer of this session (on_event_loop).
        self._channel_state = _call_state_of(channel)
        self._event_loop_threads = threading.local()  # is_loop: whether a thread is it
        self.closed_at_exit = False  # closed by the interpreter's exit
        # The client's own deadline for answers (_await_answer): a request's answer is due
        # within its deadline in the worker (the call's, else the session's call timeout, set
        # once the session is open) plus `answer_margin` seconds.
        self.answer_margin = answer_margin
        self.call_timeout = 0.0
        self._heard = 0.0  # time.monotonic() of the server's latest message
        self._quiet_since = 0.0  # when the latest wait for answers began
        # (the silence's start, when a look first found it overdue), None: no look did
        self._overdue_seen: Optional[Tuple[float, float]] = None
        self._channel_call_bound = 0.0  # that of the call on the same-host channel now
        self._outgoing: "queue.SimpleQueue" = queue.SimpleQueue()
        self._ids = itertools.count(1)
        # Re-entrant: a collection while it is held (its sections allocate) may finalize a
        # callback on the same thread, whose release posts its free_callback through here.
        self._lock = threading.RLock()
        # Added to under the lock; the reader thread takes answered requests out without it,
        # so the lock's holders iterate over copies (list() of a dict's values is atomic).
        self._pending: Dict[int, _Pending] = {}
        # Posted callback_returns (request id -> invocation), until their answer comes: one
        # the broker refuses leaves its invocation open (docs/protocol.md), so it is answered
        # again with an error and native code resumes now, not at the call's deadline.
        self._posted_returns: Dict[int, int] = {}
        self._ended: Optional[str] = None
        # The code later requests fail with: FAILED_PRECONDITION once closed, UNAVAILABLE when
        # the server went away, the server's refusal (UNAUTHENTICATED, ...) as it said.
        self._ended_code = "FAILED_PRECONDITION"
        self.generation = 0
        # The last KEPT_EVENTS unsolicited events, oldest first: a library's thread may make
        # them without end (each call of a freed callback is one), and a caller may never
        # look at them. A list (a deque raises in a caller's loop over it as one arrives).
        self.events: list = []
        # What the library prints (WORKER_OUTPUT events): (stream, bytes) -> None. By default
        # it goes to this process's stderr, as the library's output would with ctypes.
        self.on_output: Callable[[str, bytes], None] = write_worker_output
        # Since when the reader thread runs on_output, or None while it does not.
        self._output_handler_since: Optional[float] = None
        self._handlers: Dict[int, InvokeHandler] = {}
        # (CallbackInvoke, its worker generation) for the callback thread; None wakes it.
        self._invokes: "queue.SimpleQueue" = queue.SimpleQueue()
        self._callback_thread: Optional[threading.Thread] = None
        self._serving = _Serving()
        # The same-host channel (docs/protocol.md): None, or the LocalChannel top-level calls
        # go through; wanted: open one again after a loss, once the next worker answered.
        self._local: Optional[LocalChannel] = None
        # No call is on a channel while it is replaced. The thread holding it, or taking it,
        # says so in `_serving.holds_channel`.
        self._local_lock = threading.Lock()
        self._local_wanted = False
        self._local_timeout = 0.0
        self._local_callbacks = False  # the channel's callbacks come on it too
        self._local_callbacks_asked: Optional[bool] = False  # as enable_local got it
        self._channel_handlers = 0  # handlers of channel invocations running now
        # Function handles resolved at a worker address -> that address's generation: a call
        # of one on a later worker goes through the stream, whose broker answers STALE_HANDLE
        # (the worker alone could only say it does not know the handle).
        self.address_functions: Dict[int, int] = {}
        # Function handle -> what its result adds to a call's answer on the same-host channel
        # (_answer_shape.result_answer_bytes; a handle not here may be answered with up to
        # MAX_ANSWER_BYTES).
        self.result_bytes: Dict[int, int] = {}
        # The largest request the server reads (SessionOpened.max_message_bytes, set once the
        # session is open; 0: unknown): a larger one is answered RESOURCE_EXHAUSTED here, as
        # the broker would answer it, instead of being written (at four times that size gRPC
        # would end the whole stream).
        self.max_request_bytes = 0
        # The latest worker loss the broker reported: (its generation, its error), replaced
        # whole by the reader thread, which then wakes the threads waiting in _loss_of
        # through their queues (no lock: see _Pending).
        self._lost: Tuple[int, Optional[object]] = (0, None)
        # The latest worker generation an answer said died (lost_generation).
        self._died = 0
        self._loss_waiters: set = set()
        self._sender: Optional[int] = None  # gRPC's thread that sends the requests
        self._responses = self._stub.Session(self._requests())
        self._reader = threading.Thread(target=self._read_loop, name="ffibox-reader",
                                        daemon=True)
        self._reader.start()
        _live_streams.add(self)
        if open_request is not None:
            self.request(open=open_request)

    # -- sending ---------------------------------------------------------------------------

    def request(self, **op):
        """Sends one request and returns its answer; raises the typed error it carries."""
        response = self.send(pb.Request(**op))
        if response.HasField("error"):
            raise error_from_proto(response.error, pb)
        return response

    def _requests(self):
        """The requests gRPC sends, as they are queued; notes the thread it takes them on."""
        self._sender = threading.get_ident()
        get = self._outgoing.get
        while True:
            request = get()
            if request is None:
                return
            yield request

    def defers_calls_here(self) -> bool:
        """Whether a library call made on this thread runs later on a thread of ffibox's own
        (ffibox._functions): a finalizer's that the garbage collector ran on a thread the
        session's requests or answers wait for (the one that sends its requests, gRPC's,
        which takes them from the queue a request waits in; the one that reads its answers,
        but while it runs the output handler, whose calls are refused; its channel's event
        loop)."""
        me = threading.get_ident()
        if me == _main_thread[0]:
            return False
        return me == self._sender or self.on_event_loop() or (
            me == self._reader.ident and self._output_handler_since is None)

    def on_event_loop(self) -> bool:
        """Whether this thread is the event loop of this session's gRPC channel (gRPC's
        `channel_spin`), which delivers every answer: Python's garbage collector may run a
        finalizer there, and a request made from it would wait for an answer only that
        thread can deliver."""
        if self._channel_state is None or threading.current_thread() is threading.main_thread():
            return False
        known = getattr(self._event_loop_threads, "is_loop", None)
        if known is None:
            # Found once per thread, by its stack: gRPC's `channel_spin` over this channel's
            # state runs at its bottom for the thread's whole life.
            frame = sys._getframe(1)
            while frame is not None and not (frame.f_code.co_name == "channel_spin" and
                                             frame.f_locals.get("state") is self._channel_state):
                frame = frame.f_back
            known = self._event_loop_threads.is_loop = frame is not None
        return known

    def send(self, request):
        """Sends `request` (id and invocation filled in) and waits for its Response."""
        if threading.get_ident() in (self._sender, self._reader.ident) or self.on_event_loop():
            # A finalizer that gc ran on one of them, or an output handler.
            return _refusal(request, self.generation, (
                "%s cannot be sent from the thread that sends this session's requests, reads "
                "its answers or runs its gRPC channel's event loop (a finalizer that ran "
                "there, or the output handler): its answer could never reach it"
                % request.WhichOneof("op")))
        channel = self._serving.channel
        refused = self._refused_in_flight(request, channel)
        if refused is not None:
            return refused
        if channel is not None:
            return self._send_in_channel_invocation(channel, request)
        on_callback_thread = threading.current_thread() is self._callback_thread
        # Not from a callback (the worker's thread that serves the channel waits for it).
        local = (self._local_wanted and not on_callback_thread and request.invocation == 0 and
                 not request.channel_invocation and self.current_invocation() == 0)
        channel = self._local
        if local and channel is not None and channel.memory_requests and \
                request.WhichOneof("op") in TOP_LEVEL_OPS and not _typed_read(request):
            response = self._send_memory_locally(request)
            if response is not None:
                return response
        elif local and request.HasField("call"):
            if (self._local is None and self.max_request_bytes and
                    request.ByteSize() > self.max_request_bytes):
                # After a loss, a call that fits no message opens the channel to the next
                # worker (the broker starts it) instead of waiting for a small call to.
                self._reopen_local()
            if self._local is not None:
                response = self._send_locally(request)
                if response is not None:
                    return response
            response = self._send(request, on_callback_thread)
            if not response.HasField("error") and response.generation > self._lost[0]:
                self._reopen_local()  # the next worker answered: a channel to it
            return response
        return self._send(request, on_callback_thread)

    def serves_invocation_here(self) -> bool:
        """Whether this thread runs a callback's handler now (its call waits for it)."""
        return self._serving.invocation != 0

    def in_flight_here(self) -> bool:
        """Whether this thread's own request is on the same-host channel now (from its first
        byte written to its answer read): a finalizer or signal handler that runs there."""
        me = threading.get_ident()
        return any(local is not None and local.in_flight == me
                   for local in (self._serving.channel, self._local))

    def _refused_in_flight(self, request, serving):
        """FAILED_PRECONDITION for `request` when this thread's own request is on the
        same-host channel now (`serving`, the channel of the invocation this thread serves,
        or the session's): a finalizer or signal handler that ran during it. The worker
        serves nothing else, the broker's requests included, until that request is answered,
        and that may wait for this thread (an invocation of a callback, an answer larger than
        the room in the ring). Else None: also for what the broker answers alone (a ping, a
        close, a declaration's parse), and in a session without callbacks when that request
        is a top-level call of scalars, which waits for nothing."""
        if request.WhichOneof("op") in _ANSWERED_AT_ONCE:
            return None
        me = threading.get_ident()
        for local in (serving, self._local):
            if local is not None and local.in_flight == me:
                if serving is None and local.in_flight_small and not self._handlers:
                    # A call of scalars at the top level, in a session without callbacks:
                    # its native code cannot wait for this thread, nor its answer for room in
                    # the ring; the worker runs this request, through the broker, once it is
                    # done.
                    continue
                return _refusal(request, local.generation, (
                    "%s cannot be sent from inside this thread's own request on the "
                    "same-host channel (a finalizer or signal handler that ran during it): the "
                    "worker serves nothing else until that request is answered, and its "
                    "answer waits for this thread" % request.WhichOneof("op")))
        return None

    def _send(self, request, on_callback_thread: bool):
        if self.max_request_bytes and request.ByteSize() > self.max_request_bytes:
            return too_large_answer(request, self.max_request_bytes, self.generation)
        bound = self._bound_of(request)
        outer = self._interrupted_wait()
        owing = self._serving.owing
        if owing and owing[-1] == self._serving.invocation and \
                request.WhichOneof("op") not in _ANSWERED_AT_ONCE:
            return _refusal(request, self.generation, (
                "%s cannot be sent from a finalizer or signal handler that ran while this "
                "thread took or answered a callback's invocation of its own call: native code "
                "waits for that answer, and the worker serves nothing else until the call "
                "returns" % request.WhichOneof("op")))
        if on_callback_thread:
            pending = _Pending(self._invokes, bound)
        elif request.HasField("call") or request.HasField("batch"):
            # Its own invokes come to this thread (_read_loop), which runs them.
            pending = _Pending(None, bound)
            pending.runs_invokes = True
        else:
            pending = _Pending(None, bound)
        with self._lock:
            if self._ended is not None:
                raise SessionClosed(self._ended, self._ended_code)
            request.id = next(self._ids)
            if not self._pending:
                self._quiet_since = time.monotonic()
            self._pending[request.id] = pending
        serving = self.current_invocation()
        if serving and not request.HasField("callback_return") and not request.channel_invocation:
            request.invocation = serving
        self._await_answer(pending, outer, request)
        if pending.response is None:
            raise SessionClosed(self._ended or "ffibox session stream ended",
                                self._ended_code)
        return pending.response

    # -- answer deadlines ------------------------------------------------------------------
    #
    # The server runs a session's worker requests one at a time, in order, each within its
    # own deadline, and answers the others at once. So while requests wait, some message is
    # due within the longest of their bounds, counted from the server's last message, or from
    # the request that found none waiting (a request queued behind slow ones gets its whole
    # bound once they have been answered). When nothing comes in time the server is taken for
    # gone: the stream is cancelled and every request waiting raises SessionClosed
    # DEADLINE_EXCEEDED. The Node and C++ clients keep the same rule.

    def _bound_of(self, request) -> float:
        """How long the server may take to answer `request`, in seconds."""
        op = request.WhichOneof("op")
        if op in _ANSWERED_AT_ONCE:
            return self.answer_margin
        if op == "call":
            return self._call_bound(request.call.timeout_ms / 1000.0)
        if op == "batch":
            # The server's deadline of a batch: its own, else the sum of its calls'.
            own = request.batch.timeout_ms / 1000.0
            return (own or sum(call.timeout_ms / 1000.0 or self.call_timeout
                               for call in request.batch.calls)) + self.answer_margin
        return self.call_timeout + self.answer_margin

    def _call_bound(self, timeout: float) -> float:
        """The bound of a call of `timeout` seconds (0: the session's)."""
        return (timeout or self.call_timeout) + self.answer_margin

    def _interrupted_wait(self) -> Optional[_Pending]:
        """The request whose answer this thread waits for at the invocation it serves now,
        when a signal handler or finalizer interrupted that wait to send one of its own (a
        callback's handler the wait runs serves an invocation of its own); else None."""
        waiting = self._serving.waiting
        if waiting is not None and waiting[1] == self._serving.invocation:
            return waiting[0]
        return None

    def _await_answer(self, pending: _Pending, outer: Optional[_Pending] = None,
                      request=None) -> None:
        """Sends `request` (if given), then waits until `pending` is answered or the stream
        ended, running the invokes that come for it meanwhile, and ends the stream when the
        server is overdue. The wait is set up first: a signal handler's request made once
        this one is sent nests in it (it never finds an unanswered request of this thread
        that no wait runs the invokes of). `outer`: the
        request whose wait this one interrupted (_interrupted_wait): the worker runs this
        one after it, so the invokes of its native code (and of the waits that one
        interrupted) keep running here meanwhile: their wakes are forwarded to this wait."""
        serving = self._serving
        pending.outer = outer
        forwarded = []  # the interrupted waits, with what they forwarded to before
        waiting = serving.waiting
        try:
            each = outer
            while each is not None and pending.wake is not None:
                forwarded.append((each, each.forward))
                each.forward = pending.wake
                each = each.outer
            serving.waiting = (pending, serving.invocation)
            if request is not None:
                self._outgoing.put(request)
            look_at = time.monotonic() + pending.bound
            timed = False  # the last wait was meant to end at look_at (else: busy meanwhile)
            while not pending.done:
                self._run_waiting_invokes(pending)
                each = outer
                while each is not None:
                    self._run_waiting_invokes(each)
                    each = each.outer
                now = time.monotonic()
                if now >= look_at:
                    look_at = self._look_for_silence(look_at if timed else now)
                    timed = False
                    continue
                wait = look_at - now if outer is None else min(look_at - now, _OUTER_LOOK)
                if pending.shared is None:
                    timed = not pending.wake.wait(wait) and wait == look_at - now
                    continue
                try:
                    item = pending.shared.get(timeout=wait)
                except queue.Empty:
                    timed = wait == look_at - now
                    continue
                timed = False
                if item is not None:
                    self._run_invocation(*item)
        finally:
            serving.waiting = waiting
            for each, forward in reversed(forwarded):
                each.forward = forward
            if pending.shared is not None and waiting is not None:
                # A wait on the callback thread's queue that this one interrupted (a
                # finalizer's request): the wake of its answer may have been taken here.
                pending.shared.put(None)

    def _run_waiting_invokes(self, pending: _Pending) -> None:
        """Runs the invokes of `pending`'s native code that wait for this thread. Each is
        taken while the thread says it owes an answer (_Serving.owing), so that a signal
        handler running between the take and the answer's post is refused, not left to wait
        for a call that waits for this very thread."""
        invokes = pending.invokes
        if not invokes:
            return
        serving = self._serving
        owing = serving.owing
        serving.owing = owing + (serving.invocation,)
        try:
            while True:
                try:
                    invoke, generation = invokes.popleft()
                except IndexError:
                    return
                self._answer_invocation(invoke, generation)
        finally:
            serving.owing = owing

    def _look_for_silence(self, meant: float) -> float:
        """Ends the stream if the server sent nothing for longer than the requests waiting
        may take; else returns when to look again. `meant`: when the caller meant to look (much
        later than that, this process itself was held up, and the silence is forgiven)."""
        now = time.monotonic()
        # Every bound is at least the margin: a request whose longer companions are answered
        # meanwhile (their answers start the silence again) is due no earlier than a margin
        # from now, so the caller looks again by then at the latest.
        look_again = now + self.answer_margin
        with self._lock:
            if self._ended is not None or not self._pending:
                return look_again
            if now - meant > _HELD_UP:
                self._quiet_since = now
            # A call on the same-host channel counts as a request waiting: the ones through
            # the broker wait behind it in the worker.
            bound = max(self._channel_call_bound,
                        max((waiting.bound for waiting in list(self._pending.values())),
                            default=0.0))
            since = max(self._quiet_since, self._heard)
            if now - since < bound:
                self._overdue_seen = None
                return min(look_again, since + bound)
            # Looked at once more after the stream's reader had the time to take what came
            # meanwhile: a message read since makes the silence start again.
            if self._overdue_seen is None or self._overdue_seen[0] != since:
                self._overdue_seen = (since, now)  # a silence not seen overdue before
            seen = self._overdue_seen[1]
            if now - seen < _OVERDUE_CONFIRMATION:
                return seen + _OVERDUE_CONFIRMATION
            # Decided under the lock: requests sent from now on fail at once.
            handler = self._output_handler_since
            if handler is not None:
                # The reader is in the output handler: the answers wait behind it, not for
                # the server.
                self._ended = ("the session's output handler (session.stream.on_output), "
                               "which the thread that reads its answers runs, has not "
                               "returned for %.1f s while requests waited for answers due "
                               "within %.1f s; the session is closed" % (now - handler, bound))
            else:
                self._ended = ("ffiboxd sent nothing for %.1f s while requests waited for "
                               "answers due within %.1f s (their deadline in the worker plus "
                               "the answer margin of %g s); the session is closed: open a new "
                               "one once the server answers again"
                               % (now - since, bound, self.answer_margin))
            self._ended_code = "DEADLINE_EXCEEDED"
        self._finish(self._ended, self._ended_code)
        self._outgoing.put(None)
        self._responses.cancel()  # the server, if it still runs, ends the worker
        return now + self.answer_margin

    # -- the same-host channel -------------------------------------------------------------

    def enable_local(self, call_timeout: float, callbacks: Optional[bool] = False) -> None:
        """Sends this stream's top-level calls, and memory and layout requests where the
        worker takes them (TOP_LEVEL_OPS; typed reads stay with the broker), but the callback
        thread's, through a same-host channel to the session's worker from now on, and to
        each next worker after
        a loss; with `callbacks`, the invocations native code makes during such a call come
        on the channel too and run on the calling thread (`_serve_on_channel`); None: so
        they do where the server takes the broker's requests from inside them
        (LocalChannelOpened.channel_invocations), else not. Raises the server's refusal
        (FAILED_PRECONDITION off a unix socket) or the door's failure."""
        self._local_timeout = call_timeout
        self._local_callbacks = callbacks is not False
        self._local_callbacks_asked = callbacks
        self._open_local()
        self._local_wanted = True

    def _open_local(self, unless_open: bool = False) -> None:
        if self._serving.holds_channel:
            return  # a finalizer inside this thread's own use of the channel: that decides
        if unless_open and self._local is not None:
            return  # (its holder may be busy with it for a while: not waited for)
        self._serving.holds_channel = True  # before the lock is taken: nothing in between
        try:
            with self._local_lock:
                self._open_local_held(unless_open)
        finally:
            self._serving.holds_channel = False

    def _open_local_held(self, unless_open: bool) -> None:
        """_open_local, holding the channel's lock."""
        if unless_open and self._local is not None:
            return  # another thread opened it meanwhile
        opened = self.request(open_local_channel=pb.OpenLocalChannel(
            callbacks=self._local_callbacks)).local_channel
        if (self._local_callbacks and self._local_callbacks_asked is None and
                not opened.channel_invocations):
            # An older server: a callback on the channel could not load, look up or
            # define anything. Not asked for, so callbacks stay with the broker (this
            # channel replaces that one, whose token expires unused).
            self._local_callbacks = False
            opened = self.request(open_local_channel=pb.OpenLocalChannel(
                callbacks=False)).local_channel
        self._local = LocalChannel(
            opened, serve=self._serve_on_channel if self._local_callbacks else None)

    def _reopen_local(self) -> None:
        try:
            self._open_local(unless_open=True)
        except Error:
            self._local_wanted = False  # the calls stay on the stream

    @property
    def local_enabled(self) -> bool:
        return self._local is not None

    def _send_locally(self, request):
        """The call through the same-host channel: its answer, or None when it was not sent
        (the channel had ended; the caller sends it through the stream)."""
        def exchange(local, request_id: int, deadline: float):
            request.id = request_id
            return local.exchange(request, deadline,
                                  self.result_bytes.get(request.call.function))

        return self._through_local(request.call.function, request.call.timeout_ms,
                                   exchange, lambda local: local.too_large(request))

    def _send_memory_locally(self, request):
        """A memory or layout request (TOP_LEVEL_OPS) through the same-host channel, where
        the worker takes it: its answer, or None when it was not sent (the caller sends it
        through the stream, as after a loss: only a call opens the next worker's channel)."""
        def exchange(local, request_id: int, deadline: float):
            request.id = request_id
            return local.exchange_nested(request, deadline)

        return self._through_local(0, 0, exchange, lambda local: not local.memory_requests)

    def send_packed(self, packed):
        """A call packed by ffibox._packers (`packed.function`, `packed.exchange(local, id,
        deadline)`) through the same-host channel: what `packed.exchange` makes of the
        worker's answer, a pb.Response carrying the error when the call failed there, or None
        when it was not sent (no channel: the caller sends it as a request)."""
        callback_thread = self._callback_thread
        if not self._local_wanted or (callback_thread is not None and
                                      threading.current_thread() is callback_thread) or \
                self._serving.channel is not None:
            return None
        return self._through_local(packed.function, 0, packed.exchange,
                                   packed.refused_by if packed.places_blocks else None)

    def _through_local(self, function: int, timeout_ms: int, exchange, refused_by=None):
        """Runs `exchange(channel, request id, deadline)` for a call of `function` on the
        same-host channel: its answer, an error response (Response.id the request's) when
        the channel failed during the call, or None when the call was not sent (no channel,
        `refused_by(channel)`, or a handler of another thread's call running: it may be
        waiting for this call, which then goes through the broker; or this thread holds the
        channel already, running a finalizer or a signal handler inside its own exchange)."""
        if self._serving.holds_channel:
            return None
        # Said before the lock is taken: a signal handler that runs in between must not wait
        # for it either (it may be this thread's already).
        self._serving.holds_channel = True
        taken = False
        try:
            taken = self._local_lock.acquire(blocking=False)  # at once, as a rule
            given_up = 0.0 if taken else time.monotonic() + _CHANNEL_WAIT
            while not taken:
                taken = self._local_lock.acquire(timeout=_HANDLER_LOOK)
                if not taken and (self._channel_handlers or time.monotonic() >= given_up):
                    # Through the broker, which queues it behind the channel's call in the
                    # worker: the holder may be a thread a signal handler interrupted, while
                    # the handler waits for what this thread holds (a record's layout check).
                    return None
            local = self._local
            if local is None or (refused_by is not None and refused_by(local)):
                return None
            bound = self.address_functions.get(function)
            if bound is not None and bound != local.generation:
                return None
            with self._lock:
                if self._ended is not None:
                    raise SessionClosed(self._ended, self._ended_code)
                request_id = next(self._ids)
                # Requests through the broker still unanswered run first in the worker, one
                # after another: this call may wait for them there, up to their bounds
                # together.
                queued_behind = (sum(pending.bound for pending in list(self._pending.values()))
                                 if self._pending else 0.0)
            timeout = timeout_ms / 1000.0 if timeout_ms else self._local_timeout
            # Requests through the broker wait behind this call in the worker, and their
            # deadlines there start when it ends (answer deadlines).
            self._channel_call_bound = self._call_bound(timeout)
            try:
                return exchange(local, request_id, time.monotonic() + queued_behind + timeout +
                                _LOCAL_ANSWER_MARGIN)
            except ChannelError as error:  # others (a signal handler's) reach the caller
                failure = error
            finally:
                # In this order: a look in between sees the call's end with its bound.
                self._heard = time.monotonic()
                self._channel_call_bound = 0.0
            # The channel is done with: calls go through the stream until the next worker.
            self._local = None
            closed_by_worker = local.closed_by_worker
            local.close()
        finally:
            if taken:
                self._local_lock.release()
            self._serving.holds_channel = False
        if isinstance(failure, NotSent):
            return None
        response = pb.Response(id=request_id, generation=local.generation)
        what = "call" if function else "request"
        if failure.code != "UNAVAILABLE" or closed_by_worker:
            # Not a loss (a worker that answers wrongly, late or not at all): no channel again.
            self._local_wanted = False
        if failure.code == "UNAVAILABLE" and not closed_by_worker:
            response.error.CopyFrom(self._loss_of(local.generation))
        elif failure.code == "UNAVAILABLE":
            response.error.code = pb.INTERNAL
            response.error.message = ("the worker closed the same-host channel during the %s"
                                      % what)
        elif failure.code == "DEADLINE_EXCEEDED":
            response.error.code = pb.CALL_TIMEOUT
            response.error.message = "the %s on the same-host channel got no answer in time" % (
                what)
        else:
            response.error.code = pb.ErrorCode.Value(failure.code)
            response.error.message = failure.reason
        return response

    @property
    def lost_generation(self) -> int:
        """The latest worker generation known to be gone (0: none): the broker reported it
        lost, or an answer said it died (a crash, a violation, a timeout)."""
        return max(self._lost[0], self._died)

    def _loss_of(self, generation: int):
        """The loss of worker `generation` as the broker reports it (WORKER_LOST); raises
        SessionClosed when the session ended meanwhile, as a request on the stream would."""
        news = _Wake()
        self._loss_waiters.add(news)
        try:
            until = time.monotonic() + _LOSS_REPORT_WAIT
            while self._lost[0] < generation and self._ended is None:
                left = until - time.monotonic()
                if left <= 0:
                    break
                news.wait(left)
        finally:
            self._loss_waiters.discard(news)
        lost_generation, lost_error = self._lost
        if lost_generation == generation and lost_error is not None:
            return lost_error
        if self._ended is not None:  # the session was closed meanwhile: as on the stream
            raise SessionClosed(self._ended, self._ended_code)
        return pb.Error(code=pb.INTERNAL, message="the same-host channel ended and ffiboxd "
                                                  "reported no loss of its worker")

    def post(self, request) -> None:
        """Sends `request` without waiting for its answer."""
        with self._lock:
            if self._ended is not None:
                return
            request.id = next(self._ids)
            if request.HasField("callback_return") and not request.callback_return.error:
                self._posted_returns[request.id] = request.callback_return.invocation
        self._outgoing.put(request)

    def _forsake_after_fork(self, parent: int) -> None:
        """In a child of fork(): ends this copy of the parent's stream without touching what
        is the parent's (its locks may have been held by a thread the child does not have,
        so they are replaced; its channel and rings are left alone)."""
        self._lock = threading.RLock()
        self._local_lock = threading.Lock()
        self._serving.holds_channel = False
        # The largest request the server reads (SessionOpened.max_message_bytes, set once the
        # session is open; 0: unknown): a larger one is answered RESOURCE_EXHAUSTED here, as
        # the broker would answer it, instead of being written (at four times that size gRPC
        # would end the whole stream).
        self.max_request_bytes = 0
        self._loss_waiters = set()
        self._outgoing = queue.SimpleQueue()
        self._invokes = queue.SimpleQueue()
        self._pending = {}
        self._posted_returns = {}
        self._local = None
        self._local_wanted = False
        self._callback_thread = None
        self._ended = ("this ffibox session belongs to process %d, which forked this one: "
                       "sessions do not cross fork(); %s (docs/python.md, \"Processes that "
                       "fork\")" % (parent, fork_advice()))
        self._ended_code = "FAILED_PRECONDITION"

    def close(self) -> None:
        """Sends CloseSession (best effort) and ends the stream."""
        with self._lock:
            ended = self._ended is not None
        if not ended:
            try:
                self.request(close=pb.CloseSession())
            except Error:
                pass
        local = self._local
        self._local_wanted = False
        self._local = None
        if local is not None:
            local.close()
        self._outgoing.put(None)
        self._finish("ffibox session closed")
        with self._lock:
            # Closed here, whether or not the reader saw the stream end first.
            self._ended_code = "FAILED_PRECONDITION"
        if self._callback_thread is not None:
            self._invokes.put(None)

    # -- callbacks -------------------------------------------------------------------------

    def set_handler(self, callback_id: int, handler: InvokeHandler) -> None:
        """Routes invokes of `callback_id` to `handler` (on the thread of the call that made
        them, or the callback thread)."""
        with self._lock:
            self._handlers[callback_id] = handler
            if self._callback_thread is None:
                self._callback_thread = threading.Thread(
                    target=self._callback_loop, name="ffibox-callbacks", daemon=True)
                self._callback_thread.start()

    def remove_handler(self, callback_id: int) -> None:
        """Forgets the handler of a freed callback."""
        with self._lock:
            self._handlers.pop(callback_id, None)

    def current_invocation(self) -> int:
        return self._serving.invocation

    def ensure_callback_room(self) -> None:
        """Raises RecursionError, before anything is sent, when a call made now could not
        answer the invocations its native code may make: in a session with callbacks, fewer
        than ffibox._recursion_room.ROOM frames left below the recursion limit."""
        if self._handlers:
            ensure_room()

    def _callback_loop(self) -> None:
        while True:
            item = self._invokes.get()
            if item is None:
                with self._lock:
                    if self._ended is not None:
                        return
                continue
            self._run_invocation(*item)

    def _run_invocation(self, invoke, generation: int) -> None:
        serving = self._serving
        owing = serving.owing
        serving.owing = owing + (serving.invocation,)
        try:
            self._answer_invocation(invoke, generation)
        finally:
            serving.owing = owing

    def _answer_invocation(self, invoke, generation: int) -> None:
        """Runs the handler of `invoke` (made by worker `generation`) and posts its answer: a
        failure (native code gets zero) when anything raised, ffibox's own work around the
        function included. Unanswered, the invocation would hold native code until the call's
        deadline. The handler runs on this thread, the requests it makes carrying the
        invocation; each nesting of callbacks costs the recursion limit this frame, not
        another one. Nothing runs for an invocation of a worker known lost: no native code
        waits for it, and ffiboxd would refuse its answer."""
        if generation and generation <= self._lost[0]:  # as ffiboxd reported (WORKER_LOST)
            return
        handler = self._handlers.get(invoke.callback)
        serving = self._serving
        outer = serving.invocation
        serving.invocation = invoke.invocation
        try:
            answer = (handler(self, invoke) if handler is not None
                      else _without_function(invoke))
        except BaseException:  # noqa: B902 - around the function: its arguments, its write-back
            answer = failed_callback(handler)
        finally:
            serving.invocation = outer
        answer.invocation = invoke.invocation
        request = pb.Request(callback_return=answer)
        # Its id is set when it is posted: counted at its largest (a tag and ten bytes).
        size = request.ByteSize() + _LARGEST_ID_BYTES
        if self.max_request_bytes and size > self.max_request_bytes:
            # The broker would refuse it and leave the invocation open: native code would wait
            # for the call's deadline. The callback fails instead; native code gets zero now.
            request = pb.Request(callback_return=pb.CallbackReturn(
                invocation=invoke.invocation,
                error="the callback's answer is too large to send: %d bytes exceed the "
                      "limit of %d bytes" % (size, self.max_request_bytes)))
        self.post(request)

    def _answer_refused_return(self, invocation: int, error) -> None:
        """The broker refused the callback_return of `invocation` (a result that does not fit
        the callback's type, ...): it stays open, so native code would wait for the call's
        deadline. Answered again as a failed callback: native code gets zero now, and the
        CALLBACK_ERROR event says why. Not for FAILED_PRECONDITION: the invocation is closed
        (its worker died), or requests the callback started are still running."""
        if error.code == pb.FAILED_PRECONDITION:
            return
        message = "the server refused the callback's answer: %s" % error.message
        sys.stderr.write("ffibox: invocation %d: %s; native code gets zero\n"
                         % (invocation, message))
        self.post(pb.Request(callback_return=pb.CallbackReturn(invocation=invocation,
                                                               error=message)))

    # -- callbacks on the same-host channel -------------------------------------------------

    def _serve_on_channel(self, response, channel: LocalChannel, deadline: float):
        """LocalChannel's `serve`: runs the invocation `response.callback_invoke` that came
        on `channel` during a call of this thread, and returns its pb.CallbackReturn. The
        handler's requests go on the channel (`_send_in_channel_invocation`) until
        `deadline`, the call's. Raises Error for an invocation this client cannot take."""
        invoke = response.callback_invoke
        handler = self._handlers.get(invoke.callback)
        check = getattr(handler, "check", None)
        why = check(invoke) if check is not None else None
        if why is not None:
            raise Error("INTERNAL: the invocation of callback %d %s" % (invoke.callback, why),
                        "INTERNAL")
        serving = self._serving
        outer = (serving.channel, serving.channel_deadline, serving.invocation)
        # From here the worker waits for this thread's frames (the handler's requests inside
        # the invocation, then its callback_return): no request of this thread's is in
        # flight. In this order, so that a finalizer in between finds one or the other: its
        # requests then go inside the invocation, or are refused.
        serving.channel, serving.channel_deadline, serving.invocation = (
            channel, deadline, invoke.invocation)
        busy, channel.in_flight = channel.in_flight, None
        self._channel_handlers += 1
        try:
            return (handler(self, invoke) if handler is not None
                    else _without_function(invoke))
        except BaseException:  # noqa: B902 - around the function: its arguments, its write-back
            return failed_callback(handler)
        finally:
            self._channel_handlers -= 1
            channel.in_flight = busy
            serving.channel, serving.channel_deadline, serving.invocation = outer

    def _send_in_channel_invocation(self, channel: LocalChannel, request):
        """A request made by a handler serving an invocation that came on `channel`: sent
        there, inside the invocation, if it is one the worker takes there; else (a load, a
        look-up, a callback definition, an allocation: the broker's state) through the
        broker, naming the invocation in `channel_invocation`, and the worker's thread that
        waits on the channel runs it."""
        op = request.WhichOneof("op")
        if op in ("ping", "close"):
            return self._send(request, on_callback_thread=False)  # the broker answers them
        if op not in IN_INVOCATION_OPS:
            if channel.lost:
                # No thread of the worker waits for this invocation any more (the call's
                # deadline passed, or it crashed): the loss, as a request on the channel
                # reports it, not the broker's word that no channel is open.
                return pb.Response(id=request.id, generation=channel.generation,
                                   error=self._loss_of(channel.generation))
            if channel.channel_invocations and op in THROUGH_BROKER_OPS:
                request.channel_invocation = self.current_invocation()
                return self._send(request, on_callback_thread=False)
            return _refusal(request, channel.generation, (
                "inside a callback that native code called during a call on the same-host "
                "channel, %s cannot be sent (it would wait for the worker's thread that waits "
                "for this callback)%s; send it before the call, or open the session with "
                "channel_callbacks=False" % (
                    op, "" if channel.channel_invocations else
                    ": this server takes only calls of functions already resolved, memory "
                    "reads and writes and layout checks there")))
        with self._lock:
            if self._ended is not None:
                raise SessionClosed(self._ended, self._ended_code)
            request.id = next(self._ids)
        request.invocation = self.current_invocation()
        try:
            return channel.exchange_nested(request, self._serving.channel_deadline,
                                           self.result_bytes.get(request.call.function))
        except ChannelError as error:
            if error.code == "UNAVAILABLE" and not channel.closed_by_worker:
                # The worker died (in this request, or in a thread of the library's): as on
                # the stream, the loss the broker reports (WORKER_CRASHED, ...).
                return pb.Response(id=request.id, generation=channel.generation,
                                   error=self._loss_of(channel.generation))
            return pb.Response(id=request.id, generation=channel.generation, error=pb.Error(
                code=pb.ErrorCode.Value(error.code) if error.code in pb.ErrorCode.keys()
                else pb.INTERNAL, message=error.reason))

    # -- reading ---------------------------------------------------------------------------

    def _read_loop(self) -> None:
        reason = "ffiboxd ended the session stream"
        code = "UNAVAILABLE"
        try:
            for response in self._responses:
                self._heard = time.monotonic()
                if response.generation:
                    self.generation = response.generation
                    if response.HasField("error") and response.error.code in _WORKER_DEATHS:
                        self._died = max(self._died, response.generation)
                if response.id == 0:
                    if response.HasField("callback_invoke"):
                        invoke = response.callback_invoke
                        caller = (self._pending.get(invoke.request_id)
                                  if invoke.request_id else None)
                        if caller is not None and caller.runs_invokes:
                            caller.invokes.append((invoke, response.generation))
                            caller.wake_up()
                        else:
                            self._invokes.put((invoke, response.generation))
                    elif response.HasField("event"):
                        event = response.event
                        if event.kind == pb.SessionEvent.WORKER_OUTPUT:
                            self._deliver_output(event)
                            continue
                        if event.kind == pb.SessionEvent.WORKER_LOST:
                            if response.generation >= self._lost[0]:
                                self._lost = (response.generation, event.error)
                            self._wake_loss_waiters()
                        if event.kind == pb.SessionEvent.LIMIT_REACHED:
                            # Before the reply of the call during which it bit.
                            sys.stderr.write("ffibox: the library hit a limit of its worker: "
                                             "%s\n" % event.error.message)
                        self.events.append(event)
                        if len(self.events) > KEPT_EVENTS:
                            del self.events[0]
                    continue
                # Without the lock (a dict's get and pop are atomic): a signal handler may
                # hold it, running on the thread whose request it interrupted between two of
                # its steps, while its own call waits for this thread's delivery.
                pending = self._pending.pop(response.id, None)
                refused = self._posted_returns.pop(response.id, None)
                if pending is not None:
                    pending.answer(response)
                elif refused is not None and response.HasField("error"):
                    self._answer_refused_return(refused, response.error)
        except Exception as error:  # grpc.RpcError and friends: the stream is gone
            reason = "ffibox session stream broke: %s" % (getattr(error, "details", None)
                                                          and error.details() or error)
            code = _stream_error_code(error)
        self._finish(reason, code)

    def _deliver_output(self, event) -> None:
        stream = "stdout" if event.stream == pb.STDOUT else "stderr"
        self._output_handler_since = time.monotonic()
        try:
            self.on_output(stream, event.output)
        except Exception:  # a broken output handler must not end the session
            pass
        finally:
            self._output_handler_since = None

    def _finish(self, reason: str, code: str = "FAILED_PRECONDITION") -> None:
        with self._lock:
            if self._ended is None:
                self._ended = reason
                self._ended_code = code
            orphans, self._pending = self._pending, {}
            self._posted_returns.clear()
        for pending in list(orphans.values()):
            pending.answer(None)
        # A call waiting on the same-host channel ends too (the channel cannot see ffiboxd
        # die, and its worker dies with it): closed, it fails within one sleep, and the call
        # reports the session's end, as one on the stream does.
        local = self._local
        if local is not None:
            local.close()
        self._wake_loss_waiters()

    def _wake_loss_waiters(self) -> None:
        for news in list(self._loss_waiters):
            news.set()
