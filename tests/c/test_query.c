/* test_query.c - the public query layer (vmprof.h): the function table, the
 * runner rule, sample and frame selection, call trees and function counts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "vmp_name.h"
#include "vmp_profile.h"
#include "vmp_test.h"
#include "vmprof.h"

static void name(vmp_profile *p, uint64_t id, const char *text)
{
    vmp_profile_add_name(p, id, text, strlen(text));
}

static void add(vmp_profile *p, const uint64_t *addrs, uint32_t n, uint64_t thread, int times)
{
    vmp_frame f[64];
    for (uint32_t i = 0; i < n; i++)
        f[i] = (vmp_frame){addrs[i], 0, (addrs[i] & 1) ? VMP_FRAME_NATIVE : VMP_FRAME_PYTHON};
    for (int k = 0; k < times; k++)
        vmp_profile_add_sample(p, f, n, thread, 0);
}

static uint32_t func_named(const vmp_profile *p, const char *n)
{
    size_t count;
    const vmp_func *f = vmp_profile_funcs(p, &count);
    for (size_t i = 0; i < count; i++)
        if (strcmp(f[i].name, n) == 0)
            return (uint32_t)i;
    return VMP_NONE;
}

/* the child of node named n, or VMP_NONE */
static uint32_t child(const vmp_tree *t, uint32_t node, const char *n)
{
    for (uint32_t c = t->nodes[node].first_child; c != VMP_NONE; c = t->nodes[c].next_sibling)
        if (strcmp(vmp_tree_func(t, c)->name, n) == 0)
            return c;
    return VMP_NONE;
}

/* main (runpy) -> run_program (vmprof) -> <module> (prog) -> work -> work -> leaf;
 * a re-created code object of work at another id */
enum { RUNPY = 0x10, RUNNER = 0x20, MOD = 0x30, WORK = 0x40, WORK2 = 0x50, LEAF = 0x60,
       EVAL = 0x71, EXT = 0x81, OTHER = 0x90 };

static vmp_profile *program_profile(void)
{
    vmp_profile *p = vmp_profile_new();
    name(p, RUNPY, "py:_run_code:86:/usr/lib/python3.11/runpy.py");
    name(p, RUNNER, "py:run_program:166:/venv/lib/python3.11/site-packages/vmprof/__main__.py");
    name(p, MOD, "py:<module>:1:/src/prog.py");
    name(p, WORK, "py:work:3:/src/prog.py");
    name(p, WORK2, "py:work:3:/src/prog.py");
    name(p, LEAF, "py:leaf:9:/src/prog.py");
    name(p, EVAL, "n:_PyEval_EvalFrameDefault.cold:0:-");
    name(p, EXT, "n:compress:12:/usr/lib/libz.so");
    name(p, OTHER, "py:other:20:/src/prog.py");
    uint64_t a[] = {RUNPY, EVAL, RUNNER, EVAL, MOD, WORK, WORK2, LEAF};
    uint64_t b[] = {RUNPY, EVAL, RUNNER, EVAL, MOD, WORK, EVAL, EXT};
    uint64_t c[] = {RUNPY, EVAL, RUNNER, EVAL, MOD, OTHER};
    uint64_t d[] = {RUNPY, RUNNER}; /* the runner itself, before the program */
    add(p, a, 8, 1, 5);
    add(p, b, 8, 1, 3);
    add(p, c, 6, 1, 1);
    add(p, d, 2, 1, 1);
    uint64_t t2[] = {OTHER, LEAF};
    add(p, t2, 2, 2, 2);
    return p;
}

