/*
 * vjl_decode.c - reads a PyPy JIT log into a trace forest (contract in
 * vjl_forest.h, format in vjl_format.h).
 *
 * The whole input is read into one buffer first (a regular file straight
 * into it, anything else through vmp_source, which inflates gzip), and the
 * forest keeps it: ops and merge points point into it instead of copying the
 * strings, which are most of a log.  Decoding is then one pass over the
 * records; links (guard -> bridge, bridge -> parent, counters) need the whole
 * log and are resolved after it.
 *
 * The records carry no lengths, so after damage nothing further can be
 * trusted: the first unknown mark, a record cut short or a field that cannot
 * be (a string longer than the input) ends the reading with a warning.
 * Records that are well framed but refer to something the log did not
 * introduce (an op outside any trace) are skipped.
 */
#define _GNU_SOURCE
#include "vjl_forest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vjl_format.h"
#include "vmp_array.h"
#include "vmp_hash.h"
#include "vmp_source.h"

#define MAX_INPUT ((size_t)UINT32_MAX)

typedef struct resop {
    unsigned opnum;
    vjl_str name;
} resop;

typedef struct descr_point {
    uint32_t trace, op;
} descr_point;

struct vjl_forest {
    unsigned char *buf;
    size_t len, buf_map_len;
    int version, word_size;
    vjl_str machine;
    int has_warning;
    vmp_error warning;

    resop *resops;
    size_t n_resops, cap_resops;
    vjl_str *opnames; /* by opnum, n_opnames entries */
    size_t n_opnames;

    vjl_trace *traces;
    size_t n_traces, cap_traces;
    vmp_u64map by_id, by_addr;
    vmp_u64map bridge_of;   /* guard descr -> bridge trace index */
    vmp_u64map count_of;    /* descr -> index into descr_counts */
    uint64_t *descr_counts;
    size_t n_descr_counts, cap_descr_counts;

    vjl_stitch *stitches;
    size_t n_stitches, cap_stitches;
    vjl_counter *counters;
    size_t n_counters, cap_counters;
    vjl_source_line *lines;
    size_t n_lines, cap_lines;
    vjl_redirect *redirects;
    size_t n_redirects, cap_redirects;
};

/* ---- growing arrays -------------------------------------------------------- */

/* Makes room for one more item; 0 or -1 (out of memory). */
#define PUSH(arr, n, cap) vmp_array_grow((void **)&(arr), &(cap), (n) + 1, sizeof *(arr))

/* ---- reading the input ------------------------------------------------------ */

typedef struct input {
    unsigned char *buf;
    size_t len, cap;
    size_t map_len;    /* buf is a mapping of this length (big_buffer, or the file's
                          own in vjl_forest_map_file), else malloc'd */
    int read_failed;   /* the input broke off (a read or gzip error) */
    vmp_error read_err;
} input;

static int input_append(input *in, const unsigned char *p, size_t n, vmp_error *err)
{
    if (n == 0)
        return 0;
    if (n > MAX_INPUT - in->len)
        return vmp_error_set(err, (int64_t)in->len,
                             "the JIT log is larger than 4 GiB, which this reader does not support");
    if (in->len + n > in->cap) {
        size_t ncap = in->cap ? in->cap : 64 * 1024;
        if (!in->len && n > ncap) /* the first chunk sizes the buffer exactly */
            ncap = n;
        while (ncap < in->len + n)
            ncap *= 2;
        unsigned char *b = realloc(in->buf, ncap);
        if (!b)
            return vmp_error_set(err, (int64_t)in->len, "out of memory reading the JIT log");
        in->buf = b;
        in->cap = ncap;
    }
    memcpy(in->buf + in->len, p, n);
    in->len += n;
    return 0;
}

/* Everything src yields; a failure after some bytes is kept in in->read_err
 * (the log is then read up to there), before any it is returned. */
static int input_from_source(input *in, vmp_source *src, vmp_error *err)
{
    for (;;) {
        size_t avail;
        vmp_error e;
        vmp_error_clear(&e);
        const unsigned char *p = vmp_source_peek(src, 1, &avail, &e);
        if (!p) {
            if (avail == SIZE_MAX) {
                in->read_failed = 1;
                in->read_err = e;
            }
            return 0;
        }
        size_t n = src->end - src->pos;
        if (input_append(in, p, n, err) < 0)
            return -1;
        vmp_source_consume(src, n);
    }
}

