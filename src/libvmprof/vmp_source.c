/* vmp_source.c - files, pipes, memory and gzip input (contract in vmp_source.h). */
#include "vmp_source.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define WINDOW_MIN (256 * 1024)
#define INBUF_SIZE (64 * 1024)

typedef struct src_impl {
    int fd;       /* read from when >= 0 */
    int owns_fd;  /* opened by us */
    /* compressed (or, before detection, raw) input */
    const unsigned char *in_mem;
    size_t in_len, in_pos;
    unsigned char *inbuf;
    size_t inbuf_len; /* bytes of inbuf in use (fd input) */
    z_stream zs;
    int zs_init;
    /* the window for streamed output */
    unsigned char *win;
    size_t win_cap;
} src_impl;

static int gz_magic(const unsigned char *p, size_t n)
{
    return n >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

static ssize_t read_some(int fd, void *buf, size_t n)
{
    for (;;) {
        ssize_t r = read(fd, buf, n);
        if (r >= 0 || errno != EINTR)
            return r;
    }
}

/* Moves the unread bytes to the window's start and makes room for need. */
static int window_prepare(vmp_source *src, size_t need, vmp_error *err)
{
    src_impl *im = src->impl;
    size_t keep = src->end - src->pos;
    size_t cap = need > WINDOW_MIN ? need : WINDOW_MIN;
    if (im->win_cap < cap) {
        unsigned char *w = malloc(cap);
        if (!w)
            return vmp_error_set(err, (int64_t)vmp_source_offset(src),
                                 "out of memory for a %zu-byte read window", cap);
        if (keep)
            memcpy(w, src->data + src->pos, keep);
        free(im->win);
        im->win = w;
        im->win_cap = cap;
    } else if (keep && src->pos) {
        memmove(im->win, src->data + src->pos, keep);
    }
    src->base += src->pos;
    src->data = im->win;
    src->pos = 0;
    src->end = keep;
    return 0;
}

static int fill_fd(vmp_source *src, size_t need, vmp_error *err)
{
    src_impl *im = src->impl;
    if (window_prepare(src, need, err) < 0)
        return -1;
    while (src->end < need) {
        ssize_t r = read_some(im->fd, im->win + src->end, im->win_cap - src->end);
        if (r < 0)
            return vmp_error_set(err, (int64_t)(src->base + src->end),
                                 "at byte %llu: read failed: %s",
                                 (unsigned long long)(src->base + src->end), strerror(errno));
        if (r == 0) {
            src->eof = 1;
            break;
        }
        src->end += (size_t)r;
    }
    return 0;
}

/* Refills the compressed input; returns 0 at its end, 1 when there is more. */
static int gz_input(vmp_source *src, vmp_error *err)
{
    src_impl *im = src->impl;
    if (im->fd < 0) {
        size_t left = im->in_len - im->in_pos;
        if (!left)
            return 0;
        size_t chunk = left > (1u << 30) ? (1u << 30) : left;
        im->zs.next_in = (unsigned char *)(uintptr_t)(im->in_mem + im->in_pos);
        im->zs.avail_in = (uInt)chunk;
        im->in_pos += chunk;
        return 1;
    }
    ssize_t r = read_some(im->fd, im->inbuf, INBUF_SIZE);
    if (r < 0)
        return vmp_error_set(err, (int64_t)(src->base + src->end),
                             "at byte %llu: read failed: %s",
                             (unsigned long long)(src->base + src->end), strerror(errno));
    im->zs.next_in = im->inbuf;
    im->zs.avail_in = (uInt)r;
    return r > 0;
}

/* After a gzip member ends: another member follows (concatenated files, and
 * tools such as pigz and bgzip write several) or the input is over.  Bytes
 * after the last member that are not gzip are ignored, as gzip(1) does.
 * Returns 1 to go on with the next member, 0 at the end, -1 on error. */
static int gz_next_member(vmp_source *src, vmp_error *err)
{
    src_impl *im = src->impl;
    if (im->zs.avail_in < 2) {
        if (im->fd >= 0) {
            size_t have = im->zs.avail_in;
            memmove(im->inbuf, im->zs.next_in, have);
            while (have < 2) {
                ssize_t r = read_some(im->fd, im->inbuf + have, INBUF_SIZE - have);
                if (r < 0)
                    return vmp_error_set(err, (int64_t)(src->base + src->end),
                                         "at byte %llu: read failed: %s",
                                         (unsigned long long)(src->base + src->end),
                                         strerror(errno));
                if (r == 0)
                    break;
                have += (size_t)r;
            }
            im->zs.next_in = im->inbuf;
            im->zs.avail_in = (uInt)have;
        } else if (im->zs.avail_in == 0) {
            int more = gz_input(src, err);
            if (more <= 0)
                return more;
        }
    }
    if (im->zs.avail_in >= 2 && im->zs.next_in[0] == 0x1f && im->zs.next_in[1] == 0x8b) {
        if (inflateReset(&im->zs) != Z_OK)
            return vmp_error_set(err, -1, "cannot restart gzip decompression");
        return 1;
    }
    return 0;
}

static int fill_gz(vmp_source *src, size_t need, vmp_error *err)
{
    src_impl *im = src->impl;
    if (window_prepare(src, need, err) < 0)
        return -1;
    while (src->end < need && !src->eof) {
        if (im->zs.avail_in == 0) {
            int more = gz_input(src, err);
            if (more < 0)
                return -1;
            if (!more) {
                src->eof = 1; /* compressed data cut short: a truncated profile */
                break;
            }
        }
        im->zs.next_out = im->win + src->end;
        im->zs.avail_out = (uInt)(im->win_cap - src->end);
        int rc = inflate(&im->zs, Z_NO_FLUSH);
        src->end = im->win_cap - im->zs.avail_out;
        if (rc == Z_STREAM_END) {
            int next = gz_next_member(src, err);
            if (next < 0)
                return -1;
            if (!next)
                src->eof = 1;
        } else if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT) {
            return vmp_error_set(err, (int64_t)(src->base + src->end),
                                 "at byte %llu: the gzip data is corrupt (%s); the profile "
                                 "cannot be decompressed past this point",
                                 (unsigned long long)(src->base + src->end),
                                 im->zs.msg ? im->zs.msg : "bad data");
        } else if (rc == Z_MEM_ERROR) {
            return vmp_error_set(err, (int64_t)(src->base + src->end),
                                 "out of memory while decompressing");
        }
        /* Z_OK and Z_BUF_ERROR: go on, feeding input when it runs out */
    }
    return 0;
}

