/* test_jitlog.c - the JIT log decoder (vjl_forest.h): a real PyPy log, every
 * version and word size, cuts at every byte, corrupt marks, bad headers. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "jitlog_sample.h"
#include "vjl_forest.h"
#include "vmp_test.h"

/* The upstream fixture: PyPy 7.3.11 running workloads/calc.py. */
#define CALC_JITLOG vmp_fixture("calc_pypy.jitlog")

static int str_is(const vjl_forest *f, vjl_str s, const char *want)
{
    return s.len == strlen(want) && memcmp(vjl_str_ptr(f, s), want, s.len) == 0;
}

/* a merge point's string value, prefix + rest */
static int value_is(const vjl_forest *f, const vjl_merge_point *mp, int slot, const char *want)
{
    char buf[256];
    const vjl_value *v = &mp->value[slot];
    if (mp->kind[slot] != 's' || v->u.s.prefix.len + v->u.s.str.len >= sizeof buf)
        return 0;
    memcpy(buf, vjl_str_ptr(f, v->u.s.prefix), v->u.s.prefix.len);
    memcpy(buf + v->u.s.prefix.len, vjl_str_ptr(f, v->u.s.str), v->u.s.str.len);
    buf[v->u.s.prefix.len + v->u.s.str.len] = 0;
    return strcmp(buf, want) == 0;
}

VMP_TEST(jitlog_reads_pypy_log_as_the_original_parser)
{
    vmp_error err;
    vjl_forest *f = vjl_forest_read_file(CALC_JITLOG, &err);
    REQUIRE(f != NULL);
    CHECK(vjl_forest_version(f) == 4);
    CHECK(vjl_forest_word_size(f) == 8);
    CHECK(str_is(f, vjl_forest_machine(f), "x86_64"));
    CHECK(vjl_forest_warning(f) == NULL);
    CHECK(vjl_forest_resop_count(f) == 224);
    CHECK(vjl_forest_trace_count(f) == 25);
    size_t n_stitches, loops = 0;
    vjl_forest_stitches(f, &n_stitches);
    CHECK(n_stitches == 17);
    for (size_t i = 0; i < vjl_forest_trace_count(f); i++)
        loops += !vjl_forest_trace(f, i)->is_bridge;
    CHECK(loops == 5);
    /* oracle_jitlog.json: trace 0x58 has 4808/435/472 ops, its first merge
     * point is in parse_term */
    uint32_t i = vjl_forest_find_trace(f, 0x58);
    REQUIRE(i != VJL_NONE);
    const vjl_trace *t = vjl_forest_trace(f, i);
    CHECK(t->stage[VJL_STAGE_NOOPT].n_ops == 4808);
    CHECK(t->stage[VJL_STAGE_OPT].n_ops == 435);
    CHECK(t->stage[VJL_STAGE_ASM].n_ops == 472);
    const vjl_merge_point *mp = vjl_trace_first_merge_point(t);
    REQUIRE(mp != NULL);
    CHECK(value_is(f, mp, 3, "parse_term"));
    /* every stitch found its bridge, and each such bridge its parent */
    const vjl_stitch *st = vjl_forest_stitches(f, &n_stitches);
    for (size_t k = 0; k < n_stitches; k++) {
        REQUIRE(st[k].bridge != VJL_NONE);
        const vjl_trace *b = vjl_forest_trace(f, st[k].bridge);
        CHECK(b->is_bridge);
        CHECK(b->stitched_descr == st[k].descr);
        if (b->parent != VJL_NONE) {
            const vjl_op *guard =
                &vjl_forest_trace(f, b->parent)->stage[VJL_STAGE_ASM].ops[b->parent_op];
            CHECK(vjl_op_descr(f, guard) == st[k].descr);
            CHECK(vjl_forest_bridge_of(f, vjl_op_descr(f, guard)) == st[k].bridge);
        }
    }
    vjl_forest_free(f);
}

static vjl_forest *read_sample(const sample_log *s, size_t len, vmp_error *err)
{
    return vjl_forest_read_memory(s->w.buf, len, err);
}

