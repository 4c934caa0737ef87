/* SPDX-License-Identifier: ISC */
/*
 * shed/status: the status object and the page rendered from it. The page is
 * built from the JSON object only, so the two never disagree and the
 * renderer can be tested with a hand-made object. Every string that came
 * from outside (member ids, URLs, zones, event texts, peer URLs) goes
 * through shed_status_escape(); numbers are printed by us.
 */
#include "shed/status.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/version.h"
#include "shed/agg.h"
#include "shed/cluster.h"
#include "shed/etcd.h"
#include "shed/events.h"
#include "shed/handoff.h"
#include "shed/master.h"
#include "shed/metrics.h"
#include "shed/sync.h"

void
shed_status_started(struct shed_daemon *ctx)
{
    ctx->started_mono_ms = clock_mono_ms();
    ctx->started_real_ms = clock_real_ns() / 1000000u;
}

uint64_t
shed_status_uptime_s(const struct shed_daemon *ctx)
{
    uint64_t t0 = ctx != NULL ? ctx->started_mono_ms : 0, now = clock_mono_ms();
    return t0 != 0 && now > t0 ? (now - t0) / 1000 : 0;
}

/* "2025-06-01T12:00:00Z" for <real_ms> since the epoch. */
static void
iso_time(uint64_t real_ms, char *buf, size_t len)
{
    time_t secs = (time_t)(real_ms / 1000);
    struct tm tm;

    gmtime_r(&secs, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The counters of a Prometheus text (one "name value" per line, no labels)
 * as {name: value}: how the aggregator's and the handoff's counters reach
 * the page without a second accessor for each. */
static json_t *
prom_object(const char *text, const char *prefix)
{
    json_t *o = json_object();
    size_t plen = strlen(prefix);

    for (const char *p = text; o != NULL && *p != '\0';) {
        const char *eol = strchr(p, '\n');
        size_t n = eol != NULL ? (size_t)(eol - p) : strlen(p);
        char line[256];

        if (n < sizeof(line) && p[0] != '#' && strncmp(p, prefix, plen) == 0) {
            memcpy(line, p, n);
            line[n] = '\0';
            char *sp = strchr(line, ' ');
            if (sp != NULL && strchr(line, '{') == NULL) {
                *sp = '\0';
                double v = strtod(sp + 1, NULL);
                json_object_set_new(o, line + plen,
                                    v == (double)(json_int_t)v && v >= 0 && v < 9e15
                                        ? json_integer((json_int_t)v)
                                        : json_real(v));
            }
        }
        p += n + (eol != NULL);
    }
    return o;
}

static json_t *
sync_json(struct shed_daemon *ctx, uint64_t now_ms)
{
    struct shed_sync *s = shed_cluster_sync(ctx != NULL ? ctx->cluster : NULL);
    static const size_t max = SHED_SYNC_MAX_TARGETS;
    struct shed_sync_target_info *t;
    uint64_t seq = ctx != NULL && ctx->reg != NULL ? registry_seq(ctx->reg) : 0;
    json_t *o = json_object(), *arr = json_array();

    if (o == NULL || arr == NULL) {
        json_decref(o);
        json_decref(arr);
        return NULL;
    }
    json_object_set_new(o, "running", json_boolean(s != NULL));
    json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    json_object_set_new(o, "targets", arr);
    if (s == NULL || (t = calloc(max, sizeof(*t))) == NULL)
        return o;
    size_t n = shed_sync_targets(s, t, max);
    for (size_t i = 0; i < n && i < max; i++) {
        json_t *e = json_pack("{s:s, s:s, s:b, s:b, s:I, s:I, s:I, s:s}", "url", t[i].base, "kind",
                              t[i].master ? "master" : "peer", "learned", t[i].learned, "need_full",
                              t[i].need_full, "acked", (json_int_t)t[i].acked, "behind",
                              (json_int_t)(seq > t[i].acked ? seq - t[i].acked : 0), "failures",
                              (json_int_t)t[i].failures, "error", t[i].error);
        if (e == NULL)
            continue;
        json_object_set_new(
            e, "last_ack_ms_ago",
            t[i].last_ok_ms != 0
                ? json_integer(
                      (json_int_t)(now_ms > t[i].last_ok_ms ? now_ms - t[i].last_ok_ms : 0))
                : json_null());
        json_array_append_new(arr, e);
    }
    free(t);
    return o;
}

json_t *
shed_status_json(struct shed_daemon *ctx, const struct shed_config *cfg, uint64_t now_ms)
{
    json_t *root = registry_status(ctx->reg, now_ms);
    json_t *roles = json_array(), *hb = json_object();
    char started[32] = "", buf[4096];

    if (root == NULL || roles == NULL || hb == NULL) {
        json_decref(root);
        json_decref(roles);
        json_decref(hb);
        return NULL;
    }
    for (unsigned bit = 1; bit <= SHED_ROLE_MASTER; bit <<= 1)
        if (cfg->roles & bit)
            json_array_append_new(roles, json_string(shed_role_name(bit)));
    if (ctx != NULL && ctx->started_real_ms != 0)
        iso_time(ctx->started_real_ms, started, sizeof(started));
    json_object_set_new(root, "cell", json_string(cfg->cell));
    json_object_set_new(root, "roles", roles);
    json_object_set_new(root, "version", json_string(SHED_VERSION));
    json_object_set_new(root, "uptime_s", json_integer((json_int_t)shed_status_uptime_s(ctx)));
    json_object_set_new(root, "started", json_string(started));
    json_object_set_new(root, "sync", sync_json(ctx, now_ms));
    /* membership store etcd (docs/etcd.md) */
    if (shed_etcd_stats(shed_cluster_etcd(ctx != NULL ? ctx->cluster : NULL), buf, sizeof(buf)) > 0)
        json_object_set_new(root, "etcd", prom_object(buf, "shed_etcd_"));
    struct shed_master *m = shed_cluster_master(ctx != NULL ? ctx->cluster : NULL);
    if (m != NULL)
        json_object_set_new(root, "master", shed_master_status(m, now_ms));
    json_object_set_new(root, "events", shed_events_json(ctx != NULL ? ctx->events : NULL));
    for (int r = 0; r < SHED_HB_COUNT && ctx != NULL && ctx->metrics != NULL; r++)
        json_object_set_new(hb, shed_metrics_hb_name((enum shed_hb_result)r),
                            json_integer((json_int_t)shed_metrics_heartbeats(ctx->metrics, r)));
    json_object_set_new(root, "heartbeats", hb);
    if (cfg->roles & SHED_ROLE_AGGREGATOR) {
        if (ctx != NULL && ctx->agg != NULL) {
            struct shed_agg_stats s;
            shed_agg_stats(ctx->agg, &s);
            if (shed_agg_stats_text(&s, buf, sizeof(buf)) > 0)
                json_object_set_new(root, "aggregator", prom_object(buf, "shed_agg_"));
        }
        if (ctx != NULL && ctx->handoff != NULL) {
            struct shed_handoff_stats s;
            shed_handoff_stats(ctx->handoff, &s);
            if (shed_handoff_stats_text(&s, buf, sizeof(buf)) > 0)
                json_object_set_new(root, "handoff", prom_object(buf, "shed_handoff_"));
        }
    }
    return root;
}

/* ---- the page ---- */

size_t
shed_status_escape(char *dst, size_t cap, const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        const char *rep = NULL;
        char one[2] = {*s, '\0'};

        switch (*s) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n')
                rep = "\xef\xbf\xbd"; /* U+FFFD */
            else
                rep = one;
        }
        for (const char *r = rep; *r != '\0'; r++, n++)
            if (n + 1 < cap)
                dst[n] = *r;
    }
    if (cap > 0)
        dst[n < cap ? n : cap - 1] = '\0';
    return n;
}

