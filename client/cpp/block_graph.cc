#include "client/cpp/block_graph.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace ffibox {

int BlockGraph::Add(std::string data, v1::Direction direction, uint64_t size) {
  Block block;
  if (size > data.size()) data.resize(size, '\0');
  block.data = std::move(data);
  block.direction = direction;
  blocks_.push_back(std::move(block));
  return static_cast<int>(blocks_.size()) - 1;
}

void BlockGraph::Link(int from, uint64_t offset, BlockPosition target) {
  if (from < 0 || from >= size()) {
    // Remembered as an impossible link so that the call reports it.
    invalid_links_.push_back(absl::StrCat("block ", from, " does not exist"));
    return;
  }
  blocks_[from].links[offset] = target;
}

void BlockGraph::Unlink(int from, uint64_t offset) {
  if (from < 0 || from >= size()) return;
  blocks_[from].links.erase(offset);
  if (offset + 8 <= blocks_[from].data.size()) {
    std::memset(blocks_[from].data.data() + offset, 0, 8);
  }
}

absl::Status BlockGraph::CheckRange(int block, uint64_t offset, uint64_t size) const {
  if (block < 0 || block >= this->size()) {
    return absl::OutOfRangeError(
        absl::StrCat("block ", block, " is not in the graph of ", this->size(), " blocks"));
  }
  const uint64_t length = blocks_[block].data.size();
  if (offset > length || size > length - offset) {
    return absl::OutOfRangeError(absl::StrCat(size, " bytes at offset ", offset,
                                              " do not fit in block ", block, " of ", length,
                                              " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<BlockPosition>> BlockGraph::Target(int block, uint64_t offset) const {
  absl::Status in_range = CheckRange(block, offset, 8);
  if (!in_range.ok()) return in_range;
  const auto link = blocks_[block].links.find(offset);
  if (link != blocks_[block].links.end()) return std::optional<BlockPosition>(link->second);
  uint64_t word;
  std::memcpy(&word, blocks_[block].data.data() + offset, sizeof(word));
  if (word == 0) return std::optional<BlockPosition>();
  return absl::FailedPreconditionError(
      absl::StrCat("the pointer at offset ", offset, " of block ", block, " holds 0x",
                   absl::Hex(word), ", which is not inside the graph (read it with RemoteAt)"));
}

absl::StatusOr<RemotePtr> BlockGraph::RemoteAt(int block, uint64_t offset) const {
  absl::StatusOr<uint64_t> word = Get<uint64_t>(block, offset);
  if (!word.ok()) return word.status();
  if (*word == 0) return RemotePtr();
  return RemotePtr(*word, blocks_[block].generation);
}

absl::Status BlockGraph::AppendBlocks(uint32_t base, v1::Call* call) const {
  if (!invalid_links_.empty()) {
    return ErrorStatus(v1::INVALID_ARGUMENT,
                       absl::StrCat("block graph link: ", invalid_links_.front()));
  }
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& block = blocks_[i];
    v1::MemoryBlock* out = call->add_blocks();
    out->set_size(block.data.size());
    out->set_direction(block.direction);
    if (block.direction != v1::OUT) *out->mutable_data() = block.data;
    for (const auto& [offset, target] : block.links) {
      if (target.block < 0 || target.block >= size()) {
        return ErrorStatus(v1::INVALID_ARGUMENT,
                           absl::StrCat("block graph link at offset ", offset, " of block ", i,
                                        " points at block ", target.block, " of ", size()));
      }
      v1::Relocation* relocation = out->add_relocations();
      relocation->set_offset(offset);
      relocation->mutable_target()->set_block(base + static_cast<uint32_t>(target.block));
      relocation->mutable_target()->set_offset(target.offset);
    }
  }
  return absl::OkStatus();
}

void BlockGraph::ApplyReturned(int block, uint32_t base, const v1::BlockContents& contents,
                               uint64_t generation) {
  Block& mine = blocks_[block];
  mine.data = contents.data();
  mine.generation = generation;
  mine.links.clear();
  for (const v1::Relocation& pointer : contents.pointers()) {
    const uint64_t target = pointer.target().block();
    if (target < base || target - base >= blocks_.size()) continue;  // not one of ours
    if (pointer.offset() + 8 > mine.data.size()) continue;           // untrusted: ignore
    mine.links[pointer.offset()] =
        BlockPosition{static_cast<int>(target - base), pointer.target().offset()};
  }
}

}  // namespace ffibox
