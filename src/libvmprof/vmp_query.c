/*
 * vmp_query.c - the query layer of vmprof.h: every view of a profile (call
 * tree, per-function counts, callers and callees, lines, memory, the diff of
 * two profiles) is built here, from the profile's unique stacks, once per
 * question.
 *
 * Each query goes the same way:
 *   1. the selection: which samples (thread, sample or time range) become a
 *      count per unique stack; without a range that is the stack's own count,
 *      with one the sample sequence in the range is counted once;
 *   2. the path: each selected stack's frames as the query sees them (the
 *      runner's frames dropped, frames filtered, recursion merged), as a
 *      sequence of ids: function indices, or code indices by address;
 *   3. the builder of the result walks the paths with their counts.
 * Nothing here depends on the sample count beyond step 1, so a query on a
 * million-sample profile costs what its distinct stacks cost.
 */
#define _GNU_SOURCE /* qsort_r */
#include "vmprof.h"

#include <stdlib.h>
#include <string.h>

#include "vmp_array.h"
#include "vmp_error.h"
#include "vmp_format.h"
#include "vmp_hash.h"
#include "vmp_name.h"
#include "vmp_profile.h"
#include "vmp_query.h"

/* ---- 1. selection ----------------------------------------------------------- */

/* First sample index whose time is at or after ms. */
static uint64_t sample_at_ms(const vmp_profile *p, uint64_t n, double ms)
{
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (vmp_profile_sample_ms(p, mid) < ms)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int vmp_query_select(const vmp_profile *p, const vmp_query *q, vmp_selection *sel,
                     vmp_error *err)
{
    static const vmp_query all;
    size_t n_stacks = vmp_profile_stack_count(p), n_threads = vmp_profile_thread_count(p);
    uint64_t n = vmp_profile_get_summary(p)->n_samples;
    memset(sel, 0, sizeof *sel);
    if (!q)
        q = &all;
    sel->q = q;
    sel->p = p;
    sel->thread = VMP_ALL_THREADS;
    if (q->thread_set && q->thread != VMP_ALL_THREADS) {
        if (q->thread >= n_threads)
            return vmp_error_set(err, -1, "thread index %u is not in the profile, which has %zu "
                                          "thread(s); pick an index below %zu",
                                 q->thread, n_threads, n_threads);
        sel->thread = q->thread;
    }
    if (vmp_profile_check_resolved(p) < 0)
        return vmp_error_set(err, -1, "out of memory while resolving the profile's functions");
    sel->funcs = vmp_profile_funcs(p, &sel->n_funcs);
    sel->codes = vmp_profile_codes(p, &sel->n_codes);
    sel->begin = 0;
    sel->end = n;
    if (q->sample_range_set) {
        if (q->sample_begin > q->sample_end)
            return vmp_error_set(err, -1, "the sample range [%llu, %llu) is empty backwards; give "
                                          "begin <= end",
                                 (unsigned long long)q->sample_begin,
                                 (unsigned long long)q->sample_end);
        sel->begin = q->sample_begin < n ? q->sample_begin : n;
        sel->end = q->sample_end < n ? q->sample_end : n;
    }
    if (q->time_range_set) {
        if (!(q->time_begin_ms <= q->time_end_ms))
            return vmp_error_set(err, -1, "the time range [%g, %g) ms is empty backwards; give "
                                          "begin <= end",
                                 q->time_begin_ms, q->time_end_ms);
        uint64_t b = sample_at_ms(p, n, q->time_begin_ms), e = sample_at_ms(p, n, q->time_end_ms);
        if (b > sel->begin)
            sel->begin = b;
        if (e < sel->end)
            sel->end = e;
        if (sel->begin > sel->end)
            sel->end = sel->begin;
    }
    sel->ranged = sel->begin != 0 || sel->end != n;
    if (sel->ranged) {
        sel->counts = calloc(n_stacks ? n_stacks : 1, sizeof *sel->counts);
        if (!sel->counts)
            return vmp_error_set(err, -1, "out of memory while selecting samples");
        for (uint64_t i = sel->begin; i < sel->end; i++)
            sel->counts[vmp_profile_sample_stack(p, i)]++;
    }
    for (size_t i = 0; i < n_stacks; i++) {
        vmp_stack st;
        vmp_profile_stack_at(p, i, &st);
        sel->total += vmp_selection_count(sel, i, &st);
    }
    return 0;
}

void vmp_selection_free(vmp_selection *sel)
{
    free(sel->counts);
    sel->counts = NULL;
}

uint64_t vmp_query_count(const vmp_profile *p, const vmp_query *q, vmp_error *err)
{
    vmp_selection sel;
    if (vmp_query_select(p, q, &sel, err) < 0)
        return 0;
    vmp_selection_free(&sel);
    return sel.total;
}

/* ---- 2. paths ------------------------------------------------------------------ */

static int is_python_frame(uint8_t kind)
{
    return kind == VMP_FRAME_PYTHON || kind == VMP_FRAME_JIT;
}

int vmp_path_append(const vmp_selection *sel, const vmp_stack *st, vmp_path *out)
{
    unsigned flags = sel->q->frames;
    int by_addr = (flags & VMP_Q_BY_ADDRESS) != 0;
    uint32_t from = (flags & VMP_Q_KEEP_RUNNER) ? 0 : st->runner_frames;
    size_t first = out->n;
    if (st->depth > out->cap - out->n) {
        size_t cap = out->cap ? out->cap : 64;
        while (cap - out->n < st->depth)
            cap *= 2;
        vmp_path_frame *f = realloc(out->f, cap * sizeof *f);
        if (!f)
            return -1;
        out->f = f;
        out->cap = cap;
    }
    for (uint32_t i = from; i < st->depth; i++) {
        const vmp_code *c = &sel->codes[st->codes[i]];
        const vmp_func *fn = &sel->funcs[c->func];
        uint8_t kind = st->frames[i].kind;
        /* an id named by a native-symbol record is native whatever its
         * frame says (the eval trampoline of the original's 3.9/3.10 files) */
        if ((flags & VMP_Q_PYTHON_ONLY) &&
            (!is_python_frame(kind) || fn->kind == VMP_FRAME_NATIVE || fn->runner == VMP_NAME_STARTUP))
            continue;
        if ((flags & VMP_Q_NO_NATIVE) && fn->kind == VMP_FRAME_NATIVE)
            continue;
        if ((flags & VMP_Q_HIDE_INTERPRETER) && fn->interpreter)
            continue;
        vmp_path_frame pf;
        pf.func = c->func;
        pf.line = st->frames[i].line;
        if (by_addr) {
            pf.addr = c->addr;
            pf.kind = (flags & VMP_Q_PYTHON_ONLY) ? VMP_FRAME_PYTHON : kind;
            pf.id = st->codes[i];
            if (pf.kind != c->kind) {
                /* python only: a JIT frame is its interpreted code's node */
                uint32_t other = vmp_profile_code_find(sel->p, c->addr, pf.kind);
                if (other != VMP_NONE)
                    pf.id = other;
            }
        } else {
            pf.addr = fn->addr;
            pf.kind = fn->kind;
            pf.id = c->func;
        }
        if (out->n > first && (flags & VMP_Q_MERGE_RECURSION)) {
            vmp_path_frame *last = &out->f[out->n - 1];
            if (last->id == pf.id && last->kind == pf.kind &&
                (!(flags & VMP_Q_LINES) || last->line == pf.line)) {
                last->line = pf.line; /* the innermost line of the run */
                continue;
            }
        }
        out->f[out->n++] = pf;
    }
    return 0;
}

int vmp_path_make(const vmp_selection *sel, const vmp_stack *st, vmp_path *out)
{
    out->n = 0;
    return vmp_path_append(sel, st, out);
}

void vmp_path_free(vmp_path *path)
{
    free(path->f);
    path->f = NULL;
    path->cap = path->n = 0;
}

int vmp_path_next(const vmp_selection *sel, vmp_path_walk *w)
{
    size_t n_stacks = vmp_profile_stack_count(sel->p);
    while (w->next < n_stacks) {
        size_t i = w->next++;
        vmp_profile_stack_at(sel->p, i, &w->stack);
        w->count = vmp_selection_count(sel, i, &w->stack);
        if (!w->count)
            continue;
        w->index = i;
        return vmp_path_make(sel, &w->stack, &w->path) < 0 ? -1 : 1;
    }
    return 0;
}

void vmp_result_free(void *result)
{
    free(result);
}

/* ---- 3a. the call tree ------------------------------------------------------------ */

/* The tree is built without a table of children and without working nodes:
 * the selected paths are sorted by their frames, so the stacks under any node
 * are one run of that order, and each node's children are runs within its
 * own.  The result's nodes are then written once, in their final order (depth
 * first, children by weight), straight into the result block: a node is
 * emitted when its run is taken from a stack of runs still to visit, its run
 * is scanned once (its own samples, its lines, its children's runs), and the
 * children it keeps are pushed.  Every frame of every path is looked at once
 * for sorting and once per level it reaches, and memory is the paths plus
 * the result. */

/* A frame of a kept path: what tells nodes apart (vmp_path_frame.id) and
 * its line; the rest of a node is looked up from the id when it is written. */
typedef struct tframe {
    uint32_t id, line;
} tframe;

/* A selected stack of either profile, its path in the builder's frames. */
typedef struct tstack {
    size_t off;          /* its frames under the root path: frames[off, off + len) */
    uint64_t count;      /* its selected samples */
    uint32_t len;        /* frames kept: one level under max_depth at most */
    uint32_t order;      /* the order stacks were walked in (a's, then b's): the
                            first stack through a node names it */
    uint32_t py;         /* meta: the level of its innermost Python frame, 0 none */
    uint32_t stack;      /* its unique stack in its profile */
    uint16_t meta_kinds; /* meta: bit k: count goes to that node's meta[k] */
    uint8_t from_b;      /* diff: a stack of the second profile */
} tstack;

/* A node to write: the run [lo, hi) of sorted stacks that pass through it. */
typedef struct trun {
    uint32_t lo, hi;
    uint32_t parent, depth;
    uint32_t rep;        /* the run's stack that was walked first (names the node) */
    uint64_t total, total_b;
} trun;

typedef struct tbuild {
    const vmp_selection *sel;   /* a's (the tree's) selection */
    const vmp_func *funcs_b;    /* diff: b's functions, indices from sel->n_funcs */
    tframe *frames;             /* the kept frames of every selected path */
    size_t n_frames, frames_cap;
    vmp_path path;              /* one path as the query sees it */
    tstack *stacks;
    size_t n_stacks, stacks_cap;
    int lines_in_key, with_lines, by_addr, python_only, diff;
    int root_named;             /* some matched path goes on under the root path */
    /* while writing */
    trun *runs;
    size_t n_runs, runs_cap;
    vmp_line_count *lines;
    size_t n_lines, lines_cap;
    uint64_t (*meta)[VMP_FRAME_KIND_COUNT];
    size_t n_meta, meta_cap;
    vmp_tree_counts *counts_b;  /* diff: b's counts per node written */
    uint32_t *leaves;           /* vmp_query_tree_leaves: per unique stack, its node */
} tbuild;

/* PyPy: the kinds of the non-Python frames under the innermost Python frame,
 * to be charged to that frame's node (as the original's meta): bit k set
 * adds the samples to meta[k]. */
static uint16_t meta_kinds(const vmp_stack *st)
{
    unsigned tail = 0;
    int inner_py = -1;
    for (uint32_t i = st->depth; i-- > 0;) {
        if (is_python_frame(st->frames[i].kind)) {
            inner_py = (int)i;
            break;
        }
        if (st->frames[i].kind < VMP_FRAME_KIND_COUNT)
            tail |= 1u << st->frames[i].kind;
    }
    if (inner_py < 0)
        return 0;
    unsigned warm_kinds = (1u << VMP_FRAME_JIT_TRACING) | (1u << VMP_FRAME_BLACKHOLE);
    int jit = st->frames[inner_py].kind == VMP_FRAME_JIT && !(tail & warm_kinds);
    unsigned m = tail & ~((1u << VMP_FRAME_PYTHON) | (1u << VMP_FRAME_JIT));
    if (jit)
        m |= 1u << VMP_FRAME_JIT;
    return (uint16_t)m;
}

/* Adds the selected stacks of one profile: each path that starts with the
 * root path, what follows the root path cut one level under max_depth.  b's
 * functions are a's through func_map.  *matched: the most root path steps
 * any path had; *samples: the samples of the paths kept. */
static int tree_collect(tbuild *b, const vmp_selection *sel, int from_b,
                        const uint32_t *func_map, size_t *matched, uint64_t *samples)
{
    const vmp_query *q = b->sel->q; /* the tree's shape is a's query's */
    size_t n_stacks = vmp_profile_stack_count(sel->p);
    for (size_t i = 0; i < n_stacks; i++) {
        vmp_stack st;
        vmp_profile_stack_at(sel->p, i, &st);
        uint64_t cnt = vmp_selection_count(sel, i, &st);
        if (!cnt)
            continue;
        if (vmp_path_make(sel, &st, &b->path) < 0)
            return -1;
        vmp_path_frame *f = b->path.f;
        size_t n = b->path.n, start = q->root_path_len;
        if (func_map)
            for (size_t k = 0; k < n; k++)
                f[k].id = f[k].func = func_map[f[k].func];
        if (start) {
            size_t k = 0;
            while (k < start && k < n && f[k].func == q->root_path[k])
                k++;
            if (k > *matched)
                *matched = k;
            if (k < start)
                continue;
        }
        *samples += cnt;
        size_t len = n - start, keep = len;
        if (sel->q->max_depth && len > (size_t)sel->q->max_depth + 1)
            keep = (size_t)sel->q->max_depth + 1;
        uint32_t py = 0;
        uint16_t kinds = 0;
        if (keep == len) /* a cut path charges no meta: its innermost frame is gone */
            for (size_t k = len; k-- > 0;)
                if (is_python_frame(f[start + k].kind)) {
                    py = (uint32_t)k + 1;
                    kinds = meta_kinds(&st);
                    break;
                }
        if (len)
            b->root_named = 1;
        size_t base = b->n_frames;
        /* (one more: frames is never NULL once a path is kept, even empty) */
        if (vmp_array_grow((void **)&b->frames, &b->frames_cap, base + keep + 1,
                           sizeof *b->frames) < 0)
            return -1;
        for (size_t k = 0; k < keep; k++)
            b->frames[base + k] = (tframe){f[start + k].id, f[start + k].line};
        b->n_frames = base + keep;
        if (b->n_stacks >= VMP_NONE - 1 ||
            vmp_array_grow((void **)&b->stacks, &b->stacks_cap, b->n_stacks + 1,
                           sizeof *b->stacks) < 0)
            return -1;
        b->stacks[b->n_stacks] = (tstack){base, cnt, (uint32_t)keep, (uint32_t)b->n_stacks, py,
                                          (uint32_t)i, kinds, (uint8_t)from_b};
        b->n_stacks++;
    }
    return 0;
}

/* Two frames are one node's when their ids (and lines, as nodes) agree. */
static inline int same_node_frame(const tbuild *b, const tframe *x, const tframe *y)
{
    return x->id == y->id && (!b->lines_in_key || x->line == y->line);
}

static int cmp_tstack(const void *x, const void *y, void *ctx)
{
    const tbuild *b = ctx;
    const tstack *s = x, *t = y;
    const tframe *f = b->frames + s->off, *g = b->frames + t->off;
    uint32_t n = s->len < t->len ? s->len : t->len;
    for (uint32_t i = 0; i < n; i++) {
        if (f[i].id != g[i].id)
            return f[i].id < g[i].id ? -1 : 1;
        if (b->lines_in_key && f[i].line != g[i].line)
            return f[i].line < g[i].line ? -1 : 1;
    }
    if (s->len != t->len)
        return s->len < t->len ? -1 : 1;
    return s->order < t->order ? -1 : s->order > t->order;
}

static const vmp_func *tb_func(const tbuild *b, uint32_t f)
{
    return f < b->sel->n_funcs ? &b->sel->funcs[f] : &b->funcs_b[f - b->sel->n_funcs];
}

/* The frame that names run r's node (at its depth, 1 or more). */
static inline const tframe *run_frame(const tbuild *b, const trun *r)
{
    return &b->frames[b->stacks[r->rep].off + r->depth - 1];
}

/* What a node of frame f is: its function, code id and kind. */
static void frame_node(const tbuild *b, const tframe *f, vmp_tree_node *nd)
{
    if (b->by_addr) {
        const vmp_code *c = &b->sel->codes[f->id];
        nd->func = c->func;
        nd->addr = c->addr;
        nd->kind = b->python_only ? VMP_FRAME_PYTHON : c->kind;
    } else {
        const vmp_func *fn = tb_func(b, f->id);
        nd->func = f->id;
        nd->addr = fn->addr;
        nd->kind = fn->kind;
    }
    nd->line = b->lines_in_key ? f->line : 0;
}

/* Siblings: by weight descending; then by address and kind, or by name,
 * file and line; then the one walked first. */
static int cmp_run(const void *x, const void *y, void *ctx)
{
    const tbuild *b = ctx;
    const trun *r = x, *s = y;
    uint64_t wr = r->total + r->total_b, ws = s->total + s->total_b;
    if (wr != ws)
        return wr > ws ? -1 : 1;
    const tframe *f = run_frame(b, r), *g = run_frame(b, s);
    if (b->by_addr) {
        vmp_tree_node nf, ng;
        frame_node(b, f, &nf);
        frame_node(b, g, &ng);
        if (nf.addr != ng.addr)
            return nf.addr < ng.addr ? -1 : 1;
        if (nf.kind != ng.kind)
            return nf.kind < ng.kind ? -1 : 1;
    } else {
        const vmp_func *ff = tb_func(b, f->id), *fg = tb_func(b, g->id);
        int c = strcmp(ff->name, fg->name);
        if (c)
            return c;
        if ((c = strcmp(ff->file, fg->file)))
            return c;
        uint32_t lf = b->lines_in_key ? f->line : 0, lg = b->lines_in_key ? g->line : 0;
        if (lf != lg)
            return lf < lg ? -1 : 1;
    }
    uint32_t of = b->stacks[r->rep].order, og = b->stacks[s->rep].order;
    return of < og ? -1 : of > og;
}

/* The runs are popped from the end: the first child goes last. */
static int cmp_run_reversed(const void *x, const void *y, void *ctx)
{
    return cmp_run(y, x, ctx);
}

static int cmp_line_count(const void *x, const void *y)
{
    const vmp_line_count *a = x, *c = y;
    return a->line < c->line ? -1 : a->line > c->line;
}

/* Scans run r (its node written at index at): its own samples, lines and
 * meta, and its children's runs, pushed (kept ones) onto b->runs. */
static int tree_scan_run(tbuild *b, vmp_tree *t, uint32_t at, const trun *r, uint32_t max_depth,
                         double thr, double thr_b)
{
    vmp_tree_node *nd = &t->nodes[at];
    uint64_t meta[VMP_FRAME_KIND_COUNT] = {0};
    int has_meta = 0, cut_here = max_depth && r->depth >= max_depth;
    size_t lines_from = b->n_lines, runs_from = b->n_runs;
    trun *child = NULL;
    for (uint32_t k = r->lo; k < r->hi; k++) {
        const tstack *s = &b->stacks[k];
        const tframe *f = b->frames + s->off;
        if (b->with_lines && r->depth && f[r->depth - 1].line) {
            if (vmp_array_grow((void **)&b->lines, &b->lines_cap, b->n_lines + 1,
                               sizeof *b->lines) < 0)
                return -1;
            b->lines[b->n_lines++] =
                (vmp_line_count){.line = f[r->depth - 1].line, .node = at, .count = s->count};
        }
        if (s->py == r->depth && s->meta_kinds) {
            has_meta = 1;
            for (int kind = 1; kind < VMP_FRAME_KIND_COUNT; kind++)
                if (s->meta_kinds & (1u << kind))
                    meta[kind] += s->count;
        }
        if (s->len == r->depth) { /* ends here: the shortest come first */
            if (b->leaves)
                b->leaves[s->stack] = at;
            if (s->from_b)
                b->counts_b[at].self += s->count;
            else
                nd->self += s->count;
            continue;
        }
        if (!child || !same_node_frame(b, &f[r->depth], run_frame(b, child))) {
            if (vmp_array_grow((void **)&b->runs, &b->runs_cap, b->n_runs + 1, sizeof *b->runs) < 0)
                return -1;
            child = &b->runs[b->n_runs++];
            *child = (trun){k, k, at, r->depth + 1, k, 0, 0};
        }
        child->hi = k + 1;
        if (s->from_b)
            child->total_b += s->count;
        else
            child->total += s->count;
        if (s->order < b->stacks[child->rep].order)
            child->rep = k;
    }
    /* children under the depth or the share are cut, what they hold counted */
    size_t kept = runs_from;
    for (size_t i = runs_from; i < b->n_runs; i++) {
        const trun *c = &b->runs[i];
        if (!cut_here && ((double)c->total >= thr || (b->diff && (double)c->total_b >= thr_b))) {
            b->runs[kept++] = *c;
        } else {
            nd->cut += c->total;
            nd->n_cut++;
        }
    }
    b->n_runs = kept;
    if (kept - runs_from > 1)
        qsort_r(b->runs + runs_from, kept - runs_from, sizeof *b->runs, cmp_run_reversed, b);
    /* lines by line, each once */
    size_t nl = b->n_lines - lines_from;
    if (nl) {
        vmp_line_count *l = b->lines + lines_from;
        if (nl > 1)
            qsort(l, nl, sizeof *l, cmp_line_count);
        size_t w = 0;
        for (size_t i = 0; i < nl; i++) {
            if (w && l[w - 1].line == l[i].line)
                l[w - 1].count += l[i].count;
            else
                l[w++] = l[i];
        }
        b->n_lines = lines_from + w;
    }
    if (has_meta) {
        if (vmp_array_grow((void **)&b->meta, &b->meta_cap, b->n_meta + 1, sizeof *b->meta) < 0)
            return -1;
        memcpy(b->meta[b->n_meta], meta, sizeof meta);
        nd->meta = (uint32_t)b->n_meta++;
    }
    return 0;
}

static void tbuild_free(tbuild *b)
{
    free(b->frames);
    vmp_path_free(&b->path);
    free(b->stacks);
    free(b->counts_b);
    free(b->runs);
    free(b->lines);
    free(b->meta);
}

static void tbuild_init(tbuild *b, const vmp_selection *sel)
{
    memset(b, 0, sizeof *b);
    b->sel = sel;
    b->lines_in_key = (sel->q->frames & VMP_Q_LINES) != 0;
    b->with_lines = !b->lines_in_key; /* lines of a node, where lines are not nodes */
    b->by_addr = (sel->q->frames & VMP_Q_BY_ADDRESS) != 0;
    b->python_only = (sel->q->frames & VMP_Q_PYTHON_ONLY) != 0;
}

/* Sorts the collected paths and writes the tree: nodes pruned by max_depth
 * and min_fraction (of samples, and samples_b in a diff; of the root's counts
 * with min_of_root), depth first with
 * children by weight, in one block with its lines and meta. */
static vmp_tree *tree_write(tbuild *b, const vmp_profile *pa, const vmp_profile *pb,
                            uint64_t samples, uint64_t samples_b, vmp_error *err)
{
    const vmp_query *q = b->sel->q;
    vmp_tree *t = NULL;
    if (b->n_stacks > 1)
        qsort_r(b->stacks, b->n_stacks, sizeof *b->stacks, cmp_tstack, b);
    /* at most a node per kept frame: room that is never written is never
     * touched (and given back below) */
    size_t cap = b->n_frames + 1;
    if (cap >= VMP_NONE)
        goto oom;
    t = malloc(sizeof *t + cap * sizeof *t->nodes);
    if (!t || (b->diff && !(b->counts_b = malloc(cap * sizeof *b->counts_b))))
        goto oom;
    memset(t, 0, sizeof *t);
    t->profile = pa;
    t->profile_b = pb;
    t->nodes = (vmp_tree_node *)(t + 1);
    t->samples = samples;
    t->samples_b = samples_b;
    trun root = {0, (uint32_t)b->n_stacks, VMP_NONE, 0, 0, 0, 0};
    for (size_t k = 0; k < b->n_stacks; k++) {
        if (b->stacks[k].from_b)
            root.total_b += b->stacks[k].count;
        else
            root.total += b->stacks[k].count;
    }
    /* a share of the selection, or of the root (what a view of that node draws) */
    double of = q->min_of_root ? (double)root.total : (double)samples;
    double of_b = q->min_of_root ? (double)root.total_b : (double)samples_b;
    double thr = q->min_fraction > 0 ? q->min_fraction * of : 0;
    double thr_b = q->min_fraction > 0 ? q->min_fraction * of_b : 0;
    if (vmp_array_grow((void **)&b->runs, &b->runs_cap, 1, sizeof *b->runs) < 0)
        goto oom;
    b->runs[b->n_runs++] = root;
    size_t out = 0;
    while (b->n_runs) {
        trun r = b->runs[--b->n_runs];
        uint32_t at = (uint32_t)out++;
        vmp_tree_node *nd = &t->nodes[at];
        memset(nd, 0, sizeof *nd);
        if (r.depth)
            frame_node(b, run_frame(b, &r), nd);
        else
            nd->func = VMP_NONE;
        nd->parent = r.parent;
        nd->first_child = nd->next_sibling = VMP_NONE;
        nd->depth = r.depth;
        nd->total = r.total;
        if (b->diff)
            b->counts_b[at] = (vmp_tree_counts){r.total_b, 0};
        nd->meta = VMP_NONE;
        if (tree_scan_run(b, t, at, &r, q->max_depth, thr, thr_b) < 0)
            goto oom;
    }
    t->n_nodes = out;
    /* link children: each node's children were written in order */
    for (size_t k = out; k-- > 1;) {
        vmp_tree_node *c = &t->nodes[k], *par = &t->nodes[c->parent];
        c->next_sibling = par->first_child;
        par->first_child = (uint32_t)k;
        par->n_children++;
    }
    /* b's counts, the lines and meta after the nodes, in the same block */
    size_t n_b = b->diff ? out : 0;
    size_t size = sizeof *t + out * sizeof *t->nodes + n_b * sizeof *t->b +
                  b->n_lines * sizeof *t->lines + b->n_meta * sizeof *t->meta;
    vmp_tree *grown = realloc(t, size);
    if (!grown)
        goto oom;
    t = grown;
    t->nodes = (vmp_tree_node *)(t + 1);
    if (n_b) {
        t->b = (vmp_tree_counts *)(t->nodes + out);
        memcpy(t->b, b->counts_b, n_b * sizeof *t->b);
    }
    t->lines = (vmp_line_count *)((char *)(t->nodes + out) + n_b * sizeof *t->b);
    t->n_lines = b->n_lines;
    if (b->n_lines)
        memcpy(t->lines, b->lines, b->n_lines * sizeof *t->lines);
    t->meta = (uint64_t(*)[VMP_FRAME_KIND_COUNT])(t->lines + b->n_lines);
    t->n_meta = b->n_meta;
    if (b->n_meta)
        memcpy(t->meta, b->meta, b->n_meta * sizeof *t->meta);
    return t;
oom:
    free(t);
    vmp_error_set(err, -1, "out of memory while building the call tree");
    return NULL;
}

static int root_path_error(const vmp_selection *sel, size_t matched, vmp_error *err)
{
    const vmp_query *q = sel->q;
    uint32_t f = q->root_path[matched];
    if (f >= sel->n_funcs)
        return vmp_error_set(err, -1, "root path step %zu names function %u, but the profile has "
                                      "%zu functions",
                             matched + 1, f, sel->n_funcs);
    return vmp_error_set(err, -1, "root path step %zu (%s) is not called there in the selected "
                                  "samples; shorten the path",
                         matched + 1, sel->funcs[f].name);
}

vmp_tree *vmp_query_tree(const vmp_profile *p, const vmp_query *q, vmp_error *err)
{
    return vmp_query_tree_leaves(p, q, NULL, err);
}

vmp_tree *vmp_query_tree_leaves(const vmp_profile *p, const vmp_query *q, uint32_t **leaves,
                                vmp_error *err)
{
    vmp_selection sel;
    tbuild b;
    vmp_tree *t = NULL;
    size_t matched = 0;
    uint64_t samples = 0;
    vmp_error_clear(err);
    if (leaves)
        *leaves = NULL;
    if (vmp_query_select(p, q, &sel, err) < 0)
        return NULL;
    tbuild_init(&b, &sel);
    if (leaves) {
        size_t n = vmp_profile_stack_count(p);
        b.leaves = malloc((n ? n : 1) * sizeof *b.leaves);
        if (!b.leaves) {
            vmp_error_set(err, -1, "out of memory while building the call tree");
            goto out;
        }
        memset(b.leaves, 0xff, (n ? n : 1) * sizeof *b.leaves);
    }
    if (tree_collect(&b, &sel, 0, NULL, &matched, &samples) < 0) {
        vmp_error_set(err, -1, "out of memory while building the call tree");
        goto out;
    }
    if (sel.q->root_path_len && !samples && sel.total) {
        root_path_error(&sel, matched, err);
        goto out;
    }
    t = tree_write(&b, p, NULL, sel.total, 0, err);
    if (t && sel.q->root_path_len && b.root_named) {
        /* the root is the path's last node: name it */
        uint32_t fi = sel.q->root_path[sel.q->root_path_len - 1];
        t->nodes[0].func = fi;
        t->nodes[0].addr = sel.funcs[fi].addr;
        t->nodes[0].kind = sel.funcs[fi].kind;
    }
out:
    if (t && leaves) {
        *leaves = b.leaves;
        b.leaves = NULL;
    }
    free(b.leaves);
    tbuild_free(&b);
    vmp_selection_free(&sel);
    return t;
}

const vmp_func *vmp_tree_func(const vmp_tree *t, uint32_t node)
{
    size_t na, nb;
    if (node >= t->n_nodes || t->nodes[node].func == VMP_NONE)
        return NULL;
    uint32_t f = t->nodes[node].func;
    const vmp_func *fa = vmp_profile_funcs(t->profile, &na);
    if (f < na)
        return &fa[f];
    if (!t->profile_b)
        return NULL;
    const vmp_func *fb = vmp_profile_funcs(t->profile_b, &nb);
    return f - na < nb ? &fb[f - na] : NULL;
}

const vmp_line_count *vmp_tree_lines(const vmp_tree *t, uint32_t node, size_t *n)
{
    /* the lines are by node: the first of node's, then its run */
    size_t lo = 0, hi = t->n_lines;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->lines[mid].node < node)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < t->n_lines && t->lines[end].node == node)
        end++;
    *n = end - lo;
    return end > lo ? &t->lines[lo] : NULL;
}

