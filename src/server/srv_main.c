/*
 * srv_main.c - the vmprof-server command: serve, manage users, or give back a
 * stored profile as it was uploaded (raw).
 *
 *   vmprof-server --data DIR [--listen HOST:PORT] [--database URL]
 *                 [--max-upload SIZE] [--anonymous-upload on|off] [...]
 *   vmprof-server --data DIR [--database URL] user add NAME [--admin]
 *   vmprof-server --data DIR [--database URL] user token NAME
 *   vmprof-server --data DIR [--database URL] user password NAME   (from stdin)
 *   vmprof-server [--data DIR] raw ID|FILE [-o OUT]
 *
 * Serving: the database is opened (created), what an earlier run of the
 * server left unfinished is removed (runs never frozen, their files, files
 * half written), and the HTTP daemon starts; the line "vmprof-server:
 * serving http://HOST:PORT" on standard output says it is ready.  SIGTERM or
 * SIGINT: no new connections, requests in flight finish, exit 0.
 */
#define _GNU_SOURCE /* gettid */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "srv_api.h"
#include "srv_auth.h"
#include "srv_blob.h"
#include "srv_cache.h"
#include "srv_http.h"
#include "srv_jitlog.h"
#include "srv_memo.h"
#include "srv_throttle.h"
#include "srv_store.h"

/* The built UI and speedscope, where the build put them (the Makefile says). */
#ifndef SRV_DEFAULT_WEB_DIR
#define SRV_DEFAULT_WEB_DIR ""
#endif
#ifndef SRV_DEFAULT_SPEEDSCOPE_DIR
#define SRV_DEFAULT_SPEEDSCOPE_DIR ""
#endif

/* Unfinished uploads older than this are another server's no longer. */
#define SHARED_STALE_SECONDS (24 * 3600)
/* How often a running server looks for files no run names (the environment's
 * VMPROF_SERVER_RECLAIM_MS sets it). */
#define RECLAIM_EVERY_MS (3600 * 1000)

static const char usage[] =
    "usage: vmprof-server --data DIR [--listen HOST:PORT] [--database URL]\n"
    "                     [--max-upload SIZE] [--anonymous-upload on|off]\n"
    "                     [--cache-size SIZE] [--web DIR] [--speedscope DIR]\n"
    "                     [--max-connections N]\n"
    "                     [--max-uploads N] [--request-timeout SECONDS]\n"
    "                     [--idle-timeout SECONDS]\n"
    "       vmprof-server --data DIR [--database URL] user add NAME [--admin]\n"
    "       vmprof-server --data DIR [--database URL] user token NAME\n"
    "       vmprof-server --data DIR [--database URL] user password NAME  (reads stdin)\n"
    "       vmprof-server --data DIR raw ID [-o OUT]   (run ID's profile as uploaded)\n"
    "       vmprof-server raw FILE [-o OUT]  (the same from a stored file: ID.prof.vmc.zst...)\n"
    "SIZE: bytes, or with k, M or G (1024-based).  Defaults: --listen 127.0.0.1:8000,\n"
    "--database DIR/vmprof.db (SQLite; postgresql://... for PostgreSQL), --max-upload 1G,\n"
    "--anonymous-upload on, --cache-size 512M.\n";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vmprof-server: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static uint64_t parse_size(const char *opt, const char *v)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    int shift = 0;
    if (*end == 'k' || *end == 'K')
        shift = 10, end++;
    else if (*end == 'm' || *end == 'M')
        shift = 20, end++;
    else if (*end == 'g' || *end == 'G')
        shift = 30, end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (errno || end == v || *end || v[0] == '-' || n > (UINT64_MAX >> shift))
        die("%s %s: give a size in bytes, or with k, M or G (for example 500M)", opt, v);
    return (uint64_t)n << shift;
}

static unsigned parse_count(const char *opt, const char *v)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || end == v || n < 1 || n > 1000000)
        die("%s %s: give a whole number from 1", opt, v);
    return (unsigned)n;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

typedef struct options {
    const char *data, *listen, *database, *web, *speedscope;
    srv_limits limits;
    int anonymous_upload;
    char **rest;      /* a subcommand and its words */
    int nrest;
} options;

