"""The memory blocks of one call: client memory a call reaches, and copying it back.

Client memory a pointer argument reaches (byref targets, buffers, arrays, structs, and what
their pointer fields reach through ctypes' keep-alive references) is shipped as memory
blocks, each pointer between them as a relocation, each object at its worker twin
(ffibox._twins). After the call the library's changes, rewired pointers included, are
copied back into the same local objects. ffibox._marshal decides what a value needs; this
module builds the blocks without I/O. Copying back asks ffibox._images for images of worker
memory the library left in typed pointer slots, which reads that memory.
"""
import bisect
import ctypes as _ct
import struct
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

from ffibox import (_addresses, _callback_code, _memory_owners, _remote, _slots, _twins,
                    _types)
from ffibox._stubs import pb
from ffibox.errors import StaleHandle

_CData = _ct._SimpleCData.__mro__[1]
NULL = pb.Value(pointer=pb.PointerValue(null=True))
_WORD = struct.Struct("<Q")
# When the live numpy arrays were last looked for, and where each lay (a weak reference).
_numpy_looked: List[Any] = [float("-inf"), []]
_NUMPY_LOOK_SECONDS = 1.0

_bytes_address = _twins.bytes_address

_wide_kept = _twins.wide_kept


def remote_value(address: int, generation: int):
    """A pointer Value to a worker address (NULL for 0)."""
    if not address:
        return NULL
    return pb.Value(pointer=pb.PointerValue(
        remote=pb.RemoteAddress(address=address, generation=generation)))


def block_value(index: int, offset: int = 0):
    """A pointer Value to `offset` bytes into block `index` of the call."""
    return pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=index, offset=offset)))


# How often pointer_to looks again when another thread's calls keep taking and freeing the
# twin it would place a block at.
_BUSY_LOOKS = 1000


class _Ranges:
    """Ranges of local memory, each with a value, and the first added range holding an
    address. While the non-empty ranges do not overlap (separate objects, adjacent ones
    too: Python's allocator puts equal small buffers side by side), that one is found by
    bisection over their starts, and an empty range by its start: a call reaching
    thousands of strings or records (an array of `char*`, a liblinear problem's rows) does
    not look at all of them for each pointer. Once two overlap (a view shipped before the
    array holding it), every lookup goes through them in order."""

    def __init__(self) -> None:
        self._added: List[Tuple[int, int, Any]] = []  # (start, end, value), in order
        # While disjoint: the non-empty ranges' starts, sorted, and (start, end, order,
        # value) in that order; the first empty range at each start, (order, value).
        self._starts: List[int] = []
        self._sorted: List[Tuple[int, int, int, Any]] = []
        self._empty: Dict[int, Tuple[int, Any]] = {}
        self._disjoint = True

    def add(self, start: int, end: int, value) -> None:
        order = len(self._added)
        self._added.append((start, end, value))
        if not self._disjoint:
            return
        if start == end:
            self._empty.setdefault(start, (order, value))
            return
        at = bisect.bisect_right(self._starts, start)
        for other_start, other_end, _, _ in self._sorted[max(at - 1, 0):at + 1]:
            if max(start, other_start) < min(end, other_end):
                self._disjoint = False
                self._starts, self._sorted, self._empty = [], [], {}
                return
        self._starts.insert(at, start)
        self._sorted.insert(at, (start, end, order, value))

    def find(self, address: int, empty_at: bool = False):
        """The value of the first added range holding `address`; with `empty_at`, also of an
        empty range starting there. None when none does."""
        if not self._disjoint:
            for start, end, value in self._added:
                if start <= address < end or (empty_at and address == start == end):
                    return value
            return None
        found = None
        at = bisect.bisect_right(self._starts, address) - 1
        if at >= 0:
            start, end, order, value = self._sorted[at]
            if start <= address < end:
                found = (order, value)
        if empty_at:
            empty = self._empty.get(address)
            if empty is not None and (found is None or empty[0] < found[0]):
                found = empty
        return None if found is None else found[1]


