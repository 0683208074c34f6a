/*
 * vmp_native_mode.c - native mode for the sampler (contract in the header).
 *
 * The handler stores exact program counters (vmp_native_word: bit 0 of an
 * odd one too, so a function starting at an odd address is looked up at
 * its own first byte); the writer thread turns each into
 * its function's start through a pc -> start map, asking vmp_symbols only the
 * first time a pc is met, so a hot loop costs one hash probe per frame.
 * Function starts, not pcs, go into the file: every sample in one function
 * then shares one stack entry, as the format and the call tree expect.  The
 * same first meeting teaches the unwinder's fast walk the pc's unwind rule.
 */
#include "vmp_native_mode.h"

#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "vmp_array.h"
#include "vmp_format.h"
#include "vmp_guard.h"
#include "vmp_hash.h"
#include "vmp_native_unwind.h"
#include "vmp_ring.h"
#include "vmp_run.h"
#include "vmp_symbols.h"

/* The interpreter's evaluation loop: a C frame running Python frames. */
#define EVAL_FUNCTION "_PyEval_EvalFrameDefault"

/* Touched by enable/disable and the writer thread only (never by handlers).
 * Two symbol sessions when the writer has a descriptor table of its own
 * (vmp_fds.h): libdw keeps the descriptors of the files it opened, and
 * closes them at the session's end, so a session must live in one table.
 * `syms` is opened by enable in the program's table (the evaluation loop's
 * place, the enabling thread's stack) and closed by disable; `wsyms` is the
 * writer's, opened at its first need in its own table and closed by the
 * writer before it ends.
 * A pause of the writer (os.fork on 3.12+: its thread ends, and its table
 * with it) closes wsyms too, but the next thread opens it again only when
 * it needs it: a pc not met before, a rule only libdw has, a library the
 * loader loaded or unloaded since the session's last report.  Opening it
 * again after every pause (reading the maps, reporting every object, their
 * symbols sorted again at the first name) cost 2.5-3.5 ms per fork in a
 * fork loop (bench/fork_bench.py), for nothing when the program meets no
 * new code in between.  While it is closed the loader's counters stand in
 * for it (wsyms_paused, paused_changes, paused_subs). */
#define UNSURE_MAX 64

static struct {
    vmp_symbols *syms, *wsyms;
    int writer_own_table;    /* the writer uses wsyms, never syms */
    int wsyms_failed;
    int wsyms_paused;        /* wsyms was closed by a pause and not needed since */
    size_t wsyms_opened;     /* times wsyms was opened, this run (tests) */
    unsigned long long paused_changes, paused_subs; /* the loader's counts it knew of */
    int forget_pending;      /* an object went while it was closed: every pc met is forgotten ... */
    uint64_t forget_upto;    /* ... before the slot with this claim index is written */
    uintptr_t interpreter;   /* the evaluation loop's start */
    vmp_u64map start_offset; /* pc -> pc minus its function's start */
    int64_t quiet_until;     /* CLOCK_MONOTONIC ns: a walk's ask for new libraries found none; walks ask again from then */
    size_t pcs_learned;      /* pcs the writer learned the rules of, this run */
    size_t pcs_libdw;        /* of those, the ones whose rules came from libdw */
    /* Objects unloaded during the run (on_unload): */
    vmp_u64map gen;          /* function start -> generation of the function there now (absent: 0) */
    vmp_u64map named;        /* id -> position in names: named before its object went */
    uint64_t *named_ids;
    char **names;
    size_t nnamed, named_cap;
    uint64_t *going;         /* the starts met, between on_unload's two calls */
    const void **going_in;   /* ... and the object each lay in */
    size_t ngoing;
    int unload_pending;      /* an object was unloaded: the session reports it ... */
    uint64_t unload_upto;    /* ... before the slot with this claim index is written */
    /* The loader does not say when it unloaded, so the samples claimed
     * between the writer's last look that found every object of the
     * session loaded (clean_head: claimed before it) and its look that
     * found one gone (unload_upto) may have been taken in the object gone
     * or in code loaded at its place since: a pc at such a place (unsure)
     * is left unnamed in them, rather than given the gone one's name. */
    uint64_t clean_head;
    unsigned long long subs_seen; /* the loader's unloads when the unload was noticed */
    uint64_t unsure_from;
    uintptr_t unsure[UNSURE_MAX][2];
    size_t nunsure;
    uint64_t writing;        /* the claim index of the slot being written (vmp_native_mode_settle) */
    /* Names written during the run (vmp_native_mode_write_new_names), so
     * that a program that dies before the end leaves them in its profile: */
    vmp_u64map written;      /* id -> 1: its name is in the profile, not written again */
    uint64_t (*fresh)[2];    /* (start, id) of the functions met since the last naming */
    size_t nfresh, fresh_cap;
} N;

