"""Starting and stopping the sampler: the API of the original vmprof.

    enable(fileno, period=0.00099, memory=False, lines=False, native=None,
           real_time=False)
    disable(), is_enabled(), get_profile_path()
    stop_sampling() / start_sampling()      pause recording (nests)
    sample_stack_now(skip=0)                the calling thread's stack now
    resolve_addr(addr)                      a native address's symbol
    insert_real_time_thread() / remove_real_time_thread()
                                            kept for compatibility: every
                                            thread is sampled already

On CPython the sampler is the C extension vmprof._core; on PyPy the
interpreter's own _vmprof module does the work.
"""
import atexit
import os
import platform
import sys
import time

from vmprof.errors import VMProfError

IS_PYPY = platform.python_implementation() == "PyPy"

if IS_PYPY:  # pragma: no cover - exercised on PyPy only
    import _vmprof as _backend
    _core = None
else:
    try:
        from vmprof import _core
    except ImportError as exc:  # pragma: no cover
        _core = None
        _import_error = exc

DEFAULT_PERIOD = 0.00099

# Figures of the last finished run (samples, dropped, signals_sent, ...).
last_run_stats = None
_atexit_registered = False
_pypy_enabled = False


def _require_core():
    if _core is None:
        raise VMProfError(
            "the vmprof C extension is not available (%s): reinstall vmprof with "
            "`pip install .` for this interpreter" % (_import_error,))


def _check_fileno(fileno):
    if not isinstance(fileno, int) or isinstance(fileno, bool):
        raise VMProfError(
            "fileno must be an int file descriptor (got %r): pass f.fileno() of a "
            "file opened for writing" % (fileno,))


def _check_period(period):
    try:
        period = float(period)
    except (TypeError, ValueError):
        raise VMProfError("period must be a number of seconds (got %r): e.g. 0.001" % (period,))
    if not (0 < period < 1):
        raise VMProfError(
            "period must be above 0 and below 1 second (got %r): e.g. 0.001 for "
            "1000 samples a second" % (period,))
    return period


def _meta(period, memory, lines, real_time):
    return [
        ("python", "%s %s" % (platform.python_implementation(), platform.python_version())),
        ("argv", " ".join(sys.argv)),
        ("start_time", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
        ("period_requested", repr(period)),
        ("period_usec", str(int(round(period * 1e6)))),
        ("clock", "wall" if real_time else "cpu"),
        ("pid", str(os.getpid())),
    ]


def enable(fileno, period=DEFAULT_PERIOD, memory=False, lines=False, native=None,
           real_time=False):
    """Start profiling every Python thread into the open file descriptor fileno.

    period: seconds between samples (0 < period < 1; the rate asked is the rate
    delivered).  memory: record the RSS with every sample.  lines: record the
    line of every frame.  real_time: sample on the wall clock (threads that
    sleep or wait too) instead of CPU time.  native: record the C frames too,
    interleaved with the Python frames (default: on Linux, as the original;
    left out, it falls back to Python frames where native frames cannot be
    recorded, while native=True raises).
    """
    global _atexit_registered, _pypy_enabled
    _check_fileno(fileno)
    period = _check_period(period)
    native_optional = native is None
    if native is None:
        native = sys.platform.startswith("linux")
    if IS_PYPY:  # pragma: no cover - PyPy's own sampler
        if lines:
            raise VMProfError("PyPy's sampler does not record lines: leave lines (--lines) out")
        try:
            _backend.enable(fileno, period, int(bool(memory)), 0, 0, int(bool(real_time)))
        except _backend.VMProfError as exc:
            raise VMProfError(str(exc))
        _pypy_enabled = True
        return
    _require_core()
    meta = _meta(period, memory, lines, real_time)
    try:
        _core.enable(fileno, period, bool(memory), bool(lines), bool(real_time), meta,
                     bool(native))
    except VMProfError as exc:
        # Nothing is written before native mode is set up, so Python frames
        # alone can still be recorded into the same file.
        if not (native and native_optional and str(exc).startswith("native profiling")):
            raise
        _core.enable(fileno, period, bool(memory), bool(lines), bool(real_time), meta, False)
    if not _atexit_registered:
        atexit.register(_disable_at_exit)
        _atexit_registered = True


def disable():
    """Stop profiling and finish the profile (names, trailer).

    The file descriptor stays open: closing it is the caller's business.
    """
    global last_run_stats, _pypy_enabled
    if IS_PYPY:  # pragma: no cover
        if not is_enabled():
            raise VMProfError("vmprof is not enabled: call vmprof.enable() first")
        _backend.disable()
        _pypy_enabled = False
        return
    _require_core()
    if not _core.is_enabled():
        raise VMProfError("vmprof is not enabled: call vmprof.enable() first")
    last_run_stats = _core.disable()


def _disable_at_exit():
    # The interpreter is shutting down with the profiler on: finish the file
    # while the code objects can still be named.
    if is_enabled():
        try:
            disable()
        except VMProfError as exc:
            sys.stderr.write("vmprof: %s\n" % (exc,))


def is_enabled():
    """True while a profile is being written."""
    if IS_PYPY:  # pragma: no cover
        return bool(_backend.is_enabled())
    return _core is not None and _core.is_enabled()


def get_profile_path():
    """The path of the file being written, or None (not enabled, or not a file)."""
    if IS_PYPY:  # pragma: no cover
        return _backend.get_profile_path() if is_enabled() else None
    if not is_enabled():
        return None
    fd = _core.profile_fileno()
    try:
        path = os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        return None
    return path if os.path.exists(path) else None


def stop_sampling():
    """Pause recording samples (nests with start_sampling()).  Returns the
    profile's file descriptor, or -1 when not enabled."""
    if IS_PYPY:  # pragma: no cover
        return _backend.stop_sampling()
    _require_core()
    return _core.stop_sampling()


def start_sampling():
    """Resume recording after stop_sampling()."""
    if IS_PYPY:  # pragma: no cover
        return _backend.start_sampling()
    _require_core()
    _core.start_sampling()


def sample_stack_now(skip=0):
    """The calling thread's Python stack as the sampler records it: code-object
    ids, innermost first, without the `skip` innermost frames."""
    if IS_PYPY:  # pragma: no cover
        raise VMProfError("sample_stack_now() is not available on PyPy")
    _require_core()
    return _core.sample_stack_now(int(skip) + 1)  # not this function's own frame


def resolve_addr(addr):
    """(name, line, file) of the native function at addr, or None."""
    if IS_PYPY:  # pragma: no cover
        return None
    _require_core()
    return _core.resolve_addr(int(addr))


def insert_real_time_thread(thread_id=0):
    """Compatibility: the original sampled only registered threads on the wall
    clock; every Python thread is sampled here.  Returns 0."""
    return 0


def remove_real_time_thread(thread_id=0):
    """Compatibility: see insert_real_time_thread().  Returns 0."""
    return 0