VMP_TEST(query_functions_are_parsed_once_and_merged_by_name)
{
    vmp_profile *p = program_profile();
    size_t n;
    const vmp_func *f = vmp_profile_funcs(p, &n);
    REQUIRE(f);
    uint32_t w = func_named(p, "work");
    REQUIRE(w != VMP_NONE);
    CHECK(strcmp(f[w].file, "/src/prog.py") == 0 && f[w].first_line == 3);
    CHECK(f[w].kind == VMP_FRAME_PYTHON && f[w].addr == WORK);
    /* WORK and WORK2 name the same function: one entry */
    int works = 0;
    for (size_t i = 0; i < n; i++)
        works += strcmp(f[i].name, "work") == 0;
    CHECK(works == 1);
    uint32_t e = func_named(p, "_PyEval_EvalFrameDefault.cold");
    REQUIRE(e != VMP_NONE);
    CHECK(f[e].kind == VMP_FRAME_NATIVE && f[e].interpreter && f[e].file[0] == '\0');
    CHECK(!f[func_named(p, "compress")].interpreter);
    CHECK(f[func_named(p, "run_program")].runner && f[func_named(p, "_run_code")].runner);
    CHECK(!f[w].runner);
    CHECK(vmp_profile_find_func(p, VMP_FRAME_PYTHON, "work", "/src/prog.py", 3) == w);
    CHECK(vmp_profile_find_func(p, VMP_FRAME_PYTHON, "work", "/src/prog.py", 4) == VMP_NONE);
    vmp_profile_free(p);
}

static int interp(const char *name)
{
    return vmp_name_is_interpreter(name, strlen(name));
}

VMP_TEST(query_interpreter_is_the_call_machinery_not_the_c_the_program_called)
{
    /* between a caller and its callee on CPython 3.8-3.13 (tests/python/
     * test_native_interp.py profiles them): frames pushed and popped,
     * call.c's helpers, slots of Python classes, the eval breaker */
    static const char *const hidden[] = {
        "_PyEval_EvalFrameDefault.cold", "_PyEvalFramePushAndInit", "_PyEvalFramePushAndInit_Ex",
        "_PyEvalFrameClearAndPop", "initialize_locals", "_PyThreadState_PushFrame",
        "_PyThreadState_PopFrame", "_Py_CheckFunctionResult", "_PyFrame_New_NoTrack",
        "frame_dealloc", "_PyFrame_Clear", "_PyFrame_ClearExceptCode", "object_vacall",
        "_PyStack_AsDict", "_PyFunction_FastCallKeywords", "_PyMethodDef_RawFastCallKeywords",
        "slot_tp_init", "slot_tp_richcompare", "slot_tp_iter", "slot_tp_call", "slot_nb_add",
        "slot_sq_item", "slot_mp_subscript", "_Py_HandlePending", "_Py_Specialize_Call",
        "function_code_fastcall", "_PyObject_VectorcallTstate", "method_vectorcall_NOARGS",
        "PyVectorcall_Function", NULL};
    /* C functions the program called, and the work of its operations */
    static const char *const kept[] = {
        "builtin_sorted", "list_sort", "list_sort_impl", "list_sort_impl.isra.0", "builtin_sum",
        "PyIter_Next", "gen_iternext", "map_next", "type_call", "list_vectorcall",
        "partial_vectorcall", "PyObject_RichCompare", "gc_collect_main", "slot", "slot_",
        "_PyFrame", "PyFrame_New", "compress", "_PyEval", NULL};
    for (int i = 0; hidden[i]; i++) {
        if (!interp(hidden[i]))
            fprintf(stderr, "not hidden: %s\n", hidden[i]);
        CHECK(interp(hidden[i]));
    }
    for (int i = 0; kept[i]; i++) {
        if (interp(kept[i]))
            fprintf(stderr, "hidden: %s\n", kept[i]);
        CHECK(!interp(kept[i]));
    }
}

VMP_TEST(query_facts)
{
    vmp_profile *p = program_profile();
    vmp_profile_add_meta(p, "argv", 4, "prog.py -x", 10);
    vmp_facts f;
    vmp_profile_facts(p, &f);
    CHECK(f.n_samples == 12 && f.n_threads == 2);
    CHECK(strcmp(f.argv, "prog.py -x") == 0);
    CHECK(strcmp(vmp_profile_meta_get(p, "argv"), "prog.py -x") == 0);
    CHECK(vmp_profile_meta_get(p, "nope") == NULL);
    CHECK(vmp_profile_thread_samples(p, 0) == 10 && vmp_profile_thread_samples(p, 1) == 2);
    vmp_profile_free(p);
}

