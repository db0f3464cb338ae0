#include "server/broker/allowlist.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "core/errors.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

using ::testing::HasSubstr;

class AllowlistTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = getenv("TEST_TMPDIR");
    std::string pattern = std::string(tmp != nullptr ? tmp : "/tmp") + "/allowlist.XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    char real[PATH_MAX];
    ASSERT_NE(realpath(pattern.c_str(), real), nullptr);
    base_ = real;
    inside_ = base_ + "/roots";
    outside_ = base_ + "/elsewhere";
    ASSERT_EQ(mkdir(inside_.c_str(), 0700), 0);
    ASSERT_EQ(mkdir(outside_.c_str(), 0700), 0);
    std::ofstream(inside_ + "/libin.so") << "x";
    std::ofstream(outside_ + "/libout.so") << "x";
    ASSERT_EQ(symlink((outside_ + "/libout.so").c_str(), (inside_ + "/libescape.so").c_str()), 0);
    ASSERT_EQ(symlink((inside_ + "/libin.so").c_str(), (outside_ + "/libpointsin.so").c_str()), 0);
  }

  std::shared_ptr<const LibraryAllowlist> Allow(std::vector<std::string> roots) {
    absl::StatusOr<std::shared_ptr<const LibraryAllowlist>> allowlist =
        LibraryAllowlist::Create(roots);
    EXPECT_TRUE(allowlist.ok()) << allowlist.status();
    return allowlist.ok() ? *allowlist : nullptr;
  }

  std::string base_, inside_, outside_;
};

TEST_F(AllowlistTest, LibraryUnderARootIsAdmittedByItsRealPath) {
  auto allowlist = Allow({inside_});
  absl::StatusOr<std::string> admitted = allowlist->Admit(inside_ + "/./libin.so");
  ASSERT_OK(admitted);
  EXPECT_EQ(*admitted, inside_ + "/libin.so");
}

TEST_F(AllowlistTest, PathOutsideTheRootsIsNotAllowedAndTheMessageNamesPathAndRoots) {
  auto allowlist = Allow({inside_});
  absl::StatusOr<std::string> admitted = allowlist->Admit(outside_ + "/libout.so");
  ASSERT_THAT(admitted.status(), StatusIs(v1::LIBRARY_NOT_ALLOWED));
  EXPECT_NE(admitted.status().message().find(outside_ + "/libout.so"), std::string::npos);
  EXPECT_NE(admitted.status().message().find("[" + inside_ + "]"), std::string::npos);
}

TEST_F(AllowlistTest, SymlinkInsideTheRootsPointingOutsideIsNotAllowed) {
  auto allowlist = Allow({inside_});
  absl::StatusOr<std::string> admitted = allowlist->Admit(inside_ + "/libescape.so");
  EXPECT_THAT(admitted.status(), StatusIs(v1::LIBRARY_NOT_ALLOWED));
  EXPECT_NE(admitted.status().message().find("resolves to"), std::string::npos);
}

TEST_F(AllowlistTest, DotDotEscapeIsNotAllowed) {
  auto allowlist = Allow({inside_});
  absl::StatusOr<std::string> admitted = allowlist->Admit(inside_ + "/../elsewhere/libout.so");
  EXPECT_THAT(admitted.status(), StatusIs(v1::LIBRARY_NOT_ALLOWED));
}

TEST_F(AllowlistTest, SymlinkOutsidePointingInsideIsAdmittedAsItsTarget) {
  auto allowlist = Allow({inside_});
  absl::StatusOr<std::string> admitted = allowlist->Admit(outside_ + "/libpointsin.so");
  ASSERT_OK(admitted);
  EXPECT_EQ(*admitted, inside_ + "/libin.so");
}

TEST_F(AllowlistTest, RootPrefixOfAnotherDirectoryDoesNotCoverIt) {
  ASSERT_EQ(mkdir((inside_ + "2").c_str(), 0700), 0);
  std::ofstream(inside_ + "2/libnext.so") << "x";
  auto allowlist = Allow({inside_});
  EXPECT_THAT(allowlist->Admit(inside_ + "2/libnext.so").status(),
              StatusIs(v1::LIBRARY_NOT_ALLOWED));
}

// A relative path names a file in the caller's directory, never the broker's: refused, even
// where the broker's own directory holds such a file.
TEST_F(AllowlistTest, ARelativePathIsRefusedNotLookedUpInTheBrokersDirectory) {
  auto allowlist = Allow({inside_});
  ASSERT_EQ(chdir(inside_.c_str()), 0);
  for (const char* relative : {"./libin.so", "../elsewhere/libout.so", "sub/libin.so"}) {
    absl::Status refused = allowlist->Admit(relative).status();
    EXPECT_THAT(refused, StatusIs(v1::INVALID_ARGUMENT)) << relative;
    EXPECT_THAT(std::string(refused.message()), HasSubstr("relative path")) << relative;
  }
  ASSERT_OK(allowlist->Admit(inside_ + "/./libin.so"));
}

TEST_F(AllowlistTest, BareSonameIsFoundInTheSystemDirectories) {
  auto allowlist = Allow(SystemLibraryDirectories());
  absl::StatusOr<std::string> admitted = allowlist->Admit("libm.so.6");
  ASSERT_OK(admitted);
  EXPECT_EQ(admitted->front(), '/');
  EXPECT_NE(admitted->find("libm"), std::string::npos);
  // The same library is outside an allowlist without the system directories.
  EXPECT_THAT(Allow({inside_})->Admit("libm.so.6").status(), StatusIs(v1::LIBRARY_NOT_ALLOWED));
}

TEST_F(AllowlistTest, MissingFileIsALoadFailureAsDlopenWouldSay) {
  auto allowlist = Allow({inside_});
  EXPECT_THAT(allowlist->Admit(inside_ + "/libnone.so").status(),
              StatusIs(v1::LIBRARY_LOAD_FAILED));
  EXPECT_THAT(allowlist->Admit("libnone-at-all.so.9").status(), StatusIs(v1::LIBRARY_LOAD_FAILED));
}

TEST_F(AllowlistTest, BadRootIsRefusedUnlessSkipped) {
  EXPECT_FALSE(LibraryAllowlist::Create({"relative/dir"}).ok());
  EXPECT_FALSE(LibraryAllowlist::Create({base_ + "/missing"}).ok());
  absl::StatusOr<std::shared_ptr<const LibraryAllowlist>> skipped =
      LibraryAllowlist::Create({base_ + "/missing", inside_}, /*skip_missing=*/true);
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ((*skipped)->roots(), std::vector<std::string>{inside_});
}

}  // namespace
}  // namespace ffibox
