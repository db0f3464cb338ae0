#include "client/cli/header_parser.h"

#include <clang-c/Index.h>
#include <limits.h>
#include <stdlib.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace ffibox {
namespace cli {
namespace {

// The file clang compiles: it includes the named headers, then (second pass) one variable per
// macro whose value is wanted. It exists only in memory.
constexpr char kMainFile[] = "ffibox-bindgen-main.c";
constexpr char kMacroPrefix[] = "ffibox_bindgen_macro_";

std::string TakeString(CXString text) {
  const char* chars = clang_getCString(text);
  std::string result = chars != nullptr ? chars : "";
  clang_disposeString(text);
  return result;
}

std::string Spelling(CXCursor cursor) { return TakeString(clang_getCursorSpelling(cursor)); }

struct IndexDeleter {
  void operator()(void* index) const { clang_disposeIndex(index); }
};
struct UnitDeleter {
  void operator()(CXTranslationUnitImpl* unit) const { clang_disposeTranslationUnit(unit); }
};
using UnitPtr = std::unique_ptr<CXTranslationUnitImpl, UnitDeleter>;

std::string RealPath(const std::string& path) {
  char buffer[PATH_MAX];
  return realpath(path.c_str(), buffer) != nullptr ? std::string(buffer) : path;
}

// The path of the file `cursor` is spelled in ("" for built-in declarations).
std::string FileOf(CXCursor cursor) {
  CXFile file = nullptr;
  clang_getSpellingLocation(clang_getCursorLocation(cursor), &file, nullptr, nullptr, nullptr);
  return file != nullptr ? RealPath(TakeString(clang_getFileName(file))) : "";
}

absl::StatusOr<UnitPtr> Parse(CXIndex index, const std::vector<std::string>& args,
                              const std::string& main_text, unsigned options) {
  std::vector<const char*> argv;
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  CXUnsavedFile unsaved{kMainFile, main_text.c_str(), static_cast<unsigned long>(main_text.size())};
  CXTranslationUnit unit = nullptr;
  CXErrorCode code = clang_parseTranslationUnit2(
      index, kMainFile, argv.data(), static_cast<int>(argv.size()), &unsaved, 1, options, &unit);
  if (code != CXError_Success || unit == nullptr) {
    return absl::InternalError(
        absl::StrCat("libclang could not parse the headers (error ", static_cast<int>(code), ")"));
  }
  return UnitPtr(unit);
}

// clang's errors, one per line, or "" when there are none.
std::string ErrorsOf(CXTranslationUnit unit) {
  std::vector<std::string> errors;
  for (unsigned i = 0; i < clang_getNumDiagnostics(unit); ++i) {
    CXDiagnostic diagnostic = clang_getDiagnostic(unit, i);
    if (clang_getDiagnosticSeverity(diagnostic) >= CXDiagnostic_Error) {
      errors.push_back(
          TakeString(clang_formatDiagnostic(diagnostic, clang_defaultDiagnosticDisplayOptions())));
    }
    clang_disposeDiagnostic(diagnostic);
  }
  return absl::StrJoin(errors, "\n");
}

bool IsAnonymousName(const std::string& name) {
  return name.empty() || absl::StrContains(name, "(unnamed") ||
         absl::StrContains(name, "(anonymous");
}

// Collects the declarations of one translation unit into a HeaderModel.
class ModelBuilder {
 public:
  explicit ModelBuilder(std::set<std::string> named_files) : named_files_(std::move(named_files)) {}

  // Visits the top-level declarations (and records defined inside records).
  void VisitUnit(CXTranslationUnit unit) {
    clang_visitChildren(clang_getTranslationUnitCursor(unit), &ModelBuilder::VisitTop, this);
  }

  // Names of the object-like macros the named headers define, in order.
  const std::vector<std::string>& macro_names() const { return macro_names_; }

  // Marks what the named declarations use and names anonymous records.
  HeaderModel Finish();

