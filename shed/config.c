/* SPDX-License-Identifier: ISC */
/*
 * shed/config: YAML -> struct shed_config. One yaml_parser_load(), then a walk
 * over {key, setter, offsetof} tables (nginx/twemproxy style) that copies
 * every value into the struct, then yaml_document_delete(). Unknown and
 * duplicate keys are errors; every error names file:line:col. Cross-key rules
 * live in validate(), a separate pass.
 */
#include "shed/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/duration.h"

#define CONFIG_FILE_MAX (1u << 20) /* bytes in a config file */
#define TABLE_MAX       32         /* entries in one key table */

struct ctx {
    const char *file;
    yaml_document_t *doc;
    struct shed_config *cfg;
    char *err;
    size_t errlen;
    yaml_mark_t top_marks[TABLE_MAX]; /* where each top-level key was seen */
    bool top_seen[TABLE_MAX];
};

struct cmd;
typedef int set_fn(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd);

struct cmd {
    const char *key;
    set_fn *set;
    size_t off;            /* field offset in the struct being filled */
    uint64_t min, max;     /* range for numbers; max is the buffer size for strings */
    const struct cmd *sub; /* nested table for maps */
};

static int errat(struct ctx *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
errat(struct ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[SHED_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n != NULL)
        snprintf(c->err, c->errlen, "%s:%zu:%zu: %s", c->file, n->start_mark.line + 1,
                 n->start_mark.column + 1, msg);
    else
        snprintf(c->err, c->errlen, "%s: %s", c->file, msg);
    return -EINVAL;
}

static int errmark(struct ctx *c, int topidx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
errmark(struct ctx *c, int topidx, const char *fmt, ...)
{
    char msg[SHED_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (topidx >= 0 && c->top_seen[topidx])
        snprintf(c->err, c->errlen, "%s:%zu:%zu: %s", c->file, c->top_marks[topidx].line + 1,
                 c->top_marks[topidx].column + 1, msg);
    else
        snprintf(c->err, c->errlen, "%s: %s", c->file, msg);
    return -EINVAL;
}

static const char *
scalar(yaml_node_t *n, size_t *len)
{
    if (n->type != YAML_SCALAR_NODE)
        return NULL;
    *len = n->data.scalar.length;
    return (const char *)n->data.scalar.value;
}

/* Copy a scalar into a fixed buffer of <size> bytes. */
static int
copy_scalar(struct ctx *c, yaml_node_t *n, char *dst, size_t size, const char *what)
{
    size_t len;
    const char *s = scalar(n, &len);
    if (s == NULL)
        return errat(c, n, "%s must be a string", what);
    if (len >= size)
        return errat(c, n, "%s is longer than %zu bytes", what, size - 1);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return errat(c, n, "%s holds a control character", what);
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

static bool
name_ok(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '-' || *s == '_'))
            return false;
    return true;
}

static int
set_name(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    (void)cmd;
    int rc = copy_scalar(c, n, field, SHED_NAME_MAX, "name");
    if (rc < 0)
        return rc;
    if (!name_ok(field))
        return errat(c, n, "name '%s' must be 1..63 of [a-z0-9_-]", (char *)field);
    return 0;
}

static int
set_str(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    int rc = copy_scalar(c, n, field, (size_t)cmd->max, cmd->key);
    if (rc == 0 && *(char *)field == '\0')
        return errat(c, n, "%s must not be empty", cmd->key);
    return rc;
}

static bool
url_ok(const char *s)
{
    const char *p;
    if (strncmp(s, "http://", 7) == 0)
        p = s + 7;
    else if (strncmp(s, "https://", 8) == 0)
        p = s + 8;
    else
        return false;
    if (*p == '\0' || *p == '/')
        return false;
    for (; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\' || *p == '<' ||
            *p == '>' || *p == '`' || *p == '{' || *p == '}' || *p == '|' || *p == '^')
            return false;
    return true;
}

static int
url_into(struct ctx *c, yaml_node_t *n, char *dst)
{
    int rc = copy_scalar(c, n, dst, SHED_URL_MAX, "URL");
    if (rc < 0)
        return rc;
    if (!url_ok(dst))
        return errat(c, n, "'%s' is not an http:// or https:// URL", dst);
    size_t len = strlen(dst);
    while (len > 0 && dst[len - 1] == '/')
        dst[--len] = '\0';
    return 0;
}

static int
set_url(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    (void)cmd;
    return url_into(c, n, field);
}

/* A sequence of URLs into char[SHED_MAX_URLS][SHED_URL_MAX] at <field>; the
 * count is the size_t at offset cmd->min of the same base. */
static int
set_urls(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    (void)cmd;
    char(*arr)[SHED_URL_MAX] = field;
    size_t *count = (size_t *)((char *)field - cmd->off + cmd->min);
    if (n->type != YAML_SEQUENCE_NODE)
        return errat(c, n, "%s must be a list of URLs", cmd->key);
    *count = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e = yaml_document_get_node(c->doc, *it);
        if (*count == SHED_MAX_URLS)
            return errat(c, e, "more than %d URLs", SHED_MAX_URLS);
        int rc = url_into(c, e, arr[*count]);
        if (rc < 0)
            return rc;
        (*count)++;
    }
    return 0;
}

static int
parse_u64(const char *s, size_t len, uint64_t *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (!isdigit((unsigned char)buf[0]))
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 0);
    if (errno != 0 || *end != '\0')
        return -EINVAL;
    *out = v;
    return 0;
}

