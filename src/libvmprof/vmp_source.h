/*
 * vmp_source.h - the bytes of a profile, however they arrive.
 *
 * A source hands the decoder contiguous runs of bytes: peek(n) makes n bytes at
 * the current position available (or says how many there are before the input
 * ends), consume(n) moves on.  Memory buffers are used in place, so for them
 * peek is pointer arithmetic.  Files and pipes are read into a window buffer
 * (a few hundred KiB, cache-sized: the decoder works on bytes the read just
 * brought into the cache) that grows only to the largest record peeked, so the
 * input is never held whole; gzip input (recognised by its magic, from any
 * origin) is inflated into the same kind of window.
 *
 * Offsets are in the decoded (decompressed) bytes.
 */
#ifndef VMP_SOURCE_H
#define VMP_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "vmp_error.h"

typedef struct vmp_source vmp_source;

struct vmp_source {
    const unsigned char *data; /* the window: data[pos..end) is available */
    size_t pos, end;
    uint64_t base;             /* input offset of data[0] */
    int eof;                   /* nothing more will arrive after data[end) */
    int (*fill)(vmp_source *src, size_t need, vmp_error *err);
    void *impl;
    int gzip;                  /* the input was gzip-compressed */
};

/* Opens path for reading (O_CLOEXEC) and returns its fd, or -1 with a
 * one-line reason in err; a directory is refused as "not a <what>".  Shared
 * by every reader of files (profiles, JIT logs). */
int vmp_open_input_file(const char *path, const char *what, vmp_error *err);

vmp_source *vmp_source_open_file(const char *path, vmp_error *err);
/* Reads fd from its current position to its end; does not close it. */
vmp_source *vmp_source_open_fd(int fd, vmp_error *err);
/* The memory must outlive the source. */
vmp_source *vmp_source_open_memory(const void *data, size_t len, vmp_error *err);
void vmp_source_close(vmp_source *src);

/* Returns a pointer to n bytes at the current position, or NULL when fewer
 * remain (then *avail, if given, holds how many do, and err is untouched) or
 * reading failed (err set, *avail = SIZE_MAX). */
const unsigned char *vmp_source_peek_slow(vmp_source *src, size_t n, size_t *avail,
                                          vmp_error *err);

static inline const unsigned char *vmp_source_peek(vmp_source *src, size_t n, size_t *avail,
                                                   vmp_error *err)
{
    if (src->end - src->pos >= n)
        return src->data + src->pos;
    return vmp_source_peek_slow(src, n, avail, err);
}

static inline void vmp_source_consume(vmp_source *src, size_t n)
{
    src->pos += n;
}

static inline uint64_t vmp_source_offset(const vmp_source *src)
{
    return src->base + src->pos;
}

#endif /* VMP_SOURCE_H */