static ssize_t read_full(int fd, unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* A regular file that is not gzip: one read into a buffer of its size. */
/* Large logs are read into memory of their own mapping, in huge pages where
 * the kernel gives them: a fresh 100 MB buffer otherwise costs as much in
 * page faults as the read itself. */
#define HUGE_PAGE (2u << 20)
#define MAP_FROM (8u << 20)

static unsigned char *big_buffer(size_t size, size_t *map_len)
{
    *map_len = 0;
    if (size < MAP_FROM)
        return malloc(size ? size : 1);
    size_t len = (size + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
    void *p = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /* align to a huge page: unmap the slack before and after */
    uintptr_t start = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
    if (start > (uintptr_t)p)
        munmap(p, start - (uintptr_t)p);
    size_t after = (uintptr_t)p + len + HUGE_PAGE - (start + len);
    if (after)
        munmap((void *)(start + len), after);
    madvise((void *)start, len, MADV_HUGEPAGE);
    *map_len = len;
    return (unsigned char *)start;
}

static void big_free(unsigned char *p, size_t map_len)
{
    if (map_len)
        munmap(p, map_len);
    else
        free(p);
}

static int input_from_regular_file(input *in, int fd, size_t size, vmp_error *err)
{
    if (size > MAX_INPUT)
        return vmp_error_set(err, -1,
                             "the JIT log is larger than 4 GiB, which this reader does not support");
    in->buf = big_buffer(size, &in->map_len);
    if (!in->buf)
        return vmp_error_set(err, -1, "out of memory for a %zu-byte JIT log", size);
    in->cap = size;
    ssize_t r = read_full(fd, in->buf, size);
    if (r < 0)
        return vmp_error_set(err, -1, "cannot read the JIT log: %s", strerror(errno));
    in->len = (size_t)r; /* a file that shrank meanwhile reads as cut */
    return 0;
}

static int input_from_fd(input *in, int fd, vmp_error *err)
{
    struct stat st;
    unsigned char magic[2];
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t here = lseek(fd, 0, SEEK_CUR);
        if (here >= 0 && pread(fd, magic, 2, here) == 2 && !(magic[0] == 0x1f && magic[1] == 0x8b))
            return input_from_regular_file(in, fd, (size_t)(st.st_size - here), err);
    }
    vmp_source *src = vmp_source_open_fd(fd, err);
    if (!src)
        return -1;
    int rc = input_from_source(in, src, err);
    vmp_source_close(src);
    return rc;
}

/* ---- the decoder --------------------------------------------------------- */

/* The merge-point fields declared by the last INIT_MERGE_POINT, with the
 * common prefix each string field has now. */
typedef struct mp_field {
    uint8_t slot; /* 0..VJL_MP_KINDS-1, or VJL_MP_KINDS for a type we do not know */
    uint8_t is_str;
    vjl_str prefix;
} mp_field;

typedef struct decoder {
    vjl_forest *f;
    const unsigned char *base, *p, *end;
    int word; /* 4 or 8 */
    vjl_stage *stage;  /* where ops go; NULL outside a known trace */
    uint32_t trace;    /* index of the current trace, VJL_NONE before any */
    mp_field *fields;
    size_t n_fields;
    vmp_error *err;
    const char *record; /* the record being read, for messages */
    const unsigned char *record_start;
} decoder;

enum { OK = 0, DAMAGE = -1, NOMEM = -2 };

static uint64_t off_of(const decoder *d, const unsigned char *p)
{
    return (uint64_t)(p - d->base);
}

static int cut(decoder *d)
{
    vmp_error_set(d->err, (int64_t)off_of(d, d->record_start),
                  "at byte %llu: the log ends inside a %s record (cut short?); it is read up to "
                  "there",
                  (unsigned long long)off_of(d, d->record_start), d->record);
    return DAMAGE;
}

static int bad(decoder *d, const unsigned char *at, const char *what)
{
    vmp_error_set(d->err, (int64_t)off_of(d, at),
                  "at byte %llu: %s in a %s record (the log is damaged); it is read up to there",
                  (unsigned long long)off_of(d, at), what, d->record);
    return DAMAGE;
}

static int nomem(decoder *d)
{
    vmp_error_set(d->err, (int64_t)off_of(d, d->record_start), "out of memory decoding the JIT log");
    return NOMEM;
}

#define NEED(d, n)                                                                              \
    do {                                                                                        \
        if ((size_t)((d)->end - (d)->p) < (size_t)(n))                                          \
            return cut(d);                                                                      \
    } while (0)

static inline uint16_t le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t le64(const unsigned char *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int rd_u8(decoder *d, unsigned *v)
{
    NEED(d, 1);
    *v = *d->p++;
    return OK;
}

static int rd_u16(decoder *d, unsigned *v)
{
    NEED(d, 2);
    *v = le16(d->p);
    d->p += 2;
    return OK;
}

static int rd_u64(decoder *d, uint64_t *v)
{
    NEED(d, 8);
    *v = le64(d->p);
    d->p += 8;
    return OK;
}

static int rd_addr(decoder *d, uint64_t *v)
{
    NEED(d, d->word);
    *v = d->word == 8 ? le64(d->p) : le32(d->p);
    d->p += d->word;
    return OK;
}

static int rd_str(decoder *d, vjl_str *s)
{
    NEED(d, 4);
    uint32_t n = le32(d->p);
    /* a length beyond the input: a cut log if it could be text that was
     * being written, damage if it cannot be a length at all */
    if (n > (size_t)(d->end - d->p) - 4) {
        if (n >= 1u << 31)
            return bad(d, d->p, "a string length that cannot be");
        return cut(d);
    }
    s->off = (uint32_t)(d->p + 4 - d->base);
    s->len = n;
    d->p += 4 + n;
    return OK;
}

#define TRY(x)                                                                                  \
    do {                                                                                        \
        int rc_ = (x);                                                                          \
        if (rc_ != OK)                                                                          \
            return rc_;                                                                         \
    } while (0)

static int read_resop_meta(decoder *d)
{
    vjl_forest *f = d->f;
    unsigned count;
    TRY(rd_u16(d, &count));
    for (unsigned i = 0; i < count; i++) {
        unsigned opnum;
        vjl_str name;
        TRY(rd_u16(d, &opnum));
        TRY(rd_str(d, &name));
        if (opnum >= f->n_opnames) {
            size_t n = (size_t)opnum + 1;
            vjl_str *t = realloc(f->opnames, n * sizeof *t);
            if (!t)
                return nomem(d);
            memset(t + f->n_opnames, 0, (n - f->n_opnames) * sizeof *t);
            f->opnames = t;
            f->n_opnames = n;
        }
        f->opnames[opnum] = name;
        if (PUSH(f->resops, f->n_resops, f->cap_resops) < 0)
            return nomem(d);
        f->resops[f->n_resops++] = (resop){opnum, name};
    }
    return OK;
}

static int read_start_trace(decoder *d)
{
    vjl_forest *f = d->f;
    uint64_t id, number;
    vjl_str type, jd = {0, 0};
    const unsigned char *type_at;
    TRY(rd_addr(d, &id));
    type_at = d->p;
    TRY(rd_str(d, &type));
    TRY(rd_addr(d, &number));
    if (f->version >= 2)
        TRY(rd_str(d, &jd));
    const char *t = (const char *)d->base + type.off;
    int is_bridge;
    if (type.len == 4 && memcmp(t, "loop", 4) == 0)
        is_bridge = 0;
    else if (type.len == 6 && memcmp(t, "bridge", 6) == 0)
        is_bridge = 1;
    else
        return bad(d, type_at, "a trace type other than 'loop' or 'bridge'");
    if (PUSH(f->traces, f->n_traces, f->cap_traces) < 0)
        return nomem(d);
    uint32_t index = (uint32_t)f->n_traces++;
    vjl_trace *tr = &f->traces[index];
    memset(tr, 0, sizeof *tr);
    tr->id = id;
    tr->is_bridge = is_bridge;
    tr->jd_name = jd;
    tr->start_number = number;
    tr->parent = tr->parent_op = VJL_NONE;
    if (vmp_u64map_put(&f->by_id, id, index) < 0) /* a reused id names the later trace */
        return nomem(d);
    d->trace = index;
    d->stage = NULL;
    return OK;
}

static int read_stage_start(decoder *d, int which)
{
    uint64_t id;
    uint32_t index;
    TRY(rd_addr(d, &id));
    if (!vmp_u64map_find(&d->f->by_id, id, &index)) {
        d->stage = NULL; /* a trace begun before the log was: its ops are skipped */
        return OK;
    }
    d->trace = index;
    d->stage = &d->f->traces[index].stage[which];
    d->stage->present = 1; /* a loop's second TRACE continues its noopt stage */
    return OK;
}

static int read_input_args(decoder *d)
{
    vjl_str s;
    TRY(rd_str(d, &s));
    if (d->trace != VJL_NONE)
        d->f->traces[d->trace].inputargs = s;
    return OK;
}

static int read_resop(decoder *d, int with_descr)
{
    unsigned opnum;
    vjl_str args, failargs;
    uint64_t descr;
    vjl_op op = {(uint32_t)(d->record_start - d->base), 0, 0, (uint8_t)with_descr, 0};
    TRY(rd_u16(d, &opnum));
    TRY(rd_str(d, &args));
    if (with_descr)
        TRY(rd_addr(d, &descr));
    if (d->f->version >= 2)
        TRY(rd_str(d, &failargs));
    op.opnum = (uint16_t)opnum;
    vjl_stage *st = d->stage;
    if (!st)
        return OK;
    if (PUSH(st->ops, st->n_ops, st->cap_ops) < 0)
        return nomem(d);
    st->ops[st->n_ops++] = op;
    return OK;
}

static int read_asm_addr(decoder *d)
{
    uint64_t a, b;
    TRY(rd_addr(d, &a));
    TRY(rd_addr(d, &b));
    if (d->trace == VJL_NONE)
        return OK;
    vjl_trace *t = &d->f->traces[d->trace];
    t->addr_start = a;
    t->addr_end = b;
    t->has_addr = 1;
    if (vmp_u64map_put(&d->f->by_addr, a, d->trace) < 0)
        return nomem(d);
    return OK;
}

static int read_asm(decoder *d)
{
    unsigned offset;
    vjl_str code;
    TRY(rd_u16(d, &offset));
    TRY(rd_str(d, &code));
    vjl_stage *st = d->stage;
    if (st && st->n_ops)
        st->ops[st->n_ops - 1].asm_record = (uint32_t)(d->record_start - d->base);
    return OK;
}

static int read_init_merge_point(decoder *d)
{
    unsigned n;
    TRY(rd_u16(d, &n));
    NEED(d, (size_t)n * 2);
    mp_field *fields = n ? malloc(n * sizeof *fields) : NULL;
    if (n && !fields)
        return nomem(d);
    for (unsigned i = 0; i < n; i++) {
        unsigned sem = d->p[0], gen = d->p[1];
        if (gen != 's' && gen != 'i') {
            free(fields);
            return bad(d, d->p + 1, "a merge-point field type other than 's' or 'i'");
        }
        uint8_t slot = VJL_MP_KINDS;
        for (uint8_t k = 0; k < VJL_MP_KINDS; k++)
            if (sem == 1u << k)
                slot = k;
        fields[i] = (mp_field){slot, gen == 's', {0, 0}};
        d->p += 2;
    }
    free(d->fields);
    d->fields = fields;
    d->n_fields = n;
    return OK;
}

static int read_common_prefix(decoder *d)
{
    unsigned index = 0; /* (set by rd_u8 before any use: -O3 cannot tell) */
    vjl_str prefix;
    const unsigned char *at = d->p;
    TRY(rd_u8(d, &index));
    TRY(rd_str(d, &prefix));
    if (index >= d->n_fields || !d->fields[index].is_str)
        return bad(d, at, "a common prefix for a field the merge points do not declare");
    d->fields[index].prefix = prefix;
    return OK;
}

static int read_merge_point(decoder *d)
{
    vjl_merge_point mp;
    memset(&mp, 0, sizeof mp);
    for (size_t i = 0; i < d->n_fields; i++) {
        const mp_field *fd = &d->fields[i];
        const unsigned char *at = d->p;
        unsigned how;
        vjl_value v;
        memset(&v, 0, sizeof v);
        TRY(rd_u8(d, &how));
        if (!fd->is_str) {
            if (how != VJL_MP_INT)
                return bad(d, at, "an int merge-point value not marked 0x00");
            TRY(rd_u64(d, &v.u.num));
        } else if (how == VJL_MP_STR_PREFIX) {
            v.u.s.prefix = fd->prefix;
        } else if (how == VJL_MP_STR_SUFFIX) {
            v.u.s.prefix = fd->prefix;
            TRY(rd_str(d, &v.u.s.str));
        } else if (how == VJL_MP_STR_WHOLE) {
            TRY(rd_str(d, &v.u.s.str));
        } else {
            return bad(d, at, "a string merge-point value marked neither 0x00, 0xef nor 0xff");
        }
        if (fd->slot < VJL_MP_KINDS) {
            mp.kind[fd->slot] = fd->is_str ? 's' : 'i';
            mp.value[fd->slot] = v;
        }
    }
    vjl_stage *st = d->stage;
    if (!st)
        return OK;
    mp.op_index = (uint32_t)st->n_ops;
    if (PUSH(st->mps, st->n_mps, st->cap_mps) < 0)
        return nomem(d);
    st->mps[st->n_mps++] = mp;
    return OK;
}

static int read_stitch(decoder *d)
{
    vjl_forest *f = d->f;
    uint64_t descr, addr;
    TRY(rd_addr(d, &descr));
    TRY(rd_addr(d, &addr));
    if (PUSH(f->stitches, f->n_stitches, f->cap_stitches) < 0)
        return nomem(d);
    f->stitches[f->n_stitches++] = (vjl_stitch){descr, addr, VJL_NONE};
    return OK;
}

static int read_counter(decoder *d)
{
    vjl_forest *f = d->f;
    uint64_t addr, count;
    unsigned type = 0; /* (set by rd_u8 before any use: -O3 cannot tell) */
    const unsigned char *at;
    TRY(rd_addr(d, &addr));
    at = d->p;
    TRY(rd_u8(d, &type));
    TRY(rd_u64(d, &count));
    if (type != VJL_COUNTER_ENTRY && type != VJL_COUNTER_BRIDGE && type != VJL_COUNTER_LABEL)
        return bad(d, at, "a counter type other than 'e', 'b' or 'l'");
    if (PUSH(f->counters, f->n_counters, f->cap_counters) < 0)
        return nomem(d);
    f->counters[f->n_counters++] = (vjl_counter){addr, count, (uint8_t)type, VJL_NONE};
    return OK;
}

static int read_abort(decoder *d)
{
    uint64_t id;
    uint32_t index;
    TRY(rd_addr(d, &id));
    if (vmp_u64map_find(&d->f->by_id, id, &index))
        d->f->traces[index].aborted = 1;
    return OK;
}

static int read_source_code(decoder *d)
{
    vjl_forest *f = d->f;
    vjl_str file;
    unsigned n;
    TRY(rd_str(d, &file));
    TRY(rd_u16(d, &n));
    for (unsigned i = 0; i < n; i++) {
        unsigned line, indent;
        vjl_str text;
        TRY(rd_u16(d, &line));
        TRY(rd_u8(d, &indent));
        TRY(rd_str(d, &text));
        if (PUSH(f->lines, f->n_lines, f->cap_lines) < 0)
            return nomem(d);
        f->lines[f->n_lines++] = (vjl_source_line){file, text, (uint16_t)line, (uint8_t)indent};
    }
    return OK;
}

static int read_redirect(decoder *d)
{
    vjl_forest *f = d->f;
    vjl_redirect r;
    TRY(rd_addr(d, &r.old_descr));
    TRY(rd_addr(d, &r.new_descr));
    TRY(rd_addr(d, &r.target));
    if (PUSH(f->redirects, f->n_redirects, f->cap_redirects) < 0)
        return nomem(d);
    f->redirects[f->n_redirects++] = r;
    return OK;
}

static int read_tmp_callback(decoder *d)
{
    uint64_t descr, number;
    TRY(rd_addr(d, &descr));
    TRY(rd_u64(d, &number));
    return OK;
}

static const char *const mark_names[] = {
    "JITLOG_START", "INPUT_ARGS",  "RESOP_META",  "RESOP",           "RESOP_DESCR",
    "ASM_ADDR",     "ASM",         "TRACE",       "TRACE_OPT",       "TRACE_ASM",
    "STITCH_BRIDGE", "START_TRACE", "JITLOG_COUNTER", "INIT_MERGE_POINT", "JITLOG_HEADER",
    "MERGE_POINT",  "COMMON_PREFIX", "ABORT_TRACE", "SOURCE_CODE",   "REDIRECT_ASSEMBLER",
    "TMP_CALLBACK", "JITLOG_END",
};

static int read_record(decoder *d)
{
    unsigned mark = *d->p;
    d->record_start = d->p;
    if (mark > VJL_MARK_START && mark < VJL_MARK_END)
        d->record = mark_names[mark - VJL_MARK_START];
    d->p++;
    switch (mark) {
    case VJL_MARK_RESOP_DESCR:
        return read_resop(d, 1);
    case VJL_MARK_RESOP:
        return read_resop(d, 0);
    case VJL_MARK_MERGE_POINT:
        return read_merge_point(d);
    case VJL_MARK_ASM:
        return read_asm(d);
    case VJL_MARK_INPUT_ARGS:
        return read_input_args(d);
    case VJL_MARK_RESOP_META:
        return read_resop_meta(d);
    case VJL_MARK_ASM_ADDR:
        return read_asm_addr(d);
    case VJL_MARK_TRACE:
        return read_stage_start(d, VJL_STAGE_NOOPT);
    case VJL_MARK_TRACE_OPT:
        return read_stage_start(d, VJL_STAGE_OPT);
    case VJL_MARK_TRACE_ASM:
        return read_stage_start(d, VJL_STAGE_ASM);
    case VJL_MARK_STITCH_BRIDGE:
        return read_stitch(d);
    case VJL_MARK_START_TRACE:
        return read_start_trace(d);
    case VJL_MARK_COUNTER:
        return read_counter(d);
    case VJL_MARK_INIT_MERGE_POINT:
        return read_init_merge_point(d);
    case VJL_MARK_COMMON_PREFIX:
        return read_common_prefix(d);
    case VJL_MARK_ABORT_TRACE:
        return read_abort(d);
    case VJL_MARK_SOURCE_CODE:
        return read_source_code(d);
    case VJL_MARK_REDIRECT_ASSEMBLER:
        return read_redirect(d);
    case VJL_MARK_TMP_CALLBACK:
        return read_tmp_callback(d);
    default:
        vmp_error_set(d->err, (int64_t)off_of(d, d->record_start),
                      "at byte %llu: unknown mark 0x%02x (the log is damaged or from a newer "
                      "PyPy); it is read up to there",
                      (unsigned long long)off_of(d, d->record_start), mark);
        return DAMAGE;
    }
}

static int read_header(decoder *d)
{
    const unsigned char *p = d->p;
    size_t n = (size_t)(d->end - p);
    if (n == 0 || p[0] != VJL_MARK_HEADER)
        return vmp_error_set(d->err, 0,
                             "not a PyPy JIT log: it does not start with the JITLOG_HEADER mark "
                             "0x1e (is it a vmprof profile? read those with vmprofshow)");
    if (n < 8)
        return vmp_error_set(d->err, 0, "the JIT log ends inside its header (%zu bytes): the "
                             "file is cut short or empty", n);
    unsigned version = le16(p + 1), is32 = p[3];
    uint32_t mlen = le32(p + 4);
    if (version < VJL_VERSION_MIN || version > VJL_VERSION_MAX)
        return vmp_error_set(d->err, 1, "JIT log version %u is not supported (this reader knows "
                             "versions %d-%d)", version, VJL_VERSION_MIN, VJL_VERSION_MAX);
    if (is32 > 1)
        return vmp_error_set(d->err, 3, "bad JIT log header: the 32-bit flag is %u, not 0 or 1",
                             is32);
    if (mlen > n - 8)
        return vmp_error_set(d->err, 4, "the JIT log ends inside its header (the machine name "
                             "is cut short)");
    d->f->version = (int)version;
    d->f->word_size = d->word = is32 ? 4 : 8;
    d->f->machine = (vjl_str){8, mlen};
    d->p = p + 8 + mlen;
    return 0;
}

/* ---- links, once the whole log is read ------------------------------------- */

typedef struct descr_table {
    vmp_u64map map; /* descr number -> index into points */
    descr_point *points;
    size_t n, cap;
} descr_table;

/* Every op with a descr in the asm stage (where the original tools look),
 * else in the opt stage, keyed by its descr number; the first one wins. */
static int index_descrs(vjl_forest *f, descr_table *dt)
{
    for (size_t t = 0; t < f->n_traces; t++) {
        const vjl_stage *st = &f->traces[t].stage[VJL_STAGE_ASM];
        if (!st->present)
            st = &f->traces[t].stage[VJL_STAGE_OPT];
        for (size_t i = 0; i < st->n_ops; i++) {
            const vjl_op *op = &st->ops[i];
            uint32_t have;
            uint64_t descr = op->has_descr ? vjl_op_descr(f, op) : 0;
            if (descr == 0 || vmp_u64map_find(&dt->map, descr, &have))
                continue;
            if (PUSH(dt->points, dt->n, dt->cap) < 0 ||
                vmp_u64map_put(&dt->map, descr, (uint32_t)dt->n) < 0)
                return -1;
            dt->points[dt->n++] = (descr_point){(uint32_t)t, (uint32_t)i};
        }
    }
    return 0;
}

static int find_descr(const descr_table *dt, uint64_t descr, descr_point *out)
{
    uint32_t i;
    if (!vmp_u64map_find(&dt->map, descr, &i))
        return 0;
    *out = dt->points[i];
    return 1;
}

static int link_bridge(vjl_forest *f, const descr_table *dt, uint32_t bridge, uint64_t descr)
{
    descr_point p;
    uint32_t have;
    vjl_trace *b = &f->traces[bridge];
    if (b->parent != VJL_NONE || !find_descr(dt, descr, &p))
        return 0;
    b->parent = p.trace;
    b->parent_op = p.op;
    if (!vmp_u64map_find(&f->bridge_of, descr, &have))
        return vmp_u64map_put(&f->bridge_of, descr, bridge);
    return 0;
}

static int add_descr_count(vjl_forest *f, uint64_t descr, uint64_t count)
{
    uint32_t i;
    if (vmp_u64map_find(&f->count_of, descr, &i)) {
        f->descr_counts[i] += count;
        return 0;
    }
    if (PUSH(f->descr_counts, f->n_descr_counts, f->cap_descr_counts) < 0 ||
        vmp_u64map_put(&f->count_of, descr, (uint32_t)f->n_descr_counts) < 0)
        return -1;
    f->descr_counts[f->n_descr_counts++] = count;
    return 0;
}

static int resolve_counters(vjl_forest *f, const descr_table *dt)
{
    /* entries first: a bridge with an 'e' counter of its own is not counted
     * again by its guard's 'b' counter */
    unsigned char *has_entry = calloc(f->n_traces + 1, 1);
    if (!has_entry)
        return -1;
    for (size_t i = 0; i < f->n_counters; i++) {
        vjl_counter *c = &f->counters[i];
        uint32_t t;
        if (c->type == VJL_COUNTER_ENTRY && vmp_u64map_find(&f->by_id, c->addr, &t)) {
            c->trace = t;
            f->traces[t].entry_count += c->count;
            has_entry[t] = 1;
        }
    }
    int rc = 0;
    for (size_t i = 0; i < f->n_counters && rc == 0; i++) {
        vjl_counter *c = &f->counters[i];
        descr_point p;
        uint32_t b;
        if (c->type == VJL_COUNTER_ENTRY || !find_descr(dt, c->addr, &p))
            continue;
        c->trace = p.trace;
        rc = add_descr_count(f, c->addr, c->count);
        /* a guard's 'b' counter: how often its bridge was entered */
        if (c->type == VJL_COUNTER_BRIDGE && vmp_u64map_find(&f->bridge_of, c->addr, &b) &&
            !has_entry[b])
            f->traces[b].entry_count += c->count;
    }
    free(has_entry);
    return rc;
}

static int resolve_links(vjl_forest *f)
{
    descr_table dt;
    memset(&dt, 0, sizeof dt);
    int rc = index_descrs(f, &dt);
    for (size_t i = 0; i < f->n_stitches && rc == 0; i++) {
        vjl_stitch *s = &f->stitches[i];
        uint32_t b;
        if (!vmp_u64map_find(&f->by_addr, s->addr, &b))
            continue;
        s->bridge = b;
        if (!f->traces[b].stitched_descr)
            f->traces[b].stitched_descr = s->descr;
        rc = link_bridge(f, &dt, b, s->descr);
    }
    /* a bridge never stitched (compiled but the log ended) still names its guard */
    for (size_t t = 0; t < f->n_traces && rc == 0; t++)
        if (f->traces[t].is_bridge)
            rc = link_bridge(f, &dt, (uint32_t)t, f->traces[t].start_number);
    if (rc == 0)
        rc = resolve_counters(f, &dt);
    vmp_u64map_free(&dt.map);
    free(dt.points);
    return rc;
}

/* ---- entry points ----------------------------------------------------------- */

static vjl_forest *decode(input *in, vmp_error *err)
{
    if (!in->buf) /* empty input: a buffer all the same, the pointers need one */
        in->buf = malloc(1);
    vjl_forest *f = in->buf ? calloc(1, sizeof *f) : NULL;
    if (!f) {
        big_free(in->buf, in->map_len);
        vmp_error_set(err, -1, "out of memory");
        return NULL;
    }
    f->buf = in->buf;
    f->len = in->len;
    f->buf_map_len = in->map_len;
    vmp_error_clear(&f->warning);
    decoder d;
    memset(&d, 0, sizeof d);
    d.f = f;
    d.base = d.p = f->buf;
    d.end = f->buf + f->len;
    d.trace = VJL_NONE;
    d.err = err;
    d.record = "JITLOG_HEADER";
    if (read_header(&d) < 0) {
        if (in->read_failed && in->len < 8)
            *err = in->read_err;
        vjl_forest_free(f);
        return NULL;
    }
    d.err = &f->warning;
    int rc = OK;
    while (d.p < d.end) {
        rc = read_record(&d);
        if (rc != OK)
            break;
    }
    free(d.fields);
    if (rc == NOMEM) {
        *err = f->warning;
        vjl_forest_free(f);
        return NULL;
    }
    if (rc == DAMAGE)
        f->has_warning = 1;
    else if (in->read_failed) {
        f->warning = in->read_err;
        f->has_warning = 1;
    }
    if (resolve_links(f) < 0) {
        vmp_error_set(err, -1, "out of memory linking the JIT log's traces");
        vjl_forest_free(f);
        return NULL;
    }
    return f;
}

vjl_forest *vjl_forest_read_fd(int fd, vmp_error *err)
{
    input in;
    memset(&in, 0, sizeof in);
    vmp_error_clear(err);
    if (input_from_fd(&in, fd, err) < 0) {
        big_free(in.buf, in.map_len);
        return NULL;
    }
    return decode(&in, err);
}

vjl_forest *vjl_forest_read_file(const char *path, vmp_error *err)
{
    int fd = vmp_open_input_file(path, "JIT log", err);
    if (fd < 0)
        return NULL;
    vjl_forest *f = vjl_forest_read_fd(fd, err);
    close(fd);
    return f;
}

/* A plain regular file of at least two bytes, mapped: decode() only reads
 * its input, so the forest's bytes can be the page cache's own pages. */
vjl_forest *vjl_forest_map_file(const char *path, vmp_error *err)
{
    int fd = vmp_open_input_file(path, "JIT log", err);
    if (fd < 0)
        return NULL;
    struct stat st;
    unsigned char magic[2];
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 2 &&
        (uint64_t)st.st_size <= MAX_INPUT && pread(fd, magic, 2, 0) == 2 &&
        !(magic[0] == 0x1f && magic[1] == 0x8b)) {
        size_t size = (size_t)st.st_size;
        void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            close(fd); /* the mapping keeps the file */
            madvise(p, size, MADV_WILLNEED); /* read ahead what is not cached yet */
            input in;
            memset(&in, 0, sizeof in);
            in.buf = p;
            in.len = in.cap = in.map_len = size;
            vmp_error_clear(err);
            return decode(&in, err);
        }
    }
    /* gzip, a pipe or device, an empty file, or no mapping: read as always */
    vjl_forest *f = vjl_forest_read_fd(fd, err);
    close(fd);
    return f;
}

