# SPDX-License-Identifier: ISC
"""The man pages against the binaries: every long option that `--help`
prints (shed, shed announce, burrowd, shedc) is documented in the page,
`--version` prints "NAME VERSION" with the project's version and exits 0,
and groff renders each page without a warning (groff -man -Tutf8 -ww)."""
import os
import re
import subprocess
import sys

import harness

MAN = os.path.join(harness.SOURCE_DIR, "man")
VERSION = sys.argv[1]  # meson.project_version()

PAGES = [
    # (page, argv of --help, words the page must hold besides the options)
    ("shed.8", [harness.binary("shed"), "--help"],
     ["/_shed/v1/status.html", "/_shed/v1/status", "/metrics", "SIGHUP", "SIGTERM"]),
    ("shed.8", [harness.binary("shed"), "announce", "--help"], ["check\\-interval"]),
    ("burrowd.8", [harness.binary("burrowd"), "--help"],
     ["/metrics", "burrowd_messages", "SIGTERM", "SIGINT"]),
    ("shedc.1", [harness.binary("shedc"), "--help"], ["Ev SHED", "Shed-Lookup"]),
]


def page_text(name):
    with open(os.path.join(MAN, name), encoding="utf-8") as f:
        return f.read()


def test_every_option_documented():
    missing = []
    for page, argv, words in PAGES:
        out = subprocess.run(argv, stdout=subprocess.PIPE, timeout=10)
        assert out.returncode == 0, argv
        text = page_text(page)
        opts = set(re.findall(r"(?<![\w-])--([a-z][a-z-]*)", out.stdout.decode()))
        assert len(opts) >= 3, (argv, opts)
        for o in sorted(opts):
            if "Fl \\-" + o.replace("-", "\\-") not in text:
                missing.append("%s: --%s" % (page, o))
        for w in words:
            if w not in text:
                missing.append("%s: %s" % (page, w))
    assert not missing, "not in the man pages: %s" % ", ".join(missing)


def test_version():
    for name, argv in (("shed", ["shed", "--version"]), ("shed", ["shed", "-V"]),
                       ("shed", ["shed", "announce", "--version"]),
                       ("burrowd", ["burrowd", "--version"]), ("burrowd", ["burrowd", "-V"]),
                       ("shedc", ["shedc", "--version"]), ("shedc", ["shedc", "-V"])):
        out = subprocess.run([harness.binary(argv[0])] + argv[1:], stdout=subprocess.PIPE,
                             timeout=10)
        assert out.returncode == 0 and out.stdout.decode() == "%s %s\n" % (name, VERSION), \
            (argv, out)


def test_groff_renders_without_warnings():
    for page in ("shed.8", "burrowd.8", "shedc.1"):
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", os.path.join(MAN, page)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        assert r.returncode == 0 and r.stderr == b"", (page, r.stderr.decode())
        title = page.split(".")[0].upper().encode()
        assert r.stdout.count(title) >= 2, (page, r.stdout[:200])  # header and footer lines


if __name__ == "__main__":
    harness.run_tests([
        ("every_option_documented", test_every_option_documented),
        ("version", test_version),
        ("groff_renders_without_warnings", test_groff_renders_without_warnings),
    ])
