# SPDX-License-Identifier: ISC
"""Benchmark: a line shed's memory as members join by heartbeat (default
ring: B = 65536, R = 3, eps = 0.03; 10 zones). Prints `name: value unit`:

  memory.rss_kb_<n>            VmRSS once <n> members are in the ring and
                               the rebuild is done (n = 0, 1000, 10000)
  memory.anon_kb_<n>           the anonymous part of it (heap, arenas,
                               maps; the rest is shared library pages)
  memory.bytes_per_member      (rss at 10000 - rss at 0) / 10000
  memory.rss_kb_10000_status   after one status JSON listing every member
                               (the main loop trims the heap every 2 s)
  memory.hwm_kb_10000          peak RSS of the whole run (ring builds,
                               the status JSON)

Members arrive in 4 batches per step, so every step sees several ring
builds, as a cell that grows does."""
import sys

import harness
import memlib


def main():
    d = harness.tmpdir("shedmem-")
    shed, port = memlib.start_shed(d)
    steps = memlib.grow(port, shed.pid, (0, 1000, 10000))
    harness.request("GET", "http://127.0.0.1:%d/_shed/v1/status" % port)
    after = memlib.settle(shed.pid, 2.5)
    san = memlib.sanitized()
    if san != "none":
        print("bench_memory: sanitize=%s, figures are not meaningful" % san)
    for n, st in steps:
        print("memory.rss_kb_%d: %d kB" % (n, st["VmRSS"]))
        print("memory.anon_kb_%d: %d kB" % (n, st["RssAnon"]))
    per = (steps[-1][1]["VmRSS"] - steps[0][1]["VmRSS"]) * 1024 / steps[-1][0]
    print("memory.bytes_per_member: %.0f bytes" % per)
    print("memory.rss_kb_10000_status: %d kB" % after["VmRSS"])
    print("memory.hwm_kb_10000: %d kB" % after["VmHWM"])
    sys.stdout.flush()
    shed.stop()


main()
