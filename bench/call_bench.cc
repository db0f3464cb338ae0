// call_bench: the cost of one ffibox call beside its floors, measured in one run.
//
// Floors: an in-process libffi call (what ctypes and the worker itself pay), a bare
// cross-process round trip over a socketpair (the least any out-of-process design pays),
// and the same echo to a thread (what a wakeup costs without a process boundary); the bare
// gRPC floors are in grpc_floor_bench.cc. Product path:
// ping (client -> broker), cos(0.5) (client -> broker -> worker -> libffi and back), calls
// with INOUT buffers, pipelined calls, and a call whose native code calls back into the
// client once (the callback round trip). The ffibox benchmarks start a real ffiboxd from
// the binary's runfiles as a child process on a private socket (the integration tests'
// TestServer, tests/support/test_server.h) and stop it at exit. The same binary links the
// families of grpc_floor_bench.cc (bare gRPC carrying a real call's bytes), bulk_bench.cc
// (64 MiB INOUT), recovery_bench.cc (crash to next call) and scale_bench.cc (concurrent
// sessions), which share bench_fixtures.h. Run everything with ./bench/run.sh;
// docs/benchmarks.md has the results.
//
// Every benchmark that waits on another process or thread measures wall-clock time
// (UseRealTime): the CPU time of the calling thread would hide the waiting.
#include <dlfcn.h>
#include <errno.h>
#include <ffi.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/bench_fixtures.h"
#include "benchmark/benchmark.h"
#include "client/cpp/ffibox_client.h"
#include "core/mutex_mode.h"
#include "ffibox/v1/ffibox.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/jail/cgroups.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace bench {
namespace {

using test_support::TestLibPath;
using test_support::TestServer;

constexpr size_t kEchoMessageBytes = 16;
constexpr int kPipelineDepth = 16;

// ---------------------------------------------------------------------------------------
// Shared fixtures, made on first use, dropped when another family makes its own
// (HoldFixture, bench_fixtures.h: an open session slows what runs beside it) and by main.
// ---------------------------------------------------------------------------------------

// A real ffiboxd with one open session in which libm's cos and libc's memset are resolved.
struct FfiboxFixture {
  std::unique_ptr<TestServer> server;
  std::unique_ptr<Client> client;
  std::unique_ptr<Session> session;
  std::optional<Function<double(double)>> cos;
  std::optional<Function<void*(Buffer&, int, size_t)>> memset;
  // fire_handler of tests/testlibs/callbacks.c, with a client callback registered.
  FiringHandler firing;
  absl::Status callback_status;  // why fire_handler is missing, if it is
};

// Loads the test library, defines a callback returning x + 1 and registers it as the
// library's stored handler.
absl::Status PrepareCallback(FfiboxFixture& fixture) {
  char resolved[PATH_MAX];
  if (realpath(TestLibPath().c_str(), resolved) == nullptr) {
    return absl::NotFoundError(absl::StrCat("test library ", TestLibPath()));
  }
  absl::StatusOr<Library> testlib = fixture.session->Load(resolved);
  if (!testlib.ok()) return testlib.status();
  FFIBOX_ASSIGN_OR_RETURN(fixture.firing, PrepareFiringHandler(*fixture.session, *testlib));
  return absl::OkStatus();
}

std::unique_ptr<FfiboxFixture> ffibox_fixture;
absl::Status ffibox_fixture_status;

absl::StatusOr<std::unique_ptr<FfiboxFixture>> StartFfibox() {
  auto fixture = std::make_unique<FfiboxFixture>();
  // The server's default pool, as a user's ffiboxd has (the test server's default is none).
  absl::StatusOr<std::unique_ptr<TestServer>> server = TestServer::Start({"--pool_size=2"});
  if (!server.ok()) return server.status();
  fixture->server = *std::move(server);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(fixture->server->address());
  if (!client.ok()) return client.status();
  fixture->client = *std::move(client);
  absl::StatusOr<std::unique_ptr<Session>> session = fixture->client->OpenSession();
  if (!session.ok()) return session.status();
  fixture->session = *std::move(session);
  absl::StatusOr<Library> libm = fixture->session->Load("libm.so.6");
  if (!libm.ok()) return libm.status();
  absl::StatusOr<Function<double(double)>> cos = libm->Function<double(double)>("cos");
  if (!cos.ok()) return cos.status();
  fixture->cos.emplace(*std::move(cos));
  absl::StatusOr<Library> libc = fixture->session->Load("libc.so.6");
  if (!libc.ok()) return libc.status();
  absl::StatusOr<Function<void*(Buffer&, int, size_t)>> memset =
      libc->Function<void*(Buffer&, int, size_t)>("memset");
  if (!memset.ok()) return memset.status();
  fixture->memset.emplace(*std::move(memset));

  fixture->callback_status = PrepareCallback(*fixture);
  return fixture;
}

// The shared ffibox fixture, or nullptr after reporting why it could not be made.
FfiboxFixture* GetFfibox(benchmark::State& state) {
  if (ffibox_fixture == nullptr && ffibox_fixture_status.ok()) {
    HoldFixture(&ffibox_fixture, [] { ffibox_fixture.reset(); });
    absl::StatusOr<std::unique_ptr<FfiboxFixture>> fixture = StartFfibox();
    if (fixture.ok()) {
      ffibox_fixture = *std::move(fixture);
    } else {
      ffibox_fixture_status = fixture.status();
    }
  }
  if (ffibox_fixture == nullptr) {
    state.SkipWithError(absl::StrCat("ffiboxd: ", ffibox_fixture_status.ToString()).c_str());
  }
  return ffibox_fixture.get();
}

// ---------------------------------------------------------------------------------------
// Floors
// ---------------------------------------------------------------------------------------

// libm cos through ffi_call with a cif prepared once: the in-process floor, and what the
// worker itself spends on the call.
void BM_InProcessLibffi(benchmark::State& state) {
  void* libm = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
  void* cos = libm == nullptr ? nullptr : dlsym(libm, "cos");
  if (cos == nullptr) {
    state.SkipWithError("cannot resolve cos in libm.so.6");
    return;
  }
  ffi_cif cif;
  ffi_type* params[] = {&ffi_type_double};
  if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 1, &ffi_type_double, params) != FFI_OK) {
    state.SkipWithError("ffi_prep_cif failed");
    return;
  }
  double x = 0.5;
  void* args[] = {&x};
  double result = 0;
  for (auto _ : state) {
    ffi_call(&cif, FFI_FN(cos), &result, args);
    benchmark::DoNotOptimize(result);
  }
  dlclose(libm);
}
BENCHMARK(BM_InProcessLibffi);

