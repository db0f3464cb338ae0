// Copying large blocks that another process reads next: a call's blocks into a same-host
// channel's shared area, and its answers back out.
//
// glibc's memcpy switches to non-temporal stores only for copies larger than a share of the
// last-level cache it reads from CPUID, which some virtual machines report as hundreds of
// megabytes: a 64 MiB block was then copied through the cache at about 6.8 GB/s, against about
// 11.7 GB/s with non-temporal stores, on the machine of docs/benchmarks.md. CopyBulk decides by
// the block's size alone.
#ifndef FFIBOX_CORE_BULK_COPY_H_
#define FFIBOX_CORE_BULK_COPY_H_

#include <cstddef>

namespace ffibox {

// Blocks of at least this many bytes are copied with non-temporal stores: far more than the
// caches of the cores a caller and a worker run on hold for one of them.
inline constexpr size_t kBulkCopyMinBytes = size_t{8} << 20;

// Copies `size` bytes from `from` to `to` (which must not overlap). A copy of at least
// kBulkCopyMinBytes on x86-64 goes around the caches (non-temporal stores, four pages read
// side by side) and is split in two halves, the second copied by a thread made for it (one
// core's stores do not reach the memory's bandwidth: 11.7 GB/s with one thread, 21-23 GB/s
// with two on that machine; the helper starts with every signal blocked, and the caller is
// not cancelled while it runs); without a thread to be had, the caller copies it all. The
// stores are fenced before the call returns, so the bytes are visible to another process
// before anything the caller stores after it (a frame in a ring). Smaller copies: memcpy.
void CopyBulk(void* to, const void* from, size_t size);

}  // namespace ffibox

#endif  // FFIBOX_CORE_BULK_COPY_H_
