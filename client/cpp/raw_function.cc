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

namespace {

// A call's deadline below zero (0 is the session's): refused, never taken for the default.
absl::Status NegativeTimeout(absl::Duration timeout) {
  return ErrorStatus(
      v1::INVALID_ARGUMENT,
      absl::StrCat("a call's timeout must not be negative, not ", absl::FormatDuration(timeout)));
}

// The answer Resolve got for a function at `address`, kept as a resolve's answer is.
v1::Response ResolvedAnswer(uint64_t handle, RemotePtr address) {
  v1::Response answer;
  answer.mutable_function()->set_function(handle);
  answer.mutable_function()->mutable_address()->set_address(address.address);
  answer.mutable_function()->mutable_address()->set_generation(address.generation);
  return answer;
}

}  // namespace

RawFunction::RawFunction(std::shared_ptr<client_internal::SessionStream> stream,
                         std::shared_ptr<client_internal::MemoryOps> memory, uint64_t handle,
                         std::string symbol, v1::Signature signature, RemotePtr address)
    : RawFunction(std::move(stream), std::move(memory),
                  client_internal::PendingHandle::Answered(ResolvedAnswer(handle, address)),
                  std::move(symbol), std::move(signature)) {}

RawFunction::RawFunction(std::shared_ptr<client_internal::SessionStream> stream,
                         std::shared_ptr<client_internal::MemoryOps> memory,
                         std::shared_ptr<const client_internal::PendingHandle> handle,
                         std::string symbol, v1::Signature signature)
    : stream_(std::move(stream)),
      memory_(std::move(memory)),
      handle_(std::move(handle)),
      symbol_(std::move(symbol)),
      signature_(std::move(signature)) {}

absl::Status RawFunction::Wait() const { return handle_->Wait().status(); }

RemotePtr RawFunction::address() const {
  const absl::StatusOr<v1::Response> answer = handle_->Wait();
  if (!answer.ok()) return RemotePtr();
  const v1::RemoteAddress& address = answer->function().address();
  return RemotePtr(address.address(), address.generation());
}

void RawFunction::PrepareCall(v1::Call& call, const CallOptions& options) const {
  // A call naming its resolve request goes through the broker (SessionStream::Exchange).
  handle_->Current().Apply(&call, &v1::Call::set_function, &v1::Call::set_function_request);
  if (options.timeout > absl::ZeroDuration()) call.set_timeout_ms(TimeoutMillis(options.timeout));
  if (options.set_errno.has_value()) call.set_set_errno(*options.set_errno);
}

absl::StatusOr<v1::CallResult> RawFunction::Call(v1::Call call, const CallOptions& options,
                                                 client_internal::BorrowedBlocks borrowed) const {
  if (options.timeout < absl::ZeroDuration()) return NegativeTimeout(options.timeout);
  PrepareCall(call, options);
  if (handle_->Current().failed()) return handle_->Wait().status();  // nothing to call
  v1::Request request;
  *request.mutable_call() = std::move(call);
  absl::StatusOr<v1::Response> response =
      stream_->SendExpecting(std::move(request), v1::Response::kCall, borrowed);
  if (!response.ok()) return handle_->Explain(response.status());
  return std::move(*response->mutable_call());
}

std::optional<absl::StatusOr<RawFunction::ScalarResult>> RawFunction::CallScalar(
    absl::Span<const client_internal::ScalarBits> args, const CallOptions& options) const {
  if (options.set_errno.has_value() || signature_.variadic()) return std::nullopt;
  if (options.timeout < absl::ZeroDuration()) return NegativeTimeout(options.timeout);
  const client_internal::PendingHandle::Name name = handle_->Current();
  // A resolve not answered yet is named by its request, which only the broker knows.
  if (name.handle == 0) return std::nullopt;
  const client_internal::ScalarCall call{name.handle, TimeoutMillis(options.timeout), args};
  std::optional<absl::StatusOr<client_internal::LocalPath::ScalarAnswer>> answer =
      stream_->CallScalarLocally(call);
  if (!answer.has_value()) return std::nullopt;
  if (!answer->ok()) return handle_->Explain(answer->status());
  ScalarResult result;
  if ((*answer)->read()) {
    result.scalar = (*answer)->result;
    return result;
  }
  // Any other answer: what Call makes of it.
  absl::StatusOr<v1::Response> response = client_internal::SessionStream::Expect(
      v1::Request::kCall, *std::move((*answer)->response), v1::Response::kCall);
  if (!response.ok()) return handle_->Explain(response.status());
  result.result.emplace(std::move(*response->mutable_call()));
  return result;
}

}  // namespace ffibox
