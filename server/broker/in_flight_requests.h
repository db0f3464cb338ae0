// What a session's worker is running: the requests sent to it and not yet answered, the
// callback invocations it opened, and their deadlines.
//
// Callbacks make the worker's work nested: native code calls a client callback (the worker
// sends an invoke), and the client may send requests inside that invocation before it
// answers. Requests therefore queue per scope: scope 0 is the top level, scope N holds the
// requests sent inside invocation N, which the worker runs one at a time on the thread that
// made the invocation. Each scope answers in order, scopes independently, so a reply must
// match the head of some scope. The head of every non-empty scope has a deadline, counted
// from when it became head; an enclosing call's deadline keeps running while its callbacks
// run. An invocation outside any call (a library thread firing a stored callback while the
// session is idle) gets its own deadline.
//
// Pure data plus time (every time is passed in): no processes, no I/O, no lock of its own.
// The session holds it under its lock.
#ifndef FFIBOX_SERVER_BROKER_IN_FLIGHT_REQUESTS_H_
#define FFIBOX_SERVER_BROKER_IN_FLIGHT_REQUESTS_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ffibox/v1/ffibox.pb.h"
#include "server/broker/pending_request.h"

namespace ffibox {

// The most invocations on the same-host channel with requests running at once (the client
// drops a channel whose invocations nest deeper: kMaxChannelInvocationDepth).
inline constexpr size_t kMaxChannelScopes = 256;

class InFlightRequests {
 public:
  struct Limits {
    size_t max_in_flight = 4096;  // requests in all scopes
    int max_callback_depth = 64;  // invocations nested in one another
    // Invocations open at once: each thread of a worker (at most its 256 processes and
    // threads) waits in at most max_callback_depth of them. More is a worker flooding the
    // broker and its client with invocations that no native code waits for.
    size_t max_open_invocations = 16384;
    // Invocations open at once outside any other (made by a call, or by a thread of the
    // library's): one per thread of the worker at most, so its task limit
    // (JailOptions::worker_pids_max) when it has one.
    size_t max_top_level_invocations = 16384;
  };

  // A callback invocation the worker opened and the client has not answered.
  struct Invocation {
    uint64_t callback = 0;
    int depth = 1;  // 1 + the parent's depth
    std::shared_ptr<const v1::Signature> signature;
    std::vector<std::pair<uint32_t, uint64_t>> shipped;  // pointees: (argument, size)
    // Set for an invocation outside any call; else the enclosing call's deadline governs.
    absl::Time deadline = absl::InfiniteFuture();
    absl::Duration timeout;
  };

  // What the worker was doing when something went wrong: a request, or an invocation.
  struct Culprit {
    uint64_t sequence = 0;  // the request's, or 0
    std::string label;
    absl::Duration timeout;
  };

  // How Queue left things, for the caller's wake-ups.
  struct Queued {
    uint64_t sequence = 0;     // the request's WorkerRequest.id
    bool became_head = false;  // its scope was empty: a new deadline to wait for
    bool first = false;        // nothing else was in flight: the worker was idle
  };

  explicit InFlightRequests(Limits limits) : limits_(limits) {}

  // Whether a request may run inside `invocation` (0: always): it must be open, and nested
  // less deep than the limit. FAILED_PRECONDITION / RESOURCE_EXHAUSTED otherwise.
  absl::Status CheckScope(uint64_t invocation) const;
  // Whether a request may run inside invocation `id` on the same-host channel
  // (Request.channel_invocation): the broker cannot see such invocations, only that `id` is
  // not 0 and none of its open invocations (INVALID_ARGUMENT then), and that no more than
  // kMaxChannelScopes of them have requests running (RESOURCE_EXHAUSTED). Their scopes are
  // apart from the broker's invocations', and last while requests run in them.
  absl::Status CheckChannelScope(uint64_t id) const;

  // Gives `pending` the next sequence number and queues it in its scope; a request that
  // becomes its scope's head starts its deadline at `now`. Fails as CheckScope (or
  // CheckChannelScope, for a `channel_scope`), or with
  // RESOURCE_EXHAUSTED past the limit of requests in flight.
  absl::StatusOr<Queued> Queue(PendingRequest pending, absl::Time now);

  // The request a reply numbered `sequence` answers (the head of some scope), or null
  // (valid until this changes).
  const PendingRequest* RunningRequest(uint64_t sequence) const;
  // Removes that request (RunningRequest must have found it); the next request of its scope
  // starts its deadline at `now`.
  PendingRequest Finish(uint64_t sequence, absl::Time now);

