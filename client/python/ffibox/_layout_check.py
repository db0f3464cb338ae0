"""Checks, once per type and session, that ctypes lays a type out as the worker's ABI does.

Records and arrays cross the session as raw bytes in ctypes' layout, which the worker reads
in its own. A type on which the two disagree (a bit-field layout ctypes gets wrong) is
refused with a TypeError before any call uses it, instead of exchanging misread bytes.
"""
import ctypes as _ct
import threading
from typing import Dict, List, Optional

from ffibox import _types
from ffibox._stubs import pb


_IN_PROGRESS = object()


class LayoutCheck:
    """Asks the worker behind a session stream for the layouts of records (GetLayout) and
    compares them with ctypes'. Each type is asked about once."""

    def __init__(self, stream) -> None:
        self._stream = stream
        # Type -> "" once checked, _IN_PROGRESS while this session checks it (a record may
        # point to itself), or why it was refused: refused again on every later use.
        self._checked: Dict[type, object] = {}
        self._expected: Dict[type, bool] = {}
        self._lock = threading.RLock()  # one check at a time: another thread waits for it
        self._pending: Optional[List[type]] = None  # the types the running check marked

    def check(self, t) -> None:
        """Compares ctypes' layout of `t` (a record, or records inside an array or behind a
        pointer, at any depth) with the worker's; raises TypeError when they disagree, for
        this use and every later one."""
        state = self._checked.get(t)
        if state == "":
            return
        if isinstance(state, str):
            raise TypeError(state)
        if not (_types.is_record(t) or _types.is_array(t) or _types.is_pointer(t)):
            return
        if _types.is_pointer(t) and _types.is_incomplete(t._type_):
            return  # asked again once its record has its fields
        with self._lock:
            state = self._checked.get(t)
            if state is _IN_PROGRESS or state == "":
                return
            if isinstance(state, str):
                raise TypeError(state)
            outermost = self._pending is None
            if outermost:
                self._pending = []
            self._pending.append(t)
            self._checked[t] = _IN_PROGRESS
            try:
                self._compare(t)
            except TypeError as error:
                self._checked[t] = str(error)
                if outermost:
                    self._forget_unsure()
                raise
            except BaseException:
                if outermost:
                    self._forget_unsure()
                raise
            self._checked[t] = ""
            if outermost:
                # A check nested in this one that a signal handler or finalizer started, and
                # whose failure it caught, left its types marked: asked again later.
                for each in self._pending:
                    if self._checked.get(each) is _IN_PROGRESS:
                        del self._checked[each]
                self._pending = None

    def _forget_unsure(self) -> None:
        # The check that marked them failed: what it found fine may rest on what it refused
        # (a pointer to a record that points to itself) or did not finish; asked again.
        for each in self._pending:
            state = self._checked.get(each)
            if not (isinstance(state, str) and state):  # not refused
                self._checked.pop(each, None)
        self._pending = None

    def _compare(self, t) -> None:
        if _types.is_array(t) or _types.is_pointer(t):
            self.check(t._type_)
            return
        for entry in _types.wire_fields(t):
            self.check(entry[1])
        layout = self._stream.request(get_layout=pb.GetLayout(type=_types.to_proto(t))).layout
        problems = []
        if layout.size != _ct.sizeof(t) or layout.alignment != _ct.alignment(t):
            problems.append("size/alignment %d/%d here, %d/%d in the worker" % (
                _ct.sizeof(t), _ct.alignment(t), layout.size, layout.alignment))
        for entry, field in zip(_types.wire_fields(t), layout.fields):
            descriptor = getattr(t, entry[0])
            if len(entry) > 2:
                local_bit = descriptor.offset * 8 + (descriptor.size & 0xFFFF)
                remote_bit = field.offset * 8 + field.bit_offset
                if local_bit != remote_bit:
                    problems.append("bit field %s at bit %d here, %d in the worker"
                                    % (entry[0], local_bit, remote_bit))
            elif descriptor.offset != field.offset:
                problems.append("field %s at offset %d here, %d in the worker"
                                % (entry[0], descriptor.offset, field.offset))
        if problems:
            raise TypeError("ffibox: the layout of %s differs between ctypes and the worker: %s"
                            % (t.__name__, "; ".join(problems)))

    def expect(self, t, size: int, alignment: int, bit_offsets: Dict[str, int]) -> None:
        """Checks a record's layout as a C compiler gave it (size and alignment in bytes,
        each field's offset in bits, by name) against ctypes' and the worker's; raises
        TypeError naming each difference. Each record is checked once."""
        if t in self._expected:
            return
        self.check(t)  # ctypes against the worker
        problems = []
        if size != _ct.sizeof(t) or alignment != _ct.alignment(t):
            problems.append("size/alignment %d/%d in the header, %d/%d in ctypes" % (
                size, alignment, _ct.sizeof(t), _ct.alignment(t)))
        for entry in _types.wire_fields(t):
            if entry[0] not in bit_offsets:
                continue
            descriptor = getattr(t, entry[0])
            local_bit = descriptor.offset * 8 + (
                descriptor.size & 0xFFFF if len(entry) > 2 else 0)
            if local_bit != bit_offsets[entry[0]]:
                problems.append("field %s at bit %d in the header, %d in ctypes"
                                % (entry[0], bit_offsets[entry[0]], local_bit))
        if problems:
            raise TypeError("ffibox: the layout of %s differs between its header and ctypes: %s"
                            % (t.__name__, "; ".join(problems)))
        self._expected[t] = True
