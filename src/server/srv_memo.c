/*
 * srv_memo.c - the answers kept (see srv_memo.h): a hash of keys into a
 * doubly linked list in most-recently-used order.
 */
#include "srv_memo.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUCKETS 4096
/* Answers promised at once: the first views of the uploads answered in the
 * last few milliseconds (srv_query_promise_first_views). */
#define PROMISES 32

typedef struct memo_entry {
    struct memo_entry *prev, *next; /* recency */
    struct memo_entry *chain;       /* bucket */
    char *key, *text;
    size_t len, cost;
} memo_entry;

struct srv_memo {
    pthread_mutex_t lock;
    memo_entry *buckets[BUCKETS];
    memo_entry *head, *tail;
    size_t bytes, budget;
    size_t count;     /* answers kept */
    uint64_t reused;  /* answers given from here */
    char *promised[PROMISES]; /* keys being computed; NULL: a free place */
    pthread_cond_t kept;      /* a promise was kept or withdrawn */
};

static size_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)(h % BUCKETS);
}

srv_memo *srv_memo_new(size_t budget_bytes)
{
    srv_memo *m = calloc(1, sizeof *m);
    if (m) {
        pthread_mutex_init(&m->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m->kept, &ca);
        pthread_condattr_destroy(&ca);
        m->budget = budget_bytes;
    }
    return m;
}

static void unlink_recency(srv_memo *m, memo_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        m->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        m->tail = e->prev;
}

static void push_front(srv_memo *m, memo_entry *e)
{
    e->prev = NULL;
    e->next = m->head;
    if (m->head)
        m->head->prev = e;
    m->head = e;
    if (!m->tail)
        m->tail = e;
}

static void drop(srv_memo *m, memo_entry *e)
{
    memo_entry **p = &m->buckets[hash(e->key)];
    while (*p != e)
        p = &(*p)->chain;
    *p = e->chain;
    unlink_recency(m, e);
    m->bytes -= e->cost;
    m->count--;
    free(e->key);
    free(e->text);
    free(e);
}

void srv_memo_free(srv_memo *m)
{
    if (!m)
        return;
    while (m->head)
        drop(m, m->head);
    for (int i = 0; i < PROMISES; i++)
        free(m->promised[i]);
    pthread_cond_destroy(&m->kept);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static memo_entry *find(srv_memo *m, const char *key)
{
    for (memo_entry *e = m->buckets[hash(key)]; e; e = e->chain)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

/* The place of key's promise, or -1 (the lock held). */
static int promise_of(const srv_memo *m, const char *key)
{
    for (int i = 0; i < PROMISES; i++)
        if (m->promised[i] && strcmp(m->promised[i], key) == 0)
            return i;
    return -1;
}

/* Ends key's promise, if there is one (the lock held). */
static void end_promise(srv_memo *m, const char *key)
{
    int i = promise_of(m, key);
    if (i >= 0) {
        free(m->promised[i]);
        m->promised[i] = NULL;
        pthread_cond_broadcast(&m->kept);
    }
}

char *srv_memo_get(srv_memo *m, const char *key, size_t *len)
{
    char *copy = NULL;
    pthread_mutex_lock(&m->lock);
    memo_entry *e = find(m, key);
    if (!e && promise_of(m, key) >= 0) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += SRV_MEMO_PROMISE_WAIT_MS / 1000;
        until.tv_nsec += (long)(SRV_MEMO_PROMISE_WAIT_MS % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000)
            until.tv_sec++, until.tv_nsec -= 1000000000;
        while (promise_of(m, key) >= 0 &&
               pthread_cond_timedwait(&m->kept, &m->lock, &until) != ETIMEDOUT)
            ;
        e = find(m, key);
    }
    if (e && (copy = malloc(e->len + 1))) {
        memcpy(copy, e->text, e->len + 1);
        *len = e->len;
        unlink_recency(m, e);
        push_front(m, e);
        m->reused++;
    }
    pthread_mutex_unlock(&m->lock);
    return copy;
}

void srv_memo_put(srv_memo *m, const char *key, const char *text, size_t len)
{
    size_t cost = len + strlen(key) + sizeof(memo_entry) + 32;
    if (cost > m->budget / 4) {
        /* one answer may not push out most of the others */
        srv_memo_withdraw(m, key);
        return;
    }
    memo_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->key = strdup(key)) || !(e->text = malloc(len + 1))) {
        if (e)
            free(e->key);
        free(e);
        srv_memo_withdraw(m, key);
        return;
    }
    memcpy(e->text, text, len);
    e->text[len] = 0;
    e->len = len;
    e->cost = cost;
    pthread_mutex_lock(&m->lock);
    memo_entry *old = find(m, key);
    if (old)
        drop(m, old);
    size_t b = hash(key);
    e->chain = m->buckets[b];
    m->buckets[b] = e;
    push_front(m, e);
    m->bytes += cost;
    m->count++;
    while (m->bytes > m->budget && m->tail)
        drop(m, m->tail);
    end_promise(m, key);
    pthread_mutex_unlock(&m->lock);
}

int srv_memo_promise(srv_memo *m, const char *key)
{
    int i = -1;
    pthread_mutex_lock(&m->lock);
    if (promise_of(m, key) < 0) {
        for (i = 0; i < PROMISES && m->promised[i]; i++)
            ;
        if (i < PROMISES && !(m->promised[i] = strdup(key)))
            i = PROMISES;
    }
    pthread_mutex_unlock(&m->lock);
    return i >= 0 && i < PROMISES;
}

void srv_memo_withdraw(srv_memo *m, const char *key)
{
    pthread_mutex_lock(&m->lock);
    end_promise(m, key);
    pthread_mutex_unlock(&m->lock);
}

void srv_memo_forget_run(srv_memo *m, const char *id)
{
    pthread_mutex_lock(&m->lock);
    for (memo_entry *e = m->head, *next; e; e = next) {
        next = e->next;
        if (strstr(e->key, id))
            drop(m, e);
    }
    pthread_mutex_unlock(&m->lock);
}

void srv_memo_stats(srv_memo *m, size_t *kept, uint64_t *reused)
{
    pthread_mutex_lock(&m->lock);
    *kept = m->count;
    *reused = m->reused;
    pthread_mutex_unlock(&m->lock);
}