VMP_TEST(query_tree_starts_at_the_program)
{
    vmp_profile *p = program_profile();
    vmp_error err;
    vmp_query q = {.frames = VMP_Q_MERGE_RECURSION, .thread_set = 1, .thread = 0};
    vmp_tree *t = vmp_query_tree(p, &q, &err);
    REQUIRE(t);
    CHECK(t->samples == 10 && t->nodes[0].total == 10 && t->nodes[0].func == VMP_NONE);
    /* the program's module is a child of the root; the runner-only stack
     * keeps its frames */
    uint32_t mod = child(t, 0, "<module>");
    REQUIRE(mod != VMP_NONE);
    CHECK(t->nodes[mod].total == 9);
    CHECK(child(t, 0, "_run_code") != VMP_NONE);
    CHECK(t->nodes[child(t, 0, "_run_code")].total == 1);
    /* work -> work (two ids, one function) is one node: recursion merged */
    uint32_t work = child(t, mod, "work");
    REQUIRE(work != VMP_NONE);
    CHECK(t->nodes[work].total == 8);
    CHECK(child(t, work, "work") == VMP_NONE);
    CHECK(t->nodes[child(t, work, "leaf")].total == 5);
    CHECK(t->nodes[child(t, work, "leaf")].self == 5);
    /* children busiest first */
    CHECK(t->nodes[t->nodes[mod].first_child].total == 8);
    vmp_result_free(t);

    /* the runner kept when asked */
    q.frames |= VMP_Q_KEEP_RUNNER;
    t = vmp_query_tree(p, &q, &err);
    REQUIRE(t);
    CHECK(child(t, 0, "<module>") == VMP_NONE);
    uint32_t r = child(t, 0, "_run_code");
    REQUIRE(r != VMP_NONE);
    CHECK(t->nodes[r].total == 10);
    vmp_result_free(t);
    vmp_profile_free(p);
}

VMP_TEST(query_tree_frame_filters)
{
    vmp_profile *p = program_profile();
    vmp_error err;
    vmp_query q = {.frames = VMP_Q_MERGE_RECURSION | VMP_Q_HIDE_INTERPRETER};
    vmp_tree *t = vmp_query_tree(p, &q, &err);
    REQUIRE(t);
    uint32_t work = child(t, child(t, 0, "<module>"), "work");
    REQUIRE(work != VMP_NONE);
    /* the eval loop between work and compress is hidden: compress is right
     * under work */
    CHECK(child(t, work, "compress") != VMP_NONE);
    CHECK(child(t, work, "_PyEval_EvalFrameDefault.cold") == VMP_NONE);
    vmp_result_free(t);
    q.frames = VMP_Q_MERGE_RECURSION | VMP_Q_PYTHON_ONLY;
    t = vmp_query_tree(p, &q, &err);
    REQUIRE(t);
    work = child(t, child(t, 0, "<module>"), "work");
    REQUIRE(work != VMP_NONE);
    CHECK(t->nodes[work].n_children == 1); /* leaf only */
    CHECK(t->nodes[work].self == 3);       /* the native samples fold into work */
    vmp_result_free(t);
    q.frames = 0; /* recursion kept: work -> work */
    t = vmp_query_tree(p, &q, &err);
    REQUIRE(t);
    work = child(t, child(t, 0, "<module>"), "work");
    CHECK(child(t, work, "work") != VMP_NONE);
    vmp_result_free(t);
    vmp_profile_free(p);
}

