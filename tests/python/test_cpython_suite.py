"""scripts/cpython_suite.py, the comparison of CPython's own tests with and
without the profiler, run over one small test module (the whole comparison
takes far too long for `make test`; see docs/cpython-suite.md)."""
import os
import subprocess
import sys

import pytest

import vmprof

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "cpython_suite.py")

pytestmark = pytest.mark.skipif(not hasattr(vmprof, "enable"),
                                reason="the sampler (vmprof.enable) is not built in")


def run_suite(tmp_path, *args):
    env = dict(os.environ, VMPROF_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, SCRIPT, "--keep", str(tmp_path / "runs")] + list(args),
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                          env=env)


def verdicts(stdout):
    """{configuration: verdict} from the one-line-per-module report."""
    found = {}
    for line in stdout.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "test_bisect":
            found[words[1]] = words[2]
    return found


def test_one_module_is_the_same_on_both_clocks_and_the_profiles_sample(tmp_path):
    done = run_suite(tmp_path, "test_bisect")
    assert done.returncode == 0, done.stdout + done.stderr
    assert verdicts(done.stdout) == {"cpu": "same", "wall": "same"}, done.stdout
    assert "summary: 2 of 2 module runs the same" in done.stdout
    for clock in ("cpu", "wall"):
        profile = tmp_path / "runs" / "test_bisect" / (clock + ".prof")
        stats = vmprof.read_profile(str(profile))
        # in-process: the profile holds the tests' own frames, not only the runner's
        assert any("test_bisect" in name for name in stats.adr_dict.values()), clock


def test_a_profiled_run_that_cannot_start_is_reported_as_differing(tmp_path):
    # vmprof refuses a negative period: no tests run, no profile written
    done = run_suite(tmp_path, "--config", "broken=--period -1", "test_bisect")
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(l for l in done.stdout.splitlines() if l.startswith("test_bisect"))
    assert line.split()[1:3] == ["broken", "DIFFERS"], line
    assert "module SUCCESS alone, CRASH profiled" in line and "no profile written" in line
    assert "summary: 0 of 1 module runs the same" in done.stdout


def test_only_the_modules_this_cpython_has_are_run_once_each_and_it_says_which_it_left_out(capsys):
    # named or added by --wide alike: test_str, say, is not in 3.9, and its
    # "run alone" would be a crash that says nothing about the profiler
    sys.path.insert(0, os.path.dirname(SCRIPT))
    try:
        import cpython_suite
    finally:
        sys.path.pop(0)
    assert cpython_suite.present_tests(
        ["test_bisect", "test_gc", "test_no_such_module_here", "test_bisect", "test_heapq"]) == [
        "test_bisect", "test_gc", "test_heapq"]
    assert "test_no_such_module_here: not in CPython" in capsys.readouterr().out
