#include "core/encoding_limits.h"

#include <algorithm>
#include <climits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "core/call_shape.h"
#include "core/layout.h"
#include "core/piece_stream.h"
#include "core/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/message.h"
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
        // An invocation tells the kept blocks of the call that made it (CallbackInvoke.kept).
        {"ffibox.v1.CallbackInvoke.kept", &AnswerLimits::kept},
        {"ffibox.v1.MemoryDataList.reads", &AnswerLimits::memory_reads},
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

// What a parse allocates besides the message objects themselves (protobuf 3.21, in an arena or
// on the heap), each an upper bound at the parse's peak: an allocation's header and rounding,
// a repeated field's array (at least four slots) and a slot of it (the old array and the new,
// twice as long, both held while it grows), a string object and its characters (held apart past
// 15), the list of a message's unknown fields and an entry of it (which may be twice as long as it
// holds), and the node and bucket of a map's entry.
constexpr uint64_t kAllocationBytes = 16;
// The parse's start: an arena's first block.
constexpr uint64_t kStartBytes = 4096;
constexpr uint64_t kArrayBytes = 48 + kAllocationBytes;
constexpr uint64_t kSlotBytes = 24;
constexpr uint64_t kStringBytes = 32 + kAllocationBytes;
constexpr uint64_t kShortString = 15;
constexpr uint64_t kUnknownListBytes = 256;
constexpr uint64_t kUnknownFieldBytes = 48;
constexpr uint64_t kMapNodeBytes = 64;
// A map's key or value is parsed, then copied into the map's node; one parsed out of order
// is parsed into an entry object first and copied from there.
constexpr uint64_t kMapStringCopies = 3;
// A value this long may be parsed by protobuf's own parser, which reserves this much, then
// doubles (core/piece_stream.h).
constexpr uint64_t kReservedStringCopies = 3;

// The bytes an empty object of `type` takes: its class's size.
uint64_t ClassBytes(const Descriptor* type) {
  const google::protobuf::Message* prototype =
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(type);
  return (prototype != nullptr ? prototype->SpaceUsedLong() : 0) + kAllocationBytes;
}

// What parsing one string or bytes value of `length` bytes allocates.
uint64_t StringBytes(uint64_t length) {
  if (length >= kParserReservedBytes) return kReservedStringCopies * length;
  return kStringBytes + (length > kShortString ? length + 1 + kAllocationBytes : 0);
}

// One walk over an encoding, with what is left of each limit of an answer and what parsing
// the encoding would allocate so far.
class EncodingWalk {
 public:
  // `limits`: an answer's, or null for a message whose fields are not counted (then only the
  // bytes it takes once parsed are bounded, by `max_parsed_bytes`).
  EncodingWalk(CodedInputStream* in, const AnswerLimits* limits, uint64_t max_parsed_bytes)
      : in_(in), counted_(limits != nullptr), max_parsed_bytes_(max_parsed_bytes) {
    if (limits != nullptr) left_ = *limits;
  }

