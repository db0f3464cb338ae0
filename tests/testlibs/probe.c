/* Probe library for ffibox's jail: libffibox_probe.so.
 *
 * Each function tries one thing a sandboxed library must not be able to do (or one thing it
 * must still be able to do) and reports what happened as a number: >= 0 means it worked
 * (a byte count, a descriptor, 0), -errno means the kernel refused. A function may also
 * never return because the seccomp policy kills the worker; that is the point of most of
 * them. tests/integration/sandbox_test.cc and server/jail/jail_test.cc call these through
 * a real jailed worker.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Reads up to `capacity` bytes of `path` into `out`: the byte count, or -errno. */
long probe_read_file(const char* path, char* out, long capacity) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = read(fd, out, (size_t)capacity);
  long result = n < 0 ? -errno : (long)n;
  close(fd);
  return result;
}

/* Creates (or truncates) `path` and writes `text` to it: the byte count, or -errno. */
long probe_write_file(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  ssize_t n = write(fd, text, strlen(text));
  long result = n < 0 ? -errno : (long)n;
  close(fd);
  return result;
}

/* Connects a TCP socket to 127.0.0.1:`port`: 0 when connected, or -errno. */
int probe_connect_tcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  struct sockaddr_in address;
  memset(&address, 0, sizeof(address));
  address.sin_family = AF_INET;
  address.sin_port = htons((uint16_t)port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int result = connect(fd, (struct sockaddr*)&address, sizeof(address)) == 0 ? 0 : -errno;
  close(fd);
  return result;
}

/* execve(`path`): returns -errno if the kernel refuses (it does not return on success). */
int probe_execve(const char* path) {
  char* const argv[] = {(char*)path, NULL};
  char* const envp[] = {NULL};
  execve(path, argv, envp);
  return -errno;
}

/* Forks up to `count` children that sleep a second and exit: how many forks succeeded,
 * or -errno of the first failure when none did. */
int probe_fork_bomb(int count) {
  int made = 0;
  int first_error = 0;
  for (int i = 0; i < count; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      sleep(1);
      _exit(0);
    }
    if (pid < 0) {
      first_error = errno;
      break;
    }
    ++made;
  }
  while (waitpid(-1, NULL, 0) > 0) {
  }
  return made > 0 ? made : -first_error;
}

/* kill(`pid`, `signal_number`): 0 or -errno. */
int probe_kill(int pid, int signal_number) {
  return kill((pid_t)pid, signal_number) == 0 ? 0 : -errno;
}

/* ptrace(PTRACE_ATTACH, getppid()): 0 or -errno. */
long probe_ptrace_parent(void) {
  return ptrace(PTRACE_ATTACH, getppid(), NULL, NULL) == 0 ? 0 : -errno;
}

/* mallocs `megabytes` MiB and touches every page: 0 when it got them, -1 when malloc
 * returned NULL. The pages are written through a volatile pointer: stores into a block that
 * is freed unread may otherwise be compiled away, leaving the memory untouched. */
int probe_allocate(long megabytes) {
  size_t bytes = (size_t)megabytes << 20;
  char* block = malloc(bytes);
  if (block == NULL) return -1;
  volatile char* pages = block;
  for (size_t i = 0; i < bytes; i += 4096) pages[i] = 1;
  free(block);
  return 0;
}

/* Spins on the CPU for `seconds` of CPU time: returns the seconds spun (if it returns). */
long probe_spin(long seconds) {
  struct timespec start, now;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
  volatile unsigned long sink = 0;
  do {
    for (int i = 0; i < 1000000; ++i) sink += (unsigned long)i;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  } while (now.tv_sec - start.tv_sec < seconds);
  return (long)(now.tv_sec - start.tv_sec);
}

/* probe_spin with SIGXCPU ignored: the kernel ends it with SIGKILL at the hard limit. */
long probe_spin_ignoring_sigxcpu(long seconds) {
  signal(SIGXCPU, SIG_IGN);
  return probe_spin(seconds);
}