static int
number(struct ctx *c, yaml_node_t *n, const struct cmd *cmd, uint64_t *v)
{
    size_t len;
    const char *s = scalar(n, &len);
    if (s == NULL || parse_u64(s, len, v) < 0)
        return errat(c, n, "%s must be a non-negative integer", cmd->key);
    if (*v < cmd->min || *v > cmd->max)
        return errat(c, n, "%s must be in %" PRIu64 "..%" PRIu64, cmd->key, cmd->min, cmd->max);
    return 0;
}

static int
set_u32(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    uint64_t v = 0;
    int rc = number(c, n, cmd, &v);
    if (rc == 0)
        *(uint32_t *)field = (uint32_t)v;
    return rc;
}

static int
set_u64(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    uint64_t v = 0;
    int rc = number(c, n, cmd, &v);
    if (rc == 0)
        *(uint64_t *)field = v;
    return rc;
}

static int
set_code(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    uint64_t v = 0;
    int rc = number(c, n, cmd, &v);
    if (rc < 0)
        return rc;
    if (v != 302 && v != 307)
        return errat(c, n, "%s must be 302 or 307", cmd->key);
    *(uint16_t *)field = (uint16_t)v;
    return 0;
}

static int
set_double(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    size_t len;
    const char *s = scalar(n, &len);
    char buf[32];
    if (s == NULL || len == 0 || len >= sizeof(buf))
        return errat(c, n, "%s must be a number", cmd->key);
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (errno != 0 || *end != '\0' || !(v >= 0.0 && v <= 1.0))
        return errat(c, n, "%s must be a number in 0..1", cmd->key);
    *(double *)field = v;
    return 0;
}

static int
set_bool(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    size_t len;
    const char *s = scalar(n, &len);
    if (s != NULL &&
        ((len == 4 && strncmp(s, "true", 4) == 0) || (len == 3 && strncmp(s, "yes", 3) == 0))) {
        *(bool *)field = true;
        return 0;
    }
    if (s != NULL &&
        ((len == 5 && strncmp(s, "false", 5) == 0) || (len == 2 && strncmp(s, "no", 2) == 0))) {
        *(bool *)field = false;
        return 0;
    }
    return errat(c, n, "%s must be true or false", cmd->key);
}

/* <s> in microseconds (common/duration: the syntax shared with the command
 * lines), a bare number in units of <bare> microseconds. */
static int
duration_us(const char *s, uint64_t bare, uint64_t *us)
{
    return duration_parse_us(s, bare, us);
}

int
shed_config_duration(const char *s, uint64_t *ms)
{
    uint64_t us;
    int rc = duration_us(s, 1000, &us);
    if (rc < 0)
        return rc;
    if (us % 1000 != 0)
        return -EINVAL; /* a millisecond setting */
    *ms = us / 1000;
    return 0;
}

/* A duration into a uint64_t field in milliseconds, or with <in_us> in
 * microseconds (a bare number is milliseconds either way). */
static int
set_dur(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd, bool in_us)
{
    char buf[32];
    size_t len;
    const char *s = scalar(n, &len);
    const char *unit = in_us ? "us" : "ms";
    uint64_t v;
    if (s == NULL || len >= sizeof(buf))
        return errat(c, n, "%s must be a duration like 500ms, 3s or 1m", cmd->key);
    memcpy(buf, s, len);
    buf[len] = '\0';
    if ((in_us ? duration_us(buf, 1000, &v) : shed_config_duration(buf, &v)) < 0)
        return errat(c, n, "%s: '%s' is not a duration like %s", cmd->key, buf,
                     in_us ? "200us, 1ms or 0" : "500ms, 3s or 1m");
    if (v < cmd->min || v > cmd->max)
        return errat(c, n, "%s must be in %" PRIu64 "%s..%" PRIu64 "%s", cmd->key, cmd->min, unit,
                     cmd->max, unit);
    *(uint64_t *)field = v;
    return 0;
}

static int
set_duration(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    return set_dur(c, n, field, cmd, false);
}

static int
set_duration_us(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    return set_dur(c, n, field, cmd, true);
}

int
shed_cidr_parse(const char *s, struct shed_cidr *out)
{
    char buf[64];
    size_t len = strlen(s);
    if (len >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, len + 1);
    char *slash = strchr(buf, '/');
    long prefix = -1;
    if (slash != NULL) {
        *slash = '\0';
        char *end;
        if (!isdigit((unsigned char)slash[1]))
            return -EINVAL;
        prefix = strtol(slash + 1, &end, 10);
        if (*end != '\0' || prefix > 128)
            return -EINVAL;
    }
    struct shed_cidr r;
    memset(&r, 0, sizeof(r));
    struct in_addr a4;
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        if (prefix > 32)
            return -EINVAL;
        r.addr[10] = 0xff;
        r.addr[11] = 0xff;
        memcpy(r.addr + 12, &a4, 4);
        r.prefix = (uint8_t)(96 + (prefix < 0 ? 32 : prefix));
    } else if (inet_pton(AF_INET6, buf, r.addr) == 1) {
        r.prefix = (uint8_t)(prefix < 0 ? 128 : prefix);
    } else {
        return -EINVAL;
    }
    for (unsigned i = r.prefix; i < 128; i++)
        r.addr[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
    *out = r;
    return 0;
}

