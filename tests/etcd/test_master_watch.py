# SPDX-License-Identifier: ISC
"""Masters on etcd (docs/etcd.md "Masters"): a master with `membership:
{store: etcd}` builds its per-cell tables from one watch of the whole
prefix. Cell b's line shed lists no master at all (nothing is pushed to
the master from b), yet the master routes escalations into cell b, to the
same primary as b's own line shed, and sends lists to the aggregator named
in b's cell record. Escalated PUTs become hints in etcd that cell a's
aggregator brings home and deletes. The master keeps routing while etcd is
down and resyncs (resumed watch, no reload) when it returns; SIGHUP moves
a line shed's and a master's keys to another prefix, and a switch to the
built-in store is refused with a log line.
"""
import json
import os
import re
import signal
import sys
import time
import urllib.parse

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "master"))
import etcdlib  # noqa: E402
from cluster import SECRET, call, origin, query_token, token, token_cells  # noqa: E402

S = {}
PATHS = ["/v1.0/acct%d/q%d/m%d" % (i, i % 3, i) for i in range(12)]
RING = ["    kind: burrow", "    buckets: 1024", "    k: 3", "    r: 3",
        "    seeds: {account: 11, key: 22, place: 33}"]


def config(name, prefix="/shed/", store="etcd"):
    lines = ['listen: ["127.0.0.1:%d"]' % S["ports"][name], "default_service: burrow",
             "credential: %s" % SECRET, 'register_networks: ["127.0.0.0/8"]']
    if store == "etcd":
        lines += ["membership:", "  store: etcd",
                  "  endpoints: [%s]" % ", ".join(S["etcd"].endpoints),
                  "  prefix: %s" % prefix, "  timeout: 500ms"]
    if name == "m1":
        lines += ["cell: m", "roles: [master]", "cells:",
                  "  - {name: a, proximity: 10, sheds: [%s]}" % S["url"]["a1"],
                  "  - {name: b, proximity: 10}"]  # no shed: lists need b's record
    elif name == "a1":
        lines += ["cell: a", "roles: [line]", "masters: [%s]" % S["url"]["m1"],
                  "aggregator: %s" % S["url"]["agga"]]
    elif name == "agga":
        lines += ["cell: a", "roles: [aggregator]", "aggregator: %s" % S["url"]["agga"]]
    else:  # b1: no masters, nothing pushed to m1
        lines += ["cell: b", "roles: [line]", "aggregator: %s" % S["aggb"]]
    lines += ["timings:", "  heartbeat_interval: 200ms", "  lease: 1000ms",
              "  evict_after: 60s", "  drain_window: 60s", "  pin_lifetime: 30s",
              "  settle_window: 0", "  join_heartbeats: 1", "  sync_interval: 100ms",
              "services:", "  burrow:"] + RING
    return "\n".join(lines) + "\n"


def write(name, **kw):
    path = os.path.join(S["dir"], name + ".yaml")
    with open(path, "w") as f:
        f.write(config(name, **kw))
    return path


def start(name):
    p = harness.Proc([harness.binary("shed"), "-d", "-c", write(name)], name="shed-" + name,
                     log=os.path.join(S["dir"], "%s-%d.log" % (name, time.time_ns())))
    harness.wait_port("127.0.0.1", S["ports"][name], proc=p)
    S["procs"][name] = p


def start_backend(cell, i):
    port = harness.free_port()
    bid = "%s-b%d" % (cell, i)
    p = harness.Proc([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % port,
                      "--default-ttl", "0", "--announce", S["url"][cell + "1"], "--id", bid,
                      "--credential", SECRET], name="burrowd-" + bid)
    harness.wait_port("127.0.0.1", port, proc=p)
    S["backends"][bid] = {"proc": p, "url": "http://127.0.0.1:%d" % port, "cell": cell,
                          "port": port}


def master():
    try:
        st = etcdlib.get_json(S["url"]["m1"] + "/_shed/v1/master", timeout=2)
    except (OSError, AssertionError):
        return {}
    return {c["name"]: c for c in st["cells"]}


def live(cell):
    c = master().get(cell)
    return sum(s["live"] for s in c["services"]) if c else 0


def alive(cell):
    return {b for b, v in S["backends"].items() if v["cell"] == cell and v["proc"].alive()}


def loc(base, path, method="GET", **kw):
    r = call(base, method, path, **kw)
    assert r.status in (302, 307), (base, path, r)
    return r.header("location")


def primary_b(path):
    """Where b's own line shed sends a PUT of <path>: the bucket's primary
    (reads may go elsewhere while a ring settles)."""
    return origin(loc(S["url"]["b1"], path, method="PUT", body=b"x"))


def agree(paths=PATHS, timeout=5):
    """The master sends every escalated request of <paths> to the server
    b1 sends it to (b1's ring follows its table within a tick: wait)."""
    def same():
        for p in paths:
            r = call(S["url"]["m1"], "GET", p + "?shed_esc=" + token(["a"]))
            if r.status != 302 or origin(r.header("location")) != primary_b(p):
                return False
        return True
    harness.wait_until(same, timeout=timeout, what="the master and b1 agree on b's primaries")


