# SPDX-License-Identifier: ISC
"""`meson install` gives a working deployment.

Installs this build with `meson install --destdir` into a temporary root and
runs the checks of installcheck.py on it: every file meson installs is
there, the binaries run and move a binary body, the units name paths that
exist in the tree and pass `systemd-analyze verify`, the man pages format
cleanly, and a C program built with the build's own compiler (meson passes
it as our arguments) links the installed client library found through
pkg-config. Prints the installed file list.
"""
import subprocess
import sys

import harness
import installcheck

ctx = {}


def tree():
    if "tree" not in ctx:
        dest = harness.tmpdir("shed-destdir-")
        r = subprocess.run(["meson", "install", "-C", harness.BUILD_DIR, "--destdir", dest,
                            "--no-rebuild", "--quiet"], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, (r.stdout, r.stderr)
        ctx["tree"] = installcheck.Tree(dest, installcheck.layout(harness.BUILD_DIR))
    return ctx["tree"]


def test_tree():
    t = tree()
    installcheck.check_tree(t)
    print("  installed (prefix %s):" % t.l["prefix"])
    for f in t.files():
        print("    " + f)


def burrowd_port():
    if "burrowd" not in ctx:
        ctx["burrowd"] = installcheck.check_binaries(tree())
    return ctx["burrowd"][1]


harness.run_tests([
    ("tree", test_tree),
    ("binaries_run", burrowd_port),
    ("units_reference_the_tree", lambda: installcheck.check_units(tree())),
    ("man_pages", lambda: installcheck.check_man(tree())),
    ("pkg_config_and_link",
     lambda: installcheck.check_library(tree(), sys.argv[1:] or ["cc"], burrowd_port())),
])
