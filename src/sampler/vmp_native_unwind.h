/*
 * vmp_native_unwind.h - the C stack of an interrupted thread, read from inside
 * the signal handler, and its splice with the thread's Python frames.
 *
 * Native mode records, for each sample, every C frame between the signal and
 * the thread's first function, with the Python frames each activation of the
 * evaluation loop was running standing where that activation stands.  The
 * work is split so that each part has one job and can be tested alone:
 *
 *   vmp_native_setup()      outside signal context, once per enable: learns
 *                           the executable ranges of every loaded object and
 *                           maps the rule table.
 *   vmp_native_refresh()    outside signal context, whenever libraries may have
 *                           been loaded (cheap when none were): publishes a new
 *                           executable-range table without disturbing handlers.
 *   vmp_native_unwind()     async-signal-safe: walks the interrupted context
 *                           with learned per-pc rules (a few arithmetic steps
 *                           and loads per frame).  A pc with no learned rule
 *                           yet is looked up in its object's own mapped
 *                           .eh_frame_hdr/.eh_frame (vmp_cfi.h) and walked
 *                           past, and noted for the writer.  It stops -
 *                           keeping what it has - at a pc no rule the walk
 *                           can follow covers (keeping that pc too: an
 *                           object without .eh_frame_hdr, a signal
 *                           trampoline, a rule kept in an expression; noted
 *                           for the writer, which is woken for it, and
 *                           saying the walk was cut: vmp_native_walk.cut), at
 *                           an address outside every known object (a
 *                           library loaded since the last refresh, JIT
 *                           code, garbage: cut too, and the writer is
 *                           rung to look for new objects; a copy of
 *                           CPython's perf trampoline is walked through,
 *                           vmp_trampoline.h), the depth cap,
 *                           or when the stack pointer fails to grow (a
 *                           corrupted or looping stack).
 *   vmp_native_take_unknown()  the writer: the pcs walks had no learned rule
 *                           for, whose functions' rules it reads from the
 *                           same tables the walk read
 *                           (vmp_native_rules_from_tables; libdw's
 *                           vmp_symbols_unwind_rules only for a pc those do
 *                           not cover) and hands to vmp_native_learn, so
 *                           that later samples find them with one search of
 *                           the learned rules.
 *   vmp_native_touch_unwind_tables()  the writer, after setup or a refresh:
 *                           pages in the objects' unwind tables, so that a
 *                           handler's lookup never waits for the disk.
 *   vmp_native_splice()     async-signal-safe, pure: merges the native frames
 *                           with the Python frames, each activation of the
 *                           evaluation loop's frames where its C frame stood
 *                           (matched by stack address, not by counting).
 *   vmp_native_teardown()   outside signal context, after the last handler has
 *                           finished: frees the tables, but keeps the rules
 *                           learned for the next run (its setup drops them
 *                           if an object was unloaded meanwhile).
 *   vmp_native_abandon()    the same when a handler may still be walking:
 *                           puts the tables aside, frees none.
 *
 * Program counters: the first is the exact interrupted instruction; every
 * other is a return address minus one, so that it lies inside the calling
 * function even when the call was the function's last instruction.  They are
 * not function starts: the writer maps them to their function (vmp_symbols)
 * outside signal context, because finding a function's start in the handler
 * would cost a search of the unwind tables per frame.
 *
 * Nothing here takes a lock, allocates, or calls Python or libunwind in
 * signal context: the walk reads the interrupted stack, the code-range table,
 * the rule table and the objects' mapped unwind tables, and adds to the
 * unknown-pc set with compare-and-swap.  A walk that meets an object
 * unloaded since the last refresh may fault reading its tables or its
 * frames: the sampler runs walks inside its fault guard (vmp_guard.h).
 * On machines other than x86-64 a sample keeps the interrupted frame only.
 */
#ifndef VMP_NATIVE_UNWIND_H
#define VMP_NATIVE_UNWIND_H

#include <stddef.h>
#include <stdint.h>

