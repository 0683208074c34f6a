/*
 * srv_db_sqlite.c - the SQLite engine of srv_db.h: one file under the data
 * folder, in WAL mode so that readers never wait for the writer, with
 * synchronous=FULL so that a run whose freeze was answered survives a power
 * cut, not only a killed process (except the commits srv_db_exec_unsynced
 * asks not to wait: srv_store.c says which and why).
 *
 * Each connection keeps its prepared statements, keyed by the address of the
 * statement's text: the store's SQL is made of string literals, so the same
 * query is always the same pointer and is parsed once per connection.
 */
#include "srv_db.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STMT_CACHE 64
#define MAX_COLS 64

typedef struct sqlite_conn {
    sqlite3 *db;
    struct {
        const char *sql;
        sqlite3_stmt *stmt;
    } cache[STMT_CACHE];
    unsigned next_evict;
    unsigned long ends_seen;   /* writes_ended when this one last looked */
    struct timespec busy_since; /* when its statement first found the lock taken */
} sqlite_conn;

/* Writers of this process wait for one another here, not in SQLite's own
 * busy handler (sqlite3_busy_timeout), which sleeps 1, 2, 5 ... then 100 ms
 * at a time between tries whether or not the lock was freed meanwhile: with
 * 8 uploads at once (new, the upload's row and the freeze each write), a
 * writer that kept losing slept whole slices with the lock free
 * (bench/server_load.py: ~4,200 sleeps in 6 s, the upload cycle's p99
 * 0.24 s at load 4 and 2.5 s beside browsing at load 13).  A statement that
 * ends a write (its connection back in autocommit mode) counts it and wakes
 * every waiter, which tries again at once; a writer of another process (the
 * user commands, on the same file) wakes nobody, so a waiter also looks
 * every BUSY_LOOK_MS.  Up to BUSY_TOTAL_MS in all, as before: then
 * SQLITE_BUSY. */
#define BUSY_TOTAL_MS 10000
#define BUSY_LOOK_MS 5
static pthread_mutex_t writes_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t write_ended = PTHREAD_COND_INITIALIZER;
static unsigned long writes_ended;

static int busy_wait(void *conn, int tries)
{
    sqlite_conn *c = conn;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (tries == 0)
        c->busy_since = now;
    else if ((now.tv_sec - c->busy_since.tv_sec) * 1000 +
                 (now.tv_nsec - c->busy_since.tv_nsec) / 1000000 >= BUSY_TOTAL_MS)
        return 0;
    struct timespec until = srv_db_deadline_in_ms(BUSY_LOOK_MS);
    pthread_mutex_lock(&writes_lock);
    while (writes_ended == c->ends_seen &&
           pthread_cond_timedwait(&write_ended, &writes_lock, &until) == 0)
        ;
    c->ends_seen = writes_ended;
    pthread_mutex_unlock(&writes_lock);
    return 1;
}

/* After a statement: a write ended (an autocommit write, or the end of a
 * transaction) wakes the writers waiting. */
static void after_statement(sqlite_conn *c, sqlite3_stmt *stmt, int was_in_transaction)
{
    if (!sqlite3_get_autocommit(c->db) || (!was_in_transaction && sqlite3_stmt_readonly(stmt)))
        return;
    pthread_mutex_lock(&writes_lock);
    __atomic_store_n(&writes_ended, writes_ended + 1, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&write_ended);
    pthread_mutex_unlock(&writes_lock);
}

static void sqlite_disconnect(void *conn)
{
    sqlite_conn *c = conn;
    if (!c)
        return;
    for (int i = 0; i < STMT_CACHE; i++)
        sqlite3_finalize(c->cache[i].stmt);
    sqlite3_close(c->db);
    free(c);
}

