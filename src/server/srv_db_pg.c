/*
 * srv_db_pg.c - the PostgreSQL engine of srv_db.h (libpq), for several server
 * processes sharing one database.  Parameters travel separately from the
 * statement (PQexecParams), as text; results come back as text cells.  A
 * connection found broken is not mended here: the pool (srv_db.c) asks
 * alive() before handing one out, closes those whose session ended and
 * connects anew, under its "database down" backoff.
 *
 * Statements are unnamed, so PostgreSQL plans each for its parameters.  A
 * statement run through exec_generic is prepared once per connection
 * instead (its plan the same whatever the values, as srv_db.h says), which
 * spares the parse and, once PostgreSQL keeps its generic plan, the planning.
 * srv_db_read's statements are sent without waiting (PQsendQuery...), their
 * answers read once the socket says they have come.
 */
#include "srv_db.h"

#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARAMS 16
#define MAX_COLS 64
/* Statements prepared per connection, at most (then unnamed again). */
#define MAX_PREPARED 8

typedef struct pg_conn {
    PGconn *pg;
    const char *prepared[MAX_PREPARED]; /* by address: named "g<index>" */
    int nprepared;
    int sent_prepared; /* the statement in flight was sent by its name */
} pg_conn;

static void one_line(char *s)
{
    char *to = s;
    for (const char *p = s; *p; p++) {
        char ch = *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p;
        if (ch != ' ' || (to > s && to[-1] != ' '))
            *to++ = ch; /* (runs of blanks as one) */
    }
    *to = 0;
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ')
        s[--n] = 0;
}

static void pg_disconnect(void *conn)
{
    pg_conn *c = conn;
    if (c) {
        PQfinish(c->pg);
        free(c);
    }
}

static void quiet(void *ctx, const char *message)
{
    (void)ctx, (void)message;
}

static void *pg_connect(const char *url, char *errbuf, size_t errlen)
{
    pg_conn *conn = calloc(1, sizeof *conn);
    /* A connect to a host that does not answer gives up after 10 s unless
     * the URL says otherwise (its own settings come later, and win). */
    const char *const keys[] = {"connect_timeout", "dbname", NULL};
    const char *const values[] = {"10", url, NULL};
    PGconn *c = conn ? PQconnectdbParams(keys, values, 1) : NULL;
    if (!c || PQstatus(c) != CONNECTION_OK) {
        snprintf(errbuf, errlen, "cannot connect to PostgreSQL: %s",
                 c ? PQerrorMessage(c) : "out of memory");
        /* Its first line says what failed; libpq's hint after it ("Is the
         * server running...") would push the advice out of a short buffer. */
        char *hint = strchr(errbuf, '\n');
        if (hint && hint[1])
            *hint = 0;
        one_line(errbuf);
        if (c)
            PQfinish(c);
        free(conn);
        return NULL;
    }
    /* (a session's farewell comes as a notice: the pool counts those) */
    PQsetNoticeProcessor(c, quiet, NULL);
    PGresult *r = PQexec(c, "SET client_min_messages TO warning");
    PQclear(r);
    conn->pg = c;
    return conn;
}

/* The index of sql among the connection's prepared statements, preparing
 * it when there is room; -1: run it unnamed. */
static int prepared(pg_conn *conn, const char *sql, int nparams)
{
    for (int i = 0; i < conn->nprepared; i++)
        if (conn->prepared[i] == sql)
            return i;
    if (conn->nprepared == MAX_PREPARED)
        return -1;
    char name[16];
    snprintf(name, sizeof name, "g%d", conn->nprepared);
    PGresult *r = PQprepare(conn->pg, name, sql, nparams, NULL);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok)
        return -1; /* the unnamed run then says what is wrong */
    conn->prepared[conn->nprepared] = sql;
    return conn->nprepared++;
}

/* The statement's values as text, for libpq. */
typedef struct pg_values {
    char numbers[MAX_PARAMS][24];
    const char *values[MAX_PARAMS];
} pg_values;

