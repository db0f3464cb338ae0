// LocalPath against a hostile worker: this test plays the worker on the peer end of a real
// channel and makes the invocations a worker may not make (a wrong parent, a reused id, one
// while a memory request waits, an endless nest). Each ends the exchange with INTERNAL,
// promptly, without running a handler it should not run; and after a handler's request
// failed, the call ends with that failure without writing anything more.
#include "client/cpp/internal/local_path.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "core/framing.h"
#include "core/local_channel.h"
#include "core/scalar_wire.h"
#include "core/shm_channel.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace client_internal {
namespace {

constexpr size_t kRing = 64 << 10;

// A channel whose creator end is a LocalPath and whose peer end this test drives.
class HostileWorker {
 public:
  explicit HostileWorker(LocalPath::InvocationRunner runner,
                         LocalPath::ScalarInvocationRunner scalar_runner = nullptr) {
    const absl::StatusOr<int> memfd = ShmChannel::CreateMemfd(kRing);
    EXPECT_TRUE(memfd.ok()) << memfd.status();
    absl::StatusOr<std::unique_ptr<ShmChannel>> creator =
        ShmChannel::Attach(*memfd, ShmChannel::End::kCreator);
    absl::StatusOr<std::unique_ptr<ShmChannel>> peer =
        ShmChannel::Attach(*memfd, ShmChannel::End::kPeer);
    close(*memfd);
    EXPECT_TRUE(creator.ok() && peer.ok());
    peer_ = *std::move(peer);
    v1::LocalChannelOpened opened;
    opened.set_generation(1);
    opened.set_max_request_bytes(1 << 20);
    path_ =
        LocalPath::Attach(*std::move(creator), opened, std::move(runner), std::move(scalar_runner));
  }

  LocalPath& path() { return *path_; }

  // The next request the client wrote.
  v1::Request Read() {
    absl::StatusOr<std::string> frame = ReadFrame(*peer_, 1 << 20, absl::Now() + absl::Seconds(5));
    v1::Request request;
    EXPECT_TRUE(frame.ok() && request.ParseFromString(*frame)) << frame.status();
    return request;
  }

  // The bytes of the next frame the client wrote.
  std::string ReadBytes() {
    absl::StatusOr<std::string> frame = ReadFrame(*peer_, 1 << 20, absl::Now() + absl::Seconds(5));
    EXPECT_TRUE(frame.ok()) << frame.status();
    return frame.value_or("");
  }

  // Writes `bytes` as one frame.
  void WriteBytes(absl::string_view bytes) {
    ASSERT_TRUE(WriteFrame(*peer_, bytes, absl::Now() + absl::Seconds(5)).ok());
  }

  // Writes `response` as the worker would.
  void Write(const v1::Response& response) {
    ASSERT_TRUE(
        WriteFrame(*peer_, response.SerializeAsString(), absl::Now() + absl::Seconds(5)).ok());
  }

  // Writes the 4-byte length of a frame of `length` bytes, and none of them.
  void WriteLengthOnly(uint32_t length) {
    const char header[4] = {static_cast<char>(length), static_cast<char>(length >> 8),
                            static_cast<char>(length >> 16), static_cast<char>(length >> 24)};
    ASSERT_TRUE(
        peer_->Write(absl::string_view(header, sizeof(header)), absl::Now() + absl::Seconds(5))
            .ok());
  }

  // Whether the client wrote anything more within `wait`.
  bool WroteMore(absl::Duration wait) {
    return ReadFrame(*peer_, 1 << 20, absl::Now() + wait).ok();
  }

