/*
 * srv_query.c - the views of a run's profile, each answered by the library's
 * one read model (vmprof.h) from the profile the cache holds:
 *
 *   GET /api/runs/ID/tree        the call tree at a path, cut at a depth and
 *                                a minimum share
 *   GET /api/runs/ID/functions   self and total per function; with
 *                                function=FN its callers and callees
 *   GET /api/runs/ID/lines       per line of one function (--lines runs)
 *   GET /api/runs/ID/memory      RSS over time, at most `width` points
 *   GET /api/runs/ID/export/FMT  every vmprofshow --format
 *   GET /api/diff/A/B            two runs' trees merged, with both counts
 *
 * Every view takes the same selection: thread=TID (a thread id as
 * /api/runs/ID lists them), native=0|1 (native frames, default on),
 * interp=0|1 (the interpreter's own native frames, default hidden),
 * from=MS&to=MS (samples in that time range).  Functions are named by their
 * index in the run's function table (`fn`), stable for the run.  Recursion is
 * merged as vmprofshow shows it.  The shapes are those docs/server.md shows.
 */
#define _GNU_SOURCE /* strcasestr */
#include <errno.h>
#include <microhttpd.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "srv_api.h"
#include "srv_blob.h"
#include "srv_cache.h"
#include "srv_http.h"
#include "srv_memo.h"
#include "srv_query.h"
#include "vmprof.h"

#define DEFAULT_DEPTH 12
#define MAX_DEPTH 1000
#define DEFAULT_MIN 0.0005
#define MAX_PATH 256
#define DEFAULT_LIMIT 200

static const char *const kind_names[VMP_FRAME_KIND_COUNT] = {
    "python", "native", "jit", "gc", "blackhole", "assembler", "jit-tracing",
};

static const char *kind_name(unsigned kind)
{
    return kind < VMP_FRAME_KIND_COUNT ? kind_names[kind] : "unknown";
}

/* ---- parameters ------------------------------------------------------------------------ */

/* A number argument; *ok cleared (and a 400 sent) when malformed. */
static double number_arg(srv_request *req, const char *name, double dflt, double lo, double hi,
                         int *ok)
{
    const char *v = srv_arg(req, name);
    if (!v || !*v || !*ok)
        return dflt;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (*end || errno || !(d >= lo && d <= hi)) {
        srv_reply_error(req, 400, "%s=%s: give a number from %g to %g", name, v, lo, hi);
        *ok = 0;
        return dflt;
    }
    return d;
}

static int flag_arg(srv_request *req, const char *name, int dflt, int *ok)
{
    const char *v = srv_arg(req, name);
    if (!v || !*v || !*ok)
        return dflt;
    if (strcmp(v, "0") == 0 || strcmp(v, "1") == 0)
        return v[0] == '1';
    srv_reply_error(req, 400, "%s=%s: say 0 or 1", name, v);
    *ok = 0;
    return dflt;
}

/* The selection parameters every view takes, into q.  0, or -1 having replied. */
static int selection(srv_request *req, const vmp_profile *p, vmp_query *q)
{
    memset(q, 0, sizeof *q);
    int ok = 1;
    q->frames = VMP_Q_MERGE_RECURSION;
    if (!flag_arg(req, "native", 1, &ok))
        q->frames |= VMP_Q_NO_NATIVE;
    if (!flag_arg(req, "interp", 0, &ok))
        q->frames |= VMP_Q_HIDE_INTERPRETER;
    const char *thread = srv_arg(req, "thread");
    if (ok && thread && *thread) {
        char *end;
        errno = 0;
        unsigned long long tid = strtoull(thread, &end, 10);
        size_t n = vmp_profile_thread_count(p), i = 0;
        while (!*end && !errno && i < n && vmp_profile_thread_id(p, i) != tid)
            i++;
        if (*end || errno || i == n) {
            srv_reply_error(req, 400, "thread=%s: the run has no such thread (GET /api/runs/ID "
                                      "lists its threads)", thread);
            return -1;
        }
        q->thread_set = 1;
        q->thread = (uint32_t)i;
    }
    const char *from = srv_arg(req, "from"), *to = srv_arg(req, "to");
    if (ok && ((from && *from) || (to && *to))) {
        q->time_range_set = 1;
        q->time_begin_ms = number_arg(req, "from", 0, 0, 1e15, &ok);
        q->time_end_ms = number_arg(req, "to", 1e15, 0, 1e15, &ok);
        if (ok && q->time_end_ms < q->time_begin_ms) {
            srv_reply_error(req, 400, "from=%s is after to=%s", from, to);
            return -1;
        }
    }
    return ok ? 0 : -1;
}

/* "3.17.42" -> function indices; 0, or -1 having replied. */
static int parse_path(srv_request *req, const vmp_profile *p, const char *text, uint32_t *path,
                      size_t *n)
{
    size_t nfuncs = 0;
    vmp_profile_funcs(p, &nfuncs);
    *n = 0;
    for (const char *c = text; c && *c;) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(c, &end, 10);
        if (end == c || errno || v >= nfuncs || *n == MAX_PATH || (*end && *end != '.')) {
            srv_reply_error(req, 400, "path=%s: give function ids separated by dots, as the "
                                      "tree's answers name them", text);
            return -1;
        }
        path[(*n)++] = (uint32_t)v;
        c = *end ? end + 1 : end;
    }
    return 0;
}

