# SPDX-License-Identifier: ISC
"""Differential test: a routed cell (a line shed and the aggregator over nine
burrowd, K=3, R=3) against one burrowd, fed the same generated sequences of
Burrow operations request by request: PUTs, single-message GET/POST/DELETE,
message lists at every detail level with limits, markers (known, deleted,
unknown, the last one) and match_hidden, claims, updates, deletes with and
without a limit, wait, queue and account lists and deletes. Every answer must
be the same: status, Content-Type, Content-Length, and the body (JSON
compared as values, ttl and hide within one second: the two systems read
the clock at slightly different times).

Differences allowed, as docs/aggregator.md ("Compared with one server")
documents them:
  * headers the aggregator adds (Cache-Control, Link, Shed-*), which are
    not compared;
  * the text of a 404 to a single-message request, which comes from the
    message's own server: it may say "Account not found" where one server
    that also holds other queues says "Queue not found" (the status is
    compared);
  * the order of a queue (account) that emptied on one of its servers while
    it had messages on another and then got messages there again: it keeps
    the place of its oldest incarnation still alive on some server, where
    one server would keep the place of the first one. The test models where
    each message lives (ring/ through agg_ring) and accepts exactly that
    order for such queues.

DIFF_SEQUENCES (300) sequences of DIFF_OPS (24) operations, seed DIFF_SEED.
A failure prints the sequence so far and both answers."""
import json
import os
import random
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aggenv  # noqa: E402
import harness  # noqa: E402
from aggenv import q  # noqa: E402

SEQUENCES = int(os.environ.get("DIFF_SEQUENCES", "300"))
OPS = int(os.environ.get("DIFF_OPS", "24"))
SEED = int(os.environ.get("DIFF_SEED", "14"))

ACCOUNTS = ["a", "b", "c"]
QUEUES = ["q1", "q2", "q3"]
MSGS = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m 8", "\u00e99", "x%y"]
NOTFOUND = (b"Account not found", b"Queue not found", b"Message not found")


class Systems:
    def __init__(self):
        self.cell = aggenv.settled_cell(nbackends=9)
        port = harness.free_port()
        self.single = "http://127.0.0.1:%d" % port
        p = harness.Proc([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % port,
                          "--default-ttl", "0"], name="burrowd-single")
        harness.wait_port("127.0.0.1", port, proc=p)
        self.proc = p
        self.client = aggenv.Client()
        self.owner = {}  # (account, queue, msg) -> backend id (first of its row)

    def owner_of(self, a, qu, m):
        key = (a, qu, m)
        if key not in self.owner:
            _, row = self.cell.ring_info(a, "%s/%s" % (qu, m))
            self.owner[key] = row[0]
        return self.owner[key]

    def both(self, method, path, body=None):
        s = self.client.request(method, self.single + path, body=body)
        r = self.client.request(method, self.cell.line + path, body=body, follow=True)
        return s, r

    def stop(self):
        self.proc.stop()
        self.cell.stop()


