/*
 * vmp_trampoline.c - CPython's perf trampolines for the native walk
 * (contract in the header).
 *
 * The walk needs, at a pc in a copy, the rule there: where the CFA is, and
 * where the caller's rbp is kept.  Rather than assume one CPython's
 * assembly, the rules are derived from the process's own template by
 * following its few instructions: how far each moves rsp, where rbp is
 * pushed and popped.  A template with any other instruction is refused
 * (no walk through it, as before), so a future CPython that changes it
 * costs cut samples, never wrong stacks.
 */
#define _GNU_SOURCE
#include "vmp_span.h"
#include "vmp_trampoline.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The template, decoded: for each instruction its offset and the rule that
 * holds before it runs (CFA = rsp + cfa_off; the caller's rbp at CFA +
 * rbp_off, 0: still in rbp). */
static struct {
    uintptr_t original;
    unsigned len, n, call, call_end; /* call: the call's index; call_end: the offset after it */
    unsigned char code[VMP_TRAMPOLINE_MAX_BYTES];
    uint8_t at[VMP_TRAMPOLINE_MAX_INSNS];
    int32_t cfa_off[VMP_TRAMPOLINE_MAX_INSNS];
    int16_t rbp_off[VMP_TRAMPOLINE_MAX_INSNS];
} tpl;
static int have_tpl; /* read with acquire in handlers */

struct span {
    uintptr_t lo, hi; /* (first: vmp_span_find reads them) */
};
/* The anonymous readable executable mappings, sorted. */
struct mappings {
    struct mappings *retired; /* the table this one replaced */
    size_t n;
    struct span s[];
};
static struct mappings *mappings; /* read with acquire in handlers */

int vmp_trampoline_set_template(const unsigned char *code, size_t len, uintptr_t original)
{
    __atomic_store_n(&have_tpl, 0, __ATOMIC_RELEASE);
    if (!code || len == 0 || len > VMP_TRAMPOLINE_MAX_BYTES)
        return -1;
    memset(&tpl, 0, sizeof tpl);
    int32_t depth = 8; /* the return address */
    int16_t rbp = 0;
    int call = -1, returned = 0;
    unsigned off = 0, n = 0;
    while (off < len && !returned) {
        if (n == VMP_TRAMPOLINE_MAX_INSNS)
            return -1;
        const unsigned char *b = code + off;
        unsigned left = (unsigned)len - off;
        tpl.at[n] = (uint8_t)off;
        tpl.cfa_off[n] = depth;
        tpl.rbp_off[n] = rbp;
        if (left >= 4 && b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa) {
            off += 4; /* endbr64 */
        } else if (b[0] == 0x55) { /* push %rbp */
            depth += 8;
            if (!rbp)
                rbp = (int16_t)-depth;
            off += 1;
        } else if (b[0] == 0x5d) { /* pop %rbp: must take back the caller's */
            if (rbp != -depth)
                return -1;
            depth -= 8;
            rbp = 0;
            off += 1;
        } else if (left >= 3 && b[0] == 0x48 && ((b[1] == 0x89 && b[2] == 0xe5) || (b[1] == 0x8b && b[2] == 0xec))) {
            off += 3; /* mov %rsp,%rbp: the rules stay on rsp, which says the same */
        } else if (left >= 4 && b[0] == 0x48 && b[1] == 0x83 && (b[2] == 0xec || b[2] == 0xc4) && b[3] < 0x80 &&
                   b[3] % 8 == 0) {
            depth += b[2] == 0xec ? b[3] : -b[3]; /* sub/add $imm8,%rsp */
            if (depth < 8)
                return -1;
            off += 4;
        } else if ((left >= 2 && b[0] == 0xff && (b[1] & 0xf8) == 0xd0) ||
                   (left >= 3 && b[0] == 0x41 && b[1] == 0xff && (b[2] & 0xf8) == 0xd0)) {
            if (call >= 0)
                return -1; /* one call: its return address says where a copy starts */
            call = (int)n;
            off += b[0] == 0x41 ? 3 : 2; /* call *%reg */
            tpl.call_end = off;
        } else if (b[0] == 0xc3) { /* ret */
            if (depth != 8 || rbp)
                return -1;
            off += 1;
            returned = 1;
        } else {
            return -1;
        }
        n++;
    }
    if (!returned || call < 0)
        return -1;
    /* (bytes after the ret, if any, are never run: compared, not decoded) */
    memcpy(tpl.code, code, len);
    tpl.len = (unsigned)len;
    tpl.n = n;
    tpl.call = (unsigned)call;
    tpl.original = original;
    __atomic_store_n(&have_tpl, 1, __ATOMIC_RELEASE);
    return 0;
}

int vmp_trampoline_find_template(void)
{
    /* Exported by libpython (or the executable) on 3.12+ built with perf
     * support; the assembly gives the start no size, so its end is the
     * next symbol. */
    const unsigned char *start = dlsym(RTLD_DEFAULT, "_Py_trampoline_func_start");
    const unsigned char *end = dlsym(RTLD_DEFAULT, "_Py_trampoline_func_end");
    if (!start || !end || end <= start)
        return -1;
    return vmp_trampoline_set_template(start, (size_t)(end - start), (uintptr_t)start);
}

