/*
 * vmp_profile.c - the in-memory profile (contract in vmp_profile.h).
 *
 * Everything a profile holds lives in a few growable arrays and one arena, so
 * adding a sample costs no allocation unless it brings a stack never seen
 * before.  Unique stacks are found through an open-addressing table keyed by a
 * hash of (thread, frames); names and threads through u64 -> index tables.
 */
#include "vmp_profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmp_array.h"
#include "vmp_format.h"
#include "vmp_hash.h"
#include "vmp_name.h"

/* ---- arena: bump allocation in chunks, freed all at once ----------------- */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_chunk;

typedef struct arena {
    arena_chunk *head;
} arena;

#define ARENA_CHUNK (256 * 1024)

static void *arena_alloc(arena *a, size_t n)
{
    arena_chunk *c = a->head;
    n = (n + 15) & ~(size_t)15;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
        arena_chunk *nc = malloc(sizeof *nc + cap);
        if (!nc)
            return NULL;
        nc->used = 0;
        nc->cap = cap;
        if (cap == n && c) {
            /* A big block gets its own chunk behind the current one, so the
             * current chunk's free space is not thrown away. */
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->head = nc;
        }
        c = nc;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static void arena_free(arena *a)
{
    arena_chunk *c = a->head;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* A free slot in the stack table, and "no thread yet" in the thread cache. */
#define EMPTY UINT32_MAX
_Static_assert(EMPTY == VMP_INDEX_FREE, "the stack table is an index table");

/* ---- the profile ---------------------------------------------------------- */

typedef struct ustack {
    vmp_frame *frames;
    uint32_t depth;
    uint32_t thread_index;
    uint64_t count;
    uint64_t hash;
    uint32_t *codes; /* resolved: a code index per frame */
    uint32_t runner_frames;
} ustack;

typedef struct name_entry {
    uint64_t id;
    const char *text;
    size_t len;
} name_entry;

typedef struct meta_entry {
    const char *key, *value;
    size_t klen, vlen;
} meta_entry;

struct vmp_profile {
    vmp_profile_summary summary;
    arena mem;

    meta_entry *meta;
    size_t meta_len, meta_cap;

    name_entry *names;
    size_t names_len, names_cap;
    vmp_u64map name_index;

    uint64_t *threads;
    size_t threads_len, threads_cap;
    vmp_u64map thread_index;
    uint64_t last_thread_id; /* one-entry cache: most samples repeat the thread */
    uint32_t last_thread_index;

    ustack *stacks;
    size_t stacks_len, stacks_cap;
    uint32_t *stack_table; /* open addressing over stacks[] indices */
    size_t stack_table_cap;

    uint32_t *sample_stack;
    uint64_t *sample_rss; /* NULL until a sample carries a non-zero RSS */
    size_t samples_cap, rss_cap;
    int64_t *sample_time; /* NULL unless the file carries timestamps */
    size_t time_cap;

    /* resolved (vmp_profile_resolve), valid while resolved is set */
    int resolved;
    arena fmem;        /* function texts and per-stack codes, per resolution */
    vmp_func *funcs;
    size_t funcs_len, funcs_cap;
    vmp_code *codes;
    size_t codes_len, codes_cap;
    vmp_u64map code_index[VMP_FRAME_KIND_COUNT]; /* addr -> code, per kind */
    uint64_t *thread_samples;
};

static void unresolve(vmp_profile *p)
{
    arena_free(&p->fmem);
    free(p->funcs);
    free(p->codes);
    for (int k = 0; k < VMP_FRAME_KIND_COUNT; k++)
        vmp_u64map_free(&p->code_index[k]);
    free(p->thread_samples);
    p->funcs = NULL;
    p->codes = NULL;
    p->thread_samples = NULL;
    p->funcs_len = p->funcs_cap = p->codes_len = p->codes_cap = 0;
    for (size_t i = 0; i < p->stacks_len; i++) {
        p->stacks[i].codes = NULL;
        p->stacks[i].runner_frames = 0;
    }
    p->resolved = 0;
}

vmp_profile *vmp_profile_new(void)
{
    vmp_profile *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->summary.word_size = (int)sizeof(long);
    p->summary.addr_size = (int)sizeof(void *);
    p->summary.truncated_at = -1;
    p->last_thread_index = EMPTY;
    return p;
}

void vmp_profile_free(vmp_profile *p)
{
    if (!p)
        return;
    unresolve(p);
    arena_free(&p->mem);
    free(p->meta);
    free(p->names);
    vmp_u64map_free(&p->name_index);
    free(p->threads);
    vmp_u64map_free(&p->thread_index);
    free(p->stacks);
    free(p->stack_table);
    free(p->sample_stack);
    free(p->sample_rss);
    free(p->sample_time);
    free(p);
}

static size_t arena_bytes(const arena *a)
{
    size_t n = 0;
    for (const arena_chunk *c = a->head; c; c = c->next)
        n += sizeof *c + c->cap;
    return n;
}

static size_t map_bytes(const vmp_u64map *m)
{
    return m->cap * (sizeof *m->keys + sizeof *m->vals);
}

size_t vmp_profile_memory(const vmp_profile *p)
{
    size_t n = sizeof *p + arena_bytes(&p->mem) + arena_bytes(&p->fmem);
    n += p->meta_cap * sizeof *p->meta + p->names_cap * sizeof *p->names +
         map_bytes(&p->name_index);
    n += p->threads_cap * sizeof *p->threads + map_bytes(&p->thread_index);
    n += p->stacks_cap * sizeof *p->stacks + p->stack_table_cap * sizeof *p->stack_table;
    n += p->samples_cap * sizeof *p->sample_stack + p->rss_cap * sizeof *p->sample_rss +
         p->time_cap * sizeof *p->sample_time;
    n += p->funcs_cap * sizeof *p->funcs + p->codes_cap * sizeof *p->codes;
    for (int k = 0; k < VMP_FRAME_KIND_COUNT; k++)
        n += map_bytes(&p->code_index[k]);
    if (p->thread_samples)
        n += (p->threads_len ? p->threads_len : 1) * sizeof *p->thread_samples;
    return n;
}

vmp_profile_summary *vmp_profile_summary_mut(vmp_profile *p)
{
    return &p->summary;
}

const vmp_profile_summary *vmp_profile_get_summary(const vmp_profile *p)
{
    return &p->summary;
}

static char *arena_strdup(arena *a, const char *s, size_t len)
{
    char *d = arena_alloc(a, len + 1);
    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

int vmp_profile_add_meta(vmp_profile *p, const char *key, size_t klen, const char *value,
                         size_t vlen)
{
    if (vmp_array_grow((void **)&p->meta, &p->meta_cap, p->meta_len + 1, sizeof *p->meta) < 0)
        return -1;
    meta_entry *e = &p->meta[p->meta_len];
    e->key = arena_strdup(&p->mem, key, klen);
    e->value = arena_strdup(&p->mem, value, vlen);
    if (!e->key || !e->value)
        return -1;
    e->klen = klen;
    e->vlen = vlen;
    p->meta_len++;
    return 0;
}

size_t vmp_profile_meta_count(const vmp_profile *p)
{
    return p->meta_len;
}

void vmp_profile_meta_at(const vmp_profile *p, size_t i, const char **key, size_t *klen,
                         const char **value, size_t *vlen)
{
    const meta_entry *e = &p->meta[i];
    *key = e->key;
    *klen = e->klen;
    *value = e->value;
    *vlen = e->vlen;
}

static int is_py_name(const char *s, size_t len)
{
    return len >= 3 && memcmp(s, "py:", 3) == 0;
}

int vmp_profile_add_name(vmp_profile *p, uint64_t id, const char *name, size_t len)
{
    uint32_t at;
    if (p->resolved)
        unresolve(p);
    if (vmp_u64map_find(&p->name_index, id, &at)) {
        name_entry *e = &p->names[at];
        /* A code object's memory can be reused, so the newest py: name is the
         * right one; a native symbol for the same address is a lookup artefact
         * and must not hide the Python name. */
        if (is_py_name(e->text, e->len) && !is_py_name(name, len))
            return 0;
        char *t = arena_strdup(&p->mem, name, len);
        if (!t)
            return -1;
        e->text = t;
        e->len = len;
        return 0;
    }
    if (p->names_len >= EMPTY - 1)
        return -1;
    if (vmp_array_grow((void **)&p->names, &p->names_cap, p->names_len + 1, sizeof *p->names) < 0)
        return -1;
    char *t = arena_strdup(&p->mem, name, len);
    if (!t || vmp_u64map_put(&p->name_index, id, (uint32_t)p->names_len) < 0)
        return -1;
    p->names[p->names_len++] = (name_entry){id, t, len};
    return 0;
}

const char *vmp_profile_name(const vmp_profile *p, uint64_t id, size_t *len)
{
    uint32_t at;
    if (!vmp_u64map_find(&p->name_index, id, &at)) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = p->names[at].len;
    return p->names[at].text;
}

size_t vmp_profile_name_count(const vmp_profile *p)
{
    return p->names_len;
}

void vmp_profile_name_at(const vmp_profile *p, size_t i, uint64_t *id, const char **name,
                         size_t *len)
{
    *id = p->names[i].id;
    *name = p->names[i].text;
    *len = p->names[i].len;
}

size_t vmp_profile_thread_count(const vmp_profile *p)
{
    return p->threads_len;
}

uint64_t vmp_profile_thread_id(const vmp_profile *p, size_t i)
{
    return p->threads[i];
}

static int thread_index(vmp_profile *p, uint64_t tid, uint32_t *out)
{
    if (p->last_thread_index != EMPTY && p->last_thread_id == tid) {
        *out = p->last_thread_index;
        return 0;
    }
    uint32_t at;
    if (!vmp_u64map_find(&p->thread_index, tid, &at)) {
        if (p->threads_len >= EMPTY - 1)
            return -1;
        if (vmp_array_grow((void **)&p->threads, &p->threads_cap, p->threads_len + 1,
                 sizeof *p->threads) < 0)
            return -1;
        at = (uint32_t)p->threads_len;
        if (vmp_u64map_put(&p->thread_index, tid, at) < 0)
            return -1;
        p->threads[p->threads_len++] = tid;
    }
    p->last_thread_id = tid;
    p->last_thread_index = at;
    *out = at;
    return 0;
}

static uint64_t hash_stack(const vmp_frame *frames, uint32_t depth, uint32_t thread)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)depth << 32) ^ thread;
    for (uint32_t i = 0; i < depth; i++) {
        uint64_t v = frames[i].addr ^ ((uint64_t)frames[i].line << 40) ^
                     ((uint64_t)frames[i].kind << 56);
        h = (h ^ vmp_mix64(v + i)) * 0x100000001b3ULL;
    }
    return vmp_mix64(h);
}

