/* Hostile library for ffibox's jail: libffibox_hostile.so.
 *
 * Each function does one thing a malicious library would try against its host: read or
 * create files, open another process's memory, write to or shrink the descriptors it
 * inherited, learn the broker's command line, look for descriptors it should not hold. Each
 * reports what happened as a number: >= 0 means it worked (a byte count, a descriptor type,
 * 0), -errno means the kernel refused. None of them calls a system call the strict seccomp
 * policy forbids, so a refusal comes from the jail's other layers (namespaces, the
 * filesystem view, ids) and is visible as a return value. tests/python/
 * test_jail_fails_closed.py calls these through a real jailed worker.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
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

/* Attacks the broker's memory through the worker's own channel (descriptor `fd`, 3): writes
 * a frame header announcing `announced` bytes, then `sent` bytes of it, then stalls for
 * `stall_seconds` without finishing it. Returns the bytes written, or -errno. */
long hostile_partial_frame(int fd, long announced, long sent, int stall_seconds) {
  unsigned char header[4] = {(unsigned char)announced, (unsigned char)(announced >> 8),
                             (unsigned char)(announced >> 16), (unsigned char)(announced >> 24)};
  if (write(fd, header, sizeof header) != (ssize_t)sizeof header) return -errno;
  static char chunk[1 << 16];
  memset(chunk, 'x', sizeof chunk);
  long written = 0;
  while (written < sent) {
    size_t want = (size_t)(sent - written) < sizeof chunk ? (size_t)(sent - written) : sizeof chunk;
    ssize_t n = write(fd, chunk, want);
    if (n < 0) return -errno;
    written += n;
  }
  sleep((unsigned)stall_seconds);
  return written;
}
