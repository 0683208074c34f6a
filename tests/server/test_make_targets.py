"""What `make install`, `make serve` and `make demo` promise about the server
(README, issue 12), checked on the checkout the tests run in:

- `make install` puts vmprof-server on the PATH of each venv, the same build
  as build/server (scripts/install.sh);
- `make demo` (scripts/demo.sh) profiles the example, shows its tree, uploads
  it with --web to a server it starts and prints the run's address, and leaves
  no process behind;
- `make serve` runs a server in the foreground that stops on SIGTERM with
  exit 0.

They check the scripts and the Makefile, which use build/server: the round
against the ASan+UBSan build (VMPROF_SERVER, scripts/test-server.sh) skips
them.  Every server here listens on 127.0.0.1, port 0."""
import filecmp
import os
import re
import select
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import ROOT, Server

BUILT_SERVER = os.path.join(ROOT, "build", "server", "vmprof-server")
EXAMPLE = os.path.join(ROOT, "examples", "wordfreq.py")
# The functions of examples/wordfreq.py that each take more than the demo's
# --prune_percent 3 of its time.
EXAMPLE_FUNCTIONS = ["main", "make_text", "tokenize", "count_words", "syllable_splits"]

pytestmark = pytest.mark.skipif(
    os.path.realpath(os.environ.get("VMPROF_SERVER", BUILT_SERVER))
    != os.path.realpath(BUILT_SERVER),
    reason="the make targets use build/server; this round tests another build")


def installed_venvs():
    """The venvs scripts/install.sh installs into: one per interpreter of
    scripts/pythons and scripts/pypys that has a venv."""
    names = []
    for listing in ("pythons", "pypys"):
        with open(os.path.join(ROOT, "scripts", listing)) as f:
            names += f.read().split()
    venvs = [os.path.join(ROOT, ".venv", n) for n in names]
    return [v for v in venvs if os.access(os.path.join(v, "bin", "python"), os.X_OK)]


def test_make_install_puts_the_built_server_on_each_venvs_path(tmp_path):
    venvs = installed_venvs()
    assert venvs, "no venv under .venv: run make install"
    for venv in venvs:
        bindir = os.path.join(venv, "bin")
        found = shutil.which("vmprof-server", path=bindir)
        assert found, "%s has no vmprof-server: scripts/install.sh did not put it there" % bindir
        assert filecmp.cmp(found, BUILT_SERVER, shallow=False), \
            "%s is not the build in build/server (run make install)" % found
        # Called by name, as in a shell where the venv is active.
        env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
        data = tmp_path / os.path.basename(venv)
        out = subprocess.run(["vmprof-server", "--data", str(data), "user", "add", "alice"],
                             capture_output=True, text=True, timeout=60, env=env,
                             cwd=str(tmp_path))
        assert out.returncode == 0, (found, out.stderr)
        token = out.stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"\S{20,}", token), (found, out.stdout)
        assert os.listdir(str(data)), "user add stored nothing in %s" % data


def wait_for_group_to_end(pgid, seconds=10):
    """True once no process of that process group is left (bounded wait)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def processes():
    """(pid, parent pid, process group) of every process, from /proc."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it has just exited
        yield int(pid), int(fields[1]), int(fields[2])


def command_of(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "(exited)"


def test_make_demo_uploads_to_the_server_it_starts_and_prints_the_address(tmp_path):
    demo_dir, data = tmp_path / "demo", tmp_path / "data"
    env = dict(os.environ, VMPROF_DEMO_DIR=str(demo_dir), VMPROF_DEMO_DATA=str(data),
               VMPROF_DEMO_LISTEN="127.0.0.1:0", VMPROF_CACHE_DIR=str(tmp_path / "cache"))
    # Its own process group, so that whatever it starts can be found after.
    proc = subprocess.Popen([os.path.join(ROOT, "scripts", "demo.sh")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("demo.sh did not finish within 180 s")
    if not wait_for_group_to_end(proc.pid):
        left = ["%d %s" % (pid, command_of(pid))
                for pid, _, group in processes() if group == proc.pid]
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("demo.sh left processes running: %s" % left)
    assert proc.returncode == 0, out

    # The tree it showed names the example's functions.
    tree = out.split("$ vmprofshow wordfreq.prof tree", 1)[1].split("\n$ ", 1)[0]
    missing = [f for f in EXAMPLE_FUNCTIONS if not re.search(r"\b%s\b" % f, tree)]
    assert not missing, "the tree shown lacks %s:\n%s" % (missing, tree)
    assert (demo_dir / "wordfreq.prof").is_file() and (demo_dir / "wordfreq.html").is_file()

    # The address it printed is that of its own server, on the port the
    # kernel gave it (not 0), with the run's id.
    printed = re.findall(r"profile uploaded: (http://127\.0\.0\.1:(\d+)/#/(\S+))", out)
    assert len(printed) == 1, "demo.sh printed no address of an upload:\n" + out
    url, port, run_id = printed[0]
    served = (demo_dir / "server.out").read_text()
    assert "serving http://127.0.0.1:%s " % port in served and port != "0", (url, served)

    # Its server is gone with it; the run is in the data folder it named, and
    # a server on that folder answers with it.
    with pytest.raises(OSError):
        urllib.request.urlopen("http://127.0.0.1:%s/api/health" % port, timeout=5)
    assert str(data) in out
    server = Server(data)
    try:
        status, run, _ = server.get("/api/runs/%s" % run_id)
    finally:
        stopped, err = server.stop()
    assert stopped == 0, err
    assert status == 200, run
    assert run["samples"] > 0 and run["argv"] == EXAMPLE, run
    assert run["complete"], run


def server_under(pid):
    """The pid of the vmprof-server process below pid (make, maybe a shell)."""
    children = {}
    for p, ppid, _ in processes():
        children.setdefault(ppid, []).append(p)
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        try:
            if os.path.realpath("/proc/%d/exe" % p) == os.path.realpath(BUILT_SERVER):
                return p
        except OSError:
            pass
        todo += children.get(p, [])
    return None


def test_make_serve_listens_where_asked_and_stops_on_sigterm_with_exit_0(tmp_path):
    dry = subprocess.run(["make", "-s", "-n", "-o", "install", "serve"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert "--listen 127.0.0.1:8000" in dry.stdout, dry.stdout + dry.stderr

    data = tmp_path / "serve-data"
    # -o install: the venvs are installed already (the tests run in one).
    proc = subprocess.Popen(["make", "-s", "-o", "install", "serve",
                             "SERVE_LISTEN=127.0.0.1:0", "SERVE_DATA=%s" % data],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        line, deadline = "", time.monotonic() + 30
        while "serving http://" not in line and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    break
        assert "serving http://127.0.0.1:" in line, (line, proc.stderr.read()
                                                     if proc.poll() is not None else "")
        url = line.split()[2]
        assert not url.endswith(":0") and str(data) in line, line
        with urllib.request.urlopen(url + "/api/health", timeout=30) as reply:
            assert reply.status == 200
        pid = server_under(proc.pid)
        assert pid, "no vmprof-server process under make serve"
        # As a service manager would stop it: SIGTERM to the server only;
        # make exits 0 only when its recipe, the server, did.
        os.kill(pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
