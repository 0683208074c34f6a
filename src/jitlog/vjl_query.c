/*
 * vjl_query.c - parsing and matching of trace queries (contract in
 * vjl_query.h).  A recursive-descent parser builds an array of nodes; matching
 * walks it per trace.
 */
#define _GNU_SOURCE
#include "vjl_query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { N_ALL, N_LOOPS, N_BRIDGES, N_FUNC, N_OP, N_NOT, N_AND, N_OR } node_kind;

typedef struct node {
    node_kind kind;
    int a, b;        /* children (N_NOT: a; N_AND, N_OR: a, b) */
    char *needle;    /* N_FUNC, N_OP: the unescaped string */
    size_t needle_len;
} node;

struct vjl_query {
    node *nodes;
    size_t n, cap;
    int root;
};

typedef struct parser {
    const char *s;
    size_t len, pos;
    int depth;
    vjl_query *q;
    vmp_error *err;
} parser;

static int fail(parser *p, size_t at, const char *fmt, const char *what)
{
    char msg[200];
    snprintf(msg, sizeof msg, fmt, what);
    vmp_error_set(p->err, (int64_t)at, "column %zu: %s", at + 1, msg);
    return -1;
}

static void skip_space(parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int is_name_char(char c, int first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

/* What is at the current position, for messages. */
static const char *found(parser *p, char *buf, size_t size)
{
    if (p->pos >= p->len)
        return "the end of the query";
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c < 0x20 || c >= 0x7f)
        snprintf(buf, size, "byte 0x%02x", c);
    else
        snprintf(buf, size, "'%c'", c);
    return buf;
}

static int expect_char(parser *p, char c, const char *after)
{
    char buf[32], msg[96];
    skip_space(p);
    if (p->pos < p->len && p->s[p->pos] == c) {
        p->pos++;
        return 0;
    }
    snprintf(msg, sizeof msg, "expected '%c' %s, found %%s", c, after);
    return fail(p, p->pos, msg, found(p, buf, sizeof buf));
}

static int add_node(parser *p, node n)
{
    vjl_query *q = p->q;
    if (q->n == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 16;
        node *t = realloc(q->nodes, ncap * sizeof *t);
        if (!t) {
            free(n.needle);
            vmp_error_set(p->err, (int64_t)p->pos, "out of memory parsing the query");
            return -1;
        }
        q->nodes = t;
        q->cap = ncap;
    }
    q->nodes[q->n] = n;
    return (int)q->n++;
}

static int parse_string(parser *p, char **out, size_t *out_len)
{
    char buf[32];
    skip_space(p);
    if (p->pos >= p->len || (p->s[p->pos] != '"' && p->s[p->pos] != '\''))
        return fail(p, p->pos, "expected a quoted name, found %s", found(p, buf, sizeof buf));
    char quote = p->s[p->pos];
    size_t start = p->pos++;
    char *text = malloc(p->len - p->pos + 1);
    size_t n = 0;
    if (!text) {
        vmp_error_set(p->err, (int64_t)p->pos, "out of memory parsing the query");
        return -1;
    }
    while (p->pos < p->len && p->s[p->pos] != quote) {
        if (p->s[p->pos] == '\\' && p->pos + 1 < p->len)
            p->pos++;
        text[n++] = p->s[p->pos++];
    }
    if (p->pos >= p->len) {
        free(text);
        return fail(p, start, "%s", "this string is never closed");
    }
    p->pos++;
    text[n] = '\0';
    *out = text;
    *out_len = n;
    return 0;
}

static int parse_or(parser *p);

static int parse_primary(parser *p)
{
    char buf[32];
    skip_space(p);
    size_t at = p->pos;
    if (p->pos < p->len && p->s[p->pos] == '(') {
        p->pos++;
        int inner = parse_or(p);
        if (inner < 0)
            return -1;
        skip_space(p);
        if (p->pos < p->len && p->s[p->pos] == ')') {
            p->pos++;
            return inner;
        }
        char msg[96];
        snprintf(msg, sizeof msg, "expected ')' to close the '(' of column %zu, found %%s", at + 1);
        return fail(p, p->pos, msg, found(p, buf, sizeof buf));
    }
    if (p->pos >= p->len || !is_name_char(p->s[p->pos], 1))
        return fail(p, p->pos,
                    "expected loops, bridges, func(\"name\"), op(\"name\"), '~' or '(', found %s",
                    found(p, buf, sizeof buf));
    while (p->pos < p->len && is_name_char(p->s[p->pos], 0))
        p->pos++;
    size_t n = p->pos - at;
    const char *w = p->s + at;
    node nd = {N_ALL, -1, -1, NULL, 0};
    if (n == 5 && memcmp(w, "loops", 5) == 0)
        nd.kind = N_LOOPS;
    else if (n == 7 && memcmp(w, "bridges", 7) == 0)
        nd.kind = N_BRIDGES;
    else if (n == 4 && memcmp(w, "func", 4) == 0)
        nd.kind = N_FUNC;
    else if (n == 2 && memcmp(w, "op", 2) == 0)
        nd.kind = N_OP;
    else {
        char name[40];
        snprintf(name, sizeof name, "%.*s%s", n > 24 ? 24 : (int)n, w, n > 24 ? "..." : "");
        return fail(p, at, "unknown name '%s' (the filters are loops, bridges, func(\"name\") "
                    "and op(\"name\"))", name);
    }
    if (nd.kind == N_LOOPS || nd.kind == N_BRIDGES) {
        skip_space(p);
        if (p->pos < p->len && p->s[p->pos] == '(') { /* loops() as well as loops */
            p->pos++;
            if (expect_char(p, ')', nd.kind == N_LOOPS ? "after loops(" : "after bridges(") < 0)
                return -1;
        }
        return add_node(p, nd);
    }
    if (expect_char(p, '(', nd.kind == N_FUNC ? "after func" : "after op") < 0 ||
        parse_string(p, &nd.needle, &nd.needle_len) < 0)
        return -1;
    if (expect_char(p, ')', "after the name") < 0) {
        free(nd.needle);
        return -1;
    }
    return add_node(p, nd);
}

static int parse_unary(parser *p)
{
    skip_space(p);
    if (p->pos < p->len && p->s[p->pos] == '~') {
        size_t at = p->pos++;
        if (++p->depth > VJL_QUERY_MAX_DEPTH)
            return fail(p, at, "%s", "the query nests too deeply");
        int a = parse_unary(p);
        p->depth--;
        if (a < 0)
            return -1;
        return add_node(p, (node){N_NOT, a, -1, NULL, 0});
    }
    if (p->pos < p->len && p->s[p->pos] == '(') {
        if (++p->depth > VJL_QUERY_MAX_DEPTH)
            return fail(p, p->pos, "%s", "the query nests too deeply");
        int r = parse_primary(p);
        p->depth--;
        return r;
    }
    return parse_primary(p);
}

static int parse_binary(parser *p, char opchar, node_kind kind, int (*operand)(parser *))
{
    int a = operand(p);
    if (a < 0)
        return -1;
    for (;;) {
        skip_space(p);
        if (p->pos >= p->len || p->s[p->pos] != opchar)
            return a;
        p->pos++;
        int b = operand(p);
        if (b < 0)
            return -1;
        a = add_node(p, (node){kind, a, b, NULL, 0});
        if (a < 0)
            return -1;
    }
}

static int parse_and(parser *p)
{
    return parse_binary(p, '&', N_AND, parse_unary);
}

static int parse_or(parser *p)
{
    return parse_binary(p, '|', N_OR, parse_and);
}

vjl_query *vjl_query_parse(const char *text, size_t len, vmp_error *err)
{
    vjl_query *q = calloc(1, sizeof *q);
    if (!q) {
        vmp_error_set(err, -1, "out of memory parsing the query");
        return NULL;
    }
    parser p = {text, len, 0, 0, q, err};
    skip_space(&p);
    if (p.pos == p.len) {
        q->root = add_node(&p, (node){N_ALL, -1, -1, NULL, 0});
    } else {
        q->root = parse_or(&p);
        if (q->root >= 0) {
            skip_space(&p);
            if (p.pos < p.len) {
                char buf[32];
                fail(&p, p.pos, "expected '&', '|' or the end of the query, found %s",
                     found(&p, buf, sizeof buf));
                q->root = -1;
            }
        }
    }
    if (q->root < 0) {
        vjl_query_free(q);
        return NULL;
    }
    return q;
}

void vjl_query_free(vjl_query *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->n; i++)
        free(q->nodes[i].needle);
    free(q->nodes);
    free(q);
}

