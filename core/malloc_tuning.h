// How ffiboxd and ffibox-worker ask glibc's malloc to keep the memory they free.
//
// Both handle requests in bursts: a batch of thousands of calls is parsed, run, answered and
// freed at once (a few hundred KiB of small messages and arena blocks). With glibc's default
// trim threshold, the free memory at the top of a heap goes back to the kernel as soon as
// it passes 128 KiB, and the next burst pays a page fault per page to get it back. Measured
// on batches of 4096 calls (bench/call_bench.cc), that was most of each process's kernel
// time.
#ifndef FFIBOX_CORE_MALLOC_TUNING_H_
#define FFIBOX_CORE_MALLOC_TUNING_H_

#include <algorithm>
#include <cstddef>
#include <string>

namespace ffibox {

// How much free memory at the top of each malloc heap is kept before it is given back:
// several bursts' worth, and bounded (ffiboxd has at most 4 heaps, M_ARENA_MAX).
inline constexpr size_t kKeptFreeHeapBytes = size_t{8} << 20;

// Allocations of at least this many bytes never make a heap grow: unless freed memory of a
// heap holds one, it is mapped on its own and unmapped when freed. Smaller ones come from the
// heaps. A call's buffer is allocated and freed again on every call (in the request, the
// block the call runs on, the reply): mapped on its own, each call would take a page fault
// per page of it, and on a VM a fault costs about 10 µs (2.6 ms per MiB, against 20 µs to
// copy it). From the heaps, the next call reuses the same pages. Larger allocations, and
// among them the whole pieces of a large frame (core/framing.h), hold no address space (a
// worker's memory limit) once freed: a parse that lets go of a message's pieces one by one
// gives it back as it goes.
inline constexpr size_t kMappedAllocationBytes = size_t{2} << 20;

// Sets malloc's trim threshold to kKeptFreeHeapBytes and its mmap threshold to
// kMappedAllocationBytes (fixed: glibc's dynamic threshold, which would follow the largest
// block freed, is off). Call once, early in main, before any other thread starts.
void KeepFreedMemory();

// Gives the pages of memory freed piece by piece back to the system as it goes. A large
// message parsed from pieces frees each piece as the parse passes it, but malloc keeps what is
// freed in the middle of its heaps (and serves later requests, even large ones, from it), so
// without this the pieces would stay resident beside the parsed message. Every
// kReturnEveryBytes freed, or every sixteenth of the message when that is more,
// malloc_trim gives back the free pages of every heap: at most 16 trims per message (each
// locks every heap in turn), and at most a sixteenth of it left resident.
class FreedPiecesReturner {
 public:
  static constexpr size_t kReturnEveryBytes = size_t{4} << 20;

  // For a message of `message_bytes`.
  explicit FreedPiecesReturner(size_t message_bytes)
      : every_(std::max(kReturnEveryBytes, message_bytes / 16)) {}

  // `bytes` were just freed.
  void Freed(size_t bytes);

 private:
  const size_t every_;
  size_t since_return_ = 0;
};

// Asks the kernel to back the whole 2 MiB pages inside [start, start + bytes) with
// transparent huge pages (MADV_HUGEPAGE) when they are first written: one page fault per
// 2 MiB instead of 512. For large blocks about to be written whole by this process (a parsed
// message's bytes field, a call's block), before the first write; the pages at either end
// that only partly belong to them are left alone, so no huge page holds memory they do not
// use. Not for memory a peer fills (a frame's pieces): a peer that stops after one byte of a
// huge page would hold 2 MiB with it. Advice only: where transparent huge pages are off,
// nothing changes. The block must be a mapping of its own (an allocation that could have come
// from a heap's free memory would leave the advice on that stretch of the heap).
void AdviseHugePages(const void* start, size_t bytes);

// Reserves `size` bytes in `bytes`, which the caller then writes whole: a string larger than
// what a heap keeps free at its top (kKeptFreeHeapBytes) is a mapping of malloc's own and asks
// for huge pages (AdviseHugePages).
void ReserveToWriteWhole(std::string* bytes, size_t size);

// Keeps the whole 4 KiB pages inside [start, start + bytes) out of transparent huge pages, also
// where every mapping gets them by default (the `always` mode): for memory a peer fills.
void KeepSmallPages(const void* start, size_t bytes);

}  // namespace ffibox

#endif  // FFIBOX_CORE_MALLOC_TUNING_H_
