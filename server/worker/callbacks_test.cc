// The real ffibox-worker binary, driven over its channel the way the broker drives it:
// callbacks invoked from native code (qsort, a fold, a struct mutated through a pointer),
// requests nested inside an invocation, stored handlers, a callback on a library thread,
// freed callbacks, client failures, the nesting limit and misrouted frames.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "core/shm_channel.h"
#include "core/test_types.h"
#include "gtest/gtest.h"
#include "server/broker/worker_connection.h"
#include "server/protocol/worker_protocol.pb.h"
#include "server/protocol/worker_settings.h"

namespace ffibox {
namespace {

using namespace ::ffibox::testing;  // NOLINT: the test type builders

constexpr uint64_t kGeneration = 2;
constexpr uint64_t kLibc = 1;
constexpr uint64_t kTestLib = 2;

std::string Runfile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return srcdir != nullptr ? absl::StrCat(srcdir, "/ffibox/", path) : path;
}

v1::Type FunctionType(const v1::Signature& signature) {
  v1::Type type;
  *type.mutable_function() = signature;
  return type;
}

v1::Signature Sig(const v1::Type* result, std::initializer_list<v1::Type> params) {
  v1::Signature signature;
  if (result != nullptr) *signature.mutable_result() = *result;
  for (const v1::Type& param : params) *signature.add_params() = param;
  return signature;
}

v1::Value CallbackPointer(uint64_t id) {
  v1::Value value;
  value.mutable_pointer()->set_callback(id);
  return value;
}

using Handler = std::function<v1::CallbackReturn(const v1::CallbackInvoke&)>;

// One ffibox-worker child with the broker's end of its connection.
class Worker {
 public:
  // `max_callback_depth` 0: the worker's default. `begin`: send the begin request that binds
  // the worker to kGeneration, as the broker does first.
  explicit Worker(uint32_t max_callback_depth = 0, bool begin = true) {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    absl::StatusOr<std::unique_ptr<ShmChannel>> channel = ShmChannel::Create(kMinShmRingBytes);
    EXPECT_TRUE(channel.ok()) << channel.status();
    const std::string path = Runfile("server/ffibox-worker");
    internal::WorkerSettings settings;
    settings.set_max_callback_depth(max_callback_depth);
    std::vector<std::string> args = {"ffibox-worker", WorkerSettingsArgument(settings)};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 3);
      int crash = open("/dev/null", O_WRONLY);
      dup2(crash, 4);
      dup2((*channel)->memfd(), 6);
      execv(path.c_str(), argv.data());
      _exit(127);
    }
    close(fds[1]);
    // Small rings: large requests and replies stream through them.
    auto connection = MakeShmWorkerConnection(*std::move(channel), fds[0], 64 << 20);
    EXPECT_TRUE(connection.ok());
    connection_ = std::move(*connection);
    // The worker says it runs, its own thread started, before anything is sent to it.
    EXPECT_TRUE(Receive().started());
    if (begin) Begin(kGeneration);
  }

  void Begin(uint64_t generation) {
    internal::WorkerRequest request;
    request.mutable_begin()->set_generation(generation);
    Send(request);
  }

  // The worker's exit status once it ended by itself within `timeout`; -1 otherwise.
  int ExitStatusWithin(absl::Duration timeout) {
    int status = 0;
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return -1;
  }

  ~Worker() {
    connection_.reset();  // EOF: the worker exits by itself (Hangup may have done it)
    if (exited_) return;
    int status = 0;
    for (int i = 0; i < 200 && waitpid(pid_, &status, WNOHANG) == 0; ++i)
      absl::SleepFor(absl::Milliseconds(10));
    if (waitpid(pid_, &status, WNOHANG) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }

  std::vector<v1::SessionEvent>& events() { return events_; }
  pid_t pid() const { return pid_; }

  void Send(const internal::WorkerRequest& request) {
    ASSERT_TRUE(connection_->Send(request).ok());
  }

  // Sends a top-level call of `function` without waiting for its response; returns its id.
  uint64_t PostCall(uint64_t function, std::vector<v1::Value> args) {
    internal::WorkerRequest wrapped;
    wrapped.set_id(++next_id_);
    wrapped.mutable_request()->mutable_call()->set_function(function);
    for (v1::Value& arg : args) *wrapped.mutable_request()->mutable_call()->add_args() = arg;
    Send(wrapped);
    return wrapped.id();
  }

  // Closes the broker's end, as a broker that has gone does.
  void Hangup() { connection_.reset(); }

  internal::WorkerReply Receive() {
    absl::StatusOr<internal::WorkerReply> reply =
        connection_->Receive(absl::Now() + absl::Seconds(20));
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? *std::move(reply) : internal::WorkerReply();
  }

  // Sends `request` (inside `invocation`, 0 = top level) and serves callback invokes with
  // `handler` until its response arrives.
  v1::Response Run(const v1::Request& request, uint64_t handle = 0, uint64_t invocation = 0,
                   const Handler& handler = nullptr) {
    internal::WorkerRequest wrapped;
    wrapped.set_id(++next_id_);
    wrapped.set_handle(handle);
    wrapped.set_invocation(invocation);
    *wrapped.mutable_request() = request;
    Send(wrapped);
    for (;;) {
      internal::WorkerReply reply = Receive();
      if (reply.has_response()) {
        EXPECT_EQ(reply.response().id(), wrapped.id());
        return reply.response();
      }
      if (reply.has_event()) {
        events_.push_back(reply.event());
        continue;
      }
      if (!reply.has_invoke()) {
        ADD_FAILURE() << "empty reply";
        return v1::Response();
      }
      if (handler == nullptr) {
        ADD_FAILURE() << "unexpected invoke " << reply.invoke().DebugString();
        return v1::Response();
      }
      internal::WorkerRequest answer;
      *answer.mutable_request()->mutable_callback_return() = handler(reply.invoke());
      answer.mutable_request()->mutable_callback_return()->set_invocation(
          reply.invoke().invocation());
      Send(answer);
    }
  }

  v1::Response Load(uint64_t handle, const std::string& path) {
    v1::Request request;
    request.mutable_load_library()->set_path(path);
    return Run(request, handle);
  }

  v1::Response Resolve(uint64_t handle, uint64_t library, const std::string& symbol,
                       const v1::Signature& signature) {
    v1::Request request;
    request.mutable_resolve_function()->set_library(library);
    request.mutable_resolve_function()->set_symbol(symbol);
    *request.mutable_resolve_function()->mutable_signature() = signature;
    return Run(request, handle);
  }

  v1::Response Define(uint64_t handle, const v1::Signature& signature) {
    v1::Request request;
    *request.mutable_define_callback()->mutable_signature() = signature;
    return Run(request, handle);
  }

  v1::Response Call(uint64_t function, std::vector<v1::Value> args, const Handler& handler,
                    uint64_t invocation = 0, std::vector<v1::MemoryBlock> blocks = {}) {
    v1::Request request;
    request.mutable_call()->set_function(function);
    for (v1::Value& arg : args) *request.mutable_call()->add_args() = std::move(arg);
    for (v1::MemoryBlock& block : blocks) *request.mutable_call()->add_blocks() = std::move(block);
    return Run(request, 0, invocation, handler);
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;  // reaped by ExitStatusWithin
  std::unique_ptr<WorkerConnection> connection_;
  uint64_t next_id_ = 0;
  std::vector<v1::SessionEvent> events_;
};

const v1::Type kInt = ScalarType(v1::INT);
const v1::Signature kIntToInt = Sig(&kInt, {kInt});

v1::CallbackReturn IntResult(int64_t value) {
  v1::CallbackReturn answer;
  *answer.mutable_result() = IntValue(value);
  return answer;
}

void LoadLibraries(Worker* worker) {
  ASSERT_FALSE(worker->Load(kLibc, "libc.so.6").has_error());
  v1::Response loaded = worker->Load(kTestLib, Runfile("tests/testlibs/libffibox_test.so"));
  ASSERT_FALSE(loaded.has_error()) << loaded.error().message();
}

class WorkerCallbacks : public ::testing::Test {
 protected:
  void SetUp() override { LoadLibraries(&worker_); }

  // Defines callback 12 as void(struct Point*), resolves mutate_point as function 102, and
  // fills `block` with the Point {3, 4} it is called with.
  void PrepareMutatePoint(v1::MemoryBlock* block) {
    const v1::Type point =
        Struct({MakeField("x", ScalarType(v1::INT)), MakeField("y", ScalarType(v1::INT))});
    const v1::Signature mutator = Sig(nullptr, {PointerTo(point)});
    ASSERT_FALSE(worker_.Define(12, mutator).has_error());
    ASSERT_FALSE(worker_
                     .Resolve(102, kTestLib, "mutate_point",
                              Sig(nullptr, {FunctionType(mutator), PointerTo(point)}))
                     .has_error());
    const int initial[2] = {3, 4};
    block->set_data(initial, sizeof initial);
  }

  Worker worker_;
};

TEST_F(WorkerCallbacks, QsortSortsWithAClientComparatorReadingShippedPointees) {
  const v1::Signature comparator = Sig(&kInt, {PointerTo(kInt), PointerTo(kInt)});
  v1::Response defined = worker_.Define(10, comparator);
  ASSERT_FALSE(defined.has_error()) << defined.error().message();
  EXPECT_EQ(defined.callback().callback(), 10u);
  EXPECT_NE(defined.callback().address().address(), 0u);
  EXPECT_EQ(defined.callback().address().generation(), kGeneration);
  v1::Response resolved =
      worker_.Resolve(100, kLibc, "qsort",
                      Sig(nullptr, {ScalarType(v1::POINTER), ScalarType(v1::SIZE_T),
                                    ScalarType(v1::SIZE_T), FunctionType(comparator)}));
  ASSERT_FALSE(resolved.has_error()) << resolved.error().message();

  const std::vector<int> values = {5, -3, 42, 0, 7, 7, -100};
  v1::MemoryBlock block;
  block.set_data(values.data(), values.size() * sizeof(int));
  block.set_direction(v1::INOUT);
  int invokes = 0;
  v1::Response sorted = worker_.Call(
      100, {BlockPointer(0), UintValue(values.size()), UintValue(sizeof(int)), CallbackPointer(10)},
      [&](const v1::CallbackInvoke& invoke) {
        ++invokes;
        EXPECT_EQ(invoke.callback(), 10u);
        EXPECT_EQ(invoke.invocation() >> 40, kGeneration);
        EXPECT_EQ(invoke.parent_invocation(), 0u);
        EXPECT_EQ(invoke.args_size(), 2);
        EXPECT_EQ(invoke.pointees_size(), 2);
        int a = 0;
        int b = 0;
        std::memcpy(&a, invoke.pointees(0).data().data(), sizeof a);
        std::memcpy(&b, invoke.pointees(1).data().data(), sizeof b);
        return IntResult(a < b ? -1 : a > b ? 1 : 0);
      },
      0, {block});
  ASSERT_FALSE(sorted.has_error()) << sorted.error().message();
  EXPECT_GT(invokes, 0);
  ASSERT_EQ(sorted.call().blocks_size(), 1);
  std::vector<int> expected = values;
  std::sort(expected.begin(), expected.end());
  std::vector<int> got(values.size());
  std::memcpy(got.data(), sorted.call().blocks(0).data().data(), got.size() * sizeof(int));
  EXPECT_EQ(got, expected);
}

// The first invocation a call makes tells where the call placed its `keep` blocks, as its
// result will (CallbackInvoke.kept); later ones, and a batch's calls, tell nothing.
TEST_F(WorkerCallbacks, TheFirstInvocationOfACallTellsWhereItsKeptBlocksAre) {
  const v1::Signature comparator = Sig(&kInt, {PointerTo(kInt), PointerTo(kInt)});
  ASSERT_FALSE(worker_.Define(10, comparator).has_error());
  ASSERT_FALSE(worker_
                   .Resolve(100, kLibc, "qsort",
                            Sig(nullptr, {ScalarType(v1::POINTER), ScalarType(v1::SIZE_T),
                                          ScalarType(v1::SIZE_T), FunctionType(comparator)}))
                   .has_error());
  const std::vector<int> values = {5, -3, 42, 0, 7};
  const uint64_t bytes = values.size() * sizeof(int);
  v1::MemoryBlock plain;
  plain.set_data("plain");
  v1::MemoryBlock kept;
  kept.set_data(values.data(), bytes);
  kept.set_keep(true);
  std::vector<v1::CallbackInvoke> invokes;
  auto compare = [&invokes](const v1::CallbackInvoke& invoke) {
    invokes.push_back(invoke);
    int a = 0;
    int b = 0;
    std::memcpy(&a, invoke.pointees(0).data().data(), sizeof a);
    std::memcpy(&b, invoke.pointees(1).data().data(), sizeof b);
    return IntResult(a < b ? -1 : a > b ? 1 : 0);
  };
  v1::Response sorted = worker_.Call(
      100, {BlockPointer(1), UintValue(values.size()), UintValue(sizeof(int)), CallbackPointer(10)},
      compare, 0, {plain, kept, plain});
  ASSERT_FALSE(sorted.has_error()) << sorted.error().message();
  ASSERT_GT(invokes.size(), 1u);
  ASSERT_EQ(sorted.call().kept_size(), 1);
  const v1::KeptBlock& reported = sorted.call().kept(0);
  ASSERT_EQ(invokes[0].kept_size(), 1);
  EXPECT_EQ(invokes[0].kept(0).block(), 1u);
  EXPECT_EQ(invokes[0].kept(0).address().address(), reported.address().address());
  EXPECT_EQ(invokes[0].kept(0).address().generation(), kGeneration);
  const uint64_t first = invokes[0].args(0).pointer().remote().address();
  EXPECT_TRUE(first >= reported.address().address() && first < reported.address().address() + bytes)
      << "the comparator's argument points into the kept block";
  for (size_t i = 1; i < invokes.size(); ++i) {
    EXPECT_EQ(invokes[i].kept_size(), 0) << "invocation " << i;
  }

  v1::Request batch;
  v1::Call* call = batch.mutable_batch()->add_calls();
  call->set_function(100);
  for (const v1::Value& arg :
       {BlockPointer(1), UintValue(values.size()), UintValue(sizeof(int)), CallbackPointer(10)}) {
    *call->add_args() = arg;
  }
  *call->add_blocks() = plain;
  *call->add_blocks() = kept;
  invokes.clear();
  v1::Response batched = worker_.Run(batch, 0, 0, compare);
  ASSERT_FALSE(batched.has_error()) << batched.error().message();
  ASSERT_FALSE(invokes.empty());
  for (const v1::CallbackInvoke& invoke : invokes) EXPECT_EQ(invoke.kept_size(), 0);
}

TEST_F(WorkerCallbacks, FoldOverDoublesReturnsTheClientsAccumulation) {
  const v1::Type double_type = ScalarType(v1::DOUBLE);
  const v1::Signature add = Sig(&double_type, {double_type, double_type});
  ASSERT_FALSE(worker_.Define(11, add).has_error());
  ASSERT_FALSE(worker_
                   .Resolve(101, kTestLib, "fold",
                            Sig(&double_type,
                                {FunctionType(add), PointerTo(double_type), kInt, double_type}))
                   .has_error());
  const std::vector<double> xs = {0.5, 1.25, 2.0};
  v1::MemoryBlock block;
  block.set_data(xs.data(), xs.size() * sizeof(double));
  block.set_direction(v1::IN);
  v1::Response folded = worker_.Call(
      101, {CallbackPointer(11), BlockPointer(0), IntValue(3), FloatValue(10)},
      [](const v1::CallbackInvoke& invoke) {
        v1::CallbackReturn answer;
        *answer.mutable_result() =
            FloatValue(invoke.args(0).float_value() * 2 + invoke.args(1).float_value());
        return answer;
      },
      0, {block});
  ASSERT_FALSE(folded.has_error()) << folded.error().message();
  EXPECT_DOUBLE_EQ(folded.call().result().float_value(), ((10 * 2 + 0.5) * 2 + 1.25) * 2 + 2.0);
}

TEST_F(WorkerCallbacks, CallbackMutatesAStructThroughItsPointer) {
  v1::MemoryBlock block;
  ASSERT_NO_FATAL_FAILURE(PrepareMutatePoint(&block));
  block.set_direction(v1::INOUT);
  v1::Response mutated = worker_.Call(102, {CallbackPointer(12), BlockPointer(0)},
                                      [](const v1::CallbackInvoke& invoke) {
                                        v1::CallbackReturn answer;
                                        EXPECT_EQ(invoke.pointees_size(), 1);
                                        int p[2];
                                        std::memcpy(p, invoke.pointees(0).data().data(), sizeof p);
                                        const int moved[2] = {p[0] * 10, p[1] * 10};
                                        v1::PointeeData* back = answer.add_pointees();
                                        back->set_arg(0);
                                        back->set_data(moved, sizeof moved);
                                        return answer;
                                      },
                                      0, {block});
  ASSERT_FALSE(mutated.has_error()) << mutated.error().message();
  int after[2];
  std::memcpy(after, mutated.call().blocks(0).data().data(), sizeof after);
  EXPECT_EQ(after[0], 30);
  EXPECT_EQ(after[1], 40);
  EXPECT_TRUE(worker_.events().empty());
}

TEST_F(WorkerCallbacks, WrongSizedPointeeIsSkippedWithAnEvent) {
  v1::MemoryBlock block;
  ASSERT_NO_FATAL_FAILURE(PrepareMutatePoint(&block));
  v1::Response mutated = worker_.Call(102, {CallbackPointer(12), BlockPointer(0)},
                                      [](const v1::CallbackInvoke&) {
                                        v1::CallbackReturn answer;
                                        answer.add_pointees()->set_data("abc");
                                        return answer;
                                      },
                                      0, {block});
  ASSERT_FALSE(mutated.has_error()) << mutated.error().message();
  EXPECT_EQ(mutated.call().blocks(0).data(), block.data()) << "the Point {3, 4} changed";
  ASSERT_EQ(worker_.events().size(), 1u);
  EXPECT_EQ(worker_.events()[0].kind(), v1::SessionEvent::CALLBACK_ERROR);
  EXPECT_EQ(worker_.events()[0].error().field(), "callback_return.pointees[0].data");
}

TEST_F(WorkerCallbacks, RequestsNestedInAnInvocationRunBeforeItReturns) {
  ASSERT_FALSE(worker_.Define(20, kIntToInt).has_error());
  ASSERT_FALSE(worker_.Resolve(103, kLibc, "abs", kIntToInt).has_error());
  ASSERT_FALSE(
      worker_
          .Resolve(104, kTestLib, "call_twice_nested", Sig(&kInt, {FunctionType(kIntToInt), kInt}))
          .has_error());
  std::vector<uint64_t> invocations;
  Handler abs_plus_one = [&](const v1::CallbackInvoke& invoke) {
    invocations.push_back(invoke.invocation());
    EXPECT_EQ(invoke.parent_invocation(), 0u);
    v1::Response nested = worker_.Call(103, {invoke.args(0)}, nullptr, invoke.invocation());
    EXPECT_FALSE(nested.has_error()) << nested.error().message();
    return IntResult(nested.call().result().int_value() + 1);
  };
  v1::Response result = worker_.Call(104, {CallbackPointer(20), IntValue(-5)}, abs_plus_one);
  ASSERT_FALSE(result.has_error()) << result.error().message();
  EXPECT_EQ(result.call().result().int_value(), 7);  // h(h(-5)) = h(6) = 7
  ASSERT_EQ(invocations.size(), 2u);
  EXPECT_NE(invocations[0], invocations[1]);
}

TEST_F(WorkerCallbacks, StoredHandlerFiresDuringALaterCall) {
  ASSERT_FALSE(worker_.Define(21, kIntToInt).has_error());
  ASSERT_FALSE(
      worker_.Resolve(105, kTestLib, "register_handler", Sig(nullptr, {FunctionType(kIntToInt)}))
          .has_error());
  ASSERT_FALSE(worker_.Resolve(106, kTestLib, "fire_handler", kIntToInt).has_error());
  ASSERT_FALSE(worker_.Call(105, {CallbackPointer(21)}, nullptr).has_error());
  v1::Response fired = worker_.Call(106, {IntValue(20)}, [](const v1::CallbackInvoke& invoke) {
    return IntResult(invoke.args(0).int_value() * 3);
  });
  ASSERT_FALSE(fired.has_error()) << fired.error().message();
  EXPECT_EQ(fired.call().result().int_value(), 60);
}

TEST_F(WorkerCallbacks, CallbackFromALibraryThreadRunsNestedRequestsThere) {
  ASSERT_FALSE(worker_.Define(22, kIntToInt).has_error());
  ASSERT_FALSE(worker_.Resolve(103, kLibc, "abs", kIntToInt).has_error());
  ASSERT_FALSE(
      worker_
          .Resolve(107, kTestLib, "call_from_thread", Sig(&kInt, {FunctionType(kIntToInt), kInt}))
          .has_error());
  v1::Response result =
      worker_.Call(107, {CallbackPointer(22), IntValue(-9)}, [&](const v1::CallbackInvoke& invoke) {
        EXPECT_EQ(invoke.parent_invocation(), 0u);
        v1::Response nested = worker_.Call(103, {invoke.args(0)}, nullptr, invoke.invocation());
        EXPECT_FALSE(nested.has_error()) << nested.error().message();
        return IntResult(nested.call().result().int_value() * 2);
      });
  ASSERT_FALSE(result.has_error()) << result.error().message();
  EXPECT_EQ(result.call().result().int_value(), 18);
}

TEST_F(WorkerCallbacks, FreedCallbackCalledByNativeCodeReturnsZeroWithAnEvent) {
  ASSERT_FALSE(worker_.Define(23, kIntToInt).has_error());
  ASSERT_FALSE(
      worker_.Resolve(105, kTestLib, "register_handler", Sig(nullptr, {FunctionType(kIntToInt)}))
          .has_error());
  ASSERT_FALSE(worker_.Resolve(106, kTestLib, "fire_handler", kIntToInt).has_error());
  ASSERT_FALSE(worker_.Call(105, {CallbackPointer(23)}, nullptr).has_error());
  v1::Request free_request;
  free_request.mutable_free_callback()->set_callback(23);
  ASSERT_FALSE(worker_.Run(free_request).has_error());

  v1::Response fired = worker_.Call(106, {IntValue(5)}, nullptr);
  ASSERT_FALSE(fired.has_error()) << fired.error().message();
  EXPECT_EQ(fired.call().result().int_value(), 0);
  ASSERT_EQ(worker_.events().size(), 1u);
  EXPECT_EQ(worker_.events()[0].kind(), v1::SessionEvent::CALLBACK_ERROR);
  EXPECT_NE(worker_.events()[0].error().message().find("freed"), std::string::npos);

  // The freed id is refused as an argument; unknown ids are NOT_FOUND.
  v1::Response refused = worker_.Call(105, {CallbackPointer(23)}, nullptr);
  EXPECT_EQ(refused.error().code(), v1::FAILED_PRECONDITION);
  EXPECT_EQ(refused.error().field(), "call.args[0].pointer.callback");
  EXPECT_EQ(worker_.Call(105, {CallbackPointer(99)}, nullptr).error().code(), v1::NOT_FOUND);
  free_request.mutable_free_callback()->set_callback(99);
  EXPECT_EQ(worker_.Run(free_request).error().code(), v1::NOT_FOUND);
}

TEST_F(WorkerCallbacks, ClientFailureGivesNativeCodeZeroAndReportsTheMessage) {
  ASSERT_FALSE(worker_.Define(24, kIntToInt).has_error());
  ASSERT_FALSE(
      worker_
          .Resolve(104, kTestLib, "call_twice_nested", Sig(&kInt, {FunctionType(kIntToInt), kInt}))
          .has_error());
  int calls = 0;
  v1::Response result =
      worker_.Call(104, {CallbackPointer(24), IntValue(1)}, [&](const v1::CallbackInvoke& invoke) {
        if (++calls == 1) {
          v1::CallbackReturn answer;
          answer.set_error("ValueError: boom");
          return answer;
        }
        EXPECT_EQ(invoke.args(0).int_value(), 0);  // the zero the first invocation returned
        return IntResult(invoke.args(0).int_value() + 5);
      });
  ASSERT_FALSE(result.has_error()) << result.error().message();
  EXPECT_EQ(result.call().result().int_value(), 5);
  ASSERT_EQ(worker_.events().size(), 1u);
  EXPECT_NE(worker_.events()[0].error().message().find("ValueError: boom"), std::string::npos);
}

TEST_F(WorkerCallbacks, InvalidResultGivesZeroWithAnEvent) {
  const v1::Type schar = ScalarType(v1::SCHAR);
  ASSERT_FALSE(worker_.Define(25, Sig(&schar, {kInt})).has_error());
  ASSERT_FALSE(worker_
                   .Resolve(104, kTestLib, "call_twice_nested",
                            Sig(&kInt, {FunctionType(Sig(&schar, {kInt})), kInt}))
                   .has_error());
  v1::Response result =
      worker_.Call(104, {CallbackPointer(25), IntValue(1)}, [](const v1::CallbackInvoke& invoke) {
        // 1000 does not fit a signed char; then -1 must reach C as -1, sign-extended.
        return IntResult(invoke.args(0).int_value() == 1 ? 1000 : -1);
      });
  ASSERT_FALSE(result.has_error()) << result.error().message();
  EXPECT_EQ(result.call().result().int_value(), -1);
  ASSERT_EQ(worker_.events().size(), 1u);
  EXPECT_EQ(worker_.events()[0].error().code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(worker_.events()[0].error().field(), "callback_return.result");
}

TEST_F(WorkerCallbacks, RequestForAnInvocationThatIsNotWaitingIsRefused) {
  v1::Request ping;
  ping.mutable_ping();
  v1::Response refused = worker_.Run(ping, 0, (kGeneration << 40) + 77);
  EXPECT_EQ(refused.error().code(), v1::FAILED_PRECONDITION);
  EXPECT_NE(refused.error().message().find("is not waiting"), std::string::npos);
  // A callback_return for no invocation is ignored; the worker keeps serving.
  internal::WorkerRequest stray;
  stray.mutable_request()->mutable_callback_return()->set_invocation(12345);
  worker_.Send(stray);
  EXPECT_FALSE(worker_.Run(ping).has_error());
}

TEST_F(WorkerCallbacks, VariadicCallbackIsRefused) {
  v1::Signature variadic = kIntToInt;
  variadic.set_variadic(true);
  v1::Response refused = worker_.Define(26, variadic);
  EXPECT_EQ(refused.error().code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(refused.error().field(), "define_callback.signature.variadic");
}

// Started without a jail (ffiboxd --nojail), a worker still dumps no core when a library
// crashes: RLIMIT_CORE is 0 before it serves anything, whatever it inherited.
TEST(WorkerWithoutJail, DumpsNoCore) {
  struct rlimit inherited;
  ASSERT_EQ(getrlimit(RLIMIT_CORE, &inherited), 0);
  struct rlimit raised = inherited;
  raised.rlim_cur = inherited.rlim_max == RLIM_INFINITY
                        ? rlim_t{1} << 20
                        : std::min<rlim_t>(inherited.rlim_max, 4096);
  ASSERT_GT(raised.rlim_cur, 0u) << "the test cannot give the worker a core limit to drop";
  ASSERT_EQ(setrlimit(RLIMIT_CORE, &raised), 0);
  Worker worker;
  ASSERT_EQ(setrlimit(RLIMIT_CORE, &inherited), 0);
  LoadLibraries(&worker);  // served: the worker applied its settings first
  std::ifstream limits("/proc/" + std::to_string(worker.pid()) + "/limits");
  std::string line;
  std::vector<std::string> core;
  while (std::getline(limits, line)) {
    if (line.rfind("Max core file size", 0) == 0)
      core = absl::StrSplit(line, ' ', absl::SkipEmpty());
  }
  ASSERT_GE(core.size(), 6u) << line;
  EXPECT_EQ(core[4], "0") << "soft limit";
  EXPECT_EQ(core[5], "0") << "hard limit";
}

// A worker is generic until its first request binds it to a generation (so the broker's
// pool can hand it to any session or restart); anything else first, or a second begin, is a
// broken or hostile broker: the worker ends with status 2 without serving.
TEST(WorkerBegin, AFirstRequestThatIsNotABeginEndsTheWorker) {
  Worker worker(/*max_callback_depth=*/0, /*begin=*/false);
  internal::WorkerRequest load;
  load.set_id(1);
  load.set_handle(1);
  load.mutable_request()->mutable_load_library()->set_path("libm.so.6");
  worker.Send(load);
  EXPECT_EQ(worker.ExitStatusWithin(absl::Seconds(10)), 2);
}

TEST(WorkerBegin, ABeginWithoutAGenerationEndsTheWorker) {
  Worker worker(/*max_callback_depth=*/0, /*begin=*/false);
  worker.Begin(0);
  EXPECT_EQ(worker.ExitStatusWithin(absl::Seconds(10)), 2);
}

TEST(WorkerBegin, ASecondBeginEndsTheWorker) {
  Worker worker;
  LoadLibraries(&worker);  // served: the first begin took
  worker.Begin(kGeneration + 1);
  EXPECT_EQ(worker.ExitStatusWithin(absl::Seconds(10)), 2);
}

// A pooled worker makes its reader thread while it waits for a session, so the session's
// first request does not wait for a thread to be made.
TEST(WorkerBegin, AWorkerWaitingForItsBeginAlreadyRunsItsReaderThread) {
  Worker worker(/*max_callback_depth=*/0, /*begin=*/false);
  const std::string tasks = absl::StrCat("/proc/", worker.pid(), "/task");
  auto thread_count = [&] {
    int count = 0;
    if (DIR* dir = opendir(tasks.c_str())) {
      while (const dirent* entry = readdir(dir)) count += entry->d_name[0] != '.';
      closedir(dir);
    }
    return count;
  };
  // It said it started (the Worker's constructor took that) once its reader thread ran.
  EXPECT_EQ(thread_count(), 2) << "the main thread and the reader, before any begin";
  worker.Begin(kGeneration);
  LoadLibraries(&worker);  // served as usual once begun
}

// Whichever of the worker's threads receives a request, top-level requests run on one
// thread, the worker's main thread (whose thread id is the process id): native code that
// keeps per-thread state sees the same thread on every call. The main thread receives the
// requests that find it idle itself, and while it waits in the one unanswered invocation the
// frames for it; the reader thread receives those that come while invocations wait whose
// threads do not read, and the ones sent behind a long call (kReaderTakeover), for it.
class WorkerReaders : public ::testing::Test {
 protected:
  void SetUp() override {
    LoadLibraries(&worker_);
    ASSERT_FALSE(worker_.Resolve(110, kLibc, "gettid", Sig(&kInt, {})).has_error());
    const v1::Type uint_type = ScalarType(v1::UINT);
    ASSERT_FALSE(worker_.Resolve(111, kLibc, "usleep", Sig(&kInt, {uint_type})).has_error());
  }

  // The thread id the worker ran a call of gettid on.
  int64_t CallingThread() {
    v1::Response response = worker_.Call(110, {}, nullptr);
    EXPECT_FALSE(response.has_error()) << response.error().message();
    return response.call().result().int_value();
  }

  Worker worker_;
};

TEST_F(WorkerReaders, CallsRunOnTheMainThreadAlsoAfterAnInvocation) {
  EXPECT_EQ(CallingThread(), worker_.pid());
  EXPECT_EQ(CallingThread(), worker_.pid());
  ASSERT_FALSE(worker_.Define(31, kIntToInt).has_error());
  ASSERT_FALSE(
      worker_.Resolve(112, kTestLib, "register_handler", Sig(nullptr, {FunctionType(kIntToInt)}))
          .has_error());
  ASSERT_FALSE(worker_.Resolve(113, kTestLib, "fire_handler", kIntToInt).has_error());
  ASSERT_FALSE(worker_.Call(112, {CallbackPointer(31)}, nullptr).has_error());
  // The invocation's return is received by the main thread, which waits in it, and the
  // main thread receives the requests after it too.
  v1::Response fired = worker_.Call(113, {IntValue(41)}, [](const v1::CallbackInvoke& invoke) {
    return IntResult(invoke.args(0).int_value() + 1);
  });
  ASSERT_FALSE(fired.has_error()) << fired.error().message();
  EXPECT_EQ(fired.call().result().int_value(), 42);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(CallingThread(), worker_.pid()) << "call " << i;
}

// The rings of this test hold 4 KiB: 4000 requests sent behind a call that sleeps 3 s (about
// 50 KB) fill them many times over, so the last ones are written only once the worker reads
// them while the call still runs. They are answered in order, on the main thread.
TEST_F(WorkerReaders, RequestsSentBehindALongCallAreReadWhileItRuns) {
  const absl::Time start = absl::Now();
  const uint64_t sleeping = worker_.PostCall(111, {UintValue(3000000)});
  std::vector<uint64_t> behind;
  for (int i = 0; i < 4000; ++i) behind.push_back(worker_.PostCall(110, {}));
  const absl::Duration written = absl::Now() - start;
  EXPECT_LT(written, absl::Milliseconds(2500))
      << "the requests behind the sleep waited for it to end";
  internal::WorkerReply reply = worker_.Receive();
  EXPECT_EQ(reply.response().id(), sleeping);
  EXPECT_FALSE(reply.response().has_error()) << reply.response().error().message();
  EXPECT_GE(absl::Now() - start, absl::Seconds(3));
  for (uint64_t id : behind) {
    reply = worker_.Receive();
    ASSERT_EQ(reply.response().id(), id);
    ASSERT_EQ(reply.response().call().result().int_value(), worker_.pid()) << "request " << id;
  }
  EXPECT_EQ(CallingThread(), worker_.pid());  // the main thread receives again
}

// A library's own thread calls a callback after the call that started it returned: the
// idle main thread, which reads the broker's frames then, routes the answer to that thread.
TEST_F(WorkerReaders, ACallbackFromALibraryThreadIsAnsweredWhileTheMainThreadIsIdle) {
  ASSERT_FALSE(worker_.Define(32, kIntToInt).has_error());
  ASSERT_FALSE(
      worker_.Resolve(114, kTestLib, "register_handler", Sig(nullptr, {FunctionType(kIntToInt)}))
          .has_error());
  ASSERT_FALSE(
      worker_.Resolve(115, kTestLib, "fire_handler_later", Sig(&kInt, {kInt, kInt})).has_error());
  ASSERT_FALSE(worker_.Resolve(116, kTestLib, "fired_later_answer", kIntToInt).has_error());
  ASSERT_FALSE(worker_.Call(114, {CallbackPointer(32)}, nullptr).has_error());
  v1::Response started = worker_.Call(115, {IntValue(50), IntValue(41)}, nullptr);
  ASSERT_FALSE(started.has_error()) << started.error().message();
  ASSERT_EQ(started.call().result().int_value(), 0);
  // Nothing is in flight now; the invocation comes by itself.
  internal::WorkerReply invoke = worker_.Receive();
  ASSERT_TRUE(invoke.has_invoke()) << invoke.DebugString();
  EXPECT_EQ(invoke.invoke().callback(), 32u);
  internal::WorkerRequest answer;
  *answer.mutable_request()->mutable_callback_return() =
      IntResult(invoke.invoke().args(0).int_value() + 1);
  answer.mutable_request()->mutable_callback_return()->set_invocation(invoke.invoke().invocation());
  worker_.Send(answer);
  v1::Response fired = worker_.Call(116, {IntValue(10000)}, nullptr);
  ASSERT_FALSE(fired.has_error()) << fired.error().message();
  EXPECT_EQ(fired.call().result().int_value(), 42);
  EXPECT_EQ(CallingThread(), worker_.pid());
}

// A broker that goes away while native code runs ends the worker then, not once the call
// returns.
TEST_F(WorkerReaders, TheBrokersEndIsSeenWhileALongCallRuns) {
  worker_.PostCall(111, {UintValue(20000000)});  // 20 s
  absl::SleepFor(absl::Milliseconds(100));
  worker_.Hangup();
  EXPECT_EQ(worker_.ExitStatusWithin(absl::Seconds(10)), 0);
}

TEST(WorkerCallbackDepth, InvocationsNestedBeyondTheLimitReturnZeroWithAnEvent) {
  Worker worker(/*max_callback_depth=*/3);
  LoadLibraries(&worker);
  ASSERT_FALSE(worker.Define(30, kIntToInt).has_error());
  ASSERT_FALSE(
      worker.Resolve(105, kTestLib, "register_handler", Sig(nullptr, {FunctionType(kIntToInt)}))
          .has_error());
  ASSERT_FALSE(worker.Resolve(106, kTestLib, "fire_handler", kIntToInt).has_error());
  ASSERT_FALSE(worker.Call(105, {CallbackPointer(30)}, nullptr).has_error());
  // h(x) = fire_handler(x - 1) + 1, called inside the invocation: each level nests deeper.
  std::vector<uint64_t> invocations;
  std::vector<uint64_t> parents;
  Handler recurse;
  recurse = [&](const v1::CallbackInvoke& invoke) {
    invocations.push_back(invoke.invocation());
    parents.push_back(invoke.parent_invocation());
    const int64_t x = invoke.args(0).int_value();
    v1::Response nested = worker.Call(106, {IntValue(x - 1)}, recurse, invoke.invocation());
    EXPECT_FALSE(nested.has_error()) << nested.error().message();
    return IntResult(nested.call().result().int_value() + 1);
  };
  v1::Response result = worker.Call(106, {IntValue(5)}, recurse);
  ASSERT_FALSE(result.has_error()) << result.error().message();
  // Three invocations reach the client; the fourth call returns zero without one.
  EXPECT_EQ(result.call().result().int_value(), 3);
  ASSERT_EQ(invocations.size(), 3u);
  EXPECT_EQ(parents, (std::vector<uint64_t>{0, invocations[0], invocations[1]}));
  ASSERT_EQ(worker.events().size(), 1u);
  EXPECT_EQ(worker.events()[0].error().code(), v1::RESOURCE_EXHAUSTED);
}

}  // namespace
}  // namespace ffibox
