#!/usr/bin/env bash
# Builds one configuration of meson.build in build/NAME and prints that folder's
# path as its last line.  The folder is configured once (CC from the
# environment, then the meson options given), and again from scratch when its
# options changed or the checkout was moved (a build folder records absolute
# paths); after that only ninja runs, which re-runs meson when meson.build changes.
#   scripts/build.sh c-gcc -Dextension=false -Dtests=true --werror
#   CC=clang scripts/build.sh fuzz -Dextension=false -Dfuzz=true -Db_sanitize=address,undefined
set -euo pipefail
cd "$(dirname "$0")/.."
name="$1"; shift
dir="build/$name"
stamp="$dir/.configured-with"
wanted="$PWD ${CC:-cc} $*"
if [ ! -f "$dir/build.ninja" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    rm -rf "$dir"; mkdir -p build
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || {
        cat "$dir.setup.log" >&2; echo "build: meson setup of $dir failed" >&2; exit 1; }
    echo "$wanted" >"$stamp"
fi
ninja -C "$dir" >"$dir.ninja.log" 2>&1 || { cat "$dir.ninja.log" >&2; echo "build: $dir failed" >&2; exit 1; }
echo "$dir"
