"""Options of `python -m vmprof`: one table for the command line and --config."""
import subprocess
import sys

import pytest

from vmprof import cli


def parse(*argv):
    return cli.parse_args(list(argv))


def parse_error(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        cli.parse_args(list(argv))
    assert info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_defaults():
    args = parse("prog.py")
    assert args.program == "prog.py" and args.args == [] and not args.module
    assert args.output is None and args.period is None
    assert not (args.mem or args.lines or args.real_time or args.no_native or args.web)
    assert args.web_url == "http://localhost:8000"
    assert args.web_auth is None and args.config is None


def test_every_option():
    args = parse("-o", "out.prof", "-p", "0.0005", "--real-time", "--mem", "--lines",
                 "-n", "--web", "--web-url", "example.org:9000/", "--web-auth", "tok",
                 "prog.py")
    assert args.output == "out.prof" and args.period == 0.0005
    assert args.real_time and args.mem and args.lines and args.no_native and args.web
    assert args.web_url == "http://example.org:9000"
    assert args.web_auth == "tok"


def test_program_arguments_are_left_to_the_program():
    args = parse("--lines", "prog.py", "--mem", "-o", "x", "--", "-p")
    assert args.program == "prog.py"
    assert args.args == ["--mem", "-o", "x", "--", "-p"]
    assert not args.mem and args.output is None


def test_module_mode():
    args = parse("-o", "x.prof", "-m", "json.tool", "--sort-keys", "in.json")
    assert args.module and args.program == "json.tool"
    assert args.args == ["--sort-keys", "in.json"]


@pytest.mark.parametrize("period", ["0", "-1", "1", "2.5", "abc"])
def test_bad_period(capsys, period):
    line = parse_error(capsys, "-p", period, "prog.py")
    assert "period" in line and ("second" in line)


def test_missing_program(capsys):
    assert parse_error(capsys, "--mem").endswith(
        "error: give the program to run: python -m vmprof [options] program.py [args], "
        "or -m module [args]")  # it said "required: PROGRAM, ARGS", but ARGS is not


def test_bad_web_url(capsys):
    assert "http:// or https://" in parse_error(capsys, "--web-url", "ftp://x", "p.py")


@pytest.mark.cpython_only  # --jitlog is accepted on PyPy
def test_jitlog_needs_pypy(capsys):
    line = parse_error(capsys, "--jitlog", "prog.py")
    assert "--jitlog needs PyPy" in line


def write(tmp_path, text, name="vmprof.ini"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_config_global_section(tmp_path):
    path = write(tmp_path, "[global]\nperiod = 0.002\nweb-url = example.com\n"
                           "lines = yes\nreal_time = true\nmem = off\n")
    args = parse("--config", path, "prog.py")
    assert args.period == 0.002
    assert args.web_url == "http://example.com"
    assert args.lines and args.real_time and not args.mem


def test_config_without_section_and_with_dashes(tmp_path):
    path = write(tmp_path, "--output = kept.prof\nno-native = 1\nweb_auth = t0k\n")
    args = parse("--config", path, "prog.py")
    assert args.output == "kept.prof" and args.no_native and args.web_auth == "t0k"


def test_command_line_wins_over_config(tmp_path):
    path = write(tmp_path, "[vmprof]\nperiod = 0.002\noutput = from-config.prof\n"
                           "web-url = config.example\n")
    args = parse("-p", "0.0001", "--config", path, "-o", "cli.prof", "prog.py")
    assert args.period == 0.0001
    assert args.output == "cli.prof"
    assert args.web_url == "http://config.example"   # not given on the command line


@pytest.mark.parametrize("text, words", [
    ("[global]\nfrobnicate = 1\n", "unknown option 'frobnicate'"),
    ("[global]\nperiod = 5\n", "less than 1 second"),
    ("[global]\nlines = maybe\n", "write true or false"),
    ("[server]\nperiod = 0.01\n", "section [server]"),
    ("[global]\nconfig = other.ini\n", "unknown option 'config'"),
    ("this is not ini\n", "not valid ini"),
])
def test_bad_config(capsys, tmp_path, text, words):
    line = parse_error(capsys, "--config", write(tmp_path, text), "prog.py")
    assert words in line
    assert str(tmp_path) in line


@pytest.mark.parametrize("text, words", [
    ("period = 0.002\nlines\n", "line 2: 'lines' is neither `name = value` nor a [section]"),
    ("[global]\nperiod = 0.002\n\nnot ini\n", "line 4: 'not ini' is neither"),
    ("period = 0.002\nperiod = 0.003\n", "[line 2]: option 'period' in section 'global' "
                                         "already exists"),
])
def test_a_config_that_is_not_ini_names_its_own_line(capsys, tmp_path, text, words):
    """Without a section header, configparser counted the [global] header put
    before the text too: every line number was one too many (and before
    Python 3.13 the line was shown as a repr with its \\n)."""
    line = parse_error(capsys, "--config", write(tmp_path, text), "prog.py")
    assert words in line, line


def test_missing_config(capsys, tmp_path):
    line = parse_error(capsys, "--config", str(tmp_path / "none.ini"), "prog.py")
    assert "cannot read the config file" in line


def test_every_option_of_the_table_is_in_the_parser_and_the_config(tmp_path):
    # One table: each entry reaches argparse, and the config file when allowed.
    parser = cli.build_argparser()
    dests = {action.dest for action in parser._actions}
    for option in cli.OPTIONS:
        assert option.dest in dests
        if option.in_config and option.kind == "flag" and option.dest != "jitlog":
            args = parse("--config", write(tmp_path, "%s = true\n" % option.flags[-1][2:]),
                         "prog.py")
            assert getattr(args, option.dest) is True


def test_command_line_errors_are_one_line_and_nonzero(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vmprof", "--period", "7", "x.py"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("usage:")
    assert "less than 1 second" in lines[-1]


@pytest.mark.cpython_only  # --jitlog works on PyPy
def test_jitlog_on_cpython_does_not_run_the_program(tmp_path):
    marker = tmp_path / "ran"
    script = tmp_path / "p.py"
    script.write_text("open(%r, 'w').close()\n" % str(marker))
    done = subprocess.run([sys.executable, "-m", "vmprof", "--jitlog", str(script)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "--jitlog needs PyPy" in done.stderr.strip().splitlines()[-1]
    assert not marker.exists()
