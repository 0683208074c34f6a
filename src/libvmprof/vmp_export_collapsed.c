/*
 * vmp_export_collapsed.c - folded stacks, one "root;child;leaf count" line
 * per distinct stack, as flamegraph.pl and inferno read them.
 *
 * A frame is "name (file:line)".  Separators inside a label would split it,
 * so ';' and line breaks in names become '_'.  When more than one thread is
 * exported, each line starts with the thread's label so stacks of different
 * threads stay apart.  Stacks left empty (all native frames dropped) have no
 * line: folded stacks cannot express an empty stack.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmp_export.h"

static void put_label(FILE *out, const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        char c = s[i];
        if (c == ';' || c == '\n' || c == '\r')
            c = '_';
        putc(c, out);
    }
}

int vmp_export_collapsed(const vmp_export_view *v, FILE *out, const vmp_export_options *o,
                         vmp_error *err)
{
    size_t n_threads = vmp_profile_thread_count(v->profile), i, on = 0;
    char label[2300];
    (void)o;
    (void)err;
    for (i = 0; i < n_threads; i++)
        on += v->thread_on[i];
    for (i = 0; i < v->n_stacks; i++) {
        const vmp_export_stack *st = &v->stacks[i];
        uint32_t d;
        int first = 1;
        if (!st->depth && on < 2)
            continue;
        if (on > 1) {
            vmp_export_view_thread_label(v, st->thread, label, sizeof label);
            put_label(out, label, strlen(label));
            first = 0;
        }
        for (d = 0; d < st->depth; d++) {
            size_t n = vmp_export_view_frame_label(v, st->frames[d], label, sizeof label);
            if (!first)
                putc(';', out);
            put_label(out, label, n);
            first = 0;
        }
        fprintf(out, " %" PRIu64 "\n", st->count);
    }
    return 0;
}
