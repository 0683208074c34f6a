#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine, and nothing twice:
#   - Debian packages (compilers, sanitizer runtimes, libunwind, elfutils, ...)
#   - one project-local virtual environment per interpreter: each CPython in
#     scripts/pythons under .venv/<version>, and Debian's PyPy (scripts/pypys)
#     under .venv/pypy3, with the test tools (make install builds the package in).
# Usage: scripts/setup.sh [--no-install]   (--no-install: tools only, no build)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="build-essential clang meson ninja-build libclang-rt-14-dev zlib1g-dev libunwind-dev libdw-dev libelf-dev chromium"
# vmprof-server: HTTP, JSON, accounts, SQLite, and PostgreSQL (whose server the
# tests start in a temporary folder).
# PyPy (scripts/pypys): its interpreter, and its headers, which the cffi module
# vmprof._vmprof_cffi compiles with (PyPy ships cffi itself).
APT_PACKAGES="$APT_PACKAGES pypy3 pypy3-dev"
APT_PACKAGES="$APT_PACKAGES pkg-config libmicrohttpd-dev libjansson-dev libsodium-dev libsqlite3-dev libpq-dev postgresql"
# Its JIT log viewer disassembles machine code with capstone; it keeps profiles
# zstd-compressed.
APT_PACKAGES="$APT_PACKAGES libcapstone-dev libzstd-dev"
# Its durability test watches which requests wait for the disk (strace).
APT_PACKAGES="$APT_PACKAGES strace"
# Its bench loads it with wrk (bench/bench_server.py); the process bench pins
# programs to one core with taskset (util-linux, always there).
APT_PACKAGES="$APT_PACKAGES wrk"
# The JIT log: its tests record logs with pypy3 (PyPy's built-in _jitlog), and its
# bench runs the original parser under pypy3 too.
APT_PACKAGES="$APT_PACKAGES pypy3"

missing=""
for p in $APT_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $missing >/dev/null
fi

. scripts/venv-lib.sh

for v in $(interpreters); do
    venv=".venv/$v"
    drop_broken_venv "$venv"
    if [ ! -x "$venv/bin/python" ]; then
        python=$(interpreter "$v") || {
            echo "setup: $v is not installed (CPython: pyenv install $v; PyPy: apt install pypy3), skipping it" >&2
            continue
        }
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip
    fi
    # pytest-rerunfailures: scripts/test-python.sh runs a failed test once
    # more (see there why).
    if [ ! -f "$venv/.tools-installed-3" ]; then
        "$venv/bin/python" -m pip install -q pytest hypothesis pytest-timeout pytest-rerunfailures
        touch "$venv/.tools-installed-3"
    fi
done

# The export tests check our files with consumers that are not ours: node runs
# speedscope's schema (ajv) and drives Debian's chromium (playwright-core);
# tests/js/package-lock.json pins them.  (go tool pprof comes with Go.)
if ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing node and npm"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! tests/js/node_modules/.package-lock.json -nt tests/js/package-lock.json ]; then
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

# The server's browser UI (web/): TypeScript bundled by esbuild into web/dist, which
# vmprof-server serves, with npm's speedscope build beside it; web/package-lock.json
# pins them.  No CDN: the browser gets everything from the server.
if [ ! web/node_modules/.package-lock.json -nt web/package-lock.json ]; then
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd web && npm run -s build)

# The original vmprof from PyPI, in a venv of its own (never where it could
# shadow ours): the server's tests check that its client uploads too.
orig_py=""
for v in 3.11 $(cat scripts/pythons); do
    [ -x ".venv/$v/bin/python" ] && { orig_py=$v; break; }
done
drop_broken_venv .venv/orig
if [ -n "$orig_py" ] && [ ! -f .venv/orig/.installed ]; then
    echo "setup: making .venv/orig (the original vmprof from PyPI)"
    "$(pyenv prefix "$orig_py")/bin/python" -m venv .venv/orig
    .venv/orig/bin/python -m pip install -q vmprof && touch .venv/orig/.installed
fi
