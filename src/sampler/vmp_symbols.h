/*
 * vmp_symbols.h - names for native addresses of the running process.
 *
 * Native samples carry bare program counters; this module turns them into
 * what the profile file needs, always outside signal context (it reads
 * /proc/self/maps and ELF/DWARF files, allocates and locks freely):
 *
 *   - the start of the function holding a program counter, so that every
 *     sample in one function shares one stack entry (`start | 1`);
 *   - the NATIVE_SYMBOLS text for a function, `n:<symbol>:<line>:<file>`:
 *     the symbol from the object's symbol tables (.symtab when present, else
 *     .dynsym), file and line of its first instruction from the DWARF line
 *     table when it has one (not for the interpreter's own functions), else
 *     the object's path with line 0; `<object's file name>+0x<offset>` as
 *     the symbol when no table covers it (see offset_name), and
 *     `<native symbol 0x...>` when no object does.  Names are kept across
 *     runs in a cache file per build id, so a program profiled again names
 *     its functions without reading symbol or line tables;
 *   - the address ranges of a named function (for the evaluation loop).
 *
 * It sees every object the loader listed when it was opened or last
 * refreshed (placed where the loader placed it, not where /proc/self/maps
 * seems to put it: libelf's own mappings of the files it reads lie beside
 * them), so
 * libraries loaded during the run resolve as long as they are refreshed in
 * before they are unloaded.  Built on elfutils libdwfl; separate debug files
 * are looked up on disk the standard way (the build-id folder, then the
 * debuglink places), but never over the network: libdwfl's debuginfod
 * client is never made, so profiling neither waits on it nor loads its
 * libraries into the program.
 */
#ifndef VMP_SYMBOLS_H
#define VMP_SYMBOLS_H

#include <stddef.h>
#include <stdint.h>

typedef struct vmp_symbols vmp_symbols;

/* Opens a view of the current process's objects.  NULL on failure (out of
 * memory or /proc unreadable). */
vmp_symbols *vmp_symbols_open(void);

/* Reports the objects mapped now: those loaded since the last open/refresh
 * are added, those unloaded dropped.  Returns 0 or -1. */
int vmp_symbols_refresh(vmp_symbols *s);

void vmp_symbols_close(vmp_symbols *s);

/* Unloads reported when asked.  With fn set, a lookup no longer reports
 * the objects again once an object was unloaded since the last report (as
 * it does when the loader only added some): objects unloaded stay in the
 * session, and addresses in them still named (from their files: the
 * memory is gone), until vmp_symbols_refresh.  That refresh calls
 * fn(s, 0, ctx) before it drops them and fn(s, 1, ctx) after; no lookup
 * in either call reports anything.  The profile is written after the run:
 * a library unloaded during it must still name the samples taken in it,
 * the writer handling them later. */
typedef void (*vmp_symbols_unload_fn)(vmp_symbols *s, int after, void *ctx);
void vmp_symbols_on_unload(vmp_symbols *s, vmp_symbols_unload_fn fn, void *ctx);

/* Reports the objects loaded since the last report, as a lookup would
 * (not when one was unloaded, with on_unload set): a library that is
 * loaded and unloaded before any lookup meets it is still named. */
void vmp_symbols_follow(vmp_symbols *s);

/* Whether an object was unloaded since the last report. */
int vmp_symbols_unloaded(vmp_symbols *s);

/* The loader's count of objects unloaded so far (dl_iterate_phdr's
 * dlpi_subs). */
unsigned long long vmp_symbols_loader_subs(void);

/* The loader's counts now: objects loaded plus unloaded, and unloaded
 * (one dl_iterate_phdr callback). */
void vmp_symbols_loader_counts(unsigned long long *changes, unsigned long long *subs);

/* The same counts as of the session's last report: what it knows of. */
void vmp_symbols_counts_known(const vmp_symbols *s, unsigned long long *changes, unsigned long long *subs);

/* The places [low, high) of the last report's objects that the loader no
 * longer lists and where other code may lie now or may have lain since:
 * an object loaded since the last report overlaps one, or the loader
 * loaded more objects since than it still lists (one came and went, where
 * is not known: every such place).  At most max in places; more, or a
 * loader's list that could not be read: one place, everywhere.  Returns
 * how many. */
size_t vmp_symbols_places_taken(vmp_symbols *s, uintptr_t (*places)[2], size_t max);

/* Which object holds addr now: the same token at two times means the same
 * object was there (libdwfl keeps a module reported again at its place);
 * NULL for none. */
const void *vmp_symbols_object_at(vmp_symbols *s, uintptr_t addr);

/* The object holding addr is the interpreter: its functions are named
 * without file and line (vmp_symbols_name). */
void vmp_symbols_set_interpreter(vmp_symbols *s, uintptr_t addr);

/* Writes the names made since the last save to the cache files, one per
 * build id (<build id>.v1.names), in $VMPROF_CACHE_DIR (empty: no cache), else
 * $XDG_CACHE_HOME/vmprof/native, else ~/.cache/vmprof/native.  Failing to
 * write is harmless: a later run computes the names again. */
void vmp_symbols_save_names(vmp_symbols *s);

/* The start of the function holding pc: from the symbol tables, else from
 * the unwind tables, else pc itself. */
