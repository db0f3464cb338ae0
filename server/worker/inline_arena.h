// An arena that starts in a block held inline, in the object that holds the arena: a single
// call's request or reply needs no heap beyond that object (none at all for one on the
// stack), a batch's thousands of messages a few more blocks.
#ifndef FFIBOX_SERVER_WORKER_INLINE_ARENA_H_
#define FFIBOX_SERVER_WORKER_INLINE_ARENA_H_

#include <cstddef>

#include "google/protobuf/arena.h"

namespace ffibox {

template <size_t kBlockBytes>
struct InlineArena {
  static google::protobuf::ArenaOptions FirstBlock(char* block) {
    google::protobuf::ArenaOptions options;
    options.initial_block = block;
    options.initial_block_size = kBlockBytes;
    return options;
  }

  alignas(8) char first_block[kBlockBytes];
  google::protobuf::Arena arena{FirstBlock(first_block)};  // after its block: destroyed first
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_WORKER_INLINE_ARENA_H_
