// Client callbacks: native code in the worker calls a C++ function of this process.
//
// `Session::DefineCallback<Sig>(handler)` asks the server for a native function pointer with
// the C signature Sig (a libffi closure in the worker) and returns a `Callback<Sig>`: pass it
// as a function-pointer argument of a typed function (`Function<void(..., Callback<Sig>)>`),
// let the library store it, free it with `Free()`. When native code calls the pointer, the
// server sends a CallbackInvoke; the client runs `handler` on the session's callback thread
// with the decoded arguments and sends its result back (internal/callback_dispatcher.h).
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
// the invocation, reentrantly, to the depth the server allows. A Callback is a copyable
// handle; its id survives worker restarts (the server defines it again in the new worker),
// its address() is that of the worker generation that defined it.
#ifndef FFIBOX_CLIENT_CPP_CALLBACK_H_
#define FFIBOX_CLIENT_CPP_CALLBACK_H_

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "client/cpp/internal/arg_traits.h"
#include "client/cpp/internal/memory_ops.h"
#include "client/cpp/internal/result_traits.h"
#include "client/cpp/internal/session_stream.h"
#include "client/cpp/internal/signature.h"
#include "client/cpp/internal/type_traits.h"
#include "client/cpp/internal/value_codec.h"
#include "client/cpp/records.h"
#include "client/cpp/values.h"
#include "core/errors.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {
template <typename A, typename Enable>
struct CallbackArgTraits;
}  // namespace client_internal

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

namespace client_internal {

// What a callback's argument decoder can reach: the invoke, the memory (for reentrant reads)
// and the answer being built (pointee write-backs are added after the handler returned).
struct CallbackDecodeContext {
  MemoryOps& memory;
  const v1::CallbackInvoke& invoke;
  std::vector<std::function<void(v1::CallbackReturn*)>> write_backs;
};

template <typename A, typename Enable = void>
struct CallbackArgTraits {
  static_assert(kAlwaysFalse<A>,
                "ffibox: unsupported callback parameter type; see client/cpp/callback.h");
};

template <typename A>
struct CallbackArgTraits<A, std::enable_if_t<kIsScalar<A>>> {
  using Param = A;
  static absl::StatusOr<A> Decode(int, const v1::Value& value, CallbackDecodeContext&) {
    return DecodeScalar<A>(value);
  }
};

struct PointerCallbackArg {
  using Param = RemotePtr;
  static absl::StatusOr<RemotePtr> Decode(int, const v1::Value& value, CallbackDecodeContext&) {
    return DecodePointer(value);
  }
};
template <>
struct CallbackArgTraits<void*> : PointerCallbackArg {};
template <>
struct CallbackArgTraits<const void*> : PointerCallbackArg {};
template <>
struct CallbackArgTraits<RemotePtr> : PointerCallbackArg {};

struct CStringCallbackArg {
  using Param = std::optional<std::string>;
  static absl::StatusOr<Param> Decode(int, const v1::Value& value, CallbackDecodeContext& context) {
    return DecodeCString(value, context.memory.StringReader());
  }
};
template <>
struct CallbackArgTraits<const char*> : CStringCallbackArg {};
template <>
struct CallbackArgTraits<char*> : CStringCallbackArg {};

// T* with T a scalar (not a character: those are strings), a record or a std::array.
template <typename T>
struct CallbackArgTraits<T*,
                         std::enable_if_t<(kIsScalar<std::remove_const_t<T>> && !kIsCharacter<T>) ||
                                          kIsBlockObject<T>>> {
  using Param = Pointee<T>;
  using Object = std::remove_const_t<T>;
  static absl::StatusOr<Param> Decode(int index, const v1::Value& value,
                                      CallbackDecodeContext& context) {
    absl::StatusOr<RemotePtr> address = PointerCallbackArg::Decode(index, value, context);
    if (!address.ok()) return address.status();
    Pointee<T> pointee;
    pointee.address_ = *address;
    for (const v1::PointeeData& data : context.invoke.pointees()) {
      if (data.arg() != static_cast<uint32_t>(index)) continue;
      absl::StatusOr<Object> object = ObjectFromRaw<Object>(data.data());
      if (!object.ok()) return object.status();
      pointee.state_ = std::make_shared<typename Pointee<T>::State>();
      pointee.state_->value = *object;
      auto state = pointee.state_;
      context.write_backs.push_back([state, index](v1::CallbackReturn* answer) {
        if (!state->changed) return;
        v1::PointeeData* written = answer->add_pointees();
        written->set_arg(static_cast<uint32_t>(index));
        written->set_data(RawBytesOf(state->value));
      });
    }
    return pointee;
  }
};

// A described record by value.
template <typename T>
struct CallbackArgTraits<T, std::enable_if_t<kIsRecord<T>>> {
  using Param = T;
  static absl::StatusOr<T> Decode(int, const v1::Value& value, CallbackDecodeContext&) {
    return DecodeValueOf<T>(value);
  }
};

// How a handler's result becomes CallbackReturn.result.
template <typename R, typename Enable = void>
struct CallbackResultTraits {
  using Value = typename ResultTraits<R>::Value;
  static void Encode(const Value& value, v1::Value* out) { EncodeValueOf<Value>(value, out); }
};
template <>
struct CallbackResultTraits<void> {
  using Value = void;
};
struct PointerCallbackResult {
  using Value = RemotePtr;
  static void Encode(const RemotePtr& value, v1::Value* out) { EncodePointer(value, out); }
};
template <>
struct CallbackResultTraits<void*> : PointerCallbackResult {};
template <>
struct CallbackResultTraits<const void*> : PointerCallbackResult {};
template <>
struct CallbackResultTraits<RemotePtr> : PointerCallbackResult {};

}  // namespace client_internal

