// A scalar invocation and its answer, written without the messages, are the bytes protobuf
// writes for the same messages; they are read back only in that shape, and any bytes the
// readers accept parse with protobuf to exactly what they read.
#include "core/scalar_wire.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/base/casts.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

ScalarBits Int(int64_t value) { return {v1::Value::kIntValue, static_cast<uint64_t>(value)}; }
ScalarBits Uint(uint64_t value) { return {v1::Value::kUintValue, value}; }
ScalarBits Bool(bool value) { return {v1::Value::kBoolValue, value ? 1u : 0u}; }
ScalarBits Double(double value) {
  return {v1::Value::kFloatValue, absl::bit_cast<uint64_t>(value)};
}

std::vector<ScalarBits> EdgeArgs() {
  return {Bool(true),
          Bool(false),
          Int(0),
          Int(-1),
          Int(std::numeric_limits<int64_t>::min()),
          Int(std::numeric_limits<int64_t>::max()),
          Uint(0),
          Uint(std::numeric_limits<uint64_t>::max()),
          Uint(200),
          Double(0.0),
          Double(-0.0),
          Double(std::numeric_limits<double>::infinity()),
          Double(std::nan("")),
          Double(std::numeric_limits<double>::denorm_min())};
}

const uint64_t kEdgeIds[] = {0, 1, 127, 128, uint64_t{1} << 35, ~uint64_t{0}};

v1::Response InvokeMessage(const ScalarInvoke& invoke) {
  v1::Response message;
  message.set_generation(invoke.generation);
  v1::CallbackInvoke* call = message.mutable_callback_invoke();
  call->set_invocation(invoke.invocation);
  call->set_callback(invoke.callback);
  call->set_parent_invocation(invoke.parent_invocation);
  for (const ScalarBits& arg : invoke.args) SetScalarBits(arg, call->add_args());
  return message;
}

std::string EncodedInvoke(const ScalarInvoke& invoke) {
  std::string bytes(ScalarInvokeBytesAtMost(invoke.args.size()), '\0');
  bytes.resize(EncodeScalarInvoke(invoke, bytes.data()));
  return bytes;
}

v1::Request ReturnMessage(uint64_t invocation, const std::optional<ScalarBits>& result) {
  v1::Request message;
  message.mutable_callback_return()->set_invocation(invocation);
  if (result.has_value())
    SetScalarBits(*result, message.mutable_callback_return()->mutable_result());
  return message;
}

std::string EncodedReturn(uint64_t invocation, const std::optional<ScalarBits>& result) {
  std::string bytes(kScalarReturnBytesAtMost, '\0');
  bytes.resize(EncodeScalarReturn(invocation, result, bytes.data()));
  return bytes;
}

// `bytes` with the varint that ends at `at` written `extra` bytes longer (the same value,
// not in its shortest form).
std::string Lengthened(std::string bytes, size_t at, size_t extra) {
  bytes[at] = static_cast<char>(bytes[at] | 0x80);
  std::string padding(extra, static_cast<char>(0x80));
  padding.back() = 0;
  bytes.insert(at + 1, padding);
  return bytes;
}

void ExpectSameBits(const ScalarBits& a, const ScalarBits& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.bits, b.bits);
}

v1::Request CallMessage(const ScalarCallFrame& call) {
  v1::Request message;
  message.set_id(call.id);
  message.mutable_call()->set_function(call.function);
  for (const ScalarBits& arg : call.args) SetScalarBits(arg, message.mutable_call()->add_args());
  message.mutable_call()->set_timeout_ms(call.timeout_ms);
  return message;
}

TEST(ScalarWireTest, AScalarCallIsReadAsProtobufWritesIt) {
  const std::vector<ScalarBits> args = EdgeArgs();
  for (uint64_t id : kEdgeIds) {
    for (uint32_t timeout_ms : {0u, 1u, 300000u, ~0u}) {
      for (size_t n = 0; n <= args.size(); ++n) {
        ScalarCallFrame call;
        call.id = id;
        call.function = ~id;
        call.timeout_ms = timeout_ms;
        call.args.assign(args.begin(), args.begin() + n);
        ScalarCallFrame read;
        ASSERT_TRUE(ReadScalarCall(CallMessage(call).SerializeAsString(), &read));
        EXPECT_EQ(read.id, id);
        EXPECT_EQ(read.function, ~id);
        EXPECT_EQ(read.timeout_ms, timeout_ms);
        ASSERT_EQ(read.args.size(), n);
        for (size_t i = 0; i < n; ++i) ExpectSameBits(read.args[i], args[i]);
      }
    }
  }
}

