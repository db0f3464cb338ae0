#include "client/cli/cpp_bindings.h"

#include <string>

#include "client/cli/header_testing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The C++ header printed for a header holding `text`.
std::string BindingsOf(const std::string& text) {
  absl::StatusOr<HeaderModel> model = ParseTestHeader(text);
  EXPECT_OK(model);
  return model.ok() ? CppBindings(*model, "libapi.so.1", "api") : "";
}

TEST(CppBindingsTest, ParametersBecomeTheClientTypesThatCarryThem) {
  const std::string header = BindingsOf(R"(
    typedef struct session session;
    struct point { double x, y; };
    int process(session* s, const char* name, char* text, const unsigned char* in,
                unsigned long* out_size, struct point* points, session** out,
                int (*callback)(void*), void* context, int values[4]);
    const char* describe(int code);
    session* current(void);
    struct point middle(struct point a, struct point b);
  )");
  EXPECT_THAT(header, HasSubstr("namespace api {\n"));
  EXPECT_THAT(header, HasSubstr("inline constexpr char kLibrary[] = \"libapi.so.1\";\n"));
  EXPECT_THAT(header, HasSubstr("using process = int(ffibox::RemotePtr, const char*, "
                                "absl::Span<char>, "
                                "absl::Span<const unsigned char>, absl::Span<unsigned long>, "
                                "absl::Span<point>, ffibox::RemotePtr*, ffibox::RemotePtr, "
                                "ffibox::RemotePtr, absl::Span<int>);\n"));
  EXPECT_THAT(header, HasSubstr("using describe = std::optional<std::string>(int);\n"));
  EXPECT_THAT(header, HasSubstr("using current = ffibox::RemotePtr();\n"));
  EXPECT_THAT(header, HasSubstr("using middle = point(point, point);\n"));
  EXPECT_THAT(header, HasSubstr("inline auto (process)(const ffibox::Library& library) {\n"
                                "  return library.Function<signatures::process>(\"process\");\n"
                                "}\n"));
}

TEST(CppBindingsTest, RecordsWithTheirLayoutAndDescriptions) {
  const std::string header = BindingsOf(R"(
    struct point { double x, y; };
    #pragma pack(push, 1)
    struct packed { char c; int i; };
    #pragma pack(pop)
    union number { int i; float f; };
    struct flags { unsigned a : 3; unsigned : 2; unsigned b : 7; };
    struct node { int value; struct node* next; };
    struct grid { int cells[2][3]; };
  )");
  EXPECT_THAT(header, HasSubstr("struct point {\n  double x;\n  double y;\n};\n"
                                "static_assert(sizeof(point) == 16 && alignof(point) == 8"));
  EXPECT_THAT(header, HasSubstr("static_assert(offsetof(point, y) == 8);\n"
                                "FFIBOX_STRUCT(point, x, y)\n"));
  EXPECT_THAT(header, HasSubstr("#pragma pack(push, 1)\nstruct packed {"));
  EXPECT_THAT(header, HasSubstr("FFIBOX_PACKED_STRUCT(packed, 1, c, i)\n"));
  EXPECT_THAT(header, HasSubstr("FFIBOX_UNION(number, i, f)\n"));
  EXPECT_THAT(header, HasSubstr("  unsigned int a : 3;\n  unsigned int : 2;\n"));
  EXPECT_THAT(header, Not(HasSubstr("FFIBOX_STRUCT(flags")));  // bit fields
  EXPECT_THAT(header, Not(HasSubstr("FFIBOX_STRUCT(node")));   // a pointer member
  EXPECT_THAT(header, HasSubstr("  Type<Type<int[3]>[2]> cells;\n"));
  EXPECT_THAT(header, HasSubstr("FFIBOX_STRUCT(grid, cells)\n"));
}

TEST(CppBindingsTest, AnAlignedRecordIsAlignedAsInC) {
  const std::string header = BindingsOf(R"(
    struct __attribute__((aligned(64))) state { unsigned char opaque[384]; };
    struct holder { struct state inner; };
  )");
  EXPECT_THAT(header, HasSubstr("struct alignas(64) state {\n"));
  EXPECT_THAT(header, HasSubstr("struct holder {\n"));  // aligned by its field
  EXPECT_THAT(header, HasSubstr("alignof(state) == 64"));
}

TEST(CppBindingsTest, ATagThatAFunctionAlsoNamesIsRenamed) {
  const std::string header = BindingsOf(R"(
    struct stat { long size; };
    int stat(const char* path, struct stat* out);
  )");
  EXPECT_THAT(header, HasSubstr("struct struct_stat {\n  long size;\n};\n"));
  EXPECT_THAT(header, HasSubstr("using stat = int(const char*, absl::Span<struct_stat>);\n"));
}

TEST(CppBindingsTest, ConstantsAndWhatCannotBeBound) {
  const std::string header = BindingsOf(R"(
    #define LIMIT 10
    #define MASK 0x80000000u
    #define NAME "a\tb"
    enum mode { MODE_A = 1 };
    int log_message(const char* format, ...);
    extern int error_count;
    int new(int delete);
  )");
  EXPECT_THAT(header,
              HasSubstr("#ifndef LIMIT\ninline constexpr long long LIMIT = 10LL;\n#endif\n"));
  EXPECT_THAT(header, HasSubstr("inline constexpr unsigned long long MASK = 2147483648ULL;\n"));
  EXPECT_THAT(header, HasSubstr("inline constexpr char NAME[] = \"a\\011b\";\n"));
  EXPECT_THAT(header, HasSubstr("using mode = unsigned int;\n#ifndef MODE_A\n"
                                "inline constexpr mode MODE_A = 1"));
  EXPECT_THAT(header, HasSubstr("//   log_message: variadic\n"));
  EXPECT_THAT(header, HasSubstr("return library.Variable<int>(\"error_count\");"));
  EXPECT_THAT(header, HasSubstr("inline auto (new_)(const ffibox::Library& library) {\n"
                                "  return library.Function<signatures::new_>(\"new\");"));
}

}  // namespace
}  // namespace cli
}  // namespace ffibox