static int bind_values(pg_values *v, const srv_param *params, int nparams, char *errbuf,
                       size_t errlen)
{
    if (nparams > MAX_PARAMS) {
        snprintf(errbuf, errlen, "too many parameters");
        return -1;
    }
    for (int i = 0; i < nparams; i++) {
        if (params[i].type == SRV_INT) {
            snprintf(v->numbers[i], sizeof v->numbers[i], "%lld", (long long)params[i].i);
            v->values[i] = v->numbers[i];
        } else {
            v->values[i] = params[i].type == SRV_TEXT ? params[i].s : NULL;
        }
    }
    return 0;
}

/* The index of sql's prepared statement (generic), or -1 to run it
 * unnamed. */
static int statement_for(pg_conn *conn, int generic, const char *sql, int nparams)
{
    if (PQstatus(conn->pg) != CONNECTION_OK)
        return -1; /* (the statement then says the connection is lost) */
    return generic ? prepared(conn, sql, nparams) : -1;
}

/* The error of a failed statement, in one line, never empty: a connection
 * that broke has no result to say it, only the connection's message. */
static void statement_error(pg_conn *conn, const PGresult *r, char *errbuf, size_t errlen)
{
    const char *what = r ? PQresultErrorMessage(r) : "";
    if (!what[0])
        what = PQerrorMessage(conn->pg);
    if (PQstatus(conn->pg) != CONNECTION_OK) {
        /* Its first line says why ("terminating connection due to
         * administrator command"); libpq's explanation after it would push
         * the advice out of a short buffer.  The next request connects
         * again (or is told the database is not reachable). */
        char why[190];
        snprintf(why, sizeof why, "%s", what[0] ? what : "no reason given");
        char *more = strchr(why, '\n');
        if (more && more != why)
            *more = 0;
        one_line(why);
        snprintf(errbuf, errlen, "the connection to PostgreSQL was lost (%s); retry in 1 s", why);
    } else {
        snprintf(errbuf, errlen, "%s", what[0] ? what : "PostgreSQL gave no reason");
    }
    one_line(errbuf);
}

/* A prepared statement found gone: SQLSTATE 26000. */
static int statement_gone(const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return state && strcmp(state, "26000") == 0;
}

/* Gone (a pooler between us, DISCARD ALL): unnamed from now on. */
static void stop_preparing(pg_conn *conn)
{
    conn->nprepared = MAX_PREPARED;
    for (int i = 0; i < MAX_PREPARED; i++)
        conn->prepared[i] = NULL;
}

/* Hands r's rows to row and clears r: 0, or -1 with errbuf set. */
static int deliver(pg_conn *conn, PGresult *r, srv_row_fn row, void *ctx, int64_t *changes,
                   char *errbuf, size_t errlen)
{
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        statement_error(conn, r, errbuf, errlen);
        PQclear(r);
        return -1;
    }
    if (changes)
        *changes = atoll(PQcmdTuples(r));
    if (row && st == PGRES_TUPLES_OK) {
        int nrows = PQntuples(r), ncols = PQnfields(r);
        if (ncols > MAX_COLS)
            ncols = MAX_COLS;
        for (int i = 0; i < nrows; i++) {
            srv_cell cells[MAX_COLS];
            for (int j = 0; j < ncols; j++)
                cells[j] = PQgetisnull(r, i, j)
                               ? (srv_cell){SRV_CELL_NULL, 0, 0, NULL}
                               : (srv_cell){SRV_CELL_TEXT, 0, 0, PQgetvalue(r, i, j)};
            if (row(ctx, ncols, cells))
                break;
        }
    }
    PQclear(r);
    return 0;
}

static int run(pg_conn *conn, int generic, const char *sql, const srv_param *params,
               int nparams, srv_row_fn row, void *ctx, int64_t *changes, char *errbuf,
               size_t errlen)
{
    pg_values v;
    if (bind_values(&v, params, nparams, errbuf, errlen) < 0)
        return -1;
    PGconn *c = conn->pg;
    int g = statement_for(conn, generic, sql, nparams);
    char name[16];
    snprintf(name, sizeof name, "g%d", g);
    PGresult *r = g >= 0 ? PQexecPrepared(c, name, nparams, v.values, NULL, NULL, 0)
                         : PQexecParams(c, sql, nparams, NULL, v.values, NULL, NULL, 0);
    if (g >= 0 && statement_gone(r)) {
        stop_preparing(conn);
        PQclear(r);
        r = PQexecParams(c, sql, nparams, NULL, v.values, NULL, NULL, 0);
    }
    return deliver(conn, r, row, ctx, changes, errbuf, errlen);
}

