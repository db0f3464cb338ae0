#include "core/scalar_wire.h"

#include "absl/base/casts.h"

namespace ffibox {

void SetScalarBits(const ScalarBits& scalar, v1::Value* out) {
  switch (scalar.kind) {
    case v1::Value::kBoolValue:
      out->set_bool_value(scalar.bits != 0);
      break;
    case v1::Value::kIntValue:
      out->set_int_value(static_cast<int64_t>(scalar.bits));
      break;
    case v1::Value::kUintValue:
      out->set_uint_value(scalar.bits);
      break;
    case v1::Value::kFloatValue:
      out->set_float_value(absl::bit_cast<double>(scalar.bits));
      break;
    default:
      out->Clear();
      break;
  }
}

std::optional<ScalarBits> ScalarBitsOfValue(const v1::Value& value) {
  switch (value.kind_case()) {
    case v1::Value::kBoolValue:
      return ScalarBits{v1::Value::kBoolValue, value.bool_value() ? uint64_t{1} : uint64_t{0}};
    case v1::Value::kIntValue:
      return ScalarBits{v1::Value::kIntValue, static_cast<uint64_t>(value.int_value())};
    case v1::Value::kUintValue:
      return ScalarBits{v1::Value::kUintValue, value.uint_value()};
    case v1::Value::kFloatValue:
      return ScalarBits{v1::Value::kFloatValue, absl::bit_cast<uint64_t>(value.float_value())};
    default:
      return std::nullopt;
  }
}

namespace wire {
namespace {

uint64_t ZigZag(uint64_t bits) {
  const int64_t value = static_cast<int64_t>(bits);
  return (bits << 1) ^ static_cast<uint64_t>(value >> 63);
}

uint64_t UnZigZag(uint64_t value) { return (value >> 1) ^ (~(value & 1) + 1); }

}  // namespace

size_t ValueBytes(const ScalarBits& scalar) {
  switch (scalar.kind) {
    case v1::Value::kBoolValue:
      return 2;
    case v1::Value::kIntValue:
      return 1 + VarintBytes(ZigZag(scalar.bits));
    case v1::Value::kUintValue:
      return 1 + VarintBytes(scalar.bits);
    case v1::Value::kFloatValue:
      return 9;
    default:  // an empty Value, as SetScalarBits leaves it
      return 0;
  }
}

char* PutValue(const ScalarBits& scalar, char* out) {
  // Every field of Value written here is numbered below 16: one byte of tag.
  static_assert(v1::Value::kBoolValueFieldNumber < 16 && v1::Value::kIntValueFieldNumber < 16 &&
                v1::Value::kUintValueFieldNumber < 16 && v1::Value::kFloatValueFieldNumber < 16);
  switch (scalar.kind) {
    case v1::Value::kBoolValue:
      out = PutVarint(Tag(v1::Value::kBoolValueFieldNumber, kVarint), out);
      *out++ = static_cast<char>(scalar.bits != 0);
      return out;
    case v1::Value::kIntValue:
      out = PutVarint(Tag(v1::Value::kIntValueFieldNumber, kVarint), out);
      return PutVarint(ZigZag(scalar.bits), out);
    case v1::Value::kUintValue:
      out = PutVarint(Tag(v1::Value::kUintValueFieldNumber, kVarint), out);
      return PutVarint(scalar.bits, out);
    case v1::Value::kFloatValue:
      out = PutVarint(Tag(v1::Value::kFloatValueFieldNumber, kFixed64), out);
      for (int i = 0; i < 8; ++i) *out++ = static_cast<char>(scalar.bits >> (8 * i));
      return out;
    default:  // an empty Value, as SetScalarBits leaves it
      return out;
  }
}

bool Reader::Varint(uint64_t* value) {
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

bool Reader::Fixed64(uint64_t* value) {
  if (left() < 8) return false;
  uint64_t result = 0;
  for (int i = 0; i < 8; ++i) result |= uint64_t{at_[i]} << (8 * i);
  at_ += 8;
  *value = result;
  return true;
}

bool Reader::Length(uint64_t* length) {
  const size_t before = left();
  return Varint(length) && before - left() == VarintBytes(*length);
}

bool Reader::Message(Reader* inner) {
  uint64_t length = 0;
  if (!Length(&length) || length > left()) return false;
  *inner = Reader(absl::string_view(reinterpret_cast<const char*>(at_), length));
  at_ += length;
  return true;
}

bool Reader::LastMessage(Reader* inner) {
  uint64_t length = 0;
  if (!Length(&length) || length != left()) return false;
  *inner = Reader(absl::string_view(reinterpret_cast<const char*>(at_), length));
  at_ = end_;
  return true;
}

bool ReadValue(Reader value, ScalarBits* scalar) {
  uint64_t bits = 0;
  if (value.Tag(Tag(v1::Value::kBoolValueFieldNumber, kVarint))) {
    if (!value.Varint(&bits) || bits > 1) return false;
    *scalar = {v1::Value::kBoolValue, bits};
  } else if (value.Tag(Tag(v1::Value::kIntValueFieldNumber, kVarint))) {
    if (!value.Varint(&bits)) return false;
    *scalar = {v1::Value::kIntValue, UnZigZag(bits)};
  } else if (value.Tag(Tag(v1::Value::kUintValueFieldNumber, kVarint))) {
    if (!value.Varint(&bits)) return false;
    *scalar = {v1::Value::kUintValue, bits};
  } else if (value.Tag(Tag(v1::Value::kFloatValueFieldNumber, kFixed64))) {
    if (!value.Fixed64(&bits)) return false;
    *scalar = {v1::Value::kFloatValue, bits};
  } else {
    return false;
  }
  return value.done();
}

bool ReadLastScalarField(Reader message, uint32_t field, std::optional<ScalarBits>* result) {
  if (message.done()) {
    *result = std::nullopt;
    return true;
  }
  Reader value;
  ScalarBits scalar;
  if (!message.Tag(Tag(field, kLengthDelimited)) || !message.LastMessage(&value) ||
      !ReadValue(value, &scalar)) {
    return false;
  }
  *result = scalar;
  return true;
}

}  // namespace wire

namespace {

using wire::kLengthDelimited;
using wire::kVarint;
using wire::PutVarint;
using wire::Tag;
using wire::VarintBytes;

// A varint field (tag and value), written only when not 0, as protobuf writes it.
size_t VarintFieldBytes(uint32_t field, uint64_t value) {
  return value == 0 ? 0 : VarintBytes(Tag(field, kVarint)) + VarintBytes(value);
}
char* PutVarintField(uint32_t field, uint64_t value, char* out) {
  if (value == 0) return out;
  return PutVarint(value, PutVarint(Tag(field, kVarint), out));
}

// Reads the varint field `field` when it comes next; leaves `*value` 0 when it does not.
// False for a tag without its value.
bool ReadVarintField(wire::Reader& reader, uint32_t field, uint64_t* value) {
  *value = 0;
  return !reader.Tag(Tag(field, kVarint)) || reader.Varint(value);
}

// Reads the repeated field `field` of Values of one scalar each, where it comes next, into
// `*args`. False for one that is not such a Value.
bool ReadScalarArgs(wire::Reader& message, uint32_t field,
                    absl::InlinedVector<ScalarBits, 8>* args) {
  args->clear();
  while (message.Tag(Tag(field, kLengthDelimited))) {
    wire::Reader value;
    ScalarBits arg;
    if (!message.Message(&value) || !wire::ReadValue(value, &arg)) return false;
    args->push_back(arg);
  }
  return true;
}

}  // namespace

bool ReadScalarCall(absl::string_view bytes, ScalarCallFrame* call) {
  wire::Reader request(bytes);
  wire::Reader message;
  uint64_t timeout_ms = 0;
  if (!ReadVarintField(request, v1::Request::kIdFieldNumber, &call->id) ||
      !request.Tag(Tag(v1::Request::kCallFieldNumber, kLengthDelimited)) ||
      !request.LastMessage(&message) ||
      !ReadVarintField(message, v1::Call::kFunctionFieldNumber, &call->function)) {
    return false;
  }
  if (!ReadScalarArgs(message, v1::Call::kArgsFieldNumber, &call->args)) return false;
  // A uint32 field: protobuf keeps the low 32 bits of a longer varint; such a call is left
  // to it.
  if (!ReadVarintField(message, v1::Call::kTimeoutMsFieldNumber, &timeout_ms) ||
      timeout_ms > UINT32_MAX || !message.done()) {
    return false;
  }
  call->timeout_ms = static_cast<uint32_t>(timeout_ms);
  return true;
}

size_t EncodeScalarAnswer(uint64_t id, uint64_t generation, const std::optional<ScalarBits>& result,
                          char* out) {
  const size_t value_bytes = result.has_value() ? wire::ValueBytes(*result) : 0;
  const size_t call_bytes =
      result.has_value()
          ? VarintBytes(Tag(v1::CallResult::kResultFieldNumber, kLengthDelimited)) + 1 + value_bytes
          : 0;
  char* const start = out;
  out = PutVarintField(v1::Response::kIdFieldNumber, id, out);
  out = PutVarintField(v1::Response::kGenerationFieldNumber, generation, out);
  out = PutVarint(Tag(v1::Response::kCallFieldNumber, kLengthDelimited), out);
  out = PutVarint(call_bytes, out);
  if (result.has_value()) {
    out = PutVarint(Tag(v1::CallResult::kResultFieldNumber, kLengthDelimited), out);
    *out++ = static_cast<char>(value_bytes);
    out = wire::PutValue(*result, out);
  }
  return static_cast<size_t>(out - start);
}

size_t EncodeScalarInvoke(const ScalarInvoke& invoke, char* out) {
  size_t invoke_bytes =
      VarintFieldBytes(v1::CallbackInvoke::kInvocationFieldNumber, invoke.invocation) +
      VarintFieldBytes(v1::CallbackInvoke::kCallbackFieldNumber, invoke.callback) +
      VarintFieldBytes(v1::CallbackInvoke::kParentInvocationFieldNumber, invoke.parent_invocation);
  const size_t arg_tag = VarintBytes(Tag(v1::CallbackInvoke::kArgsFieldNumber, kLengthDelimited));
  for (const ScalarBits& arg : invoke.args) invoke_bytes += arg_tag + 1 + wire::ValueBytes(arg);
  char* const start = out;
  out = PutVarintField(v1::Response::kGenerationFieldNumber, invoke.generation, out);
  out = PutVarint(Tag(v1::Response::kCallbackInvokeFieldNumber, kLengthDelimited), out);
  out = PutVarint(invoke_bytes, out);
  out = PutVarintField(v1::CallbackInvoke::kInvocationFieldNumber, invoke.invocation, out);
  out = PutVarintField(v1::CallbackInvoke::kCallbackFieldNumber, invoke.callback, out);
  for (const ScalarBits& arg : invoke.args) {
    // A Value is at most 11 bytes: its length is one byte.
    out = PutVarint(Tag(v1::CallbackInvoke::kArgsFieldNumber, kLengthDelimited), out);
    *out++ = static_cast<char>(wire::ValueBytes(arg));
    out = wire::PutValue(arg, out);
  }
  out = PutVarintField(v1::CallbackInvoke::kParentInvocationFieldNumber, invoke.parent_invocation,
                       out);
  return static_cast<size_t>(out - start);
}

bool ReadScalarInvoke(absl::string_view bytes, ScalarInvoke* invoke) {
  wire::Reader response(bytes);
  wire::Reader message;
  if (!ReadVarintField(response, v1::Response::kGenerationFieldNumber, &invoke->generation) ||
      !response.Tag(Tag(v1::Response::kCallbackInvokeFieldNumber, kLengthDelimited)) ||
      !response.LastMessage(&message) ||
      !ReadVarintField(message, v1::CallbackInvoke::kInvocationFieldNumber, &invoke->invocation) ||
      !ReadVarintField(message, v1::CallbackInvoke::kCallbackFieldNumber, &invoke->callback)) {
    return false;
  }
  if (!ReadScalarArgs(message, v1::CallbackInvoke::kArgsFieldNumber, &invoke->args)) return false;
  return ReadVarintField(message, v1::CallbackInvoke::kParentInvocationFieldNumber,
                         &invoke->parent_invocation) &&
         message.done();
}

size_t EncodeScalarReturn(uint64_t invocation, const std::optional<ScalarBits>& result, char* out) {
  size_t return_bytes = VarintFieldBytes(v1::CallbackReturn::kInvocationFieldNumber, invocation);
  const size_t value_bytes = result.has_value() ? wire::ValueBytes(*result) : 0;
  if (result.has_value()) {
    return_bytes += VarintBytes(Tag(v1::CallbackReturn::kResultFieldNumber, kLengthDelimited)) + 1 +
                    value_bytes;
  }
  char* const start = out;
  out = PutVarint(Tag(v1::Request::kCallbackReturnFieldNumber, kLengthDelimited), out);
  out = PutVarint(return_bytes, out);
  out = PutVarintField(v1::CallbackReturn::kInvocationFieldNumber, invocation, out);
  if (result.has_value()) {
    out = PutVarint(Tag(v1::CallbackReturn::kResultFieldNumber, kLengthDelimited), out);
    *out++ = static_cast<char>(value_bytes);
    out = wire::PutValue(*result, out);
  }
  return static_cast<size_t>(out - start);
}

bool ReadScalarReturn(absl::string_view bytes, uint64_t invocation,
                      std::optional<ScalarBits>* result) {
  wire::Reader request(bytes);
  wire::Reader message;
  uint64_t answered = 0;
  return request.Tag(Tag(v1::Request::kCallbackReturnFieldNumber, kLengthDelimited)) &&
         request.LastMessage(&message) &&
         ReadVarintField(message, v1::CallbackReturn::kInvocationFieldNumber, &answered) &&
         answered == invocation &&
         wire::ReadLastScalarField(message, v1::CallbackReturn::kResultFieldNumber, result);
}

}  // namespace ffibox
