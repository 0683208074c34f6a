/*
 * vmp_export_firefox.c - the Firefox Profiler's processed profile format
 * (profiler.firefox.com, "Load a profile from file").
 *
 * Written as processed-format version 48; the profiler upgrades older
 * versions itself, so a fixed version keeps loading as it moves on.  Per
 * exported thread:
 *   samples      one entry per sample in file order: its stack and a time
 *                in ms from the profile's start (the file has no per-sample
 *                times: samples are spread evenly over the recorded run)
 *   stackTable   the thread's call tree (the query layer's) as a prefix tree
 *   frameTable   one row per view frame (func, line)
 *   funcTable    one row per view func (name, file, first line)
 *   stringArray  the thread's strings
 * Categories: Python, Native, Other (PyPy's JIT/GC/...).  A memory profile
 * adds an RSS counter (bytes, as changes between samples).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmp_export.h"
#include "vmp_format.h"
#include "vmp_json.h"
#include "vmp_query.h"

#define PROCESSED_VERSION 48
#define GECKO_VERSION 27
/* a func without a file (null in the table): never a string index, and not
 * VMP_EXPORT_STRINGS_FAILED either */
#define NO_FILE (VMP_EXPORT_STRINGS_FAILED - 1)

enum { CAT_PYTHON, CAT_NATIVE, CAT_OTHER };

static int category_of(const vmp_export_func *f)
{
    if (f->kind == VMP_FRAME_PYTHON)
        return CAT_PYTHON;
    return f->kind == VMP_FRAME_NATIVE ? CAT_NATIVE : CAT_OTHER;
}

/* The profiler's columns that hold one value for every row: "key":[v,...,v], */
static void column_u(FILE *out, const char *key, size_t n, unsigned value)
{
    size_t i;
    fprintf(out, "\"%s\":[", key);
    for (i = 0; i < n; i++)
        fprintf(out, i ? ",%u" : "%u", value);
    fputs("],", out);
}

static void column_lit(FILE *out, const char *key, size_t n, const char *lit)
{
    size_t i;
    fprintf(out, "\"%s\":[", key);
    for (i = 0; i < n; i++) {
        if (i)
            putc(',', out);
        fputs(lit, out);
    }
    fputs("],", out);
}

/* Element i of a number column in which absent entries are null. */
static void elem_u_or_null(FILE *out, size_t i, int present, unsigned value)
{
    if (i)
        putc(',', out);
    if (present)
        fprintf(out, "%u", value);
    else
        fputs("null", out);
}

