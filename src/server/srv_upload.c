/*
 * srv_upload.c - the upload exchange the vmprof clients speak
 * (docs/spec/upload-protocol.md), unchanged:
 *
 *   POST /api/runtime/new                    {"argv", "VM"} -> {"runtime_id"}
 *   POST /api/runtime/upload/cpu/ID/add      the profile, raw (or a multipart
 *                                            form with the file, older clients)
 *   POST /api/runtime/upload/jit/ID/add      a gzipped PyPy jit log -> {"jid"}
 *   POST /api/runtime/ID/freeze/             complete: the run becomes visible
 *
 * The profile is decoded while it arrives: each piece of the body goes into
 * the stored file (srv_blob, which compresses it later) and is pushed, where
 * it lies, into the library's incremental decoder (vmp_decoder_push), so the
 * upload is never held whole, no byte is copied for the decoder, and the
 * profile is ready when its last byte is.  (A thread reading a pipe did the
 * decoding before: two more copies of every byte and a wake-up per piece,
 * for a decode that costs less than receiving.)  A gzipped upload is
 * inflated on the way in.  A corrupt profile is refused with 400 and the
 * decoder's error as soon as the decoder finds the damage (srv_http.c sends
 * it before the body's end and closes the connection), and nothing of it is
 * kept.  The decoded profile
 * goes to the cache and its facts to the run's row; the run is listed only
 * after the freeze.
 */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "srv_api.h"
#include "srv_blob.h"
#include "srv_cache.h"
#include "srv_http.h"
#include "srv_jitlog.h"
#include "srv_memo.h"
#include "srv_query.h"
#include "vmprof.h"

#define MAX_ARGV (256 * 1024)  /* a command line: long ones are kept, not refused */
/* An upload still receiving says so to the database this often (beside its
 * start): PostgreSQL's sweep of unfinished uploads a day old keys on it
 * (srv_store_run_touch), so a body that takes longer keeps its run. */
#define TOUCH_EVERY_MS (3600 * 1000)

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- POST /api/runtime/new ---------------------------------------------------- */

static void new_runtime(srv_request *req)
{
    srv_server *s = req->server;
    if (!req->who.user.id && !s->anonymous_upload) {
        srv_reply_error(req, 401, "this server takes uploads from its users only: give your "
                                  "API token with --web-auth");
        return;
    }
    if (!srv_check_csrf(req))
        return;
    json_error_t jerr;
    json_t *body = json_loadb(req->body ? req->body : "", req->body_len, 0, &jerr);
    if (!json_is_object(body)) {
        json_decref(body);
        srv_reply_error(req, 400, "the body must be a JSON object {\"argv\": ..., \"VM\": ...}");
        return;
    }
    const char *argv = json_string_value(json_object_get(body, "argv"));
    const char *vm = json_string_value(json_object_get(body, "VM"));
    if (!argv)
        argv = ""; /* the clients always send one; a missing one is no reason to fail */
    if (strlen(argv) > MAX_ARGV) {
        json_decref(body);
        srv_reply_error(req, 400, "the command line is over %d bytes", MAX_ARGV);
        return;
    }
    char vm_buf[32];
    snprintf(vm_buf, sizeof vm_buf, "%s", vm && *vm ? vm : "unknown");
    char id[SRV_ID_LEN + 1];
    srv_auth_new_run_id(id);
    srv_err err = {{0}};
    int rc = srv_store_run_create(s->store, id, req->who.user.id, argv, vm_buf, now_ms(), &err);
    json_decref(body);
    if (rc != 0) {
        srv_reply_error(req, 503, "%s", err.message);
        return;
    }
    srv_reply_json(req, 200, json_pack("{s:s, s:s}", "status", "ok", "runtime_id", id));
}

/* ---- the uploads ------------------------------------------------------------------- */

