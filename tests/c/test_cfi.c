/*
 * test_cfi.c - the signal-safe .eh_frame reader (vmp_cfi) against libdw.
 *
 * The oracle: for every FDE of libc, libpython (VMP_TEST_LIBPYTHON, set by
 * the Makefile), libdw, ld.so, the vDSO and this test program, at the first
 * and the last byte of every row of its call-frame table, vmp_cfi_rule gives
 * exactly what libdw's path (vmp_symbols_unwind_rule) gives - kind, CFA
 * register and offset, rbp's and rbx's slots and the row's end - or both
 * refuse.  The rows are
 * found with libdw's own row lookup, not with the reader under test.
 *
 * Then crafted tables, placed so that the segment ends at a page nobody may
 * read (and begins after one): every opcode the reader follows gives its
 * rule, and everything malformed (lengths running past the segment, a CIE
 * pointer leaving it, remember_state nested too deep, unknown opcodes or
 * augmentations, a program longer than the operation cap) gives -1 without
 * a read outside [lo, hi): such a read would fault here, and ASan (make
 * test-c-sanitize) sees it too.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elfutils/libdwfl.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmp_cfi.h"
#include "vmp_native_unwind.h"
#include "vmp_symbols.h"
#include "vmp_test.h"

/* ---- the oracle over real objects ---------------------------------------- */

struct found {
    const char *want; /* a part of the object's path; "" for the executable */
    vmp_cfi_object cfi;
    uintptr_t base; /* where the object's address 0 is: pcs are reported from it */
    int ok;
};

static int find_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct found *f = arg;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    if (f->want[0] ? strstr(name, f->want) == NULL : name[0] != '\0')
        return 0;
    f->base = info->dlpi_addr;
    f->ok = vmp_cfi_object_from_phdrs(&f->cfi, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum) == 0;
    return 1;
}

static char *no_debuginfo_path;
static int no_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                        const char *file_name, const char *debuglink_file, GElf_Word debuglink_crc,
                        char **debuginfo_file_name)
{
    (void)mod, (void)userdata, (void)modname, (void)base, (void)file_name, (void)debuglink_file,
        (void)debuglink_crc, (void)debuginfo_file_name;
    return -1; /* the rows come from .eh_frame: no debug file needed */
}

static const Dwfl_Callbacks row_callbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = no_debuginfo,
    .debuginfo_path = &no_debuginfo_path,
};

/* The row of libdw's .eh_frame table holding pc: 0 and [*start, *end), or -1. */
static int libdw_row(Dwfl *dwfl, uintptr_t pc, uintptr_t *start, uintptr_t *end)
{
    Dwfl_Module *mod = dwfl_addrmodule(dwfl, pc);
    Dwarf_Addr bias = 0;
    Dwarf_CFI *cfi = mod ? dwfl_module_eh_cfi(mod, &bias) : NULL;
    Dwarf_Frame *frame = NULL;
    if (!cfi || dwarf_cfi_addrframe(cfi, pc - bias, &frame) != 0) {
        free(frame);
        return -1;
    }
    Dwarf_Addr s = 0, e = 0;
    int rc = dwarf_frame_info(frame, &s, &e, NULL) < 0 || e <= s ? -1 : 0;
    free(frame);
    *start = (uintptr_t)(s + bias);
    *end = (uintptr_t)(e + bias);
    return rc;
}

/* The object `want`'s tables (f), the oracle's libdwfl session and the
 * symbols of the code under test: 0, or -1 when one is missing (close
 * what was opened with oracle_close either way). */
static int oracle_open(struct found *f, Dwfl **dwfl, vmp_symbols **syms)
{
    dl_iterate_phdr(find_object, f);
    *dwfl = dwfl_begin(&row_callbacks);
    *syms = vmp_symbols_open();
    return f->ok && *dwfl && *syms && dwfl_linux_proc_report(*dwfl, getpid()) == 0 &&
                   dwfl_report_end(*dwfl, NULL, NULL) == 0
               ? 0
               : -1;
}

static void oracle_close(Dwfl *dwfl, vmp_symbols *syms)
{
    vmp_symbols_close(syms);
    if (dwfl)
        dwfl_end(dwfl);
}

struct tally {
    long pcs, agree_step, agree_end, agree_on_rbx, both_refuse, differ;
};

/* The same rule over the same row.  libdw's row may begin earlier than
 * ours: after restore_state it reports the start of the row that was
 * remembered (readelf -wF shows the row beginning at the restore, as we do;
 * vmp_symbols_unwind_rules clips it for that reason). */
static int same_rule(const vmp_unwind_rule *ours, const vmp_unwind_rule *libdw, uintptr_t pc)
{
    return ours->kind == libdw->kind && ours->cfa_reg == libdw->cfa_reg &&
           ours->cfa_off == libdw->cfa_off && ours->rbp_off == libdw->rbp_off &&
           ours->rbx_off == libdw->rbx_off && ours->hi == libdw->hi && ours->lo >= libdw->lo && ours->lo <= pc;
}

