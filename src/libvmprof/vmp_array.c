/* vmp_array.c - the growable array (contract in vmp_array.h). */
#include "vmp_array.h"

#include <stdint.h>
#include <stdlib.h>

int vmp_array_grow(void **items, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem)
            return -1;
        nc *= 2;
    }
    void *n = realloc(*items, nc * elem);
    if (!n)
        return -1;
    *items = n;
    *cap = nc;
    return 0;
}
