/*
 * vmp_export_html.c - one self-contained HTML page with an interactive flame
 * graph (click to zoom, search, hover details, thread selection, an RSS plot
 * for memory profiles) and a table of the hottest functions.  It needs no network and no server.
 *
 * The page itself is vmp_export_html_page.html, kept as a real HTML file so
 * it can be edited and checked as one, and with it the flame graph drawing
 * web/src/flamegraph.js, the one vmprof-server's UI uses too.  The build turns
 * both into headers (src/tools/vmp_embed.c, run by meson.build), so they are
 * compiled into the library wherever it is built.  The exporter copies the
 * page and puts the data and the drawing where the page's markers stand.
 *
 * The data is the aggregated call tree of each thread (and of all threads
 * merged when there are several), never the samples: nodes narrower than
 * html_min_fraction of their tree (default 1/5000, far under a pixel) are
 * left out, so the page stays small however long the run (their samples
 * then show as their parent's own time in the page's table and tooltips).  Tree layout
 * (arrays indexed by node, node 0 the root, parents before children):
 *   {"label", "parent": [...], "frame": [...], "value": [...]}
 * with frames and funcs shared by all trees.  Memory profiles add "rss":
 * [[ms, KiB], ...] reduced to at most RSS_POINTS points (the peak of each
 * bucket, so spikes stay visible).
 */
#define _GNU_SOURCE /* memmem */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmp_export.h"
#include "vmp_format.h"
#include "vmp_json.h"

#define DEFAULT_MIN_FRACTION (1.0 / 5000.0)
#define RSS_POINTS 2000
#define DATA_MARKER "/*VMPROF_DATA*/"
#define FLAMEGRAPH_MARKER "/*VMPROF_FLAMEGRAPH*/" /* after DATA_MARKER in the page */

#include "vmp_export_html_page.h"       /* generated: vmp_html_page, vmp_html_page_LEN */
#include "vmp_export_html_flamegraph.h" /* generated: vmp_html_flamegraph, ..._LEN */

static const char *const vmp_html_page_end = vmp_html_page + vmp_html_page_LEN;
static const char *const vmp_html_flamegraph_end = vmp_html_flamegraph + vmp_html_flamegraph_LEN;

static int write_tree(const vmp_export_view *v, FILE *out, uint32_t thread, const char *label,
                      double min_fraction, int *pruned, vmp_error *err)
{
    vmp_query tq;
    size_t k;
    /* the query layer's tree drops the nodes under the share (whole subtrees:
     * a child is never heavier than its parent), counted in n_cut */
    vmp_export_view_tree_query(v, thread, &tq);
    tq.min_fraction = min_fraction;
    vmp_tree *t = vmp_query_tree(v->profile, &tq, err);
    if (!t)
        return -1;
    fputs("{\"label\":", out);
    vmp_json_cstring(out, label);
    fputs(",\"parent\":[-1", out);
    for (k = 1; k < t->n_nodes; k++)
        fprintf(out, ",%u", t->nodes[k].parent);
    fputs("],\"frame\":[-1", out);
    for (k = 1; k < t->n_nodes; k++) {
        uint32_t frame = vmp_export_view_node_frame(v, &t->nodes[k]);
        if (frame == VMP_NONE) { /* cannot happen: the view has its query's frames */
            vmp_result_free(t);
            return vmp_error_set(err, -1, "the html export found a frame its view lacks");
        }
        fprintf(out, ",%u", frame);
    }
    fputs("],\"value\":[", out);
    for (k = 0; k < t->n_nodes; k++) {
        fprintf(out, k ? ",%" PRIu64 : "%" PRIu64, t->nodes[k].total);
        if (t->nodes[k].n_cut)
            *pruned = 1;
    }
    fputs("]}", out);
    vmp_result_free(t);
    return 0;
}

/* RSS is the process's, so every exported sample counts, whatever thread */
static int write_rss(const vmp_export_view *v, FILE *out, vmp_error *err)
{
    vmp_query q = {.sample_range_set = 1, .sample_begin = v->sample_begin,
                   .sample_end = v->sample_end};
    vmp_rss_series *r = vmp_query_rss(v->profile, &q, RSS_POINTS, err);
    if (!r)
        return -1;
    fputs(",\"rss\":[", out);
    for (size_t i = 0; i < r->n; i++) {
        if (i)
            putc(',', out);
        putc('[', out);
        vmp_json_millis(out, r->points[i].ms);
        fprintf(out, ",%" PRIu64 "]", r->points[i].rss_kib);
    }
    putc(']', out);
    vmp_result_free(r);
    return 0;
}