static int write_thread(const vmp_export_view *v, FILE *out, uint32_t t, int is_main,
                        vmp_error *err)
{
    const vmp_profile *p = v->profile;
    uint64_t n = v->sample_end, i, n_here = 0;
    vmp_export_strings strs = {0};
    vmp_query tq;
    vmp_tree *tree;
    uint32_t *leaves = NULL, *frame_of = NULL;
    uint32_t *name_str = NULL, *file_str = NULL;
    size_t k;
    int first, rc;
    char label[64];

    vmp_export_view_tree_query(v, t, &tq);
    if (!(tree = vmp_query_tree_leaves(p, &tq, &leaves, err)))
        return -1;
    /* stack k - 1 is tree node k (k >= 1), the root being no frame */
    frame_of = malloc(tree->n_nodes * sizeof *frame_of);
    if (!frame_of || vmp_export_strings_init(&strs) < 0)
        goto oom;
    for (k = 1; k < tree->n_nodes; k++)
        if ((frame_of[k] = vmp_export_view_node_frame(v, &tree->nodes[k])) == VMP_NONE)
            goto oom; /* cannot happen: the view has the frames of its query's paths */
    name_str = malloc((v->n_funcs + 1) * sizeof *name_str);
    file_str = malloc((v->n_funcs + 1) * sizeof *file_str);
    if (!name_str || !file_str)
        goto oom;
    for (k = 0; k < v->n_funcs; k++) {
        name_str[k] = vmp_export_strings_add(&strs, v->funcs[k].name, v->funcs[k].name_len);
        file_str[k] = v->funcs[k].file_len
                          ? vmp_export_strings_add(&strs, v->funcs[k].file, v->funcs[k].file_len)
                          : NO_FILE;
        if (name_str[k] == VMP_EXPORT_STRINGS_FAILED || file_str[k] == VMP_EXPORT_STRINGS_FAILED)
            goto oom;
    }

    fputs("{\"processType\":\"default\",\"processStartupTime\":0,\"processShutdownTime\":null,"
          "\"registerTime\":0,\"unregisterTime\":null,\"pausedRanges\":[],\"name\":",
          out);
    vmp_json_cstring(out, vmp_export_view_thread_label(v, t, label, sizeof label));
    fprintf(out, ",\"isMainThread\":%s,\"pid\":\"0\",\"tid\":%u,", is_main ? "true" : "false",
            t + 1);

    /* samples, in file order */
    fputs("\"samples\":{\"weightType\":\"samples\",\"weight\":null,\"stack\":[", out);
    for (i = v->sample_begin; i < n; i++) {
        uint32_t ps = vmp_profile_sample_stack(p, i), leaf;
        if (ps >= vmp_profile_stack_count(p) || v->stack_map[ps] == VMP_EXPORT_NO_STACK ||
            (leaf = leaves[ps]) == VMP_NONE)
            continue;
        elem_u_or_null(out, n_here++, leaf != 0, leaf - 1);
    }
    fputs("],\"time\":[", out);
    first = 1;
    for (i = v->sample_begin; i < n; i++) {
        uint32_t ps = vmp_profile_sample_stack(p, i);
        if (ps >= vmp_profile_stack_count(p) || v->stack_map[ps] == VMP_EXPORT_NO_STACK ||
            leaves[ps] == VMP_NONE)
            continue;
        if (!first)
            putc(',', out);
        first = 0;
        vmp_json_millis(out, vmp_export_view_sample_ms(v, i));
    }
    fprintf(out, "],\"length\":%" PRIu64 "},", n_here);

    fputs("\"markers\":{\"data\":[],\"name\":[],\"startTime\":[],\"endTime\":[],\"phase\":[],"
          "\"category\":[],\"length\":0},",
          out);

    /* stack table: tree node k (k >= 1) is stack k - 1 */
    fputs("\"stackTable\":{\"frame\":[", out);
    for (k = 1; k < tree->n_nodes; k++)
        fprintf(out, k > 1 ? ",%u" : "%u", frame_of[k]);
    fputs("],\"prefix\":[", out);
    for (k = 1; k < tree->n_nodes; k++)
        elem_u_or_null(out, k - 1, tree->nodes[k].parent != 0, tree->nodes[k].parent - 1);
    fputs("],\"category\":[", out);
    for (k = 1; k < tree->n_nodes; k++)
        fprintf(out, k > 1 ? ",%d" : "%d", category_of(&v->funcs[v->frames[frame_of[k]].func]));
    fputs("],", out);
    column_u(out, "subcategory", tree->n_nodes - 1, 0);
    fprintf(out, "\"length\":%zu},", tree->n_nodes - 1);

    /* frame table */
    fputs("\"frameTable\":{", out);
    column_lit(out, "address", v->n_frames, "-1");
    column_u(out, "inlineDepth", v->n_frames, 0);
    fputs("\"category\":[", out);
    for (k = 0; k < v->n_frames; k++)
        fprintf(out, k ? ",%d" : "%d", category_of(&v->funcs[v->frames[k].func]));
    fputs("],", out);
    column_u(out, "subcategory", v->n_frames, 0);
    fputs("\"func\":[", out);
    for (k = 0; k < v->n_frames; k++)
        fprintf(out, k ? ",%u" : "%u", v->frames[k].func);
    fputs("],", out);
    column_lit(out, "nativeSymbol", v->n_frames, "null");
    column_u(out, "innerWindowID", v->n_frames, 0);
    column_lit(out, "implementation", v->n_frames, "null");
    fputs("\"line\":[", out);
    for (k = 0; k < v->n_frames; k++)
        elem_u_or_null(out, k, v->funcs[v->frames[k].func].file_len != 0, v->frames[k].line);
    fputs("],", out);
    column_lit(out, "column", v->n_frames, "null");
    fprintf(out, "\"length\":%zu},", v->n_frames);

    /* func table */
    fputs("\"funcTable\":{\"name\":[", out);
    for (k = 0; k < v->n_funcs; k++)
        fprintf(out, k ? ",%u" : "%u", name_str[k]);
    fputs("],", out);
    column_lit(out, "isJS", v->n_funcs, "false");
    column_lit(out, "relevantForJS", v->n_funcs, "false");
    column_lit(out, "resource", v->n_funcs, "-1");
    fputs("\"fileName\":[", out);
    for (k = 0; k < v->n_funcs; k++)
        elem_u_or_null(out, k, file_str[k] != NO_FILE, file_str[k]);
    fputs("],\"lineNumber\":[", out);
    for (k = 0; k < v->n_funcs; k++)
        elem_u_or_null(out, k, v->funcs[k].file_len != 0, v->funcs[k].first_line);
    fputs("],", out);
    column_lit(out, "columnNumber", v->n_funcs, "null");
    fprintf(out, "\"length\":%zu},", v->n_funcs);

    fputs("\"resourceTable\":{\"lib\":[],\"name\":[],\"host\":[],\"type\":[],\"length\":0},"
          "\"nativeSymbols\":{\"libIndex\":[],\"address\":[],\"name\":[],\"functionSize\":[],"
          "\"length\":0},\"stringArray\":[",
          out);
    for (k = 0; k < strs.count; k++) {
        size_t len;
        const char *s = vmp_export_strings_get(&strs, k, &len);
        if (k)
            putc(',', out);
        vmp_json_string(out, s, len);
    }
    fputs("]}", out);
    rc = 0;
    goto out;
oom:
    rc = vmp_error_set(err, -1, "out of memory while writing the firefox export");
out:
    free(name_str);
    free(file_str);
    vmp_export_strings_free(&strs);
    vmp_result_free(tree);
    free(leaves);
    free(frame_of);
    return rc;
}

