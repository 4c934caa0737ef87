# SPDX-License-Identifier: ISC
"""Logs that help (issue 16, item 5): ISO 8601 timestamps when stderr is
not journald, no false 'only the line role' warning, the reason when a
listen fails, refused heartbeats logged with their reason and rate-limited,
and the sampled, rate-capped access log of redirects."""
import os
import re
import socket
import subprocess
import time

import harness

SECRET = "ops-logs-secret"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z shed: ", re.M)


def config(d, port, roles="line", extra=""):
    path = os.path.join(d, "shed-%d.yaml" % port)
    with open(path, "w") as f:
        f.write("cell: a\nroles: [%s]\nlisten: [\"127.0.0.1:%d\"]\ndefault_service: burrow\n"
                "credential: %s\nregister_networks: [\"127.0.0.0/8\"]\n"
                "timings: {heartbeat_interval: 200ms, lease: 1s, join_heartbeats: 1}\n%s"
                % (roles, port, SECRET, extra))
    return path


def stop(p):
    """Stop <p> (it must exit 0) and return its whole output."""
    assert p.stop() == 0, p.name
    with open(p.logpath, "rb") as f:
        return f.read().decode("utf-8", "replace")


def shed(d, port, roles="line", extra="", env=None):
    p = harness.Proc([harness.binary("shed"), "-c", config(d, port, roles, extra)], env=env,
                     name="shed-%d" % port)
    harness.wait_port("127.0.0.1", port, proc=p)
    return p


def test_timestamps_and_no_false_warning():
    d = harness.tmpdir("shed-ops-logs-")
    for roles in ("master", "aggregator", "line"):
        port = harness.free_port()
        extra = "cells: [{name: a, sheds: [\"http://127.0.0.1:1\"]}]\n" if roles == "master" else ""
        p = shed(d, port, roles, extra, env={"JOURNAL_STREAM": "1:2"})  # not our stderr
        out = stop(p)
        assert ISO.search(out), out
        assert "<6>" not in out and "<4>" not in out, out
        assert "only the line role" not in out, out


