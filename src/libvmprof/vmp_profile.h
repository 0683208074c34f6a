/*
 * vmp_profile.h - the in-memory profile: what a profile file says, aggregated
 * as it streams in.  This is the contract between the reader and everything
 * that consumes a profile (Python bindings, call trees, views, exporters).
 *
 * Shape:
 *   - a summary (format version, word size, mode, interpreter, period, start and
 *     end time, sample count, max RSS, whether the trailer was seen);
 *   - META key/value pairs, in file order;
 *   - names: id -> text ("py:func:line:file" or "n:sym:line:file").  When an id
 *     has several names, the last "py:" name wins and a native name never
 *     replaces a "py:" name (see docs/format.md);
 *   - threads: the distinct thread ids, in order of first appearance;
 *   - unique stacks: each distinct (thread, frame sequence) once, root first,
 *     with the number of samples that had it;
 *   - the sample sequence: per sample only the index of its unique stack and its
 *     RSS (memory mode), so keeping it costs a few bytes per sample, never a
 *     copy of the sample.
 *
 * Frames are normalised from the file's encodings (plain ids, [line, id] pairs,
 * PyPy's [kind, value] pairs, native addr|1) into vmp_frame.
 *
 * Memory is owned by the profile; pointers returned by accessors live until
 * vmp_profile_free().  No function here calls Python.
 */
#ifndef VMP_PROFILE_H
#define VMP_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "vmp_error.h"
#include "vmprof.h"

/* vmp_frame_kind, vmp_read_options, the read functions and the accessors of
 * facts, META and threads are public: vmprof.h. */

/* One frame of a stack.  addr is the id as the file names it (the key into the
 * name table; a native frame keeps its low bit set).  line is the line number in
 * LINES mode, else 0. */
typedef struct vmp_frame {
    uint64_t addr;
    uint32_t line;
    uint8_t kind; /* vmp_frame_kind */
} vmp_frame;

typedef struct vmp_profile_summary {
    int version;          /* format version from the HEADER record (0 if absent) */
    int word_size;        /* 4 or 8 */
    unsigned mode;        /* VMP_MODE_* flags */
    char interp[64];      /* "cpython", "pypy", or "" */
    uint64_t period_usec; /* sampling period from the static header */
    int has_start_time;
    int64_t start_sec, start_usec;
    int has_end_time;     /* a TRAILER with a time was read */
    int64_t end_sec, end_usec;
    int complete;         /* the TRAILER was seen: the program ended normally */
    int64_t truncated_at; /* offset of an incomplete last record, else -1 */
    uint64_t n_samples;   /* STACKTRACE records read */
    uint64_t max_rss_kib; /* memory mode: highest RSS seen, else 0 */
    int addr_size;        /* 4 or 8: stack entries, ids, thread ids (8 with 4-byte
                             words on 64-bit Windows) */
    char start_zone[9];   /* TIME_N_ZONE's zone name, NUL-terminated ("" if none) */
    char end_zone[9];     /* the TRAILER's zone name */
} vmp_profile_summary;

typedef struct vmp_stack {
    const vmp_frame *frames; /* root first */
    uint32_t depth;
    uint32_t thread_index;   /* index into the thread table */
    uint64_t count;          /* samples with this (thread, stack) */
    /* once resolved (vmp_profile_resolve): per frame its code index, and how
     * many leading frames are `python -m vmprof`'s runner (see vmprof.h) */
    const uint32_t *codes;
    uint32_t runner_frames;
} vmp_stack;

/* A distinct (id, frame kind) of the stacks, and the function it names. */
typedef struct vmp_code {
    uint64_t addr;
    uint32_t func;
    uint8_t kind;
} vmp_code;


/* ---- reading ---------------------------------------------------------- */

/* The vmp_profile_read_* functions (vmprof.h) never fail on a file that
 * merely lacks its trailer or ends inside a record: the profile holds every
 * complete record, summary.complete is 0 and summary.truncated_at says where
 * the last record was cut.  With strict set, a cut record is an error instead.
 * Anything else malformed (unknown tag, impossible length, depth over
 * VMP_MAX_DEPTH_READ, big-endian, not a profile) returns NULL with err naming
 * the offset and the problem. */

/* ---- building (used by the reader; tests and tools may build profiles) -- */

vmp_profile *vmp_profile_new(void);
/* Returns 0, or -1 when out of memory. frames are root first. */
int vmp_profile_add_sample(vmp_profile *p, const vmp_frame *frames, uint32_t depth,
                           uint64_t thread_id, uint64_t rss_kib);
/* Another sample of unique stack stack_index (an index the profile gave out,
 * e.g. vmp_profile_sample_stack() of an earlier sample): the decoder's fast
 * path when it recognises a stack it has seen.  Returns 0, or -1. */
int vmp_profile_add_sample_at(vmp_profile *p, uint32_t stack_index, uint64_t rss_kib);
/* Sets the timestamp (ns, format version 7) of the sample added last. */
int vmp_profile_set_sample_time(vmp_profile *p, int64_t time_ns);
int vmp_profile_add_name(vmp_profile *p, uint64_t id, const char *name, size_t len);
int vmp_profile_add_meta(vmp_profile *p, const char *key, size_t klen,
                         const char *value, size_t vlen);
vmp_profile_summary *vmp_profile_summary_mut(vmp_profile *p);

/* Builds the function and code tables and the per-stack codes from the names
 * and stacks (the decoder calls it once the input has ended; accessors of
 * functions call it on a profile built by hand whose tables are stale).
 * Returns 0, or -1 when out of memory. */
int vmp_profile_resolve(vmp_profile *p);
/* Resolves a hand-built profile whose tables are stale; 0, or -1 when that
 * failed (out of memory). */
int vmp_profile_check_resolved(const vmp_profile *p);
/* The code table; NULL (n = 0) when resolving failed. */
const vmp_code *vmp_profile_codes(const vmp_profile *p, size_t *n);
/* The code of (addr, kind), or VMP_NONE. */
uint32_t vmp_profile_code_find(const vmp_profile *p, uint64_t addr, uint8_t kind);

/* ---- accessors ---------------------------------------------------------- */

const vmp_profile_summary *vmp_profile_get_summary(const vmp_profile *p);


/* NULL when the id has no name; *len receives the length. */
const char *vmp_profile_name(const vmp_profile *p, uint64_t id, size_t *len);
size_t vmp_profile_name_count(const vmp_profile *p);
void vmp_profile_name_at(const vmp_profile *p, size_t i, uint64_t *id, const char **name,
                         size_t *len);


size_t vmp_profile_stack_count(const vmp_profile *p);
void vmp_profile_stack_at(const vmp_profile *p, size_t i, vmp_stack *out);

/* The sample sequence, in file order: its unique stack and RSS (0 without
 * memory mode). */
uint32_t vmp_profile_sample_stack(const vmp_profile *p, uint64_t i);
uint64_t vmp_profile_sample_rss(const vmp_profile *p, uint64_t i);
/* Version 7 files: the sample's timestamp in ns; 0 when the file has none. */
int vmp_profile_has_sample_times(const vmp_profile *p);
int64_t vmp_profile_sample_time(const vmp_profile *p, uint64_t i);

#endif /* VMP_PROFILE_H */
