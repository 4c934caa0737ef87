/* SPDX-License-Identifier: ISC */
/*
 * client/client: follow shed redirects once per bucket, then talk to the
 * pinned host directly. One attempt = one redirect chain (shed -> ... ->
 * final host) or one pinned exchange; a failed attempt drops the pins it
 * relied on and the next one goes back to a shed, after a jittered backoff,
 * naming the failed host. Everything HTTP is libcurl; the redirect logic is
 * ours because CURLOPT_FOLLOWLOCATION would hide the Shed-* headers and turns
 * some methods into GET.
 */
#include "client/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/wire.h"
#include "common/buf.h"
#include "common/clock.h"
#include "proto/burrow.h"
#include "ring/ring.h"

#define POOL_MAX          64   /* idle easy handles kept (and one in hot) */
#define HDR_VAL_MAX       2048 /* bytes kept of any one header we read */
#define PIN_TTL_MAX_S     86400
#define RETRY_AFTER_MAX_S 5 /* longest shed Retry-After honoured */

struct target;
struct chain;
struct easy_node;

static void easy_free(struct easy_node *n);
static size_t scratch_target_size(void);
static size_t scratch_chain_size(void);

/* The method options an easy handle holds (exchange()). */
enum easy_mode { EASY_UNSET, EASY_GET, EASY_HEAD, EASY_OTHER };

/* A pooled easy handle with the scratch memory of one request, so the hot
 * path does not allocate, and what exchange() last set on it. */
struct easy_node {
    struct easy_node *next;
    CURL *h;
    bool configured;     /* the options that never change are set */
    enum easy_mode mode; /* CUSTOMREQUEST / NOBODY / HTTPGET as last set */
    long timeout_ms;     /* CURLOPT_TIMEOUT_MS as last set */
    void *writedata;     /* CURLOPT_WRITEDATA as last set */
    struct target *t;    /* owned scratch */
    struct chain *ch;    /* owned scratch */
};

struct shed_client {
    struct shed_client_options o; /* copy; sheds[] point into shed_store */
    char shed_store[SHED_CLIENT_MAX_SHEDS][CLIENT_WIRE_ORIGIN_MAX];
    /* The idle handle most recently put back, taken and given back with one
     * atomic exchange each: a thread making one request after another
     * never takes pool_lock. */
    _Atomic(struct easy_node *) hot;
    pthread_mutex_t pool_lock; /* guards pool */
    struct easy_node *pool;    /* more idle easy handles, owned */
    size_t npool;
    struct client_pins *pins;   /* owned */
    _Atomic uint64_t rng;       /* splitmix64 state */
    _Atomic unsigned shed_next; /* round-robin over o.sheds */
    _Atomic uint64_t m_requests, m_http, m_redirects, m_pinned, m_shed_asks, m_failures, m_retries,
        m_pins_set, m_pins_dropped, m_lookups;
};

/* What one HTTP exchange told us. */
struct hop {
    long status;
    CURLcode cc;
    bool too_big;
    bool overlong; /* a header we read was longer than its buffer */
    char location[HDR_VAL_MAX];
    char sh_bucket[32], sh_gen[32], sh_ttl[32], sh_ring[256];
    char retry_after[32];
    char link[HDR_VAL_MAX];
    char ctype[128];
    char *body; /* owned */
    size_t len, cap, max;
};

static uint64_t
mono_ms(void *arg)
{
    (void)arg;
    return clock_mono_ms();
}

uint64_t
shed_client_now_ms(struct shed_client *c)
{
    return c->o.clock(c->o.clock_arg);
}

static uint64_t
rnd64(struct shed_client *c)
{
    uint64_t z = atomic_fetch_add(&c->rng, 0x9e3779b97f4a7c15ull) + 0x9e3779b97f4a7c15ull;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void
sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

void
shed_client_options_init(struct shed_client_options *o)
{
    memset(o, 0, sizeof(*o));
}

/* "host:port" with a non-empty host and a port 1..65535. */
static bool
valid_hostport(const char *s)
{
    const char *colon = strrchr(s, ':');
    char *end;
    long port;

    if (colon == NULL || colon == s || strlen(s) >= CLIENT_WIRE_ORIGIN_MAX)
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || *p == '/' || *p == '@')
            return false;
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    return errno == 0 && *end == '\0' && end != colon + 1 && port > 0 && port <= 65535;
}

