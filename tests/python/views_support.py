"""Shared helpers for the vmprofshow and export tests: where the fixtures and
the oracle are, how to run the command line, and the independent tools."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data_paths import UPSTREAM, PROFILES, WORKLOADS  # noqa: F401 (the tests import them from here)
JS = os.path.join(ROOT, "tests", "js")

with open(os.path.join(UPSTREAM, "oracle_profiles.json")) as f:
    ORACLE = json.load(f)
FIXTURES = sorted(ORACLE)

LABEL = re.compile(r"^(.*) \((.*):(\d+)\)$")


def fixture(name):
    return os.path.join(PROFILES, name)


def vmprofshow(*args, cwd=None, check=True):
    """Runs `python -m vmprof.show ARGS` in this interpreter; returns the result."""
    r = subprocess.run([sys.executable, "-m", "vmprof.show"] + [str(a) for a in args],
                       cwd=cwd or "/", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError("vmprofshow %s failed (%d): %s" % (args, r.returncode, r.stderr))
    return r


def oracle_name(name, path, line):
    return "py:%s:%s:%s" % (name, line, path)


def is_runner(name):
    """A frame of `python -m vmprof`'s runner (runpy, vmprof/__main__.py, and
    on PyPy the start-up under it, app_main.py): the
    oracle (the original's figures) counts them; our views and exports leave
    them out, since the read model's "the program, not the profiler" rule."""
    path = name.split(":", 3)[-1]
    return (path in ("<frozen runpy>", "<builtin>/app_main.py") or path.endswith("/runpy.py")
            or path.endswith("/vmprof/__main__.py"))


def facts(path):
    """The read model's facts of a profile file (samples, period, ...)."""
    from vmprof import _core
    return _core.read_file(path).facts()


def need_tool(path_or_name, why):
    found = shutil.which(path_or_name) if not os.path.isabs(path_or_name) else (
        path_or_name if os.path.exists(path_or_name) else None)
    if not found:
        pytest.skip("%s is not installed (%s); scripts/setup.sh installs it" % (path_or_name, why))
    return found


def need_node_modules():
    need_tool("node", "runs the speedscope schema and browser checks")
    if not os.path.isdir(os.path.join(JS, "node_modules", "playwright-core")):
        pytest.skip("tests/js/node_modules is missing; scripts/setup.sh runs `npm ci` there")


def node(script, *args):
    r = subprocess.run(["node", os.path.join(JS, script)] + [str(a) for a in args], cwd=JS,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=120)
    try:
        report = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError("%s printed no report (rc %d): %s %s" % (script, r.returncode,
                                                                      r.stdout, r.stderr))
    return r.returncode, report
