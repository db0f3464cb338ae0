// Remote-memory operations inside ffibox-worker: read, write, allocate, free, fill, copy and
// read strings at worker addresses (ctypes' string_at, wstring_at, memmove, memset).
// Thread-safe: requests nested in callback invocations may run on other threads.
//
// Runs in the worker only. Every access goes through core/safe_memory.h, so a bad address
// is a MEMORY_FAULT answer, never a crash of the worker. Addresses carry the worker
// generation that produced them; an address of another generation is STALE_HANDLE.
#ifndef FFIBOX_SERVER_WORKER_MEMORY_REQUESTS_H_
#define FFIBOX_SERVER_WORKER_MEMORY_REQUESTS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/blocks.h"
#include "core/marshal.h"
#include "core/safe_memory.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// The most bytes one remote-memory request may read, write, fill, copy or allocate.
inline constexpr uint64_t kMaxMemoryRequestBytes = uint64_t{64} << 20;

// The most bytes of lasting blocks past the watch budget whose contents a worker remembers
// (MemoryRequests::Watch): a copy each, in the worker's memory.
inline constexpr uint64_t kMaxRememberedBytes = uint64_t{64} << 20;

// Also the lasting memory of calls (core/blocks.h): kept blocks and alloc_memory share
// one table, so free_memory frees either and a block may be placed at either.
class MemoryRequests : public LastingMemory {
 public:
  // `callbacks` (may be nullptr: then refused) resolves callback ids in written values; it
  // must outlive this object.
  explicit MemoryRequests(uint64_t generation, const CallbackResolver* callbacks = nullptr)
      : generation_(generation), callbacks_(callbacks) {}
  // Frees what AllocMemory handed out and was not freed.
  ~MemoryRequests() override;

  MemoryRequests(const MemoryRequests&) = delete;
  MemoryRequests& operator=(const MemoryRequests&) = delete;

  // Reads `size` bytes into MemoryData.data or, when `type` is set, dereferences the address
  // as a T* and returns MemoryData.value only (DecodeValue: records and arrays as raw
  // bytes; `data` empty). With a type, `size` must be 0 or the type's size. Once the address's
  // generation is checked, first stops watching the reads at the `unwatch` addresses (of
  // every size); a raw read with `watch` is then watched (ReportChanged) within the budgets
  // (kMaxWatchedReadBytes, kMaxWatchedReads), and MemoryData.watched says so.
  absl::StatusOr<v1::MemoryData> Read(const v1::ReadMemory& request);
  // Each read of the list as Read makes it, in order; the first error fails the whole list
  // (its message names the read). The reads' sizes together may not exceed
  // kMaxMemoryRequestBytes.
  absl::StatusOr<v1::MemoryDataList> ReadList(const v1::ReadMemoryList& request);
  // Writes `data`, or, when `type` is set, `value` marshalled as that type (MarshalValue;
  // the whole object including zeroed padding; string values and block pointers are
  // refused, they would not outlive the request; callback ids are written as their closure
  // address). `data` and `type`+`value` are exclusive. With `held`, what it writes into
  // watched reads and blocks is what the client holds there: not reported as a change.
  // With `watch`, `data` written from the start of a lasting block, and no larger, is
  // watched as the block (Watch). Returns whether it is watched (false without `watch`).
  absl::StatusOr<bool> Write(const v1::WriteMemory& request);
  absl::StatusOr<v1::MemoryAllocated> Alloc(const v1::AllocMemory& request);
  // Only addresses returned by Alloc (and not yet freed) may be freed: NOT_FOUND otherwise.
  absl::Status Free(const v1::FreeMemory& request);
  absl::Status Fill(const v1::FillMemory& request);
  // memmove semantics: the ranges may overlap.
  absl::Status Copy(const v1::CopyMemory& request);
  absl::StatusOr<v1::StringData> ReadString(const v1::ReadString& request) const;

  // The address of `address` after checking its generation (field names the request part).
  absl::StatusOr<uint64_t> Resolve(const v1::RemoteAddress& address, absl::string_view field) const;

