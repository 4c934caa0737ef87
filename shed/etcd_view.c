/* SPDX-License-Identifier: ISC */
/*
 * shed/etcd_view: the reader's pure part (struct shed_etcd_view, exposed
 * in etcd.h for tests): every key of a cell with a copy of its record,
 * sorted, so one member's keys ("<service>/<id>/...") are neighbours, and
 * what a put, a delete or a reload means for each member. Not thread-safe:
 * the etcd thread is its only user.
 */
#include "shed/etcd_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shed_etcd_view *
shed_etcd_view_create(void)
{
    return calloc(1, sizeof(struct shed_etcd_view));
}

void
shed_etcd_view_destroy(struct shed_etcd_view *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->n; i++) {
        free(v->k[i]->rel);
        free(v->k[i]);
    }
    free(v->k);
    free(v);
}

size_t
shed_etcd_view_size(const struct shed_etcd_view *v)
{
    return v->n;
}

/* First index whose key is >= <s>. */
static size_t
lower(const struct shed_etcd_view *v, const char *s, size_t len)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        size_t ml = strlen(v->k[mid]->rel);
        int c = memcmp(v->k[mid]->rel, s, ml < len ? ml : len);
        if (c < 0 || (c == 0 && ml < len))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The range [*a, *b) of keys in group <g> (<glen> bytes). */
void
etcd_view_group(const struct shed_etcd_view *v, const char *g, size_t glen, size_t *a, size_t *b)
{
    size_t i = lower(v, g, glen);
    *a = i;
    while (i < v->n && strncmp(v->k[i]->rel, g, glen) == 0)
        i++;
    *b = i;
}

/* The member's entry from its keys [a, b): the highest incarnation, "gone"
 * wins a tie, then the latest write. */
const struct proto_sync_entry *
etcd_view_aggregate(const struct shed_etcd_view *v, size_t a, size_t b)
{
    const struct vkey *best = NULL;
    for (size_t i = a; i < b; i++) {
        const struct vkey *k = v->k[i];
        if (best == NULL || k->e.incarnation > best->e.incarnation)
            best = k;
        else if (k->e.incarnation == best->e.incarnation) {
            bool kg = k->e.state == PROTO_SYNC_GONE, bg = best->e.state == PROTO_SYNC_GONE;
            if ((kg && !bg) || (kg == bg && k->rev > best->rev))
                best = k;
        }
    }
    return best != NULL ? &best->e : NULL;
}

int
etcd_view_emit(struct proto_sync_msg *out, const struct proto_sync_entry *e,
               enum proto_sync_state st)
{
    struct proto_sync_entry x = *e;
    x.state = st;
    x.age_ms = 0;
    int rc = proto_sync_msg_add(out, &x);
    return rc == -PROTO_SYNC_ETOOBIG ? 0 : rc;
}

int
shed_etcd_view_put(struct shed_etcd_view *v, const char *rel, const struct proto_sync_entry *e,
                   uint64_t rev, struct proto_sync_msg *out)
{
    size_t len = strlen(rel), a, b;
    const char *s2;
    char svc[PROTO_SYNC_NAME_MAX + 1], id[PROTO_SYNC_ID_MAX + 1];

    if (shed_etcd_key_split(rel, len, svc, sizeof(svc), id, sizeof(id)) < 0)
        return -EINVAL;
    s2 = strchr(strchr(rel, '/') + 1, '/');
    size_t i = lower(v, rel, len);
    if (i == v->n || strcmp(v->k[i]->rel, rel) != 0) {
        if (v->n == v->cap) {
            size_t nc = v->cap ? v->cap * 2 : 64;
            struct vkey **nk = realloc(v->k, nc * sizeof(*nk));
            if (nk == NULL)
                return -ENOMEM;
            v->k = nk;
            v->cap = nc;
        }
        char *copy = strdup(rel);
        struct vkey *nk = malloc(sizeof(*nk));
        if (copy == NULL || nk == NULL) {
            free(copy);
            free(nk);
            return -ENOMEM;
        }
        memmove(&v->k[i + 1], &v->k[i], (v->n - i) * sizeof(*v->k));
        v->n++;
        v->k[i] = nk;
        v->k[i]->rel = copy;
        v->k[i]->grp = (size_t)(s2 + 1 - rel);
    }
    v->k[i]->rev = rev;
    v->k[i]->e = *e;
    snprintf(v->k[i]->e.service, sizeof(v->k[i]->e.service), "%s", svc);
    snprintf(v->k[i]->e.id, sizeof(v->k[i]->e.id), "%s", id);
    etcd_view_group(v, rel, v->k[i]->grp, &a, &b);
    const struct proto_sync_entry *best = etcd_view_aggregate(v, a, b);
    return etcd_view_emit(out, best, best->state);
}

