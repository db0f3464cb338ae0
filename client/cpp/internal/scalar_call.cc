#include "client/cpp/internal/scalar_call.h"

#include <cstring>

namespace ffibox {
namespace client_internal {
namespace {

// Wire types (protobuf's encoding).
constexpr uint32_t kVarint = 0;
constexpr uint32_t kFixed64 = 1;
constexpr uint32_t kLengthDelimited = 2;

constexpr uint8_t Tag(uint32_t field, uint32_t wire_type) {
  return static_cast<uint8_t>(field << 3 | wire_type);
}

// The fields written and read here, all numbered below 16: one byte of tag each.
static_assert(v1::Request::kIdFieldNumber < 16 && v1::Request::kCallFieldNumber < 16);
static_assert(v1::Call::kFunctionFieldNumber < 16 && v1::Call::kArgsFieldNumber < 16 &&
              v1::Call::kTimeoutMsFieldNumber < 16);
static_assert(v1::Response::kIdFieldNumber < 16 && v1::Response::kGenerationFieldNumber < 16 &&
              v1::Response::kCallFieldNumber < 16 && v1::CallResult::kResultFieldNumber < 16);
static_assert(v1::Value::kBoolValueFieldNumber < 16 && v1::Value::kIntValueFieldNumber < 16 &&
              v1::Value::kUintValueFieldNumber < 16 && v1::Value::kFloatValueFieldNumber < 16);

char* PutVarint(uint64_t value, char* out) {
  while (value >= 0x80) {
    *out++ = static_cast<char>(value | 0x80);
    value >>= 7;
  }
  *out++ = static_cast<char>(value);
  return out;
}

size_t VarintBytes(uint64_t value) {
  size_t bytes = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++bytes;
  }
  return bytes;
}

uint64_t ZigZag(uint64_t bits) {
  const int64_t value = static_cast<int64_t>(bits);
  return (bits << 1) ^ static_cast<uint64_t>(value >> 63);
}

uint64_t UnZigZag(uint64_t value) { return (value >> 1) ^ (~(value & 1) + 1); }

// A Value holding `scalar`: its one field.
size_t ValueBytes(const ScalarBits& scalar) {
  switch (scalar.kind) {
    case v1::Value::kBoolValue:
      return 2;
    case v1::Value::kIntValue:
      return 1 + VarintBytes(ZigZag(scalar.bits));
    case v1::Value::kUintValue:
      return 1 + VarintBytes(scalar.bits);
    default:  // kFloatValue
      return 9;
  }
}

char* PutValue(const ScalarBits& scalar, char* out) {
  switch (scalar.kind) {
    case v1::Value::kBoolValue:
      *out++ = static_cast<char>(Tag(v1::Value::kBoolValueFieldNumber, kVarint));
      *out++ = static_cast<char>(scalar.bits != 0);
      return out;
    case v1::Value::kIntValue:
      *out++ = static_cast<char>(Tag(v1::Value::kIntValueFieldNumber, kVarint));
      return PutVarint(ZigZag(scalar.bits), out);
    case v1::Value::kUintValue:
      *out++ = static_cast<char>(Tag(v1::Value::kUintValueFieldNumber, kVarint));
      return PutVarint(scalar.bits, out);
    default:  // kFloatValue
      *out++ = static_cast<char>(Tag(v1::Value::kFloatValueFieldNumber, kFixed64));
      for (int i = 0; i < 8; ++i) *out++ = static_cast<char>(scalar.bits >> (8 * i));
      return out;
  }
}

// Reads the answer's bytes front to back; any read past the end, or a varint of more than
// 64 bits, fails it for good.
class Reader {
 public:
  explicit Reader(absl::string_view bytes)
      : at_(reinterpret_cast<const uint8_t*>(bytes.data())), end_(at_ + bytes.size()) {}

  bool done() const { return at_ == end_; }
  size_t left() const { return static_cast<size_t>(end_ - at_); }

  bool Byte(uint8_t expected) {
    if (at_ == end_ || *at_ != expected) return false;
    ++at_;
    return true;
  }

