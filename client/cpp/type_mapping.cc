#include "client/cpp/type_mapping.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/utf8.h"

namespace ffibox {
namespace client_internal {

static_assert(sizeof(wchar_t) == sizeof(char32_t), "ffibox assumes a 32-bit wchar_t (Linux)");

uint32_t CallBuilder::AddBlock(std::string data, uint64_t size, v1::Direction direction,
                               CopyBack copy_back) {
  const uint32_t index = static_cast<uint32_t>(call_.blocks_size());
  v1::MemoryBlock* block = call_.add_blocks();
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

void CallBuilder::AddBlockRefArg(uint32_t block, uint64_t offset) {
  v1::BlockRef* ref = call_.add_args()->mutable_pointer()->mutable_block();
  ref->set_block(block);
  ref->set_offset(offset);
}

absl::StatusOr<uint32_t> CallBuilder::AttachGraph(BlockGraph& graph) {
  for (const auto& [attached, base] : graphs_) {
    if (attached == &graph) return base;
  }
  const uint32_t base = static_cast<uint32_t>(call_.blocks_size());
  if (absl::Status appended = graph.AppendBlocks(base, &call_); !appended.ok()) return appended;
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

void CallBuilder::AddNullArg() { call_.add_args()->mutable_pointer()->set_null(true); }

absl::Status CallBuilder::ApplyBlocks(const v1::CallResult& result, uint64_t generation) const {
  for (const v1::BlockContents& contents : result.blocks()) {
    if (contents.block() >= copy_backs_.size()) {
      return ErrorStatus(v1::INTERNAL, absl::StrCat("the server returned block ", contents.block(),
                                                    " but the call sent ", copy_backs_.size()));
    }
    if (contents.data().size() != block_sizes_[contents.block()]) {
      return ErrorStatus(v1::INTERNAL, absl::StrCat("the server returned ", contents.data().size(),
                                                    " bytes for block ", contents.block(), " of ",
                                                    block_sizes_[contents.block()], " bytes"));
    }
  }
  for (const v1::BlockContents& contents : result.blocks()) {
    const CopyBack& copy_back = copy_backs_[contents.block()];
    if (copy_back) copy_back(contents, generation);
  }
  return absl::OkStatus();
}

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

std::u32string WideToUtf32(std::wstring_view text) {
  return std::u32string(text.begin(), text.end());
}

std::wstring Utf32ToWide(std::u32string_view text) {
  return std::wstring(text.begin(), text.end());
}

absl::StatusOr<std::optional<std::string>> DecodeCString(const v1::Value& value,
                                                         RemoteStringReader read) {
  switch (value.kind_case()) {
    case v1::Value::kBytesValue:
      return std::optional<std::string>(value.bytes_value());
    case v1::Value::kPointer: {
      const v1::PointerValue& pointer = value.pointer();
      if (pointer.has_null()) return std::optional<std::string>();
      if (pointer.has_remote()) {
        if (pointer.remote().address() == 0) return std::optional<std::string>();
        absl::StatusOr<v1::StringData> data = read(pointer.remote(), /*wide=*/false);
        if (!data.ok()) return data.status();
        return std::optional<std::string>(std::move(*data->mutable_data()));
      }
      return UnexpectedValue(value, "a char* (bytes or remote pointer)");
    }
    default:
      return UnexpectedValue(value, "a char* (bytes or remote pointer)");
  }
}

absl::StatusOr<std::optional<std::u32string>> DecodeWString(const v1::Value& value,
                                                            RemoteStringReader read) {
  std::string utf8;
  switch (value.kind_case()) {
    case v1::Value::kTextValue:
      utf8 = value.text_value();
      break;
    case v1::Value::kPointer: {
      const v1::PointerValue& pointer = value.pointer();
      if (pointer.has_null()) return std::optional<std::u32string>();
      if (!pointer.has_remote()) return UnexpectedValue(value, "a wchar_t* (text or pointer)");
      if (pointer.remote().address() == 0) return std::optional<std::u32string>();
      absl::StatusOr<v1::StringData> data = read(pointer.remote(), /*wide=*/true);
      if (!data.ok()) return data.status();
      utf8 = std::move(*data->mutable_text());
      break;
    }
    default:
      return UnexpectedValue(value, "a wchar_t* (text or remote pointer)");
  }
  absl::StatusOr<std::u32string> text = DecodeUtf8(utf8);
  if (!text.ok()) {
    return ErrorStatus(v1::INTERNAL, absl::StrCat("the server returned a wide string that is not "
                                                  "UTF-8: ",
                                                  text.status().message()));
  }
  return std::optional<std::u32string>(*std::move(text));
}

absl::Status NullStringResult() {
  return ErrorStatus(v1::FAILED_PRECONDITION,
                     "the function returned NULL; declare the result as std::optional<...> to "
                     "accept NULL");
}

}  // namespace client_internal
}  // namespace ffibox