static void forget_departed(void);
static void forget_names(void);
static void look_at_loader(vmp_symbols *syms);
static void on_unload(vmp_symbols *syms, int after, void *ctx);

/* A walk that met a pc outside every known object rang for a look at the
 * loader and none was loaded (JIT code, a wild return address): walks ring
 * for that again no sooner than this (at most 50 wake-ups a second; the
 * writer still looks at every round). */
#define QUIET_NS 20000000LL

/* The writer's session (see N). */
static vmp_symbols *writer_syms(void)
{
    if (!N.writer_own_table)
        return N.syms;
    if (!N.wsyms && !N.wsyms_failed) {
        N.wsyms = vmp_symbols_open();
        N.wsyms_failed = !N.wsyms;
        N.wsyms_opened += N.wsyms != NULL;
        N.wsyms_paused = 0;
        if (N.wsyms && N.interpreter)
            vmp_symbols_set_interpreter(N.wsyms, N.interpreter);
        if (N.wsyms)
            vmp_symbols_on_unload(N.wsyms, on_unload, NULL);
    }
    return N.wsyms;
}

/* The rules of the function holding pc, whose rows a walk stopping at pc
 * will soon meet too; a pc no rule can express is recorded as such, and not
 * asked about again.  Returns how many rules were written. */
static int rules_at(vmp_symbols *syms, uintptr_t pc, vmp_unwind_rule *rules, int max)
{
    int n = syms ? vmp_symbols_unwind_rules(syms, pc, rules, max) : 0;
    if (n == 0)
        rules[n++] = (vmp_unwind_rule){.lo = pc, .hi = pc + 1, .kind = VMP_RULE_STOP};
    return n;
}

static void answer_asks(void);

#define RULES_PER_ROUND 1024
#define PCS_PER_ROUND 64

/* The rules of the functions holding pcs[0..n) (n <= PCS_PER_ROUND) into
 * rules[0..max).  A pc the walk got past, it got past with its object's own
 * .eh_frame: the same reader gives the rest of that function's rows, in a
 * few microseconds and without libdw (its symbol lookup scans the object's
 * symbols, and its first row lookup in an object parses that object's
 * tables: ~12 ms of the writer's CPU in a 3-s native run that met 20-45
 * new pcs, bench/RESULTS.md).  Only a pc those tables do not cover - one
 * the walk was cut at - is asked of libdw through syms (NULL: the
 * writer's session, see writer_syms).  Returns how
 * many rules were written. */
static int rules_for(vmp_symbols *syms, const uintptr_t *pcs, int n, vmp_unwind_rule *rules, int max)
{
    unsigned char done[PCS_PER_ROUND];
    int k = vmp_native_rules_from_tables(pcs, n, rules, max, done);
    for (int i = 0; i < n && k < max; i++)
        if (!done[i]) {
            answer_asks();
            /* (syms NULL: the writer's, opened only now: after a pause it
             * may be closed) */
            k += rules_at(syms ? syms : writer_syms(), pcs[i], rules + k, max - k);
            N.pcs_libdw++;
        }
    return k;
}

/* The pcs the handlers' walks had no learned rule for since the last round
 * (most got past them through the objects' tables), learned in one
 * publication.  Returns how many pcs it took. */
static int learn_unknown(void)
{
    uintptr_t pcs[PCS_PER_ROUND];
    int n = vmp_native_take_unknown(pcs, PCS_PER_ROUND);
    if (n == 0)
        return 0;
    vmp_unwind_rule *rules = malloc(RULES_PER_ROUND * sizeof *rules);
    if (!rules)
        return 0;
    int k = rules_for(NULL, pcs, n, rules, RULES_PER_ROUND);
    vmp_native_learn(rules, k);
    N.pcs_learned += (size_t)n;
    free(rules);
    return n;
}

typedef struct own_walk {
    ucontext_t *uc;
    uint64_t *frames;
} own_walk;

static void walk_own(void *arg)
{
    own_walk *w = arg;
    vmp_native_walk walk;
    vmp_native_unwind(w->uc, w->frames, VMP_NATIVE_MAX_DEPTH, &walk);
}

