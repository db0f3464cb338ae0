#include "core/call_answer.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/call_shape.h"
#include "core/layout.h"
#include "core/status_macros.h"

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
    if (!pointer.has_target()) {
      return absl::InvalidArgumentError(absl::StrCat("returned block ", block.block(),
                                                     " reports a pointer at offset ", offset,
                                                     " that is not into a block"));
    }
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

absl::Status CheckKeptBlocks(const google::protobuf::RepeatedPtrField<v1::KeptBlock>& kept,
                             const std::vector<uint32_t>& expected, absl::string_view what) {
  if (static_cast<size_t>(kept.size()) != expected.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " reports ", kept.size(), " kept blocks, the call kept ", expected.size()));
  }
  for (int i = 0; i < kept.size(); ++i) {
    if (kept[i].block() != expected[i] || kept[i].address().address() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": kept block ", i, " names block ", kept[i].block(), " at 0x",
                       absl::Hex(kept[i].address().address()), ", expected block ", expected[i]));
    }
  }
  return absl::OkStatus();
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
  FFIBOX_RETURN_IF_ERROR(CheckKeptBlocks(result.kept(), expected.kept_blocks, "the reply"));
  uint64_t changed_bytes = 0;
  for (const v1::ChangedBlock& changed : result.changed()) {
    changed_bytes += changed.data().size();
    if (changed.address().address() == 0 || changed.data().empty() || changed.offset() % 8 != 0 ||
        changed.offset() >= kMaxWatchedBytes || changed_bytes > kMaxChangedBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a changed run at 0x", absl::Hex(changed.address().address()), " offset ",
          changed.offset(), " of ", changed.data().size(), " bytes (runs are non-empty, at ",
          "8-aligned offsets of blocks at non-zero addresses, at most ", kMaxChangedBytes,
          " bytes in all)"));
    }
  }
  return absl::OkStatus();
}

namespace {

// One argument of an invocation, against its parameter `param`: what a worker sends for
// it (core/callback_values.h), so that no argument holds more than its parameter can.
absl::Status CheckInvokeArgument(const v1::Value& value, const v1::Type& param, int i) {
  const bool scalar = param.kind_case() == v1::Type::kScalar;
  switch (value.kind_case()) {
    case v1::Value::KIND_NOT_SET:
      return absl::InvalidArgumentError(absl::StrCat("invocation argument ", i, " has no value"));
    case v1::Value::kBytesValue:
      if (scalar && param.scalar() == v1::CSTRING &&
          value.bytes_value().size() <= kMaxInvokeStringBytes) {
        return absl::OkStatus();
      }
      break;
    case v1::Value::kTextValue:
      if (scalar && param.scalar() == v1::WSTRING &&
          value.text_value().size() <= 4 * kMaxInvokeStringBytes) {
        return absl::OkStatus();
      }
      break;
    case v1::Value::kRaw: {
      uint64_t size = 0;
      uint64_t alignment = 0;
      if (ComputeSizeAndAlignment(param, &size, &alignment).ok() && value.raw().size() <= size) {
        return absl::OkStatus();
      }
      break;
    }
    case v1::Value::kAggregate:
      break;  // records come as their bytes
    default:
      return absl::OkStatus();  // a scalar or a pointer: a few bytes
  }
  return absl::InvalidArgumentError(
      absl::StrCat("invocation argument ", i, " holds a value its parameter cannot have (",
                   value.GetDescriptor()->FindFieldByNumber(value.kind_case())->name(), " of ",
                   value.ByteSizeLong(), " bytes)"));
}

}  // namespace

absl::Status CheckCallbackInvoke(const v1::CallbackInvoke& invoke, const v1::Signature& signature,
                                 uint32_t buffer_bytes,
                                 std::vector<std::pair<uint32_t, uint64_t>>* shipped) {
  shipped->clear();
  if (invoke.invocation() == 0) {
    return absl::InvalidArgumentError("callback invocation with id 0");
  }
  if (invoke.args_size() != signature.params_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invocation of callback ", invoke.callback(), " carries ", invoke.args_size(),
                     " arguments; its signature has ", signature.params_size()));
  }
  for (int i = 0; i < invoke.args_size(); ++i) {
    FFIBOX_RETURN_IF_ERROR(CheckInvokeArgument(invoke.args(i), signature.params(i), i));
  }
  if (invoke.pointees_size() > signature.params_size()) {
    return absl::InvalidArgumentError("invocation carries more pointees than arguments");
  }
  absl::flat_hash_set<uint32_t> seen;
  uint64_t total = 0;
  for (const v1::PointeeData& pointee : invoke.pointees()) {
    const uint32_t arg = pointee.arg();
    const v1::Type* param =
        arg < static_cast<uint32_t>(signature.params_size()) ? &signature.params(arg) : nullptr;
    // A pointer parameter ships its pointee; an array parameter (a decayed pointer) its
    // whole length.
    const v1::Type* shipped_type = param == nullptr ? nullptr
                                   : param->kind_case() == v1::Type::kPointer
                                       ? &param->pointer().pointee()
                                   : param->kind_case() == v1::Type::kArray ? param
                                                                            : nullptr;
    if (shipped_type == nullptr || !seen.insert(arg).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("invocation ships pointee data for argument ", arg,
                       ", which is not a pointer parameter of the callback or was shipped twice"));
    }
    uint64_t size = 0;
    uint64_t alignment = 0;
    if (!ComputeSizeAndAlignment(*shipped_type, &size, &alignment).ok() ||
        pointee.data().size() != size) {
      return absl::InvalidArgumentError(absl::StrCat("invocation ships ", pointee.data().size(),
                                                     " bytes for argument ", arg,
                                                     ", which is not its pointee type's size"));
    }
    const uint64_t following = pointee.following().size();
    if (following > 0 && (buffer_bytes <= size || following > buffer_bytes - size)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invocation ships ", following, " bytes after argument ", arg, "'s pointee of ", size,
          " bytes; the callback asked for ", buffer_bytes, " from the pointer on"));
    }
    total += size + following;
    if (total > kMaxInvokePointeeBytes) {
      return absl::InvalidArgumentError("invocation ships too many pointee bytes");
    }
    shipped->emplace_back(arg, size);
  }
  return absl::OkStatus();
}

