/*
 * srv_cache.c - decoded files kept in memory (see srv_cache.h): the
 * profiles, and through the same code the jit logs (srv_jitlog.c).  A short
 * list in most-recently-used order: it holds as many as the budget allows,
 * which is tens, not thousands, so a linear search costs nothing next to a
 * query.
 */
#include "srv_cache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_blob.h"

typedef struct entry {
    struct entry *prev, *next;
    char id[SRV_ID_LEN + 1];
    void *value;
    size_t cost;
    int refs;
    int loading;  /* being decoded by the first asker */
    int gone;     /* dropped or failed: not found any more, freed at refs 0 */
    char error[256];
} entry;

struct srv_cache {
    pthread_mutex_t lock;
    pthread_cond_t loaded;
    entry *head, *tail;
    size_t bytes, budget;
    char data_dir[4096];
    srv_cache_kind kind;
};

srv_cache *srv_cache_new_of(size_t budget_bytes, const char *data_dir,
                            const srv_cache_kind *kind)
{
    srv_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->kind = *kind;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->loaded, NULL);
    c->budget = budget_bytes;
    snprintf(c->data_dir, sizeof c->data_dir, "%s", data_dir);
    return c;
}

static void unlink_entry(srv_cache *c, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(srv_cache *c, entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static void free_entry(srv_cache *c, entry *e)
{
    unlink_entry(c, e);
    c->bytes -= e->cost;
    if (e->value)
        c->kind.free(e->value);
    free(e);
}

/* Drops unused values, oldest first, until the budget holds. */
static void evict(srv_cache *c)
{
    for (entry *e = c->tail, *prev; e && c->bytes > c->budget; e = prev) {
        prev = e->prev;
        if (e->refs == 0 && !e->loading)
            free_entry(c, e);
    }
}

void srv_cache_free(srv_cache *c)
{
    if (!c)
        return;
    while (c->head)
        free_entry(c, c->head);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->loaded);
    free(c);
}


static entry *find(srv_cache *c, const char *id)
{
    for (entry *e = c->head; e; e = e->next)
        if (!e->gone && strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

static void forget(srv_cache *c, entry *e)
{
    e->gone = 1;
    if (e->refs == 0 && !e->loading)
        free_entry(c, e);
}

/* Keeps value; held (one reference for the caller) when asked: NULL when
 * it could not be kept (then it is freed). */
static const void *put(srv_cache *c, const char *id, void *value, int held)
{
    entry *e = calloc(1, sizeof *e);
    if (!e) {
        c->kind.free(value);
        return NULL;
    }
    snprintf(e->id, sizeof e->id, "%s", id);
    e->value = value;
    e->cost = c->kind.cost(value) + sizeof *e;
    e->refs = held;
    pthread_mutex_lock(&c->lock);
    entry *old = find(c, id);
    if (old)
        forget(c, old);
    push_front(c, e);
    c->bytes += e->cost;
    evict(c);
    pthread_mutex_unlock(&c->lock);
    return held ? value : NULL;
}

void srv_cache_put_value(srv_cache *c, const char *id, void *value)
{
    put(c, id, value, 0);
}

const void *srv_cache_get_value(srv_cache *c, const char *id, srv_err *err)
{
    pthread_mutex_lock(&c->lock);
    entry *e = find(c, id);
    if (e) {
        e->refs++;
        while (e->loading)
            pthread_cond_wait(&c->loaded, &c->lock);
        if (!e->value) {
            snprintf(err->message, sizeof err->message, "%s", e->error);
            if (--e->refs == 0)
                free_entry(c, e);
            pthread_mutex_unlock(&c->lock);
            return NULL;
        }
        unlink_entry(c, e);
        push_front(c, e);
        pthread_mutex_unlock(&c->lock);
        return e->value;
    }
    e = calloc(1, sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&c->lock);
        snprintf(err->message, sizeof err->message, "out of memory");
        return NULL;
    }
    snprintf(e->id, sizeof e->id, "%s", id);
    e->loading = 1;
    e->refs = 1;
    push_front(c, e);
    pthread_mutex_unlock(&c->lock);

    srv_err lerr = {{0}};
    void *p = c->kind.load(c->data_dir, id, &lerr);
    snprintf(e->error, sizeof e->error, "%s", lerr.message);

    pthread_mutex_lock(&c->lock);
    e->loading = 0;
    e->value = p;
    if (p) {
        e->cost = c->kind.cost(p) + sizeof *e;
        c->bytes += e->cost;
        evict(c);
    } else {
        e->gone = 1;
        snprintf(err->message, sizeof err->message, "%s", e->error);
    }
    pthread_cond_broadcast(&c->loaded);
    if (!p && --e->refs == 0)
        free_entry(c, e);
    pthread_mutex_unlock(&c->lock);
    return p;
}

void srv_cache_release_value(srv_cache *c, const void *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&c->lock);
    for (entry *e = c->head; e; e = e->next)
        if (e->value == p) {
            if (--e->refs == 0 && e->gone)
                free_entry(c, e);
            break;
        }
    evict(c);
    pthread_mutex_unlock(&c->lock);
}

void srv_cache_drop(srv_cache *c, const char *id)
{
    pthread_mutex_lock(&c->lock);
    entry *e = find(c, id);
    if (e)
        forget(c, e);
    pthread_mutex_unlock(&c->lock);
}

size_t srv_cache_bytes(srv_cache *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->bytes;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* ---- profiles ------------------------------------------------------------------ */

static void *profile_load(const char *data_dir, const char *id, srv_err *err)
{
    return srv_blob_read_profile(data_dir, id, err);
}

static void profile_free(void *p)
{
    vmp_profile_free(p);
}

static size_t profile_cost(const void *p)
{
    return vmp_profile_memory(p);
}

static const srv_cache_kind profiles = {profile_load, profile_free, profile_cost};

srv_cache *srv_cache_new(size_t budget_bytes, const char *data_dir)
{
    return srv_cache_new_of(budget_bytes, data_dir, &profiles);
}

size_t srv_cache_cost(const vmp_profile *p)
{
    return profile_cost(p) + sizeof(entry);
}

const vmp_profile *srv_cache_put_held(srv_cache *c, const char *id, vmp_profile *p)
{
    return put(c, id, p, 1);
}

const vmp_profile *srv_cache_get(srv_cache *c, const char *id, srv_err *err)
{
    return srv_cache_get_value(c, id, err);
}

void srv_cache_release(srv_cache *c, const vmp_profile *p)
{
    srv_cache_release_value(c, p);
}
