# SPDX-License-Identifier: ISC
"""The aggregator's loopback cell, shared by test_agg.py and bench_agg.py:
nine burrowd servers announcing to one line shed and one aggregator shed
(roles [aggregator]), K=3 and R=3 so one account spans up to nine servers.
Also a small keep-alive HTTP client and the ring rows of any key (through
the agg_ring helper built next to this test, which runs ring/ itself).
"""
import http.client
import os
import re
import subprocess
import threading
import time
import urllib.parse

import harness

RING = {"buckets": 1024, "k": 3, "r": 3, "weight_scale": 200, "eps": 0.03,
        "seeds": {"account": 11, "key": 12, "place": 13}}
CRED = "agg-test-credential-0123456789abcdef"


def q(s):
    return urllib.parse.quote(s, safe="")


class Client:
    """Keep-alive connections per host:port; thread-local."""

    def __init__(self, timeout=15.0):
        self.timeout = timeout
        self.local = threading.local()

    def _conn(self, host, port, fresh=False):
        pool = getattr(self.local, "pool", None)
        if pool is None:
            pool = self.local.pool = {}
        key = (host, port)
        if fresh or key not in pool:
            if key in pool:
                pool[key].close()
            pool[key] = http.client.HTTPConnection(host, port, timeout=self.timeout)
        return pool[key]

    def request(self, method, url, body=None, headers=None, follow=False):
        for _ in range(4):
            u = urllib.parse.urlsplit(url)
            target = (u.path or "/") + ("?" + u.query if u.query else "")
            hdrs = {"Host": "burrow.service"}
            hdrs.update(headers or {})
            if body is not None:
                hdrs["Content-Length"] = str(len(body))
            for attempt in range(2):
                c = self._conn(u.hostname, u.port, fresh=attempt > 0)
                try:
                    c.request(method, target, body=body, headers=hdrs)
                    r = c.getresponse()
                    data = r.read()
                    break
                except (http.client.HTTPException, ConnectionError, OSError):
                    if attempt:
                        raise
            resp = harness.Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
            resp.raw_headers = r.getheaders()
            if r.getheader("connection", "").lower() == "close":
                c.close()
                self.local.pool.pop((u.hostname, u.port), None)
            if follow and resp.status in (302, 307) and resp.header("location"):
                url = resp.header("location")
                continue
            return resp
        raise RuntimeError("redirect loop for %s" % url)


def settled_cell(nbackends=6):
    """A cell of its own with a short drain window, once the last join's is
    over: only the current generation's primaries take writes."""
    c = Cell(nbackends=nbackends, drain_window="100ms", pin_lifetime="100ms")
    time.sleep(0.3)
    return c


