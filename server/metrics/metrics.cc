#include "server/metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <utility>

#include "absl/base/casts.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ffibox {
namespace metrics {
namespace {

// `text` with backslash and newline escaped, and double quotes too when `quotes` (the text
// format escapes those in label values, not in help text).
std::string Escape(absl::string_view text, bool quotes) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"}` for the names and values (plus `le` when given), or "" without any.
std::string LabelText(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      const std::string* le = nullptr) {
  if (names.empty() && le == nullptr) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    if (i > 0) out += ",";
    absl::StrAppend(&out, names[i], "=\"", EscapeLabelValue(values[i]), "\"");
  }
  if (le != nullptr) absl::StrAppend(&out, names.empty() ? "" : ",", "le=\"", *le, "\"");
  out += "}";
  return out;
}

void AppendSample(std::string* out, absl::string_view name, const std::string& labels,
                  absl::string_view value) {
  absl::StrAppend(out, name, labels, " ", value, "\n");
}

}  // namespace

struct Registry::Entry {
  std::string name;
  std::string help;
  std::string type;  // "counter", "gauge", "histogram"
  std::vector<std::string> label_names;
  std::unique_ptr<Family<Counter>> counters;
  std::unique_ptr<Family<Gauge>> gauges;
  std::unique_ptr<Family<Histogram>> histograms;
  std::function<std::vector<Sample>()> read;

  void Render(std::string* out) const;
};

void Registry::Entry::Render(std::string* out) const {
  absl::StrAppend(out, "# HELP ", name, " ", Escape(help, /*quotes=*/false), "\n");
  absl::StrAppend(out, "# TYPE ", name, " ", type, "\n");
  if (counters != nullptr) {
    counters->ForEach([&](const std::vector<std::string>& values, const Counter& counter) {
      AppendSample(out, name, LabelText(label_names, values), absl::StrCat(counter.value()));
    });
  } else if (gauges != nullptr) {
    gauges->ForEach([&](const std::vector<std::string>& values, const Gauge& gauge) {
      AppendSample(out, name, LabelText(label_names, values), absl::StrCat(gauge.value()));
    });
  } else if (histograms != nullptr) {
    histograms->ForEach([&](const std::vector<std::string>& values, const Histogram& histogram) {
      const Histogram::Snapshot snapshot = histogram.Read();
      const std::vector<double>& bounds = histogram.upper_bounds();
      const std::string bucket = absl::StrCat(name, "_bucket");
      for (size_t i = 0; i < snapshot.cumulative_counts.size(); ++i) {
        const std::string le = i < bounds.size() ? FormatValue(bounds[i]) : "+Inf";
        AppendSample(out, bucket, LabelText(label_names, values, &le),
                     absl::StrCat(snapshot.cumulative_counts[i]));
      }
      const std::string labels = LabelText(label_names, values);
      AppendSample(out, absl::StrCat(name, "_sum"), labels, FormatValue(snapshot.sum));
      AppendSample(out, absl::StrCat(name, "_count"), labels,
                   absl::StrCat(snapshot.cumulative_counts.back()));
    });
  } else if (read) {
    for (const Sample& sample : read()) {
      if (sample.label_values.size() != label_names.size()) continue;
      AppendSample(out, name, LabelText(label_names, sample.label_values),
                   FormatValue(sample.value));
    }
  }
}

Registry::Registry() = default;
Registry::~Registry() = default;

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)),
      counts_(new std::atomic<uint64_t>[upper_bounds_.size() + 1]) {
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double value) {
  // The first bound >= value: bucket i counts values in (bound[i-1], bound[i]].
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  uint64_t old_bits = sum_bits_.load(std::memory_order_relaxed);
  while (!sum_bits_.compare_exchange_weak(
      old_bits, absl::bit_cast<uint64_t>(absl::bit_cast<double>(old_bits) + value),
      std::memory_order_relaxed)) {
  }
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot snapshot;
  snapshot.cumulative_counts.resize(upper_bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    snapshot.cumulative_counts[i] = total;
  }
  snapshot.sum = absl::bit_cast<double>(sum_bits_.load(std::memory_order_relaxed));
  return snapshot;
}

