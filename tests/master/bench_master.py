# SPDX-License-Identifier: ISC
"""Benchmark: failure detection, warm restart, peer convergence and master
throughput on the two-cell loopback deployment of tests/master/cluster.py
(heartbeat 200 ms, lease 1000 ms, sync 100 ms). Prints `name: value unit`:

  failover.lease_ms          backend killed -> last redirect to it (heartbeats only)
  failover.reported_ms       backend killed -> first redirect elsewhere, with
                             two clients reporting it (Shed-Failed)
  restart.first_redirect_ms  shed process start -> first correct redirect
                             (warm start from its snapshot)
  peer.converge_ms           backend up on the shed it heartbeats to -> up on
                             the peer shed
  line.redirects_per_s, master.redirects_per_s (wrk, keep-alive, same run),
  and their ratio.
Every loop is bounded in count and time."""
import os
import re
import shutil
import signal
import statistics
import subprocess
import time

import harness
from cluster import Cluster, call, origin, token

SECONDS = int(os.environ.get("SHED_BENCH_SECONDS", "4"))


def poll_until_moved(c, shed, path, target, deadline_s=5.0):
    """Ask <shed> for <path> as fast as possible; return the monotonic time
    of the last answer that still named <target>."""
    last = None
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        t = time.monotonic()
        l = call(c.url[shed], "GET", path).header("location")
        if origin(l) == target:
            last = t
        else:
            return last
    raise TimeoutError("still redirected to %s after %.1fs" % (target, deadline_s))


def primary_of(c, shed, path):
    return origin(call(c.url[shed], "GET", path).header("location"))


def kill_primary(c, path):
    """SIGKILL the backend b1 sends <path> to: (its URL, the kill time)."""
    target = primary_of(c, "b1", path)
    bid = [b for b, v in c.backends.items() if v["url"] == target][0]
    t0 = time.monotonic()
    c.backends[bid]["proc"].kill()
    return target, t0


def bench_lease(c):
    out = []
    for i in range(2):
        path = "/v1.0/lease%d/q/m" % i
        target, t0 = kill_primary(c, path)
        last = poll_until_moved(c, "b1", path, target)
        out.append(((last or t0) - t0) * 1000)
        c.start_backend("b", 10 + i, "b1")
        harness.wait_until(c.converged, timeout=10, what="cell b converged")
    return statistics.median(out)


def bench_reported(c):
    out = []
    for i in range(2):
        path = "/v1.0/rep%d/q/m" % i
        target, t0 = kill_primary(c, path)
        hp = target.split("//")[1]
        moved = None
        for k in range(200):
            src = "127.0.0.%d" % (2 + k % 2)
            try:  # the client fails on its pinned host ...
                call(target, "GET", path, timeout=1)
            except OSError:
                pass
            # ... and comes back to the shed naming it.
            l = call(c.url["b1"], "GET", path, headers={"Shed-Failed": hp}, source=src)
            if origin(l.header("location")) != target:
                moved = time.monotonic()
                break
        assert moved is not None, "reports never moved traffic"
        out.append((moved - t0) * 1000)
        c.start_backend("b", 20 + i, "b2")
        harness.wait_until(c.converged, timeout=10, what="cell b converged")
    return statistics.median(out)


def bench_restart(c):
    path = "/v1.0/restart/q/m"
    want = call(c.url["a2"], "GET", path).header("location")
    assert c.procs["a2"].stop(signal.SIGTERM) == 0
    t0 = time.monotonic()
    c.start_shed("a2", wait=False)
    end = t0 + 10
    while time.monotonic() < end:
        try:
            r = call(c.url["a2"], "GET", path, timeout=1)
        except OSError:
            time.sleep(0.001)
            continue
        if r.status == 302 and r.header("location") == want:
            dt = (time.monotonic() - t0) * 1000
            harness.wait_port("127.0.0.1", c.ports["a2"])
            return dt
        time.sleep(0.001)
    raise TimeoutError("restarted a2 never redirected correctly")


def bench_converge(c):
    out = []
    for i in range(3):
        bid = "a-b%d" % (30 + i)
        c.start_backend("a", 30 + i, "a1")
        t1 = None
        end = time.monotonic() + 10
        while time.monotonic() < end:
            t = time.monotonic()
            if t1 is None and bid in c.members_up("a1"):
                t1 = t
            if bid in c.members_up("a2"):
                out.append((t - (t1 or t)) * 1000)
                break
            time.sleep(0.002)
        else:
            raise TimeoutError("a2 never learned %s" % bid)
    return statistics.median(out)


def wrk(url, path, tok=None):
    if shutil.which("wrk") is None:
        return None
    target = url + path + ("?shed_esc=" + tok if tok else "")
    out = subprocess.run(["wrk", "-t", "2", "-c", "32", "-d", "%ds" % SECONDS, "-H",
                          "Host: burrow.service", target],
                         capture_output=True, text=True, timeout=SECONDS + 30).stdout
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    assert m, out
    assert non2xx is None, "errors under load: %s" % out
    return float(m.group(1))


def main():
    c = Cluster(debug=False)
    conv = bench_converge(c)
    path = "/v1.0/acct/q/m1"
    # The master gets a token that has visited a: it redirects into b.
    tok = token(["a"], expiry=int(time.time()) + 3600)
    assert call(c.url["m1"], "GET", path + "?shed_esc=" + tok).status == 302
    line = wrk(c.url["a1"], path)
    master = wrk(c.url["m1"], path, tok)
    lease = bench_lease(c)
    reported = bench_reported(c)
    restart = bench_restart(c)
    print("failover.lease_ms: %.0f ms" % lease)
    print("failover.reported_ms: %.1f ms" % reported)
    print("failover.reported_vs_lease: %.3f ratio" % (reported / lease if lease else 0))
    print("restart.first_redirect_ms: %.1f ms" % restart)
    print("peer.converge_ms: %.1f ms" % conv)
    if line and master:
        print("line.redirects_per_s: %.0f req/s" % line)
        print("master.redirects_per_s: %.0f req/s" % master)
        print("master_vs_line.redirects: %.3f ratio" % (master / line))
    else:
        print("line.redirects_per_s: skipped (no wrk)")


main()