/* The run's profile, from the cache; NULL having replied. */
static const vmp_profile *open_profile(srv_request *req, const char *id, srv_run *run)
{
    if (srv_load_run(req, id, run) < 0)
        return NULL;
    if (run->has_jitlog && !run->facts.raw_size) {
        /* uploaded by pypy3 -m jitlog --web: a jit log and no profile */
        srv_reply_error(req, 404, "run %s has a jit log and no profile: see "
                                  "/api/runs/%s/jitlog/traces", run->id, run->id);
        srv_run_clear(run);
        return NULL;
    }
    srv_err err = {{0}};
    const vmp_profile *p = srv_cache_get(req->server->cache, run->id, &err);
    if (!p) {
        srv_reply_error(req, 500, "%s", err.message);
        srv_run_clear(run);
    }
    return p;
}

static void close_profile(srv_request *req, const vmp_profile *p, srv_run *run)
{
    srv_cache_release(req->server->cache, p);
    srv_run_clear(run);
}

/* ---- JSON pieces --------------------------------------------------------------------------- */

static json_t *func_info(const vmp_func *f)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", srv_json_text(f->name));
    json_object_set_new(o, "file", srv_json_text(f->file));
    json_object_set_new(o, "line", json_integer(f->first_line));
    json_object_set_new(o, "kind", json_string(kind_name(f->kind)));
    return o;
}

/* Adds function fn to the answer's table of the functions it names. */
static void note_func(json_t *table, const vmp_profile *p, uint32_t fn)
{
    size_t n;
    const vmp_func *funcs = vmp_profile_funcs(p, &n);
    if (fn >= n)
        return;
    char key[16];
    snprintf(key, sizeof key, "%u", fn);
    if (!json_object_get(table, key))
        json_object_set_new(table, key, func_info(&funcs[fn]));
}

static json_t *func_row(const vmp_profile *p, uint32_t fn, uint64_t self, uint64_t total)
{
    size_t n;
    const vmp_func *funcs = vmp_profile_funcs(p, &n);
    json_t *o = fn < n ? func_info(&funcs[fn]) : json_object();
    json_object_set_new(o, "fn", json_integer(fn < n ? (json_int_t)fn : -1));
    json_object_set_new(o, "self", json_integer((json_int_t)self));
    json_object_set_new(o, "total", json_integer((json_int_t)total));
    return o;
}

/* ---- the call tree ------------------------------------------------------------------------- */

static json_t *tree_node(const vmp_tree *t, uint32_t i, uint32_t max_depth, json_t *funcs)
{
    const vmp_tree_node *n = &t->nodes[i];
    json_t *o = json_object();
    if (n->func != VMP_NONE) {
        json_object_set_new(o, "fn", json_integer(n->func));
        note_func(funcs, t->profile, n->func);
    }
    json_object_set_new(o, "total", json_integer((json_int_t)n->total));
    json_object_set_new(o, "self", json_integer((json_int_t)n->self));
    if (n->line)
        json_object_set_new(o, "line", json_integer(n->line));
    if (n->n_children) {
        json_t *children = json_array();
        for (uint32_t c = n->first_child; c != VMP_NONE; c = t->nodes[c].next_sibling)
            json_array_append_new(children, tree_node(t, c, max_depth, funcs));
        json_object_set_new(o, "children", children);
    }
    /* Cut by the depth (so the UI may ask for more), not merely pruned. */
    json_object_set_new(o, "more", json_boolean(n->cut && n->depth == max_depth &&
                                                n->total > n->self));
    return o;
}

/* The path to the program's first frame: down the busiest child while the
 * frame is native (the interpreter's start-up), to the first Python one. */
static size_t program_path(const vmp_tree *t, uint32_t *path, size_t max)
{
    size_t n = 0;
    uint32_t i = t->nodes[0].first_child;
    while (i != VMP_NONE && n < max) {
        path[n++] = t->nodes[i].func;
        const vmp_func *f = vmp_tree_func(t, i);
        if (f && f->kind != VMP_FRAME_NATIVE)
            return n;
        i = t->nodes[i].first_child; /* the busiest: children come by total */
    }
    return 0;
}

/* A tree question, parsed. */
typedef struct tree_question {
    vmp_query q;
    uint32_t path[MAX_PATH];
    size_t path_len;
    uint32_t depth;
    double min;
    int program;
    int chain; /* the counts of the nodes on the way to path's (the breadcrumb) */
    int min_of_node; /* min is a share of path's node, not of the selection */
} tree_question;

/* The canonical text of a question about run id, for the memo. */
static void tree_key(const char *id, const tree_question *t, char *key, size_t size)
{
    int n = snprintf(key, size, "tree %s|%d:%u|%x|%d:%.17g:%.17g|%d|%d|%u|%.17g%s|", id,
                     t->q.thread_set, t->q.thread, t->q.frames, t->q.time_range_set,
                     t->q.time_begin_ms, t->q.time_end_ms, t->program, t->chain, t->depth,
                     t->min, t->min_of_node ? " of node" : "");
    for (size_t i = 0; i < t->path_len && n > 0 && (size_t)n < size; i++)
        n += snprintf(key + n, size - (size_t)n, "%u.", t->path[i]);
}

