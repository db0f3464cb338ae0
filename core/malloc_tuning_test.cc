#include "core/malloc_tuning.h"

#include <sys/resource.h>

#include <cstddef>
#include <fstream>
#include <sstream>
#include <string>

#include "core/framing.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

constexpr size_t kPageBytes = 4096;

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

// KeepFreedMemory is process-wide, as in ffiboxd and ffibox-worker; each test sets it again.
class KeepFreedMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override { KeepFreedMemory(); }
};

TEST_F(KeepFreedMemoryTest, ACallsBufferUnderTheMappingThresholdIsReusedWithoutFaults) {
  const size_t bytes = kMappedAllocationBytes / 2;
  FaultsToFillAndFree(bytes);  // the heap grows to hold it once
  // The next call's buffer of the same size takes the same pages: mapped on its own instead,
  // each call would fault in all of them again.
  EXPECT_LT(FaultsToFillAndFree(bytes), 8);
  EXPECT_LT(FaultsToFillAndFree(bytes), 8);
}

TEST_F(KeepFreedMemoryTest, AFramePieceGoesBackToTheSystemWhenFreed) {
  FaultsToFillAndFree(kFramePieceBytes);
  // Mapped on its own and unmapped when freed: its pages are faulted in again. Kept in a heap,
  // a large frame's pieces would hold memory and address space after the parse freed them.
  EXPECT_GE(FaultsToFillAndFree(kFramePieceBytes),
            static_cast<long>(kFramePieceBytes / kPageBytes / 2));
}

// Whether transparent huge pages may back memory that asks for them.
bool HugePagesOnRequest() {
  std::ifstream file("/sys/kernel/mm/transparent_hugepage/enabled");
  std::stringstream text;
  text << file.rdbuf();
  return text.str().find("[never]") == std::string::npos && !text.str().empty();
}

TEST_F(KeepFreedMemoryTest, ALargeBlockAdvisedForHugePagesTakesAFaultPer2MiB) {
  if (!HugePagesOnRequest()) {
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

}  // namespace
}  // namespace ffibox
