/*
 * srv_store.h - what the server keeps in its database: runs, users, their API
 * tokens and browser sessions.  Every query is here, written once for both
 * engines of srv_db.h (SQLite by default, PostgreSQL with a postgresql:// URL).
 *
 * A run goes through three states: created (POST /api/runtime/new), with its
 * profile (the upload arrived, was decoded, and its raw bytes are stored),
 * frozen (the client said it is complete).  Only frozen runs are ever listed
 * or served; the others are removed at start-up (SQLite: every one, as no
 * other process can be uploading; PostgreSQL: those older than a day, as
 * other servers may be mid-upload).
 *
 * Functions return 0 on success, 1 when the thing asked for does not exist
 * (or, for additions, already exists), -1 on a database error (err set).
 */
#ifndef SRV_STORE_H
#define SRV_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "srv_db.h"

#define SRV_ID_LEN 16      /* a run id: hex digits of 8 random bytes */
#define SRV_NAME_MAX 64    /* a user name */
#define SRV_HASH_HEX 64    /* a token or session hash, hex */

typedef struct srv_store srv_store;

typedef struct srv_err {
    char message[256];
} srv_err;

typedef enum srv_run_state {
    SRV_RUN_CREATED = 0,
    SRV_RUN_UPLOADED = 1,
    SRV_RUN_FROZEN = 2,
} srv_run_state;

/* The modes of a run (srv_run_facts.mode), as stored. */
enum srv_mode {
    SRV_MODE_MEMORY = 0x01,
    SRV_MODE_LINES = 0x02,
    SRV_MODE_NATIVE = 0x04,
    SRV_MODE_RPYTHON = 0x08,
    SRV_MODE_REAL_TIME = 0x10,
};

/* What is known of a profile once it has been decoded, kept with its run so
 * that listing and describing runs never needs the profile itself. */
typedef struct srv_run_facts {
    uint64_t samples;
    double duration;       /* seconds */
    uint64_t period_usec;
    uint32_t threads;
    unsigned mode;         /* SRV_MODE_* */
    char interp[32];       /* as the file says: "cpython", "pypy", "" */
    double start;          /* seconds since the epoch, 0 when unknown */
    uint64_t raw_size;     /* bytes uploaded */
    int complete;          /* the profile's trailer was seen */
} srv_run_facts;

typedef struct srv_run {
    char id[SRV_ID_LEN + 1];
    int64_t seq;           /* runs numbered in the order created (the listing's key) */
    int64_t owner_id;      /* 0: uploaded anonymously */
    char owner[SRV_NAME_MAX + 1];
    char *argv;            /* the command line (malloc'd) */
    char vm[32];           /* "CPython", "PyPy", as the client said */
    char *name;            /* a label given later, or NULL (malloc'd) */
    char *filename;        /* the upload's filename header, a label (malloc'd) */
    int64_t created_ms;    /* when POST /api/runtime/new arrived */
    srv_run_state state;
    int has_jitlog;
    srv_run_facts facts;
} srv_run;

void srv_run_clear(srv_run *run);

typedef struct srv_user {
    int64_t id;            /* 0: nobody (anonymous) */
    char name[SRV_NAME_MAX + 1];
    int admin;
} srv_user;

/* Opens the store: a postgresql:// (or postgres://) URL, else the SQLite file
 * path; creates the schema when missing. */
srv_store *srv_store_open(const char *database, srv_err *err);
void srv_store_close(srv_store *s);
/* What the database's pool did (srv_db.h: reads sent again, stuck and
 * dead sessions closed, failed connects, requests refused while the
 * database was down), said on stderr when the server stops; and the
 * seconds a client told 503 should wait (srv_db_retry_after). */
void srv_store_db_stats(srv_store *s, srv_db_stats *stats);
int srv_store_retry_after(srv_store *s);
int srv_store_is_sqlite(const srv_store *s);
/* A cheap round trip, for /api/health. */
int srv_store_ping(srv_store *s, srv_err *err);

/* ---- runs ---- */

int srv_store_run_create(srv_store *s, const char *id, int64_t owner_id, const char *argv,
                         const char *vm, int64_t created_ms, srv_err *err);
/* Fills *run (free with srv_run_clear); 1 when there is no such run. */
int srv_store_run_get(srv_store *s, const char *id, srv_run *run, srv_err *err);
/* An upload's file is complete: place(ctx, err) puts it into runs/, and the
 * row records it (facts: state UPLOADED with its facts and filename label;
 * NULL: a jit log, has_jitlog), as one step that no freeze comes between:
 * the run's state is read, and the file placed and the row updated only if
 * it is not frozen (SQLite: under the run's lock, which a freeze takes too;
 * PostgreSQL: with the row locked, FOR UPDATE, until the commit).  So a
 * frozen run's files never change, and an upload that loses to a freeze
 * changes nothing.  0 recorded; 1 no such run (removed meanwhile); 2 the
 * run is frozen (place was not called); -1 a database error; -2 place
 * failed (err is place's). */
int srv_store_run_record(srv_store *s, const char *id, const srv_run_facts *facts,
                         const char *filename, int (*place)(void *ctx, srv_err *err),
                         void *ctx, srv_err *err);
/* An upload to a run not frozen is active now (PostgreSQL: the row's
 * active time, which the sweep of unfinished uploads keys on; SQLite sweeps
 * every one at start, whatever its time: nothing to do).  1 when the run is
 * frozen or gone. */
int srv_store_run_touch(srv_store *s, const char *id, int64_t now_ms, srv_err *err);
/* UPLOADED (or CREATED with a jit log) -> FROZEN; 1 otherwise. */
int srv_store_run_freeze(srv_store *s, const char *id, srv_err *err);
int srv_store_run_rename(srv_store *s, const char *id, const char *name, srv_err *err);
int srv_store_run_delete(srv_store *s, const char *id, srv_err *err);

typedef struct srv_run_query {
    const char *q;         /* substring of the command line (or name), or NULL */
    const char *vm;        /* exact VM, or NULL */
    const char *user;      /* owner's name, or NULL */
    int64_t before;        /* only runs with a smaller seq; 0: from the newest */
    int64_t page_size;
} srv_run_query;

/* Frozen runs, newest first.  Fills runs[0..*n) (at most page_size; free each
 * with srv_run_clear) with what a page shows: id, seq, owner, argv, name, vm,
 * created, samples and duration (the rest is left 0 or NULL), and *more when
 * a further page exists (it starts below the last run's seq).  A q of three or more characters is looked up in a
 * trigram index (SQLite FTS5, PostgreSQL pg_trgm), shorter ones are matched
 * row by row. */
int srv_store_run_list(srv_store *s, const srv_run_query *query, srv_run *runs, size_t *n,
                       int *more, srv_err *err);

/* Calls each() with every VM of the frozen runs ("CPython", "PyPy", as the
 * clients said) and its count of runs, by name; a non-zero return stops. */
int srv_store_vm_list(srv_store *s, int (*each)(void *ctx, const char *vm, int64_t runs),
                      void *ctx, srv_err *err);

/* Removes the runs left unfrozen whose last upload began (or, without one,
 * which were created) before before_ms; calls gone()
 * with each id removed, so that its files go too. */
int srv_store_run_sweep(srv_store *s, int64_t before_ms,
                        void (*gone)(void *ctx, const char *id), void *ctx, srv_err *err);
/* Calls each() with the id of every run in state min_state or later, for
 * the start-up check of the files against the database (SQLite: UPLOADED,
 * the runs that have stored files once the unfrozen ones are swept;
 * PostgreSQL: CREATED, every row, since other servers' uploads in progress
 * own files too); each() returns non-zero when it cannot keep the id (out
 * of memory): -1 then, as when the list cannot be read whole. */
int srv_store_run_ids(srv_store *s, srv_run_state min_state,
                      int (*each)(void *ctx, const char *id), void *ctx, srv_err *err);

/* ---- users, tokens, sessions (hashes are hex, made by srv_auth.c) ---- */

/* 1 when the name is taken. */
int srv_store_user_add(srv_store *s, const char *name, int admin, const char *token_hash,
                       int64_t now_ms, srv_user *out, srv_err *err);
int srv_store_user_by_name(srv_store *s, const char *name, srv_user *out,
                           char *password_hash, size_t hash_size, srv_err *err);
int srv_store_user_by_token(srv_store *s, const char *token_hash, srv_user *out,
                            srv_err *err);
int srv_store_user_set_password(srv_store *s, int64_t user_id, const char *password_hash,
                                srv_err *err);
int srv_store_token_add(srv_store *s, int64_t user_id, const char *token_hash,
                        int64_t now_ms, srv_err *err);

int srv_store_session_add(srv_store *s, const char *session_hash, int64_t user_id,
                          const char *csrf, int64_t expires_ms, srv_err *err);
/* 1 when there is no such session or it expired. */
int srv_store_session_get(srv_store *s, const char *session_hash, int64_t now_ms,
                          srv_user *out, char *csrf, size_t csrf_size, srv_err *err);
int srv_store_session_delete(srv_store *s, const char *session_hash, srv_err *err);

/* ---- failed guesses (the counts of srv_throttle.h), shared by every server
 * on the database; an address is text, times are ms of the wall clock ---- */

/* The times of address's failures after since_ms, newest first, at most max
 * of them, into at[0..*n). */
int srv_store_guess_times(srv_store *s, const char *address, int64_t since_ms, int64_t *at,
                          size_t max, size_t *n, srv_err *err);
/* A failure of address at now_ms; the failures before forget_before_ms, and
 * all but the newest keep of them, are removed. */
int srv_store_guess_add(srv_store *s, const char *address, int64_t now_ms,
                        int64_t forget_before_ms, int64_t keep, srv_err *err);
/* Forgets address's failures. */
int srv_store_guess_clear(srv_store *s, const char *address, srv_err *err);

#endif /* SRV_STORE_H */
