"""Settings for every pytest suite (tests/python, tests/server).

The sampler keeps the names of native functions in a cache per build id
(~/.cache/vmprof/native unless VMPROF_CACHE_DIR says otherwise).  The tests
must not write to the home of whoever runs them, so the whole run (and the
programs it starts, which inherit the environment) uses a folder of its own,
removed at the end.  A test of the cache itself sets the variable again."""
import os
import shutil
import tempfile

_private_cache_dir = None


def pytest_configure(config):
    global _private_cache_dir
    if "VMPROF_CACHE_DIR" not in os.environ:
        _private_cache_dir = tempfile.mkdtemp(prefix="vmprof-test-cache-")
        os.environ["VMPROF_CACHE_DIR"] = _private_cache_dir


def pytest_unconfigure(config):
    if _private_cache_dir is not None:
        os.environ.pop("VMPROF_CACHE_DIR", None)
        shutil.rmtree(_private_cache_dir, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    # A test run once more (scripts/test-python.sh's --reruns) is listed by
    # name only; its first failure's message is what tells the flake's cause,
    # and a CI log is often all there is to go on.
    for report in terminalreporter.stats.get("rerun", []):
        crash = getattr(report.longrepr, "reprcrash", None)
        what = crash.message if crash is not None else str(report.longrepr)
        terminalreporter.write_line("first failure of %s: %s" % (report.nodeid, what[:2000]))