/* The answer to t about p, or NULL with *status and msg set. */
static json_t *tree_answer(const vmp_profile *p, tree_question *t, unsigned *status, char *msg,
                           size_t msg_size)
{
    vmp_error err = {0};
    json_t *funcs = json_object(), *chain = json_array(), *program_json = json_null();
    vmp_query q = t->q;
    if (t->program || (t->path_len > 1 && t->chain)) {
        /* The ancestors' counts (the breadcrumb) and the program's frame come
         * from one shallow tree over the whole selection: a second pass over
         * the samples, which a client that has the counts saves with chain=0. */
        vmp_query top = q;
        top.max_depth = (uint32_t)(t->path_len > 8 ? t->path_len : 8);
        top.min_fraction = 0;
        vmp_tree *shallow = vmp_query_tree(p, &top, &err);
        if (!shallow) {
            *status = 400;
            snprintf(msg, msg_size, "%s", err.message);
            goto fail;
        }
        if (t->program) {
            uint32_t prog[8];
            size_t n = program_path(shallow, prog, 8);
            if (n) {
                json_decref(program_json);
                program_json = json_array();
                for (size_t i = 0; i < n; i++)
                    json_array_append_new(program_json, json_integer(prog[i]));
                if (!t->path_len) {
                    memcpy(t->path, prog, n * sizeof *t->path);
                    t->path_len = n;
                }
            }
        }
        uint32_t at = 0;
        for (size_t i = 0; t->chain && i + 1 < t->path_len && at != VMP_NONE; i++) {
            uint32_t c = shallow->nodes[at].first_child;
            while (c != VMP_NONE && shallow->nodes[c].func != t->path[i])
                c = shallow->nodes[c].next_sibling;
            at = c;
            if (c != VMP_NONE) {
                json_array_append_new(chain, json_pack("{s:i, s:I, s:I}", "fn", (int)t->path[i],
                                                       "total", (json_int_t)shallow->nodes[c].total,
                                                       "self", (json_int_t)shallow->nodes[c].self));
                note_func(funcs, p, t->path[i]);
            }
        }
        vmp_result_free(shallow);
    }
    q.root_path = t->path;
    q.root_path_len = t->path_len;
    q.max_depth = t->depth;
    q.min_fraction = t->min;
    q.min_of_root = t->min_of_node;
    vmp_tree *tree = vmp_query_tree(p, &q, &err);
    if (!tree) {
        /* A path that leads nowhere in this selection. */
        *status = t->path_len ? 404 : 400;
        snprintf(msg, msg_size, "%s", err.message);
        goto fail;
    }
    json_t *path_json = json_array();
    for (size_t i = 0; i < t->path_len; i++)
        json_array_append_new(path_json, json_integer(t->path[i]));
    json_t *node = tree_node(tree, 0, t->depth, funcs);
    json_t *answer = json_pack("{s:I, s:o, s:o, s:o, s:o, s:o}", "total",
                               (json_int_t)tree->samples, "path", path_json, "program",
                               program_json, "chain", chain, "node", node, "functions", funcs);
    vmp_result_free(tree);
    return answer;
fail:
    json_decref(funcs);
    json_decref(chain);
    json_decref(program_json);
    return NULL;
}

/* Computes and keeps the answer to t; returns its text (malloc'd) or NULL. */
static char *answer_and_keep(srv_memo *memo, const vmp_profile *p, const char *key,
                             tree_question *t, unsigned *status, char *msg, size_t msg_size)
{
    json_t *answer = tree_answer(p, t, status, msg, msg_size);
    char *text = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
    json_decref(answer);
    if (text)
        srv_memo_put(memo, key, text, strlen(text));
    else if (answer)
        *status = 500, snprintf(msg, msg_size, "out of memory");
    return text;
}

static void default_tree_question(tree_question *t)
{
    memset(t, 0, sizeof *t);
    t->q.frames = VMP_Q_MERGE_RECURSION | VMP_Q_HIDE_INTERPRETER;
    t->depth = DEFAULT_DEPTH;
    t->min = DEFAULT_MIN;
    t->chain = 1;
}

/* The first trees asked: this API's default question, and the one the
 * browser UI's run page opens with (DRAW_DEPTH and DRAW_MIN in
 * web/src/run.ts), both over the default selection from the root. */
static const struct {
    uint32_t depth;
    double min;
} first_views[] = {{DEFAULT_DEPTH, DEFAULT_MIN}, {128, 0.0005}};
#define FIRST_VIEWS (sizeof first_views / sizeof *first_views)

static void first_view(const char *id, size_t i, tree_question *t, char *key, size_t key_size)
{
    default_tree_question(t);
    t->depth = first_views[i].depth;
    t->min = first_views[i].min;
    tree_key(id, t, key, key_size);
}