 private:
  std::unique_ptr<ShmChannel> peer_;
  std::unique_ptr<LocalPath> path_;
};

v1::Response Invoke(uint64_t invocation, uint64_t parent) {
  v1::Response message;
  v1::CallbackInvoke* invoke = message.mutable_callback_invoke();
  invoke->set_invocation(invocation);
  invoke->set_parent_invocation(parent);
  invoke->set_callback(1);
  return message;
}

v1::Request Call(uint64_t id, uint64_t invocation = 0) {
  v1::Request request;
  request.set_id(id);
  request.set_invocation(invocation);
  request.mutable_call()->set_function(3);
  return request;
}

v1::Response CallAnswer(uint64_t id) {
  v1::Response answer;
  answer.set_id(id);
  answer.mutable_call();
  return answer;
}

absl::Time Soon() { return absl::Now() + absl::Seconds(5); }

TEST(LocalPathTest, AnInvocationIsServedAndTheCallGoesOn) {
  int handled = 0;
  HostileWorker worker([&](const v1::Response& message, LocalPath&, absl::Time) {
    ++handled;
    v1::CallbackReturn answer;
    answer.mutable_result()->set_int_value(message.callback_invoke().invocation() + 1);
    return absl::StatusOr<v1::CallbackReturn>(answer);
  });
  std::thread peer([&] {
    EXPECT_TRUE(worker.Read().has_call());
    worker.Write(Invoke(40, 0));
    const v1::Request answered = worker.Read();
    EXPECT_EQ(answered.callback_return().invocation(), 40u);
    EXPECT_EQ(answered.callback_return().result().int_value(), 41);
    worker.Write(CallAnswer(7));
  });
  v1::Request call = Call(7);
  absl::StatusOr<v1::Response> answer = worker.path().Exchange(&call, {}, Soon());
  peer.join();
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->id(), 7u);
  EXPECT_EQ(handled, 1);
}

TEST(LocalPathTest, AnInvocationNamingAnotherParentDropsTheChannel) {
  int handled = 0;
  HostileWorker worker([&](const v1::Response&, LocalPath&, absl::Time) {
    ++handled;
    return absl::StatusOr<v1::CallbackReturn>(v1::CallbackReturn());
  });
  std::thread peer([&] {
    worker.Read();
    worker.Write(Invoke(40, 99));  // the call runs at the top level: the parent must be 0
  });
  v1::Request call = Call(7);
  absl::StatusOr<v1::Response> answer = worker.path().Exchange(&call, {}, Soon());
  peer.join();
  EXPECT_THAT(answer.status(), StatusIs(v1::INTERNAL)) << answer.status();
  EXPECT_EQ(handled, 0);
  // The channel stays dropped.
  v1::Request next = Call(8);
  EXPECT_FALSE(worker.path().Exchange(&next, {}, Soon()).ok());
}

TEST(LocalPathTest, AnInvocationReusingAnOpenIdDropsTheChannel) {
  int handled = 0;
  absl::Status nested;
  HostileWorker worker([&](const v1::Response& message, LocalPath& path, absl::Time deadline) {
    ++handled;
    v1::Request inner = Call(9, message.callback_invoke().invocation());
    nested = path.Exchange(&inner, {}, deadline).status();
    return absl::StatusOr<v1::CallbackReturn>(v1::CallbackReturn());
  });
  std::thread peer([&] {
    worker.Read();
    worker.Write(Invoke(40, 0));
    EXPECT_EQ(worker.Read().invocation(), 40u);  // the handler's call
    worker.Write(Invoke(40, 40));                // 40 is still open
  });
  v1::Request call = Call(7);
  absl::StatusOr<v1::Response> answer = worker.path().Exchange(&call, {}, Soon());
  peer.join();
  EXPECT_EQ(handled, 1);
  EXPECT_THAT(nested, StatusIs(v1::INTERNAL)) << nested;
  // The outer call ends with the handler's failure, and sends no callback_return.
  EXPECT_THAT(answer.status(), StatusIs(v1::INTERNAL)) << answer.status();
  EXPECT_FALSE(worker.WroteMore(absl::Milliseconds(100)));
}

