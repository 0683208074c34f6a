/*
 * vmp_symbols.c - native address resolution over elfutils libdwfl.
 *
 * One Dwfl session describes the objects the loader lists, each where the
 * loader placed it (the file of each from /proc/self/maps); a refresh
 * reports them again, which adds objects loaded since (libdwfl keeps the
 * modules it already knows).  Symbol tables and line tables are
 * loaded lazily by libdwfl, object by object, the first time an address in
 * that object is asked about.
 */
#define _GNU_SOURCE
#include "vmp_span.h"
#include "vmp_symbols.h"

#include <dlfcn.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <elfutils/version.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <link.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "vmp_cfi.h"
#include "vmp_fds.h"
#include "vmp_hash.h"
#include "vmp_name.h"

/* The function-name part of a name is capped as the format asks. */
#define SYMBOL_CAP 512

struct sym {
    uintptr_t lo, hi;
    const char *name; /* libdwfl's, alive as long as the module */
    int rank;         /* global 0, weak 1, local 2, PLT stub 3: the lowest names an alias */
};

/* Names of one object, kept across runs in a file named by its build id:
 * function start minus the object's load address -> the name's text.  The
 * same build id is the same code, so the names hold wherever it is loaded. */
struct name_cache {
    Dwfl_Module *mod;
    uintptr_t base;   /* the object's lowest address */
    char id[2 * 64 + 1]; /* build id in hex; "" when it has none */
    int own_lines;       /* the object carries its own line table */
    struct sym *syms;    /* its functions, by address (see sorted_symbol_at) */
    size_t nsyms;
    int syms_read;
    char **stub_names; /* "target@plt" of its PLT stubs (see add_plt_stubs) */
    size_t nstubs;
    vmp_u64map index; /* offset -> position in names */
    char **names;
    uint64_t *offsets;
    size_t n, cap, saved; /* names[0..saved) are in the file already */
};

/* One object the loader lists: where libdwfl must place it, so that its
 * bias comes out as the loader's (see collect_object), and its lowest
 * mapped page (where /proc/self/maps names its file). */
struct object {
    uintptr_t low, high, first_page;
};

struct vmp_symbols {
    Dwfl *dwfl;
    unsigned long long loads; /* the loader's adds + subs when last reported */
    unsigned long long subs;  /* ... and its subs alone */
    vmp_symbols_unload_fn on_unload; /* (vmp_symbols_on_unload) */
    void *on_unload_ctx;
    int in_unload; /* on_unload runs: no refresh meanwhile */
    int unload_seen; /* a report found an object of the last one gone: held */
    struct object *last; /* the objects of the last report, by address */
    size_t nlast;
    uintptr_t interp_lo, interp_hi; /* the interpreter's own object */
    struct name_cache *caches;
    size_t ncaches;
};

static void drop_caches(vmp_symbols *s);

/* arg: the loader's adds + subs, then its subs. */
static int first_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    unsigned long long *loads = arg;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        loads[0] = info->dlpi_adds + info->dlpi_subs;
        loads[1] = info->dlpi_subs;
    }
    return 1;
}

static unsigned long long loader_changes(void)
{
    unsigned long long loads[2] = {0, 0};
    dl_iterate_phdr(first_object, loads);
    return loads[0];
}

static unsigned long long loader_subs(void)
{
    unsigned long long changes, subs;
    vmp_symbols_loader_counts(&changes, &subs);
    return subs;
}

/* Whether a file the standard debuglink search would try exists: the
 * object's .gnu_debuglink name (else its own name + ".debug") next to it,
 * in its folder's .debug, and under /usr/lib/debug + its folder, for its
 * path as given and as resolved. */
static int debuglink_candidate_exists(const char *file_name, const char *debuglink_file)
{
    if (!file_name || file_name[0] != '/')
        return 0;
    if (debuglink_file && debuglink_file[0] == '/')
        return access(debuglink_file, F_OK) == 0;
    char *resolved = realpath(file_name, NULL);
    const char *paths[2] = {file_name, resolved};
    int found = 0;
    for (int i = 0; i < 2 && !found; i++) {
        const char *path = paths[i], *slash = path ? strrchr(path, '/') : NULL;
        if (!slash)
            continue;
        int dir = (int)(slash - path);
        char name[PATH_MAX], candidate[PATH_MAX];
        if (debuglink_file && debuglink_file[0])
            snprintf(name, sizeof name, "%s", debuglink_file);
        else
            snprintf(name, sizeof name, "%s.debug", slash + 1);
        const char *forms[3] = {"%.*s/%s", "%.*s/.debug/%s", "/usr/lib/debug%.*s/%s"};
        for (int k = 0; k < 3 && !found; k++) {
            int n = snprintf(candidate, sizeof candidate, forms[k], dir, path, name);
            found = n > 0 && (size_t)n < sizeof candidate && strcmp(candidate, path) != 0 &&
                    access(candidate, F_OK) == 0;
        }
    }
    free(resolved);
    return found;
}

/* Separate debug files: the standard places on disk, never debuginfod (a
 * profile must not wait on the network when it ends).  libdwfl's standard
 * search asks debuginfod last, whatever DEBUGINFOD_URLS says, and making
 * its client dlopen()s libdebuginfod and curl's dozen libraries into the
 * program (5-8 ms of CPU, and curl's socket pair among its descriptors): so
 * the build-id folder is searched first on its own, and the standard
 * search runs only when a debuglink file it would find is on disk. */
static int find_debuginfo_offline(Dwfl_Module *mod, void **userdata, const char *modname,
                                  Dwarf_Addr base, const char *file_name,
                                  const char *debuglink_file, GElf_Word debuglink_crc,
                                  char **debuginfo_file_name)
{
    const char *urls = getenv("DEBUGINFOD_URLS");
    if (urls && *urls)
        return -1;
    int fd = dwfl_build_id_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
                                          debuglink_crc, debuginfo_file_name);
    if (fd < 0 && debuglink_candidate_exists(file_name, debuglink_file))
        fd = dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
                                          debuglink_crc, debuginfo_file_name);
    return vmp_fd_out_of_the_way(fd);
}

/* The object files, opened while the program runs: kept out of its way
 * (vmp_fds.h) unless libdwfl made the Elf itself (then it holds the number).
 *
 * And read, not mapped: left to libdwfl, libelf maps the whole file
 * (ELF_C_READ_MMAP_PRIVATE), and the kernel puts that copy below the
 * loader's mappings of the same file, so it comes first in /proc/PID/maps.
 * Tools that find a library's load address as the first mapping of its
 * file (CPython's _testexternalinspection, test_external_inspection's
 * test_self_trace, and its remote debugging that follows) then read the
 * file's image: CPython 3.13 found no interpreter (_PyRuntime's
 * interpreters are NULL on disk).  ELF_C_READ reads the parts asked for
 * (the symbol table, a section's data) into memory of libelf's own. */