/* The selection of a query about one function: q's samples, its frame flags
 * without clear and with set (copy holds that query).  func must be in the
 * profile (or VMP_NONE, "every function", where every_allowed).  0, or -1
 * with err set. */
static int select_for_func(const vmp_profile *p, const vmp_query *q, unsigned clear, unsigned set,
                           uint32_t func, int every_allowed, vmp_query *copy, vmp_selection *sel,
                           vmp_error *err)
{
    if (q)
        *copy = *q;
    else
        memset(copy, 0, sizeof *copy);
    copy->frames = (copy->frames & ~clear) | set;
    if (vmp_query_select(p, copy, sel, err) < 0)
        return -1;
    if ((func != VMP_NONE || !every_allowed) && func >= sel->n_funcs) {
        vmp_error_set(err, -1, "function %u is not in the profile, which has %zu functions", func,
                      sel->n_funcs);
        vmp_selection_free(sel);
        return -1;
    }
    return 0;
}

/* n marks of "not seen in this sample yet" (a mark holds the unique stack
 * that last counted it, so each is counted once per sample); NULL when out of
 * memory. */
static uint64_t *stamps_new(size_t n)
{
    uint64_t *s = malloc((n ? n : 1) * sizeof *s);
    if (s)
        memset(s, 0xff, (n ? n : 1) * sizeof *s);
    return s;
}

