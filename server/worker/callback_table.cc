#include "server/worker/callback_table.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/callback_values.h"
#include "core/errors.h"

namespace ffibox {
namespace {

absl::Status CallbackError(v1::ErrorCode code, uint64_t id, absl::string_view message) {
  v1::Error error;
  error.set_code(code);
  error.set_field("pointer.callback");
  error.set_message(absl::StrCat("callback ", id, " ", message));
  return ErrorStatus(error);
}

// Names the request part in a closure-creation error.
absl::Status AtDefine(const absl::Status& status) {
  if (ErrorCodeOf(status) == v1::INVALID_ARGUMENT) {
    return PrefixField(status, "define_callback");
  }
  v1::Error error = ToProtoError(status);
  error.set_message(absl::StrCat("define_callback.", error.message()));
  return ErrorStatus(error);
}

}  // namespace

absl::StatusOr<v1::CallbackDefined> CallbackTable::Define(uint64_t id,
                                                          const v1::DefineCallback& define) {
  if (define.buffer_bytes() > kMaxShippedPointeeBytes) {
    return InvalidArgumentAt(
        "define_callback.buffer_bytes",
        absl::StrCat(define.buffer_bytes(), " exceeds the limit of ", kMaxShippedPointeeBytes));
  }
  auto entry = std::make_unique<Entry>();
  entry->id = id;
  entry->buffer_bytes = define.buffer_bytes();
  {
    absl::MutexLock lock(&mu_);
    if (entries_.contains(id)) {
      return InvalidArgumentAt("define_callback", absl::StrCat("callback handle ", id, " in use"));
    }
    if (entries_.size() >= kMaxCallbacks) {
      return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                         absl::StrCat("the worker holds ", kMaxCallbacks,
                                      " callbacks (freed ones included), its limit"));
    }
  }
  const Entry* raw = entry.get();
  absl::StatusOr<std::unique_ptr<Closure>> closure = Closure::Create(
      define.signature(), limits_,
      [this, raw](void* const* args, void* result) { OnNativeCall(*raw, args, result); });
  if (!closure.ok()) return AtDefine(closure.status());
  entry->closure = std::move(*closure);

  v1::CallbackDefined defined;
  defined.set_callback(id);
  defined.mutable_address()->set_address(reinterpret_cast<uintptr_t>(entry->closure->address()));
  defined.mutable_address()->set_generation(generation_);
  absl::MutexLock lock(&mu_);
  if (!entries_.try_emplace(id, std::move(entry)).second) {
    // Another thread defined the same id meanwhile; this closure was never handed out.
    return InvalidArgumentAt("define_callback", absl::StrCat("callback handle ", id, " in use"));
  }
  return defined;
}

absl::Status CallbackTable::Free(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto entry = entries_.find(id);
  if (entry == entries_.end()) {
    return ErrorStatus(v1::NOT_FOUND,
                       absl::StrCat("free_callback.callback: callback ", id, " is not defined"));
  }
  if (entry->second->freed.exchange(true)) {
    return ErrorStatus(v1::FAILED_PRECONDITION,
                       absl::StrCat("free_callback.callback: callback ", id, " is already freed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> CallbackTable::AddressOf(uint64_t id) const {
  absl::MutexLock lock(&mu_);
  auto entry = entries_.find(id);
  if (entry == entries_.end()) return CallbackError(v1::NOT_FOUND, id, "is not defined");
  if (entry->second->freed.load()) {
    return CallbackError(v1::FAILED_PRECONDITION, id, "was freed");
  }
  return reinterpret_cast<uintptr_t>(entry->second->closure->address());
}

void CallbackTable::OnNativeCall(const Entry& entry, void* const* args, void* result) {
  if (!entry.freed.load() && runner_ != nullptr) {
    runner_->RunCallback(entry.id, *entry.closure, entry.buffer_bytes, args, result);
    return;
  }
  StoreZeroResult(entry.closure->signature(), result);
  if (runner_ == nullptr) return;
  v1::Error error;
  error.set_code(v1::FAILED_PRECONDITION);
  error.set_function(absl::StrCat("callback ", entry.id));
  error.set_message(absl::StrCat("native code called callback ", entry.id,
                                 " after it was freed; it received zero"));
  runner_->ReportCallbackError(error);
}

}  // namespace ffibox