bool
shed_cidr_match(const struct shed_cidr *nets, size_t n, const char *host)
{
    uint8_t a[16] = {0};
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        a[10] = 0xff;
        a[11] = 0xff;
        memcpy(a + 12, &a4, 4);
    } else if (inet_pton(AF_INET6, host, a) != 1) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned p = nets[i].prefix, full = p / 8, rest = p % 8;
        if (memcmp(a, nets[i].addr, full) != 0)
            continue;
        if (rest != 0 && ((a[full] ^ nets[i].addr[full]) & (uint8_t)(0xff00u >> rest)) != 0)
            continue;
        return true;
    }
    return false;
}

static int
set_networks(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    (void)field;
    struct shed_config *cfg = c->cfg;
    if (n->type != YAML_SEQUENCE_NODE)
        return errat(c, n, "%s must be a list of CIDR networks", cmd->key);
    cfg->nnetworks = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e = yaml_document_get_node(c->doc, *it);
        char buf[64];
        if (cfg->nnetworks == SHED_MAX_NETWORKS)
            return errat(c, e, "more than %d networks", SHED_MAX_NETWORKS);
        int rc = copy_scalar(c, e, buf, sizeof(buf), "network");
        if (rc < 0)
            return rc;
        if (shed_cidr_parse(buf, &cfg->networks[cfg->nnetworks]) < 0)
            return errat(c, e, "'%s' is not an IPv4 or IPv6 network like 10.0.0.0/8", buf);
        cfg->nnetworks++;
    }
    return 0;
}

/* "host:port" with a literal IPv4 address or "[v6]:port". */
static int
listen_ok(const char *s)
{
    char host[64];
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
        struct in6_addr a;
        if (inet_pton(AF_INET6, host, &a) != 1)
            return -EINVAL;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
            return -EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        struct in_addr a;
        if (inet_pton(AF_INET, host, &a) != 1)
            return -EINVAL;
    }
    char *end;
    if (!isdigit((unsigned char)colon[1]))
        return -EINVAL;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535)
        return -EINVAL;
    return 0;
}

static int
set_listen(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    (void)field;
    struct shed_config *cfg = c->cfg;
    if (n->type == YAML_SCALAR_NODE) {
        cfg->nlisten = 1;
        int rc = copy_scalar(c, n, cfg->listen[0], SHED_URL_MAX, cmd->key);
        if (rc == 0 && listen_ok(cfg->listen[0]) < 0)
            return errat(c, n, "'%s' is not an address like 127.0.0.1:8080 or [::1]:8080",
                         cfg->listen[0]);
        return rc;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return errat(c, n, "%s must be a list of addresses", cmd->key);
    cfg->nlisten = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e = yaml_document_get_node(c->doc, *it);
        if (cfg->nlisten == SHED_MAX_LISTEN)
            return errat(c, e, "more than %d listen addresses", SHED_MAX_LISTEN);
        char *dst = cfg->listen[cfg->nlisten];
        int rc = copy_scalar(c, e, dst, SHED_URL_MAX, cmd->key);
        if (rc < 0)
            return rc;
        if (listen_ok(dst) < 0)
            return errat(c, e, "'%s' is not an address like 127.0.0.1:8080 or [::1]:8080", dst);
        cfg->nlisten++;
    }
    return 0;
}

static int
role_bit(const char *s, size_t len, unsigned *bit)
{
    if (len == 4 && memcmp(s, "line", 4) == 0)
        *bit = SHED_ROLE_LINE;
    else if (len == 10 && memcmp(s, "aggregator", 10) == 0)
        *bit = SHED_ROLE_AGGREGATOR;
    else if (len == 6 && memcmp(s, "master", 6) == 0)
        *bit = SHED_ROLE_MASTER;
    else
        return -EINVAL;
    return 0;
}

static int
set_roles(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    (void)field;
    unsigned roles = 0, bit;
    size_t len;
    const char *s;
    if (n->type == YAML_SCALAR_NODE) {
        s = scalar(n, &len);
        if (role_bit(s, len, &bit) < 0)
            return errat(c, n, "unknown role '%.*s' (line, aggregator, master)", (int)len, s);
        c->cfg->roles = bit;
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return errat(c, n, "%s must be a list of roles", cmd->key);
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e = yaml_document_get_node(c->doc, *it);
        s = scalar(e, &len);
        if (s == NULL || role_bit(s, len, &bit) < 0)
            return errat(c, e, "unknown role (line, aggregator, master)");
        if (roles & bit)
            return errat(c, e, "role '%.*s' given twice", (int)len, s);
        roles |= bit;
    }
    c->cfg->roles = roles;
    return 0;
}

static int walk_map(struct ctx *c, yaml_node_t *n, const struct cmd *table, void *base,
                    yaml_mark_t *marks, bool *seen_out);

