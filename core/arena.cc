#include "core/arena.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

#include "core/malloc_tuning.h"

namespace ffibox {

CallArena::~CallArena() {
  for (void* chunk : heap_) std::free(chunk);
  for (auto [block, size] : mapped_) munmap(block, size);
}

void* CallArena::Allocate(size_t size, size_t alignment) {
  if (alignment < 1) alignment = 1;
  if (size == 0) size = 1;
  uintptr_t start = (reinterpret_cast<uintptr_t>(cursor_) + alignment - 1) & ~(alignment - 1);
  if (start <= reinterpret_cast<uintptr_t>(limit_) &&
      size <= reinterpret_cast<uintptr_t>(limit_) - start) {
    cursor_ = reinterpret_cast<unsigned char*>(start + size);
    void* result = reinterpret_cast<void*>(start);
    std::memset(result, 0, size);
    return result;
  }
  if (size >= kMappedAllocationBytes) {
    // Mapped here rather than by malloc, which could serve it from a heap's free memory.
    mapped_.reserve(mapped_.size() + 1);
    void* block = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (block == MAP_FAILED) return nullptr;
    mapped_.emplace_back(block, size);
    return block;
  }
  // Large requests get their own allocation; small ones start a new chunk. calloc reports
  // exhaustion with nullptr (instead of throwing), and gives large blocks lazily zeroed pages.
  const bool dedicated = size > kChunkBytes / 4;
  const size_t bytes = dedicated ? size : kChunkBytes;
  heap_.reserve(heap_.size() + 1);
  void* chunk = std::calloc(1, bytes);  // malloc alignment is 16 on x86-64 glibc
  if (chunk == nullptr) return nullptr;
  heap_.push_back(chunk);
  if (dedicated) return chunk;
  cursor_ = static_cast<unsigned char*>(chunk) + size;
  limit_ = static_cast<unsigned char*>(chunk) + bytes;
  return chunk;
}

}  // namespace ffibox
