/* SPDX-License-Identifier: ISC */
/*
 * shedc: the Burrow command line on top of the shed client library. Speaks
 * put, get, list, claim, delete and update for people (plain text) and
 * scripts (--json), shows the redirect chain with --verbose, and prints what
 * it pinned with `stat` or --stat-after (pins live in the process, so they
 * are shown after the requests of the same invocation). The sheds come
 * from --shed, else from the SHED environment variable, else DNS.
 * Command-line conventions: common/cli.h.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/burrow.h"
#include "client/client.h"
#include "common/cli.h"
#include "proto/body.h"

#define BODY_MAX (16u << 20) /* stdin body limit for put */

enum {
    EXIT_OK = 0,
    EXIT_NOTFOUND = 1,
    EXIT_USAGE = 2,
    EXIT_SERVER = 3,
    EXIT_REFUSED = 4,
};

static bool json_out;

static void
usage(FILE *f)
{
    fputs("usage: shedc [--shed HOST:PORT]... [--verbose] [--json] [--stat-after]\n"
          "             [--max-hops N] [--retries N] [--timeout DURATION] [--no-pin] COMMAND ...\n"
          "       shedc --help | --version\n"
          "\n"
          "commands (URL is http://burrow.service/v1.0/ACCOUNT/QUEUE/MESSAGE or a prefix):\n"
          "  put URL [--ttl T] [--hide T]      store stdin as the message body\n"
          "  get URL [--detail D]              print one message's body, byte for byte\n"
          "                                    (--json: the object)\n"
          "  list URL [--limit N] [--all] [--marker ID] [--detail D] [--match-hidden]\n"
          "           [--wait T]               list accounts, queues or messages\n"
          "  claim URL [--hide T] [--wait T] [--limit N]   claim messages of a queue\n"
          "  delete URL                        delete a message (or a list level)\n"
          "  update URL [--ttl T] [--hide T] [--detail D]  change ttl/hide\n"
          "  stat [URL]...                     GET each URL, then print pins and counters\n"
          "\n"
          "  --detail D: what the server returns: none, id, attributes, body or all\n"
          "  (docs/burrow-api.md). T: a duration in whole seconds: 30, 30s, 10m, 1h.\n"
          "\n"
          "options:\n"
          "  --shed HOST:PORT   send NAME.service requests to this shed instead of DNS\n"
          "                     (repeat for several; tried in turn on failure). Default:\n"
          "                     the SHED environment variable (HOST:PORT[,HOST:PORT...])\n"
          "  --verbose, -v      show every hop of the redirect chain on stderr\n"
          "  --json             machine-readable output on stdout\n"
          "  --stat-after       after the command, print pins and counters (as `stat`)\n"
          "  --no-pin           never pin: ask a shed on every request\n"
          "  --max-hops N       redirects followed at most, 1..10 (5)\n"
          "  --retries N        attempts per request, 1..100 (3)\n"
          "  --timeout DURATION per HTTP exchange, 1ms..1h (30s; a bare number is ms)\n"
          "\n"
          "exit status: 0 ok, 1 not found (404), 2 usage error,\n"
          "             3 server or transport error (5xx, unreachable, redirect loop),\n"
          "             4 request refused (another 4xx, e.g. 400)\n",
          f);
}

static int
exit_for(int rc)
{
    switch (-rc) {
    case 0:
        return EXIT_OK;
    case SHED_CLIENT_ENOTFOUND:
        return EXIT_NOTFOUND;
    case SHED_CLIENT_EREFUSED:
        return EXIT_REFUSED;
    case EINVAL:
    case ERANGE:
        return EXIT_USAGE;
    default:
        return EXIT_SERVER;
    }
}

/* A seconds option (--ttl, --hide, --wait): a duration in whole seconds. */
static int
parse_secs(const char *s, const char *what, int64_t *out)
{
    uint64_t v;

    if (cli_duration("shedc", what, s, 1000000, 0, INT64_MAX / 1000000, &v) < 0)
        return -1;
    *out = (int64_t)v;
    return 0;
}

