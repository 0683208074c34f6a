/*
 * vmp_export.h - writing a profile in the formats other tools read.
 *
 * One entry point, vmp_export_write(), takes a read profile (vmp_profile.h),
 * a format and options, and writes the result to a stdio stream.  Each format
 * lives in its own file, vmp_export_<format>.c, and sees the profile through
 * the shared "export view" below; adding a format is one new file plus one
 * line in the table in vmp_export.c.
 *
 *   collapsed   "root;child;leaf count" lines (flamegraph.pl, inferno)
 *   speedscope  speedscope's JSON file format: one sampled profile per
 *               thread, frames shared between them
 *   pprof       gzip-compressed profile.proto (go tool pprof): samples
 *               leaf-first, one Function per (name, file, first line), one
 *               Location per line in lines mode, the thread as a label
 *   firefox     the Firefox Profiler's processed format: per thread a timed
 *               sample table and stack, frame and function tables
 *   html        one self-contained page with an interactive flame graph; it
 *               embeds the aggregated call tree, never the samples, so its
 *               size follows the number of distinct stacks
 *
 * The export view.  Formats do not walk the raw profile: vmp_export_view_build()
 * resolves it once into
 *   - funcs: one per (name, file, first line), parsed from the name records
 *     ("py:name:line:file", "n:symbol:line:file"); ids without a name become
 *     "0x<id>"; PyPy's JIT frames named "py:" are their Python function,
 *     its other frames without a name (GC, assembler, ...) one func per kind;
 *   - frames: one per (func, line): the line is the sampled line in lines
 *     mode (when options ask for lines), else the func's first line;
 *   - stacks: the distinct (thread, frame sequence) pairs, root first, with
 *     their sample counts, after dropping native frames when asked and
 *     keeping only the selected thread;
 *   - the mapping from each profile stack to its view stack, so formats that
 *     need the sample sequence (firefox) can follow it in file order.
 * Stacks keep recursion as it was sampled: flame graphs show it.
 *
 * Nothing here calls Python; all memory is freed by vmp_export_view_free().
 */
#ifndef VMP_EXPORT_H
#define VMP_EXPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vmp_error.h"
#include "vmp_profile.h"
#include "vmprof.h"

typedef enum vmp_export_format {
    VMP_EXPORT_COLLAPSED = 0,
    VMP_EXPORT_SPEEDSCOPE,
    VMP_EXPORT_PPROF,
    VMP_EXPORT_FIREFOX,
    VMP_EXPORT_HTML,
    VMP_EXPORT_FORMAT_COUNT
} vmp_export_format;

typedef struct vmp_export_options {
    int has_thread;      /* export only the thread with this id */
    uint64_t thread_id;
    int lines;           /* in a lines-mode profile, one frame per sampled line
                          * (always on for pprof and firefox, which group
                          * lines by function themselves) */
    int no_native;       /* drop native (C) frames */
    const char *title;   /* shown by viewers; NULL: derived from the profile */
    /* html: drop call-tree nodes under this fraction of their thread's samples
     * (they would be far narrower than a pixel); 0 picks the default. */
    double html_min_fraction;
} vmp_export_options;

/* "collapsed", "speedscope", ... -> format, or -1 when unknown. */
int vmp_export_format_from_name(const char *name);
const char *vmp_export_format_name(vmp_export_format format);
/* A comma-separated list of the format names, for error messages. */
const char *vmp_export_format_list(void);

/* Writes p in format to out.  options may be NULL (all threads, functions,
 * native frames kept).  Returns 0, or -1 with err set (unknown format, thread
 * not in the profile, out of memory, write failure).  out is flushed, never
 * closed. */
int vmp_export_write(const vmp_profile *p, vmp_export_format format, FILE *out,
                     const vmp_export_options *options, vmp_error *err);
/* The same to a file descriptor (left open). */
int vmp_export_write_fd(const vmp_profile *p, vmp_export_format format, int fd,
                        const vmp_export_options *options, vmp_error *err);
/* The same to a path (created or truncated). */
int vmp_export_write_path(const vmp_profile *p, vmp_export_format format, const char *path,
                          const vmp_export_options *options, vmp_error *err);

/* ---- the export view, for the format files ------------------------------ */

typedef struct vmp_export_func {
    const char *name; /* not NUL-terminated; see name_len */
    size_t name_len;
    const char *file; /* "" when unknown */
    size_t file_len;
    uint32_t first_line;
    uint8_t kind;     /* vmp_frame_kind */
} vmp_export_func;

typedef struct vmp_export_frame {
    uint32_t func;
    uint32_t line;
} vmp_export_frame;