int
shed_client_create(const struct shed_client_options *o, struct shed_client **out)
{
    struct shed_client *c;
    struct shed_client_options def;

    if (o == NULL) {
        shed_client_options_init(&def);
        o = &def;
    }
    if (o->nsheds > SHED_CLIENT_MAX_SHEDS || o->max_hops > SHED_CLIENT_MAX_HOPS)
        return -EINVAL;
    for (size_t i = 0; i < o->nsheds; i++)
        if (o->sheds[i] == NULL || !valid_hostport(o->sheds[i]))
            return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->o = *o;
    for (size_t i = 0; i < o->nsheds; i++) {
        strcpy(c->shed_store[i], o->sheds[i]);
        c->o.sheds[i] = c->shed_store[i];
    }
    if (c->o.max_hops == 0)
        c->o.max_hops = 5;
    if (c->o.retries == 0)
        c->o.retries = 3;
    if (c->o.backoff_base_ms == 0)
        c->o.backoff_base_ms = 20;
    if (c->o.backoff_max_ms == 0)
        c->o.backoff_max_ms = 1000;
    if (c->o.connect_timeout_ms == 0)
        c->o.connect_timeout_ms = 2000;
    if (c->o.timeout_ms == 0)
        c->o.timeout_ms = 30000;
    if (c->o.max_pins == 0)
        c->o.max_pins = 65536;
    if (c->o.body_max == 0)
        c->o.body_max = 16u << 20;
    if (c->o.body_max > SHED_CLIENT_BODY_MAX)
        c->o.body_max = SHED_CLIENT_BODY_MAX;
    if (c->o.clock == NULL)
        c->o.clock = mono_ms;
    if (client_pins_create(c->o.max_pins, &c->pins) != 0) {
        free(c);
        return -ENOMEM;
    }
    /* Harmless when the program already did it; not thread-safe otherwise
     * (documented in the header). */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_init(&c->pool_lock, NULL);
    atomic_store(&c->rng, mono_ms(NULL) ^ ((uint64_t)(uintptr_t)c << 16));
    atomic_store(&c->shed_next, (unsigned)(rnd64(c) % (o->nsheds ? o->nsheds : 1)));
    *out = c;
    return 0;
}

void
shed_client_destroy(struct shed_client *c)
{
    if (c == NULL)
        return;
    easy_free(atomic_exchange(&c->hot, NULL));
    while (c->pool != NULL) {
        struct easy_node *n = c->pool;
        c->pool = n->next;
        easy_free(n);
    }
    pthread_mutex_destroy(&c->pool_lock);
    client_pins_destroy(c->pins);
    free(c);
}

static void
easy_free(struct easy_node *n)
{
    if (n == NULL)
        return;
    if (n->h != NULL)
        curl_easy_cleanup(n->h);
    free(n->t);
    free(n->ch);
    free(n);
}

/* Borrow an easy handle (its connection cache comes with it). */
static struct easy_node *
easy_get(struct shed_client *c)
{
    struct easy_node *n = atomic_exchange(&c->hot, NULL);

    if (n != NULL)
        return n;
    pthread_mutex_lock(&c->pool_lock);
    n = c->pool;
    if (n != NULL) {
        c->pool = n->next;
        c->npool--;
    }
    pthread_mutex_unlock(&c->pool_lock);
    if (n != NULL)
        return n;
    n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->h = curl_easy_init();
    n->t = calloc(1, scratch_target_size());
    n->ch = calloc(1, scratch_chain_size());
    if (n->h == NULL || n->t == NULL || n->ch == NULL) {
        easy_free(n);
        return NULL;
    }
    return n;
}

static void
easy_put(struct shed_client *c, struct easy_node *n)
{
    struct easy_node *none = NULL;

    if (n == NULL || atomic_compare_exchange_strong(&c->hot, &none, n))
        return;
    pthread_mutex_lock(&c->pool_lock);
    if (c->npool < POOL_MAX) {
        n->next = c->pool;
        c->pool = n;
        c->npool++;
        n = NULL;
    }
    pthread_mutex_unlock(&c->pool_lock);
    if (n != NULL)
        easy_free(n);
}

/* Copy a header value; one that does not fit is not truncated (a cut
 * Location or Link would be followed as another URL) but marks the hop
 * overlong, which fails the request with -SHED_CLIENT_EBADREPLY. */
static void
copy_val(struct hop *h, char *dst, size_t dstlen, const struct client_wire_slice *v)
{
    if (v->len >= dstlen) {
        h->overlong = true;
        dst[0] = '\0';
        return;
    }
    memcpy(dst, v->ptr, v->len);
    dst[v->len] = '\0';
}

/* The last value of header <name> in the response of the last exchange on
 * <e> (libcurl keeps every header of it: curl_easy_header(), origin
 * CURLH_HEADER, so a 100 Continue before it is not looked at), copied into
 * <dst>; "" when absent. */
static void
get_header(struct hop *h, CURL *e, const char *name, char *dst, size_t dstlen)
{
    struct curl_header *ch;
    struct client_wire_slice v;

    dst[0] = '\0';
    if (curl_easy_header(e, name, 0, CURLH_HEADER, -1, &ch) != CURLHE_OK)
        return;
    if (ch->amount > 1 &&
        curl_easy_header(e, name, ch->amount - 1, CURLH_HEADER, -1, &ch) != CURLHE_OK)
        return;
    v.ptr = ch->value;
    v.len = strlen(ch->value);
    copy_val(h, dst, dstlen, &v);
}

/* Read the headers this hop needs after the transfer, instead of a header
 * callback on every header line: Content-Type and Link always, the
 * redirect's Location and Shed-* headers after a 3xx, Retry-After after a
 * 5xx or 421. */
