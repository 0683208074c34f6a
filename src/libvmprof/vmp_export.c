/* vmp_export.c - the export entry points, the export view and the per-thread
 * call tree the format files share (see vmp_export.h). */
#include "vmp_export.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmp_hash.h"

typedef int (*format_writer)(const vmp_xview *, FILE *, const vmp_export_options *,
                             vmp_error *);

static const struct {
    const char *name;
    format_writer write;
} formats[VMP_EXPORT_FORMAT_COUNT] = {
    [VMP_EXPORT_COLLAPSED] = {"collapsed", vmp_export_collapsed},
    [VMP_EXPORT_SPEEDSCOPE] = {"speedscope", vmp_export_speedscope},
    [VMP_EXPORT_PPROF] = {"pprof", vmp_export_pprof},
    [VMP_EXPORT_FIREFOX] = {"firefox", vmp_export_firefox},
    [VMP_EXPORT_HTML] = {"html", vmp_export_html},
};

int vmp_export_format_from_name(const char *name)
{
    int i;
    for (i = 0; i < VMP_EXPORT_FORMAT_COUNT; i++)
        if (name && strcmp(name, formats[i].name) == 0)
            return i;
    return -1;
}

const char *vmp_export_format_name(vmp_export_format format)
{
    return (unsigned)format < VMP_EXPORT_FORMAT_COUNT ? formats[format].name : "?";
}

const char *vmp_export_format_list(void)
{
    static char list[128];
    size_t i;
    if (!list[0])
        for (i = 0; i < VMP_EXPORT_FORMAT_COUNT; i++) {
            if (i)
                strcat(list, ", ");
            strcat(list, formats[i].name);
        }
    return list;
}

/* ---- a small open-addressing map: two 64-bit words -> uint32 ------------ */

typedef struct map_slot {
    uint64_t k1, k2;
    uint32_t value; /* UINT32_MAX: empty */
} map_slot;

typedef struct map {
    map_slot *slots;
    size_t cap, used; /* cap is a power of two */
} map;

static int map_init(map *m, size_t expect)
{
    size_t cap = 64, i;
    while (cap < expect * 2)
        cap *= 2;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots)
        return -1;
    for (i = 0; i < cap; i++)
        m->slots[i].value = UINT32_MAX;
    m->cap = cap;
    m->used = 0;
    return 0;
}

static void map_free(map *m)
{
    free(m->slots);
    m->slots = NULL;
}

static size_t map_home(const map *m, uint64_t k1, uint64_t k2)
{
    return (size_t)(vmp_mix64(k1 ^ vmp_mix64(k2 + 0x9e3779b97f4a7c15ULL)) & (m->cap - 1));
}

static uint32_t map_get(const map *m, uint64_t k1, uint64_t k2)
{
    size_t i = map_home(m, k1, k2);
    while (m->slots[i].value != UINT32_MAX) {
        if (m->slots[i].k1 == k1 && m->slots[i].k2 == k2)
            return m->slots[i].value;
        i = (i + 1) & (m->cap - 1);
    }
    return UINT32_MAX;
}

static int map_grow(map *m)
{
    map bigger;
    size_t i;
    if (map_init(&bigger, m->cap) < 0)
        return -1;
    for (i = 0; i < m->cap; i++) {
        map_slot *s = &m->slots[i];
        if (s->value != UINT32_MAX) {
            size_t j = map_home(&bigger, s->k1, s->k2);
            while (bigger.slots[j].value != UINT32_MAX)
                j = (j + 1) & (bigger.cap - 1);
            bigger.slots[j] = *s;
        }
    }
    bigger.used = m->used;
    free(m->slots);
    *m = bigger;
    return 0;
}

/* The key must not be present. */
static int map_put(map *m, uint64_t k1, uint64_t k2, uint32_t value)
{
    size_t i;
    if ((m->used + 1) * 4 > m->cap * 3 && map_grow(m) < 0)
        return -1;
    i = map_home(m, k1, k2);
    while (m->slots[i].value != UINT32_MAX)
        i = (i + 1) & (m->cap - 1);
    m->slots[i].k1 = k1;
    m->slots[i].k2 = k2;
    m->slots[i].value = value;
    m->used++;
    return 0;
}

