/*
 * vmprof.h - libvmprof's public interface: read a vmprof profile once, then ask
 * one query layer for every view of it.
 *
 * This is the only header a program outside the library includes (the server,
 * the Python bindings' views, tools); the vmp_*.h headers beside it are the
 * library's internals and may change.  Everything here is plain C with no
 * Python and no global state: a profile may be queried from several threads at
 * once (queries only read it), and every result is one heap block that
 * vmp_result_free() releases.
 *
 * The model.  Reading turns the file's records into
 *   - facts: interpreter, command line, period, modes, times, sample count;
 *   - functions: each distinct (kind, name, file, first line), parsed once from
 *     the name records ("py:name:line:file", "n:symbol:line:file"); ids the
 *     file never named get "0x<id>", PyPy's unnamed machine frames one
 *     function per kind ("<garbage collector>", ...).  Several ids naming the
 *     same function (a code object made again) are one function;
 *   - codes: each distinct (id, kind) seen in a stack, and its function;
 *   - the unique stacks (thread, codes root first, sample count) and the
 *     sample sequence (stack, RSS, time).
 *
 * Queries.  A vmp_query says which samples (a thread, a range of sample
 * indices, a time range), which frames (flags below) and how to shape a tree;
 * a zeroed vmp_query means every sample, every frame, recursion kept.  Each
 * query function takes the profile and the query and returns a result.
 *
 * The program, not the profiler.  A profile recorded by `python -m vmprof`
 * has the runner's frames (runpy, vmprof's __main__.py) at the root of the
 * main thread's stacks (on PyPy under its start-up, app_main.py).  Every
 * query leaves them out (the stack starts at the program's first frame)
 * unless VMP_Q_KEEP_RUNNER asks for them; a stack without a runner frame, or
 * with no frame of the program after it, keeps its frames.
 *
 * Errors: functions that can fail take a vmp_error and fill it with one line
 * saying what is wrong and what to do (with the byte offset for bad input).
 */
#ifndef VMPROF_H
#define VMPROF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ---------------------------------------------------------------- */

typedef struct vmp_error {
    int64_t offset;    /* byte offset in the decoded input, or -1 */
    char message[256]; /* one line, no trailing newline; "" when no error */
} vmp_error;

/* ---- reading --------------------------------------------------------------- */

typedef struct vmp_profile vmp_profile;

typedef struct vmp_read_options {
    /* A file cut inside a record is an error (by default the records before
     * the cut are kept and vmp_facts.truncated_at says where). */
    int strict;
} vmp_read_options;

/* Plain or gzip-compressed.  options may be NULL.  NULL on failure, with err
 * set ("at byte N: what is wrong"). */
vmp_profile *vmp_profile_read_file(const char *path, const vmp_read_options *options,
                                   vmp_error *err);
/* Reads fd from its position to its end (a pipe works); does not close it. */
vmp_profile *vmp_profile_read_fd(int fd, const vmp_read_options *options, vmp_error *err);
/* Bytes in memory (used in place while reading; not kept). */
vmp_profile *vmp_profile_read_memory(const void *data, size_t len,
                                     const vmp_read_options *options, vmp_error *err);
void vmp_profile_free(vmp_profile *p);
/* The bytes a decoded profile holds in memory (its allocations, as
 * allocated: capacities, not lengths), e.g. to charge it in a cache. */
size_t vmp_profile_memory(const vmp_profile *p);

/* Incremental reading, for bytes that arrive in pieces (an HTTP upload): push
 * each piece as it comes; records are decoded as soon as they are whole, and
 * only an incomplete last record is buffered, so memory follows the profile,
 * not the file.  Plain (uncompressed) input, as the upload protocol sends. */
typedef struct vmp_decoder vmp_decoder;

vmp_decoder *vmp_decoder_new(const vmp_read_options *options, vmp_error *err);
/* 0, or -1 with err set when the bytes so far are not a valid profile (the
 * decoder is then only good for vmp_decoder_free). */
int vmp_decoder_push(vmp_decoder *d, const void *data, size_t len, vmp_error *err);
/* The input has ended: returns the profile (NULL with err set when the input
 * was not a profile) and frees the decoder either way. */
