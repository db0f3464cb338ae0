// The worker's GetLayout against gcc: for each of the 43 shapes compiled into the test
// library (tests/testlibs/layout_shapes.c), the same shape is built here as a v1::Type, and
// size, alignment, and the offset (bit position and width for bit fields) of every named
// field must equal what gcc computed (issue 3, item 2).
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/cpp/ffibox_client.h"
#include "gtest/gtest.h"
#include "tests/support/session_fixture.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using test_support::TestLibPath;
using test_support::TestServer;

// ---- A small builder for the shapes' types --------------------------------------------

v1::Type T(v1::Scalar scalar) {
  v1::Type type;
  type.set_scalar(scalar);
  return type;
}

v1::Type Arr(v1::Type element, uint64_t length) {
  v1::Type type;
  *type.mutable_array()->mutable_element() = std::move(element);
  type.mutable_array()->set_length(length);
  return type;
}

v1::Field F(const std::string& name, v1::Type type) {
  v1::Field field;
  field.set_name(name);
  *field.mutable_type() = std::move(type);
  return field;
}

v1::Field Bits(const std::string& name, v1::Scalar scalar, int width) {
  v1::Field field = F(name, T(scalar));
  field.set_bit_width(width);
  return field;
}

v1::Type Record(v1::RecordType::Kind kind, const std::string& name, uint32_t pack,
                std::vector<v1::Field> fields) {
  v1::Type type;
  v1::RecordType* record = type.mutable_record();
  record->set_kind(kind);
  record->set_name(name);
  record->set_pack(pack);
  for (v1::Field& field : fields) *record->add_fields() = std::move(field);
  return type;
}

v1::Type Struct(const std::string& name, std::vector<v1::Field> fields, uint32_t pack = 0) {
  return Record(v1::RecordType::STRUCT, name, pack, std::move(fields));
}

v1::Type Union(const std::string& name, std::vector<v1::Field> fields) {
  return Record(v1::RecordType::UNION, name, 0, std::move(fields));
}

v1::Type FunctionPointer(v1::Type result, std::vector<v1::Type> params) {
  v1::Type type;
  *type.mutable_function()->mutable_result() = std::move(result);
  for (v1::Type& param : params) *type.mutable_function()->add_params() = std::move(param);
  return type;
}