VMP_TEST(jitlog_every_version_and_word_size)
{
    for (int version = 1; version <= 4; version++)
        for (int word = 4; word <= 8; word += 4) {
            sample_log s;
            sample_build(&s, version, word);
            REQUIRE(!s.w.failed);
            vmp_error err;
            vjl_forest *f = read_sample(&s, s.w.len, &err);
            REQUIRE(f != NULL);
            CHECK(vjl_forest_warning(f) == NULL);
            CHECK(vjl_forest_version(f) == version);
            CHECK(vjl_forest_word_size(f) == word);
            CHECK(str_is(f, vjl_forest_opname(f, OP_GUARD_TRUE), "guard_true"));
            REQUIRE(vjl_forest_trace_count(f) == 2);
            const vjl_trace *loop = vjl_forest_trace(f, 0), *bridge = vjl_forest_trace(f, 1);
            CHECK(loop->id == 0x11 && !loop->is_bridge);
            CHECK(str_is(f, loop->jd_name, version >= 2 ? "pypyjit" : ""));
            CHECK(str_is(f, loop->inputargs, "p0,i1"));
            /* two TRACE marks: one noopt stage */
            CHECK(loop->stage[VJL_STAGE_NOOPT].n_ops == 3);
            CHECK(loop->stage[VJL_STAGE_NOOPT].n_mps == 2);
            CHECK(loop->stage[VJL_STAGE_OPT].n_ops == 2);
            CHECK(loop->stage[VJL_STAGE_ASM].n_ops == 2);
            const vjl_op *guard = &loop->stage[VJL_STAGE_NOOPT].ops[1];
            vjl_op_parts parts;
            vjl_op_get(f, guard, &parts);
            CHECK(guard->opnum == OP_GUARD_TRUE && guard->has_descr && parts.descr == 0x100);
            CHECK(vjl_op_descr(f, guard) == 0x100);
            CHECK(str_is(f, parts.args, "?,i1,<Guard0x100>"));
            CHECK(str_is(f, vjl_op_descr_text(f, guard), "<Guard0x100>"));
            CHECK(str_is(f, parts.failargs, version >= 2 ? "p0,i1" : ""));
            CHECK(parts.code.len == 0 && guard->asm_record == 0);
            CHECK(str_is(f, vjl_op_result(f, &loop->stage[VJL_STAGE_NOOPT].ops[2]), "i2"));
            /* merge points: common prefix, whole, prefix-equal */
            const vjl_merge_point *m0 = &loop->stage[VJL_STAGE_NOOPT].mps[0];
            CHECK(m0->op_index == 0);
            CHECK(value_is(f, m0, 0, "/src/mod.py"));
            CHECK(m0->kind[1] == 'i' && m0->value[1].u.num == 3);
            CHECK(value_is(f, m0, 3, "compute"));
            CHECK(m0->kind[2] == 'i' && m0->value[2].u.num == 7);
            CHECK(value_is(f, m0, 4, "LOAD_FAST"));
            CHECK(loop->stage[VJL_STAGE_NOOPT].mps[1].op_index == 2);
            CHECK(value_is(f, &loop->stage[VJL_STAGE_NOOPT].mps[1], 0, "/src/mod.py"));
            const vjl_merge_point *first = vjl_trace_first_merge_point(loop);
            REQUIRE(first != NULL);
            CHECK(value_is(f, first, 0, "/src/"));
            CHECK(value_is(f, first, 3, "helper"));
            /* machine code and links */
            const vjl_op *asm_guard = &loop->stage[VJL_STAGE_ASM].ops[1];
            vjl_op_get(f, asm_guard, &parts);
            CHECK(asm_guard->asm_record != 0 && parts.code_offset == 0x10);
            CHECK(parts.code.len == 2 && memcmp(vjl_str_ptr(f, parts.code), "\x90\x90", 2) == 0);
            CHECK(str_is(f, parts.failargs, version >= 2 ? "p0,i1" : ""));
            CHECK(loop->has_addr && loop->addr_start == 0x1000 && loop->addr_end == 0x1100);
            CHECK(vjl_forest_bridge_of(f, parts.descr) == 1);
            CHECK(vjl_forest_descr_count(f, parts.descr) == 7);
            CHECK(vjl_forest_bridge_of(f, 0x200) == VJL_NONE); /* a label, no bridge */
            CHECK(bridge->is_bridge && bridge->parent == 0 && bridge->parent_op == 1);
            CHECK(bridge->stitched_descr == 0x100);
            CHECK(loop->entry_count == 10);
            CHECK(bridge->entry_count == 7);
            size_t n;
            vjl_forest_counters(f, &n);
            CHECK(n == 2);
            const vjl_source_line *lines = vjl_forest_source_lines(f, &n);
            CHECK(n == 2 && lines[1].line == 4 && lines[1].indent == 4 &&
                  str_is(f, lines[1].text, "return x") && str_is(f, lines[0].file, "/src/mod.py"));
            vjl_forest_redirects(f, &n);
            CHECK(n == (version >= 3 ? 1u : 0u));
            vjl_forest_free(f);
            vjl_writer_free(&s.w);
        }
}

