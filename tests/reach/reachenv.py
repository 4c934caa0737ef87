# SPDX-License-Identifier: ISC
"""Deployments for the reachability test and the chaos benchmark (issue 13):
cells of line sheds, an aggregator and burrowd backends (plus masters when
there are several cells), written by deploy/local's own config functions so
that the tests run what the demo runs, but started as harness.Proc children
so that they can be frozen, killed, restarted empty and added one at a time.

Also the plain HTTP user (python-requests following every redirect, method
and body kept on a 307, as `curl -L` does) and a Book of acknowledged
messages that checks what the issue promises: every one readable by id and
listed exactly once through the home cell's line shed, and, once the owner
set settled, held by exactly one server, its owner.
"""
import importlib.machinery
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import requests

import harness

sys.path.insert(1, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "master"))
from cluster import origin  # noqa: E402


def _deploy_local():
    """deploy/local as a module (its documented way of being imported)."""
    path = os.path.join(harness.SOURCE_DIR, "deploy", "local")
    loader = importlib.machinery.SourceFileLoader("shedlocal", path)
    spec = importlib.util.spec_from_loader("shedlocal", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


local = _deploy_local()

# Short timings: a lease runs out in 0.6 s, a restart within evict_after is
# easy, and the drain (settle) window ends within the test.
TIMINGS = {"heartbeat_interval": "200ms", "lease": "600ms", "evict_after": "6s",
           "drain_window": "5s", "pin_lifetime": "2s", "join_heartbeats": 2,
           "evict_cap": 1, "sync_interval": "100ms"}


def burrowd_usage():
    r = subprocess.run([harness.binary("burrowd"), "--help"], capture_output=True, text=True)
    return r.stdout + r.stderr


class Site:
    """Cells dc1..dcN: <backends> maps cell -> burrowd count, <lines> line
    sheds per cell, one aggregator per cell, <masters> masters (needed for
    more than one cell). Node names are deploy/local's: dc1-line1, dc1-agg1,
    dc1-burrow1 (also the backend's id), master1."""

    def __init__(self, backends, lines=1, masters=0, timings=None, drain_timeout=0):
        """<drain_timeout>: burrowd --drain-timeout (a graceful leave on
        SIGTERM), when this burrowd has the option; main before issue 13
        has not, and leaves at once."""
        cells = sorted(backends)
        self.timings = dict(TIMINGS, **(timings or {}))
        self.drain = []
        if drain_timeout and "--drain-timeout" in burrowd_usage():
            self.drain = ["--drain-timeout", str(drain_timeout)]
        self.topo = local.Topology(cells=len(cells), lines=lines, aggregators=1, masters=masters,
                                   backends=max(backends.values()), host="127.0.0.1",
                                   base_port=0, timings=self.timings, default_ttl=0,
                                   # SHED_MEMBERSHIP=etcd: the same cells on etcd
                                   membership=os.environ.get("SHED_MEMBERSHIP", "builtin"))
        nodes = local.plan(self.topo)
        # Uneven cells: drop the backends past a cell's count.
        self.nodes = [n for n in nodes if n["role"] != "backend" or
                      int(n["name"].rsplit("burrow", 1)[1]) <= backends[n["cell"]]]
        self.dir = harness.tmpdir("shed-reach-")
        self.cred = os.path.join(self.dir, "credential")
        fd = os.open(self.cred, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("reach-test-credential-0123456789abcdef\n")
        for n in self.nodes:
            if n["role"] == "backend":
                n["argv"] = self._backend_argv(n)
                continue
            if n["role"] == "etcd":
                n["argv"] = local.etcd_argv(n, os.path.join(self.dir, n["name"]))
                continue
            sd = os.path.join(self.dir, "state-" + n["name"])
            os.makedirs(sd, exist_ok=True)
            doc = local.shed_config(n, self.nodes, self.topo, self.cred, sd, ["127.0.0.0/8"])
            path = os.path.join(self.dir, n["name"] + ".yaml")
            with open(path, "w") as f:
                f.write(local.yaml_dump(doc) + "\n")
            n["argv"] = [harness.binary("shed"), "-c", path]
        order = {"etcd": -1, "master": 0, "aggregator": 1, "line": 2, "backend": 3}
        for n in sorted(self.nodes, key=lambda x: order[x["role"]]):
            self._spawn(n)
        for n in self.nodes:
            harness.wait_port(n["host"], n["port"], proc=n["proc"])
        self.wait_routing()

    # -- processes -----------------------------------------------------------
    def _backend_argv(self, n):
        return local.backend_argv(harness.binary("burrowd"), n, self.nodes, self.topo,
                                  self.cred) + self.drain

    def _spawn(self, n):
        n["proc"] = harness.Proc(n["argv"], name=n["name"])

    def node(self, name):
        return next(n for n in self.nodes if n["name"] == name)

    def url(self, name):
        return self.node(name)["url"]

    def cells(self):
        return sorted({n["cell"] for n in self.nodes if n["role"] == "line"})

    def line(self, cell="dc1", i=0):
        return [n["url"] for n in self.nodes if n["role"] == "line" and n["cell"] == cell][i]

    def lines(self, cell="dc1"):
        return [n["url"] for n in self.nodes if n["role"] == "line" and n["cell"] == cell]

    def agg(self, cell="dc1"):
        return next(n["url"] for n in self.nodes if n["role"] == "aggregator" and n["cell"] == cell)

    def backends(self, cell=None, alive=None):
        """Backend names (of <cell>), optionally only running ones."""
        return [n["name"] for n in self.nodes if n["role"] == "backend" and
                (cell is None or n["cell"] == cell) and
                (alive is None or n["proc"].alive() == alive)]

    def name_of(self, url):
        o = origin(url)
        for n in self.nodes:
            if n["url"] == o:
                return n["name"]
        return o

    def add_backend(self, cell="dc1"):
        """A new burrowd in <cell> (next free name); returns its name."""
        k = 1 + max(int(b.rsplit("burrow", 1)[1]) for b in self.backends(cell))
        port = harness.free_port()
        n = {"name": "%s-burrow%d" % (cell, k), "role": "backend", "cell": cell,
             "host": "127.0.0.1", "port": port, "url": "http://127.0.0.1:%d" % port}
        self.nodes.append(n)
        n["argv"] = self._backend_argv(n)
        self._spawn(n)
        harness.wait_port(n["host"], port, proc=n["proc"])
        return n["name"]

    def restart(self, name):
        """Start <name> again, same address and id, empty store (burrowd is
        in memory) and a new incarnation."""
        n = self.node(name)
        assert not n["proc"].alive(), name
        self._spawn(n)
        harness.wait_port(n["host"], n["port"], proc=n["proc"])

    def kill(self, name):
        self.node(name)["proc"].kill()

    def terminate(self, name, timeout):
        """SIGTERM and wait up to <timeout> s: (exit code or None, seconds)."""
        p = self.node(name)["proc"]
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        try:
            rc = p.p.wait(timeout)
        except Exception:
            rc = None
        return rc, time.monotonic() - t0

    def freeze(self, names):
        for x in names:
            self.node(x)["proc"].signal(signal.SIGSTOP)

    def thaw(self, names):
        for x in names:
            self.node(x)["proc"].signal(signal.SIGCONT)

    def stop(self):
        """Everything down: backends first, SIGKILLed (no graceful leave)."""
        for n in sorted(self.nodes, key=lambda x: x["role"] != "backend"):
            if n["proc"].alive():
                n["proc"].signal(signal.SIGCONT)
                n["proc"].stop(signal.SIGKILL if n["role"] == "backend" else None, timeout=5.0)

    # -- what the sheds see ------------------------------------------------
    def status(self, shed_url):
        """(members {id: state}, generation, prev_generation) of burrow on
        one shed; ({}, 0, 0) when it does not answer."""
        try:
            st = harness.request("GET", shed_url + "/_shed/v1/status", timeout=3.0).json()
        except (OSError, ValueError):
            return {}, 0, 0
        for s in st.get("services", []):
            if s["name"] == "burrow":
                return ({m["id"]: m["state"] for m in s["members"]}, s["generation"],
                        s["prev_generation"])
        return {}, 0, 0

    def sheds(self, cell):
        return self.lines(cell) + [self.agg(cell)]

    def wait_states(self, want, timeout=15.0, cell=None):
        """Wait until every line shed and the aggregator of <cell> (every
        cell of the names in <want> when None) see each member of <want>
        ({id: state or None for unknown}) in that state."""
        cells = [cell] if cell else sorted({self.node(x)["cell"] for x in want})

        def ok():
            for c in cells:
                for s in self.sheds(c):
                    members = self.status(s)[0]
                    if any(members.get(x) != st for x, st in want.items()):
                        return False
            return True
        harness.wait_until(ok, timeout=timeout, step=0.05, what="members %r" % want)

    def wait_routing(self, timeout=20.0):
        """Every running backend up on every shed of its cell."""
        for c in self.cells():
            self.wait_states({b: "up" for b in self.backends(c, alive=True)}, timeout, c)

    def wait_settled(self, cell="dc1", timeout=30.0):
        """Wait until no shed of <cell> keeps a previous generation (the
        drain window of the last join or leave is over)."""
        harness.wait_until(lambda: all(self.status(s)[2] == 0 for s in self.sheds(cell)),
                           timeout=timeout, step=0.1, what="drain window over in " + cell)


class Web:
    """The plain HTTP user: python-requests, keep-alive per thread, every
    redirect followed (302 GET stays GET, 307 keeps method and body)."""

    def __init__(self, timeout=5.0):
        self.timeout = timeout
        self.local = threading.local()

    def session(self):
        s = getattr(self.local, "s", None)
        if s is None:
            s = self.local.s = requests.Session()
            s.trust_env = False
        return s

    def call(self, method, url, body=None, headers=None, retry_for=0.0):
        """One request, redirects followed; a 503 (Retry-After) is retried
        for up to <retry_for> seconds. Returns the requests.Response, or None
        on a transport error."""
        deadline = time.monotonic() + retry_for
        while True:
            try:
                r = self.session().request(method, url, data=body, headers=headers,
                                           timeout=self.timeout, allow_redirects=True)
            except requests.RequestException:
                self.local.s = None
                r = None
            if r is not None and r.status_code != 503:
                return r
            if time.monotonic() >= deadline:
                return r
            wait = 0.1
            if r is not None:
                try:
                    wait = min(1.0, float(r.headers.get("Retry-After", "0.1")))
                except ValueError:
                    pass
            time.sleep(max(0.05, wait))

    def put(self, base, a, q, m, body, retry_for=0.0):
        """PUT through <base>; (acked, name of the final host's url, status)."""
        r = self.call("PUT", "%s/v1.0/%s/%s/%s" % (base, a, q, m), body, retry_for=retry_for)
        if r is None:
            return False, None, 0
        return r.status_code in (201, 204), origin(r.url), r.status_code

    def locate(self, method, url):
        """Where <url> is redirected to (Location), without following; an
        empty PUT body, so nothing is written. None when not redirected."""
        try:
            r = self.session().request(method, url, data=b"" if method == "PUT" else None,
                                       timeout=self.timeout, allow_redirects=False)
        except requests.RequestException:
            self.local.s = None
            return None
        return r.headers.get("Location") if r.status_code in (301, 302, 303, 307, 308) else None

    def get(self, base, a, q, m):
        return self.call("GET", "%s/v1.0/%s/%s/%s" % (base, a, q, m))

    def list_ids(self, base, a, q):
        """Every id of queue a/q through <base> (all pages); None on an error."""
        url = "%s/v1.0/%s/%s?detail=id&match_hidden=true" % (base, a, q)
        ids = []
        for _ in range(1000):
            r = self.call("GET", url)
            if r is None or r.status_code not in (200, 404):
                return None
            if r.status_code == 404:
                return ids
            try:
                ids += r.json()
            except ValueError:
                return None
            link = r.headers.get("Link")
            if not link or 'rel="next"' not in link:
                return ids
            url = urllib.parse.urljoin(r.url, link[link.index("<") + 1:link.index(">")])
        return None


class Book:
    """Acknowledged messages: (a, q, m) -> {"body", "host", "via", "t"},
    added from any thread (the benchmark's writers)."""

    def __init__(self):
        self.msgs = {}
        self.lock = threading.Lock()

    def add(self, a, q, m, body, host, via="http"):
        with self.lock:
            self.msgs[(a, q, m)] = {"body": body, "host": host, "via": via, "t": time.monotonic()}

    def snapshot(self):
        with self.lock:
            return dict(self.msgs)

    def keys(self, via=None):
        return [k for k, v in self.snapshot().items() if via is None or v["via"] == via]

    def queues(self):
        return sorted({k[:2] for k in self.snapshot()})

    def put_many(self, web, base, prefix, n, accounts=4, queues=3, retry_for=0.0):
        """PUT n messages spread over accounts x queues through <base>;
        every one must be acknowledged (a harness error otherwise)."""
        keys = []
        for i in range(n):
            a, q, m = "%sa%d" % (prefix, i % accounts), "q%d" % (i // accounts % queues), \
                "%sm%04d" % (prefix, i)
            body = ("body of %s/%s/%s" % (a, q, m)).encode()
            ok, host, st = web.put(base, a, q, m, body, retry_for=retry_for)
            assert ok, "PUT %s/%s/%s answered %s (from %s)" % (a, q, m, st, host)
            self.add(a, q, m, body, host)
            keys.append((a, q, m))
        return keys

    def read(self, web, base, keys=None):
        """GET every message (of <keys>) by id through <base>: the keys not
        found, and those found with a wrong body."""
        msgs = self.snapshot()
        missing, wrong = [], []
        for k in (msgs if keys is None else keys):
            r = web.get(base, *k)
            if r is None or r.status_code != 200:
                missing.append(k)
                continue
            try:
                body = r.json()["body"].encode()
            except (ValueError, KeyError, TypeError, AttributeError):
                body = None
            if body != msgs[k]["body"]:
                wrong.append(k)
        return missing, wrong

    def lists(self, web, base, keys=None, queues=()):
        """List every queue of the book (and of <queues>) through <base>: a
        dict of key lists: "not_listed" (acked ids of <keys>, default all,
        missing), "listed_twice", "listed_unknown" (ids never acked, or
        deleted) and "list_failed" (queues whose list failed)."""
        msgs = self.snapshot()
        want = {}
        for k in (msgs if keys is None else keys):
            want.setdefault(k[:2], set()).add(k[2])
        out = {"not_listed": [], "listed_twice": [], "listed_unknown": [], "list_failed": []}
        for (a, q) in sorted({k[:2] for k in msgs} | set(queues)):
            ids = web.list_ids(base, a, q)
            if ids is None:
                out["list_failed"].append((a, q))
                continue
            seen = set()
            for x in ids:
                if x in seen:
                    out["listed_twice"].append((a, q, x))
                elif (a, q, x) not in msgs:
                    out["listed_unknown"].append((a, q, x))
                seen.add(x)
            out["not_listed"] += [(a, q, m) for m in sorted(want.get((a, q), ()))
                                  if m not in seen]
        return out

    def holders(self, web, site, names=None, keys=None):
        """Where each acked message (of <keys>) is stored: {key: [backend
        names]}, asking every running backend (or <names>) directly."""
        where = {k: [] for k in (self.snapshot() if keys is None else keys)}
        for b in names if names is not None else site.backends(alive=True):
            base = site.url(b)
            for (a, q) in sorted({k[:2] for k in where}):
                for m in web.list_ids(base, a, q) or ():
                    if (a, q, m) in where:
                        where[(a, q, m)].append(b)
        return where

    def owners(self, web, site, cell="dc1", keys=None):
        """The owner of each message: where <cell>'s line shed sends a PUT
        of that id now (the first live, non-draining server of its row)."""
        line = site.line(cell)
        return {k: site.name_of(web.locate("PUT", "%s/v1.0/%s/%s/%s" % ((line,) + k)) or "")
                for k in (self.snapshot() if keys is None else keys)}

    def misplaced(self, web, site, cell="dc1", keys=None, owners=None):
        """Messages (of <keys>) not held by exactly one server, their owner:
        {"nowhere", "copies", "off_owner"}: lists of keys."""
        keys = list(self.snapshot() if keys is None else keys)
        where = self.holders(web, site, keys=keys)
        own = owners or self.owners(web, site, cell, keys)
        bad = {"nowhere": [], "copies": [], "off_owner": []}
        for k in keys:
            w = where.get(k, [])
            if not w:
                bad["nowhere"].append(k)
            elif len(w) > 1:
                bad["copies"].append(k)
            elif w[0] != own[k]:
                bad["off_owner"].append(k)
        return bad


def counts_line(name, counts):
    """'name: k=v k=v' with list values counted."""
    return "%s: %s" % (name, " ".join(
        "%s=%s" % (k, len(v) if isinstance(v, (list, set, dict)) else v)
        for k, v in counts.items()))


def expect_zero(name, counts, bad):
    """Print the counts; fail with them (and a few examples) when any count
    named in <bad> is not zero."""
    line = counts_line(name, counts)
    print("  " + line, flush=True)
    wrong = [k for k in bad if counts[k]]
    if wrong:
        ex = "; ".join("%s e.g. %s" % (k, sorted(counts[k])[:3]) for k in wrong
                       if isinstance(counts[k], (list, set)))
        raise AssertionError(line + (" (" + ex + ")" if ex else ""))

