#!/usr/bin/env bash
# Every C source of the project is compiled by meson.build: a .c file under
# src/, tests/c/, fuzz/ or bench/ that no list there names would silently not
# be built (or not tested).  Fails naming each such file.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=0
for f in $(git ls-files 'src/*.c' 'tests/c/*.c' 'fuzz/*.c' 'bench/*.c' 2>/dev/null ||
           find src tests/c fuzz bench -name '*.c'); do
    if ! grep -qF "'$f'" meson.build; then
        echo "check-build-lists: $f is in no list of meson.build: add it there (see its first lines)" >&2
        missing=1
    fi
done
[ "$missing" = 0 ] && echo "check-build-lists: every C source is in meson.build"
exit "$missing"
