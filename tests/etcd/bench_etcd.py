# SPDX-License-Identifier: ISC
"""Built-in peer sync and etcd membership side by side (docs/etcd.md):
same cell (N line sheds + an aggregator, backends heartbeating to ONE line
shed each), heartbeat 200 ms, lease 1000 ms, sync 100 ms, one etcd on
loopback. For N = 3 and 12:

  <mode>.sheds<N>.route_ms   a new backend's process start to every shed
                             routing to it (median of ROUNDS)
  <mode>.sheds<N>.skip_ms    its SIGKILL to every shed skipping it
  <mode>.heartbeats_per_s    heartbeats one shed answers (8 clients, 500
                             members, keep-alive), N = 3 only
  <mode>.heartbeats_per_s_wrk  the same from wrk (2 threads, 16 connections)
  <mode>.sheds<N>.master_route_ms  a new backend's process start to a master
                             counting it live: pushed to by the line sheds
                             (built-in), or reading etcd with no line shed
                             pushing to it (etcd)
  <mode>.sheds<N>.master_skip_ms   its SIGKILL to the master not counting it

Output: "name: value unit" lines. The machine is shared (2 cores): the
figures are for comparing the two modes, not absolutes.
"""
import http.client
import json
import os
import statistics
import sys
import threading
import time

import harness
from etcdlib import SECRET, Etcd, EtcdCell

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SIZES = [int(x) for x in os.environ.get("BENCH_SHEDS", "3,12").split(",")]


def up_everywhere(C, bid, want):
    """Wait until every shed has <bid> up (<want>) or not; return the time."""
    pending = set(C.names)
    deadline = time.monotonic() + 15
    while pending:
        for s in list(pending):
            st = C.members(s).get(bid)
            if (st == "up") == want:
                pending.discard(s)
        if time.monotonic() > deadline:
            raise TimeoutError("%s %s at %s" % (bid, "up" if want else "down", sorted(pending)))
    return time.monotonic()


def convergence(C, rounds):
    route, skip = [], []
    for r in range(rounds):
        i = 100 + r
        t0 = time.monotonic()
        bid = C.start_backend(i, C.lines[r % len(C.lines)], wait=False)
        route.append((up_everywhere(C, bid, True) - t0) * 1000)
        time.sleep(0.3)
        C.backends[bid]["proc"].kill()
        t0 = time.monotonic()
        skip.append((up_everywhere(C, bid, False) - t0) * 1000)
        C.backends.pop(bid)
    return statistics.median(route), statistics.median(skip)


def master_rounds(C, rounds):
    """The master's view: a new backend live there, then not once killed."""
    route, skip = [], []
    for r in range(rounds):
        i = 200 + r
        want = len(C.alive()) + 1
        t0 = time.monotonic()
        bid = C.start_backend(i, C.lines[r % len(C.lines)], wait=False)
        harness.wait_until(lambda: C.master_live() == want, timeout=15, step=0.005,
                           what="the master counts %s" % bid)
        route.append((time.monotonic() - t0) * 1000)
        time.sleep(0.3)
        C.backends[bid]["proc"].kill()
        t0 = time.monotonic()
        harness.wait_until(lambda: C.master_live() == want - 1, timeout=15, step=0.005,
                           what="the master drops %s" % bid)
        skip.append((time.monotonic() - t0) * 1000)
        C.backends.pop(bid)
    return statistics.median(route), statistics.median(skip)


def heartbeats(url, members=500, clients=8, seconds=3.0):
    """Heartbeats a shed answers per second: <clients> keep-alive
    connections, each renewing its share of <members> ids in turn."""
    host, port = url[len("http://"):].split(":")
    count = [0] * clients
    stop = time.monotonic() + seconds

    def worker(k):
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        ids = ["hb%d" % j for j in range(k, members, clients)]
        n = 0
        while time.monotonic() < stop:
            bid = ids[n % len(ids)]
            body = json.dumps({"service": "burrow", "id": bid,
                               "url": "http://127.0.0.2:%d" % (10000 + int(bid[2:])),
                               "incarnation": 1}).encode()
            conn.request("PUT", "/_shed/v1/members/burrow/" + bid, body=body,
                         headers={"Authorization": "Bearer " + SECRET,
                                  "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError("heartbeat: %d" % r.status)
            n += 1
        count[k] = n

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(count) / (time.monotonic() - t0)


WRK_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local n = counter %% %(members)d
  local id = "hb" .. n
  local body = string.format('{"service":"burrow","id":"%%s","url":"http://127.0.0.2:%%d",'
    .. '"incarnation":1}', id, 10000 + n)
  return wrk.format("PUT", "/_shed/v1/members/burrow/" .. id,
    {["Authorization"] = "Bearer %(secret)s", ["Content-Type"] = "application/json"}, body)
end
"""


def heartbeats_wrk(url, members=500, seconds=3):
    """The same with wrk (2 threads, 16 connections): the shed's own limit
    rather than the Python clients'. None without wrk."""
    import re
    import shutil
    import subprocess
    if shutil.which("wrk") is None:
        return None
    d = harness.tmpdir("shed-etcd-wrk-")
    script = os.path.join(d, "hb.lua")
    with open(script, "w") as f:
        f.write(WRK_LUA % {"members": members, "secret": SECRET})
    r = subprocess.run(["wrk", "-t2", "-c16", "-d%ds" % seconds, "-s", script, url],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=seconds + 30)
    out = r.stdout.decode()
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if "Non-2xx" in out or m is None:
        raise RuntimeError("wrk: " + out)
    return float(m.group(1))


def main():
    E = Etcd(1)
    out = []
    try:
        for n in SIZES:
            for mode in ("builtin", "etcd"):
                C = EtcdCell(mode, E if mode == "etcd" else None, nsheds=n, nback=2,
                             master=True)
                try:
                    harness.wait_until(C.converged, timeout=30, what="%s cell converged" % mode)
                    route, skip = convergence(C, ROUNDS)
                    lines = ["%s.sheds%d.route_ms: %.0f ms" % (mode, n, route),
                             "%s.sheds%d.skip_ms: %.0f ms" % (mode, n, skip)]
                    harness.wait_until(lambda: C.master_live() == len(C.alive()), timeout=15,
                                       what="the master sees the cell")
                    mroute, mskip = master_rounds(C, ROUNDS)
                    lines += ["%s.sheds%d.master_route_ms: %.0f ms" % (mode, n, mroute),
                              "%s.sheds%d.master_skip_ms: %.0f ms" % (mode, n, mskip)]
                    if n == SIZES[0]:
                        hb = heartbeats(C.url["s1"])
                        lines.append("%s.heartbeats_per_s: %.0f /s" % (mode, hb))
                        hb = heartbeats_wrk(C.url["s1"])
                        if hb is not None:
                            lines.append("%s.heartbeats_per_s_wrk: %.0f /s" % (mode, hb))
                    for line in lines:
                        print(line, flush=True)
                    out += lines
                finally:
                    C.stop()
                if mode == "etcd":  # the next cell starts from an empty prefix
                    E.call("/v3/kv/deleterange", {"key": "L3NoZWQv", "range_end": "L3NoZWQw"})
    finally:
        E.stop_all()
    print("---")
    for line in out:
        print(line)


if __name__ == "__main__":
    sys.exit(main())