/* Before sampling: the enabling thread's own stack, from here to its first
 * frame, is learned, so that the frames every sample of this thread shares
 * are found with one search of the learned rules.  A walk notes every pc it
 * had no learned rule for (it gets past those its objects' tables cover, and
 * stops at the first they do not): each round learns the functions of all
 * it noted, until a walk notes none.  The walk reads the objects' mapped
 * unwind tables, as a handler's does: under the fault guard, as there (an
 * object another thread unloads meanwhile would fault it; the walk then
 * ends, and what it did not reach is learned from the samples). */
static void learn_own_stack(void)
{
    uint64_t *frames = malloc(2 * VMP_NATIVE_MAX_DEPTH * sizeof *frames);
    vmp_unwind_rule *rules = malloc(RULES_PER_ROUND * sizeof *rules);
    vmp_guard_install(0); /* (enable installs it for the run later; not yet) */
    for (int i = 0; frames && rules && i < VMP_NATIVE_MAX_DEPTH; i++) {
        ucontext_t uc;
        if (getcontext(&uc) < 0)
            break;
        own_walk w = {&uc, frames};
        if (vmp_guard_run(walk_own, &w) < 0)
            break;
        uintptr_t unknown[PCS_PER_ROUND];
        int n = vmp_native_take_unknown(unknown, PCS_PER_ROUND);
        if (n == 0)
            break;
        int k = rules_for(N.syms, unknown, n, rules, RULES_PER_ROUND);
        if (vmp_native_learn(rules, k) < 0)
            break;
    }
    vmp_guard_restore();
    free(rules);
    free(frames);
}

static int fail(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -1;
}

int vmp_native_mode_start(char *err, size_t errlen)
{
    if (vmp_native_setup() < 0)
        return fail(err, errlen,
                    "native profiling cannot map its unwind tables (out of memory): "
                    "profile with native=False (-n/--no-native)");
    vmp_symbols_close(N.syms); /* a fork child's copy of the parent's session */
    N.writer_own_table = N.wsyms_failed = N.wsyms_paused = N.forget_pending = 0;
    N.wsyms_opened = 0;
    N.interpreter = 0;
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
    if (n > 0) {
        N.interpreter = ranges[0][0];
        vmp_symbols_set_interpreter(N.syms, ranges[0][0]);
    }
    forget_names();
    N.unload_pending = 0;
    N.nunsure = 0;
    N.clean_head = N.writing = vmp_ring_next_index(); /* (indexes go on from the last run) */
    vmp_symbols_on_unload(N.syms, on_unload, NULL);
    if (n == 0) {
        vmp_native_mode_stop();
        return fail(err, errlen,
                    "native profiling needs the interpreter's symbol " EVAL_FUNCTION
                    ", which this Python does not expose: profile with native=False (-n/--no-native)");
    }
    vmp_u64map_free(&N.start_offset);
    learn_own_stack();
    N.quiet_until = 0;
    N.pcs_learned = N.pcs_libdw = 0;
    /* (the writer naps until there is work: a new pc is some) */
    vmp_native_when_unknown(vmp_ring_ring);
    return 0;
}

static void stop(int handler_inside)
{
    if (handler_inside)
        vmp_native_abandon();
    else
        vmp_native_teardown();
    /* (the rest is the writer's and enable's, never a handler's) */
    vmp_symbols_close(N.syms);
    N.syms = NULL;
    N.writer_own_table = 0; /* (wsyms: closed by the writer) */
    vmp_u64map_free(&N.start_offset);
    forget_names();
}

void vmp_native_mode_stop(void)
{
    stop(0);
}

void vmp_native_mode_abandon(void)
{
    stop(1);
}

static int next_group(void *ctx, uintptr_t *anchor)
{
    return vmp_frames_next_group(ctx, anchor);
}

static int emit_group(void *ctx, uint64_t *out, int max, int *cut)
{
    return vmp_frames_emit_group(ctx, out, max, cut);
}