typedef struct upload {
    srv_run run;
    srv_blob_kind kind;
    srv_blob_writer *blob;
    int counted;              /* holds one of the uploads-in-flight slots */
    /* the decoder, for profiles */
    vmp_decoder *decoder;
    vmp_profile *profile;     /* decoded, once the body is in */
    const vmp_profile *kept;  /* the same in the cache, held until its first
                                 views are computed, after the answer */
    int decode_failed;        /* decode_error says why; the rest is discarded */
    vmp_error decode_error;
    int sniffed;              /* the first bytes were seen */
    int stored_form_chosen;   /* compact or as it came (srv_blob_compact) */
    z_stream *inflate;        /* a gzipped upload, inflated for the decoder */
    unsigned char *inflated;
    /* an older client's multipart form */
    struct MHD_PostProcessor *form;
    int failed;               /* a reply was decided; the rest is discarded */
    int64_t touched_ms;       /* the run was last marked active then */
    int64_t touch_every_ms;   /* and is again after this long */
} upload;

#define INFLATE_CHUNK (256 * 1024)

static void decode_failed(upload *u, const char *message)
{
    u->decode_failed = 1;
    if (message)
        snprintf(u->decode_error.message, sizeof u->decode_error.message, "%s", message);
    vmp_decoder_free(u->decoder);
    u->decoder = NULL;
}

/* Gives the decoder the profile's bytes: plain ones where they lie, gzipped
 * ones inflated piece by piece. */
static void decode(upload *u, const char *data, size_t n)
{
    if (!u->decoder || !n)
        return;
    if (!u->sniffed) {
        u->sniffed = 1;
        if ((unsigned char)data[0] == 0x1f && (n < 2 || (unsigned char)data[1] == 0x8b)) {
            u->inflate = calloc(1, sizeof *u->inflate);
            u->inflated = malloc(INFLATE_CHUNK);
            if (!u->inflate || !u->inflated || inflateInit2(u->inflate, 16 + MAX_WBITS) != Z_OK) {
                free(u->inflate);
                u->inflate = NULL;
                decode_failed(u, "out of memory");
                return;
            }
        }
    }
    if (!u->inflate) {
        if (vmp_decoder_push(u->decoder, data, n, &u->decode_error) < 0)
            decode_failed(u, NULL);
        return;
    }
    z_stream *z = u->inflate;
    z->next_in = (unsigned char *)data;
    z->avail_in = (unsigned)n;
    while (z->avail_in && u->decoder) {
        z->next_out = u->inflated;
        z->avail_out = INFLATE_CHUNK;
        int rc = inflate(z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
            decode_failed(u, "the gzip stream is corrupt");
            return;
        }
        size_t got = INFLATE_CHUNK - z->avail_out;
        if (got && vmp_decoder_push(u->decoder, u->inflated, got, &u->decode_error) < 0) {
            decode_failed(u, NULL);
            return;
        }
        if (rc == Z_STREAM_END)
            break; /* what follows the gzip stream is stored, not decoded */
        if (!got && rc == Z_BUF_ERROR)
            break;
    }
}

/* Looks up the run an upload names and checks the uploader may add to it. */
static int load_open_run(srv_request *req, srv_run *run)
{
    const char *id = req->args[0];
    srv_err err = {{0}};
    int rc = srv_valid_run_id(id) ? srv_store_run_get(req->server->store, id, run, &err) : 1;
    if (rc < 0) {
        srv_reply_error(req, 503, "%s", err.message);
        return -1;
    }
    if (rc > 0) {
        srv_reply_error(req, 404, "no runtime %s: start with POST /api/runtime/new", id);
        return -1;
    }
    if (run->state == SRV_RUN_FROZEN)
        srv_reply_error(req, 400, "runtime %s is frozen: it takes no more uploads", id);
    else if (run->owner_id != req->who.user.id)
        srv_reply_error(req, 403, "runtime %s was started by another user", id);
    else
        return 0;
    srv_run_clear(run);
    return -1;
}

static void feed(srv_request *req, const char *data, size_t n);

