/* test_hash.c - the shared u64 map, index tables and byte hash (vmp_hash.h). */
#include <stdint.h>
#include <stdlib.h>

#include "vmp_hash.h"
#include "vmp_test.h"

VMP_TEST(u64map_zeroed_is_empty)
{
    vmp_u64map m = {0};
    uint32_t v = 7;
    CHECK(!vmp_u64map_find(&m, 0, &v));
    CHECK(v == 7);
    vmp_u64map_free(&m);
}

/* Keys that share their low bits all land near one slot before mixing, and
 * enough of them force several rehashes. */
VMP_TEST(u64map_put_find_replace_across_growth)
{
    vmp_u64map m = {0};
    enum { N = 5000 };
    for (uint32_t i = 0; i < N; i++)
        REQUIRE(vmp_u64map_put(&m, (uint64_t)i << 40, i) == 0);
    CHECK(m.len == N);
    CHECK(m.cap >= 2 * N);
    for (uint32_t i = 0; i < N; i++) {
        uint32_t v = VMP_U64MAP_EMPTY;
        CHECK(vmp_u64map_find(&m, (uint64_t)i << 40, &v) && v == i);
    }
    uint32_t v;
    CHECK(!vmp_u64map_find(&m, 1, &v));
    CHECK(!vmp_u64map_find(&m, (uint64_t)N << 40, &v));
    REQUIRE(vmp_u64map_put(&m, (uint64_t)3 << 40, 99) == 0);
    CHECK(m.len == N);
    CHECK(vmp_u64map_find(&m, (uint64_t)3 << 40, &v) && v == 99);
    vmp_u64map_free(&m);
    CHECK(m.cap == 0 && m.len == 0 && !vmp_u64map_find(&m, 0, &v));
}

VMP_TEST(hash_bytes_depends_on_bytes_length_and_seed)
{
    uint64_t h = vmp_hash_bytes("abc", 3, 1);
    CHECK(h == vmp_hash_bytes("abc", 3, 1));
    CHECK(h != vmp_hash_bytes("abd", 3, 1));
    CHECK(h != vmp_hash_bytes("abc", 3, 2));
    CHECK(vmp_hash_bytes("ab", 2, 0) != vmp_hash_bytes("ab\0", 3, 0));
}

VMP_TEST(index_table_slot_probes_past_taken_slots_and_wraps)
{
    uint32_t *tab = vmp_index_table_new(8);
    REQUIRE(tab);
    for (size_t i = 0; i < 8; i++)
        CHECK(tab[i] == VMP_INDEX_FREE);
    CHECK(vmp_index_table_slot(tab, 8, 6) == 6);
    CHECK(vmp_index_table_slot(tab, 8, 8 + 6) == 6); /* only the low bits pick */
    tab[6] = 0;
    tab[7] = 1;
    CHECK(vmp_index_table_slot(tab, 8, 6) == 0); /* past the end, round to 0 */
    tab[0] = 2;
    CHECK(vmp_index_table_slot(tab, 8, 7) == 1);
    free(tab);
}