vmp_profile *vmp_decoder_finish(vmp_decoder *d, vmp_error *err);
/* Abandons a decoder (an upload that broke off). */
void vmp_decoder_free(vmp_decoder *d);

/* What the decoder tells an observer of each STACKTRACE record it reads (for
 * a store that keeps a repeated stack once: vmp_compact.h).  A record's
 * stack bytes are its entries and thread word, as in the input.  Ids number
 * the stacks whose bytes the decoder keeps a copy of, from 0 in input order
 * (it keeps at most 32 MiB of copies; a stack that comes again after the
 * decoder dropped its table gets a new id). */
#define VMP_NO_STACK_ID UINT32_MAX
typedef struct vmp_stack_record {
    uint64_t at;          /* input offset of the record's first byte */
    uint32_t size;        /* the whole record's bytes */
    uint32_t stack_at;    /* where in the record its stack bytes start */
    uint32_t stack_len;   /* and how many */
    uint32_t repeat_of;   /* the id of an earlier stack these bytes repeat exactly
                           * (compared byte for byte), or VMP_NO_STACK_ID */
    uint32_t defines;     /* the id these stack bytes get (first seen), or VMP_NO_STACK_ID */
} vmp_stack_record;
typedef void (*vmp_stack_observer)(void *ctx, const vmp_stack_record *r);
/* Calls fn(ctx, record) for each STACKTRACE record read from now on, in input
 * order, from inside push and finish. */
void vmp_decoder_observe(vmp_decoder *d, vmp_stack_observer fn, void *ctx);
/* The input offset before which every record has been read (and observed):
 * after a push, where a record cut by the piece's end starts; UINT64_MAX once
 * decoding stopped (the trailer or an error: no record is read after it). */
uint64_t vmp_decoder_settled(const vmp_decoder *d);

/* ---- facts ------------------------------------------------------------------ */

typedef struct vmp_facts {
    char interp[64];       /* "cpython", "pypy", or "" */
    const char *argv;      /* the command line (META "argv"), or "" */
    int version;           /* format version */
    uint64_t period_usec;  /* sampling period the file states */
    uint64_t n_samples;
    size_t n_threads;
    size_t n_functions;
    /* modes */
    int lines, memory, native, real_time, rpython;
    /* times: start of profiling (Unix time), and its duration */
    int has_start;
    int64_t start_sec, start_usec;
    const char *start_zone; /* "" when unknown */
    int has_end;
    int64_t end_sec, end_usec;
    double duration_ms;    /* end - start, or samples x period when a time is missing */
    int complete;          /* the program stopped profiling normally (trailer seen) */
    int64_t truncated_at;  /* offset where a cut last record starts, or -1 */
    uint64_t max_rss_kib;  /* memory mode: the peak, else 0 */
} vmp_facts;

void vmp_profile_facts(const vmp_profile *p, vmp_facts *out);

/* META key/value pairs in file order (text may hold any bytes; each is also
 * NUL-terminated). */
size_t vmp_profile_meta_count(const vmp_profile *p);
void vmp_profile_meta_at(const vmp_profile *p, size_t i, const char **key, size_t *klen,
                         const char **value, size_t *vlen);
/* The value of the last META entry with this key, or NULL. */
const char *vmp_profile_meta_get(const vmp_profile *p, const char *key);

/* Threads in order of first appearance; a query names one by its index. */
size_t vmp_profile_thread_count(const vmp_profile *p);
uint64_t vmp_profile_thread_id(const vmp_profile *p, size_t i);
uint64_t vmp_profile_thread_samples(const vmp_profile *p, size_t i);

/* ---- functions ---------------------------------------------------------------- */

typedef enum vmp_frame_kind {
    VMP_FRAME_PYTHON = 0,      /* a Python function */
    VMP_FRAME_NATIVE = 1,      /* a native (C) function */
    VMP_FRAME_JIT = 2,         /* PyPy: JIT-compiled code */
    VMP_FRAME_GC = 3,          /* PyPy: garbage collector */
    VMP_FRAME_BLACKHOLE = 4,   /* PyPy: blackhole interpreter */
    VMP_FRAME_ASSEMBLER = 5,   /* PyPy: assembler */
    VMP_FRAME_JIT_TRACING = 6, /* PyPy: JIT tracing */
    VMP_FRAME_KIND_COUNT
} vmp_frame_kind;

