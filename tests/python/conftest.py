"""What runs on which interpreter.

On PyPy the package samples with PyPy's built-in _vmprof and reads with our
C library through cffi (src/module/pypy), so the suites of our own sampler
and of CPython internals do not apply there: they are not collected on PyPy
(rather than skipped), and every test PyPy runs applies to it.  A single test
of that kind elsewhere carries the `cpython_only` marker, which
scripts/test-python.sh deselects on PyPy (-m "not cpython_only")."""
import platform

# Our sampler (timers, frame walking, native unwinding, safety) and
# vmprof.Profiler's measurements of it.
CPYTHON_ONLY_MODULES = [
    "test_cpython_suite.py",
    "test_measure.py",
    "test_native.py",
    "test_native_fixture.py",
    "test_native_order.py",
    "test_sampler.py",
    "test_sampler_idle.py",
    "test_sampler_modes.py",
    "test_sampler_quiet.py",
    "test_sampler_rate.py",
    "test_sampler_robust.py",
    "test_sampler_safety.py",
    "test_sampler_threads.py",
]

if platform.python_implementation() == "PyPy":
    collect_ignore = CPYTHON_ONLY_MODULES


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cpython_only: needs CPython (our sampler or CPython internals); "
                   "deselected on PyPy")
