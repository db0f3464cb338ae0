"""bench/run.sh's reporting: bench/summary.py merges call_bench's Google Benchmark JSON with
the Python benchmarks' (a real bench/ctypes_bench.py run here), prints every benchmark that
results are compared by (missing or failed ones say so), and the targets; bench/plot.py
draws from the merged file."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench")
sys.path.insert(0, BENCH)

import results  # noqa: E402  (bench/results.py)
import summary  # noqa: E402  (bench/summary.py)


def run(name, times, unit="ns", **counters):
    """Google Benchmark entries for `name` (UseRealTime): repetitions and their median."""
    entries = [dict(name=name + "/real_time", run_name=name + "/real_time",
                    run_type="iteration", repetitions=len(times), repetition_index=i,
                    iterations=100, real_time=t, cpu_time=t, time_unit=unit, **counters)
               for i, t in enumerate(times)]
    median = sorted(times)[len(times) // 2]
    entries.append(dict(name=name + "/real_time_median", run_name=name + "/real_time",
                        run_type="aggregate", aggregate_name="median", repetitions=len(times),
                        iterations=len(times), real_time=median, cpu_time=median,
                        time_unit=unit, **counters))
    return entries


@pytest.fixture
def reports(tmp_path):
    call_bench = (run("BM_CrossProcessRoundTrip", [10_000, 12_000, 11_000]) +
                  run("BM_BareGrpcRoundTrip", [100_000, 90_000, 110_000],
                      request_bytes=14, response_bytes=10) +
                  run("BM_FfiboxCallAdd", [150_000, 140_000, 160_000]) +
                  run("BM_SessionStartWithPool", [1.5, 1.8, 1.6], unit="ms") +
                  # A fixed iteration count is part of Google Benchmark's name.
                  run("BM_BareGrpcSessionStart/iterations:150", [0.8, 0.9, 0.85], unit="ms") +
                  run("BM_CrashToNextCall", [30, 31, 29], unit="ms", crash_ms=5,
                      next_call_ms=25) +
                  run("BM_FfiboxBulkInout/67108864", [2000, 2100, 1900], unit="ms",
                      bytes_per_second=32 << 20) +
                  run("BM_FfiboxConcurrentSessions/10", [20, 21, 22], unit="ms",
                      items_per_second=4000, errors=0, broker_rss_per_idle_session=90_000,
                      workers_pss_per_idle_session=2_000_000))
    call_bench.append({"name": "BM_FfiboxConcurrentSessions/200/real_time",
                       "run_name": "BM_FfiboxConcurrentSessions/200/real_time",
                       "run_type": "iteration", "error_occurred": True,
                       "error_message": "3 of 2000 calls failed; the first: UNAVAILABLE"})
    call_bench.append({"name": "BM_FfiboxConcurrentSessions/10/real_time",
                       "run_name": "BM_FfiboxConcurrentSessions/10/real_time",
                       "run_type": "iteration", "error_occurred": True,
                       "error_message": "1 of 100 calls failed; the first: WORKER_CRASHED"})
    call_bench_path = tmp_path / "call_bench.json"
    call_bench_path.write_text(json.dumps({"context": {"num_cpus": 2},
                                           "benchmarks": call_bench}))
    ctypes_path = tmp_path / "ctypes_bench.json"
    subprocess.run([sys.executable, os.path.join(BENCH, "ctypes_bench.py"), "--number", "2000",
                    "--repeat", "3", "--json", str(ctypes_path)], check=True,
                   stdout=subprocess.DEVNULL)
    return [str(call_bench_path), str(ctypes_path)]


def summarize(reports, merged):
    out = subprocess.run([sys.executable, os.path.join(BENCH, "summary.py"), "--json",
                          str(merged)] + reports, check=True, capture_output=True, text=True)
    return out.stdout


def row(output, name):
    return next(line for line in output.splitlines() if line.split()[:1] == [name])


def test_every_required_benchmark_is_printed_and_absent_ones_say_missing(reports, tmp_path):
    output = summarize(reports, tmp_path / "merged.json")
    for name in summary.REQUIRED:
        assert any(line.split()[:1] == [name] for line in output.splitlines()), name
    for absent in ("BM_BareShmRoundTrip", "BM_FfiboxLocalCallAdd", "BM_FfiboxCallAddBatched/*",
                   "BM_FfiboxCallbackRoundTrip", "BM_InProcessLibffi",
                   "BM_BareGrpcBulk/4194304"):
        assert "missing" in row(output, absent)
    assert "missing" not in row(output, "BM_FfiboxCallAdd")
    assert "request 14 B, response 10 B" in row(output, "BM_BareGrpcRoundTrip")


def test_a_failed_benchmark_or_repetition_shows_its_error_and_fails_its_target(reports, tmp_path):
    output = summarize(reports, tmp_path / "merged.json")
    assert "3 of 2000 calls failed" in row(output, "BM_FfiboxConcurrentSessions/200")
    assert "FAILED: 3 of 2000 calls failed" in output
    # One failed repetition among good ones is shown beside the median of the others.
    assert "ERROR in a repetition: 1 of 100 calls failed" in row(
        output, "BM_FfiboxConcurrentSessions/10")


def test_targets_say_met_or_by_how_much_they_are_missed(reports, tmp_path):
    output = summarize(reports, tmp_path / "merged.json")
    targets = output[output.index("== targets"):]
    # add 150 us against bare gRPC 100 us: 1.5x, 0.25x over the 1.25x target (20 %).
    assert "MISSED by 0.25 x (20 % over the 1.25 x target)" in targets
    assert "met (1.6 ms <= 2 ms); bare gRPC's own start 0.85 ms" in targets
    assert any(line.startswith("the same, load/resolve/call pipelined") and
               line.endswith("missing") for line in targets.splitlines())
    assert "MISSED by 10 ms (50 % over the 20 ms target)" in targets
    assert "32.0 MiB/s (bare gRPC 4 MiB: missing)" in targets
    assert any(line.startswith("same-host add(1, 2) <= 3x bare shm round trip") and
               line.endswith("missing") for line in targets.splitlines())


def test_the_same_host_target_divides_by_the_bare_shared_memory_round_trip(tmp_path):
    path = tmp_path / "call_bench.json"
    path.write_text(json.dumps({"context": {"num_cpus": 2}, "benchmarks": (
        run("BM_CrossProcessRoundTrip", [10_000, 12_000, 11_000]) +
        run("BM_BareShmRoundTrip", [900, 1000, 1100]) +
        run("BM_FfiboxLocalCallAdd", [3_500, 3_400, 3_600]))}))
    targets = summarize([str(path)], tmp_path / "merged.json")
    # 3.5 us against 1 us: 3.5x, 0.5x over the 3x target.
    assert "MISSED by 0.5 x (17 % over the 3 x target)" in targets


def test_the_python_same_host_target_divides_by_the_stdlib_call(tmp_path):
    path = tmp_path / "python_bench.json"
    path.write_text(json.dumps({"context": {"num_cpus": 2}, "benchmarks": (
        run("BM_CrossProcessRoundTrip", [10_000, 12_000, 11_000]) +
        run("BM_PythonCtypesCos", [500, 500, 500]) +
        run("BM_PythonFfiboxLocalCos", [20_000, 25_000, 22_000]))}))
    targets = summarize([str(path)], tmp_path / "merged.json")
    # 22 us against 0.5 us: 44x, within the 60x target.
    assert "met (44 x <= 60 x)" in targets


def test_the_merged_report_holds_every_median_in_one_google_benchmark_file(reports, tmp_path):
    merged = tmp_path / "merged.json"
    summarize(reports, merged)
    loaded = results.load(str(merged))
    assert loaded["BM_FfiboxCallAdd"].median == 150_000
    assert loaded["BM_SessionStartWithPool"].median == pytest.approx(1.6e6)
    ctypes_cos = loaded["BM_PythonCtypesCos"]
    assert len(ctypes_cos.times_ns) == 3 and 0 < ctypes_cos.median < 1e6
    assert any(entry.get("aggregate_name") == "median" and
               entry["run_name"] == "BM_PythonCtypesCos"
               for entry in json.loads(merged.read_text())["benchmarks"])


def test_plots_are_drawn_from_the_merged_report(reports, tmp_path):
    # Not skipped without it: scripts/test.sh installs it (install-deps.sh --plots).
    assert importlib.util.find_spec("matplotlib") is not None, (
        "python3-matplotlib is missing: ./scripts/install-deps.sh --plots")
    merged = tmp_path / "merged.json"
    summarize(reports, merged)
    subprocess.run([sys.executable, os.path.join(BENCH, "plot.py"), str(merged), "--out-dir",
                    str(tmp_path / "img")], check=True, stdout=subprocess.DEVNULL)
    for name in ("latency_vs_payload.png", "throughput_vs_batch.png",
                 "throughput_vs_sessions.png"):
        with open(tmp_path / "img" / name, "rb") as png:
            assert png.read(8) == b"\x89PNG\r\n\x1a\n"
