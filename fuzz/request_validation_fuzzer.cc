// Fuzzes the broker's checks of untrusted client requests (server/broker/request_validation.h),
// of batches (core/call_shape.h ValidateBatchShape, server/broker/call_validation.h
// ValidateBatchRequest) and the type checks they rest on (core/types.h).
//
// Input (fuzz/framed_input.h): one options byte, a little-endian uint16 length n, n bytes of
// a serialized v1::Signature (the function a Call names, or the callback a CallbackReturn
// answers), then a serialized v1::Request. Options: bit 0 selects small TypeLimits (so every limit
// is reachable) instead of the server's defaults, bits 1-2 the server's env_allow list, bits 3-7
// which pointer parameters of the signature had pointees shipped with the invocation.
// A Batch calls functions 1 (resolved by name), 2 (resolved by address in the live worker)
// and 3 (resolved by address in a worker that is gone), all three with the signature when it
// is valid; any other handle is unknown.
//
// Checks that every validator that applies returns OK or a typed error a client can act on
// (a known code, a message, the offending field), and that what passes keeps the promises
// the broker and the worker rely on next: a validated type has a layout within the limits,
// a validated call has exactly its arguments and its blocks add up within the limits, and
// the sizes the broker derives from a request match it. A batch is refused exactly when it
// is empty, has too many calls, its calls' blocks together pass the byte limit (naming the
// call that passes it), its deadline passes the server's, or one of its calls is refused
// alone (naming the first such call); an accepted batch is described call by call as the
// worker's reply will be checked against. And that what the broker works out from a
// request's bytes (ParsedBytesAtMost, core/encoding_limits.h) is never less than what the
// parsed request takes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/call_answer.h"
#include "core/call_shape.h"
#include "core/encoding_limits.h"
#include "core/errors.h"
#include "core/layout.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"
#include "fuzz/framed_input.h"
#include "fuzz/fuzz_checks.h"
#include "fuzz/proto_mutator.h"
#include "server/broker/call_validation.h"
#include "server/broker/handle_table.h"
#include "server/broker/pending_request.h"
#include "server/broker/request_validation.h"