/* ---- 3b. per function ---------------------------------------------------------- */

/* by function: total, then self, descending; by address (the original
 * reader's order): total descending, then address, where a caller and its
 * callee of the same total come outermost first (the program's <module>
 * before its work whatever their addresses: PyPy's are in order of
 * creation) */
static int cmp_func_count_by_address(const void *x, const void *y)
{
    const vmp_func_count *a = x, *b = y;
    if (a->total != b->total)
        return a->total > b->total ? -1 : 1;
    if (a->depth != b->depth)
        return a->depth < b->depth ? -1 : 1;
    if (a->addr != b->addr)
        return a->addr < b->addr ? -1 : 1;
    return a->kind < b->kind ? -1 : a->kind > b->kind;
}

static int cmp_func_count(const void *x, const void *y)
{
    const vmp_func_count *a = x, *b = y;
    if (a->total != b->total)
        return a->total > b->total ? -1 : 1;
    if (a->self != b->self)
        return a->self > b->self ? -1 : 1;
    if (a->addr != b->addr)
        return a->addr < b->addr ? -1 : 1;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    return a->func < b->func ? -1 : a->func > b->func;
}

/* Per function (or code) the samples with it, once per sample, in the part
 * of each path below the outermost frame of func (the whole path when func
 * is VMP_NONE). */
