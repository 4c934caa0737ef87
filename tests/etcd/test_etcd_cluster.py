# SPDX-License-Identifier: ISC
"""Membership on a 3-member etcd cluster, one etcd member killed mid-run
(docs/etcd.md). Every shed lists all three endpoints and starts on the
first; that one is SIGKILLed while backends come and go: the sheds move to
another endpoint (shed_etcd_up back to 1), resume their watch, and keep
agreeing on the membership. Then the killed member comes back and a second
one (maybe the leader) is killed.
"""
import signal
import time

import harness
from etcdlib import Etcd, EtcdCell


def main():
    E = Etcd(3)
    C = EtcdCell("etcd", E, nsheds=2, nback=3, debug=True)
    try:
        harness.run_tests([("converges", lambda: converges(C)),
                           ("member_killed_mid_run", lambda: member_killed(E, C)),
                           ("second_member_killed", lambda: second_killed(E, C))])
    finally:
        C.stop()
        E.stop_all()


def converges(C):
    harness.wait_until(C.converged, timeout=20, what="every shed sees every backend")
    for s in C.names:
        assert C.metric(s, "shed_etcd_up") == 1


def member_killed(E, C):
    C.backends["b0"]["proc"].kill()            # goes while e0 dies
    E.stop("e0", signal.SIGKILL)
    t0 = time.monotonic()
    C.start_backend(3, "s2")                   # joins meanwhile
    harness.wait_until(C.converged, timeout=15, what="sheds converge on the surviving members")
    print("converged %.0f ms after e0 was killed" % ((time.monotonic() - t0) * 1000), flush=True)
    harness.wait_until(lambda: all(C.metric(s, "shed_etcd_up") == 1 for s in C.names),
                       timeout=10, what="shed_etcd_up 1 on another endpoint")
    assert C.metric("s1", "shed_etcd_reloads_total") == 0
    assert C.members("s1").get("b0") in ("down", None)


def second_killed(E, C):
    E.start("e0")
    harness.wait_until(lambda: E.healthy(), timeout=10, what="e0 back")
    time.sleep(1.0)  # e0 catches up
    E.stop("e1", signal.SIGKILL)
    C.backends["b1"]["proc"].kill()
    t0 = time.monotonic()
    harness.wait_until(C.converged, timeout=15, what="b1 skipped everywhere")
    print("b1 skipped %.0f ms after e1 and b1 were killed" % ((time.monotonic() - t0) * 1000),
          flush=True)
    C.start_backend(4, "s1")
    harness.wait_until(C.converged, timeout=15, what="b4 routed everywhere")


if __name__ == "__main__":
    main()