namespace ffibox {
namespace {

using fuzz::CheckTypedError;

// Codes the broker's validators may answer a client with.
constexpr std::initializer_list<v1::ErrorCode> kValidationCodes = {
    v1::INVALID_ARGUMENT, v1::RESOURCE_EXHAUSTED, v1::UNIMPLEMENTED};

TypeLimits LimitsFor(uint8_t options) {
  TypeLimits limits;  // the server's defaults
  if (options & 1) {
    limits.max_depth = 4;
    limits.max_fields = 4;
    limits.max_array_length = 16;
    limits.max_type_size = 64;
    limits.max_blocks = 4;
    limits.max_block_bytes = 64;
    limits.max_relocations = 4;
    limits.max_args = 4;
    limits.max_batch_calls = 4;
  }
  return limits;
}

std::vector<std::string> EnvAllowFor(uint8_t options) {
  switch ((options >> 1) & 3) {
    case 0:
      return {};
    case 1:
      return {"LANG"};
    case 2:
      return {"LC_*", "SDL_[A-Z]*"};
    default:
      return {"*"};
  }
}

bool IsVoid(const v1::Type& type) {
  return type.kind_case() == v1::Type::kScalar && type.scalar() == v1::VOID;
}

// A type that passed ValidateType has a layout, within the limits.
void CheckValidatedType(const v1::Type& type, const TypeLimits& limits, const char* what) {
  absl::StatusOr<TypeLayout> layout = ComputeLayout(type);
  FUZZ_CHECK(layout.ok(), what, ": a validated type has no layout: ", layout.status().ToString());
  FUZZ_CHECK(layout->size <= limits.max_type_size, what, ": a validated type of ", layout->size,
             " bytes exceeds the limit of ", limits.max_type_size);
  const uint64_t alignment = layout->alignment;
  FUZZ_CHECK(alignment >= 1 && alignment <= 16 && (alignment & (alignment - 1)) == 0, what,
             ": alignment ", alignment);
  FUZZ_CHECK(layout->size % alignment == 0, what, ": size ", layout->size,
             " is not a multiple of alignment ", alignment);
  FUZZ_CHECK(TypeSizeOf(type) == layout->size, what, ": TypeSizeOf disagrees with the layout");
}

// A signature that passed ValidateSignature: its result and parameters have layouts.
void CheckValidatedSignature(const v1::Signature& signature, const TypeLimits& limits,
                             const char* what) {
  FUZZ_CHECK(static_cast<size_t>(signature.params_size()) <= limits.max_args, what,
             ": too many parameters passed");
  if (signature.has_result() && !IsVoid(signature.result())) {
    FUZZ_CHECK(signature.result().kind_case() != v1::Type::kArray, what, ": array result passed");
    CheckValidatedType(signature.result(), limits, what);
  }
  for (const v1::Type& param : signature.params()) {
    FUZZ_CHECK(!IsVoid(param), what, ": void parameter passed");
    CheckValidatedType(param, limits, what);
  }
}

void CheckName(absl::string_view name, size_t max_bytes, const char* what) {
  FUZZ_CHECK(!name.empty() && name.size() <= max_bytes && name.find('\0') == name.npos, what,
             ": a bad name passed");
}

void FuzzEnvironment(const v1::OpenSession& open, const std::vector<std::string>& allowed) {
  absl::Status status = ValidateEnvironment(open, allowed);
  CheckTypedError(status, {v1::INVALID_ARGUMENT}, "ValidateEnvironment");
  if (!status.ok()) return;
  FUZZ_CHECK(open.environment_size() <= kMaxEnvironmentVariables, "too many variables passed");
  FUZZ_CHECK(allowed.empty() ? open.environment().empty() : true,
             "a variable passed an empty allowlist");
  for (const auto& [name, value] : open.environment()) {
    FUZZ_CHECK(!name.empty() && name.size() <= 256, "variable name length");
    for (char c : name) {
      FUZZ_CHECK(
          (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_',
          "variable name character");
    }
    FUZZ_CHECK(!(name[0] >= '0' && name[0] <= '9'), "variable name starts with a digit");
    FUZZ_CHECK(value.size() <= kMaxEnvironmentValueBytes && value.find('\0') == value.npos,
               "variable value");
  }
}

void FuzzResolve(const v1::ResolveFunction& resolve, const TypeLimits& limits) {
  absl::Status status = ValidateResolveFunction(resolve, limits);
  CheckTypedError(status, kValidationCodes, "ValidateResolveFunction");
  if (!status.ok()) return;
  FUZZ_CHECK(resolve.library() == 0 || resolve.library_request() == 0,
             "a library named by handle and by request passed");
  if (resolve.has_address()) {
    FUZZ_CHECK(resolve.library() == 0 && resolve.library_request() == 0 &&
                   resolve.symbol().empty() && resolve.address().address() != 0,
               "resolve by address with a library, a symbol or NULL passed");
  } else {
    CheckName(resolve.symbol(), kMaxSymbolBytes, "ValidateResolveFunction");
  }
  CheckValidatedSignature(resolve.signature(), limits, "resolve_function.signature");
}

// The blocks a call sends, as the worker's reply to it must return and keep them.
ExpectedCallResult BlocksOf(const v1::Call& call) {
  ExpectedCallResult blocks;
  for (int i = 0; i < call.blocks_size(); ++i) {
    const v1::MemoryBlock& block = call.blocks(i);
    const uint64_t size = block.size() != 0 ? block.size() : block.data().size();
    blocks.block_sizes.push_back(size);
    blocks.returned_block_sizes.push_back(block.direction() == v1::IN ? PendingRequest::kNotReturned
                                                                      : size);
    if (block.keep()) blocks.kept_blocks.push_back(static_cast<uint32_t>(i));
  }
  return blocks;
}

// `signature` is the validated signature of the function the call names. Returns whether
// ValidateCallShape accepted the call.
bool FuzzCall(const v1::Call& call, const v1::Signature& signature, const TypeLimits& limits) {
  absl::Status status = ValidateCallShape(call, signature, limits);
  CheckTypedError(status, kValidationCodes, "ValidateCallShape");
  if (!status.ok()) return false;
  const size_t args = static_cast<size_t>(call.args_size());
  FUZZ_CHECK(args == static_cast<size_t>(signature.params_size() + call.variadic_types_size()),
             "a call with the wrong argument count passed");
  FUZZ_CHECK(args <= limits.max_args, "a call with too many arguments passed");
  FUZZ_CHECK(signature.variadic() || call.variadic_types_size() == 0,
             "variadic types for a fixed function passed");
  for (const v1::Type& type : call.variadic_types()) {
    FUZZ_CHECK(!IsVoid(type), "a void variadic argument passed");
    CheckValidatedType(type, limits, "call.variadic_types");
  }
  FUZZ_CHECK(static_cast<size_t>(call.blocks_size()) <= limits.max_blocks, "too many blocks");
  FUZZ_CHECK(static_cast<size_t>(call.release_size()) <= limits.max_blocks, "too many releases");

  const std::vector<uint64_t> sizes = BlockSizes(call);
  const std::vector<uint64_t> returned = ReturnedBlockSizes(call);
  const std::vector<uint32_t> kept = KeptBlocks(call);
  FUZZ_CHECK(sizes.size() == static_cast<size_t>(call.blocks_size()), "BlockSizes count");
  FUZZ_CHECK(returned.size() == sizes.size(), "ReturnedBlockSizes count");
  uint64_t total = 0;
  size_t relocations = 0;
  for (int i = 0; i < call.blocks_size(); ++i) {
    const v1::MemoryBlock& block = call.blocks(i);
    FUZZ_CHECK(v1::Direction_IsValid(block.direction()), "an unknown direction passed");
    FUZZ_CHECK(!(block.keep() && block.has_at()), "a kept block placed at an address passed");
    FUZZ_CHECK(!block.has_shared_offset(), "a block in a shared area passed off the channel");
    FUZZ_CHECK(sizes[i] >= block.data().size(), "block ", i, " holds more data than its size");
    FUZZ_CHECK(sizes[i] <= limits.max_block_bytes, "block ", i, " exceeds the byte limit");
    total += sizes[i];
    FUZZ_CHECK(total <= limits.max_block_bytes, "blocks exceed the byte limit");
    relocations += static_cast<size_t>(block.relocations_size());
    const uint64_t expected = block.direction() == v1::IN ? PendingRequest::kNotReturned : sizes[i];
    FUZZ_CHECK(returned[i] == expected, "block ", i, " returned size ", returned[i]);
  }
  FUZZ_CHECK(relocations <= limits.max_relocations, "too many relocations passed");
  for (size_t i = 0; i < kept.size(); ++i) {
    FUZZ_CHECK(kept[i] < sizes.size() && call.blocks(kept[i]).keep(), "KeptBlocks names ", kept[i]);
    FUZZ_CHECK(i == 0 || kept[i - 1] < kept[i], "KeptBlocks out of order");
  }
  const ExpectedCallResult blocks = BlocksOf(call);
  FUZZ_CHECK(sizes == blocks.block_sizes && returned == blocks.returned_block_sizes &&
                 kept == blocks.kept_blocks,
             "the sizes the broker derives differ from the call's blocks");
  return true;
}

// The session a batch is checked in: functions 1, 2 and 3 with `signature` (resolved by
// name, by address in the live worker generation, by address in a gone one), or none when
// the signature is invalid (a session never resolves a function with one).
constexpr uint64_t kNamedFunction = 1;
constexpr uint64_t kBoundFunction = 2;
constexpr uint64_t kStaleFunction = 3;
constexpr uint64_t kLiveGeneration = 3;
constexpr absl::Duration kDefaultTimeout = absl::Seconds(2);
constexpr absl::Duration kMaxTimeout = absl::Seconds(60);

void ResolveFunctions(const v1::Signature& signature, HandleTable* handles) {
  struct Resolved {
    uint64_t handle;
    const char* symbol;
    uint64_t generation;
  };
  const Resolved functions[] = {{kNamedFunction, "named", 0},
                                {kBoundFunction, "bound", kLiveGeneration},
                                {kStaleFunction, "stale", kLiveGeneration - 1}};
  for (const Resolved& resolved : functions) {
    HandleTable::Function function;
    function.library = resolved.generation == 0 ? 1 : 0;
    function.symbol = resolved.symbol;
    function.signature = signature;
    function.generation = resolved.generation;
    absl::StatusOr<uint64_t> handle = handles->AddFunction(std::move(function));
    FUZZ_CHECK(handle.ok() && *handle == resolved.handle, "resolving function ", resolved.symbol);
    handles->RecordOutcome(v1::Request::kResolveFunction, *handle, true);
  }
}

// The error a batch refusal must be, as far as the fuzzer knows it independently: `code`,
// and, for a refusal of one call, that call's index.
struct ExpectedRefusal {
  v1::ErrorCode code = v1::ERROR_CODE_UNSPECIFIED;  // unspecified: the batch passes
  bool names_call = false;
  uint32_t call = 0;
  std::string field;  // when not empty, the exact field
};

// What ValidateBatchShape must answer: an empty batch, too many calls, or the first call at
// which the blocks of the calls so far pass the byte limit.
ExpectedRefusal ExpectedShapeRefusal(const v1::Batch& batch, const TypeLimits& limits) {
  ExpectedRefusal refusal;
  if (batch.calls_size() == 0) {
    refusal.code = v1::INVALID_ARGUMENT;
    refusal.field = "batch.calls";
    return refusal;
  }
  if (static_cast<size_t>(batch.calls_size()) > limits.max_batch_calls) {
    refusal.code = v1::RESOURCE_EXHAUSTED;
    return refusal;
  }
  uint64_t total = 0;
  for (int i = 0; i < batch.calls_size(); ++i) {
    for (uint64_t size : BlocksOf(batch.calls(i)).block_sizes) {
      if (size > limits.max_block_bytes - total) {
        refusal.code = v1::RESOURCE_EXHAUSTED;
        refusal.names_call = true;
        refusal.call = static_cast<uint32_t>(i);
        return refusal;
      }
      total += size;
    }
  }
  return refusal;
}

// Checks that `status` is `expected`: its code, and the call it names (Error.batch_index,
// with the field and the message starting "batch.calls[i]") or that it names none.
void CheckBatchRefusal(const absl::Status& status, const ExpectedRefusal& expected,
                       const char* what) {
  const v1::Error error = ToProtoError(status);
  if (expected.code == v1::ERROR_CODE_UNSPECIFIED) {
    FUZZ_CHECK(status.ok(), what, ": refused a batch it should pass: ", status.ToString());
    return;
  }
  FUZZ_CHECK(!status.ok(), what, ": passed a batch it should refuse with ",
             v1::ErrorCode_Name(expected.code));
  FUZZ_CHECK(error.code() == expected.code, what, ": ", v1::ErrorCode_Name(error.code()), " where ",
             v1::ErrorCode_Name(expected.code), " was due: ", status.ToString());
  if (!expected.field.empty()) {
    FUZZ_CHECK(error.field() == expected.field, what, ": field ", error.field());
  }
  if (!expected.names_call) {
    FUZZ_CHECK(!error.has_batch_index(), what, ": a refusal of the whole batch names call ",
               error.batch_index());
    return;
  }
  FUZZ_CHECK(error.has_batch_index() && error.batch_index() == expected.call, what,
             ": the refusal of call ", expected.call, " names call ", error.batch_index(), ": ",
             status.ToString());
  const std::string prefix = absl::StrCat("batch.calls[", expected.call, "]");
  FUZZ_CHECK(absl::StartsWith(error.message(), prefix), what, ": message ", error.message());
  FUZZ_CHECK(error.field().empty() || absl::StartsWith(error.field(), prefix), what, ": field ",
             error.field());
}

// Codes ValidateBatchRequest may answer with: the validators', an unknown function, a
// function of a gone worker.
constexpr std::initializer_list<v1::ErrorCode> kBatchCodes = {
    v1::INVALID_ARGUMENT, v1::RESOURCE_EXHAUSTED, v1::UNIMPLEMENTED, v1::NOT_FOUND,
    v1::STALE_HANDLE};

// `pending`, as ValidateBatchRequest described the accepted `batch`: its calls count, the
// blocks of each call that sends some, its deadline, the worker generation it needs.
void CheckAcceptedBatch(const v1::Batch& batch, const PendingRequest& pending,
                        const v1::Signature& signature, const TypeLimits& limits) {
  FUZZ_CHECK(pending.batch_calls == static_cast<uint32_t>(batch.calls_size()), "batch_calls ",
             pending.batch_calls, " for ", batch.calls_size(), " calls");
  FUZZ_CHECK(
      absl::StartsWith(pending.label, absl::StrCat("batch of ", batch.calls_size(), " call")),
      "label ", pending.label);
  absl::Duration total = absl::ZeroDuration();
  bool bound = false;
  uint64_t bytes = 0;
  size_t listed = 0;  // entries of pending.batch_blocks checked so far
  for (int i = 0; i < batch.calls_size(); ++i) {
    const v1::Call& call = batch.calls(i);
    FUZZ_CHECK(call.function() == kNamedFunction || call.function() == kBoundFunction,
               "a batch calling function ", call.function(), " passed");
    bound = bound || call.function() == kBoundFunction;
    total += call.timeout_ms() != 0 ? absl::Milliseconds(call.timeout_ms()) : kDefaultTimeout;
    FUZZ_CHECK(FuzzCall(call, signature, limits), "call ", i,
               " of an accepted batch fails ValidateCallShape");
    const ExpectedCallResult blocks = BlocksOf(call);
    for (uint64_t size : blocks.block_sizes) bytes += size;
    if (call.blocks_size() == 0) continue;
    FUZZ_CHECK(listed < pending.batch_blocks.size() &&
                   pending.batch_blocks[listed].first == static_cast<uint32_t>(i),
               "call ", i, " sends blocks and is not next in batch_blocks");
    const ExpectedCallResult& described = pending.batch_blocks[listed].second;
    FUZZ_CHECK(described.block_sizes == blocks.block_sizes &&
                   described.returned_block_sizes == blocks.returned_block_sizes &&
                   described.kept_blocks == blocks.kept_blocks,
               "batch_blocks describes call ", i, " with other blocks than it sends");
    ++listed;
  }
  FUZZ_CHECK(listed == pending.batch_blocks.size(), "batch_blocks lists ",
             pending.batch_blocks.size(), " calls, ", listed, " send blocks");
  FUZZ_CHECK(bytes <= limits.max_block_bytes, "a batch of ", bytes, " block bytes passed");
  const absl::Duration timeout = batch.timeout_ms() != 0 ? absl::Milliseconds(batch.timeout_ms())
                                                         : std::min(total, kMaxTimeout);
  FUZZ_CHECK(pending.timeout == timeout, "deadline ", absl::FormatDuration(pending.timeout),
             ", expected ", absl::FormatDuration(timeout));
  FUZZ_CHECK(pending.required_generation == (bound ? kLiveGeneration : 0), "required generation ",
             pending.required_generation);
}

// `signature` is the input's signature, given to the session's functions when valid.
void FuzzBatch(const v1::Batch& batch, const v1::Signature& signature, bool signature_valid,
               const TypeLimits& limits) {
  absl::Status shape = ValidateBatchShape(batch, limits);
  CheckTypedError(shape, kValidationCodes, "ValidateBatchShape");
  const ExpectedRefusal shape_refusal = ExpectedShapeRefusal(batch, limits);
  CheckBatchRefusal(shape, shape_refusal, "ValidateBatchShape");

  HandleTable handles{HandleTable::Limits()};
  if (signature_valid) ResolveFunctions(signature, &handles);
  CallContext context;
  context.handles = &handles;
  context.live_generation = kLiveGeneration;
  context.default_timeout = kDefaultTimeout;
  context.max_timeout = kMaxTimeout;
  context.limits = &limits;
  PendingRequest pending;
  absl::Status status = ValidateBatchRequest(batch, context, &pending);
  CheckTypedError(status, kBatchCodes, "ValidateBatchRequest");

  // Refused for its shape, for its deadline, or for the first call refused alone.
  ExpectedRefusal refusal = shape_refusal;
  if (refusal.code == v1::ERROR_CODE_UNSPECIFIED &&
      absl::Milliseconds(batch.timeout_ms()) > kMaxTimeout) {
    refusal.code = v1::INVALID_ARGUMENT;
    refusal.field = "batch.timeout_ms";
  }
  for (int i = 0; refusal.code == v1::ERROR_CODE_UNSPECIFIED && i < batch.calls_size(); ++i) {
    PendingRequest single;
    absl::Status alone = ValidateCallRequest(batch.calls(i), context, &single);
    if (alone.ok()) continue;
    refusal.code = ErrorCodeOf(alone);
    refusal.names_call = true;
    refusal.call = static_cast<uint32_t>(i);
  }
  CheckBatchRefusal(status, refusal, "ValidateBatchRequest");
  if (status.ok()) CheckAcceptedBatch(batch, pending, signature, limits);
}

void FuzzLookup(const v1::LookupSymbol& lookup, const TypeLimits& limits) {
  absl::Status status = ValidateLookupSymbol(lookup, limits);
  CheckTypedError(status, kValidationCodes, "ValidateLookupSymbol");
  if (!status.ok()) return;
  CheckName(lookup.symbol(), kMaxSymbolBytes, "ValidateLookupSymbol");
  if (lookup.has_type()) {
    FUZZ_CHECK(!IsVoid(lookup.type()), "a void variable passed");
    CheckValidatedType(lookup.type(), limits, "lookup_symbol.type");
  }
}

void FuzzMemoryRequest(const v1::Request& request, const TypeLimits& limits) {
  absl::Status status = ValidateMemoryRequest(request, limits);
  CheckTypedError(status, kValidationCodes, "ValidateMemoryRequest");
  FUZZ_CHECK(!MemoryOperationName(request).empty(), "MemoryOperationName is empty");
  if (!status.ok()) return;
  switch (request.op_case()) {
    case v1::Request::kReadMemory: {
      const v1::ReadMemory& read = request.read_memory();
      FUZZ_CHECK(read.has_address(), "read_memory without an address passed");
      FUZZ_CHECK(read.unwatch_size() <= kMaxReadsPerList, "read_memory unwatching ",
                 read.unwatch_size(), " addresses passed");
      FUZZ_CHECK(!read.watch() || !read.has_type(), "a watched typed read passed");
      if (read.has_type()) {
        CheckValidatedType(read.type(), limits, "read_memory.type");
        // What the broker expects back (server/broker/session.cc).
        const uint64_t size = TypeSizeOf(read.type());
        FUZZ_CHECK(read.size() == 0 || read.size() == size, "typed read of the wrong size passed");
      }
      break;
    }
    case v1::Request::kReadMemoryList: {
      const auto& reads = request.read_memory_list().reads();
      FUZZ_CHECK(!reads.empty() && reads.size() <= kMaxReadsPerList, "a read_memory_list of ",
                 reads.size(), " reads passed");
      for (const v1::ReadMemory& read : reads) {
        FUZZ_CHECK(read.has_address(), "a listed read without an address passed");
        FUZZ_CHECK(read.unwatch_size() <= kMaxReadsPerList, "a listed read unwatching ",
                   read.unwatch_size(), " addresses passed");
        FUZZ_CHECK(!read.watch() || !read.has_type(), "a watched typed listed read passed");
        if (read.has_type()) {
          CheckValidatedType(read.type(), limits, "read_memory_list.reads[].type");
          const uint64_t size = TypeSizeOf(read.type());
          FUZZ_CHECK(read.size() == 0 || read.size() == size,
                     "a typed listed read of the wrong size passed");
        }
      }
      break;
    }
    case v1::Request::kWriteMemory: {
      const v1::WriteMemory& write = request.write_memory();
      FUZZ_CHECK(write.has_address(), "write_memory without an address passed");
      FUZZ_CHECK(write.has_type() == write.has_value(), "a type without a value, or the reverse");
      if (write.has_type()) {
        FUZZ_CHECK(write.data().empty(), "write_memory with data and a value passed");
        CheckValidatedType(write.type(), limits, "write_memory.type");
      }
      break;
    }
    case v1::Request::kFreeMemory:
      FUZZ_CHECK(request.free_memory().has_address(), "free_memory without an address passed");
      break;
    case v1::Request::kFillMemory:
      FUZZ_CHECK(request.fill_memory().has_address() && request.fill_memory().byte() <= 0xFF,
                 "a bad fill_memory passed");
      break;
    case v1::Request::kCopyMemory:
      FUZZ_CHECK(request.copy_memory().has_source() && request.copy_memory().has_destination(),
                 "copy_memory without both addresses passed");
      break;
    case v1::Request::kReadString:
      FUZZ_CHECK(request.read_string().has_address(), "read_string without an address passed");
      break;
    case v1::Request::kAllocMemory:
      break;
    default:
      FUZZ_CHECK(false, "ValidateMemoryRequest accepted operation ", request.op_case());
  }
}

void FuzzDefineCallback(const v1::DefineCallback& define, const TypeLimits& limits) {
  absl::Status status = ValidateDefineCallback(define, limits);
  CheckTypedError(status, kValidationCodes, "ValidateDefineCallback");
  if (!status.ok()) return;
  FUZZ_CHECK(!define.signature().variadic(), "a variadic callback passed");
  FUZZ_CHECK(define.buffer_bytes() <= kMaxCallbackBufferBytes, "buffer_bytes ",
             define.buffer_bytes(), " passed");
  CheckValidatedSignature(define.signature(), limits, "define_callback.signature");
}

// The pointees CheckCallbackInvoke would have reported for an invocation of a callback with
// `signature` that shipped those of the parameters selected by `mask`.
std::vector<std::pair<uint32_t, uint64_t>> ShippedFor(const v1::Signature& signature,
                                                      uint8_t mask) {
  std::vector<std::pair<uint32_t, uint64_t>> shipped;
  for (int i = 0; i < signature.params_size() && i < 5; ++i) {
    if (!(mask & (1 << i))) continue;
    const v1::Type& param = signature.params(i);
    const v1::Type* pointee = param.kind_case() == v1::Type::kPointer ? &param.pointer().pointee()
                              : param.kind_case() == v1::Type::kArray ? &param
                                                                      : nullptr;
    uint64_t size = 0;
    uint64_t alignment = 0;
    if (pointee != nullptr && ComputeSizeAndAlignment(*pointee, &size, &alignment).ok()) {
      shipped.emplace_back(static_cast<uint32_t>(i), size);
    }
  }
  return shipped;
}

// `signature` is the validated signature of a defined callback.
void FuzzCallbackReturn(const v1::CallbackReturn& answer, const v1::Signature& signature,
                        uint8_t mask) {
  const std::vector<std::pair<uint32_t, uint64_t>> shipped = ShippedFor(signature, mask);
  absl::Status status = ValidateCallbackReturn(answer, signature, shipped);
  CheckTypedError(status, {v1::INVALID_ARGUMENT}, "ValidateCallbackReturn");
  if (!status.ok()) return;
  const bool returns_void = !signature.has_result() || IsVoid(signature.result());
  if (answer.error().empty()) {
    FUZZ_CHECK(answer.has_result() != returns_void, "a result that does not fit void-ness passed");
    if (answer.has_result()) {
      FUZZ_CHECK(answer.result().kind_case() != v1::Value::KIND_NOT_SET, "an empty result passed");
      if (answer.result().kind_case() == v1::Value::kPointer) {
        FUZZ_CHECK(!answer.result().pointer().has_block(), "a block pointer result passed");
      }
    }
  }
  absl::flat_hash_set<uint32_t> seen;
  for (const v1::PointeeData& pointee : answer.pointees()) {
    FUZZ_CHECK(seen.insert(pointee.arg()).second, "a pointee written back twice passed");
    bool found = false;
    for (const auto& [arg, size] : shipped) {
      if (arg == pointee.arg()) {
        found = true;
        FUZZ_CHECK(pointee.data().size() == size, "a pointee of the wrong size passed");
      }
    }
    FUZZ_CHECK(found, "a pointee that was not shipped passed");
  }
}

void FuzzRequest(const uint8_t* data, size_t size) {
  fuzz::FramedInput input;
  v1::Signature signature;
  v1::Request request;
  if (!fuzz::SplitFramedInput(data, size, &input) || !signature.ParseFromString(input.first) ||
      !request.ParseFromString(input.second)) {
    return;
  }
  // What the broker works out from a large request's bytes before it parses it: for any
  // request protobuf parses, a count never less than what the parse takes.
  absl::StatusOr<uint64_t> parsed_bytes =
      ParsedBytesAtMost({absl::string_view(input.second)}, v1::Request::descriptor(), UINT64_MAX);
  FUZZ_CHECK(parsed_bytes.ok(), "the walk refused a request protobuf parses");
  FUZZ_CHECK(request.SpaceUsedLong() <= *parsed_bytes,
             "a request takes more once parsed than its walk counted");
  const uint8_t options = input.options;
  const TypeLimits limits = LimitsFor(options);

  // The signature stands for a function resolved, or a callback defined, earlier in the
  // session: only validated ones get that far.
  absl::Status signature_status = ValidateSignature(signature, limits, "signature");
  CheckTypedError(signature_status, kValidationCodes, "ValidateSignature");
  const bool signature_valid = signature_status.ok();
  if (signature_valid) CheckValidatedSignature(signature, limits, "signature");

  FuzzMemoryRequest(request, limits);
  switch (request.op_case()) {
    case v1::Request::kOpen:
      FuzzEnvironment(request.open(), EnvAllowFor(options));
      break;
    case v1::Request::kLoadLibrary: {
      absl::Status status = ValidateLoadLibrary(request.load_library());
      CheckTypedError(status, {v1::INVALID_ARGUMENT}, "ValidateLoadLibrary");
      if (status.ok()) CheckName(request.load_library().path(), kMaxPathBytes, "load_library");
      break;
    }
    case v1::Request::kResolveFunction:
      FuzzResolve(request.resolve_function(), limits);
      break;
    case v1::Request::kCall:
      if (signature_valid) FuzzCall(request.call(), signature, limits);
      break;
    case v1::Request::kBatch:
      FuzzBatch(request.batch(), signature, signature_valid, limits);
      break;
    case v1::Request::kGetLayout: {
      const v1::Type& type = request.get_layout().type();
      absl::Status status = ValidateType(type, limits, "get_layout.type");
      CheckTypedError(status, kValidationCodes, "ValidateType");
      if (status.ok()) CheckValidatedType(type, limits, "get_layout.type");
      break;
    }
    case v1::Request::kLookupSymbol:
      FuzzLookup(request.lookup_symbol(), limits);
      break;
    case v1::Request::kDefineCallback:
      FuzzDefineCallback(request.define_callback(), limits);
      break;
    case v1::Request::kCallbackReturn:
      if (signature_valid && !signature.variadic()) {
        FuzzCallbackReturn(request.callback_return(), signature, options >> 3);
      }
      break;
    default:
      break;
  }
}

}  // namespace
}  // namespace ffibox

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ffibox::FuzzRequest(data, size);
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  return ffibox::fuzz::MutateFramedInput(ffibox::v1::Signature::default_instance(),
                                         ffibox::v1::Request::default_instance(), data, size,
                                         max_size, seed);
}