size_t vmp_native_mode_sample(void *ucontext, PyThreadState *ts, uint64_t *slot,
                              size_t slot_words, int lines, vmp_native_walk *walked)
{
    /* The native frames are walked into the slot's tail and read from there
     * by the splice, which fills the slot from its start; the Python frames
     * are read from the interpreter as the splice goes.  So the handler's
     * own stack holds no array. */
    size_t w = lines ? 2 : 1;
    size_t max_frames = VMP_MAX_DEPTH_WRITTEN;
    if (max_frames > slot_words / w)
        max_frames = slot_words / w;
    size_t max_native = slot_words / 2 < VMP_NATIVE_MAX_DEPTH ? slot_words / 2 : VMP_NATIVE_MAX_DEPTH;
    /* Every Python frame first: a deep recursion (each Python call several
     * C frames on 3.8-3.10, and calls through C on every version) would
     * otherwise fill the sample with native frames and lose the outermost
     * Python frames to the output's end.  So the Python frames are counted
     * (emitted once into the slot, which the walk and the splice then
     * overwrite) and the native walk gets only the room they leave: a walk
     * that needs more is capped, its Python frames still all there, the
     * activations it did not reach outermost, in order. */
    vmp_frames_cursor counting;
    vmp_frames_cursor_start(&counting, ts, max_frames, lines);
    size_t py_words = 0;
    uintptr_t anchor;
    int py_cut = 0;
    while (!py_cut && vmp_frames_next_group(&counting, &anchor))
        py_words += (size_t)vmp_frames_emit_group(&counting, slot + py_words,
                                                  (int)(max_frames * w - py_words), &py_cut);
    size_t room = max_frames - py_words / w;
    if (max_native > room)
        max_native = room;
    uint64_t *frames = slot + slot_words - 2 * max_native;
    vmp_native_walk walk;
    vmp_native_unwind(ucontext, frames, (int)max_native, &walk);
    if (max_native == 0) /* (Python frames fill the sample: no room for the C stack) */
        walk.capped = 1;
    if (walked)
        *walked = walk;
    /* At the very end, so that the output has the most room before it. */
    if ((size_t)walk.n < max_native) {
        uint64_t *end = slot + slot_words - 2 * (size_t)walk.n;
        memmove(end, frames, 2 * (size_t)walk.n * sizeof *frames);
        frames = end;
    }
    vmp_frames_cursor cursor;
    vmp_frames_cursor_start(&cursor, ts, max_frames, lines);
    vmp_native_groups groups = {next_group, emit_group, cursor.count, &cursor};
    return (size_t)vmp_native_splice(frames, &walk, &groups, (int)w, slot, (int)(max_frames * w));
}

/* ---- the writer's side ------------------------------------------------------ */

/* A generation no function is named for: a pc whose function is not known
 * for sure (see N.unsure). */
#define GEN_UNNAMED 0xffffu

/* A function's id: its start (odd: native), and in the top 16 bits (which
 * user-space addresses never use) how many functions were there before it
 * in objects unloaded since, as the writer does for code objects: each
 * has a name of its own. */
static uint64_t id_of(uint64_t start)
{
    uint32_t g;
    if (N.gen.len && vmp_u64map_find(&N.gen, start, &g))
        return start | ((uint64_t)g << 48) | VMP_NATIVE_BIT;
    return start | VMP_NATIVE_BIT;
}

