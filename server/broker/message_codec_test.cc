#include "server/broker/message_codec.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "ffibox/v1/ffibox.pb.h"
#include "grpcpp/support/slice.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

v1::Response LargeResponse() {
  v1::Response response;
  response.set_id(9);
  v1::CallResult* call = response.mutable_call();
  call->add_blocks()->set_data(std::string(1 << 20, 'a'));
  call->add_blocks()->set_data("short");
  call->add_blocks()->set_data(std::string(300000, 'b'));
  call->mutable_result()->set_int_value(-4);
  return response;
}

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string flat;
  for (const grpc::Slice& slice : slices) {
    flat.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return flat;
}

TEST(EncodeAliasing, LargeFieldsPointIntoTheMessageWhichLivesAsLongAsTheBytes) {
  auto response = std::make_shared<const v1::Response>(LargeResponse());
  const std::string expected = response->SerializeAsString();
  const char* first_block = response->call().blocks(0).data().data();
  std::weak_ptr<const v1::Response> alive = response;

  grpc::ByteBuffer encoded = EncodeAliasing(std::move(response));
  EXPECT_EQ(Flatten(encoded), expected);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(encoded.Dump(&slices).ok());
  bool aliased = false;
  for (const grpc::Slice& slice : slices) {
    aliased |= reinterpret_cast<const char*>(slice.begin()) == first_block;
  }
  EXPECT_TRUE(aliased) << "the 1 MiB block was copied";
  EXPECT_FALSE(alive.expired());
  slices.clear();
  encoded.Clear();
  EXPECT_TRUE(alive.expired()) << "the slices keep the response after gRPC let go";
}

TEST(EncodeAliasing, ASmallMessageIsOneSliceOfItsEncoding) {
  v1::Response response;
  response.set_id(1);
  response.mutable_done();
  const std::string expected = response.SerializeAsString();
  grpc::ByteBuffer encoded = EncodeAliasing(std::make_shared<const v1::Response>(response));
  EXPECT_EQ(Flatten(encoded), expected);
}

TEST(ParseReceived, AMessageInManySlicesParsesAndTheBufferIsEmptied) {
  const std::string wire = LargeResponse().SerializeAsString();
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < wire.size(); at += 4096) {
    slices.emplace_back(wire.data() + at, std::min<size_t>(4096, wire.size() - at));
  }
  grpc::ByteBuffer received(slices.data(), slices.size());
  slices.clear();
  v1::Response parsed;
  ASSERT_TRUE(ParseReceived(&received, &parsed));
  EXPECT_EQ(parsed.SerializeAsString(), wire);
  EXPECT_EQ(received.Length(), 0u);
}

TEST(ParseReceived, BytesThatAreNoMessageAreRefused) {
  const grpc::Slice slices[] = {grpc::Slice(std::string("\x0a\xff", 2)),
                                grpc::Slice(std::string("\xff\xff", 2))};
  grpc::ByteBuffer received(slices, 2);
  v1::Response parsed;
  EXPECT_FALSE(ParseReceived(&received, &parsed));
}

// `wire` as gRPC receives it: in slices of 4 KiB.
grpc::ByteBuffer Received(const std::string& wire) {
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < wire.size(); at += 4096) {
    slices.emplace_back(wire.data() + at, std::min<size_t>(4096, wire.size() - at));
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

// A request of `count` empty memory blocks: two bytes each, an object each once parsed.
std::string EmptyBlocks(int count) {
  v1::Request request;
  request.set_id(5);
  for (int i = 0; i < count; ++i) request.mutable_call()->add_blocks();
  return request.SerializeAsString();
}

constexpr size_t kLimit = 1 << 20;

absl::Status Check(const std::string& wire) {
  return CheckReceived(Received(wire), v1::Request::descriptor(), kLimit, 4 * kLimit);
}

TEST(CheckReceived, ARequestOverTheSizeLimitIsRefused) {
  v1::Request request;
  request.mutable_call()->add_blocks()->set_data(std::string(kLimit, 'x'));
  const absl::Status refused = Check(request.SerializeAsString());
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.message(), absl::StrCat("of ", request.ByteSizeLong(),
                                            " bytes exceeds the limit of ", kLimit, " bytes"));
}

TEST(CheckReceived, ARequestThatWouldTakeFarMoreOnceParsedIsRefused) {
  const std::string wire = EmptyBlocks(200000);
  ASSERT_LT(wire.size(), kLimit);
  const absl::Status refused = Check(wire);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StartsWith(
      refused.message(),
      absl::StrCat("would take more than ", 4 * kLimit, " bytes once parsed: send large arrays")))
      << refused;
}

TEST(CheckReceived, HonestRequestsPassAndSmallOnesAreNotWalked) {
  v1::Request request;
  request.mutable_call()->add_blocks()->set_data(std::string(kLimit - 64, 'x'));
  EXPECT_TRUE(Check(request.SerializeAsString()).ok());
  const std::string small = EmptyBlocks(30000);
  ASSERT_LE(small.size(), 64u << 10);
  EXPECT_TRUE(Check(small).ok());
  EXPECT_EQ(Check(std::string("\x0a\xff\xff\xff", 4) + std::string(70000, '\0')).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RequestHeadOf, ReadsTheLastIdAndOperationWithoutParsingTheRest) {
  v1::Request call;
  call.set_id(3);
  call.mutable_call()->add_blocks()->set_data(std::string(100000, 'x'));
  v1::Request then;
  then.set_id(77);
  then.mutable_ping();
  // Protobuf keeps the last of each: the id 77 and the ping.
  RequestHead head = RequestHeadOf(Received(call.SerializeAsString() + then.SerializeAsString()));
  EXPECT_EQ(head.id, 77u);
  EXPECT_EQ(head.op, v1::Request::kPing);
  head = RequestHeadOf(Received(call.SerializeAsString()));
  EXPECT_EQ(head.id, 3u);
  EXPECT_EQ(head.op, v1::Request::kCall);
  // Up to where the encoding stops being well formed: a call whose length runs past the end.
  head = RequestHeadOf(Received(std::string("\x08\x05\x6a\xff", 4)));
  EXPECT_EQ(head.id, 5u);
  EXPECT_EQ(head.op, v1::Request::kCall);
  head = RequestHeadOf(Received(std::string("\x0a\xff", 2)));
  EXPECT_EQ(head.id, 0u);
  EXPECT_EQ(head.op, v1::Request::OP_NOT_SET);
}

}  // namespace
}  // namespace ffibox