 private:
  static CXChildVisitResult VisitTop(CXCursor cursor, CXCursor, CXClientData data) {
    static_cast<ModelBuilder*>(data)->Declaration(cursor);
    return CXChildVisit_Continue;
  }

  bool IsNamed(CXCursor cursor) const { return named_files_.count(FileOf(cursor)) > 0; }

  void Declaration(CXCursor cursor) {
    switch (clang_getCursorKind(cursor)) {
      case CXCursor_StructDecl:
      case CXCursor_UnionDecl: {
        int index = RecordIndex(cursor);
        if (IsNamed(cursor)) named_records_.insert(index);
        clang_visitChildren(cursor, &ModelBuilder::VisitTop, this);  // nested definitions
        break;
      }
      case CXCursor_EnumDecl: {
        int index = EnumIndex(cursor);
        if (IsNamed(cursor)) named_enums_.insert(index);
        break;
      }
      case CXCursor_TypedefDecl: {
        absl::StatusOr<int> index = TypedefIndex(cursor);
        if (!index.ok()) {
          if (IsNamed(cursor)) Skip(cursor, index.status());
        } else if (IsNamed(cursor)) {
          named_typedefs_.insert(*index);
        }
        break;
      }
      case CXCursor_FunctionDecl:
        if (IsNamed(cursor)) AddFunction(cursor);
        break;
      case CXCursor_VarDecl:
        if (IsNamed(cursor)) AddVariable(cursor);
        break;
      case CXCursor_MacroDefinition:
        if (IsNamed(cursor) && !clang_Cursor_isMacroFunctionLike(cursor) &&
            !clang_Cursor_isMacroBuiltin(cursor)) {
          std::string name = Spelling(cursor);
          if (seen_macros_.insert(name).second) macro_names_.push_back(name);
        }
        break;
      default:
        break;
    }
  }

  void Skip(CXCursor cursor, const absl::Status& why) {
    skipped_.push_back(absl::StrCat(Spelling(cursor), ": ", why.message()));
  }

  absl::StatusOr<CType> Convert(CXType type) {
    CType result;
    result.is_const = clang_isConstQualifiedType(type) != 0;
    switch (type.kind) {
      case CXType_Elaborated: {
        FFIBOX_ASSIGN_OR_RETURN(CType named, Convert(clang_Type_getNamedType(type)));
        named.is_const = named.is_const || result.is_const;
        return named;
      }
      case CXType_Typedef: {
        CXCursor declaration = clang_getTypeDeclaration(type);
        const std::string name = Spelling(declaration);
        if (name == "__builtin_va_list" || name == "va_list" || name == "__gnuc_va_list") {
          result.kind = CType::Kind::kVaList;
          return result;
        }
        if (name == "wchar_t") {  // a typedef of int in C: ctypes has a type for it
          result.kind = CType::Kind::kScalar;
          result.scalar = Scalar::kWchar;
          return result;
        }
        FFIBOX_ASSIGN_OR_RETURN(result.index, TypedefIndex(declaration));
        result.kind = CType::Kind::kTypedef;
        return result;
      }
      case CXType_Void:
        result.kind = CType::Kind::kVoid;
        return result;
      case CXType_Pointer:
      case CXType_ConstantArray:
      case CXType_IncompleteArray: {
        const bool pointer = type.kind == CXType_Pointer;
        CXType inner = pointer ? clang_getPointeeType(type) : clang_getArrayElementType(type);
        if (pointer && clang_getCanonicalType(inner).kind == CXType_Record &&
            Spelling(clang_getTypeDeclaration(clang_getCanonicalType(inner))) == "__va_list_tag") {
          result.kind = CType::Kind::kVaList;  // a va_list parameter, decayed
          return result;
        }
        FFIBOX_ASSIGN_OR_RETURN(CType element, Convert(inner));
        result.kind = pointer ? CType::Kind::kPointer : CType::Kind::kArray;
        if (type.kind == CXType_ConstantArray) {
          result.length = static_cast<uint64_t>(clang_getArraySize(type));
        }
        result.elements.push_back(std::move(element));
        return result;
      }
      case CXType_Record:
        result.kind = CType::Kind::kRecord;
        result.index = RecordIndex(clang_getTypeDeclaration(type));
        return result;
      case CXType_Enum:
        result.kind = CType::Kind::kEnum;
        result.index = EnumIndex(clang_getTypeDeclaration(type));
        return result;
      case CXType_FunctionProto:
      case CXType_FunctionNoProto: {
        result.kind = CType::Kind::kFunction;
        FFIBOX_ASSIGN_OR_RETURN(CType returned, Convert(clang_getResultType(type)));
        result.elements.push_back(std::move(returned));
        const int count = clang_getNumArgTypes(type);
        for (int i = 0; i < count; ++i) {
          FFIBOX_ASSIGN_OR_RETURN(CType param, Convert(clang_getArgType(type, i)));
          result.elements.push_back(AdjustedParameter(std::move(param)));
        }
        // `int f()` declares no parameters: calls pass what they pass, as for `...`.
        result.variadic =
            type.kind == CXType_FunctionNoProto || clang_isFunctionTypeVariadic(type) != 0;
        return result;
      }
      default:
        break;
    }
    absl::StatusOr<Scalar> scalar = ScalarOf(type);
    if (!scalar.ok()) return scalar.status();
    result.kind = CType::Kind::kScalar;
    result.scalar = *scalar;
    return result;
  }

