# SPDX-License-Identifier: ISC
"""A real line shed fed by heartbeats, and where its memory goes: the
shared part of the memory benchmark (bench_memory.py), the bounded
integration test (test_memory.py) and the line shed of bench_line.py.

Members are registered the way backends do it (PUT /_shed/v1/members/...,
one keep-alive connection, the same body a backend sends); the shed runs
with the default ring (B = 65536, R = 3, eps = 0.03) and joins each member
on its first heartbeat. RSS is read from /proc/<pid>/status once the ring
holds every member and the registry tick has run past the rebuild."""
import http.client
import json
import os
import time

import harness

CRED = "mem-secret"


def start_shed(d, connections=1000, prefix=()):
    """A line shed with one burrow service (the memory figures, and the
    line shed of bench_line.py), started after <prefix> (taskset, say);
    returns (Proc, port)."""
    port = harness.free_port()
    conf = os.path.join(d, "shed.yaml")
    with open(conf, "w") as f:
        f.write("""cell: mem
listen: ["127.0.0.1:%d"]
credential: %s
register_networks: [127.0.0.0/8]
aggregator: http://127.0.0.1:9
timings: {heartbeat_interval: 60s, lease: 300s, evict_after: 10m, drain_window: 5m,
          pin_lifetime: 30s, join_heartbeats: 1}
limits: {connections: %d, max_members: 20000}
services: {burrow: {kind: burrow}}
""" % (port, CRED, connections))
    # meson test sets MALLOC_PERTURB_ (glibc then writes every block it
    # hands out and takes back, dirtying pages a shed in production never
    # touches: +1.2 MB at 0 members); RSS is measured without it.
    p = harness.Proc(list(prefix) + [harness.binary("shed"), "-c", conf], name="shed",
                     env={"MALLOC_PERTURB_": "0"})
    harness.wait_port("127.0.0.1", port, proc=p)
    return p, port


def register(port, lo, hi, zones=10):
    """Heartbeat members b<lo>..b<hi - 1> once each (join_heartbeats: 1)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    hdr = {"Authorization": "Bearer " + CRED, "Content-Type": "application/json"}
    for i in range(lo, hi):
        body = json.dumps({"service": "burrow", "id": "b%05d" % i,
                           "url": "http://127.%d.%d.%d:%d" % (
                               1 + i // 62500, (i // 250) % 250, 2 + i % 250, 10000 + i % 50000),
                           "zone": "z%d" % (i % zones), "incarnation": 1})
        c.request("PUT", "/_shed/v1/members/burrow/b%05d" % i, body=body, headers=hdr)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError("heartbeat %d: %d %s" % (i, r.status, r.reason))
    c.close()


def ring_members(port):
    """Members in the ring (state up), from /metrics: cheap at any size,
    where the status JSON lists every member."""
    base = "http://127.0.0.1:%d" % port
    return (harness.metric(base, "shed_members", 'service="burrow",state="up"'),
            harness.metric(base, "shed_members", 'service="burrow",state="joining"'))


def wait_ring(port, n, timeout=60):
    harness.wait_until(lambda: ring_members(port) == (n, 0), timeout=timeout,
                       what="%d members in the ring" % n)


def status_kb(pid):
    """The /proc/<pid>/status memory lines, in kB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "VmSize"):
                out[k] = int(v.split()[0])
    return out


def settle(pid, seconds=2.5):
    """Let the registry tick finish (rebuild, garbage after the grace
    period) and the main loop trim the heap (every 2 s), then return
    status_kb(pid)."""
    time.sleep(seconds)
    return status_kb(pid)


def sanitized():
    """The build's b_sanitize option ("none" when not sanitized): shadow
    memory makes RSS figures meaningless under ASan."""
    path = os.path.join(harness.BUILD_DIR, "meson-info", "intro-buildoptions.json")
    try:
        with open(path) as f:
            opts = {o["name"]: o["value"] for o in json.load(f)}
    except (OSError, ValueError, KeyError):
        return "none"
    v = opts.get("b_sanitize", "none")
    return ",".join(v) if isinstance(v, list) else v


def grow(port, pid, steps=(0, 1000, 10000)):
    """Register up to each count in <steps>; [(count, status_kb)]."""
    out = []
    have = 0
    for n in steps:
        if n > have:
            # In batches, as backends arrive over a few ticks: every tick
            # with new members rebuilds the ring.
            batch = max(1, (n - have) // 4)
            while have < n:
                nxt = min(n, have + batch)
                register(port, have, nxt)
                have = nxt
                time.sleep(0.3)
            wait_ring(port, n)
        out.append((n, settle(pid)))
    return out
