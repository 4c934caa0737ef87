# SPDX-License-Identifier: ISC
"""Command-line conventions (issue 16, item 7): --help exits 0 on stdout
and --version exists on shed, shed announce, shedc and burrowd; a usage
error is one line on stderr naming the bad argument (exit 2); refused
values say why; shedc shows the transport cause without -v and takes its
sheds from SHED; durations are written one way (500ms, 2s, 1m)."""
import os
import subprocess

import harness

PROGS = {
    "shed": [harness.binary("shed")],
    "shed announce": [harness.binary("shed"), "announce"],
    "shedc": [harness.binary("shedc")],
    "burrowd": [harness.binary("burrowd")],
}


def run(argv, env=None, stdin=None, timeout=30):
    full = dict(os.environ)
    full.pop("SHED", None)
    full.update(env or {})
    return subprocess.run([str(a) for a in argv], capture_output=True, timeout=timeout,
                          env=full, input=stdin)


def one_line(r):
    err = r.stderr.decode()
    assert r.returncode == 2, (r.returncode, err)
    assert err.count("\n") == 1 and err.endswith("\n"), "one line, not the help:\n" + err
    assert "usage:" not in err, err
    return err


def test_help_and_version():
    for name, argv in PROGS.items():
        r = run(argv + ["--help"])
        assert r.returncode == 0, (name, r)
        assert r.stdout.decode().startswith("usage: "), (name, r.stdout)
        assert r.stderr == b"", (name, r.stderr)
        r = run(argv + ["--version"])
        assert r.returncode == 0 and r.stderr == b"", (name, r)
        prog = name.split()[0]
        out = r.stdout.decode()
        assert out.startswith(prog + " ") and out.count("\n") == 1 and out[len(prog) + 1].isdigit(), \
            (name, out)


def test_usage_errors_name_the_argument():
    for name, argv in PROGS.items():
        err = one_line(run(argv + ["--frobnicate"]))
        assert "unknown option --frobnicate" in err, (name, err)
    err = one_line(run(PROGS["shed"] + ["-c"]))
    assert "-c needs a value" in err, err
    err = one_line(run(PROGS["burrowd"] + ["--listen"]))
    assert "--listen needs a value" in err, err
    err = one_line(run(PROGS["shedc"] + ["--retries", "0", "get", "http://burrow.service/v1.0/a"]))
    assert "--retries 0: want 1..100" in err, err
    err = one_line(run(PROGS["shedc"] + ["--max-hops", "99", "get", "x"]))
    assert "--max-hops 99: want 1..10" in err, err
    err = one_line(run(PROGS["shedc"] + ["--timeout", "soon", "get", "x"]))
    assert "--timeout soon: not a duration like 500ms, 2s or 1m" in err, err
    err = one_line(run(PROGS["shedc"] + ["put", "x", "--ttl", "1500ms"]))
    assert "--ttl 1500ms: not a whole number of seconds" in err, err
    err = one_line(run(PROGS["shedc"] + ["frob", "x"]))
    assert "unknown command frob" in err, err
    err = one_line(run(PROGS["shedc"] + ["get", "x", "--bogus"]))
    assert "unknown option --bogus" in err, err
    err = one_line(run(PROGS["burrowd"] + ["--listen", "127.0.0.1:0", "--idle-timeout", "x"]))
    assert "--idle-timeout x" in err, err
    err = one_line(run(PROGS["shed announce"] + ["--backend", "http://127.0.0.1:1",
                                                 "--check-interval", "10ms"]))
    assert "--check-interval 10ms: want 50ms..600000ms" in err, err


def test_shedc_cause_and_shed_env():
    # no -v: the cause is on the error line
    r = run(PROGS["shedc"] + ["--retries", "1", "--timeout", "2s", "get",
                              "http://burrow.service/v1.0/a/q/m"],
            env={"SHED": "127.0.0.1:%d" % harness.free_port()})
    assert r.returncode == 3, r
    assert "Couldn't connect to server" in r.stderr.decode(), r.stderr
    # SHED names the shed (here a burrowd: no redirect needed) like --shed
    port = harness.free_port()
    p = harness.Proc([harness.binary("burrowd"), "--listen", "127.0.0.1:%d" % port,
                      "--idle-timeout", "30s", "--default-ttl", "10m"], name="cli-burrowd")
    harness.wait_port("127.0.0.1", port, proc=p)
    env = {"SHED": "127.0.0.1:%d" % port}
    url = "http://burrow.service/v1.0/cli/q/m1"
    r = run(PROGS["shedc"] + ["put", url, "--ttl", "2m"], env=env, stdin=b"hello")
    assert r.returncode == 0, r
    r = run(PROGS["shedc"] + ["--json", "get", url, "--detail", "all"], env=env)
    assert r.returncode == 0 and b'"body": "hello"' in r.stdout.replace(b'":"', b'": "'), r
    import json
    ttl = json.loads(r.stdout)["ttl"]
    assert 100 < ttl <= 120, ttl
    assert p.stop() == 0


if __name__ == "__main__":
    harness.run_tests([("help_and_version", test_help_and_version),
                       ("usage_errors_name_the_argument", test_usage_errors_name_the_argument),
                       ("shedc_cause_and_shed_env", test_shedc_cause_and_shed_env)])