void srv_query_promise(srv_server *s, const char *id)
{
    for (size_t i = 0; i < FIRST_VIEWS; i++) {
        tree_question t;
        char key[1400];
        first_view(id, i, &t, key, sizeof key);
        srv_memo_promise(s->memo, key);
    }
}

void srv_query_prepare(srv_server *s, const char *id, const vmp_profile *p)
{
    for (size_t i = 0; i < FIRST_VIEWS; i++) {
        tree_question t;
        char key[1400], msg[256];
        unsigned status;
        first_view(id, i, &t, key, sizeof key);
        char *text = answer_and_keep(s->memo, p, key, &t, &status, msg, sizeof msg);
        if (!text)
            srv_memo_withdraw(s->memo, key);
        free(text);
    }
}

static void tree(srv_request *req)
{
    srv_run run;
    const vmp_profile *p = open_profile(req, req->args[0], &run);
    if (!p)
        return;
    tree_question t;
    default_tree_question(&t);
    int ok = selection(req, p, &t.q) == 0;
    t.depth = ok ? (uint32_t)number_arg(req, "depth", DEFAULT_DEPTH, 1, MAX_DEPTH, &ok) : 0;
    t.min = number_arg(req, "min", DEFAULT_MIN, 0, 1, &ok);
    t.program = flag_arg(req, "program", 0, &ok);
    t.chain = flag_arg(req, "chain", 1, &ok);
    const char *of = srv_arg(req, "of");
    if (ok && of && *of && strcmp(of, "selection") != 0) {
        if (strcmp(of, "node") == 0) {
            t.min_of_node = 1;
        } else {
            srv_reply_error(req, 400, "of=%s: say node (min is a share of path's node) or "
                                      "selection (the default)", of);
            ok = 0;
        }
    }
    if (ok)
        ok = parse_path(req, p, srv_arg(req, "path"), t.path, &t.path_len) == 0;
    if (ok) {
        char key[1400], msg[256];
        unsigned status = 200;
        size_t len;
        tree_key(run.id, &t, key, sizeof key);
        char *text = srv_memo_get(req->server->memo, key, &len);
        if (!text)
            text = answer_and_keep(req->server->memo, p, key, &t, &status, msg, sizeof msg);
        if (text)
            srv_reply_json_text(req, 200, text, strlen(text));
        else
            srv_reply_error(req, status, "%s", msg);
    }
    close_profile(req, p, &run);
}

/* ---- functions ----------------------------------------------------------------------------- */

/* A search: q= (plain text) or re= (a POSIX extended regular expression), both
 * case-insensitive, over each function's name and file.  Each function of the
 * run is matched once, so the samples it covers cost a lookup per tree node. */
typedef struct fn_search {
    unsigned char *hit; /* per function of the run: 1 when it matches; NULL: no search */
    size_t n_hits;
} fn_search;

#define SEARCH_MAX_TEXT 200
/* regcomp copies a bounded repetition's operand once per count, nested ones
 * multiplied: the counts of a pattern are bounded by their product. */
#define SEARCH_MAX_REPEAT 1000
/* The ids of the matching functions go into the answer (for highlighting)
 * while there are at most this many. */
#define SEARCH_MAX_LISTED 10000

/* Why re is refused before regcomp sees it, or NULL: back-references (glibc
 * accepts \1-\9 in an extended regex, and matching them can take exponential
 * time) and repetition counts whose product is too large to compile. */
static const char *unsafe_regex(const char *re)
{
    double product = 1;
    for (const char *c = re; *c; c++) {
        if (c[0] == '\\' && c[1]) {
            if (c[1] >= '1' && c[1] <= '9')
                return "back-references (\\1 to \\9) are not supported";
            c++;
            continue;
        }
        if (*c != '{')
            continue;
        char *end;
        unsigned long lo = strtoul(c + 1, &end, 10), hi = lo;
        if (end == c + 1)
            continue; /* a plain brace */
        if (*end == ',' && end[1] != '}')
            hi = strtoul(end + 1, &end, 10);
        product *= (double)(hi > lo ? hi : lo) + 1;
        if (product > SEARCH_MAX_REPEAT)
            return "its repetition counts ({n,m}) are too large";
    }
    return NULL;
}

