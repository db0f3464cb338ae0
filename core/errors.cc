#include "core/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/utf8_sequence.h"

namespace ffibox {
namespace {

constexpr absl::string_view kErrorPayloadUrl = "type.googleapis.com/ffibox.v1.Error";

v1::ErrorCode PublicCodeFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
      return v1::INVALID_ARGUMENT;
    case absl::StatusCode::kNotFound:
      return v1::NOT_FOUND;
    case absl::StatusCode::kDeadlineExceeded:
      return v1::CALL_TIMEOUT;
    case absl::StatusCode::kResourceExhausted:
      return v1::RESOURCE_EXHAUSTED;
    case absl::StatusCode::kFailedPrecondition:
      return v1::FAILED_PRECONDITION;
    case absl::StatusCode::kUnimplemented:
      return v1::UNIMPLEMENTED;
    case absl::StatusCode::kUnauthenticated:
      return v1::UNAUTHENTICATED;
    case absl::StatusCode::kPermissionDenied:
      return v1::PERMISSION_DENIED;
    case absl::StatusCode::kOutOfRange:
      return v1::INVALID_ARGUMENT;
    default:
      return v1::INTERNAL;
  }
}

}  // namespace

std::string ValidUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const size_t length = DecodeUtf8Sequence(text).length;
    if (length == 0) {
      absl::StrAppend(&out, "\\x", absl::Hex(static_cast<unsigned char>(text[0]), absl::kZeroPad2));
      text.remove_prefix(1);
      continue;
    }
    out.append(text.data(), length);
    text.remove_prefix(length);
  }
  return out;
}

absl::StatusCode AbslCodeFor(v1::ErrorCode code) {
  switch (code) {
    case v1::INVALID_ARGUMENT:
      return absl::StatusCode::kInvalidArgument;
    case v1::NOT_FOUND:
    case v1::SYMBOL_NOT_FOUND:
    case v1::LIBRARY_LOAD_FAILED:
      return absl::StatusCode::kNotFound;
    case v1::WORKER_CRASHED:
      return absl::StatusCode::kAborted;
    case v1::CALL_TIMEOUT:
      return absl::StatusCode::kDeadlineExceeded;
    case v1::SANDBOX_VIOLATION:
    case v1::LIBRARY_NOT_ALLOWED:
    case v1::PERMISSION_DENIED:
      return absl::StatusCode::kPermissionDenied;
    case v1::RESOURCE_EXHAUSTED:
      return absl::StatusCode::kResourceExhausted;
    case v1::MEMORY_FAULT:
      return absl::StatusCode::kOutOfRange;
    case v1::STALE_HANDLE:
    case v1::FAILED_PRECONDITION:
      return absl::StatusCode::kFailedPrecondition;
    case v1::UNIMPLEMENTED:
      return absl::StatusCode::kUnimplemented;
    case v1::UNAUTHENTICATED:
      return absl::StatusCode::kUnauthenticated;
    case v1::UNAVAILABLE:  // the client's own
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::Status ErrorStatus(const v1::Error& error) {
  v1::Error copy = error;
  if (copy.code() == v1::ERROR_CODE_UNSPECIFIED) copy.set_code(v1::INTERNAL);
  // Messages quote what came in (a path, an argument's text, a library's dlerror): a proto
  // string must be UTF-8, or the peer cannot parse the message that carries it.
  *copy.mutable_message() = ValidUtf8(copy.message());
  *copy.mutable_field() = ValidUtf8(copy.field());
  // The text names ffibox's code where absl's differs (ABORTED: WORKER_CRASHED: ...), and
  // says it once where they agree (FAILED_PRECONDITION: ...).
  const absl::StatusCode code = AbslCodeFor(copy.code());
  const std::string& name = v1::ErrorCode_Name(copy.code());
  absl::Status status(code, name == absl::StatusCodeToString(code)
                                ? copy.message()
                                : absl::StrCat(name, ": ", copy.message()));
  status.SetPayload(kErrorPayloadUrl, absl::Cord(copy.SerializeAsString()));
  return status;
}

absl::Status InvocationTooDeep(uint64_t invocation, int depth, int limit) {
  return ErrorStatus(
      v1::RESOURCE_EXHAUSTED,
      absl::StrCat("invocation: callback invocation ", invocation, " is nested ", depth,
                   " deep; the server allows at most ", limit, " nested callback invocations"));
}

absl::Status ErrorStatus(v1::ErrorCode code, absl::string_view message) {
  v1::Error error;
  error.set_code(code);
  error.set_message(std::string(message));
  return ErrorStatus(error);
}

absl::Status InvalidArgumentAt(absl::string_view field, absl::string_view message) {
  v1::Error error;
  error.set_code(v1::INVALID_ARGUMENT);
  error.set_field(std::string(field));
  error.set_message(field.empty() ? std::string(message) : absl::StrCat(field, ": ", message));
  return ErrorStatus(error);
}

absl::Status PrefixField(const absl::Status& status, absl::string_view prefix) {
  if (status.ok() || prefix.empty()) return status;
  v1::Error error = ToProtoError(status);
  if (error.code() != v1::INVALID_ARGUMENT) return status;
  std::string old_field = error.field();
  std::string field = old_field.empty() ? std::string(prefix)
                      : (old_field[0] == '[' || old_field[0] == '.')
                          ? absl::StrCat(prefix, old_field)
                          : absl::StrCat(prefix, ".", old_field);
  std::string detail = error.message();
  if (!old_field.empty() && absl::StartsWith(detail, absl::StrCat(old_field, ": "))) {
    detail = detail.substr(old_field.size() + 2);
  }
  return InvalidArgumentAt(field, detail);
}

v1::Error ToProtoError(const absl::Status& status) {
  v1::Error error;
  if (status.ok()) return error;
  absl::optional<absl::Cord> payload = status.GetPayload(kErrorPayloadUrl);
  if (payload.has_value() && error.ParseFromString(std::string(*payload))) return error;
  error.Clear();
  error.set_code(PublicCodeFor(status.code()));
  error.set_message(ValidUtf8(status.message()));
  return error;
}

v1::ErrorCode ErrorCodeOf(const absl::Status& status) {
  if (status.ok()) return v1::ERROR_CODE_UNSPECIFIED;
  return ToProtoError(status).code();
}

}  // namespace ffibox
