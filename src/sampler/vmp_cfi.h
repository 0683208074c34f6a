/*
 * vmp_cfi.h - the x86-64 unwind rule at a program counter, read from inside
 * the signal handler out of the object's own mapped .eh_frame_hdr and
 * .eh_frame.
 *
 * The native walk (vmp_native_unwind) steps with rules from a table the
 * writer fills through libdw.  A pc the table does not have yet would end the
 * walk there, cutting the first samples of every new call chain; this module
 * computes that pc's rule on the spot instead, so that no sample waits for
 * the writer.  It gives the rule in the walk's form, with the same decisions
 * as libdw's path (vmp_symbols_unwind_rule): what one says the other says,
 * or both refuse (tests/c/test_cfi.c checks it on every row of libc, libpython
 * and the test program).
 *
 * Async-signal-safe: vmp_cfi_rule reads only the object's mapped, read-only
 * segment that holds its .eh_frame_hdr and .eh_frame, and checks every read
 * against that segment's bounds (a corrupted or hostile table gives -1, never
 * a read outside it); it takes no lock, allocates nothing, calls no libc
 * function, and runs at most VMP_CFI_MAX_OPS call-frame operations per call.
 * Its cost on a miss is a binary search of the object's FDE table plus one
 * CIE and one FDE program (~0.15 us warm).
 *
 * What it does not follow (it returns -1, and the walk stops there as it
 * would without it): signal trampolines (augmentation 'S'), a CFA on a
 * register other than rsp/rbp/rbx or given by an expression other than the
 * linear "rsp + constant at this pc" PLT stubs use, a return address not at
 * CFA - 8, a caller's rbp kept anywhere but at a small negative offset from
 * the CFA, 64-bit DWARF lengths, pointer encodings other than the
 * pc-relative 4-byte ones linkers write, and a header table other than the
 * sorted datarel/sdata4 one (then vmp_cfi_object_init says the object has
 * none).  A caller's rbx kept anywhere but in a word slot below the CFA is
 * not refused: the rule says rbx is lost (VMP_RBX_LOST).
 */
#ifndef VMP_CFI_H
#define VMP_CFI_H

#include <link.h>
#include <stdint.h>

#include "vmp_symbols.h" /* vmp_unwind_rule */

/* Operations of the CIE's and FDE's programs one lookup runs at most: a
 * corrupted program that loops over advances never holds a handler long.
 * The longest real program seen: 344 (libpython3.13). */
#define VMP_CFI_MAX_OPS 1024

/* Nesting of remember_state a program may use (real code uses 1-2). */
#define VMP_CFI_STATE_STACK 8

/* One object's unwind tables, as found in normal context. */
typedef struct vmp_cfi_object {
    uintptr_t hdr;      /* .eh_frame_hdr; 0: no table this module can read */
    uintptr_t table;    /* its sorted (initial location, FDE) pairs */
    uint32_t count;     /* pairs in the table */
    uintptr_t lo, hi;   /* the loaded segment holding both sections: every
                         * read stays in [lo, hi) */
} vmp_cfi_object;

/* Normal context.  Fills o for the .eh_frame_hdr mapped at hdr, inside the
 * readable segment [seg_lo, seg_hi).  Returns 0, or -1 (o->hdr 0) when the
 * header is not one this module reads (version 1, a pc-relative sdata4
 * .eh_frame pointer, a udata4 count, a datarel sdata4 table) or does not fit
 * in the segment. */
int vmp_cfi_object_init(vmp_cfi_object *o, uintptr_t hdr, uintptr_t seg_lo, uintptr_t seg_hi);

/* Normal context (a dl_iterate_phdr callback).  Fills o from an object's
 * program headers: its PT_GNU_EH_FRAME and the PT_LOAD segment holding it.
 * Returns 0, or -1 (o->hdr 0) when it has none usable. */
int vmp_cfi_object_from_phdrs(vmp_cfi_object *o, uintptr_t base, const ElfW(Phdr) *phdr,
                              int phnum);

/* Async-signal-safe.  The rule at pc (exact for the interrupted frame, a
 * return address minus one for a caller), in o: 0 with a VMP_RULE_STEP or
 * VMP_RULE_END rule and the row [lo, hi) it holds for, or -1 when the object
 * has no FDE for pc or the rule is one the walk cannot follow. */
int vmp_cfi_rule(const vmp_cfi_object *o, uintptr_t pc, vmp_unwind_rule *rule);

/* Async-signal-safe, but meant for the writer (one lookup per row, so a
 * few microseconds per function).  The rules of the whole FDE (function)
 * holding pc, row by row in address order, neighbours with the same rule
 * merged, into rules[0..max): the rows vmp_cfi_rule gives at each of its
 * addresses, so that the learned table serves every pc of the function
 * without asking libdw.  Rows the walk cannot follow are left out, and so
 * are rows whose CFA is an expression (a PLT's stubs, whose rule changes
 * every few bytes: pc's own stub rule alone is given); pc's own row is
 * always there.  Returns how many were written; 0 when pc's own row
 * has no rule this module gives (the caller may ask libdw). */
int vmp_cfi_rules(const vmp_cfi_object *o, uintptr_t pc, vmp_unwind_rule *rules, int max);

/* Normal context (not for signal handlers: it calls dl_iterate_phdr).  The
 * range [*lo, *hi) of the FDE - the function, as its unwind tables bound
 * it - holding pc in whichever loaded object holds pc, read while the
 * loader's lock keeps that object mapped.  0, or -1 when no object's
 * tables cover pc.  What names a pc no symbol covers. */
int vmp_cfi_function_at(uintptr_t pc, uintptr_t *lo, uintptr_t *hi);

/* Normal context.  Reads one byte of each page of o's header and .eh_frame,
 * so that a handler's first lookup in them never waits for the disk. */
void vmp_cfi_touch(const vmp_cfi_object *o);

#endif /* VMP_CFI_H */
