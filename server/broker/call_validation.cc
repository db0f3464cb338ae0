#include "server/broker/call_validation.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/call_shape.h"
#include "core/encoding_limits.h"
#include "core/errors.h"
#include "core/status_macros.h"
#include "server/broker/request_validation.h"

namespace ffibox {
namespace {

// How many distinct function names a batch's label lists before "...".
constexpr int kLabelledFunctions = 3;

// The checks of one call, alone or in a batch: its function (valid while the handle table
// is unchanged), with its deadline in `timeout`.
absl::StatusOr<const HandleTable::Function*> CheckCall(const v1::Call& call,
                                                       const CallContext& context,
                                                       absl::Duration* timeout) {
  FFIBOX_ASSIGN_OR_RETURN(const HandleTable::Function* function,
                          context.handles->FindFunction(call.function()));
  if (function->generation != 0 && function->generation != context.live_generation) {
    return ErrorStatus(v1::STALE_HANDLE,
                       absl::StrCat("call.function: function ", call.function(),
                                    " was resolved at an address of worker generation ",
                                    function->generation, ", which is gone; resolve it again"));
  }
  *timeout =
      call.timeout_ms() != 0 ? absl::Milliseconds(call.timeout_ms()) : context.default_timeout;
  if (*timeout > context.max_timeout) {
    return InvalidArgumentAt("call.timeout_ms",
                             absl::StrCat("exceeds the server's maximum of ",
                                          absl::FormatDuration(context.max_timeout)));
  }
  FFIBOX_RETURN_IF_ERROR(ValidateCallShape(call, function->signature, *context.limits));
  return function;
}

// Replaces `call`'s function_request by the handle that request made.
absl::Status NameRequestedFunction(v1::Call& call, const HandleTable& handles) {
  if (call.function() != 0) {
    return InvalidArgumentAt("call.function_request",
                             "name either function or function_request, not both");
  }
  FFIBOX_ASSIGN_OR_RETURN(
      const uint64_t function,
      handles.FunctionOfRequest(call.function_request(), "call.function_request"));
  call.set_function(function);
  call.clear_function_request();
  return absl::OkStatus();
}

}  // namespace

bool NamesRequestedFunctions(const v1::Request& request) {
  if (request.has_call()) return request.call().function_request() != 0;
  if (!request.has_batch()) return false;
  const auto& calls = request.batch().calls();
  return std::any_of(calls.begin(), calls.end(),
                     [](const v1::Call& call) { return call.function_request() != 0; });
}

absl::Status NameRequestedFunctions(v1::Request& request, const HandleTable& handles) {
  if (request.has_call()) {
    if (request.call().function_request() == 0) return absl::OkStatus();
    return NameRequestedFunction(*request.mutable_call(), handles);
  }
  if (!request.has_batch()) return absl::OkStatus();
  for (int i = 0; i < request.batch().calls_size(); ++i) {
    v1::Call& call = *request.mutable_batch()->mutable_calls(i);
    if (call.function_request() == 0) continue;
    absl::Status status = NameRequestedFunction(call, handles);
    if (!status.ok()) return InBatch(status, i);
  }
  return absl::OkStatus();
}

absl::Status ValidateCallRequest(const v1::Call& call, const CallContext& context,
                                 PendingRequest* pending) {
  FFIBOX_ASSIGN_OR_RETURN(const HandleTable::Function* function,
                          CheckCall(call, context, &pending->timeout));
  pending->label = function->symbol;
  pending->required_generation = function->generation;
  pending->call = ExpectedResultOf(call);
  if (std::optional<uint64_t> result_bytes = ResultAnswerBytes(function->signature)) {
    pending->answer_bytes = CallAnswerBytes(call, *result_bytes);
  }
  return absl::OkStatus();
}

absl::Status ValidateBatchRequest(const v1::Batch& batch, const CallContext& context,
                                  PendingRequest* pending) {
  FFIBOX_RETURN_IF_ERROR(ValidateBatchShape(batch, *context.limits));
  if (absl::Milliseconds(batch.timeout_ms()) > context.max_timeout) {
    return InvalidArgumentAt("batch.timeout_ms",
                             absl::StrCat("exceeds the server's maximum of ",
                                          absl::FormatDuration(context.max_timeout)));
  }
  absl::Duration total = absl::ZeroDuration();
  std::vector<const std::string*> names;  // distinct, in order of first call
  bool more_names = false;
  // The most bytes an honest answer takes: each call's (0 when one of them is not known).
  uint64_t answer_bytes = 0;
  for (int i = 0; i < batch.calls_size(); ++i) {
    const v1::Call& call = batch.calls(i);
    absl::Duration timeout;
    absl::StatusOr<const HandleTable::Function*> function = CheckCall(call, context, &timeout);
    if (!function.ok()) return InBatch(function.status(), i);
    total += timeout;
    if (i == 0 || answer_bytes != 0) {
      std::optional<uint64_t> result_bytes = ResultAnswerBytes((*function)->signature);
      answer_bytes =
          result_bytes.has_value() ? answer_bytes + CallAnswerBytes(call, *result_bytes) : 0;
    }
    // Functions bound to a generation all belong to the live one (CheckCall).
    if ((*function)->generation != 0) pending->required_generation = (*function)->generation;
    if (call.blocks_size() > 0) pending->batch_blocks.emplace_back(i, ExpectedResultOf(call));
    const std::string& name = (*function)->symbol;
    if (std::none_of(names.begin(), names.end(),
                     [&](const std::string* n) { return n == &name || *n == name; })) {
      if (names.size() < kLabelledFunctions) {
        names.push_back(&name);
      } else {
        more_names = true;
      }
    }
  }
  pending->batch_calls = static_cast<uint32_t>(batch.calls_size());
  pending->answer_bytes = answer_bytes;
  pending->timeout = batch.timeout_ms() != 0 ? absl::Milliseconds(batch.timeout_ms())
                                             : std::min(total, context.max_timeout);
  pending->label = absl::StrCat("batch of ", batch.calls_size(), " call",
                                batch.calls_size() == 1 ? "" : "s", ": ");
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StrAppend(&pending->label, i == 0 ? "" : ", ", *names[i]);
  }
  if (more_names) absl::StrAppend(&pending->label, ", ...");
  return absl::OkStatus();
}

}  // namespace ffibox
