#include "bench/bench_fixtures.h"

#include <limits.h>
#include <stdlib.h>

#include <fstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "core/status_macros.h"

namespace ffibox {
namespace bench {
namespace {

// The drop function of each held fixture, by owner, in the order they were held.
std::vector<std::pair<const void*, std::function<void()>>>& HeldFixtures() {
  static auto* held = new std::vector<std::pair<const void*, std::function<void()>>>();
  return *held;
}

}  // namespace

void HoldFixture(const void* owner, std::function<void()> drop) {
  std::vector<std::pair<const void*, std::function<void()>>> others = std::move(HeldFixtures());
  HeldFixtures().clear();
  for (auto& [other, drop_other] : others) {
    if (other != owner) drop_other();
  }
  HeldFixtures().emplace_back(owner, std::move(drop));
}

void DropFixtures() {
  std::vector<std::pair<const void*, std::function<void()>>> held = std::move(HeldFixtures());
  HeldFixtures().clear();
  for (auto it = held.rbegin(); it != held.rend(); ++it) it->second();
}

absl::StatusOr<std::unique_ptr<FfiboxServer>> StartFfiboxServer(
    const std::vector<std::string>& flags, absl::Duration settle) {
  auto started = std::make_unique<FfiboxServer>();
  FFIBOX_ASSIGN_OR_RETURN(started->server, test_support::TestServer::Start(flags));
  FFIBOX_ASSIGN_OR_RETURN(started->client, Client::Connect(started->server->address()));
  absl::SleepFor(settle);
  return started;
}

SessionOptions QuietSessionOptions() {
  SessionOptions options;
  options.on_output = [](v1::OutputStream, absl::string_view) {};
  return options;
}

absl::StatusOr<Library> LoadTestLibrary(Session& session) {
  char resolved[PATH_MAX];
  if (realpath(test_support::TestLibPath().c_str(), resolved) == nullptr) {
    return absl::NotFoundError(absl::StrCat("test library ", test_support::TestLibPath()));
  }
  return session.Load(resolved);
}

void CallAddInALoop(benchmark::State& state, const Function<int(int, int)>& add) {
  int i = 0;
  for (auto _ : state) {
    absl::StatusOr<int> sum = add(i, 1);
    if (!sum.ok() || *sum != i + 1) {
      state.SkipWithError(sum.ok() ? "add_int returned a wrong sum"
                                   : sum.status().ToString().c_str());
      break;
    }
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}

absl::StatusOr<FiringHandler> PrepareFiringHandler(Session& session, Library& testlib) {
  FiringHandler firing;
  FFIBOX_ASSIGN_OR_RETURN(
      Callback<int(int)> handler,
      session.DefineCallback<int(int)>([](int x) -> absl::StatusOr<int> { return x + 1; }));
  firing.handler.emplace(std::move(handler));
  FFIBOX_ASSIGN_OR_RETURN(auto register_handler,
                          testlib.Function<void(Callback<int(int)>)>("register_handler"));
  FFIBOX_RETURN_IF_ERROR(register_handler(*firing.handler));
  FFIBOX_ASSIGN_OR_RETURN(auto fire, testlib.Function<int(int)>("fire_handler"));
  firing.fire.emplace(std::move(fire));
  return firing;
}

void FireHandlerInALoop(benchmark::State& state, const Function<int(int)>& fire) {
  int x = 0;
  for (auto _ : state) {
    absl::StatusOr<int> result = fire(x);
    if (!result.ok() || *result != x + 1) {
      state.SkipWithError(result.ok() ? "fire_handler returned a wrong value"
                                      : result.status().ToString().c_str());
      break;
    }
    ++x;
  }
}

absl::StatusOr<Function<void*(Buffer&, int, size_t)>> ResolveMemset(Session& session) {
  FFIBOX_ASSIGN_OR_RETURN(Library libc, session.Load("libc.so.6"));
  return libc.Function<void*(Buffer&, int, size_t)>("memset");
}

absl::StatusOr<int64_t> ProcessMemoryBytes(pid_t pid, absl::string_view file,
                                           absl::string_view field) {
  const std::string path = absl::StrCat("/proc/", pid, "/", file);
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, field) || !absl::ConsumePrefix(&rest, ":")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    int64_t kib = 0;
    if (!absl::ConsumeSuffix(&rest, " kB") || !absl::SimpleAtoi(rest, &kib)) break;
    return kib * 1024;
  }
  return absl::NotFoundError(absl::StrCat("no ", field, " in ", path));
}

}  // namespace bench
}  // namespace ffibox