static void compare_at(vmp_symbols *syms, const struct found *f, uintptr_t pc, const char *what,
                       struct tally *t)
{
    vmp_unwind_rule ours, theirs;
    memset(&ours, 0, sizeof ours);
    memset(&theirs, 0, sizeof theirs);
    int a = vmp_cfi_rule(&f->cfi, pc, &ours), b = vmp_symbols_unwind_rule(syms, pc, &theirs);
    t->pcs++;
    if (a < 0 && b < 0) {
        t->both_refuse++;
    } else if (a == 0 && b == 0 && same_rule(&ours, &theirs, pc)) {
        t->agree_step += ours.kind == VMP_RULE_STEP;
        t->agree_end += ours.kind == VMP_RULE_END;
        t->agree_on_rbx += ours.kind == VMP_RULE_STEP && ours.cfa_reg == VMP_REG_RBX;
    } else {
        if (t->differ++ < 5)
            fprintf(stderr,
                    "test_cfi: %s pc +%#lx: vmp_cfi %d (kind %d reg %d off %d rbp %d rbx %d [%#lx,%#lx)), "
                    "libdw %d (kind %d reg %d off %d rbp %d rbx %d [%#lx,%#lx))\n",
                    what, (unsigned long)(pc - f->base), a, ours.kind, ours.cfa_reg, ours.cfa_off, ours.rbp_off,
                    ours.rbx_off, (unsigned long)(ours.lo - f->base), (unsigned long)(ours.hi - f->base), b,
                    theirs.kind, theirs.cfa_reg, theirs.cfa_off, theirs.rbp_off, theirs.rbx_off,
                    (unsigned long)(theirs.lo - f->base), (unsigned long)(theirs.hi - f->base));
    }
}

/* Every row of every FDE the object's header table lists. */
static struct tally compare_object(const char *want, const char *what)
{
    struct tally t = {0};
    struct found f = {want, {0}, 0, 0};
    Dwfl *dwfl;
    vmp_symbols *syms;
    if (oracle_open(&f, &dwfl, &syms) < 0) {
        t.differ = -1;
        goto out;
    }
    const int32_t *table = (const int32_t *)f.cfi.table;
    for (uint32_t i = 0; i < f.cfi.count; i++) {
        uintptr_t at = f.cfi.hdr + (uintptr_t)(intptr_t)table[2 * i];
        uintptr_t next = i + 1 < f.cfi.count ? f.cfi.hdr + (uintptr_t)(intptr_t)table[2 * i + 2] : UINTPTR_MAX;
        for (int rows = 0; at < next && rows < 10000; rows++) {
            uintptr_t start, end;
            if (libdw_row(dwfl, at, &start, &end) < 0 || end <= at)
                break; /* past the FDE's end: a gap up to the next one */
            compare_at(syms, &f, start, what, &t);
            if (end - 1 != start)
                compare_at(syms, &f, end - 1, what, &t);
            at = end;
        }
    }
out:
    oracle_close(dwfl, syms);
    return t;
}

static struct tally check_object(const char *want, const char *what, long min_rows)
{
    struct tally t = compare_object(want, what);
    fprintf(stderr,
            "test_cfi: %s: %ld pcs, %ld steps (%ld with the CFA on rbx) and %ld ends agree, %ld both refused, "
            "%ld differ\n",
            what, t.pcs, t.agree_step, t.agree_on_rbx, t.agree_end, t.both_refuse, t.differ);
    CHECK(t.differ == 0);
    /* Not vacuous: the object's rows were really read and mostly followed. */
    CHECK(t.agree_step >= min_rows);
    CHECK(t.both_refuse * 20 < t.pcs);
    return t;
}

VMP_TEST(cfi_rules_equal_libdws_on_every_row_of_libc)
{
    struct tally t = check_object("libc.so", "libc", 10000);
    /* clone's child part: the thread's first frame, the return address
     * undefined. */
    CHECK(t.agree_end > 0);
}

VMP_TEST(cfi_rules_equal_libdws_on_every_row_of_this_program_and_libdw)
{
    check_object("", "test program", 1000);
    check_object("libdw", "libdw", 10000);
}

VMP_TEST(cfi_rules_equal_libdws_on_every_row_of_ldso)
{
    /* The dynamic loader: its lazy-binding trampolines (_dl_runtime_resolve_*,
     * where a thread is on the first call of each function bound lazily)
     * keep their frame in rbx, CFA = rbx + 32: those rows are followed, the
     * same as libdw's path reads them. */
    struct tally t = check_object("ld-linux", "ld.so", 1000);
    CHECK(t.agree_on_rbx >= 3);
}

VMP_TEST(cfi_rules_equal_libdws_on_every_row_of_libpython)
{
    const char *path = getenv("VMP_TEST_LIBPYTHON");
    if (!path || !path[0]) {
        fprintf(stderr, "test_cfi: VMP_TEST_LIBPYTHON unset: libpython not compared (make test-c sets it)\n");
        return;
    }
    /* Loaded, never run: its rows are read in place, as the handler would. */
    void *lib = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
    REQUIRE(lib);
    const char *base = strrchr(path, '/');
    check_object(base ? base + 1 : path, "libpython", 20000);
    dlclose(lib);
}

/* ---- a whole function's rules (vmp_cfi_rules, what the writer learns) ---- */

struct whole_tally {
    long fdes, rules, rows_checked, rows_missing, bad;
};

/* For every FDE of the object: vmp_cfi_rules from the FDE's first byte
 * gives sorted, disjoint rules inside the FDE, each the rule libdw's path
 * gives at its first and last byte; and every row of libdw's table that
 * vmp_cfi_rule follows lies inside one of them (none left for a later
 * miss to learn), but a PLT's, whose stub rules are learned one by one. */
