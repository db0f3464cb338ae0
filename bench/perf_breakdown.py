#!/usr/bin/python3
"""Where the CPU time of a benchmark goes, per process and per kind of work, from a
`perf record -g` profile (bench/profile.sh records one across call_bench, its ffiboxd and
the workers).

    perf_breakdown.py PERF_DATA [--op-ns NS] [--hz HZ] [--threads]

Each sample is charged to its process (named by its main thread: call_bench, ffiboxd,
ffibox-worker) and to one kind of work: in the kernel, by the system call it came through
(futex, socket send/receive, poll, pread/pwrite, ...; a context switch is charged to the
call that blocked); in user space, by library (gRPC, protobuf, Abseil's Mutex with its deadlock
detector, libc, the ffibox code itself). With --op-ns (the benchmark's wall time per
operation), the CPU shares are also given in µs of CPU per operation: busy CPUs during the
profile x wall time per operation.
"""
import argparse
import collections
import re
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

_HEADER = re.compile(r"^(?P<comm>.+?)\s+(?P<pid>\d+)/(?P<tid>\d+)\s+(?P<time>[\d.]+):")
_FRAME = re.compile(r"^\s*[0-9a-f]+ (?P<sym>.*?) \((?P<dso>.*)\)$")
_SYSCALL = re.compile(r"^(?:__x64_sys_|__se_sys_|__do_sys_|__sys_|ksys_)(\w+)")
# The libc wrapper a system call came through, when the kernel frames do not name it.
_WRAPPER = re.compile(r"^(?:__libc_|__)?(\w+?)(?:64)?$")
_SCHEDULING = {"finish_task_switch.isra.0", "schedule", "__schedule", "_raw_spin_unlock_irq",
               "_raw_spin_unlock_irqrestore", "try_to_wake_up"}
_PAGE_FAULT = {"asm_exc_page_fault", "exc_page_fault", "handle_mm_fault"}
_SYSCALL_KINDS = [
    ("futex syscall", "futex (thread wakeups)"),
    ("sendmsg sendto send write writev", "socket/pipe writes"),
    ("recvmsg recvfrom recv read readv", "socket/pipe reads"),
    ("epoll_wait poll ppoll", "poll/epoll"),
    ("munmap mmap", "mmap/munmap (large buffers)"),
    # In ffiboxd only the cgroup layer uses these (server/jail/cgroups.cc).
    ("pread64 pwrite64 pread pwrite", "pread/pwrite (ffiboxd: cgroup control files)"),
]
_LIBRARY_KINDS = [
    (("libgrpc", "libgpr", "libgrpc++", "libaddress_sorting", "libupb"), "gRPC"),
    (("libprotobuf",), "protobuf"),
    (("libabsl_graphcycles", "libabsl_synchronization", "libabsl_spinlock"),
     "Abseil Mutex (deadlock detector on)"),
    (("libc.so", "libstdc++", "libm.so"), "libc/libstdc++ (malloc, memcpy, syscall stubs)"),
    (("ld-linux",), "dynamic linker"),
    (("libffi",), "libffi"),
    (("ffiboxd", "ffibox-worker", "call_bench"), "ffibox code (incl. its statically linked parts)"),
]


def read_samples(path: str):
    """Yields (pid, tid, comm, time, frames) for each sample; frames are (sym, dso), leaf first."""
    script = subprocess.run(["perf", "script", "-i", path, "-F", "comm,pid,tid,time,ip,sym,dso"],
                            check=True, capture_output=True, text=True).stdout
    header: Optional[Tuple] = None
    frames: List[Tuple[str, str]] = []
    for line in script.splitlines() + [""]:
        match = _HEADER.match(line)
        if match:
            header = (int(match["pid"]), int(match["tid"]), match["comm"], float(match["time"]))
            frames = []
        elif line.strip() == "":
            if header is not None:
                yield header + (frames,)
            header = None
        else:
            frame = _FRAME.match(line)
            if frame:
                frames.append((frame["sym"], frame["dso"]))


def syscall_of(frames: List[Tuple[str, str]]) -> Optional[str]:
    """The system call a kernel sample came through, or None (an interrupt, a fault)."""
    entered = False
    for sym, dso in frames:
        if dso != "[kernel.kallsyms]":
            wrapper = _WRAPPER.match(sym)
            return wrapper.group(1) if entered and wrapper and sym != "[unknown]" else None
        if sym.startswith("entry_SYSCALL"):
            entered = True
        match = _SYSCALL.match(sym)
        if match:
            return match.group(1)
    return None


def kind_of(frames: List[Tuple[str, str]]) -> str:
    if not frames:
        return "unknown"
    sym, dso = frames[0]
    if dso == "[kernel.kallsyms]":
        if any(s in _PAGE_FAULT for s, _ in frames):
            return "kernel: page faults (first touch of fresh memory)"
        syscall = syscall_of(frames)
        if syscall is None:
            return ("kernel: scheduling and wakeups" if sym in _SCHEDULING
                    else "kernel: interrupts, faults, other")
        for names, kind in _SYSCALL_KINDS:
            if syscall in names.split():
                return "kernel: " + kind
        return "kernel: other system calls (%s)" % syscall
    for prefixes, kind in _LIBRARY_KINDS:
        if any(prefix in dso for prefix in prefixes):
            return kind
    return "other user code"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="perf.data from perf record -g -e cpu-clock")
    parser.add_argument("--hz", type=float, default=2000, help="the sampling frequency (-F)")
    parser.add_argument("--op-ns", type=float, help="wall-clock ns per benchmark operation")
    parser.add_argument("--threads", action="store_true",
                        help="split each process by thread name")
    args = parser.parse_args()

    process_names: Dict[int, str] = {}
    counts: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    threads: Dict[str, set] = collections.defaultdict(set)
    samples = []
    first = last = None
    for pid, tid, comm, time, frames in read_samples(args.data):
        if pid == tid:
            process_names[pid] = comm
        samples.append((pid, tid, comm, kind_of(frames)))
        first = time if first is None else min(first, time)
        last = time if last is None else max(last, time)
    if not samples:
        sys.exit("no samples in " + args.data)
    for pid, tid, comm, kind in samples:
        process = process_names.get(pid, "pid %d" % pid)
        if args.threads and comm != process:
            process = "%s: %s threads" % (process, comm)
        counts[process][kind] += 1
        threads[process].add(tid)

    total = len(samples)
    busy = total / args.hz / max(last - first, 1e-9)
    print("%d samples over %.2f s: %.2f CPUs busy on average" % (total, last - first, busy))
    per_op = (lambda n: busy * args.op_ns / 1e3 * n / total) if args.op_ns else None
    unit = "  CPU µs/op" if per_op else ""
    for process, kinds in sorted(counts.items(), key=lambda item: -sum(item[1].values())):
        n = sum(kinds.values())
        print()
        print("%-60s %6.1f %%%s" % ("%s (%d threads)" % (process, len(threads[process])),
                                    100.0 * n / total,
                                    "  %8.1f" % per_op(n) if per_op else ""))
        for kind, k in kinds.most_common():
            if 100.0 * k / total < 0.5:
                continue
            print("    %-56s %6.1f %%%s" % (kind, 100.0 * k / total,
                                             "  %8.1f" % per_op(k) if per_op else ""))
    if per_op:
        print()
        print("(%s: CPU time per operation; %.0f ns wall per operation)" % (unit.strip(),
                                                                          args.op_ns))


if __name__ == "__main__":
    main()
