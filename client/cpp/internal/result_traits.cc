#include "client/cpp/internal/result_traits.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/status_macros.h"
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

absl::StatusOr<std::u32string> WideText(const v1::StringData& read) {
  if (!read.data().empty()) {
    std::u32string units(read.data().size() / 4, U'\0');
    std::memcpy(units.data(), read.data().data(), units.size() * 4);
    return units;
  }
  absl::StatusOr<std::u32string> text = DecodeUtf8(read.text());
  if (!text.ok()) {
    return ErrorStatus(v1::INTERNAL, absl::StrCat("the server returned a wide string that is not "
                                                  "UTF-8: ",
                                                  text.status().message()));
  }
  return text;
}

absl::StatusOr<std::optional<std::u32string>> DecodeWString(const v1::Value& value,
                                                            RemoteStringReader read) {
  v1::StringData data;
  switch (value.kind_case()) {
    case v1::Value::kTextValue:
      *data.mutable_text() = value.text_value();
      break;
    case v1::Value::kPointer: {
      // A string that is no text comes as its address (a lone surrogate), read raw.
      const v1::PointerValue& pointer = value.pointer();
      if (pointer.has_null()) return std::optional<std::u32string>();
      if (!pointer.has_remote()) return UnexpectedValue(value, "a wchar_t* (text or pointer)");
      if (pointer.remote().address() == 0) return std::optional<std::u32string>();
      FFIBOX_ASSIGN_OR_RETURN(data, read(pointer.remote(), /*wide=*/true));
      break;
    }
    default:
      return UnexpectedValue(value, "a wchar_t* (text or remote pointer)");
  }
  FFIBOX_ASSIGN_OR_RETURN(std::u32string text, WideText(data));
  return std::optional<std::u32string>(std::move(text));
}

absl::Status NullStringResult() {
  return ErrorStatus(v1::FAILED_PRECONDITION,
                     "the function returned NULL; declare the result as std::optional<...> to "
                     "accept NULL");
}

}  // namespace client_internal
}  // namespace ffibox
