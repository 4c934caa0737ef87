/* SPDX-License-Identifier: ISC */
/*
 * shed/merge: turn several Burrow backend answers into one (see merge.h).
 * Everything here is a pure function of its inputs so that the aggregator's
 * semantics (dedup, global limit, marker window, detail shaping, 404 rules)
 * can be pinned by table tests without a network.
 */
#include "shed/merge.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static size_t
set_slot(const struct shed_merge_set *s, const char *key, size_t len)
{
    return (size_t)XXH3_64bits(key, len) & (s->cap - 1);
}

int
shed_merge_set_init(struct shed_merge_set *s, size_t expect)
{
    size_t cap = 16;

    while (cap < expect * 2 + 2)
        cap <<= 1;
    s->keys = calloc(cap, sizeof(*s->keys));
    s->lens = calloc(cap, sizeof(*s->lens));
    s->cap = cap;
    s->n = 0;
    if (s->keys == NULL || s->lens == NULL) {
        shed_merge_set_free(s);
        return -ENOMEM;
    }
    return 0;
}

void
shed_merge_set_free(struct shed_merge_set *s)
{
    free(s->keys);
    free(s->lens);
    s->keys = NULL;
    s->lens = NULL;
    s->cap = s->n = 0;
}

static bool
set_find(const struct shed_merge_set *s, const char *key, size_t len, size_t *slot)
{
    size_t i = set_slot(s, key, len);

    while (s->keys[i] != NULL) {
        if (s->lens[i] == len && memcmp(s->keys[i], key, len) == 0) {
            *slot = i;
            return true;
        }
        i = (i + 1) & (s->cap - 1);
    }
    *slot = i;
    return false;
}

static int
set_grow(struct shed_merge_set *s)
{
    struct shed_merge_set n;
    int rc = shed_merge_set_init(&n, s->cap);

    if (rc < 0)
        return rc;
    for (size_t i = 0; i < s->cap; i++) {
        size_t slot;

        if (s->keys[i] == NULL)
            continue;
        set_find(&n, s->keys[i], s->lens[i], &slot);
        n.keys[slot] = s->keys[i];
        n.lens[slot] = s->lens[i];
        n.n++;
    }
    shed_merge_set_free(s);
    *s = n;
    return 0;
}

int
shed_merge_set_add(struct shed_merge_set *s, const char *key, size_t len)
{
    size_t slot;

    if (set_find(s, key, len, &slot))
        return 0;
    if ((s->n + 1) * 2 > s->cap) {
        int rc = set_grow(s);

        if (rc < 0)
            return rc;
        set_find(s, key, len, &slot);
    }
    /* An empty key is stored as a non-NULL pointer so the slot is taken. */
    s->keys[slot] = key != NULL ? key : "";
    s->lens[slot] = len;
    s->n++;
    return 1;
}

bool
shed_merge_set_has(const struct shed_merge_set *s, const char *key, size_t len)
{
    size_t slot;

    if (s->cap == 0)
        return false;
    return set_find(s, key, len, &slot);
}

void
shed_merge_list_clear(struct shed_merge_list *l)
{
    free(l->text);
    free(l->arena);
    free(l->items);
    l->text = NULL;
    l->arena = NULL;
    l->items = NULL;
    l->n = 0;
    l->truncated = false;
}

/* ------------------------------------------------------------ scanner */

struct scan {
    const char *p, *end;
};

static void
ws(struct scan *sc)
{
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
        sc->p++;
}

/* Bytes that end a run of plain bytes inside a JSON string: controls, '"'
 * and '\\'. One table look per byte instead of three compares (message
 * bodies are most of what a page scans). */
static const bool string_stop[256] = {
    true, true, true, true, true, true, true, true, true,         true,          true, true,
    true, true, true, true, true, true, true, true, true,         true,          true, true,
    true, true, true, true, true, true, true, true, ['"'] = true, ['\\'] = true,
};

/* Skip a JSON string at sc->p (which is '"'); *<escaped> tells whether it
 * holds a backslash. */
static int
skip_string(struct scan *sc, bool *escaped)
{
    const unsigned char *p = (const unsigned char *)sc->p + 1;
    const unsigned char *end = (const unsigned char *)sc->end;

    *escaped = false;
    for (;;) {
        while (p < end && !string_stop[*p])
            p++;
        if (p >= end)
            break;
        if (*p == '"') {
            sc->p = (const char *)p + 1;
            return 0;
        }
        if (*p < 0x20)
            break;
        /* a backslash: it and the byte after it */
        *escaped = true;
        if (end - p < 2)
            break;
        p += 2;
    }
    sc->p = (const char *)p;
    return -EBADMSG;
}

