// One call's arguments and memory blocks as the typed client builds them, and the copies back
// into client memory after the call.
//
// Parameter traits (arg_traits.h) append to a CallBuilder; the typed call (typed_call.h) sends
// its `call()` and hands the answer's blocks to ApplyBlocks, which checks them against what
// the call sent before anything is copied (the server's answer is not trusted).
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_CALL_BUILDER_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_CALL_BUILDER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cpp/block_graph.h"
#include "client/cpp/internal/borrowed_block.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

// Blocks smaller than this are copied into the call when added, not borrowed.
inline constexpr uint64_t kMinBorrowedBlockBytes = uint64_t{64} << 10;

// Accumulates one call's arguments and memory blocks, and what to copy back after it.
class CallBuilder {
 public:
  // Receives a block's returned contents (exactly the block's size, with the pointers the
  // server found in it) and the generation of the worker that ran the call.
  using CopyBack = std::function<void(const v1::BlockContents& contents, uint64_t generation)>;

  // Builds a call of its own.
  CallBuilder() : call_(&own_.emplace()) {}
  // Builds into `call` (a call of a batch), which must outlive this builder.
  explicit CallBuilder(v1::Call* call) : call_(call) {}
  CallBuilder(CallBuilder&& other) noexcept;
  CallBuilder& operator=(CallBuilder&&) = delete;

  // The call being built (arguments and blocks so far).
  v1::Call& call() { return *call_; }
  // Appends an argument value for the caller to fill.
  v1::Value* AddArg() { return call_->add_args(); }
  // Whether the call sends blocks (then ApplyBlocks has something to copy back).
  bool sends_blocks() const { return !block_sizes_.empty(); }
  // Appends a block of `size` bytes starting with `data` without an argument pointing at it
  // (other blocks reach it through relocations); returns its index. `copy_back` (may be
  // empty) receives the block's contents after the call when it is OUT/INOUT.
  uint32_t AddBlock(std::string data, uint64_t size, v1::Direction direction, CopyBack copy_back);
  // Appends a pointer argument to a new block (see AddBlock).
  void AddBlockArg(std::string data, uint64_t size, v1::Direction direction, CopyBack copy_back);
  // Appends a pointer argument to a new block of `size` bytes that starts with `bytes` and
  // whose contents after the call (OUT/INOUT) go to `*into` (may be nullptr); `bytes` and
  // `*into` must outlive the call. A large block of a call of its own is borrowed
  // (borrowed()): its bytes are copied once, when the call is sent, to where it goes.
  void AddBorrowedBlockArg(absl::string_view bytes, uint64_t size, v1::Direction direction,
                           std::string* into);
  // The blocks whose bytes the transport copies when it sends the call (BorrowedBlock).
  BorrowedBlocks borrowed() const { return borrowed_; }
  // Appends a pointer argument to `offset` of the call's block `block`.
  void AddBlockRefArg(uint32_t block, uint64_t offset);
  // Sends `graph`'s blocks with this call (once, however many arguments point into it) and
  // returns the call index of its first block; INVALID_ARGUMENT for a bad link.
  absl::StatusOr<uint32_t> AttachGraph(BlockGraph& graph);
  // Appends a NULL pointer argument.
  void AddNullArg();
  // Copies the OUT/INOUT block contents of `result` back into client memory; `generation`
  // is that of the worker that answered. INTERNAL if the server returned a block the call
  // did not send or of the wrong size. A borrowed block's contents marked `shared` are
  // already in its `into`.
  absl::Status ApplyBlocks(const v1::CallResult& result, uint64_t generation) const;

 private:
  // Whether `contents` came back through the same-host channel's shared area straight into
  // its borrowed block's `into` (nothing left to copy).
  bool Delivered(const v1::BlockContents& contents) const;

  std::optional<v1::Call> own_;  // unset when building into the caller's call
  v1::Call* call_;               // &*own_, or the caller's
  std::vector<CopyBack> copy_backs_;
  std::vector<uint64_t> block_sizes_;
  std::vector<std::pair<const BlockGraph*, uint32_t>> graphs_;  // graph -> first block
  std::vector<BorrowedBlock> borrowed_;
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_CALL_BUILDER_H_
