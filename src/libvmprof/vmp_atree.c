/* vmp_atree.c - call tree and function totals (contract in vmp_atree.h). */
#include "vmp_atree.h"

#include <stdlib.h>
#include <string.h>

#include "vmp_hash.h"

struct vmp_atree {
    vmp_atree_node *nodes;
    size_t n_nodes, cap_nodes;
    uint32_t *child_table; /* (parent, addr, kind) -> node */
    size_t child_cap;

    vmp_atree_line *lines;
    size_t n_lines;

    uint64_t (*meta)[VMP_FRAME_KIND_COUNT];
    size_t n_meta, cap_meta;

    vmp_afunc_stat *funcs;
    size_t n_funcs, cap_funcs;
};

/* Function totals while building; dropped once funcs is sorted, which makes
 * the indices stale. */
typedef struct func_acc {
    uint32_t *table; /* (addr, kind) -> func */
    size_t cap;
    uint64_t *stamp; /* per func: the last stack that counted it */
} func_acc;

/* Line counts while building: (node << 32 | line) -> index of its
 * (key, count) pair, kept dense so that finishing is one sort. */
typedef struct line_acc {
    vmp_u64map index;
    uint64_t (*pairs)[2];
    size_t len, cap;
} line_acc;

_Static_assert(VMP_ATREE_NONE == VMP_INDEX_FREE, "child and function tables are index tables");

static inline uint64_t child_hash(uint32_t parent, uint64_t addr, uint8_t kind)
{
    return vmp_mix64(addr ^ ((uint64_t)parent << 20) ^ ((uint64_t)kind << 60) ^ parent);
}

static int is_python(uint8_t kind)
{
    return kind == VMP_FRAME_PYTHON || kind == VMP_FRAME_JIT;
}

static int rehash_children(vmp_atree *t, size_t ncap)
{
    uint32_t *tab = vmp_index_table_new(ncap);
    if (!tab)
        return -1;
    for (size_t i = 1; i < t->n_nodes; i++) {
        const vmp_atree_node *n = &t->nodes[i];
        tab[vmp_index_table_slot(tab, ncap, child_hash(n->parent, n->addr, n->kind))] = (uint32_t)i;
    }
    free(t->child_table);
    t->child_table = tab;
    t->child_cap = ncap;
    return 0;
}

uint32_t vmp_atree_find_child(const vmp_atree *t, uint32_t node, uint64_t addr, uint8_t kind)
{
    if (!t->child_cap)
        return VMP_ATREE_NONE;
    size_t mask = t->child_cap - 1;
    for (size_t j = child_hash(node, addr, kind) & mask;; j = (j + 1) & mask) {
        uint32_t i = t->child_table[j];
        if (i == VMP_ATREE_NONE)
            return VMP_ATREE_NONE;
        const vmp_atree_node *n = &t->nodes[i];
        if (n->parent == node && n->addr == addr && n->kind == kind)
            return i;
    }
}

static uint32_t get_child(vmp_atree *t, uint32_t parent, uint64_t addr, uint8_t kind)
{
    uint32_t i = vmp_atree_find_child(t, parent, addr, kind);
    if (i != VMP_ATREE_NONE)
        return i;
    if (t->n_nodes >= VMP_ATREE_NONE - 1)
        return VMP_ATREE_NONE;
    if ((t->n_nodes + 1) * 2 > t->child_cap &&
        rehash_children(t, t->child_cap ? t->child_cap * 2 : 1024) < 0)
        return VMP_ATREE_NONE;
    if (t->n_nodes == t->cap_nodes) {
        size_t nc = t->cap_nodes * 2;
        vmp_atree_node *nn = realloc(t->nodes, nc * sizeof *nn);
        if (!nn)
            return VMP_ATREE_NONE;
        t->nodes = nn;
        t->cap_nodes = nc;
    }
    i = (uint32_t)t->n_nodes++;
    vmp_atree_node *n = &t->nodes[i];
    memset(n, 0, sizeof *n);
    n->addr = addr;
    n->kind = kind;
    n->parent = parent;
    n->first_child = n->next_sibling = n->meta_index = VMP_ATREE_NONE;
    t->child_table[vmp_index_table_slot(t->child_table, t->child_cap,
                                        child_hash(parent, addr, kind))] = i;
    return i;
}

static inline uint64_t func_hash(uint64_t addr, uint8_t kind)
{
    return vmp_mix64(addr ^ ((uint64_t)kind << 59));
}

