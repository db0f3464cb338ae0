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

// Whether character `c` prints as itself in a wide literal: not a control (C0, DEL, C1) nor
// an invisible one that changes how the rest of a terminal's line reads (bidirectional
// marks, overrides and isolates, zero-width characters, the byte-order mark, tags).
bool PrintsAsItself(char32_t c) {
  return c >= 0x20 && c != 0x7f && !(c >= 0x80 && c < 0xa0) && c != 0x061c &&
         !(c >= 0x200b && c <= 0x200f) && !(c >= 0x2028 && c <= 0x202e) &&
         !(c >= 0x2060 && c <= 0x206f) && c != 0xfeff && !(c >= 0xfff9 && c <= 0xfffb) &&
         !(c >= 0xe0000 && c <= 0xe007f);
}

// A wchar_t* string sent as UTF-8 text, as WideQuote gives it; text that is not UTF-8 (which
// no honest server sends) as escaped bytes.
std::string WideTextQuote(absl::string_view text) {
  absl::StatusOr<std::u32string> wide = DecodeUtf8(text);
  if (!wide.ok()) return CQuote(text, /*keep_utf8=*/false);
  return WideQuote(*wide);
}

template <typename T>
absl::StatusOr<std::string> FormatInteger(const v1::Value& value) {
  absl::StatusOr<T> number = client_internal::DecodeScalar<T>(value);
  if (!number.ok()) return number.status();
  return absl::StrCat(*number);
}

}  // namespace

std::string WideQuote(std::u32string_view units) {
  std::string out = "\"";
  for (char32_t c : units) {
    std::string utf8;
    if (c < 0x80 && (c < 0x20 || c == '"' || c == '\\' || c == 0x7f)) {
      AppendEscaped(static_cast<char>(c), '"', /*keep_utf8=*/false, &out);
    } else if (!PrintsAsItself(c) || !EncodeUtf8(std::u32string(1, c), &utf8)) {
      absl::StrAppendFormat(&out, c > 0xffff ? "\\U%08x" : "\\u%04x", static_cast<uint32_t>(c));
    } else {
      out += utf8;
    }
  }
  out.push_back('"');
  return out;
}

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
      if (!utf8.ok() || !PrintsAsItself(static_cast<char32_t>(*c))) {
        return absl::StrCat(static_cast<int64_t>(*c));
      }
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
      if (value.has_text_value()) return "L" + WideTextQuote(value.text_value());
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