class Cell:
    def __init__(self, nbackends=9, backend_timeout_ms=600, list_all=True, ring=None,
                 drain_window="60s", pin_lifetime="30s", busy_poll=None, extra_aggs=None):
        """extra_aggs: {name: aggregation settings} for more aggregators on
        the same cell (self.extra[name] is the URL, self.proc(name) the
        process), side by side with the main one."""
        self.ring = dict(ring or RING)
        self.drain_window, self.pin_lifetime = drain_window, pin_lifetime
        self.dir = harness.tmpdir("shed-agg-")
        self.cred_file = os.path.join(self.dir, "credential")
        with open(self.cred_file, "w") as f:
            f.write(CRED + "\n")
        os.chmod(self.cred_file, 0o600)
        self.line_port = harness.free_port()
        self.agg_port = harness.free_port()
        self.line = "http://127.0.0.1:%d" % self.line_port
        self.agg = "http://127.0.0.1:%d" % self.agg_port
        self.backends = []  # dicts: id, url, port, zone, proc
        self.procs = []
        self.client = Client()
        # SHED_MEMBERSHIP=etcd: the cell's membership in a real etcd; the
        # backends announce to the line shed only, the aggregators learn
        # them from etcd (docs/etcd.md).
        self.etcd = None
        if os.environ.get("SHED_MEMBERSHIP") == "etcd":
            import sys
            sys.path.insert(0, os.path.join(harness.SOURCE_DIR, "tests", "etcd"))
            import etcdlib
            self.etcd = etcdlib.Etcd(1)
        self._start_shed("line", self.line_port, {"roles": ["line"], "aggregator": self.agg})
        aggregation = {"list_all": list_all, "backend_timeout": "%dms" % backend_timeout_ms}
        if busy_poll is not None:
            aggregation["busy_poll"] = busy_poll
        self._start_shed("agg", self.agg_port,
                         {"roles": ["aggregator"], "aggregation": aggregation})
        self.extra = {}
        for name, settings in (extra_aggs or {}).items():
            port = harness.free_port()
            self._start_shed(name, port, {"roles": ["aggregator"],
                                          "aggregation": dict(aggregation, **settings)})
            self.extra[name] = "http://127.0.0.1:%d" % port
        for i in range(nbackends):
            self._start_backend("b%d" % (i + 1), "z%d" % (i % 3))
        self.wait_members(nbackends)

    def _yaml(self, doc, indent=0):
        out = []
        pad = "  " * indent
        for k, v in doc.items():
            if isinstance(v, dict):
                out.append("%s%s:" % (pad, k))
                out.append(self._yaml(v, indent + 1))
            elif isinstance(v, list):
                out.append("%s%s: [%s]" % (pad, k, ", ".join(str(x) for x in v)))
            elif isinstance(v, bool):
                out.append("%s%s: %s" % (pad, k, "true" if v else "false"))
            else:
                out.append("%s%s: %s" % (pad, k, v))
        return "\n".join(out)

    def _start_shed(self, name, port, extra):
        doc = {
            "cell": "a",
            "listen": ['"127.0.0.1:%d"' % port],
            "default_service": "burrow",
            "credential_file": self.cred_file,
            "state_dir": harness.tmpdir("shed-agg-state-"),
            "timings": {"heartbeat_interval": "200ms", "lease": "1500ms", "evict_after": "60s",
                        "drain_window": self.drain_window, "pin_lifetime": self.pin_lifetime,
                        "join_heartbeats": 1, "evict_cap": 1},
            "services": {"burrow": {"kind": "burrow", "buckets": self.ring["buckets"],
                                    "k": self.ring["k"], "r": self.ring["r"],
                                    "weight_scale": self.ring["weight_scale"],
                                    "eps": self.ring["eps"], "seeds": self.ring["seeds"]}},
        }
        doc.update(extra)
        if self.etcd is not None:
            doc["membership"] = {"store": "etcd", "endpoints": self.etcd.endpoints}
        path = os.path.join(self.dir, name + ".yaml")
        with open(path, "w") as f:
            f.write(self._yaml(doc) + "\n")
        p = harness.Proc([harness.binary("shed"), "-c", path], name="shed-" + name)
        harness.wait_port("127.0.0.1", port, proc=p)
        self.procs.append(p)
        return p

    def _start_backend(self, bid, zone):
        port = harness.free_port()
        url = "http://127.0.0.1:%d" % port
        argv = [harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % port, "--default-ttl", "0",
                "--id", bid, "--zone", zone, "--weight", "100", "--credential-file", self.cred_file,
                "--public-url", url, "--service", "burrow", "--announce", self.line]
        if self.etcd is None:
            argv += ["--announce", self.agg]
            for extra in self.extra.values():
                argv += ["--announce", extra]
        p = harness.Proc(argv, name="burrowd-" + bid)
        harness.wait_port("127.0.0.1", port, proc=p)
        self.backends.append({"id": bid, "url": url, "port": port, "zone": zone, "proc": p})
        self.procs.append(p)

    def backend(self, bid):
        return next(b for b in self.backends if b["id"] == bid)

    def members_up(self, base):
        try:
            r = harness.request("GET", base + "/metrics", timeout=5.0)
        except OSError:
            return 0  # a busy machine: ask again
        m = re.search(r'shed_members\{service="burrow",state="up"\} (\d+)', r.body.decode())
        return int(m.group(1)) if m else 0

    def proc(self, name):
        return next(p for p in self.procs if p.name == "shed-" + name)

    def wait_members(self, n, timeout=40.0):
        for base in [self.line, self.agg] + list(self.extra.values()):
            harness.wait_until(lambda: self.members_up(base) >= n, timeout=timeout,
                               what="%d backends up on %s" % (n, base))

    def metric(self, base, name):
        r = harness.request("GET", base + "/metrics")
        tot = 0.0
        for line in r.body.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                tot += float(line.rsplit(" ", 1)[1])
        return tot

    def account_where(self, prefix, pred, tries=200):
        """The first account prefix+N whose servers in the global order
        (sorted ids) and bucket primaries satisfy pred(order, primaries)."""
        for i in range(tries):
            acct = "%s%d" % (prefix, i)
            servers, _ = self.ring_info(acct)
            order, prim = sorted(servers), self.primaries(acct)
            if pred(order, prim):
                return acct, order, prim
        raise AssertionError("no account %s* with the wanted servers" % prefix)

    def primaries(self, account):
        """The first server of each of the account's K rows, from ring/."""
        return set(self._agg_ring(account, "-").get("primaries", []))

    def ring_info(self, account, key=None):
        """(servers of the account, row of key or None), from ring/ itself."""
        out = self._agg_ring(account, key or "-")
        return out.get("servers", []), out.get("row")

    def _agg_ring(self, account, key):
        exe = os.path.join(harness.BUILD_DIR, "tests", "agg", "agg_ring")
        r = self.ring
        argv = [exe, str(r["buckets"]), str(r["k"]), str(r["r"]), str(r["weight_scale"]),
                str(r["eps"]), str(r["seeds"]["account"]), str(r["seeds"]["key"]),
                str(r["seeds"]["place"]), account, key]
        argv += ["%s=%s=%s=100" % (b["id"], b["url"], b["zone"]) for b in self.backends]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}

    # Burrow helpers ----------------------------------------------------------
    def put(self, account, queue, msg, body, via=None, params=""):
        """PUT through the line shed (following its 307) or straight to <via>."""
        base = via or self.line
        url = "%s/v1.0/%s/%s/%s%s" % (base, q(account), q(queue), q(msg), params)
        r = self.client.request("PUT", url, body=body, follow=True)
        assert r.status in (201, 204), (url, r)
        return r

    def agg_req(self, method, path, **kw):
        return self.client.request(method, self.agg + path, **kw)

    def stop(self):
        for p in self.procs:
            if p.alive():
                p.signal(__import__("signal").SIGCONT)
                p.stop()
