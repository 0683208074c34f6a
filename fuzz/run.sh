#!/usr/bin/env bash
# Builds the libFuzzer target for the decoder and runs it for $FUZZ_SECONDS
# (default 60), seeded from the upstream fixtures and small crafted profiles.
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
    src/libvmprof/vmp_tree.c src/libvmprof/vmp_error.c src/libvmprof/vmp_hash.c -lz
seeds="$B/seeds"
mkdir -p "$seeds"
python3 fuzz/make_seeds.py "$seeds"
cp -f tests/data/upstream/profiles/*.prof tests/data/vmprof06/*.prof "$seeds"/
[ -d fuzz/regressions ] && cp -f fuzz/regressions/* "$seeds"/ 2>/dev/null || true
echo "fuzz: decoder for ${FUZZ_SECONDS}s"
"$B/fuzz_decode" -max_total_time="$FUZZ_SECONDS" -max_len=32768 -timeout=10 \
    -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$B/crashes/" \
    "$B/corpus" "$seeds" 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==|SUMMARY|ERROR)|Done" || true
if ls "$B"/crashes/* >/dev/null 2>&1; then
    echo "fuzz: crashes in $B/crashes/" >&2
    exit 1
fi
echo "fuzz: no crashes"
