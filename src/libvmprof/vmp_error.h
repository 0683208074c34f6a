/*
 * vmp_error.h - how the C library reports a failure: one line of text that
 * says what is wrong and where (byte offset in the input, when there is one).
 */
#ifndef VMP_ERROR_H
#define VMP_ERROR_H

#include <stdint.h>

#include "vmprof.h" /* struct vmp_error is public */

/* Sets err (if non-NULL) to the formatted message at offset; returns -1. */
int vmp_error_set(vmp_error *err, int64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void vmp_error_clear(vmp_error *err);

#endif /* VMP_ERROR_H */
