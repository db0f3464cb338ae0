// Fuzzes the `ffibox call` command line's C declaration parser (core/c_declaration.h)
// with any text.
//
// Checks that ParseCDeclaration and ParseCType answer every text with a result or an
// INVALID_ARGUMENT that survives the trip into a v1::Error, and that what they accept is
// something the server accepts too (every type passes ValidateType, nothing is void but an
// unset result, the name is an identifier) and means what it says: printing the result
// back as C (CTypeName) and parsing that again gives the same signature or type.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/c_declaration.h"
#include "core/errors.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"
#include "fuzz/fuzz_checks.h"

namespace ffibox {
namespace {

using fuzz::CheckTypedError;

bool SameMessage(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return a.SerializeAsString() == b.SerializeAsString();
}

void CheckParsedType(const v1::Type& type, const char* what) {
  FUZZ_CHECK(type.kind_case() == v1::Type::kScalar, what, ": not a scalar");
  FUZZ_CHECK(type.scalar() != v1::VOID, what, ": void accepted as a value type");
  absl::Status valid = ValidateType(type, TypeLimits(), what);
  FUZZ_CHECK(valid.ok(), what, ": the server would refuse the type: ", valid.ToString());
  FUZZ_CHECK(CTypeName(type) != "?", what, ": no C name for ", type.ShortDebugString());
}

void FuzzDeclaration(absl::string_view text) {
  absl::StatusOr<CDeclaration> declaration = ParseCDeclaration(text);
  if (!declaration.ok()) {
    CheckTypedError(declaration.status(), {v1::INVALID_ARGUMENT}, "ParseCDeclaration",
                    /*needs_field=*/false);
    return;
  }
  const std::string& name = declaration->name;
  FUZZ_CHECK(!name.empty() && (std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_'),
             "function name '", name, "'");
  for (char c : name) {
    FUZZ_CHECK(std::isalnum(static_cast<unsigned char>(c)) || c == '_', "function name '", name,
               "'");
  }
  const v1::Signature& signature = declaration->signature;
  if (signature.has_result()) CheckParsedType(signature.result(), "result");
  for (const v1::Type& param : signature.params()) CheckParsedType(param, "parameter");
  FUZZ_CHECK(!signature.variadic() || signature.params_size() > 0, "variadic without parameters");

  // The same declaration, as C again.
  std::string again =
      absl::StrCat(signature.has_result() ? CTypeName(signature.result()) : "void", " ", name, "(");
  for (int i = 0; i < signature.params_size(); ++i) {
    absl::StrAppend(&again, i == 0 ? "" : ", ", CTypeName(signature.params(i)));
  }
  absl::StrAppend(&again, signature.variadic()      ? ", ...)"
                          : signature.params_size() ? ")"
                                                    : "void)");
  absl::StatusOr<CDeclaration> reparsed = ParseCDeclaration(again);
  FUZZ_CHECK(reparsed.ok(), "'", again, "' does not parse: ", reparsed.status().ToString());
  FUZZ_CHECK(reparsed->name == name && SameMessage(reparsed->signature, signature), "'", again,
             "' parses differently from the text it was printed from");
}

void FuzzRequest(absl::string_view text) {
  v1::ParseDeclaration request;
  request.set_declaration(std::string(text));
  absl::StatusOr<v1::DeclarationParsed> answer = ParseDeclarationRequest(request, TypeLimits());
  absl::StatusOr<CDeclaration> direct = ParseCDeclaration(text);
  if (!answer.ok()) {
    CheckTypedError(answer.status(), {v1::INVALID_ARGUMENT}, "ParseDeclarationRequest",
                    /*needs_field=*/true);
    const std::string field = ToProtoError(answer.status()).field();
    FUZZ_CHECK(absl::StartsWith(field, "parse_declaration.declaration"), "field '", field, "'");
    FUZZ_CHECK(text.size() > kMaxCDeclarationBytes || !direct.ok() ||
                   static_cast<size_t>(direct->signature.params_size()) > TypeLimits().max_args,
               "the op refused a declaration the parser accepts: ", answer.status().ToString());
    return;
  }
  FUZZ_CHECK(text.size() <= kMaxCDeclarationBytes, "the op accepted ", text.size(), " bytes");
  FUZZ_CHECK(direct.ok() && direct->name == answer->name() &&
                 SameMessage(direct->signature, answer->signature()),
             "the op and the parser disagree");
  absl::Status valid = ValidateSignature(answer->signature(), TypeLimits(), "signature");
  FUZZ_CHECK(valid.ok(), "the server would refuse the op's signature: ", valid.ToString());
}

void FuzzType(absl::string_view text) {
  absl::StatusOr<v1::Type> type = ParseCType(text);
  if (!type.ok()) {
    CheckTypedError(type.status(), {v1::INVALID_ARGUMENT}, "ParseCType", /*needs_field=*/false);
    return;
  }
  CheckParsedType(*type, "ParseCType");
  absl::StatusOr<v1::Type> again = ParseCType(CTypeName(*type));
  FUZZ_CHECK(again.ok() && SameMessage(*again, *type), "'", CTypeName(*type),
             "' does not parse back to ", type->ShortDebugString());
}

}  // namespace
}  // namespace ffibox

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  ffibox::FuzzDeclaration(text);
  ffibox::FuzzType(text);
  ffibox::FuzzRequest(text);
  return 0;
}
