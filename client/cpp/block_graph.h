// Linked client memory for one call: blocks that point into each other (a pointer graph).
//
// A `BlockGraph` holds client blocks (a linked list's nodes, a struct and the structs it
// points to, a buffer and an out-pointer into it) and the links between them. Pass a
// position in it to a typed function parameter declared as `ffibox::GraphPointer` (any number
// of parameters may point into the same graph; its blocks are sent once). The worker stores
// each link as a real pointer (a Relocation) before the call; after the call the OUT/INOUT
// blocks come back with the library's changes, and the links are rebuilt from the words the
// server reports as pointers into the call's blocks (BlockContents.pointers), so a rewired
// list or a pointer into a buffer reads back as a graph position. Words the library set to
// its own memory read back with `RemoteAt`.
//
//   ffibox::BlockGraph graph;
//   int head = graph.AddOut(sizeof(void*));
//   int node = graph.AddObject(Node{1, 0});
//   graph.Link(head, 0, {node, 0});
//   reverse_list(graph.At(head));
//   absl::StatusOr<std::optional<BlockPosition>> first = graph.Target(head, 0);
//
// Not thread-safe; use one graph per call at a time.
#ifndef FFIBOX_CLIENT_CPP_BLOCK_GRAPH_H_
#define FFIBOX_CLIENT_CPP_BLOCK_GRAPH_H_

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cpp/values.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {
class CallBuilder;
}  // namespace client_internal

// A byte position inside one block of a BlockGraph.
struct BlockPosition {
  int block = 0;
  uint64_t offset = 0;

  friend bool operator==(const BlockPosition& a, const BlockPosition& b) {
    return a.block == b.block && a.offset == b.offset;
  }
  friend bool operator!=(const BlockPosition& a, const BlockPosition& b) { return !(a == b); }
};

class BlockGraph;

// A pointer argument into a BlockGraph (declare the parameter as `ffibox::GraphPointer`).
struct GraphPointer {
  BlockGraph* graph = nullptr;
  BlockPosition position;
};

class BlockGraph {
 public:
  // Adds a block that starts with `data` and is `size` bytes long (0: data.size()), sent in
  // `direction`; returns its index.
  int Add(std::string data, v1::Direction direction = v1::INOUT, uint64_t size = 0);
  // Adds a block holding a copy of `object` (trivially copyable); returns its index.
  template <typename T>
  int AddObject(const T& object, v1::Direction direction = v1::INOUT) {
    static_assert(std::is_trivially_copyable_v<T>, "BlockGraph objects are copied bytewise");
    std::string bytes(sizeof(T), '\0');
    std::memcpy(bytes.data(), &object, sizeof(T));
    return Add(std::move(bytes), direction);
  }
  // Adds a zero-filled block of `size` bytes that the library fills (OUT); returns its index.
  int AddOut(uint64_t size) { return Add(std::string(), v1::OUT, size); }

  // Makes the 8-byte pointer at `offset` of block `from` point at `target` when the library
  // runs. Bad indexes or offsets are reported by the call (INVALID_ARGUMENT).
  void Link(int from, uint64_t offset, BlockPosition target);
  // Makes the pointer at `offset` of block `from` NULL (removes a link).
  void Unlink(int from, uint64_t offset);

  // The argument value for a pointer parameter pointing at `offset` of `block`.
  GraphPointer At(int block, uint64_t offset = 0) { return GraphPointer{this, {block, offset}}; }

  // The number of blocks.
  int size() const { return static_cast<int>(blocks_.size()); }
  // The bytes of `block` (as sent before a call; after it, as the library left OUT/INOUT
  // blocks). Requires a valid index.
  const std::string& data(int block) const { return blocks_[block].data; }
  // Reads a T at `offset` of `block`; OUT_OF_RANGE if it does not fit in the block.
  template <typename T>
  absl::StatusOr<T> Get(int block, uint64_t offset = 0) const {
    static_assert(std::is_trivially_copyable_v<T>, "BlockGraph objects are copied bytewise");
    absl::Status in_range = CheckRange(block, offset, sizeof(T));
    if (!in_range.ok()) return in_range;
    T object;
    std::memcpy(&object, blocks_[block].data.data() + offset, sizeof(T));
    return object;
  }
  // Writes `object` at `offset` of `block` (before a call); OUT_OF_RANGE if it does not fit.
  template <typename T>
  absl::Status Set(int block, uint64_t offset, const T& object) {
    static_assert(std::is_trivially_copyable_v<T>, "BlockGraph objects are copied bytewise");
    absl::Status in_range = CheckRange(block, offset, sizeof(T));
    if (!in_range.ok()) return in_range;
    std::memcpy(blocks_[block].data.data() + offset, &object, sizeof(T));
    return absl::OkStatus();
  }

  // Where the pointer at `offset` of `block` points: a position in this graph, or nullopt
  // for NULL. FAILED_PRECONDITION if it holds some other address (a worker address: see
  // RemoteAt); OUT_OF_RANGE for a bad position.
  absl::StatusOr<std::optional<BlockPosition>> Target(int block, uint64_t offset) const;
  // The pointer at `offset` of `block` as a worker address of the generation that ran the
  // last call (for pointers the library set to its own memory); OUT_OF_RANGE for a bad
  // position.
  absl::StatusOr<RemotePtr> RemoteAt(int block, uint64_t offset) const;

 private:
  // The call machinery sends the graph's blocks and takes them back.
  friend class client_internal::CallBuilder;

  // Appends the graph's blocks to `call` (their indexes start at `base`, which must be the
  // call's current block count) with relocations for every link; INVALID_ARGUMENT naming
  // the link if one points outside the graph or a block.
  absl::Status AppendBlocks(uint32_t base, v1::Call* call) const;
  // Takes the returned contents of the graph's block `block` (sent as call block
  // base + block): new bytes, and links rebuilt from `contents.pointers`.
  void ApplyReturned(int block, uint32_t base, const v1::BlockContents& contents,
                     uint64_t generation);

  struct Block {
    std::string data;
    v1::Direction direction = v1::INOUT;
    std::map<uint64_t, BlockPosition> links;  // pointer offset -> target
    uint64_t generation = 0;                  // of the call that last returned it
  };

  // OUT_OF_RANGE unless `size` bytes at `offset` of `block` exist.
  absl::Status CheckRange(int block, uint64_t offset, uint64_t size) const;

  std::vector<Block> blocks_;
  std::vector<std::string> invalid_links_;  // links from blocks that do not exist
};

}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_BLOCK_GRAPH_H_
