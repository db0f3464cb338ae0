#include "server/jail/jail_process.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace ffibox {

bool ReportStatus(int fd, uint32_t kind, int step, int error, int wait_status) {
  StatusRecord record{kStatusMagic, kind, step, error, wait_status};
  ssize_t written;
  do {
    written = write(fd, &record, sizeof(record));
  } while (written < 0 && errno == EINTR);
  return written == static_cast<ssize_t>(sizeof(record));
}

bool BecomeIds(unsigned uid, unsigned gid, bool may_setgroups) {
  // An id change resets the parent-death signal and the memory's dumpability (which a child
  // in the broker's memory shares with the broker): both are put back at once.
  const int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
  const bool changed = (!may_setgroups || syscall(SYS_setgroups, 0, nullptr) == 0) &&
                       syscall(SYS_setresgid, gid, gid, gid) == 0 &&
                       syscall(SYS_setresuid, uid, uid, uid) == 0;
  const int error = errno;
  if (dumpable >= 0) prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  errno = error;
  return changed;
}

void CloseDescriptorsFrom(int first, int keep) {
  auto close_range = [](int from, unsigned to) {
    if (syscall(SYS_close_range, from, to, 0) == 0) return;
    // Kernels before 5.9: one by one, up to the descriptor limit.
    struct rlimit limit;
    rlim_t end = 1 << 20;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < end) end = limit.rlim_cur;
    for (rlim_t fd = from; fd < end && fd <= to; ++fd) close(static_cast<int>(fd));
  };
  if (keep >= first) {
    if (keep > first) close_range(first, static_cast<unsigned>(keep - 1));
    close_range(keep + 1, ~0U);
  } else {
    close_range(first, ~0U);
  }
}

int DropWorkerPrivileges(unsigned flags) {
  if ((flags & kExecJailed) == 0) return 0;
  if (flags & kExecDropCapabilities) {
    if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                     SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED) !=
        0) {
      return errno;
    }
    // Every capability the kernel knows (it refuses the numbers past its last one).
    for (int cap = 0; cap <= 63; ++cap) {
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
        if (errno == EINVAL && cap > 0) break;
        return errno;
      }
    }
  }
  if ((flags & kExecNobodyAfterMount) && !BecomeIds(kNobodyId, kNobodyId, true)) return errno;
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return errno;
  }
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capset, &header, data) != 0) return errno;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
  return 0;
}

void ExecArrangedWorker(char* const* argv, int keep) {
  if (fcntl(kWorkerExecutableFd, F_SETFD, FD_CLOEXEC) != 0) _exit(127);
  CloseDescriptorsFrom(kWorkerExecutableFd + 1, keep);
  char* const empty_env[] = {nullptr};
  syscall(SYS_execveat, kWorkerExecutableFd, "", argv, empty_env, AT_EMPTY_PATH);
  _exit(127);
}

}  // namespace ffibox
