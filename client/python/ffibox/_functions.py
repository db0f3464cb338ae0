"""Foreign functions (CDLL attributes), CFUNCTYPE prototypes and callbacks, run remotely."""
import ctypes as _ct
import gc
import signal
import struct
import sys
import threading
import warnings
from types import BuiltinFunctionType
from typing import Dict, Optional

from ffibox import (_addresses, _callback_code, _callback_pointers, _default, _images,
                    _marshal, _packers, _scratch_buffers, _twins, _types)
from ffibox._blocks import CallBuilder, remote_value
from ffibox._remote import RemotePointer
from ffibox._stream import failed_callback
from ffibox._stubs import pb
from ffibox._worker_address import ATTRIBUTE, WorkerAddress, address_of, set_address
from ffibox.errors import Error, SessionClosed, StaleHandle, WorkerCrashed, error_from_proto

_WORD = struct.Struct("<Q")
# What a Request adds around its Call: the id, the call field's tag and length, and more.
_REQUEST_FRAMING_BYTES = 64
_errno = threading.local()  # ctypes' private errno copy, per thread (use_errno)


def get_errno() -> int:
    """ctypes.get_errno: the private errno copy of the calling thread."""
    return getattr(_errno, "value", 0)


def set_errno(value: int) -> int:
    """ctypes.set_errno: sets the private errno copy; returns the old value."""
    old = get_errno()
    _errno.value = value
    return old


def _check_argtypes(argtypes) -> tuple:
    argtypes = tuple(argtypes)
    for number, t in enumerate(argtypes, 1):
        if not hasattr(t, "from_param"):
            raise TypeError("item %d in _argtypes_ has no from_param method" % number)
    return argtypes


