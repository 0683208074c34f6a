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
 *
 * That leaves the moment between the open and the move: a descriptor opened
 * even for microseconds takes the lowest free number, and a program that
 * closes a low number and dup2()s a file onto it (CPython's
 * test_subprocess, test_close_fds_*: its stdout onto 1) may put its file
 * in our descriptor's place (or get EBUSY while our open holds the
 * number), and our close() then closes the program's file.  So the
 * sampler thread, which opens and closes /proc files every round, and the
 * writer, whose native mode opens object files while the program runs, have
 * descriptor tables of their own: vmp_fd_own_table() gives the calling thread
 * a new, empty table (close_range(0, ~0, CLOSE_RANGE_UNSHARE), Linux 5.9:
 * the kernel copies none of the process's descriptors into it, so it never
 * holds a reference to one of the program's files, which would keep a
 * pipe the program closed open).  What that thread opens then never touches
 * a number of the program's, and the program's other threads cannot see it
 * (the handler, which runs on them, must not use those numbers: only
 * compare them).  It cannot be undone, and a thread of its own table makes
 * anything it opens invisible to fork children (they copy the forking
 * thread's table).  1 when done, 0 when the kernel refused (older than 5.9,
 * a seccomp filter): the thread shares the process's table, as before.
 */
#ifndef VMP_FDS_H
#define VMP_FDS_H

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

#define VMP_FD_FLOOR 1000

/* Where our numbers start: VMP_FD_FLOOR, or half the descriptor limit. */
static inline int vmp_fd_floor(void)
{
    long floor = VMP_FD_FLOOR;
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
        limit.rlim_cur < (rlim_t)floor * 2)
        floor = (long)(limit.rlim_cur / 2);
    return (int)floor;
}

static inline int vmp_fd_out_of_the_way(int fd)
{
    if (fd < 0)
        return fd;
    int floor = vmp_fd_floor();
    if (fd >= floor)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, (int)floor);
    if (moved < 0)
        return fd;
    close(fd);
    return moved;
}

static inline int vmp_fd_own_table(void)
{
#ifdef SYS_close_range
    return syscall(SYS_close_range, 0U, ~0U, CLOSE_RANGE_UNSHARE) == 0;
#else
    return 0;
#endif
}

/* The same, keeping descriptor `keep` at its number (the writer's: the
 * profile, the program's descriptor).  The kernel then copies the numbers
 * up to keep, and those below it are closed at once: for that moment the
 * thread holds references to the program's files below keep (a pipe the
 * program closes meanwhile ends microseconds later; POSIX locks belong to
 * the table that took them, so none of the program's is dropped). */
static inline int vmp_fd_own_table_keeping(int keep)
{
#ifdef SYS_close_range
    if (keep < 0)
        return vmp_fd_own_table();
    if (syscall(SYS_close_range, (unsigned)keep + 1, ~0U, CLOSE_RANGE_UNSHARE) != 0)
        return 0;
    if (keep > 0 && syscall(SYS_close_range, 0U, (unsigned)keep - 1, 0U) != 0)
        for (int fd = 0; fd < keep; fd++)
            close(fd);
    return 1;
#else
    (void)keep;
    return 0;
#endif
}

/* Closes every descriptor of the calling thread's own table (before the
 * thread ends: its table goes only after a join of it returned). */
static inline void vmp_fd_close_own_table(void)
{
#ifdef SYS_close_range
    syscall(SYS_close_range, 0U, ~0U, 0U);
#endif
}

#endif