static int skip_value(struct scan *sc, int depth);

/* A byte of a JSON number, true, false or null ("+-.0123456789eEtruefalsn",
 * without a strchr() per byte). */
static bool
literal_byte(char c)
{
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E' ||
           c == 't' || c == 'r' || c == 'u' || c == 'f' || c == 'a' || c == 'l' || c == 's' ||
           c == 'n';
}

static int
skip_container(struct scan *sc, int depth, char close)
{
    bool first = true, esc;
    int rc;

    if (depth > SHED_MERGE_DEPTH_MAX)
        return -EBADMSG;
    sc->p++;
    for (;;) {
        ws(sc);
        if (sc->p >= sc->end)
            return -EBADMSG;
        if (*sc->p == close && first) {
            sc->p++;
            return 0;
        }
        if (close == '}') {
            if (*sc->p != '"' || (rc = skip_string(sc, &esc)) < 0)
                return -EBADMSG;
            ws(sc);
            if (sc->p >= sc->end || *sc->p != ':')
                return -EBADMSG;
            sc->p++;
        }
        if ((rc = skip_value(sc, depth + 1)) < 0)
            return rc;
        ws(sc);
        if (sc->p >= sc->end)
            return -EBADMSG;
        if (*sc->p == close) {
            sc->p++;
            return 0;
        }
        if (*sc->p != ',')
            return -EBADMSG;
        sc->p++;
        first = false;
    }
}

static int
skip_value(struct scan *sc, int depth)
{
    bool esc;

    ws(sc);
    if (sc->p >= sc->end)
        return -EBADMSG;
    switch (*sc->p) {
    case '"':
        return skip_string(sc, &esc);
    case '[':
        return skip_container(sc, depth, ']');
    case '{':
        return skip_container(sc, depth, '}');
    default:
        /* number, true, false, null: a run of these bytes */
        if (!((*sc->p >= '0' && *sc->p <= '9') || *sc->p == '-' || *sc->p == 't' || *sc->p == 'f' ||
              *sc->p == 'n'))
            return -EBADMSG;
        while (sc->p < sc->end && literal_byte(*sc->p))
            sc->p++;
        return 0;
    }
}

static int
hex4(const char *p, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -EBADMSG;
    }
    *out = v;
    return 0;
}

/* Decode the JSON string token [p, end) (quotes included) into <out>, which
 * has room for its length; returns the decoded length or -EBADMSG. */
static long
unescape(const char *p, const char *end, char *out)
{
    size_t o = 0;

    p++;
    end--;
    while (p < end) {
        unsigned cp, lo;

        if (*p != '\\') {
            out[o++] = *p++;
            continue;
        }
        p++;
        switch (*p) {
        case '"':
        case '\\':
        case '/':
            out[o++] = *p;
            break;
        case 'b':
            out[o++] = '\b';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'u':
            if (end - p < 5 || hex4(p + 1, &cp) < 0)
                return -EBADMSG;
            p += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && end - p >= 7 && p[1] == '\\' && p[2] == 'u' &&
                hex4(p + 3, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            if (cp < 0x80) {
                out[o++] = (char)cp;
            } else if (cp < 0x800) {
                out[o++] = (char)(0xc0 | cp >> 6);
                out[o++] = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                out[o++] = (char)(0xe0 | cp >> 12);
                out[o++] = (char)(0x80 | (cp >> 6 & 0x3f));
                out[o++] = (char)(0x80 | (cp & 0x3f));
            } else {
                out[o++] = (char)(0xf0 | cp >> 18);
                out[o++] = (char)(0x80 | (cp >> 12 & 0x3f));
                out[o++] = (char)(0x80 | (cp >> 6 & 0x3f));
                out[o++] = (char)(0x80 | (cp & 0x3f));
            }
            break;
        default:
            return -EBADMSG;
        }
        p++;
    }
    return (long)o;
}

/* A stamp: digits only, within int64_t. */
static int
stamp_value(struct shed_merge_span v, int64_t *out)
{
    int64_t x = 0;

    if (v.len == 0 || v.len > 19)
        return -EBADMSG;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9' || x > (INT64_MAX - 9) / 10)
            return -EBADMSG;
        x = x * 10 + (v.ptr[i] - '0');
    }
    *out = x;
    return 0;
}