/* The worker's own pid and its parent's, as it sees them (pid namespace: 2 and 1). */
int probe_getpid(void) { return (int)getpid(); }
int probe_getppid(void) { return (int)getppid(); }
/* Its uid as it sees it. */
int probe_getuid(void) { return (int)getuid(); }

static void ignore_signal(int signal_number) { (void)signal_number; }

/* Installs its own SIGSYS handler that swallows the signal, then calls execve(`path`): a
 * library trying to hide a violation. Returns -errno if execve returns. */
int probe_swallow_sigsys_then_execve(const char* path) {
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = ignore_signal;
  sigaction(SIGSYS, &action, NULL);
  return probe_execve(path);
}

/* The `nth` (from 0) descriptor above stderr, counting up, whose type is `type` (an S_IF*
 * value) and, with `write_only` set, that is open only for writing: how a library finds
 * the worker's own descriptors (its sockets, its crash pipe) wherever they are. -ENOENT
 * when there is none. */
int probe_find_descriptor(int type, int write_only, int nth) {
  for (int fd = 3; fd < 4096; ++fd) {
    struct stat st;
    if (fstat(fd, &st) != 0 || (st.st_mode & S_IFMT) != (mode_t)type) continue;
    if (write_only && (fcntl(fd, F_GETFL) & O_ACCMODE) != O_WRONLY) continue;
    if (nth-- == 0) return fd;
  }
  return -ENOENT;
}

/* Writes a forged crash report (the worker's layout: magic 0xffb0c7a5, signal, code,
 * syscall, address, address space and its cap) claiming a forbidden execve to the crash pipe (the
 * write-only pipe above stderr), then raises SIGSYS itself: a library trying to make the broker
 * report a violation never made. */
int probe_forge_sigsys_report(void) {
  struct {
    uint32_t magic;
    int32_t signal;
    int32_t code;
    int32_t syscall;
    uint64_t address;
    uint64_t address_space;
    uint64_t address_space_cap;
  } report = {0xffb0c7a5u, SIGSYS, 1, SYS_execve, 0, 0, 0};
  const int crash_pipe = probe_find_descriptor(S_IFIFO, 1, 0);
  if (crash_pipe < 0) return crash_pipe;
  if (write(crash_pipe, &report, sizeof(report)) != (ssize_t)sizeof(report)) return -errno;
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = SIG_DFL;
  sigaction(SIGSYS, &action, NULL);
  raise(SIGSYS);
  return 0;
}

/* Creates empty files `dir`/f0, f1, ... until a creation fails or `most` exist, then removes
 * them: how many it made when a creation failed with ENOSPC (the filesystem's files are all
 * taken), `most` when none failed, else -errno of the failure. Empty files cost a tmpfs no
 * space, only inodes and dentries: kernel memory its size does not count. */
long probe_fill_with_empty_files(const char* dir, long most) {
  char path[PATH_MAX];
  long made = 0;
  long result = most;
  for (; made < most; ++made) {
    snprintf(path, sizeof path, "%s/f%ld", dir, made);
    const int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
      result = errno == ENOSPC ? made : -errno;
      break;
    }
    close(fd);
  }
  for (long i = 0; i < made; ++i) {
    snprintf(path, sizeof path, "%s/f%ld", dir, i);
    unlink(path);
  }
  return result;
}

/* Reserves address space (inaccessible, uncommitted: no memory) 64 MiB at a time until a
 * reservation fails, as a JIT or an emulator reserving its buffers would, then, as such a
 * library does, gives up: `how` 0 exits with status 1, 1 dies of a NULL store; 2 gives it
 * all back and returns how many MiB it reserved. Returns -1 if no reservation failed
 * within 1 TiB. */