class RemoteCall:
    """Calls one native function with ctypes' conversions: handles resolved per signature."""

    def __init__(self, session, name: str, library: Optional[int] = None,
                 address: Optional[WorkerAddress] = None, use_errno: bool = False) -> None:
        self._session = session
        self._name = name
        self._library = library
        self._address = address
        self._use_errno = use_errno
        self._handles: Dict[tuple, int] = {}
        # (argtypes, restype) -> its packer (ffibox._packers), None when it has none.
        self._packers: Dict[tuple, Optional[_packers.Packer]] = {}

    def call(self, owner, argtypes, restype, args, variadic: bool = False):
        """Calls with `args`; `variadic`: the arguments after `argtypes` are variadic ones."""
        session = self._session
        if session.stream.closed_at_exit:
            # The interpreter is exiting and its exit closed the session, whose worker goes
            # with it: a __del__ freeing a handle there (modules half torn down) does
            # nothing, quietly, as the call would have done nothing that outlives the process.
            return _zero_of(restype)
        if session.stream.defers_calls_here() or (
                _collecting[0] is not None and _collecting[0] == threading.get_ident() and
                (session.twins.entered_here() or session.stream.in_flight_here())):
            # A finalizer that Python's garbage collector ran on a thread the session's
            # requests or answers wait for, or on one inside a section of the session's
            # table of twins (the call would find it half-changed) or whose own request is on
            # the same-host channel (which serves nothing else until it is answered): the
            # call runs on a thread of ffibox's own right after, and gives its result type's
            # zero here. A signal handler that Python ran inside such a finalizer expects the
            # result: it is refused instead, as a handler inside the table's sections is.
            if _in_signal_handler():
                raise Error("FAILED_PRECONDITION: a signal handler that ran while this thread "
                            "updated the table of the caller's objects in the worker, or "
                            "waited for a request, cannot make a call", "FAILED_PRECONDITION")
            session.deferred_calls.put(
                lambda: self.call(owner, argtypes, restype, args, variadic))
            return _zero_of(restype)
        if not variadic and not self._use_errno and session.stream.local_enabled:
            done = self._packed_call(argtypes, restype, args) if argtypes is not None else \
                self._packed_untyped_call(restype, args)
            if done is not None:
                return done.value
        try:
            builder, response = self._send(argtypes, restype, args, variadic)
        except SessionClosed:
            if session.stream.closed_at_exit:  # closed meanwhile (above)
                return _zero_of(restype)
            raise
        except StaleHandle as error:
            if ".at" not in str(error):
                raise
            # The worker was restarted since these objects got their twins: new ones.
            session.twins.forget_older(session.generation)
            builder, response = self._send(argtypes, restype, args, variadic)
        try:
            return self._result(builder, response, restype)
        finally:
            builder.done()

    def _packed_call(self, argtypes, restype, args) -> Optional[_packers.Done]:
        """The call through its packer (ffibox._packers) on the same-host channel: Done
        with the result, or None when it goes the general way (no packer for this
        signature, arguments it does not take, twins to release, no channel)."""
        session = self._session
        key = (argtypes, restype)
        packer = self._packers.get(key, self)
        if packer is self:
            packer = None
            if _packers.packable(argtypes, restype):
                packer = _packers.Packer(self._handle(argtypes, restype), argtypes, restype)
            self._packers[key] = packer
        if packer is None:
            return None
        session.stream.ensure_callback_room()
        if packer.any_pointer or session.twins.has_releases():
            # Memory held while the call is in flight, and releases (Call.release).
            return self._packed_pointer_call(packer, args, restype)
        packed = packer.pack(args, session.twins)
        if packed is None:
            return None
        # What the caller changed in images of worker memory reaches the worker first.
        session.images.sync()
        answer = session.stream.send_packed(packed)
        if type(answer) is _packers.Done and not packer.maps_words and \
                not packer.void_pointer:
            return answer  # the most common case
        return self._packed_answer(packer, answer, restype, None)

    def _packed_untyped_call(self, restype, args) -> Optional[_packers.Done]:
        """A call of a function without argtypes through the packer of the types ctypes
        gives its arguments (_marshal.infer_type), as _packed_call: bindings that never set
        argtypes (pycryptodome's ctypes backend) take the same-host fast path too."""
        try:
            inferred = tuple([_marshal.infer_type(value) for value in args])
            for value in args:
                _check_untyped(value)
        except Exception:  # an _as_parameter_ may raise anything
            return None  # the general way raises it as ctypes' ArgumentError
        return self._packed_call(inferred, restype, args)

    def _packed_pointer_call(self, packer, args, restype) -> Optional[_packers.Done]:
        """_packed_call's work for a packer with pointer parameters, whose twins are held
        while the call is in flight, or for a call that releases twins."""
        session = self._session
        generation, packed, answer, sending = session.generation, None, None, False
        try:
            packed = packer.pack(args, session.twins, generation, releasing=True)
            if packed is None:
                return None
            session.images.sync()
            sending = True
            answer = session.stream.send_packed(packed)
            sending = False
        finally:
            if packed is not None:
                packed.release()
                # Not sent (send_packed gave None, or the call failed before it): released
                # with a later call. Once sent, never again, even when the wait for the
                # answer was interrupted: the worker frees them first whatever the call's
                # outcome (as the general way).
                if answer is None and not sending:
                    packed.requeue_releases()
        return self._packed_answer(packer, answer, restype, generation)

    def _packed_answer(self, packer, answer, restype, generation: Optional[int]):
        """_packed_call's result for what send_packed gave (`answer`) to a call packed for
        worker `generation` (None: the session's)."""
        session = self._session
        if generation is None:
            generation = session.generation
        if answer is None or isinstance(answer, _packers.Done):
            if answer is not None and packer.maps_words and answer.value:
                twin = session.twins.local(answer.value & (1 << 64) - 1, generation)
                if twin is not None:  # an address inside caller memory a call reached
                    answer.value = twin[1]
            elif answer is not None and packer.void_pointer:
                answer.value = _marshal.void_pointer(answer.value, session, generation)
            return answer
        if answer.HasField("error"):
            raise error_from_proto(answer.error, pb)
        # Another shape (blocks the library changed): as every call's answer.
        builder = CallBuilder(session.twins, session.images, lambda: session.generation)
        return _packers.Done(self._result(builder, answer, restype))

    def _result(self, builder, response, restype):
        """The function's result from the worker's answer `response` to the call `builder`
        built, after copying back what the library changed."""
        session = self._session
        result = response.call
        if self._use_errno and result.HasField("errno_value"):
            set_errno(result.errno_value)
        try:
            builder.copy_back(result, response.generation)
            builder.apply_changes(result.changed, response.generation)
        finally:  # the worker reports a change once: never lost to an error before it
            session.images.apply_changes(result.changed, response.generation)
        restype_for_decode = restype if _types.is_ctypes_type(restype) else _ct.c_int
        value = (_marshal.decode(restype_for_decode, result.result, session,
                                 response.generation)
                 if restype is not None else None)
        if restype is not None and not _types.is_ctypes_type(restype) and callable(restype):
            value = restype(value)
        elif _types.is_ctypes_type(restype) and not _types.is_fundamental(restype):
            check = getattr(restype, "_check_retval_", None)
            if check is not None:  # ctypes' hook for a result type of one's own
                value = check(value)
        return value

    def _send(self, argtypes, restype, args, variadic: bool = False):
        """Converts the arguments, sends the call, and returns (builder, response)."""
        session = self._session
        builder = CallBuilder(session.twins, session.images, lambda: session.generation)
        try:
            return builder, self._send_built(builder, argtypes, restype, args, variadic)
        except BaseException:
            builder.done()
            raise

    def _send_built(self, builder, argtypes, restype, args, variadic: bool):
        """_send's work with `builder`: returns the response."""
        session = self._session
        types = list(argtypes) if argtypes else []
        if len(args) < len(types):
            raise TypeError("this function takes at least %d argument%s (%d given)"
                            % (len(types), "" if len(types) == 1 else "s", len(args)))
        values = []
        for position, value in enumerate(args, 1):
            try:
                if position <= len(types):
                    t = types[position - 1]
                    if not _types.is_ctypes_type(t) or _converts_itself(t):
                        # As ctypes: what from_param gives is what goes, as its own type.
                        value = _marshal.local_string_argument(t, value, t.from_param(value),
                                                               builder)
                        t = _marshal.infer_type(value)
                        _check_untyped(value)
                        types[position - 1] = t
                else:
                    t = _marshal.infer_type(value)
                    _check_untyped(value)
                    types.append(t)
                values.append(_marshal.encode(t, value, builder, session))
            except (TypeError, ValueError, OverflowError) as error:
                if position > len(argtypes or ()) and str(error).startswith("Don't know"):
                    error = TypeError("Don't know how to convert parameter %d" % position)
                raise _marshal.ArgumentError("argument %d: %s: %s"
                                             % (position, _error_name(error), error)) from None
        call = builder.call  # its blocks are in it
        if variadic:
            fixed = len(argtypes or ())
            for t in types[fixed:]:
                session.layouts.check(t)
            call.function = self._handle(tuple(types[:fixed]), restype, True)
            call.variadic_types.extend(_types.param_proto(t) for t in types[fixed:])
        else:
            call.function = self._handle(tuple(types), restype)
        call.args.extend(values)
        if self._use_errno:
            call.capture_errno = True
            call.set_errno = get_errno()
        # Once its arguments defined their callbacks, and before anything is given up.
        session.stream.ensure_callback_room()
        released = session.twins.take_releases(session.generation,
                                               _twins.RELEASES_PER_CALL)
        if released:
            call.release.extend(pb.RemoteAddress(address=address, generation=generation)
                                for address, generation in released)
            limit = session.stream.max_request_bytes
            if limit and call.ByteSize() + _REQUEST_FRAMING_BYTES > limit:
                # A call the stream may refuse itself (larger than its messages) carries
                # none: the worker would never see them, and they are sent once only.
                session.twins.requeue(released)
                del call.release[:]
        # What the caller changed in images of worker memory reaches the worker first.
        session.images.sync()
        # While the call is in flight its twins are the worker's (busy since `place`): a
        # nested call (from a callback) must not sync the caller's stale bytes into them.
        # Its releases are sent again only when the server refused the call before any
        # worker saw it: a worker frees them before anything else, and a later keep may have
        # been given an address freed since.
        try:
            response = session.call(call, builder if builder.keeping else None,
                                    builder.request)
        except Error as error:
            if error.never_reached_worker and call.release:
                session.twins.requeue(released)
            if isinstance(error, WorkerCrashed) and error.fault_address:
                hint = builder.crash_hint(error.fault_address)
                if hint:
                    error.args = (str(error) + hint,) + error.args[1:]
            raise
        finally:
            builder.answered()
        session.twins.note_generation(response.generation)
        return response

    def _handle(self, types: tuple, restype, variadic: bool = False) -> int:
        key = (types, restype, variadic)
        handle = self._handles.get(key)
        if handle is None:
            real_restype = restype if _types.is_ctypes_type(restype) else (
                _ct.c_int if restype is not None else None)
            for t in types + ((real_restype,) if real_restype is not None else ()):
                self._session.layouts.check(t)
            # A c_char_p / c_wchar_p subclass result is not converted to bytes by ctypes: it
            # comes back as the worker's address, bound to it (ffibox._remote).
            if (_types.code_of(real_restype) in ("z", "Z")
                    and not _types.is_fundamental(real_restype)):
                real_restype = _ct.c_void_p
            signature = _types.signature(real_restype, types, variadic)
            if self._address is not None:
                request = pb.ResolveFunction(signature=signature, address=pb.RemoteAddress(
                    address=self._address.address, generation=self._address.generation))
            else:
                request = pb.ResolveFunction(library=self._library, symbol=self._name,
                                             signature=signature)
            handle = self._session.resolve(request)
            if self._address is not None:
                self._session.stream.address_functions[handle] = self._address.generation
            self._handles[key] = handle
        return handle


