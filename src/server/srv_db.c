/*
 * srv_db.c - the connection pool shared by the SQL engines.
 *
 * Connections are opened lazily, up to the pool's size, and handed out one
 * statement or one transaction at a time; a thread that finds every
 * connection busy waits for one.  Each connection has a slot; a slot whose
 * connect failed is vacant again, for a later request to connect there
 * (once the database is back).  A read sent a second time (srv_db_read)
 * may take one of SRV_DB_HEDGE_SPARE connections more, and never waits for
 * one.  The connection whose answer lost is kept aside ("draining") until
 * its answer has come and been thrown away: whoever waits for a connection
 * looks at those now and then.  One whose answer has not come after the
 * drain bound (a session stopped or cut off for good) is closed and its slot
 * is vacant again, so that stuck sessions never eat the spares and then the
 * pool.  The engines themselves know nothing of threads.
 *
 * The database gone (stopped, restarted, unreachable): a free connection is
 * looked at before it is handed out (the engine's alive(), which reads what
 * the socket holds without waiting) and one whose session ended is closed,
 * so that a restart of the database costs no request an error.  A connect
 * that fails marks the database down for a while (DOWN_FIRST_MS, doubling
 * up to DOWN_MAX_MS while connects keep failing): meanwhile a request that
 * would connect is answered at once with the reason and when to retry,
 * instead of each request trying (a connect to a host that does not answer
 * takes the connect timeout); after it one request tries, and those that
 * come meanwhile wait for its outcome (up to PROBE_WAIT_MS).
 */
#include "srv_db.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <locale.h>
#include <wctype.h>

struct srv_dbconn {
    void *conn;
    srv_dbconn *next; /* on the free, draining or vacant list */
    int64_t drain_until; /* while draining: closed if its answer is not in by then */
    const srv_db_engine *engine;
};

struct srv_db {
    const srv_db_engine *engine;
    char *target;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    srv_dbconn *conns;
    int size, slots; /* slots: size, plus the spares of hedged reads */
    int in_use; /* handed out, not counting the draining ones */
    srv_dbconn *free_list;
    srv_dbconn *vacant; /* slots with no connection (conn NULL) */
    srv_dbconn *draining; /* answers nobody waits for any more */
    int hedge_ms, drain_ms;
    srv_db_stats stats;
    /* The database down: no connect until down_until (0: not down), one
     * at a time after it (probing); the last connect's error. */
    int64_t down_until;
    int down_ms, probing;
    char down_reason[256];
};

#define DOWN_FIRST_MS 250
#define DOWN_MAX_MS 2000

/* How often a thread waiting for a connection looks at the draining ones. */
#define DRAIN_LOOK_MS 2

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int64_t srv_cell_int(const srv_cell *c)
{
    switch (c->kind) {
    case SRV_CELL_INT:
        return c->i;
    case SRV_CELL_REAL:
        return (int64_t)c->d;
    case SRV_CELL_TEXT:
        return strtoll(c->s, NULL, 10);
    default:
        return 0;
    }
}

double srv_cell_real(const srv_cell *c)
{
    switch (c->kind) {
    case SRV_CELL_INT:
        return (double)c->i;
    case SRV_CELL_REAL:
        return c->d;
    case SRV_CELL_TEXT:
        return strtod(c->s, NULL);
    default:
        return 0;
    }
}