/* The value of the option at argv[*i] (every option takes one), which it
 * consumes.  Asked for only once the option is known to be one, so that an
 * unknown option last on the line is named as unknown. */
static const char *option_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc)
        die("%s needs a value (vmprof-server --help says which)", argv[*i]);
    return argv[++*i];
}

static void parse(int argc, char **argv, options *o)
{
    o->listen = "127.0.0.1:8000";
    o->web = SRV_DEFAULT_WEB_DIR;
    o->speedscope = SRV_DEFAULT_SPEEDSCOPE_DIR;
    o->anonymous_upload = 1;
    o->limits = (srv_limits){
        .max_upload = 1ull << 30,
        .max_connections = 256,
        .max_per_ip = 64,
        .max_uploads = 8,
        .request_seconds = 600,
        .idle_seconds = 30,
        .header_bytes = 64 * 1024,
        .cache_bytes = 512u << 20,
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            exit(0);
        }
        if (a[0] != '-') {
            o->rest = argv + i;
            o->nrest = argc - i;
            return;
        }
        if (strcmp(a, "--data") == 0)
            o->data = option_value(argc, argv, &i);
        else if (strcmp(a, "--listen") == 0)
            o->listen = option_value(argc, argv, &i);
        else if (strcmp(a, "--database") == 0)
            o->database = option_value(argc, argv, &i);
        else if (strcmp(a, "--web") == 0)
            o->web = option_value(argc, argv, &i);
        else if (strcmp(a, "--speedscope") == 0)
            o->speedscope = option_value(argc, argv, &i);
        else if (strcmp(a, "--max-upload") == 0)
            o->limits.max_upload = parse_size(a, option_value(argc, argv, &i));
        else if (strcmp(a, "--cache-size") == 0)
            o->limits.cache_bytes = (size_t)parse_size(a, option_value(argc, argv, &i));
        else if (strcmp(a, "--max-connections") == 0)
            o->limits.max_connections = parse_count(a, option_value(argc, argv, &i));
        else if (strcmp(a, "--max-uploads") == 0)
            o->limits.max_uploads = parse_count(a, option_value(argc, argv, &i));
        else if (strcmp(a, "--request-timeout") == 0)
            o->limits.request_seconds = parse_count(a, option_value(argc, argv, &i));
        else if (strcmp(a, "--idle-timeout") == 0)
            o->limits.idle_seconds = parse_count(a, option_value(argc, argv, &i));
        else if (strcmp(a, "--anonymous-upload") == 0) {
            const char *v = option_value(argc, argv, &i);
            if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
                die("--anonymous-upload %s: say on or off", v);
            o->anonymous_upload = strcmp(v, "on") == 0;
        } else
            die("unknown option %s (vmprof-server --help lists them)", a);
    }
}

static srv_store *open_store(const options *o, char *db_default, size_t size)
{
    if (mkdir(o->data, 0750) < 0 && errno != EEXIST)
        die("cannot create the data folder %s: %s", o->data, strerror(errno));
    snprintf(db_default, size, "%s/vmprof.db", o->data);
    srv_err err = {{0}};
    srv_store *store = srv_store_open(o->database ? o->database : db_default, &err);
    if (!store)
        die("%s", err.message);
    return store;
}

/* ---- raw: a stored profile given back as uploaded, outside the server -------------- */

/* The bytes of a run's profile as they were uploaded (what GET
 * /api/runs/ID/raw sends, read by the same code), from the data folder or
 * from one stored file, to OUT or standard output.  A damaged file: what
 * comes before the damage is written, and the error says so (exit 1). */