static int run_simple(sqlite3 *db, const char *sql, char *errbuf, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(errbuf, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* LOWER() as srv_fold: SQLite's own folds ASCII only, PostgreSQL's (the
 * same towlower) every letter, and the runs search must find the same runs
 * on both (q=ÜNÏ and a run of "ünï"). */
static void sqlite_lower(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const char *in = (const char *)sqlite3_value_text(argv[0]);
    if (!in) {
        sqlite3_result_null(ctx);
        return;
    }
    size_t n = (size_t)sqlite3_value_bytes(argv[0]);
    char *out = sqlite3_malloc64(2 * n + 1);
    if (!out) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    size_t len = srv_fold(in, n, out);
    sqlite3_result_text64(ctx, out, len, sqlite3_free, SQLITE_UTF8);
}

static void *sqlite_connect(const char *path, char *errbuf, size_t errlen)
{
    sqlite_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &c->db, flags, NULL) != SQLITE_OK) {
        snprintf(errbuf, errlen, "cannot open the database %s: %s", path,
                 c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sqlite_disconnect(c);
        return NULL;
    }
    sqlite3_busy_handler(c->db, busy_wait, c);
    if (sqlite3_create_function(c->db, "lower", 1,
                                SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                                sqlite_lower, NULL, NULL) != SQLITE_OK) {
        snprintf(errbuf, errlen, "cannot define LOWER(): %s", sqlite3_errmsg(c->db));
        sqlite_disconnect(c);
        return NULL;
    }
    /* Plans made once per statement, whatever the values bound: otherwise
     * SQLite prepares a statement again after each new value bound where a
     * LIKE pattern or a virtual table's constraint goes (every search of the
     * runs list was parsed and planned again: server CPU a search 0.23 ->
     * 0.13-0.15 ms without it, bench/RESULTS.md). */
    sqlite3_db_config(c->db, SQLITE_DBCONFIG_ENABLE_QPSG, 1, (int *)0);
    if (run_simple(c->db, "PRAGMA journal_mode=WAL", errbuf, errlen) < 0 ||
        run_simple(c->db, "PRAGMA synchronous=FULL", errbuf, errlen) < 0 ||
        run_simple(c->db, "PRAGMA foreign_keys=ON", errbuf, errlen) < 0) {
        sqlite_disconnect(c);
        return NULL;
    }
    return c;
}

static sqlite3_stmt *prepared(sqlite_conn *c, const char *sql, char *errbuf, size_t errlen)
{
    for (int i = 0; i < STMT_CACHE; i++)
        if (c->cache[i].sql == sql)
            return c->cache[i].stmt;
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL) != SQLITE_OK) {
        snprintf(errbuf, errlen, "%s", sqlite3_errmsg(c->db));
        return NULL;
    }
    unsigned slot = c->next_evict++ % STMT_CACHE;
    sqlite3_finalize(c->cache[slot].stmt);
    c->cache[slot].sql = sql;
    c->cache[slot].stmt = stmt;
    return stmt;
}

static int sqlite_exec(void *conn, const char *sql, const srv_param *params, int nparams,
                       srv_row_fn row, void *ctx, int64_t *changes, char *errbuf, size_t errlen)
{
    sqlite_conn *c = conn;
    sqlite3_stmt *stmt = prepared(c, sql, errbuf, errlen);
    if (!stmt)
        return -1;
    int rc = SQLITE_OK;
    for (int i = 0; i < nparams && rc == SQLITE_OK; i++) {
        char name[16];
        snprintf(name, sizeof name, "$%d", i + 1);
        int index = sqlite3_bind_parameter_index(stmt, name);
        if (index == 0)
            continue; /* a parameter the statement does not use */
        switch (params[i].type) {
        case SRV_INT:
            rc = sqlite3_bind_int64(stmt, index, params[i].i);
            break;
        case SRV_TEXT:
            rc = sqlite3_bind_text(stmt, index, params[i].s, -1, SQLITE_STATIC);
            break;
        default:
            rc = sqlite3_bind_null(stmt, index);
        }
    }
    int stopped = 0;
    int was_in_transaction = !sqlite3_get_autocommit(c->db);
    c->ends_seen = __atomic_load_n(&writes_ended, __ATOMIC_RELAXED);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW || stopped || !row)
            continue;
        int n = sqlite3_column_count(stmt);
        if (n > MAX_COLS)
            n = MAX_COLS;
        srv_cell cells[MAX_COLS];
        for (int i = 0; i < n; i++) {
            srv_cell *cell = &cells[i];
            switch (sqlite3_column_type(stmt, i)) {
            case SQLITE_INTEGER:
                *cell = (srv_cell){SRV_CELL_INT, sqlite3_column_int64(stmt, i), 0, NULL};
                break;
            case SQLITE_FLOAT:
                *cell = (srv_cell){SRV_CELL_REAL, 0, sqlite3_column_double(stmt, i), NULL};
                break;
            case SQLITE_NULL:
                *cell = (srv_cell){SRV_CELL_NULL, 0, 0, NULL};
                break;
            default: {
                const char *text = (const char *)sqlite3_column_text(stmt, i);
                *cell = (srv_cell){text ? SRV_CELL_TEXT : SRV_CELL_NULL, 0, 0, text};
            }
            }
        }
        stopped = row(ctx, n, cells);
    }
    int ok = rc == SQLITE_DONE;
    if (!ok)
        snprintf(errbuf, errlen, "%s", sqlite3_errmsg(c->db));
    *changes = sqlite3_changes64(c->db);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    after_statement(c, stmt, was_in_transaction);
    return ok ? 0 : -1;
}

/* synchronous is read when the statement is prepared, not when it runs: each
 * change is parsed again (a few microseconds).  It may not change inside a
 * transaction: srv_db_exec_unsynced runs one autocommit statement. */
static int sqlite_set_synced(void *conn, int synced, char *errbuf, size_t errlen)
{
    sqlite_conn *c = conn;
    return run_simple(c->db, synced ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                      errbuf, errlen);
}

const srv_db_engine srv_db_sqlite_engine = {
    .name = "sqlite",
    .connect = sqlite_connect,
    .disconnect = sqlite_disconnect,
    .exec = sqlite_exec,
    .begin_write = "BEGIN IMMEDIATE",
    .set_synced = sqlite_set_synced,
};
