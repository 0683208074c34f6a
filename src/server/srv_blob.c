/*
 * srv_blob.c - the run files under the data folder (see srv_blob.h).
 *
 * Compression is zlib's deflate with a gzip wrapper, so that the library's
 * reader (which recognises gzip) decodes a stored profile directly, and a
 * downloaded .gz opens with any tool.
 */
#define _GNU_SOURCE /* gettid */
#include "srv_blob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define OUT_CHUNK (256 * 1024)
/* An upload's file is handed to the disk every this many bytes while it
 * arrives, so that the fsync before the answer waits for the last few MB
 * only, not for the whole file to be written back then. */
#define WRITEBACK_STEP (8u << 20)
#define QUEUE_MAX 4096
/* A large profile goes to the disk from memory (O_DIRECT), by a thread of
 * its writer, in pieces of this size, this many at most in memory. */
#define DIRECT_PIECE (2u << 20)
#define DIRECT_PIECES 4
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

static const char *suffix(srv_blob_kind kind, int compressed_here)
{
    if (kind == SRV_BLOB_JITLOG)
        return ".jit.gz";
    return compressed_here ? ".prof.gz" : ".prof";
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
} direct;

struct srv_blob_writer {
    int fd;
    char tmp[4096];
    char final_dir[4096];
    char id[SRV_ID_LEN + 1];
    srv_blob_kind kind;
    uint64_t size;
    uint64_t written_back; /* bytes before this are being written to the disk */
    direct *direct;        /* NULL: written through the page cache (fd) */
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

static void *direct_thread(void *arg)
{
    srv_blob_writer *w = arg;
    direct *d = w->direct;
    int buffered = 0;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->count && !d->stop)
            pthread_cond_wait(&d->wake, &d->lock);
        if (!d->count)
            break;
        size_t i = d->head;
        pthread_mutex_unlock(&d->lock);
        const unsigned char *piece = d->mem + i * DIRECT_PIECE;
        int e = buffered ? EINVAL : pwrite_all(d->fd, piece, DIRECT_PIECE, d->off[i]);
        if (e == EINVAL) {
            /* The filesystem refuses O_DIRECT writes (it accepted the open):
             * through the page cache, then, as small uploads go. */
            buffered = 1;
            e = pwrite_all(w->fd, piece, DIRECT_PIECE, d->off[i]);
        }
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
static void direct_begin(srv_blob_writer *w)
{
    direct *d = calloc(1, sizeof *d);
    if (!d)
        return;
    d->fd = open(w->tmp, O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (d->fd < 0 || posix_memalign((void **)&d->mem, DIRECT_ALIGN,
                                    (size_t)DIRECT_PIECE * DIRECT_PIECES) != 0) {
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
 * (started at the first), and waiting for it when every piece is full. */
static int direct_write(srv_blob_writer *w, const unsigned char *data, size_t n)
{
    direct *d = w->direct;
    while (n) {
        size_t k = DIRECT_PIECE - d->fill < n ? DIRECT_PIECE - d->fill : n;
        memcpy(d->mem + d->cur * DIRECT_PIECE + d->fill, data, k);
        d->fill += k, data += k, n -= k;
        if (d->fill < DIRECT_PIECE)
            break;
        pthread_mutex_lock(&d->lock);
        if (!d->started) {
            if (pthread_create(&d->thread, NULL, direct_thread, w) != 0) {
                pthread_mutex_unlock(&d->lock);
                return ENOMEM;
            }
            d->started = 1;
        }
        d->off[d->cur] = d->next_off;
        d->next_off += DIRECT_PIECE;
        d->count++;
        d->cur = (d->cur + 1) % DIRECT_PIECES;
        d->fill = 0;
        pthread_cond_signal(&d->wake);
        while (d->count == DIRECT_PIECES && !d->error)
            pthread_cond_wait(&d->done, &d->lock);
        int e = d->error;
        pthread_mutex_unlock(&d->lock);
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
        e = pwrite_all(w->fd, d->mem + d->cur * DIRECT_PIECE, d->fill, d->next_off);
    return e;
}

void srv_blob_expect(srv_blob_writer *w, uint64_t bytes)
{
    if (w->kind == SRV_BLOB_PROFILE && bytes >= 2 * DIRECT_PIECE && !w->direct && !w->size)
        direct_begin(w);
    /* Blocks reserved at once rather than page by page as they are written
     * (ext4's delayed allocation); the file keeps its size, so a shorter
     * body leaves nothing to cut. */
#ifdef FALLOC_FL_KEEP_SIZE
    if (bytes && bytes < ((uint64_t)1 << 62))
        (void)fallocate(w->fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes);
#else
    (void)w, (void)bytes;
#endif
}

int srv_blob_write(srv_blob_writer *w, const void *data, size_t n, srv_err *err)
{
    if (w->direct) {
        int e = direct_write(w, data, n);
        if (e) {
            set_err(err, "cannot write the profile to the data folder: %s%s", strerror(e), "");
            return -1;
        }
        w->size += n;
        return 0;
    }
    if (srv_write_all(w->fd, data, n) < 0) {
        set_err(err, "cannot write the profile to the data folder: %s%s", strerror(errno), "");
        return -1;
    }
    w->size += n;
#ifdef SYNC_FILE_RANGE_WRITE
    if (w->size - w->written_back >= WRITEBACK_STEP) {
        /* Starts the writing back and returns; a failure here shows again
         * at the fsync. */
        (void)sync_file_range(w->fd, (off_t)w->written_back,
                              (off_t)(w->size - w->written_back), SYNC_FILE_RANGE_WRITE);
        w->written_back = w->size;
    }
#endif
    return 0;
}

const char *srv_blob_pending_path(const srv_blob_writer *w)
{
    return w->tmp;
}

static void free_writer(srv_blob_writer *w)
{
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

int srv_blob_commit(srv_blob_writer *w, uint64_t *size, srv_err *err)
{
    int e = w->direct ? direct_end(w) : 0;
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
    char final[4200];
    snprintf(final, sizeof final, "%s/%s%s", w->final_dir, w->id, suffix(w->kind, 0));
    /* A profile replaced by a new upload may have been compressed already. */
    if (w->kind == SRV_BLOB_PROFILE) {
        char other[4200];
        snprintf(other, sizeof other, "%s/%s%s", w->final_dir, w->id, suffix(w->kind, 1));
        unlink(other);
    }
    if (rename(w->tmp, final) < 0) {
        set_err(err, "cannot store the profile: %s%s", strerror(errno), "");
        srv_blob_abort(w);
        return -1;
    }
    /* The rename itself must reach the disk before the run is frozen. */
    sync_dir(w->final_dir);
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

/* runs/<id>.prof -> runs/<id>.prof.gz, unless it came gzipped.  Returns -1
 * when told to stop midway. */
static int compress_one(const char *id)
{
    char plain[4200], packed[4200], tmp[4200];
    snprintf(plain, sizeof plain, "%s/runs/%s.prof", comp.data_dir, id);
    snprintf(packed, sizeof packed, "%s/runs/%s.prof.gz", comp.data_dir, id);
    int in = open(plain, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return 0; /* deleted meanwhile, or compressed already */
    if (is_gzip_file(in) || access(packed, F_OK) == 0) {
        close(in);
        if (access(packed, F_OK) == 0)
            unlink(plain); /* a crash came between the rename and the unlink */
        return 0;
    }
    struct stat before;
    if (fstat(in, &before) < 0) {
        close(in);
        return 0;
    }
    snprintf(tmp, sizeof tmp, "%s/tmp/%s.gz.XXXXXX", comp.data_dir, id);
    int out = mkstemp(tmp);
    unsigned char *ibuf = malloc(OUT_CHUNK), *obuf = malloc(OUT_CHUNK);
    z_stream z = {0};
    int ok = out >= 0 && ibuf && obuf &&
             deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
    int zinit = ok, stopped = 0;
    while (ok) {
        ssize_t n = read(in, ibuf, OUT_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ok = 0;
            break;
        }
        z.next_in = ibuf;
        z.avail_in = (uInt)n;
        int flush = n == 0 ? Z_FINISH : Z_NO_FLUSH, rc;
        do {
            z.next_out = obuf;
            z.avail_out = OUT_CHUNK;
            rc = deflate(&z, flush);
            if (rc == Z_STREAM_ERROR || srv_write_all(out, obuf, OUT_CHUNK - z.avail_out) < 0)
                ok = 0;
        } while (ok && z.avail_out == 0);
        if (n == 0)
            break;
        if (__atomic_load_n(&comp.stopping, __ATOMIC_RELAXED)) {
            ok = 0;
            stopped = 1;
        }
    }
    if (zinit)
        deflateEnd(&z);
    free(ibuf);
    free(obuf);
    close(in);
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

static int queue_plain(void *ctx, const char *id)
{
    (void)ctx;
    char path[4200];
    snprintf(path, sizeof path, "%s/runs/%s.prof", comp.data_dir, id);
    if (access(path, F_OK) == 0)
        srv_blob_compress_later(id);
    return 1;
}

int srv_blob_compressor_start(const char *data_dir, int scan, srv_err *err)
{
    snprintf(comp.data_dir, sizeof comp.data_dir, "%s", data_dir);
    comp.queue = calloc(QUEUE_MAX, sizeof *comp.queue);
    if (!comp.queue || pthread_create(&comp.thread, NULL, compressor, NULL) != 0) {
        set_err(err, "%s%s", "cannot start the compressor thread", "");
        return -1;
    }
    comp.running = 1;
    return scan ? srv_blob_sweep(data_dir, queue_plain, NULL, err) : 0;
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
