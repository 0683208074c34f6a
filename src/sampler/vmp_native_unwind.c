/*
 * vmp_native_unwind.c - walking the interrupted C stack with learned unwind
 * rules, and splicing it with the Python frames.
 *
 * The walk in the handler never calls libunwind (or anything else that
 * locks): libunwind's table lookup goes through dl_iterate_phdr, which takes
 * the dynamic loader's lock, and its cache takes a lock of its own, so two
 * sampled threads (or one sampled inside dlopen) could deadlock.  Instead the
 * handler steps with rules it reads from a fixed table: for x86-64 code
 * nearly every frame's rule is "CFA = rsp or rbp + offset, return address at
 * CFA - 8, caller's rbp saved at CFA + k or unchanged", a few words per pc.
 * rbx is tracked too (from the interrupted context, then reloaded from
 * each frame's save slot), for the frames whose CFA is on it: ld.so's
 * lazy-binding trampolines (_dl_runtime_resolve_*) realign rsp and keep the
 * frame in rbx (CFA = rbx + 32), and a program passes there on its first
 * call of each function it binds lazily (per object's PLT slot).
 * For a pc the table does not have yet, the walk reads the rule from the
 * object's own mapped .eh_frame (vmp_cfi: the same decisions, no lock, no
 * allocation) and goes on, so no sample waits for learning; it notes the pc
 * in a small lock-free set, and the writer thread takes the set, reads the
 * rules of each pc's function from the same tables (vmp_cfi_rules; libdw
 * through vmp_symbols only for a pc they do not cover) and publishes them,
 * so later samples find them with one search.  Only a
 * pc neither could give a rule for ends the walk (keeping that pc), and only
 * such a pc wakes the writer at once.  Enabling teaches the enabling
 * thread's own stack the same way before sampling.
 *
 * Tables the handlers read are replaced, never modified in place (the rule
 * table only gains entries, each published after it is written); old ones
 * live until teardown, so a handler reading one is never disturbed.  The
 * executable-range table is what ends a walk at JIT code or a wild return
 * address; copies of CPython's perf trampoline (-X perf), which are JIT code
 * of a kind, are walked through with rules of their own (vmp_trampoline.h).
 */
#define _GNU_SOURCE
#include "vmp_span.h"
#include "vmp_native_unwind.h"

#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "vmp_cfi.h"
#include "vmp_symbols.h"
#include "vmp_trampoline.h"

struct range {
    uintptr_t lo, hi; /* (first: vmp_span_find reads them) */
};

/* The executable segments of the loaded objects, sorted, and for each the
 * unwind tables of its object (vmp_cfi), which a walk reads for a pc the
 * learned rules do not cover yet.  Kept in two arrays so that the search
 * every frame makes reads ranges only. */
struct code_table {
    struct code_table *retired; /* the table this one replaced */
    unsigned long long adds, subs;
    size_t n;
    int touched;                /* its objects' tables were paged in (the writer's) */
    vmp_cfi_object *cfi;        /* cfi[i]: the tables of r[i]'s object */
    struct range r[];
};

static struct code_table *current_table; /* read with acquire in handlers */
/* Tables a stop forgot while a walk may still read them (vmp_native_abandon),
 * freed by the next teardown. */
static struct code_table *abandoned_tables;

/* Learned rules: a sorted array of address ranges, each with the rule that
 * holds there (one row of an object's call-frame table), read by handlers
 * with a binary search.  The writer (or enable, before sampling) adds ranges
 * by publishing a new array; the replaced one is freed once no walk is
 * running (`walkers`, counted by the handlers), else at teardown.  When a
 * library is unloaded everything learned is dropped: another may come to
 * its addresses.  Otherwise what is learned outlives the run: teardown
 * keeps it with the loader's unload count (`rules_subs`), and the next
 * setup keeps it when no object was unloaded meanwhile, so a program that
 * profiles again and again does not start each run cold. */
struct rule_range {
    uintptr_t lo, hi; /* (first: vmp_span_find reads them) */
    uint64_t rule;
};
struct rule_table {
    struct rule_table *retired; /* replaced tables not yet freed */
    size_t n;
    struct rule_range r[];
};
static struct rule_table *rules; /* read with acquire in handlers */
static uint64_t rules_generation; /* publications of `rules` (bumped after each, release) */
static struct rule_table *retired_rules;
static unsigned long long rules_subs; /* the loader's unloads when teardown kept `rules` */
static unsigned walkers;
#define MAX_RULES (1u << 18)
static int ready;

/* Program counters a walk found no learned rule for (whether or not it got
 * past them through the object's tables), for the writer to learn: handlers
 * add with compare-and-swap, the writer takes them with an
 * exchange.  Full means a later sample notes the pc again. */
#define UNKNOWN_SLOTS 256
#define UNKNOWN_PROBES 8
static uint64_t unknown_pcs[UNKNOWN_SLOTS];