static int rehash_funcs(const vmp_atree *t, func_acc *fa, size_t ncap)
{
    uint32_t *tab = vmp_index_table_new(ncap);
    if (!tab)
        return -1;
    for (size_t i = 0; i < t->n_funcs; i++)
        tab[vmp_index_table_slot(tab, ncap, func_hash(t->funcs[i].addr, t->funcs[i].kind))] =
            (uint32_t)i;
    free(fa->table);
    fa->table = tab;
    fa->cap = ncap;
    return 0;
}

static uint32_t get_func(vmp_atree *t, func_acc *fa, uint64_t addr, uint8_t kind)
{
    if ((t->n_funcs + 1) * 2 > fa->cap && rehash_funcs(t, fa, fa->cap ? fa->cap * 2 : 256) < 0)
        return VMP_ATREE_NONE;
    size_t mask = fa->cap - 1;
    size_t j = func_hash(addr, kind) & mask;
    for (;; j = (j + 1) & mask) {
        uint32_t i = fa->table[j];
        if (i == VMP_ATREE_NONE)
            break;
        if (t->funcs[i].addr == addr && t->funcs[i].kind == kind)
            return i;
    }
    if (t->n_funcs == t->cap_funcs) {
        size_t nc = t->cap_funcs ? t->cap_funcs * 2 : 256;
        vmp_afunc_stat *nf = realloc(t->funcs, nc * sizeof *nf);
        uint64_t *ns = realloc(fa->stamp, nc * sizeof *ns);
        if (nf)
            t->funcs = nf;
        if (ns)
            fa->stamp = ns;
        if (!nf || !ns)
            return VMP_ATREE_NONE;
        t->cap_funcs = nc;
    }
    uint32_t i = (uint32_t)t->n_funcs++;
    t->funcs[i] = (vmp_afunc_stat){addr, 0, 0, kind};
    fa->stamp[i] = UINT64_MAX;
    fa->table[j] = i;
    return i;
}

static void func_acc_free(func_acc *fa)
{
    free(fa->table);
    free(fa->stamp);
}

static int line_add(line_acc *a, uint32_t node, uint32_t line, uint64_t count)
{
    uint64_t key = ((uint64_t)node << 32) | line;
    uint32_t at;
    if (!vmp_u64map_find(&a->index, key, &at)) {
        if (a->len >= VMP_U64MAP_EMPTY - 1)
            return -1;
        if (a->len == a->cap) {
            size_t nc = a->cap ? a->cap * 2 : 1024;
            void *np = realloc(a->pairs, nc * sizeof *a->pairs);
            if (!np)
                return -1;
            a->pairs = np;
            a->cap = nc;
        }
        at = (uint32_t)a->len;
        if (vmp_u64map_put(&a->index, key, at) < 0)
            return -1;
        a->pairs[a->len][0] = key;
        a->pairs[a->len][1] = 0;
        a->len++;
    }
    a->pairs[at][1] += count;
    return 0;
}

static void line_acc_free(line_acc *a)
{
    vmp_u64map_free(&a->index);
    free(a->pairs);
}

