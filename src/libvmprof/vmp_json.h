/*
 * vmp_json.h - the small JSON writer the exporters share.
 *
 * Output goes straight to a stdio stream; nothing is buffered here beyond what
 * stdio does, so a million-sample export never holds its JSON in memory.
 * Strings are escaped per RFC 8259; bytes that are not valid UTF-8 (a file name
 * in a profile may be anything) are written as U+FFFD so that every consumer
 * can parse the result.  Write errors are sticky in the FILE and are checked
 * once by the caller with ferror().
 */
#ifndef VMP_JSON_H
#define VMP_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A quoted, escaped JSON string. */
void vmp_json_string(FILE *out, const char *s, size_t len);
/* The same for a NUL-terminated string. */
void vmp_json_cstring(FILE *out, const char *s);
/* An escaped string without the quotes, for building one string from parts. */
void vmp_json_string_body(FILE *out, const char *s, size_t len);
void vmp_json_u64(FILE *out, uint64_t v);
void vmp_json_i64(FILE *out, int64_t v);
/* A finite number in the shortest form that reads back the same (NaN and
 * infinities, which JSON lacks, become 0). */
void vmp_json_double(FILE *out, double v);
/* A time in milliseconds rounded to the microsecond ("12.5", "3"), written
 * without printf: exports write one per sample. */
void vmp_json_millis(FILE *out, double ms);

#endif /* VMP_JSON_H */
