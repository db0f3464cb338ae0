#include "server/broker/message_codec.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/encoding_limits.h"
#include "core/malloc_tuning.h"
#include "core/piece_stream.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpc/slice.h"
#include "grpcpp/support/slice.h"

namespace ffibox {
namespace {

// Messages up to this size are encoded into one slice of their own; the chunks of larger
// ones' copied parts are this size at most.
constexpr size_t kChunkBytes = 64 << 10;

// An encoding as gRPC slices: copied parts in chunks, aliased parts as slices of the message.
class SliceOutputStream final : public google::protobuf::io::ZeroCopyOutputStream {
 public:
  SliceOutputStream(std::shared_ptr<const google::protobuf::MessageLite> owner, size_t size)
      : owner_(std::move(owner)), expected_(size) {}

  bool Next(void** data, int* size) override {
    FinishChunk();
    const size_t left = expected_ > written_ ? expected_ - written_ : 0;
    const size_t bytes = std::clamp<size_t>(left, 64, kChunkBytes);
    grpc_slice chunk = grpc_slice_malloc(bytes);
    *data = GRPC_SLICE_START_PTR(chunk);
    chunk_ = grpc::Slice(chunk, grpc::Slice::STEAL_REF);
    chunk_used_ = bytes;
    *size = static_cast<int>(bytes);
    written_ += bytes;
    return true;
  }

  void BackUp(int count) override {
    chunk_used_ -= static_cast<size_t>(count);
    written_ -= static_cast<size_t>(count);
  }

  int64_t ByteCount() const override { return static_cast<int64_t>(written_); }

  bool AllowsAliasing() const override { return true; }

  bool WriteAliasedRaw(const void* data, int size) override {
    FinishChunk();
    // Each slice holds a reference to the message; the last one gRPC lets go frees it.
    slices_.emplace_back(const_cast<void*>(data), static_cast<size_t>(size), &ReleaseOwner,
                         new std::shared_ptr<const google::protobuf::MessageLite>(owner_));
    written_ += static_cast<size_t>(size);
    return true;
  }

  std::vector<grpc::Slice> Finish() && {
    FinishChunk();
    return std::move(slices_);
  }

 private:
  static void ReleaseOwner(void* owner) {
    delete static_cast<std::shared_ptr<const google::protobuf::MessageLite>*>(owner);
  }

  void FinishChunk() {
    if (chunk_used_ > 0) slices_.push_back(chunk_.sub(0, chunk_used_));
    chunk_ = grpc::Slice();
    chunk_used_ = 0;
  }

  const std::shared_ptr<const google::protobuf::MessageLite> owner_;
  const size_t expected_;
  std::vector<grpc::Slice> slices_;
  grpc::Slice chunk_;
  size_t chunk_used_ = 0;
  size_t written_ = 0;
};

// `slices`' bytes, in order, where they are.
std::vector<absl::string_view> ViewsOf(const std::vector<grpc::Slice>& slices) {
  std::vector<absl::string_view> views;
  views.reserve(slices.size());
  for (const grpc::Slice& slice : slices) {
    views.emplace_back(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return views;
}

}  // namespace

absl::Status CheckReceived(const grpc::ByteBuffer& received,
                           const google::protobuf::Descriptor* type, size_t max_bytes,
                           uint64_t max_parsed_bytes) {
  const size_t bytes = received.Length();
  if (bytes > max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("of ", bytes, " bytes exceeds the limit of ", max_bytes, " bytes"));
  }
  if (bytes <= kShapeCheckedBytes) return absl::OkStatus();
  std::vector<grpc::Slice> slices;
  if (!received.Dump(&slices).ok()) return absl::InvalidArgumentError("is not a valid encoding");
  absl::Status parsed = ParsedBytesAtMost(ViewsOf(slices), type, max_parsed_bytes).status();
  if (!absl::IsResourceExhausted(parsed)) return parsed;
  return absl::ResourceExhaustedError(absl::StrCat(
      parsed.message(),
      ": send large arrays and records as raw bytes, not element by element, or split the batch"));
}

RequestHead RequestHeadOf(const grpc::ByteBuffer& received) {
  RequestHead head;
  std::vector<grpc::Slice> slices;
  if (!received.Dump(&slices).ok()) return head;
  PieceInputStream stream(ViewsOf(slices), [](size_t) {});
  google::protobuf::io::CodedInputStream in(&stream);
  using google::protobuf::internal::WireFormatLite;
  const google::protobuf::OneofDescriptor* op = v1::Request::descriptor()->FindOneofByName("op");
  for (uint32_t tag = in.ReadTag(); tag != 0; tag = in.ReadTag()) {
    const int number = WireFormatLite::GetTagFieldNumber(tag);
    const WireFormatLite::WireType wire_type = WireFormatLite::GetTagWireType(tag);
    if (number == v1::Request::kIdFieldNumber && wire_type == WireFormatLite::WIRETYPE_VARINT) {
      if (!in.ReadVarint64(&head.id)) return head;
      continue;
    }
    const google::protobuf::FieldDescriptor* field =
        v1::Request::descriptor()->FindFieldByNumber(number);
    if (field != nullptr && field->containing_oneof() == op &&
        wire_type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      head.op = static_cast<v1::Request::OpCase>(number);
    }
    if (!WireFormatLite::SkipField(&in, tag)) return head;
  }
  return head;
}

bool ParseReceived(grpc::ByteBuffer* received, google::protobuf::Message* message) {
  std::vector<grpc::Slice> slices;
  const size_t received_bytes = received->Length();
  if (!received->Dump(&slices).ok()) return false;
  received->Clear();  // the slices hold the only references now
  std::vector<absl::string_view> views = ViewsOf(slices);
  // gRPC reads into slices of at most 64 KiB, which malloc serves from its heaps.
  FreedPiecesReturner returner(received_bytes);
  return ParseFromPieces(
      std::move(views),
      [&slices, &returner](size_t i) {
        const size_t bytes = slices[i].size();
        slices[i] = grpc::Slice();
        returner.Freed(bytes);
      },
      message);
}

grpc::ByteBuffer EncodeAliasing(std::shared_ptr<const google::protobuf::MessageLite> message) {
  const size_t size = message->ByteSizeLong();
  if (size <= kChunkBytes) {
    grpc_slice encoded = grpc_slice_malloc(size);
    message->SerializeWithCachedSizesToArray(GRPC_SLICE_START_PTR(encoded));
    const grpc::Slice slice(encoded, grpc::Slice::STEAL_REF);
    return grpc::ByteBuffer(&slice, 1);
  }
  SliceOutputStream stream(message, size);
  {
    google::protobuf::io::CodedOutputStream out(&stream);
    out.EnableAliasing(true);
    message->SerializeWithCachedSizes(&out);
  }  // the coded stream hands back what it did not use
  std::vector<grpc::Slice> slices = std::move(stream).Finish();
  return grpc::ByteBuffer(slices.data(), slices.size());
}

}  // namespace ffibox
