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
  ASSERT_EQ(mkdir(scratch_.c_str(), 0711), 0);
  auto claimed = PrivateDirectory::Claim(dir_, scratch_);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  (*claimed)->Arm();
  claimed->reset();
  EXPECT_FALSE(Exists(dir_));
}

TEST_F(PrivateDirectoryTest, StaysWithItsLogUnlessTheServerShutDown) {
  Touch(log_);
  auto claimed = PrivateDirectory::Claim(dir_, "");
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  claimed->reset();  // a start that failed: the client reads the log
  EXPECT_TRUE(Exists(log_));
}

TEST_F(PrivateDirectoryTest, KeepsEverythingWhenItHoldsSomethingElse) {
  Touch(log_);
  Touch(dir_ + "/other");
  auto claimed = PrivateDirectory::Claim(dir_, "");
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  (*claimed)->Arm();
  claimed->reset();
  EXPECT_TRUE(Exists(log_));
  EXPECT_TRUE(Exists(dir_ + "/other"));
}

TEST_F(PrivateDirectoryTest, KeepsAScratchRootThatIsNotEmpty) {
  ASSERT_EQ(mkdir(scratch_.c_str(), 0711), 0);
  Touch(scratch_ + "/left");
  auto claimed = PrivateDirectory::Claim(dir_, scratch_);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  (*claimed)->Arm();
  claimed->reset();
  EXPECT_TRUE(Exists(scratch_ + "/left"));
  unlink((scratch_ + "/left").c_str());
}

TEST_F(PrivateDirectoryTest, LeavesAScratchRootElsewhere) {
  // A scratch root below a subdirectory, or beside the directory, is not the private one.
  const std::string beside = dir_ + "-scratch";
  ASSERT_EQ(mkdir(beside.c_str(), 0711), 0);
  auto claimed = PrivateDirectory::Claim(dir_, beside);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  (*claimed)->Arm();
  claimed->reset();
  EXPECT_FALSE(Exists(dir_));
  EXPECT_TRUE(Exists(beside));
  rmdir(beside.c_str());
}

TEST_F(PrivateDirectoryTest, RefusesWhatIsNotAPrivateDirectoryOfThisUser) {
  auto refused = [](const std::string& path, const std::string& why) {
    auto claimed = PrivateDirectory::Claim(path, "");
    ASSERT_FALSE(claimed.ok()) << path;
    EXPECT_EQ(claimed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(claimed.status().message().find(why), std::string::npos) << claimed.status();
  };
  refused("relative/dir", "not an absolute path");
  refused(dir_ + "/missing", "cannot be read");
  Touch(dir_ + "/other");
  refused(dir_ + "/other", "not a directory");
  ASSERT_EQ(symlink(dir_.c_str(), (dir_ + "/link").c_str()), 0);
  refused(dir_ + "/link", "symlinks are refused");
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