static int find_elf_out_of_the_way(Dwfl_Module *mod, void **userdata, const char *modname,
                                   Dwarf_Addr base, char **file_name, Elf **elfp)
{
    int fd = dwfl_linux_proc_find_elf(mod, userdata, modname, base, file_name, elfp);
    if (*elfp)
        return fd;
    fd = vmp_fd_out_of_the_way(fd);
    if (fd >= 0)
        *elfp = elf_begin(fd, ELF_C_READ, NULL); /* NULL: libdwfl opens it its own way */
    return fd;
}

static const Dwfl_Callbacks callbacks = {
    .find_elf = find_elf_out_of_the_way,
    .find_debuginfo = find_debuginfo_offline,
};

/* ---- the objects, as the loader lists them --------------------------------- */

struct objects {
    struct object *o; /* NULL in the counting pass */
    size_t n, cap;
    uintptr_t page;
    unsigned long long loads, subs;
};

/* Called with the loader's lock held: copies numbers only, allocates
 * nothing (vmp_native_unwind.c's build_table says why). */
static int collect_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct objects *c = arg;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        c->loads = info->dlpi_adds + info->dlpi_subs;
        c->subs = info->dlpi_subs;
    }
    uintptr_t low = 0, high = 0, first_page = UINTPTR_MAX;
    int loads = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || ph->p_memsz == 0)
            continue;
        /* libdwfl takes the module's bias as its low address minus the
         * first PT_LOAD's p_vaddr & -p_align: with this low it is the
         * loader's own (dlpi_addr). */
        if (loads++ == 0)
            low = info->dlpi_addr + (ph->p_vaddr & -ph->p_align);
        uintptr_t page = info->dlpi_addr + (ph->p_vaddr & ~(c->page - 1));
        if (page < first_page)
            first_page = page;
        if (info->dlpi_addr + ph->p_vaddr + ph->p_memsz > high)
            high = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
    }
    if (loads == 0 || high <= low)
        return 0;
    if (c->o && c->n < c->cap)
        c->o[c->n] = (struct object){low, high, first_page};
    c->n++;
    return 0;
}

/* The loaded objects, from the loader (two passes: count, then fill);
 * NULL when memory is short.  *loads receives the loader's counters. */
static struct object *loaded_objects(size_t *n, unsigned long long *loads, unsigned long long *subs)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        struct objects c = {NULL, 0, 0, (uintptr_t)getpagesize(), 0, 0};
        dl_iterate_phdr(collect_object, &c);
        size_t cap = c.n + 16;
        c = (struct objects){malloc(cap * sizeof *c.o), 0, cap, c.page, 0, 0};
        if (!c.o)
            return NULL;
        dl_iterate_phdr(collect_object, &c);
        if (c.n <= cap) {
            *n = c.n;
            *loads = c.loads;
            *subs = c.subs;
            return c.o;
        }
        free(c.o);
    }
    return NULL;
}

/* A file mapping of /proc/self/maps. */
struct mapping {
    uintptr_t lo, hi; /* (first: vmp_span_find reads them) */
    char *path;
};

static void free_mappings(struct mapping *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].path);
    free(m);
}

/* The mappings that name something (a file, [vdso]), in the maps' order
 * (by address).  NULL when the maps cannot be read. */
static struct mapping *read_mappings(size_t *n)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return NULL;
    struct mapping *m = NULL;
    size_t k = 0, cap = 0;
    char *line = NULL;
    size_t linesz = 0;
    ssize_t len;
    int ok = 1;
    while (ok && (len = getline(&line, &linesz, f)) > 0) {
        if (line[len - 1] == '\n')
            line[--len] = '\0';
        unsigned long lo, hi;
        int at = -1;
        if (sscanf(line, "%lx-%lx %*s %*x %*x:%*x %*u %n", &lo, &hi, &at) < 2 || at <= 0)
            continue;
        const char *path = line + at;
        path += strspn(path, " \t");
        if (path[0] != '/' && strcmp(path, "[vdso]") != 0)
            continue;
        if (k == cap) {
            size_t more = cap ? 2 * cap : 256;
            struct mapping *bigger = realloc(m, more * sizeof *m);
            if (!bigger) {
                ok = 0;
                break;
            }
            m = bigger;
            cap = more;
        }
        m[k] = (struct mapping){lo, hi, strdup(path)};
        ok = m[k].path != NULL;
        k += ok;
    }
    free(line);
    fclose(f);
    if (!ok) {
        free_mappings(m, k);
        return NULL;
    }
    *n = k;
    return m;
}

/* The file mapped at addr, or NULL. */
static const char *path_at(const struct mapping *m, size_t n, uintptr_t addr)
{
    long k = vmp_span_find(m, n, sizeof m[0], addr);
    return k < 0 ? NULL : m[k].path;
}

/* Reports the objects loaded now, each where the loader placed it: objects
 * still loaded keep their tables (libdwfl reuses a module reported again
 * at the same place under the same name); objects unloaded since are
 * dropped, so a library loaded where another was never takes the old one's
 * names.
 *
 * Not dwfl_linux_proc_report: it makes one module of every run of
 * /proc/self/maps lines that map the same file (by inode), anonymous lines
 * in between skipped, from the first line's start.  libelf maps each
 * object file it reads (elf_begin with ELF_C_READ_MMAP), and the kernel
 * puts a new mapping right below the lowest one: the file of a library
 * loaded last lies, once libdw has read it, just below the library itself,
 * and the next report placed the library there, its bias off by the file's
 * size.  Every name asked after that was looked up that far away: none
 * found (the function's address stood as its name) or another function's
 * (s12-dlnames: in 5 of 6 runs of a program loading 8 copies of a 26-KB
 * extension module during a native run, one copy's functions unnamed).
 * The loader's own list places each object exactly; the maps only say
 * which file is at its first page (the kernel's path, " (deleted)" too). */
static int object_cmp(const void *a, const void *b)
{
    const struct object *x = a, *y = b;
    return x->low < y->low ? -1 : x->low > y->low;
}

/* Whether o[0..n) (sorted) holds an object where x is. */
static int listed(const struct object *o, size_t n, const struct object *x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (o[mid].low < x->low)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && o[lo].low == x->low && o[lo].high == x->high;
}

/* Whether an object of the last report is not in o[0..n) (sorted). */
static int one_went(const vmp_symbols *s, const struct object *o, size_t n)
{
    for (size_t i = 0; i < s->nlast; i++)
        if (!listed(o, n, &s->last[i]))
            return 1;
    return 0;
}

