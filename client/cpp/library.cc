#include "client/cpp/library.h"

#include "core/errors.h"

namespace ffibox {

Library::Library(std::shared_ptr<client_internal::SessionStream> stream,
                 std::shared_ptr<client_internal::MemoryOps> memory, uint64_t handle,
                 std::string path)
    : stream_(std::move(stream)),
      memory_(std::move(memory)),
      handle_(handle),
      path_(std::move(path)) {}

absl::StatusOr<RawFunction> Library::Resolve(const std::string& symbol,
                                             const v1::Signature& signature) const {
  v1::Request request;
  v1::ResolveFunction* resolve = request.mutable_resolve_function();
  resolve->set_library(handle_);
  resolve->set_symbol(symbol);
  *resolve->mutable_signature() = signature;
  absl::StatusOr<v1::Response> response =
      stream_->SendExpecting(std::move(request), v1::Response::kFunction);
  if (!response.ok()) return response.status();
  const v1::FunctionResolved& resolved = response->function();
  return RawFunction(stream_, memory_, resolved.function(), symbol, signature,
                     RemotePtr(resolved.address().address(), resolved.address().generation()));
}

absl::StatusOr<RemotePtr> Library::SymbolAddress(const std::string& symbol) const {
  absl::StatusOr<v1::SymbolFound> found = Lookup(symbol, nullptr);
  if (!found.ok()) return found.status();
  return RemotePtr(found->address().address(), found->address().generation());
}

absl::StatusOr<v1::SymbolFound> Library::Lookup(const std::string& symbol,
                                                const v1::Type* type) const {
  v1::Request request;
  v1::LookupSymbol* lookup = request.mutable_lookup_symbol();
  lookup->set_library(handle_);
  lookup->set_symbol(symbol);
  if (type != nullptr) *lookup->mutable_type() = *type;
  absl::StatusOr<v1::Response> response =
      stream_->SendExpecting(std::move(request), v1::Response::kSymbol);
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_symbol());
}

}  // namespace ffibox
