#include "core/answer_limits.h"

#include <algorithm>
#include <climits>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "core/call_shape.h"
#include "core/piece_stream.h"
#include "core/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"

namespace ffibox {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::FieldDescriptor;
using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedInputStream;

// protobuf's own bound on nesting.
constexpr int kMaxDepth = 100;

using LimitMember = uint64_t AnswerLimits::*;

// The repeated fields an answer may hold, and which limit bounds each.
const std::vector<std::pair<const FieldDescriptor*, LimitMember>>& BoundedFields() {
  static const auto* const fields = [] {
    const std::pair<const char*, LimitMember> names[] = {
        {"ffibox.v1.CallResult.blocks", &AnswerLimits::blocks},
        {"ffibox.v1.CallResult.kept", &AnswerLimits::kept},
        {"ffibox.v1.BlockContents.pointers", &AnswerLimits::pointers},
        {"ffibox.v1.CallResult.changed", &AnswerLimits::changed},
        {"ffibox.v1.BatchResult.results", &AnswerLimits::results},
        {"ffibox.v1.LayoutResult.fields", &AnswerLimits::layout_fields},
        {"ffibox.v1.CallbackInvoke.args", &AnswerLimits::args},
        {"ffibox.v1.CallbackInvoke.pointees", &AnswerLimits::pointees},
    };
    auto* found = new std::vector<std::pair<const FieldDescriptor*, LimitMember>>;
    for (const auto& [name, member] : names) {
      const FieldDescriptor* field = DescriptorPool::generated_pool()->FindFieldByName(name);
      if (field != nullptr) found->emplace_back(field, member);
    }
    return found;
  }();
  return *fields;
}

absl::Status Malformed() { return absl::InvalidArgumentError("is not a valid encoding"); }

// One walk over an encoded answer, with what is left of each limit.
class ShapeWalk {
 public:
  ShapeWalk(CodedInputStream* in, const AnswerLimits& limits) : in_(in), left_(limits) {}

  absl::Status Walk(const Descriptor* type, int depth) {
    if (depth > kMaxDepth) {
      return absl::InvalidArgumentError(
          absl::StrCat("nests messages more than ", kMaxDepth, " deep"));
    }
    absl::InlinedVector<int, 8> singular_seen;
    // In a returned block: the pointers the bytes of its data seen so far hold, one per
    // word; more come out of the limits.
    const bool block_contents = type == v1::BlockContents::descriptor();
    uint64_t backed_pointers = 0;
    for (;;) {
      const uint32_t tag = in_->ReadTag();
      if (tag == 0) break;
      const int number = WireFormatLite::GetTagFieldNumber(tag);
      const WireFormatLite::WireType wire_type = WireFormatLite::GetTagWireType(tag);
      const FieldDescriptor* field = type->FindFieldByNumber(number);
      // The parser takes a field with another wire type as unknown, except the packed
      // form of a repeated scalar.
      const bool known =
          field != nullptr &&
          (wire_type == WireFormatLite::WireTypeForFieldType(
                            static_cast<WireFormatLite::FieldType>(field->type())) ||
           (field->is_packable() && wire_type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
      if (!known) {
        if (++unknown_ > kMaxUnknownFields) {
          return absl::InvalidArgumentError(
              absl::StrCat("holds more than ", kMaxUnknownFields, " unknown fields"));
        }
      } else if (block_contents && number == v1::BlockContents::kPointersFieldNumber &&
                 backed_pointers > 0) {
        --backed_pointers;
      } else if (field->is_repeated()) {
        uint64_t* left = LeftOf(field);
        if (left == nullptr || *left == 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("holds more ", field->full_name(), " than the request allows"));
        }
        --*left;
      } else if (std::find(singular_seen.begin(), singular_seen.end(), number) !=
                 singular_seen.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("holds ", field->full_name(), " twice in one message"));
      } else {
        singular_seen.push_back(number);
      }
      uint32_t length = 0;
      FFIBOX_RETURN_IF_ERROR(
          Value(known && field->type() == FieldDescriptor::TYPE_MESSAGE ? field : nullptr,
                wire_type, depth, &length));
      if (block_contents && known && number == v1::BlockContents::kDataFieldNumber) {
        backed_pointers = length / 8;
      }
    }
    return in_->ConsumedEntireMessage() ? absl::OkStatus() : Malformed();
  }

