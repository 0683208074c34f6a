/*
 * vmp_native_unwind.c - walking the interrupted C stack with libunwind's
 * local unwinder, and splicing it with the Python frames.
 *
 * Why libunwind's local unwinder: it reads the DWARF call-frame information
 * of every object, which CPython and C extensions always carry, whereas frame
 * pointers are omitted by default in most builds.  On x86-64 a signal
 * handler's ucontext_t is exactly an unw_context_t, so unw_init_local2 with
 * UNW_INIT_SIGNAL_FRAME starts at the interrupted instruction itself.
 *
 * Cost: libunwind's global cache maps a program counter to its register
 * rules, so a warm walk does no table search; setup enlarges that cache and
 * warms it with the enabling thread's own stack.  The per-thread cache is not
 * used: its thread-local storage may be allocated on first touch in a thread,
 * which a signal handler must not do.
 *
 * Safety: every stop condition listed in the header protects the walk from
 * acting on garbage.  The executable-range table is what lets JIT code and
 * wild return addresses end a walk before libunwind would fall back to
 * guessing with frame pointers.  It is replaced, never modified, and old
 * tables live until teardown, so a handler reading one is never disturbed.
 */
#define _GNU_SOURCE
#include "vmp_native_unwind.h"

#include <dlfcn.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "vmp_symbols.h"

/* Power of two; 4096 register-rule entries cover a large program's hot code. */
#define UNWIND_CACHE_SIZE 4096

struct range {
    uintptr_t lo, hi;
};

struct code_table {
    struct code_table *retired; /* the table this one replaced */
    unsigned long long adds, subs;
    size_t n;
    struct range r[];
};

static struct code_table *current_table; /* read with acquire in handlers */

/* Learned rules: open addressing on the pc, written by one thread (the
 * writer), read by handlers.  A slot's rule is stored before its pc is
 * published, and a published slot never changes until teardown. */
#define RULE_SLOTS (1u << 16)
#define RULE_PROBES 16
struct rule_slot {
    uint64_t pc; /* 0: empty; published with release */
    uint64_t rule;
};
static struct rule_slot *rules; /* mapped once, never unmapped */
static int rules_off;           /* set when a library was unloaded */
static size_t rules_used;
static int ready;
/* Code that runs holding the dynamic loader's lock: ld.so itself and
 * dl_iterate_phdr.  A thread interrupted there is never walked by libunwind,
 * whose table lookup would take that lock again (see vmp_native_unwind). */
#define MAX_LOADER_RANGES 4
static struct range loader_ranges[MAX_LOADER_RANGES];
static int loader_count;
static struct range eval_ranges[VMP_NATIVE_MAX_EVAL_RANGES];
static int eval_count;

/* ---- the table of executable segments ---------------------------------- */

struct collect {
    struct range *r;
    size_t n, cap;
    unsigned long long adds, subs;
    int failed;
    int skip_loader; /* loader ranges already known */
};

static int collect_segments(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct collect *c = arg;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        c->adds = info->dlpi_adds;
        c->subs = info->dlpi_subs;
    }
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || ph->p_memsz == 0)
            continue;
        if (c->n == c->cap) {
            size_t cap = c->cap ? 2 * c->cap : 64;
            struct range *r = realloc(c->r, cap * sizeof *r);
            if (!r) {
                c->failed = 1;
                return 1;
            }
            c->r = r;
            c->cap = cap;
        }
        c->r[c->n].lo = info->dlpi_addr + ph->p_vaddr;
        c->r[c->n].hi = c->r[c->n].lo + ph->p_memsz;
        if (!c->skip_loader && info->dlpi_name && strstr(info->dlpi_name, "/ld-linux") &&
            loader_count < MAX_LOADER_RANGES - 1)
            loader_ranges[loader_count++] = c->r[c->n];
        c->n++;
    }
    return 0;
}

