/*
 * srv_store.c - the server's queries, written once for SQLite and PostgreSQL
 * (see srv_db.h for the dialect they share).  Each statement is a string
 * literal with numbered parameters; optional filters are parameters too
 * ('' means "any"), so no statement is ever assembled from pieces.
 */
#include "srv_store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Runs per trigram of the search index, see count_trigrams(). */
#define TRIGRAM_SLOTS 4096
#define TRIGRAM_KEPT_MS (10 * 60 * 1000)
/* A trigram of a folded q: three characters of UTF-8 and a NUL. */
#define TRI_BYTES 16

struct srv_trigram_slot {
    char tri[TRI_BYTES];
    int64_t runs;
    int64_t read_ms; /* 0: a free slot */
};

/* Runs per owner, see owner_runs(). */
#define OWNER_SLOTS 256
struct srv_owner_slot {
    char name[64];
    int64_t runs;
    int all; /* runs is all of them (else: at least that many) */
    int64_t read_ms; /* 0: a free slot */
};

typedef struct srv_trigram_counts {
    pthread_mutex_t lock;
    pthread_mutex_t reading; /* held by the one search reading counts */
    struct srv_trigram_slot slot[TRIGRAM_SLOTS];
    int64_t runs, runs_read_ms; /* runs_estimate() */
    struct srv_owner_slot owner[OWNER_SLOTS];
} srv_trigram_counts;

static unsigned trigram_slot(const char *tri)
{
    unsigned h = 0;
    for (; *tri; tri++)
        h = h * 31u + (unsigned char)*tri;
    return h % TRIGRAM_SLOTS;
}

#define RUN_LOCKS 256

struct srv_store {
    srv_db *db;
    int sqlite;
    srv_trigram_counts *trigrams; /* runs per trigram, kept a while */
    int pg_trigrams;              /* PostgreSQL: table runs_trigrams kept in step */
    int pg_owner_trigrams;        /* PostgreSQL: and runs_owner_trigrams */
    int pg_folds;                 /* PostgreSQL: LOWER() is srv_fold, on UTF-8 text */
    /* SQLite: an upload's file is placed and its row updated, and a run is
     * frozen, under its id's lock (srv_store_run_record) */
    pthread_mutex_t run_locks[RUN_LOCKS];
};

#define DB_POOL 8

/* Tables whose self-numbering keys differ between the engines.  A run's seq
 * numbers runs in the order they were created: the listing pages by it
 * (keyset: "older than seq N", never an OFFSET that reads the skipped rows),
 * and on SQLite it is the search index's rowid. */
#define RUNS_COLUMNS                                                                       \
    " id TEXT NOT NULL UNIQUE,"                                                            \
    " owner_id BIGINT REFERENCES users(id) ON DELETE SET NULL,"                           \
    " argv TEXT NOT NULL,"                                                                 \
    " vm TEXT NOT NULL,"                                                                   \
    " name TEXT,"                                                                          \
    " filename TEXT,"                                                                      \
    " created BIGINT NOT NULL,"                                                            \
    " state INTEGER NOT NULL,"                                                             \
    " has_jitlog INTEGER NOT NULL DEFAULT 0,"                                              \
    " samples BIGINT, duration DOUBLE PRECISION, period_usec BIGINT, threads INTEGER,"     \
    " mode INTEGER, interp TEXT, start_time DOUBLE PRECISION, raw_size BIGINT,"            \
    " complete INTEGER, active BIGINT)"
/* Every column but seq, for the copy of an older database's runs. */
#define RUNS_COPIED                                                                        \
    "id, owner_id, argv, vm, name, filename, created, state, has_jitlog, samples,"         \
    " duration, period_usec, threads, mode, interp, start_time, raw_size, complete"

static const char *const schema_sqlite[] = {
    "CREATE TABLE IF NOT EXISTS users ("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " admin INTEGER NOT NULL DEFAULT 0,"
    " password_hash TEXT,"
    " created BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (seq INTEGER PRIMARY KEY," RUNS_COLUMNS,
    NULL,
};
static const char *const schema_pg[] = {
    "CREATE TABLE IF NOT EXISTS users ("
    " id BIGSERIAL PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " admin INTEGER NOT NULL DEFAULT 0,"
    " password_hash TEXT,"
    " created BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (seq BIGSERIAL PRIMARY KEY," RUNS_COLUMNS,
    NULL,
};

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
    /* The listing walks this index newest first and stops after one page. */
    "CREATE INDEX IF NOT EXISTS runs_by_seq ON runs (state, seq)",
    /* The VMs of the runs (GET /api/vms) from this index alone. */
    "CREATE INDEX IF NOT EXISTS runs_by_vm ON runs (state, vm)",
    /* A user's runs (user=) newest first, without walking everyone's
     * (list_scan_user); made at start-up in a database of an earlier
     * version too. */
    "CREATE INDEX IF NOT EXISTS runs_by_owner ON runs (owner_id, state, seq)",
    "CREATE INDEX IF NOT EXISTS tokens_user ON tokens (user_id)",
    /* Failed logins and wrong tokens per client address (srv_throttle.h). */
    "CREATE TABLE IF NOT EXISTS guesses (address TEXT NOT NULL, at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS guesses_by_address ON guesses (address, at)",
    "CREATE INDEX IF NOT EXISTS guesses_by_time ON guesses (at)",
    NULL,
};

/* The search (q=, a substring of the command line or the name) through an
 * index of trigrams, so that it reads the runs that match rather than every
 * run.  SQLite: an FTS5 table with the trigram tokenizer over the runs
 * table, filled from the runs there when made (a database of an earlier
 * version) and kept in step by triggers.  It keeps case (case_sensitive 1):
 * a search looks up every text that srv_fold folds to a trigram of q
 * (list_search_sqlite_trigram), where an index folding case itself would
 * fold as SQLite's tables do, which differ from towlower().  So the index
 * holds the texts as they are, and any program may write the runs table
 * (a trigger of its own would need srv_fold). */
#define SEARCH_TOKENIZE "trigram case_sensitive 1"
static const char *const search_sqlite[] = {
    "CREATE VIRTUAL TABLE IF NOT EXISTS runs_search USING fts5(argv, name,"
    " content='runs', content_rowid='seq', tokenize='" SEARCH_TOKENIZE "')",
    "CREATE TRIGGER IF NOT EXISTS runs_search_add AFTER INSERT ON runs BEGIN"
    " INSERT INTO runs_search (rowid, argv, name) VALUES (new.seq, new.argv, new.name); END",
    "CREATE TRIGGER IF NOT EXISTS runs_search_remove AFTER DELETE ON runs BEGIN"
    " INSERT INTO runs_search (runs_search, rowid, argv, name)"
    " VALUES ('delete', old.seq, old.argv, old.name); END",
    "CREATE TRIGGER IF NOT EXISTS runs_search_change AFTER UPDATE OF argv, name ON runs BEGIN"
    " INSERT INTO runs_search (runs_search, rowid, argv, name)"
    " VALUES ('delete', old.seq, old.argv, old.name);"
    " INSERT INTO runs_search (rowid, argv, name) VALUES (new.seq, new.argv, new.name); END",
    "INSERT INTO runs_search (runs_search) VALUES ('rebuild')",
    NULL,
};
/* PostgreSQL: trigram GIN indexes (pg_trgm, shipped in Debian's postgresql
 * package) on the lower-cased texts, which its planner uses for LIKE. */
