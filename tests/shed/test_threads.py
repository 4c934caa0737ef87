# SPDX-License-Identifier: ISC
"""Integration test for `threads: 2` (a libmicrohttpd thread pool): a line
shed with two request threads and real burrowd backends. Concurrent
clients on kept-alive connections all get the same, correct redirects;
heartbeats and /metrics work (counters summed over both threads are exact);
list requests, answered by the same process (roles [line, aggregator]: the
fan-out engine on its own thread, busy-polling), are whole and correct under
concurrent clients; SIGTERM with open connections exits 0."""
import http.client
import os
import signal
import threading

import harness

CRED = "threads-secret"
S = {}
PATHS = ["/v1.0/acct%d/q%d/m%d" % (i % 7, i % 3, i) for i in range(40)]


def url(path=""):
    return "http://127.0.0.1:%d%s" % (S["port"], path)


def metric(name, labels=""):
    return harness.metric(url(), name, labels)


def members_up():
    st = harness.request("GET", url("/_shed/v1/status")).json()
    return {m["id"] for s in st["services"] for m in s["members"]
            if m["state"] == "up" and m["in_ring"]}


def test_setup():
    d = harness.tmpdir()
    S["port"] = harness.free_port()
    conf = os.path.join(d, "shed.yaml")
    with open(conf, "w") as f:
        f.write("""cell: t
roles: [line, aggregator]
listen: ["127.0.0.1:%d"]
threads: 2
credential: %s
register_networks: [127.0.0.0/8]
aggregation: {busy_poll: 500us}
timings: {heartbeat_interval: 200ms, lease: 1000ms, evict_after: 30s, join_heartbeats: 1}
services:
  burrow: {kind: burrow, buckets: 1024, k: 3, r: 3}
""" % (S["port"], CRED))
    S["shed"] = harness.Proc([harness.binary("shed"), "-c", conf], name="shed")
    harness.wait_port("127.0.0.1", S["port"], proc=S["shed"])
    S["backends"] = {}
    for i in range(3):
        port = harness.free_port()
        p = harness.Proc([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % port,
                          "--default-ttl", "0", "--announce", url(), "--id", "b%d" % i,
                          "--credential", CRED], name="b%d" % i)
        harness.wait_port("127.0.0.1", port, proc=p)
        S["backends"]["b%d" % i] = (p, port)
    harness.wait_until(lambda: members_up() == {"b0", "b1", "b2"}, timeout=10,
                       what="three backends in the ring")
    assert "(2 threads)" in S["shed"].output()


def test_heartbeats_counted():
    n = metric("shed_heartbeats_total", 'result="ok"')
    harness.wait_until(lambda: metric("shed_heartbeats_total", 'result="ok"') >= n + 6,
                       timeout=5, what="heartbeats keep arriving")


def worker(results, errors, rounds):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", S["port"], timeout=5)
        for _ in range(rounds):
            for p in PATHS:
                conn.request("GET", p, headers={"Host": "burrow.service"})
                r = conn.getresponse()
                r.read()
                results.append((p, r.status, r.getheader("Location"), r.getheader("Shed-Bucket")))
        conn.close()
    except Exception as e:  # reported by the main thread
        errors.append(repr(e))


def test_concurrent_redirects_agree():
    before = metric("shed_redirects_total", 'service="burrow",level="message",code="302"')
    results, errors = [], []
    ts = [threading.Thread(target=worker, args=(results, errors, 5)) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors, errors
    assert len(results) == 8 * 5 * len(PATHS), len(results)
    ports = {port for _, port in S["backends"].values()}
    seen = {}
    for p, status, loc, bucket in results:
        assert status == 302, (p, status)
        assert loc.endswith(p) and int(loc.split(":")[2].split("/")[0]) in ports, loc
        assert seen.setdefault(p, (loc, bucket)) == (loc, bucket), "answers disagree for " + p
    assert len({v[0].split("/v1.0")[0] for v in seen.values()}) >= 2, "all keys on one backend"
    # Following a redirect lands on a backend that takes the message.
    r = harness.request("PUT", seen[PATHS[0]][0], body=b"hi")
    assert r.status in (201, 204), r
    # Counters from both threads add up exactly.
    after = metric("shed_redirects_total", 'service="burrow",level="message",code="302"')
    assert after - before == len(results), (before, after, len(results))


def test_lists_on_the_thread_pool():
    ids = ["m%03d" % i for i in range(60)]
    for m in ids:
        r = harness.request("PUT", url("/v1.0/lists/q/" + m), body=b"x",
                            headers={"Host": "burrow.service"})
        assert r.status in (302, 307), r
        r = harness.request("PUT", r.header("location"), body=b"x")
        assert r.status in (201, 204), r
    results, errors = [], []

    def lister():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", S["port"], timeout=5)
            for _ in range(20):
                conn.request("GET", "/v1.0/lists/q?detail=id", headers={"Host": "burrow.service"})
                r = conn.getresponse()
                results.append((r.status, r.read()))
            conn.close()
        except Exception as e:  # reported by the main thread
            errors.append(repr(e))

    ts = [threading.Thread(target=lister) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors, errors
    assert len(results) == 6 * 20
    for status, body in results:
        assert status == 200, (status, body[:200])
        assert sorted(__import__("json").loads(body)) == ids
    assert metric("shed_agg_requests_total") >= 6 * 20


def test_killed_backend_skipped():
    p, port = S["backends"].pop("b0")
    p.kill()

    def gone():
        for path in PATHS:
            r = harness.request("GET", url(path), headers={"Host": "burrow.service"})
            if r.status != 302 or (":%d/" % port) in r.header("location"):
                return False
        return True

    harness.wait_until(gone, timeout=5, what="b0 skipped after its lease")
    assert metric("shed_members", 'service="burrow",state="down"') == 1


def test_sigterm_exits_zero_with_open_connections():
    conns = []
    for _ in range(4):
        c = http.client.HTTPConnection("127.0.0.1", S["port"], timeout=5)
        c.request("GET", PATHS[1], headers={"Host": "burrow.service"})
        assert c.getresponse().read() is not None
        conns.append(c)  # kept alive, idle
    rc = S["shed"].stop(signal.SIGTERM)
    for c in conns:
        c.close()
    assert rc == 0, (rc, S["shed"].output()[-2000:])
    for p, _ in S["backends"].values():
        p.stop()


harness.run_tests([
    ("setup", test_setup),
    ("heartbeats_counted", test_heartbeats_counted),
    ("concurrent_redirects_agree", test_concurrent_redirects_agree),
    ("lists_on_the_thread_pool", test_lists_on_the_thread_pool),
    ("killed_backend_skipped", test_killed_backend_skipped),
    ("sigterm_exits_zero_with_open_connections", test_sigterm_exits_zero_with_open_connections),
])