static struct whole_tally check_whole_functions(const char *want, const char *what)
{
    struct whole_tally t = {0};
    struct found f = {want, {0}, 0, 0};
    Dwfl *dwfl;
    vmp_symbols *syms;
    static vmp_unwind_rule rules[4096];
    if (oracle_open(&f, &dwfl, &syms) < 0) {
        t.bad = -1;
        goto out;
    }
    const int32_t *table = (const int32_t *)f.cfi.table;
    for (uint32_t i = 0; i < f.cfi.count; i++) {
        uintptr_t start = f.cfi.hdr + (uintptr_t)(intptr_t)table[2 * i];
        uintptr_t next = i + 1 < f.cfi.count ? f.cfi.hdr + (uintptr_t)(intptr_t)table[2 * i + 2] : UINTPTR_MAX;
        vmp_unwind_rule own;
        int n = vmp_cfi_rules(&f.cfi, start, rules, 4096);
        if (n == 0) {
            t.bad += vmp_cfi_rule(&f.cfi, start, &own) == 0; /* its own row has a rule: must be given */
            continue;
        }
        t.fdes++;
        t.rules += n;
        for (int k = 0; k < n; k++) {
            vmp_unwind_rule a, b;
            int sorted = rules[k].lo < rules[k].hi && (k == 0 || rules[k - 1].hi <= rules[k].lo);
            int inside = rules[k].lo >= start && rules[k].hi <= next;
            int same = vmp_symbols_unwind_rule(syms, rules[k].lo, &a) == 0 &&
                       vmp_symbols_unwind_rule(syms, rules[k].hi - 1, &b) == 0 &&
                       vmp_unwind_rule_same_step(&a, &rules[k]) && vmp_unwind_rule_same_step(&b, &rules[k]) &&
                       b.hi >= rules[k].hi;
            if (!(sorted && inside && same) && t.bad++ < 5)
                fprintf(stderr, "test_cfi: %s FDE +%#lx rule %d [%#lx,%#lx): sorted %d inside %d same as libdw %d\n",
                        what, (unsigned long)(start - f.base), k, (unsigned long)(rules[k].lo - f.base),
                        (unsigned long)(rules[k].hi - f.base), sorted, inside, same);
        }
        for (uintptr_t at = start; at < next;) {
            uintptr_t lo, hi;
            if (libdw_row(dwfl, at, &lo, &hi) < 0 || hi <= at)
                break;
            /* (a row ours narrows is a PLT's expression, left to its own
             * miss: only rows whose end we give as libdw does count) */
            if (vmp_cfi_rule(&f.cfi, at, &own) == 0 && own.hi == hi) {
                int in = 0;
                for (int k = 0; k < n && !in; k++)
                    in = rules[k].lo <= at && at < rules[k].hi;
                t.rows_checked++;
                if (!in && t.rows_missing++ < 5)
                    fprintf(stderr, "test_cfi: %s FDE +%#lx: row at +%#lx not among its rules\n", what,
                            (unsigned long)(start - f.base), (unsigned long)(at - f.base));
            }
            at = hi;
        }
    }
out:
    oracle_close(dwfl, syms);
    fprintf(stderr, "test_cfi: %s: %ld functions, %ld rules, %ld rows checked, %ld missing, %ld bad\n", what,
            t.fdes, t.rules, t.rows_checked, t.rows_missing, t.bad);
    return t;
}

VMP_TEST(cfi_function_at_gives_the_fde_holding_a_pc_in_any_loaded_object)
{
    vmp_symbols *syms = vmp_symbols_open();
    REQUIRE(syms);
    /* This program's function and libc's: the FDE starts where the
     * function's symbol does, and holds the pc. */
    const uintptr_t fns[] = {(uintptr_t)&check_object, (uintptr_t)&dl_iterate_phdr};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        uintptr_t lo = 0, hi = 0;
        CHECK(vmp_cfi_function_at(fns[i] + 4, &lo, &hi) == 0);
        CHECK(lo == fns[i] && hi > fns[i] + 4);
        CHECK(lo == vmp_symbols_function_start(syms, fns[i] + 4));
    }
    uintptr_t lo, hi;
    CHECK(vmp_cfi_function_at(0x10, &lo, &hi) == -1); /* no object there */
    vmp_symbols_close(syms);
}

VMP_TEST(cfi_rules_of_a_whole_function_are_libdws_rows_and_miss_none)
{
    struct whole_tally libc = check_whole_functions("libc.so", "libc");
    CHECK(libc.bad == 0 && libc.rows_missing == 0);
    CHECK(libc.fdes > 1000 && libc.rows_checked > 10000); /* (not vacuous) */
    struct whole_tally own = check_whole_functions("", "test program");
    CHECK(own.bad == 0 && own.rows_missing == 0 && own.fdes > 100);
    struct whole_tally ldso = check_whole_functions("ld-linux", "ld.so");
    CHECK(ldso.bad == 0 && ldso.rows_missing == 0 && ldso.fdes > 100);
}

/* ---- crafted tables ------------------------------------------------------- */

/* A segment [lo, hi) between two unreadable pages: the header and its
 * one-entry table at lo, a CIE after it, the FDE ending exactly at hi. */
struct crafted {
    uint8_t *map;
    size_t page;
    vmp_cfi_object o;
    uintptr_t code;     /* the FDE's first address */
    uint32_t code_size; /* and how many it covers */
};

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
    return p + 4;
}

#define CODE_SIZE 0x100
#define CIE_IS_FDE INT64_MIN

/* Writes a CIE (augmentation aug, then its initial instructions) and an FDE
 * (its program) and fills c->o.  fde_len_extra lengthens the FDE's length
 * word beyond its bytes; cie_shift moves its CIE pointer.  Returns 0, or -1
 * when the header did not init. */