VMP_TEST(query_tree_root_path_depth_and_share)
{
    vmp_profile *p = program_profile();
    vmp_error err;
    uint32_t path[] = {func_named(p, "<module>"), func_named(p, "work")};
    vmp_query q = {.frames = VMP_Q_MERGE_RECURSION, .root_path = path, .root_path_len = 2};
    vmp_tree *t = vmp_query_tree(p, &q, &err);
    REQUIRE(t);
    CHECK(t->nodes[0].func == path[1] && t->nodes[0].total == 8);
    CHECK(t->samples == 12);
    CHECK(child(t, 0, "leaf") != VMP_NONE);
    vmp_result_free(t);
    /* cut at depth 1 below <module>: work and other stay, leaf goes */
    q.root_path_len = 1;
    q.max_depth = 1;
    t = vmp_query_tree(p, &q, &err);
    REQUIRE(t);
    uint32_t work = child(t, 0, "work");
    REQUIRE(work != VMP_NONE);
    CHECK(t->nodes[work].n_children == 0 && t->nodes[work].cut == 8);
    CHECK(child(t, 0, "other") != VMP_NONE);
    vmp_result_free(t);
    /* a minimum share of 1/4 of the 12 samples drops other (1) */
    q.max_depth = 0;
    q.min_fraction = 0.25;
    t = vmp_query_tree(p, &q, &err);
    REQUIRE(t);
    CHECK(child(t, 0, "other") == VMP_NONE && t->nodes[0].cut == 1);
    vmp_result_free(t);
    /* a path that leads nowhere says which step */
    uint32_t bad[] = {func_named(p, "<module>"), func_named(p, "leaf")};
    q.root_path = bad;
    q.root_path_len = 2;
    q.min_fraction = 0;
    CHECK(vmp_query_tree(p, &q, &err) == NULL);
    CHECK(strstr(err.message, "step 2 (leaf)") != NULL);
    vmp_profile_free(p);
}

VMP_TEST(query_functions_self_and_total_once_per_sample)
{
    vmp_profile *p = program_profile();
    vmp_error err;
    vmp_query q = {0};
    vmp_func_counts *fc = vmp_query_functions(p, &q, &err);
    REQUIRE(fc);
    CHECK(fc->samples == 12);
    uint32_t w = func_named(p, "work"), l = func_named(p, "leaf");
    int seen = 0;
    for (size_t i = 0; i < fc->n; i++) {
        if (fc->items[i].func == w) {
            CHECK(fc->items[i].total == 8 && fc->items[i].self == 0);
            seen++;
        }
        if (fc->items[i].func == l) {
            CHECK(fc->items[i].total == 7 && fc->items[i].self == 7);
            seen++;
        }
        if (i)
            CHECK(fc->items[i - 1].total >= fc->items[i].total);
    }
    CHECK(seen == 2);
    vmp_result_free(fc);
    vmp_profile_free(p);
}

VMP_TEST(query_sample_and_time_ranges)
{
    vmp_profile *p = program_profile();
    vmp_error err;
    /* samples 5..8 are the three of stack b */
    vmp_query q = {.sample_range_set = 1, .sample_begin = 5, .sample_end = 8};
    CHECK(vmp_query_count(p, &q, &err) == 3);
    vmp_tree *t = vmp_query_tree(p, &q, &err);
    REQUIRE(t);
    CHECK(t->nodes[0].total == 3);
    uint32_t work = child(t, child(t, 0, "<module>"), "work");
    REQUIRE(work != VMP_NONE);
    CHECK(t->nodes[work].total == 3);
    CHECK(child(t, work, "leaf") == VMP_NONE);
    vmp_result_free(t);
    /* no times in this profile: sample i is at i x 1 ms */
    vmp_query tq = {.time_range_set = 1, .time_begin_ms = 4.5, .time_end_ms = 8.0};
    CHECK(vmp_query_count(p, &tq, &err) == 3);
    vmp_query bad = {.thread_set = 1, .thread = 7};
    CHECK(vmp_query_tree(p, &bad, &err) == NULL && strstr(err.message, "thread index 7"));
    vmp_profile_free(p);
}