static int same_stack(const ustack *s, const vmp_frame *frames, uint32_t depth,
                      uint32_t thread, uint64_t hash)
{
    if (s->hash != hash || s->depth != depth || s->thread_index != thread)
        return 0;
    for (uint32_t i = 0; i < depth; i++) {
        if (s->frames[i].addr != frames[i].addr || s->frames[i].line != frames[i].line ||
            s->frames[i].kind != frames[i].kind)
            return 0;
    }
    return 1;
}

static int stack_table_grow(vmp_profile *p)
{
    size_t ncap = p->stack_table_cap ? p->stack_table_cap * 2 : 1024;
    uint32_t *nt = vmp_index_table_new(ncap);
    if (!nt)
        return -1;
    for (size_t i = 0; i < p->stacks_len; i++)
        nt[vmp_index_table_slot(nt, ncap, p->stacks[i].hash)] = (uint32_t)i;
    free(p->stack_table);
    p->stack_table = nt;
    p->stack_table_cap = ncap;
    return 0;
}

/* Appends one sample of unique stack idx to the sample sequence. */
static int append_sample(vmp_profile *p, uint32_t idx, uint64_t rss_kib)
{
    uint64_t n = p->summary.n_samples;
    if (p->resolved)
        unresolve(p);
    if (n >= UINT32_MAX)
        return -1;
    if (n >= p->samples_cap &&
        vmp_array_grow((void **)&p->sample_stack, &p->samples_cap, n + 1, sizeof *p->sample_stack) < 0)
        return -1;
    if (rss_kib || p->sample_rss) {
        /* Only profiles that carry RSS pay for it; earlier samples read 0. */
        size_t before = p->rss_cap;
        if (vmp_array_grow((void **)&p->sample_rss, &p->rss_cap, n + 1, sizeof *p->sample_rss) < 0)
            return -1;
        if (p->rss_cap > before)
            memset(p->sample_rss + before, 0, (p->rss_cap - before) * sizeof *p->sample_rss);
        p->sample_rss[n] = rss_kib;
    }
    p->stacks[idx].count++;
    p->sample_stack[n] = idx;
    p->summary.n_samples = n + 1;
    if (rss_kib > p->summary.max_rss_kib)
        p->summary.max_rss_kib = rss_kib;
    return 0;
}