/* Scan one element: a string id, or an object with an "id" string member
 * (and maybe "ttl", "hide", "stamp", "body"). Fills <it> (id still raw) and
 * *<escaped>. */
static int
scan_item(struct scan *sc, struct shed_merge_item *it, bool *escaped)
{
    const char *start = sc->p;
    bool esc;
    int rc;

    memset(it, 0, sizeof(*it));
    if (*sc->p == '"') {
        if ((rc = skip_string(sc, escaped)) < 0)
            return rc;
        it->id_raw.ptr = start;
        it->id_raw.len = (size_t)(sc->p - start);
    } else if (*sc->p == '{') {
        bool first = true;

        sc->p++;
        for (;;) {
            const char *k, *v;
            size_t klen;

            ws(sc);
            if (sc->p >= sc->end)
                return -EBADMSG;
            if (*sc->p == '}' && first) {
                sc->p++;
                break;
            }
            if (*sc->p != '"')
                return -EBADMSG;
            k = sc->p;
            if ((rc = skip_string(sc, &esc)) < 0)
                return rc;
            klen = (size_t)(sc->p - k);
            ws(sc);
            if (sc->p >= sc->end || *sc->p != ':')
                return -EBADMSG;
            sc->p++;
            ws(sc);
            v = sc->p;
            if (klen == 4 && memcmp(k, "\"id\"", 4) == 0) {
                if (sc->p >= sc->end || *sc->p != '"')
                    return -EBADMSG;
                if ((rc = skip_string(sc, escaped)) < 0)
                    return rc;
                it->id_raw.ptr = v;
                it->id_raw.len = (size_t)(sc->p - v);
            } else {
                struct shed_merge_span val;

                if ((rc = skip_value(sc, 1)) < 0)
                    return rc;
                val.ptr = v;
                val.len = (size_t)(sc->p - v);
                if (klen == 6 && memcmp(k, "\"body\"", 6) == 0)
                    it->body = val;
                else if (klen == 16 && memcmp(k, "\"body_base64url\"", 16) == 0)
                    it->body64 = val;
                else if (klen == 5 && memcmp(k, "\"ttl\"", 5) == 0)
                    it->ttl = val;
                else if (klen == 6 && memcmp(k, "\"hide\"", 6) == 0)
                    it->hide = val;
                else if (klen == 7 && memcmp(k, "\"stamp\"", 7) == 0 &&
                         (rc = stamp_value(val, &it->stamp)) < 0)
                    return rc;
            }
            ws(sc);
            if (sc->p >= sc->end)
                return -EBADMSG;
            if (*sc->p == '}') {
                sc->p++;
                break;
            }
            if (*sc->p != ',')
                return -EBADMSG;
            sc->p++;
            first = false;
        }
        if (it->id_raw.ptr == NULL)
            return -EBADMSG;
    } else {
        return -EBADMSG;
    }
    it->raw.ptr = start;
    it->raw.len = (size_t)(sc->p - start);
    return 0;
}

static int
parse_fail(struct shed_merge_list *l, int rc)
{
    int status = l->status;

    shed_merge_list_clear(l);
    l->status = status;
    return rc;
}

