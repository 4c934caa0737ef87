#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""Two datacenters on one machine: network namespaces, veth links, real DNS.

Each datacenter (10.1.0.0/24, 10.2.0.0/24, routed through a router
namespace) has two line sheds on port 80, an aggregator, a master, three
burrowd backends announcing themselves, a dnsmasq answering *.service with
that datacenter's line sheds (split horizon), and a client host whose
resolv.conf names it. The clients use http://burrow.service/... through DNS
and real redirects (curl -L, and shedc without --shed):

  1. DNS answers each datacenter with its own line sheds;
  2. PUTs from datacenter 1 land on datacenter 1's backends in one redirect,
     read back, and list through the aggregator;
  3. datacenter 1's backends are cut off the network (a dead datacenter as
     the world sees it; the in-memory processes keep their data), and the
     client's requests escalate through a master to datacenter 2;
  4. the backends come back and traffic returns home;
  5. nothing acknowledged is lost: every message PUT with a 2xx reads back.

Needs root (namespaces); otherwise prints why and exits 77 (meson: skipped).
Everything it creates is named shedt-<tag>-* and removed at exit, even after
a failure; stale namespaces of earlier runs are removed first.
"""
import importlib.machinery
import importlib.util
import json
import os
import sys
import time
import urllib.parse

if os.geteuid() != 0:
    print("skip: test_two_dc needs root to create network namespaces (ip netns add)")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import netlab  # noqa: E402

_loader = importlib.machinery.SourceFileLoader(
    "shedlocal", os.path.join(harness.SOURCE_DIR, "deploy", "local"))
_spec = importlib.util.spec_from_loader("shedlocal", _loader)
local = importlib.util.module_from_spec(_spec)
_loader.exec_module(local)

DCS = (1, 2)
MEMBERSHIP = os.environ.get("SHED_MEMBERSHIP", "builtin")
BACKENDS = 3
ACCOUNTS = ("acme", "globex", "initech")  # several accounts: buckets spread over backends
QUEUE = "orders"
N = 12  # messages per phase

ctx = {"procs": {}, "acked": [], "failed_setup": None}


def ip(dc, last):
    return "10.%d.0.%d" % (dc, last)


def topology():
    """deploy/local's node list, placed on namespace hosts instead of ports.
    SHED_MEMBERSHIP=etcd: one etcd per datacenter holds its cell's
    membership (docs/etcd.md, tests/etcd/test_two_dc_etcd.py)."""
    nodes = []
    for dc in DCS:
        cell = "dc%d" % dc
        if MEMBERSHIP == "etcd":
            nodes.append({"name": "etcd%d" % dc, "role": "etcd", "cell": cell,
                          "host": ip(dc, 51), "port": 2379, "peer_port": 2380,
                          "url": "http://%s:2379" % ip(dc, 51)})
        nodes.append({"name": "master%d" % dc, "role": "master", "cell": cell,
                      "host": ip(dc, 31), "port": 80, "url": "http://" + ip(dc, 31)})
        for i in (1, 2):
            nodes.append({"name": "%s-line%d" % (cell, i), "role": "line", "cell": cell,
                          "host": ip(dc, 10 + i), "port": 80,
                          "url": "http://" + ip(dc, 10 + i)})
        nodes.append({"name": "%s-agg1" % cell, "role": "aggregator", "cell": cell,
                      "host": ip(dc, 21), "port": 80, "url": "http://" + ip(dc, 21)})
        for i in range(1, BACKENDS + 1):
            nodes.append({"name": "%s-burrow%d" % (cell, i), "role": "backend", "cell": cell,
                          "host": ip(dc, 40 + i), "port": 8080,
                          "url": "http://%s:8080" % ip(dc, 40 + i)})
    return nodes


def dump_logs():
    for name, p in ctx["procs"].items():
        out = p.output().strip().splitlines()[-12:]
        print("---- %s (%s)%s" % (name, "alive" if p.alive() else "EXITED %s" % p.p.returncode,
                                  "" if out else " (empty log)"))
        for line in out:
            print("     | " + line)


def setup():
    """Namespaces, DNS, every daemon; wait until each line shed sees its cell."""
    stale = netlab.clean_stale()
    if stale:
        print("removed %d stale namespaces" % stale)
    lab = netlab.Lab()
    ctx["lab"] = lab
    tmp = harness.tmpdir("shed-two-dc-")
    ctx["tmp"] = tmp
    nodes = topology()
    ctx["nodes"] = nodes
    topo = local.Topology(default_ttl=0, membership=MEMBERSHIP)
    cred = os.path.join(tmp, "credential")
    with open(cred, "w") as f:
        f.write("two-dc-test-credential-0123456789abcdef\n")
    for dc in DCS:
        lab.add_dc(dc)
        lab.add_host("dns%d" % dc, dc, 53)
        lab.add_host("client%d" % dc, dc, 100, dns=ip(dc, 53))
    for n in nodes:
        lab.add_host(n["name"], int(n["cell"][2:]), int(n["host"].rsplit(".", 1)[1]))
    # dnsmasq per datacenter: *.service -> that datacenter's line sheds.
    for dc in DCS:
        conf = os.path.join(tmp, "dnsmasq-dc%d.conf" % dc)
        with open(conf, "w") as f:
            f.write(local_dnsmasq(dc, [n["host"] for n in nodes
                                       if n["role"] == "line" and n["cell"] == "dc%d" % dc]))
        start("dns%d" % dc, ["dnsmasq", "--no-daemon", "--user=root", "--pid-file=",
                              "--conf-file=" + conf])
    shed = harness.binary("shed")
    burrowd = harness.binary("burrowd")
    order = {"etcd": -1, "master": 0, "aggregator": 1, "line": 2, "backend": 3}
    for n in sorted(nodes, key=lambda x: order[x["role"]]):
        if n["role"] == "backend":
            argv = local.backend_argv(burrowd, n, nodes, topo, cred)
        elif n["role"] == "etcd":
            argv = local.etcd_argv(n, os.path.join(tmp, n["name"]))
        else:
            sdir = os.path.join(tmp, "state-" + n["name"])
            os.makedirs(sdir)
            conf = os.path.join(tmp, n["name"] + ".yaml")
            with open(conf, "w") as f:
                f.write(local.yaml_dump(local.shed_config(n, nodes, topo, cred, sdir,
                                                          ["10.0.0.0/8"])) + "\n")
            r = lab.run(n["name"], [shed, "-t", "-c", conf])
            assert r[0] == 0, "shed -t rejects %s: %s%s" % (conf, r[1], r[2])
            argv = [shed, "-c", conf]
        start(n["name"], argv)
    for n in nodes:
        lab.wait_port(n["name"], n["host"], n["port"], proc=ctx["procs"][n["name"]])
    for n in nodes:
        if n["role"] == "line":
            wait_members(n, BACKENDS, 20.0)


def local_dnsmasq(dc, lines):
    """The per-datacenter dnsmasq config (same shape as deploy/dns/)."""
    out = ["# datacenter %d: *.service -> its line sheds" % dc,
           "port=53", "listen-address=%s" % ip(dc, 53), "bind-interfaces",
           "no-resolv", "no-hosts", "log-queries",
           "local=/service/"]
    out += ["address=/service/%s" % a for a in lines]
    return "\n".join(out) + "\n"


def start(host, argv):
    lab = ctx["lab"]
    p = harness.Proc(lab.exec_argv(host, argv), name=host,
                     log=os.path.join(ctx["tmp"], host + ".log"))
    ctx["procs"][host] = p
    ctx.setdefault("argv", {})[host] = argv
    return p


def node(name):
    for n in ctx["nodes"]:
        if n["name"] == name:
            return n
    raise KeyError(name)


def metrics(n):
    st, body = netlab.in_ns(ctx["lab"].ns(n["name"]), local.http_get, n["url"] + "/metrics")
    assert st == 200, "%s: GET /metrics -> %s" % (n["name"], st)
    return local.parse_metrics(body.decode("utf-8", "replace"))


def members_up(n):
    s = metrics(n)
    assert any(x[0] == "shed_members" for x in s), "%s: no shed_members metric" % n["name"]
    return int(local.metric_sum(s, "shed_members", service="burrow", state="up"))


def wait_members(n, want, timeout):
    harness.wait_until(lambda: members_up(n) == want, timeout=timeout, step=0.1,
                       what="%s to see %d burrow members up" % (n["name"], want))


def curl(client, method, url, body=None, follow=True):
    """curl in a client namespace: (status, redirects, effective url, body)."""
    argv = ["curl", "-sS", "--max-time", "8", "--connect-timeout", "2", "-X", method,
            "-o", "-", "-w", "\n@@%{http_code} %{num_redirects} %{url_effective}"]
    if follow:
        argv.append("-L")
    if body is not None:
        argv += ["--data-binary", "@-", "-H", "Content-Type: text/plain"]
    argv.append(url)
    rc, out, err = ctx["lab"].run(client, argv, input=body, timeout=20)
    text, _, trailer = out.rpartition("\n@@")
    parts = trailer.split(" ", 2)
    if rc != 0 or len(parts) != 3:
        raise AssertionError("curl %s %s from %s failed (rc %d): %s" % (method, url, client,
                                                                      rc, err.strip()))
    return int(parts[0]), int(parts[1]), parts[2], text


def host_of(url):
    return url.split("//", 1)[1].split("/", 1)[0].split(":")[0]


def dc_backends(dc):
    return {ip(dc, 40 + i) for i in range(1, BACKENDS + 1)}


def put_phase(client, phase, want_dc, min_hops, max_hops):
    got = []
    for i in range(N):
        mid = "%s-%02d" % (phase, i)
        acct = ACCOUNTS[i % len(ACCOUNTS)]
        body = ("body of %s %s" % (mid, "x" * i)).encode()
        url = "http://burrow.service/v1.0/%s/%s/%s" % (acct, QUEUE, mid)
        st, hops, eff, _ = curl(client, "PUT", url, body)
        assert st in (201, 204), "PUT %s from %s -> %d via %s" % (mid, client, st, eff)
        ctx["acked"].append({"id": mid, "account": acct, "body": body, "phase": phase,
                             "effective": urllib.parse.urlsplit(eff)._replace(
                                 query="", fragment="").geturl()})
        assert host_of(eff) in dc_backends(want_dc), \
            "PUT %s landed on %s, not on a dc%d backend" % (mid, eff, want_dc)
        assert min_hops <= hops <= max_hops, "PUT %s: %d redirects" % (mid, hops)
        got.append(host_of(eff))
    return got


def read_ok(client, m):
    url = "http://burrow.service/v1.0/%s/%s/%s?detail=body" % (m["account"], QUEUE, m["id"])
    st, _, _, text = curl(client, "GET", url)
    return st == 200 and text.encode() == m["body"]


def check_read(client, m):
    url = "http://burrow.service/v1.0/%s/%s/%s?detail=body" % (m["account"], QUEUE, m["id"])
    st, _, eff, text = curl(client, "GET", url)
    assert st == 200 and text.encode() == m["body"], \
        "GET %s from %s -> %d %r via %s" % (m["id"], client, st, text[:80], eff)


def needs_setup():
    if ctx["failed_setup"]:
        raise AssertionError("not run: setup failed (%s)" % ctx["failed_setup"])


# ---------------------------------------------------------------------------

def test_setup():
    try:
        setup()
    except BaseException as e:
        ctx["failed_setup"] = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise


def test_dns_split_horizon():
    lab = ctx["lab"]
    for dc in DCS:
        rc, out, err = lab.run("client%d" % dc, ["getent", "ahostsv4", "burrow.service"])
        assert rc == 0, "client%d cannot resolve burrow.service: %s" % (dc, err)
        got = {line.split()[0] for line in out.splitlines() if line.strip()}
        assert got == {ip(dc, 11), ip(dc, 12)}, "dc%d burrow.service -> %s" % (dc, got)


def test_home_puts_and_reads():
    needs_setup()
    hosts = put_phase("client1", "home", want_dc=1, min_hops=1, max_hops=1)
    assert len(set(hosts)) >= 2, "12 keys all on one backend: %s" % hosts
    for m in ctx["acked"]:
        check_read("client1", m)


def test_list_via_aggregator():
    needs_setup()
    for acct in ACCOUNTS:
        url = "http://burrow.service/v1.0/%s/%s?detail=id&limit=1000" % (acct, QUEUE)
        st, hops, eff, text = curl("client1", "GET", url)
        assert st == 200, "list -> %d via %s: %s" % (st, eff, text[:200])
        assert host_of(eff) == ip(1, 21), "list answered by %s, not dc1's aggregator" % eff
        ids = set(json.loads(text))
        want = {m["id"] for m in ctx["acked"] if m["account"] == acct}
        assert want and want <= ids, "list of %s misses %s" % (acct, sorted(want - ids))


def test_shedc_through_dns():
    needs_setup()
    shedc = harness.binary("shedc")
    mid = "shedc-1"
    url = "http://burrow.service/v1.0/%s/%s/%s" % (ACCOUNTS[0], QUEUE, mid)
    body = b"written by shedc through DNS"
    rc, out, err = ctx["lab"].run("client1", [shedc, "put", url], input=body)
    assert rc == 0, "shedc put -> rc %d: %s%s" % (rc, out, err)
    ctx["acked"].append({"id": mid, "account": ACCOUNTS[0], "body": body, "effective": None,
                         "phase": "home"})
    rc, out, err = ctx["lab"].run("client1", [shedc, "get", url + "?detail=body"])
    assert rc == 0 and body.decode() in out, "shedc get -> rc %d: %r %s" % (rc, out, err)


def test_escalation_to_dc2():
    needs_setup()
    lab = ctx["lab"]
    before = sum(local.metric_sum(metrics(node("master%d" % dc)), "shed_redirects_total")
                 for dc in DCS)
    for i in range(1, BACKENDS + 1):
        lab.link("dc1-burrow%d" % i, False)
    ctx["dc1_cut"] = True
    t0 = time.monotonic()
    for name in ("dc1-line1", "dc1-line2"):
        wait_members(node(name), 0, 10.0)
    print("     dc1 line sheds saw the outage in %.1fs" % (time.monotonic() - t0))
    # A line shed escalates only once a master has acknowledged the change
    # that emptied the cell (docs/masters.md); it holds a request for up to
    # 2 s for that, then answers 503 with Retry-After (a loaded CI run saw
    # it). Both line sheds must escalate before the phase.
    probe = "/v1.0/%s/%s/probe" % (ACCOUNTS[0], QUEUE)
    for name in ("dc1-line1", "dc1-line2"):
        n = node(name)
        harness.wait_until(
            lambda: netlab.in_ns(lab.ns(name), lambda: local.http_get(
                n["url"] + probe, headers={"Host": "burrow.service"}))[0] == 302,
            timeout=5, step=0.05, what="%s to escalate" % name)
    print("     and escalate in %.2fs" % (time.monotonic() - t0))
    hosts = put_phase("client1", "away", want_dc=2, min_hops=2, max_hops=3)
    after = sum(local.metric_sum(metrics(node("master%d" % dc)), "shed_redirects_total")
                for dc in DCS)
    assert after - before >= N, "masters redirected %d times for %d escalated PUTs" % (
        after - before, N)
    away = [m for m in ctx["acked"] if m["phase"] == "away"]
    for m in away:
        check_read("client1", m)  # escalated reads find them too
        check_read("client2", m)  # and datacenter 2's own clients
    print("     %d PUTs escalated to %s" % (len(hosts), sorted(set(hosts))))


def test_traffic_returns_home():
    needs_setup()
    lab = ctx["lab"]
    for i in range(1, BACKENDS + 1):
        lab.link("dc1-burrow%d" % i, True)
    ctx["dc1_cut"] = False
    t0 = time.monotonic()
    for name in ("dc1-line1", "dc1-line2"):
        wait_members(node(name), BACKENDS, 30.0)
    print("     dc1 backends back in %.1fs" % (time.monotonic() - t0))
    put_phase("client1", "back", want_dc=1, min_hops=1, max_hops=1)


def test_nothing_acknowledged_is_lost():
    needs_setup()
    for i in range(1, BACKENDS + 1):
        p = ctx["procs"]["dc1-burrow%d" % i]
        assert p.alive(), "dc1-burrow%d died" % i
    assert ctx["acked"], "nothing was acknowledged"
    t0 = time.monotonic()
    for m in ctx["acked"]:
        if m["phase"] == "away":
            # Written in dc2 while dc1 was out: the masters' hints bring it
            # home once dc1 is back (docs/reachability.md), so its own
            # clients read it there; until then it is still in dc2.
            harness.wait_until(lambda: read_ok("client1", m) or read_ok("client2", m),
                               timeout=10, step=0.2, what="away message %s" % m["id"])
            continue
        check_read("client1", m)
        if m["effective"]:  # and where it was acknowledged, directly
            st, _, _, text = curl("client1", "GET", m["effective"] + "?detail=body",
                                  follow=False)
            if st != 200:  # say where it is instead, and what the handoff did
                where = ["%s %d" % (b, curl("client1", "GET", "http://%s:8080/v1.0/%s/%s/%s"
                                            % (b, m["account"], QUEUE, m["id"]),
                                            follow=False)[0])
                         for dc in DCS for b in sorted(dc_backends(dc))]
                print("     %s: %s; dc1 aggregator: %s" % (
                    m["id"], ", ".join(where),
                    [(x[0], x[2]) for x in metrics(node("dc1-agg1")) if "handoff" in x[0]]))
            assert st == 200 and text.encode() == m["body"], \
                "direct GET %s -> %d" % (m["effective"], st)
    away = [m for m in ctx["acked"] if m["phase"] == "away"]
    harness.wait_until(lambda: all(read_ok("client1", m) for m in away), timeout=20, step=0.5,
                       what="every away message home in dc1")
    print("     %d acknowledged messages all read back, the %d written away from home "
          "in dc1 after %.1fs" % (len(ctx["acked"]), len(away), time.monotonic() - t0))


def test_killed_backends_escalate_and_come_home():
    """The same with the processes really killed (SIGKILL): dc1's clients
    escalate to dc2, the restarted (empty, in-memory) backends take traffic
    home again, and everything acknowledged since the kill reads back."""
    needs_setup()
    since = len(ctx["acked"])
    for i in range(1, BACKENDS + 1):
        ctx["procs"]["dc1-burrow%d" % i].kill()
    t0 = time.monotonic()
    for name in ("dc1-line1", "dc1-line2"):
        wait_members(node(name), 0, 10.0)
    print("     dc1 line sheds saw the killed backends down in %.1fs" % (time.monotonic() - t0))
    put_phase("client1", "killed", want_dc=2, min_hops=2, max_hops=3)
    for i in range(1, BACKENDS + 1):
        name = "dc1-burrow%d" % i
        start(name, ctx["argv"][name])
        n = node(name)
        ctx["lab"].wait_port(name, n["host"], n["port"], proc=ctx["procs"][name])
    for name in ("dc1-line1", "dc1-line2"):
        wait_members(node(name), BACKENDS, 30.0)
    put_phase("client1", "reborn", want_dc=1, min_hops=1, max_hops=1)
    fresh = ctx["acked"][since:]
    assert len(fresh) == 2 * N, len(fresh)
    for m in fresh:
        check_read("client2" if m["phase"] == "killed" else "client1", m)
    print("     %d messages acknowledged since the kill all read back" % len(fresh))


def main():
    tests = [("setup", test_setup), ("dns_split_horizon", test_dns_split_horizon),
             ("home_puts_and_reads", test_home_puts_and_reads),
             ("list_via_aggregator", test_list_via_aggregator),
             ("shedc_through_dns", test_shedc_through_dns),
             ("escalation_to_dc2", test_escalation_to_dc2),
             ("traffic_returns_home", test_traffic_returns_home),
             ("nothing_acknowledged_is_lost", test_nothing_acknowledged_is_lost),
             ("killed_backends_escalate_and_come_home",
              test_killed_backends_escalate_and_come_home)]
    wrapped = []
    for name, fn in tests:
        def run(fn=fn):
            try:
                fn()
            except BaseException:
                if not ctx.get("dumped") and ctx["procs"]:
                    ctx["dumped"] = True
                    dump_logs()
                raise
        wrapped.append((name, run))
    try:
        harness.run_tests(wrapped)
    finally:
        for p in ctx["procs"].values():
            p.kill()
        if "lab" in ctx:
            ctx["lab"].close()


if __name__ == "__main__":
    main()
