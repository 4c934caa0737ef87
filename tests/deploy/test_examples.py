# SPDX-License-Identifier: ISC
"""The example configurations in deploy/etc are valid: each one, with its
credential file and state directory pointed at a temporary directory,
passes `shed -t`; and `shed -t` does refuse a broken one."""
import glob
import os
import re
import subprocess

import harness

SRC = harness.SOURCE_DIR


def check(text, d):
    path = os.path.join(d, "shed.yaml")
    with open(path, "w") as f:
        f.write(text)
    return subprocess.run([harness.binary("shed"), "-t", "-c", path], capture_output=True,
                          text=True, timeout=10)


def local(text, d):
    cred = os.path.join(d, "credential")
    with open(cred, "w") as f:
        f.write("example-credential-0123456789abcdef\n")
    os.chmod(cred, 0o600)
    # The examples read the copy LoadCredential= makes for their unit.
    text = text.replace("${CREDENTIALS_DIRECTORY:-/etc/shed}/credential", cred)
    os.makedirs(os.path.join(d, "state"), exist_ok=True)  # StateDirectory= makes it
    return re.sub(r"/var/lib/shed\S*", os.path.join(d, "state"), text)


def test_examples_pass():
    files = sorted(glob.glob(os.path.join(SRC, "deploy", "etc", "*.yaml")))
    assert len(files) >= 3, files
    for path in files:
        d = harness.tmpdir("shed-example-")
        with open(path) as f:
            r = check(local(f.read(), d), d)
        assert r.returncode == 0 and "configuration OK" in r.stderr + r.stdout, (path, r)


def test_a_broken_example_fails():
    d = harness.tmpdir("shed-example-")
    with open(os.path.join(SRC, "deploy", "etc", "aggregator.yaml")) as f:
        text = local(f.read(), d)
    assert "busy_poll: 200us" in text
    r = check(text.replace("busy_poll: 200us", "busy_poll: 20ms"), d)
    assert r.returncode != 0 and "busy_poll must be in" in r.stderr, r


harness.run_tests([
    ("examples_pass", test_examples_pass),
    ("a_broken_example_fails", test_a_broken_example_fails),
])
