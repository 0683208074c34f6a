/*
 * srv_blob.c - the run files under the data folder (see srv_blob.h).
 *
 * A profile is compressed after its upload with zstd at a fast level: on the
 * 324 MiB bench profile it packs 11:1 for ~0.4 s of CPU, where zlib's
 * deflate at its fastest took ~1.3 s for 8:1, and it decompresses 4-5 times
 * faster (a profile dropped from the cache is decoded again from its file).
 * Profiles that builds before it gzipped are still read.
 */
#define _GNU_SOURCE /* gettid */
#include "srv_blob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "vmp_compact.h"
#include "vmprof.h"

#define OUT_CHUNK (256 * 1024)
/* An upload's file is handed to the disk every this many bytes while it
 * arrives, so that the fsync before the answer waits for the last few MB
 * only, not for the whole file to be written back then. */
#define WRITEBACK_STEP (8u << 20)
#define QUEUE_MAX 4096
/* zstd's level for the profiles compressed here (see the top). */
#define PACK_LEVEL 1
/* A large profile goes to the disk from memory (O_DIRECT), by a thread of
 * its writer, in pieces of this size, this many at most in memory. */
#define DIRECT_PIECE (2u << 20)
#define DIRECT_PIECES 4
/* The pieces of a compact file, which grows ~100 times slower than the
 * upload: small, so that the disk writes it while it arrives and the fsync
 * before the answer waits for its last piece only (with 2 MiB pieces it
 * waited for 1.4 MiB of the bench profile's 3.4 MiB, ~10 ms here). */
#define DIRECT_PIECE_COMPACT (256u << 10)
#define DIRECT_ALIGN 4096

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

/* How a stored profile's file holds the bytes uploaded; the order is the
 * order of precedence when looking a run's file up. */
typedef enum stored_as {
    STORED_COMPACT_ZSTD, STORED_COMPACT, STORED_ZSTD, STORED_GZIP, STORED_PLAIN, STORED_FORMS
} stored_as;
static const char *const profile_suffix[STORED_FORMS] = {".prof.vmc.zst", ".prof.vmc",
                                                         ".prof.zst", ".prof.gz", ".prof"};

static const char *suffix(srv_blob_kind kind, stored_as as)
{
    return kind == SRV_BLOB_JITLOG ? ".jit.gz" : profile_suffix[as];
}

/* The direct path of a large profile.  The receiving thread copies the
 * body into pieces of aligned memory; a full piece goes to this writer's
 * thread, which writes it with O_DIRECT: the disk reads it from memory, so
 * writing costs the CPU one copy, not the page cache's work (allocating,
 * copying, accounting and later writing back 324 MiB cost as much CPU as
 * the decoding), and the thread waits for the disk while the receiving
 * thread goes on.  (A thread writing through the page cache was tried in
 * session 5 and lost: on 2 cores its copies competed with the client.) */
typedef struct direct {
    int fd;                 /* the file, opened O_DIRECT */
    size_t piece;           /* the size of a piece (DIRECT_PIECE...) */
    unsigned char *mem;     /* DIRECT_PIECES pieces, aligned */
    uint64_t off[DIRECT_PIECES]; /* where each full piece goes in the file */
    size_t cur, fill;       /* the piece being filled and its bytes (receiver's) */
    uint64_t next_off;      /* where the piece being filled goes */
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    size_t head, count;     /* full pieces, oldest first: written or waiting */
    int stop;
    int error;              /* errno of a failed write, reported by the receiver */
    int buffered;           /* O_DIRECT was refused: through the page cache */
} direct;

