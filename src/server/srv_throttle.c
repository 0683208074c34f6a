/*
 * srv_throttle.c - failed guesses per address (see srv_throttle.h).  Failures
 * are rare, so the table is searched from end to end under one lock: a few
 * microseconds, and no structure to get wrong.  Every request that carries
 * an API token asks it, so an empty table (the usual case) answers at once.
 */
#include "srv_throttle.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ADDRESS_MAX 16

typedef struct slot {
    unsigned char address[ADDRESS_MAX];
    unsigned char len;     /* 0: a free slot */
    unsigned next;         /* where the next failure goes in failed_at */
    unsigned count;        /* failures remembered, at most SRV_THROTTLE_FAILURES */
    int64_t failed_at[SRV_THROTTLE_FAILURES];
    int64_t last;
} slot;

struct srv_throttle {
    pthread_mutex_t lock;
    size_t used; /* slots not free */
    slot slots[SRV_THROTTLE_SLOTS];
};

srv_throttle *srv_throttle_new(void)
{
    srv_throttle *t = calloc(1, sizeof *t);
    if (t)
        pthread_mutex_init(&t->lock, NULL);
    return t;
}

void srv_throttle_free(srv_throttle *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static size_t key_len(size_t len)
{
    return len > ADDRESS_MAX ? ADDRESS_MAX : len;
}

static slot *find(srv_throttle *t, const void *address, size_t len)
{
    len = key_len(len);
    if (!t->used)
        return NULL;
    for (size_t i = 0; i < SRV_THROTTLE_SLOTS; i++) {
        slot *s = &t->slots[i];
        if (s->len == len && len && memcmp(s->address, address, len) == 0)
            return s;
    }
    return NULL;
}

/* The oldest failure among the last SRV_THROTTLE_FAILURES, when there are
 * that many. */
static unsigned wait_of(const slot *s, int64_t now)
{
    if (s->count < SRV_THROTTLE_FAILURES)
        return 0;
    int64_t oldest = s->failed_at[s->next % SRV_THROTTLE_FAILURES];
    int64_t until = oldest + SRV_THROTTLE_WINDOW;
    return until > now ? (unsigned)(until - now) : 0;
}

unsigned srv_throttle_wait(srv_throttle *t, const void *address, size_t len, int64_t now)
{
    pthread_mutex_lock(&t->lock);
    slot *s = find(t, address, len);
    unsigned wait = s ? wait_of(s, now) : 0;
    pthread_mutex_unlock(&t->lock);
    return wait;
}

void srv_throttle_failed(srv_throttle *t, const void *address, size_t len, int64_t now)
{
    if (!len)
        return;
    pthread_mutex_lock(&t->lock);
    slot *s = find(t, address, len);
    if (!s) {
        /* A free slot, else the one whose last failure is the oldest. */
        s = &t->slots[0];
        for (size_t i = 0; i < SRV_THROTTLE_SLOTS && s->len; i++)
            if (!t->slots[i].len || t->slots[i].last < s->last)
                s = &t->slots[i];
        if (!s->len)
            t->used++;
        memset(s, 0, sizeof *s);
        s->len = (unsigned char)key_len(len);
        memcpy(s->address, address, s->len);
    }
    s->failed_at[s->next] = now;
    s->next = (s->next + 1) % SRV_THROTTLE_FAILURES;
    if (s->count < SRV_THROTTLE_FAILURES)
        s->count++;
    s->last = now;
    pthread_mutex_unlock(&t->lock);
}

void srv_throttle_passed(srv_throttle *t, const void *address, size_t len)
{
    pthread_mutex_lock(&t->lock);
    slot *s = find(t, address, len);
    if (s) {
        memset(s, 0, sizeof *s);
        t->used--;
    }
    pthread_mutex_unlock(&t->lock);
}

size_t srv_throttle_count(srv_throttle *t)
{
    size_t n = 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < SRV_THROTTLE_SLOTS; i++)
        n += t->slots[i].len != 0;
    pthread_mutex_unlock(&t->lock);
    return n;
}
