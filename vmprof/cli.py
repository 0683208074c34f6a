"""The options of `python -m vmprof`, in one table.

OPTIONS below is the only place an option is declared: the argparse parser of
the command line and the reader of --config files are both built from it, so an
option added here is accepted in both, with the same type and check.

A config file is ini text.  Its options may sit in a `[global]` section (what
the original vmprof read), a `[vmprof]` section, or before any section header;
keys are the long option names with or without the leading dashes, `-` or `_`
alike (`web-url`, `web_url`).  Flags take true/false/yes/no/on/off/1/0.  What
the command line says wins over the file.
"""
import argparse
import ast
import configparser
import os
import sys
from collections import namedtuple

DEFAULT_WEB_URL = "http://localhost:8000"
CONFIG_SECTIONS = ("global", "vmprof")

# kind: "flag" (no value), or the function that turns the text into the value
# (it raises ValueError with a message on bad text).
Option = namedtuple("Option", "flags dest kind default metavar help in_config")


def period_seconds(text):
    """A sampling period in seconds, 0 < period < 1 (what enable() accepts)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError("the period must be a number of seconds, e.g. 0.001, not %r" % text)
    if not 0 < value < 1:
        raise ValueError("the period must be more than 0 and less than 1 second "
                         "(e.g. 0.001 for 1000 samples per second), not %s" % text)
    return value


def web_url(text):
    """A server address; a host without a scheme gets http://."""
    text = text.strip()
    if not text:
        raise ValueError("the web URL is empty; give a server address such as %s"
                         % DEFAULT_WEB_URL)
    if "://" not in text:
        text = "http://" + text
    scheme = text.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise ValueError("the web URL must start with http:// or https://, not %s://"
                         % scheme)
    return text.rstrip("/")


def text_value(text):
    return text


OPTIONS = [
    Option(("-o", "--output"), "output", text_value, None, "FILE",
           "write the profile to FILE (no summary is printed)", True),
    Option(("-p", "--period"), "period", period_seconds, None, "SECONDS",
           "time between samples (default: the sampler's, about 0.001)", True),
    Option(("--real-time",), "real_time", "flag", False, None,
           "sample wall-clock time, so that sleeping and waiting threads are seen "
           "(default: CPU time)", True),
    Option(("--mem",), "mem", "flag", False, None,
           "record the process's memory use (RSS) with every sample", True),
    Option(("--lines",), "lines", "flag", False, None,
           "record the line of every frame", True),
    Option(("-n", "--no-native"), "no_native", "flag", False, None,
           "record Python frames only, no native (C) frames", True),
    Option(("--web",), "web", "flag", False, None,
           "upload the profile to the server at --web-url and print its address", True),
    Option(("--web-url",), "web_url", web_url, DEFAULT_WEB_URL, "URL",
           "the server to upload to (default: %s)" % DEFAULT_WEB_URL, True),
    Option(("--web-auth",), "web_auth", text_value, None, "TOKEN",
           "the API token of your account on the server", True),
    Option(("--jitlog",), "jitlog", "flag", False, None,
           "PyPy only: also record the JIT log (uploaded with --web)", True),
    Option(("--config",), "config", text_value, None, "FILE",
           "read options from an ini FILE; the command line wins", False),
]

WEB_OPTIONS = ("web_url", "web_auth")


def _argparse_type(option):
    """argparse wants errors as ArgumentTypeError to print them as one line."""
    def convert(text):
        try:
            return option.kind(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e))
    convert.__name__ = option.dest
    return convert


def add_options(parser, dests=None):
    """Adds the options of the table (or only those named in dests)."""
    for option in OPTIONS:
        if dests is not None and option.dest not in dests:
            continue
        if option.kind == "flag":
            parser.add_argument(*option.flags, dest=option.dest, action="store_true",
                                default=option.default, help=option.help)
        else:
            parser.add_argument(*option.flags, dest=option.dest, type=_argparse_type(option),
                                default=option.default, metavar=option.metavar,
                                help=option.help)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        # argparse names ARGS (nargs=REMAINDER) as required too when the
        # program is missing; only the program is.
        if message.startswith("the following arguments are required: PROGRAM"):
            message = ("give the program to run: python -m vmprof [options] program.py "
                       "[args], or -m module [args]")
        argparse.ArgumentParser.error(self, message)


