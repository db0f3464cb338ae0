/* Hostile library for ffibox's jail: libffibox_hostile.so.
 *
 * Each function does one thing a malicious library would try against its host: read or
 * create files, open another process's memory, write to or shrink the descriptors it
 * inherited, learn the broker's command line, look for descriptors it should not hold, write
 * into or corrupt the worker's shared-memory channel to the broker; crash or call back from
 * its constructor when the session's environment says so (FFIBOX_TEST_HOSTILE_AT_LOAD). Each
 * reports what happened as a number: >= 0 means it worked (a byte count, a descriptor type,
 * 0), -errno means the kernel refused. None of them calls a system call the strict seccomp
 * policy forbids, so a refusal comes from the jail's other layers (namespaces, the
 * filesystem view, ids) and is visible as a return value. tests/python/
 * test_jail_fails_closed.py calls these through a real jailed worker.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* Reads up to `capacity` bytes of `path` into `out`: the byte count, or -errno. */
long hostile_read_file(const char* path, char* out, long capacity) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = read(fd, out, (size_t)capacity);
  long result = n < 0 ? -errno : (long)n;
  close(fd);
  return result;
}

/* Creates `path` (failing if it exists) and writes `text` to it: the byte count, or -errno. */
long hostile_create_file(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  ssize_t n = write(fd, text, strlen(text));
  long result = n < 0 ? -errno : (long)n;
  close(fd);
  return result;
}

/* Opens /proc/`pid`/mem for reading and writing: 0 when it opened, or -errno. */
int hostile_open_process_memory(int pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/mem", pid);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return -errno;
  close(fd);
  return 0;
}

/* Writes `text` to descriptor `fd` (1: stdout, 2: stderr): the byte count, or -errno. */
long hostile_write_fd(int fd, const char* text) {
  ssize_t n = write(fd, text, strlen(text));
  return n < 0 ? -errno : (long)n;
}

/* ftruncate(`fd`, 0): 0 when the kernel truncated it, or -errno (a pipe gives -EINVAL). */
int hostile_truncate_fd(int fd) { return ftruncate(fd, 0) == 0 ? 0 : -errno; }

/* fallocate(`fd`, FALLOC_FL_KEEP_SIZE, 0, `bytes`): 0 when the kernel allocated the disk
 * space, or -errno (a pipe gives -ESPIPE). */
int hostile_allocate_fd(int fd, long bytes) {
  return fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes) == 0 ? 0 : -errno;
}

/* Reads up to `capacity` bytes of /proc/1/cmdline (NUL-separated arguments) into `out`: the
 * byte count, or -errno. */
long hostile_read_init_cmdline(char* out, long capacity) {
  return hostile_read_file("/proc/1/cmdline", out, capacity);
}

/* The type of descriptor `fd` (its st_mode & S_IFMT, e.g. S_IFIFO for a pipe), or -errno
 * (-EBADF when it is not open). */
long hostile_fd_type(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -errno;
  return (long)(st.st_mode & S_IFMT);
}

/* The inode number of descriptor `fd`, or -errno (-EBADF when it is not open). */
long hostile_fd_inode(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -errno;
  return (long)st.st_ino;
}

/* A channel of the worker (core/shm_channel.h), found in the worker's memory as a hostile
 * library finds it: a shared mapping of a memfd named "ffibox-channel" in /proc/self/maps.
 * The worker has one to the broker and, when its session has one, a same-host channel to
 * the client, which is the one whose first status word (byte 2048: since when the worker
 * runs a call from it, core/local_channel.h) is set while a call from it runs. `to_client`
 * picks that one, else the first other one: the broker's, as long as the session has no
 * idle same-host channel (a call through the broker while one is open would not tell them
 * apart). A channel's layout: a 16-byte header (the capacity of each
 * ring at byte 12); the positions of the ring to the worker at byte 64 and of the ring from
 * the worker at byte 192, each the producer's (write position, closed flag, futex word)
 * then, 64 bytes on, the consumer's (read position, closed flag, futex word); from byte 4096
 * the two rings' data, one after the other. NULL when there is none. */
