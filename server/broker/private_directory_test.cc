#include "server/broker/private_directory.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

void Touch(const std::string& path) {
  const int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << path;
  close(fd);
}

class PrivateDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/ffibox-private-directory-test-XXXXXX";
    ASSERT_NE(mkdtemp(name), nullptr);
    dir_ = name;
    log_ = absl::StrCat(dir_, "/", PrivateDirectory::kLogName);
    scratch_ = dir_ + "/scratch";
  }
  void TearDown() override {
    for (const std::string& path : {log_, dir_ + "/other", dir_ + "/link"}) unlink(path.c_str());
    rmdir(scratch_.c_str());
    rmdir(dir_.c_str());
  }
  std::string dir_, log_, scratch_;
};

TEST_F(PrivateDirectoryTest, RemovesTheLogTheScratchRootAndItselfAtShutdown) {
  Touch(log_);
  auto claimed = PrivateDirectory::Claim(dir_, getppid());
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(mkdir(scratch_.c_str(), 0711), 0);  // made by the server after the claim
  (*claimed)->SetScratchRoot(scratch_);
  (*claimed)->Arm();
  claimed->reset();
  EXPECT_FALSE(Exists(dir_));
}

TEST_F(PrivateDirectoryTest, StaysWithItsLogUnlessTheServerShutDown) {
  Touch(log_);
  for (const pid_t parent : {getppid(), pid_t{0}}) {
    auto claimed = PrivateDirectory::Claim(dir_, parent);
    ASSERT_TRUE(claimed.ok()) << claimed.status();
    claimed->reset();  // a start that failed: its client reads the log
    EXPECT_TRUE(Exists(log_)) << parent;
  }
}

TEST_F(PrivateDirectoryTest, GoesWhenItsParentHasGoneWhateverEndedTheServer) {
  Touch(log_);
  // This process is not its own parent: as seen from a server whose client has gone.
  auto claimed = PrivateDirectory::Claim(dir_, getpid());
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  claimed->reset();
  EXPECT_FALSE(Exists(dir_));
}

TEST_F(PrivateDirectoryTest, KeepsEverythingWhenItHoldsSomethingElse) {
  Touch(log_);
  auto claimed = PrivateDirectory::Claim(dir_, 0);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  Touch(dir_ + "/other");
  (*claimed)->Arm();
  claimed->reset();
  EXPECT_TRUE(Exists(log_));
  EXPECT_TRUE(Exists(dir_ + "/other"));
}

TEST_F(PrivateDirectoryTest, KeepsAScratchRootThatIsNotEmpty) {
  auto claimed = PrivateDirectory::Claim(dir_, 0);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(mkdir(scratch_.c_str(), 0711), 0);
  Touch(scratch_ + "/left");
  (*claimed)->SetScratchRoot(scratch_);
  (*claimed)->Arm();
  claimed->reset();
  EXPECT_TRUE(Exists(scratch_ + "/left"));
  unlink((scratch_ + "/left").c_str());
}

TEST_F(PrivateDirectoryTest, LeavesAScratchRootElsewhere) {
  // A scratch root below a subdirectory, or beside the directory, is not the private one.
  const std::string beside = dir_ + "-scratch";
  ASSERT_EQ(mkdir(beside.c_str(), 0711), 0);
  auto claimed = PrivateDirectory::Claim(dir_, 0);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  (*claimed)->SetScratchRoot(beside);
  (*claimed)->Arm();
  claimed->reset();
  EXPECT_FALSE(Exists(dir_));
  EXPECT_TRUE(Exists(beside));
  rmdir(beside.c_str());
}

TEST_F(PrivateDirectoryTest, LeavesADirectoryWhosePathNowNamesAnother) {
  Touch(log_);
  auto claimed = PrivateDirectory::Claim(dir_, 0);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  const std::string moved = dir_ + "-moved";
  ASSERT_EQ(rename(dir_.c_str(), moved.c_str()), 0);
  ASSERT_EQ(mkdir(dir_.c_str(), 0700), 0);  // another directory under the claimed name
  (*claimed)->Arm();
  claimed->reset();
  EXPECT_TRUE(Exists(dir_));
  EXPECT_TRUE(Exists(moved + "/" + PrivateDirectory::kLogName));
  unlink((moved + "/" + PrivateDirectory::kLogName).c_str());
  rmdir(moved.c_str());
}

TEST_F(PrivateDirectoryTest, RefusesWhatIsNotAPrivateDirectoryOfThisUser) {
  auto refused = [](const std::string& path, const std::string& why) {
    auto claimed = PrivateDirectory::Claim(path, 0);
    ASSERT_FALSE(claimed.ok()) << path;
    EXPECT_EQ(claimed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(claimed.status().message().find(why), std::string::npos) << claimed.status();
  };
  refused("relative/dir", "not an absolute path");
  refused(dir_ + "/missing", "cannot be opened");
  Touch(dir_ + "/other");
  refused(dir_ + "/other", "not a directory");
  refused(dir_, "holds other: it must hold nothing but ffiboxd.log");
  ASSERT_EQ(symlink(dir_.c_str(), (dir_ + "/link").c_str()), 0);
  refused(dir_ + "/link", "symlinks are refused");
  unlink((dir_ + "/other").c_str());
  unlink((dir_ + "/link").c_str());
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  refused(dir_, "mode 0755");
  if (geteuid() == 0) {
    ASSERT_EQ(chmod(dir_.c_str(), 0700), 0);
    ASSERT_EQ(chown(dir_.c_str(), 65534, 65534), 0);
    refused(dir_, "belongs to uid 65534");
  }
}

}  // namespace
}  // namespace ffibox
