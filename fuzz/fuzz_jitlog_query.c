/*
 * fuzz_jitlog_query.c - libFuzzer target for the trace query parser: any text
 * parses into a query or fails with one line naming a column inside the text
 * (or just past its end); a parsed query matches the same traces one by one
 * as in bulk.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jitlog_sample.h"
#include "vjl_query.h"

static vjl_forest *forest;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!forest) {
        sample_log s;
        sample_build(&s, 4, 8);
        vmp_error err;
        forest = vjl_forest_read_memory(s.w.buf, s.w.len, &err);
        vjl_writer_free(&s.w);
        if (!forest)
            __builtin_trap();
    }
    vmp_error err;
    vjl_query *q = vjl_query_parse((const char *)data, size, &err);
    if (!q) {
        size_t column;
        if (sscanf(err.message, "column %zu: ", &column) != 1 || column < 1 || column > size + 1 ||
            strchr(err.message, '\n') || err.offset != (int64_t)(column - 1))
            __builtin_trap();
        return 0;
    }
    uint32_t out[2];
    size_t n = vjl_query_select(q, forest, out);
    size_t m = 0;
    for (size_t i = 0; i < vjl_forest_trace_count(forest); i++)
        if (vjl_query_match(q, forest, i)) {
            if (m >= n || out[m] != i)
                __builtin_trap();
            m++;
        }
    if (m != n)
        __builtin_trap();
    vjl_query_free(q);
    return 0;
}