/* ---- growable arrays ------------------------------------------------------ */

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    size_t c = *cap ? *cap : 64;
    void *n;
    if (need <= *cap)
        return 0;
    while (c < need)
        c *= 2;
    n = realloc(*arr, c * elem);
    if (!n)
        return -1;
    *arr = n;
    *cap = c;
    return 0;
}

/* ---- the export view -------------------------------------------------------- */

typedef struct xview_priv {
    size_t funcs_cap, frames_cap, stacks_cap, arena_len, arena_cap;
    uint32_t *arena; /* frame sequences of the view stacks */
    char (*hexnames)[24]; /* names of unnamed ids, by func index */
} xview_priv;

static const char *const kind_names[VMP_FRAME_KIND_COUNT] = {
    [VMP_FRAME_PYTHON] = NULL,
    [VMP_FRAME_NATIVE] = NULL,
    [VMP_FRAME_JIT] = "<JIT code>",
    [VMP_FRAME_GC] = "<garbage collector>",
    [VMP_FRAME_BLACKHOLE] = "<blackhole interpreter>",
    [VMP_FRAME_ASSEMBLER] = "<assembler>",
    [VMP_FRAME_JIT_TRACING] = "<JIT tracing>",
};

/* Splits "py:name:line:file" / "n:symbol:line:file".  The name part may itself
 * hold colons, so the split is at the first ":<digits>:" after the prefix. */
static void parse_name(const char *s, size_t len, vmp_xfunc *f)
{
    size_t start = 0, i, j;
    if (len >= 3 && memcmp(s, "py:", 3) == 0)
        start = 3;
    else if (len >= 2 && memcmp(s, "n:", 2) == 0)
        start = 2;
    f->name = s + start;
    f->name_len = len - start;
    f->file = "";
    f->file_len = 0;
    f->first_line = 0;
    if (!start)
        return;
    for (i = start; i < len; i++) {
        uint64_t line = 0;
        if (s[i] != ':')
            continue;
        j = i + 1;
        if (j < len && s[j] == '-') /* a line of -1 from PyCode_Addr2Line */
            j++;
        while (j < len && s[j] >= '0' && s[j] <= '9' && j - i < 12)
            line = line * 10 + (uint64_t)(s[j++] - '0');
        if (j > i + 1 && j < len && s[j] == ':' && s[j - 1] != '-') {
            f->name_len = i - start;
            f->first_line = s[i + 1] == '-' ? 0 : (uint32_t)line;
            f->file = s + j + 1;
            f->file_len = len - j - 1;
            if (f->file_len == 1 && f->file[0] == '-') /* native: no file */
                f->file_len = 0;
            return;
        }
    }
}

typedef struct xbuild {
    vmp_xview *v;
    xview_priv *pv;
    map addr_map;  /* (addr, kind) -> func */
    map func_map;  /* (hash(name, file, line, kind), hash2) -> func */
    map frame_map; /* (func, line) -> frame */
    map stack_map; /* (hash(thread, frames), 0) probing by content */
    char (*hexnames)[24];
    size_t hexnames_cap;
} xbuild;

