# SPDX-License-Identifier: ISC
"""A two-cell shed deployment on loopback for the master tests and the
failover benchmark: cells a and b, two line sheds each (peers of each
other), two masters, burrowd backends that heartbeat to ONE line shed of
their cell each (peer sync must spread them), plus a Python encoder of
escalation tokens (proto/token.h layout) to forge and tamper with.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import signal
import struct
import time
import urllib.parse

import harness

SECRET = "master-test-secret"
HOST = "burrow.service"
RING = ["    kind: burrow", "    buckets: 1024", "    k: 3", "    r: 3",
        "    seeds: {account: 11, key: 22, place: 33}"]


def token(cells, hops=1, expiry=None, service="burrow", key=SECRET, nonce=7, version=1):
    """An escalation token exactly as proto/token.c encodes it."""
    if expiry is None:
        expiry = int(time.time()) + 30
    raw = struct.pack(">BBQQ", version, hops, expiry, nonce)
    raw += bytes([len(service)]) + service.encode()
    raw += bytes([len(cells)])
    for c in cells:
        raw += bytes([len(c)]) + c.encode()
    raw += hmac.new(key.encode(), raw, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def token_cells(tok):
    """Decode the visited cells and hops of a token (no verification)."""
    raw = base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4))
    hops = raw[1]
    p = 18
    slen = raw[p]
    p += 1 + slen
    n = raw[p]
    p += 1
    cells = []
    for _ in range(n):
        ln = raw[p]
        cells.append(raw[p + 1:p + 1 + ln].decode())
        p += 1 + ln
    return cells, hops


def query_token(location):
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    return q.get("shed_esc", [None])[0]


def call(base, method, path, headers=None, source=None, body=None, timeout=5.0):
    """One request to <base> with Host: burrow.service; redirects not
    followed. <source> binds the client address (127.0.0.x) so that the
    shed sees distinct clients."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        hdrs = {"Host": HOST}
        hdrs.update(headers or {})
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return harness.Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def origin(url):
    u = urllib.parse.urlsplit(url)
    return "%s://%s" % (u.scheme, u.netloc)


def stop_all(procs):
    """SIGTERM every process of <procs> (name -> harness.Proc) still running:
    each must exit 0 (under ASan: no leaks)."""
    for name, p in procs.items():
        if p.alive():
            assert p.stop(signal.SIGTERM) == 0, (name, p.output()[-2000:])


def get_json(url):
    r = harness.request("GET", url)
    assert r.status == 200, r
    return r.json()


