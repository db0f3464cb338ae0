#include "server/metrics/metrics.h"

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(RegistryTest, RendersACounterWithItsHelpAndType) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(Family<Counter> * sessions,
                       registry.AddCounter("ffibox_sessions_total", "Sessions opened."));
  sessions->WithLabels({})->Increment();
  sessions->WithLabels({})->Increment(2);
  EXPECT_EQ(registry.Render(),
            "# HELP ffibox_sessions_total Sessions opened.\n"
            "# TYPE ffibox_sessions_total counter\n"
            "ffibox_sessions_total 3\n");
}

TEST(RegistryTest, AnUnlabelledMetricIsRenderedAsZeroBeforeItsFirstUse) {
  Registry registry;
  ASSERT_OK(registry.AddGauge("open", "Open things."));
  EXPECT_THAT(registry.Render(), HasSubstr("\nopen 0\n"));
}

TEST(RegistryTest, GaugesGoUpAndDown) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(Family<Gauge> * open, registry.AddGauge("open", "Open things."));
  Gauge* gauge = open->WithLabels({});
  gauge->Add(5);
  gauge->Add(-7);
  EXPECT_EQ(gauge->value(), -2);
  EXPECT_THAT(registry.Render(), HasSubstr("\nopen -2\n"));
  gauge->Set(9);
  EXPECT_THAT(registry.Render(), HasSubstr("\nopen 9\n"));
}

TEST(RegistryTest, LabelledChildrenAreRenderedInOrderOfTheirValues) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(Family<Counter> * calls,
                       registry.AddCounter("calls_total", "Calls.", {"code", "identity"}));
  calls->WithLabels({"WORKER_CRASHED", "alice"})->Increment();
  calls->WithLabels({"OK", "bob"})->Increment(4);
  calls->WithLabels({"OK", "alice"})->Increment(2);
  EXPECT_EQ(calls->WithLabels({"OK", "bob"}), calls->WithLabels({"OK", "bob"}))
      << "a label set has one child";
  EXPECT_EQ(registry.Render(),
            "# HELP calls_total Calls.\n"
            "# TYPE calls_total counter\n"
            "calls_total{code=\"OK\",identity=\"alice\"} 2\n"
            "calls_total{code=\"OK\",identity=\"bob\"} 4\n"
            "calls_total{code=\"WORKER_CRASHED\",identity=\"alice\"} 1\n");
}

TEST(RegistryTest, LabelValuesAndHelpAreEscaped) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(Family<Counter> * family,
                       registry.AddCounter("odd_total", "a \\ help\nline", {"name"}));
  family->WithLabels({"say \"hi\"\\\nbye"})->Increment();
  EXPECT_EQ(registry.Render(),
            "# HELP odd_total a \\\\ help\\nline\n"
            "# TYPE odd_total counter\n"
            "odd_total{name=\"say \\\"hi\\\"\\\\\\nbye\"} 1\n");
}

TEST(RegistryTest, ALabelSetPastTheBoundSharesTheOverflowChild) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(
      Family<Counter> * violations,
      registry.AddCounter("violations_total", "Violations.", {"syscall"}, /*max_children=*/2));
  violations->WithLabels({"execve"})->Increment();
  violations->WithLabels({"ptrace"})->Increment();
  Counter* third = violations->WithLabels({"syscall 99999"});
  Counter* fourth = violations->WithLabels({"syscall 99998"});
  EXPECT_EQ(third, fourth);
  third->Increment();
  fourth->Increment();
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("violations_total{syscall=\"_other\"} 2\n"));
  EXPECT_THAT(text, Not(HasSubstr("99999")));
  // Known label sets keep their own children.
  EXPECT_THAT(text, HasSubstr("violations_total{syscall=\"execve\"} 1\n"));
  violations->WithLabels({"execve"})->Increment();
  EXPECT_THAT(registry.Render(), HasSubstr("violations_total{syscall=\"execve\"} 2\n"));
}

TEST(RegistryTest, TheWrongNumberOfLabelValuesGetsTheOverflowChild) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(Family<Counter> * family,
                       registry.AddCounter("pairs_total", "Pairs.", {"a", "b"}));
  family->WithLabels({"only one"})->Increment();
  EXPECT_THAT(registry.Render(), HasSubstr("pairs_total{a=\"_other\",b=\"_other\"} 1\n"));
}