 private:
  // Reads one field's value: walks it when `message_field` (a known message field) is set,
  // else skips it. `length` gets the length of a length-delimited value.
  absl::Status Value(const FieldDescriptor* message_field, WireFormatLite::WireType wire_type,
                     int depth, uint32_t* length_out) {
    switch (wire_type) {
      case WireFormatLite::WIRETYPE_VARINT: {
        uint64_t value;
        return in_->ReadVarint64(&value) ? absl::OkStatus() : Malformed();
      }
      case WireFormatLite::WIRETYPE_FIXED64: {
        uint64_t value;
        return in_->ReadLittleEndian64(&value) ? absl::OkStatus() : Malformed();
      }
      case WireFormatLite::WIRETYPE_FIXED32: {
        uint32_t value;
        return in_->ReadLittleEndian32(&value) ? absl::OkStatus() : Malformed();
      }
      case WireFormatLite::WIRETYPE_LENGTH_DELIMITED: {
        uint32_t length;
        if (!in_->ReadVarint32(&length) || length > INT_MAX) return Malformed();
        *length_out = length;
        // A value longer than what is left of the message around it: protobuf's parser would
        // read it past that message's end, through bytes read here as the fields of another
        // (PushLimit below would keep the shorter limit).
        const int left = in_->BytesUntilLimit();
        if (left >= 0 && length > static_cast<uint32_t>(left)) return Malformed();
        if (message_field == nullptr) {
          return in_->Skip(static_cast<int>(length)) ? absl::OkStatus() : Malformed();
        }
        const CodedInputStream::Limit limit = in_->PushLimit(static_cast<int>(length));
        absl::Status inner = Walk(message_field->message_type(), depth + 1);
        if (!inner.ok()) return inner;
        // The input may end before the message's length does.
        if (in_->BytesUntilLimit() != 0) return Malformed();
        in_->PopLimit(limit);
        return absl::OkStatus();
      }
      default:
        return Malformed();  // groups: in no ffibox message
    }
  }

  uint64_t* LeftOf(const FieldDescriptor* field) {
    for (const auto& [bounded, member] : BoundedFields()) {
      if (bounded == field) return &(left_.*member);
    }
    return nullptr;
  }

  CodedInputStream* const in_;
  AnswerLimits left_;
  uint64_t unknown_ = 0;
};

}  // namespace

void AnswerLimits::Add(const AnswerLimits& other) {
  blocks += other.blocks;
  kept += other.kept;
  pointers += other.pointers;
  // Only one result of an answer reports changed runs (a batch's last): the most of one.
  changed = std::max(changed, other.changed);
  results += other.results;
  layout_fields += other.layout_fields;
  args += other.args;
  pointees += other.pointees;
}

uint64_t MaxChangedRuns() { return kMaxWatchedBytes / 8; }

AnswerLimits CallAnswerLimits(const ExpectedCallResult& expected) {
  AnswerLimits limits;
  for (size_t i = 0; i < expected.returned_block_sizes.size(); ++i) {
    const uint64_t size = expected.returned_block_sizes[i];
    if (size == ExpectedCallResult::kNotReturned) continue;
    ++limits.blocks;
    // A block whose bytes come back in the answer holds its pointers itself (ShapeWalk); one
    // in the shared area comes back without them, and when lasting its words are scanned.
    const bool shared = i < expected.shared_blocks.size() && expected.shared_blocks[i];
    if (shared && expected.shared_lasting[i]) limits.pointers += size / 8;
  }
  limits.kept = expected.kept_blocks.size();
  limits.changed = MaxChangedRuns();
  return limits;
}

AnswerLimits LayoutAnswerLimits(const v1::Type& type) {
  AnswerLimits limits;
  if (type.has_record()) limits.layout_fields = type.record().fields_size();
  return limits;
}

AnswerLimits InvokeLimits(uint64_t max_params) {
  AnswerLimits limits;
  limits.args = max_params;
  limits.pointees = max_params;
  return limits;
}

absl::Status CheckAnswerShape(const std::vector<absl::string_view>& pieces, const Descriptor* type,
                              absl::FunctionRef<AnswerLimits()> limits) {
  size_t total = 0;
  for (absl::string_view piece : pieces) total += piece.size();
  if (total <= kShapeCheckedBytes) return absl::OkStatus();
  return WalkAnswerShape(pieces, type, limits());
}

absl::Status WalkAnswerShape(const std::vector<absl::string_view>& pieces, const Descriptor* type,
                             const AnswerLimits& limits) {
  size_t total = 0;
  for (absl::string_view piece : pieces) total += piece.size();
  if (total > INT_MAX) return Malformed();
  PieceInputStream stream(pieces, [](size_t) {});
  CodedInputStream in(&stream);
  ShapeWalk walk(&in, limits);
  return walk.Walk(type, 0);
}

}  // namespace ffibox