static int craft(struct crafted *c, const char *aug, const uint8_t *cie_prog, size_t cie_n,
                 const uint8_t *fde_prog, size_t fde_n, uint32_t fde_len_extra, int64_t cie_shift)
{
    c->page = (size_t)sysconf(_SC_PAGESIZE);
    size_t seg = 4 * c->page;
    c->map = mmap(NULL, seg + 2 * c->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (c->map == MAP_FAILED)
        return -1;
    uint8_t *lo = c->map + c->page, *hi = lo + seg;
    mprotect(c->map, c->page, PROT_NONE);
    mprotect(hi, c->page, PROT_NONE);
    c->code = (uintptr_t)lo + 0x200;
    c->code_size = CODE_SIZE;

    /* The CIE at lo + 64. */
    uint8_t *cie = lo + 64, *p = cie + 4;
    p = put_u32(p, 0);       /* CIE id */
    *p++ = 1;                /* version */
    strcpy((char *)p, aug);
    p += strlen(aug) + 1;
    *p++ = 1;                /* code alignment */
    *p++ = 0x78;             /* data alignment -8 */
    *p++ = 16;               /* return address register */
    if (aug[0] == 'z') {
        size_t n = 0;
        for (const char *a = aug + 1; *a; a++)
            n += *a == 'R' ? 1 : *a == 'S' ? 0 : 1;
        *p++ = (uint8_t)n;
        for (const char *a = aug + 1; *a; a++)
            if (*a != 'S')
                *p++ = 0x1b;
    }
    memcpy(p, cie_prog, cie_n);
    p += cie_n;
    put_u32(cie, (uint32_t)(p - cie - 4));

    /* The FDE, its last byte the segment's last. */
    size_t fde_size = 4 + 4 + 4 + 4 + 1 + fde_n;
    uint8_t *fde = hi - fde_size;
    p = put_u32(fde, (uint32_t)(fde_size - 4 + fde_len_extra));
    /* back to the CIE; CIE_IS_FDE: to the FDE itself */
    p = put_u32(p, cie_shift == CIE_IS_FDE ? 4 : (uint32_t)((int64_t)(p - cie) + cie_shift));
    p = put_u32(p, (uint32_t)(int32_t)((intptr_t)c->code - (intptr_t)p));
    p = put_u32(p, CODE_SIZE);
    *p++ = 0; /* augmentation data: none */
    memcpy(p, fde_prog, fde_n);

    /* The header and its table. */
    uint8_t *h = lo;
    h[0] = 1, h[1] = 0x1b, h[2] = 0x03, h[3] = 0x3b;
    put_u32(h + 4, (uint32_t)(int32_t)(cie - (h + 4)));
    put_u32(h + 8, 1);
    put_u32(h + 12, (uint32_t)(int32_t)((intptr_t)c->code - (intptr_t)h));
    put_u32(h + 16, (uint32_t)(int32_t)(fde - h));
    mprotect(lo, seg, PROT_READ); /* as the loader maps it */
    return vmp_cfi_object_init(&c->o, (uintptr_t)h, (uintptr_t)lo, (uintptr_t)hi);
}

static void uncraft(struct crafted *c)
{
    munmap(c->map, 6 * c->page);
}

/* The usual CIE: CFA = rsp + 8, return address at CFA - 8. */
static const uint8_t usual_cie[] = {0x0c, 7, 8, 0x90, 1};

/* The rule at code + at of a crafted FDE with the usual CIE. */
static int rule_of(const uint8_t *prog, size_t n, uint32_t at, vmp_unwind_rule *r)
{
    struct crafted c;
    if (craft(&c, "zR", usual_cie, sizeof usual_cie, prog, n, 0, 0) < 0)
        return -2;
    int rc = vmp_cfi_rule(&c.o, c.code + at, r);
    if (rc == 0) { /* ranges as offsets from the FDE's start */
        r->lo -= c.code;
        r->hi -= c.code;
    }
    uncraft(&c);
    return rc;
}

static int is_rule(const vmp_unwind_rule *r, int kind, int reg, int off, int rbp, uintptr_t lo, uintptr_t hi)
{
    return r->kind == kind && r->cfa_reg == reg && r->cfa_off == off && r->rbp_off == rbp && r->lo == lo &&
           r->hi == hi;
}

/* is_rule, with rbx's slot too. */
static int is_rule_rbx(const vmp_unwind_rule *r, int reg, int off, int rbx, uintptr_t lo, uintptr_t hi)
{
    return is_rule(r, VMP_RULE_STEP, reg, off, 0, lo, hi) && r->rbx_off == rbx;
}

VMP_TEST(cfi_follows_a_prologue_row_by_row)
{
    /* push rbp; mov rbp, rsp; ... : the shape of a frame-pointer function. */
    const uint8_t prog[] = {
        0x41,          /* advance_loc 1 */
        0x0e, 16,      /* def_cfa_offset 16 */
        0x86, 2,       /* offset rbp, CFA - 16 */
        0x43,          /* advance_loc 3 */
        0x0d, 6,       /* def_cfa_register rbp */
        0x02, 0x40,    /* advance_loc1 64 */
        0x03, 0x10, 0, /* advance_loc2 16 */
        0x04, 0x20, 0, 0, 0, /* advance_loc4 32 */
        0xc6,          /* restore rbp */
        0x0c, 7, 8,    /* def_cfa rsp + 8 */
    };
    vmp_unwind_rule r;
    REQUIRE(rule_of(prog, sizeof prog, 0, &r) == 0);
    CHECK(is_rule(&r, VMP_RULE_STEP, 7, 8, 0, 0, 1));
    REQUIRE(rule_of(prog, sizeof prog, 1, &r) == 0);
    CHECK(is_rule(&r, VMP_RULE_STEP, 7, 16, -16, 1, 4));
    REQUIRE(rule_of(prog, sizeof prog, 3, &r) == 0);
    CHECK(is_rule(&r, VMP_RULE_STEP, 7, 16, -16, 1, 4));
    REQUIRE(rule_of(prog, sizeof prog, 4, &r) == 0);
    CHECK(is_rule(&r, VMP_RULE_STEP, 6, 16, -16, 4, 68));
    REQUIRE(rule_of(prog, sizeof prog, 68, &r) == 0);
    CHECK(is_rule(&r, VMP_RULE_STEP, 6, 16, -16, 68, 84));
    REQUIRE(rule_of(prog, sizeof prog, 90, &r) == 0);
    CHECK(is_rule(&r, VMP_RULE_STEP, 6, 16, -16, 84, 116));
    /* After the last advance: restore and def_cfa hold to the FDE's end. */
    REQUIRE(rule_of(prog, sizeof prog, 116, &r) == 0);
    CHECK(is_rule(&r, VMP_RULE_STEP, 7, 8, 0, 116, CODE_SIZE));
    /* Outside the FDE: none. */
    CHECK(rule_of(prog, sizeof prog, CODE_SIZE, &r) == -1);
}

VMP_TEST(cfi_reads_each_register_rule_it_follows_and_refuses_the_others)
{
    vmp_unwind_rule r;
    /* offset_extended / offset_extended_sf / GNU_negative_offset_extended
     * on rbp; same_value leaves it unchanged. */
    const uint8_t ext[] = {0x0e, 24, 0x05, 6, 3};
    REQUIRE(rule_of(ext, sizeof ext, 0, &r) == 0);
    CHECK(is_rule(&r, VMP_RULE_STEP, 7, 24, -24, 0, CODE_SIZE));
    const uint8_t sf[] = {0x0e, 24, 0x11, 6, 2};
    REQUIRE(rule_of(sf, sizeof sf, 0, &r) == 0);
    CHECK(r.rbp_off == -16);
    /* (with a negative data alignment it saves rbp above the CFA: refused) */
    const uint8_t neg[] = {0x0e, 24, 0x2f, 6, 2};
    CHECK(rule_of(neg, sizeof neg, 0, &r) == -1);
    const uint8_t same[] = {0x86, 2, 0x08, 6};
    REQUIRE(rule_of(same, sizeof same, 0, &r) == 0);
    CHECK(r.rbp_off == 0);
    /* def_cfa_sf / def_cfa_offset_sf scale by the data alignment. */
    const uint8_t cfa_sf[] = {0x12, 6, 0x7e}; /* rbp + (-2 * -8) */
    REQUIRE(rule_of(cfa_sf, sizeof cfa_sf, 0, &r) == 0);
    CHECK(is_rule(&r, VMP_RULE_STEP, 6, 16, 0, 0, CODE_SIZE));
    const uint8_t off_sf[] = {0x13, 0x7d}; /* -3 * -8 */
    REQUIRE(rule_of(off_sf, sizeof off_sf, 0, &r) == 0);
    CHECK(r.cfa_off == 24);
    /* nop and GNU_args_size change nothing. */
    const uint8_t quiet[] = {0x00, 0x2e, 0x10, 0x00};
    REQUIRE(rule_of(quiet, sizeof quiet, 0, &r) == 0);
    CHECK(is_rule(&r, VMP_RULE_STEP, 7, 8, 0, 0, CODE_SIZE));
    /* An expression for a register the rule ignores is skipped whole. */
    const uint8_t rbx_expr[] = {0x10, 3, 2, 0x77, 0x08, 0x0e, 32};
    REQUIRE(rule_of(rbx_expr, sizeof rbx_expr, 0, &r) == 0);
    CHECK(r.cfa_off == 32);
    /* The return address undefined: the outermost frame. */
    const uint8_t undef_ra[] = {0x07, 16};
    REQUIRE(rule_of(undef_ra, sizeof undef_ra, 0, &r) == 0);
    CHECK(r.kind == VMP_RULE_END);
    /* restore_extended brings back the CIE's return-address rule. */
    const uint8_t back[] = {0x07, 16, 0x06, 16};
    REQUIRE(rule_of(back, sizeof back, 0, &r) == 0);
    CHECK(r.kind == VMP_RULE_STEP);

    /* Refused: rbp in a register, at CFA + 0 or above, by value or
     * expression, undefined; the return address elsewhere than CFA - 8;
     * a CFA on a register the walk does not track (r12), or one whose
     * number truncates to rbp or rbx. */
    const uint8_t *refused[] = {
        (const uint8_t[]){0x09, 6, 3},    (const uint8_t[]){0x86, 0},
        (const uint8_t[]){0x11, 6, 0x7f}, (const uint8_t[]){0x14, 6, 1},
        (const uint8_t[]){0x10, 6, 0},    (const uint8_t[]){0x07, 6},
        (const uint8_t[]){0x90, 2},       (const uint8_t[]){0x08, 16},
        (const uint8_t[]){0x0d, 12},      (const uint8_t[]){0x0c, 0x86, 0x02, 8},
        (const uint8_t[]){0x15, 16, 1},   (const uint8_t[]){0x16, 6, 0},
        (const uint8_t[]){0x0c, 0x83, 0x02, 8},
    };
    const size_t sizes[] = {3, 2, 3, 3, 3, 2, 2, 2, 2, 4, 3, 3, 4};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        int rc = rule_of(refused[i], sizes[i], 0, &r);
        CHECK(rc == -1);
        if (rc != -1)
            fprintf(stderr, "test_cfi: refused case %zu gave %d\n", i, rc);
    }
}

