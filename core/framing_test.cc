#include "core/framing.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "core/shm_channel.h"
#include "gtest/gtest.h"

// This test binary replaces the global operator new, to count the allocations of a reader of
// frames while it reads (only while counting_allocations is set).
std::atomic<bool> counting_allocations{false};
std::atomic<int> allocations{0};

void* operator new(size_t size) {
  if (counting_allocations.load(std::memory_order_relaxed)) allocations.fetch_add(1);
  void* memory = std::malloc(size == 0 ? 1 : size);
  if (memory == nullptr) std::abort();
  return memory;
}
void operator delete(void* memory) noexcept { std::free(memory); }
void operator delete(void* memory, size_t) noexcept { std::free(memory); }

namespace ffibox {
namespace {

// How many allocations `run` makes through operator new.
template <typename Run>
int AllocationsOf(Run run) {
  allocations.store(0);
  counting_allocations.store(true);
  run();
  counting_allocations.store(false);
  return allocations.load();
}

// Both ends of one channel in this process: the creator's and an attached peer's.
class ChannelEnds : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<ShmChannel>> creator = ShmChannel::Create(kMinShmRingBytes);
    ASSERT_TRUE(creator.ok()) << creator.status();
    creator_ = std::move(*creator);
    absl::StatusOr<std::unique_ptr<ShmChannel>> peer = ShmChannel::Attach(creator_->memfd());
    ASSERT_TRUE(peer.ok()) << peer.status();
    peer_ = std::move(*peer);
  }

  absl::Time Soon() const { return absl::Now() + absl::Seconds(10); }

  std::unique_ptr<ShmChannel> creator_;
  std::unique_ptr<ShmChannel> peer_;
};

TEST_F(ChannelEnds, FrameRoundTripsIncludingEmptyAndBinaryPayloads) {
  std::string binary("a\0b\xff", 4);
  ASSERT_TRUE(WriteFrame(*creator_, "hello", Soon()).ok());
  ASSERT_TRUE(WriteFrame(*creator_, "", Soon()).ok());
  ASSERT_TRUE(WriteFrame(*creator_, binary, Soon()).ok());
  EXPECT_EQ(*ReadFrame(*peer_, 100, Soon()), "hello");
  EXPECT_EQ(*ReadFrame(*peer_, 100, Soon()), "");
  EXPECT_EQ(*ReadFrame(*peer_, 100, Soon()), binary);
}

