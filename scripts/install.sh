#!/usr/bin/env bash
# Builds and installs the package into the venv of each interpreter given
# (default: every one, scripts/pythons and scripts/pypys), the standard way:
# pip install .  (on PyPy the reader is built over cffi, src/module/pypy,
# without the sampler: PyPy samples with its own _vmprof).  The server binary,
# when built (make server), goes onto each venv's PATH too.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv-lib.sh
versions="${*:-$(interpreters)}"
for v in $versions; do
    [ -x ".venv/$v/bin/python" ] || continue
    echo "install: building vmprof for $v"
    ".venv/$v/bin/python" -m pip install -q --force-reinstall --no-deps . 2>&1 | grep -v "^\s*$" || true
    (cd / && "$OLDPWD/.venv/$v/bin/python" -c "import vmprof._core") || { echo "install: the extension does not import under $v" >&2; exit 1; }
    if [ -x build/server/vmprof-server ]; then
        install -m 755 build/server/vmprof-server ".venv/$v/bin/vmprof-server"
    fi
done