/* srv_db_read's way: the statement sent, its answer read when it comes. */
static int pg_send(void *conn_, int generic, const char *sql, const srv_param *params,
                   int nparams, char *errbuf, size_t errlen)
{
    pg_conn *conn = conn_;
    pg_values v;
    if (bind_values(&v, params, nparams, errbuf, errlen) < 0)
        return -1;
    int g = statement_for(conn, generic, sql, nparams);
    char name[16];
    snprintf(name, sizeof name, "g%d", g);
    int sent = g >= 0 ? PQsendQueryPrepared(conn->pg, name, nparams, v.values, NULL, NULL, 0)
                      : PQsendQueryParams(conn->pg, sql, nparams, NULL, v.values, NULL, NULL, 0);
    if (!sent) {
        statement_error(conn, NULL, errbuf, errlen);
        return -1;
    }
    conn->sent_prepared = g >= 0;
    return 0;
}

static int pg_socket(void *conn)
{
    return PQsocket(((pg_conn *)conn)->pg);
}

static int pg_ready(void *conn)
{
    PGconn *c = ((pg_conn *)conn)->pg;
    /* A connection that broke has its answer too: an error, with no wait. */
    return !PQconsumeInput(c) || !PQisBusy(c);
}

static int pg_receive(void *conn_, srv_row_fn row, void *ctx, int64_t *changes, char *errbuf,
                      size_t errlen)
{
    pg_conn *conn = conn_;
    PGresult *r = PQgetResult(conn->pg), *more;
    /* Up to the end of the answer (NULL), so the connection is free again. */
    while ((more = PQgetResult(conn->pg)))
        PQclear(more);
    if (!r) {
        statement_error(conn, NULL, errbuf, errlen);
        return -1;
    }
    if (conn->sent_prepared && statement_gone(r)) {
        stop_preparing(conn);
        PQclear(r);
        return SRV_DB_RESEND;
    }
    return deliver(conn, r, row, ctx, changes, errbuf, errlen);
}

static int pg_alive(void *conn)
{
    PGconn *c = ((pg_conn *)conn)->pg;
    /* An idle session that ended has left its farewell (an error libpq
     * takes as a notice) and then the end of the stream in the socket:
     * reading them, never waiting, breaks the connection's status.  An idle
     * session is sent nothing else (no LISTEN here), so a few reads do. */
    for (int i = 0; i < 4 && PQstatus(c) == CONNECTION_OK; i++) {
        struct pollfd p = {PQsocket(c), POLLIN, 0};
        if (p.fd < 0 || poll(&p, 1, 0) == 0)
            break; /* nothing came */
        PQconsumeInput(c);
    }
    return PQstatus(c) == CONNECTION_OK;
}

static int pg_discard(void *conn)
{
    PGconn *c = ((pg_conn *)conn)->pg;
    if (!PQconsumeInput(c) && PQstatus(c) != CONNECTION_OK) {
        /* Broken: whatever is left is thrown away; the next statement mends it. */
        PGresult *r;
        while ((r = PQgetResult(c)))
            PQclear(r);
        return 1;
    }
    while (!PQisBusy(c)) {
        PGresult *r = PQgetResult(c);
        if (!r)
            return 1;
        PQclear(r);
    }
    return 0;
}

static int pg_exec(void *conn, const char *sql, const srv_param *params, int nparams,
                   srv_row_fn row, void *ctx, int64_t *changes, char *errbuf, size_t errlen)
{
    return run(conn, 0, sql, params, nparams, row, ctx, changes, errbuf, errlen);
}

static int pg_exec_generic(void *conn, const char *sql, const srv_param *params, int nparams,
                           srv_row_fn row, void *ctx, int64_t *changes, char *errbuf,
                           size_t errlen)
{
    return run(conn, 1, sql, params, nparams, row, ctx, changes, errbuf, errlen);
}

const srv_db_engine srv_db_pg_engine = {
    .name = "postgresql",
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .exec = pg_exec,
    .exec_generic = pg_exec_generic,
    .begin_write = "BEGIN",
    .send = pg_send,
    .socket = pg_socket,
    .ready = pg_ready,
    .receive = pg_receive,
    .discard = pg_discard,
    .alive = pg_alive,
};
