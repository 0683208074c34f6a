#!/usr/bin/env bash
# Prints the path of the shared libpython of the newest CPython in
# scripts/pythons (nothing when it has none, or that CPython is not
# installed): the C tests compare their .eh_frame reader with libdw on it
# (tests/c/test_cfi.c, VMP_TEST_LIBPYTHON).
cd "$(dirname "$0")/.."
. scripts/venv-lib.sh
py="$(interpreter "$(tr ' ' '\n' <scripts/pythons | grep -v '^$' | tail -n 1)")" || exit 0
[ -x "$py" ] || exit 0
"$py" -c 'import os, sysconfig as s
lib = s.get_config_var("INSTSONAME") or ""
path = os.path.join(s.get_config_var("LIBDIR") or "", lib)
print(path if lib.endswith((".so", ".so.1.0")) and os.path.exists(path) else "")' 2>/dev/null
