"""CPython's own test suite with and without the profiler: same results?

    .venv/3.13/bin/python scripts/cpython_suite.py [options] [TEST ...]

For each test module (default: those that exercise what a sampler can
disturb: signals, threads, fork and exec, subprocesses, sleeping, faults),
runs `python -m test MODULE` in this interpreter, in-process (no -j: the
profiled process is the one that runs the tests), once alone and once under
`python -m vmprof OPTIONS -o FILE` for each configuration (default: the CPU
clock, and the wall clock with --real-time; both with native frames).  Each
module runs in a process of its own with a time limit, so a crash or a hang
costs one module's verdict, not the whole comparison.

Each run writes JUnit XML; a test's outcome is pass, fail, error or skip, and
a module's is its regrtest result (SUCCESS, FAILURE, ENV_CHANGED, ...), or
CRASH (no XML) or TIMEOUT.  A profiled run must leave a readable profile with
samples, or its verdict says so.  One line per module and configuration:

    test_signal    cpu   same     (114 tests: 101 pass 13 skip; 2,113 samples; 41.0 s alone, 42.3 s)
    test_signal    wall  DIFFERS  (... ) then one line per test whose outcome differs

With --rerun N, every test whose outcome differs is run again alone N times
each way (alternating), and the counts of each outcome tell a flaky test
(fails alone too, or passes again) from an effect of the profiler (an outcome
other than pass that only the profiled runs give).  Exit status: 0 when
every module is the same in every configuration, 1 otherwise.

A verification tool, not part of `make test`: the default list takes about 10
minutes per configuration, and CPython's timing tests are sensitive to a
loaded machine (compare runs made on a quiet one; --rerun separates chance).
tests/python/test_cpython_suite.py runs it over one small module."""
import argparse
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

DEFAULT_TESTS = [
    "test_signal", "test_threading", "test_thread", "test_os", "test_subprocess",
    "test_faulthandler", "test_select", "test_selectors", "test_time", "test_fork1",
    "test_wait4", "test_socket", "test_sys", "test_gc", "test_generators",
]
# --wide: further modules, those that exercise the interpreter broadly or sit
# next to what a profiler touches (tracing and profiling hooks, frames and
# code objects, asyncio and thread pools, ptys, mmap, ctypes, the C API,
# sub-interpreters, imports, the command line).  Left out: modules that need
# resources this kind of run lacks or that take too long in-process (the
# test_multiprocessing_* packages, test_gdb, test_peg_generator, test_regrtest,
# test_venv/test_ensurepip, network ones such as test_timeout and test_ssl).
# A module missing from the running version (test_monitoring before 3.12, ...)
# is dropped with a line saying so.
WIDE_TESTS = [
    "test_asyncio", "test_concurrent_futures", "test_queue", "test_sched",
    "test_threading_local", "test_eintr", "test_pty", "test_posix", "test_mmap",
    "test_logging", "test_shutil", "test_tempfile",
    "test_sys_settrace", "test_sys_setprofile", "test_cprofile", "test_profile", "test_trace",
    "test_bdb", "test_pdb", "test_frame", "test_code", "test_monitoring", "test_perf_profiler",
    "test_perfmaps", "test_external_inspection", "test_tracemalloc", "test_audit", "test_dis",
    "test_inspect", "test_traceback", "test_exceptions", "test_coroutines", "test_contextlib",
    "test_weakref", "test_atexit", "test_io",
    "test_capi", "test_ctypes", "test_embed", "test_interpreters", "test__interpreters",
    "test__interpchannels", "test__xxsubinterpreters", "test__xxinterpchannels",
    "test_free_threading", "test_import",
    "test_importlib", "test_runpy", "test_cmd_line", "test_cmd_line_script", "test_builtin",
    "test_sort", "test_itertools", "test_functools", "test_descr", "test_dict", "test_list",
    "test_str", "test_unicode", "test_json", "test_re", "test_zlib", "test_hashlib",
    "test_pickle", "test_readline",
]
DEFAULT_CONFIGS = [("cpu", ""), ("wall", "--real-time")]


