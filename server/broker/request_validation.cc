#include "server/broker/request_validation.h"

#include <fnmatch.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/call_answer.h"
#include "core/call_shape.h"
#include "core/errors.h"
#include "core/layout.h"
#include "server/broker/pending_request.h"

namespace ffibox {

absl::Status ValidateEnvironment(const v1::OpenSession& open,
                                 const std::vector<std::string>& allowed) {
  if (open.environment_size() > kMaxEnvironmentVariables) {
    return InvalidArgumentAt("open.environment",
                             absl::StrCat("at most ", kMaxEnvironmentVariables, " variables"));
  }
  for (const auto& [name, value] : open.environment()) {
    const std::string field = absl::StrCat("open.environment[", name, "]");
    bool well_formed = !name.empty() && name.size() <= 256 &&
                       (absl::ascii_isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_');
    for (char c : name) {
      well_formed = well_formed && (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_');
    }
    if (!well_formed) {
      return InvalidArgumentAt("open.environment",
                               "a variable name is not [A-Za-z_][A-Za-z0-9_]* (at most 256)");
    }
    if (value.size() > kMaxEnvironmentValueBytes || value.find('\0') != std::string::npos) {
      return InvalidArgumentAt(field,
                               absl::StrCat("the value must be at most ", kMaxEnvironmentValueBytes,
                                            " bytes without NUL"));
    }
    bool admitted = false;
    for (const std::string& pattern : allowed) {
      admitted = admitted || fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
    }
    if (!admitted) {
      return InvalidArgumentAt(
          field, absl::StrCat(name, " is not in the server's jail.env_allow",
                              allowed.empty() ? " (empty: the server accepts no variables)" : ""));
    }
  }
  return absl::OkStatus();
}
namespace {

absl::Status ValidateName(absl::string_view name, size_t max_bytes, absl::string_view field) {
  if (name.empty()) return InvalidArgumentAt(field, "must not be empty");
  if (name.size() > max_bytes) {
    return InvalidArgumentAt(field,
                             absl::StrCat("is ", name.size(), " bytes, the limit is ", max_bytes));
  }
  if (name.find('\0') != absl::string_view::npos) {
    return InvalidArgumentAt(field, "contains a NUL byte");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateLoadLibrary(const v1::LoadLibrary& load) {
  return ValidateName(load.path(), kMaxPathBytes, "load_library.path");
}

absl::Status ValidateResolveFunction(const v1::ResolveFunction& resolve, const TypeLimits& limits) {
  if (resolve.library() != 0 && resolve.library_request() != 0) {
    return InvalidArgumentAt("resolve_function.library_request",
                             "name either library or library_request, not both");
  }
  if (resolve.has_address()) {
    if (resolve.library() != 0 || resolve.library_request() != 0 || !resolve.symbol().empty()) {
      return InvalidArgumentAt("resolve_function.address",
                               "name either library and symbol, or address, not both");
    }
    if (resolve.address().address() == 0) {
      return InvalidArgumentAt("resolve_function.address", "is NULL");
    }
    return ValidateSignature(resolve.signature(), limits, "resolve_function.signature");
  }
  absl::Status status = ValidateName(resolve.symbol(), kMaxSymbolBytes, "resolve_function.symbol");
  if (!status.ok()) return status;
  return ValidateSignature(resolve.signature(), limits, "resolve_function.signature");
}

absl::Status ValidateLookupSymbol(const v1::LookupSymbol& lookup, const TypeLimits& limits) {
  if (lookup.library() != 0 && lookup.library_request() != 0) {
    return InvalidArgumentAt("lookup_symbol.library_request",
                             "name either library or library_request, not both");
  }
  absl::Status status = ValidateName(lookup.symbol(), kMaxSymbolBytes, "lookup_symbol.symbol");
  if (!status.ok() || !lookup.has_type()) return status;
  status = ValidateType(lookup.type(), limits, "lookup_symbol.type");
  if (!status.ok()) return status;
  if (lookup.type().kind_case() == v1::Type::kScalar && lookup.type().scalar() == v1::VOID) {
    return InvalidArgumentAt("lookup_symbol.type", "a variable cannot be void");
  }
  return absl::OkStatus();
}

std::string MemoryOperationName(const v1::Request& request) {
  const google::protobuf::FieldDescriptor* field =
      v1::Request::descriptor()->FindFieldByNumber(request.op_case());
  return field != nullptr ? field->name() : "memory operation";
}

absl::Status ValidateDefineCallback(const v1::DefineCallback& define, const TypeLimits& limits) {
  if (define.signature().variadic()) {
    return InvalidArgumentAt("define_callback.signature.variadic", "a callback cannot be variadic");
  }
  if (define.buffer_bytes() > kMaxCallbackBufferBytes) {
    return InvalidArgumentAt(
        "define_callback.buffer_bytes",
        absl::StrCat(define.buffer_bytes(), " exceeds the limit of ", kMaxCallbackBufferBytes));
  }
  return ValidateSignature(define.signature(), limits, "define_callback.signature");
}

namespace {

// Whether `value`'s kind is one the proto allows for `type` (see Value in ffibox.proto);
// ranges are checked by the worker when it converts the value.
bool ValueKindFits(const v1::Type& type, const v1::Value& value) {
  const v1::Value::KindCase kind = value.kind_case();
  const bool is_pointer =
      kind == v1::Value::kPointer && !value.pointer().has_block();  // no blocks in a return
  switch (type.kind_case()) {
    case v1::Type::kScalar:
      switch (type.scalar()) {
        case v1::BOOL:
          return kind == v1::Value::kBoolValue || kind == v1::Value::kIntValue ||
                 kind == v1::Value::kUintValue;
        case v1::FLOAT:
        case v1::DOUBLE:
        case v1::LONGDOUBLE:
          return kind == v1::Value::kFloatValue || kind == v1::Value::kIntValue ||
                 kind == v1::Value::kUintValue;
        case v1::POINTER:
        case v1::CSTRING:
        case v1::WSTRING:
          return is_pointer;
        default:
          return kind == v1::Value::kIntValue || kind == v1::Value::kUintValue ||
                 kind == v1::Value::kBoolValue ||
                 (kind == v1::Value::kBytesValue && value.bytes_value().size() == 1);
      }
    case v1::Type::kPointer:
    case v1::Type::kFunction:
      return is_pointer;
    case v1::Type::kArray:
    case v1::Type::kRecord:
      return kind == v1::Value::kAggregate || kind == v1::Value::kRaw;
    default:
      return kind != v1::Value::KIND_NOT_SET;
  }
}

}  // namespace

absl::Status ValidateCallbackReturn(const v1::CallbackReturn& answer,
                                    const v1::Signature& signature,
                                    const std::vector<std::pair<uint32_t, uint64_t>>& shipped) {
  const bool returns_void =
      !signature.has_result() || (signature.result().kind_case() == v1::Type::kScalar &&
                                  signature.result().scalar() == v1::VOID);
  if (answer.error().empty()) {
    if (returns_void && answer.has_result()) {
      return InvalidArgumentAt("callback_return.result",
                               "the callback returns void; send no result");
    }
    if (!returns_void && !answer.has_result()) {
      return InvalidArgumentAt("callback_return.result",
                               "is required (the callback returns a value), unless `error` is set");
    }
    if (!returns_void && !ValueKindFits(signature.result(), answer.result())) {
      return InvalidArgumentAt("callback_return.result",
                               "does not fit the callback's result type (see Value in the proto)");
    }
  }
  absl::flat_hash_set<uint32_t> seen;
  for (int i = 0; i < answer.pointees_size(); ++i) {
    const v1::PointeeData& pointee = answer.pointees(i);
    std::string field = absl::StrCat("callback_return.pointees[", i, "]");
    const std::pair<uint32_t, uint64_t>* match = nullptr;
    for (const auto& entry : shipped) {
      if (entry.first == pointee.arg()) match = &entry;
    }
    if (match == nullptr) {
      return InvalidArgumentAt(field, absl::StrCat("argument ", pointee.arg(),
                                                   " had no pointee shipped with the invoke"));
    }
    if (!seen.insert(pointee.arg()).second) {
      return InvalidArgumentAt(field, absl::StrCat("argument ", pointee.arg(), " appears twice"));
    }
    if (pointee.data().size() != match->second) {
      return InvalidArgumentAt(field, absl::StrCat("is ", pointee.data().size(),
                                                   " bytes; the pointee is ", match->second));
    }
  }
  return absl::OkStatus();
}

}  // namespace ffibox