/*
 * A native frame's word in a sample (the ring slot's, between the handler
 * and the writer; never the profile file's, whose native entries are the
 * writer's ids, its function's start | 1: vmp_native_mode_entry_id).  Bit 0
 * marks it, as in the file, so that a word tells itself from a code
 * object's pointer (even), in lines mode's pairs too; the whole pc sits
 * above the mark, so the writer looks up exactly the pc the walk found
 * (the interrupted instruction, or a caller's return address - 1: see
 * "Program counters" above).  `pc | 1` (before) lost the pc's own bit 0: a
 * pc at the first byte of a function that starts at an odd address
 * (hand-written assembly without alignment; gcc aligns no function at -O1
 * or -Os) read as the byte before it, was named after whatever held that
 * byte, and as ids are per function start (start | 1, the same for both)
 * that name could stand for the function's other pcs too.  The top bit,
 * shifted out, comes back by sign extension: every address a thread runs
 * at (x86-64's canonical ones, the vsyscall page's too; AArch64's) has
 * bits 62 and 63 equal.  The splice alone makes these words, and every
 * reader of a slot (the handler's code-object notes, the writer's
 * vmp_native_mode_entry_id) reads them through these three only; the
 * walk's frames and the pcs it notes for the writer's rules are plain pcs.
 */
#define VMP_NATIVE_WORD_MARK 1u
static inline uint64_t vmp_native_word(uintptr_t pc)
{
    return (uint64_t)pc << 1 | VMP_NATIVE_WORD_MARK;
}
static inline int vmp_native_word_is(uint64_t word)
{
    return (word & VMP_NATIVE_WORD_MARK) != 0;
}
static inline uintptr_t vmp_native_word_pc(uint64_t word)
{
    return (uintptr_t)(word >> 1 | (word & (1ull << 63)));
}

/* The deepest native walk one sample makes, whatever the caller's room: as
 * many frames as a sample may write (VMP_MAX_DEPTH_WRITTEN).  The walk goes
 * into the tail of the sample's own ring slot (vmp_native_mode.c), so depth
 * costs no stack or buffer of the handler's, only time when a stack is that
 * deep.  (It was 512: a Python recursion ~100 deep under -X perf, or a
 * few hundred through C calls, hit it.) */
#define VMP_NATIVE_MAX_DEPTH 1000

/* Up to this many address ranges count as "the evaluation loop". */
#define VMP_NATIVE_MAX_EVAL_RANGES 8

/* Prepares native unwinding (idempotent).  Returns 0, or -1 when its tables
 * cannot be made (then native mode must stay off). */
int vmp_native_setup(void);

/* Declares [start, end) as part of the evaluation loop: a C frame whose
 * program counter lies there runs Python frames.  Call before sampling starts
 * (setup does it for _PyEval_EvalFrameDefault and its .cold part when the
 * running process has them).  Returns 0, or -1 when the table is full. */
int vmp_native_add_eval_range(uintptr_t start, uintptr_t end);

/* Adds the ranges of the function called `symbol` (and of `symbol.cold`, the
 * part compilers split off) in whatever object of the process defines it.
 * Returns the number of ranges added (0 when the symbol is unknown). */
int vmp_native_add_eval_function(const char *symbol);

/* Rebuilds the executable-range table if objects were loaded or unloaded
 * since the last build (the loader's dlpi_adds/dlpi_subs counters, read
 * with one dl_iterate_phdr callback: well under a microsecond when nothing
 * changed).  Returns 1 when a new table was published (and the rules'
 * generation bumped: a walk cut outside the old one may go further), else
 * 0.  Not signal-safe; safe while handlers run. */
int vmp_native_refresh(void);

/* Outside signal context, the learner: whether a walk met a pc outside
 * every object of the code table while armed: 1 with the current table, 3
 * with an older one (which the current one may answer); 0 armed; 2
 * answered without re-arming.  The first such walk calls the function
 * given to vmp_native_when_unknown (the writer's bell) and later ones do
 * not, until vmp_native_refresh_answered(1) re-arms; answered(0) leaves it
 * unarmed (the learner looked and found no new object: JIT code, which
 * every sample of a thread running it meets). */
int vmp_native_refresh_asked(void);
void vmp_native_refresh_answered(int rearm);

/* Outside signal context (enable, then the learner when an ask found no new
 * object): where this interpreter has a perf trampoline template
 * (vmp_trampoline.h, found by vmp_native_setup), reads the process's maps
 * for new anonymous executable mappings, where copies may be, unless the
 * pc that asked lies in one already known.  Returns 1 when the walk's set
 * of them changed (and the rules' generation was bumped: a walk cut at a
 * copy may go further now), else 0. */