VMP_TEST(query_callers_and_callees)
{
    vmp_profile *p = program_profile();
    vmp_error err;
    vmp_query q = {.frames = VMP_Q_MERGE_RECURSION | VMP_Q_HIDE_INTERPRETER};
    uint32_t w = func_named(p, "work");
    vmp_neighbours *nb = vmp_query_neighbours(p, &q, w, &err);
    REQUIRE(nb);
    CHECK(nb->total == 8 && nb->self == 0 && nb->samples == 12);
    REQUIRE(nb->n_callers == 1);
    CHECK(nb->callers[0].func == func_named(p, "<module>") && nb->callers[0].total == 8);
    REQUIRE(nb->n_callees == 2);
    CHECK(nb->callees[0].func == func_named(p, "leaf") && nb->callees[0].total == 5);
    CHECK(nb->callees[1].func == func_named(p, "compress") && nb->callees[1].total == 3);
    vmp_result_free(nb);
    CHECK(vmp_query_neighbours(p, &q, 9999, &err) == NULL && strstr(err.message, "9999"));
    vmp_profile_free(p);
}

static vmp_profile *lines_profile(void)
{
    vmp_profile *p = vmp_profile_new();
    vmp_profile_summary_mut(p)->mode = 0x02 | 0x01; /* lines, memory */
    name(p, MOD, "py:<module>:1:/src/prog.py");
    name(p, WORK, "py:work:3:/src/prog.py");
    vmp_frame a[] = {{MOD, 5, 0}, {WORK, 4, 0}}, b[] = {{MOD, 5, 0}, {WORK, 6, 0}},
              c[] = {{MOD, 7, 0}};
    uint64_t rss[] = {100, 150, 140, 300, 300, 310};
    const vmp_frame *stacks[] = {a, a, b, b, c, a};
    uint32_t depth[] = {2, 2, 2, 2, 1, 2};
    for (int i = 0; i < 6; i++)
        vmp_profile_add_sample(p, stacks[i], depth[i], 1, rss[i]);
    return p;
}

static const vmp_func_count *count_of(const vmp_func_counts *fc, const vmp_profile *p,
                                      const char *n)
{
    uint32_t f = func_named(p, n);
    for (size_t i = 0; i < fc->n; i++)
        if (fc->items[i].func == f)
            return &fc->items[i];
    return NULL;
}

VMP_TEST(query_under_counts_below_the_outermost_frame_once_per_sample)
{
    vmp_profile *p = program_profile();
    vmp_error err;
    uint32_t w = func_named(p, "work");
    vmp_func_counts *fc = vmp_query_under(p, NULL, w, &err);
    REQUIRE(fc);
    CHECK(fc->samples == 8); /* the 5 + 3 samples with work */
    const vmp_func_count *work = count_of(fc, p, "work"), *leaf = count_of(fc, p, "leaf"),
                         *ext = count_of(fc, p, "compress");
    REQUIRE(work && leaf && ext);
    CHECK(work->total == 5 && work->self == 0); /* work under work: its recursion */
    CHECK(leaf->total == 5 && leaf->self == 5);
    CHECK(ext->total == 3 && ext->self == 3);
    CHECK(!count_of(fc, p, "<module>") && !count_of(fc, p, "other"));
    vmp_result_free(fc);
    /* recursion merged: work is not under itself */
    vmp_query q = {.frames = VMP_Q_MERGE_RECURSION};
    fc = vmp_query_under(p, &q, w, &err);
    REQUIRE(fc);
    CHECK(fc->samples == 8 && !count_of(fc, p, "work") && count_of(fc, p, "leaf")->total == 5);
    vmp_result_free(fc);
    CHECK(vmp_query_under(p, NULL, 9999, &err) == NULL && strstr(err.message, "9999"));
    vmp_profile_free(p);
}

