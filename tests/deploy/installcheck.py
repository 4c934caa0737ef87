# SPDX-License-Identifier: ISC
"""Checks of an installed shed tree under a root directory, shared by
test_install.py (`meson install --destdir`) and test_deb.py (the .deb
installed with `dpkg --root`).

A Tree is the root plus the layout a build directory was configured with
(prefix, bindir, ... from `meson introspect`). The checks: every installed
file is there; the binaries run (and burrowd + shedc from the tree move a
binary body); the units name binaries, documents, man pages and example env
files that exist in the tree and pass `systemd-analyze verify`; the man
pages format without warnings; pkg-config finds the client library through
PKG_CONFIG_SYSROOT_DIR/PKG_CONFIG_PATH and a C program compiles and links
against it and round-trips a body through the tree's burrowd.
"""
import json
import os
import re
import shutil
import subprocess

import harness


def introspect(build, what):
    r = subprocess.run(["meson", "introspect", "--" + what, build], capture_output=True,
                       text=True, check=True, timeout=60)
    return json.loads(r.stdout)


def layout(build):
    """Where a build installs things, from its options (absolute paths)."""
    opts = {o["name"]: o["value"] for o in introspect(build, "buildoptions")}
    prefix = opts["prefix"]

    def under(key):
        v = opts[key]
        return v if os.path.isabs(v) else os.path.join(prefix, v)

    docdir = opts["docdir"] or os.path.join(under("datadir"), "doc", "shed")
    return {
        "prefix": prefix, "bindir": under("bindir"), "libdir": under("libdir"),
        "mandir": under("mandir"), "includedir": under("includedir"), "docdir": docdir,
        "unitdir": opts["systemdunitdir"] or os.path.join(prefix, "lib", "systemd", "system"),
        "examplesdir": opts["examplesdir"] or os.path.join(docdir, "examples"),
        "sanitize": opts.get("b_sanitize", "none"),
        "installed": sorted(introspect(build, "installed").values()),
    }


class Tree:
    def __init__(self, root, lay):
        self.root = root
        self.l = lay

    def D(self, path):
        """<path> of the installed system, inside the root."""
        return os.path.join(self.root, path.lstrip("/"))

    def bin(self, name):
        return self.D(os.path.join(self.l["bindir"], name))

    def files(self):
        out = []
        for d, _, files in sorted(os.walk(self.root)):
            out += ["/" + os.path.relpath(os.path.join(d, f), self.root) for f in sorted(files)]
        return out


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)


def check_tree(t):
    lay = t.l
    for path in lay["installed"]:
        assert os.path.exists(t.D(path)), path
    want = [os.path.join(lay["bindir"], b) for b in ("shed", "burrowd", "shedc")]
    want += [os.path.join(lay["unitdir"], u)
             for u in ("shed@.service", "burrowd@.service", "shed-announce@.service")]
    want += [os.path.join(lay["examplesdir"], e)
             for e in ("line.yaml", "aggregator.yaml", "master.yaml", "burrowd.env",
                       "announce.env")]
    want += [os.path.join(lay["docdir"], d)
             for d in ("README.md", "DESIGN.md", "deploy/README.md", "docs/config.md",
                       "docs/client.md", "docs/aggregator.md")]
    want += [os.path.join(lay["mandir"], m)
             for m in ("man8/shed.8", "man8/burrowd.8", "man1/shedc.1")]
    want += [os.path.join(lay["libdir"], "libshedclient.a"),
             os.path.join(lay["libdir"], "pkgconfig", "shedclient.pc")]
    want += [os.path.join(lay["includedir"], "shed", h)
             for h in ("client/client.h", "client/burrow.h", "client/pins.h", "ring/ring.h")]
    for w in want:
        assert os.path.isfile(t.D(w)), w
    for b in ("shed", "burrowd", "shedc"):
        assert os.access(t.bin(b), os.X_OK), b