typedef struct vmp_func {
    const char *name;    /* NUL-terminated, never NULL */
    const char *file;    /* "" when unknown (native without debug info) */
    uint32_t first_line; /* 0 when unknown */
    uint8_t kind;        /* vmp_frame_kind */
    uint8_t interpreter; /* native: the interpreter's own machinery (eval
                            loop, call paths), what VMP_Q_HIDE_INTERPRETER folds */
    uint8_t runner;      /* Python: 1 a frame of `python -m vmprof`'s runner
                            (runpy, vmprof/__main__.py); 2 the interpreter's
                            start-up that calls it (PyPy's app_main.py) */
    uint64_t addr;       /* the first id the file gave it */
} vmp_func;

/* Function indices are stable for the life of the profile and are what query
 * results and root paths use. */
const vmp_func *vmp_profile_funcs(const vmp_profile *p, size_t *n);
/* The function of a code id the stacks use (of any frame kind; the lowest
 * kind first), or VMP_NONE: for the original reader's API, which names
 * functions by address. */
uint32_t vmp_profile_func_of_addr(const vmp_profile *p, uint64_t addr);
/* The function with this text identity, or VMP_NONE: for matching a function
 * of one profile in another (diff, a root path from a URL). */
uint32_t vmp_profile_find_func(const vmp_profile *p, uint8_t kind, const char *name,
                               const char *file, uint32_t first_line);

/* ---- queries ------------------------------------------------------------------ */

/* "no index": no parent, no function, not found. */
#define VMP_NONE UINT32_MAX
/* vmp_query.thread: every thread.  A zeroed query asks for all threads too:
 * thread_set says whether thread is meant. */
#define VMP_ALL_THREADS UINT32_MAX

/* Which frames (vmp_query.frames flags). */
#define VMP_Q_PYTHON_ONLY 0x01u      /* only Python frames (PyPy's JIT frames are
                                        their Python function; an id named as a
                                        native symbol is native); the others
                                        fold into their Python caller.  Nor
                                        PyPy's start-up (app_main.py, runner 2):
                                        the interpreter's, as CPython's native
                                        one, so both list the program's */
#define VMP_Q_NO_NATIVE 0x02u        /* leave native (C) frames out */
#define VMP_Q_HIDE_INTERPRETER 0x04u /* leave the interpreter's own native frames
                                        out (vmp_func.interpreter) */
#define VMP_Q_MERGE_RECURSION 0x08u  /* consecutive frames of one function are
                                        one node, as the original's tree */
