#include "core/host_port.h"

#include "gtest/gtest.h"

namespace ffibox {
namespace {

TEST(SplitHostPortTest, SplitsAtTheLastColon) {
  std::optional<HostPort> v4 = SplitHostPort("127.0.0.1:9464");
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 9464);
  std::optional<HostPort> v6 = SplitHostPort("[::1]:0");
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->host, "[::1]");
  EXPECT_EQ(v6->port, 0);
  std::optional<HostPort> top = SplitHostPort("ffibox.example:65535");
  ASSERT_TRUE(top.has_value());
  EXPECT_EQ(top->port, 65535);
}

TEST(SplitHostPortTest, RefusesWhatIsNotHostColonPort) {
  for (const char* bad : {"", "7000", ":7000", "host:", "host:65536", "host:99999", "host:-1",
                          "host:+80", "host:8a", "host:000080", "host: 80"}) {
    EXPECT_FALSE(SplitHostPort(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace ffibox