static const char *const search_pg[] = {
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS runs_argv_trgm ON runs USING gin (LOWER(argv) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS runs_name_trgm ON runs USING gin (LOWER(name) gin_trgm_ops)",
    NULL,
};

/* PostgreSQL, a search (of ASCII text, or of any when LOWER() folds as
 * srv_fold does, check_fold_pg): as on SQLite, the list of runs of the one
 * trigram of q that the fewest runs hold, read newest first (see
 * list_search_pg_trigram).  pg_trgm's GIN indexes give no order and match
 * every trigram of q at once: q=case 77 read the lists of "cas", "ase", ...
 * (every run) and sorted the 111 matches, 0.45 ms of PostgreSQL's time where
 * the newest 204 runs holding " 77" take 0.14.  So each run's distinct
 * trigrams (characters, of LOWER(argv) and LOWER(name): what the search's LIKE
 * reads) are kept in a table of their own, by a trigger, and filled from the
 * runs already there when the table is made.  A run matching q holds every
 * trigram of q, so any one trigram's list finds every match.  Made when its
 * trigger is missing, with owner_trigrams_pg (make_trigrams_pg). */
static const char *const trigrams_pg[] = {
    "CREATE TABLE IF NOT EXISTS runs_trigrams (tri TEXT NOT NULL, seq BIGINT NOT NULL,"
    " PRIMARY KEY (tri, seq))",
    "CREATE OR REPLACE FUNCTION runs_trigrams_of(t TEXT) RETURNS SETOF TEXT"
    " LANGUAGE sql IMMUTABLE AS"
    " $$ SELECT DISTINCT substr(t, i, 3) FROM generate_series(1, length(t) - 2) AS i $$",
    "DELETE FROM runs_trigrams",
    "INSERT INTO runs_trigrams (tri, seq) SELECT x.t, r.seq FROM runs r, LATERAL"
    " (SELECT runs_trigrams_of(LOWER(r.argv)) UNION"
    "  SELECT runs_trigrams_of(LOWER(r.name))) AS x(t)",
    NULL,
};

/* PostgreSQL, a search with user= (see list_search_pg_owner_trigram): an
 * owned run's trigrams again, keyed by owner, so that the owner's runs
 * holding a trigram are read without the others'.  Through runs_trigrams
 * filtered by owner, q=case 77 with user= of a third of 10,000 runs read
 * all 111 runs holding " 77" (and their owners) for 36 matches, 425
 * buffers and 0.25 ms of execution a page, the list's dearest page in
 * PostgreSQL's CPU (0.29 ms) and the last whose p99 missed 10 ms on a quiet
 * machine (10.5 ms; bench/RESULTS.md, session 13's end); through this
 * table 124 buffers, 0.09-0.11 ms.  A table of its own, not a column and
 * an index of runs_trigrams: the plan is kept whatever the values
 * (srv_db_exec_generic), and with an index of (tri, owner, seq) beside
 * the key (tri, seq) a generic plan took the key and filtered by owner
 * (its estimates of a row comparison), reading every run holding the
 * trigram, which for "ben" is every run; here the key is the only index.
 * Anonymous runs are left out (no user= reads them).
 *
 * The trigger keeps both tables, and is made again (UPDATE OF owner_id as
 * well: a run given another owner, or none when its owner's row goes, by
 * runs' ON DELETE SET NULL) with this table, in a database of an earlier
 * version too, whose runs' trigrams are copied from runs_trigrams
 * (make_trigrams_pg). */
static const char *const owner_trigrams_pg[] = {
    "CREATE TABLE IF NOT EXISTS runs_owner_trigrams (tri TEXT NOT NULL,"
    " owner_id BIGINT NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (tri, owner_id, seq))",
    /* A run's rows are found again through the keys: by its old trigrams,
     * not by seq alone (which would read the whole table). */
    "CREATE OR REPLACE FUNCTION runs_trigrams_sync() RETURNS trigger LANGUAGE plpgsql AS $$"
    " DECLARE t TEXT[];"
    " BEGIN"
    "  IF TG_OP <> 'INSERT' THEN"
    "   t := ARRAY(SELECT runs_trigrams_of(LOWER(OLD.argv)) UNION"
    "              SELECT runs_trigrams_of(LOWER(OLD.name)));"
    "   DELETE FROM runs_trigrams WHERE seq = OLD.seq AND tri = ANY (t);"
    "   IF OLD.owner_id IS NOT NULL THEN"
    "    DELETE FROM runs_owner_trigrams"
    "    WHERE owner_id = OLD.owner_id AND seq = OLD.seq AND tri = ANY (t);"
    "   END IF;"
    "  END IF;"
    "  IF TG_OP <> 'DELETE' THEN"
    "   t := ARRAY(SELECT runs_trigrams_of(LOWER(NEW.argv)) UNION"
    "              SELECT runs_trigrams_of(LOWER(NEW.name)));"
    "   INSERT INTO runs_trigrams (tri, seq) SELECT x, NEW.seq FROM unnest(t) AS x;"
    "   IF NEW.owner_id IS NOT NULL THEN"
    "    INSERT INTO runs_owner_trigrams (tri, owner_id, seq)"
    "    SELECT x, NEW.owner_id, NEW.seq FROM unnest(t) AS x;"
    "   END IF;"
    "  END IF;"
    "  RETURN NULL;"
    " END $$",
    "DROP TRIGGER IF EXISTS runs_trigrams_sync ON runs",
    "CREATE TRIGGER runs_trigrams_sync AFTER INSERT OR DELETE OR UPDATE OF argv, name, owner_id"
    " ON runs FOR EACH ROW EXECUTE PROCEDURE runs_trigrams_sync()",
    "DELETE FROM runs_owner_trigrams",
    "INSERT INTO runs_owner_trigrams (tri, owner_id, seq) SELECT t.tri, r.owner_id, t.seq"
    " FROM runs_trigrams t JOIN runs r ON r.seq = t.seq WHERE r.owner_id IS NOT NULL",
    NULL,
};

/* A database made before runs had a seq: its runs are copied, oldest first,
 * into the new table (SQLite), or given a seq in place (PostgreSQL, where the
 * copy would clash with the old table's constraint names). */
static const char *const upgrade_sqlite[] = {
    "ALTER TABLE runs RENAME TO runs_before_seq",
    "DROP INDEX IF EXISTS runs_listing",
    "CREATE TABLE runs (seq INTEGER PRIMARY KEY," RUNS_COLUMNS,
    "INSERT INTO runs (" RUNS_COPIED ") SELECT " RUNS_COPIED
    " FROM runs_before_seq ORDER BY created, id",
    "DROP TABLE runs_before_seq",
    NULL,
};
static const char *const upgrade_pg[] = {
    "DROP INDEX IF EXISTS runs_listing",
    "ALTER TABLE runs ADD COLUMN seq BIGSERIAL",
    "CREATE UNIQUE INDEX runs_seq ON runs (seq)",
    NULL,
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

/* A write to a run that is not frozen, committed without waiting for the
 * disk (srv_db_exec_unsynced; SQLite only, PostgreSQL waits as always).
 * Why nothing is lost: such a row matters only until the server stops.  A
 * SQLite server sweeps every run left unfrozen at start-up (srv_main.c,
 * recover), so after a power cut the row would be removed even if it had
 * reached the disk; a run becomes visible only by its freeze, whose commit
 * waits (synchronous=FULL) and so makes every earlier commit durable with
 * it; and the stored file is synced and renamed before its row says
 * UPLOADED, as before.  A power cut can lose only a tail of such commits,
 * whole (WAL frames are checksummed in a chain), never a frozen run or the
 * database's integrity; a killed process loses nothing (the commit is in
 * the WAL file, in the kernel's cache).  What it saves: one WAL fdatasync
 * in each of /api/runtime/new and the upload's answer (0.5-1 ms on a quiet
 * disk, 3-16 ms on a busy one). */
static int exec_unsynced(srv_store *s, const char *sql, const srv_param *p, int n,
                         int64_t *changes, srv_err *err, const char *what)
{
    char buf[256];
    if (srv_db_exec_unsynced(s->db, sql, p, n, changes, buf, sizeof buf) < 0) {
        set_err(err, what, buf);
        return -1;
    }
    return 0;
}

/* A statement that changes nothing (srv_db_read: sent again elsewhere when
 * slow); generic: its plan is the same whatever its values (srv_db.h). */
static int read_rows(srv_store *s, int generic, const char *sql, const srv_param *p, int n,
                     srv_row_fn row, void *ctx, srv_err *err, const char *what)
{
    char buf[256];
    if (srv_db_read(s->db, generic, sql, p, n, row, ctx, buf, sizeof buf) < 0) {
        set_err(err, what, buf);
        return -1;
    }
    return 0;
}

/* Runs a NULL-ended list of statements, in one transaction when asked. */
static int exec_all(srv_dbconn *c, const char *const *sql, int transaction, char *buf,
                    size_t size)
{
    int rc = 0;
    if (transaction)
        rc = srv_db_exec_on(c, "BEGIN", NULL, 0, NULL, NULL, NULL, buf, size);
    for (size_t i = 0; rc == 0 && sql[i]; i++)
        rc = srv_db_exec_on(c, sql[i], NULL, 0, NULL, NULL, NULL, buf, size);
    if (transaction) {
        char ignored[256];
        if (rc == 0)
            rc = srv_db_exec_on(c, "COMMIT", NULL, 0, NULL, NULL, NULL, buf, size);
        else
            srv_db_exec_on(c, "ROLLBACK", NULL, 0, NULL, NULL, NULL, ignored, sizeof ignored);
    }
    return rc;
}

/* Whether the runs table has its seq column (made by this version). */
static int has_run_seq(srv_dbconn *c)
{
    char ignored[256];
    return srv_db_exec_on(c, "SELECT seq FROM runs WHERE 1 = 0", NULL, 0, NULL, NULL, NULL,
                          ignored, sizeof ignored) == 0;
}

/* Whether the runs table has its active column (made since session 22: the
 * last upload's time, which the sweep of unfinished uploads keys on; NULL in
 * the rows of an earlier version, which it reads as their creation). */
static int has_run_active(srv_dbconn *c)
{
    char ignored[256];
    return srv_db_exec_on(c, "SELECT active FROM runs WHERE 1 = 0", NULL, 0, NULL, NULL, NULL,
                          ignored, sizeof ignored) == 0;
}

static int collect_text(void *ctx, int ncols, const srv_cell *v)
{
    const char *t = ncols >= 1 ? srv_cell_text(&v[0]) : NULL;
    snprintf(ctx, 64, "%s", t ? t : "");
    return 1;
}

/* An index of an earlier version, which folded case as SQLite does: made
 * again (the runs table's triggers stay, they name it). */
static const char *const search_sqlite_drop[] = {
    "DROP TABLE IF EXISTS runs_search_terms",
    "DROP TABLE runs_search",
    NULL,
};

static int make_search_sqlite(srv_dbconn *c, char *buf, size_t size)
{
    char made[64] = "";
    if (srv_db_exec_on(c, "SELECT CASE WHEN sql LIKE '%" SEARCH_TOKENIZE "%' THEN 'current'"
                          " ELSE 'earlier' END FROM sqlite_master WHERE name = 'runs_search'",
                       NULL, 0, collect_text, made, NULL, buf, size) < 0)
        return -1;
    if (strcmp(made, "earlier") == 0) {
        fprintf(stderr, "vmprof-server: the search index of runs is made again: it now keeps"
                        " case, which the search folds as PostgreSQL does\n");
        if (exec_all(c, search_sqlite_drop, 0, buf, size) < 0)
            return -1;
    }
    /* Made now, and indexed from the runs already there, in one transaction. */
    if (strcmp(made, "current") != 0 && exec_all(c, search_sqlite, 1, buf, size) < 0)
        return -1;
    /* How many runs hold each trigram, read by a search to pick the one to
     * walk (see rarest_trigram); a view of the index, no data of its own. */
    return srv_db_exec_on(c,
                          "CREATE VIRTUAL TABLE IF NOT EXISTS runs_search_terms"
                          " USING fts5vocab(runs_search, 'row')",
                          NULL, 0, NULL, NULL, NULL, buf, size);
}

/* Without pg_trgm (not installed, or the role may not create extensions)
 * the search still works, by reading the rows; the server says so. */
static void make_search_pg(srv_dbconn *c)
{
    char buf[256];
    if (exec_all(c, search_pg, 0, buf, sizeof buf) < 0)
        fprintf(stderr,
                "vmprof-server: warning: no trigram index for the search of runs (%s);"
                " q= reads every run. Install PostgreSQL's pg_trgm (Debian: the postgresql"
                " package) or run CREATE EXTENSION pg_trgm as a superuser.\n",
                buf);
}

/* The tables of trigrams and their trigger, made (and filled, in the same
 * transaction) when the trigger is missing; runs_owner_trigrams alone (and
 * the trigger again) in a database of an earlier version, whose trigger
 * fills runs_trigrams only, or one whose trigger a server of that version
 * made again (it does when it is missing).  runs is locked first, as
 * CREATE TRIGGER would: a run written meanwhile by another server, of
 * this version or an earlier one, waits for the new trigger, or was
 * committed before the tables are filled from runs.  Servers starting
 * together take their turns (srv_store_open's advisory lock), and the
 * later ones find the trigger current.  1 when the tables are there, and
 * *owned when runs_owner_trigrams is too; without them (no PL/pgSQL, say)
 * searches go through pg_trgm alone. */
static int make_trigrams_pg(srv_dbconn *c, int *owned)
{
    char buf[256], made[64] = "";
    *owned = 0;
    if (srv_db_exec_on(c,
                       "SELECT CASE WHEN pg_get_triggerdef(oid) LIKE '%owner_id%'"
                       " AND to_regclass('runs_owner_trigrams') IS NOT NULL"
                       " THEN 'current' ELSE 'earlier' END FROM pg_trigger"
                       " WHERE tgname = 'runs_trigrams_sync' AND tgrelid = 'runs'::regclass",
                       NULL, 0, collect_text, made, NULL, buf, sizeof buf) < 0) {
        fprintf(stderr,
                "vmprof-server: warning: no table of trigrams for the search of runs (%s);"
                " q= goes through pg_trgm alone.\n",
                buf);
        return 0;
    }
    if (strcmp(made, "current") == 0) {
        *owned = 1;
        return 1;
    }
    int earlier = strcmp(made, "earlier") == 0;
    if (earlier)
        fprintf(stderr, "vmprof-server: the trigrams of runs are kept by owner too (for q= with"
                        " user=): copied once from the table of trigrams\n");
    char ignored[256];
    int rc = srv_db_exec_on(c, "BEGIN", NULL, 0, NULL, NULL, NULL, buf, sizeof buf);
    if (rc == 0)
        rc = srv_db_exec_on(c, "LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE", NULL, 0, NULL,
                            NULL, NULL, buf, sizeof buf);
    if (rc == 0 && !earlier)
        rc = exec_all(c, trigrams_pg, 0, buf, sizeof buf);
    if (rc == 0)
        rc = exec_all(c, owner_trigrams_pg, 0, buf, sizeof buf);
    if (rc == 0)
        rc = srv_db_exec_on(c, "COMMIT", NULL, 0, NULL, NULL, NULL, buf, sizeof buf);
    else
        srv_db_exec_on(c, "ROLLBACK", NULL, 0, NULL, NULL, NULL, ignored, sizeof ignored);
    if (rc < 0 && earlier) {
        /* The earlier trigger and its table are still there (rolled back). */
        fprintf(stderr,
                "vmprof-server: warning: the trigrams of runs are not kept by owner (%s);"
                " q= with user= reads the trigram's runs of every owner.\n",
                buf);
        return 1;
    }
    if (rc < 0) {
        fprintf(stderr,
                "vmprof-server: warning: no table of trigrams for the search of runs (%s);"
                " q= goes through pg_trgm alone.\n",
                buf);
        return 0;
    }
    *owned = 1;
    return 1;
}

/* The search folds q with srv_fold and the texts with LOWER(), which is the
 * same towlower() only on a database of a UTF-8 locale (LC_CTYPE): with C
 * or POSIX, LOWER() folds ASCII alone and q=ÜNÏ would find no "ÜNÏ".  The
 * server says so (a database's LC_CTYPE is set when it is created).
 * Returns 1 when they fold alike and the database's text is UTF-8: then
 * runs_trigrams holds trigrams of characters as srv_fold makes them, and a
 * q beyond ASCII walks a trigram's list as an ASCII one does (in another
 * encoding substr() would cut bytes, and a trigram of three characters
 * would be none of them). */
static int check_fold_pg(srv_dbconn *c)
{
    static const char sample[] = "\xc3\x9cN\xc3\x8f \xce\xa3 \xd0\x96"; /* ÜNÏ Σ Ж */
    char want[64], got[64] = "", buf[256];
    srv_fold(sample, sizeof sample - 1, want);
    srv_param p[] = {SRV_P_TEXT(sample)};
    int read = srv_db_exec_on(c,
                              "SELECT CASE WHEN current_setting('server_encoding') = 'UTF8'"
                              " THEN LOWER($1) ELSE '' END",
                              p, 1, collect_text, got, NULL, buf, sizeof buf) == 0;
    if (read && strcmp(got, want) != 0)
        fprintf(stderr,
                "vmprof-server: warning: the database's LOWER() does not fold letters beyond"
                " ASCII as the server does (a C or POSIX LC_CTYPE?): q= will find fewer runs"
                " than on SQLite. Create the database with a UTF-8 locale"
                " (e.g. LC_CTYPE 'C.UTF-8').\n");
    return read && strcmp(got, want) == 0;
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
    s->trigrams = calloc(1, sizeof *s->trigrams);
    if (!s->trigrams) {
        set_err(err, "cannot open the database", "out of memory");
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->trigrams->lock, NULL);
    pthread_mutex_init(&s->trigrams->reading, NULL);
    for (int i = 0; i < RUN_LOCKS; i++)
        pthread_mutex_init(&s->run_locks[i], NULL);
    char buf[256];
    s->db = srv_db_open(pg ? &srv_db_pg_engine : &srv_db_sqlite_engine, database, DB_POOL,
                        buf, sizeof buf);
    if (!s->db) {
        set_err(err, "cannot open the database", buf);
        srv_store_close(s);
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
        rc = exec_all(c, pg ? schema_pg : schema_sqlite, 0, buf, sizeof buf);
    if (rc == 0 && !has_run_seq(c))
        rc = exec_all(c, pg ? upgrade_pg : upgrade_sqlite, 1, buf, sizeof buf);
    if (rc == 0 && !has_run_active(c))
        rc = srv_db_exec_on(c, "ALTER TABLE runs ADD COLUMN active BIGINT", NULL, 0, NULL, NULL,
                            NULL, buf, sizeof buf);
    if (rc == 0)
        rc = exec_all(c, schema_common, 0, buf, sizeof buf);
    if (rc == 0) {
        if (pg) {
            make_search_pg(c);
            s->pg_trigrams = make_trigrams_pg(c, &s->pg_owner_trigrams);
            s->pg_folds = check_fold_pg(c);
        } else {
            rc = make_search_sqlite(c, buf, sizeof buf);
            srv_fold_prepare(); /* (spares the first search its few ms) */
        }
    }
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
    if (s->trigrams) {
        pthread_mutex_destroy(&s->trigrams->lock);
        pthread_mutex_destroy(&s->trigrams->reading);
        free(s->trigrams);
    }
    free(s);
}

int srv_store_is_sqlite(const srv_store *s)
{
    return s->sqlite;
}

void srv_store_db_stats(srv_store *s, srv_db_stats *stats)
{
    srv_db_stats_get(s->db, stats);
}

int srv_store_retry_after(srv_store *s)
{
    return srv_db_retry_after(s->db);
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

/* A run's columns; the listing reads the first LIST_NCOLS only, what a page
 * shows (half the columns: SQLite's per-column work was a tenth of a page's
 * CPU). */
#define LIST_COLUMNS                                                                       \
    "r.id, r.owner_id, u.name, r.argv, r.vm, r.name, r.created, r.samples, r.duration,"    \
    " r.seq"
#define LIST_NCOLS 10
#define RUN_COLUMNS                                                                        \
    LIST_COLUMNS ", r.filename, r.state, r.has_jitlog, r.period_usec, r.threads, r.mode,"  \
                 " r.interp, r.start_time, r.raw_size, r.complete"
#define RUN_NCOLS 20

static long long num(const srv_cell *v)
{
    return srv_cell_int(v);
}

static char *dup_or_null(const srv_cell *v)
{
    const char *t = srv_cell_text(v);
    return t ? strdup(t) : NULL;
}

/* The text of v cut to fit size ("" for NULL); a loop, not snprintf, as a
 * page of runs copies a hundred of them. */
static void copy_text(char *dst, size_t size, const srv_cell *v)
{
    const char *t = srv_cell_text(v);
    size_t n = t ? strnlen(t, size - 1) : 0;
    memcpy(dst, t ? t : "", n);
    dst[n] = 0;
}

/* A row of RUN_COLUMNS, or of LIST_COLUMNS alone (a listed run, frozen). */
static void run_from_row(srv_run *r, const srv_cell *v, int ncols)
{
    memset(r, 0, sizeof *r);
    copy_text(r->id, sizeof r->id, &v[0]);
    r->owner_id = num(&v[1]);
    copy_text(r->owner, sizeof r->owner, &v[2]);
    r->argv = strdup(srv_cell_text(&v[3]) ? srv_cell_text(&v[3]) : "");
    copy_text(r->vm, sizeof r->vm, &v[4]);
    r->name = dup_or_null(&v[5]);
    r->created_ms = num(&v[6]);
    r->facts.samples = (uint64_t)num(&v[7]);
    r->facts.duration = srv_cell_real(&v[8]);
    r->seq = num(&v[9]);
    if (ncols < RUN_NCOLS) {
        r->state = SRV_RUN_FROZEN;
        return;
    }
    r->filename = dup_or_null(&v[10]);
    r->state = (srv_run_state)num(&v[11]);
    r->has_jitlog = (int)num(&v[12]);
    r->facts.period_usec = (uint64_t)num(&v[13]);
    r->facts.threads = (uint32_t)num(&v[14]);
    r->facts.mode = (unsigned)num(&v[15]);
    copy_text(r->facts.interp, sizeof r->facts.interp, &v[16]);
    r->facts.start = srv_cell_real(&v[17]);
    r->facts.raw_size = (uint64_t)num(&v[18]);
    r->facts.complete = (int)num(&v[19]);
}

typedef struct run_rows {
    srv_run *runs;
    size_t n, cap;
    int listing; /* rows of LIST_COLUMNS */
    int beyond;  /* a row came beyond cap (the listing asks one more than a page) */
} run_rows;

/* Drops the rows collected so far (a window that held no full page). */
static void forget_rows(run_rows *rows)
{
    for (size_t i = 0; i < rows->n; i++)
        srv_run_clear(&rows->runs[i]);
    rows->n = 0;
}

static int collect_run(void *ctx, int ncols, const srv_cell *v)
{
    run_rows *rows = ctx;
    if (ncols < (rows->listing ? LIST_NCOLS : RUN_NCOLS))
        return 1;
    if (rows->n == rows->cap) {
        rows->beyond = 1;
        return 1;
    }
    run_from_row(&rows->runs[rows->n++], v, ncols);
    return 0;
}

/* PostgreSQL list statements that read a batch of candidate runs (their
 * last parameter: how many; NULL: all of them): when the batch held no
 * page's worth of matches (and was a batch), the page is read again from
 * all of them. */
static int read_batch_then_all(srv_store *s, const char *sql, srv_param *p, int n, run_rows *rows,
                               srv_err *err)
{
    int rc = read_rows(s, 1, sql, p, n, collect_run, rows, err, "cannot list the runs");
    if (rc == 0 && !rows->beyond && p[n - 1].type != SRV_NULL) {
        forget_rows(rows);
        p[n - 1] = SRV_P_NULL;
        rc = read_rows(s, 1, sql, p, n, collect_run, rows, err, "cannot list the runs");
    }
    return rc;
}

int srv_store_run_create(srv_store *s, const char *id, int64_t owner_id, const char *argv,
                         const char *vm, int64_t created_ms, srv_err *err)
{
    srv_param p[] = {SRV_P_TEXT(id), owner_id ? SRV_P_INT(owner_id) : SRV_P_NULL,
                     SRV_P_TEXT(argv), SRV_P_TEXT(vm), SRV_P_INT(created_ms),
                     SRV_P_INT(SRV_RUN_CREATED)};
    return exec_unsynced(s,
                         "INSERT INTO runs (id, owner_id, argv, vm, created, state)"
                         " VALUES ($1, $2, $3, $4, $5, $6)",
                         p, 6, NULL, err, "cannot create the run");
}

int srv_store_run_get(srv_store *s, const char *id, srv_run *run, srv_err *err)
{
    run_rows rows = {run, 0, 1, 0, 0};
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

/* The lock of a run's id (SQLite; see srv_store_run_record). */
static pthread_mutex_t *run_lock(srv_store *s, const char *id)
{
    unsigned h = 0;
    for (; *id; id++)
        h = h * 31u + (unsigned char)*id;
    return &s->run_locks[h % RUN_LOCKS];
}

static int collect_state(void *ctx, int ncols, const srv_cell *v)
{
    *(int64_t *)ctx = ncols >= 1 ? srv_cell_int(&v[0]) : -1;
    return 1;
}

static const char set_profile_sql[] =
    "UPDATE runs SET state = $2, filename = $3, samples = $4,"
    " duration = CAST($5 AS DOUBLE PRECISION), period_usec = $6,"
    " threads = $7, mode = $8, interp = $9,"
    " start_time = CAST($10 AS DOUBLE PRECISION), raw_size = $11,"
    " complete = $12 WHERE id = $1 AND state < $13";
static const char set_jitlog_sql[] = "UPDATE runs SET has_jitlog = 1 WHERE id = $1 AND state < $2";

int srv_store_run_record(srv_store *s, const char *id, const srv_run_facts *f,
                         const char *filename, int (*place)(void *ctx, srv_err *err),
                         void *ctx, srv_err *err)
{
    char duration[64] = "", start[64] = "";
    if (f) {
        snprintf(duration, sizeof duration, "%.17g", f->duration);
        snprintf(start, sizeof start, "%.17g", f->start);
    }
    srv_param profile[] = {
        SRV_P_TEXT(id), SRV_P_INT(SRV_RUN_UPLOADED), SRV_P_TEXT(filename),
        SRV_P_INT(f ? f->samples : 0), SRV_P_TEXT(duration), SRV_P_INT(f ? f->period_usec : 0),
        SRV_P_INT(f ? f->threads : 0), SRV_P_INT(f ? f->mode : 0),
        SRV_P_TEXT(f ? f->interp : ""), SRV_P_TEXT(start), SRV_P_INT(f ? f->raw_size : 0),
        SRV_P_INT(f ? f->complete : 0), SRV_P_INT(SRV_RUN_FROZEN),
    };
    srv_param jitlog[] = {SRV_P_TEXT(id), SRV_P_INT(SRV_RUN_FROZEN)};
    const char *update = f ? set_profile_sql : set_jitlog_sql;
    srv_param *p = f ? profile : jitlog;
    int np = f ? 13 : 2;
    const char *what = f ? "cannot record the profile" : "cannot record the jit log";
    srv_param key[] = {SRV_P_TEXT(id)};
    int64_t state = -1, n = 0;
    char buf[256];
    if (s->sqlite) {
        /* Only this server writes the folder (its lock), and only a freeze
         * makes a run FROZEN, under the same lock: the state read here
         * holds until the update. */
        pthread_mutex_t *l = run_lock(s, id);
        pthread_mutex_lock(l);
        int rc = exec(s, "SELECT state FROM runs WHERE id = $1", key, 1, collect_state, &state,
                      NULL, err, what);
        if (rc == 0 && state >= 0 && state < SRV_RUN_FROZEN)
            rc = place(ctx, err) < 0 ? -2 : exec_unsynced(s, update, p, np, &n, err, what);
        pthread_mutex_unlock(l);
        if (rc < 0)
            return rc;
        return state < 0 ? 1 : state >= SRV_RUN_FROZEN ? 2 : n ? 0 : 1;
    }
    /* PostgreSQL: the row locked (FOR UPDATE) from the look at its state to
     * the commit of its update; a freeze through any server waits for it. */
    srv_dbconn *c = srv_db_acquire(s->db, buf, sizeof buf);
    if (!c) {
        set_err(err, what, buf);
        return -1;
    }
    int rc = srv_db_exec_on(c, "BEGIN", NULL, 0, NULL, NULL, NULL, buf, sizeof buf);
    if (rc == 0)
        rc = srv_db_exec_on(c, "SELECT state FROM runs WHERE id = $1 FOR UPDATE", key, 1,
                            collect_state, &state, NULL, buf, sizeof buf);
    int placed = 0;
    if (rc == 0 && state >= 0 && state < SRV_RUN_FROZEN) {
        if (place(ctx, err) < 0)
            placed = -1;
        else if ((rc = srv_db_exec_on(c, update, p, np, NULL, NULL, &n, buf, sizeof buf)) == 0)
            rc = srv_db_exec_on(c, "COMMIT", NULL, 0, NULL, NULL, NULL, buf, sizeof buf);
    }
    if (rc < 0 || placed < 0 || !n) {
        char ignored[256];
        srv_db_exec_on(c, "ROLLBACK", NULL, 0, NULL, NULL, NULL, ignored, sizeof ignored);
    }
    srv_db_release(s->db, c);
    if (rc < 0) {
        set_err(err, what, buf);
        return -1;
    }
    if (placed < 0)
        return -2;
    return state < 0 ? 1 : state >= SRV_RUN_FROZEN ? 2 : n ? 0 : 1;
}

int srv_store_run_touch(srv_store *s, const char *id, int64_t now_ms, srv_err *err)
{
    if (s->sqlite)
        return 0; /* (its start sweeps every unfinished upload, whatever its age) */
    srv_param p[] = {SRV_P_TEXT(id), SRV_P_INT(now_ms), SRV_P_INT(SRV_RUN_FROZEN)};
    int64_t n = 0;
    int rc = exec(s, "UPDATE runs SET active = $2 WHERE id = $1 AND state < $3", p, 3, NULL,
                  NULL, &n, err, "cannot mark the upload");
    return changed(rc, n);
}

int srv_store_run_freeze(srv_store *s, const char *id, srv_err *err)
{
    /* A runtime with a profile, or with a jit log alone (pypy3 -m jitlog --web).
     * (This commit waits for the disk: it is what makes a run durable, and
     * the unsynced ones before it with it; exec_unsynced.)  On SQLite under
     * the run's lock, on PostgreSQL after the row's lock: never between an
     * upload's placing of its file and its row's update. */
    srv_param p[] = {SRV_P_TEXT(id), SRV_P_INT(SRV_RUN_FROZEN), SRV_P_INT(SRV_RUN_UPLOADED),
                     SRV_P_INT(SRV_RUN_CREATED)};
    int64_t n = 0;
    pthread_mutex_t *l = s->sqlite ? run_lock(s, id) : NULL;
    if (l)
        pthread_mutex_lock(l);
    int rc = exec(s, "UPDATE runs SET state = $2 WHERE id = $1 AND (state = $3 OR"
                     " (state = $4 AND has_jitlog = 1))", p, 4, NULL, NULL, &n, err,
                  "cannot freeze the run");
    if (l)
        pthread_mutex_unlock(l);
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

/* q as a LIKE pattern: folded as LOWER() folds the texts it is matched
 * against (srv_fold, on both engines), its own % _ and \\ escaped, inside
 * %...%. */
static char *like_pattern(const char *q)
{
    size_t n = strlen(q);
    char *folded = malloc(2 * n + 1);
    if (!folded)
        return NULL;
    n = srv_fold(q, n, folded);
    char *out = malloc(2 * n + 3), *o = out;
    if (!out) {
        free(folded);
        return NULL;
    }
    *o++ = '%';
    for (const char *c = folded; *c; c++) {
        if (*c == '%' || *c == '_' || *c == '\\')
            *o++ = '\\';
        *o++ = *c;
    }
    *o++ = '%';
    *o = 0;
    free(folded);
    return out;
}

/* q as one FTS5 phrase: in double quotes, its own quotes doubled.  With the
 * trigram tokenizer a phrase matches where it occurs as a substring. */
static char *fts_phrase(const char *q)
{
    size_t n = strlen(q);
    char *out = malloc(2 * n + 3), *o = out;
    if (!out)
        return NULL;
    *o++ = '"';
    for (const char *c = q; *c; c++) {
        if (*c == '"')
            *o++ = '"';
        *o++ = *c;
    }
    *o++ = '"';
    *o = 0;
    return out;
}

/* Characters (not bytes) of UTF-8 text: a trigram index finds substrings of
 * three or more. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* The listing, newest first from a seq on.  Parameters: $1 the frozen state,
 * $2 the seq to start below, $3 the LIKE pattern or '', $4 vm or '', $5 the
 * owner's name or '', $6 the rows wanted.  Walking the (state, seq) index
 * stops after a page, whatever the depth of the page. */
static const char *const list_scan =
    "SELECT " LIST_COLUMNS " FROM runs r LEFT JOIN users u ON u.id = r.owner_id"
    " WHERE r.state = $1 AND r.seq < $2"
    " AND ($3 = '' OR LOWER(r.argv) LIKE $3 ESCAPE '\\' OR LOWER(r.name) LIKE $3 ESCAPE '\\')"
    " AND ($4 = '' OR r.vm = $4)"
    " AND ($5 = '' OR u.name = $5)"
    " ORDER BY r.seq DESC LIMIT $6";
/* The listing of one owner's runs, the same parameters but $5 the owner's
 * id (read first, by name): their runs newest first by runs_by_owner, so a
 * page of someone who owns few runs reads those, not every run.  list_scan
 * cannot (its "$5 = '' OR" keeps one plan for any user; SQLite's plans are
 * made once whatever the values, srv_db_sqlite.c), and the id as a value
 * lets PostgreSQL's planner weigh that owner's runs: given by a subquery
 * it walked every run for an owner of 10 of 10,000 (11 ms; 0.25 ms with
 * the id), and it still walks runs_by_seq for an owner of many. */
static const char *const list_scan_user =
    "SELECT " LIST_COLUMNS " FROM runs r JOIN users u ON u.id = r.owner_id"
    " WHERE r.owner_id = $5 AND r.state = $1 AND r.seq < $2"
    " AND ($3 = '' OR LOWER(r.argv) LIKE $3 ESCAPE '\\' OR LOWER(r.name) LIKE $3 ESCAPE '\\')"
    " AND ($4 = '' OR r.vm = $4)"
    " ORDER BY r.seq DESC LIMIT $6";
/* SQLite, a search of three characters or more: the matches of one trigram
 * of it, newest first, checked with LIKE ($7), the other parameters as
 * list_scan's.  The FTS5 table yields its matches newest first (its rowid
 * is the seq) and stops after a page.  It holds the texts' own trigrams,
 * case kept, so $3 is every text that folds to that trigram of the folded
 * q (srv_fold_variants), as FTS5 phrases joined by OR: the index then
 * folds nothing itself (its own folding differs from srv_fold's in 406
 * characters, U+0130 and U+017F among them) and a run is found whatever
 * case its text has.  A phrase of several trigrams makes FTS5 read the whole list of runs of each
 * (every run holds "cas" when every command line says --case), where one
 * trigram's list is walked newest first and left once a page is full: with
 * 10,000 runs, q=case 77 (111 match) took 0.79 ms as a phrase, 0.37 through
 * " 77"; q=case 1234 (1 match) 0.73 and 0.06 (sqlite3 alone). */
static const char *const list_search_sqlite_trigram =
    "SELECT " LIST_COLUMNS " FROM runs_search s JOIN runs r ON r.seq = s.rowid"
    " LEFT JOIN users u ON u.id = r.owner_id"
    " WHERE runs_search MATCH $3 AND s.rowid < $2 AND r.state = $1"
    " AND (LOWER(r.argv) LIKE $7 ESCAPE '\\' OR LOWER(r.name) LIKE $7 ESCAPE '\\')"
    " AND ($4 = '' OR r.vm = $4)"
    " AND ($5 = '' OR u.name = $5)"
    " ORDER BY s.rowid DESC LIMIT $6";

/* How many runs hold a trigram, as the index says.  Reading it costs what
 * reading the trigram's list of runs costs (0.5 ms for one every run of
 * 10,000 holds), so the counts are kept in memory a while: they only choose
 * which list to walk, and a count gone stale (runs added since, or another
 * process writing) makes a search slower, never wrong. */
/* (struct srv_trigram_counts is at the top of this file.) */

static int64_t monotonic_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000 + 1;
}

static int collect_count(void *ctx, int ncols, const srv_cell *v)
{
    if (ncols >= 1)
        *(int64_t *)ctx = num(&v[0]);
    return 1;
}

static int64_t runs_estimate(srv_store *s);

/* The kept count of tri, or -1 (never read, read too long ago, or its slot
 * taken by another trigram).  With c->lock held. */
static int64_t kept_count(const srv_trigram_counts *c, const char *tri, int64_t now)
{
    const struct srv_trigram_slot *slot = &c->slot[trigram_slot(tri)];
    return slot->read_ms && now - slot->read_ms < TRIGRAM_KEPT_MS &&
                   strcmp(slot->tri, tri) == 0
               ? slot->runs
               : -1;
}

/* PostgreSQL: the runs holding each of up to RARE_PROBES trigrams ($1.. $8,
 * NULL for none), counted up to $9, in one statement: a search's first
 * question was five or more round trips, each sent again when slow. */
#define RARE_PROBES 8
/* SQLite: the most texts of three characters a trigram of a folded q is
 * looked up as (srv_fold_variants): "kkk" is 27 (k, K and U+212A KELVIN
 * SIGN each), an ASCII word's trigram 8 at most. */
#define MAX_VARIANTS 64
/* The count of a trigram that cannot be looked up (too many variants). */
#define NO_TRIGRAM INT64_MAX
static const char *const count_trigrams_pg =
    "SELECT x.i, (SELECT COUNT(*) FROM (SELECT 1 FROM runs_trigrams WHERE tri = x.t"
    "                                   LIMIT $9) AS c)"
    " FROM (VALUES (0, $1::text), (1, $2::text), (2, $3::text), (3, $4::text),"
    "              (4, $5::text), (5, $6::text), (6, $7::text), (7, $8::text)) AS x(i, t)"
    " WHERE x.t IS NOT NULL";

static int collect_counts(void *ctx, int ncols, const srv_cell *v)
{
    int64_t *runs = ctx, i = ncols >= 2 ? num(&v[0]) : -1;
    if (i >= 0 && i < RARE_PROBES)
        runs[i] = num(&v[1]);
    return 0;
}

/* The runs holding each tri[i] (lower-cased) into runs[i]; -1 when the
 * counts do not read.  PostgreSQL counts a trigram's rows up to one more
 * than half the runs: beyond that a search takes the way of common trigrams
 * whatever the count (srv_store_run_list), and counting "cas" in all 10,000
 * runs took 3 ms.  The counts not kept are read by one search at a time
 * (c->reading): the others wait for its answer and find them kept, where
 * each used to read them all itself (16 at once under wrk, a search's first
 * second 90-145 ms at p99). */
static int count_trigrams(srv_store *s, char (*tri)[TRI_BYTES], int n, int64_t *runs)
{
    srv_trigram_counts *c = s->trigrams;
    int64_t now = monotonic_ms();
    int missing = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < n; i++)
        missing += (runs[i] = kept_count(c, tri[i], now)) < 0;
    pthread_mutex_unlock(&c->lock);
    if (!missing)
        return 0;
    pthread_mutex_lock(&c->reading);
    missing = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < n; i++)
        missing += (runs[i] = kept_count(c, tri[i], now)) < 0;
    pthread_mutex_unlock(&c->lock);
    int rc = 0;
    int64_t got[RARE_PROBES];
    srv_err err;
    if (missing && !s->sqlite) {
        srv_param p[RARE_PROBES + 1];
        for (int i = 0; i < RARE_PROBES; i++) {
            got[i] = 0; /* no row: no run holds it */
            p[i] = i < n && runs[i] < 0 ? SRV_P_TEXT(tri[i]) : SRV_P_NULL;
        }
        p[RARE_PROBES] = SRV_P_INT(runs_estimate(s) / 2 + 1);
        rc = read_rows(s, 0, count_trigrams_pg, p, RARE_PROBES + 1, collect_counts, got, &err,
                       "cannot count the trigrams");
    }
    /* SQLite: the index holds the texts' own trigrams, so a trigram of the
     * folded q is held by the runs holding any of its variants (the sum
     * counts a run holding two of them twice: an estimate, as the kept
     * counts are). */
    for (int i = 0; missing && s->sqlite && rc == 0 && i < n; i++) {
        char variants[MAX_VARIANTS * 13];
        int nv = runs[i] < 0 ? srv_fold_variants(tri[i], strlen(tri[i]), variants,
                                                 sizeof variants, MAX_VARIANTS)
                             : 0;
        got[i] = runs[i] < 0 && nv < 0 ? NO_TRIGRAM : 0;
        for (const char *v = variants; rc == 0 && nv > 0; nv--, v += strlen(v) + 1) {
            int64_t doc = 0;
            srv_param p[] = {SRV_P_TEXT(v)};
            rc = read_rows(s, 0, "SELECT doc FROM runs_search_terms WHERE term = $1", p, 1,
                           collect_count, &doc, &err, "cannot count a trigram");
            got[i] += doc;
        }
    }
    if (missing && rc == 0) {
        pthread_mutex_lock(&c->lock);
        for (int i = 0; i < n; i++) {
            if (runs[i] >= 0)
                continue;
            struct srv_trigram_slot *slot = &c->slot[trigram_slot(tri[i])];
            memcpy(slot->tri, tri[i], TRI_BYTES);
            slot->runs = runs[i] = got[i];
            slot->read_ms = now;
        }
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&c->reading);
    return rc;
}

/* About how many runs there are (the highest seq), kept as the counts are. */
static int64_t runs_estimate(srv_store *s)
{
    srv_trigram_counts *c = s->trigrams;
    int64_t now = monotonic_ms(), runs = -1;
    pthread_mutex_lock(&c->lock);
    if (c->runs_read_ms && now - c->runs_read_ms < TRIGRAM_KEPT_MS)
        runs = c->runs;
    pthread_mutex_unlock(&c->lock);
    if (runs >= 0)
        return runs;
    srv_err err;
    runs = 0;
    if (read_rows(s, 0, "SELECT MAX(seq) FROM runs", NULL, 0, collect_count, &runs, &err,
                  "cannot count the runs") < 0)
        return 0;
    pthread_mutex_lock(&c->lock);
    c->runs = runs;
    c->runs_read_ms = now;
    pthread_mutex_unlock(&c->lock);
    return runs;
}

/* The byte where the k-th character of UTF-8 text starts (its end for k
 * past the last). */
static size_t char_offset(const char *s, size_t k)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80 && k-- == 0)
            break;
    return i;
}

/* The trigram of folded (q as srv_fold folds it, three characters or more)
 * that the fewest runs hold, into out; of a long q, among RARE_PROBES spread
 * over it.  Returns its count of runs, -1 when the counts do not read or no
 * trigram of it can be looked up (SQLite: one of too many variants, or
 * bytes that are not UTF-8). */
static int64_t rarest_trigram(srv_store *s, const char *folded, char out[TRI_BYTES])
{
    size_t starts = utf8_chars(folded) - 2;
    size_t probes = starts < RARE_PROBES ? starts : RARE_PROBES;
    char tri[RARE_PROBES][TRI_BYTES];
    int64_t runs[RARE_PROBES], best = -1;
    int n = 0;
    for (size_t i = 0; i < probes; i++) {
        size_t at = probes > 1 ? i * (starts - 1) / (probes - 1) : 0;
        size_t from = char_offset(folded, at), to = char_offset(folded, at + 3);
        if (to - from >= TRI_BYTES)
            continue; /* (stray continuation bytes: no trigram of the index) */
        memcpy(tri[n], folded + from, to - from);
        tri[n][to - from] = 0;
        n++;
    }
    if (!n || count_trigrams(s, tri, n, runs) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (runs[i] != NO_TRIGRAM && (best < 0 || runs[i] < best)) {
            best = runs[i];
            memcpy(out, tri[i], TRI_BYTES);
        }
    }
    return best;
}

/* PostgreSQL, a search (see trigrams_pg) whose rarest trigram fewer than half
 * the runs hold: the runs among the newest $8 holding trigram $7 below the
 * cursor ($8 NULL: all of them), checked with LIKE, the other parameters as
 * list_search_pg's.  The seqs are read first into an array (an index-only
 * walk of runs_trigrams' key, newest first), then the runs by their key:
 * the planner has no way left that reads every run holding a common
 * trigram, nor one that sorts what pg_trgm found.  So its plan is the same
 * whatever the values, and is kept (srv_db_exec_generic): planning it anew
 * was a third of PostgreSQL's time for q=case 77. */
static const char *const list_search_pg_trigram =
    "SELECT " LIST_COLUMNS " FROM runs r LEFT JOIN users u ON u.id = r.owner_id"
    " WHERE r.seq = ANY (ARRAY(SELECT seq FROM runs_trigrams WHERE tri = $7 AND seq < $2"
    "                          ORDER BY seq DESC LIMIT $8))"
    " AND r.state = $1"
    " AND (LOWER(r.argv) LIKE $3 ESCAPE '\\' OR LOWER(r.name) LIKE $3 ESCAPE '\\')"
    " AND ($4 = '' OR r.vm = $4)"
    " AND ($5 = '' OR u.name = $5)"
    " ORDER BY r.seq DESC LIMIT $6";

/* PostgreSQL, a search with user= (its rarest trigram's list the shorter,
 * see srv_store_run_list): list_search_pg_trigram's walk, of the owner's
 * runs only (runs_owner_trigrams: $7's runs of the owner named $5), the
 * same parameters.  Through runs_trigrams and filtered by owner, q=case 77
 * with user= of a third of 10,000 runs read the 111 runs holding " 77",
 * and each one's owner, for the owner's 36.  The owner's name is $5 (the
 * runs compared with that owner's id), so no row of users is read for
 * each run: 124 buffers and 0.09-0.11 ms of execution a page, against 194
 * joined to users and 425 through runs_trigrams (0.25 ms). */
static const char *const list_search_pg_owner_trigram =
    "SELECT r.id, r.owner_id, CAST($5 AS TEXT), r.argv, r.vm, r.name, r.created,"
    " r.samples, r.duration, r.seq FROM runs r"
    " WHERE r.seq = ANY (ARRAY(SELECT seq FROM runs_owner_trigrams WHERE tri = $7"
    "                          AND owner_id = (SELECT id FROM users WHERE name = $5)"
    "                          AND seq < $2 ORDER BY seq DESC LIMIT $8))"
    " AND r.owner_id = (SELECT id FROM users WHERE name = $5)"
    " AND r.state = $1"
    " AND (LOWER(r.argv) LIKE $3 ESCAPE '\\' OR LOWER(r.name) LIKE $3 ESCAPE '\\')"
    " AND ($4 = '' OR r.vm = $4)"
    " ORDER BY r.seq DESC LIMIT $6";

/* PostgreSQL: the LIKE written without the "any" case, so that the planner
 * weighs the trigram indexes against walking the seq index (q beyond ASCII
 * on a database that folds otherwise, or its trigrams held by most runs and the newest runs below the cursor
 * holding no full page of it: see list_search_pg_window). */
static const char *const list_search_pg =
    "SELECT " LIST_COLUMNS " FROM runs r LEFT JOIN users u ON u.id = r.owner_id"
    " WHERE r.state = $1 AND r.seq < $2"
    " AND (LOWER(r.argv) LIKE $3 ESCAPE '\\' OR LOWER(r.name) LIKE $3 ESCAPE '\\')"
    " AND ($4 = '' OR r.vm = $4)"
    " AND ($5 = '' OR u.name = $5)"
    " ORDER BY r.seq DESC LIMIT $6";

/* A search matched first against the newest runs below the cursor only ($7
 * of them: a page's worth), the same parameters otherwise ($3 a LIKE
 * pattern): when (nearly) every run matches, the page is found there at the
 * cost of a page, where SQLite's FTS5 reads its trigrams' lists.  Only a
 * page's worth, since a search few runs match pays it for nothing.  Server
 * CPU per request with 10,000 runs (wrk, load 7-14): q=case 77 (111 match)
 * 1.01-1.07 ms with 200 rows, 0.85-0.94 with a page's, 0.63-0.72 with none;
 * q=bench (all match) 0.49-0.58, 0.46-0.48, 0.45-0.64. */
static const char *const list_search_window =
    "SELECT " LIST_COLUMNS " FROM runs r LEFT JOIN users u ON u.id = r.owner_id"
    " WHERE r.seq IN (SELECT seq FROM runs WHERE state = $1 AND seq < $2"
    "                 ORDER BY seq DESC LIMIT $7)"
    " AND (LOWER(r.argv) LIKE $3 ESCAPE '\\' OR LOWER(r.name) LIKE $3 ESCAPE '\\')"
    " AND ($4 = '' OR r.vm = $4)"
    " AND ($5 = '' OR u.name = $5)"
    " ORDER BY r.seq DESC LIMIT $6";

/* PostgreSQL, a search most runs hold q's rarest trigram of (q=bench): the
 * window of list_search_window, written so that its plan cannot depend on
 * the values (the seqs of the newest $7 runs below the cursor read into an
 * array by a walk of runs_by_seq, then those runs by their key, newest
 * first), so it is planned once per connection and kept
 * (srv_db_exec_generic), as list_search_pg_trigram is.  Planned for each
 * request (list_search_pg) it was the list's dearest page in PostgreSQL:
 * with 10,000 runs, 0.28-0.32 ms of backend CPU a page against 0.23-0.26
 * for the plain pages and 0.18-0.20 for q=case 77 (whose walk is kept);
 * PostgreSQL's log put parse and plan at 0.45 ms of the statement's 0.5
 * (the planner weighing pg_trgm's two GIN indexes and LIKE's selectivity
 * each time, for an execution of 0.05 ms).  Under wrk the list's p99 is PostgreSQL's backends kept from
 * a core (each a scheduling group of its own, docs/server.md), and that
 * page had the tail (p99 32 and 100 ms on a quiet machine where the others
 * stayed under 9 ms).  Kept: 0.15-0.16 ms a page, and its p50 halved. */
static const char *const list_search_pg_window =
    "SELECT " LIST_COLUMNS " FROM runs r LEFT JOIN users u ON u.id = r.owner_id"
    " WHERE r.seq = ANY (ARRAY(SELECT seq FROM runs WHERE state = $1 AND seq < $2"
    "                          ORDER BY seq DESC LIMIT $7))"
    " AND (LOWER(r.argv) LIKE $3 ESCAPE '\\' OR LOWER(r.name) LIKE $3 ESCAPE '\\')"
    " AND ($4 = '' OR r.vm = $4)"
    " AND ($5 = '' OR u.name = $5)"
    " ORDER BY r.seq DESC LIMIT $6";

/* PostgreSQL's first read of a trigram's list, in pages (see below). */
#define PG_BATCH_PAGES 4

/* PostgreSQL, the runs of the owner named $5, newest first, each checked
 * with LIKE ($3, or '' for any), the other parameters as list_scan's: the
 * seqs of the owner's newest $7 runs below the cursor ($7 NULL: all of
 * them) read into an array by a walk of runs_by_owner (its key holds the
 * seq: no run is read for it), then those runs by their key.  One
 * statement whose plan is the same whatever the values, kept
 * (srv_db_exec_generic) as list_search_pg_trigram is.  It replaces, on
 * PostgreSQL, the owner's id read first and then list_scan_user planned
 * for it: two round trips a page, both parsed and planned, which cost
 * PostgreSQL's backends 0.27-0.29 ms a page of q=bench with user= of 10
 * runs, against 0.15 for q=bench alone; under wrk on the bench's 2 cores
 * that page's p99 was 74-277 ms where the plain pages' stayed near 7.
 * The owner's id is read in the statement, and the walk is bounded by
 * two comparisons of the whole key, (owner, state, seq), between the
 * owner's first run and the cursor, with the order of that key: only
 * runs_by_owner serves them.  Written as owner_id = (that id), the
 * ordering by seq could come from runs_pkey too, and a kept plan walked
 * runs_pkey (every run read for an owner of 10, 1.5 ms of PostgreSQL's CPU
 * a page) on a database not vacuumed since its runs were written, where
 * the index-only walk looks no cheaper to the planner. */
static const char *const list_search_pg_owner =
    "SELECT " LIST_COLUMNS " FROM runs r JOIN users u ON u.id = r.owner_id"
    " WHERE r.seq = ANY (ARRAY("
    "   SELECT seq FROM runs"
    "   WHERE (owner_id, state, seq) > ((SELECT id FROM users WHERE name = $5), $1, -1)"
    "   AND (owner_id, state, seq) < ((SELECT id FROM users WHERE name = $5), $1, $2)"
    "   ORDER BY owner_id DESC, state DESC, seq DESC LIMIT $7))"
    " AND r.state = $1"
    " AND ($3 = '' OR LOWER(r.argv) LIKE $3 ESCAPE '\\' OR LOWER(r.name) LIKE $3 ESCAPE '\\')"
    " AND ($4 = '' OR r.vm = $4)"
    " ORDER BY r.seq DESC LIMIT $6";

static int ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 0;
    return 1;
}

