/* vmp_error.c - formatting of vmp_error (see vmp_error.h). */
#include "vmp_error.h"

#include <stdarg.h>
#include <stdio.h>

int vmp_error_set(vmp_error *err, int64_t offset, const char *fmt, ...)
{
    va_list ap;
    if (!err)
        return -1;
    err->offset = offset;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

void vmp_error_clear(vmp_error *err)
{
    if (err) {
        err->offset = -1;
        err->message[0] = '\0';
    }
}
