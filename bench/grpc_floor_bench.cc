// Bare gRPC floors that carry the same bytes as ffibox requests.
//
// BM_BareGrpcPingRoundTrip is the floor of BM_FfiboxPing: a Ping written and a
// Response{id, done} read on one bidi Session stream to a server with no ffibox logic
// (echo_session_server.h). BM_BareGrpcRoundTrip is the floor of BM_FfiboxCallAdd: one Request
// written and one Response read on a bidi Session stream to a server with no ffibox logic
// (echo_session_server.h), where the Request is the one the C++ client sends for `add_int(1, 2)`
// and the Response the one ffiboxd answers, both recorded once from a real call through a recording
// proxy (recording_session_proxy.h). Only the request id changes from one round trip to the next,
// as it does on a real session. BM_BareGrpcBulk/N does the same with the messages of
// `memset(buf, 1, N)` on an INOUT buffer of N bytes (the request carries the block, the
// response carries it back): gRPC's own throughput beside BM_FfiboxCallBuffer and
// BM_FfiboxBulkInout. Both report the serialized sizes as counters (request_bytes,
// response_bytes). BM_BareGrpcSessionStart and BM_BareGrpcSessionStartPipelined are the
// floors of BM_SessionStartWithPool and BM_SessionStartPipelined: a new stream and the four
// round trips of a session's start (open, load, resolve, call), sequential or with the last
// three written back to back.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_fixtures.h"
#include "bench/echo_session_server.h"
#include "bench/recording_session_proxy.h"
#include "benchmark/benchmark.h"
#include "client/cpp/ffibox_client.h"
#include "core/status_macros.h"
#include "ffibox/v1/ffibox.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace ffibox {
namespace bench {
namespace {

// The payload sizes of BM_BareGrpcBulk: those of BM_FfiboxCallBuffer, and 4 MiB (gRPC's
// default message cap, beside BM_FfiboxBulkInout/4194304).
constexpr int64_t kBulkSizes[] = {64, 4096, 65536, 1 << 20, 4 << 20};

// What ffibox's C++ client and ffiboxd exchanged for add_int(1, 2) and for memset on each
// of kBulkSizes.
struct RecordedCalls {
  RecordedCall add;
  std::vector<RecordedCall> memset;  // one per kBulkSizes entry, in that order
};

// Makes the calls through a recording proxy in front of a fresh ffiboxd (default limits, no
// pool) and returns what crossed the wire; INTERNAL if a call returned a wrong value. The
// FixtureSlot below calls it once (its key is unused).
absl::StatusOr<std::unique_ptr<RecordedCalls>> RecordCalls(int64_t /*key*/) {
  FFIBOX_ASSIGN_OR_RETURN(std::unique_ptr<test_support::TestServer> server,
                          test_support::TestServer::Start());
  FFIBOX_ASSIGN_OR_RETURN(std::unique_ptr<RecordingSessionProxy> proxy,
                          RecordingSessionProxy::Start(server->address()));
  {
    FFIBOX_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Connect(proxy->address()));
    FFIBOX_ASSIGN_OR_RETURN(std::unique_ptr<Session> session, client->OpenSession());
    FFIBOX_ASSIGN_OR_RETURN(Library testlib, LoadTestLibrary(*session));
    FFIBOX_ASSIGN_OR_RETURN(Function<int(int, int)> add,
                            testlib.Function<int(int, int)>("add_int"));
    FFIBOX_ASSIGN_OR_RETURN(int sum, add(1, 2));
    if (sum != 3) return absl::InternalError(absl::StrCat("add_int(1, 2) returned ", sum));
    FFIBOX_ASSIGN_OR_RETURN(auto memset, ResolveMemset(*session));
    for (int64_t size : kBulkSizes) {
      Buffer buffer = Buffer::InOut(std::string(static_cast<size_t>(size), '\0'));
      FFIBOX_RETURN_IF_ERROR(memset(buffer, 1, static_cast<size_t>(size)).status());
      if (buffer.data != std::string(static_cast<size_t>(size), '\1')) {
        return absl::InternalError(absl::StrCat("memset did not fill ", size, " bytes"));
      }
    }
    FFIBOX_RETURN_IF_ERROR(session->Close());
  }
  FFIBOX_ASSIGN_OR_RETURN(std::vector<RecordedCall> calls, proxy->Calls());
  if (calls.size() != 1 + std::size(kBulkSizes)) {
    return absl::InternalError(absl::StrCat("recorded ", calls.size(), " calls"));
  }
  auto recorded = std::make_unique<RecordedCalls>();
  recorded->add = std::move(calls[0]);
  recorded->memset.assign(std::make_move_iterator(calls.begin() + 1),
                          std::make_move_iterator(calls.end()));
  return recorded;
}

FixtureSlot<RecordedCalls> recorded_calls(RecordCalls);

// A stub of `echo`'s Session service on a channel made as Client::Connect makes its own.
std::unique_ptr<v1::Ffibox::Stub> EchoStub(const EchoSessionServer& echo) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(-1);
  return v1::Ffibox::NewStub(
      grpc::CreateCustomChannel(echo.address(), grpc::InsecureChannelCredentials(), arguments));
}

