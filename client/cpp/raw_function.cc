#include "client/cpp/raw_function.h"

#include <cmath>
#include <limits>
#include <utility>

#include "core/errors.h"

namespace ffibox {

uint32_t TimeoutMillis(absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) return 0;
  const double millis = std::ceil(absl::ToDoubleMilliseconds(timeout));
  if (millis >= static_cast<double>(std::numeric_limits<uint32_t>::max())) {
    return std::numeric_limits<uint32_t>::max();
  }
  return static_cast<uint32_t>(millis);
}

RawFunction::RawFunction(std::shared_ptr<client_internal::SessionStream> stream,
                         std::shared_ptr<client_internal::MemoryOps> memory, uint64_t handle,
                         std::string symbol, v1::Signature signature, RemotePtr address)
    : stream_(std::move(stream)),
      memory_(std::move(memory)),
      handle_(handle),
      symbol_(std::move(symbol)),
      signature_(std::move(signature)),
      address_(address) {}

void RawFunction::PrepareCall(v1::Call& call, const CallOptions& options) const {
  call.set_function(handle_);
  if (options.timeout > absl::ZeroDuration()) call.set_timeout_ms(TimeoutMillis(options.timeout));
  if (options.set_errno.has_value()) call.set_set_errno(*options.set_errno);
}

absl::StatusOr<v1::CallResult> RawFunction::Call(v1::Call call, const CallOptions& options,
                                                 client_internal::BorrowedBlocks borrowed) const {
  PrepareCall(call, options);
  v1::Request request;
  *request.mutable_call() = std::move(call);
  absl::StatusOr<v1::Response> response =
      stream_->SendExpecting(std::move(request), v1::Response::kCall, borrowed);
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_call());
}

}  // namespace ffibox
