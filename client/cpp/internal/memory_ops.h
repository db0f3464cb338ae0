// The typed requests on one client session's worker memory, and the record-layout checks
// that come before them.
//
// `ReadString`, `ReadTyped`, `WriteTyped` and `WorkerLayout` send one request each on the
// session's stream and check that the answer carries the expected result. `Read<T>` and
// `Write<T>` add the C++ side: the protocol Type of T, a check of T's records against the
// worker's layout, and the value codec. MemoryOps is also the session's LayoutVerifier
// (layout_verifier.h): a record type's layout is asked of the worker once, and the types that
// matched are kept in a LayoutCache.
//
// One per session, shared by Session, Library, RawFunction and the session's callbacks.
// Thread-safe.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_MEMORY_OPS_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_MEMORY_OPS_H_

#include <memory>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cpp/internal/layout_cache.h"
#include "client/cpp/internal/layout_verifier.h"
#include "client/cpp/internal/scalar_codec.h"
#include "client/cpp/internal/session_stream.h"
#include "client/cpp/internal/value_codec.h"
#include "client/cpp/records.h"
#include "client/cpp/values.h"
#include "core/status_macros.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

class MemoryOps final : public LayoutVerifier {
 public:
  // Sends its requests on `stream`.
  explicit MemoryOps(std::shared_ptr<SessionStream> stream);

  // Reads the NUL-terminated char (or, `wide`, wchar_t) string at `address` (ReadString). A
  // wide string the server refuses to send as text (a unit that is no Unicode scalar value,
  // such as a lone surrogate) is read raw instead (ReadMemory, a page at a time): its units
  // come in `data`, little-endian (WideText of result_traits.h reads either form).
  absl::StatusOr<v1::StringData> ReadString(const v1::RemoteAddress& address, bool wide);
  // A RemoteStringReader (result_traits.h) that reads with ReadString; valid while this is.
  auto StringReader() {
    return
        [this](const v1::RemoteAddress& address, bool wide) { return ReadString(address, wide); };
  }

  // Reads the value of type `type` at `address` (ReadMemory with a type).
  absl::StatusOr<v1::Value> ReadTyped(const v1::RemoteAddress& address, const v1::Type& type);
  // Writes `value` as type `type` at `address` (WriteMemory with a type).
  absl::Status WriteTyped(const v1::RemoteAddress& address, const v1::Type& type,
                          const v1::Value& value);

  // Reads the worker's T at `address`: T is a scalar, a described record, an array of those,
  // or RemotePtr (a pointer stored there). FAILED_PRECONDITION if a record's layout differs
  // from the worker's; the request's error otherwise.
  template <typename T>
  absl::StatusOr<T> Read(const v1::RemoteAddress& address);
  // Stores `value` as the worker's T at `address` (T as for Read).
  template <typename T>
  absl::Status Write(const v1::RemoteAddress& address, const T& value);

  // LayoutVerifier: GetLayout, and the record types already checked in this session.
  absl::StatusOr<v1::LayoutResult> WorkerLayout(const v1::Type& type) override;
  bool IsLayoutVerified(const void* key) override;
  void MarkLayoutVerified(const void* key) override;

 private:
  // The wchar_t units at `address` up to their NUL, raw (ReadString's fallback).
  absl::StatusOr<std::string> ReadWideUnits(const v1::RemoteAddress& address);

  const std::shared_ptr<SessionStream> stream_;
  LayoutCache layouts_;
};

template <typename T>
absl::StatusOr<T> MemoryOps::Read(const v1::RemoteAddress& address) {
  if constexpr (std::is_same_v<T, RemotePtr>) {
    FFIBOX_ASSIGN_OR_RETURN(v1::Value value, ReadTyped(address, ScalarType(v1::POINTER)));
    return DecodePointer(value);
  } else {
    FFIBOX_RETURN_IF_ERROR(VerifyLayout<T>(*this));
    FFIBOX_ASSIGN_OR_RETURN(v1::Value value, ReadTyped(address, TypeOf<T>()));
    return DecodeValueOf<T>(value);
  }
}

template <typename T>
absl::Status MemoryOps::Write(const v1::RemoteAddress& address, const T& value) {
  v1::Value encoded;
  if constexpr (std::is_same_v<T, RemotePtr>) {
    EncodePointer(value, &encoded);
    return WriteTyped(address, ScalarType(v1::POINTER), encoded);
  } else {
    FFIBOX_RETURN_IF_ERROR(VerifyLayout<T>(*this));
    EncodeValueOf<T>(value, &encoded);
    return WriteTyped(address, TypeOf<T>(), encoded);
  }
}

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_MEMORY_OPS_H_
