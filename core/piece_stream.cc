#include "core/piece_stream.h"

#include <algorithm>
#include <climits>
#include <optional>
#include <string>
#include <utility>

#include "core/malloc_tuning.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"

namespace ffibox {

absl::string_view PieceInputStream::Remaining() {
  while (current_ < pieces_.size() && offset_ == pieces_[current_].size()) {
    release_(current_);
    pieces_[current_] = absl::string_view();
    ++current_;
    offset_ = 0;
  }
  if (current_ == pieces_.size()) return absl::string_view();
  return pieces_[current_].substr(offset_);
}

bool PieceInputStream::Next(const void** data, int* size) {
  absl::string_view next = Remaining();
  if (next.empty()) return false;
  next = next.substr(0, INT_MAX);
  *data = next.data();
  *size = static_cast<int>(next.size());
  offset_ += next.size();
  position_ += static_cast<int64_t>(next.size());
  return true;
}

void PieceInputStream::BackUp(int count) {
  // Only bytes of the last Next, which all came from the current piece.
  const size_t back = std::min<size_t>(static_cast<size_t>(std::max(count, 0)), offset_);
  offset_ -= back;
  position_ -= static_cast<int64_t>(back);
}

bool PieceInputStream::Skip(int count) {
  size_t left = static_cast<size_t>(std::max(count, 0));
  while (left > 0) {
    absl::string_view next = Remaining();
    if (next.empty()) return false;
    const size_t step = std::min(left, next.size());
    offset_ += step;
    position_ += static_cast<int64_t>(step);
    left -= step;
  }
  return true;
}

namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::OneofDescriptor;
using google::protobuf::Reflection;
using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;

// protobuf's own bound on nesting.
constexpr int kMaxDepth = 100;

// The longest length varint protobuf's parser accepts, and the largest length (it keeps 16
// bytes of slop below INT_MAX).
constexpr size_t kMaxLengthBytes = 5;
constexpr uint64_t kMaxLength = INT_MAX - 16;

// One step of the way from the message to a large field: a field and, for a repeated one,
// which element (-1 for a singular field).
struct Step {
  const FieldDescriptor* field;
  int index;
};

struct LargeField {
  std::vector<Step> path;  // the last step is the bytes field itself
  size_t header;           // where its length varint starts
  size_t data;             // where its bytes start
  size_t length;
};

// A stretch of the encoding the skeleton replaces: a length varint written anew (a message
// that lost large fields' bytes) or a large field's length and bytes (then `bytes` is the
// length 0).
struct Replacement {
  size_t start;
  size_t end;
  std::string bytes;
};

std::string Varint(uint64_t value) {
  std::string bytes(CodedOutputStream::VarintSize64(value), '\0');
  CodedOutputStream::WriteVarint64ToArray(value, reinterpret_cast<uint8_t*>(&bytes[0]));
  return bytes;
}

// Finds the large bytes fields of one encoded message, and what the skeleton without their
// bytes must change, reading the wire format with the message's descriptors and copying
// nothing.
class LargeFieldScan {
 public:
  LargeFieldScan(CodedInputStream* in, size_t large_bytes) : in_(in), large_bytes_(large_bytes) {}