#define VMP_Q_LINES 0x10u            /* lines mode: a frame per (function, line) */
#define VMP_Q_KEEP_RUNNER 0x20u      /* keep `python -m vmprof`'s runner frames */
#define VMP_Q_BY_ADDRESS 0x40u       /* tree: a node per code id, not per function
                                        (the original reader's Stats API) */

typedef struct vmp_query {
    /* which samples */
    int thread_set;
    uint32_t thread;          /* a thread index (vmp_profile_thread_id) */
    int sample_range_set;
    uint64_t sample_begin;    /* [begin, end) in file order */
    uint64_t sample_end;
    int time_range_set;
    double time_begin_ms;     /* [begin, end) milliseconds from the start */
    double time_end_ms;
    /* which frames */
    unsigned frames;          /* VMP_Q_* */
    /* tree shape (vmp_query_tree, vmp_query_diff) */
    const uint32_t *root_path; /* function indices from the root; the tree is
                                  the subtree at the node this path leads to */
    size_t root_path_len;
    uint32_t max_depth;       /* levels below the root kept; 0: all */
    double min_fraction;      /* drop nodes under this share of the
                                 selected samples; 0: keep all */
    int min_of_root;          /* vmp_query_tree: min_fraction is a share of
                                 the tree's root (root_path's node) instead */
} vmp_query;

/* Milliseconds from the start of profiling to sample i (the file's own time
 * for format 7, else spread evenly over the recorded duration). */
double vmp_profile_sample_ms(const vmp_profile *p, uint64_t i);
/* The samples a query selects. */
uint64_t vmp_query_count(const vmp_profile *p, const vmp_query *q, vmp_error *err);

/* -- call tree -- */

typedef struct vmp_tree_node {
    uint64_t addr;         /* the code id (the function's first one unless
                              VMP_Q_BY_ADDRESS) */
    uint64_t total, self;  /* samples through it / ending in it */
    uint64_t cut;          /* samples under children dropped by max_depth or
                              min_fraction */
    uint32_t func;         /* function index; VMP_NONE for the root */
    uint32_t line;         /* VMP_Q_LINES: the line; else 0 */
    uint32_t parent;       /* VMP_NONE for the root */
    uint32_t first_child;  /* VMP_NONE for a leaf; children by total desc. */
    uint32_t next_sibling; /* VMP_NONE for the last */
    uint32_t n_children;
    uint32_t depth;        /* 0 for the root */
    uint32_t n_cut;        /* how many children were dropped */
    uint32_t meta;         /* into vmp_tree.meta, or VMP_NONE */
    uint8_t kind;          /* the function's kind (by address: the frame's,
                              VMP_FRAME_PYTHON with VMP_Q_PYTHON_ONLY) */
} vmp_tree_node;

/* vmp_query_diff: the second profile's counts of a node. */
typedef struct vmp_tree_counts {
    uint64_t total, self;
} vmp_tree_counts;

typedef struct vmp_line_count {
    uint32_t line;
    uint32_t node;  /* in vmp_tree.lines: the node whose samples these are;
                       else VMP_NONE */
    uint64_t count;
} vmp_line_count;

typedef struct vmp_tree {
    const vmp_profile *profile, *profile_b; /* whose funcs nodes name (_b: diff) */
    vmp_tree_node *nodes;  /* nodes[0] is the root: the root path's node, or a
                              synthetic root (func VMP_NONE) over every stack */
    size_t n_nodes;
    uint64_t samples, samples_b; /* selected samples (the shares' base) */
    vmp_tree_counts *b;    /* vmp_query_diff: per node, the second profile's
                              counts (nodes[i] and b[i]); else NULL */
    /* a profile in lines mode without VMP_Q_LINES: the samples of each node
     * per sampled line, by node, then line (vmp_tree_lines: one node's) */
    vmp_line_count *lines;
    size_t n_lines;
    /* PyPy: per node, samples whose innermost Python frame it was, by the
     * kinds of the non-Python frames under it (indexed by vmp_frame_kind) */
    uint64_t (*meta)[VMP_FRAME_KIND_COUNT];
    size_t n_meta;
} vmp_tree;

/* NULL with err set on failure; a root path that leads nowhere gives an
 * error that says which step was not found. */
vmp_tree *vmp_query_tree(const vmp_profile *p, const vmp_query *q, vmp_error *err);
/* The trees of two profiles merged: a node per path in either, with a's
 * counts in total/self and b's in vmp_tree.b.  func indices are a's;
 * functions only b has get indices past a's, resolved by vmp_tree_func(). */
vmp_tree *vmp_query_diff(const vmp_profile *a, const vmp_query *qa, const vmp_profile *b,
                         const vmp_query *qb, vmp_error *err);
/* The function of a node (of either profile in a diff). */
const vmp_func *vmp_tree_func(const vmp_tree *t, uint32_t node);
/* A node's samples per line (*n of them, by line), or NULL with *n = 0. */
const vmp_line_count *vmp_tree_lines(const vmp_tree *t, uint32_t node, size_t *n);

/* -- per function -- */

typedef struct vmp_func_count {
    uint32_t func;
    uint64_t addr;  /* as vmp_tree_node.addr */
    uint8_t kind;   /* as vmp_tree_node.kind */
    uint64_t self;  /* samples ending in it */
    uint64_t total; /* samples with it anywhere, once per sample */
    uint32_t depth; /* the outermost place it was met (0: a stack's root) */
} vmp_func_count;

typedef struct vmp_func_counts {
    vmp_func_count *items; /* by total descending, then self, then index; with
                              VMP_Q_BY_ADDRESS (the original reader's order)
                              by total descending, callers before their
                              callees of the same total (depth), then address */
    size_t n;
    uint64_t samples;
} vmp_func_counts;

vmp_func_counts *vmp_query_functions(const vmp_profile *p, const vmp_query *q,
                                     vmp_error *err);

/* What runs under func: per function (per code id with VMP_Q_BY_ADDRESS) the
 * samples in which it is below func's outermost frame, once per sample (func
 * itself too, where it recurses); .self: those samples that end in it.
 * samples: the samples with func on the stack. */
vmp_func_counts *vmp_query_under(const vmp_profile *p, const vmp_query *q, uint32_t func,
                                 vmp_error *err);

typedef struct vmp_neighbours {
    uint32_t func;
    uint64_t self, total, samples;
    vmp_func_count *callers; /* total: samples where it called func; by total desc. */
    size_t n_callers;
    vmp_func_count *callees; /* total: samples where func called it */
    size_t n_callees;
} vmp_neighbours;

vmp_neighbours *vmp_query_neighbours(const vmp_profile *p, const vmp_query *q, uint32_t func,
                                     vmp_error *err);

/* -- per line -- */

typedef struct vmp_func_lines {
    uint32_t func;
    uint64_t total;         /* samples with the function on the stack */
    vmp_line_count *lines;  /* by line; each (function, line) once per sample */
    size_t n_lines;
} vmp_func_lines;

typedef struct vmp_line_counts {
    vmp_func_lines *funcs;  /* by total descending */
    size_t n_funcs;
    uint64_t samples;
} vmp_line_counts;

/* func: one function, or VMP_NONE for every function.  A profile without
 * lines mode gives an error saying to record with --lines. */
vmp_line_counts *vmp_query_lines(const vmp_profile *p, const vmp_query *q, uint32_t func,
                                 vmp_error *err);

/* -- memory -- */

typedef struct vmp_rss_point {
    double ms;         /* time of the highest sample of the bucket */
    uint64_t rss_kib;  /* the highest RSS of the bucket */
} vmp_rss_point;

typedef struct vmp_rss_series {
    vmp_rss_point *points;
    size_t n;
    uint64_t peak_kib, first_kib, last_kib;
    double peak_ms;
    /* where RSS grew: each rise between consecutive selected samples, charged
     * to the innermost Python function of the later sample */
    vmp_func_count *growth; /* .total = KiB; by growth descending */
    size_t n_growth;
} vmp_rss_series;

/* At most max_points points (buckets of consecutive selected samples).  A
 * profile without memory mode gives an empty series. */
vmp_rss_series *vmp_query_rss(const vmp_profile *p, const vmp_query *q, size_t max_points,
                              vmp_error *err);

/* -- exports -- */

/* Where an export's bytes go: write returns 0, or -1 to stop the export. */
typedef struct vmp_sink {
    int (*write)(void *ctx, const void *data, size_t len);
    void *ctx;
} vmp_sink;

typedef struct vmp_export_settings {
    const char *title;        /* shown by viewers; NULL: from the profile */
    double html_min_fraction; /* html: drop nodes narrower than this share */
} vmp_export_settings;

/* "collapsed, speedscope, pprof, firefox, html". */
const char *vmp_export_formats(void);
/* Writes the selected samples and frames in format.  settings may be NULL. */
int vmp_query_export(const vmp_profile *p, const vmp_query *q, const char *format,
                     const vmp_export_settings *settings, const vmp_sink *sink,
                     vmp_error *err);
/* The same into a fresh buffer (*data: free with vmp_result_free). */
int vmp_query_export_buffer(const vmp_profile *p, const vmp_query *q, const char *format,
                            const vmp_export_settings *settings, char **data, size_t *len,
                            vmp_error *err);

/* Frees any result above (NULL is fine). */
void vmp_result_free(void *result);

#ifdef __cplusplus
}
#endif

#endif /* VMPROF_H */
