"""A session's worker memory, one request per operation: read, write, strings, fill, copy.

Views, RemotePointers and images (ffibox._remote, ffibox._images) reach worker memory only
through this. A worker address is never dereferenced in this process; a bad one raises
MemoryFault, one of an older worker generation StaleHandle.
"""
import ctypes
from typing import Any, Callable, List, Optional, Sequence, Tuple

from ffibox import _types
from ffibox._stubs import pb
from ffibox.errors import Error

# The most characters a read_string reads when it names no length (the server's
# kMaxStringUnits, core/call_shape.h).
MAX_STRING_UNITS = 16 << 20
# Raw string units are read a page of worker memory at a time (never across into a page the
# string does not reach).
PAGE_BYTES = 4096
# The most reads one read_memory_list holds (core/call_shape.h's kMaxReadsPerList).
MAX_READS_PER_LIST = 4096
# The most one read_memory asks for: larger reads take a request a chunk, each within the
# server's largest message (16 MiB by default, SessionOpened.max_message_bytes).
READ_CHUNK_BYTES = 16 << 20


def string_too_long(address: int, wide: bool) -> Error:
    """RESOURCE_EXHAUSTED for a string of MAX_STRING_UNITS characters or more at `address`."""
    return Error("the %sstring at 0x%x is %d characters or longer, the most a string read "
                 "from the worker may be" % ("wide " if wide else "", address,
                                             MAX_STRING_UNITS), "RESOURCE_EXHAUSTED")


def decode_wide(data: bytes) -> str:
    """wchar_t units as ctypes reads them: lone surrogates as they are, a unit past U+10FFFF
    a ValueError naming it."""
    try:
        return data.decode("utf-32-le", "surrogatepass")
    except UnicodeDecodeError as error:
        raise ValueError("character U+%x is not in range [U+0000; U+10ffff]" % int.from_bytes(
            data[error.start:error.start + 4], "little")) from None

# Encodes a Python value as a protocol Value of a ctypes type (ffibox._marshal.encode, for
# values no call carries).
ValueEncoder = Callable[[Any, Any], Any]


