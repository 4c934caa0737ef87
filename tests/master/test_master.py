# SPDX-License-Identifier: ISC
"""Integration tests of master sheds and cross-cell escalation on loopback:
two cells (a, b) of two line sheds each, two masters, burrowd backends that
heartbeat to one line shed only. Covers peer convergence, token tampering,
client failure reports, warm restart from the snapshot, escalation straight
to the bucket's primary in the other cell, lists to the other cell's
aggregator, and stale masters that can never make a request loop.
"""
import json
import signal
import socket
import threading
import time
import urllib.parse

import harness
from cluster import (SECRET, Cluster, call, origin, query_token, stop_all, token,
                     token_cells)

C = {}
PATHS = ["/v1.0/acct%d/q%d/m%d" % (i, i % 3, i) for i in range(24)]


def loc(base, path, **kw):
    r = call(base, "GET", path, **kw)
    assert r.status == 302, (base, path, r)
    return r.header("location")


def test_setup():
    C["c"] = Cluster()


def test_peers_converge():
    """Each backend heartbeats to one line shed; both sheds of the cell
    route every key identically, including to backends they never heard."""
    c = C["c"]
    for cell in ("a", "b"):
        seen = set()
        for p in PATHS:
            l1 = loc(c.url[cell + "1"], p)
            l2 = loc(c.url[cell + "2"], p)
            assert l1 == l2, (cell, p, l1, l2)
            seen.add(origin(l1))
        own = {v["url"] for v in c.backends.values() if v["cell"] == cell}
        assert seen <= own and len(seen) >= 2, (seen, own)
        # Both sheds send keys to backends that heartbeat only to the other one.
        only2 = {v["url"] for v in c.backends.values() if v["shed"] == cell + "2"}
        assert seen & only2, "a%s1 never routed to a backend it did not hear itself" % cell


def test_frozen_peer_stalls_nothing():
    """a2 frozen (accepts connections, never answers): a1 keeps answering at
    once and keeps pushing to the masters on time."""
    c = C["c"]
    c.procs["a2"].signal(signal.SIGSTOP)
    try:
        worst, ages = 0.0, []
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            t = time.monotonic()
            loc(c.url["a1"], PATHS[0])
            worst = max(worst, time.monotonic() - t)
            st = harness.request("GET", c.url["m1"] + "/_shed/v1/master").json()
            ages += [cell["age_ms"] for cell in st["cells"] if cell["name"] == "a"]
            time.sleep(0.05)
    finally:
        c.procs["a2"].signal(signal.SIGCONT)
    assert worst < 0.2, worst
    # a2 stopped pushing, a1 did not: the master heard from cell a recently.
    assert max(ages) < 500, ages
    harness.wait_until(c.converged, timeout=10, what="a2 back")


def test_token_tampering():
    c = C["c"]
    m = c.url["m1"]
    p = PATHS[0]
    good = token(["a"])
    r = call(m, "GET", p + "?shed_esc=" + good)
    assert r.status == 302, r
    assert origin(r.header("location")) in {v["url"] for v in c.backends.values()
                                            if v["cell"] == "b"}, r
    assert r.header("shed-bucket") is not None
    cells, hops = token_cells(query_token(r.header("location")))
    assert cells == ["a", "b"] and hops == 1, (cells, hops)
    cases = {
        "no token": (p, b"escalation token required\n"),
        "garbage": (p + "?shed_esc=%21%21%21", b"malformed escalation token\n"),
        "forged key": (p + "?shed_esc=" + token(["a"], key="not-the-secret"),
                       b"escalation token signature mismatch\n"),
        "expired": (p + "?shed_esc=" + token(["a"], expiry=int(time.time()) - 5),
                    b"escalation token expired\n"),
        "other service": (p + "?shed_esc=" + token(["a"], service="storage"),
                          b"escalation token is for another service\n"),
    }
    # Every single character altered: always 400, never a redirect.
    for i in range(len(good)):
        ch = "A" if good[i] != "A" else "B"
        bad = good[:i] + ch + good[i + 1:]
        r = call(m, "GET", p + "?shed_esc=" + bad)
        assert r.status == 400, (i, r)
    for name, (path, body) in cases.items():
        r = call(m, "GET", path)
        assert r.status == 400 and r.body == body, (name, r)
    # A line shed refuses a tampered token too (when it has to escalate it is
    # checked; with live local servers the request is simply served here).
    r = call(c.url["a1"], "GET", p + "?shed_esc=" + good[:-2] + "AA")
    assert r.status in (302, 400), r
    # Too many hops: the master answers 503 with a Retry-After.
    r = call(m, "GET", p + "?shed_esc=" + token(["a"], hops=9))
    assert r.status == 503 and int(r.header("retry-after")) >= 1, r
    # Sync endpoints need the credential.
    r = harness.request("POST", c.url["m1"] + "/_shed/v1/master/push", body=b"{}")
    assert r.status == 401, r
    r = harness.request("POST", c.url["a1"] + "/_shed/v1/sync", body=b"{}",
                        headers={"Authorization": "Bearer " + "x" * len("master-test-secret")})
    assert r.status == 401, r