  // Walks a message of `type` up to the stream's limit (or end). `removed` gets how many
  // bytes shorter its content is in the skeleton. False when the encoding is malformed or a
  // large field cannot be placed (the caller parses the ordinary way).
  bool Walk(const Descriptor* type, int depth, size_t* removed) {
    if (depth > kMaxDepth) return false;
    *removed = 0;
    std::vector<std::pair<int, int>> seen;                       // field number, occurrences
    std::vector<std::pair<const OneofDescriptor*, int>> oneofs;  // the member that appeared
    bool holds_large = false;
    bool ambiguous = false;  // a singular field twice, or two members of one oneof
    for (;;) {
      const uint32_t tag = in_->ReadTag();
      if (tag == 0) break;
      const int number = WireFormatLite::GetTagFieldNumber(tag);
      const FieldDescriptor* field = type->FindFieldByNumber(number);
      const auto wire_type = WireFormatLite::GetTagWireType(tag);
      // Which element of a repeated field this is: only an occurrence with the wire type
      // of the field's elements makes one (another is an unknown field).
      int occurrence = 0;
      const bool element = field != nullptr &&
                           wire_type == WireFormatLite::WireTypeForFieldType(
                                            static_cast<WireFormatLite::FieldType>(field->type()));
      if (element) {
        auto at =
            std::find_if(seen.begin(), seen.end(), [&](auto& s) { return s.first == number; });
        if (at == seen.end()) {
          seen.emplace_back(number, 1);
        } else {
          occurrence = at->second++;
        }
      }
      if (field != nullptr) {
        if (!field->is_repeated() && occurrence > 0) ambiguous = true;
        if (const OneofDescriptor* oneof = field->containing_oneof(); oneof != nullptr) {
          auto member =
              std::find_if(oneofs.begin(), oneofs.end(), [&](auto& o) { return o.first == oneof; });
          if (member == oneofs.end()) {
            oneofs.emplace_back(oneof, number);
          } else if (member->second != number) {
            ambiguous = true;
          }
        }
      }
      const int index = field != nullptr && field->is_repeated() ? occurrence : -1;
      switch (wire_type) {
        case WireFormatLite::WIRETYPE_VARINT: {
          uint64_t value;
          if (!in_->ReadVarint64(&value)) return false;
          break;
        }
        case WireFormatLite::WIRETYPE_FIXED64: {
          uint64_t value;
          if (!in_->ReadLittleEndian64(&value)) return false;
          break;
        }
        case WireFormatLite::WIRETYPE_FIXED32: {
          uint32_t value;
          if (!in_->ReadLittleEndian32(&value)) return false;
          break;
        }
        case WireFormatLite::WIRETYPE_LENGTH_DELIMITED: {
          const size_t header = Position();
          // Read as protobuf's parser reads a length (at most 5 bytes, below 2^31 less its
          // slop), not as ReadVarint32, which would drop the bits above 32 of a longer one:
          // the skeleton rewrites these lengths, so one protobuf refuses must not pass here.
          uint64_t wide_length;
          if (!in_->ReadVarint64(&wide_length) || Position() - header > kMaxLengthBytes ||
              wide_length > kMaxLength) {
            return false;
          }
          const uint32_t length = static_cast<uint32_t>(wide_length);
          const size_t data = Position();
          if (element && field->type() == FieldDescriptor::TYPE_MESSAGE && length > large_bytes_) {
            path_.push_back({field, index});
            const size_t large_before = large_.size();
            const CodedInputStream::Limit limit = in_->PushLimit(static_cast<int>(length));
            size_t inner = 0;
            if (!Walk(field->message_type(), depth + 1, &inner)) return false;
            if (!in_->ConsumedEntireMessage()) return false;
            in_->PopLimit(limit);
            path_.pop_back();
            if (large_.size() > large_before) {
              if (field->is_map()) return false;
              holds_large = true;
              const size_t new_length = length - inner;
              replacements_.push_back({header, data, Varint(new_length)});
              *removed += inner + (data - header) - CodedOutputStream::VarintSize64(new_length);
            }
          } else if (element && field->type() == FieldDescriptor::TYPE_BYTES &&
                     length > large_bytes_) {
            holds_large = true;
            path_.push_back({field, index});
            large_.push_back({path_, header, data, length});
            path_.pop_back();
            replacements_.push_back({header, data + length, std::string(1, '\0')});
            *removed += (data - header) - 1 + length;
            if (!in_->Skip(static_cast<int>(length))) return false;
          } else if (!in_->Skip(static_cast<int>(length))) {
            return false;
          }
          break;
        }
        default:
          return false;  // groups: not in ffibox's messages
      }
    }
    if (!in_->ConsumedEntireMessage()) return false;
    return !(holds_large && ambiguous);
  }

  std::vector<LargeField>& large() { return large_; }
  std::vector<Replacement>& replacements() { return replacements_; }