// Transfers exactly `size` bytes; false on EOF or error.
bool ReadFull(int fd, char* data, size_t size) {
  while (size > 0) {
    ssize_t n = read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool WriteFull(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// 16 bytes to a forked echo process over a socketpair and back, blocking: the floor of any
// design that runs the library in another process.
void BM_CrossProcessRoundTrip(benchmark::State& state) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    state.SkipWithError("socketpair failed");
    return;
  }
  pid_t child = fork();
  if (child < 0) {
    close(fds[0]);
    close(fds[1]);
    state.SkipWithError("fork failed");
    return;
  }
  if (child == 0) {
    // Only async-signal-safe calls here: the parent may have other threads.
    close(fds[0]);
    char message[kEchoMessageBytes];
    while (ReadFull(fds[1], message, sizeof(message)) &&
           WriteFull(fds[1], message, sizeof(message))) {
    }
    _exit(0);
  }
  close(fds[1]);
  char message[kEchoMessageBytes] = "ffibox echo";
  for (auto _ : state) {
    if (!WriteFull(fds[0], message, sizeof(message)) ||
        !ReadFull(fds[0], message, sizeof(message))) {
      state.SkipWithError("echo process went away");
      break;
    }
  }
  close(fds[0]);  // the child sees EOF and exits
  while (waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
  }
}
BENCHMARK(BM_CrossProcessRoundTrip)->UseRealTime();

// A child process that only sleeps until it is killed, or -1 (fork failed). Only
// async-signal-safe calls in the child: the parent may have other threads.
pid_t ForkSleeper() {
  pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  return child;
}

// Kills and reaps `child`.
void KillAndReap(pid_t child) {
  kill(child, SIGKILL);
  while (waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
  }
}

// What the cgroup layer adds to every request in the broker: lift the idle CPU quota when
// the request starts, put it back and read the group's counters (pids, memory, OOM kills)
// when it ends, on a group holding a sleeping child. CPU time of this thread only: it never
// waits on another.
void BM_CgroupPerRequest(benchmark::State& state) {
  absl::StatusOr<std::unique_ptr<CgroupTree>> tree = CgroupTree::Create(0);
  if (!tree.ok()) {
    state.SkipWithError(std::string(tree.status().message()).c_str());
    return;
  }
  pid_t child = ForkSleeper();
  if (child < 0) {
    state.SkipWithError("fork failed");
    return;
  }
  absl::StatusOr<std::unique_ptr<WorkerCgroup>> group =
      (*tree)->Attach(child, WorkerCgroupLimits{256, 4ull << 30, 10});
  if (!group.ok()) {
    state.SkipWithError(std::string(group.status().message()).c_str());
  } else {
    for (auto _ : state) {
      absl::Status busy = (*group)->SetBusy(true);
      absl::Status idle = (*group)->SetBusy(false);
      benchmark::DoNotOptimize((*group)->NewLimitHits());
      if (!busy.ok() || !idle.ok()) {
        state.SkipWithError("cpu quota write failed");
        break;
      }
    }
  }
  KillAndReap(child);
  if (group.ok()) group->reset();  // after the reap: the group is empty
}
BENCHMARK(BM_CgroupPerRequest);

// What the cgroup layer adds to every worker: its group made (three hierarchies on v1) with
// its limits, the process moved in, and after the worker is reaped, the group removed.
// Each iteration forks a child that sleeps, and kills and reaps it (not timed).
void BM_CgroupPerWorker(benchmark::State& state) {
  absl::StatusOr<std::unique_ptr<CgroupTree>> tree = CgroupTree::Create(0);
  if (!tree.ok()) {
    state.SkipWithError(std::string(tree.status().message()).c_str());
    return;
  }
  for (auto _ : state) {
    state.PauseTiming();
    pid_t child = ForkSleeper();
    if (child < 0) {
      state.SkipWithError("fork failed");
      break;
    }
    state.ResumeTiming();
    absl::StatusOr<std::unique_ptr<WorkerCgroup>> group =
        (*tree)->Attach(child, WorkerCgroupLimits{256, 4ull << 30, 10});
    state.PauseTiming();
    KillAndReap(child);
    state.ResumeTiming();
    if (!group.ok()) {
      state.SkipWithError(std::string(group.status().message()).c_str());
      break;
    }
    group->reset();  // the group is removed once empty
  }
}
BENCHMARK(BM_CgroupPerWorker)->UseRealTime()->Unit(benchmark::kMicrosecond);

// The same 16-byte echo over a socketpair, but to a thread of this process: separates the
// cost of waking another thread from the cost of crossing into another process.
void BM_CrossThreadRoundTrip(benchmark::State& state) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    state.SkipWithError("socketpair failed");
    return;
  }
  std::thread echo([fd = fds[1]] {
    char message[kEchoMessageBytes];
    while (ReadFull(fd, message, sizeof(message)) && WriteFull(fd, message, sizeof(message))) {
    }
  });
  char message[kEchoMessageBytes] = "ffibox echo";
  for (auto _ : state) {
    if (!WriteFull(fds[0], message, sizeof(message)) ||
        !ReadFull(fds[0], message, sizeof(message))) {
      state.SkipWithError("echo thread went away");
      break;
    }
  }
  close(fds[0]);  // the thread sees EOF and returns
  echo.join();
  close(fds[1]);
}
BENCHMARK(BM_CrossThreadRoundTrip)->UseRealTime();