struct page {
    char *p;
    size_t len, cap;
    int err; /* 0, -ENOMEM or -EFBIG */
};

static void
grow(struct page *b, size_t need)
{
    size_t ncap = b->cap;

    if (b->err != 0)
        return;
    if (b->len + need + 1 > SHED_STATUS_HTML_MAX) {
        b->err = -EFBIG;
        return;
    }
    while (ncap < b->len + need + 1)
        ncap *= 2;
    if (ncap > SHED_STATUS_HTML_MAX)
        ncap = SHED_STATUS_HTML_MAX;
    if (ncap == b->cap)
        return;
    char *np = realloc(b->p, ncap);
    if (np == NULL) {
        b->err = -ENOMEM;
        return;
    }
    b->p = np;
    b->cap = ncap;
}

static void out(struct page *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append trusted text (our markup and numbers). */
static void
out(struct page *b, const char *fmt, ...)
{
    va_list ap;

    for (int tries = 0; tries < 2 && b->err == 0; tries++) {
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->err = -ENOMEM;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        grow(b, (size_t)n);
    }
}

/* Append <s> escaped. */
static void
esc(struct page *b, const char *s)
{
    if (b->err != 0)
        return;
    size_t need = shed_status_escape(b->p + b->len, b->cap - b->len, s);
    if (need >= b->cap - b->len) {
        grow(b, need);
        if (b->err != 0)
            return;
        shed_status_escape(b->p + b->len, b->cap - b->len, s);
    }
    b->len += need;
}

static const char *
str(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v != NULL ? v : "";
}

static long long
num(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long long)json_integer_value(v)
           : json_is_real(v)  ? (long long)json_real_value(v)
                              : 0;
}