 private:
  size_t Position() const { return static_cast<size_t>(in_->CurrentPosition()); }

  CodedInputStream* const in_;
  const size_t large_bytes_;
  std::vector<Step> path_;
  std::vector<LargeField> large_;
  std::vector<Replacement> replacements_;
};

// The pieces of a message with their offsets, each released once no view of the skeleton
// and no large field still needs it.
class Pieces {
 public:
  Pieces(std::vector<absl::string_view> pieces, std::function<void(size_t)> release)
      : pieces_(std::move(pieces)),
        release_(std::move(release)),
        start_(pieces_.size() + 1, 0),
        views_(pieces_.size(), 0),
        last_large_(pieces_.size(), -1),
        released_(pieces_.size(), false) {
    for (size_t i = 0; i < pieces_.size(); ++i) start_[i + 1] = start_[i] + pieces_[i].size();
  }

  size_t size() const { return start_.back(); }

  // The piece holding byte `offset`.
  size_t PieceAt(size_t offset) const {
    return static_cast<size_t>(std::upper_bound(start_.begin(), start_.end(), offset) -
                               start_.begin()) -
           1;
  }

  // Appends views of bytes [begin, end) to `views`, noting their pieces in `origins`.
  void View(size_t begin, size_t end, std::vector<absl::string_view>* views,
            std::vector<int>* origins) {
    while (begin < end) {
      const size_t piece = PieceAt(begin);
      const size_t stop = std::min(end, start_[piece + 1]);
      views->push_back(pieces_[piece].substr(begin - start_[piece], stop - begin));
      origins->push_back(static_cast<int>(piece));
      ++views_[piece];
      begin = stop;
    }
  }

  // Large field `large` (by order) needs bytes [begin, end).
  void NeedFor(int large, size_t begin, size_t end) {
    if (begin == end) return;
    for (size_t piece = PieceAt(begin); piece < pieces_.size() && start_[piece] < end; ++piece) {
      last_large_[piece] = large;
    }
  }

  // A view of `piece` is done with.
  void ViewDone(size_t piece) {
    if (--views_[piece] == 0 && last_large_[piece] < 0) Release(piece);
  }

  // Copies bytes [begin, end) to `out`, releasing each piece that large field `large` was
  // the last to need once it is passed.
  void CopyOut(int large, size_t begin, size_t end, std::string* out) {
    while (begin < end) {
      const size_t piece = PieceAt(begin);
      const size_t stop = std::min(end, start_[piece + 1]);
      out->append(pieces_[piece].data() + (begin - start_[piece]), stop - begin);
      if (stop == start_[piece + 1] && last_large_[piece] == large && views_[piece] == 0) {
        Release(piece);
      }
      begin = stop;
    }
  }

  void ReleaseAll() {
    for (size_t piece = 0; piece < pieces_.size(); ++piece) Release(piece);
  }

 private:
  void Release(size_t piece) {
    if (released_[piece]) return;
    released_[piece] = true;
    release_(piece);
  }

  std::vector<absl::string_view> pieces_;
  std::function<void(size_t)> release_;
  std::vector<size_t> start_;  // offset of each piece; the last entry is the total
  std::vector<size_t> views_;  // skeleton views not yet done with, per piece
  std::vector<int> last_large_;
  std::vector<bool> released_;
};

// Puts `value` into the large field at `path`, which the skeleton parse left empty. False
// when the message does not have the field where the scan placed it.
bool Place(Message* message, const std::vector<Step>& path, std::string value) {
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    const Reflection* reflection = message->GetReflection();
    const Step& step = path[i];
    if (step.index < 0) {
      message = reflection->MutableMessage(message, step.field);
    } else {
      if (step.index >= reflection->FieldSize(*message, step.field)) return false;
      message = reflection->MutableRepeatedMessage(message, step.field, step.index);
    }
  }
  const Reflection* reflection = message->GetReflection();
  const Step& last = path.back();
  if (last.index >= 0) {
    if (last.index >= reflection->FieldSize(*message, last.field) ||
        !reflection->GetRepeatedString(*message, last.field, last.index).empty()) {
      return false;
    }
    reflection->SetRepeatedString(message, last.field, last.index, std::move(value));
    return true;
  }
  if (last.field->containing_oneof() != nullptr && !reflection->HasField(*message, last.field)) {
    return false;
  }
  if (!reflection->GetString(*message, last.field).empty()) return false;
  reflection->SetString(message, last.field, std::move(value));
  return true;
}