// ---------------------------------------------------------------------------------------
// ffibox
// ---------------------------------------------------------------------------------------

// A Ping answered by the broker itself (no worker): client -> broker -> client.
void BM_FfiboxPing(benchmark::State& state) {
  FfiboxFixture* ffibox = GetFfibox(state);
  if (ffibox == nullptr) return;
  v1::Request ping;
  ping.mutable_ping();
  for (auto _ : state) {
    absl::StatusOr<v1::Response> response = ffibox->session->Send(ping);
    if (!response.ok()) {
      state.SkipWithError(response.status().ToString().c_str());
      break;
    }
  }
}
BENCHMARK(BM_FfiboxPing)->UseRealTime();

// cos(0.5) through the typed C++ client: client -> broker -> worker -> ffi_call and back.
void BM_FfiboxCallCos(benchmark::State& state) {
  FfiboxFixture* ffibox = GetFfibox(state);
  if (ffibox == nullptr) return;
  const double expected = std::cos(0.5);
  for (auto _ : state) {
    absl::StatusOr<double> result = (*ffibox->cos)(0.5);
    if (!result.ok() || *result != expected) {
      state.SkipWithError(result.ok() ? "cos(0.5) returned a wrong value"
                                      : result.status().ToString().c_str());
      break;
    }
  }
}
BENCHMARK(BM_FfiboxCallCos)->UseRealTime();

