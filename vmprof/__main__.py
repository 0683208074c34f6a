"""`python -m vmprof [options] program.py [args]` / `python -m vmprof [options] -m module [args]`

Runs the program under the profiler as if it had been started directly: its
sys.argv, a fresh __main__ module, sys.path[0] (the script's directory, or the
current directory for -m), its exit status, and an uncaught exception printed
as Python prints it (with sys.excepthook, without vmprof's own frames).  The
profile is finished when the program returns, raises or calls sys.exit, after
its non-daemon threads have ended (as the interpreter waits for them too), or
when SIGTERM ends it (the program then still dies of that signal).

Then, by the options (see vmprof/cli.py):
    -o FILE    the profile stays in FILE
    --web      the profile is uploaded (vmprof/upload.py) and its address
               printed; when that fails the reason is printed and the file kept
    neither    a summary of where the time went is printed (vmprof/summary.py)
vmprof's own messages go to stderr, so the program's stdout stays its own.
"""
import builtins
import os
import runpy
import signal
import sys
import threading
import types

import vmprof
from vmprof import cli

_RUNPY_FILES = ("runpy.py", "<frozen runpy>")


def _say(message):
    try:
        sys.stderr.write("vmprof: %s\n" % message)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


class _Outcome(object):
    """How the program ended: its exit status, whether it was Ctrl-C, and
    why it never started (None when it did)."""

    def __init__(self, status=0, interrupted=False, not_started=None):
        self.status = status
        self.interrupted = interrupted
        self.not_started = not_started


# ---- running the program -------------------------------------------------

def _fresh_main_module():
    module = types.ModuleType("__main__")
    module.__builtins__ = builtins
    return module


def _script_filename(path):
    # CPython 3.9+ gives the main script an absolute __file__ and co_filename.
    if sys.version_info >= (3, 9) or cli.is_pypy():
        return os.path.abspath(path)
    return path


class ProgramError(Exception):
    """The program cannot be started at all (status as Python would exit)."""

    def __init__(self, message, status):
        Exception.__init__(self, message)
        self.status = status


class _ModuleNotRunnable(Exception):
    """runpy's lookup of a `-m` module failed (its message says why)."""


def _is_zip(path):
    import zipfile
    return os.path.isfile(path) and zipfile.is_zipfile(path)


def load_script(path):
    """Returns a callable that runs the script as __main__.

    Compiling happens here, before the profiler starts, so that a missing file
    or a syntax error is reported as Python reports it and leaves no profile.
    """
    if os.path.isdir(path) or (not path.endswith(".py") and _is_zip(path)):
        # A directory or zip with __main__.py: runpy knows how.  It puts the
        # archive first on sys.path itself, in place of our directory.  Whether
        # it holds a __main__ is asked of its path entry's finder (as runpy
        # does; nothing is imported), so that one without says so as python
        # does, before profiling, instead of with runpy's traceback.
        from importlib.machinery import PathFinder
        if PathFinder.find_spec("__main__", [path]) is None:
            raise ProgramError("can't find '__main__' module in %r" % path, 1)

        def run_archive():
            del sys.path[0]
            runpy.run_path(path, run_name="__main__")
        return run_archive
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        raise ProgramError("can't open file %r: [Errno %s] %s"
                           % (path, e.errno, e.strerror), 2)
    filename = _script_filename(path)
    code = compile(source, filename, "exec", dont_inherit=True)

    def run_script():
        module = _fresh_main_module()
        module.__file__ = filename
        module.__spec__ = None
        module.__package__ = None
        try:
            from importlib.machinery import SourceFileLoader
            module.__loader__ = SourceFileLoader("__main__", filename)
        except ImportError:
            pass
        sys.modules["__main__"] = module
        sys.path[0] = os.path.dirname(os.path.realpath(path))
        exec(code, module.__dict__)
    return run_script