static void
report_error(const char *op, const char *url, int rc, const struct client_burrow_result *r)
{
    if (json_out) {
        json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s#}", "error", shed_client_strerror(rc), "op",
                              op, "status", (json_int_t)r->status, "url", url, "body",
                              r->body ? r->body : "", r->body ? (int)r->body_len : 0);

        if (o != NULL) {
            json_dumpf(o, stdout, JSON_COMPACT);
            fputc('\n', stdout);
            json_decref(o);
        }
    }
    if (r->status != 0)
        fprintf(stderr, "shedc: %s %s: %s (HTTP %ld)%s%.*s\n", op, url, shed_client_strerror(rc),
                r->status, r->body_len ? ": " : "", (int)(r->body_len > 200 ? 200 : r->body_len),
                r->body ? r->body : "");
    else if (shed_client_last_cause()[0] != '\0')
        fprintf(stderr, "shedc: %s %s: %s (last: %s)\n", op, url, shed_client_strerror(rc),
                shed_client_last_cause());
    else
        fprintf(stderr, "shedc: %s %s: %s\n", op, url, shed_client_strerror(rc));
}

static void
print_json(json_t *j)
{
    json_dumpf(j, stdout, JSON_COMPACT | JSON_ENCODE_ANY);
    fputc('\n', stdout);
}

/* A JSON string's bytes, NULs included. */
static void
put_string(const json_t *s)
{
    fwrite(json_string_value(s), 1, json_string_length(s), stdout);
}

/* One list item as a text line: ids and text bodies bare, messages
 * "id<TAB>ttl=..<TAB>hide=..<TAB>body"; a body that is not UTF-8 text is
 * shown as "base64url:<its body_base64url>" so that it stays on its line. */
static void
print_item(json_t *item)
{
    if (json_is_string(item)) {
        put_string(item);
        putchar('\n');
    } else if (json_is_object(item)) {
        json_t *id = json_object_get(item, "id");
        json_t *ttl = json_object_get(item, "ttl");
        json_t *hide = json_object_get(item, "hide");
        json_t *body = json_object_get(item, PROTO_BODY_KEY);
        json_t *body64 = json_object_get(item, PROTO_BODY_B64_KEY);
        const char *sep = "";

        if (id != NULL) {
            if (json_is_string(id))
                put_string(id);
            else
                putchar('?');
            sep = "\t";
        }
        if (json_is_integer(ttl))
            printf("\tttl=%" JSON_INTEGER_FORMAT, json_integer_value(ttl));
        if (json_is_integer(hide))
            printf("\thide=%" JSON_INTEGER_FORMAT, json_integer_value(hide));
        if (json_is_string(body)) {
            fputs(sep, stdout);
            put_string(body);
        } else if (json_is_string(body64)) {
            printf("%sbase64url:", sep);
            put_string(body64);
        }
        putchar('\n');
    } else {
        print_json(item);
    }
}

/* A message's bytes as they are: a newline is added only for a terminal,
 * and only when the bytes do not end with one, so `shedc get URL > file`
 * writes exactly the stored body. */
static void
put_bytes(const char *p, size_t n)
{
    fwrite(p, 1, n, stdout);
    if (n > 0 && p[n - 1] != '\n' && isatty(STDOUT_FILENO))
        putchar('\n');
}

static char *
read_stdin(size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);

    if (buf == NULL)
        return NULL;
    for (;;) {
        size_t r;

        if (n == cap) {
            char *nb;

            if (cap >= BODY_MAX) {
                fprintf(stderr, "shedc: body over %u bytes\n", BODY_MAX);
                free(buf);
                return NULL;
            }
            nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        r = fread(buf + n, 1, cap - n, stdin);
        n += r;
        if (r == 0)
            break;
    }
    *len = n;
    return buf;
}

