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

int vmp_path_make(const vmp_selection *sel, const vmp_stack *st, vmp_path *out)
{
    unsigned flags = sel->q->frames;
    int by_addr = (flags & VMP_Q_BY_ADDRESS) != 0;
    uint32_t from = (flags & VMP_Q_KEEP_RUNNER) ? 0 : st->runner_frames;
    out->n = 0;
    if (st->depth > out->cap) {
        size_t cap = st->depth < 64 ? 64 : st->depth;
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
        if ((flags & VMP_Q_PYTHON_ONLY) && (!is_python_frame(kind) || fn->kind == VMP_FRAME_NATIVE))
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
        if (out->n && (flags & VMP_Q_MERGE_RECURSION)) {
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

typedef struct tnode {
    uint64_t addr;
    uint32_t id, func, line, parent, depth;
    uint8_t kind;
    uint64_t total, self, total_b, self_b;
    uint32_t meta;
} tnode;

typedef struct tbuild {
    const vmp_selection *sel;
    const vmp_func *funcs_b; /* diff: b's functions, indices from sel->n_funcs */
    tnode *nodes;
    size_t n, cap;
    uint32_t *table; /* (parent, id, line) -> node */
    size_t table_cap;
    int lines_in_key;
    /* per-node line counts: (node << 32 | line) -> pair */
    vmp_u64map line_index;
    uint64_t (*line_pairs)[2];
    size_t n_line_pairs, line_pairs_cap;
    uint64_t (*meta)[VMP_FRAME_KIND_COUNT];
    size_t n_meta, meta_cap;
} tbuild;

static inline uint64_t child_hash(uint32_t parent, uint32_t id, uint32_t line)
{
    return vmp_mix64(((uint64_t)parent << 32 | id) ^ ((uint64_t)line * 0x9e3779b97f4a7c15ULL));
}

static int rehash(tbuild *b, size_t ncap)
{
    uint32_t *tab = vmp_index_table_new(ncap);
    if (!tab)
        return -1;
    for (size_t i = 1; i < b->n; i++) {
        const tnode *n = &b->nodes[i];
        tab[vmp_index_table_slot(tab, ncap,
                                 child_hash(n->parent, n->id, b->lines_in_key ? n->line : 0))] =
            (uint32_t)i;
    }
    free(b->table);
    b->table = tab;
    b->table_cap = ncap;
    return 0;
}

static uint32_t child_of(tbuild *b, uint32_t parent, const vmp_path_frame *pf)
{
    uint32_t line = b->lines_in_key ? pf->line : 0;
    uint64_t h = child_hash(parent, pf->id, line);
    if (b->table_cap) {
        size_t mask = b->table_cap - 1;
        for (size_t j = h & mask;; j = (j + 1) & mask) {
            uint32_t i = b->table[j];
            if (i == VMP_INDEX_FREE)
                break;
            const tnode *n = &b->nodes[i];
            if (n->parent == parent && n->id == pf->id &&
                (!b->lines_in_key || n->line == pf->line))
                return i;
        }
    }
    if (b->n >= VMP_NONE - 1)
        return VMP_NONE;
    if ((b->n + 1) * 2 > b->table_cap && rehash(b, b->table_cap ? b->table_cap * 2 : 1024) < 0)
        return VMP_NONE;
    if (vmp_array_grow((void **)&b->nodes, &b->cap, b->n + 1, sizeof *b->nodes) < 0)
        return VMP_NONE;
    uint32_t i = (uint32_t)b->n++;
    tnode *n = &b->nodes[i];
    memset(n, 0, sizeof *n);
    n->addr = pf->addr;
    n->id = pf->id;
    n->func = pf->func;
    n->line = line;
    n->kind = pf->kind;
    n->parent = parent;
    n->depth = b->nodes[parent].depth + 1;
    n->meta = VMP_NONE;
    b->table[vmp_index_table_slot(b->table, b->table_cap, h)] = i;
    return i;
}

static int add_line(tbuild *b, uint32_t node, uint32_t line, uint64_t count)
{
    uint64_t key = ((uint64_t)node << 32) | line;
    uint32_t at;
    if (!vmp_u64map_find(&b->line_index, key, &at)) {
        if (b->n_line_pairs >= VMP_U64MAP_EMPTY - 1 ||
            vmp_array_grow((void **)&b->line_pairs, &b->line_pairs_cap, b->n_line_pairs + 1,
                     sizeof *b->line_pairs) < 0)
            return -1;
        at = (uint32_t)b->n_line_pairs++;
        if (vmp_u64map_put(&b->line_index, key, at) < 0)
            return -1;
        b->line_pairs[at][0] = key;
        b->line_pairs[at][1] = 0;
    }
    b->line_pairs[at][1] += count;
    return 0;
}

static uint64_t *node_meta(tbuild *b, uint32_t node)
{
    tnode *n = &b->nodes[node];
    if (n->meta == VMP_NONE) {
        if (vmp_array_grow((void **)&b->meta, &b->meta_cap, b->n_meta + 1, sizeof *b->meta) < 0)
            return NULL;
        memset(b->meta[b->n_meta], 0, sizeof b->meta[0]);
        n->meta = (uint32_t)b->n_meta++;
    }
    return b->meta[n->meta];
}

/* PyPy: the kinds of the non-Python frames under the innermost Python frame,
 * charged to that frame's node (as the original's meta). */
static int add_meta(tbuild *b, const vmp_stack *st, uint32_t py_node, uint64_t cnt)
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
    if (!(tail & ~(1u << VMP_FRAME_PYTHON)) && !jit)
        return 0;
    uint64_t *m = node_meta(b, py_node);
    if (!m)
        return -1;
    for (int k = 1; k < VMP_FRAME_KIND_COUNT; k++)
        if (k != VMP_FRAME_JIT && (tail & (1u << k)))
            m[k] += cnt;
    if (jit)
        m[VMP_FRAME_JIT] += cnt;
    return 0;
}

/* Where a path meets the root path: the index after the matched prefix, or
 * -1 when the path does not start with it (*matched: the steps that did). */
static long root_prefix(const vmp_query *q, const vmp_path *path, size_t *matched)
{
    size_t k = 0;
    while (k < q->root_path_len && k < path->n && path->f[k].func == q->root_path[k])
        k++;
    if (k > *matched)
        *matched = k;
    return k == q->root_path_len ? (long)k : -1;
}

/* Adds the selected stacks of one profile to the tree. */
static int tree_add_profile(tbuild *b, const vmp_selection *sel, int from_b,
                            const uint32_t *func_map, size_t *matched, uint64_t *samples)
{
    /* lines per node: the sampled lines of a node (lines mode, where lines
     * are not nodes of their own) */
    int with_lines = !(sel->q->frames & VMP_Q_LINES);
    vmp_path_walk walk = {0};
    int more;
    while ((more = vmp_path_next(sel, &walk)) > 0) {
        const vmp_stack st = walk.stack;
        uint64_t cnt = walk.count;
        vmp_path path = walk.path;
        if (func_map)
            for (size_t i = 0; i < path.n; i++)
                path.f[i].id = path.f[i].func = func_map[path.f[i].func];
        long start = 0;
        if (sel->q->root_path_len && (start = root_prefix(sel->q, &path, matched)) < 0)
            continue;
        *samples += cnt;
        uint32_t cur = 0, py_node = VMP_NONE;
        if (from_b)
            b->nodes[0].total_b += cnt;
        else
            b->nodes[0].total += cnt;
        /* with a depth cut, one level under it is built (and pruned with
         * what it holds counted as cut); deeper frames are not */
        size_t end = path.n;
        if (sel->q->max_depth && end - (size_t)start > (size_t)sel->q->max_depth + 1) {
            end = (size_t)start + sel->q->max_depth + 1;
            py_node = VMP_NONE;
        }
        for (size_t i = (size_t)start; i < end; i++) {
            cur = child_of(b, cur, &path.f[i]);
            if (cur == VMP_NONE)
                goto oom;
            tnode *n = &b->nodes[cur];
            if (from_b)
                n->total_b += cnt;
            else
                n->total += cnt;
            if (with_lines && path.f[i].line && add_line(b, cur, path.f[i].line, cnt) < 0)
                goto oom;
            if (is_python_frame(path.f[i].kind) && end == path.n)
                py_node = cur;
        }
        if (from_b)
            b->nodes[cur].self_b += cnt;
        else
            b->nodes[cur].self += cnt;
        if (py_node != VMP_NONE && add_meta(b, &st, py_node, cnt) < 0)
            goto oom;
    }
    if (more < 0)
        goto oom;
    vmp_path_free(&walk.path);
    return 0;
oom:
    vmp_path_free(&walk.path);
    return -1;
}

typedef struct sib {
    uint32_t idx;
    uint64_t weight;
} sib;

static const vmp_func *tb_func(const tbuild *b, uint32_t f)
{
    return f < b->sel->n_funcs ? &b->sel->funcs[f] : &b->funcs_b[f - b->sel->n_funcs];
}

static int cmp_sib_node(const tbuild *b, const sib *x, const sib *y)
{
    if (x->weight != y->weight)
        return x->weight > y->weight ? -1 : 1;
    const tnode *a = &b->nodes[x->idx], *c = &b->nodes[y->idx];
    if (b->sel->q->frames & VMP_Q_BY_ADDRESS) {
        if (a->addr != c->addr)
            return a->addr < c->addr ? -1 : 1;
        if (a->kind != c->kind)
            return a->kind < c->kind ? -1 : 1;
    } else {
        const vmp_func *fa = tb_func(b, a->func), *fc = tb_func(b, c->func);
        int r = strcmp(fa->name, fc->name);
        if (r)
            return r;
        if ((r = strcmp(fa->file, fc->file)))
            return r;
        if (a->line != c->line)
            return a->line < c->line ? -1 : 1;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int cmp_sib_r(const void *x, const void *y, void *b)
{
    return cmp_sib_node(b, x, y);
}

static void tbuild_free(tbuild *b)
{
    free(b->nodes);
    free(b->table);
    vmp_u64map_free(&b->line_index);
    free(b->line_pairs);
    free(b->meta);
}

static int cmp_u64pair(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, c = *(const uint64_t *)y;
    return a < c ? -1 : a > c;
}

/* Prunes (max_depth, min_fraction), orders the kept nodes depth first with
 * children by weight, and packs the result into one block. */
static vmp_tree *tree_finish(tbuild *b, const vmp_profile *pa, const vmp_profile *pb,
                             uint64_t samples, uint64_t samples_b, vmp_error *err)
{
    const vmp_query *q = b->sel->q;
    size_t n = b->n;
    double thr = q->min_fraction > 0 ? q->min_fraction * (double)samples : 0;
    double thr_b = q->min_fraction > 0 ? q->min_fraction * (double)samples_b : 0;
    uint32_t *newidx = malloc(n * sizeof *newidx);
    uint32_t *start = calloc(n + 1, sizeof *start);
    sib *order = malloc(n * sizeof *order);
    uint32_t *stack = malloc(n * sizeof *stack);
    uint64_t *cut = calloc(n, sizeof *cut);
    uint32_t *n_cut = calloc(n, sizeof *n_cut);
    vmp_tree *t = NULL;
    /* the child table is done with: its memory goes before the result's comes */
    free(b->table);
    b->table = NULL;
    b->table_cap = 0;
    if (!newidx || !start || !order || !stack || !cut || !n_cut)
        goto oom;
    /* kept: the root, and nodes within the depth whose share is enough */
    for (size_t i = 0; i < n; i++) {
        const tnode *nd = &b->nodes[i];
        int keep = i == 0 || ((q->max_depth == 0 || nd->depth <= q->max_depth) &&
                              ((double)nd->total >= thr || (pb && (double)nd->total_b >= thr_b)) &&
                              newidx[nd->parent] != VMP_NONE);
        newidx[i] = keep ? 0 : VMP_NONE;
        if (!keep && i && newidx[nd->parent] != VMP_NONE) {
            cut[nd->parent] += nd->total;
            n_cut[nd->parent]++;
        }
    }
    /* group kept children by parent (parents come before children) */
    for (size_t i = 1; i < n; i++)
        if (newidx[i] != VMP_NONE)
            start[b->nodes[i].parent + 1]++;
    for (size_t i = 0; i < n; i++)
        start[i + 1] += start[i];
    size_t kept = 1;
    for (size_t i = 1; i < n; i++)
        if (newidx[i] != VMP_NONE) {
            const tnode *nd = &b->nodes[i];
            order[start[nd->parent]++] = (sib){(uint32_t)i, nd->total + nd->total_b};
            kept++;
        }
    /* start[p] is now the end of p's group */
    size_t n_lines = 0;
    for (size_t i = 0; i < b->n_line_pairs; i++)
        if (newidx[b->line_pairs[i][0] >> 32] != VMP_NONE)
            n_lines++;
    size_t n_meta = 0;
    for (size_t i = 0; i < n; i++)
        if (newidx[i] != VMP_NONE && b->nodes[i].meta != VMP_NONE)
            n_meta++;
    size_t size = sizeof *t + kept * sizeof *t->nodes + n_lines * sizeof *t->lines +
                  n_meta * sizeof *t->meta;
    t = malloc(size);
    if (!t)
        goto oom;
    memset(t, 0, sizeof *t);
    t->profile = pa;
    t->profile_b = pb;
    t->nodes = (vmp_tree_node *)(t + 1);
    t->lines = (vmp_line_count *)(t->nodes + kept);
    t->meta = (uint64_t(*)[VMP_FRAME_KIND_COUNT])(t->lines + n_lines);
    t->samples = samples;
    t->samples_b = samples_b;
    /* depth first, children in order: pop a node, emit it, push its children
     * in reverse */
    size_t sp = 0, out = 0, lo;
    stack[sp++] = 0;
    while (sp) {
        uint32_t i = stack[--sp];
        const tnode *nd = &b->nodes[i];
        newidx[i] = (uint32_t)out;
        vmp_tree_node *o = &t->nodes[out++];
        o->func = nd->func;
        o->line = nd->line;
        o->addr = nd->addr;
        o->kind = nd->kind;
        o->parent = i == 0 ? VMP_NONE : newidx[nd->parent];
        o->first_child = o->next_sibling = VMP_NONE;
        o->n_children = 0;
        o->depth = nd->depth;
        o->total = nd->total;
        o->self = nd->self;
        o->total_b = nd->total_b;
        o->self_b = nd->self_b;
        o->cut = cut[i];
        o->n_cut = n_cut[i];
        o->lines_off = o->n_lines = 0;
        o->meta = VMP_NONE;
        lo = i ? start[i - 1] : 0;
        size_t hi = start[i];
        /* the groups are in parent order, so i's group starts where i-1's ends */
        if (hi - lo > 1)
            qsort_r(order + lo, hi - lo, sizeof *order, cmp_sib_r, (void *)b);
        for (size_t k = hi; k-- > lo;)
            stack[sp++] = order[k].idx;
    }
    t->n_nodes = out;
    /* link children: every node's children were emitted in order */
    for (size_t k = out; k-- > 1;) {
        vmp_tree_node *c = &t->nodes[k], *par = &t->nodes[c->parent];
        c->next_sibling = par->first_child;
        par->first_child = (uint32_t)k;
        par->n_children++;
    }
    /* lines of the kept nodes, grouped by node and sorted by line */
    size_t li = 0;
    for (size_t i = 0; i < b->n_line_pairs; i++) {
        uint32_t ni = newidx[b->line_pairs[i][0] >> 32];
        if (ni == VMP_NONE)
            continue;
        b->line_pairs[li][0] = ((uint64_t)ni << 32) | (uint32_t)b->line_pairs[i][0];
        b->line_pairs[li][1] = b->line_pairs[i][1];
        li++;
    }
    if (li)
        qsort(b->line_pairs, li, sizeof *b->line_pairs, cmp_u64pair);
    for (size_t i = 0; i < li; i++) {
        vmp_tree_node *o = &t->nodes[b->line_pairs[i][0] >> 32];
        if (!o->n_lines)
            o->lines_off = (uint32_t)i;
        o->n_lines++;
        t->lines[i] = (vmp_line_count){(uint32_t)b->line_pairs[i][0], b->line_pairs[i][1]};
    }
    t->n_lines = li;
    for (size_t i = 0; i < n; i++) {
        if (newidx[i] == VMP_NONE || b->nodes[i].meta == VMP_NONE)
            continue;
        memcpy(t->meta[t->n_meta], b->meta[b->nodes[i].meta], sizeof t->meta[0]);
        t->nodes[newidx[i]].meta = (uint32_t)t->n_meta++;
    }
    goto done;
oom:
    free(t);
    t = NULL;
    vmp_error_set(err, -1, "out of memory while building the call tree");
done:
    free(newidx);
    free(start);
    free(order);
    free(stack);
    free(cut);
    free(n_cut);
    return t;
}

/* At most how many nodes the selected stacks make (each frame one, up to
 * the depth kept): room made once instead of growing step by step. */
static size_t node_bound(const vmp_selection *sel)
{
    size_t n_stacks = vmp_profile_stack_count(sel->p), bound = 1;
    uint32_t keep = sel->q->max_depth ? sel->q->max_depth + 1 + (uint32_t)sel->q->root_path_len
                                      : UINT32_MAX;
    for (size_t i = 0; i < n_stacks && bound < (1u << 22); i++) {
        vmp_stack st;
        vmp_profile_stack_at(sel->p, i, &st);
        if (vmp_selection_count(sel, i, &st))
            bound += st.depth < keep ? st.depth : keep;
    }
    return bound < (1u << 22) ? bound : (1u << 22);
}

static int tbuild_init(tbuild *b, const vmp_selection *sel)
{
    memset(b, 0, sizeof *b);
    b->sel = sel;
    b->lines_in_key = (sel->q->frames & VMP_Q_LINES) != 0;
    size_t bound = node_bound(sel), cap = 1024;
    while (cap < bound * 2)
        cap *= 2;
    if (vmp_array_grow((void **)&b->nodes, &b->cap, bound < 1024 ? 1024 : bound,
                       sizeof *b->nodes) < 0 ||
        rehash(b, cap) < 0)
        return -1;
    memset(&b->nodes[0], 0, sizeof b->nodes[0]);
    b->nodes[0].parent = VMP_NONE;
    b->nodes[0].meta = VMP_NONE;
    b->nodes[0].func = VMP_NONE;
    b->n = 1;
    return 0;
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
    vmp_selection sel;
    tbuild b;
    vmp_tree *t = NULL;
    size_t matched = 0;
    uint64_t samples = 0;
    vmp_error_clear(err);
    if (vmp_query_select(p, q, &sel, err) < 0)
        return NULL;
    if (tbuild_init(&b, &sel) < 0 || tree_add_profile(&b, &sel, 0, NULL, &matched, &samples) < 0) {
        vmp_error_set(err, -1, "out of memory while building the call tree");
        goto out;
    }
    if (sel.q->root_path_len && !samples && sel.total) {
        root_path_error(&sel, matched, err);
        goto out;
    }
    if (sel.q->root_path_len && b.n > 1) {
        /* the root is the path's last node: name it */
        const vmp_func *f = &sel.funcs[sel.q->root_path[sel.q->root_path_len - 1]];
        b.nodes[0].func = sel.q->root_path[sel.q->root_path_len - 1];
        b.nodes[0].addr = f->addr;
        b.nodes[0].kind = f->kind;
    }
    t = tree_finish(&b, p, NULL, sel.total, 0, err);
out:
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

/* ---- 3b. per function ---------------------------------------------------------- */

/* by function: total, then self, descending; by address (the original
 * reader's order): total descending, then address */
static int cmp_func_count_by_address(const void *x, const void *y)
{
    const vmp_func_count *a = x, *b = y;
    if (a->total != b->total)
        return a->total > b->total ? -1 : 1;
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

vmp_func_counts *vmp_query_functions(const vmp_profile *p, const vmp_query *q, vmp_error *err)
{
    vmp_selection sel;
    vmp_func_counts *r = NULL;
    vmp_path_walk walk = {0};
    vmp_error_clear(err);
    if (vmp_query_select(p, q, &sel, err) < 0)
        return NULL;
    /* ids are dense (function or code indices): count into arrays */
    size_t n_ids = (sel.q->frames & VMP_Q_BY_ADDRESS) ? sel.n_codes : sel.n_funcs;
    vmp_func_count *acc = calloc(n_ids ? n_ids : 1, sizeof *acc);
    uint64_t *stamp = malloc((n_ids ? n_ids : 1) * sizeof *stamp);
    size_t used = 0;
    if (!acc || !stamp)
        goto oom;
    memset(stamp, 0xff, (n_ids ? n_ids : 1) * sizeof *stamp);
    int more;
    while ((more = vmp_path_next(&sel, &walk)) > 0) {
        size_t si = walk.index;
        uint64_t cnt = walk.count;
        const vmp_path path = walk.path;
        for (size_t i = 0; i < path.n; i++) {
            const vmp_path_frame *pf = &path.f[i];
            vmp_func_count *c = &acc[pf->id];
            if (stamp[pf->id] == UINT64_MAX) {
                c->func = pf->func;
                c->addr = pf->addr;
                c->kind = pf->kind;
                used++;
            }
            if (stamp[pf->id] != si) {
                stamp[pf->id] = si;
                c->total += cnt;
            }
        }
        if (path.n)
            acc[path.f[path.n - 1].id].self += cnt;
    }
    if (more < 0)
        goto oom;
    r = malloc(sizeof *r + used * sizeof *r->items);
    if (!r)
        goto oom;
    r->items = (vmp_func_count *)(r + 1);
    r->n = 0;
    r->samples = sel.total;
    for (size_t i = 0; i < n_ids; i++)
        if (stamp[i] != UINT64_MAX)
            r->items[r->n++] = acc[i];
    qsort(r->items, r->n, sizeof *r->items,
          (sel.q->frames & VMP_Q_BY_ADDRESS) ? cmp_func_count_by_address : cmp_func_count);
    goto out;
oom:
    vmp_error_set(err, -1, "out of memory while counting functions");
out:
    free(acc);
    free(stamp);
    vmp_path_free(&walk.path);
    vmp_selection_free(&sel);
    return r;
}

/* ---- 3c. callers and callees of one function ---------------------------------- */

static int cmp_count_desc(const void *x, const void *y)
{
    const vmp_func_count *a = x, *b = y;
    if (a->total != b->total)
        return a->total > b->total ? -1 : 1;
    return a->func < b->func ? -1 : a->func > b->func;
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
    if (q) {
        fq = *q;
        fq.frames &= ~VMP_Q_BY_ADDRESS;
    } else {
        memset(&fq, 0, sizeof fq);
    }
    if (vmp_query_select(p, &fq, &sel, err) < 0)
        return NULL;
    if (func >= sel.n_funcs) {
        vmp_error_set(err, -1, "function %u is not in the profile, which has %zu functions", func,
                      sel.n_funcs);
        vmp_selection_free(&sel);
        return NULL;
    }
    size_t nf = sel.n_funcs;
    uint64_t *caller = calloc(nf, sizeof *caller), *callee = calloc(nf, sizeof *callee);
    uint64_t *stamp_r = malloc(nf * sizeof *stamp_r), *stamp_e = malloc(nf * sizeof *stamp_e);
    uint64_t self = 0, total = 0;
    if (!caller || !callee || !stamp_r || !stamp_e)
        goto oom;
    memset(stamp_r, 0xff, nf * sizeof *stamp_r);
    memset(stamp_e, 0xff, nf * sizeof *stamp_e);
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
                (vmp_func_count){(uint32_t)i, f->addr, f->kind, 0, caller[i]};
        if (callee[i])
            r->callees[r->n_callees++] =
                (vmp_func_count){(uint32_t)i, f->addr, f->kind, 0, callee[i]};
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
    if (a->total != b->total)
        return a->total > b->total ? -1 : 1;
    return a->func < b->func ? -1 : a->func > b->func;
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
    if (q)
        lq = *q;
    else
        memset(&lq, 0, sizeof lq);
    lq.frames = (lq.frames & ~(VMP_Q_BY_ADDRESS | VMP_Q_MERGE_RECURSION)) | VMP_Q_LINES;
    if (vmp_query_select(p, &lq, &sel, err) < 0)
        return NULL;
    if (func != VMP_NONE && func >= sel.n_funcs) {
        vmp_error_set(err, -1, "function %u is not in the profile, which has %zu functions", func,
                      sel.n_funcs);
        goto out;
    }
    size_t nf = sel.n_funcs;
    func_total = calloc(nf ? nf : 1, sizeof *func_total);
    stamp_func = malloc((nf ? nf : 1) * sizeof *stamp_func);
    if (!func_total || !stamp_func)
        goto oom;
    memset(stamp_func, 0xff, (nf ? nf : 1) * sizeof *stamp_func);
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
        lines[i] = (vmp_line_count){acc[i].line, acc[i].count};
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
                                                        sel.funcs[f].kind, 0, growth_by_func[f]};
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
    if (tbuild_init(&tb, &sa) < 0 || tree_add_profile(&tb, &sa, 0, NULL, &matched, &samples_a) < 0)
        goto oom;
    tb.funcs_b = sb.funcs;
    /* b's paths are matched against a's root path after mapping */
    vmp_selection sb_rooted = sb;
    vmp_query fbr = fb;
    fbr.root_path = fa.root_path;
    fbr.root_path_len = fa.root_path_len;
    sb_rooted.q = &fbr;
    if (tree_add_profile(&tb, &sb_rooted, 1, map, &matched, &samples_b) < 0)
        goto oom;
    if (fa.root_path_len && !samples_a && !samples_b && (sa.total || sb.total)) {
        root_path_error(&sa, matched, err);
        goto out;
    }
    if (fa.root_path_len)
        tb.nodes[0].func = fa.root_path[fa.root_path_len - 1];
    t = tree_finish(&tb, a, b, sa.total, sb.total ? sb.total : 1, err);
    if (t)
        t->samples_b = sb.total;
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