def load_module(name):
    """Returns a callable that runs module `name` as `python -m` does.

    Finding the module imports its parent packages (their code is the
    program's, so it runs profiled); a module that cannot be found raises
    ProgramError from the callable, before any of the module's own code."""
    def run_module():
        sys.modules["__main__"] = _fresh_main_module()
        sys.path[0] = os.getcwd()
        find = getattr(runpy, "_get_module_details", None)
        run_code = getattr(runpy, "_run_code", None)
        if find is not None and run_code is not None:
            # What runpy._run_module_as_main (python -m) does, except that a
            # module not found is ours to report, not a SystemExit as if the
            # program had exited.
            try:
                _, spec, code = find(name, _ModuleNotRunnable)
            except _ModuleNotRunnable as e:
                raise ProgramError(str(e), 1)
            sys.argv[0] = spec.origin
            run_code(code, sys.modules["__main__"].__dict__, None, "__main__", spec)
            return
        run_as_main = getattr(runpy, "_run_module_as_main", None)
        if run_as_main is not None:
            # What `python -m` itself calls: it runs the module in the __main__
            # module's namespace and sets sys.argv[0] to its file.
            run_as_main(name, alter_argv=True)
        else:
            runpy.run_module(name, run_name="__main__", alter_sys=True)
    return run_module


def prepare_program(args, say):
    """Loads args.program (a script, or a module when args.module) as python
    would run it.  Returns (run, 0), or (None, exit status) after saying why
    with say(message); a syntax error is printed as python prints it."""
    try:
        return (load_module(args.program) if args.module else load_script(args.program)), 0
    except ProgramError as e:
        say(str(e))
        return None, e.status
    except SyntaxError as e:
        # Only the program's own lines, as python prints a syntax error.
        e.__traceback__ = None
        sys.excepthook(type(e), e, None)
        return None, 1


def _is_runner_frame(frame):
    filename = frame.f_code.co_filename
    if filename == __file__ or os.path.basename(filename) in _RUNPY_FILES:
        return True
    return filename in _RUNPY_FILES


def _strip_runner_frames(tb):
    while tb is not None and _is_runner_frame(tb.tb_frame):
        tb = tb.tb_next
    return tb


def _report_exception(exc):
    """Prints an uncaught exception the way the interpreter would."""
    tb = _strip_runner_frames(exc.__traceback__)
    exc.__traceback__ = tb
    try:
        sys.excepthook(type(exc), exc, tb)
    except BaseException:
        sys.__excepthook__(type(exc), exc, tb)


def _exit_status(exc):
    """The status Python exits with for SystemExit(exc.code)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    try:
        sys.stderr.write("%s\n" % (code,))
    except Exception:
        pass
    return 1


def run_program(run):
    """Runs it; returns an _Outcome.  Never lets the program's exception out."""
    try:
        run()
    except ProgramError as e:
        outcome = _Outcome(e.status, not_started=str(e))
    except SystemExit as e:
        outcome = _Outcome(_exit_status(e))
    except KeyboardInterrupt as e:
        _report_exception(e)
        outcome = _Outcome(130, interrupted=True)
    except BaseException as e:
        _report_exception(e)
        outcome = _Outcome(1)
    else:
        outcome = _Outcome(0)
    _wait_for_threads()
    return outcome


def _wait_for_threads():
    """Waits for the program's non-daemon threads, as interpreter exit does."""
    me = threading.current_thread()
    try:
        while True:
            pending = [t for t in threading.enumerate()
                       if t is not me and not t.daemon and t.is_alive()
                       and t is not threading.main_thread()]
            if not pending:
                return
            for t in pending:
                t.join()
    except KeyboardInterrupt:
        pass


# ---- the profile around it -----------------------------------------------

def _open_profile(args):
    """Returns (fd, path, is_temporary) or raises ProgramError."""
    if args.output:
        try:
            fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as e:
            raise ProgramError("cannot write the profile to %s: %s; choose another path "
                               "with -o" % (args.output, cli.error_reason(e)), 2)
        return fd, args.output, False
    import tempfile
    try:
        fd, path = tempfile.mkstemp(prefix="vmprof-", suffix=".prof")
    except OSError as e:
        raise ProgramError("cannot create a temporary profile file: %s; set TMPDIR or "
                           "give -o FILE" % cli.error_reason(e), 2)
    return fd, path, True


def _enable_options(args):
    options = {"memory": args.mem, "lines": args.lines, "real_time": args.real_time}
    if args.period is not None:
        options["period"] = args.period
    if args.no_native:
        options["native"] = False
    return options