def test_network_limits():
    """Every size read from the network has a maximum and a clear 4xx past it."""
    c = C["c"]
    auth = {"Authorization": "Bearer " + SECRET}
    # An escalation token far over PROTO_TOKEN_ENC_MAX: 400, never a redirect.
    r = call(c.url["m1"], "GET", PATHS[0] + "?shed_esc=" + "A" * 4000)
    assert r.status in (400, 414), r
    # A sync or push body announced over PROTO_SYNC_BODY_MAX (8 MiB): 413
    # before a byte of it is read.
    for name, path in (("m1", "/_shed/v1/master/push"), ("a1", "/_shed/v1/sync")):
        u = urllib.parse.urlsplit(c.url[name])
        s = socket.create_connection((u.hostname, u.port), timeout=5)
        try:
            s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                      b"Content-Length: %d\r\n\r\n"
                      % (path.encode(), SECRET.encode(), (8 << 20) + 1))
            head = s.recv(4096)
        finally:
            s.close()
        assert head.startswith(b"HTTP/1.1 413"), (name, head)
    r = harness.request("POST", c.url["m1"] + "/_shed/v1/master/push", body=b"{nope",
                        headers=auth)
    assert r.status == 400, r
    # A well-formed push that names no cell: 400, not a silent 200.
    nocell = json.dumps({"v": 1, "kind": "full", "origin": "http://127.0.0.1:1", "epoch": 1,
                         "since": 0, "seq": 1, "lease_ms": 1000, "entries": []}).encode()
    r = harness.request("POST", c.url["m1"] + "/_shed/v1/master/push", body=nocell,
                        headers=auth)
    assert r.status == 400 and r.body == b"push names no cell\n", r


def test_failure_reports_are_verified():
    c = C["c"]
    p = PATHS[1]
    target = origin(loc(c.url["a1"], p))
    hp = target.split("//")[1]
    probes0 = harness.metric(c.url["a1"], "shed_failure_probes_total")
    # Forged reports about a healthy member, from several addresses: each
    # reporter's own request goes around it, everyone else's stays, and the
    # probe finds it alive (no traffic moved, member never down).
    for src in ("127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"):
        l = loc(c.url["a1"], p, headers={"Shed-Failed": hp}, source=src)
        assert origin(l) != target, "the reporter's own request avoids what it reported"
        assert origin(loc(c.url["a1"], p, source="127.0.0.9")) == target
    time.sleep(0.5)
    assert origin(loc(c.url["a1"], p)) == target
    bid = [b for b, v in c.backends.items() if v["url"] == target][0]
    assert c.member_state("a1", bid) == "up"
    # De-duplicated: one probe (at most two if a verdict came between).
    probes = harness.metric(c.url["a1"], "shed_failure_probes_total") - probes0
    assert 1 <= probes <= 2, probes
    # A client over its report rate is dropped, counted.
    lim0 = harness.metric(c.url["a1"], "shed_failure_reports_limited_total")
    for _ in range(15):
        loc(c.url["a1"], p, headers={"Shed-Failed": hp}, source="127.0.0.8")
    assert harness.metric(c.url["a1"], "shed_failure_reports_limited_total") >= lim0 + 4
    # Reports naming no member's host:port are counted and ignored: they
    # never take one of the shed's bounded report slots.
    before = harness.metric(c.url["a1"], "shed_failed_reports_unknown_total")
    for i, src in enumerate(("127.0.0.6", "127.0.0.7") * 2):
        l = loc(c.url["a1"], p, headers={"Shed-Failed": "10.99.0.%d:80" % (i % 2)}, source=src)
        assert origin(l) == target, l
    assert harness.metric(c.url["a1"], "shed_failed_reports_unknown_total") == before + 4
    # Now it really dies: one honest report moves that client at once, the
    # probe's verdict moves everyone within milliseconds, and the peer a2
    # within a sync interval, long before the lease runs out.
    # (A report within 250 ms of an alive verdict waits for that pause to
    # end: start clean, after the forged reports' last verdict.)
    time.sleep(0.3)
    c.backends[bid]["proc"].kill()
    time.sleep(0.05)
    t0 = time.monotonic()
    l1 = loc(c.url["a1"], p, headers={"Shed-Failed": hp}, source="127.0.0.4")
    assert origin(l1) != target and origin(l1).startswith("http://127.0.0.1:"), l1
    harness.wait_until(lambda: origin(loc(c.url["a1"], p, source="127.0.0.9")) != target,
                       timeout=1, step=0.002, what="the probe's verdict on a1")
    t_own = time.monotonic() - t0
    harness.wait_until(lambda: origin(loc(c.url["a2"], p, source="127.0.0.9")) != target,
                       timeout=2, step=0.005, what="the verdict on the peer a2")
    t_peer = time.monotonic() - t0
    print("     failover: reporter at once, a1 after %.1f ms, peer a2 after %.1f ms"
          % (1000 * t_own, 1000 * t_peer))
    assert t_own < 0.2, t_own
    assert origin(loc(c.url["a1"], p)) == origin(l1)
    assert c.member_state("a1", bid) == "down"