size_t vmp_symbols_places_taken(vmp_symbols *s, uintptr_t (*places)[2], size_t max)
{
    size_t n = 0;
    unsigned long long loads = 0, subs = 0;
    struct object *o = loaded_objects(&n, &loads, &subs);
    if (!o || max == 0) {
        free(o);
        places[0][0] = 0;
        places[0][1] = UINTPTR_MAX; /* (cannot tell: anywhere) */
        return 1;
    }
    qsort(o, n, sizeof *o, object_cmp);
    /* Objects loaded since the last report and still there; if the loader
     * loaded more than those, one came and went, where is not known. */
    size_t fresh = 0;
    for (size_t i = 0; i < n; i++)
        fresh += !listed(s->last, s->nlast, &o[i]);
    unsigned long long added = (loads - subs) - (s->loads - s->subs);
    int anywhere = added > fresh;
    size_t k = 0;
    for (size_t i = 0; i < s->nlast; i++) {
        const struct object *gone = &s->last[i];
        if (listed(o, n, gone))
            continue;
        int taken = anywhere;
        for (size_t j = 0; j < n && !taken; j++)
            taken = !listed(s->last, s->nlast, &o[j]) && o[j].low < gone->high && gone->low < o[j].high;
        if (!taken)
            continue;
        if (k == max) {
            k = 1;
            places[0][0] = 0;
            places[0][1] = UINTPTR_MAX;
            break;
        }
        places[k][0] = gone->low;
        places[k][1] = gone->high;
        k++;
    }
    free(o);
    return k;
}

/* held: with on_unload, a report that would drop an object is not made
 * (the loader may list an object as gone before its counters say so). */
static int report_loaded(vmp_symbols *s, int held)
{
    int rc = -1;
    for (int attempt = 0; attempt < 4 && rc < 0; attempt++) {
        size_t n = 0, nm = 0;
        unsigned long long loads = 0, subs = 0;
        struct object *o = loaded_objects(&n, &loads, &subs);
        struct mapping *m = o ? read_mappings(&nm) : NULL;
        /* An object unloaded between the list and the maps could have its
         * first page taken by another file by now: list them again. */
        if (m && loader_changes() != loads && attempt < 3) {
            free_mappings(m, nm);
            free(o);
            continue;
        }
        if (o)
            qsort(o, n, sizeof *o, object_cmp);
        if (m && held && one_went(s, o, n)) {
            s->unload_seen = 1;
            free_mappings(m, nm);
            free(o);
            return 0;
        }
        if (m) {
            s->loads = loads;
            s->subs = subs;
            s->unload_seen = 0;
            free(s->last);
            s->last = o; /* (kept, freed at the next report) */
            s->nlast = n;
            char vdso[32];
            snprintf(vdso, sizeof vdso, "[vdso: %d]", (int)getpid());
            dwfl_report_begin(s->dwfl);
            rc = 0;
            for (size_t i = 0; i < n && rc == 0; i++) {
                const char *path = path_at(m, nm, o[i].first_page);
                if (!path)
                    continue; /* not a file's (made in memory): libdwfl could not read it */
                /* (libdwfl's find_elf reads the vdso from memory under this name) */
                if (path[0] == '[')
                    path = vdso;
                if (!dwfl_report_module(s->dwfl, path, o[i].low, o[i].high))
                    rc = -1;
            }
            if (dwfl_report_end(s->dwfl, NULL, NULL) != 0)
                rc = -1;
        }
        free_mappings(m, nm);
        if (!m) {
            free(o);
            break;
        }
    }
    return rc;
}

static int report_maps(vmp_symbols *s, int asked)
{
    /* An object unloaded since the last report is still in the session
     * (libdwfl reads files, not the memory the loader freed): whoever
     * asked is told before it goes, and may still name its functions. */
    int unloaded = asked && s->on_unload && s->dwfl && vmp_symbols_unloaded(s);
    if (unloaded) {
        s->in_unload = 1;
        s->on_unload(s, 0, s->on_unload_ctx);
        s->in_unload = 0;
    }
    /* (Modules reported again keep their identity, but one unloaded is
     * gone: the caches, which point at modules, start again.  Their files
     * keep what was saved.) */
    if (s->ncaches)
        vmp_symbols_save_names(s);
    drop_caches(s);
    int rc = report_loaded(s, s->on_unload && !asked);
    if (unloaded) {
        s->in_unload = 1;
        s->on_unload(s, 1, s->on_unload_ctx);
        s->in_unload = 0;
    }
    return rc;
}

void vmp_symbols_on_unload(vmp_symbols *s, vmp_symbols_unload_fn fn, void *ctx)
{
    s->on_unload = fn;
    s->on_unload_ctx = ctx;
}

vmp_symbols *vmp_symbols_open(void)
{
    vmp_symbols *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->dwfl = dwfl_begin(&callbacks);
    /* (No descriptor a library keeps by number is made: libunwind is not
     * called, whose pipe lived for the process's life, nor libdwfl's
     * debuginfod client, whose socket pair lived with the session; see
     * find_debuginfo_offline.) */
    if (!s->dwfl || report_maps(s, 1) < 0) {
        vmp_symbols_close(s);
        return NULL;
    }
    return s;
}

int vmp_symbols_refresh(vmp_symbols *s)
{
    return report_maps(s, 1);
}

/* The module holding addr, after reporting the maps again if the loader
 * changed since the last report: libraries loaded during the run resolve,
 * and one loaded where an unloaded one was never takes its names. */
static Dwfl_Module *module_at(vmp_symbols *s, uintptr_t addr)
{
    /* (with on_unload, an unload is reported only when asked: see there) */
    if (!s->in_unload && loader_changes() != s->loads && !(s->on_unload && vmp_symbols_unloaded(s)))
        report_maps(s, 0);
    return dwfl_addrmodule(s->dwfl, addr);
}

void vmp_symbols_follow(vmp_symbols *s)
{
    module_at(s, 0);
}

unsigned long long vmp_symbols_loader_subs(void)
{
    return loader_subs();
}

void vmp_symbols_loader_counts(unsigned long long *changes, unsigned long long *subs)
{
    unsigned long long loads[2] = {0, 0};
    dl_iterate_phdr(first_object, loads);
    *changes = loads[0];
    *subs = loads[1];
}

void vmp_symbols_counts_known(const vmp_symbols *s, unsigned long long *changes, unsigned long long *subs)
{
    *changes = s->loads;
    *subs = s->subs;
}

int vmp_symbols_unloaded(vmp_symbols *s)
{
    return s->unload_seen || loader_subs() != s->subs;
}

const void *vmp_symbols_object_at(vmp_symbols *s, uintptr_t addr)
{
    return module_at(s, addr);
}

