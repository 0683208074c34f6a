"""CPython's own test suite with and without the profiler: same results?

    .venv/3.12/bin/python scripts/cpython_suite.py [--vmprof "OPTIONS"] [TEST ...]

Runs `python -m test TESTS` twice in this interpreter, in-process (no -j, so
the profiled process is the one that runs the tests): once alone, once as
`python -m vmprof [OPTIONS] -o FILE -m test TESTS`.  Each run writes JUnit
XML; the script prints how many tests passed, failed, erred and were skipped
in each, lists every test whose outcome differs, and exits 1 when any does
(or when the profiled run wrote no readable profile).  The default tests are
those that exercise what a sampler can disturb: signals, threads, fork and
exec, subprocesses, sleeping and faults.

This is a verification tool, not part of `make test` (the runs take minutes
and CPython's timing tests are sensitive to a loaded machine: compare runs
made on a quiet one)."""
import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

DEFAULT_TESTS = [
    "test_signal", "test_threading", "test_thread", "test_os", "test_subprocess",
    "test_faulthandler", "test_select", "test_selectors", "test_time", "test_fork1",
    "test_wait4", "test_socket", "test_sys", "test_gc", "test_generators",
]


def outcomes(junit_path):
    """{test id: 'pass' | 'fail' | 'error' | 'skip'} from a JUnit XML file."""
    result = {}
    for case in ET.parse(junit_path).iter("testcase"):
        name = "%s.%s" % (case.get("classname", "?"), case.get("name", "?"))
        status = "pass"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "fail" if child.tag == "failure" else "error"
                break
            if child.tag == "skipped":
                status = "skip"
        result[name] = status
    return result


def run_suite(prefix, tests, junit_path, workdir):
    command = [sys.executable] + prefix + ["-m", "test", "--junit-xml", junit_path] + tests
    print("$ " + " ".join(shlex.quote(c) for c in command), flush=True)
    done = subprocess.run(command, cwd=workdir, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    tail = done.stdout.strip().splitlines()[-3:]
    print("  exit %d; %s" % (done.returncode, " | ".join(tail)), flush=True)
    return done.returncode


def summary(result):
    counts = {}
    for status in result.values():
        counts[status] = counts.get(status, 0) + 1
    return ", ".join("%s %d" % (k, counts.get(k, 0)) for k in ("pass", "fail", "error", "skip"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vmprof", default="", metavar="OPTIONS",
                        help="options for python -m vmprof, e.g. '--real-time -p 0.0002'")
    parser.add_argument("tests", nargs="*", default=DEFAULT_TESTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cpython-suite-") as workdir:
        alone_xml = os.path.join(workdir, "alone.xml")
        profiled_xml = os.path.join(workdir, "profiled.xml")
        profile = os.path.join(workdir, "suite.prof")
        run_suite([], args.tests, alone_xml, workdir)
        run_suite(["-m", "vmprof"] + shlex.split(args.vmprof) + ["-o", profile],
                  args.tests, profiled_xml, workdir)
        alone, profiled = outcomes(alone_xml), outcomes(profiled_xml)
        import vmprof
        samples = len(vmprof.read_profile(profile).profiles)
        print("profile: %d samples" % samples)
        if samples == 0:
            print("the profiled run recorded no samples: the comparison says nothing")
            return 1
    print("alone:    %s" % summary(alone))
    print("profiled: %s" % summary(profiled))
    differ = sorted(name for name in set(alone) | set(profiled)
                    if alone.get(name) != profiled.get(name))
    for name in differ:
        print("  %-70s alone %-6s profiled %s" % (name, alone.get(name, "-"),
                                                    profiled.get(name, "-")))
    print("%d tests differ" % len(differ))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