// The shapes of layout_shapes.c, by C type name.
std::map<std::string, v1::Type> Shapes() {
  using v1::BOOL, v1::CHAR, v1::SCHAR, v1::UCHAR, v1::SHORT, v1::INT, v1::UINT, v1::LONG, v1::ULONG,
      v1::LONGLONG, v1::FLOAT, v1::DOUBLE, v1::LONGDOUBLE, v1::WCHAR, v1::POINTER, v1::CSTRING;
  std::map<std::string, v1::Type> s;
  s["S_char_int"] = Struct("S_char_int", {F("c", T(CHAR)), F("i", T(INT))});
  s["S_int_char"] = Struct("S_int_char", {F("i", T(INT)), F("c", T(CHAR))});
  s["S_char_double"] = Struct("S_char_double", {F("c", T(CHAR)), F("d", T(DOUBLE))});
  s["S_short3"] = Struct("S_short3", {F("a", T(SHORT)), F("b", T(SHORT)), F("c", T(SHORT))});
  s["S_mixed"] = Struct("S_mixed", {F("a", T(CHAR)), F("b", T(LONG)), F("c", T(CHAR)),
                                    F("d", T(FLOAT)), F("e", T(SHORT))});
  s["S_ll_char"] = Struct("S_ll_char", {F("a", T(LONGLONG)), F("b", T(CHAR))});
  s["S_bool_int"] = Struct("S_bool_int", {F("a", T(BOOL)), F("b", T(INT)), F("c", T(BOOL))});
  s["S_ptrs"] = Struct("S_ptrs", {F("c", T(CHAR)), F("p", T(POINTER)), F("s", T(CSTRING))});
  s["S_long_double"] = Struct("S_long_double", {F("c", T(CHAR)), F("ld", T(LONGDOUBLE))});
  s["S_wchar"] = Struct("S_wchar", {F("c", T(CHAR)), F("w", T(WCHAR)), F("s", T(SHORT))});
  s["S_func_ptr"] =
      Struct("S_func_ptr", {F("c", T(CHAR)), F("fn", FunctionPointer(T(INT), {T(INT)}))});
  s["S_empty_tail"] = Struct("S_empty_tail", {F("d", T(DOUBLE)), F("c", Arr(T(CHAR), 3))});
  s["S_nested"] =
      Struct("S_nested", {F("c", T(CHAR)), F("inner", s["S_char_double"]), F("s", T(SHORT))});
  s["S_nested2"] =
      Struct("S_nested2", {F("a", s["S_int_char"]), F("b", s["S_int_char"]), F("c", T(CHAR))});
  s["S_char_array"] = Struct("S_char_array", {F("tag", Arr(T(CHAR), 5)), F("i", T(INT))});
  s["S_int_array"] =
      Struct("S_int_array", {F("s", T(SHORT)), F("v", Arr(T(INT), 3)), F("c", T(CHAR))});
  s["S_2d"] =
      Struct("S_2d", {F("c", T(CHAR)), F("m", Arr(Arr(T(SHORT), 3), 2)), F("d", T(DOUBLE))});
  s["S_struct_array"] =
      Struct("S_struct_array", {F("c", T(CHAR)), F("items", Arr(s["S_char_int"], 3))});
  s["U_int_float"] = Union("U_int_float", {F("i", T(INT)), F("f", T(FLOAT))});
  s["U_mixed"] = Union("U_mixed", {F("c", Arr(T(CHAR), 9)), F("d", T(DOUBLE)), F("s", T(SHORT))});
  s["U_struct"] = Union("U_struct", {F("s", s["S_char_double"]), F("l", T(LONG))});
  s["S_with_union"] =
      Struct("S_with_union", {F("c", T(CHAR)), F("u", s["U_mixed"]), F("i", T(INT))});
  s["P1_mixed"] =
      Struct("P1_mixed", {F("c", T(CHAR)), F("i", T(INT)), F("d", T(DOUBLE)), F("s", T(SHORT))}, 1);
  s["P1_nested"] = Struct("P1_nested", {F("c", T(CHAR)), F("inner", s["S_char_int"])}, 1);
  s["P1_bits"] = Struct("P1_bits", {F("c", T(CHAR)), Bits("a", UINT, 12), Bits("b", UINT, 7)}, 1);
  s["P2_mixed"] =
      Struct("P2_mixed", {F("c", T(CHAR)), F("i", T(INT)), F("d", T(DOUBLE)), F("e", T(CHAR))}, 2);
  s["P2_array"] = Struct("P2_array", {F("c", T(CHAR)), F("v", Arr(T(LONG), 2))}, 2);
  s["P4_mixed"] = Struct(
      "P4_mixed", {F("c", T(CHAR)), F("d", T(DOUBLE)), F("s", T(SHORT)), F("l", T(LONG))}, 4);
  s["P4_long_double"] = Struct("P4_long_double", {F("c", T(CHAR)), F("ld", T(LONGDOUBLE))}, 4);
  s["B_unsigned"] =
      Struct("B_unsigned", {Bits("a", UINT, 3), Bits("b", UINT, 5), Bits("c", UINT, 24)});
  s["B_signed"] = Struct("B_signed", {Bits("a", INT, 4), Bits("b", INT, 12), Bits("c", INT, 16)});
  s["B_mixed_widths"] = Struct("B_mixed_widths", {Bits("a", UINT, 3), Bits("b", INT, 5),
                                                  Bits("c", UINT, 12), Bits("d", INT, 1)});
  s["B_zero_width"] =
      Struct("B_zero_width", {Bits("a", UINT, 3), Bits("", UINT, 0), Bits("b", UINT, 5)});
  s["B_unnamed"] = Struct("B_unnamed", {Bits("a", UINT, 3), Bits("", UINT, 5), Bits("b", UINT, 7)});
  s["B_straddle"] = Struct("B_straddle", {Bits("a", UINT, 30), Bits("b", UINT, 4)});
  s["B_char_short"] = Struct("B_char_short", {F("a", T(CHAR)), Bits("b", UCHAR, 3),
                                              Bits("c", SHORT, 9), Bits("d", UCHAR, 7)});
  s["B_long"] = Struct("B_long", {Bits("a", ULONG, 40), Bits("b", ULONG, 30), Bits("c", INT, 5)});
  s["B_with_plain"] = Struct(
      "B_with_plain", {F("x", T(INT)), Bits("a", UINT, 4), F("y", T(CHAR)), Bits("b", UINT, 6)});
  s["B_bool"] = Struct("B_bool", {Bits("a", BOOL, 1), Bits("b", BOOL, 1), Bits("c", INT, 3)});
  s["U_bits"] = Union("U_bits", {Bits("a", UINT, 5), Bits("b", INT, 9), F("c", T(CHAR))});
  s["A_int10"] = Arr(T(INT), 10);
  s["A_struct3"] = Arr(s["S_char_double"], 3);
  s["A_2d"] = Arr(Arr(T(DOUBLE), 4), 3);
  (void)SCHAR;
  return s;
}

// What gcc computed for one field, read from the library's table.
struct GccField {
  std::string name;
  long offset;
  long bit_position;
  int bit_width;
};

struct GccShape {
  std::string name;
  long size;
  long alignment;
  std::vector<GccField> fields;
};