static void
print_stat(struct shed_client *c)
{
    struct shed_client_metrics m;
    struct client_pin *pins = calloc(1024, sizeof(*pins));
    size_t n = pins ? shed_client_pins(c, pins, 1024) : 0;
    uint64_t now = shed_client_now_ms(c);

    shed_client_metrics(c, &m);
    if (json_out) {
        json_t *arr = json_array();
        json_t *o;

        for (size_t i = 0; i < n; i++)
            json_array_append_new(
                arr, json_pack("{s:s, s:I, s:s, s:I, s:I, s:I, s:s}", "service", pins[i].service,
                               "bucket", (json_int_t)pins[i].bucket, "host", pins[i].host,
                               "generation", (json_int_t)pins[i].generation, "expires_in_ms",
                               (json_int_t)(pins[i].expires_ms - now), "hits",
                               (json_int_t)pins[i].hits, "why", pins[i].why));
        o = json_pack("{s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "pins", arr,
                      "metrics", "requests", (json_int_t)m.requests, "http", (json_int_t)m.http,
                      "redirects", (json_int_t)m.redirects, "pinned", (json_int_t)m.pinned,
                      "shed_asks", (json_int_t)m.shed_asks, "failures", (json_int_t)m.failures,
                      "retries", (json_int_t)m.retries, "pins_set", (json_int_t)m.pins_set,
                      "pins_dropped", (json_int_t)m.pins_dropped, "lookups", (json_int_t)m.lookups);
        if (o != NULL) {
            print_json(o);
            json_decref(o);
        }
    } else {
        printf("pins: %zu\n", n);
        for (size_t i = 0; i < n; i++)
            printf("  %s bucket %" PRIu32 " -> %s  gen %" PRIu64 "  expires in %.1fs  hits %" PRIu64
                   "  (%s)\n",
                   pins[i].service, pins[i].bucket, pins[i].host, pins[i].generation,
                   (double)(pins[i].expires_ms - now) / 1000.0, pins[i].hits, pins[i].why);
        printf("requests %" PRIu64 "  http %" PRIu64 "  redirects %" PRIu64 "  pinned %" PRIu64
               "  shed_asks %" PRIu64 "  failures %" PRIu64 "  retries %" PRIu64
               "  pins_set %" PRIu64 "  pins_dropped %" PRIu64 "  lookups %" PRIu64 "\n",
               m.requests, m.http, m.redirects, m.pinned, m.shed_asks, m.failures, m.retries,
               m.pins_set, m.pins_dropped, m.lookups);
    }
    free(pins);
}

struct cmd_opts {
    int64_t ttl, hide, wait, limit;
    const char *detail, *marker;
    bool all, match_hidden;
};

/* Parse the options after COMMAND (they may follow the URL). Returns the
 * count of argv[0] (the command) plus the positional arguments, which are
 * moved to argv[1..] in order; -1 on a bad option. */
static int
parse_cmd_opts(int argc, char **argv, struct cmd_opts *co)
{
    static const struct option lo[] = {
        {"ttl", required_argument, NULL, 't'},
        {"hide", required_argument, NULL, 'h'},
        {"wait", required_argument, NULL, 'w'},
        {"limit", required_argument, NULL, 'l'},
        {"detail", required_argument, NULL, 'd'},
        {"marker", required_argument, NULL, 'm'},
        {"all", no_argument, NULL, 'a'},
        {"match-hidden", no_argument, NULL, 'H'},
        {NULL, 0, NULL, 0},
    };
    int ch, npos = 1; /* argv[0] is the command */

    memset(co, 0, sizeof(*co));
    co->ttl = co->hide = co->wait = co->limit = -1;
    optind = 0; /* glibc: full re-initialisation for the second pass */
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "-:", lo, NULL)) != -1) {
        switch (ch) {
        case 1:
            argv[npos++] = optarg; /* positional, kept in order */
            break;
        case 't':
            if (parse_secs(optarg, "--ttl", &co->ttl) != 0)
                return -1;
            break;
        case 'h':
            if (parse_secs(optarg, "--hide", &co->hide) != 0)
                return -1;
            break;
        case 'w':
            if (parse_secs(optarg, "--wait", &co->wait) != 0)
                return -1;
            break;
        case 'l':
            if (cli_int("shedc", "--limit", optarg, 0, INT64_MAX, &co->limit) != 0)
                return -1;
            break;
        case 'd':
            co->detail = optarg;
            break;
        case 'm':
            co->marker = optarg;
            break;
        case 'a':
            co->all = true;
            break;
        case 'H':
            co->match_hidden = true;
            break;
        default:
            cli_bad_option("shedc", ch, argv);
            return -1;
        }
    }
    return npos;
}