VMP_TEST(cfi_follows_the_lazy_binding_trampolines_cfa_on_rbx)
{
    /* _dl_runtime_resolve_xsavec's table as glibc 2.36's ld.so has it
     * (readelf -wf): entered from a PLT that pushed two words (CIE: CFA =
     * rsp + 24), it pushes rbx, copies rsp into rbx and realigns rsp, so
     * for most of its body CFA = rbx + 32, rbx's old value at CFA - 32. */
    const uint8_t cie[] = {0x0c, 7, 8, 0x90, 1, 0x0e, 24};
    const uint8_t prog[] = {
        0x41, 0x0e, 32, 0x83, 4, /* advance 1; def_cfa_offset 32; offset rbx, CFA - 32 */
        0x43, 0x0d, 3,           /* advance 3; def_cfa_register rbx */
        0x02, 186, 0x0d, 7,      /* advance_loc1 186; def_cfa_register rsp */
        0x44, 0xc3,              /* advance 4; restore rbx */
        0x44, 0x0e, 8,           /* advance 4; def_cfa_offset 8 */
    };
    struct crafted c;
    REQUIRE(craft(&c, "zR", cie, sizeof cie, prog, sizeof prog, 0, 0) == 0);
    struct {
        uint32_t at;
        int reg, off, rbx;
        uint32_t lo, hi;
    } rows[] = {
        {0, 7, 24, 0, 0, 1},       {1, 7, 32, -32, 1, 4},       {4, 3, 32, -32, 4, 190},
        {189, 3, 32, -32, 4, 190}, {190, 7, 32, -32, 190, 194}, {194, 7, 32, 0, 194, 198},
        {198, 7, 8, 0, 198, CODE_SIZE},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        vmp_unwind_rule r;
        REQUIRE(vmp_cfi_rule(&c.o, c.code + rows[i].at, &r) == 0);
        int ok = is_rule_rbx(&r, rows[i].reg, rows[i].off, rows[i].rbx, c.code + rows[i].lo, c.code + rows[i].hi);
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "test_cfi: trampoline +%u: reg %d off %d rbx %d [+%ld, +%ld)\n", rows[i].at, r.cfa_reg,
                    r.cfa_off, r.rbx_off, (long)(r.lo - c.code), (long)(r.hi - c.code));
    }
    /* The whole function, as the writer learns it: one rule per row. */
    vmp_unwind_rule all[16];
    REQUIRE(vmp_cfi_rules(&c.o, c.code + 100, all, 16) == 6);
    CHECK(is_rule_rbx(&all[2], 3, 32, -32, c.code + 4, c.code + 190));
    uncraft(&c);

    /* Where rbx's old value cannot be told (in a register, above the CFA,
     * farther than a byte of words below it, an expression), the rule
     * still steps and says rbx is lost. */
    vmp_unwind_rule r = {0};
    const uint8_t *lost[] = {
        (const uint8_t[]){0x09, 3, 5},    (const uint8_t[]){0x2f, 3, 1},
        (const uint8_t[]){0x05, 3, 0x80, 0x01}, (const uint8_t[]){0x11, 3, 0x7f},
        (const uint8_t[]){0x10, 3, 1, 0x30},
    };
    const size_t lost_sizes[] = {3, 3, 4, 3, 4};
    for (size_t i = 0; i < sizeof lost_sizes / sizeof *lost_sizes; i++) {
        int rc = rule_of(lost[i], lost_sizes[i], 0, &r);
        CHECK(rc == 0 && r.kind == VMP_RULE_STEP && r.rbx_off == VMP_RBX_LOST);
        if (!(rc == 0 && r.rbx_off == VMP_RBX_LOST))
            fprintf(stderr, "test_cfi: lost case %zu gave %d, rbx %d\n", i, rc, r.rbx_off);
    }
    /* Undefined is unchanged, as libdw's path must read it (its defaults
     * leave rbx undefined in every row that does not mention it). */
    const uint8_t undef[] = {0x83, 2, 0x07, 3};
    REQUIRE(rule_of(undef, sizeof undef, 0, &r) == 0);
    CHECK(r.rbx_off == 0);
    /* The farthest slot a rule keeps: 127 words below the CFA. */
    const uint8_t far[] = {0x83, 127};
    REQUIRE(rule_of(far, sizeof far, 0, &r) == 0);
    CHECK(r.rbx_off == -127 * 8);
}

