# SPDX-License-Identifier: ISC
"""Benchmark of the aggregator: a page of 100 messages from a queue spread
over nine servers, against a page of 100 from one server directly, side by
side in one run over keep-alive connections from one Python client. The
aggregator's page is the queue's first 100 messages in insertion order,
which come from every server holding the queue (each asked for a window of
about twice its share); the single server's page is its own first 100. Each
round times a block of BLOCK back-to-back requests per side (side order
rotating), and a ratio is the median over rounds of the round's two block
medians: every side is measured in its own steady state while neighbouring
blocks share the machine's load. (Alternating single requests flattered the
aggregator: its work after an answer slowed the next single-server request.)
The same page through nginx's proxy_pass to that server is measured
alongside: the cost of a bare proxy hop on this machine, for scale.

Two cells of nine burrowd, one after the other:
  main figures   K=16, R=1: the account's sixteen buckets cover all nine
                 servers, so the queue's messages are spread over all nine;
  k3r3.*         K=3, R=3 (the test deployment): nine servers asked, the
                 messages on the three bucket primaries.

Prints (k3r3. prefixed again for the second cell):
  agg.list_ms.p50 / p99      the queue's first page through the aggregator
  single.list_ms.p50 / p99   the first page of the server holding the most
                             of the queue, straight from it
  proxy.list_ms.p50          that page through nginx proxy_pass
  agg.vs_single              agg / single (issue 6 target <= 1.5)
  proxy.vs_single            nginx proxy / single
  agg.vs_proxy               agg / nginx proxy
  agg.cpu_us_per_page        the aggregator's CPU time per page (one client)
  agg.backend_requests_per_page  backend requests per first page
  nopoll.*                   a second aggregator on the same cell with
                             aggregation.busy_poll: 0, side by side
  busy_poll.latency_gain     nopoll p50 / agg p50, per round
  paging.*                   the aggregator walking the whole queue by its
                             Link cursors against one server's first page
  agg.lists_per_s            pages per second, 8 in flight (C client)
  single.lists_per_s         the same from one burrowd
  agg.servers_asked / servers_with_data
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aggenv  # noqa: E402
import harness  # noqa: E402

N_MSG = int(os.environ.get("AGG_BENCH_MESSAGES", "3000"))
ROUNDS = int(os.environ.get("AGG_BENCH_ROUNDS", "30"))
BLOCK = int(os.environ.get("AGG_BENCH_BLOCK", "40"))
PAGE = 100


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100.0))]


def latency(c, sides):
    """Side-by-side latency in rounds: each round times BLOCK back-to-back
    requests of every side (sides: (name, url(), seen(response), proc)
    tuples; seen, untimed, says whether the request counts; proc, or None,
    is a process whose CPU time per counted request is measured), the side
    order rotating from round to round. A block is each side in its own
    steady state (the aggregator's work after an answer does not land on the
    next single-server request, as it did when sides alternated request by
    request), and adjacent blocks see the same machine load. Returns the
    samples, the per-round medians and the CPU us per request of every
    side."""
    samples = {name: [] for name, _, _, _ in sides}
    medians = {name: [] for name, _, _, _ in sides}
    cpu = {name: 0.0 for name, _, _, _ in sides}
    for k in range(ROUNDS):
        for name, url, seen, proc in sides[k % len(sides):] + sides[:k % len(sides)]:
            block = []
            c0 = proc.cpu_seconds() if proc else 0.0
            while len(block) < BLOCK:
                u = url()
                t0 = time.perf_counter()
                r = c.request("GET", u)
                dt = (time.perf_counter() - t0) * 1e3
                if seen(r):
                    block.append(dt)
            cpu[name] += (proc.cpu_seconds() if proc else 0.0) - c0
            samples[name] += block
            medians[name].append(pct(block, 50))
    return samples, medians, {n: v * 1e6 / (ROUNDS * BLOCK) for n, v in cpu.items()}


def ratio(medians, a, b):
    """Median and p10-p90 over rounds of side a's median / side b's."""
    rs = [x / y for x, y in zip(medians[a], medians[b])]
    return pct(rs, 50), pct(rs, 10), pct(rs, 90)


def run(ring, prefix):
    # A second aggregator on the same cell with busy_poll off, measured side
    # by side: what the busy poll buys and what it costs in CPU.
    cell = aggenv.Cell(backend_timeout_ms=2000, ring=ring,
                       busy_poll=os.environ.get("AGG_BENCH_BUSY_POLL"),
                       extra_aggs={"nopoll": {"busy_poll": "0"}})
    nopoll = cell.extra["nopoll"]
    try:
        # The account whose K rows cover the most distinct servers (all
        # nine in the spread deployment).
        account = max(("bench%d" % i for i in range(60)),
                      key=lambda a: len(cell.ring_info(a)[0]))
        asked = len(cell.ring_info(account)[0])
        queue = "q"
        for i in range(N_MSG):
            cell.put(account, queue, "m%05d" % i, b"x" * 64)
        # The single server: the one holding the most of this queue.
        counts = {}
        for b in cell.backends:
            r = cell.client.request("GET", "%s/v1.0/%s/%s?detail=id" % (b["url"], account, queue))
            counts[b["id"]] = len(r.json()) if r.status == 200 else 0
        single = cell.backend(max(counts, key=counts.get))
        assert counts[single["id"]] >= PAGE, counts

        c = aggenv.Client()
        page1 = "/v1.0/%s/%s?limit=%d" % (account, queue, PAGE)
        # The page of 100 the issue names: the queue's first page through the
        # aggregator (the first 100 PUTs, from every server), against a page
        # of 100 from one server, and through nginx proxying to that server
        # (the cost of a bare proxy hop on this machine, for scale).
        first = c.request("GET", cell.agg + page1).json()
        assert [m["id"] for m in first] == ["m%05d" % i for i in range(PAGE)], "insertion order"
        home = single
        ngx, nport = harness.nginx(
            harness.tmpdir("shed-agg-nginx-"),
            "  upstream b { server %s; keepalive 16; }\n"
            "  server { listen 127.0.0.1:%%(port)d; location / { proxy_pass http://b; "
            "proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
            % home["url"].split("//")[1])
        proxy = "http://127.0.0.1:%d" % nport
        assert c.request("GET", proxy + page1).json() == c.request("GET", home["url"] + page1).json()

        def whole(r):
            assert r.status == 200 and len(r.json()) == PAGE, r
            return True

        assert c.request("GET", nopoll + page1).json() == first
        sent0 = cell.metric(cell.agg, "shed_agg_backend_requests_total")
        f, fm, fcpu = latency(c, [("agg", lambda: cell.agg + page1, whole, cell.proc("agg")),
                                  ("nopoll", lambda: nopoll + page1, whole, cell.proc("nopoll")),
                                  ("proxy", lambda: proxy + page1, whole, None),
                                  ("single", lambda: home["url"] + page1, whole, None)])
        sent = (cell.metric(cell.agg, "shed_agg_backend_requests_total") - sent0) / (ROUNDS * BLOCK)
        ngx.stop()

        # Paging: the aggregator walks the whole queue by its Link cursors,
        # so about every third page spans two servers; the single side is
        # the first page of the server with most of the queue.
        walk = {"url": page1}

        def walk_seen(r):
            if r.status == 404:  # paged past the end: start over
                walk["url"] = page1
                return False
            assert r.status == 200 and len(r.json()) <= PAGE, r
            link = r.header("link")
            walk["url"] = link[1:link.index(">")] if link else page1
            return True

        w, wm, _ = latency(c, [("agg", lambda: cell.agg + walk["url"], walk_seen, None),
                               ("single", lambda: single["url"] + page1, whole, None)])

        # Throughput: a C closed-loop client (tests/agg/agg_load, libcurl
        # multi) with 8 pages in flight, on the second page (a cursor page:
        # what paging clients send), against the first page of one burrowd.
        load = os.path.join(harness.BUILD_DIR, "tests", "agg", "agg_load")
        r = c.request("GET", "%s/v1.0/%s/%s?limit=%d" % (cell.agg, account, queue, PAGE))
        link = r.header("link")
        page2 = cell.agg + link[1:link.index(">")]
        r = c.request("GET", page2)
        assert r.status == 200 and len(r.json()) == PAGE, r
        single_url = "%s/v1.0/%s/%s?limit=%d" % (single["url"], account, queue, PAGE)

        def load_run(url):
            out = subprocess.run([load, url, "8", "1"], check=True, capture_output=True,
                                 text=True).stdout
            kv = dict(x.split("=") for x in out.split())
            assert int(kv["bad"]) == 0, out
            return int(kv["ok"]), float(kv["secs"])

        # alternate 1-second slices so that both see the same machine load
        tot = {"agg": [0, 0.0], "nopoll": [0, 0.0], "single": [0, 0.0]}
        for _ in range(3):
            for name, u in (("agg", page2), ("nopoll", page2.replace(cell.agg, nopoll)),
                            ("single", single_url)):
                n, secs = load_run(u)
                tot[name][0] += n
                tot[name][1] += secs
        rate = tot["agg"][0] / tot["agg"][1]
        nopoll_rate = tot["nopoll"][0] / tot["nopoll"][1]
        single_rate = tot["single"][0] / tot["single"][1]

        p50, p99, s50 = pct(f["agg"], 50), pct(f["agg"], 99), pct(f["single"], 50)
        print(prefix + "agg.list_ms.p50: %.3f ms" % p50)
        print(prefix + "agg.list_ms.p99: %.3f ms" % p99)
        print(prefix + "single.list_ms.p50: %.3f ms" % s50)
        print(prefix + "single.list_ms.p99: %.3f ms" % pct(f["single"], 99))
        print(prefix + "proxy.list_ms.p50: %.3f ms" % pct(f["proxy"], 50))
        print(prefix + "agg.vs_single: %.2f ratio (rounds p10-p90 %.2f-%.2f)"
              % ratio(fm, "agg", "single"))
        print(prefix + "proxy.vs_single: %.2f ratio (nginx proxy_pass; p10-p90 %.2f-%.2f)"
              % ratio(fm, "proxy", "single"))
        print(prefix + "agg.vs_proxy: %.2f ratio (p10-p90 %.2f-%.2f)" % ratio(fm, "agg", "proxy"))
        print(prefix + "agg.cpu_us_per_page: %.0f us" % fcpu["agg"])
        print(prefix + "agg.backend_requests_per_page: %.2f requests" % sent)
        print(prefix + "nopoll.agg.list_ms.p50: %.3f ms (busy_poll: 0)" % pct(f["nopoll"], 50))
        print(prefix + "nopoll.agg.vs_single: %.2f ratio (p10-p90 %.2f-%.2f)"
              % ratio(fm, "nopoll", "single"))
        print(prefix + "nopoll.agg.cpu_us_per_page: %.0f us" % fcpu["nopoll"])
        print(prefix + "busy_poll.latency_gain: %.2f ratio (nopoll / agg; p10-p90 %.2f-%.2f)"
              % ratio(fm, "nopoll", "agg"))
        print(prefix + "paging.agg.list_ms.p50: %.3f ms" % pct(w["agg"], 50))
        print(prefix + "paging.agg.list_ms.p99: %.3f ms" % pct(w["agg"], 99))
        print(prefix + "paging.single.list_ms.p50: %.3f ms" % pct(w["single"], 50))
        print(prefix + "paging.agg.vs_single: %.2f ratio (rounds p10-p90 %.2f-%.2f)"
              % ratio(wm, "agg", "single"))
        print(prefix + "agg.lists_per_s: %.0f pages/s" % rate)
        print(prefix + "nopoll.agg.lists_per_s: %.0f pages/s" % nopoll_rate)
        print(prefix + "single.lists_per_s: %.0f pages/s" % single_rate)
        print(prefix + "agg.servers_asked: %d servers" % asked)
        print(prefix + "agg.servers_with_data: %d servers" % sum(1 for v in counts.values() if v))
    finally:
        cell.stop()


def main():
    spread = dict(aggenv.RING, k=16, r=1)
    run(spread, "")
    run(aggenv.RING, "k3r3.")


if __name__ == "__main__":
    main()
