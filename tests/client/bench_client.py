# SPDX-License-Identifier: ISC
"""Benchmark driver: start a line shed and three burrowd backends on
loopback (the integration test's Cluster), then run bench-client against
them, which prints client.pinned_ops_per_s, client.direct_ops_per_s,
client.naive_ops_per_s and the ratios, measured side by side in one run."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_client import Cluster  # noqa: E402


def main():
    cl = Cluster(pin_lifetime="60s")
    exe = os.path.join(harness.BUILD_DIR, "tests", "client", "bench-client")
    # Short windows, many rounds, modes interleaved: load drift on a shared
    # machine hits all three alike.
    secs = os.environ.get("SHED_BENCH_SECONDS", "0.5")
    r = subprocess.run([exe, "--shed", "127.0.0.1:%d" % cl.port, "--seconds", secs,
                        "--rounds", "24", "--messages", "300"], timeout=170)
    cl.shed.stop()
    for b in cl.backends.values():
        b.stop()
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
