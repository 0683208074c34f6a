/*
 * srv_cache.h - decoded profiles kept in memory, so that the views of a run
 * are answered from the model the upload built, without decoding again.  The
 * same cache, given another kind of value, keeps the decoded jit logs
 * (srv_jitlog.c): srv_cache_new_of and the *_value functions.
 *
 * Bounded by a byte budget (--cache-size): the least recently used profiles
 * are dropped first (one in use stays alive until released).  A profile not
 * in memory (after a restart, or dropped) is decoded again from its stored
 * file, once: requests for it meanwhile wait for that one decode.
 */
#ifndef SRV_CACHE_H
#define SRV_CACHE_H

#include <stddef.h>

#include "srv_store.h"
#include "vmprof.h"

typedef struct srv_cache srv_cache;

srv_cache *srv_cache_new(size_t budget_bytes, const char *data_dir);
void srv_cache_free(srv_cache *c);

/* What a profile is charged: the memory its decoded model holds
 * (vmp_profile_memory), measured when it enters the cache; a decoded profile
 * never grows afterwards (its views are computed into separate memory). */
size_t srv_cache_cost(const vmp_profile *p);

/* Keeps p (taken over) as run id's profile, replacing an earlier one, and
 * holds it as srv_cache_get does (release it with srv_cache_release); NULL
 * when it could not be kept (out of memory: p is freed). */
const vmp_profile *srv_cache_put_held(srv_cache *c, const char *id, vmp_profile *p);
/* The profile of run id, decoded from its file when not in memory; release
 * it with srv_cache_release().  NULL with err set when its file cannot be
 * read. */
const vmp_profile *srv_cache_get(srv_cache *c, const char *id, srv_err *err);
void srv_cache_release(srv_cache *c, const vmp_profile *p);
/* Forgets run id (deleted). */
void srv_cache_drop(srv_cache *c, const char *id);

/* ---- any kind of decoded file ---- */

typedef struct srv_cache_kind {
    /* Decodes run id's stored file: the value, or NULL with err set. */
    void *(*load)(const char *data_dir, const char *id, srv_err *err);
    void (*free)(void *value);
    /* The memory a value holds, charged against the budget. */
    size_t (*cost)(const void *value);
} srv_cache_kind;

srv_cache *srv_cache_new_of(size_t budget_bytes, const char *data_dir,
                            const srv_cache_kind *kind);
void srv_cache_put_value(srv_cache *c, const char *id, void *value);
const void *srv_cache_get_value(srv_cache *c, const char *id, srv_err *err);
void srv_cache_release_value(srv_cache *c, const void *value);

/* Bytes held now, for the bench. */
size_t srv_cache_bytes(srv_cache *c);

#endif /* SRV_CACHE_H */