TEST(ScalarWireTest, ACallOfAnyOtherShapeIsNotRead) {
  ScalarCallFrame call;
  call.id = 9;
  call.function = 3;
  call.timeout_ms = 250;
  call.args = {Int(-5), Double(2.5)};
  const v1::Request plain = CallMessage(call);
  std::vector<v1::Request> others(9, plain);
  others[0].set_invocation(4);
  others[1].set_channel_invocation(4);
  others[2].mutable_call()->add_blocks()->set_size(8);
  others[3].mutable_call()->set_capture_errno(true);
  others[4].mutable_call()->set_set_errno(0);
  *others[5].mutable_call()->add_variadic_types() = v1::Type();
  others[6].mutable_call()->add_release()->set_address(64);
  others[7].mutable_call()->mutable_args(0)->set_text_value("x");
  others[8].mutable_call()->add_args();  // a Value of no kind
  for (const v1::Request& other : others) {
    ScalarCallFrame read;
    EXPECT_FALSE(ReadScalarCall(other.SerializeAsString(), &read)) << other.DebugString();
  }
  const std::string bytes = plain.SerializeAsString();
  ScalarCallFrame read;
  ASSERT_TRUE(ReadScalarCall(bytes, &read));
  for (size_t length = 0; length < bytes.size(); ++length) {
    EXPECT_FALSE(ReadScalarCall(bytes.substr(0, length), &read)) << length;
  }
  EXPECT_FALSE(ReadScalarCall(bytes + std::string(1, '\0'), &read));
  // The call's length, and the first argument's, not in their shortest form.
  EXPECT_FALSE(ReadScalarCall(Lengthened(bytes, 3, 1), &read));
  EXPECT_FALSE(ReadScalarCall(Lengthened(bytes, 7, 1), &read));
  // A timeout beyond 32 bits (protobuf keeps its low bits) is left to protobuf.
  ASSERT_EQ(static_cast<uint8_t>(bytes[bytes.size() - 3]),
            wire::Tag(v1::Call::kTimeoutMsFieldNumber, wire::kVarint));
  std::string wide = bytes.substr(0, bytes.size() - 2);  // without 250's two bytes
  char varint[wire::kMaxVarintBytes];
  const size_t varint_bytes =
      static_cast<size_t>(wire::PutVarint(250 + (uint64_t{1} << 32), varint) - varint);
  wide.append(varint, varint_bytes);
  wide[3] = static_cast<char>(wide[3] + varint_bytes - 2);  // the call's length
  EXPECT_FALSE(ReadScalarCall(wide, &read));
  v1::Request parsed;
  ASSERT_TRUE(parsed.ParseFromString(wide));
  EXPECT_EQ(parsed.call().timeout_ms(), 250u);
}

TEST(ScalarWireTest, AScalarAnswerIsTheBytesProtobufWrites) {
  std::vector<std::optional<ScalarBits>> results = {std::nullopt};
  for (const ScalarBits& arg : EdgeArgs()) results.push_back(arg);
  for (uint64_t id : kEdgeIds) {
    for (uint64_t generation : kEdgeIds) {
      for (const std::optional<ScalarBits>& result : results) {
        v1::Response message;
        message.set_id(id);
        message.set_generation(generation);
        v1::CallResult* call = message.mutable_call();
        if (result.has_value()) SetScalarBits(*result, call->mutable_result());
        std::string bytes(kScalarAnswerBytesAtMost, '\0');
        bytes.resize(EncodeScalarAnswer(id, generation, result, bytes.data()));
        ASSERT_EQ(bytes, message.SerializeAsString()) << message.DebugString();
        EXPECT_EQ(bytes.size(), message.ByteSizeLong());
      }
    }
  }
}

TEST(ScalarWireTest, AnInvokeIsTheBytesProtobufWritesAndReadsBack) {
  const std::vector<ScalarBits> args = EdgeArgs();
  for (uint64_t generation : kEdgeIds) {
    for (uint64_t id : kEdgeIds) {
      for (size_t n = 0; n <= args.size(); ++n) {
        ScalarInvoke invoke;
        invoke.generation = generation;
        invoke.invocation = id;
        invoke.callback = ~id;
        invoke.parent_invocation = id >> 3;
        invoke.args.assign(args.begin(), args.begin() + n);
        const std::string bytes = EncodedInvoke(invoke);
        ASSERT_EQ(bytes, InvokeMessage(invoke).SerializeAsString())
            << InvokeMessage(invoke).DebugString();
        ScalarInvoke read;
        ASSERT_TRUE(ReadScalarInvoke(bytes, &read));
        EXPECT_EQ(read.generation, generation);
        EXPECT_EQ(read.invocation, id);
        EXPECT_EQ(read.callback, ~id);
        EXPECT_EQ(read.parent_invocation, id >> 3);
        ASSERT_EQ(read.args.size(), n);
        for (size_t i = 0; i < n; ++i) ExpectSameBits(read.args[i], args[i]);
      }
    }
  }
}

