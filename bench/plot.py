#!/usr/bin/python3
"""Draws the benchmark plots of docs/benchmarks.md from bench/run.sh's merged JSON report.

    plot.py REPORT.json [--out-dir docs/img]

Writes three PNGs (Debian's python3-matplotlib, no display needed):
  latency_vs_payload.png     median time of one INOUT-buffer call against its size: ffibox
                             (BM_FfiboxCallBuffer/N, BM_FfiboxBulkInout/N) beside bare gRPC
                             carrying the same messages (BM_BareGrpcBulk/N);
  throughput_vs_batch.png    calls/s against the batch size (BM_FfiboxCallAddBatched/N);
  throughput_vs_sessions.png calls/s over all sessions against the number of sessions
                             calling at once (BM_FfiboxConcurrentSessions/N), with the
                             broker's resident memory per idle session.
A plot whose benchmarks are absent from the report says so in place of the curve.
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend must be chosen first)

import results as bench_results  # noqa: E402


def size_label(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return "%d %s" % (size // scale, unit)
    return "%d B" % size


def absent(axes, what: str) -> None:
    axes.text(0.5, 0.5, "%s: absent from this run" % what, ha="center", va="center",
              transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def plot_latency(results, path: str) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    ffibox = (bench_results.family(results, "BM_FfiboxCallBuffer") +
              bench_results.family(results, "BM_FfiboxBulkInout"))
    series = [("ffibox, memset on an INOUT buffer (gRPC path)", sorted(ffibox, key=lambda m: m[0]),
               "o-"),
              ("bare gRPC, the same messages", bench_results.family(results, "BM_BareGrpcBulk"),
               "s--")]
    sizes = set()
    for label, members, style in series:
        if members:
            axes.plot([m[0] for m in members], [m[1].median / 1e3 for m in members], style,
                      label=label)
            sizes.update(m[0] for m in members)
    if not sizes:
        absent(axes, "BM_FfiboxCallBuffer, BM_FfiboxBulkInout, BM_BareGrpcBulk")
    else:
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xticks(sorted(sizes))
        axes.set_xticklabels([size_label(s) for s in sorted(sizes)], rotation=30)
        axes.legend()
    axes.set_xlabel("buffer size (bytes in, the same bytes back)")
    axes.set_ylabel("median time per call (µs)")
    axes.set_title("Latency against payload size")
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_throughput(results, family: str, xlabel: str, title: str, path: str,
                    memory: bool = False) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    members = [m for m in bench_results.family(results, family)
               if "items_per_second" in m[1].counters]
    if not members:
        absent(axes, family)
    else:
        xs = [m[0] for m in members]
        axes.plot(xs, [m[1].counters["items_per_second"] for m in members], "o-",
                  label="calls/s (median repetition)")
        axes.set_xscale("log")
        axes.set_xticks(xs)
        axes.set_xticklabels([str(x) for x in xs])
        axes.set_ylim(bottom=0)
        if memory:
            per_session = [m[1].counters.get("broker_rss_per_idle_session", 0) / 1024
                           for m in members]
            twin = axes.twinx()
            twin.plot(xs, per_session, "s--", color="tab:red",
                      label="broker RSS per idle session (KiB)")
            twin.set_ylabel("KiB per idle session")
            twin.set_ylim(bottom=0)
            twin.legend(loc="lower right")
        axes.legend(loc="lower left")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("calls per second")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="bench/run.sh's --json file")
    parser.add_argument("--out-dir", default="docs/img", help="where the PNGs go")
    args = parser.parse_args()
    results = bench_results.load(args.report)
    os.makedirs(args.out_dir, exist_ok=True)
    written = [os.path.join(args.out_dir, name) for name in
               ("latency_vs_payload.png", "throughput_vs_batch.png",
                "throughput_vs_sessions.png")]
    plot_latency(results, written[0])
    plot_throughput(results, "BM_FfiboxCallAddBatched", "calls per batch",
                    "Throughput against batch size (one session)", written[1])
    plot_throughput(results, "BM_FfiboxConcurrentSessions", "sessions calling at once",
                    "Throughput against concurrent sessions (one ffiboxd)", written[2],
                    memory=True)
    for path in written:
        print("wrote", path)


if __name__ == "__main__":
    main()
