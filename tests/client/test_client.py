# SPDX-License-Identifier: ISC
"""Integration tests of the client library and shedc against a real line
shed and three burrowd backends on loopback.

The library's state (pins) lives in one process, so most tests drive a
long-running client-probe (tests/client/client_probe.c) line by line while
the test kills backends, stops the shed or waits for pins to expire. The
shed's own /metrics counters are the independent witness: a request that
went straight to a pinned backend never shows up in shed_redirects_total.
"""
import http.server
import json
import os
import re
import subprocess
import threading
import time
import urllib.request

import harness

SECRET = "client-test-secret"
PROBE = os.path.join(harness.BUILD_DIR, "tests", "client", "client-probe")
BASE = "http://burrow.service/v1.0"


def shed_config(port, role="line", aggregator=None, peers=(), code_other=307,
                pin_lifetime="3s"):
    lines = [
        "cell: t",
        "roles: [%s]" % role,
        'listen: ["127.0.0.1:%d"]' % port,
        "default_service: burrow",
        "credential: %s" % SECRET,
        'register_networks: ["127.0.0.0/8"]',
        "timings:",
        "  heartbeat_interval: 200ms",
        "  lease: 1000ms",
        "  evict_after: 30s",
        "  drain_window: 60s",
        "  settle_window: 0",  # routing itself; lookups: tests/reach
        "  pin_lifetime: %s" % pin_lifetime,
        "  join_heartbeats: 1",
        "  sync_interval: 200ms",
        "redirect:",
        "  code_get: 302",
        "  code_other: %d" % code_other,
        "services:",
        "  burrow:",
        "    kind: burrow",
        "    buckets: 1024",
        "    k: 3",
        "    r: 3",
        "    seeds: {account: 11, key: 22, place: 33}",
    ]
    if aggregator:
        lines.append("aggregator: %s" % aggregator)
    if peers:
        lines.append("peers: [%s]" % ", ".join(peers))
    return "\n".join(lines) + "\n"


class Cluster:
    """One line shed (optionally also the aggregator) and N burrowd."""

    def __init__(self, nback=3, code_other=307, pin_lifetime="3s", aggregator=False):
        d = harness.tmpdir("shed-client-")
        self.port = harness.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.agg = None
        agg_url = None
        if aggregator:
            # A separate aggregator process; the backends announce to it too.
            aport = harness.free_port()
            agg_url = "http://127.0.0.1:%d" % aport
            self.agg_url = agg_url
            conf = os.path.join(d, "agg.yaml")
            with open(conf, "w") as f:
                f.write(shed_config(aport, "aggregator", peers=[self.url],
                                    pin_lifetime=pin_lifetime))
            self.agg = harness.Proc([harness.binary("shed"), "-c", conf], name="aggregator")
            harness.wait_port("127.0.0.1", aport, proc=self.agg)
        conf = os.path.join(d, "shed.yaml")
        with open(conf, "w") as f:
            f.write(shed_config(self.port, "line", agg_url, (), code_other, pin_lifetime))
        self.shed = harness.Proc([harness.binary("shed"), "-c", conf], name="shed")
        harness.wait_port("127.0.0.1", self.port, proc=self.shed)
        self.backends = {}
        for i in range(nback):
            p = harness.free_port()
            pr = harness.Proc([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % p,
                               "--default-ttl", "0", "--announce", self.url, "--id", "b%d" % i,
                               "--credential", SECRET]
                              + (["--announce", agg_url] if agg_url else []),
                              name="burrowd-b%d" % i)
            harness.wait_port("127.0.0.1", p, proc=pr)
            self.backends["127.0.0.1:%d" % p] = pr
        harness.wait_until(lambda: self.members_up() >= nback, timeout=15,
                           what="%d burrow members up" % nback)
        if agg_url:
            harness.wait_until(lambda: self.members_up(agg_url) >= nback, timeout=15,
                               what="%d burrow members up on the aggregator" % nback)

    def metrics(self, base=None):
        with urllib.request.urlopen((base or self.url) + "/metrics", timeout=5) as r:
            return r.read().decode()

    def metric_sum(self, name, base=None, **labels):
        total = 0.0
        for line in self.metrics(base).splitlines():
            m = re.match(r"^%s(\{[^}]*\})?\s+([0-9.eE+-]+)$" % re.escape(name), line)
            if not m:
                continue
            lab = m.group(1) or ""
            if all('%s="%s"' % (k, v) in lab for k, v in labels.items()):
                total += float(m.group(2))
        return total

    def members_up(self, base=None):
        try:
            return self.metric_sum("shed_members", base, service="burrow", state="up")
        except OSError:
            return 0

    def redirects(self, **labels):
        return self.metric_sum("shed_redirects_total", **labels)