static void keep_name(uint64_t id, const char *text, size_t len)
{
    uint32_t at;
    if (vmp_u64map_find(&N.named, id, &at) || vmp_u64map_find(&N.written, id, &at))
        return;
    if (N.nnamed == N.named_cap) {
        size_t cap = N.named_cap ? 2 * N.named_cap : 64;
        uint64_t *ids = realloc(N.named_ids, cap * sizeof *ids);
        if (!ids)
            return;
        N.named_ids = ids;
        char **names = realloc(N.names, cap * sizeof *names);
        if (!names)
            return;
        N.names = names;
        N.named_cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return;
    memcpy(copy, text, len);
    copy[len] = '\0';
    if (vmp_u64map_put(&N.named, id, (uint32_t)N.nnamed) < 0) {
        free(copy);
        return;
    }
    N.named_ids[N.nnamed] = id;
    N.names[N.nnamed++] = copy;
}

static uint64_t *distinct_starts(size_t *n);

/* The writer's session found objects unloaded (vmp_symbols_on_unload).
 * Before they go, every function met so far is named (names are written
 * at the end, and an unloaded object's would be lost), and where each lay
 * noted; after, a function whose object is not there any more is
 * forgotten: the pcs met in it, and its id, which gets a new generation,
 * so that code loaded at its place later has starts and names of its own.
 * A function of an object still loaded keeps its id (named now rather
 * than at the end: each is named once). */
static void on_unload(vmp_symbols *syms, int after, void *ctx)
{
    (void)ctx;
    if (!after) {
        free(N.going);
        free(N.going_in);
        N.going = distinct_starts(&N.ngoing);
        N.going_in = N.going ? malloc(N.ngoing * sizeof *N.going_in) : NULL;
        if (!N.going_in) {
            N.ngoing = 0;
            return;
        }
        char name[VMP_MAX_NAME + 1];
        for (size_t i = 0; i < N.ngoing; i++) {
            uint64_t id = id_of(N.going[i]);
            uint32_t at;
            if (!vmp_u64map_find(&N.named, id, &at)) {
                size_t len = vmp_symbols_name(syms, (uintptr_t)N.going[i], name, sizeof name);
                keep_name(id, name, len < VMP_MAX_NAME ? len : VMP_MAX_NAME);
            }
            N.going_in[i] = vmp_symbols_object_at(syms, (uintptr_t)N.going[i]);
        }
        return;
    }
    vmp_u64map gone = {0};
    for (size_t i = 0; i < N.ngoing; i++) {
        if (vmp_symbols_object_at(syms, (uintptr_t)N.going[i]) == N.going_in[i])
            continue;
        uint32_t g = 0;
        vmp_u64map_find(&N.gen, N.going[i], &g);
        vmp_u64map_put(&N.gen, N.going[i], g < GEN_UNNAMED - 1 ? g + 1 : g);
        vmp_u64map_put(&gone, N.going[i], 1);
    }
    if (gone.len) {
        /* (a map without the pcs whose functions went) */
        vmp_u64map kept = {0};
        const vmp_u64map *m = &N.start_offset;
        uint32_t unused;
        for (size_t i = 0; i < m->cap; i++)
            if (m->vals[i] != VMP_U64MAP_EMPTY && !vmp_u64map_find(&gone, m->keys[i] - m->vals[i], &unused))
                vmp_u64map_put(&kept, m->keys[i], m->vals[i]);
        vmp_u64map_free(&N.start_offset);
        N.start_offset = kept;
    }
    vmp_u64map_free(&gone);
    forget_departed();
}

static void forget_departed(void)
{
    free(N.going);
    free(N.going_in);
    N.going = NULL;
    N.going_in = NULL;
    N.ngoing = 0;
}

static void forget_names(void)
{
    vmp_u64map_free(&N.written);
    free(N.fresh);
    N.fresh = NULL;
    N.nfresh = N.fresh_cap = 0;
    for (size_t i = 0; i < N.nnamed; i++)
        free(N.names[i]);
    free(N.names);
    free(N.named_ids);
    N.names = NULL;
    N.named_ids = NULL;
    N.nnamed = N.named_cap = 0;
    vmp_u64map_free(&N.named);
    vmp_u64map_free(&N.gen);
    forget_departed();
}

static int unsure_at(uint64_t pc)
{
    if (!N.nunsure || N.writing < N.unsure_from || N.writing >= N.unload_upto)
        return 0;
    for (size_t i = 0; i < N.nunsure; i++)
        if (N.unsure[i][0] <= pc && pc < N.unsure[i][1])
            return 1;
    return 0;
}

/* The id of a pc no function is named for (its function not known for
 * sure, or out of memory): the pc itself, with the generation no function
 * gets, so that it can never be a function's id (pc | 1 alone is the id of
 * a function that starts at an even pc + 1). */
static uint64_t unnamed_id(uint64_t pc)
{
    return pc | ((uint64_t)GEN_UNNAMED << 48) | VMP_NATIVE_BIT;
}

uint64_t vmp_native_mode_entry_id(uint64_t entry)
{
    /* (the exact pc: the interrupted instruction, or a call's last byte,
     * vmp_native_unwind.h; its bit 0 too, vmp_native_word) */
    uint64_t pc = vmp_native_word_pc(entry);
    if (!pc)
        return VMP_NATIVE_BIT;
    /* (before the pcs met: one met in the gone object may be another's now) */
    if (unsure_at(pc))
        return unnamed_id(pc);
    uint32_t offset;
    if (vmp_u64map_find(&N.start_offset, pc, &offset))
        return id_of(pc - offset);
    answer_asks();
    vmp_symbols *syms = writer_syms();
    uint64_t start = syms ? vmp_symbols_function_start(syms, (uintptr_t)pc) : pc;
    /* A function is far smaller than 4 GiB; a "start" farther away than the
     * map can hold is no function's start: keep the pc itself. */
    if (start > pc || pc - start >= VMP_U64MAP_EMPTY)
        start = pc;
    if (vmp_u64map_put(&N.start_offset, pc, (uint32_t)(pc - start)) < 0)
        return unnamed_id(pc); /* (out of memory) */
    uint64_t id = id_of(start);
    if (vmp_array_grow((void **)&N.fresh, &N.fresh_cap, N.nfresh + 1, sizeof *N.fresh) < 0)
        return id; /* (named at the end, as before) */
    N.fresh[N.nfresh][0] = start;
    N.fresh[N.nfresh++][1] = id;
    return id;
}

/* Whether an object of the session was unloaded; the writer looks at
 * every round and before it writes a slot claimed after its last look.
 * An object unloaded: the samples claimed until now may have been taken
 * in it (the loader does not say when it went), so its names serve them,
 * and are dropped before the next slot's (on_unload,
 * vmp_native_mode_settle).  Those claimed since the last look that found
 * nothing unloaded may also have been taken in code loaded at its place
 * meanwhile: where the loader has loaded code at such a place since,
 * their pcs there are left unnamed (N.unsure).  Every slot written so far
 * was claimed before that look (see settle), so none of them is left
 * out. */
static void look_at_loader(vmp_symbols *syms)
{
    if (!syms || N.unload_pending || N.nunsure)
        return;
    uint64_t head = vmp_ring_next_index(); /* (before the look: claimed before it) */
    if (!vmp_symbols_unloaded(syms)) {
        N.clean_head = head;
        return;
    }
    N.unload_upto = vmp_ring_next_index();
    N.unload_pending = 1;
    /* (the loader read after unload_upto: what it did while those were
     * claimed) */
    N.subs_seen = vmp_symbols_loader_subs();
    N.unsure_from = N.clean_head;
    N.nunsure = vmp_symbols_places_taken(syms, N.unsure, UNSURE_MAX);
}

/* Every function met is forgotten, as on_unload forgets those of an
 * object gone: after a pause, an object went while the writer's session
 * was closed, and which one is not known (the new session lists only what
 * is loaded now).  Their names are written (each met is named in the round
 * it was met; one that is not yet is kept now, while the ones still loaded
 * can be named); a pc met again gets a new id, named again. */
static void forget_all_met(void)
{
    size_t n;
    uint64_t *starts = distinct_starts(&n);
    vmp_symbols *syms = writer_syms();
    char name[VMP_MAX_NAME + 1];
    uint32_t at;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = id_of(starts[i]);
        if (!vmp_u64map_find(&N.written, id, &at) && !vmp_u64map_find(&N.named, id, &at)) {
            size_t len = syms ? vmp_symbols_name(syms, (uintptr_t)starts[i], name, sizeof name)
                              : (size_t)snprintf(name, sizeof name, "n:<native symbol 0x%llx>:0:-",
                                                 (unsigned long long)starts[i]);
            keep_name(id, name, len < VMP_MAX_NAME ? len : VMP_MAX_NAME);
        }
        uint32_t g = 0;
        vmp_u64map_find(&N.gen, starts[i], &g);
        vmp_u64map_put(&N.gen, starts[i], g < GEN_UNNAMED - 1 ? g + 1 : g);
    }
    if (n || !starts) /* (no starts: out of memory; the map goes all the same) */
        vmp_u64map_free(&N.start_offset);
    free(starts);
}

