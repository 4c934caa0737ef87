# SPDX-License-Identifier: ISC
"""shed_client: a small Python client for NAME.service through the sheds.

Standard library only (http.client). It does what the C library in client/
does (docs/client.md), in less code and without threads of its own:

- the first request for a message's bucket goes to a shed, and the client
  follows the 302/307 chain itself, re-sending method and body on every hop
  (a body over 1024 bytes is offered to a shed with "Expect: 100-continue",
  so a shed that redirects never receives it);
- the redirect's Shed-Ring, Shed-Bucket, Shed-Generation and Shed-Pin-TTL
  headers give a pin "bucket -> final host" for Shed-Pin-TTL seconds;
- later requests for any message of a pinned bucket go straight to the
  pinned host (the client computes the bucket itself: docs/bucket.md, the
  hash is XXH3 in pure Python below), on one pooled keep-alive connection
  per host;
- a connection failure, a 5xx or a 421 drops the pin and asks a shed again
  after a jittered backoff, naming the failed host in Shed-Failed; a 404
  from a backend to a message GET/HEAD/POST/DELETE is asked once more
  through a shed, at once, with Shed-Lookup: 1 (docs/reachability.md).

    c = ShedClient(sheds=["127.0.0.1:8080"])   # else $SHED, else DNS
    c.put("http://burrow.service/v1.0/a/q/m", b"hello")
    c.get("http://burrow.service/v1.0/a/q/m").body    # b"hello"

One ShedClient may be shared by threads: the pins and the connection pool
are behind locks, and a request borrows a connection for its exchange.
"""

import base64
import http.client
import json
import os
import random
import select
import socket
import struct
import threading
import time
import urllib.parse

__all__ = [
    "ShedClient", "Response", "ShedError", "RingConfig", "xxh3_64", "xxh3_128",
    "jump", "account_buckets", "key_index", "bucket", "message_bucket",
    "parse_message_path", "parse_ring", "body_bytes",
]

M64 = (1 << 64) - 1

# ---- XXH3 (xxHash 0.8, as libxxhash 0.8.1 computes it) ----------------------

P32_1 = 0x9E3779B1
P32_2 = 0x85EBCA77
P32_3 = 0xC2B2AE3D
P64_1 = 0x9E3779B185EBCA87
P64_2 = 0xC2B2AE3D27D4EB4F
P64_3 = 0x165667B19E3779F9
P64_4 = 0x85EBCA77C2B2AE63
P64_5 = 0x27D4EB2F165667C5

K_SECRET = bytes.fromhex(
    "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
    "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c"
    "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
    "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364"
    "eac5ac8334d3ebc3c581a0fffa1363eb170ddd51b7f0da49d316552629d4689e"
    "2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e")
SECRET_SIZE_MIN = 136
STRIPE = 64


def _r64(b, i):
    return struct.unpack_from("<Q", b, i)[0]


def _r32(b, i):
    return struct.unpack_from("<I", b, i)[0]


def _swap32(x):
    return struct.unpack("<I", struct.pack(">I", x))[0]


def _swap64(x):
    return struct.unpack("<Q", struct.pack(">Q", x))[0]


def _rotl32(x, r):
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF


def _rotl64(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def _fold64(a, b):
    p = a * b
    return (p & M64) ^ (p >> 64)


def _mul128(a, b):
    p = a * b
    return p & M64, p >> 64


def _xxh64_avalanche(h):
    h ^= h >> 33
    h = (h * P64_2) & M64
    h ^= h >> 29
    h = (h * P64_3) & M64
    return h ^ (h >> 32)


def _avalanche(h):
    h ^= h >> 37
    h = (h * 0x165667919E3779F9) & M64
    return h ^ (h >> 32)


def _rrmxmx(h, n):
    h ^= _rotl64(h, 49) ^ _rotl64(h, 24)
    h = (h * 0x9FB21C651E98DF25) & M64
    h ^= ((h >> 35) + n) & M64
    h = (h * 0x9FB21C651E98DF25) & M64
    return h ^ (h >> 28)


def _mix16(d, i, s, j, seed):
    return _fold64(_r64(d, i) ^ ((_r64(s, j) + seed) & M64),
                   _r64(d, i + 8) ^ ((_r64(s, j + 8) - seed) & M64))


def _custom_secret(seed):
    if seed == 0:
        return K_SECRET
    out = bytearray(len(K_SECRET))
    for i in range(0, len(K_SECRET), 16):
        struct.pack_into("<QQ", out, i, (_r64(K_SECRET, i) + seed) & M64,
                         (_r64(K_SECRET, i + 8) - seed) & M64)
    return bytes(out)


def _long_accs(d, s):
    acc = [P32_3, P64_1, P64_2, P64_3, P64_4, P32_2, P64_5, P32_1]
    n = len(d)

    def stripe(i, j):
        for lane in range(8):
            v = _r64(d, i + 8 * lane)
            k = v ^ _r64(s, j + 8 * lane)
            acc[lane ^ 1] = (acc[lane ^ 1] + v) & M64
            acc[lane] = (acc[lane] + (k & 0xFFFFFFFF) * (k >> 32)) & M64

    per_block = (len(s) - STRIPE) // 8
    block = STRIPE * per_block
    blocks = (n - 1) // block
    for b in range(blocks):
        for st in range(per_block):
            stripe(b * block + st * STRIPE, st * 8)
        for lane in range(8):
            a = acc[lane]
            a ^= a >> 47
            a ^= _r64(s, len(s) - STRIPE + 8 * lane)
            acc[lane] = (a * P32_1) & M64
    for st in range(((n - 1) - block * blocks) // STRIPE):
        stripe(blocks * block + st * STRIPE, st * 8)
    stripe(n - STRIPE, len(s) - STRIPE - 7)
    return acc


def _merge(acc, s, j, start):
    r = start
    for i in range(4):
        r = (r + _fold64(acc[2 * i] ^ _r64(s, j + 16 * i),
                         acc[2 * i + 1] ^ _r64(s, j + 16 * i + 8))) & M64
    return _avalanche(r)


def xxh3_64(data, seed=0):
    """XXH3_64bits_withSeed(data, len, seed): an int in [0, 2^64)."""
    d = bytes(data)
    n = len(d)
    seed &= M64
    s = K_SECRET
    if n == 0:
        return _xxh64_avalanche(seed ^ _r64(s, 56) ^ _r64(s, 64))
    if n <= 3:
        c = (d[0] << 16) | (d[n >> 1] << 24) | d[n - 1] | (n << 8)
        return _xxh64_avalanche(c ^ (((_r32(s, 0) ^ _r32(s, 4)) + seed) & M64))
    if n <= 8:
        sd = seed ^ (_swap32(seed & 0xFFFFFFFF) << 32)
        flip = ((_r64(s, 8) ^ _r64(s, 16)) - sd) & M64
        x = (_r32(d, n - 4) + (_r32(d, 0) << 32)) ^ flip
        return _rrmxmx(x, n)
    if n <= 16:
        lo = _r64(d, 0) ^ (((_r64(s, 24) ^ _r64(s, 32)) + seed) & M64)
        hi = _r64(d, n - 8) ^ (((_r64(s, 40) ^ _r64(s, 48)) - seed) & M64)
        return _avalanche((n + _swap64(lo) + hi + _fold64(lo, hi)) & M64)
    if n <= 128:
        acc = n * P64_1
        if n > 32:
            if n > 64:
                if n > 96:
                    acc += _mix16(d, 48, s, 96, seed) + _mix16(d, n - 64, s, 112, seed)
                acc += _mix16(d, 32, s, 64, seed) + _mix16(d, n - 48, s, 80, seed)
            acc += _mix16(d, 16, s, 32, seed) + _mix16(d, n - 32, s, 48, seed)
        acc += _mix16(d, 0, s, 0, seed) + _mix16(d, n - 16, s, 16, seed)
        return _avalanche(acc & M64)
    if n <= 240:
        acc = n * P64_1
        for i in range(8):
            acc += _mix16(d, 16 * i, s, 16 * i, seed)
        acc = _avalanche(acc & M64)
        for i in range(8, n // 16):
            acc += _mix16(d, 16 * i, s, 16 * (i - 8) + 3, seed)
        acc += _mix16(d, n - 16, s, SECRET_SIZE_MIN - 17, seed)
        return _avalanche(acc & M64)
    s = _custom_secret(seed)
    return _merge(_long_accs(d, s), s, 11, (n * P64_1) & M64)


def _mix32(lo, hi, d, i1, i2, s, j, seed):
    lo = (lo + _mix16(d, i1, s, j, seed)) & M64
    lo ^= (_r64(d, i2) + _r64(d, i2 + 8)) & M64
    hi = (hi + _mix16(d, i2, s, j + 16, seed)) & M64
    hi ^= (_r64(d, i1) + _r64(d, i1 + 8)) & M64
    return lo, hi


def _fin128(lo, hi, n, seed):
    low = _avalanche((lo + hi) & M64)
    high = (lo * P64_1 + hi * P64_4 + ((n - seed) & M64) * P64_2) & M64
    return low, (-_avalanche(high)) & M64


def xxh3_128(data, seed=0):
    """XXH3_128bits_withSeed(data, len, seed): (low64, high64)."""
    d = bytes(data)
    n = len(d)
    seed &= M64
    s = K_SECRET
    if n == 0:
        return (_xxh64_avalanche(seed ^ _r64(s, 64) ^ _r64(s, 72)),
                _xxh64_avalanche(seed ^ _r64(s, 80) ^ _r64(s, 88)))
    if n <= 3:
        cl = (d[0] << 16) | (d[n >> 1] << 24) | d[n - 1] | (n << 8)
        ch = _rotl32(_swap32(cl), 13)
        fl = ((_r32(s, 0) ^ _r32(s, 4)) + seed) & M64
        fh = ((_r32(s, 8) ^ _r32(s, 12)) - seed) & M64
        return _xxh64_avalanche(cl ^ fl), _xxh64_avalanche(ch ^ fh)
    if n <= 8:
        sd = seed ^ (_swap32(seed & 0xFFFFFFFF) << 32)
        x = (_r32(d, 0) + (_r32(d, n - 4) << 32)) ^ (((_r64(s, 16) ^ _r64(s, 24)) + sd) & M64)
        lo, hi = _mul128(x, (P64_1 + (n << 2)) & M64)
        hi = (hi + (lo << 1)) & M64
        lo ^= hi >> 3
        lo ^= lo >> 35
        lo = (lo * 0x9FB21C651E98DF25) & M64
        lo ^= lo >> 28
        return lo, _avalanche(hi)
    if n <= 16:
        fl = ((_r64(s, 32) ^ _r64(s, 40)) - seed) & M64
        fh = ((_r64(s, 48) ^ _r64(s, 56)) + seed) & M64
        ilo = _r64(d, 0)
        ihi = _r64(d, n - 8)
        lo, hi = _mul128(ilo ^ ihi ^ fl, P64_1)
        lo = (lo + ((n - 1) << 54)) & M64
        ihi ^= fh
        hi = (hi + ihi + (ihi & 0xFFFFFFFF) * (P32_2 - 1)) & M64
        lo ^= _swap64(hi)
        hlo, hhi = _mul128(lo, P64_2)
        hhi = (hhi + hi * P64_2) & M64
        return _avalanche(hlo), _avalanche(hhi)
    if n <= 128:
        lo, hi = (n * P64_1) & M64, 0
        if n > 32:
            if n > 64:
                if n > 96:
                    lo, hi = _mix32(lo, hi, d, 48, n - 64, s, 96, seed)
                lo, hi = _mix32(lo, hi, d, 32, n - 48, s, 64, seed)
            lo, hi = _mix32(lo, hi, d, 16, n - 32, s, 32, seed)
        lo, hi = _mix32(lo, hi, d, 0, n - 16, s, 0, seed)
        return _fin128(lo, hi, n, seed)
    if n <= 240:
        lo, hi = (n * P64_1) & M64, 0
        for i in range(4):
            lo, hi = _mix32(lo, hi, d, 32 * i, 32 * i + 16, s, 32 * i, seed)
        lo, hi = _avalanche(lo), _avalanche(hi)
        for i in range(4, n // 32):
            lo, hi = _mix32(lo, hi, d, 32 * i, 32 * i + 16, s, 3 + 32 * (i - 4), seed)
        lo, hi = _mix32(lo, hi, d, n - 16, n - 32, s, SECRET_SIZE_MIN - 17 - 16, (-seed) & M64)
        return _fin128(lo, hi, n, seed)
    s = _custom_secret(seed)
    acc = _long_accs(d, s)
    return (_merge(acc, s, 11, (n * P64_1) & M64),
            _merge(acc, s, len(s) - 64 - 11, (~(n * P64_2)) & M64))


# ---- the bucket function (docs/bucket.md; ring/ring.c) ----------------------

class RingConfig:
    """What a client needs of a service's ring: B, K and two seeds. The
    defaults are ring_config_default()'s; a shed sends its own in Shed-Ring."""

    def __init__(self, buckets=65536, k=3, seed_account=0x5348454441434354,
                 seed_key=0x534845444B455953):
        if buckets < 1 or buckets > 1 << 24 or buckets & (buckets - 1):
            raise ValueError("B must be a power of two in 1..2^24")
        if k < 1 or k > 64 or k > buckets:
            raise ValueError("K must be in 1..min(B, 64)")
        self.buckets = buckets
        self.k = k
        self.seed_account = seed_account & M64
        self.seed_key = seed_key & M64

    def key(self):
        return (self.buckets, self.k, self.seed_account, self.seed_key)

    def __eq__(self, other):
        return isinstance(other, RingConfig) and self.key() == other.key()

    def __hash__(self):
        return hash(self.key())

    def __repr__(self):
        return "RingConfig(b=%d, k=%d, sa=%016x, sk=%016x)" % self.key()


def jump(key, n):
    """Jump consistent hash (Lamping & Veach), as ring_jump(): in [0, n)."""
    b, j = -1, 0
    key &= M64
    while j < n:
        b = j
        key = (key * 2862933555777941757 + 1) & M64
        j = int(float(b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def account_buckets(cfg, account, want=None):
    """The first <want> (default K) buckets of <account> (bytes), in order."""
    want = cfg.k if want is None else want
    lo, hi = xxh3_128(account, cfg.seed_account)
    bits = cfg.buckets.bit_length() - 1
    step = hi | 1

    def top(x):
        return x >> (64 - bits) if bits else 0

    out = [top(lo)]
    i = 1
    while len(out) < want and i < 4096:
        b = top((lo + i * step) & M64)
        if b not in out:
            out.append(b)
        i += 1
    b = out[-1]
    while len(out) < want:
        b = (b + 1) & (cfg.buckets - 1)
        if b not in out:
            out.append(b)
    return out


def key_index(cfg, key):
    """Which of the account's K buckets <key> ("queue/message") uses."""
    return jump(xxh3_64(key, cfg.seed_key), cfg.k)


def bucket(cfg, account, key):
    """ring_bucket(): the bucket of <key> under <account> (both bytes)."""
    j = key_index(cfg, key)
    return account_buckets(cfg, account, j + 1)[j]


ID_MAX = 255
KEY_MAX = 1024


def message_bucket(cfg, account, queue, message):
    """ring_message_bucket(): the bucket of message ids (decoded bytes)."""
    if len(queue) + 1 + len(message) > KEY_MAX:
        return None
    return bucket(cfg, account, queue + b"/" + message)


class PathError(ValueError):
    """A path that a shed answers with a 400 (bad escape, NUL, "." or "..",
    an id over 255 bytes)."""


_HEX = "0123456789abcdefABCDEF"


def _decode_id(seg):
    out = bytearray()
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "%":
            if len(seg) - i < 3 or seg[i + 1] not in _HEX or seg[i + 2] not in _HEX:
                raise PathError("bad percent-encoding")
            out.append(int(seg[i + 1:i + 3], 16))
            i += 3
        else:
            out += c.encode("utf-8")
            i += 1
    if 0 in out:
        raise PathError("NUL in an id")
    if len(out) > ID_MAX:
        raise PathError("id over %d bytes" % ID_MAX)
    return bytes(out)


def parse_message_path(path):
    """(account, queue, message) as decoded bytes when the raw path <path>
    (no query) names one message, /v1.0/a/q/m; None for any other Burrow
    level or another route. Raises PathError where a shed answers 400."""
    if len(path) > 2048:
        raise PathError("path over 2048 bytes")
    if not path.startswith("/") or path == "/":
        return None
    segs = path[1:].split("/")
    if len(segs) != 4 or any(s == "" for s in segs):
        return None
    try:
        if _decode_id(segs[0]) != b"v1.0":
            return None
    except PathError:
        return None
    ids = [_decode_id(s) for s in segs[1:]]
    for i in ids:
        if b"/" in i:
            return None  # a decoded '/' is no route (404)
    for i in ids:
        if i in (b".", b".."):
            raise PathError('an id "." or ".."')
    return tuple(ids)


def parse_ring(value):
    """A Shed-Ring value "b=<B>; k=<K>; sa=<hex>; sk=<hex>" -> RingConfig,
    or None when it is malformed (as client_wire_parse_ring())."""
    got = {}
    for part in value.split(";"):
        part = part.strip(" \t\r\n")
        if not part:
            continue
        if "=" not in part:
            return None
        name, _, v = part.partition("=")
        name = name.strip(" \t").lower()
        v = v.strip(" \t")
        if name not in ("b", "k", "sa", "sk"):
            continue
        if name in got:
            return None
        try:
            if name in ("b", "k"):
                if not v.isdigit() or len(v) > 20:
                    return None
                got[name] = int(v)
            else:
                if not 1 <= len(v) <= 16 or any(c not in _HEX for c in v):
                    return None
                got[name] = int(v, 16)
        except ValueError:
            return None
    if len(got) != 4:
        return None
    try:
        return RingConfig(got["b"], got["k"], got["sa"], got["sk"])
    except ValueError:
        return None


# ---- the client ------------------------------------------------------------

class ShedError(Exception):
    """A request that got no HTTP answer worth returning: transport failure
    after the retries, a redirect loop, too many hops, a bad redirect, a body
    over the limit."""


class Response:
    def __init__(self, status, headers, body, url, hops, attempts, pinned, bucket_):
        self.status = status      # HTTP status of the final answer
        self.headers = headers    # {lower-case name: value}
        self.body = body          # bytes
        self.url = url            # the final URL
        self.hops = hops          # redirects followed in the last attempt
        self.attempts = attempts  # 1 + retries taken
        self.pinned = pinned      # answered by a pinned host, no shed asked
        self.bucket = bucket_     # bucket computed by the client, or None

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %s hops=%d pinned=%s>" % (self.status, self.url, self.hops,
                                                        self.pinned)


def body_bytes(item):
    """The bytes of a message body as a JSON answer gives it: an object with
    "body" or "body_base64url" (docs/client.md, "Message bodies"), or a
    detail=body list element (a string or {"body_base64url": ...})."""
    if isinstance(item, str):
        return item.encode("utf-8")
    if "body_base64url" in item:
        s = item["body_base64url"]
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    return item["body"].encode("utf-8")


class _Pin:
    __slots__ = ("host", "generation", "expires", "hits", "why")


_REDIRECTS = (301, 302, 307, 308)
PIN_TTL_MAX = 86400
EXPECT_OVER = 1024  # body bytes above which a shed is asked with Expect


class _Transport(Exception):
    pass


class ShedClient:
    """See the module docstring. Arguments:

    sheds       ["host:port", ...]: where NAME.service requests go first
                (tried in turn); default $SHED ("h:p[,h:p...]"), else DNS
    retries     attempts after a failure (3)
    max_hops    redirects followed in one chain (5, at most 10)
    timeout     seconds for one exchange (30); connect_timeout (2)
    backoff     (base, max) seconds of the jittered backoff (0.02, 1.0)
    body_max    largest response body accepted (16 MiB)
    clock       monotonic seconds (injectable for tests)
    max_pins    pins held at most (65536); when full, expired pins are swept
                and, failing that, a new pin is not kept (the request still
                works; the next one asks a shed again)
    """

    def __init__(self, sheds=None, retries=3, max_hops=5, timeout=30.0, connect_timeout=2.0,
                 backoff=(0.02, 1.0), body_max=16 << 20, clock=time.monotonic, no_pin=False,
                 max_pins=65536):
        if sheds is None:
            env = os.environ.get("SHED", "")
            sheds = [s.strip() for s in env.split(",") if s.strip()]
        for s in sheds:
            host, _, port = s.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("shed %r: want HOST:PORT" % s)
        if not 1 <= max_hops <= 10:
            raise ValueError("max_hops: want 1..10")
        self.sheds = list(sheds)
        self.retries = retries
        self.max_hops = max_hops
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.backoff = backoff
        self.body_max = body_max
        self.clock = clock
        self.no_pin = no_pin
        self.max_pins = max_pins
        self._lock = threading.Lock()
        self._rings = {}  # service -> RingConfig
        self._pins = {}   # (service, bucket) -> _Pin
        self._idle = {}   # (scheme, host, port) -> [HTTPConnection]
        self._shed_next = random.randrange(len(self.sheds)) if self.sheds else 0
        self.metrics = dict.fromkeys(
            ("requests", "http", "redirects", "pinned", "shed_asks", "failures", "retries",
             "pins_set", "pins_dropped", "lookups", "connections"), 0)

    # -- pins --

    def pins(self):
        """The live pins: [{"service", "bucket", "host", "generation",
        "expires_in", "hits", "why"}], sorted by service and bucket."""
        now = self.clock()
        with self._lock:
            out = [{"service": s, "bucket": b, "host": p.host, "generation": p.generation,
                    "expires_in": p.expires - now, "hits": p.hits, "why": p.why}
                   for (s, b), p in self._pins.items() if p.expires > now]
        return sorted(out, key=lambda p: (p["service"], p["bucket"]))

    def ring(self, service="burrow"):
        with self._lock:
            return self._rings.get(service)

    def _count(self, name, n=1):
        with self._lock:
            self.metrics[name] += n

    def _set_ring(self, service, cfg):
        with self._lock:
            old = self._rings.get(service)
            if old == cfg:
                return
            self._rings[service] = cfg
            if old is not None:  # bucket numbers changed meaning
                for key in [k for k in self._pins if k[0] == service]:
                    del self._pins[key]
                    self.metrics["pins_dropped"] += 1

    def _pin_get(self, service, b):
        now = self.clock()
        with self._lock:
            p = self._pins.get((service, b))
            if p is None:
                return None
            if p.expires <= now:
                del self._pins[(service, b)]
                return None
            p.hits += 1
            return p.host

    def _pin_set(self, service, b, host, generation, ttl, why):
        with self._lock:
            if ttl <= 0:
                self._pins.pop((service, b), None)
                return
            if (service, b) not in self._pins and len(self._pins) >= self.max_pins:
                now = self.clock()
                for key in [k for k, x in self._pins.items() if x.expires <= now]:
                    del self._pins[key]
                if len(self._pins) >= self.max_pins:
                    return
            p = _Pin()
            p.host, p.generation, p.expires, p.hits, p.why = (
                host, generation, self.clock() + ttl, 0, why)
            self._pins[(service, b)] = p
            self.metrics["pins_set"] += 1

    def _pin_drop(self, service, b):
        with self._lock:
            if self._pins.pop((service, b), None) is not None:
                self.metrics["pins_dropped"] += 1

    def _pin_drop_host(self, host):
        with self._lock:
            for key in [k for k, p in self._pins.items() if p.host == host]:
                del self._pins[key]
                self.metrics["pins_dropped"] += 1

    # -- connections --

    def _conn_get(self, origin):
        with self._lock:
            idle = self._idle.get(origin)
            if idle:
                return idle.pop(), True
        scheme, host, port = origin
        cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        c = cls(host.strip("[]"), port, timeout=self.connect_timeout)
        self._count("connections")
        return c, False

    def _conn_put(self, origin, c):
        with self._lock:
            lst = self._idle.setdefault(origin, [])
            if len(lst) < 8:
                lst.append(c)
                return
        c.close()

    def _drop_idle(self, origin):
        with self._lock:
            conns = self._idle.pop(origin, [])
        for c in conns:
            c.close()

    def close(self):
        """Close every pooled connection."""
        with self._lock:
            conns = [c for lst in self._idle.values() for c in lst]
            self._idle.clear()
        for c in conns:
            c.close()

    # -- one exchange --

    def _exchange(self, origin, method, target, hostport, body, extra, expect):
        """One request/response on a pooled connection to <origin>. Returns
        (status, headers, body); raises _Transport when nothing usable came
        back (a reused connection that the server had closed is tried once
        more on a new one, as libcurl does)."""
        for _ in range(2):
            c, reused = self._conn_get(origin)
            try:
                r = self._send(c, method, target, hostport, body, extra, expect)
            except ShedError:
                c.close()
                raise
            except (OSError, http.client.HTTPException) as e:
                c.close()
                if reused and not isinstance(e, socket.timeout):
                    self._drop_idle(origin)  # the others idled as long: fresh one next
                    continue
                raise _Transport("%s://%s:%d: %s" % (origin + (e,))) from e
            status, headers, data, keep = r
            if keep:
                self._conn_put(origin, c)
            else:
                c.close()
            return status, headers, data
        raise _Transport("unreachable")

    def _send(self, c, method, target, hostport, body, extra, expect):
        self._count("http")
        if c.sock is None:
            c.connect()
        c.sock.settimeout(self.timeout)
        c.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        c.putheader("Host", hostport)
        c.putheader("User-Agent", "shed_client.py/0.1")
        has_body = body is not None or method in ("PUT", "POST")
        data = b"" if body is None else bytes(body)
        if has_body and method != "HEAD":
            c.putheader("Content-Type", "application/octet-stream")
            c.putheader("Content-Length", str(len(data)))
        for k, v in extra:
            c.putheader(k, v)
        sent = True
        if has_body and expect and len(data) > EXPECT_OVER:
            c.putheader("Expect", "100-continue")
            c.endheaders()
            sent = self._await_continue(c)
            if sent:
                c.send(data)
        else:
            c.endheaders(data if has_body and method != "HEAD" else None)
        resp = c.getresponse()
        headers = {}
        for k, v in resp.getheaders():  # a repeated header: the last value counts
            headers[k.lower()] = v
        if method == "HEAD":
            payload = b""
        else:
            n = headers.get("content-length")
            if n is not None and n.isdigit() and int(n) > self.body_max:
                resp.close()
                raise ShedError("response body too large")
            payload = resp.read(self.body_max + 1)
            if len(payload) > self.body_max:
                resp.close()
                raise ShedError("response body too large")
        keep = sent and not resp.will_close
        return resp.status, headers, payload, keep

    def _await_continue(self, c):
        """After headers with Expect: 100-continue: True when the body may
        follow (a 100, or no answer within a second, as curl does), False
        when a final answer came first (then the body is never sent and the
        connection is not reused)."""
        deadline = time.monotonic() + 1.0
        head = b""
        while len(head) < 12:  # "HTTP/1.1 100" decides; a short read waits for more
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([c.sock], [], [], left)[0]:
                return True
            head = c.sock.recv(64, socket.MSG_PEEK)
            if not head:
                raise _Transport("connection closed before an answer")
            if len(head) < 12:
                time.sleep(0.001)
        if head[:12] not in (b"HTTP/1.1 100", b"HTTP/1.0 100"):
            return False
        buf = b""
        while not buf.endswith(b"\r\n\r\n"):  # consume exactly the interim answer
            ch = c.sock.recv(1)
            if not ch or len(buf) > 8192:
                raise _Transport("bad interim answer")
            buf += ch
        return True

    # -- requests --

    def _backoff(self, attempt):
        """Equal jitter, as client_wire_backoff_ms(): a delay in [d/2, d],
        d = min(max, base * 2^(attempt-1))."""
        base, top = self.backoff
        d = min(top, base * (2 ** (attempt - 1)))
        return d / 2 + random.random() * d / 2

    def request(self, method, url, body=None):
        """Send <method> <url> (an absolute http URL, usually
        http://NAME.service/...) with <body> (bytes or None) through the
        sheds. Returns a Response for any HTTP answer (4xx and 5xx
        included); raises ShedError when none came."""
        self._count("requests")
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname or u.fragment:
            raise ValueError("not an absolute http URL: %r" % url)
        host = u.hostname
        service = None
        if host.endswith(".service") and 8 < len(host) <= 8 + 64:
            service = host[:-len(".service")]  # urlsplit lower-cased it
        port = u.port or (443 if u.scheme == "https" else 80)
        path = u.path or "/"
        query = "?" + u.query if u.query else ""
        msg = None
        if service is not None:
            try:
                msg = parse_message_path(path)
            except PathError:
                msg = None  # not a message the client can place: the shed answers 400
        key = None if msg is None else msg[1] + b"/" + msg[2]
        failed = ""
        lookup = False
        skip_backoff = False
        retry_after = 0.0
        last_err = None
        resp_bucket = None
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            if attempt > 0 and skip_backoff:
                skip_backoff = False  # a lookup is no failure: at once
            elif attempt > 0:
                self._count("retries")
                time.sleep(max(self._backoff(attempt), retry_after))
                retry_after = 0.0
            pinned_host = None
            resp_bucket = None
            cfg = self.ring(service) if msg is not None else None
            if not lookup and cfg is not None:
                resp_bucket = bucket(cfg, msg[0], key)
                if not self.no_pin:
                    pinned_host = self._pin_get(service, resp_bucket)
            if pinned_host is not None:
                self._count("pinned")
                start = pinned_host + path + query
                shed = None
            else:
                start = url
                shed = None
                if service is not None and self.sheds:
                    shed = self.sheds[self._shed_next % len(self.sheds)]
            to_shed = service is not None and pinned_host is None
            ch = self._chain(method, start, body, shed, failed if to_shed else "",
                             to_shed and lookup, to_shed)
            pinned = pinned_host is not None and ch["hops"] == 0
            if to_shed and not (ch["end"] == "transport" and ch["hops"] == 0):
                failed = ""  # the shed answered, so it has heard about it
            if ch["end"] == "transport":
                self._count("failures")
                last_err = ch["error"]
                if ch["hops"] == 0 and shed is not None:
                    self._next_shed(shed)  # the shed itself is unreachable
                    continue
                fu = urllib.parse.urlsplit(ch["url"])
                self._pin_drop_host(_origin(fu))
                if not (ch["hops"] == 0 and to_shed):
                    failed = _hostport(fu)
                continue
            status = ch["status"]
            learned = ch["learned"]
            if status >= 500 or status == 421:
                from_shed = ch["hops"] == 0 and pinned_host is None and service is not None
                at_backend = pinned_host is not None or (ch["hops"] > 0 and learned["pin"])
                idempotent = msg is not None or method in ("GET", "HEAD")
                self._count("failures")
                if pinned_host is not None and resp_bucket is not None:
                    self._pin_drop(service, resp_bucket)
                if from_shed and shed is not None:
                    self._next_shed(shed)
                ra = ch["headers"].get("retry-after", "").strip()
                if not at_backend and ra.isdigit() and int(ra) <= 5:
                    retry_after = int(ra) * (1 + random.random() / 2)
                if at_backend and status != 421:
                    failed = _hostport(urllib.parse.urlsplit(ch["url"]))
                if not last and service is not None and (
                        from_shed or status == 421 or idempotent):
                    continue
            elif (status == 404 and msg is not None and not lookup and
                  (pinned_host is not None or ch["hops"] > 0) and method != "PUT" and not last):
                # Not where the pin or the redirect said: once more through
                # a shed, asking for a lookup (docs/reachability.md).
                lookup = True
                if pinned_host is not None and resp_bucket is not None:
                    self._pin_drop(service, resp_bucket)
                self._count("lookups")
                skip_backoff = True
                continue
            elif msg is not None and learned["pin"] and ch["hops"] > 0 and not self.no_pin:
                # Success through a redirect: pin bucket -> final host.
                if learned["ring"] is not None:
                    self._set_ring(service, learned["ring"])
                why = "%d from %s for %s %s/%s" % (
                    learned["code"], learned["from"], method,
                    msg[0].decode("utf-8", "replace"), key[:100].decode("utf-8", "replace"))
                self._pin_set(service, learned["bucket"],
                              _origin(urllib.parse.urlsplit(ch["url"])),
                              learned["generation"], learned["ttl"], why)
            return Response(status, ch["headers"], ch["body"], ch["url"], ch["hops"],
                            attempt + 1, pinned, resp_bucket)
        raise ShedError("could not reach the server (after retries) (last: %s)" % last_err)

    def _next_shed(self, shed):
        with self._lock:
            if self.sheds[self._shed_next % len(self.sheds)] == shed:
                self._shed_next = (self._shed_next + 1) % len(self.sheds)

    def _chain(self, method, start, body, shed, failed, lookup, to_shed):
        """Follow one redirect chain from <start>; hop 0 goes to <shed>
        (host:port) when given. Returns a dict: end ("done" or "transport"),
        status, headers, body, url, hops, learned, error."""
        url = start
        visited = []
        hops = 0
        learned = {"pin": False, "ring": None, "bucket": 0, "generation": 0, "ttl": 0,
                   "code": 0, "from": ""}
        while True:
            u = urllib.parse.urlsplit(url)
            port = u.port or (443 if u.scheme == "https" else 80)
            hostport = u.netloc.rpartition("@")[2]
            origin = (u.scheme.lower(), u.hostname, port)
            if hops == 0 and shed is not None:
                h, _, p = shed.rpartition(":")
                origin = ("http", h, int(p))
            extra = []
            if hops == 0 and failed:
                extra.append(("Shed-Failed", failed))
            if hops == 0 and lookup:
                extra.append(("Shed-Lookup", "1"))
            if hops == 0 and to_shed:
                self._count("shed_asks")
            target = (u.path or "/") + ("?" + u.query if u.query else "")
            try:
                status, headers, data = self._exchange(origin, method, target, hostport, body,
                                                       extra, hops == 0 and to_shed)
            except _Transport as e:
                return {"end": "transport", "url": url, "hops": hops, "error": str(e),
                        "learned": learned}
            if status not in _REDIRECTS:
                return {"end": "done", "status": status, "headers": headers, "body": data,
                        "url": url, "hops": hops, "learned": learned}
            self._learn(headers, status, shed if hops == 0 else _hostport(u), learned)
            if hops >= self.max_hops:
                raise ShedError("too many redirects")
            visited.append(url)
            loc = headers.get("location", "")
            if loc.startswith(("http://", "https://")):
                nxt = loc
            elif loc.startswith("/") and not loc.startswith("//"):
                nxt = "%s://%s%s" % (u.scheme, hostport, loc)
            else:
                raise ShedError("redirect without a usable Location")
            if nxt in visited:
                raise ShedError("redirect loop")
            url = nxt
            hops += 1
            self._count("redirects")

    @staticmethod
    def _learn(headers, status, frm, learned):
        ring = headers.get("shed-ring")
        if ring:
            cfg = parse_ring(ring)
            if cfg is not None:
                learned["ring"] = cfg
        b = headers.get("shed-bucket", "").strip()
        t = headers.get("shed-pin-ttl", "").strip()
        if not b.isdigit() or not t.isdigit() or len(b) > 20 or len(t) > 20:
            return
        if int(b) >= 1 << 24 or int(t) > PIN_TTL_MAX:
            return
        g = headers.get("shed-generation", "").strip()
        learned.update(pin=True, bucket=int(b), ttl=int(t), code=status, **{"from": frm})
        learned["generation"] = int(g) if g.isdigit() and int(g) < 1 << 64 else 0

    # -- Burrow --

    @staticmethod
    def _q(url, **params):
        qs = urllib.parse.urlencode([(k, v) for k, v in params.items() if v is not None])
        if not qs:
            return url
        return url + ("&" if "?" in url else "?") + qs

    def put(self, url, body, ttl=None, hide=None):
        """PUT a message (bytes). 201 created, 204 replaced."""
        return self.request("PUT", self._q(url, ttl=ttl, hide=hide), bytes(body))

    def get(self, url, detail="body"):
        """GET a message; detail=body (the default here) answers its exact
        bytes in .body."""
        return self.request("GET", self._q(url, detail=detail))

    def update(self, url, ttl=None, hide=None, detail=None):
        return self.request("POST", self._q(url, ttl=ttl, hide=hide, detail=detail), b"")

    def delete(self, url):
        return self.request("DELETE", url)

    def list(self, url, limit=None, marker=None, detail=None, match_hidden=False, wait=None):
        """One page of a list (accounts, queues or messages) through the
        cell's aggregator. A 404 means an empty list."""
        return self.request("GET", self._q(url, limit=limit, marker=marker, detail=detail,
                                           match_hidden="true" if match_hidden else None,
                                           wait=wait))

    def list_all(self, url, limit=100, detail="all"):
        """Every item of a list, page after page (marker = the last id, as
        Burrow pages), as parsed JSON items."""
        marker = None
        while True:
            r = self.list(url, limit=limit, marker=marker, detail=detail)
            if r.status == 404:
                return
            if r.status != 200:
                raise ShedError("list: HTTP %d" % r.status)
            items = r.json()
            for it in items:
                yield it
            if len(items) < limit:
                return
            last = items[-1]
            marker = last if isinstance(last, str) else last["id"]


def _hostport(u):
    """"host:port" of a split URL, the port always written (as the C client
    names a host in Shed-Failed)."""
    port = u.port or (443 if u.scheme == "https" else 80)
    net = u.netloc.rpartition("@")[2]
    if u.port is not None:
        net = net[:net.rindex(":")]
    return "%s:%d" % (net, port)


def _origin(u):
    """"scheme://host:port", the port always written (the key of a pin)."""
    return "%s://%s" % (u.scheme.lower(), _hostport(u))