class Run(object):
    """One `python -m test` process: its module result and each test's outcome."""

    def __init__(self, result, outcomes, messages, seconds, log, samples=None):
        self.result = result          # SUCCESS, FAILURE, ..., CRASH, TIMEOUT
        self.outcomes = outcomes      # {test id: pass | fail | error | skip}
        self.messages = messages      # {test id: last line of its failure's message}
        self.seconds = seconds
        self.log = log                # path of the run's output
        self.samples = samples        # profiled runs: samples read, or an error text


def read_outcomes(junit_path):
    """({test id: 'pass' | 'fail' | 'error' | 'skip'}, {test id: failure message})
    from a JUnit XML file."""
    result, messages = {}, {}
    for case in ET.parse(junit_path).iter("testcase"):
        # regrtest writes the full test id as the name and no classname
        name = case.get("name", "?")
        if case.get("classname"):
            name = "%s.%s" % (case.get("classname"), name)
        status = "pass"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "fail" if child.tag == "failure" else "error"
                lines = (child.get("message") or "").strip().splitlines()
                messages[name] = lines[-1] if lines else ""
                break
            if child.tag == "skipped":
                status = "skip"
        result[name] = status
    return result, messages


def module_result(output, returncode):
    """The regrtest verdict line ('Tests result: X' / 'Result: X'), else the code."""
    for line in reversed(output.splitlines()):
        line = line.strip().strip("=").strip()
        for lead in ("Tests result:", "Result:"):
            if line.startswith(lead):
                return line[len(lead):].strip().split(",")[0].split(" then ")[0]
    return "CRASH" if returncode else "SUCCESS"


def count_samples(profile):
    """Samples in the profile, or a one-line text saying why there are none."""
    if not os.path.exists(profile):
        return "no profile written"
    try:
        import vmprof
        return len(vmprof.read_profile(profile).profiles)
    except Exception as error:  # any reader error is the verdict, not a crash of ours
        return "unreadable profile: %s" % (str(error).splitlines() or ["?"])[0]


def run_tests(python, prefix, tests, workdir, name, timeout, match=None, ignore=()):
    """Runs `python PREFIX -m test TESTS` in its own session; returns a Run."""
    junit = os.path.join(workdir, name + ".xml")
    log = os.path.join(workdir, name + ".log")
    for stale in (junit,):
        if os.path.exists(stale):
            os.unlink(stale)
    command = [python] + prefix + ["-m", "test", "--junit-xml", junit]
    if match:
        command += ["-m", match]
    for pattern in ignore:
        command += ["--ignore", pattern]
    command += tests
    started = time.monotonic()
    with open(log, "w") as out:
        out.write("$ %s\n" % " ".join(shlex.quote(c) for c in command))
        out.flush()
        child = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            returncode = child.wait(timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)   # the tests' own children too
            returncode = child.wait()
            timed_out = True
    seconds = time.monotonic() - started
    with open(log, errors="replace") as out:
        output = out.read()
    outcomes, messages = {}, {}
    if os.path.exists(junit):
        try:
            outcomes, messages = read_outcomes(junit)
        except ET.ParseError:
            pass
    if timed_out:
        result = "TIMEOUT"
    elif not outcomes and returncode:
        result = "CRASH"
    else:
        result = module_result(output, returncode)
    return Run(result, outcomes, messages, seconds, log)


def profiled_prefix(options, profile):
    return ["-m", "vmprof"] + shlex.split(options) + ["-o", profile]


def tally(outcomes):
    counts = {}
    for status in outcomes.values():
        counts[status] = counts.get(status, 0) + 1
    return " ".join("%d %s" % (counts[k], k) for k in ("pass", "fail", "error", "skip")
                    if counts.get(k))


def differing(alone, profiled):
    names = set(alone.outcomes) | set(profiled.outcomes)
    return sorted(n for n in names if alone.outcomes.get(n) != profiled.outcomes.get(n))


