#!/usr/bin/python3
"""CPython's own ctypes test suite as ffibox.ctypes' compatibility yardstick.

Runs every module of /usr/lib/python3.11/ctypes/test (Debian's libpython3.11-testsuite) twice,
each run in its own process (run_module.py): with the stdlib ctypes, and with `ctypes`
swapped for `ffibox.ctypes` on a private ffiboxd. A test that passes with the stdlib must pass
with ffibox unless expected_failures.txt lists it with a reason; a listed test that passes
is an error too, so the list can only shrink. A process killed by a signal or by the
per-module timeout fails all of its module's tests.

    /usr/bin/python3 tests/ctypes_suite/run.py [--modules test_arrays,test_cast] [--report r.json]

The module processes run /usr/bin/python3. Needs gcc (for python_stubs.c) and a built server:
FFIBOX_SERVER, the repository's bazel-bin or `ffiboxd` on PATH (docs/python.md, "Which
server"); FFIBOX_ADDRESS is overridden, so each ffibox process has its own private server,
never a shared one. Prints a summary and ends with `N passed, M failed`: N stdlib-passing
tests that pass under ffibox, M checks that did not hold (a test that fails unlisted, or
passes listed). Listed tests that still fail are counted in the summary above that line, not
as passes. Exits 1 when M > 0.
"""
import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Dict, List, NamedTuple, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# Debian's interpreter, with the suite and the helper its libpython3.11-testsuite installs.
PYTHON = "/usr/bin/python3"
SUITE_DIR = "/usr/lib/python3.11/ctypes/test"
CTYPES_TEST_HELPER = "/usr/lib/python3.11/lib-dynload/_ctypes_test.cpython-311-x86_64-linux-gnu.so"
EXPECTED = os.path.join(HERE, "expected_failures.txt")
NOT_APPLICABLE = "cannot apply to an out-of-process design"
NOT_YET = "not yet supported"
SECTIONS = (NOT_APPLICABLE, NOT_YET)


class ModuleRun(NamedTuple):
    """What one run_module.py process reported."""
    outcomes: Dict[str, Tuple[str, str]]   # test id -> (pass|fail|error|skip, detail)
    import_error: Optional[str]            # traceback when the module did not import
    crash: Optional[str]                   # "killed by SIGSEGV while running ..." etc.


class Expected(NamedTuple):
    section: str
    reason: str


