/* vmp_hash.c - shared hashing and the u64 map (contract in vmp_hash.h). */
#include "vmp_hash.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a over the bytes, then the mixer: FNV alone spreads short strings
 * poorly into the low bits that pick a slot. */
uint64_t vmp_hash_bytes(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *s = data;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return vmp_mix64(h);
}

uint32_t *vmp_index_table_new(size_t cap)
{
    uint32_t *tab = malloc(cap * sizeof *tab);
    if (tab)
        memset(tab, 0xff, cap * sizeof *tab); /* every slot VMP_INDEX_FREE */
    return tab;
}

const vmp_u64map *vmp_u64map_test_failing;

static int u64map_grow(vmp_u64map *m)
{
    if (m == __atomic_load_n(&vmp_u64map_test_failing, __ATOMIC_RELAXED))
        return -1;
    size_t ncap = m->cap ? m->cap * 2 : 64;
    uint64_t *nk = malloc(ncap * sizeof *nk);
    uint32_t *nv = vmp_index_table_new(ncap); /* the values mark free slots */
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->vals[i] == VMP_U64MAP_EMPTY)
            continue;
        size_t j = vmp_index_table_slot(nv, ncap, vmp_mix64(m->keys[i]));
        nk[j] = m->keys[i];
        nv[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = nk;
    m->vals = nv;
    m->cap = ncap;
    return 0;
}

int vmp_u64map_put(vmp_u64map *m, uint64_t key, uint32_t val)
{
    if ((m->len + 1) * 2 > m->cap && u64map_grow(m) < 0)
        return -1;
    size_t mask = m->cap - 1;
    size_t i = vmp_mix64(key) & mask;
    while (m->vals[i] != VMP_U64MAP_EMPTY && m->keys[i] != key)
        i = (i + 1) & mask;
    if (m->vals[i] == VMP_U64MAP_EMPTY)
        m->len++;
    m->keys[i] = key;
    m->vals[i] = val;
    return 0;
}

void vmp_u64map_free(vmp_u64map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}