def _in_signal_handler() -> bool:
    """Whether a Python signal handler is on this thread's stack (Python runs them on the
    main thread, between any two of its bytecodes, a finalizer's included)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    handlers = set()
    for signum in signal.valid_signals():
        try:
            handler = signal.getsignal(signum)
        except (ValueError, OSError):
            continue
        code = getattr(getattr(handler, "__func__", handler), "__code__", None)
        if code is not None:
            handlers.add(code)
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code in handlers:
            return True
        frame = frame.f_back
    return False


# The thread the garbage collector runs on now, else None: the finalizers it runs are the
# ones whose calls inside a section of a table of twins are deferred (a signal handler's
# there is refused, also one that Python runs inside such a finalizer: it may need the
# call's result).
_collecting: list = [None]


def _note_collection(phase: str, info) -> None:
    _collecting[0] = threading.get_ident() if phase == "start" else None


gc.callbacks.append(_note_collection)

def _zero_of(restype):
    """What a call returning `restype` gives with every bit of its result zero: 0, 0.0,
    False, None for a pointer or string, a NULL pointer or zeroed record object; None for
    void or a restype ctypes calls with the result (a call then does nothing at all)."""
    if restype is None or not _types.is_ctypes_type(restype):
        return None
    if _types.is_fundamental(restype):
        return restype().value
    # Not through __init__, which a subclass may give required parameters (z3's Ast).
    return restype.from_buffer_copy(bytes(_ct.sizeof(restype)))


def _set_errcheck(function, check) -> None:
    if not callable(check):  # as ctypes: None too (`del` unsets it)
        raise TypeError("the errcheck attribute must be callable")
    function._errcheck = check


def _unset_errcheck(function) -> None:
    function._errcheck = None


# A function's `errcheck`, as ctypes keeps it (held in `_errcheck`).
_ERRCHECK = property(lambda function: function._errcheck, _set_errcheck, _unset_errcheck)


def _checked(errcheck, result, function, args):
    """What a call returns, as in ctypes: `errcheck`'s value, unless it is None or gave the
    arguments back unchanged (a check that only raises), then the result."""
    if errcheck is None:
        return result
    checked = errcheck(result, function, args)
    return result if checked is args else checked


class _FuncPtr:
    """A function of a CDLL: ctypes' _FuncPtr surface (argtypes, restype, errcheck)."""

    _flags_ = 1
    _restype_ = _ct.c_int
    # Passed where ctypes takes a function pointer or a void*, it is its address in the worker.
    _ffibox_library_function = True

    def __init__(self, name: str, session, library: int, *, use_errno: bool = False,
                 library_name: Optional[str] = None,
                 address: Optional[WorkerAddress] = None) -> None:
        """The function `name` of the library `session` loaded as handle `library` (named
        `library_name`), at `address`; `use_errno` as in ctypes."""
        self.__name__ = name
        self._library_name = library_name
        if address is not None:
            set_address(self, address)
        self._call = RemoteCall(session, name, library, use_errno=use_errno)
        self._argtypes = None  # checked, a tuple
        self._argtypes_as_set = None  # what reads back, as in ctypes
        self._restype = type(self)._restype_
        self._errcheck = None
        # An ffibox addition: True for a C function declared with `...`. argtypes are then its
        # fixed parameters, and each call's extra arguments are passed as variadic ones, their
        # types inferred from the values as ctypes infers them (C's promotions applied).
        self.variadic = False

    @property
    def argtypes(self):
        return self._argtypes_as_set

    errcheck = _ERRCHECK

    @property
    def restype(self):
        return self._restype

    @restype.setter
    def restype(self, value) -> None:
        # As ctypes: a data type, a callable (applied to the int result) or None.
        if value is not None and not _types.is_ctypes_type(value) and not callable(value):
            raise TypeError("restype must be a type, a callable, or None")
        self._restype = value

    @restype.deleter
    def restype(self) -> None:
        self._restype = _ct.c_int

    @argtypes.setter
    def argtypes(self, value) -> None:
        self._argtypes = None if value is None else _check_argtypes(value)
        self._argtypes_as_set = value

    @argtypes.deleter
    def argtypes(self) -> None:
        self._argtypes = self._argtypes_as_set = None

    def __call__(self, *args):
        # A method, not an object's __call__: one frame of the recursion limit, not two.
        result = self._call.call(self, self._argtypes, self.restype, args, self.variadic)
        return _checked(self._errcheck, result, self, args)

    def __repr__(self) -> str:
        return "<ffibox function %s of %s>" % (self.__name__, self._library_name)

    def __reduce__(self):
        raise ValueError("ctypes objects containing pointers cannot be pickled")