/* the start of the record holding byte len-1 (the one a cut at len breaks) */
static size_t record_holding(const sample_log *s, size_t len)
{
    size_t start = 0;
    for (size_t k = 0; k < s->n_records; k++)
        if (s->record[k] < len)
            start = s->record[k];
    return start;
}

static int is_boundary(const sample_log *s, size_t len)
{
    if (len == s->w.len)
        return 1;
    for (size_t k = 0; k < s->n_records; k++)
        if (s->record[k] == len)
            return 1;
    return 0;
}

VMP_TEST(jitlog_cut_at_every_byte_reads_up_to_the_cut)
{
    for (int version = 1; version <= 4; version++)
        for (int word = 4; word <= 8; word += 4) {
            sample_log s;
            sample_build(&s, version, word);
            size_t last_traces = 0, last_ops = 0;
            for (size_t len = 0; len <= s.w.len; len++) {
                vmp_error err;
                vjl_forest *f = read_sample(&s, len, &err);
                if (len < s.header_len) {
                    CHECK(f == NULL);
                    CHECK(err.message[0] != 0 && strchr(err.message, '\n') == NULL);
                    continue;
                }
                REQUIRE(f != NULL);
                const vmp_error *w = vjl_forest_warning(f);
                if (is_boundary(&s, len)) {
                    CHECK(w == NULL);
                } else {
                    REQUIRE(w != NULL);
                    char want[64];
                    snprintf(want, sizeof want, "at byte %zu: ", record_holding(&s, len));
                    CHECK(strncmp(w->message, want, strlen(want)) == 0);
                    CHECK(w->offset == (int64_t)record_holding(&s, len));
                    CHECK(strstr(w->message, "cut short") != NULL);
                }
                /* what was read never shrinks as more of the log is there */
                size_t traces = vjl_forest_trace_count(f), ops = 0;
                for (size_t i = 0; i < traces; i++)
                    for (int st = 0; st < VJL_STAGES; st++)
                        ops += vjl_forest_trace(f, i)->stage[st].n_ops;
                CHECK(traces >= last_traces && ops >= last_ops);
                last_traces = traces;
                last_ops = ops;
                vjl_forest_free(f);
            }
            CHECK(last_traces == 2);
            vjl_writer_free(&s.w);
        }
}

VMP_TEST(jitlog_corrupt_mark_stops_there_with_the_byte)
{
    sample_log s;
    sample_build(&s, 4, 8);
    static const unsigned char bad_marks[] = {0x00, 0x10, 0x25, 0x26, 0xff};
    for (size_t k = 1; k < s.n_records; k++) {
        for (size_t b = 0; b < sizeof bad_marks; b++) {
            unsigned char *copy = malloc(s.w.len);
            REQUIRE(copy != NULL);
            memcpy(copy, s.w.buf, s.w.len);
            copy[s.record[k]] = bad_marks[b];
            vmp_error err;
            vjl_forest *f = vjl_forest_read_memory(copy, s.w.len, &err);
            free(copy);
            REQUIRE(f != NULL);
            const vmp_error *w = vjl_forest_warning(f);
            REQUIRE(w != NULL);
            char want[80];
            snprintf(want, sizeof want, "at byte %zu: unknown mark 0x%02x", s.record[k],
                     bad_marks[b]);
            CHECK(strncmp(w->message, want, strlen(want)) == 0);
            /* the records before it are there: reading the prefix gives the same */
            vjl_forest *g = vjl_forest_read_memory(s.w.buf, s.record[k], &err);
            REQUIRE(g != NULL);
            CHECK(vjl_forest_warning(g) == NULL);
            CHECK(vjl_forest_trace_count(f) == vjl_forest_trace_count(g));
            vjl_forest_free(f);
            vjl_forest_free(g);
        }
    }
    vjl_writer_free(&s.w);
}

