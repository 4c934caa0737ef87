# SPDX-License-Identifier: ISC
"""`meson install` gives a working deployment.

Installs this build with `meson install --destdir` into a temporary root and
checks the tree: every file meson says it installs is there; the installed
binaries run (and burrowd + shedc from the tree move a binary body); the
installed units name binaries, documents, man pages and example env files
that exist in the tree, and pass `systemd-analyze verify` (paths moved into
the tree); the man pages format without warnings; pkg-config finds the
client library through PKG_CONFIG_SYSROOT_DIR/PKG_CONFIG_PATH, and a small C
program compiles (with the build's compiler, given as the arguments) and
links against the installed headers and library, and round-trips a body
through a burrowd. Prints the installed file list.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import harness

BUILD = harness.BUILD_DIR
ctx = {}


def introspect(what):
    r = subprocess.run(["meson", "introspect", "--" + what, BUILD], capture_output=True,
                       text=True, check=True, timeout=60)
    return json.loads(r.stdout)


def setup():
    if ctx:
        return ctx
    opts = {o["name"]: o["value"] for o in introspect("buildoptions")}
    prefix = opts["prefix"]

    def under(key):
        v = opts[key]
        return v if os.path.isabs(v) else os.path.join(prefix, v)

    dest = harness.tmpdir("shed-destdir-")
    r = subprocess.run(["meson", "install", "-C", BUILD, "--destdir", dest, "--no-rebuild",
                        "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    ctx.update(opts=opts, dest=dest, bindir=under("bindir"), libdir=under("libdir"),
               mandir=under("mandir"), includedir=under("includedir"),
               docdir=opts["docdir"] or os.path.join(under("datadir"), "doc", "shed"),
               unitdir=opts["systemdunitdir"] or os.path.join(prefix, "lib", "systemd", "system"),
               installed=introspect("installed"))
    ctx["examplesdir"] = opts["examplesdir"] or os.path.join(ctx["docdir"], "examples")
    return ctx


def D(path):
    """<path> of the installed system, inside the destdir."""
    return os.path.join(setup()["dest"], path.lstrip("/"))


def test_tree():
    c = setup()
    for built, installed in c["installed"].items():
        assert os.path.exists(D(installed)), (built, installed)
    want = [os.path.join(c["bindir"], b) for b in ("shed", "burrowd", "shedc")]
    want += [os.path.join(c["unitdir"], u)
             for u in ("shed@.service", "burrowd@.service", "shed-announce@.service")]
    want += [os.path.join(c["examplesdir"], e)
             for e in ("line.yaml", "aggregator.yaml", "master.yaml", "burrowd.env",
                       "announce.env")]
    want += [os.path.join(c["docdir"], d)
             for d in ("README.md", "DESIGN.md", "deploy/README.md", "docs/config.md",
                       "docs/client.md", "docs/aggregator.md")]
    want += [os.path.join(c["mandir"], m) for m in ("man8/shed.8", "man8/burrowd.8",
                                                    "man1/shedc.1")]
    want += [os.path.join(c["libdir"], "libshedclient.a"),
             os.path.join(c["libdir"], "pkgconfig", "shedclient.pc")]
    want += [os.path.join(c["includedir"], "shed", h)
             for h in ("client/client.h", "client/burrow.h", "client/pins.h", "ring/ring.h")]
    for w in want:
        assert os.path.isfile(D(w)), w
    for b in ("shed", "burrowd", "shedc"):
        assert os.access(D(os.path.join(c["bindir"], b)), os.X_OK), b
    print("  installed (prefix %s):" % c["opts"]["prefix"])
    for root, _, files in sorted(os.walk(c["dest"])):
        for f in sorted(files):
            print("    /" + os.path.relpath(os.path.join(root, f), c["dest"]))


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)


def test_binaries_run():
    c = setup()
    b = lambda name: D(os.path.join(c["bindir"], name))  # noqa: E731
    r = run([b("burrowd"), "--help"])
    assert r.returncode == 0 and "usage: burrowd" in r.stdout + r.stderr, r
    r = run([b("shedc"), "--help"])
    assert r.returncode == 0 and "usage: shedc" in r.stdout, r
    r = run([b("shed"), "--help"])
    assert "usage: shed" in r.stdout + r.stderr, r
    # an installed example config checks (credential and state moved here)
    d = harness.tmpdir("shed-install-etc-")
    cred = os.path.join(d, "credential")
    with open(cred, "w") as f:
        f.write("install-test-credential-0123456789\n")
    with open(D(os.path.join(c["examplesdir"], "line.yaml"))) as f:
        text = f.read()
    text = re.sub(r"/run/credentials/\S+/credential", cred, text)
    text = re.sub(r"/var/lib/shed/\S+", os.path.join(d, "state"), text)
    conf = os.path.join(d, "line-a.yaml")
    with open(conf, "w") as f:
        f.write(text)
    r = run([b("shed"), "-t", "-c", conf])
    assert r.returncode == 0 and "configuration OK" in r.stdout + r.stderr, r
    # the installed burrowd and shedc move a binary body
    port = harness.free_port()
    p = harness.Proc([b("burrowd"), "--listen", "127.0.0.1:%d" % port, "--default-ttl", "0"],
                     name="installed-burrowd")
    harness.wait_port("127.0.0.1", port, proc=p)
    shedc = [b("shedc"), "--shed", "127.0.0.1:%d" % port]
    url = "http://burrow.service/v1.0/inst/q/m"
    body = b"\x00\xffbytes"
    r = subprocess.run(shedc + ["put", url], input=body, capture_output=True, timeout=30)
    assert r.returncode == 0, r
    r = subprocess.run(shedc + ["get", url], capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout == body, r
    ctx["burrowd"] = (p, port)


def unit_lines(path):
    text = open(path).read().replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip()[0] not in "#;["]


def test_units_reference_the_tree():
    c = setup()
    units = sorted(os.listdir(D(c["unitdir"])))
    assert units == ["burrowd@.service", "shed-announce@.service", "shed@.service"], units
    verify_dir = harness.tmpdir("shed-install-verify-")
    paths = []
    for u in units:
        path = D(os.path.join(c["unitdir"], u))
        for line in unit_lines(path):
            key, _, val = line.partition("=")
            if key.startswith("Exec"):
                exe = val.split()[0].lstrip("@-:+!")
                if exe.startswith(c["opts"]["prefix"] + "/"):
                    assert os.access(D(exe), os.X_OK), (u, line)
                else:
                    assert os.access(exe, os.X_OK), (u, line)  # /bin/kill
            elif key == "Documentation":
                for doc in val.split():
                    m = re.fullmatch(r"man:([a-z-]+)\((\d)\)", doc)
                    if m:
                        page = os.path.join(c["mandir"], "man" + m.group(2),
                                            "%s.%s" % m.groups())
                        assert os.path.isfile(D(page)), (u, doc)
                    else:
                        assert doc.startswith("file:/"), (u, doc)
                        assert os.path.isfile(D(doc[len("file:"):])), (u, doc)
            elif key == "EnvironmentFile":
                m = re.fullmatch(r"/etc/shed/([a-z]+)-%i\.env", val)
                assert m, (u, val)
                assert os.path.isfile(D(os.path.join(c["examplesdir"], m.group(1) + ".env")))
        # systemd-analyze verify on an instance of the unit, its paths moved
        # into the destdir (verify --root needs a whole systemd tree)
        with open(path) as f:
            text = f.read()
        text = re.sub(r"(?<=[= ])(%s/)" % re.escape(c["opts"]["prefix"]),
                      lambda m: D(m.group(1)) + "/", text)
        inst = os.path.join(verify_dir, u.replace("@.", "@install."))
        with open(inst, "w") as f:
            f.write(text)
        paths.append(inst)
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze missing: run tools/bootstrap (it installs systemd)"
    r = run([tool, "verify"] + paths, env=dict(os.environ, MANPATH=D(c["mandir"])))
    assert r.returncode == 0 and not r.stderr.strip(), r


def test_man_pages():
    c = setup()
    for page in ("man8/shed.8", "man8/burrowd.8", "man1/shedc.1"):
        path = D(os.path.join(c["mandir"], page))
        r = run(["groff", "-mandoc", "-ww", "-z", "-Tutf8", path])
        assert r.returncode == 0 and not r.stderr, (page, r.stderr)
        r = run(["man", "-l", path], env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8"))
        assert r.returncode == 0 and "NAME" in r.stdout and "SYNOPSIS" in r.stdout, (page, r)


PROGRAM = r"""
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/burrow.h"

