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
    ".venv/$v/bin/pytest" -q -p no:cacheprovider tests/python || status=1
done
exit $status