int vmp_trampoline_have_template(void)
{
    return __atomic_load_n(&have_tpl, __ATOMIC_ACQUIRE);
}

/* ---- where copies may be ------------------------------------------------- */

static int span_cmp(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Whether a maps line's name (after the inode) is none, or a name given to
 * anonymous memory (prctl PR_SET_VMA_ANON_NAME: "[anon:...]"). */
static int anonymous(const char *name)
{
    while (*name == ' ' || *name == '\t')
        name++;
    return *name == '\0' || *name == '\n' || strncmp(name, "[anon:", 6) == 0;
}

int vmp_trampoline_scan(void)
{
    if (!vmp_trampoline_have_template())
        return 0;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return 0;
    size_t cap = 16, n = 0;
    struct mappings *t = malloc(sizeof *t + cap * sizeof(struct span));
    char *line = NULL;
    size_t linecap = 0;
    while (t && getline(&line, &linecap, f) > 0) {
        unsigned long lo, hi, inode;
        char perms[8];
        int name_at = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %lu %n", &lo, &hi, perms, &inode, &name_at) < 4 || name_at == 0)
            continue;
        if (perms[0] != 'r' || perms[2] != 'x' || inode != 0 || !anonymous(line + name_at))
            continue;
        if (n == cap) {
            struct mappings *more = realloc(t, sizeof *t + 2 * cap * sizeof(struct span));
            if (!more) {
                free(t);
                t = NULL;
                break;
            }
            t = more;
            cap *= 2;
        }
        t->s[n++] = (struct span){lo, hi};
    }
    free(line);
    fclose(f);
    if (!t)
        return 0;
    qsort(t->s, n, sizeof *t->s, span_cmp); /* (the kernel lists them sorted already) */
    t->n = n;
    const struct mappings *old = __atomic_load_n(&mappings, __ATOMIC_ACQUIRE);
    if (old ? old->n == n && memcmp(old->s, t->s, n * sizeof *t->s) == 0 : n == 0) {
        free(t);
        return 0;
    }
    t->retired = (struct mappings *)old;
    __atomic_store_n(&mappings, t, __ATOMIC_RELEASE);
    return 1;
}

/* The published mapping holding pc, or NULL. */
static const struct span *mapping_of(uintptr_t pc)
{
    const struct mappings *t = __atomic_load_n(&mappings, __ATOMIC_ACQUIRE);
    long k = t ? vmp_span_find(t->s, t->n, sizeof t->s[0], pc) : -1;
    return k < 0 ? NULL : &t->s[k];
}

int vmp_trampoline_in_mapping(uintptr_t pc)
{
    return mapping_of(pc) != NULL;
}

/* Whether a whole copy of the template starts at s, inside m.  (A byte loop:
 * no libc in the handler.) */
static int copy_at(const struct span *m, uintptr_t s)
{
    if (s < m->lo || s > m->hi || m->hi - s < tpl.len)
        return 0;
    const volatile unsigned char *p = (const volatile unsigned char *)s;
    for (unsigned i = 0; i < tpl.len; i++)
        if (p[i] != tpl.code[i])
            return 0;
    return 1;
}

static void rule_of(unsigned i, vmp_unwind_rule *rule)
{
    *rule = (vmp_unwind_rule){.kind = VMP_RULE_STEP, .cfa_reg = VMP_REG_RSP, .cfa_off = tpl.cfa_off[i],
                              .rbp_off = tpl.rbp_off[i]};
}

int vmp_trampoline_rule(uintptr_t pc, int interrupted, vmp_unwind_rule *rule, uintptr_t *as)
{
    if (!__atomic_load_n(&have_tpl, __ATOMIC_ACQUIRE))
        return 0;
    const struct span *m = mapping_of(pc);
    if (!m)
        return 0;
    if (!interrupted) {
        /* A return address: just after the call (pc is one byte before). */
        if (!copy_at(m, pc + 1 - tpl.call_end))
            return 0;
        rule_of(tpl.call, rule);
        *as = tpl.original;
        return 1;
    }
    for (unsigned i = 0; i < tpl.n; i++)
        if (copy_at(m, pc - tpl.at[i])) {
            rule_of(i, rule);
            *as = tpl.original;
            return 1;
        }
    return 0;
}

void vmp_trampoline_forget(void)
{
    __atomic_store_n(&have_tpl, 0, __ATOMIC_RELEASE);
    struct mappings *t = __atomic_exchange_n(&mappings, NULL, __ATOMIC_ACQ_REL);
    while (t) {
        struct mappings *older = t->retired;
        free(t);
        t = older;
    }
}

void vmp_trampoline_after_fork_child(void)
{
    have_tpl = 0;
    mappings = NULL;
}
