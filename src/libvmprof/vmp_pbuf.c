/* vmp_pbuf.c - protobuf encoding and gzip output (see vmp_pbuf.h). */
#include "vmp_pbuf.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define LEN_PREFIX_BYTES 5 /* a varint of up to 2^35-1: any message we write */

void vmp_pbuf_init(vmp_pbuf *b)
{
    memset(b, 0, sizeof *b);
}

void vmp_pbuf_free(vmp_pbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

int vmp_pbuf_failed(const vmp_pbuf *b)
{
    return b->failed;
}

static int reserve(vmp_pbuf *b, size_t n)
{
    size_t cap;
    unsigned char *d;
    if (b->failed)
        return -1;
    if (b->len + n <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
        cap *= 2;
    d = realloc(b->data, cap);
    if (!d) {
        b->failed = 1;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

void vmp_pbuf_varint(vmp_pbuf *b, uint64_t v)
{
    if (reserve(b, 10) < 0)
        return;
    while (v >= 0x80) {
        b->data[b->len++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    b->data[b->len++] = (unsigned char)v;
}

static void key(vmp_pbuf *b, uint32_t field, unsigned wire_type)
{
    vmp_pbuf_varint(b, ((uint64_t)field << 3) | wire_type);
}

void vmp_pbuf_field_varint(vmp_pbuf *b, uint32_t field, uint64_t v)
{
    key(b, field, 0);
    vmp_pbuf_varint(b, v);
}

void vmp_pbuf_field_bytes(vmp_pbuf *b, uint32_t field, const void *data, size_t len)
{
    key(b, field, 2);
    vmp_pbuf_varint(b, len);
    if (reserve(b, len) < 0)
        return;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
}

size_t vmp_pbuf_begin(vmp_pbuf *b, uint32_t field)
{
    size_t mark;
    key(b, field, 2);
    if (reserve(b, LEN_PREFIX_BYTES) < 0)
        return 0;
    mark = b->len;
    b->len += LEN_PREFIX_BYTES;
    return mark;
}

void vmp_pbuf_end(vmp_pbuf *b, size_t mark)
{
    size_t n, i;
    if (b->failed)
        return;
    n = b->len - mark - LEN_PREFIX_BYTES;
    for (i = 0; i < LEN_PREFIX_BYTES; i++) {
        unsigned char byte = (unsigned char)(n & 0x7F);
        n >>= 7;
        b->data[mark + i] = i + 1 < LEN_PREFIX_BYTES ? (byte | 0x80) : byte;
    }
}

void vmp_pbuf_field_packed(vmp_pbuf *b, uint32_t field, const uint64_t *v, size_t n)
{
    size_t mark, i;
    if (!n)
        return;
    mark = vmp_pbuf_begin(b, field);
    for (i = 0; i < n; i++)
        vmp_pbuf_varint(b, v[i]);
    vmp_pbuf_end(b, mark);
}

int vmp_pbuf_write_gzip(const vmp_pbuf *b, FILE *out)
{
    z_stream z;
    unsigned char chunk[65536];
    int rc;
    if (b->failed)
        return -1;
    memset(&z, 0, sizeof z);
    /* windowBits 15 + 16 asks zlib for a gzip wrapper instead of zlib's own */
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    z.next_in = b->data;
    z.avail_in = (uInt)b->len;
    do {
        z.next_out = chunk;
        z.avail_out = sizeof chunk;
        rc = deflate(&z, Z_FINISH);
        if (rc == Z_STREAM_ERROR)
            break;
        if (fwrite(chunk, 1, sizeof chunk - z.avail_out, out) != sizeof chunk - z.avail_out) {
            rc = Z_ERRNO;
            break;
        }
    } while (rc != Z_STREAM_END);
    deflateEnd(&z);
    return rc == Z_STREAM_END ? 0 : -1;
}