static void
read_headers(struct hop *h, CURL *e)
{
    char *ct = NULL;

    h->ctype[0] = '\0';
    if (curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct != NULL) {
        struct client_wire_slice v = {ct, strlen(ct)};

        copy_val(h, h->ctype, sizeof(h->ctype), &v);
    }
    get_header(h, e, "Link", h->link, sizeof(h->link));
    if (h->status == 301 || h->status == 302 || h->status == 307 || h->status == 308) {
        get_header(h, e, "Location", h->location, sizeof(h->location));
        get_header(h, e, "Shed-Bucket", h->sh_bucket, sizeof(h->sh_bucket));
        get_header(h, e, "Shed-Generation", h->sh_gen, sizeof(h->sh_gen));
        get_header(h, e, "Shed-Pin-TTL", h->sh_ttl, sizeof(h->sh_ttl));
        get_header(h, e, "Shed-Ring", h->sh_ring, sizeof(h->sh_ring));
    }
    if (h->status >= 500 || h->status == 421)
        get_header(h, e, "Retry-After", h->retry_after, sizeof(h->retry_after));
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    struct hop *h = arg;
    size_t len = size * nmemb;
    int rc = buf_append(&h->body, &h->len, &h->cap, h->max, data, len);

    h->too_big |= rc == -E2BIG;
    return rc == 0 ? len : 0; /* 0 aborts the transfer with CURLE_WRITE_ERROR */
}

/* One HTTP exchange on a borrowed easy handle. <connect_to> routes the
 * request to a shed ("HOST:PORT:SHEDHOST:SHEDPORT") or is NULL.
 *
 * libcurl keeps every option in the handle, and each curl_easy_setopt()
 * costs ~100 instructions: options that never change are set once per
 * handle, and the per-request ones only when they differ from what the
 * handle holds (en->timeout_ms, en->mode), so a pinned GET after another
 * sets only its URL. The lists and the body are taken out again after the
 * transfer, when they were set. */
static void
exchange(struct shed_client *c, struct easy_node *en, const struct shed_client_request *req,
         const char *url, const char *connect_to, const char *failed, bool expect, bool lookup,
         struct hop *h)
{
    CURL *e = en->h;
    struct curl_slist *hdrs = NULL, *cto = NULL;
    char line[CLIENT_WIRE_ORIGIN_MAX + 32];
    bool is_get = strcmp(req->method, "GET") == 0;
    bool is_head = !is_get && strcmp(req->method, "HEAD") == 0;
    bool has_body = req->body != NULL ||
                    (!is_get && !is_head &&
                     (strcmp(req->method, "PUT") == 0 || strcmp(req->method, "POST") == 0));
    long timeout = (long)(req->timeout_ms ? req->timeout_ms : c->o.timeout_ms);
    enum easy_mode mode = has_body  ? EASY_OTHER
                          : is_get  ? EASY_GET
                          : is_head ? EASY_HEAD
                                    : EASY_OTHER;

    /* Each handle keeps its own DNS cache (libcurl's, 60 s per entry). A
     * CURLSH sharing it between the pooled handles cost ~470 instructions
     * a request inside curl_easy_perform() (callgrind), for one lookup per
     * host a minute instead of one per handle. */
    if (!en->configured) {
        curl_easy_reset(e);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_MAXCONNECTS, 32L);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->o.connect_timeout_ms);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
        en->configured = true;
        en->mode = EASY_UNSET;
        en->timeout_ms = -1;
        en->writedata = NULL;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    if (timeout != en->timeout_ms) {
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
        en->timeout_ms = timeout;
    }
    if (en->writedata != h) {
        curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
        en->writedata = h;
    }
    /* HTTPGET clears whatever method and body the previous call left (a
     * body, even taken out again, leaves the handle a POST). */
    if (mode != en->mode || mode == EASY_OTHER) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
        curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        if (is_head)
            curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        else if (!is_get)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
        en->mode = mode;
    }
    if (has_body && !is_head) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? (const char *)req->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        snprintf(line, sizeof(line), "Content-Type: %s",
                 req->content_type ? req->content_type : "application/octet-stream");
        hdrs = curl_slist_append(hdrs, line);
        /* To a shed, a large body waits for the go-ahead: the redirect comes
         * first and the body is uploaded only to the final host. */
        hdrs = curl_slist_append(hdrs, expect ? "Expect: 100-continue" : "Expect:");
    }
    if (failed != NULL && failed[0] != '\0') {
        snprintf(line, sizeof(line), "Shed-Failed: %s", failed);
        hdrs = curl_slist_append(hdrs, line);
    }
    if (lookup)
        hdrs = curl_slist_append(hdrs, "Shed-Lookup: 1");
    if (hdrs != NULL)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    if (connect_to != NULL) {
        cto = curl_slist_append(NULL, connect_to);
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, cto);
    }
    atomic_fetch_add(&c->m_http, 1);
    h->cc = curl_easy_perform(e);
    h->status = 0;
    if (h->cc == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &h->status);
        read_headers(h, e);
    }
    /* The lists and the body are the caller's or freed now: leave no
     * pointer to them in the handle. */
    if (has_body && !is_head)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
    if (hdrs != NULL)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    if (cto != NULL)
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, NULL);
    curl_slist_free_all(hdrs);
    curl_slist_free_all(cto);
}