class LayoutTest : public test_support::SessionFixture {
 protected:
  // Reads the library's table of gcc layouts through its accessor functions.
  std::vector<GccShape> ReadGccTable() {
    std::vector<GccShape> shapes;
    auto count = lib_->Function<int()>("layout_shape_count");
    auto name = lib_->Function<std::string(int)>("layout_shape_name");
    auto size = lib_->Function<long(int)>("layout_shape_size");
    auto alignment = lib_->Function<long(int)>("layout_shape_alignment");
    auto field_count = lib_->Function<int(int)>("layout_shape_field_count");
    auto field_name = lib_->Function<std::string(int, int)>("layout_field_name");
    auto offset = lib_->Function<long(int, int)>("layout_field_offset");
    auto bit_position = lib_->Function<long(int, int)>("layout_field_bit_position");
    auto bit_width = lib_->Function<int(int, int)>("layout_field_bit_width");
    for (const absl::Status& status :
         {count.status(), name.status(), size.status(), alignment.status(), field_count.status(),
          field_name.status(), offset.status(), bit_position.status(), bit_width.status()}) {
      EXPECT_TRUE(status.ok()) << status;
      if (!status.ok()) return shapes;
    }
    const int shape_count = *(*count)();
    for (int s = 0; s < shape_count; ++s) {
      GccShape shape{*(*name)(s), *(*size)(s), *(*alignment)(s), {}};
      const int fields = *(*field_count)(s);
      for (int f = 0; f < fields; ++f) {
        shape.fields.push_back(
            {*(*field_name)(s, f), *(*offset)(s, f), *(*bit_position)(s, f), *(*bit_width)(s, f)});
      }
      shapes.push_back(std::move(shape));
    }
    return shapes;
  }
};

TEST_F(LayoutTest, TheLibraryDescribesAtLeastThirtyShapesAndTheTestBuildsEachOne) {
  const std::vector<GccShape> table = ReadGccTable();
  EXPECT_GE(table.size(), 30u);
  const std::map<std::string, v1::Type> types = Shapes();
  EXPECT_EQ(table.size(), types.size());
  for (const GccShape& shape : table) {
    EXPECT_EQ(types.count(shape.name), 1u) << "no v1::Type built for " << shape.name;
  }
}

TEST_F(LayoutTest, WorkerLayoutOfEveryShapeEqualsGccs) {
  const std::map<std::string, v1::Type> types = Shapes();
  int compared_fields = 0;
  for (const GccShape& shape : ReadGccTable()) {
    SCOPED_TRACE(shape.name);
    const auto type = types.find(shape.name);
    if (type == types.end()) continue;  // reported by the test above
    absl::StatusOr<v1::LayoutResult> layout = session_->Layout(type->second);
    ASSERT_OK(layout);
    EXPECT_EQ(layout->size(), static_cast<uint64_t>(shape.size));
    EXPECT_EQ(layout->alignment(), static_cast<uint64_t>(shape.alignment));
    for (const GccField& gcc : shape.fields) {
      SCOPED_TRACE(gcc.name);
      const v1::FieldLayout* field = nullptr;
      for (const v1::FieldLayout& candidate : layout->fields()) {
        if (candidate.name() == gcc.name) field = &candidate;
      }
      ASSERT_NE(field, nullptr) << "the worker reported no field " << gcc.name;
      EXPECT_EQ(field->bit_width(), static_cast<uint32_t>(gcc.bit_width));
      if (gcc.bit_width == 0) {
        EXPECT_EQ(field->offset(), static_cast<uint64_t>(gcc.offset));
      } else {
        EXPECT_EQ(field->offset() * 8 + field->bit_offset(),
                  static_cast<uint64_t>(gcc.bit_position))
            << "worker: offset " << field->offset() << " bit " << field->bit_offset();
      }
      ++compared_fields;
    }
  }
  EXPECT_GE(compared_fields, 100);
}

TEST_F(LayoutTest, DescribedCppRecordsAgreeWithTheWorkerAndGcc) {
  // The C++ compiler's layout (what FFIBOX_STRUCT relies on) equals the worker's for the
  // library's shapes that C++ can describe; Session::Layout is the same GetLayout.
  const std::map<std::string, v1::Type> types = Shapes();
  absl::StatusOr<v1::LayoutResult> nested = session_->Layout(types.at("S_nested"));
  ASSERT_OK(nested);
  struct SCharDouble {
    char c;
    double d;
  };
  struct SNested {
    char c;
    SCharDouble inner;
    short s;
  };
  EXPECT_EQ(nested->size(), sizeof(SNested));
  EXPECT_EQ(nested->fields(1).offset(), offsetof(SNested, inner));
  EXPECT_EQ(nested->fields(2).offset(), offsetof(SNested, s));
}

}  // namespace
}  // namespace ffibox
