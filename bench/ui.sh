#!/usr/bin/env bash
# The server UI's run page in headless chromium (bench/ui_bench.mjs): time until the
# flame graph is drawn, bytes transferred before the first zoom, time of a zoom; on
# the 1M-sample profile of the reader bench and on a 10-sample profile (the floor),
# both uploaded with `python -m vmprof.upload` to a vmprof-server started here.
#   bench/ui.sh [REPEATS]     (default 5; medians are printed)
#   VMPROF_SERVER=PATH bench/ui.sh   another server binary (default build/server/vmprof-server)
# Goals (issue 13): 1M run interactive < 1 s, < 2 MB before the first zoom, zoom < 100 ms.
# Two zooms are timed: into the widest frame of the second row, and into the widest
# frame of the deepest row drawn (the zoom must fetch the levels under it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${BENCH_PY:-3.11}"
REPEATS="${1:-5}"
OUT=bench/out
SERVER="${VMPROF_SERVER:-build/server/vmprof-server}"
mkdir -p "$OUT"
[ -x "$SERVER" ] || make -s server
[ -f web/dist/app.js ] || (cd web && npm run -s build)
[ -x "$OUT/gen_profile" ] || {
    scripts/build.sh bench -Dextension=false -Dbench=true >/dev/null && cp build/bench/gen_profile "$OUT"/; }
for n in 1000000 10; do
    [ -f "$OUT/big-$n.prof" ] || { "$OUT/gen_profile" "$OUT/big-$n.prof.tmp" "$n" && mv "$OUT/big-$n.prof.tmp" "$OUT/big-$n.prof"; }
done

data=$(mktemp -d)
"$SERVER" --data "$data" --listen 127.0.0.1:0 > "$data/server.out" 2> "$data/server.err" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q serving "$data/server.out" 2>/dev/null && break; sleep 0.1; done
url=$(awk '/serving/ {print $3; exit}' "$data/server.out")
[ -n "$url" ] || { echo "bench/ui.sh: the server did not start: $(cat "$data/server.err")" >&2; exit 1; }

upload() {  # upload FILE -> the run id
    (cd "$data" && "$OLDPWD/.venv/$PY/bin/python" -m vmprof.upload "$OLDPWD/$1" --web-url "$url" 2>&1) \
        | sed -n 's|.*/#/\([0-9a-f]*\).*|\1|p' | tail -1
}
big=$(upload "$OUT/big-1000000.prof")
small=$(upload "$OUT/big-10.prof")
# The server keeps working after an upload (it gzips the raw file in the background):
# measure once it is idle (under 5% of a core over half a second), at most 60 s later.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
for _ in $(seq 120); do
    a=$(cpu_ticks); sleep 0.5; b=$(cpu_ticks)
    [ $((b - a)) -le 2 ] && break
done
echo "bench/ui.sh: $(uptime | sed 's/.*load/load/'), $REPEATS cold page loads each" >&2
for run in "$small" "$big"; do
    node bench/ui_bench.mjs "$url" "$run" "$REPEATS"
done | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
names = ["10 samples (floor)", "1M samples"]
print("| run | interactive (ms): median (min–max) | bytes before zoom | requests | zoom drawn / complete (ms) | zoom that fetches: drawn / complete (ms) |")
print("|---|---:|---:|---:|---:|---:|")
for name, r in zip(names, rows):
    print("| %s | %.0f (%.0f–%.0f) | %d | %d | %.1f / %.1f | %.1f / %.1f |" % (name, r["interactive_ms"],
          r["interactive_min_ms"], r["interactive_max_ms"],
          r["bytes_before_zoom"], r["requests_before_zoom"], r["zoom_drawn_ms"], r["zoom_ms"],
          r["deep_zoom_drawn_ms"], r["deep_zoom_ms"]))
if len(rows) == 2:
    print("\nratio 1M / floor: interactive %.2fx, bytes %.2fx, zoom %.2fx" % (
        rows[1]["interactive_ms"] / rows[0]["interactive_ms"],
        rows[1]["bytes_before_zoom"] / rows[0]["bytes_before_zoom"],
        rows[1]["zoom_ms"] / max(rows[0]["zoom_ms"], 0.1)))
'