static int
cmd_put(struct shed_client *c, const char *url, const struct cmd_opts *co)
{
    struct client_burrow_result r;
    size_t len = 0;
    char *body = read_stdin(&len);
    int rc;

    if (body == NULL)
        return EXIT_USAGE;
    rc = client_burrow_put(c, url, body, len, co->ttl, co->hide, &r);
    free(body);
    if (rc != 0) {
        report_error("put", url, rc, &r);
    } else if (json_out) {
        json_t *o = json_pack("{s:i, s:b, s:s, s:b, s:i}", "status", (int)r.status, "created",
                              r.status == 201, "url", url, "pinned", r.pinned, "hops", r.hops);
        print_json(o);
        json_decref(o);
    } else {
        printf("%s %s\n", r.status == 201 ? "created" : "replaced", url);
    }
    client_burrow_result_free(&r);
    return exit_for(rc);
}

static int
cmd_get(struct shed_client *c, const char *url, const struct cmd_opts *co)
{
    struct client_burrow_result r;
    int rc = client_burrow_get(c, url, co->detail, &r);
    char *body;
    size_t len;

    if (rc != 0) {
        report_error("get", url, rc, &r);
    } else if (json_out) {
        if (r.json != NULL) {
            print_json(r.json);
        } else {
            /* A raw answer (detail=body or id): a string, or
             * {"body_base64url": ...} when it is not UTF-8 text. */
            json_t *v = proto_body_value(r.body, r.body_len);

            print_json(v ? v : json_null());
            json_decref(v);
        }
    } else if (r.json == NULL) {
        put_bytes(r.body, r.body_len);
    } else if (json_is_object(r.json) && client_burrow_body(r.json, &body, &len) == 0) {
        /* Human output of a message: its body, byte for byte. */
        put_bytes(body, len);
        free(body);
    } else {
        print_json(r.json);
    }
    client_burrow_result_free(&r);
    return exit_for(rc);
}

static int
cmd_list(struct shed_client *c, const char *url, const struct cmd_opts *co)
{
    struct client_burrow_list_opts o;
    json_t *all = json_array();
    int rc = 0;
    size_t n = 0;

    client_burrow_list_opts_init(&o);
    o.limit = co->limit;
    o.marker = co->marker;
    o.detail = co->detail;
    o.match_hidden = co->match_hidden;
    o.wait = co->wait;
    if (co->all) {
        struct client_burrow_iter it;
        json_t *item;

        rc = client_burrow_iter_init(&it, c, url, &o);
        if (rc == 0) {
            while ((rc = client_burrow_iter_next(&it, &item)) == 1) {
                n++;
                if (json_out)
                    json_array_append(all, item);
                else
                    print_item(item);
            }
        }
        client_burrow_iter_free(&it);
        if (rc == 0 && n == 0)
            rc = -SHED_CLIENT_ENOTFOUND;
        if (rc < 0) {
            struct client_burrow_result none = {0};
            report_error("list", url, rc, &none);
        }
    } else {
        struct client_burrow_result r;

        rc = client_burrow_list(c, url, &o, &r);
        if (rc != 0) {
            report_error("list", url, rc, &r);
        } else if (json_is_array(r.json)) {
            size_t i;
            json_t *item;

            json_array_foreach(r.json, i, item)
            {
                n++;
                if (json_out)
                    json_array_append(all, item);
                else
                    print_item(item);
            }
        }
        client_burrow_result_free(&r);
    }
    if (json_out && rc >= 0)
        print_json(all);
    json_decref(all);
    return exit_for(rc < 0 ? rc : 0);
}

