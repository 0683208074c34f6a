#!/usr/bin/env bash
# Builds the libFuzzer targets (meson.build's fuzz build) and runs the decoder's for $FUZZ_SECONDS
# (default 60), seeded from the upstream fixtures and small crafted profiles;
# then the JIT log decoder's and the query parser's targets.
# New crashes are left in fuzz/build/crashes/ and make the script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
B=fuzz/build
mkdir -p "$B/corpus" "$B/crashes"
# Every file of this build is instrumented for coverage and sanitized.
CC=clang scripts/build.sh fuzz -Dextension=false -Dfuzz=true --werror -Doptimization=1 -Ddebug=true -Db_ndebug=false \
    -Db_sanitize=address,undefined -Db_lundef=false \
    "-Dc_args=-fno-omit-frame-pointer -fno-sanitize-recover=all" \
    "-Dc_link_args=-fno-sanitize-recover=all" >/dev/null
F=build/fuzz
seeds="$B/seeds"
mkdir -p "$seeds"
python3 fuzz/make_seeds.py "$seeds"
cp -f tests/data/upstream/profiles/*.prof tests/data/vmprof06/*.prof "$seeds"/
[ -d fuzz/regressions ] && cp -f fuzz/regressions/* "$seeds"/ 2>/dev/null || true
echo "fuzz: decoder for ${FUZZ_SECONDS}s"
"$F/fuzz_decode" -max_total_time="$FUZZ_SECONDS" -max_len=32768 -timeout=10 \
    -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$B/crashes/" \
    "$B/corpus" "$seeds" 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==|SUMMARY|ERROR)|Done" || true

# The JIT log decoder and the trace query parser, half the time each
# (FUZZ_JITLOG_SECONDS), seeded with the sample log of every version and word
# size, the head of a real PyPy log and queries.
JL_SECONDS="${FUZZ_JITLOG_SECONDS:-$(( (FUZZ_SECONDS + 1) / 2 ))}"
jl_seeds="$B/jitlog_seeds"
q_seeds="$B/query_seeds"
mkdir -p "$jl_seeds" "$q_seeds" "$B/jitlog_corpus" "$B/query_corpus"
"$F/make_jitlog_seeds" "$jl_seeds"
head -c 32768 tests/data/upstream/profiles/calc_pypy.jitlog > "$jl_seeds/calc_pypy_head.jitlog"
i=0
for q in 'loops' 'bridges()' 'func("merge_sort") & ~op("guard")' '(loops | bridges) & op("int_add")' \
         "op('call')" '~(loops)' ''; do
    printf '%s' "$q" > "$q_seeds/q$i"
    i=$((i + 1))
done
for target in fuzz_jitlog fuzz_jitlog_query; do
    if [ $target = fuzz_jitlog ]; then corpus="$B/jitlog_corpus $jl_seeds"; max=32768
    else corpus="$B/query_corpus $q_seeds"; max=512; fi
    echo "fuzz: $target for ${JL_SECONDS}s"
    "$F/$target" -max_total_time="$JL_SECONDS" -max_len=$max -timeout=10 \
        -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$B/crashes/" \
        $corpus 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==|SUMMARY|ERROR)|Done" || true
done

if ls "$B"/crashes/* >/dev/null 2>&1; then
    echo "fuzz: crashes in $B/crashes/" >&2
    exit 1
fi
echo "fuzz: no crashes"
