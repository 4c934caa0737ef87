/* SPDX-License-Identifier: ISC */
/*
 * shed/etcd_reader: what a shed reads from etcd. A line shed or an
 * aggregator reads its cell's keys, a master every cell's and the cells'
 * records; one sink (a view and the changes not yet applied) per cell. A
 * load is a paged range at one revision, then the watch's events
 * (etcd_watch_message()) change the views; changes go to the registry
 * (registry_apply()) or to shed/master (shed_master_feed()), and the whole
 * view again every third of a lease (etcd_refresh()).
 */
#include "shed/etcd_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "shed/answer.h"
#include "shed/master.h"
#include "shed/registry.h"

/* What this shed reads: a cell's keys, or (a master) every cell's and the
 * cells' records, not the hints ("~hints/" sorts after "~cells/" and
 * after every cell name, whose characters are [a-z0-9_-]). */
void
etcd_read_end(const struct shed_etcd *E, char end[SHED_ETCD_KEY_MAX])
{
    if (E->mode == MODE_CELL) {
        snprintf(end, SHED_ETCD_KEY_MAX, "%s", E->base);
        end[strlen(end) - 1]++; /* the base ends with '/': "0" is just past it */
        return;
    }
    snprintf(end, SHED_ETCD_KEY_MAX, "%.200s" SHED_ETCD_HINTS_DIR, E->base);
    end[strlen(end) - 1] = '\0'; /* "<prefix>~hints": just past every cell's and ~cells/ */
}

/* ---- reading: range, watch, refresh ---- */

size_t
etcd_keys_held(const struct shed_etcd *E)
{
    size_t n = 0;
    for (size_t i = 0; i < E->nsinks; i++)
        n += shed_etcd_view_size(E->sinks[i].view);
    return n;
}

/* The sink of cell <cell>, created (with an empty view) when <create>;
 * NULL when there is no room (SHED_MAX_CELLS) or memory. */
struct sink *
etcd_sink_get(struct shed_etcd *E, const char *cell, bool create)
{
    for (size_t i = 0; i < E->nsinks; i++)
        if (strcmp(E->sinks[i].cell, cell) == 0)
            return &E->sinks[i];
    if (!create || E->nsinks == SHED_MAX_CELLS)
        return NULL;
    struct sink *k = &E->sinks[E->nsinks];
    memset(k, 0, sizeof(*k));
    if ((k->view = shed_etcd_view_create()) == NULL)
        return NULL;
    snprintf(k->cell, sizeof(k->cell), "%s", cell);
    proto_sync_msg_init(&k->out);
    E->nsinks++;
    return k;
}

/* Hand what changed to the registry (a line shed, an aggregator) or to the
 * master's tables. */
void
etcd_apply(struct shed_etcd *E)
{
    uint64_t now = shed_now_ms();
    for (size_t s = 0; s < E->nsinks; s++) {
        struct sink *k = &E->sinks[s];
        struct proto_sync_msg *m = &k->out;
        size_t n = 0;
        if (m->nentries == 0)
            continue;
        if (E->mode == MODE_MASTER) {
            snprintf(m->cell, sizeof(m->cell), "%s", k->cell);
            snprintf(m->aggregator, sizeof(m->aggregator), "%s", k->aggregator);
            /* Live for two leases without a refresh (one comes every third
             * of one): a key's delete marks a member down at once anyway,
             * this only covers a thread held up by a big load. */
            m->lease_ms = (uint32_t)(2 * E->lease_ms);
            int rc = shed_master_feed(E->master, m, now);
            if (rc < 0)
                log_debug("etcd: cell %s: master: %s", k->cell, strerror(-rc));
        } else {
            registry_apply(E->reg, m, now, false, &n);
            /* A "down" lands in the same millisecond as a refresh that
             * heard the member: the registry takes it for old news. Say it
             * again next turn. */
            for (size_t i = 0; n < m->nentries && i < m->nentries; i++)
                if (m->entries[i].state == PROTO_SYNC_DOWN &&
                    E->again.nentries < PROTO_SYNC_MAX_ENTRIES)
                    proto_sync_msg_add(&E->again, &m->entries[i]);
        }
        proto_sync_msg_free(m);
        proto_sync_msg_init(m);
    }
    atomic_store(&E->keys, etcd_keys_held(E));
}

