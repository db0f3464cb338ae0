#include "server/broker/in_flight_requests.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000);

PendingRequest Request(const std::string& label, uint64_t scope = 0,
                       absl::Duration timeout = absl::Seconds(30)) {
  PendingRequest pending;
  pending.label = label;
  pending.scope = scope;
  pending.timeout = timeout;
  return pending;
}

v1::CallbackInvoke Invoke(uint64_t invocation, uint64_t parent = 0) {
  v1::CallbackInvoke invoke;
  invoke.set_invocation(invocation);
  invoke.set_callback(7);
  invoke.set_parent_invocation(parent);
  return invoke;
}

absl::Status Open(InFlightRequests& requests, const v1::CallbackInvoke& invoke,
                  absl::Time now = kStart) {
  return requests.OpenInvocation(invoke, std::make_shared<const v1::Signature>(), {},
                                 absl::Seconds(5), now);
}

TEST(InFlightRequests, AFrameMayHoldWhatAnswersARunningRequestOrAnInvocation) {
  InFlightRequests requests(InFlightRequests::Limits{});
  EXPECT_EQ(requests.ReplyLimits(256).blocks, 0u);
  EXPECT_EQ(requests.ReplyLimits(256).args, 256u) << "a callback may come at any time";
  auto with_blocks = [](const std::string& label, uint64_t blocks, uint64_t scope) {
    PendingRequest pending = Request(label, scope);
    pending.answer_limits.blocks = blocks;
    return pending;
  };
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued running,
                       requests.Queue(with_blocks("outer", 2, 0), kStart));
  // Queued behind the running one: the worker cannot answer it yet.
  ASSERT_OK(requests.Queue(with_blocks("queued", 100, 0), kStart).status());
  EXPECT_EQ(requests.ReplyLimits(256).blocks, 2u);
  // A request inside an invocation runs while the outer call waits: either may answer.
  ASSERT_OK(Open(requests, Invoke(5)));
  ASSERT_OK(requests.Queue(with_blocks("nested", 3, 5), kStart).status());
  EXPECT_EQ(requests.ReplyLimits(256).blocks, 5u);
  requests.Finish(running.sequence, kStart);
  EXPECT_EQ(requests.ReplyLimits(256).blocks, 103u);
}

// CallbackInvoke.request_id comes from the worker: it may name only the request running in
// the scope the invocation is nested in, and the client is told that request's own id.
TEST(InFlightRequests, AnInvocationMayNameOnlyTheRequestRunningInItsScope) {
  InFlightRequests requests(InFlightRequests::Limits{});
  PendingRequest call = Request("call");
  call.client_id = 41;
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued running, requests.Queue(std::move(call), kStart));
  PendingRequest behind = Request("behind");
  behind.client_id = 42;
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued queued, requests.Queue(std::move(behind), kStart));
  auto naming = [](uint64_t invocation, uint64_t parent, uint64_t request) {
    v1::CallbackInvoke invoke = Invoke(invocation, parent);
    invoke.set_request_id(request);
    return invoke;
  };
  EXPECT_EQ(requests.InvokingRequest(naming(5, 0, 0)).value_or(99), 0u) << "a library thread";
  EXPECT_EQ(requests.InvokingRequest(naming(5, 0, running.sequence)).value_or(99), 41u);
  EXPECT_TRUE(
      absl::IsInvalidArgument(requests.InvokingRequest(naming(5, 0, queued.sequence)).status()))
      << "a request queued behind the running one runs on no thread yet";
  EXPECT_TRUE(absl::IsInvalidArgument(requests.InvokingRequest(naming(5, 0, 12345)).status()));

  // Inside invocation 5, the client's request 43 runs: a nested invocation may name it,
  // not the outer call, whose thread waits in invocation 5.
  ASSERT_OK(Open(requests, Invoke(5)));
  PendingRequest inside = Request("inside", 5);
  inside.client_id = 43;
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued nested, requests.Queue(std::move(inside), kStart));
  EXPECT_EQ(requests.InvokingRequest(naming(6, 5, nested.sequence)).value_or(99), 43u);
  EXPECT_TRUE(
      absl::IsInvalidArgument(requests.InvokingRequest(naming(6, 5, running.sequence)).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(requests.InvokingRequest(naming(6, 0, nested.sequence)).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(requests.InvokingRequest(naming(6, 9, nested.sequence)).status()))
      << "no invocation 9";

  // A request the broker made itself (a replay) is no client's: 0.
  InFlightRequests replays(InFlightRequests::Limits{});
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued replay, replays.Queue(Request("load"), kStart));
  EXPECT_EQ(replays.InvokingRequest(naming(5, 0, replay.sequence)).value_or(99), 0u);
}