srv_db *srv_db_open(const srv_db_engine *engine, const char *target, int size,
                    char *errbuf, size_t errlen)
{
    srv_db *db = calloc(1, sizeof *db);
    if (!db || size < 1) {
        free(db);
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    db->engine = engine;
    db->target = strdup(target);
    db->size = size;
    db->slots = size + (engine->send ? SRV_DB_HEDGE_SPARE : 0);
    db->hedge_ms = SRV_DB_HEDGE_MS;
    const char *hedge = getenv("VMPROF_SERVER_HEDGE_MS");
    if (hedge && *hedge)
        db->hedge_ms = atoi(hedge);
    db->drain_ms = SRV_DB_DRAIN_MS;
    const char *drain_ms = getenv("VMPROF_SERVER_DRAIN_MS");
    if (drain_ms && atoi(drain_ms) > 0)
        db->drain_ms = atoi(drain_ms);
    db->conns = calloc((size_t)db->slots, sizeof *db->conns);
    pthread_mutex_init(&db->lock, NULL);
    pthread_cond_init(&db->freed, NULL);
    if (!db->target || !db->conns) {
        srv_db_close(db);
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    /* The first connection is opened now, so that a wrong target is reported
     * at start-up rather than at the first request. */
    db->conns[0].conn = engine->connect(target, errbuf, errlen);
    if (!db->conns[0].conn) {
        srv_db_close(db);
        return NULL;
    }
    db->free_list = &db->conns[0];
    for (int i = 0; i < db->slots; i++)
        db->conns[i].engine = engine;
    for (int i = db->slots - 1; i > 0; i--) {
        db->conns[i].next = db->vacant;
        db->vacant = &db->conns[i];
    }
    return db;
}

/* Gives back to the free list each draining connection whose answer has
 * come (read and thrown away).  Under db->lock: discard never waits.
 * Returns those past the drain bound, taken off the list, for the caller to
 * close (close_stale) without the lock. */
static srv_dbconn *drain(srv_db *db)
{
    srv_dbconn *stale = NULL;
    int64_t now = now_ms();
    for (srv_dbconn **p = &db->draining; *p;) {
        srv_dbconn *c = *p;
        if (db->engine->discard(c->conn)) {
            *p = c->next;
            c->next = db->free_list;
            db->free_list = c;
        } else if (now >= c->drain_until) {
            db->stats.stuck_closed++;
            *p = c->next;
            c->next = stale;
            stale = c;
        } else {
            p = &c->next;
        }
    }
    return stale;
}

/* Closes the connections drain found stuck, or acquire found ended, and
 * makes their slots vacant (none: nothing to do).  Called without
 * db->lock: closing writes to the connection. */
static void close_stale(srv_db *db, srv_dbconn *stale)
{
    if (!stale)
        return;
    for (srv_dbconn *c = stale; c; c = c->next) {
        db->engine->disconnect(c->conn);
        c->conn = NULL;
    }
    pthread_mutex_lock(&db->lock);
    while (stale) {
        srv_dbconn *c = stale;
        stale = c->next;
        c->next = db->vacant;
        db->vacant = c;
    }
    pthread_cond_broadcast(&db->freed);
    pthread_mutex_unlock(&db->lock);
}

void srv_db_close(srv_db *db)
{
    if (!db)
        return;
    for (int i = 0; db->conns && i < db->slots; i++)
        db->engine->disconnect(db->conns[i].conn); /* NULL: vacant */
    pthread_mutex_destroy(&db->lock);
    pthread_cond_destroy(&db->freed);
    free(db->conns);
    free(db->target);
    free(db);
}

const srv_db_engine *srv_db_engine_of(const srv_db *db)
{
    return db->engine;
}

/* How long a request that would connect waits for the outcome of the one
 * trying (probing) before it is answered that the database is down. */
#define PROBE_WAIT_MS 1000

/* Whole seconds, at least 1, for Retry-After. */
static int retry_seconds(int64_t left_ms)
{
    return left_ms > 1000 ? (int)((left_ms + 999) / 1000) : 1;
}

/* Under db->lock, for a request that would connect now (the first time at
 * *first_ms, 0 before): CONNECT, or WAIT (for the one trying, up to
 * PROBE_WAIT_MS from the first time), or REFUSED (errbuf set): the database
 * is down and it is not this request's turn to try. */
enum { CONNECT, WAIT, REFUSED };
static int while_down(srv_db *db, int64_t *first_ms, char *errbuf, size_t errlen)
{
    if (!db->down_until)
        return CONNECT;
    int64_t now = now_ms(), left = db->down_until - now;
    if (!*first_ms)
        *first_ms = now;
    if (left <= 0 && !db->probing) {
        db->probing = 1; /* this request tries; the others wait for it */
        return CONNECT;
    }
    if (left <= 0 && now - *first_ms < PROBE_WAIT_MS)
        return WAIT;
    db->stats.refused_down++;
    snprintf(errbuf, errlen, "the database is not reachable (%s); retry in %d s",
             db->down_reason, retry_seconds(left));
    return REFUSED;
}

/* Under db->lock: the outcome of a connect (conn NULL: failed, errbuf says
 * why). */
static void connect_outcome(srv_db *db, void *conn, char *errbuf, size_t errlen)
{
    db->probing = 0;
    pthread_cond_broadcast(&db->freed); /* (those waiting for a try's outcome) */
    if (conn) {
        db->down_until = 0;
        db->down_ms = 0;
        return;
    }
    db->stats.connects_failed++;
    db->down_ms = db->down_ms ? db->down_ms * 2 : DOWN_FIRST_MS;
    if (db->down_ms > DOWN_MAX_MS)
        db->down_ms = DOWN_MAX_MS;
    db->down_until = now_ms() + db->down_ms;
    snprintf(db->down_reason, sizeof db->down_reason, "%s", errbuf);
    snprintf(errbuf, errlen, "the database is not reachable (%s); retry in %d s",
             db->down_reason, retry_seconds(db->down_ms));
}

/* Under db->lock: waits on db->freed for at most ms. */
static void timed_wait(srv_db *db, int ms)
{
    struct timespec t = srv_db_deadline_in_ms(ms);
    pthread_cond_timedwait(&db->freed, &db->lock, &t);
}

/* A connection while fewer than limit are handed out; wait: else wait for
 * one, or NULL (errbuf not set, unless the database is down). */
static srv_dbconn *acquire(srv_db *db, int limit, int wait, char *errbuf, size_t errlen)
{
    srv_dbconn *dead = NULL;
    int64_t first_ms = 0;
    pthread_mutex_lock(&db->lock);
    for (;;) {
        srv_dbconn *stale = db->draining ? drain(db) : NULL;
        if (stale) {
            pthread_mutex_unlock(&db->lock);
            close_stale(db, stale);
            pthread_mutex_lock(&db->lock);
        }
        if (db->in_use < limit && db->free_list) {
            srv_dbconn *c = db->free_list;
            db->free_list = c->next;
            if (db->engine->alive && !db->engine->alive(c->conn)) {
                /* Its session ended (the database restarted, say): closed,
                 * its slot vacant, and the next connection looked at. */
                db->stats.dead_closed++;
                c->next = dead;
                dead = c;
                continue;
            }
            db->in_use++;
            pthread_mutex_unlock(&db->lock);
            close_stale(db, dead);
            return c;
        }
        if (dead) {
            pthread_mutex_unlock(&db->lock);
            close_stale(db, dead);
            dead = NULL;
            pthread_mutex_lock(&db->lock);
            continue;
        }
        if (db->in_use < limit && db->vacant) {
            int turn = while_down(db, &first_ms, errbuf, errlen);
            if (turn == REFUSED) {
                pthread_mutex_unlock(&db->lock);
                return NULL;
            }
            if (turn == WAIT) {
                timed_wait(db, DRAIN_LOOK_MS * 5);
                continue;
            }
            /* Connect outside the lock: it may take a network round trip. */
            srv_dbconn *c = db->vacant;
            db->vacant = c->next;
            db->in_use++;
            pthread_mutex_unlock(&db->lock);
            void *conn = db->engine->connect(db->target, errbuf, errlen);
            pthread_mutex_lock(&db->lock);
            connect_outcome(db, conn, errbuf, errlen);
            if (!conn) {
                /* The slot is vacant again, whichever others connected
                 * meanwhile: a later request connects there. */
                c->next = db->vacant;
                db->vacant = c;
                db->in_use--;
                pthread_cond_signal(&db->freed);
                pthread_mutex_unlock(&db->lock);
                return NULL;
            }
            c->conn = conn;
            pthread_mutex_unlock(&db->lock);
            return c;
        }
        if (!wait) {
            pthread_mutex_unlock(&db->lock);
            return NULL;
        }
        if (db->draining) {
            /* Nobody signals when a draining answer comes: look again soon. */
            timed_wait(db, DRAIN_LOOK_MS);
        } else {
            pthread_cond_wait(&db->freed, &db->lock);
        }
    }
}

srv_dbconn *srv_db_acquire(srv_db *db, char *errbuf, size_t errlen)
{
    return acquire(db, db->size, 1, errbuf, errlen);
}

/* c, handed out, goes onto *list (the free, draining or vacant one). */
static void put_back(srv_db *db, srv_dbconn *c, srv_dbconn **list)
{
    pthread_mutex_lock(&db->lock);
    c->next = *list;
    *list = c;
    db->in_use--;
    pthread_cond_signal(&db->freed);
    pthread_mutex_unlock(&db->lock);
}

void srv_db_release(srv_db *db, srv_dbconn *c)
{
    put_back(db, c, &db->free_list);
}

int srv_db_retry_after(srv_db *db)
{
    pthread_mutex_lock(&db->lock);
    int64_t left = db->down_until ? db->down_until - now_ms() : 0;
    pthread_mutex_unlock(&db->lock);
    return retry_seconds(left);
}

/* c has a statement in flight whose answer nobody wants: aside until it
 * has come (drain). */
static void release_draining(srv_db *db, srv_dbconn *c)
{
    c->drain_until = now_ms() + db->drain_ms;
    put_back(db, c, &db->draining);
}

int srv_db_exec_on(srv_dbconn *c, const char *sql, const srv_param *params, int nparams,
                   srv_row_fn row, void *ctx, int64_t *changes, char *errbuf, size_t errlen)
{
    int64_t ignored;
    return c->engine->exec(c->conn, sql, params, nparams, row, ctx,
                           changes ? changes : &ignored, errbuf, errlen);
}

int srv_db_exec(srv_db *db, const char *sql, const srv_param *params, int nparams,
                srv_row_fn row, void *ctx, int64_t *changes, char *errbuf, size_t errlen)
{
    srv_dbconn *c = srv_db_acquire(db, errbuf, errlen);
    if (!c)
        return -1;
    int rc = srv_db_exec_on(c, sql, params, nparams, row, ctx, changes, errbuf, errlen);
    srv_db_release(db, c);
    return rc;
}

int srv_db_exec_unsynced(srv_db *db, const char *sql, const srv_param *params, int nparams,
                         int64_t *changes, char *errbuf, size_t errlen)
{
    if (!db->engine->set_synced)
        return srv_db_exec(db, sql, params, nparams, NULL, NULL, changes, errbuf, errlen);
    srv_dbconn *c = srv_db_acquire(db, errbuf, errlen);
    if (!c)
        return -1;
    int rc = db->engine->set_synced(c->conn, 0, errbuf, errlen);
    if (rc == 0)
        rc = srv_db_exec_on(c, sql, params, nparams, NULL, NULL, changes, errbuf, errlen);
    char again[256];
    if (db->engine->set_synced(c->conn, 1, again, sizeof again) < 0) {
        /* Never handed out again unsynced: closed, its slot vacant (the
         * next request there connects afresh, synced). */
        if (rc == 0)
            snprintf(errbuf, errlen, "%s", again);
        db->engine->disconnect(c->conn);
        c->conn = NULL;
        put_back(db, c, &db->vacant);
        return -1;
    }
    srv_db_release(db, c);
    return rc;
}

int srv_db_exec_generic(srv_db *db, const char *sql, const srv_param *params, int nparams,
                        srv_row_fn row, void *ctx, int64_t *changes, char *errbuf,
                        size_t errlen)
{
    if (!db->engine->exec_generic)
        return srv_db_exec(db, sql, params, nparams, row, ctx, changes, errbuf, errlen);
    srv_dbconn *c = srv_db_acquire(db, errbuf, errlen);
    if (!c)
        return -1;
    int64_t ignored;
    int rc = db->engine->exec_generic(c->conn, sql, params, nparams, row, ctx,
                                      changes ? changes : &ignored, errbuf, errlen);
    srv_db_release(db, c);
    return rc;
}

/* The statement of srv_db_read run the plain way on c. */
static int exec_plain(srv_dbconn *c, int generic, const char *sql, const srv_param *params,
                      int nparams, srv_row_fn row, void *ctx, char *errbuf, size_t errlen)
{
    int64_t ignored;
    if (generic && c->engine->exec_generic)
        return c->engine->exec_generic(c->conn, sql, params, nparams, row, ctx, &ignored,
                                       errbuf, errlen);
    return c->engine->exec(c->conn, sql, params, nparams, row, ctx, &ignored, errbuf, errlen);
}

int srv_db_read(srv_db *db, int generic, const char *sql, const srv_param *params, int nparams,
                srv_row_fn row, void *ctx, char *errbuf, size_t errlen)
{
    const srv_db_engine *e = db->engine;
    if (!e->send || db->hedge_ms <= 0)
        return generic ? srv_db_exec_generic(db, sql, params, nparams, row, ctx, NULL, errbuf,
                                             errlen)
                       : srv_db_exec(db, sql, params, nparams, row, ctx, NULL, errbuf, errlen);
    srv_dbconn *c[2] = {srv_db_acquire(db, errbuf, errlen), NULL};
    if (!c[0])
        return -1;
    if (e->send(c[0]->conn, generic, sql, params, nparams, errbuf, errlen) < 0) {
        /* Not sent (a broken connection, say): the plain way mends it. */
        int rc = exec_plain(c[0], generic, sql, params, nparams, row, ctx, errbuf, errlen);
        srv_db_release(db, c[0]);
        return rc;
    }
    /* in_flight[i]: c[i]'s answer not received yet. */
    int n = 1, in_flight[2] = {1, 0}, rc = -1, winner = -1;
    int64_t hedge_at = now_ms() + db->hedge_ms;
    while (in_flight[0] || in_flight[1]) {
        struct pollfd fds[2];
        int nfds = 0, which[2];
        for (int i = 0; i < n; i++)
            if (in_flight[i]) {
                fds[nfds] = (struct pollfd){e->socket(c[i]->conn), POLLIN, 0};
                which[nfds++] = i;
            }
        int timeout = -1;
        if (n == 1) {
            int64_t left = hedge_at - now_ms();
            timeout = left > 0 ? (int)left : 0;
        }
        for (int k = 0; k < nfds; k++)
            if (fds[k].fd < 0)
                timeout = 0; /* no socket: ready() says the connection broke */
        /* Whatever poll says (EINTR included), ready() below reads what came. */
        (void)poll(fds, (nfds_t)nfds, timeout);
        int answered = -1;
        for (int k = 0; k < nfds && answered < 0; k++)
            if (e->ready(c[which[k]]->conn))
                answered = which[k];
        if (answered >= 0) {
            in_flight[answered] = 0;
            rc = e->receive(c[answered]->conn, row, ctx, NULL, errbuf, errlen);
            if (rc == SRV_DB_RESEND)
                rc = exec_plain(c[answered], generic, sql, params, nparams, row, ctx, errbuf,
                                errlen);
            if (rc == 0) {
                winner = answered;
                break;
            }
            continue; /* an error: the other answer, if one is coming, may do */
        }
        if (n == 1 && now_ms() >= hedge_at) {
            /* Slow: once, on a connection taken without waiting for one.
             * None free now (the spares held by other hedges, or by answers
             * still draining): another look every DRAIN_LOOK_MS, as a busy
             * pool frees one within a page's time.  Looked at once only, a
             * read whose session a core kept from running waited for that
             * session however long: under wrk with 10,000 runs, 50-90% of
             * the slowest 1% of pages had found no connection free for
             * their second sending (instrumented, not committed).  (Not
             * when the database is down or a connect failed: errbuf says
             * so, and the first sending's answer will say more.) */
            errbuf[0] = 0;
            c[1] = acquire(db, db->size + SRV_DB_HEDGE_SPARE, 0, errbuf, errlen);
            if (!c[1] && !errbuf[0]) {
                hedge_at = now_ms() + DRAIN_LOOK_MS;
                continue;
            }
            if (c[1] && e->send(c[1]->conn, generic, sql, params, nparams, errbuf, errlen) == 0) {
                in_flight[1] = 1;
                pthread_mutex_lock(&db->lock);
                db->stats.hedges_sent++;
                pthread_mutex_unlock(&db->lock);
            }
            n = 2;
        }
    }
    if (winner == 1) {
        pthread_mutex_lock(&db->lock);
        db->stats.hedges_won++;
        pthread_mutex_unlock(&db->lock);
    }
    for (int i = 0; i < n; i++) {
        if (!c[i])
            continue;
        if (in_flight[i])
            release_draining(db, c[i]);
        else
            srv_db_release(db, c[i]);
    }
    return rc;
}

void srv_db_stats_get(srv_db *db, srv_db_stats *stats)
{
    pthread_mutex_lock(&db->lock);
    *stats = db->stats;
    pthread_mutex_unlock(&db->lock);
}

/* The locale whose towlower() folds the search's letters beyond ASCII
 * (srv_fold); none (ASCII only) where C.UTF-8 is missing. */
static locale_t fold_locale;
static pthread_once_t fold_once = PTHREAD_ONCE_INIT;

static void fold_init(void)
{
    fold_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

/* One UTF-8 character at s (n bytes left): its length, 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len = s[0] >= 0xF0 && s[0] < 0xF5 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t c = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    /* Overlong forms and surrogates are not characters. */
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
        (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

static size_t utf8_encode(uint32_t c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* One character as srv_fold folds it. */
static uint32_t fold_char(uint32_t c)
{
    if (c < 0x80)
        return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
    uint32_t lower = fold_locale ? (uint32_t)towlower_l((wint_t)c, fold_locale) : c;
    /* Taken as it is, to ASCII too (U+212A KELVIN SIGN to k), as
     * PostgreSQL's LOWER() takes it; a character grows by one byte at
     * most (two to three, three to four), within out's bound. */
    if (lower > 0x10FFFF || (lower >= 0xD800 && lower <= 0xDFFF))
        lower = c;
    return lower;
}

size_t srv_fold(const char *in, size_t n, char *out)
{
    pthread_once(&fold_once, fold_init);
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t c;
        size_t len;
        if (s[i] < 0x80) {
            out[o++] = (char)fold_char(s[i]);
            i++;
            continue;
        }
        if (!(len = utf8_decode(s + i, n - i, &c))) {
            out[o++] = (char)s[i++];
            continue;
        }
        o += utf8_encode(fold_char(c), out + o);
        i += len;
    }
    out[o] = 0;
    return o;
}

/* Every character that fold_char changes, as (what it folds to, it), in
 * that order: what srv_fold_variants reads a folded character's sources
 * from.  Made once, by asking every code point (1.1 million towlower_l,
 * a few ms), since only glibc's tables know them (about 1,400). */
typedef struct fold_pair {
    uint32_t to, from;
} fold_pair;
static fold_pair *unfold;
static size_t unfold_n;
static pthread_once_t unfold_once = PTHREAD_ONCE_INIT;

static int by_to(const void *a, const void *b)
{
    const fold_pair *x = a, *y = b;
    return x->to != y->to ? (x->to < y->to ? -1 : 1)
                          : x->from != y->from ? (x->from < y->from ? -1 : 1) : 0;
}

static void unfold_init(void)
{
    pthread_once(&fold_once, fold_init);
    size_t cap = 0;
    for (uint32_t c = 0; c <= 0x10FFFF; c++) {
        if (c >= 0xD800 && c <= 0xDFFF)
            continue;
        uint32_t to = fold_char(c);
        if (to == c)
            continue;
        if (unfold_n == cap) {
            cap = cap ? 2 * cap : 2048;
            fold_pair *p = realloc(unfold, cap * sizeof *p);
            if (!p) {
                free(unfold);
                unfold = NULL;
                unfold_n = 0;
                return;
            }
            unfold = p;
        }
        unfold[unfold_n++] = (fold_pair){to, c};
    }
    qsort(unfold, unfold_n, sizeof *unfold, by_to);
}

void srv_fold_prepare(void)
{
    pthread_once(&unfold_once, unfold_init);
}

/* The characters fold_char folds to c, into out (max of them); how many
 * there are (maybe more than max). */
static size_t unfolded(uint32_t c, uint32_t *out, size_t max)
{
    size_t n = 0;
    if (fold_char(c) == c && n++ < max)
        out[0] = c;
    size_t lo = 0, hi = unfold_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (unfold[mid].to < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < unfold_n && unfold[lo].to == c; lo++, n++)
        if (n < max)
            out[n] = unfold[lo].from;
    return n;
}

#define VARIANT_SOURCES 8

int srv_fold_variants(const char *tri, size_t len, char *out, size_t cap, int max)
{
    srv_fold_prepare();
    if (!unfold && fold_locale)
        return -1; /* (out of memory making the table: not knowing them all) */
    const unsigned char *s = (const unsigned char *)tri;
    uint32_t from[3][VARIANT_SOURCES];
    size_t n[3], at = 0;
    for (int k = 0; k < 3; k++) {
        if (at >= len)
            return -1;
        uint32_t c = s[at];
        size_t l = c < 0x80 ? 1 : utf8_decode(s + at, len - at, &c);
        if (!l)
            return -1;
        n[k] = unfolded(c, from[k], VARIANT_SOURCES);
        if (n[k] == 0 || n[k] > VARIANT_SOURCES)
            return -1;
        at += l;
    }
    if (at != len || n[0] * n[1] * n[2] > (size_t)max)
        return -1;
    size_t o = 0;
    for (size_t a = 0; a < n[0]; a++)
        for (size_t b = 0; b < n[1]; b++)
            for (size_t c = 0; c < n[2]; c++) {
                if (cap - o < 3 * 4 + 1)
                    return -1;
                o += utf8_encode(from[0][a], out + o);
                o += utf8_encode(from[1][b], out + o);
                o += utf8_encode(from[2][c], out + o);
                out[o++] = 0;
            }
    return (int)(n[0] * n[1] * n[2]);
}