static void write_rss_counter(const vmp_export_view *v, FILE *out)
{
    const vmp_profile *p = v->profile;
    uint64_t n = v->sample_end, i;
    int64_t last = 0;
    fputs("{\"name\":\"RSS\",\"category\":\"Memory\",\"description\":\"Resident set size of the "
          "profiled process\",\"color\":\"orange\",\"pid\":\"0\",\"mainThreadIndex\":0,"
          "\"samples\":{\"time\":[",
          out);
    for (i = v->sample_begin; i < n; i++) {
        if (i > v->sample_begin)
            putc(',', out);
        vmp_json_millis(out, vmp_export_view_sample_ms(v, i));
    }
    fputs("],\"count\":[", out);
    for (i = v->sample_begin; i < n; i++) {
        int64_t bytes = (int64_t)vmp_profile_sample_rss(p, i) * 1024;
        fprintf(out, i > v->sample_begin ? ",%" PRId64 : "%" PRId64, bytes - last);
        last = bytes;
    }
    fprintf(out, "],\"length\":%" PRIu64 "}}", n - v->sample_begin);
}

int vmp_export_firefox(const vmp_export_view *v, FILE *out, const vmp_export_options *o,
                       vmp_error *err)
{
    const vmp_profile_summary *sum = vmp_profile_get_summary(v->profile);
    size_t n_threads = vmp_profile_thread_count(v->profile), t;
    double start_ms = sum->has_start_time
                          ? (double)sum->start_sec * 1000.0 + (double)sum->start_usec / 1000.0
                          : 0.0;
    int first = 1;
    (void)o;
    fputs("{\"meta\":{\"interval\":", out);
    vmp_json_double(out, vmp_export_view_period_ms(v));
    fputs(",\"startTime\":", out);
    vmp_json_double(out, start_ms);
    fputs(",\"processType\":0,\"product\":", out);
    vmp_json_cstring(out, v->title);
    fprintf(out,
            ",\"stackwalk\":0,\"version\":%d,\"preprocessedProfileVersion\":%d,"
            "\"symbolicated\":true,\"importedFrom\":\"vmprof\",\"usesOnlyOneStackType\":true,"
            "\"doesNotUseFrameImplementation\":true,\"sourceCodeIsNotOnSearchfox\":true,"
            "\"markerSchema\":[],\"categories\":["
            "{\"name\":\"Python\",\"color\":\"yellow\",\"subcategories\":[\"Other\"]},"
            "{\"name\":\"Native\",\"color\":\"blue\",\"subcategories\":[\"Other\"]},"
            "{\"name\":\"Other\",\"color\":\"grey\",\"subcategories\":[\"Other\"]}]},"
            "\"libs\":[],\"threads\":[",
            GECKO_VERSION, PROCESSED_VERSION);
    for (t = 0; t < n_threads; t++) {
        if (!v->thread_on[t])
            continue;
        if (!first)
            putc(',', out);
        if (write_thread(v, out, (uint32_t)t, first, err) < 0)
            return -1;
        first = 0;
    }
    fputs("],\"counters\":[", out);
    if ((sum->mode & VMP_MODE_MEMORY) && sum->n_samples)
        write_rss_counter(v, out);
    fputs("]}\n", out);
    return 0;
}