int vmp_profile_add_sample_at(vmp_profile *p, uint32_t stack_index, uint64_t rss_kib)
{
    if (stack_index >= p->stacks_len)
        return -1;
    return append_sample(p, stack_index, rss_kib);
}

int vmp_profile_add_sample(vmp_profile *p, const vmp_frame *frames, uint32_t depth,
                           uint64_t thread_id, uint64_t rss_kib)
{
    uint32_t thread;
    if (thread_index(p, thread_id, &thread) < 0)
        return -1;
    if (p->summary.n_samples >= UINT32_MAX)
        return -1; /* keep sample indices within what 32-bit consumers hold */

    uint64_t hash = hash_stack(frames, depth, thread);
    if ((p->stacks_len + 1) * 2 > p->stack_table_cap && stack_table_grow(p) < 0)
        return -1;
    size_t mask = p->stack_table_cap - 1;
    size_t slot = hash & mask;
    uint32_t idx;
    for (;; slot = (slot + 1) & mask) {
        idx = p->stack_table[slot];
        if (idx == EMPTY || same_stack(&p->stacks[idx], frames, depth, thread, hash))
            break;
    }
    if (idx == EMPTY) {
        if (p->stacks_len >= EMPTY - 1)
            return -1;
        if (vmp_array_grow((void **)&p->stacks, &p->stacks_cap, p->stacks_len + 1, sizeof *p->stacks) < 0)
            return -1;
        vmp_frame *copy = NULL;
        if (depth) {
            copy = arena_alloc(&p->mem, (size_t)depth * sizeof *copy);
            if (!copy)
                return -1;
            for (uint32_t i = 0; i < depth; i++) {
                copy[i] = (vmp_frame){frames[i].addr, frames[i].line, frames[i].kind};
            }
        }
        idx = (uint32_t)p->stacks_len++;
        p->stacks[idx] = (ustack){copy, depth, thread, 0, hash, NULL, 0};
        p->stack_table[slot] = idx;
    }

    return append_sample(p, idx, rss_kib);
}

