/* SPDX-License-Identifier: ISC */
/*
 * shed/config: the daemon's YAML configuration (docs/config.md documents
 * every key). The file is loaded once with yaml_parser_load(), walked with
 * {key, setter, offsetof} tables, copied into a struct shed_config and the
 * libyaml document is deleted, so nothing here points into libyaml. A
 * separate validation pass checks ranges and cross-key rules.
 *
 * The schema covers every role (line, aggregator, master): roles that are
 * not built yet only consume the keys already parsed here.
 *
 * Ownership: shed_config_load() returns an owned config; the caller frees it
 * with shed_config_free() (NULL is a no-op). A loaded config is read-only,
 * so any number of threads may read it at once. Strings are fixed-size
 * arrays inside the struct (hard maximums below).
 */
#ifndef SHED_CONFIG_H
#define SHED_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring/ring.h"

#define SHED_NAME_MAX       64  /* cell and service names, incl. NUL */
#define SHED_URL_MAX        256 /* URLs and listen addresses, incl. NUL */
#define SHED_PATH_MAX       512 /* file system paths, incl. NUL */
#define SHED_CREDENTIAL_MAX 256 /* cluster credential, incl. NUL */
#define SHED_MAX_LISTEN     8
#define SHED_MAX_URLS       32 /* masters, peers, sheds of one cell */
#define SHED_MAX_NETWORKS   64
#define SHED_MAX_CELLS      64
#define SHED_MAX_SERVICES   32
#define SHED_ERR_MAX        512 /* a good size for the <err> buffers below */

#define SHED_BUSY_POLL_DEFAULT_US 200 /* aggregation.busy_poll */

enum shed_role {
    SHED_ROLE_LINE = 1u << 0,
    SHED_ROLE_AGGREGATOR = 1u << 1,
    SHED_ROLE_MASTER = 1u << 2,
};

enum shed_service_kind {
    SHED_KIND_BURROW = 0, /* consistent hashing on account/queue/message */
    SHED_KIND_ANY,        /* stateless: any live instance will do */
};

/* An IPv4 or IPv6 network. IPv4 is stored as an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) with the prefix raised by 96, so one matcher serves both. */
struct shed_cidr {
    uint8_t addr[16]; /* network address, host bits cleared */
    uint8_t prefix;   /* 0..128 */
};

struct shed_service_config {
    char name[SHED_NAME_MAX];
    enum shed_service_kind kind;
    struct ring_config ring; /* burrow: the ring parameters; any: B=1,K=1,R=1 */
};

struct shed_cell_config {
    char name[SHED_NAME_MAX];
    uint32_t proximity; /* lower is closer */
    char sheds[SHED_MAX_URLS][SHED_URL_MAX];
    size_t nsheds;
};

struct shed_timings {
    uint64_t heartbeat_interval_ms; /* base interval told to backends */
    uint64_t lease_ms;              /* missed for this long: down */
    uint64_t evict_after_ms;        /* down for this long: evicted */
    uint64_t drain_window_ms;       /* previous ring generation kept this long */
    uint64_t pin_lifetime_ms;       /* Shed-Pin-TTL, <= drain_window */
    uint64_t settle_window_ms;      /* lookups after a liveness change (0: off) */
    uint32_t join_heartbeats;       /* heartbeats before a new member joins */
    uint32_t evict_cap;             /* evictions per heartbeat interval */
    uint64_t sync_interval_ms;      /* peer / master sync (later roles) */
};

struct shed_limits {
    uint32_t connections;       /* MHD connection limit (and RLIMIT_NOFILE) */
    uint32_t connection_memory; /* MHD per-connection pool, bytes */
    uint64_t idle_timeout_ms;   /* keep-alive idle timeout */
    uint32_t max_members;       /* registry size, all services */
    uint32_t heartbeat_body;    /* bytes in one heartbeat body */
    uint64_t header_timeout_ms; /* request headers complete within (0: off) */
    uint32_t per_source;        /* connections from one client address (0: off) */
};

/* membership: where a cell's membership lives (docs/etcd.md). */
enum shed_membership_store {
    SHED_STORE_BUILTIN = 0, /* peer sync between line sheds (the default) */
    SHED_STORE_ETCD,        /* keys under an etcd v3 prefix, watched */
};

#define SHED_ETCD_MAX_ENDPOINTS 8
#define SHED_ETCD_PREFIX_MAX    128 /* incl. NUL */

