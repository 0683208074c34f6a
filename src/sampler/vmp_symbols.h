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
 *     .dynsym), file and line from its DWARF line table when it has debug
 *     information, else the object's path with line 0;
 *     `<native symbol 0x...>` as the symbol when no table covers it;
 *   - the address ranges of a named function (for the evaluation loop).
 *
 * It sees every object mapped when it was opened or last refreshed, so
 * libraries loaded during the run resolve as long as they are refreshed in
 * before they are unloaded.  Built on elfutils libdwfl; separate debug files
 * are looked up the standard way, but never over the network (debuginfod is
 * skipped even when DEBUGINFOD_URLS is set: profiling must not wait on it).
 */
#ifndef VMP_SYMBOLS_H
#define VMP_SYMBOLS_H

#include <stddef.h>
#include <stdint.h>

typedef struct vmp_symbols vmp_symbols;

/* Opens a view of the current process's objects.  NULL on failure (out of
 * memory or /proc unreadable). */
vmp_symbols *vmp_symbols_open(void);

/* Adds objects mapped since the last open/refresh.  Returns 0 or -1. */
int vmp_symbols_refresh(vmp_symbols *s);

void vmp_symbols_close(vmp_symbols *s);

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

#endif /* VMP_SYMBOLS_H */
