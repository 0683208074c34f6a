#!/usr/bin/env bash
# The main job: profile an example program with `python -m vmprof` and show
# where its time went: the terminal summary, then the call tree and an
# interactive flame graph from a kept profile, then the same program uploaded
# with --web to a vmprof-server and its address.  It runs in build/demo, not in
# the source tree, whose vmprof/ folder would shadow the installed package.
#
# For tests (tests/server/test_make_targets.py), never needed by hand:
#   VMPROF_DEMO_DIR      the folder it runs in and writes to (default build/demo)
#   VMPROF_DEMO_DATA     the server's data folder (default build/serve-data)
#   VMPROF_DEMO_LISTEN   start the demo's own server on this HOST:PORT (port 0:
#                        one the kernel picks) instead of using or trying 8000
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
demo_dir="${VMPROF_DEMO_DIR:-$root/build/demo}"
mkdir -p "$demo_dir"
cd "$demo_dir"
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

# The profile on a server: `python -m vmprof --web` uploads it to vmprof-server,
# which keeps it in build/serve-data, the folder `make serve` serves.
server="$root/build/server/vmprof-server"
if [ -x "$server" ]; then
    default_data="$root/build/serve-data"
    data="${VMPROF_DEMO_DATA:-$default_data}"
    url=http://127.0.0.1:8000
    started=""
    listen="${VMPROF_DEMO_LISTEN:-}"
    if [ -n "$listen" ] || ! "$bin/python" -c "import urllib.request as u; u.urlopen('$url/api/health', timeout=2)" 2>/dev/null; then
        # VMPROF_DEMO_LISTEN, or no server on 8000 yet: start one for the demo
        # (port 8000 when free, so that the address printed works again under
        # `make serve`).
        if [ -z "$listen" ]; then
            listen=127.0.0.1:8000
            "$bin/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 8000))" 2>/dev/null \
                || listen=127.0.0.1:0
        fi
        "$server" --data "$data" --listen "$listen" > server.out 2> server.err &
        started=$!
        trap 'kill $started 2>/dev/null; wait $started 2>/dev/null' EXIT
        for _ in $(seq 300); do
            grep -q "serving http" server.out 2>/dev/null && break
            kill -0 $started 2>/dev/null || break
            sleep 0.1
        done
        url=$(sed -n 's/.*serving \(http:[^ ]*\).*/\1/p' server.out)
        [ -n "$url" ] || { echo "demo: the server did not start:"; cat server.err; exit 1; }
    fi
    echo
    echo "\$ python -m vmprof --web --web-url $url examples/wordfreq.py"
    "$bin/python" -m vmprof --web --web-url "$url" "$example" >/dev/null
    if [ -n "$started" ] && [ "$data" = "$default_data" ]; then
        echo "demo: the run is stored in $data; \`make serve\` serves it at http://127.0.0.1:8000"
    elif [ -n "$started" ]; then
        echo "demo: the run is stored in $data; \`vmprof-server --data $data\` serves it"
    fi
fi