/* <src> into <dst> (<size> > 0 bytes, truncated, NUL-terminated): what
 * snprintf(dst, size, "%s", src) does, without the format machinery. The
 * pinned path copies its URL and content type four times a request; through
 * vfprintf that was ~2400 of the library's ~16000 instructions a request on
 * top of plain libcurl (callgrind, bench-client --only). */
static void
copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* A hop as new: every field is set, no memset of its ~4.7 KB of header
 * buffers (only their first bytes are read while empty). */
static void
hop_reset(struct hop *h, size_t max)
{
    free(h->body);
    h->status = 0;
    h->cc = CURLE_OK;
    h->too_big = h->overlong = false;
    h->location[0] = h->sh_bucket[0] = h->sh_gen[0] = h->sh_ttl[0] = '\0';
    h->sh_ring[0] = h->retry_after[0] = h->link[0] = h->ctype[0] = '\0';
    h->body = NULL;
    h->len = h->cap = 0;
    h->max = max;
}

static bool
is_redirect(long s)
{
    return s == 301 || s == 302 || s == 307 || s == 308;
}

/* Resolve a Location / Link target against <base> (absolute URL). */
static int
resolve(const char *base, const char *ref, char *out, size_t outlen)
{
    struct client_wire_url bu;
    int n;

    if (strncmp(ref, "http://", 7) == 0 || strncmp(ref, "https://", 8) == 0) {
        n = snprintf(out, outlen, "%s", ref);
    } else if (ref[0] == '/' && ref[1] != '/') {
        if (client_wire_parse_url(base, &bu) != 0)
            return -SHED_CLIENT_EBADREDIRECT;
        n = snprintf(out, outlen, "%.*s://%.*s%s", (int)bu.scheme.len, bu.scheme.ptr,
                     (int)bu.hostport.len, bu.hostport.ptr, ref);
    } else {
        return -SHED_CLIENT_EBADREDIRECT;
    }
    if (n < 0 || (size_t)n >= outlen)
        return -SHED_CLIENT_EBADREDIRECT;
    return 0;
}

/* What the Shed-* headers of a chain taught us. */
struct learned {
    bool have_pin, have_ring;
    uint32_t bucket;
    uint64_t generation, ttl_s;
    struct ring_config ring;
    char from[CLIENT_WIRE_ORIGIN_MAX]; /* host:port of the redirecting shed */
    long code;
};

static void
learn(const struct hop *h, const char *url, const char *shed, struct learned *l)
{
    uint64_t b, g = 0, t;
    struct client_wire_url u;

    if (h->sh_ring[0] != '\0' &&
        client_wire_parse_ring(h->sh_ring, strlen(h->sh_ring), &l->ring) == 0)
        l->have_ring = true;
    if (h->sh_bucket[0] == '\0' || h->sh_ttl[0] == '\0')
        return;
    if (client_wire_parse_uint(h->sh_bucket, strlen(h->sh_bucket), RING_MAX_BUCKETS - 1, &b) != 0 ||
        client_wire_parse_uint(h->sh_ttl, strlen(h->sh_ttl), PIN_TTL_MAX_S, &t) != 0)
        return;
    if (h->sh_gen[0] != '\0')
        (void)client_wire_parse_uint(h->sh_gen, strlen(h->sh_gen), UINT64_MAX, &g);
    l->have_pin = true;
    l->bucket = (uint32_t)b;
    l->ttl_s = t;
    l->generation = g;
    l->code = h->status;
    l->from[0] = '\0';
    if (shed != NULL)
        snprintf(l->from, sizeof(l->from), "%s", shed);
    else if (client_wire_parse_url(url, &u) == 0)
        (void)client_wire_hostport(&u, l->from, sizeof(l->from));
}

enum chain_end {
    CHAIN_DONE,      /* an HTTP answer that is not a redirect */
    CHAIN_TRANSPORT, /* could not talk to <failed_url> */
    CHAIN_ERROR,     /* -SHED_CLIENT_E* in rc */
};

struct chain {
    enum chain_end end;
    int rc;
    struct hop last; /* final exchange (body owned) */
    char url[sizeof(((struct shed_client_response *)0)->final_url)]; /* last URL asked */
    unsigned hops;
    struct learned learned;
    bool lookup; /* ask the shed for a lookup (docs/reachability.md) */
};

/* A chain as new for one attempt, without a memset of its ~7 KB (the URL
 * and header buffers are read only after they are written): frees the
 * previous attempt's body. */
static void
chain_reset(struct chain *ch, bool lookup)
{
    hop_reset(&ch->last, 0);
    ch->end = CHAIN_DONE;
    ch->rc = 0;
    ch->url[0] = '\0';
    ch->hops = 0;
    memset(&ch->learned.ring, 0, sizeof(ch->learned.ring));
    ch->learned.have_pin = ch->learned.have_ring = false;
    ch->learned.bucket = 0;
    ch->learned.generation = ch->learned.ttl_s = 0;
    ch->learned.from[0] = '\0';
    ch->learned.code = 0;
    ch->lookup = lookup;
}