static void drop_caches(vmp_symbols *s)
{
    for (size_t i = 0; i < s->ncaches; i++) {
        struct name_cache *c = &s->caches[i];
        free(c->syms);
        for (size_t k = 0; k < c->nstubs; k++)
            free(c->stub_names[k]);
        free(c->stub_names);
        for (size_t k = 0; k < c->n; k++)
            free(c->names[k]);
        free(c->names);
        free(c->offsets);
        vmp_u64map_free(&c->index);
    }
    free(s->caches);
    s->caches = NULL;
    s->ncaches = 0;
}

void vmp_symbols_close(vmp_symbols *s)
{
    if (!s)
        return;
    drop_caches(s);
    free(s->last);
    if (s->dwfl)
        dwfl_end(s->dwfl);
    free(s);
}

struct name_cache;
static struct name_cache *cache_of(vmp_symbols *s, Dwfl_Module *mod);
static const char *sorted_symbol_at(struct name_cache *c, uintptr_t pc, uintptr_t *start, int *sure);

/* The symbol covering pc, or NULL; *start receives its address.  From the
 * module's symbols sorted once (libdwfl's own lookup scans them all each
 * time); libdwfl decides only where symbols overlap. */
static const char *symbol_at(vmp_symbols *s, uintptr_t pc, uintptr_t *start)
{
    Dwfl_Module *mod = module_at(s, pc);
    if (!mod)
        return NULL;
    struct name_cache *c = cache_of(s, mod);
    int sure = 0;
    const char *found = c ? sorted_symbol_at(c, pc, start, &sure) : NULL;
    if (sure)
        return found;
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
    uintptr_t lo, hi;
    if (vmp_cfi_function_at(pc, &lo, &hi) == 0)
        return lo;
    return pc;
}

/* ---- the names' cache across runs --------------------------------------- */

/* The folder of the cache files: $VMPROF_CACHE_DIR, else
 * $XDG_CACHE_HOME/vmprof/native, else ~/.cache/vmprof/native; "" (no cache)
 * when none is known or VMPROF_CACHE_DIR is empty. */
static int cache_dir(char *dir, size_t size, int create)
{
    const char *env = getenv("VMPROF_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"),
               *home = getenv("HOME");
    int n;
    if (env)
        n = snprintf(dir, size, "%s", env);
    else if (xdg && *xdg)
        n = snprintf(dir, size, "%s/vmprof/native", xdg);
    else if (home && *home)
        n = snprintf(dir, size, "%s/.cache/vmprof/native", home);
    else
        return -1;
    if (n <= 0 || (size_t)n >= size)
        return -1;
    if (create) /* each level in turn; failures show at the file's open */
        for (char *p = dir + 1; *p; p++)
            if (*p == '/') {
                *p = '\0';
                mkdir(dir, 0700);
                *p = '/';
            }
    if (create)
        mkdir(dir, 0700);
    return 0;
}

static int cache_add(struct name_cache *c, uint64_t offset, const char *name, size_t len)
{
    uint32_t have;
    if (vmp_u64map_find(&c->index, offset, &have))
        return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        char **names = realloc(c->names, cap * sizeof *names);
        if (!names)
            return -1;
        c->names = names;
        uint64_t *offsets = realloc(c->offsets, cap * sizeof *offsets);
        if (!offsets)
            return -1;
        c->offsets = offsets;
        c->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, name, len);
    copy[len] = '\0';
    if (vmp_u64map_put(&c->index, offset, (uint32_t)c->n) < 0) {
        free(copy);
        return -1;
    }
    c->names[c->n] = copy;
    c->offsets[c->n++] = offset;
    return 0;
}

/* Reads the cache file of c's build id, if any.  A line that is not
 * "<hex offset> n:<name>" ends the reading: what came before stays. */
static void cache_load(struct name_cache *c)
{
    char path[4096], dir[3900];
    if (!c->id[0] || cache_dir(dir, sizeof dir, 0) < 0 || !dir[0])
        return;
    snprintf(path, sizeof path, "%s/%s.v1.names", dir, c->id);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        if (len == 0 || line[len - 1] != '\n')
            break;
        line[--len] = '\0';
        char *end;
        unsigned long long offset = strtoull(line, &end, 16);
        if (end == line || *end != ' ' || strncmp(end + 1, "n:", 2) != 0)
            break;
        if (cache_add(c, offset, end + 1, len - (size_t)(end + 1 - line)) < 0)
            break;
    }
    fclose(f);
    c->saved = c->n;
}

/* Whether the object itself (not a separate debug file) has a section of
 * that name with contents (read from its section headers only). */
static int has_own_section(Dwfl_Module *mod, const char *wanted)
{
    GElf_Addr bias;
    Elf *elf = dwfl_module_getelf(mod, &bias);
    size_t strndx;
    if (!elf || elf_getshdrstrndx(elf, &strndx) != 0)
        return 0;
    for (Elf_Scn *scn = elf_nextscn(elf, NULL); scn; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr shdr;
        const char *name;
        if (gelf_getshdr(scn, &shdr) && shdr.sh_type != SHT_NOBITS &&
            (name = elf_strptr(elf, strndx, shdr.sh_name)) && strcmp(name, wanted) == 0)
            return 1;
    }
    return 0;
}

/* Whether the object itself has a .debug_line section.  A library whose
 * line table lives in a separate debug file (a distribution's -dbg package)
 * is named without lines: those files are large to read and their sources
 * seldom at hand; a C extension built with -g keeps its own. */
static int has_own_lines(Dwfl_Module *mod)
{
    return has_own_section(mod, ".debug_line");
}

static struct name_cache *cache_of(vmp_symbols *s, Dwfl_Module *mod)
{
    for (size_t i = 0; i < s->ncaches; i++)
        if (s->caches[i].mod == mod)
            return &s->caches[i];
    struct name_cache *more = realloc(s->caches, (s->ncaches + 1) * sizeof *more);
    if (!more)
        return NULL;
    s->caches = more;
    struct name_cache *c = &s->caches[s->ncaches++];
    memset(c, 0, sizeof *c);
    c->mod = mod;
    Dwarf_Addr low = 0;
    dwfl_module_info(mod, NULL, &low, NULL, NULL, NULL, NULL, NULL);
    c->base = (uintptr_t)low;
    c->own_lines = has_own_lines(mod);
    const unsigned char *bits;
    GElf_Addr vaddr;
    int len = dwfl_module_build_id(mod, &bits, &vaddr);
    if (len > 0 && len <= 64) {
        for (int i = 0; i < len; i++)
            snprintf(c->id + 2 * i, 3, "%02x", bits[i]);
        cache_load(c);
    }
    return c;
}