static uint32_t func_for(xbuild *b, const vmp_frame *fr)
{
    vmp_xview *v = b->v;
    vmp_xfunc f;
    uint64_t h1 = 0, h2 = 0;
    uint32_t idx;
    size_t len;
    const char *name;
    uint8_t kind = fr->kind < VMP_FRAME_KIND_COUNT ? fr->kind : VMP_FRAME_PYTHON;
    uint64_t addr = fr->addr;
    idx = map_get(&b->addr_map, addr, kind);
    if (idx != UINT32_MAX)
        return idx;
    name = vmp_profile_name(v->profile, fr->addr, &len);
    memset(&f, 0, sizeof f);
    /* PyPy's JIT frames carry the code id of the Python function they run:
     * with a "py:" name they are that function, like its interpreted frames */
    f.kind = name && len >= 3 && memcmp(name, "py:", 3) == 0 && kind != VMP_FRAME_NATIVE
                 ? VMP_FRAME_PYTHON
                 : kind;
    /* and an id named by a native-symbol record is native whatever its low
     * bit says (the original's eval trampoline in 3.9/3.10 files) */
    if (name && len >= 2 && memcmp(name, "n:", 2) == 0)
        f.kind = VMP_FRAME_NATIVE;
    if (!name && kind_names[kind]) {
        /* PyPy's unnamed machine-level frames: one func per kind */
        f.name = kind_names[kind];
        f.name_len = strlen(f.name);
        f.file = "";
    } else if (name) {
        parse_name(name, len, &f);
    } else {
        /* unnamed: its id in hex, kept in storage that lives with the view */
        if (grow((void **)&b->hexnames, &b->hexnames_cap, v->n_funcs + 1, sizeof *b->hexnames) <
            0)
            return UINT32_MAX - 1;
        f.name_len = (size_t)snprintf(b->hexnames[v->n_funcs], sizeof b->hexnames[0],
                                      "0x%" PRIx64, fr->addr);
        f.name = NULL; /* fixed up once the hex storage stops moving */
        f.file = "";
    }
    /* ids that name the same function (a code object re-created at another
     * address) share one func */
    if (f.name) {
        h1 = vmp_hash_bytes(f.name, f.name_len, f.first_line) ^
             vmp_hash_bytes(f.file, f.file_len, 1);
        h2 = vmp_hash_bytes(f.file, f.file_len, f.first_line * 31 + f.kind + 7) +
             vmp_hash_bytes(f.name, f.name_len, 2);
        idx = map_get(&b->func_map, h1, h2);
        if (idx != UINT32_MAX)
            return map_put(&b->addr_map, addr, kind, idx) < 0 ? UINT32_MAX - 1 : idx;
    }
    if (grow((void **)&v->funcs, &b->pv->funcs_cap, v->n_funcs + 1, sizeof *v->funcs) < 0)
        return UINT32_MAX - 1;
    idx = (uint32_t)v->n_funcs++;
    v->funcs[idx] = f;
    if (f.name && map_put(&b->func_map, h1, h2, idx) < 0)
        return UINT32_MAX - 1;
    if (map_put(&b->addr_map, addr, kind, idx) < 0)
        return UINT32_MAX - 1;
    return idx;
}

static uint32_t frame_for(xbuild *b, uint32_t func, uint32_t line)
{
    vmp_xview *v = b->v;
    uint32_t idx = map_get(&b->frame_map, func, line);
    if (idx != UINT32_MAX)
        return idx;
    if (grow((void **)&v->frames, &b->pv->frames_cap, v->n_frames + 1, sizeof *v->frames) < 0)
        return UINT32_MAX - 1;
    idx = (uint32_t)v->n_frames++;
    v->frames[idx].func = func;
    v->frames[idx].line = line;
    if (map_put(&b->frame_map, func, line, idx) < 0)
        return UINT32_MAX - 1;
    return idx;
}