VMP_TEST(jitlog_corrupt_fields_are_damage_not_crashes)
{
    sample_log s;
    sample_build(&s, 4, 8);
    /* every byte of the log set to every value: never a crash; a forest unless
     * the header broke */
    for (size_t at = 0; at < s.w.len; at++) {
        unsigned char saved = s.w.buf[at];
        for (unsigned v = 0; v < 256; v += 17) {
            s.w.buf[at] = (unsigned char)v;
            vmp_error err;
            vjl_forest *f = read_sample(&s, s.w.len, &err);
            if (at >= s.header_len)
                CHECK(f != NULL);
            if (f) {
                const vmp_error *w = vjl_forest_warning(f);
                CHECK(!w || (strncmp(w->message, "at byte ", 8) == 0 &&
                             !strchr(w->message, '\n')));
            } else {
                CHECK(err.message[0] && !strchr(err.message, '\n'));
            }
            vjl_forest_free(f);
        }
        s.w.buf[at] = saved;
    }
    vjl_writer_free(&s.w);
}

VMP_TEST(jitlog_bad_header_is_fatal)
{
    sample_log s;
    sample_build(&s, 4, 8);
    vmp_error err;
    struct {
        size_t at;
        unsigned char value;
        const char *says;
    } cases[] = {
        {0, 0x01, "not a PyPy JIT log"},   /* a vmprof profile starts differently */
        {1, 0, "version 0 is not supported"},
        {1, 5, "version 5 is not supported"},
        {3, 2, "32-bit flag is 2"},
        {7, 0x7f, "cut short"},             /* machine name longer than the file */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        unsigned char saved = s.w.buf[cases[k].at];
        s.w.buf[cases[k].at] = cases[k].value;
        vjl_forest *f = read_sample(&s, s.w.len, &err);
        CHECK(f == NULL);
        CHECK(strstr(err.message, cases[k].says) != NULL);
        s.w.buf[cases[k].at] = saved;
        vjl_forest_free(f);
    }
    CHECK(vjl_forest_read_memory("", 0, &err) == NULL);
    CHECK(strstr(err.message, "not a PyPy JIT log") != NULL);
    CHECK(vjl_forest_read_file("/nonexistent/x.jitlog", &err) == NULL);
    CHECK(strstr(err.message, "cannot open") != NULL);
    vjl_writer_free(&s.w);
}

static size_t gzip_bytes(const unsigned char *in, size_t n, unsigned char *out, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int rc = deflate(&zs, Z_FINISH);
    size_t len = cap - zs.avail_out;
    deflateEnd(&zs);
    return rc == Z_STREAM_END ? len : 0;
}

static void check_same_as_sample(vjl_forest *f)
{
    REQUIRE(f != NULL);
    CHECK(vjl_forest_warning(f) == NULL);
    CHECK(vjl_forest_trace_count(f) == 2);
    CHECK(vjl_forest_trace(f, 0)->stage[VJL_STAGE_NOOPT].n_ops == 3);
    vjl_forest_free(f);
}