def build_argparser():
    parser = _ArgumentParser(
        prog="python -m vmprof",
        description="Run a Python program under the vmprof sampling profiler.\n"
                    "Without -o or --web, a summary of where the time went is printed\n"
                    "(on stderr) when the program ends.",
        epilog="examples:  python -m vmprof myscript.py arg1 arg2\n"
               "           python -m vmprof -o out.prof --lines -m mypackage.tool\n"
               "           python -m vmprof --web --web-url example.org script.py",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser)
    parser.add_argument("-m", dest="module", action="store_true",
                        help="PROGRAM is a module name, run as `python -m` does")
    parser.add_argument("program", metavar="PROGRAM",
                        help="the script to run (or, with -m, the module)")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="the program's own arguments")
    return parser


class ConfigError(Exception):
    """A --config file is unreadable or says something wrong (one-line message)."""


_FLAG_WORDS = {"1": True, "yes": True, "true": True, "on": True,
               "0": False, "no": False, "false": False, "off": False}


def read_config(path):
    """Reads an ini file into {dest: value} for the options of the table."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("cannot read the config file %s: %s" % (path, error_reason(e)))
    ini = configparser.ConfigParser(interpolation=None)
    header_lines = 0
    try:
        try:
            ini.read_string(text, source=path)
        except configparser.MissingSectionHeaderError:
            # Options written before any section header belong to [global].
            ini = configparser.ConfigParser(interpolation=None)
            header_lines = 1
            ini.read_string("[global]\n" + text, source=path)
    except configparser.Error as e:
        raise ConfigError("the config file %s is not valid ini text: %s"
                          % (path, _ini_problem(e, header_lines)))
    by_key = {}
    for option in OPTIONS:
        if option.in_config:
            for flag in option.flags:
                if flag.startswith("--"):
                    by_key[flag[2:].replace("-", "_")] = option
    values = {}
    for section in ini.sections():
        if section not in CONFIG_SECTIONS:
            raise ConfigError("the config file %s has a section [%s]; put the options "
                              "in [global] (or before any section)" % (path, section))
        for key, text_val in ini.items(section):
            option = by_key.get(key.lstrip("-").replace("-", "_"))
            if option is None:
                raise ConfigError("unknown option %r in the config file %s; known: %s"
                                  % (key, path, ", ".join(sorted(k.replace("_", "-")
                                                                 for k in by_key))))
            values[option.dest] = _config_value(option, key, text_val, path)
    return values


def _ini_problem(error, header_lines):
    """configparser's complaint in one line, its line numbers the file's own
    (configparser counts the header_lines put before the text too)."""
    if type(error) is configparser.ParsingError and getattr(error, "errors", None):
        return "; ".join("line %d: %r is neither `name = value` nor a [section]"
                         % (lineno - header_lines, _ini_line(line))
                         for lineno, line in error.errors)
    if isinstance(error, configparser.DuplicateOptionError) and error.lineno:
        error = configparser.DuplicateOptionError(error.section, error.option, error.source,
                                                  error.lineno - header_lines)
    return " ".join(str(error).split())


def _ini_line(line):
    """A line as ParsingError keeps it: its repr() before Python 3.13, itself since."""
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "'\"":
        try:
            line = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            pass
    return line.strip()


def _config_value(option, key, text, path):
    text = text.strip()
    if option.kind == "flag":
        if text.lower() not in _FLAG_WORDS:
            raise ConfigError("%s = %s in the config file %s: write true or false"
                              % (key, text, path))
        return _FLAG_WORDS[text.lower()]
    try:
        return option.kind(text)
    except ValueError as e:
        raise ConfigError("%s in the config file %s: %s" % (key, path, e))


def error_reason(error):
    """An exception as a short phrase for a one-line message ("Permission denied")."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def parse_args(argv=None):
    """Parses the command line (sys.argv[1:] by default) with --config applied.

    On a bad argument, prints one line saying what is wrong (after argparse's
    usage line) and exits with status 2.
    """
    if argv is None:
        argv = sys.argv[1:]
    parser = build_argparser()
    args = parser.parse_args(argv)
    if args.config:
        try:
            values = read_config(args.config)
        except ConfigError as e:
            parser.error(str(e))
        # The file's values become defaults: anything given on the command line
        # is parsed again over them and so wins.
        parser.set_defaults(**values)
        args = parser.parse_args(argv)
    if args.jitlog and not is_pypy():
        parser.error("--jitlog needs PyPy (it records PyPy's JIT); on CPython leave it out")
    return args


def is_pypy():
    return sys.implementation.name == "pypy"

