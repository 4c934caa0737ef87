# SPDX-License-Identifier: ISC
"""Integration test for shed/guard: slow clients that dribble their request
headers are shut down at the header deadline (libmicrohttpd's idle timer
alone never would), one client address cannot hold more than
limits.per_source connections, both are counted in /metrics, and a normal
client keeps getting fast redirects from the same shed meanwhile; raw
request targets are checked before libmicrohttpd cuts or splits them."""
import os
import resource
import socket
import time

import harness

CRED = "guard-secret"
S = {}


def url(path=""):
    return "http://127.0.0.1:%d%s" % (S["port"], path)


def test_setup():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    d = harness.tmpdir()
    S["port"] = harness.free_port()
    conf = os.path.join(d, "shed.yaml")
    with open(conf, "w") as f:
        f.write("""cell: t
roles: [line]
listen: ["127.0.0.1:%d"]
default_service: burrow
credential: %s
register_networks: [127.0.0.0/8]
timings: {heartbeat_interval: 200ms, lease: 700ms}
limits: {connections: 4000, header_timeout: 1s, idle_timeout: 3s, per_source: 150}
services:
  burrow: {kind: burrow, buckets: 1024, k: 3, r: 3}
""" % (S["port"], CRED))
    S["shed"] = harness.Proc([harness.binary("shed"), "-c", conf], name="shed")
    harness.wait_port("127.0.0.1", S["port"], proc=S["shed"])
    bport = harness.free_port()
    S["b"] = harness.Proc([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % bport,
                           "--announce", url(), "--id", "b1", "--credential", CRED], name="b1")
    harness.wait_until(lambda: harness.request("GET", url("/v1.0/a/q/m")).status == 302,
                       timeout=10, what="the backend in the ring")


def slow(src, n):
    """<n> connections from <src> that send a partial request line."""
    out = []
    for _ in range(n):
        s = socket.socket()
        s.bind((src, 0))
        s.connect(("127.0.0.1", S["port"]))
        s.sendall(b"GET /v1.0/a/q/m HTTP/1.1\r\nHost: burrow.service\r\nX-Slow: ")
        s.setblocking(False)
        out.append(s)
    return out


def closed(s):
    try:
        return s.recv(1024) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_slow_headers_are_cut_and_others_served():
    # 1000 slow connections from 10 addresses, each dribbling a byte every
    # 200 ms (which keeps libmicrohttpd's idle timer from ever firing).
    socks = []
    for i in range(10):
        socks += slow("127.0.%d.%d" % (3, 10 + i), 100)
    before = harness.metric(url(), "shed_header_timeouts_total")
    lat = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:
        for s in socks:
            try:
                s.send(b"x")
            except OSError:
                pass
        for _ in range(20):
            t = time.monotonic()
            r = harness.request("GET", url("/v1.0/a/q/m"))
            lat.append(time.monotonic() - t)
            assert r.status == 302, r.status
        time.sleep(0.2)
    cut = sum(1 for s in socks if closed(s))
    after = harness.metric(url(), "shed_header_timeouts_total")
    lat.sort()
    p99 = lat[int(len(lat) * 0.99)]
    print("     %d/%d slow connections cut at the 1 s header deadline; %d redirects "
          "meanwhile, p99 %.1f ms" % (cut, len(socks), len(lat), 1000 * p99))
    for s in socks:
        s.close()
    assert cut == len(socks), "%d of %d slow connections still open" % (len(socks) - cut,
                                                                         len(socks))
    assert after - before >= len(socks)
    assert p99 < 0.05, p99


def test_per_source_cap():
    before = harness.metric(url(), "shed_connections_refused_total")
    socks = []
    for _ in range(160):
        s = socket.socket()
        s.bind(("127.0.4.1", 0))
        s.connect(("127.0.0.1", S["port"]))
        socks.append(s)
    time.sleep(0.3)
    for s in socks:
        s.setblocking(False)
    refused = sum(1 for s in socks if closed(s))
    print("     %d of 160 connections from one address refused (per_source 150)" % refused)
    assert refused == 10, refused
    assert harness.metric(url(), "shed_connections_refused_total") - before == 10
    # Another address is served while that one is at its cap.
    other = socket.socket()
    other.bind(("127.0.4.2", 0))
    other.connect(("127.0.0.1", S["port"]))
    other.sendall(b"GET /v1.0/a/q/m HTTP/1.1\r\nHost: burrow.service\r\n\r\n")
    assert other.recv(4096).startswith(b"HTTP/1.1 302")
    other.close()
    for s in socks:
        s.close()
    # Closed connections count down: the address may connect again.
    time.sleep(0.3)
    s = socket.socket()
    s.bind(("127.0.4.1", 0))
    s.connect(("127.0.0.1", S["port"]))
    s.sendall(b"GET /v1.0/a/q/m HTTP/1.1\r\nHost: burrow.service\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 302")
    s.close()


def test_keepalive_is_not_cut():
    # An idle keep-alive connection between requests is not a slow client:
    # it lives until idle_timeout (3 s), longer than the 1 s header deadline.
    s = socket.create_connection(("127.0.0.1", S["port"]))
    req = b"GET /v1.0/a/q/m HTTP/1.1\r\nHost: burrow.service\r\n\r\n"
    s.sendall(req)
    assert s.recv(4096).startswith(b"HTTP/1.1 302")
    time.sleep(1.8)
    s.sendall(req)
    assert s.recv(4096).startswith(b"HTTP/1.1 302")
    s.close()


def raw(req):
    s = socket.create_connection(("127.0.0.1", S["port"]))
    s.settimeout(3)
    s.sendall(req)
    try:
        return s.recv(8192)
    finally:
        s.close()


def test_raw_targets():
    # An absolute URI reaches what its path names; a NUL, too many query
    # parameters and other target forms get a clear 400 (libmicrohttpd alone
    # would cut the path at the NUL, or run out of memory splitting the
    # query and close without an answer).
    origin = raw(b"GET /v1.0/a/q/m HTTP/1.1\r\nHost: burrow.service\r\n\r\n")
    absolute = raw(b"GET http://burrow.service/v1.0/a/q/m HTTP/1.1\r\nHost: burrow.service\r\n\r\n")
    loc = [l for l in origin.split(b"\r\n") if l.lower().startswith(b"location:")]
    assert absolute.startswith(b"HTTP/1.1 302") and loc and loc[0] in absolute, absolute[:300]
    for req in (b"GET /v1.0/a/q/m\x00x HTTP/1.1\r\nHost: burrow.service\r\n\r\n",
                b"GET /v1.0/a/q/m?" + b"&".join(b"k%d=1" % i for i in range(300)) +
                b" HTTP/1.1\r\nHost: burrow.service\r\n\r\n",
                b"GET ftp://burrow.service/v1.0/a/q/m HTTP/1.1\r\nHost: burrow.service\r\n\r\n",
                b"OPTIONS * HTTP/1.1\r\nHost: burrow.service\r\n\r\n"):
        r = raw(req)
        assert r.startswith(b"HTTP/1.1 400"), (req[:40], r[:200])


if __name__ == "__main__":
    harness.run_tests([
        ("setup", test_setup),
        ("slow_headers_are_cut_and_others_served", test_slow_headers_are_cut_and_others_served),
        ("per_source_cap", test_per_source_cap),
        ("keepalive_is_not_cut", test_keepalive_is_not_cut),
        ("raw_targets", test_raw_targets),
    ])