// CallbackInvoke.kept comes from the worker: only the kept blocks of the call that made the
// invocation, each once and in order, as that call's result will report them.
TEST(InFlightRequests, AnInvocationMayReportOnlyTheKeptBlocksOfItsCall) {
  InFlightRequests requests(InFlightRequests::Limits{});
  PendingRequest call = Request("call");
  call.client_id = 41;
  call.op = v1::Request::kCall;
  call.call.kept_blocks = {1, 3};
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued running, requests.Queue(std::move(call), kStart));
  auto reporting = [&running](std::vector<std::pair<uint32_t, uint64_t>> kept, uint64_t request) {
    v1::CallbackInvoke invoke = Invoke(5);
    invoke.set_request_id(request);
    for (const auto& [block, address] : kept) {
      v1::KeptBlock* told = invoke.add_kept();
      told->set_block(block);
      told->mutable_address()->set_address(address);
    }
    return invoke;
  };
  EXPECT_EQ(requests.InvokingRequest(reporting({}, running.sequence)).value_or(99), 41u);
  EXPECT_EQ(requests.InvokingRequest(reporting({{1, 0x1000}, {3, 0x2000}}, running.sequence))
                .value_or(99),
            41u);
  for (const auto& wrong : std::vector<std::vector<std::pair<uint32_t, uint64_t>>>{
           {{1, 0x1000}},                            // one missing
           {{3, 0x2000}, {1, 0x1000}},               // out of order
           {{1, 0x1000}, {2, 0x2000}},               // a block the call did not keep
           {{1, 0x1000}, {3, 0}},                    // no address
           {{1, 0x1000}, {3, 0x2000}, {3, 0x3000}},  // one twice
       }) {
    EXPECT_TRUE(absl::IsInvalidArgument(
        requests.InvokingRequest(reporting(wrong, running.sequence)).status()))
        << wrong.size() << " blocks reported";
  }
  EXPECT_TRUE(absl::IsInvalidArgument(
      requests.InvokingRequest(reporting({{1, 0x1000}, {3, 0x2000}}, 0)).status()))
      << "kept blocks from a thread that runs no call of the client's";

  // A request that is not a call keeps no blocks.
  InFlightRequests others(InFlightRequests::Limits{});
  PendingRequest batch = Request("batch");
  batch.client_id = 42;
  batch.op = v1::Request::kBatch;
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued batch_running,
                       others.Queue(std::move(batch), kStart));
  EXPECT_EQ(others.InvokingRequest(reporting({}, batch_running.sequence)).value_or(99), 42u);
  EXPECT_TRUE(absl::IsInvalidArgument(
      others.InvokingRequest(reporting({{0, 0x1000}}, batch_running.sequence)).status()));
}

TEST(InFlightRequests, OneScopeAnswersInOrderAndEachHeadGetsItsOwnDeadline) {
  InFlightRequests requests(InFlightRequests::Limits{});
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued first,
                       requests.Queue(Request("cos", 0, absl::Seconds(2)), kStart));
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued second,
                       requests.Queue(Request("sin", 0, absl::Seconds(3)), kStart));
  EXPECT_TRUE(first.first);
  EXPECT_TRUE(first.became_head);
  EXPECT_FALSE(second.first);
  EXPECT_FALSE(second.became_head);
  EXPECT_LT(first.sequence, second.sequence);
  EXPECT_EQ(requests.size(), 2u);
  // Only the head is running: a reply for the second one now is not for anything running.
  EXPECT_EQ(requests.RunningRequest(second.sequence), nullptr);
  ASSERT_NE(requests.RunningRequest(first.sequence), nullptr);
  EXPECT_EQ(requests.NextDeadline(), kStart + absl::Seconds(2));
  // The second request's deadline counts from when the worker starts on it.
  PendingRequest done = requests.Finish(first.sequence, kStart + absl::Seconds(1));
  EXPECT_EQ(done.label, "cos");
  EXPECT_EQ(requests.last_label(), "cos");
  EXPECT_EQ(requests.NextDeadline(), kStart + absl::Seconds(4));
  EXPECT_FALSE(requests.FindOverdue(kStart + absl::Seconds(3)).has_value());
  std::optional<InFlightRequests::Culprit> overdue =
      requests.FindOverdue(kStart + absl::Seconds(4));
  ASSERT_TRUE(overdue.has_value());
  EXPECT_EQ(overdue->sequence, second.sequence);
  EXPECT_EQ(overdue->label, "sin");
  EXPECT_EQ(overdue->timeout, absl::Seconds(3));
  requests.Finish(second.sequence, kStart + absl::Seconds(2));
  EXPECT_EQ(requests.size(), 0u);
  EXPECT_EQ(requests.NextDeadline(), absl::InfiniteFuture());
}