def _start_jitlog(path):
    import _jitlog  # PyPy's built-in; parse_args refused --jitlog elsewhere
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    _jitlog.enable(fd)
    return fd


def _stop_jitlog(fd):
    import _jitlog
    try:
        _jitlog.disable()
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # PyPy's _jitlog.disable() closes it itself


def _is_enabled():
    is_enabled = getattr(vmprof, "is_enabled", None)
    if is_enabled is None:
        return hasattr(vmprof, "disable")
    return is_enabled()


def _deliver(args, path, temporary):
    """Uploads or summarises the finished profile; returns 0 or 1."""
    if args.web:
        from vmprof import upload
        jitlog = path + ".jitlog" if args.jitlog else None
        _say("uploading the profile to %s" % args.web_url)
        try:
            result = upload.upload(path, args.web_url, args.web_auth,
                                   argv=upload.command_line(args.program, args.args,
                                                            args.module),
                                   jitlog_path=jitlog)
        except upload.NotAProfile as e:
            _say("upload refused: %s; the file is kept in %s" % (e, path))
            return 1
        except upload.UploadError as e:
            retry = "python -m vmprof.upload %s" % path
            if args.web_url != cli.DEFAULT_WEB_URL:
                retry += " --web-url %s" % args.web_url
            _say("upload failed: %s; the profile is kept in %s (upload it later with "
                 "`%s`)" % (e, path, retry))
            return 1
        _say("profile uploaded: %s" % result.profile_url)
        if result.traces_url:
            _say("jit traces: %s" % result.traces_url)
        if temporary:
            _remove(path)
            if jitlog:
                _remove(jitlog)
        else:
            _say("the profile is also in %s" % path)
        return 0
    if args.output:
        _say("profile written to %s (view it with `vmprofshow %s`)" % (path, path))
        return 0
    from vmprof import summary
    try:
        import vmprof._core  # noqa: F401  (reading profiles is done in C)
    except ImportError:
        _say("the profile is in %s; reading it needs vmprof's C extension, which this "
             "interpreter lacks: read it with `vmprofshow %s` under CPython, or use "
             "-o FILE or --web" % (path, path))
        return 0
    try:
        stats = vmprof.read_profile(path)
        text = summary.format_summary(stats, relative_to=os.getcwd())
    except Exception as e:
        _say("cannot summarise the profile (%s: %s); it is kept in %s"
             % (type(e).__name__, " ".join(str(e).split()), path))
        return 1
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    _remove(path)
    return 0


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _can_catch_sigterm():
    """Whether SIGTERM has its default action here (and this is the main
    thread, where Python runs signal handlers)."""
    try:
        return (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    except (AttributeError, ValueError):
        return False


def _say_if_signal_taken_over():
    """A profile cut short because the program installed its own handler for
    the profiler's signal (the sampler then stops sending it) says so, else
    its missing samples would read as a program that did nothing."""
    stats = getattr(getattr(vmprof, "profiler", None), "last_run_stats", None) or {}
    taken = stats.get("signal_taken_over_ms")
    if taken is None:
        return
    signo = stats.get("signal")
    try:
        name = signal.Signals(signo).name
    except (ValueError, TypeError):
        rt_max = getattr(signal, "SIGRTMAX", None)
        if isinstance(signo, int) and rt_max and getattr(signal, "SIGRTMIN", rt_max) < signo < rt_max:
            name = "SIGRTMAX-%d" % (rt_max - signo)  # (a real-time signal: the profiler takes one from the top)
        else:
            name = "signal %s" % signo
    _say("the program installed its own handler for %s, the profiler's signal, %.2f s after "
         "it started: nothing was sampled after that (to profile it, call vmprof.enable() in the "
         "program after it installs that handler: the profiler then takes another signal)"
         % (name, taken / 1000.0))


def _keep_sigterm_out_of_forked_children(handler):
    """A child forked while `handler` (vmprof's SIGTERM handler) is installed
    gets SIGTERM's default action back, as it had without vmprof.

    Inherited, the handler let a child die of SIGTERM only when Python code
    ran again: a child waiting in C code that retries after a signal, or that
    got the signal just before it blocked (a multiprocessing.Pool(fork)
    worker stopped by pool.terminate() while it waits for the queue's
    semaphore), never died, and the parent waiting for it hung.  SIGTERM is
    blocked in the forking thread across the fork, so that one arriving
    meanwhile is neither lost in the child (Python forgets the signals its
    handler caught before the child's hooks run) nor handled by vmprof's
    handler there: the child takes it by the default action once unblocked."""
    if not hasattr(os, "register_at_fork") or not hasattr(signal, "pthread_sigmask"):
        return
    # The mask before the fork, per forking thread (two threads may fork at once).
    saved = threading.local()

    def before():
        saved.mask = None
        if signal.getsignal(signal.SIGTERM) is handler:
            saved.mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def restore():
        mask, saved.mask = getattr(saved, "mask", None), None
        if mask is not None and signal.SIGTERM not in mask:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})

    def after_in_child():
        try:
            if signal.getsignal(signal.SIGTERM) is handler:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
        finally:
            restore()

    # (hooks cannot be removed: once the handler is gone they do nothing)
    os.register_at_fork(before=before, after_in_parent=restore,
                        after_in_child=after_in_child)