typedef struct vmp_export_stack {
    const uint32_t *frames; /* indices into frames, root first */
    uint32_t depth;
    uint32_t thread;        /* index into the profile's thread table */
    uint64_t count;
} vmp_export_stack;

typedef struct vmp_export_view {
    const vmp_profile *profile;
    vmp_export_func *funcs;
    size_t n_funcs;
    vmp_export_frame *frames;
    size_t n_frames;
    vmp_export_stack *stacks;
    size_t n_stacks;
    /* per profile stack: its view stack, or VMP_EXPORT_NO_STACK when none of
     * its samples is exported */
    uint32_t *stack_map;
    /* per profile thread: 1 when exported */
    unsigned char *thread_on;
    uint64_t n_samples; /* samples exported */
    /* the exported samples are those in [sample_begin, sample_end) whose
     * profile stack has a view stack */
    uint64_t sample_begin, sample_end;
    char title[256];
    vmp_query query;    /* the query the view was made of */
    void *priv;         /* owned storage */
} vmp_export_view;

#define VMP_EXPORT_NO_STACK UINT32_MAX

/* The view of the samples and frames a query selects (vmprof.h); title NULL
 * or "": derived from the profile.  Recursion is kept whatever the query
 * says, and by-address queries are treated as by function. */
int vmp_export_view_build_query(vmp_export_view *v, const vmp_profile *p, const vmp_query *q,
                                const char *title, vmp_error *err);
/* The view that export options describe (their thread, lines and no_native). */
int vmp_export_view_build(vmp_export_view *v, const vmp_profile *p,
                          const vmp_export_options *options, vmp_error *err);
void vmp_export_view_free(vmp_export_view *v);
/* Milliseconds from the start of the profile to sample i: spread evenly over
 * the recorded duration when the file has both times, else i * period. */
double vmp_export_view_sample_ms(const vmp_export_view *v, uint64_t i);
/* The sampling period in milliseconds (1 when the file does not say). */
double vmp_export_view_period_ms(const vmp_export_view *v);
/* "Thread 2 (0x7f3a...)" for display; buf is returned. */
const char *vmp_export_view_thread_label(const vmp_export_view *v, uint32_t thread, char *buf,
                                         size_t size);

/* The view frame of a node of a call tree the query layer built from the
 * view's query (view_tree_query: the html flame graph, firefox's stack
 * table): its function and line as the view has them; VMP_NONE if none. */
uint32_t vmp_export_view_node_frame(const vmp_export_view *v, const vmp_tree_node *n);
/* The view's query as a call tree's: the view's samples and frames, every
 * node kept (no root path, depth or share) and a node per function;
 * thread: a profile thread index, or VMP_ALL_THREADS for the view's. */
void vmp_export_view_tree_query(const vmp_export_view *v, uint32_t thread, vmp_query *out);

/* A string table (pprof's string_table, firefox's stringArray): each distinct
 * string once, in order of first use.  Strings are copied. */
typedef struct vmp_export_strings {
    size_t count;
    void *priv;
} vmp_export_strings;

int vmp_export_strings_init(vmp_export_strings *s);
void vmp_export_strings_free(vmp_export_strings *s);
#define VMP_EXPORT_STRINGS_FAILED UINT32_MAX

/* The index of the string, adding it when new; VMP_EXPORT_STRINGS_FAILED when out
 * of memory. */
uint32_t vmp_export_strings_add(vmp_export_strings *s, const char *str, size_t len);
const char *vmp_export_strings_get(const vmp_export_strings *s, size_t i, size_t *len);

/* The label of a frame as the text formats show it: "name (file:line)", or
 * "name" when the file is unknown.  Returns the length written (truncated
 * to size - 1, NUL-terminated). */
size_t vmp_export_view_frame_label(const vmp_export_view *v, uint32_t frame, char *buf,
                                   size_t size);

/* The format writers (vmp_export_<format>.c).  Each returns 0 or -1 with err
 * set; write errors are checked by the caller through ferror(out). */
int vmp_export_collapsed(const vmp_export_view *v, FILE *out, const vmp_export_options *o,
                         vmp_error *err);
int vmp_export_speedscope(const vmp_export_view *v, FILE *out, const vmp_export_options *o,
                          vmp_error *err);
int vmp_export_pprof(const vmp_export_view *v, FILE *out, const vmp_export_options *o,
                     vmp_error *err);
int vmp_export_firefox(const vmp_export_view *v, FILE *out, const vmp_export_options *o,
                       vmp_error *err);
int vmp_export_html(const vmp_export_view *v, FILE *out, const vmp_export_options *o,
                    vmp_error *err);

#endif /* VMP_EXPORT_H */