size_t vmp_profile_stack_count(const vmp_profile *p)
{
    return p->stacks_len;
}

void vmp_profile_stack_at(const vmp_profile *p, size_t i, vmp_stack *out)
{
    const ustack *s = &p->stacks[i];
    out->frames = s->frames;
    out->depth = s->depth;
    out->thread_index = s->thread_index;
    out->count = s->count;
    out->codes = s->codes;
    out->runner_frames = s->runner_frames;
}

uint32_t vmp_profile_sample_stack(const vmp_profile *p, uint64_t i)
{
    return p->sample_stack[i];
}

uint64_t vmp_profile_sample_rss(const vmp_profile *p, uint64_t i)
{
    return p->sample_rss ? p->sample_rss[i] : 0;
}

int vmp_profile_set_sample_time(vmp_profile *p, int64_t time_ns)
{
    uint64_t n = p->summary.n_samples;
    if (n == 0)
        return -1;
    size_t before = p->time_cap;
    if (vmp_array_grow((void **)&p->sample_time, &p->time_cap, n, sizeof *p->sample_time) < 0)
        return -1;
    if (p->time_cap > before)
        memset(p->sample_time + before, 0, (p->time_cap - before) * sizeof *p->sample_time);
    p->sample_time[n - 1] = time_ns;
    return 0;
}

int vmp_profile_has_sample_times(const vmp_profile *p)
{
    return p->sample_time != NULL;
}

int64_t vmp_profile_sample_time(const vmp_profile *p, uint64_t i)
{
    return p->sample_time && i < p->time_cap ? p->sample_time[i] : 0;
}

/* ---- the resolved view: functions, codes, runner frames ------------------- */

