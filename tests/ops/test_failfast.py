# SPDX-License-Identifier: ISC
"""Fail fast on bad settings (issue 16, item 6): burrowd with a weight
above the limit or without a credential exits at start; burrowd and
`shed announce` whose first heartbeat a shed refuses exit 1 with the
shed's reason instead of running unrouted; `shed -t` checks that
state_dir is writable; credential_file reads systemd's
$CREDENTIALS_DIRECTORY (deploy/local status: tests/deploy/test_local.py)."""
import os
import subprocess

import harness

SECRET = "ops-failfast-secret"


def shed(d, extra=""):
    port = harness.free_port()
    path = os.path.join(d, "shed.yaml")
    with open(path, "w") as f:
        f.write("cell: a\nlisten: [\"127.0.0.1:%d\"]\ncredential: %s\n"
                "register_networks: [\"127.0.0.0/8\"]\n"
                "services:\n  burrow: {kind: burrow, weight_scale: 10}\n%s" % (port, SECRET, extra))
    p = harness.Proc([harness.binary("shed"), "-c", path], name="shed")
    harness.wait_port("127.0.0.1", port, proc=p)
    return p, "http://127.0.0.1:%d" % port


def run(argv, timeout=20, env=None):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, env=full)


def test_burrowd_bad_settings_at_start():
    b = harness.binary("burrowd")
    r = run([b, "--listen", "127.0.0.1:0", "--weight", "70000"])
    assert r.returncode == 2 and "--weight 70000: want 1..65535" in r.stderr, r
    r = run([b, "--listen", "127.0.0.1:0", "--announce", "http://127.0.0.1:1"])
    assert r.returncode == 2 and "--announce needs --credential" in r.stderr, r
    r = run([b, "--listen", "127.0.0.1:0", "--announce", "http://127.0.0.1:1",
             "--credential-file", "/nonexistent/credential"])
    assert r.returncode == 1 and "/nonexistent/credential" in r.stderr, r


def test_refused_heartbeat_exits():
    d = harness.tmpdir("shed-ops-failfast-")
    p, url = shed(d)
    b = harness.binary("burrowd")
    # wrong credential: 401, exit 1 with the reason
    r = run([b, "--listen", "127.0.0.1:%d" % harness.free_port(), "--announce", url,
             "--credential", "wrong", "--id", "f1"])
    assert r.returncode == 1 and "refused the heartbeat: 401 credential required" in r.stderr, r
    # a weight above the service's weight_scale: 400
    r = run([b, "--listen", "127.0.0.1:%d" % harness.free_port(), "--announce", url,
             "--credential", SECRET, "--id", "f2", "--weight", "50"])
    assert r.returncode == 1 and "400 heartbeat: weight above the service's weight_scale" \
        in r.stderr, r
    # shed announce, the same
    backend = harness.free_port()
    bp = harness.Proc([b, "--listen", "127.0.0.1:%d" % backend], name="plain-burrowd")
    harness.wait_port("127.0.0.1", backend, proc=bp)
    r = run([harness.binary("shed"), "announce", "--backend", "http://127.0.0.1:%d" % backend,
             "--health-path", "/metrics", "--announce", url, "--service", "burrow", "--id", "f3",
             "--credential", "wrong", "--check-interval", "100ms"])
    assert r.returncode == 1 and "401 credential required" in r.stderr, r
    # and a good one keeps running
    ok = harness.Proc([b, "--listen", "127.0.0.1:%d" % harness.free_port(), "--announce", url,
                       "--credential", SECRET, "--id", "f4", "--weight", "10"], name="ok-burrowd")
    harness.wait_until(lambda: "accepted burrow/f4" in ok.output(), timeout=10, what="accepted")
    assert ok.alive()
    assert ok.stop() == 0 and bp.stop() == 0 and p.stop() == 0


def check(d, text, env=None):
    path = os.path.join(d, "t.yaml")
    with open(path, "w") as f:
        f.write("cell: a\n" + text)
    env = dict(env or {})
    env.setdefault("CREDENTIALS_DIRECTORY", "")
    return run([harness.binary("shed"), "-t", "-c", path], env=env)


def test_shed_t_state_dir():
    d = harness.tmpdir("shed-ops-failfast-")
    ok = os.path.join(d, "state")
    os.makedirs(ok)
    r = check(d, "credential: x\nstate_dir: %s\n" % ok)
    assert r.returncode == 0 and "configuration OK" in r.stderr, r
    assert os.listdir(ok) == [], "the probe file is removed"
    r = check(d, "credential: x\nstate_dir: %s/missing\n" % d)
    assert r.returncode == 1 and "state_dir %s/missing: No such file or directory" % d \
        in r.stderr, r
    afile = os.path.join(d, "afile")
    open(afile, "w").close()
    r = check(d, "credential: x\nstate_dir: %s\n" % afile)
    assert r.returncode == 1 and "not a directory" in r.stderr, r
    if os.geteuid() != 0:  # root writes anywhere; a read-only directory for others
        ro = os.path.join(d, "ro")
        os.makedirs(ro, mode=0o500)
        r = check(d, "credential: x\nstate_dir: %s\n" % ro)
        assert r.returncode == 1 and "not writable" in r.stderr, r


def test_credentials_directory():
    d = harness.tmpdir("shed-ops-failfast-")
    creds = os.path.join(d, "creds")
    os.makedirs(creds)
    with open(os.path.join(creds, "credential"), "w") as f:
        f.write("from-systemd\n")
    r = check(d, "credential_file: ${CREDENTIALS_DIRECTORY}/credential\n",
              {"CREDENTIALS_DIRECTORY": creds})
    assert r.returncode == 0, r
    r = check(d, "credential_file: ${CREDENTIALS_DIRECTORY}/credential\n")
    assert r.returncode == 1 and "CREDENTIALS_DIRECTORY is not set" in r.stderr, r
    # the fallback for a check by hand
    r = check(d, "credential_file: ${CREDENTIALS_DIRECTORY:-%s}/credential\n" % creds)
    assert r.returncode == 0, r
    r = check(d, "credential_file: ${CREDENTIALS_DIRECTORY:-%s}/credential\n" % d,
              {"CREDENTIALS_DIRECTORY": creds})
    assert r.returncode == 0, "the variable wins over the fallback: %r" % (r,)
    r = check(d, "credential_file: ${CREDENTIALS_DIRECTORY:-%s}/credential\n" % d)
    assert r.returncode == 1 and "%s/credential: No such file" % d in r.stderr, r
    r = check(d, "credential_file: ${CREDENTIALS_DIRECTORY/credential\n")
    assert r.returncode == 1, r


if __name__ == "__main__":
    harness.run_tests([("burrowd_bad_settings_at_start", test_burrowd_bad_settings_at_start),
                       ("refused_heartbeat_exits", test_refused_heartbeat_exits),
                       ("shed_t_state_dir", test_shed_t_state_dir),
                       ("credentials_directory", test_credentials_directory)])
