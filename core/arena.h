// CallArena: the bump allocator that holds one call's memory (argument slots, string copies,
// memory blocks). PreparedFunction::Invoke keeps one on its stack; small calls never touch
// the heap, and everything is released at once when the call returns.
#ifndef FFIBOX_CORE_ARENA_H_
#define FFIBOX_CORE_ARENA_H_

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace ffibox {

class CallArena {
 public:
  CallArena() = default;
  ~CallArena();
  CallArena(const CallArena&) = delete;
  CallArena& operator=(const CallArena&) = delete;

  // Returns `size` zeroed bytes aligned to `alignment` (a power of two, at most 16), or
  // nullptr when the system is out of memory. Never returns nullptr for size 0. An allocation
  // of kMappedAllocationBytes (core/malloc_tuning.h) and more is a mapping of its own, untouched
  // until written: AdviseHugePages may be given it.
  void* Allocate(size_t size, size_t alignment = 16);

 private:
  static constexpr size_t kInlineBytes = 4096;
  static constexpr size_t kChunkBytes = 16384;

  alignas(16) unsigned char inline_[kInlineBytes];
  unsigned char* cursor_ = inline_;
  unsigned char* limit_ = inline_ + kInlineBytes;
  std::vector<void*> heap_;  // chunks and large allocations, freed with the arena
  std::vector<std::pair<void*, size_t>> mapped_;  // the largest, unmapped with the arena
};

}  // namespace ffibox

#endif  // FFIBOX_CORE_ARENA_H_