/* Interns (thread, seq[0..depth)) as a view stack; returns its index. */
static uint32_t stack_for(xbuild *b, uint32_t thread, const uint32_t *seq, uint32_t depth,
                          uint64_t count)
{
    vmp_xview *v = b->v;
    xview_priv *pv = b->pv;
    uint64_t h = vmp_hash_bytes(seq, depth * sizeof *seq, thread);
    size_t i = map_home(&b->stack_map, h, 0);
    uint32_t idx;
    map_slot *s;
    for (; (s = &b->stack_map.slots[i])->value != UINT32_MAX; i = (i + 1) & (b->stack_map.cap - 1)) {
        vmp_xstack *xs = &v->stacks[s->value];
        if (s->k1 == h && xs->thread == thread && xs->depth == depth &&
            memcmp(pv->arena + (size_t)(uintptr_t)xs->frames, seq, depth * sizeof *seq) == 0) {
            xs->count += count;
            return s->value;
        }
    }
    if (grow((void **)&v->stacks, &pv->stacks_cap, v->n_stacks + 1, sizeof *v->stacks) < 0 ||
        grow((void **)&pv->arena, &pv->arena_cap, pv->arena_len + depth + 1, sizeof *pv->arena) <
            0)
        return UINT32_MAX - 1;
    idx = (uint32_t)v->n_stacks++;
    /* frames holds an arena offset until the arena stops growing */
    v->stacks[idx].frames = (const uint32_t *)(uintptr_t)pv->arena_len;
    v->stacks[idx].depth = depth;
    v->stacks[idx].thread = thread;
    v->stacks[idx].count = count;
    memcpy(pv->arena + pv->arena_len, seq, depth * sizeof *seq);
    pv->arena_len += depth;
    if (map_put(&b->stack_map, h, 0, idx) < 0)
        return UINT32_MAX - 1;
    return idx;
}

void vmp_xview_free(vmp_xview *v)
{
    xview_priv *pv = v->priv;
    if (pv) {
        free(pv->arena);
        free(pv->hexnames);
        free(pv);
    }
    free(v->funcs);
    free(v->frames);
    free(v->stacks);
    free(v->stack_map);
    free(v->thread_on);
    memset(v, 0, sizeof *v);
}

