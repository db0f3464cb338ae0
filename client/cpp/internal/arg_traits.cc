#include "client/cpp/internal/arg_traits.h"

#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace ffibox {
namespace client_internal {

absl::Status ArgTraits<const std::vector<std::string>&>::Append(Param strings,
                                                                CallBuilder& builder) {
  std::string text;
  std::vector<uint64_t> offsets;
  offsets.reserve(strings.size());
  for (size_t i = 0; i < strings.size(); ++i) {
    if (strings[i].find('\0') != std::string::npos) {
      return ErrorStatus(v1::INVALID_ARGUMENT,
                         absl::StrCat("string ", i, " of the array holds a NUL byte"));
    }
    offsets.push_back(text.size());
    text.append(strings[i]);
    text.push_back('\0');
  }
  const uint64_t text_size = text.size();
  const uint32_t text_block = builder.AddBlock(std::move(text), text_size, v1::IN, nullptr);
  const uint64_t table_size = (strings.size() + 1) * sizeof(uint64_t);
  const uint32_t table_block =
      builder.AddBlock(std::string(table_size, '\0'), table_size, v1::IN, nullptr);
  v1::MemoryBlock* table = builder.call().mutable_blocks(static_cast<int>(table_block));
  for (size_t i = 0; i < offsets.size(); ++i) {
    v1::Relocation* relocation = table->add_relocations();
    relocation->set_offset(i * sizeof(uint64_t));
    relocation->mutable_target()->set_block(text_block);
    relocation->mutable_target()->set_offset(offsets[i]);
  }
  builder.AddBlockRefArg(table_block, 0);
  return absl::OkStatus();
}

absl::Status ArgTraits<GraphPointer>::Append(Param pointer, CallBuilder& builder) {
  if (pointer.graph == nullptr) {
    builder.AddNullArg();
    return absl::OkStatus();
  }
  const BlockPosition& position = pointer.position;
  if (position.block < 0 || position.block >= pointer.graph->size() ||
      position.offset > pointer.graph->data(position.block).size()) {
    return ErrorStatus(v1::INVALID_ARGUMENT,
                       absl::StrCat("the graph pointer names offset ", position.offset,
                                    " of block ", position.block, ", which the graph of ",
                                    pointer.graph->size(), " blocks does not have"));
  }
  absl::StatusOr<uint32_t> base = builder.AttachGraph(*pointer.graph);
  if (!base.ok()) return base.status();
  builder.AddBlockRefArg(*base + static_cast<uint32_t>(position.block), position.offset);
  return absl::OkStatus();
}

absl::Status ArgTraits<RemotePtr*>::Append(Param pointer, CallBuilder& builder) {
  if (pointer == nullptr) {
    builder.AddNullArg();
    return absl::OkStatus();
  }
  std::string bytes(sizeof(uint64_t), '\0');
  std::memcpy(bytes.data(), &pointer->address, sizeof(uint64_t));
  builder.AddBlockArg(std::move(bytes), sizeof(uint64_t), v1::INOUT,
                      [pointer](const v1::BlockContents& contents, uint64_t generation) {
                        uint64_t address;
                        std::memcpy(&address, contents.data().data(), sizeof(address));
                        *pointer = address == 0 ? RemotePtr() : RemotePtr(address, generation);
                      });
  return absl::OkStatus();
}

}  // namespace client_internal
}  // namespace ffibox