# -- CFUNCTYPE -------------------------------------------------------------------------

_prototypes: Dict[tuple, type] = {}


def _prototype_new(cls, *args):
    if args and isinstance(args[0], int) and not isinstance(args[0], bool) and \
            args[0] in _callback_code.local_callbacks:
        # The code ctypes made for a live callback of this process (its address, handed to
        # a library as a plain pointer and handed back): that callback, as ctypes has it.
        return _ct._CFuncPtr.__new__(cls, args[0])
    if args and isinstance(args[0], (RemotePointer, int)) and not isinstance(args[0], bool):
        target = args[0]
        if isinstance(target, RemotePointer):
            at = address_of(target)
        else:
            session = _default.default_session()
            at = WorkerAddress(session, target, session.generation)
        # Its bytes hold the worker address, as a ctypes function pointer holds its address:
        # stored in a structure the library gets, it is the worker's function there.
        instance = _ct._CFuncPtr.__new__(cls, at.address)
        set_address(instance, at)
        return instance
    if args and isinstance(args[0], tuple):
        # (name, library): an instance of this prototype at the library's function, as
        # ctypes makes one (the library's own function object keeps its argtypes).
        name, library = args[0][0], args[0][1]  # items, as ctypes reads them
        at = library.address_of(name)
        instance = _ct._CFuncPtr.__new__(cls, at.address)
        set_address(instance, at)
        instance._ffibox_name = name  # for messages (ctypes' instances have no __name__)
        # Called by name in that library, as the library's own function is: it survives
        # the worker's restarts (its address is that worker's alone).
        instance._ffibox_library = library
        if len(args) > 1 and args[1] is not None:
            return _with_paramflags(instance, cls._argtypes_, args[1])
        return instance
    instance = _ct._CFuncPtr.__new__(cls, *args)
    instance._ffibox_callable = args[0] if args and callable(args[0]) else None
    if instance._ffibox_callable is not None:
        _callback_code.register(_types.word_at(_ct.addressof(instance)).value, instance)
    return instance


def _prototype_init(self, *args) -> None:
    pass


def _prototype_bool(self) -> bool:
    at = address_of(self)
    if at is not None:
        return bool(at.address)
    return _ct._CFuncPtr.__bool__(self)


class _ParamflagsFunction:
    """A prototype instantiated with paramflags: named and defaulted inputs, and output
    parameters created here, passed by reference and returned (ctypes' rules: an output
    parameter, flag 2, is made here, or is its default; an input-output one, flag 3, is taken
    from the caller and returned as given; `errcheck` gets the arguments as objects, outputs
    included, and what it returns is the result unless it is that tuple)."""

    def __init__(self, function, argtypes, paramflags) -> None:
        if len(paramflags) != len(argtypes):
            raise ValueError("paramflags must have the same length as argtypes")
        for number, (t, flags) in enumerate(zip(argtypes, paramflags), 1):
            flag = tuple(flags)[0] if flags else 0
            if flag & 7 not in (0, 1, 2, 3, 5):  # as ctypes: in, out, in-out, in-lcid
                raise TypeError("paramflag value %d not supported" % flag)
            if flag & 3 == 2 and not (_types.is_pointer(t) or _types.is_array(t)):
                raise TypeError("'out' parameter %d must be a pointer type, not %s"
                                % (number, getattr(t, "__name__", t)))
        self._function = function
        self._argtypes = argtypes
        self._flags = [tuple(p) for p in paramflags]
        self._errcheck = None
        self.__name__ = getattr(function, "__name__", None) or function._ffibox_name

    errcheck = _ERRCHECK

    def __getattr__(self, name: str):
        return getattr(self._function, name)

    def __setattr__(self, name: str, value) -> None:
        if name.startswith("_") or name in ("__name__", "errcheck"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._function, name, value)

    def __call__(self, *args, **kwargs):
        positional = list(args)
        objects, returned = [], []  # the arguments; (index, as given) of those returned
        for t, flags in zip(self._argtypes, self._flags):
            direction = flags[0] & 3 if flags else 1
            name = flags[1] if len(flags) > 1 else None
            if direction == 2:  # output: its default, else made here
                if len(flags) > 2:
                    out = flags[2]
                elif _types.is_array(t):
                    out = t()
                else:
                    out = t._type_()
                returned.append((len(objects), False))
                objects.append(out)  # passed as ctypes would: by reference to a POINTER
                continue
            if flags and flags[0] & 4:  # lcid: its default, else 0, never an argument
                value = flags[2] if len(flags) > 2 else 0
            elif positional:
                value = positional.pop(0)
            elif name is not None and name in kwargs:
                value = kwargs.pop(name)
            elif len(flags) > 2:
                value = flags[2]
            else:
                raise TypeError("required argument %r missing" % (name,))
            if direction == 3:  # input and output: returned as the caller gave it
                returned.append((len(objects), True))
            objects.append(value)
        if positional or kwargs:
            raise TypeError("too many arguments for %s" % self.__name__)
        objects = tuple(objects)
        result = self._function(*objects)
        if self._errcheck is not None:
            checked = self._errcheck(result, self, objects)
            if checked is not objects:
                return checked
        if not returned:
            return result
        values = [objects[i] if as_given or not _types.is_fundamental(type(objects[i]))
                  else objects[i].value for i, as_given in returned]
        return values[0] if len(values) == 1 else tuple(values)


def _with_paramflags(function, argtypes, paramflags):
    return _ParamflagsFunction(function, argtypes, paramflags)


