"""PyPy's vmprof._core (src/module/pypy/_core.py over cffi) answers what the C
extension answers: every reading, tree, query, export and JIT log call of
binding_dump.py over the fixture files, run by this CPython and by the
project's PyPy venv (.venv/pypy3, which `make install` fills), compared."""
import json
import os
import subprocess
import sys

import pytest

from data_paths import PROFILES

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYPY = os.path.join(ROOT, ".venv", "pypy3", "bin", "python")

pytestmark = [
    pytest.mark.cpython_only,
    pytest.mark.skipif(not os.path.exists(PYPY),
                       reason="no .venv/pypy3 (scripts/setup.sh and make install make it)"),
]

# TypeErrors that the interpreter words itself (argument conversion) differ
# between CPython versions; those the bindings word must agree.
OUR_TYPE_ERRORS = ("keyword", "pair", "expected a profile", "must be vmprof._core.Profile")


def dump(python, out_dir):
    # from out_dir: the source package must not shadow the installed one
    r = subprocess.run([python, os.path.join(HERE, "binding_dump.py"), PROFILES, str(out_dir)],
                       cwd=str(out_dir), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def normalized(errors):
    out = []
    for e in errors:
        if e and e[0] == "TypeError" and not any(s in e[1] for s in OUR_TYPE_ERRORS):
            e = [e[0], "(the interpreter's wording)"]
        out.append(e)
    return out


def test_pypy_binding_answers_as_the_extension(tmp_path):
    ext_dir, pypy_dir = tmp_path / "ext", tmp_path / "pypy"
    ext_dir.mkdir()
    pypy_dir.mkdir()
    ours = dump(sys.executable, ext_dir)
    pypy = dump(PYPY, pypy_dir)
    check = subprocess.run([PYPY, "-c", "import vmprof._core as c; print(c.__file__)"],
                           cwd=str(tmp_path), capture_output=True, text=True)
    assert check.stdout.strip().endswith("_core.py"), check  # the cffi binding, not cpyext
    assert sorted(ours) == sorted(pypy)
    for name in ours:
        a, b = ours[name], pypy[name]
        if isinstance(a, dict):
            a["errors"], b["errors"] = normalized(a["errors"]), normalized(b["errors"])
            for key in a:
                assert a[key] == b[key], (name, key)
        else:
            assert normalized(a) == normalized(b), name
    exports = sorted(os.listdir(ext_dir))
    assert exports == sorted(os.listdir(pypy_dir))
    assert len(exports) >= 2 * 5 * 9  # two per format and profile
    for f in exports:
        assert (ext_dir / f).read_bytes() == (pypy_dir / f).read_bytes(), f
