// Fuzzes a whole call as it crosses ffibox: the broker's checks of the call
// (core/call_shape.h), the worker's execution of it (core/call.h: signature,
// libffi types, argument marshalling, memory blocks and their relocations, lasting blocks in
// server/worker/memory_requests.h, the copy back of blocks with the pointers found in them), and
// the broker's checks of the worker's reply (server/broker/worker_reply.h).
//
// Input (fuzz/framed_input.h), as request_validation_fuzzer's: one options byte (bit 0: small
// TypeLimits, for broker and worker alike), a little-endian uint16 length n, n bytes of a
// serialized v1::Signature, then a serialized v1::Request whose `call` is run against a native
// function with that signature that does nothing (so any argument is harmless to it). Lasting
// memory is real, but its addresses cannot be in the input: a MemoryBlock.at or Call.release
// address k below kPreparedBlocks names the k-th block allocated before the call.
//
// Checks that the worker answers every call with a result or a typed error, and that the
// reply of a worker that ran a call the broker forwarded passes the broker's checks of
// worker replies (an honest worker is never taken for a hostile one), and that a call of
// scalars run from its arguments' bits (PreparedFunction::InvokeScalar, the same-host
// channel's way) gives what Invoke gives.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/call.h"
#include "core/errors.h"
#include "core/scalar_wire.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"
#include "fuzz/framed_input.h"
#include "fuzz/fuzz_checks.h"
#include "fuzz/proto_mutator.h"
#include "server/broker/pending_request.h"
#include "server/broker/request_validation.h"
#include "server/broker/worker_reply.h"
#include "server/worker/memory_requests.h"

// The native functions called: they ignore their arguments, which is safe for any argument
// list on x86-64 System V (the caller owns the stack), and return zero. FuzzReturnZero clears
// every register a result other than long double comes back in (rax, rdx, xmm0, xmm1), so a
// record returned in two registers is zero in both halves, not what an earlier call left in
// the second (a record returned in memory is left as the caller's zeroed slot is).
extern "C" void FuzzReturnZero();
asm(R"(
  .pushsection .text
  .globl FuzzReturnZero
  .type FuzzReturnZero, @function
FuzzReturnZero:
  xorl %eax, %eax
  xorl %edx, %edx
  xorps %xmm0, %xmm0
  xorps %xmm1, %xmm1
  ret
  .size FuzzReturnZero, .-FuzzReturnZero
  .popsection
)");
extern "C" long double FuzzReturnLongDoubleZero() { return 0; }

