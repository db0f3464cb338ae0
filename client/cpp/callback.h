// Client callbacks: native code in the worker calls a C++ function of this process.
//
// `Session::DefineCallback<Sig>(handler)` asks the server for a native function pointer with
// the C signature Sig (a libffi closure in the worker) and returns a `Callback<Sig>`: pass it
// as a function-pointer argument of a typed function (`Function<void(..., Callback<Sig>)>`),
// let the library store it, free it with `Free()`. When native code calls the pointer, the
// server sends a CallbackInvoke; the client runs `handler` with the decoded arguments and
// sends its result back (internal/callback_dispatcher.h). As in ctypes, a callback that
// native code calls during a call, on the thread running it, runs on the thread that made
// the call, nested ones too, when that thread is the one reading the session's stream for
// its answer, as it is unless another thread of this session is reading: another call in
// flight, an async request (SendAsync, ...Async) awaited, or a handler of the call that has
// run for 20 ms making no request. Otherwise, and for callbacks that threads of the library
// call, it runs on the session's callback thread, one at a time. A handler may therefore
// run on either, and two of one session at once. A handler on the calling thread that
// blocks holds that thread past the call's deadline (the call then fails with CALL_TIMEOUT
// once the handler returns); one on the callback thread does not. On a same-host session
// (SessionOptions::same_host), the callbacks of a call on the channel come there instead,
// and always run on the calling thread.
//
// Parameter types of Sig and what the handler receives:
//   scalars (int, double, ...)         -> the value
//   void* / const void* / RemotePtr     -> RemotePtr (read it with Session::Read / ReadMemory:
//                                          reentrant requests are allowed inside a handler)
//   T* / const T* (T a scalar, a described record or std::array)
//                                       -> Pointee<T>: the address, plus the pointee's bytes,
//                                          which the worker ships with the invoke; `set()`
//                                          writes a new value back before native code resumes
//   const char* / char*                 -> std::optional<std::string> (nullopt for NULL)
//   a described record by value         -> the record
// The handler returns absl::StatusOr<R> (absl::Status for void; RemotePtr for pointer
// results). An error status is the callback "raising": native code receives zero (as in
// ctypes), the message goes back in CallbackReturn.error, and the server reports it in a
// CALLBACK_ERROR session event (Session::TakeEvents).
//
// Inside a handler, every request of the same session (calls, memory operations) runs inside
// the invocation, reentrantly, to the depth the server allows. In a handler that runs on the
// same-host channel, calls, memory reads and writes (Read, Write, ReadMemory, WriteMemory,
// ReadCString, ReadWString) and layout checks go on the channel, each waiting for its answer;
// loads, look-ups, callback definitions and frees, allocations and memory fills and copies go
// through the server, naming the invocation, when it takes them (LocalChannelOpened's
// channel_invocations; the worker's thread that waits on the channel for the handler runs
// them). The rest (batches, calls sent asynchronously) is refused with FAILED_PRECONDITION,
// since the worker's thread that would run it waits for the handler. A
// Callback is a copyable handle; its id survives worker restarts (the server defines it again in
// the new worker), its address() is that of the worker generation that defined it.
#ifndef FFIBOX_CLIENT_CPP_CALLBACK_H_
#define FFIBOX_CLIENT_CPP_CALLBACK_H_

#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cpp/internal/callback_invocation.h"
#include "client/cpp/internal/memory_ops.h"
#include "client/cpp/internal/session_stream.h"
#include "client/cpp/internal/signature.h"
#include "client/cpp/records.h"
#include "client/cpp/values.h"
#include "core/errors.h"
#include "core/status_macros.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// The object behind a `T*` callback argument. When the worker shipped the pointee with the
// invoke (`has_value()`), it can be read, and, for non-const T, replaced with `set`.
template <typename T>
class Pointee {
 public:
  using Object = std::remove_const_t<T>;

  Pointee() = default;