/* One message holds PROTO_SYNC_MAX_ENTRIES: apply what it holds before a
 * change would not fit (a load, a refresh or one watch message may carry
 * many more: a big cell, a deleterange). */
static void
room(struct shed_etcd *E, struct sink *k)
{
    if (k->out.nentries >= PROTO_SYNC_MAX_ENTRIES)
        etcd_apply(E);
}

/* Feed the whole view of <k> (the refresh), in messages that fit. */
static void
export_all(struct shed_etcd *E, struct sink *k)
{
    size_t pos = 0;
    do {
        room(E, k);
        if (shed_etcd_view_export_at(k->view, &pos, &k->out) < 0)
            break;
    } while (pos < shed_etcd_view_size(k->view));
}

/* The view of <k> replaced by <next> (consumed): "down" for every member
 * only the old view had, then everything <next> holds, all applied. */
static void
replace_view(struct shed_etcd *E, struct sink *k, struct shed_etcd_view *next)
{
    struct shed_etcd_view *v = k->view;
    size_t pos = 0;
    do {
        room(E, k);
        shed_etcd_view_downs_at(v, next, &pos, &k->out);
    } while (pos < shed_etcd_view_size(v));
    shed_etcd_view_destroy(v);
    k->view = next;
    export_all(E, k);
}

/* Decode the key of kv (a gateway KeyValue) relative to the base into
 * <rel>; 0 or -EINVAL (not ours). */
static int
kv_key(struct shed_etcd *E, json_t *kv, char *rel, size_t rlen)
{
    json_t *k = json_object_get(kv, "key");
    char key[SHED_ETCD_KEY_MAX];
    size_t blen = strlen(E->base);
    if (!json_is_string(k))
        return -EINVAL;
    long n =
        shed_etcd_b64_decode(json_string_value(k), json_string_length(k), key, sizeof(key) - 1);
    if (n < 0 || (size_t)n <= blen || memcmp(key, E->base, blen) != 0 || (size_t)n - blen >= rlen)
        return -EINVAL;
    memcpy(rel, key + blen, (size_t)n - blen);
    rel[(size_t)n - blen] = '\0';
    return 0;
}

/* The value of kv, decoded from base64 into <val> (NUL-terminated); its
 * length or -EINVAL. */
long
etcd_kv_raw(json_t *kv, char *val, size_t size)
{
    json_t *v = json_object_get(kv, "value");
    if (!json_is_string(v))
        return -EINVAL;
    long n = shed_etcd_b64_decode(json_string_value(v), json_string_length(v), val, size - 1);
    if (n >= 0)
        val[n] = '\0';
    return n < 0 ? -EINVAL : n;
}

static int
kv_value(json_t *kv, struct proto_sync_entry *e)
{
    char val[VALUE_JSON_MAX];
    long n = etcd_kv_raw(kv, val, sizeof(val));
    if (n < 0)
        return -EINVAL;
    memset(e, 0, sizeof(*e));
    return shed_etcd_value_decode(val, (size_t)n, e);
}

/* Which sink a key <rel> (relative to the base) belongs to and the part
 * of it below the cell (<*sub>); NULL for a key that is not a member's. A
 * master's ~cells/<cell>/<shed> record sets that cell's aggregator. */