VMP_TEST(cfi_restore_state_brings_back_the_whole_row)
{
    const uint8_t prog[] = {
        0x0e, 16, 0x86, 2, /* CFA rsp + 16, rbp at CFA - 16 */
        0x0a,              /* remember */
        0x41, 0x0e, 8, 0xc6, /* an epilogue: CFA rsp + 8, rbp restored */
        0x41, 0x0b,        /* restore: back to rsp + 16, rbp saved */
    };
    vmp_unwind_rule r;
    REQUIRE(rule_of(prog, sizeof prog, 1, &r) == 0);
    CHECK(is_rule(&r, VMP_RULE_STEP, 7, 8, 0, 1, 2));
    REQUIRE(rule_of(prog, sizeof prog, 2, &r) == 0);
    CHECK(is_rule(&r, VMP_RULE_STEP, 7, 16, -16, 2, CODE_SIZE));

    /* Nesting up to the stack's depth is followed, one more is refused. */
    uint8_t deep[2 * VMP_CFI_STATE_STACK + 4];
    size_t n = 0;
    for (int i = 0; i < VMP_CFI_STATE_STACK; i++)
        deep[n++] = 0x0a;
    for (int i = 0; i < VMP_CFI_STATE_STACK; i++)
        deep[n++] = 0x0b;
    REQUIRE(rule_of(deep, n, 0, &r) == 0);
    uint8_t deeper[2 * VMP_CFI_STATE_STACK + 2];
    n = 0;
    for (int i = 0; i <= VMP_CFI_STATE_STACK; i++)
        deeper[n++] = 0x0a;
    CHECK(rule_of(deeper, n, 0, &r) == -1);
    /* restore_state with nothing remembered. */
    const uint8_t lone[] = {0x0b};
    CHECK(rule_of(lone, sizeof lone, 0, &r) == -1);
}

