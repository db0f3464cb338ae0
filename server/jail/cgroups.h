// Per-worker control groups: the jail's "cgroup" layer.
//
// Every worker gets its own cgroup with a cap on its threads and processes (pids.max: one
// library cannot take every pid of the host), on its memory (the session's cap, counted in
// resident pages, not address space) and, while no request of its session is in flight, a
// CPU quota (a background thread the library left running gets a small share of one CPU).
// All workers of one ffiboxd sit under one parent, <the broker's own cgroup>/ffibox-<pid>,
// whose memory limit is the server-wide budget of all workers together.
//
// Both hierarchies are supported: cgroup v2 (the unified hierarchy, with the pids, memory
// and cpu controllers available to the broker's cgroup) and cgroup v1 (one hierarchy per
// controller). On v2, a cgroup delegated to ffiboxd (systemd's Delegate=yes, a container's
// cgroup namespace) holds ffiboxd itself, which the kernel's "no internal processes" rule
// does not allow beside groups with controllers: ffiboxd then moves itself into a leaf,
// <its cgroup>/ffibox-<pid>-broker, and back when the tree goes (cgroup_placement.h).
// Runs in the broker only; thread-safe.
#ifndef FFIBOX_SERVER_JAIL_CGROUPS_H_
#define FFIBOX_SERVER_JAIL_CGROUPS_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace ffibox {

struct WorkerCgroupLimits {
  uint64_t pids_max = 0;      // threads and processes of the worker; 0: no cap
  uint64_t memory_bytes = 0;  // resident memory (and swap) of the worker; 0: no cap
  // CPU share while no request is in flight, in percent of one CPU; 0: no throttle.
  uint32_t idle_cpu_percent = 0;
};

class WorkerCgroup;

class CgroupTree {
 public:
  // Creates <broker's cgroup>/ffibox-<pid> in the v2 hierarchy if it offers the pids,
  // memory and cpu controllers (moving ffiboxd into <broker's cgroup>/ffibox-<pid>-broker
  // when its cgroup holds it), else in the v1 hierarchies of those controllers, with
  // `total_memory_bytes` (0: no limit) as the memory limit of all workers together. Stale
  // trees and leaves of ffiboxd processes that are gone are removed. FAILED_PRECONDITION
  // saying why when neither hierarchy can be used (on v2: naming the file, and the other
  // processes that share ffiboxd's cgroup when there are some).
  static absl::StatusOr<std::unique_ptr<CgroupTree>> Create(uint64_t total_memory_bytes);

  CgroupTree(const CgroupTree&) = delete;
  CgroupTree& operator=(const CgroupTree&) = delete;
  // Removes the tree (its workers' groups must be gone) and puts ffiboxd back into its
  // cgroup if it moved out for this tree.
  ~CgroupTree();

  // "cgroup v1 (pids, memory, cpu)" or "cgroup v2", for reports.
  std::string Describe() const;

  // Creates the group of a new worker with `limits` and moves process `pid` (all its
  // threads) into it. Call it before the worker runs library code. INTERNAL naming the file
  // when a write fails.
  absl::StatusOr<std::unique_ptr<WorkerCgroup>> Attach(pid_t pid, const WorkerCgroupLimits& limits);

 private:
  CgroupTree(bool v2, std::vector<std::string> parents, std::string broker_leaf = "")
      : v2_(v2), parents_(std::move(parents)), broker_leaf_(std::move(broker_leaf)) {}

  const bool v2_;
  // v2: one directory; v1: the pids, memory and cpu parents, in that order.
  const std::vector<std::string> parents_;
  // v2: the leaf ffiboxd moved itself into to make this tree, or "" (it did not).
  const std::string broker_leaf_;
  std::atomic<uint64_t> next_worker_{0};
};

class WorkerCgroup {
 public:
  WorkerCgroup(const WorkerCgroup&) = delete;
  WorkerCgroup& operator=(const WorkerCgroup&) = delete;
  // Removes the group; the worker must have been reaped (its threads may take a moment to
  // leave: retried briefly).
  ~WorkerCgroup();

  // Changes the group's limits to `limits` (writes only what differs; the idle CPU quota is
  // applied as for an idle worker). A pooled worker's group is made with the server's
  // defaults and gets its session's limits here, which costs a few file writes, where
  // moving a process into a group can take milliseconds (cgroup v1 waits for an RCU grace
  // period). INTERNAL naming the file when a write fails; the group is then half changed.
  absl::Status SetLimits(const WorkerCgroupLimits& limits);

  // Lifts the idle CPU quota (`busy`) or applies it again. A no-op without a quota, and when
  // the quota is already as asked (no write).
  absl::Status SetBusy(bool busy);

  // The limits that bit since the last call, described for the session ("threads and
  // processes: the worker hit its cap of 256"); empty when none did.
  std::vector<std::string> NewLimitHits();

  // How many processes of the group the kernel's out-of-memory killer has ended (whichever
  // limit it acted for: the group's, its parents', the host's).
  uint64_t OomKills();

 private:
  friend class CgroupTree;
  WorkerCgroup(bool v2, std::vector<std::string> dirs) : v2_(v2), dirs_(std::move(dirs)) {}

  const std::string& pids_dir() const { return dirs_[0]; }
  const std::string& memory_dir() const { return dirs_[v2_ ? 0 : 1]; }
  const std::string& cpu_dir() const { return dirs_[v2_ ? 0 : 2]; }

  // Opens `path` (kept open until destruction); -1 on failure.
  int Open(const std::string& path, int flags) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the CPU quota: unlimited when `busy` or without an idle share, else the share.
  absl::Status WriteQuota(uint32_t idle_cpu_percent, bool busy) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The number in a counter file (`key` "": the whole file; else the value of "key N").
  uint64_t Counter(int* fd, const std::string& path, absl::string_view key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The group's counts of limit hits, read from its counter files (opened the first time).
  struct HitCounts {
    uint64_t pids = 0;    // refused forks
    uint64_t memory = 0;  // times the memory cap was reached
    uint64_t oom = 0;     // OOM kills
  };
  HitCounts ReadHitCounts() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const bool v2_;
  const std::vector<std::string> dirs_;  // as CgroupTree::parents_
  absl::Mutex mu_;
  WorkerCgroupLimits limits_ ABSL_GUARDED_BY(mu_);  // as written to the group's files
  // Control and counter files, opened once: SetBusy and NewLimitHits run at every request.
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
  int quota_fd_ ABSL_GUARDED_BY(mu_) = -1;
  bool quota_lifted_ ABSL_GUARDED_BY(mu_) = false;  // the last quota written was the busy one
  int pids_events_fd_ ABSL_GUARDED_BY(mu_) = -1;
  int memory_events_fd_ ABSL_GUARDED_BY(mu_) = -1;
  int oom_fd_ ABSL_GUARDED_BY(mu_) = -1;
  uint64_t pids_hits_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t memory_hits_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t oom_kills_ ABSL_GUARDED_BY(mu_) = 0;
};

// "" when this process can create per-worker cgroups (a probe group is made and removed),
// else why not. Used by DecideJailLayers for the "cgroup" layer.
std::string CgroupUnavailableReason();

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_CGROUPS_H_