static const char *const unnamed_kind_names[VMP_FRAME_KIND_COUNT] = {
    [VMP_FRAME_JIT] = "<JIT code>",
    [VMP_FRAME_GC] = "<garbage collector>",
    [VMP_FRAME_BLACKHOLE] = "<blackhole interpreter>",
    [VMP_FRAME_ASSEMBLER] = "<assembler>",
    [VMP_FRAME_JIT_TRACING] = "<JIT tracing>",
};

static uint64_t func_hash(uint8_t kind, const char *name, size_t nlen, const char *file,
                          size_t flen, uint32_t line)
{
    return vmp_mix64(vmp_hash_bytes(name, nlen, kind) ^
                     vmp_hash_bytes(file, flen, 0x51ed27 + (uint64_t)line));
}

/* The function of (kind, name, file, line), added when new: ids that name the
 * same function share it.  func_by_hash maps a text hash to the first
 * function with it; collisions are chained through next_same_hash. */
typedef struct func_builder {
    vmp_u64map by_hash;
    uint32_t *next_same_hash;
    size_t next_cap;
} func_builder;

static uint32_t intern_func(vmp_profile *p, func_builder *fb, uint8_t kind, const char *name,
                            size_t nlen, const char *file, size_t flen, uint32_t line,
                            uint64_t addr)
{
    uint64_t h = func_hash(kind, name, nlen, file, flen, line);
    uint32_t at;
    if (vmp_u64map_find(&fb->by_hash, h, &at)) {
        for (uint32_t i = at; i != VMP_NONE; i = fb->next_same_hash[i]) {
            const vmp_func *f = &p->funcs[i];
            if (f->kind == kind && f->first_line == line && strlen(f->name) == nlen &&
                memcmp(f->name, name, nlen) == 0 && strlen(f->file) == flen &&
                memcmp(f->file, file, flen) == 0)
                return i;
        }
    }
    if (p->funcs_len >= VMP_NONE - 1 ||
        vmp_array_grow((void **)&p->funcs, &p->funcs_cap, p->funcs_len + 1, sizeof *p->funcs) < 0 ||
        vmp_array_grow((void **)&fb->next_same_hash, &fb->next_cap, p->funcs_len + 1,
             sizeof *fb->next_same_hash) < 0)
        return VMP_NONE;
    uint32_t i = (uint32_t)p->funcs_len;
    char *n = arena_strdup(&p->fmem, name, nlen), *f = arena_strdup(&p->fmem, file, flen);
    if (!n || !f)
        return VMP_NONE;
    vmp_func *fn = &p->funcs[i];
    memset(fn, 0, sizeof *fn);
    fn->name = n;
    fn->file = f;
    fn->first_line = line;
    fn->kind = kind;
    fn->addr = addr;
    fn->interpreter = kind == VMP_FRAME_NATIVE && vmp_name_is_interpreter(name, nlen);
    fn->runner = kind == VMP_FRAME_PYTHON ? (uint8_t)vmp_name_is_runner_file(file, flen) : 0;
    fb->next_same_hash[i] = VMP_NONE;
    if (vmp_u64map_find(&fb->by_hash, h, &at)) {
        fb->next_same_hash[i] = at; /* newest first in the chain */
    }
    if (vmp_u64map_put(&fb->by_hash, h, i) < 0)
        return VMP_NONE;
    p->funcs_len++;
    return i;
}