TEST(LocalPathTest, AnInvocationWhileAMemoryRequestWaitsIsNoAnswer) {
  int handled = 0;
  absl::Status read;
  HostileWorker worker([&](const v1::Response& message, LocalPath& path, absl::Time deadline) {
    ++handled;
    v1::Request request;
    request.set_id(9);
    request.set_invocation(message.callback_invoke().invocation());
    request.mutable_read_memory()->set_size(4);
    read = path.ExchangeNested(request, deadline).status();
    return absl::StatusOr<v1::CallbackReturn>(v1::CallbackReturn());
  });
  std::thread peer([&] {
    worker.Read();
    worker.Write(Invoke(40, 0));
    EXPECT_TRUE(worker.Read().has_read_memory());
    worker.Write(Invoke(41, 40));  // a read runs no native code
  });
  v1::Request call = Call(7);
  absl::StatusOr<v1::Response> answer = worker.path().Exchange(&call, {}, Soon());
  peer.join();
  EXPECT_EQ(handled, 1);
  EXPECT_THAT(read, StatusIs(v1::INTERNAL)) << read;
  EXPECT_FALSE(answer.ok());
}

// An 8-byte read answered with a frame announced longer than a read of 8 bytes can be
// answered with (its bytes and 4 KiB): refused on its length, before any of it is read, not
// taken as it arrives up to the 1 GiB any answer may be.
TEST(LocalPathTest, AMemoryRequestsAnswerLongerThanItAsksForIsRefusedOnItsLength) {
  HostileWorker worker(nullptr);
  std::thread peer([&] {
    EXPECT_TRUE(worker.Read().has_read_memory());
    worker.WriteLengthOnly(8 + 4096 + 1);
  });
  v1::Request read;
  read.set_id(5);
  read.mutable_read_memory()->set_size(8);
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::Response> answer = worker.path().ExchangeNested(read, Soon());
  peer.join();
  EXPECT_THAT(answer.status(), StatusIs(v1::INTERNAL)) << answer.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));  // not the answer's stall of 10 s
}

TEST(LocalPathTest, AnEndlessNestOfInvocationsEndsAtTheDepthLimit) {
  size_t deepest = 0;
  size_t depth = 0;
  HostileWorker worker([&](const v1::Response& message, LocalPath& path, absl::Time deadline) {
    deepest = std::max(deepest, ++depth);
    v1::Request inner = Call(100 + depth, message.callback_invoke().invocation());
    absl::Status nested = path.Exchange(&inner, {}, deadline).status();
    --depth;
    if (!nested.ok()) return absl::StatusOr<v1::CallbackReturn>(nested);
    return absl::StatusOr<v1::CallbackReturn>(v1::CallbackReturn());
  });
  std::thread peer([&] {
    // Every call the client sends is answered with one more invocation inside it.
    uint64_t parent = 0;
    for (uint64_t invocation = 1; invocation <= kMaxChannelInvocationDepth + 1; ++invocation) {
      const v1::Request request = worker.Read();
      if (!request.has_call()) break;
      parent = request.invocation();
      worker.Write(Invoke(invocation, parent));
    }
  });
  v1::Request call = Call(7);
  absl::StatusOr<v1::Response> answer = worker.path().Exchange(&call, {}, Soon());
  peer.join();
  EXPECT_THAT(answer.status(), StatusIs(v1::INTERNAL)) << answer.status();
  EXPECT_EQ(deepest, kMaxChannelInvocationDepth);
}