static vmp_source *source_new(vmp_error *err)
{
    vmp_source *src = calloc(1, sizeof *src);
    src_impl *im = calloc(1, sizeof *im);
    if (!src || !im) {
        free(src);
        free(im);
        vmp_error_set(err, -1, "out of memory");
        return NULL;
    }
    im->fd = -1;
    src->impl = im;
    return src;
}

static int start_gzip(vmp_source *src, vmp_error *err)
{
    src_impl *im = src->impl;
    /* 16 + MAX_WBITS: gzip framing only */
    if (inflateInit2(&im->zs, 16 + MAX_WBITS) != Z_OK)
        return vmp_error_set(err, -1, "cannot start gzip decompression");
    im->zs_init = 1;
    src->gzip = 1;
    src->fill = fill_gz;
    src->data = NULL;
    src->pos = src->end = 0;
    return 0;
}

/* In-memory bytes. */
static int setup_memory(vmp_source *src, const void *data, size_t len, vmp_error *err)
{
    src_impl *im = src->impl;
    if (gz_magic(data, len)) {
        im->in_mem = data;
        im->in_len = len;
        return start_gzip(src, err);
    }
    src->data = data;
    src->pos = 0;
    src->end = len;
    src->eof = 1;
    src->fill = NULL;
    return 0;
}

vmp_source *vmp_source_open_memory(const void *data, size_t len, vmp_error *err)
{
    vmp_source *src = source_new(err);
    if (!src)
        return NULL;
    if (setup_memory(src, len ? data : "", len, err) < 0) {
        vmp_source_close(src);
        return NULL;
    }
    return src;
}

/* Streams fd; its first bytes decide between plain and gzip. */
static int setup_fd(vmp_source *src, int fd, vmp_error *err)
{
    src_impl *im = src->impl;
    im->fd = fd;
    im->inbuf = malloc(INBUF_SIZE);
    if (!im->inbuf)
        return vmp_error_set(err, -1, "out of memory");
    size_t got = 0;
    while (got < 2) {
        ssize_t r = read_some(fd, im->inbuf + got, INBUF_SIZE - got);
        if (r < 0)
            return vmp_error_set(err, (int64_t)got, "read failed: %s", strerror(errno));
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (gz_magic(im->inbuf, got)) {
        if (start_gzip(src, err) < 0)
            return -1;
        im->zs.next_in = im->inbuf;
        im->zs.avail_in = (uInt)got;
        return 0;
    }
    src->fill = fill_fd;
    if (window_prepare(src, got, err) < 0)
        return -1;
    memcpy(im->win, im->inbuf, got);
    src->end = got;
    if (got < 2)
        src->eof = 1;
    return 0;
}

vmp_source *vmp_source_open_fd(int fd, vmp_error *err)
{
    vmp_source *src = source_new(err);
    if (!src)
        return NULL;
    if (setup_fd(src, fd, err) < 0) {
        vmp_source_close(src);
        return NULL;
    }
    return src;
}

int vmp_open_input_file(const char *path, const char *what, vmp_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vmp_error_set(err, -1, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        vmp_error_set(err, -1, "'%s' is a directory, not a %s", path, what);
        return -1;
    }
    return fd;
}

vmp_source *vmp_source_open_file(const char *path, vmp_error *err)
{
    int fd = vmp_open_input_file(path, "profile file", err);
    if (fd < 0)
        return NULL;
    /* Files are read, not mapped: read() pulls each window through the cache
     * once and the decoder then works on cache-hot bytes, which measured
     * faster than decoding a mapping, and memory stays one window. */
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    vmp_source *src = source_new(err);
    if (!src) {
        close(fd);
        return NULL;
    }
    src_impl *im = src->impl;
    im->owns_fd = 1;
    if (setup_fd(src, fd, err) < 0) {
        vmp_source_close(src);
        return NULL;
    }
    return src;
}

const unsigned char *vmp_source_peek_slow(vmp_source *src, size_t n, size_t *avail,
                                          vmp_error *err)
{
    if (!src->eof && src->fill) {
        if (src->fill(src, n, err) < 0) {
            if (avail)
                *avail = SIZE_MAX;
            return NULL;
        }
        if (src->end - src->pos >= n)
            return src->data + src->pos;
    }
    if (avail)
        *avail = src->end - src->pos;
    return NULL;
}

void vmp_source_close(vmp_source *src)
{
    if (!src)
        return;
    src_impl *im = src->impl;
    if (im) {
        if (im->owns_fd && im->fd >= 0)
            close(im->fd);
        if (im->zs_init)
            inflateEnd(&im->zs);
        free(im->inbuf);
        free(im->win);
        free(im);
    }
    free(src);
}
