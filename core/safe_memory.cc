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
  // Where each range goes in `out`.
  std::vector<size_t> place(ranges.size());
  size_t total = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    place[i] = total;
    total += ranges[i].size;
  }
  // The kernel's cost is per iovec (about 0.16 µs each, against 2.5 µs a call here), and
  // watched objects sit side by side in a few heap pages: ranges in address order make
  // spans, a range joining the span before it when it starts within kSpanGap bytes of its
  // end and in the page the span ends in (so what lies between is readable when the span
  // is). A span that cannot be read whole has its ranges read one by one.
  constexpr uint64_t kSpanGap = 256;
  std::vector<size_t> order;
  order.reserve(ranges.size());
  for (size_t i = 0; i < ranges.size(); ++i) {
    uint64_t end = 0;
    if (ranges[i].size == 0) {
      (*readable)[i] = true;
    } else if (!__builtin_add_overflow(ranges[i].address, ranges[i].size, &end)) {
      order.push_back(i);
    }
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return ranges[a].address < ranges[b].address; });
  struct Span {
    uint64_t start;
    uint64_t end;
    size_t first;  // its ranges are order[first, last)
    size_t last;
  };
  std::vector<Span> spans;
  for (size_t k = 0; k < order.size(); ++k) {
    const MemoryRange& range = ranges[order[k]];
    const uint64_t end = range.address + range.size;
    if (!spans.empty()) {
      Span& span = spans.back();
      const uint64_t page_end = (span.end - 1) / PageSize() * PageSize() + PageSize();
      if (range.address <= span.end ||
          (range.address - span.end <= kSpanGap && range.address < page_end)) {
        span.end = std::max(span.end, end);
        span.last = k + 1;
        continue;
      }
    }
    spans.push_back({range.address, end, k, k + 1});
  }
  size_t span_bytes = 0;
  for (const Span& span : spans) span_bytes += span.end - span.start;
  std::string scratch(span_bytes, '\0');

  const pid_t self = getpid();
  std::vector<struct iovec> remote;
  size_t at = 0;  // where spans[next] goes in `scratch`
  for (size_t next = 0; next < spans.size();) {
    remote.clear();
    size_t wanted = 0;
    for (size_t i = next; i < spans.size() && remote.size() < IOV_MAX; ++i) {
      remote.push_back({reinterpret_cast<void*>(spans[i].start),
                        static_cast<size_t>(spans[i].end - spans[i].start)});
      wanted += remote.back().iov_len;
    }
    struct iovec local = {scratch.data() + at, wanted};
    ssize_t moved = process_vm_readv(self, &local, 1, remote.data(), remote.size(), 0);
    if (moved < 0 && errno == EINTR) continue;
    if (moved < 0) moved = 0;  // the first span could not be read
    size_t done = 0;
    for (size_t i = 0; i < remote.size(); ++i, ++next) {
      const Span& span = spans[next];
      const size_t length = remote[i].iov_len;
      const bool whole = done + length <= static_cast<size_t>(moved);
      for (size_t k = span.first; k < span.last; ++k) {
        const size_t index = order[k];
        const MemoryRange& range = ranges[index];
        if (whole) {
          std::memcpy(out + place[index], scratch.data() + at + (range.address - span.start),
                      range.size);
          (*readable)[index] = true;
        } else {  // the kernel stopped in this span: each of its ranges on its own
          (*readable)[index] = SafeRead(range.address, out + place[index], range.size).ok();
        }
      }
      at += length;
      if (!whole) {
        ++next;
        break;  // the spans after it: another system call
      }
      done += length;
    }
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