/* The FTS5 query of every variant of a trigram of a folded q (see
 * list_search_sqlite_trigram); NULL when out of memory or it has none. */
static char *variants_query(const char *tri)
{
    char variants[MAX_VARIANTS * 13];
    int nv = srv_fold_variants(tri, strlen(tri), variants, sizeof variants, MAX_VARIANTS);
    char *out = nv > 0 ? malloc((size_t)nv * (2 * 12 + 2 + 4) + 1) : NULL;
    if (!out)
        return NULL;
    char *o = out;
    for (const char *v = variants; nv > 0; nv--, v += strlen(v) + 1) {
        if (o != out)
            o += sprintf(o, " OR ");
        char *phrase = fts_phrase(v);
        if (!phrase) {
            free(out);
            return NULL;
        }
        o += sprintf(o, "%s", phrase);
        free(phrase);
    }
    return out;
}

/* The frozen runs of the user named name, counted up to cap (cap when
 * at least that many), -1 when they do not read.  Kept in memory as the
 * trigram counts are, as they only choose the list a search walks: one
 * gone stale makes it slower, never wrong.  Counted for each page, the
 * count (and the owner's id, read for it) cost PostgreSQL's backends
 * 0.1-0.17 ms a page of q=case 77 with user= of a third of the runs,
 * whose walk is the trigram's (0.23 ms a page before). */
