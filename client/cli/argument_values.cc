#include "client/cli/argument_values.h"

#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/utf8.h"

namespace ffibox {
namespace cli {
namespace {

struct IntegerRange {
  bool is_signed;
  int64_t min;
  uint64_t max;
};

template <typename T>
constexpr IntegerRange RangeOf() {
  return IntegerRange{std::numeric_limits<T>::is_signed,
                      static_cast<int64_t>(std::numeric_limits<T>::min()),
                      static_cast<uint64_t>(std::numeric_limits<T>::max())};
}

// The range of an integer scalar; false for non-integers.
bool IntegerRangeOf(v1::Scalar scalar, IntegerRange* range) {
  switch (scalar) {
    case v1::CHAR:
      *range = RangeOf<char>();
      return true;
    case v1::SCHAR:
    case v1::INT8:
      *range = RangeOf<int8_t>();
      return true;
    case v1::UCHAR:
    case v1::UINT8:
      *range = RangeOf<uint8_t>();
      return true;
    case v1::SHORT:
    case v1::INT16:
      *range = RangeOf<int16_t>();
      return true;
    case v1::USHORT:
    case v1::UINT16:
      *range = RangeOf<uint16_t>();
      return true;
    case v1::INT:
    case v1::INT32:
      *range = RangeOf<int32_t>();
      return true;
    case v1::UINT:
    case v1::UINT32:
      *range = RangeOf<uint32_t>();
      return true;
    case v1::LONG:
    case v1::LONGLONG:
    case v1::INT64:
    case v1::SSIZE_T:
      *range = RangeOf<int64_t>();
      return true;
    case v1::ULONG:
    case v1::ULONGLONG:
    case v1::UINT64:
    case v1::SIZE_T:
      *range = RangeOf<uint64_t>();
      return true;
    case v1::WCHAR:
      *range = RangeOf<wchar_t>();
      return true;
    default:
      return false;
  }
}

// The message of a typed error without its "CODE: " prefix, for nesting in another message.
std::string RawMessage(const absl::Status& status) { return ToProtoError(status).message(); }

absl::Status Invalid(absl::string_view text, const v1::Type& type, absl::string_view why) {
  return ErrorStatus(v1::INVALID_ARGUMENT,
                     absl::StrCat("'", text, "' is not a valid ", CTypeName(type), ": ", why));
}

// Parses an unsigned magnitude with an optional leading '-' (base 0: decimal, 0x, 0). An
// integer whose magnitude does not fit in 64 bits is still an integer, with `*too_large` set:
// it is out of range for every type, not something other than a number.
bool ParseInteger(absl::string_view text, bool* negative, uint64_t* magnitude, bool* too_large) {
  std::string digits(absl::StripAsciiWhitespace(text));
  *negative = !digits.empty() && digits[0] == '-';
  *too_large = false;
  if (*negative || (!digits.empty() && digits[0] == '+')) digits.erase(0, 1);
  if (digits.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(digits[0]))) return false;
  errno = 0;
  char* end = nullptr;
  *magnitude = std::strtoull(digits.c_str(), &end, 0);
  if (end == nullptr || *end != '\0') return false;
  *too_large = errno == ERANGE;
  return errno == 0 || *too_large;
}

absl::StatusOr<v1::Value> ParseInteger(const v1::Type& type, const IntegerRange& range,
                                       absl::string_view text) {
  v1::Value value;
  bool negative = false;
  uint64_t magnitude = 0;
  bool too_large = false;
  if (!ParseInteger(text, &negative, &magnitude, &too_large)) {
    // A single character stands for its code (char) or code point (wchar_t).
    if (type.scalar() == v1::CHAR || type.scalar() == v1::SCHAR || type.scalar() == v1::UCHAR) {
      if (text.size() == 1) {
        value.set_int_value(static_cast<unsigned char>(text[0]));
        if (type.scalar() != v1::UCHAR && static_cast<unsigned char>(text[0]) > 127) {
          value.set_int_value(static_cast<signed char>(text[0]));
        }
        return value;
      }
      return Invalid(text, type, "expected an integer or one character of one byte");
    } else if (type.scalar() == v1::WCHAR) {
      absl::StatusOr<std::u32string> code_points = DecodeUtf8(text);
      if (code_points.ok() && code_points->size() == 1) {
        value.set_int_value(static_cast<int64_t>((*code_points)[0]));
        return value;
      }
    }
    return Invalid(text, type, "expected an integer");
  }
  if (too_large) return Invalid(text, type, "out of range");
  if (negative) {
    if (!range.is_signed || magnitude > static_cast<uint64_t>(-(range.min + 1)) + 1) {
      return Invalid(text, type, "out of range");
    }
    value.set_int_value(magnitude == 0 ? 0 : -static_cast<int64_t>(magnitude - 1) - 1);
    return value;
  }
  if (magnitude > range.max) return Invalid(text, type, "out of range");
  if (range.is_signed) {
    value.set_int_value(static_cast<int64_t>(magnitude));
  } else {
    value.set_uint_value(magnitude);
  }
  return value;
}

}  // namespace

absl::StatusOr<v1::Value> ParseArgumentValue(const v1::Type& type, absl::string_view text,
                                             uint64_t generation) {
  v1::Value value;
  IntegerRange range;
  const v1::Scalar scalar = type.scalar();
  if (IntegerRangeOf(scalar, &range)) return ParseInteger(type, range, text);
  switch (scalar) {
    case v1::BOOL: {
      const std::string word = absl::AsciiStrToLower(text);
      if (word == "true" || word == "1") {
        value.set_bool_value(true);
      } else if (word == "false" || word == "0") {
        value.set_bool_value(false);
      } else {
        return Invalid(text, type, "expected true, false, 1 or 0");
      }
      return value;
    }
    case v1::FLOAT:
    case v1::DOUBLE:
    case v1::LONGDOUBLE: {
      const std::string word(absl::StripAsciiWhitespace(text));
      char* end = nullptr;
      errno = 0;
      const double number = std::strtod(word.c_str(), &end);
      if (word.empty() || end == nullptr || *end != '\0') {
        return Invalid(text, type, "expected a number");
      }
      // A finite number that does not fit is refused, not sent as an infinity or a zero
      // ("inf" and "nan" written as such go as they are). A long double travels as a double.
      const bool overflows = std::isfinite(number)
                                 ? scalar == v1::FLOAT && std::fabs(number) > FLT_MAX
                                 : errno == ERANGE;
      const bool underflows = number != 0 && scalar == v1::FLOAT &&
                              std::fabs(number) < static_cast<double>(FLT_TRUE_MIN) / 2;
      if (overflows || underflows || (errno == ERANGE && number == 0)) {
        return Invalid(text, type,
                       scalar == v1::LONGDOUBLE ? "out of range (a long double argument travels "
                                                  "as a double)"
                                                : "out of range");
      }
      value.set_float_value(number);
      return value;
    }
    case v1::CSTRING:
    case v1::WSTRING:
      // NULL is the null pointer, as for any other pointer (ERR_error_string(e, NULL));
      // \NULL the text NULL.
      if (text == "NULL") {
        value.mutable_pointer()->set_null(true);
        return value;
      }
      if (text == "\\NULL") text.remove_prefix(1);
      if (scalar == v1::CSTRING) {
        value.set_bytes_value(text.data(), text.size());
        return value;
      }
      if (!DecodeUtf8(text).ok()) return Invalid(text, type, "not UTF-8");
      value.set_text_value(text.data(), text.size());
      return value;
    case v1::POINTER: {
      const std::string word = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
      bool negative = false;
      uint64_t address = 0;
      bool too_large = false;
      if (word == "null") {
        value.mutable_pointer()->set_null(true);
      } else if (ParseInteger(word, &negative, &address, &too_large) && !negative) {
        if (too_large) return Invalid(text, type, "out of range");
        if (address == 0) {
          value.mutable_pointer()->set_null(true);
        } else {
          value.mutable_pointer()->mutable_remote()->set_address(address);
          value.mutable_pointer()->mutable_remote()->set_generation(generation);
        }
      } else {
        return Invalid(text, type, "expected NULL or an address such as 0x7f0012345678");
      }
      return value;
    }
    default:
      return Invalid(text, type, "this type cannot be given on the command line");
  }
}

v1::Type PromoteVariadic(const v1::Type& type) {
  v1::Type promoted = type;
  switch (type.scalar()) {
    case v1::FLOAT:
      promoted.set_scalar(v1::DOUBLE);
      break;
    case v1::BOOL:
    case v1::CHAR:
    case v1::SCHAR:
    case v1::UCHAR:
    case v1::SHORT:
    case v1::USHORT:
    case v1::INT8:
    case v1::UINT8:
    case v1::INT16:
    case v1::UINT16:
      promoted.set_scalar(v1::INT);
      break;
    default:
      break;
  }
  return promoted;
}

absl::StatusOr<v1::Call> BuildCall(const CDeclaration& declaration,
                                   const std::vector<std::string>& words, uint64_t generation) {
  const v1::Signature& signature = declaration.signature;
  const size_t fixed = signature.params_size();
  if (words.size() < fixed || (!signature.variadic() && words.size() > fixed)) {
    return ErrorStatus(
        v1::INVALID_ARGUMENT,
        absl::StrCat(declaration.name, " takes ", fixed, signature.variadic() ? " or more" : "",
                     " argument", fixed == 1 ? "" : "s", ", got ", words.size()));
  }
  v1::Call call;
  for (size_t i = 0; i < words.size(); ++i) {
    v1::Type type;
    absl::string_view text = words[i];
    if (i < fixed) {
      type = signature.params(i);
    } else {
      const size_t colon = text.find(':');
      if (colon == absl::string_view::npos) {
        return ErrorStatus(v1::INVALID_ARGUMENT,
                           absl::StrCat("variadic argument ", i + 1, " ('", text,
                                        "') needs its type: TYPE:VALUE, e.g. int:5"));
      }
      absl::StatusOr<v1::Type> declared = ParseCType(text.substr(0, colon));
      if (!declared.ok()) {
        return ErrorStatus(v1::INVALID_ARGUMENT, absl::StrCat("variadic argument ", i + 1, ": ",
                                                              RawMessage(declared.status())));
      }
      // The value is parsed as the declared type (so range checks are its own), then passed
      // as its promoted type.
      absl::StatusOr<v1::Value> value =
          ParseArgumentValue(*declared, text.substr(colon + 1), generation);
      if (!value.ok()) {
        return ErrorStatus(v1::INVALID_ARGUMENT,
                           absl::StrCat("argument ", i + 1, ": ", RawMessage(value.status())));
      }
      if (value->has_bool_value()) value->set_int_value(value->bool_value() ? 1 : 0);
      *call.add_variadic_types() = PromoteVariadic(*declared);
      *call.add_args() = *std::move(value);
      continue;
    }
    absl::StatusOr<v1::Value> value = ParseArgumentValue(type, text, generation);
    if (!value.ok()) {
      return ErrorStatus(v1::INVALID_ARGUMENT,
                         absl::StrCat("argument ", i + 1, ": ", RawMessage(value.status())));
    }
    *call.add_args() = *std::move(value);
  }
  return call;
}

}  // namespace cli
}  // namespace ffibox
