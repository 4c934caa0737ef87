# SPDX-License-Identifier: ISC
"""Integration test for burrowd: the Burrow v1.0 HTTP API of
docs/burrow-api.md over loopback, endpoint by endpoint, plus long-polls
(many at once), concurrency, bad input and a clean SIGTERM exit.

burrowd runs with --default-ttl 0 like the reference test harness.
"""
import base64
import http.client
import http.server
import json
import os
import resource
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import harness

MAX_MSG = 65536
HOST = "127.0.0.1"
PORT = None
PROC = None


def start(extra=()):
    port = harness.free_port()
    p = harness.Proc([harness.binary("burrowd"), "--listen", "%s:%d" % (HOST, port),
                      "--default-ttl", "0", "--max-message-bytes", str(MAX_MSG)] + list(extra))
    harness.wait_port(HOST, port, proc=p)
    return p, port


def q(s):
    return urllib.parse.quote(s, safe="")


def req(method, path, body=None, headers=None, port=None):
    """One request; every response must carry Content-Length."""
    r = harness.request(method, "http://%s:%d/" % (HOST, port or PORT), body=body,
                        headers=headers, raw_path=path)
    assert r.header("content-length") is not None, (method, path, r)
    assert r.header("transfer-encoding") is None, (method, path, r)
    assert int(r.header("content-length")) == len(r.body), r
    return r


def expect(method, path, status, body=None, **kw):
    r = req(method, path, body=body, **kw)
    assert r.status == status, "%s %s: want %d got %r" % (method, path, status, r)
    return r


def js(r):
    assert r.header("content-type") == "application/json", r
    return r.json()


def reset():
    r = req("DELETE", "/v1.0")
    assert r.status in (204, 404), r
    expect("GET", "/v1.0", 404)


def put3(a="a", qu="q"):
    for m in ("m1", "m2", "m3"):
        expect("PUT", "/v1.0/%s/%s/%s" % (a, qu, m), 201, body=b"body-" + m.encode())


# ---- endpoint table ---------------------------------------------------------

def test_root():
    r = expect("GET", "/", 200)
    assert js(r) == ["v1.0"]
    for m in ("PUT", "POST", "DELETE", "OPTIONS"):
        r = expect(m, "/", 405)
        assert r.body == b""
    expect("HEAD", "/", 405)


def test_methods_per_level():
    reset()
    put3()
    for m in ("PUT", "POST", "HEAD", "OPTIONS"):
        expect(m, "/v1.0", 405)
        expect(m, "/v1.0/a", 405)
    for m in ("PUT", "HEAD", "OPTIONS"):
        expect(m, "/v1.0/a/q", 405)
    for m in ("HEAD", "OPTIONS", "PATCH"):
        expect(m, "/v1.0/a/q/m1", 405)
    r = expect("OPTIONS", "/v1.0", 405)
    assert r.body == b""


def test_unknown_paths():
    for p in ("/v1.1", "/v2/a", "/favicon.ico", "/v1.0/", "/v1.0/a/", "/v1.0//q",
              "/v1.0/a/q/m/x", "/v1.0/a%2Fb/q", "/v1.0/a/q/m%2F"):
        r = expect("GET", p, 404)
        assert r.body == b"", (p, r)


def test_create_replace_get():
    reset()
    r = expect("PUT", "/v1.0/a/q/m", 201, body=b"one")
    assert r.header("content-length") == "0"
    r = expect("PUT", "/v1.0/a/q/m", 204, body=b"two")
    assert r.header("content-length") == "0"
    r = expect("GET", "/v1.0/a/q/m", 200)
    assert js(r) == {"id": "m", "ttl": 0, "hide": 0, "body": "two"}
    expect("PUT", "/v1.0/a/q/m?ttl=100&hide=200", 204, body=b"three")
    r = expect("GET", "/v1.0/a/q/m", 200)
    assert js(r) == {"id": "m", "ttl": 100, "hide": 200, "body": "three"}
    # A replace without parameters takes the defaults again.
    expect("PUT", "/v1.0/a/q/m", 204, body=b"")
    assert js(expect("GET", "/v1.0/a/q/m", 200)) == {"id": "m", "ttl": 0, "hide": 0, "body": ""}


