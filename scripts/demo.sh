#!/usr/bin/env bash
# The main job: profile an example program with `python -m vmprof` and show
# where its time went: the terminal summary, then the call tree and an
# interactive flame graph from a kept profile.  It runs in build/demo, not in
# the source tree, whose vmprof/ folder would shadow the installed package.
set -euo pipefail
exec 2>&1   # one stream, so that a log reads in the order things happened
cd "$(dirname "$0")/.."
root=$PWD
# The newest CPython of scripts/pythons that has a venv.
bin=""
for v in $(cat scripts/pythons); do
    [ -x ".venv/$v/bin/python" ] && bin="$root/.venv/$v/bin" && version=$v
done
[ -n "$bin" ] || { echo "demo: no venv; run scripts/setup.sh first" >&2; exit 1; }
mkdir -p build/demo
cd build/demo
example="$root/examples/wordfreq.py"

echo "\$ python -m vmprof examples/wordfreq.py          # CPython $version"
"$bin/python" -m vmprof "$example"

echo
echo "\$ python -m vmprof -o wordfreq.prof examples/wordfreq.py"
"$bin/python" -m vmprof -o wordfreq.prof "$example" >/dev/null
echo
echo "\$ vmprofshow wordfreq.prof tree --prune_percent 3 --hide-interpreter"
"$bin/vmprofshow" wordfreq.prof tree --prune_percent 3 --hide-interpreter
echo
echo "\$ vmprofshow wordfreq.prof --format html -o wordfreq.html"
"$bin/vmprofshow" wordfreq.prof --format html -o wordfreq.html
echo "demo: open $PWD/wordfreq.html in a browser for the flame graph"
