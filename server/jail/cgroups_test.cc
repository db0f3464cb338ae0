// The per-worker cgroups on this host's hierarchy (server/jail/cgroups.h): a real tree, a
// real process moved into its group. Skipped where this process cannot make cgroups.
#include "server/jail/cgroups.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

// The path of a file this process has a descriptor open on whose path ends with `suffix`;
// "" if none.
std::string OpenFileEndingWith(const std::string& suffix) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    const std::filesystem::path target = std::filesystem::read_symlink(entry.path(), error);
    if (!error && absl::EndsWith(target.string(), suffix)) return target.string();
  }
  return "";
}

bool HasOpenFileEndingWith(const std::string& suffix) {
  return !OpenFileEndingWith(suffix).empty();
}

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A child process that sleeps until killed; reaped by the destructor.
class Sleeper {
 public:
  Sleeper() : pid_(fork()) {
    if (pid_ == 0) {
      pause();
      _exit(0);
    }
  }
  ~Sleeper() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }

 private:
  const pid_t pid_;
};

// A worker's limit hits are read when its requests end; the counter files are opened when
// its group is made (for a pooled worker, before any session), not on a session's path.
TEST(WorkerCgroup, AttachOpensTheLimitHitCounters) {
  absl::StatusOr<std::unique_ptr<CgroupTree>> tree = CgroupTree::Create(0);
  if (!tree.ok()) GTEST_SKIP() << "no cgroups here: " << tree.status();
  absl::StatusOr<std::unique_ptr<WorkerCgroup>> group;
  {
    Sleeper child;
    ASSERT_GT(child.pid(), 0);
    group = (*tree)->Attach(child.pid(), WorkerCgroupLimits{256, uint64_t{1} << 30, 10});
    EXPECT_OK(group);
    EXPECT_TRUE(HasOpenFileEndingWith("/pids.events"));
    EXPECT_TRUE(HasOpenFileEndingWith("/memory.events") ||
                HasOpenFileEndingWith("/memory.failcnt"));
  }
  if (group.ok()) group->reset();  // the group goes once its process is reaped
  EXPECT_FALSE(HasOpenFileEndingWith("/pids.events"));
}

// Each request's start lifts the idle CPU quota and its end may apply it again; a write is made
// only when the quota changes, so requests that find it lifted (back to back, the session's
// throttle not yet back on) cost no write on their path.
TEST(WorkerCgroup, SetBusyWritesTheQuotaOnlyWhenItChanges) {
  absl::StatusOr<std::unique_ptr<CgroupTree>> tree = CgroupTree::Create(0);
  if (!tree.ok()) GTEST_SKIP() << "no cgroups here: " << tree.status();
  // Declared before the child: an assertion that fails reaps the child, then the group goes.
  absl::StatusOr<std::unique_ptr<WorkerCgroup>> group;
  auto child = std::make_unique<Sleeper>();
  ASSERT_GT(child->pid(), 0);
  group = (*tree)->Attach(child->pid(), WorkerCgroupLimits{256, uint64_t{1} << 30, 10});
  ASSERT_OK(group);
  ASSERT_OK((*group)->SetBusy(true));
  std::string quota = OpenFileEndingWith("/cpu.max");
  const bool v2 = !quota.empty();
  if (!v2) quota = OpenFileEndingWith("/cpu.cfs_quota_us");
  ASSERT_FALSE(quota.empty()) << "SetBusy keeps the quota file open";
  const std::string lifted = v2 ? "max 100000\n" : "-1\n";
  const std::string idle = v2 ? "10000 100000\n" : "10000\n";
  EXPECT_EQ(ReadWhole(quota), lifted);

  // Changed behind the group's back: a SetBusy that asks for what it wrote last leaves it.
  const std::string marker = v2 ? "70000 100000\n" : "70000\n";
  std::ofstream(quota) << marker;
  ASSERT_EQ(ReadWhole(quota), marker);
  ASSERT_OK((*group)->SetBusy(true));
  EXPECT_EQ(ReadWhole(quota), marker);

  ASSERT_OK((*group)->SetBusy(false));
  EXPECT_EQ(ReadWhole(quota), idle);
  std::ofstream(quota) << marker;
  ASSERT_OK((*group)->SetBusy(false));
  EXPECT_EQ(ReadWhole(quota), marker);
  ASSERT_OK((*group)->SetBusy(true));
  EXPECT_EQ(ReadWhole(quota), lifted);
  child.reset();
  group->reset();  // the group goes once its process is reaped
}

}  // namespace
}  // namespace ffibox