int probe_reserve_address_space_then(int how) {
  static void* reserved[16384];
  int count = 0;
  for (; count < 16384; ++count) {
    reserved[count] =
        mmap(NULL, (size_t)64 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (reserved[count] == MAP_FAILED) break;
  }
  if (count == 16384 || how == 2) {
    for (int i = 0; i < count; ++i) munmap(reserved[i], (size_t)64 << 20);
    return count == 16384 ? -1 : count * 64;
  }
  if (how == 0) exit(1);
  *(volatile int*)NULL = 1;
  return -1;
}

/* Forks a child that ends with exit(127) (running the exit handlers it inherited), waits for
 * it, then dies of a NULL store itself: the worker's crash report must be its own. */
int probe_fork_exiting_child_then_crash(void) {
  const pid_t child = fork();
  if (child < 0) return -errno;
  if (child == 0) exit(127);
  int status = 0;
  waitpid(child, &status, 0);
  *(volatile int*)NULL = 1;
  return 0;
}

/* Reads the byte at the address written in `text` (decimal), as a library that takes its
 * caller's buffers' addresses in a string does (xgboost's JSON array interface). */
int probe_read_address_in_text(const char* text) {
  return *(volatile unsigned char*)(uintptr_t)strtoull(text, NULL, 10);
}

/* Connects a unix stream socket to `name`: a path, or with `abstract` set the abstract
 * address "\0name". 0 when connected, or -errno of the socket or connect that failed. */
int probe_connect_unix(const char* name, int abstract) {
  struct sockaddr_un address;
  memset(&address, 0, sizeof(address));
  address.sun_family = AF_UNIX;
  size_t offset = abstract ? 1 : 0;
  size_t length = strlen(name);
  if (offset + length >= sizeof(address.sun_path)) return -ENAMETOOLONG;
  memcpy(address.sun_path + offset, name, length);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  socklen_t size = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + offset + length);
  int result = connect(fd, (struct sockaddr*)&address, size) == 0 ? 0 : -errno;
  close(fd);
  return result;
}

/* Copies `user`'s name into `name` (at most `capacity` bytes, NUL-terminated): its length
 * when `user` was found, 0 when the lookup found nobody, -errno when it failed. */
static long copy_user_name(const struct passwd* user, int error, char* name, long capacity) {
  if (user == NULL) return -error;
  size_t length = strlen(user->pw_name);
  if ((long)length >= capacity) return -ERANGE;
  memcpy(name, user->pw_name, length + 1);
  return (long)length;
}

/* getpwuid(`uid`), as libraries looking for a home directory or a user name call it. */
long probe_getpwuid(int uid, char* name, long capacity) {
  errno = 0;
  struct passwd* user = getpwuid((uid_t)uid);
  return copy_user_name(user, errno, name, capacity);
}

/* getpwuid_r(`uid`), the reentrant form. */
long probe_getpwuid_r(int uid, char* name, long capacity) {
  struct passwd entry;
  struct passwd* user = NULL;
  char buffer[4096];
  int error = getpwuid_r((uid_t)uid, &entry, buffer, sizeof(buffer), &user);
  return copy_user_name(user, error, name, capacity);
}

/* getpwnam(`login`). */
long probe_getpwnam(const char* login, char* name, long capacity) {
  errno = 0;
  struct passwd* user = getpwnam(login);
  return copy_user_name(user, errno, name, capacity);
}

/* Reads /proc/1/cmdline (the jail's init as the worker sees it) into `out`: the byte
 * count, or -errno. */
long probe_init_cmdline(char* out, long capacity) {
  return probe_read_file("/proc/1/cmdline", out, capacity);
}

/* What library constructors commonly do at load (libcap's PR_CAPBSET_READ, udev/libusb's
 * netlink socket, Mesa pinning its own thread): 0 when all were allowed, else -errno of
 * the first refusal (a refusal that kills the worker never returns). */
int probe_library_init_calls(void) {
  if (prctl(PR_CAPBSET_READ, 0, 0, 0, 0) < 0) return -errno;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 15 /* NETLINK_KOBJECT_UEVENT */);
  if (fd < 0) return -errno;
  close(fd);
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity((pid_t)syscall(SYS_gettid), sizeof(set), &set) != 0) return -errno;
  if (sched_setaffinity((pid_t)syscall(SYS_gettid), sizeof(set), &set) != 0) return -errno;
  return 0;
}

