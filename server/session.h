// One client session in the broker: the lifetime of one `Session` stream.
//
// The session validates each client request, forwards what needs native code to its worker,
// and relays the worker's answers. It supervises the worker: a reader thread per worker
// generation receives replies, enforces the deadline of every request the worker is running
// (killing the worker when one passes), and turns the worker's death into typed errors for
// every request in flight. On the next request after a death, a new worker is started and
// the session's libraries, functions and callbacks are replayed under their old handles.
//
// Callbacks make the worker's work nested: native code calls a client callback (the worker
// sends an `invoke`, relayed to the client as a CallbackInvoke), and the client may send
// requests inside that invocation (Request.invocation) before its CallbackReturn. Requests
// therefore queue per scope: scope 0 is the top level, scope N holds the requests sent inside
// invocation N, which the worker runs one at a time on the thread that made the invocation.
// Each scope answers in order, scopes independently, so a reply must match the head of some
// scope. The head of every non-empty scope has a deadline, counted from when it became head;
// an enclosing call's deadline keeps running while its callbacks run. An invocation outside
// any call (a library thread firing a stored callback while the session is idle) gets the
// session's default deadline.
//
// Threads: HandleRequest and Shutdown are called from the stream's thread only; the reader
// thread and that thread share state under `mu_`. Responses go out through a thread-safe
// ResponseSink.
#ifndef FFIBOX_SERVER_SESSION_H_
#define FFIBOX_SERVER_SESSION_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"
#include "server/allowlist.h"
#include "server/jail/cgroups.h"
#include "server/jail/jail_options.h"
#include "server/library_descriptor.h"
#include "server/pending_request.h"
#include "server/scratch_directory.h"
#include "server/worker_death.h"
#include "server/worker_limits.h"
#include "server/worker_output.h"
#include "server/worker_pool.h"
#include "server/worker_process.h"

namespace ffibox {

// How much of a worker's output one session relays: 64 KiB/s on average, bursts of 1 MiB
// (enough for a library's banner or a debug dump; a flood is dropped with a note).
inline constexpr size_t kOutputBytesPerSecond = 64 << 10;
inline constexpr size_t kOutputBurstBytes = 1 << 20;

// Where a session's responses go. Implementations must be thread-safe.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // Sends one response; returns false when the client is gone.
  virtual bool Send(const v1::Response& response) = 0;
};

struct SessionConfig {
  std::string worker_path;
  absl::Duration default_call_timeout = absl::Seconds(30);
  absl::Duration max_call_timeout = absl::Hours(24);
  size_t max_message_bytes = 16 << 20;
  size_t max_reply_bytes = 320 << 20;
  size_t max_libraries = 256;
  size_t max_functions = 65536;
  size_t max_in_flight = 4096;
  size_t max_callbacks = 4096;  // callbacks defined (and not freed) at once
  int max_callback_depth = 64;  // invocations nested in one another
  TypeLimits type_limits;
  // The libraries this session's client may load (its identity's roots). Null: no
  // allowlist, for unit tests with a fake worker only; ffiboxd always sets one.
  std::shared_ptr<const LibraryAllowlist> allowlist;
  // The jail of the session's workers; its address_space_bytes and cpu_seconds are the
  // session's memory and CPU caps, also applied from the broker (server/worker_limits.h).
  JailOptions jail;
  // Environment variable names or globs a session may set (OpenSession.environment).
  std::vector<std::string> env_allow;
  // Where scratch directories are made (ScratchDirectory::PrepareRoot's result); empty:
  // sessions cannot have one.
  std::string scratch_root;
  // Every worker's cgroup is made here when the jail's cgroup layer is on (not owned; must
  // outlive the session). Null: no cgroups.
  CgroupTree* cgroups = nullptr;
  // Idle workers for the session's first worker (not owned; must outlive the session).
  // Null: every worker is started on demand.
  WorkerPool* pool = nullptr;
};

// The launch options of a worker of `generation` for sessions configured by `config`
// (the same for every session of a server, so pooled workers fit any session).
WorkerLaunchOptions WorkerLaunchOptionsFor(const SessionConfig& config, uint64_t generation);