class Cluster:
    def __init__(self, lease_a="1000ms", lease_b="1000ms", nback=3, sync="100ms", debug=True):
        self.debug = debug
        self.dir = harness.tmpdir("shed-master-")
        self.ports = {}
        for name in ("m1", "m2", "a1", "a2", "b1", "b2"):
            self.ports[name] = harness.free_port()
        self.url = {n: "http://127.0.0.1:%d" % p for n, p in self.ports.items()}
        self.agg = {"a": "http://127.0.0.1:%d" % harness.free_port(),
                    "b": "http://127.0.0.1:%d" % harness.free_port()}
        self.lease = {"a": lease_a, "b": lease_b}
        self.sync = sync
        self.procs = {}
        # SHED_MEMBERSHIP=etcd: the same tests with the cells' membership in
        # a real etcd instead of peer sync (docs/etcd.md, tests/etcd).
        self.etcd = None
        if os.environ.get("SHED_MEMBERSHIP") == "etcd":
            import sys
            sys.path.insert(0, os.path.join(harness.SOURCE_DIR, "tests", "etcd"))
            import etcdlib
            self.etcd = etcdlib.Etcd(1)
        for m in ("m1", "m2"):
            self.start_shed(m)
        for s in ("a1", "a2", "b1", "b2"):
            self.start_shed(s)
        self.backends = {}
        for cell in ("a", "b"):
            for i in range(nback):
                # Backend i heartbeats to only one line shed of its cell.
                self.start_backend(cell, i, "%s%d" % (cell, 1 + i % 2))
        harness.wait_until(self.converged, timeout=20, what="sheds and masters see every backend")

    # -- processes --

    def config(self, name):
        lines = ['listen: ["127.0.0.1:%d"]' % self.ports[name],
                 "default_service: burrow",
                 "credential: %s" % SECRET,
                 'register_networks: ["127.0.0.0/8"]']
        if name.startswith("m"):
            lines += ["cell: m", "roles: [master]", "cells:"]
            for cell in ("a", "b"):
                lines += ["  - name: %s" % cell, "    proximity: 10",
                          "    sheds: [%s, %s]" % (self.url[cell + "1"], self.url[cell + "2"])]
            lease = "1000ms"
        else:
            cell = name[0]
            lease = self.lease[cell]
            sd = os.path.join(self.dir, "state-" + name)
            os.makedirs(sd, exist_ok=True)
            if self.etcd is not None:
                lines += ["membership:", "  store: etcd",
                          "  endpoints: [%s]" % ", ".join(self.etcd.endpoints)]
            else:
                lines.append("peers: [%s, %s]" % (self.url[cell + "1"], self.url[cell + "2"]))
            lines += ["cell: %s" % cell, "roles: [line]",
                      "masters: [%s, %s]" % (self.url["m1"], self.url["m2"]),
                      "aggregator: %s" % self.agg[cell],
                      "state_dir: %s" % sd]
        lines += ["timings:", "  heartbeat_interval: 200ms", "  lease: %s" % lease,
                  "  evict_after: 60s", "  drain_window: 60s", "  pin_lifetime: 30s",
                  "  settle_window: 0",  # routing itself; lookups: tests/reach
                  "  join_heartbeats: 1", "  sync_interval: %s" % self.sync,
                  "services:", "  burrow:"] + RING
        return "\n".join(lines) + "\n"

    def start_shed(self, name, wait=True):
        path = os.path.join(self.dir, name + ".yaml")
        with open(path, "w") as f:
            f.write(self.config(name))
        argv = [harness.binary("shed")] + (["-d"] if self.debug else []) + ["-c", path]
        p = harness.Proc(argv, name="shed-" + name)
        self.procs[name] = p
        if wait:
            harness.wait_port("127.0.0.1", self.ports[name], proc=p)
        return p

    def start_backend(self, cell, i, shed):
        port = harness.free_port()
        bid = "%s-b%d" % (cell, i)
        p = harness.Proc([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % port,
                          "--default-ttl", "0", "--announce", self.url[shed], "--id", bid,
                          "--credential", SECRET], name="burrowd-" + bid)
        harness.wait_port("127.0.0.1", port, proc=p)
        self.backends[bid] = {"proc": p, "url": "http://127.0.0.1:%d" % port, "cell": cell,
                              "shed": shed}

    # -- views --

    def members_up(self, shed):
        try:
            st = get_json(self.url[shed] + "/_shed/v1/status")
        except (OSError, AssertionError):
            return set()
        return {m["id"] for s in st["services"] for m in s["members"] if m["state"] == "up"}

    def member_state(self, shed, bid):
        st = get_json(self.url[shed] + "/_shed/v1/status")
        for s in st["services"]:
            for m in s["members"]:
                if m["id"] == bid:
                    return m["state"]
        return None

    def master_live(self, m):
        try:
            st = get_json(self.url[m] + "/_shed/v1/master")
        except (OSError, AssertionError):
            return {}
        return {c["name"]: sum(s["live"] for s in c["services"]) for c in st["cells"]}

    def alive_ids(self, cell):
        return {b for b, v in self.backends.items() if v["cell"] == cell and v["proc"].alive()}

    def converged(self):
        for cell in ("a", "b"):
            want = self.alive_ids(cell)
            for s in (cell + "1", cell + "2"):
                if self.procs[s].alive() and self.members_up(s) != want:
                    return False
        for m in ("m1", "m2"):
            live = self.master_live(m)
            if live.get("a") != len(self.alive_ids("a")) or \
               live.get("b") != len(self.alive_ids("b")):
                return False
        return True
