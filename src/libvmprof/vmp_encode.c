/*
 * vmp_encode.c - the record encoder (see vmp_encode.h for the contract).
 *
 * Every writer first checks that the whole record fits, then writes it with
 * plain stores into the buffer; so a full buffer never holds a partial record
 * and the caller may flush and retry.
 */
#include "vmp_encode.h"

#include <string.h>

void vmp_wbuf_init(vmp_wbuf *buf, void *mem, size_t cap)
{
    vmp_wbuf_init_words(buf, mem, cap, (int)sizeof(long));
}

int vmp_wbuf_init_words(vmp_wbuf *buf, void *mem, size_t cap, int word_size)
{
    if (word_size != 4 && word_size != 8)
        return -1;
    buf->data = mem;
    buf->len = 0;
    buf->cap = cap;
    buf->word_size = word_size;
    return 0;
}

static int fits(const vmp_wbuf *buf, size_t n)
{
    return buf->cap - buf->len >= n;
}

static void put_bytes(vmp_wbuf *buf, const void *p, size_t n)
{
    memcpy(buf->data + buf->len, p, n);
    buf->len += n;
}

static void put_u8(vmp_wbuf *buf, unsigned v)
{
    buf->data[buf->len++] = (unsigned char)v;
}

/* A word in host byte order, truncated to the buffer's word size. */
static void put_word(vmp_wbuf *buf, uint64_t v)
{
    if (buf->word_size == 8) {
        put_bytes(buf, &v, 8);
    } else {
        uint32_t w = (uint32_t)v;
        put_bytes(buf, &w, 4);
    }
}

static void put_i64(vmp_wbuf *buf, int64_t v)
{
    put_bytes(buf, &v, 8);
}

int vmp_enc_static_header(vmp_wbuf *buf, uint64_t period_usec)
{
    if (!fits(buf, (size_t)VMP_STATIC_HEADER_WORDS * (size_t)buf->word_size))
        return -1;
    put_word(buf, 0);
    put_word(buf, VMP_STATIC_HEADER_MARKER);
    put_word(buf, 0);
    put_word(buf, period_usec);
    put_word(buf, 0); /* 1 only on 64-bit Windows */
    return 0;
}

int vmp_enc_header(vmp_wbuf *buf, unsigned mode, const char *interp)
{
    size_t n = strlen(interp);
    if (n > 255 || !fits(buf, 5 + n))
        return -1;
    put_u8(buf, VMP_TAG_HEADER);
    put_u8(buf, (VMP_FORMAT_VERSION >> 8) & 0xff); /* big-endian u16 */
    put_u8(buf, VMP_FORMAT_VERSION & 0xff);
    put_u8(buf, mode & 0xff);
    put_u8(buf, (unsigned)n);
    put_bytes(buf, interp, n);
    return 0;
}

static int enc_time(vmp_wbuf *buf, enum vmp_tag tag, int64_t sec, int64_t usec, const char *zone)
{
    char zone_bytes[VMP_ZONE_NAME_BYTES] = {0};
    if (!fits(buf, 1 + 16 + VMP_ZONE_NAME_BYTES))
        return -1;
    if (zone) {
        size_t n = strlen(zone); /* zero-filled, not NUL-terminated when full */
        memcpy(zone_bytes, zone, n < sizeof zone_bytes ? n : sizeof zone_bytes);
    }
    put_u8(buf, tag);
    put_i64(buf, sec);
    put_i64(buf, usec);
    put_bytes(buf, zone_bytes, sizeof zone_bytes);
    return 0;
}

int vmp_enc_time_n_zone(vmp_wbuf *buf, int64_t sec, int64_t usec, const char *zone)
{
    return enc_time(buf, VMP_TAG_TIME_N_ZONE, sec, usec, zone);
}

int vmp_enc_trailer(vmp_wbuf *buf, int64_t sec, int64_t usec, const char *zone)
{
    return enc_time(buf, VMP_TAG_TRAILER, sec, usec, zone);
}

int vmp_enc_meta(vmp_wbuf *buf, const char *key, size_t klen, const char *value, size_t vlen)
{
    if (!fits(buf, 1 + 2 * (size_t)buf->word_size + klen + vlen))
        return -1;
    put_u8(buf, VMP_TAG_META);
    put_word(buf, klen);
    put_bytes(buf, key, klen);
    put_word(buf, vlen);
    put_bytes(buf, value, vlen);
    return 0;
}

size_t vmp_enc_stack_size(const vmp_wbuf *buf, size_t n_entries, int with_rss)
{
    return 1 + (size_t)buf->word_size * (2 + n_entries + 1 + (with_rss ? 1 : 0));
}

int vmp_enc_stack(vmp_wbuf *buf, const uint64_t *entries, size_t n_entries,
                  uint64_t thread_id, int with_rss, uint64_t rss_kib)
{
    size_t i;
    if (!fits(buf, vmp_enc_stack_size(buf, n_entries, with_rss)))
        return -1;
    put_u8(buf, VMP_TAG_STACKTRACE);
    put_word(buf, 1); /* count: always one sample per record */
    put_word(buf, n_entries);
    for (i = 0; i < n_entries; i++)
        put_word(buf, entries[i]);
    put_word(buf, thread_id);
    if (with_rss)
        put_word(buf, rss_kib);
    return 0;
}

size_t vmp_enc_name_size(const vmp_wbuf *buf, size_t len)
{
    return 1 + 2 * (size_t)buf->word_size + len;
}

int vmp_enc_name(vmp_wbuf *buf, enum vmp_tag tag, uint64_t id, const char *name, size_t len)
{
    if ((tag != VMP_TAG_VIRTUAL_IP && tag != VMP_TAG_NATIVE_SYMBOLS) ||
        !fits(buf, vmp_enc_name_size(buf, len)))
        return -1;
    put_u8(buf, tag);
    put_word(buf, id);
    put_word(buf, len);
    put_bytes(buf, name, len);
    return 0;
}
