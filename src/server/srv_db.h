/*
 * srv_db.h - the SQL engines behind the store: one small interface that
 * SQLite (srv_db_sqlite.c) and PostgreSQL (srv_db_pg.c) both implement, so
 * that every query of the server is written once, in srv_store.c.
 *
 * Statements are written in the dialect both engines share, with numbered
 * parameters $1, $2, ...; values are always bound, never pasted into the
 * text.  Results arrive row by row as text (NULL for SQL NULL), which both
 * engines produce natively; the store converts what it needs.
 *
 * A srv_db is a pool of connections, safe to use from any number of threads:
 * srv_db_exec() borrows a connection for one statement; a transaction holds
 * one with srv_db_acquire() .. srv_db_release().
 */
#ifndef SRV_DB_H
#define SRV_DB_H

#include <stddef.h>
#include <stdint.h>

typedef struct srv_db srv_db;
typedef struct srv_dbconn srv_dbconn;

typedef enum srv_param_type { SRV_NULL = 0, SRV_INT, SRV_TEXT } srv_param_type;

typedef struct srv_param {
    srv_param_type type;
    int64_t i;
    const char *s; /* NUL-terminated */
} srv_param;

#define SRV_P_INT(v) ((srv_param){SRV_INT, (int64_t)(v), NULL})
#define SRV_P_TEXT(v) srv_param_text(v)
#define SRV_P_NULL ((srv_param){SRV_NULL, 0, NULL})

/* Text, or SQL NULL for a NULL pointer. */
static inline srv_param srv_param_text(const char *s)
{
    return (srv_param){s ? SRV_TEXT : SRV_NULL, 0, s};
}

/* Called once per result row; vals[i] is NULL for SQL NULL.  A non-zero
 * return stops the statement's rows (the statement still succeeds). */
typedef int (*srv_row_fn)(void *ctx, int ncols, const char *const *vals);

/* The engine-specific part, filled by each backend. */
typedef struct srv_db_engine {
    const char *name; /* "sqlite", "postgresql" */
    /* Opens one connection; NULL with errbuf set. */
    void *(*connect)(const char *target, char *errbuf, size_t errlen);
    void (*disconnect)(void *conn);
    /* Runs one statement; 0, or -1 with errbuf set.  *changes receives the rows
     * an INSERT/UPDATE/DELETE touched. */
    int (*exec)(void *conn, const char *sql, const srv_param *params, int nparams,
                srv_row_fn row, void *ctx, int64_t *changes, char *errbuf, size_t errlen);
    /* The statement that opens a transaction that will write. */
    const char *begin_write;
} srv_db_engine;

extern const srv_db_engine srv_db_sqlite_engine;
extern const srv_db_engine srv_db_pg_engine;

/* Opens a pool of up to size connections to target with engine.  NULL with
 * errbuf set when the first connection fails. */
srv_db *srv_db_open(const srv_db_engine *engine, const char *target, int size,
                    char *errbuf, size_t errlen);
void srv_db_close(srv_db *db);
const srv_db_engine *srv_db_engine_of(const srv_db *db);

/* One statement on a pooled connection.  row may be NULL.  Returns 0, or -1
 * with errbuf set.  changes may be NULL. */
int srv_db_exec(srv_db *db, const char *sql, const srv_param *params, int nparams,
                srv_row_fn row, void *ctx, int64_t *changes, char *errbuf, size_t errlen);

/* A connection held for several statements (a transaction). */
srv_dbconn *srv_db_acquire(srv_db *db, char *errbuf, size_t errlen);
void srv_db_release(srv_db *db, srv_dbconn *c);
int srv_db_exec_on(srv_dbconn *c, const char *sql, const srv_param *params, int nparams,
                   srv_row_fn row, void *ctx, int64_t *changes, char *errbuf, size_t errlen);

#endif /* SRV_DB_H */