static enum MHD_Result form_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *filename, const char *content_type,
                                  const char *transfer_encoding, const char *data, uint64_t off,
                                  size_t size)
{
    (void)kind, (void)key, (void)content_type, (void)transfer_encoding, (void)off;
    srv_request *req = cls;
    if (filename && size)
        feed(req, data, size);
    return MHD_YES;
}

static void begin_upload(srv_request *req, srv_blob_kind kind)
{
    srv_server *s = req->server;
    upload *u = calloc(1, sizeof *u);
    if (!u) {
        srv_reply_error(req, 500, "out of memory");
        return;
    }
    u->kind = kind;
    req->state = u;
    if (!req->who.user.id && !s->anonymous_upload) {
        srv_reply_error(req, 401, "this server takes uploads from its users only: give your "
                                  "API token with --web-auth");
        return;
    }
    if (!srv_check_csrf(req) || load_open_run(req, &u->run) < 0)
        return;
    /* Active from now on: a sweep of day-old unfinished uploads (another
     * PostgreSQL server's start) leaves this run alone. */
    srv_err touch_err = {{0}};
    u->touched_ms = now_ms();
    /* (a test makes the period short: VMPROF_SERVER_TEST_TOUCH_MS) */
    const char *every = getenv("VMPROF_SERVER_TEST_TOUCH_MS");
    u->touch_every_ms = every && atoi(every) > 0 ? atoi(every) : TOUCH_EVERY_MS;
    int touched = srv_store_run_touch(s->store, u->run.id, u->touched_ms, &touch_err);
    if (touched < 0) {
        srv_reply_error(req, 503, "%s", touch_err.message);
        return;
    }
    if (touched > 0) {
        /* (frozen or removed since it was read: load_open_run says which) */
        srv_run_clear(&u->run);
        if (load_open_run(req, &u->run) == 0)
            srv_reply_error(req, 503, "runtime %s changed meanwhile: retry", u->run.id);
        return;
    }
    if (atomic_fetch_add(&s->uploads_in_flight, 1) >= (int)s->limits.max_uploads) {
        atomic_fetch_sub(&s->uploads_in_flight, 1);
        srv_reply_error(req, 503, "the server is receiving %u uploads already; retry in a "
                                  "few seconds", s->limits.max_uploads);
        if (req->response)
            MHD_add_response_header(req->response, MHD_HTTP_HEADER_RETRY_AFTER, "5");
        return;
    }
    u->counted = 1;
    srv_err err = {{0}};
    u->blob = srv_blob_begin(s->data_dir, u->run.id, kind, &err);
    if (!u->blob) {
        srv_reply_error(req, 507, "%s", err.message);
        return;
    }
    const char *type = srv_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
    const char *length = srv_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length && !(type && strncasecmp(type, "multipart/form-data", 19) == 0))
        srv_blob_expect(u->blob, strtoull(length, NULL, 10));
    if (type && strncasecmp(type, "multipart/form-data", 19) == 0) {
        u->form = MHD_create_post_processor(req->conn, 64 * 1024, form_field, req);
        if (!u->form) {
            srv_reply_error(req, 400, "the multipart form has no boundary");
            return;
        }
    }
    if (kind == SRV_BLOB_PROFILE) {
        u->decoder = vmp_decoder_new(NULL, &u->decode_error);
        if (!u->decoder) {
            srv_reply_error(req, 503, "cannot start decoding: %s", u->decode_error.message);
            return;
        }
    }
}

static void begin_cpu(srv_request *req)
{
    begin_upload(req, SRV_BLOB_PROFILE);
}

static void begin_jit(srv_request *req)
{
    begin_upload(req, SRV_BLOB_JITLOG);
}