def test_accounts_and_queues():
    reset()
    expect("GET", "/v1.0?detail=bad", 400)  # detail before emptiness
    expect("DELETE", "/v1.0?detail=bad", 400)
    r = expect("GET", "/v1.0/a", 404)
    assert r.body == b"Account not found"
    expect("GET", "/v1.0/a?detail=bad", 404)  # account lookup first
    put3("a1", "q1")
    put3("a1", "q2")
    put3("a2", "q1")
    assert js(expect("GET", "/v1.0", 200)) == ["a1", "a2"]
    assert js(expect("GET", "/v1.0?detail=id", 200)) == ["a1", "a2"]
    assert js(expect("GET", "/v1.0?detail=all", 200)) == [{"id": "a1"}, {"id": "a2"}]
    expect("GET", "/v1.0?detail=none", 204)
    for d in ("attributes", "body", "bad"):
        r = expect("GET", "/v1.0?detail=" + d, 400)
        assert r.body == d.encode()
        expect("GET", "/v1.0/a1?detail=" + d, 400)
    assert js(expect("GET", "/v1.0/a1", 200)) == ["q1", "q2"]
    assert js(expect("GET", "/v1.0/a1?detail=all", 200)) == [{"id": "q1"}, {"id": "q2"}]
    assert js(expect("GET", "/v1.0/a1?marker=q1", 200)) == ["q2"]
    assert js(expect("GET", "/v1.0/a1?marker=unknown", 200)) == ["q1", "q2"]
    assert js(expect("GET", "/v1.0/a1?limit=1", 200)) == ["q1"]
    r = expect("GET", "/v1.0/a1?marker=q2", 404)
    assert r.body == b"Queue not found"
    assert js(expect("GET", "/v1.0?marker=a1", 200)) == ["a2"]
    expect("GET", "/v1.0?marker=a2", 404)
    # DELETE queues: default detail none -> 204; with detail the ids.
    assert js(expect("DELETE", "/v1.0/a1?limit=1&detail=id", 200)) == ["q1"]
    expect("DELETE", "/v1.0/a1", 204)
    expect("GET", "/v1.0/a1", 404)
    assert js(expect("GET", "/v1.0", 200)) == ["a2"]
    # Accounts that vanish and come back go to the end.
    put3("a1", "q1")
    assert js(expect("GET", "/v1.0", 200)) == ["a2", "a1"]
    assert js(expect("DELETE", "/v1.0?detail=all", 200)) == [{"id": "a2"}, {"id": "a1"}]
    expect("DELETE", "/v1.0", 404)


