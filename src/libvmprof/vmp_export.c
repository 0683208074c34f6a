/* vmp_export.c - the export entry points, the export view and the per-thread
 * call tree the format files share (see vmp_export.h). */
#define _GNU_SOURCE /* fopencookie, open_memstream */
#include "vmp_export.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmp_array.h"
#include "vmp_format.h"
#include "vmp_hash.h"
#include "vmp_query.h"

typedef int (*format_writer)(const vmp_export_view *, FILE *, const vmp_export_options *,
                             vmp_error *);

static const struct {
    const char *name;
    format_writer write;
} formats[VMP_EXPORT_FORMAT_COUNT] = {
    [VMP_EXPORT_COLLAPSED] = {"collapsed", vmp_export_collapsed},
    [VMP_EXPORT_SPEEDSCOPE] = {"speedscope", vmp_export_speedscope},
    [VMP_EXPORT_PPROF] = {"pprof", vmp_export_pprof},
    [VMP_EXPORT_FIREFOX] = {"firefox", vmp_export_firefox},
    [VMP_EXPORT_HTML] = {"html", vmp_export_html},
};

int vmp_export_format_from_name(const char *name)
{
    int i;
    for (i = 0; i < VMP_EXPORT_FORMAT_COUNT; i++)
        if (name && strcmp(name, formats[i].name) == 0)
            return i;
    return -1;
}

const char *vmp_export_format_name(vmp_export_format format)
{
    return (unsigned)format < VMP_EXPORT_FORMAT_COUNT ? formats[format].name : "?";
}

const char *vmp_export_format_list(void)
{
    static char list[128];
    size_t i;
    if (!list[0])
        for (i = 0; i < VMP_EXPORT_FORMAT_COUNT; i++) {
            if (i)
                strcat(list, ", ");
            strcat(list, formats[i].name);
        }
    return list;
}

/* ---- the export view -------------------------------------------------------- */

typedef struct xview_priv {
    size_t funcs_cap, frames_cap, stacks_cap, arena_len, arena_cap;
    uint32_t *arena;      /* frame sequences of the view stacks */
    uint32_t *func_map;   /* profile function -> view func, VMP_NONE until used */
    size_t n_profile_funcs;
    vmp_u64map frame_map; /* func << 32 | line -> frame */
    int lines;            /* frames are per sampled line */
} xview_priv;

typedef struct xbuild {
    vmp_export_view *v;
    xview_priv *pv;
    uint32_t *stack_table;   /* view stacks by the hash of their content */
    size_t stack_table_cap;
    uint64_t *stack_hash;    /* per view stack */
    size_t stack_hash_cap;
} xbuild;

/* The view's func for a profile function: the view keeps only the functions
 * its stacks use, numbered in order of first use. */
static uint32_t func_for(xbuild *b, const vmp_func *funcs, uint32_t pf)
{
    vmp_export_view *v = b->v;
    if (b->pv->func_map[pf] != VMP_NONE)
        return b->pv->func_map[pf];
    if (vmp_array_grow((void **)&v->funcs, &b->pv->funcs_cap, v->n_funcs + 1, sizeof *v->funcs) < 0)
        return VMP_NONE;
    const vmp_func *f = &funcs[pf];
    uint32_t idx = (uint32_t)v->n_funcs++;
    v->funcs[idx] = (vmp_export_func){f->name, strlen(f->name), f->file, strlen(f->file),
                                      f->first_line, f->kind};
    b->pv->func_map[pf] = idx;
    return idx;
}

static uint32_t frame_for(xbuild *b, uint32_t func, uint32_t line)
{
    vmp_export_view *v = b->v;
    uint64_t key = (uint64_t)func << 32 | line;
    uint32_t idx;
    if (vmp_u64map_find(&b->pv->frame_map, key, &idx))
        return idx;
    if (vmp_array_grow((void **)&v->frames, &b->pv->frames_cap, v->n_frames + 1, sizeof *v->frames) < 0)
        return VMP_NONE;
    idx = (uint32_t)v->n_frames++;
    v->frames[idx].func = func;
    v->frames[idx].line = line;
    if (vmp_u64map_put(&b->pv->frame_map, key, idx) < 0)
        return VMP_NONE;
    return idx;
}