def check_binaries(t):
    """Returns (process, port) of a running burrowd of the tree."""
    r = run([t.bin("burrowd"), "--help"])
    assert r.returncode == 0 and "usage: burrowd" in r.stdout + r.stderr, r
    r = run([t.bin("shedc"), "--help"])
    assert r.returncode == 0 and "usage: shedc" in r.stdout, r
    r = run([t.bin("shed"), "--help"])
    assert "usage: shed" in r.stdout + r.stderr, r
    # an installed example config checks (credential and state moved aside)
    d = harness.tmpdir("shed-tree-etc-")
    cred = os.path.join(d, "credential")
    with open(cred, "w") as f:
        f.write("install-test-credential-0123456789\n")
    with open(t.D(os.path.join(t.l["examplesdir"], "line.yaml"))) as f:
        text = f.read()
    text = text.replace("${CREDENTIALS_DIRECTORY:-/etc/shed}/credential", cred)
    os.makedirs(os.path.join(d, "state"), exist_ok=True)  # the unit's StateDirectory=
    text = re.sub(r"/var/lib/shed/\S+", os.path.join(d, "state"), text)
    conf = os.path.join(d, "line-a.yaml")
    with open(conf, "w") as f:
        f.write(text)
    r = run([t.bin("shed"), "-t", "-c", conf])
    assert r.returncode == 0 and "configuration OK" in r.stdout + r.stderr, r
    # the tree's burrowd and shedc move a binary body
    port = harness.free_port()
    p = harness.Proc([t.bin("burrowd"), "--listen", "127.0.0.1:%d" % port, "--default-ttl", "0"],
                     name="tree-burrowd")
    harness.wait_port("127.0.0.1", port, proc=p)
    shedc = [t.bin("shedc"), "--shed", "127.0.0.1:%d" % port]
    url = "http://burrow.service/v1.0/inst/q/m"
    body = b"\x00\xffbytes"
    r = subprocess.run(shedc + ["put", url], input=body, capture_output=True, timeout=30)
    assert r.returncode == 0, r
    r = subprocess.run(shedc + ["get", url], capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout == body, r
    return p, port


def unit_lines(path):
    with open(path) as f:
        text = f.read().replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip()[0] not in "#;["]


def check_units(t):
    lay = t.l
    units = sorted(os.listdir(t.D(lay["unitdir"])))
    assert units == ["burrowd@.service", "shed-announce@.service", "shed@.service"], units
    verify_dir = harness.tmpdir("shed-tree-verify-")
    paths = []
    for u in units:
        path = t.D(os.path.join(lay["unitdir"], u))
        for line in unit_lines(path):
            key, _, val = line.partition("=")
            if key.startswith("Exec"):
                exe = val.split()[0].lstrip("@-:+!")
                if exe.startswith(lay["prefix"] + "/"):
                    assert os.access(t.D(exe), os.X_OK), (u, line)
                else:
                    assert os.access(exe, os.X_OK), (u, line)  # /bin/kill
            elif key == "Documentation":
                for doc in val.split():
                    m = re.fullmatch(r"man:([a-z-]+)\((\d)\)", doc)
                    if m:
                        page = os.path.join(lay["mandir"], "man" + m.group(2),
                                            "%s.%s" % m.groups())
                        assert os.path.isfile(t.D(page)), (u, doc)
                    else:
                        assert doc.startswith("file:/"), (u, doc)
                        assert os.path.isfile(t.D(doc[len("file:"):])), (u, doc)
            elif key == "EnvironmentFile":
                m = re.fullmatch(r"/etc/shed/([a-z]+)-%i\.env", val)
                assert m, (u, val)
                assert os.path.isfile(t.D(os.path.join(lay["examplesdir"], m.group(1) + ".env")))
        # systemd-analyze verify on an instance of the unit, its paths moved
        # into the root (verify --root wants a whole systemd tree)
        with open(path) as f:
            text = f.read()
        text = re.sub(r"(?<=[= ])(%s/)" % re.escape(lay["prefix"]),
                      lambda m: t.D(m.group(1)) + "/", text)
        inst = os.path.join(verify_dir, u.replace("@.", "@tree."))
        with open(inst, "w") as f:
            f.write(text)
        paths.append(inst)
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze missing: run tools/bootstrap (it installs systemd)"
    r = run([tool, "verify"] + paths, env=dict(os.environ, MANPATH=t.D(lay["mandir"])))
    assert r.returncode == 0 and not r.stderr.strip(), r


def check_man(t):
    for page in ("man8/shed.8", "man8/burrowd.8", "man1/shedc.1"):
        path = t.D(os.path.join(t.l["mandir"], page))
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


def check_library(t, cc, port):
    """pkg-config into the root, compile and link with <cc> (argv list),
    run the program against the burrowd on <port>."""
    lay = t.l
    env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=t.root,
               PKG_CONFIG_PATH=t.D(os.path.join(lay["libdir"], "pkgconfig")))
    r = run(["pkg-config", "--cflags", "--libs", "shedclient"], env=env)
    assert r.returncode == 0, r
    flags = r.stdout.split()
    assert "-I" + t.D(os.path.join(lay["includedir"], "shed")) in flags, flags
    assert "-L" + t.D(lay["libdir"]) in flags and "-lshedclient" in flags, flags
    d = harness.tmpdir("shed-tree-cc-")
    src = os.path.join(d, "prog.c")
    with open(src, "w") as f:
        f.write(PROGRAM)
    # a sanitized library needs the sanitizer runtime in the program too
    extra = ["-fsanitize=" + lay["sanitize"]] if lay["sanitize"] not in ("none", "") else []
    r = run(cc + ["-std=c17", "-Wall", "-Werror"] + extra + ["-o", os.path.join(d, "prog"), src]
            + flags, env=env)
    assert r.returncode == 0, r
    r = run([os.path.join(d, "prog"), "127.0.0.1:%d" % port])
    assert r.returncode == 0 and r.stdout == "ok YQD_\n", r