/* Sends a descriptor of its own (a duplicate of stdin) with SCM_RIGHTS over `fd`, without
 * SIGPIPE: 0 when it was queued, else -errno. A descriptor queued where nobody reads it
 * counts against every process of the worker's user (the kernel's in-flight count). */
int probe_pass_descriptor(int fd) {
  int passed = dup(0);
  if (passed < 0) return -errno;
  char byte = 'x';
  struct iovec io = {&byte, 1};
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(sizeof(int))];
  } control;
  memset(&control, 0, sizeof(control));
  struct msghdr message;
  memset(&message, 0, sizeof(message));
  message.msg_iov = &io;
  message.msg_iovlen = 1;
  message.msg_control = control.bytes;
  message.msg_controllen = sizeof(control.bytes);
  struct cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(header), &passed, sizeof(int));
  const int result = sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 ? -errno : 0;
  close(passed);
  return result;
}

/* The hard limit of resource `resource` (RLIMIT_*), saturated at LONG_MAX for none. */
long probe_hard_limit(int resource) {
  struct rlimit limit;
  if (getrlimit(resource, &limit) != 0) return -errno;
  return limit.rlim_max == RLIM_INFINITY || limit.rlim_max > (rlim_t)LONG_MAX
             ? LONG_MAX
             : (long)limit.rlim_max;
}

/* Queues up to `count` real-time signals to its own thread (blocked there meanwhile; the
 * worker's other threads never see them), then takes them back: how many were queued before
 * the kernel refused one (its pending-signal budget). */
int probe_queue_signals(int count) {
  sigset_t blocked, old;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGRTMIN);
  pthread_sigmask(SIG_BLOCK, &blocked, &old);
  siginfo_t info;
  memset(&info, 0, sizeof(info));
  info.si_signo = SIGRTMIN;
  info.si_code = SI_QUEUE;
  info.si_pid = getpid();
  const pid_t self = (pid_t)syscall(SYS_gettid);
  int queued = 0;
  while (queued < count && syscall(SYS_rt_tgsigqueueinfo, getpid(), self, SIGRTMIN, &info) == 0) {
    ++queued;
  }
  struct timespec now = {0, 0};
  for (int i = 0; i < queued; ++i) sigtimedwait(&blocked, NULL, &now);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return queued;
}

/* posix_fadvise(`advice`) on a file of the worker's view (its own executable): 0, or
 * -the error it returned. */
int probe_fadvise(int advice) {
  const int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  const int result = posix_fadvise(fd, 0, 0, advice);
  close(fd);
  return -result;
}

/* fcntl(F_SETPIPE_SZ, `bytes`) on a new pipe: the size it got, or -errno. */
int probe_grow_pipe(int bytes) {
  int ends[2];
  if (pipe(ends) != 0) return -errno;
  const int result = fcntl(ends[0], F_SETPIPE_SZ, bytes);
  const int error = errno;
  close(ends[0]);
  close(ends[1]);
  return result < 0 ? -error : result;
}

/* sched_setscheduler(SCHED_FIFO, priority 1) of this thread named by its tid (as EPICS
 * libCom's init thread probes priorities), then prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET,
 * CAP_NET_RAW) (as libcap-ng's constructor reads): 0 or -errno of the first, then the
 * second's result or -errno, packed as first * 1000 + second. */
int probe_scheduler_and_ambient_caps(void) {
  struct sched_param param = {.sched_priority = 1};
  const int scheduled =
      sched_setscheduler((pid_t)syscall(SYS_gettid), SCHED_FIFO, &param) == 0 ? 0 : -errno;
  const int ambient = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, 13 /* CAP_NET_RAW */, 0, 0);
  return scheduled * 1000 + (ambient < 0 ? -errno : ambient);
}

/* sched_setparam(priority 0) of this thread named by its tid: 0 or -errno. */
int probe_set_own_thread_param(void) {
  struct sched_param param = {.sched_priority = 0};
  return sched_setparam((pid_t)syscall(SYS_gettid), &param) == 0 ? 0 : -errno;
}