static int range_cmp(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
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
    struct collect c = {0};
    if (!ready) /* the loader does not move: learn its ranges once */
        loader_count = 0;
    else
        c.skip_loader = 1;
    dl_iterate_phdr(collect_segments, &c);
    if (!ready) {
        Dl_info info;
        const ElfW(Sym) *sym = NULL;
        if (dladdr1((void *)dl_iterate_phdr, &info, (void **)&sym, RTLD_DL_SYMENT) && sym &&
            sym->st_size && loader_count < MAX_LOADER_RANGES) {
            uintptr_t lo = (uintptr_t)info.dli_saddr;
            loader_ranges[loader_count].lo = lo;
            loader_ranges[loader_count].hi = lo + sym->st_size;
            loader_count++;
        }
    }
    if (c.failed) {
        free(c.r);
        return -1;
    }
    qsort(c.r, c.n, sizeof *c.r, range_cmp);
    struct code_table *t = malloc(sizeof *t + c.n * sizeof(struct range));
    if (!t) {
        free(c.r);
        return -1;
    }
    t->adds = c.adds;
    t->subs = c.subs;
    t->n = c.n;
    if (c.n)
        memcpy(t->r, c.r, c.n * sizeof(struct range));
    free(c.r);
    t->retired = current_table;
    __atomic_store_n(&current_table, t, __ATOMIC_RELEASE);
    return 0;
}

static int in_ranges(const struct range *r, size_t n, uintptr_t pc)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pc < r[mid].lo)
            hi = mid;
        else if (pc >= r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

int vmp_native_is_known_code(uintptr_t pc)
{
    const struct code_table *t = __atomic_load_n(&current_table, __ATOMIC_ACQUIRE);
    return t && in_ranges(t->r, t->n, pc);
}

void vmp_native_refresh(void)
{
    const struct code_table *t = __atomic_load_n(&current_table, __ATOMIC_ACQUIRE);
    struct loader_counters k = {0, 0};
    dl_iterate_phdr(first_object, &k);
    if (t && t->adds == k.adds && t->subs == k.subs)
        return;
    /* An object was unloaded: another may come to its addresses, where the
     * learned rules would be wrong.  Rules are never rewritten under the
     * handlers, so the fast walk stays off until teardown. */
    if (t && t->subs != k.subs)
        __atomic_store_n(&rules_off, 1, __ATOMIC_RELEASE);
    build_table();
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
    return (size_t)((pc * 0x9E3779B97F4A7C15ull) >> 48) & (RULE_SLOTS - 1);
}

static uint64_t pack_rule(const vmp_unwind_rule *r)
{
    return (uint64_t)(uint32_t)r->cfa_off | (uint64_t)(uint16_t)r->rbp_off << 32 |
           (uint64_t)r->cfa_reg << 48 | (uint64_t)r->kind << 56;
}

int vmp_native_learn(uintptr_t pc, const vmp_unwind_rule *rule)
{
    if (!rules || !pc || rules_used >= RULE_SLOTS / 2)
        return -1;
    size_t h = rule_home(pc);
    for (int i = 0; i < RULE_PROBES; i++) {
        struct rule_slot *s = &rules[(h + i) & (RULE_SLOTS - 1)];
        uint64_t have = __atomic_load_n(&s->pc, __ATOMIC_RELAXED);
        if (have == pc)
            return 0;
        if (have == 0) {
            s->rule = pack_rule(rule);
            __atomic_store_n(&s->pc, (uint64_t)pc, __ATOMIC_RELEASE);
            rules_used++;
            return 0;
        }
    }
    return -1;
}

/* The packed rule for pc, or 0. */
static uint64_t rule_for(uintptr_t pc)
{
    size_t h = rule_home(pc);
    for (int i = 0; i < RULE_PROBES; i++) {
        const struct rule_slot *s = &rules[(h + i) & (RULE_SLOTS - 1)];
        uint64_t have = __atomic_load_n(&s->pc, __ATOMIC_ACQUIRE);
        if (have == pc)
            return s->rule;
        if (have == 0)
            return 0;
    }
    return 0;
}

/* ---- setup ---------------------------------------------------------------- */

/* Walks the calling thread's own stack, which initialises libunwind outside
 * signal context (its first use allocates) and fills the cache. */
static int warm_up(void)
{
    unw_context_t ctx;
    unw_cursor_t cursor;
    if (unw_getcontext(&ctx) < 0 || unw_init_local(&cursor, &ctx) < 0)
        return -1;
    int depth = 0;
    while (depth < VMP_NATIVE_MAX_DEPTH && unw_step(&cursor) > 0)
        depth++;
    return depth > 0 ? 0 : -1;
}

int vmp_native_setup(void)
{
    if (ready) {
        vmp_native_refresh();
        return 0;
    }
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_GLOBAL);
    unw_set_cache_size(unw_local_addr_space, UNWIND_CACHE_SIZE, 0);
    if (build_table() < 0)
        return -1;
    if (!rules) {
        void *p = mmap(NULL, RULE_SLOTS * sizeof(struct rule_slot), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED)
            rules = p; /* without it every walk takes the slow path */
    }
    if (warm_up() < 0 || warm_up() < 0)
        return -1;
    __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    return 0;
}

