"""Run one integration module: Wharf's tests, or its fixture checks.

    python3 run.py test_pull_through               Wharf's tests (fixture checks left out)
    python3 run.py --fixtures test_pull_through    only the fixture checks
    python3 run.py --all test_pull_through         both

A fixture check tests the suite's own parts (the fakes, the upstreams, the
image builder, the example proxy configs), not Wharf. Its class name ends in
"Fixtures" and its docstring begins "Fixture check". ctest runs them as
fixture.<module> (label `fixture`), apart from integration.<module>, so that
a count of Wharf's tests does not include them:

    ctest --test-dir build -LE fixture      Wharf's tests only
    ctest --test-dir build -L fixture       the fixture checks only

Exit status 0 when everything selected passed (or nothing was selected).
"""

import sys
import unittest


def is_fixture(test):
    return type(test).__name__.endswith("Fixtures")


def select(suite, want_fixtures):
    """A copy of suite with only the tests whose fixture-ness is wanted
    (None: all). A module that failed to import is always kept."""
    out = unittest.TestSuite()
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            sub = select(t, want_fixtures)
            if sub.countTestCases():
                out.addTest(sub)
        elif want_fixtures is None or is_fixture(t) == want_fixtures or \
                type(t).__name__ == "_FailedTest":
            out.addTest(t)
    return out


def main(argv):
    want = False
    names = []
    for a in argv:
        if a == "--fixtures":
            want = True
        elif a == "--all":
            want = None
        elif a.startswith("-"):
            sys.exit("usage: run.py [--fixtures | --all] MODULE...")
        else:
            names.append(a)
    if not names:
        sys.exit("usage: run.py [--fixtures | --all] MODULE...")
    suite = select(unittest.defaultTestLoader.loadTestsFromNames(names), want)
    n = suite.countTestCases()
    what = {True: "fixture checks (not Wharf's tests)", False: "Wharf tests",
            None: "tests and fixture checks"}[want]
    if n == 0:
        print("%s: no %s" % (" ".join(names), what))
        return 0
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    print("%s: %d %s run, %d failed, %d errors, %d skipped"
          % (" ".join(names), result.testsRun, what, len(result.failures), len(result.errors),
             len(result.skipped)))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