template <typename Signature>
class Callback;

template <typename R, typename... A>
class Callback<R(A...)> {
 public:
  using Value = typename client_internal::CallbackResultTraits<R>::Value;
  // What a handler returns: its result, or an error that native code sees as zero.
  using Result = std::conditional_t<std::is_void_v<Value>, absl::Status, absl::StatusOr<Value>>;
  // The client function native code calls.
  using Handler = std::function<Result(typename client_internal::CallbackArgTraits<A>::Param...)>;

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
    absl::StatusOr<v1::Response> response = stream->Send(std::move(request));
    if (!response.ok()) return response.status();
    if (!response->has_callback()) {
      return ErrorStatus(v1::INTERNAL, "the server answered DefineCallback without a callback");
    }
    const v1::RemoteAddress& address = response->callback().address();
    Callback callback(stream, response->callback().callback(),
                      RemotePtr(address.address(), address.generation()));
    // Weak: the stream holds this handler, and the memory operations hold the stream.
    std::weak_ptr<client_internal::MemoryOps> weak_memory = memory;
    stream->callbacks().Register(
        callback.id(), [handler = std::move(handler), weak_memory](const v1::Response& message) {
          return Run(handler, weak_memory.lock(), message);
        });
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

  using Args = std::tuple<typename client_internal::CallbackArgTraits<A>::Param...>;

  template <size_t... I>
  static absl::Status DecodeArgs(client_internal::CallbackDecodeContext& context, Args& args,
                                 std::index_sequence<I...>) {
    absl::Status status;
    (void)((status = DecodeOne<I, A>(context, std::get<I>(args))).ok() && ...);
    return status;
  }

  template <size_t I, typename Arg>
  static absl::Status DecodeOne(client_internal::CallbackDecodeContext& context,
                                typename client_internal::CallbackArgTraits<Arg>::Param& out) {
    auto decoded = client_internal::CallbackArgTraits<Arg>::Decode(
        static_cast<int>(I), context.invoke.args(static_cast<int>(I)), context);
    if (!decoded.ok()) {
      return PrefixField(decoded.status(), absl::StrCat("callback_invoke.args[", I, "]"));
    }
    out = *std::move(decoded);
    return absl::OkStatus();
  }

  // Decodes the arguments, runs the handler and builds the answer.
  static v1::CallbackReturn Run(const Handler& handler,
                                std::shared_ptr<client_internal::MemoryOps> memory,
                                const v1::Response& message) {
    const v1::CallbackInvoke& invoke = message.callback_invoke();
    v1::CallbackReturn answer;
    if (memory == nullptr) {
      answer.set_error("the ffibox session of this callback is closed");
      return answer;
    }
    if (invoke.args_size() != static_cast<int>(sizeof...(A))) {
      answer.set_error(absl::StrCat("the invoke carries ", invoke.args_size(),
                                    " arguments; the callback takes ", sizeof...(A)));
      return answer;
    }
    client_internal::CallbackDecodeContext context{*memory, invoke, {}};
    Args args;
    absl::Status decoded = DecodeArgs(context, args, std::index_sequence_for<A...>{});
    if (!decoded.ok()) {
      answer.set_error(decoded.ToString());
      return answer;
    }
    Result result = std::apply(handler, std::move(args));
    if constexpr (std::is_void_v<Value>) {
      if (!result.ok()) {
        answer.set_error(result.ToString());
        return answer;
      }
    } else {
      if (!result.ok()) {
        answer.set_error(result.status().ToString());
        return answer;
      }
      client_internal::CallbackResultTraits<R>::Encode(*result, answer.mutable_result());
    }
    for (const auto& write_back : context.write_backs) write_back(&answer);
    return answer;
  }

  std::shared_ptr<client_internal::SessionStream> stream_;
  uint64_t id_ = 0;
  RemotePtr address_;
};

namespace client_internal {

// A callback passed where the C signature has a function pointer: PointerValue.callback.
template <typename Sig>
struct ArgTraits<Callback<Sig>> {
  using Param = const Callback<Sig>&;
  static v1::Type Type() {
    v1::Type type;
    *type.mutable_function() = Callback<Sig>::Signature();
    return type;
  }
  static absl::Status Append(Param callback, CallBuilder& builder) {
    builder.AddArg()->mutable_pointer()->set_callback(callback.id());
    return absl::OkStatus();
  }
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_CALLBACK_H_