static vmp_func_counts *count_functions(const vmp_selection *sel, uint32_t func, vmp_error *err)
{
    vmp_func_counts *r = NULL;
    vmp_path_walk walk = {0};
    uint64_t samples = func == VMP_NONE ? sel->total : 0;
    /* ids are dense (function or code indices): count into arrays */
    size_t n_ids = (sel->q->frames & VMP_Q_BY_ADDRESS) ? sel->n_codes : sel->n_funcs;
    vmp_func_count *acc = calloc(n_ids ? n_ids : 1, sizeof *acc);
    uint64_t *stamp = stamps_new(n_ids);
    size_t used = 0;
    if (!acc || !stamp)
        goto oom;
    int more;
    while ((more = vmp_path_next(sel, &walk)) > 0) {
        size_t si = walk.index;
        uint64_t cnt = walk.count;
        const vmp_path path = walk.path;
        size_t from = 0;
        if (func != VMP_NONE) {
            while (from < path.n && path.f[from].func != func)
                from++;
            if (from == path.n)
                continue;
            samples += cnt;
            from++;
        }
        for (size_t i = from; i < path.n; i++) {
            const vmp_path_frame *pf = &path.f[i];
            vmp_func_count *c = &acc[pf->id];
            if (stamp[pf->id] == UINT64_MAX) {
                c->func = pf->func;
                c->addr = pf->addr;
                c->kind = pf->kind;
                c->depth = UINT32_MAX;
                used++;
            }
            if (i - from < c->depth)
                c->depth = (uint32_t)(i - from);
            if (stamp[pf->id] != si) {
                stamp[pf->id] = si;
                c->total += cnt;
            }
        }
        if (path.n > from)
            acc[path.f[path.n - 1].id].self += cnt;
    }
    if (more < 0)
        goto oom;
    r = malloc(sizeof *r + used * sizeof *r->items);
    if (!r)
        goto oom;
    r->items = (vmp_func_count *)(r + 1);
    r->n = 0;
    r->samples = samples;
    for (size_t i = 0; i < n_ids; i++)
        if (stamp[i] != UINT64_MAX)
            r->items[r->n++] = acc[i];
    qsort(r->items, r->n, sizeof *r->items,
          (sel->q->frames & VMP_Q_BY_ADDRESS) ? cmp_func_count_by_address : cmp_func_count);
    goto out;
oom:
    vmp_error_set(err, -1, "out of memory while counting functions");
out:
    free(acc);
    free(stamp);
    vmp_path_free(&walk.path);
    return r;
}

