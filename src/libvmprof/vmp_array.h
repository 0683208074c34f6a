/*
 * vmp_array.h - the growable array the library's modules share.
 *
 * An array is a pointer, a count the caller keeps and a capacity:
 * vmp_array_grow() makes room for `need` items of `elem` bytes, doubling the
 * capacity, and refuses (rather than overflows) a size that does not fit in
 * size_t.  On failure the array is unchanged.
 */
#ifndef VMP_ARRAY_H
#define VMP_ARRAY_H

#include <stddef.h>

/* 0, or -1 when out of memory or the size would overflow. */
int vmp_array_grow(void **items, size_t *cap, size_t need, size_t elem);

#endif /* VMP_ARRAY_H */
