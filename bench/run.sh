#!/usr/bin/env bash
# Runs every benchmark and prints its tables (see bench/bench.py).
#   bench/run.sh            the full run (16.5 min measured at load 4-7, before the
#                           native rows; --rounds 3 shortens it on a busy machine)
#   bench/run.sh --quick    a smoke run: small profile, short workloads, 2 rounds
#   bench/run.sh --only reader,sampler,export,pypy,jitlog,process
#   bench/run.sh --configs 'ours|empty'      only the sampler rows that match
#   bench/run.sh --ours-python PATH          measure another build of ours
#   bench/run.sh --rounds 3                  fewer rounds on a busy machine
# Environment: BENCH_PY (default 3.11) picks the project venv .venv/$BENCH_PY;
# BENCH_NO_INSTALL=1 skips rebuilding the package into it.
#
# The peers live in their own venvs, never where they could shadow ours:
#   .venv/bench-orig   the original vmprof from PyPI (its profile reader and jitlog)
#   .venv/bench-orig-pypy  the same under pypy3, for its jitlog parser
#   .venv/bench-peers  py-spy, austin-dist, pyinstrument
#   .venv/bench-pypy-cpyext  ours for PyPy built with the C extension (cpyext),
#                      against the cffi binding of .venv/pypy3 (bench_bindings.py)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv-lib.sh
PY="${BENCH_PY:-3.11}"
OUT=bench/out
mkdir -p "$OUT"

# austin-dist 4 needs glibc 2.38; Debian 12 has 2.36, so stay on the 3.x line.
PEERS="py-spy austin-dist<4 pyinstrument"

make_venv() {  # make_venv NAME PACKAGES...
    local venv=".venv/$1"; shift
    drop_broken_venv "$venv"
    if [ ! -f "$venv/.bench-installed" ]; then
        echo "bench: making $venv ($*)" >&2
        "$(pyenv prefix "$PY")/bin/python" -m venv "$venv"
        "$venv/bin/python" -m pip install -q "$@"
        touch "$venv/.bench-installed"
    fi
}

if [ ! -x ".venv/$PY/bin/python" ]; then
    scripts/setup.sh
fi
if [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
    nice scripts/install.sh "$PY" >&2
fi
make_venv bench-orig vmprof
make_venv bench-peers $PEERS
if command -v pypy3 >/dev/null; then
    drop_broken_venv .venv/bench-orig-pypy
    if [ ! -f .venv/bench-orig-pypy/.bench-installed ]; then
        echo "bench: making .venv/bench-orig-pypy (vmprof under pypy3)" >&2
        pypy3 -m venv .venv/bench-orig-pypy
        .venv/bench-orig-pypy/bin/python -m pip install -q vmprof
        touch .venv/bench-orig-pypy/.bench-installed
    fi
fi

# The server section runs the server as `make` builds it.
make -s server >&2

# The C programs (gen_profile, read_bench, the empty-signal baseline, the C
# threads of the process bench) come from meson.build, built as the package
# is (release), into build/bench.
scripts/build.sh bench -Dextension=false -Dbench=true >/dev/null
# (with the JIT log bench's: a large log made of a real one, and the decoder's timer)
cp build/bench/gen_profile build/bench/read_bench build/bench/libempty_signal.so \
   build/bench/libc_sleepers.so build/bench/signal_floor build/bench/gen_jitlog build/bench/jitlog_read_bench "$OUT"/

exec "$(pyenv prefix "$PY")/bin/python" bench/bench.py --py "$PY" "$@"
