#include "client/cli/header_parser.h"

#include <sys/stat.h>

#include <fstream>
#include <string>
#include <vector>

#include "client/cli/header_testing.h"
#include "core/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const Record* FindRecord(const HeaderModel& model, const std::string& name) {
  for (const Record& record : model.records) {
    if (record.name == name) return &record;
  }
  return nullptr;
}

const Function* FindFunction(const HeaderModel& model, const std::string& name) {
  for (const Function& function : model.functions) {
    if (function.name == name) return &function;
  }
  return nullptr;
}

std::vector<std::string> FieldNames(const Record& record) {
  std::vector<std::string> names;
  for (const RecordField& field : record.fields) names.push_back(field.name);
  return names;
}

TEST(ParseHeadersTest, RecordsCarryClangsLayout) {
  ASSERT_OK_AND_ASSIGN(HeaderModel model, ParseTestHeader(R"(
    struct point { char tag; double x; int y; };
    union number { int i; double d; char bytes[3]; };
  )"));
  const Record* point = FindRecord(model, "point");
  ASSERT_NE(point, nullptr);
  EXPECT_TRUE(point->complete);
  EXPECT_FALSE(point->is_union);
  EXPECT_EQ(point->size, 24u);
  EXPECT_EQ(point->alignment, 8u);
  EXPECT_THAT(FieldNames(*point), ElementsAre("tag", "x", "y"));
  EXPECT_EQ(point->fields[1].bit_offset, 64u);
  EXPECT_EQ(point->fields[2].bit_offset, 128u);
  const Record* number = FindRecord(model, "number");
  ASSERT_NE(number, nullptr);
  EXPECT_TRUE(number->is_union);
  EXPECT_EQ(number->size, 8u);
  EXPECT_EQ(number->fields[2].type.kind, CType::Kind::kArray);
  EXPECT_EQ(number->fields[2].type.length, 3u);
}

TEST(ParseHeadersTest, BitFieldsPackingAndAnonymousMembers) {
  ASSERT_OK_AND_ASSIGN(HeaderModel model, ParseTestHeader(R"(
    struct flags { unsigned a : 3; unsigned b : 7; int : 0; unsigned c : 2; };
    #pragma pack(push, 1)
    struct packed { char c; int i; };
    #pragma pack(pop)
    struct __attribute__((packed)) wire { char kind; long value; };
    struct variant { int kind; union { int i; float f; }; struct { short lo, hi; } pair; };
  )"));
  const Record* flags = FindRecord(model, "flags");
  ASSERT_NE(flags, nullptr);
  ASSERT_EQ(flags->fields.size(), 4u);
  EXPECT_EQ(flags->fields[0].bit_width, 3);
  EXPECT_EQ(flags->fields[1].bit_offset, 3u);
  EXPECT_EQ(flags->fields[2].bit_width, 0);
  EXPECT_EQ(flags->fields[3].bit_offset, 32u);  // after the zero-width field
  EXPECT_EQ(flags->size, 8u);
  const Record* packed = FindRecord(model, "packed");
  ASSERT_NE(packed, nullptr);
  EXPECT_EQ(packed->size, 5u);
  EXPECT_EQ(packed->pack, 1u);
  EXPECT_EQ(FindRecord(model, "wire")->size, 9u);
  EXPECT_EQ(FindRecord(model, "wire")->pack, 1u);
  const Record* variant = FindRecord(model, "variant");
  ASSERT_NE(variant, nullptr);
  ASSERT_EQ(variant->fields.size(), 3u);
  EXPECT_EQ(variant->fields[1].name, "");  // the anonymous union member
  EXPECT_EQ(variant->fields[1].type.kind, CType::Kind::kRecord);
  EXPECT_TRUE(model.records[variant->fields[1].type.index].is_union);
  EXPECT_EQ(variant->fields[2].name, "pair");
  EXPECT_EQ(variant->fields[2].bit_offset, 64u);
}

TEST(ParseHeadersTest, TypedefsEnumsOpaqueTypesAndFunctionPointers) {
  ASSERT_OK_AND_ASSIGN(HeaderModel model, ParseTestHeader(R"(
    typedef struct handle handle;               /* never defined: opaque */
    typedef struct { int w, h; } size2d;        /* named by its typedef */
    typedef int (*compare_fn)(const void*, const void*);
    enum color { RED, GREEN = 5, BLUE };
    enum { LIMIT = -3 };
    handle* open_handle(const char* name);
  )"));
  const Record* handle = FindRecord(model, "handle");
  ASSERT_NE(handle, nullptr);
  EXPECT_FALSE(handle->complete);
  ASSERT_NE(FindRecord(model, "size2d"), nullptr);
  EXPECT_TRUE(FindRecord(model, "size2d")->complete);
  ASSERT_EQ(model.enums.size(), 2u);
  EXPECT_EQ(model.enums[0].name, "color");
  ASSERT_EQ(model.enums[0].constants.size(), 3u);
  EXPECT_EQ(model.enums[0].constants[2].name, "BLUE");
  EXPECT_EQ(model.enums[0].constants[2].value, 6);
  EXPECT_EQ(model.enums[1].constants[0].value, -3);
  bool found_compare = false;
  for (const Typedef& each : model.typedefs) {
    if (each.name != "compare_fn") continue;
    found_compare = true;
    ASSERT_EQ(each.underlying.kind, CType::Kind::kPointer);
    const CType& function = each.underlying.elements[0];
    ASSERT_EQ(function.kind, CType::Kind::kFunction);
    EXPECT_EQ(function.elements.size(), 3u);  // result and two parameters
  }
  EXPECT_TRUE(found_compare);
  const Function* open = FindFunction(model, "open_handle");
  ASSERT_NE(open, nullptr);
  EXPECT_THAT(open->param_names, ElementsAre("name"));
}

TEST(ParseHeadersTest, FunctionsVariablesAndVariadics) {
  ASSERT_OK_AND_ASSIGN(HeaderModel model, ParseTestHeader(R"(
    int log_message(int level, const char* format, ...);
    double scale(double, float);
    static inline int helper(void) { return 1; }
    extern int error_count;
    extern const char version_text[];
  )"));
  const Function* log = FindFunction(model, "log_message");
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(log->variadic);
  EXPECT_EQ(log->params.size(), 2u);
  ASSERT_NE(FindFunction(model, "scale"), nullptr);
  EXPECT_FALSE(FindFunction(model, "scale")->variadic);
  EXPECT_EQ(FindFunction(model, "helper"), nullptr);  // static: not exported
  ASSERT_EQ(model.variables.size(), 2u);
  EXPECT_EQ(model.variables[0].name, "error_count");
  EXPECT_EQ(model.variables[1].type.kind, CType::Kind::kArray);
}

TEST(ParseHeadersTest, ArrayParametersArePointersAsInC) {
  ASSERT_OK_AND_ASSIGN(HeaderModel model, ParseTestHeader(R"(
    int sum_five(const int values[5]);
    int trace(const int matrix[3][3]);
  )"));
  const Function* sum = FindFunction(model, "sum_five");
  ASSERT_NE(sum, nullptr);
  ASSERT_EQ(sum->params[0].kind, CType::Kind::kPointer);
  EXPECT_EQ(sum->params[0].elements[0].kind, CType::Kind::kScalar);
  EXPECT_TRUE(sum->params[0].elements[0].is_const);
  const Function* trace = FindFunction(model, "trace");
  ASSERT_NE(trace, nullptr);
  ASSERT_EQ(trace->params[0].kind, CType::Kind::kPointer);
  EXPECT_EQ(trace->params[0].elements[0].kind, CType::Kind::kArray);
  EXPECT_EQ(trace->params[0].elements[0].length, 3u);
}

TEST(ParseHeadersTest, AFunctionDeclaredThroughATypedefOfItsType) {
  ASSERT_OK_AND_ASSIGN(HeaderModel model, ParseTestHeader(R"(
    typedef int handler_fn(int signal, void* context);
    handler_fn on_signal;
  )"));
  const Function* handler = FindFunction(model, "on_signal");
  ASSERT_NE(handler, nullptr);
  EXPECT_EQ(handler->result.kind, CType::Kind::kScalar);
  EXPECT_EQ(handler->params.size(), 2u);
}

TEST(ParseHeadersTest, MacrosThatEvaluateToConstants) {
  ASSERT_OK_AND_ASSIGN(HeaderModel model, ParseTestHeader(R"(
    #define ANSWER 42
    #define MASK (1u << 31)
    #define NEGATIVE (-7)
    #define DERIVED (ANSWER + 1)
    #define RATIO 0.25
    #define NAME "widget"
    #define EMPTY
    #define CALL(x) ((x) + 1)
    #define NOT_A_CONSTANT open_handle
    #define POINTER_VALUE ((void*)0)
    #define FROM_COMMAND_LINE_PLUS_ONE (FROM_COMMAND_LINE + 1)
    enum kind { KIND_A = 3 };
    #define KIND_A KIND_A
  )",
                                                          {"FROM_COMMAND_LINE=9"}));
  std::vector<std::string> names;
  for (const MacroConstant& macro : model.macros) names.push_back(macro.name);
  EXPECT_THAT(names, ElementsAre("ANSWER", "MASK", "NEGATIVE", "DERIVED", "RATIO", "NAME",
                                 "FROM_COMMAND_LINE_PLUS_ONE"));
  EXPECT_EQ(model.macros[0].integer, 42);
  EXPECT_EQ(model.macros[1].kind, MacroConstant::Kind::kUnsignedInteger);
  EXPECT_EQ(static_cast<uint64_t>(model.macros[1].integer), 1u << 31);
  EXPECT_EQ(model.macros[2].integer, -7);
  EXPECT_EQ(model.macros[3].integer, 43);
  EXPECT_EQ(model.macros[4].kind, MacroConstant::Kind::kFloat);
  EXPECT_DOUBLE_EQ(model.macros[4].real, 0.25);
  EXPECT_EQ(model.macros[5].kind, MacroConstant::Kind::kString);
  EXPECT_EQ(model.macros[5].text, "widget");
  EXPECT_EQ(model.macros[6].integer, 10);
}

TEST(ParseHeadersTest, OtherHeadersContributeOnlyWhatNamedDeclarationsUse) {
  const std::string other = WriteTestHeader("other.h", R"(
    typedef unsigned long other_size;
    typedef int other_unused;
    struct other_used { int a; };
    struct other_unused_record { int b; };
    int other_function(void);
    #define OTHER_MACRO 1
  )");
  const std::string named = WriteTestHeader("named.h", "#include \"" + other + R"("
    other_size measure(struct other_used* what);
  )");
  HeaderParseOptions options;
  options.headers = {named};
  ASSERT_OK_AND_ASSIGN(HeaderModel model, ParseHeaders(options));
  std::vector<std::string> emitted;
  for (size_t i = 0; i < model.typedefs.size(); ++i) {
    if (model.typedef_emitted[i]) emitted.push_back(model.typedefs[i].name);
  }
  for (size_t i = 0; i < model.records.size(); ++i) {
    if (model.record_emitted[i]) emitted.push_back(model.records[i].name);
  }
  EXPECT_THAT(emitted, ElementsAre("other_size", "other_used"));
  ASSERT_EQ(model.functions.size(), 1u);
  EXPECT_EQ(model.functions[0].name, "measure");
  EXPECT_TRUE(model.macros.empty());
}

TEST(ParseHeadersTest, AnUmbrellaHeaderStandsForTheHeadersOfItsLibraryItIncludes) {
  // lib.h declares nothing itself (as sodium.h): what it includes of its own directory is
  // bound, recursively through lib/two.h, another umbrella; <stddef.h> and a header of
  // another directory contribute only what the bound declarations use.
  const std::string elsewhere = WriteTestHeader("elsewhere.h", "int elsewhere(void);\n");
  const std::string umbrella =
      WriteTestHeader("lib.h",
                      "#include <stddef.h>\n#include \"lib/one.h\"\n#include \"lib/two.h\"\n"
                      "#include \"" +
                          elsewhere + "\"\n#define LIB_H 1\n");
  const std::string dir = umbrella.substr(0, umbrella.rfind('/'));
  ASSERT_EQ(mkdir((dir + "/lib").c_str(), 0700), 0);
  std::ofstream(dir + "/lib/one.h")
      << "#include <stddef.h>\nsize_t one(void);\n#define ONE_MAX 3\n";
  std::ofstream(dir + "/lib/two.h") << "#include \"three.h\"\n";
  std::ofstream(dir + "/lib/three.h") << "int three(int);\n";
  HeaderParseOptions options;
  options.headers = {umbrella};
  ASSERT_OK_AND_ASSIGN(HeaderModel model, ParseHeaders(options));
  std::vector<std::string> functions;
  for (const Function& function : model.functions) functions.push_back(function.name);
  EXPECT_THAT(functions, ElementsAre("one", "three"));
  EXPECT_THAT(model.gathered,
              ElementsAre(dir + "/lib/one.h", dir + "/lib/two.h", dir + "/lib/three.h"));
  std::vector<std::string> macros;
  for (const MacroConstant& macro : model.macros) macros.push_back(macro.name);
  EXPECT_THAT(macros, ElementsAre("ONE_MAX", "LIB_H"));
  std::vector<std::string> typedefs;
  for (size_t i = 0; i < model.typedefs.size(); ++i) {
    if (model.typedef_emitted[i]) typedefs.push_back(model.typedefs[i].name);
  }
  EXPECT_THAT(typedefs, ElementsAre("size_t"));
  EXPECT_THAT(GatheredHeadersNote(model, "#"), HasSubstr("#   " + dir + "/lib/three.h\n"));

  // A header that declares something is no umbrella: what it includes stays its own.
  const std::string declaring =
      WriteTestHeader("api.h", "#include \"" + dir + "/lib/one.h\"\nint api(void);\n");
  options.headers = {declaring};
  ASSERT_OK_AND_ASSIGN(HeaderModel alone, ParseHeaders(options));
  ASSERT_EQ(alone.functions.size(), 1u);
  EXPECT_TRUE(alone.gathered.empty());
}

TEST(ParseHeadersTest, AnAlignedRecordKeepsItsAlignmentBesideItsNaturalOne) {
  ASSERT_OK_AND_ASSIGN(HeaderModel model, ParseTestHeader(R"(
    struct __attribute__((aligned(64))) state { unsigned char opaque[384]; };
    struct holder { struct state inner; };
  )"));
  const Record* state = FindRecord(model, "state");
  ASSERT_NE(state, nullptr);
  EXPECT_EQ(state->alignment, 64u);
  EXPECT_EQ(state->natural_alignment, 1u);
  const Record* holder = FindRecord(model, "holder");
  ASSERT_NE(holder, nullptr);
  EXPECT_EQ(holder->natural_alignment, 64u);
}

TEST(ParseHeadersTest, AHeaderThatDoesNotCompileIsAnErrorWithClangsDiagnostics) {
  absl::StatusOr<HeaderModel> model = ParseTestHeader("struct broken { int x }\nint f(;\n");
  EXPECT_THAT(model, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(model.status().message(), HasSubstr("api.h:1:"));
  EXPECT_THAT(model.status().message(), HasSubstr("error:"));
}

TEST(ParseHeadersTest, AMissingHeaderIsNotFound) {
  HeaderParseOptions options;
  options.headers = {"/nonexistent/api.h"};
  EXPECT_THAT(ParseHeaders(options), StatusIs(v1::NOT_FOUND));
}

TEST(ParseHeadersTest, TypesWithoutAnFfiboxEquivalentAreLeftOutAndListed) {
  ASSERT_OK_AND_ASSIGN(HeaderModel model, ParseTestHeader(R"(
    __int128 wide(void);
    int narrow(void);
  )"));
  ASSERT_EQ(model.functions.size(), 1u);
  EXPECT_EQ(model.functions[0].name, "narrow");
  ASSERT_EQ(model.skipped.size(), 1u);
  EXPECT_THAT(model.skipped[0], HasSubstr("wide"));
}

}  // namespace
}  // namespace cli
}  // namespace ffibox