TEST(ScalarWireTest, AnInvokeOfAnyOtherShapeIsNotRead) {
  ScalarInvoke invoke;
  invoke.generation = 2;
  invoke.invocation = 7;
  invoke.callback = 3;
  invoke.args = {Int(5), Double(1.5)};
  const v1::Response plain = InvokeMessage(invoke);
  std::vector<v1::Response> others;
  others.push_back(plain);
  others.back().set_id(9);
  others.push_back(plain);
  others.back().mutable_error()->set_message("no");
  others.push_back(plain);
  others.back().mutable_callback_invoke()->add_pointees()->set_arg(0);
  others.push_back(plain);
  others.back().mutable_callback_invoke()->set_request_id(4);
  others.push_back(plain);
  others.back().mutable_callback_invoke()->add_args();  // a Value of no kind
  others.push_back(plain);
  others.back().mutable_callback_invoke()->add_args()->set_bytes_value("x");
  others.push_back(plain);
  others.back().mutable_callback_invoke()->mutable_args(0)->mutable_pointer()->set_null(true);
  for (const v1::Response& other : others) {
    ScalarInvoke read;
    EXPECT_FALSE(ReadScalarInvoke(other.SerializeAsString(), &read)) << other.DebugString();
  }
  const std::string bytes = plain.SerializeAsString();
  ScalarInvoke read;
  ASSERT_TRUE(ReadScalarInvoke(bytes, &read));
  // Cut short anywhere, or with anything after it.
  for (size_t length = 0; length < bytes.size(); ++length) {
    EXPECT_FALSE(ReadScalarInvoke(bytes.substr(0, length), &read)) << length;
  }
  EXPECT_FALSE(ReadScalarInvoke(bytes + std::string(1, '\0'), &read));
  EXPECT_FALSE(ReadScalarInvoke(bytes + plain.SerializeAsString(), &read));
  // A length not in its shortest form (protobuf refuses one of more than five bytes): the
  // callback_invoke's (after the generation and its two-byte tag) and the first argument's.
  for (size_t extra : {1, 5, 9}) {
    EXPECT_FALSE(ReadScalarInvoke(Lengthened(bytes, 4, extra), &read)) << extra;
    const std::string arg = Lengthened(bytes, 10, extra);
    ASSERT_EQ(static_cast<uint8_t>(bytes[9]),
              wire::Tag(v1::CallbackInvoke::kArgsFieldNumber, wire::kLengthDelimited));
    EXPECT_FALSE(ReadScalarInvoke(arg, &read)) << extra;
  }
}

TEST(ScalarWireTest, AReturnIsTheBytesProtobufWritesAndReadsBack) {
  std::vector<std::optional<ScalarBits>> results = {std::nullopt};
  for (const ScalarBits& arg : EdgeArgs()) results.push_back(arg);
  for (uint64_t id : kEdgeIds) {
    for (const std::optional<ScalarBits>& result : results) {
      const std::string bytes = EncodedReturn(id, result);
      ASSERT_EQ(bytes, ReturnMessage(id, result).SerializeAsString())
          << ReturnMessage(id, result).DebugString();
      std::optional<ScalarBits> read = Int(99);
      ASSERT_TRUE(ReadScalarReturn(bytes, id, &read));
      ASSERT_EQ(read.has_value(), result.has_value());
      if (result.has_value()) ExpectSameBits(*read, *result);
      // An answer to another invocation is not this one's.
      EXPECT_FALSE(ReadScalarReturn(bytes, id + 1, &read));
    }
  }
}

