"""`python -m vmprof`: the program runs as if started directly, and the profile
is complete and goes where the options say (file, summary, upload)."""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

import vmprof
from upload_server import UploadServer

pytestmark = pytest.mark.skipif(not hasattr(vmprof, "enable"),
                                reason="the sampler (vmprof.enable) is not built in")

# Burns CPU in a function whose name the profile must show.
BURN = '''
import time
def burn_cpu_for_vmprof(seconds):
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n
'''


def run_vmprof(*args, cwd=None, env_extra=None, timeout=120):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "vmprof"] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def write_script(path, body):
    path.write_text(BURN + textwrap.dedent(body))
    return path


def read(path):
    """Reads a profile, failing on the warning a truncated profile gives."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return vmprof.read_profile(str(path))


def names_in(stats):
    return [name for name in stats.adr_dict.values() if isinstance(name, str)]


def samples_in(stats, function):
    """Samples whose stack contains `function` (a py: name's function part)."""
    ids = {addr for addr, name in stats.adr_dict.items()
           if isinstance(name, str) and name.startswith("py:%s:" % function)}
    return sum(entry[1] for entry in stats.profiles if ids.intersection(entry[0]))


def test_script_runs_as_if_started_directly(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    script = write_script(sub / "prog.py", '''
        import json, pickle, sys
        class Point:  # pickling needs it to be found in __main__
            pass
        burn_cpu_for_vmprof(0.1)
        print(json.dumps({
            "argv": sys.argv, "name": __name__, "file": __file__,
            "path0": sys.path[0],
            "main_is_me": sys.modules["__main__"].__dict__ is globals(),
            "spec": repr(__spec__),
            "pickled": type(pickle.loads(pickle.dumps(Point()))).__name__,
        }))
    ''')
    out = tmp_path / "out.prof"
    done = run_vmprof("-o", out, "sub/prog.py", "a", "--mem", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["argv"] == ["sub/prog.py", "a", "--mem"]
    assert seen["name"] == "__main__" and seen["main_is_me"]
    assert seen["path0"] == str(sub)
    assert os.path.abspath(os.path.join(tmp_path, seen["file"])) == str(script)
    assert seen["spec"] == "None"
    assert seen["pickled"] == "Point"
    stats = read(out)
    assert samples_in(stats, "burn_cpu_for_vmprof") > 0
    assert not stats.profile_memory      # "--mem" was the program's argument
    assert "profile written to %s" % out in done.stderr


def test_module_runs_as_with_python_m(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    module = write_script(pkg / "tool.py", '''
        import json, sys
        burn_cpu_for_vmprof(0.1)
        print(json.dumps({"argv": sys.argv, "name": __name__,
                          "spec": __spec__.name, "path0": sys.path[0]}))
    ''')
    out = tmp_path / "m.prof"
    done = run_vmprof("-o", out, "-m", "pkg.tool", "-x", "y", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"argv": [str(module), "-x", "y"], "name": "__main__",
                    "spec": "pkg.tool", "path0": str(tmp_path)}
    assert samples_in(read(out), "burn_cpu_for_vmprof") > 0


def test_missing_module(tmp_path):
    done = run_vmprof("-o", tmp_path / "x.prof", "-m", "no_such_module_here", cwd=tmp_path)
    assert done.returncode == 1
    assert "No module named no_such_module_here" in done.stderr


def assert_cannot_start(done, reason):
    """The program never started: python's one-line reason, its status, and
    neither a profile nor a summary of one (nor runpy's traceback)."""
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == ["vmprof: " + reason], done.stderr


@pytest.mark.parametrize("name, reason", [
    ("no_such_module_here", "No module named no_such_module_here"),
    ("pkg", "No module named pkg.__main__; 'pkg' is a package and cannot be "
            "directly executed"),
])
def test_a_module_that_cannot_be_run_leaves_no_profile_nor_summary(tmp_path, name, reason):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    done = run_vmprof("-o", tmp_path / "x.prof", "-m", name, cwd=tmp_path)
    assert_cannot_start(done, reason)
    assert not (tmp_path / "x.prof").exists()
    # Without -o the summary is not printed either (it said "0 samples ...
    # try a shorter --period", as if the program had run).
    assert_cannot_start(run_vmprof("-m", name, cwd=tmp_path), reason)


def test_a_directory_without_main_leaves_no_profile_nor_summary(tmp_path):
    (tmp_path / "app").mkdir()
    done = run_vmprof("-o", tmp_path / "x.prof", "app", cwd=tmp_path)
    assert_cannot_start(done, "can't find '__main__' module in 'app'")
    assert not (tmp_path / "x.prof").exists()
    assert_cannot_start(run_vmprof("app", cwd=tmp_path),
                        "can't find '__main__' module in 'app'")


@pytest.mark.parametrize("ending, status, stderr_words", [
    ("sys.exit(3)", 3, []),
    ("sys.exit('bye now')", 1, ["bye now"]),
    ("sys.exit()", 0, []),
    ("raise ValueError('boom')", 1, ["Traceback (most recent call last)",
                                     "in fail_here", "ValueError: boom"]),
])
def test_exit_status_and_exceptions_keep_the_profile_complete(tmp_path, ending, status,
                                                               stderr_words):
    write_script(tmp_path / "prog.py", '''
        import sys
        def fail_here():
            burn_cpu_for_vmprof(0.1)
            %s
        fail_here()
        print("not reached")
    ''' % ending)
    out = tmp_path / "out.prof"
    done = run_vmprof("-o", out, "prog.py", cwd=tmp_path)
    assert done.returncode == status, done.stderr
    assert "not reached" not in done.stdout
    for words in stderr_words:
        assert words in done.stderr
    # The traceback shows the program's frames, not vmprof's or runpy's.
    assert "__main__.py" not in done.stderr and "runpy" not in done.stderr
    assert samples_in(read(out), "burn_cpu_for_vmprof") > 0


def test_program_excepthook_is_used(tmp_path):
    write_script(tmp_path / "prog.py", '''
        import sys
        sys.excepthook = lambda t, v, tb: print("HOOK", t.__name__, v, file=sys.stderr)
        raise KeyError("k")
    ''')
    done = run_vmprof("-o", tmp_path / "o.prof", "prog.py", cwd=tmp_path)
    assert done.returncode == 1
    assert "HOOK KeyError 'k'" in done.stderr


def test_missing_script_and_syntax_error(tmp_path):
    done = run_vmprof("-o", tmp_path / "o.prof", "nope.py", cwd=tmp_path)
    assert done.returncode == 2
    assert "can't open file 'nope.py'" in done.stderr
    assert not (tmp_path / "o.prof").exists()
    (tmp_path / "bad.py").write_text("x = (1,\n")
    done = run_vmprof("-o", tmp_path / "o.prof", "bad.py", cwd=tmp_path)
    assert done.returncode == 1
    assert "SyntaxError" in done.stderr and "__main__.py" not in done.stderr


def test_threads_still_running_after_main_are_profiled(tmp_path):
    write_script(tmp_path / "prog.py", '''
        import threading
        def thread_tail_work():
            burn_cpu_for_vmprof(0.15)
        threading.Thread(target=thread_tail_work).start()
    ''')
    out = tmp_path / "out.prof"
    done = run_vmprof("-o", out, "prog.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert samples_in(read(out), "thread_tail_work") > 0


def test_summary_without_output(tmp_path):
    write_script(tmp_path / "prog.py", '''
        def hot_function_for_summary():
            burn_cpu_for_vmprof(0.15)
        hot_function_for_summary()
        print("program output")
    ''')
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    done = run_vmprof("prog.py", cwd=tmp_path, env_extra={"TMPDIR": str(tmp)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "program output\n"          # the summary is on stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("vmprof: ") and "samples" in lines[0]
    hot = [line for line in lines if "burn_cpu_for_vmprof" in line]
    assert hot and "%" in hot[0] and "prog.py" in hot[0]
    caller = [line for line in lines if "hot_function_for_summary" in line]
    assert caller
    # The caller's total share is large: it was on the stack the whole time.
    total = float(caller[0].split()[1].rstrip("%"))
    assert total > 50
    assert os.listdir(tmp) == []                      # the temporary profile is gone


def test_config_file_and_command_line_wins(tmp_path):
    write_script(tmp_path / "prog.py", "burn_cpu_for_vmprof(0.1)\n")
    (tmp_path / "vmprof.ini").write_text("[global]\noutput = from_config.prof\n"
                                         "mem = true\n")
    done = run_vmprof("--config", "vmprof.ini", "-o", "from_cli.prof", "prog.py",
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "from_config.prof").exists()
    assert read(tmp_path / "from_cli.prof").profile_memory      # from the config
    done = run_vmprof("--config", "vmprof.ini", "prog.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "from_config.prof").exists()


@pytest.mark.parametrize("flag, attribute", [
    # PyPy's sampler records no lines
    pytest.param("--lines", "profile_lines", marks=pytest.mark.cpython_only),
    ("--mem", "profile_memory")])
def test_mode_flags_reach_the_file(tmp_path, flag, attribute):
    write_script(tmp_path / "prog.py", "burn_cpu_for_vmprof(0.1)\n")
    without, with_flag = tmp_path / "plain.prof", tmp_path / "flag.prof"
    assert run_vmprof("-o", without, "prog.py", cwd=tmp_path).returncode == 0
    done = run_vmprof("-o", with_flag, flag, "prog.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not getattr(read(without), attribute)
    assert getattr(read(with_flag), attribute)


def test_real_time_flag_samples_a_sleeping_program(tmp_path):
    write_script(tmp_path / "prog.py", '''
        import time
        def sleeping_here():
            time.sleep(0.4)
        sleeping_here()
    ''')
    cpu, wall = tmp_path / "cpu.prof", tmp_path / "wall.prof"
    assert run_vmprof("-o", cpu, "-p", "0.002", "prog.py", cwd=tmp_path).returncode == 0
    done = run_vmprof("-o", wall, "-p", "0.002", "--real-time", "prog.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # 0.4 s of sleep at 500 Hz is ~200 wall-clock samples and ~0 CPU samples.
    # On the wall clock the sleep is most of the program's life (the rest is
    # start-up and exit, which stretch on a busy machine): a share, not a
    # count, so that a late sampler thread does not fail it; the strict rate
    # is the bench's.
    wall_stats = read(wall)
    on_wall = samples_in(wall_stats, "sleeping_here")
    total = sum(entry[1] for entry in wall_stats.profiles)
    on_cpu = samples_in(read(cpu), "sleeping_here")
    assert on_wall > 20 and on_wall > 0.4 * total and on_cpu < 20, (on_wall, total, on_cpu)


def test_web_upload(tmp_path):
    write_script(tmp_path / "prog.py", "burn_cpu_for_vmprof(0.1)\n")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with UploadServer() as server:
        done = run_vmprof("--web", "--web-url", server.url, "--web-auth", "tok",
                          "prog.py", "arg one", cwd=tmp_path, env_extra={"TMPDIR": str(tmp)})
    assert done.returncode == 0, done.stderr
    assert "profile uploaded: %s/#/rt42" % server.url in done.stderr
    new, cpu, freeze = server.requests
    assert json.loads(new.body)["argv"] == "prog.py 'arg one'"
    assert new.headers["AUTHORIZATION"] == "Token tok"
    uploaded = tmp_path / "uploaded.prof"
    uploaded.write_bytes(cpu.body)
    assert samples_in(read(uploaded), "burn_cpu_for_vmprof") > 0
    assert os.listdir(tmp) == []                      # uploaded: no file left behind


def test_web_upload_failure_keeps_the_profile(tmp_path):
    write_script(tmp_path / "prog.py", "burn_cpu_for_vmprof(0.1)\nraise SystemExit(4)\n")
    with UploadServer() as server:
        server.fail["cpu"] = 500
        done = run_vmprof("--web", "--web-url", server.url, "prog.py", cwd=tmp_path)
    assert done.returncode == 4                       # the program's own status
    last = done.stderr.strip().splitlines()[-1]
    assert "upload failed" in last and "500" in last
    kept = last.split("the profile is kept in ")[1].split(" ")[0]
    assert samples_in(read(kept), "burn_cpu_for_vmprof") > 0
    os.unlink(kept)


def test_web_upload_failure_sets_the_status_of_a_successful_program(tmp_path):
    write_script(tmp_path / "prog.py", "pass\n")
    with UploadServer() as server:
        server.fail["new"] = 403
        done = run_vmprof("--web", "--web-url", server.url, "-o", tmp_path / "k.prof",
                          "prog.py", cwd=tmp_path)
    assert done.returncode == 1
    assert "403" in done.stderr and "kept in %s" % (tmp_path / "k.prof") in done.stderr
    assert (tmp_path / "k.prof").exists()


def test_web_upload_of_a_profile_that_does_not_read_is_refused_and_kept(tmp_path):
    # The program overwrites the head of its own profile: the file cannot be
    # read, and the upload is refused before anything is sent (before, the
    # server made a runtime and refused the body), with no "upload it later".
    write_script(tmp_path / "prog.py", """
        import sys
        with open(sys.argv[1], "r+b") as f:
            f.write(b"garbage!")
    """)
    out = tmp_path / "k.prof"
    with UploadServer() as server:
        done = run_vmprof("--web", "--web-url", server.url, "-o", out, "prog.py", out, cwd=tmp_path)
        assert server.requests == []
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "upload refused" in last and "at byte 0" in last and "kept in %s" % out in last, last
    assert "later" not in last and out.exists()


def test_ctrl_c_ends_the_program_as_python_does(tmp_path):
    write_script(tmp_path / "prog.py", '''
        burn_cpu_for_vmprof(0.1)
        raise KeyboardInterrupt
    ''')
    out = tmp_path / "out.prof"
    done = run_vmprof("-o", out, "prog.py", cwd=tmp_path)
    assert done.returncode == -2                      # killed by SIGINT, like python
    assert "KeyboardInterrupt" in done.stderr
    assert samples_in(read(out), "burn_cpu_for_vmprof") > 0


def test_sigterm_ends_the_program_by_the_signal_with_its_profile_complete(tmp_path):
    # A server stopped with `kill`: without vmprof it dies of SIGTERM with no
    # cleanup.  It still does, but its profile is finished first (else the
    # names of every function still alive would be missing).
    write_script(tmp_path / "prog.py", '''
        import os, signal
        def serving_until_killed():
            burn_cpu_for_vmprof(0.1)
            os.kill(os.getpid(), signal.SIGTERM)
            burn_cpu_for_vmprof(5)          # never reached: SIGTERM ends it
        try:
            serving_until_killed()
        finally:
            print("the program's finally ran")
    ''')
    out = tmp_path / "out.prof"
    done = run_vmprof("-o", out, "prog.py", cwd=tmp_path)
    assert done.returncode == -15, done.stderr        # killed by SIGTERM, like python
    assert "finally ran" not in done.stdout           # no unwinding: as without vmprof
    assert "profile written" in done.stderr
    stats = read(out)                                 # complete: no truncation warning
    assert samples_in(stats, "serving_until_killed") > 0
    assert any(":serving_until_killed:" in n for n in names_in(stats))


def test_sigterm_without_output_prints_the_summary_and_leaves_no_file(tmp_path):
    write_script(tmp_path / "prog.py", '''
        import os, signal
        burn_cpu_for_vmprof(0.1)
        os.kill(os.getpid(), signal.SIGTERM)
        burn_cpu_for_vmprof(5)
    ''')
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    done = run_vmprof("prog.py", cwd=tmp_path, env_extra={"TMPDIR": str(tmp)})
    assert done.returncode == -15, done.stderr
    assert "burn_cpu_for_vmprof" in done.stderr       # the summary
    assert os.listdir(tmp) == []


def test_the_programs_own_sigterm_handler_is_left_to_it(tmp_path):
    write_script(tmp_path / "prog.py", '''
        import os, signal, sys
        def handler(signum, frame):
            print("own handler")
            sys.exit(3)
        signal.signal(signal.SIGTERM, handler)
        burn_cpu_for_vmprof(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        burn_cpu_for_vmprof(5)
    ''')
    out = tmp_path / "out.prof"
    done = run_vmprof("-o", out, "prog.py", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "own handler\n"
    assert samples_in(read(out), "burn_cpu_for_vmprof") > 0


def test_a_forked_child_leaves_the_parents_profile_alone(tmp_path):
    write_script(tmp_path / "prog.py", '''
        import os
        pid = os.fork()
        if pid == 0:
            burn_cpu_for_vmprof(0.1)      # the child returns through vmprof's runner
        else:
            os.waitpid(pid, 0)
            burn_cpu_for_vmprof(0.1)
            print("parent done")
    ''')
    out = tmp_path / "out.prof"
    done = run_vmprof("-o", out, "prog.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "parent done\n"
    assert done.stderr.count("profile written") == 1  # only the parent reports
    assert samples_in(read(out), "burn_cpu_for_vmprof") > 0


def test_a_forked_child_still_dies_of_sigterm_at_once(tmp_path):
    # vmprof's own SIGTERM handler (it finishes the profile first) must stay
    # in the process that started the profile.  A forked child that
    # inherited it died of SIGTERM only once Python code ran again: a child
    # waiting in C that retries after a signal (a multiprocessing.Pool(fork)
    # worker that got its SIGTERM from pool.terminate() just before it
    # blocked in a semaphore, 1 run in ~8) never died, and the parent's
    # join() hung for ever.  Here the child waits for a mutex it holds
    # itself: only the signal's default action can end it.
    write_script(tmp_path / "prog.py", """
        import ctypes, os, signal, sys, time
        libc = ctypes.CDLL(None)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            default = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
            os.write(w, b"D" if default else b"H")
            mutex = ctypes.create_string_buffer(64)   # PTHREAD_MUTEX_INITIALIZER: zeros
            libc.pthread_mutex_lock(mutex)
            libc.pthread_mutex_lock(mutex)            # waits for ever, in C
            os._exit(0)
        os.close(w)
        print("child's SIGTERM:", "default" if os.read(r, 1) == b"D" else "a handler")
        # (sent once the child waits in the kernel, not before its second lock)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open("/proc/%d/wchan" % pid) as f:
                if "futex" in f.read():
                    break
            time.sleep(0.01)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            print("child ignored SIGTERM")
            sys.exit(1)
        print("child killed by", os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)
        burn_cpu_for_vmprof(0.05)
    """)
    out = tmp_path / "out.prof"
    done = run_vmprof("-o", out, "prog.py", cwd=tmp_path)
    assert done.stdout == "child's SIGTERM: default\nchild killed by 15\n", done.stderr
    assert done.returncode == 0, done.stderr
    assert samples_in(read(out), "burn_cpu_for_vmprof") > 0


@pytest.mark.cpython_only  # (PyPy's own sampler keeps SIGPROF whatever the program does)
def test_a_program_that_takes_the_profilers_signal_is_told_why_its_profile_stops(tmp_path):
    # The program sets up its own SIGURG handler after `python -m vmprof`
    # started it with SIGURG as the profiling signal: sampling stops there
    # (its handler is its own), and the profile's few samples are explained.
    write_script(tmp_path / "prog.py", """
        import signal
        burn_cpu_for_vmprof(0.1)
        signal.signal(signal.SIGURG, lambda s, f: None)
        burn_cpu_for_vmprof(0.1)
    """)
    done = run_vmprof("-o", tmp_path / "out.prof", "prog.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "installed its own handler for SIGURG, the profiler's signal" in done.stderr, done.stderr
    assert read(tmp_path / "out.prof").meta.get("signal_taken_over_ms")


def test_no_native_records_python_frames_only(tmp_path):
    write_script(tmp_path / "prog.py", "burn_cpu_for_vmprof(0.1)\n")
    out = tmp_path / "out.prof"
    done = run_vmprof("-n", "-o", out, "prog.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    stats = read(out)
    assert not stats.profile_native
    assert all(name.startswith("py:") for name in names_in(stats))
    assert samples_in(stats, "burn_cpu_for_vmprof") > 0


def test_a_directory_and_a_package_with_main(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    write_script(app / "__main__.py", '''
        import json, sys
        burn_cpu_for_vmprof(0.1)
        print(json.dumps({"argv": sys.argv, "name": __name__}))
        sys.exit(5)
    ''')
    out = tmp_path / "dir.prof"
    done = run_vmprof("-o", out, "app", "y", cwd=tmp_path)
    assert done.returncode == 5, done.stderr
    assert json.loads(done.stdout) == {"argv": ["app", "y"], "name": "__main__"}
    assert samples_in(read(out), "burn_cpu_for_vmprof") > 0
    (app / "__init__.py").write_text("")
    done = run_vmprof("-o", out, "-m", "app", "z", cwd=tmp_path)
    assert done.returncode == 5, done.stderr
    assert json.loads(done.stdout) == {"argv": [str(app / "__main__.py"), "z"],
                                       "name": "__main__"}
    assert samples_in(read(out), "burn_cpu_for_vmprof") > 0
