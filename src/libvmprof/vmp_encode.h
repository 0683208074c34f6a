/*
 * vmp_encode.h - append vmprof records to a caller-owned byte buffer.
 *
 * The encoder never allocates, takes no locks and calls nothing but memcpy, so
 * the sampler may use it in signal context on a pre-allocated buffer.  Each
 * function appends exactly one record; when it does not fit, the buffer is left
 * unchanged and the function returns -1, so a record is never half-written.
 *
 * Words are written in the host's byte order (the format is native-endian and
 * readers in the wild accept little-endian only).  The word size is chosen per
 * buffer: 8 on LP64 hosts, 4 to produce 32-bit files (tests, converters).
 */
#ifndef VMP_ENCODE_H
#define VMP_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "vmp_format.h"

typedef struct vmp_wbuf {
    unsigned char *data;
    size_t len;      /* bytes used */
    size_t cap;      /* bytes available at data */
    int word_size;   /* 4 or 8 */
} vmp_wbuf;

/* Points buf at mem[0..cap) with native words (sizeof(long)). */
void vmp_wbuf_init(vmp_wbuf *buf, void *mem, size_t cap);
/* The same with an explicit word size, 4 or 8; returns -1 for any other. */
int vmp_wbuf_init_words(vmp_wbuf *buf, void *mem, size_t cap, int word_size);

/* Static header (five words) and the HEADER record that follows it. */
int vmp_enc_static_header(vmp_wbuf *buf, uint64_t period_usec);
int vmp_enc_header(vmp_wbuf *buf, unsigned mode, const char *interp);

/* TIME_N_ZONE (start) and TRAILER (end) share one layout.  zone may be NULL. */
int vmp_enc_time_n_zone(vmp_wbuf *buf, int64_t sec, int64_t usec, const char *zone);
int vmp_enc_trailer(vmp_wbuf *buf, int64_t sec, int64_t usec, const char *zone);

int vmp_enc_meta(vmp_wbuf *buf, const char *key, size_t klen, const char *value, size_t vlen);

/* A STACKTRACE: n_entries words innermost first (pairs in LINES/RPYTHON mode),
 * then the thread id, then the RSS in KiB when with_rss is non-zero. */
int vmp_enc_stack(vmp_wbuf *buf, const uint64_t *entries, size_t n_entries,
                  uint64_t thread_id, int with_rss, uint64_t rss_kib);

/* VIRTUAL_IP (tag VMP_TAG_VIRTUAL_IP) or NATIVE_SYMBOLS (VMP_TAG_NATIVE_SYMBOLS). */
int vmp_enc_name(vmp_wbuf *buf, enum vmp_tag tag, uint64_t id, const char *name, size_t len);

/* Bytes a record of each kind needs, for sizing buffers. */
size_t vmp_enc_stack_size(const vmp_wbuf *buf, size_t n_entries, int with_rss);
size_t vmp_enc_name_size(const vmp_wbuf *buf, size_t len);

#endif /* VMP_ENCODE_H */
