/*
 * srv_db.h - the SQL engines behind the store: one small interface that
 * SQLite (srv_db_sqlite.c) and PostgreSQL (srv_db_pg.c) both implement, so
 * that every query of the server is written once, in srv_store.c.
 *
 * Statements are written in the dialect both engines share, with numbered
 * parameters $1, $2, ...; values are always bound, never pasted into the
 * text.  Results arrive row by row as cells, each in the form its engine
 * holds it: SQLite gives integers and reals as numbers (turning them into
 * text, and the store back into numbers, was about a sixth of the CPU of a
 * page of the runs list), PostgreSQL gives text.  The store reads a cell with
 * srv_cell_int/_real/_text, which convert what the engine gave.
 *
 * A srv_db is a pool of connections, safe to use from any number of threads:
 * srv_db_exec() borrows a connection for one statement; a transaction holds
 * one with srv_db_acquire() .. srv_db_release().  srv_db_read() runs a
 * statement that changes nothing and, on an engine that can send one and
 * wait (PostgreSQL), sends it again on a second connection when the first
 * is slow to answer, taking whichever answer comes first.
 */
#ifndef SRV_DB_H
#define SRV_DB_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct srv_db srv_db;
typedef struct srv_dbconn srv_dbconn;

/* The instant ms from now on CLOCK_REALTIME: a pthread_cond_timedwait
 * deadline for a condition made with the default clock (the pool's waits
 * for a free connection, SQLite's waits for the writer before). */
static inline struct timespec srv_db_deadline_in_ms(int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

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

typedef enum srv_cell_kind {
    SRV_CELL_NULL = 0,
    SRV_CELL_INT,
    SRV_CELL_REAL,
    SRV_CELL_TEXT,
} srv_cell_kind;

/* One value of a result row, valid during the row callback only. */
typedef struct srv_cell {
    srv_cell_kind kind;
    int64_t i;     /* SRV_CELL_INT */
    double d;      /* SRV_CELL_REAL */
    const char *s; /* SRV_CELL_TEXT: NUL-terminated */
} srv_cell;

/* A number of a cell: an integer as it is, a real truncated, text parsed;
 * 0 for SQL NULL. */
int64_t srv_cell_int(const srv_cell *c);
double srv_cell_real(const srv_cell *c);
/* The text of a cell, NULL for SQL NULL and for a number: columns read as
 * text are text columns. */
static inline const char *srv_cell_text(const srv_cell *c)
{
    return c->kind == SRV_CELL_TEXT ? c->s : NULL;
}

/* Called once per result row.  A non-zero return stops the statement's rows
 * (the statement still succeeds). */
typedef int (*srv_row_fn)(void *ctx, int ncols, const srv_cell *cells);

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
    /* The same for a statement of srv_db_exec_generic; NULL: exec. */
    int (*exec_generic)(void *conn, const char *sql, const srv_param *params, int nparams,
                        srv_row_fn row, void *ctx, int64_t *changes, char *errbuf,
                        size_t errlen);
    /* The statement that opens a transaction that will write. */
    const char *begin_write;
    /* Whether the connection's later commits wait for the disk: synced 1
     * (what every connection opens with) or 0 (a commit that a power cut
     * may lose, with everything committed after it, never half of one).
     * NULL: every commit waits (the engine has no such choice).  0, or -1
     * with errbuf set. */
    int (*set_synced)(void *conn, int synced, char *errbuf, size_t errlen);
    /* A statement sent without waiting for its answer (srv_db_read), NULL
     * when the engine has no such way.  send: as exec_generic (generic) or
     * exec, 0 or -1 with errbuf set (nothing in flight then).  socket: the
     * descriptor its answer arrives on.  ready: reads what has arrived,
     * without waiting: 1 when the answer is complete or the connection
     * broke (receive says which), 0 not yet.  receive: after ready said 1,
     * hands over the answer as exec does; SRV_DB_RESEND when the statement
     * must be run again the plain way (its prepared form was gone).
     * discard: throws the answer away as it comes, without waiting: 1 when
     * the connection is free for a statement again, 0 not yet. */
    int (*send)(void *conn, int generic, const char *sql, const srv_param *params,
                int nparams, char *errbuf, size_t errlen);
    int (*socket)(void *conn);
    int (*ready)(void *conn);
    int (*receive)(void *conn, srv_row_fn row, void *ctx, int64_t *changes, char *errbuf,
                   size_t errlen);
    int (*discard)(void *conn);
    /* An idle connection whose session may have ended meanwhile: 0 when it
     * has (what the socket holds says so: the database stopped or
     * restarted), else 1; never waits.  NULL: always alive. */
    int (*alive)(void *conn);
} srv_db_engine;

#define SRV_DB_RESEND (-2)

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