int vmp_native_look_for_trampolines(void);

/* Frees everything setup made but the learned rules, which the next setup
 * keeps unless an object was unloaded in between (the loader's unload
 * count moved): a program that profiles again and again walks from the
 * first sample what its earlier runs learned.  Call only when no handler
 * can still run. */
void vmp_native_teardown(void);

/* Outside signal context, instead of teardown when a handler may still be
 * inside a walk (one stayed past the stop's bound: vmp_sampler.c): the
 * tables setup made are put aside, not freed (a late walk may read them;
 * the next teardown frees them), and a replaced rule table is freed only
 * once no walk counts itself in any more, as during a run.  The perf
 * trampolines' map is forgotten (it leaks).  The next setup starts anew,
 * as after teardown. */
void vmp_native_abandon(void);

/* Outside signal context, when no walk can run (before setup or after
 * teardown): drops every learned rule, so that the next setup starts from
 * nothing (tests of learning). */
void vmp_native_forget_rules(void);

/* What a walk found besides its frames. */
typedef struct vmp_native_walk {
    int n;         /* frames written */
    int complete;  /* 1: the walk reached the thread's outermost frame */
    uintptr_t top; /* the upper end of the last frame's stack range (its
                    * caller's stack pointer); UINTPTR_MAX for the outermost
                    * frame; 0 when unknown */
    int cut;       /* 1: the stack goes on beyond the walk's last frame:
                    * the walk ended at a pc of a known object for want of
                    * a rule (none learned yet and none its object's
                    * .eh_frame gives, or one no rule can express:
                    * VMP_RULE_STOP), or at a pc outside every object the
                    * code table knows (a library loaded since the last
                    * refresh, JIT code, a wild return address; the
                    * interrupted pc there is kept, a return address is
                    * not).  0 for a complete walk, one that met a zero
                    * return address, one ended by the depth cap or at a
                    * stack that does not grow. */
    int capped;    /* 1: the walk used all the frames it was given (max) and
                    * the stack goes on beyond its last frame (stepped past,
                    * return address not 0): deep recursion, not a want of
                    * rules.  Learning cannot take such a walk further, so
                    * it is not `cut` (whose samples wait for the rules);
                    * the sampler still counts the sample (META
                    * samples_cut). */
    uint64_t generation; /* the rules' generation (vmp_native_rules_generation)
                          * read before the walk: the rules it used are at
                          * least that one's */
} vmp_native_walk;

/* Async-signal-safe (an acquire load): how many times the learned rules
 * were published, in this process (never reset, not even by teardown).  A
 * walk cut with generation g may go further once this is past g. */
uint64_t vmp_native_rules_generation(void);

/* Async-signal-safe.  Walks the C stack of the context `ucontext` (the third
 * argument of an SA_SIGINFO handler) into frames[0..2n), innermost first, at
 * most min(max, VMP_NATIVE_MAX_DEPTH) frames, two words each: the program
 * counter, then the stack pointer that frame ran with (the interrupted one
 * for frame 0, its callee's CFA for a caller).  Frame i's locals lie in
 * [sp_i, sp_i+1) and the last frame's in [sp, walk->top).  Returns n (0 when
 * setup has not run or there is no context). */
int vmp_native_unwind(void *ucontext, uint64_t *frames, int max, vmp_native_walk *walk);

/* Tests only: called by vmp_native_unwind, when set, with the tables in
 * hand (vmp_handler_test_hold). */
extern void (*vmp_native_test_hook)(void);

/* Outside signal context, one thread at a time (the writer, or enable before
 * sampling): teaches the walk rules[0..n), each for its range [lo, hi) of
 * addresses (as walks report pcs: the interrupted pc, or a return address
 * minus one), published at once.  A rule of kind VMP_RULE_STOP records that
 * the walk cannot go past those addresses, so that they are not asked about
 * again.  Where a range overlaps one already known (or one before it in
 * rules[], by address), only its parts outside are added: the known rule
 * stays, and no address of the range is left without one.  Returns 0, or
 * -1 when out of memory or rules (walks then stop where they would have
 * needed them). */
struct vmp_unwind_rule;
int vmp_native_learn(const struct vmp_unwind_rule *rules, int n);

/* Outside signal context, one thread at a time: takes up to max of the pcs
 * walks found no learned rule for since the last call (whether or not they
 * got past them through the object's tables).  Returns how many. */