def _prototype_call(self, *args):
    at = address_of(self)
    if at is None and self._ffibox_callable is None:
        # Made by ctypes from bytes (a structure's function pointer field, `cast`): the
        # address it holds is read as ffibox._addresses says, and a function of the worker
        # is called there, never jumped to in this process.
        address = _types.word_at(_ct.addressof(self)).value or 0
        if address and _addresses.classify(address)[0] != "local":
            session = _default.default_session()
            at = WorkerAddress(session, address, session.generation)
    if at is None:
        return _ct._CFuncPtr.__call__(self, *args)
    use_errno = bool(type(self)._flags_ & _ct._FUNCFLAG_USE_ERRNO)
    library = getattr(self, "_ffibox_library", None)
    if library is not None:
        call = library.session.named_function(library.library_handle, self._ffibox_name,
                                              use_errno)
    else:
        call = at.session.function_at(at.address, at.generation,
                                      getattr(self, "_ffibox_name", None), use_errno)
    result = call.call(self, type(self)._argtypes_, self.restype, args)
    return _checked(self.errcheck, result, self, args)


def CFUNCTYPE(restype, *argtypes, use_errno: bool = False, use_last_error: bool = False):
    """ctypes.CFUNCTYPE: a prototype whose instances wrap Python callables (callbacks the
    worker calls over the session) or native function pointers of the worker."""
    flags = _ct._FUNCFLAG_CDECL
    if use_errno:
        flags |= _ct._FUNCFLAG_USE_ERRNO
    if use_last_error:
        flags |= _ct._FUNCFLAG_USE_LASTERROR
    return _prototype(restype, argtypes, flags)


def PYFUNCTYPE(restype, *argtypes):
    """ctypes.PYFUNCTYPE: as CFUNCTYPE (the flag that a call holds the GIL is kept, and
    means nothing to a call in the worker). vispy makes one as it is imported."""
    return _prototype(restype, argtypes, _ct._FUNCFLAG_CDECL | _ct._FUNCFLAG_PYTHONAPI)


def _prototype(restype, argtypes, flags):
    key = (restype, argtypes, flags)
    prototype = _prototypes.get(key)
    if prototype is None:
        prototype = type("CFunctionType", (_ct._CFuncPtr,), {
            "_argtypes_": argtypes, "_restype_": restype, "_flags_": flags,
            "__new__": _prototype_new, "__init__": _prototype_init,
            "__call__": _prototype_call, "__bool__": _prototype_bool,
            "_ffibox_callable": None, ATTRIBUTE: None})
        _prototypes[key] = prototype
    return prototype


# core/call_answer.h's kMaxInvokePointeeBytes: the most pointee bytes one invocation ships.
_MAX_INVOKE_POINTEE_BYTES = 64 << 20
# core/call_answer.h's kMaxInvokeStringBytes: the longest string argument an invocation ships.
_MAX_INVOKE_STRING_BYTES = 1 << 20


def _shipped_size(t) -> Optional[int]:
    """The bytes an invocation ships for a parameter of ctypes type `t` (the pointee of a
    pointer to a non-void scalar, a record or an array; an array parameter whole), None when
    nothing is shipped for it (core/callback_values.cc's ShippablePointee)."""
    proto = _types.param_proto(t)
    kind = proto.WhichOneof("kind")
    if kind == "array":
        return _ct.sizeof(t)
    if kind != "pointer":
        return None
    pointee = proto.pointer.pointee
    pointee_kind = pointee.WhichOneof("kind")
    if pointee_kind in ("record", "array") or (pointee_kind == "scalar" and
                                               pointee.scalar != pb.VOID):
        return _ct.sizeof(t._type_)
    return None


def callback_buffer_bytes(argtypes) -> int:
    """DefineCallback.buffer_bytes for a callback with parameters `argtypes`:
    CALLBACK_BUFFER_BYTES when its handler backs one of them with a local buffer (a pointer to
    pointer-free data, whose pointee the worker ships); else the bytes of MAX_ELEMENTS
    pointers when one of them points to pointers (`char**`, whose image takes up to that
    many elements, from what the worker ships); else 0: nothing more is shipped."""
    wanted = 0
    for t in argtypes:
        if not _types.is_pointer(t) or _shipped_size(t) is None:
            continue
        if not _images.has_typed_pointers(t._type_):
            return _scratch_buffers.CALLBACK_BUFFER_BYTES
        if _types.is_pointer(t._type_) or _types.code_of(t._type_) in ("z", "Z"):
            wanted = _images.MAX_ELEMENTS * _ct.sizeof(_ct.c_void_p)
    return wanted


def invoke_checker(argtypes, buffer_bytes: int):
    """check(invoke): why the CallbackInvoke `invoke` cannot be an invocation of a callback
    with parameters `argtypes` defined with `buffer_bytes`, else None. The broker's checks
    (core/call_answer.h's CheckCallbackInvoke), for the invocations that come on the
    same-host channel, where the client is the first to read what the worker sent."""
    sizes = [_shipped_size(t) for t in argtypes]
    # What each argument's value may hold: a string's contents only for a string parameter,
    # of at most _MAX_INVOKE_STRING_BYTES (bytes of a char*, characters of a wchar_t*); a
    # record's bytes no more than its size; no aggregate.
    codes = [_types.code_of(t) for t in argtypes]
    most = {"bytes_value": [_MAX_INVOKE_STRING_BYTES if code == "z" else -1 for code in codes],
            "text_value": [_MAX_INVOKE_STRING_BYTES if code == "Z" else -1 for code in codes],
            "raw": [_ct.sizeof(t) for t in argtypes]}

    def check(invoke) -> Optional[str]:
        if len(invoke.args) != len(argtypes):
            return "carries %d arguments for a callback of %d parameters" % (
                len(invoke.args), len(argtypes))
        for index, arg in enumerate(invoke.args):
            kind = arg.WhichOneof("kind")
            if kind is None:
                return "carries an argument without a value"
            if kind == "aggregate" or (kind in most and
                                       len(getattr(arg, kind)) > most[kind][index]):
                return "carries argument %d as %s its parameter cannot have" % (index, kind)
        seen, total = set(), 0
        for pointee in invoke.pointees:
            arg = pointee.arg
            size = sizes[arg] if arg < len(sizes) else None
            if size is None or arg in seen:
                return ("ships pointee data for argument %d, which is not a pointer "
                        "parameter of the callback or was shipped twice" % arg)
            seen.add(arg)
            if len(pointee.data) != size:
                return "ships %d bytes for argument %d, whose pointee is %d" % (
                    len(pointee.data), arg, size)
            if len(pointee.following) > max(buffer_bytes - size, 0):
                return "ships %d bytes after argument %d's pointee of %d bytes" % (
                    len(pointee.following), arg, size)
            total += size + len(pointee.following)
            if total > _MAX_INVOKE_POINTEE_BYTES:
                return "ships too many pointee bytes"
        return None

    return check


