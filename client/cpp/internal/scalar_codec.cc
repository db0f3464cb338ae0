#include "client/cpp/internal/scalar_codec.h"

#include "absl/base/casts.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace ffibox {
namespace client_internal {

absl::Status UnexpectedValue(const v1::Value& value, absl::string_view expected) {
  const google::protobuf::FieldDescriptor* field =
      v1::Value::descriptor()->FindFieldByNumber(value.kind_case());
  return ErrorStatus(v1::INTERNAL,
                     absl::StrCat("the server returned ", field ? field->name() : "no value",
                                  " where ", expected, " was expected"));
}

}  // namespace client_internal
}  // namespace ffibox
