#include "server/broker/library_descriptor.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

// A file readable by others in a directory closed to them: a root ffiboxd hands it to a
// worker (which runs as nobody) only for a client that may read it anyway.
TEST(OpenLibraryForWorkerTest, AFileInADirectoryClosedToOthersGoesOnlyToItsOwnUsers) {
  char dir[] = "/tmp/ffibox-closed-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  ASSERT_EQ(chmod(dir, 0700), 0);
  const std::string path = std::string(dir) + "/lib.so";
  const int made = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(made, 0);
  ASSERT_EQ(write(made,
                  "\x7f"
                  "ELF",
                  4),
            4);
  close(made);
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);

  absl::StatusOr<int> tenant = OpenLibraryForWorker(path, /*worker_is_other=*/true);
  if (geteuid() == 0) {
    ASSERT_FALSE(tenant.ok());
    EXPECT_TRUE(absl::IsPermissionDenied(tenant.status())) << tenant.status();
    EXPECT_TRUE(absl::StrContains(tenant.status().message(), "others may not search"))
        << tenant.status();
  } else {
    // An unprivileged ffiboxd's rights are its user's, the client's own.
    ASSERT_TRUE(tenant.ok()) << tenant.status();
    close(*tenant);
  }
  absl::StatusOr<int> own = OpenLibraryForWorker(path, /*worker_is_other=*/true,
                                                 /*client_reads_as_broker=*/true);
  ASSERT_TRUE(own.ok()) << own.status();
  close(*own);
  absl::StatusOr<int> same_user = OpenLibraryForWorker(path, /*worker_is_other=*/false);
  ASSERT_TRUE(same_user.ok()) << same_user.status();
  close(*same_user);
  unlink(path.c_str());
  rmdir(dir);
}

// No file of the kernel's own filesystems, whoever asks: /proc/<pid>/maps is 0444 but opens
// only for the process's tracers.
TEST(OpenLibraryForWorkerTest, NoFileOfTheKernelsOwnFilesystems) {
  for (const char* path : {"/proc/self/maps", "/proc/self/status", "/sys/kernel/uevent_seqnum"}) {
    for (bool own : {false, true}) {
      absl::StatusOr<int> fd = OpenLibraryForWorker(path, /*worker_is_other=*/true, own);
      ASSERT_FALSE(fd.ok()) << path;
      EXPECT_TRUE(absl::StrContains(fd.status().message(), "filesystem, not a library"))
          << fd.status();
    }
  }
}

}  // namespace
}  // namespace ffibox