  // A parameter as C adjusts it: `T a[N]` is a `T*`, a function type a pointer to it.
  static CType AdjustedParameter(CType param) {
    if (param.kind != CType::Kind::kArray && param.kind != CType::Kind::kFunction) return param;
    CType pointer;
    pointer.kind = CType::Kind::kPointer;
    if (param.kind == CType::Kind::kArray) {
      CType element = std::move(param.elements[0]);
      element.is_const = element.is_const || param.is_const;
      pointer.elements.push_back(std::move(element));
    } else {
      pointer.elements.push_back(std::move(param));
    }
    return pointer;
  }

  static absl::StatusOr<Scalar> ScalarOf(CXType type) {
    switch (type.kind) {
      case CXType_Bool:
        return Scalar::kBool;
      case CXType_Char_S:
      case CXType_Char_U:
        return Scalar::kChar;
      case CXType_SChar:
        return Scalar::kSignedChar;
      case CXType_UChar:
        return Scalar::kUnsignedChar;
      case CXType_Short:
        return Scalar::kShort;
      case CXType_UShort:
        return Scalar::kUnsignedShort;
      case CXType_Int:
        return Scalar::kInt;
      case CXType_UInt:
        return Scalar::kUnsignedInt;
      case CXType_Long:
        return Scalar::kLong;
      case CXType_ULong:
        return Scalar::kUnsignedLong;
      case CXType_LongLong:
        return Scalar::kLongLong;
      case CXType_ULongLong:
        return Scalar::kUnsignedLongLong;
      case CXType_Float:
        return Scalar::kFloat;
      case CXType_Double:
        return Scalar::kDouble;
      case CXType_LongDouble:
        return Scalar::kLongDouble;
      case CXType_WChar:
        return Scalar::kWchar;
      default:
        return absl::UnimplementedError(absl::StrCat(
            "type ", TakeString(clang_getTypeSpelling(type)), " has no ffibox equivalent"));
    }
  }

  // The index of the record `cursor` declares, adding it (and its fields) when new.
  int RecordIndex(CXCursor cursor) {
    CXCursor canonical = clang_getCanonicalCursor(cursor);
    const std::string usr = TakeString(clang_getCursorUSR(canonical));
    if (auto it = records_by_usr_.find(usr); it != records_by_usr_.end()) {
      int index = it->second;
      if (!model_.records[index].complete) FillRecord(index, cursor);
      return index;
    }
    const int index = static_cast<int>(model_.records.size());
    records_by_usr_[usr] = index;
    Record record;
    record.is_union = clang_getCursorKind(cursor) == CXCursor_UnionDecl;
    record.name = Spelling(canonical);
    record.anonymous = IsAnonymousName(record.name);
    if (record.anonymous) record.name.clear();
    model_.records.push_back(std::move(record));
    FillRecord(index, cursor);
    return index;
  }

