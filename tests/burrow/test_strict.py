# SPDX-License-Identifier: ISC
"""burrowd refuses hostile input with a prompt, clear 4xx (issue 15 item 3,
docs/hardening.md), each case on a raw socket so that nothing in between
cleans the request up:

- integers that do not fit (ttl=2^64 was stored as ttl 0, limit=2^64+1 as 1);
- more than 64 query parameters (from 250 on burrowd never answered);
- Transfer-Encoding other than chunked (held until the idle timeout), with
  Content-Length, or in HTTP/1.0; two different Content-Lengths (accepted);
- a 20 KB chunk extension (500);
- ids "." and ".." in any spelling (accepted and echoed);
- a raw NUL in the target (the path was cut short silently);
- an absolute-URI request line (404): served as its path.
"""
import socket
import time

import harness

HOST = "127.0.0.1"
PORT = None


def raw(data, timeout=3.0, check_close=False):
    """Send <data> on a new connection; return (status, headers dict, body,
    seconds to the answer, closed after it: None unless <check_close>)."""
    t0 = time.monotonic()
    s = socket.create_connection((HOST, PORT), timeout=timeout)
    try:
        s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError("closed without an answer: %r" % data[:120])
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        hdrs = {}
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        while len(body) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        elapsed = time.monotonic() - t0
        closed = None
        if check_close:
            s.settimeout(0.5)
            try:
                closed = s.recv(1) == b""
            except socket.timeout:
                closed = False
        return status, hdrs, body[:n], elapsed, closed
    finally:
        s.close()


def request(line, headers=(), body=b""):
    out = line.encode("latin-1") if isinstance(line, str) else line
    out += b"\r\nHost: x\r\n"
    for k, v in headers:
        out += ("%s: %s\r\n" % (k, v)).encode("latin-1")
    return out + b"\r\n" + body


def expect(data, status, text=None, closes=None):
    """One raw request: want <status>, <text> in the body, and when <closes>
    is given, the connection closed (True) or kept (False) after it."""
    st, hdrs, body, elapsed, closed = raw(data, check_close=closes is not None)
    assert st == status, "want %d, got %d %r for %r" % (status, st, body, data[:160])
    assert elapsed < 2.0, "answer took %.1fs" % elapsed
    if text is not None:
        assert text.encode() in body, (body, text)
    if closes is not None:
        assert closed == closes, "closed %s for %r" % (closed, data[:160])
    return hdrs, body


def test_numbers_do_not_wrap():
    expect(request("PUT /v1.0/num/q/m?ttl=18446744073709551616 HTTP/1.1",
                   [("Content-Length", "1")], b"x"), 400, "Bad integer")
    expect(request("GET /v1.0/num/q/m HTTP/1.1"), 404)  # nothing was stored
    expect(request("PUT /v1.0/num/q/m?hide=18446744073709551617 HTTP/1.1",
                   [("Content-Length", "1")], b"x"), 400)
    for i in range(3):
        expect(request("PUT /v1.0/num/q/m%d HTTP/1.1" % i, [("Content-Length", "1")], b"x"), 201)
    expect(request("GET /v1.0/num/q?limit=18446744073709551617 HTTP/1.1"), 400, "Bad integer")
    expect(request("GET /v1.0/num/q?limit=36893488147419103233 HTTP/1.1"), 400)
    _, body = expect(request("GET /v1.0/num/q?limit=9223372036854775807&detail=id HTTP/1.1"), 200)
    assert body.count(b'"m') == 3, body
    expect(request("PUT /v1.0/num/q/big?ttl=3153600000 HTTP/1.1", [("Content-Length", "1")],
                   b"x"), 201)


def test_many_parameters():
    for n in (64, 65, 150, 250, 1000, 3000):
        qs = "&".join("p%d=1" % i for i in range(n))
        if n <= 64:
            expect(request("GET /v1.0/many/q?%s HTTP/1.1" % qs), 404)
        else:
            expect(request("GET /v1.0/many/q?%s HTTP/1.1" % qs), 400, "Too many query parameters")
    expect(request("GET /v1.0/many/q?%s HTTP/1.1" % ("&" * 3000)), 400)
    # The refusal is per request: the next one on the same connection works.
    qs = "&".join("p%d=1" % i for i in range(500))
    expect(request("GET /v1.0/many/q?%s HTTP/1.1" % qs), 400, closes=False)


def test_transfer_codings():
    chunked = b"5\r\nhello\r\n0\r\n\r\n"
    for te in ("gzip, foo", "gzip", "identity", "gzip, chunked", "chunked, gzip", "chunked;x=1"):
        # The body has no end the server can see: it must answer at once,
        # and close (it cannot know where the next request would start).
        expect(request("PUT /v1.0/te/q/m HTTP/1.1", [("Transfer-Encoding", te)], b"hello"), 501,
               "Transfer-Encoding not supported", closes=True)
    expect(request("PUT /v1.0/te/q/m HTTP/1.1", [("Transfer-Encoding", "chunked"),
                                                 ("Transfer-Encoding", "chunked")], chunked),
           501, closes=True)
    expect(b"PUT /v1.0/te/q/m HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked, 400,
           "HTTP/1.0")
    expect(request("PUT /v1.0/te/q/m HTTP/1.1", [("Transfer-Encoding", "CHUNKED")], chunked), 201)
    expect(request("GET /v1.0/te/q/m?detail=body HTTP/1.1"), 200, "hello")