/* "3d 4h", "2h 5m", "4m 10s", "12s". */
static void
span(char *buf, size_t len, unsigned long long s)
{
    if (s >= 86400)
        snprintf(buf, len, "%llud %lluh", s / 86400, s % 86400 / 3600);
    else if (s >= 3600)
        snprintf(buf, len, "%lluh %llum", s / 3600, s % 3600 / 60);
    else if (s >= 60)
        snprintf(buf, len, "%llum %llus", s / 60, s % 60);
    else
        snprintf(buf, len, "%llus", s);
}

/* An age in ms as "0.4 s ago" / "3m 2s ago". */
static void
ago(char *buf, size_t len, long long ms)
{
    if (ms < 0) {
        snprintf(buf, len, "never");
    } else if (ms < 60000) {
        snprintf(buf, len, "%.1f s ago", (double)ms / 1000.0);
    } else {
        char s[32];
        span(s, sizeof(s), (unsigned long long)ms / 1000);
        snprintf(buf, len, "%s ago", s);
    }
}

static const char style[] =
    "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#1d2330;"
    "background:#fafbfc}"
    "h1{font-size:1.6em;margin:0 0 .2em}h1 small{font-weight:normal;color:#555;font-size:.6em}"
    "h2{font-size:1.15em;margin:1.6em 0 .4em;border-bottom:1px solid #d8dde6;padding-bottom:.2em}"
    "h3{font-size:1em;margin:1em 0 .3em}h3 span{font-weight:normal;color:#555}"
    ".meta{color:#555;margin:0 0 1em}.meta b{color:#1d2330}"
    "table{border-collapse:collapse;margin:.3em 0 .8em;background:#fff}"
    "th,td{border:1px solid #d8dde6;padding:.25em .6em;text-align:left;vertical-align:top}"
    "th{background:#eef1f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "code{font:12px ui-monospace,Menlo,Consolas,monospace}"
    ".st{display:inline-block;padding:0 .5em;border-radius:.6em;font-size:.9em;color:#fff}"
    ".up{background:#2e7d32}.joining{background:#1565c0}.draining{background:#ef6c00}"
    ".suspect{background:#ad1457}.down{background:#616161}.bad{color:#b71c1c;font-weight:600}"
    ".none{color:#777;font-style:italic}.kv td:first-child{color:#555}";

static void
state_badge(struct page *b, const char *state)
{
    static const char *const known[] = {"up", "joining", "draining", "suspect", "down"};
    const char *cls = "down";

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(state, known[i]) == 0)
            cls = known[i];
    out(b, "<span class=\"st %s\">", cls);
    esc(b, state);
    out(b, "</span>");
}