class WorkerMemory:
    """Worker memory operations over a session stream. An address without a generation is
    of the worker that answered last.

    `before_read(address, size)`, when set, runs before a read, write, fill or copy of
    worker memory [address, address + size) (a copy's source and destination): the
    session's images (ffibox._images) of that memory write the caller's changes back there
    first, so a read sees what a read in the library would, and a write is not undone by an
    older change of an image written back later. `after_write(address, size, data)`, when
    set, runs after such a write, fill or copy (`data`: the bytes a write wrote, else None):
    the images of that memory take the new bytes, so they read what the worker holds. The
    images' own reads and writes pass `as_is=True`.

    Once the interpreter exits (the stream's `closed_at_exit`), the worker is gone with its
    session: reads give zero bytes (an empty string) and writes, fills and copies do nothing,
    quietly, for the __del__ methods that run then (docs/python.md, "At interpreter exit")."""

    # How far past its start a string read looks for images to write back first.
    STRING_REACH = 64 << 10

    def __init__(self, stream, encode: ValueEncoder) -> None:
        self._stream = stream
        self._encode = encode
        self.lists = True  # the server takes read_memory_list (SessionOpened.memory_lists)
        self.before_read: Optional[Callable[[int, int], None]] = None
        self.after_write: Optional[Callable[[int, int, Optional[bytes]], None]] = None

    def _flush(self, address: int, size: int) -> None:
        if self.before_read is not None:
            self.before_read(address, size)

    def _written(self, address: int, size: int, data: Optional[bytes] = None) -> None:
        if self.after_write is not None:
            self.after_write(address, size, data)

    def _address(self, address: int, generation: Optional[int]):
        return pb.RemoteAddress(address=address, generation=generation or self._stream.generation)

    def read(self, address: int, size: int, generation: Optional[int] = None,
             as_is: bool = False) -> bytes:
        """`size` bytes of worker memory (MemoryFault for a bad address), whatever their
        size: a request for each chunk of up to READ_CHUNK_BYTES that fits in the server's
        largest message."""
        if self._stream.closed_at_exit:
            return bytes(size)
        if not as_is:
            self._flush(address, size)
        chunk = min(READ_CHUNK_BYTES,
                    max(PAGE_BYTES,
                        (self._stream.max_request_bytes or READ_CHUNK_BYTES) - PAGE_BYTES))
        if size <= chunk:
            return self._stream.request(read_memory=pb.ReadMemory(
                address=self._address(address, generation), size=size)).memory.data
        data = bytearray()
        for offset in range(0, size, chunk):
            data += self._stream.request(read_memory=pb.ReadMemory(
                address=self._address(address + offset, generation),
                size=min(chunk, size - offset))).memory.data
        return bytes(data)

    def read_watched(self, address: int, size: int, generation: int,
                     unwatch: Sequence[int] = ()) -> Tuple[bytes, bool]:
        """`size` bytes of worker memory read as they are, and whether the worker watches
        them now: every later call's answer then reports what the library changed there
        (ReadMemory.watch). `unwatch` ends the watches of those addresses first."""
        if self._stream.closed_at_exit:
            return bytes(size), False
        memory = self._stream.request(read_memory=pb.ReadMemory(
            address=self._address(address, generation), size=size, watch=True,
            unwatch=unwatch)).memory
        return memory.data, memory.watched

    def read_list(self, ranges, generation: Optional[int] = None,
                  as_is: bool = False) -> List[bytes]:
        """The bytes of each (address, size) of worker memory in `ranges`, in one request
        per MAX_READS_PER_LIST of them (MemoryFault when one cannot be read)."""
        if self._stream.closed_at_exit:
            return [bytes(size) for _, size in ranges]
        if not as_is:
            for address, size in ranges:
                self._flush(address, size)
        data: List[bytes] = []
        for at in range(0, len(ranges), MAX_READS_PER_LIST):
            data += [read.data for read in self._stream.request(
                read_memory_list=pb.ReadMemoryList(reads=[
                    pb.ReadMemory(address=self._address(address, generation), size=size)
                    for address, size in ranges[at:at + MAX_READS_PER_LIST]])).memory_list.reads]
        return data

    def alloc(self, size: int) -> int:
        """A new block of `size` bytes of worker memory, lasting until it is freed (or
        released with a call, ffibox._twins)."""
        return self._stream.request(alloc_memory=pb.AllocMemory(size=size)).allocated \
            .address.address

    def write(self, address: int, data: bytes, generation: Optional[int] = None,
              as_is: bool = False, held: bool = False, watch: bool = False) -> bool:
        """Writes `data` into worker memory; `held`: what an image holds, so not reported as
        the library's change where the worker watches it (WriteMemory.held); `watch`: the
        lasting block written from its start is watched from now on (WriteMemory.watch).
        Returns whether it is watched (within the worker's budget)."""
        if self._stream.closed_at_exit:
            return False
        if not as_is:
            self._flush(address, len(data))
        done = self._stream.request(write_memory=pb.WriteMemory(
            address=self._address(address, generation), data=data, held=held,
            watch=watch)).done
        if not as_is:
            self._written(address, len(data), data)
        return done.watched

    def write_typed(self, address: int, t, value: Any, generation: Optional[int] = None) -> None:
        """Stores `value` as a `t` at a worker address (a string the worker copies, a
        pointer, a callback)."""
        if self._stream.closed_at_exit:
            return
        self._flush(address, ctypes.sizeof(t))
        self._stream.request(write_memory=pb.WriteMemory(
            address=self._address(address, generation), type=_types.to_proto(t),
            value=self._encode(t, value)))
        self._written(address, ctypes.sizeof(t))

    def read_string(self, address: int, wide: bool = False,
                    generation: Optional[int] = None, length: int = 0, as_is: bool = False):
        """The NUL-terminated (w)char string at a worker address (bytes or str)."""
        if self._stream.closed_at_exit:
            return "" if wide else b""
        if not as_is:
            self._flush(address, length * (4 if wide else 1) if length else self.STRING_REACH)
        try:
            data = self._stream.request(read_string=pb.ReadString(
                address=self._address(address, generation), wide=wide, max_length=length))
            text = data.string.text if wide else data.string.data
        except Error as error:
            if error.code == "RESOURCE_EXHAUSTED" and not length and \
                    "no terminator" in str(error):
                # No terminator within what one read returns (the worker says so).
                raise string_too_long(address, wide) from None
            # A wide string that is no text (a lone surrogate) is not sent as text: its units,
            # decoded as ctypes decodes them.
            if not wide or error.code != "INVALID_ARGUMENT":
                raise
            units = self.wide_units(address, generation,
                                    min(length or MAX_STRING_UNITS, MAX_STRING_UNITS) - 1)
            text = decode_wide(units[:4 * length] if length else units)
        if not length and len(text) >= MAX_STRING_UNITS:
            # The server reads no more: the string is at least that long, never cut short.
            raise string_too_long(address, wide)
        return text

    def wide_units(self, address: int, generation: Optional[int], room: int) -> bytes:
        """The wchar_t units at a worker address up to their terminator, raw (at most
        `room` + 1 of them), for a string the server will not send as text: ctypes decodes
        them when the string is read (keeping a lone surrogate, raising ValueError past
        U+10FFFF). Images written back first are not: the caller did that."""
        units = bytearray()
        at = address
        while len(units) <= 4 * room:
            size = PAGE_BYTES - at % PAGE_BYTES
            chunk = self.read(at, size - size % 4 or 4, generation, as_is=True)
            if len(chunk) < 4:
                raise Error("INTERNAL: the server answered a read of worker memory with %d "
                            "bytes" % len(chunk), "INTERNAL")
            chunk = chunk[:len(chunk) - len(chunk) % 4]
            for offset in range(0, len(chunk), 4):
                if chunk[offset:offset + 4] == b"\0\0\0\0":
                    return bytes(units + chunk[:offset])
            units += chunk
            at += len(chunk)
        return bytes(units[:4 * (room + 1)])

    def fill(self, address: int, byte: int, size: int, generation: Optional[int] = None) -> None:
        """Sets `size` bytes of worker memory to `byte`."""
        if self._stream.closed_at_exit:
            return
        self._flush(address, size)
        self._stream.request(fill_memory=pb.FillMemory(
            address=self._address(address, generation), byte=byte & 0xFF, size=size))
        self._written(address, size)

    def copy(self, destination: int, source: int, size: int,
             generation: Optional[int] = None) -> None:
        """Copies `size` bytes between worker addresses (of the same worker)."""
        if self._stream.closed_at_exit:
            return
        self._flush(source, size)
        self._flush(destination, size)
        self._stream.request(copy_memory=pb.CopyMemory(
            destination=self._address(destination, generation),
            source=self._address(source, generation), size=size))
        self._written(destination, size)
