# SPDX-License-Identifier: ISC
"""A real etcd (Debian's etcd-server) on loopback for the etcd membership
tests, and a cell of shed processes in either membership mode.

Etcd(n) starts an n-member cluster on free ports with temporary data dirs;
members can be stopped and started again with their data. EtcdCell runs
line sheds, an aggregator and burrowd backends of one cell, with
`membership: {store: etcd}` or the built-in peer sync, so that tests and
the benchmark compare the two modes on the same topology.
"""
import base64
import json
import os
import shutil
import signal
import time
import urllib.request

import harness

SECRET = "etcd-test-secret"
HOST = "burrow.service"


def etcd_binary():
    path = shutil.which("etcd") or "/usr/bin/etcd"
    if not os.path.exists(path):
        raise FileNotFoundError("etcd (Debian package etcd-server; tools/bootstrap installs it)")
    return path


class Etcd:
    def __init__(self, n=1):
        self.names = ["e%d" % i for i in range(n)]
        # free_port() cannot reserve a port: another test running at the
        # same time may take it first. Then start over on new ports.
        for attempt in range(3):
            self.dir = harness.tmpdir("shed-etcd-")
            self.client = {m: harness.free_port() for m in self.names}
            self.peer = {m: harness.free_port() for m in self.names}
            self.procs = {}
            self.started_once = set()
            for m in self.names:
                self.start(m, wait=False)
            try:
                for m in self.names:
                    harness.wait_port("127.0.0.1", self.client[m], proc=self.procs[m],
                                      timeout=20)
                break
            except RuntimeError as e:
                self.stop_all()
                if attempt == 2 or "address already in use" not in str(e):
                    raise
        harness.wait_until(self.healthy, timeout=20, what="etcd has a leader")

    def url(self, m):
        return "http://127.0.0.1:%d" % self.client[m]

    @property
    def endpoints(self):
        return [self.url(m) for m in self.names]

    def start(self, m, wait=True):
        cluster = ",".join("%s=http://127.0.0.1:%d" % (x, self.peer[x]) for x in self.names)
        argv = [etcd_binary(), "--name", m, "--data-dir", os.path.join(self.dir, m),
                "--listen-client-urls", self.url(m), "--advertise-client-urls", self.url(m),
                "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer[m],
                "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % self.peer[m],
                "--initial-cluster", cluster, "--initial-cluster-token", "shed-test",
                "--initial-cluster-state", "new", "--log-level", "warn",
                "--heartbeat-interval", "50", "--election-timeout", "500"]
        self.procs[m] = harness.Proc(argv, name="etcd-" + m,
                                     log=os.path.join(self.dir, m + ".log"))
        self.started_once.add(m)
        if wait:
            harness.wait_port("127.0.0.1", self.client[m], proc=self.procs[m], timeout=20)

    def stop(self, m, sig=signal.SIGTERM):
        self.procs[m].stop(sig)

    def stop_all(self):
        for m in self.names:
            if self.procs[m].alive():
                self.procs[m].stop()

    def call(self, path, body, m=None):
        for url in ([self.url(m)] if m else self.endpoints):
            try:
                req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=2) as r:
                    return json.loads(r.read())
            except OSError:
                continue
        raise OSError("no etcd endpoint answers")

    def healthy(self):
        try:
            return "header" in self.call("/v3/kv/range", {"key": b64("/health-probe")})
        except OSError:
            return False

    def keys(self, prefix):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        r = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end)})
        out = {}
        for kv in r.get("kvs", []):
            out[base64.b64decode(kv["key"]).decode()] = json.loads(base64.b64decode(kv["value"]))
        return out

    def leases(self, prefix):
        """The lease ID (a string, "0" for none) of every key under <prefix>."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        r = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end)})
        return {base64.b64decode(kv["key"]).decode(): str(kv.get("lease", "0"))
                for kv in r.get("kvs", [])}

    def revision(self):
        return int(self.call("/v3/kv/range", {"key": b64("/x")})["header"]["revision"])

    def compact(self, rev):
        return self.call("/v3/kv/compaction", {"revision": str(rev), "physical": True})


def b64(s):
    return base64.b64encode(s.encode()).decode()


def get_json(url, timeout=5):
    r = harness.request("GET", url, timeout=timeout)
    assert r.status == 200, r
    return r.json()


class EtcdCell:
    """Cell "a": line sheds s1..sN, aggregator "agg", backends that each
    heartbeat to ONE line shed (round robin): the store must spread them.
    <mode> is "etcd" (needs <etcd>) or "builtin" (peer sync). <master>: a
    master "m1" too, that reads etcd (etcd mode) or that the line sheds
    push to (built-in mode)."""

    def __init__(self, mode, etcd=None, nsheds=2, nback=3, lease="1000ms", interval="200ms",
                 sync="100ms", debug=False, master=False):
        self.mode, self.etcd, self.debug = mode, etcd, debug
        self.dir = harness.tmpdir("shed-etcdcell-")
        self.lines = ["s%d" % (i + 1) for i in range(nsheds)]
        self.names = self.lines + ["agg"]
        self.masters = ["m1"] if master else []
        self.ports = {n: harness.free_port() for n in self.names + self.masters}
        self.url = {n: "http://127.0.0.1:%d" % p for n, p in self.ports.items()}
        self.lease, self.interval, self.sync = lease, interval, sync
        self.procs = {}
        self.backends = {}
        for n in self.names + self.masters:
            self.start_shed(n, wait=False)
        for n in self.names + self.masters:
            harness.wait_port("127.0.0.1", self.ports[n], proc=self.procs[n])
        for i in range(nback):
            self.start_backend(i, self.lines[i % nsheds])

    def config(self, name):
        if name in self.masters:
            lines = ['listen: ["127.0.0.1:%d"]' % self.ports[name], "cell: m",
                     "default_service: burrow", "credential: %s" % SECRET, "roles: [master]",
                     "cells:", "  - {name: a, proximity: 10}"]
        else:
            lines = ['listen: ["127.0.0.1:%d"]' % self.ports[name],
                     "cell: a", "default_service: burrow",
                     "credential: %s" % SECRET,
                     'register_networks: ["127.0.0.0/8"]',
                     "aggregator: %s" % self.url["agg"],
                     "roles: [%s]" % ("aggregator" if name == "agg" else "line")]
        if self.masters and self.mode != "etcd" and name in self.lines:
            lines.append("masters: [%s]" % ", ".join(self.url[m] for m in self.masters))
        if name != "agg" and name not in self.masters:
            sd = os.path.join(self.dir, "state-" + name)
            os.makedirs(sd, exist_ok=True)
            lines.append("state_dir: %s" % sd)
        if self.mode == "etcd":
            lines += ["membership:", "  store: etcd",
                      "  endpoints: [%s]" % ", ".join(self.etcd.endpoints),
                      "  prefix: /shed/", "  timeout: 500ms"]
        elif name not in self.masters:
            lines.append("peers: [%s]" % ", ".join(self.url[n] for n in self.names))
        lines += ["timings:", "  heartbeat_interval: %s" % self.interval,
                  "  lease: %s" % self.lease, "  evict_after: 60s", "  drain_window: 60s",
                  "  pin_lifetime: 30s", "  settle_window: 0", "  join_heartbeats: 1",
                  "  sync_interval: %s" % self.sync,
                  "services:", "  burrow:", "    kind: burrow", "    buckets: 1024",
                  "    k: 3", "    r: 3", "    seeds: {account: 11, key: 22, place: 33}"]
        return "\n".join(lines) + "\n"

    def start_shed(self, name, wait=True):
        path = os.path.join(self.dir, name + ".yaml")
        with open(path, "w") as f:
            f.write(self.config(name))
        argv = [harness.binary("shed")] + (["-d"] if self.debug else []) + ["-c", path]
        p = harness.Proc(argv, name="shed-" + name,
                         log=os.path.join(self.dir, "shed-%s-%d.log" % (name, time.time_ns())))
        self.procs[name] = p
        if wait:
            harness.wait_port("127.0.0.1", self.ports[name], proc=p)
        return p

    def start_backend(self, i, shed, wait=True):
        port = harness.free_port()
        bid = "b%d" % i
        p = harness.Proc([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % port,
                          "--default-ttl", "0", "--announce", self.url[shed], "--id", bid,
                          "--credential", SECRET], name="burrowd-" + bid)
        if wait:
            harness.wait_port("127.0.0.1", port, proc=p)
        self.backends[bid] = {"proc": p, "url": "http://127.0.0.1:%d" % port, "shed": shed}
        return bid

    def members(self, shed):
        """{id: state} in <shed>'s registry, {} when it does not answer."""
        try:
            st = get_json(self.url[shed] + "/_shed/v1/status", timeout=2)
        except (OSError, AssertionError):
            return {}
        return {m["id"]: m["state"] for s in st["services"] for m in s["members"]}

    def up(self, shed):
        return {m for m, s in self.members(shed).items() if s == "up"}

    def alive(self):
        return {b for b, v in self.backends.items() if v["proc"].alive()}

    def converged(self, sheds=None):
        want = self.alive()
        return all(self.up(s) == want for s in (sheds or self.names) if self.procs[s].alive())

    def master_live(self, m="m1"):
        """Live members of cell a in master <m>'s table (-1: no answer)."""
        try:
            st = get_json(self.url[m] + "/_shed/v1/master", timeout=2)
        except (OSError, AssertionError):
            return -1
        return sum(s["live"] for c in st["cells"] if c["name"] == "a" for s in c["services"])

    def metrics(self, shed):
        return harness.request("GET", self.url[shed] + "/metrics", timeout=2).body.decode()

    def metric(self, shed, name):
        return harness.metric(self.url[shed], name)

    def redirect(self, shed, path="/v1.0/acct/q/m1", method="GET"):
        return harness.request(method, self.url[shed] + path, headers={"Host": HOST}, timeout=2)

    def stop(self):
        for n, p in list(self.procs.items()):
            if p.alive():
                rc = p.stop(signal.SIGTERM)
                assert rc == 0, (n, rc, p.output()[-3000:])
        for b in self.backends.values():
            if b["proc"].alive():
                b["proc"].stop()