def test_restart_from_snapshot():
    """a2 restarts while nothing can reach it (backends and its peer
    frozen): it routes from its snapshot before any new heartbeat."""
    c = C["c"]
    # The previous test killed a backend: let a2 agree with the cell first,
    # so "before" is the converged answer the snapshot must reproduce.
    harness.wait_until(c.converged, timeout=10, what="cell a converged before the restart")
    before = {p: loc(c.url["a2"], p) for p in PATHS}
    frozen = [v["proc"] for v in c.backends.values() if v["cell"] == "a" and v["proc"].alive()]
    frozen.append(c.procs["a1"])
    assert c.procs["a2"].stop(signal.SIGTERM) == 0
    for p in frozen:
        p.signal(signal.SIGSTOP)
    try:
        c.start_shed("a2")
        after = {p: loc(c.url["a2"], p) for p in PATHS}
    finally:
        for p in frozen:
            p.signal(signal.SIGCONT)
    assert after == before
    assert "warm start" in c.procs["a2"].output()
    harness.wait_until(c.converged, timeout=10, what="cell a converged again")


def timed_call(base, method, path, out, body=None):
    t0 = time.monotonic()
    out["r"] = call(base, method, path, body=body, timeout=10)
    out["s"] = time.monotonic() - t0


def test_escalation_waits_for_the_masters():
    """a's last backends die while both masters are frozen: a1 cannot
    escalate until a master has acknowledged that a is empty. It holds the
    request (for at most 2 s, then 503 with Retry-After) instead of
    answering 503 at once, and answers with the master's redirect as soon
    as the acknowledgement arrives. A shed stopped meanwhile (a2) answers
    what it holds and exits 0."""
    c = C["c"]
    frozen = [c.procs["m1"], c.procs["m2"]]
    for p in frozen:
        p.signal(signal.SIGSTOP)
    try:
        for b, v in c.backends.items():
            if v["cell"] == "a" and v["proc"].alive():
                v["proc"].kill()
        for shed in ("a1", "a2"):
            harness.wait_until(lambda: not c.members_up(shed), timeout=5,
                               what="%s to see its cell empty" % shed)
        held = {}
        t = threading.Thread(target=timed_call, args=(c.url["a1"], "GET", PATHS[2], held))
        t.start()
        t.join(5)
        assert not t.is_alive() and held["r"].status == 503, held
        assert held["r"].header("retry-after"), held
        assert 1.8 <= held["s"] <= 3.5, "held %.2fs, not about 2 s" % held["s"]
        waiting = {}
        t = threading.Thread(target=timed_call,
                             args=(c.url["a1"], "PUT", PATHS[2], waiting, b"payload"))
        t.start()
        # A shed that stops answers what it holds before MHD stops.
        at_stop = {}
        t2 = threading.Thread(target=timed_call, args=(c.url["a2"], "GET", PATHS[2], at_stop))
        t2.start()
        time.sleep(0.5)
        assert t.is_alive(), "answered before any master acknowledged: %r" % waiting
        assert t2.is_alive(), "a2 answered before any master acknowledged: %r" % at_stop
        assert c.procs["a2"].stop(signal.SIGTERM) == 0
        t2.join(5)
        assert not t2.is_alive() and at_stop["r"].status == 503, at_stop
    finally:
        for p in frozen:
            p.signal(signal.SIGCONT)
    c.start_shed("a2")
    t.join(5)
    assert not t.is_alive(), "still held after the masters came back"
    r = waiting["r"]
    assert r.status == 307 and origin(r.header("location")) in (c.url["m1"], c.url["m2"]), r
    print("     held %.2fs, answered %.2fs after the masters thawed" % (
        held["s"], waiting["s"] - 0.5))


