# SPDX-License-Identifier: ISC
"""Every systemd unit in deploy/systemd starts the real binary with arguments
it accepts.

For each unit template the test fills in what `meson install` and systemd
would (@bindir@ -> the built binaries, @docdir@ -> the source tree, %i, the
EnvironmentFile from the shipped example, ${VAR} as one word and $VAR split
into words, ${CREDENTIALS_DIRECTORY} -> a directory holding what
LoadCredential= would copy there), points the example addresses at free
loopback ports, and runs every Exec line of the unit: `shed -t` must pass,
and each ExecStart must still be running after 0.5 s (a usage error exits at
once), listen where its configuration says, reload on ExecReload, and exit 0
on the unit's KillSignal. Then `systemd-analyze verify` checks the units
(with the man pages of man/ on MANPATH, since Documentation= names them);
tools/bootstrap installs systemd, so a missing systemd-analyze is a failure,
not a skip.
"""
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import harness

SRC = harness.SOURCE_DIR
UNITS = sorted(glob.glob(os.path.join(SRC, "deploy", "systemd", "*.service.in")))
EXAMPLES = os.path.join(SRC, "deploy", "etc")
CREDENTIAL = "unit-test-credential-0123456789abcdef"


# ---- reading units and env files as systemd does ----------------------------------

def parse_unit(text):
    """[(section, key, value)] with continuation lines joined."""
    out, section, pending = [], None, ""
    for raw in text.splitlines():
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("["):
            assert s.endswith("]"), s
            section = s[1:-1]
            continue
        assert section is not None, "assignment outside of a section: " + s
        k, _, v = s.partition("=")
        out.append((section, k.strip(), v.strip()))
    return out


def values(unit, key):
    return [v for _, k, v in unit if k == key]


def parse_env(path):
    """An EnvironmentFile: VAR=value lines, comments on lines of their own."""
    env = {}
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            s = raw.strip()
            if not s or s[0] in "#;":
                continue
            k, eq, v = s.partition("=")
            assert eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k), "%s:%d: %s" % (path, n, s)
            # systemd keeps an inline "# ..." as part of the value
            assert "#" not in v, "%s:%d: comment inside a value: %s" % (path, n, s)
            env[k] = v
    return env


def specifiers(s, instance, unit_name, creds):
    repl = {"i": instance, "I": instance, "n": unit_name, "d": creds, "%": "%"}
    return re.sub(r"%(.)", lambda m: repl[m.group(1)], s)


def command(line, instance, unit_name, env):
    """argv of one Exec line: prefixes dropped, specifiers, ${VAR} one word,
    $VAR split into words (systemd.service(5), "Command lines")."""
    line = specifiers(line, instance, unit_name, env["CREDENTIALS_DIRECTORY"])
    argv = []
    for w in shlex.split(line):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m:
            argv += env.get(m.group(1), "").split()
            continue
        argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), w))
    argv[0] = argv[0].lstrip("@-:+!")
    return argv


# ---- the test's stand-ins for /usr/bin, /etc/shed and the credentials ----------

class Host:
    def __init__(self):
        self.dir = harness.tmpdir("shed-units-")
        self.bindir = os.path.join(self.dir, "bin")
        self.etc = os.path.join(self.dir, "etc", "shed")
        os.makedirs(self.bindir)
        os.makedirs(self.etc)
        for name in ("shed", "burrowd", "shedc"):
            os.symlink(harness.binary(name), os.path.join(self.bindir, name))
        self.cred_source = os.path.join(self.etc, "credential")
        with open(self.cred_source, "w") as f:
            f.write(CREDENTIAL + "\n")
        os.chmod(self.cred_source, 0o600)

    def render(self, template):
        with open(template) as f:
            text = f.read()
        return text.replace("@bindir@", self.bindir).replace("@docdir@", SRC)

    def local(self, path):
        """/etc/shed/... of a unit -> this host's copy."""
        assert path.startswith("/etc/shed/"), path
        return os.path.join(self.etc, path[len("/etc/shed/"):])

    def argv(self, line, instance, unit_name, env):
        """An Exec line's argv, with /etc/shed/ on this host."""
        return [self.local(w) if w.startswith("/etc/shed/") else w
                for w in command(line, instance, unit_name, env)]

    def credentials(self, unit, unit_name):
        """What LoadCredential= gives the unit: ID -> a copy of the file,
        in a directory of the unit's own (CREDENTIALS_DIRECTORY)."""
        d = os.path.join(self.dir, "run", "credentials", unit_name)
        os.makedirs(d, exist_ok=True)
        loads = values(unit, "LoadCredential")
        assert loads, unit_name + ": no LoadCredential= (a DynamicUser cannot read the file)"
        for spec in loads:
            cid, _, src = spec.partition(":")
            shutil.copy(self.local(src), os.path.join(d, cid))
        return d


