/*
 * vmp_decode.h - the streaming record decoder: bytes of a profile file in,
 * an in-memory profile (vmp_profile.h) out.
 *
 * It reads every version (0-7) and word size (4 or 8, and 64-bit Windows'
 * 4-byte words with 8-byte addresses) the original tools wrote, normalises the
 * stack encodings into vmp_frame, and stops at the TRAILER or where the input
 * ends.  A length field never sizes an allocation beyond the format's limits:
 * each is checked before use, a stack's frames are allocated only once its
 * bytes are present, and the source's window grows at most to one record.
 * Besides the profile itself the decoder keeps, per distinct stack, a table
 * entry and (up to 32 MB in all) a copy of its raw bytes, so that a stack seen
 * before is recognised with one hash and one memcmp.
 *
 * The vmp_profile_read_* functions of vmp_profile.h are implemented here on
 * top of vmp_decode().
 */
#ifndef VMP_DECODE_H
#define VMP_DECODE_H

#include "vmp_error.h"
#include "vmp_profile.h"
#include "vmp_source.h"

/* Decodes all of src into p (normally fresh from vmp_profile_new()).  Returns
 * 0, or -1 with err naming the offset and the problem; p then holds what was
 * decoded before the error.  options may be NULL. */
int vmp_decode(vmp_source *src, vmp_profile *p, const vmp_read_options *options,
               vmp_error *err);

/* Inside a call of the observer (vmp_decoder_observe): the bytes of the
 * record it is told of, contiguous (in the piece pushed, or in the decoder's
 * own copy of a record cut between pieces), valid until the call returns.
 * For the compact writer (vmp_compact.c), which writes the record while it
 * is in the cache rather than find it again after the push. */
const unsigned char *vmp_decoder_observed_bytes(const vmp_decoder *d);

#endif /* VMP_DECODE_H */
