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
    int prec;
    if (!isfinite(v)) {
        fputc('0', out);
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        fprintf(out, "%.0f", v);
        return;
    }
    for (prec = 6; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, out);
}