static int cmp_line_key(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static int finish_lines(vmp_atree *t, line_acc *a)
{
    if (!a->len)
        return 0;
    t->lines = malloc(a->len * sizeof *t->lines);
    if (!t->lines)
        return -1;
    /* by key = (node, line): each node's lines become one sorted run */
    qsort(a->pairs, a->len, sizeof *a->pairs, cmp_line_key);
    for (size_t i = 0; i < a->len; i++) {
        uint32_t node = (uint32_t)(a->pairs[i][0] >> 32);
        vmp_atree_node *n = &t->nodes[node];
        if (n->n_lines == 0)
            n->lines_off = (uint32_t)i;
        n->n_lines++;
        t->lines[i] = (vmp_atree_line){(uint32_t)a->pairs[i][0], a->pairs[i][1]};
    }
    t->n_lines = a->len;
    return 0;
}

/* A child's sort key, so that qsort needs no context. */
typedef struct sib_key {
    uint32_t parent, idx;
    uint64_t count, addr;
    uint8_t kind;
} sib_key;

static int cmp_siblings(const void *x, const void *y)
{
    const sib_key *a = x, *b = y;
    if (a->parent != b->parent)
        return a->parent < b->parent ? -1 : 1;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    if (a->addr != b->addr)
        return a->addr < b->addr ? -1 : 1;
    return a->kind < b->kind ? -1 : a->kind > b->kind;
}

static int cmp_funcs(const void *x, const void *y)
{
    const vmp_afunc_stat *a = x, *b = y;
    if (a->inclusive != b->inclusive)
        return a->inclusive > b->inclusive ? -1 : 1;
    if (a->addr != b->addr)
        return a->addr < b->addr ? -1 : 1;
    return a->kind < b->kind ? -1 : a->kind > b->kind;
}

/* Links every node's children in order: count descending, then address.
 * Children are grouped by parent with a counting pass, so only each small
 * sibling group is sorted. */
static int link_children(vmp_atree *t)
{
    size_t n = t->n_nodes - 1;
    if (!n)
        return 0;
    uint32_t *start = calloc(t->n_nodes + 1, sizeof *start);
    sib_key *order = malloc(n * sizeof *order);
    if (!start || !order) {
        free(start);
        free(order);
        return -1;
    }
    for (size_t i = 1; i < t->n_nodes; i++)
        start[t->nodes[i].parent + 1]++;
    for (size_t i = 0; i < t->n_nodes; i++)
        start[i + 1] += start[i];
    for (size_t i = 1; i < t->n_nodes; i++) {
        const vmp_atree_node *c = &t->nodes[i];
        order[start[c->parent]++] = (sib_key){c->parent, (uint32_t)i, c->count, c->addr, c->kind};
    }
    /* start[p] now marks the end of p's group; groups are contiguous in p order */
    size_t lo = 0;
    for (size_t p = 0; p < t->n_nodes; p++) {
        size_t hi = start[p];
        if (hi - lo > 1)
            qsort(order + lo, hi - lo, sizeof *order, cmp_siblings);
        for (size_t i = hi; i-- > lo;) {
            vmp_atree_node *c = &t->nodes[order[i].idx];
            vmp_atree_node *par = &t->nodes[p];
            c->next_sibling = par->first_child;
            par->first_child = order[i].idx;
            par->n_children++;
        }
        lo = hi;
    }
    free(start);
    free(order);
    return 0;
}

void vmp_atree_free(vmp_atree *t)
{
    if (!t)
        return;
    free(t->nodes);
    free(t->child_table);
    free(t->lines);
    free(t->meta);
    free(t->funcs);
    free(t);
}

/* The node's meta counts, made on first use. */
static uint64_t *node_meta(vmp_atree *t, uint32_t node)
{
    vmp_atree_node *n = &t->nodes[node];
    if (n->meta_index == VMP_ATREE_NONE) {
        if (t->n_meta == t->cap_meta) {
            size_t nc = t->cap_meta ? t->cap_meta * 2 : 64;
            void *nm = realloc(t->meta, nc * sizeof *t->meta);
            if (!nm)
                return NULL;
            t->meta = nm;
            t->cap_meta = nc;
        }
        memset(t->meta[t->n_meta], 0, sizeof t->meta[0]);
        n->meta_index = (uint32_t)t->n_meta++;
    }
    return t->meta[n->meta_index];
}

const uint64_t *vmp_atree_meta(const vmp_atree *t, uint32_t node)
{
    uint32_t m = t->nodes[node].meta_index;
    return m == VMP_ATREE_NONE ? NULL : t->meta[m];
}

typedef struct path_entry {
    uint64_t addr;
    uint32_t line;
    uint8_t kind; /* as keyed in the tree */
} path_entry;

vmp_atree *vmp_atree_build(const vmp_profile *p, const vmp_atree_options *options,
                         vmp_error *err)
{
    uint32_t only_thread = options ? options->thread_index : VMP_ATREE_ALL_THREADS;
    int python_only = options && (options->flags & VMP_ATREE_PYTHON_ONLY);
    vmp_atree *t = calloc(1, sizeof *t);
    line_acc lines = {0};
    func_acc funcs = {0};
    path_entry *path = NULL;
    size_t path_cap = 0;
    if (!t)
        goto oom;
    t->cap_nodes = 1024;
    t->nodes = malloc(t->cap_nodes * sizeof *t->nodes);
    if (!t->nodes)
        goto oom;
    memset(&t->nodes[0], 0, sizeof t->nodes[0]);
    t->nodes[0].parent = t->nodes[0].first_child = t->nodes[0].next_sibling = VMP_ATREE_NONE;
    t->nodes[0].meta_index = VMP_ATREE_NONE;
    t->n_nodes = 1;

    size_t n_stacks = vmp_profile_stack_count(p);
    for (size_t si = 0; si < n_stacks; si++) {
        vmp_stack st;
        vmp_profile_stack_at(p, si, &st);
        if (only_thread != VMP_ATREE_ALL_THREADS && st.thread_index != only_thread)
            continue;
        uint64_t cnt = st.count;
        if (st.depth > path_cap) {
            free(path);
            path_cap = st.depth;
            path = malloc(path_cap * sizeof *path);
            if (!path)
                goto oom;
        }
        /* The path as the tree sees it: filtered, runs merged. */
        size_t np = 0;
        for (uint32_t i = 0; i < st.depth; i++) {
            const vmp_frame *f = &st.frames[i];
            uint8_t kind = f->kind;
            if (python_only) {
                if (!is_python(kind))
                    continue;
                kind = VMP_FRAME_PYTHON;
            }
            if (np && path[np - 1].addr == f->addr && path[np - 1].kind == kind) {
                path[np - 1].line = f->line; /* the innermost line of the run */
                continue;
            }
            path[np++] = (path_entry){f->addr, f->line, kind};
        }
        /* Non-Python frames below the innermost Python frame, by kind. */
        unsigned tail = 0;
        int inner_py = -1;
        for (uint32_t i = st.depth; i-- > 0;) {
            if (is_python(st.frames[i].kind)) {
                inner_py = (int)i;
                break;
            }
            if (st.frames[i].kind < VMP_FRAME_KIND_COUNT)
                tail |= 1u << st.frames[i].kind;
        }

        t->nodes[0].count += cnt;
        uint32_t cur = 0, py_node = VMP_ATREE_NONE;
        for (size_t i = 0; i < np; i++) {
            cur = get_child(t, cur, path[i].addr, path[i].kind);
            if (cur == VMP_ATREE_NONE)
                goto oom;
            t->nodes[cur].count += cnt;
            if (path[i].line && line_add(&lines, cur, path[i].line, cnt) < 0)
                goto oom;
            if (is_python(path[i].kind))
                py_node = cur;
            uint32_t fi = get_func(t, &funcs, path[i].addr, path[i].kind);
            if (fi == VMP_ATREE_NONE)
                goto oom;
            if (funcs.stamp[fi] != si) {
                funcs.stamp[fi] = si;
                t->funcs[fi].inclusive += cnt;
            }
        }
        t->nodes[cur].self_count += cnt;
        if (np) {
            uint32_t fi = get_func(t, &funcs, path[np - 1].addr, path[np - 1].kind);
            if (fi == VMP_ATREE_NONE)
                goto oom;
            t->funcs[fi].self += cnt;
        }
        if (py_node != VMP_ATREE_NONE && inner_py >= 0) {
            unsigned warm_kinds = (1u << VMP_FRAME_JIT_TRACING) | (1u << VMP_FRAME_BLACKHOLE);
            int warmup = (tail & warm_kinds) != 0;
            int jit = st.frames[inner_py].kind == VMP_FRAME_JIT && !warmup;
            if ((tail & ~(1u << VMP_FRAME_PYTHON)) || jit) {
                uint64_t *m = node_meta(t, py_node);
                if (!m)
                    goto oom;
                for (int k = 1; k < VMP_FRAME_KIND_COUNT; k++)
                    if (k != VMP_FRAME_JIT && (tail & (1u << k)))
                        m[k] += cnt;
                if (jit)
                    m[VMP_FRAME_JIT] += cnt;
            }
        }
    }
    if (link_children(t) < 0 || finish_lines(t, &lines) < 0)
        goto oom;
    if (t->n_funcs)
        qsort(t->funcs, t->n_funcs, sizeof *t->funcs, cmp_funcs);
    free(path);
    line_acc_free(&lines);
    func_acc_free(&funcs);
    return t;
oom:
    free(path);
    line_acc_free(&lines);
    func_acc_free(&funcs);
    vmp_atree_free(t);
    vmp_error_set(err, -1, "out of memory while building the call tree");
    return NULL;
}

const vmp_atree_node *vmp_atree_nodes(const vmp_atree *t, size_t *n)
{
    *n = t->n_nodes;
    return t->nodes;
}

const vmp_atree_line *vmp_atree_lines(const vmp_atree *t, size_t *n)
{
    *n = t->n_lines;
    return t->lines;
}

const vmp_afunc_stat *vmp_atree_functions(const vmp_atree *t, size_t *n)
{
    *n = t->n_funcs;
    return t->funcs;
}