static int raw_command(const options *o)
{
    const char *what = o->nrest >= 2 ? o->rest[1] : NULL, *out_path = NULL;
    for (int i = 2; i < o->nrest; i++) {
        if (strcmp(o->rest[i], "-o") == 0 && i + 1 < o->nrest)
            out_path = o->rest[++i];
        else if (strcmp(o->rest[i], "-o") == 0)
            die("raw: -o needs a value: the file to write");
        else
            die("raw: unexpected %s (the form: raw ID|FILE [-o OUT])", o->rest[i]);
    }
    if (!what || !*what)
        die("raw: name a run id (with --data DIR) or a stored profile file");
    srv_blob_reader *r;
    struct stat st;
    if (o->data && srv_valid_run_id(what)) {
        r = srv_blob_open(o->data, what, SRV_BLOB_PROFILE);
        if (!r)
            die("raw: run %s has no profile file under %s/runs", what, o->data);
    } else if (stat(what, &st) == 0 && S_ISREG(st.st_mode)) {
        r = srv_blob_open_file(what);
        if (!r)
            die("raw: cannot open %s: %s", what, strerror(errno));
    } else {
        die("raw: %s is neither a file nor %s", what,
            o->data ? "a run id" : "a run id with --data DIR");
    }
    int fd = 1;
    if (out_path && (fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        die("raw: cannot write %s: %s", out_path, strerror(errno));
    if (!out_path && isatty(1))
        die("raw: the profile is binary: give -o OUT or redirect standard output");
    static char buf[256 * 1024];
    uint64_t written = 0;
    ssize_t k;
    while ((k = srv_blob_read(r, buf, sizeof buf)) > 0) {
        if (srv_write_all(fd, buf, (size_t)k) < 0)
            die("raw: cannot write %s: %s", out_path ? out_path : "standard output",
                strerror(errno));
        written += (uint64_t)k;
    }
    if (k < 0) {
        fprintf(stderr, "vmprof-server: raw: %s; the %llu bytes before the damage were "
                        "written (a profile cut short still reads up to its cut)\n",
                srv_blob_reader_error(r), (unsigned long long)written);
        srv_blob_close(r);
        return 1;
    }
    srv_blob_close(r);
    if (out_path && (fsync(fd) < 0 || close(fd) < 0))
        die("raw: cannot write %s: %s", out_path, strerror(errno));
    return 0;
}

/* ---- user management ------------------------------------------------------------ */

static int user_command(const options *o)
{
    char dbpath[4200];
    if (strcmp(o->rest[0], "user") != 0)
        die("unknown command %s: the commands are user and raw (vmprof-server --help shows them)",
            o->rest[0]);
    if (o->nrest < 3)
        die("user: say what and whom: user add|token|password NAME");
    const char *verb = o->rest[1], *name = o->rest[2];
    int admin = 0;
    for (int i = 3; i < o->nrest; i++) {
        if (strcmp(o->rest[i], "--admin") == 0 && strcmp(verb, "add") == 0)
            admin = 1;
        else
            die("user %s: unexpected %s (only user add takes --admin)", verb, o->rest[i]);
    }
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > SRV_NAME_MAX)
        die("a user name has 1 to %d characters", SRV_NAME_MAX);
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-' || *c == '.' || *c == '@'))
            die("user name %s: use letters, digits and _ - . @ only", name);
    srv_store *store = open_store(o, dbpath, sizeof dbpath);
    srv_err err = {{0}};
    char token[SRV_TOKEN_HEX + 1], hash[SRV_HASH_HEX + 1];
    srv_auth_new_secret(token);
    srv_auth_hash_secret(token, hash);
    srv_user user;
    int rc;
    if (strcmp(verb, "add") == 0) {
        rc = srv_store_user_add(store, name, admin, hash, now_ms(), &user, &err);
        if (rc > 0)
            die("user %s exists already (user token %s makes a new token)", name, name);
        if (rc < 0)
            die("%s", err.message);
        fprintf(stderr, "vmprof-server: user %s added%s; the API token (shown only now, "
                        "give it with --web-auth) is:\n", name, admin ? " as an admin" : "");
        printf("%s\n", token);
    } else if (strcmp(verb, "token") == 0 || strcmp(verb, "password") == 0) {
        rc = srv_store_user_by_name(store, name, &user, NULL, 0, &err);
        if (rc > 0)
            die("no user %s (user add %s makes one)", name, name);
        if (rc < 0)
            die("%s", err.message);
        if (strcmp(verb, "token") == 0) {
            if (srv_store_token_add(store, user.id, hash, now_ms(), &err) < 0)
                die("%s", err.message);
            fprintf(stderr, "vmprof-server: a new API token for %s (shown only now):\n", name);
            printf("%s\n", token);
        } else {
            char password[1024];
            if (!fgets(password, sizeof password, stdin))
                die("give the password on standard input");
            password[strcspn(password, "\r\n")] = 0;
            if (strlen(password) < 8)
                die("a password has at least 8 characters");
            char stored[256];
            if (srv_auth_hash_password(password, stored, sizeof stored) < 0)
                die("cannot hash the password: out of memory");
            if (srv_store_user_set_password(store, user.id, stored, &err) != 0)
                die("%s", err.message);
            fprintf(stderr, "vmprof-server: password of %s set\n", name);
        }
    } else {
        die("unknown command user %s: say user add, user token or user password", verb);
    }
    srv_store_close(store);
    return 0;
}

/* ---- serving ------------------------------------------------------------------------ */

typedef struct sweep_ctx {
    const char *data_dir;
    srv_store *store;
    char (*ids)[SRV_ID_LEN + 1];
    size_t n, cap;
} sweep_ctx;

static void remove_files(void *ctx, const char *id)
{
    srv_blob_remove(((sweep_ctx *)ctx)->data_dir, id);
}

static int add_known(void *ctx, const char *id)
{
    sweep_ctx *c = ctx;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        void *ids = realloc(c->ids, cap * sizeof *c->ids);
        if (!ids)
            return 1;
        c->ids = ids;
        c->cap = cap;
    }
    memcpy(c->ids[c->n++], id, SRV_ID_LEN + 1);
    return 0;
}