/* Interns (thread, seq[0..depth)) as a view stack; returns its index. */
static uint32_t stack_for(xbuild *b, uint32_t thread, const uint32_t *seq, uint32_t depth,
                          uint64_t count)
{
    vmp_export_view *v = b->v;
    xview_priv *pv = b->pv;
    uint64_t h = vmp_hash_bytes(seq, depth * sizeof *seq, thread);
    uint32_t idx;
    size_t mask = b->stack_table_cap - 1, i;
    for (i = h & mask; b->stack_table[i] != VMP_INDEX_FREE; i = (i + 1) & mask) {
        uint32_t k = b->stack_table[i];
        vmp_export_stack *xs = &v->stacks[k];
        if (b->stack_hash[k] == h && xs->thread == thread && xs->depth == depth &&
            memcmp(pv->arena + (size_t)(uintptr_t)xs->frames, seq, depth * sizeof *seq) == 0) {
            xs->count += count;
            return k;
        }
    }
    if (v->n_stacks >= VMP_INDEX_FREE - 1 ||
        vmp_array_grow((void **)&v->stacks, &pv->stacks_cap, v->n_stacks + 1, sizeof *v->stacks) < 0 ||
        vmp_array_grow((void **)&b->stack_hash, &b->stack_hash_cap, v->n_stacks + 1,
                       sizeof *b->stack_hash) < 0 ||
        vmp_array_grow((void **)&pv->arena, &pv->arena_cap, pv->arena_len + depth + 1, sizeof *pv->arena) <
            0)
        return VMP_NONE;
    idx = (uint32_t)v->n_stacks++;
    /* frames holds an arena offset until the arena stops growing */
    v->stacks[idx].frames = (const uint32_t *)(uintptr_t)pv->arena_len;
    v->stacks[idx].depth = depth;
    v->stacks[idx].thread = thread;
    v->stacks[idx].count = count;
    memcpy(pv->arena + pv->arena_len, seq, depth * sizeof *seq);
    pv->arena_len += depth;
    b->stack_hash[idx] = h;
    if ((v->n_stacks + 1) * 2 > b->stack_table_cap) {
        size_t ncap = b->stack_table_cap * 2;
        uint32_t *nt = vmp_index_table_new(ncap);
        if (!nt)
            return VMP_NONE;
        for (size_t k = 0; k < v->n_stacks; k++)
            nt[vmp_index_table_slot(nt, ncap, b->stack_hash[k])] = (uint32_t)k;
        free(b->stack_table);
        b->stack_table = nt;
        b->stack_table_cap = ncap;
    } else {
        b->stack_table[i] = idx;
    }
    return idx;
}

void vmp_export_view_free(vmp_export_view *v)
{
    xview_priv *pv = v->priv;
    if (pv) {
        free(pv->arena);
        free(pv->func_map);
        vmp_u64map_free(&pv->frame_map);
        free(pv);
    }
    free(v->funcs);
    free(v->frames);
    free(v->stacks);
    free(v->stack_map);
    free(v->thread_on);
    memset(v, 0, sizeof *v);
}

