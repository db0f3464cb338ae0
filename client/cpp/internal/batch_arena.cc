#include "client/cpp/internal/batch_arena.h"

#include <cstdlib>
#include <vector>

#include "absl/base/const_init.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace ffibox {
namespace client_internal {
namespace {

ABSL_CONST_INIT absl::Mutex kept_mu(absl::kConstInit);
// Never destroyed: arenas may give blocks back during the process's exit.
std::vector<void*>* kept_blocks ABSL_GUARDED_BY(kept_mu) = nullptr;

void* TakeBlock(size_t size) {
  if (size == kBatchArenaBlockBytes) {
    absl::MutexLock lock(&kept_mu);
    if (kept_blocks != nullptr && !kept_blocks->empty()) {
      void* block = kept_blocks->back();
      kept_blocks->pop_back();
      return block;
    }
  }
  return std::malloc(size);
}

void GiveBackBlock(void* block, size_t size) {
  if (size == kBatchArenaBlockBytes) {
    absl::MutexLock lock(&kept_mu);
    if (kept_blocks == nullptr) kept_blocks = new std::vector<void*>();
    if (kept_blocks->size() < kKeptBatchArenaBlocks) {
      kept_blocks->push_back(block);
      return;
    }
  }
  std::free(block);
}

}  // namespace

size_t KeptBatchArenaBlocks() {
  absl::MutexLock lock(&kept_mu);
  return kept_blocks == nullptr ? 0 : kept_blocks->size();
}

std::unique_ptr<google::protobuf::Arena> NewBatchArena() {
  google::protobuf::ArenaOptions options;
  options.start_block_size = kBatchArenaBlockBytes;
  options.max_block_size = kBatchArenaBlockBytes;
  options.block_alloc = &TakeBlock;
  options.block_dealloc = &GiveBackBlock;
  return std::make_unique<google::protobuf::Arena>(options);
}

}  // namespace client_internal
}  // namespace ffibox