int vmp_xview_build(vmp_xview *v, const vmp_profile *p, const vmp_export_options *o,
                    vmp_error *err)
{
    static const vmp_export_options defaults;
    const vmp_profile_summary *sum = vmp_profile_get_summary(p);
    size_t n_threads = vmp_profile_thread_count(p), n_pstacks = vmp_profile_stack_count(p), i;
    size_t seq_cap = 0;
    uint32_t *seq = NULL;
    xbuild b;
    int lines, rc = -1;

    if (!o)
        o = &defaults;
    memset(v, 0, sizeof *v);
    memset(&b, 0, sizeof b);
    v->profile = p;
    b.v = v;
    b.pv = v->priv = calloc(1, sizeof(xview_priv));
    v->thread_on = calloc(n_threads ? n_threads : 1, 1);
    v->stack_map = malloc((n_pstacks ? n_pstacks : 1) * sizeof *v->stack_map);
    if (!b.pv || !v->thread_on || !v->stack_map || map_init(&b.addr_map, 1024) < 0 ||
        map_init(&b.func_map, 1024) < 0 || map_init(&b.frame_map, 1024) < 0 ||
        map_init(&b.stack_map, n_pstacks) < 0)
        goto oom;

    for (i = 0; i < n_threads; i++)
        v->thread_on[i] = !o->has_thread || vmp_profile_thread_id(p, i) == o->thread_id;
    if (o->has_thread) {
        int found = 0;
        for (i = 0; i < n_threads; i++)
            found |= v->thread_on[i];
        if (!found) {
            vmp_error_set(err, -1,
                          "thread %" PRIu64 " (0x%" PRIx64 ") is not in the profile; it has %zu "
                          "thread(s): pick one of those ids",
                          o->thread_id, o->thread_id, n_threads);
            goto out;
        }
    }
    lines = o->lines && (sum->mode & 0x02 /* VMP_MODE_LINES */);

    for (i = 0; i < n_pstacks; i++) {
        vmp_stack st;
        uint32_t d, n = 0, idx;
        vmp_profile_stack_at(p, i, &st);
        v->stack_map[i] = UINT32_MAX;
        if (st.thread_index >= n_threads || !v->thread_on[st.thread_index])
            continue;
        if (grow((void **)&seq, &seq_cap, st.depth + 1, sizeof *seq) < 0)
            goto oom;
        for (d = 0; d < st.depth; d++) {
            const vmp_frame *fr = &st.frames[d];
            uint32_t func, frame;
            func = func_for(&b, fr);
            if (func == UINT32_MAX - 1)
                goto oom;
            if (o->no_native && v->funcs[func].kind == VMP_FRAME_NATIVE)
                continue;
            frame = frame_for(&b, func, lines && fr->line ? fr->line : v->funcs[func].first_line);
            if (frame == UINT32_MAX - 1)
                goto oom;
            seq[n++] = frame;
        }
        idx = stack_for(&b, st.thread_index, seq, n, st.count);
        if (idx == UINT32_MAX - 1)
            goto oom;
        v->stack_map[i] = idx;
        v->n_samples += st.count;
    }
    /* storage stopped moving: turn offsets into pointers */
    for (i = 0; i < v->n_stacks; i++)
        v->stacks[i].frames = b.pv->arena + (size_t)(uintptr_t)v->stacks[i].frames;
    /* unnamed ids: their hex text stays in hexnames, now owned by the view */
    for (i = 0; i < v->n_funcs; i++)
        if (!v->funcs[i].name)
            v->funcs[i].name = b.hexnames[i];
    b.pv->hexnames = b.hexnames;
    b.hexnames = NULL;
    if (o->title && *o->title)
        snprintf(v->title, sizeof v->title, "%s", o->title);
    else {
        /* the profiled command, when the writer recorded it (META "argv") */
        const char *argv = NULL, *key, *val;
        size_t klen, vlen = 0;
        for (i = 0; i < vmp_profile_meta_count(p); i++) {
            vmp_profile_meta_at(p, i, &key, &klen, &val, &vlen);
            if (klen == 4 && memcmp(key, "argv", 4) == 0 && vlen) {
                argv = val;
                break;
            }
        }
        if (argv)
            snprintf(v->title, sizeof v->title, "%.*s - vmprof %s profile, %" PRIu64 " samples",
                     (int)(vlen > 120 ? 120 : vlen), argv, sum->interp[0] ? sum->interp : "",
                     sum->n_samples);
        else
            snprintf(v->title, sizeof v->title, "vmprof %s profile, %" PRIu64 " samples",
                     sum->interp[0] ? sum->interp : "", sum->n_samples);
    }
    rc = 0;
    goto out;
oom:
    vmp_error_set(err, -1, "out of memory while preparing the export; free memory or export one "
                           "thread (--thread)");
out:
    free(seq);
    free(b.hexnames);
    map_free(&b.addr_map);
    map_free(&b.func_map);
    map_free(&b.frame_map);
    map_free(&b.stack_map);
    if (rc < 0)
        vmp_xview_free(v);
    return rc;
}

double vmp_xview_period_ms(const vmp_xview *v)
{
    const vmp_profile_summary *s = vmp_profile_get_summary(v->profile);
    return s->period_usec ? (double)s->period_usec / 1000.0 : 1.0;
}

double vmp_xview_sample_ms(const vmp_xview *v, uint64_t i)
{
    const vmp_profile_summary *s = vmp_profile_get_summary(v->profile);
    if (s->has_start_time && s->has_end_time && s->n_samples > 1) {
        double ms = (double)(s->end_sec - s->start_sec) * 1000.0 +
                    (double)(s->end_usec - s->start_usec) / 1000.0;
        if (ms > 0)
            return (double)i * ms / (double)s->n_samples;
    }
    return (double)i * vmp_xview_period_ms(v);
}

const char *vmp_xview_thread_label(const vmp_xview *v, uint32_t thread, char *buf, size_t size)
{
    snprintf(buf, size, "Thread %u (0x%" PRIx64 ")", thread + 1,
             vmp_profile_thread_id(v->profile, thread));
    return buf;
}

/* ---- per-thread call tree ------------------------------------------------- */

typedef struct xtree_priv {
    size_t cap;
} xtree_priv;

void vmp_xtree_free(vmp_xtree *t)
{
    free(t->nodes);
    free(t->stack_leaf);
    free(t->priv);
    memset(t, 0, sizeof *t);
}

