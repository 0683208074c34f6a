#!/usr/bin/env bash
# Builds the libFuzzer target for the decoder and runs it for $FUZZ_SECONDS
# (default 60), seeded from the upstream fixtures and small crafted profiles;
# then the JIT log decoder's and the query parser's targets.
# New crashes are left in fuzz/build/crashes/ and make the script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
B=fuzz/build
mkdir -p "$B/corpus" "$B/crashes"
clang -std=gnu11 -Wall -Wextra -Werror -O1 -g -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -Isrc/libvmprof -o "$B/fuzz_decode" fuzz/fuzz_decode.c \
    src/libvmprof/vmp_profile.c src/libvmprof/vmp_decode.c src/libvmprof/vmp_source.c \
    src/libvmprof/vmp_query.c src/libvmprof/vmp_error.c src/libvmprof/vmp_hash.c \
    src/libvmprof/vmp_name.c src/libvmprof/vmp_array.c -lz
seeds="$B/seeds"
mkdir -p "$seeds"
python3 fuzz/make_seeds.py "$seeds"
cp -f tests/data/upstream/profiles/*.prof tests/data/vmprof06/*.prof "$seeds"/
[ -d fuzz/regressions ] && cp -f fuzz/regressions/* "$seeds"/ 2>/dev/null || true
echo "fuzz: decoder for ${FUZZ_SECONDS}s"
"$B/fuzz_decode" -max_total_time="$FUZZ_SECONDS" -max_len=32768 -timeout=10 \
    -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$B/crashes/" \
    "$B/corpus" "$seeds" 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==|SUMMARY|ERROR)|Done" || true

# The JIT log decoder and the trace query parser, half the time each
# (FUZZ_JITLOG_SECONDS), seeded with the sample log of every version and word
# size, the head of a real PyPy log and queries.
JL_SECONDS="${FUZZ_JITLOG_SECONDS:-$(( (FUZZ_SECONDS + 1) / 2 ))}"
JITLOG_SRC="src/jitlog/vjl_decode.c src/jitlog/vjl_query.c src/jitlog/vjl_encode.c \
    src/libvmprof/vmp_source.c src/libvmprof/vmp_error.c src/libvmprof/vmp_hash.c \
    src/libvmprof/vmp_array.c"
for target in fuzz_jitlog fuzz_jitlog_query; do
    clang -std=gnu11 -Wall -Wextra -Werror -O1 -g -fno-omit-frame-pointer \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -Isrc/libvmprof -Isrc/jitlog -Itests/c -o "$B/$target" "fuzz/$target.c" $JITLOG_SRC -lz
done
jl_seeds="$B/jitlog_seeds"
q_seeds="$B/query_seeds"
mkdir -p "$jl_seeds" "$q_seeds" "$B/jitlog_corpus" "$B/query_corpus"
gcc -std=gnu11 -Wall -Wextra -Werror -Isrc/jitlog -Itests/c -o "$B/make_jitlog_seeds" \
    fuzz/jitlog_seeds.c src/jitlog/vjl_encode.c
"$B/make_jitlog_seeds" "$jl_seeds"
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
    "$B/$target" -max_total_time="$JL_SECONDS" -max_len=$max -timeout=10 \
        -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$B/crashes/" \
        $corpus 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==|SUMMARY|ERROR)|Done" || true
done

if ls "$B"/crashes/* >/dev/null 2>&1; then
    echo "fuzz: crashes in $B/crashes/" >&2
    exit 1
fi
echo "fuzz: no crashes"