  struct FieldVisit {
    ModelBuilder* builder;
    int record;
    uint64_t natural_alignment = 1;
  };

  static CXVisitorResult VisitField(CXCursor field, CXClientData data) {
    auto* visit = static_cast<FieldVisit*>(data);
    ModelBuilder* self = visit->builder;
    RecordField result;
    result.name = Spelling(field);
    if (IsAnonymousName(result.name)) result.name.clear();
    CXType type = clang_getCursorType(field);
    absl::StatusOr<CType> converted = self->Convert(type);
    if (!converted.ok()) {
      self->unusable_records_[visit->record] = std::string(converted.status().message());
      return CXVisit_Break;
    }
    result.type = *std::move(converted);
    const long long offset = clang_Cursor_getOffsetOfField(field);
    result.bit_offset = offset >= 0 ? static_cast<uint64_t>(offset) : 0;
    if (clang_Cursor_isBitField(field)) result.bit_width = clang_getFieldDeclBitWidth(field);
    result.size = static_cast<uint64_t>(std::max<long long>(clang_Type_getSizeOf(type), 0));
    const long long alignment = clang_Type_getAlignOf(type);
    if (alignment > 0 && static_cast<uint64_t>(alignment) > visit->natural_alignment &&
        !(result.bit_width >= 0 && result.name.empty())) {
      visit->natural_alignment = static_cast<uint64_t>(alignment);
    }
    self->model_.records[visit->record].fields.push_back(std::move(result));
    return CXVisit_Continue;
  }

  void FillRecord(int index, CXCursor cursor) {
    CXCursor definition = clang_getCursorDefinition(cursor);
    if (clang_Cursor_isNull(definition)) return;
    model_.records[index].complete = true;  // before the fields: they may point back here
    if (IsNamed(definition)) named_records_.insert(index);
    CXType type = clang_getCursorType(definition);
    FieldVisit visit{this, index};
    clang_Type_visitFields(type, &ModelBuilder::VisitField, &visit);
    Record& record = model_.records[index];
    record.size = static_cast<uint64_t>(std::max<long long>(clang_Type_getSizeOf(type), 0));
    record.alignment = static_cast<uint64_t>(std::max<long long>(clang_Type_getAlignOf(type), 1));
    record.natural_alignment = visit.natural_alignment;
    if (record.alignment < visit.natural_alignment) record.pack = record.alignment;
  }

  int EnumIndex(CXCursor cursor) {
    CXCursor canonical = clang_getCanonicalCursor(cursor);
    const std::string usr = TakeString(clang_getCursorUSR(canonical));
    if (auto it = enums_by_usr_.find(usr); it != enums_by_usr_.end()) return it->second;
    const int index = static_cast<int>(model_.enums.size());
    enums_by_usr_[usr] = index;
    Enum result;
    result.name = Spelling(canonical);
    if (IsAnonymousName(result.name)) result.name.clear();
    CXCursor definition = clang_getCursorDefinition(cursor);
    if (!clang_Cursor_isNull(definition)) {
      absl::StatusOr<Scalar> integer = ScalarOf(clang_getEnumDeclIntegerType(definition));
      result.integer_type = integer.ok() ? *integer : Scalar::kUnsignedInt;
      const bool is_unsigned = result.integer_type == Scalar::kUnsignedInt ||
                               result.integer_type == Scalar::kUnsignedLong ||
                               result.integer_type == Scalar::kUnsignedLongLong;
      std::pair<Enum*, bool> target(&result, is_unsigned);
      clang_visitChildren(
          definition,
          [](CXCursor child, CXCursor, CXClientData data) {
            auto* target = static_cast<std::pair<Enum*, bool>*>(data);
            if (clang_getCursorKind(child) == CXCursor_EnumConstantDecl) {
              EnumConstant constant;
              constant.name = Spelling(child);
              constant.is_unsigned = target->second;
              constant.value =
                  target->second
                      ? static_cast<int64_t>(clang_getEnumConstantDeclUnsignedValue(child))
                      : clang_getEnumConstantDeclValue(child);
              target->first->constants.push_back(std::move(constant));
            }
            return CXChildVisit_Continue;
          },
          &target);
    }
    model_.enums.push_back(std::move(result));
    return index;
  }

