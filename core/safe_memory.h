// Access to addresses in the worker's own address space that never crash on a bad address.
//
// Remote addresses come from clients and are untrusted; the worker reads and writes them (and
// reads C strings returned by native functions) only through these functions, which go
// through process_vm_readv / process_vm_writev on the calling process so that an unmapped or
// protected address yields MEMORY_FAULT instead of SIGSEGV. The jail's seccomp policy must
// allow both syscalls. Called by core/marshal.cc and the worker's memory operations.
#ifndef FFIBOX_CORE_SAFE_MEMORY_H_
#define FFIBOX_CORE_SAFE_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace ffibox {

// Copies `size` bytes at `address` to `out`. Returns MEMORY_FAULT ("cannot read N bytes at
// 0x...") if any byte is unreadable; `out` may then be partly written.
absl::Status SafeRead(uint64_t address, void* out, size_t size);
// Reads what is readable of `size` bytes at `address` into `out`: the bytes up to the first
// page that cannot be read (all of them, or none). Returns how many were read.
size_t SafeReadReadable(uint64_t address, void* out, size_t size);

// A range of this process's memory.
struct MemoryRange {
  uint64_t address;
  size_t size;
};

// Reads each of `ranges` into `out`, one after the other (their sizes together), and tells
// in `readable` (resized to ranges.size()) whether each was read whole; an unreadable one's
// part of `out` is unspecified. One system call per IOV_MAX ranges when all are readable,
// one more after each that is not.
void SafeReadEach(absl::Span<const MemoryRange> ranges, char* out, std::vector<bool>* readable);

// Copies `size` bytes from `data` to `address`. Returns MEMORY_FAULT if any byte is not
// writable; a prefix may have been written.
absl::Status SafeWrite(uint64_t address, const void* data, size_t size);

// Reads the NUL-terminated string at `address`, without the NUL, stopping after
// `max_length` bytes if no NUL came first (then the result is exactly max_length long).
// Never reads past the page holding the NUL. Returns MEMORY_FAULT if a byte before the NUL
// (or the limit) is unreadable.
absl::StatusOr<std::string> SafeReadCString(uint64_t address, size_t max_length);

// Reads the NUL-terminated wchar_t (UTF-32 on Linux) string at `address`, like
// SafeReadCString, counting `max_length` in characters.
absl::StatusOr<std::u32string> SafeReadWString(uint64_t address, size_t max_length);

}  // namespace ffibox

#endif  // FFIBOX_CORE_SAFE_MEMORY_H_
