#include "core/c_declaration.h"

#include <cctype>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/status_macros.h"

namespace ffibox {
namespace {

// Type names that stand alone (with only qualifiers beside them).
const absl::flat_hash_map<std::string, v1::Scalar>& NamedScalars() {
  static const auto* const kNamed = new absl::flat_hash_map<std::string, v1::Scalar>{
      {"_Bool", v1::BOOL},      {"bool", v1::BOOL},       {"wchar_t", v1::WCHAR},
      {"size_t", v1::SIZE_T},   {"ssize_t", v1::SSIZE_T}, {"int8_t", v1::INT8},
      {"uint8_t", v1::UINT8},   {"int16_t", v1::INT16},   {"uint16_t", v1::UINT16},
      {"int32_t", v1::INT32},   {"uint32_t", v1::UINT32}, {"int64_t", v1::INT64},
      {"uint64_t", v1::UINT64}, {"intptr_t", v1::LONG},   {"uintptr_t", v1::ULONG},
      {"ptrdiff_t", v1::LONG},  {"float", v1::FLOAT},     {"void", v1::VOID},
  };
  return *kNamed;
}

bool IsQualifier(absl::string_view word) {
  return word == "const" || word == "volatile" || word == "restrict" || word == "__restrict";
}

bool IsBuiltinWord(absl::string_view word) {
  return word == "signed" || word == "unsigned" || word == "short" || word == "long" ||
         word == "int" || word == "char" || word == "double";
}

bool IsTypeWord(absl::string_view word) {
  return IsQualifier(word) || IsBuiltinWord(word) || NamedScalars().contains(std::string(word));
}

absl::Status Invalid(absl::string_view message) {
  return ErrorStatus(v1::INVALID_ARGUMENT, message);
}

// Splits a declaration into identifiers and the punctuation * ( ) , ... ;
absl::StatusOr<std::vector<std::string>> Tokenize(absl::string_view text) {
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t end = i;
      while (end < text.size() &&
             (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_')) {
        ++end;
      }
      tokens.emplace_back(text.substr(i, end - i));
      i = end;
    } else if (text.substr(i, 3) == "...") {
      tokens.emplace_back("...");
      i += 3;
    } else if (c == '*' || c == '(' || c == ')' || c == ',' || c == ';') {
      tokens.emplace_back(1, c);
      ++i;
    } else {
      // Escaped: a lone byte of a multi-byte character is not valid UTF-8, which a
      // v1::Error message must be.
      return Invalid(absl::StrCat("unexpected '", absl::CHexEscape(text.substr(i, 1)),
                                  "' at position ", i, " of the declaration"));
    }
  }
  return tokens;
}

// Resolves the specifier words of one type (qualifiers already dropped) to a scalar.
absl::StatusOr<v1::Scalar> ScalarOfWords(const std::vector<std::string>& words) {
  if (words.empty()) return Invalid("missing type");
  const std::string spelled = [&] {
    std::string joined;
    for (const std::string& w : words) absl::StrAppend(&joined, joined.empty() ? "" : " ", w);
    return joined;
  }();
  if (words.size() == 1) {
    auto named = NamedScalars().find(words[0]);
    if (named != NamedScalars().end()) return named->second;
  }
  int longs = 0, shorts = 0, signs = 0, unsigneds = 0, ints = 0, chars = 0, doubles = 0;
  for (const std::string& w : words) {
    if (w == "long") {
      ++longs;
    } else if (w == "short") {
      ++shorts;
    } else if (w == "signed") {
      ++signs;
    } else if (w == "unsigned") {
      ++unsigneds;
    } else if (w == "int") {
      ++ints;
    } else if (w == "char") {
      ++chars;
    } else if (w == "double") {
      ++doubles;
    } else {
      return Invalid(absl::StrCat("unknown type '", spelled, "'"));
    }
  }
  const bool valid_counts = signs + unsigneds <= 1 && ints <= 1 && chars <= 1 && doubles <= 1 &&
                            shorts <= 1 && longs <= 2 && !(shorts && longs);
  if (!valid_counts) return Invalid(absl::StrCat("invalid type '", spelled, "'"));
  if (doubles) {
    if (signs || unsigneds || ints || chars || shorts || longs > 1) {
      return Invalid(absl::StrCat("invalid type '", spelled, "'"));
    }
    return longs ? v1::LONGDOUBLE : v1::DOUBLE;
  }
  if (chars) {
    if (ints || shorts || longs) return Invalid(absl::StrCat("invalid type '", spelled, "'"));
    return unsigneds ? v1::UCHAR : signs ? v1::SCHAR : v1::CHAR;
  }
  if (shorts) return unsigneds ? v1::USHORT : v1::SHORT;
  if (longs == 2) return unsigneds ? v1::ULONGLONG : v1::LONGLONG;
  if (longs == 1) return unsigneds ? v1::ULONG : v1::LONG;
  return unsigneds ? v1::UINT : v1::INT;
}

bool IsIdentifier(absl::string_view token) {
  return !token.empty() && (std::isalpha(static_cast<unsigned char>(token[0])) || token[0] == '_');
}

// How many '*'s follow tokens[*pos...] (with qualifiers among them), read past them.
int ReadStars(const std::vector<std::string>& tokens, size_t* pos) {
  int stars = 0;
  while (*pos < tokens.size() && (tokens[*pos] == "*" || IsQualifier(tokens[*pos]))) {
    if (tokens[*pos] == "*") ++stars;
    ++*pos;
  }
  return stars;
}

// A type the parser knows no scalar of, at tokens[*pos] after its qualifiers: `struct tag`,
// `union tag` or a typedef name (`FILE`, `sqlite3`) is opaque, so only a pointer to one is
// understood (a void*); `enum tag` is an int. An error says what to write instead.
absl::StatusOr<v1::Type> ParseOtherTypeAt(const std::vector<std::string>& tokens, size_t* pos) {
  const std::string& first = tokens[*pos];
  std::string spelled = first;
  ++*pos;
  const bool tagged = first == "struct" || first == "union" || first == "enum";
  if (tagged) {
    if (*pos >= tokens.size() || !IsIdentifier(tokens[*pos])) {
      return Invalid(absl::StrCat("expected a tag after '", first, "'"));
    }
    absl::StrAppend(&spelled, " ", tokens[(*pos)++]);
  }
  while (*pos < tokens.size() && IsQualifier(tokens[*pos])) ++*pos;
  const int stars = ReadStars(tokens, pos);
  v1::Type type;
  if (stars > 0) {
    type.set_scalar(v1::POINTER);
  } else if (first == "enum") {
    type.set_scalar(v1::INT);
  } else if (tagged) {
    return Invalid(absl::StrCat("'", spelled,
                                "' by value cannot be said in C text: describe it as a "
                                "struct type (docs/protocol.md, Declarations)"));
  } else {
    return Invalid(absl::StrCat("unknown type '", spelled,
                                "': spell a typedef of a number as its C type (unsigned long, "
                                "int64_t); a pointer to an unknown type ('",
                                spelled, " *') is a void*"));
  }
  return type;
}

// Reads one type (specifiers, then '*'s with optional qualifiers) from tokens[*pos...].
absl::StatusOr<v1::Type> ParseTypeAt(const std::vector<std::string>& tokens, size_t* pos) {
  std::vector<std::string> words;
  while (*pos < tokens.size() && IsTypeWord(tokens[*pos])) {
    if (!IsQualifier(tokens[*pos])) words.push_back(tokens[*pos]);
    ++*pos;
  }
  if (words.empty()) {
    if (*pos < tokens.size() && IsIdentifier(tokens[*pos])) return ParseOtherTypeAt(tokens, pos);
    return Invalid(*pos < tokens.size() ? absl::StrCat("unknown type '", tokens[*pos], "'")
                                        : std::string("missing type"));
  }
  absl::StatusOr<v1::Scalar> scalar = ScalarOfWords(words);
  if (!scalar.ok()) return scalar.status();
  const int stars = ReadStars(tokens, pos);
  v1::Type type;
  if (stars == 0) {
    type.set_scalar(*scalar);
  } else if (stars == 1 && *scalar == v1::CHAR) {
    type.set_scalar(v1::CSTRING);
  } else if (stars == 1 && *scalar == v1::WCHAR) {
    type.set_scalar(v1::WSTRING);
  } else {
    type.set_scalar(v1::POINTER);
  }
  return type;
}

}  // namespace

