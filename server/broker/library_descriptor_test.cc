#include "server/broker/library_descriptor.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

constexpr uid_t kNobody = 65534;

// A file of `bytes` at `path` with `mode`.
void MakeFile(const std::string& path, mode_t mode,
              const std::string& bytes =
                  "\x7f"
                  "ELF") {
  const int made = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(made, 0) << path;
  ASSERT_EQ(write(made, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  close(made);
  ASSERT_EQ(chmod(path.c_str(), mode), 0);
}

// Whether `fd` is a sealed copy (a memfd) rather than the file itself.
bool IsCopy(int fd) { return fcntl(fd, F_GET_SEALS) >= 0; }

// OpenLibraryForWorker for a session of its own.
absl::StatusOr<int> Open(const std::string& path, std::optional<uid_t> worker_uid,
                         bool worker_is_other, bool client_reads_as_broker = false) {
  LibraryCopies copies;
  return OpenLibraryForWorker(path, &copies, worker_uid, worker_is_other, client_reads_as_broker);
}

// A new directory under /tmp named from `prefix` ("/tmp/ffibox-x-XXXXXX"), of `mode`.
std::string TempDirectory(const std::string& prefix, mode_t mode) {
  std::string dir = prefix;
  EXPECT_NE(mkdtemp(dir.data()), nullptr) << prefix;
  EXPECT_EQ(chmod(dir.c_str(), mode), 0) << dir;
  return dir;
}

// A file readable by others in a directory closed to them: a root ffiboxd hands it to a
// worker (which runs as nobody) only for a client that may read it anyway.
TEST(OpenLibraryForWorkerTest, AFileInADirectoryClosedToOthersGoesOnlyToItsOwnUsers) {
  const std::string dir = TempDirectory("/tmp/ffibox-closed-XXXXXX", 0700);
  const std::string path = dir + "/lib.so";
  MakeFile(path, 0644);

  absl::StatusOr<int> tenant = Open(path, kNobody, /*worker_is_other=*/true);
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
  absl::StatusOr<int> own = Open(path, kNobody, /*worker_is_other=*/true,
                                 /*client_reads_as_broker=*/true);
  ASSERT_TRUE(own.ok()) << own.status();
  close(*own);
  absl::StatusOr<int> same_user = Open(path, kNobody, /*worker_is_other=*/false);
  ASSERT_TRUE(same_user.ok()) << same_user.status();
  close(*same_user);
  unlink(path.c_str());
  rmdir(dir.c_str());
}

// No symbolic link is followed on the way to the file: a directory of the admitted path
// swapped for a link to another (another session's /tmp through /proc/<pid>/root, a
// directory closed to the client) is refused, as are a link as the file itself and
// anything but a regular file, opened or not (a device's open has effects).
TEST(OpenLibraryForWorkerTest, NoLinkIsFollowedAndNothingButARegularFileIsOpened) {
  const std::string dir = TempDirectory("/tmp/ffibox-links-XXXXXX", 0755);
  const std::string real = dir + "/real";
  ASSERT_EQ(mkdir(real.c_str(), 0755), 0);
  MakeFile(real + "/lib.so", 0644);
  absl::StatusOr<int> direct = Open(real + "/lib.so", kNobody, true);
  ASSERT_TRUE(direct.ok()) << direct.status();
  close(*direct);
  const std::string swapped = dir + "/swapped";
  ASSERT_EQ(symlink(real.c_str(), swapped.c_str()), 0);
  ASSERT_EQ(symlink((real + "/lib.so").c_str(), (real + "/link.so").c_str()), 0);
  for (const std::string& path :
       {swapped + "/lib.so", real + "/link.so", std::string("/proc/self/root") + real + "/lib.so",
        std::string("/dev/null"), std::string("/dev/zero")}) {
    absl::StatusOr<int> fd = Open(path, kNobody, true);
    ASSERT_FALSE(fd.ok()) << path;
    EXPECT_TRUE(absl::IsPermissionDenied(fd.status())) << fd.status();
  }
  unlink((real + "/link.so").c_str());
  unlink(swapped.c_str());
  unlink((real + "/lib.so").c_str());
  rmdir(real.c_str());
  rmdir(dir.c_str());
}

// The worker gets a sealed copy of a file it could change through the descriptor (reopen it
// for writing, change its mode or times): one its uid owns or that group or others may
// write; the file itself otherwise.
TEST(OpenLibraryForWorkerTest, AFileTheWorkerCouldChangeGoesAsACopy) {
  const std::string dir = TempDirectory("/tmp/ffibox-copies-XXXXXX", 0755);
  const std::string path = dir + "/lib.so";
  MakeFile(path, 0644,
           "\x7f"
           "ELF and more");
  for (const auto& [worker_uid, mode, copied] :
       {std::tuple<std::optional<uid_t>, mode_t, bool>{kNobody, 0644, false},
        {geteuid(), 0644, true},
        {geteuid(), 0444, true},
        {kNobody, 0664, true},
        {kNobody, 0646, true},
        {std::nullopt, 0646, false}}) {  // no jail: the worker may open it itself
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
    absl::StatusOr<int> fd = Open(path, worker_uid, /*worker_is_other=*/true);
    ASSERT_TRUE(fd.ok()) << fd.status();
    EXPECT_EQ(IsCopy(*fd), copied) << worker_uid.value_or(-1) << " " << std::oct << mode;
    char bytes[32] = {};
    EXPECT_EQ(pread(*fd, bytes, sizeof bytes, 0), 13);
    EXPECT_EQ(std::string(bytes, 13),
              "\x7f"
              "ELF and more");
    close(*fd);
  }
  unlink(path.c_str());
  rmdir(dir.c_str());
}

// A session's loads of one file are handed one copy (the loader then sees one file: one
// instance of the library, whose state a second load shares, as in-process); the copies a
// session holds fit a budget.
TEST(OpenLibraryForWorkerTest, ASessionsLoadsOfOneFileShareOneCopyWithinABudget) {
  const std::string dir = TempDirectory("/tmp/ffibox-shared-XXXXXX", 0755);
  const std::string path = dir + "/lib.so";
  MakeFile(path, 0644);
  LibraryCopies copies;
  absl::StatusOr<int> first = OpenLibraryForWorker(path, &copies, geteuid(), true, false);
  absl::StatusOr<int> second = OpenLibraryForWorker(path, &copies, geteuid(), true, false);
  ASSERT_TRUE(first.ok() && second.ok()) << first.status() << second.status();
  struct stat a, b;
  ASSERT_EQ(fstat(*first, &a), 0);
  ASSERT_EQ(fstat(*second, &b), 0);
  EXPECT_TRUE(IsCopy(*first));
  EXPECT_EQ(std::make_pair(a.st_dev, a.st_ino), std::make_pair(b.st_dev, b.st_ino));
  close(*first);
  close(*second);
  // Changed since: another copy.
  MakeFile(path, 0644,
           "\x7f"
           "ELF, rebuilt");
  absl::StatusOr<int> rebuilt = OpenLibraryForWorker(path, &copies, geteuid(), true, false);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  ASSERT_EQ(fstat(*rebuilt, &b), 0);
  EXPECT_NE(a.st_ino, b.st_ino);
  close(*rebuilt);
  // Past the budget (a sparse file: nothing is copied before it is refused).
  const std::string large = dir + "/large.so";
  MakeFile(large, 0644);
  ASSERT_EQ(truncate(large.c_str(), static_cast<off_t>(kMaxLibraryCopyBytes)), 0);
  absl::StatusOr<int> refused = OpenLibraryForWorker(large, &copies, geteuid(), true, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "session's copies"))
      << refused.status();
  unlink(large.c_str());
  unlink(path.c_str());
  rmdir(dir.c_str());
}

// No file of the kernel's own filesystems, whoever asks: /proc/<pid>/maps is 0444 but opens
// only for the process's tracers.
TEST(OpenLibraryForWorkerTest, NoFileOfTheKernelsOwnFilesystems) {
  const std::string proc = absl::StrCat("/proc/", getpid());
  for (const std::string& path :
       {proc + "/maps", proc + "/status", std::string("/sys/kernel/uevent_seqnum")}) {
    for (bool own : {false, true}) {
      absl::StatusOr<int> fd = Open(path, kNobody, /*worker_is_other=*/true, own);
      ASSERT_FALSE(fd.ok()) << path;
      EXPECT_TRUE(absl::StrContains(fd.status().message(), "filesystem, not a library"))
          << fd.status();
    }
  }
}

}  // namespace
}  // namespace ffibox