int
main(int argc, char **argv)
{
    static const char body[] = {'a', 0, (char)0xff};
    struct shed_client_options o;
    struct shed_client *c;
    struct client_burrow_result r;
    char url[CLIENT_BURROW_URL_MAX], *got = NULL;
    size_t len = 0;
    int ok;

    if (argc != 2)
        return 2;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    shed_client_options_init(&o);
    o.sheds[o.nsheds++] = argv[1];
    if (shed_client_create(&o, &c) != 0 ||
        client_burrow_url(url, sizeof(url), "http://burrow.service", "acct", "q", "m") != 0 ||
        client_burrow_put(c, url, body, sizeof(body), -1, -1, &r) != 0)
        return 1;
    client_burrow_result_free(&r);
    ok = client_burrow_get(c, url, "all", &r) == 0 && client_burrow_body(r.json, &got, &len) == 0 &&
         len == sizeof(body) && memcmp(got, body, len) == 0;
    printf("%s %s\n", ok ? "ok" : "bad",
           json_string_value(json_object_get(r.json, "body_base64url")));
    free(got);
    client_burrow_result_free(&r);
    shed_client_destroy(c);
    curl_global_cleanup();
    return ok ? 0 : 1;
}
"""


def test_pkg_config_and_link():
    c = setup()
    env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=c["dest"],
               PKG_CONFIG_PATH=D(os.path.join(c["libdir"], "pkgconfig")))
    r = run(["pkg-config", "--cflags", "--libs", "shedclient"], env=env)
    assert r.returncode == 0, r
    flags = r.stdout.split()
    assert "-I" + D(os.path.join(c["includedir"], "shed")) in flags, flags
    assert "-L" + D(c["libdir"]) in flags and "-lshedclient" in flags, flags
    d = harness.tmpdir("shed-install-cc-")
    src = os.path.join(d, "prog.c")
    with open(src, "w") as f:
        f.write(PROGRAM)
    # the build's own C compiler (meson passes it as our arguments); a
    # sanitized library needs the sanitizer runtime in the program too
    cc = sys.argv[1:] or ["cc"]
    san = c["opts"].get("b_sanitize", "none")
    extra = ["-fsanitize=" + san] if san not in ("none", "") else []
    r = run(cc + ["-std=c17", "-Wall", "-Werror"] + extra + ["-o", os.path.join(d, "prog"), src]
            + flags, env=env)
    assert r.returncode == 0, r
    if "burrowd" not in ctx:
        test_binaries_run()
    _, port = ctx["burrowd"]
    r = run([os.path.join(d, "prog"), "127.0.0.1:%d" % port])
    assert r.returncode == 0 and r.stdout == "ok YQD_\n", r


harness.run_tests([
    ("tree", test_tree),
    ("binaries_run", test_binaries_run),
    ("units_reference_the_tree", test_units_reference_the_tree),
    ("man_pages", test_man_pages),
    ("pkg_config_and_link", test_pkg_config_and_link),
])