static void
page_services(struct page *b, const json_t *st)
{
    const json_t *svcs = json_object_get(st, "services"), *svc;
    size_t i;

    out(b, "<h2>Services and members</h2>\n");
    if (json_array_size(svcs) == 0)
        out(b, "<p class=\"none\">no services</p>\n");
    json_array_foreach(svcs, i, svc)
    {
        const json_t *members = json_object_get(svc, "members"), *m;
        size_t k, counts[5] = {0};
        static const char *const states[5] = {"up", "joining", "draining", "suspect", "down"};

        json_array_foreach(members, k, m)
        {
            for (size_t s = 0; s < 5; s++)
                if (strcmp(str(m, "state"), states[s]) == 0)
                    counts[s]++;
        }
        out(b, "<h3>");
        esc(b, str(svc, "name"));
        out(b, " <span>(");
        esc(b, str(svc, "kind"));
        out(b, ") ring generation <b>%lld</b>, digest <code>", num(svc, "generation"));
        esc(b, str(svc, "digest"));
        out(b, "</code>");
        if (num(svc, "prev_generation") != 0)
            out(b, ", previous generation %lld still drained", num(svc, "prev_generation"));
        out(b,
            "; %zu member%s: %zu up, %zu joining, %zu draining, %zu suspect, %zu "
            "down</span></h3>\n",
            json_array_size(members), json_array_size(members) == 1 ? "" : "s", counts[0],
            counts[1], counts[2], counts[3], counts[4]);
        if (json_array_size(members) == 0) {
            out(b, "<p class=\"none\">no members</p>\n");
            continue;
        }
        out(b, "<table><tr><th>id</th><th>state</th><th>url</th><th>zone</th><th>weight</th>"
               "<th>in ring</th><th>incarnation</th><th>last heard</th></tr>\n");
        json_array_foreach(members, k, m)
        {
            char when[48];

            if (k == SHED_STATUS_MEMBERS_MAX) {
                out(b,
                    "<tr><td colspan=\"8\" class=\"none\">%zu more not shown (see the JSON)"
                    "</td></tr>\n",
                    json_array_size(members) - k);
                break;
            }
            ago(when, sizeof(when), num(m, "age_ms"));
            out(b, "<tr><td><code>");
            esc(b, str(m, "id"));
            out(b, "</code></td><td>");
            state_badge(b, str(m, "state"));
            out(b, "</td><td><code>");
            esc(b, str(m, "url"));
            out(b, "</code></td><td>");
            esc(b, str(m, "zone"));
            out(b,
                "</td><td class=\"n\">%lld</td><td>%s</td><td class=\"n\">%lld</td>"
                "<td>%s</td></tr>\n",
                num(m, "weight"), json_is_true(json_object_get(m, "in_ring")) ? "yes" : "no",
                num(m, "incarnation"), when);
        }
        out(b, "</table>\n");
    }
}

/* Membership on etcd: is it reachable, how far the watch got. */
static void
page_etcd(struct page *b, const json_t *st)
{
    const json_t *e = json_object_get(st, "etcd");

    if (!json_is_object(e))
        return;
    out(b, "<h2>Membership on etcd</h2>\n<p>");
    if (num(e, "up") == 1)
        out(b, "etcd <b>answers</b>");
    else
        out(b, "<span class=\"bad\">etcd is unreachable: routing on the last view</span>");
    out(b,
        " &middot; revision <b>%lld</b> &middot; <b>%lld</b> keys of the cell &middot; "
        "<b>%lld</b> members written by this shed, <span class=\"%s\">%lld changes waiting"
        "</span> &middot; %lld watch restarts, %lld full reloads (docs/etcd.md)</p>\n",
        num(e, "revision"), num(e, "keys"), num(e, "written_members"),
        num(e, "queued") > 0 ? "bad" : "n", num(e, "queued"), num(e, "watch_restarts_total"),
        num(e, "reloads_total"));
}