def test_message_lists_and_details():
    reset()
    put3()
    r = expect("GET", "/v1.0/a/q", 200)
    assert [m["id"] for m in js(r)] == ["m1", "m2", "m3"]
    assert js(r)[0] == {"id": "m1", "ttl": 0, "hide": 0, "body": "body-m1"}
    assert js(expect("GET", "/v1.0/a/q?detail=id", 200)) == ["m1", "m2", "m3"]
    assert js(expect("GET", "/v1.0/a/q?detail=body", 200)) == ["body-m1", "body-m2", "body-m3"]
    assert js(expect("GET", "/v1.0/a/q?detail=attributes&limit=1", 200)) == [
        {"id": "m1", "ttl": 0, "hide": 0}]
    expect("GET", "/v1.0/a/q?detail=none", 204)
    r = expect("GET", "/v1.0/a/q?detail=bad", 400)
    assert r.body == b"bad"
    # marker and limit
    assert js(expect("GET", "/v1.0/a/q?marker=m1&limit=1&detail=id", 200)) == ["m2"]
    assert js(expect("GET", "/v1.0/a/q?marker=unknown&detail=id", 200)) == ["m1", "m2", "m3"]
    assert js(expect("GET", "/v1.0/a/q?limit=0&detail=id", 200)) == ["m1", "m2", "m3"]
    assert js(expect("GET", "/v1.0/a/q?limit=-1&detail=id", 200)) == ["m1", "m2", "m3"]
    assert js(expect("GET", "/v1.0/a/q?limit=1&limit=2&detail=id", 200)) == ["m1", "m2"]
    r = expect("GET", "/v1.0/a/q?marker=m3", 404)
    assert r.body == b"Message not found"
    r = expect("GET", "/v1.0/a/nq", 404)
    assert r.body == b"Queue not found"
    r = expect("GET", "/v1.0/na/q", 404)
    assert r.body == b"Account not found"
    expect("GET", "/v1.0/a/nq?detail=bad", 404)  # 404 before bad detail
    # single message detail levels
    r = expect("GET", "/v1.0/a/q/m2?detail=id", 200)
    assert r.body == b"m2" and r.header("content-type") == "application/octet-stream"
    r = expect("GET", "/v1.0/a/q/m2?detail=body", 200)
    assert r.body == b"body-m2" and r.header("content-type") == "application/octet-stream"
    assert js(expect("GET", "/v1.0/a/q/m2?detail=attributes", 200)) == {
        "id": "m2", "ttl": 0, "hide": 0}
    expect("GET", "/v1.0/a/q/m2?detail=none", 204)
    r = expect("GET", "/v1.0/a/q/m9", 404)
    assert r.body == b"Message not found"
    expect("GET", "/v1.0/a/q/m9?detail=bad", 404)
    expect("GET", "/v1.0/a/q/m2?detail=bad", 400)
    # single POST / DELETE
    expect("POST", "/v1.0/a/q/m2?ttl=100", 204)
    assert js(expect("POST", "/v1.0/a/q/m2?hide=200&detail=attributes", 200)) == {
        "id": "m2", "ttl": 100, "hide": 200}
    assert js(expect("GET", "/v1.0/a/q?detail=id", 200)) == ["m1", "m3"]
    assert js(expect("GET", "/v1.0/a/q?detail=id&match_hidden=TRUE", 200)) == ["m1", "m2", "m3"]
    # A hidden marker is still a position.
    assert js(expect("GET", "/v1.0/a/q?detail=id&marker=m2", 200)) == ["m3"]
    r = expect("DELETE", "/v1.0/a/q/m2?detail=body", 200)
    assert r.body == b"body-m2"
    expect("DELETE", "/v1.0/a/q/m2", 404)
    expect("DELETE", "/v1.0/a/q/m1", 204)
    expect("POST", "/v1.0/a/q/m1", 404)


def test_queue_post_and_delete():
    reset()
    put3()
    # claim: atomic get-and-hide of the first visible message
    r = expect("POST", "/v1.0/a/q?limit=1&hide=60&detail=all", 200)
    assert js(r) == [{"id": "m1", "ttl": 0, "hide": 60, "body": "body-m1"}]
    assert js(expect("POST", "/v1.0/a/q?limit=1&hide=60&detail=id", 200)) == ["m2"]
    expect("POST", "/v1.0/a/q", 204)  # neither attribute: valid, changes nothing
    assert js(expect("GET", "/v1.0/a/q?detail=id", 200)) == ["m3"]
    # DELETE without match_hidden leaves hidden ones
    assert js(expect("DELETE", "/v1.0/a/q?detail=id", 200)) == ["m3"]
    r = expect("DELETE", "/v1.0/a/q", 404)  # every message hidden
    assert r.body == b"Message not found"
    assert js(expect("GET", "/v1.0/a", 200)) == ["q"]  # queue with only hidden messages
    # POST with match_hidden un-hides them
    r = expect("POST", "/v1.0/a/q?match_hidden=true&hide=0&ttl=50&detail=attributes", 200)
    assert js(r) == [{"id": "m1", "ttl": 50, "hide": 0}, {"id": "m2", "ttl": 50, "hide": 0}]
    expect("POST", "/v1.0/a/q?hide=5", 204)
    expect("DELETE", "/v1.0/a/q?match_hidden=true", 204)
    expect("GET", "/v1.0/a/q", 404)
    expect("GET", "/v1.0", 404)
    put3()
    expect("DELETE", "/v1.0/a/q?marker=unknown", 204)  # unknown marker: everything
    expect("GET", "/v1.0/a", 404)


