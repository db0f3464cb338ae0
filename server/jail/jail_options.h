// What a worker's jail is made of: the interface between the broker's configuration
// (server/broker/config, per server and per session) and the jail applied by the worker launcher
// and the worker itself (server/jail/). Plain data: the broker fills it, the launcher passes
// it to the worker, the worker applies it before it loads any library.
#ifndef FFIBOX_SERVER_JAIL_JAIL_OPTIONS_H_
#define FFIBOX_SERVER_JAIL_JAIL_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace ffibox {

struct JailOptions {
  // Master switch: false runs workers unjailed (crash isolation only; for debugging).
  bool enabled = true;

  // The layers every worker gets (server/jail/jail_layers.h): decided once at startup by
  // DecideJailLayers, which turns a layer off only when the host cannot provide it and the
  // operator waived it by name. A worker gets exactly these or is not started.
  bool user_namespace = true;
  bool pid_namespace = true;
  bool net_namespace = true;
  bool ipc_namespace = true;
  bool uts_namespace = true;
  bool mount_namespace = true;
  bool filesystem = true;  // the pivot_root view (needs the mount namespace)
  bool proc = true;        // a fresh /proc in that view (needs the pid namespace)
  bool cgroup = true;      // a cgroup per worker (server/jail/cgroups.h), made by the broker

  // Layers the operator waived and the host could not provide, with the reason, as
  // "filesystem (bind /usr/lib: Permission denied)": printed at startup and reported to
  // every client.
  std::vector<std::string> waived;

  // Filesystem view (mount namespace + pivot_root): the system library directories and
  // read-only system data (server/jail/filesystem.h), plus these directories, read-only, at
  // their own paths; a private writable /tmp of `tmp_bytes`; nothing else. Libraries are
  // not loaded through the view: the broker opens each one and hands the worker the
  // descriptor, so an allowed library root need not be visible.
  std::vector<std::string> visible_paths;
  uint64_t tmp_bytes = 16 << 20;
  // A host directory shown read-write (nosuid, nodev, noexec) at its own path: the
  // session's scratch directory, or empty.
  std::string scratch_directory;

  // seccomp-bpf policy by name: "strict" (default) or "permissive"; extra syscalls allowed
  // on top of it by name (from the configuration).
  std::string seccomp_policy = "strict";
  std::vector<std::string> extra_syscalls;

  // rlimits; 0 leaves a limit as inherited. RLIMIT_CORE is always 0.
  uint64_t address_space_bytes = 0;  // RLIMIT_AS: the session's memory cap
  uint64_t cpu_seconds = 0;          // RLIMIT_CPU: the session's CPU-time cap
  uint64_t open_files = 256;         // RLIMIT_NOFILE
  uint64_t processes = 0;            // RLIMIT_NPROC (threads count too)
  uint64_t file_bytes = 16 << 20;    // RLIMIT_FSIZE

  // The cgroup layer's limits (the memory cap is address_space_bytes).
  uint64_t worker_pids_max = 256;          // threads and processes of one worker
  uint32_t idle_cpu_percent = 10;          // CPU share while idle; 0: no throttle
  uint64_t total_worker_memory_bytes = 0;  // all workers together; 0: none
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_JAIL_OPTIONS_H_
