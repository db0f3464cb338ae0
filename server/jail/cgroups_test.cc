// The per-worker cgroups on this host's hierarchy (server/jail/cgroups.h): a real tree, a
// real process moved into its group. Skipped where this process cannot make cgroups.
#include "server/jail/cgroups.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

// Whether this process has a descriptor open on a file whose path ends with `suffix`.
bool HasOpenFileEndingWith(const std::string& suffix) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    const std::filesystem::path target = std::filesystem::read_symlink(entry.path(), error);
    if (!error && absl::EndsWith(target.string(), suffix)) return true;
  }
  return false;
}

// A worker's limit hits are read when its requests end; the counter files are opened when
// its group is made (for a pooled worker, before any session), not on a session's path.
TEST(WorkerCgroup, AttachOpensTheLimitHitCounters) {
  absl::StatusOr<std::unique_ptr<CgroupTree>> tree = CgroupTree::Create(0);
  if (!tree.ok()) GTEST_SKIP() << "no cgroups here: " << tree.status();
  const pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  ASSERT_GT(child, 0);
  absl::StatusOr<std::unique_ptr<WorkerCgroup>> group =
      (*tree)->Attach(child, WorkerCgroupLimits{256, uint64_t{1} << 30, 10});
  EXPECT_OK(group);
  EXPECT_TRUE(HasOpenFileEndingWith("/pids.events"));
  EXPECT_TRUE(HasOpenFileEndingWith("/memory.events") || HasOpenFileEndingWith("/memory.failcnt"));
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  if (group.ok()) group->reset();  // the group goes once its process is reaped
  EXPECT_FALSE(HasOpenFileEndingWith("/pids.events"));
}

}  // namespace
}  // namespace ffibox