static void
page_sync(struct page *b, const json_t *st)
{
    const json_t *sync = json_object_get(st, "sync");
    const json_t *targets = json_object_get(sync, "targets"), *t;
    size_t i;

    out(b, "<h2>Peers and masters</h2>\n");
    if (!json_is_true(json_object_get(sync, "running")) || json_array_size(targets) == 0) {
        out(b, "<p class=\"none\">no sync targets (no peers or masters configured)</p>\n");
        return;
    }
    out(b,
        "<p>This shed's registry sequence is <b>%lld</b>; each target has acknowledged up to "
        "its own sequence, and lags by the changes it has not acknowledged yet.</p>\n",
        num(sync, "seq"));
    out(b, "<table><tr><th>kind</th><th>url</th><th>acknowledged</th><th>behind</th>"
           "<th>last ack</th><th>failed pushes</th><th>last error</th></tr>\n");
    json_array_foreach(targets, i, t)
    {
        char when[48];
        json_t *last = json_object_get(t, "last_ack_ms_ago");
        long long behind = num(t, "behind"), fails = num(t, "failures");

        ago(when, sizeof(when), json_is_integer(last) ? (long long)json_integer_value(last) : -1);
        out(b, "<tr><td>");
        esc(b, str(t, "kind"));
        if (json_is_true(json_object_get(t, "learned")))
            out(b, " (learned)");
        out(b, "</td><td><code>");
        esc(b, str(t, "url"));
        out(b,
            "</code></td><td class=\"n\">%lld%s</td><td class=\"n%s\">%lld</td><td%s>%s</td>"
            "<td class=\"n%s\">%lld</td><td>",
            num(t, "acked"), json_is_true(json_object_get(t, "need_full")) ? " (full next)" : "",
            behind > 0 ? " bad" : "", behind, json_is_integer(last) ? "" : " class=\"bad\"", when,
            fails > 0 ? " bad" : "", fails);
        esc(b, str(t, "error"));
        out(b, "</td></tr>\n");
    }
    out(b, "</table>\n");
}

static void
page_master(struct page *b, const json_t *st)
{
    const json_t *master = json_object_get(st, "master");
    const json_t *cells = json_object_get(master, "cells"), *c;
    size_t i;

    if (master == NULL)
        return;
    out(b, "<h2>Cells (master view)</h2>\n");
    if (json_array_size(cells) == 0) {
        out(b, "<p class=\"none\">no cell has pushed its membership yet</p>\n");
        return;
    }
    out(b, "<table><tr><th>cell</th><th>proximity</th><th>last push</th><th>aggregator</th>"
           "<th>services (live / members)</th></tr>\n");
    json_array_foreach(cells, i, c)
    {
        char when[48];
        const json_t *svcs = json_object_get(c, "services"), *s;
        size_t k;

        ago(when, sizeof(when), json_object_get(c, "age_ms") != NULL ? num(c, "age_ms") : -1);
        out(b, "<tr><td>");
        esc(b, str(c, "name"));
        out(b, "</td><td class=\"n\">%lld</td><td>%s</td><td><code>", num(c, "proximity"), when);
        esc(b, str(c, "aggregator"));
        out(b, "</code></td><td>");
        json_array_foreach(svcs, k, s)
        {
            out(b, "%s", k > 0 ? ", " : "");
            esc(b, str(s, "name"));
            out(b, " %lld / %lld", num(s, "live"), num(s, "members"));
        }
        out(b, "</td></tr>\n");
    }
    out(b, "</table>\n");
}

static void
page_events(struct page *b, const json_t *st)
{
    const json_t *events = json_object_get(st, "events"), *e;
    size_t i;

    out(b, "<h2>Recent escalations, failure reports and refused heartbeats</h2>\n");
    if (json_array_size(events) == 0) {
        out(b, "<p class=\"none\">nothing since the start</p>\n");
        return;
    }
    out(b, "<table><tr><th>time (UTC)</th><th>kind</th><th>what</th><th>times</th></tr>\n");
    json_array_foreach(events, i, e)
    {
        if (i == SHED_STATUS_EVENTS_MAX)
            break;
        out(b, "<tr><td>");
        esc(b, str(e, "time"));
        out(b, "</td><td>");
        esc(b, str(e, "kind"));
        out(b, "</td><td>");
        esc(b, str(e, "text"));
        out(b, "</td><td class=\"n\">%lld</td></tr>\n", num(e, "count"));
    }
    out(b, "</table>\n");
}

/* A table of label -> counter of <obj>. */
static void
page_counters(struct page *b, const json_t *obj, const char *const (*rows)[2], size_t nrows)
{
    out(b, "<table class=\"kv\">\n");
    for (size_t i = 0; i < nrows; i++) {
        out(b, "<tr><td>%s</td><td class=\"n\">%lld</td></tr>\n", rows[i][1], num(obj, rows[i][0]));
    }
    out(b, "</table>\n");
}

