#include "client/cli/result_format.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cpp/internal/scalar_codec.h"
#include "client/cpp/internal/value_codec.h"
#include "core/errors.h"
#include "core/utf8.h"

namespace ffibox {
namespace cli {
namespace {

// Escapes one byte for a C literal closed by `quote`.
void AppendEscaped(char c, char quote, bool keep_utf8, std::string* out) {
  const unsigned char byte = static_cast<unsigned char>(c);
  switch (c) {
    case '\\':
      out->append("\\\\");
      return;
    case '\n':
      out->append("\\n");
      return;
    case '\t':
      out->append("\\t");
      return;
    case '\r':
      out->append("\\r");
      return;
    case '\0':
      out->append("\\0");
      return;
    default:
      break;
  }
  if (c == quote) {
    out->push_back('\\');
    out->push_back(c);
  } else if ((byte >= 0x20 && byte < 0x7f) || (keep_utf8 && byte >= 0x80)) {
    out->push_back(c);
  } else {
    absl::StrAppendFormat(out, "\\x%02x", byte);
  }
}

template <typename T>
absl::StatusOr<std::string> FormatInteger(const v1::Value& value) {
  absl::StatusOr<T> number = client_internal::DecodeScalar<T>(value);
  if (!number.ok()) return number.status();
  return absl::StrCat(*number);
}

}  // namespace

std::string CQuote(absl::string_view bytes, bool keep_utf8) {
  std::string out = "\"";
  for (char c : bytes) AppendEscaped(c, '"', keep_utf8, &out);
  out.push_back('"');
  return out;
}

absl::StatusOr<std::string> FormatResult(const v1::Type& type, const v1::Value& value) {
  switch (type.scalar()) {
    case v1::BOOL: {
      absl::StatusOr<bool> flag = client_internal::DecodeScalar<bool>(value);
      if (!flag.ok()) return flag.status();
      return std::string(*flag ? "true" : "false");
    }
    case v1::CHAR: {
      absl::StatusOr<char> c = client_internal::DecodeScalar<char>(value);
      if (!c.ok()) return c.status();
      std::string out = "'";
      AppendEscaped(*c, '\'', /*keep_utf8=*/false, &out);
      out.push_back('\'');
      return out;
    }
    case v1::WCHAR: {
      absl::StatusOr<wchar_t> c = client_internal::DecodeScalar<wchar_t>(value);
      if (!c.ok()) return c.status();
      absl::StatusOr<std::string> utf8 = EncodeUtf8(std::u32string(1, static_cast<char32_t>(*c)));
      if (!utf8.ok() || *c < 0x20) return absl::StrCat(static_cast<int64_t>(*c));
      std::string out = "L'";
      if (*utf8 == "'" || *utf8 == "\\") out.push_back('\\');
      out += *utf8;
      out.push_back('\'');
      return out;
    }
    case v1::SCHAR:
    case v1::INT8:
      return FormatInteger<signed char>(value);
    case v1::UCHAR:
    case v1::UINT8:
      return FormatInteger<unsigned char>(value);
    case v1::SHORT:
    case v1::INT16:
      return FormatInteger<short>(value);
    case v1::USHORT:
    case v1::UINT16:
      return FormatInteger<unsigned short>(value);
    case v1::INT:
    case v1::INT32:
      return FormatInteger<int>(value);
    case v1::UINT:
    case v1::UINT32:
      return FormatInteger<unsigned>(value);
    case v1::LONG:
    case v1::LONGLONG:
    case v1::INT64:
    case v1::SSIZE_T:
      return FormatInteger<long long>(value);
    case v1::ULONG:
    case v1::ULONGLONG:
    case v1::UINT64:
    case v1::SIZE_T:
      return FormatInteger<unsigned long long>(value);
    case v1::FLOAT: {
      absl::StatusOr<float> number = client_internal::DecodeScalar<float>(value);
      if (!number.ok()) return number.status();
      return absl::StrFormat("%.9g", *number);
    }
    case v1::DOUBLE:
    case v1::LONGDOUBLE: {
      absl::StatusOr<double> number = client_internal::DecodeScalar<double>(value);
      if (!number.ok()) return number.status();
      return absl::StrFormat("%.17g", *number);
    }
    case v1::CSTRING:
      if (value.has_bytes_value()) return CQuote(value.bytes_value(), /*keep_utf8=*/false);
      if (value.has_pointer() && value.pointer().has_null()) return std::string("NULL");
      return client_internal::UnexpectedValue(value, "a char* string");
    case v1::WSTRING:
      if (value.has_text_value()) return "L" + CQuote(value.text_value(), /*keep_utf8=*/true);
      if (value.has_pointer() && value.pointer().has_null()) return std::string("NULL");
      return client_internal::UnexpectedValue(value, "a wchar_t* string");
    case v1::POINTER: {
      absl::StatusOr<RemotePtr> pointer = client_internal::DecodePointer(value);
      if (!pointer.ok()) return pointer.status();
      if (pointer->is_null()) return std::string("NULL");
      return absl::StrFormat("0x%x", pointer->address);
    }
    default:
      return ErrorStatus(v1::INTERNAL, "cannot print a result of this type");
  }
}

}  // namespace cli
}  // namespace ffibox