TEST_F(ChannelEnds, FrameLargerThanTheRingStreamsThrough) {
  std::string big(5 * kMinShmRingBytes + 3, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  std::thread writer([&] { EXPECT_TRUE(WriteFrame(*peer_, big, Soon()).ok()); });
  absl::StatusOr<std::string> frame = ReadFrame(*creator_, big.size(), Soon());
  writer.join();
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_TRUE(*frame == big);
}

TEST_F(ChannelEnds, AFrameFromASerializerStreamsThroughAndRoundTrips) {
  std::string big(3 * kMinShmRingBytes + 5, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 13);
  auto write = [](absl::string_view bytes) {
    return [bytes](google::protobuf::io::CodedOutputStream* out) {
      out->WriteRaw(bytes.data(), static_cast<int>(bytes.size()));
    };
  };
  std::thread writer([&] {
    EXPECT_TRUE(WriteFrame(*peer_, big.size(), write(big), Soon()).ok());
    EXPECT_TRUE(WriteFrame(*peer_, 0, write(""), Soon()).ok());
    EXPECT_TRUE(WriteFrame(*peer_, 3, write("abc"), Soon()).ok());
  });
  absl::StatusOr<std::string> frame = ReadFrame(*creator_, big.size(), Soon());
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_TRUE(*frame == big);
  EXPECT_EQ(*ReadFrame(*creator_, 10, Soon()), "");
  EXPECT_EQ(*ReadFrame(*creator_, 10, Soon()), "abc");
  writer.join();
}

TEST_F(ChannelEnds, ASerializerThatDisagreesWithItsLengthIsAnInternalError) {
  absl::Status status = WriteFrame(
      *creator_, 5, [](google::protobuf::io::CodedOutputStream* out) { out->WriteRaw("abc", 3); },
      Soon());
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
}

TEST_F(ChannelEnds, OversizedFrameIsRefusedBeforeReadingIt) {
  ASSERT_TRUE(WriteFrame(*creator_, std::string(101, 'x'), Soon()).ok());
  absl::StatusOr<std::string> frame = ReadFrame(*peer_, 100, Soon());
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(ChannelEnds, EndOfStreamIsUnavailable) {
  creator_->Close();
  EXPECT_EQ(ReadFrame(*peer_, 100, Soon()).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ChannelEnds, EndOfStreamInsideAFrameIsUnavailable) {
  const char partial[] = {10, 0, 0, 0, 'a', 'b'};
  ASSERT_TRUE(creator_->Write(absl::string_view(partial, sizeof(partial)), Soon()).ok());
  creator_->Close();
  EXPECT_EQ(ReadFrame(*peer_, 100, Soon()).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ChannelEnds, SilenceEndsTheReadAtItsDeadline) {
  absl::StatusOr<std::string> frame = ReadFrame(*peer_, 100, absl::Now() + absl::Milliseconds(50));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(ChannelEnds, AFrameReadAsItArrivesComesWholeAcrossPauses) {
  std::thread writer([this] {
    const char first[] = {5, 0, 0, 0, 'h', 'e'};
    (void)creator_->Write(absl::string_view(first, sizeof(first)), Soon());
    absl::SleepFor(absl::Milliseconds(100));  // within the progress allowed
    (void)creator_->Write("llo", Soon());
  });
  FrameDecoder decoder(100);
  absl::StatusOr<FramePayload> frame =
      ReadFrameAsItArrives(*peer_, decoder, Soon(), absl::Milliseconds(500));
  writer.join();
  ASSERT_TRUE(frame.ok()) << frame.status();
  ASSERT_EQ(frame->pieces.size(), 1u);
  EXPECT_EQ(frame->pieces[0], "hello");
}

TEST_F(ChannelEnds, AFrameThatStopsArrivingIsDataLossBeforeTheDeadline) {
  const char partial[] = {10, 0, 0, 0, 'a', 'b'};
  ASSERT_TRUE(creator_->Write(absl::string_view(partial, sizeof(partial)), Soon()).ok());
  FrameDecoder decoder(100);
  const absl::Time start = absl::Now();
  absl::StatusOr<FramePayload> frame =
      ReadFrameAsItArrives(*peer_, decoder, Soon(), absl::Milliseconds(100));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kDataLoss) << frame.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(ChannelEnds, AnInterruptionEndsTheWaitOnlyBeforeAFrameStarted) {
  FrameDecoder decoder(100);
  peer_->Interrupt();
  EXPECT_EQ(ReadFrameAsItArrives(*peer_, decoder, Soon(), absl::Seconds(1)).status().code(),
            absl::StatusCode::kCancelled);
  const char partial[] = {3, 0, 0, 0, 'a'};
  ASSERT_TRUE(creator_->Write(absl::string_view(partial, sizeof(partial)), Soon()).ok());
  std::thread finisher([this] {
    absl::SleepFor(absl::Milliseconds(50));
    peer_->Interrupt();  // ignored: the frame has started
    absl::SleepFor(absl::Milliseconds(50));
    (void)creator_->Write("bc", Soon());
  });
  absl::StatusOr<FramePayload> frame =
      ReadFrameAsItArrives(*peer_, decoder, Soon(), absl::Seconds(1));
  finisher.join();
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->pieces[0], "abc");
}

TEST_F(ChannelEnds, AFrameOverTheDecodersLimitIsResourceExhausted) {
  const char header[] = {0, 1, 0, 0};  // 256 bytes announced
  ASSERT_TRUE(creator_->Write(absl::string_view(header, sizeof(header)), Soon()).ok());
  FrameDecoder decoder(100);
  EXPECT_EQ(ReadFrameAsItArrives(*peer_, decoder, Soon(), absl::Seconds(1)).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(ChannelEnds, WriteToAClosedPeerIsUnavailable) {
  peer_->Close();
  EXPECT_EQ(WriteFrame(*creator_, "x", Soon()).code(), absl::StatusCode::kUnavailable);
}

// A frame's pieces as one string.
std::string Joined(FramePayload frame) {
  std::string joined;
  for (const std::string& piece : frame.pieces) joined += piece;
  return joined;
}

TEST(FrameDecoder, ReassemblesFramesSplitAtEveryByte) {
  std::string wire;
  wire += std::string("\x03\0\0\0abc", 7);
  wire += std::string("\x02\0\0\0de", 6);
  FrameDecoder decoder(16);
  std::vector<std::string> frames;
  for (char c : wire) {
    decoder.Append(&c, 1);
    absl::StatusOr<std::optional<FramePayload>> next = decoder.Next();
    ASSERT_TRUE(next.ok());
    if (next->has_value()) frames.push_back(Joined(std::move(**next)));
  }
  EXPECT_EQ(frames, (std::vector<std::string>{"abc", "de"}));
  EXPECT_FALSE(decoder.HasPartialFrame());
}

std::string Framed(const std::string& payload) {
  std::string wire(4, '\0');
  for (int i = 0; i < 4; ++i) wire[i] = static_cast<char>(payload.size() >> (8 * i));
  return wire + payload;
}

TEST(FrameDecoder, ALargeFrameInChunksComesBackWholeInPiecesAndTheBufferIsReleased) {
  const size_t length = 3 * kFramePieceBytes + 17;
  std::string payload(length, '\0');
  for (size_t i = 0; i < length; ++i) payload[i] = static_cast<char>(i * 7);
  const std::string wire = Framed(payload);
  FrameDecoder decoder(4 * kFramePieceBytes);
  for (size_t at = 0; at < wire.size(); at += 65536) {
    const size_t piece = std::min<size_t>(65536, wire.size() - at);
    decoder.Append(wire.data() + at, piece);
    if (at + piece < wire.size()) {
      EXPECT_EQ(decoder.AnnouncedLength(), length);
      EXPECT_EQ(decoder.Buffered(), at + piece);
    }
  }
  absl::StatusOr<std::optional<FramePayload>> next = decoder.Next();
  ASSERT_TRUE(next.ok() && next->has_value());
  // Pieces a parser can free as it goes, none larger than kFramePieceBytes.
  ASSERT_EQ((*next)->pieces.size(), 4u);
  for (const std::string& piece : (*next)->pieces) {
    EXPECT_LE(piece.capacity(), kFramePieceBytes);
  }
  EXPECT_EQ(Joined(std::move(**next)), payload);
  EXPECT_EQ(decoder.Buffered(), 0u);
  EXPECT_EQ(decoder.AnnouncedLength(), 0u);
}

TEST(FrameDecoder, FramesAroundALargeOneInOneAppendComeBackInOrder) {
  const std::string large(kFramePieceBytes + 100, 'L');
  const std::string wire = Framed("before") + Framed(large) + Framed("after") + Framed(large);
  FrameDecoder decoder(2 * kFramePieceBytes);
  decoder.Append(wire.data(), wire.size());
  std::vector<std::string> frames;
  for (;;) {
    absl::StatusOr<std::optional<FramePayload>> next = decoder.Next();
    ASSERT_TRUE(next.ok());
    if (!next->has_value()) break;
    frames.push_back(Joined(std::move(**next)));
  }
  EXPECT_EQ(frames, (std::vector<std::string>{"before", large, "after", large}));
  EXPECT_FALSE(decoder.HasPartialFrame());
}

// Frames read one after another into the same string reuse its memory; one larger than the
// capacity a reader keeps is given back once a small frame follows.
TEST_F(ChannelEnds, FramesReadIntoOneStringReuseItsMemory) {
  std::string payload;
  payload.reserve(4096);
  const char* const memory = payload.data();
  ASSERT_TRUE(WriteFrame(*creator_, "first", Soon()).ok());
  ASSERT_TRUE(WriteFrame(*creator_, std::string(3000, 'x'), Soon()).ok());
  ASSERT_TRUE(ReadFrameInto(*peer_, 4096, Soon(), &payload).ok());
  EXPECT_EQ(payload, "first");
  ASSERT_TRUE(ReadFrameInto(*peer_, 4096, Soon(), &payload).ok());
  EXPECT_EQ(payload, std::string(3000, 'x'));
  EXPECT_EQ(payload.data(), memory);

  const std::string big(size_t{3} << 20, 'b');
  std::thread writer([&] {
    EXPECT_TRUE(WriteFrame(*creator_, big, Soon()).ok());
    EXPECT_TRUE(WriteFrame(*creator_, "small", Soon()).ok());
  });
  EXPECT_TRUE(ReadFrameInto(*peer_, big.size(), Soon(), &payload).ok());
  EXPECT_TRUE(payload == big);
  EXPECT_TRUE(ReadFrameInto(*peer_, big.size(), Soon(), &payload).ok());
  writer.join();
  EXPECT_EQ(payload, "small");
  EXPECT_LT(payload.capacity(), size_t{1} << 20);
}

// A reader of one small frame after another allocates nothing once its buffer holds the
// largest of them: frames read into one string, and frames read as they arrive through a
// decoder given back the last frame's piece (as the worker and the C++ client read calls,
// answers and invocations on the same-host channel).
TEST_F(ChannelEnds, ReadingSmallFramesOneAfterAnotherAllocatesNothing) {
  const std::string call(40, 'c');
  constexpr int kFrames = 100;
  std::string payload;
  ASSERT_TRUE(WriteFrame(*creator_, call, Soon()).ok());
  ASSERT_TRUE(ReadFrameInto(*peer_, 1 << 20, Soon(), &payload).ok());  // sizes the buffer
  int failures = 0;
  const int into_one_string = AllocationsOf([&] {
    for (int i = 0; i < kFrames; ++i) {
      if (!WriteFrame(*creator_, call, Soon()).ok() ||
          !ReadFrameInto(*peer_, 1 << 20, Soon(), &payload).ok() || payload != call) {
        ++failures;
      }
    }
  });
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(into_one_string, 0);

  std::string recycled;
  auto read_one = [&] {
    FrameDecoder frames(1 << 20);
    frames.Recycle(std::move(recycled));
    absl::StatusOr<FramePayload> frame =
        ReadFrameAsItArrives(*peer_, frames, Soon(), absl::Seconds(1));
    if (!frame.ok() || frame->pieces.size() != 1 || frame->pieces[0] != call) return false;
    recycled = std::move(frame->pieces[0]);
    return true;
  };
  ASSERT_TRUE(WriteFrame(*creator_, call, Soon()).ok());
  ASSERT_TRUE(read_one());
  const int through_a_decoder = AllocationsOf([&] {
    for (int i = 0; i < kFrames; ++i) {
      if (!WriteFrame(*creator_, call, Soon()).ok() || !read_one()) ++failures;
    }
  });
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(through_a_decoder, 0);
}

// A decoder given back the piece of a frame it returned buffers the next frame there (a
// reader of one small frame after another allocates nothing); one that still holds bytes,
// or a piece larger than it keeps, ignores it.
TEST(FrameDecoder, ARecycledPieceHoldsTheNextFrame) {
  const std::string frame = std::string("\x05\0\0\0", 4) + "hello";
  FrameDecoder decoder(1 << 20);
  decoder.Append(frame.data(), frame.size());
  absl::StatusOr<std::optional<FramePayload>> first = decoder.Next();
  ASSERT_TRUE(first.ok() && first->has_value());
  std::string piece = std::move((*first)->pieces[0]);
  piece.reserve(1000);
  const char* const memory = piece.data();

  FrameDecoder next(1 << 20);
  next.Recycle(std::move(piece));
  next.Append(frame.data(), frame.size());
  absl::StatusOr<std::optional<FramePayload>> second = next.Next();
  ASSERT_TRUE(second.ok() && second->has_value());
  ASSERT_EQ((*second)->pieces.size(), 1u);
  EXPECT_EQ((*second)->pieces[0], "hello");
  EXPECT_EQ((*second)->pieces[0].data(), memory);

  // Holding bytes of a frame: the recycled string is not taken, nothing is lost.
  FrameDecoder busy(1 << 20);
  busy.Append(frame.data(), 6);
  std::string spare;
  spare.reserve(100);
  busy.Recycle(std::move(spare));
  busy.Append(frame.data() + 6, frame.size() - 6);
  absl::StatusOr<std::optional<FramePayload>> whole = busy.Next();
  ASSERT_TRUE(whole.ok() && whole->has_value());
  EXPECT_EQ((*whole)->pieces[0], "hello");

  // Larger than a decoder keeps between frames: not taken.
  FrameDecoder fresh(1 << 20);
  std::string huge;
  huge.reserve(size_t{2} << 20);
  const char* const huge_memory = huge.data();
  fresh.Recycle(std::move(huge));
  fresh.Append(frame.data(), frame.size());
  absl::StatusOr<std::optional<FramePayload>> third = fresh.Next();
  ASSERT_TRUE(third.ok() && third->has_value());
  EXPECT_NE((*third)->pieces[0].data(), huge_memory);
}

TEST(FrameDecoder, RefusesAnnouncedLengthOverLimit) {
  FrameDecoder decoder(16);
  decoder.Append("\xff\xff\xff\x7f", 4);
  EXPECT_EQ(decoder.Next().status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace ffibox
