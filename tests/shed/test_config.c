/* SPDX-License-Identifier: ISC */
/* shed/config: a full good file, every error with file:line:col, unknown
 * and duplicate keys, durations, CIDR parsing and matching. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "shed/config.h"

static const char good[] = "cell: a\n"
                           "roles: [line, aggregator]\n"
                           "listen: [\"127.0.0.1:8080\", \"[::1]:8081\"]\n"
                           "threads: 2\n"
                           "default_service: burrow\n"
                           "state_dir: /var/lib/shed\n"
                           "credential: s3cret\n"
                           "register_networks: [127.0.0.0/8, 10.0.0.0/8, \"fd00::/8\"]\n"
                           "aggregator: http://127.0.0.1:8090/\n"
                           "masters: [http://m1:8080, http://m2:8080]\n"
                           "peers: [http://p1:8080]\n"
                           "cells:\n"
                           "  - {name: b, proximity: 10, sheds: [http://b1:8080]}\n"
                           "  - {name: c, sheds: [http://c1:8080, http://c2:8080]}\n"
                           "timings: {heartbeat_interval: 500ms, lease: 2s, evict_after: 1m,\n"
                           "          drain_window: 60s, pin_lifetime: 30s, join_heartbeats: 3,\n"
                           "          evict_cap: 2, sync_interval: 250}\n"
                           "redirect: {code_get: 307, code_other: 307}\n"
                           "limits: {connections: 2000, connection_memory: 4096, idle_timeout: "
                           "30s, max_members: 500, heartbeat_body: 1024}\n"
                           "aggregation: {list_all: false, backend_timeout: 1500ms,\n"
                           "              busy_poll: 150us}\n"
                           "services:\n"
                           "  burrow: {kind: burrow, buckets: 1024, k: 2, r: 2, weight_scale: "
                           "100, eps: 0.1, seeds: {account: 1, key: 0x10, place: 3}}\n"
                           "  storage: {kind: any}\n";

static struct shed_config *
parse(const char *text, char *err, size_t errlen, int *rc)
{
    struct shed_config *cfg = NULL;
    *rc = shed_config_parse(text, strlen(text), "t.yaml", &cfg, err, errlen);
    return cfg;
}

Test(config, good_file)
{
    char err[SHED_ERR_MAX] = "";
    int rc;
    struct shed_config *c = parse(good, err, sizeof(err), &rc);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_str_eq(c->cell, "a");
    cr_assert_eq(c->roles, SHED_ROLE_LINE | SHED_ROLE_AGGREGATOR);
    cr_assert_eq(c->nlisten, 2);
    cr_assert_str_eq(c->listen[1], "[::1]:8081");
    cr_assert_eq(c->threads, 2);
    cr_assert_str_eq(c->default_service, "burrow");
    cr_assert_str_eq(c->state_dir, "/var/lib/shed");
    cr_assert_str_eq(c->credential, "s3cret");
    cr_assert_eq(c->nnetworks, 3);
    cr_assert_str_eq(c->aggregator, "http://127.0.0.1:8090", "trailing slash dropped");
    cr_assert_eq(c->nmasters, 2);
    cr_assert_eq(c->npeers, 1);
    cr_assert_eq(c->ncells, 2);
    cr_assert_eq(c->cells[0].proximity, 10);
    cr_assert_eq(c->cells[1].nsheds, 2);
    cr_assert_eq(c->cells[1].proximity, 100);
    cr_assert_eq(c->timings.heartbeat_interval_ms, 500);
    cr_assert_eq(c->timings.lease_ms, 2000);
    cr_assert_eq(c->timings.evict_after_ms, 60000);
    cr_assert_eq(c->timings.join_heartbeats, 3);
    cr_assert_eq(c->timings.evict_cap, 2);
    cr_assert_eq(c->timings.sync_interval_ms, 250);
    cr_assert_eq(c->code_get, 307);
    cr_assert_eq(c->limits.connections, 2000);
    cr_assert_eq(c->limits.idle_timeout_ms, 30000);
    cr_assert_eq(c->limits.heartbeat_body, 1024);
    cr_assert_eq(c->list_all, false);
    cr_assert_eq(c->backend_timeout_ms, 1500);
    cr_assert_eq(c->busy_poll_us, 150);
    cr_assert_eq(c->nservices, 2);
    cr_assert_eq(c->services[0].kind, SHED_KIND_BURROW);
    cr_assert_eq(c->services[0].ring.buckets, 1024);
    cr_assert_eq(c->services[0].ring.seed_key, 16);
    cr_assert_eq(c->services[1].kind, SHED_KIND_ANY);
    cr_assert_eq(c->services[1].ring.buckets, 1);
    shed_config_free(c);
}

Test(config, defaults)
{
    char err[SHED_ERR_MAX] = "";
    int rc;
    struct shed_config *c = parse("cell: x\ncredential: k\n", err, sizeof(err), &rc);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(c->roles, SHED_ROLE_LINE);
    cr_assert_str_eq(c->listen[0], "127.0.0.1:8080");
    cr_assert_eq(c->timings.lease_ms, 3000);
    cr_assert_eq(c->timings.join_heartbeats, 2);
    cr_assert_eq(c->code_get, 302);
    cr_assert_eq(c->code_other, 307);
    cr_assert_eq(c->busy_poll_us, SHED_BUSY_POLL_DEFAULT_US);
    cr_assert_eq(c->limits.connection_memory, 16384);
    cr_assert_eq(c->limits.max_members, 100000);
    cr_assert_eq(c->nservices, 1);
    cr_assert_str_eq(c->services[0].name, "burrow");
    cr_assert(shed_cidr_match(c->networks, c->nnetworks, "127.1.2.3"));
    cr_assert(!shed_cidr_match(c->networks, c->nnetworks, "10.0.0.1"));
    shed_config_free(c);
}

struct bad {
    const char *text;
    const char *msg; /* expected prefix of err */
};