/* look_at_loader with the writer's session, or, while a pause left it
 * closed, with the loader's counts: unchanged since the session's last
 * report, nothing is opened; changed, the session is opened now (a library
 * loaded is learned while it is loaded, as vmp_symbols_follow does), and
 * an object unloaded meanwhile has every pc met forgotten once the slots
 * claimed until now are written (they may have been taken in it: its
 * names serve them; forget_all_met). */
static void look_at_loader_now(void)
{
    if (N.writer_own_table && N.wsyms_paused && !N.wsyms && !N.wsyms_failed) {
        uint64_t head = vmp_ring_next_index(); /* (before the look: claimed before it) */
        unsigned long long changes, subs;
        vmp_symbols_loader_counts(&changes, &subs);
        if (changes == N.paused_changes) {
            N.clean_head = head;
            return;
        }
        if (subs != N.paused_subs && !N.forget_pending) {
            N.forget_pending = 1;
            N.forget_upto = vmp_ring_next_index();
        }
        writer_syms();
    }
    look_at_loader(N.writer_own_table ? N.wsyms : N.syms);
}

/* Libraries loaded meanwhile (see vmp_native_mode_tick). */
static void look_for_libraries(void)
{
    look_at_loader_now();
    vmp_symbols *syms = N.writer_own_table ? N.wsyms : N.syms;
    int changed = vmp_native_refresh();
    /* (after the code table: samples in a new library are cut until it
     * has it; and the names' session learns it now, while it is loaded:
     * its samples may be handled after it was unloaded) */
    if (changed && syms)
        vmp_symbols_follow(syms);
    int asked = vmp_native_refresh_asked(); /* (after: 1 only when the new table does not answer it) */
    if (asked == 1 && vmp_native_look_for_trampolines()) {
        /* A new arena of CPython's perf trampolines (-X perf: 64 KiB of
         * copies, mapped when the last is used up, or when the program
         * turns the trampolines on while profiling): walks go through it
         * now.  Not JIT code of the kind the quiet time is for. */
        vmp_native_refresh_answered(1);
    } else if (asked == 1) {
        N.quiet_until = vmp_mono_ns() + QUIET_NS;
        vmp_native_refresh_answered(0);
    } else if (asked == 3 || (asked == 2 && (changed || vmp_mono_ns() >= N.quiet_until))) {
        vmp_native_refresh_answered(1);
    }
}