absl::StatusOr<v1::Type> ParseCType(absl::string_view text) {
  absl::StatusOr<std::vector<std::string>> tokens = Tokenize(text);
  if (!tokens.ok()) return tokens.status();
  size_t pos = 0;
  absl::StatusOr<v1::Type> type = ParseTypeAt(*tokens, &pos);
  if (!type.ok()) return type.status();
  if (pos != tokens->size()) {
    return Invalid(absl::StrCat("unexpected '", (*tokens)[pos], "' in type '", text, "'"));
  }
  if (type->scalar() == v1::VOID) return Invalid("void is not a value type");
  return type;
}

absl::StatusOr<CDeclaration> ParseCDeclaration(absl::string_view text) {
  absl::StatusOr<std::vector<std::string>> tokens_or = Tokenize(text);
  if (!tokens_or.ok()) return tokens_or.status();
  std::vector<std::string> tokens = *std::move(tokens_or);
  if (!tokens.empty() && tokens.back() == ";") tokens.pop_back();

  size_t pos = 0;
  absl::StatusOr<v1::Type> result = ParseTypeAt(tokens, &pos);
  if (!result.ok()) return result.status();
  CDeclaration declaration;
  if (pos >= tokens.size() || IsTypeWord(tokens[pos]) ||
      !(std::isalpha(static_cast<unsigned char>(tokens[pos][0])) || tokens[pos][0] == '_')) {
    return Invalid(
        absl::StrCat("expected the function's name after its result type in '", text, "'"));
  }
  declaration.name = tokens[pos++];
  if (result->scalar() != v1::VOID) *declaration.signature.mutable_result() = *result;
  if (pos >= tokens.size() || tokens[pos] != "(") {
    return Invalid(absl::StrCat("expected '(' after ", declaration.name));
  }
  ++pos;
  // "(void)" and "()" both declare no parameters.
  if (pos + 1 < tokens.size() && tokens[pos] == "void" && tokens[pos + 1] == ")") ++pos;
  while (pos < tokens.size() && tokens[pos] != ")") {
    if (tokens[pos] == "...") {
      if (declaration.signature.params_size() == 0) {
        return Invalid("a variadic function needs at least one fixed parameter");
      }
      declaration.signature.set_variadic(true);
      ++pos;
      break;
    }
    const size_t index = declaration.signature.params_size();
    absl::StatusOr<v1::Type> param = ParseTypeAt(tokens, &pos);
    if (!param.ok()) {
      return PrefixField(param.status(), absl::StrCat("params[", index, "]"));
    }
    if (param->scalar() == v1::VOID) {
      return Invalid(
          absl::StrCat("parameter ", index + 1, " of ", declaration.name, " cannot be void"));
    }
    *declaration.signature.add_params() = *param;
    // An optional parameter name.
    if (pos < tokens.size() && !IsTypeWord(tokens[pos]) &&
        (std::isalpha(static_cast<unsigned char>(tokens[pos][0])) || tokens[pos][0] == '_')) {
      ++pos;
    }
    if (pos < tokens.size() && tokens[pos] == ",") {
      ++pos;
      if (pos < tokens.size() && tokens[pos] == ")") return Invalid("trailing ',' in parameters");
    } else if (pos < tokens.size() && tokens[pos] != ")") {
      return Invalid(
          absl::StrCat("unexpected '", tokens[pos], "' in the parameters of ", declaration.name));
    }
  }
  if (pos >= tokens.size() || tokens[pos] != ")") {
    return Invalid(absl::StrCat("missing ')' after the parameters of ", declaration.name));
  }
  if (++pos != tokens.size()) {
    return Invalid(absl::StrCat("unexpected '", tokens[pos], "' after the declaration"));
  }
  return declaration;
}