void vmp_native_teardown(void)
{
    __atomic_store_n(&ready, 0, __ATOMIC_RELEASE);
    struct code_table *t = __atomic_exchange_n(&current_table, NULL, __ATOMIC_ACQ_REL);
    while (t) {
        struct code_table *older = t->retired;
        free(t);
        t = older;
    }
    __atomic_store_n(&eval_count, 0, __ATOMIC_RELEASE);
    if (rules) {
        /* No handler runs now: forget the rules (libraries may move). */
        madvise(rules, RULE_SLOTS * sizeof(struct rule_slot), MADV_DONTNEED);
        rules_used = 0;
        rules_off = 0;
    }
}

/* ---- in the signal handler ------------------------------------------------ */

/* The only machine-specific reads: the interrupted registers.  The walk with
 * learned rules (vmp_native_unwind_fast) knows x86-64's registers only; on
 * other machines every walk is libunwind's (vmp_native_unwind_slow). */
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
    return 0; /* unknown: the loader check below cannot match */
}
static uintptr_t interrupted_sp(const void *ucontext)
{
    (void)ucontext;
    return 0;
}
#endif

static void walk_result(vmp_native_walk *walk, int n, int complete, uintptr_t top)
{
    if (walk) {
        walk->n = n;
        walk->complete = complete;
        walk->top = n ? top : 0;
    }
}

int vmp_native_unwind(void *ucontext, uint64_t *frames, int max, vmp_native_walk *walk)
{
    int n = vmp_native_unwind_fast(ucontext, frames, max, walk);
    if (n >= 0)
        return n;
    /* A thread interrupted inside the dynamic loader may hold its lock,
     * which libunwind's table lookup takes: keep the interrupted pc only. */
    uintptr_t pc = interrupted_pc(ucontext);
    if (max > 0 && in_ranges(loader_ranges, (size_t)loader_count, pc)) {
        frames[0] = pc;
        frames[1] = interrupted_sp(ucontext);
        walk_result(walk, 1, 0, 0);
        return 1;
    }
    return vmp_native_unwind_slow(ucontext, frames, max, walk);
}

int vmp_native_in_loader(uintptr_t pc)
{
    return in_ranges(loader_ranges, (size_t)loader_count, pc);
}