int vmp_export_view_build_query(vmp_export_view *v, const vmp_profile *p, const vmp_query *q,
                                 const char *title, vmp_error *err)
{
    static const vmp_query all;
    const vmp_profile_summary *sum = vmp_profile_get_summary(p);
    size_t n_threads = vmp_profile_thread_count(p), n_pstacks = vmp_profile_stack_count(p), i;
    size_t seq_cap = 0;
    uint32_t *seq = NULL;
    vmp_selection sel;
    vmp_path path = {0};
    xbuild b;
    int lines, rc = -1;

    if (!q)
        q = &all;
    memset(v, 0, sizeof *v);
    memset(&b, 0, sizeof b);
    if (vmp_query_select(p, q, &sel, err) < 0)
        return -1;
    v->profile = p;
    v->query = *q;
    v->sample_begin = sel.begin;
    v->sample_end = sel.end;
    b.v = v;
    b.pv = v->priv = calloc(1, sizeof(xview_priv));
    v->thread_on = calloc(n_threads ? n_threads : 1, 1);
    v->stack_map = malloc((n_pstacks ? n_pstacks : 1) * sizeof *v->stack_map);
    if (b.pv) {
        b.pv->n_profile_funcs = sel.n_funcs;
        b.pv->func_map = malloc((sel.n_funcs ? sel.n_funcs : 1) * sizeof *b.pv->func_map);
    }
    b.stack_table_cap = 1024;
    while (b.stack_table_cap < n_pstacks * 2)
        b.stack_table_cap *= 2;
    b.stack_table = vmp_index_table_new(b.stack_table_cap);
    if (!b.pv || !v->thread_on || !v->stack_map || !b.pv->func_map || !b.stack_table)
        goto oom;
    memset(b.pv->func_map, 0xff, (sel.n_funcs ? sel.n_funcs : 1) * sizeof *b.pv->func_map);
    for (i = 0; i < n_threads; i++)
        v->thread_on[i] = sel.thread == VMP_ALL_THREADS || sel.thread == i;
    lines = b.pv->lines = (q->frames & VMP_Q_LINES) && (sum->mode & VMP_MODE_LINES);

    for (i = 0; i < n_pstacks; i++) {
        vmp_stack st;
        uint32_t n = 0, idx;
        vmp_profile_stack_at(p, i, &st);
        v->stack_map[i] = VMP_EXPORT_NO_STACK;
        uint64_t cnt = vmp_selection_count(&sel, i, &st);
        if (st.thread_index >= n_threads || !v->thread_on[st.thread_index])
            continue;
        if (vmp_path_make(&sel, &st, &path) < 0 ||
            vmp_array_grow((void **)&seq, &seq_cap, path.n + 1, sizeof *seq) < 0)
            goto oom;
        for (size_t d = 0; d < path.n; d++) {
            uint32_t func = func_for(&b, sel.funcs, path.f[d].func), frame;
            if (func == VMP_NONE)
                goto oom;
            frame = frame_for(&b, func, lines && path.f[d].line ? path.f[d].line
                                                                : v->funcs[func].first_line);
            if (frame == VMP_NONE)
                goto oom;
            seq[n++] = frame;
        }
        if (!cnt && sel.ranged)
            continue; /* no sample of it in the range (its samples are not walked) */
        idx = stack_for(&b, st.thread_index, seq, n, cnt);
        if (idx == VMP_NONE)
            goto oom;
        v->stack_map[i] = idx;
        v->n_samples += cnt;
    }
    /* storage stopped moving: turn offsets into pointers */
    for (i = 0; i < v->n_stacks; i++)
        v->stacks[i].frames = b.pv->arena + (size_t)(uintptr_t)v->stacks[i].frames;
    if (title && *title)
        snprintf(v->title, sizeof v->title, "%s", title);
    else {
        /* the profiled command, when the writer recorded it (META "argv") */
        const char *argv = vmp_profile_meta_get(p, "argv");
        if (argv && *argv)
            snprintf(v->title, sizeof v->title, "%.120s - vmprof %s profile, %" PRIu64 " samples",
                     argv, sum->interp[0] ? sum->interp : "", sum->n_samples);
        else
            snprintf(v->title, sizeof v->title, "vmprof %s profile, %" PRIu64 " samples",
                     sum->interp[0] ? sum->interp : "", sum->n_samples);
    }
    rc = 0;
    goto out;
oom:
    vmp_error_set(err, -1, "out of memory while preparing the export; free memory or export one "
                           "thread (--thread)");
out:
    free(seq);
    vmp_path_free(&path);
    vmp_selection_free(&sel);
    free(b.stack_table);
    free(b.stack_hash);
    if (rc < 0)
        vmp_export_view_free(v);
    return rc;
}

/* The query that export options describe. */
static int query_of_options(const vmp_profile *p, const vmp_export_options *o, vmp_query *q,
                            vmp_error *err)
{
    memset(q, 0, sizeof *q);
    if (!o)
        return 0;
    if (o->has_thread) {
        size_t n_threads = vmp_profile_thread_count(p), i;
        for (i = 0; i < n_threads; i++)
            if (vmp_profile_thread_id(p, i) == o->thread_id)
                break;
        if (i == n_threads)
            return vmp_error_set(err, -1,
                                 "thread %" PRIu64 " (0x%" PRIx64 ") is not in the profile; it has %zu "
                                 "thread(s): pick one of those ids",
                                 o->thread_id, o->thread_id, n_threads);
        q->thread_set = 1;
        q->thread = (uint32_t)i;
    }
    if (o->lines)
        q->frames |= VMP_Q_LINES;
    if (o->no_native)
        q->frames |= VMP_Q_NO_NATIVE;
    return 0;
}