void vmp_symbols_save_names(vmp_symbols *s)
{
    char dir[3900], path[4096], tmp[4160];
    int have_dir = -1;
    for (size_t i = 0; i < s->ncaches; i++) {
        struct name_cache *c = &s->caches[i];
        if (!c->id[0] || c->saved == c->n)
            continue;
        if (have_dir < 0)
            have_dir = cache_dir(dir, sizeof dir, 1) == 0 && dir[0];
        if (!have_dir)
            return;
        /* The whole file again, then renamed over the old: a reader never
         * sees half a file, and two runs saving at once lose nothing but
         * names the next run computes again. */
        snprintf(path, sizeof path, "%s/%s.v1.names", dir, c->id);
        snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
        FILE *f = fopen(tmp, "w");
        if (!f)
            continue;
        int ok = 1;
        for (size_t k = 0; k < c->n && ok; k++)
            ok = fprintf(f, "%llx %s\n", (unsigned long long)c->offsets[k], c->names[k]) > 0;
        if (fclose(f) != 0 || !ok || rename(tmp, path) != 0)
            unlink(tmp);
        else
            c->saved = c->n;
    }
}

/* ---- symbols, sorted once per object ---------------------------------------- */

static int sym_cmp(const void *a, const void *b)
{
    const struct sym *x = a, *y = b;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    return x->rank - y->rank;
}

/* ---- PLT stubs ---------------------------------------------------------------- */

/* A call into another object goes through a stub in the caller's PLT, a
 * `jmp *slot(%rip)` through the GOT, and no symbol covers the stubs: the
 * unwind table holds the whole .plt as one function, so samples in any stub
 * of an object were one "<native symbol 0x...>" (1% of a generator-heavy
 * program's samples in libpython).  Each stub is named "target@plt", as
 * objdump and perf name it, from the relocation that fills the GOT slot it
 * jumps through.  The stubs' code is x86-64's. */

#if defined(__x86_64__)
/* Where a stub's `jmp *disp32(%rip)` (ff 25) may stand: first (lazy .plt,
 * .plt.got), after a bnd prefix (f2), after endbr64 (f3 0f 1e fa), or after
 * both (.plt.sec).  Only these: a lazy IBT stub's push operand may hold the
 * bytes ff 25 too. */
static int stub_jump_at(const unsigned char *e, size_t size)
{
    static const unsigned char endbr64[4] = {0xf3, 0x0f, 0x1e, 0xfa};
    size_t at = 0;
    if (size >= 4 && memcmp(e, endbr64, 4) == 0)
        at = 4;
    if (at < size && e[at] == 0xf2)
        at++;
    return at + 6 <= size && e[at] == 0xff && e[at + 1] == 0x25 ? (int)at : -1;
}

struct got_slot {
    GElf_Addr slot;
    size_t sym;  /* index in the dynamic symbol table */
    size_t strs; /* section index of that table's strings */
    Elf_Data *syms;
};

static int got_slot_cmp(const void *a, const void *b)
{
    const struct got_slot *x = a, *y = b;
    return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* The GOT slots the loader fills with a symbol's address, from every
 * relocation section over the dynamic symbols; sorted by slot. */
static struct got_slot *read_got_slots(Elf *elf, size_t *count)
{
    struct got_slot *slots = NULL;
    size_t n = 0, cap = 0;
    for (Elf_Scn *scn = elf_nextscn(elf, NULL); scn; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr shdr, symhdr;
        Elf_Scn *symscn;
        Elf_Data *data, *syms;
        if (!gelf_getshdr(scn, &shdr) || shdr.sh_type != SHT_RELA || !shdr.sh_entsize ||
            !(symscn = elf_getscn(elf, shdr.sh_link)) || !gelf_getshdr(symscn, &symhdr) ||
            symhdr.sh_type != SHT_DYNSYM || !(data = elf_getdata(scn, NULL)) ||
            !(syms = elf_getdata(symscn, NULL)))
            continue;
        size_t relas = shdr.sh_size / shdr.sh_entsize;
        for (size_t i = 0; i < relas; i++) {
            GElf_Rela rela;
            if (!gelf_getrela(data, (int)i, &rela))
                break;
            unsigned type = GELF_R_TYPE(rela.r_info);
            if ((type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) ||
                GELF_R_SYM(rela.r_info) == 0)
                continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                struct got_slot *more = realloc(slots, cap * sizeof *more);
                if (!more) {
                    free(slots);
                    return NULL;
                }
                slots = more;
            }
            slots[n++] = (struct got_slot){rela.r_offset, GELF_R_SYM(rela.r_info), symhdr.sh_link,
                                           syms};
        }
    }
    if (n)
        qsort(slots, n, sizeof *slots, got_slot_cmp);
    *count = n;
    return slots;
}

static const struct got_slot *got_slot_find(const struct got_slot *slots, size_t n, GElf_Addr slot)
{
    struct got_slot key = {.slot = slot};
    return bsearch(&key, slots, n, sizeof *slots, got_slot_cmp);
}

/* The name of the stub of `size` bytes at e (link-time address at), or NULL. */
static char *stub_name(Elf *elf, const unsigned char *e, size_t size, GElf_Addr at,
                       const struct got_slot *slots, size_t nslots)
{
    int j = stub_jump_at(e, size);
    if (j < 0)
        return NULL;
    int32_t disp;
    memcpy(&disp, e + j + 2, sizeof disp);
    const struct got_slot *g = got_slot_find(slots, nslots, at + (GElf_Addr)j + 6 + (GElf_Addr)(int64_t)disp);
    GElf_Sym sym;
    const char *target;
    if (!g || !gelf_getsym(g->syms, (int)g->sym, &sym) ||
        !(target = elf_strptr(elf, g->strs, sym.st_name)) || !*target)
        return NULL;
    size_t len = strnlen(target, SYMBOL_CAP - 4);
    char *name = malloc(len + 5);
    if (name) {
        memcpy(name, target, len);
        memcpy(name + len, "@plt", 5);
    }
    return name;
}

/* Adds the object's named PLT stubs to c->syms (n of them used so far);
 * returns the new count. */