/* Follow one redirect chain from <start>. Hop 0 goes through <connect_to>
 * (a shed override) when given. */
/* Why the last transport failure of this thread failed (curl's text). */
static _Thread_local char last_cause[CLIENT_PINS_HOST_MAX + 2048 + 128];

static void
run_chain(struct shed_client *c, struct easy_node *en, const struct shed_client_request *req,
          const char *start, const char *connect_to, const char *shed, const char *via,
          const char *failed, bool to_shed, struct chain *ch)
{
    char visited[SHED_CLIENT_MAX_HOPS + 1][sizeof(ch->url)];
    unsigned nvisited = 0;

    copy_str(ch->url, sizeof(ch->url), start);
    for (;;) {
        bool first = ch->hops == 0;
        bool expect = to_shed && first && req->body_len > 1024;

        hop_reset(&ch->last, c->o.body_max);
        if (c->o.trace != NULL)
            fprintf(c->o.trace, "shedc: > %s %s%s%s%s\n", req->method, ch->url,
                    first && via ? " (" : "", first && via ? via : "", first && via ? ")" : "");
        exchange(c, en, req, ch->url, first ? connect_to : NULL, first ? failed : NULL, expect,
                 first && to_shed && ch->lookup, &ch->last);
        if (first && to_shed)
            atomic_fetch_add(&c->m_shed_asks, 1);
        if (ch->last.too_big) {
            ch->end = CHAIN_ERROR;
            ch->rc = -SHED_CLIENT_ETOOBIG;
            return;
        }
        if (ch->last.cc != CURLE_OK) {
            snprintf(last_cause, sizeof(last_cause), "%s: %s", ch->url,
                     curl_easy_strerror(ch->last.cc));
            if (c->o.trace != NULL)
                fprintf(c->o.trace, "shedc: ! %s: %s\n", ch->url, curl_easy_strerror(ch->last.cc));
            ch->end = CHAIN_TRANSPORT;
            return;
        }
        if (ch->last.overlong) {
            ch->end = CHAIN_ERROR;
            ch->rc = -SHED_CLIENT_EBADREPLY;
            return;
        }
        if (c->o.trace != NULL)
            fprintf(c->o.trace, "shedc: < %ld%s%s%s%s%s%s%s%s\n", ch->last.status,
                    ch->last.location[0] ? " Location: " : "", ch->last.location,
                    ch->last.sh_bucket[0] ? " Shed-Bucket: " : "", ch->last.sh_bucket,
                    ch->last.sh_ttl[0] ? " Shed-Pin-TTL: " : "", ch->last.sh_ttl,
                    ch->last.sh_ring[0] ? " Shed-Ring: " : "", ch->last.sh_ring);
        if (!is_redirect(ch->last.status)) {
            ch->end = CHAIN_DONE;
            return;
        }
        learn(&ch->last, ch->url, first ? shed : NULL, &ch->learned);
        if (ch->hops >= c->o.max_hops) {
            ch->end = CHAIN_ERROR;
            ch->rc = -SHED_CLIENT_EHOPS;
            return;
        }
        snprintf(visited[nvisited++], sizeof(visited[0]), "%s", ch->url);
        {
            char next[sizeof(ch->url)];

            if (ch->last.location[0] == '\0' ||
                resolve(ch->url, ch->last.location, next, sizeof(next)) != 0) {
                ch->end = CHAIN_ERROR;
                ch->rc = -SHED_CLIENT_EBADREDIRECT;
                return;
            }
            for (unsigned i = 0; i < nvisited; i++) {
                if (strcmp(visited[i], next) == 0) {
                    ch->end = CHAIN_ERROR;
                    ch->rc = -SHED_CLIENT_ELOOP;
                    return;
                }
            }
            memcpy(ch->url, next, sizeof(next));
        }
        ch->hops++;
        atomic_fetch_add(&c->m_redirects, 1);
    }
}

/* Move the round-robin past <idx> unless another thread already did. */
static void
next_shed(struct shed_client *c, unsigned idx)
{
    unsigned expect = idx;

    atomic_compare_exchange_strong(&c->shed_next, &expect, (idx + 1) % (unsigned)c->o.nsheds);
}

/* The request's routing facts: service, and for a message the bucket key. */
struct target {
    struct client_wire_url u;
    char service[CLIENT_WIRE_SERVICE_MAX + 1];
    bool is_service;
    bool is_message;
    char idbuf[3 * PROTO_BURROW_ID_MAX + 8];
    struct proto_burrow_path path;
    char key[PROTO_BURROW_KEY_MAX + 1]; /* the ring key, NUL-terminated */
    size_t keylen;
};