static unsigned char* find_channel_of(int to_client) {
  FILE* maps = fopen("/proc/self/maps", "r");
  if (maps == NULL) return NULL;
  char line[512];
  unsigned char* found = NULL;
  while (found == NULL && fgets(line, sizeof line, maps) != NULL) {
    unsigned long start = 0;
    unsigned long offset = 1;
    if (strstr(line, "ffibox-channel") != NULL &&
        sscanf(line, "%lx-%*x %*s %lx", &start, &offset) == 2 && offset == 0) {
      const int busy = *(volatile uint64_t*)(start + 2048) != 0;
      if (busy == (to_client != 0)) found = (unsigned char*)start;
    }
  }
  fclose(maps);
  return found;
}

static unsigned char* find_channel(void) { return find_channel_of(0); }

/* Writes `length` bytes into the worker-to-broker ring of `channel`, behind the worker's back,
 * as fast as the broker makes room: byte i is `prefix[i]` for i < `prefix_length`, then
 * `pattern` over and over. */
static void write_to_broker(unsigned char* channel, const unsigned char* prefix, long prefix_length,
                            const unsigned char* pattern, long pattern_length, long length) {
  const uint64_t ring = *(volatile uint32_t*)(channel + 12);
  uint64_t* head = (uint64_t*)(channel + 192);
  uint64_t* tail = (uint64_t*)(channel + 192 + 64);
  uint32_t* broker_sleeps = (uint32_t*)(channel + 192 + 64 + 12);
  unsigned char* data = channel + 4096 + ring;
  uint64_t position = __atomic_load_n(head, __ATOMIC_SEQ_CST);
  long written = 0;
  while (written < length) {
    const uint64_t room = ring - (position - __atomic_load_n(tail, __ATOMIC_SEQ_CST));
    if (room == 0) {
      usleep(1000);
      continue;
    }
    uint64_t size = (uint64_t)(length - written) < room ? (uint64_t)(length - written) : room;
    for (uint64_t i = 0; i < size; ++i, ++written) {
      data[(position + i) & (ring - 1)] = written < prefix_length
                                              ? prefix[written]
                                              : pattern[(written - prefix_length) % pattern_length];
    }
    position += size;
    __atomic_store_n(head, position, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(broker_sleeps, 0, __ATOMIC_SEQ_CST) != 0) {
      syscall(SYS_futex, broker_sleeps, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    }
  }
}

/* Attacks the broker's memory through the worker's own channel, behind the worker's back:
 * writes into the worker-to-broker ring a frame header announcing `announced` bytes, then
 * `sent` bytes of it (as fast as the broker makes room), then stalls for `stall_seconds`
 * without finishing it. Returns the bytes written, or -errno. */
long hostile_partial_frame(long announced, long sent, int stall_seconds) {
  unsigned char* channel = find_channel();
  if (channel == NULL) return -ENOENT;
  const unsigned char header[4] = {(unsigned char)announced, (unsigned char)(announced >> 8),
                                   (unsigned char)(announced >> 16),
                                   (unsigned char)(announced >> 24)};
  const unsigned char filler = 'x';
  write_to_broker(channel, header, sizeof header, &filler, 1, (long)sizeof header + sent);
  sleep((unsigned)stall_seconds);
  return sent;
}

/* Sends a whole frame of `length` bytes behind the worker's back, to the broker or, when
 * `to_client`, on the session's same-host channel to its client: `prefix` (`prefix_length`
 * bytes), then `pattern` (`pattern_length` bytes) over and over, as a library would that
 * forges a reply which parses into far more memory than its size. Returns `length`, or
 * -errno. */
long hostile_whole_frame(int to_client, const unsigned char* prefix, long prefix_length,
                         const unsigned char* pattern, long pattern_length, long length) {
  unsigned char* channel = find_channel_of(to_client);
  if (channel == NULL) return -ENOENT;
  if (prefix_length < 0 || prefix_length > length || pattern_length <= 0) return -EINVAL;
  unsigned char header[4] = {(unsigned char)length, (unsigned char)(length >> 8),
                             (unsigned char)(length >> 16), (unsigned char)(length >> 24)};
  write_to_broker(channel, header, sizeof header, (const unsigned char*)"", 1, sizeof header);
  write_to_broker(channel, prefix, prefix_length, pattern, pattern_length, length);
  return length;
}

/* Waits until the reader of the worker's ring of `channel` has read all of it (up to 5 s).
 * Returns 0 or -ETIMEDOUT. */
static long wait_until_taken(const unsigned char* channel) {
  const uint64_t* head = (const uint64_t*)(channel + 192);
  const uint64_t* tail = (const uint64_t*)(channel + 192 + 64);
  for (int waited = 0; waited < 50000; ++waited) {
    if (__atomic_load_n(tail, __ATOMIC_SEQ_CST) == __atomic_load_n(head, __ATOMIC_SEQ_CST)) {
      return 0;
    }
    usleep(100);
  }
  return -ETIMEDOUT;
}

/* As hostile_whole_frame on the same-host channel to the client, then waits until the client
 * has read the whole frame (up to 5 s), so that the worker's own answer, written where the
 * worker believes the ring ends, cannot overwrite it first. A `length` of 0 writes nothing
 * (a first call that only has the function resolved). Returns `length`, -ETIMEDOUT, or
 * -errno. */
long hostile_whole_frame_to_client_taken(const unsigned char* prefix, long prefix_length,
                                         const unsigned char* pattern, long pattern_length,
                                         long length) {
  if (length == 0) return 0;
  const long written =
      hostile_whole_frame(1, prefix, prefix_length, pattern, pattern_length, length);
  if (written < 0) return written;
  const unsigned char* channel = find_channel_of(1);
  if (channel == NULL) return -ENOENT;
  const long taken = wait_until_taken(channel);
  return taken < 0 ? taken : written;
}

/* As hostile_whole_frame to the broker, then waits until the broker has read the whole frame
 * out of the ring (up to 5 s), so that the worker's own answer, written where the worker
 * believes the ring ends, cannot overwrite it first. The channel is looked for once, by the
 * first call, so later calls forge within microseconds of their start; a `length` of 0 only
 * looks. Returns `length`, -ETIMEDOUT, or -errno. */
long hostile_whole_frame_taken(const unsigned char* prefix, long prefix_length,
                               const unsigned char* pattern, long pattern_length, long length) {
  static unsigned char* channel = NULL;
  if (channel == NULL) channel = find_channel();
  if (channel == NULL) return -ENOENT;
  if (length == 0) return 0;
  if (prefix_length < 0 || prefix_length > length || pattern_length <= 0) return -EINVAL;
  const unsigned char header[4] = {(unsigned char)length, (unsigned char)(length >> 8),
                                   (unsigned char)(length >> 16), (unsigned char)(length >> 24)};
  write_to_broker(channel, header, sizeof header, (const unsigned char*)"", 1, sizeof header);
  write_to_broker(channel, prefix, prefix_length, pattern, pattern_length, length);
  const long taken = wait_until_taken(channel);
  return taken < 0 ? taken : length;
}

/* hostile_whole_frame_taken, then a sleep of `sleep_ms` before the call returns: a forged
 * invocation's handler runs in the client before the worker's answer to this call, which the
 * broker takes as the end of the worker (a call answered with an invocation open). */
long hostile_frame_then_sleep(const unsigned char* prefix, long prefix_length,
                              const unsigned char* pattern, long pattern_length, long length,
                              long sleep_ms) {
  const long taken =
      hostile_whole_frame_taken(prefix, prefix_length, pattern, pattern_length, length);
  usleep((useconds_t)sleep_ms * 1000);
  return taken;
}

/* Creates `name` (a file with a few bytes) in the directory open at `at`. 0 or -errno. */
static int make_file_at(int at, const char* name) {
  const int fd = openat(at, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  const int wrote = write(fd, "left", 4) == 4 ? 0 : -EIO;
  close(fd);
  return wrote;
}

/* Fills the directory `dir` (a session's scratch directory) with what a library would leave
 * to outlive its session: `locked/`, mode 0700 with a file (another uid may not enter it: the
 * worker of an unprivileged server runs as a subordinate uid); `unlistable/`, mode 0300 with a
 * file (not even its owner may list it); and a chain of `depth` directories with 200-character
 * names, a file at its bottom, deeper than a path can name once `depth` passes 20. Returns 0
 * or -errno. */
int hostile_lock_up_directory(const char* dir, int depth) {
  const int top = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (top < 0) return -errno;
  int result = 0;
  static const char* const kHidden[] = {"locked", "unlistable"};
  static const mode_t kModes[] = {0700, 0300};
  for (int i = 0; i < 2 && result == 0; ++i) {
    if (mkdirat(top, kHidden[i], kModes[i]) != 0) {
      result = -errno;
      break;
    }
    const int inner = openat(top, kHidden[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (inner < 0) {
      result = -errno;
      break;
    }
    result = make_file_at(inner, "file");
    close(inner);
  }
  char name[201];
  memset(name, 'd', 200);
  name[200] = '\0';
  int at = top;
  for (int level = 0; level < depth && result == 0; ++level) {
    int next = -1;
    if (mkdirat(at, name, 0700) != 0 ||
        (next = openat(at, name, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
      result = -errno;
    }
    if (at != top) close(at);
    at = next;
  }
  if (result == 0) result = make_file_at(at, "bottom");
  if (at >= 0 && at != top) close(at);
  close(top);
  return result;
}

/* Appends `value` as a protobuf varint at `out`; returns the bytes written. */
static long put_varint(unsigned char* out, uint64_t value) {
  long length = 0;
  for (; value >= 0x80; value >>= 7) out[length++] = (unsigned char)(value | 0x80);
  out[length++] = (unsigned char)value;
  return length;
}

/* The id (its first field, a varint: WorkerRequest.id from the broker, Request.id from the
 * client) of the last frame the worker took from the ring to it of `channel`, found by
 * looking back from where the worker has read for a frame that ends there; 0 when none
 * reads so. */
static uint64_t running_request_id(const unsigned char* channel) {
  const uint64_t ring = *(volatile uint32_t*)(channel + 12);
  const uint64_t read = __atomic_load_n((const uint64_t*)(channel + 64 + 64), __ATOMIC_SEQ_CST);
  const unsigned char* data = channel + 4096;
#define RING_AT(i) data[(i) & (ring - 1)]
  for (uint64_t back = 6; back <= read && back < ring; ++back) {
    const uint64_t at = read - back;
    const uint64_t length = (uint64_t)RING_AT(at) | (uint64_t)RING_AT(at + 1) << 8 |
                            (uint64_t)RING_AT(at + 2) << 16 | (uint64_t)RING_AT(at + 3) << 24;
    if (at + 4 + length != read || RING_AT(at + 4) != 0x08) continue;
    uint64_t id = 0;
    for (uint64_t next = at + 5, shift = 0; shift < 64; ++next, shift += 7) {
      id |= (uint64_t)(RING_AT(next) & 0x7F) << shift;
      if ((RING_AT(next) & 0x80) == 0) break;
    }
    return id;
  }
#undef RING_AT
  return 0;
}

/* Answers the call running this function, behind the worker's back: a Response with the
 * call's id followed by `suffix` (`suffix_length` bytes of a Response's other fields, as
 * encoded), on the session's same-host channel to its client when `to_client`, else to the
 * broker (inside a WorkerReply), then waits until the reader has taken it (up to 5 s), so
 * the worker's own answer comes too late. Returns the id answered, -EPROTO when no id is
 * found, -ETIMEDOUT, or -errno. */
static long answer_running_call(int to_client, const unsigned char* suffix, long suffix_length) {
  unsigned char* channel = find_channel_of(to_client);
  if (channel == NULL) return -ENOENT;
  if (suffix_length < 0 || suffix_length > 4096) return -EINVAL;
  const uint64_t id = running_request_id(channel);
  if (id == 0) return -EPROTO;
  unsigned char response[4096 + 16];
  long response_length = 0;
  response[response_length++] = 0x08;
  response_length += put_varint(response + response_length, id);
  memcpy(response + response_length, suffix, (size_t)suffix_length);
  response_length += suffix_length;
  unsigned char frame[4096 + 32];
  long frame_length = 0;
  if (!to_client) { /* WorkerReply.response */
    frame[frame_length++] = 0x0a;
    frame_length += put_varint(frame + frame_length, (uint64_t)response_length);
  }
  memcpy(frame + frame_length, response, (size_t)response_length);
  frame_length += response_length;
  const long written = hostile_whole_frame(to_client, frame, frame_length, frame, 1, frame_length);
  if (written < 0) return written;
  const long taken = wait_until_taken(channel);
  return taken < 0 ? taken : (long)id;
}

/* Answers the request running this function with an error that claims the request never
 * reached a worker (Error.never_reached_worker, which only the broker may say), through the
 * broker (hostile_answer_running_call). Returns the id answered, or as that does. */
long hostile_answer_running_request_never_reached(void) {
  /* Response.error: Error{code: LIBRARY_LOAD_FAILED, message: "forged",
   * never_reached_worker: true} */
  static const unsigned char error[] = {0x12, 12,  0x08, 7,   0x12, 6,    'f',
                                        'o',  'r', 'g',  'e', 'd',  0x50, 1};
  return answer_running_call(0, error, (long)sizeof error);
}

static unsigned char stashed_answer[4096];
static long stashed_answer_length = 0;

/* Keeps `length` bytes of a Response's fields (its id left out) for
 * hostile_answer_running_call, which then passes no memory of its own: a call that passes
 * none expects an answer that reports none. Returns `length`, or -EINVAL past 4096 bytes. */
long hostile_stash_answer(const unsigned char* suffix, long length) {
  if (length < 0 || length > (long)sizeof stashed_answer) return -EINVAL;
  memcpy(stashed_answer, suffix, (size_t)length);
  stashed_answer_length = length;
  return length;
}

/* Answers the call running this function with the stashed fields, on the same-host channel
 * to the client when `to_client`, else through the broker (answer_running_call). */
long hostile_answer_running_call(int to_client) {
  return answer_running_call(to_client, stashed_answer, stashed_answer_length);
}

/* Points `count` slots of `out` at distinct strings of about `length` characters each, all
 * in one buffer of `length` + 1 bytes (out[i] is `length` - i characters long): little
 * memory in the library, `count` times `length` bytes for whoever copies each string. 0, or
 * -ENOMEM. */
int hostile_distinct_long_strings(char** out, int count, long length) {
  if (count < 0 || length < count) return -EINVAL;
  char* buffer = malloc((size_t)length + 1);
  if (buffer == NULL) return -ENOMEM;
  memset(buffer, 'x', (size_t)length);
  buffer[length] = 0;
  for (int i = 0; i < count; ++i) out[i] = buffer + i;
  return 0;
}

static void* stop_self(void* delay) {
  usleep((useconds_t)(intptr_t)delay * 1000u);
  kill(getpid(), SIGSTOP);
  return NULL;
}

/* Returns 0 at once and, `ms` milliseconds later, stops the whole worker (SIGSTOP), as a
 * debugger or a freezer would: it then reads nothing more from the broker. -errno when the
 * thread cannot be started. */
int hostile_stop_self_after(int ms) {
  pthread_t thread;
  const int error = pthread_create(&thread, NULL, stop_self, (void*)(intptr_t)ms);
  if (error != 0) return -error;
  pthread_detach(thread);
  return 0;
}

/* Overwrites every position of the worker's channel (its first page after the header) with
 * the byte `garbage`, as a library that scribbles over the worker's memory would, and
 * returns 0 (-ENOENT without a channel). The worker cannot answer on a channel so broken. */
int hostile_corrupt_channel(int garbage) {
  unsigned char* channel = find_channel();
  if (channel == NULL) return -ENOENT;
  memset(channel + 16, garbage, 4096 - 16);
  return 0;
}

/* Calls fire_handler(7) of whichever loaded object exports it (the test library's: its
 * registered callback), as a constructor calling back into code it was handed would. */
static int fire_registered_handler(struct dl_phdr_info* info, size_t size, void* data) {
  (void)size;
  void* object = dlopen(info->dlpi_name, RTLD_NOW | RTLD_NOLOAD);
  if (object == NULL) return 0;
  int (*fire)(int) = (int (*)(int))dlsym(object, "fire_handler");
  if (fire != NULL) *(int*)data = fire(7);
  dlclose(object);
  return fire != NULL;
}

/* At load, as the session's environment says (FFIBOX_TEST_HOSTILE_AT_LOAD): "crash" dies of
 * SIGSEGV in the constructor; "fire" calls the test library's registered callback from it
 * (the answer lands in hostile_fired_at_load). Unset: nothing. */
static int fired_at_load = -1000;
int hostile_fired_at_load(void) { return fired_at_load; }

__attribute__((constructor)) static void hostile_at_load(void) {
  const char* what = getenv("FFIBOX_TEST_HOSTILE_AT_LOAD");
  if (what == NULL) return;
  if (strcmp(what, "crash") == 0) *(volatile int*)NULL = 1;
  if (strcmp(what, "fire") == 0) dl_iterate_phdr(fire_registered_handler, &fired_at_load);
}

/* Forges `count` invocations of the caller's callback `callback`, each with one string
 * argument of `text_bytes` bytes and made by no request (as a thread of the library's makes
 * them), straight into the worker's ring to the broker during this call, with invocation ids
 * from 2^40 on. Returns `count` once they are written (the broker ends the worker first when
 * it refuses one), or -errno. */
long hostile_invoke_flood(long callback, long count, long text_bytes) {
  unsigned char* channel = find_channel();
  if (channel == NULL) return -ENOENT;
  if (callback <= 0 || count < 0 || text_bytes < 0) return -EINVAL;
  for (long i = 0; i < count; ++i) {
    /* WorkerReply{invoke: CallbackInvoke{invocation, callback, args: [Value{bytes_value}]}} */
    unsigned char value[16], invoke[48], reply[16];
    size_t value_length = 0, invoke_length = 0, reply_length = 0;
    value[value_length++] = 0x2a;
    value_length += put_varint(value + value_length, (uint64_t)text_bytes);
    invoke[invoke_length++] = 0x08;
    invoke_length += put_varint(invoke + invoke_length, ((uint64_t)1 << 40) + (uint64_t)i);
    invoke[invoke_length++] = 0x10;
    invoke_length += put_varint(invoke + invoke_length, (uint64_t)callback);
    invoke[invoke_length++] = 0x1a;
    invoke_length += put_varint(invoke + invoke_length, value_length + (uint64_t)text_bytes);
    const uint64_t invoke_bytes = invoke_length + value_length + (uint64_t)text_bytes;
    reply[reply_length++] = 0x12;
    reply_length += put_varint(reply + reply_length, invoke_bytes);
    unsigned char start[80];
    memcpy(start, reply, reply_length);
    memcpy(start + reply_length, invoke, invoke_length);
    memcpy(start + reply_length + invoke_length, value, value_length);
    const long start_length = (long)(reply_length + invoke_length + value_length);
    const long length = start_length + text_bytes;
    const unsigned char header[4] = {(unsigned char)length, (unsigned char)(length >> 8),
                                     (unsigned char)(length >> 16), (unsigned char)(length >> 24)};
    write_to_broker(channel, header, sizeof header, (const unsigned char*)"", 1, sizeof header);
    write_to_broker(channel, start, start_length, (const unsigned char*)"x", 1, length);
  }
  const long taken = wait_until_taken(channel);
  return taken < 0 ? taken : count;
}

/* Answers the call running this function through the broker with a char* result of
 * `text_bytes` bytes of 'x' (WorkerReply{response: Response{id, call: CallResult{result:
 * Value{bytes_value}}}}, or, when `in_batch`, Response{id, batch: BatchResult{results:
 * [that CallResult]}} for a batch of this one call): past its 16 MiB, longer than any
 * honest answer to it. Returns the id answered once the broker took it, or -errno. */
long hostile_answer_running_call_with_text(long text_bytes, int in_batch) {
  unsigned char* channel = find_channel();
  if (channel == NULL) return -ENOENT;
  if (text_bytes < 0) return -EINVAL;
  const uint64_t id = running_request_id(channel);
  if (id == 0) return -EPROTO;
  /* Each length is the encoded size of what follows it, innermost first. */
  unsigned char scratch[16];
  const uint64_t value =
      1 + (uint64_t)put_varint(scratch, (uint64_t)text_bytes) + (uint64_t)text_bytes;
  const uint64_t result = 1 + (uint64_t)put_varint(scratch, value) + value;  /* CallResult */
  const uint64_t batch = 1 + (uint64_t)put_varint(scratch, result) + result; /* BatchResult */
  const uint64_t answer = in_batch ? batch : result;
  const uint64_t response =
      1 + (uint64_t)put_varint(scratch, id) + 1 + (uint64_t)put_varint(scratch, answer) + answer;
  unsigned char start[96];
  long length = 0;
  start[length++] = 0x0a; /* WorkerReply.response */
  length += put_varint(start + length, response);
  start[length++] = 0x08; /* Response.id */
  length += put_varint(start + length, id);
  start[length++] = in_batch ? 0x72 : 0x6a; /* Response.batch, Response.call */
  length += put_varint(start + length, answer);
  if (in_batch) {
    start[length++] = 0x0a; /* BatchResult.results */
    length += put_varint(start + length, result);
  }
  start[length++] = 0x0a; /* CallResult.result */
  length += put_varint(start + length, value);
  start[length++] = 0x2a; /* Value.bytes_value */
  length += put_varint(start + length, (uint64_t)text_bytes);
  const long written =
      hostile_whole_frame(0, start, length, (const unsigned char*)"x", 1, length + text_bytes);
  if (written < 0) return written;
  const long taken = wait_until_taken(channel);
  return taken < 0 ? taken : (long)id;
}
