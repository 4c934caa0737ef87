/* SPDX-License-Identifier: ISC */
/*
 * shed/etcd_gateway: etcd's HTTP/JSON gateway over libcurl. Requests are
 * short blocking POSTs on the etcd thread's handle (etcd_call(), which also
 * tracks whether etcd answers and moves to the next endpoint when not) or on
 * the hints reader's own (etcd_hcall()); their bodies are JSON with base64
 * keys and values. The watch is a streaming POST in the thread's curl multi:
 * its lines go to etcd_watch_message() (etcd_reader.c).
 */
#include "shed/etcd_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "shed/answer.h"

void
etcd_wake(struct shed_etcd *E)
{
    if (E != NULL && E->multi != NULL)
        curl_multi_wakeup(E->multi);
}

/* ---- requests ---- */

struct buf {
    char *p;
    size_t len, cap, max;
};

static size_t
on_body(char *ptr, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    size_t add = size * n;
    return buf_append(&b->p, &b->len, &b->cap, b->max - 1, ptr, add) == 0 ? add : 0;
}

void
etcd_set_up(struct shed_etcd *E, bool up, const char *why)
{
    uint64_t now = shed_now_ms();
    bool was = atomic_exchange(&E->up, up);
    if (was && !up) {
        pthread_mutex_lock(&E->mu);
        size_t queued = E->ndirty;
        pthread_mutex_unlock(&E->mu);
        E->down_since = now;
        log_warnx("etcd: %s unreachable (%s): routing on the last view (%zu keys), "
                  "changes wait (%zu queued)",
                  E->cfgv.membership.endpoints[E->ep], why, etcd_keys_held(E), queued);
    } else if (!was && up) {
        if (E->down_since != 0)
            log_info("etcd: %s reachable again after %" PRIu64 "ms: resyncing",
                     E->cfgv.membership.endpoints[E->ep], now - E->down_since);
        else
            log_info("etcd: connected to %s", E->cfgv.membership.endpoints[E->ep]);
    }
    if (!up) {
        E->retry_at = now + RETRY_MS;
        E->ep = (E->ep + 1) % E->cfgv.membership.nendpoints; /* the next endpoint */
    }
}

/* POST <body> to <endpoint><path> on <h>: the HTTP status (0 when none
 * came: *<cc> says why), the answer in <b>. */
