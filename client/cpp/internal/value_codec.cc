#include "client/cpp/internal/value_codec.h"

#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace ffibox {
namespace client_internal {

absl::Status WrongRawSize(size_t expected, size_t received) {
  return ErrorStatus(v1::INTERNAL, absl::StrCat("the server returned ", received,
                                                " raw bytes for an object of ", expected));
}

v1::RemoteAddress ToRemoteAddress(RemotePtr pointer) {
  v1::RemoteAddress address;
  address.set_address(pointer.address);
  address.set_generation(pointer.generation);
  return address;
}

absl::StatusOr<RemotePtr> DecodePointer(const v1::Value& value) {
  if (value.has_pointer()) {
    const v1::PointerValue& pointer = value.pointer();
    if (pointer.has_null()) return RemotePtr();
    if (pointer.has_remote()) {
      return RemotePtr(pointer.remote().address(), pointer.remote().generation());
    }
  }
  return UnexpectedValue(value, "a pointer (null or remote address)");
}

void EncodePointer(const RemotePtr& pointer, v1::Value* out) {
  if (pointer.is_null()) {
    out->mutable_pointer()->set_null(true);
    return;
  }
  *out->mutable_pointer()->mutable_remote() = ToRemoteAddress(pointer);
}

}  // namespace client_internal
}  // namespace ffibox
