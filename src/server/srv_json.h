/*
 * srv_json.h - JSON text written straight into one growing buffer, for
 * answers made of many small values (a page of the runs list), where
 * building a jansson tree cost more than the query: a page of 50 runs was
 * about a thousand small allocations, and a fifth of the server's CPU.
 *
 * The text is what jansson's json_dumps(JSON_COMPACT |
 * JSON_REAL_PRECISION(10)) writes for the same values, and a text that is not
 * UTF-8 is written as srv_json_text() (srv_http.h) writes it: each byte from
 * 0x80 up as '?'.
 */
#ifndef SRV_JSON_H
#define SRV_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef struct srv_jbuf {
    char *text;  /* NUL-terminated while not failed */
    size_t len, cap;
    int failed;  /* out of memory: every later write is dropped */
} srv_jbuf;

/* Bytes as they are (JSON punctuation, keys known to need no escapes). */
void srv_jbuf_raw(srv_jbuf *b, const char *s, size_t n);
#define srv_jbuf_lit(b, literal) srv_jbuf_raw((b), (literal), sizeof(literal) - 1)
/* A JSON string, or null for NULL. */
void srv_jbuf_string(srv_jbuf *b, const char *s);
void srv_jbuf_int(srv_jbuf *b, int64_t v);
/* A real with 10 significant digits, always with a '.' or an exponent (so it
 * reads back as a real); null when not finite (JSON has no NaN). */
void srv_jbuf_real(srv_jbuf *b, double v);
/* Whether s is UTF-8 as jansson accepts it (no overlong forms, no surrogates,
 * nothing above U+10FFFF). */
int srv_json_utf8(const char *s);

/* The text (malloc'd, the caller frees it) and its length; NULL when a write
 * failed (the buffer is freed then). */
char *srv_jbuf_take(srv_jbuf *b, size_t *len);

#endif /* SRV_JSON_H */
