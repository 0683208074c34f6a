#!/usr/bin/env bash
# Builds and installs the package into the venv of each CPython given (default:
# all of scripts/pythons), the standard way: pip install .  The server binary,
# when built (make server), goes onto each venv's PATH too.
set -euo pipefail
cd "$(dirname "$0")/.."
versions="${*:-$(cat scripts/pythons)}"
for v in $versions; do
    [ -x ".venv/$v/bin/python" ] || continue
    echo "install: building vmprof for CPython $v"
    ".venv/$v/bin/python" -m pip install -q --force-reinstall --no-deps . 2>&1 | grep -v "^\s*$" || true
    (cd / && "$OLDPWD/.venv/$v/bin/python" -c "import vmprof._core") || { echo "install: the extension does not import under $v" >&2; exit 1; }
    if [ -x build/server/vmprof-server ]; then
        install -m 755 build/server/vmprof-server ".venv/$v/bin/vmprof-server"
    fi
done