static const struct bad bads[] = {
    {"cell: a\ncredential: k\nbogus: 1\n", "t.yaml:3:1: unknown key 'bogus'"},
    {"cell: a\ncredential: k\ncell: b\n", "t.yaml:3:1: duplicate key 'cell'"},
    {"cell: a\ncredential: k\ntimings: {lease: 3x}\n", "t.yaml:3:18: lease: '3x' is not"},
    {"cell: a\ncredential: k\ntimings:\n  nope: 1s\n", "t.yaml:4:3: unknown key 'nope'"},
    {"cell: a\ncredential: k\nroles: [line, bogus]\n", "t.yaml:3:15: unknown role"},
    {"cell: a\ncredential: k\nlisten: [\"localhost:80\"]\n", "t.yaml:3:10: 'localhost:80'"},
    {"cell: a\ncredential: k\nregister_networks: [10.0.0.0/33]\n", "t.yaml:3:21: '10.0.0.0/33'"},
    {"cell: a\ncredential: k\naggregator: ftp://x\n", "t.yaml:3:13: 'ftp://x' is not"},
    {"cell: a\ncredential: k\naggregation: {busy_poll: 20ms}\n",
     "t.yaml:3:26: busy_poll must be in 0us..10000us"},
    {"cell: a\ncredential: k\naggregation: {busy_poll: 1.5ms}\n",
     "t.yaml:3:26: busy_poll: '1.5ms'"},
    {"cell: a\ncredential: k\ntimings: {lease: 1500us}\n", "t.yaml:3:18: lease: '1500us' is not"},
    {"cell: a\ncredential: k\nredirect: {code_get: 301}\n", "t.yaml:3:22: code_get must be 302"},
    {"cell: a\ncredential: k\nlimits: {connections: 0}\n", "t.yaml:3:23: connections must be in"},
    {"cell: a\ncredential: k\nservices: {burrow: {kind: burrow, buckets: 1000}}\n",
     "t.yaml:3:20: service 'burrow': bad ring"},
    {"cell: a\ncredential: k\nservices: {s: {kind: weird}}\n", "t.yaml:3:15: service 's': kind"},
    {"cell: a\ncredential: k\nservices: {s: {kind: any, k: 2}}\n",
     "t.yaml:3:15: service 's': kind any takes no ring"},
    {"cell: a\ncredential: k\nservices: {s: {kind: burrow, seeds: {acct: 1}}}\n",
     "t.yaml:3:38: unknown key 'acct'"},
    {"cell: a\ncredential: k\ncells: [{proximity: 1}]\n", "t.yaml:3:9: a cell needs a name"},
    {"cell: A\ncredential: k\n", "t.yaml:1:7: name 'A'"},
    {"cell: a\ncredential: k\n  bad indent: [\n", "t.yaml:"},
    {"credential: k\n", "t.yaml: missing required key 'cell'"},
    {"cell: a\n", "t.yaml: missing required key 'credential'"},
    {"cell: a\ncredential: k\ncredential_file: /x\n",
     "t.yaml:3:1: give credential or credential_file"},
    {"cell: a\ncredential: k\ntimings: {heartbeat_interval: 3s, lease: 2s}\n",
     "t.yaml:3:1: timings: lease"},
    {"cell: a\ncredential: k\ntimings: {pin_lifetime: 2m}\n", "t.yaml:3:1: timings: pin_lifetime"},
    {"cell: a\ncredential: k\ndefault_service: nope\n", "t.yaml:3:1: default_service 'nope'"},
    {"cell: a\ncredential: k\nroles: [master]\n", "t.yaml: the master role needs cells"},
    {"cell: a\ncredential: k\nthreads: 0\n", "t.yaml:3:10: threads must be in 1..64"},
    {"- a\n- b\n", "t.yaml:1:1: expected a mapping"},
    {"", "t.yaml: empty config"},
};