// Round trips of `call.request` to an echo server answering `call.response` (ids renumbered
// from 1), on one stream, as the client's channel is configured.
void ReplayRoundTrips(benchmark::State& state, const RecordedCall& call) {
  absl::StatusOr<std::unique_ptr<EchoSessionServer>> echo = EchoSessionServer::Start(call.response);
  if (!echo.ok()) {
    state.SkipWithError(echo.status().ToString().c_str());
    return;
  }
  std::unique_ptr<v1::Ffibox::Stub> stub = EchoStub(**echo);
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<v1::Request, v1::Response>> stream =
      stub->Session(&context);
  v1::Request request = call.request;
  v1::Response response;
  uint64_t id = 0;
  for (auto _ : state) {
    request.set_id(++id);
    if (!stream->Write(request) || !stream->Read(&response) || response.id() != id) {
      state.SkipWithError("echo stream broke");
      break;
    }
  }
  if (id > 0 && response.result_case() != call.response.result_case()) {
    state.SkipWithError("the echo server answered something else than the recorded response");
  }
  stream->WritesDone();
  while (stream->Read(&response)) {
  }
  stream->Finish().ok();
  state.counters["request_bytes"] = static_cast<double>(call.request.ByteSizeLong());
  state.counters["response_bytes"] = static_cast<double>(call.response.ByteSizeLong());
}

// The floor of BM_FfiboxPing: a Ping answered `done`.
void BM_BareGrpcPingRoundTrip(benchmark::State& state) {
  DropFixtures();  // no other family's sessions or servers polling beside this stream
  RecordedCall ping;
  ping.request.mutable_ping();
  ping.response.mutable_done();
  ReplayRoundTrips(state, ping);
}
BENCHMARK(BM_BareGrpcPingRoundTrip)->UseRealTime();

// The floor of BM_FfiboxCallAdd: add_int(1, 2)'s own messages, with no ffibox logic.
void BM_BareGrpcRoundTrip(benchmark::State& state) {
  RecordedCalls* recorded = recorded_calls.GetOrSkip(state, "recording the calls");
  if (recorded == nullptr) return;
  ReplayRoundTrips(state, recorded->add);
}
BENCHMARK(BM_BareGrpcRoundTrip)->UseRealTime();

// gRPC's own throughput for memset's messages on an INOUT buffer of state.range(0) bytes;
// bytes/s counts the buffer once per round trip, as BM_FfiboxCallBuffer does.
void BM_BareGrpcBulk(benchmark::State& state) {
  RecordedCalls* recorded = recorded_calls.GetOrSkip(state, "recording the calls");
  if (recorded == nullptr) return;
  for (size_t i = 0; i < std::size(kBulkSizes); ++i) {
    if (kBulkSizes[i] != state.range(0)) continue;
    ReplayRoundTrips(state, recorded->memset[i]);
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
    return;
  }
  state.SkipWithError("no recorded memset of this size");
}
BENCHMARK(BM_BareGrpcBulk)
    ->Apply([](benchmark::internal::Benchmark* benchmark) {
      for (int64_t size : kBulkSizes) benchmark->Arg(size);
    })
    ->UseRealTime();

// A session's start without ffibox: on a channel made once (as a client connects once), a new
// stream, a round trip standing for the open, then three for the load, the resolve and the
// call, one after another or (`pipelined`) written back to back and read after. The close and
// a pause of 20 ms between starts are not timed, as in SessionStart (call_bench.cc): between
// starts the server's threads go idle as ffiboxd's do.
void BareSessionStarts(benchmark::State& state, bool pipelined) {
  DropFixtures();
  absl::StatusOr<std::unique_ptr<EchoSessionServer>> echo = EchoSessionServer::Start();
  if (!echo.ok()) {
    state.SkipWithError(echo.status().ToString().c_str());
    return;
  }
  std::unique_ptr<v1::Ffibox::Stub> stub = EchoStub(**echo);
  v1::Request request;
  request.mutable_ping();
  v1::Response response;
  uint64_t id = 0;
  // Writes `count` requests, then reads as many answers; false if the stream broke or an
  // answer is not the next one.
  auto round_trips = [&](grpc::ClientReaderWriter<v1::Request, v1::Response>* stream, int count) {
    const uint64_t first = id + 1;
    for (int i = 0; i < count; ++i) {
      request.set_id(++id);
      if (!stream->Write(request)) return false;
    }
    for (uint64_t expected = first; expected <= id; ++expected) {
      if (!stream->Read(&response) || response.id() != expected) return false;
    }
    return true;
  };
  for (auto _ : state) {
    auto context = std::make_unique<grpc::ClientContext>();
    std::unique_ptr<grpc::ClientReaderWriter<v1::Request, v1::Response>> stream =
        stub->Session(context.get());
    bool answered = round_trips(stream.get(), 1);
    if (pipelined) {
      answered = answered && round_trips(stream.get(), 3);
    } else {
      for (int i = 0; i < 3 && answered; ++i) answered = round_trips(stream.get(), 1);
    }
    state.PauseTiming();
    stream->WritesDone();
    while (stream->Read(&response)) {
    }
    const grpc::Status finished = stream->Finish();
    stream.reset();
    context.reset();
    if (!answered || !finished.ok()) {
      state.SkipWithError("echo stream broke");
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
    state.ResumeTiming();
  }
}

// The floors of BM_SessionStartWithPool and BM_SessionStartPipelined. A fixed count of starts:
// the untimed pauses would make Google Benchmark's own choice (by timed time) take minutes.
void BM_BareGrpcSessionStart(benchmark::State& state) { BareSessionStarts(state, false); }
BENCHMARK(BM_BareGrpcSessionStart)->UseRealTime()->Unit(benchmark::kMicrosecond)->Iterations(150);

void BM_BareGrpcSessionStartPipelined(benchmark::State& state) { BareSessionStarts(state, true); }
BENCHMARK(BM_BareGrpcSessionStartPipelined)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond)
    ->Iterations(150);

}  // namespace
}  // namespace bench
}  // namespace ffibox
