# SPDX-License-Identifier: ISC
"""Benchmarks that decide on a shared, noisy machine: sides measured in
interleaved rounds with the order alternating (A B, B A, A B, ...), every
figure a ratio of the same round, printed as the median with the min and
max over the rounds; CPU per request from the scheduler's own count
(/proc/<pid>/task/*/schedstat, nanoseconds, every thread) rather than
wall-clock; load generator and servers pinned to different cores when
there are two or more.

  fmt("line.vs_nginx", ratios, "ratio") ->
      "line.vs_nginx: 0.97 ratio (min 0.91, max 1.04, 7 rounds)"
"""
import os
import shutil
import statistics

ROUNDS = max(7, int(os.environ.get("SHED_BENCH_ROUNDS", "7")))


def multicore():
    return bool(shutil.which("taskset")) and (os.cpu_count() or 1) > 1


def pin(argv, core):
    """<argv> run on CPU <core> (taskset) when there are 2+ cores."""
    if multicore():
        return ["taskset", "-c", str(core)] + list(argv)
    return list(argv)


def cpu_ns(pids):
    """CPU time of every thread of the processes <pids> (ns, schedstat)."""
    tot = 0
    for pid in pids:
        base = "/proc/%d/task" % pid
        try:
            tids = os.listdir(base)
        except OSError:
            continue
        for tid in tids:
            try:
                with open("%s/%s/schedstat" % (base, tid)) as f:
                    tot += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that just ended
    return tot


def group_pids(pgid):
    """The processes of process group <pgid> (nginx: master and worker)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


def interleave(sides, run, rounds=ROUNDS):
    """Call run(side, round) for every side in every round, the order of
    the sides alternating between rounds; {side: [result per round]}."""
    res = {s: [] for s in sides}
    for r in range(rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for s in order:
            res[s].append(run(s, r))
    return res


def ratios(a, b):
    """Per-round ratios a[i] / b[i]."""
    return [x / y for x, y in zip(a, b) if y]


def spread(values):
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def fmt(name, values, unit, digits=2):
    m, lo, hi = spread(values)
    return "%s: %.*f %s (min %.*f, max %.*f, %d rounds)" % (
        name, digits, m, unit, digits, lo, digits, hi, len(values))
