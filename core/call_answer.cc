#include "core/call_answer.h"

#include "absl/strings/str_cat.h"
#include "core/call_shape.h"

namespace ffibox {
namespace {

// The pointers reported in a returned block of `size` bytes: at 8-aligned offsets, in
// increasing order, each word inside the block, each target inside a block of the call.
absl::Status CheckReportedPointers(const v1::BlockContents& block, uint64_t size,
                                   const ExpectedCallResult& expected) {
  uint64_t next_offset = 0;  // the lowest offset the next pointer may have
  for (const v1::Relocation& pointer : block.pointers()) {
    const uint64_t offset = pointer.offset();
    if (offset % 8 != 0 || offset < next_offset || offset > size || size - offset < 8) {
      return absl::InvalidArgumentError(
          absl::StrCat("returned block ", block.block(), " reports a pointer at offset ", offset,
                       " (block of ", size, " bytes; offsets must be increasing multiples of 8)"));
    }
    next_offset = offset + 8;
    const uint32_t target = pointer.target().block();
    if (target >= expected.block_sizes.size() ||
        pointer.target().offset() > expected.block_sizes[target]) {
      return absl::InvalidArgumentError(
          absl::StrCat("returned block ", block.block(), " reports a pointer to block ", target,
                       " offset ", pointer.target().offset(), ", outside the call's blocks"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<uint64_t> BlockSizes(const v1::Call& call) {
  std::vector<uint64_t> sizes;
  sizes.reserve(call.blocks_size());
  for (const v1::MemoryBlock& block : call.blocks()) sizes.push_back(BlockSize(block));
  return sizes;
}

std::vector<uint32_t> KeptBlocks(const v1::Call& call) {
  std::vector<uint32_t> kept;
  for (int i = 0; i < call.blocks_size(); ++i) {
    if (call.blocks(i).keep()) kept.push_back(static_cast<uint32_t>(i));
  }
  return kept;
}

std::vector<uint64_t> ReturnedBlockSizes(const v1::Call& call) {
  std::vector<uint64_t> sizes;
  sizes.reserve(call.blocks_size());
  for (const v1::MemoryBlock& block : call.blocks()) {
    sizes.push_back(block.direction() == v1::IN ? ExpectedCallResult::kNotReturned
                                                : BlockSize(block));
  }
  return sizes;
}

ExpectedCallResult ExpectedResultOf(const v1::Call& call) {
  ExpectedCallResult expected;
  expected.returned_block_sizes = ReturnedBlockSizes(call);
  expected.block_sizes = BlockSizes(call);
  expected.kept_blocks = KeptBlocks(call);
  for (int i = 0; i < call.blocks_size(); ++i) {
    const v1::MemoryBlock& block = call.blocks(i);
    if (!block.has_shared_offset()) continue;
    expected.shared_blocks.resize(call.blocks_size(), false);
    expected.shared_lasting.resize(call.blocks_size(), false);
    expected.shared_blocks[i] = true;
    expected.shared_lasting[i] = block.keep() || block.has_at();
  }
  return expected;
}

// A call's result: only blocks the call sent as OUT/INOUT, each once with its exact size and
// its pointers checked, and each kept block reported once, in order.
absl::Status CheckCallResult(const v1::CallResult& result, const ExpectedCallResult& expected) {
  std::vector<bool> seen(expected.returned_block_sizes.size(), false);
  for (const v1::BlockContents& block : result.blocks()) {
    if (block.block() >= expected.returned_block_sizes.size() || seen[block.block()]) {
      return absl::InvalidArgumentError(
          absl::StrCat("returned block ", block.block(), " was not sent or came back twice"));
    }
    seen[block.block()] = true;
    uint64_t size = expected.returned_block_sizes[block.block()];
    const bool shared =
        block.block() < expected.shared_blocks.size() && expected.shared_blocks[block.block()];
    if (block.shared() != shared) {
      return absl::InvalidArgumentError(absl::StrCat(
          "returned block ", block.block(),
          shared ? " is not marked as in the shared area" : " claims to be in the shared area"));
    }
    if (shared) {
      if (size == ExpectedCallResult::kNotReturned || !block.data().empty() ||
          (!expected.shared_lasting[block.block()] && block.pointers_size() != 0)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "returned block ", block.block(),
            " in the shared area is an IN block or carries data, or pointers it may not"));
      }
    } else if (size == ExpectedCallResult::kNotReturned || block.data().size() != size) {
      return absl::InvalidArgumentError(absl::StrCat("returned block ", block.block(), " has ",
                                                     block.data().size(), " bytes, expected ",
                                                     size));
    }
    absl::Status pointers = CheckReportedPointers(block, size, expected);
    if (!pointers.ok()) return pointers;
  }
  if (static_cast<size_t>(result.kept_size()) != expected.kept_blocks.size()) {
    return absl::InvalidArgumentError(absl::StrCat("the reply reports ", result.kept_size(),
                                                   " kept blocks, the call kept ",
                                                   expected.kept_blocks.size()));
  }
  for (int i = 0; i < result.kept_size(); ++i) {
    const v1::KeptBlock& kept = result.kept(i);
    if (kept.block() != expected.kept_blocks[i] || kept.address().address() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "kept block ", i, " names block ", kept.block(), " at 0x",
          absl::Hex(kept.address().address()), ", expected block ", expected.kept_blocks[i]));
    }
  }
  uint64_t changed_bytes = 0;
  for (const v1::ChangedBlock& changed : result.changed()) {
    changed_bytes += changed.data().size();
    if (changed.address().address() == 0 || changed.data().empty() || changed.offset() % 8 != 0 ||
        changed.offset() >= kMaxWatchedBytes || changed_bytes > kMaxWatchedBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a changed run at 0x", absl::Hex(changed.address().address()), " offset ",
          changed.offset(), " of ", changed.data().size(), " bytes (runs are non-empty, at ",
          "8-aligned offsets of blocks at non-zero addresses, at most ", kMaxWatchedBytes,
          " bytes in all)"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckErrorCode(const v1::Error& error) {
  v1::ErrorCode code = error.code();
  if (!v1::ErrorCode_IsValid(code) || code == v1::ERROR_CODE_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat("unknown error code ", code));
  }
  // Only the broker knows these, from outside the worker: a worker claiming one is forging
  // the broker's verdict (a crash, a sandbox violation with a syscall of its choosing).
  if (code == v1::WORKER_CRASHED || code == v1::SANDBOX_VIOLATION || code == v1::JAIL_UNAVAILABLE) {
    return absl::InvalidArgumentError(
        absl::StrCat("error code ", v1::ErrorCode_Name(code), ", which only the broker reports"));
  }
  return absl::OkStatus();
}

}  // namespace ffibox
