# SPDX-License-Identifier: ISC
"""Message bodies are bytes, end to end (docs/client.md "Message bodies").

Bodies with 0x00, 0xFF, invalid UTF-8 and every byte value go in with PUT and
come back exactly: raw (detail=body), and inside JSON as "body" (UTF-8 text
without NUL) or "body_base64url" (anything else). Checked against burrowd
alone, through a routed cell (a line shed, the aggregator and three burrowd),
and with shedc on that cell. Every JSON answer must be strict UTF-8 without a
\\u0000 escape, so that any JSON decoder reads it.
"""
import base64
import json
import os
import pty
import subprocess
import sys
import tty
import urllib.parse

import harness

sys.path.insert(0, os.path.join(harness.SOURCE_DIR, "tests", "agg"))
import aggenv  # noqa: E402  (the aggregator's loopback cell)

BODIES = {
    "nul": b"\x00",
    "ff": b"\xff",
    "mixed": b"a\x00b\xffc",
    "badutf8": b"\xc3\x28 \xed\xa0\x80 \xf8\x88\x80\x80\x80 \xc0\xaf",
    "truncated": "caf\u00e9".encode()[:-1],
    "text": "h\u00e9llo \u65e5\u672c\n".encode(),
    "empty": b"",
    "allbytes": bytes(range(256)) * 3,
}
TEXT = {"text", "empty"}  # the only ones that stay a JSON string


def q(s):
    return urllib.parse.quote(s, safe="")


def strict_json(resp):
    """Parse an answer as any strict decoder would: UTF-8, no NUL escape."""
    assert resp.header("content-type", "").startswith("application/json"), resp
    assert b"\\u0000" not in resp.body, resp.body[:200]
    return json.loads(resp.body.decode("utf-8", "strict"))


def unb64(s):
    assert "=" not in s and "+" not in s and "/" not in s, s  # base64url, no padding
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def body_of(v):
    """The bytes of a detail=all object, a claim item or a detail=body element."""
    if isinstance(v, str):
        return v.encode("utf-8")
    assert ("body" in v) != ("body_base64url" in v), v  # exactly one of the two
    if "body" in v:
        return v["body"].encode("utf-8")
    return unb64(v["body_base64url"])


def check_item(name, v):
    assert body_of(v) == BODIES[name], (name, v)
    want_text = name in TEXT
    if isinstance(v, dict):
        assert ("body" in v) == want_text, (name, v)
    else:
        assert want_text, (name, v)


def check_list(items, detail, names=None):
    names = sorted(names or BODIES)
    if detail == "body":
        got = sorted(body_of(v) for v in items)
        assert got == sorted(BODIES[n] for n in names), got
        for v in items:
            name = next(n for n in names if BODIES[n] == body_of(v))
            check_item(name, v)
    else:
        assert sorted(v["id"] for v in items) == names, items
        for v in items:
            check_item(v["id"], v)


# ---- burrowd alone ------------------------------------------------------------

def test_burrowd_direct():
    port = harness.free_port()
    p = harness.Proc([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % port,
                      "--default-ttl", "0"], name="burrowd")
    harness.wait_port("127.0.0.1", port, proc=p)
    base = "http://127.0.0.1:%d/v1.0/acct/bytes" % port
    for name, body in BODIES.items():
        r = harness.request("PUT", base + "/" + name, body=body)
        assert r.status == 201, (name, r)
    for name, body in BODIES.items():
        r = harness.request("GET", base + "/" + name + "?detail=body")
        assert r.status == 200 and r.body == body, (name, r)
        assert r.header("content-type") == "application/octet-stream"
        assert int(r.header("content-length")) == len(body)
        check_item(name, strict_json(harness.request("GET", base + "/" + name)))
        check_item(name, strict_json(harness.request("GET", base + "/" + name + "?detail=all")))
        attrs = strict_json(harness.request("GET", base + "/" + name + "?detail=attributes"))
        assert "body" not in attrs and "body_base64url" not in attrs, attrs
    for detail in ("all", "body"):
        check_list(strict_json(harness.request("GET", base + "?detail=" + detail)), detail)
    # a page at a time, the marker after a binary body
    page = strict_json(harness.request("GET", base + "?limit=2&marker=nul"))
    assert [v["id"] for v in page] == ["ff", "mixed"], page
    # an update and a claim answer with the message after the change
    check_item("ff", strict_json(harness.request("POST", base + "/ff?ttl=100&detail=all")))
    claimed = strict_json(harness.request("POST", base + "?limit=100&hide=60&detail=all"))
    check_list(claimed, "all")
    # hidden now: a delete with match_hidden gives everything back once more
    gone = strict_json(harness.request("DELETE", base + "?match_hidden=true&detail=body"))
    check_list(gone, "body")
    assert p.stop() == 0


