// What the processes of a worker's start share: the status records they send the broker,
// the descriptor numbers the worker gets, and the last step before the worker runs (drop
// every privilege, exec). Used by the broker's clone (server/jail/spawn.cc) and by
// ffibox-init, the pid namespace's init (server/jail/init_main.cc). Everything here is
// async-signal-safe: it runs in a child that shares, or has just copied, a multithreaded
// broker's memory.
#ifndef FFIBOX_SERVER_JAIL_JAIL_PROCESS_H_
#define FFIBOX_SERVER_JAIL_JAIL_PROCESS_H_

#include <cstdint>

namespace ffibox {

// fds 0..6 of the worker: stdin, stdout, stderr, the channel's socket, crash pipe,
// descriptor socket, the channel's memfd (server/jail/spawn.h, WorkerSpawnRequest).
constexpr int kWorkerDescriptorCount = 7;
// The worker binary (O_PATH), exec'd with execveat.
constexpr int kWorkerExecutableFd = 7;
// ffibox-init's end of the status pipe to the broker.
constexpr int kInitStatusFd = 8;

// nobody/nogroup: a root broker's worker runs as this host uid and gid.
inline constexpr unsigned kNobodyId = 65534;

// A status record on the pipe from the jail's processes to the broker.
constexpr uint32_t kStatusMagic = 0xffb0a11c;
enum StatusKind : uint32_t {
  kReady = 1,         // setup done
  kSetupFailed = 2,   // `step` failed with `error`
  kWorkerExited = 3,  // the init relays the worker's `wait_status`
  kCloned = 4         // the child runs: the broker may write its user namespace's maps
};
// Setup stages outside the filesystem plan (negative, below FilesystemStage's).
enum SetupStage {
  kStageIds = -20,
  kStageForkWorker = -21,
  kStageExecInit = -22,
  kStageDescriptors = -23,
  kStagePrivileges = -24,
};
struct StatusRecord {
  uint32_t magic;
  uint32_t kind;
  int32_t step;
  int32_t error;
  int32_t wait_status;
};
// Whether the whole record was written (not: the broker has gone).
bool ReportStatus(int fd, uint32_t kind, int step, int error, int wait_status = 0);

// How the worker is started (ffibox-init receives them as one decimal number).
enum WorkerExecFlag : unsigned {
  kExecJailed = 1,            // drop privileges at all (off: jail disabled)
  kExecDropCapabilities = 2,  // securebits, bounding set
  kExecNobodyAfterMount = 4,  // root without a user namespace: setresuid(65534)
};
constexpr unsigned kAllWorkerExecFlags = 7;

// Changes this task's ids with raw system calls: glibc's wrappers broadcast the change to
// every thread the broker had, under a lock another broker thread may hold. The change
// resets the parent-death signal and the memory's dumpability, which a child in the
// broker's memory shares with the broker: both are put back (SIGKILL; as they were).
bool BecomeIds(unsigned uid, unsigned gid, bool may_setgroups);

// Drops every privilege `flags` asks for: no capability survives exec and none can come
// back (securebits, bounding set, ambient and own sets, no_new_privs; nobody's ids when
// asked). 0, or the errno of the step that failed (the caller reports it and exits).
int DropWorkerPrivileges(unsigned flags);

// Execs the worker binary at kWorkerExecutableFd with `argv` and an empty environment,
// keeping only fds 0..6 and `keep` (close-on-exec; -1: none). Exits 127 if the exec fails.
[[noreturn]] void ExecArrangedWorker(char* const* argv, int keep);

// Closes every descriptor but `keep` (-1: none) from `first` up.
void CloseDescriptorsFrom(int first, int keep);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_JAIL_PROCESS_H_
