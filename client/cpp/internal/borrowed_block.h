// A block of a call whose bytes stay in the caller's memory until the call is sent: a typed
// call's large Buffer. The transport copies them once, straight to where they go (the
// same-host channel's shared area, or the request's frame), instead of the call carrying a
// copy of its own, and the same-host channel copies the block's answer straight back.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_BORROWED_BLOCK_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_BORROWED_BLOCK_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

struct BorrowedBlock {
  int index = 0;            // Call.blocks index; that block's `data` is empty until sent
  absl::string_view bytes;  // what the block starts with (empty for OUT); outlives the call
  // Where the block's bytes go after the call (OUT/INOUT), or nullptr. When the answer came
  // through the shared area they are already there, and its BlockContents says `shared`.
  std::string* into = nullptr;
};

using BorrowedBlocks = absl::Span<const BorrowedBlock>;

// The size of `request` once the borrowed bytes of its blocks whose data is still empty are in
// it (what a frame or message carrying the call would hold).
inline uint64_t RequestBytes(const v1::Request& request, BorrowedBlocks borrowed) {
  uint64_t bytes = request.ByteSizeLong();
  for (const BorrowedBlock& block : borrowed) {
    if (request.call().blocks(block.index).data().empty()) bytes += block.bytes.size();
  }
  return bytes;
}

// Puts the borrowed bytes into the blocks of `call` whose data is still empty, for a
// request that carries its blocks in its frame.
inline void CopyBorrowedIn(v1::Call* call, BorrowedBlocks borrowed) {
  for (const BorrowedBlock& block : borrowed) {
    v1::MemoryBlock* target = call->mutable_blocks(block.index);
    if (target->data().empty() && !block.bytes.empty()) {
      target->set_data(block.bytes.data(), block.bytes.size());
    }
  }
}

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_BORROWED_BLOCK_H_