static long
post(CURL *h, struct curl_slist *hdrs, const char *endpoint, const char *path, const char *body,
     uint64_t timeout_ms, struct buf *b, CURLcode *cc)
{
    char url[SHED_URL_MAX + 64];
    long code = 0;

    snprintf(url, sizeof(url), "%s%s", endpoint, path);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    *cc = curl_easy_perform(h);
    if (*cc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

/* POST <body> to <path>; the parsed JSON answer in *<out> (owned). 0,
 * -EIO (etcd unreachable: marked down), -EPROTO (an error answer). */
int
etcd_call(struct shed_etcd *E, const char *path, const char *body, json_t **out)
{
    struct buf b = {.max = REPLY_MAX};
    CURLcode cc;
    int rc = 0;

    *out = NULL;
    long code = post(E->req, E->hdrs, E->cfgv.membership.endpoints[E->ep], path, body,
                     E->cfgv.membership.timeout_ms, &b, &cc);
    if (cc != CURLE_OK) {
        etcd_set_up(E, false, curl_easy_strerror(cc));
        rc = -EIO;
        goto out;
    }
    *out = b.p != NULL ? json_loadb(b.p, b.len, 0, NULL) : NULL;
    if (code >= 500 && code != 501) {
        /* No leader, or the member is cut off: try another endpoint. */
        etcd_set_up(E, false, "no leader");
        rc = -EIO;
    } else if (code != 200 || *out == NULL) {
        /* At most one line a second: a put refused for a lost lease comes
         * once per key until the next keepalive notices. */
        uint64_t now = shed_now_ms();
        if (now - E->last_warn >= 1000) {
            E->last_warn = now;
            log_warnx("etcd: %s: HTTP %ld: %.200s", path, code, b.p != NULL ? b.p : "");
        }
        rc = -EPROTO;
    } else {
        etcd_set_up(E, true, NULL);
    }
out:
    if (rc < 0) {
        json_decref(*out);
        *out = NULL;
    }
    free(b.p);
    return rc;
}

/* A gateway int64 (a JSON string, sometimes a number), 0 when absent. */
int64_t
etcd_i64(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

char *
etcd_b64dup(const char *s, size_t len)
{
    size_t cap = (len + 2) / 3 * 4 + 1;
    char *out = malloc(cap);
    if (out != NULL && shed_etcd_b64_encode(s, len, out, cap) < 0) {
        free(out);
        out = NULL;
    }
    return out;
}

/* JSON {"key": b64(<key>) [, "range_end": b64(<end>)] [, <extra>]} */
char *
etcd_key_body_end(const char *key, size_t klen, const char *end, const char *extra)
{
    char *k = etcd_b64dup(key, klen), *e = NULL, *out = NULL;
    if (k == NULL)
        return NULL;
    if (end != NULL && (e = etcd_b64dup(end, strlen(end))) == NULL)
        goto out;
    size_t n = strlen(k) + (e ? strlen(e) : 0) + (extra ? strlen(extra) : 0) + 64;
    out = malloc(n);
    if (out != NULL)
        snprintf(out, n, "{\"key\":\"%s\"%s%s%s%s%s}", k, e ? ",\"range_end\":\"" : "", e ? e : "",
                 e ? "\"" : "", extra ? "," : "", extra ? extra : "");
out:
    free(k);
    free(e);
    return out;
}

/* The same; <range>: every key under <key> (which ends with '/'). */
char *
etcd_key_body(const char *key, bool range, const char *extra)
{
    char end[SHED_ETCD_KEY_MAX];
    if (!range)
        return etcd_key_body_end(key, strlen(key), NULL, extra);
    snprintf(end, sizeof(end), "%s", key);
    end[strlen(end) - 1]++; /* the base ends with '/': "0" is just past it */
    return etcd_key_body_end(key, strlen(key), end, extra);
}

static char *
read_body(const struct shed_etcd *E, const char *extra)
{
    char end[SHED_ETCD_KEY_MAX];
    etcd_read_end(E, end);
    return etcd_key_body_end(E->base, strlen(E->base), end, extra);
}

static size_t
on_watch(char *ptr, size_t size, size_t n, void *arg)
{
    struct shed_etcd *E = arg;
    size_t add = size * n;
    if (E->watch_abort || E->wlen + add + 1 > WATCH_BUF_MAX)
        return 0;
    if (E->wlen + add + 1 > E->wcap) {
        size_t nc = E->wcap ? E->wcap : 16384;
        while (nc < E->wlen + add + 1)
            nc *= 2;
        char *np = realloc(E->wbuf, nc);
        if (np == NULL)
            return 0;
        E->wbuf = np;
        E->wcap = nc;
    }
    memcpy(E->wbuf + E->wlen, ptr, add);
    E->wlen += add;
    /* The gateway sends one JSON object per line. */
    char *start = E->wbuf, *nl;
    while ((nl = memchr(start, '\n', (size_t)(E->wbuf + E->wlen - start))) != NULL) {
        if (atomic_load(&E->stop))
            return 0; /* stopping: the rest is not for us */
        if (nl > start)
            etcd_watch_message(E, start, (size_t)(nl - start));
        start = nl + 1;
        if (E->watch_abort)
            return 0;
    }
    E->wlen -= (size_t)(start - E->wbuf);
    memmove(E->wbuf, start, E->wlen);
    return add;
}

void
etcd_watch_start(struct shed_etcd *E)
{
    char extra[64];
    char *inner;
    snprintf(extra, sizeof(extra), "\"start_revision\":\"%" PRIu64 "\"", E->rev + 1);
    inner = read_body(E, extra);
    if (inner == NULL)
        return;
    free(E->wbody);
    E->wbody = malloc(strlen(inner) + 32);
    if (E->wbody == NULL) {
        free(inner);
        return;
    }
    sprintf(E->wbody, "{\"create_request\":%s}", inner);
    free(inner);

    char url[SHED_URL_MAX + 64];
    snprintf(url, sizeof(url), "%s/v3/watch", E->cfgv.membership.endpoints[E->ep]);
    curl_easy_reset(E->watch);
    curl_easy_setopt(E->watch, CURLOPT_URL, url);
    curl_easy_setopt(E->watch, CURLOPT_POSTFIELDS, E->wbody);
    curl_easy_setopt(E->watch, CURLOPT_HTTPHEADER, E->hdrs);
    curl_easy_setopt(E->watch, CURLOPT_WRITEFUNCTION, on_watch);
    curl_easy_setopt(E->watch, CURLOPT_WRITEDATA, E);
    curl_easy_setopt(E->watch, CURLOPT_CONNECTTIMEOUT_MS, (long)E->cfgv.membership.timeout_ms);
    curl_easy_setopt(E->watch, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(E->watch, CURLOPT_TCP_KEEPALIVE, 1L);
    E->wlen = 0;
    E->watch_abort = false;
    if (curl_multi_add_handle(E->multi, E->watch) == CURLM_OK) {
        E->watching = true;
        log_debug("etcd: watching %s from revision %" PRIu64, E->base, E->rev + 1);
    }
}

void
etcd_watch_stop(struct shed_etcd *E)
{
    if (!E->watching)
        return;
    curl_multi_remove_handle(E->multi, E->watch);
    E->watching = false;
}

void
etcd_watch_poll(struct shed_etcd *E)
{
    int running, left;
    CURLMsg *msg;
    curl_multi_perform(E->multi, &running);
    etcd_apply(E); /* what the messages of this turn changed */
    while ((msg = curl_multi_info_read(E->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE || msg->easy_handle != E->watch)
            continue;
        CURLcode cc = msg->data.result;
        etcd_watch_stop(E);
        if (atomic_load(&E->stop))
            break; /* we cut it: stopping or reloading */
        if (!E->watch_abort)
            etcd_set_up(E, false, cc == CURLE_OK ? "watch closed" : curl_easy_strerror(cc));
        else
            E->retry_at = shed_now_ms() + (E->need_reload ? 0 : RETRY_MS);
        atomic_fetch_add(&E->resumes, 1);
        break;
    }
}

/* A request of the hints reader (another thread than the etcd thread's):
 * every endpoint in turn, the current one first. */
int
etcd_hcall(struct shed_etcd *E, const char *path, const char *body, json_t **out)
{
    int rc = -EIO;
    *out = NULL;
    pthread_mutex_lock(&E->hmu);
    size_t n = E->cfgv.membership.nendpoints, ep = atomic_load(&E->ep);
    for (size_t i = 0; i < n && rc == -EIO; i++) {
        struct buf b = {.max = REPLY_MAX};
        CURLcode cc;
        long code = post(E->hreq, E->hdrs, E->cfgv.membership.endpoints[(ep + i) % n], path, body,
                         E->cfgv.membership.timeout_ms, &b, &cc);
        if (cc == CURLE_OK && code == 200 && b.p != NULL &&
            (*out = json_loadb(b.p, b.len, 0, NULL)) != NULL)
            rc = 0;
        else if (cc == CURLE_OK && code < 500)
            rc = -EPROTO;
        free(b.p);
    }
    pthread_mutex_unlock(&E->hmu);
    return rc;
}