  // LastingMemory.
  absl::StatusOr<uint64_t> AllocateLasting(uint64_t size) override;
  absl::StatusOr<uint64_t> FindLasting(const v1::RemoteAddress& address, uint64_t size,
                                       absl::string_view field) const override;
  void ReleaseLastingIfPresent(uint64_t address) override;
  void ReleaseLastingAddress(uint64_t address) override;
  // Watches blocks in the order calls place them, up to kMaxWatchedBytes in all; past that,
  // remembers what the client holds of them, up to kMaxRememberedBytes, for
  // PlaceClientChanges alone (no call compares them).
  void Watch(uint64_t address, const absl::string_view* contents) override;
  // Watch for `contents` written at `address`: whether it is watched now (a lasting block
  // starts there, at least as large, and the budget has room).
  bool WatchWritten(uint64_t address, absl::string_view contents);
  bool PlaceClientChanges(uint64_t address, absl::string_view sent,
                          const std::vector<uint64_t>& pointers) override;
  bool HeldWordIs(uint64_t address, uint64_t offset, uint64_t value) override;
  // Also reports the watched reads' changes; a watched read that can no longer be read is
  // no longer watched.
  void ReportChanged(const std::vector<uint64_t>& placed, uint64_t generation,
                     v1::CallResult* result) override;

 private:
  // Allocates `size` zeroed bytes aligned to `alignment` (a power of two >= 8) and records
  // them; nullptr when memory runs out.
  void* AllocateRecorded(uint64_t size, uint64_t alignment);
  // Unrecords and frees `address`: NOT_FOUND naming `field` when it is not recorded.
  absl::Status FreeRecorded(uint64_t address, absl::string_view field);
  // What the client holds of the watched or remembered block at `address` (its size in
  // `size`), or nullptr.
  const char* Held(uint64_t address, uint64_t* size) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops watching or remembering `address` (nothing when it is neither).
  void Unwatch(uint64_t address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops watching the reads at `address`, of every size (nothing when none is watched).
  void UnwatchReads(uint64_t address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Watches the read of `bytes` at `address` within the budgets (replacing a watched read of
  // the same address and size); whether it is watched.
  bool WatchRead(uint64_t address, const std::string& bytes);
  // SafeWrite, then, when `held`, what it wrote is also what is remembered of the watched
  // reads it overlaps.
  absl::Status WriteHeld(uint64_t address, const void* data, size_t size, bool held);
  // Appends the runs of words of `now` that differ from `held` (which becomes `now`) to
  // `result->changed`, as changes of the block or read at `address`.
  static void ReportRuns(uint64_t address, const char* now, std::string* held, uint64_t generation,
                         v1::CallResult* result);

  const uint64_t generation_;
  const CallbackResolver* const callbacks_;
  mutable absl::Mutex mu_;
  // Address -> usable size of every allocation handed out and not yet freed.
  absl::flat_hash_map<uint64_t, uint64_t> allocations_ ABSL_GUARDED_BY(mu_);
  // Address -> what the client holds of every watched lasting block.
  absl::flat_hash_map<uint64_t, std::string> watched_ ABSL_GUARDED_BY(mu_);
  // What the watched lasting blocks take of kMaxWatchedBytes (WatchedCost).
  uint64_t watched_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Address -> what the client holds of every lasting block past the watch budget that is
  // remembered, and what they take of kMaxRememberedBytes.
  struct Remembered {
    std::unique_ptr<char[]> bytes;
    uint64_t size = 0;
  };
  absl::flat_hash_map<uint64_t, Remembered> remembered_ ABSL_GUARDED_BY(mu_);
  uint64_t remembered_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // (address, size) -> what the client holds of every watched read, in address order, and
  // what they take of kMaxWatchedReadBytes.
  absl::btree_map<std::pair<uint64_t, uint64_t>, std::string> watched_reads_ ABSL_GUARDED_BY(mu_);
  uint64_t watched_read_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // ReportChanged's copies of the watched reads, kept for the next call.
  std::vector<MemoryRange> read_ranges_ ABSL_GUARDED_BY(mu_);
  std::string read_now_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> readable_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_WORKER_MEMORY_REQUESTS_H_