vjl_forest *vjl_forest_read_memory(const void *data, size_t len, vmp_error *err)
{
    input in;
    memset(&in, 0, sizeof in);
    vmp_error_clear(err);
    const unsigned char *bytes = data;
    if (!(len >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b)) { /* plain: one copy */
        if (input_append(&in, bytes, len, err) < 0) {
            big_free(in.buf, in.map_len);
            return NULL;
        }
        return decode(&in, err);
    }
    vmp_source *src = vmp_source_open_memory(data, len, err);
    if (!src)
        return NULL;
    int rc = input_from_source(&in, src, err);
    vmp_source_close(src);
    if (rc < 0) {
        big_free(in.buf, in.map_len);
        return NULL;
    }
    return decode(&in, err);
}

void vjl_forest_free(vjl_forest *f)
{
    if (!f)
        return;
    for (size_t t = 0; t < f->n_traces; t++)
        for (int s = 0; s < VJL_STAGES; s++) {
            free(f->traces[t].stage[s].ops);
            free(f->traces[t].stage[s].mps);
        }
    free(f->traces);
    vmp_u64map_free(&f->by_id);
    vmp_u64map_free(&f->by_addr);
    vmp_u64map_free(&f->bridge_of);
    vmp_u64map_free(&f->count_of);
    free(f->descr_counts);
    free(f->resops);
    free(f->opnames);
    free(f->stitches);
    free(f->counters);
    free(f->lines);
    free(f->redirects);
    big_free(f->buf, f->buf_map_len);
    free(f);
}

