/*
 * srv_store.c - the server's queries, written once for SQLite and PostgreSQL
 * (see srv_db.h for the dialect they share).  Each statement is a string
 * literal with numbered parameters; optional filters are parameters too
 * ('' means "any"), so no statement is ever assembled from pieces.
 */
#include "srv_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct srv_store {
    srv_db *db;
    int sqlite;
};

#define DB_POOL 8
#define SCHEMA_VERSION 1

/* Columns that differ between the engines: the users' self-numbering key. */
static const char *const schema_sqlite_users =
    "CREATE TABLE IF NOT EXISTS users ("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " admin INTEGER NOT NULL DEFAULT 0,"
    " password_hash TEXT,"
    " created BIGINT NOT NULL)";
static const char *const schema_pg_users =
    "CREATE TABLE IF NOT EXISTS users ("
    " id BIGSERIAL PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " admin INTEGER NOT NULL DEFAULT 0,"
    " password_hash TEXT,"
    " created BIGINT NOT NULL)";

static const char *const schema_common[] = {
    "CREATE TABLE IF NOT EXISTS tokens ("
    " hash TEXT PRIMARY KEY,"
    " user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " created BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sessions ("
    " hash TEXT PRIMARY KEY,"
    " user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " csrf TEXT NOT NULL,"
    " expires BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs ("
    " id TEXT PRIMARY KEY,"
    " owner_id BIGINT REFERENCES users(id) ON DELETE SET NULL,"
    " argv TEXT NOT NULL,"
    " vm TEXT NOT NULL,"
    " name TEXT,"
    " filename TEXT,"
    " created BIGINT NOT NULL,"
    " state INTEGER NOT NULL,"
    " has_jitlog INTEGER NOT NULL DEFAULT 0,"
    " samples BIGINT, duration DOUBLE PRECISION, period_usec BIGINT, threads INTEGER,"
    " mode INTEGER, interp TEXT, start_time DOUBLE PRECISION, raw_size BIGINT,"
    " complete INTEGER)",
    /* The listing walks this index newest first and stops after one page. */
    "CREATE INDEX IF NOT EXISTS runs_listing ON runs (state, created DESC, id)",
    "CREATE INDEX IF NOT EXISTS tokens_user ON tokens (user_id)",
};

static void set_err(srv_err *err, const char *what, const char *detail)
{
    if (err)
        snprintf(err->message, sizeof err->message, "%s: %s", what, detail);
}

static int exec(srv_store *s, const char *sql, const srv_param *p, int n, srv_row_fn row,
                void *ctx, int64_t *changes, srv_err *err, const char *what)
{
    char buf[256];
    if (srv_db_exec(s->db, sql, p, n, row, ctx, changes, buf, sizeof buf) < 0) {
        set_err(err, what, buf);
        return -1;
    }
    return 0;
}

srv_store *srv_store_open(const char *database, srv_err *err)
{
    srv_store *s = calloc(1, sizeof *s);
    if (!s) {
        set_err(err, "cannot open the database", "out of memory");
        return NULL;
    }
    int pg = strncmp(database, "postgresql://", 13) == 0 ||
             strncmp(database, "postgres://", 11) == 0;
    s->sqlite = !pg;
    char buf[256];
    s->db = srv_db_open(pg ? &srv_db_pg_engine : &srv_db_sqlite_engine, database, DB_POOL,
                        buf, sizeof buf);
    if (!s->db) {
        set_err(err, "cannot open the database", buf);
        free(s);
        return NULL;
    }
    /* Several servers may start at once on one PostgreSQL database: the
     * schema statements are all IF NOT EXISTS, and a lock serialises them. */
    srv_dbconn *c = srv_db_acquire(s->db, buf, sizeof buf);
    int rc = c ? 0 : -1;
    if (c && pg)
        rc = srv_db_exec_on(c, "SELECT pg_advisory_lock(7135521)", NULL, 0, NULL, NULL, NULL,
                            buf, sizeof buf);
    if (rc == 0)
        rc = srv_db_exec_on(c, pg ? schema_pg_users : schema_sqlite_users, NULL, 0, NULL,
                            NULL, NULL, buf, sizeof buf);
    for (size_t i = 0; rc == 0 && i < sizeof schema_common / sizeof *schema_common; i++)
        rc = srv_db_exec_on(c, schema_common[i], NULL, 0, NULL, NULL, NULL, buf, sizeof buf);
    if (c && pg) {
        char ignored[256];
        srv_db_exec_on(c, "SELECT pg_advisory_unlock(7135521)", NULL, 0, NULL, NULL, NULL,
                       ignored, sizeof ignored);
    }
    if (c)
        srv_db_release(s->db, c);
    if (rc < 0) {
        set_err(err, "cannot create the database schema", buf);
        srv_store_close(s);
        return NULL;
    }
    return s;
}

void srv_store_close(srv_store *s)
{
    if (!s)
        return;
    srv_db_close(s->db);
    free(s);
}

int srv_store_is_sqlite(const srv_store *s)
{
    return s->sqlite;
}

int srv_store_ping(srv_store *s, srv_err *err)
{
    return exec(s, "SELECT 1", NULL, 0, NULL, NULL, NULL, err, "the database does not answer");
}

/* ---- runs ---------------------------------------------------------------- */

void srv_run_clear(srv_run *run)
{
    free(run->argv);
    free(run->name);
    free(run->filename);
    memset(run, 0, sizeof *run);
}

#define RUN_COLUMNS                                                                        \
    "r.id, r.owner_id, u.name, r.argv, r.vm, r.name, r.filename, r.created, r.state,"      \
    " r.has_jitlog, r.samples, r.duration, r.period_usec, r.threads, r.mode, r.interp,"    \
    " r.start_time, r.raw_size, r.complete"
#define RUN_NCOLS 19

static long long num(const char *v)
{
    return v ? strtoll(v, NULL, 10) : 0;
}

static char *dup_or_null(const char *v)
{
    return v ? strdup(v) : NULL;
}

static void copy_text(char *dst, size_t size, const char *v)
{
    snprintf(dst, size, "%s", v ? v : "");
}

static void run_from_row(srv_run *r, const char *const *v)
{
    memset(r, 0, sizeof *r);
    copy_text(r->id, sizeof r->id, v[0]);
    r->owner_id = num(v[1]);
    copy_text(r->owner, sizeof r->owner, v[2]);
    r->argv = strdup(v[3] ? v[3] : "");
    copy_text(r->vm, sizeof r->vm, v[4]);
    r->name = dup_or_null(v[5]);
    r->filename = dup_or_null(v[6]);
    r->created_ms = num(v[7]);
    r->state = (srv_run_state)num(v[8]);
    r->has_jitlog = (int)num(v[9]);
    r->facts.samples = (uint64_t)num(v[10]);
    r->facts.duration = v[11] ? strtod(v[11], NULL) : 0;
    r->facts.period_usec = (uint64_t)num(v[12]);
    r->facts.threads = (uint32_t)num(v[13]);
    r->facts.mode = (unsigned)num(v[14]);
    copy_text(r->facts.interp, sizeof r->facts.interp, v[15]);
    r->facts.start = v[16] ? strtod(v[16], NULL) : 0;
    r->facts.raw_size = (uint64_t)num(v[17]);
    r->facts.complete = (int)num(v[18]);
}

typedef struct run_rows {
    srv_run *runs;
    size_t n, cap;
} run_rows;

static int collect_run(void *ctx, int ncols, const char *const *v)
{
    run_rows *rows = ctx;
    if (ncols < RUN_NCOLS || rows->n == rows->cap)
        return 1;
    run_from_row(&rows->runs[rows->n++], v);
    return 0;
}

int srv_store_run_create(srv_store *s, const char *id, int64_t owner_id, const char *argv,
                         const char *vm, int64_t created_ms, srv_err *err)
{
    srv_param p[] = {SRV_P_TEXT(id), owner_id ? SRV_P_INT(owner_id) : SRV_P_NULL,
                     SRV_P_TEXT(argv), SRV_P_TEXT(vm), SRV_P_INT(created_ms),
                     SRV_P_INT(SRV_RUN_CREATED)};
    return exec(s,
                "INSERT INTO runs (id, owner_id, argv, vm, created, state)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                p, 6, NULL, NULL, NULL, err, "cannot create the run");
}

int srv_store_run_get(srv_store *s, const char *id, srv_run *run, srv_err *err)
{
    run_rows rows = {run, 0, 1};
    srv_param p[] = {SRV_P_TEXT(id)};
    if (exec(s,
             "SELECT " RUN_COLUMNS " FROM runs r LEFT JOIN users u ON u.id = r.owner_id"
             " WHERE r.id = $1",
             p, 1, collect_run, &rows, NULL, err, "cannot read the run") < 0)
        return -1;
    return rows.n ? 0 : 1;
}

static int changed(int rc, int64_t changes)
{
    return rc < 0 ? -1 : changes ? 0 : 1;
}

int srv_store_run_set_profile(srv_store *s, const char *id, const srv_run_facts *f,
                              const char *filename, srv_err *err)
{
    char duration[64], start[64];
    snprintf(duration, sizeof duration, "%.17g", f->duration);
    snprintf(start, sizeof start, "%.17g", f->start);
    srv_param p[] = {
        SRV_P_TEXT(id), SRV_P_INT(SRV_RUN_UPLOADED), SRV_P_TEXT(filename),
        SRV_P_INT(f->samples), SRV_P_TEXT(duration), SRV_P_INT(f->period_usec),
        SRV_P_INT(f->threads), SRV_P_INT(f->mode), SRV_P_TEXT(f->interp), SRV_P_TEXT(start),
        SRV_P_INT(f->raw_size), SRV_P_INT(f->complete), SRV_P_INT(SRV_RUN_FROZEN),
    };
    int64_t n = 0;
    int rc = exec(s,
                  "UPDATE runs SET state = $2, filename = $3, samples = $4,"
                  " duration = CAST($5 AS DOUBLE PRECISION), period_usec = $6, threads = $7,"
                  " mode = $8, interp = $9, start_time = CAST($10 AS DOUBLE PRECISION),"
                  " raw_size = $11, complete = $12 WHERE id = $1 AND state < $13",
                  p, 13, NULL, NULL, &n, err, "cannot record the profile");
    return changed(rc, n);
}

int srv_store_run_set_jitlog(srv_store *s, const char *id, srv_err *err)
{
    srv_param p[] = {SRV_P_TEXT(id), SRV_P_INT(SRV_RUN_FROZEN)};
    int64_t n = 0;
    int rc = exec(s, "UPDATE runs SET has_jitlog = 1 WHERE id = $1 AND state < $2", p, 2, NULL,
                  NULL, &n, err, "cannot record the jit log");
    return changed(rc, n);
}

int srv_store_run_freeze(srv_store *s, const char *id, srv_err *err)
{
    srv_param p[] = {SRV_P_TEXT(id), SRV_P_INT(SRV_RUN_FROZEN), SRV_P_INT(SRV_RUN_UPLOADED)};
    int64_t n = 0;
    int rc = exec(s, "UPDATE runs SET state = $2 WHERE id = $1 AND state = $3", p, 3, NULL,
                  NULL, &n, err, "cannot freeze the run");
    return changed(rc, n);
}

int srv_store_run_rename(srv_store *s, const char *id, const char *name, srv_err *err)
{
    srv_param p[] = {SRV_P_TEXT(id), SRV_P_TEXT(name)};
    int64_t n = 0;
    int rc = exec(s, "UPDATE runs SET name = $2 WHERE id = $1", p, 2, NULL, NULL, &n, err,
                  "cannot rename the run");
    return changed(rc, n);
}

int srv_store_run_delete(srv_store *s, const char *id, srv_err *err)
{
    srv_param p[] = {SRV_P_TEXT(id)};
    int64_t n = 0;
    int rc = exec(s, "DELETE FROM runs WHERE id = $1", p, 1, NULL, NULL, &n, err,
                  "cannot delete the run");
    return changed(rc, n);
}

/* q as a LIKE pattern: its own % _ and \ escaped, lower-cased, inside %...%. */
static char *like_pattern(const char *q)
{
    size_t n = strlen(q);
    char *out = malloc(2 * n + 3), *o = out;
    if (!out)
        return NULL;
    *o++ = '%';
    for (const char *c = q; *c; c++) {
        if (*c == '%' || *c == '_' || *c == '\\')
            *o++ = '\\';
        *o++ = (*c >= 'A' && *c <= 'Z') ? (char)(*c - 'A' + 'a') : *c;
    }
    *o++ = '%';
    *o = 0;
    return out;
}

int srv_store_run_list(srv_store *s, const srv_run_query *query, srv_run *runs, size_t *n,
                       int *more, srv_err *err)
{
    int64_t size = query->page_size, page = query->page < 1 ? 1 : query->page;
    char *pattern = like_pattern(query->q ? query->q : "");
    if (!pattern) {
        set_err(err, "cannot list the runs", "out of memory");
        return -1;
    }
    /* One row more than a page says whether a next page exists. */
    srv_run *buf = calloc((size_t)size + 1, sizeof *buf);
    if (!buf) {
        free(pattern);
        set_err(err, "cannot list the runs", "out of memory");
        return -1;
    }
    run_rows rows = {buf, 0, (size_t)size + 1};
    int filtered = (query->q && *query->q) || (query->vm && *query->vm) ||
                   (query->user && *query->user);
    int rc;
    if (!filtered) {
        /* The page's ids from the listing index alone (it covers the
         * subquery, so skipping to page 100 reads no rows), then those rows. */
        srv_param p[] = {SRV_P_INT(SRV_RUN_FROZEN), SRV_P_INT(size + 1),
                         SRV_P_INT((page - 1) * size)};
        rc = exec(s,
                  "SELECT " RUN_COLUMNS " FROM runs r LEFT JOIN users u ON u.id = r.owner_id"
                  " WHERE r.id IN (SELECT id FROM runs WHERE state = $1"
                  "                ORDER BY state, created DESC, id LIMIT $2 OFFSET $3)"
                  " ORDER BY r.created DESC, r.id",
                  p, 3, collect_run, &rows, NULL, err, "cannot list the runs");
    } else {
        srv_param p[] = {
            SRV_P_INT(SRV_RUN_FROZEN),
            SRV_P_TEXT(query->q && *query->q ? pattern : ""),
            SRV_P_TEXT(query->vm ? query->vm : ""),
            SRV_P_TEXT(query->user ? query->user : ""),
            SRV_P_INT(size + 1),
            SRV_P_INT((page - 1) * size),
        };
        rc = exec(s,
                  "SELECT " RUN_COLUMNS " FROM runs r LEFT JOIN users u ON u.id = r.owner_id"
                  " WHERE r.state = $1"
                  " AND ($2 = '' OR LOWER(r.argv) LIKE $2 ESCAPE '\\'"
                  "      OR LOWER(r.name) LIKE $2 ESCAPE '\\')"
                  " AND ($3 = '' OR r.vm = $3)"
                  " AND ($4 = '' OR u.name = $4)"
                  " ORDER BY r.state, r.created DESC, r.id LIMIT $5 OFFSET $6",
                  p, 6, collect_run, &rows, NULL, err, "cannot list the runs");
    }
    free(pattern);
    if (rc < 0) {
        for (size_t i = 0; i < rows.n; i++)
            srv_run_clear(&buf[i]);
        free(buf);
        return -1;
    }
    *more = rows.n > (size_t)size;
    if (*more)
        srv_run_clear(&buf[--rows.n]);
    memcpy(runs, buf, rows.n * sizeof *buf);
    *n = rows.n;
    free(buf);
    return 0;
}

typedef struct id_list {
    char (*ids)[SRV_ID_LEN + 1];
    size_t n, cap;
} id_list;

static int collect_id(void *ctx, int ncols, const char *const *v)
{
    id_list *l = ctx;
    if (ncols < 1 || !v[0])
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        void *ids = realloc(l->ids, cap * sizeof *l->ids);
        if (!ids)
            return 1;
        l->ids = ids;
        l->cap = cap;
    }
    copy_text(l->ids[l->n++], sizeof *l->ids, v[0]);
    return 0;
}

int srv_store_run_sweep(srv_store *s, int64_t before_ms,
                        void (*gone)(void *ctx, const char *id), void *ctx, srv_err *err)
{
    id_list l = {0};
    srv_param p[] = {SRV_P_INT(SRV_RUN_FROZEN), SRV_P_INT(before_ms)};
    int rc = exec(s, "DELETE FROM runs WHERE state < $1 AND created < $2 RETURNING id", p, 2,
                  collect_id, &l, NULL, err, "cannot remove unfinished uploads");
    for (size_t i = 0; rc == 0 && i < l.n; i++)
        gone(ctx, l.ids[i]);
    free(l.ids);
    return rc;
}

int srv_store_run_ids(srv_store *s, int (*each)(void *ctx, const char *id), void *ctx,
                      srv_err *err)
{
    id_list l = {0};
    srv_param p[] = {SRV_P_INT(SRV_RUN_UPLOADED)};
    int rc = exec(s, "SELECT id FROM runs WHERE state >= $1", p, 1, collect_id, &l, NULL, err,
                  "cannot list the runs");
    for (size_t i = 0; rc == 0 && i < l.n; i++)
        if (each(ctx, l.ids[i]))
            break;
    free(l.ids);
    return rc;
}

/* ---- users, tokens, sessions -------------------------------------------- */

typedef struct user_row {
    srv_user *user;
    char *password_hash;
    size_t hash_size;
    char *csrf;
    size_t csrf_size;
    int found;
} user_row;

/* Rows of (id, name, admin[, password_hash or csrf]). */
static int collect_user(void *ctx, int ncols, const char *const *v)
{
    user_row *r = ctx;
    if (ncols < 3)
        return 1;
    r->user->id = num(v[0]);
    copy_text(r->user->name, sizeof r->user->name, v[1]);
    r->user->admin = (int)num(v[2]);
    if (ncols > 3 && r->password_hash)
        copy_text(r->password_hash, r->hash_size, v[3]);
    if (ncols > 3 && r->csrf)
        copy_text(r->csrf, r->csrf_size, v[3]);
    r->found = 1;
    return 1;
}

int srv_store_user_add(srv_store *s, const char *name, int admin, const char *token_hash,
                       int64_t now_ms, srv_user *out, srv_err *err)
{
    char buf[256];
    srv_dbconn *c = srv_db_acquire(s->db, buf, sizeof buf);
    if (!c) {
        set_err(err, "cannot add the user", buf);
        return -1;
    }
    user_row r = {.user = out};
    srv_param pn[] = {SRV_P_TEXT(name)};
    int rc = srv_db_exec_on(c, srv_db_engine_of(s->db)->begin_write, NULL, 0, NULL, NULL,
                            NULL, buf, sizeof buf);
    if (rc == 0)
        rc = srv_db_exec_on(c, "SELECT id, name, admin FROM users WHERE name = $1", pn, 1,
                            collect_user, &r, NULL, buf, sizeof buf);
    int exists = rc == 0 && r.found;
    if (rc == 0 && !exists) {
        srv_param p[] = {SRV_P_TEXT(name), SRV_P_INT(admin ? 1 : 0), SRV_P_INT(now_ms)};
        rc = srv_db_exec_on(c,
                            "INSERT INTO users (name, admin, created) VALUES ($1, $2, $3)"
                            " RETURNING id, name, admin",
                            p, 3, collect_user, &r, NULL, buf, sizeof buf);
    }
    if (rc == 0 && !exists) {
        srv_param p[] = {SRV_P_TEXT(token_hash), SRV_P_INT(out->id), SRV_P_INT(now_ms)};
        rc = srv_db_exec_on(c, "INSERT INTO tokens (hash, user_id, created) VALUES ($1, $2, $3)",
                            p, 3, NULL, NULL, NULL, buf, sizeof buf);
    }
    char ignored[256];
    if (rc == 0 && !exists)
        rc = srv_db_exec_on(c, "COMMIT", NULL, 0, NULL, NULL, NULL, buf, sizeof buf);
    else
        srv_db_exec_on(c, "ROLLBACK", NULL, 0, NULL, NULL, NULL, ignored, sizeof ignored);
    srv_db_release(s->db, c);
    if (rc < 0) {
        set_err(err, "cannot add the user", buf);
        return -1;
    }
    return exists ? 1 : 0;
}

int srv_store_user_by_name(srv_store *s, const char *name, srv_user *out,
                           char *password_hash, size_t hash_size, srv_err *err)
{
    user_row r = {.user = out, .password_hash = password_hash, .hash_size = hash_size};
    srv_param p[] = {SRV_P_TEXT(name)};
    if (exec(s, "SELECT id, name, admin, password_hash FROM users WHERE name = $1", p, 1,
             collect_user, &r, NULL, err, "cannot read the user") < 0)
        return -1;
    return r.found ? 0 : 1;
}

int srv_store_user_by_token(srv_store *s, const char *token_hash, srv_user *out,
                            srv_err *err)
{
    user_row r = {.user = out};
    srv_param p[] = {SRV_P_TEXT(token_hash)};
    if (exec(s,
             "SELECT u.id, u.name, u.admin FROM tokens t JOIN users u ON u.id = t.user_id"
             " WHERE t.hash = $1",
             p, 1, collect_user, &r, NULL, err, "cannot check the token") < 0)
        return -1;
    return r.found ? 0 : 1;
}

int srv_store_user_set_password(srv_store *s, int64_t user_id, const char *password_hash,
                                srv_err *err)
{
    srv_param p[] = {SRV_P_INT(user_id), SRV_P_TEXT(password_hash)};
    int64_t n = 0;
    int rc = exec(s, "UPDATE users SET password_hash = $2 WHERE id = $1", p, 2, NULL, NULL, &n,
                  err, "cannot set the password");
    return changed(rc, n);
}

int srv_store_token_add(srv_store *s, int64_t user_id, const char *token_hash, int64_t now_ms,
                        srv_err *err)
{
    srv_param p[] = {SRV_P_TEXT(token_hash), SRV_P_INT(user_id), SRV_P_INT(now_ms)};
    return exec(s, "INSERT INTO tokens (hash, user_id, created) VALUES ($1, $2, $3)", p, 3,
                NULL, NULL, NULL, err, "cannot add the token");
}

int srv_store_session_add(srv_store *s, const char *session_hash, int64_t user_id,
                          const char *csrf, int64_t expires_ms, srv_err *err)
{
    srv_param p[] = {SRV_P_TEXT(session_hash), SRV_P_INT(user_id), SRV_P_TEXT(csrf),
                     SRV_P_INT(expires_ms)};
    return exec(s,
                "INSERT INTO sessions (hash, user_id, csrf, expires) VALUES ($1, $2, $3, $4)",
                p, 4, NULL, NULL, NULL, err, "cannot open the session");
}

int srv_store_session_get(srv_store *s, const char *session_hash, int64_t now_ms,
                          srv_user *out, char *csrf, size_t csrf_size, srv_err *err)
{
    user_row r = {.user = out, .csrf = csrf, .csrf_size = csrf_size};
    srv_param p[] = {SRV_P_TEXT(session_hash), SRV_P_INT(now_ms)};
    if (exec(s,
             "SELECT u.id, u.name, u.admin, s.csrf FROM sessions s"
             " JOIN users u ON u.id = s.user_id WHERE s.hash = $1 AND s.expires > $2",
             p, 2, collect_user, &r, NULL, err, "cannot check the session") < 0)
        return -1;
    return r.found ? 0 : 1;
}

int srv_store_session_delete(srv_store *s, const char *session_hash, srv_err *err)
{
    srv_param p[] = {SRV_P_TEXT(session_hash)};
    return exec(s, "DELETE FROM sessions WHERE hash = $1", p, 1, NULL, NULL, NULL, err,
                "cannot close the session");
}