static size_t add_plt_stubs(struct name_cache *c, size_t n)
{
    GElf_Addr bias;
    Elf *elf = dwfl_module_getelf(c->mod, &bias);
    size_t strndx, nslots = 0;
    if (!elf || elf_getshdrstrndx(elf, &strndx) != 0)
        return n;
    struct got_slot *slots = NULL;
    for (Elf_Scn *scn = elf_nextscn(elf, NULL); scn; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr shdr;
        const char *secname;
        Elf_Data *data;
        if (!gelf_getshdr(scn, &shdr) || shdr.sh_type != SHT_PROGBITS || shdr.sh_entsize < 6 ||
            !(secname = elf_strptr(elf, strndx, shdr.sh_name)) || strncmp(secname, ".plt", 4) != 0 ||
            (secname[4] != '\0' && secname[4] != '.') || !(data = elf_getdata(scn, NULL)) ||
            !data->d_buf || data->d_size < shdr.sh_entsize)
            continue;
        if (!slots && !(slots = read_got_slots(elf, &nslots)))
            break;
        size_t stubs = data->d_size / shdr.sh_entsize;
        struct sym *more = realloc(c->syms, (n + stubs) * sizeof *more);
        char **names = realloc(c->stub_names, (c->nstubs + stubs) * sizeof *names);
        if (more)
            c->syms = more;
        if (names)
            c->stub_names = names;
        if (!more || !names)
            break;
        for (size_t i = 0; i < stubs; i++) {
            size_t off = i * shdr.sh_entsize;
            char *name = stub_name(elf, (const unsigned char *)data->d_buf + off, shdr.sh_entsize,
                                   shdr.sh_addr + off, slots, nslots);
            if (!name)
                continue; /* the lazy .plt's first entry: the resolver's */
            c->stub_names[c->nstubs++] = name;
            uintptr_t lo = (uintptr_t)(shdr.sh_addr + off + bias);
            c->syms[n++] = (struct sym){lo, lo + shdr.sh_entsize, name, 3};
        }
    }
    free(slots);
    return n;
}
#else
static size_t add_plt_stubs(struct name_cache *c, size_t n)
{
    (void)c;
    return n;
}
#endif

static void read_syms(struct name_cache *c)
{
    c->syms_read = 1;
    int count = dwfl_module_getsymtab(c->mod);
    c->syms = malloc((size_t)(count > 0 ? count : 1) * sizeof *c->syms);
    if (!c->syms)
        return;
    size_t n = 0;
    for (int i = 0; i < count; i++) {
        GElf_Sym sym;
        GElf_Addr addr;
        const char *name = dwfl_module_getsym_info(c->mod, i, &sym, &addr, NULL, NULL, NULL);
        int type = GELF_ST_TYPE(sym.st_info), bind = GELF_ST_BIND(sym.st_info);
        if (!name || !*name || sym.st_size == 0 || (type != STT_FUNC && type != STT_GNU_IFUNC) ||
            sym.st_shndx == SHN_UNDEF)
            continue;
        c->syms[n++] = (struct sym){(uintptr_t)addr, (uintptr_t)addr + sym.st_size, name,
                                    bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2};
    }
    n = add_plt_stubs(c, n);
    qsort(c->syms, n, sizeof *c->syms, sym_cmp);
    c->nsyms = n;
}

/* The function symbol covering pc from the sorted table.  *sure is 0 when
 * the table cannot decide (no table, or symbols that overlap around pc):
 * the caller asks libdwfl then. */
static const char *sorted_symbol_at(struct name_cache *c, uintptr_t pc, uintptr_t *start, int *sure)
{
    *sure = 0;
    if (!c->syms_read)
        read_syms(c);
    if (!c->nsyms)
        return NULL;
    size_t lo = 0, hi = c->nsyms; /* the first symbol starting after pc */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->syms[mid].lo <= pc)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL; /* before every function: libdwfl may know better */
    /* The aliases at the nearest start sort best first. */
    size_t k = lo - 1;
    while (k > 0 && c->syms[k - 1].lo == c->syms[k].lo)
        k--;
    const struct sym *best = &c->syms[k];
    if (pc >= best->hi)
        return NULL; /* in a gap, or inside a bigger symbol further back */
    if (k > 0 && c->syms[k - 1].hi > pc)
        return NULL; /* nested symbols: libdwfl decides */
    *sure = 1;
    *start = best->lo;
    return best->name;
}

/* ---- names ----------------------------------------------------------------- */

/* File and line of the function starting at (or holding) addr, from the
 * line table: where its first instruction comes from, which is its
 * definition for compiled C.  (The line table of one compilation unit is
 * far cheaper to read than the debug information's tree of scopes.) */
static const char *source_of(Dwfl_Module *mod, uintptr_t addr, int *line)
{
    Dwfl_Line *l = dwfl_module_getsrc(mod, addr);
    if (l) {
        const char *file = dwfl_lineinfo(l, NULL, line, NULL, NULL, NULL);
        if (file && *line < 0)
            *line = 0;
        return file;
    }
    /* libdwfl finds the compilation unit through .debug_aranges, which
     * clang does not emit by default: then the units' own ranges. */
    Dwarf_Addr bias = 0;
    Dwarf *dw = dwfl_module_getdwarf(mod, &bias);
    if (!dw)
        return NULL;
    Dwarf_Addr rel = addr - bias;
    Dwarf_Off off = 0, next;
    size_t header;
    Dwarf_Die cu;
    while (dwarf_nextcu(dw, off, &next, &header, NULL, NULL, NULL) == 0) {
        if (dwarf_offdie(dw, off + header, &cu) && dwarf_haspc(&cu, rel) > 0) {
            Dwarf_Line *dl = dwarf_getsrc_die(&cu, rel);
            if (!dl)
                return NULL;
            if (dwarf_lineno(dl, line) != 0 || *line < 0)
                *line = 0;
            return dwarf_linesrc(dl, NULL, NULL);
        }
        off = next;
    }
    return NULL;
}

/* The name of a function no symbol covers in a known object (a stripped
 * library's static function, whose start the unwind tables gave):
 * "<object's file name>+0x<offset>", the offset its link-time address - addr
 * less the object's load bias, as objdump, readelf and addr2line count (for
 * a shared library, the offset from where it was loaded).  The absolute
 * address changes every run (ASLR) and does not say which library the
 * function is in; this is the same in every run of the same library, and can
 * be looked up in it.  The object's path is the name's file part (line 0)
 * unless its own line table gave one.  Returns the length as snprintf, or -1
 * when the object's file name is unknown. */
static int offset_name(Dwfl_Module *mod, const struct name_cache *c, uintptr_t addr, char *buf,
                       size_t size)
{
    const char *mainfile = NULL;
    const char *modname = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, &mainfile, NULL);
    const char *path = mainfile && *mainfile ? mainfile : modname;
    if (!path || !*path)
        return -1;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!*base)
        return -1;
    GElf_Addr bias = 0;
    uintptr_t offset;
    if (dwfl_module_getelf(mod, &bias))
        offset = addr - (uintptr_t)bias;
    else if (c)
        offset = addr - c->base; /* (no file: its lowest address is its base, for a library) */
    else
        return -1;
    return snprintf(buf, size, "%s+0x%" PRIxPTR, base, offset);
}

void vmp_symbols_set_interpreter(vmp_symbols *s, uintptr_t addr)
{
    Dwfl_Module *mod = module_at(s, addr);
    Dwarf_Addr lo = 0, hi = 0;
    if (mod && dwfl_module_info(mod, NULL, &lo, &hi, NULL, NULL, NULL, NULL)) {
        s->interp_lo = (uintptr_t)lo;
        s->interp_hi = (uintptr_t)hi;
    }
}

