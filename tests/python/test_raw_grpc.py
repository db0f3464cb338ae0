"""The proto serves a client in another language: plain generated Python stubs, no ffibox
client library, against a real ffiboxd and real workers (docs/protocol.md shows the same)."""
import math
import time

from conftest import TEST_LIB, RawSession, Server


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


def cos_signature(pb):
    return pb.Signature(result=scalar(pb, "DOUBLE"), params=[scalar(pb, "DOUBLE")])


def test_a_session_start_sent_in_one_go_names_earlier_requests_by_id(session, pb):
    # The load, the resolve, a lookup and the calls written before any answer is read: the
    # later requests name the library and the function by the ids of the requests that make
    # them (docs/protocol.md, "Pipelined requests").
    load_id = session.next_id
    ids, (loaded, resolved, found, called, batched) = session.pipeline(
        {"load_library": pb.LoadLibrary(path="libm.so.6")},
        {"resolve_function": pb.ResolveFunction(library_request=load_id, symbol="cos",
                                                signature=cos_signature(pb))},
        {"lookup_symbol": pb.LookupSymbol(library_request=load_id, symbol="cos")},
        {"call": pb.Call(function_request=load_id + 1, args=[pb.Value(float_value=0.5)])},
        {"batch": pb.Batch(calls=[pb.Call(function_request=load_id + 1,
                                          args=[pb.Value(float_value=x)]) for x in (0.0, 1.0)])})
    for answer in (loaded, resolved, found, called, batched):
        assert not answer.HasField("error"), answer.error
    assert ids[0] == load_id
    assert resolved.function.address.address == found.symbol.address.address != 0
    assert called.call.result.float_value == math.cos(0.5)
    assert [r.result.float_value for r in batched.batch.results] == [1.0, math.cos(1.0)]
    # The handles the answers carry name the same library and function afterwards.
    again = session.send(call=pb.Call(function=resolved.function.function,
                                      args=[pb.Value(float_value=2.0)]))
    assert again.call.result.float_value == math.cos(2.0)
    sin = resolve(session, pb, loaded.library.library, "sin", "DOUBLE", "DOUBLE")
    assert session.send(call=pb.Call(function=sin, args=[pb.Value(float_value=0.0)])
                        ).call.result.float_value == 0.0


def cos_in_one_go(session, pb, path):
    """Loads `path`, resolves its cos and calls cos(0.5), all written before any answer is
    read, each naming the request before it; the load's id and the three answers."""
    first = session.next_id
    _, answers = session.pipeline(
        {"load_library": pb.LoadLibrary(path=path)},
        {"resolve_function": pb.ResolveFunction(library_request=first, symbol="cos",
                                                signature=cos_signature(pb))},
        {"call": pb.Call(function_request=first + 1, args=[pb.Value(float_value=0.5)])})
    return first, answers


def test_requests_behind_a_failed_load_fail_and_say_which_request_failed(session, pb):
    # Refused by the broker (no such file): the load made no library to name.
    first, (refused, resolve_refused, call_refused) = cos_in_one_go(
        session, pb, "/nonexistent/libnope.so")
    assert refused.error.code == pb.LIBRARY_LOAD_FAILED
    assert resolve_refused.error.code == pb.NOT_FOUND
    assert resolve_refused.error.message == (
        f"resolve_function.library_request: no load_library request with id {first} "
        "was accepted")
    assert call_refused.error.code == pb.NOT_FOUND
    assert "call.function_request" in call_refused.error.message

    # Failed in the worker (a file that is no library): the requests sent behind it are
    # refused NOT_FOUND, by the worker when the broker read them while the load was pending
    # (the usual case: all three were written at once), else by the broker.
    first, (failed, resolve_failed, call_failed) = cos_in_one_go(session, pb, "/etc/hostname")
    assert failed.error.code == pb.LIBRARY_LOAD_FAILED, failed.error
    assert resolve_failed.error.code == pb.NOT_FOUND, resolve_failed.error
    assert call_failed.error.code == pb.NOT_FOUND, call_failed.error
    # Once the failure is known, naming that load is refused by the broker.
    late = session.send(resolve_function=pb.ResolveFunction(
        library_request=first, symbol="cos", signature=cos_signature(pb)))
    assert late.error.code == pb.NOT_FOUND
    assert late.error.message == (
        f"resolve_function.library_request: the load_library request with id {first} failed")
    # The session goes on.
    assert not session.send(load_library=pb.LoadLibrary(path="libm.so.6")).HasField("error")