int vmp_export_view_build(vmp_export_view *v, const vmp_profile *p, const vmp_export_options *o,
                          vmp_error *err)
{
    vmp_query q;
    memset(v, 0, sizeof *v);
    if (query_of_options(p, o, &q, err) < 0)
        return -1;
    return vmp_export_view_build_query(v, p, &q, o ? o->title : NULL, err);
}

uint32_t vmp_export_view_node_frame(const vmp_export_view *v, const vmp_tree_node *n)
{
    const xview_priv *pv = v->priv;
    uint32_t idx;
    if (n->func >= pv->n_profile_funcs || pv->func_map[n->func] == VMP_NONE)
        return VMP_NONE;
    uint32_t func = pv->func_map[n->func];
    uint32_t line = pv->lines && n->line ? n->line : v->funcs[func].first_line;
    return vmp_u64map_find(&pv->frame_map, (uint64_t)func << 32 | line, &idx) ? idx : VMP_NONE;
}

void vmp_export_view_tree_query(const vmp_export_view *v, uint32_t thread, vmp_query *out)
{
    *out = v->query;
    out->root_path = NULL;
    out->root_path_len = 0;
    out->max_depth = 0;
    out->min_fraction = 0;
    out->frames &= ~VMP_Q_BY_ADDRESS; /* the view's frames are functions */
    if (thread != VMP_ALL_THREADS) {
        out->thread_set = 1;
        out->thread = thread;
    }
}

double vmp_export_view_period_ms(const vmp_export_view *v)
{
    const vmp_profile_summary *s = vmp_profile_get_summary(v->profile);
    return s->period_usec ? (double)s->period_usec / 1000.0 : 1.0;
}

double vmp_export_view_sample_ms(const vmp_export_view *v, uint64_t i)
{
    return vmp_profile_sample_ms(v->profile, i);
}

const char *vmp_export_view_thread_label(const vmp_export_view *v, uint32_t thread, char *buf,
                                         size_t size)
{
    snprintf(buf, size, "Thread %u (0x%" PRIx64 ")", thread + 1,
             vmp_profile_thread_id(v->profile, thread));
    return buf;
}

/* ---- entry points ----------------------------------------------------------- */

/* Writes the query's view of p in format to out, flushed. */
static int export_query(const vmp_profile *p, vmp_export_format format, const vmp_query *q,
                        const vmp_export_settings *settings, FILE *out, vmp_error *err)
{
    vmp_export_options o;
    vmp_query lq;
    vmp_export_view v;
    int rc;
    memset(&o, 0, sizeof o);
    if ((unsigned)format >= VMP_EXPORT_FORMAT_COUNT)
        return vmp_error_set(err, -1, "unknown export format %d; the formats are: %s", (int)format,
                             vmp_export_format_list());
    if (q)
        lq = *q;
    else
        memset(&lq, 0, sizeof lq);
    /* pprof and the Firefox Profiler keep functions and lines apart
     * themselves (a Location or frame per line, grouped by function), so a
     * lines-mode profile always gives them its lines */
    if (format == VMP_EXPORT_PPROF || format == VMP_EXPORT_FIREFOX)
        lq.frames |= VMP_Q_LINES;
    if (settings) {
        o.title = settings->title;
        o.html_min_fraction = settings->html_min_fraction;
    }
    o.lines = (lq.frames & VMP_Q_LINES) != 0;
    o.no_native = (lq.frames & VMP_Q_NO_NATIVE) != 0;
    if (vmp_export_view_build_query(&v, p, &lq, o.title, err) < 0)
        return -1;
    rc = formats[format].write(&v, out, &o, err);
    vmp_export_view_free(&v);
    if (fflush(out) != 0 || ferror(out)) {
        if (rc == 0)
            vmp_error_set(err, -1, "writing the %s export failed: %s; check the disk space and "
                                   "the output path",
                          formats[format].name, strerror(errno));
        return -1;
    }
    return rc;
}

