# SPDX-License-Identifier: ISC
"""Membership on etcd (docs/etcd.md), against a real etcd on loopback: a cell
of two line sheds and an aggregator with `membership: {store: etcd}`, three
burrowd that each heartbeat to ONE line shed (etcd must spread them).

- members_appear: every shed routes to every backend, same ring digest;
  one key per (member, shed that heard it) under /shed/a/.
- killed_backend_disappears: a SIGKILLed backend is skipped by every shed
  within a lease and a bit (the shed that heard it deletes its key).
- deregistered_backend_is_gone: a clean DELETE removes it everywhere.
- restarted_shed_routes_warm: a line shed killed and started again (state
  dir emptied: no snapshot) routes to every backend at once, from etcd.
- etcd_down_keeps_routing: etcd stopped: shed_etcd_up 0, the last view
  keeps routing, a backend that joins meanwhile is queued; etcd back: the
  watch resumes (no full reload) and every shed routes to the new backend.
- compacted_revision_reloads: a shed whose watch revision was compacted
  while etcd was away reloads fully and still drops a member whose key went.
- lost_lease_rewrites_keys: the sheds' leases revoked behind their backs:
  they take new ones and write their keys again.
- restart_while_etcd_down: a line shed restarted without etcd routes from
  its snapshot and loads the cell from etcd when it returns.
"""
import glob
import os
import signal
import time

import etcdlib
import harness
from etcdlib import Etcd, EtcdCell

E = None
C = None


def setup():
    global E, C
    E = Etcd(1)
    C = EtcdCell("etcd", E, debug=True)
    harness.wait_until(C.converged, timeout=20, what="every shed sees every backend")


def digest(shed):
    st = harness.request("GET", C.url[shed] + "/_shed/v1/status").json()
    return [s["digest"] for s in st["services"] if s["name"] == "burrow"][0]


def members_appear():
    assert C.converged()
    ds = {s: digest(s) for s in C.names}
    assert len(set(ds.values())) == 1, ds
    for s in C.lines:
        r = C.redirect(s)
        assert r.status in (302, 307), r
        assert any(r.header("location").startswith(b["url"]) for b in C.backends.values()), r
    keys = E.keys("/shed/a/")
    want = {"/shed/a/burrow/%s/127.0.0.1:%d" % (b, C.ports[v["shed"]])
            for b, v in C.backends.items()}
    assert set(keys) == want, (sorted(keys), sorted(want))
    for v in keys.values():
        assert v["state"] == "up" and v["url"].startswith("http://127.0.0.1:"), v
    assert C.metric("s1", "shed_etcd_up") == 1
    assert C.metric("agg", "shed_etcd_keys") == 3
    st = harness.request("GET", C.url["s1"] + "/_shed/v1/status").json()
    assert st["etcd"]["up"] == 1 and st["etcd"]["keys"] == 3, st["etcd"]
    page = harness.request("GET", C.url["s1"] + "/_shed/v1/status.html").body.decode()
    assert "Membership on etcd" in page and "etcd <b>answers</b>" in page


def killed_backend_disappears():
    bid = "b1"  # heartbeats to s2 only
    C.backends[bid]["proc"].kill()
    t0 = time.monotonic()
    harness.wait_until(lambda: all(C.members(s).get(bid) in ("down", None) for s in C.names),
                       timeout=10, what="every shed skips the killed backend")
    dt = time.monotonic() - t0
    print("skip after kill: %.0f ms (lease 1000 ms)" % (dt * 1000), flush=True)
    assert dt < 2.5, dt
    assert not any(k.split("/")[4] == bid for k in E.keys("/shed/a/"))
    # It comes back under a new incarnation: up everywhere again.
    C.backends.pop(bid)
    C.start_backend(1, "s2")
    harness.wait_until(C.converged, timeout=10, what="the restarted backend is up everywhere")