namespace ffibox {
namespace {

using fuzz::CheckTypedError;

constexpr uint64_t kGeneration = 3;
constexpr uint64_t kPreparedBlocks = 4;  // lasting blocks of 8, 16, 32 and 64 bytes

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

// Whether a value of `type` holds a long double (not behind a pointer).
bool HoldsLongDouble(const v1::Type& type, int depth = 0) {
  if (depth > 64) return true;
  switch (type.kind_case()) {
    case v1::Type::kScalar:
      return type.scalar() == v1::LONGDOUBLE;
    case v1::Type::kArray:
      return HoldsLongDouble(type.array().element(), depth + 1);
    case v1::Type::kRecord:
      for (const v1::Field& field : type.record().fields()) {
        if (HoldsLongDouble(field.type(), depth + 1)) return true;
      }
      return false;
    default:
      return false;
  }
}

// The function to call: long double results come back on the x87 stack, which a function
// returning `long` would leave unbalanced.
void* FunctionFor(const v1::Signature& signature) {
  if (signature.has_result() && signature.result().kind_case() == v1::Type::kScalar &&
      signature.result().scalar() == v1::LONGDOUBLE) {
    return reinterpret_cast<void*>(&FuzzReturnLongDoubleZero);
  }
  return reinterpret_cast<void*>(&FuzzReturnZero);
}

// Rewrites the lasting addresses of `call` that name prepared blocks to their addresses.
void PlaceLastingAddresses(const std::vector<uint64_t>& prepared, v1::Call* call) {
  auto translate = [&](v1::RemoteAddress* address) {
    if (address->address() < prepared.size()) {
      address->set_address(prepared[address->address()]);
    }
  };
  for (v1::MemoryBlock& block : *call->mutable_blocks()) {
    if (block.has_at()) translate(block.mutable_at());
  }
  for (v1::RemoteAddress& address : *call->mutable_release()) translate(&address);
}

// A call of scalars alone (no blocks, releases, variadic types or errno), run from its
// arguments' bits as the worker runs it from the same-host channel, gives what Invoke gave
// (`invoked`), or is declined where Invoke refused it (or the function is variadic: the
// general path runs those).
void CheckScalarInvoke(const PreparedFunction& function, const v1::Call& call,
                       const absl::StatusOr<v1::CallResult>& invoked, LastingMemory* memory) {
  if (call.blocks_size() > 0 || call.release_size() > 0 || call.variadic_types_size() > 0 ||
      call.capture_errno() || call.has_set_errno() || call.function_request() != 0) {
    return;
  }
  std::vector<ScalarBits> args;
  for (const v1::Value& arg : call.args()) {
    const std::optional<ScalarBits> bits = ScalarBitsOfValue(arg);
    if (!bits.has_value()) return;
    args.push_back(*bits);
  }
  v1::CallResult result;
  const std::optional<absl::Status> ran =
      function.InvokeScalar(args, kGeneration, /*callbacks=*/nullptr, memory, &result);
  if (!ran.has_value()) {
    FUZZ_CHECK(!invoked.ok() || function.signature().variadic(),
               "InvokeScalar declined a call Invoke ran: ", call.ShortDebugString());
    return;
  }
  FUZZ_CHECK(ran->ok() == invoked.ok(), "InvokeScalar: ", ran->ToString(),
             "; Invoke: ", invoked.status().ToString(), "\ncall: ", call.ShortDebugString());
  if (!ran->ok()) return;
  FUZZ_CHECK(result.SerializeAsString() == invoked->SerializeAsString(), "InvokeScalar gave ",
             result.ShortDebugString(), ", Invoke ", invoked->ShortDebugString(),
             "\ncall: ", call.ShortDebugString());
}

void FuzzCall(uint8_t options, const v1::Signature& signature, const v1::Call& sent) {
  const TypeLimits limits = LimitsFor(options);
  // The broker only forwards calls of functions whose signature it validated; the worker
  // checks the signature again when it prepares the function.
  absl::Status signature_status = ValidateSignature(signature, limits, "signature");
  if (!signature_status.ok() ||
      (signature.has_result() && signature.result().kind_case() == v1::Type::kRecord &&
       HoldsLongDouble(signature.result()))) {
    return;
  }
  absl::StatusOr<std::unique_ptr<PreparedFunction>> function =
      PreparedFunction::Create(FunctionFor(signature), signature, limits);
  if (!function.ok()) {
    CheckTypedError(function.status(), {v1::INVALID_ARGUMENT, v1::UNIMPLEMENTED},
                    "PreparedFunction::Create");
    return;
  }

  absl::Status shape = ValidateCallShape(sent, signature, limits);
  CheckTypedError(shape, {v1::INVALID_ARGUMENT, v1::RESOURCE_EXHAUSTED, v1::UNIMPLEMENTED},
                  "ValidateCallShape");

  MemoryRequests memory(kGeneration);
  std::vector<uint64_t> prepared;
  for (uint64_t i = 0; i < kPreparedBlocks; ++i) {
    absl::StatusOr<uint64_t> address = memory.AllocateLasting(uint64_t{8} << i);
    FUZZ_CHECK(address.ok(), "AllocateLasting: ", address.status().ToString());
    prepared.push_back(*address);
  }
  v1::Call call = sent;
  PlaceLastingAddresses(prepared, &call);

  absl::StatusOr<v1::CallResult> result =
      (*function)->Invoke(call, kGeneration, /*callbacks=*/nullptr, &memory);
  CheckScalarInvoke(**function, call, result, &memory);
  if (!result.ok()) {
    CheckTypedError(
        result.status(),
        {v1::INVALID_ARGUMENT, v1::STALE_HANDLE, v1::MEMORY_FAULT, v1::RESOURCE_EXHAUSTED,
         v1::NOT_FOUND, v1::FAILED_PRECONDITION, v1::UNIMPLEMENTED},
        "Invoke");
    return;
  }
  if (!shape.ok()) return;  // the broker would not have sent it

  // What the broker expects back (server/broker/session.cc), and the worker's honest reply.
  PendingRequest pending;
  pending.sequence = 17;
  pending.client_id = 5;
  pending.op = v1::Request::kCall;
  pending.call = ExpectedResultOf(call);
  v1::Response reply;
  reply.set_id(pending.sequence);
  *reply.mutable_call() = *std::move(result);
  absl::StatusOr<v1::Response> checked = CheckWorkerResponse(reply, pending);
  FUZZ_CHECK(checked.ok(),
             "the broker refuses an honest worker's reply: ", checked.status().ToString(),
             "\nreply: ", reply.ShortDebugString());
}

void FuzzInput(const uint8_t* data, size_t size) {
  fuzz::FramedInput input;
  v1::Signature signature;
  v1::Request request;
  if (!fuzz::SplitFramedInput(data, size, &input) || !signature.ParseFromString(input.first) ||
      !request.ParseFromString(input.second) || !request.has_call()) {
    return;
  }
  FuzzCall(input.options, signature, request.call());
}

}  // namespace
}  // namespace ffibox

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ffibox::FuzzInput(data, size);
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  return ffibox::fuzz::MutateFramedInput(ffibox::v1::Signature::default_instance(),
                                         ffibox::v1::Request::default_instance(), data, size,
                                         max_size, seed);
}