class Session {
 public:
  Session(const SessionConfig& config, ResponseSink* sink, std::string session_id);
  // Shuts the session down if Shutdown was not called.
  ~Session();

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Handles one client request. Every request gets exactly one response (now, or when the
  // worker answers). Returns false when the client asked to close the session.
  bool HandleRequest(const v1::Request& request);

  // Kills and reaps the worker and stops the reader thread. Idempotent.
  void Shutdown();

 private:
  enum class State { kPending, kReady, kFailed };
  struct LibraryRecord {
    std::string path;
    State state = State::kPending;
  };
  struct FunctionRecord {
    uint64_t library = 0;
    std::string symbol;
    v1::Signature signature;
    State state = State::kPending;
    // Non-zero for a function resolved by address: the worker generation it is valid in.
    uint64_t generation = 0;
  };
  struct CallbackRecord {
    std::shared_ptr<const v1::Signature> signature;
    State state = State::kPending;
    bool freed = false;  // a free_callback was sent; gone once the worker answers it
  };
  // Requests sent inside one invocation (or at the top level, scope 0), oldest first.
  struct Scope {
    std::deque<PendingRequest> queue;
    absl::Time head_deadline = absl::InfiniteFuture();  // of queue.front()
    int depth = 0;  // the invocation's nesting depth; 0 for the top level
  };
  // A CallbackInvoke sent to the client and not yet answered.
  struct OpenInvocation {
    uint64_t callback = 0;
    int depth = 1;  // 1 + the parent's depth
    std::shared_ptr<const v1::Signature> signature;
    std::vector<std::pair<uint32_t, uint64_t>> shipped;  // pointees: (argument, size)
    // Set for an invocation outside any call; else the enclosing call's deadline governs.
    absl::Time deadline = absl::InfiniteFuture();
    absl::Duration timeout;
  };
  // What the worker was doing that made it die: a request, or an open invocation.
  struct Culprit {
    uint64_t sequence = 0;  // the request's, or 0
    std::string label;
    absl::Duration timeout;
  };

  // Request handlers: each validates, then answers or forwards.
  void Open(const v1::Request& request);
  void LoadLibrary(const v1::Request& request);
  void ResolveFunction(const v1::Request& request);
  void Call(const v1::Request& request);
  void GetLayout(const v1::Request& request);
  void LookupSymbol(const v1::Request& request);
  // read / write / alloc / free / fill / copy memory and read_string.
  void MemoryOperation(const v1::Request& request);
  void DefineCallback(const v1::Request& request);
  void FreeCallback(const v1::Request& request);
  // Closes an open invocation and hands the client's answer to the worker.
  void CallbackReturn(const v1::Request& request);

  // Whether a request may run inside `invocation` (0: always): it must be open, and nested
  // less deep than the limit. FAILED_PRECONDITION / RESOURCE_EXHAUSTED otherwise.
  absl::Status CheckInvocationScope(uint64_t invocation) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Whether an address of worker generation `generation` is valid now.
  bool AddressIsCurrent(uint64_t generation) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // STALE_HANDLE for an address of worker generation `generation`.
  absl::Status StaleAddress(uint64_t generation) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Sends `request` to the worker (starting one if needed) as `pending` describes it.
  void Forward(const v1::Request& request, PendingRequest pending);
  // Starts a worker and replays the session's libraries and functions, unless one is alive.
  absl::Status EnsureWorker() ABSL_LOCKS_EXCLUDED(mu_);
  // Queues and sends the replay of every ready library and function to a new worker.
  void ReplayHandles() ABSL_LOCKS_EXCLUDED(mu_);
  // Queues `pending` for the live worker and sends `request` to it. Fails when no worker is
  // alive (it died since EnsureWorker).
  absl::Status Enqueue(const v1::Request& request, PendingRequest pending) ABSL_LOCKS_EXCLUDED(mu_);
  // Opens the admitted library `path` for the live worker when it loads by descriptor
  // (leaves `library` empty otherwise). LIBRARY_LOAD_FAILED or RESOURCE_EXHAUSTED.
  absl::Status OpenLibraryFor(const std::string& path, LibraryFd* library) ABSL_LOCKS_EXCLUDED(mu_);

  // The reader thread of one worker generation.
  void ReadReplies(WorkerProcess* worker);
  // Applies one frame from `worker`: a response, invoke or event. Sets `to_client` to what
  // the client must be sent, if anything. INVALID_ARGUMENT for a protocol violation.
  absl::Status AcceptFrame(absl::string_view frame, const WorkerProcess& worker,
                           std::optional<v1::Response>* to_client)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks and records a CallbackInvoke from the worker.
  absl::Status AcceptInvoke(const v1::CallbackInvoke& invoke) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The earliest deadline of anything the worker is running.
  absl::Time NextDeadline() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether something is past its deadline at `now`; if so, describes it in `culprit`.
  bool FindOverdue(absl::Time now, Culprit* culprit) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The request the worker was most likely executing: the head of the most deeply nested
  // scope. An empty culprit when nothing was in flight.
  Culprit InnermostRunning() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies a successful or failed reply to the session's handle tables.
  void RecordOutcome(const PendingRequest& pending, const v1::Response& response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fails everything in flight after `worker` died and reports the loss.
  // `culprit` names what overran its deadline (kDeadline); else the innermost running
  // request is blamed.
  void HandleWorkerDeath(WorkerProcess* worker, DeathCause cause, absl::string_view detail,
                         const Culprit* culprit = nullptr) ABSL_LOCKS_EXCLUDED(mu_);

  void Reply(const v1::Request& request, v1::Response response);
  void ReplyError(const v1::Request& request, const absl::Status& status);

  const SessionConfig config_;
  ResponseSink* const sink_;
  // The budget for relaying the worker's output (used by the reader thread only; reader
  // threads of successive workers never overlap).
  OutputBudget output_budget_{kOutputBytesPerSecond, kOutputBurstBytes};
  const std::string session_id_;

  absl::Mutex mu_;
  bool any_request_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration call_timeout_ ABSL_GUARDED_BY(mu_);
  // The session's memory cap (worker address space; 0 = none), from the server's cap or
  // OpenSession.memory_limit_bytes.
  uint64_t memory_limit_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // The worker's CPU share while idle (OpenSession.idle_cpu_percent, else the server's).
  uint32_t idle_cpu_percent_ ABSL_GUARDED_BY(mu_) = 0;
  // OpenSession.environment (validated), set in the worker before each library load.
  std::vector<std::pair<std::string, std::string>> environment_ ABSL_GUARDED_BY(mu_);
  // The session's scratch directory; removed after the workers are gone (~Session).
  std::unique_ptr<ScratchDirectory> scratch_ ABSL_GUARDED_BY(mu_);
  bool restart_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<LibraryRecord> libraries_ ABSL_GUARDED_BY(mu_);  // handle = index + 1
  absl::flat_hash_map<uint64_t, FunctionRecord> functions_ ABSL_GUARDED_BY(mu_);
  uint64_t next_function_handle_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, CallbackRecord> callbacks_ ABSL_GUARDED_BY(mu_);
  uint64_t next_callback_handle_ ABSL_GUARDED_BY(mu_) = 1;

  std::unique_ptr<WorkerProcess> worker_ ABSL_GUARDED_BY(mu_);
  // The worker's cgroup (config_.cgroups); removed after the worker is reaped.
  std::unique_ptr<WorkerCgroup> cgroup_ ABSL_GUARDED_BY(mu_);
  // Without a cgroup: the watch on the worker's RLIMIT_NPROC (config_.jail.processes).
  std::unique_ptr<ProcessCapWatch> process_cap_ ABSL_GUARDED_BY(mu_);
  bool worker_alive_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  v1::Error last_death_ ABSL_GUARDED_BY(mu_);
  std::thread reader_;  // touched by the stream's thread only

  absl::flat_hash_map<uint64_t, Scope> scopes_ ABSL_GUARDED_BY(mu_);  // by invocation; 0 = top
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;                         // requests in all scopes
  absl::flat_hash_map<uint64_t, OpenInvocation> invocations_ ABSL_GUARDED_BY(mu_);
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  std::string last_label_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_SESSION_H_
