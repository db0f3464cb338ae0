#include "core/malloc_tuning.h"

#include <malloc.h>
#include <sys/mman.h>

#include <cstdint>
#include <string>

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

namespace {

// Gives `advice` for the whole pages of `page_bytes` inside [start, start + bytes), none that
// the range only partly covers. EINVAL without transparent huge pages, which changes nothing.
void AdviseWholePages(const void* start, size_t bytes, uintptr_t page_bytes, int advice) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(start);
  const uintptr_t begin = (first + page_bytes - 1) & ~(page_bytes - 1);
  const uintptr_t end = (first + bytes) & ~(page_bytes - 1);
  if (end <= begin) return;
  (void)madvise(reinterpret_cast<void*>(begin), end - begin, advice);
}

}  // namespace

void AdviseHugePages(const void* start, size_t bytes) {
  AdviseWholePages(start, bytes, uintptr_t{2} << 20, MADV_HUGEPAGE);
}

void KeepSmallPages(const void* start, size_t bytes) {
  AdviseWholePages(start, bytes, 4096, MADV_NOHUGEPAGE);
}

void ReserveToWriteWhole(std::string* bytes, size_t size) {
  bytes->reserve(size);
  // Past what a heap keeps free at its top, malloc maps the string on its own, unless a freed
  // stretch inside a heap is that large.
  if (size > kKeptFreeHeapBytes) AdviseHugePages(bytes->data(), size);
}

}  // namespace ffibox
