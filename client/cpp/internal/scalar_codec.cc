#include "client/cpp/internal/scalar_codec.h"

#include "absl/base/casts.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace ffibox {
namespace client_internal {

void SetScalarBits(const ScalarBits& scalar, v1::Value* out) {
  switch (scalar.kind) {
    case v1::Value::kBoolValue:
      out->set_bool_value(scalar.bits != 0);
      break;
    case v1::Value::kIntValue:
      out->set_int_value(static_cast<int64_t>(scalar.bits));
      break;
    case v1::Value::kUintValue:
      out->set_uint_value(scalar.bits);
      break;
    case v1::Value::kFloatValue:
      out->set_float_value(absl::bit_cast<double>(scalar.bits));
      break;
    default:
      out->Clear();
      break;
  }
}

absl::Status UnexpectedValue(const v1::Value& value, absl::string_view expected) {
  const google::protobuf::FieldDescriptor* field =
      v1::Value::descriptor()->FindFieldByNumber(value.kind_case());
  return ErrorStatus(v1::INTERNAL,
                     absl::StrCat("the server returned ", field ? field->name() : "no value",
                                  " where ", expected, " was expected"));
}

}  // namespace client_internal
}  // namespace ffibox