// The CPU time so far of ffiboxd `server` and its workers (all their threads), by their
// CPU-time clocks; -1 when one cannot be read.
int64_t ServerSideCpuNanos(pid_t server) {
  std::vector<pid_t> pids = test_support::WorkersOf(server);
  pids.push_back(server);
  int64_t total = 0;
  for (pid_t pid : pids) {
    clockid_t clock;
    struct timespec used;
    if (clock_getcpuclockid(pid, &clock) != 0 || clock_gettime(clock, &used) != 0) return -1;
    total += int64_t{used.tv_sec} * 1000000000 + used.tv_nsec;
  }
  return total;
}

// Runs `loop` and reports what the server side spent on a CPU per iteration as the counter
// server_cpu_us (the CPU column is the client's). The worker's spin for the next request
// (kFollowingSpin) is in it.
void WithServerCpu(benchmark::State& state, pid_t server, const std::function<void()>& loop) {
  const int64_t before = ServerSideCpuNanos(server);
  loop();
  const int64_t after = ServerSideCpuNanos(server);
  if (before >= 0 && after >= before) {
    state.counters["server_cpu_us"] = benchmark::Counter(static_cast<double>(after - before) / 1000,
                                                         benchmark::Counter::kAvgIterations);
  }
}

// fire_handler(x), whose native code calls a client callback once (it returns x + 1): client
// -> broker -> worker -> closure -> CallbackInvoke to the client's callback thread ->
// CallbackReturn -> worker -> back to the caller. Two round trips through both hops.
void BM_FfiboxCallbackRoundTrip(benchmark::State& state) {
  FfiboxFixture* ffibox = GetFfibox(state);
  if (ffibox == nullptr) return;
  if (!ffibox->callback_status.ok()) {
    state.SkipWithError(ffibox->callback_status.ToString().c_str());
    return;
  }
  WithServerCpu(state, ffibox->server->pid(),
                [&] { FireHandlerInALoop(state, *ffibox->firing.fire); });
}
BENCHMARK(BM_FfiboxCallbackRoundTrip)->UseRealTime();

