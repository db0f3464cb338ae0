"""A large message costs the broker about its own size, not a multiple of it.

A call whose block carries 40 MiB, or 60 MiB (past the 50 MB that protobuf reserves for a
field it parses from pieces), to the worker (IN), back from it (OUT) or both ways (INOUT),
through a real ffiboxd and a real worker. The broker's peak resident memory over the
call (VmHWM, reset through /proc/PID/clear_refs just before it) may exceed what it held
before by at most 1.25 times the block, plus a little for gRPC's and the allocator's own
buffers. And a request that would take far more than its size once parsed is refused from
its bytes. Each direction has its copies to avoid: gRPC's received bytes beside their parse,
the frame for the worker beside the parsed request, the worker's frame beside its parse, and
gRPC's encoding of the response beside the response.
"""
import queue
import time

import grpc
import pytest

import ffibox
import ffibox.ctypes as fctypes
from conftest import TEST_LIB, PeakRss, Server, varint

MIB = 1 << 20
SIZES = [40 * MIB, 60 * MIB]
SLACK = 8 * MIB  # gRPC's read and write buffers, allocator rounding, the worker's ring


class Session:
    def __init__(self, address, pb, pb_grpc):
        self.pb = pb
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])
        import queue
        self.requests = queue.Queue()
        self.responses = pb_grpc.FfiboxStub(self.channel).Session(iter(self.requests.get, None))
        self.next_id = 1

    def send(self, **op):
        request = self.pb.Request(id=self.next_id, **op)
        self.next_id += 1
        self.requests.put(request)
        for response in self.responses:
            if response.id == request.id:
                assert not response.HasField("error"), response.error
                return response
        raise AssertionError("stream ended")

    def close(self):
        self.requests.put(None)
        self.channel.close()


@pytest.fixture(scope="module")
def setup():
    from ffibox.v1 import ffibox_pb2 as pb, ffibox_pb2_grpc as pb_grpc
    limit = "%d" % (max(SIZES) + 4 * MIB)
    server = Server("--max_message_bytes=" + limit, "--max_block_bytes=" + limit)
    session = Session(server.address, pb, pb_grpc)
    libc = session.send(load_library=pb.LoadLibrary(path="libc.so.6")).library.library

    def resolve(symbol, result):
        scalar = lambda name: pb.Type(scalar=pb.Scalar.Value(name))  # noqa: E731
        return session.send(resolve_function=pb.ResolveFunction(
            library=libc, symbol=symbol, signature=pb.Signature(
                result=scalar(result), params=[scalar("POINTER"), scalar("INT"),
                                               scalar("SIZE_T")]))).function.function

    functions = {"memchr": resolve("memchr", "POINTER"), "memset": resolve("memset", "POINTER")}
    yield server, session, pb, functions
    session.close()
    server.stop()


def broker_peak_over(server, action):
    """The broker's resident memory at its peak during `action`, over what it held before."""
    with PeakRss(server.process.pid) as rss:
        result = action()
    return (rss.peak - rss.before) * MIB, result


def call(setup, function, direction, size, data, fill):
    server, session, pb, functions = setup
    block = pb.MemoryBlock(data=data, size=size, direction=direction)
    return session.send(call=pb.Call(
        function=functions[function], blocks=[block],
        args=[pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=0))),
              pb.Value(int_value=fill), pb.Value(uint_value=size)]))