static int compare_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int is_known(void *ctx, const char *id)
{
    sweep_ctx *c = ctx;
    return c->n && bsearch(id, c->ids, c->n, sizeof *c->ids, compare_ids) != NULL;
}

/* (a listing short of memory lists fewer files: fewer are removed) */
static int add_listed(void *ctx, const char *id)
{
    add_known(ctx, id);
    return 1;
}

typedef struct orphans {
    sweep_ctx listed, known;
    long removed;
} orphans;

static int keep_unless_orphan(void *ctx, const char *id)
{
    orphans *o = ctx;
    if (!is_known(&o->listed, id) || is_known(&o->known, id))
        return 1;
    o->removed++;
    return 0;
}

/* The files of runs/ that no row names: a run deleted whose files stayed (a
 * crash between the row and the files), or an upload whose row was swept as
 * stale while it ran and that could not remove its file itself.  Other
 * servers (PostgreSQL), and this one's own requests, upload into the folder
 * meanwhile, so a file is removed only when its run has no row in any
 * state, asked after the folder was listed: a run's row is committed before
 * its first file is made (an upload needs the row) and an id is never given
 * twice, so a file listed before the question whose row is gone at the
 * question belongs to a run removed for good; an upload in progress
 * anywhere has its row (made or uploaded) the whole time.  Files renamed in
 * after the listing wait for the next look: at a PostgreSQL start, and on
 * both engines every RECLAIM_EVERY_MS while serving.  The files removed, or
 * -1 with err set. */
static long reclaim_orphans(const char *data, srv_store *store, srv_err *err)
{
    orphans c = {.listed = {.data_dir = data}, .known = {.data_dir = data}};
    int rc = srv_blob_sweep(data, add_listed, &c.listed, err);
    if (rc == 0 && c.listed.n) {
        qsort(c.listed.ids, c.listed.n, sizeof *c.listed.ids, compare_ids);
        srv_test_gate("VMPROF_SERVER_TEST_ORPHANS_LISTED");
        rc = srv_store_run_ids(store, SRV_RUN_CREATED, add_known, &c.known, err);
        if (rc == 0 && c.known.n)
            qsort(c.known.ids, c.known.n, sizeof *c.known.ids, compare_ids);
        if (rc == 0)
            rc = srv_blob_sweep(data, keep_unless_orphan, &c, err);
    }
    if (c.removed)
        fprintf(stderr, "vmprof-server: removed %ld files in runs/ that no run names (runs deleted"
                        " or swept while their files were written)\n", c.removed);
    free(c.listed.ids);
    free(c.known.ids);
    return rc < 0 ? -1 : c.removed;
}

