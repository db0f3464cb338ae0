// What a worker's jail is made of: the interface between the broker's configuration
// (server/config, per server and per session) and the jail applied by the worker launcher
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

  // Namespaces, each applied when the host permits it (user, pid, net, ipc, uts, mount).
  bool user_namespace = true;
  bool pid_namespace = true;
  bool net_namespace = true;
  bool ipc_namespace = true;
  bool uts_namespace = true;
  bool mount_namespace = true;

  // Filesystem view (mount namespace + pivot_root): these directories, read-only, at their
  // own paths, plus the system library directories; a private writable /tmp of
  // `tmp_bytes`; nothing else.
  std::vector<std::string> library_roots;
  uint64_t tmp_bytes = 16 << 20;

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
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_JAIL_OPTIONS_H_
