/*
 * srv_jitlog.c - the jit logs of runs, decoded once and served as JSON
 * (contract in srv_jitlog.h; endpoints documented in docs/server.md).
 *
 * A decoded log is the decoder's forest plus two orders computed once, so
 * that no request sorts the whole log: the traces by entry count, and the
 * SOURCE_CODE lines by (file, line) for the merge points to find theirs.
 * The machine code is disassembled per request, for the one trace asked
 * (capstone; a handle is opened per request: they are not shareable between
 * threads, and opening one costs microseconds).
 */
#define _GNU_SOURCE /* qsort_r */
#include "srv_jitlog.h"

#include <capstone/capstone.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srv_api.h"
#include "srv_blob.h"
#include "srv_cache.h"
#include "srv_http.h"
#include "vjl_forest.h"
#include "vjl_query.h"

#define LIST_LIMIT_DEFAULT 1000
#define LIST_LIMIT_MAX 100000

/* ---- a decoded log ------------------------------------------------------------------ */

typedef struct srv_jitlog {
    vjl_forest *forest;
    uint32_t *by_entries; /* trace indices, most entries first (log order among equals) */
    uint32_t *sources;    /* source line indices, by (file, line) */
    size_t n_sources;
    size_t cost;          /* bytes charged to the cache */
} jitlog;