class CallBuilder:
    """The blocks of one call, and how to copy them back into client memory."""

    def __init__(self, twins, images, generation: Callable[[], int]) -> None:
        """Blocks placed at the twins of `twins` (ffibox._twins.TwinTable), pointer slots
        holding images of `images` (ffibox._images.ImageTable) sent as their worker
        addresses; `generation` tells the session's current worker generation."""
        self._twins = twins
        self._images = images
        self._generation = generation
        # The call's blocks, made inside `call`, the Call of `request` that is sent: a
        # block's bytes are not copied again into the request.
        self.request = pb.Request()
        self.call = self.request.call
        self.blocks: List[Any] = []
        self._payloads: List[bytes] = []  # block index -> the bytes it was made with
        self._extents = _Ranges()  # local memory shipped -> (its start, block index)
        self._owners: List[Any] = []                        # block index -> local object
        self._starts: List[int] = []  # block index -> where its local memory starts (or 0)
        # block index -> {offset: the caller's own word} for pointer slots sent as worker
        # addresses (images), restored after the call unless the library changed them.
        self._own_words: Dict[int, Dict[int, int]] = {}
        # block index -> {offset: the callback's local code address} for slots the worker
        # stores a callback's closure in (Relocation.callback), which get that address back
        # after the call unless the library changed them.
        self._callback_words: Dict[int, Dict[int, int]] = {}
        self._candidates = _Ranges()  # local memory the call may reach -> the object
        self._collected: set = set()  # id() of each object in _candidates (held there)
        self._sources: Dict[int, int] = {}  # id(bytes or str shipped) -> block index
        self.twins_used: List[Any] = []  # twins the blocks are placed at (busy in flight)
        self.keeping: List[Any] = []  # owners whose blocks this call asks the worker to keep
        # Addresses of this process the call passes as plain integers (arguments, pointer
        # fields): the library may only hand them back (user data); used as memory, the
        # worker faults near one (crash_hint).
        self.local_integers: List[int] = []
        # (start, size, weak reference) of the live numpy arrays, once a slot needs them.
        self._numpy_extents: Optional[List[Tuple[int, int, Any]]] = None
        # block index -> {offset: (block of the copy, the caller's word)} for char* slots
        # holding the address of a bytes object's text, sent as a copy of it (_relocate).
        self._bytes_words: Dict[int, Dict[int, Tuple[int, int]]] = {}
        # block index -> {offset: the object its pointer there reaches (a block's owner, a
        # callback)}, which its owner pins once the worker has its block (copy_back).
        self._pins: Dict[int, Dict[int, Any]] = {}

    # -- building --------------------------------------------------------------------------

    def add_object(self, obj) -> Optional[int]:
        """Ships the memory of ctypes object `obj` (all of its owner's buffer, which has one
        worker twin, and what its pointers reach) INOUT; the block index. None when its twin
        is busy (a call in flight works on it: see pointer_to)."""
        self.reach_from(obj)
        obj = _memory_owners.memory_owner(obj, self._twins)
        start = _ct.addressof(obj)
        if self._twins.busy_worker_address(start) is not None:
            return None
        found = self._shipped(start)
        if found is not None and found[1] == 0 and _ct.sizeof(obj) <= len(
                self._payloads[found[0]]):
            return found[0]
        size = _ct.sizeof(obj)
        slots = _types.pointer_offsets(type(obj))
        _types.guard_unions(type(obj))  # the library's words stay raw in unions
        # Which slots go as worker addresses is settled before the block takes its twin,
        # which is busy from then on: a slot pointing into this same object (a list linked
        # inside an array) is relocated to the block, as its bytes were written.
        mapped: set = set()
        data = self._images.worker_bytes(start, size, slots, mapped)
        index = self._new_block(start, size, obj, data, pb.INOUT)
        self._collect(getattr(obj, "_objects", None))
        for view in _memory_owners.views_of(obj):  # made on its memory: what they keep
            self._collect(getattr(view, "_objects", None))
        for offset, ptype in slots:
            word = _types.word_at(start + offset).value
            if offset in mapped:  # sent as a worker address
                self._own_words.setdefault(index, {})[offset] = word
            elif word:
                self._relocate(index, offset, ptype, word)
        return index

    def reach_from(self, obj) -> None:
        """Lets this call ship the memory that ctypes object `obj` keeps alive (its pointer
        fields' targets), as pointers to it are met."""
        # Memory `obj` lies in first (the first range holding an address ships it): the
        # outermost object it was made on with from_buffer whose type has the pointer slots
        # there, else its own base; never memory made of plain bytes or integers, whose
        # pointers would reach the worker as this process's addresses.
        owner = _twins.owner_of(obj)
        exporters = _memory_owners.buffer_exporters(owner)
        self._collect(tuple(exporter for exporter in reversed(exporters)
                            if _memory_owners.slots_within(owner, exporter)) + (owner,))
        # What the view's bases keep alive too (ctypes files a field's keep-alive references
        # under the view's root, which may be a pointer: p.contents.buf = cast(b, ...)).
        view = obj
        while view is not None:
            self._collect(getattr(view, "_objects", None))
            view = getattr(view, "_b_base_", None)
        # And the other objects it was made on, for memory outside those, and what they keep
        # alive (a record passed by value that is a view of another: `f(Node.from_buffer(n))`).
        if exporters:
            self._collect(tuple(exporters))
            for exporter in exporters:
                self._collect(getattr(exporter, "_objects", None))

    def add_bytes(self, data: bytes, terminator: bytes = b"\0", source=None) -> int:
        """Ships bytes (plus a terminator) at the worker twin of `source` (the str they
        encode; by default the bytes themselves), so a library that keeps the pointer reads
        the same string in later calls, as with ctypes; the block index. A bytes object goes
        INOUT: C writes into it in place with ctypes (pysodium keeps a stream's state in
        one), and what the library wrote there is written into it after the call
        (copy_back; the block comes back only then); the encoding of a str is a copy with
        ctypes too, IN."""
        source = data if source is None else source
        index = self._sources.get(id(source))
        if index is not None:
            return index
        start = _bytes_address(data) if source is data else 0
        index = self._new_block(start, len(data) + len(terminator), source, data + terminator,
                                pb.INOUT if source is data else pb.IN)
        if source is data:
            self.blocks[index].only_if_changed = True  # as a rule, they come back as they went
        self._sources[id(source)] = index
        return index

    def add_wide(self, capsule) -> int:
        """Ships the wchar_t string a c_wchar_p set from a str keeps alive (its capsule:
        _twins.wide_kept) IN, at its twin, as add_bytes does bytes; the block index."""
        index = self._sources.get(id(capsule))
        if index is not None:
            return index
        data = _twins.wide_kept_bytes(capsule)
        index = self._new_block(_wide_kept(capsule), len(data), capsule, data, pb.IN)
        self._sources[id(capsule)] = index
        return index

    def _new_block(self, start: int, size: int, owner, data: bytes, direction) -> int:
        index = len(self.blocks)
        block = self.call.blocks.add(data=data, size=size, direction=direction)
        if owner is not None:
            twin = self._twins.place(block, owner, size, self._generation())
            if twin is not None:
                self.twins_used.append(twin)
            elif block.keep:
                self.keeping.append(owner)
        self.blocks.append(block)
        self._payloads.append(data)
        self._owners.append(owner)
        self._starts.append(start)
        if start:
            self._extents.add(start, start + size, (start, index))
        return index

    def _collect(self, keep) -> None:
        for item in _memory_owners.kept_alive(keep):
            if id(item) in self._collected:
                continue
            array = _memory_owners.numpy_array_of(item)
            if array is not None:
                # A numpy array a pointer was made from (its `arr.ctypes`, which a cast of it
                # keeps; data_as's pointer, through the c_void_p numpy keeps it in): its
                # memory, as for the pointer data_as makes (_marshal._keep_of).
                self._collected.add(id(item))
                item = _memory_owners.numpy_memory(array)
                if id(item) in self._collected:
                    continue
            if issubclass(type(item), _CData):
                start = _ct.addressof(item)
                self._candidates.add(start, start + _ct.sizeof(item), item)
                # A view's base holds memory around it a pointer made from the view may
                # reach (`cast(byref(a[0], size), ...)` into a[1]).
                base = _twins.owner_of(item)
                if base is not item and id(base) not in self._collected:
                    start = _ct.addressof(base)
                    self._candidates.add(start, start + _ct.sizeof(base), base)
                    self._collected.add(id(base))
            elif isinstance(item, bytes):
                start = _bytes_address(item)
                self._candidates.add(start, start + len(item) + 1, item)
            elif _wide_kept(item):
                start = _wide_kept(item)
                self._candidates.add(start, start + len(_twins.wide_kept_bytes(item)), item)
            else:
                continue
            self._collected.add(id(item))

    def _shipped(self, address: int) -> Optional[Tuple[int, int]]:
        found = self._extents.find(address, empty_at=True)
        return None if found is None else (found[1], address - found[0])

    def locate(self, address: int) -> Optional[Tuple[int, int]]:
        """(block, offset) of a local address inside client memory this call ships."""
        found = self._shipped(address)
        if found is not None:
            return found
        item = self._candidates.find(address)
        if item is not None:
            if isinstance(item, bytes):
                return self.add_bytes(item), address - _bytes_address(item)
            if _wide_kept(item):
                return self.add_wide(item), address - _wide_kept(item)
            self.add_object(item)
            return self._shipped(address)
        # An object an earlier call reached (a library may have linked to it since).
        owner = self._twins.owner_at(address)
        if isinstance(owner, bytes):
            return self.add_bytes(owner), address - _bytes_address(owner)
        if _wide_kept(owner):
            return self.add_wide(owner), address - _wide_kept(owner)
        if owner is not None:
            self.add_object(owner)
            return self._shipped(address)
        return None

    def _relocate(self, index: int, offset: int, ptype, word: int) -> None:
        target = self.locate(word)
        if target is None and self._relocate_callback(index, offset, word):
            return
        if target is None and _types.code_of(ptype) == "z" and _slots.is_local(word):
            # A char* holding the address of a Python bytes object's text (`cast(c_char_p(b),
            # c_void_p).value`, as PyOpenGL's string arrays are made): a copy of that text
            # goes for the call, as the bytes themselves would; the slot keeps the caller's
            # word unless the library changes it (copy_back).
            text = _addresses.local_bytes_text(word)
            if text is not None:
                # A block of this call alone (no twin: nothing local stands for it after).
                copy = self._new_block(0, len(text) + 1, None, text + b"\0", pb.IN)
                self._bytes_words.setdefault(index, {})[offset] = (copy, word)
                target = (copy, 0)
        if target is None and _types.is_pointer(ptype) and _slots.is_local(word):
            # A typed pointer into a numpy array that nothing keeps here (gmsh stores
            # `cast(arr.ctypes, POINTER(c_double))`, or data_as's pointer, in an array of
            # pointers, where their hold on the array is lost): that array's memory, found
            # among the live ones.
            array = self._live_numpy_array_at(word)
            if array is not None:
                self._collect(_memory_owners.numpy_memory(array))
                target = self.locate(word)
        if target is None:
            if self._images.of_another_session(word):
                raise ValueError("ffibox: a pointer field holds memory of another session's "
                                 "worker")
            # Not client memory this call knows: left as it is. An address of this process
            # there is the caller's own user data (`(c_void_p * 2)(addressof(x))`), as a
            # plain integer argument is: when the library moves it and it comes back, it
            # must not be taken for the worker's, nor make the caller's memory near it so.
            if _slots.is_local(word):
                _addresses.note_local_address(word)
                self.local_integers.append(word)
                return
            # A handle a worker gave back as an integer (a c_void_p result) stored in an
            # array or a record: a dead worker's is refused, as that argument alone would be
            # (it would reach the next worker as a wild address).
            session = self._session()
            handed = session._handed_by(word) if session is not None and word else None
            if handed is not None and handed != session.generation:
                raise StaleHandle("STALE_HANDLE: 0x%x, stored in memory this call passes, was "
                                  "handed back by worker generation %d, which is gone (the "
                                  "session's worker is generation %d now)"
                                  % (word, handed, session.generation), "STALE_HANDLE")
            return
        self.blocks[index].relocations.add(
            offset=offset, target=pb.BlockRef(block=target[0], offset=target[1]))
        reached = self._owners[target[0]]
        if reached is not None:
            self._pins.setdefault(index, {})[offset] = reached

    def _live_numpy_array_at(self, word: int):
        """The live numpy array whose memory holds `word`, else None: among those ffibox has
        met (a cast of `arr.ctypes`, a `data_as` pointer passed), then among those this
        process holds, looked for at most once a second (user data a struct passes on every
        call, at a new address each time, costs no look of every object each call)."""
        array = _memory_owners.known_numpy_array_at(word)
        if array is not None:
            return array
        if self._numpy_extents is None:
            now = time.monotonic()
            if now - _numpy_looked[0] >= _NUMPY_LOOK_SECONDS:
                _numpy_looked[:] = [now, [(array.__array_interface__["data"][0], array.nbytes,
                                           weakref.ref(array))
                                          for array in _addresses.live_numpy_arrays()]]
            self._numpy_extents = _numpy_looked[1]
        for start, size, ref in self._numpy_extents:
            if start <= word < start + size:
                array = ref()
                if array is not None:
                    return array
        return None

    def _relocate_callback(self, index: int, offset: int, word: int) -> bool:
        """Whether `word` is the local code address of a callback (a structure's function
        pointer field it was stored in), which the worker then stores its closure in
        instead."""
        callback = _callback_code.local_callbacks.get(word)
        session = self._session()
        if callback is None or session is None:
            return False
        self.blocks[index].relocations.add(offset=offset, callback=session.callback_id(callback))
        self._callback_words.setdefault(index, {})[offset] = word
        self._pins.setdefault(index, {})[offset] = callback
        return True

    def _session(self):
        return self._images.session() if self._images.session is not None else None

    def _callback_kept(self, local: int, word: int, generation: int) -> bool:
        """Whether `word`, found where the caller holds callback code address `local`, is the
        closure the worker of `generation` made for that callback (the library left the slot
        as it was). A worker started since the callback was defined made it again elsewhere
        (the broker's replay tells the client nothing): the first word found then is taken
        for it, and known from then on."""
        callback = _callback_code.local_callbacks.get(local)
        session = self._session()
        if not word or callback is None or session is None:
            return False
        return session.closure_is(callback, word, generation)

    def pointer_to(self, obj, offset: int = 0):
        """A pointer Value to `offset` bytes into local ctypes object `obj` (its worker
        address, unsynced, when a call in flight works on its twin). Inside an image of
        worker memory (`out.contents`, a field or element of it), that worker address, as
        local_pointer sends a pointer into one: the library gets its own object, not a copy
        of the caller's (smaller, when the caller declared less of the record than there
        is); the caller's changes to the image reach it before the call (ImageTable.sync)."""
        mapped = self._images.image_address(_ct.addressof(obj) + offset)
        if mapped is not None:
            return remote_value(*mapped)
        for _ in range(_BUSY_LOOKS):
            busy = self._twins.busy_worker_address(_ct.addressof(obj))
            if busy is not None:
                return remote_value(busy[0] + offset, busy[1])
            index = self.add_object(obj)
            if index is not None:
                break
            # Another thread's call made the twin busy in between: its worker address.
        else:
            # The twin is busy and does not hold `obj` (an object resized since): no address
            # of it in the worker until that call is over.
            raise ValueError("ffibox: the memory of this argument is in use by a call of "
                             "another thread")
        # Where `obj` is in the block add_object gave (another block shipped earlier may
        # also hold its memory: a record made over a char buffer).
        return block_value(index, _ct.addressof(obj) - self._starts[index] + offset)

    def worker_integer(self, address: int) -> Optional[int]:
        """The worker address of local `address` when it lies in an image of the current
        worker's memory, or in a twinned object (which the call then ships, synced, at its
        twin), or is the code of one of this process's callbacks (its closure: a callback's
        address handed back by the library, passed on as an integer), else None."""
        callback = _callback_code.local_callbacks.get(address)
        if callback is not None:
            session = self._session()
            return None if session is None else session.closure_address(callback)
        mapped = self._images.image_address(address)
        if mapped is not None:
            return mapped[0] if mapped[1] == self._generation() else None
        found = self._twins.twin_at(address)
        if found is None or _twins.held_strongly(found[0]):
            return None
        owner, twin = found
        if not twin.busy:
            index = self.add_object(owner)
            if index is None or not self.blocks[index].HasField("at"):
                return None
        return twin.worker + (address - twin.local)

    def reach(self, keep) -> None:
        """Lets this call ship the objects `keep` (ctypes' keep-alive references of a cast
        result) holds, as pointers into them are met (locate)."""
        self._collect(keep)

    def local_pointer_via(self, address: int, keep):
        """local_pointer for an address whose memory `keep` holds (reach)."""
        self.reach(keep)
        return self.local_pointer(address)

    def knows(self, address: int) -> bool:
        """Whether local_pointer would send `address` as client memory (shipped, reachable
        or twinned) or as the worker address of an image, rather than as it is."""
        return (self._images.worker_address(address) is not None or
                self._shipped(address) is not None or
                self._candidates.find(address) is not None or
                self._twins.owner_at(address) is not None)

    def local_pointer(self, address: int):
        """A pointer Value for a local pointer's value; remote when not client memory."""
        if not address:
            return NULL
        mapped = self._images.worker_address(address)
        if mapped is not None:
            return remote_value(*mapped)
        target = self.locate(address)
        if target is None:
            return remote_value(address, self._generation())
        return block_value(target[0], target[1])

    # -- copying back ----------------------------------------------------------------------

    def apply_changes(self, changed, generation: int) -> None:
        """Writes what the library changed in watched twins outside this call
        (`CallResult.changed`: runs of words it wrote through a pointer it kept) into their
        owners, a bytes object's included (never past its last byte: not its terminator),
        as ctypes would have seen the library's writes; what the caller changed elsewhere in
        the object stays. Pointer slots are rewired as copy_back rewires them. A run that is
        not inside a live twin of `generation` that no call in flight uses is ignored: what
        the worker says is not trusted."""
        budget = None
        for entry in changed:
            start, data = entry.offset, entry.data
            end = start + len(data)
            found = self._twins.watched(entry.address.address, entry.address.generation, end)
            if found is None or entry.address.generation != generation:
                continue
            owner, twin = found
            if len(data) % 8 and end != twin.size:
                continue  # a run is whole words but at the block's end: not a pointer's half
            if isinstance(owner, bytes):
                _twins.write_into_bytes(owner, data, start)
                continue
            if _wide_kept(owner):
                if start < twin.size:
                    _ct.memmove(twin.local + start, data, min(end, twin.size) - start)
                continue
            if isinstance(owner, str):
                continue
            slots = [(offset, ptype) for offset, ptype in _types.pointer_offsets(type(owner))
                     if start <= offset and offset + 8 <= end]
            held = {offset: _types.word_at(twin.local + offset).value or 0
                    for offset, _ in slots}
            _ct.memmove(twin.local + start, data, len(data))
            certain = {off for off, _ in _types.pointer_offsets(type(owner), unions=False)}
            live_string = _types.is_fundamental(type(owner)) and \
                _types.code_of(type(owner)) in ("z", "Z")
            for offset, ptype in slots:
                word = _WORD.unpack_from(data, offset - start)[0]
                if not word or word == held[offset]:
                    continue
                if self._callback_kept(held[offset], word, generation):
                    _types.word_at(twin.local + offset).value = held[offset]  # the callback's
                    continue
                local = self._twins.local(word, generation)
                if local is not None:  # into caller memory: the caller's own object
                    _types.word_at(twin.local + offset).value = local[1]
                    if _remote.TARGET in getattr(owner, "__dict__", ()):  # a RemotePointer's slot
                        owner.__dict__[_remote.TARGET] = local[0]
                elif self._images.worker_address(held[offset]) == (word, generation):
                    _types.word_at(twin.local + offset).value = held[offset]  # its image
                elif live_string:
                    # A `c_char_p` object reads a worker address in the worker each time
                    # (ffibox.ctypes): the library may change the string again later
                    # without changing the pointer (open_memstream until fclose).
                    _addresses.note_worker_address(word)
                elif offset in certain:
                    budget = budget or self._images.budget()
                    self._image_slot(owner, twin.local, offset, ptype, word, generation, budget)

    def _image_slot(self, owner, start: int, offset: int, ptype, word: int, generation: int,
                    budget) -> None:
        """Points the slot at `offset` of `owner` (whose memory starts at `start`), which
        the library set to worker address `word`, at an image of its typed pointee; void*
        and function pointers stay worker addresses."""
        local = self._images.bind(owner, offset, ptype, word, generation, budget)
        if local is not None:
            _types.word_at(start + offset).value = local
        else:
            _addresses.note_worker_address(word)
            # A handle (void*) the library stored: stale once its worker is gone.
            session = self._session()
            if session is not None:
                session.remember_handed(word, generation)

    def crash_hint(self, fault_address: int) -> str:
        """What to add to the crash of this call at `fault_address` when the worker faulted
        at or just past an address of this process the call passed as a plain integer, or at
        any address this process has mapped (the worker's own memory lies elsewhere, but an
        address may be both: a guess, worded as one); "" otherwise."""
        for address in self.local_integers:
            if address - 4096 <= fault_address < address + (1 << 20):
                return (" (0x%x is an address of this process, passed to the library as a "
                        "plain integer: the worker cannot reach this process's memory. Pass "
                        "the object instead: a ctypes object, a numpy array's "
                        "arr.ctypes.data_as(...) or numpy.ctypeslib.as_ctypes(arr))"
                        % address)
        if fault_address >= 4096 and _addresses.locally_mapped(fault_address):
            # Not one the call passed as such, but memory this process has there: an address
            # of this process that reached the library another way (inside a string, as
            # xgboost's numpy path writes its arrays' addresses into JSON).
            return (" (0x%x is mapped in this process: the library may have been given an "
                    "address of this process's memory some way ffibox cannot see, such as "
                    "written in a string; the worker cannot reach this process's memory)"
                    % fault_address)
        return ""

    def kept_early(self, kept, generation: int) -> None:
        """Where the worker placed the blocks this call asked it to keep, told by the call's
        first invocation (CallbackInvoke.kept) while the call runs: each owner's twin is
        recorded now, as copy_back records it, busy until the call is answered, so that a
        pointer to the owner that a callback stores for the library (ffibox.
        _callback_pointers) is its block's worker address, not a second copy. Entries of
        another generation, repeated ones, and ones naming blocks not kept are ignored (on
        the same-host channel nothing checked them before)."""
        seen = set()
        for told in kept:
            index = told.block
            if index in seen or index >= len(self.blocks) or not self.blocks[index].keep or \
                    not told.address.address or told.address.generation != generation:
                continue
            seen.add(index)
            twin = self._twins.kept(self._owners[index], self.blocks[index].size,
                                    told.address.address, generation, busy=True)
            self.twins_used.append(twin)

    def answered(self) -> None:
        """The call is no longer in flight (answered, or failed): its twins are no longer
        busy. Idempotent."""
        self._twins.unhold(self.twins_used)
        self.twins_used = []

    def done(self) -> None:
        """The call is over, its answer copied back or never coming: `answered`, and owners
        whose blocks it asked to keep may be kept by other calls (`copy_back` recorded the
        twins of those the worker kept). Idempotent."""
        self.answered()
        self._twins.keeps_done(self.keeping)
        self.keeping = []

    def copy_back(self, result, generation: int) -> None:
        """Writes the OUT/INOUT blocks of `result` into the local objects they came from.

        A pointer slot the library left as it was gets the caller's own value back; one it
        pointed into memory this call shipped is rewired to the local object; one it set to
        other worker memory gets a local image of the typed pointee (ffibox._images), never
        the raw worker address."""
        for kept in result.kept:
            owner = self._owners[kept.block] if kept.block < len(self._owners) else None
            if owner is not None:  # kept by the worker that answered, whatever it says
                self._twins.kept(owner, self.blocks[kept.block].size, kept.address.address,
                                 generation)
        # The worker holds the blocks as this call sent them: each owner keeps what they point
        # to, until a later call sends its block again (ffibox._twins.PINS).
        for index, owner in enumerate(self._owners):
            if owner is not None and (index in self._pins or
                                      _twins.PINS in getattr(owner, "__dict__", ())):
                _twins.pin(owner, self._pins.get(index))
        budget = self._images.budget()
        for contents in result.blocks:
            owner = self._owners[contents.block] if contents.block < len(self._owners) else None
            if type(owner) is bytes:
                _twins.write_into_bytes(owner, contents.data)
                continue
            if owner is None or _twins.held_strongly(owner):
                continue
            start = _ct.addressof(owner)
            data = contents.data[:_ct.sizeof(owner)]
            _ct.memmove(start, data, len(data))
            remote_slot = _remote.TARGET in getattr(owner, "__dict__", ())
            if remote_slot:  # a RemotePointer's slot: which caller object it holds is told below
                owner.__dict__[_remote.TARGET] = None
            relocated = {p.offset: p.target for p in contents.pointers}
            sent = self._payloads[contents.block]
            own_words = self._own_words.get(contents.block, {})
            callback_words = self._callback_words.get(contents.block, {})
            bytes_words = self._bytes_words.get(contents.block, {})
            # Words inside unions may be another member's bytes: only rewired, never imaged.
            certain = {off for off, _ in _types.pointer_offsets(type(owner), unions=False)}
            for offset, ptype in _types.pointer_offsets(type(owner)):
                local = callback_words.get(offset)
                if local is not None and offset + 8 <= len(data) and self._callback_kept(
                        local, _WORD.unpack_from(data, offset)[0], generation):
                    _types.word_at(start + offset).value = local
                    continue
                target = relocated.get(offset)
                copied = bytes_words.get(offset)
                if copied is not None and target is not None and target.block == copied[0]:
                    # Still into the copy of a bytes object's text (where the library may have
                    # moved it, strsep): that place of the caller's own bytes.
                    _types.word_at(start + offset).value = copied[1] + target.offset
                    continue
                if target is None and offset not in certain:
                    continue
                into_text = target is not None and target.block < len(self._owners) and \
                    isinstance(self._owners[target.block], str)
                if (target is None or into_text) and offset + 8 <= len(data):
                    # Not into caller memory (a str's encoding is the worker's own copy).
                    returned = _WORD.unpack_from(data, offset)[0]
                    unchanged = not into_text and offset + 8 <= len(sent) and \
                        returned == _WORD.unpack_from(sent, offset)[0]
                    # An image of a string the library may have rewritten in place (getline's
                    # reused buffer) is made again, of what the string holds now.
                    stale = offset in own_words and _types.code_of(ptype) in ("z", "Z") and \
                        self._images.find(own_words[offset]) is not None
                    if unchanged and not stale:
                        if offset in own_words:
                            _types.word_at(start + offset).value = own_words[offset]
                    elif returned:
                        self._image_slot(owner, start, offset, ptype, returned, generation,
                                         budget)
                    continue
                if target is None or target.block >= len(self._owners):
                    continue
                target_owner = self._owners[target.block]
                if target_owner is None:
                    continue
                base = (_bytes_address(target_owner) if isinstance(target_owner, bytes)
                        else _wide_kept(target_owner) or _ct.addressof(target_owner))
                _types.word_at(start + offset).value = base + target.offset
                if remote_slot and issubclass(type(target_owner), _CData):
                    owner.__dict__[_remote.TARGET] = target_owner
