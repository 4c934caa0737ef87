# SPDX-License-Identifier: ISC
"""Integration tests of issue 13: a message the system acknowledged stays
readable by id and listed exactly once through the line shed of its cell
while the membership changes, for a plain redirect-following HTTP user
(python-requests, as `curl -L`), and it goes home to its owner afterwards.

One case per function, each on a deployment of its own (deploy/local's
configs, short timings: heartbeat 200 ms, lease 600 ms, drain window 5 s):

  join          3 burrowd, 300 messages, a 4th joins: read, list, delete
                and update in the drain window, read and list after it,
                then every message on exactly one server, its owner
  leave         4 burrowd (--drain-timeout 20), one leaves gracefully
                (SIGTERM: it drains, then deregisters and exits)
  restart_empty a burrowd SIGKILLed, written around while down, restarted
                empty at the same address before evict_after
  replica_write the primary frozen and reported failed (Shed-Failed from two
                clients), writes go to a replica, then it is back
  cross_cell    every backend of dc1 frozen, writes escalate through a master
                into dc2, dc1 comes back: dc1's line shed finds them
  write_around_a_reported_host, client_asks_for_a_lookup (see each)
  sweep_stops_when_membership_changes
                3000 strays on one server, a backend joins while the
                handoff moves them: the sweep stops, the next one settles

Every case prints its counts; a failure names the counts that are not zero.
"""
import concurrent.futures
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from reachenv import TIMINGS, Book, Site, Web, expect_zero  # noqa: E402
from cluster import call, origin  # noqa: E402  (tests/master, on the path through reachenv)

DRAIN_S = float(TIMINGS["drain_window"].rstrip("s"))


def poll_until_zero(check, timeout):
    """Call check() -> counts dict until every list in it is empty or
    <timeout> s passed; return the last counts and the seconds taken."""
    t0 = time.monotonic()
    while True:
        counts = check()
        if not any(counts.values()) or time.monotonic() - t0 >= timeout:
            return counts, time.monotonic() - t0
        time.sleep(0.5)


def prefixed(prefix, counts):
    return {prefix + k: v for k, v in counts.items()}


def status(r):
    return 0 if r is None else r.status_code


def ttl(r):
    """The ttl of a single-message GET answer, -1 when there is none."""
    try:
        return r.json()["ttl"] if status(r) == 200 else -1
    except (ValueError, KeyError, TypeError):
        return -1


def test_join():
    site = Site({"dc1": 3})
    try:
        web, book = Web(), Book()
        line = site.line()
        book.put_many(web, line, "j", 300)
        new = site.add_backend()
        site.wait_states({new: "up"})
        res = {}
        res["in_window.not_found"], res["in_window.wrong_body"] = book.read(web, line)
        res.update(prefixed("in_window.", book.lists(web, line)))
        # Deletes and updates of messages whose owner changed with the join.
        own = book.owners(web, site)
        moved = [k for k in sorted(book.msgs) if own[k] == new]
        assert len(moved) >= 24, "only %d messages changed owner with the join" % len(moved)
        deleted, updated = moved[:12], moved[12:24]
        for k in deleted:
            book.msgs.pop(k)
        res["delete.failed"] = [k for k in deleted if status(web.call(
            "DELETE", "%s/v1.0/%s/%s/%s" % ((line,) + k))) != 204]
        res["delete.still_readable"] = [k for k in deleted if status(web.get(line, *k)) != 404]
        res["delete.still_held"] = [k for k, w in book.holders(web, site, keys=deleted).items()
                                    if w]
        res["update.failed"] = [k for k in updated if status(web.call(
            "POST", "%s/v1.0/%s/%s/%s?ttl=3600&detail=all" % ((line,) + k))) != 200]
        # After the drain window: still found, and home (one copy, on the owner).
        site.wait_settled(timeout=3 * DRAIN_S)
        time.sleep(1.0)
        res["after.not_found"], res["after.wrong_body"] = book.read(web, line)
        res.update(prefixed("after.", book.lists(web, line)))
        res["after.update_lost"] = [k for k in updated if not 3000 < ttl(web.get(line, *k)) <= 3600]
        home, took = poll_until_zero(lambda: book.misplaced(web, site), 10.0)
        res.update(("home." + k, v) for k, v in home.items())
        print("  join: %d messages changed owner, 12 deleted, 12 updated; home after %.1fs"
              % (len(moved), took))
        expect_zero("join", res, list(res))
    finally:
        site.stop()


