#include "core/malloc_tuning.h"

#include <malloc.h>

namespace ffibox {

void KeepFreedMemory() { mallopt(M_TRIM_THRESHOLD, static_cast<int>(kKeptFreeHeapBytes)); }

}  // namespace ffibox