  absl::Status Walk(const Descriptor* type, int depth) {
    FFIBOX_RETURN_IF_ERROR(CheckDepth(depth));
    if (depth == 0) FFIBOX_RETURN_IF_ERROR(Allocates(kStartBytes + ObjectBytes(type)));
    MessageState state;
    state.block_contents = counted_ && type == v1::BlockContents::descriptor();
    const uint64_t string_copies = type->map_key() != nullptr ? kMapStringCopies : 1;
    for (;;) {
      const uint32_t tag = in_->ReadTag();
      if (tag == 0) break;
      const int number = WireFormatLite::GetTagFieldNumber(tag);
      const WireFormatLite::WireType wire_type = WireFormatLite::GetTagWireType(tag);
      const FieldDescriptor* field = type->FindFieldByNumber(number);
      // The parser takes a field with another wire type as unknown, except the packed
      // form of a repeated scalar.
      const bool packed = field != nullptr && field->is_packable() &&
                          wire_type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
      const bool known = field != nullptr &&
                         (wire_type == WireFormatLite::WireTypeForFieldType(
                                           static_cast<WireFormatLite::FieldType>(field->type())) ||
                          packed);
      FFIBOX_RETURN_IF_ERROR(known ? Occurrence(field, &state) : UnknownField(&state));
      const bool message = known && field->type() == FieldDescriptor::TYPE_MESSAGE;
      if (message) {
        FFIBOX_RETURN_IF_ERROR(Allocates(ObjectBytes(field->message_type()) +
                                         (field->is_repeated() ? kSlotBytes : 0) +
                                         (field->is_map() ? kMapNodeBytes : 0)));
      } else if (known && field->is_repeated() && !packed) {
        FFIBOX_RETURN_IF_ERROR(Allocates(kSlotBytes));
      }
      uint32_t length = 0;
      FFIBOX_RETURN_IF_ERROR(Value(message ? field : nullptr, number, wire_type, depth, &length));
      if (!known) {
        if (wire_type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
          FFIBOX_RETURN_IF_ERROR(Allocates(StringBytes(length)));
        }
      } else if (packed) {
        // Each byte may be a value of its own, of up to 8 bytes in a slot twice that.
        FFIBOX_RETURN_IF_ERROR(Allocates(uint64_t{length} * kSlotBytes));
      } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
        FFIBOX_RETURN_IF_ERROR(Allocates(string_copies * StringBytes(length)));
      }
      if (state.block_contents && known && number == v1::BlockContents::kDataFieldNumber) {
        state.backed_pointers = length / 8;
      }
    }
    return in_->ConsumedEntireMessage() ? absl::OkStatus() : Malformed();
  }

  uint64_t parsed_bytes() const { return parsed_bytes_; }

 private:
  // What the walk of one message keeps while it reads the message's fields.
  struct MessageState {
    absl::InlinedVector<int, 8> singular_seen;
    absl::InlinedVector<int, 4> repeated_seen;
    bool unknown_list = false;  // protobuf made the message's list of unknown fields
    // In a returned block (counted): the pointers the bytes of its data seen so far hold,
    // one per word; more come out of the limits.
    bool block_contents = false;
    uint64_t backed_pointers = 0;
  };

  static absl::Status CheckDepth(int depth) {
    if (depth <= kMaxDepth) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("nests messages more than ", kMaxDepth, " deep"));
  }

  // The bytes an empty object of `type` takes, worked out once per walk.
  uint64_t ObjectBytes(const Descriptor* type) {
    auto [it, inserted] = object_bytes_.try_emplace(type, 0);
    if (inserted) it->second = ClassBytes(type);
    return it->second;
  }

  // An unknown field of the message: counted against kMaxUnknownFields in an answer, and
  // its entry (and the message's list of them) allocated.
  absl::Status UnknownField(MessageState* state) {
    if (counted_ && ++unknown_ > kMaxUnknownFields) {
      return absl::InvalidArgumentError(
          absl::StrCat("holds more than ", kMaxUnknownFields, " unknown fields"));
    }
    FFIBOX_RETURN_IF_ERROR(
        Allocates(kUnknownFieldBytes + (state->unknown_list ? 0 : kUnknownListBytes)));
    state->unknown_list = true;
    return absl::OkStatus();
  }

  // An occurrence of known `field` in the message: its repeated field's array allocated the
  // first time, and in an answer counted against the limits (a singular field once).
  absl::Status Occurrence(const FieldDescriptor* field, MessageState* state) {
    const int number = field->number();
    auto& repeated_seen = state->repeated_seen;
    if (field->is_repeated() &&
        std::find(repeated_seen.begin(), repeated_seen.end(), number) == repeated_seen.end()) {
      repeated_seen.push_back(number);
      FFIBOX_RETURN_IF_ERROR(Allocates(kArrayBytes));
    }
    if (!counted_) return absl::OkStatus();
    if (state->block_contents && number == v1::BlockContents::kPointersFieldNumber &&
        state->backed_pointers > 0) {
      --state->backed_pointers;
      return absl::OkStatus();
    }
    if (field->is_repeated()) {
      uint64_t* left = LeftOf(field);
      if (left == nullptr || *left == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("holds more ", field->full_name(), " than the request allows"));
      }
      --*left;
      return absl::OkStatus();
    }
    auto& singular_seen = state->singular_seen;
    if (std::find(singular_seen.begin(), singular_seen.end(), number) != singular_seen.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("holds ", field->full_name(), " twice in one message"));
    }
    singular_seen.push_back(number);
    return absl::OkStatus();
  }

  // Counts `bytes` more that parsing the encoding allocates, refusing it past the limit.
  absl::Status Allocates(uint64_t bytes) {
    parsed_bytes_ += bytes;
    if (parsed_bytes_ <= max_parsed_bytes_) return absl::OkStatus();
    return absl::ResourceExhaustedError(
        absl::StrCat("would take more than ", max_parsed_bytes_, " bytes once parsed"));
  }

  // Reads the value of field `number`: walks it when `message_field` (a known message field)
  // is set, else skips it. `length` gets the length of a length-delimited value.
  absl::Status Value(const FieldDescriptor* message_field, int number,
                     WireFormatLite::WireType wire_type, int depth, uint32_t* length_out) {
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
      case WireFormatLite::WIRETYPE_START_GROUP:
        // In no ffibox message: an answer may not hold one; a message that is not counted
        // keeps it as unknown fields.
        if (counted_) return Malformed();
        return UnknownGroup(number, depth + 1);
      default:
        return Malformed();
    }
  }

  // Reads an unknown group of field `number` up to its end, counting the unknown fields
  // protobuf keeps for it.
  absl::Status UnknownGroup(int number, int depth) {
    FFIBOX_RETURN_IF_ERROR(CheckDepth(depth));
    FFIBOX_RETURN_IF_ERROR(Allocates(kUnknownListBytes));
    for (;;) {
      const uint32_t tag = in_->ReadTag();
      if (tag == WireFormatLite::MakeTag(number, WireFormatLite::WIRETYPE_END_GROUP)) {
        return absl::OkStatus();
      }
      const WireFormatLite::WireType wire_type = WireFormatLite::GetTagWireType(tag);
      if (tag == 0 || wire_type == WireFormatLite::WIRETYPE_END_GROUP) return Malformed();
      FFIBOX_RETURN_IF_ERROR(Allocates(kUnknownFieldBytes));
      uint32_t length = 0;
      FFIBOX_RETURN_IF_ERROR(
          Value(nullptr, WireFormatLite::GetTagFieldNumber(tag), wire_type, depth, &length));
      if (wire_type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
        FFIBOX_RETURN_IF_ERROR(Allocates(StringBytes(length)));
      }
    }
  }

  uint64_t* LeftOf(const FieldDescriptor* field) {
    for (const auto& [bounded, member] : BoundedFields()) {
      if (bounded == field) return &(left_.*member);
    }
    return nullptr;
  }

  CodedInputStream* const in_;
  const bool counted_;
  AnswerLimits left_;
  uint64_t unknown_ = 0;
  const uint64_t max_parsed_bytes_;
  uint64_t parsed_bytes_ = 0;
  absl::flat_hash_map<const Descriptor*, uint64_t> object_bytes_;
};