VMP_TEST(cfi_evaluates_the_plt_expression_at_the_pc)
{
    /* The PLT's "rsp + 8, plus 8 once past the push at byte 11 of each
     * 16-byte stub", as linkers write it. */
    const uint8_t prog[] = {0x0f, 11, 0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22};
    struct crafted c;
    REQUIRE(craft(&c, "zR", usual_cie, sizeof usual_cie, prog, sizeof prog, 0, 0) == 0);
    for (uint32_t at = 0; at < 48; at++) {
        vmp_unwind_rule r;
        uintptr_t pc = c.code + at;
        REQUIRE(vmp_cfi_rule(&c.o, pc, &r) == 0);
        int past = (pc & 15) >= 11;
        CHECK(r.kind == VMP_RULE_STEP && r.cfa_reg == 7 && r.cfa_off == (past ? 16 : 8));
        /* Its range: the part of pc's stub with the same offset. */
        CHECK(r.lo <= pc && pc < r.hi && ((r.lo ^ (r.hi - 1)) & ~(uintptr_t)15) == 0);
        CHECK(((r.lo & 15) >= 11) == past && (((r.hi - 1) & 15) >= 11) == past);
    }
    uncraft(&c);
    /* An expression that does not move with rsp, or reads memory: refused. */
    vmp_unwind_rule r;
    const uint8_t fixed[] = {0x0f, 2, 0x80, 0};
    CHECK(rule_of(fixed, sizeof fixed, 0, &r) == -1);
    const uint8_t deref[] = {0x0f, 3, 0x77, 8, 0x06};
    CHECK(rule_of(deref, sizeof deref, 0, &r) == -1);
    /* def_cfa_offset on an expression CFA is not a rule. */
    const uint8_t mixed[] = {0x0f, 2, 0x77, 8, 0x0e, 16};
    CHECK(rule_of(mixed, sizeof mixed, 0, &r) == -1);
}

VMP_TEST(cfi_refuses_malformed_tables_without_reading_outside_the_segment)
{
    vmp_unwind_rule r;
    struct crafted c;
    const uint8_t prog[] = {0x0e, 16};
    /* The FDE's length runs past the segment's end. */
    REQUIRE(craft(&c, "zR", usual_cie, sizeof usual_cie, prog, sizeof prog, 64, 0) == 0);
    CHECK(vmp_cfi_rule(&c.o, c.code, &r) == -1);
    uncraft(&c);
    /* An FDE whose program's last operand is cut by its own end. */
    const uint8_t cut[] = {0x0e, 0x80};
    REQUIRE(craft(&c, "zR", usual_cie, sizeof usual_cie, cut, sizeof cut, 0, 0) == 0);
    CHECK(vmp_cfi_rule(&c.o, c.code, &r) == -1);
    uncraft(&c);
    const uint8_t cut_loc[] = {0x04, 1, 2};
    REQUIRE(craft(&c, "zR", usual_cie, sizeof usual_cie, cut_loc, sizeof cut_loc, 0, 0) == 0);
    CHECK(vmp_cfi_rule(&c.o, c.code, &r) == -1);
    uncraft(&c);
    /* The CIE pointer leaves the segment (below it, and past it). */
    REQUIRE(craft(&c, "zR", usual_cie, sizeof usual_cie, prog, sizeof prog, 0, 4 * 4096 + 64) == 0);
    CHECK(vmp_cfi_rule(&c.o, c.code, &r) == -1);
    uncraft(&c);
    REQUIRE(craft(&c, "zR", usual_cie, sizeof usual_cie, prog, sizeof prog, 0, -(int64_t)4 * 4096) == 0);
    CHECK(vmp_cfi_rule(&c.o, c.code, &r) == -1);
    uncraft(&c);
    /* ... or lands on something that is not a CIE (the FDE itself). */
    REQUIRE(craft(&c, "zR", usual_cie, sizeof usual_cie, prog, sizeof prog, 0, CIE_IS_FDE) == 0);
    CHECK(vmp_cfi_rule(&c.o, c.code, &r) == -1);
    uncraft(&c);
    /* Augmentations: a signal frame, unknown letters, none at all. */
    const char *augs[] = {"zRS", "zRX", "", "eh"};
    for (size_t i = 0; i < 4; i++) {
        REQUIRE(craft(&c, augs[i], usual_cie, sizeof usual_cie, prog, sizeof prog, 0, 0) == 0);
        CHECK(vmp_cfi_rule(&c.o, c.code, &r) == -1);
        uncraft(&c);
    }
    /* An unknown opcode, and set_loc (an absolute address: not followed). */
    const uint8_t unknown[] = {0x3c};
    CHECK(rule_of(unknown, sizeof unknown, 0, &r) == -1);
    const uint8_t set_loc[] = {0x01, 0, 0, 0, 0};
    CHECK(rule_of(set_loc, sizeof set_loc, 0, &r) == -1);
    /* A uleb128 longer than any 64-bit value. */
    uint8_t long_uleb[16] = {0x0e};
    memset(long_uleb + 1, 0x80, 14);
    long_uleb[15] = 1;
    CHECK(rule_of(long_uleb, sizeof long_uleb, 0, &r) == -1);
    /* A CIE whose instructions advance, or restore. */
    const uint8_t cie_adv[] = {0x0c, 7, 8, 0x90, 1, 0x41};
    REQUIRE(craft(&c, "zR", cie_adv, sizeof cie_adv, prog, sizeof prog, 0, 0) == 0);
    CHECK(vmp_cfi_rule(&c.o, c.code, &r) == -1);
    uncraft(&c);
}

