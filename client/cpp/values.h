// Client-side values of the ffibox C++ client: remote pointers, memory buffers, call options.
//
// These are the plain types a caller passes to and gets back from typed functions
// (`typed_function.h`): a `RemotePtr` names an address inside the session's worker, a
// `Buffer` is client memory shipped with one call as a MemoryBlock, `CallOptions` tune one
// call, and `WithErrno<T>` carries a result together with the worker's errno.
#ifndef FFIBOX_CLIENT_CPP_VALUES_H_
#define FFIBOX_CLIENT_CPP_VALUES_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// An address in the worker's address space, valid only for the worker generation that
// produced it. The client never dereferences it; pass it back to calls or memory operations.
struct RemotePtr {
  uint64_t address = 0;
  uint64_t generation = 0;

  RemotePtr() = default;
  // NULL, so that `nullptr` can be passed wherever a RemotePtr is expected.
  RemotePtr(std::nullptr_t) {}  // NOLINT(google-explicit-constructor)
  RemotePtr(uint64_t address, uint64_t generation) : address(address), generation(generation) {}

  // Whether this is NULL.
  bool is_null() const { return address == 0; }
  // The pointer `bytes` further on, in the same generation.
  RemotePtr Offset(int64_t bytes) const {
    return RemotePtr(address + static_cast<uint64_t>(bytes), generation);
  }

  friend bool operator==(const RemotePtr& a, const RemotePtr& b) {
    return a.address == b.address && a.generation == b.generation;
  }
  friend bool operator!=(const RemotePtr& a, const RemotePtr& b) { return !(a == b); }
};

// Client memory passed to a pointer parameter (declare the parameter as `ffibox::Buffer&` or
// `ffibox::Buffer*`). IN bytes are copied to the worker before the call; after the call the
// worker's copy of an OUT or INOUT buffer replaces `data` (same size).
struct Buffer {
  std::string data;
  v1::Direction direction = v1::INOUT;

  // A buffer the native code only reads.
  static Buffer In(std::string bytes) { return Buffer{std::move(bytes), v1::IN}; }
  // A zero-filled buffer of `size` bytes that the native code writes.
  static Buffer Out(size_t size) { return Buffer{std::string(size, '\0'), v1::OUT}; }
  // A buffer the native code reads and writes.
  static Buffer InOut(std::string bytes) { return Buffer{std::move(bytes), v1::INOUT}; }
};

// Options for one call; the defaults are those of the session.
struct CallOptions {
  // Deadline of this call; zero uses the session's default. Enforced by the server, which
  // kills the worker when it passes (the call then fails with CALL_TIMEOUT).
  absl::Duration timeout = absl::ZeroDuration();
  // errno to set in the worker right before the call (ctypes' use_errno swap-in).
  std::optional<int> set_errno;
};

// A call's result together with the worker's errno right after the call.
template <typename T>
struct WithErrno {
  T value;
  int error_number = 0;
};

template <>
struct WithErrno<void> {
  int error_number = 0;
};

}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_VALUES_H_
