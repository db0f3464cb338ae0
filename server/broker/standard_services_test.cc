#include "server/broker/standard_services.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(MissingJailLayersTest, EveryConfiguredLayerActiveIsServing) {
  JailOptions configured;
  EXPECT_THAT(MissingJailLayers(configured, configured), IsEmpty());
}

TEST(MissingJailLayersTest, ALayerTurnedOffWithoutWaiverIsMissing) {
  JailOptions configured;
  JailOptions decided = configured;
  decided.cgroup = false;
  decided.net_namespace = false;
  EXPECT_THAT(MissingJailLayers(configured, decided), ElementsAre("net", "cgroup"));
}

TEST(MissingJailLayersTest, ALayerTheOperatorWaivedIsNotMissing) {
  JailOptions configured;
  JailOptions decided = configured;
  decided.cgroup = false;
  decided.waived.push_back("cgroup (no cgroup v2 delegation)");
  EXPECT_THAT(MissingJailLayers(configured, decided), IsEmpty());
}

TEST(MissingJailLayersTest, AWaiverOfAnotherLayerDoesNotCover) {
  JailOptions configured;
  JailOptions decided = configured;
  decided.user_namespace = false;
  decided.waived.push_back("uts (clone(CLONE_NEWUTS): Operation not permitted)");
  EXPECT_THAT(MissingJailLayers(configured, decided), ElementsAre("user"));
}

TEST(MissingJailLayersTest, AConfigurationWithoutJailAsksForNoLayer) {
  JailOptions configured;
  configured.enabled = false;
  EXPECT_THAT(MissingJailLayers(configured, configured), IsEmpty());
}

TEST(MissingJailLayersTest, ALayerTheConfigurationTurnedOffIsNotAskedFor) {
  JailOptions configured;
  configured.cgroup = false;
  EXPECT_THAT(MissingJailLayers(configured, configured), IsEmpty());
}

}  // namespace
}  // namespace ffibox
