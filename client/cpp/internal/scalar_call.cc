#include "client/cpp/internal/scalar_call.h"

#include <cstring>

#include "core/scalar_wire.h"

namespace ffibox {
namespace client_internal {
namespace {

using wire::kLengthDelimited;
using wire::kVarint;
using wire::PutVarint;
using wire::Tag;
using wire::ValueBytes;
using wire::VarintBytes;

// The fields written and read here, all numbered below 16: one byte of tag each.
static_assert(v1::Request::kIdFieldNumber < 16 && v1::Request::kCallFieldNumber < 16);
static_assert(v1::Call::kFunctionFieldNumber < 16 && v1::Call::kArgsFieldNumber < 16 &&
              v1::Call::kTimeoutMsFieldNumber < 16);

// The bytes of the Call message alone.
size_t CallBytes(const ScalarCall& call) {
  size_t bytes = 0;
  if (call.function != 0) bytes += 1 + VarintBytes(call.function);
  for (const ScalarBits& arg : call.args) bytes += 2 + ValueBytes(arg);
  if (call.timeout_ms != 0) bytes += 1 + VarintBytes(call.timeout_ms);
  return bytes;
}

}  // namespace

size_t ScalarCallBytes(uint64_t id, const ScalarCall& call) {
  const size_t call_bytes = CallBytes(call);
  return (id != 0 ? 1 + VarintBytes(id) : 0) + 1 + VarintBytes(call_bytes) + call_bytes;
}

size_t EncodeScalarCall(uint64_t id, const ScalarCall& call, char* out) {
  const size_t call_bytes = CallBytes(call);
  char* const start = out;
  if (id != 0) {
    out = PutVarint(Tag(v1::Request::kIdFieldNumber, kVarint), out);
    out = PutVarint(id, out);
  }
  out = PutVarint(Tag(v1::Request::kCallFieldNumber, kLengthDelimited), out);
  out = PutVarint(call_bytes, out);
  if (call.function != 0) {
    out = PutVarint(Tag(v1::Call::kFunctionFieldNumber, kVarint), out);
    out = PutVarint(call.function, out);
  }
  for (const ScalarBits& arg : call.args) {
    // A Value is at most 11 bytes: its length is one byte.
    out = PutVarint(Tag(v1::Call::kArgsFieldNumber, kLengthDelimited), out);
    *out++ = static_cast<char>(ValueBytes(arg));
    out = wire::PutValue(arg, out);
  }
  if (call.timeout_ms != 0) {
    out = PutVarint(Tag(v1::Call::kTimeoutMsFieldNumber, kVarint), out);
    out = PutVarint(call.timeout_ms, out);
  }
  return static_cast<size_t>(out - start);
}

v1::Request ScalarCallRequest(uint64_t id, const ScalarCall& call) {
  v1::Request request;
  request.set_id(id);
  v1::Call* message = request.mutable_call();
  message->set_function(call.function);
  message->set_timeout_ms(call.timeout_ms);
  for (const ScalarBits& arg : call.args) SetScalarBits(arg, message->add_args());
  return request;
}

bool ReadScalarAnswer(absl::string_view answer, uint64_t id, std::optional<ScalarBits>* result) {
  wire::Reader response(answer);
  uint64_t field = 0;
  if (!response.Tag(Tag(v1::Response::kIdFieldNumber, kVarint)) || !response.Varint(&field) ||
      field != id) {
    return false;
  }
  // The generation is the channel's whatever the worker says (LocalPath); any is read.
  if (response.Tag(Tag(v1::Response::kGenerationFieldNumber, kVarint)) &&
      !response.Varint(&field)) {
    return false;
  }
  wire::Reader call;
  if (!response.Tag(Tag(v1::Response::kCallFieldNumber, kLengthDelimited)) ||
      !response.LastMessage(&call)) {
    return false;
  }
  return wire::ReadLastScalarField(call, v1::CallResult::kResultFieldNumber, result);
}

}  // namespace client_internal
}  // namespace ffibox
