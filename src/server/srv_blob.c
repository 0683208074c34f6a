/*
 * srv_blob.c - the run files under the data folder (see srv_blob.h).
 *
 * Compression is zlib's deflate with a gzip wrapper, so that the library's
 * reader (which recognises gzip) decodes a stored profile directly, and a
 * downloaded .gz opens with any tool.
 */
#include "srv_blob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define OUT_CHUNK (256 * 1024)

static void set_err(srv_err *err, const char *fmt, const char *a, const char *b)
{
    if (err)
        snprintf(err->message, sizeof err->message, fmt, a, b);
}

static int make_dir(const char *path, srv_err *err)
{
    if (mkdir(path, 0750) < 0 && errno != EEXIST) {
        set_err(err, "cannot create the folder %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int srv_blob_init(const char *data_dir, int tmp_max_age, srv_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/runs", data_dir);
    if (make_dir(path, err) < 0)
        return -1;
    snprintf(path, sizeof path, "%s/tmp", data_dir);
    if (make_dir(path, err) < 0)
        return -1;
    DIR *d = opendir(path);
    if (!d) {
        set_err(err, "cannot read the folder %s: %s", path, strerror(errno));
        return -1;
    }
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, 0) < 0)
            continue;
        if (now - st.st_mtime >= tmp_max_age)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
    return 0;
}

static const char *suffix(srv_blob_kind kind, int compressed_here)
{
    if (kind == SRV_BLOB_JITLOG)
        return ".jit.gz";
    return compressed_here ? ".prof.gz" : ".prof";
}

struct srv_blob_writer {
    int fd;
    char tmp[4096];
    char final_dir[4096];
    char id[SRV_ID_LEN + 1];
    srv_blob_kind kind;
    int decided;          /* whether to compress is known (after 2 bytes) */
    int compress;
    unsigned char head[2];
    size_t head_len;
    z_stream z;
    unsigned char *out;
    uint64_t size;
};

