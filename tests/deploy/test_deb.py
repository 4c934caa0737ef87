# SPDX-License-Identifier: ISC
"""tools/mkdeb builds a .deb with Debian's own tools, and that package gives
a working deployment.

Runs tools/mkdeb (its own release build with prefix /usr, in a temporary
directory), checks the package with dpkg-deb (fields; Depends names the
package of every shared library the programs need), installs it with
`dpkg --root` into an empty root, runs the checks of installcheck.py on
that root (the C program is built with the compiler given as our
arguments), and removes the package again (nothing of it left behind).
"""
import os
import re
import subprocess
import sys

import harness
import installcheck

ctx = {}


def run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, (argv, r.stdout, r.stderr)
    return r


def package():
    if "deb" not in ctx:
        d = harness.tmpdir("shed-deb-")
        build = os.path.join(d, "build")
        r = run([os.path.join(harness.SOURCE_DIR, "tools", "mkdeb"), d],
                env=dict(os.environ, MKDEB_BUILD=build))
        deb = r.stdout.strip().splitlines()[-1]
        assert os.path.isfile(deb) and deb.startswith(d), deb
        ctx.update(dir=d, deb=deb, layout=installcheck.layout(build))
    return ctx


def field(name):
    return run(["dpkg-deb", "--field", package()["deb"], name]).stdout.strip()


def test_package_fields():
    p = package()
    assert field("Package") == "shed"
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    assert field("Architecture") == arch
    assert os.path.basename(p["deb"]) == "shed_%s_%s.deb" % (field("Version"), arch)
    assert p["layout"]["prefix"] == "/usr", p["layout"]["prefix"]
    contents = run(["dpkg-deb", "--contents", p["deb"]]).stdout
    for f in ("./usr/bin/shed", "./usr/lib/systemd/system/shed@.service",
              "./usr/share/man/man8/shed.8"):
        assert f in contents, f


def test_depends_cover_the_libraries():
    """Every NEEDED library of the programs belongs to a Depends package."""
    p = package()
    depends = {d.strip().split()[0] for d in field("Depends").split(",")}
    root = harness.tmpdir("shed-deb-x-")
    run(["dpkg-deb", "-x", p["deb"], root])
    needed = set()
    for b in ("shed", "burrowd", "shedc"):
        out = run(["readelf", "-d", os.path.join(root, "usr", "bin", b)]).stdout
        needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))
    cache = run(["ldconfig", "-p"]).stdout
    for soname in sorted(needed):
        m = re.search(r"^\s*%s .*=> (\S+)" % re.escape(soname), cache, re.M)
        assert m, soname
        # dpkg knows a file by the path its package ships, which merged /usr
        # may have moved: ask for each spelling
        real = os.path.realpath(m.group(1))
        for path in (m.group(1), real, re.sub(r"^/usr/", "/", real)):
            r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
            if r.returncode == 0:
                break
        assert r.returncode == 0, (soname, m.group(1), r.stderr)
        owner = r.stdout.split(":")[0]
        assert owner in depends, (soname, owner, depends)


def installed():
    """The package installed with dpkg --root into an empty root."""
    p = package()
    if "tree" not in p:
        root = os.path.join(p["dir"], "root")
        for sub in ("info", "updates", "triggers"):
            os.makedirs(os.path.join(root, "var", "lib", "dpkg", sub))
        open(os.path.join(root, "var", "lib", "dpkg", "status"), "w").close()
        # the root is empty: none of the Depends are "installed" there
        run(["dpkg", "--root=" + root, "--log=/dev/null", "--force-depends", "-i", p["deb"]])
        r = run(["dpkg", "--root=" + root, "-s", "shed"])
        assert "Status: install ok installed" in r.stdout, r.stdout
        p["tree"] = installcheck.Tree(root, p["layout"])
    return p["tree"]


def burrowd_port():
    if "burrowd" not in ctx:
        ctx["burrowd"] = installcheck.check_binaries(installed())
    return ctx["burrowd"][1]


def test_remove():
    t = installed()
    listed = run(["dpkg", "--root=" + t.root, "-L", "shed"]).stdout.split()
    assert "/usr/bin/shed" in listed, listed
    p, _ = ctx.pop("burrowd")
    assert p.stop() == 0
    run(["dpkg", "--root=" + t.root, "--log=/dev/null", "-r", "shed"])
    left = [f for f in t.files() if not f.startswith("/var/lib/dpkg/")]
    assert left == [], left


harness.run_tests([
    ("package_fields", test_package_fields),
    ("depends_cover_the_libraries", test_depends_cover_the_libraries),
    ("tree", lambda: installcheck.check_tree(installed())),
    ("binaries_run", burrowd_port),
    ("units_reference_the_tree", lambda: installcheck.check_units(installed())),
    ("man_pages", lambda: installcheck.check_man(installed())),
    ("pkg_config_and_link",
     lambda: installcheck.check_library(installed(), sys.argv[1:] or ["cc"], burrowd_port())),
    ("remove", test_remove),
])
