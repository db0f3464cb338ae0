// A native library loaded into a client session's worker: resolve functions and variables.
//
// Returned by `Session::Load` (or `Session::LoadAsync`, which does not wait for the load's
// answer). `Function<Sig>(symbol)` gives a typed callable; `Resolve(symbol, signature)` an
// untyped one; `FunctionAsync` and `ResolveAsync` the same without waiting for the resolve's
// answer. The handle stays valid across worker restarts (the server reloads the library) and
// fails cleanly once the session is closed. Copyable and thread-safe.
//
// Pipelining: requests that use a library or function whose answer has not come name it by
// the id of the request that makes it (docs/protocol.md, "Pipelined requests"), so
//   Library libm = session->LoadAsync("libm.so.6");
//   auto cos = libm.FunctionAsync<double(double)>("cos");
//   absl::StatusOr<double> one = (*cos)(0.0);
// sends the load, the resolve and the call back to back and waits once. A failure is
// reported by the first request that waits: the call above returns the load's
// LIBRARY_LOAD_FAILED, or the resolve's SYMBOL_NOT_FOUND.
#ifndef FFIBOX_CLIENT_CPP_LIBRARY_H_
#define FFIBOX_CLIENT_CPP_LIBRARY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "client/cpp/internal/layout_verifier.h"
#include "client/cpp/internal/memory_ops.h"
#include "client/cpp/internal/pending_handle.h"
#include "client/cpp/internal/result_traits.h"
#include "client/cpp/internal/session_stream.h"
#include "client/cpp/internal/signature.h"
#include "client/cpp/internal/type_traits.h"
#include "client/cpp/raw_function.h"
#include "client/cpp/records.h"
#include "client/cpp/typed_function.h"
#include "client/cpp/values.h"
#include "core/status_macros.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

class Library {
 public:
  // Wraps the library handle `handle`, answered or awaited, of the library loaded from
  // `path`; Session::Load and Session::LoadAsync do this.
  Library(std::shared_ptr<client_internal::SessionStream> stream,
          std::shared_ptr<client_internal::MemoryOps> memory,
          std::shared_ptr<const client_internal::PendingHandle> handle, std::string path);

  // Resolves `symbol` as a function of C++ type Sig, e.g. `Function<double(double)>("cos")`;
  // returns SYMBOL_NOT_FOUND if the library does not export it. For a library from
  // LoadAsync whose load failed, this and every request below return the load's failure.
  template <typename Sig>
  absl::StatusOr<TypedFunction<Sig>> Function(const std::string& symbol) const {
    if (absl::Status checked = TypedFunction<Sig>::VerifyLayouts(*memory_); !checked.ok()) {
      return checked;
    }
    absl::StatusOr<RawFunction> raw = Resolve(symbol, TypedFunction<Sig>::Signature());
    if (!raw.ok()) return raw.status();
    return TypedFunction<Sig>(*std::move(raw));
  }

  // Like Function without waiting for the resolve's answer: its failure (SYMBOL_NOT_FOUND, or
  // this library's load failure) is returned by the first call, or by raw().Wait(). A
  // signature with records checks their layouts first (FAILED_PRECONDITION when one differs
  // from the worker's); those queries wait behind a pending load.
  template <typename Sig>
  absl::StatusOr<TypedFunction<Sig>> FunctionAsync(const std::string& symbol) const {
    if (absl::Status checked = TypedFunction<Sig>::VerifyLayouts(*memory_); !checked.ok()) {
      return checked;
    }
    return TypedFunction<Sig>(ResolveAsync(symbol, TypedFunction<Sig>::Signature()));
  }

  // Resolves `symbol` with a signature built at run time; SYMBOL_NOT_FOUND if it is not
  // exported, INVALID_ARGUMENT if the server refuses the signature.
  absl::StatusOr<RawFunction> Resolve(const std::string& symbol,
                                      const v1::Signature& signature) const;
  // Resolve without waiting for the answer (see FunctionAsync).
  RawFunction ResolveAsync(const std::string& symbol, const v1::Signature& signature) const;

  // Returns the address of the exported symbol `symbol` in the current worker.
  absl::StatusOr<RemotePtr> SymbolAddress(const std::string& symbol) const;

  // Reads the exported variable `symbol` as a T (a scalar, a described record, RemotePtr for
  // void*, or a string type for char* / wchar_t* variables; for an array variable, a
  // std::array of scalars or described records: of a void* array, `std::array<uintptr_t, N>`
  // reads its addresses, which are not RemotePtrs); SYMBOL_NOT_FOUND if it is not exported,
  // FAILED_PRECONDITION if a record's layout differs from the worker's.
  template <typename T>
  absl::StatusOr<typename client_internal::VariableValue<T>::type> Variable(
      const std::string& symbol) const {
    if constexpr (client_internal::IsStdArray<T>::value) {
      static_assert(IsLayoutCompatible<T>(), "Variable takes arrays of scalars and records");
      // Checked before the lookup too, so that a mismatch is reported whatever the symbol.
      FFIBOX_RETURN_IF_ERROR(client_internal::VerifyLayout<T>(*memory_));
      FFIBOX_ASSIGN_OR_RETURN(v1::SymbolFound found, Lookup(symbol, nullptr));
      return memory_->Read<T>(found.address());
    } else {
      using Traits = client_internal::ResultTraits<T>;
      FFIBOX_RETURN_IF_ERROR(client_internal::VerifyTraits<Traits>(*memory_));
      const v1::Type type = Traits::Type();
      FFIBOX_ASSIGN_OR_RETURN(v1::SymbolFound found, Lookup(symbol, &type));
      return Traits::Decode(found.value(), memory_->StringReader());
    }
  }

  // Writes `value` into the exported variable `symbol` (T: a scalar, a described record or
  // an array of those); SYMBOL_NOT_FOUND if it is not exported, MEMORY_FAULT if the variable
  // is read-only.
  template <typename T>
  absl::Status SetVariable(const std::string& symbol, const T& value) const {
    static_assert(IsLayoutCompatible<T>(), "SetVariable takes scalars, records and arrays");
    // Checked before the lookup too, so that a mismatch is reported whatever the symbol.
    FFIBOX_RETURN_IF_ERROR(client_internal::VerifyLayout<T>(*memory_));
    FFIBOX_ASSIGN_OR_RETURN(v1::SymbolFound found, Lookup(symbol, nullptr));
    return memory_->Write<T>(found.address(), value);
  }

  // Waits for the load's answer (at once for a library from Load): OK, or its failure
  // (LIBRARY_NOT_ALLOWED, LIBRARY_LOAD_FAILED, ...).
  absl::Status Wait() const { return handle_->Wait().status(); }
  // The server's library handle. For a library from LoadAsync this waits for the load's
  // answer, without a deadline, and is 0 if the load failed (Wait says why).
  uint64_t handle() const { return handle_->handle(); }
  // The path the library was loaded from.
  const std::string& path() const { return path_; }

 private:
  // Sends LookupSymbol (with `type` when not null).
  absl::StatusOr<v1::SymbolFound> Lookup(const std::string& symbol, const v1::Type* type) const;
  // A ResolveFunction request for `symbol` as `signature`, naming this library.
  v1::Request ResolveRequest(const std::string& symbol, const v1::Signature& signature) const;

  std::shared_ptr<client_internal::SessionStream> stream_;
  std::shared_ptr<client_internal::MemoryOps> memory_;
  std::shared_ptr<const client_internal::PendingHandle> handle_;
  std::string path_;
};

}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_LIBRARY_H_