// A scalar call: the worker parses its request as the message it stands for; its answer as
// the worker writes it is read from its bytes; a callback's invocation during it is served
// and the call goes on, its answer read from its bytes too; an error answer, or a result of
// another shape, comes back as the Response Exchange would give; an answer to another request is
// malformed and ends the channel.
TEST(LocalPathTest, AScalarCallsAnswerIsReadFromItsBytesAndAnyOtherAsExchangeReadsIt) {
  int handled = 0;
  HostileWorker worker([&](const v1::Response&, LocalPath&, absl::Time) {
    ++handled;
    return absl::StatusOr<v1::CallbackReturn>(v1::CallbackReturn());
  });
  const std::array<ScalarBits, 3> args = {ScalarBitsOf(-3), ScalarBitsOf(2.5),
                                          ScalarBitsOf(uint64_t{1} << 63)};
  const ScalarCall call{3, 250, args};
  auto result = [](uint64_t id, int64_t value, uint64_t generation) {
    v1::Response answer = CallAnswer(id);
    answer.set_generation(generation);
    answer.mutable_call()->mutable_result()->set_int_value(value);
    return answer;
  };
  std::thread peer([&] {
    const v1::Request first = worker.Read();
    EXPECT_EQ(first.SerializeAsString(), ScalarCallRequest(11, call).SerializeAsString());
    EXPECT_EQ(first.call().args(2).uint_value(), uint64_t{1} << 63);
    worker.Write(result(11, -42, 1));
    EXPECT_TRUE(worker.Read().has_call());
    worker.Write(Invoke(40, 0));
    EXPECT_EQ(worker.Read().callback_return().invocation(), 40u);
    worker.Write(result(12, 7, 1));
    worker.Read();
    v1::Response crashed = CallAnswer(13);  // a refusal
    crashed.clear_call();
    crashed.mutable_error()->set_code(v1::NOT_FOUND);
    worker.Write(crashed);
    worker.Read();
    v1::Response with_errno = result(14, 8, 1);
    with_errno.mutable_call()->set_errno_value(5);
    worker.Write(with_errno);
    worker.Read();
    worker.Write(result(99, 1, 1));
  });
  absl::StatusOr<LocalPath::ScalarAnswer> read = worker.path().ExchangeScalar(11, call, Soon());
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_TRUE(read->read() && read->result.has_value());
  EXPECT_EQ(read->result->kind, v1::Value::kIntValue);
  EXPECT_EQ(static_cast<int64_t>(read->result->bits), -42);
  absl::StatusOr<LocalPath::ScalarAnswer> after_callback =
      worker.path().ExchangeScalar(12, call, Soon());
  ASSERT_TRUE(after_callback.ok()) << after_callback.status();
  ASSERT_TRUE(after_callback->read() && after_callback->result.has_value());
  EXPECT_EQ(after_callback->result->bits, 7u);
  EXPECT_EQ(handled, 1);
  absl::StatusOr<LocalPath::ScalarAnswer> error = worker.path().ExchangeScalar(13, call, Soon());
  ASSERT_TRUE(error.ok()) << error.status();
  ASSERT_FALSE(error->read());
  ASSERT_TRUE(error->response.has_value());
  EXPECT_EQ(error->response->error().code(), v1::NOT_FOUND);
  absl::StatusOr<LocalPath::ScalarAnswer> other = worker.path().ExchangeScalar(14, call, Soon());
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_FALSE(other->read());
  EXPECT_EQ(other->response->call().result().int_value(), 8);
  EXPECT_EQ(other->response->call().errno_value(), 5);
  EXPECT_EQ(other->response->generation(), 1u);  // the channel's
  absl::StatusOr<LocalPath::ScalarAnswer> wrong = worker.path().ExchangeScalar(15, call, Soon());
  peer.join();
  EXPECT_THAT(wrong.status(), StatusIs(v1::INTERNAL)) << wrong.status();
  // The channel is broken from then on: nothing more is written.
  EXPECT_THAT(worker.path().ExchangeScalar(16, call, Soon()).status(), StatusIs(v1::INTERNAL));
  EXPECT_FALSE(worker.WroteMore(absl::Milliseconds(100)));
}

// A scalar invocation in the wire format: callback `callback`, one int argument `x`.
std::string ScalarInvokeBytes(uint64_t invocation, uint64_t parent, uint64_t callback, int x) {
  ScalarInvoke invoke;
  invoke.generation = 1;
  invoke.invocation = invocation;
  invoke.callback = callback;
  invoke.parent_invocation = parent;
  invoke.args.push_back(ScalarBitsOf(x));
  std::string bytes(ScalarInvokeBytesAtMost(1), '\0');
  bytes.resize(EncodeScalarInvoke(invoke, bytes.data()));
  return bytes;
}

std::string ScalarReturnBytes(uint64_t invocation, std::optional<ScalarBits> result) {
  std::string bytes(kScalarReturnBytesAtMost, '\0');
  bytes.resize(EncodeScalarReturn(invocation, result, bytes.data()));
  return bytes;
}