def check_peak(peak, size, what):
    assert peak <= 1.25 * size + SLACK, "%s of %d MiB: the broker's peak grew by %.2fx" % (
        what, size // MIB, peak / size)


@pytest.mark.parametrize("size", SIZES)
def test_a_large_request_costs_the_broker_about_its_size(setup, size):
    server, _, pb, _ = setup
    call(setup, "memchr", pb.IN, size, b"\0" * size, 1)  # the first of its size warms pools
    peak, response = broker_peak_over(server, lambda: call(setup, "memchr", pb.IN, size,
                                                           b"\0" * size, 1))
    assert response.call.result.pointer.HasField("null")  # memchr read all of it
    check_peak(peak, size, "IN")


@pytest.mark.parametrize("size", SIZES)
def test_a_large_reply_costs_the_broker_about_its_size(setup, size):
    server, _, pb, _ = setup
    call(setup, "memset", pb.OUT, size, b"", 7)
    peak, response = broker_peak_over(server, lambda: call(setup, "memset", pb.OUT, size,
                                                           b"", 7))
    assert response.call.blocks[0].data == b"\7" * size
    check_peak(peak, size, "OUT")


@pytest.mark.parametrize("size", SIZES)
def test_a_large_block_both_ways_costs_the_broker_about_its_size(setup, size):
    server, _, pb, _ = setup
    call(setup, "memset", pb.INOUT, size, b"\1" * size, 9)
    peak, response = broker_peak_over(server, lambda: call(setup, "memset", pb.INOUT, size,
                                                           b"\1" * size, 9))
    assert response.call.blocks[0].data == b"\x09" * size
    check_peak(peak, size, "INOUT")


def test_a_request_that_would_parse_into_far_more_memory_is_refused_unparsed(setup):
    """15 MiB of empty memory blocks in one call: two bytes each on the wire, an object each
    once parsed (about 1 GiB). The broker refuses the request from its bytes, answering its
    id (sent after the call, as protobuf allows) with RESOURCE_EXHAUSTED, and the session
    goes on. Parsed first, it took the broker about 800 MiB and 14 s."""
    server, session, pb, functions = setup
    channel = grpc.insecure_channel(server.address)
    requests = queue.Queue()
    responses = channel.stream_stream(
        "/ffibox.v1.Ffibox/Session", request_serializer=None,
        response_deserializer=pb.Response.FromString)(iter(requests.get, None))
    try:
        field = lambda message, name: message.DESCRIPTOR.fields_by_name[name].number  # noqa: E731
        empty_block = bytes([field(pb.Call, "blocks") << 3 | 2, 0])
        body = (bytes([field(pb.Call, "function") << 3]) + varint(functions["memchr"]) +
                empty_block * (15 * MIB // 2))
        request = (bytes([field(pb.Request, "call") << 3 | 2]) + varint(len(body)) + body +
                   pb.Request(id=7).SerializeToString())
        with PeakRss(server.process.pid) as rss:
            started = time.monotonic()
            requests.put(request)
            response = next(responses)
            seconds = time.monotonic() - started
        assert response.id == 7 and response.error.code == pb.RESOURCE_EXHAUSTED, response
        assert response.error.message.startswith("request would take more than %d bytes once "
                                                 "parsed: send large arrays and records as raw "
                                                 "bytes" % (8 * (max(SIZES) + 4 * MIB)))
        assert rss.peak - rss.before < 64, "the broker grew by %.0f MiB" % (
            rss.peak - rss.before)
        assert seconds < 5, "refused after %.1f s" % seconds
        requests.put(pb.Request(id=8, ping=pb.Ping()).SerializeToString())
        assert next(responses) == pb.Response(id=8, done=pb.Done())
    finally:
        requests.put(None)
        channel.close()


def test_a_record_holding_a_pointer_reaches_its_target_and_sends_its_arrays_as_bytes():
    """A record passed by value that holds a pointer travels field by field: the bytes its
    char* points to as a block of their own (the library reads them), and a 64 KiB array in
    it as its bytes. Element by element, the array would be about 83 KB on the wire and take
    the broker about 1 MiB once parsed: more than eight times the 100 KiB this server allows
    a request, so the call would be refused."""
    server = Server("--max_message_bytes=%d" % (100 << 10))
    try:
        client = ffibox.connect(server.address)
        lib = client.session(same_host=False).CDLL(TEST_LIB)  # through the broker

        class Tagged(fctypes.Structure):
            _fields_ = [("name", fctypes.c_char_p), ("values", fctypes.c_int * 16384)]

        tagged_sum = lib.tagged_sum
        tagged_sum.argtypes = [Tagged]
        tagged_sum.restype = fctypes.c_long
        tagged = Tagged(b"four")
        tagged.values[:] = range(16384)
        assert tagged_sum(tagged) == len(b"four") + 16383 * 16384 // 2
        client.close()
    finally:
        server.stop()
