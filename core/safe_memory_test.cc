#include "core/safe_memory.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/errors.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

uint64_t Addr(const void* p) { return reinterpret_cast<uint64_t>(p); }

TEST(SafeMemoryTest, ReadsAndWritesValidMemory) {
  char source[] = "hello";
  char copy[6] = {};
  ASSERT_TRUE(SafeRead(Addr(source), copy, sizeof copy).ok());
  EXPECT_STREQ(copy, "hello");
  ASSERT_TRUE(SafeWrite(Addr(source), "HE", 2).ok());
  EXPECT_STREQ(source, "HEllo");
}

TEST(SafeMemoryTest, BadAddressesAreMemoryFaultsNotCrashes) {
  char buffer[16];
  absl::Status status = SafeRead(8, buffer, sizeof buffer);
  EXPECT_THAT(status, StatusIs(v1::MEMORY_FAULT));
  EXPECT_NE(std::string(status.message()).find("cannot read 16 bytes at 0x8"), std::string::npos)
      << status;
  EXPECT_THAT(SafeWrite(8, buffer, 4), StatusIs(v1::MEMORY_FAULT));
  EXPECT_THAT(SafeRead(~uint64_t{0} - 2, buffer, 8), StatusIs(v1::MEMORY_FAULT));
  EXPECT_THAT(SafeReadCString(0, 100).status(), StatusIs(v1::MEMORY_FAULT));
  EXPECT_THAT(SafeReadWString(16, 100).status(), StatusIs(v1::MEMORY_FAULT));
}

TEST(SafeMemoryTest, WriteToReadOnlyPageFails) {
  const size_t page = sysconf(_SC_PAGESIZE);
  void* p = mmap(nullptr, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  EXPECT_THAT(SafeWrite(Addr(p), "x", 1), StatusIs(v1::MEMORY_FAULT));
  munmap(p, page);
}

// A string that ends exactly at the end of a readable page, followed by a guard page.
class GuardedPages : public ::testing::Test {
 protected:
  void SetUp() override {
    page_ = sysconf(_SC_PAGESIZE);
    base_ = static_cast<char*>(
        mmap(nullptr, 2 * page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(base_, MAP_FAILED);
    ASSERT_EQ(mprotect(base_ + page_, page_, PROT_NONE), 0);
  }
  void TearDown() override { munmap(base_, 2 * page_); }
  size_t page_ = 0;
  char* base_ = nullptr;
};

TEST_F(GuardedPages, CStringEndingAtAPageBoundaryIsReadWithoutTouchingTheNextPage) {
  char* text = base_ + page_ - 4;
  std::memcpy(text, "abc", 4);
  absl::StatusOr<std::string> read = SafeReadCString(Addr(text), 1 << 20);
  ASSERT_OK(read);
  EXPECT_EQ(*read, "abc");
}

TEST_F(GuardedPages, UnterminatedCStringRunningIntoAGuardPageFaults) {
  char* text = base_ + page_ - 4;
  std::memcpy(text, "abcd", 4);
  EXPECT_THAT(SafeReadCString(Addr(text), 1 << 20).status(), StatusIs(v1::MEMORY_FAULT));
  // Within the limit nothing beyond the page is needed.
  absl::StatusOr<std::string> limited = SafeReadCString(Addr(text), 4);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(*limited, "abcd");
}

TEST_F(GuardedPages, WideStringsAreReadUpToTheNul) {
  wchar_t* text = reinterpret_cast<wchar_t*>(base_ + page_) - 3;
  std::memcpy(text, L"h\u00e9", 3 * sizeof(wchar_t));
  absl::StatusOr<std::u32string> read = SafeReadWString(Addr(text), 100);
  ASSERT_OK(read);
  EXPECT_EQ(*read, U"h\u00e9");
  // Unaligned wide string straddling a page inside the readable area.
  char* odd = base_ + page_ / 2 - 2;
  std::memcpy(odd, L"xy", 3 * sizeof(wchar_t));
  read = SafeReadWString(Addr(odd), 100);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, U"xy");
}

TEST_F(GuardedPages, EachRangeIsReadOrToldUnreadableOnItsOwn) {
  std::memcpy(base_, "first", 5);
  std::memcpy(base_ + page_ - 4, "edge", 4);
  std::vector<MemoryRange> ranges = {
      {Addr(base_), 5},
      {Addr(base_ + page_ - 4), 8},  // runs into the guard page
      {Addr(base_ + page_ - 4), 4},  // the same start, within the page
      {Addr(base_ + page_), 1},      // the guard page itself
      {~uint64_t{0} - 2, 8},         // its end overflows
      {Addr(base_ + 1), 4},
  };
  std::string out(5 + 8 + 4 + 1 + 8 + 4, '\0');
  std::vector<bool> readable;
  SafeReadEach(ranges, out.data(), &readable);
  EXPECT_EQ(readable, (std::vector<bool>{true, false, true, false, false, true}));
  EXPECT_EQ(out.substr(0, 5), "first");
  EXPECT_EQ(out.substr(13, 4), "edge");
  EXPECT_EQ(out.substr(26, 4), "irst");
}

TEST(SafeMemoryTest, MoreRangesThanOneSystemCallTakesAreAllRead) {
  std::vector<int> values(3000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<int>(i);
  std::vector<MemoryRange> ranges;
  for (const int& value : values) ranges.push_back({Addr(&value), sizeof value});
  std::vector<int> out(values.size(), -1);
  std::vector<bool> readable;
  SafeReadEach(ranges, reinterpret_cast<char*>(out.data()), &readable);
  EXPECT_EQ(readable, std::vector<bool>(values.size(), true));
  EXPECT_EQ(out, values);
}

TEST(SafeMemoryTest, LongStringsAcrossManyPages) {
  std::string big(100000, 'z');
  absl::StatusOr<std::string> read = SafeReadCString(Addr(big.c_str()), 1 << 20);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, big);
  read = SafeReadCString(Addr(big.c_str()), 10);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->size(), 10u);
}

}  // namespace
}  // namespace ffibox
