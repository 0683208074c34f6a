/*
 * srv_throttle.c - failed guesses per address, kept in the database (see
 * srv_throttle.h).  An address is stored as the hex of its bytes.  Each
 * request that carries an API token asks once: one indexed lookup of at most
 * SRV_THROTTLE_FAILURES rows.
 */
#include "srv_throttle.h"

#include <stdio.h>
#include <stdlib.h>

#define ADDRESS_MAX 16

struct srv_throttle {
    srv_store *store;
};

srv_throttle *srv_throttle_new(srv_store *store)
{
    srv_throttle *t = calloc(1, sizeof *t);
    if (t)
        t->store = store;
    return t;
}

void srv_throttle_free(srv_throttle *t)
{
    free(t);
}

/* The address as text: 0 when there is none to count. */
static int address_text(const void *address, size_t len, char out[2 * ADDRESS_MAX + 1])
{
    if (len > ADDRESS_MAX)
        len = ADDRESS_MAX;
    for (size_t i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", ((const unsigned char *)address)[i]);
    out[2 * len] = 0;
    return len > 0;
}

unsigned srv_throttle_wait(srv_throttle *t, const void *address, size_t len, int64_t now_ms)
{
    char key[2 * ADDRESS_MAX + 1];
    if (!address_text(address, len, key))
        return 0;
    const int64_t window_ms = (int64_t)SRV_THROTTLE_WINDOW * 1000;
    int64_t at[SRV_THROTTLE_FAILURES];
    size_t n = 0;
    srv_err err;
    if (srv_store_guess_times(t->store, key, now_ms - window_ms, at, SRV_THROTTLE_FAILURES, &n,
                              &err) < 0 ||
        n < SRV_THROTTLE_FAILURES)
        return 0;
    /* Newest first: the last is the oldest of the counted failures.  A
     * clock set back never makes the wait longer than the window. */
    int64_t until = at[n - 1] + window_ms;
    if (until - now_ms > window_ms)
        until = now_ms + window_ms;
    return until > now_ms ? (unsigned)((until - now_ms + 999) / 1000) : 0;
}

void srv_throttle_failed(srv_throttle *t, const void *address, size_t len, int64_t now_ms)
{
    char key[2 * ADDRESS_MAX + 1];
    srv_err err;
    if (address_text(address, len, key))
        srv_store_guess_add(t->store, key, now_ms, now_ms - (int64_t)SRV_THROTTLE_WINDOW * 1000,
                            SRV_THROTTLE_KEPT, &err);
}

void srv_throttle_passed(srv_throttle *t, const void *address, size_t len)
{
    char key[2 * ADDRESS_MAX + 1];
    srv_err err;
    if (address_text(address, len, key))
        srv_store_guess_clear(t->store, key, &err);
}