size_t vmp_symbols_name(vmp_symbols *s, uintptr_t addr, char *buf, size_t size)
{
    if (size == 0)
        return 0;
    Dwfl_Module *mod = module_at(s, addr);
    struct name_cache *c = mod ? cache_of(s, mod) : NULL;
    uint32_t at;
    if (c && vmp_u64map_find(&c->index, addr - c->base, &at)) {
        size_t len = strlen(c->names[at]);
        if (len >= size)
            len = size - 1;
        memcpy(buf, c->names[at], len);
        buf[len] = '\0';
        return len;
    }
    uintptr_t start = addr;
    const char *symbol = symbol_at(s, addr, &start);

    int line = 0;
    const char *file = NULL;
    if (mod) {
        /* Lines only where someone reads them: not for the interpreter's
         * own functions, which their names say enough about, nor for
         * libraries whose line tables are in separate debug files (see
         * has_own_lines). */
        if ((addr < s->interp_lo || addr >= s->interp_hi) && (!c || c->own_lines))
            file = source_of(mod, addr, &line);
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

    /* the name grammar is libvmprof's (vmp_name.h) */
    char unnamed[SYMBOL_CAP];
    const char *func = symbol;
    size_t func_len = symbol ? strnlen(symbol, SYMBOL_CAP) : 0;
    if (!symbol) {
        int u = mod ? offset_name(mod, c, addr, unnamed, sizeof unnamed) : -1;
        if (u < 0 || (size_t)u >= sizeof unnamed)
            u = snprintf(unnamed, sizeof unnamed, "<native symbol 0x%" PRIxPTR ">", addr);
        func = unnamed;
        func_len = u > 0 ? (size_t)u : 0;
    }
    size_t n = vmp_name_write(buf, size, VMP_NAME_NATIVE, func, func_len, line, file,
                              strlen(file));
    size_t len = n < size ? n : size - 1;
    /* Only names of code a build id pins down, whole, and from a symbol
     * table: not "<native symbol 0x...>" (the next run's loading moves the
     * address), nor "lib+0x..." (a debug file installed later, with the
     * same build id, names that function: the cache would hide it). */
    if (c && c->id[0] && symbol && n < size && !memchr(buf, '\n', len))
        cache_add(c, addr - c->base, buf, len);
    return len;
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
        Dwfl_Module *mod = module_at(s, (uintptr_t)exported);
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

/* ---- unwind rules ---------------------------------------------------------- */

#define DW_REG_RBX VMP_REG_RBX
#define DW_REG_RBP VMP_REG_RBP
#define DW_REG_RSP VMP_REG_RSP
#define DW_REG_RA 16

/* A register's save slot as an offset from the CFA: 1 when saved at
 * CFA + *off, 0 when unchanged (same value), -1 otherwise (undefined, a value
 * rule, an expression). */
static int saved_at(Dwarf_Frame *frame, int regno, int64_t *off)
{
    Dwarf_Op mem[3], *ops = NULL;
    size_t nops = 0;
    if (dwarf_frame_register(frame, regno, mem, &ops, &nops) != 0)
        return -1;
    if (nops == 0)
        return ops == NULL ? 0 : -1; /* same value : undefined */
    if (ops[0].atom != DW_OP_call_frame_cfa)
        return -1;
    if (nops == 1) {
        *off = 0;
        return 1;
    }
    if (nops == 2 && ops[1].atom == DW_OP_plus_uconst) {
        *off = (int64_t)ops[1].number;
        return 1;
    }
    return -1;
}

/* rbx_off for the frame (vmp_symbols.h): where the caller's rbx is.  An
 * undefined rbx counts as unchanged: libdw's x86-64 defaults declare
 * register 0 (rax) callee-saved where rbx (3) is meant, so it reports rbx
 * undefined in every row that does not mention it, and it cannot tell that
 * from a row that says so (which compilers never write for rbx: undefined
 * marks a thread's first frame, which is not stepped).  The ABI says rbx is
 * callee-saved: unchanged.  vmp_cfi reads undefined rbx the same way.  Any
 * other rule than a slot below the CFA loses track of it (not a refusal:
 * only a caller whose CFA is on rbx needs it). */
static int16_t rbx_rule(Dwarf_Frame *frame)
{
    Dwarf_Op mem[3], *ops = NULL;
    size_t nops = 0;
    int64_t off;
    if (dwarf_frame_register(frame, DW_REG_RBX, mem, &ops, &nops) != 0)
        return VMP_RBX_LOST;
    if (nops == 0)
        return 0; /* same value, or undefined */
    return saved_at(frame, DW_REG_RBX, &off) == 1 ? vmp_unwind_rbx_slot(off) : VMP_RBX_LOST;
}

/* Evaluates a CFA expression of the kind PLT stubs carry ("rsp + 8, and 8
 * more past the stub's push"), which depends on the stack pointer and the
 * pc only, for the given values.  Returns 0 and *value, or -1 for any other
 * operation. */
static int eval_cfa(const Dwarf_Op *ops, size_t nops, uint64_t rsp, uint64_t pc, uint64_t *value)
{
    uint64_t st[8];
    size_t n = 0;
    for (size_t i = 0; i < nops; i++) {
        uint8_t op = ops[i].atom;
        if (n == 8)
            return -1;
        if (op == DW_OP_breg7 || op == DW_OP_breg16) {
            st[n++] = (op == DW_OP_breg7 ? rsp : pc) + ops[i].number;
        } else if (op >= DW_OP_lit0 && op <= DW_OP_lit31) {
            st[n++] = op - DW_OP_lit0;
        } else if (op == DW_OP_const1u || op == DW_OP_const2u || op == DW_OP_const4u ||
                   op == DW_OP_const1s || op == DW_OP_const2s || op == DW_OP_const4s) {
            st[n++] = ops[i].number;
        } else if (op == DW_OP_plus_uconst && n >= 1) {
            st[n - 1] += ops[i].number;
        } else if (n >= 2 && (op == DW_OP_plus || op == DW_OP_minus || op == DW_OP_and ||
                              op == DW_OP_shl || op == DW_OP_ge || op == DW_OP_gt ||
                              op == DW_OP_lt || op == DW_OP_le)) {
            uint64_t b = st[--n], a = st[n - 1];
            int64_t sa = (int64_t)a, sb = (int64_t)b;
            st[n - 1] = op == DW_OP_plus    ? a + b
                        : op == DW_OP_minus ? a - b
                        : op == DW_OP_and   ? a & b
                        : op == DW_OP_shl   ? (b < 64 ? a << b : 0)
                        : op == DW_OP_ge    ? sa >= sb
                        : op == DW_OP_gt    ? sa > sb
                        : op == DW_OP_lt    ? sa < sb
                                            : sa <= sb;
        } else {
            return -1;
        }
    }
    if (n != 1)
        return -1;
    *value = st[0];
    return 0;
}

static int rule_from_frame(Dwarf_Frame *frame, Dwarf_Addr bias, uintptr_t pc, vmp_unwind_rule *rule)
{
    bool signal = false;
    Dwarf_Addr start = 0, end = 0;
    if (dwarf_frame_info(frame, &start, &end, &signal) != DW_REG_RA || signal || end <= start)
        return -1;
    rule->lo = (uintptr_t)(start + bias);
    rule->hi = (uintptr_t)(end + bias);
    Dwarf_Op *ops = NULL;
    size_t nops = 0;
    if (dwarf_frame_cfa(frame, &ops, &nops) != 0 || nops == 0)
        return -1;
    /* libdw gives "register + offset" as DW_OP_bregx (reg, offset), or as
     * DW_OP_breg<reg> (offset); a longer expression that comes to "rsp +
     * offset" at this very pc (PLT stubs) holds for this pc alone. */
    uint64_t reg;
    int64_t cfa_off;
    uint64_t at0, at1;
    if (nops > 1) {
        if (eval_cfa(ops, nops, 0, pc, &at0) < 0 || eval_cfa(ops, nops, 1u << 20, pc, &at1) < 0 ||
            at1 - at0 != 1u << 20)
            return -1;
        reg = DW_REG_RSP;
        cfa_off = (int64_t)at0;
        /* The same value holds around pc in its 16-byte stub (and row). */
        uintptr_t block = pc & ~(uintptr_t)15, lo = pc, hi = pc + 1;
        uint64_t v;
        while (lo > block && lo > rule->lo && eval_cfa(ops, nops, 0, lo - 1, &v) == 0 && v == at0)
            lo--;
        while (hi < block + 16 && hi < rule->hi && eval_cfa(ops, nops, 0, hi, &v) == 0 && v == at0)
            hi++;
        rule->lo = lo;
        rule->hi = hi;
    } else if (ops[0].atom == DW_OP_bregx) {
        reg = ops[0].number;
        cfa_off = (int64_t)ops[0].number2;
    } else if (ops[0].atom >= DW_OP_breg0 && ops[0].atom <= DW_OP_breg31) {
        reg = ops[0].atom - DW_OP_breg0;
        cfa_off = (int64_t)ops[0].number;
    } else {
        return -1;
    }
    if ((reg != DW_REG_RSP && reg != DW_REG_RBP && reg != DW_REG_RBX) || cfa_off < INT32_MIN ||
        cfa_off > INT32_MAX)
        return -1;

    Dwarf_Op mem[3], *ra_ops = NULL;
    size_t ra_nops = 0;
    if (dwarf_frame_register(frame, DW_REG_RA, mem, &ra_ops, &ra_nops) != 0)
        return -1;
    rule->cfa_reg = (uint8_t)reg;
    rule->cfa_off = (int32_t)cfa_off;
    rule->rbp_off = 0;
    rule->rbx_off = 0;
    if (ra_nops == 0 && ra_ops != NULL) {
        rule->kind = VMP_RULE_END; /* return address undefined: no caller */
        return 0;
    }
    int64_t off;
    if (saved_at(frame, DW_REG_RA, &off) != 1 || off != -8)
        return -1;
    int rbp = saved_at(frame, DW_REG_RBP, &off);
    if (rbp < 0 || (rbp == 1 && (off >= 0 || off < INT16_MIN)))
        return -1;
    rule->rbp_off = rbp == 1 ? (int16_t)off : 0;
    rule->rbx_off = rbx_rule(frame);
    rule->kind = VMP_RULE_STEP;
    return 0;
}

static int rule_in_module(Dwfl_Module *mod, uintptr_t pc, vmp_unwind_rule *rule);

int vmp_symbols_unwind_rule(vmp_symbols *s, uintptr_t pc, vmp_unwind_rule *rule)
{
    Dwfl_Module *mod = module_at(s, pc);
    return mod ? rule_in_module(mod, pc, rule) : -1;
}

int vmp_symbols_unwind_rules(vmp_symbols *s, uintptr_t pc, vmp_unwind_rule *rules, int max)
{
    Dwfl_Module *mod = module_at(s, pc);
    if (!mod || max <= 0)
        return 0;
    uintptr_t start = pc, end = pc + 1;
    GElf_Off offset = 0;
    GElf_Sym sym;
    const char *name = dwfl_module_addrinfo(mod, pc, &offset, &sym, NULL, NULL, NULL);
    if (name && sym.st_size > offset) {
        start = pc - offset;
        end = start + sym.st_size;
    }
    int n = 0;
    /* Row by row through the function; a gap (a row that cannot be
     * expressed, or no unwind information) is stepped over a byte at a
     * time, which only ever happens in a few bytes of odd code. */
    for (uintptr_t at = start; at < end && n < max;) {
        vmp_unwind_rule r;
        if (rule_in_module(mod, at, &r) < 0 || r.hi <= at) {
            at++;
            continue;
        }
        n = vmp_unwind_rules_append(rules, n, r, at);
        at = r.hi;
    }
    /* pc's own row must be there even if the function had more rows than
     * room. */
    if (vmp_unwind_rules_cover(rules, n, pc))
        return n;
    vmp_unwind_rule r;
    if (rule_in_module(mod, pc, &r) < 0)
        return 0;
    rules[n < max ? n++ : max - 1] = r;
    return n;
}

/* pc's row from the object's .eh_frame, else from its .debug_frame.  An
 * object that has an .eh_frame is asked for a .debug_frame only when it
 * carries one itself.  Its gaps are code without CFI on purpose: every
 * thread's walk ends in one (clone's child part, a thread's outermost
 * frame), and vmp_symbols_unwind_rules asks about such a gap byte by byte;
 * for the first, libdwfl would open the DWARF of the object's separate
 * debug file (libc6-dbg's: ~50 ms of CPU inflating its sections, in every
 * native run, for a file with no .debug_frame: compilers that write
 * .eh_frame do not write a .debug_frame too). */
static int rule_in_module(Dwfl_Module *mod, uintptr_t pc, vmp_unwind_rule *rule)
{
    Dwarf_Addr bias = 0;
    Dwarf_CFI *cfi = dwfl_module_eh_cfi(mod, &bias);
    Dwarf_Frame *frame = NULL;
    if (!cfi || dwarf_cfi_addrframe(cfi, pc - bias, &frame) != 0) {
        free(frame);
        frame = NULL;
        if (cfi && !has_own_section(mod, ".debug_frame"))
            return -1;
        cfi = dwfl_module_dwarf_cfi(mod, &bias);
        if (!cfi || dwarf_cfi_addrframe(cfi, pc - bias, &frame) != 0) {
            free(frame);
            return -1;
        }
    }
    int rc = rule_from_frame(frame, bias, pc, rule);
    free(frame);
    return rc;
}