int vmp_native_unwind_fast(void *ucontext, uint64_t *frames, int max, vmp_native_walk *walk)
{
    walk_result(walk, 0, 0, 0);
#if !VMP_HAVE_FAST_UNWIND
    (void)ucontext, (void)frames, (void)max, (void)rule_for;
    return -1;
#else
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE) || !ucontext || !rules)
        return 0;
    if (__atomic_load_n(&rules_off, __ATOMIC_ACQUIRE))
        return -1;
    const struct code_table *t = __atomic_load_n(&current_table, __ATOMIC_ACQUIRE);
    if (!t)
        return 0;
    if (max > VMP_NATIVE_MAX_DEPTH)
        max = VMP_NATIVE_MAX_DEPTH;
    const mcontext_t *mc = &((const ucontext_t *)ucontext)->uc_mcontext;
    uint64_t rip = (uint64_t)mc->gregs[REG_RIP];
    uint64_t rsp = (uint64_t)mc->gregs[REG_RSP];
    uint64_t rbp = (uint64_t)mc->gregs[REG_RBP];
    int n = 0, complete = 0;
    uintptr_t top = 0;
    while (n < max && rip != 0) {
        uintptr_t pc = n == 0 ? (uintptr_t)rip : (uintptr_t)rip - 1;
        if (!in_ranges(t->r, t->n, pc)) {
            if (n == 0) {
                frames[0] = pc;
                frames[1] = rsp;
                n = 1;
            }
            break;
        }
        uint64_t rule = rule_for(pc & ~(uintptr_t)1); /* learned for both pc and pc | 1 */
        if (!rule)
            return -1;
        frames[2 * n] = pc;
        frames[2 * n + 1] = rsp;
        n++;
        top = 0;
        int32_t cfa_off = (int32_t)(uint32_t)rule;
        int16_t rbp_off = (int16_t)(uint16_t)(rule >> 32);
        unsigned cfa_reg = (unsigned)(rule >> 48) & 0xff, kind = (unsigned)(rule >> 56);
        if (kind == VMP_RULE_END) {
            complete = 1;
            top = UINTPTR_MAX;
            break;
        }
        uint64_t cfa = (cfa_reg == 7 ? rsp : rbp) + (uint64_t)(int64_t)cfa_off;
        /* As in the slow walk: the caller's frame lies above, or the walk
         * ends (and never reads below the interrupted stack pointer). */
        if (cfa <= rsp || (cfa & 7))
            break;
        top = (uintptr_t)cfa;
        uint64_t ra = *(const uint64_t *)(uintptr_t)(cfa - 8);
        if (rbp_off)
            rbp = *(const uint64_t *)(uintptr_t)(cfa + (uint64_t)(int64_t)rbp_off);
        rsp = cfa;
        rip = ra;
    }
    walk_result(walk, n, complete, top);
    return n;
#endif
}

int vmp_native_unwind_slow(void *ucontext, uint64_t *frames, int max, vmp_native_walk *walk)
{
    walk_result(walk, 0, 0, 0);
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE) || !ucontext)
        return 0;
    const struct code_table *t = __atomic_load_n(&current_table, __ATOMIC_ACQUIRE);
    if (!t)
        return 0;
    if (max > VMP_NATIVE_MAX_DEPTH)
        max = VMP_NATIVE_MAX_DEPTH;

    unw_cursor_t cursor;
    if (unw_init_local2(&cursor, (unw_context_t *)ucontext, UNW_INIT_SIGNAL_FRAME) < 0)
        return 0;
    int n = 0, complete = 0;
    uintptr_t top = 0;
    unw_word_t ip, sp;
    if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0 ||
        unw_get_reg(&cursor, UNW_REG_SP, &sp) < 0)
        return 0;
    while (n < max) {
        uintptr_t pc = n == 0 ? (uintptr_t)ip : (uintptr_t)ip - 1;
        int known = in_ranges(t->r, t->n, pc);
        /* The interrupted instruction itself is real even in JIT code; a
         * return address outside every object is not to be trusted, and
         * nothing beyond either can be walked reliably. */
        if (!known && n > 0)
            break;
        frames[2 * n] = pc;
        frames[2 * n + 1] = sp;
        n++;
        top = 0;
        if (!known)
            break;
        int step = unw_step(&cursor);
        if (step == 0) {
            complete = 1; /* the outermost frame */
            top = UINTPTR_MAX;
        }
        if (step <= 0)
            break;
        unw_word_t caller_sp;
        if (unw_get_reg(&cursor, UNW_REG_SP, &caller_sp) < 0)
            break;
        /* Each caller's frame lies above its callee's: a stack pointer that
         * does not grow means the rules read garbage or the walk loops. */
        if (caller_sp <= sp)
            break;
        top = (uintptr_t)caller_sp;
        /* A signal frame further up means the thread was already in a
         * handler (perhaps on an alternate stack): the walk ends there. */
        if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0 || unw_is_signal_frame(&cursor) > 0)
            break;
        sp = caller_sp;
    }
    walk_result(walk, n, complete, top);
    return n;
}

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
        out[o++] = (uint64_t)pc | 1u;
    }
    while (py->next(py->ctx, &anchor)) {
        o += py->emit(py->ctx, out + o, max - o, &cut);
        if (cut)
            break;
    }
    return o;
}