int vmp_xtree_build(vmp_xtree *t, const vmp_xview *v, uint32_t thread, vmp_error *err)
{
    map children; /* (parent, frame) -> node */
    xtree_priv *pt;
    size_t i;
    memset(t, 0, sizeof *t);
    pt = t->priv = calloc(1, sizeof *pt);
    t->stack_leaf = malloc((v->n_stacks ? v->n_stacks : 1) * sizeof *t->stack_leaf);
    if (!pt || !t->stack_leaf || map_init(&children, v->n_stacks * 4) < 0)
        goto oom;
    if (grow((void **)&t->nodes, &pt->cap, 1, sizeof *t->nodes) < 0)
        goto oom_map;
    t->nodes[0].parent = UINT32_MAX;
    t->nodes[0].frame = UINT32_MAX;
    t->nodes[0].total = t->nodes[0].self = 0;
    t->n_nodes = 1;
    for (i = 0; i < v->n_stacks; i++) {
        const vmp_xstack *st = &v->stacks[i];
        uint32_t node = 0, d;
        if (thread != UINT32_MAX && st->thread != thread) {
            t->stack_leaf[i] = UINT32_MAX;
            continue;
        }
        t->nodes[0].total += st->count;
        for (d = 0; d < st->depth; d++) {
            uint32_t child = map_get(&children, node, st->frames[d]);
            if (child == UINT32_MAX) {
                if (t->n_nodes >= UINT32_MAX - 2 ||
                    grow((void **)&t->nodes, &pt->cap, t->n_nodes + 1, sizeof *t->nodes) < 0)
                    goto oom_map;
                child = (uint32_t)t->n_nodes++;
                t->nodes[child].parent = node;
                t->nodes[child].frame = st->frames[d];
                t->nodes[child].total = t->nodes[child].self = 0;
                if (map_put(&children, node, st->frames[d], child) < 0)
                    goto oom_map;
            }
            t->nodes[child].total += st->count;
            node = child;
        }
        t->nodes[node].self += st->count;
        t->stack_leaf[i] = node;
    }
    map_free(&children);
    return 0;
oom_map:
    map_free(&children);
oom:
    vmp_xtree_free(t);
    return vmp_error_set(err, -1, "out of memory while building the call tree for the export");
}

/* ---- entry points ----------------------------------------------------------- */

int vmp_export_write(const vmp_profile *p, vmp_export_format format, FILE *out,
                     const vmp_export_options *options, vmp_error *err)
{
    vmp_export_options opts;
    vmp_xview v;
    int rc;
    memset(&opts, 0, sizeof opts);
    if ((unsigned)format >= VMP_EXPORT_FORMAT_COUNT)
        return vmp_error_set(err, -1, "unknown export format %d; the formats are: %s", (int)format,
                             vmp_export_format_list());
    /* pprof and the Firefox Profiler keep functions and lines apart
     * themselves (a Location or frame per line, grouped by function), so a
     * lines-mode profile always gives them its lines */
    if (format == VMP_EXPORT_PPROF || format == VMP_EXPORT_FIREFOX) {
        if (options)
            opts = *options;
        opts.lines = 1;
        options = &opts;
    }
    if (vmp_xview_build(&v, p, options, err) < 0)
        return -1;
    rc = formats[format].write(&v, out, options, err);
    vmp_xview_free(&v);
    if (fflush(out) != 0 || ferror(out)) {
        if (rc == 0)
            vmp_error_set(err, -1, "writing the %s export failed: %s; check the disk space and "
                                   "the output path",
                          formats[format].name, strerror(errno));
        return -1;
    }
    return rc;
}

int vmp_export_write_fd(const vmp_profile *p, vmp_export_format format, int fd,
                        const vmp_export_options *options, vmp_error *err)
{
    int dup_fd = dup(fd), rc;
    FILE *out;
    if (dup_fd < 0 || !(out = fdopen(dup_fd, "wb"))) {
        if (dup_fd >= 0)
            close(dup_fd);
        return vmp_error_set(err, -1, "cannot write the export to file descriptor %d: %s", fd,
                             strerror(errno));
    }
    rc = vmp_export_write(p, format, out, options, err);
    if (fclose(out) != 0 && rc == 0)
        rc = vmp_error_set(err, -1, "writing the export failed: %s", strerror(errno));
    return rc;
}