/* A walk that meets a pc outside every object of the code table rings the
 * writer (on_unknown) to look for new objects, when this is ARMED: it then
 * holds the code table that walk used, and other walks meeting such pcs do
 * not ring until the writer re-arms it (vmp_native_refresh_answered): JIT
 * code, met by every sample of a thread running it, would otherwise wake
 * the writer once per sample.  QUIET: the writer looked and found nothing
 * new, and re-arms later.  The table tells an ask the current table
 * answers (the writer had built it before it saw the ask: not a sign of
 * JIT code, so no quiet time) from one it does not. */
#define REFRESH_ARMED ((uintptr_t)0)
#define REFRESH_QUIET ((uintptr_t)1)
static uintptr_t refresh_asked;
/* A pc that asked (the last walk to find refresh_asked ARMED; a hint, not
 * exact under races): the writer does not read the process's maps again
 * for a pc in a mapping it already knows holds no trampoline there. */
static uintptr_t asked_pc;

void (*vmp_native_test_hook)(void);

static struct range eval_ranges[VMP_NATIVE_MAX_EVAL_RANGES];
static int eval_count;

static int publish_rules(const struct rule_range *add, size_t n, int fresh);

/* ---- the table of executable segments ---------------------------------- */

/* Two passes over the loaded objects: the first counts, then the table is
 * allocated, the second fills it.  dl_iterate_phdr holds the loader's lock
 * while it calls back, and nothing allocates under it: a thread stopped in
 * malloc while another waits for the loader would make that a deadlock. */
struct segment {
    struct range r;
    vmp_cfi_object cfi;
};
struct collect {
    struct segment *s; /* NULL in the counting pass */
    size_t n, cap;
    unsigned long long adds, subs;
};

static int collect_segments(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct collect *c = arg;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        c->adds = info->dlpi_adds;
        c->subs = info->dlpi_subs;
    }
    vmp_cfi_object cfi; /* cfi.hdr 0 when the object has no tables vmp_cfi reads */
    if (c->s)
        vmp_cfi_object_from_phdrs(&cfi, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || ph->p_memsz == 0)
            continue;
        if (c->s && c->n < c->cap) {
            c->s[c->n].r.lo = info->dlpi_addr + ph->p_vaddr;
            c->s[c->n].r.hi = c->s[c->n].r.lo + ph->p_memsz;
            c->s[c->n].cfi = cfi;
        }
        c->n++;
    }
    return 0;
}

static int segment_cmp(const void *a, const void *b)
{
    const struct segment *x = a, *y = b;
    return x->r.lo < y->r.lo ? -1 : x->r.lo > y->r.lo;
}

struct loader_counters {
    unsigned long long adds, subs;
};

static int first_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct loader_counters *k = arg;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        k->adds = info->dlpi_adds;
        k->subs = info->dlpi_subs;
    }
    return 1; /* the counters are the same in every callback: one is enough */
}

static int build_table(void)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        struct collect c = {0};
        dl_iterate_phdr(collect_segments, &c);
        size_t cap = c.n + 16; /* room for objects loaded in between */
        struct segment *found = malloc(cap * sizeof *found);
        struct code_table *t = malloc(sizeof *t + cap * (sizeof(struct range) + sizeof(vmp_cfi_object)));
        if (!found || !t) {
            free(found);
            free(t);
            return -1;
        }
        c = (struct collect){found, 0, cap, 0, 0};
        dl_iterate_phdr(collect_segments, &c);
        if (c.n > cap) {
            free(found); /* more objects than counted: again */
            free(t);
            continue;
        }
        qsort(found, c.n, sizeof *found, segment_cmp);
        t->cfi = (vmp_cfi_object *)(t->r + cap);
        for (size_t i = 0; i < c.n; i++) {
            t->r[i] = found[i].r;
            t->cfi[i] = found[i].cfi;
        }
        free(found);
        t->adds = c.adds;
        t->subs = c.subs;
        t->n = c.n;
        t->touched = 0;
        t->retired = current_table;
        __atomic_store_n(&current_table, t, __ATOMIC_RELEASE);
        return 0;
    }
    return -1;
}

/* The index of the segment holding pc, or -1. */
static long in_ranges(const struct range *r, size_t n, uintptr_t pc)
{
    return vmp_span_find(r, n, sizeof r[0], pc);
}

int vmp_native_is_known_code(uintptr_t pc)
{
    const struct code_table *t = __atomic_load_n(&current_table, __ATOMIC_ACQUIRE);
    return t && in_ranges(t->r, t->n, pc) >= 0;
}

void vmp_native_touch_unwind_tables(void)
{
    struct code_table *t = __atomic_load_n(&current_table, __ATOMIC_ACQUIRE);
    if (!t || t->touched)
        return;
    /* Objects usually have one executable segment each; a neighbour with
     * the same tables is not read twice. */
    for (size_t i = 0; i < t->n; i++)
        if (i == 0 || t->cfi[i].hdr != t->cfi[i - 1].hdr)
            vmp_cfi_touch(&t->cfi[i]);
    t->touched = 1;
}