def last_line(text: str) -> str:
    """The line of a traceback (or skip reason) that says what happened."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def read_expected(path: str) -> Dict[str, Expected]:
    """Parses expected_failures.txt: `[section]` lines, then `test.id  # reason` lines.
    Raises ValueError naming the line when an entry has no reason, no section, or repeats."""
    expected: Dict[str, Expected] = {}
    section = None
    with open(path, encoding="utf-8") as listing:
        for number, line in enumerate(listing, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                if section not in SECTIONS:
                    raise ValueError("%s:%d: unknown section [%s]; use one of %s"
                                     % (path, number, section, SECTIONS))
                continue
            test_id, _, reason = (part.strip() for part in line.partition("#"))
            if section is None or not reason or not test_id or " " in test_id:
                raise ValueError("%s:%d: expected `test.id  # reason` under a [section]: %r"
                                 % (path, number, line))
            if test_id in expected:
                raise ValueError("%s:%d: %s is listed twice" % (path, number, test_id))
            expected[test_id] = Expected(section, reason)
    return expected


def build_stubs(directory: str) -> str:
    """Compiles python_stubs.c into a library that carries _ctypes_test (see the file)."""
    output = os.path.join(directory, "python_stubs.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", output,
                    os.path.join(HERE, "python_stubs.c"),
                    "-Wl,--no-as-needed", CTYPES_TEST_HELPER], check=True)
    return output


def child_environment(directory: str) -> Dict[str, str]:
    env = dict(os.environ)
    client = os.path.join(ROOT, "client", "python")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [client, env.get("PYTHONPATH")]))
    # Nothing listens on this socket, so each ffibox child starts its own private ffiboxd
    # (docs/python.md, "Which server") rather than using whatever serves the default address.
    env["FFIBOX_ADDRESS"] = "unix:" + os.path.join(directory, "no-server.sock")
    env.pop("FFIBOX_REQUIRE_JAIL", None)
    return env


def run_module(module: str, mode: str, directory: str, shim: str, env: Dict[str, str],
               timeout: float) -> ModuleRun:
    """Runs one module in one mode in a fresh process and reads back its results."""
    stem = os.path.join(directory, "%s.%s" % (module, mode))
    command = [PYTHON, os.path.join(HERE, "run_module.py"), "--mode", mode,
               "--module", module, "--out", stem + ".jsonl"]
    if mode == "ffibox":
        command += ["--shim", shim]
    with open(stem + ".log", "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   env=env, cwd=directory, start_new_session=True)
        try:
            status = process.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)   # its session: the child and its kids
            except ProcessLookupError:
                pass
            process.wait()
            status = None
    outcomes: Dict[str, Tuple[str, str]] = {}
    import_error = running = None
    done = False
    if os.path.exists(stem + ".jsonl"):
        with open(stem + ".jsonl", encoding="utf-8") as results:
            for line in results:
                try:
                    record = json.loads(line)
                except ValueError:
                    break   # a line cut short by the process's death
                if record["event"] == "start":
                    running = record["test"]
                elif record["event"] == "result":
                    outcomes[record["test"]] = (record["outcome"], record["detail"])
                    running = None
                elif record["event"] == "import_error":
                    import_error = record["detail"]
                elif record["event"] == "done":
                    done = True
    crash = None
    if status is None:
        crash = "timed out after %g s" % timeout
    elif status < 0:
        crash = "killed by %s" % signal.Signals(-status).name
    elif status != 0 or not done:
        crash = "exited with status %d before finishing" % status
    if crash and running:
        crash += " while running " + running
    return ModuleRun(outcomes, import_error, crash)


def ffibox_verdict(test_id: str, run: ModuleRun) -> Tuple[bool, str]:
    """(passed, why not) for a stdlib-passing test under ffibox."""
    if run.crash:
        return False, "module process: " + run.crash
    if run.import_error:
        return False, "module import failed: " + last_line(run.import_error)
    if test_id not in run.outcomes:
        errors = [last_line(detail) for tid, (outcome, detail) in run.outcomes.items()
                  if outcome == "error" and not tid.startswith("ctypes.test.")]
        return False, "not run" + (": " + errors[0] if errors else "")
    outcome, detail = run.outcomes[test_id]
    if outcome == "pass":
        return True, ""
    if outcome == "skip":
        return False, "skipped: " + detail
    return False, last_line(detail)


class Comparison:
    """The verdicts of one run: checks that held, violations, and what the summary counts."""

    def __init__(self) -> None:
        self.held = 0
        self.violations: List[str] = []
        self.stdlib_pass = 0
        self.ffibox_pass = 0
        self.listed_failing: Counter = Counter()   # section -> tests
        self.reasons: Counter = Counter()          # Expected -> tests
        self.report: Dict[str, dict] = {"modules": {}, "tests": {}}


def compare(modules: List[str], all_modules: List[str], runs: Dict[Tuple[str, str], ModuleRun],
            logs: Dict[Tuple[str, str], str], expected: Dict[str, Expected],
            expected_path: str) -> Comparison:
    """Holds each stdlib-passing test of `modules` to its ffibox outcome and its listing."""
    result = Comparison()
    stdlib_passing = set()
    for module in modules:
        stdlib, ffibox = runs[(module, "stdlib")], runs[(module, "ffibox")]
        result.report["modules"][module] = {
            "stdlib": {"crash": stdlib.crash, "import_error": stdlib.import_error},
            "ffibox": {"crash": ffibox.crash, "import_error": ffibox.import_error,
                       "log_tail": logs[(module, "ffibox")][-4000:]}}
        if stdlib.crash or stdlib.import_error:
            result.violations.append("%s: the stdlib run failed, so there is no baseline: %s"
                                     % (module, stdlib.crash or last_line(stdlib.import_error)))
            continue
        if ffibox.crash:
            print("ctypes suite: %s under ffibox %s" % (module, ffibox.crash))
        for test_id, (outcome, _) in sorted(stdlib.outcomes.items()):
            if outcome != "pass":
                continue
            result.stdlib_pass += 1
            stdlib_passing.add(test_id)
            passed, why = ffibox_verdict(test_id, ffibox)
            listing = expected.get(test_id)
            result.report["tests"][test_id] = {
                "ffibox": "pass" if passed else why,
                "detail": ffibox.outcomes.get(test_id, ("", ""))[1],
                "listed": listing._asdict() if listing else None}
            if passed:
                result.ffibox_pass += 1
                if listing:
                    result.violations.append(
                        "%s: passes under ffibox but is listed (%s); delete its line from %s"
                        % (test_id, listing.reason, expected_path))
                else:
                    result.held += 1
            elif listing:
                result.held += 1
                result.listed_failing[listing.section] += 1
                result.reasons[listing] += 1
            else:
                result.violations.append("%s: fails under ffibox.ctypes and is not listed: %s"
                                         % (test_id, why))
    for test_id in sorted(expected):
        parts = test_id.split(".")
        module = parts[2] if len(parts) > 3 and test_id.startswith("ctypes.test.") else None
        if module not in all_modules or (module in modules and test_id not in stdlib_passing):
            result.violations.append("%s: listed in %s but not a stdlib-passing test of the "
                                     "suite here; delete its line" % (test_id, expected_path))
    return result


def run_all(modules: List[str], jobs: int, timeout: float):
    """Runs every module in both modes, `jobs` processes at a time; returns the runs and
    each process's output."""
    with tempfile.TemporaryDirectory(prefix="ffibox-ctypes-suite-") as directory:
        shim = build_stubs(directory)
        env = child_environment(directory)
        work = [(module, mode) for module in modules for mode in ("ffibox", "stdlib")]
        with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
            futures = {job: pool.submit(run_module, *job, directory, shim, env, timeout)
                       for job in work}
            runs = {job: future.result() for job, future in futures.items()}
        logs = {}
        for job in work:
            with open(os.path.join(directory, "%s.%s.log" % job), "rb") as log:
                logs[job] = log.read().decode("utf-8", "replace")
    return runs, logs


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", help="comma-separated subset, e.g. test_arrays,test_cast")
    parser.add_argument("--expected", default=EXPECTED, help="the list of expected failures")
    parser.add_argument("--report", help="write every outcome and traceback to this JSON file")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=120, help="seconds per module run")
    return parser.parse_args()


