/*
 * vmp_sampler.h - the CPython sampler: samples every Python thread of the
 * process at a fixed rate and writes a vmprof profile to a file descriptor.
 *
 * Design (threads and who does what; vmp_run.h lists the file of each part):
 *   - a sampler thread sleeps to absolute CLOCK_MONOTONIC deadlines, one per
 *     period, and each period sends a signal (tgkill) to the threads to
 *     sample: in CPU mode the threads whose CPU clock advanced by a period
 *     (so samples follow CPU consumed, like ITIMER_PROF but at any rate); in
 *     wall-clock mode every thread.  It finds threads in /proc/self/task
 *     (refreshed every few milliseconds), so threads started after enabling
 *     are sampled with no registration.  In memory mode it also reads the
 *     RSS each period.
 *   - the signal handler, on the sampled thread itself, finds that thread's
 *     thread state, walks its Python frames (vmp_frames.h) into a slot of a
 *     preallocated ring claimed with one compare-and-swap, and notes each code
 *     object (vmp_codes.h).  No locks, no allocation, no Python API.
 *   - a writer thread drains the ring in claim order, maps code addresses to
 *     profile ids (an address reused by a new code object gets a fresh id),
 *     encodes records with vmp_encode.h and writes them to the fd, which may
 *     be a pipe (never sought or read).
 *
 * All functions are called with the GIL held.  disable() lets it go while it
 * waits (for the last signals, for the writer), and so do names that wait
 * for room in the ring: a thread of the program may be the one reading the
 * pipe the profile goes to.
 */
#ifndef VMP_SAMPLER_H
#define VMP_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

typedef struct vmp_sampler_config {
    int fd;
    double period;       /* seconds, 0 < period < 1 */
    int memory;          /* RSS in KiB with every sample */
    int lines;           /* [line, code] pairs */
    int real_time;       /* wall clock: sample threads that sleep too */
    int native;          /* C frames too, interleaved (vmp_native_mode.h) */
    /* Extra META records written after os and bits: n pairs of key, value. */
    const char *const *meta;
    size_t n_meta;
} vmp_sampler_config;

/* Figures about the run, for tests and the bench. */
typedef struct vmp_sampler_stats {
    uint64_t samples;        /* samples written */
    uint64_t dropped;        /* samples lost to a full buffer */
    uint64_t signals_sent;
    uint64_t samples_repeated; /* wall clock: idle threads' samples written again, no signal */
    uint64_t periods;        /* periods the sampler thread woke for */
    uint64_t periods_late;   /* wake-ups that missed one or more deadlines */
    uint64_t untracked_codes;
    uint64_t walk_faults;    /* samples dropped because the walk faulted (a frame being pushed) */
    uint64_t names_lost;     /* names of code objects that found no room (the writer was stuck) */
    uint64_t threads_max;    /* most threads the sampler kept track of at once */
    uint64_t threads_blocking; /* threads found blocking the signal (left alone) */
    uint64_t samples_blocking; /* ... their periods, not sampled */
    uint64_t samples_cut;    /* of `samples`: native stacks cut for want of an unwind rule, or capped in deep recursion */
    uint64_t unwind_pcs_learned; /* native mode: pcs whose unwind rules the writer learned */
    uint64_t unwind_pcs_libdw;   /* ... of them, those it read with libdw (the walk was cut there) */
    uint64_t not_python;     /* signals answered "no Python thread state" */
    uint64_t sampler_rounds; /* wake-ups of the sampler thread */
    uint64_t writer_rounds;  /* wake-ups of the writer thread */
    uint64_t allocated_ahead; /* bytes of the profile's blocks the writer allocated ahead of its writes */
    /* The sampler thread's work that grows with the threads (vmp_delivery.h):
     * other threads' CPU clocks read, polls of the still threads, listings
     * of /proc/self/task, visits of still threads. */
    uint64_t clock_reads, polls, listings, visits;
    uint64_t cold_polls;     /* polls that read the threads handed over idle at the start too (vmp_delivery.c, poll_still) */
    uint64_t births_read;    /* reads of the listing's end only, for threads born since (vmp_delivery.c, read_births) */
    uint64_t deaths_read;    /* ... for threads found gone by a reading of their clock (vmp_delivery.c, read_deaths) */
    uint64_t unseen_waits;   /* wall clock: rounds told by a handler of a wait no probe saw (vmp_delivery.c, round_length) */
    uint64_t first_samples;  /* wall clock: threads idle from the start in a stack read by enable() */
    uint64_t sources_opened; /* per-thread CPU-time events opened (vmp_delivery.h: "Per-thread sources") */
    uint64_t first_sample_periods; /* of `samples`: the periods each thread's first signal's sample stood for */
    uint64_t handlers_left;  /* handlers still inside when a stop's wait for them ended (stopped, starved) */
    uint64_t slots_given_up; /* ring slots given up on: their producer stayed between claim and publish past VMP_STALL_NS */
    int signo;               /* the signal used */
    int64_t signal_taken_ms; /* ms after enable when the program's own handler replaced ours and sampling stopped; -1: never */
} vmp_sampler_stats;

/* Starts profiling.  Returns 0, or -1 with a one-line reason in err. */
int vmp_sampler_enable(const vmp_sampler_config *cfg, char *err, size_t errlen);

/* Stops sampling, names the code objects still alive, writes the trailer and
 * waits for the writer.  Returns 0, or -1 with a reason in err when writing
 * failed (what was written stays written).  Fills *stats when non-NULL. */
int vmp_sampler_disable(vmp_sampler_stats *stats, char *err, size_t errlen);

/* Before os.exec*: stops sampling and writes out what the file needs to be
 * read (samples, names); sampling resumes by itself if the exec fails.  The
 * run stays enabled; disable() finishes it as usual. */
void vmp_sampler_before_exec(void);

/* At os.fork's (os.forkpty's) audit event, GIL held: on 3.12+, when the
 * forking thread is the program's only one, stops our threads until
 * os.fork has returned, so that CPython's count of the process's threads
 * does not warn for ours (vmp_sampler.c).  Nothing before 3.12. */
void vmp_sampler_before_py_fork(void);

/* Tests only: forks whose threads were stopped, forks where they could not
 * be (a busy writer), and the time they were stopped in all (ns). */
void vmp_sampler_test_fork_stops(uint64_t out[3]);

int vmp_sampler_is_enabled(void);
int vmp_sampler_fd(void);

/* stop_sampling()/start_sampling(): a nesting counter; while it is above 0,
 * signals are taken but no sample is recorded. */
void vmp_sampler_pause(void);
void vmp_sampler_resume(void);

/* The calling thread's stack now, as a sample would record it (frames only,
 * innermost first); returns the number of words written. */
size_t vmp_sampler_stack_now(uint64_t *out, size_t max_frames);

/* For tests: reads an unmapped address under the walk's fault guard while
 * enabled (nested: inside a guarded call, after a guarded call inside it
 * faulted and another completed).  Returns 1 when the guard caught the
 * fault, -1 when not enabled. */
int vmp_sampler_guard_selftest(int nested);

/* Tests only: forks (while enabled) whose wait for the handlers in flight
 * ended on its bound (100 ms) with one still inside. */
uint64_t vmp_sampler_test_fork_waits_in_vain(void);

#endif /* VMP_SAMPLER_H */
