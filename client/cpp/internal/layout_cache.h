// The record types one client session has found laid out in its worker as the C++ compiler
// lays them out (VerifyLayout), so that each is asked of the worker once per session.
// Keyed by TypeKey<T> (records.h); owned by the session's MemoryOps. Thread-safe.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_LAYOUT_CACHE_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_LAYOUT_CACHE_H_

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"

namespace ffibox {
namespace client_internal {

class LayoutCache {
 public:
  // Whether the record type identified by `key` was found to match.
  bool Contains(const void* key) const;
  // Remembers that the record type identified by `key` matched.
  void Insert(const void* key);

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_set<const void*> verified_ ABSL_GUARDED_BY(mu_);
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_LAYOUT_CACHE_H_
