#include "core/call_shape.h"

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/errors.h"
#include "core/layout.h"

namespace ffibox {

namespace {

// The shared-area placement of block `index` (MemoryBlock.shared_offset) within an area of
// `shared_bytes`.
absl::Status ValidateSharedBlock(const v1::MemoryBlock& block, const std::string& block_path,
                                 uint64_t shared_bytes) {
  const std::string field = block_path + ".shared_offset";
  if (shared_bytes == 0) {
    return InvalidArgumentAt(field,
                             "only a call on a same-host channel with a shared area places a "
                             "block there");
  }
  if (!block.data().empty()) {
    return InvalidArgumentAt(field,
                             "a block in the shared area carries no data: its bytes are there");
  }
  if (block.size() == 0) return InvalidArgumentAt(field, "a block in the shared area needs a size");
  if (block.shared_offset() % 16 != 0) {
    return InvalidArgumentAt(
        field, absl::StrCat("offset ", block.shared_offset(), " is not a multiple of 16"));
  }
  if (block.shared_offset() > shared_bytes || block.size() > shared_bytes - block.shared_offset()) {
    return InvalidArgumentAt(
        field, absl::StrCat(block.size(), " bytes at offset ", block.shared_offset(),
                            " do not fit in the shared area of ", shared_bytes, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateCallShape(const v1::Call& call, const v1::Signature& signature,
                               const TypeLimits& limits, uint64_t shared_bytes) {
  // The broker names a function given by its resolve request by handle before this check;
  // a worker knows functions by handle only.
  if (call.function_request() != 0) {
    return InvalidArgumentAt("call.function_request", "is resolved by the broker, not here");
  }
  if (!signature.variadic() && call.variadic_types_size() > 0) {
    return InvalidArgumentAt("call.variadic_types", "the function is not variadic");
  }
  // Checked before the variadic types are validated, so a flood of them costs nothing.
  size_t total_args = static_cast<size_t>(signature.params_size()) +
                      static_cast<size_t>(call.variadic_types_size());
  if (total_args > limits.max_args) {
    return InvalidArgumentAt(
        "call.variadic_types",
        absl::StrCat(total_args, " arguments exceed the limit of ", limits.max_args));
  }
  for (int i = 0; i < call.variadic_types_size(); ++i) {
    std::string field = absl::StrCat("call.variadic_types[", i, "]");
    absl::Status status = ValidateType(call.variadic_types(i), limits, field);
    if (!status.ok()) return status;
    if (call.variadic_types(i).kind_case() == v1::Type::kScalar &&
        call.variadic_types(i).scalar() == v1::VOID) {
      return InvalidArgumentAt(field, "a variadic argument cannot be void");
    }
  }
  size_t expected = total_args;
  if (static_cast<size_t>(call.args_size()) != expected) {
    return InvalidArgumentAt(
        "call.args",
        absl::StrCat("expected ", expected, " argument", expected == 1 ? "" : "s", " (",
                     signature.params_size(), " fixed, ", call.variadic_types_size(),
                     " variadic), got ", call.args_size()));
  }
  if (static_cast<size_t>(call.blocks_size()) > limits.max_blocks) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat("call.blocks: ", call.blocks_size(), " blocks, the limit is ",
                                    limits.max_blocks));
  }
  if (static_cast<size_t>(call.release_size()) > limits.max_blocks) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat("call.release: ", call.release_size(),
                                    " addresses, the limit is ", limits.max_blocks));
  }
  uint64_t total_bytes = 0;
  size_t relocations = 0;
  std::vector<std::pair<uint64_t, int>> shared;  // (offset, block) of blocks in the area
  for (int i = 0; i < call.blocks_size(); ++i) {
    const v1::MemoryBlock& block = call.blocks(i);
    std::string field = absl::StrCat("call.blocks[", i, "]");
    if (!v1::Direction_IsValid(block.direction())) {
      return InvalidArgumentAt(field + ".direction", "unknown direction");
    }
    if (block.has_shared_offset()) {
      if (absl::Status placed = ValidateSharedBlock(block, field, shared_bytes); !placed.ok()) {
        return placed;
      }
      shared.emplace_back(block.shared_offset(), i);
    }
    if (block.keep() && block.has_at()) {
      return InvalidArgumentAt(field, "a block cannot be both kept and placed at");
    }
    if (block.watch() && !block.keep() && !block.has_at()) {
      return InvalidArgumentAt(field + ".watch",
                               "only a kept block or one placed at can be watched");
    }
    if (block.size() != 0 && block.data().size() > block.size()) {
      return InvalidArgumentAt(field + ".data",
                               absl::StrCat("data is ", block.data().size(),
                                            " bytes, more than the block's size ", block.size()));
    }
    const uint64_t size = block.has_shared_offset() ? 0 : BlockSize(block);
    if (size > limits.max_block_bytes || total_bytes + size > limits.max_block_bytes) {
      return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                         absl::StrCat(field, ": blocks of the call exceed the limit of ",
                                      limits.max_block_bytes, " bytes"));
    }
    total_bytes += size;
    relocations += static_cast<size_t>(block.relocations_size());
    if (relocations > limits.max_relocations) {
      return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                         absl::StrCat(field, ": relocations of the call exceed the limit of ",
                                      limits.max_relocations));
    }
  }
  // Blocks in the shared area are distinct memory, as blocks anywhere else.
  std::sort(shared.begin(), shared.end());
  for (size_t k = 1; k < shared.size(); ++k) {
    const v1::MemoryBlock& before = call.blocks(shared[k - 1].second);
    if (shared[k].first - before.shared_offset() < before.size()) {
      return InvalidArgumentAt(
          absl::StrCat("call.blocks[", shared[k].second, "].shared_offset"),
          absl::StrCat("the block overlaps block ", shared[k - 1].second, " in the shared area"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateBatchShape(const v1::Batch& batch, const TypeLimits& limits) {
  if (batch.calls_size() == 0) return InvalidArgumentAt("batch.calls", "a batch needs a call");
  if (static_cast<size_t>(batch.calls_size()) > limits.max_batch_calls) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat("batch.calls: ", batch.calls_size(), " calls, the limit is ",
                                    limits.max_batch_calls));
  }
  uint64_t total_bytes = 0;
  for (int i = 0; i < batch.calls_size(); ++i) {
    for (const v1::MemoryBlock& block : batch.calls(i).blocks()) {
      const uint64_t size = BlockSize(block);
      if (size > limits.max_block_bytes || total_bytes + size > limits.max_block_bytes) {
        return InBatch(ErrorStatus(v1::RESOURCE_EXHAUSTED,
                                   absl::StrCat("call.blocks: blocks of the batch exceed the "
                                                "limit of ",
                                                limits.max_block_bytes, " bytes")),
                       i);
      }
      total_bytes += size;
    }
  }
  return absl::OkStatus();
}

namespace {

// `text` ("call.args[1]: ...", "call", "") with its leading "call" replaced by `prefix`, or
// `prefix` put before it.
std::string RenameCall(const std::string& text, absl::string_view prefix, absl::string_view glue) {
  absl::string_view rest = text;
  if (absl::ConsumePrefix(&rest, "call") &&
      (rest.empty() || rest[0] == '.' || rest[0] == '[' || rest[0] == ':')) {
    return absl::StrCat(prefix, rest);
  }
  return text.empty() ? std::string(prefix) : absl::StrCat(prefix, glue, text);
}

}  // namespace

absl::Status InBatch(const absl::Status& status, int index) {
  if (status.ok()) return status;
  v1::Error error = ToProtoError(status);
  const std::string prefix = absl::StrCat("batch.calls[", index, "]");
  error.set_message(RenameCall(error.message(), prefix, ": "));
  if (!error.field().empty() || error.code() == v1::INVALID_ARGUMENT) {
    error.set_field(RenameCall(error.field(), prefix, "."));
  }
  error.set_batch_index(static_cast<uint32_t>(index));
  return ErrorStatus(error);
}

uint64_t TypeSizeOf(const v1::Type& type) {
  uint64_t size = 0;
  uint64_t alignment = 0;
  if (!ComputeSizeAndAlignment(type, &size, &alignment).ok()) return 0;
  return size;
}

namespace {

absl::Status ValidateDataType(const v1::Type& type, const TypeLimits& limits,
                              absl::string_view field) {
  absl::Status status = ValidateType(type, limits, field);
  if (!status.ok()) return status;
  uint64_t size = 0;
  uint64_t alignment = 0;
  return PrefixField(ComputeSizeAndAlignment(type, &size, &alignment), field);
}

// `field`: where the read is in the request ("read_memory", "read_memory_list.reads[2]").
absl::Status ValidateReadMemory(const v1::ReadMemory& read, const TypeLimits& limits,
                                absl::string_view field) {
  if (!read.has_address()) return InvalidArgumentAt(absl::StrCat(field, ".address"), "is required");
  if (read.unwatch_size() > kMaxReadsPerList) {
    return InvalidArgumentAt(
        absl::StrCat(field, ".unwatch"),
        absl::StrCat("holds ", read.unwatch_size(), " addresses: send at most ", kMaxReadsPerList));
  }
  if (!read.has_type()) return absl::OkStatus();
  if (read.watch()) {
    return InvalidArgumentAt(absl::StrCat(field, ".watch"), "only a raw read (no type) is watched");
  }
  absl::Status status = ValidateDataType(read.type(), limits, absl::StrCat(field, ".type"));
  if (!status.ok()) return status;
  const uint64_t size = TypeSizeOf(read.type());
  if (read.size() != 0 && read.size() != size) {
    return InvalidArgumentAt(absl::StrCat(field, ".size"),
                             absl::StrCat("is ", read.size(), " but the type's size is ", size,
                                          " (send 0 or the type's size)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateWriteMemory(const v1::WriteMemory& write, const TypeLimits& limits) {
  if (!write.has_address()) return InvalidArgumentAt("write_memory.address", "is required");
  if (!write.has_type()) {
    if (write.has_value()) {
      return InvalidArgumentAt("write_memory.value", "a value needs write_memory.type");
    }
    return absl::OkStatus();
  }
  if (!write.data().empty()) {
    return InvalidArgumentAt("write_memory.data", "send either data or type and value, not both");
  }
  if (!write.has_value()) return InvalidArgumentAt("write_memory.value", "is required with a type");
  return ValidateDataType(write.type(), limits, "write_memory.type");
}

}  // namespace

absl::Status ValidateMemoryRequest(const v1::Request& request, const TypeLimits& limits) {
  auto require = [](bool present, const char* field) {
    return present ? absl::OkStatus() : InvalidArgumentAt(field, "is required");
  };
  switch (request.op_case()) {
    case v1::Request::kReadMemory:
      return ValidateReadMemory(request.read_memory(), limits, "read_memory");
    case v1::Request::kReadMemoryList: {
      const auto& reads = request.read_memory_list().reads();
      if (reads.empty() || reads.size() > kMaxReadsPerList) {
        return InvalidArgumentAt(
            "read_memory_list.reads",
            absl::StrCat("holds ", reads.size(), " reads: send 1 to ", kMaxReadsPerList));
      }
      for (int i = 0; i < reads.size(); ++i) {
        absl::Status read =
            ValidateReadMemory(reads[i], limits, absl::StrCat("read_memory_list.reads[", i, "]"));
        if (!read.ok()) return read;
      }
      return absl::OkStatus();
    }
    case v1::Request::kWriteMemory:
      return ValidateWriteMemory(request.write_memory(), limits);
    case v1::Request::kAllocMemory:
      return absl::OkStatus();
    case v1::Request::kFreeMemory:
      return require(request.free_memory().has_address(), "free_memory.address");
    case v1::Request::kFillMemory:
      if (request.fill_memory().byte() > 0xFF) {
        return InvalidArgumentAt("fill_memory.byte", "must be 0..255");
      }
      return require(request.fill_memory().has_address(), "fill_memory.address");
    case v1::Request::kCopyMemory: {
      absl::Status destination =
          require(request.copy_memory().has_destination(), "copy_memory.destination");
      if (!destination.ok()) return destination;
      return require(request.copy_memory().has_source(), "copy_memory.source");
    }
    case v1::Request::kReadString:
      return require(request.read_string().has_address(), "read_string.address");
    default:
      return InvalidArgumentAt("op", "not a memory operation");
  }
}

}  // namespace ffibox