  bool Varint(uint64_t* value) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at_ == end_) return false;
      const uint8_t byte = *at_++;
      // The tenth byte holds the 64th bit only.
      if (shift == 63 && byte > 1) return false;
      result |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) {
        *value = result;
        return true;
      }
    }
    return false;
  }

  bool Fixed64(uint64_t* value) {
    if (left() < 8) return false;
    uint64_t result = 0;
    for (int i = 0; i < 8; ++i) result |= uint64_t{at_[i]} << (8 * i);
    at_ += 8;
    *value = result;
    return true;
  }

  // A length-delimited field's length, which must be what is left of `*this` exactly (the
  // last field of the message), as a new reader over it.
  bool LastMessage(Reader* inner) {
    uint64_t length = 0;
    if (!Varint(&length) || length != left()) return false;
    *inner = Reader(absl::string_view(reinterpret_cast<const char*>(at_), left()));
    at_ = end_;
    return true;
  }

 private:
  const uint8_t* at_;
  const uint8_t* end_;
};

// A Value of one scalar field and nothing else.
bool ReadValue(Reader value, ScalarBits* scalar) {
  uint64_t bits = 0;
  if (value.Byte(Tag(v1::Value::kBoolValueFieldNumber, kVarint))) {
    if (!value.Varint(&bits) || bits > 1) return false;
    *scalar = {v1::Value::kBoolValue, bits};
  } else if (value.Byte(Tag(v1::Value::kIntValueFieldNumber, kVarint))) {
    if (!value.Varint(&bits)) return false;
    *scalar = {v1::Value::kIntValue, UnZigZag(bits)};
  } else if (value.Byte(Tag(v1::Value::kUintValueFieldNumber, kVarint))) {
    if (!value.Varint(&bits)) return false;
    *scalar = {v1::Value::kUintValue, bits};
  } else if (value.Byte(Tag(v1::Value::kFloatValueFieldNumber, kFixed64))) {
    if (!value.Fixed64(&bits)) return false;
    *scalar = {v1::Value::kFloatValue, bits};
  } else {
    return false;
  }
  return value.done();
}

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
    *out++ = static_cast<char>(Tag(v1::Request::kIdFieldNumber, kVarint));
    out = PutVarint(id, out);
  }
  *out++ = static_cast<char>(Tag(v1::Request::kCallFieldNumber, kLengthDelimited));
  out = PutVarint(call_bytes, out);
  if (call.function != 0) {
    *out++ = static_cast<char>(Tag(v1::Call::kFunctionFieldNumber, kVarint));
    out = PutVarint(call.function, out);
  }
  for (const ScalarBits& arg : call.args) {
    // A Value is at most 11 bytes: its length is one byte.
    *out++ = static_cast<char>(Tag(v1::Call::kArgsFieldNumber, kLengthDelimited));
    *out++ = static_cast<char>(ValueBytes(arg));
    out = PutValue(arg, out);
  }
  if (call.timeout_ms != 0) {
    *out++ = static_cast<char>(Tag(v1::Call::kTimeoutMsFieldNumber, kVarint));
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
  Reader response(answer);
  uint64_t field = 0;
  if (!response.Byte(Tag(v1::Response::kIdFieldNumber, kVarint)) || !response.Varint(&field) ||
      field != id) {
    return false;
  }
  // The generation is the channel's whatever the worker says (LocalPath); any is read.
  if (response.Byte(Tag(v1::Response::kGenerationFieldNumber, kVarint)) &&
      !response.Varint(&field)) {
    return false;
  }
  Reader call(absl::string_view{});
  if (!response.Byte(Tag(v1::Response::kCallFieldNumber, kLengthDelimited)) ||
      !response.LastMessage(&call)) {
    return false;
  }
  if (call.done()) {
    *result = std::nullopt;
    return true;
  }
  Reader value(absl::string_view{});
  ScalarBits scalar;
  if (!call.Byte(Tag(v1::CallResult::kResultFieldNumber, kLengthDelimited)) ||
      !call.LastMessage(&value) || !ReadValue(value, &scalar)) {
    return false;
  }
  *result = scalar;
  return true;
}

}  // namespace client_internal
}  // namespace ffibox
