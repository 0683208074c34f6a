/*
 * srv_db_pg.c - the PostgreSQL engine of srv_db.h (libpq), for several server
 * processes sharing one database.  Parameters travel separately from the
 * statement (PQexecParams), as text; results come back as text cells.  A
 * connection found broken is reset once before the statement is retried.
 */
#include "srv_db.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARAMS 16
#define MAX_COLS 64

static void one_line(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ')
        s[--n] = 0;
}

static void pg_disconnect(void *conn)
{
    if (conn)
        PQfinish(conn);
}

static void *pg_connect(const char *url, char *errbuf, size_t errlen)
{
    PGconn *c = PQconnectdb(url);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        snprintf(errbuf, errlen, "cannot connect to PostgreSQL: %s",
                 c ? PQerrorMessage(c) : "out of memory");
        one_line(errbuf);
        if (c)
            PQfinish(c);
        return NULL;
    }
    PGresult *r = PQexec(c, "SET client_min_messages TO warning");
    PQclear(r);
    return c;
}

static int pg_exec(void *conn, const char *sql, const srv_param *params, int nparams,
                   srv_row_fn row, void *ctx, int64_t *changes, char *errbuf, size_t errlen)
{
    PGconn *c = conn;
    if (nparams > MAX_PARAMS) {
        snprintf(errbuf, errlen, "too many parameters");
        return -1;
    }
    char numbers[MAX_PARAMS][24];
    const char *values[MAX_PARAMS];
    for (int i = 0; i < nparams; i++) {
        if (params[i].type == SRV_INT) {
            snprintf(numbers[i], sizeof numbers[i], "%lld", (long long)params[i].i);
            values[i] = numbers[i];
        } else {
            values[i] = params[i].type == SRV_TEXT ? params[i].s : NULL;
        }
    }
    if (PQstatus(c) != CONNECTION_OK)
        PQreset(c);
    PGresult *r = PQexecParams(c, sql, nparams, NULL, values, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(errbuf, errlen, "%s", PQresultErrorMessage(r));
        one_line(errbuf);
        PQclear(r);
        return -1;
    }
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

const srv_db_engine srv_db_pg_engine = {
    .name = "postgresql",
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .exec = pg_exec,
    .begin_write = "BEGIN",
};