/* The code of a stack frame, made on first sight with its function. */
static uint32_t code_of(vmp_profile *p, func_builder *fb, const vmp_frame *fr)
{
    uint8_t kind = fr->kind < VMP_FRAME_KIND_COUNT ? fr->kind : VMP_FRAME_PYTHON;
    uint32_t at;
    if (vmp_u64map_find(&p->code_index[kind], fr->addr, &at))
        return at;
    size_t len;
    const char *name = vmp_profile_name(p, fr->addr, &len);
    vmp_name_parts parts;
    char hex[24];
    uint8_t fkind = kind;
    if (name) {
        vmp_name_parse(name, len, &parts);
        /* PyPy's JIT frames carry the code id of the Python function they
         * run: with a "py:" name they are that function; an id named by a
         * native-symbol record is native whatever its low bit says (the
         * original's eval trampoline in 3.9/3.10 files) */
        if (parts.lang == VMP_NAME_PYTHON && kind != VMP_FRAME_NATIVE)
            fkind = VMP_FRAME_PYTHON;
        if (parts.lang == VMP_NAME_NATIVE)
            fkind = VMP_FRAME_NATIVE;
    } else {
        parts.file = "";
        parts.file_len = 0;
        parts.line = 0;
        if (unnamed_kind_names[kind]) {
            parts.func = unnamed_kind_names[kind];
            parts.func_len = strlen(parts.func);
        } else {
            parts.func_len = (size_t)snprintf(hex, sizeof hex, "0x%llx",
                                              (unsigned long long)fr->addr);
            parts.func = hex;
        }
    }
    uint32_t func = intern_func(p, fb, fkind, parts.func, parts.func_len, parts.file,
                                parts.file_len, parts.line, fr->addr);
    if (func == VMP_NONE || p->codes_len >= VMP_NONE - 1 ||
        vmp_array_grow((void **)&p->codes, &p->codes_cap, p->codes_len + 1, sizeof *p->codes) < 0)
        return VMP_NONE;
    at = (uint32_t)p->codes_len;
    if (vmp_u64map_put(&p->code_index[kind], fr->addr, at) < 0)
        return VMP_NONE;
    p->codes[p->codes_len++] = (vmp_code){fr->addr, func, kind};
    return at;
}

/* How many leading frames belong to `python -m vmprof`'s runner: up to the
 * first Python frame of the program, when every Python frame before it is a
 * runner's and there is one (other kinds between them, such as the
 * interpreter's native frames, go with the runner).  0 when the stack has no
 * program frame. */
static uint32_t runner_prefix(const vmp_profile *p, const ustack *s)
{
    int seen_runner = 0;
    for (uint32_t i = 0; i < s->depth; i++) {
        const vmp_func *f = &p->funcs[p->codes[s->codes[i]].func];
        if (f->kind != VMP_FRAME_PYTHON)
            continue;
        if (f->runner) {
            seen_runner |= f->runner == VMP_NAME_RUNNER;
            continue;
        }
        return seen_runner ? i : 0;
    }
    return 0;
}

int vmp_profile_resolve(vmp_profile *p)
{
    if (p->resolved)
        return 0;
    unresolve(p);
    func_builder fb = {0};
    p->thread_samples = calloc(p->threads_len ? p->threads_len : 1, sizeof *p->thread_samples);
    if (!p->thread_samples)
        goto oom;
    for (size_t i = 0; i < p->stacks_len; i++) {
        ustack *s = &p->stacks[i];
        p->thread_samples[s->thread_index] += s->count;
        if (!s->depth)
            continue;
        s->codes = arena_alloc(&p->fmem, (size_t)s->depth * sizeof *s->codes);
        if (!s->codes)
            goto oom;
        for (uint32_t j = 0; j < s->depth; j++)
            if ((s->codes[j] = code_of(p, &fb, &s->frames[j])) == VMP_NONE)
                goto oom;
    }
    for (size_t i = 0; i < p->stacks_len; i++)
        if (p->stacks[i].depth)
            p->stacks[i].runner_frames = runner_prefix(p, &p->stacks[i]);
    vmp_u64map_free(&fb.by_hash);
    free(fb.next_same_hash);
    p->resolved = 1;
    return 0;
oom:
    vmp_u64map_free(&fb.by_hash);
    free(fb.next_same_hash);
    unresolve(p);
    return -1;
}

/* Accessors resolve a hand-built profile on first use; read profiles are
 * resolved by the reader, so these never write to them. */
static const vmp_profile *resolved(const vmp_profile *p)
{
    if (!p->resolved)
        vmp_profile_resolve((vmp_profile *)p);
    return p;
}

int vmp_profile_check_resolved(const vmp_profile *p)
{
    return resolved(p)->resolved ? 0 : -1;
}

const vmp_code *vmp_profile_codes(const vmp_profile *p, size_t *n)
{
    resolved(p);
    *n = p->resolved ? p->codes_len : 0;
    return p->resolved ? p->codes : NULL;
}