int vmp_native_take_unknown(uintptr_t *pcs, int max);

/* Outside signal context (the writer, or enable before sampling): for
 * each of pcs[0..n), the rules of the function (FDE) holding it, read from
 * its object's own mapped .eh_frame with the reader the walk uses
 * (vmp_cfi_rules), so that what the walk got past is learned without
 * libdw.  The objects are read while the loader's lock keeps them mapped.
 * Writes up to max rules (for vmp_native_learn) and sets done[i] to 1 for
 * each pc whose rules are among them, 0 for a pc its object's tables give
 * no rule for (the caller asks libdw about those).  Returns how many rules
 * were written. */
int vmp_native_rules_from_tables(const uintptr_t *pcs, int n, struct vmp_unwind_rule *rules, int max,
                                 unsigned char *done);

/* fn (async-signal-safe; NULL: none) is called by a walk that stopped at a
 * pc not noted yet (one the object's tables could not get it past either),
 * or at a pc outside every known object when no walk has asked for a
 * refresh since the last re-arm (vmp_native_refresh_asked), so that whoever
 * learns them needs no timer.  Pcs the walk got past are noted without a
 * call: they can wait for the learner's next round. */
void vmp_native_when_unknown(void (*fn)(void));

/* Outside signal context (the writer): reads one byte of each page of the
 * unwind tables of the objects the current code table lists, once per code
 * table (after setup and each refresh that found a change), so that no
 * handler takes a major page fault reading them. */
void vmp_native_touch_unwind_tables(void);

/* In a fork child, before it enables again: forgets the parent's run
 * without freeing anything (the tables may have been in use by a parent's
 * thread that the child does not have). */
void vmp_native_after_fork_child(void);

/* Async-signal-safe: whether pc lies in the evaluation loop. */
int vmp_native_is_eval(uintptr_t pc);

/* Async-signal-safe: whether pc lies in code of a loaded object (as of the
 * last setup/refresh). */
int vmp_native_is_known_code(uintptr_t pc);

/*
 * The Python side of a splice: the thread's Python frames as groups, one per
 * C activation of the evaluation loop, innermost first (vmp_frames.h makes
 * them from the interpreter's own structures).  A group's anchor is an
 * address inside the C stack frame of the activation that runs it (3.11 its
 * _PyCFrame, 3.12+ its entry shim), or 0 when the layout has none (before
 * 3.11, where each activation runs exactly one frame).
 */
typedef struct vmp_native_groups {
    /* 1 and the next group's anchor, or 0 when no group is left. */
    int (*next)(void *ctx, uintptr_t *anchor);
    /* Writes the next group's frames (innermost first, whole frames only)
     * into out[0..max) and moves past the group; *cut set when some did not
     * fit.  Returns the number of words written. */
    int (*emit)(void *ctx, uint64_t *out, int max, int *cut);
    int count; /* groups in all when anchors are 0, else -1 */
    void *ctx;
} vmp_native_groups;

/*
 * Async-signal-safe and pure apart from the eval-range lookup.  Merges the
 * native frames of a walk (frames as vmp_native_unwind writes them) with the
 * Python groups into out[0..max), innermost first.  Each native frame becomes
 * vmp_native_word(pc) (preceded by a 0 line word when py_width is 2, as
 * lines mode writes native frames); each Python group (py_width words per
 * frame) stands just inside the native frame whose stack range holds its anchor, so that an
 * activation with no Python frame of its own (entering or leaving, or
 * clearing a finished frame) takes nobody else's.  Without anchors each
 * evaluation-loop frame runs one group; when the walk is complete and has
 * more such frames than there are groups, the innermost ones are those still
 * entering or already leaving, and get none; when it is not, the sample keeps
 * the C frames inside the innermost evaluation loop, then the Python frames.
 * Groups whose activation the walk did not reach follow at the outer end, so
 * no Python frame is lost to a short walk.  Returns the number of words
 * written.
 *
 * frames may lie in out's own buffer, after the output's start (the sampler
 * walks into the tail of the slot the splice fills): the splice stops early
 * rather than write over a frame it has yet to read.
 */
int vmp_native_splice(const uint64_t *frames, const vmp_native_walk *walk,
                      const vmp_native_groups *py, int py_width, uint64_t *out, int max);

#endif /* VMP_NATIVE_UNWIND_H */