int
shed_merge_parse(struct shed_merge_list *l, int status, const char *body, size_t len, int64_t asked)
{
    struct scan sc;
    size_t cap = 0, arena_used = 0;
    bool need_arena = false;
    int rc;

    shed_merge_list_clear(l);
    l->status = status;
    if (status != 200)
        return 0;
    /* Own a copy: the items point into it after the caller's buffer is gone. */
    l->text = malloc(len + 1);
    if (l->text == NULL)
        return -ENOMEM;
    if (len > 0)
        memcpy(l->text, body, len);
    l->text[len] = '\0';
    sc.p = l->text;
    sc.end = l->text + len;
    ws(&sc);
    if (sc.p >= sc.end || *sc.p != '[')
        return parse_fail(l, -EBADMSG);
    sc.p++;
    ws(&sc);
    if (sc.p < sc.end && *sc.p == ']') {
        sc.p++;
    } else {
        for (;;) {
            bool escaped = false;

            if (l->n == SHED_MERGE_MAX_ITEMS)
                return parse_fail(l, -E2BIG);
            if (l->n == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                struct shed_merge_item *ni = realloc(l->items, ncap * sizeof(*ni));

                if (ni == NULL)
                    return parse_fail(l, -ENOMEM);
                l->items = ni;
                cap = ncap;
            }
            ws(&sc);
            if (sc.p >= sc.end)
                return parse_fail(l, -EBADMSG);
            if ((rc = scan_item(&sc, &l->items[l->n], &escaped)) < 0)
                return parse_fail(l, rc);
            /* id without the quotes; escaped ones are decoded below */
            l->items[l->n].id = l->items[l->n].id_raw.ptr + 1;
            l->items[l->n].idlen = l->items[l->n].id_raw.len - 2;
            if (escaped) {
                need_arena = true;
                l->items[l->n].idlen = SIZE_MAX; /* marks "decode me" */
            }
            l->n++;
            ws(&sc);
            if (sc.p < sc.end && *sc.p == ',') {
                sc.p++;
                continue;
            }
            if (sc.p < sc.end && *sc.p == ']') {
                sc.p++;
                break;
            }
            return parse_fail(l, -EBADMSG);
        }
    }
    ws(&sc);
    if (sc.p != sc.end)
        return parse_fail(l, -EBADMSG);
    if (need_arena) {
        l->arena = malloc(len + 1);
        if (l->arena == NULL)
            return parse_fail(l, -ENOMEM);
        for (size_t i = 0; i < l->n; i++) {
            struct shed_merge_item *it = &l->items[i];
            long n;

            if (it->idlen != SIZE_MAX)
                continue;
            n = unescape(it->id_raw.ptr, it->id_raw.ptr + it->id_raw.len, l->arena + arena_used);
            if (n < 0)
                return parse_fail(l, -EBADMSG);
            it->id = l->arena + arena_used;
            it->idlen = (size_t)n;
            arena_used += (size_t)n;
        }
    }
    l->truncated = asked > 0 && (int64_t)l->n >= asked;
    return 0;
}

size_t
shed_merge_items(const struct shed_merge_list *lists, size_t n)
{
    size_t t = 0;

    for (size_t i = 0; i < n; i++)
        t += lists[i].n;
    return t;
}

static int
item_cmp(const struct shed_merge_item *a, const struct shed_merge_item *b)
{
    return proto_burrow_key_cmp(a->stamp, a->id, a->idlen, b->stamp, b->id, b->idlen);
}

/* qsort() has no context argument: the lists of the sort running on this
 * thread. */
static _Thread_local const struct shed_merge_list *sort_lists;

static int
pick_cmp(const void *a, const void *b)
{
    const struct shed_merge_pick *x = a, *y = b;
    int c = item_cmp(&sort_lists[x->list].items[x->item], &sort_lists[y->list].items[y->item]);

    if (c != 0)
        return c;
    /* the same key twice (copies): the earlier list first, stable */
    if (x->list != y->list)
        return x->list < y->list ? -1 : 1;
    return x->item < y->item ? -1 : x->item > y->item;
}

static void
sort_picks(const struct shed_merge_list *lists, struct shed_merge_pick *p, size_t n)
{
    sort_lists = lists;
    qsort(p, n, sizeof(*p), pick_cmp);
    sort_lists = NULL;
}

long
shed_merge_sorted(const struct shed_merge_list *lists, size_t n, int64_t limit, bool horizon,
                  struct shed_merge_pick *picks, size_t max, struct shed_merge_cut *cut)
{
    const struct shed_merge_item *bound = NULL;
    struct shed_merge_set seen;
    int64_t clock = INT64_MAX;
    size_t nc = 0, np = 0;
    bool excluded = false;

    memset(cut, 0, sizeof(*cut));
    /* Nothing past the first end of a truncated list, nor past the horizon. */
    for (size_t li = 0; li < n; li++) {
        const struct shed_merge_list *l = &lists[li];

        if (l->status == 200 && l->truncated && l->n > 0 &&
            (bound == NULL || item_cmp(&l->items[l->n - 1], bound) < 0))
            bound = &l->items[l->n - 1];
        if (horizon && l->status != 0 && l->clock > 0 && l->clock < clock)
            clock = l->clock;
    }
    for (size_t li = 0; li < n; li++) {
        for (size_t ii = 0; ii < lists[li].n; ii++) {
            const struct shed_merge_item *it = &lists[li].items[ii];

            if (it->drop)
                continue;
            if (bound != NULL && item_cmp(it, bound) > 0) {
                excluded = true;
                continue;
            }
            if (it->stamp > clock) {
                excluded = true;
                cut->horizon = true;
                continue;
            }
            if (nc == max)
                return -ENOMEM;
            picks[nc].list = (uint32_t)li;
            picks[nc].item = (uint32_t)ii;
            nc++;
        }
    }
    sort_picks(lists, picks, nc);
    if (shed_merge_set_init(&seen, nc) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < nc; i++) {
        const struct shed_merge_item *it = &lists[picks[i].list].items[picks[i].item];
        int rc = shed_merge_set_add(&seen, it->id, it->idlen);

        if (rc < 0) {
            shed_merge_set_free(&seen);
            return rc;
        }
        if (rc == 0)
            continue;
        if (limit > 0 && (int64_t)np >= limit) {
            cut->more = true;
            break;
        }
        picks[np++] = picks[i];
    }
    shed_merge_set_free(&seen);
    if (excluded || bound != NULL)
        cut->more = true;
    if (limit > 0 && (int64_t)np >= limit)
        cut->more = true;
    cut->want = bound != NULL && (limit <= 0 || (int64_t)np < limit);
    return (long)np;
}

