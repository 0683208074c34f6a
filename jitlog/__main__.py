"""`python -m jitlog` (and `pypy3 -m jitlog`): record, upload and read JIT logs.

    pypy3 -m jitlog -o FILE program.py [args]     record the program's JIT log
    pypy3 -m jitlog --web program.py [args]       record it and upload it
    python -m jitlog --upload FILE                upload a recorded log
    python -m jitlog FILE                         list its traces
    python -m jitlog FILE -q QUERY                print the selected traces stage by stage

Recording needs PyPy (its built-in _jitlog); reading and uploading run on
CPython too.  The program runs as `python -m vmprof` runs it (vmprof/__main__.py):
its own argv, __main__, exit status and tracebacks.  `-i FILE -q QUERY`, the
original tool's spelling, works as well.
"""
import argparse
import os
import sys

from vmprof import cli

PROG = "python -m jitlog"


def _say(message):
    sys.stderr.write("jitlog: %s\n" % message)


def build_argparser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Record (PyPy), upload and read PyPy JIT logs.",
        epilog="queries: loops, bridges, func(\"name\"), op(\"name\"), joined with & and |,\n"
               "negated with ~, grouped with ( ); e.g. -q 'loops & func(\"main\")'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="record: write the program's JIT log to FILE (PyPy only)")
    parser.add_argument("--web", action="store_true",
                        help="record the program's JIT log and upload it to --web-url")
    parser.add_argument("--upload", action="store_true",
                        help="upload the JIT log FILE to --web-url")
    cli.add_options(parser, cli.WEB_OPTIONS)
    parser.add_argument("-q", "--query", metavar="QUERY",
                        help="print the traces of the log FILE that QUERY selects")
    parser.add_argument("-i", "--input", metavar="FILE", help="the log to read (or give it first)")
    parser.add_argument("-m", dest="module", action="store_true",
                        help="record: PROGRAM is a module name, run as `python -m` does")
    parser.add_argument("program", metavar="PROGRAM|FILE", nargs="?",
                        help="the program to record, or the log to read or upload")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="the program's own arguments")
    return parser


def parse_args(argv):
    parser = build_argparser()
    args = parser.parse_args(argv)
    recording = args.output is not None or args.web
    if not recording and args.args:
        # `FILE -q QUERY`, `--upload FILE --web-url URL`: argparse took what
        # follows the positional as the program's ARGS; read its options from it
        late = argparse.ArgumentParser(prog=PROG, add_help=False)
        late.add_argument("-q", "--query")
        cli.add_options(late, cli.WEB_OPTIONS)
        rest = list(args.args)
        args.args = []
        _, unknown = late.parse_known_args(rest, namespace=args)
        if unknown:
            parser.error("unexpected arguments %s; to read a log give FILE -q QUERY"
                         % " ".join(unknown))
    if args.output is not None and args.web:
        parser.error("give -o FILE or --web, not both")
    if recording and args.upload:
        parser.error("--upload sends a recorded log; it goes without -o and --web")
    if recording and not args.program:
        parser.error("give the program to record, e.g. %s -o out.jitlog program.py" % PROG)
    if recording and not cli.is_pypy():
        parser.error("recording a JIT log needs PyPy (run `pypy3 -m jitlog ...`); on CPython "
                     "jitlog reads and uploads logs")
    if not recording:
        if args.input and args.program:
            parser.error("give the log once: FILE or -i FILE")
        args.input = args.input or args.program
        if not args.input:
            parser.error("give a log to read (FILE -q QUERY), to upload (--upload FILE) or a "
                         "program to record (-o FILE program.py)")
        if args.upload and args.query is not None:
            parser.error("--upload and -q do not go together")
    return args


# ---- reading ----------------------------------------------------------------

def _describe(trace):
    words = [trace.type, "0x%x" % trace.unique_id]
    if trace.jd_name:
        words.append("(%s)" % trace.jd_name)
    guard = trace.get_failing_guard()
    if trace.is_bridge() and guard is not None:
        words.append("from guard @%s of 0x%x" % (guard.descr, trace.get_parent().unique_id))
    words.append("entered %d times" % trace.counter)
    mp = trace.get_first_merge_point()
    if mp is not None:
        lineno, filename = mp.get_source_line()
        words.append("in %s" % mp.get_scope())
        if filename:
            words.append("%s:%s" % (filename, lineno))
    return " ".join(words)