VMP_TEST(query_lines_and_memory)
{
    vmp_profile *p = lines_profile();
    vmp_error err;
    vmp_line_counts *lc = vmp_query_lines(p, NULL, VMP_NONE, &err);
    REQUIRE(lc);
    REQUIRE(lc->n_funcs == 2);
    CHECK(lc->funcs[0].func == func_named(p, "<module>") && lc->funcs[0].total == 6);
    REQUIRE(lc->funcs[0].n_lines == 2);
    CHECK(lc->funcs[0].lines[0].line == 5 && lc->funcs[0].lines[0].count == 5);
    CHECK(lc->funcs[0].lines[1].line == 7 && lc->funcs[0].lines[1].count == 1);
    REQUIRE(lc->funcs[1].n_lines == 2);
    CHECK(lc->funcs[1].lines[0].line == 4 && lc->funcs[1].lines[0].count == 3);
    vmp_result_free(lc);
    lc = vmp_query_lines(p, NULL, func_named(p, "work"), &err);
    REQUIRE(lc);
    CHECK(lc->n_funcs == 1 && lc->funcs[0].total == 5);
    vmp_result_free(lc);

    vmp_rss_series *r = vmp_query_rss(p, NULL, 4, &err);
    REQUIRE(r);
    /* 6 samples in buckets of 2: the peak of each */
    REQUIRE(r->n == 3);
    CHECK(r->points[0].rss_kib == 150 && r->points[0].ms == 1.0);
    CHECK(r->points[1].rss_kib == 300 && r->points[2].rss_kib == 310);
    CHECK(r->peak_kib == 310 && r->first_kib == 100 && r->last_kib == 310);
    /* growth: +50 (a: work), +160 (b: work), +10 (a: work); c's +0 */
    REQUIRE(r->n_growth == 1);
    CHECK(r->growth[0].func == func_named(p, "work") && r->growth[0].total == 220);
    vmp_result_free(r);
    vmp_profile_free(p);

    p = program_profile(); /* no lines, no memory */
    CHECK(vmp_query_lines(p, NULL, VMP_NONE, &err) == NULL && strstr(err.message, "--lines"));
    r = vmp_query_rss(p, NULL, 10, &err);
    REQUIRE(r);
    CHECK(r->n == 0);
    vmp_result_free(r);
    vmp_profile_free(p);
}

VMP_TEST(query_diff_pairs_functions_by_text)
{
    vmp_profile *a = program_profile();
    vmp_profile *b = vmp_profile_new();
    /* b: other ids, the same functions, plus one a lacks */
    name(b, 0x300, "py:<module>:1:/src/prog.py");
    name(b, 0x400, "py:work:3:/src/prog.py");
    name(b, 0x500, "py:newer:30:/src/prog.py");
    uint64_t s1[] = {0x300, 0x400}, s2[] = {0x300, 0x500};
    add(b, s1, 2, 5, 4);
    add(b, s2, 2, 5, 6);
    vmp_error err;
    vmp_query q = {.frames = VMP_Q_MERGE_RECURSION, .thread_set = 1, .thread = 0};
    vmp_query qb = {.frames = VMP_Q_MERGE_RECURSION};
    vmp_tree *t = vmp_query_diff(a, &q, b, &qb, &err);
    REQUIRE(t);
    CHECK(t->samples == 10 && t->samples_b == 10);
    uint32_t mod = child(t, 0, "<module>");
    REQUIRE(mod != VMP_NONE);
    CHECK(t->nodes[mod].total == 9 && t->b[mod].total == 10);
    uint32_t work = child(t, mod, "work"), newer = child(t, mod, "newer");
    REQUIRE(work != VMP_NONE && newer != VMP_NONE);
    CHECK(t->nodes[work].total == 8 && t->b[work].total == 4 && t->b[work].self == 4);
    CHECK(t->nodes[newer].total == 0 && t->b[newer].total == 6);
    CHECK(strcmp(vmp_tree_func(t, newer)->name, "newer") == 0);
    vmp_result_free(t);
    vmp_profile_free(a);
    vmp_profile_free(b);
}

typedef struct collect {
    char buf[1 << 16];
    size_t len;
    int calls;
} collect;

static int collect_write(void *ctx, const void *data, size_t len)
{
    collect *c = ctx;
    if (c->len + len > sizeof c->buf)
        return -1;
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    c->calls++;
    return 0;
}

