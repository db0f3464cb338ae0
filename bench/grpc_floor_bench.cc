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
// response_bytes).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
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

// Round trips of `call.request` to an echo server answering `call.response` (ids renumbered
// from 1), on one stream, as the client's channel is configured.
void ReplayRoundTrips(benchmark::State& state, const RecordedCall& call) {
  absl::StatusOr<std::unique_ptr<EchoSessionServer>> echo = EchoSessionServer::Start(call.response);
  if (!echo.ok()) {
    state.SkipWithError(echo.status().ToString().c_str());
    return;
  }
  grpc::ChannelArguments arguments;  // as Client::Connect makes its channel
  arguments.SetMaxReceiveMessageSize(-1);
  std::unique_ptr<v1::Ffibox::Stub> stub = v1::Ffibox::NewStub(
      grpc::CreateCustomChannel((*echo)->address(), grpc::InsecureChannelCredentials(), arguments));
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

}  // namespace
}  // namespace bench
}  // namespace ffibox
