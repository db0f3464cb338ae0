// DefaultWorkerPath on real directory trees laid out like the build and an installation.
#include "server/broker/worker_location.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace ffibox {
namespace {

class WorkerLocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/worker_location.XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    ASSERT_EQ(mkdir((root_ + "/bin").c_str(), 0755), 0);
  }

  // Creates `path` under the root (its directories too) with `mode`.
  void MakeFile(const std::string& path, mode_t mode) {
    for (size_t slash = path.find('/'); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      mkdir((root_ + "/" + path.substr(0, slash)).c_str(), 0755);
    }
    const std::string full = root_ + "/" + path;
    const int fd = open(full.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, mode);
    ASSERT_GE(fd, 0);
    close(fd);
    ASSERT_EQ(chmod(full.c_str(), mode), 0);
  }

  std::string root_;
};

TEST_F(WorkerLocationTest, WorkerBesideTheServerIsChosenFirst) {
  MakeFile("bin/ffibox-worker", 0755);
  MakeFile("libexec/ffibox/ffibox-worker", 0755);
  EXPECT_EQ(DefaultWorkerPath(root_ + "/bin/ffiboxd"), root_ + "/bin/ffibox-worker");
}

TEST_F(WorkerLocationTest, InstalledServerFindsItsWorkerInLibexec) {
  MakeFile("libexec/ffibox/ffibox-worker", 0755);
  EXPECT_EQ(DefaultWorkerPath(root_ + "/bin/ffiboxd"),
            root_ + "/bin/../libexec/ffibox/ffibox-worker");
}

TEST_F(WorkerLocationTest, NonExecutableWorkerIsPassedOver) {
  MakeFile("bin/ffibox-worker", 0644);
  MakeFile("libexec/ffibox/ffibox-worker", 0755);
  EXPECT_EQ(DefaultWorkerPath(root_ + "/bin/ffiboxd"),
            root_ + "/bin/../libexec/ffibox/ffibox-worker");
}

TEST_F(WorkerLocationTest, WithoutAnyWorkerTheOrdinaryPlaceIsNamed) {
  EXPECT_EQ(DefaultWorkerPath(root_ + "/bin/ffiboxd"), root_ + "/bin/ffibox-worker");
}

}  // namespace
}  // namespace ffibox