static int write_data(const vmp_export_view *v, FILE *out, const vmp_export_options *o,
                      vmp_error *err)
{
    const vmp_profile_summary *sum = vmp_profile_get_summary(v->profile);
    size_t n_threads = vmp_profile_thread_count(v->profile), i, on = 0;
    double min_fraction = o && o->html_min_fraction > 0 ? o->html_min_fraction
                                                        : DEFAULT_MIN_FRACTION;
    int pruned = 0, first = 1;
    char label[64];

    for (i = 0; i < n_threads; i++)
        on += v->thread_on[i];
    fputs("{\"title\":", out);
    vmp_json_cstring(out, v->title);
    fputs(",\"interp\":", out);
    vmp_json_cstring(out, sum->interp);
    fprintf(out, ",\"samples\":%" PRIu64 ",\"lines\":%s,\"period_ms\":", v->n_samples,
            o && o->lines && (sum->mode & VMP_MODE_LINES) ? "true" : "false");
    vmp_json_double(out, vmp_export_view_period_ms(v));
    fputs(",\"duration_ms\":", out);
    vmp_json_double(out, sum->n_samples ? vmp_export_view_sample_ms(v, sum->n_samples) : 0);
    fputs(",\"min_fraction\":", out);
    vmp_json_double(out, min_fraction);
    fputs(",\"funcs\":[", out);
    for (i = 0; i < v->n_funcs; i++) {
        const vmp_export_func *f = &v->funcs[i];
        fputs(i ? ",[" : "[", out);
        vmp_json_string(out, f->name, f->name_len);
        putc(',', out);
        vmp_json_string(out, f->file, f->file_len);
        fprintf(out, ",%u,%u]", f->first_line, f->kind);
    }
    fputs("],\"frames\":[", out);
    for (i = 0; i < v->n_frames; i++)
        fprintf(out, i ? ",[%u,%u]" : "[%u,%u]", v->frames[i].func, v->frames[i].line);
    fputs("],\"trees\":[", out);
    if (on != 1) {
        if (write_tree(v, out, VMP_ALL_THREADS, "All threads", min_fraction, &pruned, err) < 0)
            return -1;
        first = 0;
    }
    for (i = 0; i < n_threads; i++) {
        if (!v->thread_on[i])
            continue;
        if (!first)
            putc(',', out);
        first = 0;
        vmp_export_view_thread_label(v, (uint32_t)i, label, sizeof label);
        if (write_tree(v, out, (uint32_t)i, label, min_fraction, &pruned, err) < 0)
            return -1;
    }
    putc(']', out);
    if ((sum->mode & VMP_MODE_MEMORY) && sum->n_samples && write_rss(v, out, err) < 0)
        return -1;
    fprintf(out, ",\"pruned\":%s}", pruned ? "true" : "false");
    return 0;
}

int vmp_export_html(const vmp_export_view *v, FILE *out, const vmp_export_options *o,
                    vmp_error *err)
{
    size_t len = vmp_html_page_LEN;
    const char *mark = memmem(vmp_html_page, len, DATA_MARKER, strlen(DATA_MARKER));
    const char *flame = mark ? memmem(mark, (size_t)(vmp_html_page_end - mark), FLAMEGRAPH_MARKER,
                                      strlen(FLAMEGRAPH_MARKER))
                             : NULL;
    if (!mark || !flame)
        return vmp_error_set(err, -1, "the embedded html page has no data or flame graph marker; "
                                      "rebuild vmprof");
    fwrite(vmp_html_page, 1, (size_t)(mark - vmp_html_page), out);
    if (write_data(v, out, o, err) < 0)
        return -1;
    mark += strlen(DATA_MARKER);
    fwrite(mark, 1, (size_t)(flame - mark), out);
    fwrite(vmp_html_flamegraph, 1, (size_t)(vmp_html_flamegraph_end - vmp_html_flamegraph), out);
    flame += strlen(FLAMEGRAPH_MARKER);
    fwrite(flame, 1, (size_t)(vmp_html_page_end - flame), out);
    return 0;
}
