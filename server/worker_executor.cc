#include "server/worker_executor.h"

#include <dlfcn.h>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/layout.h"

namespace ffibox {

v1::Response WorkerExecutor::Execute(const internal::WorkerRequest& wrapped) {
  const v1::Request& request = wrapped.request();
  v1::Response response;
  response.set_id(wrapped.id());
  absl::Status status;
  switch (request.op_case()) {
    case v1::Request::kLoadLibrary:
      status = LoadLibrary(wrapped.handle(), request.load_library());
      if (status.ok()) response.mutable_library()->set_library(wrapped.handle());
      break;
    case v1::Request::kResolveFunction: {
      absl::StatusOr<v1::FunctionResolved> resolved =
          ResolveFunction(wrapped.handle(), request.resolve_function());
      status = resolved.status();
      if (resolved.ok()) *response.mutable_function() = std::move(*resolved);
      break;
    }
    case v1::Request::kCall: {
      absl::StatusOr<v1::CallResult> result = Call(request.call());
      status = result.status();
      if (result.ok()) *response.mutable_call() = std::move(*result);
      break;
    }
    case v1::Request::kGetLayout: {
      absl::StatusOr<v1::LayoutResult> layout = GetLayout(request.get_layout());
      status = layout.status();
      if (layout.ok()) *response.mutable_layout() = std::move(*layout);
      break;
    }
    case v1::Request::kPing:
      response.mutable_done();
      break;
    default:
      status = ErrorStatus(v1::UNIMPLEMENTED, "the worker does not implement this operation");
  }
  if (!status.ok()) {
    response.clear_result();
    *response.mutable_error() = ToProtoError(status);
  }
  return response;
}

absl::Status WorkerExecutor::LoadLibrary(uint64_t handle, const v1::LoadLibrary& load) {
  if (libraries_.contains(handle)) {
    return InvalidArgumentAt("load_library", absl::StrCat("library handle ", handle, " in use"));
  }
  dlerror();
  void* library = dlopen(load.path().c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* reason = dlerror();
    return ErrorStatus(v1::LIBRARY_LOAD_FAILED,
                       absl::StrCat("cannot load ", load.path(), ": ",
                                    reason != nullptr ? reason : "unknown dlopen error"));
  }
  libraries_[handle] = library;
  return absl::OkStatus();
}

absl::StatusOr<v1::FunctionResolved> WorkerExecutor::ResolveFunction(
    uint64_t handle, const v1::ResolveFunction& resolve) {
  auto library = libraries_.find(resolve.library());
  if (library == libraries_.end()) {
    return ErrorStatus(v1::NOT_FOUND,
                       absl::StrCat("library handle ", resolve.library(), " is not loaded"));
  }
  dlerror();
  void* address = dlsym(library->second, resolve.symbol().c_str());
  if (address == nullptr) {
    const char* reason = dlerror();
    return ErrorStatus(v1::SYMBOL_NOT_FOUND,
                       absl::StrCat("symbol ", resolve.symbol(), " not found",
                                    reason != nullptr ? absl::StrCat(": ", reason) : ""));
  }
  absl::StatusOr<std::unique_ptr<PreparedFunction>> prepared =
      PreparedFunction::Create(address, resolve.signature(), limits_);
  if (!prepared.ok()) return PrefixField(prepared.status(), "resolve_function");
  functions_[handle] = std::move(*prepared);
  v1::FunctionResolved resolved;
  resolved.set_function(handle);
  resolved.mutable_address()->set_address(reinterpret_cast<uintptr_t>(address));
  resolved.mutable_address()->set_generation(generation_);
  return resolved;
}

absl::StatusOr<v1::CallResult> WorkerExecutor::Call(const v1::Call& call) {
  auto function = functions_.find(call.function());
  if (function == functions_.end()) {
    return ErrorStatus(v1::NOT_FOUND,
                       absl::StrCat("function handle ", call.function(), " is not resolved"));
  }
  return function->second->Invoke(call, generation_);
}

absl::StatusOr<v1::LayoutResult> WorkerExecutor::GetLayout(const v1::GetLayout& request) {
  absl::Status valid = ValidateType(request.type(), limits_, "get_layout.type");
  if (!valid.ok()) return valid;
  absl::StatusOr<TypeLayout> layout = ComputeLayout(request.type());
  if (!layout.ok()) return layout.status();
  v1::LayoutResult result;
  result.set_size(layout->size);
  result.set_alignment(layout->alignment);
  for (const FieldLayout& field : layout->fields) {
    v1::FieldLayout* out = result.add_fields();
    out->set_name(field.name);
    out->set_offset(field.offset);
    out->set_bit_offset(field.bit_offset);
    out->set_bit_width(field.bit_width);
    out->set_size(field.size);
    out->set_alignment(field.alignment);
  }
  return result;
}

}  // namespace ffibox
