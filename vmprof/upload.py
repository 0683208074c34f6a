"""Uploads a profile to a vmprof server: `python -m vmprof.upload FILE`.

The exchange is the one existing vmprof clients speak (see the project's
docs/spec/upload-protocol.md), so this client works against the project's server and
servers that accept the original clients:

    POST <url>/api/runtime/new                    JSON {"argv", "VM"} -> runtime_id
    POST <url>/api/runtime/upload/cpu/<id>/add    the raw profile file
    POST <url>/api/runtime/upload/jit/<id>/add    PyPy only: the gzipped jit log
    POST <url>/api/runtime/<id>/freeze/           the upload is complete

and the profile's page is then <url>/#/<id>.  Any reply other than 200 is a
failure; UploadError says in one line what failed and why.  Nothing here deletes
the local file: the caller decides (and keeps it when the upload failed).

Only the standard library is used (http.client), and the profile is streamed
from disk, never read into memory whole.
"""
import argparse
import gzip
import http.client
import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
import urllib.parse
import warnings
from contextlib import nullcontext

from vmprof import cli
from vmprof.errors import VMProfError

DEFAULT_TIMEOUT = 30.0      # seconds without progress before giving up
MAX_REPLY = 1 << 20         # a reply is a small JSON object; never read more
# The profile is read and sent in pieces of this size (http.client's own is 8 KiB).
SEND_PIECE = 1 << 20
# At most this many bytes written and not yet sent wait in the kernel: a write
# waits for the rest to go.  Without it the kernel takes megabytes ahead of the
# receiver's window, and on one machine (a server on 127.0.0.1) the server's
# receiving thread is the one that sends them, each time it reads and opens its
# window: vmprof-server's CPU for a 340 MB upload 0.17-0.19 -> 0.12-0.14 s with
# it, ours +0.02-0.03 s (bench/RESULTS.md, 2026-11-30 23:00).
UNSENT_MAX = 128 * 1024


class UploadError(Exception):
    """An upload failed; str() is a one-line reason."""


class NotAProfile(UploadError):
    """The file was refused before anything was sent: vmprof's own reader
    cannot read it, and the server (which decodes it the same way) would
    refuse it too, after making a runtime for it.  Trying again will not
    help."""


class UploadResult(object):
    def __init__(self, runtime_id, profile_url, jit_id=None, traces_url=None):
        self.runtime_id = runtime_id
        self.profile_url = profile_url
        self.jit_id = jit_id
        self.traces_url = traces_url

    def __repr__(self):
        return "<UploadResult %s>" % self.profile_url


def interpreter_name():
    """The VM field of the protocol for the running interpreter."""
    return "PyPy" if cli.is_pypy() else "CPython"


def upload(profile_path, web_url=cli.DEFAULT_WEB_URL, auth=None, argv="", vm=None,
           jitlog_path=None, timeout=DEFAULT_TIMEOUT):
    """Uploads one profile (and a PyPy jit log) and returns an UploadResult.

    web_url may lack its scheme (http:// is assumed).  argv is the command line
    shown on the server.  profile_path None uploads the jit log alone (`python
    -m jitlog --upload`).  Raises UploadError.
    """
    try:
        base = cli.web_url(web_url)
    except ValueError as e:
        raise UploadError(str(e))
    server = _Server(base, auth, timeout)
    if profile_path is not None:
        _check_profile(profile_path)
    try:
        size = os.path.getsize(profile_path) if profile_path is not None else 0
        profile = open(profile_path, "rb") if profile_path is not None else nullcontext()
    except OSError as e:
        raise UploadError("cannot read the profile %s: %s"
                          % (profile_path, cli.error_reason(e)))
    with profile:
        reply = server.post("/api/runtime/new",
                            json.dumps({"argv": argv, "VM": vm or interpreter_name()}),
                            {"Content-Type": "application/json"})
        runtime_id = reply.get("runtime_id")
        if not isinstance(runtime_id, (str, int)) or str(runtime_id) == "":
            raise UploadError("the server at %s answered POST /api/runtime/new without a "
                              "runtime_id; is it a vmprof server?" % base)
        runtime_id = str(runtime_id)
        quoted = urllib.parse.quote(runtime_id, safe="")
        if profile_path is not None:
            server.post("/api/runtime/upload/cpu/%s/add" % quoted, profile,
                        {"Content-Disposition": _attachment(profile_path),
                         "Content-Length": str(size)})
    jit_id = None
    if jitlog_path is not None:
        jit_id = _upload_jitlog(server, quoted, jitlog_path)
    server.post("/api/runtime/%s/freeze/" % quoted, b"", {"Content-Length": "0"})
    result = UploadResult(runtime_id, "%s/#/%s" % (base, runtime_id))
    if jit_id is not None:
        result.jit_id = jit_id
        result.traces_url = "%s/#/%s/traces" % (base, jit_id)
    return result


def _check_profile(path):
    """Raises NotAProfile when vmprof's reader cannot read the file (a file
    cut short by a dying program is read up to its last record, here as on
    the server).  Where the reader is not built the server checks."""
    from vmprof import reader
    if reader._core is None or not os.path.isfile(path):
        return  # (a missing file: "cannot read the profile" below)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader.read_profile(path)
    except VMProfError as e:
        raise NotAProfile("%s is not a profile vmprof can read (%s); nothing was sent to the "
                          "server" % (path, e))


def _upload_jitlog(server, quoted_id, jitlog_path):
    try:
        source = open(jitlog_path, "rb")
    except OSError as e:
        raise UploadError("cannot read the jit log %s: %s"
                          % (jitlog_path, cli.error_reason(e)))
    with source, tempfile.TemporaryFile() as packed:
        with gzip.GzipFile(fileobj=packed, mode="wb") as gz:
            shutil.copyfileobj(source, gz)
            gz.write(_jitlog_source_code(jitlog_path))
        size = packed.tell()
        packed.seek(0)
        reply = server.post("/api/runtime/upload/jit/%s/add" % quoted_id, packed,
                            {"Content-Disposition": _attachment(jitlog_path + ".zip"),
                             "Content-Length": str(size)})
    return reply.get("jid")


def _jitlog_source_code(jitlog_path):
    """The SOURCE_CODE records the protocol has clients append (the lines of
    the traced functions), or b"" where the log cannot be read here (PyPy
    without vmprof's C extension, a damaged header): the upload goes on."""
    try:
        from jitlog.upload import source_code_records
        from vmprof._core import VMProfError
    except ImportError:
        return b""
    try:
        return source_code_records(jitlog_path)
    except (VMProfError, OSError):
        return b""


def _attachment(path):
    # A header is one latin-1 line: drop what would break it rather than fail.
    name = "".join(c if " " <= c <= "\xff" and c != '"' else "_" for c in path)
    return "attachment; filename=%s" % name


class _Server(object):
    def __init__(self, base, auth, timeout):
        self.base = base
        parts = urllib.parse.urlsplit(base)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        try:
            self.port = parts.port
        except ValueError:
            raise UploadError("the web URL %s has a bad port number" % base)
        if not self.host:
            raise UploadError("the web URL %s has no host name" % base)
        self.prefix = parts.path.rstrip("/")
        self.auth = auth
        self.timeout = timeout

    def post(self, path, body, headers):
        """POSTs and returns the reply's JSON object; raises UploadError."""
        headers = dict(headers)
        if self.auth:
            headers["AUTHORIZATION"] = "Token %s" % self.auth
        if isinstance(body, str):
            body = body.encode("utf-8")
        if isinstance(body, bytes):
            headers["Content-Length"] = str(len(body))
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = kind(self.host, self.port, timeout=self.timeout, blocksize=SEND_PIECE)
        what = "POST %s%s" % (self.base, path)
        try:
            conn.connect()
            limit_unsent(conn.sock)
            try:
                conn.request("POST", self.prefix + path, body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError) as e:
                # The server may answer before the body's end and close
                # (vmprof-server refuses a corrupt profile as soon as it
                # reads the damage): its answer, when there is one, says why.
                try:
                    response = conn.getresponse()
                except (OSError, http.client.HTTPException):
                    raise e
            else:
                response = conn.getresponse()
            data = response.read(MAX_REPLY)
        except socket.timeout:
            raise UploadError("%s: no answer within %g s; is the server at %s busy or "
                              "down?" % (what, self.timeout, self.base))
        except ConnectionRefusedError:
            raise UploadError("cannot connect to %s (connection refused); start the "
                              "server or give its address with --web-url" % self.base)
        except (OSError, http.client.HTTPException) as e:
            raise UploadError("%s failed: %s" % (what, _one_line(cli.error_reason(e)
                                                                or type(e).__name__)))
        finally:
            conn.close()
        if response.status != 200:
            detail = _server_error(data)
            raise UploadError("%s answered %d %s%s" % (what, response.status, response.reason,
                                                       ": " + detail if detail else ""))
        try:
            reply = json.loads(data.decode("utf-8"))
        except ValueError:
            raise UploadError("%s answered something that is not JSON (%r); is %s a vmprof "
                              "server?" % (what, data[:60], self.base))
        if not isinstance(reply, dict):
            raise UploadError("%s answered %r, not a JSON object" % (what, reply))
        return reply


def limit_unsent(sock):
    """UNSENT_MAX on sock (TCP_NOTSENT_LOWAT), where the system has it."""
    option = getattr(socket, "TCP_NOTSENT_LOWAT",
                     25 if sys.platform.startswith("linux") else None)
    if option is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, UNSENT_MAX)
    except OSError:
        pass  # (an older kernel: only slower)


def _server_error(data):
    """What a refusal says: vmprof-server's JSON {"error": "..."} gives its
    sentence whole (it says what to do, often at its end); other bodies are
    cut short."""
    text = data.decode("utf-8", "replace")
    try:
        reply = json.loads(text)
    except ValueError:
        reply = None
    if isinstance(reply, dict) and isinstance(reply.get("error"), str):
        return _one_line(reply["error"])[:1000]
    return _one_line(text)[:200]


def _one_line(text):
    return " ".join(str(text).split())


def command_line(program, args, module=False):
    """The command line sent as argv, as the user would type it."""
    words = (["-m"] if module else []) + [program] + list(args)
    return " ".join(shlex.quote(w) for w in words)


def _profile_facts(path):
    """(argv, VM) from the profile itself when it can be read, else a fallback."""
    try:
        import vmprof
        stats = vmprof.read_profile(path)
    except Exception:
        return os.path.basename(path), None
    argv = None
    try:
        argv = stats.getargv()
    except Exception:
        pass
    if isinstance(argv, (list, tuple)):
        argv = " ".join(shlex.quote(str(a)) for a in argv)
    if not isinstance(argv, str) or argv.strip() in ("", "-"):
        argv = None     # the profile does not say: name it by its file
    interp = str(getattr(stats, "interp", "") or "").lower()
    vm = "PyPy" if interp == "pypy" else "CPython" if interp == "cpython" else None
    return argv or os.path.basename(path), vm


def _timeout_seconds(text):
    """--timeout: seconds, more than 0 (0 would make the socket non-blocking,
    and every upload fail with "Operation now in progress")."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("give the seconds to wait for the server, more "
                                         "than 0 (e.g. 30), not %r" % text)
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m vmprof.upload",
        description="Upload a vmprof profile to a vmprof server and print its address.")
    parser.add_argument("profile", metavar="FILE", help="the profile file to upload")
    cli.add_options(parser, cli.WEB_OPTIONS)
    parser.add_argument("--jitlog", metavar="JITLOG", default=None,
                        help="also upload this PyPy jit log (default: FILE.jitlog "
                             "when it exists)")
    parser.add_argument("--timeout", type=_timeout_seconds, default=DEFAULT_TIMEOUT,
                        help="seconds to wait for the server (default: %g)"
                             % DEFAULT_TIMEOUT)
    args = parser.parse_args(argv)
    if not os.path.isfile(args.profile):
        parser.error("%s is not a file; give the path of a profile" % args.profile)
    jitlog = args.jitlog
    if jitlog is None and os.path.isfile(args.profile + ".jitlog"):
        jitlog = args.profile + ".jitlog"
    command, vm = _profile_facts(args.profile)
    sys.stderr.write("vmprof: uploading %s to %s\n" % (args.profile, args.web_url))
    try:
        result = upload(args.profile, args.web_url, args.web_auth, argv=command, vm=vm,
                        jitlog_path=jitlog, timeout=args.timeout)
    except NotAProfile as e:
        sys.stderr.write("vmprof: upload refused: %s; the file is kept: give the file "
                         "that vmprof wrote (python -m vmprof -o FILE, or vmprof.enable)\n" % e)
        return 1
    except UploadError as e:
        sys.stderr.write("vmprof: upload failed: %s\n" % e)
        return 1
    print(result.profile_url)
    if result.traces_url:
        print(result.traces_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