def main(argv=None):
    """Runs `python -m vmprof` with argv (default sys.argv[1:]); returns the status."""
    args = cli.parse_args(argv)
    run, status = prepare_program(args, _say)
    if run is None:
        return status
    try:
        fd, path, temporary = _open_profile(args)
    except ProgramError as e:
        _say(str(e))
        return e.status

    # The program's argv from here on: the sampler records it in the profile.
    saved_argv = sys.argv
    sys.argv = [args.program] + list(args.args)
    jitlog_fd = None
    try:
        if not hasattr(vmprof, "enable"):
            raise RuntimeError("this vmprof has no sampler (vmprof.enable is missing); "
                               "reinstall it with `pip install .`")
        vmprof.enable(fd, **_enable_options(args))
        if args.jitlog:
            jitlog_fd = _start_jitlog(path + ".jitlog")
    except Exception as e:
        try:
            if _is_enabled():
                vmprof.disable()
        except Exception:
            pass
        os.close(fd)
        _remove(path)
        _say("cannot start profiling: %s" % " ".join(str(e).split()))
        sys.argv = saved_argv
        return 2

    pid = os.getpid()
    stopped = False

    def stop_profiling():
        """Finishes the profile, once, in the process that started it (a
        forked child that returns here leaves the parent's file alone)."""
        nonlocal stopped
        if stopped or os.getpid() != pid:
            return
        stopped = True
        try:
            if _is_enabled():
                vmprof.disable()
                _say_if_signal_taken_over()
        except Exception as e:
            _say("stopping the profiler failed: %s" % " ".join(str(e).split()))
        if jitlog_fd is not None:
            _stop_jitlog(jitlog_fd)
        os.close(fd)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass

    def on_sigterm(signum, frame):
        # The program would die of SIGTERM without a word: it still does,
        # by the signal itself, but after its profile is finished and
        # delivered (without it the file would lack the names of every
        # function still alive, written only when profiling stops).
        try:
            if os.getpid() == pid:
                stop_profiling()
                _deliver(args, path, temporary)
        except BaseException:
            pass  # (a write into a stream the program was writing, say): die anyway
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    # Only where SIGTERM would kill the program; a handler of its own
    # replaces this one as it would replace the default.
    catch_sigterm = _can_catch_sigterm()
    if catch_sigterm:
        _keep_sigterm_out_of_forked_children(on_sigterm)
        signal.signal(signal.SIGTERM, on_sigterm)
    # Keep this module alive: the program replaces sys.modules["__main__"].
    this_module = sys.modules.get(__name__)
    try:
        outcome = run_program(run)
    finally:
        if catch_sigterm and signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stop_profiling()
    del this_module
    if os.getpid() != pid:
        return outcome.status
    if outcome.not_started is not None:
        # As when the script is missing: the reason, and no profile.
        _remove(path)
        _say(outcome.not_started)
        return outcome.status
    # sys.argv stays the program's: its atexit handlers may still read it.
    delivered = _deliver(args, path, temporary)
    if outcome.interrupted:
        # Python ends a program stopped by Ctrl-C by the signal itself.
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except (OSError, ValueError):
            pass
    return outcome.status if outcome.status != 0 else delivered


if __name__ == "__main__":
    sys.exit(main())
