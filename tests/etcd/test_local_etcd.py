# SPDX-License-Identifier: ISC
"""`deploy/local up --membership etcd`: a local etcd comes up first, the
line sheds and aggregators of both cells get `membership: {store: etcd}`
and no peers, every shed sees its cell's backends through etcd (one key per
backend and line shed), lists and redirects work, a stopped backend is
skipped everywhere, and `down` stops etcd too.
"""
import json
import os
import subprocess
import time

import harness

LOCAL = os.path.join(harness.SOURCE_DIR, "deploy", "local")
BUILD = os.path.abspath(harness.BUILD_DIR)


def local(run_dir, *args, timeout=120):
    r = subprocess.run(["/usr/bin/python3", LOCAL, "--run-dir", run_dir, "--build-dir", BUILD]
                       + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace")


def up_members(url):
    st = harness.request("GET", url + "/_shed/v1/status", timeout=2).json()
    return {m["id"] for s in st["services"] if s["name"] == "burrow"
            for m in s["members"] if m["state"] == "up"}


def test_up_etcd():
    run = harness.tmpdir("shed-local-etcd-")
    rc, out = local(run, "up", "--membership", "etcd", "--cells", "2", "--lines", "2",
                    "--masters", "1", "--backends", "3", "--base-port", "0")
    try:
        assert rc == 0, "up failed:\n" + out
        assert "etcd1" in out
        with open(os.path.join(run, "deployment.json")) as f:
            st = json.load(f)
        procs = {p["name"]: p for p in st["processes"]}
        assert procs["etcd1"]["role"] == "etcd"
        with open(procs["dc1-line1"]["config"]) as f:
            conf = f.read()
        assert 'store: "etcd"' in conf and "peers" not in conf, conf
        for c in st["cells"]:
            want = {b["name"] for b in c["backends"]}
            for s in c["line_sheds"] + c["aggregators"]:
                harness.wait_until(lambda: up_members(s["url"]) == want, timeout=10,
                                   what="%s sees its cell through etcd" % s["name"])
                assert harness.metric(s["url"], "shed_etcd_up") == 1
                harness.wait_until(lambda: harness.metric(s["url"], "shed_etcd_keys") == 6,
                                   timeout=10, what="3 backends x 2 line sheds keys")
        line = st["cells"][0]["line_sheds"][0]["url"]
        r = harness.request("PUT", line + "/v1.0/acct/q/m1", body=b"x",
                            headers={"Host": "burrow.service"})
        assert r.status == 307, r
        rc, out = local(run, "stop", "dc1-burrow1")
        assert rc == 0, out
        t0 = time.monotonic()
        for s in st["cells"][0]["line_sheds"] + st["cells"][0]["aggregators"]:
            harness.wait_until(lambda: "dc1-burrow1" not in up_members(s["url"]), timeout=10,
                               what="%s skips the stopped backend" % s["name"])
        print("stopped backend skipped by every shed of dc1 after %.0f ms"
              % ((time.monotonic() - t0) * 1000), flush=True)
        rc, out = local(run, "status")
        assert "etcd1" in out and "dc1-burrow1" in out, out
    finally:
        rc, out = local(run, "down")
    assert rc == 0, out
    assert "stopped etcd1" in out, out
    with open(os.path.join(run, "deployment.json")) as f:
        for p in json.load(f)["processes"]:
            assert not p["pid"] or not os.path.exists("/proc/%d" % p["pid"]) or \
                open("/proc/%d/stat" % p["pid"]).read().rsplit(")", 1)[1].split()[0] == "Z", p


if __name__ == "__main__":
    harness.run_tests([("up_etcd", test_up_etcd)])