static int
cmd_claim(struct shed_client *c, const char *url, const struct cmd_opts *co)
{
    struct client_burrow_result r;
    int rc = client_burrow_claim(c, url, co->limit, co->hide, co->wait, &r);

    if (rc != 0) {
        report_error("claim", url, rc, &r);
    } else if (json_out) {
        print_json(r.json ? r.json : json_array());
    } else if (json_is_array(r.json)) {
        size_t i;
        json_t *item;

        json_array_foreach(r.json, i, item)
        {
            print_item(item);
        }
    }
    client_burrow_result_free(&r);
    return exit_for(rc);
}

static int
cmd_simple(struct shed_client *c, const char *op, const char *url, const struct cmd_opts *co)
{
    struct client_burrow_result r;
    int rc;

    if (strcmp(op, "delete") == 0)
        rc = client_burrow_delete(c, url, &r);
    else
        rc = client_burrow_update(c, url, co->ttl, co->hide, co->detail, &r);
    if (rc != 0) {
        report_error(op, url, rc, &r);
    } else if (json_out) {
        if (r.json != NULL) {
            print_json(r.json);
        } else {
            json_t *o = json_pack("{s:i, s:s, s:b}", "status", (int)r.status, "url", url, "pinned",
                                  r.pinned);
            print_json(o);
            json_decref(o);
        }
    } else if (r.json != NULL) {
        print_json(r.json);
    } else {
        printf("%s %s\n", strcmp(op, "delete") == 0 ? "deleted" : "updated", url);
    }
    client_burrow_result_free(&r);
    return exit_for(rc);
}

static int
cmd_stat(struct shed_client *c, int npos, char **pos)
{
    int worst = EXIT_OK;

    for (int i = 1; i < npos; i++) {
        struct client_burrow_result r;
        int rc = client_burrow_get(c, pos[i], NULL, &r);

        if (rc != 0 && rc != -SHED_CLIENT_ENOTFOUND) {
            report_error("get", pos[i], rc, &r);
            worst = exit_for(rc);
        }
        client_burrow_result_free(&r);
    }
    print_stat(c);
    return worst;
}