Test(config, errors_name_file_line_col)
{
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        char err[SHED_ERR_MAX] = "";
        int rc;
        struct shed_config *c = parse(bads[i].text, err, sizeof(err), &rc);
        cr_assert_lt(rc, 0, "case %zu should fail", i);
        cr_assert_null(c);
        cr_assert(strncmp(err, bads[i].msg, strlen(bads[i].msg)) == 0,
                  "case %zu: got '%s', want prefix '%s'", i, err, bads[i].msg);
    }
}

Test(config, credential_file)
{
    char path[] = "/tmp/shed-cred-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "tok3n\n", 6), 6);
    close(fd);
    char text[256], err[SHED_ERR_MAX] = "";
    snprintf(text, sizeof(text), "cell: a\ncredential_file: %s\n", path);
    int rc;
    struct shed_config *c = parse(text, err, sizeof(err), &rc);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_str_eq(c->credential, "tok3n");
    shed_config_free(c);
    unlink(path);
    c = parse(text, err, sizeof(err), &rc);
    cr_assert_lt(rc, 0);
    cr_assert(strstr(err, "t.yaml:2:1: credential_file") == err, "%s", err);
}

Test(config, load_missing_file)
{
    char err[SHED_ERR_MAX] = "";
    struct shed_config *c = NULL;
    cr_assert_eq(shed_config_load("/nonexistent/shed.yaml", &c, err, sizeof(err)), -ENOENT);
    cr_assert(strstr(err, "/nonexistent/shed.yaml") == err);
}

Test(config, durations)
{
    uint64_t ms;
    cr_assert_eq(shed_config_duration("250ms", &ms), 0);
    cr_assert_eq(ms, 250);
    cr_assert_eq(shed_config_duration("3s", &ms), 0);
    cr_assert_eq(ms, 3000);
    cr_assert_eq(shed_config_duration("2m", &ms), 0);
    cr_assert_eq(ms, 120000);
    cr_assert_eq(shed_config_duration("17", &ms), 0);
    cr_assert_eq(ms, 17);
    cr_assert_eq(shed_config_duration("2000us", &ms), 0);
    cr_assert_eq(ms, 2, "whole milliseconds may be given in us");
    cr_assert_eq(shed_config_duration("1500us", &ms), -EINVAL);
    cr_assert_eq(shed_config_duration("1h", &ms), 0, "hours: common/duration, as on command lines");
    cr_assert_eq(ms, 3600000);
    cr_assert_eq(shed_config_duration("1d", &ms), -EINVAL);
    cr_assert_eq(shed_config_duration("s", &ms), -EINVAL);
    cr_assert_eq(shed_config_duration("-1s", &ms), -EINVAL);
    cr_assert_eq(shed_config_duration("1 s", &ms), -EINVAL);
    cr_assert_eq(shed_config_duration("99999999999999999999", &ms), -ERANGE);
}

Test(config, cidr)
{
    struct shed_cidr n[3];
    cr_assert_eq(shed_cidr_parse("10.0.0.0/8", &n[0]), 0);
    cr_assert_eq(shed_cidr_parse("192.168.1.7", &n[1]), 0);
    cr_assert_eq(shed_cidr_parse("fd00::/8", &n[2]), 0);
    cr_assert(shed_cidr_match(n, 3, "10.255.1.2"));
    cr_assert(!shed_cidr_match(n, 3, "11.0.0.1"));
    cr_assert(shed_cidr_match(n, 3, "192.168.1.7"));
    cr_assert(!shed_cidr_match(n, 3, "192.168.1.8"));
    cr_assert(shed_cidr_match(n, 3, "fd12::1"));
    cr_assert(!shed_cidr_match(n, 3, "fe80::1"));
    cr_assert(shed_cidr_match(n, 3, "::ffff:10.1.2.3"), "mapped IPv4 is IPv4");
    cr_assert(!shed_cidr_match(n, 3, "backend.example"), "names never match");
    cr_assert(!shed_cidr_match(n, 3, ""));
    struct shed_cidr odd;
    cr_assert_eq(shed_cidr_parse("10.1.2.3/12", &odd), 0);
    cr_assert(shed_cidr_match(&odd, 1, "10.15.0.0"));
    cr_assert(!shed_cidr_match(&odd, 1, "10.16.0.0"));
    cr_assert_eq(shed_cidr_parse("10.0.0.0/", &odd), -EINVAL);
    cr_assert_eq(shed_cidr_parse("::1/129", &odd), -EINVAL);
    cr_assert_eq(shed_cidr_parse("nope", &odd), -EINVAL);
    struct shed_cidr all;
    cr_assert_eq(shed_cidr_parse("0.0.0.0/0", &all), 0);
    cr_assert(shed_cidr_match(&all, 1, "8.8.8.8"));
}
