# SPDX-License-Identifier: ISC
"""Benchmark of the aggregator: a page of 100 messages from a queue spread
over nine servers, against the same page from one server directly, measured
side by side in one run over keep-alive connections: agg and single
requests alternate, grouped in rounds of ROUND pairs; each round gives one
ratio of its two medians, and agg.vs_single is the median of those ratios,
so a burst of machine noise hits both sides of a round alike.

Two cells of nine burrowd, one after the other:
  main figures   K=16, R=1: the account's sixteen buckets cover all nine
                 servers, so the queue's messages are spread over all nine;
  k3r3.*         K=3, R=3 (the test deployment): nine servers asked, the
                 messages on the three bucket primaries.

Prints (k3r3. prefixed again for the second cell):
  agg.list_ms.p50 / agg.list_ms.p99   page of 100 through the aggregator
  single.list_ms.p50                   page of 100 from one burrowd
  agg.vs_single                        median over rounds of the round's agg
                                       p50 / single p50 (target <= 1.5)
  agg.vs_single.p50s                   ratio of the whole run's two p50s
  agg.lists_per_s                      pages per second, 8 in flight (C client)
  single.lists_per_s                   the same from one burrowd
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
ROUNDS = int(os.environ.get("AGG_BENCH_ROUNDS", "800"))
ROUND = int(os.environ.get("AGG_BENCH_ROUND", "40"))
PAGE = 100


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100.0))]


def run(ring, prefix):
    cell = aggenv.Cell(backend_timeout_ms=2000, ring=ring)
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
        agg_ms, single_ms, ratios = [], [], []
        url = None
        for i in range(ROUNDS):
            if i % ROUND == 0 and i > 0:
                ratios.append(pct(agg_ms[-ROUND:], 50) / pct(single_ms[-ROUND:], 50))
            if url is None:
                url = "/v1.0/%s/%s?limit=%d" % (account, queue, PAGE)
            t0 = time.perf_counter()
            r = c.request("GET", cell.agg + url)
            agg_ms.append((time.perf_counter() - t0) * 1e3)
            if r.status == 404:  # paged past the end: start over
                agg_ms.pop()
                url = None
                continue
            assert r.status == 200 and len(r.json()) <= PAGE, r
            link = r.header("link")
            url = link[1:link.index(">")] if link else None
            t0 = time.perf_counter()
            r = c.request("GET", "%s/v1.0/%s/%s?limit=%d" % (single["url"], account, queue, PAGE))
            single_ms.append((time.perf_counter() - t0) * 1e3)
            assert r.status == 200 and len(r.json()) == PAGE
        ratios.append(pct(agg_ms[-ROUND:], 50) / pct(single_ms[-ROUND:], 50))

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
        tot = {"agg": [0, 0.0], "single": [0, 0.0]}
        for _ in range(3):
            for name, u in (("agg", page2), ("single", single_url)):
                n, secs = load_run(u)
                tot[name][0] += n
                tot[name][1] += secs
        rate = tot["agg"][0] / tot["agg"][1]
        single_rate = tot["single"][0] / tot["single"][1]

        p50, p99, s50 = pct(agg_ms, 50), pct(agg_ms, 99), pct(single_ms, 50)
        print(prefix + "agg.list_ms.p50: %.3f ms" % p50)
        print(prefix + "agg.list_ms.p99: %.3f ms" % p99)
        print(prefix + "single.list_ms.p50: %.3f ms" % s50)
        print(prefix + "single.list_ms.p99: %.3f ms" % pct(single_ms, 99))
        print(prefix + "agg.vs_single: %.2f ratio" % pct(ratios, 50))
        print(prefix + "agg.vs_single.p50s: %.2f ratio" % (p50 / s50))
        print(prefix + "agg.lists_per_s: %.0f pages/s" % rate)
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
