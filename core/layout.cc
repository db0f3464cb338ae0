#include "core/layout.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/types.h"

namespace ffibox {
namespace {

uint64_t RoundUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

absl::Status Overflow() { return InvalidArgumentAt("", "type is too large"); }

// Beyond this, bit arithmetic (bytes * 8) could overflow; validated types are far smaller.
constexpr uint64_t kMaxLayoutBytes = 1ull << 56;

absl::Status Layout(const v1::Type& type, bool want_fields, int depth, TypeLayout* out);

// gcc's excess_unit_span: whether a bit field of `width` bits at `bitpos` would span more
// units of its type's alignment than the type itself occupies.
bool ExcessUnitSpan(uint64_t bitpos, uint64_t width, uint64_t align_bits, uint64_t type_bits) {
  uint64_t offset = bitpos % align_bits;
  return (offset + width + align_bits - 1) / align_bits > type_bits / align_bits;
}

absl::Status LayoutRecord(const v1::RecordType& record, bool want_fields, int depth,
                          TypeLayout* out) {
  const bool is_union = record.kind() == v1::RecordType::UNION;
  const uint64_t pack = record.pack();
  uint64_t bitpos = 0;    // structs: next free bit
  uint64_t max_bits = 0;  // unions: widest member
  uint64_t alignment = 1;
  if (want_fields) out->fields.reserve(record.fields_size());
  for (const v1::Field& field : record.fields()) {
    TypeLayout member;
    absl::Status status = Layout(field.type(), false, depth + 1, &member);
    if (!status.ok()) return status;
    const uint64_t natural = member.alignment;
    const uint64_t capped = pack != 0 ? std::min(natural, pack) : natural;
    FieldLayout placed;
    placed.size = member.size;
    placed.alignment = capped;
    if (field.has_bit_width()) {
      const uint64_t width = static_cast<uint64_t>(field.bit_width());
      const uint64_t type_bits = member.size * 8;
      if (field.type().kind_case() != v1::Type::kScalar || field.bit_width() < 0 ||
          type_bits == 0 || width > type_bits) {
        return InvalidArgumentAt("", "bad bit field (validate the type first)");
      }
      placed.bit_width = static_cast<uint32_t>(width);
      if (width == 0) {
        // Closes the unit: aligns to the full type, not limited by pack, and (unnamed in C)
        // does not raise the record's alignment on x86-64.
        if (!is_union) bitpos = RoundUp(bitpos, natural * 8);
      } else {
        if (!is_union && pack == 0 && ExcessUnitSpan(bitpos, width, natural * 8, type_bits)) {
          bitpos = RoundUp(bitpos, natural * 8);
        }
        // Named bit fields give the record their type's alignment; unnamed ones do not.
        if (!field.name().empty()) alignment = std::max(alignment, capped);
      }
      uint64_t start = is_union ? 0 : bitpos;
      uint64_t unit = start / type_bits * type_bits;
      if (width != 0 && start + width > unit + type_bits) unit = start / 8 * 8;
      placed.offset = unit / 8;
      placed.bit_offset = static_cast<uint32_t>(start - unit);
      if (is_union) {
        max_bits = std::max(max_bits, width);
      } else {
        bitpos += width;
      }
    } else {
      alignment = std::max(alignment, capped);
      if (member.size > kMaxLayoutBytes) return Overflow();
      if (is_union) {
        max_bits = std::max(max_bits, member.size * 8);
      } else {
        bitpos = RoundUp(bitpos, capped * 8);
        placed.offset = bitpos / 8;
        bitpos += member.size * 8;
      }
    }
    if (bitpos > kMaxLayoutBytes * 8) return Overflow();
    if (want_fields) {
      placed.name = field.name();
      out->fields.push_back(std::move(placed));
    }
  }
  const uint64_t bits = is_union ? max_bits : bitpos;
  out->size = RoundUp((bits + 7) / 8, alignment);
  out->alignment = alignment;
  return absl::OkStatus();
}

absl::Status Layout(const v1::Type& type, bool want_fields, int depth, TypeLayout* out) {
  // Validation bounds depth far lower; this only keeps an unvalidated type from recursing
  // without end.
  if (depth > 1000) return InvalidArgumentAt("", "type nesting is too deep");
  switch (type.kind_case()) {
    case v1::Type::kScalar: {
      ScalarInfo info = GetScalarInfo(type.scalar());
      if (info.size == 0) {
        return InvalidArgumentAt("", "VOID or unknown scalar has no layout");
      }
      out->size = info.size;
      out->alignment = info.alignment;
      return absl::OkStatus();
    }
    case v1::Type::kPointer:
    case v1::Type::kFunction:
      out->size = sizeof(void*);
      out->alignment = alignof(void*);
      return absl::OkStatus();
    case v1::Type::kArray: {
      TypeLayout element;
      absl::Status status = Layout(type.array().element(), false, depth + 1, &element);
      if (!status.ok()) return status;
      if (__builtin_mul_overflow(element.size, type.array().length(), &out->size) ||
          out->size > kMaxLayoutBytes) {
        return Overflow();
      }
      out->alignment = element.alignment;
      return absl::OkStatus();
    }
    case v1::Type::kRecord:
      if (type.record().fields_size() == 0) {
        return InvalidArgumentAt("", "a record needs at least one field");
      }
      return LayoutRecord(type.record(), want_fields, depth, out);
    case v1::Type::kRegistered:
      return ErrorStatus(v1::UNIMPLEMENTED, "registered types are not supported yet");
    case v1::Type::KIND_NOT_SET:
      break;
  }
  return InvalidArgumentAt("", "type kind is not set");
}

}  // namespace

absl::StatusOr<TypeLayout> ComputeLayout(const v1::Type& type) {
  TypeLayout layout;
  absl::Status status = Layout(type, true, 0, &layout);
  if (!status.ok()) return status;
  return layout;
}

absl::Status ComputeSizeAndAlignment(const v1::Type& type, uint64_t* size, uint64_t* alignment) {
  TypeLayout layout;
  absl::Status status = Layout(type, false, 0, &layout);
  if (!status.ok()) return status;
  *size = layout.size;
  *alignment = layout.alignment;
  return absl::OkStatus();
}

}  // namespace ffibox
