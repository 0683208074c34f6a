#!/usr/bin/env bash
# The build where there is no sampler (macOS, or Linux without libdw/libelf),
# made here with -Dsampler=disabled, the same switch meson.build sets from the
# platform: it installs with pip in a fresh venv, reads, shows and exports the
# fixtures, and enable() fails with one line saying why.
#   scripts/test-reader-only.sh [VERSION]   (default: the last of scripts/pythons)
set -euo pipefail
cd "$(dirname "$0")/.."
v="${1:-$(tr ' ' '\n' <scripts/pythons | tail -n 1)}"
root=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/vmprof-reader-only.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$(pyenv prefix "$v")/bin/python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q -Csetup-args=-Dsampler=disabled "$root" \
    >"$work/pip.log" 2>&1 || { cat "$work/pip.log" >&2; exit 1; }
cd "$work"
"$work/venv/bin/python" - "$root/tests/data/upstream/profiles/calc_py311.prof" <<'PY'
import subprocess, sys
import vmprof
fixture = sys.argv[1]
stats = vmprof.read_profile(fixture)
assert stats.get_tree().count > 0
for fmt in ("collapsed", "speedscope", "pprof", "firefox", "html"):
    subprocess.run([sys.executable, "-m", "vmprof.show", fixture, "--format", fmt, "-o", "out." + fmt],
                   check=True)
with open("p.prof", "wb") as f:
    try:
        vmprof.enable(f.fileno())
    except vmprof.VMProfError as exc:
        message = str(exc)
    else:
        vmprof.disable()
        raise AssertionError("enable() sampled in a build without the sampler")
assert "\n" not in message and "cannot sample" in message, message
print("reader-only build: reads, shows, exports; enable() says: " + message)
PY
