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

std::vector<std::function<void()>>& Teardowns() {
  static auto* teardowns = new std::vector<std::function<void()>>();
  return *teardowns;
}

}  // namespace

void AtBenchmarksEnd(std::function<void()> teardown) { Teardowns().push_back(std::move(teardown)); }

void RunBenchmarksEndTeardowns() {
  std::vector<std::function<void()>> teardowns = std::move(Teardowns());
  Teardowns().clear();
  for (auto it = teardowns.rbegin(); it != teardowns.rend(); ++it) (*it)();
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