def _converts_itself(t) -> bool:
    """Whether ctypes type `t` has a from_param of its own, written in Python (a subclass
    that converts: `class Text(c_char_p)` taking `str`), whose result ctypes passes instead
    of the argument."""
    return not isinstance(getattr(t, "from_param", None), BuiltinFunctionType)


def _check_untyped(value) -> None:
    """An int that goes without a declared type travels as ctypes' C int, which ctypes takes
    from any value that fits a C long or unsigned long: beyond that, its OverflowError."""
    if isinstance(value, int) and not isinstance(value, bool) and \
            not -(1 << 63) <= value < (1 << 64):
        raise OverflowError("int too long to convert")


def _error_name(error: BaseException) -> str:
    """How ctypes names the error inside an ArgumentError: `TypeError` since Python 3.11,
    `<class 'TypeError'>` before."""
    return type(error).__name__ if sys.version_info >= (3, 11) else str(type(error))


def _local_word(restype, result):
    """(address, ctypes keep-alive references) of what a callback of result type `restype`
    returned, when it is a pointer that may be the caller's (an int, a c_void_p, c_char_p or
    pointer object of this process); else (None, None)."""
    code = getattr(restype, "_type_", None)
    if not (_types.is_pointer(restype) or code in ("P", "z", "Z")):
        return None, None
    if isinstance(result, int) and not isinstance(result, bool):
        return result, None
    if isinstance(result, (_ct.c_void_p, _ct.c_char_p, _ct.c_wchar_p, _ct._Pointer)):
        if address_of(result) is not None:
            return None, None  # bound to worker memory: encode maps it
        return (_ct.c_void_p.from_buffer(result).value or 0,
                getattr(result, "_objects", None))
    return None, None


def _callback_result(restype, result, session, generation: int, scratches=()):
    """The Value of what a callback returned, as native code must find it in the worker.

    As ctypes: a `bytes` for `c_char_p` (a `str` for `c_wchar_p`) is kept alive for good, with
    ctypes' RuntimeWarning: the string gets worker memory of its own, never freed. A pointer
    into a caller object (`addressof(buffer)`, `cast(buffer, c_void_p)`) is that object's
    twin in worker memory, written with its bytes (ffibox._callback_pointers). A pointer into
    one of `scratches`, the buffers backing the callback's pointer arguments (the argument
    itself, `addressof(a.contents)`), is the worker address that buffer mirrors."""
    code = getattr(restype, "_type_", None)
    if (code == "z" and isinstance(result, bytes)) or (code == "Z" and isinstance(result, str)):
        warnings.warn("memory leak in callback function.", RuntimeWarning, stacklevel=2)
        data = result + b"\0" if code == "z" else result.encode("utf-32-le") + b"\0\0\0\0"
        address = session.memory.alloc(len(data))
        session.memory.write(address, data, generation)
        return remote_value(address, generation)
    word, keep = _local_word(restype, result)
    for scratch in scratches:
        # A pointer into the buffer that backs a pointer argument (the argument itself, an
        # element past it): the worker memory that buffer mirrors.
        offset = (word or 0) - _ct.addressof(scratch.buffer)
        if 0 <= offset <= _scratch_buffers.ScratchBuffers.reach(scratch.buffer):
            return remote_value(scratch.address + offset, generation)
    if word:
        mapped = _callback_pointers.worker_word(session, word, keep, generation)
        if mapped == word and _addresses.classify(word)[0] == "local" and \
                not session.images.find(word):
            # An address of this process returned as a bare number (graphite2's table
            # callback returns addressof(buffer)): the object that holds it, found among the
            # live ones, gets a twin; the library would crash on the address itself.
            owner = _callback_pointers.local_object_at(word)
            if owner is not None:
                mapped = _callback_pointers.worker_word(session, word, {"0": owner}, generation)
            if mapped == word:
                raise ValueError(
                    "ffibox: the callback returned 0x%x, an address of this process's memory "
                    "that is no ctypes object's: the library cannot reach it" % word)
        if mapped != word:
            return remote_value(mapped, generation)
    return _marshal.encode(restype, result, None, session)


class _Scratch:
    """A scratch buffer (_scratch_buffers.ScratchBuffers) backing a callback's pointer argument: the
    buffer, the worker address it mirrors, the bytes that came after the pointee, how many
    pointers handed to the callback point into it (arguments whose memory lies inside this
    one's share it), and how many holders the buffer's keep-alive dict had while they were
    alive (ScratchBuffers.holders)."""
    __slots__ = ("buffer", "address", "following", "pointers", "holders", "reusable")

    def __init__(self, buffer, address: int, following: bytes) -> None:
        self.buffer = buffer
        self.address = address
        self.following = following
        self.pointers = 0
        self.holders = 0
        self.reusable = True  # False once a pointer the callback stored in it went out


class _Shared:
    """A callback's pointer argument into the scratch buffer of another (_sharing), at
    `offset` bytes into it."""
    __slots__ = ("scratch", "offset")

    def __init__(self, scratch: _Scratch, offset: int) -> None:
        self.scratch = scratch
        self.offset = offset