def _print_trace(out, trace):
    out.write("%s\n" % _describe(trace))
    for mark in ("noopt", "opt", "asm"):
        stage = trace.get_stage(mark)
        if stage is None:
            continue
        out.write("  %s: %d ops\n" % (mark, stage.get_opcount()))
        merge_points = list(stage.get_merge_points())
        next_mp = 0
        for op in stage.get_ops():
            while next_mp < len(merge_points) and merge_points[next_mp].index <= op.index:
                out.write("    %s\n" % merge_points[next_mp].pretty_print())
                next_mp += 1
            out.write("    %s\n" % op.pretty_print())
        for mp in merge_points[next_mp:]:
            out.write("    %s\n" % mp.pretty_print())


def read(args):
    from jitlog import query
    from jitlog.parser import ParseException, parse_jitlog
    try:
        forest = parse_jitlog(args.input)
    except ParseException as e:
        _say("%s: %s" % (args.input, e))
        return 1
    try:
        traces = query.select(forest, args.query or "")
    except query.QueryError as e:
        _say("bad query %r: %s" % (args.query, e))
        return 2
    out = sys.stdout
    if args.query is None:
        out.write("%s: %d traces (version %d, %s)\n"
                  % (args.input, len(forest.traces), forest.version, forest.machine))
        for trace in traces:
            out.write("  %s\n" % _describe(trace))
    else:
        for trace in traces:
            _print_trace(out, trace)
    if forest.exc is not None:
        _say("the log is read only in part: %s" % forest.exc)
    return 0


# ---- uploading ----------------------------------------------------------------

def upload(path, args, command):
    from jitlog.upload import upload as upload_jitlog
    from vmprof.upload import UploadError
    try:
        result = upload_jitlog(path, args.web_url, args.web_auth, argv=command)
    except UploadError as e:
        _say("upload failed: %s" % e)
        return None
    return result


def upload_file(args):
    if not os.path.isfile(args.input):
        _say("%s is not a file; give the path of a JIT log" % args.input)
        return 1
    result = upload(args.input, args, os.path.basename(args.input))
    if result is None:
        return 1
    print(result.traces_url or result.profile_url)
    return 0


# ---- recording ------------------------------------------------------------

def record(args):
    from vmprof import __main__ as runner
    run, status = runner.prepare_program(args, _say)
    if run is None:
        return status
    if args.web:
        import tempfile
        fd, path = tempfile.mkstemp(prefix="jitlog-", suffix=".jitlog")
        os.close(fd)
    else:
        path = args.output
    try:
        jitlog_fd = runner._start_jitlog(path)
    except OSError as e:
        _say("cannot write the JIT log to %s: %s" % (path, cli.error_reason(e)))
        return 2
    saved_argv = sys.argv
    sys.argv = [args.program] + list(args.args)
    try:
        outcome = runner.run_program(run)
    finally:
        runner._stop_jitlog(jitlog_fd)
    status = outcome.status
    if args.web:
        from vmprof.upload import command_line
        result = upload(path, args, command_line(args.program, args.args, args.module))
        if result is None:
            _say("the JIT log is kept in %s (upload it later with `%s --upload %s`)"
                 % (path, PROG, path))
            status = status or 1
        else:
            _say("JIT log uploaded: %s" % (result.traces_url or result.profile_url))
            os.unlink(path)
    else:
        _say("JIT log written to %s (read it with `%s %s -q QUERY`)" % (path, PROG, path))
    sys.argv = saved_argv
    return status


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.output is not None or args.web:
        return record(args)
    if args.upload:
        return upload_file(args)
    try:
        return read(args)
    except BrokenPipeError:
        # `python -m jitlog FILE -q ... | head`: the reader left, not an error;
        # stdout goes to /dev/null so the interpreter's final flush is quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