absl::StatusOr<Registry::Entry*> Registry::AddEntry(absl::string_view name, absl::string_view help,
                                                    const std::vector<std::string>& label_names,
                                                    bool histogram) {
  if (!IsValidMetricName(name)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", name, "\" is not a valid metric name"));
  }
  absl::flat_hash_set<std::string> seen;
  for (const std::string& label : label_names) {
    if (!IsValidLabelName(label) || (histogram && label == "le")) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric ", name, ": \"", label, "\" is not a valid label name"));
    }
    if (!seen.insert(label).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric ", name, ": label \"", label, "\" appears twice"));
    }
  }
  absl::MutexLock lock(&mu_);
  for (const std::unique_ptr<Entry>& entry : entries_) {
    if (entry->name == name) {
      return absl::AlreadyExistsError(absl::StrCat("metric ", name, " is already registered"));
    }
  }
  auto entry = std::make_unique<Entry>();
  entry->name = std::string(name);
  entry->help = std::string(help);
  entry->label_names = label_names;
  entries_.push_back(std::move(entry));
  return entries_.back().get();
}

absl::StatusOr<Family<Counter>*> Registry::AddCounter(absl::string_view name,
                                                      absl::string_view help,
                                                      std::vector<std::string> label_names,
                                                      size_t max_children) {
  absl::StatusOr<Entry*> entry = AddEntry(name, help, label_names, /*histogram=*/false);
  if (!entry.ok()) return entry.status();
  (*entry)->type = "counter";
  (*entry)->counters = std::make_unique<Family<Counter>>(
      std::move(label_names), max_children, [] { return std::make_unique<Counter>(); });
  if ((*entry)->label_names.empty()) (*entry)->counters->WithLabels({});
  return (*entry)->counters.get();
}

absl::StatusOr<Family<Gauge>*> Registry::AddGauge(absl::string_view name, absl::string_view help,
                                                  std::vector<std::string> label_names,
                                                  size_t max_children) {
  absl::StatusOr<Entry*> entry = AddEntry(name, help, label_names, /*histogram=*/false);
  if (!entry.ok()) return entry.status();
  (*entry)->type = "gauge";
  (*entry)->gauges = std::make_unique<Family<Gauge>>(std::move(label_names), max_children,
                                                     [] { return std::make_unique<Gauge>(); });
  if ((*entry)->label_names.empty()) (*entry)->gauges->WithLabels({});
  return (*entry)->gauges.get();
}

absl::StatusOr<Family<Histogram>*> Registry::AddHistogram(absl::string_view name,
                                                          absl::string_view help,
                                                          std::vector<double> upper_bounds,
                                                          std::vector<std::string> label_names,
                                                          size_t max_children) {
  if (upper_bounds.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("histogram ", name, " has no buckets"));
  }
  for (size_t i = 0; i < upper_bounds.size(); ++i) {
    if (!std::isfinite(upper_bounds[i]) || (i > 0 && upper_bounds[i] <= upper_bounds[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram ", name, ": bucket bounds must be finite and increasing"));
    }
  }
  absl::StatusOr<Entry*> entry = AddEntry(name, help, label_names, /*histogram=*/true);
  if (!entry.ok()) return entry.status();
  (*entry)->type = "histogram";
  (*entry)->histograms = std::make_unique<Family<Histogram>>(
      std::move(label_names), max_children,
      [upper_bounds] { return std::make_unique<Histogram>(upper_bounds); });
  if ((*entry)->label_names.empty()) (*entry)->histograms->WithLabels({});
  return (*entry)->histograms.get();
}

absl::Status Registry::AddSampled(absl::string_view name, absl::string_view help, MetricType type,
                                  std::vector<std::string> label_names,
                                  std::function<std::vector<Sample>()> read) {
  absl::StatusOr<Entry*> entry = AddEntry(name, help, label_names, /*histogram=*/false);
  if (!entry.ok()) return entry.status();
  (*entry)->type = type == MetricType::kCounter ? "counter" : "gauge";
  (*entry)->read = std::move(read);
  return absl::OkStatus();
}

std::string Registry::Render() const {
  std::vector<const Entry*> entries;
  {
    absl::MutexLock lock(&mu_);
    for (const std::unique_ptr<Entry>& entry : entries_) entries.push_back(entry.get());
  }
  // Entries are never removed, so they are rendered without the registry's lock: a sampled
  // metric's function may take locks of its own.
  std::string out;
  for (const Entry* entry : entries) entry->Render(&out);
  return out;
}

bool IsValidMetricName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':';
  });
}

bool IsValidLabelName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) return false;
  if (name.substr(0, 2) == "__") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  for (int precision = 15; precision <= 17; ++precision) {
    std::string text = absl::StrFormat("%.*g", precision, value);
    if (std::strtod(text.c_str(), nullptr) == value) return text;
  }
  return absl::StrFormat("%.17g", value);
}

std::string EscapeLabelValue(absl::string_view value) { return Escape(value, /*quotes=*/true); }

}  // namespace metrics
}  // namespace ffibox
