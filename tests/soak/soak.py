#!/usr/bin/python3
"""Soak: many crash / restart cycles of many kinds while bystander sessions keep calling.

Run by hand (it is not part of the test command; docs/security.md records a run):

    /usr/bin/python3 tests/soak/soak.py [--cycles 1000] [--bystanders 3]

It starts one ffiboxd from the build tree (bazel-bin) with a short call deadline, then, in a
loop, opens a session in turn for each fault kind below, makes its library misbehave, and
checks the typed error; meanwhile bystander sessions call strlen, read and write buffers and
run callbacks without pause. At the end it prints the broker's resident memory before and
after (after the first 50 cycles, once the allocator has warmed up, and at the end), the
bystanders' calls and errors, ffiboxd's descendants still alive (orphans, beyond the idle
pool), and ends with `PASS` or `FAIL` and the reasons. Pass: no bystander error, no orphan,
RSS growth under 10 %.
"""
import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bazel-bin")
sys.path[:0] = [os.path.join(BIN, "proto"), os.path.join(ROOT, "client", "python")]

import ffibox  # noqa: E402
import ffibox.ctypes  # noqa: E402,F401 - CFUNCTYPE for the bystanders

TEST_LIB = os.path.join(BIN, "tests", "testlibs", "libffibox_test.so")
PROBE_LIB = os.path.join(BIN, "tests", "testlibs", "libffibox_probe.so")
HOSTILE_LIB = os.path.join(BIN, "tests", "testlibs", "libffibox_hostile.so")


def fault_kinds():
    """name -> (library, function name, argtypes, args, the error codes it may end with)."""
    c_int, c_long, c_char_p = ctypes.c_int, ctypes.c_long, ctypes.c_char_p
    crashed = ("WORKER_CRASHED",)
    return {
        "null dereference": (TEST_LIB, "crash_null_deref", [], (), crashed),
        "abort": (TEST_LIB, "crash_abort", [], (), crashed),
        "integer division by zero": (TEST_LIB, "crash_div_zero", [c_int], (1,), crashed),
        "stack overflow": (TEST_LIB, "crash_stack_overflow", [c_int], (1 << 30,), crashed),
        "exit(3)": (TEST_LIB, "crash_exit3", [], (), crashed),
        "hang past the deadline": (TEST_LIB, "hang_forever", [], (), ("CALL_TIMEOUT",)),
        "thread crashing after the call": (TEST_LIB, "crash_later_thread", [c_int], (0,),
                                           crashed + ("OK",)),
        "forbidden execve": (PROBE_LIB, "probe_execve", [c_char_p], (b"/bin/true",),
                             ("SANDBOX_VIOLATION",)),
        "fork bomb": (PROBE_LIB, "probe_fork_bomb", [c_int], (100,),
                      ("SANDBOX_VIOLATION", "OK")),
        "memory past the cap": (TEST_LIB, "allocate_mib", [c_int], (8192,), ("OK",)),
        "thread bomb past the cap": (TEST_LIB, "start_sleeping_threads", [c_int], (2000,),
                                     ("OK",)),
        "stalled partial frame": (HOSTILE_LIB, "hostile_partial_frame",
                                  [c_long, c_long, c_int], (8 << 20, 4 << 20, 60),
                                  crashed + ("CALL_TIMEOUT",)),
    }


