"""Counts test cases of a `bazel test` run from its log and the JUnit XML it left.

Usage: count_bazel_tests.py LOG. Prints "PASSED FAILED". A target that ran reports its
test cases from bazel-testlogs/<target>/test.xml; a target without one (failed to build,
timed out, crashed before writing it) counts as one failure. A skipped case (GTEST_SKIP,
which Bazel reports as PASSED) is not a pass: it counts as a failure, named on stderr.
"""
import os
import re
import sys
import xml.etree.ElementTree as ET

TARGET = re.compile(r"^//([^ :]+):(\S+)\s+(?:\(cached\) )?(PASSED|FAILED|TIMEOUT|NO STATUS|"
                    r"FAILED TO BUILD|INCOMPLETE|FLAKY)")


def count(log_path):
    passed = failed = 0
    with open(log_path, errors="replace") as log:
        for line in log:
            match = TARGET.match(line)
            if not match:
                continue
            package, name, state = match.groups()
            xml_path = os.path.join("bazel-testlogs", package, name, "test.xml")
            cases = failures = 0
            if state in ("PASSED", "FAILED", "FLAKY") and os.path.exists(xml_path):
                for suite in ET.parse(xml_path).getroot().iter("testsuite"):
                    cases += int(suite.get("tests", 0)) - int(suite.get("disabled", 0))
                    failures += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
                    skipped = int(suite.get("skipped", 0))
                    if skipped:
                        print("//%s:%s: %d skipped in %s (counted as failed)" % (
                            package, name, skipped, suite.get("name")), file=sys.stderr)
                        failures += skipped
            if cases == 0:
                # No per-case report (a shell test, or no XML): the target is one test.
                cases, failures = 1, 0 if state == "PASSED" else 1
            elif state != "PASSED" and failures == 0:
                failures = 1
            passed += cases - failures
            failed += failures
    return passed, failed


if __name__ == "__main__":
    print("%d %d" % count(sys.argv[1]))