uintptr_t vmp_symbols_function_start(vmp_symbols *s, uintptr_t pc);

/* Writes the NATIVE_SYMBOLS text for addr (a function start or any pc) into
 * buf (NUL-terminated, truncated to size).  Returns the length of the text
 * written. */
size_t vmp_symbols_name(vmp_symbols *s, uintptr_t addr, char *buf, size_t size);

/* Finds the function `name` and its split-off part `name.cold` in the
 * object that defines `name` (dynamic symbol lookup first, then every object's
 * symbol table).  Writes up to max [start, end) pairs into ranges.  Returns
 * how many. */
int vmp_symbols_function_ranges(vmp_symbols *s, const char *name, uintptr_t (*ranges)[2],
                                int max);

/* How to step from a frame at one pc to its caller (x86-64), when the
 * unwind tables say it in the simple form nearly all compiled code uses:
 *   CFA = cfa_reg + cfa_off, cfa_reg one of the registers the walk tracks:
 *   rsp, rbp, or rbx (ld.so's lazy-binding trampolines realign rsp and keep
 *   the old one in rbx: CFA = rbx + 32); return address at CFA - 8; the
 *   caller's rsp is the CFA; the caller's rbp at CFA + rbp_off (rbp_off 0:
 *   rbp unchanged); the caller's rbx at CFA + rbx_off (0: unchanged;
 *   VMP_RBX_LOST: not known, so no caller whose CFA is on rbx is stepped).
 * kind VMP_RULE_END: the outermost frame (no caller); VMP_RULE_STOP (never
 * returned here): no rule a walk can follow. */
enum { VMP_RULE_STEP = 1, VMP_RULE_END = 2, VMP_RULE_STOP = 3 };
enum { VMP_REG_RBX = 3, VMP_REG_RBP = 6, VMP_REG_RSP = 7 }; /* DWARF numbers */
#define VMP_RBX_LOST INT16_MIN
typedef struct vmp_unwind_rule {
    uintptr_t lo, hi; /* the addresses [lo, hi) the rule holds for */
    int32_t cfa_off;
    int16_t rbp_off;
    int16_t rbx_off;
    uint8_t cfa_reg; /* DWARF register number: VMP_REG_* */
    uint8_t kind;
} vmp_unwind_rule;

/* rbx_off for "the caller's rbx is saved at CFA + off".  The walk's packed
 * rule keeps it in one byte, as a count of words below the CFA (a push is
 * always such a slot): any other slot loses track of rbx rather than
 * refusing the rule, since only a caller whose CFA is on rbx needs it. */
static inline int16_t vmp_unwind_rbx_slot(int64_t off)
{
    return off < 0 && off >= -127 * 8 && off % 8 == 0 ? (int16_t)off : VMP_RBX_LOST;
}

/* Whether two rules step the same way (their ranges aside): neighbouring
 * rows with the same step are merged into one range. */
static inline int vmp_unwind_rule_same_step(const vmp_unwind_rule *a, const vmp_unwind_rule *b)
{
    return a->cfa_off == b->cfa_off && a->rbp_off == b->rbp_off && a->rbx_off == b->rbx_off &&
           a->cfa_reg == b->cfa_reg && a->kind == b->kind;
}

/* Adds row r, read at address `at` of a function walked row by row, after
 * rules[0..n): clipped to start at `at`, merged into the last rule when it
 * follows it with the same step.  Returns the new count (the caller keeps
 * n below its room). */
static inline int vmp_unwind_rules_append(vmp_unwind_rule *rules, int n, vmp_unwind_rule r, uintptr_t at)
{
    if (r.lo < at)
        r.lo = at;
    if (n > 0 && rules[n - 1].hi == r.lo && vmp_unwind_rule_same_step(&rules[n - 1], &r))
        rules[n - 1].hi = r.hi;
    else
        rules[n++] = r;
    return n;
}

/* Whether one of rules[0..n) holds pc. */
static inline int vmp_unwind_rules_cover(const vmp_unwind_rule *rules, int n, uintptr_t pc)
{
    for (int i = 0; i < n; i++)
        if (rules[i].lo <= pc && pc < rules[i].hi)
            return 1;
    return 0;
}

/* The rule in effect at pc (pc as the unwinder keys it: exact for the
 * interrupted frame, return address - 1 for callers), from the object's
 * .eh_frame (or .debug_frame), with the range of addresses around pc it
 * holds for (one row of the call-frame table: in most functions all of the
 * body after the prologue).  Returns 0, or -1 when there is no unwind
 * information or it takes a form the rule cannot express (expressions,
 * signal trampolines, a CFA on a register other than rsp, rbp, rbx). */
int vmp_symbols_unwind_rule(vmp_symbols *s, uintptr_t pc, vmp_unwind_rule *rule);

/* The rules of the whole function holding pc (its symbol's extent), row by
 * row, neighbours with the same rule merged, into rules[0..max): so that one
 * lookup serves every pc of the function, prologue and epilogues included.
 * Rows the rule cannot express are left out.  Without a symbol, the row of
 * pc alone.  Returns how many were written (0: none for pc). */
int vmp_symbols_unwind_rules(vmp_symbols *s, uintptr_t pc, vmp_unwind_rule *rules, int max);

#endif /* VMP_SYMBOLS_H */
