/*
 * vmp_query.h - the query layer's internals shared by its builders (the
 * public queries are in vmprof.h): the selection of samples, and the path of
 * a stack as a query sees it.  The exporters use them too, so that every
 * view selects samples and frames the same way.
 */
#ifndef VMP_QUERY_H
#define VMP_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "vmp_profile.h"
#include "vmprof.h"

/* Which samples a query selects, as a count per unique stack. */
typedef struct vmp_selection {
    const vmp_profile *p;
    const vmp_query *q;   /* never NULL */
    uint32_t thread;      /* a thread index or VMP_ALL_THREADS */
    uint64_t begin, end;  /* the sample range [begin, end) */
    int ranged;           /* not every sample: counts holds the counts */
    uint64_t *counts;     /* per unique stack, when ranged */
    uint64_t total;       /* samples selected */
    const vmp_func *funcs;
    size_t n_funcs;
    const vmp_code *codes;
    size_t n_codes;
} vmp_selection;

/* 0, or -1 with err set (a thread index not in the profile, a backwards
 * range, out of memory).  Free with vmp_selection_free. */
int vmp_query_select(const vmp_profile *p, const vmp_query *q, vmp_selection *sel,
                     vmp_error *err);
void vmp_selection_free(vmp_selection *sel);

/* Samples of unique stack i (st: its vmp_profile_stack_at) selected. */
static inline uint64_t vmp_selection_count(const vmp_selection *sel, size_t i,
                                           const vmp_stack *st)
{
    if (sel->thread != VMP_ALL_THREADS && st->thread_index != sel->thread)
        return 0;
    return sel->counts ? sel->counts[i] : st->count;
}

/* One frame of a path.  id is what tells nodes apart: the function index, or
 * by address the code index (a JIT frame's interpreted code with
 * VMP_Q_PYTHON_ONLY). */
typedef struct vmp_path_frame {
    uint32_t id;
    uint32_t func;
    uint32_t line;
    uint8_t kind;
    uint64_t addr;
} vmp_path_frame;

typedef struct vmp_path {
    vmp_path_frame *f;
    size_t n, cap;
} vmp_path;

/* The frames of st the query keeps, root first: the runner's frames dropped
 * (unless VMP_Q_KEEP_RUNNER), frames filtered by the query's flags,
 * recursion merged with VMP_Q_MERGE_RECURSION.  0, or -1 when out of
 * memory.  A zeroed vmp_path is empty; free it with vmp_path_free. */
int vmp_path_make(const vmp_selection *sel, const vmp_stack *st, vmp_path *out);
/* The same frames added after those out holds (the tree keeps every path in
 * one array). */
int vmp_path_append(const vmp_selection *sel, const vmp_stack *st, vmp_path *out);
void vmp_path_free(vmp_path *path);

/* The selected stacks one after the other with their paths, the loop every
 * builder runs:
 *     vmp_path_walk w = {0};
 *     while ((r = vmp_path_next(sel, &w)) > 0)
 *         ... w.index (the unique stack), w.stack, w.count, w.path ...
 *     vmp_path_free(&w.path);
 * r is 0 at the end, -1 when out of memory. */
typedef struct vmp_path_walk {
    size_t next;     /* the next unique stack to look at */
    size_t index;
    vmp_stack stack;
    uint64_t count;  /* its selected samples */
    vmp_path path;
} vmp_path_walk;

int vmp_path_next(const vmp_selection *sel, vmp_path_walk *w);

/* vmp_query_tree, and where each sample ends in it, for the exports that
 * follow the sample sequence (firefox): *leaves (free it) holds per unique
 * stack of p the node its path ends in, VMP_NONE for a stack not selected or
 * whose node was cut. */
vmp_tree *vmp_query_tree_leaves(const vmp_profile *p, const vmp_query *q, uint32_t **leaves,
                                vmp_error *err);

#endif /* VMP_QUERY_H */
