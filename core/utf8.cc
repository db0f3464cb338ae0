#include "core/utf8.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace ffibox {
namespace {

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

}  // namespace

absl::Status DecodeUtf8(absl::string_view text, wchar_t* out, size_t* count) {
  size_t n = 0;
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    uint32_t cp = 0;
    size_t extra = 0;
    uint32_t min = 0;
    if (lead < 0x80) {
      cp = lead;
    } else if ((lead & 0xE0) == 0xC0) {
      cp = lead & 0x1F, extra = 1, min = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      cp = lead & 0x0F, extra = 2, min = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      cp = lead & 0x07, extra = 3, min = 0x10000;
    } else {
      return InvalidArgumentAt("", absl::StrCat("text_value is not valid UTF-8 at byte ", i));
    }
    if (text.size() - i <= extra) {
      return InvalidArgumentAt("", absl::StrCat("text_value is not valid UTF-8 at byte ", i));
    }
    for (size_t k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) {
        return InvalidArgumentAt("", absl::StrCat("text_value is not valid UTF-8 at byte ", i));
      }
      cp = (cp << 6) | (next & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return InvalidArgumentAt("", absl::StrCat("text_value is not valid UTF-8 at byte ", i));
    }
    out[n++] = static_cast<wchar_t>(cp);
    i += extra + 1;
  }
  *count = n;
  return absl::OkStatus();
}

bool EncodeUtf8(const std::u32string& text, std::string* out) {
  out->reserve(out->size() + text.size());
  for (char32_t c : text) {
    const auto cp = static_cast<uint32_t>(c);
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    AppendUtf8(cp, out);
  }
  return true;
}

}  // namespace ffibox