def test_escalation_reaches_b_primary():
    c = C["c"]
    for b, v in c.backends.items():
        if v["cell"] == "a" and v["proc"].alive():
            v["proc"].kill()
    masters = {c.url["m1"], c.url["m2"]}

    def escalates():
        for shed in ("a1", "a2"):
            r = call(c.url[shed], "PUT", PATHS[2], body=b"x")
            if r.status != 307 or origin(r.header("location")) not in masters:
                return False
        return True

    harness.wait_until(escalates, timeout=5, what="a1 escalates to a master")
    used = set()
    for p in PATHS:
        for shed in ("a1", "a2"):
            r = call(c.url[shed], "PUT", p, body=b"hello")
            assert r.status == 307, r
            ml = r.header("location")
            assert origin(ml) in masters, ml
            used.add(origin(ml))
            cells, hops = token_cells(query_token(ml))
            assert cells == ["a"] and hops == 1, (cells, hops)
            # One master hop, straight to the bucket's primary in b.
            u = ml[len(origin(ml)):]
            r2 = call(origin(ml), "PUT", u, body=b"hello")
            assert r2.status == 307, r2
            want = call(c.url["b1"], "PUT", p, body=b"hello").header("location")
            assert origin(r2.header("location")) == origin(want), (p, r2, want)
            assert r2.header("shed-bucket") == call(c.url["b1"], "GET", p).header("shed-bucket")
    assert used == masters, "escalations spread over both masters"
    # The message really lands on b's primary.
    r = call(c.url["a1"], "PUT", PATHS[3], body=b"payload")
    r2 = call(origin(r.header("location")), "PUT", r.header("location")[len(
        origin(r.header("location"))):], body=b"payload")
    final = r2.header("location")
    r3 = harness.request("PUT", final, body=b"payload")
    assert r3.status in (201, 204), r3
    got = harness.request("GET", origin(final) + PATHS[3] + "?detail=body")
    assert got.status == 200 and got.body == b"payload", got


def test_lists_escalate_to_other_aggregator():
    c = C["c"]
    r = call(c.url["a2"], "GET", "/v1.0/acct1/q1")
    assert r.status == 302, r
    r2 = call(origin(r.header("location")), "GET",
              r.header("location")[len(origin(r.header("location"))):])
    assert r2.status == 302 and r2.header("location").startswith(c.agg["b"] + "/v1.0/acct1/q1"), r2


def test_stale_masters_no_loop():
    """b's line sheds and backends die together: the masters still believe
    b has servers for up to one lease. A client of a follows redirects (and
    reports failures like the client library) and must end at a 503 within
    a few bounded steps: never a loop."""
    c = C["c"]
    for name in ("b1", "b2"):
        c.procs[name].kill()
    for b, v in c.backends.items():
        if v["cell"] == "b":
            v["proc"].kill()
    t_kill = time.monotonic()
    url = c.url["a1"] + PATHS[4]
    failed = None
    chain = []
    status = None
    for _ in range(8):
        hdrs = {"Shed-Failed": failed} if failed else {}
        base = origin(url)
        try:
            r = call(base, "GET", url[len(base):], headers=hdrs)
        except OSError:
            # A dead backend: go back to our own line shed with the token.
            chain.append(("refused", base))
            failed = base.split("//")[1]
            url = c.url["a1"] + url[len(base):]
            continue
        chain.append((r.status, base))
        if r.status in (302, 307):
            url = r.header("location")
            continue
        status = r
        break
    assert status is not None and status.status == 503, chain
    assert int(status.header("retry-after")) >= 1, status
    assert len(chain) <= 6, chain
    stale = any(s == "refused" for s, _ in chain)
    print("  chain: %s (stale master used: %s, %.2fs after the kill)"
          % (" -> ".join(str(s) for s, _ in chain), stale, time.monotonic() - t_kill))
    # Once the masters' view has aged out, a 503 comes straight from a master.
    time.sleep(1.2)
    r = call(c.url["a1"], "GET", PATHS[5])
    r2 = call(origin(r.header("location")), "GET",
              r.header("location")[len(origin(r.header("location"))):])
    assert r2.status == 503 and r2.header("retry-after"), r2


def test_sigterm_clean():
    """Every shed still running exits 0 on SIGTERM (under ASan: no leaks)."""
    stop_all(C["c"].procs)


harness.run_tests([
    ("setup", test_setup),
    ("peers_converge", test_peers_converge),
    ("frozen_peer_stalls_nothing", test_frozen_peer_stalls_nothing),
    ("token_tampering", test_token_tampering),
    ("network_limits", test_network_limits),
    ("failure_reports_are_verified", test_failure_reports_are_verified),
    ("restart_from_snapshot", test_restart_from_snapshot),
    ("escalation_waits_for_the_masters", test_escalation_waits_for_the_masters),
    ("escalation_reaches_b_primary", test_escalation_reaches_b_primary),
    ("lists_escalate_to_other_aggregator", test_lists_escalate_to_other_aggregator),
    ("stale_masters_no_loop", test_stale_masters_no_loop),
    ("sigterm_clean", test_sigterm_clean),
])
