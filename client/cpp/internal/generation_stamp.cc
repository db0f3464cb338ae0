#include "client/cpp/internal/generation_stamp.h"

#include <cstdint>

namespace ffibox {
namespace client_internal {
namespace {

void StampAddress(uint64_t generation, v1::RemoteAddress* address) {
  if (address->generation() == 0) address->set_generation(generation);
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
  for (v1::KeptBlock& kept : *result->mutable_kept()) {
    if (kept.has_address()) StampAddress(generation, kept.mutable_address());
  }
}

}  // namespace

void StampGeneration(v1::Response* response) {
  const uint64_t generation = response->generation();
  if (generation == 0) return;
  switch (response->result_case()) {
    case v1::Response::kFunction:
      if (response->function().has_address()) {
        StampAddress(generation, response->mutable_function()->mutable_address());
      }
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
      if (response->allocated().has_address()) {
        StampAddress(generation, response->mutable_allocated()->mutable_address());
      }
      break;
    case v1::Response::kSymbol:
      if (response->symbol().has_address()) {
        StampAddress(generation, response->mutable_symbol()->mutable_address());
      }
      if (response->symbol().has_value()) {
        StampValue(generation, response->mutable_symbol()->mutable_value());
      }
      break;
    case v1::Response::kCallback:
      if (response->callback().has_address()) {
        StampAddress(generation, response->mutable_callback()->mutable_address());
      }
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