  absl::StatusOr<int> TypedefIndex(CXCursor cursor) {
    CXCursor canonical = clang_getCanonicalCursor(cursor);
    const std::string usr = TakeString(clang_getCursorUSR(canonical));
    if (auto it = typedefs_by_usr_.find(usr); it != typedefs_by_usr_.end()) return it->second;
    FFIBOX_ASSIGN_OR_RETURN(CType underlying,
                            Convert(clang_getTypedefDeclUnderlyingType(canonical)));
    // Converting the underlying type may have met this typedef already (through a record).
    if (auto it = typedefs_by_usr_.find(usr); it != typedefs_by_usr_.end()) return it->second;
    const int index = static_cast<int>(model_.typedefs.size());
    typedefs_by_usr_[usr] = index;
    model_.typedefs.push_back(Typedef{Spelling(canonical), std::move(underlying)});
    return index;
  }

  void AddFunction(CXCursor cursor) {
    const std::string name = Spelling(cursor);
    if (clang_Cursor_getStorageClass(cursor) == CX_SC_Static || !functions_.insert(name).second) {
      return;  // static functions are not exported; a redeclaration adds nothing
    }
    // A function declared through a typedef of its type (`fn_t f;`) has the typedef's type.
    CXType declared = clang_getCursorType(cursor);
    if (declared.kind != CXType_FunctionProto && declared.kind != CXType_FunctionNoProto) {
      declared = clang_getCanonicalType(declared);
    }
    absl::StatusOr<CType> type = Convert(declared);
    if (type.ok() && type->kind != CType::Kind::kFunction) {
      type = absl::UnimplementedError("not a function type");
    }
    if (!type.ok()) {
      Skip(cursor, type.status());
      return;
    }
    Function function;
    function.name = name;
    function.result = type->elements[0];
    function.params.assign(type->elements.begin() + 1, type->elements.end());
    function.variadic = type->variadic;
    for (int i = 0; i < static_cast<int>(function.params.size()); ++i) {
      CXCursor argument = clang_Cursor_getArgument(cursor, static_cast<unsigned>(i));
      function.param_names.push_back(clang_Cursor_isNull(argument) ? "" : Spelling(argument));
    }
    model_.functions.push_back(std::move(function));
  }

  void AddVariable(CXCursor cursor) {
    const CX_StorageClass storage = clang_Cursor_getStorageClass(cursor);
    const std::string name = Spelling(cursor);
    if (storage == CX_SC_Static || !variables_.insert(name).second) return;
    absl::StatusOr<CType> type = Convert(clang_getCursorType(cursor));
    if (!type.ok()) {
      Skip(cursor, type.status());
      return;
    }
    model_.variables.push_back(Variable{name, *std::move(type)});
  }

  void MarkType(const CType& type);