// memset on an INOUT buffer of state.range(0) bytes: the bytes travel client -> broker ->
// worker and back, each way through protobuf. Bytes/s counts the buffer size once per call.
void BM_FfiboxCallBuffer(benchmark::State& state) {
  FfiboxFixture* ffibox = GetFfibox(state);
  if (ffibox == nullptr) return;
  const size_t size = static_cast<size_t>(state.range(0));
  Buffer buffer = Buffer::InOut(std::string(size, '\0'));
  int fill = 0;
  for (auto _ : state) {
    fill = (fill + 1) & 0x7f;
    absl::StatusOr<RemotePtr> result = (*ffibox->memset)(buffer, fill, size);
    if (!result.ok()) {
      state.SkipWithError(result.status().ToString().c_str());
      break;
    }
    if (buffer.data.size() != size || buffer.data[size - 1] != static_cast<char>(fill)) {
      state.SkipWithError("memset did not fill the buffer");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(size));
}
BENCHMARK(BM_FfiboxCallBuffer)
    ->Arg(64)
    ->Arg(4096)
    ->Arg(65536)
    ->Arg(1 << 19)
    ->Arg(1 << 20)
    ->UseRealTime();

// cos(0.5) as raw Call requests with kPipelineDepth in flight on one session stream
// (Session::SendAsync): time per iteration is the inverse of the call throughput.
void BM_FfiboxCallCosPipelined(benchmark::State& state) {
  FfiboxFixture* ffibox = GetFfibox(state);
  if (ffibox == nullptr) return;
  v1::Request request;
  v1::Call* call = request.mutable_call();
  call->set_function(ffibox->cos->raw().handle());
  call->add_args()->set_float_value(0.5);
  const int depth = static_cast<int>(state.range(0));
  std::deque<std::future<absl::StatusOr<v1::Response>>> in_flight;
  for (int i = 0; i < depth; ++i) in_flight.push_back(ffibox->session->SendAsync(request));
  for (auto _ : state) {
    absl::StatusOr<v1::Response> response = in_flight.front().get();
    in_flight.pop_front();
    if (!response.ok() || response->has_error() || !response->has_call()) {
      state.SkipWithError(response.ok() ? response->error().message().c_str()
                                        : response.status().ToString().c_str());
      break;
    }
    in_flight.push_back(ffibox->session->SendAsync(request));
  }
  for (auto& pending : in_flight) pending.wait();  // drain before the next benchmark
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FfiboxCallCosPipelined)->Arg(kPipelineDepth)->UseRealTime();

// ---------------------------------------------------------------------------------------
// add_int(int, int): one small call, alone and in batches
// ---------------------------------------------------------------------------------------

// add_int of the test library, loaded into the shared fixture's session by the first caller
// (threaded runs share it), or nullptr after reporting why. Never destroyed: it must not
// outlive main's teardown of the session.
const Function<int(int, int)>* GetAddInt(benchmark::State& state) {
  static absl::StatusOr<Function<int(int, int)>>* add_int = [&state] {
    FfiboxFixture* ffibox = GetFfibox(state);
    if (ffibox == nullptr) {
      return new absl::StatusOr<Function<int(int, int)>>(absl::UnavailableError("no ffiboxd"));
    }
    char resolved[PATH_MAX];
    absl::StatusOr<Library> testlib =
        realpath(TestLibPath().c_str(), resolved) == nullptr
            ? absl::StatusOr<Library>(absl::NotFoundError("the test library"))
            : ffibox->session->Load(resolved);
    return new absl::StatusOr<Function<int(int, int)>>(
        testlib.ok() ? testlib->Function<int(int, int)>("add_int")
                     : absl::StatusOr<Function<int(int, int)>>(testlib.status()));
  }();
  if (!add_int->ok()) {
    state.SkipWithError(add_int->status().ToString().c_str());
    return nullptr;
  }
  return &**add_int;
}

// add_int(i, 1) through the typed C++ client, one call per round trip.
void BM_FfiboxCallAdd(benchmark::State& state) {
  const Function<int(int, int)>* add = GetAddInt(state);
  if (add == nullptr) return;
  WithServerCpu(state, ffibox_fixture->server->pid(), [&] { CallAddInALoop(state, *add); });
}
BENCHMARK(BM_FfiboxCallAdd)->UseRealTime();

// state.range(0) add_int calls in one Batch per iteration: built, run and every sum decoded
// and checked. Items/s is calls per second. With 2 threads, two batches are in flight on the
// one session: one is built and decoded by the client while the server runs the other.
void BM_FfiboxCallAddBatched(benchmark::State& state) {
  const Function<int(int, int)>* add = GetAddInt(state);
  if (add == nullptr) return;
  const int size = static_cast<int>(state.range(0));
  std::vector<BatchCall<int>> sums;
  sums.reserve(size);
  int base = 0;
  Session& session = *ffibox_fixture->session;
  for (auto _ : state) {
    Batch batch = session.NewBatch();
    sums.clear();
    for (int i = 0; i < size; ++i) sums.push_back(batch.Add(*add, base + i, 1));
    if (absl::Status ran = batch.Run(); !ran.ok()) {
      state.SkipWithError(ran.ToString().c_str());
      break;
    }
    for (int i = 0; i < size; ++i) {
      absl::StatusOr<int> sum = batch.Result(sums[i]);
      if (!sum.ok() || *sum != base + i + 1) {
        state.SkipWithError(sum.ok() ? "add_int returned a wrong sum"
                                     : sum.status().ToString().c_str());
        return;
      }
    }
    base += size;
  }
  state.SetItemsProcessed(state.iterations() * size);
}
BENCHMARK(BM_FfiboxCallAddBatched)->Arg(1)->Arg(16)->Arg(256)->Arg(4096)->UseRealTime();
BENCHMARK(BM_FfiboxCallAddBatched)->Arg(256)->Arg(4096)->Threads(2)->UseRealTime();

// Session start: open a session, load libm and call cos once (the open takes a pooled
// worker; without a pool the load, the first request that needs one, starts it); the close
// is not timed. On its own ffiboxd with --pool_size=`pool_size`. Counters give each step's
// share in ms.
// `pipelined`: the load, the resolve and the call are sent back to back (LoadAsync,
// FunctionAsync) and only the call is waited for; its counter covers all three.
void SessionStart(benchmark::State& state, int pool_size, bool pipelined = false) {
  DropFixtures();  // no other family's sessions or servers beside this one's
  absl::StatusOr<std::unique_ptr<TestServer>> server =
      TestServer::Start({absl::StrCat("--pool_size=", pool_size)});
  if (!server.ok()) {
    state.SkipWithError(server.status().ToString().c_str());
    return;
  }
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect((*server)->address());
  if (!client.ok()) {
    state.SkipWithError(client.status().ToString().c_str());
    return;
  }
  absl::SleepFor(absl::Milliseconds(200));  // let the pool fill
  // Where the time goes: the open, the load (which takes or starts the worker), the resolve
  // and the call.
  absl::Duration phases[4];
  for (auto _ : state) {
    absl::Time mark = absl::Now();
    auto phase_done = [&](int phase) {
      const absl::Time now = absl::Now();
      phases[phase] += now - mark;
      mark = now;
    };
    absl::StatusOr<std::unique_ptr<Session>> session = (*client)->OpenSession();
    phase_done(0);
    std::optional<Library> libm;
    absl::StatusOr<Function<double(double)>> cos = absl::CancelledError();
    if (!session.ok()) {
      cos = session.status();
    } else if (pipelined) {
      libm = (*session)->LoadAsync("libm.so.6");
      cos = libm->FunctionAsync<double(double)>("cos");
    } else {
      absl::StatusOr<Library> loaded = (*session)->Load("libm.so.6");
      phase_done(1);
      if (loaded.ok()) libm = *std::move(loaded);
      cos = loaded.ok() ? libm->Function<double(double)>("cos")
                        : absl::StatusOr<Function<double(double)>>(loaded.status());
      phase_done(2);
    }
    absl::StatusOr<double> result = cos.ok() ? (*cos)(0.5) : absl::StatusOr<double>(cos.status());
    phase_done(3);
    if (!result.ok()) {
      state.SkipWithError(result.status().ToString().c_str());
      break;
    }
    state.PauseTiming();
    // Handles hold the session's stream: all go before the session closes, untimed.
    cos = absl::CancelledError();
    libm.reset();
    session->reset();
    // A session opened every few milliseconds at most: the pool refills in the background
    // between them, as it would between users' sessions.
    absl::SleepFor(absl::Milliseconds(20));
    state.ResumeTiming();
  }
  const char* names[] = {"open_ms", "load_ms", "resolve_ms", "call_ms"};
  for (int phase = 0; phase < 4 && state.iterations() > 0; ++phase) {
    if (pipelined && (phase == 1 || phase == 2)) continue;
    state.counters[names[phase]] =
        absl::ToDoubleMilliseconds(phases[phase]) / static_cast<double>(state.iterations());
  }
}

void BM_SessionStartNoPool(benchmark::State& state) { SessionStart(state, 0); }
BENCHMARK(BM_SessionStartNoPool)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_SessionStartWithPool(benchmark::State& state) { SessionStart(state, 2); }
BENCHMARK(BM_SessionStartWithPool)->UseRealTime()->Unit(benchmark::kMicrosecond);

// The same start with the load, the resolve and the call pipelined (call_ms covers them).
void BM_SessionStartPipelined(benchmark::State& state) { SessionStart(state, 2, true); }
BENCHMARK(BM_SessionStartPipelined)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace bench
}  // namespace ffibox

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  // As ffiboxd does: the client and the in-process floors alike (docs/benchmarks.md).
  ffibox::UseReleaseMutexChecks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("ffiboxd", ffibox::test_support::RunfilePath("server/ffiboxd"));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  // Close the sessions before their servers go, and stop the in-process gRPC servers.
  ffibox::bench::DropFixtures();
  return 0;
}