/* Reads q= or re= into s.  0, or -1 having replied. */
static int search_arg(srv_request *req, const vmp_profile *p, fn_search *s)
{
    const char *text = srv_arg(req, "q"), *re = srv_arg(req, "re");
    memset(s, 0, sizeof *s);
    if (text && !*text)
        text = NULL;
    if (re && !*re)
        re = NULL;
    if (!text && !re)
        return 0;
    const char *name = text ? "q" : "re", *value = text ? text : re;
    if (text && re) {
        srv_reply_error(req, 400, "q=%s and re=%s: give one (q: plain text, re: a regular "
                                  "expression)", text, re);
        return -1;
    }
    if (strlen(value) > SEARCH_MAX_TEXT) {
        srv_reply_error(req, 400, "%s=: at most %d characters, please", name, SEARCH_MAX_TEXT);
        return -1;
    }
    regex_t rx;
    if (re) {
        const char *why = unsafe_regex(re);
        int rc = why ? 0 : regcomp(&rx, re, REG_EXTENDED | REG_ICASE | REG_NOSUB);
        if (!why && rc) {
            char detail[160];
            regerror(rc, &rx, detail, sizeof detail);
            srv_reply_error(req, 400, "re=%s is not a regular expression (%s): write a POSIX "
                                      "extended one such as ^main$|util[.]py, or search plain "
                                      "text with q=", re, detail);
            return -1;
        }
        if (why) {
            srv_reply_error(req, 400, "re=%s: %s; simplify it, or search plain text with q=",
                            re, why);
            return -1;
        }
    }
    size_t n;
    const vmp_func *funcs = vmp_profile_funcs(p, &n);
    s->hit = calloc(n + 1, 1);
    if (!s->hit) {
        if (re)
            regfree(&rx);
        srv_reply_error(req, 500, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const vmp_func *f = &funcs[i];
        int m = re ? regexec(&rx, f->name, 0, NULL, 0) == 0 || regexec(&rx, f->file, 0, NULL, 0) == 0
                   : strcasestr(f->name, text) || strcasestr(f->file, text);
        s->hit[i] = (unsigned char)(m != 0);
        s->n_hits += s->hit[i];
    }
    if (re)
        regfree(&rx);
    return 0;
}

static int search_hits(const fn_search *s, size_t nfuncs, uint32_t fn)
{
    return fn < nfuncs && s->hit[fn];
}

/* Samples with a matching function anywhere on the stack, each once: the
 * totals of matching nodes that have no matching ancestor. */
static uint64_t matched_samples(const vmp_tree *t, const fn_search *s, size_t nfuncs)
{
    uint64_t sum = 0;
    unsigned char *under = calloc(t->n_nodes, 1);
    if (!under)
        return 0;
    for (size_t i = 1; i < t->n_nodes; i++) { /* parents come before children */
        const vmp_tree_node *n = &t->nodes[i];
        if (n->parent != VMP_NONE && under[n->parent])
            under[i] = 1;
        else if (n->func != VMP_NONE && search_hits(s, nfuncs, n->func)) {
            under[i] = 1;
            sum += n->total;
        }
    }
    free(under);
    return sum;
}

static int by_self(const void *a, const void *b)
{
    const vmp_func_count *x = a, *y = b;
    if (x->self != y->self)
        return x->self < y->self ? 1 : -1;
    return x->total < y->total ? 1 : x->total > y->total ? -1 : 0;
}

/* The canonical text of a function table's question about run id, for the
 * memo; the search's text goes last, so that no text can pass for another
 * question. */
static void functions_key(const char *id, const vmp_query *q, int by_total, size_t limit,
                          double fn, const char *search_kind, const char *search_text,
                          char *key, size_t size)
{
    snprintf(key, size, "functions %s|%d:%u|%x|%d:%.17g:%.17g|%d|%zu|%.0f|%s:%s", id,
             q->thread_set, q->thread, q->frames, q->time_range_set, q->time_begin_ms,
             q->time_end_ms, by_total, limit, fn, search_kind, search_text);
}

static void functions(srv_request *req)
{
    srv_run run;
    const vmp_profile *p = open_profile(req, req->args[0], &run);
    if (!p)
        return;
    vmp_query q;
    int ok = selection(req, p, &q) == 0;
    size_t limit = (size_t)number_arg(req, "limit", DEFAULT_LIMIT, 1, 100000, &ok);
    const char *sort = srv_arg(req, "sort"), *fn_arg = srv_arg(req, "function");
    if (ok && sort && strcmp(sort, "self") != 0 && strcmp(sort, "total") != 0) {
        srv_reply_error(req, 400, "sort=%s: say self or total", sort);
        ok = 0;
    }
    fn_search search = {0};
    if (ok)
        ok = search_arg(req, p, &search) == 0;
    size_t nfuncs;
    vmp_profile_funcs(p, &nfuncs);
    double fn = ok && fn_arg ? number_arg(req, "function", 0, 0, (double)nfuncs - 1, &ok) : -1;
    /* A search over a big run costs a tree and a table (100-200 ms on a
     * million samples): its answer is kept for asking again, as trees are. */
    char key[1400];
    if (ok) {
        const char *text = srv_arg(req, "q"), *re = srv_arg(req, "re");
        functions_key(run.id, &q, sort && strcmp(sort, "total") == 0, limit, fn,
                      !search.hit ? "" : text && *text ? "q" : "re",
                      !search.hit ? "" : text && *text ? text : re, key, sizeof key);
        size_t len;
        char *kept = srv_memo_get(req->server->memo, key, &len);
        if (kept) {
            srv_reply_json_text(req, 200, kept, len);
            ok = 0;
        }
    }
    vmp_error err = {0};
    vmp_func_counts *counts = ok ? vmp_query_functions(p, &q, &err) : NULL;
    vmp_neighbours *nb = NULL;
    if (counts && fn >= 0)
        nb = vmp_query_neighbours(p, &q, (uint32_t)fn, &err);
    if (ok && (!counts || (fn >= 0 && !nb))) {
        srv_reply_error(req, 400, "%s", err.message);
        ok = 0;
    }
    if (ok) {
        if (!sort || strcmp(sort, "self") == 0)
            qsort(counts->items, counts->n, sizeof *counts->items, by_self);
        json_t *rows = json_array();
        for (size_t i = 0; i < counts->n && json_array_size(rows) < limit; i++) {
            const vmp_func_count *c = &counts->items[i];
            if (search.hit && !search_hits(&search, nfuncs, c->func))
                continue;
            json_array_append_new(rows, func_row(p, c->func, c->self, c->total));
        }
        json_t *o = json_pack("{s:I, s:o}", "total", (json_int_t)counts->samples, "functions",
                              rows);
        if (search.hit) {
            vmp_query full = q;
            vmp_tree *t = vmp_query_tree(p, &full, &err);
            json_object_set_new(o, "matched", json_integer(t ? (json_int_t)matched_samples(t, &search,
                                                                                         nfuncs)
                                                             : 0));
            vmp_result_free(t);
            /* Which functions match (of the whole run), so that a client
             * highlights exactly what was counted. */
            if (search.n_hits <= SEARCH_MAX_LISTED) {
                json_t *ids = json_array();
                for (size_t i = 0; i < nfuncs; i++)
                    if (search.hit[i])
                        json_array_append_new(ids, json_integer((json_int_t)i));
                json_object_set_new(o, "matching_fns", ids);
            }
        }
        if (nb) {
            json_object_set_new(o, "function", func_row(p, nb->func, nb->self, nb->total));
            json_t *callers = json_array(), *callees = json_array();
            for (size_t i = 0; i < nb->n_callers; i++)
                json_array_append_new(callers, func_row(p, nb->callers[i].func,
                                                        nb->callers[i].self, nb->callers[i].total));
            for (size_t i = 0; i < nb->n_callees; i++)
                json_array_append_new(callees, func_row(p, nb->callees[i].func,
                                                        nb->callees[i].self, nb->callees[i].total));
            json_object_set_new(o, "callers", callers);
            json_object_set_new(o, "callees", callees);
        }
        char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
        json_decref(o);
        if (text) {
            srv_memo_put(req->server->memo, key, text, strlen(text));
            srv_reply_json_text(req, 200, text, strlen(text));
        } else {
            srv_reply_error(req, 500, "out of memory");
        }
    }
    free(search.hit);
    vmp_result_free(counts);
    vmp_result_free(nb);
    close_profile(req, p, &run);
}

/* ---- lines ----------------------------------------------------------------------------------- */

static void lines(srv_request *req)
{
    srv_run run;
    const vmp_profile *p = open_profile(req, req->args[0], &run);
    if (!p)
        return;
    vmp_query q;
    size_t nfuncs;
    vmp_profile_funcs(p, &nfuncs);
    int ok = selection(req, p, &q) == 0;
    if (ok && !srv_arg(req, "function")) {
        srv_reply_error(req, 400, "give function=FN (a function id from /functions or /tree)");
        ok = 0;
    }
    uint32_t fn = ok ? (uint32_t)number_arg(req, "function", 0, 0, (double)nfuncs - 1, &ok) : 0;
    vmp_error err = {0};
    vmp_line_counts *lc = ok ? vmp_query_lines(p, &q, fn, &err) : NULL;
    if (ok && !lc) {
        srv_reply_error(req, 400, "%s", err.message);
        ok = 0;
    }
    /* self per line: the line-mode tree's nodes of this function, as leaves. */
    vmp_tree *t = NULL;
    if (ok) {
        vmp_query lq = q;
        lq.frames |= VMP_Q_LINES;
        t = vmp_query_tree(p, &lq, &err);
    }
    if (ok) {
        json_t *rows = json_array();
        const vmp_func_lines *fl = lc->n_funcs ? &lc->funcs[0] : NULL;
        for (size_t i = 0; fl && i < fl->n_lines; i++) {
            uint64_t self = 0;
            for (size_t k = 0; t && k < t->n_nodes; k++)
                if (t->nodes[k].func == fn && t->nodes[k].line == fl->lines[i].line)
                    self += t->nodes[k].self;
            json_array_append_new(rows, json_pack("{s:i, s:I, s:I}", "line",
                                                  (int)fl->lines[i].line, "self", (json_int_t)self,
                                                  "total", (json_int_t)fl->lines[i].count));
        }
        json_t *function = func_row(p, fn, 0, fl ? fl->total : 0);
        srv_reply_json(req, 200, json_pack("{s:o, s:I, s:o}", "function", function, "total",
                                           (json_int_t)(fl ? fl->total : 0), "lines", rows));
    }
    vmp_result_free(t);
    vmp_result_free(lc);
    close_profile(req, p, &run);
}

/* ---- memory --------------------------------------------------------------------------------- */

static void memory(srv_request *req)
{
    srv_run run;
    const vmp_profile *p = open_profile(req, req->args[0], &run);
    if (!p)
        return;
    vmp_query q;
    int ok = selection(req, p, &q) == 0;
    size_t width = (size_t)number_arg(req, "width", 1000, 1, 100000, &ok);
    vmp_facts facts;
    vmp_profile_facts(p, &facts);
    if (ok && !facts.memory) {
        srv_reply_error(req, 400, "run %s has no memory samples: record with --mem", run.id);
        ok = 0;
    }
    vmp_error err = {0};
    vmp_rss_series *s = ok ? vmp_query_rss(p, &q, width, &err) : NULL;
    if (ok && !s)
        srv_reply_error(req, 400, "%s", err.message);
    if (s) {
        json_t *points = json_array();
        for (size_t i = 0; i < s->n; i++)
            json_array_append_new(points, json_pack("[f, I]", s->points[i].ms,
                                                    (json_int_t)s->points[i].rss_kib));
        json_t *growth = json_array();
        for (size_t i = 0; i < s->n_growth && i < 20; i++)
            json_array_append_new(growth, func_row(p, s->growth[i].func, 0, s->growth[i].total));
        srv_reply_json(req, 200,
                       json_pack("{s:f, s:I, s:f, s:o, s:o}", "duration_ms", facts.duration_ms,
                                 "max_kib", (json_int_t)s->peak_kib, "peak_ms", s->peak_ms,
                                 "points", points, "growth", growth));
    }
    vmp_result_free(s);
    close_profile(req, p, &run);
}

/* ---- exports ----------------------------------------------------------------------------------- */

static int write_fd(void *ctx, const void *data, size_t len)
{
    return srv_write_all(*(int *)ctx, data, len);
}

static void export_run(srv_request *req)
{
    static const struct {
        const char *format, *ext, *type;
    } formats[] = {
        {"collapsed", "collapsed.txt", "text/plain; charset=utf-8"},
        {"speedscope", "speedscope.json", "application/json"},
        {"pprof", "pb.gz", "application/octet-stream"},
        {"firefox", "firefox.json", "application/json"},
        {"html", "html", "text/html; charset=utf-8"},
    };
    size_t k = 0, nf = sizeof formats / sizeof *formats;
    while (k < nf && strcmp(formats[k].format, req->args[1]) != 0)
        k++;
    if (k == nf) {
        srv_reply_error(req, 404, "no export format %s: say one of %s", req->args[1],
                        vmp_export_formats());
        return;
    }
    srv_run run;
    const vmp_profile *p = open_profile(req, req->args[0], &run);
    if (!p)
        return;
    vmp_query q;
    if (selection(req, p, &q) == 0) {
        /* Exports keep recursion as sampled (flame graphs show it). */
        q.frames &= ~VMP_Q_MERGE_RECURSION;
        /* Written to an unlinked file and sent from there: an export of a big
         * run never sits in memory. */
        char path[4200];
        snprintf(path, sizeof path, "%s/tmp/export.XXXXXX", req->server->data_dir);
        int fd = mkstemp(path);
        vmp_error err = {0};
        vmp_sink sink = {write_fd, &fd};
        if (fd < 0) {
            srv_reply_error(req, 507, "cannot write the export: %s", strerror(errno));
        } else {
            unlink(path);
            if (vmp_query_export(p, &q, formats[k].format, NULL, &sink, &err) < 0) {
                srv_reply_error(req, 400, "%s", err.message);
                close(fd);
            } else {
                off_t size = lseek(fd, 0, SEEK_CUR);
                struct MHD_Response *r = MHD_create_response_from_fd_at_offset64(
                    (uint64_t)size, fd, 0);
                char disposition[128];
                snprintf(disposition, sizeof disposition, "attachment; filename=\"%s.%s\"",
                         run.id, formats[k].ext);
                if (r)
                    MHD_add_response_header(r, "Content-Disposition", disposition);
                else
                    close(fd);
                srv_reply_response(req, 200, r, formats[k].type);
            }
        }
    }
    close_profile(req, p, &run);
}

/* ---- diff -------------------------------------------------------------------------------------- */

static json_t *diff_node(const vmp_tree *t, uint32_t i)
{
    const vmp_tree_node *n = &t->nodes[i];
    const vmp_func *f = vmp_tree_func(t, i);
    json_t *o = f ? func_info(f) : json_pack("{s:s}", "name", "<root>");
    json_object_set_new(o, "a", json_integer((json_int_t)n->total));
    json_object_set_new(o, "b", json_integer((json_int_t)t->b[i].total));
    json_object_set_new(o, "a_self", json_integer((json_int_t)n->self));
    json_object_set_new(o, "b_self", json_integer((json_int_t)t->b[i].self));
    if (n->n_children) {
        json_t *children = json_array();
        for (uint32_t c = n->first_child; c != VMP_NONE; c = t->nodes[c].next_sibling)
            json_array_append_new(children, diff_node(t, c));
        json_object_set_new(o, "children", children);
    }
    return o;
}

typedef struct diff_func {
    const vmp_func *f;
    uint64_t a_self, a_total, b_self, b_total;
    double change;
} diff_func;

static int by_change(const void *x, const void *y)
{
    const diff_func *a = x, *b = y;
    return a->change < b->change ? 1 : a->change > b->change ? -1 : 0;
}

/* Per function of either run, matched by (kind, name, file, line). */
static json_t *diff_functions(const vmp_profile *a, const vmp_func_counts *ca,
                              const vmp_profile *b, const vmp_func_counts *cb)
{
    size_t na, nb;
    const vmp_func *fa = vmp_profile_funcs(a, &na), *fb = vmp_profile_funcs(b, &nb);
    diff_func *rows = calloc(ca->n + cb->n + 1, sizeof *rows);
    uint32_t *row_of_a = calloc(na + 1, sizeof *row_of_a);
    size_t n = 0;
    json_t *out = json_array();
    if (!rows || !row_of_a)
        goto done;
    for (size_t i = 0; i < ca->n; i++) {
        if (ca->items[i].func >= na)
            continue;
        rows[n] = (diff_func){&fa[ca->items[i].func], ca->items[i].self, ca->items[i].total, 0, 0, 0};
        row_of_a[ca->items[i].func] = (uint32_t)++n;
    }
    for (size_t i = 0; i < cb->n; i++) {
        if (cb->items[i].func >= nb)
            continue;
        const vmp_func *f = &fb[cb->items[i].func];
        uint32_t in_a = vmp_profile_find_func(a, f->kind, f->name, f->file, f->first_line);
        diff_func *r = in_a != VMP_NONE && in_a < na && row_of_a[in_a] ? &rows[row_of_a[in_a] - 1]
                                                                       : &rows[n++];
        if (!r->f)
            r->f = f;
        r->b_self = cb->items[i].self;
        r->b_total = cb->items[i].total;
    }
    double sa = ca->samples ? (double)ca->samples : 1, sb = cb->samples ? (double)cb->samples : 1;
    for (size_t i = 0; i < n; i++) {
        double d = (double)rows[i].b_total / sb - (double)rows[i].a_total / sa;
        rows[i].change = d < 0 ? -d : d;
    }
    qsort(rows, n, sizeof *rows, by_change);
    for (size_t i = 0; i < n && i < DEFAULT_LIMIT; i++) {
        json_t *o = func_info(rows[i].f);
        json_object_set_new(o, "a_self", json_integer((json_int_t)rows[i].a_self));
        json_object_set_new(o, "a_total", json_integer((json_int_t)rows[i].a_total));
        json_object_set_new(o, "b_self", json_integer((json_int_t)rows[i].b_self));
        json_object_set_new(o, "b_total", json_integer((json_int_t)rows[i].b_total));
        json_array_append_new(out, o);
    }
done:
    free(rows);
    free(row_of_a);
    return out;
}

static void diff(srv_request *req)
{
    srv_run ra, rb;
    const vmp_profile *a = open_profile(req, req->args[0], &ra);
    if (!a)
        return;
    const vmp_profile *b = open_profile(req, req->args[1], &rb);
    if (!b) {
        close_profile(req, a, &ra);
        return;
    }
    vmp_query qa, qb;
    int ok = selection(req, a, &qa) == 0;
    /* A thread id belongs to one run: the second run is taken whole. */
    if (ok) {
        qb = qa;
        qb.thread_set = 0;
    }
    double min = number_arg(req, "min", 0.001, 0, 1, &ok);
    uint32_t depth = (uint32_t)number_arg(req, "depth", 0, 0, MAX_DEPTH, &ok);
    vmp_error err = {0};
    vmp_tree *t = NULL;
    vmp_func_counts *ca = NULL, *cb = NULL;
    if (ok) {
        qa.min_fraction = qb.min_fraction = min;
        qa.max_depth = qb.max_depth = depth;
        t = vmp_query_diff(a, &qa, b, &qb, &err);
        ca = t ? vmp_query_functions(a, &qa, &err) : NULL;
        cb = ca ? vmp_query_functions(b, &qb, &err) : NULL;
        if (!cb)
            srv_reply_error(req, 400, "%s", err.message);
    }
    if (cb) {
        json_t *o = json_object();
        json_object_set_new(o, "a", json_pack("{s:s, s:I}", "id", ra.id, "total",
                                              (json_int_t)t->samples));
        json_object_set_new(o, "b", json_pack("{s:s, s:I}", "id", rb.id, "total",
                                              (json_int_t)t->samples_b));
        json_object_set_new(o, "root", diff_node(t, 0));
        json_object_set_new(o, "functions", diff_functions(a, ca, b, cb));
        srv_reply_json(req, 200, o);
    }
    vmp_result_free(t);
    vmp_result_free(ca);
    vmp_result_free(cb);
    close_profile(req, a, &ra);
    close_profile(req, b, &rb);
}

const srv_route srv_query_routes[] = {
    {"GET", "/api/runs/*/tree", SRV_BODY_NONE, tree, NULL, NULL, NULL},
    {"GET", "/api/runs/*/functions", SRV_BODY_NONE, functions, NULL, NULL, NULL},
    {"GET", "/api/runs/*/lines", SRV_BODY_NONE, lines, NULL, NULL, NULL},
    {"GET", "/api/runs/*/memory", SRV_BODY_NONE, memory, NULL, NULL, NULL},
    {"GET", "/api/runs/*/export/*", SRV_BODY_NONE, export_run, NULL, NULL, NULL},
    {"GET", "/api/diff/*/*", SRV_BODY_NONE, diff, NULL, NULL, NULL},
    {NULL, NULL, 0, NULL, NULL, NULL, NULL},
};
