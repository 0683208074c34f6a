/*
 * vmp_native_mode.c - native mode for the sampler (contract in the header).
 *
 * The handler stores raw program counters; the writer thread turns each into
 * its function's start through a pc -> start map, asking vmp_symbols only the
 * first time a pc is met, so a hot loop costs one hash probe per frame.
 * Function starts, not pcs, go into the file: every sample in one function
 * then shares one stack entry, as the format and the call tree expect.  The
 * same first meeting teaches the unwinder's fast walk the pc's unwind rule.
 */
#include "vmp_native_mode.h"

#include <stdlib.h>
#include <string.h>

#include "vmp_format.h"
#include "vmp_hash.h"
#include "vmp_native_unwind.h"
#include "vmp_symbols.h"

/* The interpreter's evaluation loop: a C frame running Python frames. */
#define EVAL_FUNCTION "_PyEval_EvalFrameDefault"

/* Touched by enable/disable and the writer thread only (never by handlers). */
static struct {
    vmp_symbols *syms;
    vmp_u64map start_offset; /* pc -> pc minus its function's start */
} N;

static int fail(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -1;
}

int vmp_native_mode_start(char *err, size_t errlen)
{
    if (vmp_native_setup() < 0)
        return fail(err, errlen,
                    "native profiling cannot walk this process's C stack (libunwind failed): "
                    "profile with native=False (-n/--no-native)");
    vmp_symbols_close(N.syms); /* a fork child's copy of the parent's session */
    N.syms = vmp_symbols_open();
    if (!N.syms) {
        vmp_native_teardown();
        return fail(err, errlen,
                    "native profiling cannot read this process's memory map (/proc/self/maps): "
                    "profile with native=False (-n/--no-native)");
    }
    uintptr_t ranges[VMP_NATIVE_MAX_EVAL_RANGES][2];
    int n = vmp_symbols_function_ranges(N.syms, EVAL_FUNCTION, ranges, VMP_NATIVE_MAX_EVAL_RANGES);
    for (int i = 0; i < n; i++)
        vmp_native_add_eval_range(ranges[i][0], ranges[i][1]);
    if (n == 0) {
        vmp_native_mode_stop();
        return fail(err, errlen,
                    "native profiling needs the interpreter's symbol " EVAL_FUNCTION
                    ", which this Python does not expose: profile with native=False (-n/--no-native)");
    }
    vmp_u64map_free(&N.start_offset);
    return 0;
}

void vmp_native_mode_stop(void)
{
    vmp_native_teardown();
    vmp_symbols_close(N.syms);
    N.syms = NULL;
    vmp_u64map_free(&N.start_offset);
}

size_t vmp_native_mode_sample(void *ucontext, PyThreadState *ts, uint64_t *slot,
                              size_t slot_words, int lines)
{
    /* About 5 KiB of the interrupted thread's stack, no more: the Python
     * frames go into the slot itself. */
    uintptr_t pcs[VMP_NATIVE_MAX_DEPTH];
    unsigned char last[VMP_MAX_DEPTH_WRITTEN];
    size_t w = lines ? 2 : 1;
    size_t max_frames = VMP_MAX_DEPTH_WRITTEN;
    if (max_frames > slot_words / w)
        max_frames = slot_words / w;

    int npcs = vmp_native_unwind(ucontext, pcs, (int)max_frames);
    /* The Python frames sit at the slot's tail, at least npcs frames past
     * its start, which is what an in-place splice needs. */
    size_t room = slot_words / w - (size_t)npcs;
    if (room > max_frames)
        room = max_frames;
    uint64_t *py = slot + (slot_words - room * w);
    size_t npy = vmp_frames_walk_marked(ts, py, last, room, lines) / w;
    return (size_t)vmp_native_splice(pcs, npcs, py, last, (int)npy, (int)w, slot,
                                     (int)(max_frames * w));
}

/* ---- the writer's side ------------------------------------------------------ */

uint64_t vmp_native_mode_entry_id(uint64_t entry)
{
    uint64_t pc = entry & ~(uint64_t)VMP_NATIVE_BIT;
    if (!pc)
        return entry;
    uint32_t offset;
    if (vmp_u64map_find(&N.start_offset, pc, &offset))
        return (pc - offset) | VMP_NATIVE_BIT;
    uint64_t start = N.syms ? vmp_symbols_function_start(N.syms, (uintptr_t)pc) : pc;
    /* A function is far smaller than 4 GiB; a "start" farther away than the
     * map can hold is no function's start: keep the pc itself. */
    if (start > pc || pc - start >= VMP_U64MAP_EMPTY)
        start = pc;
    if (vmp_u64map_put(&N.start_offset, pc, (uint32_t)(pc - start)) < 0)
        return entry; /* out of memory: the raw pc still says where it was */
    /* Teach the handlers' fast walk how to step from this pc.  The file
     * keeps pc | 1, so the low bit of the real pc is lost: the rule is
     * learned only where it is the same at both candidates. */
    vmp_unwind_rule a, b;
    if (N.syms && vmp_symbols_unwind_rule(N.syms, (uintptr_t)pc, &a) == 0 &&
        vmp_symbols_unwind_rule(N.syms, (uintptr_t)pc + 1, &b) == 0 && memcmp(&a, &b, sizeof a) == 0)
        vmp_native_learn((uintptr_t)pc, &a);
    return start | VMP_NATIVE_BIT;
}

void vmp_native_mode_tick(void)
{
    vmp_native_refresh();
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The distinct function starts met so far, sorted; *n receives how many.
 * NULL when there are none or memory is short. */
static uint64_t *distinct_starts(size_t *n)
{
    *n = 0;
    const vmp_u64map *m = &N.start_offset;
    if (!m->len)
        return NULL;
    uint64_t *starts = malloc(m->len * sizeof *starts);
    if (!starts)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->vals[i] != VMP_U64MAP_EMPTY)
            starts[k++] = m->keys[i] - m->vals[i];
    qsort(starts, k, sizeof *starts, cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || starts[u - 1] != starts[i])
            starts[u++] = starts[i];
    *n = u;
    return starts;
}

size_t vmp_native_mode_functions(void)
{
    size_t n;
    free(distinct_starts(&n));
    return n;
}

void vmp_native_mode_write_names(vmp_wbuf *buf, void (*flush)(void))
{
    size_t n;
    uint64_t *starts = distinct_starts(&n);
    char name[VMP_MAX_NAME + 1];
    for (size_t i = 0; i < n; i++) {
        size_t len = N.syms ? vmp_symbols_name(N.syms, (uintptr_t)starts[i], name, sizeof name)
                            : (size_t)snprintf(name, sizeof name, "n:<native symbol 0x%llx>:0:-",
                                               (unsigned long long)starts[i]);
        if (len > VMP_MAX_NAME)
            len = VMP_MAX_NAME;
        if (buf->cap - buf->len < vmp_enc_name_size(buf, len))
            flush();
        vmp_enc_name(buf, VMP_TAG_NATIVE_SYMBOLS, starts[i] | VMP_NATIVE_BIT, name, len);
    }
    free(starts);
}