def test_replace_keeps_position():
    reset()
    put3()
    expect("PUT", "/v1.0/a/q/m1", 204, body=b"new")
    assert js(expect("GET", "/v1.0/a/q?detail=id", 200)) == ["m1", "m2", "m3"]
    expect("DELETE", "/v1.0/a/q/m1", 204)
    expect("PUT", "/v1.0/a/q/m1", 201, body=b"again")
    assert js(expect("GET", "/v1.0/a/q?detail=id", 200)) == ["m2", "m3", "m1"]


def test_ttl_and_hide_expire():
    reset()
    expect("PUT", "/v1.0/a/q/t?ttl=1", 201, body=b"x")
    expect("PUT", "/v1.0/b/q/h?hide=1", 201, body=b"y")
    assert js(expect("GET", "/v1.0/a/q/t", 200))["ttl"] in (0, 1)
    time.sleep(2)
    expect("GET", "/v1.0/a", 404)
    expect("GET", "/v1.0/a/q", 404)
    assert js(expect("GET", "/v1.0", 200)) == ["b"]
    assert js(expect("GET", "/v1.0/b/q/h", 200))["hide"] == 0
    assert js(expect("GET", "/v1.0/b/q?detail=id", 200)) == ["h"]


# ---- ids and bodies -----------------------------------------------------------

def test_ids_and_bodies():
    reset()
    a, qu, m = "my acct", "my queue", "my messageid"
    path = "/v1.0/%s/%s/%s" % (q(a), q(qu), q(m))
    expect("PUT", path, 201, body=b"spaces")
    assert js(expect("GET", "/v1.0", 200)) == [a]
    assert js(expect("GET", "/v1.0/%s" % q(a), 200)) == [qu]
    r = expect("GET", "/v1.0/%s/%s?marker=%s" % (q(a), q(qu), q("unknown id")), 200)
    assert js(r)[0]["id"] == m
    expect("GET", "/v1.0/%s/%s?marker=%s" % (q(a), q(qu), q(m)), 404)
    expect("PUT", "/v1.0/p/q/a+b", 201, body=b"plus")  # '+' is literal in paths
    assert js(expect("GET", "/v1.0/p/q?detail=id", 200)) == ["a+b"]
    expect("PUT", "/v1.0/p/q/c", 201, body=b"c")
    assert js(expect("GET", "/v1.0/p/q?detail=id&marker=a%2Bb", 200)) == ["c"]
    uni = "k\u00e9y-\u65e5\u672c"
    expect("PUT", "/v1.0/u/%s/%s" % (q(uni), q("?#%+&")), 201, body=b"u")
    assert js(expect("GET", "/v1.0/u", 200)) == [uni]
    assert js(expect("GET", "/v1.0/u/%s?detail=id" % q(uni), 200)) == ["?#%+&"]
    # binary body: all 256 byte values survive raw reads
    blob = bytes(range(256)) * 4
    expect("PUT", "/v1.0/b/q/bin", 201, body=blob)
    assert expect("GET", "/v1.0/b/q/bin?detail=body", 200).body == blob
    # in JSON a body that is not UTF-8 text is base64url (no padding), and
    # nothing else: the answer stays valid JSON and loses nothing
    r = expect("GET", "/v1.0/b/q", 200)
    item = js(r)[0]
    assert "body" not in item and b"\\u0000" not in r.body, item
    b64 = item["body_base64url"]
    assert base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)) == blob
    expect("PUT", "/v1.0/b/q/empty", 201, body=b"")
    assert expect("GET", "/v1.0/b/q/empty?detail=body", 200).body == b""
    # a raw non-UTF-8 id
    expect("PUT", "/v1.0/b/q/%FF%FE", 201, body=b"z")
    assert expect("GET", "/v1.0/b/q/%ff%fe?detail=id", 200).body == b"\xff\xfe"
    assert js(expect("GET", "/v1.0/b/q?detail=id", 200))[-1] == "\ufffd\ufffd"
    # id lengths: 255 bytes fine, 256 refused
    expect("PUT", "/v1.0/b/q/" + "x" * 255, 201, body=b"")
    expect("PUT", "/v1.0/b/q/" + "%41" * 255, 201, body=b"")
    r = expect("PUT", "/v1.0/b/q/" + "x" * 256, 400, body=b"")
    assert r.body
    expect("GET", "/v1.0/" + "y" * 256, 400)


