"""Reads Google Benchmark JSON reports (bench/run.sh's merged `--json` file) by benchmark.

Shared by bench/summary.py and bench/plot.py. A benchmark is known by its run name without
the `/real_time` suffix (`BM_FfiboxCallBuffer/4096`). Its median is the report's "median"
aggregate when there is one, else the median of its repetitions; times are in ns.
"""
import json
import re
import statistics
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional

_NS_PER_UNIT = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
# Keys of a report entry that are not counters.
_ENTRY_KEYS = {"name", "run_name", "run_type", "repetitions", "repetition_index", "threads",
               "iterations", "real_time", "cpu_time", "time_unit", "aggregate_name",
               "aggregate_unit", "family_index", "per_family_instance_index", "error_occurred",
               "error_message", "label"}


@dataclass
class Result:
    """One benchmark's repetitions and aggregates."""
    name: str
    times_ns: List[float] = field(default_factory=list)   # wall clock per iteration, per rep
    median_ns: Optional[float] = None                      # the "median" aggregate, if any
    counters: Dict[str, float] = field(default_factory=dict)  # of the median (or last) rep
    error: Optional[str] = None                             # why the benchmark was skipped

    @property
    def median(self) -> Optional[float]:
        """Median wall-clock ns per iteration, or None for a benchmark that did not run."""
        if self.median_ns is not None:
            return self.median_ns
        return statistics.median(self.times_ns) if self.times_ns else None


def benchmark_name(entry: Dict) -> str:
    """The run name of a report entry, without the parts Google Benchmark adds for how it ran
    (`/real_time`, `/iterations:N`, `/min_time:S`)."""
    return re.sub(r"/(real_time|iterations:\d+|min_time:[0-9.]+)(?=/|$)", "",
                  entry.get("run_name", entry["name"]))


def _counters(entry: Dict) -> Dict[str, float]:
    return {k: v for k, v in entry.items()
            if k not in _ENTRY_KEYS and isinstance(v, (int, float))}


def read(entries: Iterable[Dict]) -> Dict[str, Result]:
    """The results of report entries, by benchmark name, in the order they first appear."""
    results: Dict[str, Result] = {}
    for entry in entries:
        name = benchmark_name(entry)
        result = results.setdefault(name, Result(name))
        if entry.get("error_occurred"):
            result.error = entry.get("error_message", "error")
            continue
        ns = entry["real_time"] * _NS_PER_UNIT[entry.get("time_unit", "ns")]
        if entry.get("run_type") == "aggregate":
            if entry.get("aggregate_name") == "median":
                result.median_ns = ns
                result.counters = _counters(entry)
        else:
            result.times_ns.append(ns)
            if result.median_ns is None:
                result.counters = _counters(entry)
    return results


def load(path: str) -> Dict[str, Result]:
    """The results in the Google Benchmark JSON report at `path`."""
    with open(path) as f:
        return read(json.load(f)["benchmarks"])


def family(results: Dict[str, Result], prefix: str) -> List[tuple]:
    """(argument, result) for every `<prefix>/<integer>` benchmark that ran, by argument."""
    members = []
    for name, result in results.items():
        head, _, argument = name.partition("/")
        if head == prefix and argument.isdigit() and result.median is not None:
            members.append((int(argument), result))
    return sorted(members, key=lambda member: member[0])
