/* SPDX-License-Identifier: ISC */
/*
 * burrowd: the reference in-memory Burrow v1.0 server. Parses the command
 * line, starts the HTTP front end (burrow/http) and, when asked, the
 * heartbeat announcer; exits cleanly (deregistering) on SIGTERM or SIGINT.
 * Bad settings fail at once (exit 2 for the command line, 1 when the
 * listen address or the credential file cannot be used), and so does a
 * shed refusing the first heartbeat (exit 1 with its answer): a server that
 * no shed will route to must not look healthy.
 */
#include "burrow/announce_glue.h"
#include "burrow/http.h"
#include "common/cli.h"
#include "common/clock.h"
#include "common/log.h"
#include "proto/burrow.h"
#include "proto/heartbeat.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define CREDENTIAL_MAX 1024
#define URL_MAX        512

static void
usage(FILE *f)
{
    fputs("usage: burrowd --listen ADDR:PORT [--default-ttl DURATION] [--default-hide DURATION]\n"
          "               [--max-message-bytes N] [--announce URL]... [--id ID] [--zone ZONE]\n"
          "               [--weight N] [--credential SECRET | --credential-file PATH]\n"
          "               [--public-url URL] [--service NAME] [--idle-timeout DURATION]\n"
          "               [--max-connections N] [--drain-timeout DURATION] [--debug]\n"
          "       burrowd --help | --version\n"
          "\n"
          "  --listen ADDR:PORT        numeric address to serve on, [v6]:port for IPv6\n"
          "  --default-ttl DURATION    ttl of a PUT without ttl (600s; 0: never expires)\n"
          "  --default-hide DURATION   hide of a PUT without hide (0)\n"
          "  --max-message-bytes N     largest message body, 413 beyond (1048576)\n"
          "  --announce URL            heartbeat to this shed (repeatable, up to 16); needs a\n"
          "                            credential; a shed that refuses the first heartbeat\n"
          "                            (wrong credential, weight above its weight_scale...)\n"
          "                            makes burrowd exit 1 with the reason\n"
          "  --id ID                   backend id in heartbeats (default: the listen address)\n"
          "  --zone ZONE               failure domain in heartbeats (\"\")\n"
          "  --weight N                ring weight in heartbeats, 1..65535 (1)\n"
          "  --credential SECRET       cluster credential for heartbeats\n"
          "  --credential-file PATH    read the credential from the first line of PATH\n"
          "  --public-url URL          where clients reach this server (http://ADDR:PORT)\n"
          "  --service NAME            service name in heartbeats (burrow)\n"
          "  --idle-timeout DURATION   close idle keep-alive connections after (65s)\n"
          "  --max-connections N       concurrent connections, long-polls included (10000)\n"
          "  --drain-timeout DURATION  on SIGTERM (not SIGINT), announce draining and wait up to\n"
          "                            this long for the sheds' handoff to move every message\n"
          "                            away before deregistering (0, the default: exit at\n"
          "                            once; a second signal stops waiting)\n"
          "  --debug                   log at debug level\n"
          "  -h, --help                this text;  -V, --version  the version\n"
          "\n"
          "DURATION: 500ms, 30s, 10m, 1h; a bare number is seconds. Besides the Burrow API\n"
          "(docs/burrow-api.md) burrowd answers GET /metrics (Prometheus text).\n",
          f);
}

/* A graceful leave: heartbeat "draining" (no new primaries; the sheds'
 * handoff moves this server's messages to their owners) and wait until the
 * store has stayed empty for a second, at most <secs>, or a second signal. */
static void
drain(struct burrow_http *h, struct burrow_announce *an, const sigset_t *sigs, unsigned secs)
{
    uint64_t deadline = clock_mono_ms() + (uint64_t)secs * 1000, empty_since = 0;
    struct timespec tick = {0, 100 * 1000000L};
    size_t n = burrow_http_messages(h);

    burrow_announce_drain(an);
    log_info("draining: %zu message%s to hand off, waiting up to %u s", n, n == 1 ? "" : "s", secs);
    for (;;) {
        uint64_t now = clock_mono_ms();

        n = burrow_http_messages(h);
        if (n > 0)
            empty_since = 0;
        else if (empty_since == 0)
            empty_since = now;
        if (n == 0 && now - empty_since >= 1000) {
            log_info("draining: every message handed off");
            return;
        }
        if (now >= deadline) {
            log_warnx("draining: %zu message%s still here after %u s, leaving anyway", n,
                      n == 1 ? "" : "s", secs);
            return;
        }
        if (sigtimedwait(sigs, NULL, &tick) > 0) {
            log_warnx("draining: second signal, leaving with %zu message%s", n, n == 1 ? "" : "s");
            return;
        }
    }
}

