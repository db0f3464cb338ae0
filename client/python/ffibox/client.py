"""Explicit control: `connect()` to a server, `Client.session()` for a worker of your own.

    import ffibox
    with ffibox.connect().session(timeout=5) as session:
        libm = session.CDLL("libm.so.6")
"""
import collections
import ctypes as _ct
import fnmatch
import os
import threading
import weakref
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import grpc

from ffibox import _default, _marshal, _remote, _server, _settings, _types
from ffibox._answer_shape import result_answer_bytes
from ffibox._channel import (KEEPALIVE, KEEPALIVE_TIMEOUT, ChannelSettings, fork_advice,
                             make_channel)
from ffibox._deferred_calls import DeferredCalls
from ffibox._functions import RemoteCall, callback_buffer_bytes, callback_handler
from ffibox._images import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_IMAGES, ImageTable
from ffibox._layout_check import LayoutCheck
from ffibox._library import CDLL as _CDLL
from ffibox._library import LibraryLoader
from ffibox._memory import WorkerMemory
from ffibox._py_objects import PyObjects
from ffibox import _local_channel
from ffibox._stream import DEFAULT_ANSWER_MARGIN, SessionStream
from ffibox._stubs import pb
from ffibox._twins import TwinTable
from ffibox._unix_server_check import check_unix_server
from ffibox._worker_address import WorkerAddress
from ffibox.errors import Error, UntrustedServer, error_from_proto


def _listening(channel, timeout: float) -> bool:
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        return True
    except grpc.FutureTimeoutError:
        return False


def forwarded_environment() -> Dict[str, str]:
    """The variables of this process named by FFIBOX_ENV (comma-separated names or globs,
    e.g. "SDL_*,LANG"): what sessions forward to their workers by default. The server
    accepts only the names its jail.env_allow lists."""
    patterns = [p.strip() for p in os.environ.get("FFIBOX_ENV", "").split(",") if p.strip()]
    return {name: value for name, value in os.environ.items()
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)}


def connect(address: Optional[str] = None, timeout: float = 2.0,
            env: Optional[Dict[str, str]] = None, *, token: Optional[str] = None,
            tls: Optional[bool] = None, root_certificates: Union[bytes, str, None] = None,
            certificate_chain: Union[bytes, str, None] = None,
            private_key: Union[bytes, str, None] = None, server_name: Optional[str] = None,
            load_balancing: str = "round_robin", health_check: bool = True,
            keepalive: float = KEEPALIVE, keepalive_timeout: float = KEEPALIVE_TIMEOUT
            ) -> "Client":
    """A client of the ffiboxd at `address`: `unix:/path`, or a gRPC target naming one or
    several servers over TCP (`host:port`, `ipv4:10.0.0.1:7000,10.0.0.2:7000`,
    `dns:///ffibox.example:7000`).

    Without an address: FFIBOX_ADDRESS, else the default socket; if nothing listens on that
    unix socket, a private ffiboxd is started on an owner-only socket and stopped when this
    process ends (also when it is killed). Any other target in FFIBOX_ADDRESS (TCP, an
    abstract socket) is used as if given here: nothing replaces it when it does not answer.
    `env`: environment variables for the workers of its sessions (default: the variables
    FFIBOX_ENV names). Raises ffibox.Error when an explicit address does not answer within
    `timeout` seconds,
    and UntrustedServer, before sending anything, when a unix socket (explicit or default),
    its directory or the process listening on it belongs to another user than you or root.

    Over TCP: `token` is sent as `authorization: Bearer <token>` on every session; TLS is on
    (`tls=None`; `tls=False` only for a plaintext test server, and never with a `token`:
    ValueError) with `root_certificates`
    (PEM; default: the system's CAs), an optional client certificate (`certificate_chain`
    and `private_key`, PEM) and `server_name` to check in the servers' certificates instead
    of the target's host. Sessions are spread over the target's servers by
    `load_balancing` ("round_robin", or "pick_first"), and with `health_check` only servers
    whose grpc.health.v1 status is SERVING get new ones; a session stays on its server.

    While a session is open the client pings the server every `keepalive` seconds and ends
    the connection when a ping is not acknowledged within `keepalive_timeout`: a server that
    stopped answering (its host gone, its process stopped) fails the requests in flight
    with ffibox.Error UNAVAILABLE instead of leaving them waiting forever.
    """
    settings = ChannelSettings(
        tls=tls, root_certificates=root_certificates, certificate_chain=certificate_chain,
        private_key=private_key, server_name=server_name, token=token,
        load_balancing=load_balancing, health_check=health_check, keepalive=keepalive,
        keepalive_timeout=keepalive_timeout)
    named = "" if address is not None else " (FFIBOX_ADDRESS)"
    if address is None and not _server.default_address().startswith("unix:"):
        # Any other target than a socket path (TCP, an abstract socket) names a server the
        # user chose: it is used as given, never replaced by a private server on this host.
        address = _server.default_address()
    if address is not None:
        check_unix_server(address, timeout)
        channel = make_channel(address, settings)
        if not _listening(channel, timeout):
            channel.close()
            raise Error("UNAVAILABLE: no ffiboxd answers at %s%s" % (address, named),
                        "UNAVAILABLE")
        return Client(address, channel, env=env)
    address = _server.default_address()  # a unix socket
    try:
        check_unix_server(address, 0)
    except UntrustedServer:
        raise
    except Error as error:
        if error.code == "INVALID_ARGUMENT":
            source = "FFIBOX_ADDRESS" if os.environ.get("FFIBOX_ADDRESS") else "XDG_RUNTIME_DIR"
            raise Error("%s (from %s)" % (error, source), error.code) from None
        # nothing listens there: start a private server
    else:
        channel = make_channel(address, settings)
        if _listening(channel, timeout):
            return Client(address, channel, env=env)
        channel.close()
    private = _server.private_server()
    check_unix_server(private.address, timeout)
    return Client(private.address, make_channel(private.address, settings), private,
                  env=env)


