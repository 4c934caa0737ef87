/* SPDX-License-Identifier: ISC */
/*
 * shed/sidecar: `shed announce` health-checks a local backend (GET
 * <backend><health-path>, any 2xx/3xx within a second is healthy) every
 * --check-interval and drives common/announce: up while healthy, silent
 * (ANNOUNCE_DOWN) while not, deregistered on SIGTERM. A shed that refuses
 * the first heartbeat (a 4xx: credential, networks, weight, service) makes
 * it exit 1 with the reason: a wrong setting does not heal by waiting.
 */
#include "shed/sidecar.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/announce.h"
#include "common/cli.h"
#include "common/log.h"
#include "proto/heartbeat.h"
#include "shed/config.h"

#define PROG "shed announce"

static void
usage(FILE *f)
{
    fputs("usage: shed announce --backend URL [--health-path /] --announce SHED_URL ...\n"
          "         --service NAME --id ID [--zone Z] [--weight N] [--url PUBLIC_URL]\n"
          "         (--credential SECRET | --credential-file PATH) [--check-interval DURATION]\n"
          "         [-d]\n"
          "\n"
          "Heartbeats a backend shed did not write to the sheds (docs/heartbeat.md) while\n"
          "GET BACKEND/HEALTH-PATH answers 2xx or 3xx within a second; deregisters on\n"
          "SIGTERM. --check-interval: 50ms..10m (1s; a bare number is milliseconds).\n"
          "--weight: 1..65535 (1). A shed that refuses the first heartbeat makes it exit 1\n"
          "with the reason.\n",
          f);
}

static size_t
discard(char *p, size_t s, size_t n, void *cls)
{
    (void)p;
    (void)cls;
    return s * n;
}

static bool
healthy(CURL *e, const char *url)
{
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 1000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    if (curl_easy_perform(e) != CURLE_OK)
        return false;
    long st = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &st);
    return st >= 200 && st < 400;
}

static int
read_secret(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -errno;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    return n > 0 ? 0 : -EINVAL;
}

int
shed_sidecar_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"backend", required_argument, NULL, 'b'},
        {"health-path", required_argument, NULL, 'p'},
        {"announce", required_argument, NULL, 'a'},
        {"service", required_argument, NULL, 's'},
        {"id", required_argument, NULL, 'i'},
        {"zone", required_argument, NULL, 'z'},
        {"weight", required_argument, NULL, 'w'},
        {"url", required_argument, NULL, 'u'},
        {"public-url", required_argument, NULL, 'u'},
        {"credential", required_argument, NULL, 'k'},
        {"credential-file", required_argument, NULL, 'K'},
        {"check-interval", required_argument, NULL, 'I'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct announce_config ac;
    memset(&ac, 0, sizeof(ac));
    ac.weight = 1;
    ac.zone = "";
    const char *backend = NULL, *health = "/", *credfile = NULL;
    char secret[SHED_CREDENTIAL_MAX];
    long interval = 1000;
    bool debug = false;
    int ch;
    int64_t w;
    uint64_t iv;
    log_init("shed-announce", false);
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":dhV", opts, NULL)) != -1) {
        switch (ch) {
        case 'b':
            backend = optarg;
            break;
        case 'p':
            health = optarg;
            break;
        case 'a':
            if (ac.ntargets == ANNOUNCE_MAX_TARGETS)
                return cli_usage_error(PROG, "at most %d --announce targets", ANNOUNCE_MAX_TARGETS);
            ac.targets[ac.ntargets++] = optarg;
            break;
        case 's':
            ac.service = optarg;
            break;
        case 'i':
            ac.id = optarg;
            break;
        case 'z':
            ac.zone = optarg;
            break;
        case 'w':
            if (cli_int(PROG, "--weight", optarg, 1, PROTO_HB_WEIGHT_MAX, &w) < 0)
                return CLI_EXIT_USAGE;
            ac.weight = (uint32_t)w;
            break;
        case 'u':
            ac.url = optarg;
            break;
        case 'k':
            ac.credential = optarg;
            break;
        case 'K':
            credfile = optarg;
            break;
        case 'I':
            if (cli_duration(PROG, "--check-interval", optarg, 1000, 50, 600000, &iv) < 0)
                return CLI_EXIT_USAGE;
            interval = (long)iv;
            break;
        case 'd':
            debug = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            return cli_version("shed");
        default:
            return cli_bad_option(PROG, ch, argv);
        }
    }
    log_set_debug(debug);
    if (optind != argc)
        return cli_usage_error(PROG, "unexpected argument %s", argv[optind]);
    if (backend == NULL)
        return cli_usage_error(PROG, "--backend URL is required");
    if (ac.ntargets == 0)
        return cli_usage_error(PROG, "--announce SHED_URL is required");
    if (ac.service == NULL || ac.id == NULL)
        return cli_usage_error(PROG, "--service and --id are required");
    if ((ac.credential == NULL) == (credfile == NULL))
        return cli_usage_error(PROG, "give one of --credential or --credential-file");
    if (health[0] != '/')
        return cli_usage_error(PROG, "--health-path %s: must start with /", health);
    if (credfile != NULL) {
        int rc = read_secret(credfile, secret, sizeof(secret));
        if (rc < 0)
            fatalx("cannot read a credential from %s: %s", credfile,
                   rc == -EINVAL ? "empty" : strerror(-rc));
        ac.credential = secret;
    }
    if (ac.url == NULL)
        ac.url = backend;
    char check[1024];
    snprintf(check, sizeof(check), "%s%s", backend, health);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *e = curl_easy_init();
    if (e == NULL)
        fatalx("curl_easy_init failed");

    struct announce *a = NULL;
    bool up = false;
    for (;;) {
        bool h = healthy(e, check);
        if (h && a == NULL) {
            int rc = announce_start(&ac, &a);
            if (rc < 0)
                fatalx("announce: bad arguments (service, id, url, zone or weight): %s",
                       strerror(-rc));
            log_info("backend %s healthy, announcing %s/%s", backend, ac.service, ac.id);
            up = true;
        } else if (a != NULL && h != up) {
            log_info("backend %s %s", backend, h ? "healthy again" : "unhealthy: announcing down");
            announce_set_state(a, h ? ANNOUNCE_UP : ANNOUNCE_DOWN);
            up = h;
        }
        struct timespec ts = {interval / 1000, (interval % 1000) * 1000000L};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        char why[320];
        if (announce_refused(a, why, sizeof(why))) {
            announce_stop(a);
            curl_easy_cleanup(e);
            fatalx("announce: %s", why);
        }
    }
    log_info("stopping: deregistering");
    announce_stop(a);
    curl_easy_cleanup(e);
    curl_global_cleanup();
    return 0;
}