int
shed_etcd_view_delete(struct shed_etcd_view *v, const char *rel, struct proto_sync_msg *out)
{
    size_t len = strlen(rel), i = lower(v, rel, len), a, b, grp;
    if (i == v->n || strcmp(v->k[i]->rel, rel) != 0)
        return 0;
    grp = v->k[i]->grp;
    etcd_view_group(v, rel, grp, &a, &b);
    struct proto_sync_entry was = *etcd_view_aggregate(v, a, b);
    free(v->k[i]->rel);
    free(v->k[i]);
    memmove(&v->k[i], &v->k[i + 1], (v->n - i - 1) * sizeof(*v->k));
    v->n--;
    etcd_view_group(v, rel, grp, &a, &b);
    if (a < b) {
        const struct proto_sync_entry *best = etcd_view_aggregate(v, a, b);
        return etcd_view_emit(out, best, best->state);
    }
    if (was.state == PROTO_SYNC_GONE)
        return 0;
    return etcd_view_emit(out, &was, PROTO_SYNC_DOWN);
}

int
shed_etcd_view_export_at(const struct shed_etcd_view *v, size_t *pos, struct proto_sync_msg *out)
{
    size_t a = *pos;
    while (a < v->n && out->nentries < PROTO_SYNC_MAX_ENTRIES) {
        size_t b = a + 1;
        while (b < v->n && strncmp(v->k[b]->rel, v->k[a]->rel, v->k[a]->grp) == 0)
            b++;
        const struct proto_sync_entry *best = etcd_view_aggregate(v, a, b);
        /* "down" (a probe's verdict) is news once, not a state to renew. */
        if (best->state != PROTO_SYNC_GONE && best->state != PROTO_SYNC_DOWN) {
            int rc = etcd_view_emit(out, best, best->state);
            if (rc < 0)
                return rc;
        }
        a = b;
    }
    *pos = a;
    return 0;
}

int
shed_etcd_view_export(const struct shed_etcd_view *v, struct proto_sync_msg *out)
{
    size_t pos = 0;
    return shed_etcd_view_export_at(v, &pos, out);
}

int
shed_etcd_view_downs_at(const struct shed_etcd_view *v, const struct shed_etcd_view *next,
                        size_t *pos, struct proto_sync_msg *out)
{
    size_t a = *pos;

    while (a < v->n && out->nentries < PROTO_SYNC_MAX_ENTRIES) {
        size_t b = a + 1, na, nb;
        while (b < v->n && strncmp(v->k[b]->rel, v->k[a]->rel, v->k[a]->grp) == 0)
            b++;
        etcd_view_group(next, v->k[a]->rel, v->k[a]->grp, &na, &nb);
        if (na == nb) {
            const struct proto_sync_entry *was = etcd_view_aggregate(v, a, b);
            if (was->state != PROTO_SYNC_GONE)
                etcd_view_emit(out, was, PROTO_SYNC_DOWN);
        }
        a = b;
    }
    *pos = a;
    return 0;
}

int
shed_etcd_view_replace(struct shed_etcd_view *v, struct shed_etcd_view *next,
                       struct proto_sync_msg *out)
{
    size_t pos = 0;

    /* Members only the old view had: down (their keys went while we did
     * not watch). */
    shed_etcd_view_downs_at(v, next, &pos, out);
    for (size_t i = 0; i < v->n; i++) {
        free(v->k[i]->rel);
        free(v->k[i]);
    }
    free(v->k);
    *v = *next;
    free(next);
    return shed_etcd_view_export(v, out);
}