def deregistered_backend_is_gone():
    bid = "b2"
    assert C.backends[bid]["proc"].stop(signal.SIGTERM) == 0  # burrowd deregisters
    C.backends.pop(bid)
    harness.wait_until(lambda: all(bid not in C.up(s) for s in C.names), timeout=5,
                       what="the deregistered backend left every shed")
    C.start_backend(2, "s1")
    harness.wait_until(C.converged, timeout=10, what="b2 back")


def restarted_shed_routes_warm():
    p = C.procs["s2"]
    p.kill()
    for f in glob.glob(os.path.join(C.dir, "state-s2", "*")):
        os.unlink(f)  # no snapshot: what it knows at once comes from etcd
    # b0 and b2 heartbeat to s1 only: s2 can know them only from etcd.
    t0 = time.monotonic()
    C.start_shed("s2")
    up = C.up("s2")
    dt = time.monotonic() - t0
    print("restart to routing: %.0f ms, up at first look: %s" % (dt * 1000, sorted(up)),
          flush=True)
    assert {"b0", "b2"} <= up, up
    r = C.redirect("s2")
    assert r.status in (302, 307), r
    harness.wait_until(C.converged, timeout=10, what="s2 converged")


def etcd_down_keeps_routing():
    rev0 = C.metric("s2", "shed_etcd_revision")
    E.stop("e0")
    harness.wait_until(lambda: all(C.metric(s, "shed_etcd_up") == 0 for s in C.names),
                       timeout=5, what="shed_etcd_up 0 everywhere")
    for s in C.names:
        assert "unreachable" in C.procs[s].output(), s
    page = harness.request("GET", C.url["s2"] + "/_shed/v1/status.html").body.decode()
    assert "etcd is unreachable: routing on the last view" in page
    # Three leases later every shed still routes on its last view.
    time.sleep(3.0)
    for s in C.names:
        assert C.up(s) == C.alive(), (s, C.members(s))
    assert C.redirect("s1").status in (302, 307)
    assert C.redirect("s2").status in (302, 307)
    # A backend joins meanwhile at s1: routed there, queued for etcd.
    bid = C.start_backend(3, "s1")
    harness.wait_until(lambda: bid in C.up("s1"), timeout=5, what="s1 routes the new backend")
    harness.wait_until(lambda: C.metric("s1", "shed_etcd_queued") >= 1, timeout=5,
                       what="s1 queues it for etcd")
    assert bid not in C.up("s2")
    reloads = C.metric("s2", "shed_etcd_reloads_total")
    t0 = time.monotonic()
    E.start("e0")
    harness.wait_until(lambda: all(C.metric(s, "shed_etcd_up") == 1 for s in C.names),
                       timeout=10, what="shed_etcd_up 1 everywhere")
    harness.wait_until(C.converged, timeout=10, what="every shed routes the new backend")
    print("etcd back to converged: %.0f ms" % ((time.monotonic() - t0) * 1000), flush=True)
    assert C.metric("s1", "shed_etcd_queued") == 0
    assert C.metric("s2", "shed_etcd_reloads_total") == reloads  # resumed, no reload
    assert C.metric("s2", "shed_etcd_revision") > rev0
    assert C.metric("s2", "shed_etcd_watch_restarts_total") >= 1
    assert "reachable again" in C.procs["s2"].output()


def compacted_revision_reloads():
    # Freeze the aggregator, change the membership, compact, thaw it: its
    # watch cannot resume from its revision, it must reload and still see
    # the change (a member whose key went while it did not watch is down).
    agg = C.procs["agg"]
    reloads = C.metric("agg", "shed_etcd_reloads_total")
    # Cut its watch: stop etcd, write nothing, start etcd again after the
    # change. Simplest cut that keeps the process: SIGSTOP it across an
    # etcd restart (its stream breaks) and a compaction.
    agg.signal(signal.SIGSTOP)
    E.stop("e0")
    E.start("e0")
    harness.wait_until(E.healthy, timeout=10, what="etcd back")
    bid = "b3"
    C.backends[bid]["proc"].kill()
    harness.wait_until(lambda: not any(k.split("/")[4] == bid for k in E.keys("/shed/a/")),
                       timeout=10, what="b3's key deleted")
    for i in range(3):  # move the revision past b3's delete, then compact it all
        E.call("/v3/kv/put", {"key": etcdlib.b64("/other/%d" % i), "value": etcdlib.b64("x")})
    E.compact(E.revision())
    agg.signal(signal.SIGCONT)
    harness.wait_until(lambda: C.metric("agg", "shed_etcd_reloads_total") > reloads,
                       timeout=10, what="the aggregator reloads")
    harness.wait_until(lambda: C.members("agg").get(bid) in ("down", None), timeout=5,
                       what="b3 down at the aggregator")
    assert "compacted" in agg.output()
    harness.wait_until(C.converged, timeout=10, what="converged after the reload")


