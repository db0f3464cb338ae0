#include "server/jail/cgroup_placement.h"

#include <errno.h>
#include <string.h>

#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// /proc/self/mountinfo lines as kernels print them.
constexpr char kV2Mount[] =
    "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";
constexpr char kV1Mounts[] =
    "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n";

TEST(ParseCgroupHierarchiesTest, SystemdUnitWithDelegateIsItsOwnCgroup) {
  CgroupHierarchies found = ParseCgroupHierarchies("0::/system.slice/ffiboxd.service\n", kV2Mount);
  EXPECT_EQ(found.v2, "/sys/fs/cgroup/system.slice/ffiboxd.service");
  EXPECT_THAT(found.v1, ElementsAre("", "", ""));
}

TEST(ParseCgroupHierarchiesTest, ContainerWithCgroupNamespaceIsAtTheMountPoint) {
  CgroupHierarchies found = ParseCgroupHierarchies(
      "0::/\n",
      "1290 1280 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw\n");
  EXPECT_EQ(found.v2, "/sys/fs/cgroup");
}

TEST(ParseCgroupHierarchiesTest, ContainerWithoutNamespaceSeesItsCgroupMountedAsRoot) {
  CgroupHierarchies found = ParseCgroupHierarchies(
      "0::/system.slice/docker-4f1c.scope\n",
      "1290 1280 0:30 /system.slice/docker-4f1c.scope /sys/fs/cgroup rw,relatime - cgroup2 "
      "cgroup rw\n");
  EXPECT_EQ(found.v2, "/sys/fs/cgroup");
}

TEST(ParseCgroupHierarchiesTest, BrokerLeafIsFoundAsTheCgroupAfterTheMove) {
  CgroupHierarchies found =
      ParseCgroupHierarchies("0::/system.slice/ffiboxd.service/ffibox-4242-broker\n", kV2Mount);
  EXPECT_EQ(found.v2, "/sys/fs/cgroup/system.slice/ffiboxd.service/ffibox-4242-broker");
}

TEST(ParseCgroupHierarchiesTest, CgroupOutsideTheMountIsMissing) {
  CgroupHierarchies found = ParseCgroupHierarchies(
      "0::/user.slice/session-1.scope\n",
      "1290 1280 0:30 /system.slice /sys/fs/cgroup rw,relatime - cgroup2 cgroup rw\n");
  EXPECT_EQ(found.v2, "");
}

TEST(ParseCgroupHierarchiesTest, V1HostFindsEachController) {
  // This repository's own machine: v1 controllers, and a "0::" line with no v2 mount.
  CgroupHierarchies found = ParseCgroupHierarchies(
      "8:pids:/\n4:memory:/process_api/fbf19a5b\n1:cpu:/\n0::/\n", kV1Mounts);
  EXPECT_EQ(found.v2, "");
  EXPECT_THAT(found.v1,
              ElementsAre("/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory/process_api/fbf19a5b",
                          "/sys/fs/cgroup/cpu"));
}

TEST(ParseCgroupHierarchiesTest, HybridHostReportsBoth) {
  CgroupHierarchies found = ParseCgroupHierarchies(
      "8:pids:/system.slice/ffiboxd.service\n4:memory:/system.slice/ffiboxd.service\n"
      "1:cpu,cpuacct:/system.slice/ffiboxd.service\n0::/system.slice/ffiboxd.service\n",
      std::string("36 30 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n") +
          "31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n" +
          "34 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n" +
          "38 30 0:35 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n");
  EXPECT_EQ(found.v2, "/sys/fs/cgroup/unified/system.slice/ffiboxd.service");
  EXPECT_THAT(found.v1, ElementsAre("/sys/fs/cgroup/pids/system.slice/ffiboxd.service",
                                    "/sys/fs/cgroup/memory/system.slice/ffiboxd.service",
                                    "/sys/fs/cgroup/cpu,cpuacct/system.slice/ffiboxd.service"));
}

TEST(GroupNamesTest, TreesAndLeavesNameTheirFfiboxd) {
  EXPECT_EQ(WorkerTreeName(4242), "ffibox-4242");
  EXPECT_EQ(BrokerLeafName(4242), "ffibox-4242-broker");
  EXPECT_EQ(OwnerOfGroup(WorkerTreeName(4242)), 4242);
  EXPECT_EQ(OwnerOfGroup(BrokerLeafName(4242)), 4242);
  for (const char* other : {"worker-3", "ffibox-", "ffibox-x", "ffibox-12-brokers",
                            "ffibox--broker", "ffibox-0", "ffibox--5", "init.scope"}) {
    EXPECT_EQ(OwnerOfGroup(other), std::nullopt) << other;
  }
}

TEST(DelegatedV2CgroupTest, IsTheOwnCgroupOrTheParentOfOurLeaf) {
  const std::string unit = "/sys/fs/cgroup/system.slice/ffiboxd.service";
  EXPECT_EQ(DelegatedV2Cgroup(unit, 4242), unit);
  EXPECT_EQ(DelegatedV2Cgroup(unit + "/ffibox-4242-broker", 4242), unit);
  // Another ffiboxd's leaf is not ours to climb out of.
  EXPECT_EQ(DelegatedV2Cgroup(unit + "/ffibox-77-broker", 4242), unit + "/ffibox-77-broker");
}

TEST(AfterControllersRefusedTest, MovesOnceOnBusyThenFails) {
  EXPECT_EQ(AfterControllersRefused(EBUSY, /*broker_in_leaf=*/false),
            ControllersRefused::kMoveBrokerToLeaf);
  // Still busy with ffiboxd gone: other processes share the cgroup.
  EXPECT_EQ(AfterControllersRefused(EBUSY, /*broker_in_leaf=*/true), ControllersRefused::kFail);
  for (int error : {EACCES, EPERM, EROFS, ENOENT, EINVAL}) {
    EXPECT_EQ(AfterControllersRefused(error, false), ControllersRefused::kFail) << error;
  }
}

TEST(OtherProcessesTest, ListsEveryoneButUs) {
  EXPECT_THAT(OtherProcesses("4242\n17\n901\n", 4242), ElementsAre(17, 901));
  EXPECT_THAT(OtherProcesses("4242\n", 4242), ElementsAre());
  EXPECT_THAT(OtherProcesses("", 4242), ElementsAre());
}

TEST(ControllersRefusedMessageTest, NamesTheFileAndWhoSharesTheCgroup) {
  const std::string shared =
      ControllersRefusedMessage("/sys/fs/cgroup/app.slice/x.service", EBUSY, {17, 901});
  EXPECT_THAT(shared, HasSubstr("/sys/fs/cgroup/app.slice/x.service/cgroup.subtree_control"));
  EXPECT_THAT(shared, HasSubstr(strerror(EBUSY)));
  EXPECT_THAT(shared, HasSubstr("/sys/fs/cgroup/app.slice/x.service/cgroup.procs lists "
                                "processes 17, 901"));
  EXPECT_THAT(shared, HasSubstr("a cgroup of its own"));
  EXPECT_THAT(ControllersRefusedMessage("/c", EBUSY, {17}), HasSubstr("lists process 17,"));

  const std::string read_only = ControllersRefusedMessage("/sys/fs/cgroup", EROFS, {});
  EXPECT_THAT(read_only, HasSubstr("/sys/fs/cgroup/cgroup.subtree_control"));
  EXPECT_THAT(read_only, HasSubstr(strerror(EROFS)));
  EXPECT_THAT(read_only, Not(HasSubstr("besides")));
}

}  // namespace
}  // namespace ffibox
