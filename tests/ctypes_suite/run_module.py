"""Runs one module of CPython's ctypes test suite in this process and records each test's
outcome; started by run.py, once per module and mode.

    run_module.py --mode stdlib|ffibox --module test_arrays --out results.jsonl [--shim lib.so]

`--mode ffibox` installs `ffibox.ctypes` as `sys.modules['ctypes']` (and `ffibox.ctypes.util`
as `ctypes.util`) before the test module is imported, so the suite's `from ctypes import *`
and `import ctypes.wintypes` see exactly what a binding swapped to ffibox would see: a
submodule ffibox.ctypes lacks fails to import. `--shim` is the stub library run.py builds
(python_stubs.c); it is loaded into the default session first so that `_ctypes_test` can be
loaded by the worker (see python_stubs.c).

The output is JSON lines, flushed as they happen, so run.py can tell which test was running
when this process died:
    {"event": "start", "test": ID}
    {"event": "result", "test": ID, "outcome": "pass|fail|error|skip", "detail": TEXT}
    {"event": "import_error", "detail": TEXT}
    {"event": "done"}
The test module's own output goes to this process's stdout and stderr.
"""
import argparse
import faulthandler
import importlib
import importlib.util
import json
import os
import sys
import traceback
import unittest

SUITE_DIR = "/usr/lib/python3.11/ctypes/test"


class Recorder:
    """Appends one JSON object per line to a file, flushing each."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "w", encoding="utf-8")

    def write(self, **record) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()


class RecordingResult(unittest.TestResult):
    """A TestResult that records each test id's outcome: pass, fail, error or skip.

    A test with a failed subtest is a failure; an expected failure counts as a pass and an
    unexpected success as a failure, as unittest's own verdict does. Errors outside a test
    (setUpClass, setUpModule) are recorded under the id unittest gives them."""

    _RANK = {"pass": 0, "skip": 1, "fail": 2, "error": 3}

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self._recorder = recorder
        self._current = None   # (test id, outcome, detail) of the running test

    def _note(self, test, outcome: str, detail: str = "") -> None:
        test_id = test.id()
        if self._current is None or self._current[0] != test_id:
            self._recorder.write(event="result", test=test_id, outcome=outcome, detail=detail)
            return
        if self._RANK[outcome] >= self._RANK[self._current[1]]:
            self._current = (test_id, outcome, detail)

    def _describe(self, err) -> str:
        return "".join(traceback.format_exception(*err))

    def startTest(self, test) -> None:
        super().startTest(test)
        self._current = (test.id(), "pass", "")
        self._recorder.write(event="start", test=test.id())

    def stopTest(self, test) -> None:
        super().stopTest(test)
        if self._current is not None:
            test_id, outcome, detail = self._current
            self._recorder.write(event="result", test=test_id, outcome=outcome, detail=detail)
        self._current = None

    def addError(self, test, err) -> None:
        super().addError(test, err)
        self._note(test, "error", self._describe(err))

    def addFailure(self, test, err) -> None:
        super().addFailure(test, err)
        self._note(test, "fail", self._describe(err))

    def addSkip(self, test, reason) -> None:
        super().addSkip(test, reason)
        self._note(test, "skip", reason)

    def addUnexpectedSuccess(self, test) -> None:
        super().addUnexpectedSuccess(test)
        self._note(test, "fail", "unexpected success of a test marked expectedFailure")

    def addSubTest(self, test, subtest, err) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            # Recorded against the test itself: the list names tests, not subtests.
            self._note(test, "fail" if failed else "error",
                       "%s\n%s" % (subtest.id(), self._describe(err)))


def swap_in_ffibox() -> None:
    """Makes `import ctypes` (and `ctypes.util`) give ffibox's modules, and `ctypes.test`
    the stdlib's test package, whose __init__ then runs against ffibox.ctypes."""
    import ffibox.ctypes
    import ffibox.ctypes.util
    # The stdlib ctypes stays loaded (ffibox is built on its data types) but leaves
    # sys.modules, with its submodules: ffibox.ctypes must provide what the suite imports.
    for name in [n for n in sys.modules if n == "ctypes" or n.startswith("ctypes.")]:
        del sys.modules[name]
    sys.modules["ctypes"] = ffibox.ctypes
    sys.modules["ctypes.util"] = ffibox.ctypes.util
    spec = importlib.util.spec_from_file_location(
        "ctypes.test", os.path.join(SUITE_DIR, "__init__.py"),
        submodule_search_locations=[SUITE_DIR])
    package = importlib.util.module_from_spec(spec)
    sys.modules["ctypes.test"] = package
    spec.loader.exec_module(package)
    ffibox.ctypes.test = package  # as the import system would bind a submodule


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("stdlib", "ffibox"), required=True)
    parser.add_argument("--module", required=True, help="e.g. test_arrays")
    parser.add_argument("--out", required=True, help="JSON-lines result file")
    parser.add_argument("--shim", help="stub library to load first (ffibox mode)")
    args = parser.parse_args()
    sys.dont_write_bytecode = True   # the suite lives in /usr; leave its caches alone
    faulthandler.enable()            # a crash's log shows where the caller died
    recorder = Recorder(args.out)
    try:
        if args.mode == "ffibox":
            swap_in_ffibox()
            if args.shim:
                import ffibox.ctypes
                ffibox.ctypes.CDLL(args.shim)
        module = importlib.import_module("ctypes.test." + args.module)
    except BaseException:  # noqa: B902 - SystemExit/KeyboardInterrupt at import are failures too
        recorder.write(event="import_error", detail=traceback.format_exc())
        recorder.write(event="done")
        return 0
    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    suite.run(RecordingResult(recorder))
    recorder.write(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
