"""Python benchmark timings in the shape of Google Benchmark's JSON output.

bench/ctypes_bench.py and bench/python_bench.py write their results with `write()`, so that
bench/run.sh merges them with bench/call_bench's JSON into one file (`--json=FILE`) that
bench/summary.py and bench/plot.py read like any Google Benchmark run: one "iteration"
entry per repetition and "aggregate" entries (mean, median, stddev) across them.
"""
import json
import statistics
from typing import Dict, List, Sequence


def entries(name: str, per_call_ns: Sequence[float], iterations: int) -> List[Dict]:
    """One benchmark's repetitions (wall-clock ns per call each) and their aggregates."""
    repetitions = len(per_call_ns)
    common = {"run_name": name, "repetitions": repetitions, "threads": 1,
              "iterations": iterations, "time_unit": "ns"}
    out = [dict(common, name=name, run_type="iteration", repetition_index=i,
                real_time=t, cpu_time=t)
           for i, t in enumerate(per_call_ns)]
    aggregates = {"mean": statistics.mean(per_call_ns),
                  "median": statistics.median(per_call_ns),
                  "stddev": statistics.stdev(per_call_ns) if repetitions > 1 else 0.0}
    for aggregate, value in aggregates.items():
        out.append(dict(common, name=f"{name}_{aggregate}", run_type="aggregate",
                        aggregate_name=aggregate, aggregate_unit="time",
                        real_time=value, cpu_time=value))
    return out


def write(path: str, benchmarks: List[Dict], source: str) -> None:
    """Writes `benchmarks` (from entries()) as a Google Benchmark JSON report to `path`."""
    with open(path, "w") as f:
        json.dump({"context": {"source": source}, "benchmarks": benchmarks}, f, indent=1)
        f.write("\n")
