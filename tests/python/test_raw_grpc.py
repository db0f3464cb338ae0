"""The proto serves a client in another language: plain generated Python stubs, no ffibox
client library, against a real ffiboxd and real workers (docs/protocol.md shows the same)."""
import math

from conftest import TEST_LIB, RawSession


def scalar(pb, name):
    return pb.Type(scalar=pb.Scalar.Value(name))


def resolve(session, pb, library, symbol, result, *params):
    response = session.send(resolve_function=pb.ResolveFunction(
        library=library, symbol=symbol,
        signature=pb.Signature(result=scalar(pb, result),
                               params=[scalar(pb, p) for p in params])))
    assert not response.HasField("error"), response.error
    return response.function.function


def test_cos_from_libm_through_generated_stubs(session, pb):
    loaded = session.send(load_library=pb.LoadLibrary(path="libm.so.6"))
    assert not loaded.HasField("error"), loaded.error
    cos = resolve(session, pb, loaded.library.library, "cos", "DOUBLE", "DOUBLE")
    result = session.send(call=pb.Call(function=cos, args=[pb.Value(float_value=0.0)]))
    assert result.call.result.float_value == 1.0
    result = session.send(call=pb.Call(function=cos, args=[pb.Value(float_value=0.5)]))
    assert result.call.result.float_value == math.cos(0.5)


def test_crash_is_worker_crashed_and_server_keeps_serving(server, session, pb):
    lib = session.send(load_library=pb.LoadLibrary(path=TEST_LIB)).library.library
    crash = resolve(session, pb, lib, "crash_null_deref", "INT")
    response = session.send(call=pb.Call(function=crash))
    assert response.error.code == pb.WORKER_CRASHED
    assert response.error.signal == 11
    assert response.error.function == "crash_null_deref"

    other = RawSession(server.address)
    try:
        libm = other.send(load_library=pb.LoadLibrary(path="libm.so.6")).library.library
        cos = resolve(other, pb, libm, "cos", "DOUBLE", "DOUBLE")
        value = other.send(call=pb.Call(function=cos, args=[pb.Value(float_value=0.0)]))
        assert value.call.result.float_value == 1.0
    finally:
        other.close()
    assert server.process.poll() is None


def test_missing_library_is_a_typed_error(session, pb):
    response = session.send(load_library=pb.LoadLibrary(path="/nonexistent/libnope.so"))
    assert response.error.code == pb.LIBRARY_LOAD_FAILED
    assert "/nonexistent/libnope.so" in response.error.message


def test_bytes_that_are_no_request_end_the_stream_with_invalid_argument(server, pb):
    import grpc
    channel = grpc.insecure_channel(server.address)
    try:
        # A raw stream: field 1 announced as 255 bytes long, then nothing.
        session = channel.stream_stream("/ffibox.v1.Ffibox/Session",
                                        request_serializer=None,
                                        response_deserializer=pb.Response.FromString)
        responses = session(iter([b"\x0a\xff\x01"]))
        try:
            list(responses)
            raise AssertionError("the stream ended without an error")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
            assert "not an ffibox.v1.Request" in error.details()
    finally:
        channel.close()
    # The server still serves.
    other = RawSession(server.address)
    try:
        loaded = other.send(load_library=pb.LoadLibrary(path="libm.so.6"))
        assert not loaded.HasField("error"), loaded.error
    finally:
        other.close()


def test_watch_on_a_block_that_does_not_last_is_refused_and_the_session_goes_on(session, pb):
    lib = session.send(load_library=pb.LoadLibrary(path=TEST_LIB)).library.library
    increment = resolve(session, pb, lib, "increment", "VOID", "POINTER")
    block = pb.MemoryBlock(data=b"\x05\0\0\0", direction=pb.INOUT, watch=True)
    refused = session.send(call=pb.Call(
        function=increment, blocks=[block],
        args=[pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=0)))]))
    assert refused.error.code == pb.INVALID_ARGUMENT
    assert refused.error.field == "call.blocks[0].watch"
    block.keep = True  # kept, it may be watched
    kept = session.send(call=pb.Call(
        function=increment, blocks=[block],
        args=[pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=0)))]))
    assert not kept.HasField("error"), kept.error
    assert kept.call.blocks[0].data == b"\x06\0\0\0" and len(kept.call.kept) == 1


def test_a_block_in_the_shared_area_over_the_stream_is_refused_and_the_session_goes_on(
        session, pb):
    """Only a call on a same-host channel may place a block in its shared area: over gRPC the
    broker refuses it before the worker sees it, naming the field."""
    lib = session.send(load_library=pb.LoadLibrary(path=TEST_LIB)).library.library
    increment = resolve(session, pb, lib, "increment", "VOID", "POINTER")
    block = pb.MemoryBlock(size=4096, direction=pb.INOUT, shared_offset=0)
    refused = session.send(call=pb.Call(
        function=increment, blocks=[block],
        args=[pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=0)))]))
    assert refused.error.code == pb.INVALID_ARGUMENT
    assert refused.error.field == "call.blocks[0].shared_offset"
    block.ClearField("shared_offset")
    block.data = b"\x05\0\0\0"
    framed = session.send(call=pb.Call(
        function=increment, blocks=[block],
        args=[pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=0)))]))
    assert not framed.HasField("error"), framed.error
    assert framed.call.blocks[0].data[:4] == b"\x06\0\0\0"
