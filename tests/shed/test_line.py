# SPDX-License-Identifier: ISC
"""Integration test for the line shed: real burrowd backends announcing
themselves to a real shed on loopback; requests through the shed with curl -L
and Python requests; failures, joins, credentials, networks, reloads, bad
input, Expect: 100-continue and keep-alive."""
import json
import os
import random
import re
import signal
import socket
import subprocess
import time
import urllib.parse

import harness
import requests

CRED = "itest-secret"
S = {}  # shared state: shed, backends


def shed_url(path=""):
    return "http://127.0.0.1:%d%s" % (S["port"], path)


def start_shed():
    d = harness.tmpdir()
    S["port"] = harness.free_port()
    S["conf"] = os.path.join(d, "shed.yaml")
    with open(S["conf"], "w") as f:
        f.write("""cell: t
roles: [line]
listen: ["127.0.0.1:%d"]
credential: %s
register_networks: [127.0.0.0/8]
aggregator: http://127.0.0.1:9
timings: {heartbeat_interval: 200ms, lease: 700ms, evict_after: 3s, drain_window: 10s,
          pin_lifetime: 5s, join_heartbeats: 2, evict_cap: 1,
          settle_window: 0}  # routing itself; lookups: tests/reach
limits: {heartbeat_body: 4096}
services:
  burrow: {kind: burrow, buckets: 1024, k: 3, r: 3}
""" % (S["port"], CRED))
    S["shed"] = harness.Proc([harness.binary("shed"), "-c", S["conf"]], name="shed")
    harness.wait_port("127.0.0.1", S["port"], proc=S["shed"])


def start_backend(name):
    port = harness.free_port()
    p = harness.Proc([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % port,
                      "--default-ttl", "0", "--announce", shed_url(), "--id", name,
                      "--credential", CRED], name=name)
    harness.wait_port("127.0.0.1", port, proc=p)
    S.setdefault("backends", {})[name] = (p, port)
    return port


def status():
    return harness.request("GET", shed_url("/_shed/v1/status")).json()


def members():
    svc = [s for s in status()["services"] if s["name"] == "burrow"][0]
    return {m["id"]: m for m in svc["members"]}


def wait_in_ring(names, timeout=10):
    def ok():
        ms = members()
        return all(n in ms and ms[n]["in_ring"] and ms[n]["state"] == "up" for n in names)
    harness.wait_until(ok, timeout=timeout, what="members %s in the ring" % names)


def metric(name, labels=""):
    return harness.metric(shed_url(), name, labels)


def redirect(method, path, body=None, headers=None):
    h = {"Host": "burrow.service"}
    h.update(headers or {})
    return harness.request(method, shed_url(path), body=body, headers=h)


def port_of(location):
    return urllib.parse.urlsplit(location).port


def backend_of_port(port):
    for name, (_, p) in S["backends"].items():
        if p == port:
            return name
    return None


def test_setup():
    start_shed()
    for i in range(1, 4):
        start_backend("b%d" % i)
    wait_in_ring(["b1", "b2", "b3"])


def test_redirect_headers():
    r = redirect("PUT", "/v1.0/acct/q/m1?ttl=100", body=b"x")
    assert r.status == 307, r
    loc = r.header("location")
    assert re.match(r"^http://127\.0\.0\.1:\d+/v1\.0/acct/q/m1\?ttl=100$", loc), loc
    assert backend_of_port(port_of(loc)) is not None
    assert r.header("cache-control") == "no-store"
    assert 0 <= int(r.header("shed-bucket")) < 1024
    assert int(r.header("shed-generation")) >= 1
    assert r.header("shed-pin-ttl") == "5"
    assert re.match(r"^b=1024; k=3; sa=[0-9a-f]{16}; sk=[0-9a-f]{16}$", r.header("shed-ring"))
    g = redirect("GET", "/v1.0/acct/q/m1")
    assert g.status == 302 and g.header("location").startswith(loc.split("?")[0])
    # Encoded ids come back re-encoded, not raw.
    r = redirect("GET", "/v1.0/a%20b/q%2Fx/m%7E")
    assert r.status == 404 or r.status == 302
    r = redirect("GET", "/v1.0/a%20b/q/m%41")
    assert r.status == 302 and r.header("location").endswith("/v1.0/a%20b/q/mA"), r