TEST(InFlightRequests, RequestsInsideAnInvocationRunBesideTheCallThatMadeIt) {
  InFlightRequests requests(InFlightRequests::Limits{});
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued call, requests.Queue(Request("qsort"), kStart));
  // Inside a call: the call's deadline governs, the invocation gets none of its own.
  ASSERT_OK(Open(requests, Invoke(1)));
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued nested,
                       requests.Queue(Request("read_memory", 1), kStart));
  EXPECT_TRUE(nested.became_head);
  EXPECT_NE(requests.RunningRequest(call.sequence), nullptr);
  EXPECT_NE(requests.RunningRequest(nested.sequence), nullptr);
  EXPECT_EQ(requests.InnermostRunning().label, "read_memory");
  // The client may not answer while its own requests inside the invocation run.
  absl::StatusOr<const InFlightRequests::Invocation*> busy = requests.AnswerableInvocation(1);
  EXPECT_THAT(busy.status(), StatusIs(v1::FAILED_PRECONDITION));
  EXPECT_EQ(ToProtoError(busy.status()).message(),
            "callback_return.invocation: 1 requests sent inside invocation 1 are still running; "
            "wait for their answers first");
  requests.Finish(nested.sequence, kStart);
  ASSERT_OK_AND_ASSIGN(const InFlightRequests::Invocation* open, requests.AnswerableInvocation(1));
  EXPECT_EQ(open->callback, 7u);
  EXPECT_EQ(open->depth, 1);
  requests.CloseInvocation(1);
  EXPECT_THAT(requests.CheckScope(1), StatusIs(v1::FAILED_PRECONDITION));
  EXPECT_THAT(requests.Queue(Request("late", 1), kStart).status(),
              StatusIs(v1::FAILED_PRECONDITION));
  EXPECT_EQ(requests.size(), 1u);
}

TEST(InFlightRequests, AnInvocationOnTheChannelHasAScopeWhileItsRequestsRun) {
  InFlightRequests requests(InFlightRequests::Limits{});
  // A call on the same-host channel passes the broker by: nothing runs at the top level.
  PendingRequest load = Request("dlopen libc.so.6", 9);
  load.channel_scope = true;
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued first, requests.Queue(load, kStart));
  EXPECT_TRUE(first.became_head);
  PendingRequest resolve = Request("strlen", 9);
  resolve.channel_scope = true;
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued second, requests.Queue(resolve, kStart));
  EXPECT_FALSE(second.became_head);  // one at a time, in order, as in any scope
  EXPECT_EQ(requests.RunningRequest(second.sequence), nullptr);
  EXPECT_EQ(requests.NextDeadline(), kStart + absl::Seconds(30));
  // What a worker dying now was running.
  std::optional<InFlightRequests::Culprit> running = requests.RunningInChannelScope();
  ASSERT_TRUE(running.has_value());
  EXPECT_EQ(running->label, "dlopen libc.so.6");
  // The client names the id: the broker's own invocation of the same id is another scope.
  ASSERT_OK(requests.Queue(Request("qsort"), kStart));
  ASSERT_OK(Open(requests, Invoke(9)));
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued own, requests.Queue(Request("read", 9), kStart));
  EXPECT_TRUE(own.became_head);
  requests.Finish(first.sequence, kStart);
  ASSERT_NE(requests.RunningRequest(second.sequence), nullptr);
  requests.Finish(second.sequence, kStart);
  EXPECT_FALSE(requests.RunningInChannelScope().has_value());
  ASSERT_NE(requests.RunningRequest(own.sequence), nullptr);
  // An id the broker knows as its own open invocation names no invocation on the channel.
  absl::Status mine = requests.CheckChannelScope(9);
  EXPECT_THAT(mine, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(ToProtoError(mine).field(), "channel_invocation");
  EXPECT_THAT(requests.CheckChannelScope(0), StatusIs(v1::INVALID_ARGUMENT));
}