/* ---- accessors ------------------------------------------------------------ */

int vjl_forest_version(const vjl_forest *f) { return f->version; }
int vjl_forest_word_size(const vjl_forest *f) { return f->word_size; }
vjl_str vjl_forest_machine(const vjl_forest *f) { return f->machine; }
const unsigned char *vjl_forest_bytes(const vjl_forest *f) { return f->buf; }
size_t vjl_forest_size(const vjl_forest *f) { return f->len; }

const vmp_error *vjl_forest_warning(const vjl_forest *f)
{
    return f->has_warning ? &f->warning : NULL;
}

vjl_str vjl_forest_opname(const vjl_forest *f, unsigned opnum)
{
    if (opnum < f->n_opnames)
        return f->opnames[opnum];
    return (vjl_str){0, 0};
}

size_t vjl_forest_resop_count(const vjl_forest *f) { return f->n_resops; }

void vjl_forest_resop_at(const vjl_forest *f, size_t i, unsigned *opnum, vjl_str *name)
{
    *opnum = f->resops[i].opnum;
    *name = f->resops[i].name;
}

size_t vjl_forest_trace_count(const vjl_forest *f) { return f->n_traces; }
const vjl_trace *vjl_forest_trace(const vjl_forest *f, size_t i) { return &f->traces[i]; }