  // The client's id of the request `invoke` says it was made by (CallbackInvoke.request_id):
  // 0 when it names none or a request of the broker's. INVALID_ARGUMENT (a protocol
  // violation) when the request it names is not the one running in the scope of its parent
  // invocation (the top level for none), which its thread would be running, and when it
  // reports kept blocks (CallbackInvoke.kept) that are not those of that request, a call.
  absl::StatusOr<uint64_t> InvokingRequest(const v1::CallbackInvoke& invoke) const;

  // Records a callback invocation the worker opened for `callback` (whose signature is
  // `signature`, its pointees checked as `shipped`), checking the worker's ids: a new id,
  // a parent that is running a request, nesting within the limit. INVALID_ARGUMENT (a
  // protocol violation) otherwise. An invocation outside any call gets `idle_timeout`
  // from `now`.
  absl::Status OpenInvocation(const v1::CallbackInvoke& invoke,
                              std::shared_ptr<const v1::Signature> signature,
                              std::vector<std::pair<uint32_t, uint64_t>> shipped,
                              absl::Duration idle_timeout, absl::Time now);
  // The open invocation `id`, once nothing runs inside it any more; FAILED_PRECONDITION
  // naming callback_return.invocation otherwise (valid until this changes).
  absl::StatusOr<const Invocation*> AnswerableInvocation(uint64_t id) const;
  // Closes invocation `id` (answered by the client).
  void CloseInvocation(uint64_t id);
  // The open invocations that nothing runs inside any more (AnswerableInvocation would give
  // each), oldest id first.
  std::vector<uint64_t> AnswerableInvocations() const;
  bool HasOpenInvocations() const { return !invocations_.empty(); }

  // What a frame from the worker may hold (core/encoding_limits.h): the answer to any request
  // it is running (the heads of the scopes), or a callback invocation of at most
  // `max_params` parameters.
  AnswerLimits ReplyLimits(uint64_t max_params) const;

  // The earliest deadline of anything the worker is running (InfiniteFuture when idle).
  absl::Time NextDeadline() const;
  // What is past its deadline at `now`, if anything.
  std::optional<Culprit> FindOverdue(absl::Time now) const;
  // Restarts the deadline of the top-level head, when it is request `sequence`, at `now`:
  // once per request (the worker was running something else, a call from the same-host
  // channel, when its clock started). Whether it did.
  bool PostponeTopLevelHead(uint64_t sequence, absl::Time now);
  // The request the worker was most likely executing: the head of the most deeply nested
  // scope; an empty culprit when nothing is in flight.
  Culprit InnermostRunning() const;
  // The head of the most deeply nested scope of an invocation (depth 1 or more), if any: a
  // request a callback's handler sent through the broker, which the worker runs under the
  // call that invoked it (one from the same-host channel included).
  std::optional<Culprit> InnermostRunningInInvocation() const;
  // A request running inside an invocation on the same-host channel, if any: run by the
  // worker's thread that waits on the channel, it is what that thread runs.
  std::optional<Culprit> RunningInChannelScope() const;

  // After the worker died: every request in flight, `blamed` first, then the other heads
  // (running, or blocked in native code under a callback), then queued requests; `second`
  // is true for requests that were only queued behind another. Everything is cleared,
  // invocations too (their native callers are gone).
  std::vector<std::pair<PendingRequest, bool>> Drain(const Culprit& blamed);

  size_t size() const { return in_flight_; }
  // The label of the last request the worker answered ("" before the first).
  const std::string& last_label() const { return last_label_; }

 private:
  // Requests sent inside one invocation (or at the top level, scope 0), oldest first.
  struct Scope {
    std::deque<PendingRequest> queue;
    absl::Time head_deadline = absl::InfiniteFuture();  // of queue.front()
    int depth = 0;  // the invocation's nesting depth; 0 for the top level
  };
  // A scope's invocation id, and whether it is one on the same-host channel: the client
  // names those, so they have keys of their own, apart from the broker's invocations.
  using ScopeKey = std::pair<uint64_t, bool>;
  static ScopeKey BrokerKey(uint64_t invocation) { return {invocation, false}; }
  static ScopeKey ChannelKey(uint64_t invocation) { return {invocation, true}; }

  const Limits limits_;
  absl::flat_hash_map<ScopeKey, Scope> scopes_;  // by invocation; {0, false} = top
  size_t channel_scopes_ = 0;                    // scopes of invocations on the same-host channel
  size_t in_flight_ = 0;
  absl::flat_hash_map<uint64_t, Invocation> invocations_;
  size_t top_level_invocations_ = 0;  // of invocations_, those outside any other (depth 1)
  uint64_t next_sequence_ = 1;
  std::string last_label_;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_IN_FLIGHT_REQUESTS_H_
