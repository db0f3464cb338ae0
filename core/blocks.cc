#include "core/blocks.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/call_shape.h"
#include "core/errors.h"
#include "core/malloc_tuning.h"
#include "core/marshal.h"

namespace ffibox {
namespace {

std::string BlockPath(int index) { return absl::StrCat("call.blocks[", index, "]"); }

bool CopiesIn(v1::Direction direction) { return direction != v1::OUT; }

bool CopiesOut(v1::Direction direction) { return direction != v1::IN; }

// Kept or placed at lasting memory (MemoryBlock.keep / at).
bool IsLasting(const v1::MemoryBlock& block) { return block.keep() || block.has_at(); }

// Places an `at` block that copies in and out at `data` by writing only what the client
// changed since it was told the block's contents (LastingMemory::PlaceClientChanges): what
// the library wrote there since, which the client has not seen, stays and goes back with
// the call. False when `lasting` remembers nothing of it (the caller then writes it whole).
bool PlacesClientChanges(const v1::MemoryBlock& block, uint64_t size, absl::Span<char> shared,
                         unsigned char* data, LastingMemory* lasting) {
  if (!block.has_at() || !CopiesIn(block.direction()) || !CopiesOut(block.direction())) {
    return false;
  }
  const absl::string_view sent =
      block.has_shared_offset() ? absl::string_view(shared.data() + block.shared_offset(), size)
                                : absl::string_view(block.data());
  if (sent.size() != size) return false;
  // The pointers the relocations set are left as the library has them: the client's bytes
  // there are its own addresses, and each relocation decides (Place).
  std::vector<uint64_t> pointers;
  for (const v1::Relocation& relocation : block.relocations()) {
    if (relocation.offset() <= size && size - relocation.offset() >= sizeof(uint64_t)) {
      pointers.push_back(relocation.offset());
    }
  }
  std::sort(pointers.begin(), pointers.end());
  return lasting->PlaceClientChanges(reinterpret_cast<uint64_t>(data), sent, pointers);
}

// The innermost call running on this thread (CallBlocks::Running), or nullptr. A library
// that longjmps out of a call nested in a callback into the native frames of the call around
// it skips that nested call's ~Running: this then names a dead object until the outer call
// returns and restores the one before it (a longjmp across a callback's frames skips the
// worker's own bookkeeping of the invocation as well). Nothing reads a Running after its
// call ended normally.
thread_local const CallBlocks::Running* t_running = nullptr;

}  // namespace

CallBlocks::Running::Running(const CallBlocks* blocks) : blocks_(blocks), outer_(t_running) {
  t_running = this;
}

CallBlocks::Running::~Running() { t_running = outer_; }

uint64_t CallBlocks::EndOfRunningBlock(uint64_t address) {
  for (const Running* running = t_running; running != nullptr; running = running->outer_) {
    const CallBlocks& blocks = *running->blocks_;
    for (int i = 0; i < blocks.count_; ++i) {
      const auto start = reinterpret_cast<uint64_t>(blocks.placed_[i].data);
      if (address >= start && address - start < blocks.placed_[i].size) {
        return start + blocks.placed_[i].size;
      }
    }
  }
  return 0;
}

void CallBlocks::TellKept(uint64_t generation,
                          google::protobuf::RepeatedPtrField<v1::KeptBlock>* kept) {
  const Running* running = t_running;
  if (running == nullptr || running->kept_told_) return;
  running->kept_told_ = true;
  running->blocks_->AppendKept(generation, kept);
}

void CallBlocks::AppendKept(uint64_t generation,
                            google::protobuf::RepeatedPtrField<v1::KeptBlock>* kept) const {
  for (int i = 0; i < count_; ++i) {
    if (!(*blocks_)[i].keep()) continue;
    v1::KeptBlock* told = kept->Add();
    told->set_block(static_cast<uint32_t>(i));
    told->mutable_address()->set_address(reinterpret_cast<uint64_t>(placed_[i].data));
    told->mutable_address()->set_generation(generation);
  }
}

CallBlocks::~CallBlocks() {
  if (reported_ || lasting_ == nullptr) return;
  for (int i = 0; i < count_; ++i) {
    if ((*blocks_)[i].keep())
      lasting_->ReleaseLastingAddress(reinterpret_cast<uint64_t>(placed_[i].data));
  }
}

absl::Status CallBlocks::Place(const google::protobuf::RepeatedPtrField<v1::MemoryBlock>& blocks,
                               const TypeLimits& limits, CallArena* arena, LastingMemory* lasting,
                               absl::Span<char> shared, const CallbackResolver* callbacks) {
  blocks_ = &blocks;
  count_ = 0;
  lasting_ = lasting;
  shared_ = shared;
  max_reported_pointers_ = limits.max_relocations;
  if (blocks.empty()) return absl::OkStatus();
  placed_ = static_cast<PlacedBlock*>(
      arena->Allocate(sizeof(PlacedBlock) * blocks.size(), alignof(PlacedBlock)));
  if (placed_ == nullptr) return ErrorStatus(v1::RESOURCE_EXHAUSTED, "out of memory");
  for (int i = 0; i < blocks.size(); ++i) {
    const v1::MemoryBlock& block = blocks[i];
    const uint64_t size = BlockSize(block);
    absl::StatusOr<unsigned char*> data = Allocate(block, size, i, arena, shared);
    if (!data.ok()) return data.status();
    const bool merged = PlacesClientChanges(block, size, shared, *data, lasting_);
    // As in the arena: what the client's bytes do not cover starts zeroed.
    if (block.has_at() && !merged) std::memset(*data, 0, size);
    if (merged) {
      // Only the client's changes went in.
    } else if (block.has_shared_offset() && IsLasting(block)) {
      // The area only carries the bytes: they go into the lasting memory.
      if (CopiesIn(block.direction())) {
        std::memcpy(*data, shared.data() + block.shared_offset(), size);
      }
    } else if (block.has_shared_offset()) {
      // The client's bytes are already there; an OUT block starts zeroed, as in the arena.
      if (!CopiesIn(block.direction())) std::memset(*data, 0, size);
    } else if (CopiesIn(block.direction()) && !block.data().empty()) {
      // Written whole here: a large block takes a fault per 2 MiB (a mapping of its own,
      // CallArena::Allocate). Not one the library writes: it may touch a byte per 2 MiB.
      if (size >= kMappedAllocationBytes && block.data().size() == size && !block.keep() &&
          !block.has_at()) {
        AdviseHugePages(*data, size);
      }
      std::memcpy(*data, block.data().data(), block.data().size());
    }
    placed_[i] = {*data, size, merged};
    count_ = i + 1;
  }
  // Relocations go after every block is placed: they may point forward, and they override
  // the bytes copied in.
  for (int i = 0; i < blocks.size(); ++i) {
    const v1::MemoryBlock& block = blocks[i];
    for (int j = 0; j < block.relocations_size(); ++j) {
      const v1::Relocation& relocation = block.relocations(j);
      auto path = [i, j] { return absl::StrCat(BlockPath(i), ".relocations[", j, "]"); };
      if (relocation.offset() > placed_[i].size ||
          placed_[i].size - relocation.offset() < sizeof(uint64_t)) {
        return InvalidArgumentAt(
            path() + ".offset",
            absl::StrCat("a pointer at offset ", relocation.offset(),
                         " does not fit in the block of ", placed_[i].size, " bytes"));
      }
      absl::StatusOr<uint64_t> target;
      if (relocation.to_case() == v1::Relocation::kCallback) {
        if (callbacks == nullptr) {
          return ErrorStatus(v1::UNIMPLEMENTED, absl::StrCat(path(),
                                                             ".callback: callback "
                                                             "pointers are not accepted here"));
        }
        // The resolver names the field as a PointerValue's ("pointer.callback"), with a code
        // of its own (NOT_FOUND, FAILED_PRECONDITION): kept, the field put under this path.
        target = callbacks->AddressOf(relocation.callback());
        if (!target.ok()) {
          v1::Error error = ToProtoError(target.status());
          error.set_field(error.field().empty() ? path() + ".callback"
                                                : absl::StrCat(path(), ".", error.field()));
          return ErrorStatus(error);
        }
      } else if (relocation.to_case() == v1::Relocation::kTarget) {
        target = AddressOf(relocation.target());
        if (!target.ok()) return PrefixField(target.status(), path() + ".target");
      } else {
        return InvalidArgumentAt(path(), "a relocation names neither a target nor a callback");
      }
      // In a merged block, a pointer the client left as it was keeps what the library put
      // there, as the words beside it do: one to the same lasting block or callback (a block
      // placed for this call only may come back at the same address pointing elsewhere).
      const bool lasting_target =
          relocation.to_case() == v1::Relocation::kCallback ||
          (relocation.target().block() < static_cast<uint32_t>(blocks.size()) &&
           IsLasting(blocks[static_cast<int>(relocation.target().block())]));
      if (placed_[i].merged && lasting_target &&
          lasting_->HeldWordIs(reinterpret_cast<uint64_t>(placed_[i].data), relocation.offset(),
                               *target)) {
        continue;
      }
      std::memcpy(placed_[i].data + relocation.offset(), &*target, sizeof(uint64_t));
    }
  }
  // What the client holds of a watched IN block is what it sent, not what the call leaves.
  for (int i = 0; i < blocks.size(); ++i) {
    if (blocks[i].watch() && !CopiesOut(blocks[i].direction())) {
      const absl::string_view sent(reinterpret_cast<const char*>(placed_[i].data), placed_[i].size);
      lasting_->Watch(reinterpret_cast<uint64_t>(placed_[i].data), &sent);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<unsigned char*> CallBlocks::Allocate(const v1::MemoryBlock& block, uint64_t size,
                                                    int index, CallArena* arena,
                                                    absl::Span<char> shared) {
  if (block.has_shared_offset()) {
    // ValidateCallShape checked the placement against the area's size; checked again here,
    // against the area this worker mapped.
    if (block.shared_offset() > shared.size() || size > shared.size() - block.shared_offset()) {
      return InvalidArgumentAt(BlockPath(index) + ".shared_offset",
                               "the block does not fit in the shared area");
    }
    if (!IsLasting(block)) {
      return reinterpret_cast<unsigned char*>(shared.data() + block.shared_offset());
    }
  }
  if (!block.keep() && !block.has_at()) {
    auto* data = static_cast<unsigned char*>(arena->Allocate(size, 16));
    if (data == nullptr) {
      return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                         absl::StrCat(BlockPath(index), ": cannot allocate ", size, " bytes"));
    }
    return data;
  }
  if (lasting_ == nullptr) {
    return ErrorStatus(v1::UNIMPLEMENTED,
                       absl::StrCat(BlockPath(index), ": lasting blocks are not available here"));
  }
  absl::StatusOr<uint64_t> address =
      block.keep() ? lasting_->AllocateLasting(size)
                   : lasting_->FindLasting(block.at(), size, BlockPath(index) + ".at");
  if (!address.ok()) return address.status();
  return reinterpret_cast<unsigned char*>(*address);
}

absl::StatusOr<uint64_t> CallBlocks::AddressOf(const v1::BlockRef& ref) const {
  if (ref.block() >= static_cast<uint32_t>(count_)) {
    return InvalidArgumentAt(
        "block", absl::StrCat("block index ", ref.block(), " is out of range (the call has ",
                              count_, " blocks)"));
  }
  const PlacedBlock& placed = placed_[ref.block()];
  if (ref.offset() > placed.size) {
    return InvalidArgumentAt(
        "offset", absl::StrCat("offset ", ref.offset(), " is beyond the end of block ", ref.block(),
                               " (", placed.size, " bytes)"));
  }
  return reinterpret_cast<uint64_t>(placed.data) + ref.offset();
}

void CallBlocks::CopyOut(v1::CallResult* result, uint64_t generation, bool report_changed) {
  reported_ = true;
  AppendKept(generation, result->mutable_kept());
  // Block ranges sorted by start, to find which block (if any) a word points into. Every
  // block owns at least one arena byte, so starts are distinct.
  struct Range {
    uint64_t start;
    uint64_t size;
    uint32_t index;
  };
  std::vector<Range> ranges;
  ranges.reserve(count_);
  for (int i = 0; i < count_; ++i) {
    ranges.push_back(
        {reinterpret_cast<uint64_t>(placed_[i].data), placed_[i].size, static_cast<uint32_t>(i)});
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.start < b.start; });
  const uint64_t lowest = ranges.empty() ? 1 : ranges.front().start;
  const uint64_t highest = ranges.empty() ? 0 : ranges.back().start + ranges.back().size;
  size_t reported = 0;
  for (int i = 0; i < count_; ++i) {
    if (!CopiesOut((*blocks_)[i].direction())) continue;
    const v1::MemoryBlock& block = (*blocks_)[i];
    if (block.only_if_changed() && !block.has_shared_offset() &&
        block.data().size() == placed_[i].size &&
        std::memcmp(block.data().data(), placed_[i].data, placed_[i].size) == 0) {
      continue;  // as it went
    }
    v1::BlockContents* contents = result->add_blocks();
    contents->set_block(static_cast<uint32_t>(i));
    if (block.has_shared_offset()) {
      contents->set_shared(true);  // the client reads the bytes from the area
      if (!IsLasting(block)) continue;
      std::memcpy(shared_.data() + block.shared_offset(), placed_[i].data, placed_[i].size);
    } else {
      std::string* data = contents->mutable_data();
      ReserveToWriteWhole(data, placed_[i].size);
      data->append(reinterpret_cast<const char*>(placed_[i].data), placed_[i].size);
    }
    // Blocks are 16-aligned, so block offsets that are multiples of 8 are aligned words.
    for (uint64_t offset = 0;
         offset + sizeof(uint64_t) <= placed_[i].size && reported < max_reported_pointers_;
         offset += sizeof(uint64_t)) {
      uint64_t word = 0;
      std::memcpy(&word, placed_[i].data + offset, sizeof word);
      if (word < lowest || word > highest) continue;  // most data is not a pointer
      // The last block starting at or before `word`: a word equal to one block's end and the
      // next block's start is reported as the start of the next block.
      auto after = std::upper_bound(ranges.begin(), ranges.end(), word,
                                    [](uint64_t w, const Range& r) { return w < r.start; });
      if (after == ranges.begin()) continue;
      const Range& target = *(after - 1);
      if (word - target.start > target.size) continue;
      v1::Relocation* pointer = contents->add_pointers();
      pointer->set_offset(offset);
      pointer->mutable_target()->set_block(target.index);
      pointer->mutable_target()->set_offset(word - target.start);
      ++reported;
    }
  }
  ReportLasting(result, generation, report_changed);
}

void CallBlocks::ReportLasting(v1::CallResult* result, uint64_t generation, bool report_changed) {
  if (lasting_ == nullptr) return;
  std::vector<uint64_t> placed;
  for (int i = 0; i < count_; ++i) {
    const v1::MemoryBlock& block = (*blocks_)[i];
    if (!block.keep() && !block.has_at()) continue;
    const uint64_t address = reinterpret_cast<uint64_t>(placed_[i].data);
    placed.push_back(address);
    if (!block.watch()) {
      lasting_->Watch(address, nullptr);
    } else if (CopiesOut(block.direction())) {
      const absl::string_view returned(reinterpret_cast<const char*>(placed_[i].data),
                                       placed_[i].size);
      lasting_->Watch(address, &returned);
    }
  }
  if (report_changed) lasting_->ReportChanged(placed, generation, result);
}

}  // namespace ffibox
