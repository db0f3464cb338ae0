// CallbackTable: the worker's callbacks (DefineCallback / FreeCallback), each a libffi
// closure (core/closure.h) under the id the broker assigned.
//
// A freed callback keeps its closure memory for the life of the worker, so its address is
// never reused and native code that still calls it gets zero and a CALLBACK_ERROR event
// instead of a crash. Thread-safe: callbacks may be defined, freed, resolved and called
// from any thread.
#ifndef FFIBOX_SERVER_WORKER_CALLBACK_TABLE_H_
#define FFIBOX_SERVER_WORKER_CALLBACK_TABLE_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/closure.h"
#include "core/marshal.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// What a callback does when native code calls it (the worker's dispatcher implements it).
class CallbackRunner {
 public:
  virtual ~CallbackRunner() = default;
  // Runs one native call of live callback `callback` on the calling thread; must fill
  // `result` (the closure's return storage) before returning. `buffer_bytes`: its
  // DefineCallback.buffer_bytes (at most kMaxShippedPointeeBytes).
  virtual void RunCallback(uint64_t callback, const Closure& closure, uint32_t buffer_bytes,
                           void* const* args, void* result) = 0;
  // Reports a callback failure no request answers (a CALLBACK_ERROR event).
  virtual void ReportCallbackError(const v1::Error& error) = 0;
};

class CallbackTable : public CallbackResolver {
 public:
  // The most callbacks one worker defines (freed ones count: their memory is kept). The
  // broker's per-session limit is lower; this is a backstop.
  static constexpr size_t kMaxCallbacks = size_t{1} << 16;

  // `runner` (may be nullptr: callbacks then return zero) must outlive the table.
  CallbackTable(uint64_t generation, const TypeLimits& limits, CallbackRunner* runner)
      : generation_(generation), limits_(limits), runner_(runner) {}

  CallbackTable(const CallbackTable&) = delete;
  CallbackTable& operator=(const CallbackTable&) = delete;

  // Creates callback `id` with the untrusted `define.signature` and `define.buffer_bytes`.
  // Returns INVALID_ARGUMENT (field "define_callback...") for a bad or variadic signature, an
  // id already used or buffer_bytes over kMaxShippedPointeeBytes,
  // UNIMPLEMENTED for shapes libffi closures cannot take, RESOURCE_EXHAUSTED beyond
  // kMaxCallbacks.
  absl::StatusOr<v1::CallbackDefined> Define(uint64_t id, const v1::DefineCallback& define);

  // Marks callback `id` freed. NOT_FOUND for an unknown id, FAILED_PRECONDITION when it was
  // already freed.
  absl::Status Free(uint64_t id);

  // The closure address of a live callback (CallbackResolver).
  absl::StatusOr<uint64_t> AddressOf(uint64_t id) const override;

 private:
  struct Entry {
    uint64_t id = 0;
    std::unique_ptr<Closure> closure;
    uint32_t buffer_bytes = 0;
    std::atomic<bool> freed{false};
  };

  // The closure handler: runs a live callback, answers a freed one with zero.
  void OnNativeCall(const Entry& entry, void* const* args, void* result);

  const uint64_t generation_;
  const TypeLimits limits_;
  CallbackRunner* const runner_;
  mutable absl::Mutex mu_;
  // Never erased: closures must outlive every native caller.
  absl::flat_hash_map<uint64_t, std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_WORKER_CALLBACK_TABLE_H_