vmp_func_counts *vmp_query_functions(const vmp_profile *p, const vmp_query *q, vmp_error *err)
{
    vmp_selection sel;
    vmp_error_clear(err);
    if (vmp_query_select(p, q, &sel, err) < 0)
        return NULL;
    vmp_func_counts *r = count_functions(&sel, VMP_NONE, err);
    vmp_selection_free(&sel);
    return r;
}

vmp_func_counts *vmp_query_under(const vmp_profile *p, const vmp_query *q, uint32_t func,
                                 vmp_error *err)
{
    vmp_selection sel;
    vmp_query copy;
    vmp_error_clear(err);
    if (select_for_func(p, q, 0, 0, func, 0, &copy, &sel, err) < 0)
        return NULL;
    vmp_func_counts *r = count_functions(&sel, func, err);
    vmp_selection_free(&sel);
    return r;
}

/* ---- 3c. callers and callees of one function ---------------------------------- */

/* By total descending, then function index. */
static int by_total_then_func(uint64_t total_a, uint32_t func_a, uint64_t total_b, uint32_t func_b)
{
    if (total_a != total_b)
        return total_a > total_b ? -1 : 1;
    return func_a < func_b ? -1 : func_a > func_b;
}

static int cmp_count_desc(const void *x, const void *y)
{
    const vmp_func_count *a = x, *b = y;
    return by_total_then_func(a->total, a->func, b->total, b->func);
}