def lost_lease_rewrites_keys():
    # Every shed lease revoked behind the sheds' backs (as if etcd had
    # expired them while the sheds could not reach it): the keys go, the
    # sheds notice at their next keepalive, take new leases and write their
    # keys again; every shed routes to every backend again.
    harness.wait_until(C.converged, timeout=10, what="converged before")
    leases = E.call("/v3/lease/leases", {}).get("leases", [])
    assert leases, "no lease"
    old = {str(l["ID"]) for l in leases}
    for l in leases:
        E.call("/v3/lease/revoke", {"ID": l["ID"]})
    # A revoke deletes its keys at once; a shed may already have written
    # them again under a new lease, never under a revoked one.
    held = E.leases("/shed/a/")
    assert not set(held.values()) & old, held
    t0 = time.monotonic()
    harness.wait_until(lambda: len(E.keys("/shed/a/")) == len(C.alive()), timeout=10,
                       what="the keys written again")
    now = E.leases("/shed/a/")
    assert "0" not in now.values() and not set(now.values()) & old, now
    harness.wait_until(C.converged, timeout=10, what="converged after")
    print("keys back %.0f ms after the leases were revoked" % ((time.monotonic() - t0) * 1000),
          flush=True)
    assert "expired: writing this shed's keys again" in C.procs["s1"].output()


def restart_while_etcd_down():
    # A line shed restarted while etcd is away starts from its snapshot
    # (unconfirmed for a lease, as in the built-in mode), keeps trying etcd,
    # and loads the cell from it when it comes back.
    harness.wait_until(C.converged, timeout=10, what="converged before")
    time.sleep(2.5)  # a snapshot with every member (written every 2 s)
    E.stop("e0")
    C.procs["s2"].stop()
    C.start_shed("s2")
    assert "starting without it" in C.procs["s2"].output()
    assert C.metric("s2", "shed_etcd_up") == 0
    harness.wait_until(lambda: C.up("s2") == C.alive(), timeout=5,
                       what="s2 routes from its snapshot")
    E.start("e0")
    harness.wait_until(lambda: C.metric("s2", "shed_etcd_up") == 1, timeout=10,
                       what="s2 reaches etcd")
    assert "loaded %d keys" % len(E.keys("/shed/a/")) in C.procs["s2"].output() or \
        "loaded" in C.procs["s2"].output()
    harness.wait_until(C.converged, timeout=10, what="converged after")
    # Beyond the snapshot's lease, what keeps s2's members up is etcd.
    time.sleep(1.5)
    assert C.up("s2") == C.alive()


def teardown():
    C.stop()
    E.stop_all()


if __name__ == "__main__":
    setup()
    try:
        harness.run_tests([
            ("members_appear", members_appear),
            ("killed_backend_disappears", killed_backend_disappears),
            ("deregistered_backend_is_gone", deregistered_backend_is_gone),
            ("restarted_shed_routes_warm", restarted_shed_routes_warm),
            ("etcd_down_keeps_routing", etcd_down_keeps_routing),
            ("compacted_revision_reloads", compacted_revision_reloads),
            ("lost_lease_rewrites_keys", lost_lease_rewrites_keys),
            ("restart_while_etcd_down", restart_while_etcd_down),
        ])
    finally:
        teardown()