static int cmp_str(const vjl_forest *f, vjl_str a, vjl_str b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = memcmp(vjl_str_ptr(f, a), vjl_str_ptr(f, b), n);
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

static int cmp_entries(const void *a, const void *b, void *ctx)
{
    const vjl_forest *f = ctx;
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    uint64_t x = vjl_forest_trace(f, i)->entry_count, y = vjl_forest_trace(f, j)->entry_count;
    if (x != y)
        return x < y ? 1 : -1;
    return (i > j) - (i < j);
}

static int cmp_sources(const void *a, const void *b, void *ctx)
{
    const vjl_forest *f = ctx;
    size_t n;
    const vjl_source_line *lines = vjl_forest_source_lines(f, &n);
    const vjl_source_line *x = &lines[*(const uint32_t *)a], *y = &lines[*(const uint32_t *)b];
    int c = cmp_str(f, x->file, y->file);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

static void jitlog_free(jitlog *j)
{
    if (!j)
        return;
    vjl_forest_free(j->forest);
    free(j->by_entries);
    free(j->sources);
    free(j);
}

/* What a decoded log holds in memory: the input bytes, the ops and merge
 * points of every stage, and the two orders. */
static size_t forest_cost(const vjl_forest *f, size_t n_sources)
{
    size_t bytes = vjl_forest_size(f) + 64 * 1024;
    size_t n = vjl_forest_trace_count(f);
    for (size_t i = 0; i < n; i++) {
        const vjl_trace *t = vjl_forest_trace(f, i);
        bytes += sizeof *t + 2 * sizeof(uint32_t);
        for (int s = 0; s < VJL_STAGES; s++)
            bytes += t->stage[s].cap_ops * sizeof(vjl_op) +
                     t->stage[s].cap_mps * sizeof(vjl_merge_point);
    }
    return bytes + n_sources * (sizeof(vjl_source_line) + sizeof(uint32_t));
}

/* Decodes the log in the file at path.  NULL with err when it cannot be read
 * or is not a jit log. */
static jitlog *jitlog_read(const char *path, srv_err *err)
{
    vmp_error verr = {0};
    vjl_forest *f = vjl_forest_read_file(path, &verr);
    if (!f) {
        snprintf(err->message, sizeof err->message, "%s", verr.message);
        return NULL;
    }
    jitlog *j = calloc(1, sizeof *j);
    size_t n = vjl_forest_trace_count(f), n_src;
    vjl_forest_source_lines(f, &n_src);
    if (j) {
        j->forest = f;
        j->by_entries = malloc((n ? n : 1) * sizeof *j->by_entries);
        j->sources = malloc((n_src ? n_src : 1) * sizeof *j->sources);
    }
    if (!j || !j->by_entries || !j->sources) {
        if (j)
            jitlog_free(j);
        else
            vjl_forest_free(f);
        snprintf(err->message, sizeof err->message, "out of memory decoding the jit log");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        j->by_entries[i] = (uint32_t)i;
    qsort_r(j->by_entries, n, sizeof *j->by_entries, cmp_entries, f);
    for (size_t i = 0; i < n_src; i++)
        j->sources[i] = (uint32_t)i;
    qsort_r(j->sources, n_src, sizeof *j->sources, cmp_sources, f);
    j->n_sources = n_src;
    j->cost = forest_cost(f, n_src);
    return j;
}

/* The stored log of run id, decoded. */
static jitlog *jitlog_load(const char *data_dir, const char *id, srv_err *err)
{
    char path[4200];
    if (srv_blob_path(data_dir, id, SRV_BLOB_JITLOG, path, sizeof path) < 0) {
        snprintf(err->message, sizeof err->message, "run %s has no jit log", id);
        return NULL;
    }
    return jitlog_read(path, err);
}

/* ---- the cache ---------------------------------------------------------------------- */

static void *load_value(const char *data_dir, const char *id, srv_err *err)
{
    return jitlog_load(data_dir, id, err);
}

static void free_value(void *j)
{
    jitlog_free(j);
}

static size_t cost_value(const void *j)
{
    return ((const jitlog *)j)->cost;
}

static const srv_cache_kind jitlogs = {load_value, free_value, cost_value};

srv_cache *srv_jitlogs_new(size_t budget_bytes, const char *data_dir)
{
    return srv_cache_new_of(budget_bytes, data_dir, &jitlogs);
}

srv_jitlog *srv_jitlog_decode(const char *path, srv_err *err)
{
    return jitlog_read(path, err);
}

void srv_jitlog_keep(srv_cache *c, const char *id, srv_jitlog *log)
{
    srv_cache_put_value(c, id, log);
}

void srv_jitlog_free(srv_jitlog *log)
{
    if (log)
        jitlog_free(log);
}

/* ---- JSON of a forest's parts -------------------------------------------------------- */

/* A growable text buffer for strings assembled from pieces of the log. */
typedef struct text {
    char *p;
    size_t n, cap;
} text;

static void text_add(text *t, const char *s, size_t n)
{
    if (t->n + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->n + n + 1)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p)
            return; /* out of memory: the string stays shorter */
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = 0;
}

static json_t *text_json(text *t)
{
    json_t *j = srv_json_text(t->p ? t->p : "");
    t->n = 0;
    if (t->p)
        t->p[0] = 0;
    return j;
}

static json_t *str_json(const vjl_forest *f, vjl_str s, text *scratch)
{
    text_add(scratch, vjl_str_ptr(f, s), s.len);
    return text_json(scratch);
}

static json_t *hex_json(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "0x%" PRIx64, v);
    return json_string(buf);
}

/* A merge point's value of slot k: text (into scratch, NUL-terminated) or a
 * number; 0 when absent. */
static int mp_value(const vjl_forest *f, const vjl_merge_point *mp, int k, text *scratch,
                    uint64_t *num)
{
    scratch->n = 0;
    if (scratch->p)
        scratch->p[0] = 0;
    if (mp->kind[k] == 's') {
        text_add(scratch, vjl_str_ptr(f, mp->value[k].u.s.prefix), mp->value[k].u.s.prefix.len);
        text_add(scratch, vjl_str_ptr(f, mp->value[k].u.s.str), mp->value[k].u.s.str.len);
        if (!scratch->p)
            text_add(scratch, "", 0);
        return 's';
    }
    if (mp->kind[k] == 'i') {
        *num = mp->value[k].u.num;
        return 'i';
    }
    return 0;
}

enum { SLOT_FILE = 0, SLOT_LINE = 1, SLOT_INDEX = 2, SLOT_SCOPE = 3, SLOT_OPCODE = 4 };

static json_t *mp_field(const vjl_forest *f, const vjl_merge_point *mp, int k, text *scratch)
{
    uint64_t num = 0;
    int kind = mp ? mp_value(f, mp, k, scratch, &num) : 0;
    if (kind == 's')
        return text_json(scratch);
    if (kind == 'i')
        return json_integer((json_int_t)num);
    return json_null();
}

static uint64_t mp_line(const vjl_merge_point *mp)
{
    return mp->kind[SLOT_LINE] == 'i' ? mp->value[SLOT_LINE].u.num : 0;
}

/* The SOURCE_CODE line of file:line, or NULL. */
static const vjl_source_line *source_line(const jitlog *j, const char *file, size_t file_len,
                                          uint64_t line)
{
    size_t n;
    const vjl_source_line *lines = vjl_forest_source_lines(j->forest, &n);
    size_t lo = 0, hi = j->n_sources;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const vjl_source_line *s = &lines[j->sources[mid]];
        size_t m = s->file.len < file_len ? s->file.len : file_len;
        int c = memcmp(vjl_str_ptr(j->forest, s->file), file, m);
        if (!c)
            c = (s->file.len > file_len) - (s->file.len < file_len);
        if (!c)
            c = (s->line > line) - (s->line < line);
        if (c == 0)
            return s;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const char *trace_type(const vjl_trace *t)
{
    return t->is_bridge ? "bridge" : "loop";
}

/* The stage whose ops the list counts and links point into: asm when the
 * log has it, else opt, else noopt (as the decoder resolves guards). */
static int main_stage(const vjl_trace *t)
{
    if (t->stage[VJL_STAGE_ASM].present)
        return VJL_STAGE_ASM;
    return t->stage[VJL_STAGE_OPT].present ? VJL_STAGE_OPT : VJL_STAGE_NOOPT;
}

static json_t *trace_item(const jitlog *j, size_t i, text *scratch)
{
    const vjl_forest *f = j->forest;
    const vjl_trace *t = vjl_forest_trace(f, i);
    const vjl_merge_point *mp = vjl_trace_first_merge_point(t);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)t->id));
    json_object_set_new(o, "type", json_string(trace_type(t)));
    json_object_set_new(o, "jd", str_json(f, t->jd_name, scratch));
    json_object_set_new(o, "entries", json_integer((json_int_t)t->entry_count));
    json_object_set_new(o, "func", mp_field(f, mp, SLOT_SCOPE, scratch));
    json_object_set_new(o, "file", mp_field(f, mp, SLOT_FILE, scratch));
    json_object_set_new(o, "line", mp && mp->kind[SLOT_LINE] == 'i'
                                       ? json_integer((json_int_t)mp_line(mp)) : json_null());
    json_object_set_new(o, "ops", json_integer((json_int_t)t->stage[VJL_STAGE_OPT].n_ops));
    json_object_set_new(o, "parent", t->parent != VJL_NONE
                        ? json_integer((json_int_t)vjl_forest_trace(f, t->parent)->id)
                        : json_null());
    if (t->aborted)
        json_object_set_new(o, "aborted", json_true());
    return o;
}