def hints(cell):
    return S["etcd"].keys("/shed/~hints/%s/" % cell)


def test_setup():
    S["etcd"] = etcdlib.Etcd(1)
    S["dir"] = harness.tmpdir("shed-masterwatch-")
    S["ports"] = {n: harness.free_port() for n in ("m1", "a1", "agga", "b1")}
    S["url"] = {n: "http://127.0.0.1:%d" % p for n, p in S["ports"].items()}
    S["aggb"] = "http://127.0.0.1:%d" % harness.free_port()  # b's aggregator, by name only
    S["procs"], S["backends"] = {}, {}
    for n in ("m1", "a1", "agga", "b1"):
        start(n)
    for cell in ("a", "b"):
        for i in range(3):
            start_backend(cell, i)
    harness.wait_until(lambda: live("a") == 3 and live("b") == 3, timeout=15,
                       what="the master sees both cells from etcd")


def test_master_knows_b_from_etcd_only():
    """b1 has no masters: every member of cell b and its aggregator reached
    m1 through etcd (the cell record ~cells/b/<b1>)."""
    b = master()["b"]
    assert b["aggregator"] == S["aggb"], b
    rec = S["etcd"].keys("/shed/~cells/b/")
    assert list(rec.values()) == [{"aggregator": S["aggb"]}], rec
    assert etcdlib.get_json(S["url"]["b1"] + "/_shed/v1/status").get("etcd", {}).get("up") == 1
    assert harness.metric(S["url"]["m1"], "shed_etcd_up") == 1
    assert harness.metric(S["url"]["m1"], "shed_etcd_keys") >= 6


def test_escalation_goes_to_b_primary():
    """A request escalated from cell a goes to the bucket's primary in cell
    b, the same server b's own line shed sends it to; lists go to b's
    aggregator from etcd."""
    agree()
    for p in PATHS:
        got = loc(S["url"]["m1"], p + "?shed_esc=" + token(["a"]))
        cells, _ = token_cells(query_token(got))
        assert cells == ["a", "b"], cells
    got = loc(S["url"]["m1"], "/v1.0/acct1?shed_esc=" + token(["a"]))
    assert got.startswith(S["aggb"] + "/"), got


def test_line_shed_escalates_through_master_into_b():
    """Cell a's backends die: a1 escalates to m1, which sends the client to
    cell b's primary."""
    for b in sorted(alive("a")):
        S["backends"][b]["proc"].stop(signal.SIGKILL)
    harness.wait_until(lambda: live("a") == 0, timeout=10, what="the master sees a empty")
    p = PATHS[0]
    harness.wait_until(lambda: origin(loc(S["url"]["a1"], p)) == S["url"]["m1"], timeout=5,
                       what="a1 escalates to m1")
    to_master = loc(S["url"]["a1"], p)
    u = urllib.parse.urlsplit(to_master)
    got = loc(S["url"]["m1"], u.path + "?" + u.query)
    want = primary_b(p)
    assert origin(got) == want, (got, want, {k: v["url"] for k, v in S["backends"].items()})
    cells, _ = token_cells(query_token(got))
    assert cells == ["a", "b"], cells


def test_hint_round_trip_through_etcd():
    """An escalated PUT from cell a is a hint in etcd under ~hints/a/; once
    a's backends are back, a's aggregator moves the message home and
    deletes the hint."""
    p = "/v1.0/hacct/hq/hm1"
    to = loc(S["url"]["m1"], p + "?shed_esc=" + token(["a"]), method="PUT", body=b"")
    assert origin(to) in {v["url"] for v in S["backends"].values() if v["cell"] == "b"}, to
    r = harness.request("PUT", origin(to) + p + "?ttl=0", body=b"came from a")
    assert r.status == 201, r
    harness.wait_until(lambda: len(hints("a")) == 1, timeout=5, what="the hint in etcd")
    (key, h), = hints("a").items()
    assert key.startswith("/shed/~hints/a/") and key.endswith("-127.0.0.1:%d" % S["ports"]["m1"])
    assert h["path"] == p and h["url"] == origin(to) and h["service"] == "burrow", h
    assert abs(h["at"] / 1000 - time.time()) < 30, h
    for i in range(3):
        start_backend("a", i)
    harness.wait_until(lambda: not hints("a"), timeout=20, what="a's aggregator took the hint")
    home = origin(loc(S["url"]["a1"], p))
    assert home in {v["url"] for v in S["backends"].values() if v["cell"] == "a"}, home
    r = harness.request("GET", home + p)
    assert r.status == 200 and r.json()["body"] == "came from a", r
    harness.wait_until(lambda: live("a") == 3, timeout=10, what="cell a live again")


