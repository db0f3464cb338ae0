// Closure: a native function pointer, made with libffi (ffi_closure_alloc +
// ffi_prep_closure_loc), that runs a C++ handler whenever native code calls it.
//
// The worker makes one per DefineCallback (server/worker/callback_table.h) and hands its address to
// native code. The handler may run on any thread: the thread inside ffi_call, or a thread the
// library created. Decoding the arguments and storing the result are core/callback_values.h.
#ifndef FFIBOX_CORE_CLOSURE_H_
#define FFIBOX_CORE_CLOSURE_H_

#include <ffi.h>

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/ffi_types.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

class Closure {
 public:
  // Called for every native call of the closure. `args[i]` points at the value of parameter
  // i as libffi passes it (array parameters arrive as a pointer); `result` is libffi's return
  // storage, which the handler must fill (StoreCallbackResult / StoreZeroResult) before it
  // returns. Must be thread-safe.
  using Handler = std::function<void(void* const* args, void* result)>;

  // Validates `signature` (untrusted; errors name "signature..."; variadic signatures are
  // INVALID_ARGUMENT) and builds the closure. Parameters and results of every type the call
  // path supports work here too: scalars incl. long double, pointers, strings, records by
  // value (FfiTypeArena::TypeFor). Returns UNIMPLEMENTED for the shapes TypeFor refuses and
  // RESOURCE_EXHAUSTED when libffi cannot allocate executable memory.
  static absl::StatusOr<std::unique_ptr<Closure>> Create(const v1::Signature& signature,
                                                         const TypeLimits& limits, Handler handler);

  // Releases the executable memory: native code must not call address() afterwards. The
  // worker therefore never destroys a closure it has handed out.
  ~Closure();

  Closure(const Closure&) = delete;
  Closure& operator=(const Closure&) = delete;

  // The native entry point (cast to the C function pointer type of the signature).
  void* address() const { return code_; }

  // The validated signature.
  const v1::Signature& signature() const { return signature_; }

 private:
  Closure(const v1::Signature& signature, Handler handler)
      : signature_(signature), handler_(std::move(handler)) {}
  absl::Status Prepare(const TypeLimits& limits);
  static void Trampoline(ffi_cif* cif, void* result, void** args, void* self);

  const v1::Signature signature_;
  const Handler handler_;
  FfiTypeArena types_;  // owns record types referenced by cif_
  std::vector<ffi_type*> param_types_;
  ffi_cif cif_;
  ffi_closure* closure_ = nullptr;  // writable view, from ffi_closure_alloc
  void* code_ = nullptr;            // executable view: the function pointer
};

}  // namespace ffibox

#endif  // FFIBOX_CORE_CLOSURE_H_
