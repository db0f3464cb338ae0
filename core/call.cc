#include "core/call.h"

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/arena.h"
#include "core/blocks.h"
#include "core/call_shape.h"
#include "core/errors.h"
#include "core/layout.h"
#include "core/marshal.h"
#include "core/status_macros.h"

namespace ffibox {
namespace {

// Argument slots are at least this large and aligned to it, enough for every scalar.
constexpr uint64_t kSlotBytes = 16;

// Names the argument in `status`: INVALID_ARGUMENT gets the field path, other codes
// (STALE_HANDLE, NOT_FOUND, ...) a message prefix, and their field, if any, the prefix too.
absl::Status AtPath(const absl::Status& status, const std::string& path) {
  if (ErrorCodeOf(status) == v1::INVALID_ARGUMENT) return PrefixField(status, path);
  v1::Error error = ToProtoError(status);
  error.set_message(absl::StrCat(path, ": ", error.message()));
  // Errors that name a part of the value (an unknown callback: "pointer.callback") keep it,
  // under the argument's path.
  if (!error.field().empty()) error.set_field(absl::StrCat(path, ".", error.field()));
  return ErrorStatus(error);
}

std::string ArgPath(int index) { return absl::StrCat("call.args[", index, "]"); }

// The libffi type of a parameter: arrays decay to pointers, records go through `arena`.
absl::StatusOr<ffi_type*> ParamFfiType(const v1::Type& type, FfiTypeArena* arena) {
  if (type.kind_case() == v1::Type::kArray) return &ffi_type_pointer;
  return arena->TypeFor(type);
}

absl::Status ParamSize(const v1::Type& type, uint64_t* size) {
  if (type.kind_case() != v1::Type::kRecord) {
    *size = kSlotBytes;
    return absl::OkStatus();
  }
  uint64_t alignment = 0;
  absl::Status status = ComputeSizeAndAlignment(type, size, &alignment);
  if (*size < kSlotBytes) *size = kSlotBytes;
  return status;
}

// Applies C's default argument promotions to a variadic scalar already marshalled into
// `slot` and returns the libffi type of the promoted value.
ffi_type* PromoteVariadic(v1::Scalar scalar, void* slot, ffi_type* unpromoted) {
  int promoted = 0;
  switch (scalar) {
    case v1::FLOAT: {
      float f;
      std::memcpy(&f, slot, sizeof f);
      double d = f;
      std::memcpy(slot, &d, sizeof d);
      return &ffi_type_double;
    }
    case v1::BOOL:
    case v1::UCHAR:
    case v1::UINT8:
      promoted = *static_cast<uint8_t*>(slot);
      break;
    case v1::CHAR:
    case v1::SCHAR:
    case v1::INT8:
      promoted = *static_cast<int8_t*>(slot);
      break;
    case v1::SHORT:
    case v1::INT16:
      promoted = *static_cast<int16_t*>(slot);
      break;
    case v1::USHORT:
    case v1::UINT16:
      promoted = *static_cast<uint16_t*>(slot);
      break;
    default:
      return unpromoted;
  }
  std::memcpy(slot, &promoted, sizeof promoted);
  return &ffi_type_sint32;
}

}  // namespace

PreparedFunction::PreparedFunction(void* address, const v1::Signature& signature,
                                   const TypeLimits& limits)
    : address_(address), signature_(signature), limits_(limits) {}

absl::StatusOr<std::unique_ptr<PreparedFunction>> PreparedFunction::Create(
    void* address, const v1::Signature& signature, const TypeLimits& limits) {
  absl::Status status = ValidateSignature(signature, limits, "signature");
  if (!status.ok()) return status;
  if (address == nullptr) return InvalidArgumentAt("", "the function address is NULL");
  std::unique_ptr<PreparedFunction> function(new PreparedFunction(address, signature, limits));
  status = function->Prepare();
  if (!status.ok()) return status;
  return function;
}

absl::Status PreparedFunction::Prepare() {
  const v1::Type& result = signature_.result();
  returns_void_ = !signature_.has_result() ||
                  (result.kind_case() == v1::Type::kScalar && result.scalar() == v1::VOID);
  if (!returns_void_) {
    absl::StatusOr<ffi_type*> type = types_.TypeFor(result);
    if (!type.ok()) return AtPath(type.status(), "signature.result");
    result_type_ = *type;
    uint64_t alignment = 0;
    absl::Status status = ComputeSizeAndAlignment(result, &result_size_, &alignment);
    if (!status.ok()) return AtPath(status, "signature.result");
  }
  param_types_.reserve(signature_.params_size());
  param_sizes_.reserve(signature_.params_size());
  for (int i = 0; i < signature_.params_size(); ++i) {
    const std::string path = absl::StrCat("signature.params[", i, "]");
    absl::StatusOr<ffi_type*> type = ParamFfiType(signature_.params(i), &types_);
    if (!type.ok()) return AtPath(type.status(), path);
    uint64_t size = 0;
    absl::Status status = ParamSize(signature_.params(i), &size);
    if (!status.ok()) return AtPath(status, path);
    param_types_.push_back(*type);
    param_sizes_.push_back(size);
  }
  if (signature_.variadic()) return absl::OkStatus();
  ffi_status prepared =
      ffi_prep_cif(&cif_, FFI_DEFAULT_ABI, param_types_.size(), result_type_, param_types_.data());
  if (prepared != FFI_OK) {
    return ErrorStatus(
        v1::UNIMPLEMENTED,
        absl::StrCat("libffi cannot prepare this signature (ffi_status ", prepared, ")"));
  }
  return absl::OkStatus();
}

std::optional<absl::Status> PreparedFunction::InvokeScalar(absl::Span<const ScalarBits> args,
                                                           uint64_t generation,
                                                           const CallbackResolver* callbacks,
                                                           LastingMemory* lasting,
                                                           v1::CallResult* result) const {
  // What ValidateCallShape checks of a call without blocks or variadic types (the number of
  // parameters was checked against the limit when the signature was).
  if (signature_.variadic() || args.size() != param_sizes_.size()) return std::nullopt;
  CallArena arena;
  // None, but the lasting memory's watched blocks are reported as after any call.
  CallBlocks blocks;
  const google::protobuf::RepeatedPtrField<v1::MemoryBlock> no_blocks;
  if (!blocks.Place(no_blocks, limits_, &arena, lasting, {}, callbacks).ok()) return std::nullopt;
  auto** values =
      static_cast<void**>(arena.Allocate((args.size() + 1) * sizeof(void*), alignof(void*)));
  if (values == nullptr) return std::nullopt;
  const MarshalContext context{&arena, &blocks, generation, callbacks};
  for (size_t i = 0; i < args.size(); ++i) {
    void* slot = arena.Allocate(param_sizes_[i], kSlotBytes);
    v1::Value value;
    SetScalarBits(args[i], &value);
    if (slot == nullptr ||
        !MarshalArgument(signature_.params(static_cast<int>(i)), value, context, slot).ok()) {
      return std::nullopt;
    }
    values[i] = slot;
  }
  return CallNative(cif_, values, /*set_errno=*/std::nullopt, /*capture_errno=*/false, generation,
                    /*report_changed=*/true, arena, blocks, result);
}

void ApplyReleases(const v1::Call& call, uint64_t generation, size_t max_blocks,
                   LastingMemory* lasting) {
  if (lasting == nullptr || static_cast<size_t>(call.release_size()) > max_blocks) return;
  for (const v1::RemoteAddress& address : call.release()) {
    // Idempotent: what is already freed, or died with an older worker, is ignored.
    if (address.generation() == generation) lasting->ReleaseLastingIfPresent(address.address());
  }
}

absl::StatusOr<v1::CallResult> PreparedFunction::Invoke(const v1::Call& call, uint64_t generation,
                                                        const CallbackResolver* callbacks,
                                                        LastingMemory* lasting) const {
  v1::CallResult result;
  FFIBOX_RETURN_IF_ERROR(Invoke(call, generation, callbacks, lasting, &result));
  return result;
}

absl::Status PreparedFunction::Invoke(const v1::Call& call, uint64_t generation,
                                      const CallbackResolver* callbacks, LastingMemory* lasting,
                                      v1::CallResult* result, bool report_changed,
                                      absl::Span<char> shared) const {
  if (call.release_size() > 0 && lasting == nullptr) {
    return ErrorStatus(v1::UNIMPLEMENTED, "call.release: lasting blocks are not available here");
  }
  // First, whatever becomes of the call.
  ApplyReleases(call, generation, limits_.max_blocks, lasting);
  // The same check the broker made: a worker distrusts what reaches it.
  FFIBOX_RETURN_IF_ERROR(ValidateCallShape(call, signature_, limits_, shared.size()));
  const int fixed = signature_.params_size();
  const int total = fixed + call.variadic_types_size();

  CallArena arena;
  CallBlocks blocks;
  absl::Status status = blocks.Place(call.blocks(), limits_, &arena, lasting, shared, callbacks);
  if (!status.ok()) return status;

  const size_t slots = static_cast<size_t>(total) + 1;  // never a zero-sized request
  auto** values = static_cast<void**>(arena.Allocate(slots * sizeof(void*), alignof(void*)));
  auto** call_types =
      static_cast<ffi_type**>(arena.Allocate(slots * sizeof(ffi_type*), alignof(ffi_type*)));
  if (values == nullptr || call_types == nullptr) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED, "out of memory for the call's arguments");
  }
  FfiTypeArena variadic_types;  // allocates only for records passed by value
  const MarshalContext context{&arena, &blocks, generation, callbacks};
  for (int i = 0; i < total; ++i) {
    const bool is_fixed = i < fixed;
    const v1::Type& type = is_fixed ? signature_.params(i) : call.variadic_types(i - fixed);
    uint64_t size = 0;
    if (is_fixed) {
      call_types[i] = param_types_[i];
      size = param_sizes_[i];
    } else {
      const std::string type_path = absl::StrCat("call.variadic_types[", i - fixed, "]");
      status = ValidateType(type, limits_, type_path);
      if (!status.ok()) return status;
      absl::StatusOr<ffi_type*> ffi = ParamFfiType(type, &variadic_types);
      if (!ffi.ok()) return AtPath(ffi.status(), type_path);
      call_types[i] = *ffi;
      status = ParamSize(type, &size);
      if (!status.ok()) return AtPath(status, type_path);
    }
    void* slot = arena.Allocate(size, kSlotBytes);
    if (slot == nullptr) return ErrorStatus(v1::RESOURCE_EXHAUSTED, "out of memory");
    status = MarshalArgument(type, call.args(i), context, slot);
    if (!status.ok()) return AtPath(status, ArgPath(i));
    if (!is_fixed && type.kind_case() == v1::Type::kScalar) {
      call_types[i] = PromoteVariadic(type.scalar(), slot, call_types[i]);
    }
    values[i] = slot;
  }

  const ffi_cif* cif = &cif_;
  ffi_cif variadic_cif;
  if (signature_.variadic()) {
    ffi_status prepared =
        ffi_prep_cif_var(&variadic_cif, FFI_DEFAULT_ABI, fixed, total, result_type_, call_types);
    if (prepared != FFI_OK) {
      return ErrorStatus(
          v1::UNIMPLEMENTED,
          absl::StrCat("libffi cannot prepare this variadic call (ffi_status ", prepared, ")"));
    }
    cif = &variadic_cif;
  }

  const std::optional<int> set_errno =
      call.has_set_errno() ? std::optional<int>(call.set_errno()) : std::nullopt;
  return CallNative(*cif, values, set_errno, call.capture_errno(), generation, report_changed,
                    arena, blocks, result);
}

absl::Status PreparedFunction::CallNative(const ffi_cif& cif, void** values,
                                          std::optional<int> set_errno, bool capture_errno,
                                          uint64_t generation, bool report_changed,
                                          CallArena& arena, CallBlocks& blocks,
                                          v1::CallResult* result) const {
  void* result_storage = arena.Allocate(std::max(result_size_, kSlotBytes), kSlotBytes);
  if (result_storage == nullptr) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED, "out of memory for the result");
  }
  int errno_after = 0;
  if (set_errno.has_value()) errno = *set_errno;
  {
    const CallBlocks::Running running(&blocks);
    ffi_call(const_cast<ffi_cif*>(&cif), FFI_FN(address_), result_storage, values);
    errno_after = errno;
  }
  // The library may keep pointers into kept blocks now: never freed behind its back, even
  // if the result cannot be reported.
  blocks.KeepLasting();

  if (capture_errno) result->set_errno_value(errno_after);
  if (!returns_void_) {
    absl::Status status =
        UnmarshalResult(signature_.result(), result_storage, generation, result->mutable_result());
    if (!status.ok()) return status;
  }
  blocks.CopyOut(result, generation, report_changed);
  return absl::OkStatus();
}

}  // namespace ffibox
