# SPDX-License-Identifier: ISC
"""Benchmark: the line shed against nginx `return 302`, side by side in one
run on loopback. 1000 registered backends (127.0.0.x:port, never contacted),
wrk with random message keys (a Lua script), servers pinned to core 0 and
wrk to core 1, with keep-alive and with a new connection per request.
Prints `name: value unit` lines; SHED_BENCH_SECONDS sets each wrk run."""
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time

import harness

SECONDS = int(os.environ.get("SHED_BENCH_SECONDS", "8"))
CRED = "bench-secret"
NBACKENDS = 1000
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def pin(argv, core):
    if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1:
        return ["taskset", "-c", str(core)] + argv
    return argv


def start_shed(d):
    port = harness.free_port()
    conf = os.path.join(d, "shed.yaml")
    with open(conf, "w") as f:
        f.write("""cell: bench
listen: ["127.0.0.1:%d"]
credential: %s
register_networks: [127.0.0.0/8]
aggregator: http://127.0.0.1:9
timings: {heartbeat_interval: 30s, lease: 90s, evict_after: 5m, drain_window: 5m,
          pin_lifetime: 30s, join_heartbeats: 1}
limits: {connections: 10000}
services: {burrow: {kind: burrow}}
""" % (port, CRED))
    p = harness.Proc(pin([harness.binary("shed"), "-c", conf], 0), name="shed")
    harness.wait_port("127.0.0.1", port, proc=p)
    return p, port


def register(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    hdr = {"Authorization": "Bearer " + CRED, "Content-Type": "application/json"}
    for i in range(NBACKENDS):
        body = json.dumps({"service": "burrow", "id": "b%04d" % i,
                           "url": "http://127.0.0.%d:%d" % (2 + i // 250, 10000 + i),
                           "incarnation": 1})
        c.request("PUT", "/_shed/v1/members/burrow/b%04d" % i, body=body, headers=hdr)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError("heartbeat %d: %d" % (i, r.status))
    c.close()

    def ready():
        st = harness.request("GET", "http://127.0.0.1:%d/_shed/v1/status" % port).json()
        return st["services"][0]["ring_size"] == NBACKENDS
    harness.wait_until(ready, timeout=20, what="1000 members in the ring")


def start_nginx(d):
    # The worker is the child that serves; measure the whole process group.
    return harness.nginx(d, "  server { listen 127.0.0.1:%(port)d; "
                            "location / { return 302 http://127.0.0.1:9/x; } }",
                         prefix=pin([], 0))


def group_ticks(pid):
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == os.getpgid(pid):  # pgrp
                total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total


def wrk(port, script, close, pid):
    argv = ["wrk", "-t1", "-c64", "-d%ds" % SECONDS, "--latency", "-s", script]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append("http://127.0.0.1:%d/" % port)
    t0 = group_ticks(pid)
    out = subprocess.run(pin(argv, 1), capture_output=True, text=True,
                         timeout=SECONDS + 30).stdout
    t1 = group_ticks(pid)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    n = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errs and int(errs.group(1)) > n // 100:
        raise RuntimeError("too many non-3xx responses:\n" + out)
    cpu_us = (t1 - t0) / TICK * 1e6 / max(n, 1)
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
    assert r.status == 302 and r.header("location").startswith("http://127.0.0."), r
    nginx, nport = start_nginx(d)
    r = harness.request("GET", "http://127.0.0.1:%d/v1.0/a/q/m" % nport)
    assert r.status == 302, r
    res = {}
    for mode, close in (("keepalive", False), ("close", True)):
        # Alternate servers so that machine noise hits both alike.
        res[("line", mode)] = wrk(sport, script, close, shed.pid)
        res[("nginx", mode)] = wrk(nport, script, close, nginx.pid)
    for mode in ("keepalive", "close"):
        sfx = "" if mode == "keepalive" else "_close"
        l, n = res[("line", mode)], res[("nginx", mode)]
        print("line.redirects_per_s%s: %.0f req/s" % (sfx, l[0]))
        print("nginx.redirects_per_s%s: %.0f req/s" % (sfx, n[0]))
        print("line.vs_nginx%s: %.2f ratio" % (sfx, l[0] / n[0]))
        print("line.p99_ms%s: %.3f ms" % (sfx, l[1]))
        print("nginx.p99_ms%s: %.3f ms" % (sfx, n[1]))
        print("line.cpu_us_per_req%s: %.2f us" % (sfx, l[2]))
        print("nginx.cpu_us_per_req%s: %.2f us" % (sfx, n[2]))
    sys.stdout.flush()
    shed.stop()
    nginx.stop()


main()