// Scalar invocations, in a scalar call and in a call of messages: the scalar runner runs
// those it takes and its answer goes back in the wire format (an error as a message); one it
// does not take runs as a message; one naming another parent ends the call with INTERNAL,
// unrun.
TEST(LocalPathTest, AScalarInvocationIsAnsweredInTheWireFormatOrRunsAsAMessage) {
  int messages = 0;
  std::vector<uint64_t> scalars;
  HostileWorker worker(
      [&](const v1::Response& message, LocalPath&, absl::Time) {
        ++messages;
        v1::CallbackReturn answer;
        answer.mutable_result()->set_int_value(message.callback_invoke().args(0).int_value() * 2);
        return absl::StatusOr<v1::CallbackReturn>(answer);
      },
      [&](const ScalarInvoke& invoke, LocalPath&, absl::Time) -> std::optional<ScalarReturn> {
        if (invoke.callback == 2) return std::nullopt;  // not taken
        scalars.push_back(invoke.invocation);
        ScalarReturn answer;
        if (invoke.callback == 3) {
          answer.error = "boom";
        } else {
          answer.result = ScalarBitsOf(static_cast<int>(invoke.args[0].bits) + 1);
        }
        return answer;
      });
  const std::array<ScalarBits, 1> args = {ScalarBitsOf(1)};
  const ScalarCall call{3, 0, args};
  std::thread peer([&] {
    EXPECT_TRUE(worker.Read().has_call());
    worker.WriteBytes(ScalarInvokeBytes(40, 0, 1, 5));
    EXPECT_EQ(worker.ReadBytes(), ScalarReturnBytes(40, ScalarBitsOf(6)));
    worker.WriteBytes(ScalarInvokeBytes(41, 0, 2, 5));
    const v1::Request as_message = worker.Read();
    EXPECT_EQ(as_message.callback_return().invocation(), 41u);
    EXPECT_EQ(as_message.callback_return().result().int_value(), 10);
    worker.WriteBytes(ScalarInvokeBytes(42, 0, 3, 5));
    const v1::Request failed = worker.Read();
    EXPECT_EQ(failed.callback_return().invocation(), 42u);
    EXPECT_EQ(failed.callback_return().error(), "boom");
    EXPECT_FALSE(failed.callback_return().has_result());
    v1::Response answer = CallAnswer(11);
    answer.mutable_call()->mutable_result()->set_int_value(-1);
    worker.Write(answer);
    // A call of messages: the same.
    EXPECT_EQ(worker.Read().id(), 12u);
    worker.WriteBytes(ScalarInvokeBytes(43, 0, 1, -8));
    EXPECT_EQ(worker.ReadBytes(), ScalarReturnBytes(43, ScalarBitsOf(-7)));
    worker.Write(CallAnswer(12));
    // Naming a parent that is not waiting.
    EXPECT_EQ(worker.Read().id(), 13u);
    worker.WriteBytes(ScalarInvokeBytes(44, 7, 1, 0));
  });
  absl::StatusOr<LocalPath::ScalarAnswer> read = worker.path().ExchangeScalar(11, call, Soon());
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_TRUE(read->read() && read->result.has_value());
  EXPECT_EQ(static_cast<int64_t>(read->result->bits), -1);
  v1::Request message_call = Call(12);
  absl::StatusOr<v1::Response> answered = worker.path().Exchange(&message_call, {}, Soon());
  ASSERT_TRUE(answered.ok()) << answered.status();
  EXPECT_EQ(answered->id(), 12u);
  absl::StatusOr<LocalPath::ScalarAnswer> wrong = worker.path().ExchangeScalar(13, call, Soon());
  peer.join();
  EXPECT_THAT(wrong.status(), StatusIs(v1::INTERNAL)) << wrong.status();
  EXPECT_EQ(messages, 1);
  EXPECT_EQ(scalars, (std::vector<uint64_t>{40, 42, 43}));
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox
