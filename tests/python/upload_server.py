"""A small vmprof upload server for the tests: 127.0.0.1 only, in a thread.

It speaks the exchange of docs/spec/upload-protocol.md, records every request
(method, path, headers, body) and can be told to fail one step with a status,
to answer something that is not JSON, or not to answer at all (to test
timeouts).  Every socket has a timeout, so a test can never hang on it.
"""
import http.server
import json
import re
import threading
import time


class Recorded(object):
    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body


class UploadServer(object):
    MAX_BODY = 64 << 20

    def __init__(self):
        self.requests = []
        self.fail = {}          # step ("new", "cpu", "jit", "freeze") -> status
        self.error_text = None  # the "error" of a failed step's JSON, as vmprof-server's
        self.garbage = set()    # steps that answer text that is not JSON
        self.stall = set()      # steps that never answer
        self.frozen = set()
        self.runtime_id = "rt42"
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, server.MAX_BODY))
                server.requests.append(Recorded("POST", self.path, dict(self.headers), body))
                step, reply = server._route(self.path)
                if step in server.stall:
                    time.sleep(3)
                    return
                status = server.fail.get(step, 200 if step else 404)
                if step in server.garbage:
                    payload = b"<html>not a vmprof server</html>"
                else:
                    failed = {"status": "error", "step": step}
                    if server.error_text is not None:
                        failed["error"] = server.error_text
                    payload = json.dumps(reply if status == 200 else failed).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def _route(self, path):
        rid = re.escape(self.runtime_id)
        if path == "/api/runtime/new":
            return "new", {"status": "ok", "runtime_id": self.runtime_id}
        if re.fullmatch("/api/runtime/upload/cpu/%s/add" % rid, path):
            return "cpu", {"status": "ok"}
        if re.fullmatch("/api/runtime/upload/jit/%s/add" % rid, path):
            return "jit", {"status": "ok", "jid": "jit7"}
        if re.fullmatch("/api/runtime/%s/freeze/" % rid, path):
            self.frozen.add(self.runtime_id)
            return "freeze", {"status": "ok"}
        return None, {"status": "error"}

    def paths(self):
        return [r.path for r in self.requests]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
        return False
