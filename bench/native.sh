#!/usr/bin/env bash
# Native mode's costs, ours against a build of another commit, in one run
# (see bench/native.py).
#   bench/native.sh [COMMIT] [native.py options]
# COMMIT (default 68b9031: main before the handler stopped calling libunwind
# and names were cached) is checked out in a temporary git worktree and
# installed with pip --target next to it; ours is the project's venv.
# Environment: BENCH_PY (default 3.12) picks the venv .venv/$BENCH_PY.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${BENCH_PY:-3.12}"
COMMIT="${1:-68b9031}"
[ $# -gt 0 ] && shift
[ -x ".venv/$PY/bin/python" ] || scripts/setup.sh
scripts/install.sh "$PY" >&2
tmp="$(mktemp -d)"
trap 'git worktree remove --force "$tmp/src" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add --detach "$tmp/src" "$COMMIT" >/dev/null
(cd "$tmp" && "$OLDPWD/.venv/$PY/bin/python" -m pip install -q --no-deps --target "$tmp/site" "$tmp/src") >&2
echo "ours: $(git rev-parse --short HEAD), baseline: $(git -C "$tmp/src" rev-parse --short HEAD), CPython $PY, load: $(cut -d' ' -f1-3 /proc/loadavg)"
nice -n 0 ".venv/$PY/bin/python" bench/native.py --baseline "$tmp/site" "$@"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