def test_a_request_naming_both_a_handle_and_a_request_is_invalid(session, pb):
    loaded = session.send(load_library=pb.LoadLibrary(path="libm.so.6"))
    both = session.send(resolve_function=pb.ResolveFunction(
        library=loaded.library.library, library_request=loaded.id, symbol="cos",
        signature=cos_signature(pb)))
    assert both.error.code == pb.INVALID_ARGUMENT
    assert both.error.field == "resolve_function.library_request"
    cos = resolve(session, pb, loaded.library.library, "cos", "DOUBLE", "DOUBLE")
    call = session.send(call=pb.Call(function=cos, function_request=loaded.id + 1,
                                     args=[pb.Value(float_value=0.5)]))
    assert call.error.code == pb.INVALID_ARGUMENT
    assert call.error.field == "call.function_request"


def test_an_id_used_again_names_what_its_latest_accepted_request_made(session, pb):
    libm = session.send(load_library=pb.LoadLibrary(path="libm.so.6"))
    assert not libm.HasField("error"), libm.error
    # The same id again, for a load the broker refuses: the id still names libm.
    session.next_id = libm.id
    refused = session.send(load_library=pb.LoadLibrary(path="/nonexistent/libnope.so"))
    assert refused.id == libm.id and refused.error.code == pb.LIBRARY_LOAD_FAILED
    cos = session.send(resolve_function=pb.ResolveFunction(
        library_request=libm.id, symbol="cos", signature=cos_signature(pb)))
    assert not cos.HasField("error"), cos.error
    # Again, for a load that is accepted: the id names the new library.
    session.next_id = libm.id
    testlib = session.send(load_library=pb.LoadLibrary(path=TEST_LIB))
    assert testlib.library.library != libm.library.library
    add = session.send(resolve_function=pb.ResolveFunction(
        library_request=libm.id, symbol="add_int", signature=pb.Signature(
            result=scalar(pb, "INT"), params=[scalar(pb, "INT"), scalar(pb, "INT")])))
    assert not add.HasField("error"), add.error
    three = session.send(call=pb.Call(function_request=add.id,
                                      args=[pb.Value(int_value=1), pb.Value(int_value=2)]))
    assert three.call.result.int_value == 3


def test_requests_inside_an_invocation_are_pipelined_by_id(session, pb):
    # While native code waits in a callback, the client loads a library, resolves cos and
    # calls it, written before any answer is read, each naming the request before it; the
    # second invocation calls that function again by the resolve's id.
    loaded = session.send(load_library=pb.LoadLibrary(path=TEST_LIB))
    assert not loaded.HasField("error"), loaded.error
    int_of_int = pb.Signature(result=scalar(pb, "INT"), params=[scalar(pb, "INT")])
    twice = session.send(resolve_function=pb.ResolveFunction(
        library=loaded.library.library, symbol="call_twice_nested",
        signature=pb.Signature(result=scalar(pb, "INT"),
                               params=[pb.Type(function=int_of_int), scalar(pb, "INT")])))
    assert not twice.HasField("error"), twice.error
    defined = session.send(define_callback=pb.DefineCallback(signature=int_of_int))
    assert not defined.HasField("error"), defined.error

    def put(**op):
        request = pb.Request(id=session.next_id, **op)
        session.next_id += 1
        session.requests.put(request)
        return request.id

    def read():
        response = next(session.responses)
        assert not response.HasField("error"), response
        return response

    outer = put(call=pb.Call(function=twice.function.function, args=[
        pb.Value(pointer=pb.PointerValue(callback=defined.callback.callback)),
        pb.Value(int_value=5)]))
    invoke = read().callback_invoke
    assert invoke.args[0].int_value == 5
    load_id = put(invocation=invoke.invocation, load_library=pb.LoadLibrary(path="libm.so.6"))
    resolve_id = put(invocation=invoke.invocation, resolve_function=pb.ResolveFunction(
        library_request=load_id, symbol="cos", signature=cos_signature(pb)))
    call_id = put(invocation=invoke.invocation, call=pb.Call(
        function_request=resolve_id, args=[pb.Value(float_value=0.5)]))
    answers = {}
    while len(answers) < 3:
        answer = read()
        answers[answer.id] = answer
    assert answers[load_id].HasField("library") and answers[resolve_id].HasField("function")
    assert answers[call_id].call.result.float_value == math.cos(0.5)
    put(callback_return=pb.CallbackReturn(invocation=invoke.invocation,
                                          result=pb.Value(int_value=6)))
    assert read().HasField("done")
    # h(h(5)): the second invocation gets what the first returned.
    invoke = read().callback_invoke
    assert invoke.args[0].int_value == 6
    call_id = put(invocation=invoke.invocation, call=pb.Call(
        function_request=resolve_id, args=[pb.Value(float_value=1.0)]))
    assert read().call.result.float_value == math.cos(1.0)
    put(callback_return=pb.CallbackReturn(invocation=invoke.invocation,
                                          result=pb.Value(int_value=7)))
    assert read().HasField("done")
    answer = read()
    assert answer.id == outer and answer.call.result.int_value == 7