TEST(RegistryTest, RendersAHistogramWithCumulativeBucketsSumAndCount) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(
      Family<Histogram> * latency,
      registry.AddHistogram("latency_seconds", "Latency.", {0.001, 0.01, 0.1}, {"op"}));
  Histogram* calls = latency->WithLabels({"call"});
  calls->Observe(0.0005);
  calls->Observe(0.001);  // on a bound: counted in that bucket
  calls->Observe(0.05);
  calls->Observe(3);
  const double sum = 0.0005 + 0.001 + 0.05 + 3;
  EXPECT_EQ(registry.Render(),
            "# HELP latency_seconds Latency.\n"
            "# TYPE latency_seconds histogram\n"
            "latency_seconds_bucket{op=\"call\",le=\"0.001\"} 2\n"
            "latency_seconds_bucket{op=\"call\",le=\"0.01\"} 2\n"
            "latency_seconds_bucket{op=\"call\",le=\"0.1\"} 3\n"
            "latency_seconds_bucket{op=\"call\",le=\"+Inf\"} 4\n"
            "latency_seconds_sum{op=\"call\"} " +
                FormatValue(sum) +
                "\n"
                "latency_seconds_count{op=\"call\"} 4\n");
}

TEST(RegistryTest, SampledMetricsAreReadWhenRendered) {
  Registry registry;
  int idle = 3;
  ASSERT_OK(registry.AddSampled("pool_idle", "Idle workers.", MetricType::kGauge, {}, [&idle] {
    return std::vector<Sample>{{{}, double(idle)}};
  }));
  ASSERT_OK(registry.AddSampled("bytes_total", "Bytes.", MetricType::kCounter, {"direction"}, [] {
    return std::vector<Sample>{{{"in"}, 10}, {{"out"}, 20}, {{"bad", "arity"}, 30}};
  }));
  EXPECT_THAT(registry.Render(), HasSubstr("# TYPE pool_idle gauge\npool_idle 3\n"));
  idle = 1;
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("\npool_idle 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE bytes_total counter\nbytes_total{direction=\"in\"} 10\n"
                              "bytes_total{direction=\"out\"} 20\n"));
  EXPECT_THAT(text, Not(HasSubstr("30")));
}

TEST(RegistryTest, RefusesBadNamesDuplicatesAndBadBuckets) {
  Registry registry;
  EXPECT_THAT(registry.AddCounter("9lives", "x"), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(registry.AddCounter("has-dash", "x"), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(registry.AddCounter("ok", "x", {"__reserved"}), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(registry.AddCounter("ok", "x", {"a", "a"}), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(registry.AddHistogram("h", "x", {1}, {"le"}), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(registry.AddHistogram("h", "x", {}), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(registry.AddHistogram("h", "x", {2, 1}), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(registry.AddHistogram("h", "x", {1, INFINITY}), StatusIs(v1::INVALID_ARGUMENT));
  ASSERT_OK(registry.AddCounter("ok:name_total", "x"));
  EXPECT_FALSE(registry.AddGauge("ok:name_total", "x").ok()) << "a name is registered once";
  EXPECT_EQ(registry.AddGauge("ok:name_total", "x").status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST(RegistryTest, ConcurrentUpdatesAreAllCounted) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(Family<Counter> * calls, registry.AddCounter("calls_total", "Calls."));
  ASSERT_OK_AND_ASSIGN(Family<Histogram> * latency,
                       registry.AddHistogram("latency_seconds", "Latency.", {0.5}));
  Counter* counter = calls->WithLabels({});
  Histogram* histogram = latency->WithLabels({});
  constexpr int kThreads = 4;
  constexpr int kEach = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        counter->Increment();
        histogram->Observe(i % 2 == 0 ? 0.25 : 1.0);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(counter->value(), uint64_t{kThreads} * kEach);
  const Histogram::Snapshot snapshot = histogram->Read();
  EXPECT_EQ(snapshot.cumulative_counts[0], uint64_t{kThreads} * kEach / 2);
  EXPECT_EQ(snapshot.cumulative_counts[1], uint64_t{kThreads} * kEach);
  EXPECT_DOUBLE_EQ(snapshot.sum, kThreads * kEach / 2 * 1.25);
}

TEST(FormatValueTest, WritesTheShortestExactDecimal) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(2.5e-05), "2.5e-05");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(FormatValue(0.25), "0.25");
  EXPECT_EQ(FormatValue(NAN), "NaN");
  EXPECT_EQ(FormatValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatValue(-INFINITY), "-Inf");
}

}  // namespace
}  // namespace metrics
}  // namespace ffibox