class Bystander(threading.Thread):
    def __init__(self, address, stop):
        super().__init__(daemon=True)
        self.address, self.stop = address, stop
        self.calls, self.errors = 0, []

    def run(self):
        client = ffibox.connect(self.address)
        session = client.session()
        libc = session.CDLL("libc.so.6")
        libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
        cmp_type = ffibox.ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                           ctypes.POINTER(ctypes.c_int))
        compare = cmp_type(lambda a, b: a[0] - b[0])
        libc.qsort.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, cmp_type]
        libc.qsort.restype = None
        while not self.stop.is_set():
            try:
                assert libc.strlen(b"bystander") == 9
                buffer = ctypes.create_string_buffer(4096)
                libc.memset(buffer, 0x41, 4095)
                assert buffer.value == b"A" * 4095
                numbers = (ctypes.c_int * 5)(5, 1, 4, 2, 3)
                libc.qsort(numbers, 5, 4, compare)
                assert list(numbers) == [1, 2, 3, 4, 5]
                self.calls += 1
            except Exception as error:  # noqa: BLE001 - every failure is a finding
                self.errors.append(repr(error))
        client.close()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--bystanders", type=int, default=3)
    options = parser.parse_args()

    directory = tempfile.mkdtemp(prefix="ffibox-soak-")
    address = "unix:" + os.path.join(directory, "ffiboxd.sock")
    server = subprocess.Popen(
        [os.path.join(BIN, "server", "ffiboxd"), "--listen=" + address, "--allow_root=/",
         "--call_timeout_ms=1000", "--pool_size=2"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if "listening on" not in server.stdout.readline():
        sys.exit("ffiboxd did not start")
    stop = threading.Event()
    bystanders = [Bystander(address, stop) for _ in range(options.bystanders)]
    for bystander in bystanders:
        bystander.start()

    kinds = fault_kinds()
    names = sorted(kinds)
    unexpected, counts = [], {}
    client = ffibox.connect(address)
    started = time.monotonic()
    rss_start = rss_kib(server.pid)
    rss_warm = rss_start
    for cycle in range(options.cycles):
        name = names[cycle % len(names)]
        library, function, argtypes, args, codes = kinds[name]
        session = client.session()
        try:
            fn = getattr(session.CDLL(library), function)
            fn.argtypes = argtypes
            fn(*args)
            code = "OK"
        except ffibox.Error as error:
            code = error.code
        session.close()
        counts[name] = counts.get(name, 0) + 1
        if code not in codes:
            unexpected.append((cycle, name, code))
        if cycle == 49:
            rss_warm = rss_kib(server.pid)
        if cycle % 100 == 99:
            print("%d cycles, %.0f s, broker RSS %d KiB, bystander calls %d" % (
                cycle + 1, time.monotonic() - started, rss_kib(server.pid),
                sum(b.calls for b in bystanders)), flush=True)
    client.close()
    stop.set()
    for bystander in bystanders:
        bystander.join(30)
    time.sleep(1)  # sessions end; their workers are reaped
    rss_end = rss_kib(server.pid)
    # The idle pool's workers (and their init processes) are the broker's own.
    living = descendants(server.pid)
    pool_processes = 2 * 2 + 2  # two pooled workers: jail init + worker, plus launchers
    orphans = max(0, len(living) - pool_processes)
    server.terminate()
    server.wait(30)

    errors = [e for b in bystanders for e in b.errors]
    growth = (rss_end - rss_warm) / max(rss_warm, 1)
    print("fault kinds: %d; cycles per kind: %s" % (len(names), counts))
    print("broker RSS: %d KiB at start, %d KiB after 50 cycles, %d KiB at the end "
          "(%+.1f %% since the warm-up)" % (rss_start, rss_warm, rss_end, 100 * growth))
    print("bystander calls: %d, errors: %d" % (sum(b.calls for b in bystanders), len(errors)))
    print("ffiboxd descendants at the end: %d (%d beyond the idle pool)" % (len(living),
                                                                              orphans))
    print("unexpected outcomes: %s" % (unexpected[:10] or "none"))
    print("time: %.0f s" % (time.monotonic() - started))
    reasons = []
    if errors:
        reasons.append("bystander errors: %s" % errors[:3])
    if orphans:
        reasons.append("%d orphan processes" % orphans)
    if growth >= 0.10:
        reasons.append("RSS grew %.1f %%" % (100 * growth))
    if unexpected:
        reasons.append("%d unexpected outcomes" % len(unexpected))
    print("PASS" if not reasons else "FAIL: " + "; ".join(reasons))
    return 1 if reasons else 0


if __name__ == "__main__":
    sys.exit(main())