/* Bytes of the file itself (from the raw body or the form). */
static void feed(srv_request *req, const char *data, size_t n)
{
    upload *u = req->state;
    /* (a profile the decoder refused is not kept: the rest is not written) */
    if (u->failed || u->decode_failed)
        return;
    /* The decoder reads each piece before the file gets it: a plain profile
     * is stored in the compact form, written from the records the decoder
     * recognised (a gzipped one as it came). */
    if (!n)
        return;
    srv_err err = {{0}};
    if (!u->stored_form_chosen) {
        /* (before the decoder reads anything: the compact writer must see
         * every record; gzip is told as decode() tells it) */
        u->stored_form_chosen = 1;
        int gzipped = (unsigned char)data[0] == 0x1f && (n < 2 || (unsigned char)data[1] == 0x8b);
        if (u->decoder && !gzipped && srv_blob_compact(u->blob, u->decoder, &err) < 0) {
            u->failed = 1;
            srv_reply_error(req, 507, "%s", err.message);
            return;
        }
    }
    decode(u, data, n);
    if (u->decode_failed) {
        /* Answered now, not after the rest of the body (srv_http.c sends
         * it and closes the connection), and nothing of it kept. */
        u->failed = 1;
        srv_blob_abort(u->blob);
        u->blob = NULL;
        srv_reply_error(req, 400, "the profile does not read: %s", u->decode_error.message);
        return;
    }
    if (srv_blob_write(u->blob, data, n, &err) < 0) {
        u->failed = 1;
        srv_reply_error(req, 507, "%s", err.message);
    }
}

static void chunk(srv_request *req, const char *data, size_t n)
{
    upload *u = req->state;
    if (u->touched_ms && now_ms() - u->touched_ms >= u->touch_every_ms) {
        /* (a failure here is no reason to stop: the row's update at the end
         * says whether the run is still there) */
        srv_err ignored = {{0}};
        u->touched_ms = now_ms();
        srv_store_run_touch(req->server->store, u->run.id, u->touched_ms, &ignored);
    }
    if (u->form) {
        if (MHD_post_process(u->form, data, n) != MHD_YES && !u->failed) {
            u->failed = 1;
            srv_reply_error(req, 400, "the multipart form is malformed");
        }
        return;
    }
    feed(req, data, n);
}

/* The input has ended: the decoder's verdict. */
static vmp_profile *finish_decoding(upload *u)
{
    if (u->inflate) {
        inflateEnd(u->inflate);
        free(u->inflate);
        u->inflate = NULL;
    }
    free(u->inflated);
    u->inflated = NULL;
    vmp_decoder *d = u->decoder;
    u->decoder = NULL;
    return d ? vmp_decoder_finish(d, &u->decode_error) : NULL;
}

static void facts_of(const vmp_profile *p, uint64_t raw_size, srv_run_facts *f)
{
    vmp_facts v;
    vmp_profile_facts(p, &v);
    memset(f, 0, sizeof *f);
    f->samples = v.n_samples;
    f->period_usec = v.period_usec;
    f->threads = (uint32_t)v.n_threads;
    f->mode = (v.memory ? SRV_MODE_MEMORY : 0) | (v.lines ? SRV_MODE_LINES : 0) |
              (v.native ? SRV_MODE_NATIVE : 0) | (v.real_time ? SRV_MODE_REAL_TIME : 0) |
              (v.rpython ? SRV_MODE_RPYTHON : 0);
    snprintf(f->interp, sizeof f->interp, "%s", v.interp);
    if (v.has_start)
        f->start = (double)v.start_sec + (double)v.start_usec / 1e6;
    f->duration = v.duration_ms > 0 ? v.duration_ms / 1000.0 : 0;
    f->raw_size = raw_size;
    f->complete = v.complete;
}

/* The label kept from "attachment; filename=PATH" (never used as a path). */
static void filename_label(srv_request *req, char *out, size_t size)
{
    out[0] = 0;
    const char *cd = srv_header(req, "Content-Disposition");
    const char *f = cd ? strstr(cd, "filename=") : NULL;
    if (!f)
        return;
    f += 9;
    if (*f == '"')
        f++;
    size_t n = 0;
    while (f[n] && f[n] != '"' && n + 1 < size)
        n++;
    memcpy(out, f, n);
    out[n] = 0;
}