def test_body_limits():
    reset()
    expect("PUT", "/v1.0/a/q/max", 201, body=b"m" * MAX_MSG)
    assert len(expect("GET", "/v1.0/a/q/max?detail=body", 200).body) == MAX_MSG
    r = expect("PUT", "/v1.0/a/q/big", 413, body=b"m" * (MAX_MSG + 1))
    expect("GET", "/v1.0/a/q/big", 404)
    # chunked upload: within the limit it is stored, beyond it 413
    for size, status in ((MAX_MSG, 201), (MAX_MSG + 100, 413)):
        conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
        data = b"c" * size
        chunks = [data[i:i + 10000] for i in range(0, len(data), 10000)]
        conn.request("PUT", "/v1.0/a/q/chunked%d" % size, body=iter(chunks),
                     encode_chunked=True)
        r = conn.getresponse()
        r.read()
        assert r.status == status, (size, r.status)
        assert r.getheader("content-length") is not None
        conn.close()
    assert len(expect("GET", "/v1.0/a/q/chunked%d?detail=body" % MAX_MSG, 200).body) == MAX_MSG
    expect("GET", "/v1.0/a/q/chunked%d" % (MAX_MSG + 100), 404)
    # Expect: 100-continue with a too-big Content-Length: answered before the body
    s = socket.create_connection((HOST, PORT), timeout=5)
    s.sendall(b"PUT /v1.0/a/q/exp HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
              b"Expect: 100-continue\r\n\r\n" % (MAX_MSG * 10))
    head = s.recv(4096)
    s.close()
    assert head.startswith(b"HTTP/1.1 413"), head
    # refused requests with bodies: drained and answered, or answered early
    expect("PUT", "/v1.0/a/q", 405, body=b"x" * 1000)
    expect("PUT", "/v1.0/a/q/%zz", 400, body=b"x" * 1000)
    expect("DELETE", "/v1.0/a/q/chunked%d" % MAX_MSG, 204, body=b"ignored")
    s = socket.create_connection((HOST, PORT), timeout=5)
    s.sendall(b"PUT /v1.0/a/q HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
              b"Expect: 100-continue\r\n\r\n")
    head = s.recv(4096)
    s.close()
    assert head.startswith(b"HTTP/1.1 405"), head


def vm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1])
    raise AssertionError("no VmSize")