def test_a_function_named_by_its_request_survives_a_restart(session, pb):
    first = session.next_id
    _, answers = session.pipeline(
        {"load_library": pb.LoadLibrary(path=TEST_LIB)},
        {"resolve_function": pb.ResolveFunction(
            library_request=first, symbol="crash_null_deref",
            signature=pb.Signature(result=scalar(pb, "INT")))},
        {"load_library": pb.LoadLibrary(path="libm.so.6")},
        {"resolve_function": pb.ResolveFunction(library_request=first + 2, symbol="cos",
                                                signature=cos_signature(pb))})
    assert all(not a.HasField("error") for a in answers), answers
    crashed = session.send(call=pb.Call(function_request=first + 1))
    assert crashed.error.code == pb.WORKER_CRASHED
    # The next worker had the session's libraries and functions replayed: the request ids
    # still name them.
    after = session.send(call=pb.Call(function_request=first + 3,
                                      args=[pb.Value(float_value=0.5)]))
    assert not after.HasField("error"), after.error
    assert after.generation == 2
    assert after.call.result.float_value == math.cos(0.5)


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


def test_a_string_longer_than_a_read_returns_is_refused_not_cut_short(session, pb):
    at = session.send(alloc_memory=pb.AllocMemory(size=(17 << 20) + 8)).allocated.address
    filled = session.send(fill_memory=pb.FillMemory(address=at, byte=0x41, size=17 << 20))
    assert not filled.HasField("error"), filled.error
    refused = session.send(read_string=pb.ReadString(address=at))
    assert refused.error.code == pb.RESOURCE_EXHAUSTED, refused.error
    assert "no terminator within its first 16777216 characters" in refused.error.message
    # With a max_length, that many units: what the client asked for.
    ten = session.send(read_string=pb.ReadString(address=at, max_length=10))
    assert ten.string.data == b"A" * 10
    # A shorter string is read whole.
    session.send(fill_memory=pb.FillMemory(address=pb.RemoteAddress(
        address=at.address + 100, generation=at.generation), byte=0, size=1))
    assert session.send(read_string=pb.ReadString(address=at)).string.data == b"A" * 100


def nested_struct(pb, levels):
    """A struct type nested `levels` deep around an int: three messages a level."""
    nested = scalar(pb, "INT")
    for level in range(levels):
        nested = pb.Type(record=pb.RecordType(kind=pb.RecordType.STRUCT, name=f"S{level}",
                                              fields=[pb.Field(name="f", type=nested)]))
    return nested


def test_a_request_nested_deeper_than_protobuf_parses_is_refused_and_the_session_goes_on(
        session, pb):
    """A struct nested 40 deep is more than the 100 messages protobuf parses: the request is
    refused by its id, and the stream and the session go on; a pointer 33 deep (two messages a
    level) parses, and the type check refuses it (at most 32 levels)."""
    refused = session.send(get_layout=pb.GetLayout(type=nested_struct(pb, 40)))
    assert refused.error.code == pb.INVALID_ARGUMENT, refused
    assert "cannot be parsed as an ffibox.v1.Request" in refused.error.message
    assert "nests at most 32 levels" in refused.error.message
    assert refused.error.never_reached_worker
    pointer = scalar(pb, "INT")
    for _ in range(33):
        pointer = pb.Type(pointer=pb.PointerType(pointee=pointer))
    checked = session.send(get_layout=pb.GetLayout(type=pointer))
    assert checked.error.code == pb.INVALID_ARGUMENT, checked
    assert "cannot be parsed" not in checked.error.message
    assert checked.error.field.startswith("get_layout.type"), checked.error
    laid_out = session.send(get_layout=pb.GetLayout(type=nested_struct(pb, 32)))
    assert not laid_out.HasField("error"), laid_out.error
    assert laid_out.layout.size == 4
    loaded = session.send(load_library=pb.LoadLibrary(path="libm.so.6"))
    assert not loaded.HasField("error"), loaded.error


