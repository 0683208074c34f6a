"""The suite's per-test timeout (scripts/test-*.sh, tests/conftest.py) fails
the test that passed it, alone: the rerun rule applies to it and the tests
after it still run.  (pytest-timeout's thread method, used before, ended
the whole session: no rerun, every later test lost.)"""
import os
import re
import shutil
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_scripts_fail_a_test_that_passes_its_timeout_alone():
    for script in ("test-python.sh", "test-server.sh"):
        with open(os.path.join(ROOT, "scripts", script)) as f:
            methods = re.findall(r"--timeout-method=(\w+)", f.read())
        assert methods and set(methods) == {"signal"}, (script, methods)


def test_a_test_past_its_timeout_fails_alone_and_runs_again_with_a_timeout_of_its_own(tmp_path):
    # (the suite's own conftest, as in a run of the suite)
    shutil.copy(os.path.join(ROOT, "tests", "conftest.py"), str(tmp_path / "conftest.py"))
    (tmp_path / "test_inner.py").write_text(textwrap.dedent("""
        import subprocess, sys, time

        def test_a_sleeps_past_its_timeout():
            t0 = time.monotonic()
            try:
                time.sleep(30)
            finally:
                print("run ended after %.1f s" % (time.monotonic() - t0))

        def test_b_waits_for_a_program_past_its_timeout():
            subprocess.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=60)

        def test_c_runs_after_them():
            pass
    """))
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "pytest"), "-p", "no:cacheprovider",
                           "-s", "--timeout=1", "--timeout-method=signal", "--reruns", "1", "-rR",
                           "test_inner.py"], cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert re.search(r"\b2 failed, 1 passed, 2 rerun", out), out
    assert out.count("Timeout (>1.0s) from pytest-timeout") >= 4, out
    # each run of the sleeping test was cut at its own timeout (the second
    # one too: pytest-timeout arms it once for all the runs)
    ends = [float(x) for x in re.findall(r"run ended after ([\d.]+) s", out)]
    assert len(ends) == 2 and all(e < 25 for e in ends), out
