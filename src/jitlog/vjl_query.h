/*
 * vjl_query.h - the query language that selects traces of a JIT log.
 *
 *     query   := [or]                      (empty: every trace)
 *     or      := and ('|' and)*
 *     and     := unary ('&' unary)*
 *     unary   := '~' unary | primary
 *     primary := '(' or ')' | 'loops' ['(' ')'] | 'bridges' ['(' ')']
 *              | 'func' '(' string ')' | 'op' '(' string ')'
 *     string  := '"' ... '"' | "'" ... "'"   (backslash escapes the next byte)
 *
 * loops/bridges select by trace type; func("x") a trace with a merge point
 * (in any stage) whose function name contains x; op("x") a trace with an op
 * (in any stage) whose name contains x.  '~' negates.
 *
 * Contract:
 *   - The text is parsed, never executed: a query is a small tree of these
 *     filters, so a query from the network is safe by construction.  Parsing
 *     takes time linear in the text and nests at most VJL_QUERY_MAX_DEPTH.
 *   - A syntax error is one line that names the 1-based column, e.g.
 *     "column 7: expected '(' after func".
 *   - Matching needs only the forest; a compiled query can be matched against
 *     any number of forests.
 */
#ifndef VJL_QUERY_H
#define VJL_QUERY_H

#include <stddef.h>

#include "vjl_forest.h"
#include "vmp_error.h"

#define VJL_QUERY_MAX_DEPTH 100

typedef struct vjl_query vjl_query;

/* NULL with err (offset = the 0-based byte, message naming the column) on a
 * syntax error or when out of memory. */
vjl_query *vjl_query_parse(const char *text, size_t len, vmp_error *err);
void vjl_query_free(vjl_query *q);

/* 1 when trace i of f is selected. */
int vjl_query_match(const vjl_query *q, const vjl_forest *f, size_t i);

/* Every selected trace's index, in order, into out (room for all traces of f);
 * returns how many.  Precomputes what op("...") filters need, so this is the
 * fast way to select from a large forest. */
size_t vjl_query_select(const vjl_query *q, const vjl_forest *f, uint32_t *out);

#endif