# How a callback's argument is made (callback_handler): an image of the worker's memory
# (pointers to pointers), a scratch buffer (other pointers), decoded (the rest).
_IMAGED, _SCRATCH, _DECODED = range(3)


def _sharing(spans):
    """For pointer arguments shipped with their following bytes, `spans`: index -> (worker
    address, bytes that came, pointee size), the argument whose buffer each one's is (index
    -> index), so that arguments pointing into one piece of memory (`f(p, p)`, two elements
    of one array) share one local buffer, as they share the memory in C, and a write through
    one is seen through the other and not undone by its stale copy. In order of address
    (then the longest first): an argument whose pointee lies inside the bytes that came for
    the argument heading the group before it joins that group (it sees those bytes, cut at
    their end), else heads a group of its own."""
    roots, head = {}, None
    for index in sorted(spans, key=lambda i: (spans[i][0], -spans[i][1], i)):
        address, _, size = spans[index]
        if head is not None and address + size <= spans[head][0] + spans[head][1]:
            roots[index] = head
        else:
            roots[index] = head = index
    return roots


_CHANGED_BYTES = bytes([0]) + bytes([0xFF]) * 255  # bytes.translate: a byte's change mask


def _changed_span(now: bytes, after: bytes, first: int, current):
    """(offset, bytes) of one write of what a callback changed in a scratch buffer
    (_scratch_buffers.ScratchBuffers) among the bytes that came after its first element, or None:
    `now` is the buffer, `after` what came for offsets [first, first + len(after)). Between the
    first and the last change, the bytes the callback left are what the worker holds there
    now, read with `current(offset, size)`: native code's or what the callback stored there
    through another argument (the slot a `T**` argument points to, next to an `int*` one in
    the caller's frame), not what came with the invocation. (Past what came the buffer held
    zeros that stand for memory not shipped: past the end of the block the pointer is in, or
    unreadable. What the callback wrote there is never written back: a zero it wrote cannot
    be told from one it left.)"""
    # The lowest and highest bytes that differ, found on the XOR of both as one integer
    # (in C: a Python loop over 64 KiB took milliseconds).
    differ = int.from_bytes(now[first:first + len(after)], "little") ^ \
        int.from_bytes(after, "little")
    if not differ:
        return None
    begin = first + ((differ & -differ).bit_length() - 1) // 8
    end = first + (differ.bit_length() - 1) // 8 + 1
    changed = (differ >> (8 * (begin - first))).to_bytes(end - begin, "little")
    if 0 not in changed:
        return begin, now[begin:end]
    mask = int.from_bytes(changed.translate(_CHANGED_BYTES), "little")
    left = int.from_bytes(current(begin, end - begin), "little") & ~mask
    return begin, (int.from_bytes(now[begin:end], "little") & mask | left).to_bytes(
        end - begin, "little")


