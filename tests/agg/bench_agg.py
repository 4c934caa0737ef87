# SPDX-License-Identifier: ISC
"""Benchmark of the aggregator: a page of 100 messages from a queue spread
over nine servers, against a page of 100 from one server directly, side by
side over keep-alive connections from one Python client. The aggregator's
page is the queue's first 100 messages in insertion order, which come from
every server holding the queue (each asked for a window of about its
share); the single server's page is its own first 100.

Method (tests/lib/benchstat.py, docs/performance.md): interleaved rounds
(AGG_BENCH_ROUNDS or SHED_BENCH_ROUNDS, default 15, never fewer than 7),
the order of the sides reversed every other round; each round times a
block of BLOCK back-to-back requests per side (every side in its own steady
state; alternating single requests flattered the aggregator: its work
after an answer slowed the next single-server request). A ratio is taken
inside each round (the two block medians) and printed as the median with
the min and max over the rounds. Beside it, CPU per page from the
scheduler's count (/proc/<pid>/task/*/schedstat) of the aggregator and of
the burrowd processes over each block. The same page through nginx's
proxy_pass to that server is measured alongside: the cost of a bare proxy
hop on this machine, for scale.

Two cells of nine burrowd, one after the other:
  main figures   K=16, R=1: the account's sixteen buckets cover all nine
                 servers, so the queue's messages are spread over all nine;
  k3r3.*         K=3, R=3 (the test deployment): nine servers asked, the
                 messages on the three bucket primaries.

Prints (k3r3. prefixed again for the second cell), "median unit (min,
max, rounds)" unless said:
  agg.list_ms.p50 / single.list_ms.p50 / proxy.list_ms.p50   block medians
  agg.list_ms.p99 / single.list_ms.p99   over all samples
  agg.vs_single              agg / single (issue 14 goal <= 1.3)
  proxy.vs_single            nginx proxy / single
  agg.vs_proxy               agg / nginx proxy
  agg.cpu_us_per_page        the aggregator's CPU per page
  agg.backends_cpu_us_per_page  all nine burrowd's CPU per aggregator page
  single.cpu_us_per_page     the single burrowd's CPU per page
  agg.backend_requests_per_page  backend requests per first page (mean)
  nopoll.*                   a second aggregator on the same cell with
                             aggregation.busy_poll: 0, side by side
  busy_poll.latency_gain     nopoll / agg, per round (> 1: the spin helps)
  paging.*                   each aggregator walking the whole queue by its
                             Link cursors against one server's first page
                             (issue 14 goal paging.agg.vs_single <= 1.5)
  load.*                     agg, nopoll and single (first page and walk)
                             again beside a competing busy-loop process:
                             the busy poll must not be slower under load
  listall.*                  GET /v1.0 through the aggregator against one
                             server's list; aggregator CPU per list and per
                             member asked, the backends' per member
  c.*                        from the C client (agg_load), one page at a
                             time: agg, single, and fan (the client asking
                             every writer itself for exactly its share of
                             the first page: the floor of a fan-out here)
  agg.lists_per_s            pages per second, 8 in flight (C client)
  single.lists_per_s         the same from one burrowd
  agg.servers_asked / servers_with_data
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aggenv  # noqa: E402
import benchstat  # noqa: E402
import harness  # noqa: E402

N_MSG = int(os.environ.get("AGG_BENCH_MESSAGES", "3000"))
ROUNDS = max(7, int(os.environ.get("AGG_BENCH_ROUNDS", os.environ.get("SHED_BENCH_ROUNDS", "15"))))
BLOCK = int(os.environ.get("AGG_BENCH_BLOCK", "40"))
PAGE = 100


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100.0))]


def latency(c, sides, rounds=ROUNDS):
    """Side-by-side latency in interleaved rounds: each round times a block
    of BLOCK back-to-back counted requests of every side, the order of the
    sides reversed every other round (A B C, C B A, ...; benchstat). sides:
    (name, url(), seen(response), {group: pids}) tuples; seen, untimed, says
    whether the request counts; every group's CPU time (schedstat, all
    threads) over the block is divided by the block's counted requests.
    A block is each side in its own steady state (the aggregator's work
    after an answer does not land on the next single-server request, as it
    did when sides alternated request by request), and adjacent blocks see
    the same machine load. Returns ({side: all samples}, {side: [median of
    each round]}, {side: {group: [CPU us per request of each round]}})."""
    by = {name: (url, seen, groups) for name, url, seen, groups in sides}
    samples = {name: [] for name in by}
    cpu = {name: {g: [] for g in by[name][2]} for name in by}

    def block(name, _round):
        url, seen, groups = by[name]
        c0 = {g: benchstat.cpu_ns(pids) for g, pids in groups.items()}
        got = []
        while len(got) < BLOCK:
            u = url()
            t0 = time.perf_counter()
            r = c.request("GET", u)
            dt = (time.perf_counter() - t0) * 1e3
            if seen(r):
                got.append(dt)
        for g, pids in groups.items():
            cpu[name][g].append((benchstat.cpu_ns(pids) - c0[g]) / 1e3 / BLOCK)
        samples[name] += got
        return pct(got, 50)

    medians = benchstat.interleave([name for name, _, _, _ in sides], block, rounds)
    return samples, medians, cpu


def ratio(medians, a, b):
    """Per-round ratios of side a's block median to side b's."""
    return benchstat.ratios(medians[a], medians[b])


class BusyLoad:
    """A competing CPU load: one process spinning in a bounded loop (it
    ends by itself after <limit> s if nobody stops it)."""

    def __init__(self, limit=240):
        self.p = subprocess.Popen(
            [sys.executable, "-c",
             "import time\nt = time.monotonic() + %d\nwhile time.monotonic() < t:\n    pass\n"
             % limit])

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        self.p.wait()


def run(ring, prefix):
    # A second aggregator on the same cell with busy_poll off, measured side
    # by side: what the busy poll buys and what it costs in CPU.
    cell = aggenv.Cell(backend_timeout_ms=2000, ring=ring,
                       busy_poll=os.environ.get("AGG_BENCH_BUSY_POLL"),
                       extra_aggs={"nopoll": {"busy_poll": "0"}})
    nopoll = cell.extra["nopoll"]
    ngx = None
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
        counts, shares = {}, {}
        first_ids = set("m%05d" % i for i in range(PAGE))
        for b in cell.backends:
            r = cell.client.request("GET", "%s/v1.0/%s/%s?detail=id&limit=%d"
                                    % (b["url"], account, queue, N_MSG))
            ids = r.json() if r.status == 200 else []
            counts[b["id"]] = len(ids)
            shares[b["id"]] = len(first_ids.intersection(ids))
        single = cell.backend(max(counts, key=counts.get))
        assert counts[single["id"]] >= PAGE, counts
        backends = [b["proc"].pid for b in cell.backends]
        agg_cpu = {"agg": [cell.proc("agg").pid], "backends": backends}
        nopoll_cpu = {"agg": [cell.proc("nopoll").pid], "backends": backends}
        single_cpu = {"backends": [single["proc"].pid]}

        c = aggenv.Client()
        page1 = "/v1.0/%s/%s?limit=%d" % (account, queue, PAGE)
        # The page of 100 the issue names: the queue's first page through the
        # aggregator (the first 100 PUTs, from every server), against a page
        # of 100 from one server, and through nginx proxying to that server
        # (the cost of a bare proxy hop on this machine, for scale).
        first = c.request("GET", cell.agg + page1).json()
        assert [m["id"] for m in first] == ["m%05d" % i for i in range(PAGE)], "insertion order"
        ngx, nport = harness.nginx(
            harness.tmpdir("shed-agg-nginx-"),
            "  upstream b { server %s; keepalive 16; }\n"
            "  server { listen 127.0.0.1:%%(port)d; location / { proxy_pass http://b; "
            "proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
            % single["url"].split("//")[1])
        proxy = "http://127.0.0.1:%d" % nport
        direct = c.request("GET", single["url"] + page1).json()
        assert c.request("GET", proxy + page1).json() == direct

        def whole(r):
            assert r.status == 200 and len(r.json()) == PAGE, r
            return True

        assert c.request("GET", nopoll + page1).json() == first
        sent0 = cell.metric(cell.agg, "shed_agg_backend_requests_total")
        f, fm, fcpu = latency(c, [("agg", lambda: cell.agg + page1, whole, agg_cpu),
                                  ("nopoll", lambda: nopoll + page1, whole, nopoll_cpu),
                                  ("proxy", lambda: proxy + page1, whole, {}),
                                  ("single", lambda: single["url"] + page1, whole, single_cpu)])
        sent = (cell.metric(cell.agg, "shed_agg_backend_requests_total") - sent0) / (ROUNDS * BLOCK)
        ngx.stop()
        ngx = None

        # Listing every account (GET /v1.0 asks every member of the cell):
        # the aggregator's CPU per list and per member asked, beside one
        # server's own list of accounts.
        members = len(cell.backends)

        def accounts(r):
            assert r.status == 200 and account in r.body.decode(), r
            return True

        la, lam, lacpu = latency(c, [("agg", lambda: cell.agg + "/v1.0", accounts, agg_cpu),
                                     ("single", lambda: single["url"] + "/v1.0", accounts,
                                      single_cpu)])

        # Paging: each aggregator walks the whole queue by its Link cursors
        # (a 404 past the end starts over), against one server's first page.
        def walker(base):
            walk = {"url": page1}

            def seen(r):
                if r.status == 404:  # paged past the end: start over
                    walk["url"] = page1
                    return False
                assert r.status == 200 and len(r.json()) <= PAGE, r
                link = r.header("link")
                walk["url"] = link[1:link.index(">")] if link else page1
                return True

            return lambda: base + walk["url"], seen

        wa, wn = walker(cell.agg), walker(nopoll)
        w, wm, wcpu = latency(c, [("agg", wa[0], wa[1], agg_cpu),
                                  ("nopoll", wn[0], wn[1], nopoll_cpu),
                                  ("single", lambda: single["url"] + page1, whole, single_cpu)])

        # Under a competing CPU load (one process spinning, bounded), busy
        # poll on and off against the single server: the busy poll must
        # never make a page slower when the CPUs are wanted elsewhere.
        load = BusyLoad()
        try:
            lf, lm, lcpu = latency(c, [("agg", lambda: cell.agg + page1, whole, agg_cpu),
                                       ("nopoll", lambda: nopoll + page1, whole, nopoll_cpu),
                                       ("single", lambda: single["url"] + page1, whole,
                                        single_cpu)])
            wa, wn = walker(cell.agg), walker(nopoll)
            lw, lwm, _ = latency(c, [("agg", wa[0], wa[1], agg_cpu),
                                     ("nopoll", wn[0], wn[1], nopoll_cpu),
                                     ("single", lambda: single["url"] + page1, whole, single_cpu)])
        finally:
            load.stop()

        # Throughput: a C closed-loop client (tests/agg/agg_load, libcurl
        # multi) with 8 pages in flight, on the second page (a cursor page:
        # what paging clients send), against the first page of one burrowd.
        loader = os.path.join(harness.BUILD_DIR, "tests", "agg", "agg_load")
        r = c.request("GET", "%s/v1.0/%s/%s?limit=%d" % (cell.agg, account, queue, PAGE))
        link = r.header("link")
        page2 = cell.agg + link[1:link.index(">")]
        r = c.request("GET", page2)
        assert r.status == 200 and len(r.json()) == PAGE, r
        single_url = "%s/v1.0/%s/%s?limit=%d" % (single["url"], account, queue, PAGE)

        def load_run(url):
            out = subprocess.run([loader, url, "8", "1"], check=True, capture_output=True,
                                 text=True).stdout
            kv = dict(x.split("=") for x in out.split())
            assert int(kv["bad"]) == 0, out
            return int(kv["ok"]) / float(kv["secs"])

        # The floor of a fan-out on this machine, from the C client, one
        # page at a time: the aggregator's first page, one server's page,
        # and "fan": the client itself asks every writer of the queue in
        # parallel for exactly its share of the first page (the least any
        # fan-out over every writer must fetch; no merge, no extra hop).
        fan_urls = ["%s/v1.0/%s/%s?limit=%d&shed_stamps=1"
                    % (b["url"], account, queue, max(1, shares[b["id"]]))
                    for b in cell.backends if counts[b["id"]] > 0]

        def c_page(name, _r):
            urls = {"agg": [cell.agg + page1], "single": [single["url"] + page1],
                    "fan": fan_urls}[name]
            argv = [loader, urls[0], "1", "0.5"] + urls[1:]
            out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
            kv = dict(x.split("=") for x in out.split())
            assert int(kv["bad"]) == 0, out
            return float(kv["secs"]) * 1e3 / int(kv["ok"])

        cpage = benchstat.interleave(["agg", "fan", "single"], c_page)

        # 1-second slices in interleaved rounds, so that all see the same load
        rates = benchstat.interleave(
            ["agg", "nopoll", "single"],
            lambda name, _r: load_run({"agg": page2, "nopoll": page2.replace(cell.agg, nopoll),
                                       "single": single_url}[name]), rounds=3)

        out = []

        def line(name, values, unit, digits=2):
            out.append(benchstat.fmt(prefix + name, values, unit, digits))

        line("agg.list_ms.p50", fm["agg"], "ms", 3)
        out.append(prefix + "agg.list_ms.p99: %.3f ms" % pct(f["agg"], 99))
        line("single.list_ms.p50", fm["single"], "ms", 3)
        out.append(prefix + "single.list_ms.p99: %.3f ms" % pct(f["single"], 99))
        line("proxy.list_ms.p50", fm["proxy"], "ms", 3)
        line("agg.vs_single", ratio(fm, "agg", "single"), "ratio")
        line("proxy.vs_single", ratio(fm, "proxy", "single"), "ratio")
        line("agg.vs_proxy", ratio(fm, "agg", "proxy"), "ratio")
        line("agg.cpu_us_per_page", fcpu["agg"]["agg"], "us", 0)
        line("agg.backends_cpu_us_per_page", fcpu["agg"]["backends"], "us", 0)
        line("single.cpu_us_per_page", fcpu["single"]["backends"], "us", 0)
        out.append(prefix + "agg.backend_requests_per_page: %.2f requests" % sent)
        line("nopoll.agg.list_ms.p50", fm["nopoll"], "ms", 3)
        line("nopoll.agg.vs_single", ratio(fm, "nopoll", "single"), "ratio")
        line("nopoll.agg.cpu_us_per_page", fcpu["nopoll"]["agg"], "us", 0)
        line("busy_poll.latency_gain", ratio(fm, "nopoll", "agg"), "ratio")
        line("paging.agg.list_ms.p50", wm["agg"], "ms", 3)
        out.append(prefix + "paging.agg.list_ms.p99: %.3f ms" % pct(w["agg"], 99))
        line("paging.single.list_ms.p50", wm["single"], "ms", 3)
        line("paging.agg.vs_single", ratio(wm, "agg", "single"), "ratio")
        line("paging.nopoll.agg.vs_single", ratio(wm, "nopoll", "single"), "ratio")
        line("paging.agg.cpu_us_per_page", wcpu["agg"]["agg"], "us", 0)
        line("paging.agg.backends_cpu_us_per_page", wcpu["agg"]["backends"], "us", 0)
        line("load.agg.vs_single", ratio(lm, "agg", "single"), "ratio")
        line("load.nopoll.agg.vs_single", ratio(lm, "nopoll", "single"), "ratio")
        line("load.busy_poll.latency_gain", ratio(lm, "nopoll", "agg"), "ratio")
        line("load.agg.cpu_us_per_page", lcpu["agg"]["agg"], "us", 0)
        line("load.nopoll.agg.cpu_us_per_page", lcpu["nopoll"]["agg"], "us", 0)
        line("load.paging.agg.vs_single", ratio(lwm, "agg", "single"), "ratio")
        line("load.paging.nopoll.agg.vs_single", ratio(lwm, "nopoll", "single"), "ratio")
        line("load.paging.busy_poll.latency_gain", ratio(lwm, "nopoll", "agg"), "ratio")
        line("listall.agg.list_ms.p50", lam["agg"], "ms", 3)
        line("listall.single.list_ms.p50", lam["single"], "ms", 3)
        line("listall.agg.cpu_us_per_list", lacpu["agg"]["agg"], "us", 0)
        line("listall.agg.cpu_us_per_member", [v / members for v in lacpu["agg"]["agg"]], "us", 1)
        line("listall.backends_cpu_us_per_member",
             [v / members for v in lacpu["agg"]["backends"]], "us", 1)
        line("c.agg.page_ms", cpage["agg"], "ms", 3)
        line("c.fan.page_ms", cpage["fan"], "ms", 3)
        line("c.single.page_ms", cpage["single"], "ms", 3)
        line("c.agg.vs_single", benchstat.ratios(cpage["agg"], cpage["single"]), "ratio")
        line("c.fan.vs_single", benchstat.ratios(cpage["fan"], cpage["single"]), "ratio")
        line("c.agg.vs_fan", benchstat.ratios(cpage["agg"], cpage["fan"]), "ratio")
        out.append(prefix + "c.fan.requests_per_page: %d requests" % len(fan_urls))
        line("agg.lists_per_s", rates["agg"], "pages/s", 0)
        line("nopoll.agg.lists_per_s", rates["nopoll"], "pages/s", 0)
        line("single.lists_per_s", rates["single"], "pages/s", 0)
        out.append(prefix + "agg.servers_asked: %d servers" % asked)
        out.append(prefix + "agg.servers_with_data: %d servers"
                   % sum(1 for v in counts.values() if v))
        print("\n".join(out), flush=True)
    finally:
        if ngx is not None:
            ngx.stop()
        cell.stop()


def main():
    spread = dict(aggenv.RING, k=16, r=1)
    run(spread, "")
    run(aggenv.RING, "k3r3.")


if __name__ == "__main__":
    main()