VMP_TEST(query_export_to_a_sink_and_a_buffer)
{
    vmp_profile *p = program_profile();
    vmp_error err;
    static collect c;
    memset(&c, 0, sizeof c);
    vmp_sink sink = {collect_write, &c};
    vmp_query q = {.thread_set = 1, .thread = 0};
    REQUIRE(vmp_query_export(p, &q, "collapsed", NULL, &sink, &err) == 0);
    c.buf[c.len] = '\0';
    /* the program's frames, not the runner's, start each line */
    CHECK(strstr(c.buf, "<module> (/src/prog.py:1);work (/src/prog.py:3);work (/src/prog.py:3);"
                        "leaf (/src/prog.py:9) 5\n") != NULL);
    CHECK(strstr(c.buf, "run_program") != NULL); /* the runner-only sample keeps it */
    CHECK(strstr(c.buf, "other (/src/prog.py:20);leaf") == NULL); /* thread 2 */
    char *data;
    size_t len;
    q.sample_range_set = 1;
    q.sample_begin = 5;
    q.sample_end = 8;
    REQUIRE(vmp_query_export_buffer(p, &q, "collapsed", NULL, &data, &len, &err) == 0);
    CHECK(len > 0 && strstr(data, " 3\n") && !strstr(data, "leaf"));
    vmp_result_free(data);
    CHECK(vmp_query_export(p, NULL, "svg", NULL, &sink, &err) < 0 && strstr(err.message, "html"));
    vmp_profile_free(p);
}

VMP_TEST(query_runner_rule_on_pypy_and_without_a_runner)
{
    vmp_profile *p = vmp_profile_new();
    name(p, 0x100, "py:entry_point:1126:<builtin>/app_main.py");
    name(p, RUNPY, "py:_run_code:64:/usr/lib/pypy3.9/runpy.py");
    name(p, RUNNER, "py:<module>:1:/x/vmprof/__main__.py");
    name(p, MOD, "py:<module>:2:calc.py");
    name(p, WORK, "py:work:3:calc.py");
    uint64_t with_runner[] = {0x100, RUNPY, RUNNER, MOD, WORK};
    uint64_t without[] = {0x100, MOD}; /* PyPy running calc.py itself */
    uint64_t runpy_later[] = {MOD, RUNPY, WORK}; /* the program calls runpy */
    add(p, with_runner, 5, 1, 2);
    add(p, without, 2, 1, 1);
    add(p, runpy_later, 3, 1, 1);
    vmp_error err;
    vmp_query q = {.frames = VMP_Q_MERGE_RECURSION};
    vmp_tree *t = vmp_query_tree(p, &q, &err);
    REQUIRE(t);
    uint32_t mod = child(t, 0, "<module>");
    REQUIRE(mod != VMP_NONE);
    CHECK(t->nodes[mod].total == 3);          /* both stacks that start at calc.py */
    CHECK(child(t, mod, "work") != VMP_NONE); /* the runner's stack, from the program */
    CHECK(child(t, mod, "_run_code") != VMP_NONE); /* runpy under the program stays */
    uint32_t start = child(t, 0, "entry_point");
    REQUIRE(start != VMP_NONE); /* no runner: PyPy's start-up is kept */
    CHECK(t->nodes[start].total == 1);
    vmp_result_free(t);
    /* Python only: PyPy's start-up is the interpreter's, as CPython's native
     * one: the program's frames start every stack (runpy stays where the
     * runner is kept, as the original's lists have it) */
    q.frames = VMP_Q_MERGE_RECURSION | VMP_Q_PYTHON_ONLY | VMP_Q_KEEP_RUNNER;
    t = vmp_query_tree(p, &q, &err);
    REQUIRE(t);
    CHECK(child(t, 0, "entry_point") == VMP_NONE);
    CHECK(child(t, 0, "_run_code") != VMP_NONE);
    mod = child(t, 0, "<module>");
    REQUIRE(mod != VMP_NONE);
    CHECK(t->nodes[mod].total == 2); /* PyPy running calc.py itself; the program calling runpy */
    vmp_result_free(t);
    vmp_profile_free(p);
}
