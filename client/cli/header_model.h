// The declarations of C headers as `ffibox bindgen` sees them, independent of libclang.
//
// `ParseHeaders` (header_parser.h) fills a HeaderModel from headers; the emitters
// (python_bindings.h, cpp_bindings.h) print it. Types refer to records, enums and typedefs by
// their index in the model, so a pointer to a record being defined is an index, not a cycle.
// Everything is in the order clang met it, which makes the output deterministic.
#ifndef FFIBOX_CLIENT_CLI_HEADER_MODEL_H_
#define FFIBOX_CLIENT_CLI_HEADER_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace ffibox {
namespace cli {

// The C scalars a header's types reduce to (after typedefs), as clang's canonical types.
enum class Scalar {
  kBool,
  kChar,
  kSignedChar,
  kUnsignedChar,
  kShort,
  kUnsignedShort,
  kInt,
  kUnsignedInt,
  kLong,
  kUnsignedLong,
  kLongLong,
  kUnsignedLongLong,
  kFloat,
  kDouble,
  kLongDouble,
  kWchar,
};

// A C type. `kind` says which members are meaningful.
struct CType {
  enum class Kind {
    kVoid,
    kScalar,    // scalar
    kPointer,   // elements[0] is the pointee (kVoid for void*)
    kArray,     // elements[0] is the element; length (0 for an incomplete `T x[]`)
    kRecord,    // index into HeaderModel::records
    kEnum,      // index into HeaderModel::enums
    kTypedef,   // index into HeaderModel::typedefs
    kFunction,  // elements[0] is the result, the rest the parameters; variadic
    kVaList,    // the compiler's va_list: passed as a pointer
  };
  Kind kind = Kind::kVoid;
  Scalar scalar = Scalar::kInt;
  int index = -1;
  uint64_t length = 0;
  bool variadic = false;
  bool is_const = false;  // the type itself is const-qualified (`const char` in `const char*`)
  std::vector<CType> elements;
};

// One field of a record, with clang's layout of it.
struct RecordField {
  std::string name;  // empty for an anonymous struct/union member
  CType type;
  uint64_t bit_offset = 0;  // from the start of the record
  int bit_width = -1;       // -1: not a bit field
  uint64_t size = 0;        // bytes of the field's type
};

struct Record {
  std::string name;  // the tag, or a name given to an anonymous record (see header_parser.h)
  bool is_union = false;
  bool complete = false;  // false: declared only (an opaque type)
  bool anonymous = false;
  uint64_t size = 0;       // bytes, as clang lays it out
  uint64_t alignment = 0;  // bytes
  uint64_t pack = 0;       // 0, or the packing that explains an alignment below the natural one
  uint64_t natural_alignment = 1;  // bytes: its fields' largest (below `alignment` if aligned())
  std::vector<RecordField> fields;
};

struct EnumConstant {
  std::string name;
  int64_t value = 0;
  bool is_unsigned = false;  // the value is to be read as uint64_t
};

struct Enum {
  std::string name;  // the tag; empty for an anonymous enum
  Scalar integer_type = Scalar::kUnsignedInt;
  std::vector<EnumConstant> constants;
};

struct Typedef {
  std::string name;
  CType underlying;
};

struct Function {
  std::string name;
  CType result;
  std::vector<CType> params;
  std::vector<std::string> param_names;  // empty strings where the header gives none
  bool variadic = false;
};

struct Variable {
  std::string name;
  CType type;
};

// An object-like `#define` whose expansion clang evaluates to a constant.
struct MacroConstant {
  enum class Kind { kInteger, kUnsignedInteger, kFloat, kString };
  std::string name;
  Kind kind = Kind::kInteger;
  int64_t integer = 0;  // kInteger; kUnsignedInteger as the same bits
  double real = 0;      // kFloat
  std::string text;     // kString: the bytes, without the NUL
};

// What the named headers declare, plus the records, enums and typedefs of other headers
// (system headers, headers they include) that those declarations use. `emit` is false for
// records, enums and typedefs nothing named uses.
struct HeaderModel {
  std::vector<std::string> headers;  // the headers as named on the command line
  // Headers bound for a named one that declares nothing itself but includes them (an
  // umbrella header such as sodium.h), in the order found.
  std::vector<std::string> gathered;
  std::vector<Record> records;
  std::vector<bool> record_emitted;
  std::vector<Enum> enums;
  std::vector<bool> enum_emitted;
  std::vector<Typedef> typedefs;
  std::vector<bool> typedef_emitted;
  std::vector<Function> functions;
  std::vector<Variable> variables;
  std::vector<MacroConstant> macros;
  std::vector<std::string> skipped;  // "name: why" for declarations left out
};

// A definition an emitter prints after every record is declared (forward-declared in C++,
// a field-less class in Python): a typedef, or the fields of a record.
struct Definition {
  enum class Kind { kTypedef, kRecordFields };
  Kind kind;
  int index;
};

// The emitted typedefs and complete records, each after what it needs: the typedefs it
// names, and the fields of the records it holds by value (directly or in arrays).
std::vector<Definition> DefinitionOrder(const HeaderModel& model);

// `type` without its typedefs (the type a chain of typedefs ends at).
const CType& WithoutTypedefs(const HeaderModel& model, const CType& type);

// The names the emitters give records and enums: their tag, or `struct_TAG` / `union_TAG` /
// `enum_TAG` when a typedef of another type, a function or a variable has the tag's name.
struct TypeNames {
  explicit TypeNames(const HeaderModel& model);
  std::vector<std::string> records;
  std::vector<std::string> enums;
  // Whether typedef `index` only repeats the name of the record or enum it stands for
  // (`typedef struct foo foo;`, `typedef struct { ... } foo;`): nothing to print.
  std::vector<bool> typedef_is_tag;
};

// How a scalar is spelled in C (and C++) and in ctypes (`c_int`, without the module).
struct ScalarNames {
  const char* c;
  const char* ctypes;
};
const ScalarNames& NamesOf(Scalar scalar);

// `text` as a double-quoted literal valid in C, C++ and Python (prefix `b` for bytes):
// printable ASCII as is, everything else as a three-digit octal escape.
std::string QuotedString(const std::string& text);

// The name of field `index` of `record`: its own, `_N` for an anonymous struct/union member,
// `_bits_N` for an unnamed bit field.
std::string FieldName(const Record& record, int index);

// The comment lines (each starting with `comment`) naming the headers `model` gathered for
// an umbrella header; empty when it gathered none.
std::string GatheredHeadersNote(const HeaderModel& model, absl::string_view comment);

}  // namespace cli
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CLI_HEADER_MODEL_H_