# ---- a routed cell: line shed -> burrowd, lists through the aggregator -----------

ctx = {}


def cell():
    if "cell" not in ctx:
        ctx["cell"] = aggenv.Cell(nbackends=3)
    return ctx["cell"]


def test_through_the_cell():
    c = cell()
    for name, body in BODIES.items():
        c.put("cellacct", "bytes", name, body)
    path = "/v1.0/cellacct/bytes"
    for name, body in BODIES.items():
        r = c.client.request("GET", c.line + path + "/" + name + "?detail=body", follow=True)
        assert r.status == 200 and r.body == body, (name, r)
        r = c.client.request("GET", c.line + path + "/" + name, follow=True)
        check_item(name, strict_json(r))
    for detail in ("all", "body"):
        # the line shed redirects a list to the aggregator
        r = c.client.request("GET", c.line + path + "?detail=" + detail, follow=True)
        check_list(strict_json(r), detail)
    # the aggregator's own pages, a few items at a time (merge across servers)
    got, marker = [], None
    for _ in range(len(BODIES)):
        r = c.agg_req("GET", path + "?limit=3&detail=all" +
                      ("&marker=" + q(marker) if marker else ""), follow=True)
        if r.status == 404:
            break
        page = strict_json(r)
        got += page
        marker = page[-1]["id"]
    check_list(got, "all")
    # a claim through the aggregator hands out the bytes too
    r = c.agg_req("POST", path + "?limit=100&hide=60&detail=all")
    check_list(strict_json(r), "all")


# ---- shedc ---------------------------------------------------------------------

def shedc(c, args, stdin=None):
    return subprocess.run([harness.binary("shedc"), "--shed", "127.0.0.1:%d" % c.line_port]
                          + args, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=30)


def test_shedc():
    c = cell()
    base = "http://burrow.service/v1.0/cliacct/bytes"
    for name, body in BODIES.items():
        r = shedc(c, ["put", base + "/" + name], stdin=body)
        assert r.returncode == 0, (name, r.stderr)
    for name, body in BODIES.items():
        # stdout is a pipe: the bytes exactly, no newline added
        for args in ([], ["--detail", "body"], ["--detail", "all"]):
            r = shedc(c, ["get", base + "/" + name] + args)
            assert r.returncode == 0 and r.stdout == body, (name, args, r)
        r = shedc(c, ["--json", "get", base + "/" + name])
        assert r.returncode == 0, (name, r.stderr)
        check_item(name, json.loads(r.stdout.decode("utf-8", "strict")))
        r = shedc(c, ["--json", "get", base + "/" + name, "--detail", "body"])
        assert r.returncode == 0, (name, r.stderr)
        check_item(name, json.loads(r.stdout.decode("utf-8", "strict")))
    # on a terminal a newline follows a body that does not end with one
    for name, want in (("ff", b"\xff\n"), ("text", BODIES["text"])):
        master, slave = pty.openpty()
        tty.setraw(slave)  # no \n -> \r\n translation
        r = subprocess.run([harness.binary("shedc"), "--shed", "127.0.0.1:%d" % c.line_port,
                            "get", base + "/" + name], stdout=slave, stderr=subprocess.PIPE,
                           timeout=30)
        os.close(slave)
        got = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            got += chunk
        os.close(master)
        assert r.returncode == 0 and got == want, (name, got, r.stderr)
    # a list with NUL and 0xFF bodies: whole, one line per message
    r = shedc(c, ["list", base])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split(b"\n")
    # the text body ends with a newline of its own: one extra line
    assert len(lines) == len(BODIES) + 2 and lines[-1] == b"", lines
    byid = {ln.split(b"\t", 1)[0]: ln for ln in lines if b"\t" in ln}
    assert byid[b"ff"].endswith(b"\tbase64url:_w"), byid
    assert byid[b"nul"].endswith(b"\tbase64url:AA"), byid
    r = shedc(c, ["--json", "list", base, "--all", "--limit", "3"])
    assert r.returncode == 0, r.stderr
    check_list(json.loads(r.stdout.decode("utf-8", "strict")), "all")
    r = shedc(c, ["--json", "list", base, "--detail", "body"])
    assert r.returncode == 0, r.stderr
    check_list(json.loads(r.stdout.decode("utf-8", "strict")), "body")
    r = shedc(c, ["--json", "claim", base, "--limit", "100"])
    assert r.returncode == 0, r.stderr
    check_list(json.loads(r.stdout.decode("utf-8", "strict")), "all")


harness.run_tests([
    ("burrowd_direct", test_burrowd_direct),
    ("through_the_cell", test_through_the_cell),
    ("shedc", test_shedc),
])