class Probe:
    """A running client-probe: one shed client handle, commands by line."""

    def __init__(self, sheds, retries=None, backoff=None):
        argv = [PROBE, "--verbose"]
        for s in sheds:
            argv += ["--shed", s]
        if retries:
            argv += ["--retries", str(retries)]
        if backoff:
            argv += ["--backoff", str(backoff)]
        self.errpath = os.path.join(harness.tmpdir("probe-"), "stderr")
        self.err = open(self.errpath, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err)

    def cmd(self, line, timeout=60):
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()
        out = self.p.stdout.readline()
        if not out:
            raise RuntimeError("client-probe died: %s" % self.trace())
        return json.loads(out)

    def req(self, method, url, body=None):
        return self.cmd("req %s %s%s" % (method, url, " " + body.hex() if body else ""))

    def trace(self):
        self.err.flush()
        with open(self.errpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def close(self):
        try:
            self.p.stdin.write(b"quit\n")
            self.p.stdin.flush()
            rc = self.p.wait(10)
        except Exception:
            self.p.kill()
            rc = self.p.wait()
        self.err.close()
        assert rc == 0, "client-probe exited %r: %s" % (rc, self.trace()[-2000:])


def hostport(url):
    return url.split("//", 1)[1].split("/", 1)[0]


ctx = {}


def main_cluster():
    if "main" not in ctx:
        ctx["main"] = Cluster(aggregator=True)
    return ctx["main"]


def test_first_request_redirects_then_pins():
    cl = main_cluster()
    pr = Probe(["127.0.0.1:%d" % cl.port])
    url = BASE + "/pin/q/first"
    before = cl.redirects()
    r = pr.req("PUT", url, b"hello pins")
    assert r["rc"] == 0 and r["status"] == 201, r
    assert r["hops"] == 1 and not r["pinned"], r
    assert hostport(r["final_url"]) in cl.backends, r
    assert cl.redirects() == before + 1
    mid = cl.redirects()
    r = pr.cmd("loop 1000 %s" % url)
    assert r == {"ok": 1000, "pinned": 1000, "bad": 0}, r
    assert cl.redirects() == mid, "pinned requests must not reach the shed"
    # Another message of the same bucket is pinned before its first request.
    bucket = pr.req("GET", url)["bucket"]
    for i in range(2000):
        other = BASE + "/pin/q/other%d" % i
        r = pr.req("PUT", other, b"x")
        if r["has_bucket"] and r["bucket"] == bucket:
            assert r["pinned"] and r["hops"] == 0 and r["status"] == 201, r
            break
    else:
        raise AssertionError("no other message in bucket %d" % bucket)
    m = pr.cmd("metrics")
    assert m["pins_set"] >= 1 and m["pinned"] >= 1001, m
    pins = pr.cmd("pins")["pins"]
    assert any(p["bucket"] == bucket and hostport(p["host"]) in cl.backends for p in pins), pins
    pr.close()


def put_get_body(cl, code):
    body = bytes((i * 7 + 13) % 94 + 33 for i in range(100 * 1024))  # 100 KiB printable
    for n, size in enumerate((0, 5, 2000, len(body))):
        url = BASE + "/body%d/q/m%d" % (code, n)
        before = cl.redirects(code=str(code))
        pr = Probe(["127.0.0.1:%d" % cl.port])
        r = pr.req("PUT", url, body[:size])
        assert r["rc"] == 0 and r["status"] == 201 and r["hops"] == 1, r
        assert "< %d Location" % code in pr.trace(), pr.trace()
        pr.close()
        assert cl.redirects(code=str(code)) >= before + 1
        got = harness.request("GET", "http://%s/v1.0/body%d/q/m%d?detail=body"
                              % (hostport(r["final_url"]), code, n))
        assert got.status == 200 and got.body == body[:size], (size, got.status, len(got.body))


def test_put_body_through_307():
    put_get_body(main_cluster(), 307)


def test_put_body_through_302():
    cl = Cluster(code_other=302)
    try:
        put_get_body(cl, 302)
    finally:
        cl.shed.stop()
        for b in cl.backends.values():
            b.stop()


def test_threads_share_one_handle():
    cl = main_cluster()
    pr = Probe(["127.0.0.1:%d" % cl.port])
    before = cl.redirects()
    r = pr.cmd("threads 8 150 %s/threads/q" % BASE, timeout=120)
    assert r == {"ok": 1200, "bad": 0}, r
    m = pr.cmd("metrics")
    assert m["requests"] == 2400, m
    # account "threads" has k=3 buckets: after the first asks, all is pinned.
    assert m["pinned"] >= 2400 - 8 * 3 * 2, m
    assert cl.redirects() - before == m["redirects"], m
    pr.close()


def test_list_follows_to_aggregator():
    cl = main_cluster()
    pr = Probe(["127.0.0.1:%d" % cl.port])
    ids = ["l%02d" % i for i in range(12)]
    for i in ids:
        assert pr.req("PUT", BASE + "/lister/q/" + i, b"v")["status"] == 201
    pr.close()
    shedc = harness.binary("shedc")
    out = subprocess.run([shedc, "--shed", "127.0.0.1:%d" % cl.port, "--json", "--verbose", "list",
                          BASE + "/lister/q", "--all", "--limit", "5", "--detail", "id"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert sorted(got) == ids, got
    err = out.stderr.decode()
    assert err.count("shedc: < 200") >= 3, "12 ids at limit 5 take 3 pages:\n" + err
    assert "shedc: < 302 Location: %s/" % cl.agg_url in err, err


def test_pins_expire_on_schedule():
    cl = main_cluster()  # pin_lifetime 3s
    pr = Probe(["127.0.0.1:%d" % cl.port])
    url = BASE + "/expiry/q/m"
    assert pr.req("PUT", url, b"e")["hops"] == 1
    pins = pr.cmd("pins")["pins"]
    assert len(pins) == 1 and 2000 < pins[0]["expires_in_ms"] <= 3000, pins
    assert pr.req("GET", url)["pinned"]
    time.sleep(pins[0]["expires_in_ms"] / 1000.0 + 0.2)
    before = cl.redirects()
    r = pr.req("GET", url)
    assert not r["pinned"] and r["hops"] == 1 and r["status"] == 200, r
    assert cl.redirects() == before + 1
    assert pr.req("GET", url)["pinned"], "pinned again after the new redirect"
    pr.close()


def test_killed_backend_fails_over_through_shed():
    cl = main_cluster()
    pr = Probe(["127.0.0.1:%d" % cl.port], retries=10, backoff=50)
    url = BASE + "/failover/q/m"
    r = pr.req("PUT", url, b"before")
    assert r["status"] == 201, r
    victim = hostport(r["final_url"])
    assert pr.req("GET", url)["pinned"]
    reports = cl.metric_sum("shed_failed_reports_total")
    cl.backends[victim].kill()
    r = pr.req("PUT", url, b"after")
    assert r["rc"] == 0 and r["status"] in (201, 204), r
    assert r["attempts"] >= 2, r
    assert hostport(r["final_url"]) != victim, r
    assert "Shed-Failed: %s" % victim in pr.trace(), pr.trace()[-3000:]
    assert cl.metric_sum("shed_failed_reports_total") > reports
    m = pr.cmd("metrics")
    assert m["failures"] >= 1 and m["pins_dropped"] >= 1, m
    r = pr.req("GET", url + "?detail=body")
    assert r["status"] == 200 and r["body"] == "after", r
    pr.close()


def test_sheds_down_pinned_traffic_works():
    cl = main_cluster()
    pr = Probe(["127.0.0.1:%d" % cl.port], retries=1, backoff=5)
    urls = [BASE + "/nosheds/q/m%d" % i for i in range(20)]
    for u in urls:
        assert pr.req("PUT", u, b"kept")["status"] == 201
    pins = pr.cmd("pins")["pins"]
    assert pins
    cl.shed.stop()
    for u in urls:
        r = pr.req("GET", u + "?detail=body")
        assert r["rc"] == 0 and r["status"] == 200 and r["pinned"] and r["body"] == "kept", r
    r = pr.req("GET", BASE + "/other-account/q/m")
    assert r["rc"] != 0 and r["status"] == 0, "no shed, no pin: must fail: %r" % r
    pr.close()


def test_shedc_cli():
    cl = main_cluster()
    shedc = harness.binary("shedc")
    shed = ["--shed", "127.0.0.1:%d" % cl.port]

    def run(args, body=None):
        return subprocess.run([shedc] + args, input=body, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30)

    r = run(shed + ["--json", "--stat-after", "put", BASE + "/cli/q/m", "--ttl", "60"], b"hi")
    assert r.returncode == 0, r.stderr
    objs = [json.loads(l) for l in r.stdout.decode().splitlines()]
    assert objs[0]["created"] is True and objs[0]["status"] == 201, objs
    assert objs[1]["metrics"]["redirects"] == 1 and len(objs[1]["pins"]) == 1, objs
    r = run(shed + ["get", BASE + "/cli/q/m"])
    assert r.returncode == 0 and r.stdout == b"hi", r  # exactly the body: no newline added
    r = run(shed + ["--verbose", "get", BASE + "/cli/q/nope"])
    assert r.returncode == 1, r
    assert b"< 302 Location: http://127.0.0.1:" in r.stderr, r.stderr
    r = run(shed + ["stat", BASE + "/cli/q/m", BASE + "/cli/q/m"])
    assert r.returncode == 0 and b"pinned 1" in r.stdout and b"pins: 1" in r.stdout, r.stdout
    r = run(shed + ["update", BASE + "/cli/q/m", "--hide", "30"])
    assert r.returncode == 0, r.stderr
    r = run(shed + ["--json", "claim", BASE + "/cli/q"])
    assert r.returncode == 1, r  # the only message is hidden: nothing to claim (404)
    r = run(shed + ["delete", BASE + "/cli/q/m"])
    assert r.returncode == 0, r.stderr
    r = run(shed + ["delete", BASE + "/cli/q/m"])
    assert r.returncode == 1, r
    assert run(shed + ["put"]).returncode == 2
    assert run(shed + ["frobnicate", BASE]).returncode == 2
    assert run(["--shed", "nonsense", "get", BASE + "/a/q/m"]).returncode == 2
    r = run(["--shed", "127.0.0.1:%d" % harness.free_port(), "--retries", "1", "get",
             BASE + "/a/q/m"])
    assert r.returncode == 3, r
    help_ = run(["--help"])
    assert help_.returncode == 0 and b"exit status" in help_.stdout


class FakeShed:
    """A scripted HTTP server for what a real shed never does on purpose:
    redirect loops, endless chains, a backend answering 421, and a record of
    every request's Shed-Failed header as it arrived on the wire."""

    RING = "b=1024; k=3; sa=000000000000000b; sk=0000000000000016"

    def __init__(self, buckets):
        self.buckets = buckets  # path prefix -> the bucket the client computes
        self.seen = []  # (port, method, path, Shed-Failed or None)
        self.mis_calls = 0
        fake = self

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
                if n:
                    self.rfile.read(n)
                port = self.server.server_address[1]
                fake.seen.append((port, self.command, self.path,
                                  self.headers.get("Shed-Failed")))
                p = self.path
                if p.startswith("/v1.0/loop/"):
                    return self.reply(307, [("Location", "http://127.0.0.1:%d%s" % (port, p))])
                if p.startswith("/v1.0/long/"):
                    # A Location past the client's 2047-byte limit: cut short it
                    # would still be a URL (back here), so truncating is wrong.
                    return self.reply(307, [("Location", "http://127.0.0.1:%d/v1.0/long/q/m?p=%s"
                                             % (port, "a" * 3000))])
                if p.startswith("/v1.0/busy/"):
                    return self.reply(503, [("Retry-After", "1")])
                if port == fake.shed_port and p.startswith("/v1.0/esc/"):
                    # Escalated to a "master" (b1) that has no cell to offer.
                    return self.reply(307, [("Location", "http://127.0.0.1:%d%s"
                                             % (fake.b1_port, p))])
                if port == fake.b1_port and p.startswith("/v1.0/esc/"):
                    return self.reply(503, [("Retry-After", "1")])
                if port == fake.shed_port and p.startswith("/v1.0/lst"):
                    # A list: to the "aggregator" (b2), which fails with a 500.
                    return self.reply(307, [("Location", "http://127.0.0.1:%d%s"
                                             % (fake.b2_port, p))])
                if port == fake.b2_port and p.startswith("/v1.0/lst"):
                    return self.reply(500)
                if p.startswith("/v1.0/hops/"):
                    n = int(p.rsplit("=", 1)[1]) if "=" in p else 0
                    return self.reply(307, [("Location", "http://127.0.0.1:%d/v1.0/hops/q/m?n=%d"
                                             % (port, n + 1))])
                if port == fake.shed_port and p.startswith("/v1.0/mis/"):
                    # First ask: backend 1 (it will say 421 later); then backend 2.
                    fake.mis_calls += 1
                    target = fake.b1_port if fake.mis_calls == 1 else fake.b2_port
                    return self.reply(307, [
                        ("Location", "http://127.0.0.1:%d%s" % (target, p)),
                        ("Shed-Bucket", str(fake.buckets["mis"])), ("Shed-Generation", "1"),
                        ("Shed-Pin-TTL", "30"),
                        ("Shed-Ring", FakeShed.RING)])
                if port == fake.shed_port and p.startswith("/v1.0/dead/"):
                    return self.reply(307, [
                        ("Location", "http://127.0.0.1:%d%s" % (fake.dead_port, p)),
                        ("Shed-Bucket", str(fake.buckets["dead"])), ("Shed-Generation", "1"),
                        ("Shed-Pin-TTL", "30"),
                        ("Shed-Ring", FakeShed.RING)])
                if port == fake.b1_port and fake.mis_calls >= 1 and len(
                        [x for x in fake.seen if x[0] == fake.b1_port]) > 1:
                    return self.reply(421)
                return self.reply(200, [("Content-Type", "application/octet-stream")],
                                  b"from %d" % port)

            do_GET = do_PUT = do_POST = do_DELETE = handle_one

        self.servers = []
        for _ in range(3):
            srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
            srv.daemon_threads = True
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self.servers.append(srv)
        self.shed_port, self.b1_port, self.b2_port = [x.server_address[1] for x in self.servers]
        self.dead_port = harness.free_port()

    def close(self):
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()


def test_loops_hops_421_and_shed_failed_on_the_wire():
    calc = Probe([])
    ring = FakeShed.RING.replace(" ", "")
    buckets = {k: calc.cmd("bucket %s %s/%s/q/m" % (ring, BASE, k))["bucket"]
               for k in ("mis", "dead")}
    calc.close()
    fk = FakeShed(buckets)
    try:
        pr = Probe(["127.0.0.1:%d" % fk.shed_port], retries=2, backoff=5)
        r = pr.req("GET", BASE + "/loop/q/m")
        assert r["error"] == "redirect loop" and r["rc"] < 0, r
        # An overlong header value is a clear error, not a truncated URL followed.
        n0 = len(fk.seen)
        r = pr.req("GET", BASE + "/long/q/m")
        assert r["error"] == "unexpected reply from the server" and r["rc"] < 0, r
        assert len(fk.seen) - n0 == 1, "nothing followed after the overlong Location"
        n0 = len(fk.seen)
        r = pr.req("PUT", BASE + "/hops/q/m", b"body")
        assert r["error"] == "too many redirects", r
        assert len(fk.seen) - n0 == 6, "1 + max_hops (5) exchanges, then stop"
        assert all(m == "PUT" for _, m, _, _ in fk.seen[n0:]), "method kept on every hop"
        # 421 from the pinned backend: drop the pin, ask the shed again, no blame.
        r = pr.req("GET", BASE + "/mis/q/m")
        assert r["status"] == 200 and r["hops"] == 1, r
        assert pr.req("GET", BASE + "/mis/q/m")["status"] == 200  # pinned, 421, re-ask
        assert fk.mis_calls == 2, fk.seen
        last = pr.req("GET", BASE + "/mis/q/m")
        assert last["pinned"] and last["body"] == "from %d" % fk.b2_port, last
        assert not any(f for _, _, _, f in fk.seen), "a 421 is not a failure to report"
        # A shed's 503 + Retry-After: waited out, then the 503 is the answer.
        t0 = time.monotonic()
        r = pr.req("GET", BASE + "/busy/q/m")
        took = time.monotonic() - t0
        assert r["rc"] == 0 and r["status"] == 503 and r["attempts"] == 3, r
        assert 2.0 <= took < 4.0, "two Retry-After: 1 waits, took %.2fs" % took
        # A master's 503 + Retry-After: waited out (with jitter), and the
        # master is never reported as a failed backend.
        n0 = len(fk.seen)
        t0 = time.monotonic()
        r = pr.req("PUT", BASE + "/esc/q/m", b"body")
        took = time.monotonic() - t0
        assert r["status"] == 503 and r["attempts"] == 3, r
        assert 2.0 <= took < 4.0, "two Retry-After: 1 waits, took %.2fs" % took
        assert not any(f for _, _, _, f in fk.seen[n0:]), fk.seen[n0:]
        # A list DELETE/POST that failed at the aggregator may have run: not
        # sent again (a GET list is).
        for method, want in (("DELETE", 1), ("POST", 1), ("GET", 3)):
            n0 = len(fk.seen)
            r = pr.req(method, BASE + "/lst/q?limit=5")
            assert r["status"] == 500 and r["attempts"] == want, (method, r)
            assert not any(f for _, _, _, f in fk.seen[n0:]), "an aggregator is not a backend"
        # A dead backend is named in Shed-Failed on the next shed ask.
        r = pr.req("GET", BASE + "/dead/q/m")
        assert r["rc"] < 0 and r["attempts"] == 3, r
        failed = [f for port, _, _, f in fk.seen if port == fk.shed_port and f]
        assert failed and failed[0] == "127.0.0.1:%d" % fk.dead_port, fk.seen[-6:]
        pr.close()
    finally:
        fk.close()


if __name__ == "__main__":
    harness.run_tests([
        ("first_request_redirects_then_pins", test_first_request_redirects_then_pins),
        ("put_body_through_307", test_put_body_through_307),
        ("put_body_through_302", test_put_body_through_302),
        ("threads_share_one_handle", test_threads_share_one_handle),
        ("list_follows_to_aggregator", test_list_follows_to_aggregator),
        ("loops_hops_421_and_shed_failed_on_the_wire",
         test_loops_hops_421_and_shed_failed_on_the_wire),
        ("pins_expire_on_schedule", test_pins_expire_on_schedule),
        ("shedc_cli", test_shedc_cli),
        # Destructive ones last: they kill a backend, then the shed.
        ("killed_backend_fails_over_through_shed", test_killed_backend_fails_over_through_shed),
        ("sheds_down_pinned_traffic_works", test_sheds_down_pinned_traffic_works),
    ])
