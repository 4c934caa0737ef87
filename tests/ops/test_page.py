# SPDX-License-Identifier: ISC
"""The status page a person looks at, and the figures behind it (issue 16,
item 4): a small deployment (cell a: line+aggregator a1 and line a2, peers;
master m1; cell b: line b1 with no backend, so its requests escalate; two
burrowd in cell a, one backend with a wrong credential) and then

- /_shed/v1/status.html of a1 rendered by headless Chromium into a PNG
  screenshot (kept in the test's tmp dir; its path is printed), and the
  page's HTML holds the member ids, the peer and master with their sync
  lag, the refused heartbeat; m1's page shows the cells and the escalation;
- /_shed/v1/status has version, uptime and sync state;
- shed's and burrowd's /metrics pass `promtool check metrics` and carry
  shed_build_info / burrowd_build_info.
"""
import os
import shutil
import subprocess
import sys

import harness

SECRET = "ops-page-secret"
RING = "  burrow: {kind: burrow, buckets: 1024, k: 3, r: 3}\n"


def shed_config(d, name, port, cell, roles, peers=(), masters=(), cells=()):
    state = os.path.join(d, "state-" + name)
    os.makedirs(state, exist_ok=True)
    lines = ["cell: %s" % cell, "roles: [%s]" % ", ".join(roles),
             'listen: ["127.0.0.1:%d"]' % port, "default_service: burrow",
             "credential: %s" % SECRET, 'register_networks: ["127.0.0.0/8"]',
             "state_dir: %s" % state]
    if peers:
        lines.append("peers: [%s]" % ", ".join(peers))
    if masters:
        lines.append("masters: [%s]" % ", ".join(masters))
    if cells:
        lines.append("cells:")
        for c, sheds in cells:
            lines += ["  - name: %s" % c, "    proximity: 10", "    sheds: [%s]" % ", ".join(sheds)]
    lines += ["timings: {heartbeat_interval: 200ms, lease: 1s, join_heartbeats: 1, "
              "sync_interval: 100ms, settle_window: 0}", "services:"]
    path = os.path.join(d, name + ".yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n" + RING)
    return path


class Deployment:
    def __init__(self):
        self.dir = harness.tmpdir("shed-ops-page-")
        self.port = {n: harness.free_port() for n in ("a1", "a2", "b1", "m1")}
        self.url = {n: "http://127.0.0.1:%d" % p for n, p in self.port.items()}
        u = self.url
        confs = {
            "m1": shed_config(self.dir, "m1", self.port["m1"], "m", ["master"],
                              cells=[("a", [u["a1"], u["a2"]]), ("b", [u["b1"]])]),
            "a1": shed_config(self.dir, "a1", self.port["a1"], "a", ["line", "aggregator"],
                              peers=[u["a2"]], masters=[u["m1"]]),
            "a2": shed_config(self.dir, "a2", self.port["a2"], "a", ["line"], peers=[u["a1"]],
                              masters=[u["m1"]]),
            "b1": shed_config(self.dir, "b1", self.port["b1"], "b", ["line"], masters=[u["m1"]]),
        }
        self.procs = {}
        for n in ("m1", "a1", "a2", "b1"):
            self.procs[n] = harness.Proc([harness.binary("shed"), "-c", confs[n]],
                                         name="shed-" + n)
            harness.wait_port("127.0.0.1", self.port[n], proc=self.procs[n])
        self.backend_ports = []
        for i, cred in ((1, SECRET), (2, SECRET), (3, "not-the-secret")):
            port = harness.free_port()
            self.procs["b%d" % i] = harness.Proc(
                [harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % port, "--announce",
                 u["a1"], "--id", "page-b%d" % i, "--credential", cred, "--default-ttl", "0"],
                name="burrowd-%d" % i)
            self.backend_ports.append(port)

    def status(self, name):
        r = harness.request("GET", self.url[name] + "/_shed/v1/status")
        assert r.status == 200, r
        return r.json()

    def stop(self):
        for p in self.procs.values():
            p.stop()


D = None


def up():
    global D
    D = Deployment()

    def ready():
        st = D.status("a2")
        ids = {m["id"] for s in st["services"] for m in s["members"] if m["state"] == "up"}
        return ids == {"page-b1", "page-b2"}
    harness.wait_until(ready, timeout=20, what="a2 sees both backends through a1")
    # cell b has no backend: a message request escalates through m1 into cell a
    def escalated():
        r = harness.request("GET", D.url["b1"] + "/v1.0/acct/q/m1",
                            headers={"Host": "burrow.service"})
        return r.status in (302, 307) and "shed_esc" in r.header("location", "")
    harness.wait_until(escalated, timeout=10, what="b1 escalates to m1")
    # and the master sends it into cell a
    loc = harness.request("GET", D.url["b1"] + "/v1.0/acct/q/m1",
                          headers={"Host": "burrow.service"}).header("location")
    r = harness.request("GET", loc, headers={"Host": "burrow.service"})
    assert r.status in (302, 307), r


