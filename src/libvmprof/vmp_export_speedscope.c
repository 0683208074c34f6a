/*
 * vmp_export_speedscope.c - speedscope's file format
 * (https://www.speedscope.app/file-format-schema.json).
 *
 * Frames are shared by all profiles; each exported thread is one "sampled"
 * profile whose samples are the thread's distinct stacks (root first) and
 * whose weights are their sampled time in milliseconds.  Distinct stacks
 * instead of every sample keep the file small; speedscope's flame views are
 * the same either way (its time-order view shows the stacks grouped).
 */
#include <inttypes.h>
#include <string.h>

#include "vmp_export.h"
#include "vmp_json.h"

int vmp_export_speedscope(const vmp_export_view *v, FILE *out, const vmp_export_options *o,
                          vmp_error *err)
{
    size_t n_threads = vmp_profile_thread_count(v->profile), i, t;
    double period = vmp_export_view_period_ms(v);
    int first_profile = 1;
    char label[64];
    (void)o;
    (void)err;
    fputs("{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\","
          "\"exporter\":\"vmprof\",\"name\":",
          out);
    vmp_json_cstring(out, v->title);
    fputs(",\"activeProfileIndex\":0,\"shared\":{\"frames\":[", out);
    for (i = 0; i < v->n_frames; i++) {
        const vmp_export_frame *fr = &v->frames[i];
        const vmp_export_func *f = &v->funcs[fr->func];
        if (i)
            putc(',', out);
        fputs("{\"name\":", out);
        vmp_json_string(out, f->name, f->name_len);
        if (f->file_len) {
            fputs(",\"file\":", out);
            vmp_json_string(out, f->file, f->file_len);
            fprintf(out, ",\"line\":%u", fr->line);
        }
        putc('}', out);
    }
    fputs("]},\"profiles\":[", out);
    for (t = 0; t < n_threads; t++) {
        uint64_t total = 0;
        int first = 1;
        if (!v->thread_on[t])
            continue;
        if (!first_profile)
            putc(',', out);
        first_profile = 0;
        fputs("{\"type\":\"sampled\",\"name\":", out);
        vmp_json_cstring(out, vmp_export_view_thread_label(v, (uint32_t)t, label, sizeof label));
        fputs(",\"unit\":\"milliseconds\",\"startValue\":0,\"samples\":[", out);
        for (i = 0; i < v->n_stacks; i++) {
            const vmp_export_stack *st = &v->stacks[i];
            uint32_t d;
            if (st->thread != t)
                continue;
            fputs(first ? "[" : ",[", out);
            first = 0;
            for (d = 0; d < st->depth; d++)
                fprintf(out, d ? ",%u" : "%u", st->frames[d]);
            putc(']', out);
        }
        fputs("],\"weights\":[", out);
        first = 1;
        for (i = 0; i < v->n_stacks; i++) {
            const vmp_export_stack *st = &v->stacks[i];
            if (st->thread != t)
                continue;
            if (!first)
                putc(',', out);
            first = 0;
            vmp_json_double(out, (double)st->count * period);
            total += st->count;
        }
        fputs("],\"endValue\":", out);
        vmp_json_double(out, (double)total * period);
        putc('}', out);
    }
    fputs("]}\n", out);
    return 0;
}
