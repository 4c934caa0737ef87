# SPDX-License-Identifier: ISC
"""Benchmark: a normal client's redirect latency while 10,100 slow clients
(more than limits.connections, 10,000) dribble their request headers
(issue 15's slowloris), with the header deadline on (the default 10 s,
here 2 s to keep the run short) and off.
Prints guard.<mode>.p50_ms, guard.<mode>.p99_ms, guard.<mode>.failed,
guard.<mode>.slow_cut. Bounded: about 25 s."""
import os
import resource
import socket
import time

import harness

CRED = "bench-guard"
SLOW = 10100


def run(mode):
    d = harness.tmpdir()
    port = harness.free_port()
    conf = os.path.join(d, "shed.yaml")
    header = "2s" if mode == "deadline" else "0"
    with open(conf, "w") as f:
        f.write("""cell: t
roles: [line]
listen: ["127.0.0.1:%d"]
default_service: burrow
credential: %s
timings: {heartbeat_interval: 200ms, lease: 700ms}
limits: {connections: 10000, header_timeout: %s, idle_timeout: 60s, per_source: 1000}
services:
  burrow: {kind: burrow, buckets: 1024, k: 3, r: 3}
""" % (port, CRED, header))
    shed = harness.Proc([harness.binary("shed"), "-c", conf], name="shed-" + mode)
    harness.wait_port("127.0.0.1", port, proc=shed)
    bport = harness.free_port()
    b = harness.Proc([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % bport,
                      "--announce", "http://127.0.0.1:%d" % port, "--id", "b1",
                      "--credential", CRED], name="b1-" + mode)
    url = "http://127.0.0.1:%d/v1.0/a/q/m" % port
    harness.wait_until(lambda: harness.request("GET", url).status == 302, timeout=10,
                       what="the backend in the ring")
    socks = []
    for i in range(SLOW):
        s = socket.socket()
        s.bind(("127.0.%d.%d" % (10 + i // 500 // 250, 1 + (i // 500) % 250), 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
    time.sleep(0.5)
    for s in socks:
        try:
            s.send(b"GET /v1.0/a/q/m HTTP/1.1\r\nHost: burrow.service\r\nX-Slow: ")
        except OSError:
            pass
    lat, failed = [], 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 6.0:
        for s in socks:
            try:
                s.send(b"x")
            except OSError:
                pass
        for _ in range(25):
            t = time.monotonic()
            try:
                ok = harness.request("GET", url, timeout=2.0).status == 302
            except Exception:
                ok = False
            lat.append(time.monotonic() - t)
            failed += not ok
        time.sleep(0.1)
    cut = 0
    for s in socks:
        try:
            cut += s.recv(64) == b""
        except BlockingIOError:
            pass
        except OSError:
            cut += 1
        s.close()
    lat.sort()
    print("guard.%s.p50_ms: %.2f ms" % (mode, 1000 * lat[len(lat) // 2]))
    print("guard.%s.p99_ms: %.2f ms" % (mode, 1000 * lat[int(len(lat) * 0.99)]))
    print("guard.%s.failed: %d of %d requests" % (mode, failed, len(lat)))
    print("guard.%s.slow_cut: %d of %d connections" % (mode, cut, SLOW))
    b.stop()
    shed.stop()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, SLOW + 2000), hard))
    run("deadline")
    run("off")
