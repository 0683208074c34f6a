/* vmp_json.c - JSON writing for the exporters (see vmp_json.h). */
#include "vmp_json.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    size_t need, i;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xE0) == 0xC0) {
        need = 2;
        cp = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        need = 3;
        cp = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        need = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* overlong forms, surrogates and values past U+10FFFF are not UTF-8 */
    if ((need == 2 && cp < 0x80) || (need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return need;
}

void vmp_json_string_body(FILE *out, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && c != '<') {
            run++;
            i++;
            continue;
        }
        if (run)
            fwrite(s + i - run, 1, run, out);
        run = 0;
        if (c >= 0x80) {
            n = utf8_seq_len(s + i, len - i);
            if (n) {
                fwrite(s + i, 1, n, out);
                i += n;
            } else {
                fputs("\\ufffd", out);
                i++;
            }
            continue;
        }
        switch (c) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        /* '<' is escaped so that the JSON can sit inside an HTML <script>
         * element without "</script>" ending it early. */
        default: fprintf(out, "\\u%04x", c); break;
        }
        i++;
    }
    if (run)
        fwrite(s + i - run, 1, run, out);
}

void vmp_json_string(FILE *out, const char *s, size_t len)
{
    fputc('"', out);
    vmp_json_string_body(out, s, len);
    fputc('"', out);
}

void vmp_json_cstring(FILE *out, const char *s)
{
    vmp_json_string(out, s, strlen(s));
}

void vmp_json_u64(FILE *out, uint64_t v)
{
    fprintf(out, "%" PRIu64, v);
}

void vmp_json_i64(FILE *out, int64_t v)
{
    fprintf(out, "%" PRId64, v);
}

void vmp_json_double(FILE *out, double v)
{
    char buf[32];
    if (!isfinite(v)) {
        fputc('0', out);
        return;
    }
    if (fabs(v) < 1e15 && v == (double)(int64_t)v) {
        fprintf(out, "%.0f", v);
        return;
    }
    /* 15 significant digits read back exactly for most values; 17 always do */
    snprintf(buf, sizeof buf, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, sizeof buf, "%.17g", v);
    fputs(buf, out);
}

void vmp_json_millis(FILE *out, double ms)
{
    char buf[32];
    int n = 0, i;
    int64_t us;
    uint64_t whole, frac;
    if (!isfinite(ms)) {
        fputc('0', out);
        return;
    }
    ms *= 1000.0;
    if (fabs(ms) > 9e18) {
        vmp_json_double(out, ms / 1000.0);
        return;
    }
    us = (int64_t)(ms < 0 ? ms - 0.5 : ms + 0.5); /* rounded, without libm */
    if (us < 0) {
        buf[n++] = '-';
        us = -us;
    }
    whole = (uint64_t)us / 1000;
    frac = (uint64_t)us % 1000;
    /* integer part, then up to three decimals without trailing zeros; the
     * hot path of the firefox export, so no printf */
    {
        char digits[24];
        int d = 0;
        do {
            digits[d++] = (char)('0' + whole % 10);
            whole /= 10;
        } while (whole);
        while (d)
            buf[n++] = digits[--d];
    }
    if (frac) {
        buf[n++] = '.';
        for (i = 100; i && frac; i /= 10) {
            buf[n++] = (char)('0' + frac / (uint64_t)i);
            frac %= (uint64_t)i;
        }
    }
    fwrite(buf, 1, (size_t)n, out);
}