def fail_to_start(why: str) -> int:
    print("ctypes suite: " + why)
    print("0 passed, 1 failed")
    return 1


def main() -> int:
    args = parse_arguments()
    started = time.monotonic()
    missing = [path for path in (PYTHON, SUITE_DIR, CTYPES_TEST_HELPER)
               if not os.path.exists(path)]
    if missing:
        return fail_to_start("%s missing (scripts/install-deps.sh installs "
                             "libpython3.11-testsuite)" % ", ".join(missing))
    try:
        expected = read_expected(args.expected)
    except (OSError, ValueError) as error:
        return fail_to_start(str(error))
    all_modules = sorted(name[:-3] for name in os.listdir(SUITE_DIR)
                         if name.startswith("test_") and name.endswith(".py"))
    modules = all_modules
    if args.modules:
        wanted = set(args.modules.split(","))
        if wanted - set(all_modules):
            return fail_to_start("no such module: " + ", ".join(sorted(wanted - set(all_modules))))
        modules = [m for m in all_modules if m in wanted]

    runs, logs = run_all(modules, args.jobs, args.timeout)
    result = compare(modules, all_modules, runs, logs, expected, args.expected)

    if args.report:
        with open(args.report, "w", encoding="utf-8") as out:
            json.dump(result.report, out, indent=1, sort_keys=True)
    by_section = sorted(result.reasons.items(), key=lambda item: (item[0].section, -item[1]))
    for listing, count in by_section:
        print("  %3d  %s: %s" % (count, listing.section, listing.reason))
    for violation in result.violations:
        print("FAIL " + violation)
    print("ctypes suite: %d of %d stdlib-passing tests pass under ffibox.ctypes (%d listed as "
          "not applicable, %d listed as not yet supported); %d modules in %.0f s"
          % (result.ffibox_pass, result.stdlib_pass, result.listed_failing[NOT_APPLICABLE],
             result.listed_failing[NOT_YET], len(modules), time.monotonic() - started))
    # Listed tests that fail as listed held their check but did not pass.
    print("%d passed, %d failed" % (result.held - sum(result.listed_failing.values()),
                                    len(result.violations)))
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
