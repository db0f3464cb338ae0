// What every session of a server is configured with (ffiboxd builds one from its
// configuration file and flags: server/broker/config.h).
#ifndef FFIBOX_SERVER_BROKER_SESSION_CONFIG_H_
#define FFIBOX_SERVER_BROKER_SESSION_CONFIG_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "core/types.h"
#include "server/broker/allowlist.h"
#include "server/broker/broker_metrics.h"
#include "server/broker/deadline_timer.h"
#include "server/broker/local_door.h"
#include "server/broker/worker_pool.h"
#include "server/broker/worker_process.h"
#include "server/jail/cgroups.h"
#include "server/jail/jail_options.h"

namespace ffibox {

struct SessionConfig {
  std::string worker_path;
  // The worker binaries, opened once from worker_path (ffiboxd does so at its start); null:
  // opened at each worker's start.
  std::shared_ptr<const WorkerExecutables> executables;
  absl::Duration default_call_timeout = absl::Seconds(30);
  absl::Duration max_call_timeout = absl::Hours(24);
  size_t max_message_bytes = 16 << 20;
  size_t max_reply_bytes = 320 << 20;
  size_t max_libraries = 256;
  size_t max_functions = 65536;
  size_t max_in_flight = 4096;
  size_t max_callbacks = 4096;  // callbacks defined (and not freed) at once
  // Bytes of signatures and callback definitions kept at once, as parsed
  // (HandleTable::Limits::max_kept_bytes).
  uint64_t max_signature_bytes = uint64_t{16} << 20;
  int max_callback_depth = 64;  // invocations nested in one another
  TypeLimits type_limits;
  // The libraries this session's client may load (its identity's roots). Null: no
  // allowlist, for unit tests with a fake worker only; ffiboxd always sets one.
  std::shared_ptr<const LibraryAllowlist> allowlist;
  // Whether the client is ffiboxd's own user or root (the local identity, on a unix-socket
  // listener), who may read whatever ffiboxd may: a root ffiboxd then hands its workers a
  // library in a directory closed to others (OpenLibraryForWorker).
  bool client_reads_as_broker = false;
  // The jail of the session's workers; its address_space_bytes and cpu_seconds are the
  // session's memory and CPU caps, also applied from the broker (server/broker/worker_limits.h).
  JailOptions jail;
  // Environment variable names or globs a session may set (OpenSession.environment).
  std::vector<std::string> env_allow;
  // Where scratch directories are made (ScratchDirectory::PrepareRoot's result); empty:
  // sessions cannot have one.
  std::string scratch_root;
  // Every worker's cgroup is made here when the jail's cgroup layer is on (not owned; must
  // outlive the session). Null: no cgroups.
  CgroupTree* cgroups = nullptr;
  // Idle workers for the session's first worker and its restarts (not owned; must outlive
  // the session).
  // Null: every worker is started on demand.
  WorkerPool* pool = nullptr;
  // Wakes workers' readers at the deadlines of requests sent while they slept (not owned;
  // must outlive the session). Null: the request's thread wakes the reader at once.
  DeadlineTimer* deadlines = nullptr;
  // Where the session's client fetches a same-host channel (not owned; must outlive the
  // session). Null: the session's client is not on a unix-socket listener, and
  // OpenLocalChannel is refused.
  LocalChannelDoor* local_door = nullptr;
  // What the session reports to ffiboxd's metrics (set per session by the service; the
  // default reports nothing).
  SessionMetrics metrics;
};

// The launch options of a worker for sessions configured by `config` (the same for every
// session of a server, so pooled workers fit any session and any restart).
WorkerLaunchOptions WorkerLaunchOptionsFor(const SessionConfig& config);

// The cgroup limits of a worker of a session that asked for nothing of its own (pooled
// workers' groups are made with these).
WorkerCgroupLimits DefaultWorkerCgroupLimits(const SessionConfig& config);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_SESSION_CONFIG_H_