int vmp_export_write_path(const vmp_profile *p, vmp_export_format format, const char *path,
                          const vmp_export_options *options, vmp_error *err)
{
    FILE *out = fopen(path, "wb");
    int rc;
    if (!out)
        return vmp_error_set(err, -1, "cannot create %s: %s; check that its folder exists and "
                                      "is writable",
                             path, strerror(errno));
    rc = vmp_export_write(p, format, out, options, err);
    if (fclose(out) != 0 && rc == 0)
        rc = vmp_error_set(err, -1, "writing %s failed: %s", path, strerror(errno));
    return rc;
}

/* ---- string table ----------------------------------------------------------- */

typedef struct xstrings_priv {
    map index;         /* (hash1, hash2) -> string */
    size_t *offsets;   /* into text; count + 1 entries once finished */
    size_t offsets_cap;
    char *text;
    size_t text_len, text_cap;
} xstrings_priv;

int vmp_xstrings_init(vmp_xstrings *s)
{
    xstrings_priv *ps = calloc(1, sizeof *ps);
    s->count = 0;
    s->priv = ps;
    if (!ps || map_init(&ps->index, 1024) < 0 ||
        grow((void **)&ps->offsets, &ps->offsets_cap, 1, sizeof *ps->offsets) < 0) {
        vmp_xstrings_free(s);
        return -1;
    }
    ps->offsets[0] = 0;
    return 0;
}

void vmp_xstrings_free(vmp_xstrings *s)
{
    xstrings_priv *ps = s->priv;
    if (ps) {
        map_free(&ps->index);
        free(ps->offsets);
        free(ps->text);
        free(ps);
    }
    s->priv = NULL;
    s->count = 0;
}

uint32_t vmp_xstrings_add(vmp_xstrings *s, const char *str, size_t len)
{
    xstrings_priv *ps = s->priv;
    uint64_t h1 = vmp_hash_bytes(str, len, 11), h2 = vmp_hash_bytes(str, len, len + 977);
    uint32_t idx = map_get(&ps->index, h1, h2);
    if (idx != UINT32_MAX)
        return idx;
    if (s->count >= UINT32_MAX - 2 ||
        grow((void **)&ps->text, &ps->text_cap, ps->text_len + len + 1, 1) < 0 ||
        grow((void **)&ps->offsets, &ps->offsets_cap, s->count + 2, sizeof *ps->offsets) < 0)
        return UINT32_MAX;
    memcpy(ps->text + ps->text_len, str, len);
    ps->text_len += len;
    ps->text[ps->text_len++] = '\0';
    idx = (uint32_t)s->count++;
    ps->offsets[s->count] = ps->text_len;
    if (map_put(&ps->index, h1, h2, idx) < 0)
        return UINT32_MAX;
    return idx;
}

const char *vmp_xstrings_get(const vmp_xstrings *s, size_t i, size_t *len)
{
    const xstrings_priv *ps = s->priv;
    *len = ps->offsets[i + 1] - ps->offsets[i] - 1;
    return ps->text + ps->offsets[i];
}

size_t vmp_xview_frame_label(const vmp_xview *v, uint32_t frame, char *buf, size_t size)
{
    const vmp_xframe *fr = &v->frames[frame];
    const vmp_xfunc *f = &v->funcs[fr->func];
    int n;
    if (f->file_len)
        n = snprintf(buf, size, "%.*s (%.*s:%u)", (int)f->name_len, f->name, (int)f->file_len,
                     f->file, fr->line);
    else
        n = snprintf(buf, size, "%.*s", (int)f->name_len, f->name);
    if (n < 0)
        n = 0;
    return (size_t)n < size ? (size_t)n : size - 1;
}
