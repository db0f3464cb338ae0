// How the Session stream's messages cross gRPC without a second copy of a large one. The
// service takes the stream's messages as gRPC's raw bytes (server/broker/service.h) and:
//
// - parses a request straight from the slices gRPC received it in, freeing each slice as the
//   parse passes it, instead of holding gRPC's whole copy beside the parsed request;
// - encodes a response with its large bytes and string fields aliased, not copied: slices
//   that point into the response and keep it alive until gRPC is done with them, instead of
//   a whole encoded copy beside the response.
//
// So a message of S bytes costs the broker about S at its peak on either way through. Before
// any of that, a request is checked on its bytes (CheckReceived): over its size limit, or
// over a few times that once parsed (a request of empty submessages would take fifty times
// its size), it is refused unparsed.
#ifndef FFIBOX_SERVER_BROKER_MESSAGE_CODEC_H_
#define FFIBOX_SERVER_BROKER_MESSAGE_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "ffibox/v1/ffibox.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/message_lite.h"
#include "grpcpp/support/byte_buffer.h"

namespace ffibox {

// Whether `received`, a message of `type`, may be parsed: at most `max_bytes` long and, when
// over 64 KiB, taking at most `max_parsed_bytes` once parsed (ParsedBytesAtMost,
// core/encoding_limits.h; a smaller one takes a few MiB at most). Reads the bytes where gRPC
// holds them. RESOURCE_EXHAUSTED with what is over ("of 20971520 bytes exceeds the limit of
// 16777216 bytes", "would take more than 67108864 bytes once parsed: send large arrays and records
// as raw bytes, ..."); INVALID_ARGUMENT when it is no encoding of a message.
absl::Status CheckReceived(const grpc::ByteBuffer& received,
                           const google::protobuf::Descriptor* type, size_t max_bytes,
                           uint64_t max_parsed_bytes);

// What a request refused unparsed is answered and counted by: its id and operation, read from
// the top level of its encoding without parsing the rest (the last of each, as protobuf
// keeps them, up to where the encoding stops being well formed); 0 and OP_NOT_SET for what
// is missing.
struct RequestHead {
  uint64_t id = 0;
  v1::Request::OpCase op = v1::Request::OP_NOT_SET;
};
RequestHead RequestHeadOf(const grpc::ByteBuffer& received);

// Parses `received` (emptied) into `message`; false when it is not a well-formed message of
// that type.
bool ParseReceived(grpc::ByteBuffer* received, google::protobuf::Message* message);

// Encodes `message`. The result may point into `message`'s memory, which it keeps alive.
grpc::ByteBuffer EncodeAliasing(std::shared_ptr<const google::protobuf::MessageLite> message);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_MESSAGE_CODEC_H_
