#include "client/cpp/internal/result_traits.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/utf8.h"

namespace ffibox {
namespace client_internal {

absl::StatusOr<std::optional<std::string>> DecodeCString(const v1::Value& value,
                                                         RemoteStringReader read) {
  switch (value.kind_case()) {
    case v1::Value::kBytesValue:
      return std::optional<std::string>(value.bytes_value());
    case v1::Value::kPointer: {
      const v1::PointerValue& pointer = value.pointer();
      if (pointer.has_null()) return std::optional<std::string>();
      if (pointer.has_remote()) {
        if (pointer.remote().address() == 0) return std::optional<std::string>();
        absl::StatusOr<v1::StringData> data = read(pointer.remote(), /*wide=*/false);
        if (!data.ok()) return data.status();
        return std::optional<std::string>(std::move(*data->mutable_data()));
      }
      return UnexpectedValue(value, "a char* (bytes or remote pointer)");
    }
    default:
      return UnexpectedValue(value, "a char* (bytes or remote pointer)");
  }
}

absl::StatusOr<std::optional<std::u32string>> DecodeWString(const v1::Value& value,
                                                            RemoteStringReader read) {
  std::string utf8;
  switch (value.kind_case()) {
    case v1::Value::kTextValue:
      utf8 = value.text_value();
      break;
    case v1::Value::kPointer: {
      const v1::PointerValue& pointer = value.pointer();
      if (pointer.has_null()) return std::optional<std::u32string>();
      if (!pointer.has_remote()) return UnexpectedValue(value, "a wchar_t* (text or pointer)");
      if (pointer.remote().address() == 0) return std::optional<std::u32string>();
      absl::StatusOr<v1::StringData> data = read(pointer.remote(), /*wide=*/true);
      if (!data.ok()) return data.status();
      utf8 = std::move(*data->mutable_text());
      break;
    }
    default:
      return UnexpectedValue(value, "a wchar_t* (text or remote pointer)");
  }
  absl::StatusOr<std::u32string> text = DecodeUtf8(utf8);
  if (!text.ok()) {
    return ErrorStatus(v1::INTERNAL, absl::StrCat("the server returned a wide string that is not "
                                                  "UTF-8: ",
                                                  text.status().message()));
  }
  return std::optional<std::u32string>(*std::move(text));
}

absl::Status NullStringResult() {
  return ErrorStatus(v1::FAILED_PRECONDITION,
                     "the function returned NULL; declare the result as std::optional<...> to "
                     "accept NULL");
}

}  // namespace client_internal
}  // namespace ffibox
