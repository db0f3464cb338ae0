#include "client/cli/python_bindings.h"

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

// The module printed for a header holding `text`.
std::string BindingsOf(const std::string& text) {
  absl::StatusOr<HeaderModel> model = ParseTestHeader(text);
  EXPECT_OK(model);
  return model.ok() ? PythonBindings(*model, "libapi.so.1") : "";
}

TEST(PythonBindingsTest, LoadsTheLibraryAndBindsFunctions) {
  const std::string module = BindingsOf(R"(
    double scale(double value, float factor);
    int log_message(int level, const char* format, ...);
    void reset(void);
  )");
  EXPECT_THAT(module, HasSubstr("from ffibox import ctypes\n"));
  EXPECT_THAT(module, HasSubstr("_library = ctypes.CDLL(\"libapi.so.1\")\n"));
  EXPECT_THAT(module, HasSubstr("scale = _function(\"scale\", ctypes.c_double, "
                                "[ctypes.c_double, ctypes.c_float])\n"));
  EXPECT_THAT(module, HasSubstr("log_message = _function(\"log_message\", ctypes.c_int, "
                                "[ctypes.c_int, ctypes.c_char_p], variadic=True)\n"));
  EXPECT_THAT(module, HasSubstr("reset = _function(\"reset\", None, [])\n"));
}

TEST(PythonBindingsTest, RecordsAreDeclaredFirstAndGetTheirFieldsInDependencyOrder) {
  const std::string module = BindingsOf(R"(
    struct node;
    typedef struct node* node_ptr;
    struct outer { struct inner { int a; } first; node_ptr next; };
    struct node { struct outer value; node_ptr next; };
  )");
  const size_t node_class = module.find("class node(ctypes.Structure):");
  const size_t inner_fields = module.find("inner._fields_ = [");
  const size_t outer_fields = module.find("outer._fields_ = [");
  const size_t node_fields = module.find("node._fields_ = [");
  const size_t node_ptr = module.find("node_ptr = ctypes.POINTER(node)");
  ASSERT_NE(node_class, std::string::npos);
  ASSERT_NE(node_ptr, std::string::npos);
  EXPECT_LT(node_class, node_ptr);
  EXPECT_LT(node_ptr, outer_fields);
  EXPECT_LT(inner_fields, outer_fields);
  EXPECT_LT(outer_fields, node_fields);
  EXPECT_THAT(module, HasSubstr("    (\"first\", inner),\n"));
}

TEST(PythonBindingsTest, BitFieldsPackingAnonymousMembersAndOpaqueTypes) {
  const std::string module = BindingsOf(R"(
    #pragma pack(push, 2)
    struct packed { char c; int i; };
    #pragma pack(pop)
    struct flags { unsigned a : 3; unsigned : 2; unsigned b : 7; };
    struct variant { int kind; union { int i; float f; }; };
    typedef struct hidden hidden;
    hidden* make_hidden(void);
  )");
  EXPECT_THAT(module, HasSubstr("packed._pack_ = 2\n"));
  EXPECT_THAT(module, HasSubstr("    (\"a\", ctypes.c_uint, 3),\n"
                                "    (\"_bits_1\", ctypes.c_uint, 2),\n"
                                "    (\"b\", ctypes.c_uint, 7),\n"));
  EXPECT_THAT(module, HasSubstr("variant._anonymous_ = (\"_1\",)\n"));
  EXPECT_THAT(module, HasSubstr("    (\"_1\", _anon_0),\n"));
  EXPECT_THAT(module, HasSubstr("class hidden(ctypes.Structure):\n"
                                "    pass  # incomplete: an opaque type\n"));
  EXPECT_THAT(module, Not(HasSubstr("hidden = hidden")));
  EXPECT_THAT(module, HasSubstr("(packed, 6, 2, {\"c\": 0, \"i\": 16}),\n"));
  EXPECT_THAT(module, HasSubstr("_library.session.expect_layouts(_LAYOUTS)\n"));
}

