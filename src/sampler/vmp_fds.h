/*
 * vmp_fds.h - the profiler's own long-lived descriptors stay out of the
 * program's way.
 *
 * A new descriptor takes the lowest free number, so one the profiler opens
 * while the program runs (a thread's CPU-time event, an object file libdw
 * reads) lands among the program's own: a program that probes or closes the
 * numbers just above a file it closed finds ours there (CPython's
 * test_os.test_closerange skipped itself under the profiler, 8 of 16 runs).
 * vmp_fd_out_of_the_way(fd) moves a descriptor of ours to the lowest free
 * number from VMP_FD_FLOOR up (half the descriptor limit when that is lower),
 * close-on-exec, and returns the new number, or fd itself when there is no
 * room there.  Call it right after opening, before the descriptor is used
 * anywhere (O_ASYNC's signals name the number set then).  Only fcntl and
 * close: fine in any thread.
 */
#ifndef VMP_FDS_H
#define VMP_FDS_H

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#define VMP_FD_FLOOR 1000

static inline int vmp_fd_out_of_the_way(int fd)
{
    if (fd < 0)
        return fd;
    long floor = VMP_FD_FLOOR;
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
        limit.rlim_cur < (rlim_t)floor * 2)
        floor = (long)(limit.rlim_cur / 2);
    if (fd >= floor)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, (int)floor);
    if (moved < 0)
        return fd;
    close(fd);
    return moved;
}

#endif