uint32_t vjl_forest_find_trace(const vjl_forest *f, uint64_t id)
{
    uint32_t i;
    return vmp_u64map_find(&f->by_id, id, &i) ? i : VJL_NONE;
}

const vjl_stitch *vjl_forest_stitches(const vjl_forest *f, size_t *n)
{
    *n = f->n_stitches;
    return f->stitches;
}

const vjl_counter *vjl_forest_counters(const vjl_forest *f, size_t *n)
{
    *n = f->n_counters;
    return f->counters;
}

const vjl_source_line *vjl_forest_source_lines(const vjl_forest *f, size_t *n)
{
    *n = f->n_lines;
    return f->lines;
}

const vjl_redirect *vjl_forest_redirects(const vjl_forest *f, size_t *n)
{
    *n = f->n_redirects;
    return f->redirects;
}

uint32_t vjl_forest_bridge_of(const vjl_forest *f, uint64_t descr)
{
    uint32_t i;
    return descr && vmp_u64map_find(&f->bridge_of, descr, &i) ? i : VJL_NONE;
}

uint64_t vjl_forest_descr_count(const vjl_forest *f, uint64_t descr)
{
    uint32_t i;
    return descr && vmp_u64map_find(&f->count_of, descr, &i) ? f->descr_counts[i] : 0;
}