static int
classify(const char *url, struct target *t)
{
    int rc = client_wire_parse_url(url, &t->u);

    if (rc != 0)
        return rc;
    t->is_service = client_wire_service(&t->u, t->service, sizeof(t->service));
    t->is_message = false;
    if (!t->is_service)
        return 0;
    if (proto_burrow_parse_path(t->u.path.ptr, t->u.path.len, t->idbuf, sizeof(t->idbuf),
                                &t->path) != 0)
        return 0; /* not a Burrow path: the shed will say so */
    if (t->path.level == PROTO_BURROW_MESSAGE) {
        long k = proto_burrow_ring_key(t->path.queue.ptr, t->path.queue.len, t->path.message.ptr,
                                       t->path.message.len, t->key, sizeof(t->key) - 1);
        if (k < 0)
            return 0; /* the shed will say so */
        t->keylen = (size_t)k;
        t->key[t->keylen] = '\0';
        t->is_message = true;
    }
    return 0;
}

static size_t
scratch_target_size(void)
{
    return sizeof(struct target);
}

static size_t
scratch_chain_size(void)
{
    return sizeof(struct chain);
}

int
shed_client_url_bucket(const struct ring_config *cfg, const char *url, uint32_t *bucket)
{
    struct target *t = calloc(1, sizeof(*t));
    int rc;

    if (t == NULL)
        return -ENOMEM;
    rc = classify(url, t);
    if (rc == 0 && !t->is_message)
        rc = -ENOENT;
    if (rc == 0)
        *bucket = ring_bucket(cfg, t->path.account.ptr, t->path.account.len, t->key, t->keylen);
    free(t);
    return rc;
}

/* Build "origin + path + ?query" of <t> on <host> (an origin). */
static int
pinned_url(const struct target *t, const char *host, char *out, size_t outlen)
{
    size_t hl = strlen(host), pl = t->u.path.len, ql = t->u.query.len;

    if (hl + pl + (ql ? 1 + ql : 0) >= outlen)
        return -ERANGE;
    memcpy(out, host, hl);
    if (pl)
        memcpy(out + hl, t->u.path.ptr, pl);
    if (ql) {
        out[hl + pl] = '?';
        memcpy(out + hl + pl + 1, t->u.query.ptr, ql);
    }
    out[hl + pl + (ql ? 1 + ql : 0)] = '\0';
    return 0;
}

static void
finish(struct shed_client_response *resp, struct chain *ch)
{
    resp->status = ch->last.status;
    resp->body = ch->last.body;
    resp->body_len = ch->last.len;
    ch->last.body = NULL;
    if (resp->body == NULL) {
        resp->body = calloc(1, 1);
        resp->body_len = 0;
    }
    copy_str(resp->content_type, sizeof(resp->content_type), ch->last.ctype);
    copy_str(resp->final_url, sizeof(resp->final_url), ch->url);
    resp->hops = ch->hops;
    resp->link_next[0] = '\0';
    if (ch->last.link[0] != '\0') {
        struct client_wire_slice s;
        char ref[sizeof(resp->link_next)];

        if (client_wire_link_next(ch->last.link, strlen(ch->last.link), &s) == 0 &&
            s.len < sizeof(ref)) {
            memcpy(ref, s.ptr, s.len);
            ref[s.len] = '\0';
            if (resolve(ch->url, ref, resp->link_next, sizeof(resp->link_next)) != 0)
                resp->link_next[0] = '\0';
        }
    }
}

/* Every field of <resp> as memset() would leave it, without writing its
 * ~4.5 KB of strings (each is read only up to its NUL). */
static void
response_reset(struct shed_client_response *resp)
{
    resp->status = 0;
    resp->body = NULL;
    resp->body_len = 0;
    resp->content_type[0] = resp->final_url[0] = resp->link_next[0] = '\0';
    resp->hops = resp->attempts = 0;
    resp->pinned = resp->has_bucket = false;
    resp->bucket = 0;
}

int
shed_client_request(struct shed_client *c, const struct shed_client_request *req,
                    struct shed_client_response *resp)
{
    struct target *t = NULL;
    struct easy_node *en = NULL;
    struct chain *ch = NULL;
    char failed[CLIENT_WIRE_ORIGIN_MAX];
    char start[sizeof(ch->url)];
    char cto[2 * CLIENT_WIRE_ORIGIN_MAX];
    uint64_t retry_after_ms = 0;
    bool lookup = false, skip_backoff = false;
    int rc;

