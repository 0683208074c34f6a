/*
 * vmp_atree.h - the call tree and per-function totals of a profile.
 *
 * Built from the profile's unique stacks (never from the sample sequence), for
 * one thread or all of them.  Semantics, as the original vmprof's:
 *   - a run of consecutive identical frames in one stack (recursion) is one
 *     node: the sample counts once there;
 *   - count: samples that passed through a node; self_count: samples that
 *     ended there;
 *   - lines (LINES mode): per node, how many of its samples were on each line
 *     (for a merged run, the line of its innermost frame);
 *   - meta: per Python node, the samples whose innermost Python frame it was,
 *     counted by the kinds of the non-Python frames below it (PyPy gc,
 *     blackhole, assembler, JIT tracing, native; each kind once per sample),
 *     and under VMP_FRAME_JIT the samples that were running JIT-compiled code
 *     (not while tracing or in the blackhole interpreter, as the original).
 *
 * "Python" frames are VMP_FRAME_PYTHON and VMP_FRAME_JIT (PyPy's JIT frames
 * name the Python function they run).  With VMP_ATREE_PYTHON_ONLY the tree and
 * the function totals see only Python frames, JIT frames merged with their
 * function: this is the "flattened" tree, where non-Python entries are folded
 * into their Python parents (their counts stay in meta and self_count).
 *
 * Node 0 is a synthetic root (addr 0) whose count is every sample considered;
 * children are ordered by count, highest first, then by address.
 */
#ifndef VMP_ATREE_H
#define VMP_ATREE_H

#include <stddef.h>
#include <stdint.h>

#include "vmp_error.h"
#include "vmp_profile.h"

#define VMP_ATREE_NONE UINT32_MAX
#define VMP_ATREE_ALL_THREADS UINT32_MAX
#define VMP_ATREE_PYTHON_ONLY 1u

typedef struct vmp_atree_options {
    uint32_t thread_index; /* index into the profile's thread table, or ALL */
    unsigned flags;        /* VMP_ATREE_* */
} vmp_atree_options;

typedef struct vmp_atree_node {
    uint64_t addr;
    uint64_t count;
    uint64_t self_count;
    uint32_t parent;       /* VMP_ATREE_NONE for the root */
    uint32_t first_child;  /* VMP_ATREE_NONE when a leaf */
    uint32_t next_sibling; /* VMP_ATREE_NONE for the last child */
    uint32_t n_children;
    uint32_t lines_off, n_lines; /* into vmp_atree_lines() */
    uint32_t meta_index;   /* into the meta table, VMP_ATREE_NONE when all zero */
    uint8_t kind;          /* vmp_frame_kind */
} vmp_atree_node;

typedef struct vmp_atree_line {
    uint32_t line;
    uint64_t count;
} vmp_atree_line;

/* Per function (address and kind), each counted at most once per sample. */
typedef struct vmp_afunc_stat {
    uint64_t addr;
    uint64_t inclusive; /* samples with the function anywhere in the stack */
    uint64_t self;      /* samples with it innermost */
    uint8_t kind;
} vmp_afunc_stat;

typedef struct vmp_atree vmp_atree;

/* options may be NULL (all threads, every frame).  NULL on failure. */
vmp_atree *vmp_atree_build(const vmp_profile *p, const vmp_atree_options *options,
                         vmp_error *err);
void vmp_atree_free(vmp_atree *t);

const vmp_atree_node *vmp_atree_nodes(const vmp_atree *t, size_t *n);
/* All nodes' line counts; a node's are [lines_off, lines_off + n_lines),
 * sorted by line. */
const vmp_atree_line *vmp_atree_lines(const vmp_atree *t, size_t *n);
/* A node's meta counts, indexed by vmp_frame_kind ([PYTHON] unused), or NULL
 * when they are all zero (most nodes: meta lives in a side table). */
const uint64_t *vmp_atree_meta(const vmp_atree *t, uint32_t node);
/* The child of node with this address and kind, or VMP_ATREE_NONE. */
uint32_t vmp_atree_find_child(const vmp_atree *t, uint32_t node, uint64_t addr, uint8_t kind);

/* Function totals, ordered by inclusive count, highest first, then address. */
const vmp_afunc_stat *vmp_atree_functions(const vmp_atree *t, size_t *n);

#endif /* VMP_ATREE_H */
