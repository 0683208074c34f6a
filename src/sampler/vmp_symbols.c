/*
 * vmp_symbols.c - native address resolution over elfutils libdwfl.
 *
 * One Dwfl session describes the process as /proc/self/maps shows it; a
 * refresh reports the maps again, which adds objects loaded since (libdwfl
 * keeps the modules it already knows).  Symbol tables and line tables are
 * loaded lazily by libdwfl, object by object, the first time an address in
 * that object is asked about.
 */
#define _GNU_SOURCE
#include "vmp_symbols.h"

#include <dlfcn.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

/* The function-name part of a name is capped as the format asks. */
#define SYMBOL_CAP 512

struct vmp_symbols {
    Dwfl *dwfl;
};

/* Separate debug files: the standard places on disk, never debuginfod (a
 * profile must not wait on the network when it ends). */
static int find_debuginfo_offline(Dwfl_Module *mod, void **userdata, const char *modname,
                                  Dwarf_Addr base, const char *file_name,
                                  const char *debuglink_file, GElf_Word debuglink_crc,
                                  char **debuginfo_file_name)
{
    const char *urls = getenv("DEBUGINFOD_URLS");
    if (urls && *urls)
        return -1;
    return dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name,
                                        debuglink_file, debuglink_crc, debuginfo_file_name);
}

static const Dwfl_Callbacks callbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = find_debuginfo_offline,
};

static int report_maps(Dwfl *dwfl, int add)
{
    if (add)
        dwfl_report_begin_add(dwfl);
    else
        dwfl_report_begin(dwfl);
    int rc = dwfl_linux_proc_report(dwfl, getpid());
    if (dwfl_report_end(dwfl, NULL, NULL) != 0)
        return -1;
    return rc == 0 ? 0 : -1;
}

vmp_symbols *vmp_symbols_open(void)
{
    vmp_symbols *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->dwfl = dwfl_begin(&callbacks);
    if (!s->dwfl || report_maps(s->dwfl, 0) < 0) {
        vmp_symbols_close(s);
        return NULL;
    }
    return s;
}

int vmp_symbols_refresh(vmp_symbols *s)
{
    return report_maps(s->dwfl, 1);
}

void vmp_symbols_close(vmp_symbols *s)
{
    if (!s)
        return;
    if (s->dwfl)
        dwfl_end(s->dwfl);
    free(s);
}

/* The symbol covering pc, or NULL; *start receives its address. */
static const char *symbol_at(vmp_symbols *s, uintptr_t pc, uintptr_t *start)
{
    Dwfl_Module *mod = dwfl_addrmodule(s->dwfl, pc);
    if (!mod)
        return NULL;
    GElf_Off offset = 0;
    GElf_Sym sym;
    const char *name = dwfl_module_addrinfo(mod, pc, &offset, &sym, NULL, NULL, NULL);
    if (!name || !*name)
        return NULL;
    /* A sizeless symbol merely precedes pc; it does not prove pc is inside
     * it (static functions of a library without .symtab fall after an
     * exported one), so only a symbol whose size covers pc names it. */
    if (sym.st_size == 0 ? offset != 0 : offset >= sym.st_size)
        return NULL;
    *start = pc - offset;
    return name;
}

uintptr_t vmp_symbols_function_start(vmp_symbols *s, uintptr_t pc)
{
    uintptr_t start;
    if (symbol_at(s, pc, &start))
        return start;
    unw_proc_info_t pi;
    if (unw_get_proc_info_by_ip(unw_local_addr_space, pc, &pi, NULL) == 0 &&
        pi.start_ip <= pc && pc < pi.end_ip)
        return (uintptr_t)pi.start_ip;
    return pc;
}

/* libdwfl finds an address's compilation unit through .debug_aranges, which
 * clang does not emit by default; this searches the units' own ranges. */
