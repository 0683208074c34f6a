/*
 * vmp_hash.h - the hashing the library's lookup tables share.
 *
 * Contract:
 *   - vmp_mix64: a bijective 64-bit finalizer (every output bit depends on
 *     every input bit), for turning structured keys into table positions.
 *   - vmp_hash_bytes: a hash of a byte string with a seed, for tables whose
 *     keys are strings; two different seeds give two independent-enough hashes.
 *   - vmp_u64map: an open-addressing map from uint64_t keys to uint32_t values
 *     below VMP_U64MAP_EMPTY (that value marks a free slot).  A zeroed map is
 *     empty and valid; the load factor stays at or below one half.
 *   - index tables: open addressing over uint32_t indices into an array the
 *     caller owns, whose items hold their own keys (unique stacks, tree nodes,
 *     functions); VMP_INDEX_FREE marks a free slot, the capacity is a power of
 *     two and the caller keeps the load below one.  Lookups compare the items,
 *     so they stay with the caller; these helpers make and fill the table.
 * None of it is meant for untrusted keys chosen to collide: lookups stay
 * correct then, only slower.
 */
#ifndef VMP_HASH_H
#define VMP_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Inline: the decoder and the call tree call it once per probe. */
static inline uint64_t vmp_mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t vmp_hash_bytes(const void *data, size_t len, uint64_t seed);

#define VMP_U64MAP_EMPTY UINT32_MAX /* the same as VMP_INDEX_FREE below */

typedef struct vmp_u64map {
    uint64_t *keys;
    uint32_t *vals;
    size_t cap; /* zero or a power of two */
    size_t len;
} vmp_u64map;

/* 1 and *val set if key is present, else 0. */
static inline int vmp_u64map_find(const vmp_u64map *m, uint64_t key, uint32_t *val)
{
    if (!m->cap)
        return 0;
    size_t mask = m->cap - 1;
    for (size_t i = vmp_mix64(key) & mask;; i = (i + 1) & mask) {
        if (m->vals[i] == VMP_U64MAP_EMPTY)
            return 0;
        if (m->keys[i] == key) {
            *val = m->vals[i];
            return 1;
        }
    }
}

/* Sets key's value (replacing any); 0, or -1 when out of memory (the map is
 * unchanged then). */
int vmp_u64map_put(vmp_u64map *m, uint64_t key, uint32_t val);

/* Frees the tables; the map is empty and reusable afterwards. */
void vmp_u64map_free(vmp_u64map *m);

/* Tests only: the map whose growth fails as if memory were short (its put
 * then returns -1 whenever it would grow), or NULL (relaxed atomics). */
extern const vmp_u64map *vmp_u64map_test_failing;

#define VMP_INDEX_FREE UINT32_MAX

/* A table of cap free slots, or NULL when out of memory. */
uint32_t *vmp_index_table_new(size_t cap);

/* The first free slot on hash's probe sequence (linear probing). */
static inline size_t vmp_index_table_slot(const uint32_t *tab, size_t cap, uint64_t hash)
{
    size_t mask = cap - 1, j = hash & mask;
    while (tab[j] != VMP_INDEX_FREE)
        j = (j + 1) & mask;
    return j;
}

#endif
