#include "server/broker/client_preface.h"

#include <string>

#include "gtest/gtest.h"

namespace ffibox {
namespace {

const std::string kPreface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);

// A frame header: `length`, `type`, `flags`, stream 0.
std::string FrameHeader(size_t length, char type, char flags = 0) {
  return std::string{static_cast<char>(length >> 16),
                     static_cast<char>(length >> 8),
                     static_cast<char>(length),
                     type,
                     flags,
                     0,
                     0,
                     0,
                     0};
}

TEST(ClientPrefaceTest, NothingYetIsIncomplete) {
  EXPECT_EQ(CheckClientPreface(""), ClientPreface::kIncomplete);
}

TEST(ClientPrefaceTest, PartOfThePrefaceIsIncomplete) {
  EXPECT_EQ(CheckClientPreface(kPreface.substr(0, 1)), ClientPreface::kIncomplete);
  EXPECT_EQ(CheckClientPreface(kPreface), ClientPreface::kIncomplete);
  EXPECT_EQ(CheckClientPreface(kPreface + FrameHeader(0, 4).substr(0, 5)),
            ClientPreface::kIncomplete);
}

TEST(ClientPrefaceTest, ThePrefaceAndAnEmptySettingsFrameAreComplete) {
  EXPECT_EQ(CheckClientPreface(kPreface + FrameHeader(0, 4)), ClientPreface::kComplete);
}

TEST(ClientPrefaceTest, ASettingsFrameIsCompleteOnlyWithItsWholePayload) {
  const std::string settings = kPreface + FrameHeader(12, 4) + std::string(12, '\0');
  EXPECT_EQ(CheckClientPreface(settings.substr(0, settings.size() - 1)),
            ClientPreface::kIncomplete);
  EXPECT_EQ(CheckClientPreface(settings), ClientPreface::kComplete);
  EXPECT_EQ(CheckClientPreface(settings + FrameHeader(4, 8) + "more"), ClientPreface::kComplete);
}

TEST(ClientPrefaceTest, AnythingButThePrefaceIsNotHttp2) {
  EXPECT_EQ(CheckClientPreface("GET / HTTP/1.1\r\n"), ClientPreface::kNotHttp2);
  EXPECT_EQ(CheckClientPreface("\x16\x03\x01"), ClientPreface::kNotHttp2);  // a TLS hello
  EXPECT_EQ(CheckClientPreface("PRX"), ClientPreface::kNotHttp2);
}

TEST(ClientPrefaceTest, AFirstFrameThatIsNoSettingsFrameIsNotHttp2) {
  EXPECT_EQ(CheckClientPreface(kPreface + FrameHeader(0, 6)), ClientPreface::kNotHttp2);
  EXPECT_EQ(CheckClientPreface(kPreface + FrameHeader(0, 4, 1)), ClientPreface::kNotHttp2);
  EXPECT_EQ(CheckClientPreface(kPreface + FrameHeader(5, 4)), ClientPreface::kNotHttp2);
}

TEST(ClientPrefaceTest, ASettingsFrameLargerThanAFirstFrameMayBeIsNotHttp2) {
  EXPECT_EQ(CheckClientPreface(kPreface + FrameHeader(16386, 4)), ClientPreface::kNotHttp2);
  EXPECT_EQ(CheckClientPreface(kPreface + FrameHeader(16380, 4)), ClientPreface::kIncomplete);
}

}  // namespace
}  // namespace ffibox