def close(a, b):
    """JSON values equal, ttl/hide within 1."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys() or list(a.keys()) != list(b.keys()):
            return False
        for k in a:
            if k in ("ttl", "hide") and isinstance(a[k], int) and isinstance(b[k], int):
                if abs(a[k] - b[k]) > 1:
                    return False
            elif not close(a[k], b[k]):
                return False
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


class Model:
    """Which messages exist (from the single server's answers) and where the
    routed cell keeps them, to know each queue's incarnations per server."""

    def __init__(self, sysm):
        self.sys = sysm
        self.live = {}  # (a, qu) -> set of msgs
        self.order = {}  # (a, qu) -> single-server creation op index of the queue
        self.q_server = {}  # (a, qu, server) -> op index of that incarnation's start
        self.a_server = {}  # (a, server) -> op index
        self.a_order = {}  # a -> op index
        self.step = 0

    def refresh(self):
        """Re-read every queue of the single server (match_hidden), and note
        queue and account incarnations, single and per routed server."""
        self.step += 1
        now = {}
        for a in ACCOUNTS:
            for qu in QUEUES:
                r = self.sys.client.request(
                    "GET", "%s/v1.0/%s/%s?detail=id&match_hidden=true" % (self.sys.single, a, qu))
                now[(a, qu)] = set(r.json()) if r.status == 200 else set()
        for (a, qu), msgs in now.items():
            if msgs and (a, qu) not in self.order:
                self.order[(a, qu)] = self.step
            if not msgs:
                self.order.pop((a, qu), None)
            servers = {self.sys.owner_of(a, qu, m) for m in msgs}
            for srv in servers:
                self.q_server.setdefault((a, qu, srv), self.step)
            for key in [k for k in self.q_server if k[0] == a and k[1] == qu]:
                if key[2] not in servers:
                    del self.q_server[key]
        for a in ACCOUNTS:
            has = any(now[(a, qu)] for qu in QUEUES)
            if has and a not in self.a_order:
                self.a_order[a] = self.step
            if not has:
                self.a_order.pop(a, None)
            servers = {self.sys.owner_of(a, qu, m) for qu in QUEUES for m in now[(a, qu)]}
            for srv in servers:
                self.a_server.setdefault((a, srv), self.step)
            for key in [k for k in self.a_server if k[0] == a]:
                if key[1] not in servers:
                    del self.a_server[key]
        self.live = now

    def queue_rank(self, a, qu):
        """(single place, routed place) of a queue: the step its incarnation
        began on one server, and the earliest step of the incarnations alive
        on the cell's servers (what the aggregator sorts by)."""
        starts = [v for k, v in self.q_server.items() if k[0] == a and k[1] == qu]
        return self.order.get((a, qu)), min(starts) if starts else None

    def account_rank(self, a):
        starts = [v for k, v in self.a_server.items() if k[0] == a]
        return self.a_order.get(a), min(starts) if starts else None


def gen_op(rng, model):
    a = rng.choice(ACCOUNTS[:2] if rng.random() < 0.8 else ACCOUNTS)
    qu = rng.choice(QUEUES[:2] if rng.random() < 0.7 else QUEUES)
    m = rng.choice(MSGS)
    known = sorted(model.live.get((a, qu), set()))

    def marker():
        x = rng.random()
        if x < 0.45 or not known:
            return None
        if x < 0.75:
            return rng.choice(known)
        if x < 0.85:
            return known[-1]
        return rng.choice(["unknown", rng.choice(MSGS)])

    def qs(pairs):
        out = []
        for k, v in pairs:
            if v is None:
                continue
            out.append("%s=%s" % (k, q(str(v))))
        return ("?" + "&".join(out)) if out else ""

    def detail(levels):
        return rng.choice([None, None] + levels)

    x = rng.random()
    base = "/v1.0/%s/%s" % (q(a), q(qu))
    if x < 0.34:
        ttl = rng.choice([None, None, 0, 300])
        hide = rng.choice([None, None, None, 0, 60])
        body = rng.choice([b"", b"hello", ("b-%s" % m).encode(), b"\x00\xff", b"{\"j\":1}"])
        return "PUT", base + "/" + q(m) + qs([("ttl", ttl), ("hide", hide)]), body
    if x < 0.52:
        d = detail(["id", "attributes", "body", "all", "none"])
        lim = rng.choice([None, None, 1, 2, 3, 5, 100, -1])
        wait = 1 if rng.random() < 0.015 else None
        mh = "true" if rng.random() < 0.2 else None
        return "GET", base + qs([("detail", d), ("limit", lim), ("marker", marker()),
                                 ("match_hidden", mh), ("wait", wait)]), None
    if x < 0.60:
        d = detail(["id", "attributes", "all", "none"])
        lim = rng.choice([1, 1, 2, 3])
        wait = 1 if rng.random() < 0.01 else None
        mh = "true" if rng.random() < 0.1 else None
        return "POST", base + qs([("limit", lim), ("hide", 60), ("detail", d),
                                  ("marker", marker() if rng.random() < 0.2 else None),
                                  ("match_hidden", mh), ("wait", wait)]), None
    if x < 0.64:
        d = detail(["id", "attributes", "all"])
        attrs = rng.choice([[("hide", 0), ("match_hidden", "true")], [("ttl", 500)],
                            [("hide", 0)], [("ttl", 0), ("hide", 0), ("match_hidden", "true")]])
        return "POST", base + qs(attrs + [("detail", d), ("marker", marker())]), None
    if x < 0.71:
        d = detail(["id", "attributes", "all", "body"])
        lim = rng.choice([None, 1, 2, 4])
        mh = "true" if rng.random() < 0.2 else None
        return "DELETE", base + qs([("limit", lim), ("marker", marker()), ("detail", d),
                                    ("match_hidden", mh)]), None
    if x < 0.82:
        meth = rng.choice(["GET", "GET", "POST", "DELETE", "HEAD"])
        pairs = [("detail", detail(["id", "attributes", "body", "all", "none"]))]
        if meth == "POST":
            pairs += [("hide", rng.choice([0, 60])), ("ttl", rng.choice([None, 100]))]
        if meth == "HEAD":
            meth = "GET"
        mm = rng.choice(known) if known and rng.random() < 0.7 else m
        return meth, base + "/" + q(mm) + qs(pairs), None
    if x < 0.90:
        d = detail(["id", "all"])
        qk = sorted(qq for (aa, qq), v in model.live.items() if aa == a and v)
        mk = rng.choice(qk + ["nope"]) if qk and rng.random() < 0.4 else None
        lim = rng.choice([None, None, 1, 2])
        return "GET", "/v1.0/%s" % q(a) + qs([("detail", d), ("marker", mk), ("limit", lim)]), None
    if x < 0.93:
        d = detail(["id", "all"])
        qk = sorted(qq for (aa, qq), v in model.live.items() if aa == a and v)
        mk = rng.choice(qk) if qk and rng.random() < 0.5 else None
        lim = rng.choice([None, 1, 2])
        return "DELETE", "/v1.0/%s" % q(a) + qs([("detail", d), ("marker", mk),
                                                ("limit", lim)]), None
    if x < 0.98:
        d = detail(["id", "all"])
        mk = rng.choice(ACCOUNTS) if rng.random() < 0.3 else None
        lim = rng.choice([None, None, 1, 2])
        return "GET", "/v1.0" + qs([("detail", d), ("marker", mk), ("limit", lim)]), None
    bad = rng.choice(["bad", "attributes"])
    return "GET", rng.choice([base, "/v1.0/%s" % q(a), "/v1.0"]) + qs([("detail", bad)]), None


def level_of(path):
    p = path.split("?")[0].strip("/").split("/")
    return len(p)  # 1: accounts, 2: queues, 3: messages, 4: one message


def rank_of(model, lvl, a, name):
    return model.queue_rank(a, name)[1] if lvl == 2 else model.account_rank(name)[1]


def expected_routed(sysm, model, path):
    """The answer the routed cell documents for a queue (account) list while
    some queue came back on one server (diverges()): the single server's
    whole list, ordered by the earliest incarnation alive on some server,
    then the marker and limit applied as Burrow does."""
    base, _, query = path.partition("?")
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    lvl = level_of(path)
    a = base.strip("/").split("/")[1] if lvl == 2 else None
    full = sysm.client.request("GET", sysm.single + base + (
        "?detail=" + q(params["detail"]) if "detail" in params else ""))
    items = full.json() if full.status == 200 else []
    items.sort(key=lambda x: rank_of(model, lvl, a, x if isinstance(x, str) else x["id"]))
    ids = [x if isinstance(x, str) else x["id"] for x in items]
    start = ids.index(params["marker"]) + 1 if params.get("marker") in ids else 0
    items = items[start:]
    limit = int(params.get("limit", "0") or 0)
    return items[:limit] if limit > 0 else items


def diverges(model, path):
    """Does the documented queue/account order difference apply now?"""
    lvl = level_of(path)
    if lvl == 2:
        a = path.split("?")[0].strip("/").split("/")[1]
        ranks = [model.queue_rank(a, qu) for qu in QUEUES if model.live.get((a, qu))]
    elif lvl == 1:
        ranks = [model.account_rank(x) for x in ACCOUNTS
                 if any(model.live.get((x, qu)) for qu in QUEUES)]
    else:
        return False
    return any(s != r for s, r in ranks)


def same(model, method, path, s, r):
    if method == "GET" and level_of(path) in (1, 2) and s.status in (200, 404) and \
            "wait=" not in path and diverges(model, path):
        # documented: a queue (account) that came back on one server
        want = expected_routed(model.sys, model, path)
        if not want:
            return None if r.status == 404 and r.body in NOTFOUND else "want 404, got %r" % r
        if "detail=none" in path:
            return None if r.status == 204 else "want 204, got %r" % r
        if r.status == 200 and close(want, json.loads(r.body)):
            return None
        return "documented order %r, got %r %r" % (want, r, r.body[:300])
    if method == "DELETE" and level_of(path) in (1, 2) and s.status == 200 == r.status and \
            diverges(model, path):
        # documented: the same queues (accounts) go, listed in the order
        # the cell gives them
        sj, rj = json.loads(s.body), json.loads(r.body)
        key = json.dumps
        return None if sorted(map(key, sj)) == sorted(map(key, rj)) else "deleted %r vs %r" % (
            sj, rj)
    if s.status != r.status:
        return "status %d vs %d" % (s.status, r.status)
    if ("content-length" in s.headers) != ("content-length" in r.headers):
        return "Content-Length presence"
    if s.header("content-type") != r.header("content-type"):
        return "Content-Type %r vs %r" % (s.header("content-type"), r.header("content-type"))
    if s.body == r.body:
        return None
    if level_of(path) == 4 and s.status == 404 and s.body in NOTFOUND and r.body in NOTFOUND:
        model.stats["message_404_text"] += 1
        return None  # documented: a single message's 404 names what its server lacks
    if (s.header("content-type") or "").startswith("application/json"):
        sj, rj = json.loads(s.body), json.loads(r.body)
        if close(sj, rj):
            return None
        return "body %s vs %s" % (s.body[:300], r.body[:300])
    return "body %r vs %r" % (s.body[:200], r.body[:200])


def run_sequence(sysm, rng, idx, stats):
    model = Model(sysm)
    model.stats = stats
    model.refresh()
    trail = []
    for k in range(OPS):
        method, path, body = gen_op(rng, model)
        if method == "DELETE" and level_of(path) in (1, 2) and "?" in path and \
                ("marker=" in path or "limit=" in path) and diverges(model, path):
            # The routed cell would select other queues than one server
            # (the documented order difference): the two would drift apart.
            stats["skipped_deletes"] += 1
            continue
        trail.append("%s %s%s" % (method, path, "" if body is None else " body=%r" % body))
        s, r = sysm.both(method, path, body)
        why = same(model, method, path, s, r)
        stats["requests"] += 1
        if why is not None:
            raise AssertionError("sequence %d op %d differs: %s\n  single: %r %r\n  routed: %r %r\n"
                                 "  sequence:\n    %s" % (
                                     idx, k, why, s, s.body[:300], r, r.body[:300],
                                     "\n    ".join(trail)))
        if r.header("shed-partial"):
            raise AssertionError("partial answer in sequence %d: %s" % (idx, r.header("shed-partial")))
        if method != "GET" or level_of(path) == 4:
            model.refresh()
        if level_of(path) in (1, 2) and diverges(model, path):
            stats["queue_order_divergent"] += 1
    # reset both
    s, r = sysm.both("DELETE", "/v1.0")
    assert s.status in (204, 404) and r.status in (204, 404), (s, r)


def test_routed_equals_single():
    sysm = Systems()
    stats = {"requests": 0, "queue_order_divergent": 0, "skipped_deletes": 0,
             "message_404_text": 0}
    try:
        t0 = time.monotonic()
        rng = random.Random(SEED)
        for i in range(SEQUENCES):
            run_sequence(sysm, rng, i, stats)
        dt = time.monotonic() - t0
        print("diff.sequences: %d" % SEQUENCES)
        print("diff.requests_compared: %d" % stats["requests"])
        print("diff.queue_order_documented_difference: %d requests" %
              stats["queue_order_divergent"])
        print("diff.skipped_deletes: %d (a queue/account delete with marker or limit while "
              "that order differs)" % stats["skipped_deletes"])
        print("diff.message_404_text_differs: %d requests" % stats["message_404_text"])
        print("diff.seconds: %.1f" % dt)
    finally:
        sysm.stop()


def main():
    harness.run_tests([("routed_equals_single", test_routed_equals_single)])


if __name__ == "__main__":
    main()