  // The pointer native code passed (in the worker's address space).
  RemotePtr address() const { return address_; }
  // Whether native code passed NULL.
  bool is_null() const { return address_.is_null(); }
  // Whether the pointee's bytes came with the invoke.
  bool has_value() const { return state_ != nullptr; }
  // The pointee as native code passed it. Requires has_value().
  const Object& value() const { return state_->value; }
  const Object& operator*() const { return value(); }
  const Object* operator->() const { return &value(); }

  // Replaces the pointee; the new bytes are written to native memory before native code
  // resumes. Requires has_value(); not available for const T.
  void set(const Object& value) {
    static_assert(!std::is_const_v<T>, "a const T* pointee cannot be written");
    state_->value = value;
    state_->changed = true;
  }

 private:
  template <typename A, typename Enable>
  friend struct client_internal::CallbackArgTraits;

  struct State {
    Object value;
    bool changed = false;
  };

  RemotePtr address_;
  std::shared_ptr<State> state_;
};

template <typename Signature>
class Callback;

template <typename R, typename... A>
class Callback<R(A...)> {
  using Invocation = client_internal::CallbackInvocation<R(A...)>;

 public:
  using Value = typename Invocation::Value;
  // What a handler returns: its result, or an error that native code sees as zero.
  using Result = typename Invocation::Result;
  // The client function native code calls.
  using Handler = typename Invocation::Handler;

  // The protocol signature of R(A...).
  static v1::Signature Signature() { return client_internal::SignatureOf<R, A...>(); }

  // Defines the callback on `stream` (Session::DefineCallback calls this): checks record
  // layouts, sends DefineCallback and registers `handler` under the returned id; `memory`
  // serves the reads its arguments need. RESOURCE_EXHAUSTED beyond the server's callback
  // limit.
  static absl::StatusOr<Callback> Define(std::shared_ptr<client_internal::SessionStream> stream,
                                         std::shared_ptr<client_internal::MemoryOps> memory,
                                         Handler handler) {
    if (absl::Status checked = client_internal::VerifyLayouts<R, A...>(*memory); !checked.ok()) {
      return checked;
    }
    v1::Request request;
    *request.mutable_define_callback()->mutable_signature() = Signature();
    FFIBOX_ASSIGN_OR_RETURN(v1::Response response, stream->Send(std::move(request)));
    if (!response.has_callback()) {
      return ErrorStatus(v1::INTERNAL, "the server answered DefineCallback without a callback");
    }
    const v1::CallbackDefined& defined = response.callback();
    Callback callback(stream, defined.callback(),
                      RemotePtr(defined.address().address(), defined.address().generation()));
    // One handler for both ways its invocations come (a handler may keep state).
    auto shared = std::make_shared<Handler>(std::move(handler));
    Handler forward = [shared](auto&&... args) {
      return (*shared)(std::forward<decltype(args)>(args)...);
    };
    stream->callbacks().Register(callback.id(), Invocation::Bind(forward, memory), Signature(),
                                 Invocation::BindScalar(forward, memory));
    return callback;
  }

  // The server's callback id (what a PointerValue.callback names).
  uint64_t id() const { return id_; }
  // The native function pointer in the worker generation that defined the callback.
  RemotePtr address() const { return address_; }

  // Frees the callback in the worker and forgets its handler; native code that calls it
  // later gets zero and the session a CALLBACK_ERROR event. NOT_FOUND if already freed.
  absl::Status Free() const {
    v1::Request request;
    request.mutable_free_callback()->set_callback(id_);
    absl::StatusOr<v1::Response> response = stream_->Send(std::move(request));
    stream_->callbacks().Unregister(id_);
    return response.status();
  }

 private:
  Callback(std::shared_ptr<client_internal::SessionStream> stream, uint64_t id, RemotePtr address)
      : stream_(std::move(stream)), id_(id), address_(address) {}

  std::shared_ptr<client_internal::SessionStream> stream_;
  uint64_t id_ = 0;
  RemotePtr address_;
};

}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_CALLBACK_H_
