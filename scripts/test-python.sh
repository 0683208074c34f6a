#!/usr/bin/env bash
# Runs the pytest suite under every CPython in scripts/pythons (or those given).
# pytest is run from its venv's bin (not `python -m pytest`) so that the
# installed package is imported, never the source folder.
set -uo pipefail
cd "$(dirname "$0")/.."
versions="${*:-$(cat scripts/pythons)}"
status=0
for v in $versions; do
    if [ ! -x ".venv/$v/bin/pytest" ]; then
        echo "test: no venv for CPython $v (run scripts/setup.sh)" >&2
        status=1
        continue
    fi
    echo "=== pytest on CPython $v"
    # A test that hangs (a sampler bug could make the profiled program hang)
    # fails after PER_TEST_TIMEOUT seconds with every thread's stack printed,
    # instead of eating CI's time; the thread method leaves signals alone.
    ".venv/$v/bin/pytest" -q -p no:cacheprovider --timeout="${PER_TEST_TIMEOUT:-180}" \
        --timeout-method=thread tests/python || status=1
done
exit $status
