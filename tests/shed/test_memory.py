# SPDX-License-Identifier: ISC
"""Integration test (bounded): a line shed fed 10000 members by heartbeats
stays under 20 MB RSS (20,000,000 bytes, /proc/<pid>/status VmRSS), also
after a status JSON that lists every member. Under a sanitizer the bound is
not checked (shadow memory), the growth still is."""
import time

import harness
import memlib

BOUND_KB = 20_000_000 // 1024  # 20 MB
N = 10000


def test_rss_bound_at_10000_members():
    d = harness.tmpdir("shedmem-")
    shed, port = memlib.start_shed(d)
    try:
        steps = memlib.grow(port, shed.pid, (0, N))
        assert memlib.ring_members(port) == (N, 0)
        harness.request("GET", "http://127.0.0.1:%d/_shed/v1/status" % port)
        # The main loop hands freed heap back every 2 s.
        after = memlib.settle(shed.pid, 2.5)
        san = memlib.sanitized()
        rss0, rss = steps[0][1]["VmRSS"], steps[-1][1]["VmRSS"]
        print("rss: %d kB at 0, %d kB at %d members, %d kB after a status JSON "
              "(bound %d kB, sanitize=%s)" % (rss0, rss, N, after["VmRSS"], BOUND_KB, san))
        if san != "none":
            return
        assert rss < BOUND_KB, "%d kB at %d members" % (rss, N)
        assert after["VmRSS"] < BOUND_KB, "%d kB after the status JSON" % after["VmRSS"]
    finally:
        assert shed.stop() == 0, shed.output()[-2000:]


harness.run_tests([("rss_bound_at_10000_members", test_rss_bound_at_10000_members)])
