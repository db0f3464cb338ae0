// How the Session stream's messages cross gRPC without a second copy of a large one. The
// service takes the stream's messages as gRPC's raw bytes (server/broker/service.h) and:
//
// - parses a request straight from the slices gRPC received it in, freeing each slice as the
//   parse passes it, instead of holding gRPC's whole copy beside the parsed request;
// - encodes a response with its large bytes and string fields aliased, not copied: slices
//   that point into the response and keep it alive until gRPC is done with them, instead of
//   a whole encoded copy beside the response.
//
// So a message of S bytes costs the broker about S at its peak on either way through.
#ifndef FFIBOX_SERVER_BROKER_MESSAGE_CODEC_H_
#define FFIBOX_SERVER_BROKER_MESSAGE_CODEC_H_

#include <memory>

#include "google/protobuf/message.h"
#include "google/protobuf/message_lite.h"
#include "grpcpp/support/byte_buffer.h"

namespace ffibox {

// Parses `received` (emptied) into `message`; false when it is not a well-formed message of
// that type.
bool ParseReceived(grpc::ByteBuffer* received, google::protobuf::Message* message);

// Encodes `message`. The result may point into `message`'s memory, which it keeps alive.
grpc::ByteBuffer EncodeAliasing(std::shared_ptr<const google::protobuf::MessageLite> message);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_MESSAGE_CODEC_H_