/* The run is gone: swept as a day-old unfinished upload by a PostgreSQL
 * server's start (or deleted) while the body arrived.  No row will ever name
 * that id again, so the files of its earlier uploads are removed here (a
 * reclaim removes them otherwise, srv_main.c).  404; err says why. */
static int removed_meanwhile(srv_request *req, const char *id, srv_err *err)
{
    srv_blob_remove(req->server->data_dir, id);
    snprintf(err->message, sizeof err->message,
             "runtime %s was removed meanwhile (swept as an unfinished upload a day old, or "
             "deleted): start again "
             "with POST /api/runtime/new", id);
    return 404;
}

/* The upload's file, complete in tmp/, moved into runs/ (srv_store_run_record
 * calls this only while its run cannot be frozen). */
typedef struct placing {
    srv_blob_writer *blob;
} placing;

static int place_file(void *ctx, srv_err *err)
{
    placing *p = ctx;
    srv_blob_writer *w = p->blob;
    p->blob = NULL;
    if (srv_blob_place(w, err) < 0)
        return -1;
    /* (a test holds an upload here: its file placed, its row not updated) */
    srv_test_gate("VMPROF_SERVER_TEST_UPLOAD_STORED");
    return 0;
}

static void finish_upload(srv_request *req)
{
    srv_server *s = req->server;
    upload *u = req->state;
    if (u->form)
        MHD_destroy_post_processor(u->form), u->form = NULL;
    u->profile = finish_decoding(u);
    if (u->failed || (u->kind == SRV_BLOB_PROFILE && !u->profile)) {
        /* Nothing is kept, and gone before the client hears so (the request's
         * cleanup runs only after the reply is sent). */
        srv_blob_abort(u->blob);
        u->blob = NULL;
    }
    if (u->failed)
        return;
    if (u->kind == SRV_BLOB_PROFILE && !u->profile) {
        srv_reply_error(req, 400, "the profile does not read: %s", u->decode_error.message);
        return;
    }
    srv_err err = {{0}};
    uint64_t size = 0;
    srv_blob_writer *blob = u->blob;
    u->blob = NULL;
    srv_jitlog *log = NULL;
    if (u->kind == SRV_BLOB_JITLOG) {
        /* Decoded now, once, before it replaces anything: a file that is no
         * jit log is not kept, and a run's earlier good log stays. */
        log = srv_jitlog_decode(srv_blob_pending_path(blob), &err);
        if (!log) {
            srv_blob_abort(blob);
            srv_reply_error(req, 400, "the jit log does not read: %s", err.message);
            return;
        }
    }
    if (srv_blob_finish(blob, &size, &err) < 0) {
        srv_jitlog_free(log);
        srv_reply_error(req, 507, "%s", err.message);
        return;
    }
    /* (a test holds an upload here: its file complete, not placed yet) */
    srv_test_gate("VMPROF_SERVER_TEST_UPLOAD_WRITTEN");
    srv_run_facts facts;
    char label[512] = "";
    if (u->profile) {
        facts_of(u->profile, size, &facts);
        filename_label(req, label, sizeof label);
    }
    placing p = {blob};
    int rc = srv_store_run_record(s->store, u->run.id, u->profile ? &facts : NULL, label,
                                  place_file, &p, &err);
    srv_blob_abort(p.blob); /* (not placed: the run is frozen or gone) */
    if (rc != 0) {
        srv_jitlog_free(log);
        unsigned status = rc == -2 ? 507 : rc < 0 ? 503 : rc == 1 ? 404 : 400;
        if (rc == 1)
            removed_meanwhile(req, u->run.id, &err);
        else if (rc == 2)
            snprintf(err.message, sizeof err.message,
                     "runtime %s was frozen meanwhile: it takes no more uploads", u->run.id);
        srv_reply_error(req, status, "%s", err.message);
        return;
    }
    if (log) {
        srv_jitlog_keep(s->jitlogs, u->run.id, log);
        srv_reply_json(req, 200, json_pack("{s:s, s:s}", "status", "ok", "jid", u->run.id));
        return;
    }
    /* (after forgetting the answers about a profile this one replaces) */
    srv_memo_forget_run(s->memo, u->run.id);
    u->kept = srv_cache_put_held(s->cache, u->run.id, u->profile);
    u->profile = NULL;
    /* What the first view needs is computed once the client has its answer
     * (cleanup_upload runs after it is sent), while the profile is hot: the
     * upload does not wait for it, and whoever asks for those views
     * meanwhile (the freeze comes first) waits for them, not for a second
     * computation. */
    if (u->kept)
        srv_query_promise(s, u->run.id);
    srv_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void cleanup_upload(srv_request *req)
{
    upload *u = req->state;
    if (!u)
        return;
    if (u->kept) {
        /* (a test holds the first views back, to ask for one meanwhile) */
        const char *hold = getenv("VMPROF_SERVER_TEST_FIRST_VIEWS_MS");
        if (hold && atoi(hold) > 0)
            nanosleep(&(struct timespec){atoi(hold) / 1000, (atoi(hold) % 1000) * 1000000L}, NULL);
        srv_query_prepare(req->server, u->run.id, u->kept);
        srv_cache_release(req->server->cache, u->kept);
    }
    if (u->form)
        MHD_destroy_post_processor(u->form);
    if (u->inflate) {
        inflateEnd(u->inflate);
        free(u->inflate);
    }
    free(u->inflated);
    vmp_decoder_free(u->decoder);
    vmp_profile_free(u->profile);
    srv_blob_abort(u->blob);
    if (u->counted)
        atomic_fetch_sub(&req->server->uploads_in_flight, 1);
    srv_run_clear(&u->run);
    free(u);
    req->state = NULL;
}

/* ---- POST /api/runtime/ID/freeze/ --------------------------------------------- */

static void freeze(srv_request *req)
{
    srv_server *s = req->server;
    if (!srv_check_csrf(req))
        return;
    srv_run run;
    if (load_open_run(req, &run) < 0)
        return;
    srv_err err = {{0}};
    int rc = run.state == SRV_RUN_UPLOADED || run.has_jitlog
                 ? srv_store_run_freeze(s->store, run.id, &err) : 1;
    if (rc < 0)
        srv_reply_error(req, 503, "%s", err.message);
    else if (rc > 0)
        srv_reply_error(req, 400, "runtime %s has no profile: upload one with POST "
                                  "/api/runtime/upload/cpu/%s/add (or a jit log) first", run.id, run.id);
    else
        srv_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
    /* The stored profile is compressed once the freeze is answered
     * (freeze_done), not when the upload is: the compressor's writing and
     * its two fsyncs would otherwise meet the freeze's commit at the disk
     * (and its CPU the first trees').  A profile never frozen is not
     * compressed: the start-up sweep removes it. */
    if (rc == 0 && run.state == SRV_RUN_UPLOADED)
        req->state = strdup(run.id); /* (out of memory: it stays plain, still served) */
    srv_run_clear(&run);
}

static void freeze_done(srv_request *req)
{
    if (req->state)
        srv_blob_compress_later(req->state);
    free(req->state);
    req->state = NULL;
}

const srv_route srv_upload_routes[] = {
    {"POST", "/api/runtime/new", SRV_BODY_JSON, new_runtime, NULL, NULL, NULL},
    {"POST", "/api/runtime/upload/cpu/*/add", SRV_BODY_STREAM, finish_upload, begin_cpu, chunk,
     cleanup_upload},
    {"POST", "/api/runtime/upload/jit/*/add", SRV_BODY_STREAM, finish_upload, begin_jit, chunk,
     cleanup_upload},
    {"POST", "/api/runtime/*/freeze", SRV_BODY_NONE, freeze, NULL, NULL, freeze_done},
    {NULL, NULL, 0, NULL, NULL, NULL, NULL},
};