int vmp_export_write(const vmp_profile *p, vmp_export_format format, FILE *out,
                     const vmp_export_options *options, vmp_error *err)
{
    vmp_query q;
    vmp_export_settings st = {options ? options->title : NULL,
                              options ? options->html_min_fraction : 0};
    if (query_of_options(p, options, &q, err) < 0)
        return -1;
    return export_query(p, format, &q, &st, out, err);
}

const char *vmp_export_formats(void)
{
    return vmp_export_format_list();
}

static ssize_t sink_write(void *cookie, const char *buf, size_t size)
{
    const vmp_sink *sink = cookie;
    if (sink->write(sink->ctx, buf, size) < 0) {
        errno = EIO;
        return -1;
    }
    return (ssize_t)size;
}

static int format_of(const char *format, vmp_error *err)
{
    int f = vmp_export_format_from_name(format);
    if (f < 0)
        vmp_error_set(err, -1, "unknown export format '%s'; choose one of: %s", format ? format : "",
                      vmp_export_format_list());
    return f;
}

int vmp_query_export(const vmp_profile *p, const vmp_query *q, const char *format,
                     const vmp_export_settings *settings, const vmp_sink *sink, vmp_error *err)
{
    vmp_error_clear(err);
    int f = format_of(format, err);
    if (f < 0)
        return -1;
    cookie_io_functions_t io = {NULL, sink_write, NULL, NULL};
    FILE *out = fopencookie((void *)sink, "w", io);
    if (!out)
        return vmp_error_set(err, -1, "out of memory while starting the export");
    int rc = export_query(p, (vmp_export_format)f, q, settings, out, err);
    if (fclose(out) != 0 && rc == 0)
        rc = vmp_error_set(err, -1, "the export's output refused the bytes");
    return rc;
}

int vmp_query_export_buffer(const vmp_profile *p, const vmp_query *q, const char *format,
                            const vmp_export_settings *settings, char **data, size_t *len,
                            vmp_error *err)
{
    vmp_error_clear(err);
    *data = NULL;
    *len = 0;
    int f = format_of(format, err);
    if (f < 0)
        return -1;
    FILE *out = open_memstream(data, len);
    if (!out)
        return vmp_error_set(err, -1, "out of memory while starting the export");
    int rc = export_query(p, (vmp_export_format)f, q, settings, out, err);
    if (fclose(out) != 0 && rc == 0)
        rc = vmp_error_set(err, -1, "out of memory while writing the export");
    if (rc < 0) {
        free(*data);
        *data = NULL;
        *len = 0;
    }
    return rc;
}

int vmp_export_write_fd(const vmp_profile *p, vmp_export_format format, int fd,
                        const vmp_export_options *options, vmp_error *err)
{
    int dup_fd = dup(fd), rc;
    FILE *out;
    if (dup_fd < 0 || !(out = fdopen(dup_fd, "wb"))) {
        if (dup_fd >= 0)
            close(dup_fd);
        return vmp_error_set(err, -1, "cannot write the export to file descriptor %d: %s", fd,
                             strerror(errno));
    }
    rc = vmp_export_write(p, format, out, options, err);
    if (fclose(out) != 0 && rc == 0)
        rc = vmp_error_set(err, -1, "writing the export failed: %s", strerror(errno));
    return rc;
}

int vmp_export_write_path(const vmp_profile *p, vmp_export_format format, const char *path,
                          const vmp_export_options *options, vmp_error *err)
{
    FILE *out = fopen(path, "wb");
    int rc;
    if (!out)
        return vmp_error_set(err, -1, "cannot create %s: %s; check that its folder exists and "
                                      "is writable",
                             path, strerror(errno));
    rc = vmp_export_write(p, format, out, options, err);
    if (fclose(out) != 0 && rc == 0)
        rc = vmp_error_set(err, -1, "writing %s failed: %s", path, strerror(errno));
    return rc;
}

/* ---- string table ----------------------------------------------------------- */

/* Strings live end to end in text; an index table over string indices finds
 * one by its hash, and a hit is confirmed by comparing the text. */
