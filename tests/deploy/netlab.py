# SPDX-License-Identifier: ISC
"""netlab: datacenters made of network namespaces on this machine (root only).

A lab is one router namespace holding a bridge per datacenter (10.D.0.1/24)
with forwarding on, and one namespace per host, joined to its datacenter's
bridge by a veth pair created inside the router (nothing is added to the
root namespace, so a lab never touches the machine's own network). Host
namespaces resolve names through their datacenter's dnsmasq
(/etc/netns/<ns>/resolv.conf, which `ip netns exec` bind-mounts).

Every namespace is named <prefix><pid>-<host> (the test's pid in hex);
Lab.close() kills what runs in them and deletes them, and is registered with
atexit. clean_stale() removes what earlier runs left with the same prefix
once their test process is gone (a run in another build directory at the
same moment is left alone).

in_ns(ns, fn) runs fn in a thread that has entered the namespace, so the test
process itself can open sockets there (HTTP probes, port waits) without
forking a helper per call.
"""
import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

PREFIX = "shedt-"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*argv, check=True):
    r = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(map(str, argv)), r.returncode,
                                                 r.stdout.decode("utf-8", "replace")))
    return r.stdout.decode("utf-8", "replace")


def list_ns():
    out = sh("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_ns(ns):
    pids = sh("ip", "netns", "pids", ns, check=False).split()
    for p in pids:
        try:
            os.kill(int(p), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = sh("ip", "netns", "pids", ns, check=False).split()
        time.sleep(0.05)
    sh("ip", "netns", "del", ns, check=False)
    shutil.rmtree("/etc/netns/" + ns, ignore_errors=True)


def _owner_alive(ns, prefix):
    """Namespaces are named <prefix><pid in hex>-<host>: is that pid alive?
    (Another build directory may be running this test right now.)"""
    try:
        pid = int(ns[len(prefix):].split("-", 1)[0], 16)
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"python" in f.read()
    except OSError:
        return False


def clean_stale(prefix=PREFIX):
    """Delete namespaces (and their processes) left by earlier runs whose
    test process is gone."""
    n = 0
    for ns in list_ns():
        if ns.startswith(prefix) and not _owner_alive(ns, prefix):
            _kill_ns(ns)
            n += 1
    return n


def in_ns(ns, fn, *args, timeout=30.0):
    """Run fn(*args) in a thread inside namespace <ns>; return its result."""
    box = {}

    def run():
        fd = os.open("/run/netns/" + ns, os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, "setns %s: %s" % (ns, os.strerror(e)))
        finally:
            os.close(fd)
        try:
            box["v"] = fn(*args)
        except BaseException as e:  # re-raised in the caller
            box["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError("in_ns(%s, %s) still running after %.0fs" % (ns, fn, timeout))
    if "e" in box:
        raise box["e"]
    return box.get("v")


def _port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


class Lab:
    def __init__(self, prefix=PREFIX):
        self.tag = "%s%x" % (prefix, os.getpid())
        self.router = self.tag + "-r"
        self.hosts = {}  # name -> {"ns", "ip", "dc", "link"}
        self.dcs = {}
        self._veth = 0
        self._closed = False
        atexit.register(self.close)
        sh("ip", "netns", "add", self.router)
        sh("ip", "-n", self.router, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def ns(self, host):
        return self.hosts[host]["ns"]

    def add_dc(self, dc):
        """Datacenter <dc> (1..250): bridge br<dc> at 10.<dc>.0.1/24."""
        br = "br%d" % dc
        sh("ip", "-n", self.router, "link", "add", br, "type", "bridge")
        sh("ip", "-n", self.router, "addr", "add", "10.%d.0.1/24" % dc, "dev", br)
        sh("ip", "-n", self.router, "link", "set", br, "up")
        self.dcs[dc] = {"bridge": br, "dns": None}

    def add_host(self, name, dc, last_octet, dns=None):
        """A host namespace at 10.<dc>.0.<last_octet> behind the router;
        <dns> is the nameserver its resolv.conf names."""
        ns = "%s-%s" % (self.tag, name)
        ip = "10.%d.0.%d" % (dc, last_octet)
        self._veth += 1
        a, b = "v%d" % self._veth, "h%d" % self._veth
        sh("ip", "netns", "add", ns)
        self.hosts[name] = {"ns": ns, "ip": ip, "dc": dc, "link": "eth0"}
        sh("ip", "-n", self.router, "link", "add", a, "type", "veth", "peer", "name", b,
           "netns", ns)
        sh("ip", "-n", self.router, "link", "set", a, "master", self.dcs[dc]["bridge"], "up")
        sh("ip", "-n", ns, "link", "set", b, "name", "eth0")
        sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", "10.%d.0.1" % dc)
        if dns:
            d = "/etc/netns/" + ns
            os.makedirs(d, exist_ok=True)
            with open(d + "/resolv.conf", "w") as f:
                f.write("nameserver %s\noptions timeout:1 attempts:2\n" % dns)
            with open(d + "/hosts", "w") as f:  # nothing from the machine's /etc/hosts
                f.write("127.0.0.1 localhost\n")
        return ip

    def link(self, host, up):
        """Cut a host off its datacenter (or plug it back)."""
        h = self.hosts[host]
        sh("ip", "-n", h["ns"], "link", "set", "eth0", "up" if up else "down")
        if up:  # a link going down takes its routes with it
            sh("ip", "-n", h["ns"], "route", "replace", "default", "via",
               "10.%d.0.1" % h["dc"])

    def exec_argv(self, host, argv):
        return ["ip", "netns", "exec", self.ns(host)] + [str(a) for a in argv]

    def run(self, host, argv, input=None, timeout=20.0):
        """Run a command in <host>; (returncode, stdout str, stderr str)."""
        r = subprocess.run(self.exec_argv(host, argv), input=input, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode(
            "utf-8", "replace")

    def wait_port(self, host, ip, port, timeout=15.0, proc=None):
        """Wait until <ip>:<port> accepts, probing from inside <host>."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and not proc.alive():
                raise RuntimeError("%s exited early:\n%s" % (proc.name, proc.output()[-3000:]))
            if in_ns(self.ns(host), _port_open, ip, port):
                return
            time.sleep(0.05)
        raise TimeoutError("nothing listens on %s:%d (seen from %s) after %.0fs%s" % (
            ip, port, host, timeout,
            (":\n" + proc.output()[-3000:]) if proc is not None else ""))

    def close(self):
        if self._closed:
            return
        self._closed = True
        for h in list(self.hosts.values()):
            _kill_ns(h["ns"])
        _kill_ns(self.router)
