/*
 * srv_json.c - JSON text written into a buffer (see srv_json.h).
 */
#include "srv_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(srv_jbuf *b, size_t n)
{
    if (b->failed)
        return 0;
    if (b->len + n + 1 <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *text = realloc(b->text, cap);
    if (!text) {
        free(b->text);
        *b = (srv_jbuf){NULL, 0, 0, 1};
        return 0;
    }
    b->text = text;
    b->cap = cap;
    return 1;
}

void srv_jbuf_raw(srv_jbuf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->text + b->len, s, n);
    b->len += n;
    b->text[b->len] = 0;
}

/* The length of the UTF-8 sequence at s, 0 when it is not one jansson takes. */
static size_t utf8_sequence(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n;
    uint32_t v;
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0; /* a continuation byte, or an overlong two-byte form */
    if (c < 0xE0) {
        n = 2;
        v = c & 0x1F;
    } else if (c < 0xF0) {
        n = 3;
        v = c & 0x0F;
    } else if (c < 0xF5) {
        n = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10FFFF ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    return n;
}

int srv_json_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = utf8_sequence(p);
        if (!n)
            return 0;
        p += n;
    }
    return 1;
}

void srv_jbuf_string(srv_jbuf *b, const char *s)
{
    if (!s) {
        srv_jbuf_lit(b, "null");
        return;
    }
    int utf8 = srv_json_utf8(s);
    size_t n = strlen(s);
    /* At most 6 bytes a byte (\u00XX), and the quotes. */
    if (!reserve(b, 6 * n + 2))
        return;
    char *o = b->text + b->len;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned c = *p;
        if (c >= 0x80) {
            *o++ = utf8 ? (char)c : '?';
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *o++ = (char)c;
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = "0123456789ABCDEF"[c >> 4];
            *o++ = "0123456789ABCDEF"[c & 15];
        }
    }
    *o++ = '"';
    *o = 0;
    b->len = (size_t)(o - b->text);
}

void srv_jbuf_int(srv_jbuf *b, int64_t v)
{
    char digits[24], *d = digits + sizeof digits;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        *--d = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--d = '-';
    srv_jbuf_raw(b, d, (size_t)(digits + sizeof digits - d));
}

void srv_jbuf_real(srv_jbuf *b, double v)
{
    if (!isfinite(v)) {
        srv_jbuf_lit(b, "null");
        return;
    }
    char text[40];
    int n = snprintf(text, sizeof text - 2, "%.10g", v);
    if (n < 0 || (size_t)n >= sizeof text - 2) {
        srv_jbuf_lit(b, "null");
        return;
    }
    char *e = strchr(text, 'e');
    if (!e && !strchr(text, '.')) {
        memcpy(text + n, ".0", 3);
        n += 2;
    } else if (e) {
        /* "1e+20" -> "1e20", "1e-05" -> "1e-5", as jansson writes them. */
        char *from = e + 1, *to = e + 1;
        if (*from == '+')
            from++;
        else if (*from == '-')
            to = ++from;
        while (*from == '0' && from[1])
            from++;
        memmove(to, from, strlen(from) + 1);
        n = (int)strlen(text);
    }
    srv_jbuf_raw(b, text, (size_t)n);
}

char *srv_jbuf_take(srv_jbuf *b, size_t *len)
{
    if (b->failed || !b->text) {
        free(b->text);
        *b = (srv_jbuf){0};
        return NULL;
    }
    char *text = b->text;
    *len = b->len;
    *b = (srv_jbuf){0};
    return text;
}