uint32_t vmp_profile_code_find(const vmp_profile *p, uint64_t addr, uint8_t kind)
{
    uint32_t at;
    resolved(p);
    if (!p->resolved || kind >= VMP_FRAME_KIND_COUNT ||
        !vmp_u64map_find(&p->code_index[kind], addr, &at))
        return VMP_NONE;
    return at;
}

uint32_t vmp_profile_func_of_addr(const vmp_profile *p, uint64_t addr)
{
    size_t n;
    const vmp_code *codes = vmp_profile_codes(p, &n);
    for (int kind = 0; kind < VMP_FRAME_KIND_COUNT; kind++) {
        uint32_t c = vmp_profile_code_find(p, addr, (uint8_t)kind);
        if (c != VMP_NONE && c < n)
            return codes[c].func;
    }
    return VMP_NONE;
}

const vmp_func *vmp_profile_funcs(const vmp_profile *p, size_t *n)
{
    resolved(p);
    *n = p->resolved ? p->funcs_len : 0;
    return p->resolved ? p->funcs : NULL;
}

uint32_t vmp_profile_find_func(const vmp_profile *p, uint8_t kind, const char *name,
                               const char *file, uint32_t first_line)
{
    size_t n;
    const vmp_func *f = vmp_profile_funcs(p, &n);
    if (!file)
        file = "";
    for (size_t i = 0; i < n; i++)
        if (f[i].kind == kind && f[i].first_line == first_line && strcmp(f[i].name, name) == 0 &&
            strcmp(f[i].file, file) == 0)
            return (uint32_t)i;
    return VMP_NONE;
}

uint64_t vmp_profile_thread_samples(const vmp_profile *p, size_t i)
{
    resolved(p);
    return p->resolved && i < p->threads_len ? p->thread_samples[i] : 0;
}

const char *vmp_profile_meta_get(const vmp_profile *p, const char *key)
{
    size_t klen = strlen(key);
    for (size_t i = p->meta_len; i-- > 0;)
        if (p->meta[i].klen == klen && memcmp(p->meta[i].key, key, klen) == 0)
            return p->meta[i].value;
    return NULL;
}

static double recorded_ms(const vmp_profile_summary *s)
{
    if (!s->has_start_time || !s->has_end_time)
        return 0;
    double ms = (double)(s->end_sec - s->start_sec) * 1000.0 +
                (double)(s->end_usec - s->start_usec) / 1000.0;
    return ms > 0 ? ms : 0;
}

double vmp_profile_sample_ms(const vmp_profile *p, uint64_t i)
{
    const vmp_profile_summary *s = &p->summary;
    double ms = recorded_ms(s);
    if (ms > 0 && s->n_samples > 1)
        return (double)i * ms / (double)s->n_samples;
    return (double)i * (s->period_usec ? (double)s->period_usec / 1000.0 : 1.0);
}

void vmp_profile_facts(const vmp_profile *p, vmp_facts *out)
{
    const vmp_profile_summary *s = &p->summary;
    memset(out, 0, sizeof *out);
    memcpy(out->interp, s->interp, sizeof out->interp);
    const char *argv = vmp_profile_meta_get(p, "argv");
    out->argv = argv ? argv : "";
    out->version = s->version;
    out->period_usec = s->period_usec;
    out->n_samples = s->n_samples;
    out->n_threads = p->threads_len;
    vmp_profile_funcs(p, &out->n_functions);
    out->lines = (s->mode & VMP_MODE_LINES) != 0;
    out->memory = (s->mode & VMP_MODE_MEMORY) != 0;
    out->native = (s->mode & VMP_MODE_NATIVE) != 0;
    out->real_time = (s->mode & VMP_MODE_REAL_TIME) != 0;
    out->rpython = (s->mode & VMP_MODE_RPYTHON) != 0;
    out->has_start = s->has_start_time;
    out->start_sec = s->start_sec;
    out->start_usec = s->start_usec;
    out->start_zone = s->start_zone;
    out->has_end = s->has_end_time;
    out->end_sec = s->end_sec;
    out->end_usec = s->end_usec;
    out->duration_ms = s->n_samples ? vmp_profile_sample_ms(p, s->n_samples) : 0.0;
    out->complete = s->complete;
    out->truncated_at = s->truncated_at;
    out->max_rss_kib = s->max_rss_kib;
}
