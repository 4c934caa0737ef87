# SPDX-License-Identifier: ISC
"""The aggregator under writers (docs/aggregator.md "Following a queue",
"Destructive operations"), on a routed cell (a line shed and the aggregator
over nine burrowd, K=3, R=3, every request through the line shed):

  tail_follow_exactly_once   producers PUT while subscribers follow the
                             queue with marker + wait (Burrow's pattern) and
                             with the Link cursor: every message is
                             delivered exactly once, each producer's in the
                             order it wrote them;
  large_delete_beside_lists  DELETE /v1.0/big?marker=unknown over 600
                             queues and a 2500-message delete with a limit,
                             while another account is listed in a loop: the
                             deletes complete (no 503), no list answer is
                             partial, short or a 5xx.

Prints follow.delivered / follow.produced, large_delete.* figures."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aggenv  # noqa: E402
import harness  # noqa: E402

PRODUCERS = 3
PER_PRODUCER = int(os.environ.get("FOLLOW_PER_PRODUCER", "100"))
BIG_QUEUES = int(os.environ.get("FOLLOW_BIG_QUEUES", "600"))
cell = None


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100.0))] if xs else 0.0


def follow(acct, use_link, got, stop):
    """Follow /v1.0/acct/q until stop is set and a poll came back empty."""
    c = aggenv.Client()
    last = None
    url = cell.line + "/v1.0/%s/q?wait=1&detail=id&limit=7" % acct
    while True:
        if use_link or last is None:
            u = url
        else:
            u = cell.line + "/v1.0/%s/q?wait=1&detail=id&marker=%s" % (acct, aggenv.q(last))
        r = c.request("GET", u, follow=True)
        if r.status == 404:
            if stop.is_set():
                return
            continue
        assert r.status == 200, r
        assert not r.header("shed-partial"), r
        ids = r.json()
        assert ids, r
        got.extend(ids)
        last = ids[-1]
        if use_link:
            link = r.header("link")
            if link:  # the page was full: go on after it
                url = cell.agg + link[1:link.index(">")] + "&wait=1"
            else:
                url = cell.agg + "/v1.0/%s/q?wait=1&detail=id&limit=7&marker=%s" % (
                    acct, aggenv.q(last))


def produce(acct, t, done):
    c = aggenv.Client()
    for i in range(PER_PRODUCER):
        mid = "p%d-%03d" % (t, i)
        r = c.request("PUT", cell.line + "/v1.0/%s/q/%s" % (acct, mid), body=mid.encode(),
                      follow=True)
        assert r.status == 201, r
        done.append(mid)
        time.sleep((i % 4) * 0.001)


def test_tail_follow_exactly_once():
    for use_link in (False, True):
        acct = "tail%d" % use_link
        produced, got, stop = [], [], threading.Event()
        f = threading.Thread(target=follow, args=(acct, use_link, got, stop))
        f.start()
        time.sleep(0.2)  # the subscriber is waiting before the first PUT
        ps = [threading.Thread(target=produce, args=(acct, t, produced))
              for t in range(PRODUCERS)]
        for p in ps:
            p.start()
        for p in ps:
            p.join(120)
        time.sleep(0.5)
        stop.set()
        f.join(30)
        assert not f.is_alive()
        name = "link" if use_link else "marker"
        print("follow.%s.delivered: %d of %d produced (%d distinct)" % (
            name, len(got), len(produced), len(set(got))))
        assert len(got) == len(set(got)), "a message was delivered twice"
        assert set(got) == set(produced), (len(set(produced) - set(got)), "lost")
        for t in range(PRODUCERS):
            mine = [m for m in got if m.startswith("p%d-" % t)]
            assert mine == sorted(mine), "producer %d out of order" % t
        # the subscriber saw what one unlimited list shows, in that order
        r = cell.agg_req("GET", "/v1.0/%s/q?detail=id" % acct)
        assert r.json() == got


def test_large_delete_beside_lists():
    c = aggenv.Client()
    for i in range(BIG_QUEUES):
        r = c.request("PUT", cell.line + "/v1.0/big/q%04d/m" % i, body=b"x", follow=True)
        assert r.status == 201, r
    for i in range(2500):
        r = c.request("PUT", cell.line + "/v1.0/big2/q/m%04d" % i, body=b"x", follow=True)
        assert r.status == 201, r
    for i in range(40):
        cell.put("other", "q", "o%02d" % i, b"y")
    stop = threading.Event()
    lat, bad = [], []

    def lister():
        lc = aggenv.Client()
        while not stop.is_set():
            t0 = time.perf_counter()
            r = lc.request("GET", cell.agg + "/v1.0/other/q?detail=id")
            lat.append((time.perf_counter() - t0) * 1e3)
            if r.status != 200 or r.header("shed-partial") or len(r.json()) != 40:
                bad.append((r.status, r.header("shed-partial"), r.body[:80]))

    agg = cell.proc("agg")
    t = threading.Thread(target=lister)
    t.start()
    try:
        time.sleep(0.3)
        idle = list(lat)
        cpu0 = agg.cpu_seconds()
        t0 = time.monotonic()
        r = c.request("DELETE", cell.agg + "/v1.0/big?marker=unknown")
        dt = time.monotonic() - t0
        cpu = agg.cpu_seconds() - cpu0
        assert r.status == 204, r
        assert cell.agg_req("GET", "/v1.0/big").status == 404
        t0 = time.monotonic()
        r = c.request("DELETE", cell.agg + "/v1.0/big2/q?limit=2500&detail=id")
        dt2 = time.monotonic() - t0
        assert r.status == 200, r
        assert r.json() == ["m%04d" % i for i in range(2500)], "oldest first"
        assert cell.agg_req("GET", "/v1.0/big2/q").status == 404
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(30)
    during = lat[len(idle):]
    print("large_delete.queues: %d" % BIG_QUEUES)
    print("large_delete.seconds: %.3f s (aggregator CPU %.3f s)" % (dt, cpu))
    print("large_delete.limit2500.seconds: %.3f s" % dt2)
    print("large_delete.concurrent_list_ms.p50: %.2f ms" % pct(during, 50))
    print("large_delete.concurrent_list_ms.p99: %.2f ms (%d lists; idle p99 %.2f ms)" % (
        pct(during, 99), len(during), pct(idle, 99)))
    print("large_delete.bad_lists: %d" % len(bad))
    assert not bad, bad[:5]


def main():
    global cell
    try:
        cell = aggenv.settled_cell(nbackends=9)
        harness.run_tests([
            ("tail_follow_exactly_once", test_tail_follow_exactly_once),
            ("large_delete_beside_lists", test_large_delete_beside_lists),
        ])
    finally:
        if cell is not None:
            cell.stop()


if __name__ == "__main__":
    main()
