# SPDX-License-Identifier: ISC
"""Chaos benchmark of issue 13: does every acknowledged message stay
reachable through the home cell's line shed while the membership changes?

Home cell dc1: 4 burrowd, 2 line sheds, an aggregator; cell dc2: 3 burrowd,
2 line sheds, an aggregator; one master. Two writers PUT new messages all
along, at a bounded rate: one through the client library (`shedc put`, the
CLI on client/, one process per message, both dc1 line sheds given with
--shed), one as a plain HTTP user (python-requests following redirects,
method and body kept on a 307). Meanwhile, one step after the other:

  (a) two backends join dc1;
  (b) one leaves gracefully (SIGTERM with --drain-timeout 30: it drains,
      deregisters, exits);
  (c) one is SIGKILLed and restarted empty at the same address before
      evict_after (its contents are listed directly just before the kill);
  (d) every dc1 backend is frozen (SIGSTOP) until the line sheds see them
      down, so writes escalate through the master into dc2, then thawed.

Then, with the writers stopped: the time until every surviving message is
on exactly one server, its owner (every burrowd of both cells asked
directly), and every acknowledged message read by id and every queue
listed through dc1's line shed.

Prints:
  reach.acked                 acknowledged PUTs (2xx)
  reach.put_failed            PUTs not acknowledged (transport error, 5xx)
  reach.escalated             acknowledged by a dc2 server
  reach.lost_by_routing       acked, not on the killed backend, yet not
                              found by id or missing from a list (must be 0)
  reach.lost_on_dead_backend  acked messages that lived only on the SIGKILLed
                              in-memory burrowd (its listing just before the
                              kill, plus PUTs it acked after that listing):
                              lost by design, reported apart
  reach.dead_backend_found    of those, found anyway (moved off in time)
  reach.missing_from_lists    acked, not on the killed backend, not listed
  reach.listed_twice          ids listed more than once
  reach.wrong_body            found by id with another body
  reach.listed_unacked        listed, never acknowledged (a PUT that timed
                              out on a frozen server and was written later)
  reach.home_after_s          from the last membership change (the thaw of
                              dc1) until every surviving message is on
                              exactly one server, its owner
  reach.home_first_check_s    when the first check of that poll ended (a
                              home_after_s this low means "at the first look")
  reach.off_owner             surviving messages still not home at the end
                              of that poll
  reach.leave_s               SIGTERM to exit of the leaving burrowd
  reach.lib.* / reach.http.*  acked, lost_by_routing, missing_from_lists,
                              lost_on_dead_backend by writer
  reach.ok                    1 when nothing was lost by routing, nothing
                              was missing from lists and everything went home

Exit status is non-zero only for a harness failure (a daemon that does not
start, a step the sheds never see), so the figures always print.
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from reachenv import Book, Site, Web  # noqa: E402
from cluster import origin  # noqa: E402  (tests/master, on the path through reachenv)

RATE = float(os.environ.get("REACH_BENCH_RATE", "20"))        # PUTs/s per writer
STEP_S = float(os.environ.get("REACH_BENCH_STEP_S", "3"))     # writing between steps
HOME_TIMEOUT_S = float(os.environ.get("REACH_BENCH_HOME_S", "60"))
LEAVE_TIMEOUT_S = 45.0
TIMINGS = {"drain_window": "8s", "pin_lifetime": "4s", "evict_after": "10s"}
ACCOUNTS, QUEUES = 6, 3


class Writer(threading.Thread):
    """PUTs new messages at RATE per second until stopped."""

    def __init__(self, via, site, book):
        super().__init__(daemon=True)
        self.via, self.site, self.book = via, site, book
        self.stopping = threading.Event()
        self.failed = 0
        self.error = None
        self.web = Web(timeout=5.0)

    def put_lib(self, a, q, m, body):
        argv = [harness.binary("shedc"), "--timeout", "3000", "--verbose"]
        for line in self.site.lines("dc1"):
            argv += ["--shed", line.split("//", 1)[1]]
        argv += ["put", "http://burrow.service/v1.0/%s/%s/%s" % (a, q, m)]
        try:
            r = subprocess.run(argv, input=body, capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            return False, None  # not acknowledged
        hops = [x for x in r.stderr.decode("utf-8", "replace").splitlines()
                if x.startswith("shedc: > ")]
        host = origin(hops[-1].split()[3]) if hops else None
        return r.returncode == 0, host

    def run(self):
        try:
            i = 0
            t0 = time.monotonic()
            while not self.stopping.is_set():
                a = "%s%d" % (self.via[0], i % ACCOUNTS)
                q = "q%d" % (i // ACCOUNTS % QUEUES)
                m = "%s%05d" % (self.via, i)
                body = ("%s body %d" % (self.via, i)).encode()
                if self.via == "lib":
                    ok, host = self.put_lib(a, q, m, body)
                else:
                    lines = self.site.lines("dc1")
                    ok, host, _ = self.web.put(lines[i % len(lines)], a, q, m, body,
                                               retry_for=3.0)
                if ok:
                    self.book.add(a, q, m, body, host, via=self.via)
                else:
                    self.failed += 1
                i += 1
                delay = t0 + i / RATE - time.monotonic()
                if delay > 0:
                    self.stopping.wait(delay)
        except Exception as e:  # a harness failure: reported by main()
            self.error = e


def queues():
    return [("%s%d" % (v[0], a), "q%d" % q) for v in ("lib", "http")
            for a in range(ACCOUNTS) for q in range(QUEUES)]


def scan(web, site, names):
    """{(a, q, m)} stored on each backend of <names>, asked directly."""
    out = {}
    for b in names:
        out[b] = set()
        for a, q in queues():
            out[b] |= {(a, q, m) for m in web.list_ids(site.url(b), a, q) or ()}
    return out


def main():
    fig = {}
    site = Site({"dc1": 4, "dc2": 3}, lines=2, masters=1, timings=TIMINGS, drain_timeout=30)
    web, book = Web(), Book()
    writers = [Writer("lib", site, book), Writer("http", site, book)]
    dead = set()
    try:
        for w in writers:
            w.start()
        time.sleep(STEP_S)

        # (a) two backends join.
        new = [site.add_backend("dc1"), site.add_backend("dc1")]
        site.wait_states({b: "up" for b in new}, cell="dc1")
        print("# (a) %s joined" % ", ".join(new), flush=True)
        time.sleep(STEP_S)

        # (b) one leaves gracefully.
        leaver = "dc1-burrow1"
        rc, took = site.terminate(leaver, LEAVE_TIMEOUT_S)
        if rc is None:
            raise RuntimeError("%s still running %.0fs after SIGTERM" % (leaver, took))
        fig["leave_s"] = took
        site.wait_states({leaver: None}, cell="dc1")
        print("# (b) %s left gracefully in %.1fs (exit %s)" % (leaver, took, rc), flush=True)
        time.sleep(STEP_S)

        # (c) one SIGKILLed, restarted empty before evict_after.
        victim = "dc1-burrow2"
        t_list = time.monotonic()
        held = scan(web, site, site.backends(alive=True))
        elsewhere = set().union(*(v for b, v in held.items() if b != victim))
        t_kill = time.monotonic()
        site.kill(victim)
        vurl = site.url(victim)
        dead = (held[victim] - elsewhere) | {k for k, v in book.snapshot().items()
                                             if v["host"] == vurl and t_list <= v["t"] <= t_kill}
        site.wait_states({victim: "down"}, cell="dc1")
        time.sleep(1.0)
        site.restart(victim)
        site.wait_states({victim: "up"}, cell="dc1")
        print("# (c) %s killed holding %d messages only it had, back empty after %.1fs"
              % (victim, len(dead), time.monotonic() - t_kill), flush=True)
        time.sleep(STEP_S)

        # (d) the whole home cell frozen, then thawed.
        dc1 = site.backends("dc1", alive=True)
        site.freeze(dc1)
        site.wait_states({b: "down" for b in dc1}, cell="dc1")
        time.sleep(STEP_S)
        site.thaw(dc1)
        t_last = time.monotonic()
        site.wait_states({b: "up" for b in dc1}, cell="dc1")
        print("# (d) dc1 frozen and thawed (%d backends)" % len(dc1), flush=True)
    finally:
        for w in writers:
            w.stopping.set()
        for w in writers:
            w.join(60)
    for w in writers:
        if w.error is not None:
            raise w.error

    msgs = book.snapshot()
    dc2 = {site.url(b) for b in site.backends("dc2")}
    surviving = [k for k in msgs if k not in dead]

    # Home: every surviving message on exactly one server, its owner.
    owners = book.owners(web, site, "dc1", surviving)
    first = None
    while True:
        bad = book.misplaced(web, site, "dc1", surviving, owners)
        off = sum(len(v) for v in bad.values())
        waited = time.monotonic() - t_last
        first = first or waited
        if off == 0 or waited >= HOME_TIMEOUT_S:
            break
        time.sleep(0.5)
    if off == 0:
        # Owners could have moved meanwhile: confirm with fresh ones.
        bad = book.misplaced(web, site, "dc1", surviving)
        off = sum(len(v) for v in bad.values())
    fig["home_after_s"] = waited
    fig["home_first_check_s"] = first
    fig["off_owner"] = off
    print("# home check: %s" % {k: len(v) for k, v in bad.items()}, flush=True)

    line = site.line("dc1")
    not_found, wrong = book.read(web, line)
    listed = book.lists(web, line, queues=queues())
    if listed["list_failed"]:
        raise RuntimeError("lists failed through %s: %s" % (line, listed["list_failed"]))
    not_listed, twice = listed["not_listed"], listed["listed_twice"]
    found_dead = [k for k in dead if k in msgs and k not in set(not_found)]
    lost = {k for k in not_found + not_listed if k not in dead}
    unlisted = {k for k in not_listed if k not in dead}

    def by(keys, via):
        return sum(1 for k in keys if msgs.get(k, {}).get("via") == via)

    print("reach.acked: %d msgs" % len(msgs))
    print("reach.put_failed: %d puts" % sum(w.failed for w in writers))
    print("reach.escalated: %d msgs" % sum(1 for v in msgs.values() if v["host"] in dc2))
    print("reach.lost_by_routing: %d msgs" % len(lost))
    print("reach.lost_on_dead_backend: %d msgs" % len(dead))
    print("reach.dead_backend_found: %d msgs" % len(found_dead))
    print("reach.missing_from_lists: %d msgs" % len(unlisted))
    print("reach.listed_twice: %d msgs" % len(twice))
    print("reach.wrong_body: %d msgs" % len(wrong))
    print("reach.listed_unacked: %d msgs (PUTs not acknowledged that were written)"
          % len(listed["listed_unknown"]))
    if fig["off_owner"]:
        print("reach.home_after_s: %.1f s (timeout: not home)" % fig["home_after_s"])
    else:
        print("reach.home_after_s: %.1f s" % fig["home_after_s"])
    print("reach.home_first_check_s: %.1f s (the resolution of home_after_s)"
          % fig["home_first_check_s"])
    print("reach.off_owner: %d msgs" % fig["off_owner"])
    print("reach.leave_s: %.1f s" % fig["leave_s"])
    for via in ("lib", "http"):
        print("reach.%s.acked: %d msgs" % (via, by(msgs, via)))
        print("reach.%s.lost_by_routing: %d msgs" % (via, by(lost, via)))
        print("reach.%s.missing_from_lists: %d msgs" % (via, by(unlisted, via)))
        print("reach.%s.lost_on_dead_backend: %d msgs" % (via, by(dead, via)))
    ok = not lost and not unlisted and not twice and not wrong and not fig["off_owner"]
    print("reach.ok: %d" % ok, flush=True)
    site.stop()


if __name__ == "__main__":
    main()
