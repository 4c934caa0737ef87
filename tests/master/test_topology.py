# SPDX-License-Identifier: ISC
"""Integration tests of cluster topology on loopback:

- a SIGHUP that changes a line shed's masters and peers reaches the sync
  thread: the new master and the new peer receive pushes, the dropped master
  stops getting them, and the registry is kept;
- a SIGHUP that changes a master's cells changes its view (proximity);
- a process that is both a line shed and a master (cell a) escalates in
  place: with a's backends dead a request lands on cell b's bucket primary
  in one hop, and with b dead too the chain ends in a 503, never a loop.

Cell b: line shed b1 (+ b2, a peer added by reload), two backends.
Cell a: a1 with roles [line, master], one backend. Masters m1, m2.
"""
import os
import signal
import time

import harness
from cluster import (RING, SECRET, call, get_json, origin, query_token, stop_all,
                     token_cells)

S = {}
PATHS = ["/v1.0/acct%d/q%d/m%d" % (i, i % 3, i) for i in range(12)]


def write_config(name, lines):
    path = os.path.join(S["dir"], name + ".yaml")
    with open(path, "w") as f:
        f.write("\n".join(
            ['listen: ["127.0.0.1:%d"]' % S["port"][name], "default_service: burrow",
             "credential: %s" % SECRET, 'register_networks: ["127.0.0.0/8"]'] + lines +
            ["timings:", "  heartbeat_interval: 200ms", "  lease: 1000ms", "  evict_after: 60s",
             "  drain_window: 60s", "  pin_lifetime: 30s", "  join_heartbeats: 1",
             "  sync_interval: 100ms", "services:", "  burrow:"] + RING) + "\n")
    return path


def b1_config(masters, peers):
    return write_config("b1", ["cell: b", "roles: [line]",
                               "masters: [%s]" % ", ".join(S["url"][m] for m in masters),
                               "peers: [%s]" % ", ".join(S["url"][p] for p in peers)])


def master_config(name, prox_b):
    return write_config(name, ["cell: m", "roles: [master]", "cells:",
                               "  - {name: a, proximity: 10, sheds: [%s]}" % S["url"]["a1"],
                               "  - {name: b, proximity: %d, sheds: [%s]}" % (prox_b,
                                                                           S["url"]["b1"])])


def start(name, path):
    p = harness.Proc([harness.binary("shed"), "-d", "-c", path], name="shed-" + name)
    harness.wait_port("127.0.0.1", S["port"][name], proc=p)
    S["procs"][name] = p


def start_backend(cell, i, shed):
    port = harness.free_port()
    bid = "%s-b%d" % (cell, i)
    p = harness.Proc([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % port,
                      "--default-ttl", "0", "--announce", S["url"][shed], "--id", bid,
                      "--credential", SECRET], name="burrowd-" + bid)
    harness.wait_port("127.0.0.1", port, proc=p)
    S["backends"][bid] = {"proc": p, "url": "http://127.0.0.1:%d" % port, "cell": cell}


def master_cell(m, cell):
    """(live members, proximity, age_ms) of <cell> in master <m>'s view."""
    try:
        st = get_json(S["url"][m] + "/_shed/v1/master")
    except (OSError, AssertionError):
        return None
    for c in st["cells"]:
        if c["name"] == cell:
            return sum(s["live"] for s in c["services"]), c["proximity"], c["age_ms"]
    return None


def members_up(shed):
    st = get_json(S["url"][shed] + "/_shed/v1/status")
    return {m["id"] for s in st["services"] for m in s["members"] if m["state"] == "up"}


def test_setup():
    S["dir"] = harness.tmpdir("shed-topology-")
    S["port"] = {n: harness.free_port() for n in ("a1", "b1", "b2", "m1", "m2")}
    S["url"] = {n: "http://127.0.0.1:%d" % p for n, p in S["port"].items()}
    S["procs"], S["backends"] = {}, {}
    start("m1", master_config("m1", 20))
    start("m2", master_config("m2", 20))
    # a1: line and master in one process; it pushes to no one.
    start("a1", write_config("a1", ["cell: a", "roles: [line, master]", "cells:",
                                    "  - {name: b, proximity: 10, sheds: [%s]}" % S["url"]["b1"]]))
    start("b1", b1_config(["a1", "m1"], []))
    start("b2", write_config("b2", ["cell: b", "roles: [line]"]))  # knows no peer
    start_backend("a", 0, "a1")
    start_backend("b", 0, "b1")
    start_backend("b", 1, "b1")
    harness.wait_until(lambda: members_up("b1") == {"b-b0", "b-b1"} and
                       members_up("a1") == {"a-b0"}, timeout=10, what="backends up")
    harness.wait_until(lambda: (master_cell("m1", "b") or (0,))[0] == 2 and
                       (master_cell("a1", "b") or (0,))[0] == 2, timeout=10,
                       what="m1 and a1 hear cell b")