vmp_neighbours *vmp_query_neighbours(const vmp_profile *p, const vmp_query *q, uint32_t func,
                                     vmp_error *err)
{
    vmp_selection sel;
    vmp_neighbours *r = NULL;
    vmp_path_walk walk = {0};
    vmp_query fq;
    vmp_error_clear(err);
    /* neighbours are functions: by address makes no sense here */
    if (select_for_func(p, q, VMP_Q_BY_ADDRESS, 0, func, 0, &fq, &sel, err) < 0)
        return NULL;
    size_t nf = sel.n_funcs;
    uint64_t *caller = calloc(nf, sizeof *caller), *callee = calloc(nf, sizeof *callee);
    uint64_t *stamp_r = stamps_new(nf), *stamp_e = stamps_new(nf);
    uint64_t self = 0, total = 0;
    if (!caller || !callee || !stamp_r || !stamp_e)
        goto oom;
    int more;
    while ((more = vmp_path_next(&sel, &walk)) > 0) {
        size_t si = walk.index;
        uint64_t cnt = walk.count;
        const vmp_path path = walk.path;
        int on = 0;
        for (size_t i = 0; i < path.n; i++) {
            if (path.f[i].func != func)
                continue;
            on = 1;
            if (i && path.f[i - 1].func != func && stamp_r[path.f[i - 1].func] != si) {
                stamp_r[path.f[i - 1].func] = si;
                caller[path.f[i - 1].func] += cnt;
            }
            if (i + 1 < path.n && path.f[i + 1].func != func &&
                stamp_e[path.f[i + 1].func] != si) {
                stamp_e[path.f[i + 1].func] = si;
                callee[path.f[i + 1].func] += cnt;
            }
        }
        if (on)
            total += cnt;
        if (path.n && path.f[path.n - 1].func == func)
            self += cnt;
    }
    if (more < 0)
        goto oom;
    size_t nr = 0, ne = 0;
    for (size_t i = 0; i < nf; i++) {
        nr += caller[i] != 0;
        ne += callee[i] != 0;
    }
    r = malloc(sizeof *r + (nr + ne) * sizeof(vmp_func_count));
    if (!r)
        goto oom;
    memset(r, 0, sizeof *r);
    r->func = func;
    r->self = self;
    r->total = total;
    r->samples = sel.total;
    r->callers = (vmp_func_count *)(r + 1);
    r->callees = r->callers + nr;
    for (size_t i = 0; i < nf; i++) {
        const vmp_func *f = &sel.funcs[i];
        if (caller[i])
            r->callers[r->n_callers++] =
                (vmp_func_count){(uint32_t)i, f->addr, f->kind, 0, caller[i], 0};
        if (callee[i])
            r->callees[r->n_callees++] =
                (vmp_func_count){(uint32_t)i, f->addr, f->kind, 0, callee[i], 0};
    }
    qsort(r->callers, r->n_callers, sizeof *r->callers, cmp_count_desc);
    qsort(r->callees, r->n_callees, sizeof *r->callees, cmp_count_desc);
    goto out;
oom:
    vmp_error_set(err, -1, "out of memory while finding callers and callees");
out:
    free(caller);
    free(callee);
    free(stamp_r);
    free(stamp_e);
    vmp_path_free(&walk.path);
    vmp_selection_free(&sel);
    return r;
}