  std::set<std::string> named_files_;
  HeaderModel model_;
  absl::flat_hash_map<std::string, int> records_by_usr_;
  absl::flat_hash_map<std::string, int> enums_by_usr_;
  absl::flat_hash_map<std::string, int> typedefs_by_usr_;
  absl::flat_hash_map<int, std::string> unusable_records_;
  std::set<int> named_records_, named_enums_, named_typedefs_;
  absl::flat_hash_set<std::string> functions_, variables_, seen_macros_;
  std::vector<std::string> macro_names_;
  std::vector<std::string> skipped_;
};

void ModelBuilder::MarkType(const CType& type) {
  switch (type.kind) {
    case CType::Kind::kRecord:
      if (model_.record_emitted[type.index]) return;
      model_.record_emitted[type.index] = true;
      for (const RecordField& field : model_.records[type.index].fields) MarkType(field.type);
      return;
    case CType::Kind::kEnum:
      model_.enum_emitted[type.index] = true;
      return;
    case CType::Kind::kTypedef:
      if (model_.typedef_emitted[type.index]) return;
      model_.typedef_emitted[type.index] = true;
      MarkType(model_.typedefs[type.index].underlying);
      return;
    default:
      for (const CType& element : type.elements) MarkType(element);
      return;
  }
}

HeaderModel ModelBuilder::Finish() {
  // A record whose fields ffibox cannot carry is kept as an opaque type: usable through
  // pointers, as C code that never looks inside would use it.
  for (const auto& [index, why] : unusable_records_) {
    Record& record = model_.records[index];
    skipped_.push_back(absl::StrCat(record.name, ": fields left out (", why, ")"));
    record.fields.clear();
    record.complete = false;
  }
  // Anonymous records take the name of the first typedef naming them, else _anon_N.
  for (const Typedef& each : model_.typedefs) {
    if (each.underlying.kind == CType::Kind::kRecord &&
        model_.records[each.underlying.index].name.empty()) {
      model_.records[each.underlying.index].name = each.name;
    }
    if (each.underlying.kind == CType::Kind::kEnum &&
        model_.enums[each.underlying.index].name.empty()) {
      model_.enums[each.underlying.index].name = each.name;
    }
  }
  int anonymous = 0;
  for (Record& record : model_.records) {
    if (record.name.empty()) record.name = absl::StrCat("_anon_", anonymous++);
  }
  model_.record_emitted.assign(model_.records.size(), false);
  model_.enum_emitted.assign(model_.enums.size(), false);
  model_.typedef_emitted.assign(model_.typedefs.size(), false);
  for (int index : named_records_) MarkType(CType{CType::Kind::kRecord, {}, index});
  for (int index : named_enums_) MarkType(CType{CType::Kind::kEnum, {}, index});
  for (int index : named_typedefs_) MarkType(CType{CType::Kind::kTypedef, {}, index});
  for (const Function& function : model_.functions) {
    MarkType(function.result);
    for (const CType& param : function.params) MarkType(param);
  }
  for (const Variable& variable : model_.variables) MarkType(variable.type);
  model_.skipped = std::move(skipped_);
  return std::move(model_);
}

std::vector<std::string> ClangArguments(const HeaderParseOptions& options) {
  std::vector<std::string> args = {"-x", "c", "-std=gnu11", "-ferror-limit=0"};
  for (const std::string& dir : options.include_dirs) args.push_back("-I" + dir);
  for (const std::string& define : options.defines) args.push_back("-D" + define);
  return args;
}

// Whether clang's canonical type `type` is one a macro constant may have.
bool IsConstantType(CXType type) {
  type = clang_getCanonicalType(type);
  if (type.kind >= CXType_Bool && type.kind <= CXType_LongDouble) return true;
  if (type.kind != CXType_Pointer) return false;
  CXType pointee = clang_getCanonicalType(clang_getPointeeType(type));
  return pointee.kind == CXType_Char_S || pointee.kind == CXType_Char_U;
}

// Evaluates each macro as the initializer of a variable appended after the headers; those
// that do not compile, or are not integer, floating-point or string constants, are dropped.
absl::StatusOr<std::vector<MacroConstant>> EvaluateMacros(CXIndex index,
                                                          const std::vector<std::string>& args,
                                                          std::string main_text,
                                                          const std::vector<std::string>& names) {
  if (names.empty()) return std::vector<MacroConstant>{};
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StrAppend(&main_text, "static const __auto_type ", kMacroPrefix, i, " = ", names[i],
                    ";\n");
  }
  FFIBOX_ASSIGN_OR_RETURN(UnitPtr unit, Parse(index, args, main_text, CXTranslationUnit_None));
  struct Visit {
    const std::vector<std::string>* names;
    std::vector<MacroConstant> constants;
  } visit{&names, {}};
  clang_visitChildren(
      clang_getTranslationUnitCursor(unit.get()),
      [](CXCursor cursor, CXCursor, CXClientData data) {
        auto* visit = static_cast<Visit*>(data);
        const std::string name = Spelling(cursor);
        if (clang_getCursorKind(cursor) != CXCursor_VarDecl ||
            !absl::StartsWith(name, kMacroPrefix) || clang_isInvalidDeclaration(cursor) ||
            !IsConstantType(clang_getCursorType(cursor))) {
          return CXChildVisit_Continue;
        }
        const size_t number = std::stoul(name.substr(sizeof(kMacroPrefix) - 1));
        CXEvalResult result = clang_Cursor_Evaluate(cursor);
        if (result == nullptr) return CXChildVisit_Continue;
        MacroConstant constant;
        constant.name = (*visit->names)[number];
        bool keep = true;
        switch (clang_EvalResult_getKind(result)) {
          case CXEval_Int:
            if (clang_EvalResult_isUnsignedInt(result)) {
              constant.kind = MacroConstant::Kind::kUnsignedInteger;
              constant.integer = static_cast<int64_t>(clang_EvalResult_getAsUnsigned(result));
            } else {
              constant.kind = MacroConstant::Kind::kInteger;
              constant.integer = clang_EvalResult_getAsLongLong(result);
            }
            break;
          case CXEval_Float:
            constant.kind = MacroConstant::Kind::kFloat;
            constant.real = clang_EvalResult_getAsDouble(result);
            break;
          case CXEval_StrLiteral:
            constant.kind = MacroConstant::Kind::kString;
            constant.text = clang_EvalResult_getAsStr(result);
            break;
          default:
            keep = false;
        }
        clang_EvalResult_dispose(result);
        if (keep) visit->constants.push_back(std::move(constant));
        return CXChildVisit_Continue;
      },
      &visit);
  return std::move(visit.constants);
}

// What an umbrella header stands for: the headers it includes, found in its own directory
// or below and written as a path of the library's own (`"sodium/core.h"`, `<gtk/gtkbox.h>`;
// not `<stdint.h>`).
struct IncludeVisit {
  // Named files with a declaration of their own.
  std::set<std::string> declaring;
  // What each named file includes that may stand for it.
  std::map<std::string, std::vector<std::string>> gathered;
};

bool WrittenAsTheLibrarysOwn(CXTranslationUnit unit, CXCursor directive) {
  if (absl::StrContains(Spelling(directive), "/")) return true;
  CXToken* tokens = nullptr;
  unsigned count = 0;
  clang_tokenize(unit, clang_getCursorExtent(directive), &tokens, &count);
  bool quoted = false;
  for (unsigned i = 0; i < count && !quoted; ++i) {
    quoted = clang_getTokenKind(tokens[i]) == CXToken_Literal &&
             absl::StartsWith(TakeString(clang_getTokenSpelling(unit, tokens[i])), "\"");
  }
  clang_disposeTokens(unit, tokens, count);
  return quoted;
}

// The named files that declare nothing of their own but include other headers of their
// library (sodium.h), expanded into those headers, recursively: the files whose declarations
// are bound. `gathered` receives the headers added.
std::set<std::string> WithUmbrellasOpened(CXTranslationUnit unit, std::set<std::string> named,
                                          std::vector<std::string>* gathered) {
  struct Visit {
    CXTranslationUnit unit;
    IncludeVisit includes;
  } visit{unit, {}};
  clang_visitChildren(
      clang_getTranslationUnitCursor(unit),
      [](CXCursor cursor, CXCursor, CXClientData data) {
        auto* visit = static_cast<Visit*>(data);
        const std::string file = FileOf(cursor);
        switch (clang_getCursorKind(cursor)) {
          case CXCursor_InclusionDirective: {
            CXFile included = clang_getIncludedFile(cursor);
            if (included == nullptr) break;
            const std::string path = RealPath(TakeString(clang_getFileName(included)));
            const std::string directory = file.substr(0, file.rfind('/') + 1);
            if (absl::StartsWith(path, directory) && WrittenAsTheLibrarysOwn(visit->unit, cursor)) {
              visit->includes.gathered[file].push_back(path);
            }
            break;
          }
          case CXCursor_StructDecl:
          case CXCursor_UnionDecl:
          case CXCursor_EnumDecl:
          case CXCursor_TypedefDecl:
          case CXCursor_FunctionDecl:
          case CXCursor_VarDecl:
            visit->includes.declaring.insert(file);
            break;
          default:
            break;
        }
        return CXChildVisit_Continue;
      },
      &visit);
  std::vector<std::string> pending(named.begin(), named.end());
  while (!pending.empty()) {
    const std::string file = std::move(pending.back());
    pending.pop_back();
    if (visit.includes.declaring.count(file) > 0) continue;
    for (const std::string& included : visit.includes.gathered[file]) {
      if (named.insert(included).second) {
        gathered->push_back(included);
        pending.push_back(included);
      }
    }
  }
  return named;
}

}  // namespace

