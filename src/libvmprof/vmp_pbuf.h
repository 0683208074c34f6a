/*
 * vmp_pbuf.h - protocol-buffer encoding for the exporters (pprof).
 *
 * A vmp_pbuf is a growable byte buffer with the three wire types pprof needs:
 * varint, length-delimited bytes and embedded messages.  A nested message is
 * written by opening it (vmp_pbuf_begin), writing its fields into the same
 * buffer, and closing it (vmp_pbuf_end): the length prefix is reserved as a
 * fixed five-byte varint, so no field is ever copied (a padded varint is valid
 * protobuf and every decoder accepts it).
 *
 * Allocation failure is sticky: the buffer notes it and later writes do
 * nothing, so the caller checks once (vmp_pbuf_failed) at the end.
 */
#ifndef VMP_PBUF_H
#define VMP_PBUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct vmp_pbuf {
    unsigned char *data;
    size_t len, cap;
    int failed;
} vmp_pbuf;

void vmp_pbuf_init(vmp_pbuf *b);
void vmp_pbuf_free(vmp_pbuf *b);
int vmp_pbuf_failed(const vmp_pbuf *b);

void vmp_pbuf_varint(vmp_pbuf *b, uint64_t v);
/* field with wire type 0 (int64, uint64, bool) */
void vmp_pbuf_field_varint(vmp_pbuf *b, uint32_t field, uint64_t v);
/* field with wire type 2 holding raw bytes (string) */
void vmp_pbuf_field_bytes(vmp_pbuf *b, uint32_t field, const void *data, size_t len);
/* packed repeated varints */
void vmp_pbuf_field_packed(vmp_pbuf *b, uint32_t field, const uint64_t *v, size_t n);

/* Opens an embedded message in field; returns the mark vmp_pbuf_end needs. */
size_t vmp_pbuf_begin(vmp_pbuf *b, uint32_t field);
void vmp_pbuf_end(vmp_pbuf *b, size_t mark);

/* Writes the buffer gzip-compressed to out.  Returns 0, or -1 on a zlib or
 * write failure. */
int vmp_pbuf_write_gzip(const vmp_pbuf *b, FILE *out);

#endif /* VMP_PBUF_H */