/* The look for files no run names while serving, by a thread of its own at
 * the lowest priority, every RECLAIM_EVERY_MS. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    int running, stopping;
    const char *data;
    srv_store *store;
    int every_ms;
} reclaimer = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static void *reclaim_loop(void *arg)
{
    (void)arg;
    setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
    pthread_mutex_lock(&reclaimer.lock);
    while (!reclaimer.stopping) {
        struct timespec at = srv_db_deadline_in_ms(reclaimer.every_ms);
        while (!reclaimer.stopping &&
               pthread_cond_timedwait(&reclaimer.wake, &reclaimer.lock, &at) == 0)
            ;
        if (reclaimer.stopping)
            break;
        pthread_mutex_unlock(&reclaimer.lock);
        srv_err err = {{0}};
        if (reclaim_orphans(reclaimer.data, reclaimer.store, &err) < 0)
            fprintf(stderr, "vmprof-server: the look for files in runs/ that no run names "
                            "failed (again in %d s): %s\n", reclaimer.every_ms / 1000,
                    err.message);
        pthread_mutex_lock(&reclaimer.lock);
    }
    pthread_mutex_unlock(&reclaimer.lock);
    return NULL;
}

static int reclaimer_start(const char *data, srv_store *store)
{
    const char *every = getenv("VMPROF_SERVER_RECLAIM_MS");
    reclaimer.data = data;
    reclaimer.store = store;
    reclaimer.every_ms = every && atoi(every) > 0 ? atoi(every) : RECLAIM_EVERY_MS;
    if (pthread_create(&reclaimer.thread, NULL, reclaim_loop, NULL) != 0)
        return -1;
    reclaimer.running = 1;
    return 0;
}

static void reclaimer_stop(void)
{
    if (!reclaimer.running)
        return;
    pthread_mutex_lock(&reclaimer.lock);
    reclaimer.stopping = 1;
    pthread_cond_signal(&reclaimer.wake);
    pthread_mutex_unlock(&reclaimer.lock);
    pthread_join(reclaimer.thread, NULL);
    reclaimer.running = 0;
}

/* Removes what a killed server left: unfrozen runs (with PostgreSQL those a
 * day old) and files no run owns. */
static void recover(const options *o, srv_store *store, int shared)
{
    srv_err err = {{0}};
    sweep_ctx ctx = {.data_dir = o->data, .store = store};
    int64_t before = shared ? now_ms() - (int64_t)SHARED_STALE_SECONDS * 1000 : INT64_MAX;
    if (srv_blob_init(o->data, shared ? SHARED_STALE_SECONDS : 0, &err) < 0 ||
        srv_store_run_sweep(store, before, remove_files, &ctx, &err) < 0)
        die("%s", err.message);
    if (shared) {
        /* (other servers' uploads in progress have files but no frozen run yet) */
        if (reclaim_orphans(o->data, store, &err) < 0)
            die("%s", err.message);
        return;
    }
    if (srv_store_run_ids(store, SRV_RUN_UPLOADED, add_known, &ctx, &err) < 0)
        die("%s", err.message);
    if (ctx.n)
        qsort(ctx.ids, ctx.n, sizeof *ctx.ids, compare_ids);
    if (srv_blob_sweep(o->data, is_known, &ctx, &err) < 0)
        die("%s", err.message);
    free(ctx.ids);
}