absl::StatusOr<HeaderModel> ParseHeaders(const HeaderParseOptions& options) {
  if (options.headers.empty()) return absl::InvalidArgumentError("no header to read");
  std::set<std::string> named_files;
  std::string main_text;
  for (const std::string& header : options.headers) {
    char resolved[PATH_MAX];
    if (realpath(header.c_str(), resolved) == nullptr) {
      return absl::NotFoundError(absl::StrCat("header ", header, " not found"));
    }
    named_files.insert(resolved);
    absl::StrAppend(&main_text, "#include \"", resolved, "\"\n");
  }
  std::unique_ptr<void, IndexDeleter> index(clang_createIndex(/*excludeDeclsFromPCH=*/0,
                                                              /*displayDiagnostics=*/0));
  const std::vector<std::string> args = ClangArguments(options);
  FFIBOX_ASSIGN_OR_RETURN(UnitPtr unit, Parse(index.get(), args, main_text,
                                              CXTranslationUnit_DetailedPreprocessingRecord |
                                                  CXTranslationUnit_SkipFunctionBodies));
  if (std::string errors = ErrorsOf(unit.get()); !errors.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the headers do not compile:\n", errors));
  }
  std::vector<std::string> gathered;
  named_files = WithUmbrellasOpened(unit.get(), std::move(named_files), &gathered);
  ModelBuilder builder(named_files);
  builder.VisitUnit(unit.get());
  FFIBOX_ASSIGN_OR_RETURN(std::vector<MacroConstant> macros,
                          EvaluateMacros(index.get(), args, main_text, builder.macro_names()));
  HeaderModel model = builder.Finish();
  model.headers = options.headers;
  model.gathered = std::move(gathered);
  // A macro that names a declaration (`#define DT_UNKNOWN DT_UNKNOWN` beside the enum
  // constant) is that declaration, bound once.
  absl::flat_hash_set<std::string> declared;
  for (const Enum& each : model.enums) {
    for (const EnumConstant& constant : each.constants) declared.insert(constant.name);
  }
  for (const Function& each : model.functions) declared.insert(each.name);
  for (const Variable& each : model.variables) declared.insert(each.name);
  for (MacroConstant& macro : macros) {
    if (!declared.contains(macro.name)) model.macros.push_back(std::move(macro));
  }
  return model;
}

}  // namespace cli
}  // namespace ffibox
