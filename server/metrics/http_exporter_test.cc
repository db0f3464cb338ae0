#include "server/metrics/http_exporter.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "tests/support/http_get.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace metrics {
namespace {

using test_support::HttpAnswer;
using test_support::HttpRequest;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class HttpExporterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(Family<Counter> * calls,
                         registry_.AddCounter("ffibox_calls_total", "Calls.", {"code"}));
    calls->WithLabels({"OK"})->Increment(7);
    ASSERT_OK_AND_ASSIGN(exporter_, HttpExporter::Start("127.0.0.1:0", &registry_));
  }

  Registry registry_;
  std::unique_ptr<HttpExporter> exporter_;
};

TEST_F(HttpExporterTest, ServesTheRegistryAtMetrics) {
  ASSERT_GT(exporter_->port(), 0) << "port 0 picks a free port, reported back";
  EXPECT_EQ(exporter_->address(), absl::StrCat("127.0.0.1:", exporter_->port()));
  ASSERT_OK_AND_ASSIGN(HttpAnswer answer,
                       HttpRequest("127.0.0.1", exporter_->port(), "GET", "/metrics"));
  EXPECT_EQ(answer.status, 200);
  EXPECT_THAT(answer.content_type, StartsWith("text/plain; version=0.0.4"));
  EXPECT_EQ(answer.body, registry_.Render());
  EXPECT_THAT(answer.body, HasSubstr("ffibox_calls_total{code=\"OK\"} 7\n"));
}

TEST_F(HttpExporterTest, EachScrapeSeesTheCurrentValues) {
  ASSERT_OK_AND_ASSIGN(Family<Counter> * calls,
                       registry_.AddCounter("later_total", "Registered after the start."));
  calls->WithLabels({})->Increment(3);
  ASSERT_OK_AND_ASSIGN(HttpAnswer answer,
                       HttpRequest("127.0.0.1", exporter_->port(), "GET", "/metrics"));
  EXPECT_THAT(answer.body, HasSubstr("later_total 3\n"));
}

TEST_F(HttpExporterTest, OtherPathsAreNotFoundAndOtherMethodsNotAllowed) {
  ASSERT_OK_AND_ASSIGN(HttpAnswer root, HttpRequest("127.0.0.1", exporter_->port(), "GET", "/"));
  EXPECT_EQ(root.status, 404);
  ASSERT_OK_AND_ASSIGN(HttpAnswer file,
                       HttpRequest("127.0.0.1", exporter_->port(), "GET", "/etc/passwd"));
  EXPECT_EQ(file.status, 404);
  EXPECT_THAT(file.body, ::testing::Not(HasSubstr("root:")));
  ASSERT_OK_AND_ASSIGN(HttpAnswer longer,
                       HttpRequest("127.0.0.1", exporter_->port(), "GET", "/metricsX"));
  EXPECT_EQ(longer.status, 404);
  ASSERT_OK_AND_ASSIGN(HttpAnswer post,
                       HttpRequest("127.0.0.1", exporter_->port(), "POST", "/metrics"));
  EXPECT_EQ(post.status, 405);
}

TEST_F(HttpExporterTest, StopsServingWhenDestroyed) {
  const int port = exporter_->port();
  exporter_.reset();
  EXPECT_FALSE(HttpRequest("127.0.0.1", port, "GET", "/metrics").ok());
}

TEST(HttpExporterStartTest, RefusesAddressesThatAreNotHostAndPort) {
  Registry registry;
  for (const char* address :
       {"", "9464", ":9464", "localhost:9464", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
        "127.0.0.1:94x", "::1:9464", "[::1:9464", "[nonsense]:9464"}) {
    EXPECT_THAT(HttpExporter::Start(address, &registry), StatusIs(v1::INVALID_ARGUMENT)) << address;
  }
}

TEST(HttpExporterStartTest, AnIpv6AddressNeedsACivetwebWithIpv6) {
  Registry registry;
  absl::StatusOr<std::unique_ptr<HttpExporter>> exporter =
      HttpExporter::Start("[::1]:0", &registry);
  if (HttpExporter::SupportsIpv6()) {
    EXPECT_OK(exporter);
  } else {
    EXPECT_THAT(exporter, StatusIs(v1::INVALID_ARGUMENT));
    EXPECT_THAT(std::string(exporter.status().message()), HasSubstr("without IPv6"));
  }
}

TEST(HttpExporterStartTest, APortInUseIsUnavailable) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HttpExporter> first,
                       HttpExporter::Start("127.0.0.1:0", &registry));
  absl::StatusOr<std::unique_ptr<HttpExporter>> second =
      HttpExporter::Start(first->address(), &registry);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

}  // namespace
}  // namespace metrics
}  // namespace ffibox