TEST(PythonBindingsTest, AZeroWidthBitFieldBecomesTheBytesUpToTheNextField) {
  const std::string module = BindingsOf(R"(
    struct after_bits { unsigned char a : 3; unsigned long : 0; unsigned char b : 5; };
    struct after_int { int x; unsigned a : 3; unsigned : 0; unsigned : 0; unsigned b : 5; };
    struct at_end { short s : 4; int : 0; };
    union either { int i; unsigned : 0; };
  )");
  EXPECT_THAT(module, HasSubstr("    (\"a\", ctypes.c_ubyte, 3),\n"
                                "    (\"_bits_1\", ctypes.c_ubyte * 7),\n"
                                "    (\"b\", ctypes.c_ubyte, 5),\n"));
  EXPECT_THAT(module, HasSubstr("(after_bits, 9, 1, {\"a\": 0, \"b\": 64}),\n"));
  // One padding for a run of them; none needed where the unit ends at the next field.
  EXPECT_THAT(module, HasSubstr("    (\"a\", ctypes.c_uint, 3),\n"
                                "    (\"_bits_3\", ctypes.c_ubyte * 0),\n"
                                "    (\"b\", ctypes.c_uint, 5),\n"));
  EXPECT_THAT(module, Not(HasSubstr("_bits_2")));
  EXPECT_THAT(module, HasSubstr("(at_end, 4, 2, {\"s\": 0}),\n"));
  EXPECT_THAT(module, HasSubstr("    (\"s\", ctypes.c_short, 4),\n"
                                "    (\"_bits_1\", ctypes.c_ubyte * 2),\n"));
  EXPECT_THAT(module, HasSubstr("either._fields_ = [\n"
                                "    (\"i\", ctypes.c_int),\n]\n"));
}

TEST(PythonBindingsTest, AnAlignedRecordGetsTheAlignmentCtypesCanGive) {
  const std::string module = BindingsOf(R"(
    struct __attribute__((aligned(16))) block { unsigned char bytes[32]; };
    struct __attribute__((aligned(64))) state { unsigned char opaque[384]; };
  )");
  EXPECT_THAT(module, HasSubstr("block._fields_ = [\n"
                                "    (\"_align_16\", ctypes.c_longdouble * 0),\n"
                                "    (\"bytes\", (ctypes.c_ubyte * 32)),\n"));
  EXPECT_THAT(module, HasSubstr("(block, 32, 16, {\"bytes\": 0}),\n"));
  EXPECT_THAT(module, HasSubstr("(state, 384, 16, {\"opaque\": 0}),  # aligned to 64 in C\n"));
  EXPECT_THAT(module, HasSubstr("# Aligned beyond the 16 bytes ctypes can align"));
  EXPECT_THAT(module, HasSubstr("#   state: aligned to 64\n"));
  EXPECT_THAT(module, Not(HasSubstr("#   block: aligned")));
}

TEST(PythonBindingsTest, ConstantsTypedefsFunctionPointersAndVariables) {
  const std::string module = BindingsOf(R"(
    #define LIMIT 10
    #define RATIO 0.5
    #define GREETING "hi \"there\"\n"
    enum mode { MODE_A = 1, MODE_B = 4 };
    typedef unsigned long length_t;
    typedef int (*visitor)(void* context, const char* item);
    int walk(visitor visit, void* context, length_t limit);
    extern double threshold;
    extern int table[4];
    extern struct node { int value; } *head;
    extern visitor current_visitor;
    int class;
  )");
  EXPECT_THAT(module,
              HasSubstr("LIMIT = 10\nRATIO = 0.5\nGREETING = b\"hi \\\"there\\\"\\012\"\n"));
  EXPECT_THAT(module, HasSubstr("mode = ctypes.c_uint\nMODE_A = 1\nMODE_B = 4\n"));
  EXPECT_THAT(module, HasSubstr("length_t = ctypes.c_ulong\n"));
  EXPECT_THAT(module, HasSubstr("visitor = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, "
                                "ctypes.c_char_p)\n"));
  EXPECT_THAT(module, HasSubstr("walk = _function(\"walk\", ctypes.c_int, [visitor, "
                                "ctypes.c_void_p, length_t])\n"));
  EXPECT_THAT(module, HasSubstr("threshold = _variable(\"threshold\", ctypes.c_double)\n"));
  EXPECT_THAT(module, HasSubstr("table = _variable(\"table\", (ctypes.c_int * 4))\n"));
  EXPECT_THAT(module, HasSubstr("class_ = _variable(\"class\", ctypes.c_int)\n"));
  EXPECT_THAT(module, HasSubstr("head = _variable(\"head\", ctypes.c_void_p)  # "
                                "ctypes.POINTER(node): its value is the worker address it "
                                "holds\n"));
  EXPECT_THAT(module, HasSubstr("current_visitor = _variable(\"current_visitor\", "
                                "ctypes.c_void_p)  # visitor: its value"));
}

}  // namespace
}  // namespace cli
}  // namespace ffibox
