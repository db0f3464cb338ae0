#include "core/closure.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace ffibox {
namespace {

bool IsVoid(const v1::Signature& signature) {
  return !signature.has_result() || (signature.result().kind_case() == v1::Type::kScalar &&
                                     signature.result().scalar() == v1::VOID);
}

// Names the part of the signature in `status` (as PreparedFunction does).
absl::Status AtPath(const absl::Status& status, const std::string& path) {
  if (ErrorCodeOf(status) == v1::INVALID_ARGUMENT) return PrefixField(status, path);
  v1::Error error = ToProtoError(status);
  error.set_message(absl::StrCat(path, ": ", error.message()));
  return ErrorStatus(error);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Closure>> Closure::Create(const v1::Signature& signature,
                                                         const TypeLimits& limits,
                                                         Handler handler) {
  absl::Status status = ValidateSignature(signature, limits, "signature");
  if (!status.ok()) return status;
  if (signature.variadic()) {
    return InvalidArgumentAt("signature.variadic", "a callback cannot be variadic");
  }
  std::unique_ptr<Closure> closure(new Closure(signature, std::move(handler)));
  status = closure->Prepare(limits);
  if (!status.ok()) return status;
  return closure;
}

absl::Status Closure::Prepare(const TypeLimits& limits) {
  ffi_type* result_type = &ffi_type_void;
  if (!IsVoid(signature_)) {
    absl::StatusOr<ffi_type*> type = types_.TypeFor(signature_.result());
    if (!type.ok()) return AtPath(type.status(), "signature.result");
    result_type = *type;
  }
  param_types_.reserve(signature_.params_size() + 1);
  for (int i = 0; i < signature_.params_size(); ++i) {
    const v1::Type& param = signature_.params(i);
    if (param.kind_case() == v1::Type::kArray) {  // decays to a pointer, as in C
      param_types_.push_back(&ffi_type_pointer);
      continue;
    }
    absl::StatusOr<ffi_type*> type = types_.TypeFor(param);
    if (!type.ok()) return AtPath(type.status(), absl::StrCat("signature.params[", i, "]"));
    param_types_.push_back(*type);
  }
  ffi_status prepared = ffi_prep_cif(&cif_, FFI_DEFAULT_ABI, signature_.params_size(), result_type,
                                     param_types_.data());
  if (prepared != FFI_OK) {
    return ErrorStatus(
        v1::UNIMPLEMENTED,
        absl::StrCat("libffi cannot prepare this callback signature (ffi_status ", prepared, ")"));
  }
  closure_ = static_cast<ffi_closure*>(ffi_closure_alloc(sizeof(ffi_closure), &code_));
  if (closure_ == nullptr) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED, "libffi cannot allocate a closure");
  }
  prepared = ffi_prep_closure_loc(closure_, &cif_, &Closure::Trampoline, this, code_);
  if (prepared != FFI_OK) {
    return ErrorStatus(
        v1::UNIMPLEMENTED,
        absl::StrCat("libffi cannot prepare this closure (ffi_status ", prepared, ")"));
  }
  return absl::OkStatus();
}

Closure::~Closure() {
  if (closure_ != nullptr) ffi_closure_free(closure_);
}

void Closure::Trampoline(ffi_cif* /*cif*/, void* result, void** args, void* self) {
  static_cast<Closure*>(self)->handler_(args, result);
}

}  // namespace ffibox