def test_leave():
    site = Site({"dc1": 4}, drain_timeout=20)
    try:
        web, book = Web(), Book()
        line = site.line()
        book.put_many(web, line, "l", 300)
        leaver = "dc1-burrow1"
        on_leaver = {k for k, w in book.holders(web, site, [leaver]).items() if w}
        rc, took = site.terminate(leaver, timeout=25.0)
        print("  leave: %s held %d of %d messages, exited %s after %.1fs"
              % (leaver, len(on_leaver), len(book.msgs), rc, took))
        assert rc == 0, "%s did not exit 0 within 25 s of SIGTERM: %s" % (leaver, rc)
        site.wait_states({leaver: None})
        res = {}
        nf, res["wrong_body"] = book.read(web, line)
        res["not_found.was_on_leaver"] = [k for k in nf if k in on_leaver]
        res["not_found.elsewhere"] = [k for k in nf if k not in on_leaver]
        res.update(prefixed("", book.lists(web, line)))
        site.wait_settled(timeout=3 * DRAIN_S)
        time.sleep(1.0)
        res["after.not_found"], res["after.wrong_body"] = book.read(web, line)
        res.update(prefixed("after.", book.lists(web, line)))
        expect_zero("leave", res, list(res))
    finally:
        site.stop()


def test_restart_empty():
    site = Site({"dc1": 4})
    try:
        web, book = Web(), Book()
        line = site.line()
        before = book.put_many(web, line, "e", 200)
        victim = "dc1-burrow2"
        only_victim = {k for k, w in book.holders(web, site).items() if w == [victim]}
        t_kill = time.monotonic()
        site.kill(victim)
        site.wait_states({victim: "down"}, timeout=5.0)
        during = book.put_many(web, line, "d", 200)
        site.restart(victim)
        site.wait_states({victim: "up"}, timeout=5.0)
        down_s = time.monotonic() - t_kill
        evict_s = float(TIMINGS["evict_after"].rstrip("s"))
        assert down_s < evict_s, "restart took %.1fs, not before evict_after" % down_s
        print("  restart_empty: %s down %.1fs; %d messages lived only on it (not checked), "
              "%d written while it was down" % (victim, down_s, len(only_victim), len(during)))
        keep = [k for k in before if k not in only_victim] + during
        res = {}
        res["written_while_down.not_found"], res["wrong_body"] = book.read(web, line, during)
        res["earlier.not_found"], _ = book.read(web, line, [k for k in before
                                                            if k not in only_victim])
        res.update(prefixed("", book.lists(web, line, keep)))
        time.sleep(DRAIN_S + 1.0)  # the settle window of the restart is over
        res["after.not_found"], _ = book.read(web, line, keep)
        res.update(prefixed("after.", book.lists(web, line, keep)))
        own = book.owners(web, site, keys=during)
        print("  restart_empty: %d of the %d written while it was down have it as owner again"
              % (sum(1 for k in during if own[k] == victim), len(during)))
        expect_zero("restart_empty", res, list(res))
    finally:
        site.stop()


def test_replica_write():
    site = Site({"dc1": 3})
    try:
        web, book = Web(), Book()
        line = site.line()
        book.put_many(web, line, "p", 150)
        victim = "dc1-burrow1"
        hostport = site.url(victim).split("//", 1)[1]
        site.freeze([victim])
        # Two independent clients report it: suspect at once on this shed
        # (its confirmation probe fails, it is frozen).
        for src in ("127.0.0.2", "127.0.0.3"):
            call(line, "GET", "/v1.0/x/y/z", headers={"Shed-Failed": hostport}, source=src)
        harness.wait_until(lambda: site.status(line)[0].get(victim) in ("suspect", "down"),
                           timeout=5.0, what="%s suspect" % victim)
        during = book.put_many(web, line, "w", 150)
        site.thaw([victim])
        site.wait_states({victim: "up"}, timeout=10.0)
        own = book.owners(web, site, keys=during)
        to_replica = [k for k in during if own[k] == victim]
        assert all(book.msgs[k]["host"] != site.url(victim) for k in during)
        print("  replica_write: %d of %d writes went to a replica of %s"
              % (len(to_replica), len(during), victim))
        assert to_replica, "no write went to a replica"
        res = {}
        res["replica_writes.not_found"], res["wrong_body"] = book.read(web, line, to_replica)
        res["other.not_found"], _ = book.read(web, line, [k for k in book.msgs
                                                          if k not in set(to_replica)])
        res.update(prefixed("", book.lists(web, line)))
        time.sleep(DRAIN_S + 1.0)
        res["after.not_found"], _ = book.read(web, line)
        res.update(prefixed("after.", book.lists(web, line)))
        expect_zero("replica_write", res, list(res))
    finally:
        site.stop()