TEST(InFlightRequests, RequestsRunInsideAtMostSoManyInvocationsOnTheChannel) {
  InFlightRequests requests(InFlightRequests::Limits{});
  std::vector<uint64_t> sequences;
  for (uint64_t id = 1; id <= kMaxChannelScopes; ++id) {
    PendingRequest pending = Request("alloc_memory", id);
    pending.channel_scope = true;
    ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued queued, requests.Queue(pending, kStart));
    sequences.push_back(queued.sequence);
  }
  PendingRequest one_more = Request("alloc_memory", kMaxChannelScopes + 1);
  one_more.channel_scope = true;
  EXPECT_THAT(requests.Queue(one_more, kStart).status(), StatusIs(v1::RESOURCE_EXHAUSTED));
  // Another request in a scope that exists is no new scope.
  PendingRequest same = Request("free_memory", 1);
  same.channel_scope = true;
  ASSERT_OK(requests.Queue(same, kStart));
  // A scope ends with its last request: room for another; not while requests remain in it.
  requests.Finish(sequences[0], kStart);
  EXPECT_THAT(requests.Queue(one_more, kStart).status(), StatusIs(v1::RESOURCE_EXHAUSTED));
  requests.Finish(sequences[1], kStart);
  ASSERT_OK(requests.Queue(one_more, kStart));
  // A worker's death drains them all: room for as many again.
  requests.Drain(InFlightRequests::Culprit{});
  for (uint64_t id = 1; id <= kMaxChannelScopes; ++id) {
    PendingRequest pending = Request("alloc_memory", id);
    pending.channel_scope = true;
    ASSERT_OK(requests.Queue(pending, kStart));
  }
}