/* A number option, or exit 2 with one line saying why. */
static int64_t
num_arg(const char *name, const char *s, int64_t min, int64_t max)
{
    int64_t v;

    if (cli_int("burrowd", name, s, min, max, &v) < 0)
        exit(CLI_EXIT_USAGE);
    return v;
}

/* A duration option in whole seconds, or exit 2 with one line. */
static int64_t
secs_arg(const char *name, const char *s, int64_t max)
{
    uint64_t v;

    if (cli_duration("burrowd", name, s, 1000000, 0, (uint64_t)max, &v) < 0)
        exit(CLI_EXIT_USAGE);
    return (int64_t)v;
}

/* "1.2.3.4:80" or "[::1]:80" into <host> and <port>. */
static void
split_listen(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon;
    size_t n;

    if (s[0] == '[') {
        const char *rb = strchr(s, ']');

        if (rb == NULL || rb[1] != ':')
            exit(cli_usage_error("burrowd", "--listen %s: want [V6ADDR]:PORT", s));
        n = (size_t)(rb - s - 1);
        if (n >= hostlen)
            exit(cli_usage_error("burrowd", "--listen %s: address too long", s));
        memcpy(host, s + 1, n);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            exit(cli_usage_error("burrowd", "--listen %s: want ADDR:PORT", s));
        n = (size_t)(colon - s);
        if (n >= hostlen)
            exit(cli_usage_error("burrowd", "--listen %s: address too long", s));
        memcpy(host, s, n);
    }
    host[n] = '\0';
    *port = (uint16_t)num_arg("--listen port", colon + 1, 0, 65535);
}

static void
read_credential(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "r");

    if (f == NULL)
        fatal("cannot read --credential-file %s", path);
    if (fgets(out, (int)outlen, f) == NULL)
        fatalx("--credential-file %s: empty", path);
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    if (out[0] == '\0')
        fatalx("--credential-file %s: the first line is empty", path);
}

/* Room for many connections: raise the soft descriptor limit. */
static void
raise_nofile(unsigned want)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return;
    if (rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
        log_warn("setrlimit NOFILE");
}

