// A scalar call's request, written without the message, is the bytes protobuf writes for the
// same Request; the answer of the one shape such a call gets is read from its bytes exactly
// as protobuf writes it (the worker serializes with protobuf), and any other answer is left
// to the caller's parse and checks.
#include "client/cpp/internal/scalar_call.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace client_internal {
namespace {

std::string Encoded(uint64_t id, const ScalarCall& call) {
  std::string bytes(ScalarCallBytesAtMost(call.args.size()), '\0');
  bytes.resize(EncodeScalarCall(id, call, bytes.data()));
  return bytes;
}

// Every scalar kind at its edges, each C type's encoding (EncodeScalar's).
std::vector<ScalarBits> EdgeArgs() {
  return {ScalarBitsOf(true),
          ScalarBitsOf(false),
          ScalarBitsOf(0),
          ScalarBitsOf(-1),
          ScalarBitsOf(std::numeric_limits<int64_t>::min()),
          ScalarBitsOf(std::numeric_limits<int64_t>::max()),
          ScalarBitsOf(std::numeric_limits<uint64_t>::max()),
          ScalarBitsOf(static_cast<unsigned char>(200)),
          ScalarBitsOf(static_cast<short>(-300)),
          ScalarBitsOf('x'),
          ScalarBitsOf(0.0),
          ScalarBitsOf(-0.0),
          ScalarBitsOf(1.5f),
          ScalarBitsOf(std::numeric_limits<double>::infinity()),
          ScalarBitsOf(std::nan("")),
          ScalarBitsOf(std::numeric_limits<double>::denorm_min())};
}

TEST(ScalarCallTest, TheRequestIsTheBytesProtobufWritesForIt) {
  const std::vector<ScalarBits> args = EdgeArgs();
  for (uint64_t id : {uint64_t{1}, uint64_t{127}, uint64_t{128}, ~uint64_t{0}}) {
    for (uint32_t timeout_ms : {0u, 1u, 300000u, ~0u}) {
      for (size_t n = 0; n <= args.size(); ++n) {
        const ScalarCall call{uint64_t{1} << (n % 64), timeout_ms, absl::MakeSpan(args.data(), n)};
        const v1::Request request = ScalarCallRequest(id, call);
        ASSERT_EQ(Encoded(id, call), request.SerializeAsString()) << request.DebugString();
        EXPECT_EQ(ScalarCallBytes(id, call), request.ByteSizeLong());
        // And the values are the ones EncodeScalar puts in a Value of each type.
        for (size_t i = 0; i < n; ++i) {
          v1::Value value;
          SetScalarBits(args[i], &value);
          EXPECT_EQ(request.call().args(i).SerializeAsString(), value.SerializeAsString());
        }
      }
    }
  }
  v1::Value encoded;
  EncodeScalar(-5, &encoded);
  EXPECT_EQ(encoded.int_value(), -5);
  EncodeScalar(2.5f, &encoded);
  EXPECT_EQ(encoded.float_value(), 2.5);
  EncodeScalar(7u, &encoded);
  EXPECT_EQ(encoded.uint_value(), 7u);
  EncodeScalar(true, &encoded);
  EXPECT_TRUE(encoded.bool_value());
}

// The answer as the worker writes it (protobuf's serialization of its Response).
std::string WorkerAnswer(uint64_t id, uint64_t generation, const v1::Value* result) {
  v1::Response response;
  response.set_id(id);
  response.set_generation(generation);
  v1::CallResult* call = response.mutable_call();
  if (result != nullptr) *call->mutable_result() = *result;
  return response.SerializeAsString();
}

TEST(ScalarCallTest, AnAnswerAsTheWorkerWritesItIsRead) {
  for (const ScalarBits& scalar : EdgeArgs()) {
    v1::Value value;
    SetScalarBits(scalar, &value);
    for (uint64_t generation : {uint64_t{0}, uint64_t{1}, ~uint64_t{0}}) {
      std::optional<ScalarBits> read;
      ASSERT_TRUE(ReadScalarAnswer(WorkerAnswer(300, generation, &value), 300, &read));
      ASSERT_TRUE(read.has_value());
      EXPECT_EQ(read->kind, scalar.kind);
      EXPECT_EQ(read->bits,
                scalar.kind == v1::Value::kBoolValue ? (scalar.bits != 0) : scalar.bits);
    }
  }
  std::optional<ScalarBits> read = ScalarBitsOf(1);
  ASSERT_TRUE(ReadScalarAnswer(WorkerAnswer(9, 2, nullptr), 9, &read));
  EXPECT_FALSE(read.has_value());  // a void function's
}

TEST(ScalarCallTest, AnyOtherAnswerIsLeftToTheParse) {
  v1::Value seven;
  seven.set_int_value(7);
  const std::string good = WorkerAnswer(5, 1, &seven);
  std::vector<std::string> others;
  others.push_back(WorkerAnswer(6, 1, &seven));  // another request's
  others.push_back("");
  others.push_back(good.substr(0, good.size() - 1));  // cut short
  others.push_back(good + std::string(1, '\0'));      // bytes after it
  {
    v1::Response error;
    error.set_id(5);
    error.mutable_error()->set_code(v1::WORKER_CRASHED);
    others.push_back(error.SerializeAsString());
  }
  {
    v1::Response errno_too;
    errno_too.set_id(5);
    *errno_too.mutable_call()->mutable_result() = seven;
    errno_too.mutable_call()->set_errno_value(2);
    others.push_back(errno_too.SerializeAsString());
  }
  {
    v1::Response text;
    text.set_id(5);
    text.mutable_call()->mutable_result()->set_bytes_value("x");
    others.push_back(text.SerializeAsString());
  }
  {
    v1::Response pointer;
    pointer.set_id(5);
    pointer.mutable_call()->mutable_result()->mutable_pointer()->set_null(true);
    others.push_back(pointer.SerializeAsString());
  }
  {
    v1::Response invoke;
    invoke.mutable_callback_invoke()->set_invocation(1);
    others.push_back(invoke.SerializeAsString());
  }
  {
    v1::Response empty_value;  // a result that is a Value of no kind
    empty_value.set_id(5);
    empty_value.mutable_call()->mutable_result();
    others.push_back(empty_value.SerializeAsString());
  }
  // The same fields, in another order or written twice (protobuf would merge them).
  {
    v1::Response call_only;
    *call_only.mutable_call()->mutable_result() = seven;
    v1::Response id_only;
    id_only.set_id(5);
    others.push_back(call_only.SerializeAsString() + id_only.SerializeAsString());
    others.push_back(good + call_only.SerializeAsString());
  }
  // A bool of 2, a varint of 11 bytes.
  others.push_back(std::string("\x08\x05\x6a\x04\x0a\x02\x08\x02", 8));
  others.push_back(std::string("\x08\x85\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00\x6a\x00", 14));
  // A result whose length claims more than the answer holds.
  others.push_back(std::string("\x08\x05\x6a\x05\x0a\x03\x10\x0e", 8));
  for (const std::string& other : others) {
    std::optional<ScalarBits> read = ScalarBitsOf(42);
    EXPECT_FALSE(ReadScalarAnswer(other, 5, &read)) << absl::CEscape(other);
    ASSERT_TRUE(read.has_value());
    EXPECT_EQ(read->bits, 42u);  // untouched
  }
  std::optional<ScalarBits> read;
  ASSERT_TRUE(ReadScalarAnswer(good, 5, &read));
  EXPECT_EQ(static_cast<int64_t>(read->bits), 7);
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox
