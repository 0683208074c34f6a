/*
 * srv_api.c - the JSON API over stored runs and accounts:
 *
 *   GET    /api/health            200 once the server and its database answer
 *   GET    /api/runs              frozen runs, newest first (?q= &vm= &user= &page=)
 *   GET    /api/runs/ID           one run's facts
 *   PATCH  /api/runs/ID           {"name": ...}: rename (owner or admin)
 *   DELETE /api/runs/ID           (owner or admin)
 *   GET    /api/runs/ID/raw       the profile exactly as uploaded
 *   POST   /api/login, /api/logout, GET /api/me, POST /api/tokens
 *
 * The views of a run's profile (tree, functions, ...) are in srv_query.c.
 * Documented with an example per endpoint in docs/server.md.
 */
#include <limits.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "srv_api.h"
#include "srv_blob.h"
#include "srv_cache.h"
#include "srv_http.h"
#include "srv_json.h"
#include "srv_memo.h"
#include "vmprof.h"

#define PAGE_SIZE 50

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* seconds since the epoch as "2026-11-30T01:39:20.075Z" into out[25]; 0
 * when unknown (not after the epoch).  Digits placed by hand: a page of runs
 * writes fifty of them. */
static int iso_text(double seconds, char out[25])
{
    if (seconds <= 0)
        return 0;
    time_t t = (time_t)seconds;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999)
        return 0;
    int ms = (int)((seconds - (double)t) * 1000);
    int fields[7] = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ms};
    static const int widths[7] = {4, 2, 2, 2, 2, 2, 3};
    static const char after[7] = {'-', '-', 'T', ':', ':', '.', 'Z'};
    char *o = out;
    for (int f = 0; f < 7; f++) {
        for (int i = widths[f] - 1; i >= 0; i--) {
            o[i] = (char)('0' + fields[f] % 10);
            fields[f] /= 10;
        }
        o += widths[f];
        *o++ = after[f];
    }
    *o = 0;
    return 1;
}

static json_t *iso_time(double seconds)
{
    char text[25];
    return iso_text(seconds, text) ? json_string(text) : json_null();
}

static void iso_time_json(srv_jbuf *b, double seconds)
{
    char text[25];
    if (iso_text(seconds, text))
        srv_jbuf_string(b, text);
    else
        srv_jbuf_lit(b, "null");
}

/* The fields a run has in the list; GET /api/runs/ID adds its own. */
static void run_list_item_text(srv_jbuf *b, const srv_run *r)
{
    srv_jbuf_lit(b, "{\"id\":");
    srv_jbuf_string(b, r->id);
    srv_jbuf_lit(b, ",\"argv\":");
    srv_jbuf_string(b, r->argv ? r->argv : "");
    srv_jbuf_lit(b, ",\"name\":");
    srv_jbuf_string(b, r->name);
    srv_jbuf_lit(b, ",\"vm\":");
    srv_jbuf_string(b, r->vm);
    srv_jbuf_lit(b, ",\"owner\":");
    srv_jbuf_string(b, r->owner_id ? r->owner : NULL);
    srv_jbuf_lit(b, ",\"created\":");
    iso_time_json(b, (double)r->created_ms / 1000.0);
    srv_jbuf_lit(b, ",\"samples\":");
    srv_jbuf_int(b, (int64_t)r->facts.samples);
    srv_jbuf_lit(b, ",\"duration\":");
    srv_jbuf_real(b, r->facts.duration);
    srv_jbuf_lit(b, "}");
}

json_t *srv_run_list_item(const srv_run *r)
{
    srv_jbuf b = {0};
    run_list_item_text(&b, r);
    size_t len;
    char *text = srv_jbuf_take(&b, &len);
    json_t *o = text ? json_loadb(text, len, 0, NULL) : NULL;
    free(text);
    return o ? o : json_object();
}

static json_t *modes_of(unsigned mode)
{
    json_t *a = json_array();
    if (mode & SRV_MODE_MEMORY)
        json_array_append_new(a, json_string("memory"));
    if (mode & SRV_MODE_LINES)
        json_array_append_new(a, json_string("lines"));
    if (mode & SRV_MODE_NATIVE)
        json_array_append_new(a, json_string("native"));
    if (mode & SRV_MODE_REAL_TIME)
        json_array_append_new(a, json_string("real-time"));
    if (mode & SRV_MODE_RPYTHON)
        json_array_append_new(a, json_string("rpython"));
    return a;
}

int srv_valid_run_id(const char *id)
{
    if (strlen(id) != SRV_ID_LEN)
        return 0;
    for (const char *c = id; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return 0;
    return 1;
}

int srv_load_run(srv_request *req, const char *id, srv_run *run)
{
    srv_err err = {{0}};
    int rc = srv_valid_run_id(id) ? srv_store_run_get(req->server->store, id, run, &err) : 1;
    if (rc == 0 && run->state != SRV_RUN_FROZEN) {
        srv_run_clear(run);
        rc = 1; /* an upload in progress is nobody's business yet */
    }
    if (rc < 0)
        srv_reply_error(req, 503, "%s", err.message);
    else if (rc > 0)
        srv_reply_error(req, 404, "no run %s", id);
    return rc == 0 ? 0 : -1;
}

/* ---- health ------------------------------------------------------------------------ */

static void health(srv_request *req)
{
    srv_err err = {{0}};
    if (srv_store_ping(req->server->store, &err) < 0) {
        srv_reply_error(req, 503, "%s", err.message);
        return;
    }
    size_t kept;
    uint64_t reused;
    srv_memo_stats(req->server->memo, &kept, &reused);
    srv_reply_json(req, 200, json_pack("{s:s, s:{s:I, s:I}}", "status", "ok", "answers", "kept",
                                       (json_int_t)kept, "reused", (json_int_t)reused));
}

/* ---- runs -------------------------------------------------------------------------- */

/* A page is named by the cursor the page before it gave as "next":
 * "before-SEQ", the runs older than that one.  No page number: the listing
 * never skips rows to reach a page. */
#define CURSOR_PREFIX "before-"

static void list_runs(srv_request *req)
{
    const char *page_arg = srv_arg(req, "page");
    long long before = 0;
    if (page_arg && *page_arg && strcmp(page_arg, "1") != 0) {
        char *end = NULL;
        size_t plen = strlen(CURSOR_PREFIX);
        if (strncmp(page_arg, CURSOR_PREFIX, plen) == 0 && page_arg[plen] >= '0' &&
            page_arg[plen] <= '9')
            before = strtoll(page_arg + plen, &end, 10);
        if (!end || *end || before < 1 || before == LLONG_MAX) {
            srv_reply_error(req, 400,
                            "page must be the \"next\" of an earlier answer (" CURSOR_PREFIX
                            "N), or 1 for the newest runs");
            return;
        }
    }
    srv_run_query q = {
        .q = srv_arg(req, "q"),
        .vm = srv_arg(req, "vm"),
        .user = srv_arg(req, "user"),
        .before = before,
        .page_size = PAGE_SIZE,
    };
    /* Every stored text is UTF-8 (jansson takes nothing else), so other
     * bytes can match nothing; PostgreSQL would refuse them as an error of
     * the database, which a client must not be told to retry. */
    const char *const texts[][2] = {{"q", q.q}, {"vm", q.vm}, {"user", q.user}};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        if (texts[i][1] && !srv_json_utf8(texts[i][1])) {
            srv_reply_error(req, 400, "%s must be UTF-8 text", texts[i][0]);
            return;
        }
    }
    if (q.user && strcmp(q.user, "me") == 0) {
        if (!req->who.user.id) {
            /* Nobody's runs: an anonymous caller owns none. */
            srv_reply_json(req, 200, json_pack("{s:[], s:n}", "runs", "next"));
            return;
        }
        q.user = req->who.user.name;
    }
    srv_run runs[PAGE_SIZE];
    size_t n = 0;
    int more = 0;
    srv_err err = {{0}};
    if (srv_store_run_list(req->server->store, &q, runs, &n, &more, &err) < 0) {
        srv_reply_error(req, 503, "%s", err.message);
        return;
    }
    /* The page is written as text, run by run (see srv_json.h). */
    int64_t last_seq = n ? runs[n - 1].seq : 0;
    srv_jbuf b = {0};
    srv_jbuf_lit(&b, "{\"runs\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            srv_jbuf_lit(&b, ",");
        run_list_item_text(&b, &runs[i]);
        srv_run_clear(&runs[i]);
    }
    srv_jbuf_lit(&b, "],\"next\":");
    if (more) {
        srv_jbuf_lit(&b, "\"" CURSOR_PREFIX);
        srv_jbuf_int(&b, last_seq);
        srv_jbuf_lit(&b, "\"");
    } else {
        srv_jbuf_lit(&b, "null");
    }
    srv_jbuf_lit(&b, "}");
    size_t len;
    char *text = srv_jbuf_take(&b, &len);
    if (!text) {
        srv_reply_error(req, 500, "out of memory");
        return;
    }
    srv_reply_json_text(req, 200, text, len);
}

static int add_vm(void *ctx, const char *vm, int64_t runs)
{
    json_array_append_new(ctx, json_pack("{s:o, s:I}", "vm", srv_json_text(vm), "runs",
                                         (json_int_t)runs));
    return 0;
}

/* The VMs runs were uploaded from, for a filter's choices. */
static void list_vms(srv_request *req)
{
    json_t *vms = json_array();
    srv_err err = {{0}};
    if (srv_store_vm_list(req->server->store, add_vm, vms, &err) < 0) {
        json_decref(vms);
        srv_reply_error(req, 503, "%s", err.message);
        return;
    }
    srv_reply_json(req, 200, json_pack("{s:o}", "vms", vms));
}

static json_t *threads_of(const vmp_profile *p)
{
    json_t *a = json_array();
    for (size_t i = 0; i < vmp_profile_thread_count(p); i++)
        json_array_append_new(a, json_pack("{s:i, s:I, s:I}", "index", (int)i, "id",
                                           (json_int_t)vmp_profile_thread_id(p, i), "samples",
                                           (json_int_t)vmp_profile_thread_samples(p, i)));
    return a;
}

static void get_run(srv_request *req)
{
    srv_run run;
    if (srv_load_run(req, req->args[0], &run) < 0)
        return;
    json_t *o = srv_run_list_item(&run);
    const srv_run_facts *f = &run.facts;
    json_object_set_new(o, "interpreter", json_string(f->interp));
    json_object_set_new(o, "start", iso_time(f->start));
    json_object_set_new(o, "period", json_real((double)f->period_usec / 1e6));
    json_object_set_new(o, "clock", json_string(f->mode & SRV_MODE_REAL_TIME ? "wall" : "cpu"));
    json_object_set_new(o, "modes", modes_of(f->mode));
    json_object_set_new(o, "thread_count", json_integer(f->threads));
    json_object_set_new(o, "complete", json_boolean(f->complete));
    json_object_set_new(o, "filename", run.filename ? srv_json_text(run.filename) : json_null());
    json_object_set_new(o, "raw_size", json_integer((json_int_t)f->raw_size));
    json_object_set_new(o, "has_jitlog", json_boolean(run.has_jitlog));
    json_object_set_new(o, "may_change", json_boolean(srv_auth_may_change(&req->who, &run)));
    srv_err err = {{0}};
    const vmp_profile *p = srv_cache_get(req->server->cache, run.id, &err);
    if (p) {
        vmp_facts facts;
        vmp_profile_facts(p, &facts);
        json_object_set_new(o, "threads", threads_of(p));
        json_object_set_new(o, "max_rss_kib", facts.memory ? json_integer((json_int_t)
                                                             facts.max_rss_kib) : json_null());
        json_object_set_new(o, "exports", json_pack("[s, s, s, s, s]", "collapsed",
                                                     "speedscope", "pprof", "firefox", "html"));
        srv_cache_release(req->server->cache, p);
    } else {
        json_object_set_new(o, "threads", json_array());
        json_object_set_new(o, "problem", json_string(err.message));
    }
    srv_run_clear(&run);
    srv_reply_json(req, 200, o);
}

/* Loads a run the caller may change, or replies why not. */
static int load_changeable(srv_request *req, srv_run *run)
{
    if (srv_load_run(req, req->args[0], run) < 0)
        return -1;
    if (!srv_auth_may_change(&req->who, run)) {
        if (!req->who.user.id)
            srv_reply_error(req, 401, "log in or give your API token to change a run");
        else
            srv_reply_error(req, 403, "run %s is %s's: only its owner or an admin may change it",
                            run->id, run->owner_id ? run->owner : "anonymous");
        srv_run_clear(run);
        return -1;
    }
    if (!srv_check_csrf(req)) {
        srv_run_clear(run);
        return -1;
    }
    return 0;
}

static void delete_run(srv_request *req)
{
    srv_run run;
    if (load_changeable(req, &run) < 0)
        return;
    srv_server *s = req->server;
    srv_err err = {{0}};
    int rc = srv_store_run_delete(s->store, run.id, &err);
    if (rc < 0) {
        srv_reply_error(req, 503, "%s", err.message);
    } else {
        /* The row goes first: a crash now leaves files the start-up sweep
         * removes, never a listed run without its files. */
        srv_blob_remove(s->data_dir, run.id);
        srv_cache_drop(s->cache, run.id);
        srv_memo_forget_run(s->memo, run.id);
        srv_cache_drop(s->jitlogs, run.id);
        srv_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
    }
    srv_run_clear(&run);
}

static void rename_run(srv_request *req)
{
    srv_run run;
    if (load_changeable(req, &run) < 0)
        return;
    json_t *body = json_loadb(req->body ? req->body : "", req->body_len, 0, NULL);
    json_t *name = json_object_get(body, "name");
    if (!json_is_string(name) && !json_is_null(name)) {
        srv_reply_error(req, 400, "the body must be {\"name\": \"...\"} (or null to clear it)");
    } else if (json_is_string(name) && json_string_length(name) > 1000) {
        srv_reply_error(req, 400, "a name is at most 1000 bytes");
    } else {
        srv_err err = {{0}};
        if (srv_store_run_rename(req->server->store, run.id, json_string_value(name), &err) < 0)
            srv_reply_error(req, 503, "%s", err.message);
        else
            srv_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
    }
    json_decref(body);
    srv_run_clear(&run);
}

static ssize_t read_blob(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    ssize_t n = srv_blob_read(cls, buf, max);
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0) {
        /* (the answer's status and length are sent: the download stops
         * short, and whoever runs the server learns why) */
        fprintf(stderr, "vmprof-server: a download of a raw profile stopped short: %s\n",
                srv_blob_reader_error(cls));
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    return n;
}

static void close_blob(void *cls)
{
    srv_blob_close(cls);
}

static void raw_run(srv_request *req)
{
    srv_run run;
    if (srv_load_run(req, req->args[0], &run) < 0)
        return;
    srv_blob_reader *r = srv_blob_open(req->server->data_dir, run.id, SRV_BLOB_PROFILE);
    if (!r) {
        srv_reply_error(req, 500, "the profile file of run %s is missing (no runs/%s.prof* under "
                                  "the data folder): restore it from a backup, or delete the "
                                  "run and upload its profile again", run.id, run.id);
        srv_run_clear(&run);
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(
        run.facts.raw_size, 256 * 1024, read_blob, r, close_blob);
    if (!resp) {
        srv_blob_close(r);
        srv_reply_error(req, 500, "out of memory");
        srv_run_clear(&run);
        return;
    }
    char disposition[64];
    snprintf(disposition, sizeof disposition, "attachment; filename=\"%s.prof\"", run.id);
    MHD_add_response_header(resp, "Content-Disposition", disposition);
    srv_reply_response(req, 200, resp, "application/octet-stream");
    srv_run_clear(&run);
}

/* ---- accounts ------------------------------------------------------------------------ */

static json_t *me_json(const srv_identity *who)
{
    if (!who->user.id)
        return json_pack("{s:n}", "user", NULL);
    json_t *o = json_pack("{s:s, s:b}", "user", who->user.name, "admin", who->user.admin);
    if (who->by_session)
        json_object_set_new(o, "csrf", json_string(who->csrf));
    return o;
}

static void me(srv_request *req)
{
    srv_reply_json(req, 200, me_json(&req->who));
}

static void login(srv_request *req)
{
    json_t *body = json_loadb(req->body ? req->body : "", req->body_len, 0, NULL);
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *password = json_string_value(json_object_get(body, "password"));
    if (!name || !password) {
        json_decref(body);
        srv_reply_error(req, 400, "the body must be {\"name\": ..., \"password\": ...}");
        return;
    }
    srv_server *s = req->server;
    /* Refused before the password is looked at: guessing is slowed whether
     * or not the guess would have been right. */
    if (srv_guess_refused(req)) {
        json_decref(body);
        return;
    }
    srv_identity who = {0};
    char stored[256] = "";
    srv_err err = {{0}};
    int rc = srv_store_user_by_name(s->store, name, &who.user, stored, sizeof stored, &err);
    int ok = rc == 0 && srv_auth_check_password(stored, password);
    json_decref(body);
    if (rc < 0) {
        srv_reply_error(req, 503, "%s", err.message);
        return;
    }
    if (!ok) {
        srv_guess_failed(req);
        srv_reply_error(req, 401, "wrong user name or password");
        return;
    }
    srv_guess_passed(req);
    char secret[SRV_TOKEN_HEX + 1];
    srv_auth_new_secret(secret);
    srv_auth_new_secret(who.csrf);
    srv_auth_hash_secret(secret, who.session_hash);
    who.by_session = 1;
    if (srv_store_session_add(s->store, who.session_hash, who.user.id, who.csrf,
                              now_ms() + (int64_t)SRV_SESSION_SECONDS * 1000, &err) < 0) {
        srv_reply_error(req, 503, "%s", err.message);
        return;
    }
    srv_reply_json(req, 200, me_json(&who));
    /* Behind a TLS proxy (docs/server.md) the cookie must never travel in clear. */
    const char *proto = srv_header(req, "X-Forwarded-Proto");
    int tls = proto && strcasecmp(proto, "https") == 0;
    char cookie[256];
    snprintf(cookie, sizeof cookie, "%s=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d%s",
             SRV_SESSION_COOKIE, secret, SRV_SESSION_SECONDS, tls ? "; Secure" : "");
    MHD_add_response_header(req->response, MHD_HTTP_HEADER_SET_COOKIE, cookie);
}

static void logout(srv_request *req)
{
    if (req->who.by_session) {
        if (!srv_check_csrf(req))
            return;
        srv_err err = {{0}};
        srv_store_session_delete(req->server->store, req->who.session_hash, &err);
    }
    srv_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
    char cookie[128];
    snprintf(cookie, sizeof cookie, "%s=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
             SRV_SESSION_COOKIE);
    MHD_add_response_header(req->response, MHD_HTTP_HEADER_SET_COOKIE, cookie);
}

static void new_token(srv_request *req)
{
    if (!req->who.user.id) {
        srv_reply_error(req, 401, "log in to make an API token");
        return;
    }
    if (!srv_check_csrf(req))
        return;
    char token[SRV_TOKEN_HEX + 1], hash[SRV_HASH_HEX + 1];
    srv_auth_new_secret(token);
    srv_auth_hash_secret(token, hash);
    srv_err err = {{0}};
    if (srv_store_token_add(req->server->store, req->who.user.id, hash, now_ms(), &err) < 0) {
        srv_reply_error(req, 503, "%s", err.message);
        return;
    }
    srv_reply_json(req, 200, json_pack("{s:s}", "token", token));
}

const srv_route srv_api_routes[] = {
    {"GET", "/api/health", SRV_BODY_NONE, health, NULL, NULL, NULL},
    {"GET", "/api/runs", SRV_BODY_NONE, list_runs, NULL, NULL, NULL},
    {"GET", "/api/vms", SRV_BODY_NONE, list_vms, NULL, NULL, NULL},
    {"GET", "/api/runs/*", SRV_BODY_NONE, get_run, NULL, NULL, NULL},
    {"PATCH", "/api/runs/*", SRV_BODY_JSON, rename_run, NULL, NULL, NULL},
    {"DELETE", "/api/runs/*", SRV_BODY_NONE, delete_run, NULL, NULL, NULL},
    {"GET", "/api/runs/*/raw", SRV_BODY_NONE, raw_run, NULL, NULL, NULL},
    {"GET", "/api/me", SRV_BODY_NONE, me, NULL, NULL, NULL},
    {"POST", "/api/login", SRV_BODY_JSON, login, NULL, NULL, NULL},
    {"POST", "/api/logout", SRV_BODY_NONE, logout, NULL, NULL, NULL},
    {"POST", "/api/tokens", SRV_BODY_NONE, new_token, NULL, NULL, NULL},
    {NULL, NULL, 0, NULL, NULL, NULL, NULL},
};