    failed[0] = '\0'; /* not "= \"\"": that zeroes all its bytes per request */
    response_reset(resp);
    atomic_fetch_add(&c->m_requests, 1);
    if (req->method == NULL || req->url == NULL)
        return -EINVAL;
    en = easy_get(c);
    if (en == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    t = en->t;
    ch = en->ch; /* zeroed per attempt below; its body is NULL between calls */
    rc = classify(req->url, t);
    if (rc != 0)
        goto out;
    rc = -SHED_CLIENT_ETRANSPORT;
    for (unsigned attempt = 0; attempt <= c->o.retries; attempt++) {
        struct ring_config rcfg;
        const char *connect_to = NULL;
        bool pinned = false;
        bool last = attempt == c->o.retries;
        unsigned shed_idx = 0;
        char host[CLIENT_WIRE_ORIGIN_MAX];
        char via[2 * CLIENT_WIRE_ORIGIN_MAX + 40];

        if (attempt > 0 && skip_backoff) {
            skip_backoff = false; /* a lookup is no failure: at once */
        } else if (attempt > 0) {
            uint64_t d = client_wire_backoff_ms(attempt, c->o.backoff_base_ms, c->o.backoff_max_ms,
                                                rnd64(c));

            atomic_fetch_add(&c->m_retries, 1);
            sleep_ms(d > retry_after_ms ? d : retry_after_ms);
            retry_after_ms = 0;
        }
        chain_reset(ch, lookup);
        resp->has_bucket = false;
        if (!lookup && t->is_message) {
            /* The bucket and the pin holding it in one lookup (one shared
             * lock, only the host copied out). */
            int pr =
                client_pins_route(c->pins, t->service, t->path.account.ptr, t->path.account.len,
                                  t->key, t->keylen, c->o.no_pin ? 0 : shed_client_now_ms(c),
                                  &resp->bucket, c->o.no_pin ? NULL : host, sizeof(host));

            resp->has_bucket = pr == 0 || pr == -ENOENT;
            if (pr == 0 && pinned_url(t, host, start, sizeof(start)) == 0)
                pinned = true;
        }
        if (!pinned) {
            copy_str(start, sizeof(start), req->url);
            if (t->is_service && c->o.nsheds > 0) {
                shed_idx = atomic_load(&c->shed_next) % (unsigned)c->o.nsheds;
                snprintf(cto, sizeof(cto), "%.*s:%u:%s", (int)t->u.host.len, t->u.host.ptr,
                         (unsigned)t->u.port, c->o.sheds[shed_idx]);
                connect_to = cto;
            }
        } else {
            atomic_fetch_add(&c->m_pinned, 1);
        }
        /* The note is for the trace only: no formatting on the pinned path
         * when nobody reads it. */
        if (c->o.trace == NULL)
            via[0] = '\0';
        else if (pinned)
            snprintf(via, sizeof(via), "pinned bucket %u", resp->bucket);
        else if (connect_to != NULL)
            snprintf(via, sizeof(via), "shed %s%s%s", c->o.sheds[shed_idx],
                     failed[0] ? ", Shed-Failed: " : "", failed);
        else
            via[0] = '\0';
        run_chain(c, en, req, start, connect_to, connect_to ? c->o.sheds[shed_idx] : NULL,
                  via[0] ? via : NULL, t->is_service && !pinned ? failed : NULL,
                  t->is_service && !pinned, ch);
        resp->attempts = attempt + 1;
        resp->pinned = pinned && ch->hops == 0;
        if (ch->end == CHAIN_ERROR) {
            rc = ch->rc;
            goto out;
        }
        if (t->is_service && !pinned && !(ch->end == CHAIN_TRANSPORT && ch->hops == 0))
            failed[0] = '\0'; /* the shed answered, so it has heard about it */
        if (ch->end == CHAIN_TRANSPORT) {
            struct client_wire_url fu;

            atomic_fetch_add(&c->m_failures, 1);
            rc = -SHED_CLIENT_ETRANSPORT;
            snprintf(resp->final_url, sizeof(resp->final_url), "%s", ch->url);
            if (ch->hops == 0 && connect_to != NULL) {
                /* The shed itself is unreachable: try the next one. */
                next_shed(c, shed_idx);
                continue;
            }
            if (client_wire_parse_url(ch->url, &fu) == 0 &&
                client_wire_origin(&fu, host, sizeof(host)) > 0) {
                size_t n = client_pins_drop_host(c->pins, host);

                atomic_fetch_add(&c->m_pins_dropped, n);
                if (!(ch->hops == 0 && t->is_service && !pinned))
                    (void)client_wire_hostport(&fu, failed, sizeof(failed));
            }
            continue;
        }
        /* CHAIN_DONE: an HTTP answer. */
        if (ch->last.status >= 500 || ch->last.status == 421) {
            bool from_shed = ch->hops == 0 && !pinned && t->is_service;
            /* A backend is a pinned host or the end of a redirect that named
             * a bucket; anything else that fails (a master, an aggregator)
             * is a shed, never reported as a failed backend. */
            bool at_backend = pinned || (ch->hops > 0 && ch->learned.have_pin);
            bool idempotent = t->is_message || strcmp(req->method, "GET") == 0 ||
                              strcmp(req->method, "HEAD") == 0;

            atomic_fetch_add(&c->m_failures, 1);
            if (pinned && resp->has_bucket &&
                client_pins_drop(c->pins, t->service, resp->bucket) == 0)
                atomic_fetch_add(&c->m_pins_dropped, 1);
            if (from_shed && c->o.nsheds > 0)
                next_shed(c, shed_idx);
            if (!at_backend && ch->last.retry_after[0] != '\0') {
                uint64_t ra;

                /* A shed's or master's Retry-After (seconds) stretches the
                 * next wait, up to RETRY_AFTER_MAX_S, plus up to half of it
                 * again so that clients turned away together spread out. */
                if (client_wire_parse_uint(ch->last.retry_after, strlen(ch->last.retry_after),
                                           RETRY_AFTER_MAX_S, &ra) == 0)
                    retry_after_ms = ra * 1000 + (ra > 0 ? rnd64(c) % (ra * 500) : 0);
            }
            if (at_backend && ch->last.status != 421) {
                struct client_wire_url fu;

                if (client_wire_parse_url(ch->url, &fu) == 0)
                    (void)client_wire_hostport(&fu, failed, sizeof(failed));
            }
            /* Re-send after a 5xx only what may run twice, or what a shed
             * turned away before anything ran (hop 0). */
            if (!last && t->is_service &&
                (from_shed || ch->last.status == 421 || (idempotent && !req->no_retry)))
                continue;
        } else if (ch->last.status == 404 && t->is_message && t->is_service && !lookup &&
                   (pinned || ch->hops > 0) && strcmp(req->method, "PUT") != 0 && !last) {
            /* Not where the pin or the shed's redirect said: the message
             * may live off its owner (a membership change the shed routed
             * around). Once more through a shed, asking for a lookup. */
            lookup = true;
            if (pinned && resp->has_bucket &&
                client_pins_drop(c->pins, t->service, resp->bucket) == 0)
                atomic_fetch_add(&c->m_pins_dropped, 1);
            atomic_fetch_add(&c->m_lookups, 1);
            skip_backoff = true;
            continue;
        } else if (t->is_message && ch->learned.have_pin && ch->hops > 0 && !c->o.no_pin) {
            /* Success through a redirect: pin bucket -> final host. */
            struct client_wire_url fu;
            char why[CLIENT_PINS_WHY_MAX];

            if (ch->learned.have_ring)
                (void)client_pins_set_ring(c->pins, t->service, &ch->learned.ring);
            if (client_wire_parse_url(ch->url, &fu) == 0 &&
                client_wire_origin(&fu, host, sizeof(host)) > 0) {
                /* Truncation is fine: it is a note for `shedc stat`. */
                if (snprintf(why, sizeof(why), "%ld from %s for %s %.*s/%.*s", ch->learned.code,
                             ch->learned.from, req->method, (int)t->path.account.len,
                             t->path.account.ptr, (int)(t->keylen > 100 ? 100 : t->keylen),
                             t->key) < 0)
                    why[0] = '\0';
                if (client_pins_set(c->pins, t->service, ch->learned.bucket, host,
                                    ch->learned.generation, ch->learned.ttl_s * 1000,
                                    shed_client_now_ms(c), why) == 0)
                    atomic_fetch_add(&c->m_pins_set, 1);
            }
            if (c->o.trace != NULL && client_pins_get_ring(c->pins, t->service, &rcfg) == 0) {
                uint32_t mine =
                    ring_bucket(&rcfg, t->path.account.ptr, t->path.account.len, t->key, t->keylen);
                if (mine != ch->learned.bucket)
                    fprintf(c->o.trace, "shedc: ! bucket mismatch: computed %u, shed said %u\n",
                            mine, ch->learned.bucket);
            }
        }
        finish(resp, ch);
        rc = 0;
        goto out;
    }
out:
    if (ch != NULL) {
        free(ch->last.body);
        ch->last.body = NULL;
    }
    if (resp->body == NULL) {
        resp->body = calloc(1, 1);
        resp->body_len = 0;
    }
    easy_put(c, en);
    return rc;
}

void
shed_client_response_free(struct shed_client_response *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

void
shed_client_metrics(struct shed_client *c, struct shed_client_metrics *m)
{
    m->requests = atomic_load(&c->m_requests);
    m->http = atomic_load(&c->m_http);
    m->redirects = atomic_load(&c->m_redirects);
    m->pinned = atomic_load(&c->m_pinned);
    m->shed_asks = atomic_load(&c->m_shed_asks);
    m->failures = atomic_load(&c->m_failures);
    m->retries = atomic_load(&c->m_retries);
    m->pins_set = atomic_load(&c->m_pins_set);
    m->pins_dropped = atomic_load(&c->m_pins_dropped);
    m->lookups = atomic_load(&c->m_lookups);
}

size_t
shed_client_pins(struct shed_client *c, struct client_pin *out, size_t max)
{
    return client_pins_list(c->pins, shed_client_now_ms(c), out, max);
}

const char *
shed_client_last_cause(void)
{
    return last_cause;
}

const char *
shed_client_strerror(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:
        return "success";
    case SHED_CLIENT_ETRANSPORT:
        return "could not reach the server (after retries)";
    case SHED_CLIENT_EHOPS:
        return "too many redirects";
    case SHED_CLIENT_ELOOP:
        return "redirect loop";
    case SHED_CLIENT_EBADREDIRECT:
        return "redirect without a usable Location";
    case SHED_CLIENT_ETOOBIG:
        return "response body too large";
    case SHED_CLIENT_ENOTFOUND:
        return "not found";
    case SHED_CLIENT_EREFUSED:
        return "request refused by the server";
    case SHED_CLIENT_ESERVER:
        return "server error";
    case SHED_CLIENT_EBADREPLY:
        return "unexpected reply from the server";
    default:
        break;
    }
    if (err >= 2000 && err < 3000)
        return proto_strerror(-err);
    if (err >= 1000 && err < 2000)
        return ring_strerror(-err);
    return strerror(err);
}