VMP_TEST(cfi_stops_a_program_longer_than_the_operation_cap)
{
    vmp_unwind_rule r;
    /* The usual CIE runs 2 operations: an FDE of VMP_CFI_MAX_OPS - 2 is
     * followed (nops, then def_cfa_offset 24), one more is not. */
    static uint8_t prog[VMP_CFI_MAX_OPS + 8];
    size_t nops = VMP_CFI_MAX_OPS - 3;
    memset(prog, 0, sizeof prog);
    prog[nops] = 0x0e, prog[nops + 1] = 24;
    REQUIRE(rule_of(prog, nops + 2, 0, &r) == 0);
    CHECK(r.cfa_off == 24);
    memset(prog, 0, sizeof prog);
    CHECK(rule_of(prog, VMP_CFI_MAX_OPS - 2, 0, &r) == 0);
    CHECK(rule_of(prog, VMP_CFI_MAX_OPS - 1, 0, &r) == -1);
    /* Advances of 0 loop at one address: still capped. */
    memset(prog, 0x40, sizeof prog);
    CHECK(rule_of(prog, sizeof prog, 0, &r) == -1);
}

VMP_TEST(cfi_headers_it_cannot_read_mean_no_table)
{
    struct crafted c;
    const uint8_t prog[] = {0x0e, 16};
    REQUIRE(craft(&c, "zR", usual_cie, sizeof usual_cie, prog, sizeof prog, 0, 0) == 0);
    vmp_cfi_object o;
    uint8_t *h = (uint8_t *)c.o.hdr;
    /* A table that would run past the segment's end. */
    CHECK(vmp_cfi_object_init(&o, c.o.hdr, c.o.lo, c.o.hdr + 16) == -1 && o.hdr == 0);
    /* The header outside the segment. */
    CHECK(vmp_cfi_object_init(&o, c.o.hdr, c.o.hdr + 1, c.o.hi) == -1);
    mprotect(c.map + c.page, c.page, PROT_READ | PROT_WRITE);
    h[0] = 2; /* another version */
    CHECK(vmp_cfi_object_init(&o, c.o.hdr, c.o.lo, c.o.hi) == -1);
    h[0] = 1, h[3] = 0x03; /* another table encoding */
    CHECK(vmp_cfi_object_init(&o, c.o.hdr, c.o.lo, c.o.hi) == -1);
    h[3] = 0x3b;
    put_u32(h + 8, 0x7fffffff); /* a count no segment holds */
    CHECK(vmp_cfi_object_init(&o, c.o.hdr, c.o.lo, c.o.hi) == -1);
    /* An object without a table: every lookup says so. */
    vmp_unwind_rule r;
    CHECK(vmp_cfi_rule(&o, c.code, &r) == -1);
    /* A table entry pointing outside the segment. */
    put_u32(h + 8, 1);
    put_u32(h + 16, 0x40000000);
    REQUIRE(vmp_cfi_object_init(&o, c.o.hdr, c.o.lo, c.o.hi) == 0);
    CHECK(vmp_cfi_rule(&o, c.code, &r) == -1);
    /* Below the first entry. */
    CHECK(vmp_cfi_rule(&c.o, c.code - 1, &r) == -1);
    uncraft(&c);
}

VMP_TEST(cfi_rules_equal_libdws_on_every_row_of_the_vdso)
{
    /* clock_gettime and friends run there (time.perf_counter): the kernel's
     * image has its own .eh_frame_hdr, and dl_iterate_phdr lists it. */
    struct found f = {"linux-vdso", {0}, 0, 0};
    dl_iterate_phdr(find_object, &f);
    if (!f.ok) {
        fprintf(stderr, "test_cfi: no vDSO with unwind tables here: not compared\n");
        return;
    }
    check_object("linux-vdso", "vDSO", 10);
    /* The walk's code table has its code, so a sample taken there is walked
     * through it. */
    REQUIRE(vmp_native_setup() == 0);
    const int32_t *table = (const int32_t *)f.cfi.table;
    CHECK(vmp_native_is_known_code(f.cfi.hdr + (uintptr_t)(intptr_t)table[0]));
    vmp_native_teardown();
}