/* ---- matching -------------------------------------------------------------- */

static int contains(const char *hay, size_t n, const char *needle, size_t m)
{
    return m == 0 || (n >= m && memmem(hay, n, needle, m) != NULL);
}

/* A merge-point string is prefix + rest: look at it as one. */
static int value_contains(const vjl_forest *f, const vjl_value *v, const char *needle, size_t m)
{
    vjl_str pre = v->u.s.prefix, rest = v->u.s.str;
    if (!pre.len)
        return contains(vjl_str_ptr(f, rest), rest.len, needle, m);
    size_t n = (size_t)pre.len + rest.len;
    char small[256];
    char *buf = n <= sizeof small ? small : malloc(n);
    if (!buf)
        return 0;
    memcpy(buf, vjl_str_ptr(f, pre), pre.len);
    memcpy(buf + pre.len, vjl_str_ptr(f, rest), rest.len);
    int r = contains(buf, n, needle, m);
    if (buf != small)
        free(buf);
    return r;
}

/* scope is semantic type 0x8: slot 3 */
#define SCOPE_SLOT 3

static int match_func(const vjl_forest *f, const vjl_trace *t, const node *nd)
{
    for (int s = 0; s < VJL_STAGES; s++)
        for (size_t i = 0; i < t->stage[s].n_mps; i++) {
            const vjl_merge_point *mp = &t->stage[s].mps[i];
            if (mp->kind[SCOPE_SLOT] == 's' &&
                value_contains(f, &mp->value[SCOPE_SLOT], nd->needle, nd->needle_len))
                return 1;
        }
    return 0;
}