static int
set_map(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    (void)field;
    /* Nested tables hold offsets relative to the same base as their parent. */
    return walk_map(c, n, cmd->sub, (char *)field - cmd->off, NULL, NULL);
}

#define CELL(f) offsetof(struct shed_cell_config, f)
static const struct cmd cell_table[] = {
    {"name", set_name, CELL(name), 0, 0, NULL},
    {"proximity", set_u32, CELL(proximity), 0, 1000000, NULL},
    {"sheds", set_urls, CELL(sheds), CELL(nsheds), 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static int
set_cells(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    (void)field;
    struct shed_config *cfg = c->cfg;
    if (n->type != YAML_SEQUENCE_NODE)
        return errat(c, n, "%s must be a list of {name, proximity, sheds}", cmd->key);
    cfg->ncells = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e = yaml_document_get_node(c->doc, *it);
        if (cfg->ncells == SHED_MAX_CELLS)
            return errat(c, e, "more than %d cells", SHED_MAX_CELLS);
        struct shed_cell_config *cell = &cfg->cells[cfg->ncells];
        memset(cell, 0, sizeof(*cell));
        cell->proximity = 100;
        int rc = walk_map(c, e, cell_table, cell, NULL, NULL);
        if (rc < 0)
            return rc;
        if (cell->name[0] == '\0')
            return errat(c, e, "a cell needs a name");
        for (size_t i = 0; i < cfg->ncells; i++)
            if (strcmp(cfg->cells[i].name, cell->name) == 0)
                return errat(c, e, "cell '%s' given twice", cell->name);
        cfg->ncells++;
    }
    return 0;
}

struct svc_tmp {
    struct shed_service_config svc;
    char kind[16];
    bool has_ring_keys;
};

#define SVC(f) offsetof(struct svc_tmp, f)
static const struct cmd seeds_table[] = {
    {"account", set_u64, SVC(svc.ring.seed_account), 0, UINT64_MAX, NULL},
    {"key", set_u64, SVC(svc.ring.seed_key), 0, UINT64_MAX, NULL},
    {"place", set_u64, SVC(svc.ring.seed_place), 0, UINT64_MAX, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};
static const struct cmd service_table[] = {
    {"kind", set_str, SVC(kind), 0, 16, NULL},
    {"buckets", set_u32, SVC(svc.ring.buckets), 1, RING_MAX_BUCKETS, NULL},
    {"k", set_u32, SVC(svc.ring.k), 1, RING_MAX_K, NULL},
    {"r", set_u32, SVC(svc.ring.r), 1, RING_MAX_R, NULL},
    {"weight_scale", set_u32, SVC(svc.ring.weight_scale), 1, RING_WEIGHT_MAX, NULL},
    {"eps", set_double, SVC(svc.ring.eps), 0, 0, NULL},
    {"seeds", set_map, SVC(svc.ring.seed_account), 0, 0, seeds_table},
    {NULL, NULL, 0, 0, 0, NULL},
};

static int
set_services(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    (void)field;
    struct shed_config *cfg = c->cfg;
    if (n->type != YAML_MAPPING_NODE)
        return errat(c, n, "%s must map service names to {kind: burrow|any, ...}", cmd->key);
    cfg->nservices = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (cfg->nservices == SHED_MAX_SERVICES)
            return errat(c, k, "more than %d services", SHED_MAX_SERVICES);
        struct svc_tmp t;
        memset(&t, 0, sizeof(t));
        int rc = set_name(c, k, t.svc.name, NULL);
        if (rc < 0)
            return rc;
        for (size_t i = 0; i < cfg->nservices; i++)
            if (strcmp(cfg->services[i].name, t.svc.name) == 0)
                return errat(c, k, "service '%s' given twice", t.svc.name);
        ring_config_default(&t.svc.ring);
        strcpy(t.kind, "burrow");
        bool seen[TABLE_MAX] = {false};
        if (v->type == YAML_MAPPING_NODE || v->type != YAML_SCALAR_NODE ||
            v->data.scalar.length != 0) {
            rc = walk_map(c, v, service_table, &t, NULL, seen);
            if (rc < 0)
                return rc;
        }
        if (strcmp(t.kind, "burrow") == 0) {
            t.svc.kind = SHED_KIND_BURROW;
            rc = ring_config_check(&t.svc.ring);
            if (rc < 0)
                return errat(c, v,
                             "service '%s': bad ring parameters (buckets a power of two, "
                             "k <= buckets, r <= %d): %s",
                             t.svc.name, RING_MAX_R, ring_strerror(rc));
        } else if (strcmp(t.kind, "any") == 0) {
            t.svc.kind = SHED_KIND_ANY;
            for (int i = 1; i <= 6; i++)
                if (seen[i])
                    return errat(c, v, "service '%s': kind any takes no ring parameters",
                                 t.svc.name);
            t.svc.ring.buckets = 1;
            t.svc.ring.k = 1;
            t.svc.ring.r = 1;
            t.svc.ring.weight_scale = RING_WEIGHT_MAX;
            t.svc.ring.eps = 0;
        } else {
            return errat(c, v, "service '%s': kind must be burrow or any", t.svc.name);
        }
        cfg->services[cfg->nservices++] = t.svc;
    }
    return 0;
}

#define CFG(f) offsetof(struct shed_config, f)
static const struct cmd timings_table[] = {
    {"heartbeat_interval", set_duration, CFG(timings.heartbeat_interval_ms), 10, 3600000, NULL},
    {"lease", set_duration, CFG(timings.lease_ms), 10, 3600000, NULL},
    {"evict_after", set_duration, CFG(timings.evict_after_ms), 0, 86400000, NULL},
    {"drain_window", set_duration, CFG(timings.drain_window_ms), 0, 86400000, NULL},
    {"settle_window", set_duration, CFG(timings.settle_window_ms), 0, 86400000, NULL},
    {"pin_lifetime", set_duration, CFG(timings.pin_lifetime_ms), 0, 86400000, NULL},
    {"join_heartbeats", set_u32, CFG(timings.join_heartbeats), 1, 100, NULL},
    {"evict_cap", set_u32, CFG(timings.evict_cap), 1, 1000000, NULL},
    {"sync_interval", set_duration, CFG(timings.sync_interval_ms), 10, 3600000, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};
static const struct cmd redirect_table[] = {
    {"code_get", set_code, CFG(code_get), 0, 999, NULL},
    {"code_other", set_code, CFG(code_other), 0, 999, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};
static const struct cmd limits_table[] = {
    {"connections", set_u32, CFG(limits.connections), 1, 1000000, NULL},
    {"connection_memory", set_u32, CFG(limits.connection_memory), 2048, 1048576, NULL},
    {"idle_timeout", set_duration, CFG(limits.idle_timeout_ms), 1000, 86400000, NULL},
    {"max_members", set_u32, CFG(limits.max_members), 1, RING_MAX_MEMBERS, NULL},
    {"heartbeat_body", set_u32, CFG(limits.heartbeat_body), 256, 65536, NULL},
    {"header_timeout", set_duration, CFG(limits.header_timeout_ms), 0, 3600000, NULL},
    {"per_source", set_u32, CFG(limits.per_source), 0, 1000000, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};
static const struct cmd aggregation_table[] = {
    {"list_all", set_bool, CFG(list_all), 0, 0, NULL},
    {"list_all_running", set_u32, CFG(list_all_running), 1, 64, NULL},
    {"backend_timeout", set_duration, CFG(backend_timeout_ms), 1, 600000, NULL},
    {"busy_poll", set_duration_us, CFG(busy_poll_us), 0, 10000, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct cmd log_table[] = {
    {"access_every", set_u32, CFG(log_access_every), 0, 1000000000, NULL},
    {"access_rate", set_u32, CFG(log_access_rate), 1, 1000000, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static int
set_endpoints(struct ctx *c, yaml_node_t *n, void *field, const struct cmd *cmd)
{
    (void)field;
    struct shed_membership *mb = &c->cfg->membership;
    if (n->type != YAML_SEQUENCE_NODE)
        return errat(c, n, "%s must be a list of URLs", cmd->key);
    mb->nendpoints = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e = yaml_document_get_node(c->doc, *it);
        if (mb->nendpoints == SHED_ETCD_MAX_ENDPOINTS)
            return errat(c, e, "more than %d endpoints", SHED_ETCD_MAX_ENDPOINTS);
        int rc = url_into(c, e, mb->endpoints[mb->nendpoints]);
        if (rc < 0)
            return rc;
        mb->nendpoints++;
    }
    return 0;
}

static const struct cmd membership_table[] = {
    {"store", set_str, CFG(membership.store_name), 0, 16, NULL},
    {"endpoints", set_endpoints, CFG(membership.endpoints), 0, 0, NULL},
    {"prefix", set_str, CFG(membership.prefix), 0, SHED_ETCD_PREFIX_MAX, NULL},
    {"timeout", set_duration, CFG(membership.timeout_ms), 10, 60000, NULL},
    {"lease_ttl", set_duration, CFG(membership.ttl_ms), 1000, 3600000, NULL},
    {"queue", set_u32, CFG(membership.queue_max), 1, 1000000, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

/* Indices into top_table used by validate() for positions. */
enum {
    TOP_CELL,
    TOP_ROLES,
    TOP_LISTEN,
    TOP_THREADS,
    TOP_DEFAULT_SERVICE,
    TOP_STATE_DIR,
    TOP_CREDENTIAL,
    TOP_CREDENTIAL_FILE,
    TOP_NETWORKS,
    TOP_AGGREGATOR,
    TOP_MASTERS,
    TOP_PEERS,
    TOP_CELLS,
    TOP_TIMINGS,
    TOP_REDIRECT,
    TOP_LIMITS,
    TOP_AGGREGATION,
    TOP_SERVICES,
    TOP_LOG,
    TOP_OPS_CREDENTIAL,
    TOP_MEMBERSHIP,
};
static const struct cmd top_table[] = {
    [TOP_CELL] = {"cell", set_name, CFG(cell), 0, 0, NULL},
    [TOP_ROLES] = {"roles", set_roles, CFG(roles), 0, 0, NULL},
    [TOP_LISTEN] = {"listen", set_listen, CFG(listen), 0, 0, NULL},
    [TOP_THREADS] = {"threads", set_u32, CFG(threads), 1, 64, NULL},
    [TOP_DEFAULT_SERVICE] = {"default_service", set_name, CFG(default_service), 0, 0, NULL},
    [TOP_STATE_DIR] = {"state_dir", set_str, CFG(state_dir), 0, SHED_PATH_MAX, NULL},
    [TOP_CREDENTIAL] = {"credential", set_str, CFG(credential), 0, SHED_CREDENTIAL_MAX, NULL},
    [TOP_CREDENTIAL_FILE] = {"credential_file", set_str, CFG(credential_file), 0, SHED_PATH_MAX,
                             NULL},
    [TOP_NETWORKS] = {"register_networks", set_networks, CFG(networks), 0, 0, NULL},
    [TOP_AGGREGATOR] = {"aggregator", set_url, CFG(aggregator), 0, 0, NULL},
    [TOP_MASTERS] = {"masters", set_urls, CFG(masters), CFG(nmasters), 0, NULL},
    [TOP_PEERS] = {"peers", set_urls, CFG(peers), CFG(npeers), 0, NULL},
    [TOP_CELLS] = {"cells", set_cells, CFG(cells), 0, 0, NULL},
    [TOP_TIMINGS] = {"timings", set_map, CFG(timings), 0, 0, timings_table},
    [TOP_REDIRECT] = {"redirect", set_map, CFG(code_get), 0, 0, redirect_table},
    [TOP_LIMITS] = {"limits", set_map, CFG(limits), 0, 0, limits_table},
    [TOP_AGGREGATION] = {"aggregation", set_map, CFG(list_all), 0, 0, aggregation_table},
    [TOP_SERVICES] = {"services", set_services, CFG(services), 0, 0, NULL},
    [TOP_LOG] = {"log", set_map, CFG(log_access_every), 0, 0, log_table},
    [TOP_OPS_CREDENTIAL] = {"ops_credential", set_bool, CFG(ops_credential), 0, 0, NULL},
    [TOP_MEMBERSHIP] = {"membership", set_map, CFG(membership), 0, 0, membership_table},
    {NULL, NULL, 0, 0, 0, NULL},
};

static int
walk_map(struct ctx *c, yaml_node_t *n, const struct cmd *table, void *base, yaml_mark_t *marks,
         bool *seen_out)
{
    bool seen[TABLE_MAX] = {false};
    if (n->type != YAML_MAPPING_NODE)
        return errat(c, n, "expected a mapping of key: value");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        size_t klen;
        const char *key = scalar(k, &klen);
        if (key == NULL)
            return errat(c, k, "keys must be strings");
        size_t i;
        for (i = 0; table[i].key != NULL; i++)
            if (strlen(table[i].key) == klen && memcmp(table[i].key, key, klen) == 0)
                break;
        if (table[i].key == NULL)
            return errat(c, k, "unknown key '%.*s'", (int)(klen > 64 ? 64 : klen), key);
        if (seen[i])
            return errat(c, k, "duplicate key '%s'", table[i].key);
        seen[i] = true;
        if (marks != NULL)
            marks[i] = k->start_mark;
        int rc = table[i].set(c, v, (char *)base + table[i].off, &table[i]);
        if (rc < 0)
            return rc;
    }
    if (seen_out != NULL)
        memcpy(seen_out, seen, sizeof(seen));
    return 0;
}

static void
defaults(struct shed_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->roles = SHED_ROLE_LINE;
    strcpy(cfg->listen[0], "127.0.0.1:8080");
    cfg->nlisten = 1;
    cfg->threads = 1;
    shed_cidr_parse("127.0.0.0/8", &cfg->networks[0]);
    shed_cidr_parse("::1/128", &cfg->networks[1]);
    cfg->nnetworks = 2;
    cfg->timings = (struct shed_timings){
        .heartbeat_interval_ms = 1000,
        .lease_ms = 3000,
        .evict_after_ms = 30000,
        .drain_window_ms = 60000,
        .pin_lifetime_ms = 30000,
        .settle_window_ms = UINT64_MAX, /* drain_window unless set */
        .join_heartbeats = 2,
        .evict_cap = 1,
        .sync_interval_ms = 500,
    };
    cfg->code_get = 302;
    cfg->code_other = 307;
    cfg->limits = (struct shed_limits){
        .connections = 10000,
        .connection_memory = 16384,
        .idle_timeout_ms = 65000,
        .max_members = 100000,
        .heartbeat_body = 4096,
        .header_timeout_ms = 10000,
        .per_source = 1000,
    };
    cfg->list_all = true;
    cfg->list_all_running = 2;
    cfg->backend_timeout_ms = 2000;
    cfg->busy_poll_us = SHED_BUSY_POLL_DEFAULT_US;
    cfg->log_access_every = 0;
    cfg->log_access_rate = 20;
    strcpy(cfg->services[0].name, "burrow");
    cfg->services[0].kind = SHED_KIND_BURROW;
    ring_config_default(&cfg->services[0].ring);
    cfg->nservices = 1;
    strcpy(cfg->membership.store_name, "builtin");
    strcpy(cfg->membership.prefix, "/shed/");
    cfg->membership.timeout_ms = 1000;
    cfg->membership.queue_max = 0; /* limits.max_members unless given */
}

/* credential_file with systemd's credentials directory: a path that starts
 * with "${CREDENTIALS_DIRECTORY}/" is read there (LoadCredential= sets the
 * variable for the unit); "${CREDENTIALS_DIRECTORY:-DIR}/" falls back to DIR
 * when it is not set, so `shed -t` by hand reads the original file. 0 or
 * -EINVAL with the reason in <why>. */
static int
credential_path(const char *file, char *out, size_t outlen, char *why, size_t whylen)
{
    static const char var[] = "${CREDENTIALS_DIRECTORY";
    const char *dir, *rest, *close;

    if (strncmp(file, var, sizeof(var) - 1) != 0) {
        snprintf(out, outlen, "%s", file);
        return 0;
    }
    rest = file + sizeof(var) - 1;
    close = strchr(rest, '}');
    if (close == NULL || (rest[0] != '}' && strncmp(rest, ":-", 2) != 0) || close[1] != '/') {
        snprintf(why, whylen,
                 "want ${CREDENTIALS_DIRECTORY}/NAME or "
                 "${CREDENTIALS_DIRECTORY:-DIR}/NAME");
        return -EINVAL;
    }
    dir = getenv("CREDENTIALS_DIRECTORY");
    if (dir == NULL || dir[0] == '\0') {
        if (rest[0] == '}') {
            snprintf(why, whylen,
                     "CREDENTIALS_DIRECTORY is not set (systemd's LoadCredential= "
                     "sets it; by hand run CREDENTIALS_DIRECTORY=/etc/shed shed -t)");
            return -EINVAL;
        }
        if (snprintf(out, outlen, "%.*s%s", (int)(close - rest - 2), rest + 2, close + 1) >=
            (int)outlen) {
            snprintf(why, whylen, "path too long");
            return -EINVAL;
        }
        return 0;
    }
    if (snprintf(out, outlen, "%s%s", dir, close + 1) >= (int)outlen) {
        snprintf(why, whylen, "path too long");
        return -EINVAL;
    }
    return 0;
}

static int
read_credential(struct ctx *c)
{
    struct shed_config *cfg = c->cfg;
    char path[SHED_PATH_MAX + 256], why[160];
    if (credential_path(cfg->credential_file, path, sizeof(path), why, sizeof(why)) < 0)
        return errmark(c, TOP_CREDENTIAL_FILE, "credential_file %s: %s", cfg->credential_file, why);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errmark(c, TOP_CREDENTIAL_FILE, "credential_file %s: %s%s%s", cfg->credential_file,
                       strcmp(path, cfg->credential_file) != 0 ? path : "",
                       strcmp(path, cfg->credential_file) != 0 ? ": " : "", strerror(errno));
    size_t n = fread(cfg->credential, 1, sizeof(cfg->credential), f);
    bool more = n == sizeof(cfg->credential);
    fclose(f);
    if (more)
        return errmark(c, TOP_CREDENTIAL_FILE, "credential_file %s: longer than %d bytes",
                       cfg->credential_file, SHED_CREDENTIAL_MAX - 1);
    while (n > 0 && isspace((unsigned char)cfg->credential[n - 1]))
        n--;
    cfg->credential[n] = '\0';
    if (n == 0)
        return errmark(c, TOP_CREDENTIAL_FILE, "credential_file %s is empty", cfg->credential_file);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)cfg->credential[i] < 0x21 || cfg->credential[i] == 0x7f)
            return errmark(c, TOP_CREDENTIAL_FILE,
                           "credential_file %s: the credential holds a space or control byte",
                           cfg->credential_file);
    return 0;
}

/* membership: builtin (peer sync) or etcd (docs/etcd.md). */
static int
validate_membership(struct ctx *c)
{
    struct shed_membership *mb = &c->cfg->membership;
    size_t plen = strlen(mb->prefix);
    if (strcmp(mb->store_name, "builtin") == 0) {
        mb->store = SHED_STORE_BUILTIN;
        return 0;
    }
    if (strcmp(mb->store_name, "etcd") != 0)
        return errmark(c, TOP_MEMBERSHIP, "membership: store must be builtin or etcd");
    mb->store = SHED_STORE_ETCD;
    if (mb->nendpoints == 0)
        return errmark(c, TOP_MEMBERSHIP, "membership: store etcd needs endpoints");
    if (plen < 2 || mb->prefix[0] != '/' || mb->prefix[plen - 1] != '/')
        return errmark(c, TOP_MEMBERSHIP, "membership: prefix must start and end with '/'");
    /* Every member the registry takes can be kept for etcd: a heartbeat
     * acknowledged while etcd is away is written when it returns. */
    if (mb->queue_max == 0)
        mb->queue_max = c->cfg->limits.max_members;
    if (mb->queue_max < c->cfg->limits.max_members)
        return errmark(c, TOP_MEMBERSHIP,
                       "membership: queue (%" PRIu32
                       ") must be at least limits.max_members (%" PRIu32 ")",
                       mb->queue_max, c->cfg->limits.max_members);
    if (c->cfg->npeers > 0 && (c->cfg->roles & (SHED_ROLE_LINE | SHED_ROLE_AGGREGATOR)))
        return errmark(c, TOP_PEERS,
                       "peers: with membership store etcd the cell's sheds share etcd, not peers");
    return 0;
}

/* Cross-key rules, after every value is in place. */
static int
validate(struct ctx *c)
{
    struct shed_config *cfg = c->cfg;
    struct shed_timings *t = &cfg->timings;
    if (cfg->cell[0] == '\0')
        return errmark(c, -1, "missing required key 'cell'");
    if (cfg->roles == 0)
        return errmark(c, TOP_ROLES, "roles must name at least one role");
    if (cfg->nlisten == 0)
        return errmark(c, TOP_LISTEN, "listen must hold at least one address");
    if (c->top_seen[TOP_CREDENTIAL] && c->top_seen[TOP_CREDENTIAL_FILE])
        return errmark(c, TOP_CREDENTIAL_FILE, "give credential or credential_file, not both");
    if (c->top_seen[TOP_CREDENTIAL_FILE]) {
        int rc = read_credential(c);
        if (rc < 0)
            return rc;
    } else if (!c->top_seen[TOP_CREDENTIAL]) {
        return errmark(c, -1, "missing required key 'credential' (or 'credential_file')");
    }
    for (const char *p = cfg->credential; *p != '\0'; p++)
        if ((unsigned char)*p < 0x21)
            return errmark(c, TOP_CREDENTIAL, "credential must not hold spaces");
    if (t->lease_ms <= t->heartbeat_interval_ms)
        return errmark(c, TOP_TIMINGS,
                       "timings: lease (%" PRIu64
                       "ms) must be longer than heartbeat_interval (%" PRIu64 "ms)",
                       t->lease_ms, t->heartbeat_interval_ms);
    if (t->evict_after_ms < t->lease_ms)
        return errmark(c, TOP_TIMINGS, "timings: evict_after must be at least lease");
    if (t->pin_lifetime_ms > t->drain_window_ms)
        return errmark(c, TOP_TIMINGS, "timings: pin_lifetime must not exceed drain_window");
    if (t->settle_window_ms == UINT64_MAX)
        t->settle_window_ms = t->drain_window_ms;
    if (cfg->default_service[0] != '\0' &&
        shed_config_service(cfg, cfg->default_service, strlen(cfg->default_service)) == NULL)
        return errmark(c, TOP_DEFAULT_SERVICE, "default_service '%s' is not in services",
                       cfg->default_service);
    if (cfg->nservices == 0)
        return errmark(c, TOP_SERVICES, "services must hold at least one service");
    if ((cfg->roles & SHED_ROLE_MASTER) && cfg->ncells == 0)
        return errmark(c, TOP_CELLS, "the master role needs cells");
    return validate_membership(c);
}

static int
parse_doc(struct ctx *c, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = 0;
    if (!yaml_parser_initialize(&parser))
        return -ENOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(c->err, c->errlen, "%s:%zu:%zu: %s", c->file, parser.problem_mark.line + 1,
                 parser.problem_mark.column + 1,
                 parser.problem != NULL ? parser.problem : "YAML syntax error");
        yaml_parser_delete(&parser);
        return -EINVAL;
    }
    c->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        snprintf(c->err, c->errlen, "%s: empty config", c->file);
        rc = -EINVAL;
        goto out;
    }
    rc = walk_map(c, root, top_table, c->cfg, c->top_marks, c->top_seen);
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    c->doc = NULL;
    return rc;
}

int
shed_config_parse(const char *text, size_t len, const char *name, struct shed_config **out,
                  char *err, size_t errlen)
{
    struct shed_config *cfg = malloc(sizeof(*cfg));
    if (cfg == NULL) {
        snprintf(err, errlen, "%s: out of memory", name);
        return -ENOMEM;
    }
    defaults(cfg);
    snprintf(cfg->path, sizeof(cfg->path), "%s", name);
    struct ctx c = {.file = name, .cfg = cfg, .err = err, .errlen = errlen};
    int rc = parse_doc(&c, text, len);
    if (rc == 0)
        rc = validate(&c);
    if (rc < 0) {
        free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int
shed_config_load(const char *path, struct shed_config **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char *buf = malloc(CONFIG_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    int rerr = ferror(f);
    fclose(f);
    int rc;
    if (rerr) {
        snprintf(err, errlen, "%s: read error", path);
        rc = -EIO;
    } else if (n > CONFIG_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %u bytes", path, CONFIG_FILE_MAX);
        rc = -EFBIG;
    } else {
        rc = shed_config_parse(buf, n, path, out, err, errlen);
    }
    free(buf);
    return rc;
}

void
shed_config_free(struct shed_config *cfg)
{
    free(cfg);
}

const struct shed_service_config *
shed_config_service(const struct shed_config *cfg, const char *name, size_t len)
{
    for (size_t i = 0; i < cfg->nservices; i++)
        if (strlen(cfg->services[i].name) == len && memcmp(cfg->services[i].name, name, len) == 0)
            return &cfg->services[i];
    return NULL;
}

const char *
shed_role_name(unsigned role)
{
    switch (role) {
    case SHED_ROLE_LINE:
        return "line";
    case SHED_ROLE_AGGREGATOR:
        return "aggregator";
    case SHED_ROLE_MASTER:
        return "master";
    default:
        return "?";
    }
}
