#include "client/cpp/library.h"

#include <future>
#include <utility>

#include "core/errors.h"
#include "core/status_macros.h"
#include "core/utf8.h"

namespace ffibox {

Library::Library(std::shared_ptr<client_internal::SessionStream> stream,
                 std::shared_ptr<client_internal::MemoryOps> memory,
                 std::shared_ptr<const client_internal::PendingHandle> handle, std::string path)
    : stream_(std::move(stream)),
      memory_(std::move(memory)),
      handle_(std::move(handle)),
      path_(std::move(path)) {}

v1::Request Library::ResolveRequest(const std::string& symbol,
                                    const v1::Signature& signature) const {
  v1::Request request;
  v1::ResolveFunction* resolve = request.mutable_resolve_function();
  handle_->Current().Apply(resolve, &v1::ResolveFunction::set_library,
                           &v1::ResolveFunction::set_library_request);
  resolve->set_symbol(symbol);
  *resolve->mutable_signature() = signature;
  return request;
}

absl::StatusOr<RawFunction> Library::Resolve(const std::string& symbol,
                                             const v1::Signature& signature) const {
  // Text that is not UTF-8 would end the session's stream.
  FFIBOX_RETURN_IF_ERROR(CheckUtf8("resolve_function.symbol", symbol));
  absl::StatusOr<v1::Response> response =
      stream_->SendExpecting(ResolveRequest(symbol, signature), v1::Response::kFunction);
  if (!response.ok()) return handle_->Explain(response.status());
  const v1::FunctionResolved& resolved = response->function();
  return RawFunction(stream_, memory_, resolved.function(), symbol, signature,
                     RemotePtr(resolved.address().address(), resolved.address().generation()));
}

RawFunction Library::ResolveAsync(const std::string& symbol, const v1::Signature& signature) const {
  v1::Request request = ResolveRequest(symbol, signature);
  absl::Status text = CheckUtf8("resolve_function.symbol", symbol);
  std::future<absl::StatusOr<v1::Response>> answer =
      text.ok() ? stream_->SendAsync(&request) : client_internal::RefusedAnswer(std::move(text));
  // A resolve that fails because the load failed reports the load's failure.
  return RawFunction(
      stream_, memory_,
      client_internal::PendingHandle::Awaiting(request.id(), v1::Request::kResolveFunction,
                                               v1::Response::kFunction, std::move(answer), handle_),
      symbol, signature);
}

absl::StatusOr<RemotePtr> Library::SymbolAddress(const std::string& symbol) const {
  absl::StatusOr<v1::SymbolFound> found = Lookup(symbol, nullptr);
  if (!found.ok()) return found.status();
  return RemotePtr(found->address().address(), found->address().generation());
}

absl::StatusOr<v1::SymbolFound> Library::Lookup(const std::string& symbol,
                                                const v1::Type* type) const {
  FFIBOX_RETURN_IF_ERROR(CheckUtf8("lookup_symbol.symbol", symbol));
  v1::Request request;
  v1::LookupSymbol* lookup = request.mutable_lookup_symbol();
  handle_->Current().Apply(lookup, &v1::LookupSymbol::set_library,
                           &v1::LookupSymbol::set_library_request);
  lookup->set_symbol(symbol);
  if (type != nullptr) *lookup->mutable_type() = *type;
  absl::StatusOr<v1::Response> response =
      stream_->SendExpecting(std::move(request), v1::Response::kSymbol);
  if (!response.ok()) return handle_->Explain(response.status());
  return std::move(*response->mutable_symbol());
}

}  // namespace ffibox
