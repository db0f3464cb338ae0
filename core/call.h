// PreparedFunction: one native function with its libffi call interface, and the execution
// of untrusted `ffibox.v1.Call`s against it.
//
// The worker creates one PreparedFunction per ResolveFunction (validating the signature and
// preparing the cif once) and calls Invoke for every Call and Batch entry. Invoke validates
// the whole Call before any native code runs: argument count and kinds, integer ranges,
// blocks and relocations, remote-address generations. It then runs the function in the
// calling thread; a crash inside native code is the worker's to report, everything else
// comes back as a typed status.
#ifndef FFIBOX_CORE_CALL_H_
#define FFIBOX_CORE_CALL_H_

#include <ffi.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/ffi_types.h"
#include "core/marshal.h"
#include "core/scalar_wire.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

class CallArena;      // core/arena.h
class CallBlocks;     // core/blocks.h
class LastingMemory;  // core/blocks.h

// Frees the lasting blocks of worker `generation` that `call` releases (Call.release) in
// `lasting` (nothing when it is nullptr, or when the call releases more than `max_blocks`,
// which ValidateCallShape refuses). A worker applies a call's releases once, first, whether
// the call then runs or is refused: a client that got any answer to the call never sends
// its releases again (a later keep may have reused the address since). Idempotent.
void ApplyReleases(const v1::Call& call, uint64_t generation, size_t max_blocks,
                   LastingMemory* lasting);

class PreparedFunction {
 public:
  // Validates `signature` (untrusted; errors name "signature..."), builds its libffi types
  // and prepares the cif once (variadic functions get a per-call cif in Invoke). `address`
  // is the function's entry point (from dlsym, or a function pointer the library returned).
  // Records of every shape may be passed and returned by value (see FfiTypeArena::TypeFor
  // for the x86-64 classification and the few UNIMPLEMENTED shapes). Returns
  // INVALID_ARGUMENT for a bad signature and UNIMPLEMENTED for shapes not supported
  // (registered types, the record shapes TypeFor refuses).
  static absl::StatusOr<std::unique_ptr<PreparedFunction>> Create(void* address,
                                                                  const v1::Signature& signature,
                                                                  const TypeLimits& limits);

  PreparedFunction(const PreparedFunction&) = delete;
  PreparedFunction& operator=(const PreparedFunction&) = delete;

  // Validates `call` (untrusted) against the signature, marshals its arguments and blocks,
  // sets errno if asked, calls the function, and returns the result value, the contents of
  // OUT/INOUT blocks and errno if asked. `generation` is stamped on every RemoteAddress
  // returned and required on every RemoteAddress received. Errors: INVALID_ARGUMENT naming
  // the field ("call.args[2]", "call.blocks[1].relocations[0].offset", ...), STALE_HANDLE,
  // MEMORY_FAULT (unreadable string result), RESOURCE_EXHAUSTED (block limits). Callback
  // ids (PointerValue.callback) are resolved through `callbacks` (NOT_FOUND / FAILED_PRECONDITION
  // with field "call.args[i].pointer.callback" for unknown / freed ones; UNIMPLEMENTED when
  // `callbacks` is nullptr). The native function may call closures that re-enter the worker
  // on this thread: Invoke holds no lock while native code runs. Record arguments take `raw` or
  // `aggregate` values (MarshalValue); record results come back `raw`. Variadic arguments may be
  // records too. Returned blocks carry the pointers found in them (CallBlocks::CopyOut).
  // Thread-compatible: concurrent Invokes on one object are safe, the native function
  // permitting.
  // Lasting blocks (MemoryBlock.keep / at, Call.release, freed first by ApplyReleases,
  // before any check, so whatever the call's outcome) live in `lasting`; nullptr refuses
  // them (UNIMPLEMENTED).
  absl::StatusOr<v1::CallResult> Invoke(const v1::Call& call, uint64_t generation,
                                        const CallbackResolver* callbacks = nullptr,
                                        LastingMemory* lasting = nullptr) const;
  // Invoke writing the result into `*result` (empty; a response's slot, on its arena), so a
  // batch's results are built where they are sent from. On failure `*result` holds nothing
  // the caller may use. Without `report_changed` (a batch's calls but its last) the result
  // does not report what the library changed in watched blocks (CallBlocks::CopyOut).
  // `shared` is the same-host channel's shared area when the call came on that channel
  // (blocks with a `shared_offset` are placed there); empty refuses such blocks.
  absl::Status Invoke(const v1::Call& call, uint64_t generation, const CallbackResolver* callbacks,
                      LastingMemory* lasting, v1::CallResult* result, bool report_changed = true,
                      absl::Span<char> shared = {}) const;

  // A call whose arguments are all scalars (core/scalar_wire.h's ScalarCallFrame: no blocks,
  // no variadic types, no errno), run from their bits: what Invoke does for the same call,
  // without its message. Nullopt, nothing run, for a call Invoke would refuse (another count
  // of arguments, a variadic function, an argument that does not marshal): Invoke then gives
  // its error. Otherwise the call ran, and `*result` (empty) holds what Invoke writes there
  // for it (its result, what the library changed in watched lasting blocks), unless the
  // status says why it could not be read.
  std::optional<absl::Status> InvokeScalar(absl::Span<const ScalarBits> args, uint64_t generation,
                                           const CallbackResolver* callbacks,
                                           LastingMemory* lasting, v1::CallResult* result) const;

  // The validated signature this function was prepared with.
  const v1::Signature& signature() const { return signature_; }

 private:
  PreparedFunction(void* address, const v1::Signature& signature, const TypeLimits& limits);
  absl::Status Prepare();
  // The native call of Invoke and InvokeScalar, its arguments marshalled into `values` (the
  // blocks placed): errno set if asked, the function called with `cif`, its result and the
  // blocks' contents written into `result`, errno reported if asked.
  absl::Status CallNative(const ffi_cif& cif, void** values, std::optional<int> set_errno,
                          bool capture_errno, uint64_t generation, bool report_changed,
                          CallArena& arena, CallBlocks& blocks, v1::CallResult* result) const;

  void* const address_;
  const v1::Signature signature_;
  const TypeLimits limits_;
  FfiTypeArena types_;  // owns record types referenced by cif_
  std::vector<ffi_type*> param_types_;
  std::vector<uint64_t> param_sizes_;
  ffi_type* result_type_ = &ffi_type_void;
  uint64_t result_size_ = 0;
  bool returns_void_ = true;
  ffi_cif cif_;  // prepared in Create unless the function is variadic
};

}  // namespace ffibox

#endif  // FFIBOX_CORE_CALL_H_