absl::StatusOr<v1::DeclarationParsed> ParseDeclarationRequest(const v1::ParseDeclaration& request,
                                                              const TypeLimits& limits) {
  constexpr absl::string_view kField = "parse_declaration.declaration";
  const std::string& text = request.declaration();
  if (text.size() > kMaxCDeclarationBytes) {
    return InvalidArgumentAt(kField,
                             absl::StrCat("the declaration has ", text.size(), " bytes; at most ",
                                          kMaxCDeclarationBytes, " are accepted"));
  }
  absl::StatusOr<CDeclaration> parsed = ParseCDeclaration(text);
  if (!parsed.ok()) return PrefixField(parsed.status(), kField);
  // Refuses more parameters than a call may have arguments.
  FFIBOX_RETURN_IF_ERROR(ValidateSignature(parsed->signature, limits, kField));
  v1::DeclarationParsed answer;
  answer.set_name(std::move(parsed->name));
  *answer.mutable_signature() = std::move(parsed->signature);
  return answer;
}

std::string CTypeName(const v1::Type& type) {
  switch (type.scalar()) {
    case v1::VOID:
      return "void";
    case v1::BOOL:
      return "_Bool";
    case v1::CHAR:
      return "char";
    case v1::SCHAR:
      return "signed char";
    case v1::UCHAR:
      return "unsigned char";
    case v1::SHORT:
      return "short";
    case v1::USHORT:
      return "unsigned short";
    case v1::INT:
      return "int";
    case v1::UINT:
      return "unsigned int";
    case v1::LONG:
      return "long";
    case v1::ULONG:
      return "unsigned long";
    case v1::LONGLONG:
      return "long long";
    case v1::ULONGLONG:
      return "unsigned long long";
    case v1::INT8:
      return "int8_t";
    case v1::UINT8:
      return "uint8_t";
    case v1::INT16:
      return "int16_t";
    case v1::UINT16:
      return "uint16_t";
    case v1::INT32:
      return "int32_t";
    case v1::UINT32:
      return "uint32_t";
    case v1::INT64:
      return "int64_t";
    case v1::UINT64:
      return "uint64_t";
    case v1::SIZE_T:
      return "size_t";
    case v1::SSIZE_T:
      return "ssize_t";
    case v1::FLOAT:
      return "float";
    case v1::DOUBLE:
      return "double";
    case v1::LONGDOUBLE:
      return "long double";
    case v1::WCHAR:
      return "wchar_t";
    case v1::POINTER:
      return "void*";
    case v1::CSTRING:
      return "char*";
    case v1::WSTRING:
      return "wchar_t*";
    default:
      return "?";
  }
}

}  // namespace ffibox