/* opnum_ok: per opnum, whether its name matches (from select), or NULL */
static int match_op(const vjl_forest *f, const vjl_trace *t, const node *nd,
                    const unsigned char *opnum_ok)
{
    for (int s = 0; s < VJL_STAGES; s++)
        for (size_t i = 0; i < t->stage[s].n_ops; i++) {
            unsigned opnum = t->stage[s].ops[i].opnum;
            if (opnum_ok) {
                if (opnum_ok[opnum])
                    return 1;
            } else {
                vjl_str name = vjl_forest_opname(f, opnum);
                if (contains(vjl_str_ptr(f, name), name.len, nd->needle, nd->needle_len))
                    return 1;
            }
        }
    return 0;
}

static int eval(const vjl_query *q, int at, const vjl_forest *f, const vjl_trace *t,
                unsigned char *const *opnum_ok)
{
    const node *nd = &q->nodes[at];
    switch (nd->kind) {
    case N_ALL:
        return 1;
    case N_LOOPS:
        return !t->is_bridge;
    case N_BRIDGES:
        return t->is_bridge;
    case N_FUNC:
        return match_func(f, t, nd);
    case N_OP:
        return match_op(f, t, nd, opnum_ok ? opnum_ok[at] : NULL);
    case N_NOT:
        return !eval(q, nd->a, f, t, opnum_ok);
    case N_AND:
        return eval(q, nd->a, f, t, opnum_ok) && eval(q, nd->b, f, t, opnum_ok);
    case N_OR:
        return eval(q, nd->a, f, t, opnum_ok) || eval(q, nd->b, f, t, opnum_ok);
    }
    return 0;
}

int vjl_query_match(const vjl_query *q, const vjl_forest *f, size_t i)
{
    return eval(q, q->root, f, vjl_forest_trace(f, i), NULL);
}

size_t vjl_query_select(const vjl_query *q, const vjl_forest *f, uint32_t *out)
{
    /* an opnum table per op() node: which of the 65536 opnums it names */
    unsigned char **opnum_ok = calloc(q->n, sizeof *opnum_ok);
    int tables = opnum_ok != NULL;
    for (size_t k = 0; tables && k < q->n; k++) {
        const node *nd = &q->nodes[k];
        if (nd->kind != N_OP)
            continue;
        opnum_ok[k] = calloc(1u << 16, 1);
        if (!opnum_ok[k]) {
            tables = 0;
            break;
        }
        for (unsigned op = 0; op < 1u << 16; op++) {
            vjl_str name = vjl_forest_opname(f, op);
            opnum_ok[k][op] = (unsigned char)contains(vjl_str_ptr(f, name), name.len, nd->needle,
                                                      nd->needle_len);
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < vjl_forest_trace_count(f); i++)
        if (eval(q, q->root, f, vjl_forest_trace(f, i), tables ? opnum_ok : NULL))
            out[n++] = (uint32_t)i;
    if (opnum_ok) {
        for (size_t k = 0; k < q->n; k++)
            free(opnum_ok[k]);
        free(opnum_ok);
    }
    return n;
}