typedef struct xstrings_priv {
    uint32_t *table;   /* string indices; VMP_INDEX_FREE marks a free slot */
    size_t table_cap;
    uint64_t *hashes;  /* per string */
    size_t *offsets;   /* into text; count + 1 entries */
    size_t offsets_cap, hashes_cap;
    char *text;
    size_t text_len, text_cap;
} xstrings_priv;

int vmp_export_strings_init(vmp_export_strings *s)
{
    xstrings_priv *ps = calloc(1, sizeof *ps);
    s->count = 0;
    s->priv = ps;
    if (!ps || !(ps->table = vmp_index_table_new(1024)) ||
        vmp_array_grow((void **)&ps->offsets, &ps->offsets_cap, 1, sizeof *ps->offsets) < 0) {
        vmp_export_strings_free(s);
        return -1;
    }
    ps->table_cap = 1024;
    ps->offsets[0] = 0;
    return 0;
}

void vmp_export_strings_free(vmp_export_strings *s)
{
    xstrings_priv *ps = s->priv;
    if (ps) {
        free(ps->table);
        free(ps->hashes);
        free(ps->offsets);
        free(ps->text);
        free(ps);
    }
    s->priv = NULL;
    s->count = 0;
}

uint32_t vmp_export_strings_add(vmp_export_strings *s, const char *str, size_t len)
{
    xstrings_priv *ps = s->priv;
    uint64_t h = vmp_hash_bytes(str, len, 11);
    size_t mask = ps->table_cap - 1, j;
    for (j = h & mask; ps->table[j] != VMP_INDEX_FREE; j = (j + 1) & mask) {
        uint32_t i = ps->table[j];
        size_t off = ps->offsets[i];
        if (ps->hashes[i] == h && ps->offsets[i + 1] - off - 1 == len &&
            memcmp(ps->text + off, str, len) == 0)
            return i;
    }
    if (s->count >= VMP_EXPORT_STRINGS_FAILED - 1 ||
        vmp_array_grow((void **)&ps->text, &ps->text_cap, ps->text_len + len + 1, 1) < 0 ||
        vmp_array_grow((void **)&ps->offsets, &ps->offsets_cap, s->count + 2, sizeof *ps->offsets) < 0 ||
        vmp_array_grow((void **)&ps->hashes, &ps->hashes_cap, s->count + 1, sizeof *ps->hashes) < 0)
        return VMP_EXPORT_STRINGS_FAILED;
    if ((s->count + 1) * 2 > ps->table_cap) {
        size_t ncap = ps->table_cap * 2;
        uint32_t *nt = vmp_index_table_new(ncap);
        if (!nt)
            return VMP_EXPORT_STRINGS_FAILED;
        for (size_t i = 0; i < s->count; i++)
            nt[vmp_index_table_slot(nt, ncap, ps->hashes[i])] = (uint32_t)i;
        free(ps->table);
        ps->table = nt;
        ps->table_cap = ncap;
    }
    memcpy(ps->text + ps->text_len, str, len);
    ps->text_len += len;
    ps->text[ps->text_len++] = '\0';
    uint32_t idx = (uint32_t)s->count++;
    ps->offsets[s->count] = ps->text_len;
    ps->hashes[idx] = h;
    ps->table[vmp_index_table_slot(ps->table, ps->table_cap, h)] = idx;
    return idx;
}

const char *vmp_export_strings_get(const vmp_export_strings *s, size_t i, size_t *len)
{
    const xstrings_priv *ps = s->priv;
    *len = ps->offsets[i + 1] - ps->offsets[i] - 1;
    return ps->text + ps->offsets[i];
}

size_t vmp_export_view_frame_label(const vmp_export_view *v, uint32_t frame, char *buf, size_t size)
{
    const vmp_export_frame *fr = &v->frames[frame];
    const vmp_export_func *f = &v->funcs[fr->func];
    int n;
    if (f->file_len)
        n = snprintf(buf, size, "%.*s (%.*s:%u)", (int)f->name_len, f->name, (int)f->file_len,
                     f->file, fr->line);
    else
        n = snprintf(buf, size, "%.*s", (int)f->name_len, f->name);
    if (n < 0)
        n = 0;
    return (size_t)n < size ? (size_t)n : size - 1;
}