def test_a_malformed_request_with_an_id_is_refused_by_it_and_the_session_goes_on(server, pb):
    """Bytes that fail to parse after the id was read (a field cut short, a string that is not
    UTF-8) are refused as that request, and the next request is served."""
    import grpc
    channel = grpc.insecure_channel(server.address)
    try:
        session = channel.stream_stream("/ffibox.v1.Ffibox/Session",
                                        request_serializer=None,
                                        response_deserializer=pb.Response.FromString)
        opened = pb.Request(id=1, open=pb.OpenSession()).SerializeToString()
        load = pb.Request(id=4, load_library=pb.LoadLibrary(path="libm.so.6"))
        # id 2, then load_library announced as 9 bytes with 2 there; id 3, then a load whose
        # path (its field 1) is not UTF-8.
        field = pb.Request.DESCRIPTOR.fields_by_name["load_library"].number
        cut_short = b"\x08\x02" + bytes([field << 3 | 2, 9]) + b"\x0a\x00"
        not_utf8 = b"\x08\x03" + bytes([field << 3 | 2, 4, 0x0a, 2, 0xff, 0xfe])
        # The end of the iterator closes the client's side: every request is answered first.
        answers = {r.id: r for r in session(iter([opened, cut_short, not_utf8,
                                                  load.SerializeToString()]))}
        for refused in (2, 3):
            assert answers[refused].error.code == pb.INVALID_ARGUMENT, answers[refused]
            assert "cannot be parsed as an ffibox.v1.Request" in answers[refused].error.message
        assert not answers[4].HasField("error"), answers[4].error
        assert answers[4].library.library != 0
    finally:
        channel.close()


def test_protobufs_complaints_about_a_clients_requests_are_bounded_in_the_log(tmp_path, pb):
    """Every request whose text is not UTF-8 makes protobuf log a line, and each is refused
    by its id while the session goes on: at most 20 such lines a minute reach the log."""
    import grpc
    log_path = tmp_path / "ffiboxd.log"
    with open(log_path, "w") as log:
        server = Server(stderr=log)
    try:
        channel = grpc.insecure_channel(server.address)
        session = channel.stream_stream("/ffibox.v1.Ffibox/Session", request_serializer=None,
                                        response_deserializer=pb.Response.FromString)
        field = pb.Request.DESCRIPTOR.fields_by_name["load_library"].number
        requests = [pb.Request(id=1, open=pb.OpenSession()).SerializeToString()] + [
            bytes([0x08, 2 + i % 100]) + bytes([field << 3 | 2, 4, 0x0a, 2, 0xff, 0xfe])
            for i in range(300)]
        answers = list(session(iter(requests)))
        assert len(answers) == 301
        assert all(a.error.code == pb.INVALID_ARGUMENT for a in answers[1:]), answers[1]
        channel.close()
    finally:
        server.stop()
    lines = [line for line in log_path.read_text().splitlines() if "libprotobuf" in line]
    assert 1 <= len(lines) <= 20, len(lines)


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