TEST(ScalarWireTest, AReturnOfAnyOtherShapeIsNotRead) {
  const v1::Request plain = ReturnMessage(7, Int(-3));
  std::vector<v1::Request> others;
  others.push_back(plain);
  others.back().set_id(1);
  others.push_back(plain);
  others.back().set_invocation(7);
  others.push_back(plain);
  others.back().mutable_callback_return()->set_error("failed");
  others.push_back(plain);
  others.back().mutable_callback_return()->add_pointees()->set_arg(0);
  others.push_back(plain);
  others.back().mutable_callback_return()->mutable_result()->set_text_value("x");
  others.push_back(plain);
  others.back().mutable_callback_return()->mutable_result()->Clear();  // an empty Value
  for (const v1::Request& other : others) {
    std::optional<ScalarBits> read;
    EXPECT_FALSE(ReadScalarReturn(other.SerializeAsString(), 7, &read)) << other.DebugString();
  }
  const std::string bytes = plain.SerializeAsString();
  std::optional<ScalarBits> read;
  ASSERT_TRUE(ReadScalarReturn(bytes, 7, &read));
  for (size_t length = 0; length < bytes.size(); ++length) {
    EXPECT_FALSE(ReadScalarReturn(bytes.substr(0, length), 7, &read)) << length;
  }
  EXPECT_FALSE(ReadScalarReturn(bytes + std::string(1, '\0'), 7, &read));
  // A length not in its shortest form: the callback_return's (after its two-byte tag) and
  // the result's.
  for (size_t extra : {1, 5, 9}) {
    EXPECT_FALSE(ReadScalarReturn(Lengthened(bytes, 2, extra), 7, &read)) << extra;
    EXPECT_FALSE(ReadScalarReturn(Lengthened(bytes, 6, extra), 7, &read)) << extra;
  }
}

// Bytes changed at random: whatever a reader accepts, protobuf parses to the same message.
TEST(ScalarWireTest, WhatTheReadersAcceptProtobufParsesToTheSame) {
  std::mt19937_64 random(20261206);
  const std::vector<ScalarBits> args = EdgeArgs();
  int invokes_read = 0;
  int returns_read = 0;
  int calls_read = 0;
  for (int round = 0; round < 200000; ++round) {
    ScalarInvoke invoke;
    invoke.generation = random() % 3;
    invoke.invocation = random() >> (random() % 64);
    invoke.callback = random() % 200;
    invoke.parent_invocation = random() % 2 == 0 ? 0 : random();
    for (size_t n = random() % 4; n > 0; --n) invoke.args.push_back(args[random() % args.size()]);
    std::string bytes = EncodedInvoke(invoke);
    std::optional<ScalarBits> result;
    if (random() % 2 == 0) result = args[random() % args.size()];
    std::string answer = EncodedReturn(invoke.invocation, result);
    for (std::string* mutated : {&bytes, &answer}) {
      for (int changes = 1 + random() % 3; changes > 0; --changes) {
        switch (random() % 4) {
          case 3:  // a varint (or any byte below 0x80) made longer
            mutated->assign(Lengthened(*mutated, random() % mutated->size(), 1 + random() % 9));
            break;
          case 0:
            (*mutated)[random() % mutated->size()] = static_cast<char>(random());
            break;
          case 1:
            mutated->insert(random() % (mutated->size() + 1), 1, static_cast<char>(random()));
            break;
          default:
            if (mutated->size() > 1) mutated->erase(random() % mutated->size(), 1);
        }
      }
    }
    ScalarInvoke read;
    if (ReadScalarInvoke(bytes, &read)) {
      ++invokes_read;
      v1::Response parsed;
      ASSERT_TRUE(parsed.ParseFromString(bytes));
      ASSERT_EQ(parsed.SerializeAsString(), InvokeMessage(read).SerializeAsString())
          << parsed.DebugString();
    }
    ScalarCallFrame call;
    call.id = invoke.invocation;
    call.function = invoke.callback;
    call.timeout_ms = static_cast<uint32_t>(invoke.parent_invocation);
    call.args = invoke.args;
    std::string call_bytes = CallMessage(call).SerializeAsString();
    for (int changes = 1 + random() % 3; changes > 0; --changes) {
      if (random() % 2 == 0) {
        call_bytes = Lengthened(call_bytes, random() % call_bytes.size(), 1 + random() % 9);
      } else {
        call_bytes[random() % call_bytes.size()] = static_cast<char>(random());
      }
    }
    ScalarCallFrame read_call;
    if (ReadScalarCall(call_bytes, &read_call)) {
      ++calls_read;
      v1::Request parsed;
      ASSERT_TRUE(parsed.ParseFromString(call_bytes));
      ASSERT_EQ(parsed.SerializeAsString(), CallMessage(read_call).SerializeAsString())
          << parsed.DebugString();
    }
    std::optional<ScalarBits> read_result;
    if (ReadScalarReturn(answer, invoke.invocation, &read_result)) {
      ++returns_read;
      v1::Request parsed;
      ASSERT_TRUE(parsed.ParseFromString(answer));
      ASSERT_EQ(parsed.SerializeAsString(),
                ReturnMessage(invoke.invocation, read_result).SerializeAsString())
          << parsed.DebugString();
    }
  }
  // Some mutations keep the shape (another value, another id): the comparison ran on them.
  EXPECT_GT(invokes_read, 1000);
  EXPECT_GT(returns_read, 1000);
  EXPECT_GT(calls_read, 1000);
}

}  // namespace
}  // namespace ffibox
