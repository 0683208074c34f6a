/*
 * vjl_encode.h - writing JIT log records (format in vjl_format.h).
 *
 * PyPy writes the logs; this writer exists for what we add to them (the
 * SOURCE_CODE records an upload carries) and for the tests and the bench,
 * which build logs of every version, word size and shape with it.
 *
 * Contract: a vjl_writer is a growing byte buffer; every put appends
 * little-endian bytes as the format says.  Out of memory sets `failed` and
 * makes later puts do nothing, so a caller checks once at the end.
 */
#ifndef VJL_ENCODE_H
#define VJL_ENCODE_H

#include <stddef.h>
#include <stdint.h>

typedef struct vjl_writer {
    unsigned char *buf;
    size_t len, cap;
    int word_size; /* of addr fields: 4 or 8 */
    int failed;
} vjl_writer;

/* An empty writer whose addr fields take word_size bytes. */
void vjl_writer_init(vjl_writer *w, int word_size);
void vjl_writer_free(vjl_writer *w);

void vjl_put_u8(vjl_writer *w, unsigned v);
void vjl_put_u16(vjl_writer *w, unsigned v);
void vjl_put_u64(vjl_writer *w, uint64_t v);
void vjl_put_addr(vjl_writer *w, uint64_t v);
void vjl_put_bytes(vjl_writer *w, const void *p, size_t n);
/* int32 length, then the bytes */
void vjl_put_str(vjl_writer *w, const char *s, size_t n);
void vjl_put_cstr(vjl_writer *w, const char *s);

/* JITLOG_HEADER (sets the writer's word size from is_32bit). */
void vjl_put_header(vjl_writer *w, unsigned version, int is_32bit, const char *machine);

/* One SOURCE_CODE record: a file's lines (at most 65535 of them). */
typedef struct vjl_line_in {
    unsigned line;   /* 1-based, below 65536 */
    unsigned indent; /* below 256 */
    const char *text;
    size_t len;
} vjl_line_in;
void vjl_put_source_code(vjl_writer *w, const char *file, size_t file_len, const vjl_line_in *lines,
                         size_t n);

#endif