def test_curl_follows_to_primary():
    placed = {}
    for i in range(12):
        key = "k%d" % i
        body = "body-%d" % i
        out = subprocess.run(
            ["curl", "-sS", "-L", "-X", "PUT", "--data-binary", body,
             "--connect-to", "burrow.service:80:127.0.0.1:%d" % S["port"],
             "-o", "/dev/null", "-w", "%{http_code} %{url_effective} %{num_redirects}",
             "http://burrow.service/v1.0/acct%s/q/%s" % (key, key)],
            capture_output=True, text=True, timeout=10, check=True).stdout.split()
        assert out[0] in ("201", "204"), out
        assert out[2] == "1", out
        placed[key] = port_of(out[1])
    # Each message lives on exactly the backend the shed sent it to.
    for key, port in placed.items():
        for name, (_, p) in S["backends"].items():
            r = harness.request("GET", "http://127.0.0.1:%d/v1.0/acct%s/q/%s?detail=body"
                                % (p, key, key))
            if p == port:
                assert r.status == 200 and r.body == ("body-" + key[1:]).encode(), (name, r)
            else:
                assert r.status == 404, (name, key, r)
    assert len(set(placed.values())) >= 2, "12 keys all on one backend"
    # GET through the shed with curl -L reads it back.
    out = subprocess.run(
        ["curl", "-sS", "-L", "--connect-to", "burrow.service:80:127.0.0.1:%d" % S["port"],
         "http://burrow.service/v1.0/acctk3/q/k3?detail=body"],
        capture_output=True, text=True, timeout=10, check=True).stdout
    assert out == "body-3", out


def test_requests_keeps_method_and_body():
    s = requests.Session()
    h = {"Host": "burrow.service"}
    r = s.put(shed_url("/v1.0/racct/rq/msg"), data=b"hello", headers=h, timeout=5)
    assert r.status_code == 201, r
    assert r.history and r.history[0].status_code == 307
    final = port_of(r.url)
    r = s.post(shed_url("/v1.0/racct/rq/msg?ttl=500"), headers=h, timeout=5)
    assert r.status_code == 204 and r.history[0].status_code == 307, r
    assert port_of(r.url) == final
    r = s.get(shed_url("/v1.0/racct/rq/msg?detail=all"), headers=h, timeout=5)
    assert r.status_code == 200 and r.history[0].status_code == 302
    assert r.json()["body"] == "hello" and 400 < r.json()["ttl"] <= 500, r.text
    r = s.delete(shed_url("/v1.0/racct/rq/msg"), headers=h, timeout=5)
    assert r.status_code == 204 and r.history[0].status_code == 307, r
    r = harness.request("GET", "http://127.0.0.1:%d/v1.0/racct/rq/msg" % final)
    assert r.status == 404


def test_lists_go_to_aggregator():
    for path, code in (("/v1.0/a/q?limit=5", 302), ("/v1.0/a", 302), ("/v1.0", 302)):
        r = redirect("GET", path)
        assert r.status == code and r.header("location") == "http://127.0.0.1:9" + path, r
    r = redirect("DELETE", "/v1.0/a/q")
    assert r.status == 307
    r = redirect("GET", "/")
    assert r.status == 200 and json.loads(r.body) == ["v1.0"]
    assert metric("shed_redirects_total", 'service="burrow",level="list",code="302"') >= 3


def test_killed_backend_stops_receiving():
    r = redirect("PUT", "/v1.0/kacct/q/victim", body=b"v")
    victim = backend_of_port(port_of(r.header("location")))
    p, vport = S["backends"][victim]
    gen = r.header("shed-generation")
    t0 = time.monotonic()
    p.kill()
    def moved():
        r2 = redirect("PUT", "/v1.0/kacct/q/victim", body=b"v")
        return r2 if port_of(r2.header("location")) != vport else None
    r2 = harness.wait_until(moved, timeout=3, step=0.05, what="redirect away from the killed")
    took = time.monotonic() - t0
    assert took < 0.7 + 0.4, "took %.2fs, lease is 0.7s" % took
    assert r2.header("shed-generation") == gen, "liveness must not make a new generation"
    assert r2.header("shed-bucket") == r.header("shed-bucket")
    for i in range(40):
        r3 = redirect("GET", "/v1.0/kacct/q/m%d" % i)
        assert port_of(r3.header("location")) != vport
    assert members()[victim]["state"] == "down"
    S["dead"] = victim


def test_new_backend_joins():
    start_backend("b4")
    wait_in_ring(["b4"])
    port = S["backends"]["b4"][1]
    hits = 0
    for i in range(200):
        r = redirect("GET", "/v1.0/jacct%d/q/m" % i)
        assert r.status == 302
        hits += port_of(r.header("location")) == port
    assert 20 <= hits <= 120, "b4 got %d of 200" % hits