int vmp_native_refresh(void)
{
    const struct code_table *t = __atomic_load_n(&current_table, __ATOMIC_ACQUIRE);
    struct loader_counters k = {0, 0};
    dl_iterate_phdr(first_object, &k);
    if (t && t->adds == k.adds && t->subs == k.subs)
        return 0;
    /* An object was unloaded: what is learned about its addresses may lie
     * about whatever comes there next.  Learn afresh. */
    if (t && t->subs != k.subs)
        publish_rules(NULL, 0, 1);
    if (build_table() < 0)
        return 0;
    /* A walk cut at a pc outside the old table may go further now: a
     * thread whose probes wait for the rules to move (vmp_delivery.h, "Cut
     * samples") is probed again. */
    __atomic_add_fetch(&rules_generation, 1, __ATOMIC_RELEASE);
    return 1;
}

int vmp_native_refresh_asked(void)
{
    uintptr_t asked = __atomic_load_n(&refresh_asked, __ATOMIC_ACQUIRE);
    if (asked == REFRESH_ARMED)
        return 0;
    if (asked == REFRESH_QUIET)
        return 2;
    return asked == (uintptr_t)__atomic_load_n(&current_table, __ATOMIC_ACQUIRE) ? 1 : 3;
}

void vmp_native_refresh_answered(int rearm)
{
    __atomic_store_n(&refresh_asked, rearm ? REFRESH_ARMED : REFRESH_QUIET, __ATOMIC_RELEASE);
}

int vmp_native_look_for_trampolines(void)
{
    if (!vmp_trampoline_have_template())
        return 0;
    /* An ask from inside a mapping already known: a pc there that is no
     * copy (other JIT code) is no reason to read the maps again. */
    uintptr_t pc = __atomic_load_n(&asked_pc, __ATOMIC_RELAXED);
    if (pc && vmp_trampoline_in_mapping(pc))
        return 0;
    if (!vmp_trampoline_scan())
        return 0;
    /* A walk cut at a copy in a new arena goes further now: probes held
     * for it go again (vmp_delivery.h, "Cut samples"). */
    __atomic_add_fetch(&rules_generation, 1, __ATOMIC_RELEASE);
    return 1;
}

/* ---- the writer's rules from the objects' own tables -------------------- */

struct from_tables {
    const uintptr_t *pcs;
    int n, left;
    vmp_unwind_rule *rules;
    int k, max;
    unsigned char *done;
};

/* Called with the loader's lock held (dl_iterate_phdr's): each object it
 * lists stays mapped until the callback returns (dlclose unmaps an object
 * and takes it off the list under that same lock), so its tables are read
 * outside the fault guard without fear of an unload.  Nothing here
 * allocates or takes another lock. */
static int rules_of_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct from_tables *a = arg;
    vmp_cfi_object cfi;
    int have_cfi = -1; /* not looked at yet: most objects hold none of the pcs */
    for (int i = 0; i < info->dlpi_phnum && a->left > 0; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || ph->p_memsz == 0)
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        for (int j = 0; j < a->n && a->k < a->max; j++) {
            if (a->done[j] || a->pcs[j] < lo || a->pcs[j] >= hi)
                continue;
            if (vmp_unwind_rules_cover(a->rules, a->k, a->pcs[j])) { /* an earlier pc's function holds it */
                a->done[j] = 1;
                a->left--;
                continue;
            }
            if (have_cfi < 0)
                have_cfi = vmp_cfi_object_from_phdrs(&cfi, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum) == 0;
            if (!have_cfi)
                return a->left == 0;
            int got = vmp_cfi_rules(&cfi, a->pcs[j], a->rules + a->k, a->max - a->k);
            if (got > 0) {
                a->k += got;
                a->done[j] = 1;
                a->left--;
            }
        }
    }
    return a->left == 0 || a->k >= a->max; /* (nonzero: no need to see the other objects) */
}

int vmp_native_rules_from_tables(const uintptr_t *pcs, int n, vmp_unwind_rule *rules, int max,
                                 unsigned char *done)
{
    struct from_tables a = {pcs, n, n, rules, 0, max, done};
    memset(done, 0, (size_t)(n > 0 ? n : 0));
    if (n > 0 && max > 0)
        dl_iterate_phdr(rules_of_object, &a);
    return a.k;
}

/* ---- the evaluation loop ------------------------------------------------ */

int vmp_native_add_eval_range(uintptr_t start, uintptr_t end)
{
    if (eval_count == VMP_NATIVE_MAX_EVAL_RANGES || end <= start)
        return -1;
    for (int i = 0; i < eval_count; i++)
        if (eval_ranges[i].lo == start && eval_ranges[i].hi == end)
            return 0;
    eval_ranges[eval_count].lo = start;
    eval_ranges[eval_count].hi = end;
    __atomic_store_n(&eval_count, eval_count + 1, __ATOMIC_RELEASE);
    return 0;
}