def test_status_json():
    st = D.status("a1")
    assert st["version"] and st["version"][0].isdigit(), st["version"]
    assert st["uptime_s"] >= 0 and st["started"].endswith("Z"), st
    assert st["cell"] == "a" and st["roles"] == ["line", "aggregator"], st
    sync = st["sync"]
    kinds = {t["kind"]: t for t in sync["targets"]}
    assert set(kinds) == {"peer", "master"}, sync
    harness.wait_until(lambda: all(t["last_ack_ms_ago"] is not None and t["behind"] == 0
                                   for t in D.status("a1")["sync"]["targets"]),
                       timeout=10, what="peer and master caught up")
    assert "partial_total" in st["aggregator"] and "moved_total" in st["handoff"], st
    assert st["heartbeats"]["unauthorized"] >= 1, st["heartbeats"]
    kinds = [e["kind"] for e in st["events"]]
    assert "heartbeat" in kinds, st["events"]
    assert any(e["kind"] == "escalated" for e in D.status("b1")["events"]), D.status("b1")
    m = D.status("m1")
    assert {c["name"] for c in m["master"]["cells"]} >= {"a"}, m["master"]
    assert any(e["kind"] == "master" and "to cell a" in e["text"] for e in m["events"]), m


def test_page_html():
    r = harness.request("GET", D.url["a1"] + "/_shed/v1/status.html")
    assert r.status == 200 and r.header("content-type").startswith("text/html"), r
    html = r.body.decode()
    for want in ("page-b1", "page-b2", "cell <b>a</b>", "line, aggregator", D.url["a2"],
                 D.url["m1"], "Peers and masters", "ring generation", "401 credential required",
                 "Aggregator", "Handoff", "partial answers"):
        assert want in html, want
    assert "<script" not in html and "src=" not in html, "no script, no external asset"
    # /_shed/ is the same page; HEAD works; other methods do not
    assert "page-b1" in harness.request("GET", D.url["a1"] + "/_shed/").body.decode()
    assert harness.request("HEAD", D.url["a1"] + "/_shed/v1/status.html").status == 200
    assert harness.request("POST", D.url["a1"] + "/_shed/v1/status.html", body=b"").status == 405
    m = harness.request("GET", D.url["m1"] + "/_shed/v1/status.html").body.decode()
    assert "Cells (master view)" in m and "to cell a" in m, m


def test_screenshot():
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: tools/bootstrap installs it"
    shot = os.path.join(D.dir, "status-a1.png")
    profile = os.path.join(D.dir, "chromium-profile")
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--user-data-dir=" + profile, "--screenshot=" + shot,
            "--window-size=1200,1600", D.url["a1"] + "/_shed/v1/status.html"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    with open(shot, "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert len(png) > 20000, "a blank page? %d bytes" % len(png)
    print("screenshot: %s (%d bytes)" % (shot, len(png)), flush=True)


def promtool(text):
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: tools/bootstrap installs prometheus"
    return subprocess.run([tool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)


def test_metrics_promtool():
    for name in ("a1", "m1"):
        text = harness.request("GET", D.url[name] + "/metrics").body.decode()
        assert 'shed_build_info{version="' in text and "shed_uptime_seconds " in text, text[:500]
        r = promtool(text)
        assert r.returncode == 0, (name, r.stdout, r.stderr)
    port = D.backend_ports[0]
    r = harness.request("GET", "http://127.0.0.1:%d/metrics" % port)
    assert r.status == 200, r
    text = r.body.decode()
    for series in ('burrowd_build_info{version="', "burrowd_messages ", "burrowd_queues ",
                   "burrowd_accounts ", 'burrowd_responses_total{code="200"}'):
        assert series in text, series
    r2 = promtool(text)
    assert r2.returncode == 0, (r2.stdout, r2.stderr)
    # it counts: a PUT shows up as a message and a 201
    harness.request("PUT", "http://127.0.0.1:%d/v1.0/acct/q/x" % port, body=b"x")
    text = harness.request("GET", "http://127.0.0.1:%d/metrics" % port).body.decode()
    assert "burrowd_messages 1\n" in text and 'burrowd_responses_total{code="201"} 1' in text, text
    # /metrics is no Burrow path, and Burrow paths still answer
    assert harness.request("GET", "http://127.0.0.1:%d/v1.0" % port).status == 200
    assert harness.request("DELETE", "http://127.0.0.1:%d/metrics" % port).status == 405


if __name__ == "__main__":
    try:
        up()
        harness.run_tests([("status_json", test_status_json), ("page_html", test_page_html),
                           ("screenshot", test_screenshot),
                           ("metrics_promtool", test_metrics_promtool)])
    finally:
        if D is not None:
            D.stop()
