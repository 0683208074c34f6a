#!/usr/bin/env bash
# Runs the pytest suite under every interpreter: each CPython in scripts/pythons
# and each PyPy in scripts/pypys (or those given).  On PyPy the tests marked
# cpython_only (our sampler, CPython internals) are not collected.
# pytest is run from its venv's bin (not `python -m pytest`) so that the
# installed package is imported, never the source folder.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/venv-lib.sh
versions="${*:-$(interpreters)}"
status=0
# A test that fails is run once more (TEST_RERUNS=0: never), as CPython's own
# CI reruns its failed tests: many of ours count what a sampler did in a
# child process within a time, and a machine shared with other jobs sometimes
# gives a thread too little CPU for the count (two CI runs were lost so).
# A failure that comes back fails the run as before; a pass on the second run
# is listed under "rerun test summary info" as a flake to look into.
rerun=(--reruns "${TEST_RERUNS:-1}" -rR)
for v in $versions; do
    if [ ! -x ".venv/$v/bin/pytest" ]; then
        echo "test: no venv for $v (run scripts/setup.sh)" >&2
        status=1
        continue
    fi
    select=()
    case "$v" in
        # --assert=plain: PyPy before 7.3.16 (Debian 12 ships 7.3.11) has an
        # incremental-GC bug in its array-copy write barrier that crashes the
        # interpreter now and then while pytest rewrites a test module's
        # asserts (a segfault in _rewrite_test, seen in our CI and in other
        # projects' CI; PyPy's blog of 2024-03 explains it).  Plain asserts
        # still fail the test; only pytest's detailed message is lost.
        pypy*) echo "=== pytest on $v"; select=(-m "not cpython_only" --assert=plain) ;;
        *) echo "=== pytest on CPython $v" ;;
    esac
    # A test that hangs (a sampler bug could make the profiled program hang)
    # fails after PER_TEST_TIMEOUT seconds with every thread's stack printed,
    # instead of eating CI's time.  The signal method fails that test alone
    # (it is run once more, and the tests after it run); one stuck where the
    # signal's handler cannot run ends the session a minute later
    # (tests/conftest.py says why the signal is safe here).
    ".venv/$v/bin/pytest" -q -p no:cacheprovider --timeout="${PER_TEST_TIMEOUT:-180}" \
        --timeout-method=signal "${rerun[@]}" "${select[@]}" tests/python || status=1
done
exit $status