static struct sink *
route_key(struct shed_etcd *E, json_t *kv, const char *rel, bool del, const char **sub)
{
    char cell[PROTO_SYNC_NAME_MAX + 1];
    const char *rest;
    int kind;

    if (E->mode == MODE_CELL) {
        *sub = rel;
        return &E->sinks[0];
    }
    kind = shed_etcd_key_class(rel, strlen(rel), cell, sizeof(cell), &rest);
    if (kind == SHED_ETCD_KEY_MEMBER) {
        *sub = rest;
        return etcd_sink_get(E, cell, !del);
    }
    if (kind == SHED_ETCD_KEY_CELL && !del) {
        char val[VALUE_JSON_MAX], agg[PROTO_SYNC_URL_MAX + 1];
        long n = etcd_kv_raw(kv, val, sizeof(val));
        struct sink *k = etcd_sink_get(E, cell, true);
        if (k != NULL && n >= 0 && shed_etcd_cell_decode(val, (size_t)n, agg, sizeof(agg)) == 0)
            snprintf(k->aggregator, sizeof(k->aggregator), "%s", agg);
    }
    return NULL;
}

/* A PUT of kv into the live views, or into <next> (a range being loaded,
 * nsinks views parallel to the sinks) when not NULL. */
static void
put_kv(struct shed_etcd *E, json_t *kv, struct shed_etcd_view **next)
{
    char rel[SHED_ETCD_KEY_MAX];
    const char *sub;
    struct proto_sync_entry e;
    struct proto_sync_msg scratch;
    struct sink *k;

    if (kv_key(E, kv, rel, sizeof(rel)) < 0 || (k = route_key(E, kv, rel, false, &sub)) == NULL)
        return;
    if (kv_value(kv, &e) < 0) {
        log_debug("etcd: a key under %s that is not a member record: ignored", E->base);
        return;
    }
    size_t i = (size_t)(k - E->sinks);
    if (next != NULL && next[i] == NULL && (next[i] = shed_etcd_view_create()) == NULL)
        return;
    proto_sync_msg_init(&scratch);
    if (next == NULL)
        room(E, k);
    if (shed_etcd_view_put(next != NULL ? next[i] : k->view, sub, &e,
                           (uint64_t)etcd_i64(kv, "mod_revision"),
                           next != NULL ? &scratch : &k->out) < 0)
        log_debug("etcd: key %s%s: not <service>/<id>/<shed>: ignored", E->base, rel);
    proto_sync_msg_free(&scratch);
}

static void
del_kv(struct shed_etcd *E, json_t *kv)
{
    char rel[SHED_ETCD_KEY_MAX];
    const char *sub;
    struct sink *k;
    if (kv_key(E, kv, rel, sizeof(rel)) == 0 && (k = route_key(E, kv, rel, true, &sub)) != NULL) {
        room(E, k);
        shed_etcd_view_delete(k->view, sub, &k->out);
    }
}

/* Load everything this shed reads at one revision, in pages of RANGE_PAGE
 * keys (each answer stays far below REPLY_MAX however big the cells are),
 * and replace the views with it. */
