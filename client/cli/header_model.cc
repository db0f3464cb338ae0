#include "client/cli/header_model.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace ffibox {
namespace cli {
namespace {

class DefinitionSorter {
 public:
  explicit DefinitionSorter(const HeaderModel& model)
      : model_(model),
        typedef_state_(model.typedefs.size(), kNew),
        record_state_(model.records.size(), kNew) {}

  std::vector<Definition> Sort() {
    for (int i = 0; i < static_cast<int>(model_.records.size()); ++i) {
      if (model_.record_emitted[i] && model_.records[i].complete) VisitRecord(i);
    }
    for (int i = 0; i < static_cast<int>(model_.typedefs.size()); ++i) {
      if (model_.typedef_emitted[i]) VisitTypedef(i);
    }
    return std::move(order_);
  }

 private:
  enum State { kNew, kVisiting, kDone };

  void VisitRecord(int index) {
    if (record_state_[index] != kNew || !model_.records[index].complete) return;
    record_state_[index] = kVisiting;
    for (const RecordField& field : model_.records[index].fields) VisitType(field.type, true);
    record_state_[index] = kDone;
    order_.push_back(Definition{Definition::Kind::kRecordFields, index});
  }

  void VisitTypedef(int index) {
    if (typedef_state_[index] != kNew) return;
    typedef_state_[index] = kVisiting;
    VisitType(model_.typedefs[index].underlying, false);
    typedef_state_[index] = kDone;
    order_.push_back(Definition{Definition::Kind::kTypedef, index});
  }

  // `by_value`: the type is held whole (a field, an array element), so records it ends at
  // must have their fields first. C requires them complete there, so this meets no cycle.
  void VisitType(const CType& type, bool by_value) {
    switch (type.kind) {
      case CType::Kind::kTypedef:
        VisitTypedef(type.index);
        if (by_value) VisitType(model_.typedefs[type.index].underlying, true);
        return;
      case CType::Kind::kRecord:
        if (by_value) VisitRecord(type.index);
        return;
      case CType::Kind::kArray:
        VisitType(type.elements[0], true);
        return;
      case CType::Kind::kPointer:
      case CType::Kind::kFunction:
        for (const CType& element : type.elements) VisitType(element, false);
        return;
      default:
        return;
    }
  }

  const HeaderModel& model_;
  std::vector<State> typedef_state_;
  std::vector<State> record_state_;
  std::vector<Definition> order_;
};

}  // namespace

std::vector<Definition> DefinitionOrder(const HeaderModel& model) {
  return DefinitionSorter(model).Sort();
}

const CType& WithoutTypedefs(const HeaderModel& model, const CType& type) {
  const CType* current = &type;
  while (current->kind == CType::Kind::kTypedef) {
    current = &model.typedefs[current->index].underlying;
  }
  return *current;
}

TypeNames::TypeNames(const HeaderModel& model) : typedef_is_tag(model.typedefs.size(), false) {
  // The ordinary identifiers a tag may clash with (C keeps tags apart; Python and C++ not).
  absl::flat_hash_set<std::string> typedef_names;
  for (const Typedef& each : model.typedefs) typedef_names.insert(each.name);
  for (const Function& each : model.functions) typedef_names.insert(each.name);
  for (const Variable& each : model.variables) typedef_names.insert(each.name);
  for (const Record& record : model.records) records.push_back(record.name);
  for (const Enum& each : model.enums) enums.push_back(each.name);
  for (size_t i = 0; i < model.typedefs.size(); ++i) {
    const CType& underlying = model.typedefs[i].underlying;
    if (underlying.kind == CType::Kind::kRecord &&
        model.records[underlying.index].name == model.typedefs[i].name) {
      typedef_is_tag[i] = true;
    }
    if (underlying.kind == CType::Kind::kEnum &&
        model.enums[underlying.index].name == model.typedefs[i].name) {
      typedef_is_tag[i] = true;
    }
  }
  // A tag that a typedef of something else, a function or a variable also names
  // (`struct stat` and the function `stat`).
  absl::flat_hash_set<std::string> tag_names;
  for (size_t i = 0; i < model.typedefs.size(); ++i) {
    if (typedef_is_tag[i]) tag_names.insert(model.typedefs[i].name);
  }
  for (size_t i = 0; i < records.size(); ++i) {
    if (typedef_names.contains(records[i]) && !tag_names.contains(records[i])) {
      records[i] = absl::StrCat(model.records[i].is_union ? "union_" : "struct_", records[i]);
    }
  }
  for (size_t i = 0; i < enums.size(); ++i) {
    if (!enums[i].empty() && typedef_names.contains(enums[i]) && !tag_names.contains(enums[i])) {
      enums[i] = absl::StrCat("enum_", enums[i]);
    }
  }
}

const ScalarNames& NamesOf(Scalar scalar) {
  // In the order of enum Scalar.
  static constexpr ScalarNames kNames[] = {
      {"bool", "c_bool"},
      {"char", "c_char"},
      {"signed char", "c_byte"},
      {"unsigned char", "c_ubyte"},
      {"short", "c_short"},
      {"unsigned short", "c_ushort"},
      {"int", "c_int"},
      {"unsigned int", "c_uint"},
      {"long", "c_long"},
      {"unsigned long", "c_ulong"},
      {"long long", "c_longlong"},
      {"unsigned long long", "c_ulonglong"},
      {"float", "c_float"},
      {"double", "c_double"},
      {"long double", "c_longdouble"},
      {"wchar_t", "c_wchar"},
  };
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == static_cast<size_t>(Scalar::kWchar) + 1);
  return kNames[static_cast<size_t>(scalar)];
}

std::string QuotedString(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c >= 0x20 && c < 0x7f && c != '?') {  // '?': no C trigraphs
      out.push_back(static_cast<char>(c));
    } else {
      // Octal, not \x: an octal escape ends after three digits in both languages.
      absl::StrAppend(&out, "\\", absl::Dec(c >> 6), absl::Dec((c >> 3) & 7), absl::Dec(c & 7));
    }
  }
  return out + "\"";
}

std::string FieldName(const Record& record, int index) {
  const RecordField& field = record.fields[index];
  if (!field.name.empty()) return field.name;
  if (field.bit_width >= 0) return absl::StrCat("_bits_", index);
  return absl::StrCat("_", index);
}

std::string GatheredHeadersNote(const HeaderModel& model, absl::string_view comment) {
  if (model.gathered.empty()) return "";
  std::string note = absl::StrCat(comment,
                                  " With the headers included by a named one that declares "
                                  "nothing itself:\n");
  for (const std::string& header : model.gathered)
    absl::StrAppend(&note, comment, "   ", header, "\n");
  return note;
}

}  // namespace cli
}  // namespace ffibox