static void
page_counts(struct page *b, const json_t *st)
{
    static const char *const agg_rows[][2] = {
        {"requests_total", "list requests answered"},
        {"partial_total", "partial answers (Shed-Partial: a server did not answer)"},
        {"backend_requests_total", "requests to backends"},
        {"backend_errors_total", "backend requests that failed"},
        {"lookups_total", "single-message lookups"},
        {"second_waves_total", "pages that needed a second wave"},
    };
    static const char *const handoff_rows[][2] = {
        {"sweeps_total", "sweeps"},
        {"moved_total", "messages moved home"},
        {"dropped_total", "stray copies dropped"},
        {"undone_total", "moves undone (deleted meanwhile)"},
        {"errors_total", "failed calls"},
        {"last_sweep_moved", "moved by the last sweep"},
    };
    const json_t *agg = json_object_get(st, "aggregator");
    const json_t *handoff = json_object_get(st, "handoff");
    const json_t *hb = json_object_get(st, "heartbeats");
    const char *key;
    json_t *v;

    if (agg != NULL) {
        out(b, "<h2>Aggregator</h2>\n");
        page_counters(b, agg, agg_rows, sizeof(agg_rows) / sizeof(agg_rows[0]));
    }
    if (handoff != NULL) {
        double home = json_real_value(json_object_get(handoff, "home_timestamp_seconds"));
        char when[40] = "never";

        out(b, "<h2>Handoff</h2>\n");
        page_counters(b, handoff, handoff_rows, sizeof(handoff_rows) / sizeof(handoff_rows[0]));
        if (home > 0)
            iso_time((uint64_t)(home * 1000.0), when, sizeof(when));
        out(b, "<p>Last sweep that found every message home: %s</p>\n", when);
    }
    out(b, "<h2>Heartbeats</h2>\n<table class=\"kv\">\n");
    json_object_foreach((json_t *)hb, key, v)
    {
        out(b, "<tr><td>");
        esc(b, key);
        out(b, "</td><td class=\"n%s\">%lld</td></tr>\n",
            strcmp(key, "ok") != 0 && strcmp(key, "deregistered") != 0 && json_integer_value(v) > 0
                ? " bad"
                : "",
            (long long)json_integer_value(v));
    }
    out(b, "</table>\n");
}

int
shed_status_html(const json_t *st, char **outp, size_t *lenp)
{
    struct page b = {.p = malloc(16384), .len = 0, .cap = 16384};
    const json_t *roles = json_object_get(st, "roles"), *r;
    char up[32], now[32];
    size_t i;

    if (b.p == NULL)
        return -ENOMEM;
    b.p[0] = '\0';
    span(up, sizeof(up), (unsigned long long)num(st, "uptime_s"));
    iso_time(clock_real_ns() / 1000000u, now, sizeof(now));
    out(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<meta http-equiv=\"refresh\" content=\"10\">\n<title>shed: cell ");
    esc(&b, str(st, "cell"));
    out(&b, "</title>\n<style>%s</style></head><body>\n<h1>shed <small>cell <b>", style);
    esc(&b, str(st, "cell"));
    out(&b, "</b>, roles <b>");
    json_array_foreach(roles, i, r)
    {
        out(&b, "%s", i > 0 ? ", " : "");
        esc(&b, json_string_value(r) != NULL ? json_string_value(r) : "");
    }
    out(&b, "</b></small></h1>\n<p class=\"meta\">version <b>");
    esc(&b, str(st, "version"));
    out(&b, "</b> &middot; up <b>%s</b> (since ", up);
    esc(&b, str(st, "started"));
    out(&b,
        ") &middot; page made %s, refreshes every 10 s &middot; "
        "<a href=\"/_shed/v1/status\">JSON</a> &middot; <a href=\"/metrics\">metrics</a></p>\n",
        now);
    page_services(&b, st);
    page_etcd(&b, st);
    page_sync(&b, st);
    page_master(&b, st);
    page_events(&b, st);
    page_counts(&b, st);
    out(&b, "</body></html>\n");
    if (b.err != 0) {
        free(b.p);
        return b.err;
    }
    *outp = b.p;
    *lenp = b.len;
    return 0;
}
