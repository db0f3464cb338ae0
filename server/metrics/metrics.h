// A small metrics registry rendered in the Prometheus text exposition format (version 0.0.4):
// counters, gauges and histograms with fixed buckets, each in a family that may carry labels,
// and metrics read by a function when they are rendered.
//
// Debian ships no C++ Prometheus client, and ffiboxd needs little of one. What matters is the
// cost on the call path (docs/benchmarks.md): Counter::Increment, Gauge::Add and
// Histogram::Observe are relaxed atomic operations, with no lock and no allocation. Finding a
// labelled child (Family::WithLabels) takes the family's lock, so code on a hot path looks its
// children up once and keeps the pointers, which stay valid as long as the registry.
//
// Label values may come from outside (a syscall number a library chose, an identity name), so
// a family holds at most `max_children` label sets; further ones share one child whose every
// label value is kOverflowLabelValue, and its memory stays bounded. Values are escaped when
// rendered.
//
// Threads: everything here is thread-safe. Registering metrics is meant for startup.
#ifndef FFIBOX_SERVER_METRICS_METRICS_H_
#define FFIBOX_SERVER_METRICS_METRICS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace ffibox {
namespace metrics {

// The label value of the child that collects label sets past a family's `max_children`, or
// given with the wrong number of values.
inline constexpr char kOverflowLabelValue[] = "_other";

// The default bound on a family's label sets.
inline constexpr size_t kDefaultMaxChildren = 1000;

// A value that only goes up.
class Counter {
 public:
  void Increment(uint64_t amount = 1) { value_.fetch_add(amount, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Add(int64_t amount) { value_.fetch_add(amount, std::memory_order_relaxed); }
  void Set(int64_t value) { value_.store(value, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Observations counted in buckets with fixed upper bounds (each bucket counts the values
// <= its bound and above the previous bound; one more bucket takes the rest), and their sum.
class Histogram {
 public:
  // `upper_bounds` must be increasing and finite (Registry::AddHistogram checks).
  explicit Histogram(std::vector<double> upper_bounds);

  void Observe(double value);

  // Cumulative counts per bound (the last one is +Inf, so it equals the count) and the sum.
  // Taken without a lock: under concurrent observations the sum may lag the counts slightly.
  struct Snapshot {
    std::vector<uint64_t> cumulative_counts;
    double sum = 0;
  };
  Snapshot Read() const;

  const std::vector<double>& upper_bounds() const { return upper_bounds_; }

 private:
  const std::vector<double> upper_bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // upper_bounds_.size() + 1
  std::atomic<uint64_t> sum_bits_{0};                // a double, as its bits
};

// The children of one metric, by label values. `Metric` is Counter, Gauge or Histogram.
template <typename Metric>
class Family {
 public:
  Family(std::vector<std::string> label_names, size_t max_children,
         std::function<std::unique_ptr<Metric>()> make)
      : label_names_(std::move(label_names)), max_children_(max_children), make_(std::move(make)) {}

  // The child for `values` (one per label name, in order), created on first use. Past
  // max_children new label sets, and for the wrong number of values, the overflow child.
  // Never null; valid as long as the family. `WithLabels({})` is the child of a family
  // without labels.
  Metric* WithLabels(absl::Span<const std::string> values) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> key(values.begin(), values.end());
    if (key.size() != label_names_.size()) key = OverflowKey();
    auto found = children_.find(key);
    if (found != children_.end()) return found->second.get();
    if (children_.size() >= max_children_) {
      key = OverflowKey();
      found = children_.find(key);
      if (found != children_.end()) return found->second.get();
    }
    return children_.emplace(std::move(key), make_()).first->second.get();
  }

  const std::vector<std::string>& label_names() const { return label_names_; }

  // Calls `visit(values, metric)` for every child, in order of their label values.
  void ForEach(const std::function<void(const std::vector<std::string>&, const Metric&)>& visit)
      const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    for (const auto& [values, metric] : children_) visit(values, *metric);
  }

 private:
  std::vector<std::string> OverflowKey() const {
    return std::vector<std::string>(label_names_.size(), kOverflowLabelValue);
  }

  const std::vector<std::string> label_names_;
  const size_t max_children_;
  const std::function<std::unique_ptr<Metric>()> make_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_ ABSL_GUARDED_BY(mu_);
};

// One sample of a metric read at render time.
struct Sample {
  std::vector<std::string> label_values;  // one per label name
  double value = 0;
};

enum class MetricType { kCounter, kGauge };

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registers a family. `name` must be a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), not
  // yet registered; `label_names` valid label names ([a-zA-Z_][a-zA-Z0-9_]*, not starting
  // with "__", and not "le" for a histogram), distinct. INVALID_ARGUMENT or ALREADY_EXISTS
  // otherwise. A family without labels has its one child from the start (rendered as 0).
  absl::StatusOr<Family<Counter>*> AddCounter(absl::string_view name, absl::string_view help,
                                              std::vector<std::string> label_names = {},
                                              size_t max_children = kDefaultMaxChildren);
  absl::StatusOr<Family<Gauge>*> AddGauge(absl::string_view name, absl::string_view help,
                                          std::vector<std::string> label_names = {},
                                          size_t max_children = kDefaultMaxChildren);
  // `upper_bounds` must be non-empty, finite and increasing (INVALID_ARGUMENT otherwise).
  absl::StatusOr<Family<Histogram>*> AddHistogram(absl::string_view name, absl::string_view help,
                                                  std::vector<double> upper_bounds,
                                                  std::vector<std::string> label_names = {},
                                                  size_t max_children = kDefaultMaxChildren);
  // A metric whose samples `read` returns when the registry is rendered (each sample with
  // one value per label name; others are skipped). `read` runs on the rendering thread and
  // must be thread-safe. The same checks as above.
  absl::Status AddSampled(absl::string_view name, absl::string_view help, MetricType type,
                          std::vector<std::string> label_names,
                          std::function<std::vector<Sample>()> read);

  // Every metric in the text exposition format, in registration order.
  std::string Render() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Entry;
  // Checks the name and label names; adds an entry with them, returning it.
  absl::StatusOr<Entry*> AddEntry(absl::string_view name, absl::string_view help,
                                  const std::vector<std::string>& label_names, bool histogram)
      ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
};

// The content type of Registry::Render's text.
inline constexpr char kTextContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// Whether `name` is a valid metric name / label name.
bool IsValidMetricName(absl::string_view name);
bool IsValidLabelName(absl::string_view name);

// `value` as the text format writes it: shortest decimal that reads back the same, NaN,
// +Inf, -Inf.
std::string FormatValue(double value);

// A label value escaped for the text format (backslash, double quote, newline).
std::string EscapeLabelValue(absl::string_view value);

}  // namespace metrics
}  // namespace ffibox

#endif  // FFIBOX_SERVER_METRICS_METRICS_H_