srv_blob_writer *srv_blob_begin(const char *data_dir, const char *id, srv_blob_kind kind,
                                srv_err *err)
{
    srv_blob_writer *w = calloc(1, sizeof *w);
    if (!w) {
        set_err(err, "%s%s", "out of memory", "");
        return NULL;
    }
    w->kind = kind;
    snprintf(w->id, sizeof w->id, "%s", id);
    snprintf(w->final_dir, sizeof w->final_dir, "%s/runs", data_dir);
    snprintf(w->tmp, sizeof w->tmp, "%s/tmp/%s.XXXXXX", data_dir, id);
    w->fd = mkstemp(w->tmp);
    if (w->fd < 0) {
        set_err(err, "cannot create a file in %s/tmp: %s", data_dir, strerror(errno));
        free(w);
        return NULL;
    }
    return w;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int deflate_some(srv_blob_writer *w, const void *data, size_t n, int flush)
{
    w->z.next_in = (unsigned char *)data;
    w->z.avail_in = (uInt)n;
    do {
        w->z.next_out = w->out;
        w->z.avail_out = OUT_CHUNK;
        int rc = deflate(&w->z, flush);
        if (rc == Z_STREAM_ERROR)
            return -1;
        if (write_all(w->fd, w->out, OUT_CHUNK - w->z.avail_out) < 0)
            return -1;
    } while (w->z.avail_out == 0 || (flush == Z_FINISH && w->z.avail_in));
    return 0;
}

/* Decides, from the first two bytes, whether the upload is gzip already. */
static int decide(srv_blob_writer *w)
{
    w->decided = 1;
    w->compress = w->kind == SRV_BLOB_PROFILE &&
                  !(w->head_len == 2 && w->head[0] == 0x1f && w->head[1] == 0x8b);
    if (w->compress) {
        w->out = malloc(OUT_CHUNK);
        if (!w->out || deflateInit2(&w->z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return -1;
        return deflate_some(w, w->head, w->head_len, Z_NO_FLUSH);
    }
    return write_all(w->fd, w->head, w->head_len);
}

int srv_blob_write(srv_blob_writer *w, const void *data, size_t n, srv_err *err)
{
    const unsigned char *p = data;
    w->size += n;
    while (!w->decided && n) {
        w->head[w->head_len++] = *p++;
        n--;
        if (w->head_len == 2 && decide(w) < 0)
            goto fail;
    }
    if (!n)
        return 0;
    if (w->compress ? deflate_some(w, p, n, Z_NO_FLUSH) : write_all(w->fd, p, n))
        goto fail;
    return 0;
fail:
    set_err(err, "cannot write the profile to the data folder: %s%s", strerror(errno), "");
    return -1;
}

static void free_writer(srv_blob_writer *w)
{
    if (w->out)
        deflateEnd(&w->z);
    free(w->out);
    if (w->fd >= 0)
        close(w->fd);
    free(w);
}

void srv_blob_abort(srv_blob_writer *w)
{
    if (!w)
        return;
    unlink(w->tmp);
    free_writer(w);
}

int srv_blob_commit(srv_blob_writer *w, uint64_t *size, srv_err *err)
{
    if ((!w->decided && decide(w) < 0) || (w->compress && deflate_some(w, NULL, 0, Z_FINISH) < 0) ||
        fsync(w->fd) < 0) {
        set_err(err, "cannot write the profile to the data folder: %s%s", strerror(errno), "");
        srv_blob_abort(w);
        return -1;
    }
    char final[4200];
    snprintf(final, sizeof final, "%s/%s%s", w->final_dir, w->id, suffix(w->kind, w->compress));
    /* A profile replaced by a new upload may have had the other name. */
    if (w->kind == SRV_BLOB_PROFILE) {
        char other[4200];
        snprintf(other, sizeof other, "%s/%s%s", w->final_dir, w->id, suffix(w->kind, !w->compress));
        unlink(other);
    }
    if (rename(w->tmp, final) < 0) {
        set_err(err, "cannot store the profile: %s%s", strerror(errno), "");
        srv_blob_abort(w);
        return -1;
    }
    /* The rename itself must reach the disk before the run is frozen. */
    int dfd = open(w->final_dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    if (size)
        *size = w->size;
    free_writer(w);
    return 0;
}

int srv_blob_path(const char *data_dir, const char *id, srv_blob_kind kind, char *path,
                  size_t size)
{
    for (int compressed = 1; compressed >= 0; compressed--) {
        snprintf(path, size, "%s/runs/%s%s", data_dir, id, suffix(kind, compressed));
        if (access(path, R_OK) == 0)
            return 0;
        if (kind == SRV_BLOB_JITLOG)
            break;
    }
    return -1;
}

void srv_blob_remove(const char *data_dir, const char *id)
{
    char path[4200];
    const char *suffixes[] = {".prof.gz", ".prof", ".jit.gz"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/runs/%s%s", data_dir, id, suffixes[i]);
        unlink(path);
    }
}

struct srv_blob_reader {
    int fd;
    int inflating;
    z_stream z;
    unsigned char in[64 * 1024];
    int ended;
};

srv_blob_reader *srv_blob_open(const char *data_dir, const char *id, srv_blob_kind kind)
{
    char path[4200];
    if (srv_blob_path(data_dir, id, kind, path, sizeof path) < 0)
        return NULL;
    srv_blob_reader *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t len = strlen(path);
    /* Only what was compressed here is inflated: a jit log and an upload that
     * came gzipped are given back as they came. */
    r->inflating = kind == SRV_BLOB_PROFILE && len > 3 && strcmp(path + len - 3, ".gz") == 0;
    if (r->fd < 0 || (r->inflating && inflateInit2(&r->z, 15 + 16) != Z_OK)) {
        if (r->fd >= 0)
            close(r->fd);
        free(r);
        return NULL;
    }
    return r;
}

ssize_t srv_blob_read(srv_blob_reader *r, void *buf, size_t n)
{
    if (!r->inflating) {
        ssize_t k;
        do
            k = read(r->fd, buf, n);
        while (k < 0 && errno == EINTR);
        return k;
    }
    r->z.next_out = buf;
    r->z.avail_out = (uInt)n;
    while (r->z.avail_out == n && !r->ended) {
        if (r->z.avail_in == 0) {
            ssize_t k = read(r->fd, r->in, sizeof r->in);
            if (k < 0)
                return -1;
            if (k == 0)
                return -1; /* the compressed stream ended early */
            r->z.next_in = r->in;
            r->z.avail_in = (uInt)k;
        }
        int rc = inflate(&r->z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END)
            r->ended = 1;
        else if (rc != Z_OK && rc != Z_BUF_ERROR)
            return -1;
    }
    return (ssize_t)(n - r->z.avail_out);
}

void srv_blob_close(srv_blob_reader *r)
{
    if (!r)
        return;
    if (r->inflating)
        inflateEnd(&r->z);
    close(r->fd);
    free(r);
}

int srv_blob_sweep(const char *data_dir, int (*keep)(void *ctx, const char *id), void *ctx,
                   srv_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/runs", data_dir);
    DIR *d = opendir(path);
    if (!d) {
        set_err(err, "cannot read the folder %s: %s", path, strerror(errno));
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *dot = strchr(e->d_name, '.');
        if (e->d_name[0] == '.' || !dot || dot - e->d_name != SRV_ID_LEN)
            continue;
        char id[SRV_ID_LEN + 1];
        memcpy(id, e->d_name, SRV_ID_LEN);
        id[SRV_ID_LEN] = 0;
        if (!keep(ctx, id))
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
    return 0;
}
