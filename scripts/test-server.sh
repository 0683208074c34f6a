#!/usr/bin/env bash
# Runs the tests of vmprof-server (tests/server/) under one CPython of
# scripts/pythons (PY, default 3.11): real server processes on 127.0.0.1 with
# ephemeral ports, our client from that venv and the original one from
# .venv/orig.  Twice: against the server as built, then against its ASan+UBSan
# build (leaks included; the browser test once is enough), which the fuzz test
# uses in both rounds.
set -uo pipefail
cd "$(dirname "$0")/.."
v="${PY:-3.11}"
[ -x ".venv/$v/bin/pytest" ] || { echo "test-server: no venv for CPython $v (run scripts/setup.sh)" >&2; exit 1; }
[ -x build/server/vmprof-server ] || { echo "test-server: build the server first (make server)" >&2; exit 1; }
status=0
# A failed test is run once more (TEST_RERUNS=0: never): why in
# scripts/test-python.sh.
rerun=(--reruns "${TEST_RERUNS:-1}" -rR)
echo "=== server tests on CPython $v"
".venv/$v/bin/pytest" -q -p no:cacheprovider --timeout="${PER_TEST_TIMEOUT:-300}" \
    --timeout-method=signal "${rerun[@]}" tests/server "$@" || status=1
if [ -x build/server-asan/vmprof-server ]; then
    echo "=== server tests against the ASan+UBSan build"
    VMPROF_SERVER="$PWD/build/server-asan/vmprof-server" \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ".venv/$v/bin/pytest" -q -p no:cacheprovider --timeout="${PER_TEST_TIMEOUT:-300}" \
        --timeout-method=signal "${rerun[@]}" --ignore=tests/server/test_ui.py tests/server "$@" \
        || status=1
fi
exit $status