/* srv_db_exec of a write whose commit does not wait for the disk, on an
 * engine that can say so (SQLite: synchronous=NORMAL for that commit only;
 * on PostgreSQL it is srv_db_exec).  Only for a change that nothing needs
 * after a power cut: a later commit that waits (synchronous=FULL) makes it
 * durable too, and a power cut before one loses it and every commit after
 * it, whole.  srv_store.c says which statements, and why. */
int srv_db_exec_unsynced(srv_db *db, const char *sql, const srv_param *params, int nparams,
                         int64_t *changes, char *errbuf, size_t errlen);

/* srv_db_exec for a statement whose best plan is the same whatever its
 * parameters' values (say, an index walk forced by its shape): an engine
 * may plan it once per connection and keep the plan.  sql must stay at its
 * address as long as the pool (a string literal), which names it. */
int srv_db_exec_generic(srv_db *db, const char *sql, const srv_param *params, int nparams,
                        srv_row_fn row, void *ctx, int64_t *changes, char *errbuf,
                        size_t errlen);

/* A statement that changes nothing (so that running it twice is harmless),
 * run as srv_db_exec_generic (generic non-zero) or srv_db_exec.  With an
 * engine that has send (PostgreSQL), when no answer has come after the
 * pool's hedge delay (SRV_DB_HEDGE_MS, or the environment's
 * VMPROF_SERVER_HEDGE_MS; 0: never), the same statement is sent on a second
 * connection, beyond the pool's size if need be (up to SRV_DB_HEDGE_SPARE
 * more), and the first answer that succeeds is the result: row sees the
 * rows of one answer only.  The other connection is given back to the pool
 * once its answer has come and been thrown away.  Why: on a shared host a
 * database process that is ready to run may wait for a core for hundreds of
 * milliseconds (docs/server.md), while another is run at once. */
#define SRV_DB_HEDGE_MS 4
#define SRV_DB_HEDGE_SPARE 2
/* A connection whose thrown-away answer has not come after this long
 * (SRV_DB_DRAIN_MS, or the environment's VMPROF_SERVER_DRAIN_MS) is closed
 * and its slot opened again when next needed: a session stopped or cut off
 * for good would otherwise keep its slot forever. */
#define SRV_DB_DRAIN_MS 30000
int srv_db_read(srv_db *db, int generic, const char *sql, const srv_param *params, int nparams,
                srv_row_fn row, void *ctx, char *errbuf, size_t errlen);
/* What the pool did since it opened. */
typedef struct srv_db_stats {
    int64_t hedges_sent, hedges_won; /* reads sent again; answered first there */
    int64_t stuck_closed;   /* connections closed past the drain bound */
    int64_t dead_closed;    /* free connections whose session had ended */
    int64_t connects_failed;
    int64_t refused_down;   /* requests answered at once: the database was down */
} srv_db_stats;
void srv_db_stats_get(srv_db *db, srv_db_stats *stats);

/* The case folding of the runs search (q=, srv_store_run_list), the same
 * for q and for the texts on both engines: ASCII letters in C, every other
 * character through glibc's towlower() of the C.UTF-8 locale, which is what
 * PostgreSQL's LOWER() calls on a database of a UTF-8 locale (so SQLite's
 * LOWER() is replaced by this function on each connection, its own folding
 * ASCII only).  Invalid UTF-8 is copied as it is.  Writes n2 <= 2 * n bytes
 * and a NUL to out (room for 2 * n + 1); returns n2. */
size_t srv_fold(const char *in, size_t n, char *out);

/* Every text of three characters that srv_fold folds to tri (len bytes of
 * UTF-8: three characters as srv_fold gives them), each ended by a NUL,
 * into out (cap bytes): what a search through an index of the texts' own
 * trigrams (not folded) looks up for one trigram of a folded q.  Returns
 * how many; -1 when tri is not three characters, when they are more than
 * max or do not fit.  srv_fold_prepare makes the table of characters that
 * fold to others (a few ms, once), which this needs; called before, it
 * spares the first search that wait. */
int srv_fold_variants(const char *tri, size_t len, char *out, size_t cap, int max);
void srv_fold_prepare(void);

/* The database down: after a connect fails, requests that would connect are
 * answered at once for a while (doubling, up to 2 s, while connects keep
 * failing; then one tries), with errbuf "the database is not reachable
 * (WHY); retry in N s".  The seconds a client should wait before trying
 * again: the rest of that while, at least 1. */
int srv_db_retry_after(srv_db *db);

/* A connection held for several statements (a transaction). */
srv_dbconn *srv_db_acquire(srv_db *db, char *errbuf, size_t errlen);
void srv_db_release(srv_db *db, srv_dbconn *c);
int srv_db_exec_on(srv_dbconn *c, const char *sql, const srv_param *params, int nparams,
                   srv_row_fn row, void *ctx, int64_t *changes, char *errbuf, size_t errlen);

#endif /* SRV_DB_H */