def test_declared_body_is_not_reserved():
    """Memory follows the bytes that arrive, not the Content-Length a client
    declares: 40 uploads that declare 16 MiB and stall reserve little, and a
    body that does arrive in full is stored whole."""
    big = 16 << 20
    p, port = start(["--max-message-bytes", str(big)])
    socks = []
    try:
        before = vm_kib(p.pid)
        for i in range(40):
            s = socket.create_connection((HOST, port), timeout=5)
            s.sendall(b"PUT /v1.0/a/q/s%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                      b"0123456789" % (i, big))
            socks.append(s)
        time.sleep(0.3)
        grown = vm_kib(p.pid) - before
        assert grown < 100 * 1024, "VmSize grew by %d KiB for 40 stalled uploads" % grown
        socks[0].sendall(b"x" * (big - 10))
        head = socks[0].recv(4096)
        assert head.startswith(b"HTTP/1.1 201"), head
        r = expect("GET", "/v1.0/a/q/s0?detail=body", 200, port=port)
        assert len(r.body) == big and r.body.startswith(b"0123456789x"), len(r.body)
    finally:
        for s in socks:
            s.close()
        p.stop()


def test_bad_input():
    reset()
    put3()
    for qs in ("limit=x", "limit=", "limit=1.5", "wait=abc", "wait=-1", "ttl=1.5", "ttl=-1",
               "hide=-1", "hide=x", "ttl=99999999999999999999"):
        r = expect("POST", "/v1.0/a/q?" + qs, 400)
        assert r.body, qs
        expect("PUT", "/v1.0/a/q/m1?" + qs, 400, body=b"x")
    expect("PUT", "/v1.0/a/q/m%00", 400, body=b"x")
    expect("PUT", "/v1.0/a/q/m%zz", 400, body=b"x")
    expect("PUT", "/v1.0/a/q/m%4", 400, body=b"x")
    expect("GET", "/v1.0/a/q?marker=%zz", 400)
    expect("GET", "/v1.0/a/q?marker=a%00", 400)
    expect("GET", "/v1.0/a/q?marker=" + "x" * 256, 400)
    expect("GET", "/v1.0/a/q?detail=ALL", 400)
    # ids: 255 decoded bytes is the maximum, one more is a 400
    expect("PUT", "/v1.0/a/q/" + "i" * 255, 201, body=b"x")
    expect("DELETE", "/v1.0/a/q/" + "i" * 255, 204)
    expect("PUT", "/v1.0/a/q/" + "i" * 256, 400, body=b"x")
    expect("PUT", "/v1.0/" + "%41" * 256 + "/q/m", 400, body=b"x")
    # a request line past the connection memory (32 KB) is a 4xx, not a crash or 5xx
    r = req("GET", "/v1.0/a/q?x=" + "y" * 40000)
    assert 400 <= r.status < 500, r
    expect("GET", "/v1.0/a/q?unknown=%zz&detail=id", 200)  # unknown keys ignored
    # the data is untouched by all that
    assert js(expect("GET", "/v1.0/a/q?detail=id", 200)) == ["m1", "m2", "m3"]
    assert expect("GET", "/v1.0/a/q/m1?detail=body", 200).body == b"body-m1"
    # garbage on the wire gets a 4xx, and the server lives on
    s = socket.create_connection((HOST, PORT), timeout=5)
    s.sendall(b"GARBAGE\r\n\r\n")
    s.recv(4096)
    s.close()
    expect("GET", "/", 200)


def test_keepalive():
    reset()
    put3()
    conn = http.client.HTTPConnection(HOST, PORT, timeout=5)
    conn.connect()
    sock = conn.sock
    for path in ("/v1.0/a/q", "/v1.0/a/q/m1", "/v1.0/a/nope", "/v1.0/a/q?detail=bad"):
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        assert r.getheader("connection", "").lower() != "close", path
        assert conn.sock is sock, path
    conn.request("PUT", "/v1.0/a/q/m4", body=b"k")
    r = conn.getresponse()
    r.read()
    assert r.status == 201 and conn.sock is sock
    conn.close()


# ---- long polls ----------------------------------------------------------------

def timed(fn):
    t0 = time.monotonic()
    v = fn()
    return v, time.monotonic() - t0


def test_wait_timeout_and_no_wait():
    reset()
    r, dt = timed(lambda: expect("GET", "/v1.0/a/q?wait=1", 404))
    assert 0.9 <= dt < 2.5, dt
    _, dt = timed(lambda: expect("GET", "/v1.0/a/q?wait=0", 404))
    assert dt < 0.5, dt
    _, dt = timed(lambda: expect("GET", "/v1.0/a?wait=5", 404))  # ignored off message lists
    assert dt < 0.5, dt


def in_thread(fn):
    out = {}

    def run():
        try:
            out["r"] = fn()
        except Exception as e:  # surfaced by the caller
            out["e"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_wait_released_by_put():
    reset()
    t, out = in_thread(lambda: timed(lambda: req("GET", "/v1.0/a/q?wait=10&detail=id")))
    time.sleep(0.3)
    expect("PUT", "/v1.0/a/q/m", 201, body=b"x")
    t.join(10)
    assert "e" not in out, out
    r, dt = out["r"]
    assert r.status == 200 and r.json() == ["m"], r
    assert dt < 2, dt
    # marker-based subscription: waits for something after the marker
    t, out = in_thread(lambda: req("GET", "/v1.0/a/q?wait=10&detail=id&marker=m"))
    time.sleep(0.3)
    assert t.is_alive()
    expect("PUT", "/v1.0/a/q/m", 204, body=b"replace")  # wakes, finds nothing new, waits
    time.sleep(0.3)
    assert t.is_alive()
    expect("PUT", "/v1.0/a/q/n", 201, body=b"y")
    t.join(10)
    assert out["r"].status == 200 and out["r"].json() == ["n"], out


def test_wait_released_by_unhide():
    reset()
    expect("PUT", "/v1.0/a/q/m?hide=1", 201, body=b"x")
    t, out = in_thread(lambda: timed(
        lambda: req("POST", "/v1.0/a/q?wait=10&limit=1&hide=30&detail=id")))
    t.join(10)
    r, dt = out["r"]
    assert r.status == 200 and r.json() == ["m"], r
    assert dt < 2.5, dt
    # and by a POST that sets hide=0
    t, out = in_thread(lambda: req("DELETE", "/v1.0/a/q?wait=10&detail=id"))
    time.sleep(0.3)
    assert t.is_alive()
    expect("POST", "/v1.0/a/q/m?hide=0", 204)
    t.join(10)
    assert out["r"].status == 200 and out["r"].json() == ["m"], out
    expect("GET", "/v1.0/a/q", 404)


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_waiters(n, target):
    socks = []
    for _ in range(n):
        s = socket.create_connection((HOST, PORT), timeout=10)
        s.sendall(b"%s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
        socks.append(s)
    return socks


def read_all(socks, timeout):
    """Read one response from every socket; return {sock: bytes}."""
    bufs = {s: b"" for s in socks}
    done = {}
    deadline = time.monotonic() + timeout
    pending = set(socks)
    for s in socks:
        s.setblocking(False)
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select(list(pending)[:1000], [], [], 0.2)
        for s in ready:
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            bufs[s] += chunk
            head, sep, body = bufs[s].partition(b"\r\n\r\n")
            if sep:
                cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if cl and len(body) >= int(cl[0].split(b":")[1]):
                    done[s] = bufs[s]
                    pending.discard(s)
            if not chunk:
                pending.discard(s)
    return done


def test_wait_outlives_idle_timeout():
    p, port = start(["--idle-timeout", "1"])
    try:
        r, dt = timed(lambda: req("GET", "/v1.0/a/q?wait=3", port=port))
        assert r.status == 404 and 2.9 <= dt < 5, (r, dt)
    finally:
        assert p.stop() == 0


def test_many_long_polls():
    reset()
    n = min(1000, raise_nofile(4096) - 100)
    assert n >= 500, n
    socks = open_waiters(n, b"GET /v1.0/lp/q?wait=30&detail=id")
    try:
        time.sleep(0.5)
        # everything else stays fast while they wait
        worst = 0.0
        for i in range(50):
            _, dt = timed(lambda: expect("PUT", "/v1.0/other/q/m%d" % i, 201, body=b"x"))
            worst = max(worst, dt)
            _, dt = timed(lambda: expect("GET", "/v1.0/other/q/m%d" % i, 200))
            worst = max(worst, dt)
        assert worst < 0.25, worst
        t0 = time.monotonic()
        expect("PUT", "/v1.0/lp/q/hello", 201, body=b"x")
        done = read_all(socks, 20)
        dt = time.monotonic() - t0
        assert len(done) == n, (len(done), n)
        for raw in done.values():
            assert raw.startswith(b"HTTP/1.1 200"), raw[:100]
            assert raw.endswith(b'["hello"]'), raw[-100:]
        assert dt < 10, dt
        print("  %d long-polls released in %.2fs, worst other request %.1f ms"
              % (n, dt, worst * 1000))
    finally:
        for s in socks:
            s.close()


def test_many_claims_each_get_one():
    reset()
    n = 200
    socks = open_waiters(n, b"POST /v1.0/cl/q?wait=30&limit=1&hide=60&detail=id")
    try:
        time.sleep(0.3)
        for i in range(n):
            expect("PUT", "/v1.0/cl/q/m%d" % i, 201, body=b"x")
        done = read_all(socks, 20)
        assert len(done) == n, len(done)
        ids = []
        for raw in done.values():
            assert raw.startswith(b"HTTP/1.1 200"), raw[:100]
            ids.extend(json.loads(raw.partition(b"\r\n\r\n")[2]))
        assert sorted(ids) == sorted("m%d" % i for i in range(n)), "a message was claimed twice"
        expect("GET", "/v1.0/cl/q", 404)  # all hidden now
    finally:
        for s in socks:
            s.close()


def test_concurrent_writers():
    reset()
    writers, per = 8, 200
    errors = []

    def write(w):
        conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
        for i in range(per):
            conn.request("PUT", "/v1.0/cw/q/w%d-%03d" % (w, i), body=b"%d" % i)
            r = conn.getresponse()
            r.read()
            if r.status != 201:
                errors.append(r.status)
        conn.close()
    ts = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors[:5]
    ids = js(expect("GET", "/v1.0/cw/q?detail=id", 200))
    assert len(ids) == writers * per
    for w in range(writers):
        mine = [i for i in ids if i.startswith("w%d-" % w)]
        assert mine == sorted(mine), "per-writer order lost"


# ---- process --------------------------------------------------------------------

def test_cli():
    b = harness.binary("burrowd")
    r = subprocess.run([b, "--help"], capture_output=True, timeout=10)
    assert r.returncode == 0 and b"--listen" in r.stdout
    for argv in ([], ["--listen"], ["--listen", "nope"], ["--listen", "127.0.0.1:1",
                 "--default-ttl", "-1"], ["--bogus"]):
        r = subprocess.run([b] + argv, capture_output=True, timeout=10)
        assert r.returncode != 0, argv


def test_sigterm_exits_zero_with_waiters():
    p, port = start()
    socks = []
    try:
        for _ in range(20):
            s = socket.create_connection((HOST, port), timeout=5)
            s.sendall(b"GET /v1.0/a/q?wait=60 HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        time.sleep(0.3)
        t0 = time.monotonic()
        rc = p.stop(signal.SIGTERM, timeout=10)
        assert rc == 0, (rc, p.output())
        assert time.monotonic() - t0 < 5
    finally:
        for s in socks:
            s.close()


class FakeShed(http.server.BaseHTTPRequestHandler):
    """Records heartbeat requests and accepts them."""
    seen = []

    def _record(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        FakeShed.seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        out = json.dumps({"lease_ms": 3000, "interval_ms": 200, "generation": 1}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_PUT = _record
    do_DELETE = _record

    def log_message(self, *args):
        pass


def test_announce_registers_and_deregisters():
    shed_port = harness.free_port()
    srv = http.server.ThreadingHTTPServer((HOST, shed_port), FakeShed)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    FakeShed.seen = []
    try:
        p, port = start(["--announce", "http://%s:%d" % (HOST, shed_port), "--id", "b1",
                         "--zone", "z1", "--weight", "3", "--credential", "sekrit"])
        harness.wait_until(lambda: any(m == "PUT" for m, *_ in FakeShed.seen), timeout=10,
                           what="a heartbeat")
        m, path, auth, body = next(x for x in FakeShed.seen if x[0] == "PUT")
        assert path == "/_shed/v1/members/burrow/b1", path
        assert auth == "Bearer sekrit", auth
        hb = json.loads(body)
        assert hb["url"] == "http://%s:%d" % (HOST, port) and hb["zone"] == "z1", hb
        assert hb["weight"] == 3 and hb["service"] == "burrow", hb
        expect("GET", "/", 200, port=port)  # serving while announcing
        assert p.stop() == 0
        dels = [x for x in FakeShed.seen if x[0] == "DELETE"]
        assert dels and dels[0][1].startswith("/_shed/v1/members/burrow/b1?incarnation="), dels
    finally:
        srv.shutdown()
        srv.server_close()


def main():
    global PROC, PORT
    PROC, PORT = start()
    tests = [(name, fn) for name, fn in globals().items()
             if name.startswith("test_") and callable(fn)]
    try:
        harness.run_tests(tests)
    finally:
        PROC.stop()


if __name__ == "__main__":
    main()
