/* vmp_span.h - the one search of a sorted table of half-open address
 * ranges [lo, hi), used by the signal handler's walk (code segments, rules,
 * perf trampoline mappings) and by the writer (file mappings).
 * Signal-safe: no lock, no allocation, no call. */
#ifndef VMP_SPAN_H
#define VMP_SPAN_H

#include <stddef.h>
#include <stdint.h>

/* The index of the row holding addr, or -1.  Each row is `stride` bytes and
 * begins with its lo and hi (uintptr_t, in that order); rows are sorted and
 * do not overlap. */
static inline long vmp_span_find(const void *rows, size_t n, size_t stride, uintptr_t addr)
{
    const unsigned char *base = rows;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uintptr_t *row = (const uintptr_t *)(const void *)(base + mid * stride);
        if (addr < row[0])
            hi = mid;
        else if (addr >= row[1])
            lo = mid + 1;
        else
            return (long)mid;
    }
    return -1;
}

#endif
