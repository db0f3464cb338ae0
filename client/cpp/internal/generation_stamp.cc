#include "client/cpp/internal/generation_stamp.h"

#include <cstdint>

namespace ffibox {
namespace client_internal {
namespace {

void StampAddress(uint64_t generation, v1::RemoteAddress* address) {
  if (address->generation() == 0) address->set_generation(generation);
}

// Stamps `result`'s `address` field when it has one.
template <typename Result>
void StampAddressOf(uint64_t generation, Result* result) {
  if (result->has_address()) StampAddress(generation, result->mutable_address());
}

void StampValue(uint64_t generation, v1::Value* value) {
  if (value->has_pointer() && value->pointer().has_remote()) {
    StampAddress(generation, value->mutable_pointer()->mutable_remote());
  } else if (value->has_aggregate()) {
    for (v1::Value& element : *value->mutable_aggregate()->mutable_elements()) {
      StampValue(generation, &element);
    }
  }
}

void StampCallResult(uint64_t generation, v1::CallResult* result) {
  if (result->has_result()) StampValue(generation, result->mutable_result());
  for (v1::KeptBlock& kept : *result->mutable_kept()) StampAddressOf(generation, &kept);
}

}  // namespace

void StampGeneration(v1::Response* response) {
  const uint64_t generation = response->generation();
  if (generation == 0) return;
  switch (response->result_case()) {
    case v1::Response::kFunction:
      StampAddressOf(generation, response->mutable_function());
      break;
    case v1::Response::kCall:
      StampCallResult(generation, response->mutable_call());
      break;
    case v1::Response::kBatch:
      for (v1::CallResult& result : *response->mutable_batch()->mutable_results()) {
        StampCallResult(generation, &result);
      }
      break;
    case v1::Response::kMemory:
      if (response->memory().has_value()) {
        StampValue(generation, response->mutable_memory()->mutable_value());
      }
      break;
    case v1::Response::kAllocated:
      StampAddressOf(generation, response->mutable_allocated());
      break;
    case v1::Response::kSymbol:
      StampAddressOf(generation, response->mutable_symbol());
      if (response->symbol().has_value()) {
        StampValue(generation, response->mutable_symbol()->mutable_value());
      }
      break;
    case v1::Response::kCallback:
      StampAddressOf(generation, response->mutable_callback());
      break;
    case v1::Response::kCallbackInvoke:
      for (v1::Value& arg : *response->mutable_callback_invoke()->mutable_args()) {
        StampValue(generation, &arg);
      }
      break;
    default:  // no worker addresses in the other results
      break;
  }
}

}  // namespace client_internal
}  // namespace ffibox
