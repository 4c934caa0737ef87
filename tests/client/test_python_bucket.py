# SPDX-License-Identifier: ISC
"""Unit test of client/python/shed_client.py's pure parts: its XXH3 against
libxxhash (tests/client/xxh3_dump.c, every length 0..1100, six seeds), its
bucket function, Shed-Ring parser and path rules against the tables of
docs/bucket.md (the same rows tests/client/test_bucket.c checks against the
C code), the pin table under an injected clock and the backoff bounds."""
import os
import re
import subprocess
import sys

import harness

sys.path.insert(0, os.path.join(harness.SOURCE_DIR, "client", "python"))
import shed_client as sc  # noqa: E402

DOC = os.path.join(harness.SOURCE_DIR, "docs", "bucket.md")


def table(marker):
    """Rows (lists of cells, backquotes stripped) of the table after
    <marker> in docs/bucket.md."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    i = text.index(marker)
    lines = text[i:].split("\n")[1:]
    rows = []
    for n, line in enumerate(lines):
        if not line.startswith("|"):
            break
        if n < 2:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append([c[1:-1] if len(c) >= 2 and c[0] == c[-1] == "`" else c for c in cells])
    assert rows, "no rows after %s" % marker
    return rows


def expand(s, esc):
    s = re.sub(r"\{(.)\*(\d+)\}", lambda m: m.group(1) * int(m.group(2)), s)
    if not esc:
        return s
    out = bytearray()
    i = 0
    while i < len(s):
        if s.startswith("\\x", i) and i + 3 < len(s):
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            out += s[i].encode("utf-8")
            i += 1
    return bytes(out)


def configs():
    out = {}
    for name, ring in table("<!-- bucket-configs"):
        cfg = sc.parse_ring(ring)
        assert cfg is not None, ring
        out[name] = cfg
    return out


def test_xxh3_matches_libxxhash():
    dump = os.path.join(harness.BUILD_DIR, "tests", "client", "xxh3-dump")
    out = subprocess.run([dump], stdout=subprocess.PIPE, check=True, timeout=60).stdout
    data = bytes((i * 131 + 7) & 255 for i in range(1100))
    lines = out.decode().splitlines()
    assert len(lines) == 6 * 1101, len(lines)
    bad = []
    for line in lines:
        seed, n, h64, lo, hi = line.split()
        seed, n = int(seed, 16), int(n)
        got = (sc.xxh3_64(data[:n], seed),) + sc.xxh3_128(data[:n], seed)
        if got != (int(h64, 16), int(lo, 16), int(hi, 16)):
            bad.append((seed, n))
    assert not bad, "XXH3 differs from libxxhash at (seed, len) %r" % bad[:10]


def test_vectors():
    cfgs = configs()
    rows = table("<!-- bucket-vectors")
    assert len(rows) >= 10
    for i, r in enumerate(rows, 1):
        num, cname, path, acc, key, h128, h64, j, blist, b = r
        assert int(num) == i
        cfg = cfgs[cname]
        acc, key, path = expand(acc, True), expand(key, True), expand(path, False)
        a, q, m = sc.parse_message_path(path)
        assert a == acc and q + b"/" + m == key, (i, a, q, m)
        lo, hi = sc.xxh3_128(acc, cfg.seed_account)
        assert "%016x %016x" % (hi, lo) == h128, (i, "h128")
        assert "%016x" % sc.xxh3_64(key, cfg.seed_key) == h64, (i, "h64")
        assert sc.key_index(cfg, key) == int(j), (i, "j")
        assert " ".join(map(str, sc.account_buckets(cfg, acc))) == blist, (i, "buckets")
        assert sc.bucket(cfg, acc, key) == int(b), (i, "bucket")
        assert sc.message_bucket(cfg, a, q, m) == int(b), (i, "message_bucket")


def test_refused_paths():
    for path, what in table("<!-- bucket-refused"):
        path = expand(path, False)
        if what.startswith("list") or "(404)" in what:
            assert sc.parse_message_path(path) is None, path
        elif "(400)" in what:
            try:
                sc.parse_message_path(path)
            except sc.PathError:
                continue
            raise AssertionError("%s: want PathError" % path)
        else:
            raise AssertionError("unknown outcome %r" % what)


def test_shed_ring_parsing():
    ok = sc.parse_ring("k=3;b=1024; SA=B ;sk=16; x=whatever")
    assert ok == sc.RingConfig(1024, 3, 11, 22), ok
    for bad in ("b=1024; k=3; sa=b", "b=1000; k=3; sa=b; sk=16", "b=4; k=5; sa=b; sk=16",
                "b=1024; k=0; sa=b; sk=16", "b=1024; k=3; sa=xyz; sk=16",
                "b=1024; b=1024; k=3; sa=b; sk=16", "b=1024; k=3; sa=11111111111111111; sk=1",
                "b=1024; k; sa=b; sk=16", "b=-1; k=3; sa=b; sk=16"):
        assert sc.parse_ring(bad) is None, bad


def test_jump_moves_little_when_k_grows():
    # Growing K from 8 to 9 moves about 1/9 of the keys, all to the new one.
    moved = 0
    for i in range(3000):
        h = sc.xxh3_64(b"q/m%d" % i, 7)
        a, b = sc.jump(h, 8), sc.jump(h, 9)
        if a != b:
            assert b == 8, (i, a, b)
            moved += 1
    assert 200 < moved < 470, moved


def test_pin_table():
    now = [100.0]
    c = sc.ShedClient(sheds=["127.0.0.1:1"], clock=lambda: now[0], max_pins=2)
    c._set_ring("burrow", sc.RingConfig(1024, 3, 11, 22))
    c._pin_set("burrow", 7, "http://h1:80", 1, 30, "why")
    c._pin_set("burrow", 8, "http://h2:80", 1, 10, "why")
    assert c._pin_get("burrow", 7) == "http://h1:80"
    c._pin_set("burrow", 9, "http://h3:80", 1, 30, "why")  # full of live pins: not kept
    assert c._pin_get("burrow", 9) is None and len(c.pins()) == 2
    now[0] += 10  # pin 8 expires exactly now
    assert c._pin_get("burrow", 8) is None
    c._pin_set("burrow", 9, "http://h3:80", 1, 30, "why")  # room again
    assert c._pin_get("burrow", 9) == "http://h3:80"
    assert [p["hits"] for p in c.pins()] == [1, 1], c.pins()
    c._pin_set("burrow", 9, "http://h3:80", 1, 0, "why")  # Shed-Pin-TTL 0: no pin
    assert c._pin_get("burrow", 9) is None
    c._pin_drop_host("http://h1:80")
    assert c.pins() == []
    c._pin_set("burrow", 7, "http://h1:80", 1, 30, "why")
    c._set_ring("burrow", sc.RingConfig(1024, 3, 11, 22))  # same ring: pins stay
    assert len(c.pins()) == 1
    c._set_ring("burrow", sc.RingConfig(2048, 3, 11, 22))  # new B: bucket numbers mean else
    assert c.pins() == [] and c.metrics["pins_dropped"] >= 2, c.metrics


def test_backoff_bounds():
    c = sc.ShedClient(sheds=[], backoff=(0.02, 1.0))
    for attempt, d in ((1, 0.02), (2, 0.04), (3, 0.08), (6, 0.64), (7, 1.0), (30, 1.0)):
        for _ in range(50):
            x = c._backoff(attempt)
            assert d / 2 <= x <= d + 1e-12, (attempt, x)


if __name__ == "__main__":
    harness.run_tests([
        ("xxh3_matches_libxxhash", test_xxh3_matches_libxxhash),
        ("vectors", test_vectors),
        ("refused_paths", test_refused_paths),
        ("shed_ring_parsing", test_shed_ring_parsing),
        ("jump_moves_little_when_k_grows", test_jump_moves_little_when_k_grows),
        ("pin_table", test_pin_table),
        ("backoff_bounds", test_backoff_bounds),
    ])
