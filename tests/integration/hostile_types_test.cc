// Hostile types through a real ffiboxd: absurd arrays, bit widths, field counts, nesting
// and relocations are refused with a typed error naming them, and the session keeps
// serving.
#include <array>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "client/cpp/ffibox_client.h"
#include "core/test_types.h"
#include "gtest/gtest.h"
#include "tests/integration/shapes_fixture.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using ::ffibox::testing::BlockPointer;

using test_support::BitField;
using test_support::ShapesTest;

class HostileTypesTest : public ShapesTest {
 protected:
  // Expects GetLayout of `type` to be refused with INVALID_ARGUMENT whose field contains
  // `field_part`, and the session to keep serving.
  void ExpectRefused(const v1::Type& type, const std::string& field_part) {
    absl::StatusOr<v1::LayoutResult> layout = session_->Layout(type);
    ASSERT_FALSE(layout.ok());
    const v1::Error error = ErrorOf(layout.status());
    EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT) << layout.status();
    EXPECT_NE(error.field().find(field_part), std::string::npos)
        << "field '" << error.field() << "' does not name " << field_part;
    ExpectSessionStillServes();
  }

  static v1::Type RecordOf(std::vector<v1::Field> fields) {
    v1::Type type;
    type.mutable_record()->set_kind(v1::RecordType::STRUCT);
    type.mutable_record()->set_name("Hostile");
    for (v1::Field& field : fields) *type.mutable_record()->add_fields() = std::move(field);
    return type;
  }
};

TEST_F(HostileTypesTest, ArrayOfTwoToTheSixtySecondElementsIsRefused) {
  v1::Type type;
  type.mutable_array()->mutable_element()->set_scalar(v1::INT);
  type.mutable_array()->set_length(uint64_t{1} << 62);
  ExpectRefused(type, "length");
  // Inside a record, the field is named.
  v1::Field field;
  field.set_name("huge");
  *field.mutable_type() = type;
  v1::Field ok_field;
  ok_field.set_name("fine");
  ok_field.mutable_type()->set_scalar(v1::INT);
  ExpectRefused(RecordOf({ok_field, field}), "fields[1]");
}

TEST_F(HostileTypesTest, NegativeAndOversizedBitWidthsAreRefused) {
  ExpectRefused(RecordOf({BitField("a", v1::UINT, 3), BitField("b", v1::INT, -1)}),
                "fields[1].bit_width");
  ExpectRefused(RecordOf({BitField("wide", v1::INT, 40)}), "fields[0].bit_width");
  v1::Field not_integer = BitField("d", v1::DOUBLE, 3);
  ExpectRefused(RecordOf({not_integer}), "bit_width");
}

TEST_F(HostileTypesTest, HundredThousandFieldsAndDeepNestingAreRefused) {
  std::vector<v1::Field> fields(100000);
  for (size_t i = 0; i < fields.size(); ++i) {
    fields[i].set_name("f");
    fields[i].mutable_type()->set_scalar(v1::CHAR);
  }
  ExpectRefused(RecordOf(std::move(fields)), "fields");

  // 40 pointer levels: beyond the server's limit of 32, within protobuf's parse depth (a
  // message nested deeper than protobuf parses is refused by the transport, see
  // docs/protocol.md).
  v1::Type deep;
  deep.set_scalar(v1::INT);
  for (int i = 0; i < 40; ++i) {
    v1::Type outer;
    *outer.mutable_pointer()->mutable_pointee() = std::move(deep);
    deep = std::move(outer);
  }
  ExpectRefused(deep, "pointee");
}

TEST_F(HostileTypesTest, RelocationOutsideItsBlockIsRefusedNamingIt) {
  RawFunction increment = Raw("increment", TypedFunction<void(int*)>::Signature());
  v1::Call past_end;
  v1::MemoryBlock* block = past_end.add_blocks();
  block->set_size(8);
  v1::Relocation* relocation = block->add_relocations();
  relocation->set_offset(4);  // offset + 8 > size
  relocation->mutable_target()->set_block(0);
  *past_end.add_args() = BlockPointer(0);
  v1::Error error = ErrorOf(increment.Call(past_end).status());
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT);
  EXPECT_NE(error.field().find("blocks[0].relocations[0]"), std::string::npos) << error.field();

  v1::Call bad_target = past_end;
  bad_target.mutable_blocks(0)->mutable_relocations(0)->set_offset(0);
  bad_target.mutable_blocks(0)->mutable_relocations(0)->mutable_target()->set_offset(100);
  error = ErrorOf(increment.Call(bad_target).status());
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT);
  EXPECT_NE(error.field().find("relocations[0]"), std::string::npos) << error.field();

  v1::Call missing_block = past_end;
  missing_block.mutable_blocks(0)->mutable_relocations(0)->set_offset(0);
  missing_block.mutable_blocks(0)->mutable_relocations(0)->mutable_target()->set_block(5);
  error = ErrorOf(increment.Call(missing_block).status());
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT);

  // Neither a target nor a callback; a callback the session never defined.
  v1::Call nothing_named = past_end;
  nothing_named.mutable_blocks(0)->mutable_relocations(0)->set_offset(0);
  nothing_named.mutable_blocks(0)->mutable_relocations(0)->clear_target();
  error = ErrorOf(increment.Call(nothing_named).status());
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT);
  EXPECT_NE(error.field().find("blocks[0].relocations[0]"), std::string::npos) << error.field();
  v1::Call undefined_callback = nothing_named;
  undefined_callback.mutable_blocks(0)->mutable_relocations(0)->set_callback(77);
  error = ErrorOf(increment.Call(undefined_callback).status());
  EXPECT_EQ(error.code(), v1::NOT_FOUND);
  EXPECT_NE(error.field().find("blocks[0].relocations[0].pointer.callback"), std::string::npos)
      << error.field();
  ExpectSessionStillServes();
}

}  // namespace
}  // namespace ffibox