int
main(int argc, char **argv)
{
    enum {
        O_LISTEN = 256,
        O_TTL,
        O_HIDE,
        O_MAXMSG,
        O_ANNOUNCE,
        O_ID,
        O_ZONE,
        O_WEIGHT,
        O_CRED,
        O_CREDFILE,
        O_PUBURL,
        O_SERVICE,
        O_DEBUG,
        O_IDLE,
        O_MAXCONN,
        O_DRAIN,
        O_HELP,
        O_VERSION,
    };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"default-ttl", required_argument, NULL, O_TTL},
        {"default-hide", required_argument, NULL, O_HIDE},
        {"max-message-bytes", required_argument, NULL, O_MAXMSG},
        {"announce", required_argument, NULL, O_ANNOUNCE},
        {"id", required_argument, NULL, O_ID},
        {"zone", required_argument, NULL, O_ZONE},
        {"weight", required_argument, NULL, O_WEIGHT},
        {"credential", required_argument, NULL, O_CRED},
        {"credential-file", required_argument, NULL, O_CREDFILE},
        {"public-url", required_argument, NULL, O_PUBURL},
        {"service", required_argument, NULL, O_SERVICE},
        {"debug", no_argument, NULL, O_DEBUG},
        {"idle-timeout", required_argument, NULL, O_IDLE},
        {"max-connections", required_argument, NULL, O_MAXCONN},
        {"drain-timeout", required_argument, NULL, O_DRAIN},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    struct burrow_http_config cfg = {
        .default_ttl = 600,
        .max_message_bytes = BURROW_HTTP_MAX_MESSAGE_DEFAULT,
    };
    struct announce_config ac = {.service = "burrow", .zone = "", .weight = 1};
    static char host[64], credential[CREDENTIAL_MAX], public_url[URL_MAX];
    const char *listen = NULL, *credfile = NULL;
    struct burrow_http *h = NULL;
    struct burrow_announce *an = NULL;
    bool debug = false;
    unsigned drain_s = 0;
    sigset_t sigs;
    int c, sig, rc;

    log_init("burrowd", false);
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hV", opts, NULL)) != -1) {
        switch (c) {
        case O_LISTEN:
            listen = optarg;
            break;
        case O_TTL:
            cfg.default_ttl = secs_arg("--default-ttl", optarg, PROTO_BURROW_SECONDS_MAX);
            break;
        case O_HIDE:
            cfg.default_hide = secs_arg("--default-hide", optarg, PROTO_BURROW_SECONDS_MAX);
            break;
        case O_MAXMSG:
            cfg.max_message_bytes =
                (size_t)num_arg("--max-message-bytes", optarg, 1, (int64_t)UINT32_MAX);
            break;
        case O_ANNOUNCE:
            if (ac.ntargets == ANNOUNCE_MAX_TARGETS)
                return cli_usage_error("burrowd", "--announce: at most %d targets",
                                       ANNOUNCE_MAX_TARGETS);
            ac.targets[ac.ntargets++] = optarg;
            break;
        case O_ID:
            ac.id = optarg;
            break;
        case O_ZONE:
            ac.zone = optarg;
            break;
        case O_WEIGHT:
            ac.weight = (uint32_t)num_arg("--weight", optarg, 1, PROTO_HB_WEIGHT_MAX);
            break;
        case O_CRED:
            snprintf(credential, sizeof(credential), "%s", optarg);
            break;
        case O_CREDFILE:
            credfile = optarg;
            break;
        case O_PUBURL:
            ac.url = optarg;
            break;
        case O_SERVICE:
            ac.service = optarg;
            break;
        case O_DEBUG:
            debug = true;
            break;
        case O_IDLE:
            cfg.connection_timeout = (unsigned)secs_arg("--idle-timeout", optarg, 86400);
            if (cfg.connection_timeout == 0)
                return cli_usage_error("burrowd", "--idle-timeout %s: want 1s..86400s", optarg);
            break;
        case O_DRAIN:
            drain_s = (unsigned)secs_arg("--drain-timeout", optarg, 86400);
            break;
        case O_MAXCONN:
            cfg.connection_limit = (unsigned)num_arg("--max-connections", optarg, 1, 1000000);
            break;
        case O_HELP:
        case 'h':
            usage(stdout);
            return 0;
        case O_VERSION:
        case 'V':
            return cli_version("burrowd");
        default:
            return cli_bad_option("burrowd", c, argv);
        }
    }
    if (optind != argc)
        return cli_usage_error("burrowd", "unexpected argument %s", argv[optind]);
    if (listen == NULL)
        return cli_usage_error("burrowd", "--listen ADDR:PORT is required");
    if (ac.ntargets > 0 && credential[0] == '\0' && credfile == NULL)
        return cli_usage_error("burrowd", "--announce needs --credential or --credential-file "
                                          "(the sheds refuse heartbeats without it)");
    if (credential[0] != '\0' && credfile != NULL)
        return cli_usage_error("burrowd", "give --credential or --credential-file, not both");
    log_set_debug(debug);
    split_listen(listen, host, sizeof(host), &cfg.port);
    cfg.host = host;
    if (credfile)
        read_credential(credfile, credential, sizeof(credential));
    ac.credential = credential;
    if (ac.id == NULL)
        ac.id = listen;
    if (ac.url == NULL) {
        snprintf(public_url, sizeof(public_url), "http://%s", listen);
        ac.url = public_url;
    }

    /* Handle SIGTERM/SIGINT synchronously: block them before any thread
     * starts (threads inherit the mask), then sigwait below. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (cfg.connection_limit == 0)
        cfg.connection_limit = 10000;
    raise_nofile(cfg.connection_limit + 64);
    rc = burrow_http_start(&cfg, &h);
    if (rc < 0)
        fatalx("cannot listen on %s: %s", listen, strerror(-rc));
    log_info("listening on %s:%u, default ttl %" PRId64 " s, max message %zu bytes", host,
             (unsigned)burrow_http_port(h), cfg.default_ttl, cfg.max_message_bytes);
    if (ac.ntargets > 0) {
        rc = burrow_announce_begin(&ac, &an);
        if (rc < 0) {
            burrow_http_stop(h);
            fatalx("announce: cannot heartbeat as service=%s id=%s url=%s zone=%s: %s", ac.service,
                   ac.id, ac.url, ac.zone,
                   rc == -EINVAL ? "a bad service, id, url, zone or --announce URL"
                                 : strerror(-rc));
        }
    }

    for (;;) {
        struct timespec tick = {0, 200 * 1000000L};
        char why[320];

        sig = sigtimedwait(&sigs, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (an != NULL && burrow_announce_refused(an, why, sizeof(why))) {
            /* A setting to fix: exit instead of serving unrouted. */
            burrow_announce_end(an);
            burrow_http_stop(h);
            fatalx("announce: %s", why);
        }
    }
    log_info("signal %d: shutting down", sig);
    if (an != NULL && drain_s > 0 && sig == SIGTERM)
        drain(h, an, &sigs, drain_s);
    burrow_announce_end(an);
    burrow_http_stop(h);
    return 0;
}
