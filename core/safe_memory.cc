#include "core/safe_memory.h"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "core/errors.h"

namespace ffibox {
namespace {

absl::Status Fault(const char* verb, size_t size, uint64_t address) {
  return ErrorStatus(v1::MEMORY_FAULT,
                     absl::StrFormat("cannot %s %u bytes at 0x%x", verb, size, address));
}

// Moves `size` bytes between the local buffer and `address` of this same process. The kernel
// checks the remote side page by page and reports EFAULT instead of faulting.
absl::Status Transfer(bool write, uint64_t address, void* local, size_t size) {
  const char* verb = write ? "write" : "read";
  uint64_t end = 0;
  if (__builtin_add_overflow(address, size, &end)) return Fault(verb, size, address);
  const pid_t self = getpid();  // not cached: stays right in a forked child
  size_t done = 0;
  while (done < size) {
    struct iovec local_iov = {static_cast<char*>(local) + done, size - done};
    struct iovec remote_iov = {reinterpret_cast<void*>(address + done), size - done};
    ssize_t moved = write ? process_vm_writev(self, &local_iov, 1, &remote_iov, 1, 0)
                          : process_vm_readv(self, &local_iov, 1, &remote_iov, 1, 0);
    if (moved < 0 && errno == EINTR) continue;
    if (moved < 0 && errno != EFAULT) {
      return ErrorStatus(
          v1::INTERNAL,
          absl::StrFormat("process_vm_%sv failed for %u bytes at 0x%x: %s",
                          write ? "write" : "read", size, address, std::strerror(errno)));
    }
    if (moved <= 0) return Fault(verb, size, address);
    done += static_cast<size_t>(moved);
  }
  return absl::OkStatus();
}

size_t PageSize() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

// Reads units of `Unit` up to the first zero unit, one page at a time.
template <typename Unit, typename String>
absl::StatusOr<String> ReadTerminated(uint64_t address, size_t max_length) {
  String result;
  uint64_t cursor = address;
  Unit buffer[4096 / sizeof(Unit)];
  while (result.size() < max_length) {
    size_t to_page_end = PageSize() - cursor % PageSize();
    size_t units = to_page_end / sizeof(Unit);
    // A unit straddling the page end is read on its own.
    if (units == 0) units = 1;
    units = std::min(units, sizeof(buffer) / sizeof(Unit));
    units = std::min(units, max_length - result.size());
    absl::Status status = SafeRead(cursor, buffer, units * sizeof(Unit));
    if (!status.ok()) {
      return ErrorStatus(v1::MEMORY_FAULT,
                         absl::StrFormat("cannot read the string at 0x%x: %u bytes at 0x%x are "
                                         "unreadable",
                                         address, units * sizeof(Unit), cursor));
    }
    for (size_t i = 0; i < units; ++i) {
      if (buffer[i] == 0) {
        result.append(buffer, i);
        return result;
      }
    }
    result.append(buffer, units);
    cursor += units * sizeof(Unit);
  }
  return result;
}

}  // namespace

absl::Status SafeRead(uint64_t address, void* out, size_t size) {
  return Transfer(false, address, out, size);
}

size_t SafeReadReadable(uint64_t address, void* out, size_t size) {
  uint64_t end = 0;
  if (size == 0 || __builtin_add_overflow(address, size, &end)) return 0;
  // process_vm_readv stops at the first remote iovec it cannot read whole: one per page.
  std::vector<struct iovec> pages;
  for (uint64_t at = address; at < end;) {
    uint64_t stop = 0;  // the next page's start, or `end`
    if (__builtin_mul_overflow(at / PageSize() + 1, PageSize(), &stop) || stop > end) stop = end;
    pages.push_back({reinterpret_cast<void*>(at), static_cast<size_t>(stop - at)});
    at = stop;
  }
  const pid_t self = getpid();
  size_t done = 0;
  for (size_t first = 0; first < pages.size();) {
    const size_t count = std::min<size_t>(pages.size() - first, IOV_MAX);
    size_t wanted = 0;
    for (size_t i = first; i < first + count; ++i) wanted += pages[i].iov_len;
    struct iovec local = {static_cast<char*>(out) + done, wanted};
    const ssize_t moved = process_vm_readv(self, &local, 1, &pages[first], count, 0);
    if (moved < 0 && errno == EINTR) continue;
    if (moved > 0) done += static_cast<size_t>(moved);
    if (moved < 0 || static_cast<size_t>(moved) != wanted) break;  // an unreadable page
    first += count;
  }
  return done;
}

void SafeReadEach(absl::Span<const MemoryRange> ranges, char* out, std::vector<bool>* readable) {
  readable->assign(ranges.size(), false);
  const pid_t self = getpid();
  std::vector<struct iovec> remote;
  size_t first = 0;  // the first range not yet read
  size_t at = 0;     // where it goes in `out`
  while (first < ranges.size()) {
    // Up to IOV_MAX ranges from `first`, stopping before one whose end overflows.
    remote.clear();
    size_t wanted = 0;
    for (size_t i = first; i < ranges.size() && remote.size() < IOV_MAX; ++i) {
      uint64_t end = 0;
      if (__builtin_add_overflow(ranges[i].address, ranges[i].size, &end)) break;
      remote.push_back({reinterpret_cast<void*>(ranges[i].address), ranges[i].size});
      wanted += ranges[i].size;
    }
    ssize_t moved = 0;
    if (!remote.empty()) {
      struct iovec local = {out + at, wanted};
      moved = process_vm_readv(self, &local, 1, remote.data(), remote.size(), 0);
      if (moved < 0 && errno == EINTR) continue;
      if (moved < 0) moved = 0;  // the first range could not be read
    }
    // The ranges read whole are readable; the kernel stopped inside the next one, if any.
    size_t done = 0;
    size_t i = first;
    for (; i < first + remote.size() && done + ranges[i].size <= static_cast<size_t>(moved);
         ++i) {
      (*readable)[i] = true;
      done += ranges[i].size;
      at += ranges[i].size;
    }
    if (remote.empty() || i < first + remote.size()) {
      at += ranges[i].size;  // the kernel stopped inside it, or its end overflows: unreadable
      ++i;
    }
    first = i;
  }
}

absl::Status SafeWrite(uint64_t address, const void* data, size_t size) {
  return Transfer(true, address, const_cast<void*>(data), size);
}

absl::StatusOr<std::string> SafeReadCString(uint64_t address, size_t max_length) {
  return ReadTerminated<char, std::string>(address, max_length);
}

absl::StatusOr<std::u32string> SafeReadWString(uint64_t address, size_t max_length) {
  return ReadTerminated<char32_t, std::u32string>(address, max_length);
}

}  // namespace ffibox