VMP_TEST(jitlog_reads_gzip_files_and_pipes)
{
    sample_log s;
    sample_build(&s, 4, 8);
    unsigned char gz[8192];
    size_t gz_len = gzip_bytes(s.w.buf, s.w.len, gz, sizeof gz);
    REQUIRE(gz_len > 0);
    vmp_error err;
    check_same_as_sample(vjl_forest_read_memory(gz, gz_len, &err));

    /* a regular file, plain and gzip */
    int fd = memfd_create("jitlog", 0);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, s.w.buf, s.w.len) == (ssize_t)s.w.len);
    lseek(fd, 0, SEEK_SET);
    check_same_as_sample(vjl_forest_read_fd(fd, &err));
    REQUIRE(ftruncate(fd, 0) == 0);
    lseek(fd, 0, SEEK_SET);
    REQUIRE(write(fd, gz, gz_len) == (ssize_t)gz_len);
    lseek(fd, 0, SEEK_SET);
    check_same_as_sample(vjl_forest_read_fd(fd, &err));
    close(fd);

    /* a pipe */
    int p[2];
    REQUIRE(pipe(p) == 0);
    REQUIRE(write(p[1], s.w.buf, s.w.len) == (ssize_t)s.w.len);
    close(p[1]);
    check_same_as_sample(vjl_forest_read_fd(p[0], &err));
    close(p[0]);

    /* gzip cut short: what was inflated is read, with a warning */
    vjl_forest *f = vjl_forest_read_memory(gz, gz_len - 20, &err);
    REQUIRE(f != NULL);
    CHECK(vjl_forest_warning(f) != NULL);
    vjl_forest_free(f);
    vjl_writer_free(&s.w);
}

VMP_TEST(jitlog_ops_outside_a_trace_are_skipped)
{
    /* a log enabled while a trace was being recorded: its stage mark names a
     * trace never started; those ops are skipped, the rest is read */
    sample_log s;
    memset(&s, 0, sizeof s);
    s.version = 4;
    vjl_writer_init(&s.w, 8);
    vjl_put_header(&s.w, 4, 0, "x86_64");
    sample_op(&s, 1, "?,p0", "");
    sample_stage(&s, VJL_MARK_TRACE_OPT, 0x99);
    sample_op(&s, 1, "?,p0", "");
    sample_start_trace(&s, 0x5, "loop", 0);
    sample_stage(&s, VJL_MARK_TRACE_OPT, 0x5);
    sample_op(&s, 1, "?,p0", "");
    vmp_error err;
    vjl_forest *f = read_sample(&s, s.w.len, &err);
    REQUIRE(f != NULL);
    CHECK(vjl_forest_warning(f) == NULL);
    REQUIRE(vjl_forest_trace_count(f) == 1);
    CHECK(vjl_forest_trace(f, 0)->stage[VJL_STAGE_OPT].n_ops == 1);
    /* an op whose opnum the log never named has an empty name */
    CHECK(vjl_forest_opname(f, 1).len == 0);
    vjl_forest_free(f);
    vjl_writer_free(&s.w);
}

VMP_TEST(jitlog_large_file_reads_whole)
{
    /* above 8 MB a regular file is read into a mapping of its own (huge
     * pages): the same forest, freed with it */
    sample_log s;
    memset(&s, 0, sizeof s);
    s.version = 4;
    vjl_writer_init(&s.w, 8);
    vjl_put_header(&s.w, 4, 0, "x86_64");
    sample_start_trace(&s, 0x7, "loop", 0);
    sample_stage(&s, VJL_MARK_TRACE_OPT, 0x7);
    size_t n = 0;
    while (s.w.len < (9u << 20)) {
        sample_op(&s, OP_INT_ADD, "i2,i1,1", "p0,i1,i2,p3,p4,p5,p6,p7,p8,p9,p10,p11,p12,p13");
        n++;
    }
    char path[] = "/tmp/vjl_test_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, s.w.buf, s.w.len) == (ssize_t)s.w.len);
    close(fd);
    vmp_error err;
    vjl_forest *f = vjl_forest_read_file(path, &err);
    REQUIRE(f != NULL);
    CHECK(vjl_forest_warning(f) == NULL);
    CHECK(vjl_forest_size(f) == s.w.len);
    REQUIRE(vjl_forest_trace_count(f) == 1);
    const vjl_stage *st = &vjl_forest_trace(f, 0)->stage[VJL_STAGE_OPT];
    CHECK(st->n_ops == n);
    vjl_op_parts parts;
    vjl_op_get(f, &st->ops[n - 1], &parts);
    CHECK(str_is(f, parts.args, "i2,i1,1"));
    vjl_forest_free(f);
    /* and cut inside its last record */
    REQUIRE(truncate(path, (off_t)s.w.len - 3) == 0);
    f = vjl_forest_read_file(path, &err);
    REQUIRE(f != NULL);
    CHECK(vjl_forest_warning(f) != NULL);
    CHECK(vjl_forest_trace(f, 0)->stage[VJL_STAGE_OPT].n_ops == n - 1);
    vjl_forest_free(f);
    unlink(path);
    vjl_writer_free(&s.w);
}