/* ---- loading the log a request names -------------------------------------------------- */

/* The run's decoded log, or a reply saying why not (404: no such run or no
 * jit log; 500: its file does not read). */
static const jitlog *request_log(srv_request *req)
{
    srv_run run;
    if (srv_load_run(req, req->args[0], &run) < 0)
        return NULL;
    int has = run.has_jitlog;
    srv_run_clear(&run);
    if (!has) {
        srv_reply_error(req, 404, "run %s has no jit log: upload one with POST "
                                  "/api/runtime/upload/jit/%s/add (pypy3 -m jitlog --web)",
                        req->args[0], req->args[0]);
        return NULL;
    }
    srv_err err = {{0}};
    const jitlog *j = srv_cache_get_value(req->server->jitlogs, req->args[0], &err);
    if (!j)
        srv_reply_error(req, 500, "the jit log of run %s does not read: %s", req->args[0],
                        err.message);
    return j;
}

/* ---- GET /api/runs/ID/jitlog -------------------------------------------------------- */

static void get_jitlog(srv_request *req)
{
    const jitlog *j = request_log(req);
    if (!j)
        return;
    const vjl_forest *f = j->forest;
    text scratch = {0};
    size_t n = vjl_forest_trace_count(f), loops = 0, ops = 0;
    for (size_t i = 0; i < n; i++) {
        const vjl_trace *t = vjl_forest_trace(f, i);
        loops += !t->is_bridge;
        for (int s = 0; s < VJL_STAGES; s++)
            ops += t->stage[s].n_ops;
    }
    size_t n_src;
    vjl_forest_source_lines(f, &n_src);
    const vmp_error *warning = vjl_forest_warning(f);
    json_t *o = json_object();
    json_object_set_new(o, "run", json_string(req->args[0]));
    json_object_set_new(o, "version", json_integer(vjl_forest_version(f)));
    json_object_set_new(o, "word_size", json_integer(vjl_forest_word_size(f)));
    json_object_set_new(o, "machine", str_json(f, vjl_forest_machine(f), &scratch));
    json_object_set_new(o, "warning", warning ? srv_json_text(warning->message) : json_null());
    json_object_set_new(o, "traces", json_integer((json_int_t)n));
    json_object_set_new(o, "loops", json_integer((json_int_t)loops));
    json_object_set_new(o, "bridges", json_integer((json_int_t)(n - loops)));
    json_object_set_new(o, "ops", json_integer((json_int_t)ops));
    json_object_set_new(o, "source_lines", json_integer((json_int_t)n_src));
    json_object_set_new(o, "bytes", json_integer((json_int_t)vjl_forest_size(f)));
    free(scratch.p);
    srv_cache_release_value(req->server->jitlogs, j);
    srv_reply_json(req, 200, o);
}