def callback_handler(prototype, function):
    """The session-stream handler that runs the Python function `function.get()` gives for
    invokes of a callback (`repr(function)` names it in reports); its `check` attribute
    checks an invocation that comes on the same-host channel (invoke_checker)."""
    argtypes = prototype._argtypes_
    restype = prototype._restype_

    # Per parameter: how its argument is made, whether its pointee holds pointers, whether it
    # is a `char**`; and the parameters imaged.
    plan = None
    imaged = ()

    def make_plan():
        """The plan, made by the first invocation (the types are complete by then)."""
        made = []
        for t in argtypes:
            pointer = _types.is_pointer(t)
            typed = pointer and _images.has_typed_pointers(t._type_)
            made.append((_IMAGED if typed else _SCRATCH if pointer else _DECODED,
                         pointer and bool(_types.pointer_offsets(t._type_)),
                         typed and _types.code_of(t._type_) == "z"))
        return made

    def handle(stream, invoke):
        nonlocal plan, imaged
        if plan is None:
            plan = make_plan()
            imaged = tuple(index for index, made in enumerate(plan) if made[0] == _IMAGED)
        session = stream.session
        if invoke.kept:
            session.kept_in_flight(invoke)
        pointees = {p.arg: p.data for p in invoke.pointees}
        following = {p.arg: p.following for p in invoke.pointees}
        local_copies = {}
        args = []
        budget = session.images.budget()
        scratch = session.images.scratch
        # Not pointees that hold pointers (void**): each keeps what the callback stores in it
        # alive under one key of its pointer's keep-alive dict, which a shared one would share.
        spans = {index: (value.pointer.remote.address,
                         len(pointees[index]) + len(following[index]), len(pointees[index]))
                 for index, value in enumerate(invoke.args)
                 if index in pointees and index < len(plan) and plan[index][0] == _SCRATCH
                 and not plan[index][1] and value.pointer.remote.address}
        roots = _sharing(spans) if len(spans) > 1 else {}
        strings = []
        for index in imaged:
            if index in pointees and index < len(invoke.args):
                # Its image is made from what came (up to MAX_ELEMENTS pointers for a
                # pointer to pointers), and the strings of every `char**` come with one read.
                shipped = pointees[index] + following[index]
                address = invoke.args[index].pointer.remote.address
                budget.shipped[address] = shipped
                # Not an array of the caller's own (a twin): bind gives the callback that.
                if plan[index][2] and session.twins.local(address, stream.generation) is None:
                    words = struct.unpack_from(
                        "<%dQ" % min(len(shipped) // 8, _images.MAX_ELEMENTS), shipped)
                    strings.extend(words[:words.index(0)] if 0 in words else words)
        if len(strings) > 1:
            session.images.image_strings(strings, budget, stream.generation)
        for index, (t, value) in enumerate(zip(argtypes, invoke.args)):
            kind = plan[index][0]
            if index in pointees and kind == _IMAGED:
                # Pointers to pointers (char** values, T**): an image of the worker's array,
                # every element converted, so the callback never sees a worker address.
                holder = t()
                address = value.pointer.remote.address if value.pointer.HasField("remote") else 0
                local = session.images.bind(holder, 0, t, address, stream.generation, budget)
                args.append(_ct.cast(local, t) if local else holder)
                local_copies[index] = (holder, local)
            elif index in pointees and kind == _SCRATCH:
                # Maybe a buffer (char*, uint8_t*): backed by a large local buffer holding
                # what the worker has there, so indexing past the first element is safe.
                address = value.pointer.remote.address if value.pointer.HasField("remote") else 0
                root = roots.get(index, index)
                if root not in local_copies:
                    local_copies[root] = _Scratch(
                        scratch.take(pointees[root], following[root]),
                        spans[root][0] if root != index else address, following[root])
                shared = local_copies[root]
                pointer = _ct.cast(shared.buffer, t)
                if root != index:  # into the buffer of the argument whose memory holds it
                    local_copies[index] = _Shared(shared, address - shared.address)
                    _ct.c_void_p.from_buffer(pointer).value = \
                        _ct.addressof(shared.buffer) + address - shared.address
                shared.pointers += 1
                args.append(pointer)
                del pointer
            else:
                args.append(_marshal.decode(t, value, session, stream.generation))
        for copy in local_copies.values():
            if isinstance(copy, _Scratch):
                copy.holders = scratch.holders(copy.buffer)
        answer = pb.CallbackReturn()
        result = None
        try:
            # Called here, not through a wrapper: each nesting of callbacks through the
            # library costs the recursion limit as few frames as it can.
            result = function.get()(*args)
            if restype is not None:
                answer.result.CopyFrom(
                    _callback_result(restype, result, session, stream.generation,
                                     [copy for copy in local_copies.values()
                                      if isinstance(copy, _Scratch)]))
        except BaseException:  # noqa: B902 - ctypes reports every exception the same way
            answer = failed_callback(function)
        reusable = []
        for index, copy in local_copies.items():
            if isinstance(copy, (_Scratch, _Shared)):
                shared = copy.scratch if isinstance(copy, _Shared) else copy
                at = copy.offset if isinstance(copy, _Shared) else 0
                first = len(pointees[index])
                data = _ct.string_at(_ct.addressof(shared.buffer) + at, first)
                if first == 8 and plan[index][1]:
                    # A pointer stored for the library (void**): the worker's view of it.
                    word = _callback_pointers.worker_word(
                        session, _WORD.unpack(data)[0], args[index]._objects, stream.generation)
                    data = _WORD.pack(word)
                    shared.reusable = False
                answer.pointees.add(arg=index, data=data)
            if isinstance(copy, _Shared):
                continue  # what changed past its first element is in its buffer's argument's
            if isinstance(copy, _Scratch):
                buffer, after = copy.buffer, copy.following
                read = first + len(after)  # the bytes that came: zeros beyond
                # What the callback wrote past the first element (compared with what was
                # read, and zeros beyond it) goes back to the worker.
                past = _scratch_buffers.touched_past(buffer)
                untouched = scratch.untouched(buffer, first, after, past)
                if not untouched:
                    try:
                        span = _changed_span(
                            buffer.raw, after, first,
                            lambda offset, size, at=copy.address: session.memory.read(
                                at + offset, size, stream.generation))
                        if span is not None:
                            session.memory.write(copy.address + span[0], span[1],
                                                 stream.generation)
                    except Error as error:
                        sys.stderr.write("ffibox: what the callback %r wrote past the first "
                                         "element could not be written back: %s\n"
                                         % (function, error))
                    if not scratch.zeros_from(buffer, read, past):
                        sys.stderr.write(
                            "ffibox: the callback %r wrote past the %d bytes from its pointer "
                            "argument on that came with the invocation (the end of the memory "
                            "native code handed it, or the %d bytes such a pointer reaches); "
                            "that part was dropped\n"
                            % (function, read, _scratch_buffers.CALLBACK_BUFFER_BYTES))
                reusable.append((copy, read if untouched else len(buffer), past))
                continue
            if isinstance(copy, tuple):
                holder, local = copy
                found = session.images.find(local) if local else None
                if found is not None and found[0].size == 0:
                    # A placeholder mirrors nothing: hand back what the worker sent.
                    answer.pointees.add(arg=index, data=pointees[index])
                elif local:
                    t = argtypes[index]._type_
                    size, offsets, mapped = _ct.sizeof(t), _types.pointer_offsets(t), set()
                    data = bytearray(session.images.worker_bytes(local, size, offsets, mapped))
                    for offset, _ in offsets:
                        if offset in mapped or offset + _WORD.size > size:
                            continue
                        # A pointer to the caller's own object the callback stored there
                        # (`p.contents.next = pointer(node)`): that object's twin.
                        word = _WORD.unpack_from(data, offset)[0]
                        _WORD.pack_into(data, offset, _callback_pointers.worker_word(
                            session, word, args[index]._objects, stream.generation))
                    answer.pointees.add(arg=index, data=bytes(data))
                continue
            answer.pointees.add(arg=index, data=bytes(copy))
        # What the callback wrote into images reaches the worker before native code goes on
        # (through the pointers of a pointer to pointers, the strings of a `char**`; numpy
        # over a view of the library's array): it reads the worker's memory, as it would the
        # caller's.
        session.images.sync()
        # A buffer goes back for reuse once nothing the callback kept can reach it: every
        # ctypes path to it (the pointer argument, its `contents`, a cast of it, a structure
        # field or array element it was stored in) holds the keep-alive dict `cast` shares
        # with the buffer, so that dict must have lost its pointer's hold and gained none.
        # Not one a call inside the callback passed: it has a twin the library may hold. (A
        # handler that raised before this point leaves its buffers to the collector.)
        del args, result
        for copy, dirty, past in reusable:
            if copy.reusable and scratch.holders(copy.buffer) == copy.holders - copy.pointers \
                    and session.twins.owner_at(_ct.addressof(copy.buffer)) is None:
                scratch.give_back(copy.buffer, dirty, past)
        return answer

    handle.check = invoke_checker(argtypes, callback_buffer_bytes(argtypes))
    return handle