def test_listen_failure_says_why():
    d = harness.tmpdir("shed-ops-logs-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = subprocess.run([harness.binary("shed"), "-c", config(d, port)], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode != 0, r
        assert "cannot listen on 127.0.0.1:%d: Address already in use" % port in r.stderr, r.stderr
        r = subprocess.run([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % port],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 1, r
        assert "cannot listen on 127.0.0.1:%d: Address already in use" % port in r.stderr, r.stderr


def heartbeat(port, cred, sid="hb1"):
    body = ('{"service":"burrow","id":"%s","url":"http://127.0.0.1:9","zone":"",'
            '"weight":1,"state":"up","incarnation":1}' % sid).encode()
    return harness.request("PUT", "http://127.0.0.1:%d/_shed/v1/members/burrow/%s" % (port, sid),
                           body=body, headers={"Authorization": "Bearer " + cred,
                                               "Content-Type": "application/json"})


def test_refused_heartbeats_logged_rate_limited():
    d = harness.tmpdir("shed-ops-logs-")
    port = harness.free_port()
    p = shed(d, port)
    for _ in range(20):
        assert heartbeat(port, "wrong").status == 401
    assert heartbeat(port, SECRET, "ok1").status == 200
    harness.wait_until(lambda: "heartbeat: refused" in p.output(), timeout=5, what="a log line")
    out = p.output()
    lines = [l for l in out.splitlines() if "heartbeat: refused" in l]
    assert len(lines) == 1, "one line per 10 s, not 20:\n" + out
    assert "PUT /_shed/v1/members/burrow/hb1 from 127.0.0.1: 401 credential required" in lines[0]
    assert "warning:" in lines[0], lines[0]
    # another kind of refusal has its own line at once
    body = b'{"service":"burrow","id":"x9","url":"http://10.9.9.9:1","zone":"","weight":1,' \
           b'"state":"up","incarnation":1}'
    r = harness.request("PUT", "http://127.0.0.1:%d/_shed/v1/members/burrow/x9" % port, body=body,
                        headers={"Authorization": "Bearer " + SECRET})
    assert r.status == 403, r
    harness.wait_until(lambda: "403 heartbeat: url host is not inside register_networks"
                       in p.output(), timeout=5, what="the 403 line")
    stop(p)


def test_access_log_sampled_and_capped():
    d = harness.tmpdir("shed-ops-logs-")
    port = harness.free_port()
    p = shed(d, port, extra="log: {access_every: 3, access_rate: 1000}\n")
    assert heartbeat(port, SECRET, "acc1").status == 200
    url = "http://127.0.0.1:%d/v1.0/acct/q/m" % port

    def routed():
        heartbeat(port, SECRET, "acc1")
        return harness.request("GET", url, headers={"Host": "burrow.service"}).status == 302
    harness.wait_until(routed, timeout=10, what="the member routes")
    time.sleep(0.2)
    before = p.output().count("access: ")
    for i in range(30):
        # a wildcard name is routed as its service (item 9) and logged as sent
        r = harness.request("GET", url + "?i=%d" % i, headers={"Host": "x%d.burrow.service" % i})
        assert r.status == 302, r
    harness.wait_until(lambda: p.output().count("access: ") >= before + 10, timeout=5,
                       what="access lines")
    time.sleep(0.2)
    lines = [l for l in p.output().splitlines() if "access: " in l][before:]
    assert 9 <= len(lines) <= 11, "1 in 3 of 30 redirects:\n" + "\n".join(lines)
    assert re.search(r"access: 127\.0\.0\.1 GET /v1\.0/acct/q/m host=x\d+\.burrow\.service -> 302 "
                     r"http://127\.0\.0\.1:9/v1\.0/acct/q/m\?i=\d+", lines[0]), lines[0]
    stop(p)
    # the rate cap: every redirect sampled, at most 2 lines a second
    port = harness.free_port()
    p = shed(d, port, extra="log: {access_every: 1, access_rate: 2}\n")
    assert heartbeat(port, SECRET, "acc2").status == 200
    url = "http://127.0.0.1:%d/v1.0/acct/q/m" % port
    harness.wait_until(lambda: heartbeat(port, SECRET, "acc2") and harness.request(
        "GET", url, headers={"Host": "burrow.service"}).status == 302, timeout=10, what="routes")
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 0.5:
        harness.request("GET", url, headers={"Host": "burrow.service"})
        n += 1
        if n % 20 == 0:
            heartbeat(port, SECRET, "acc2")
    time.sleep(1.1)
    heartbeat(port, SECRET, "acc2")
    harness.request("GET", url, headers={"Host": "burrow.service"})
    time.sleep(0.2)
    lines = [l for l in p.output().splitlines() if "access: " in l]
    assert n > 10 and len(lines) <= 2 * 3, (n, lines)
    assert "over access_rate, not logged" in lines[-1], lines
    stop(p)
    # off by default: no access line at all
    port = harness.free_port()
    p = shed(d, port)
    assert heartbeat(port, SECRET, "acc3").status == 200
    for _ in range(5):
        heartbeat(port, SECRET, "acc3")
        harness.request("GET", "http://127.0.0.1:%d/v1.0/a/q/m" % port,
                        headers={"Host": "burrow.service"})
    assert "access: " not in stop(p)


if __name__ == "__main__":
    harness.run_tests([("timestamps_and_no_false_warning", test_timestamps_and_no_false_warning),
                       ("listen_failure_says_why", test_listen_failure_says_why),
                       ("refused_heartbeats_logged_rate_limited",
                        test_refused_heartbeats_logged_rate_limited),
                       ("access_log_sampled_and_capped", test_access_log_sampled_and_capped)])