/* ---- GET /api/runs/ID/jitlog/traces ------------------------------------------------- */

static int parse_count(const char *s, long long dflt, long long max, long long *out)
{
    if (!s || !*s) {
        *out = dflt;
        return 0;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

static void list_traces(srv_request *req)
{
    const char *q = srv_arg(req, "q");
    const char *sort = srv_arg(req, "sort");
    long long offset, limit;
    if (sort && *sort && strcmp(sort, "entries") && strcmp(sort, "log")) {
        srv_reply_error(req, 400, "sort must be entries (most entered first) or log (the "
                                  "log's order)");
        return;
    }
    if (parse_count(srv_arg(req, "offset"), 0, 1LL << 32, &offset) < 0 ||
        parse_count(srv_arg(req, "limit"), LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, &limit) < 0) {
        srv_reply_error(req, 400, "offset must be a number from 0 and limit one from 0 to %d",
                        LIST_LIMIT_MAX);
        return;
    }
    /* The query is parsed before the log is loaded: a mistake costs nothing. */
    vmp_error qerr = {0};
    vjl_query *query = vjl_query_parse(q ? q : "", q ? strlen(q) : 0, &qerr);
    if (!query) {
        if (qerr.offset < 0) {
            srv_reply_error(req, 503, "%s", qerr.message);
            return;
        }
        srv_reply_json(req, 400, json_pack("{s:o, s:i, s:I}", "error",
                                           srv_json_text(qerr.message), "status", 400,
                                           "column", (json_int_t)qerr.offset + 1));
        return;
    }
    const jitlog *j = request_log(req);
    if (!j) {
        vjl_query_free(query);
        return;
    }
    const vjl_forest *f = j->forest;
    size_t n = vjl_forest_trace_count(f);
    uint32_t *sel = malloc((n ? n : 1) * sizeof *sel);
    if (!sel) {
        vjl_query_free(query);
        srv_cache_release_value(req->server->jitlogs, j);
        srv_reply_error(req, 503, "out of memory");
        return;
    }
    size_t m = vjl_query_select(query, f, sel);
    vjl_query_free(query);
    if (sort && strcmp(sort, "entries") == 0 && m) {
        /* The selection in the order kept by entry count: mark, then walk it. */
        unsigned char *chosen = calloc(n, 1);
        if (chosen) {
            for (size_t k = 0; k < m; k++)
                chosen[sel[k]] = 1;
            size_t k = 0;
            for (size_t r = 0; r < n; r++)
                if (chosen[j->by_entries[r]])
                    sel[k++] = j->by_entries[r];
            free(chosen);
        }
    }
    json_t *list = json_array();
    text scratch = {0};
    size_t end = (size_t)offset + (size_t)limit < m ? (size_t)offset + (size_t)limit : m;
    for (size_t k = (size_t)offset; k < end; k++)
        json_array_append_new(list, trace_item(j, sel[k], &scratch));
    free(scratch.p);
    free(sel);
    srv_cache_release_value(req->server->jitlogs, j);
    srv_reply_json(req, 200, json_pack("{s:I, s:I, s:I, s:o, s:o}", "total", (json_int_t)n,
                                       "matched", (json_int_t)m, "offset", (json_int_t)offset,
                                       "next", end < m ? json_integer((json_int_t)end)
                                                       : json_null(),
                                       "traces", list));
}

/* ---- GET /api/runs/ID/jitlog/traces/TRACE -------------------------------------------- */

/* Capstone's architecture for the machine the log names; 0 when we do not
 * disassemble it. */
static int disassembler_for(const vjl_forest *f, cs_arch *arch, cs_mode *mode)
{
    vjl_str m = vjl_forest_machine(f);
    const char *s = vjl_str_ptr(f, m);
    static const struct {
        const char *name;
        cs_arch arch;
        int mode;
    } known[] = {
        {"x86_64", CS_ARCH_X86, CS_MODE_64}, {"x86-64", CS_ARCH_X86, CS_MODE_64},
        {"amd64", CS_ARCH_X86, CS_MODE_64},  {"x86", CS_ARCH_X86, CS_MODE_32},
        {"i386", CS_ARCH_X86, CS_MODE_32},   {"x86_32", CS_ARCH_X86, CS_MODE_32},
        {"aarch64", CS_ARCH_ARM64, CS_MODE_ARM}, {"arm64", CS_ARCH_ARM64, CS_MODE_ARM},
        {"arm", CS_ARCH_ARM, CS_MODE_ARM},
        {"s390x", CS_ARCH_SYSZ, CS_MODE_BIG_ENDIAN},
        {"ppc64", CS_ARCH_PPC, CS_MODE_64 | CS_MODE_BIG_ENDIAN},
        {"ppc64le", CS_ARCH_PPC, CS_MODE_64 | CS_MODE_LITTLE_ENDIAN},
    };
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strlen(known[i].name) == m.len && memcmp(known[i].name, s, m.len) == 0) {
            *arch = known[i].arch;
            *mode = (cs_mode)known[i].mode;
            return 1;
        }
    return 0;
}

static json_t *bytes_hex(const unsigned char *p, size_t n)
{
    char buf[2 * 64 + 1];
    size_t k = n < 64 ? n : 64;
    for (size_t i = 0; i < k; i++)
        snprintf(buf + 2 * i, 3, "%02x", p[i]);
    buf[2 * k] = 0;
    return json_string(buf);
}

/* An op's machine code as instructions; what does not decode is shown as
 * its bytes (a .byte line per 8) rather than dropped. */
static json_t *disassemble(csh cs, int have_cs, const unsigned char *code, size_t size,
                           uint64_t addr)
{
    json_t *a = json_array();
    size_t done = 0;
    if (have_cs) {
        cs_insn *insn = NULL;
        size_t n = cs_disasm(cs, code, size, addr, 0, &insn);
        for (size_t i = 0; i < n; i++) {
            char line[sizeof insn[i].mnemonic + sizeof insn[i].op_str + 2];
            snprintf(line, sizeof line, "%s%s%s", insn[i].mnemonic, insn[i].op_str[0] ? " " : "",
                     insn[i].op_str);
            json_array_append_new(a, json_pack("{s:o, s:o, s:s}", "addr",
                                               hex_json(insn[i].address), "bytes",
                                               bytes_hex(insn[i].bytes, insn[i].size), "text",
                                               line));
            done += insn[i].size;
        }
        if (n)
            cs_free(insn, n);
    }
    while (done < size) {
        size_t k = size - done < 8 ? size - done : 8;
        json_array_append_new(a, json_pack("{s:o, s:o, s:n}", "addr", hex_json(addr + done),
                                           "bytes", bytes_hex(code + done, k), "text"));
        done += k;
    }
    return a;
}

static const char *const stage_names[VJL_STAGES] = {"noopt", "opt", "asm"};

/* One op: {"i", "name", "result", "args", "descr", "failargs",
 * ["descr_number", "bridge", "count"], ["asm"]}. */
static json_t *op_json(const jitlog *j, const vjl_trace *t, const vjl_op *op, size_t i,
                       int stage, csh cs, int have_cs, text *scratch)
{
    const vjl_forest *f = j->forest;
    vjl_op_parts parts;
    vjl_op_get(f, op, &parts);
    const char *s = vjl_str_ptr(f, parts.args);
    size_t len = parts.args.len;
    /* "result,arg,...[,descr]": the result before the first comma, the
     * descriptor after the last one (when the op has one). */
    const char *first = memchr(s, ',', len);
    size_t res_len = first ? (size_t)(first - s) : len;
    size_t args_start = first ? res_len + 1 : len, args_end = len;
    json_t *descr = json_null();
    if (op->has_descr) {
        vjl_str d = vjl_op_descr_text(f, op);
        descr = str_json(f, d, scratch);
        args_end = d.off - parts.args.off;
        args_end = args_end > args_start ? args_end - 1 : args_start;
    }
    json_t *o = json_object();
    json_object_set_new(o, "i", json_integer((json_int_t)i));
    json_object_set_new(o, "name", str_json(f, vjl_forest_opname(f, op->opnum), scratch));
    text_add(scratch, s, res_len);
    json_object_set_new(o, "result", text_json(scratch));
    text_add(scratch, s + args_start, args_end - args_start);
    json_object_set_new(o, "args", text_json(scratch));
    json_object_set_new(o, "descr", descr);
    json_object_set_new(o, "failargs", parts.failargs.len ? str_json(f, parts.failargs, scratch)
                                                          : json_null());
    if (parts.descr) {
        json_object_set_new(o, "descr_number", hex_json(parts.descr));
        uint32_t b = vjl_forest_bridge_of(f, parts.descr);
        if (b != VJL_NONE)
            json_object_set_new(o, "bridge",
                                json_integer((json_int_t)vjl_forest_trace(f, b)->id));
        uint64_t count = vjl_forest_descr_count(f, parts.descr);
        if (count)
            json_object_set_new(o, "count", json_integer((json_int_t)count));
    }
    if (stage == VJL_STAGE_ASM && parts.code.len)
        json_object_set_new(o, "asm", disassemble(cs, have_cs,
                                                  (const unsigned char *)vjl_str_ptr(f, parts.code),
                                                  parts.code.len,
                                                  t->addr_start + parts.code_offset));
    return o;
}

/* A merge point: where it is in its stage ("at": the number of ops before
 * it), what the log says of it, and its source line when the log has it. */
static json_t *mp_json(const jitlog *j, const vjl_merge_point *mp, text *scratch)
{
    const vjl_forest *f = j->forest;
    json_t *o = json_object();
    json_object_set_new(o, "at", json_integer((json_int_t)mp->op_index));
    json_object_set_new(o, "scope", mp_field(f, mp, SLOT_SCOPE, scratch));
    json_object_set_new(o, "line", mp_field(f, mp, SLOT_LINE, scratch));
    json_object_set_new(o, "opcode", mp_field(f, mp, SLOT_OPCODE, scratch));
    json_object_set_new(o, "index", mp_field(f, mp, SLOT_INDEX, scratch));
    uint64_t num;
    const vjl_source_line *src = NULL;
    if (mp_value(f, mp, SLOT_FILE, scratch, &num) == 's') {
        if (mp->kind[SLOT_LINE] == 'i')
            src = source_line(j, scratch->p, scratch->n, mp_line(mp));
        json_object_set_new(o, "file", text_json(scratch));
    } else {
        json_object_set_new(o, "file", json_null());
    }
    json_object_set_new(o, "source", src ? str_json(f, src->text, scratch) : json_null());
    json_object_set_new(o, "indent", src ? json_integer(src->indent) : json_null());
    return o;
}

static void get_trace(srv_request *req)
{
    char *end;
    errno = 0;
    const char *arg = req->args[1];
    unsigned long long id = strtoull(arg, &end, 10);
    if (!*arg || *end || errno || *arg == '-') {
        srv_reply_error(req, 400, "a trace is named by its id, a decimal number (not '%s')",
                        arg);
        return;
    }
    const jitlog *j = request_log(req);
    if (!j)
        return;
    const vjl_forest *f = j->forest;
    uint32_t ti = vjl_forest_find_trace(f, id);
    if (ti == VJL_NONE) {
        srv_cache_release_value(req->server->jitlogs, j);
        srv_reply_error(req, 404, "the jit log of run %s has no trace %llu", req->args[0], id);
        return;
    }
    const vjl_trace *t = vjl_forest_trace(f, ti);
    text scratch = {0};
    json_t *o = trace_item(j, ti, &scratch);
    json_object_set_new(o, "inputargs", str_json(f, t->inputargs, &scratch));
    json_object_set_new(o, "machine", str_json(f, vjl_forest_machine(f), &scratch));
    json_object_set_new(o, "addr", t->has_addr
                        ? json_pack("{s:o, s:o}", "start", hex_json(t->addr_start), "end",
                                    hex_json(t->addr_end))
                        : json_null());
    if (t->parent != VJL_NONE) {
        const vjl_trace *p = vjl_forest_trace(f, t->parent);
        uint64_t descr = t->stitched_descr ? t->stitched_descr : t->start_number;
        json_t *guard = json_pack("{s:I, s:s, s:o}", "id", (json_int_t)p->id, "stage",
                                  stage_names[main_stage(p)], "descr", hex_json(descr));
        json_object_set_new(guard, "op", t->parent_op != VJL_NONE
                                             ? json_integer((json_int_t)t->parent_op)
                                             : json_null());
        json_object_set_new(o, "guard", guard);
    } else {
        json_object_set_new(o, "guard", json_null());
    }
    cs_arch arch;
    cs_mode mode;
    csh cs = 0;
    int have_cs = disassembler_for(f, &arch, &mode) && cs_open(arch, mode, &cs) == CS_ERR_OK;
    json_object_set_new(o, "disassembled", json_boolean(have_cs));
    json_t *stages = json_object();
    for (int s = 0; s < VJL_STAGES; s++) {
        const vjl_stage *st = &t->stage[s];
        if (!st->present)
            continue;
        json_t *ops = json_array(), *mps = json_array();
        for (size_t i = 0; i < st->n_ops; i++)
            json_array_append_new(ops, op_json(j, t, &st->ops[i], i, s, cs, have_cs, &scratch));
        for (size_t i = 0; i < st->n_mps; i++)
            json_array_append_new(mps, mp_json(j, &st->mps[i], &scratch));
        json_object_set_new(stages, stage_names[s],
                            json_pack("{s:o, s:o}", "ops", ops, "merge_points", mps));
    }
    json_object_set_new(o, "stages", stages);
    if (have_cs)
        cs_close(&cs);
    free(scratch.p);
    srv_cache_release_value(req->server->jitlogs, j);
    srv_reply_json(req, 200, o);
}

const srv_route srv_jitlog_routes[] = {
    {"GET", "/api/runs/*/jitlog", SRV_BODY_NONE, get_jitlog, NULL, NULL, NULL},
    {"GET", "/api/runs/*/jitlog/traces", SRV_BODY_NONE, list_traces, NULL, NULL, NULL},
    {"GET", "/api/runs/*/jitlog/traces/*", SRV_BODY_NONE, get_trace, NULL, NULL, NULL},
    {NULL, NULL, 0, NULL, NULL, NULL, NULL},
};