def test_cross_cell():
    site = Site({"dc1": 2, "dc2": 2}, masters=1)
    try:
        web, book = Web(), Book()
        line = site.line("dc1")
        dc1 = site.backends("dc1")
        site.freeze(dc1)
        site.wait_states({b: "down" for b in dc1}, timeout=5.0)
        # 307 to the master, 307 to a dc2 server; 503 + Retry-After while
        # the masters have not acknowledged the outage yet.
        keys = book.put_many(web, line, "x", 50, accounts=5, queues=2, retry_for=10.0)
        dc2 = {site.url(b) for b in site.backends("dc2")}
        assert all(book.msgs[k]["host"] in dc2 for k in keys), \
            "writes did not escalate into dc2: %s" % {book.msgs[k]["host"] for k in keys}
        site.thaw(dc1)
        t_back = time.monotonic()
        site.wait_states({b: "up" for b in dc1}, timeout=10.0)

        def check():
            res = {}
            res["not_found"], res["wrong_body"] = book.read(web, line)
            res.update(prefixed("", book.lists(web, line)))
            where = book.holders(web, site)
            res["not_in_dc1"] = [k for k, w in where.items()
                                 if not any(x.startswith("dc1-") for x in w)]
            return res
        res, took = poll_until_zero(check, 20.0)
        print("  cross_cell: %d writes escalated into dc2; checked %.1fs after dc1 came back"
              % (len(keys), time.monotonic() - t_back))
        expect_zero("cross_cell", res, list(res))
    finally:
        site.stop()


def test_write_around_a_reported_host():
    """A client says a healthy primary failed (a mistake or a lie): its own
    PUTs go around that host at once, to a replica; the probe finds the host
    alive, so nobody else moves, yet those writes are found by id through
    the line shed with plain redirects (the write opened the settle window)
    and brought home."""
    site = Site({"dc1": 3})
    try:
        web, book = Web(), Book()
        line = site.line()
        site.wait_settled(timeout=3 * DRAIN_S)
        off = []
        for i in range(40):
            k = ("fa%d" % (i % 2), "q", "fm%02d" % i)
            url = "%s/v1.0/%s/%s/%s" % ((line,) + k)
            owner = origin(web.locate("PUT", url))
            hp = owner.split("//", 1)[1]
            r = web.call("PUT", url, b"body %d" % i, headers={"Shed-Failed": hp})
            assert r is not None and r.status_code in (201, 204), r
            assert origin(r.url) != owner, "the reporter's write must go around %s" % hp
            book.add(k[0], k[1], k[2], b"body %d" % i, origin(r.url))
            off.append(k)
        res = {}
        res["not_found"], res["wrong_body"] = book.read(web, line, off)
        res.update(prefixed("", book.lists(web, line, off)))
        home, took = poll_until_zero(lambda: book.misplaced(web, site, keys=off), 15.0)
        res.update(("home." + k, v) for k, v in home.items())
        print("  write_around: %d writes around a healthy reported primary; home after %.1fs"
              % (len(off), took))
        expect_zero("write_around", res, list(res))
    finally:
        site.stop()


