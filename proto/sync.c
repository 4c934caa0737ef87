/* SPDX-License-Identifier: ISC */
/*
 * proto/sync: encode and decode the shed-to-shed replication message with
 * jansson. Decoding validates every field against the limits in the header
 * before anything is copied, so a peer (or a corrupt snapshot file) can never
 * make a shed hold an overlong string or an unbounded array.
 */
#include "proto/sync.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define PROTO_SYNC_ACK_MAX 4096 /* bytes in an ack */

static const char *const state_names[] = {"up", "draining", "down", "gone"};

const char *
proto_sync_state_name(enum proto_sync_state s)
{
    if ((unsigned)s >= sizeof(state_names) / sizeof(state_names[0]))
        return "down";
    return state_names[s];
}

int
proto_sync_state_parse(const char *s)
{
    for (size_t i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
        if (strcmp(s, state_names[i]) == 0)
            return (int)i;
    return -1;
}

void
proto_sync_msg_init(struct proto_sync_msg *m)
{
    memset(m, 0, sizeof(*m));
}

void
proto_sync_msg_free(struct proto_sync_msg *m)
{
    free(m->entries);
    m->entries = NULL;
    m->nentries = 0;
    m->cap = 0;
}

static bool
str_ok(const char *s, size_t max, bool empty_ok)
{
    size_t n = strnlen(s, max + 1);

    if (n > max || (n == 0 && !empty_ok))
        return false;
    /* Control bytes never belong in names or URLs (they would end up in headers). */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static bool
entry_ok(const struct proto_sync_entry *e)
{
    return str_ok(e->service, PROTO_SYNC_NAME_MAX, false) &&
           str_ok(e->id, PROTO_SYNC_ID_MAX, false) && str_ok(e->url, PROTO_SYNC_URL_MAX, false) &&
           str_ok(e->zone, PROTO_SYNC_NAME_MAX, true) && e->weight >= 1 &&
           e->weight <= PROTO_SYNC_WEIGHT_MAX && (unsigned)e->state <= PROTO_SYNC_GONE &&
           e->incarnation <= (uint64_t)INT64_MAX && e->age_ms <= (uint64_t)INT64_MAX &&
           e->seq <= (uint64_t)INT64_MAX;
}

int
proto_sync_msg_add(struct proto_sync_msg *m, const struct proto_sync_entry *e)
{
    if (!entry_ok(e))
        return -PROTO_SYNC_EBADFIELD;
    if (m->nentries >= PROTO_SYNC_MAX_ENTRIES)
        return -PROTO_SYNC_ETOOBIG;
    if (m->nentries == m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 16;
        struct proto_sync_entry *p;

        if (ncap > PROTO_SYNC_MAX_ENTRIES)
            ncap = PROTO_SYNC_MAX_ENTRIES;
        p = realloc(m->entries, ncap * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        m->entries = p;
        m->cap = ncap;
    }
    m->entries[m->nentries++] = *e;
    return 0;
}

/* json_integer() takes a signed 64-bit value: everything we send fits. */
static int
set_u64(json_t *o, const char *k, uint64_t v)
{
    if (v > (uint64_t)INT64_MAX)
        return -PROTO_SYNC_EBADFIELD;
    return json_object_set_new(o, k, json_integer((json_int_t)v)) == 0 ? 0 : -ENOMEM;
}

static int
set_str(json_t *o, const char *k, const char *v)
{
    return json_object_set_new(o, k, json_string(v)) == 0 ? 0 : -ENOMEM;
}

static int
encode_entry(json_t *arr, const struct proto_sync_entry *e)
{
    json_t *o;
    int rc;

    if (!entry_ok(e))
        return -PROTO_SYNC_EBADFIELD;
    o = json_object();
    if (o == NULL)
        return -ENOMEM;
    if ((rc = set_str(o, "service", e->service)) < 0 || (rc = set_str(o, "id", e->id)) < 0 ||
        (rc = set_u64(o, "inc", e->incarnation)) < 0 ||
        (rc = set_str(o, "state", proto_sync_state_name(e->state))) < 0 ||
        (rc = set_str(o, "url", e->url)) < 0 || (rc = set_str(o, "zone", e->zone)) < 0 ||
        (rc = set_u64(o, "weight", e->weight)) < 0 || (rc = set_u64(o, "age_ms", e->age_ms)) < 0 ||
        (rc = set_u64(o, "seq", e->seq)) < 0) {
        json_decref(o);
        return rc;
    }
    return json_array_append_new(arr, o) == 0 ? 0 : -ENOMEM;
}

int
proto_sync_encode(const struct proto_sync_msg *m, char **out, size_t *len)
{
    json_t *root = NULL, *arr = NULL;
    char *s = NULL;
    int rc;

    if (m->nentries > PROTO_SYNC_MAX_ENTRIES)
        return -PROTO_SYNC_ETOOBIG;
    if (!str_ok(m->cell, PROTO_SYNC_NAME_MAX, true) ||
        !str_ok(m->origin, PROTO_SYNC_URL_MAX, true) ||
        !str_ok(m->aggregator, PROTO_SYNC_URL_MAX, true) || m->kind > PROTO_SYNC_FULL)
        return -PROTO_SYNC_EBADFIELD;
    root = json_object();
    arr = json_array();
    if (root == NULL || arr == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = set_u64(root, "v", PROTO_SYNC_VERSION)) < 0 ||
        (rc = set_str(root, "kind", m->kind == PROTO_SYNC_FULL ? "full" : "delta")) < 0 ||
        (rc = set_str(root, "cell", m->cell)) < 0 ||
        (rc = set_str(root, "origin", m->origin)) < 0 ||
        (rc = set_u64(root, "epoch", m->epoch)) < 0 ||
        (rc = set_u64(root, "since", m->since)) < 0 || (rc = set_u64(root, "seq", m->seq)) < 0 ||
        (rc = set_u64(root, "lease_ms", m->lease_ms)) < 0 ||
        (rc = set_str(root, "aggregator", m->aggregator)) < 0)
        goto out;
    for (size_t i = 0; i < m->nentries; i++)
        if ((rc = encode_entry(arr, &m->entries[i])) < 0)
            goto out;
    if (json_object_set(root, "entries", arr) != 0) {
        rc = -ENOMEM;
        goto out;
    }
    s = json_dumps(root, JSON_COMPACT);
    if (s == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    *len = strlen(s);
    if (*len > PROTO_SYNC_BODY_MAX) {
        free(s);
        rc = -PROTO_SYNC_ETOOBIG;
        goto out;
    }
    *out = s;
    rc = 0;
out:
    json_decref(arr);
    json_decref(root);
    return rc;
}

static int
get_u64(json_t *o, const char *k, uint64_t max, uint64_t *v)
{
    json_t *j = json_object_get(o, k);

    if (!json_is_integer(j) || json_integer_value(j) < 0 || (uint64_t)json_integer_value(j) > max)
        return -PROTO_SYNC_EBADFIELD;
    *v = (uint64_t)json_integer_value(j);
    return 0;
}

static int
get_str(json_t *o, const char *k, char *dst, size_t max, bool empty_ok)
{
    json_t *j = json_object_get(o, k);
    size_t n;

    if (!json_is_string(j))
        return -PROTO_SYNC_EBADFIELD;
    n = json_string_length(j);
    if (n > max || (n == 0 && !empty_ok) || strlen(json_string_value(j)) != n)
        return -PROTO_SYNC_EBADFIELD; /* an embedded NUL is refused too */
    memcpy(dst, json_string_value(j), n);
    dst[n] = '\0';
    return str_ok(dst, max, empty_ok) ? 0 : -PROTO_SYNC_EBADFIELD;
}

/* Optional string: absent is "", present must be valid. */
static int
get_opt_str(json_t *o, const char *k, char *dst, size_t max)
{
    if (json_object_get(o, k) == NULL) {
        dst[0] = '\0';
        return 0;
    }
    return get_str(o, k, dst, max, true);
}

static int
decode_entry(json_t *o, struct proto_sync_entry *e)
{
    char st[16];
    uint64_t w;
    int rc, s;

    if (!json_is_object(o))
        return -PROTO_SYNC_EBADFIELD;
    memset(e, 0, sizeof(*e));
    if ((rc = get_str(o, "service", e->service, PROTO_SYNC_NAME_MAX, false)) < 0 ||
        (rc = get_str(o, "id", e->id, PROTO_SYNC_ID_MAX, false)) < 0 ||
        (rc = get_u64(o, "inc", INT64_MAX, &e->incarnation)) < 0 ||
        (rc = get_str(o, "state", st, sizeof(st) - 1, false)) < 0 ||
        (rc = get_str(o, "url", e->url, PROTO_SYNC_URL_MAX, false)) < 0 ||
        (rc = get_opt_str(o, "zone", e->zone, PROTO_SYNC_NAME_MAX)) < 0 ||
        (rc = get_u64(o, "weight", PROTO_SYNC_WEIGHT_MAX, &w)) < 0 ||
        (rc = get_u64(o, "age_ms", INT64_MAX, &e->age_ms)) < 0 ||
        (rc = get_u64(o, "seq", INT64_MAX, &e->seq)) < 0)
        return rc;
    s = proto_sync_state_parse(st);
    if (s < 0 || w == 0)
        return -PROTO_SYNC_EBADFIELD;
    e->state = (enum proto_sync_state)s;
    e->weight = (uint32_t)w;
    return 0;
}

/* Parse <buf> (at most <max> bytes) as a JSON object of our version. On
 * success *root holds the owned object; on error nothing is held. */
static int
load_versioned(const char *buf, size_t len, size_t max, json_t **root)
{
    json_error_t jerr;
    uint64_t v;
    int rc;

    if (len > max)
        return -PROTO_SYNC_ETOOBIG;
    *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (*root == NULL)
        return -PROTO_SYNC_EBADJSON;
    if (!json_is_object(*root))
        rc = -PROTO_SYNC_EBADJSON;
    else if ((rc = get_u64(*root, "v", UINT32_MAX, &v)) >= 0)
        rc = v == PROTO_SYNC_VERSION ? 0 : -PROTO_SYNC_EVERSION;
    if (rc < 0) {
        json_decref(*root);
        *root = NULL;
    }
    return rc;
}

int
proto_sync_decode(const char *buf, size_t len, struct proto_sync_msg *m)
{
    json_t *root, *arr;
    char kind[8];
    uint64_t lease;
    size_t n;
    int rc;

    proto_sync_msg_init(m);
    if ((rc = load_versioned(buf, len, PROTO_SYNC_BODY_MAX, &root)) < 0)
        return rc;
    if ((rc = get_str(root, "kind", kind, sizeof(kind) - 1, false)) < 0)
        goto out;
    if (strcmp(kind, "full") == 0) {
        m->kind = PROTO_SYNC_FULL;
    } else if (strcmp(kind, "delta") == 0) {
        m->kind = PROTO_SYNC_DELTA;
    } else {
        rc = -PROTO_SYNC_EBADFIELD;
        goto out;
    }
    if ((rc = get_opt_str(root, "cell", m->cell, PROTO_SYNC_NAME_MAX)) < 0 ||
        (rc = get_opt_str(root, "origin", m->origin, PROTO_SYNC_URL_MAX)) < 0 ||
        (rc = get_opt_str(root, "aggregator", m->aggregator, PROTO_SYNC_URL_MAX)) < 0 ||
        (rc = get_u64(root, "epoch", INT64_MAX, &m->epoch)) < 0 ||
        (rc = get_u64(root, "since", INT64_MAX, &m->since)) < 0 ||
        (rc = get_u64(root, "seq", INT64_MAX, &m->seq)) < 0 ||
        (rc = get_u64(root, "lease_ms", UINT32_MAX, &lease)) < 0)
        goto out;
    m->lease_ms = (uint32_t)lease;
    arr = json_object_get(root, "entries");
    if (!json_is_array(arr)) {
        rc = -PROTO_SYNC_EBADFIELD;
        goto out;
    }
    n = json_array_size(arr);
    if (n > PROTO_SYNC_MAX_ENTRIES) {
        rc = -PROTO_SYNC_ETOOBIG;
        goto out;
    }
    if (n > 0) {
        m->entries = calloc(n, sizeof(*m->entries));
        if (m->entries == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        m->cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = decode_entry(json_array_get(arr, i), &m->entries[i])) < 0)
            goto out;
        m->nentries++;
    }
    rc = 0;
out:
    json_decref(root);
    if (rc < 0)
        proto_sync_msg_free(m);
    return rc;
}

long
proto_sync_ack_encode(const struct proto_sync_ack *a, char *out, size_t outlen)
{
    int n;

    if (a->seq > (uint64_t)INT64_MAX)
        return -PROTO_SYNC_EBADFIELD;
    n = snprintf(out, outlen, "{\"v\":%d,\"seq\":%llu,\"need_full\":%s}", PROTO_SYNC_VERSION,
                 (unsigned long long)a->seq, a->need_full ? "true" : "false");
    if (n < 0 || (size_t)n >= outlen)
        return -ERANGE;
    return n;
}

int
proto_sync_ack_decode(const char *buf, size_t len, struct proto_sync_ack *a)
{
    json_t *root, *nf;
    int rc;

    if ((rc = load_versioned(buf, len, PROTO_SYNC_ACK_MAX, &root)) < 0)
        return rc;
    if ((rc = get_u64(root, "seq", INT64_MAX, &a->seq)) < 0)
        goto out;
    nf = json_object_get(root, "need_full");
    if (nf != NULL && !json_is_boolean(nf)) {
        rc = -PROTO_SYNC_EBADFIELD;
        goto out;
    }
    a->need_full = nf != NULL && json_is_true(nf);
    rc = 0;
out:
    json_decref(root);
    return rc;
}

const char *
proto_sync_strerror(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:
        return "success";
    case PROTO_SYNC_EBADJSON:
        return "sync message is not a JSON object";
    case PROTO_SYNC_EBADFIELD:
        return "sync message field missing or out of range";
    case PROTO_SYNC_EVERSION:
        return "unknown sync message version";
    case PROTO_SYNC_ETOOBIG:
        return "sync message too big";
    default:
        return strerror(err);
    }
}