TEST(InFlightRequests, TheWorkersInvocationIdsAndNestingAreChecked) {
  InFlightRequests requests(InFlightRequests::Limits{4096, 2});
  ASSERT_OK(requests.Queue(Request("call"), kStart));
  ASSERT_OK(Open(requests, Invoke(1)));
  EXPECT_EQ(Open(requests, Invoke(1)).code(), absl::StatusCode::kInvalidArgument);  // in use
  // A nested invocation needs its parent to be running a request.
  EXPECT_EQ(Open(requests, Invoke(2, 1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Open(requests, Invoke(2, 9)).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_OK(requests.Queue(Request("inner call", 1), kStart));
  ASSERT_OK(Open(requests, Invoke(2, 1)));
  // Depth 2 is the limit: no request may be sent inside it, and the worker may not nest
  // deeper.
  absl::Status deep = requests.CheckScope(2);
  EXPECT_THAT(deep, StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_EQ(ToProtoError(deep).message(),
            "invocation: callback invocation 2 is nested 2 deep; the server allows at most 2 "
            "nested callback invocations");
  EXPECT_EQ(Open(requests, Invoke(3, 2)).code(), absl::StatusCode::kInvalidArgument);
}

// A worker that opens invocations nobody waits for (forged by a library) is refused past the
// bound, instead of growing the broker's and its client's memory without end.
TEST(InFlightRequests, InvocationsOpenAtOnceAreBounded) {
  InFlightRequests requests(InFlightRequests::Limits{4096, 64, 3});
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_OK(Open(requests, Invoke(id)));
  EXPECT_EQ(Open(requests, Invoke(4)).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_OK(requests.AnswerableInvocation(1).status());
  requests.CloseInvocation(1);
  EXPECT_TRUE(Open(requests, Invoke(4)).ok()) << "one was answered: room for another";
}

// Each thread of a worker waits in at most one invocation outside any other: more than the
// worker's threads can be are forged (a flood of them grew the client by 500 MiB a second).
TEST(InFlightRequests, InvocationsOutsideAnyOtherAreBoundedByTheWorkersThreads) {
  InFlightRequests::Limits limits{4096, 64};
  limits.max_top_level_invocations = 2;
  InFlightRequests requests(limits);
  ASSERT_OK(requests.Queue(Request("call"), kStart));
  ASSERT_OK(Open(requests, Invoke(1)));
  ASSERT_OK(Open(requests, Invoke(2)));
  EXPECT_EQ(Open(requests, Invoke(3)).code(), absl::StatusCode::kInvalidArgument);
  // Nested ones are bounded by their depth instead.
  ASSERT_OK(requests.Queue(Request("inner call", 1), kStart));
  ASSERT_OK(Open(requests, Invoke(3, 1)));
  requests.CloseInvocation(2);
  EXPECT_TRUE(Open(requests, Invoke(4)).ok()) << "one was answered: room for another";
}

TEST(InFlightRequests, AnInvocationOutsideAnyCallHasItsOwnDeadline) {
  InFlightRequests requests(InFlightRequests::Limits{});
  ASSERT_OK(Open(requests, Invoke(4)));  // a library thread fires a stored callback
  EXPECT_EQ(requests.NextDeadline(), kStart + absl::Seconds(5));
  std::optional<InFlightRequests::Culprit> overdue =
      requests.FindOverdue(kStart + absl::Seconds(5));
  ASSERT_TRUE(overdue.has_value());
  EXPECT_EQ(overdue->sequence, 0u);
  EXPECT_EQ(overdue->label, "callback 7 (invocation 4, outside any call)");
}

// A call on the same-host channel is not in flight here; the requests its callbacks' handlers
// send through the broker are, inside the invocation: the worker runs them under that call.
TEST(InFlightRequests, TheInnermostRequestInsideAnInvocation) {
  InFlightRequests requests(InFlightRequests::Limits{});
  EXPECT_FALSE(requests.InnermostRunningInInvocation().has_value());
  ASSERT_OK(requests.Queue(Request("top-level, waiting for the call on the channel"), kStart));
  EXPECT_FALSE(requests.InnermostRunningInInvocation().has_value());
  ASSERT_OK(Open(requests, Invoke(4)));
  EXPECT_FALSE(requests.InnermostRunningInInvocation().has_value()) << "nothing runs in it yet";
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued nested,
                       requests.Queue(Request("crash_null_deref", 4), kStart));
  ASSERT_OK(requests.Queue(Request("queued behind it", 4), kStart));
  std::optional<InFlightRequests::Culprit> running = requests.InnermostRunningInInvocation();
  ASSERT_TRUE(running.has_value());
  EXPECT_EQ(running->label, "crash_null_deref");
  EXPECT_EQ(running->sequence, nested.sequence);
}

TEST(InFlightRequests, TheLimitOfRequestsInFlightHolds) {
  InFlightRequests requests(InFlightRequests::Limits{2, 64});
  ASSERT_OK(requests.Queue(Request("a"), kStart));
  ASSERT_OK(requests.Queue(Request("b"), kStart));
  absl::StatusOr<InFlightRequests::Queued> third = requests.Queue(Request("c"), kStart);
  EXPECT_THAT(third.status(), StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_EQ(ToProtoError(third.status()).message(),
            "more than 2 requests in flight in one session");
}

TEST(InFlightRequests, ADeathDrainsTheBlamedFirstThenRunningThenQueued) {
  InFlightRequests requests(InFlightRequests::Limits{});
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued call, requests.Queue(Request("qsort"), kStart));
  ASSERT_OK(requests.Queue(Request("queued behind qsort"), kStart));
  ASSERT_OK(Open(requests, Invoke(1)));
  ASSERT_OK(requests.Queue(Request("inside the callback", 1), kStart));
  const InFlightRequests::Culprit innermost = requests.InnermostRunning();
  EXPECT_EQ(innermost.label, "inside the callback");

  std::vector<std::pair<PendingRequest, bool>> drained = requests.Drain(innermost);
  ASSERT_EQ(drained.size(), 3u);
  EXPECT_EQ(drained[0].first.label, "inside the callback");
  EXPECT_FALSE(drained[0].second);
  EXPECT_EQ(drained[1].first.label, "qsort");
  EXPECT_FALSE(drained[1].second);
  EXPECT_EQ(drained[2].first.label, "queued behind qsort");
  EXPECT_TRUE(drained[2].second);
  EXPECT_EQ(requests.size(), 0u);
  EXPECT_EQ(requests.RunningRequest(call.sequence), nullptr);
  EXPECT_THAT(requests.CheckScope(1), StatusIs(v1::FAILED_PRECONDITION));  // died with it
  // Sequence numbers keep growing across workers.
  ASSERT_OK_AND_ASSIGN(InFlightRequests::Queued next, requests.Queue(Request("cos"), kStart));
  EXPECT_GT(next.sequence, call.sequence);
}

}  // namespace
}  // namespace ffibox