int vmp_native_add_eval_function(const char *symbol)
{
    vmp_symbols *s = vmp_symbols_open();
    if (!s)
        return 0;
    uintptr_t ranges[VMP_NATIVE_MAX_EVAL_RANGES][2];
    int n = vmp_symbols_function_ranges(s, symbol, ranges, VMP_NATIVE_MAX_EVAL_RANGES);
    vmp_symbols_close(s);
    int added = 0;
    for (int i = 0; i < n; i++)
        added += vmp_native_add_eval_range(ranges[i][0], ranges[i][1]) == 0;
    return added;
}

int vmp_native_is_eval(uintptr_t pc)
{
    int n = __atomic_load_n(&eval_count, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if (pc >= eval_ranges[i].lo && pc < eval_ranges[i].hi)
            return 1;
    return 0;
}

/* ---- learned rules -------------------------------------------------------- */

static size_t rule_home(uint64_t pc)
{
    return (size_t)((pc * 0x9E3779B97F4A7C15ull) >> 48);
}

/* A rule in one word, so that a handler reads it with one load:
 * cfa_off in bits 0-31, rbp_off 32-47, rbx's slot 48-55 (as a count of
 * words, 0 unchanged, -128 lost: vmp_unwind_rbx_slot makes every rbx_off
 * fit), cfa_reg 56-59 (3, 6 or 7), kind 60-63 (never 0: 0 is "no rule"). */
#define PACKED_RBX_LOST (-128)
static uint64_t pack_rule(const vmp_unwind_rule *r)
{
    int8_t rbx = r->rbx_off == VMP_RBX_LOST ? PACKED_RBX_LOST : (int8_t)(r->rbx_off / 8);
    return (uint64_t)(uint32_t)r->cfa_off | (uint64_t)(uint16_t)r->rbp_off << 32 |
           (uint64_t)(uint8_t)rbx << 48 | (uint64_t)(r->cfa_reg & 0xf) << 56 | (uint64_t)(r->kind & 0xf) << 60;
}

static int range_lo_cmp(const void *a, const void *b)
{
    const struct rule_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Frees the replaced tables when no walk can be reading one: a walk counts
 * itself before it loads the table, so once the count is seen at zero after
 * a publication, every later walk loads the new table. */
static void free_retired(void)
{
    if (!retired_rules || __atomic_load_n(&walkers, __ATOMIC_SEQ_CST) != 0)
        return;
    while (retired_rules) {
        struct rule_table *next = retired_rules->retired;
        free(retired_rules);
        retired_rules = next;
    }
}

/* Merges the known ranges a[0..na) with the new ones b[0..nb) (each sorted
 * and disjoint) into out (NULL: counts only): where a new range overlaps a
 * known one, only its parts outside are added, so the result is sorted and
 * disjoint, every known rule stays and every pc of b gets a rule.  Returns
 * the ranges written. */
static size_t merge_rules(const struct rule_range *a, size_t na, const struct rule_range *b, size_t nb,
                          struct rule_range *out)
{
    size_t i = 0, k = 0;
    uint64_t done = 0; /* the end of the last range written */
#define EMIT(LO, HI, RULE)                                                                                             \
    do {                                                                                                               \
        if (out)                                                                                                       \
            out[k] = (struct rule_range){LO, HI, RULE};                                                                \
        k++;                                                                                                           \
        done = HI;                                                                                                     \
    } while (0)
    for (size_t j = 0; j < nb; j++) {
        uint64_t lo = b[j].lo > done ? b[j].lo : done, hi = b[j].hi;
        while (lo < hi) {
            for (; i < na && a[i].hi <= lo; i++)
                EMIT(a[i].lo, a[i].hi, a[i].rule);
            if (i < na && a[i].lo <= lo) { /* a known range holds lo: its rule stays */
                EMIT(a[i].lo, a[i].hi, a[i].rule);
                i++;
                lo = done > lo ? done : lo;
                continue;
            }
            uint64_t end = i < na && a[i].lo < hi ? a[i].lo : hi; /* up to the next known range */
            EMIT(lo, end, b[j].rule);
            lo = end;
        }
    }
    for (; i < na; i++)
        EMIT(a[i].lo, a[i].hi, a[i].rule);
#undef EMIT
    return k;
}

/* Publishes the current rules plus add[0..n) (or, with `fresh`, add only).
 * Where a range overlaps one kept already (known before, or nearer the
 * start among add), only its parts outside are added: a row that one
 * function's table lets reach into the next function's first row must not
 * take that row away whole (its pcs then had no rule, and the walk was cut
 * there after every learning).  Returns 0 or -1. */
static int publish_rules(const struct rule_range *add, size_t n, int fresh)
{
    const struct rule_table *old = fresh ? NULL : rules;
    size_t have = old ? old->n : 0;
    /* add, sorted, each range trimmed to what the ones before it leave */
    struct rule_range *b = malloc((n ? n : 1) * sizeof *b);
    if (!b)
        return -1;
    size_t nb = 0;
    if (n)
        memcpy(b, add, n * sizeof *b);
    qsort(b, n, sizeof *b, range_lo_cmp);
    for (size_t i = 0; i < n; i++) {
        uint64_t lo = nb && b[i].lo < b[nb - 1].hi ? b[nb - 1].hi : b[i].lo;
        if (lo < b[i].hi)
            b[nb++] = (struct rule_range){lo, b[i].hi, b[i].rule};
    }
    size_t total = merge_rules(old ? old->r : NULL, have, b, nb, NULL);
    struct rule_table *t = total <= MAX_RULES ? malloc(sizeof *t + total * sizeof(struct rule_range)) : NULL;
    if (!t) {
        free(b);
        return -1;
    }
    t->n = merge_rules(old ? old->r : NULL, have, b, nb, t->r);
    free(b);
    t->retired = NULL;
    struct rule_table *replaced = __atomic_exchange_n(&rules, t, __ATOMIC_SEQ_CST);
    /* (after the table: a walk that read generation g before loading the
     * table uses g's table or a newer one) */
    __atomic_add_fetch(&rules_generation, 1, __ATOMIC_RELEASE);
    if (replaced) {
        replaced->retired = retired_rules;
        retired_rules = replaced;
    }
    free_retired();
    return 0;
}

int vmp_native_learn(const vmp_unwind_rule *learned, int n)
{
    struct rule_range *add = malloc((size_t)(n > 0 ? n : 1) * sizeof *add);
    if (!add)
        return -1;
    for (int i = 0; i < n; i++) {
        add[i].lo = learned[i].lo;
        add[i].hi = learned[i].hi;
        add[i].rule = pack_rule(&learned[i]);
    }
    int rc = publish_rules(add, (size_t)n, 0);
    free(add);
    return rc;
}

/* The packed rule for pc, or 0. */
static uint64_t rule_for(const struct rule_table *t, uintptr_t pc)
{
    long k = vmp_span_find(t->r, t->n, sizeof t->r[0], pc);
    return k < 0 ? 0 : t->r[k].rule;
}

static void (*on_unknown)(void); /* vmp_native_when_unknown */

void vmp_native_when_unknown(void (*fn)(void))
{
    __atomic_store_n(&on_unknown, fn, __ATOMIC_RELEASE);
}

/* Async-signal-safe: remembers pc for vmp_native_take_unknown.  `urgent`: the
 * walk stopped there, so the writer is woken for it (the bell costs the
 * handler a futex wake, up to ~13 us); a pc the walk got past through the
 * object's own tables can wait for the writer's next round. */
static void note_unknown(uintptr_t pc, int urgent)
{
    size_t h = rule_home(pc);
    for (int i = 0; i < UNKNOWN_PROBES; i++) {
        uint64_t *s = &unknown_pcs[(h + i) & (UNKNOWN_SLOTS - 1)];
        uint64_t have = __atomic_load_n(s, __ATOMIC_RELAXED);
        if (have == pc)
            return;
        if (have == 0 && __atomic_compare_exchange_n(s, &have, (uint64_t)pc, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
            void (*fn)(void) = urgent ? __atomic_load_n(&on_unknown, __ATOMIC_ACQUIRE) : NULL;
            if (fn)
                fn(); /* (a new one: the writer learns it now) */
            return;
        }
        if (have == pc)
            return;
    }
}

/* Async-signal-safe: a walk met a pc outside every known object (see
 * refresh_asked). */
static void ask_refresh(const struct code_table *t, uintptr_t pc)
{
    uintptr_t armed = REFRESH_ARMED;
    if (__atomic_load_n(&refresh_asked, __ATOMIC_RELAXED) != REFRESH_ARMED)
        return;
    __atomic_store_n(&asked_pc, pc, __ATOMIC_RELAXED); /* (before the ask: the writer reads it after) */
    if (!__atomic_compare_exchange_n(&refresh_asked, &armed, (uintptr_t)t, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return;
    void (*fn)(void) = __atomic_load_n(&on_unknown, __ATOMIC_ACQUIRE);
    if (fn)
        fn();
}

int vmp_native_take_unknown(uintptr_t *pcs, int max)
{
    int n = 0;
    for (size_t i = 0; i < UNKNOWN_SLOTS && n < max; i++) {
        if (!__atomic_load_n(&unknown_pcs[i], __ATOMIC_RELAXED))
            continue;
        uint64_t pc = __atomic_exchange_n(&unknown_pcs[i], 0, __ATOMIC_ACQUIRE);
        if (pc)
            pcs[n++] = (uintptr_t)pc;
    }
    return n;
}

/* ---- setup ---------------------------------------------------------------- */

int vmp_native_setup(void)
{
    if (ready) {
        vmp_native_refresh();
        return 0;
    }
    if (build_table() < 0)
        return -1;
    /* What an earlier run learned holds unless an object was unloaded
     * since (its addresses may hold another now). */
    if ((!rules || current_table->subs != rules_subs) && publish_rules(NULL, 0, 1) < 0)
        return -1;
    /* CPython's perf trampolines (3.12+ -X perf): the arenas made before
     * this run are known from its first sample. */
    if (vmp_trampoline_find_template() == 0)
        vmp_native_look_for_trampolines();
    __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    return 0;
}

void vmp_native_forget_rules(void)
{
    free(__atomic_exchange_n(&rules, NULL, __ATOMIC_ACQ_REL));
    free_retired();
}

void vmp_native_teardown(void)
{
    __atomic_store_n(&ready, 0, __ATOMIC_RELEASE);
    struct code_table *t = __atomic_exchange_n(&current_table, NULL, __ATOMIC_ACQ_REL);
    if (t)
        rules_subs = t->subs; /* (what `rules` holds was true as of then) */
    for (int chain = 0; chain < 2; chain++) {
        while (t) {
            struct code_table *older = t->retired;
            free(t);
            t = older;
        }
        t = abandoned_tables; /* (no walk left to read them either) */
        abandoned_tables = NULL;
    }
    __atomic_store_n(&eval_count, 0, __ATOMIC_RELEASE);
    /* No handler runs now (a walk the fault guard cut short may have left
     * `walkers` counted): the replaced rules can go; the current ones stay
     * for the next run (setup drops them if an object was unloaded). */
    __atomic_store_n(&walkers, 0, __ATOMIC_SEQ_CST);
    free_retired();
    memset(unknown_pcs, 0, sizeof unknown_pcs);
    refresh_asked = REFRESH_ARMED;
    asked_pc = 0;
    vmp_trampoline_forget();
}

void vmp_native_abandon(void)
{
    __atomic_store_n(&ready, 0, __ATOMIC_RELEASE);
    /* (a late walk holds the table it loaded, or an older one: the chain
     * is kept aside until a teardown, which runs when no walk can) */
    struct code_table *t = __atomic_exchange_n(&current_table, NULL, __ATOMIC_ACQ_REL);
    if (t) {
        rules_subs = t->subs;
        struct code_table *last = t;
        while (last->retired)
            last = last->retired;
        last->retired = abandoned_tables;
        abandoned_tables = t;
    }
    __atomic_store_n(&eval_count, 0, __ATOMIC_RELEASE);
    /* `walkers` is left as it is: the late walk still counts itself in,
     * so the rule tables replaced from now on wait for it (free_retired),
     * and its count goes when it leaves. */
    memset(unknown_pcs, 0, sizeof unknown_pcs);
    refresh_asked = REFRESH_ARMED;
    asked_pc = 0;
    vmp_trampoline_after_fork_child(); /* (forgets the trampolines' map, frees nothing) */
}

void vmp_native_after_fork_child(void)
{
    /* The child runs no handler of the parent's run; whatever a parent's
     * thread was doing with these tables is forgotten, nothing is freed (the
     * allocator's state is the parent's), and the next enable starts anew. */
    ready = 0;
    current_table = NULL;
    abandoned_tables = NULL;
    eval_count = 0;
    rules = NULL;
    retired_rules = NULL;
    walkers = 0;
    memset(unknown_pcs, 0, sizeof unknown_pcs);
    refresh_asked = REFRESH_ARMED;
    asked_pc = 0;
    vmp_trampoline_after_fork_child();
}

/* ---- in the signal handler ------------------------------------------------ */

/* The only machine-specific reads: the interrupted registers.  The walk with
 * learned rules knows x86-64's registers only; on other machines a sample
 * keeps the interrupted frame alone. */
#if defined(__x86_64__)
#define VMP_HAVE_FAST_UNWIND 1
static uintptr_t interrupted_pc(const void *ucontext)
{
    return (uintptr_t)((const ucontext_t *)ucontext)->uc_mcontext.gregs[REG_RIP];
}
static uintptr_t interrupted_sp(const void *ucontext)
{
    return (uintptr_t)((const ucontext_t *)ucontext)->uc_mcontext.gregs[REG_RSP];
}
#elif defined(__aarch64__)
#define VMP_HAVE_FAST_UNWIND 0
static uintptr_t interrupted_pc(const void *ucontext)
{
    return (uintptr_t)((const ucontext_t *)ucontext)->uc_mcontext.pc;
}
static uintptr_t interrupted_sp(const void *ucontext)
{
    return (uintptr_t)((const ucontext_t *)ucontext)->uc_mcontext.sp;
}
#else
#define VMP_HAVE_FAST_UNWIND 0
static uintptr_t interrupted_pc(const void *ucontext)
{
    (void)ucontext;
    return 0;
}
static uintptr_t interrupted_sp(const void *ucontext)
{
    (void)ucontext;
    return 0;
}
#endif

#if VMP_HAVE_FAST_UNWIND
static int walk_with(const struct rule_table *table, const struct code_table *t, void *ucontext,
                     uint64_t *frames, int max, vmp_native_walk *walk);
#endif

uint64_t vmp_native_rules_generation(void)
{
    return __atomic_load_n(&rules_generation, __ATOMIC_ACQUIRE);
}

static void walk_result(vmp_native_walk *walk, int n, int complete, int cut, uintptr_t top)
{
    if (walk) {
        walk->n = n;
        walk->complete = complete;
        walk->cut = cut;
        walk->capped = 0;
        walk->top = n ? top : 0;
    }
}

int vmp_native_unwind(void *ucontext, uint64_t *frames, int max, vmp_native_walk *walk)
{
    walk_result(walk, 0, 0, 0, 0);
    if (walk)
        walk->generation = vmp_native_rules_generation();
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE) || !ucontext || max <= 0)
        return 0;
    const struct code_table *t = __atomic_load_n(&current_table, __ATOMIC_ACQUIRE);
    if (!t)
        return 0;
    if (max > VMP_NATIVE_MAX_DEPTH)
        max = VMP_NATIVE_MAX_DEPTH;
    if (!VMP_HAVE_FAST_UNWIND) {
        frames[0] = interrupted_pc(ucontext);
        frames[1] = interrupted_sp(ucontext);
        walk_result(walk, frames[0] != 0, 0, 0, 0);
        return frames[0] != 0;
    }
#if VMP_HAVE_FAST_UNWIND
    __atomic_add_fetch(&walkers, 1, __ATOMIC_SEQ_CST);
    const struct rule_table *table = __atomic_load_n(&rules, __ATOMIC_SEQ_CST);
    void (*hook)(void) = __atomic_load_n(&vmp_native_test_hook, __ATOMIC_RELAXED);
    if (hook)
        hook();
    int n = table ? walk_with(table, t, ucontext, frames, max, walk) : 0;
    __atomic_sub_fetch(&walkers, 1, __ATOMIC_RELEASE);
    return n;
#else
    (void)rule_for, (void)note_unknown, (void)ask_refresh;
    return 0;
#endif
}
#if VMP_HAVE_FAST_UNWIND
static int walk_with(const struct rule_table *table, const struct code_table *t, void *ucontext,
                     uint64_t *frames, int max, vmp_native_walk *walk)
{
    const mcontext_t *mc = &((const ucontext_t *)ucontext)->uc_mcontext;
    uint64_t rip = (uint64_t)mc->gregs[REG_RIP];
    uint64_t rsp = (uint64_t)mc->gregs[REG_RSP];
    uint64_t rbp = (uint64_t)mc->gregs[REG_RBP];
    uint64_t rbx = (uint64_t)mc->gregs[REG_RBX];
    int rbx_known = 1; /* (0: a frame kept it where its rule could not say) */
    int n = 0, complete = 0, cut = 0;
    uintptr_t top = 0;
    while (n < max && rip != 0) {
        uintptr_t pc = n == 0 ? (uintptr_t)rip : (uintptr_t)rip - 1;
        long seg = in_ranges(t->r, t->n, pc);
        uint64_t rule;
        vmp_unwind_rule r;
        uintptr_t as;
        if (seg < 0 && vmp_trampoline_rule(pc, n == 0, &r, &as)) {
            /* A copy of CPython's perf trampoline (-X perf), in memory no
             * object describes: its rule comes from the template's code,
             * and the frame is recorded as the template's instruction, so
             * that every copy is one function in the profile. */
            frames[2 * n] = as;
            frames[2 * n + 1] = rsp;
            n++;
            top = 0;
            rule = pack_rule(&r);
        } else if (seg < 0) {
            /* Outside every object the table knows: code of a library
             * loaded since the table was built (an extension module
             * imported during the run, its init function running), JIT
             * code, or a wild return address.  Nothing beyond can be
             * walked, and the stack goes on beyond (its real end is a rule
             * saying so, or a zero return address): the walk is cut, never
             * taken for a whole one.  The interrupted instruction itself is
             * real even there and is kept; a return address is not to be
             * trusted.  The writer is asked to look for new objects, and
             * for new trampoline arenas (ask_refresh). */
            if (n == 0) {
                frames[0] = pc;
                frames[1] = rsp;
                n = 1;
                top = 0;
            }
            cut = 1;
            ask_refresh(t, pc);
            break;
        } else {
            frames[2 * n] = pc;
            frames[2 * n + 1] = rsp;
            n++;
            top = 0;
            rule = rule_for(table, pc);
            if (!rule) {
                /* Not learned yet: the object's own tables say it now, and
                 * the writer adds the whole function to the learned rules,
                 * which later samples find with one search. */
                int found = vmp_cfi_rule(&t->cfi[seg], pc, &r) == 0;
                note_unknown(pc, !found);
                if (!found) {
                    cut = 1; /* no rule the walk can follow here, or not one of ours */
                    break;
                }
                rule = pack_rule(&r);
            }
        }
        int32_t cfa_off = (int32_t)(uint32_t)rule;
        int16_t rbp_off = (int16_t)(uint16_t)(rule >> 32);
        int8_t rbx_slot = (int8_t)(uint8_t)(rule >> 48);
        unsigned cfa_reg = (unsigned)(rule >> 56) & 0xf, kind = (unsigned)(rule >> 60);
        if (kind == VMP_RULE_END) {
            complete = 1;
            top = UINTPTR_MAX;
            break;
        }
        if (kind != VMP_RULE_STEP) {
            cut = 1; /* no rule the walk can follow (VMP_RULE_STOP) */
            break;
        }
        uint64_t base;
        if (cfa_reg == VMP_REG_RSP)
            base = rsp;
        else if (cfa_reg == VMP_REG_RBP)
            base = rbp;
        else if (cfa_reg == VMP_REG_RBX && rbx_known)
            base = rbx;
        else {
            cut = 1; /* rbx lost in a callee: this frame cannot be stepped */
            break;
        }
        uint64_t cfa = base + (uint64_t)(int64_t)cfa_off;
        /* Each caller's frame lies above its callee's: a CFA that does not
         * grow means the rule met garbage or the walk loops (and the walk
         * never reads below the interrupted stack pointer). */
        if (cfa <= rsp || (cfa & 7))
            break;
        top = (uintptr_t)cfa;
        uint64_t ra = *(const uint64_t *)(uintptr_t)(cfa - 8);
        if (rbp_off)
            rbp = *(const uint64_t *)(uintptr_t)(cfa + (uint64_t)(int64_t)rbp_off);
        /* The caller's rbx: reloaded where this frame saved it, else what
         * this frame left in it (callee-saved: the caller's own). */
        if (rbx_slot == PACKED_RBX_LOST)
            rbx_known = 0;
        else if (rbx_slot)
            rbx = *(const uint64_t *)(uintptr_t)(cfa + (uint64_t)((int64_t)rbx_slot * 8));
        rsp = cfa;
        rip = ra;
    }
    walk_result(walk, n, complete, cut, top);
    /* Stopped by the caller's budget right after a step, with a caller
     * still to walk: the stack goes on (deep recursion), and the sample
     * must say so, not pass for a whole one.  (A frame that could not be
     * stepped leaves top 0; the outermost one UINTPTR_MAX.) */
    if (walk && n == max && !complete && !cut && top != 0 && rip != 0)
        walk->capped = 1;
    return n;
}
#endif

/* ---- the splice ------------------------------------------------------------- */

/* How many words out[] may hold before it would overwrite frames[next..]:
 * frames may share out's buffer (see the header). */
static int room_before(const uint64_t *out, int max, const uint64_t *frames, int next)
{
    uintptr_t o = (uintptr_t)out, f = (uintptr_t)(frames + 2 * (size_t)next);
    if (f < o || f >= (uintptr_t)(out + max))
        return max;
    return (int)((f - o) / sizeof *out);
}

int vmp_native_splice(const uint64_t *frames, const vmp_native_walk *walk,
                      const vmp_native_groups *py, int py_width, uint64_t *out, int max)
{
    int w = py_width == 2 ? 2 : 1;
    int n = walk->n, o = 0, cut = 0;
    uintptr_t anchor;
    /* Without anchors: evaluation-loop frames that run no group, counted
     * from the innermost (a complete walk sees every activation). */
    int frameless = 0;
    if (py->count >= 0 && walk->complete) {
        int evals = 0;
        for (int i = 0; i < n; i++)
            evals += vmp_native_is_eval((uintptr_t)frames[2 * i]);
        if (evals > py->count)
            frameless = evals - py->count;
    } else if (py->count >= 0) {
        /* A walk that stopped short cannot tell whether the innermost
         * activation runs a frame yet: keep the C frames inside it, then
         * the Python frames, and no C frame that could stand between the
         * wrong ones. */
        for (int i = 0; i < n; i++)
            if (vmp_native_is_eval((uintptr_t)frames[2 * i])) {
                n = i;
                break;
            }
    }
    for (int i = 0; i < n; i++) {
        uintptr_t pc = (uintptr_t)frames[2 * i];
        uintptr_t hi = i + 1 < n ? (uintptr_t)frames[2 * i + 3] : walk->top;
        int eval = vmp_native_is_eval(pc);
        /* The last frame of a walk that could not step past it: its range
         * is unknown.  An evaluation loop there runs the next group (its
         * anchor is the nearest); any other function runs none. */
        int one_group = 0;
        if (hi == 0) {
            one_group = eval;
            hi = eval ? UINTPTR_MAX : (uintptr_t)frames[2 * i + 1];
        }
        int lim = room_before(out, max, frames, i + 1);
        while (py->next(py->ctx, &anchor)) {
            if (anchor == 0) {
                if (!eval)
                    break;
                if (frameless > 0) {
                    frameless--;
                    break;
                }
            } else if (anchor >= hi) {
                break;
            }
            o += py->emit(py->ctx, out + o, lim - o, &cut);
            if (cut)
                return o;
            if (anchor == 0 || one_group)
                break;
        }
        if (o + w > lim)
            return o;
        if (w == 2)
            out[o++] = 0;
        out[o++] = vmp_native_word(pc);
    }
    while (py->next(py->ctx, &anchor)) {
        o += py->emit(py->ctx, out + o, max - o, &cut);
        if (cut)
            break;
    }
    return o;
}