struct srv_blob_writer {
    int fd;
    char tmp[4096];
    char final_dir[4096];
    char id[SRV_ID_LEN + 1];
    srv_blob_kind kind;
    uint64_t size;         /* bytes given to the writer */
    uint64_t stored;       /* bytes written to the file */
    uint64_t written_back; /* stored bytes before this are being written to the disk */
    uint64_t expected;     /* the body's declared length, or 0 */
    int started;           /* the first bytes came: the way they are stored is chosen */
    direct *direct;        /* NULL: written through the page cache (fd) */
    vmp_compact_writer *compact; /* a plain profile, kept in the compact form */
    int compact_done;      /* ended: the file is a compact one */
    int error;             /* errno of a failed write under the compact writer */
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

int srv_write_all(int fd, const void *data, size_t n)
{
    const unsigned char *p = data;
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

static int pwrite_all(int fd, const unsigned char *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? errno : EIO;
        p += k, n -= (size_t)k, off += (uint64_t)k;
    }
    return 0;
}

/* Writes one full piece; from either thread (each its own piece). */
static int write_piece(srv_blob_writer *w, const unsigned char *piece, uint64_t off)
{
    direct *d = w->direct;
    int e = __atomic_load_n(&d->buffered, __ATOMIC_RELAXED)
                ? EINVAL : pwrite_all(d->fd, piece, d->piece, off);
    if (e == EINVAL) {
        /* The filesystem refuses O_DIRECT writes (it accepted the open):
         * through the page cache, then, as small uploads go. */
        __atomic_store_n(&d->buffered, 1, __ATOMIC_RELAXED);
        e = pwrite_all(w->fd, piece, d->piece, off);
    }
    return e;
}

static void *direct_thread(void *arg)
{
    srv_blob_writer *w = arg;
    direct *d = w->direct;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->count && !d->stop)
            pthread_cond_wait(&d->wake, &d->lock);
        if (!d->count)
            break;
        size_t i = d->head;
        pthread_mutex_unlock(&d->lock);
        int e = write_piece(w, d->mem + i * d->piece, d->off[i]);
        pthread_mutex_lock(&d->lock);
        if (e && !d->error)
            d->error = e;
        d->head = (d->head + 1) % DIRECT_PIECES;
        d->count--;
        pthread_cond_signal(&d->done);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* The direct path, when the filesystem takes O_DIRECT; the memory is taken
 * only now, for a body known to be large. */
static void direct_begin(srv_blob_writer *w, size_t piece)
{
    direct *d = calloc(1, sizeof *d);
    if (!d)
        return;
    d->piece = piece;
    d->fd = open(w->tmp, O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (d->fd < 0 || posix_memalign((void **)&d->mem, DIRECT_ALIGN,
                                    piece * DIRECT_PIECES) != 0) {
        if (d->fd >= 0)
            close(d->fd);
        free(d);
        return;
    }
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    pthread_cond_init(&d->done, NULL);
    w->direct = d;
}

/* Waits for the thread to write every full piece and stop; the errno of a
 * failed write, or 0.  Frees nothing. */
static int direct_drain(direct *d)
{
    pthread_mutex_lock(&d->lock);
    d->stop = 1;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
    if (d->started)
        pthread_join(d->thread, NULL);
    d->started = 0;
    return d->error;
}

static void direct_free(direct *d)
{
    if (!d)
        return;
    direct_drain(d);
    close(d->fd);
    free(d->mem);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->wake);
    pthread_cond_destroy(&d->done);
    free(d);
}

/* Copies the bytes into the pieces, handing each full one to the thread
 * (started at the first).  When the thread is behind by all the other
 * pieces, the receiver writes this one itself rather than wait for the
 * thread to be scheduled (on a loaded machine that wait was longer than the
 * write): at worst it does what it did without the thread. */
static int direct_write(srv_blob_writer *w, const unsigned char *data, size_t n)
{
    direct *d = w->direct;
    while (n) {
        size_t k = d->piece - d->fill < n ? d->piece - d->fill : n;
        memcpy(d->mem + d->cur * d->piece + d->fill, data, k);
        d->fill += k, data += k, n -= k;
        if (d->fill < d->piece)
            break;
        uint64_t off = d->next_off;
        d->next_off += d->piece;
        d->fill = 0;
        pthread_mutex_lock(&d->lock);
        if (!d->started) {
            if (pthread_create(&d->thread, NULL, direct_thread, w) != 0) {
                pthread_mutex_unlock(&d->lock);
                return ENOMEM;
            }
            d->started = 1;
        }
        int e = d->error, handed = 0;
        if (!e && d->count + 1 < DIRECT_PIECES) {
            d->off[d->cur] = off;
            d->count++;
            d->cur = (d->cur + 1) % DIRECT_PIECES;
            pthread_cond_signal(&d->wake);
            handed = 1;
        }
        pthread_mutex_unlock(&d->lock);
        if (!e && !handed)
            e = write_piece(w, d->mem + d->cur * d->piece, off);
        if (e)
            return e;
    }
    return 0;
}

/* Every byte written: the full pieces by the thread, the last partial one
 * through the page cache (O_DIRECT takes whole blocks only). */
static int direct_end(srv_blob_writer *w)
{
    direct *d = w->direct;
    int e = direct_drain(d);
    if (!e && d->fill)
        e = pwrite_all(w->fd, d->mem + d->cur * d->piece, d->fill, d->next_off);
    return e;
}

void srv_blob_expect(srv_blob_writer *w, uint64_t bytes)
{
    if (!w->started)
        w->expected = bytes;
}

/* The first bytes came: the direct path for a large body, and its blocks
 * reserved at once rather than page by page as they are written (ext4's
 * delayed allocation; the file keeps its size, so a shorter body leaves
 * nothing to cut).  A compact file's size is not known: nothing reserved. */
static void start(srv_blob_writer *w, int compact)
{
    w->started = 1;
    uint64_t bytes = w->expected;
    if (w->kind == SRV_BLOB_PROFILE && bytes >= 2 * DIRECT_PIECE)
        direct_begin(w, compact ? DIRECT_PIECE_COMPACT : DIRECT_PIECE);
#ifdef FALLOC_FL_KEEP_SIZE
    if (!compact && bytes && bytes < ((uint64_t)1 << 62))
        (void)fallocate(w->fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes);
#else
    (void)compact;
#endif
}

/* Appends n bytes to the file: the errno of a failure, or 0. */
static int store(srv_blob_writer *w, const void *data, size_t n)
{
    if (w->direct) {
        int e = direct_write(w, data, n);
        if (!e)
            w->stored += n;
        return e;
    }
    if (srv_write_all(w->fd, data, n) < 0)
        return errno ? errno : EIO;
    w->stored += n;
#ifdef SYNC_FILE_RANGE_WRITE
    if (w->stored - w->written_back >= WRITEBACK_STEP) {
        /* Starts the writing back and returns; a failure here shows again
         * at the fsync. */
        (void)sync_file_range(w->fd, (off_t)w->written_back,
                              (off_t)(w->stored - w->written_back), SYNC_FILE_RANGE_WRITE);
        w->written_back = w->stored;
    }
#endif
    return 0;
}

static int compact_sink(void *ctx, const void *data, size_t n)
{
    srv_blob_writer *w = ctx;
    w->error = store(w, data, n);
    return w->error ? -1 : 0;
}

int srv_blob_compact(srv_blob_writer *w, vmp_decoder *d, srv_err *err)
{
    if (w->started || w->kind != SRV_BLOB_PROFILE)
        return 0;
    start(w, 1);
    w->compact = vmp_compact_writer_new(d, compact_sink, w);
    if (!w->compact) {
        set_err(err, "cannot write the profile to the data folder: %s%s",
                w->error ? strerror(w->error) : "out of memory", "");
        return -1;
    }
    /* (start chose the direct path by the body's length: the compact file
     * is smaller, but of a size known only at its end) */
    return 0;
}

int srv_blob_write(srv_blob_writer *w, const void *data, size_t n, srv_err *err)
{
    if (!w->started)
        start(w, 0);
    int e;
    if (w->compact)
        e = vmp_compact_write(w->compact, data, n) < 0 ? (w->error ? w->error : ENOMEM) : 0;
    else
        e = store(w, data, n);
    if (e) {
        set_err(err, "cannot write the profile to the data folder: %s%s", strerror(e), "");
        return -1;
    }
    w->size += n;
    return 0;
}

const char *srv_blob_pending_path(const srv_blob_writer *w)
{
    return w->tmp;
}

static void free_writer(srv_blob_writer *w)
{
    vmp_compact_writer_free(w->compact);
    direct_free(w->direct);
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

static void sync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

int srv_blob_finish(srv_blob_writer *w, uint64_t *size, srv_err *err)
{
    int e = 0;
    if (w->compact) {
        vmp_compact_writer *c = w->compact;
        w->compact = NULL;
        if (vmp_compact_end(c) < 0)
            e = w->error ? w->error : ENOMEM;
        w->compact_done = 1;
    }
    if (!e && w->direct)
        e = direct_end(w);
    if (e) {
        set_err(err, "cannot write the profile to the data folder: %s%s", strerror(e), "");
        srv_blob_abort(w);
        return -1;
    }
    /* (one inode: this also flushes the disk's cache over what the thread
     * wrote directly) */
    if (fsync(w->fd) < 0) {
        set_err(err, "cannot write the profile to the data folder: %s%s", strerror(errno), "");
        srv_blob_abort(w);
        return -1;
    }
    if (size)
        *size = w->size;
    return 0;
}

int srv_blob_place(srv_blob_writer *w, srv_err *err)
{
    char final[4200];
    stored_as as = w->compact_done ? STORED_COMPACT : STORED_PLAIN;
    snprintf(final, sizeof final, "%s/%s%s", w->final_dir, w->id, suffix(w->kind, as));
    /* A profile replaced by a new upload may be stored in another form. */
    if (w->kind == SRV_BLOB_PROFILE) {
        for (int other = 0; other < STORED_FORMS; other++) {
            char path[4200];
            if (other == (int)as)
                continue;
            snprintf(path, sizeof path, "%s/%s%s", w->final_dir, w->id, profile_suffix[other]);
            unlink(path);
        }
    }
    if (rename(w->tmp, final) < 0) {
        set_err(err, "cannot store the profile: %s%s", strerror(errno), "");
        srv_blob_abort(w);
        return -1;
    }
    /* The rename itself must reach the disk before the run is frozen. */
    sync_dir(w->final_dir);
    free_writer(w);
    return 0;
}

int srv_blob_commit(srv_blob_writer *w, uint64_t *size, srv_err *err)
{
    return srv_blob_finish(w, size, err) < 0 ? -1 : srv_blob_place(w, err);
}

/* The stored file of a run and how it holds the bytes uploaded. */
static int find(const char *data_dir, const char *id, srv_blob_kind kind, char *path,
                size_t size, stored_as *as)
{
    for (int i = 0; i < STORED_FORMS; i++) {
        /* (a jit log is given back as the client gzipped it: "plain") */
        *as = kind == SRV_BLOB_JITLOG ? STORED_PLAIN : (stored_as)i;
        snprintf(path, size, "%s/runs/%s%s", data_dir, id, suffix(kind, (stored_as)i));
        if (access(path, R_OK) == 0)
            return 0;
        if (kind == SRV_BLOB_JITLOG)
            break;
    }
    return -1;
}

int srv_blob_path(const char *data_dir, const char *id, srv_blob_kind kind, char *path,
                  size_t size)
{
    stored_as as;
    return find(data_dir, id, kind, path, size, &as);
}

void srv_blob_remove(const char *data_dir, const char *id)
{
    char path[4200];
    for (int i = 0; i < STORED_FORMS; i++) {
        snprintf(path, sizeof path, "%s/runs/%s%s", data_dir, id, profile_suffix[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/runs/%s%s", data_dir, id, suffix(SRV_BLOB_JITLOG, 0));
    unlink(path);
}

struct srv_blob_reader {
    int fd;
    stored_as as;
    char name[4200];   /* the file, as errors name it */
    char error[256];   /* why reading its bytes failed: the first reason */
    char message[4600]; /* srv_blob_reader_error's answer */
    vmp_compact_reader *compact; /* STORED_COMPACT */
    z_stream z;        /* STORED_GZIP */
    int ended;
    ZSTD_DStream *zd;  /* STORED_ZSTD */
    ZSTD_inBuffer zin;
    int eof, frame_open;
    unsigned char in[64 * 1024];
};

static ssize_t read_zstd(srv_blob_reader *r, void *buf, size_t n);

/* Records why the file's bytes do not read (the first reason); -1. */
static ssize_t unreadable(srv_blob_reader *r, const char *what, const char *detail)
{
    if (!r->error[0])
        snprintf(r->error, sizeof r->error, "%s%s", what, detail);
    return -1;
}

static ssize_t read_zstd_source(void *ctx, void *buf, size_t n)
{
    return read_zstd(ctx, buf, n);
}

static ssize_t read_fd(void *ctx, void *buf, size_t n)
{
    srv_blob_reader *r = ctx;
    ssize_t k;
    do
        k = read(r->fd, buf, n);
    while (k < 0 && errno == EINTR);
    return k < 0 ? unreadable(r, "cannot read it: ", strerror(errno)) : k;
}

static srv_blob_reader *open_as(const char *path, const char *name, stored_as as)
{
    srv_blob_reader *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->as = as;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    int ok = r->fd >= 0;
    if (ok && as == STORED_GZIP && inflateInit2(&r->z, 15 + 16) != Z_OK) {
        r->as = STORED_PLAIN;
        ok = 0;
    }
    if (ok && (as == STORED_ZSTD || as == STORED_COMPACT_ZSTD)) {
        r->zd = ZSTD_createDStream();
        r->zin.src = r->in;
        ok = r->zd != NULL;
    }
    if (ok && (as == STORED_COMPACT || as == STORED_COMPACT_ZSTD)) {
        r->compact = vmp_compact_reader_new(as == STORED_COMPACT ? read_fd : read_zstd_source, r);
        ok = r->compact != NULL;
    }
    if (!ok) {
        srv_blob_close(r);
        return NULL;
    }
    return r;
}

srv_blob_reader *srv_blob_open(const char *data_dir, const char *id, srv_blob_kind kind)
{
    char path[4200], name[4200];
    stored_as as;
    if (find(data_dir, id, kind, path, sizeof path, &as) < 0)
        return NULL;
    snprintf(name, sizeof name, "runs/%s%s", id, suffix(kind, as));
    return open_as(path, name, as);
}

srv_blob_reader *srv_blob_open_file(const char *path)
{
    /* (named as the server names a run's profile: the name says the form) */
    size_t len = strlen(path);
    stored_as as = STORED_PLAIN;
    for (int i = 0; i < STORED_FORMS; i++) {
        const char *end = profile_suffix[i] + strlen(".prof");
        size_t n = strlen(end);
        if (n && len > n && strcmp(path + len - n, end) == 0) {
            as = (stored_as)i;
            break;
        }
    }
    return open_as(path, path, as);
}

const char *srv_blob_reader_error(srv_blob_reader *r)
{
    static const char compact_damage[] = "the compact profile is damaged: ";
    const char *what = r->error;
    if (!what[0] && r->compact)
        what = vmp_compact_reader_error(r->compact);
    if (!what[0])
        return "";
    if (strncmp(what, compact_damage, sizeof compact_damage - 1) == 0)
        what += sizeof compact_damage - 1;
    else if (strncmp(what, "out of memory", 13) == 0)
        return what; /* (nothing wrong with the file) */
    snprintf(r->message, sizeof r->message, "%s is damaged: %s", r->name, what);
    return r->message;
}

/* Decompresses into buf what was compressed here, streamed (the memory is
 * zstd's window: 512 KB at the level used), to the end of the file. */
static ssize_t read_zstd(srv_blob_reader *r, void *buf, size_t n)
{
    ZSTD_outBuffer out = {buf, n, 0};
    while (out.pos == 0) {
        if (r->zin.pos == r->zin.size && !r->eof) {
            ssize_t k = read(r->fd, r->in, sizeof r->in);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return unreadable(r, "cannot read it: ", strerror(errno));
            r->eof = k == 0;
            r->zin.size = (size_t)k;
            r->zin.pos = 0;
        }
        size_t consumed = r->zin.pos;
        size_t rc = ZSTD_decompressStream(r->zd, &out, &r->zin);
        if (ZSTD_isError(rc))
            return unreadable(r, "zstd: ", ZSTD_getErrorName(rc));
        int progress = out.pos > 0 || r->zin.pos > consumed;
        if (progress)
            r->frame_open = rc != 0; /* 0: a frame ended, all of it given */
        /* At the end of the file with nothing more to give: 0 if the last
         * frame ended there, -1 if the file was cut inside it. */
        if (!progress && r->eof)
            return r->frame_open ? unreadable(r, "it is cut short (inside its zstd frame)", "")
                                 : 0;
    }
    return (ssize_t)out.pos;
}

ssize_t srv_blob_read(srv_blob_reader *r, void *buf, size_t n)
{
    if (r->compact)
        return vmp_compact_read(r->compact, buf, n);
    if (r->as == STORED_ZSTD)
        return read_zstd(r, buf, n);
    if (r->as == STORED_PLAIN)
        return read_fd(r, buf, n);
    r->z.next_out = buf;
    r->z.avail_out = (uInt)n;
    while (r->z.avail_out == n && !r->ended) {
        if (r->z.avail_in == 0) {
            ssize_t k = read(r->fd, r->in, sizeof r->in);
            if (k < 0)
                return unreadable(r, "cannot read it: ", strerror(errno));
            if (k == 0)
                return unreadable(r, "it is cut short (inside its gzip stream)", "");
            r->z.next_in = r->in;
            r->z.avail_in = (uInt)k;
        }
        int rc = inflate(&r->z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END)
            r->ended = 1;
        else if (rc != Z_OK && rc != Z_BUF_ERROR)
            return unreadable(r, "gzip: ", r->z.msg ? r->z.msg : "the stream is corrupt");
    }
    return (ssize_t)(n - r->z.avail_out);
}

void srv_blob_close(srv_blob_reader *r)
{
    if (!r)
        return;
    if (r->as == STORED_GZIP)
        inflateEnd(&r->z);
    ZSTD_freeDStream(r->zd);
    vmp_compact_reader_free(r->compact);
    if (r->fd >= 0)
        close(r->fd);
    free(r);
}

/* What to do about a run whose stored file is damaged (its bytes are not
 * anywhere else on the server: /raw gives back the same file). */
#define DAMAGE_ADVICE "restore that file under the data folder from a backup, or delete " \
                      "the run and upload its profile again"

vmp_profile *srv_blob_read_profile(const char *data_dir, const char *id, srv_err *err)
{
    char path[4200];
    stored_as as;
    vmp_error verr = {0};
    vmp_profile *p = NULL;
    if (find(data_dir, id, SRV_BLOB_PROFILE, path, sizeof path, &as) < 0) {
        set_err(err, "the profile file of run %s is missing (no runs/%s.prof* under the data "
                     "folder): restore it from a backup, or delete the run and upload its "
                     "profile again", id, id);
        return NULL;
    }
    if (as == STORED_PLAIN || as == STORED_GZIP) {
        /* plain or gzip (either way it came, or gzipped here by an older
         * build): the library's reader takes both */
        if (!(p = vmp_profile_read_file(path, NULL, &verr)))
            snprintf(err->message, sizeof err->message, "the stored profile of run %s does not "
                     "read: runs/%s%s is damaged: %s; %s", id, id, suffix(SRV_BLOB_PROFILE, as),
                     verr.message, DAMAGE_ADVICE);
        return p;
    }
    srv_blob_reader *r = srv_blob_open(data_dir, id, SRV_BLOB_PROFILE);
    vmp_decoder *d = r ? vmp_decoder_new(NULL, &verr) : NULL;
    unsigned char *buf = malloc(OUT_CHUNK);
    ssize_t k = -1;
    if (d && buf) {
        while ((k = srv_blob_read(r, buf, OUT_CHUNK)) > 0)
            if (vmp_decoder_push(d, buf, (size_t)k, &verr) < 0)
                break;
    }
    if (k == 0) {
        p = vmp_decoder_finish(d, &verr);
        d = NULL;
    }
    if (!p) {
        const char *why = r ? srv_blob_reader_error(r) : "";
        if (why[0] && strncmp(why, "out of memory", 13) != 0)
            snprintf(err->message, sizeof err->message, "the stored profile of run %s does not "
                     "read: %s; %s", id, why, DAMAGE_ADVICE);
        else if (why[0])
            set_err(err, "the stored profile of run %s does not read: %s", id, why);
        else if (!r || !d || !buf)
            set_err(err, "the stored profile of run %s does not read: %s", id,
                    r ? "out of memory" : "its file does not open");
        else
            /* (its bytes came back, and are not the profile decoded when it
             * was uploaded) */
            snprintf(err->message, sizeof err->message, "the stored profile of run %s does not "
                     "read: runs/%s%s is damaged: what it gives back %s; %s", id, id,
                     suffix(SRV_BLOB_PROFILE, r->as), verr.message, DAMAGE_ADVICE);
    }
    vmp_decoder_free(d);
    free(buf);
    srv_blob_close(r);
    return p;
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

void srv_test_gate(const char *env_name)
{
    const char *dir = getenv(env_name);
    if (!dir || !*dir)
        return;
    char path[4200];
    snprintf(path, sizeof path, "%s/reached", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
    snprintf(path, sizeof path, "%s/go", dir);
    for (int i = 0; i < 6000 && access(path, F_OK) != 0; i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
}

/* ---- the background compressor ------------------------------------------------------ */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    int running, stopping;
    char data_dir[4096];
    char (*queue)[SRV_ID_LEN + 1];
    size_t head, count;
} comp = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static int is_gzip_file(int fd)
{
    unsigned char magic[2];
    return pread(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

/* runs/<id>.prof.vmc -> runs/<id>.prof.vmc.zst, runs/<id>.prof ->
 * runs/<id>.prof.zst (unless it came gzipped).  Returns -1 when told to stop
 * midway. */
static int compress_one(const char *id)
{
    char plain[4200], packed[4200], older[4200], tmp[4200];
    stored_as from = STORED_COMPACT, to = STORED_COMPACT_ZSTD;
    snprintf(plain, sizeof plain, "%s/runs/%s%s", comp.data_dir, id, profile_suffix[from]);
    int in = open(plain, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        from = STORED_PLAIN, to = STORED_ZSTD;
        snprintf(plain, sizeof plain, "%s/runs/%s%s", comp.data_dir, id, profile_suffix[from]);
        in = open(plain, O_RDONLY | O_CLOEXEC);
    }
    if (in < 0)
        return 0; /* deleted meanwhile, or compressed already */
    /* Servers sharing the folder (PostgreSQL) may each compress this file
     * (each start queues the plain files it finds): the one that holds the
     * file's lock does it, from the look at its state to the removal of the
     * plain file; the other skips it.  Holding the lock, the name must still
     * be this file: one that got the lock after another compressor finished
     * holds the plain file that one removed (else, finding the plain file
     * gone after its rename, it would take its own result for stale and
     * remove it: the run would have no file left). */
    struct stat opened, named;
    if (flock(in, LOCK_EX | LOCK_NB) < 0 || fstat(in, &opened) < 0 || stat(plain, &named) < 0 ||
        opened.st_ino != named.st_ino || opened.st_dev != named.st_dev) {
        close(in);
        return 0;
    }
    snprintf(packed, sizeof packed, "%s/runs/%s%s", comp.data_dir, id, profile_suffix[to]);
    snprintf(older, sizeof older, "%s/runs/%s%s", comp.data_dir, id, profile_suffix[STORED_GZIP]);
    int done = access(packed, F_OK) == 0 || (from == STORED_PLAIN && access(older, F_OK) == 0);
    if (is_gzip_file(in) || done) {
        close(in);
        if (done)
            unlink(plain); /* a crash came between the rename and the unlink */
        return 0;
    }
    struct stat before = opened;
    snprintf(tmp, sizeof tmp, "%s/tmp/%s.zst.XXXXXX", comp.data_dir, id);
    int out = mkstemp(tmp);
    unsigned char *ibuf = malloc(OUT_CHUNK), *obuf = malloc(OUT_CHUNK);
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    /* (the frame records its size and a checksum of the content) */
    int ok = out >= 0 && ibuf && obuf && zc &&
             !ZSTD_isError(ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, PACK_LEVEL)) &&
             !ZSTD_isError(ZSTD_CCtx_setParameter(zc, ZSTD_c_checksumFlag, 1)) &&
             !ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(zc, (unsigned long long)before.st_size));
    int stopped = 0;
    while (ok) {
        ssize_t n = read(in, ibuf, OUT_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ok = 0;
            break;
        }
        ZSTD_inBuffer zi = {ibuf, (size_t)n, 0};
        ZSTD_EndDirective end = n == 0 ? ZSTD_e_end : ZSTD_e_continue;
        size_t left;
        do {
            ZSTD_outBuffer zo = {obuf, OUT_CHUNK, 0};
            left = ZSTD_compressStream2(zc, &zo, &zi, end);
            if (ZSTD_isError(left) || srv_write_all(out, obuf, zo.pos) < 0)
                ok = 0;
        } while (ok && (end == ZSTD_e_end ? left != 0 : zi.pos < zi.size));
        if (n == 0)
            break;
        if (__atomic_load_n(&comp.stopping, __ATOMIC_RELAXED)) {
            ok = 0;
            stopped = 1;
        }
    }
    ZSTD_freeCCtx(zc);
    free(ibuf);
    free(obuf);
    if (ok && fsync(out) == 0 && rename(tmp, packed) == 0) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/runs", comp.data_dir);
        sync_dir(dir);
        /* Deleted while compressing (the plain file is gone), or replaced
         * by a new upload (another file under that name): this is stale. */
        struct stat now;
        if (stat(plain, &now) != 0 || now.st_ino != before.st_ino || now.st_dev != before.st_dev)
            unlink(packed);
        else
            unlink(plain);
    } else if (out >= 0) {
        unlink(tmp);
    }
    if (out >= 0)
        close(out);
    close(in); /* (the lock goes with it, after the plain file) */
    return stopped ? -1 : 0;
}

static void *compressor(void *arg)
{
    (void)arg;
    /* Compressing is the one thing here nobody waits for: this thread alone
     * gets the lowest priority (nice 19; Linux sets it per thread), so that
     * it yields the CPU to uploads and answers (gzip of a 340 MB profile
     * takes seconds of CPU, several uploads' worth) and still progresses. */
    setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
    pthread_mutex_lock(&comp.lock);
    for (;;) {
        while (!comp.count && !comp.stopping)
            pthread_cond_wait(&comp.wake, &comp.lock);
        if (comp.stopping)
            break;
        char id[SRV_ID_LEN + 1];
        memcpy(id, comp.queue[comp.head], sizeof id);
        comp.head = (comp.head + 1) % QUEUE_MAX;
        comp.count--;
        pthread_mutex_unlock(&comp.lock);
        int rc = compress_one(id);
        pthread_mutex_lock(&comp.lock);
        if (rc < 0)
            break;
    }
    pthread_mutex_unlock(&comp.lock);
    return NULL;
}

void srv_blob_compress_later(const char *id)
{
    pthread_mutex_lock(&comp.lock);
    /* A full queue drops the request: the file stays plain until the next
     * start queues it again. */
    if (comp.queue && comp.count < QUEUE_MAX) {
        snprintf(comp.queue[(comp.head + comp.count) % QUEUE_MAX], SRV_ID_LEN + 1, "%s", id);
        comp.count++;
        pthread_cond_signal(&comp.wake);
    }
    pthread_mutex_unlock(&comp.lock);
}

typedef struct scan_filter {
    int (*frozen)(void *ctx, const char *id);
    void *ctx;
} scan_filter;

static int queue_plain(void *ctx, const char *id)
{
    scan_filter *f = ctx;
    if (f->frozen && !f->frozen(f->ctx, id))
        return 1;
    char path[4200], compact[4200];
    snprintf(path, sizeof path, "%s/runs/%s%s", comp.data_dir, id, profile_suffix[STORED_PLAIN]);
    snprintf(compact, sizeof compact, "%s/runs/%s%s", comp.data_dir, id,
             profile_suffix[STORED_COMPACT]);
    if (access(path, F_OK) == 0 || access(compact, F_OK) == 0)
        srv_blob_compress_later(id);
    return 1;
}

int srv_blob_compressor_start(const char *data_dir, int scan,
                              int (*frozen)(void *ctx, const char *id), void *ctx, srv_err *err)
{
    snprintf(comp.data_dir, sizeof comp.data_dir, "%s", data_dir);
    comp.queue = calloc(QUEUE_MAX, sizeof *comp.queue);
    if (!comp.queue || pthread_create(&comp.thread, NULL, compressor, NULL) != 0) {
        set_err(err, "%s%s", "cannot start the compressor thread", "");
        return -1;
    }
    comp.running = 1;
    scan_filter f = {frozen, ctx};
    return scan ? srv_blob_sweep(data_dir, queue_plain, &f, err) : 0;
}

void srv_blob_compressor_stop(void)
{
    if (!comp.running)
        return;
    pthread_mutex_lock(&comp.lock);
    __atomic_store_n(&comp.stopping, 1, __ATOMIC_RELAXED);
    pthread_cond_signal(&comp.wake);
    pthread_mutex_unlock(&comp.lock);
    pthread_join(comp.thread, NULL);
    comp.running = 0;
    free(comp.queue);
    comp.queue = NULL;
}