class Client:
    """A connection to ffiboxd (one, or several behind a load-balanced target); makes
    sessions, each on one server."""

    def __init__(self, address: str, channel, private_server=None,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.address = address
        self._channel = channel
        self._private_server = private_server
        if private_server is not None:
            private_server.clients.add(self)
        # Whether this client started the server it talks to (it serves this process only).
        self.private = private_server is not None
        self._pid = os.getpid()  # a forked child's copy is its parent's
        # Environment variables every session of this client asks for its workers.
        self.env = dict(env) if env is not None else forwarded_environment()

    def session(self, timeout: Optional[float] = None, memory_limit: Optional[int] = None,
                restart: bool = True,
                require_jail: Optional[Iterable[str]] = None,
                env: Optional[Dict[str, str]] = None,
                scratch_directory: Optional[bool] = None,
                idle_cpu_percent: int = 0, same_host: Optional[bool] = None,
                channel_callbacks: Optional[bool] = None,
                answer_margin: float = DEFAULT_ANSWER_MARGIN) -> "Session":
        """A new session (its own worker). `timeout`: default per-call deadline in seconds
        (default: $FFIBOX_TIMEOUT, else the server's);
        `memory_limit`: bytes, when the server's protocol has a memory limit; `restart`:
        replace a dead worker on the next call (else the session is unusable after a crash);
        `require_jail`: jail layers the session's workers must have ("user", "pid", "net",
        "ipc", "uts", "mount", "filesystem", "proc", "cgroup", "seccomp", "no_new_privs",
        "rlimits", or "all"), else ffibox.Error JAIL_UNAVAILABLE; a name that is no layer is a
        ValueError (default: $FFIBOX_REQUIRE_JAIL, comma-separated, or none);
        `env`: environment variables for the session's workers (default: the client's);
        `scratch_directory`: ask for a writable directory the library sees at the path in
        `Session.scratch_directory` (removed with the session; default: $FFIBOX_SCRATCH is 1);
        `idle_cpu_percent`: the CPU share (1..100 % of one CPU) the worker keeps while no
        call is in flight, for libraries with background threads (default: the server's);
        `same_host`: send calls, and reads and writes of worker memory, to the worker over a
        same-host shared-memory channel instead of gRPC (unix-socket addresses only, else ffibox.Error FAILED_PRECONDITION; default:
        on a unix socket when $FFIBOX_SAME_HOST is 1, and on the client's private server
        unless $FFIBOX_SAME_HOST is 0 or `idle_cpu_percent` is given);
        `channel_callbacks`: with the same-host channel, callbacks that native code calls
        during a call on it come on it too and run on the calling thread, as in-process
        ctypes runs them, at a fraction of their cost through the broker (what the channel
        does not carry, a library loaded, a function looked up or a callback made inside a
        callback, goes through the broker); False: they come through the broker and run on
        the session's callback thread (default: on, unless $FFIBOX_CHANNEL_CALLBACKS is 0;
        off with a server too old to take the broker's requests from inside them);
        `answer_margin`: how many seconds longer than its deadline in the worker (the call's,
        else `timeout`) an answer may take; when the server sends nothing for that long while
        requests wait, it is taken for gone and they raise SessionClosed DEADLINE_EXCEEDED
        (docs/python.md, "Which server").
        """
        if os.getpid() != self._pid:
            raise Error("FAILED_PRECONDITION: this client belongs to process %d, which forked "
                        "this one; %s" % (self._pid, fork_advice()), "FAILED_PRECONDITION")
        return Session(self, timeout=timeout, memory_limit=memory_limit, restart=restart,
                       require_jail=require_jail, env=env, scratch_directory=scratch_directory,
                       idle_cpu_percent=idle_cpu_percent, same_host=same_host,
                       channel_callbacks=channel_callbacks, answer_margin=answer_margin)

    def close(self) -> None:
        """Closes the channel (sessions made from it end); in a forked child, whose copy of
        the channel is its parent's, nothing."""
        if os.getpid() == self._pid:
            self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class Session:
    """One session stream: one worker, the libraries loaded in it, callbacks defined on it."""

    def __init__(self, client: Client, timeout: Optional[float] = None,
                 memory_limit: Optional[int] = None, restart: bool = True,
                 require_jail: Optional[Iterable[str]] = None,
                 env: Optional[Dict[str, str]] = None,
                 scratch_directory: Optional[bool] = None, idle_cpu_percent: int = 0,
                 same_host: Optional[bool] = None,
                 channel_callbacks: Optional[bool] = None,
                 answer_margin: float = DEFAULT_ANSWER_MARGIN) -> None:
        if isinstance(answer_margin, bool) or not isinstance(answer_margin, (int, float)) or \
                not 0 < answer_margin < float("inf"):
            raise ValueError("answer_margin must be a positive number of seconds, not %r"
                             % (answer_margin,))
        if env is None:
            env = client.env
        # Read before the session opens: a value that means nothing fails here, leaving
        # nothing open.
        if scratch_directory is None:
            scratch_directory = bool(_settings.flag("FFIBOX_SCRATCH"))
        if timeout is None:
            timeout = _settings.seconds("FFIBOX_TIMEOUT")
        if memory_limit is None:
            memory_limit = _settings.memory_limit()
        same_host_setting = _settings.flag("FFIBOX_SAME_HOST")
        require_jail = _settings.required_jail_layers(require_jail)
        if channel_callbacks is None:
            # None: on where the server takes what such a callback may ask of the broker.
            channel_callbacks = _settings.flag("FFIBOX_CHANNEL_CALLBACKS")
        max_images = _settings.count("FFIBOX_MAX_IMAGES", DEFAULT_MAX_IMAGES)
        max_image_bytes = _settings.count("FFIBOX_MAX_IMAGE_BYTES", DEFAULT_MAX_IMAGE_BYTES)
        open_request = pb.OpenSession(
            call_timeout_ms=_settings.milliseconds(timeout, "timeout"),
            restart=pb.RESTART if restart else pb.NO_RESTART,
            memory_limit_bytes=memory_limit or 0, environment=env or {},
            scratch_directory=scratch_directory, idle_cpu_percent=idle_cpu_percent)
        self.client = client
        # id(pb.Request) -> (the request, its CallBuilder) of calls in flight that keep blocks
        self._calls_in_flight: Dict[int, tuple] = {}
        self.stream = SessionStream(client._channel, answer_margin=float(answer_margin))
        self.stream.session = self
        opened = self.stream.request(open=open_request).opened
        self.stream.max_request_bytes = opened.max_message_bytes
        self.session_id = opened.session_id
        # Its memory cap in bytes (its worker's address space; 0: none).
        self.memory_limit = opened.memory_limit_bytes
        # A writable directory shared with the library (same path here and in the worker),
        # or None.
        self.scratch_directory: Optional[str] = opened.scratch_directory or None
        # With the cgroup layer: the threads and processes the worker may have, and its CPU
        # share while idle (0 / 0 without it).
        self.worker_pids_max = opened.worker_pids_max
        self.idle_cpu_percent = opened.idle_cpu_percent
        self.call_timeout_ms = opened.call_timeout_ms
        self.stream.call_timeout = opened.call_timeout_ms / 1000.0
        # Whether the server sets a union through any member (an older one: the first only).
        self.union_members = opened.union_members
        # The jail layers every worker of this session gets, and those the server's operator
        # waived (with the reason).
        self.jail_layers = list(opened.jail_layers)
        self.waived_jail_layers = list(opened.waived_jail_layers)
        missing = [layer for layer in require_jail if layer not in self.jail_layers]
        if missing:
            self.stream.close()
            raise Error("JAIL_UNAVAILABLE: the server at %s does not give this session's "
                        "workers the jail layers %s (it gives: %s%s)"
                        % (client.address, ", ".join(missing),
                           ", ".join(self.jail_layers) or "none",
                           "; waived: " + "; ".join(self.waived_jail_layers)
                           if self.waived_jail_layers else ""), "JAIL_UNAVAILABLE")
        explicit = same_host is not None or same_host_setting is True
        if same_host is None:
            # Where it can be had (a unix socket is on this host): asked for with
            # $FFIBOX_SAME_HOST=1, and by default on the client's own private server, which
            # serves this process alone (a worker keeps no idle CPU throttle while its channel
            # is open), unless the session asked for a throttle of its own.
            same_host = ((same_host_setting is True or
                          (same_host_setting is None and client.private and
                           not idle_cpu_percent)) and
                         client.address.startswith("unix:") and _local_channel.available())
        elif same_host and not _local_channel.available():
            self.stream.close()
            raise Error("UNIMPLEMENTED: the same-host channel needs x86-64 Linux here",
                        "UNIMPLEMENTED")
        if same_host:
            try:
                self.stream.enable_local(opened.call_timeout_ms / 1000.0, channel_callbacks)
            except Error:
                # Asked for, it fails the session; by default, calls stay on the stream.
                if explicit:
                    self.stream.close()
                    raise
        # ctypes' layouts of the types calls use, checked against the worker's.
        self.layouts = LayoutCheck(self.stream)
        # The worker's memory, by request.
        self.memory = WorkerMemory(
            self.stream, lambda t, value: _marshal.encode(t, value, None, self))
        # One worker address per caller object calls reach, for the object's life.
        self.twins = TwinTable(lambda: self.generation)
        self.twins.handed = self._handed_by
        # Calls finalizers made where they could not run at once, run later on a thread.
        self.deferred_calls = DeferredCalls()
        # Local images of worker memory the library handed back through typed pointers.
        self.images = ImageTable(self.memory, self.twins, max_images, session=self,
                                 max_image_bytes=max_image_bytes)
        # Whether the server takes read_memory_list (an older one: a read at a time).
        self.memory.lists = opened.memory_lists
        # A number the caller made up goes as generation 0 where the server takes it.
        self._unchecked_addresses = opened.unchecked_addresses
        self.memory.before_read = self.images.sync
        self.memory.after_write = self.images.refresh
        # Tokens the worker holds for the Python objects calls pass as py_object.
        self.py_objects = PyObjects()
        # id(CFUNCTYPE instance) -> (weak reference to it, callback id)
        self._callbacks: Dict[int, tuple] = {}
        # The worker's closure of each callback id: (address, generation) as its
        # define_callback answered (a worker that restarted since has others).
        self._closures: Dict[int, Tuple[int, int]] = {}
        # Whether a twin a callback handed the library was past the watch budget (said once).
        self.warned_of_unwatched = False
        # And back: each closure -> id() of its CFUNCTYPE instance (a key of _callbacks).
        self._closure_owners: Dict[Tuple[int, int], int] = {}
        # Re-entrant: a collection while it is held (making a handler allocates) may run
        # _release_callback of another callback on the same thread.
        self._callbacks_lock = threading.RLock()
        self._functions_at: Dict[tuple, RemoteCall] = {}
        self._named_functions: Dict[tuple, RemoteCall] = {}  # named_function's
        # Worker addresses the library handed back as integers (c_void_p results: handles),
        # with the generation of the worker that handed each: passed back after a restart,
        # one of an earlier worker is refused as stale, not read in the new one.
        self._handed: "collections.OrderedDict[int, int]" = collections.OrderedDict()
        self._handed_lock = threading.RLock()  # re-entrant: see ffibox._addresses._lock
        self.cdll = LibraryLoader(_CDLL, lambda: self)

    _HANDED_KEPT = 4096
    # What may be an address of a worker's memory (x86-64 user space above the lowest page a
    # mapping may take): sentinels such as (void*)1 or (void*)-1 are values, not addresses.
    _ADDRESSES = range(1 << 16, 1 << 47)

    def remember_handed(self, address: int, generation: int) -> None:
        """Notes that worker `generation` handed `address` back as an integer."""
        if address not in self._ADDRESSES:
            return
        with self._handed_lock:
            self._handed[address] = generation
            self._handed.move_to_end(address)
            while len(self._handed) > self._HANDED_KEPT:
                self._handed.popitem(last=False)

    def _handed_by(self, address: int) -> Optional[int]:
        """The generation of the worker that handed `address` back as an integer, else
        None."""
        with self._handed_lock:
            return self._handed.get(address)

    def integer_generation(self, address: int) -> int:
        """The generation to send an integer the caller passes as a pointer with: that of
        the worker that handed it back, else 0 (no worker handed it out: the protocol's mark
        of a number the library judges in whichever worker runs the call; the session's
        current generation would be the dead worker's right after a crash)."""
        with self._handed_lock:
            return self._handed.get(address,
                                    0 if self._unchecked_addresses else self.generation)

    def handed_generation(self, address: int) -> int:
        """The generation of the worker that handed `address` back as an integer, else the
        current one (an integer the caller made up is the current worker's to judge)."""
        with self._handed_lock:
            return self._handed.get(address, self.generation)

    @property
    def max_images(self) -> int:
        """How many objects of a pointer graph the library hands back one operation follows
        (local images; default 4096 or FFIBOX_MAX_IMAGES); past it the operation raises
        ffibox.Error RESOURCE_EXHAUSTED."""
        return self.images.max_images

    @max_images.setter
    def max_images(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError("max_images must be at least 1")
        self.images.max_images = int(value)

    @property
    def max_image_bytes(self) -> int:
        """How many bytes of local images (strings, records, arrays) of what the library
        hands back one operation makes (default 256 MiB or FFIBOX_MAX_IMAGE_BYTES), each
        image counted, also where it overlaps another; past it the operation raises
        ffibox.Error RESOURCE_EXHAUSTED, having read no further."""
        return self.images.max_image_bytes

    @max_image_bytes.setter
    def max_image_bytes(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError("max_image_bytes must be at least 1")
        self.images.max_image_bytes = int(value)

    @property
    def generation(self) -> int:
        """The worker generation that answered last (addresses of older ones are stale)."""
        return self.stream.generation

    def load_library(self, path: str, global_symbols: bool = False) -> int:
        """dlopens `path` in the worker (if the server allows it: else LibraryNotAllowed),
        with RTLD_GLOBAL when `global_symbols`; the library's handle."""
        self.stream.ensure_callback_room()  # its constructors may call callbacks
        return self.stream.request(load_library=pb.LoadLibrary(
            path=path, **{"global": global_symbols})).library.library

    def resolve(self, request: pb.ResolveFunction) -> int:
        """The function handle for `request` (a symbol of a library, or a worker address,
        with its signature)."""
        function = self.stream.request(resolve_function=request).function.function
        self.stream.result_bytes[function] = result_answer_bytes(request.signature)
        return function

    def call(self, call: pb.Call, blocks=None, request: Optional[pb.Request] = None
             ) -> pb.Response:
        """Runs `call` in the worker: its whole response (result, blocks, errno, generation);
        a failed call raises its typed Error. `blocks`: the ffibox._blocks.CallBuilder that
        built the call's blocks, told where the worker placed the ones it keeps as soon as
        the call's first invocation says (CallbackInvoke.kept). `request`: the Request whose
        `call` is `call` (it is not copied into a new one)."""
        if request is None:
            request = pb.Request(call=call)
        if blocks is None:
            response = self.stream.send(request)
            if response.HasField("error"):
                raise error_from_proto(response.error, pb)
            return response
        key = id(request)
        self._calls_in_flight[key] = (request, blocks)
        try:
            response = self.stream.send(request)
        finally:
            del self._calls_in_flight[key]
        if response.HasField("error"):
            raise error_from_proto(response.error, pb)
        return response

    def kept_in_flight(self, invoke) -> None:
        """Tells the call in flight that made invocation `invoke` where the worker placed
        its kept blocks (`invoke.kept`), when the call is this session's and built here."""
        if not invoke.request_id:
            return
        for request, blocks in list(self._calls_in_flight.values()):
            if request.id == invoke.request_id:
                blocks.kept_early(invoke.kept, self.generation)
                return

    def batch(self, calls: Iterable[pb.Call], timeout: Optional[float] = None) -> pb.Response:
        """Runs `calls` in the worker in order, as one request: its whole response, whose
        `batch.results` holds one CallResult per call. `timeout` (seconds) is the deadline of
        the whole batch; None: the sum of its calls' deadlines, capped by the server.

        The first call that fails stops the batch: its typed Error is raised with
        `batch_index` (its index in `calls`) and `results` (the CallResults of the calls
        before it, which ran). A batch the server refuses (a malformed call, too many calls
        or block bytes) raises with `results` empty: no call ran. A crash or deadline in the
        middle raises as for a single call, with `batch_index` None."""
        request = pb.Batch(calls=calls, timeout_ms=_settings.milliseconds(timeout, "timeout"))
        self.stream.ensure_callback_room()
        response = self.stream.send(pb.Request(batch=request))
        if response.HasField("error"):
            error = error_from_proto(response.error, pb)
            error.results = list(response.batch.results)
            raise error
        return response

    def lookup(self, library: int, symbol: str) -> WorkerAddress:
        """The worker address of `symbol` in library handle `library` (SymbolNotFound when
        it has none)."""
        found = self.stream.request(lookup_symbol=pb.LookupSymbol(
            library=library, symbol=symbol)).symbol.address
        return WorkerAddress(self, found.address, found.generation)

    def CDLL(self, name: Optional[str], mode: int = 0, handle: Optional[int] = None,
             use_errno: bool = False, use_last_error: bool = False) -> _CDLL:
        """ctypes.CDLL in this session's worker."""
        return _CDLL(name, mode, handle, use_errno, use_last_error, session=self)

    LoadLibrary = CDLL

    def expect_layout(self, t, size: int, alignment: int, bit_offsets: Dict[str, int]) -> None:
        """Checks that record type `t` has the layout its C header gives it (size and
        alignment in bytes, each field's offset in bits by name, as `ffibox bindgen` records
        clang's) in ctypes and in this session's worker; TypeError naming the differences
        otherwise. Once per type."""
        self.layouts.expect(t, size, alignment, bit_offsets)

    def expect_layouts(self, layouts: Iterable[tuple]) -> None:
        """expect_layout for each (type, size, alignment, bit_offsets) of `layouts`; one
        TypeError naming every record that differs."""
        problems = []
        for t, size, alignment, bit_offsets in layouts:
            try:
                self.layouts.expect(t, size, alignment, bit_offsets)
            except TypeError as error:
                problems.append(str(error))
        if problems:
            raise TypeError("\n".join(problems))

    def close(self) -> None:
        """Ends the session; its worker is killed."""
        self.stream.close()
        self.deferred_calls.close()
        self.py_objects.clear()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- worker memory (Session.memory; these are its operations under the Session) ------

    def read(self, address: int, size: int, generation: Optional[int] = None) -> bytes:
        """`size` bytes of worker memory (MemoryFault for a bad address)."""
        return self.memory.read(address, size, generation)

    def write(self, address: int, data: bytes, generation: Optional[int] = None) -> None:
        """Writes `data` into worker memory."""
        self.memory.write(address, data, generation)

    def write_typed(self, address: int, t, value: Any, generation: Optional[int] = None):
        """Stores `value` as a `t` at a worker address."""
        self.memory.write_typed(address, t, value, generation)

    def read_string(self, address: int, wide: bool = False,
                    generation: Optional[int] = None, length: int = 0):
        """The NUL-terminated (w)char string at a worker address (bytes or str)."""
        return self.memory.read_string(address, wide, generation, length)

    def fill(self, address: int, byte: int, size: int, generation: Optional[int] = None):
        self.memory.fill(address, byte, size, generation)

    def copy(self, destination: int, source: int, size: int,
             generation: Optional[int] = None) -> None:
        self.memory.copy(destination, source, size, generation)

    # -- callbacks and function pointers ----------------------------------------------------

    def callback_id(self, callback) -> int:
        """The session's callback id for a CFUNCTYPE instance (defined on first use). As with
        ctypes, the caller keeps the instance alive while native code may call it; once it
        is collected, the callback is freed in the worker too."""
        known = self._known_callback(callback)
        if known is not None:
            return known
        # Defined without the lock held: a collected callback's finalizer takes it, on
        # whatever thread the collection ran, gRPC's own thread that writes this session's
        # requests among them; waiting for an answer with the lock held would wait for that
        # thread, which waits for the lock.
        prototype = type(callback)
        for t in prototype._argtypes_ + ((prototype._restype_,)
                                         if prototype._restype_ is not None else ()):
            self.layouts.check(t)
        signature = _types.signature(prototype._restype_, prototype._argtypes_)
        # What follows a pointee comes with each invoke, to fill the local buffer that backs
        # a pointer argument (ffibox._scratch_buffers.ScratchBuffers).
        defined = self.stream.request(define_callback=pb.DefineCallback(
            signature=signature,
            buffer_bytes=callback_buffer_bytes(prototype._argtypes_))).callback
        with self._callbacks_lock:
            known = self._callback_entry(callback)
            if known is None:
                self.stream.set_handler(defined.callback,
                                        callback_handler(prototype, _FunctionWhileAlive(callback)))
                self._callbacks[id(callback)] = (weakref.ref(callback), defined.callback)
                self._set_closure(defined.callback, id(callback),
                                  (defined.address.address, defined.address.generation))
                weakref.finalize(callback, self._release_callback, id(callback),
                                 defined.callback)
                return defined.callback
        # Another thread defined it meanwhile: this definition is not needed.
        self.stream.post(pb.Request(free_callback=pb.FreeCallback(callback=defined.callback)))
        return known

    def closure_is(self, callback, address: int, generation: int) -> bool:
        """Whether worker `address` of `generation` is the closure the worker made for
        CFUNCTYPE instance `callback` (defined on this session). Known from the definition's
        answer in its generation; in a later one (a restarted worker, the callback replayed
        at another address) the first address asked about is taken for it, and kept."""
        with self._callbacks_lock:
            known = self._callback_entry(callback)
            closure = None if known is None else self._closures.get(known)
            if closure is None:
                return False
            if closure[1] < generation:
                closure = (address, generation)
                self._set_closure(known, id(callback), closure)
            return closure == (address, generation)

    def closure_address(self, callback) -> Optional[int]:
        """The worker address of the closure of CFUNCTYPE instance `callback` (defined on
        first use) in the current worker, or None where it is not known (the worker was
        replaced since, and has not told it)."""
        known = self.callback_id(callback)
        with self._callbacks_lock:
            closure = self._closures.get(known)
        return closure[0] if closure is not None and closure[1] == self.generation else None

    def local_function_at(self, address: int, generation: int) -> Optional[int]:
        """The address of this process's CFUNCTYPE instance whose worker closure is `address`
        of `generation` (a callback the library was handed as a plain pointer, and hands
        back), else None."""
        with self._callbacks_lock:
            entry = self._callbacks.get(self._closure_owners.get((address, generation), 0))
            callback = entry[0]() if entry is not None else None
        return None if callback is None else _ct.cast(callback, _ct.c_void_p).value

    def _set_closure(self, callback: int, key: int, closure: Tuple[int, int]) -> None:
        # With _callbacks_lock held.
        self._drop_closure(callback)
        self._closures[callback] = closure
        self._closure_owners[closure] = key

    def _drop_closure(self, callback: int) -> None:
        # With _callbacks_lock held.
        closure = self._closures.pop(callback, None)
        if closure is not None:
            self._closure_owners.pop(closure, None)

    def _known_callback(self, callback) -> Optional[int]:
        with self._callbacks_lock:
            return self._callback_entry(callback)

    def _callback_entry(self, callback) -> Optional[int]:
        # With _callbacks_lock held.
        entry = self._callbacks.get(id(callback))
        if entry is not None and entry[0]() is callback:
            return entry[1]
        return None

    def _release_callback(self, key: int, callback: int) -> None:
        # Runs when the CFUNCTYPE instance is collected (any thread, maybe inside the
        # garbage collector, maybe gRPC's thread that writes the requests, maybe a thread
        # that holds the table's lock, which is re-entrant for that): forget it and free it
        # in the worker without waiting for anything but that lock, which nobody holds while
        # waiting.
        with self._callbacks_lock:
            entry = self._callbacks.get(key)
            if entry is not None and entry[1] == callback:
                del self._callbacks[key]
            self._drop_closure(callback)
        self.stream.remove_handler(callback)
        self.stream.post(pb.Request(free_callback=pb.FreeCallback(callback=callback)))

    def function_at(self, address: int, generation: int, name: Optional[str] = None,
                    use_errno: bool = False) -> RemoteCall:
        """A caller for the function pointer at a worker address (`name` in messages, else
        the address; `use_errno` as in ctypes)."""
        key = (address, generation, name, use_errno)
        call = self._functions_at.get(key)
        if call is None:
            call = RemoteCall(self, name or "0x%x" % address,
                              address=WorkerAddress(self, address, generation),
                              use_errno=use_errno)
            self._functions_at[key] = call
        return call

    def named_function(self, library: int, name: str, use_errno: bool = False) -> RemoteCall:
        """A caller for function `name` of library handle `library`, resolved by name (it
        survives worker restarts, as the library's handle does)."""
        key = (library, name, use_errno)
        call = self._named_functions.get(key)
        if call is None:
            call = RemoteCall(self, name, library, use_errno=use_errno)
            self._named_functions[key] = call
        return call

    def remote_function(self, prototype, address: int, generation: int):
        """An instance of CFUNCTYPE `prototype` for a worker function pointer (None: NULL)."""
        return _remote.function_pointer(prototype, WorkerAddress(self, address, generation))


class _FunctionWhileAlive:
    """What CFUNCTYPE instance `callback` wraps, reached through a weak reference: the
    session's handler table does not keep the function, nor so the object holding the
    instance (`self._hook = PROTOTYPE(self._method)`, as unicorn's `Uc` does), which ctypes
    lets the collector free and whose finalizer frees the callback in the worker."""

    __slots__ = ("_callback",)

    def __init__(self, callback) -> None:
        self._callback = weakref.ref(callback)

    def __repr__(self) -> str:  # what a callback's errors name: the function, as in ctypes
        callback = self._callback()
        return repr(None if callback is None else callback._ffibox_callable)

    def get(self):
        """The function; RuntimeError once the instance was collected."""
        callback = self._callback()
        if callback is None:
            raise RuntimeError("ffibox: the callback was called after it was collected")
        return callback._ffibox_callable


# `from ffibox import ctypes` and plain integer addresses use a session of their own.
_default.set_opener(lambda: connect().session())