def test_a_watched_read_reports_the_librarys_changes_and_bad_watches_are_refused(session, pb):
    """ReadMemory.watch through the real stream: a typed watch and too many unwatches are
    refused naming the field, and the session goes on; a raw watched read is reported changed
    by a later call; a write marked held is what the client holds, not a change."""
    lib = session.send(load_library=pb.LoadLibrary(path=TEST_LIB)).library.library
    increment = resolve(session, pb, lib, "increment", "VOID", "POINTER")
    at = session.send(alloc_memory=pb.AllocMemory(size=8)).allocated.address
    typed = session.send(read_memory=pb.ReadMemory(address=at, type=scalar(pb, "INT"),
                                                   watch=True))
    assert (typed.error.code, typed.error.field) == (pb.INVALID_ARGUMENT, "read_memory.watch")
    many = session.send(read_memory=pb.ReadMemory(address=at, size=8, unwatch=range(1, 4098)))
    assert (many.error.code, many.error.field) == (pb.INVALID_ARGUMENT, "read_memory.unwatch")
    read = session.send(read_memory=pb.ReadMemory(address=at, size=8, watch=True))
    assert read.memory.watched and read.memory.data == bytes(8)

    def bump():
        answer = session.send(call=pb.Call(
            function=increment, args=[pb.Value(pointer=pb.PointerValue(remote=at))]))
        assert not answer.HasField("error"), answer.error
        return [(run.address.address, run.offset, run.data) for run in answer.call.changed]

    assert bump() == [(at.address, 0, b"\x01" + bytes(7))]
    written = session.send(write_memory=pb.WriteMemory(address=at, data=b"\x05", held=True))
    assert not written.HasField("error"), written.error
    assert bump() == [(at.address, 0, b"\x06" + bytes(7))]  # from 5, not from 1
    unwatched = session.send(read_memory=pb.ReadMemory(address=at, size=1, unwatch=[at.address]))
    assert not unwatched.HasField("error") and not unwatched.memory.watched
    assert bump() == []


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


def test_blocks_of_a_call_naming_its_function_by_request_reach_the_worker(session, pb):
    # The broker names the function in a copy of such a call and frees the original's block
    # bytes: the copy's must still carry them, in a call and in a batch.
    load_id = session.next_id
    text = b"pipelined bytes " * 4096
    signature = pb.Signature(result=scalar(pb, "SIZE_T"), params=[scalar(pb, "POINTER")])
    block = pb.MemoryBlock(data=text + b"\0", size=len(text) + 1, direction=pb.IN)
    arg = pb.Value(pointer=pb.PointerValue(block=pb.BlockRef(block=0)))
    _, (loaded, resolved, called, batched) = session.pipeline(
        {"load_library": pb.LoadLibrary(path="libc.so.6")},
        {"resolve_function": pb.ResolveFunction(library_request=load_id, symbol="strlen",
                                                signature=signature)},
        {"call": pb.Call(function_request=load_id + 1, blocks=[block], args=[arg])},
        {"batch": pb.Batch(calls=[pb.Call(function_request=load_id + 1, blocks=[block],
                                          args=[arg])] * 2)})
    for answer in (loaded, resolved, called, batched):
        assert not answer.HasField("error"), answer.error
    assert called.call.result.uint_value == len(text)
    assert [r.result.uint_value for r in batched.batch.results] == [len(text)] * 2


def resolves_with_big_signatures(session, pb, name_bytes, symbols):
    """The codes of resolving each of `symbols` in the test library with a signature whose
    record name takes `name_bytes`: what the broker keeps of each."""
    loaded = session.send(load_library=pb.LoadLibrary(path=TEST_LIB))
    assert not loaded.HasField("error"), loaded.error
    big = pb.Signature(result=scalar(pb, "INT"), params=[pb.Type(record=pb.RecordType(
        kind=pb.RecordType.STRUCT, name="n" * name_bytes,
        fields=[pb.Field(name="a", type=scalar(pb, "INT"))]))])
    codes = []
    for symbol in symbols:
        answer = session.send(resolve_function=pb.ResolveFunction(
            library=loaded.library.library, symbol=symbol, signature=big))
        codes.append(pb.ErrorCode.Name(answer.error.code) if answer.HasField("error") else "OK")
    assert session.send(ping=pb.Ping()).HasField("done")
    return codes


def test_what_a_session_keeps_of_its_signatures_is_bounded(session, pb):
    # Each resolve keeps its signature in the broker until the session ends, a failed one
    # only until it fails: 16 MiB in all, here 2 MiB of record name each. Failed resolves
    # give their signatures back: the seven after them still fit.
    codes = resolves_with_big_signatures(session, pb, 2 << 20,
                                         ["no_such_symbol"] * 3 + ["add_int"] * 9)
    assert codes == ["SYMBOL_NOT_FOUND"] * 3 + ["OK"] * 7 + ["RESOURCE_EXHAUSTED"] * 2, codes


def test_the_signature_budget_is_the_servers_flag(pb):
    # --max_session_signature_bytes=1 MiB: three signatures of 256 KiB fit, not a fourth.
    server = Server("--max_session_signature_bytes=1048576")
    session = RawSession(server.address)
    try:
        codes = resolves_with_big_signatures(session, pb, 256 << 10, ["add_int"] * 5)
        assert codes == ["OK"] * 3 + ["RESOURCE_EXHAUSTED"] * 2, codes
    finally:
        session.close()
        server.stop()