def test_heartbeat_auth_and_networks():
    body = json.dumps({"service": "burrow", "id": "x1", "url": "http://127.0.0.1:1",
                       "incarnation": 1}).encode()
    before = metric("shed_heartbeats_total", 'result="unauthorized"')
    r = harness.request("PUT", shed_url("/_shed/v1/members/burrow/x1"), body=body)
    assert r.status == 401, r
    r = harness.request("PUT", shed_url("/_shed/v1/members/burrow/x1"), body=body,
                        headers={"Authorization": "Bearer wrong"})
    assert r.status == 401, r
    assert metric("shed_heartbeats_total", 'result="unauthorized"') == before + 2
    auth = {"Authorization": "Bearer " + CRED}
    outside = json.dumps({"service": "burrow", "id": "x1", "url": "http://192.0.2.7:80",
                          "incarnation": 1}).encode()
    r = harness.request("PUT", shed_url("/_shed/v1/members/burrow/x1"), body=outside,
                        headers=auth)
    assert r.status == 403, r
    r = harness.request("PUT", shed_url("/_shed/v1/members/burrow/x1"), body=b"{nope",
                        headers=auth)
    assert r.status == 400, r
    r = harness.request("PUT", shed_url("/_shed/v1/members/burrow/x1"), body=b" " * 5000,
                        headers=auth)
    assert r.status == 413, r
    r = harness.request("PUT", shed_url("/_shed/v1/members/burrow/x2"), body=body, headers=auth)
    assert r.status == 400, "path and body ids differ: %r" % r
    r = harness.request("PUT", shed_url("/_shed/v1/members/nope/x1"), body=body.replace(
        b'"burrow"', b'"nope"'), headers=auth)
    assert r.status == 404, r
    r = harness.request("PUT", shed_url("/_shed/v1/members/burrow/x1"), body=body, headers=auth)
    assert r.status == 200 and r.json()["lease_ms"] == 700, r
    old = body.replace(b'"incarnation": 1', b'"incarnation": 0')
    r = harness.request("PUT", shed_url("/_shed/v1/members/burrow/x1"), body=old, headers=auth)
    assert r.status == 409, r
    r = harness.request("DELETE", shed_url("/_shed/v1/members/burrow/x1?incarnation=1"),
                        headers=auth)
    assert r.status == 200, r
    assert "x1" not in members()
    assert "x1" not in [m for m in members()]


def test_sighup_keeps_registry():
    before = members()
    gen = [s for s in status()["services"] if s["name"] == "burrow"][0]["generation"]
    S["shed"].signal(signal.SIGHUP)
    time.sleep(0.3)
    assert S["shed"].alive()
    after = members()
    assert set(after) == set(before)
    gen2 = [s for s in status()["services"] if s["name"] == "burrow"][0]["generation"]
    assert gen2 == gen, "a reload with the same config keeps the generation"
    assert "config: reloaded" in S["shed"].output()
    assert redirect("GET", "/v1.0/a/q/m").status == 302