def example_env(host, unit, instance, rewrite):
    """The unit's EnvironmentFile, from the shipped example, rewritten to
    loopback by <rewrite>(env)."""
    (path,) = values(unit, "EnvironmentFile")
    m = re.fullmatch(r"/etc/shed/([a-z]+)-%i\.env", path)
    assert m, path
    example = os.path.join(EXAMPLES, m.group(1) + ".env")
    env = parse_env(example)
    rewrite(env)
    local = host.local(path.replace("%i", instance))
    with open(local, "w") as f:
        f.writelines("%s=%s\n" % kv for kv in env.items())
    return parse_env(local)


def run_check(argv, env):
    r = subprocess.run(argv, env=dict(os.environ, **env), capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0, (argv, r.stdout, r.stderr)
    return r


def start(argv, env, name):
    """ExecStart: still running after 0.5 s (a usage error exits at once)."""
    p = harness.Proc(argv, env=env, name=name)
    time.sleep(0.5)
    assert p.alive(), "%s exited %s: %s\n%s" % (name, p.p.returncode, argv, p.output())
    assert "usage" not in p.output().lower(), p.output()
    return p


def stop(p, unit):
    (sig,) = values(unit, "KillSignal") or ["SIGTERM"]
    (limit,) = values(unit, "TimeoutStopSec") or ["90s"]
    assert p.stop(getattr(signal, sig), timeout=float(limit.rstrip("s"))) == 0, p.output()


def unit_of(name):
    (path,) = [u for u in UNITS if os.path.basename(u) == name + ".in"]
    return path


def loopback(url_or_hostport):
    """A free loopback port in the place of an example address."""
    return re.sub(r"\d+\.\d+\.\d+\.\d+(:\d+)?", lambda m: "127.0.0.1:%d" % harness.free_port(),
                  url_or_hostport)


# ---- the units --------------------------------------------------------------------

ctx = {}


def host():
    if "host" not in ctx:
        ctx["host"] = Host()
    return ctx["host"]


def test_every_unit_is_covered():
    names = sorted(os.path.basename(u)[:-3] for u in UNITS)
    assert names == ["burrowd@.service", "shed-announce@.service", "shed@.service"], names
    for u in UNITS:
        unit = parse_unit(host().render(u))
        assert values(unit, "ExecStart"), u
        # Documentation= targets exist: man pages in man/, files in the
        # source tree (installed under the same relative path, docdir).
        for doc in " ".join(values(unit, "Documentation")).split():
            m = re.fullmatch(r"man:([a-z-]+)\((\d)\)", doc)
            if m:
                assert os.path.exists(os.path.join(SRC, "man", "%s.%s" % m.groups())), doc
            else:
                assert doc.startswith("file:" + SRC + "/"), doc
                assert os.path.exists(doc[len("file:"):]), doc


def test_shed_unit():
    h = host()
    tmpl = unit_of("shed@.service")
    examples = sorted(glob.glob(os.path.join(EXAMPLES, "*.yaml")))
    assert len(examples) >= 3, examples
    for example in examples:
        with open(example) as f:
            text = f.read()
        # Each example names the instance it is for: "# /etc/shed/NAME.yaml".
        m = re.match(r"# /etc/shed/([a-z0-9-]+)\.yaml", text)
        assert m, example + ": first line must name /etc/shed/NAME.yaml"
        instance = m.group(1)
        name = "shed@%s.service" % instance
        unit = parse_unit(h.render(tmpl))
        creds = h.credentials(unit, name)
        # The config reads the credential where LoadCredential= puts it:
        # $CREDENTIALS_DIRECTORY, which the unit's environment names.
        assert "credential_file: ${CREDENTIALS_DIRECTORY:-/etc/shed}/credential" in text, example
        state = os.path.join(h.dir, "state-" + instance)
        os.makedirs(state, exist_ok=True)  # StateDirectory= makes it before ExecStartPre
        text = re.sub(r"/var/lib/shed/\S+", state, text)
        port = harness.free_port()
        text = re.sub(r'listen: \["[^"]+"\]', 'listen: ["127.0.0.1:%d"]' % port, text)
        with open(h.local("/etc/shed/%s.yaml" % instance), "w") as f:
            f.write(text)
        env = {"CREDENTIALS_DIRECTORY": creds}
        for line in values(unit, "ExecStartPre"):
            r = run_check(h.argv(line, instance, name, env), env)
            assert "configuration OK" in r.stdout + r.stderr, r
        (line,) = values(unit, "ExecStart")
        p = start(h.argv(line, instance, name, env), env, name)
        harness.wait_port("127.0.0.1", port, proc=p)
        env["MAINPID"] = str(p.pid)
        for line in values(unit, "ExecReload"):
            run_check(h.argv(line, instance, name, env), env)
        harness.wait_until(lambda: "config: reloaded" in p.output(), timeout=5,
                           what="%s reloaded:\n%s" % (name, p.output()))
        assert p.alive(), p.output()
        stop(p, unit)


def start_env_unit(template, instance, rewrite, flag):
    """Start the ExecStart of a unit whose arguments come from its
    EnvironmentFile (the shipped example, <rewrite>(env) to loopback);
    <flag> must be among the arguments. Returns (unit, process)."""
    h = host()
    name = template.replace("@.", "@%s." % instance)
    unit = parse_unit(h.render(unit_of(template)))
    creds = h.credentials(unit, name)
    env = example_env(h, unit, instance, rewrite)
    env["CREDENTIALS_DIRECTORY"] = creds
    (line,) = values(unit, "ExecStart")
    argv = h.argv(line, instance, name, env)
    assert flag in argv and "--credential-file" in argv, argv
    return unit, start(argv, env, name)


def test_burrowd_unit():
    port = harness.free_port()

    def rewrite(env):
        assert env["BURROWD_LISTEN"] and env["BURROWD_URL"], env
        env["BURROWD_LISTEN"] = "127.0.0.1:%d" % port
        env["BURROWD_URL"] = "http://127.0.0.1:%d" % port
        env["BURROWD_ANNOUNCE"] = loopback(env["BURROWD_ANNOUNCE"])

    unit, p = start_env_unit("burrowd@.service", "a-burrow1", rewrite, "--listen")
    harness.wait_port("127.0.0.1", port, proc=p)
    r = harness.request("PUT", "http://127.0.0.1:%d/v1.0/a/q/m" % port, body=b"x")
    assert r.status == 201, r
    ctx["backend"] = (p, port, unit)


def test_shed_announce_unit():
    backend, backend_port, backend_unit = ctx.pop("backend")

    def rewrite(env):
        assert env["ANNOUNCE_BACKEND"] and env["ANNOUNCE_URL"], env
        env["ANNOUNCE_BACKEND"] = "http://127.0.0.1:%d" % backend_port
        env["ANNOUNCE_URL"] = "http://127.0.0.1:%d" % backend_port
        env["ANNOUNCE_TARGETS"] = loopback(env["ANNOUNCE_TARGETS"])

    unit, p = start_env_unit("shed-announce@.service", "a-burrow1", rewrite, "--backend")
    # it found the backend healthy and started announcing it
    harness.wait_until(lambda: "announcing" in p.output(), timeout=5, what="announcing")
    stop(p, unit)
    stop(backend, backend_unit)


def test_systemd_analyze_verify():
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze missing: run tools/bootstrap (it installs systemd)"
    h = host()
    d = os.path.join(h.dir, "verify")
    man = os.path.join(d, "man")
    os.makedirs(d)
    for page in glob.glob(os.path.join(SRC, "man", "*.[0-9]")):
        sect = os.path.join(man, "man" + page[-1])
        os.makedirs(sect, exist_ok=True)
        shutil.copy(page, sect)
    paths = []
    for u in UNITS:
        # an instance of the template, as systemd loads it
        path = os.path.join(d, os.path.basename(u)[:-3].replace("@.", "@verify."))
        with open(path, "w") as f:
            f.write(h.render(u))
        paths.append(path)
    r = subprocess.run([tool, "verify"] + paths, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, MANPATH=man))
    assert r.returncode == 0 and r.stderr.strip() == "", (r.returncode, r.stdout, r.stderr)


harness.run_tests([
    ("every_unit_is_covered", test_every_unit_is_covered),
    ("shed_unit", test_shed_unit),
    ("burrowd_unit", test_burrowd_unit),
    ("shed_announce_unit", test_shed_announce_unit),
    ("systemd_analyze_verify", test_systemd_analyze_verify),
])