/* ---- 3d. lines ------------------------------------------------------------------- */

typedef struct line_acc {
    uint32_t func, line;
    uint64_t count;
} line_acc;

static int cmp_line_acc(const void *x, const void *y)
{
    const line_acc *a = x, *b = y;
    if (a->func != b->func)
        return a->func < b->func ? -1 : 1;
    return a->line < b->line ? -1 : a->line > b->line;
}

static int cmp_func_lines(const void *x, const void *y)
{
    const vmp_func_lines *a = x, *b = y;
    return by_total_then_func(a->total, a->func, b->total, b->func);
}

vmp_line_counts *vmp_query_lines(const vmp_profile *p, const vmp_query *q, uint32_t func,
                                 vmp_error *err)
{
    vmp_selection sel;
    vmp_line_counts *r = NULL;
    vmp_path_walk walk = {0};
    vmp_query lq;
    vmp_u64map index = {0};
    line_acc *acc = NULL;
    size_t n_acc = 0, acc_cap = 0;
    uint64_t *stamp_line = NULL, *func_total = NULL, *stamp_func = NULL;
    size_t stamp_cap = 0;
    vmp_error_clear(err);
    if (!(vmp_profile_get_summary(p)->mode & VMP_MODE_LINES)) {
        vmp_error_set(err, -1, "this profile has no line numbers (it was not recorded in lines "
                               "mode); record with `python -m vmprof --lines ...`");
        return NULL;
    }
    if (select_for_func(p, q, VMP_Q_BY_ADDRESS | VMP_Q_MERGE_RECURSION, VMP_Q_LINES, func, 1, &lq,
                        &sel, err) < 0)
        return NULL;
    size_t nf = sel.n_funcs;
    func_total = calloc(nf ? nf : 1, sizeof *func_total);
    stamp_func = stamps_new(nf);
    if (!func_total || !stamp_func)
        goto oom;
    int more;
    while ((more = vmp_path_next(&sel, &walk)) > 0) {
        size_t si = walk.index;
        uint64_t cnt = walk.count;
        const vmp_path path = walk.path;
        for (size_t i = 0; i < path.n; i++) {
            const vmp_path_frame *pf = &path.f[i];
            if (func != VMP_NONE && pf->func != func)
                continue;
            if (stamp_func[pf->func] != si) {
                stamp_func[pf->func] = si;
                func_total[pf->func] += cnt;
            }
            uint64_t key = ((uint64_t)pf->func << 32) | pf->line;
            uint32_t at;
            if (!vmp_u64map_find(&index, key, &at)) {
                if (n_acc >= VMP_U64MAP_EMPTY - 1 ||
                    vmp_array_grow((void **)&acc, &acc_cap, n_acc + 1, sizeof *acc) < 0 ||
                    vmp_array_grow((void **)&stamp_line, &stamp_cap, n_acc + 1,
                                   sizeof *stamp_line) < 0)
                    goto oom;
                at = (uint32_t)n_acc++;
                if (vmp_u64map_put(&index, key, at) < 0)
                    goto oom;
                acc[at] = (line_acc){pf->func, pf->line, 0};
                stamp_line[at] = UINT64_MAX;
            }
            if (stamp_line[at] != si) { /* each (function, line) once per sample */
                stamp_line[at] = si;
                acc[at].count += cnt;
            }
        }
    }
    if (more < 0)
        goto oom;
    if (n_acc)
        qsort(acc, n_acc, sizeof *acc, cmp_line_acc);
    size_t n_funcs = 0;
    for (size_t i = 0; i < n_acc; i++)
        n_funcs += !i || acc[i].func != acc[i - 1].func;
    r = malloc(sizeof *r + n_funcs * sizeof *r->funcs + n_acc * sizeof(vmp_line_count));
    if (!r)
        goto oom;
    r->funcs = (vmp_func_lines *)(r + 1);
    vmp_line_count *lines = (vmp_line_count *)(r->funcs + n_funcs);
    r->n_funcs = 0;
    r->samples = sel.total;
    for (size_t i = 0; i < n_acc; i++) {
        if (!i || acc[i].func != acc[i - 1].func)
            r->funcs[r->n_funcs++] =
                (vmp_func_lines){acc[i].func, func_total[acc[i].func], lines + i, 0};
        r->funcs[r->n_funcs - 1].n_lines++;
        lines[i] = (vmp_line_count){.line = acc[i].line, .node = VMP_NONE, .count = acc[i].count};
    }
    qsort(r->funcs, r->n_funcs, sizeof *r->funcs, cmp_func_lines);
    goto out;
oom:
    vmp_error_set(err, -1, "out of memory while counting lines");
out:
    vmp_u64map_free(&index);
    free(acc);
    free(stamp_line);
    free(func_total);
    free(stamp_func);
    vmp_path_free(&walk.path);
    vmp_selection_free(&sel);
    return r;
}

/* ---- 3e. memory -------------------------------------------------------------------- */

