// Fuzzes the broker's checks of untrusted client requests (server/broker/request_validation.h) and
// the type checks they rest on (core/types.h).
//
// Input (fuzz/framed_input.h): one options byte, a little-endian uint16 length n, n bytes of
// a serialized v1::Signature (the function a Call names, or the callback a CallbackReturn
// answers), then a serialized v1::Request. Options: bit 0 selects small TypeLimits (so every limit
// is reachable) instead of the server's defaults, bits 1-2 the server's env_allow list, bits 3-7
// which pointer parameters of the signature had pointees shipped with the invocation.
//
// Checks that every validator that applies returns OK or a typed error a client can act on
// (a known code, a message, the offending field), and that what passes keeps the promises
// the broker and the worker rely on next: a validated type has a layout within the limits,
// a validated call has exactly its arguments and its blocks add up within the limits, and
// the sizes the broker derives from a request match it.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "core/errors.h"
#include "core/layout.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"
#include "fuzz/framed_input.h"
#include "fuzz/fuzz_checks.h"
#include "fuzz/proto_mutator.h"
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
  if (resolve.has_address()) {
    FUZZ_CHECK(
        resolve.library() == 0 && resolve.symbol().empty() && resolve.address().address() != 0,
        "resolve by address with a library, a symbol or NULL passed");
  } else {
    CheckName(resolve.symbol(), kMaxSymbolBytes, "ValidateResolveFunction");
  }
  CheckValidatedSignature(resolve.signature(), limits, "resolve_function.signature");
}

// `signature` is the validated signature of the function the call names.
void FuzzCall(const v1::Call& call, const v1::Signature& signature, const TypeLimits& limits) {
  absl::Status status = ValidateCallShape(call, signature, limits);
  CheckTypedError(status, kValidationCodes, "ValidateCallShape");
  if (!status.ok()) return;
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
      if (read.has_type()) {
        CheckValidatedType(read.type(), limits, "read_memory.type");
        // What the broker expects back (server/broker/session.cc).
        const uint64_t size = TypeSizeOf(read.type());
        FUZZ_CHECK(read.size() == 0 || read.size() == size, "typed read of the wrong size passed");
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
