// LocalPath against a hostile worker: this test plays the worker on the peer end of a real
// channel and makes the invocations a worker may not make (a wrong parent, a reused id, one
// while a memory request waits, an endless nest). Each ends the exchange with INTERNAL,
// promptly, without running a handler it should not run; and after a handler's request
// failed, the call ends with that failure without writing anything more.
#include "client/cpp/internal/local_path.h"

#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "core/framing.h"
#include "core/local_channel.h"
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
  explicit HostileWorker(LocalPath::InvocationRunner runner) {
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
    path_ = LocalPath::Attach(*std::move(creator), opened, std::move(runner));
  }

  LocalPath& path() { return *path_; }

  // The next request the client wrote.
  v1::Request Read() {
    absl::StatusOr<std::string> frame = ReadFrame(*peer_, 1 << 20, absl::Now() + absl::Seconds(5));
    v1::Request request;
    EXPECT_TRUE(frame.ok() && request.ParseFromString(*frame)) << frame.status();
    return request;
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

}  // namespace
}  // namespace client_internal
}  // namespace ffibox
