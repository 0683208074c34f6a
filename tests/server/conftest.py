"""Real vmprof-server processes for the tests: each on 127.0.0.1 with a port
the kernel picks, in a data folder of its own, stopped with SIGTERM (and
expected to exit 0) at the end of the test."""
import gzip
import http.client
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER_BIN = os.environ.get("VMPROF_SERVER", os.path.join(ROOT, "build", "server",
                                                          "vmprof-server"))
ORIG_PYTHON = os.path.join(ROOT, ".venv", "orig", "bin", "python")
START_TIMEOUT = 30


class Server(object):
    def __init__(self, data, *options, env=None):
        self.data = str(data)
        self.options = list(options)
        self.env = env
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [SERVER_BIN, "--data", self.data, "--listen", "127.0.0.1:0"] + self.options,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if "serving http://" not in line:
            self.proc.kill()
            raise AssertionError("the server did not start: %r %s"
                                 % (line, self.proc.stderr.read()))
        self.url = line.split()[2]
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Stops the server; returns its exit status and stderr."""
        if self.proc is None:
            return None, ""
        self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError("the server did not stop within %d s" % timeout)
        status = self.proc.returncode
        self.proc = None
        return status, err

    def request(self, method, path, body=None, headers=None, token=None, timeout=60):
        """(status, parsed JSON or raw bytes, response headers)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = "Token " + token
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        try:
            try:
                conn.request(method, path, body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                # The server answered before the body's end (a corrupt
                # upload) and closed: its answer is there to read, as
                # urllib3 reads it.
                pass
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.getheader("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        if resp.getheader("Content-Type", "").startswith("application/json"):
            data = json.loads(data.decode("utf-8"))
        return resp.status, data, resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def upload(self, profile_bytes, argv="prog.py", vm="CPython", token=None, freeze=True):
        """The protocol step by step; returns the runtime id."""
        status, reply, _ = self.request("POST", "/api/runtime/new",
                                        {"argv": argv, "VM": vm}, token=token)
        assert status == 200, reply
        rid = reply["runtime_id"]
        status, reply, _ = self.request(
            "POST", "/api/runtime/upload/cpu/%s/add" % rid, profile_bytes,
            {"Content-Disposition": "attachment; filename=/tmp/x.prof"}, token=token)
        assert status == 200, reply
        if freeze:
            status, reply, _ = self.request("POST", "/api/runtime/%s/freeze/" % rid, b"",
                                            token=token)
            assert status == 200, reply
        return rid

    def search_all(self, q):
        """The ids of every page of GET /api/runs?q=, followed by its "next";
        every page but the last full."""
        got, page = [], "1"
        while page:
            reply = self.get("/api/runs?q=%s&page=%s" % (urllib.parse.quote(q), page))[1]
            assert len(reply["runs"]) == 50 or not reply["next"]
            got += [r["id"] for r in reply["runs"]]
            page = reply["next"]
        return got

    def add_user(self, name, admin=False):
        args = [SERVER_BIN, "--data", self.data]
        if "--database" in self.options:
            args += ["--database", self.options[self.options.index("--database") + 1]]
        args += ["user", "add", name] + (["--admin"] if admin else [])
        out = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().splitlines()[-1]


def attach_strace(server, calls, log, timestamps=False):
    """strace -f on the server, tracing calls (and sendmsg) into log, once it
    is attached to every thread (an answer's sendmsg shows in the log); the
    tracer process (stop it with SIGINT).  Skips the test without strace."""
    import shutil
    if not shutil.which("strace"):
        pytest.skip("strace is not installed (scripts/setup.sh installs it)")
    tracer = subprocess.Popen(["strace", "-f"] + (["-ttt"] if timestamps else [])
                              + ["-e", "trace=%s,sendmsg" % calls, "-o", log,
                                 "-p", str(server.proc.pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        if tracer.poll() is not None:
            pytest.skip("strace cannot attach here: %s" % tracer.stderr.read().strip())
        server.get("/api/health")
        time.sleep(0.05)
        if os.path.exists(log) and "sendmsg(" in open(log).read():
            return tracer
    raise AssertionError("strace attached, but shows no answer sent")


def compressor_thread(pid):
    """(state, CPU ticks) of the server's compressor thread, the one at nice 19
    (srv_blob.c), or None when the process has none."""
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # (fields[0] is the state, the stat file's 3rd field: utime 14, stime 15, nice 19)
        if int(fields[16]) == 19:
            return fields[0], int(fields[11]) + int(fields[12])
    return None


def folder_state(data):
    """What the compressor changes: runs/ and tmp/, names and sizes."""
    state = []
    for sub in ("runs", "tmp"):
        folder = os.path.join(data, sub)
        for name in sorted(os.listdir(folder)):
            try:
                state.append((sub, name, os.stat(os.path.join(folder, name)).st_size))
            except OSError:
                pass
    return state


def wait_for_compressor(server, done, what, idle_s=30, most_s=240):
    """Waits until done() holds, for what the background compressor does.  It
    runs at nice 19: under load it took 93-136 s for ~300 files (session 20),
    so no fixed time is enough.  The wait goes on while the compressor works
    or waits for a CPU (its thread runnable, its CPU time growing, or runs/
    and tmp/ changing), and fails once it has been idle (asleep, nothing
    changing) for idle_s with done() still false, or after most_s in all
    (under the tests' 300 s limit)."""
    start = time.monotonic()
    last, idle_since = None, None
    while not done():
        now = time.monotonic()
        assert server.proc is not None and server.proc.poll() is None, "the server has exited"
        assert now - start < most_s, "%s: not done after %d s" % (what, most_s)
        thread = compressor_thread(server.proc.pid)
        seen = (thread, folder_state(server.data))
        busy = thread is not None and thread[0] in "RD"
        if busy or seen != last:
            idle_since = None
        elif idle_since is None:
            idle_since = now
        assert idle_since is None or now - idle_since < idle_s, \
            "%s: the compressor is idle and it is not done: %r" % (what, seen)
        last = seen
        time.sleep(0.1)


def wait_for_files(server, names):
    """Waits until runs/ holds exactly these names (the compressor's work done)."""
    runs = os.path.join(server.data, "runs")
    wait_for_compressor(server, lambda: sorted(os.listdir(runs)) == sorted(names),
                        "runs/ to hold %s" % sorted(names))


@pytest.fixture
def start_server(tmp_path):
    servers = []

    def start(*options, data=None, env=None):
        s = Server(data or tmp_path / "data", *options, env=env)
        servers.append(s)
        return s
    yield start
    for s in servers:
        if s.proc is not None:
            status, err = s.stop()
            assert status == 0, err


@pytest.fixture
def server(start_server):
    return start_server()


WORKLOAD = '''
import sys
def burn_for_server_test(n):
    total = 0
    for i in range(n):
        total += i * i
    return total
burn_for_server_test(int(sys.argv[1]) if len(sys.argv) > 1 else 3000000)
'''


@pytest.fixture(scope="session")
def workload(tmp_path_factory):
    path = tmp_path_factory.mktemp("workload") / "burn_workload.py"
    path.write_text(WORKLOAD)
    return path


@pytest.fixture(scope="session")
def profile_bytes(tmp_path_factory, workload):
    """A real profile, made by our sampler."""
    out = tmp_path_factory.mktemp("profile") / "burn.prof"
    # Run away from the checkout, whose vmprof/ folder would shadow the
    # installed package.
    subprocess.run([sys.executable, "-m", "vmprof", "-o", str(out), str(workload)],
                   check=True, capture_output=True, timeout=120, cwd=str(out.parent))
    return out.read_bytes()


def synthetic_profile(samples):
    """A valid profile of that many samples over a few made-up stacks (8-byte
    words, no modes), written here: bigger than our sampler makes in a test
    (about 40 bytes a sample), so that an upload of it is many pieces."""
    w = lambda *vs: struct.pack("<%dq" % len(vs), *vs)
    stacks = [(0x100, 0x110, 0x120), (0x100, 0x130), (0x100, 0x110, 0x140, 0x150)]
    records = [bytes([1]) + w(1, len(s), *reversed(s)) + w(7) for s in stacks]
    out = [w(0, 3, 0, 990, 0) + bytes([5, 0, 6, 0, 7]) + b"cpython"]
    out.append(b"".join(records) * (samples // len(records)))
    for addr in sorted({a for s in stacks for a in s}):
        name = ("py:f%x:1:m.py" % addr).encode()
        out.append(bytes([2]) + w(addr, len(name)) + name)
    return b"".join(out)


@pytest.fixture(scope="session")
def big_profile_bytes():
    """About 14 MiB: its upload comes in many pieces and its file is handed
    to the disk while it arrives (srv_blob.c, every 8 MiB)."""
    return synthetic_profile(300000)


@pytest.fixture(scope="session")
def make_profile(tmp_path_factory, workload):
    """make_profile(*vmprof_options) -> bytes of a real profile of the workload."""
    made = {}

    def make(*options):
        if options not in made:
            out = tmp_path_factory.mktemp("profile") / "burn.prof"
            subprocess.run([sys.executable, "-m", "vmprof", "-o", str(out)] + list(options)
                           + [str(workload)], check=True, capture_output=True, timeout=120,
                           cwd=str(out.parent))
            made[options] = out.read_bytes()
        return made[options]
    return make
