#include "client/cpp/internal/call_builder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace ffibox {
namespace client_internal {

CallBuilder::CallBuilder(CallBuilder&& other) noexcept
    : own_(std::move(other.own_)),
      call_(other.own_.has_value() ? &*own_ : other.call_),
      copy_backs_(std::move(other.copy_backs_)),
      block_sizes_(std::move(other.block_sizes_)),
      graphs_(std::move(other.graphs_)),
      borrowed_(std::move(other.borrowed_)) {}

uint32_t CallBuilder::AddBlock(std::string data, uint64_t size, v1::Direction direction,
                               CopyBack copy_back) {
  const uint32_t index = static_cast<uint32_t>(call_->blocks_size());
  v1::MemoryBlock* block = call_->add_blocks();
  block->set_size(size);
  block->set_direction(direction);
  *block->mutable_data() = std::move(data);
  copy_backs_.push_back(std::move(copy_back));
  block_sizes_.push_back(size);
  return index;
}

void CallBuilder::AddBlockArg(std::string data, uint64_t size, v1::Direction direction,
                              CopyBack copy_back) {
  AddBlockRefArg(AddBlock(std::move(data), size, direction, std::move(copy_back)), 0);
}

void CallBuilder::AddBorrowedBlockArg(absl::string_view bytes, uint64_t size,
                                      v1::Direction direction, std::string* into) {
  CopyBack copy_back;
  if (into != nullptr) {
    copy_back = [into](const v1::BlockContents& contents, uint64_t) { *into = contents.data(); };
  }
  // Small blocks, and those of a batch's call (which goes in one message), are copied now.
  if (size < kMinBorrowedBlockBytes || !own_.has_value()) {
    AddBlockArg(std::string(bytes), size, direction, std::move(copy_back));
    return;
  }
  const uint32_t index = AddBlock(std::string(), size, direction, std::move(copy_back));
  borrowed_.push_back({static_cast<int>(index), bytes, into});
  AddBlockRefArg(index, 0);
}

void CallBuilder::AddBlockRefArg(uint32_t block, uint64_t offset) {
  v1::BlockRef* ref = call_->add_args()->mutable_pointer()->mutable_block();
  ref->set_block(block);
  ref->set_offset(offset);
}

absl::StatusOr<uint32_t> CallBuilder::AttachGraph(BlockGraph& graph) {
  for (const auto& [attached, base] : graphs_) {
    if (attached == &graph) return base;
  }
  const uint32_t base = static_cast<uint32_t>(call_->blocks_size());
  if (absl::Status appended = graph.AppendBlocks(base, call_); !appended.ok()) return appended;
  for (int i = 0; i < graph.size(); ++i) {
    block_sizes_.push_back(graph.data(i).size());
    BlockGraph* target = &graph;
    copy_backs_.push_back(
        [target, i, base](const v1::BlockContents& contents, uint64_t generation) {
          target->ApplyReturned(i, base, contents, generation);
        });
  }
  graphs_.emplace_back(&graph, base);
  return base;
}

void CallBuilder::AddNullArg() { call_->add_args()->mutable_pointer()->set_null(true); }

bool CallBuilder::Delivered(const v1::BlockContents& contents) const {
  if (!contents.shared()) return false;
  for (const BorrowedBlock& block : borrowed_) {
    if (block.index == static_cast<int>(contents.block())) return block.into != nullptr;
  }
  return false;
}

absl::Status CallBuilder::ApplyBlocks(const v1::CallResult& result, uint64_t generation) const {
  for (const v1::BlockContents& contents : result.blocks()) {
    if (contents.block() >= copy_backs_.size()) {
      return ErrorStatus(v1::INTERNAL, absl::StrCat("the server returned block ", contents.block(),
                                                    " but the call sent ", copy_backs_.size()));
    }
    if (Delivered(contents)) continue;
    if (contents.data().size() != block_sizes_[contents.block()]) {
      return ErrorStatus(v1::INTERNAL, absl::StrCat("the server returned ", contents.data().size(),
                                                    " bytes for block ", contents.block(), " of ",
                                                    block_sizes_[contents.block()], " bytes"));
    }
  }
  for (const v1::BlockContents& contents : result.blocks()) {
    const CopyBack& copy_back = copy_backs_[contents.block()];
    if (copy_back && !Delivered(contents)) copy_back(contents, generation);
  }
  return absl::OkStatus();
}

}  // namespace client_internal
}  // namespace ffibox