def test_conflicting_lengths():
    chunked = b"5\r\nhello\r\n0\r\n\r\n"
    for hdrs in ([("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
                 [("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
                 [("Transfer-Encoding", "chunked"), ("Content-Length", "0")]):
        expect(request("PUT /v1.0/cl/q/m HTTP/1.1", hdrs, chunked), 400,
               "Content-Length with Transfer-Encoding", closes=True)
    expect(request("PUT /v1.0/cl/q/m HTTP/1.1", [("Content-Length", "5"), ("Content-Length", "6")],
                   b"hello!"), 400, "Conflicting Content-Length", closes=True)
    expect(request("PUT /v1.0/cl/q/m HTTP/1.1", [("Content-Length", "6"), ("Content-Length", "5")],
                   b"hello!"), 400)
    expect(request("GET /v1.0/cl/q/m HTTP/1.1"), 404)
    # The same value twice is one length.
    expect(request("PUT /v1.0/cl/q/m HTTP/1.1", [("Content-Length", "5"), ("Content-Length", "5")],
                   b"hello"), 201)


def test_chunk_extension():
    for n in (10, 1000, 20000, 26000):
        body = b"5;" + b"e" * n + b"\r\nhello\r\n0\r\n\r\n"
        st, _, got, _, _ = raw(request("PUT /v1.0/ext/q/m%d HTTP/1.1" % n,
                                       [("Transfer-Encoding", "chunked")], body))
        assert st == 201, (n, st, got)
        expect(request("GET /v1.0/ext/q/m%d?detail=body HTTP/1.1" % n), 200, "hello")


def test_dot_ids():
    for path in ("/v1.0/dot/q/..", "/v1.0/dot/q/.", "/v1.0/dot/q/%2e%2E", "/v1.0/dot/%2E/m",
                 "/v1.0/../q/m", "/v1.0/dot/.%2e/m"):
        expect(request("PUT %s HTTP/1.1" % path, [("Content-Length", "1")], b"x"), 400,
               "Id is . or ..")
        expect(request("GET %s HTTP/1.1" % path), 400)
    expect(request("GET /v1.0/dot HTTP/1.1"), 404)  # nothing was stored
    expect(request("PUT /v1.0/dot/q/... HTTP/1.1", [("Content-Length", "1")], b"x"), 201)


def test_nul_in_target():
    expect(request("PUT /v1.0/nul/q/m HTTP/1.1", [("Content-Length", "1")], b"x"), 201)
    expect(request(b"PUT /v1.0/nul/q/m\x00/evil HTTP/1.1", [("Content-Length", "1")], b"y"), 400,
           "NUL in request target")
    expect(request(b"GET /v1.0/nul/q/m\x00x HTTP/1.1"), 400)
    expect(request(b"DELETE /v1.0/nul/q/m\x00 HTTP/1.1"), 400)
    expect(request(b"GET /v1.0/nul/q?limit=1\x00&limit=5 HTTP/1.1"), 400)
    _, body = expect(request("GET /v1.0/nul/q/m?detail=body HTTP/1.1"), 200)
    assert body == b"x"


def test_absolute_uri():
    expect(request("PUT http://burrow.service/v1.0/abs/q/m HTTP/1.1", [("Content-Length", "3")],
                   b"abs"), 201)
    _, body = expect(request("GET /v1.0/abs/q/m?detail=body HTTP/1.1"), 200)
    assert body == b"abs"
    _, body = expect(request("GET HTTP://Other:1/v1.0/abs/q?detail=id HTTP/1.1"), 200)
    assert body == b'["m"]', body
    expect(request("GET https://h/v1.0/abs/q/m?detail=body HTTP/1.1"), 200, "abs")
    expect(request("GET http://h HTTP/1.1"), 200, "v1.0")  # no path: "/"
    for target in ("ftp://h/v1.0/abs/q/m", "http:///v1.0/abs/q/m", "http://u:p@h/v1.0/abs/q/m",
                   "h:80", "*", "v1.0/abs/q/m"):
        expect(request("GET %s HTTP/1.1" % target), 400, "Bad request target")
    expect(request("GET /v1.0/abs/q/m%20x HTTP/1.1"), 404)  # encoded space: fine
    expect(request("GET /v1.0/abs/q/m\x01 HTTP/1.1"), 400)


def main():
    global PORT
    PORT = harness.free_port()
    p = harness.Proc([harness.binary("burrowd"), "--listen", "%s:%d" % (HOST, PORT),
                      "--default-ttl", "0"])
    harness.wait_port(HOST, PORT, proc=p)
    try:
        harness.run_tests([(n, f) for n, f in sorted(globals().items())
                           if n.startswith("test_") and callable(f)])
    finally:
        assert p.alive(), p.output()
        assert p.stop() == 0, p.output()


if __name__ == "__main__":
    main()
