# SPDX-License-Identifier: ISC
"""Integration tests of the Python client (client/python/shed_client.py)
against the deployment the C client's tests use (tests/client/test_client.py:
a line shed, an aggregator and burrowd backends on loopback), and against a
scripted fake shed for the retry discipline a real shed does not show on
demand.

Witnesses that do not trust the client under test: client-probe (the C
library) for the pins, the shed's shed_redirects_total and
shed_failed_reports_total, the kernel's socket table (/proc/net/tcp with
this process's socket inodes) for connection reuse, and plain GETs straight
to a backend for the bytes.
"""
import http.server
import os
import random
import sys
import threading
import time

import harness

sys.path.insert(0, os.path.join(harness.SOURCE_DIR, "client", "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shed_client as sc  # noqa: E402
import test_client as tc  # noqa: E402  (Cluster, Probe)

BASE = "http://burrow.service/v1.0"
ctx = {}


def cluster():
    if "main" not in ctx:
        ctx["main"] = tc.Cluster(aggregator=True, pin_lifetime="20s")
    return ctx["main"]


def client(cl, **kw):
    return sc.ShedClient(sheds=["127.0.0.1:%d" % cl.port], **kw)


def hostport(url):
    return url.split("//", 1)[1].split("/", 1)[0]


def own_connections(ports):
    """(inode, local port, remote port) of every established TCP connection
    of this process to one of <ports>, from the kernel's socket table and
    /proc/self/fd: a connection opened anew has a new inode."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            mine.add(int(link[8:-1]))
    out = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            next(f)
            for line in f:
                parts = line.split()
                lport = int(parts[1].rsplit(":", 1)[1], 16)
                rport = int(parts[2].rsplit(":", 1)[1], 16)
                inode = int(parts[9])
                if parts[3] == "01" and rport in ports and inode in mine:
                    out.add((inode, lport, rport))
    return out


def in_ring(base, member):
    st = harness.request("GET", base + "/_shed/v1/status").json()
    return any(m["id"] == member and m["in_ring"] and m["state"] == "up"
               for s in st["services"] for m in s["members"])


def test_pins_match_c_client():
    cl = cluster()
    py = client(cl)
    urls = ["%s/acct%d/q%d/m%d" % (BASE, i % 4, i % 3, i) for i in range(40)]
    for u in urls:
        r = py.put(u, b"x")
        assert r.status == 201, r
    probe = tc.Probe(["127.0.0.1:%d" % cl.port])
    ring = "b=1024;k=3;sa=000000000000000b;sk=0000000000000016"
    try:
        for u in urls:
            cr = probe.req("GET", u)
            assert cr["status"] == 200, cr
            pr = py.get(u)
            assert pr.status == 200 and pr.pinned, pr
            # The bucket both clients compute locally for the URL.
            cb = probe.cmd("bucket %s %s" % (ring, u))
            assert cb["rc"] == 0 and pr.bucket == cb["bucket"], (u, pr.bucket, cb)
            assert pr.url.split("?")[0] == cr["final_url"].split("?")[0], (pr.url, cr)
        cpins = {(p["bucket"], p["host"]) for p in probe.cmd("pins")["pins"]}
    finally:
        probe.close()
    ppins = py.pins()
    assert {(p["bucket"], p["host"]) for p in ppins} == cpins, (ppins, cpins)
    assert py.ring("burrow") == sc.RingConfig(1024, 3, 11, 22), py.ring("burrow")
    for p in ppins:
        assert 5 < p["expires_in"] <= 20, p  # Shed-Pin-TTL 20, learned seconds ago
        assert hostport(p["host"]) in cl.backends, p
    py.close()


def test_reuses_one_connection_per_host():
    cl = cluster()
    py = client(cl)
    urls = ["%s/reuse/q/m%d" % (BASE, i) for i in range(30)]
    for u in urls:
        assert py.put(u, b"r").status == 201
    for u in urls:
        assert py.get(u).pinned  # every bucket of the account pinned now
    ports = {int(h.rsplit(":", 1)[1]) for h in cl.backends}
    served = sum(cl.metric_sum("burrowd_responses_total", "http://" + h) for h in cl.backends)
    redirects = cl.redirects()
    before_conns = py.metrics["connections"]
    before = own_connections(ports)
    assert 1 <= len(before) <= len(ports), before
    for i in range(500):
        r = py.get(urls[i % len(urls)])
        assert r.status == 200 and r.pinned and r.body == b"r", r
    after = own_connections(ports)
    assert after == before, "500 pinned GETs: connections %r, then %r" % (before, after)
    assert py.metrics["connections"] == before_conns
    assert cl.redirects() == redirects, "pinned requests never reach the shed"
    served_after = sum(cl.metric_sum("burrowd_responses_total", "http://" + h)
                       for h in cl.backends)
    assert served_after - served >= 500, (served, served_after)
    # One pooled keep-alive connection per final host: the account's 3
    # buckets are on at most 3 hosts.
    idle = {o: len(c) for o, c in py._idle.items() if o[2] in ports}
    assert idle and all(n == 1 for n in idle.values()), idle
    py.close()


def body_roundtrip(cl, code):
    py = client(cl)
    rnd = random.Random(code)
    bodies = [b"", b"\x00", bytes(range(256)), rnd.randbytes(1023), rnd.randbytes(1025),
              rnd.randbytes(100 * 1024), b"\xff\xfe invalid utf-8 \xc3\x28"]
    for n, body in enumerate(bodies):
        url = "%s/bytes%d-%d/q/m" % (BASE, code, n)  # an account each: no pin yet
        before = cl.redirects(code=str(code))
        r = py.put(url, body)
        assert r.status == 201 and r.hops == 1, (n, r)
        assert cl.redirects(code=str(code)) == before + 1, "one %d through the shed" % code
        # Straight from the backend, bypassing the client under test.
        got = harness.request("GET", "http://%s/v1.0/bytes%d-%d/q/m?detail=body"
                              % (hostport(r.url), code, n))
        assert got.status == 200 and got.body == body, (n, len(body), got.status, len(got.body))
        # And back through the client (pinned now).
        r = py.get(url)
        assert r.status == 200 and r.pinned and r.body == body, (n, r)
        # In a JSON list the body is "body" or "body_base64url".
        items = list(py.list_all("%s/bytes%d-%d/q" % (BASE, code, n)))
        assert len(items) == 1 and sc.body_bytes(items[0]) == body, (n, items)
    py.close()


def test_bodies_round_trip_through_307():
    body_roundtrip(cluster(), 307)


def test_bodies_round_trip_through_302():
    cl = tc.Cluster(code_other=302, aggregator=True)
    try:
        body_roundtrip(cl, 302)
    finally:
        for p in [cl.shed, cl.agg] + list(cl.backends.values()):
            p.stop()


def test_delete_and_list():
    cl = cluster()
    py = client(cl)
    ids = ["d%02d" % i for i in range(12)]
    for i in ids:
        assert py.put("%s/lister/q/%s" % (BASE, i), i.encode()).status == 201
    page = py.list(BASE + "/lister/q", limit=5, detail="id")
    assert page.status == 200 and len(page.json()) == 5, page
    assert hostport(page.url) == hostport(cl.agg_url), "lists go to the aggregator"
    assert sorted(it["id"] for it in py.list_all(BASE + "/lister/q", limit=5)) == ids
    assert py.delete("%s/lister/q/d00" % BASE).status == 204
    r = py.get("%s/lister/q/d00" % BASE)
    assert r.status == 404 and r.attempts == 2, r  # asked once more with Shed-Lookup
    assert py.metrics["lookups"] == 1, py.metrics
    assert sorted(it["id"] for it in py.list_all(BASE + "/lister/q", limit=5)) == ids[1:]
    py.close()


def test_threads_share_one_client():
    cl = cluster()
    py = client(cl)
    errors = []

    def work(t):
        try:
            for i in range(40):
                u = "%s/threads/q/t%d-%d" % (BASE, t, i)
                body = b"%d/%d" % (t, i)
                assert py.put(u, body).status == 201
                r = py.get(u)
                assert r.status == 200 and r.body == body, r
        except Exception as e:  # reported below, with the thread
            errors.append((t, repr(e)))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    m = py.metrics
    assert m["requests"] == 480, m
    # The account's 3 buckets: after the first asks, everything is pinned,
    # and at most one connection per thread per host was ever opened.
    assert m["pinned"] >= 480 - 6 * 3 * 2, m
    assert m["connections"] <= 6 * (len(cl.backends) + 1), m
    # The shed: a malformed id is its 400, not a client exception.
    r = py.get(BASE + "/threads/q/%2e")
    assert r.status == 400 and r.bucket is None, r
    py.close()


def test_stale_keepalive_is_replaced():
    # burrowd closes keep-alive connections idle for 1 s: the next pinned
    # request finds its pooled connection closed and sends again on a new
    # one, without counting a failure or dropping the pin.
    d = harness.tmpdir("py-stale-")
    port = harness.free_port()
    conf = os.path.join(d, "shed.yaml")
    with open(conf, "w") as f:
        f.write(tc.shed_config(port, pin_lifetime="30s"))
    procs = [harness.Proc([harness.binary("shed"), "-c", conf], name="shed")]
    try:
        harness.wait_port("127.0.0.1", port, proc=procs[0])
        bport = harness.free_port()
        procs.append(harness.Proc([harness.binary("burrowd"), "--listen",
                                   "127.0.0.1:%d" % bport, "--idle-timeout", "1s", "--announce",
                                   "http://127.0.0.1:%d" % port, "--id", "s0", "--credential",
                                   tc.SECRET], name="burrowd-s0"))
        harness.wait_port("127.0.0.1", bport, proc=procs[1])
        harness.wait_until(lambda: in_ring("http://127.0.0.1:%d" % port, "s0"), timeout=15,
                           what="s0 in the ring")
        py = sc.ShedClient(sheds=["127.0.0.1:%d" % port])
        url = BASE + "/stale/q/m"
        assert py.put(url, b"s").status == 201
        assert py.get(url).pinned
        conns = py.metrics["connections"]
        time.sleep(1.6)
        r = py.get(url)
        assert r.status == 200 and r.pinned and r.attempts == 1 and r.body == b"s", r
        assert py.metrics["connections"] == conns + 1, py.metrics
        assert py.metrics["failures"] == 0 and py.metrics["pins_dropped"] == 0, py.metrics
        py.close()
    finally:
        for pr in procs:
            pr.stop()


class FakeShed:
    """A shed and a backend in one scripted server pair: the shed redirects
    every message to the backend with pin headers (before reading a body
    offered with Expect: 100-continue, as a real shed does); the backend
    answers 404 to GET (the message "moved") and 201 to PUT. Every request
    is recorded with its Shed-Lookup and Shed-Failed headers."""

    RING = "b=1024; k=3; sa=000000000000000b; sk=0000000000000016"

    def __init__(self):
        self.seen = []
        self.expects = 0
        self.shed_body_bytes = 0
        self.backend_bodies = []
        fake = self
        cfg = sc.parse_ring(self.RING)

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, code, headers=(), body=b""):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def handle_one(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile_body = self.rfile.read(n) if n else b""
                port = self.server.server_address[1]
                fake.seen.append((port, self.command, self.path,
                                  self.headers.get("Shed-Lookup"),
                                  self.headers.get("Shed-Failed")))
                if port == fake.shed_port:
                    if "/want/" in self.path:  # a shed that answers itself, body read
                        return self.reply(200, [("Content-Type", "application/octet-stream")],
                                          self.rfile_body)
                    if self.headers.get("Shed-Lookup") == "1":
                        return self.reply(200, [("Content-Type", "application/octet-stream")],
                                          b"found by lookup")
                    return self.shed_redirect()
                if self.command == "GET":
                    return self.reply(404)
                fake.backend_bodies.append(self.rfile_body)
                return self.reply(201)

            def shed_redirect(self):
                a, q, m = sc.parse_message_path(self.path.split("?")[0])
                target = fake.dead_port if a == b"dead" else fake.backend_port
                return self.reply(307, [
                    ("Location", "http://127.0.0.1:%d%s" % (target, self.path)),
                    ("Shed-Bucket", str(sc.message_bucket(cfg, a, q, m))),
                    ("Shed-Generation", "1"), ("Shed-Pin-TTL", "30"),
                    ("Shed-Ring", FakeShed.RING)])

            def handle_expect_100(self):
                if self.server.server_address[1] != fake.shed_port or "/want/" in self.path:
                    return super().handle_expect_100()  # "100 Continue": send the body
                # As a shed does: the redirect at once, before any body.
                fake.expects += 1
                self.shed_redirect()
                self.connection.settimeout(2)
                try:
                    fake.shed_body_bytes += len(self.rfile.read(1))  # b"" when the client closes
                except OSError:
                    fake.shed_body_bytes += 1  # neither body nor close: wrong too
                self.close_connection = True
                return False

            do_GET = do_PUT = do_POST = do_DELETE = handle_one

        self.servers = []
        for _ in range(2):
            srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
            srv.daemon_threads = True
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self.servers.append(srv)
        self.shed_port, self.backend_port = [s.server_address[1] for s in self.servers]
        self.dead_port = harness.free_port()

    def close(self):
        for s in self.servers:
            s.shutdown()
            s.server_close()


def test_404_lookup_and_shed_failed_on_the_wire():
    fk = FakeShed()
    try:
        py = sc.ShedClient(sheds=["127.0.0.1:%d" % fk.shed_port], retries=2, backoff=(0.2, 1))
        url = BASE + "/lk/q/m"
        assert py.put(url, b"v").status == 201
        assert len(py.pins()) == 1
        n0 = len(fk.seen)
        t0 = time.monotonic()
        r = py.get(url)
        took = time.monotonic() - t0
        assert r.status == 200 and r.body == b"found by lookup" and r.attempts == 2, r
        assert took < 0.1, "a lookup is asked at once, not after a backoff (%.3fs)" % took
        seen = fk.seen[n0:]
        assert [(p, lk) for p, _, _, lk, _ in seen] == [
            (fk.backend_port, None), (fk.shed_port, "1")], seen
        assert py.pins() == [], "the pin that gave a 404 is dropped"
        assert py.metrics["lookups"] == 1
        # A PUT's 404 would be final; a PUT is never looked up. Through the
        # redirect again (no pin) a GET's 404 is looked up too.
        n0 = len(fk.seen)
        r = py.get(BASE + "/lk/q/other")
        assert r.status == 200 and r.hops == 0 and r.attempts == 2, r
        assert [lk for _, _, _, lk, _ in fk.seen[n0:]] == [None, None, "1"], fk.seen[n0:]
        # A body over 1024 bytes is offered to the shed with Expect:
        # 100-continue; the shed redirects at once and never receives it.
        big = bytes(range(256)) * 20
        r = py.put(BASE + "/big/q/m", big)
        assert r.status == 201 and r.hops == 1, r
        assert fk.expects == 1 and fk.shed_body_bytes == 0, (fk.expects, fk.shed_body_bytes)
        assert fk.backend_bodies[-1] == big
        # A server that answers "100 Continue" gets the body.
        r = py.request("PUT", BASE + "/want/q/m", big)
        assert r.status == 200 and r.body == big and r.hops == 0, r
        # A backend that does not answer is named to the shed next time.
        n0 = len(fk.seen)
        try:
            py.get(BASE + "/dead/q/m")
            raise AssertionError("want ShedError")
        except sc.ShedError:
            pass
        failed = [f for p, _, _, _, f in fk.seen[n0:] if p == fk.shed_port]
        assert failed[0] is None and failed[1] == "127.0.0.1:%d" % fk.dead_port, fk.seen[n0:]
        py.close()
    finally:
        fk.close()


def test_survives_backend_changes():
    cl = tc.Cluster(aggregator=True, pin_lifetime="2s")
    try:
        py = client(cl, retries=10, backoff=(0.05, 0.5))
        urls = ["%s/change%d/q/m%d" % (BASE, i % 5, i) for i in range(60)]
        where = {}
        for u in urls:
            r = py.put(u, u.encode())
            assert r.status == 201, r
            where[u] = hostport(r.url)
        # A backend dies: its requests go through the shed, naming it.
        victim_url = urls[0]
        victim = hostport(py.get(victim_url).url)
        reports = cl.metric_sum("shed_failed_reports_total")
        cl.backends[victim].kill()
        r = py.put(victim_url, b"after")
        assert r.status in (201, 204) and hostport(r.url) != victim and r.attempts >= 2, r
        assert cl.metric_sum("shed_failed_reports_total") > reports
        assert all(hostport(p["host"]) != victim for p in py.pins()), py.pins()
        assert py.get(victim_url).body == b"after"
        # A backend joins: buckets move; once the pins expire, every
        # message is still read back (from its new owner, by a lookup, or
        # after the handoff moved it).
        p = harness.free_port()
        joined = harness.Proc([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % p,
                               "--default-ttl", "0", "--announce", cl.url, "--announce",
                               cl.agg_url, "--id", "b9", "--credential", tc.SECRET],
                              name="burrowd-b9")
        harness.wait_port("127.0.0.1", p, proc=joined)
        cl.backends["127.0.0.1:%d" % p] = joined
        harness.wait_until(lambda: in_ring(cl.url, "b9"), timeout=15, what="b9 in the ring")
        time.sleep(2.2)  # every pin learned before the join has expired
        # burrowd keeps messages in memory only: what the victim held is
        # gone, everything else must be found.
        kept = [u for u in urls[1:] if where[u] != victim]
        assert len(kept) >= 20, len(kept)
        moved = 0
        for u in kept:
            r = py.get(u)
            assert r.status == 200 and r.body == u.encode(), (u, r)
            moved += hostport(r.url) == "127.0.0.1:%d" % p
        # The ring is a pure function of the member ids, so which buckets
        # b9 takes is fixed: some of these messages were on them, read
        # either from b9 (after the handoff) or by a lookup.
        assert moved + py.metrics["lookups"] >= 1, (moved, py.metrics)
        # And the pins the two clients learn on the new ring agree again.
        fresh = client(cl)
        probe = tc.Probe(["127.0.0.1:%d" % cl.port])
        try:
            for u in kept[:20]:
                pr, cr = fresh.get(u), probe.req("GET", u)
                assert pr.status == 200 and cr["status"] == 200, (pr, cr)
            cpins = {(x["bucket"], x["host"]) for x in probe.cmd("pins")["pins"]}
        finally:
            probe.close()
        assert {(x["bucket"], x["host"]) for x in fresh.pins()} == cpins
        print("  backend change: %d of %d messages read from the new backend, lookups %d,"
              " retries %d" % (moved, len(kept), py.metrics["lookups"], py.metrics["retries"]))
        py.close()
        fresh.close()
    finally:
        for pr in [cl.shed, cl.agg] + list(cl.backends.values()):
            pr.stop()


if __name__ == "__main__":
    harness.run_tests([
        ("pins_match_c_client", test_pins_match_c_client),
        ("reuses_one_connection_per_host", test_reuses_one_connection_per_host),
        ("bodies_round_trip_through_307", test_bodies_round_trip_through_307),
        ("bodies_round_trip_through_302", test_bodies_round_trip_through_302),
        ("delete_and_list", test_delete_and_list),
        ("threads_share_one_client", test_threads_share_one_client),
        ("stale_keepalive_is_replaced", test_stale_keepalive_is_replaced),
        ("404_lookup_and_shed_failed_on_the_wire", test_404_lookup_and_shed_failed_on_the_wire),
        ("survives_backend_changes", test_survives_backend_changes),
    ])
