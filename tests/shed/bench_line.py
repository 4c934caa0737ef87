# SPDX-License-Identifier: ISC
"""Benchmark: the line shed against nginx `return 302`, side by side in one
run on loopback. 1000 registered backends (127.x.y.z:port, never contacted),
wrk with random message keys (a Lua script), servers pinned to core 0 and
wrk to core 1, with keep-alive and with a new connection per request.

Each mode runs SHED_BENCH_ROUNDS (>= 7) rounds, the server order alternating
(tests/lib/benchstat.py); every figure below is the median over the rounds
with its min and max, and the ratios are per round (line / nginx of the same
round). CPU per request is the server's own (every thread's schedstat, ns)
divided by the requests wrk completed. Prints `name: value unit (...)`
lines; SHED_BENCH_SECONDS sets each wrk run (default 2)."""
import os
import re
import shutil
import subprocess
import sys

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
    print("bench_line: %d rounds of %d s per side and mode, servers %s" % (
        benchstat.ROUNDS, SECONDS,
        "on core 0, wrk on core 1" if benchstat.multicore() else "not pinned (1 core)"))
    fmt = benchstat.fmt
    for mode, close in (("keepalive", False), ("close", True)):
        sfx = "" if mode == "keepalive" else "_close"
        res = benchstat.interleave(
            ("line", "nginx"), lambda side, r: wrk(ports[side], script, close, pids[side]))
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
        sys.stdout.flush()
    shed.stop()
    nginx.stop()


main()