def verdict_line(module, config, alone, profiled):
    """(one line, list of differing test ids, whether this pair counts as same)."""
    differ = differing(alone, profiled)
    problems = []
    if alone.result in ("CRASH", "TIMEOUT"):
        problems.append("alone: %s, nothing to compare (see %s)" % (alone.result, alone.log))
    if alone.result != profiled.result:
        problems.append("module %s alone, %s profiled" % (alone.result, profiled.result))
    if differ:
        problems.append("%d test%s differ" % (len(differ), "" if len(differ) == 1 else "s"))
    if not isinstance(profiled.samples, int):
        problems.append(profiled.samples)
    elif profiled.samples == 0:
        problems.append("the profile has no samples")
    same = not problems
    facts = "%d tests: %s; %s samples; %.1f s alone, %.1f s profiled" % (
        len(profiled.outcomes), tally(profiled.outcomes) or "none",
        "{:,}".format(profiled.samples) if isinstance(profiled.samples, int) else "no",
        alone.seconds, profiled.seconds)
    line = "%-18s %-5s %-8s (%s)" % (module, config, "same" if same else "DIFFERS", facts)
    if problems:
        line += ": " + "; ".join(problems)
    return line, differ, same


def rerun(python, module, test_id, options, count, workdir, timeout, ignore):
    """Runs one test alone and profiled `count` times each, alternating.

    Returns {'alone': {outcome: times}, 'profiled': {outcome: times}}; a run
    that crashed or timed out counts as that, one that did not list the test
    as 'absent'."""
    seen = {"alone": {}, "profiled": {}}
    for i in range(count):
        for way in ("alone", "profiled"):
            profile = os.path.join(workdir, "rerun.prof")
            prefix = [] if way == "alone" else profiled_prefix(options, profile)
            run = run_tests(python, prefix, [module], workdir, "rerun-" + way, timeout,
                            match=test_id, ignore=ignore)
            if run.result in ("CRASH", "TIMEOUT"):
                status = run.result.lower()
            else:
                status = run.outcomes.get(test_id, "absent")
            seen[way][status] = seen[way].get(status, 0) + 1
    return seen


def only_profiled(seen):
    """Outcomes other than pass that the reruns gave under the profiler only."""
    return sorted(k for k in seen["profiled"] if k != "pass" and k not in seen["alone"])


def tally_text(counts):
    return " ".join("%d %s" % (n, k) for k, n in sorted(counts.items()))


def parse_config(text):
    name, sep, options = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            "--config wants NAME=OPTIONS, e.g. wall='--real-time -p 0.0005'; got %r" % text)
    return name, options


