/*
 * srv_db.c - the connection pool shared by the SQL engines.
 *
 * Connections are opened lazily, up to the pool's size, and handed out one
 * statement or one transaction at a time; a thread that finds every
 * connection busy waits for one.  The engines themselves know nothing of
 * threads.
 */
#include "srv_db.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct srv_dbconn {
    void *conn;
    srv_dbconn *next_free;
    const srv_db_engine *engine;
};

struct srv_db {
    const srv_db_engine *engine;
    char *target;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    srv_dbconn *conns;
    int size, opened;
    srv_dbconn *free_list;
};

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
    db->conns = calloc((size_t)size, sizeof *db->conns);
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
    db->conns[0].engine = engine;
    db->opened = 1;
    db->free_list = &db->conns[0];
    return db;
}

void srv_db_close(srv_db *db)
{
    if (!db)
        return;
    for (int i = 0; i < db->opened; i++)
        db->engine->disconnect(db->conns[i].conn);
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

srv_dbconn *srv_db_acquire(srv_db *db, char *errbuf, size_t errlen)
{
    pthread_mutex_lock(&db->lock);
    for (;;) {
        if (db->free_list) {
            srv_dbconn *c = db->free_list;
            db->free_list = c->next_free;
            pthread_mutex_unlock(&db->lock);
            return c;
        }
        if (db->opened < db->size) {
            /* Connect outside the lock: it may take a network round trip. */
            int slot = db->opened++;
            pthread_mutex_unlock(&db->lock);
            void *conn = db->engine->connect(db->target, errbuf, errlen);
            pthread_mutex_lock(&db->lock);
            if (!conn) {
                /* Give the slot back only if it is still the last one. */
                if (db->opened == slot + 1)
                    db->opened--;
                pthread_mutex_unlock(&db->lock);
                return NULL;
            }
            db->conns[slot].conn = conn;
            db->conns[slot].engine = db->engine;
            pthread_mutex_unlock(&db->lock);
            return &db->conns[slot];
        }
        pthread_cond_wait(&db->freed, &db->lock);
    }
}

void srv_db_release(srv_db *db, srv_dbconn *c)
{
    pthread_mutex_lock(&db->lock);
    c->next_free = db->free_list;
    db->free_list = c;
    pthread_cond_signal(&db->freed);
    pthread_mutex_unlock(&db->lock);
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