def test_client_asks_for_a_lookup():
    """The client library pins bucket -> host; when the message is not on
    the pinned host any more (moved, or written elsewhere during a change)
    its GET gets 404 there, and the library asks once more through the
    shed with Shed-Lookup: 1, which finds it wherever it is."""
    site = Site({"dc1": 3})
    probe = None
    try:
        line = site.line()
        site.wait_settled(timeout=3 * DRAIN_S)
        probe = subprocess.Popen([os.path.join(harness.BUILD_DIR, "tests", "client",
                                               "client-probe"),
                                  "--shed", line.split("//", 1)[1]],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)

        def cmd(line_):
            probe.stdin.write((line_ + "\n").encode())
            probe.stdin.flush()
            return json.loads(probe.stdout.readline())

        url = "http://burrow.service/v1.0/ca/q/m1"
        r = cmd("req PUT %s %s" % (url, b"moved body".hex()))
        assert r["status"] in (201, 204), r
        r = cmd("req GET %s?detail=body" % url)
        assert r["status"] == 200 and r["pinned"], r
        home = origin(r["final_url"])
        # Move it behind the client's back to another server of the cell.
        other = [site.url(b) for b in site.backends("dc1") if site.url(b) != home][0]
        web = Web()
        assert web.call("DELETE", home + "/v1.0/ca/q/m1").status_code == 204
        assert web.call("PUT", other + "/v1.0/ca/q/m1?ttl=0", b"moved body").status_code == 201
        r = cmd("req GET %s?detail=body" % url)
        m = cmd("metrics")
        print("  client lookup: pinned GET found it on %s after %d lookup(s)"
              % (origin(r["final_url"]), m["lookups"]))
        assert r["status"] == 200 and r["body"] == "moved body", r
        assert m["lookups"] == 1, m
        # A message that is nowhere stays a 404 (one lookup, no loop).
        r = cmd("req GET http://burrow.service/v1.0/ca/q/none")
        assert r["status"] == 404, r
        assert cmd("metrics")["lookups"] == 2
        probe.stdin.write(b"quit\n")
        probe.stdin.flush()
        assert probe.wait(10) == 0
    finally:
        if probe is not None and probe.poll() is None:
            probe.kill()
        site.stop()


def test_sweep_stops_when_membership_changes():
    """A handoff sweep decides every owner on a view that has settled: when
    membership changes while a sweep runs, the sweep stops
    (shed_handoff_abandoned_total) and the next one starts only after the
    new view settled. Messages written straight to one server, most of them
    off their owner, make a sweep that moves for a second or more (at most
    2000 moves a second); a backend joins while it runs. Afterwards every
    message reads back and sits on exactly one server, its owner."""
    site = Site({"dc1": 3})
    try:
        web, book = Web(), Book()
        line, agg = site.line(), site.agg()
        site.wait_settled(timeout=3 * DRAIN_S)
        src = site.backends("dc1")[0]
        base = site.url(src)
        # Right after an idle sweep the next is HANDOFF_IDLE_MS (10 s) away:
        # the strays are all written before a sweep sees any of them.
        sweeps0 = harness.metric(agg, "shed_handoff_sweeps_total")
        harness.wait_until(lambda: harness.metric(agg, "shed_handoff_sweeps_total") > sweeps0,
                           timeout=15, step=0.05, what="an idle sweep")
        moved0 = harness.metric(agg, "shed_handoff_moved_total")
        t0 = time.monotonic()

        def put(i):
            a, q, m = "swa%d" % (i % 4), "q", "swm%05d" % i
            body = ("body of %s/%s/%s" % (a, q, m)).encode()
            r = web.call("PUT", "%s/v1.0/%s/%s/%s?ttl=0" % (base, a, q, m), body)
            assert r is not None and r.status_code == 201, r
            book.add(a, q, m, body, src)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(put, range(3000)))
        print("  3000 strays written to %s in %.1fs" % (src, time.monotonic() - t0))
        off = sum(1 for k, o in book.owners(web, site).items() if o != src)
        assert off >= 1000, "only %d messages off their owner" % off
        harness.wait_until(lambda: harness.metric(agg, "shed_handoff_moved_total") > moved0,
                           timeout=15, step=0.02, what="a sweep moving messages")
        new = site.add_backend()
        harness.wait_until(lambda: harness.metric(agg, "shed_handoff_abandoned_total") >= 1,
                           timeout=10, step=0.05, what="the sweep to stop on the join")
        moved_then = harness.metric(agg, "shed_handoff_moved_total") - moved0
        print("  sweep stopped after %d of %d moves when %s joined" % (moved_then, off, new))
        assert moved_then < off, (moved_then, off)
        site.wait_states({new: "up"})
        site.wait_settled(timeout=3 * DRAIN_S)
        bad, took = poll_until_zero(lambda: book.misplaced(web, site), 30)
        print("  settled after %.1fs" % took)
        expect_zero("sweep_stops", bad, list(bad))
        missing, wrong = book.read(web, line)
        assert not missing and not wrong, (missing[:5], wrong[:5])
    finally:
        site.stop()


if __name__ == "__main__":
    harness.run_tests([
        ("join", test_join),
        ("leave", test_leave),
        ("restart_empty", test_restart_empty),
        ("replica_write", test_replica_write),
        ("cross_cell", test_cross_cell),
        ("write_around_a_reported_host", test_write_around_a_reported_host),
        ("client_asks_for_a_lookup", test_client_asks_for_a_lookup),
        ("sweep_stops_when_membership_changes", test_sweep_stops_when_membership_changes),
    ])