static int64_t owner_runs(srv_store *s, const char *name, int64_t cap)
{
    srv_trigram_counts *c = s->trigrams;
    int64_t now = monotonic_ms(), runs = -1;
    unsigned h = trigram_slot(name) % OWNER_SLOTS;
    struct srv_owner_slot *slot = &c->owner[h];
    int keep = strlen(name) < sizeof slot->name;
    pthread_mutex_lock(&c->lock);
    if (keep && slot->read_ms && now - slot->read_ms < TRIGRAM_KEPT_MS &&
        strcmp(slot->name, name) == 0 && (slot->all || slot->runs >= cap))
        runs = slot->runs < cap ? slot->runs : cap;
    pthread_mutex_unlock(&c->lock);
    if (runs >= 0)
        return runs;
    srv_err err;
    srv_param p[] = {SRV_P_TEXT(name), SRV_P_INT(SRV_RUN_FROZEN), SRV_P_INT(cap)};
    if (read_rows(s, 0,
                  "SELECT COUNT(*) FROM (SELECT 1 FROM runs r JOIN users u ON u.id = r.owner_id"
                  " WHERE u.name = $1 AND r.state = $2 LIMIT $3) AS mine",
                  p, 3, collect_count, &runs, &err, "cannot count the owner's runs") < 0)
        return -1;
    if (keep) {
        pthread_mutex_lock(&c->lock);
        snprintf(slot->name, sizeof slot->name, "%s", name);
        slot->runs = runs;
        slot->all = runs < cap;
        slot->read_ms = now;
        pthread_mutex_unlock(&c->lock);
    }
    return runs;
}

int srv_store_run_list(srv_store *s, const srv_run_query *query, srv_run *runs, size_t *n,
                       int *more, srv_err *err)
{
    int64_t size = query->page_size;
    const char *q = query->q ? query->q : "";
    int indexed = utf8_chars(q) >= 3;
    int by_user = query->user && *query->user;
    /* Without an index way (a q of fewer than three characters, or none
     * of its trigrams can be looked up), the runs newest first, each
     * checked with LIKE: every run's, or the owner's. */
    const char *sql = indexed && !s->sqlite ? list_search_pg
                      : by_user             ? list_scan_user
                                            : list_scan;
    char *pattern = like_pattern(q), *folded = malloc(2 * strlen(q) + 1);
    if (!pattern || !folded) {
        free(pattern);
        free(folded);
        set_err(err, "cannot list the runs", "out of memory");
        return -1;
    }
    srv_fold(q, strlen(q), folded);
    /* One row more than a page is asked: that it comes says a next page
     * exists (collect_run notes it without keeping it). */
    run_rows rows = {runs, 0, (size_t)size, 1, 0};
    srv_param p[] = {
        SRV_P_INT(SRV_RUN_FROZEN),
        SRV_P_INT(query->before > 0 ? query->before : INT64_MAX),
        SRV_P_TEXT(*q ? pattern : ""),
        SRV_P_TEXT(query->vm ? query->vm : ""),
        SRV_P_TEXT(query->user ? query->user : ""),
        SRV_P_INT(size + 1),
    };
    int rc = 0, done = 0;
    /* SQLite: how many runs hold q's rarest trigram chooses the way.  Every
     * way checks each run with LIKE (srv_fold on both sides), so the index
     * only narrows what is read.  PostgreSQL: through runs_trigrams
     * likewise (below), for ASCII text, and for any text when the
     * database's LOWER() folds as srv_fold does on UTF-8 (check_fold_pg);
     * else pg_trgm's indexes, through the planner.  (A q beyond ASCII with
     * user= went to the planner before, whatever the owner.) */
    int sqlite_indexed = indexed && s->sqlite;
    int pg_walk = indexed && !s->sqlite && s->pg_trigrams && (s->pg_folds || ascii(q));
    char trigram[TRI_BYTES];
    int64_t rarest = sqlite_indexed || pg_walk ? rarest_trigram(s, folded, trigram) : -1;
    /* user= as well: the shorter of two lists is walked, the owner's runs
     * (list_scan_user: runs_by_owner, each checked with LIKE) when they are
     * no more than the runs holding that trigram, else the trigram's list
     * filtered by owner, so a page never reads more than the fewer of
     * them.  Through the trigram alone, an owner of 10 runs of 10,000
     * searching q=bench (a trigram every run holds) had every run read,
     * the window failing first (SQLite: 6 ms of server CPU a page, 50
     * times a page of q=bench alone). */
    int64_t mine = -1; /* the owner's runs, when counted */
    if (by_user && rarest >= 0) {
        mine = owner_runs(s, query->user, rarest + 1);
        if (mine >= 0 && mine <= rarest) {
            sql = list_scan_user;
            sqlite_indexed = pg_walk = 0;
        }
    }
    /* Most runs hold it: the page is likely among the newest runs (the
     * window); q=bench, every run: 0.31 ms of server CPU a request this way,
     * 0.37 through the trigram's list.  Few: the window would be paid for
     * nothing (q=case 77: 0.31 ms without it, 0.46 with it). */
    if (!done && sqlite_indexed && (rarest < 0 || 2 * rarest >= runs_estimate(s))) {
        srv_param w[] = {p[0], p[1], p[2], p[3], p[4], p[5], SRV_P_INT(size + 1)};
        rc = read_rows(s, 0, list_search_window, w, 7, collect_run, &rows, err,
                       "cannot list the runs");
        done = rc < 0 || rows.beyond;
        /* Not a full page among them: the index finds the page. */
        if (!done)
            forget_rows(&rows);
    }
    /* Else through the list of q's rarest trigram. */
    if (!done && sqlite_indexed && rarest >= 0) {
        char *match = variants_query(trigram);
        srv_param t[] = {p[0], p[1], SRV_P_TEXT(match), p[3], p[4], p[5], p[2]};
        if (!match) {
            set_err(err, "cannot list the runs", "out of memory");
            rc = -1;
        } else {
            rc = read_rows(s, 0, list_search_sqlite_trigram, t, 7, collect_run, &rows, err,
                           "cannot list the runs");
        }
        free(match);
        done = 1;
    }
    /* PostgreSQL, user= whose list of the trigram is the shorter: that
     * list of the owner's runs alone (list_search_pg_owner_trigram), read
     * as below, whether few or most runs hold it: the newest
     * PG_BATCH_PAGES pages' worth first, then all of them (at once when
     * the trigram's count, which the owner's share cannot pass, says no
     * more).  Through the trigram's list of every owner instead, a page of
     * an owner of a third read three runs for each of theirs. */
    if (!done && pg_walk && rarest >= 0 && by_user && s->pg_owner_trigrams) {
        int64_t batch = PG_BATCH_PAGES * (size + 1);
        srv_param t[] = {p[0], p[1], p[2], p[3], p[4], p[5], SRV_P_TEXT(trigram),
                         rarest > batch ? SRV_P_INT(batch) : SRV_P_NULL};
        rc = read_batch_then_all(s, list_search_pg_owner_trigram, t, 8, &rows, err);
        done = 1;
    }
    /* PostgreSQL, text that fewer than half the runs hold the rarest
     * trigram of: through that trigram's list (list_search_pg_trigram),
     * first its newest PG_BATCH_PAGES pages' worth, which holds the page when
     * q matches most of the runs holding it, then, when no full page came
     * (the matches are sparse, or the last page is asked), the whole list.
     * More runs hold it than that: the planner (list_search_pg). */
    if (!done && pg_walk && rarest >= 0 && 2 * rarest < runs_estimate(s)) {
        int64_t batch = PG_BATCH_PAGES * (size + 1);
        srv_param t[] = {p[0], p[1], p[2], p[3], p[4], p[5], SRV_P_TEXT(trigram),
                         rarest > batch ? SRV_P_INT(batch) : SRV_P_NULL};
        rc = read_batch_then_all(s, list_search_pg_trigram, t, 8, &rows, err);
        done = 1;
    }
    /* Most runs hold its rarest trigram: the newest page's worth of runs
     * first (list_search_pg_window), whose plan is kept; the planner only
     * when they hold no full page of matches (a filter, or q itself, rarer
     * than its trigrams). */
    if (!done && pg_walk && rarest >= 0) {
        srv_param w[] = {p[0], p[1], p[2], p[3], p[4], p[5], SRV_P_INT(size + 1)};
        rc = read_rows(s, 1, list_search_pg_window, w, 7, collect_run, &rows, err,
                       "cannot list the runs");
        done = rc < 0 || rows.beyond;
        if (!done)
            forget_rows(&rows);
    }
    /* PostgreSQL, the owner's runs (a q of fewer than three characters, or
     * their list the shorter): in one statement (list_search_pg_owner),
     * first the newest PG_BATCH_PAGES pages' worth of them, which holds the
     * page when q matches most of them, then, when no full page came, all
     * of them; all at once when the owner has no more than that (a count
     * kept as the trigram counts are: a stale one costs a second read,
     * never a wrong page). */
    if (!done && sql == list_scan_user && !s->sqlite) {
        int64_t batch = PG_BATCH_PAGES * (size + 1);
        if (mine < 0)
            mine = owner_runs(s, query->user, batch + 1);
        srv_param o[] = {p[0], p[1], p[2], p[3], p[4], p[5],
                         mine >= 0 && mine <= batch ? SRV_P_NULL : SRV_P_INT(batch)};
        rc = read_batch_then_all(s, list_search_pg_owner, o, 7, &rows, err);
        done = 1;
    }
    /* SQLite: the owner's id, then their runs by runs_by_owner (a
     * statement more costs SQLite no round trip). */
    if (!done && sql == list_scan_user) {
        int64_t owner = -1;
        srv_param u[] = {p[4]};
        rc = read_rows(s, 0, "SELECT id FROM users WHERE name = $1", u, 1, collect_count,
                       &owner, err, "cannot list the runs");
        p[4] = SRV_P_INT(owner);
        done = rc < 0 || owner < 0; /* no such user: no runs */
    }
    if (!done)
        rc = read_rows(s, 0, sql, p, 6, collect_run, &rows, err, "cannot list the runs");
    free(folded);
    free(pattern);
    if (rc < 0) {
        forget_rows(&rows);
        return -1;
    }
    *more = rows.beyond;
    *n = rows.n;
    return 0;
}

typedef struct vm_rows {
    int (*each)(void *ctx, const char *vm, int64_t runs);
    void *ctx;
} vm_rows;

static int collect_vm(void *ctx, int ncols, const srv_cell *v)
{
    vm_rows *r = ctx;
    const char *vm = ncols < 2 ? NULL : srv_cell_text(&v[0]);
    return ncols < 2 ? 1 : r->each(r->ctx, vm ? vm : "", num(&v[1]));
}

int srv_store_vm_list(srv_store *s, int (*each)(void *ctx, const char *vm, int64_t runs),
                      void *ctx, srv_err *err)
{
    vm_rows rows = {each, ctx};
    srv_param p[] = {SRV_P_INT(SRV_RUN_FROZEN)};
    return exec(s, "SELECT vm, COUNT(*) FROM runs WHERE state = $1 GROUP BY vm ORDER BY vm", p,
                1, collect_vm, &rows, NULL, err, "cannot list the VMs");
}

typedef struct id_list {
    char (*ids)[SRV_ID_LEN + 1];
    size_t n, cap;
    int short_of_memory; /* the list lacks rows the statement gave */
} id_list;

static int collect_id(void *ctx, int ncols, const srv_cell *v)
{
    id_list *l = ctx;
    if (ncols < 1 || !srv_cell_text(&v[0]))
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        void *ids = realloc(l->ids, cap * sizeof *l->ids);
        if (!ids) {
            l->short_of_memory = 1;
            return 1;
        }
        l->ids = ids;
        l->cap = cap;
    }
    copy_text(l->ids[l->n++], sizeof *l->ids, &v[0]);
    return 0;
}

int srv_store_run_sweep(srv_store *s, int64_t before_ms,
                        void (*gone)(void *ctx, const char *id), void *ctx, srv_err *err)
{
    id_list l = {0};
    srv_param p[] = {SRV_P_INT(SRV_RUN_FROZEN), SRV_P_INT(before_ms)};
    int rc = exec(s, "DELETE FROM runs WHERE state < $1 AND COALESCE(active, created) < $2"
                     " RETURNING id", p, 2,
                  collect_id, &l, NULL, err, "cannot remove unfinished uploads");
    for (size_t i = 0; rc == 0 && i < l.n; i++)
        gone(ctx, l.ids[i]);
    free(l.ids);
    /* (the rows are gone; files of theirs that gone() missed, renamed in
     * later by an upload still running, are removed as files no run owns:
     * by that upload itself, srv_upload.c, or by a start, srv_main.c) */
    if (rc == 0 && l.short_of_memory) {
        set_err(err, "cannot remove unfinished uploads", "out of memory");
        rc = -1;
    }
    return rc;
}

int srv_store_run_ids(srv_store *s, srv_run_state min_state,
                      int (*each)(void *ctx, const char *id), void *ctx, srv_err *err)
{
    id_list l = {0};
    srv_param p[] = {SRV_P_INT(min_state)};
    int rc = exec(s, "SELECT id FROM runs WHERE state >= $1", p, 1, collect_id, &l, NULL, err,
                  "cannot list the runs");
    /* A list short of a run would have its files removed as no run's
     * (srv_main.c, recover): out of memory is an error, never a shorter
     * list. */
    for (size_t i = 0; rc == 0 && i < l.n; i++)
        if (each(ctx, l.ids[i])) {
            l.short_of_memory = 1;
            break;
        }
    free(l.ids);
    if (rc == 0 && l.short_of_memory) {
        set_err(err, "cannot list the runs", "out of memory");
        rc = -1;
    }
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
static int collect_user(void *ctx, int ncols, const srv_cell *v)
{
    user_row *r = ctx;
    if (ncols < 3)
        return 1;
    r->user->id = num(&v[0]);
    copy_text(r->user->name, sizeof r->user->name, &v[1]);
    r->user->admin = (int)num(&v[2]);
    if (ncols > 3 && r->password_hash)
        copy_text(r->password_hash, r->hash_size, &v[3]);
    if (ncols > 3 && r->csrf)
        copy_text(r->csrf, r->csrf_size, &v[3]);
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

/* ---- failed guesses ------------------------------------------------------ */

typedef struct guess_rows {
    int64_t *at;
    size_t n, max;
} guess_rows;

static int collect_guess(void *ctx, int ncols, const srv_cell *v)
{
    guess_rows *r = ctx;
    if (ncols < 1 || r->n == r->max)
        return 1;
    r->at[r->n++] = num(&v[0]);
    return 0;
}

int srv_store_guess_times(srv_store *s, const char *address, int64_t since_ms, int64_t *at,
                          size_t max, size_t *n, srv_err *err)
{
    guess_rows r = {at, 0, max};
    srv_param p[] = {SRV_P_TEXT(address), SRV_P_INT(since_ms), SRV_P_INT((int64_t)max)};
    int rc = exec(s,
                  "SELECT at FROM guesses WHERE address = $1 AND at > $2"
                  " ORDER BY at DESC LIMIT $3",
                  p, 3, collect_guess, &r, NULL, err, "cannot read the failed guesses");
    *n = r.n;
    return rc;
}

int srv_store_guess_add(srv_store *s, const char *address, int64_t now_ms,
                        int64_t forget_before_ms, int64_t keep, srv_err *err)
{
    srv_param add[] = {SRV_P_TEXT(address), SRV_P_INT(now_ms)};
    srv_param old[] = {SRV_P_INT(forget_before_ms)};
    srv_param over[] = {SRV_P_INT(keep)};
    if (exec(s, "INSERT INTO guesses (address, at) VALUES ($1, $2)", add, 2, NULL, NULL, NULL,
             err, "cannot count the failed guess") < 0 ||
        exec(s, "DELETE FROM guesses WHERE at < $1", old, 1, NULL, NULL, NULL, err,
             "cannot forget old failed guesses") < 0)
        return -1;
    /* The bound: what is older than the keep-th newest goes. */
    return exec(s,
                "DELETE FROM guesses WHERE at < (SELECT at FROM guesses"
                " ORDER BY at DESC LIMIT 1 OFFSET $1)",
                over, 1, NULL, NULL, NULL, err, "cannot forget old failed guesses");
}

int srv_store_guess_clear(srv_store *s, const char *address, srv_err *err)
{
    srv_param p[] = {SRV_P_TEXT(address)};
    return exec(s, "DELETE FROM guesses WHERE address = $1", p, 1, NULL, NULL, NULL, err,
                "cannot forget the failed guesses");
}