int
main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"shed", required_argument, NULL, 's'},
        {"verbose", no_argument, NULL, 'v'},
        {"json", no_argument, NULL, 'j'},
        {"stat-after", no_argument, NULL, 'S'},
        {"max-hops", required_argument, NULL, 'M'},
        {"retries", required_argument, NULL, 'r'},
        {"timeout", required_argument, NULL, 'T'},
        {"no-pin", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    static char env_sheds[1024];
    struct shed_client_options o;
    struct shed_client *c = NULL;
    struct cmd_opts co;
    bool stat_after = false;
    const char *cmd;
    int ch, rc, npos, status = EXIT_USAGE;
    int64_t v;
    uint64_t ms;

    shed_client_options_init(&o);
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+:vjhV", lo, NULL)) != -1) {
        switch (ch) {
        case 's':
            if (o.nsheds == SHED_CLIENT_MAX_SHEDS)
                return cli_usage_error("shedc", "at most %d --shed", SHED_CLIENT_MAX_SHEDS);
            o.sheds[o.nsheds++] = optarg;
            break;
        case 'v':
            o.trace = stderr;
            break;
        case 'j':
            json_out = true;
            break;
        case 'S':
            stat_after = true;
            break;
        case 'M':
            if (cli_int("shedc", "--max-hops", optarg, 1, SHED_CLIENT_MAX_HOPS, &v) != 0)
                return EXIT_USAGE;
            o.max_hops = (unsigned)v;
            break;
        case 'r':
            if (cli_int("shedc", "--retries", optarg, 1, 100, &v) != 0)
                return EXIT_USAGE;
            o.retries = (unsigned)v;
            break;
        case 'T':
            if (cli_duration("shedc", "--timeout", optarg, 1000, 1, 3600000, &ms) != 0)
                return EXIT_USAGE;
            o.timeout_ms = (long)ms;
            break;
        case 'n':
            o.no_pin = true;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case 'V':
            return cli_version("shedc");
        default:
            return cli_bad_option("shedc", ch, argv);
        }
    }
    if (o.nsheds == 0 && getenv("SHED") != NULL && getenv("SHED")[0] != '\0') {
        /* SHED=HOST:PORT[,HOST:PORT...] (commas or spaces) */
        snprintf(env_sheds, sizeof(env_sheds), "%s", getenv("SHED"));
        for (char *save = NULL, *t = strtok_r(env_sheds, ", ", &save); t != NULL;
             t = strtok_r(NULL, ", ", &save)) {
            if (o.nsheds == SHED_CLIENT_MAX_SHEDS)
                return cli_usage_error("shedc", "SHED: at most %d sheds", SHED_CLIENT_MAX_SHEDS);
            o.sheds[o.nsheds++] = t;
        }
    }
    if (optind >= argc)
        return cli_usage_error("shedc", "a COMMAND is required (put, get, list, claim, delete, "
                                        "update, stat)");
    argv += optind;
    argc -= optind;
    cmd = argv[0];
    if (strcmp(cmd, "put") != 0 && strcmp(cmd, "get") != 0 && strcmp(cmd, "list") != 0 &&
        strcmp(cmd, "claim") != 0 && strcmp(cmd, "delete") != 0 && strcmp(cmd, "update") != 0 &&
        strcmp(cmd, "stat") != 0)
        return cli_usage_error("shedc", "unknown command %s", cmd);
    npos = parse_cmd_opts(argc, argv, &co);
    if (npos < 1)
        return EXIT_USAGE;
    if (strcmp(cmd, "stat") != 0 && npos != 2)
        return cli_usage_error("shedc", "%s takes exactly one URL", cmd);
    if (strcmp(cmd, "update") == 0 && co.ttl < 0 && co.hide < 0)
        return cli_usage_error("shedc", "update needs --ttl and/or --hide");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fputs("shedc: libcurl initialisation failed\n", stderr);
        return EXIT_SERVER;
    }
    rc = shed_client_create(&o, &c);
    if (rc != 0) {
        if (rc == -EINVAL)
            cli_usage_error("shedc", "bad --shed or SHED (want HOST:PORT)");
        else
            fprintf(stderr, "shedc: %s\n", shed_client_strerror(rc));
        curl_global_cleanup();
        return EXIT_USAGE;
    }
    if (strcmp(cmd, "put") == 0)
        status = cmd_put(c, argv[1], &co);
    else if (strcmp(cmd, "get") == 0)
        status = cmd_get(c, argv[1], &co);
    else if (strcmp(cmd, "list") == 0)
        status = cmd_list(c, argv[1], &co);
    else if (strcmp(cmd, "claim") == 0)
        status = cmd_claim(c, argv[1], &co);
    else if (strcmp(cmd, "delete") == 0 || strcmp(cmd, "update") == 0)
        status = cmd_simple(c, cmd, argv[1], &co);
    else
        status = cmd_stat(c, npos, argv);
    if (stat_after && strcmp(cmd, "stat") != 0)
        print_stat(c);
    shed_client_destroy(c);
    curl_global_cleanup();
    return status;
}