v1::Response::ResultCase ExpectedResult(v1::Request::OpCase op) {
  switch (op) {
    case v1::Request::kLoadLibrary:
      return v1::Response::kLibrary;
    case v1::Request::kResolveFunction:
      return v1::Response::kFunction;
    case v1::Request::kCall:
      return v1::Response::kCall;
    case v1::Request::kBatch:
      return v1::Response::kBatch;
    case v1::Request::kGetLayout:
      return v1::Response::kLayout;
    case v1::Request::kLookupSymbol:
      return v1::Response::kSymbol;
    case v1::Request::kReadMemory:
      return v1::Response::kMemory;
    case v1::Request::kReadMemoryList:
      return v1::Response::kMemoryList;
    case v1::Request::kAllocMemory:
      return v1::Response::kAllocated;
    case v1::Request::kReadString:
      return v1::Response::kString;
    case v1::Request::kDefineCallback:
      return v1::Response::kCallback;
    case v1::Request::kOpenLocalChannel:
      return v1::Response::kLocalChannel;
    case v1::Request::kWriteMemory:
    case v1::Request::kFreeMemory:
    case v1::Request::kFillMemory:
    case v1::Request::kCopyMemory:
    case v1::Request::kFreeCallback:
    case v1::Request::kPing:
      return v1::Response::kDone;
    default:
      return v1::Response::RESULT_NOT_SET;
  }
}

absl::Status CheckReadResult(const v1::MemoryData& memory, uint64_t size, bool typed) {
  if (!typed) {
    if (memory.data().size() != size || memory.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("read_memory returned ", memory.data().size(), " bytes, expected ", size));
    }
    return absl::OkStatus();
  }
  if (!memory.data().empty() || !memory.has_value() ||
      memory.value().kind_case() == v1::Value::KIND_NOT_SET) {
    return absl::InvalidArgumentError("typed read_memory must return a value and no data");
  }
  if (memory.value().kind_case() == v1::Value::kRaw && memory.value().raw().size() != size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "typed read_memory returned ", memory.value().raw().size(), " raw bytes, expected ", size));
  }
  return absl::OkStatus();
}

ExpectedRead ExpectedReadOf(const v1::ReadMemory& read) {
  return read.has_type() ? ExpectedRead{TypeSizeOf(read.type()), true}
                         : ExpectedRead{read.size(), false};
}

absl::Status CheckReadListResult(const v1::MemoryDataList& list,
                                 absl::Span<const ExpectedRead> reads) {
  if (static_cast<size_t>(list.reads_size()) != reads.size()) {
    return absl::InvalidArgumentError(absl::StrCat("read_memory_list returned ", list.reads_size(),
                                                   " reads, expected ", reads.size()));
  }
  for (size_t i = 0; i < reads.size(); ++i) {
    absl::Status checked =
        CheckReadResult(list.reads(static_cast<int>(i)), reads[i].size, reads[i].typed);
    if (!checked.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("read ", i, ": ", checked.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckErrorAnswer(const v1::Response& response) {
  FFIBOX_RETURN_IF_ERROR(CheckWorkerError(response.error()));
  if (response.result_case() != v1::Response::RESULT_NOT_SET) {
    return absl::InvalidArgumentError("the answer carries both an error and a result");
  }
  if (response.error().has_batch_index()) {
    return absl::InvalidArgumentError("the answer names a batch call");
  }
  return absl::OkStatus();
}

absl::Status CheckNestedAnswer(const v1::Request& request, const v1::Response& response) {
  switch (request.op_case()) {
    case v1::Request::kReadMemory:
    case v1::Request::kReadMemoryList:
    case v1::Request::kReadString:
    case v1::Request::kWriteMemory:
    case v1::Request::kGetLayout:
      break;
    default:
      return absl::FailedPreconditionError(
          absl::StrCat("request kind ", request.op_case(), " is not sent inside an invocation"));
  }
  if (response.has_error()) return CheckErrorAnswer(response);
  const v1::Response::ResultCase want = ExpectedResult(request.op_case());
  if (response.result_case() != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("the answer has result kind ", response.result_case(), ", expected ", want));
  }
  if (want == v1::Response::kMemoryList) {
    std::vector<ExpectedRead> reads;
    reads.reserve(request.read_memory_list().reads_size());
    for (const v1::ReadMemory& read : request.read_memory_list().reads()) {
      reads.push_back(ExpectedReadOf(read));
    }
    return CheckReadListResult(response.memory_list(), reads);
  }
  if (want != v1::Response::kMemory) return absl::OkStatus();
  const v1::ReadMemory& read = request.read_memory();
  if (!read.has_type()) return CheckReadResult(response.memory(), read.size(), false);
  return CheckReadResult(response.memory(), TypeSizeOf(read.type()), true);
}

absl::Status CheckWorkerError(const v1::Error& error) {
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
  if (code == v1::UNAVAILABLE) {
    return absl::InvalidArgumentError("error code UNAVAILABLE, which only clients use");
  }
  // And that a request never reached a worker: a client would send its releases again.
  if (error.never_reached_worker()) {
    return absl::InvalidArgumentError("an error saying its request never reached a worker");
  }
  return absl::OkStatus();
}

}  // namespace ffibox
