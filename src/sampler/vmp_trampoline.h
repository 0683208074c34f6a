/*
 * vmp_trampoline.h - walking through CPython's perf trampolines: copies of
 * one small function in anonymous executable memory, which no loaded object
 * (and no .eh_frame) describes.
 *
 * CPython 3.12+ under `-X perf` (PYTHONPERFSUPPORT=1,
 * sys.activate_stack_trampoline("perf"); 3.13 `-X perf_jit` too) runs each
 * call of Python code through its own copy of `_Py_trampoline_func_start`
 * (Python/asm_trampoline.S), so that perf names the frame after the Python
 * function.  The copies fill arenas CPython maps itself (64 KiB anonymous
 * mappings, made readable and executable, one copy after another: 11 bytes
 * apart on 3.12, 16 on 3.13).  The template on 3.12 and 3.13 here is
 * `sub $8,%rsp; call *%rcx; add $8,%rsp; ret` (no frame pointer); newer
 * ones `[endbr64]; push %rbp; mov %rsp,%rbp; call *%rcx; pop %rbp; ret`.
 * Without a rule for them, a native walk met a return address outside every
 * object at the first Python call and was cut there: under -X perf no
 * sample had a whole native stack.
 *
 * The rules are read from the live template itself (libpython's
 * `_Py_trampoline_func_start`..`_Py_trampoline_func_end`), decoded by a
 * decoder that knows only the few instructions such a trampoline is made
 * of (anything else: no template, and walks stop there as before).  A pc
 * is taken for a copy only when the whole copy around it is byte for byte
 * the template, inside a mapping the writer found anonymous, readable and
 * executable in /proc/self/maps (so the handler reads no byte it was not
 * told is mapped), and only at an instruction boundary (an interrupted pc)
 * or just after the call (a return address).
 *
 * The frame is then recorded at the template's start, so that every copy
 * is one function in the profile, named `_Py_trampoline_func_start` like
 * the code it is a copy of (the reader counts it as the interpreter's
 * machinery; the symbol has no size, so only its exact address is named
 * by it, and which instruction of four was interrupted says nothing).
 */
#ifndef VMP_TRAMPOLINE_H
#define VMP_TRAMPOLINE_H

#include <stddef.h>
#include <stdint.h>

#include "vmp_symbols.h" /* vmp_unwind_rule */

/* The longest template and the most instructions one may have. */
#define VMP_TRAMPOLINE_MAX_BYTES 32
#define VMP_TRAMPOLINE_MAX_INSNS 12

/* Normal context, when no walk can read it (before sampling): the
 * template's code [code, code + len), which lives at `original` (its
 * copies' frames are recorded there).  Decodes it; returns 0, or -1 (no
 * template then) when it holds an instruction the decoder does not know,
 * no call, or does not return with the stack as it found it. */
int vmp_trampoline_set_template(const unsigned char *code, size_t len, uintptr_t original);

/* Normal context: the template of this process's interpreter, found by its
 * symbols (dlsym of _Py_trampoline_func_start and _Py_trampoline_func_end),
 * or none (CPython before 3.12, a build without perf support, PyPy).
 * Returns 0 when there is one. */
int vmp_trampoline_find_template(void);

/* Whether a template is set. */
int vmp_trampoline_have_template(void);

/* Normal context, one thread at a time (enable, then the writer): reads
 * /proc/self/maps and publishes the anonymous readable executable mappings
 * (where copies may be), without disturbing handlers (tables are replaced,
 * never changed in place; replaced ones live until vmp_trampoline_forget).
 * Does nothing without a template.  Returns 1 when the published set
 * changed (a walk cut there may go further now), else 0. */
int vmp_trampoline_scan(void);

/* Async-signal-safe: whether pc lies in one of the published mappings. */
int vmp_trampoline_in_mapping(uintptr_t pc);

/* Async-signal-safe: when pc is in a copy of the template (an interrupted
 * pc at one of its instruction boundaries when `interrupted`, else a
 * return address minus one, just inside its call), the rule there (a
 * VMP_RULE_STEP rule on rsp; lo/hi are not set) and the template's start
 * (*as), which the frame is recorded as.  Returns 1, else 0.  Reads at most the
 * template's length of bytes, inside a published mapping. */
int vmp_trampoline_rule(uintptr_t pc, int interrupted, vmp_unwind_rule *rule, uintptr_t *as);

/* Normal context, when no walk can run (teardown): frees the mappings'
 * tables and forgets the template. */
void vmp_trampoline_forget(void);

/* In a fork child, or when a handler may still walk (vmp_native_abandon):
 * forgets everything without freeing. */
void vmp_trampoline_after_fork_child(void);

#endif /* VMP_TRAMPOLINE_H */
