"""Settings for every pytest suite (tests/python, tests/server).

The sampler keeps the names of native functions in a cache per build id
(~/.cache/vmprof/native unless VMPROF_CACHE_DIR says otherwise).  The tests
must not write to the home of whoever runs them, so the whole run (and the
programs it starts, which inherit the environment) uses a folder of its own,
removed at the end.  A test of the cache itself sets the variable again."""
import os
import shutil
import signal
import tempfile
import threading

import pytest

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



# A test that passes its timeout (--timeout in scripts/test-*.sh) fails
# alone, and is run once more like any failed test: the timeout is
# pytest-timeout's signal method (--timeout-method=signal), a SIGALRM handler
# that raises the failure in the test, armed here for each run of the test
# (setup to teardown) rather than once for all its runs.  The thread method
# ended the whole session instead (os._exit): no rerun, and every test after
# it lost.  The signal is safe here: the profiler's are SIGURG, a real-time
# signal or SIGPROF, an ITIMER_REAL timer is not inherited across fork (the
# programs the tests start never see it), and no test arms one in the pytest process.  A Python
# handler runs only once the main thread is back in the interpreter,
# though: one stuck in C (a sampler bug in enable() or disable(), say) or
# with SIGALRM blocked never gets there.  So the thread method's end stays,
# as a backstop TIMEOUT_BACKSTOP_S later: every thread's stack, then the
# session ends, as before.
TIMEOUT_BACKSTOP_S = 60


def _arm_timeout(item, settings):
    import pytest_timeout

    def handler(signum, frame):
        __tracebackhide__ = True
        pytest_timeout.timeout_sigalrm(item, settings)

    backstop = threading.Timer(settings.timeout + TIMEOUT_BACKSTOP_S, pytest_timeout.timeout_timer,
                               (item, settings))
    backstop.daemon = True
    backstop.name = "timeout backstop %s" % item.nodeid
    item._timeout_armed = (signal.signal(signal.SIGALRM, handler), backstop)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    backstop.start()


def _disarm_timeout(item):
    armed = getattr(item, "_timeout_armed", None)
    if armed is None:
        return
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, armed[0])
    armed[1].cancel()
    armed[1].join()
    del item._timeout_armed


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item, settings):
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None  # (pytest-timeout's own)
    if settings.func_only:  # (called around each run's call)
        _arm_timeout(item, settings)
    else:  # (called once around all the runs: armed at each one's setup)
        item._timeout_settings = settings
    return True


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_cancel_timer(item):
    # (at the end of all the runs, at the end of a run's call with func_only,
    # and when a run fails: pytest-timeout's pytest_exception_interact; the
    # settings stay for the next run's setup)
    if getattr(item, "_timeout_settings", None) is None and getattr(item, "_timeout_armed", None) is None:
        return None
    _disarm_timeout(item)
    return True


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    settings = getattr(item, "_timeout_settings", None)
    if settings is not None:
        _arm_timeout(item, settings)
    yield


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if getattr(item, "_timeout_settings", None) is not None:
        _disarm_timeout(item)
