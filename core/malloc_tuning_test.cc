#include "core/malloc_tuning.h"

#include <malloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "core/arena.h"
#include "core/framing.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

constexpr size_t kPageBytes = 4096;
constexpr uintptr_t kHugePageBytes = uintptr_t{2} << 20;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitizerAllocator = true;  // malloc is the sanitizer's: mallopt does nothing
#else
constexpr bool kSanitizerAllocator = false;
#endif

long MinorFaults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// Allocates `bytes` as a message's bytes field would be, writes every page of them and frees
// them; returns the page faults that took.
long FaultsToFillAndFree(size_t bytes) {
  const long before = MinorFaults();
  {
    std::string block(bytes, '\x01');
    // The write must happen: the string's bytes escape to the compiler.
    asm volatile("" : : "r"(block.data()) : "memory");
  }
  return MinorFaults() - before;
}

// The VmFlags of the mapping that holds `address`, from /proc/self/smaps ("" if none does).
std::string VmFlagsAt(const void* address) {
  const auto at = reinterpret_cast<uintptr_t>(address);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    unsigned long start = 0, end = 0;
    if (sscanf(line.c_str(), "%lx-%lx ", &start, &end) == 2 && line.find(' ') > line.find('-')) {
      inside = at >= start && at < end;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line.substr(8) + " ";
  }
  return "";
}

bool HasFlag(const std::string& flags, const char* flag) {
  return flags.find(std::string(" ") + flag + " ") != std::string::npos;
}

// Whether this kernel has transparent huge pages, and the mode they are in ("" without them).
std::string HugePageMode() {
  std::ifstream file("/sys/kernel/mm/transparent_hugepage/enabled");
  std::stringstream text;
  text << file.rdbuf();
  const std::string modes = text.str();
  const size_t open = modes.find('[');
  const size_t close = modes.find(']', open);
  if (open == std::string::npos || close == std::string::npos) return "";
  return modes.substr(open + 1, close - open - 1);
}

// KeepFreedMemory is process-wide, as in ffiboxd and ffibox-worker; each test sets it again.
class KeepFreedMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kSanitizerAllocator) GTEST_SKIP() << "the sanitizer's allocator ignores mallopt";
    KeepFreedMemory();
  }
};

TEST_F(KeepFreedMemoryTest, ACallsBufferUnderTheMappingThresholdIsReusedWithoutFaults) {
  const size_t bytes = kMappedAllocationBytes / 2;
  FaultsToFillAndFree(bytes);  // the heap grows to hold it once
  // The next call's buffer of the same size takes the same pages: mapped on its own instead,
  // each call would fault in all of them again.
  EXPECT_LT(FaultsToFillAndFree(bytes), 8);
  EXPECT_LT(FaultsToFillAndFree(bytes), 8);
}

TEST_F(KeepFreedMemoryTest, AFramePieceIsAMappingOfItsOwnGivenBackWhenFreed) {
  const size_t mapped_before = mallinfo2().hblkhd;
  {
    std::string piece;
    piece.reserve(kFramePieceBytes);
    // Kept in a heap, a large frame's pieces would hold memory and address space after the
    // parse freed them.
    EXPECT_GE(mallinfo2().hblkhd, mapped_before + kFramePieceBytes);
  }
  EXPECT_EQ(mallinfo2().hblkhd, mapped_before);
}

TEST(CallArena, ALargeBlockIsAMappingOfItsOwnUntouchedUntilWritten) {
  CallArena arena;
  const long before = MinorFaults();
  auto* block = static_cast<unsigned char*>(arena.Allocate(kMappedAllocationBytes * 4));
  ASSERT_NE(block, nullptr);
  EXPECT_LT(MinorFaults() - before, 8) << "the block was written before it was handed out";
  EXPECT_EQ(block[0], 0);
  EXPECT_EQ(block[kMappedAllocationBytes * 4 - 1], 0);
  // Its own mapping: advice given to it stays on it.
  AdviseHugePages(block, kMappedAllocationBytes * 4);
  if (!HugePageMode().empty()) {
    EXPECT_TRUE(HasFlag(VmFlagsAt(block + kHugePageBytes), "hg"));
  }
}

TEST(AdviseHugePages, MarksTheWholeHugePagesInsideTheBlockOnly) {
  if (HugePageMode().empty()) GTEST_SKIP() << "this kernel has no transparent huge pages";
  constexpr size_t kBytes = size_t{8} << 20;
  void* mapping = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapping, MAP_FAILED);
  const uintptr_t base =
      (reinterpret_cast<uintptr_t>(mapping) + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  // A block from 100 bytes before one 2 MiB boundary to 100 bytes after the next but one: the
  // two whole huge pages between them are marked, the partial ones at both ends are not.
  auto* start = reinterpret_cast<char*>(base + kHugePageBytes - 100);
  AdviseHugePages(start, 2 * kHugePageBytes + 200);
  EXPECT_FALSE(HasFlag(VmFlagsAt(start), "hg"));
  EXPECT_TRUE(HasFlag(VmFlagsAt(start + 100), "hg"));
  EXPECT_TRUE(HasFlag(VmFlagsAt(start + 100 + 2 * kHugePageBytes - 1), "hg"));
  EXPECT_FALSE(HasFlag(VmFlagsAt(start + 100 + 2 * kHugePageBytes), "hg"));
  munmap(mapping, kBytes);
}

TEST(AdviseHugePages, ALargeBlockSoAdvisedTakesAFaultPer2MiB) {
  if (HugePageMode() != "madvise" && HugePageMode() != "always") {
    GTEST_SKIP() << "transparent huge pages are off on this host";
  }
  constexpr size_t kBytes = size_t{64} << 20;
  const long before = MinorFaults();
  {
    std::string block;
    block.reserve(kBytes);
    AdviseHugePages(block.data(), kBytes);
    block.append(kBytes, '\x01');
    asm volatile("" : : "r"(block.data()) : "memory");
  }
  // 16 384 faults in 4 KiB pages; in 2 MiB pages 32, and the partial pages at both ends.
  EXPECT_LT(MinorFaults() - before, 2048);
}

TEST(KeepSmallPages, MarksTheWholePagesOfTheBlockForSmallPages) {
  if (HugePageMode().empty()) GTEST_SKIP() << "this kernel has no transparent huge pages";
  constexpr size_t kBytes = size_t{8} << 20;
  void* mapping = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapping, MAP_FAILED);
  auto* start = static_cast<char*>(mapping) + 100;
  // A peer's piece: small pages even where every mapping gets huge ones by default.
  KeepSmallPages(start, kBytes - 200);
  EXPECT_FALSE(HasFlag(VmFlagsAt(start), "nh"));  // the partial first page stays as it was
  EXPECT_TRUE(HasFlag(VmFlagsAt(start + kPageBytes), "nh"));
  EXPECT_TRUE(HasFlag(VmFlagsAt(start + kBytes / 2), "nh"));
  munmap(mapping, kBytes);
}

}  // namespace
}  // namespace ffibox