static const char *line_without_aranges(Dwfl_Module *mod, uintptr_t addr, int *line)
{
    Dwarf_Addr bias = 0;
    Dwarf *dw = dwfl_module_getdwarf(mod, &bias);
    if (!dw)
        return NULL;
    Dwarf_Addr rel = addr - bias;
    Dwarf_Off off = 0, next;
    size_t header;
    while (dwarf_nextcu(dw, off, &next, &header, NULL, NULL, NULL) == 0) {
        Dwarf_Die cu;
        if (dwarf_offdie(dw, off + header, &cu) && dwarf_haspc(&cu, rel) > 0) {
            Dwarf_Line *l = dwarf_getsrc_die(&cu, rel);
            if (!l)
                return NULL;
            if (dwarf_lineno(l, line) != 0)
                *line = 0;
            return dwarf_linesrc(l, NULL, NULL);
        }
        off = next;
    }
    return NULL;
}

size_t vmp_symbols_name(vmp_symbols *s, uintptr_t addr, char *buf, size_t size)
{
    if (size == 0)
        return 0;
    uintptr_t start = addr;
    const char *symbol = symbol_at(s, addr, &start);
    Dwfl_Module *mod = dwfl_addrmodule(s->dwfl, addr);

    int line = 0;
    const char *file = NULL;
    if (mod) {
        Dwfl_Line *l = dwfl_module_getsrc(mod, addr);
        if (l)
            file = dwfl_lineinfo(l, NULL, &line, NULL, NULL, NULL);
        else
            file = line_without_aranges(mod, addr, &line);
        if (!file) {
            /* No line table: the object's path still says where it lives. */
            const char *mainfile = NULL;
            const char *modname =
                dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, &mainfile, NULL);
            file = mainfile ? mainfile : modname;
            line = 0;
        }
    }
    if (!file || !*file)
        file = "-";
    if (line < 0)
        line = 0;

    int n;
    if (symbol)
        n = snprintf(buf, size, "n:%.*s:%d:%s", SYMBOL_CAP, symbol, line, file);
    else
        n = snprintf(buf, size, "n:<native symbol 0x%" PRIxPTR ">:%d:%s", addr, line, file);
    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n < size ? (size_t)n : size - 1;
}

/* Adds the ranges of `name` and `name.cold` found in mod's symbol table. */
static int module_function_ranges(Dwfl_Module *mod, const char *name, uintptr_t (*ranges)[2],
                                  int found, int max)
{
    size_t len = strlen(name);
    int count = dwfl_module_getsymtab(mod);
    for (int i = 0; i < count && found < max; i++) {
        GElf_Sym sym;
        GElf_Addr addr;
        const char *sname = dwfl_module_getsym_info(mod, i, &sym, &addr, NULL, NULL, NULL);
        if (!sname || GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_size == 0)
            continue;
        if (strncmp(sname, name, len) != 0 ||
            (sname[len] != '\0' && strcmp(sname + len, ".cold") != 0))
            continue;
        int dup = 0;
        for (int k = 0; k < found; k++)
            dup |= ranges[k][0] == (uintptr_t)addr;
        if (dup)
            continue;
        ranges[found][0] = (uintptr_t)addr;
        ranges[found][1] = (uintptr_t)addr + sym.st_size;
        found++;
    }
    return found;
}

struct ranges_walk {
    const char *name;
    uintptr_t (*ranges)[2];
    int found, max;
};

static int walk_module(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                       void *arg)
{
    (void)userdata, (void)modname, (void)base;
    struct ranges_walk *w = arg;
    w->found = module_function_ranges(mod, w->name, w->ranges, w->found, w->max);
    return DWARF_CB_OK;
}

int vmp_symbols_function_ranges(vmp_symbols *s, const char *name, uintptr_t (*ranges)[2],
                                int max)
{
    void *exported = dlsym(RTLD_DEFAULT, name);
    if (exported) {
        Dwfl_Module *mod = dwfl_addrmodule(s->dwfl, (uintptr_t)exported);
        if (mod) {
            int found = module_function_ranges(mod, name, ranges, 0, max);
            if (found > 0)
                return found;
        }
    }
    struct ranges_walk w = {name, ranges, 0, max};
    dwfl_getmodules(s->dwfl, walk_module, &w, 0);
    return w.found;
}