/* The records were checked when the log was read: no bounds to test here. */
static vjl_str str_at(const unsigned char *p, uint32_t off)
{
    return (vjl_str){off + 4, le32(p + off)};
}

void vjl_op_get(const vjl_forest *f, const vjl_op *op, vjl_op_parts *out)
{
    const unsigned char *p = f->buf;
    uint32_t at = op->record + 3; /* mark, u16 opnum */
    memset(out, 0, sizeof *out);
    out->args = str_at(p, at);
    at += 4 + out->args.len;
    if (op->has_descr) {
        out->descr = f->word_size == 8 ? le64(p + at) : le32(p + at);
        at += (uint32_t)f->word_size;
    }
    out->failargs = f->version >= 2 ? str_at(p, at) : (vjl_str){at, 0};
    if (op->asm_record) {
        out->code_offset = le16(p + op->asm_record + 1);
        out->code = str_at(p, op->asm_record + 3);
    }
}

uint64_t vjl_op_descr(const vjl_forest *f, const vjl_op *op)
{
    if (!op->has_descr)
        return 0;
    const unsigned char *p = f->buf + op->record + 3;
    p += 4 + le32(p);
    return f->word_size == 8 ? le64(p) : le32(p);
}

vjl_str vjl_op_descr_text(const vjl_forest *f, const vjl_op *op)
{
    vjl_str args = str_at(f->buf, op->record + 3);
    if (!op->has_descr)
        return (vjl_str){args.off, 0};
    const char *s = vjl_str_ptr(f, args);
    const char *comma = memrchr(s, ',', args.len);
    uint32_t start = comma ? (uint32_t)(comma - s) + 1 : 0;
    return (vjl_str){args.off + start, args.len - start};
}

vjl_str vjl_op_result(const vjl_forest *f, const vjl_op *op)
{
    vjl_str args = str_at(f->buf, op->record + 3);
    const char *s = vjl_str_ptr(f, args);
    const char *comma = memchr(s, ',', args.len);
    return (vjl_str){args.off, comma ? (uint32_t)(comma - s) : args.len};
}

const vjl_merge_point *vjl_trace_first_merge_point(const vjl_trace *t)
{
    const vjl_stage *st = &t->stage[VJL_STAGE_OPT];
    return st->n_mps ? &st->mps[0] : NULL;
}
