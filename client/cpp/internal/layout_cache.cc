#include "client/cpp/internal/layout_cache.h"

namespace ffibox {
namespace client_internal {

bool LayoutCache::Contains(const void* key) const {
  absl::MutexLock lock(&mu_);
  return verified_.contains(key);
}

void LayoutCache::Insert(const void* key) {
  absl::MutexLock lock(&mu_);
  verified_.insert(key);
}

}  // namespace client_internal
}  // namespace ffibox
