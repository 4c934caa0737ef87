# SPDX-License-Identifier: ISC
"""Benchmark: the line shed against nginx `return 302`, side by side in one
run on loopback. 1000 registered backends (127.x.y.z:port, never contacted),
wrk with random message keys (a Lua script), servers pinned to core 0 and
wrk to core 1, with keep-alive and with a new connection per request.

Each mode runs SHED_BENCH_ROUNDS (>= 7) rounds, the server order alternating
(tests/lib/benchstat.py); every figure below is the median over the rounds
with its min and max, and the ratios are per round (line / nginx of the same
round). CPU per request is the server's own (every thread's schedstat, ns)
divided by the requests wrk completed. Then, when strace is installed, one
short wrk run per server and mode under `strace -f -c` gives the system
calls the server makes per request (a count that repeats where wall-clock
does not; the threads that only wait are left out). Prints
`name: value unit (...)` lines; SHED_BENCH_SECONDS sets each wrk run
(default 2)."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import benchstat
import harness
import memlib

SECONDS = int(os.environ.get("SHED_BENCH_SECONDS", "2"))
NBACKENDS = 1000
pin = benchstat.pin


def start_shed(d):
    return memlib.start_shed(d, connections=10000, prefix=pin([], 0))


def register(port):
    memlib.register(port, 0, NBACKENDS)
    memlib.wait_ring(port, NBACKENDS, timeout=20)


def start_nginx(d):
    # The worker is the child that serves; measure the whole process group.
    return harness.nginx(d, "  server { listen 127.0.0.1:%(port)d; "
                            "location / { return 302 http://127.0.0.1:9/x; } }",
                         prefix=pin([], 0))


def start_h2o(d):
    # h2o's own redirect handler, one thread: the other fast HTTP/1.1
    # server in Debian, as a second reference (a reason for the goal, not a
    # side the shed is judged against).
    port = harness.free_port()
    conf = os.path.join(d, "h2o.conf")
    with open(conf, "w") as f:
        f.write("listen:\n  host: 127.0.0.1\n  port: %d\nnum-threads: 1\n"
                "max-connections: 10000\nhosts:\n  default:\n    paths:\n"
                "      /:\n        redirect:\n          url: http://127.0.0.1:9/x\n"
                "          status: 302\n" % port)
    p = harness.Proc(pin(["h2o", "-c", conf], 0), name="h2o")
    harness.wait_port("127.0.0.1", port, proc=p)
    return p, port


def wrk(port, script, close, pids):
    argv = ["wrk", "-t1", "-c64", "-d%ds" % SECONDS, "--latency", "-s", script]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append("http://127.0.0.1:%d/" % port)
    t0 = benchstat.cpu_ns(pids)
    out = subprocess.run(pin(argv, 1), capture_output=True, text=True,
                         timeout=SECONDS + 30).stdout
    t1 = benchstat.cpu_ns(pids)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    n = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errs and int(errs.group(1)) > n // 100:
        raise RuntimeError("too many non-3xx responses:\n" + out)
    cpu_us = (t1 - t0) / 1e3 / max(n, 1)
    return rps, p99, cpu_us


# What a server's request path calls; waits of other threads (the shed's
# signal and timer threads: rt_sigtimedwait, poll, futex, nanosleep) and
# memory calls are not part of a request.
NET_CALLS = {"accept", "accept4", "recvfrom", "recvmsg", "read", "readv", "sendto", "sendmsg",
             "write", "writev", "sendfile", "close", "shutdown", "setsockopt", "getsockopt",
             "fcntl", "ioctl", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2"}


def syscalls_per_req(port, script, close, pids):
    """System calls per request of the server <pids> under one 1 s wrk run
    (16 connections), counted by `strace -f -c`: {name: calls/request}."""
    out = os.path.join(harness.tmpdir("shedstrace-"), "strace.txt")
    argv = ["strace", "-f", "-c", "-o", out]
    for pid in pids:
        argv += ["-p", str(pid)]
    st = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached to every thread
    w = ["wrk", "-t1", "-c16", "-d1s", "-s", script]
    if close:
        w += ["-H", "Connection: close"]
    w.append("http://127.0.0.1:%d/" % port)
    res = subprocess.run(benchstat.pin(w, 1), capture_output=True, text=True, timeout=60).stdout
    time.sleep(0.2)
    st.send_signal(signal.SIGINT)
    st.wait(timeout=30)
    n = int(re.search(r"(\d+) requests in", res).group(1))
    calls = {}
    with open(out) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
            if m and m.group(2) in NET_CALLS:
                calls[m.group(2)] = int(m.group(1)) / max(n, 1)
    return calls


def main():
    if not shutil.which("wrk") or not shutil.which("nginx"):
        print("bench_line: wrk or nginx missing, skipped")
        return
    d = harness.tmpdir("shedbench-")
    script = os.path.join(d, "keys.lua")
    with open(script, "w") as f:
        # wrk.format() with its own header table ignores wrk.headers, which
        # is where -H 'Connection: close' lands: copy them in.
        f.write("""math.randomseed(os.time())