static int serve(const options *o)
{
    char dbpath[4200];
    srv_store *store = open_store(o, dbpath, sizeof dbpath);
    int shared = !srv_store_is_sqlite(store);
    if (!shared) {
        /* One server per SQLite data folder: a second one would sweep the
         * first one's uploads in progress. */
        char lock[4200];
        snprintf(lock, sizeof lock, "%s/server.lock", o->data);
        int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
            die("another vmprof-server serves %s already (with SQLite, one server per data "
                "folder; use --database postgresql://... for several)", o->data);
    }
    recover(o, store, shared);

    static srv_server server;
    srv_server *s = &server;
    snprintf(s->data_dir, sizeof s->data_dir, "%s", o->data);
    snprintf(s->web_dir, sizeof s->web_dir, "%s", o->web);
    snprintf(s->speedscope_dir, sizeof s->speedscope_dir, "%s", o->speedscope);
    s->store = store;
    s->limits = o->limits;
    s->anonymous_upload = o->anonymous_upload;
    s->cache = srv_cache_new(o->limits.cache_bytes, o->data);
    /* Kept answers are small beside the profiles: an eighth of the budget. */
    s->memo = srv_memo_new(o->limits.cache_bytes / 8);
    s->guesses = srv_throttle_new(store);
    /* Decoded jit logs (their input bytes plus the ops) get half as much. */
    s->jitlogs = srv_jitlogs_new(o->limits.cache_bytes / 2, o->data);
    if (!s->cache || !s->memo || !s->guesses || !s->jitlogs)
        die("out of memory");

    /* Every thread started from here on inherits this mask: the signals that
     * stop the server are taken by sigwait() below, nowhere else. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The plain files a stopped server left are compressed now: with SQLite
     * every one (the runs never frozen are gone), with PostgreSQL those of
     * frozen runs (the others may be uploads in progress elsewhere). */
    srv_err err = {{0}};
    sweep_ctx frozen = {.data_dir = o->data, .store = store};
    if (shared && srv_store_run_ids(store, SRV_RUN_FROZEN, add_known, &frozen, &err) < 0)
        die("%s", err.message);
    if (frozen.n)
        qsort(frozen.ids, frozen.n, sizeof *frozen.ids, compare_ids);
    if (srv_blob_compressor_start(o->data, 1, shared ? is_known : NULL, &frozen, &err) < 0 ||
        srv_http_start(s, o->listen, &err) < 0)
        die("%s", err.message);
    free(frozen.ids);
    if (reclaimer_start(o->data, store) < 0)
        die("cannot start the thread that looks for files no run names");
    char host[256];
    snprintf(host, sizeof host, "%s", o->listen);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = 0;
    printf("vmprof-server: serving http://%s:%u (data in %s, %s database%s)\n", host, s->port,
           o->data, shared ? "PostgreSQL" : "SQLite",
           o->anonymous_upload ? ", anonymous uploads on" : "");
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "vmprof-server: signal %d, finishing the requests in flight\n", sig);
    srv_http_stop(s, 30);
    reclaimer_stop();
    srv_blob_compressor_stop();
    srv_cache_free(s->cache);
    srv_memo_free(s->memo);
    srv_throttle_free(s->guesses);
    srv_cache_free(s->jitlogs);
    srv_db_stats db;
    srv_store_db_stats(store, &db);
    if (db.hedges_sent)
        fprintf(stderr,
                "vmprof-server: %lld slow reads sent again on a second connection, %lld answered"
                " first there\n",
                (long long)db.hedges_sent, (long long)db.hedges_won);
    if (db.stuck_closed || db.dead_closed)
        fprintf(stderr,
                "vmprof-server: %lld database sessions closed stuck (no answer within the drain"
                " bound), %lld found ended (the database restarted)\n",
                (long long)db.stuck_closed, (long long)db.dead_closed);
    if (db.connects_failed)
        fprintf(stderr,
                "vmprof-server: %lld connects to the database failed; %lld requests answered 503"
                " at once meanwhile\n",
                (long long)db.connects_failed, (long long)db.refused_down);
    srv_store_close(store);
    fprintf(stderr, "vmprof-server: stopped\n");
    return 0;
}

int main(int argc, char **argv)
{
    options o = {0};
    parse(argc, argv, &o);
    if (o.nrest && strcmp(o.rest[0], "raw") == 0)
        return raw_command(&o);
    if (!o.data)
        die("--data DIR is needed: the folder that holds the database and the profiles");
    if (srv_auth_init() < 0)
        die("libsodium does not initialise");
    if (o.nrest)
        return user_command(&o);
    return serve(&o);
}
