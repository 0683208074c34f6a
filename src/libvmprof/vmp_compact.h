/*
 * vmp_compact.h - a lossless compact form of a profile's bytes, written while
 * the profile is decoded (the server stores uploads this way).
 *
 * Most STACKTRACE records of a long run repeat the stack bytes of an earlier
 * one exactly (997,000 of the 1M-sample bench profile's 1,000,000); the
 * decoder recognises them anyway (vmp_decoder_observe).  The compact form
 * keeps such a record as a reference to the earlier stack plus its own rss
 * and time words, and every other byte as it came; expanding it gives back
 * the input byte for byte (324 MiB -> ~4.4 MiB for that profile).
 *
 * Exactness does not rest on knowing the format: a reference is written only
 * when the record's bytes before its stack equal those of the record that
 * defined the stack, the stack bytes are equal (the decoder compared them),
 * and the bytes after it are kept whole (as deltas of little-endian words).
 * Whatever the decoder did not recognise, bytes after its trailer included,
 * is kept verbatim.
 *
 * The form (all lengths and ids unsigned LEB128 varints):
 *   "vmpCMP02"                      magic, 8 bytes
 *   items:
 *     1 LEN BYTES                   verbatim bytes
 *     2 HEAD STACK TAIL BYTES       a record that defines the next stack id
 *                                   (0, 1, ...): HEAD + STACK + TAIL bytes;
 *                                   its first HEAD + STACK are kept for
 *                                   references
 *     3 ID DELTA...                 a record: the defining record's HEAD +
 *                                   STACK bytes, then its TAIL bytes rebuilt
 *                                   as words (4 bytes first when TAIL % 8 is
 *                                   4, then 8-byte words), each the previous
 *                                   reference's word at that place plus the
 *                                   zigzag varint DELTA (modulo 2^64)
 *     4 TOTAL CHECK                 the end: TOTAL bytes were given back;
 *                                   CHECK, 8 bytes little-endian, is the
 *                                   checksum (vmp_compact.c) of every byte of
 *                                   the file before it
 * A byte of the file changed after it was written (on the disk, say) makes
 * the reader fail at the end item, after the bytes before it were given: a
 * caller that must not act on wrong bytes reads to the end (0) first.
 * Version 1 ("vmpCMP01", the same items, the end item without CHECK) is
 * still read, unchecked.
 * The defined stacks' kept bytes are capped (VMP_COMPACT_DEFINED_MAX), which
 * bounds the memory of expanding the file.
 */
#ifndef VMP_COMPACT_H
#define VMP_COMPACT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmprof.h"

#define VMP_COMPACT_MAGIC "vmpCMP02"
#define VMP_COMPACT_MAGIC_LEN 8
/* The most bytes of defined records (head + stack) a compact file keeps for
 * references, so an expander holds at most this much. */
#define VMP_COMPACT_DEFINED_MAX (8u << 20)

/* Receives the compact bytes in order: 0, or -1 to stop (the error is the
 * sink's to keep). */
typedef int (*vmp_compact_sink)(void *ctx, const void *data, size_t n);

typedef struct vmp_compact_writer vmp_compact_writer;

/* A writer of the compact form of what d decodes; it observes d (one writer
 * a decoder).  For each piece of the input, in order: vmp_decoder_push(d,
 * piece) first, then vmp_compact_write(w, piece); made before the first push
 * (the writer must see every record).  Writes the magic at once.  NULL when
 * out of memory, the sink failed, or d has read records already.  The
 * records are written while the decoder reads them: the sink is called from
 * inside vmp_decoder_push and vmp_decoder_finish too (a failure there shows
 * at the next vmp_compact_write or vmp_compact_end). */
vmp_compact_writer *vmp_compact_writer_new(vmp_decoder *d, vmp_compact_sink sink, void *ctx);
/* 0, or -1 (out of memory, or the sink failed). */
int vmp_compact_write(vmp_compact_writer *w, const void *data, size_t n);
/* The input has ended and the decoder is finished (vmp_decoder_finish, which
 * may still read records) or freed: writes the rest and the end item, and
 * frees w.  0, or -1. */
int vmp_compact_end(vmp_compact_writer *w);
/* Frees w without writing more (the decoder must not be pushed again). */
void vmp_compact_writer_free(vmp_compact_writer *w);
/* Bytes handed to the sink so far. */
uint64_t vmp_compact_written(const vmp_compact_writer *w);

/* Pulls up to n bytes of the compact file: the count, 0 at its end, -1. */
typedef ssize_t (*vmp_compact_source)(void *ctx, void *buf, size_t n);

typedef struct vmp_compact_reader vmp_compact_reader;

/* Expands a compact file read from src; the magic is checked at the first
 * read.  NULL when out of memory. */
vmp_compact_reader *vmp_compact_reader_new(vmp_compact_source src, void *ctx);
/* The next bytes of the original: the count (at most n), 0 at its end, -1
 * when the file is damaged or cut short, or src failed
 * (vmp_compact_reader_error says which). */
ssize_t vmp_compact_read(vmp_compact_reader *r, void *buf, size_t n);
const char *vmp_compact_reader_error(const vmp_compact_reader *r);
void vmp_compact_reader_free(vmp_compact_reader *r);

#endif /* VMP_COMPACT_H */