// One piece (a small message): protobuf's flat parse, which sizes every field exactly.
// nullopt for pieces that are not one such piece.
template <typename Pieces>
std::optional<bool> ParseOnePiece(const Pieces& pieces, google::protobuf::Message* message) {
  if (pieces.size() != 1 || pieces[0].size() > INT_MAX) return std::nullopt;
  return message->ParseFromArray(pieces[0].data(), static_cast<int>(pieces[0].size()));
}

}  // namespace

bool ParseFromPieces(std::vector<absl::string_view> pieces, std::function<void(size_t)> release,
                     google::protobuf::Message* message, size_t large_bytes) {
  if (std::optional<bool> parsed = ParseOnePiece(pieces, message); parsed.has_value()) {
    release(0);
    return *parsed;
  }
  size_t total = 0;
  for (absl::string_view piece : pieces) total += piece.size();
  std::vector<LargeField> large;
  std::vector<Replacement> replacements;
  if (total > large_bytes && total <= INT_MAX) {
    PieceInputStream scanned(pieces, [](size_t) {});
    CodedInputStream in(&scanned);
    LargeFieldScan scan(&in, large_bytes);
    size_t removed = 0;
    if (scan.Walk(message->GetDescriptor(), 0, &removed)) {
      large = std::move(scan.large());
      replacements = std::move(scan.replacements());
    }
  }
  if (large.empty()) {
    PieceInputStream stream(std::move(pieces), std::move(release));
    return message->ParseFromZeroCopyStream(&stream);
  }

  // The skeleton: the message without the large fields' bytes, as views of the pieces and
  // the rewritten lengths, parsed first; then each large field copied into its place.
  Pieces held(std::move(pieces), std::move(release));
  for (size_t i = 0; i < large.size(); ++i) {
    held.NeedFor(static_cast<int>(i), large[i].data, large[i].data + large[i].length);
  }
  std::sort(replacements.begin(), replacements.end(),
            [](const Replacement& a, const Replacement& b) { return a.start < b.start; });
  std::vector<absl::string_view> views;
  std::vector<int> origins;
  size_t at = 0;
  for (const Replacement& replacement : replacements) {
    held.View(at, replacement.start, &views, &origins);
    views.push_back(replacement.bytes);
    origins.push_back(-1);
    at = replacement.end;
  }
  held.View(at, held.size(), &views, &origins);
  bool parsed;
  {
    PieceInputStream skeleton(std::move(views), [&held, &origins](size_t i) {
      if (origins[i] >= 0) held.ViewDone(static_cast<size_t>(origins[i]));
    });
    parsed = message->ParseFromZeroCopyStream(&skeleton);
  }
  for (size_t i = 0; parsed && i < large.size(); ++i) {
    std::string value;
    ReserveToWriteWhole(&value, large[i].length);
    held.CopyOut(static_cast<int>(i), large[i].data, large[i].data + large[i].length, &value);
    parsed = Place(message, large[i].path, std::move(value));
  }
  held.ReleaseAll();
  return parsed;
}

bool ParseFromOwnedPieces(absl::Span<std::string> pieces, google::protobuf::Message* message) {
  // A call or its answer, mostly: without the views and the release callback.
  if (std::optional<bool> parsed = ParseOnePiece(pieces, message); parsed.has_value()) {
    std::string().swap(pieces[0]);
    return *parsed;
  }
  std::vector<absl::string_view> views(pieces.begin(), pieces.end());
  return ParseFromPieces(
      std::move(views), [&pieces](size_t i) { std::string().swap(pieces[i]); }, message);
}

}  // namespace ffibox