/* Before a call into libdw, which may take milliseconds (its first look
 * at a library just loaded reads the maps and the library's file): a walk
 * that asked for a look at the loader meanwhile is answered first, so that
 * the samples running the new library stop being cut. */
static void answer_asks(void)
{
    if (vmp_native_mode_refresh_asked())
        look_for_libraries();
}

void vmp_native_mode_settle(uint64_t index)
{
    N.writing = index;
    if (N.forget_pending && index >= N.forget_upto) {
        N.forget_pending = 0;
        forget_all_met();
    }
    if (N.nunsure && !N.unload_pending && index >= N.unload_upto)
        N.nunsure = 0; /* (the samples claimed before the last report are written) */
    if (N.unload_pending && index >= N.unload_upto) {
        N.unload_pending = 0;
        N.nunsure = 0;
        vmp_symbols *syms = writer_syms();
        if (!syms)
            return;
        /* The session is reported again: the samples claimed since the
         * unload was noticed are named after what the loader lists now.
         * Another object unloaded meanwhile, some may have been taken in
         * it, or in code loaded at its place since: against the report
         * still held, those places are unsure for them. */
        size_t n = vmp_symbols_loader_subs() != N.subs_seen ? vmp_symbols_places_taken(syms, N.unsure, UNSURE_MAX) : 0;
        vmp_symbols_refresh(syms);
        uint64_t head = vmp_ring_next_index(); /* (after: claimed before it, or during the report) */
        if (n) {
            N.unsure_from = N.unload_upto;
            N.unload_upto = head;
            N.nunsure = n;
        }
        N.clean_head = head;
        return;
    }
    /* A slot claimed after the last look: look again before writing it
     * (one callback of the loader's). */
    if (index >= N.clean_head && index != UINT64_MAX)
        look_at_loader_now();
}

void vmp_native_mode_tick(void)
{
    if (!N.wsyms_paused) /* (after a pause: when needed, see N) */
        writer_syms(); /* (its own session: opened at the first tick, ready for the first walks to learn) */
    /* Libraries loaded meanwhile, at every round: the loader's counters
     * say whether any was (one dl_iterate_phdr callback, well under a
     * microsecond), and until the table has a new one every sample
     * running its code is cut.  A walk that met such code rang for this
     * round; when there was none, walks ring again only after QUIET_NS. */
    look_for_libraries();
    vmp_native_touch_unwind_tables(); /* (a new table's objects too) */
    learn_unknown();
}

int vmp_native_mode_refresh_asked(void)
{
    int asked = vmp_native_refresh_asked();
    return asked == 1 || asked == 3;
}

void vmp_native_mode_learn_left(void)
{
    /* (the set holds at most 256: a few rounds take it all) */
    for (int i = 0; i < 8 && learn_unknown() > 0; i++)
        ;
}

