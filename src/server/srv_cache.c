/*
 * srv_cache.c - the in-memory profiles (see srv_cache.h).  A short list in
 * most-recently-used order: it holds as many profiles as the budget allows,
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
    vmp_profile *profile;
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
};

srv_cache *srv_cache_new(size_t budget_bytes, const char *data_dir)
{
    srv_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
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
    vmp_profile_free(e->profile);
    free(e);
}

/* Drops unused profiles, oldest first, until the budget holds. */
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

size_t srv_cache_cost(const vmp_profile *p)
{
    return vmp_profile_memory(p) + sizeof(entry);
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

void srv_cache_put(srv_cache *c, const char *id, vmp_profile *p)
{
    entry *e = calloc(1, sizeof *e);
    if (!e) {
        vmp_profile_free(p);
        return;
    }
    snprintf(e->id, sizeof e->id, "%s", id);
    e->profile = p;
    e->cost = srv_cache_cost(p);
    pthread_mutex_lock(&c->lock);
    entry *old = find(c, id);
    if (old)
        forget(c, old);
    push_front(c, e);
    c->bytes += e->cost;
    evict(c);
    pthread_mutex_unlock(&c->lock);
}

const vmp_profile *srv_cache_get(srv_cache *c, const char *id, srv_err *err)
{
    pthread_mutex_lock(&c->lock);
    entry *e = find(c, id);
    if (e) {
        e->refs++;
        while (e->loading)
            pthread_cond_wait(&c->loaded, &c->lock);
        if (!e->profile) {
            snprintf(err->message, sizeof err->message, "%s", e->error);
            if (--e->refs == 0)
                free_entry(c, e);
            pthread_mutex_unlock(&c->lock);
            return NULL;
        }
        unlink_entry(c, e);
        push_front(c, e);
        pthread_mutex_unlock(&c->lock);
        return e->profile;
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

    char path[4200];
    vmp_profile *p = NULL;
    vmp_error verr = {0};
    if (srv_blob_path(c->data_dir, id, SRV_BLOB_PROFILE, path, sizeof path) < 0)
        snprintf(e->error, sizeof e->error, "the profile file of run %s is missing", id);
    else if (!(p = vmp_profile_read_file(path, NULL, &verr)))
        snprintf(e->error, sizeof e->error, "the stored profile of run %s does not read: %s", id,
                 verr.message);

    pthread_mutex_lock(&c->lock);
    e->loading = 0;
    e->profile = p;
    if (p) {
        e->cost = srv_cache_cost(p);
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

void srv_cache_release(srv_cache *c, const vmp_profile *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&c->lock);
    for (entry *e = c->head; e; e = e->next)
        if (e->profile == p) {
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