int
shed_merge_stamp_of(const char *body, size_t len, int64_t *stamp)
{
    struct shed_merge_item it;
    struct scan sc = {body, body + len};
    bool esc;
    int rc;

    ws(&sc);
    if (sc.p >= sc.end || *sc.p != '{')
        return -EBADMSG;
    it.stamp = -1;
    if ((rc = scan_item(&sc, &it, &esc)) < 0)
        return rc;
    /* scan_item() zeroes the item first: a stamp of 0 is none */
    if (it.stamp <= 0)
        return -EBADMSG;
    *stamp = it.stamp;
    return 0;
}

long
shed_merge_window(const struct shed_merge_list *lists, size_t n, const char *marker, size_t mlen,
                  int64_t limit, struct shed_merge_pick *picks, size_t max)
{
    struct shed_merge_set seen;
    size_t np = 0, start = 0, out = 0, *slot = NULL;

    if (shed_merge_set_init(&seen, shed_merge_items(lists, n)) < 0)
        return -ENOMEM;
    /* One pick per id: the copy with the smallest stamp. <slot> maps the
     * set's slots to picks (the set keeps no values). */
    slot = malloc((seen.cap ? seen.cap : 1) * sizeof(*slot));
    for (size_t li = 0; slot != NULL && li < n; li++) {
        for (size_t ii = 0; ii < lists[li].n; ii++) {
            const struct shed_merge_item *it = &lists[li].items[ii];
            size_t k;

            if (set_find(&seen, it->id, it->idlen, &k)) {
                const struct shed_merge_pick *p = &picks[slot[k]];

                if (it->stamp < lists[p->list].items[p->item].stamp) {
                    picks[slot[k]].list = (uint32_t)li;
                    picks[slot[k]].item = (uint32_t)ii;
                }
                continue;
            }
            if (np == max)
                break;
            /* never grows: sized for every item up front */
            seen.keys[k] = it->id != NULL ? it->id : "";
            seen.lens[k] = it->idlen;
            seen.n++;
            slot[k] = np;
            picks[np].list = (uint32_t)li;
            picks[np].item = (uint32_t)ii;
            np++;
        }
    }
    shed_merge_set_free(&seen);
    if (slot == NULL)
        return -ENOMEM;
    free(slot);
    sort_picks(lists, picks, np);
    if (marker != NULL)
        for (size_t i = 0; i < np; i++) {
            const struct shed_merge_item *it = &lists[picks[i].list].items[picks[i].item];

            if (it->idlen == mlen && memcmp(it->id, marker, mlen) == 0)
                start = i + 1;
        }
    for (size_t i = start; i < np; i++) {
        if (limit > 0 && (int64_t)out >= limit)
            break;
        picks[out++] = picks[i];
    }
    return (long)out;
}

enum proto_burrow_detail
shed_merge_default_detail(enum proto_burrow_level level, bool is_get)
{
    if (!is_get)
        return PROTO_DETAIL_NONE;
    return level == PROTO_BURROW_MESSAGES ? PROTO_DETAIL_ALL : PROTO_DETAIL_ID;
}

enum proto_burrow_detail
shed_merge_backend_detail(enum proto_burrow_level level, enum proto_burrow_detail detail)
{
    /* Objects, so that they carry their stamps (shed_stamps=1). */
    if (level != PROTO_BURROW_MESSAGES)
        return PROTO_DETAIL_ALL;
    switch (detail) {
    case PROTO_DETAIL_BODY:
    case PROTO_DETAIL_ALL:
        return PROTO_DETAIL_ALL;
    default:
        return PROTO_DETAIL_ATTRIBUTES;
    }
}