struct shed_membership {
    enum shed_membership_store store;
    char endpoints[SHED_ETCD_MAX_ENDPOINTS][SHED_URL_MAX]; /* etcd client URLs */
    size_t nendpoints;
    char prefix[SHED_ETCD_PREFIX_MAX]; /* "/shed/": keys are prefix + cell + "/" ... */
    char store_name[16];               /* parsed text of store */
    uint64_t timeout_ms;               /* one etcd request */
    uint64_t ttl_ms;                   /* this shed's etcd lease (0: from timings.lease) */
    uint32_t queue_max;                /* members kept for etcd (>= limits.max_members) */
};

struct shed_config {
    char path[SHED_PATH_MAX]; /* the file it came from */
    char cell[SHED_NAME_MAX];
    unsigned roles; /* enum shed_role bits */
    char listen[SHED_MAX_LISTEN][SHED_URL_MAX];
    size_t nlisten;
    uint32_t threads;                     /* 1: one internal polling thread; >1: a pool */
    char default_service[SHED_NAME_MAX];  /* "" when unset */
    char state_dir[SHED_PATH_MAX];        /* "" when unset */
    char credential[SHED_CREDENTIAL_MAX]; /* from credential or credential_file */
    char credential_file[SHED_PATH_MAX];  /* "" when given inline */
    struct shed_cidr networks[SHED_MAX_NETWORKS];
    size_t nnetworks;
    char aggregator[SHED_URL_MAX]; /* "" when unset */
    char masters[SHED_MAX_URLS][SHED_URL_MAX];
    size_t nmasters;
    char peers[SHED_MAX_URLS][SHED_URL_MAX];
    size_t npeers;
    struct shed_cell_config cells[SHED_MAX_CELLS];
    size_t ncells;
    struct shed_timings timings;
    uint16_t code_get;   /* redirect status for GET/HEAD: 302 or 307 */
    uint16_t code_other; /* redirect status for other methods: 307 or 302 */
    struct shed_limits limits;
    bool list_all;               /* aggregation.list_all: false -> 403 on /v1.0 */
    uint32_t list_all_running;   /* aggregation.list_all_running: /v1.0 lists at once */
    bool ops_credential;         /* /metrics and status pages need the credential */
    uint64_t backend_timeout_ms; /* aggregation.backend_timeout */
    uint64_t busy_poll_us;       /* aggregation.busy_poll (0: off) */
    uint32_t log_access_every;   /* log.access_every: log every Nth redirect (0: off) */
    uint32_t log_access_rate;    /* log.access_rate: at most this many access lines a second */
    struct shed_service_config services[SHED_MAX_SERVICES];
    size_t nservices;
    struct shed_membership membership; /* membership: builtin or etcd */
};

/* Load and validate <path>. On success *out owns a new config and 0 is
 * returned; on error a negative errno, *out is untouched and <err> holds
 * "path:line:col: message" (or "path: message" when no position applies). */
int shed_config_load(const char *path, struct shed_config **out, char *err, size_t errlen);

/* The same from a string; <name> stands for the file name in messages.
 * A credential_file is still read from disk. */
int shed_config_parse(const char *text, size_t len, const char *name, struct shed_config **out,
                      char *err, size_t errlen);

void shed_config_free(struct shed_config *cfg);

/* Parse "ms"/"s"/"m"-suffixed durations ("250ms", "3s", "1m"; a bare number
 * is milliseconds; "us" only for whole milliseconds). 0 or -EINVAL /
 * -ERANGE. */
int shed_config_duration(const char *s, uint64_t *ms);

/* Parse "a.b.c.d/n" or "x:y::z/n" (no prefix: a single host). 0 or -EINVAL. */
int shed_cidr_parse(const char *s, struct shed_cidr *out);

/* Is the literal address <host> (IPv4 dotted quad or IPv6, without brackets)
 * inside one of <n> networks? Names are never resolved: false. */
bool shed_cidr_match(const struct shed_cidr *nets, size_t n, const char *host);

/* The service config named <name> (len bytes), or NULL. */
const struct shed_service_config *shed_config_service(const struct shed_config *cfg,
                                                      const char *name, size_t len);

/* Text for a role bit. */
const char *shed_role_name(unsigned role);

#endif /* SHED_CONFIG_H */