void
etcd_range(struct shed_etcd *E)
{
    struct shed_etcd_view *next[SHED_MAX_CELLS] = {NULL};
    char from[SHED_ETCD_KEY_MAX + 1], end[SHED_ETCD_KEY_MAX], extra[96];
    size_t flen = strlen(E->base), i, pages = 0;
    uint64_t at = 0;
    bool more = true;
    json_t *kv;

    memcpy(from, E->base, flen);
    etcd_read_end(E, end);
    while (more) {
        json_t *r = NULL;
        if (at == 0)
            snprintf(extra, sizeof(extra), "\"limit\":\"%d\"", RANGE_PAGE);
        else
            snprintf(extra, sizeof(extra), "\"limit\":\"%d\",\"revision\":\"%" PRIu64 "\"",
                     RANGE_PAGE, at);
        char *body = etcd_key_body_end(from, flen, end, extra);
        int rc = body != NULL ? etcd_call(E, "/v3/kv/range", body, &r) : -ENOMEM;
        free(body);
        if (rc < 0) {
            for (size_t s = 0; s < SHED_MAX_CELLS; s++)
                shed_etcd_view_destroy(next[s]);
            return; /* tried again from the start (a compacted revision too) */
        }
        if (at == 0)
            at = (uint64_t)etcd_i64(json_object_get(r, "header"), "revision");
        json_t *kvs = json_object_get(r, "kvs");
        json_array_foreach(kvs, i, kv)
        {
            put_kv(E, kv, next);
        }
        pages++;
        more = json_is_true(json_object_get(r, "more")) && json_array_size(kvs) > 0;
        if (more) { /* the next page starts just after the last key */
            json_t *k = json_object_get(json_array_get(kvs, json_array_size(kvs) - 1), "key");
            long n = json_is_string(k)
                         ? shed_etcd_b64_decode(json_string_value(k), json_string_length(k), from,
                                                sizeof(from) - 1)
                         : -EINVAL;
            more = n >= 0;
            if (more) {
                from[n] = '\0';
                flen = (size_t)n + 1;
            }
        }
        json_decref(r);
    }
    /* Every sink's view replaced (a cell that vanished: all its members
     * down); new cells got a sink (and an empty view) from put_kv. */
    for (size_t s = 0; s < E->nsinks; s++) {
        struct shed_etcd_view *nv = next[s] != NULL ? next[s] : shed_etcd_view_create();
        if (nv != NULL)
            replace_view(E, &E->sinks[s], nv);
    }
    E->rev = at;
    atomic_store(&E->revision, E->rev);
    if (E->have_view)
        atomic_fetch_add(&E->reloads, 1);
    if (E->mode == MODE_CELL)
        log_info("etcd: %s %zu keys of cell %s at revision %" PRIu64 " (%zu page%s)",
                 E->have_view ? "reloaded" : "loaded", etcd_keys_held(E), E->cfgv.cell, E->rev,
                 pages, pages == 1 ? "" : "s");
    else
        log_info("etcd: %s %zu keys of %zu cells under %s at revision %" PRIu64 " (%zu page%s)",
                 E->have_view ? "reloaded" : "loaded", etcd_keys_held(E), E->nsinks, E->base,
                 E->rev, pages, pages == 1 ? "" : "s");
    E->have_view = true;
    E->need_reload = false;
    etcd_apply(E);
}

/* One message of the watch stream. */
void
etcd_watch_message(struct shed_etcd *E, const char *line, size_t len)
{
    json_t *o = json_loadb(line, len, 0, NULL), *res, *ev;
    size_t i;

    if (o == NULL)
        return;
    res = json_object_get(o, "result");
    if (!json_is_object(res)) {
        log_warnx("etcd: watch: %.200s", line);
        E->watch_abort = true;
        goto out;
    }
    etcd_set_up(E, true, NULL);
    if (etcd_i64(res, "compact_revision") > 0) {
        log_warnx("etcd: watch: revision %" PRIu64 " was compacted (now %" PRId64 "): full reload",
                  E->rev + 1, etcd_i64(res, "compact_revision"));
        E->need_reload = true;
        E->watch_abort = true;
        goto out;
    }
    if (json_is_true(json_object_get(res, "canceled"))) {
        E->watch_abort = true;
        goto out;
    }
    json_array_foreach(json_object_get(res, "events"), i, ev)
    {
        json_t *kv = json_object_get(ev, "kv"), *type = json_object_get(ev, "type");
        uint64_t rev = (uint64_t)etcd_i64(kv, "mod_revision");
        if (json_is_string(type) && strcmp(json_string_value(type), "DELETE") == 0)
            del_kv(E, kv);
        else
            put_kv(E, kv, NULL);
        if (rev > E->rev)
            E->rev = rev;
    }
    atomic_store(&E->revision, E->rev);
    /* Applied once per turn of the thread (etcd_watch_poll), not per message: a
     * burst of small transactions costs one merge and one ring build. */
out:
    json_decref(o);
}

/* Every third of a lease: what etcd holds is heard now (the registry's own
 * lease would otherwise expire the members this shed does not hear). */
void
etcd_refresh(struct shed_etcd *E, uint64_t now)
{
    if (!E->have_view || now < E->refresh_at)
        return;
    E->refresh_at = now + E->lease_ms / 3;
    for (size_t i = 0; i < E->nsinks; i++)
        export_all(E, &E->sinks[i]);
    etcd_apply(E);
}
