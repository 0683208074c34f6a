/* test_jitlog_query.c - the trace query language (vjl_query.h). */
#include <stdlib.h>

#include "jitlog_sample.h"
#include "vjl_query.h"
#include "vmp_test.h"

/* Which of the sample's two traces (bit 0: loop 0x11, bit 1: bridge 0x22) a
 * query selects, or -1 if it does not parse. */
static int selects(const vjl_forest *f, const char *text)
{
    vmp_error err;
    vjl_query *q = vjl_query_parse(text, strlen(text), &err);
    if (!q)
        return -1;
    uint32_t out[2];
    size_t n = vjl_query_select(q, f, out);
    int bits = 0, bits_one_by_one = 0;
    for (size_t i = 0; i < n; i++)
        bits |= 1 << out[i];
    for (size_t i = 0; i < vjl_forest_trace_count(f); i++)
        if (vjl_query_match(q, f, i))
            bits_one_by_one |= 1 << i;
    vjl_query_free(q);
    return bits == bits_one_by_one ? bits : -2;
}

static vjl_forest *sample_forest(void)
{
    sample_log s;
    sample_build(&s, 4, 8);
    vmp_error err;
    vjl_forest *f = vjl_forest_read_memory(s.w.buf, s.w.len, &err);
    vjl_writer_free(&s.w);
    return f;
}

VMP_TEST(query_filters_and_operators)
{
    vjl_forest *f = sample_forest();
    REQUIRE(f != NULL);
    CHECK(selects(f, "") == 3);
    CHECK(selects(f, "   \t") == 3);
    CHECK(selects(f, "loops") == 1);
    CHECK(selects(f, "loops()") == 1);
    CHECK(selects(f, "bridges") == 2);
    CHECK(selects(f, "bridges ( )") == 2);
    CHECK(selects(f, "~loops") == 2);
    CHECK(selects(f, "~~loops") == 1);
    CHECK(selects(f, "loops | bridges") == 3);
    CHECK(selects(f, "loops & bridges") == 0);
    CHECK(selects(f, "op(\"int_add\")") == 1);
    CHECK(selects(f, "op('jump')") == 2);
    CHECK(selects(f, "op(\"guard\")") == 1);
    CHECK(selects(f, "op(\"no_such_op\")") == 0);
    CHECK(selects(f, "func(\"comp\")") == 1);
    CHECK(selects(f, "func(\"helper\")") == 1);
    CHECK(selects(f, "func(\"elsewhere\")") == 0);
    CHECK(selects(f, "func('') ") == 1); /* the bridge has no merge point */
    CHECK(selects(f, "(loops | op(\"jump\")) & ~func(\"compute\")") == 2);
    CHECK(selects(f, "loops | bridges & op(\"int_add\")") == 1); /* & binds tighter */
    CHECK(selects(f, "(loops | bridges) & op(\"int_add\")") == 1);
    CHECK(selects(f, "op(\"a\\\"b\")") == 0); /* an escaped quote */
    vjl_forest_free(f);
}

/* The error message of a query that must not parse. */
static const char *error_of(const char *text)
{
    static vmp_error err;
    vjl_query *q = vjl_query_parse(text, strlen(text), &err);
    if (q) {
        vjl_query_free(q);
        return "(parsed)";
    }
    return err.message;
}

VMP_TEST(query_syntax_errors_name_the_column)
{
    struct {
        const char *text, *starts;
    } cases[] = {
        {"loops &", "column 8: expected loops, bridges"},
        {"loops bridges", "column 7: expected '&', '|' or the end"},
        {"func(name)", "column 6: expected a quoted name"},
        {"func \"x\"", "column 6: expected '(' after func"},
        {"op(\"x\"", "column 7: expected ')' after the name"},
        {"op(\"x)", "column 4: this string is never closed"},
        {"(loops", "column 7: expected ')' to close the '(' of column 1"},
        {"loops(", "column 7: expected ')' after loops("},
        {"__import__('os')", "column 1: unknown name '__import__'"},
        {"loops and bridges", "column 7: expected '&', '|'"},
        {"|", "column 1: expected loops"},
        {")", "column 1: expected loops"},
        {"loops\x01", "column 6: expected '&', '|' or the end of the query, found byte 0x01"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *msg = error_of(cases[k].text);
        if (strncmp(msg, cases[k].starts, strlen(cases[k].starts)) != 0) {
            fprintf(stderr, "  query %s: %s\n", cases[k].text, msg);
            CHECK(!"the message names the column");
        }
        CHECK(!strchr(msg, '\n'));
    }
}

VMP_TEST(query_nesting_is_bounded)
{
    char text[4096];
    size_t n = 0;
    for (int i = 0; i < 1000; i++)
        text[n++] = '(';
    text[n] = 0;
    CHECK(strstr(error_of(text), "nests too deeply") != NULL);
    memset(text, '~', 1000);
    strcpy(text + 1000, "loops");
    CHECK(strstr(error_of(text), "nests too deeply") != NULL);
    /* within the limit it parses */
    n = 0;
    for (int i = 0; i < 50; i++)
        text[n++] = '(';
    n += (size_t)sprintf(text + n, "loops");
    for (int i = 0; i < 50; i++)
        text[n++] = ')';
    text[n] = 0;
    CHECK(strcmp(error_of(text), "(parsed)") == 0);
}

VMP_TEST(query_on_the_pypy_log)
{
    vmp_error err;
    vjl_forest *f = vjl_forest_read_file(vmp_fixture("calc_pypy.jitlog"), &err);
    REQUIRE(f != NULL);
    const char *text = "func(\"merge_sort\") & bridges";
    vjl_query *q = vjl_query_parse(text, strlen(text), &err);
    REQUIRE(q != NULL);
    uint32_t *out = malloc(vjl_forest_trace_count(f) * sizeof *out);
    size_t n = vjl_query_select(q, f, out);
    /* oracle: 14 traces start in merge_sort, one of them the loop 0x43 */
    CHECK(n == 13);
    for (size_t i = 0; i < n; i++)
        CHECK(vjl_forest_trace(f, out[i])->is_bridge);
    vjl_query_free(q);
    free(out);
    vjl_forest_free(f);
}
