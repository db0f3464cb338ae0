#include "core/framing.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "gtest/gtest.h"

namespace ffibox {
namespace {

class SocketPair : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds_), 0); }
  void TearDown() override {
    if (fds_[0] >= 0) close(fds_[0]);
    if (fds_[1] >= 0) close(fds_[1]);
  }
  int fds_[2] = {-1, -1};
};

TEST_F(SocketPair, FrameRoundTripsIncludingEmptyAndBinaryPayloads) {
  std::string binary("a\0b\xff", 4);
  ASSERT_TRUE(WriteFrame(fds_[0], "hello").ok());
  ASSERT_TRUE(WriteFrame(fds_[0], "").ok());
  ASSERT_TRUE(WriteFrame(fds_[0], binary).ok());
  EXPECT_EQ(*ReadFrame(fds_[1], 100), "hello");
  EXPECT_EQ(*ReadFrame(fds_[1], 100), "");
  EXPECT_EQ(*ReadFrame(fds_[1], 100), binary);
}

TEST_F(SocketPair, OversizedFrameIsRefusedBeforeReadingIt) {
  ASSERT_TRUE(WriteFrame(fds_[0], std::string(101, 'x')).ok());
  absl::StatusOr<std::string> frame = ReadFrame(fds_[1], 100);
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(SocketPair, EndOfStreamIsUnavailable) {
  close(fds_[0]);
  fds_[0] = -1;
  EXPECT_EQ(ReadFrame(fds_[1], 100).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SocketPair, EndOfStreamInsideAFrameIsUnavailable) {
  const char partial[] = {10, 0, 0, 0, 'a', 'b'};
  ASSERT_EQ(write(fds_[0], partial, sizeof(partial)), static_cast<ssize_t>(sizeof(partial)));
  close(fds_[0]);
  fds_[0] = -1;
  EXPECT_EQ(ReadFrame(fds_[1], 100).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SocketPair, WriteToClosedPeerIsUnavailableNotSigpipe) {
  close(fds_[1]);
  fds_[1] = -1;
  EXPECT_EQ(WriteFrame(fds_[0], "x").code(), absl::StatusCode::kUnavailable);
}

TEST(FrameDecoder, ReassemblesFramesSplitAtEveryByte) {
  std::string wire;
  wire += std::string("\x03\0\0\0abc", 7);
  wire += std::string("\x02\0\0\0de", 6);
  FrameDecoder decoder(16);
  std::vector<std::string> frames;
  for (char c : wire) {
    decoder.Append(&c, 1);
    absl::StatusOr<std::optional<std::string>> next = decoder.Next();
    ASSERT_TRUE(next.ok());
    if (next->has_value()) frames.push_back(**next);
  }
  EXPECT_EQ(frames, (std::vector<std::string>{"abc", "de"}));
  EXPECT_FALSE(decoder.HasPartialFrame());
}

TEST(FrameDecoder, ALargeFrameInChunksComesBackWholeAndTheBufferIsReleased) {
  const size_t length = (3 << 20) + 17;
  std::string payload(length, '\0');
  for (size_t i = 0; i < length; ++i) payload[i] = static_cast<char>(i * 7);
  std::string wire(4, '\0');
  for (int i = 0; i < 4; ++i) wire[i] = static_cast<char>(length >> (8 * i));
  wire += payload;
  FrameDecoder decoder(4 << 20);
  for (size_t at = 0; at < wire.size(); at += 65536) {
    const size_t piece = std::min<size_t>(65536, wire.size() - at);
    decoder.Append(wire.data() + at, piece);
    if (at + piece < wire.size()) {
      EXPECT_EQ(decoder.AnnouncedLength(), length);
      EXPECT_EQ(decoder.Buffered(), at + piece);
    }
  }
  absl::StatusOr<std::optional<std::string>> next = decoder.Next();
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_EQ(**next, payload);
  EXPECT_EQ(decoder.Buffered(), 0u);
  EXPECT_EQ(decoder.AnnouncedLength(), 0u);
}

TEST(FrameDecoder, RefusesAnnouncedLengthOverLimit) {
  FrameDecoder decoder(16);
  decoder.Append("\xff\xff\xff\x7f", 4);
  EXPECT_EQ(decoder.Next().status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace ffibox