def test_master_survives_etcd_restart():
    """etcd stopped: the master keeps routing on its last view; a backend
    that joins cell b meanwhile and one that dies are in the master's table
    soon after etcd returns, through the resumed watch (no reload)."""
    e = S["etcd"]
    restarts = harness.metric(S["url"]["m1"], "shed_etcd_watch_restarts_total")
    e.stop("e0")
    harness.wait_until(lambda: harness.metric(S["url"]["m1"], "shed_etcd_up") == 0, timeout=10,
                       what="the master notices etcd is gone")
    time.sleep(2.5)  # past the master's lease: the view is refreshed, not expired
    assert live("b") == 3, master().get("b")
    agree(PATHS[:4], timeout=2)
    start_backend("b", 3)
    S["backends"]["b-b0"]["proc"].stop(signal.SIGKILL)
    e.start("e0")
    t0 = time.monotonic()
    harness.wait_until(lambda: harness.metric(S["url"]["m1"], "shed_etcd_up") == 1, timeout=20,
                       what="the master reaches etcd again")

    def synced():
        b = master().get("b")
        if not b:
            return False
        return live("b") == 3 and b["services"][0]["members"] >= 4

    harness.wait_until(synced, timeout=20, what="the master resynced cell b")
    print("master resynced %.2f s after etcd's restart" % (time.monotonic() - t0))
    assert harness.metric(S["url"]["m1"], "shed_etcd_watch_restarts_total") > restarts
    assert harness.metric(S["url"]["m1"], "shed_etcd_reloads_total") == 0
    agree()


def test_master_loads_a_big_cell_in_pages():
    """A cell c of 10 200 keys (3 services of 3400 members, written straight
    to etcd): a restarted master loads them at one revision in pages of at
    most 1000 keys and counts every member live; one deleterange of the
    cell reaches it as one watch message and nothing of c is live."""
    e = S["etcd"]
    rec = etcdlib.b64(json.dumps({"inc": 1, "state": "up", "url": "http://127.0.0.9:1",
                                  "weight": 1, "shed": "x:1"}))
    keys = ["/shed/c/svc%d/m%05d/x:1" % (s, i) for s in range(3) for i in range(3400)]
    for i in range(0, len(keys), 100):
        e.call("/v3/kv/txn", {"success": [{"request_put": {"key": etcdlib.b64(k), "value": rec}}
                                          for k in keys[i:i + 100]]})
    assert S["procs"]["m1"].stop(signal.SIGTERM) == 0
    t0 = time.monotonic()
    start("m1")

    def all_live():
        c = master().get("c")
        return c and sum(s["live"] for s in c["services"]) == len(keys)

    harness.wait_until(all_live, timeout=20, what="the master counts cell c")
    print("master restarted to 10 200 members of c live: %.2f s" % (time.monotonic() - t0))
    out = S["procs"]["m1"].output()
    assert re.search(r"etcd: loaded \d+ keys of 3 cells under /shed/ at revision \d+ \(11 pages\)",
                     out), out[-3000:]
    assert live("b") == 3
    e.call("/v3/kv/deleterange", {"key": etcdlib.b64("/shed/c/"), "range_end":
                                  etcdlib.b64("/shed/c0")})
    harness.wait_until(lambda: live("c") == 0, timeout=10, what="cell c gone at the master")
    agree()


def test_sighup_moves_prefix():
    """SIGHUP with another prefix: b1's keys leave /shed/b/ at once (its
    lease revoked) and appear under /other/b/; the master, still on
    /shed/, sees b empty until its own SIGHUP moves it to /other/."""
    e = S["etcd"]
    assert e.keys("/shed/b/")
    write("b1", prefix="/other/")
    S["procs"]["b1"].signal(signal.SIGHUP)
    harness.wait_until(lambda: not e.keys("/shed/b/") and len(e.keys("/other/b/")) == 3,
                       timeout=10, what="b1's keys moved to /other/")
    harness.wait_until(lambda: live("b") == 0, timeout=10, what="b empty under /shed/")
    write("m1", prefix="/other/")
    S["procs"]["m1"].signal(signal.SIGHUP)
    harness.wait_until(lambda: live("b") == 3, timeout=10, what="the master reads /other/")
    agree()
    out = S["procs"]["b1"].output()
    assert "etcd: reload: prefix/cell changed: client restarted" in out, out[-2000:]


def test_sighup_refuses_builtin():
    """A switch to the built-in store is refused with a log line; the keys
    stay in etcd."""
    write("b1", prefix="/other/", store="builtin")
    S["procs"]["b1"].signal(signal.SIGHUP)
    harness.wait_until(lambda: "membership store builtin refused" in S["procs"]["b1"].output(),
                       timeout=5, what="the refusal logged")
    time.sleep(1.5)
    assert len(S["etcd"].keys("/other/b/")) == 3


def test_stop():
    for n, p in S["procs"].items():
        assert p.stop(signal.SIGTERM) == 0, (n, p.output()[-2000:])
    for b in S["backends"].values():
        if b["proc"].alive():
            b["proc"].stop()
    S["etcd"].stop_all()


if __name__ == "__main__":
    harness.run_tests([(f.__name__, f) for f in (
        test_setup, test_master_knows_b_from_etcd_only, test_escalation_goes_to_b_primary,
        test_line_shed_escalates_through_master_into_b, test_hint_round_trip_through_etcd,
        test_master_survives_etcd_restart, test_master_loads_a_big_cell_in_pages,
        test_sighup_moves_prefix, test_sighup_refuses_builtin,
        test_stop)])