def test_reload_moves_pushes_to_new_master_and_peer():
    assert master_cell("m2", "b") is None, "m2 heard of b before the reload"
    assert members_up("b2") == set(), "b2 knew b's members before the reload"
    gen = [s for s in get_json(S["url"]["b1"] + "/_shed/v1/status")["services"]][0]["generation"]
    b1_config(["a1", "m2"], ["b1", "b2"])
    S["procs"]["b1"].signal(signal.SIGHUP)
    t0 = time.monotonic()
    harness.wait_until(lambda: (master_cell("m2", "b") or (0,))[0] == 2, timeout=5,
                       what="m2 receives b1's pushes after the reload")
    harness.wait_until(lambda: members_up("b2") == {"b-b0", "b-b1"}, timeout=5,
                       what="the new peer b2 receives b1's members")
    took = time.monotonic() - t0
    # The registry and its generation survive the reload.
    assert members_up("b1") == {"b-b0", "b-b1"}
    gen2 = [s for s in get_json(S["url"]["b1"] + "/_shed/v1/status")["services"]][0]["generation"]
    assert gen2 == gen, (gen, gen2)
    # m1 is no longer a target: its copy of b stops being refreshed.
    age1 = master_cell("m1", "b")[2]
    time.sleep(0.4)
    age2 = master_cell("m1", "b")[2]
    assert age2 >= age1 + 300, (age1, age2)
    assert master_cell("m2", "b")[2] < 400
    # a1 (kept in the list) is still pushed to.
    assert master_cell("a1", "b")[2] < 400
    assert "cluster: syncing with 1 peer and 2 masters" in S["procs"]["b1"].output()
    print("  new master and peer served %.0f ms after SIGHUP" % (took * 1000))


def test_reload_changes_master_cells():
    assert master_cell("m2", "b")[1] == 20
    master_config("m2", 5)
    S["procs"]["m2"].signal(signal.SIGHUP)
    harness.wait_until(lambda: master_cell("m2", "b")[1] == 5, timeout=5,
                       what="m2 applies the new proximity of b")
    assert master_cell("m2", "b")[0] == 2, "pushed membership kept across the reload"


def test_line_master_escalates_in_place():
    """a1 is line and master: with a's only backend dead, a request to a1
    is redirected straight to b's bucket primary (one hop, no redirect to
    itself), and following it reaches the backend."""
    S["backends"]["a-b0"]["proc"].kill()
    b_urls = {v["url"] for v in S["backends"].values() if v["cell"] == "b"}

    def escalated():
        r = call(S["url"]["a1"], "GET", PATHS[0])
        return r.status == 302 and origin(r.header("location")) in b_urls

    harness.wait_until(escalated, timeout=5, what="a1 escalates in place")
    for p in PATHS:
        for m, code in (("GET", 302), ("PUT", 307)):
            r = call(S["url"]["a1"], m, p, body=b"x" if m == "PUT" else None)
            assert r.status == code, (p, r)
            loc = r.header("location")
            assert origin(loc) in b_urls, loc
            assert origin(loc) != S["url"]["a1"], "redirected to itself"
            want = call(S["url"]["b1"], "GET", p)
            assert origin(loc) == origin(want.header("location")), (p, loc, want)
            assert r.header("shed-bucket") == want.header("shed-bucket"), (r, want)
            cells, hops = token_cells(query_token(loc))
            assert cells == ["a", "b"] and hops == 1, (cells, hops)
    r = call(S["url"]["a1"], "PUT", PATHS[1], body=b"payload")
    r2 = harness.request("PUT", r.header("location"), body=b"payload")
    assert r2.status in (201, 204), r2
    got = harness.request("GET", origin(r.header("location")) + PATHS[1] + "?detail=body")
    assert got.status == 200 and got.body == b"payload", got


def test_line_master_never_loops():
    """b's backends die too (a1's master view of b is stale for a lease):
    a client following redirects and coming back with the token ends at a
    503 within a few steps."""
    for v in S["backends"].values():
        if v["cell"] == "b":
            v["proc"].kill()
    url = S["url"]["a1"] + PATHS[2]
    chain, status = [], None
    for _ in range(8):
        base = origin(url)
        try:
            r = call(base, "GET", url[len(base):])
        except OSError:
            chain.append(("refused", base))
            url = S["url"]["a1"] + url[len(base):]  # back to a1 with the token
            continue
        chain.append((r.status, base))
        if r.status in (302, 307):
            assert origin(r.header("location")) != base, "redirect to itself"
            url = r.header("location")
            continue
        status = r
        break
    assert status is not None and status.status == 503, chain
    assert int(status.header("retry-after")) >= 1, status
    assert len(chain) <= 4, chain
    # Once a1's view of b has aged out, a fresh request gets the 503 at once.
    harness.wait_until(lambda: call(S["url"]["a1"], "GET", PATHS[3]).status == 503,
                       timeout=5, what="a1 answers 503 with no live cell")


def test_sigterm_clean():
    stop_all(S["procs"])


harness.run_tests([
    ("setup", test_setup),
    ("reload_moves_pushes_to_new_master_and_peer", test_reload_moves_pushes_to_new_master_and_peer),
    ("reload_changes_master_cells", test_reload_changes_master_cells),
    ("line_master_escalates_in_place", test_line_master_escalates_in_place),
    ("line_master_never_loops", test_line_master_never_loops),
    ("sigterm_clean", test_sigterm_clean),
])
