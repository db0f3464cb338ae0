#include "core/bulk_copy.h"

#include <cstddef>
#include <string>

#include "gtest/gtest.h"

namespace ffibox {
namespace {

// A block whose every byte differs from its neighbours' within a page, so a misplaced line or
// page shows.
std::string Pattern(size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 131 + i / 4096) % 251);
  return bytes;
}

// Sizes around the threshold and the four-page step, at every misalignment of either end
// that matters (within a line), with a guard byte on each side of the destination.
TEST(CopyBulk, CopiesEveryByteAtAnyAlignmentAndSize) {
  const size_t base = kBulkCopyMinBytes;
  for (size_t size : {size_t{0}, size_t{1}, size_t{4095}, base - 1, base, base + 1,
                      base + 4 * 4096 - 1, base + 4 * 4096 + 63, base + 3 * 4096 + 65}) {
    const std::string source = Pattern(size + 63);
    for (size_t from_offset : {0, 1, 17, 63}) {
      for (size_t to_offset : {0, 5, 48}) {
        std::string target(size + to_offset + 2, '\xAA');
        CopyBulk(&target[to_offset + 1], source.data() + from_offset, size);
        ASSERT_EQ(target[to_offset], '\xAA') << size << " " << from_offset << " " << to_offset;
        ASSERT_EQ(target[to_offset + 1 + size], '\xAA')
            << size << " " << from_offset << " " << to_offset;
        ASSERT_EQ(target.compare(to_offset + 1, size, source, from_offset, size), 0)
            << size << " " << from_offset << " " << to_offset;
      }
    }
  }
}

}  // namespace
}  // namespace ffibox
