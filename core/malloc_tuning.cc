#include "core/malloc_tuning.h"

#include <malloc.h>

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

}  // namespace ffibox
