# SPDX-License-Identifier: ISC
"""Shared integration-test harness: free loopback ports, daemons started and
always stopped, and a plain HTTP call that never follows redirects.

Every integration test imports this one module instead of re-writing the same
process juggling. Paths come from the environment meson sets (SHED_BUILD_DIR,
SHED_SOURCE_DIR), never from the current directory.
"""
import atexit
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

BUILD_DIR = os.environ.get("SHED_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SOURCE_DIR = os.environ.get("SHED_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))

_procs = []
_tmpdirs = []
_failed = False


def binary(name):
    """Path of a built executable: burrowd, shed, shedc."""
    sub = {"burrowd": "burrow", "shed": "shed", "shedc": "client"}.get(name, "")
    path = os.path.join(BUILD_DIR, sub, name)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return path


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tmpdir(prefix="shedtest-"):
    """A fresh directory, removed when the test process ends well: kept
    after a failure (an uncaught exception or run_tests() counting one) or
    with SHED_KEEP_TMP=1 in the environment, for the logs inside."""
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


_excepthook = sys.excepthook


def _note_failure(*args):
    global _failed
    _failed = True
    _excepthook(*args)


sys.excepthook = _note_failure


class Proc:
    """A child process that is stopped at exit even when the test fails."""

    def __init__(self, argv, env=None, log=None, name=None):
        self.argv = [str(a) for a in argv]
        self.name = name or os.path.basename(self.argv[0])
        self.logpath = log or os.path.join(tmpdir(), self.name + ".log")
        self._log = open(self.logpath, "wb")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.p = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                  env=full_env, start_new_session=True)
        _procs.append(self)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, sig=None, timeout=10.0):
        """Stop and return the exit code; SIGKILL after <timeout> seconds.
        <sig> defaults to SIGTERM (the method signal() above hides the module
        in the class body, so the default cannot name signal.SIGTERM)."""
        if sig is None:
            sig = signal.SIGTERM
        if self.alive():
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._log.close()
        return self.p.returncode

    def kill(self):
        return self.stop(signal.SIGKILL)

    def cpu_seconds(self):
        """CPU time the process's threads have run so far (schedstat: ns,
        where /proc/PID/stat counts in ticks of 10 ms)."""
        tot = 0
        base = "/proc/%d/task" % self.p.pid
        for tid in os.listdir(base):
            try:
                with open("%s/%s/schedstat" % (base, tid)) as f:
                    tot += int(f.read().split()[0])
            except OSError:
                pass  # a thread that just ended
        return tot / 1e9

    def output(self):
        self._log.flush()
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")


@atexit.register
def _cleanup():
    for pr in _procs:
        try:
            if pr.alive():
                pr.p.kill()
                pr.p.wait(5)
        except Exception:
            pass
    if _failed or os.environ.get("SHED_KEEP_TMP") == "1":
        if _tmpdirs:
            print("kept: %s" % " ".join(_tmpdirs), file=sys.stderr, flush=True)
        return
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


def wait_port(host, port, timeout=10.0, proc=None):
    """Wait until something accepts on host:port; fail loudly otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError("%s exited early:\n%s" % (proc.name, proc.output()))
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("nothing listens on %s:%d after %.1fs" % (host, port, timeout))


def wait_until(pred, timeout=10.0, step=0.05, what="condition"):
    """Poll <pred> until it returns a true value; return it or fail."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(step)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict of lower-case name -> last value
        self.body = body        # bytes

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        import json
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:200])


def request(method, url, body=None, headers=None, timeout=10.0, raw_path=None):
    """One HTTP/1.1 request on a new connection; redirects are NOT followed.
    <raw_path> sends that exact request target instead of url's path."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    target = raw_path if raw_path is not None else (u.path or "/") + ("?" + u.query if u.query else "")
    try:
        conn.putrequest(method, target, skip_host=bool(headers and "Host" in headers),
                        skip_accept_encoding=True)
        hdrs = dict(headers or {})
        if body is not None and "Content-Length" not in hdrs:
            hdrs["Content-Length"] = str(len(body))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def nginx(d, server, prefix=()):
    """Start nginx (one worker, foreground) with its files in directory <d>
    and one server block: <server> with %(port)d for a free port. <prefix>
    goes before the command (taskset, say). Returns (Proc, port)."""
    port = free_port()
    conf = os.path.join(d, "nginx.conf")
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    with open(conf, "w") as f:
        f.write("""worker_processes 1;
daemon off;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %(d)s/body; proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/fastcgi; uwsgi_temp_path %(d)s/uwsgi; scgi_temp_path %(d)s/scgi;
  keepalive_requests 1000000;
""" % {"d": d} + server % {"port": port} + "\n}\n")
    p = Proc(list(prefix) + ["nginx", "-c", conf, "-p", d], name="nginx")
    wait_port("127.0.0.1", port, proc=p)
    return p, port


def metric(base, name, labels=""):
    """The integer value of series <name>{<labels>} in <base>/metrics, 0 if
    the series is absent."""
    import re
    text = request("GET", base + "/metrics").body.decode()
    m = re.search(re.escape(name + ("{" + labels + "}" if labels else "")) + r" (\d+)\n", text)
    return int(m.group(1)) if m else 0


def run_tests(tests):
    """Run (name, fn) pairs; print a line each; exit 1 if any failed."""
    failed = 0
    for name, fn in tests:
        t0 = time.monotonic()
        try:
            fn()
            print("ok   %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)
        except Exception:
            failed += 1
            import traceback
            print("FAIL %s" % name, flush=True)
            traceback.print_exc()
    print("%d/%d passed" % (len(tests) - failed, len(tests)), flush=True)
    if failed:
        global _failed
        _failed = True
    sys.exit(1 if failed else 0)
