#include "core/utf8.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/utf8_sequence.h"

namespace ffibox {
namespace {

static_assert(sizeof(wchar_t) == sizeof(char32_t), "ffibox assumes a 32-bit wchar_t (Linux)");

// What Decode and Encode return for well-formed text (no bad position).
constexpr size_t kWellFormed = static_cast<size_t>(-1);

bool IsScalarValue(uint32_t cp) { return cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF); }

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Decodes `text` into `out` (room for text.size() units) and sets `*count`; returns the byte
// where the text stops being well-formed UTF-8, or kWellFormed.
template <typename Unit>
size_t Decode(absl::string_view text, Unit* out, size_t* count) {
  size_t n = 0;
  for (size_t i = 0; i < text.size();) {
    const Utf8Sequence sequence = DecodeUtf8Sequence(text.substr(i));
    if (sequence.length == 0) return i;
    out[n++] = static_cast<Unit>(sequence.code_point);
    i += sequence.length;
  }
  *count = n;
  return kWellFormed;
}

// Appends `text` to `out` as UTF-8; returns the index of the first unit that is not a Unicode
// scalar value, or kWellFormed.
size_t Encode(std::u32string_view text, std::string* out) {
  out->reserve(out->size() + text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const auto cp = static_cast<uint32_t>(text[i]);
    if (!IsScalarValue(cp)) return i;
    AppendUtf8(cp, out);
  }
  return kWellFormed;
}

}  // namespace

absl::Status DecodeUtf8(absl::string_view text, wchar_t* out, size_t* count) {
  const size_t bad = Decode(text, out, count);
  if (bad == kWellFormed) return absl::OkStatus();
  return InvalidArgumentAt("", absl::StrCat("text_value is not valid UTF-8 at byte ", bad));
}

absl::StatusOr<std::u32string> DecodeUtf8(absl::string_view text) {
  std::u32string out(text.size(), U'\0');
  size_t count = 0;
  const size_t bad = Decode(text, out.data(), &count);
  if (bad != kWellFormed) {
    return InvalidArgumentAt("", absl::StrCat("malformed UTF-8 at byte ", bad));
  }
  out.resize(count);
  return out;
}

absl::Status CheckUtf8(absl::string_view field, absl::string_view text) {
  absl::StatusOr<std::u32string> decoded = DecodeUtf8(text);
  return decoded.ok() ? absl::OkStatus() : PrefixField(decoded.status(), field);
}

bool EncodeUtf8(const std::u32string& text, std::string* out) {
  return Encode(text, out) == kWellFormed;
}

absl::StatusOr<std::string> EncodeUtf8(std::u32string_view text) {
  std::string out;
  const size_t bad = Encode(text, &out);
  if (bad != kWellFormed) {
    return InvalidArgumentAt(
        "", absl::StrCat("wide string holds U+", absl::Hex(static_cast<uint32_t>(text[bad])),
                         " at index ", bad, ", which is not a Unicode scalar value"));
  }
  return out;
}

}  // namespace ffibox