def raw(data, read_until_close=True, timeout=5):
    with socket.create_connection(("127.0.0.1", S["port"]), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" not in out:
                    continue
                if not read_until_close:
                    break
                # A complete response on a kept-alive connection: stop
                # instead of waiting for a close that never comes.
                head, _, body = out.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
        except socket.timeout:
            pass
        return out


def status_of(resp):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    return int(m.group(1)) if m else None


def test_bad_input_is_4xx():
    cases = [
        (b"GET /v1.0/a/q/%zz HTTP/1.1\r\nHost: burrow.service\r\n\r\n", 400),
        (b"GET /v1.0/a/q/%00 HTTP/1.1\r\nHost: burrow.service\r\n\r\n", 400),
        (b"GET /v1.0/a/q/m%0d%0aX:y HTTP/1.1\r\nHost: burrow.service\r\n\r\n", 302),
        (b"GET /v1.0/a/q/" + b"x" * 3000 + b" HTTP/1.1\r\nHost: burrow.service\r\n\r\n", 414),
        (b"GET /v2.0/a/q/m HTTP/1.1\r\nHost: burrow.service\r\n\r\n", 404),
        (b"GET /v1.0/a/q/m/x HTTP/1.1\r\nHost: burrow.service\r\n\r\n", 404),
        (b"GET /v1.0/a/q/m?limit=abc HTTP/1.1\r\nHost: burrow.service\r\n\r\n", 400),
        (b"GET /v1.0/a/q/m?x=%zz HTTP/1.1\r\nHost: burrow.service\r\n\r\n", 400),
        (b"GET /v1.0/a/q/m HTTP/1.1\r\nHost: nope.service\r\n\r\n", 404),
        (b"GET /v1.0/a/q/m HTTP/1.1\r\nHost: bad\x01host.service\r\n\r\n", 400),
        (b"GET /v1.0/a/q/m HTTP/1.1\r\n\r\n", 400),
        (b"OPTIONS /v1.0/a/q/m HTTP/1.1\r\nHost: burrow.service\r\n\r\n", 405),
        (b"GET /v1.0/a/q/m HTTP/1.1\r\nHost: burrow.service\r\nX-Big: " + b"y" * 20000 +
         b"\r\n\r\n", None),
        (b"GARBAGE\r\n\r\n", None),
    ]
    for req, want in cases:
        resp = raw(req + b"", read_until_close=True)
        st = status_of(resp)
        if want is None:
            assert st is None or 400 <= st < 500, (req[:60], resp[:200])
        else:
            assert st == want, (req[:60], resp[:300])
        if st == 302:
            # The CR LF from the path is re-encoded, never raw in a header.
            loc = re.search(rb"Location: (.*)\r\n", resp).group(1)
            assert b"%0D%0AX%3Ay" in loc and b"\r" not in loc, loc
        assert S["shed"].alive()
        assert redirect("GET", "/v1.0/a/q/m").status == 302


def test_expect_100_continue_never_uploads():
    req = (b"PUT /v1.0/eacct/q/m HTTP/1.1\r\nHost: burrow.service\r\n"
           b"Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
    with socket.create_connection(("127.0.0.1", S["port"]), timeout=5) as s:
        s.sendall(req)
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    assert out.startswith(b"HTTP/1.1 307"), out[:200]
    assert b"100 Continue" not in out
    assert b"Location: http://127.0.0.1:" in out


def test_keep_alive_for_get():
    req = b"GET /v1.0/kacct/q/m1 HTTP/1.1\r\nHost: burrow.service\r\n\r\n"
    with socket.create_connection(("127.0.0.1", S["port"]), timeout=5) as s:
        got = []
        for _ in range(2):
            s.sendall(req)
            out = b""
            while b"\r\n\r\n" not in out:
                chunk = s.recv(4096)
                assert chunk, "connection closed after %d responses" % len(got)
                out += chunk
            got.append(out)
    assert all(g.startswith(b"HTTP/1.1 302") for g in got), got
    assert all(b"Connection: close" not in g for g in got)


def test_metrics_and_status():
    assert metric("shed_redirects_total", 'service="burrow",level="message",code="307"') > 0
    assert metric("shed_redirects_total", 'service="burrow",level="message",code="302"') > 0
    assert metric("shed_heartbeats_total", 'result="ok"') > 0
    assert metric("shed_members", 'service="burrow",state="up"') == 3
    # The killed backend is down, or already evicted (evict_after is 3s).
    assert (metric("shed_members", 'service="burrow",state="down"') +
            metric("shed_evictions_total")) == 1
    assert metric("shed_ring_generation", 'service="burrow"') >= 1
    text = harness.request("GET", shed_url("/metrics")).body.decode()
    assert "shed_request_duration_seconds_bucket{le=\"+Inf\"}" in text
    st = status()
    assert st["cell"] == "t" and st["roles"] == ["line"]
    svc = st["services"][0]
    assert re.match(r"^[0-9a-f]{32}$", svc["digest"])


def test_shed_failed_is_counted():
    before = metric("shed_failed_reports_total")
    redirect("GET", "/v1.0/a/q/m", headers={"Shed-Failed": "127.0.0.1:1"})
    assert metric("shed_failed_reports_total") == before + 1


def test_sigterm_exits_zero():
    rc = S["shed"].stop(signal.SIGTERM)
    assert rc == 0, rc
    for name, (p, _) in S["backends"].items():
        p.stop()


harness.run_tests([
    ("setup", test_setup),
    ("redirect_headers", test_redirect_headers),
    ("curl_follows_to_primary", test_curl_follows_to_primary),
    ("requests_keeps_method_and_body", test_requests_keeps_method_and_body),
    ("lists_go_to_aggregator", test_lists_go_to_aggregator),
    ("killed_backend_stops_receiving", test_killed_backend_stops_receiving),
    ("new_backend_joins", test_new_backend_joins),
    ("heartbeat_auth_and_networks", test_heartbeat_auth_and_networks),
    ("sighup_keeps_registry", test_sighup_keeps_registry),
    ("bad_input_is_4xx", test_bad_input_is_4xx),
    ("expect_100_continue_never_uploads", test_expect_100_continue_never_uploads),
    ("keep_alive_for_get", test_keep_alive_for_get),
    ("metrics_and_status", test_metrics_and_status),
    ("shed_failed_is_counted", test_shed_failed_is_counted),
    ("sigterm_exits_zero", test_sigterm_exits_zero),
])
