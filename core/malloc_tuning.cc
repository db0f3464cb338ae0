#include "core/malloc_tuning.h"

#include <malloc.h>
#include <sys/mman.h>

#include <cstdint>

namespace ffibox {

void KeepFreedMemory() {
  mallopt(M_TRIM_THRESHOLD, static_cast<int>(kKeptFreeHeapBytes));
  mallopt(M_MMAP_THRESHOLD, static_cast<int>(kMappedAllocationBytes));
}

void FreedPiecesReturner::Freed(size_t bytes) {
  since_return_ += bytes;
  if (since_return_ < every_) return;
  malloc_trim(0);
  since_return_ = 0;
}

void AdviseHugePages(const void* start, size_t bytes) {
  constexpr uintptr_t kHugePageBytes = uintptr_t{2} << 20;
  const uintptr_t first = reinterpret_cast<uintptr_t>(start);
  const uintptr_t begin = (first + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  const uintptr_t end = (first + bytes) & ~(kHugePageBytes - 1);
  if (end <= begin) return;
  // EINVAL without transparent huge pages: the pages are then faulted in one by one.
  (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

void KeepSmallPages(const void* start, size_t bytes) {
  constexpr uintptr_t kPageBytes = 4096;
  const uintptr_t first = reinterpret_cast<uintptr_t>(start);
  const uintptr_t begin = (first + kPageBytes - 1) & ~(kPageBytes - 1);
  const uintptr_t end = (first + bytes) & ~(kPageBytes - 1);
  if (end <= begin) return;
  // EINVAL without transparent huge pages: there are none to keep out.
  (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_NOHUGEPAGE);
}

}  // namespace ffibox
