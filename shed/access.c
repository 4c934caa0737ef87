/* SPDX-License-Identifier: ISC */
/*
 * shed/access: sampled, rate-capped access log of redirects. Sampling is a
 * shared counter (every Nth redirect, not a random draw, so a test or an
 * operator knows what to expect); the rate cap is a one-second window.
 */
#include "shed/access.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>

#include "common/log.h"

void
shed_log_printable(char *dst, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    if (cap == 0)
        return;
    for (; s != NULL && *s != '\0' && n + 4 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch > 0x20 && ch < 0x7f && ch != '%') {
            dst[n++] = (char)ch;
        } else {
            dst[n++] = '%';
            dst[n++] = hex[ch >> 4];
            dst[n++] = hex[ch & 15];
        }
    }
    dst[n] = '\0';
}

void
shed_client_addr(struct MHD_Connection *conn, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

    snprintf(buf, len, "?");
    if (ci == NULL || ci->client_addr == NULL)
        return;
    if (ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, buf,
                  (socklen_t)len);
    else if (ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, buf,
                  (socklen_t)len);
}

void
shed_access_redirect(const struct shed_call *c, const char *host, const struct shed_answer *a)
{
    struct shed_access_counters *k = &c->ctx->access;
    uint32_t every = c->cfg->log_access_every;
    char who[INET6_ADDRSTRLEN + 1], path[256], hostp[128], loc[512];

    if (every == 0)
        return;
    if (atomic_fetch_add_explicit(&k->seen, 1, memory_order_relaxed) % every != 0)
        return;
    uint64_t sec = c->now_ms / 1000, cur = atomic_load(&k->window_s);
    if (cur != sec && atomic_compare_exchange_strong(&k->window_s, &cur, sec))
        atomic_store(&k->in_window, 0);
    if (atomic_fetch_add(&k->in_window, 1) >= c->cfg->log_access_rate) {
        atomic_fetch_add(&k->over, 1);
        return;
    }
    uint64_t skipped = atomic_exchange(&k->over, 0);
    shed_client_addr(c->conn, who, sizeof(who));
    shed_log_printable(path, sizeof(path), c->path);
    shed_log_printable(hostp, sizeof(hostp), host != NULL ? host : "-");
    shed_log_printable(loc, sizeof(loc), a->location_len > 0 ? a->location : "-");
    if (skipped > 0)
        log_info("access: %s %s %s host=%s -> %u %s (%" PRIu64
                 " more sampled over access_rate, not logged)",
                 who, c->method, path, hostp, a->status, loc, skipped);
    else
        log_info("access: %s %s %s host=%s -> %u %s", who, c->method, path, hostp, a->status, loc);
}
