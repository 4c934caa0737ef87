# SPDX-License-Identifier: ISC
"""Benchmark driver: start a line shed and 3, then 9, burrowd backends on
loopback (the integration test's Cluster), pin them to core 0 and
bench-client to core 1 (when there are 2+ cores), then run bench-client,
which prints client.pinned_ops_per_s, client.direct_ops_per_s,
client.naive_ops_per_s, the CPU per request of each side and the ratios,
each the median (min, max) of interleaved rounds measured side by side in
one run. The 9-backend figures are named client.b9.*."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchstat  # noqa: E402
import harness  # noqa: E402
from test_client import Cluster  # noqa: E402


def pin_running(pids, core):
    """Pin every thread of the running processes <pids> to CPU <core>."""
    if benchstat.multicore():
        for pid in pids:
            subprocess.run(["taskset", "-a", "-p", "-c", str(core), str(pid)],
                           capture_output=True, check=True)


def run(nback, prefix):
    cl = Cluster(nback=nback, pin_lifetime="60s")
    try:
        pin_running([cl.shed.pid] + [b.pid for b in cl.backends.values()], 0)
        exe = os.path.join(harness.BUILD_DIR, "tests", "client", "bench-client")
        # Short windows, many rounds, sides interleaved with the order
        # alternating: load drift on a shared machine hits all three alike.
        secs = os.environ.get("SHED_BENCH_SECONDS", "0.5")
        rounds = str(max(15, benchstat.ROUNDS))
        r = subprocess.run(benchstat.pin([exe, "--shed", "127.0.0.1:%d" % cl.port, "--seconds",
                                          secs, "--rounds", rounds, "--messages", "300"], 1),
                           capture_output=True, text=True, timeout=130)
        sys.stderr.write(r.stderr)
        for line in r.stdout.splitlines():
            print(prefix + line[len("client."):] if line.startswith("client.") else line)
        sys.stdout.flush()
        return r.returncode
    finally:
        cl.shed.stop()
        for b in cl.backends.values():
            b.stop()


def main():
    print("bench_client: backends and shed %s" % (
        "on core 0, bench-client on core 1" if benchstat.multicore() else "not pinned (1 core)"))
    rc = run(3, "client.")
    rc = rc or run(9, "client.b9.")
    sys.exit(rc)


if __name__ == "__main__":
    main()