// Walks the encoding in `pieces` of a message of `type`: what parsing it allocates, or why not.
absl::StatusOr<uint64_t> Walked(const std::vector<absl::string_view>& pieces,
                                const Descriptor* type, const AnswerLimits* limits,
                                uint64_t max_parsed_bytes) {
  size_t total = 0;
  for (absl::string_view piece : pieces) total += piece.size();
  if (total > INT_MAX) return Malformed();
  PieceInputStream stream(pieces, [](size_t) {});
  CodedInputStream in(&stream);
  EncodingWalk walk(&in, limits, max_parsed_bytes);
  FFIBOX_RETURN_IF_ERROR(walk.Walk(type, 0));
  return walk.parsed_bytes();
}

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
  memory_reads += other.memory_reads;
}

uint64_t MaxChangedRuns() { return kMaxChangedBytes / 8; }

// A returned block's framing, and a kept block's.
constexpr uint64_t kBlockFramingBytes = 64;
// Its data and a pointer in each of its words.
constexpr uint64_t kReturnedBytesPerByte = 5;

std::optional<uint64_t> ResultAnswerBytes(const v1::Signature& signature) {
  const v1::Type& result = signature.result();
  if (result.kind_case() == v1::Type::kRegistered) return std::nullopt;
  if (result.kind_case() != v1::Type::kRecord) return 0;
  uint64_t size = 0;
  uint64_t alignment = 0;
  if (!ComputeSizeAndAlignment(result, &size, &alignment).ok()) return std::nullopt;
  return size + kBlockFramingBytes;
}

uint64_t CallAnswerBytes(const v1::Call& call, uint64_t result_bytes) {
  uint64_t bytes = kCallAnswerBaseBytes + std::min(result_bytes, uint64_t{1} << 40);
  for (const v1::MemoryBlock& block : call.blocks()) {
    bytes += kBlockFramingBytes;
    if (block.direction() != v1::IN) {
      bytes += kReturnedBytesPerByte * std::min(BlockSize(block), uint64_t{1} << 40);
    }
  }
  return bytes;
}

AnswerLimits CallAnswerLimits(const ExpectedCallResult& expected) {
  AnswerLimits limits;
  for (size_t i = 0; i < expected.returned_block_sizes.size(); ++i) {
    const uint64_t size = expected.returned_block_sizes[i];
    if (size == ExpectedCallResult::kNotReturned) continue;
    ++limits.blocks;
    // A block whose bytes come back in the answer holds its pointers itself (EncodingWalk); one
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
  return Walked(pieces, type, &limits, UINT64_MAX).status();
}

absl::StatusOr<uint64_t> ParsedBytesAtMost(const std::vector<absl::string_view>& pieces,
                                           const Descriptor* type, uint64_t max_bytes) {
  return Walked(pieces, type, nullptr, max_bytes);
}

}  // namespace ffibox