/* Writes n bytes to a new temporary file; its path into path (20 bytes). */
static void write_temp(char *path, const void *data, size_t n)
{
    strcpy(path, "/tmp/vjl_test_XXXXXX");
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, data, n) == (ssize_t)n);
    close(fd);
}

VMP_TEST(jitlog_map_file_reads_what_read_file_reads)
{
    sample_log s;
    sample_build(&s, 4, 8);
    REQUIRE(!s.w.failed);
    char path[32];
    vmp_error err;

    /* plain: decoded from the mapping, every field as read_file's */
    write_temp(path, s.w.buf, s.w.len);
    vjl_forest *f = vjl_forest_map_file(path, &err);
    vjl_forest *g = vjl_forest_read_file(path, &err);
    REQUIRE(f != NULL);
    REQUIRE(g != NULL);
    CHECK(vjl_forest_size(f) == s.w.len);
    CHECK(memcmp(vjl_forest_bytes(f), s.w.buf, s.w.len) == 0);
    REQUIRE(vjl_forest_trace_count(f) == vjl_forest_trace_count(g));
    for (size_t i = 0; i < vjl_forest_trace_count(f); i++) {
        const vjl_trace *a = vjl_forest_trace(f, i), *b = vjl_forest_trace(g, i);
        CHECK(a->id == b->id && a->is_bridge == b->is_bridge && a->parent == b->parent);
        for (int st = 0; st < VJL_STAGES; st++) {
            REQUIRE(a->stage[st].n_ops == b->stage[st].n_ops);
            CHECK(a->stage[st].n_mps == b->stage[st].n_mps);
            for (size_t k = 0; k < a->stage[st].n_ops; k++) {
                vjl_op_parts pa, pb;
                vjl_op_get(f, &a->stage[st].ops[k], &pa);
                vjl_op_get(g, &b->stage[st].ops[k], &pb);
                CHECK(pa.args.len == pb.args.len &&
                      memcmp(vjl_str_ptr(f, pa.args), vjl_str_ptr(g, pb.args), pa.args.len) == 0);
                CHECK(pa.descr == pb.descr);
            }
        }
    }
    vjl_forest_free(g);
    vjl_forest_free(f); /* unmaps */
    check_same_as_sample(vjl_forest_map_file(path, &err));

    /* cut inside its last record: read up to there, with the same warning */
    REQUIRE(truncate(path, (off_t)s.w.len - 3) == 0);
    f = vjl_forest_map_file(path, &err);
    g = vjl_forest_read_file(path, &err);
    REQUIRE(f != NULL);
    REQUIRE(g != NULL);
    REQUIRE(vjl_forest_warning(f) != NULL);
    REQUIRE(vjl_forest_warning(g) != NULL);
    CHECK(strcmp(vjl_forest_warning(f)->message, vjl_forest_warning(g)->message) == 0);
    vjl_forest_free(f);
    vjl_forest_free(g);
    unlink(path);

    /* gzip is inflated as read_file does */
    unsigned char gz[8192];
    size_t gz_len = gzip_bytes(s.w.buf, s.w.len, gz, sizeof gz);
    REQUIRE(gz_len > 0);
    write_temp(path, gz, gz_len);
    check_same_as_sample(vjl_forest_map_file(path, &err));
    unlink(path);

    /* nothing to map: the same errors as read_file */
    static const char *const bad[][2] = {{"", "not a PyPy JIT log"}, {"\x01", "not a PyPy JIT log"}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        write_temp(path, bad[k][0], strlen(bad[k][0]));
        CHECK(vjl_forest_map_file(path, &err) == NULL);
        CHECK(strstr(err.message, bad[k][1]) != NULL);
        unlink(path);
    }
    CHECK(vjl_forest_map_file("/nonexistent/x.jitlog", &err) == NULL);
    CHECK(strstr(err.message, "cannot open") != NULL);
    CHECK(vjl_forest_map_file("/tmp", &err) == NULL);
    CHECK(err.message[0] != 0);
    vjl_writer_free(&s.w);
}