request = function()
  local a = math.random(1, 100000)
  local m = math.random(1, 1000000000)
  local h = {}
  for k, v in pairs(wrk.headers) do h[k] = v end
  h["Host"] = "burrow.service"
  return wrk.format("GET", "/v1.0/acct" .. a .. "/q/m" .. m, h)
end
""")
    shed, sport = start_shed(d)
    register(sport)
    r = harness.request("GET", "http://127.0.0.1:%d/v1.0/a/q/m" % sport,
                        headers={"Host": "burrow.service"})
    assert r.status == 302 and r.header("location").startswith("http://127."), r
    nginx, nport = start_nginx(d)
    r = harness.request("GET", "http://127.0.0.1:%d/v1.0/a/q/m" % nport)
    assert r.status == 302, r
    # nginx: the master and its worker (the worker serves).
    pids = {"line": [shed.pid], "nginx": benchstat.group_pids(os.getpgid(nginx.pid))}
    ports = {"line": sport, "nginx": nport}
    sides = ("line", "nginx")
    h2o = None
    if shutil.which("h2o"):
        h2o, hport = start_h2o(d)
        r = harness.request("GET", "http://127.0.0.1:%d/v1.0/a/q/m" % hport)
        assert r.status == 302, r
        pids["h2o"] = benchstat.group_pids(os.getpgid(h2o.pid))
        ports["h2o"] = hport
        sides = ("line", "nginx", "h2o")
    else:
        print("bench_line: h2o missing, no h2o reference side")
    print("bench_line: %d rounds of %d s per side and mode, servers %s" % (
        benchstat.ROUNDS, SECONDS,
        "on core 0, wrk on core 1" if benchstat.multicore() else "not pinned (1 core)"))
    fmt = benchstat.fmt
    for mode, close in (("keepalive", False), ("close", True)):
        sfx = "" if mode == "keepalive" else "_close"
        res = benchstat.interleave(
            sides, lambda side, r: wrk(ports[side], script, close, pids[side]))
        line, ngx = res["line"], res["nginx"]
        col = lambda rs, i: [x[i] for x in rs]  # noqa: E731
        print(fmt("line.redirects_per_s" + sfx, col(line, 0), "req/s", 0))
        print(fmt("nginx.redirects_per_s" + sfx, col(ngx, 0), "req/s", 0))
        print(fmt("line.vs_nginx" + sfx, benchstat.ratios(col(line, 0), col(ngx, 0)), "ratio"))
        print(fmt("line.cpu_us_per_req" + sfx, col(line, 2), "us"))
        print(fmt("nginx.cpu_us_per_req" + sfx, col(ngx, 2), "us"))
        print(fmt("line.cpu_vs_nginx" + sfx, benchstat.ratios(col(line, 2), col(ngx, 2)),
                  "ratio"))
        print(fmt("line.p99_ms" + sfx, col(line, 1), "ms", 3))
        print(fmt("nginx.p99_ms" + sfx, col(ngx, 1), "ms", 3))
        print(fmt("line.p99_vs_nginx" + sfx, benchstat.ratios(col(line, 1), col(ngx, 1)),
                  "ratio"))
        if h2o is not None:
            hh = res["h2o"]
            print(fmt("h2o.cpu_us_per_req" + sfx, col(hh, 2), "us"))
            print(fmt("h2o.cpu_vs_nginx" + sfx, benchstat.ratios(col(hh, 2), col(ngx, 2)),
                      "ratio"))
            print(fmt("line.cpu_vs_h2o" + sfx, benchstat.ratios(col(line, 2), col(hh, 2)),
                      "ratio"))
            print(fmt("h2o.p99_ms" + sfx, col(hh, 1), "ms", 3))
        sys.stdout.flush()
    if shutil.which("strace"):
        for mode, close in (("keepalive", False), ("close", True)):
            sfx = "" if mode == "keepalive" else "_close"
            for side in sides:
                c = syscalls_per_req(ports[side], script, close, pids[side])
                print("%s.syscalls_per_req%s: %.2f calls (%s)" % (
                    side, sfx, sum(c.values()),
                    ", ".join("%s %.2f" % kv for kv in sorted(c.items(), key=lambda kv: -kv[1])
                              if kv[1] >= 0.01)))
                sys.stdout.flush()
    else:
        print("bench_line: strace missing, no syscall counts")
    shed.stop()
    nginx.stop()
    if h2o is not None:
        h2o.stop()


main()
