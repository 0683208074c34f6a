/* vjl_encode.c - the JIT log writer (contract in vjl_encode.h). */
#include "vjl_encode.h"

#include <stdlib.h>
#include <string.h>

#include "vjl_format.h"

void vjl_writer_init(vjl_writer *w, int word_size)
{
    memset(w, 0, sizeof *w);
    w->word_size = word_size;
}

void vjl_writer_free(vjl_writer *w)
{
    free(w->buf);
    memset(w, 0, sizeof *w);
}

void vjl_put_bytes(vjl_writer *w, const void *p, size_t n)
{
    if (w->failed)
        return;
    if (n > w->cap - w->len) {
        size_t ncap = w->cap ? w->cap : 256;
        while (ncap - w->len < n)
            ncap *= 2;
        unsigned char *b = realloc(w->buf, ncap);
        if (!b) {
            w->failed = 1;
            return;
        }
        w->buf = b;
        w->cap = ncap;
    }
    if (n)
        memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void put_le(vjl_writer *w, uint64_t v, int n)
{
    unsigned char b[8];
    for (int i = 0; i < n; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    vjl_put_bytes(w, b, (size_t)n);
}

void vjl_put_u8(vjl_writer *w, unsigned v) { put_le(w, v, 1); }
void vjl_put_u16(vjl_writer *w, unsigned v) { put_le(w, v, 2); }
void vjl_put_u64(vjl_writer *w, uint64_t v) { put_le(w, v, 8); }
void vjl_put_addr(vjl_writer *w, uint64_t v) { put_le(w, v, w->word_size); }

void vjl_put_str(vjl_writer *w, const char *s, size_t n)
{
    put_le(w, n, 4);
    vjl_put_bytes(w, s, n);
}

void vjl_put_cstr(vjl_writer *w, const char *s)
{
    vjl_put_str(w, s, strlen(s));
}

void vjl_put_header(vjl_writer *w, unsigned version, int is_32bit, const char *machine)
{
    w->word_size = is_32bit ? 4 : 8;
    vjl_put_u8(w, VJL_MARK_HEADER);
    vjl_put_u16(w, version);
    vjl_put_u8(w, is_32bit ? 1 : 0);
    vjl_put_cstr(w, machine);
}

void vjl_put_source_code(vjl_writer *w, const char *file, size_t file_len, const vjl_line_in *lines,
                         size_t n)
{
    vjl_put_u8(w, VJL_MARK_SOURCE_CODE);
    vjl_put_str(w, file, file_len);
    vjl_put_u16(w, (unsigned)n);
    for (size_t i = 0; i < n; i++) {
        vjl_put_u16(w, lines[i].line);
        vjl_put_u8(w, lines[i].indent);
        vjl_put_str(w, lines[i].text, lines[i].len);
    }
}
