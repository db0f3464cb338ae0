// Builders for `ffibox.v1.Type` / `Value` messages, shared by the core tests (testonly).
#ifndef FFIBOX_CORE_TEST_TYPES_H_
#define FFIBOX_CORE_TEST_TYPES_H_

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>

#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace testing {

inline v1::Type ScalarType(v1::Scalar scalar) {
  v1::Type type;
  type.set_scalar(scalar);
  return type;
}

inline v1::Type PointerTo(const v1::Type& pointee) {
  v1::Type type;
  *type.mutable_pointer()->mutable_pointee() = pointee;
  return type;
}

inline v1::Type ArrayOf(const v1::Type& element, uint64_t length) {
  v1::Type type;
  *type.mutable_array()->mutable_element() = element;
  type.mutable_array()->set_length(length);
  return type;
}

inline v1::Field MakeField(const std::string& name, const v1::Type& type,
                           std::optional<int> bit_width = std::nullopt) {
  v1::Field field;
  field.set_name(name);
  *field.mutable_type() = type;
  if (bit_width.has_value()) field.set_bit_width(*bit_width);
  return field;
}

inline v1::Type Record(v1::RecordType::Kind kind, std::initializer_list<v1::Field> fields,
                       uint32_t pack = 0) {
  v1::Type type;
  type.mutable_record()->set_kind(kind);
  type.mutable_record()->set_pack(pack);
  for (const v1::Field& field : fields) *type.mutable_record()->add_fields() = field;
  return type;
}

inline v1::Type Struct(std::initializer_list<v1::Field> fields, uint32_t pack = 0) {
  return Record(v1::RecordType::STRUCT, fields, pack);
}

inline v1::Type Union(std::initializer_list<v1::Field> fields, uint32_t pack = 0) {
  return Record(v1::RecordType::UNION, fields, pack);
}

inline v1::Value IntValue(int64_t v) {
  v1::Value value;
  value.set_int_value(v);
  return value;
}

inline v1::Value UintValue(uint64_t v) {
  v1::Value value;
  value.set_uint_value(v);
  return value;
}

inline v1::Value FloatValue(double v) {
  v1::Value value;
  value.set_float_value(v);
  return value;
}

inline v1::Value BoolValue(bool v) {
  v1::Value value;
  value.set_bool_value(v);
  return value;
}

inline v1::Value BytesValue(const std::string& v) {
  v1::Value value;
  value.set_bytes_value(v);
  return value;
}

inline v1::Value TextValue(const std::string& v) {
  v1::Value value;
  value.set_text_value(v);
  return value;
}

inline v1::Value NullPointer() {
  v1::Value value;
  value.mutable_pointer()->set_null(true);
  return value;
}

inline v1::Value RemotePointer(uint64_t address, uint64_t generation) {
  v1::Value value;
  value.mutable_pointer()->mutable_remote()->set_address(address);
  value.mutable_pointer()->mutable_remote()->set_generation(generation);
  return value;
}

inline v1::Value BlockPointer(uint32_t block, uint64_t offset = 0) {
  v1::Value value;
  value.mutable_pointer()->mutable_block()->set_block(block);
  value.mutable_pointer()->mutable_block()->set_offset(offset);
  return value;
}

}  // namespace testing
}  // namespace ffibox

#endif  // FFIBOX_CORE_TEST_TYPES_H_