void vmp_native_mode_after_fork_child(void)
{
    vmp_native_after_fork_child();
    /* The parent's sessions and map are left to leak, never freed here
     * (the writer's lives in a table the child does not have). */
    N.syms = N.wsyms = NULL;
    N.writer_own_table = 0;
    memset(&N.start_offset, 0, sizeof N.start_offset);
    memset(&N.gen, 0, sizeof N.gen);
    memset(&N.named, 0, sizeof N.named);
    memset(&N.written, 0, sizeof N.written);
    N.fresh = NULL;
    N.nfresh = N.fresh_cap = 0;
    N.named_ids = NULL;
    N.names = NULL;
    N.nnamed = N.named_cap = 0;
    N.going = NULL;
    N.going_in = NULL;
    N.ngoing = 0;
    N.unload_pending = 0;
    N.nunsure = 0;
    N.quiet_until = 0;
    N.wsyms_paused = N.forget_pending = 0;
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

void vmp_native_mode_test_starts_fail(int on)
{
    __atomic_store_n(&vmp_u64map_test_failing, on ? &N.start_offset : NULL, __ATOMIC_RELAXED);
}

size_t vmp_native_mode_test_sessions_opened(void)
{
    return N.wsyms_opened;
}

size_t vmp_native_mode_pcs_learned(void)
{
    return N.pcs_learned;
}

size_t vmp_native_mode_pcs_from_libdw(void)
{
    return N.pcs_libdw;
}

size_t vmp_native_mode_functions(void)
{
    size_t n;
    free(distinct_starts(&n));
    return n;
}

/* Writes a function's name (cut to VMP_MAX_NAME) and remembers that it is
 * written. */
static void write_name(vmp_wbuf *buf, void (*flush)(void), uint64_t id, const char *name, size_t len)
{
    if (len > VMP_MAX_NAME)
        len = VMP_MAX_NAME;
    if (buf->cap - buf->len < vmp_enc_name_size(buf, len))
        flush();
    vmp_enc_name(buf, VMP_TAG_NATIVE_SYMBOLS, id, name, len);
    vmp_u64map_put(&N.written, id, 1);
}

/* The writer's round, after its drain: the functions met since the last
 * one, named now with the writer's session, so that a program that dies
 * before the end (SIGKILL, a crash) leaves them named in its profile.  A
 * function whose id moved on since it was met (its object went: on_unload
 * named it then, written at the end) is left to the end. */
void vmp_native_mode_write_new_names(vmp_wbuf *buf, void (*flush)(void))
{
    if (!N.nfresh)
        return;
    vmp_symbols *syms = writer_syms();
    if (!syms)
        return; /* (named at the end, as before) */
    char name[VMP_MAX_NAME + 1];
    uint32_t at;
    for (size_t i = 0; i < N.nfresh; i++) {
        uint64_t start = N.fresh[i][0], id = N.fresh[i][1];
        if (id_of(start) != id || vmp_u64map_find(&N.written, id, &at) || vmp_u64map_find(&N.named, id, &at))
            continue;
        answer_asks(); /* (a walk cut at a new library waits for nothing of ours) */
        size_t len = vmp_symbols_name(syms, (uintptr_t)start, name, sizeof name);
        write_name(buf, flush, id, name, len);
    }
    N.nfresh = 0;
}

void vmp_native_mode_write_names(vmp_wbuf *buf, void (*flush)(void))
{
    vmp_native_mode_settle(UINT64_MAX); /* (every slot is written) */
    N.nfresh = 0; /* (every function met is named below) */
    uint32_t at;
    /* (the functions named when an object went first: see on_unload) */
    for (size_t i = 0; i < N.nnamed; i++) {
        if (vmp_u64map_find(&N.written, N.named_ids[i], &at))
            continue;
        write_name(buf, flush, N.named_ids[i], N.names[i], strlen(N.names[i]));
    }
    size_t n;
    uint64_t *starts = distinct_starts(&n);
    char name[VMP_MAX_NAME + 1];
    vmp_symbols *syms = writer_syms();
    for (size_t i = 0; i < n; i++) {
        uint64_t id = id_of(starts[i]);
        if (vmp_u64map_find(&N.named, id, &at) || vmp_u64map_find(&N.written, id, &at))
            continue;
        size_t len = syms ? vmp_symbols_name(syms, (uintptr_t)starts[i], name, sizeof name)
                            : (size_t)snprintf(name, sizeof name, "n:<native symbol 0x%llx>:0:-",
                                               (unsigned long long)starts[i]);
        write_name(buf, flush, id, name, len);
    }
    free(starts);
    if (syms)
        vmp_symbols_save_names(syms);
}

void vmp_native_mode_writer_table(int own)
{
    N.writer_own_table = own;
    N.wsyms_failed = 0;
}

void vmp_native_mode_writer_done(void)
{
    vmp_symbols_close(N.wsyms);
    N.wsyms = NULL;
    N.wsyms_paused = 0;
}

void vmp_native_mode_writer_paused(void)
{
    if (!N.writer_own_table)
        return; /* (it used syms, the program's table's: kept) */
    if (N.wsyms) {
        /* (what the session knew: an unload it had not reported yet
         * counts as one since) */
        vmp_symbols_counts_known(N.wsyms, &N.paused_changes, &N.paused_subs);
        N.wsyms_paused = 1;
    } else if (!N.wsyms_paused) {
        vmp_symbols_loader_counts(&N.paused_changes, &N.paused_subs);
        N.wsyms_paused = 1;
    }
    vmp_symbols_close(N.wsyms);
    N.wsyms = NULL;
}
