/*
 * fuzz_fd.h - the fuzz targets' file descriptor holding the input's bytes, so
 * that each reads them through its streaming path (files and pipes) as well
 * as from memory.  One memfd per process, rewritten for every input (the
 * includer defines _GNU_SOURCE first, for memfd_create).
 */
#ifndef FUZZ_FD_H
#define FUZZ_FD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

/* A descriptor at offset 0 of exactly these bytes (traps if that fails). */
static inline int fuzz_fd_of(const uint8_t *data, size_t size)
{
    static int memfd = -1;
    if (memfd < 0)
        memfd = memfd_create("fuzz", 0);
    if (memfd < 0 || ftruncate(memfd, 0) < 0 || lseek(memfd, 0, SEEK_SET) < 0)
        __builtin_trap();
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(memfd, data + off, size - off);
        if (w <= 0)
            __builtin_trap();
        off += (size_t)w;
    }
    lseek(memfd, 0, SEEK_SET);
    return memfd;
}

#endif