vmp_rss_series *vmp_query_rss(const vmp_profile *p, const vmp_query *q, size_t max_points,
                              vmp_error *err)
{
    vmp_selection sel;
    vmp_rss_series *r = NULL;
    vmp_path path = {0};
    uint64_t *growth_by_stack = NULL, *growth_by_func = NULL;
    vmp_error_clear(err);
    if (vmp_query_select(p, q, &sel, err) < 0)
        return NULL;
    int memory = (vmp_profile_get_summary(p)->mode & VMP_MODE_MEMORY) != 0;
    uint64_t n_sel = memory ? sel.total : 0;
    size_t n_stacks = vmp_profile_stack_count(p), nf = sel.n_funcs;
    if (!max_points)
        max_points = 1;
    uint64_t bucket = n_sel ? (n_sel + max_points - 1) / max_points : 1;
    size_t n_points = n_sel ? (size_t)((n_sel + bucket - 1) / bucket) : 0;
    growth_by_stack = calloc(n_stacks ? n_stacks : 1, sizeof *growth_by_stack);
    growth_by_func = calloc(nf ? nf : 1, sizeof *growth_by_func);
    if (!growth_by_stack || !growth_by_func)
        goto oom;
    /* growth: each rise between consecutive samples in the range, charged to
     * the later sample's stack when it is selected */
    if (memory) {
        uint64_t prev = 0;
        for (uint64_t i = sel.begin; i < sel.end; i++) {
            uint64_t rss = vmp_profile_sample_rss(p, i);
            uint32_t si = vmp_profile_sample_stack(p, i);
            vmp_stack st;
            vmp_profile_stack_at(p, si, &st);
            if (i > sel.begin && rss > prev &&
                (sel.thread == VMP_ALL_THREADS || st.thread_index == sel.thread))
                growth_by_stack[si] += rss - prev;
            prev = rss;
        }
    }
    size_t n_growth = 0;
    for (size_t si = 0; si < n_stacks; si++) {
        if (!growth_by_stack[si])
            continue;
        vmp_stack st;
        vmp_profile_stack_at(p, si, &st);
        if (vmp_path_make(&sel, &st, &path) < 0)
            goto oom;
        if (!path.n)
            continue;
        /* the innermost Python function, or the innermost frame */
        size_t k = path.n - 1;
        for (size_t i = path.n; i-- > 0;)
            if (sel.funcs[path.f[i].func].kind == VMP_FRAME_PYTHON) {
                k = i;
                break;
            }
        n_growth += growth_by_func[path.f[k].func] == 0;
        growth_by_func[path.f[k].func] += growth_by_stack[si];
    }
    r = malloc(sizeof *r + n_points * sizeof *r->points + n_growth * sizeof *r->growth);
    if (!r)
        goto oom;
    memset(r, 0, sizeof *r);
    r->points = (vmp_rss_point *)(r + 1);
    r->growth = (vmp_func_count *)(r->points + n_points);
    uint64_t seen = 0;
    int first = 1;
    for (uint64_t i = sel.begin; i < sel.end && n_sel; i++) {
        vmp_stack st;
        if (sel.thread != VMP_ALL_THREADS) {
            vmp_profile_stack_at(p, vmp_profile_sample_stack(p, i), &st);
            if (st.thread_index != sel.thread)
                continue;
        }
        uint64_t rss = vmp_profile_sample_rss(p, i);
        if (first) {
            r->first_kib = rss;
            first = 0;
        }
        r->last_kib = rss;
        if (rss > r->peak_kib || seen == 0) {
            if (rss > r->peak_kib || seen == 0) {
                r->peak_kib = rss;
                r->peak_ms = vmp_profile_sample_ms(p, i);
            }
        }
        size_t b = (size_t)(seen / bucket);
        if (seen % bucket == 0) {
            r->points[b] = (vmp_rss_point){vmp_profile_sample_ms(p, i), rss};
            r->n = b + 1;
        } else if (rss > r->points[b].rss_kib) {
            r->points[b] = (vmp_rss_point){vmp_profile_sample_ms(p, i), rss};
        }
        seen++;
    }
    for (size_t f = 0; f < nf; f++)
        if (growth_by_func[f])
            r->growth[r->n_growth++] = (vmp_func_count){(uint32_t)f, sel.funcs[f].addr,
                                                        sel.funcs[f].kind, 0, growth_by_func[f], 0};
    qsort(r->growth, r->n_growth, sizeof *r->growth, cmp_count_desc);
    goto out;
oom:
    vmp_error_set(err, -1, "out of memory while building the memory series");
out:
    free(growth_by_stack);
    free(growth_by_func);
    vmp_path_free(&path);
    vmp_selection_free(&sel);
    return r;
}

/* ---- 3f. the diff of two profiles ---------------------------------------------- */

vmp_tree *vmp_query_diff(const vmp_profile *a, const vmp_query *qa, const vmp_profile *b,
                         const vmp_query *qb, vmp_error *err)
{
    vmp_selection sa, sb;
    vmp_query fa, fb;
    tbuild tb;
    vmp_tree *t = NULL;
    uint32_t *map = NULL;
    vmp_u64map by_hash = {0};
    uint32_t *chain = NULL;
    size_t matched = 0;
    uint64_t samples_a = 0, samples_b = 0;
    vmp_error_clear(err);
    /* a diff pairs functions by their text; by address cannot pair them */
    fa = qa ? *qa : (vmp_query){0};
    fb = qb ? *qb : (vmp_query){0};
    fa.frames &= ~VMP_Q_BY_ADDRESS;
    fb.frames &= ~VMP_Q_BY_ADDRESS;
    fb.root_path = NULL;
    fb.root_path_len = 0; /* the root path names a's functions: matched after mapping */
    if (vmp_query_select(a, &fa, &sa, err) < 0)
        return NULL;
    if (vmp_query_select(b, &fb, &sb, err) < 0) {
        vmp_selection_free(&sa);
        return NULL;
    }
    memset(&tb, 0, sizeof tb);
    /* b's functions -> a's index, or past a's for functions a lacks */
    map = malloc((sb.n_funcs ? sb.n_funcs : 1) * sizeof *map);
    chain = malloc((sa.n_funcs ? sa.n_funcs : 1) * sizeof *chain);
    if (!map || !chain)
        goto oom;
    for (size_t i = 0; i < sa.n_funcs; i++) {
        const vmp_func *f = &sa.funcs[i];
        uint64_t h = vmp_mix64(vmp_hash_bytes(f->name, strlen(f->name), f->kind) ^
                               vmp_hash_bytes(f->file, strlen(f->file), f->first_line));
        uint32_t at;
        chain[i] = vmp_u64map_find(&by_hash, h, &at) ? at : VMP_NONE;
        if (vmp_u64map_put(&by_hash, h, (uint32_t)i) < 0)
            goto oom;
    }
    for (size_t i = 0; i < sb.n_funcs; i++) {
        const vmp_func *f = &sb.funcs[i];
        uint64_t h = vmp_mix64(vmp_hash_bytes(f->name, strlen(f->name), f->kind) ^
                               vmp_hash_bytes(f->file, strlen(f->file), f->first_line));
        uint32_t at;
        map[i] = (uint32_t)(sa.n_funcs + i);
        if (!vmp_u64map_find(&by_hash, h, &at))
            continue;
        for (; at != VMP_NONE; at = chain[at]) {
            const vmp_func *g = &sa.funcs[at];
            if (g->kind == f->kind && g->first_line == f->first_line &&
                strcmp(g->name, f->name) == 0 && strcmp(g->file, f->file) == 0) {
                map[i] = at;
                break;
            }
        }
    }
    tbuild_init(&tb, &sa);
    tb.funcs_b = sb.funcs;
    tb.diff = 1;
    /* b's paths are matched against a's root path after mapping */
    if (tree_collect(&tb, &sa, 0, NULL, &matched, &samples_a) < 0 ||
        tree_collect(&tb, &sb, 1, map, &matched, &samples_b) < 0)
        goto oom;
    if (fa.root_path_len && !samples_a && !samples_b && (sa.total || sb.total)) {
        root_path_error(&sa, matched, err);
        goto out;
    }
    t = tree_write(&tb, a, b, sa.total, sb.total ? sb.total : 1, err);
    if (t) {
        t->samples_b = sb.total;
        if (fa.root_path_len)
            t->nodes[0].func = fa.root_path[fa.root_path_len - 1];
    }
    goto out;
oom:
    vmp_error_set(err, -1, "out of memory while merging the two trees");
out:
    tbuild_free(&tb);
    free(map);
    free(chain);
    vmp_u64map_free(&by_hash);
    vmp_selection_free(&sa);
    vmp_selection_free(&sb);
    return t;
}
