// Scalar Values and the messages of a callback's invocation whose arguments and result are
// all scalars, in protobuf's wire format, without building the messages: the same-host
// channel's fast path (docs/architecture.md, "The same-host channel"). What is written is
// byte for byte what protobuf writes for the same message; what is read is accepted only in
// that one shape (fields in order, each once, nothing else), so that any other bytes go to
// the full parse and its checks, as before.
//
// The C++ client writes scalar calls (client/cpp/internal/scalar_call.h) and the answers to
// scalar invocations; the worker reads scalar calls and writes their answers, and writes
// scalar invocations and reads their answers.
#ifndef FFIBOX_CORE_SCALAR_WIRE_H_
#define FFIBOX_CORE_SCALAR_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// A scalar Value without the message: the field of Value it sets (kBoolValue, kIntValue,
// kUintValue or kFloatValue) and that field's bits (a bool's 0 or 1, an integer's two's
// complement, a double's IEEE 754 bits).
struct ScalarBits {
  v1::Value::KindCase kind = v1::Value::KIND_NOT_SET;
  uint64_t bits = 0;
};

// Sets `out` to the Value `scalar` stands for (cleared for KIND_NOT_SET).
void SetScalarBits(const ScalarBits& scalar, v1::Value* out);

// The bits of `value` when it holds a bool, an integer or a double; nullopt otherwise.
std::optional<ScalarBits> ScalarBitsOfValue(const v1::Value& value);

namespace wire {

// Protobuf's wire types.
constexpr uint32_t kVarint = 0;
constexpr uint32_t kFixed64 = 1;
constexpr uint32_t kLengthDelimited = 2;

constexpr uint64_t Tag(uint32_t field, uint32_t wire_type) {
  return uint64_t{field} << 3 | wire_type;
}

// The most bytes a varint, and a Value of one scalar, take.
constexpr size_t kMaxVarintBytes = 10;
constexpr size_t kMaxScalarValueBytes = 11;

inline size_t VarintBytes(uint64_t value) {
  size_t bytes = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++bytes;
  }
  return bytes;
}

inline char* PutVarint(uint64_t value, char* out) {
  while (value >= 0x80) {
    *out++ = static_cast<char>(value | 0x80);
    value >>= 7;
  }
  *out++ = static_cast<char>(value);
  return out;
}

// The bytes of a Value holding `scalar`, and those bytes written.
size_t ValueBytes(const ScalarBits& scalar);
char* PutValue(const ScalarBits& scalar, char* out);

// Reads bytes front to back; any read past the end, or a varint of more than 64 bits, fails.
class Reader {
 public:
  explicit Reader(absl::string_view bytes = {})
      : at_(reinterpret_cast<const uint8_t*>(bytes.data())), end_(at_ + bytes.size()) {}

  bool done() const { return at_ == end_; }
  size_t left() const { return static_cast<size_t>(end_ - at_); }

  // Whether the next varint is `tag` (then read), as protobuf writes it (its shortest form).
  bool Tag(uint64_t tag) {
    const uint8_t* at = at_;
    for (; tag >= 0x80; tag >>= 7, ++at) {
      if (at == end_ || *at != static_cast<uint8_t>(tag | 0x80)) return false;
    }
    if (at == end_ || *at != tag) return false;
    at_ = at + 1;
    return true;
  }
  bool Varint(uint64_t* value);
  bool Fixed64(uint64_t* value);
  // A length-delimited field's contents, as a new reader over them; its length must be in
  // its shortest form (protobuf refuses lengths of more than five bytes).
  bool Message(Reader* inner);
  // The same, which must be what is left of `*this` exactly (the message's last field).
  bool LastMessage(Reader* inner);

 private:
  // A length in its shortest form.
  bool Length(uint64_t* length);

  const uint8_t* at_;
  const uint8_t* end_;
};

// A Value of one scalar field and nothing else.
bool ReadValue(Reader value, ScalarBits* scalar);

// What is left of `message` is its last field, `field`, a Value of one scalar (set in
// `*result`), or nothing (`*result` nullopt). False, `*result` untouched, otherwise.
bool ReadLastScalarField(Reader message, uint32_t field, std::optional<ScalarBits>* result);

}  // namespace wire

// A top-level call whose arguments are all scalars, as the clients write it on the same-host
// channel: Request{id, call{function, args, timeout_ms}}.
struct ScalarCallFrame {
  uint64_t id = 0;
  uint64_t function = 0;
  uint32_t timeout_ms = 0;
  absl::InlinedVector<ScalarBits, 8> args;
};

// Whether `bytes` are a Request of that shape, its fields in protobuf's order, each once,
// nothing else (no invocation, blocks, errno, variadic types; each argument a Value of one
// scalar), read as protobuf reads them (a varint value may be longer than it needs); sets
// `*call`. False, `*call` unspecified, for anything else.
bool ReadScalarCall(absl::string_view bytes, ScalarCallFrame* call);

// The answer to a call that returned one scalar (`result`) or nothing, as the worker writes
// it: Response{id, generation, call{result}}, the bytes SerializeAsString gives for it.
constexpr size_t kScalarAnswerBytesAtMost = 48;
size_t EncodeScalarAnswer(uint64_t id, uint64_t generation, const std::optional<ScalarBits>& result,
                          char* out);

// Native code's call of a callback whose parameters are all scalars, as the worker sends it
// on the same-host channel: Response{generation, callback_invoke{invocation, callback, args,
// parent_invocation}}.
struct ScalarInvoke {
  uint64_t generation = 0;
  uint64_t invocation = 0;
  uint64_t callback = 0;
  uint64_t parent_invocation = 0;
  absl::InlinedVector<ScalarBits, 8> args;
};

// How many bytes EncodeScalarInvoke writes at most for `args` arguments.
constexpr size_t ScalarInvokeBytesAtMost(size_t args) { return 64 + 13 * args; }

// Writes `invoke` as the bytes SerializeAsString gives for the Response it stands for, at
// `out`, which holds ScalarInvokeBytesAtMost(invoke.args.size()) bytes; returns how many.
size_t EncodeScalarInvoke(const ScalarInvoke& invoke, char* out);

// Whether `bytes` are a Response of that shape exactly as protobuf writes it (no id, no
// error, no pointees, no request_id; each argument a Value of one scalar); sets `*invoke`.
// False, `*invoke` unspecified, for anything else.
bool ReadScalarInvoke(absl::string_view bytes, ScalarInvoke* invoke);

// The client's answer to a scalar invocation: Request{callback_return{invocation, result}},
// `result` absent for a callback returning void.
constexpr size_t kScalarReturnBytesAtMost = 40;
size_t EncodeScalarReturn(uint64_t invocation, const std::optional<ScalarBits>& result, char* out);

// Whether `bytes` are that Request exactly as protobuf writes it, answering `invocation`;
// sets `*result` (nullopt: no result). False, `*result` untouched, for anything else (an
// error, pointees, another invocation, a Value of another kind).
bool ReadScalarReturn(absl::string_view bytes, uint64_t invocation,
                      std::optional<ScalarBits>* result);

}  // namespace ffibox

#endif  // FFIBOX_CORE_SCALAR_WIRE_H_