#define SPANS_MAX 9

static size_t
span_lit(struct shed_merge_span *o, const char *lit)
{
    o->ptr = lit;
    o->len = strlen(lit);
    return 1;
}

/* The bytes of one element of the answer at <detail>, as spans of literals
 * and of the backend's element (up to SPANS_MAX; the rest zeroed). Message
 * objects are rebuilt member by member, so that what the backend added for
 * the aggregator ("stamp") never reaches the client. */
static void
project(enum proto_burrow_level level, enum proto_burrow_detail detail,
        const struct shed_merge_item *it, struct shed_merge_span out[SPANS_MAX])
{
    size_t k = 0;

    memset(out, 0, SPANS_MAX * sizeof(out[0]));
    if (level != PROTO_BURROW_MESSAGES) {
        if (detail == PROTO_DETAIL_ALL)
            k += span_lit(&out[k], "{\"id\":");
        out[k++] = it->id_raw;
        if (detail == PROTO_DETAIL_ALL)
            span_lit(&out[k], "}");
        return;
    }
    switch (detail) {
    case PROTO_DETAIL_ID:
        out[0] = it->id_raw;
        break;
    case PROTO_DETAIL_BODY:
        if (it->body.len > 0) {
            out[0] = it->body;
        } else if (it->body64.len > 0) {
            span_lit(&out[0], "{\"body_base64url\":");
            out[1] = it->body64;
            span_lit(&out[2], "}");
        } else {
            span_lit(&out[0], "\"\"");
        }
        break;
    default:
        /* attributes and all */
        if (it->ttl.len == 0 || it->hide.len == 0) {
            out[0] = it->raw; /* not a Burrow message object: as it came */
            break;
        }
        k += span_lit(&out[k], "{\"id\":");
        out[k++] = it->id_raw;
        k += span_lit(&out[k], ",\"ttl\":");
        out[k++] = it->ttl;
        k += span_lit(&out[k], ",\"hide\":");
        out[k++] = it->hide;
        if (detail == PROTO_DETAIL_ALL) {
            if (it->body64.len > 0 && it->body.len == 0) {
                k += span_lit(&out[k], ",\"body_base64url\":");
                out[k++] = it->body64;
            } else {
                k += span_lit(&out[k], ",\"body\":");
                if (it->body.len > 0)
                    out[k++] = it->body;
                else
                    k += span_lit(&out[k], "\"\"");
            }
        }
        span_lit(&out[k], "}");
        break;
    }
}

int
shed_merge_text(struct shed_merge_out *out, int status, const char *text, size_t len)
{
    memset(out, 0, sizeof(*out));
    out->status = status;
    out->ctype = "application/octet-stream";
    if (len > 0) {
        out->body = malloc(len);
        if (out->body == NULL)
            return -ENOMEM;
        memcpy(out->body, text, len);
        out->len = len;
    }
    return 0;
}

void
shed_merge_out_clear(struct shed_merge_out *out)
{
    free(out->body);
    memset(out, 0, sizeof(*out));
}

int
shed_merge_render(enum proto_burrow_level level, enum proto_burrow_detail detail,
                  const struct shed_merge_list *lists, const struct shed_merge_pick *picks,
                  size_t n, const char *notfound, struct shed_merge_out *out)
{
    struct shed_merge_span sp[SPANS_MAX];
    size_t total = 2, o = 0;
    char *buf;

    memset(out, 0, sizeof(*out));
    if (n == 0)
        return shed_merge_text(out, 404, notfound, strlen(notfound));
    if (detail == PROTO_DETAIL_NONE) {
        out->status = 204;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        project(level, detail, &lists[picks[i].list].items[picks[i].item], sp);
        for (int k = 0; k < SPANS_MAX; k++)
            total += sp[k].len;
        total++;
    }
    buf = malloc(total + 1);
    if (buf == NULL)
        return -ENOMEM;
    buf[o++] = '[';
    for (size_t i = 0; i < n; i++) {
        project(level, detail, &lists[picks[i].list].items[picks[i].item], sp);
        if (i > 0)
            buf[o++] = ',';
        for (int k = 0; k < SPANS_MAX; k++) {
            if (sp[k].len > 0)
                memcpy(buf + o, sp[k].ptr, sp[k].len);
            o += sp[k].len;
        }
    }
    buf[o++] = ']';
    buf[o] = '\0';
    out->status = 200;
    out->ctype = "application/json";
    out->body = buf;
    out->len = o;
    return 0;
}