def present_tests(modules):
    """The modules this CPython has, in order, without repeats; each one it lacks
    is left out with a line saying so (regrtest would report a missing module as
    a crash of the run alone, which says nothing about the profiler)."""
    result = []
    for module in modules:
        if module in result:
            continue
        if importlib.util.find_spec("test." + module) is None:
            print("%s: not in CPython %s, left out" % (module, sys.version.split()[0]),
                  flush=True)
            continue
        result.append(module)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", action="append", type=parse_config, metavar="NAME=OPTIONS",
                        help="a profiled configuration: options for python -m vmprof "
                             "(repeatable; default: cpu='' and wall='--real-time')")
    parser.add_argument("--timeout", type=float, default=600, metavar="SECONDS",
                        help="time limit of one module's run (default 600)")
    parser.add_argument("--rerun", type=int, default=0, metavar="N",
                        help="run each differing test N more times each way (default 0)")
    parser.add_argument("--ignore", action="append", default=[], metavar="PATTERN",
                        help="tests to leave out, as regrtest's --ignore (glob; repeatable), "
                             "e.g. '*VSOCK*' where the machine's vsock hangs or is taken")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep the logs, XML and profiles in DIR (default: a temporary "
                             "folder, removed at the end)")
    parser.add_argument("--wide", action="store_true",
                        help="the default modules and %d more that exercise the interpreter "
                             "broadly (WIDE_TESTS; about an hour per configuration)"
                             % len(WIDE_TESTS))
    parser.add_argument("tests", nargs="*", metavar="TEST",
                        help="test modules (default: %s)" % " ".join(DEFAULT_TESTS))
    args = parser.parse_args(argv)
    tests = list(args.tests or DEFAULT_TESTS)
    if args.wide:
        tests += WIDE_TESTS
    tests = present_tests(tests)
    configs = args.config or DEFAULT_CONFIGS
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # Started with SIGINT ignored (nohup, some CI runners, `cmd &`): the
        # tests would inherit that, and CPython's tests of Ctrl-C fail, or hang
        # (test_threading's interrupt_main() of an endless recursion).  A
        # handler is reset to the default action in the tests' processes.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("SIGINT was ignored: the tests get its default action", flush=True)
    python = sys.executable
    print("%s %s; configurations: %s" % (
        python, sys.version.split()[0],
        ", ".join("%s=%r" % c for c in configs)), flush=True)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        workroot, cleanup = os.path.abspath(args.keep), None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="cpython-suite-")
        workroot = cleanup.name
    same_pairs = total_pairs = 0
    flaky, effects = [], []
    try:
        for module in tests:
            workdir = os.path.join(workroot, module)
            os.makedirs(workdir, exist_ok=True)
            alone = run_tests(python, [], [module], workdir, "alone", args.timeout,
                              ignore=args.ignore)
            if alone.result == "TIMEOUT":
                # a hang without the profiler (this machine's): nothing to compare,
                # and the profiled runs would only wait as long again
                total_pairs += len(configs)
                print("%-18s %-5s %-8s (alone: TIMEOUT after %.0f s, see %s; not profiled: "
                      "--ignore the test that hangs)" % (module, "-", "UNUSED", alone.seconds,
                                                         alone.log), flush=True)
                continue
            for name, options in configs:
                profile = os.path.join(workdir, name + ".prof")
                profiled = run_tests(python, profiled_prefix(options, profile), [module],
                                     workdir, name, args.timeout, ignore=args.ignore)
                profiled.samples = count_samples(profile)
                line, differ, same = verdict_line(module, name, alone, profiled)
                total_pairs += 1
                same_pairs += same
                print(line, flush=True)
                if profiled.result in ("CRASH", "TIMEOUT"):
                    print("    the profiled run ended in %s: see %s" % (profiled.result,
                                                                     profiled.log), flush=True)
                    differ = []  # not listed one by one: none ran to its end
                for test_id in differ:
                    detail = "    %-72s alone %-5s %s %s" % (
                        test_id, alone.outcomes.get(test_id, "-"), name,
                        profiled.outcomes.get(test_id, "-"))
                    why = profiled.messages.get(test_id) or alone.messages.get(test_id)
                    if why:
                        detail += " (%s)" % why[:120]
                    if args.rerun > 0 and profiled.result not in ("CRASH", "TIMEOUT"):
                        seen = rerun(python, module, test_id, options, args.rerun, workdir,
                                     args.timeout, args.ignore)
                        again = "alone %s, %s %s" % (tally_text(seen["alone"]), name,
                                                     tally_text(seen["profiled"]))
                        detail += "; again: " + again
                        (effects if only_profiled(seen) else flaky).append(
                            "%s: %s" % (test_id, again))
                    print(detail, flush=True)
                if not same and not differ:
                    print("    logs: %s, %s" % (alone.log, profiled.log), flush=True)
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    print("summary: %d of %d module runs the same with and without the profiler"
          % (same_pairs, total_pairs))
    for label, items in (("only under the profiler", effects),
                         ("by chance (alone too, or not again)", flaky)):
        for item in items:
            print("  %s: %s" % (label, item))
    return 0 if same_pairs == total_pairs else 1


if __name__ == "__main__":
    sys.exit(main())
