#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""deploy/local on loopback: a whole deployment comes up from the built
binaries, its state file names every endpoint and pid, its line sheds
redirect into their own cell, stop/start work on name patterns, `down`
stops everything (also after the tool itself died), and a daemon that dies
at start makes `up` fail with its log tail and leave nothing running.
"""
import json
import os
import signal
import stat
import subprocess
import sys

sys.path.insert(1, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402

LOCAL = os.path.join(harness.SOURCE_DIR, "deploy", "local")
BUILD = os.path.abspath(harness.BUILD_DIR)


def local(run_dir, *args, build=BUILD, timeout=90):
    r = subprocess.run(["/usr/bin/python3", LOCAL, "--run-dir", run_dir, "--build-dir", build]
                       + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace")


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def state(run_dir):
    with open(os.path.join(run_dir, "deployment.json")) as f:
        return json.load(f)


def test_up_status_redirect_down():
    run = harness.tmpdir("shed-local-")
    rc, out = local(run, "up", "--cells", "2", "--lines", "2", "--masters", "2",
                    "--backends", "3", "--base-port", "0")
    try:
        assert rc == 0, "up failed:\n" + out
        st = state(run)
        assert st["status"] == "up"
        assert [c["name"] for c in st["cells"]] == ["dc1", "dc2"]
        for c in st["cells"]:
            assert len(c["line_sheds"]) == 2 and len(c["backends"]) == 3, c
            assert len(c["aggregators"]) == 1, c
        assert len(st["masters"]) == 2
        procs = st["processes"]
        assert len(procs) == 2 + 2 * (2 + 1 + 3)
        for p in procs:
            assert p["pid"] and pid_alive(p["pid"]), "%s not running" % p["name"]
            assert os.path.exists(p["log"]), p
            if p["role"] != "backend":
                assert os.path.exists(p["config"]), p
        rc, out = local(run, "status")
        assert rc == 0 and "NO " not in out, out
        # A line shed of dc1 sends a message PUT to one of dc1's backends.
        line = st["cells"][0]["line_sheds"][0]["url"]
        backends = [b["url"] for b in st["cells"][0]["backends"]]
        r = harness.request("PUT", line + "/v1.0/acct/q/m1", body=b"x",
                            headers={"Host": "burrow.service"})
        assert r.status == 307, r
        loc = r.header("location", "")
        assert any(loc.startswith(b + "/") for b in backends), loc
        # stop/start by pattern
        rc, out = local(run, "stop", "dc2-burrow*")
        assert rc == 0, out
        dead = [p for p in state(run)["processes"] if p["name"].startswith("dc2-burrow")]
        assert all(p["pid"] is None for p in dead)
        # status says so in its exit code and names them (issue 16, item 6)
        rc, out = local(run, "status")
        assert rc == 1 and "down: dc2-burrow" in out, (rc, out)
        for p in procs:
            if p["name"].startswith("dc2-burrow"):
                assert not pid_alive(p["pid"]), p["name"]
        rc, out = local(run, "start", "dc2-burrow*")
        assert rc == 0, out
        again = [p for p in state(run)["processes"] if p["name"].startswith("dc2-burrow")]
        assert all(p["pid"] and pid_alive(p["pid"]) for p in again)
        harness.wait_until(lambda: local(run, "status")[0] == 0, timeout=10,
                           what="status 0 once everything runs again")
        # a crash (not a stop) is down too
        victim = again[0]
        os.kill(victim["pid"], signal.SIGKILL)
        harness.wait_until(lambda: not pid_alive(victim["pid"]), timeout=5, what="killed")
        rc, out = local(run, "status")
        assert rc == 1 and ("down: " + victim["name"]) in out, (rc, out)
    finally:
        pids = [p["pid"] for p in state(run)["processes"] if p["pid"]]
        rc, out = local(run, "down")
    assert rc == 0, out
    assert pids and not any(pid_alive(p) for p in pids), "left running after down"
    assert all(p["pid"] is None for p in state(run)["processes"])
    rc, out = local(run, "down")  # twice is fine
    assert rc == 0, out


def test_down_after_crash():
    """`up` killed halfway: `down` still stops what the state file names."""
    run = harness.tmpdir("shed-local-")
    p = subprocess.Popen(["/usr/bin/python3", LOCAL, "--run-dir", run, "--build-dir", BUILD,
                          "up", "--cells", "1", "--masters", "0", "--base-port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # Wait until at least one daemon is recorded, then kill the tool hard.
    harness.wait_until(lambda: os.path.exists(os.path.join(run, "deployment.json")) and any(
        x["pid"] for x in state(run)["processes"]), timeout=30, what="a recorded pid")
    p.send_signal(signal.SIGKILL)
    p.wait()
    pids = [x["pid"] for x in state(run)["processes"] if x["pid"]]
    assert pids
    rc, out = local(run, "down")
    assert rc == 0, out
    assert not any(pid_alive(x) for x in pids), "down left daemons of a crashed up"
    # Nor one started just before the kill, before its pid reached the file.
    mark = (os.path.realpath(run) + "/").encode()
    left = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    if mark in f.read():
                        left.append(int(d))
            except OSError:
                pass
    assert not left, "down left unrecorded daemons: %r" % left


def test_dying_daemon_fails_up_with_log_tail():
    """A shed that exits at start: `up` fails, shows its log, leaves nothing."""
    run = harness.tmpdir("shed-local-")
    fake = harness.tmpdir("shed-fakebuild-")
    for sub, name, script in (
            ("shed", "shed", '#!/bin/sh\n[ "$1" = -t ] && exit 0\n'
                             'echo "fake shed: cannot bind, giving up" >&2\nexit 3\n'),
            ("burrow", "burrowd", "#!/bin/sh\nexec sleep 60\n")):
        os.makedirs(os.path.join(fake, sub))
        path = os.path.join(fake, sub, name)
        with open(path, "w") as f:
            f.write(script)
        os.chmod(path, stat.S_IRWXU)
    rc, out = local(run, "up", "--cells", "1", "--masters", "1", "--base-port", "0",
                    "--timeout", "5", build=fake)
    assert rc != 0, out
    assert "fake shed: cannot bind, giving up" in out, out
    assert all(x["pid"] is None for x in state(run)["processes"]), "up left processes"


if __name__ == "__main__":
    harness.run_tests([("up_status_redirect_down", test_up_status_redirect_down),
                       ("down_after_crash", test_down_after_crash),
                       ("dying_daemon_fails_up_with_log_tail",
                        test_dying_daemon_fails_up_with_log_tail)])