def half_closed_session(address, pb, requests, then=None):
    """Sends `requests` (Request messages) on a new session stream, then, if given, the
    requests `then(answers)` returns once request `requests[-1]` is answered; closes its
    side (the end of the request iterator, as a Go client's CloseSend) and reads to the end:
    the answers by id, the events, and the stream's end (None: OK, else the RpcError)."""
    import queue
    import grpc
    from ffibox.v1 import ffibox_pb2_grpc
    outgoing = queue.Queue()
    for request in requests:
        outgoing.put(request)
    if then is None:
        outgoing.put(None)
    channel = grpc.insecure_channel(address)
    answers, events, ended = {}, [], None
    try:
        for response in ffibox_pb2_grpc.FfiboxStub(channel).Session(iter(outgoing.get, None)):
            if response.id == 0:
                events.append(response)
                continue
            assert response.id not in answers, response
            answers[response.id] = response
            if then is not None and response.id == requests[-1].id:
                for request in then(answers):
                    outgoing.put(request)
                outgoing.put(None)
    except grpc.RpcError as error:
        ended = error
    finally:
        channel.close()
    return answers, events, ended


def test_a_client_that_closes_its_side_gets_every_answer(server, pb):
    # The load, the resolve and 200 calls written back to back, then the client's side
    # closed: every call is answered before the stream ends with OK.
    add = pb.Signature(result=scalar(pb, "INT"), params=[scalar(pb, "INT")] * 2)
    requests = [pb.Request(id=1, load_library=pb.LoadLibrary(path=TEST_LIB)),
                pb.Request(id=2, resolve_function=pb.ResolveFunction(
                    library_request=1, symbol="add_int", signature=add))]
    requests += [pb.Request(id=i, call=pb.Call(function_request=2, args=[
        pb.Value(int_value=i), pb.Value(int_value=1000)])) for i in range(3, 203)]
    answers, _, ended = half_closed_session(server.address, pb, requests)
    assert ended is None, ended
    assert sorted(answers) == list(range(1, 203))
    assert [answers[i].call.result.int_value for i in range(3, 203)] == \
        [i + 1000 for i in range(3, 203)]


def test_callbacks_invoked_after_the_client_closed_its_side_fail_and_the_call_is_answered(
        server, pb):
    # call_twice_nested(h, 5) is h(h(5)). The client closes its side right after the call,
    # so it can answer no invocation: each fails at once (native code gets zero, the client
    # a CALLBACK_ERROR event) and the call is answered. A call behind it that hangs is
    # answered at its deadline, and the stream ends with OK.
    int_of_int = pb.Signature(result=scalar(pb, "INT"), params=[scalar(pb, "INT")])
    requests = [
        pb.Request(id=1, load_library=pb.LoadLibrary(path=TEST_LIB)),
        pb.Request(id=2, resolve_function=pb.ResolveFunction(
            library_request=1, symbol="call_twice_nested", signature=pb.Signature(
                result=scalar(pb, "INT"), params=[pb.Type(function=int_of_int),
                                                  scalar(pb, "INT")]))),
        pb.Request(id=3, resolve_function=pb.ResolveFunction(
            library_request=1, symbol="hang_forever",
            signature=pb.Signature(result=scalar(pb, "INT")))),
        pb.Request(id=4, define_callback=pb.DefineCallback(signature=int_of_int)),
    ]

    def calls(answers):
        callback = answers[4].callback.callback
        return [pb.Request(id=5, call=pb.Call(function_request=2, args=[
                    pb.Value(pointer=pb.PointerValue(callback=callback)),
                    pb.Value(int_value=5)])),
                pb.Request(id=6, call=pb.Call(function_request=3, timeout_ms=300))]

    started = time.monotonic()
    answers, events, ended = half_closed_session(server.address, pb, requests, calls)
    assert ended is None, ended
    assert sorted(answers) == [1, 2, 3, 4, 5, 6]
    assert answers[5].call.result.int_value == 0, answers[5]
    errors = [e.event for e in events if e.event.kind == pb.SessionEvent.CALLBACK_ERROR]
    assert len(errors) == 2 and all("closed its side" in e.error.message for e in errors), \
        events
    assert answers[6].error.code == pb.CALL_TIMEOUT, answers[6]
    assert time.monotonic() - started < 10
