/*
 * vmp_export_pprof.c - pprof's profile.proto, gzip-compressed, as
 * `go tool pprof` reads it.
 *
 * Profile layout written (field numbers from profile.proto):
 *   sample_type (1)   [samples/count, cpu|wall/nanoseconds]
 *   sample (2)        one per distinct stack: location ids leaf first,
 *                     values [count, count * period], label thread=<id>
 *   location (4)      one per view frame, id = frame index + 1, one Line
 *                     (function, line): in lines mode that is one location
 *                     per sampled line
 *   function (5)      one per view func, id = func index + 1: (name, file,
 *                     first line) — ids that named the same function share it
 *   string_table (6)  index 0 is "", as the format requires
 *   time_nanos (9), duration_nanos (10), period_type (11), period (12)
 * No mappings: the addresses are code-object ids, not code locations.
 * Functions carry no system_name: pprof demangles that field and would cut
 * Python names such as "<genexpr>" down to nothing.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmp_export.h"
#include "vmp_format.h"
#include "vmp_pbuf.h"

enum {
    PROFILE_SAMPLE_TYPE = 1,
    PROFILE_SAMPLE = 2,
    PROFILE_LOCATION = 4,
    PROFILE_FUNCTION = 5,
    PROFILE_STRING_TABLE = 6,
    PROFILE_TIME_NANOS = 9,
    PROFILE_DURATION_NANOS = 10,
    PROFILE_PERIOD_TYPE = 11,
    PROFILE_PERIOD = 12,
    PROFILE_COMMENT = 13,
    VALUETYPE_TYPE = 1,
    VALUETYPE_UNIT = 2,
    SAMPLE_LOCATION_ID = 1,
    SAMPLE_VALUE = 2,
    SAMPLE_LABEL = 3,
    LABEL_KEY = 1,
    LABEL_STR = 2,
    LOCATION_ID = 1,
    LOCATION_LINE = 4,
    LINE_FUNCTION_ID = 1,
    LINE_LINE = 2,
    FUNCTION_ID = 1,
    FUNCTION_NAME = 2,
    FUNCTION_FILENAME = 4,
    FUNCTION_START_LINE = 5,
};

static void value_type(vmp_pbuf *b, uint32_t field, uint32_t type, uint32_t unit)
{
    size_t m = vmp_pbuf_begin(b, field);
    vmp_pbuf_field_varint(b, VALUETYPE_TYPE, type);
    vmp_pbuf_field_varint(b, VALUETYPE_UNIT, unit);
    vmp_pbuf_end(b, m);
}

int vmp_export_pprof(const vmp_export_view *v, FILE *out, const vmp_export_options *o,
                     vmp_error *err)
{
    const vmp_profile_summary *sum = vmp_profile_get_summary(v->profile);
    size_t n_threads = vmp_profile_thread_count(v->profile), i;
    uint64_t period_ns = (uint64_t)(vmp_export_view_period_ms(v) * 1e6 + 0.5);
    vmp_export_strings strs;
    vmp_pbuf b;
    uint64_t *ids = NULL;
    uint32_t *func_name = NULL, *func_file = NULL, *thread_str = NULL;
    uint32_t s_samples, s_count, s_time, s_ns, s_thread, s_title;
    size_t ids_cap = 0;
    int rc = -1;
    char label[64];
    (void)o;

    vmp_pbuf_init(&b);
    if (vmp_export_strings_init(&strs) < 0)
        goto oom;
    func_name = malloc((v->n_funcs + 1) * sizeof *func_name);
    func_file = malloc((v->n_funcs + 1) * sizeof *func_file);
    thread_str = malloc((n_threads + 1) * sizeof *thread_str);
    if (!func_name || !func_file || !thread_str)
        goto oom;
    /* index 0 must be the empty string */
    if (vmp_export_strings_add(&strs, "", 0) != 0)
        goto oom;
    s_samples = vmp_export_strings_add(&strs, "samples", 7);
    s_count = vmp_export_strings_add(&strs, "count", 5);
    s_time = (sum->mode & VMP_MODE_REAL_TIME) ? vmp_export_strings_add(&strs, "wall", 4)
                                              : vmp_export_strings_add(&strs, "cpu", 3);
    s_ns = vmp_export_strings_add(&strs, "nanoseconds", 11);
    s_thread = vmp_export_strings_add(&strs, "thread", 6);
    s_title = vmp_export_strings_add(&strs, v->title, strlen(v->title));
    for (i = 0; i < v->n_funcs; i++) {
        func_name[i] = vmp_export_strings_add(&strs, v->funcs[i].name, v->funcs[i].name_len);
        func_file[i] = vmp_export_strings_add(&strs, v->funcs[i].file, v->funcs[i].file_len);
        if (func_name[i] == VMP_EXPORT_STRINGS_FAILED || func_file[i] == VMP_EXPORT_STRINGS_FAILED)
            goto oom;
    }
    for (i = 0; i < n_threads; i++) {
        snprintf(label, sizeof label, "0x%" PRIx64, vmp_profile_thread_id(v->profile, i));
        thread_str[i] = vmp_export_strings_add(&strs, label, strlen(label));
        if (thread_str[i] == VMP_EXPORT_STRINGS_FAILED)
            goto oom;
    }
    if (s_samples == VMP_EXPORT_STRINGS_FAILED || s_count == VMP_EXPORT_STRINGS_FAILED ||
        s_time == VMP_EXPORT_STRINGS_FAILED || s_ns == VMP_EXPORT_STRINGS_FAILED ||
        s_thread == VMP_EXPORT_STRINGS_FAILED || s_title == VMP_EXPORT_STRINGS_FAILED)
        goto oom;

    value_type(&b, PROFILE_SAMPLE_TYPE, s_samples, s_count);
    value_type(&b, PROFILE_SAMPLE_TYPE, s_time, s_ns);
    for (i = 0; i < v->n_stacks; i++) {
        const vmp_export_stack *st = &v->stacks[i];
        uint64_t values[2] = {st->count, st->count * period_ns};
        uint32_t d;
        size_t m, lm;
        if (st->depth + 1 > ids_cap) {
            uint64_t *n = realloc(ids, (st->depth + 64) * sizeof *ids);
            if (!n)
                goto oom;
            ids = n;
            ids_cap = st->depth + 64;
        }
        for (d = 0; d < st->depth; d++) /* leaf first */
            ids[d] = (uint64_t)st->frames[st->depth - 1 - d] + 1;
        m = vmp_pbuf_begin(&b, PROFILE_SAMPLE);
        vmp_pbuf_field_packed(&b, SAMPLE_LOCATION_ID, ids, st->depth);
        vmp_pbuf_field_packed(&b, SAMPLE_VALUE, values, 2);
        lm = vmp_pbuf_begin(&b, SAMPLE_LABEL);
        vmp_pbuf_field_varint(&b, LABEL_KEY, s_thread);
        vmp_pbuf_field_varint(&b, LABEL_STR, thread_str[st->thread]);
        vmp_pbuf_end(&b, lm);
        vmp_pbuf_end(&b, m);
    }
    for (i = 0; i < v->n_frames; i++) {
        size_t m = vmp_pbuf_begin(&b, PROFILE_LOCATION), lm;
        vmp_pbuf_field_varint(&b, LOCATION_ID, i + 1);
        lm = vmp_pbuf_begin(&b, LOCATION_LINE);
        vmp_pbuf_field_varint(&b, LINE_FUNCTION_ID, (uint64_t)v->frames[i].func + 1);
        vmp_pbuf_field_varint(&b, LINE_LINE, v->frames[i].line);
        vmp_pbuf_end(&b, lm);
        vmp_pbuf_end(&b, m);
    }
    for (i = 0; i < v->n_funcs; i++) {
        size_t m = vmp_pbuf_begin(&b, PROFILE_FUNCTION);
        vmp_pbuf_field_varint(&b, FUNCTION_ID, i + 1);
        vmp_pbuf_field_varint(&b, FUNCTION_NAME, func_name[i]);
        vmp_pbuf_field_varint(&b, FUNCTION_FILENAME, func_file[i]);
        vmp_pbuf_field_varint(&b, FUNCTION_START_LINE, v->funcs[i].first_line);
        vmp_pbuf_end(&b, m);
    }
    for (i = 0; i < strs.count; i++) {
        size_t len;
        const char *s = vmp_export_strings_get(&strs, i, &len);
        vmp_pbuf_field_bytes(&b, PROFILE_STRING_TABLE, s, len);
    }
    if (sum->has_start_time) {
        vmp_pbuf_field_varint(&b, PROFILE_TIME_NANOS,
                              (uint64_t)(sum->start_sec * 1000000000LL + sum->start_usec * 1000LL));
        if (sum->has_end_time) {
            int64_t d = (sum->end_sec - sum->start_sec) * 1000000000LL +
                        (sum->end_usec - sum->start_usec) * 1000LL;
            if (d > 0)
                vmp_pbuf_field_varint(&b, PROFILE_DURATION_NANOS, (uint64_t)d);
        }
    }
    value_type(&b, PROFILE_PERIOD_TYPE, s_time, s_ns);
    vmp_pbuf_field_varint(&b, PROFILE_PERIOD, period_ns);
    vmp_pbuf_field_varint(&b, PROFILE_COMMENT, s_title);
    if (vmp_pbuf_failed(&b))
        goto oom;
    if (vmp_pbuf_write_gzip(&b, out) < 0) {
        vmp_error_set(err, -1, "compressing or writing the pprof export failed; check the disk "
                               "space and the output path");
        goto out;
    }
    rc = 0;
    goto out;
oom:
    vmp_error_set(err, -1, "out of memory while writing the pprof export");
out:
    free(ids);
    free(func_name);
    free(func_file);
    free(thread_str);
    vmp_export_strings_free(&strs);
    vmp_pbuf_free(&b);
    return rc;
}
