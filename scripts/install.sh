#!/usr/bin/env bash
# Builds and installs the package into the venv of each CPython given (default:
# all of scripts/pythons), the standard way: pip install .
set -euo pipefail
cd "$(dirname "$0")/.."
versions="${*:-$(cat scripts/pythons)}"
for v in $versions; do
    [ -x ".venv/$v/bin/python" ] || continue
    echo "install: building vmprof for CPython $v"
    ".venv/$v/bin/python" -m pip install -q --force-reinstall --no-deps . 2>&1 | grep -v "^\s*$" || true
    (cd / && "$OLDPWD/.venv/$v/bin/python" -c "import vmprof._core") || { echo "install: the extension does not import under $v" >&2; exit 1; }
done
