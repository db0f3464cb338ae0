// How a client callback's invocation is answered (callback.h): the CallbackInvoke's arguments
// decoded to the handler's C++ parameter types (`CallbackArgTraits`: scalars, RemotePtr,
// optional strings, Pointee<T> for T*, records), the handler run, its result encoded
// (`CallbackResultTraits`) and the pointees it changed written back. Arguments come from the
// worker and are checked like any value the server sends. Also how a Callback is passed to a
// typed function (`ArgTraits<Callback<Sig>>`).
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_CALLBACK_INVOCATION_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_CALLBACK_INVOCATION_H_

#include <cstddef>
#include <cstdint>
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
#include "absl/types/span.h"
#include "client/cpp/internal/arg_traits.h"
#include "client/cpp/internal/call_builder.h"
#include "client/cpp/internal/callback_dispatcher.h"
#include "client/cpp/internal/memory_ops.h"
#include "client/cpp/internal/result_traits.h"
#include "client/cpp/internal/scalar_call.h"
#include "client/cpp/internal/scalar_codec.h"
#include "client/cpp/internal/type_traits.h"
#include "client/cpp/internal/value_codec.h"
#include "client/cpp/records.h"
#include "client/cpp/values.h"
#include "core/errors.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// Defined in callback.h.
template <typename T>
class Pointee;
template <typename Signature>
class Callback;

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

template <typename Signature>
class CallbackInvocation;

// Answers the invocations of a callback with C++ signature R(A...).
template <typename R, typename... A>
class CallbackInvocation<R(A...)> {
 public:
  using Value = typename CallbackResultTraits<R>::Value;
  // What a handler returns: its result, or an error that native code sees as zero.
  using Result = std::conditional_t<std::is_void_v<Value>, absl::Status, absl::StatusOr<Value>>;
  // The client function native code calls.
  using Handler = std::function<Result(typename CallbackArgTraits<A>::Param...)>;

  // The dispatcher's handler for `handler`: decodes, runs and answers each invocation, with
  // `memory` for the reads its arguments need. Holds `memory` weakly (the stream holds the
  // dispatcher's handlers, and the memory operations hold the stream); once it is gone the
  // invocation is answered with an error.
  static CallbackDispatcher::Handler Bind(Handler handler, std::weak_ptr<MemoryOps> memory) {
    return [handler = std::move(handler), memory = std::move(memory)](const v1::Response& message) {
      std::shared_ptr<MemoryOps> live = memory.lock();
      if (live == nullptr) {
        v1::CallbackReturn answer;
        answer.set_error("the ffibox session of this callback is closed");
        return answer;
      }
      return Answer(handler, *live, message);
    };
  }

  // Whether this callback's invocations may come as scalar invocations (core/scalar_wire.h):
  // every parameter a scalar (not a pointer or a string), the result a scalar or void.
  static constexpr bool kScalar =
      (kIsScalar<A> && ...) && (std::is_void_v<Value> || kIsScalar<Value>);

  // The dispatcher's scalar handler for `handler` (CallbackDispatcher::ScalarHandler), which
  // answers what Bind's answers for the same invocation as a message; null unless kScalar.
  static CallbackDispatcher::ScalarHandler BindScalar(Handler handler,
                                                      std::weak_ptr<MemoryOps> memory) {
    if constexpr (!kScalar) {
      return nullptr;
    } else {
      return [handler = std::move(handler),
              memory = std::move(memory)](absl::Span<const ScalarBits> bits) {
        ScalarReturn answer;
        // Held while the handler runs, as Bind's handler holds it.
        const std::shared_ptr<MemoryOps> live = memory.lock();
        if (live == nullptr) {
          answer.error = "the ffibox session of this callback is closed";
          return answer;
        }
        if (bits.size() != sizeof...(A)) {
          answer.error = absl::StrCat("the invoke carries ", bits.size(),
                                      " arguments; the callback takes ", sizeof...(A));
          return answer;
        }
        Args args;
        absl::Status decoded = DecodeScalarArgs(bits, args, std::index_sequence_for<A...>{});
        if (!decoded.ok()) {
          answer.error = decoded.ToString();
          return answer;
        }
        Result result = std::apply(handler, std::move(args));
        if constexpr (std::is_void_v<Value>) {
          if (!result.ok()) answer.error = result.ToString();
        } else if (!result.ok()) {
          answer.error = result.status().ToString();
        } else {
          answer.result = ScalarBitsOf(*result);  // what CallbackResultTraits encodes
        }
        return answer;
      };
    }
  }

  // Decodes the arguments of `message` (a Response carrying a CallbackInvoke), runs `handler`
  // and builds the answer: its result and pointee write-backs, or `error` when the invoke does
  // not fit the signature or the handler failed.
  static v1::CallbackReturn Answer(const Handler& handler, MemoryOps& memory,
                                   const v1::Response& message) {
    const v1::CallbackInvoke& invoke = message.callback_invoke();
    v1::CallbackReturn answer;
    if (invoke.args_size() != static_cast<int>(sizeof...(A))) {
      answer.set_error(absl::StrCat("the invoke carries ", invoke.args_size(),
                                    " arguments; the callback takes ", sizeof...(A)));
      return answer;
    }
    CallbackDecodeContext context{memory, invoke, {}};
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
      CallbackResultTraits<R>::Encode(*result, answer.mutable_result());
    }
    for (const auto& write_back : context.write_backs) write_back(&answer);
    return answer;
  }

 private:
  using Args = std::tuple<typename CallbackArgTraits<A>::Param...>;

  // Decodes every argument into `args`; stops at the first failure.
  template <size_t... I>
  static absl::Status DecodeArgs(CallbackDecodeContext& context, Args& args,
                                 std::index_sequence<I...>) {
    absl::Status status;
    (void)((status = DecodeOne<I, A>(context, std::get<I>(args))).ok() && ...);
    return status;
  }

  // Decodes every argument of a scalar invocation into `args`, as DecodeArgs decodes them
  // from their Values; stops at the first failure.
  template <size_t... I>
  static absl::Status DecodeScalarArgs(absl::Span<const ScalarBits> bits, Args& args,
                                       std::index_sequence<I...>) {
    absl::Status status;
    (void)((status = DecodeScalarOne<I, A>(bits[I], std::get<I>(args))).ok() && ...);
    return status;
  }

  template <size_t I, typename Arg>
  static absl::Status DecodeScalarOne(const ScalarBits& bits, Arg& out) {
    v1::Value value;
    SetScalarBits(bits, &value);
    absl::StatusOr<Arg> decoded = DecodeScalar<Arg>(value);
    if (!decoded.ok()) {
      return PrefixField(decoded.status(), absl::StrCat("callback_invoke.args[", I, "]"));
    }
    out = *decoded;
    return absl::OkStatus();
  }

  // Decodes argument I of type Arg; an error names "callback_invoke.args[I]".
  template <size_t I, typename Arg>
  static absl::Status DecodeOne(CallbackDecodeContext& context,
                                typename CallbackArgTraits<Arg>::Param& out) {
    auto decoded = CallbackArgTraits<Arg>::Decode(
        static_cast<int>(I), context.invoke.args(static_cast<int>(I)), context);
    if (!decoded.ok()) {
      return PrefixField(decoded.status(), absl::StrCat("callback_invoke.args[", I, "]"));
    }
    out = *std::move(decoded);
    return absl::OkStatus();
  }
};

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

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_CALLBACK_INVOCATION_H_
