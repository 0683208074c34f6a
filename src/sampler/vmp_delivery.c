/*
 * vmp_delivery.c - when the sampler thread signals which thread (contract in
 * the header).
 */
#define _GNU_SOURCE
#include "vmp_delivery.h"
#include "vmp_fds.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

enum { ACTIVE, STILL };

/* sampled_cpu[] values other than a CPU time */
#define NO_SAMPLE (-1)
#define NOT_PYTHON (-2)

struct vmp_delivery_thread {
    pid_t tid;
    uint32_t place;     /* its place (header: "Places") */
    uint8_t state;      /* ACTIVE: read every round; STILL: see the header */
    uint8_t seen;       /* found by the latest listing */
    uint8_t awaiting;   /* signalled; its answer not read yet */
    uint8_t not_python; /* its latest answer: no Python thread state */
    uint8_t confirmed;  /* ... and it was not the first such answer */
    uint8_t blocks;     /* it blocks the signal */
    uint8_t checks;     /* its mask was read that many times for the pending signal */
    uint32_t handled_when_found; /* sources: handled[] when it was found blocking (it moved: it unblocked) */
    uint32_t handled_seen;       /* sources: handled[] at its last round */
    uint8_t probe_shift; /* wall clock with sources: probed when 2 << probe_shift periods behind */
    uint8_t held;        /* ... its probes wait for the rules (cut_held), as of its latest round */
    uint8_t in_write;    /* wall clock: its last call read was a write that may wait for room (waits_for_a_signal) ... */
    uint32_t write_handled; /* ... with handled[] then */
    uint8_t first;       /* wall clock: the start handed over its first sample (first_samples) */
    uint8_t cold;        /* ... and it has not been found running since: polls read it last (poll_still) */
    uint32_t active_pos;
    int src;               /* its source's fd (sources mode); -1: none */
    int src_pos;           /* its place in open_fds */
    uint64_t src_id;       /* the kernel's id of that event (source_is_ours) */
    int64_t src_retry_at;  /* ns: no new source for it before then (the open failed) */
    int64_t src_cpu;       /* its CPU clock when its source was opened (what the event counts from) */
    int64_t last_cpu;      /* ns, the latest reading; -1: none yet */
    int64_t delta;         /* CPU time used in the latest round it was read */
    int64_t credit;        /* CPU clock: CPU time not yet paid for by a sample */
    int64_t owed;          /* samples due but not yet signalled */
    int64_t waited;        /* wall clock, per period: of those, the ones counted up to the last round that
                            * sent its signal or found it pending (all before its answer: read_late_answer) */
    int64_t capped;        /* per period: periods the backlog cap took, not counted yet (count_capped) */
    int64_t unasked;       /* per period, not Python's: its periods since its last answer that no signal asked
                            * about, counted blocked if it is found to block the signal (deliver) */
    int64_t idle_cpu;      /* wall clock: CPU clock when found idle; -1: not idle */
    int64_t still_from;    /* wall clock, STILL: first period whose repeat is not handed over */
    int64_t lazy;          /* wall clock, ACTIVE: repeats counted, not handed over yet */
    int64_t visit_at;      /* wall clock, STILL: ns before which the visits pass it by (0: the next one) */
    int64_t visit_gap;     /* ... the interval its last visit set (0: none yet since it was made still) */
    uint32_t quiet;        /* rounds in a row it did not run */
    uint32_t quiet_needed; /* ... before it is made still (grows each time a poll finds it ran) */
    int64_t probe_cpu;     /* not Python: signal again once its CPU clock passed this */
    int64_t probe_gap;
    int64_t recheck_at;    /* ns: after a first "not Python", ask again then; 0: no */
    int64_t sent_cpu;      /* its CPU clock when last signalled (wall clock with repeats: read right after) */
    int64_t ran_period;    /* the latest round (its period_no) whose reading found its clock moved: it may
                            * have run in any of that round's periods */
    int64_t signal_ran;    /* wall clock, per period: ran_period as of its last signal, or that round's own
                            * when it ran between the reading and the signal: only the periods after it may
                            * have waited for that signal (waited_for_signal) */
    int64_t pending_since; /* ns: since when its signal is pending; 0: none */
    int64_t alive_at;      /* ns: the latest round whose reading of its clock found it alive (0: none) */
    int64_t unfound;       /* wall clock with sources, born during the run: its whole periods from its birth
                            * to its paid mark, which no sample pays (born_before), counted lost once it is
                            * known to be Python's (its first answer so, or its end or the stop) */
    int64_t waited_at;     /* wall clock with sources: the round that read its latest probe answer that found
                            * it inside a system call (0: none; probe_answer_read) */
    int64_t check_cpu;     /* its CPU clock before the first reading of its mask (read_mask) */
    uint32_t check_handled; /* ... and handled[] then */
};

/* Places (header): the tid at each place, PLACE_FREE (never taken this
 * run: a lookup stops there) or PLACE_GONE (its thread ended: a lookup
 * steps over it, the sender may take it again). */
#define PLACE_FREE 0
#define PLACE_GONE (-1)
static _Atomic pid_t place_tid[VMP_PLACES];
static int places_used; /* the sending thread's: some place was taken since the table was last emptied */
/* The sending thread's: places taken and not given back, and how many a
 * run may take (VMP_PLACES; a test lowers it to reach "no place left"
 * without starting 16,384 threads: vmp_delivery_test_limit_places).  Read
 * only when a new thread is noted, never per sample. */
static size_t places_taken, places_limit = VMP_PLACES;

void vmp_delivery_test_limit_places(size_t n)
{
    places_limit = n < VMP_PLACES ? n : VMP_PLACES;
}
static __thread uint32_t place_cache __attribute__((tls_model("initial-exec"))); /* this thread's place + 1 */
/* Signals handled per place: the handler counts, the sending thread
 * compares with what it sent. */
static _Atomic uint32_t handled[VMP_PLACES];
/* Per place: the thread is inside our handler (vmp_delivery_entered ..
 * vmp_delivery_left), where the signal is blocked: one sent meanwhile, or
 * fired by its source, waits blocked and pending, as for a thread that
 * blocks it, until the handler returns.  A thread the scheduler keeps from
 * a CPU there (a loaded machine: tens of ms) read as blocking the signal
 * (2-3 such threads at load 15-19, where none blocked it). */
static _Atomic uint8_t inside[VMP_PLACES];
static uint32_t sent_to[VMP_PLACES]; /* the sending thread's own */
static __thread pid_t tid_cache __attribute__((tls_model("initial-exec")));
/* Per place, the thread whose sample was last reported and, for a kept one,
 * its CPU clock right after it (else NO_SAMPLE or NOT_PYTHON). */
static _Atomic pid_t sampled_tid[VMP_PLACES];
static _Atomic int64_t sampled_cpu[VMP_PLACES];
/* Per period, wall clock: the thread's CPU clock when its handler began
 * (-1: not read), beside sampled_cpu, which is read after the sample: the
 * waited periods' rule (read_answer) asks whether the thread ran between
 * its signal and the interrupted instruction, which the handler's own work
 * does not change. */
static _Atomic int64_t sampled_entry_cpu[VMP_PLACES];
static __thread int64_t entry_cpu __attribute__((tls_model("initial-exec")));
static _Atomic int sampled_in_call[VMP_PLACES]; /* ... and it found the thread inside a system call */
/* Whether a kept sample's CPU clock is wanted (wall clock with repeats):
 * set before the first signal of a run. */
static _Atomic int want_sample_cpu;
/* Sources mode (header): per place, the thread whose CPU time the
 * handler counts, the CPU time paid for by its samples so far, and its
 * source's fd + 1 (0: none); the period counted in (0: signals are not
 * counted so) and the most samples one signal pays for.  open_fds holds
 * every source's fd + 1 for a fork child to close. */
static _Atomic pid_t base_tid[VMP_PLACES];
static _Atomic int64_t base_cpu[VMP_PLACES];
static _Atomic int source_fd[VMP_PLACES];
static _Atomic int64_t credit_period, credit_cap;
static _Atomic int open_fds[VMP_MAX_SOURCES];
/* The sources are descriptors of the program's table (the sending thread
 * shares it): the handler may pause one, a fork child has copies to close. */
static _Atomic int sources_in_program_table;
/* Wall clock with sources (header): base_cpu[] holds instead the
 * CLOCK_MONOTONIC time up to which a thread's periods are paid, moved only
 * by compare-and-swap (its handler and the sender both pay); rep_cpu[] the
 * thread's CPU clock right after its last kept sample when that one found
 * it inside a system call (-1: none, or a sample not to repeat); the
 * program's pause flag; rep_cpu[] is also kept for a sample taken outside
 * a call (rep_in_call[] 0), for the time a thread waited at stop; and,
 * per thread, what its latest take_owed paid
 * (0: nothing was owed, so no sample was written either). */
static _Atomic int wall_counting;
static _Atomic int64_t rep_cpu[VMP_PLACES];
static _Atomic int rep_in_call[VMP_PLACES];
/* Wall clock with sources: per place, when the repeatable sample (rep_cpu)
 * found the thread in a call that may be an absolute sleep (x86-64: the
 * call returned EINTR with TIMER_ABSTIME in its flags register), that
 * sample's rep_cpu (-1: none), the call's clock, request and remainder
 * registers, and the deadline the request held then (same_sleep). */
static _Atomic int64_t sleep_cpu[VMP_PLACES];
static _Atomic uint64_t sleep_args[VMP_PLACES][3];
static _Atomic int64_t sleep_deadline[VMP_PLACES];
/* The kind of call: SLEEP_ABSOLUTE (the above), or SLEEP_SELECT:
 * select/pselect6(0, NULL, NULL, NULL, timeout[, NULL]), a relative
 * timeout that the kernel wrote back as the time left when the signal
 * ended it: args {timeout, sixth register, 0}, sleep_left the two words
 * the timeout held then (seconds, then micro- or nanoseconds: the call's
 * number is gone by then), sleep_at the handler's CLOCK_MONOTONIC then
 * (same_select). */
enum { SLEEP_ABSOLUTE = 1, SLEEP_SELECT = 2 };
static _Atomic int sleep_kind[VMP_PLACES];
static _Atomic int64_t sleep_left[VMP_PLACES][2];
static _Atomic int64_t sleep_at[VMP_PLACES];
/* ... as the handler's vmp_delivery_in_system_call read them */
static __thread int sleep_seen __attribute__((tls_model("initial-exec")));
static __thread uint64_t sleep_seen_args[3] __attribute__((tls_model("initial-exec")));
static __thread int64_t sleep_seen_deadline __attribute__((tls_model("initial-exec")));
static __thread int64_t sleep_seen_left[2] __attribute__((tls_model("initial-exec")));
static __thread int64_t sleep_seen_at __attribute__((tls_model("initial-exec")));
/* ... and the thread's CPU clock at the sample that found that sleep (the
 * record carried since: set_repeatable_here) */
static __thread int64_t sleep_from __attribute__((tls_model("initial-exec")));
static const _Atomic int *_Atomic paused_flag;
static __thread int64_t owed_now __attribute__((tls_model("initial-exec")));
static __thread int64_t owed_from __attribute__((tls_model("initial-exec"))); /* vmp_delivery_owed_from */
static __thread int64_t sample_from __attribute__((tls_model("initial-exec"))); /* vmp_delivery_sample_from */
/* Wall clock with sources: per place, the answer to the sender's latest
 * probe, 1 + whether it found the thread inside a system call (0: none
 * since the sender read it).  Apart from sampled_*[], which the thread's
 * own event overwrites: a thread that waits, is probed and runs again has
 * several samples of its event reported before the sender's next round,
 * and the probe's answer (it waited) was lost among them, so the rounds
 * never became short and the waits the 10 ms rounds missed were paid with
 * the running stack (a thread computing 3 ms and sleeping 7 ms showed 50%
 * of its samples computing). */
static _Atomic int probe_answer[VMP_PLACES];
#define PROBE_CUT 3 /* (probe_answer: the probe's sample was cut) */
/* Wall clock with sources: set by a handler whose thread's own event paid
 * VMP_UNSEEN_PERIODS or more periods it did not run since a sample taken
 * outside a system call: it was off its CPU (a wait, or a wait for a CPU)
 * and no probe found it there; the sender's next round reads and clears it
 * (round_length: the rounds stay short). */
static _Atomic int unseen_wait;
#define VMP_UNSEEN_PERIODS 2

void vmp_delivery_test_unseen_wait(void)
{
    atomic_store(&unseen_wait, 1);
}
/* Wall clock (header: "Cut samples"): per place, the thread's CPU clock
 * right after its last sample when that one was cut (-1: it was not), and
 * the rules' generation that sample's walk read. */
static _Atomic int64_t cut_cpu[VMP_PLACES];
static _Atomic uint64_t cut_gen[VMP_PLACES];
/* Periods a handler dropped beyond the backlog (vmp_delivery_take_owed):
 * the handler has no vmp_delivery to count them in. */
static _Atomic uint64_t handler_periods_dropped;
/* Per place, whether the thread has had no sample of a signal of ours yet;
 * and the periods such first samples stood for (a thread born during the
 * run and asleep since: every period from when it was found until its
 * first probe was answered, ~136 a thread when the process was kept from
 * a CPU; none of them could be a repeat, there was no sample to repeat). */
static _Atomic uint8_t first_unsampled[VMP_PLACES];
static _Atomic uint64_t first_sample_periods;
/* ... and the periods after a cut sample a handler did not pay (wall_owed) */
static _Atomic uint64_t handler_periods_cut;
static __thread int signal_sent __attribute__((tls_model("initial-exec"))); /* this signal came from the sender */
/* Per period (no weights: each signal pays one period, counted paid when
 * sent): per place, 1 while the period of the signal the sender sent last
 * is not taken yet.  Its handler takes it (vmp_delivery_take_owed) or, if
 * the thread's end or the stop comes first, the sender does and counts it
 * lost: a signal still pending then is discarded (the thread's exit, the
 * caller's SIG_IGN) or handled after the stop, when it pays nothing.  One
 * exchange decides, so the period is paid once: before, it was counted
 * paid at the send and then neither sampled nor counted (a thread kept
 * from a CPU at the stop: one period each).  per_period_claims: 0, no run
 * since the process began (a signal pays one); 1, a run; 2, stopped (a
 * signal pays nothing: the stop counted what was owed). */
static _Atomic uint8_t unpaid_signal[VMP_PLACES];
static _Atomic int per_period_claims;

static int64_t ns_of(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

pid_t vmp_delivery_this_tid(void)
{
    pid_t tid = tid_cache;
    if (!tid)
        tid = tid_cache = (pid_t)syscall(SYS_gettid);
    return tid;
}

uint32_t vmp_delivery_place_of(pid_t tid)
{
    if (tid <= 0)
        return VMP_NO_PLACE;
    size_t p = vmp_place_home(tid);
    for (size_t i = 0; i < VMP_PLACES; i++, p = (p + 1) & (VMP_PLACES - 1)) {
        pid_t at = atomic_load_explicit(&place_tid[p], memory_order_acquire);
        if (at == tid)
            return (uint32_t)p;
        if (at == PLACE_FREE)
            break;
    }
    return VMP_NO_PLACE;
}

uint32_t vmp_delivery_this_place(void)
{
    pid_t tid = vmp_delivery_this_tid();
    uint32_t c = place_cache;
    if (c && atomic_load_explicit(&place_tid[c - 1], memory_order_acquire) == tid)
        return c - 1;
    uint32_t p = vmp_delivery_place_of(tid);
    place_cache = p == VMP_NO_PLACE ? 0 : p + 1;
    return p;
}

/* The sending thread: a place for thread tid, which has none (its state
 * there made fresh before the tid is published), or VMP_NO_PLACE when
 * every place is a live thread's. */
static uint32_t place_take(pid_t tid)
{
    if (places_taken >= places_limit)
        return VMP_NO_PLACE;
    size_t p = vmp_place_home(tid);
    for (size_t i = 0; i < VMP_PLACES; i++, p = (p + 1) & (VMP_PLACES - 1)) {
        pid_t at = atomic_load_explicit(&place_tid[p], memory_order_relaxed);
        if (at != PLACE_FREE && at != PLACE_GONE)
            continue;
        sent_to[p] = atomic_load_explicit(&handled[p], memory_order_relaxed);
        atomic_store_explicit(&sampled_tid[p], 0, memory_order_relaxed);
        atomic_store_explicit(&base_tid[p], 0, memory_order_relaxed);
        atomic_store_explicit(&source_fd[p], 0, memory_order_relaxed);
        atomic_store_explicit(&rep_cpu[p], -1, memory_order_relaxed);
        atomic_store_explicit(&sleep_cpu[p], -1, memory_order_relaxed);
        atomic_store_explicit(&cut_cpu[p], -1, memory_order_relaxed);
        atomic_store_explicit(&inside[p], 0, memory_order_relaxed);
        atomic_store_explicit(&first_unsampled[p], 1, memory_order_relaxed);
        atomic_store_explicit(&unpaid_signal[p], 0, memory_order_relaxed);
        atomic_store_explicit(&place_tid[p], tid, memory_order_release);
        places_used = 1;
        places_taken++;
        return (uint32_t)p;
    }
    return VMP_NO_PLACE;
}

/* The sending thread, sources mode: the handler of thread tid (at place k)
 * counts its time from `base` (its CPU clock, or the wall clock's ns),
 * with no earlier probe answer or repeat clock; published last. */
static void place_count_from(uint32_t k, pid_t tid, int64_t base)
{
    atomic_store(&base_cpu[k], base);
    atomic_store(&rep_cpu[k], -1);
    atomic_store(&cut_cpu[k], -1);
    atomic_store(&probe_answer[k], 0);
    atomic_store_explicit(&base_tid[k], tid, memory_order_release);
}

/* The sending thread: thread tid ended; its place may be taken again (a
 * lookup steps over it meanwhile). */
static void place_give_back(uint32_t p)
{
    atomic_store_explicit(&place_tid[p], PLACE_GONE, memory_order_release);
    places_taken--;
}

/* The sending thread, at the start of a run: every place free. */
static void places_empty(void)
{
    places_taken = 0;
    if (!places_used)
        return;
    for (size_t p = 0; p < VMP_PLACES; p++)
        if (atomic_load_explicit(&place_tid[p], memory_order_relaxed) != PLACE_FREE)
            atomic_store_explicit(&place_tid[p], PLACE_FREE, memory_order_relaxed);
    places_used = 0;
}

void vmp_delivery_entered(void)
{
    uint32_t k = vmp_delivery_this_place();
    if (k != VMP_NO_PLACE)
        atomic_store_explicit(&inside[k], 1, memory_order_relaxed);
    /* Per period, wall clock: the clock before anything of ours ran (see
     * sampled_entry_cpu).  The handler's work before its sample's reading
     * was counted as the thread's running after its signal: a thread's
     * first samples of a run fault in the code table's and the ring's
     * pages (pairs of faults on fresh pages, 100-520 us of CPU in traced
     * runs beside busy loops), and native mode walks for tens of us, so
     * answers were refused as if the thread had run, and their waited
     * periods dropped.  One clock reading more per signal, on that
     * schedule only.
     * Wall clock with sources: the reading wall_owed compares with the
     * thread's last sample (whether it ran since a cut one, or how much of
     * the time since one taken inside a call it ran), taken here instead
     * of in take_owed, and only where that reading is made: the handler's
     * work before take_owed (a fault, an interrupt charged to the thread:
     * 3-9 us as a rule, 100+ us now and then) changes no stack, and was
     * taken for the thread running after its cut sample: every period
     * since that sample (159-180 at once) was counted lost for a thread
     * that never ran.  No reading more per signal: the same one, earlier
     * (its place's rep_cpu and cut_cpu are set only by this thread's own
     * handler, so a sample found neither at entry has none at take_owed). */
    struct timespec t;
    entry_cpu = -1;
    if (!atomic_load_explicit(&want_sample_cpu, memory_order_relaxed))
        return;
    if (atomic_load_explicit(&wall_counting, memory_order_relaxed)) {
        if (k == VMP_NO_PLACE ||
            !((atomic_load_explicit(&rep_cpu[k], memory_order_acquire) >= 0 &&
               atomic_load_explicit(&rep_in_call[k], memory_order_acquire)) ||
              atomic_load_explicit(&cut_cpu[k], memory_order_acquire) >= 0))
            return;
    }
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) == 0)
        entry_cpu = ns_of(t);
}

void vmp_delivery_left(void)
{
    uint32_t k = vmp_delivery_this_place();
    if (k != VMP_NO_PLACE)
        atomic_store_explicit(&inside[k], 0, memory_order_release);
}

void vmp_delivery_handled(void)
{
    uint32_t k = vmp_delivery_this_place();
    if (k != VMP_NO_PLACE)
        atomic_fetch_add_explicit(&handled[k], 1, memory_order_release);
}

/* The two words (a timespec's or a timeval's) at `at`, read without a
 * fault (the address is a register's: any value): 1, both >= 0 and the
 * second below 1e9, or 0. */
static int words_at(uint64_t at, int64_t w[2])
{
    struct iovec here = {w, 2 * sizeof *w}, there = {(void *)(uintptr_t)at, 2 * sizeof *w};
    return at && syscall(SYS_process_vm_readv, (pid_t)syscall(SYS_getpid), &here, 1UL, &there, 1UL, 0UL) == (long)(2 * sizeof *w) &&
           w[0] >= 0 && w[1] >= 0 && w[1] < 1000000000L;
}

/* The deadline (CLOCK ns) in the timespec at `at`, or -1 (words_at). */
static int64_t deadline_at(uint64_t at)
{
    int64_t w[2];
    if (!words_at(at, w) || w[0] > INT64_MAX / 1000000000L - 1)
        return -1;
    return w[0] * 1000000000L + w[1];
}

int vmp_delivery_in_system_call(const void *ucontext)
{
#if defined(__x86_64__)
    sleep_seen = 0;
    if (!ucontext)
        return 0;
    const mcontext_t *m = &((const ucontext_t *)ucontext)->uc_mcontext;
    const unsigned char *ip = (const unsigned char *)m->gregs[REG_RIP];
    /* The pc is where the thread runs: its page is mapped (readable unless
     * execute-only, hence the guard); the two bytes before it are read only
     * when on the same page. */
    if (ip[0] == 0x0f && ip[1] == 0x05)
        return 1;
    if (!(m->gregs[REG_RAX] == -EINTR && ((uintptr_t)ip & 4095) >= 2 && ip[-2] == 0x0f && ip[-1] == 0x05))
        return 0;
    /* Ended by this signal: clock_nanosleep(clock, TIMER_ABSTIME, request,
     * remainder) ends so (its return is -EINTR, not restarted), and a
     * caller that sleeps to the same deadline again (CPython's time.sleep
     * from 3.11) is back in the same call: same_sleep.  The call's number
     * is gone (rax holds its return); its arguments are still in their
     * registers, and the request's deadline is read through the kernel
     * (process_vm_readv: a register of another call may hold any value). */
    if (m->gregs[REG_RSI] == TIMER_ABSTIME && atomic_load_explicit(&wall_counting, memory_order_relaxed)) {
        int64_t deadline = deadline_at((uint64_t)m->gregs[REG_RDX]);
        if (deadline >= 0) {
            sleep_seen_args[0] = (uint64_t)m->gregs[REG_RDI];
            sleep_seen_args[1] = (uint64_t)m->gregs[REG_RDX];
            sleep_seen_args[2] = (uint64_t)m->gregs[REG_R10];
            sleep_seen_deadline = deadline;
            sleep_seen = SLEEP_ABSOLUTE;
        }
    }
    /* select(0, NULL, NULL, NULL, timeout), which glibc (2.33+ here) makes
     * pselect6(0, NULL, NULL, NULL, timeout, NULL) with a timespec of its
     * own: CPython's time.sleep before 3.11 sleeps so, and again after a
     * signal, for its deadline less the monotonic clock then.  Linux wrote
     * the time left into the timeout as the call returned (EINTR too):
     * the handler's clock now plus that is this sleep's end (same_select). */
    if (!m->gregs[REG_RDI] && !m->gregs[REG_RSI] && !m->gregs[REG_RDX] && !m->gregs[REG_R10] && m->gregs[REG_R8] &&
        atomic_load_explicit(&wall_counting, memory_order_relaxed)) {
        struct timespec now;
        if (words_at((uint64_t)m->gregs[REG_R8], sleep_seen_left) && clock_gettime(CLOCK_MONOTONIC, &now) == 0) {
            sleep_seen_args[0] = (uint64_t)m->gregs[REG_R8];
            sleep_seen_args[1] = (uint64_t)m->gregs[REG_R9];
            sleep_seen_args[2] = 0;
            sleep_seen_at = ns_of(now);
            sleep_seen = SLEEP_SELECT;
        }
    }
    return 1;
#else
    (void)ucontext;
    return 1;
#endif
}

/* Place k's repeatable sample: the thread's CPU clock when it was taken
 * and whether it was inside a call (rep_cpu -1 while they change, so a
 * reader never pairs one sample's clock with another's flag). */
static void set_repeatable(uint32_t k, int64_t cpu, int in_call)
{
    atomic_store_explicit(&rep_cpu[k], -1, memory_order_release);
    atomic_store_explicit(&sleep_cpu[k], -1, memory_order_release);
    atomic_store_explicit(&rep_in_call[k], in_call, memory_order_release);
    atomic_store_explicit(&rep_cpu[k], cpu, memory_order_release);
}

/* ... taken by the handler of this thread, inside the call it read
 * (vmp_delivery_in_system_call): that call's sleep, if it may be one. */
static void set_repeatable_here(uint32_t k, int64_t cpu, int in_call)
{
    int64_t was = atomic_load_explicit(&sleep_cpu[k], memory_order_relaxed); /* (only this handler sets it) */
    set_repeatable(k, cpu, in_call);
    if (!sleep_seen && was >= 0 && cpu >= was && cpu - sleep_from <= VMP_SLEEP_CARRY_NS) {
        /* Not in a sleep, having run at most VMP_SLEEP_CARRY_NS since the
         * sample that found it in one: that sleep's record stays, this
         * sample's.  A thread a signal took out of the sleep waits first
         * for the GIL (CPython: a computing thread holds it 5 ms, longer
         * while a loaded machine keeps that one from a CPU), and a probe
         * that found it there (in the wait, or on its way out of it,
         * delivered once it had a CPU again) dropped the record: back in
         * the same sleep it was probed again, and that probe's wait for
         * the GIL in turn (rounds are 1 ms once a probe finds a thread
         * inside a call not for the first time): a 1 s sleep beside a
         * spinning thread got 10-13 signals on 3.8 (27-32 wake-ups), and
         * 4-5 now and then on 3.13 at load 8-17.  Found back in the same
         * sleep (same_sleep: the deadline names the call), it never left
         * it: this sample has that sleep's stack.  (same_select's check is
         * no more exact than before: see there.) */
        atomic_store_explicit(&sleep_cpu[k], cpu, memory_order_release);
    } else if (in_call && sleep_seen) {
        sleep_from = cpu;
        atomic_thread_fence(memory_order_release); /* (sleep_cpu -1 before the fields change) */
        for (int i = 0; i < 3; i++)
            atomic_store_explicit(&sleep_args[k][i], sleep_seen_args[i], memory_order_relaxed);
        atomic_store_explicit(&sleep_deadline[k], sleep_seen_deadline, memory_order_relaxed);
        atomic_store_explicit(&sleep_left[k][0], sleep_seen_left[0], memory_order_relaxed);
        atomic_store_explicit(&sleep_left[k][1], sleep_seen_left[1], memory_order_relaxed);
        atomic_store_explicit(&sleep_at[k], sleep_seen_at, memory_order_relaxed);
        atomic_store_explicit(&sleep_kind[k], sleep_seen, memory_order_relaxed);
        atomic_store_explicit(&sleep_cpu[k], cpu, memory_order_release);
    }
}

/* Place k's last sample written, for thread tid (sampled_tid 0 while the
 * others change: idle_since_sample reads them as one). */
static void set_last_sampled(uint32_t k, pid_t tid, int64_t cpu, int64_t entry, int in_call)
{
    atomic_store_explicit(&sampled_tid[k], 0, memory_order_release); /* being written */
    atomic_store_explicit(&sampled_cpu[k], cpu, memory_order_release);
    atomic_store_explicit(&sampled_entry_cpu[k], entry, memory_order_release);
    atomic_store_explicit(&sampled_in_call[k], in_call, memory_order_release);
    atomic_store_explicit(&sampled_tid[k], tid, memory_order_release);
}

void vmp_delivery_sampled(int outcome, int in_call, uint64_t generation)
{
    pid_t tid = vmp_delivery_this_tid();
    uint32_t k = vmp_delivery_this_place();
    int probe = signal_sent;
    signal_sent = 0;
    if (k == VMP_NO_PLACE)
        return; /* (not a thread of the schedule's: none of ours is sent to it) */
    /* (a cut sample is never repeated: sampled_cpu says "none to repeat") */
    int64_t cpu = outcome == VMP_SAMPLE_NOT_PYTHON ? NOT_PYTHON : NO_SAMPLE;
    struct timespec t;
    if (outcome == VMP_SAMPLE_KEPT && atomic_load_explicit(&want_sample_cpu, memory_order_relaxed) &&
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) == 0)
        cpu = ns_of(t);
    if (atomic_load_explicit(&wall_counting, memory_order_relaxed) &&
        atomic_load_explicit(&base_tid[k], memory_order_acquire) == tid) {
        if (probe && outcome != VMP_SAMPLE_NOT_PYTHON) /* (a C thread's waits have no stack to show) */
            atomic_store_explicit(&probe_answer[k], outcome == VMP_SAMPLE_KEPT_CUT ? PROBE_CUT : 1 + !!in_call,
                                  memory_order_release);
        /* (a signal that paid nothing wrote nothing: the last sample is
         * still the one written) */
        if (outcome == VMP_SAMPLE_KEPT && cpu >= 0) {
            set_repeatable_here(k, cpu, in_call);
        } else if (outcome != VMP_SAMPLE_NONE || owed_now != 0) {
            atomic_store_explicit(&rep_cpu[k], -1, memory_order_release);
            atomic_store_explicit(&sleep_cpu[k], -1, memory_order_release); /* (a sample since: same_sleep) */
        }
    }
    /* Wall clock: whether the last sample written was cut (never repeated;
     * with sources its probes wait for the rules: cut_held). */
    if (outcome == VMP_SAMPLE_KEPT_CUT && atomic_load_explicit(&want_sample_cpu, memory_order_relaxed)) {
        atomic_store_explicit(&cut_cpu[k], -1, memory_order_release);
        atomic_store_explicit(&cut_gen[k], generation, memory_order_release);
        if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) == 0)
            atomic_store_explicit(&cut_cpu[k], ns_of(t), memory_order_release);
    } else if (outcome != VMP_SAMPLE_NONE || owed_now != 0) {
        atomic_store_explicit(&cut_cpu[k], -1, memory_order_release);
    }
    /* (a plain load first: the exchange, a locked instruction, only once
     * per thread, not on every sample) */
    if ((outcome == VMP_SAMPLE_KEPT || outcome == VMP_SAMPLE_KEPT_CUT) && owed_now > 0 &&
        atomic_load_explicit(&first_unsampled[k], memory_order_relaxed) &&
        atomic_exchange_explicit(&first_unsampled[k], 0, memory_order_relaxed))
        atomic_fetch_add_explicit(&first_sample_periods, (uint64_t)owed_now, memory_order_relaxed);
    set_last_sampled(k, tid, cpu, cpu >= 0 && entry_cpu <= cpu ? entry_cpu : -1, in_call);
}

uint64_t vmp_delivery_first_sample_periods(void)
{
    return atomic_load(&first_sample_periods);
}

void vmp_delivery_forget_tid(void)
{
    tid_cache = 0;
    /* (a fork child: the parent's sources are its copies of the fds, if
     * they were in the program's table; else the numbers are the program's) */
    int copied = atomic_exchange(&sources_in_program_table, 0);
    for (size_t i = 0; i < VMP_MAX_SOURCES; i++) {
        int fd = atomic_exchange(&open_fds[i], 0);
        if (fd > 0 && copied)
            close(fd - 1);
    }
    place_cache = 0;
    for (size_t k = 0; k < VMP_PLACES; k++) { /* (stored only where set: a page read is not copied) */
        if (atomic_load(&source_fd[k]))
            atomic_store(&source_fd[k], 0);
        if (atomic_load(&base_tid[k]))
            atomic_store(&base_tid[k], 0);
    }
    atomic_store(&credit_period, 0);
    atomic_store(&wall_counting, 0);
}

int vmp_delivery_is_ours(const siginfo_t *info, pid_t pid)
{
    if (!info)
        return 0;
    if (info->si_code == SI_TKILL)
        return signal_sent = info->si_pid == pid;
    signal_sent = 0;
    if (info->si_code == POLL_IN) {
        uint32_t k = vmp_delivery_this_place();
        return k != VMP_NO_PLACE && atomic_load_explicit(&source_fd[k], memory_order_relaxed) == info->si_fd + 1;
    }
    return 0;
}

void vmp_delivery_not_a_probe(void)
{
    signal_sent = 0;
}

/* The thread's CPU clock when its handler began (vmp_delivery_entered),
 * or now if that was not read. */
static int64_t cpu_at_entry(void)
{
    struct timespec t;
    if (entry_cpu >= 0)
        return entry_cpu;
    return clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) == 0 ? ns_of(t) : -1;
}

/* Wall clock with sources: the periods of wall time since those paid,
 * taken as paid (rounded, as below); of them, when the last sample found
 * the thread inside a system call, those it did not run (its CPU clock)
 * are that sample's repeats (*repeats), the rest (at least one) this
 * sample's. */
static int64_t wall_owed(size_t k, int64_t period, int64_t *repeats)
{
    struct timespec t;
    if (clock_gettime(CLOCK_MONOTONIC, &t) < 0)
        return 1;
    int64_t now = ns_of(t), base = atomic_load_explicit(&base_cpu[k], memory_order_acquire), n;
    do { /* (the sender moves it too, once per visit at most) */
        n = (now - base + period / 2) / period;
        if (n <= 0)
            return 0;
    } while (!atomic_compare_exchange_weak(&base_cpu[k], &base, base + n * period));
    /* (the repeats' periods come first, or those lost after a cut sample;
     * the sample's are the last n) */
    int64_t taken = n;
    owed_from = sample_from = base;
    const _Atomic int *paused = atomic_load_explicit(&paused_flag, memory_order_relaxed);
    if (paused && atomic_load_explicit(paused, memory_order_relaxed))
        return n; /* (nothing is written while paused) */
    int64_t at = atomic_load_explicit(&rep_cpu[k], memory_order_acquire), cpu;
    int in_call = at >= 0 && atomic_load_explicit(&rep_in_call[k], memory_order_acquire);
    if (at >= 0 && !in_call && !signal_sent && n >= VMP_UNSEEN_PERIODS &&
        !atomic_load_explicit(&unseen_wait, memory_order_relaxed) && (cpu = cpu_at_entry()) >= 0 &&
        n - (cpu - at + period / 2) / period >= VMP_UNSEEN_PERIODS)
        /* (its own event after a running sample: whatever it waited in
         * those periods, no probe saw) */
        atomic_store_explicit(&unseen_wait, 1, memory_order_relaxed);
    if (in_call && (cpu = cpu_at_entry()) >= 0) {
        int64_t mine = (cpu - at + period / 2) / period;
        mine = mine < 1 ? 1 : mine > n ? n : mine;
        *repeats = n - mine;
        n = mine;
    } else if ((at = atomic_load_explicit(&cut_cpu[k], memory_order_acquire)) >= 0 && (cpu = cpu_at_entry()) >= 0 &&
               cpu - at > VMP_CUT_SLACK_NS) {
        /* The last sample was cut and the thread ran since: this stack is
         * not the one it had in the periods it did not run, and the cut one
         * is never repeated (header: "Cut samples"): those are lost,
         * counted.  (One that did not run shows the very stack it waited
         * with: it pays them all, the walk now going further.) */
        int64_t mine = (cpu - at + period / 2) / period;
        mine = mine < 1 ? 1 : mine > n ? n : mine;
        atomic_fetch_add_explicit(&handler_periods_cut, (uint64_t)(n - mine), memory_order_relaxed);
        n = mine;
    }
    sample_from = base + (taken - n) * period;
    return n;
}

uint64_t vmp_delivery_dropped(const vmp_delivery *d)
{
    return atomic_load(&d->repeats_lost) + atomic_load(&d->periods_dropped) + atomic_load(&handler_periods_dropped) +
           atomic_load(&d->periods_cut) + atomic_load(&handler_periods_cut);
}

int vmp_delivery_weighs_wall(void)
{
    return atomic_load_explicit(&wall_counting, memory_order_relaxed);
}

int64_t vmp_delivery_owed_from(void)
{
    return owed_from;
}

int64_t vmp_delivery_sample_from(void)
{
    return sample_from;
}

int64_t vmp_delivery_take_owed(int64_t *repeats)
{
    *repeats = 0;
    owed_from = sample_from = 0;
    owed_now = 1;
    int64_t period = atomic_load_explicit(&credit_period, memory_order_relaxed);
    pid_t tid;
    uint32_t k;
    if (!period) {
        /* (per period: the period of the signal, if the stop did not take
         * it first; see unpaid_signal) */
        int claims = atomic_load_explicit(&per_period_claims, memory_order_acquire);
        if (!claims)
            return 1;
        k = vmp_delivery_this_place();
        if (k == VMP_NO_PLACE)
            return owed_now = claims == 1;
        return owed_now = atomic_exchange_explicit(&unpaid_signal[k], 0, memory_order_acq_rel);
    }
    tid = vmp_delivery_this_tid();
    k = vmp_delivery_this_place();
    if (k == VMP_NO_PLACE || atomic_load_explicit(&base_tid[k], memory_order_acquire) != tid)
        return 1; /* (not counted: one per signal) */
    if (atomic_load_explicit(&wall_counting, memory_order_relaxed))
        return owed_now = wall_owed(k, period, repeats);
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) < 0)
        return 1;
    int64_t cpu = ns_of(t), base = atomic_load_explicit(&base_cpu[k], memory_order_acquire), n, to;
    int64_t cap = atomic_load_explicit(&credit_cap, memory_order_relaxed);
    do { /* (the sender moves it too, for a thread it found blocking: count_blocked) */
        /* Rounded: the event and the clock count alike but not in step, and a
         * signal a hair early must not leave its period to the next one. */
        n = (cpu - base + period / 2) / period;
        if (n <= 0)
            return owed_now = 0;
        to = n > cap ? cpu : base + n * period;
    } while (!atomic_compare_exchange_weak(&base_cpu[k], &base, to));
    if (n > cap) {
        /* far behind (the sender kept from a CPU before it saw the signal
         * blocked): drop the rest, counted */
        atomic_fetch_add_explicit(&handler_periods_dropped, (uint64_t)(n - cap), memory_order_relaxed);
        n = cap;
    }
    return owed_now = n;
}

void vmp_delivery_source_answer(const siginfo_t *info, int outcome)
{
    if (outcome == VMP_SAMPLE_NOT_PYTHON && info && info->si_code == POLL_IN &&
        atomic_load_explicit(&sources_in_program_table, memory_order_relaxed))
        ioctl(info->si_fd, PERF_EVENT_IOC_DISABLE, 0); /* the sender resumes it when due */
}

static int64_t clock_ns(clockid_t clk)
{
    struct timespec t;
    if (clock_gettime(clk, &t) < 0)
        return -1;
    return ns_of(t);
}

static int64_t thread_cpu_ns(pid_t tid)
{
    /* Linux's clock id for another thread's CPU time (CPUCLOCK_SCHED of a
     * per-thread clock), as pthread_getcpuclockid builds it. */
    return clock_ns((clockid_t)((~(unsigned)tid << 3) | 6));
}

/* ---- the table: threads by tid, and the list of active ones ---------------- */

static size_t hash_tid(pid_t tid)
{
    return (size_t)((uint32_t)tid * 2654435761u);
}

static vmp_delivery_thread *find(const vmp_delivery *d, pid_t tid)
{
    for (size_t h = hash_tid(tid) & d->index_mask;; h = (h + 1) & d->index_mask) {
        int32_t i = d->index[h];
        if (i < 0)
            return NULL;
        if (d->threads[i].tid == tid)
            return &d->threads[i];
    }
}

int vmp_delivery_test_state(const vmp_delivery *d, pid_t tid)
{
    const vmp_delivery_thread *t = d->index ? find(d, tid) : NULL;
    if (!t)
        return -1;
    return (t->state == ACTIVE ? VMP_TEST_ACTIVE : 0) | (t->idle_cpu >= 0 ? VMP_TEST_IDLE : 0);
}

static void index_put(vmp_delivery *d, size_t pos)
{
    size_t h = hash_tid(d->threads[pos].tid) & d->index_mask;
    while (d->index[h] >= 0)
        h = (h + 1) & d->index_mask;
    d->index[h] = (int32_t)pos;
}

/* Rebuilds the index and the active list after positions changed. */
static void reindex(vmp_delivery *d)
{
    memset(d->index, 0xff, (d->index_mask + 1) * sizeof *d->index);
    d->n_active = 0;
    for (size_t i = 0; i < d->n_threads; i++) {
        index_put(d, i);
        if (d->threads[i].state == ACTIVE) {
            d->threads[i].active_pos = (uint32_t)d->n_active;
            d->active[d->n_active++] = (uint32_t)i;
        }
    }
}

/* Room for twice the threads: 0, or -1 when out of memory (the table is
 * unchanged then). */
static int grow(vmp_delivery *d)
{
    size_t cap = d->cap ? 2 * d->cap : 256;
    if (cap > INT32_MAX / 4)
        return -1;
    vmp_delivery_thread *threads = realloc(d->threads, cap * sizeof *threads);
    if (!threads)
        return -1;
    d->threads = threads;
    uint32_t *active = realloc(d->active, cap * sizeof *active);
    if (!active)
        return -1;
    d->active = active;
    int32_t *index = malloc(2 * cap * sizeof *index); /* at most half full */
    if (!index)
        return -1;
    free(d->index);
    d->index = index;
    d->index_mask = 2 * cap - 1;
    d->cap = cap;
    reindex(d);
    return 0;
}

static void make_active(vmp_delivery *d, vmp_delivery_thread *t)
{
    if (t->state == ACTIVE)
        return;
    t->state = ACTIVE;
    t->active_pos = (uint32_t)d->n_active;
    d->active[d->n_active++] = (uint32_t)(t - d->threads);
}

static void make_still(vmp_delivery *d, vmp_delivery_thread *t)
{
    if (t->state == STILL)
        return;
    uint32_t last = d->active[--d->n_active];
    d->active[t->active_pos] = last;
    d->threads[last].active_pos = t->active_pos;
    t->state = STILL;
}

/* d->repeat; while stopping (stop_deadline), one that finds the ring full
 * naps and tries again until the deadline, the writer making room, unless
 * the caller says that is in vain (room_in_vain). */
static int repeat_or_wait(vmp_delivery *d, pid_t tid, int64_t n, _Atomic int64_t *paid, int64_t from, int64_t to)
{
    for (;;) {
        int r = d->repeat(tid, n, paid, from, to);
        if (r >= 0 || !d->stop_deadline || clock_ns(CLOCK_MONOTONIC) >= d->stop_deadline)
            return r;
        if (d->room_in_vain && d->room_in_vain()) {
            d->stop_deadline = 1; /* (past: the next ones wait no more either) */
            return r;
        }
        struct timespec nap = {0, VMP_STOP_NAP_NS};
        nanosleep(&nap, NULL);
    }
}

/* Hands n repeats of thread tid's last sample, for the periods numbered
 * first to first + n - 1, to the writer (counted in `repeated`).  When the
 * ring has no room: with `keep`, -1 and nothing counted (the caller tries
 * again later); else they are lost (counted in repeats_lost). */
static int give_repeats(vmp_delivery *d, pid_t tid, int64_t n, int keep, int64_t first)
{
    /* (the per-period schedule's period k ends at start_ns + k periods) */
    int64_t from = d->sources || first < 1 ? 0 : d->start_ns + (first - 1) * d->period_ns;
    int r = repeat_or_wait(d, tid, n, NULL, from, 0);
    if (r == 0)
        atomic_fetch_add_explicit(&d->repeated, (uint64_t)n, memory_order_relaxed);
    else if (r > 0)
        ; /* (given up after its claim: the callback counted them lost) */
    else if (keep)
        return -1;
    else
        atomic_fetch_add_explicit(&d->repeats_lost, (uint64_t)n, memory_order_relaxed);
    return 0;
}

static void flush_lazy_or_keep(vmp_delivery *d, vmp_delivery_thread *t, int keep)
{
    if (t->lazy > 0 && give_repeats(d, t->tid, t->lazy, keep, d->period_no - t->lazy + 1) == 0)
        t->lazy = 0;
}

static void flush_lazy(vmp_delivery *d, vmp_delivery_thread *t)
{
    flush_lazy_or_keep(d, t, 0);
}

/* An active thread that did not run this round: still once it did not run
 * for quiet_needed rounds in a row.  A thread that wakes now and then (a C
 * thread's sleep loop, a timeout) would otherwise cost a poll of every
 * still thread each time it wakes: each time a poll finds it running, it
 * is kept active twice as long (wake), up to VMP_STILL_AFTER_MAX_NS, and
 * read each round instead.  Its counted repeats become its still span. */
static void settle(vmp_delivery *d, vmp_delivery_thread *t)
{
    if (++t->quiet < t->quiet_needed)
        return;
    /* Wall clock: a Python thread is still only once its sample may be
     * repeated (found idle since it); one that went quiet in a catch-up
     * round, right after its answer, would have stayed still with no
     * samples at all until it ran again. */
    if (d->repeats_on && t->idle_cpu < 0 && !t->not_python && !t->blocks)
        return;
    t->still_from = d->period_no + 1 - t->lazy;
    t->lazy = 0;
    t->visit_at = t->visit_gap = 0; /* (visited at the sweep's next pass) */
    make_still(d, t);
}

static int skipped(const vmp_delivery *d, pid_t tid)
{
    for (int i = 0; i < 2; i++)
        if (d->skip[i] && atomic_load(d->skip[i]) == tid)
            return 1;
    return 0;
}

/* Wall clock with sources: thread tid, born during the run and found
 * now, is paid from `base` on (its clock's first reading: now less the
 * CPU time it used).  Its whole periods from its birth to there (what it
 * waited before a listing found it: a thread that waits at once, or one a
 * loaded machine keeps from a CPU, found late by a sender kept from one
 * too) have no sample and none will come: how many, counted lost once it
 * is known to be Python's (unfound).  Its birth is its /proc stat's
 * starttime, in clock ticks (USER_HZ, 10 ms here) of CLOCK_BOOTTIME: the
 * end of its tick is taken, so none is counted from before it existed,
 * and what it waited within its tick (up to 10 periods at 1 kHz) stays
 * uncounted.  One read of /proc per thread born during the run, none per
 * round. */
static int64_t born_before(const vmp_delivery *d, pid_t tid, int64_t base)
{
    char buf[512];
    long tick = sysconf(_SC_CLK_TCK);
    if (tick <= 0 || vmp_delivery_read_task_file(tid, "stat", buf, sizeof buf) < 0)
        return 0;
    const char *p = strrchr(buf, ')'); /* (the name may hold anything) */
    for (int field = 2; p && field < 22; field++) /* (starttime is field 22; ')' ends field 2) */
        p = strchr(p + 1, ' ');
    if (!p)
        return 0;
    long long ticks = strtoll(p + 1, NULL, 10);
    int64_t boot = clock_ns(CLOCK_BOOTTIME), mono = clock_ns(CLOCK_MONOTONIC);
    if (ticks <= 0 || boot < 0 || mono < 0)
        return 0;
    int64_t born = (int64_t)(ticks + 1) * (1000000000LL / tick) - (boot - mono); /* (its tick's end) */
    if (born < d->start_ns)
        born = d->start_ns; /* (a thread born before the start counts from it) */
    return born < base ? (base - born) / d->period_ns : 0;
}

/* Thread t's unfound periods, once it is known to be Python's (or at its
 * end or the stop: not known not to be). */
static void count_unfound(vmp_delivery *d, vmp_delivery_thread *t)
{
    if (t->unfound > 0 && !t->not_python)
        atomic_fetch_add_explicit(&d->periods_dropped, (uint64_t)t->unfound, memory_order_relaxed);
    t->unfound = 0;
}

/* Returns 0, or -1 when the table could not grow for it or no place was
 * left (header: "Places"). */
static int note_thread(vmp_delivery *d, pid_t tid)
{
    vmp_delivery_thread *t = find(d, tid);
    if (!t) {
        if (d->n_threads == d->cap && grow(d) < 0)
            return -1;
        uint32_t k = place_take(tid);
        if (k == VMP_NO_PLACE)
            return -1;
        t = &d->threads[d->n_threads];
        *t = (vmp_delivery_thread){.tid = tid, .place = k, .state = STILL, .last_cpu = -1, .idle_cpu = -1, .src = -1};
        index_put(d, d->n_threads++);
        if (d->sources) {
            /* Born during the run: all its CPU time counts (the handler
             * pays it).  On the wall clock, the time since it was found
             * less the CPU time it used by then (read first): never a
             * period before it existed.  (From halfway between the last
             * listing and this one, which may be up to VMP_RESCAN_NS
             * apart, a thread started 1 s into a run was paid ~500
             * periods from before its birth, and one started while the
             * sampler thread was kept from a CPU ~85: all with the stack
             * of its first sample, the function it ran by then.)  What it
             * waited before it was found, if anything, has no sample. */
            int64_t base = 0;
            if (!d->cpu_clock && !d->starting) {
                /* (not at the start: every thread there counts from the
                 * start's own clock reading, vmp_delivery_start, set
                 * after this listing; reading each one's CPU clock here
                 * too read 1,000 clocks twice for a pool of 1,000) */
                int64_t cpu = thread_cpu_ns(tid), now = clock_ns(CLOCK_MONOTONIC);
                base = now - (cpu > 0 ? cpu : 0);
                if (!(d->paused && atomic_load_explicit(d->paused, memory_order_relaxed)))
                    t->unfound = born_before(d, tid, base);
            }
            place_count_from(k, tid, base);
        }
        make_active(d, t); /* a thread born during the run: all its CPU time counts */
        d->changed = 1;
    }
    t->seen = 1;
    return 0;
}

/* ---- sources (header: "Per-thread sources") ---------------------------------- */

/* Whether fd still is the event we opened.  The descriptor lives in the
 * program's table: a program that closes descriptors it does not know
 * (os.closerange, a daemon's clean-up) closes ours too, and its next open()
 * may get the same number; closing that would close the program's file. */
static int source_is_ours(int fd, uint64_t id)
{
    uint64_t now;
    return ioctl(fd, PERF_EVENT_IOC_ID, &now) == 0 && now == id;
}

static void source_close(vmp_delivery *d, vmp_delivery_thread *t)
{
    if (t->src < 0)
        return;
    int expected = t->src + 1;
    atomic_compare_exchange_strong(&source_fd[t->place], &expected, 0);
    atomic_store(&open_fds[t->src_pos], 0);
    if (source_is_ours(t->src, t->src_id))
        close(t->src); /* (else the program closed it: the number is not ours) */
    t->src = -1;
    d->n_sources--;
}

void vmp_delivery_source_attr(struct perf_event_attr *a, int64_t period_ns)
{
    memset(a, 0, sizeof *a);
    a->size = sizeof *a;
    a->type = PERF_TYPE_SOFTWARE;
    a->config = PERF_COUNT_SW_TASK_CLOCK;
    a->sample_period = (uint64_t)period_ns;
    a->wakeup_events = 1;
    a->disabled = 1;
    a->exclude_kernel = 1; /* what perf_event_paranoid 2 allows; the clock still counts it */
    a->exclude_hv = 1;
}

/* Opens thread t's source: its task clock, signalling it every period of
 * its CPU time.  0, or -1 with errno. */
static int source_open(vmp_delivery *d, vmp_delivery_thread *t)
{
    int pos = -1;
    for (int i = 0; i < VMP_MAX_SOURCES && pos < 0; i++)
        if (!atomic_load(&open_fds[i]))
            pos = i;
    if (pos < 0) {
        errno = EMFILE;
        return -1;
    }
    struct perf_event_attr a;
    vmp_delivery_source_attr(&a, d->period_ns);
    int fd = (int)syscall(SYS_perf_event_open, &a, t->tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0)
        return -1;
    fd = vmp_fd_out_of_the_way(fd);
    struct f_owner_ex owner = {F_OWNER_TID, t->tid};
    if (ioctl(fd, PERF_EVENT_IOC_ID, &t->src_id) < 0 || fcntl(fd, F_SETFL, O_ASYNC | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETSIG, d->signo) < 0 || fcntl(fd, F_SETOWN_EX, &owner) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    t->src = fd;
    t->src_cpu = t->last_cpu > 0 ? t->last_cpu : 0;
    t->src_pos = pos;
    atomic_store(&open_fds[pos], fd + 1);
    atomic_store(&source_fd[t->place], fd + 1);
    d->n_sources++;
    atomic_fetch_add_explicit(&d->sources_opened, 1, memory_order_relaxed);
    ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
    return 0;
}

/* A source for thread t, the one of a still thread given up if none is
 * left. */
static void source_give(vmp_delivery *d, vmp_delivery_thread *t, int64_t now)
{
    if (t->src >= 0 || now < t->src_retry_at)
        return;
    if (d->n_sources >= (size_t)d->max_sources)
        for (size_t i = 0; i < d->n_threads; i++)
            if (d->threads[i].state == STILL && d->threads[i].src >= 0) {
                source_close(d, &d->threads[i]);
                break;
            }
    if (d->n_sources >= (size_t)d->max_sources || source_open(d, t) < 0)
        t->src_retry_at = now + VMP_SOURCE_RETRY_NS; /* signalled by the sender meanwhile */
}

/* Sources mode: moves thread t's paid mark past its whole periods up to
 * `upto` (its CPU time, or the wall clock's ns), which no sample will pay,
 * and adds them to *count; its last sample is no longer repeated, unless a
 * new one came meanwhile.  (Whether that one was cut, cut_cpu, stays: only
 * a new sample changes it.) */
static void skip_periods(vmp_delivery *d, vmp_delivery_thread *t, int64_t upto, _Atomic uint64_t *count)
{
    size_t k = t->place;
    if (atomic_load(&base_tid[k]) != t->tid)
        return;
    int64_t base = atomic_load(&base_cpu[k]), n = (upto - base) / d->period_ns;
    if (n > 0 && atomic_compare_exchange_strong(&base_cpu[k], &base, base + n * d->period_ns))
        atomic_fetch_add_explicit(count, (uint64_t)n, memory_order_relaxed);
    int64_t at = atomic_load(&rep_cpu[k]);
    if (at >= 0)
        atomic_compare_exchange_strong(&rep_cpu[k], &at, -1); /* (unless a new sample came) */
}

/* Sources mode: thread t blocks the signal (both readings found it so):
 * its periods up to `upto` (CPU clock: its CPU time; wall clock: the time)
 * are not sampled and counted (periods_blocked), and its mark moves past
 * them, so that the handler, once it unblocks, pays only what came after
 * (on the wall clock it paid the whole block with one sample where it
 * unblocked; on the CPU clock it dropped what passed its cap), and its last
 * sample is not repeated for them. */
static void count_blocked(vmp_delivery *d, vmp_delivery_thread *t, int64_t upto)
{
    skip_periods(d, t, upto, &d->periods_blocked);
}

/* Per period, at the stop: thread t's whole periods after the schedule's
 * last round, up to the stop (`now`), added to *count: its wall time, or
 * its CPU time (what it used since the last reading of its clock, with
 * what no round turned into periods owed yet, its credit).  A thread known
 * to block the signal has them counted blocked, as count_blocked counts a
 * blocker's with sources; on the CPU clock any other Python thread's are
 * counted lost (periods_dropped): no sample will come for them.  A sender
 * kept from a CPU at the end left them out (the schedule's periods end at
 * its last round): a thread that computed 20 ms while the sender napped
 * 100 ms before its stop had them counted nowhere. */
static void count_after_last_round(vmp_delivery *d, const vmp_delivery_thread *t, int64_t now, _Atomic uint64_t *count)
{
    int64_t cpu = d->cpu_clock ? thread_cpu_ns(t->tid) : -1;
    int64_t more = !d->cpu_clock ? now - (d->start_ns + d->period_no * d->period_ns)
                   : cpu >= 0 ? cpu - t->last_cpu + t->credit : t->credit;
    if (more >= d->period_ns)
        atomic_fetch_add_explicit(count, (uint64_t)(more / d->period_ns), memory_order_relaxed);
}

/* Per period: the periods the backlog cap took from thread t before its
 * next signal (deliver) are counted once that signal's fate is known:
 * dropped when it was handled, or the thread ended or the run stopped
 * first; not sampled (periods_blocked) when the thread was found to block
 * it.  (Counted dropped at once, a thread that blocked the signal and
 * whose first round came 200 ms late had 208 of its 589 periods counted
 * as lost samples, though none could have been taken.) */
static void count_capped(vmp_delivery *d, vmp_delivery_thread *t, int blocked)
{
    if (t->capped > 0)
        atomic_fetch_add_explicit(blocked ? &d->periods_blocked : &d->periods_dropped, (uint64_t)t->capped,
                                  memory_order_relaxed);
    t->capped = 0;
}

/* Per period: thread t ended or the run stops with the period of the
 * signal last sent to it not taken by its handler (unpaid_signal: pending,
 * never to be handled, or handled after the stop, paying nothing).  That
 * period (deliver counts it paid when it sends) has no sample: counted
 * lost, or not sampled for a thread found to block the signal (it was
 * counted nowhere: 299 of a 300-period run), or not at all for a thread
 * not Python's (it has no periods); with `count` 0 (the run is paused:
 * its periods are not owed) only taken. */
static int known_blocking(const vmp_delivery_thread *t);

static void count_unpaid_signal(vmp_delivery *d, vmp_delivery_thread *t, int count)
{
    if (!atomic_exchange_explicit(&unpaid_signal[t->place], 0, memory_order_acq_rel) || !count || t->not_python)
        return;
    atomic_fetch_add_explicit(known_blocking(t) ? &d->periods_blocked : &d->periods_dropped, 1, memory_order_relaxed);
}

/* Wall clock with sources: thread t waited after a cut sample, unprobed
 * (cut_held), and no sample will pay those periods up to `upto` (it ran
 * again, ended, or the run pauses or stops): counted lost, not repeated
 * (header: "Cut samples"). */
static void count_cut(vmp_delivery *d, vmp_delivery_thread *t, int64_t upto)
{
    skip_periods(d, t, upto, &d->periods_cut);
    t->held = 0;
}

/* Whether thread t is known to block the signal (read so twice). */
static int known_blocking(const vmp_delivery_thread *t)
{
    return t->blocks && t->checks == 2;
}

/* After a listing or a read of the births: the most threads one found no
 * room for (missed), and the most threads the table held, as the run's
 * figures (threads_missed, threads_max). */
static void note_table_counts(vmp_delivery *d, uint64_t missed)
{
    if (missed > atomic_load_explicit(&d->threads_missed, memory_order_relaxed))
        atomic_store_explicit(&d->threads_missed, missed, memory_order_relaxed);
    if (d->n_threads > atomic_load_explicit(&d->threads_max, memory_order_relaxed))
        atomic_store_explicit(&d->threads_max, d->n_threads, memory_order_relaxed);
}

/* The next thread id of a getdents64 batch of /proc/self/task (got bytes
 * of buf) from *off on, moving *off past it; 0 at the batch's end (the
 * batch's "." and ".." are not threads). */
static pid_t next_task(const char *buf, long got, long *off)
{
    while (*off < got) {
        const struct dirent64 *e = (const struct dirent64 *)(buf + *off);
        *off += e->d_reclen;
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
            return (pid_t)atoi(e->d_name);
    }
    return 0;
}

/* Refreshes the table from the listing of /proc/self/task (read again from
 * its start: no open per scan), keeping what is known about the threads
 * still there. */
static void hand_over_repeats(vmp_delivery *d, vmp_delivery_thread *t, int64_t upto);
static int wall_pay(vmp_delivery *d, vmp_delivery_thread *t, int64_t upto, int keep);
static void wall_pay_waited(vmp_delivery *d, vmp_delivery_thread *t, int64_t now, int64_t cpu, int any);
static void read_late_answer(vmp_delivery *d, vmp_delivery_thread *t);

/* Per period: the periods a thread still owes that no sample will pay (it
 * ended, or the run stops) are counted lost; on the CPU clock with the
 * whole periods of CPU time up to its last reading that no round turned
 * into periods owed (its credit: a thread found off its CPU keeps there
 * what it owes, for a round that finds it running). */
static void drop_owed(vmp_delivery *d, vmp_delivery_thread *t)
{
    int64_t n = t->owed > 0 ? t->owed : 0;
    if (d->cpu_clock && t->credit >= d->period_ns) {
        n += t->credit / d->period_ns;
        t->credit %= d->period_ns;
    }
    if (n > 0)
        atomic_fetch_add_explicit(&d->periods_dropped, (uint64_t)n, memory_order_relaxed);
    t->owed = 0;
}

/* With sources, at a thread's end or the stop: thread t's whole periods
 * from its paid mark up to `upto` (its CPU time, or the wall clock's ns),
 * which no sample paid and none will, are counted lost (periods_dropped),
 * but for the one its event was counting then: less than a period since
 * it last fired, which the mark, moved by the handler's rounding, may
 * trail by up to half a period (so, as the handler would pay them now less
 * that one).  (A thread whose event fires as it should has none; one that
 * spends its CPU time inside system calls, where its event sends nothing
 * (exclude_kernel), or blocks the signal, had up to all its periods since
 * its last sample counted nowhere.) */
static void drop_unpaid(vmp_delivery *d, vmp_delivery_thread *t, int64_t upto)
{
    skip_periods(d, t, upto - d->period_ns / 2, &d->periods_dropped);
}

static void forget_unseen(vmp_delivery *d, uint64_t missed);

/* The threads listed last (d->tail): tid is listed after them. */
static void tail_add(vmp_delivery *d, pid_t tid)
{
    if (d->n_tail == VMP_TAIL_KEPT) {
        memmove(d->tail, d->tail + 1, (VMP_TAIL_KEPT - 1) * sizeof *d->tail);
        d->n_tail--;
    }
    d->tail[d->n_tail++] = tid;
}

static void scan_threads(vmp_delivery *d)
{
    char buf[8192];
    if (d->task_fd < 0 || lseek(d->task_fd, 0, SEEK_SET) < 0)
        return;
    atomic_fetch_add_explicit(&d->scans, 1, memory_order_relaxed);
    for (size_t i = 0; i < d->n_threads; i++)
        d->threads[i].seen = 0;
    uint64_t missed = 0;
    int64_t listed = 0;
    d->listed = -1;
    d->n_tail = 0;
    for (;;) {
        long got = syscall(SYS_getdents64, d->task_fd, buf, sizeof buf);
        if (got < 0) {
            for (size_t i = 0; i < d->n_threads; i++)
                d->threads[i].seen = 1; /* keep what we had */
            return;
        }
        if (got == 0)
            break;
        pid_t tid;
        for (long off = 0; (tid = next_task(buf, got, &off)) != 0;) {
            listed++;
            tail_add(d, tid);
            if (!skipped(d, tid) && note_thread(d, tid) < 0)
                missed++;
        }
    }
    d->listed = listed;
    forget_unseen(d, missed);
}

/* After a listing (or read_deaths): the threads of the table it did not
 * see ended; what they still owe is settled, their places given back. */
static void forget_unseen(vmp_delivery *d, uint64_t missed)
{
    size_t kept = 0;
    for (size_t i = 0; i < d->n_threads; i++) {
        if (d->threads[i].seen) {
            d->threads[kept++] = d->threads[i];
        } else {
            /* ended: the repeats it was owed until the last round (it was
             * idle then) are written; its place is given back */
            vmp_delivery_thread *t = &d->threads[i];
            if (!d->was_paused)
                read_late_answer(d, t);
            count_capped(d, t, 0);
            count_unpaid_signal(d, t, !d->was_paused);
            count_unfound(d, t);
            if (d->sources && known_blocking(t)) {
                if (!d->was_paused)
                    count_blocked(d, t, d->cpu_clock ? t->last_cpu : d->last_round);
            } else if (d->sources && !d->cpu_clock) {
                if (d->was_paused)
                    ;
                else if (t->held || atomic_load(&cut_cpu[t->place]) >= 0)
                    count_cut(d, t, d->last_round);
                else {
                    wall_pay_waited(d, t, d->last_round, t->last_cpu, t->idle_cpu >= 0);
                    /* What no repeat paid, up to the last round that read
                     * it alive (it ended while not idle: running, inside
                     * system calls where its event sends nothing, or with
                     * a signal blocked or pending; or it never had a
                     * sample): no sample will.  When it ended after that
                     * round is not known (less than a round later). */
                    if (!t->not_python)
                        drop_unpaid(d, t, t->alive_at);
                }
            } else if (d->sources) {
                /* CPU clock: its CPU time up to its last reading, unpaid
                 * (what it used after, before its end, is not known: its
                 * clock went with it) */
                if (!d->was_paused && !t->not_python)
                    drop_unpaid(d, t, t->last_cpu);
            } else if (t->state == STILL && d->repeats_on)
                hand_over_repeats(d, t, d->period_no);
            else if (t->lazy)
                flush_lazy(d, t);
            if (!d->sources && !d->was_paused && !t->not_python && !known_blocking(t)) {
                /* Per period: what it still owed (a signal pending when it
                 * ended, which its exit discarded; the periods a late
                 * answer's signal waited, refused as repeats because it
                 * ran) no sample paid and none will: counted lost, as the
                 * stop counts a live thread's.  They were counted nowhere:
                 * a thread that blocked the signal for its last 15 ms
                 * left those periods out of every figure. */
                drop_owed(d, t);
            }
            size_t k = t->place;
            source_close(d, t);
            atomic_store(&base_tid[k], 0);
            place_give_back(t->place);
        }
    }
    if (kept != d->n_threads) {
        d->n_threads = kept;
        reindex(d);
        d->changed = 1;
    }
    note_table_counts(d, missed);
}

/* Reads thread t's CPU clock: what it used since the last reading (a thread
 * read for the first time: all its CPU time), or -1 when it is gone.  What
 * the threads read used is taken off the unexplained CPU time. */
static int64_t observe(vmp_delivery *d, vmp_delivery_thread *t)
{
    int64_t cpu = thread_cpu_ns(t->tid);
    atomic_fetch_add_explicit(&d->clock_reads, 1, memory_order_relaxed);
    if (cpu < 0) {
        d->rescan = 1;
        return t->delta = -1;
    }
    int64_t delta = t->last_cpu >= 0 ? cpu - t->last_cpu : cpu;
    t->alive_at = d->last_round; /* (it was alive at the reading, which comes after the round began) */
    d->unexplained -= delta;
    t->last_cpu = cpu;
    if (delta) {
        t->quiet = 0;
        t->ran_period = d->period_no;
    }
    if (d->cpu_clock) {
        t->credit += delta;
        while (t->credit >= d->period_ns) {
            t->owed++;
            t->credit -= d->period_ns;
        }
    }
    return t->delta = delta;
}

/* The CPU time of the sending thread and the skipped ones (the sending
 * thread may be one of them: counted once), which the process's clock
 * counts too. */
static void observe_own(vmp_delivery *d)
{
    int64_t self = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    if (self >= 0) {
        d->unexplained -= self - d->self_cpu;
        d->self_cpu = self;
    }
    pid_t me = vmp_delivery_this_tid();
    for (int i = 0; i < 2; i++) {
        pid_t tid = d->skip[i] ? atomic_load(d->skip[i]) : 0;
        if (tid == me)
            tid = 0;
        int64_t cpu = tid ? thread_cpu_ns(tid) : -1;
        if (cpu >= 0 && d->skip_cpu[i] >= 0 && tid == d->skip_tid[i])
            d->unexplained -= cpu - d->skip_cpu[i];
        d->skip_tid[i] = tid;
        d->skip_cpu[i] = cpu;
    }
}

/* Wall clock: hands thread t's counted repeats over, up to period `upto`
 * included. */
static int hand_over_or_keep(vmp_delivery *d, vmp_delivery_thread *t, int64_t upto, int keep)
{
    int64_t n = upto - t->still_from + 1;
    if (n > 0 && t->blocks) {
        /* (it blocks the signal: not sampled, counted) */
        atomic_fetch_add_explicit(&d->periods_blocked, (uint64_t)n, memory_order_relaxed);
        t->still_from = upto + 1;
        return 0;
    }
    if (n <= 0 || t->idle_cpu < 0 || !d->repeat) {
        t->still_from = upto + 1;
        return 0;
    }
    if (give_repeats(d, t->tid, n, keep, t->still_from) < 0)
        return -1;
    t->still_from = upto + 1;
    return 0;
}

static void hand_over_repeats(vmp_delivery *d, vmp_delivery_thread *t, int64_t upto)
{
    hand_over_or_keep(d, t, upto, 0);
}

/* Wall clock with sources: hands over the repeats of thread t's last
 * sample for the periods not paid up to `upto` (CLOCK_MONOTONIC ns).  The
 * writer's place is claimed before the paid mark moves (in the `repeat`
 * callback): a handler that paid first leaves the claimed slot empty, and
 * one that pays after claims its slots after it, so the writer repeats the
 * sample these periods belong to.  With `keep`, -1 when the ring is full
 * (a later visit tries again); else what found no room is lost. */
static int wall_pay(vmp_delivery *d, vmp_delivery_thread *t, int64_t upto, int keep)
{
    size_t k = t->place;
    if (atomic_load(&base_tid[k]) != t->tid)
        return 0;
    if (atomic_load(&cut_cpu[k]) >= 0) {
        /* its last sample was cut: never repeated (an idle thread in
         * pause(), which no probe may end): counted lost */
        count_cut(d, t, upto);
        return 0;
    }
    int64_t base = atomic_load(&base_cpu[k]), n = (upto - base) / d->period_ns;
    if (n <= 0)
        return 0;
    int r = repeat_or_wait(d, t->tid, n, &base_cpu[k], base, base + n * d->period_ns);
    if (r == 0) {
        atomic_fetch_add_explicit(&d->repeated, (uint64_t)n, memory_order_relaxed);
    } else if (r < 0) {
        if (keep)
            return -1;
        atomic_fetch_add_explicit(&d->repeats_lost, (uint64_t)n, memory_order_relaxed);
        atomic_compare_exchange_strong(&base_cpu[k], &base, base + n * d->period_ns);
    }
    return 0;
}

/* Wall clock with sources: a thread whose last sample found it inside a
 * system call, and whose CPU clock read `cpu` at `now`, has the time since
 * that it did not run repeat that sample, as its next sample would have
 * (wall_owed): when it ends, when it is found running again.  With
 * `any`, whatever the last sample: at stop, where no next one will take
 * that time (a thread a loaded machine keeps from a CPU), and for a thread
 * the sender found idle (in pause(): wall_waits_for_a_signal). */
static void wall_pay_waited(vmp_delivery *d, vmp_delivery_thread *t, int64_t now, int64_t cpu, int any)
{
    size_t k = t->place;
    int64_t at = atomic_load(&rep_cpu[k]), ran = cpu - at;
    if (at >= 0 && (any || atomic_load(&rep_in_call[k]))) /* (a clock read before the sample, or none: not known to have run) */
        wall_pay(d, t, ran > VMP_IDLE_SLACK_NS ? now - ran : now, 0);
}

/* Wall clock with sources: whether thread t (tid slot k) has not run since
 * its last sample, which found it inside a system call (the rule of
 * idle_since_sample). */
static int wall_idle(vmp_delivery_thread *t, size_t k)
{
    int64_t at = atomic_load_explicit(&rep_cpu[k], memory_order_acquire), now = t->last_cpu;
    if (atomic_load(&base_tid[k]) != t->tid || at < 0 || !atomic_load(&rep_in_call[k]) || now < at ||
        now - at > VMP_IDLE_SLACK_NS ||
        (t->idle_cpu >= 0 && now != t->idle_cpu))
        return 0;
    t->idle_cpu = now;
    return 1;
}

/* Wall clock with sources: whether thread t (place k), whose clock this
 * round read, ran since its last sample, which found it inside a system
 * call: it used more than VMP_IDLE_SLACK_NS since, or any time at all
 * since a round found it idle there (only a wake-up makes it run); *ran:
 * the CPU time it used since it was last known there, *at: that sample's
 * clock. */
static int wall_left_call(const vmp_delivery_thread *t, size_t k, int64_t *at, int64_t *ran)
{
    *at = atomic_load_explicit(&rep_cpu[k], memory_order_acquire);
    if (*at < 0 || !atomic_load_explicit(&rep_in_call[k], memory_order_acquire) ||
        atomic_load_explicit(&rep_cpu[k], memory_order_acquire) != *at) /* (its flag is that sample's) */
        return 0;
    int found_idle = t->idle_cpu >= *at; /* (by wall_idle, after that sample) */
    *ran = t->last_cpu - (found_idle ? t->idle_cpu : *at);
    return *ran > (found_idle ? 0 : VMP_IDLE_SLACK_NS);
}

/* Wall clock with sources: thread t (place k) is probed at `now`, and left
 * the call of its last sample (wall_left_call), by now less the CPU time
 * `ran` it used since, at the latest.  The periods up to then repeat that
 * sample (handed over here, as wake() does for a still thread); the later
 * ones are the probe's, whose sample shows where the thread waits now.
 * Left to the probe's handler (wall_owed), they were split by the thread's
 * CPU time alone, and the time it waited for a CPU (run-queue waits are
 * off-CPU time too) inside what it ran after the call repeated the call:
 * a thread computing 3 ms and sleeping 7 ms beside busy loops showed 10-20
 * points less computing than it did.  (Only at a probe: a thread left to
 * its own event may block again before it fires, and the split by CPU
 * time is what gives that wait to a call.  What it waited before the
 * round goes to its call: the latest bound, so that a quiet machine's
 * split stays the CPU clock's.) */
static void wall_pay_left(vmp_delivery *d, vmp_delivery_thread *t, size_t k, int64_t now, int64_t at, int64_t ran)
{
    wall_pay(d, t, now - ran, 0);
    atomic_compare_exchange_strong(&rep_cpu[k], &at, -1); /* (unless a new sample came) */
}

/* Wall clock with sources: whether thread t (place k) is not to be probed
 * until the rules move (header: "Cut samples"): its last sample was cut,
 * it has not run since (its clock, read this round, within
 * VMP_CUT_SLACK_NS of that sample's), and the rules' generation is the
 * one that sample's walk read. */
static int cut_held(const vmp_delivery *d, const vmp_delivery_thread *t, size_t k)
{
    int64_t at = atomic_load_explicit(&cut_cpu[k], memory_order_acquire), now = t->last_cpu;
    if (!d->rules_generation || at < 0 || now < at || now - at > VMP_CUT_SLACK_NS)
        return 0;
    return atomic_load_explicit(&cut_gen[k], memory_order_acquire) == d->rules_generation();
}

/* Whether the last signal the sender sent thread slot k is still pending.
 * Its handler counts every signal of ours it handles, its source's too (a
 * signal sent while the source's is pending merges with it): a count that
 * went past ours is taken as ours all handled. */
static int signal_pending(size_t k)
{
    uint32_t h = atomic_load_explicit(&handled[k], memory_order_acquire);
    if ((int32_t)(sent_to[k] - h) > 0)
        return 1;
    sent_to[k] = h;
    return 0;
}

/* A still thread found running in this round, which stood for `periods`
 * periods: it woke somewhere in them, so they are owed to its next sample,
 * and the periods before them repeat its old one (header). */
static void wake(vmp_delivery *d, vmp_delivery_thread *t, int64_t periods)
{
    int64_t most = VMP_STILL_AFTER_MAX_NS / (d->period_ns * d->round_periods);
    t->quiet_needed = t->quiet_needed ? 2 * t->quiet_needed : 2;
    if (t->quiet_needed > most)
        t->quiet_needed = most > 1 ? (uint32_t)most : 1;
    if (!d->cpu_clock && d->sources) {
        /* As below: the periods before this round repeat its last sample,
         * the round's go to its next one (whose handler must not take them
         * for the old wait's: the thread may wait elsewhere by then). */
        size_t k = t->place;
        if (t->idle_cpu >= 0)
            wall_pay(d, t, d->last_round - (periods > 0 ? periods : 1) * d->period_ns, 0);
        int64_t at = atomic_load(&rep_cpu[k]);
        if (at >= 0)
            atomic_compare_exchange_strong(&rep_cpu[k], &at, -1); /* (unless a new sample came) */
        t->idle_cpu = -1;
    } else if (!d->cpu_clock) {
        int64_t p = periods > 0 ? periods : 1; /* (a catch-up round: the last period's) */
        if (t->not_python && !t->blocks && d->period_no - p >= t->still_from)
            t->unasked += d->period_no - p - t->still_from + 1; /* (its periods while still: deliver) */
        hand_over_repeats(d, t, d->period_no - p);
        t->still_from = d->period_no + 1;
        t->owed = p;
    }
    t->delta = 1; /* not still this round */
    t->cold = 0;
    make_active(d, t);
}

/* A thread known not to be Python's (its answer confirmed, or known so at
 * the start), asked again only after its next stretch of CPU time: a round
 * that finds it running has nothing to do for it at once. */
static int settled_not_python(const vmp_delivery_thread *t)
{
    return t->not_python && t->confirmed && !t->recheck_at && !t->awaiting;
}

/* Reads every still thread; those that ran are active again.  A poll costs
 * a clock reading per still thread: each thread it found is kept active
 * (read each round) for at least as many rounds as the poll read threads
 * per thread found, up to VMP_STILL_AFTER_MAX_NS, so that keeping it costs
 * no more than the poll did.  (Doubling from 2 rounds alone, 16 C threads
 * sleeping 100 ms at a time beside 1,000 idle ones made 8 polls, 8,000
 * readings, in the run's first second before they were kept.)
 *
 * The cold ones (handed over idle in a first sample at the start and not
 * found running since: a pool's waiting crowd) are read only when the
 * others leave over VMP_WAKE_NS unexplained; else what is left stays
 * counted, so that their time still makes a poll of them once it adds up
 * to VMP_WAKE_NS, as any still thread's did.  (The wall-clock pool bench's
 * 16 C threads, each waking every 100 ms, made 3-5 polls a run, and each
 * read the 1,000 waiting threads too: a third of the sampler thread's
 * clock readings.) */
static void poll_still(vmp_delivery *d, int64_t periods)
{
    atomic_fetch_add_explicit(&d->polls, 1, memory_order_relaxed);
    size_t was_active = d->n_active, still = 0, cold_left = 0;
    for (int cold = 0; cold < 2; cold++) {
        if (cold) {
            if (!cold_left || d->unexplained <= VMP_WAKE_NS)
                break; /* (none, or left for later) */
            cold_left = 0;
            atomic_fetch_add_explicit(&d->cold_polls, 1, memory_order_relaxed);
        }
        for (size_t i = 0; i < d->n_threads; i++) {
            vmp_delivery_thread *t = &d->threads[i];
            if (t->state != STILL || t->cold != cold) {
                cold_left += t->state == STILL && !cold;
                continue;
            }
            still++;
            if (observe(d, t) != 0) {
                wake(d, t, periods);
                if (!settled_not_python(t))
                    d->changed = 1;
            }
        }
    }
    if (d->n_active > was_active) { /* (wake() put those found at the end of the active list) */
        int64_t hold = (int64_t)(still / (d->n_active - was_active));
        int64_t most = VMP_STILL_AFTER_MAX_NS / (d->period_ns * d->round_periods);
        if (hold > most)
            hold = most;
        for (size_t i = was_active; i < d->n_active; i++) {
            vmp_delivery_thread *t = &d->threads[d->active[i]];
            if (t->quiet_needed < hold)
                t->quiet_needed = (uint32_t)hold;
        }
    }
    /* Still unexplained: threads not in the table, born and gone between
     * two listings, or not listed yet.  No listing for that: it finds only
     * the second kind, whose birth changed the count, which the next round
     * reads (maybe_scan), unless one in the table ended meanwhile, whose
     * next clock reading fails and asks for the listing (observe: the
     * still ones were read just now, the active ones are read each round:
     * a thread born as an active one ended after its reading this round is
     * listed a round later than before).  Listing on any time left
     * unexplained, runs with 1,000 waiting threads made 0-3 listings of
     * ~1-2 ms each that found nothing.  (Cold threads left unread: what
     * is left, up to VMP_WAKE_NS, stays; above.) */
    d->unexplained = !cold_left || d->unexplained < 0 ? 0 : d->unexplained;
}

/* CPU time left unexplained over VMP_WAKE_NS: before a poll reads every
 * still thread, the threads that ran this round are read again, then the
 * sending thread's own and the skipped ones, then the process's clock, and
 * what they used since is taken off.  Why: the process's clock, with its
 * timer armed, is a sum the kernel adds a running thread's time to when it
 * accounts it (a reading of that thread's clock, a tick, a switch), so a
 * thread that ran on between its reading and the process's, across a tick,
 * shows as unexplained time (one kept from a CPU until its reading, then
 * run while the sending thread was, too).  Microseconds apart on a quiet machine; but
 * a loaded machine that keeps the sending thread from a CPU between the
 * two readings made it milliseconds: 1-5 polls a run of the wall-clock
 * pool bench at load 6-16 found nothing, 1,000 readings each (and the
 * next round's negative skew, cut at -VMP_WAKE_NS, then hid up to
 * 2 x VMP_WAKE_NS of still threads' time).  A still thread's time, which
 * the poll is for, is in both process readings and in no thread's: it
 * stays. */
static void explain_again(vmp_delivery *d)
{
    for (size_t i = 0; i < d->n_active; i++) {
        vmp_delivery_thread *t = &d->threads[d->active[i]];
        int64_t before = t->delta;
        if (before < 0)
            continue; /* (gone) */
        if (observe(d, t) >= 0)
            t->delta += before; /* (the round's: both readings') */
    }
    observe_own(d);
    int64_t process = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    d->unexplained += process - d->process_cpu;
    d->process_cpu = process;
}

/* Wall clock: a visit found thread t still and handed its repeats over:
 * the next one comes twice as long after (VMP_REPEAT_FLUSH_NS at first), up
 * to VMP_VISIT_MAX_NS.  (Due half a sweep early: the sweep passes each
 * thread every VMP_REPEAT_FLUSH_NS, give or take a round, so the intervals
 * are 250 ms, 500 ms, 1 s, 1 s, ...) */
static void visit_later(vmp_delivery *d, vmp_delivery_thread *t)
{
    t->visit_gap = !t->visit_gap ? VMP_REPEAT_FLUSH_NS : 2 * t->visit_gap;
    if (t->visit_gap > VMP_VISIT_MAX_NS)
        t->visit_gap = VMP_VISIT_MAX_NS;
    t->visit_at = d->last_round + t->visit_gap - VMP_REPEAT_FLUSH_NS / 2;
}

/* Wall clock: the sweep passes the still threads in turn, each once per
 * VMP_REPEAT_FLUSH_NS, and visits those whose visit is due (visit_later):
 * one whose clock did not move has its repeats handed over up to now (the
 * writer writes them in one go); one that ran (for less than VMP_WAKE_NS,
 * or the round's poll would have found it) is woken.  A pass that visits
 * nobody reads no clock: the cost of the sweep per second is what the
 * visits cost, about one clock reading per VMP_VISIT_MAX_NS per thread long
 * idle, instead of one per VMP_REPEAT_FLUSH_NS (1,000 waiting threads: 1,000
 * readings and repeats handed over a second instead of 4,000). */
static void visit_still(vmp_delivery *d, int64_t periods)
{
    if (!d->n_threads || !d->repeats_on || !periods)
        return;
    /* (the fraction of a visit carried over: at 10 kHz a visit every round
     * would read a few threads' clocks a thousand times a second each) */
    d->visit_credit += (int64_t)d->n_threads * periods * d->period_ns;
    size_t visits = (size_t)(d->visit_credit / VMP_REPEAT_FLUSH_NS);
    d->visit_credit %= VMP_REPEAT_FLUSH_NS;
    if (visits > d->n_threads)
        visits = d->n_threads;
    for (size_t v = 0; v < visits; v++) {
        if (d->sweep >= d->n_threads)
            d->sweep = 0;
        vmp_delivery_thread *t = &d->threads[d->sweep++];
        if (t->state == ACTIVE && t->lazy > 0)
            flush_lazy_or_keep(d, t, 1);
        if (t->state != STILL || t->not_python || t->idle_cpu < 0 || d->last_round < t->visit_at)
            continue;
        atomic_fetch_add_explicit(&d->visits, 1, memory_order_relaxed);
        if (observe(d, t) != 0)
            wake(d, t, periods);
        else if ((d->sources ? wall_pay(d, t, d->last_round, 1) : hand_over_or_keep(d, t, d->period_no, 1)) == 0)
            visit_later(d, t); /* (the ring was full: the next pass tries again) */
    }
}

/* Whether thread tid (place k) blocks signal signo and has it pending (its
 * SigBlk and SigPnd in /proc), outside our handler: inside it the signal is
 * blocked too, and one sent or fired meanwhile is pending (`inside`). */
static int blocks_signal(pid_t tid, size_t k, int signo, int *runnable)
{
    char text[4096];
    *runnable = 0;
    if (atomic_load_explicit(&inside[k], memory_order_acquire) ||
        vmp_delivery_read_task_file(tid, "status", text, sizeof text) < 0)
        return 0;
    const char *pnd = strstr(text, "\nSigPnd:"), *blk = strstr(text, "\nSigBlk:");
    const char *state = strstr(text, "\nState:\t");
    if (!pnd || !blk)
        return 0;
    *runnable = state && state[8] == 'R';
    unsigned long long pending = strtoull(pnd + 8, NULL, 16), blocked = strtoull(blk + 8, NULL, 16);
    /* (read after the mask: inside now is inside then, or just left) */
    return ((blocked & pending) >> (signo - 1)) & 1 && !atomic_load_explicit(&inside[k], memory_order_acquire);
}

/* The next reading of thread t's mask (place k), its signal pending since
 * t->pending_since: the first VMP_BLOCKED_CHECK_NS after, the second as
 * long again; known_blocking(t) once both found it blocking.  Both must be
 * looks at a thread that kept the signal blocked while it ran.  A loaded
 * machine keeps a thread from a CPU for tens of ms also in the handler's
 * few instructions that `inside` cannot cover (from the kernel's setting
 * up the signal frame, which blocks the signal, to vmp_delivery_entered,
 * and from vmp_delivery_left to sigreturn), with the next signal pending
 * (the sender's, once it read the last one handled, or its source's):
 * two readings there found the same stopped instant twice, and the thread
 * was taken for a blocker (a second "thread blocking the signal" in 2 of 8
 * runs of test_sampler_threads' blocker at load 12-31; its event closed,
 * its periods counted blocked, not sampled, until its handler ran).  So
 * the second counts only if, since before the first, the thread handled
 * none of our signals and, when it is runnable (not asleep), ran
 * VMP_BLOCKED_RAN_NS of CPU time at least: a thread in those instructions
 * handles the pending signal a few us after it runs (when the readings
 * asked only for its clock to move, one read just as it ran again was
 * taken for a blocker).  Else it is read again from the start.  A real
 * blocker runs (its clock moves) or sleeps (state S) and is found then;
 * one kept from a CPU is found once it ran, its periods counted from its
 * mark all the same. */
static void read_mask(vmp_delivery *d, vmp_delivery_thread *t, size_t k, int64_t now)
{
    if (t->checks >= 2 || now - t->pending_since < (t->checks + 1) * VMP_BLOCKED_CHECK_NS)
        return;
    if (t->checks == 0) {
        t->check_handled = atomic_load_explicit(&handled[k], memory_order_acquire);
        t->check_cpu = thread_cpu_ns(t->tid);
    }
    t->checks++;
    int runnable;
    t->blocks = blocks_signal(t->tid, k, d->signo, &runnable);
    if (t->checks < 2 || !t->blocks)
        return;
    int64_t cpu = thread_cpu_ns(t->tid);
    if (atomic_load_explicit(&handled[k], memory_order_acquire) != t->check_handled ||
        (runnable && cpu >= 0 && t->check_cpu >= 0 && cpu - t->check_cpu < VMP_BLOCKED_RAN_NS)) {
        atomic_fetch_add_explicit(&d->blocked_unsure, 1, memory_order_relaxed);
        t->blocks = t->checks = 0;
        t->pending_since = now;
    }
}

/* Wall clock: whether thread t (tid slot k, no signal pending) has not run
 * since its last sample, by the rule in the header. */
static int idle_since_sample(vmp_delivery_thread *t, size_t k)
{
    pid_t who = atomic_load_explicit(&sampled_tid[k], memory_order_acquire);
    int64_t at = atomic_load_explicit(&sampled_cpu[k], memory_order_acquire);
    int in_call = atomic_load_explicit(&sampled_in_call[k], memory_order_acquire);
    if (who != t->tid || at < 0 || !in_call || atomic_load_explicit(&sampled_tid[k], memory_order_acquire) != who)
        return 0;
    int64_t now = t->last_cpu;
    if (now < at || now - at > VMP_IDLE_SLACK_NS || (t->idle_cpu >= 0 && now != t->idle_cpu))
        return 0;
    t->idle_cpu = now;
    return 1;
}

static void note_not_python(vmp_delivery *d, vmp_delivery_thread *t, int64_t now);

/* Wall clock, per period: of the periods thread t owes (the latest ones, up
 * to d->period_no), how many up to period `upto` passed after t->signal_ran,
 * the first of them in *first.  Only those may have waited for its last
 * signal: in the periods before, up to the latest round whose reading found
 * that it had run, the thread ran, and its stack then is not the one its
 * signal found.  (Before, every period owed beyond the reading round's
 * counted as waited: a running thread's backlog after a late round, owed
 * before its signal was even sent and answered within microseconds, was
 * written as that one sample's repeats, as if it had waited there: 6
 * repeats and 3 signals for 9 periods in the test of it, not 9 signals.  A
 * thread that did not run in the round that signalled it still keeps what
 * it owes from before for that signal's sample, as the header says.) */
static int64_t waited_for_signal(const vmp_delivery *d, const vmp_delivery_thread *t, int64_t upto, int64_t *first)
{
    int64_t from = d->period_no - t->owed;
    if (from < t->signal_ran)
        from = t->signal_ran;
    *first = from + 1;
    return upto - from;
}

/* Wall clock, per period: a thread's CPU clock when its handler for its
 * last answer began (place k), or else `at`, the one read after its
 * sample. */
static int64_t answer_entry(size_t k, int64_t at)
{
    int64_t entry = atomic_load_explicit(&sampled_entry_cpu[k], memory_order_acquire);
    return entry >= 0 ? entry : at;
}

/* Reads the answer to the last signal: whether the thread has a Python
 * thread state. */
static void read_answer(vmp_delivery *d, vmp_delivery_thread *t, size_t k, int64_t now)
{
    t->awaiting = 0;
    int64_t at = atomic_load_explicit(&sampled_cpu[k], memory_order_acquire);
    int64_t entry = answer_entry(k, at);
    if (atomic_load_explicit(&sampled_tid[k], memory_order_acquire) != t->tid)
        at = NO_SAMPLE;
    if (at != NOT_PYTHON) {
        t->not_python = t->confirmed = 0;
        t->probe_gap = 0;
        /* Wall clock: the periods that passed while the signal waited for
         * a thread that did not run (a loaded machine left it waiting for a
         * CPU) had the stack the sample found: they are its repeats, and so
         * are those until this answer was read (the thread's stack then is
         * not known either way; they are counted) - unless the thread ran
         * since its sample: it handled the signal somewhere in this round's
         * periods (the round before found it still pending, or sent it),
         * and its stack after is not that sample's, so this round's periods
         * are its next sample's, as a still thread's that wakes (wake()).
         * (Before, a mover whose signal waited 140 ms for a CPU and was
         * answered just before it computed and blocked elsewhere had the
         * late round's periods repeat the old stack: 160 samples there in a
         * 132 ms stay.)  A catch-up round in which no period passed
         * keeps none: the answer came after the round before (which sent
         * the signal or found it pending), so every period owed passed
         * before the sample.  (Before, it kept one for the next signal, as
         * if a period of its own had passed: a signal that waited 103
         * periods had 102 repeats, and the last went to a new sample taken
         * after the thread ran - the starved thread's test failed so in 12
         * of 120 runs at load 8-10, whenever the round after the late one
         * came half a period later, before the next period.)  Nor are the
         * periods it owed from before its signal (waited_for_signal). */
        int64_t keep = t->last_cpu - at > VMP_IDLE_SLACK_NS && d->last_periods > 1 ? d->last_periods
                                                                                   : d->last_periods > 0;
        int64_t first, n = d->repeats_on ? waited_for_signal(d, t, d->period_no - keep, &first) : 0;
        if (n > 0 && at >= 0 && entry - t->sent_cpu <= VMP_WAITED_SLACK_NS) {
            t->owed -= n; /* (what is left, owed from before, goes in catch-up rounds) */
            /* (no room in the ring: kept with its later repeats, handed
             * over before its next signal, at a visit, or when it is made
             * still; before, they were dropped and counted nowhere) */
            if (give_repeats(d, t->tid, n, 1, first) < 0)
                t->lazy += n;
        }
        return;
    }
    note_not_python(d, t, now);
}

/* Wall clock, per period: the answer of a thread that handled its signal
 * after the last round that read it (found it pending, or sent it), read
 * when no round will: at stop, and when a listing finds it ended.  The
 * periods counted up to that round all passed before its sample; if it did
 * not run from the signal to the sample (a loaded machine kept it from a
 * CPU), they had the stack the sample found and are its repeats, each with
 * its own period (its RSS), as read_answer gives them.  What it owes beyond
 * is not known to be that stack (it ran, or ended, after its sample): the
 * stop counts it dropped as before.  Before, no round read such an answer:
 * at stop the periods were counted dropped, and those of a thread that
 * ended went uncounted (a CPython thread at SCHED_IDLE beside a busy one
 * answered once that one ended, just before the stop: 90-1,552 periods
 * dropped, and its records lacked the RSS of each). */
static void read_late_answer(vmp_delivery *d, vmp_delivery_thread *t)
{
    size_t k = t->place;
    if (!t->awaiting || d->sources || !d->repeats_on || signal_pending(k))
        return;
    t->awaiting = 0;
    int64_t at = atomic_load_explicit(&sampled_cpu[k], memory_order_acquire);
    int64_t entry = answer_entry(k, at);
    if (atomic_load_explicit(&sampled_tid[k], memory_order_acquire) != t->tid)
        at = NO_SAMPLE;
    int64_t first, n = waited_for_signal(d, t, d->period_no - t->owed + (t->waited < t->owed ? t->waited : t->owed), &first);
    if (at < 0 || n <= 0 || entry - t->sent_cpu > VMP_WAITED_SLACK_NS)
        return;
    t->owed -= n;
    give_repeats(d, t->tid, n, 0, first);
}

/* Thread t answered that it has no Python thread state: when to ask again. */
static void note_not_python(vmp_delivery *d, vmp_delivery_thread *t, int64_t now)
{
    atomic_fetch_add_explicit(&d->not_python, 1, memory_order_relaxed);
    t->not_python = 1;
    if (!t->confirmed) {
        /* A Python thread at its very start (before it binds its thread
         * state) answers so too: ask once more a little later. */
        t->confirmed = 1;
        t->recheck_at = now + VMP_NOT_PYTHON_MIN_NS;
    }
    t->probe_gap = t->probe_gap                            ? 2 * t->probe_gap
                   : d->period_ns > VMP_NOT_PYTHON_MIN_NS ? d->period_ns
                                                          : VMP_NOT_PYTHON_MIN_NS;
    if (t->probe_gap > VMP_NOT_PYTHON_MAX_NS)
        t->probe_gap = VMP_NOT_PYTHON_MAX_NS;
    t->probe_cpu = (t->last_cpu > 0 ? t->last_cpu : 0) + t->probe_gap;
}

/* Reads /proc/self/task/<tid>/<name> into buf (NUL-terminated); the bytes
 * read, or -1.  (A thread of our own process: no privilege needed.)  Opened
 * from the kept /proc/self/task: with 1,000 threads waiting, the first probe
 * of each reads its /syscall, and the walk of "/proc/self/task" was 1-4 us of
 * the 8-12 an open took. */
static int task_dir_fd = -1; /* the sending thread's d->task_fd */

ssize_t vmp_delivery_read_task_file(pid_t tid, const char *name, char *buf, size_t size)
{
    char path[64];
    int fd;
    if (task_dir_fd >= 0) {
        snprintf(path, sizeof path, "%d/%s", (int)tid, name);
        fd = openat(task_dir_fd, path, O_RDONLY | O_CLOEXEC);
    } else {
        snprintf(path, sizeof path, "/proc/self/task/%d/%s", (int)tid, name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    return n;
}

/* Whether place k's repeatable sample is the one at `at` (its sleep's,
 * sleep_cpu), or none: the sender stops repeating a sample once the thread
 * ran since (wake, a probe), which a thread back in the sleep of that
 * sample, with no sample since (sleep_cpu), has again (repeatable_again). */
static int rep_is(size_t k, int64_t at)
{
    int64_t rep = atomic_load_explicit(&rep_cpu[k], memory_order_acquire);
    return rep == at || rep == -1;
}

/* ... and makes it repeatable again: 1, or 0 when a sample came meanwhile
 * (the handler sets rep_cpu last, so a compare-and-swap that lands before
 * is overwritten). */
static int repeatable_again(size_t k, int64_t at)
{
    int64_t none = -1;
    atomic_compare_exchange_strong(&rep_cpu[k], &none, at);
    return atomic_load_explicit(&rep_cpu[k], memory_order_acquire) == at &&
           atomic_load_explicit(&sleep_cpu[k], memory_order_acquire) == at;
}

/* Wall clock with sources: whether thread t (place k), found in
 * clock_nanosleep(clock, flags, request, remainder) to an absolute
 * deadline, is in the very sleep its last repeatable sample found it in,
 * ended by that sample's signal and begun again: the same call's
 * registers, and its request still holds that sleep's deadline (another
 * sleep's would be another instant), and no sample since.  Its stack is
 * that sample's then.  A probe would end this sleep as it ended the last
 * one: CPython's time.sleep (3.11+) sleeps again after a signal, and took
 * the GIL back to look at the program's signals first, from a thread that
 * computes: its probes, ~6 ms apart, kept the rounds 1 ms long (each found
 * it inside a call, not for the first time) while the pool bench's main
 * thread slept its 0.5 s, and took the sampler thread's ~10 ms of CPU a run
 * (~40% of it).  Before, such a thread was probed again each time: it ran
 * (~150 us: the handler, the GIL, the check) since its sample. */
static int same_sleep(size_t k, uint64_t clock, uint64_t flags, uint64_t request,
                      uint64_t remainder)
{
    int64_t at = atomic_load_explicit(&sleep_cpu[k], memory_order_acquire);
    if (flags != TIMER_ABSTIME || at < 0 || !rep_is(k, at) ||
        atomic_load_explicit(&sleep_kind[k], memory_order_relaxed) != SLEEP_ABSOLUTE ||
        atomic_load_explicit(&sleep_args[k][0], memory_order_relaxed) != clock ||
        atomic_load_explicit(&sleep_args[k][1], memory_order_relaxed) != request ||
        atomic_load_explicit(&sleep_args[k][2], memory_order_relaxed) != remainder)
        return 0;
    int64_t deadline = atomic_load_explicit(&sleep_deadline[k], memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire); /* (the fields read before sleep_cpu again) */
    if (deadline_at(request) != deadline || atomic_load_explicit(&sleep_cpu[k], memory_order_acquire) != at)
        return 0;
    return repeatable_again(k, at);
}

/* The span (ns) in the two words a timeout of call nr held (pselect6: a
 * timespec; select: a timeval), or -1; or for one of more than ~146 years
 * (so that a clock reading plus the span cannot overflow). */
static int64_t span_of(long nr, const int64_t w[2])
{
    int64_t unit = nr == SYS_pselect6 ? 1 : 1000;
    if (w[1] >= 1000000000L / unit || w[0] > INT64_MAX / 2000000000L)
        return -1;
    return w[0] * 1000000000L + w[1] * unit;
}

/* Slack of same_select's bounds.  The first: the timeval's microsecond
 * (CPython rounds up; the end the handler reads is never before the
 * sleep's).  The second: the time from the kernel's reading of the time
 * left to the handler's clock reading (signal delivery, the handler's
 * first steps), and from CPython's reading of its clock to the call the
 * signal ended (dropping the GIL), by which the end the handler reads is
 * late: microseconds, unless the thread lost its CPU or waited for the
 * GIL's hand-off meanwhile (ms on a loaded machine); past the slack the
 * thread is probed as before.  (A 1 s sleep beside a computing thread, on
 * 3.8 at load 2-4, went off its CPU 5-22 times in 30 runs with 1 ms there,
 * 2 above 20; 5-18 in 20 with 10 ms; 5-13 in 20 with no bounds at all.) */
#define SELECT_SLACK_NS 1000000
#define SELECT_LATE_NS 10000000

/* Wall clock with sources: whether thread t (place k), found at `seen`
 * (CLOCK_MONOTONIC, after /proc named the call) in select or pselect6(0,
 * NULL, NULL, NULL, timeout[, sigmask]) (the call's number and its six
 * arguments in a), is in the very sleep its last repeatable sample found
 * it in, ended by that sample's signal and begun again for the time left
 * (CPython's time.sleep before 3.11, through glibc's select).  That sleep
 * ends at end = sleep_at + left (the handler's clock, and the time left
 * the kernel wrote into the timeout on return).  A sleep begun again,
 * entered at some e in [sleep_at, seen] for a timeout that the kernel
 * leaves as it was while the call waits, ends at e + timeout: the same
 * end iff sleep_at + timeout <= end and end <= seen + timeout, within the
 * slack.  The same call's registers (the same timeout's address) and no
 * sample since too, and its stack is that sample's.  A sleep for another
 * end (the same timeout's address) passes only when its end is within
 * seen - sleep_at of that one: a sleep the program began for the time
 * its last one had left. */
static int same_select(size_t k, long nr, const uint64_t a[6], int64_t seen)
{
    int64_t at = atomic_load_explicit(&sleep_cpu[k], memory_order_acquire);
    if (a[0] || a[1] || a[2] || a[3] || at < 0 || !rep_is(k, at) ||
        atomic_load_explicit(&sleep_kind[k], memory_order_relaxed) != SLEEP_SELECT ||
        atomic_load_explicit(&sleep_args[k][0], memory_order_relaxed) != a[4] ||
        (nr == SYS_pselect6 && atomic_load_explicit(&sleep_args[k][1], memory_order_relaxed) != a[5]))
        return 0;
    int64_t left[2] = {atomic_load_explicit(&sleep_left[k][0], memory_order_relaxed),
                       atomic_load_explicit(&sleep_left[k][1], memory_order_relaxed)};
    int64_t from = atomic_load_explicit(&sleep_at[k], memory_order_relaxed), now_w[2];
    int64_t span = span_of(nr, left), timeout = words_at(a[4], now_w) ? span_of(nr, now_w) : -1;
    if (span < 0 || timeout < 0 || atomic_load_explicit(&sleep_cpu[k], memory_order_acquire) != at)
        return 0;
    int64_t end = from + span;
    return from + timeout <= end + SELECT_SLACK_NS && end <= seen + timeout + SELECT_LATE_NS &&
           seen <= end + SELECT_LATE_NS && repeatable_again(k, at);
}

/* Whether thread t runs or waits for a CPU where it was stopped, so that a
 * signal sent right after this lands where it runs and interrupts no sleep;
 * its caller sends at once.  A thread can only fall asleep by running (into
 * pause(), a sleep), so the answer rests on readings of its clock just
 * before returning: its clock moves between two readings (a running
 * thread's clock reads to the nanosecond), or its state in /proc is R (a
 * loaded machine keeps it waiting) and its clock stood still from before
 * that read to after it.  Before, "its clock moved since this round read
 * it" or "its state was R" was enough: a thread that ran on from there into
 * pause() was signalled in it - the round's reading came microseconds to
 * milliseconds before (a sender kept from a CPU), the state was read 40-95
 * us before the send at load ~20 (the read's open and close), and a
 * thread given a CPU then went to sleep in between (test_sampler_safety's
 * pause test: 3 of 20 pauses ended early in CI).  When the clock keeps
 * moving through every reading but not between two of them (it runs in
 * short bursts), it is not signalled this round: what it owes waits. */
static int on_cpu(vmp_delivery_thread *t)
{
    int64_t seen = t->last_cpu; /* the round's reading */
    int64_t cpu = thread_cpu_ns(t->tid);
    for (int i = 0; i < 3; i++) {
        if (cpu < 0)
            return 1; /* (gone: the signal finds nobody) */
        if (cpu != seen) {
            /* it ran since `seen`: does it run still? */
            int64_t again = thread_cpu_ns(t->tid);
            if (again < 0 || again != cpu)
                return 1;
        }
        /* it stands still since `cpu`: asleep, or waiting for a CPU */
        char buf[512];
        if (vmp_delivery_read_task_file(t->tid, "stat", buf, sizeof buf) < 0)
            return 1; /* (gone) */
        const char *end = strrchr(buf, ')'); /* after the name, which may hold anything */
        if (end && end[1] == ' ' && end[2] != 'R')
            return 0;
        seen = cpu;
        cpu = thread_cpu_ns(t->tid);
        if (cpu == seen)
            return 1; /* waiting for a CPU, and not moved since before the read */
        /* (it ran during the read: it may have gone to sleep since) */
    }
    return 0;
}

/* A write that may wait for room (waits_for_a_signal) */
static int write_like(long nr)
{
    return nr == SYS_write || nr == SYS_writev || nr == SYS_sendto || nr == SYS_sendmsg;
}

/* Wall clock: whether thread t waits in a call that any handled signal ends
 * for good, so that a sample would change what the program does: pause()
 * and sigsuspend() (never restarted; Python's signal.pause() returns then),
 * a write that waits for room (below),
 * and a relative sleep (nanosleep, or clock_nanosleep without
 * TIMER_ABSTIME: C's sleep(), usleep() and nanosleep() return early, and C
 * code rarely sleeps again for the rest; Python's time.sleep sleeps to an
 * absolute deadline from 3.11 and in select() before, and sleeps again
 * after a signal, so it is sampled as before).  Read only when its clock
 * stood still since this round read it, so a running thread costs one
 * clock reading; and only by a sending thread with a descriptor table of
 * its own (vmp_fds.h), where the open cannot take a number the program is
 * about to dup2() onto. */
static int waits_for_a_signal(vmp_delivery *d, vmp_delivery_thread *t)
{
    char buf[64];
    if (!d->own_table)
        return 0;
    size_t k = t->place;
    if (thread_cpu_ns(t->tid) != t->last_cpu) {
        /* It ran since the round read its clock.  One found waiting in a
         * write before, with no signal handled since, may have copied
         * inside that write meanwhile (the reader made room) and wait in it
         * again: its call is read once, and a write there (the kernel names
         * the call of a thread that sleeps, and only then) is spared as
         * below; else it is signalled as before.  Before, it was signalled:
         * its write returned at its next wait for room, short.  Still
         * signalled: one found running ("running": copying inside the write
         * or computing after it, which /proc cannot tell apart: a writer
         * beside a fast reader read "running" for 8-12 ms on end), and one
         * never found waiting in a write with its clock standing (the read
         * costs a running thread nothing more then). */
        if (!t->in_write || atomic_load_explicit(&handled[k], memory_order_acquire) != t->write_handled ||
            vmp_delivery_read_task_file(t->tid, "syscall", buf, sizeof buf) < 0 || buf[0] == 'r')
            return 0;
        t->in_write = (uint8_t)write_like(strtol(buf, NULL, 10));
        if (t->in_write)
            atomic_fetch_add_explicit(&d->probes_spared, 1, memory_order_relaxed);
        return t->in_write;
    }
    if (vmp_delivery_read_task_file(t->tid, "syscall", buf, sizeof buf) < 0)
        return 0;
    if (buf[0] == 'r') {
        /* "running": its state is R (the kernel reads no call of a thread
         * that runs or waits for a CPU).  With sources (the wall clock's
         * events), one found waiting in a write and that has handled no
         * signal since is taken to be in that write still: woken when the
         * reader made room, and kept from a CPU there (a loaded machine).
         * A signal now would be handled only once the write returns, and
         * the write returns at its next wait for room, short (below):
         * test_sampler_safety's write test saw 8 of 10 writes short at load
         * ~30 so.  Its own event, which fires only in user mode, once a
         * period of its CPU time ends there, tells when it left: until
         * then it is left alone as in the write.  (Not every runnable
         * thread: one kept from a CPU while it computes gets a period of
         * its CPU time seldom, and its waits for a CPU would go to its next
         * sleep's sample: 45-52 points of computing lost in
         * test_wall_clock_gives_a_threads_wait_for_a_cpu_to_what_it_computes.
         * A thread without an event (the per-period schedule, more than
         * 64 running threads, events refused) is spared the same way:
         * waits_for_a_signal is asked only while its clock stands still, so
         * once it runs again, left the write or not, it is signalled as
         * before, and that signal ends this.  Before, it was signalled
         * here: test_sampler_safety's write program with
         * VMPROF_NO_PERF_EVENTS=1 had 2-6 of its 10 writes short (median
         * 4), 0-5 after (median 1.5; the rest: running in its write, its
         * clock moving, signalled as before).) */
        if (t->in_write && atomic_load_explicit(&handled[k], memory_order_acquire) == t->write_handled) {
            atomic_fetch_add_explicit(&d->probes_spared, 1, memory_order_relaxed);
            return 1;
        }
        return 0;
    }
    char *args;
    long nr = strtol(buf, &args, 10);
    t->in_write = (uint8_t)write_like(nr);
    t->write_handled = atomic_load_explicit(&handled[k], memory_order_acquire);
#if defined(SYS_pause)
    if (nr == SYS_pause)
        return 1;
#endif
#if defined(SYS_nanosleep)
    if (nr == SYS_nanosleep)
        return 1;
#endif
    if (nr == SYS_clock_nanosleep) {
        uint64_t clock = strtoull(args, &args, 16), flags = strtoull(args, &args, 16);
        if (!(flags & TIMER_ABSTIME))
            return 1;
        uint64_t request = strtoull(args, &args, 16), remainder = strtoull(args, NULL, 16);
        return d->sources && same_sleep(k, clock, flags, request, remainder);
    }
    if (nr == SYS_pselect6
#if defined(SYS_select)
        || nr == SYS_select
#endif
    ) {
        int64_t seen = clock_ns(CLOCK_MONOTONIC);
        uint64_t a[6];
        for (int i = 0; i < 6; i++)
            a[i] = strtoull(args, &args, 16);
        return d->sources && same_select(k, nr, a, seen);
    }
    /* A write that waits for room in a pipe or a socket: a handled signal
     * ends it with the bytes written so far (SA_RESTART restarts only a
     * write that wrote none), and os.write(), an unbuffered file's write()
     * and socket.send() return that short count to the program.  (CPython's
     * test_io *SignalsTest.test_interrupted_write_unbuffered: the write of
     * a pipe's worth and more, meant to be ended by its alarm, returned
     * short at our first signal, 2 of 2 runs under --real-time.) */
    if (t->in_write)
        return 1;
    return nr == SYS_rt_sigsuspend;
}

/* Signals thread t, or repeats its sample, for what it is owed. */
static void deliver(vmp_delivery *d, vmp_delivery_thread *t, int64_t now)
{
    size_t k = t->place;
    if (signal_pending(k)) {
        /* the last one is still pending */
        if (!t->pending_since)
            t->pending_since = now;
        /* Its mask is read twice, VMP_BLOCKED_CHECK_NS apart: once may find
         * the signal blocked only because the thread is inside our handler
         * (between vmp_delivery_handled and returning, a next signal waits)
         * and the scheduler left it there. */
        int checks = t->checks;
        read_mask(d, t, k, now);
        if (t->checks != checks && known_blocking(t))
            atomic_fetch_add_explicit(&d->threads_blocking, 1, memory_order_relaxed);
        /* Its periods are counted blocked once both readings found it so;
         * after the first they wait in owed, for that count or for its
         * next sample.  (Counted from the first, a thread that one reading
         * found in the handler's few instructions outside `inside`, kept
         * from a CPU there, had the periods it waited counted blocked, not
         * sampled: 40 of 41 in the test of it.) */
        if (known_blocking(t))
            count_capped(d, t, 1);
        if (known_blocking(t) && t->unasked > 0) {
            /* A thread not Python's was not asked about its periods
             * before the signal that found it blocking (it is asked only
             * after stretches of its CPU time): they were not sampled
             * either, and count from its last answer (or its finding), as
             * with sources, where its paid mark stands there.  (Counted
             * from the round that asked it, a C thread blocking every
             * signal had its first 110 ms and more of wall time counted
             * nowhere in the test of it, the 10 ms of CPU time before its
             * question on the CPU clock; with sources every one.) */
            atomic_fetch_add_explicit(&d->periods_blocked, (uint64_t)t->unasked, memory_order_relaxed);
            t->unasked = 0;
        }
        if (known_blocking(t) && t->owed > 0) {
            /* left alone: its periods are not sampled, counted */
            atomic_fetch_add_explicit(&d->periods_blocked, (uint64_t)t->owed, memory_order_relaxed);
            t->owed = 0;
        } else if (t->owed > 0 && !t->blocks)
            d->catchup = 1; /* next round (a loaded machine lets it wait) */
        if (known_blocking(t) && t->delta == 0)
            settle(d, t); /* (once read so twice: counted in threads_blocking first) */
        t->waited = t->owed;
        return;
    }
    t->pending_since = 0;
    t->blocks = t->checks = 0;
    count_capped(d, t, 0); /* (its signal was handled) */
    int answered = t->awaiting;
    if (answered) {
        read_answer(d, t, k, now);
        t->unasked = 0; /* (what it owes up to here its answer paid, as a handler pays up to itself) */
    }
    if (t->not_python) {
        if (t->recheck_at && now >= t->recheck_at) {
            t->recheck_at = 0;
            if (t->owed <= 0)
                t->owed = 1;
        } else if (t->last_cpu < t->probe_cpu) {
            if (!answered)
                t->unasked += t->owed;
            t->owed = 0; /* nothing to record there */
        } else if (t->owed <= 0) {
            t->owed = 1; /* it used its stretch: ask again */
        }
    }
    if (t->owed > 0 && d->repeats_on && idle_since_sample(t, k)) {
        t->lazy += t->owed; /* handed over later, in one go (however many: no signal) */
        t->owed = 0;
    }
    /* Far behind: drop rather than burst, counted - unless, on the wall
     * clock with repeats, the thread did not run this round (its clock
     * reads as before): its next sample, if it shows that the thread did
     * not run from its signal to it either, stands for all those periods
     * (read_answer's waited ones), and one signal goes out a round whatever
     * it owes.  (An idle thread found by a first round 43-78 ms late had
     * all but 20 of those periods dropped, though its first sample was
     * taken where it had waited all along.) */
    if (t->owed > d->max_owed && !(d->repeats_on && t->delta == 0)) {
        t->capped += t->owed - d->max_owed;
        t->owed = d->max_owed;
    }
    if (t->owed > 0 && d->cpu_clock && d->test_before_check)
        d->test_before_check(t->tid);
    if (t->owed > 0 && d->cpu_clock && !on_cpu(t)) {
        /* Not on a CPU (asleep, or waiting for one): a signal could cut a
         * sleep short.  What it owes waits, as CPU time, for a round that
         * finds it running. */
        t->credit += t->owed * d->period_ns;
        if (t->credit > d->max_owed * d->period_ns) {
            /* (the cap is whole periods: what is above it too) */
            int64_t over = (t->credit - d->max_owed * d->period_ns) / d->period_ns;
            t->capped += over;
            t->credit = d->max_owed * d->period_ns;
        }
        t->owed = 0;
    }
    if (t->owed > 0 && !d->cpu_clock && d->repeat && d->test_before_check)
        d->test_before_check(t->tid);
    if (t->owed > 0 && !d->cpu_clock && d->repeat && waits_for_a_signal(d, t)) {
        if (atomic_load(&cut_cpu[k]) >= 0) {
            /* Its last sample was cut: not repeated, and no signal may end
             * its wait: its periods are lost, counted (it stays active). */
            atomic_fetch_add_explicit(&d->periods_cut, (uint64_t)t->owed, memory_order_relaxed);
            t->owed = 0;
        } else {
            /* Its stack is the one it had at its last sample, give or take
             * what it ran between that sample and the wait (less than a
             * period). */
            t->lazy += t->owed; /* handed over later, in one go, as an idle thread's */
            t->owed = 0;
            t->idle_cpu = t->last_cpu; /* its periods while still repeat that sample too */
        }
    }
    if (t->owed > 0) {
        t->owed--;
        t->waited = t->owed;
        if (t->owed)
            d->catchup = 1;
        t->idle_cpu = -1;
        if (t->lazy)
            flush_lazy(d, t); /* (before its new sample) */
        if (d->test_before_signal)
            d->test_before_signal(t->tid);
        /* Whether it ran after the round's reading (in this round's
         * periods), read before the send: after it, a thread woken on an
         * idle CPU has often run its handler already, and a quiet machine
         * took every thread signalled out of a wait for one that ran before
         * its signal: the periods the signal then waited were not repeats
         * (the late first round of an idle thread, 60 periods: 40 dropped,
         * 20 of 20 runs at load ~3). */
        int64_t before = d->repeats_on ? thread_cpu_ns(t->tid) : -1;
        atomic_store_explicit(&unpaid_signal[k], 1, memory_order_release); /* (its period, for its handler) */
        if (syscall(SYS_tgkill, d->pid, t->tid, d->signo) != 0) {
            atomic_store_explicit(&unpaid_signal[k], 0, memory_order_relaxed);
        } else {
            sent_to[k]++;
            t->awaiting = 1;
            /* The thread's clock now, not the round's reading (observe):
             * read_answer takes its periods that waited for the signal as
             * repeats only if it ran at most VMP_WAITED_SLACK_NS from the
             * signal to its handler, and a starved thread given a CPU for a
             * moment between the round's reading and this send (then kept
             * waiting) seemed to have run after its signal: its waited
             * periods were refused and the backlog cap dropped them (1,736
             * in one CPython run under load).  A thread that runs after the
             * send handles the signal first unless it blocks it, so this
             * reading is late only by what such a thread ran while this one
             * was kept from a CPU between the send and the reading.  Only
             * where the answer is read so (wall clock with repeats): one
             * clock reading more per signal. */
            int64_t cpu = d->repeats_on ? thread_cpu_ns(t->tid) : -1;
            t->sent_cpu = cpu >= 0 ? cpu : t->last_cpu;
            /* (it ran after the round's reading: in this round's periods) */
            t->signal_ran = (before >= 0 ? before : t->sent_cpu) != t->last_cpu ? d->period_no : t->ran_period;
            atomic_fetch_add_explicit(&d->sent, 1, memory_order_relaxed);
        }
        return;
    }
    /* Nothing owed or pending, and it did not run this round: still. */
    if (t->delta == 0 && !t->recheck_at)
        settle(d, t);
}

/* Sources mode: notes thread t's latest answer, if one came since the last
 * round. */
static void source_answer(vmp_delivery *d, vmp_delivery_thread *t, size_t k, int64_t now)
{
    pid_t who = atomic_load_explicit(&sampled_tid[k], memory_order_acquire);
    int64_t at = atomic_load_explicit(&sampled_cpu[k], memory_order_acquire);
    if (who != t->tid || atomic_load_explicit(&sampled_tid[k], memory_order_acquire) != who)
        return;
    atomic_store_explicit(&sampled_tid[k], 0, memory_order_relaxed); /* read */
    t->awaiting = 0;
    if (at != NOT_PYTHON) {
        t->not_python = t->confirmed = 0;
        t->probe_gap = 0;
        t->recheck_at = 0;
        count_unfound(d, t);
        return;
    }
    /* Its source is paused until it is asked again: by the handler when
     * the source is in the program's table (vmp_delivery_source_answer),
     * else here. */
    if (t->src >= 0 && !atomic_load_explicit(&sources_in_program_table, memory_order_relaxed))
        ioctl(t->src, PERF_EVENT_IOC_DISABLE, 0);
    note_not_python(d, t, now);
}

/* Wall clock with sources: reads the answer to the latest probe of thread
 * t, if one came.  A probe that found the thread outside a system call
 * found it waiting for a CPU (or running without a source): its stack does
 * not change while it waits, so the next probe may wait twice as long (a
 * starved thread is not probed every round).  One that found it inside a
 * call within VMP_WAIT_HOLD_NS of the last one that did makes the rounds
 * short (round_length). */
static void probe_answer_read(vmp_delivery *d, vmp_delivery_thread *t, size_t k, int64_t now)
{
    int answer = atomic_exchange_explicit(&probe_answer[k], 0, memory_order_acquire);
    if (!answer)
        return;
    if (answer == PROBE_CUT) {
        /* (probed again once the rules moved: source_round, cut_held) */
        t->probe_shift = 0;
        return;
    }
    int waits = answer - 1;
    t->probe_shift = waits ? 0 : t->probe_shift < VMP_PROBE_SHIFT_MAX ? t->probe_shift + 1 : t->probe_shift;
    if (!waits)
        return;
    /* Short rounds for a thread whose waits come close together: found
     * waiting twice within VMP_WAIT_HOLD_NS (short rounds after a wait
     * found further apart would be over before its next one).  Before, any
     * second wait found did it: the pool bench's main thread, found in its
     * 0.5 s time.sleep and then in join(), had 50 rounds of 1 ms for
     * nothing (a fifth of the sampler thread's wake-ups in a 2 s run). */
    if (t->waited_at && now - t->waited_at <= VMP_WAIT_HOLD_NS)
        d->fast_until = now + VMP_WAIT_HOLD_NS;
    t->waited_at = now;
}

/* Wall clock with sources: a thread asleep in pause() or sigsuspend() is
 * not probed (a signal would end the wait): it is idle in its last sample
 * (the stack it had then, give or take less than a period of running),
 * whose repeats the sender hands over as an idle thread's. */
static int wall_waits_for_a_signal(vmp_delivery *d, vmp_delivery_thread *t)
{
    if (!waits_for_a_signal(d, t))
        return 0;
    t->idle_cpu = t->last_cpu;
    return 1;
}

/* Sources mode: thread t's round (it is active).  Its source samples it
 * while it runs; what is left is noticing that it blocks the signal or is
 * not Python's, signalling it when it has no source (CPU clock), and on
 * the wall clock probing a thread that fell behind (it waits, or has no
 * source) unless it is idle in a sample that may be repeated: one signal,
 * whose handler pays every period owed. */
static void source_round(vmp_delivery *d, vmp_delivery_thread *t, int64_t now)
{
    size_t k = t->place;
    if (!d->cpu_clock)
        probe_answer_read(d, t, k, now);
    source_answer(d, t, k, now);
    int64_t left_at = -1, left_ran = 0;
    int left = !d->cpu_clock && !t->not_python && !t->blocks && !t->checks && wall_left_call(t, k, &left_at, &left_ran);
    if (left)
        /* Probed again from two periods behind: the backoff of probes that
         * found it waiting for a CPU (probe_answer_read) was for the stack
         * it had then.  (Kept, a thread that ran a few microseconds a round,
         * never enough to reset it, was probed only 32 periods behind, by
         * then asleep again: that probe paid its computing to the sleep.) */
        t->probe_shift = 0;
    /* (round_length: the rounds stay short; not for a thread known not to
     * be Python's, asked again only after its next stretch of CPU time: the
     * pool bench's 16 C threads, each waking every 100 ms, kept the rounds
     * short on both clocks) */
    if (settled_not_python(t) ? t->blocks || t->checks : t->src < 0 || t->not_python || t->awaiting || t->blocks || t->checks)
        d->changed = 1;
    int counted = atomic_load_explicit(&base_tid[k], memory_order_acquire) == t->tid;
    int64_t base = atomic_load_explicit(&base_cpu[k], memory_order_acquire);
    int64_t owed_ns = !counted ? t->owed * d->period_ns : d->cpu_clock ? t->last_cpu - base : now - base;
    t->owed = 0;
    uint32_t h = atomic_load_explicit(&handled[k], memory_order_acquire);
    if (known_blocking(t) && h != t->handled_when_found) {
        t->blocks = t->checks = 0; /* its handler ran since: it unblocked */
        t->pending_since = 0;
        t->src_retry_at = now;
    }
    int sent_pending = signal_pending(k);
    int silent = h == t->handled_seen && t->src >= 0; /* (no signal handled since the last round) */
    t->handled_seen = h;
    /* CPU clock: what its event counted and nobody paid: its CPU time since
     * the source was opened, if that came after the mark.  (A thread not
     * Python's at the start gets its source only when it is asked again,
     * with its CPU time from the start unpaid: its mask was read before the
     * event had fired at all, twice while a loaded machine kept it from a
     * CPU, and with nothing pending it was taken as not blocking for the
     * rest of the run: threads_blocking 0 in 18 of 40 runs of
     * test_sampler_threads' blocker, 4 at once at load ~25.) */
    int64_t fired_ns = d->cpu_clock && t->src >= 0 && counted && t->src_cpu > base ? t->last_cpu - t->src_cpu : owed_ns;
    /* Owed two periods of CPU time and not paid: its signal waits (sent by
     * us, or fired by its source: the handler pays at once when it runs).
     * On the wall clock likewise when it ran two periods this round with
     * its source open and handled no signal: a thread that runs while it
     * blocks the signal is probed by nobody (it runs), and was never found.
     * One found blocking stays so until its handler ran (it unblocked: above).
     * (A thread not Python's is owed nothing, unless it is being asked
     * again.) */
    if (sent_pending || known_blocking(t) ||
        ((t->src >= 0 || t->blocks) && (!t->not_python || t->awaiting) && counted && fired_ns >= 2 * d->period_ns &&
         (d->cpu_clock || t->blocks || (silent && t->delta >= 2 * d->period_ns)))) {
        if (!t->pending_since)
            t->pending_since = now;
        int checks = t->checks;
        read_mask(d, t, k, now);
        if (t->checks != checks) {
            if (known_blocking(t)) {
                atomic_fetch_add_explicit(&d->threads_blocking, 1, memory_order_relaxed);
                t->handled_when_found = atomic_load_explicit(&handled[k], memory_order_acquire);
                source_close(d, t); /* left alone */
                t->src_retry_at = INT64_MAX;
            } else if (t->checks == 2 && !sent_pending) {
                /* Nothing found pending: the event has not fired yet, or
                 * its signal was handled meanwhile; not a sign that the
                 * thread does not block it.  Read again while it stays
                 * owed (before, it was never read again: a thread whose
                 * event fired only after the two readings was never
                 * found). */
                t->checks = 0;
                t->pending_since = now;
            }
        }
        if (known_blocking(t)) {
            count_blocked(d, t, d->cpu_clock ? t->last_cpu : now);
            if (t->delta == 0)
                settle(d, t); /* (once read so twice: counted in threads_blocking first) */
        }
        return;
    }
    t->pending_since = 0;
    t->blocks = t->checks = 0;
    int ask = 0;
    if (t->not_python) {
        /* asked again: after VMP_NOT_PYTHON_MIN_NS, then after stretches of
         * its CPU time */
        int recheck = t->recheck_at && now >= t->recheck_at;
        int due = !t->awaiting && (recheck || t->last_cpu >= t->probe_cpu);
        /* Wall clock: not while a signal would end its wait (a source
         * fires only while it runs); asked after its next stretch instead,
         * so that a sleeping C thread is not read again each round. */
        if (due && !d->cpu_clock && !(t->src >= 0 && source_is_ours(t->src, t->src_id)) &&
            waits_for_a_signal(d, t)) {
            due = 0;
            t->recheck_at = 0;
            t->probe_cpu = t->last_cpu + t->probe_gap;
        }
        if (due) {
            t->recheck_at = 0;
            t->awaiting = 1;
            if (t->src >= 0 && source_is_ours(t->src, t->src_id)) {
                ioctl(t->src, PERF_EVENT_IOC_ENABLE, 0);
                /* (wall clock: the second question after a first "not
                 * Python" is a probe: a Python thread caught before it bound
                 * its thread state may wait from then on, and its event
                 * would never fire: it had no sample at all) */
                if (d->cpu_clock || !recheck || waits_for_a_signal(d, t))
                    return;
            } else {
                source_close(d, t); /* (if the program closed it) */
            }
            owed_ns = d->period_ns; /* one signal below */
            ask = 1;
        } else {
            if (t->delta == 0 && !t->recheck_at && !t->awaiting)
                settle(d, t);
            return;
        }
    }
    if (t->src < 0 && d->sources && t->delta > 0) /* (only a thread that runs needs one) */
        source_give(d, t, now);
    if (t->delta > VMP_IDLE_SLACK_NS)
        t->probe_shift = 0; /* (it ran: not a thread kept from a CPU) */
    if (!d->cpu_clock) {
        int held = counted && cut_held(d, t, k);
        if (t->held && !held && atomic_load_explicit(&cut_cpu[k], memory_order_acquire) >= 0 &&
            t->last_cpu - atomic_load_explicit(&cut_cpu[k], memory_order_acquire) > VMP_CUT_SLACK_NS)
            /* it ran again, somewhere in this round: its wait before had
             * no sample but the cut one */
            count_cut(d, t, now - d->last_periods * d->period_ns);
        t->held = (uint8_t)held;
    }
    if (!d->cpu_clock && d->test_before_probe && owed_ns >= 2 * d->period_ns)
        d->test_before_probe(t->tid);
    int signal = d->cpu_clock ? t->src < 0 && 2 * owed_ns >= d->period_ns && on_cpu(t)
                              : ask || (owed_ns >= (2LL << (t->src < 0 && t->delta > 0 ? 0 : t->probe_shift)) *
                                                       d->period_ns &&
                                        !t->held &&
                                        !(counted && (wall_idle(t, k) || wall_waits_for_a_signal(d, t))) &&
                                        (t->src < 0 || thread_cpu_ns(t->tid) == t->last_cpu));
    /* (a thread with a source on a CPU right now is paid by its event) */
    if (signal && !sent_pending) {
        /* one signal a round, the handler pays what is owed */
        atomic_store_explicit(&probe_answer[k], 0, memory_order_relaxed); /* (none but this one's) */
        if (left && counted)
            wall_pay_left(d, t, k, now, left_at, left_ran);
        if (syscall(SYS_tgkill, d->pid, t->tid, d->signo) == 0) {
            sent_to[k]++;
            t->awaiting = 1;
            t->idle_cpu = -1;
            atomic_fetch_add_explicit(&d->sent, 1, memory_order_relaxed);
        }
    }
    if (t->delta == 0 && !t->recheck_at && !t->awaiting)
        settle(d, t);
}

static int cmp_tid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return x < y ? -1 : x > y;
}

/* The threads there at the start that are not among d->python_tids are
 * taken as having answered "not Python" twice (header). */
static void note_known_not_python(vmp_delivery *d)
{
    if (d->n_python_tids < 0 || !d->python_tids)
        return;
    pid_t *sorted = malloc(((size_t)d->n_python_tids + 1) * sizeof *sorted);
    if (!sorted)
        return;
    memcpy(sorted, d->python_tids, (size_t)d->n_python_tids * sizeof *sorted);
    qsort(sorted, (size_t)d->n_python_tids, sizeof *sorted, cmp_tid);
    for (size_t i = 0; i < d->n_threads; i++) {
        vmp_delivery_thread *t = &d->threads[i];
        if (bsearch(&t->tid, sorted, (size_t)d->n_python_tids, sizeof *sorted, cmp_tid))
            continue;
        t->not_python = t->confirmed = 1;
        t->probe_gap = d->period_ns > VMP_NOT_PYTHON_MIN_NS ? d->period_ns : VMP_NOT_PYTHON_MIN_NS;
        t->probe_cpu = (t->last_cpu > 0 ? t->last_cpu : 0) + t->probe_gap;
    }
    free(sorted);
}

struct tid_index {
    pid_t tid;
    long i;
};

static int cmp_tid_index(const void *a, const void *b)
{
    return cmp_tid(&((const struct tid_index *)a)->tid, &((const struct tid_index *)b)->tid);
}

/* Wall clock: the threads of d->python_tids whose stacks the caller hands
 * over (first_sample) are idle in them from the start (header: "First
 * samples"), as a handler's sample inside a system call at the CPU clock
 * baseline read would have left them: not probed while that clock stands
 * still.  After the places' paid marks are set (place_count_from). */
static void first_samples(vmp_delivery *d)
{
    if (!d->repeats_on || !d->first_sample || d->n_python_tids <= 0 || !d->python_tids)
        return;
    size_t n = (size_t)d->n_python_tids;
    struct tid_index *sorted = malloc(n * sizeof *sorted);
    if (!sorted)
        return;
    for (size_t i = 0; i < n; i++)
        sorted[i] = (struct tid_index){d->python_tids[i], (long)i};
    qsort(sorted, n, sizeof *sorted, cmp_tid_index);
    for (size_t i = 0; i < d->n_threads; i++) {
        vmp_delivery_thread *t = &d->threads[i];
        struct tid_index key = {t->tid, 0}, *found;
        if (t->not_python || t->last_cpu < 0 || t->place >= VMP_PLACES ||
            !(found = bsearch(&key, sorted, n, sizeof *sorted, cmp_tid_index)) ||
            d->first_sample(found->i, t->tid, t->place) != 0)
            continue;
        set_repeatable(t->place, t->last_cpu, 1);
        set_last_sampled(t->place, t->tid, t->last_cpu, -1, 1);
        t->first = t->cold = 1;
        atomic_fetch_add_explicit(&d->first_samples, 1, memory_order_relaxed);
    }
    free(sorted);
}

/* Whether signal signo is one the kernel queues (real-time) rather than
 * merges. */
static int queued_signal(int signo)
{
    return signo >= SIGRTMIN && signo <= SIGRTMAX;
}

int vmp_delivery_start(vmp_delivery *d)
{
    atomic_store(&d->periods, 0);
    atomic_store(&d->rounds, 0);
    atomic_store(&d->late, 0);
    atomic_store(&d->sent, 0);
    atomic_store(&d->repeated, 0);
    atomic_store(&d->repeats_lost, 0);
    atomic_store(&d->periods_dropped, 0);
    atomic_store(&handler_periods_dropped, 0);
    atomic_store(&first_sample_periods, 0);
    atomic_store(&handler_periods_cut, 0);
    d->stop_deadline = 0;
    atomic_store(&d->threads_max, 0);
    atomic_store(&d->threads_missed, 0);
    atomic_store(&d->threads_blocking, 0);
    atomic_store(&d->blocked_unsure, 0);
    atomic_store(&d->periods_blocked, 0);
    atomic_store(&d->periods_cut, 0);
    atomic_store(&d->not_python, 0);
    atomic_store(&d->polls, 0);
    atomic_store(&d->cold_polls, 0);
    atomic_store(&d->scans, 0);
    atomic_store(&d->births_read, 0);
    atomic_store(&d->deaths_read, 0);
    atomic_store(&d->unseen_waits, 0);
    d->listed = -1;
    d->n_tail = 0;
    atomic_store(&d->clock_reads, 0);
    atomic_store(&d->visits, 0);
    atomic_store(&d->first_samples, 0);
    atomic_store(&unseen_wait, 0);
    d->threads = NULL;
    d->active = NULL;
    d->index = NULL;
    d->n_threads = d->cap = d->n_active = d->sweep = 0;
    d->visit_credit = 0;
    d->has_process_timer = 0;
    d->task_fd = -1;
    if (grow(d) < 0) {
        vmp_delivery_stop(d);
        return -1;
    }
    places_empty(); /* (nothing of an earlier run counts: place_take makes each fresh) */
    d->pid = getpid();
    int64_t n = VMP_MAX_BACKLOG_NS / d->period_ns;
    d->max_owed = n > VMP_MIN_BACKLOG_PERIODS ? n : VMP_MIN_BACKLOG_PERIODS;
    d->repeats_on = d->repeat && !d->cpu_clock;
    atomic_store(&want_sample_cpu, d->repeats_on);
    /* catch-up rounds far enough apart that the last signal was likely handled */
    d->catchup_gap = d->period_ns / 2 > 30000 ? d->period_ns / 2 : 30000;
    d->catchup = d->rescan = d->was_paused = 0;
    d->period_no = 0;
    d->n_sources = 0;
    atomic_store(&d->sources_opened, 0);
    atomic_store(&d->probes_spared, 0);
    struct rlimit nofile;
    d->max_sources = VMP_MAX_SOURCES;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
        nofile.rlim_cur / 16 < (rlim_t)d->max_sources)
        d->max_sources = (int)(nofile.rlim_cur / 16); /* the program's descriptors come first */
    /* (the wall clock's sources need repeats: an idle thread has none) */
    if ((!d->cpu_clock && !d->repeats_on) || queued_signal(d->signo) || d->max_sources < 1)
        d->sources = 0;
    atomic_store(&credit_period, 0);
    atomic_store(&per_period_claims, 1);
    atomic_store(&sources_in_program_table, !d->own_table);
    atomic_store(&wall_counting, 0);
    d->task_fd = vmp_fd_out_of_the_way(open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    task_dir_fd = d->task_fd;
    struct stat st;
    d->last_nlink = d->task_fd >= 0 && fstat(d->task_fd, &st) == 0 ? (int64_t)st.st_nlink : -1;
    d->starting = 1;
    scan_threads(d);
    d->starting = 0;
    /* The baselines: the threads' CPU clocks, then the process's. */
    for (size_t i = 0; i < d->n_threads; i++)
        d->threads[i].last_cpu = thread_cpu_ns(d->threads[i].tid);
    note_known_not_python(d);
    d->self_cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    for (int i = 0; i < 2; i++) {
        d->skip_tid[i] = d->skip[i] ? atomic_load(d->skip[i]) : 0;
        if (d->skip_tid[i] == vmp_delivery_this_tid())
            d->skip_tid[i] = 0;
        d->skip_cpu[i] = d->skip_tid[i] ? thread_cpu_ns(d->skip_tid[i]) : -1;
    }
    /* The process's CPU clock is read every round.  The kernel sums it over
     * every thread of the process (O(threads): 5% of a core at 1 kHz with
     * 1,000 threads waiting), unless a process-wide CPU timer is armed: the
     * kernel then keeps the sum as the threads run, and a read costs O(1).
     * So one is armed, too far ahead to ever fire (were it to: our signal,
     * sent to the sending thread, whose handler takes it as not ours). */
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = d->signo;
    ev._sigev_un._tid = vmp_delivery_this_tid();
    d->has_process_timer = timer_create(CLOCK_PROCESS_CPUTIME_ID, &ev, &d->process_timer) == 0;
    if (d->has_process_timer) {
        struct itimerspec far = {{0, 0}, {1000000000, 0}}; /* 30 years of CPU time */
        timer_settime(d->process_timer, 0, &far, NULL);
    }
    d->process_cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    d->unexplained = 0;
    d->last_scan = d->last_rescan = d->last_round = d->start_ns = clock_ns(CLOCK_MONOTONIC);
    d->round_periods = 1;
    int firsts_done = 0;
    if (d->sources) {
        /* the CPU time (wall clock: the time) of the threads already there
         * counts from here */
        for (size_t i = 0; i < d->n_threads; i++) {
            vmp_delivery_thread *t = &d->threads[i];
            size_t k = t->place;
            place_count_from(k, t->tid, d->cpu_clock ? t->last_cpu : d->last_round);
        }
        atomic_store(&paused_flag, d->paused);
        atomic_store(&wall_counting, !d->cpu_clock);
        /* (a thread born in a quiet stretch is paid all its CPU time
         * since its birth by its first sample) */
        int64_t quiet = d->cpu_clock && d->quiet_rounds ? VMP_QUIET_ROUND_NS / d->period_ns + d->max_owed : 0;
        atomic_store(&credit_cap, quiet > d->max_owed ? quiet : d->max_owed);
        atomic_store(&credit_period, d->period_ns);
        /* The threads handed over idle in a first sample get none: their
         * stack is known and cannot change until they run, and one that
         * runs gets a source at its round as any thread found running
         * without one.  (Opened for the first VMP_MAX_SOURCES threads
         * listed, the 1,000 waiting threads of the wall-clock pool bench
         * took all 64, ~50 us each of the sampler thread's CPU (the open,
         * and the kernel's cross-CPU calls to install and enable an event
         * on another thread), and the busy thread born after enable()
         * found none to take and was probed every round for
         * VMP_SOURCE_RETRY_NS.)  The caller's own thread, which runs, has
         * no first sample: the kernel's answer is still read at the start. */
        first_samples(d);
        firsts_done = 1;
        /* The kernel may refuse the events (perf_event_paranoid, seccomp):
         * then the per-period schedule. */
        for (size_t i = 0; i < d->n_threads && d->sources && d->n_sources < (size_t)d->max_sources; i++)
            if (!d->threads[i].not_python && !d->threads[i].first && source_open(d, &d->threads[i]) < 0 &&
                errno != EMFILE && errno != ENFILE && errno != ESRCH && errno != ENOMEM)
                d->sources = 0;
        if (!d->sources) {
            atomic_store(&credit_period, 0);
            atomic_store(&wall_counting, 0);
            for (size_t i = 0; i < d->n_threads; i++)
                source_close(d, &d->threads[i]);
        } else {
            d->round_periods = VMP_SOURCE_ROUND_NS > d->period_ns ? VMP_SOURCE_ROUND_NS / d->period_ns : 1;
            /* The threads handed over idle are still from here, idle at
             * the baseline read above, as the first round would find them
             * (it read 1,000 clocks again for the pool bench's waiting
             * crowd): one that ran since is found as any still thread is,
             * by a poll or at its first visit (at the sweep's next pass). */
            for (size_t i = 0; i < d->n_threads; i++) {
                vmp_delivery_thread *t = &d->threads[i];
                if (!t->cold)
                    continue;
                t->idle_cpu = t->last_cpu;
                t->visit_at = t->visit_gap = 0;
                make_still(d, t);
            }
        }
    }
    if (!firsts_done)
        first_samples(d);
    d->fast_until = 0;
    d->steady_since = d->last_round;
    d->changed = 0;
    d->next = d->last_scan + d->period_ns * d->round_periods;
    return 0;
}

/* At most this many threads born since the last listing are noted by a
 * read of the list's end; more make a full listing. */
#define VMP_BORN_MAX 16

/* Reads /proc/self/task from its entry `at` on (the entries after "." and
 * ".."), for read_births and read_deaths: the first entry read must be
 * `anchor` (with anchor 0: any thread the table knows or skipped); every
 * later one the table does not know is a thread born since, put in born
 * (VMP_BORN_MAX at most); a later one it knows is allowed only with
 * known_after.  The number born, or -1 (an entry out of the order known,
 * too many born, an empty end, a failed read): list them all. */
static int64_t read_list_from(vmp_delivery *d, int64_t at, pid_t anchor, int known_after, pid_t *born)
{
    char buf[2048];
    if (d->task_fd < 0 || lseek(d->task_fd, 2 + at, SEEK_SET) < 0)
        return -1;
    int64_t n_born = 0;
    int first = 1;
    for (;;) {
        long got = syscall(SYS_getdents64, d->task_fd, buf, sizeof buf);
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        pid_t tid;
        for (long off = 0; (tid = next_task(buf, got, &off)) != 0;) {
            int known = find(d, tid) || skipped(d, tid);
            if (first) {
                first = 0;
                if (anchor ? tid != anchor : !known)
                    return -1;
            } else if (!known) {
                if (n_born == VMP_BORN_MAX)
                    return -1;
                born[n_born++] = tid;
            } else if (!known_after) {
                return -1;
            }
        }
    }
    return first ? -1 : n_born;
}

/* The threads born since the last listing, when nothing else changed:
 * `now` threads in all (the directory's link count less 2).  The kernel
 * keeps a process's threads in a list, each new one added at its end, and
 * /proc/self/task lists them in that order from any offset (an offset is a
 * position in the list): read from the last one the listings read, the
 * first entry must be a thread listed before (else threads ended before it
 * and moved the list), and then every thread after it is one born since
 * (every new thread is behind every older one); they are noted, and the
 * count must come out at `now` (else threads ended too: the full listing
 * finds them gone).  0, or -1: list them all.  (With 1,000 threads, a
 * listing reads 1,000 entries, each a lookup in the kernel's cache of
 * /proc's entries: 1.3-5 ms of the sampler thread's CPU, for each thread
 * started during the run; this reads the ones after the offset, and the
 * kernel's walk to it is a thousand pointers.) */
static int read_births(vmp_delivery *d, int64_t now)
{
    pid_t born[VMP_BORN_MAX];
    if (d->listed <= 0 || now <= d->listed)
        return -1;
    int64_t n_born = read_list_from(d, d->listed - 1, 0, 1, born);
    if (n_born < 0 || d->listed + n_born != now)
        return -1;
    uint64_t missed = 0;
    for (int64_t i = 0; i < n_born; i++)
        if (note_thread(d, born[i]) < 0)
            missed++;
    note_table_counts(d, missed);
    d->listed += n_born;
    for (int64_t i = 0; i < n_born; i++)
        tail_add(d, born[i]);
    atomic_fetch_add_explicit(&d->births_read, 1, memory_order_relaxed);
    return 0;
}

/* The threads whose clock reading failed (gone: observe) ended, and no
 * other did: `now` threads in all.  The listings and read_births read the
 * list in its order and keep the last threads read (d->tail); every thread
 * of the table was read before the last of them still there, the anchor,
 * which therefore now stands as many places earlier in the list as there
 * are gone threads before it (all of them but those of the tail after it).
 * Read from there, the anchor must be the first entry (else another thread
 * ended before it); every entry after it is a thread born since, noted as
 * read_births does; and the count must come out at `now`.  Then the gone
 * ones are forgotten as a listing forgets the threads it did not find.  0,
 * or -1: list them all.  (The pool bench's busy thread, ending, made a
 * listing of its 1,018 threads, ~1 ms of the sampler thread's CPU; a pool
 * whose threads come and go made one for each thread gone.) */
static int read_deaths(vmp_delivery *d, int64_t now)
{
    int64_t gone = 0;
    for (size_t i = 0; i < d->n_threads; i++)
        gone += d->threads[i].delta < 0;
    /* the anchor: the last of the tail not gone (a thread of the tail that
     * is not in the table, one skipped or missed, ended unseen if at all:
     * the count tells) */
    int a = d->n_tail - 1, gone_after = 0;
    for (vmp_delivery_thread *t; a >= 0 && (t = find(d, d->tail[a])) && t->delta < 0; a--)
        gone_after++;
    int64_t at = d->listed - d->n_tail + a - (gone - gone_after); /* the anchor's place now */
    if (!gone || a < 0 || d->listed < d->n_tail || at < 0 || now < d->listed - gone)
        return -1;
    /* (a thread read before that stands after the anchor: not the order
     * known, so no thread read before may follow it) */
    pid_t born[VMP_BORN_MAX];
    int64_t n_born = read_list_from(d, at, d->tail[a], 0, born);
    if (n_born < 0 || d->listed - gone + n_born != now)
        return -1;
    uint64_t missed = 0;
    for (size_t i = 0; i < d->n_threads; i++)
        d->threads[i].seen = d->threads[i].delta >= 0;
    int kept = 0;
    for (int i = 0; i <= a; i++) {
        vmp_delivery_thread *t = find(d, d->tail[i]);
        if (!t || t->delta >= 0)
            d->tail[kept++] = d->tail[i];
    }
    d->n_tail = kept;
    for (int64_t i = 0; i < n_born; i++) {
        tail_add(d, born[i]);
        if (note_thread(d, born[i]) < 0)
            missed++;
    }
    d->listed += n_born - gone;
    forget_unseen(d, missed);
    atomic_fetch_add_explicit(&d->deaths_read, 1, memory_order_relaxed);
    return 0;
}

/* Lists the threads when their count changed (only the threads born since
 * when no other changed: read_births), when asked to, or when the last
 * listing is old. */
static void maybe_scan(vmp_delivery *d, int64_t now)
{
    struct stat st;
    int64_t nlink = d->task_fd >= 0 && fstat(d->task_fd, &st) == 0 ? (int64_t)st.st_nlink : -1;
    if (nlink == d->last_nlink && !d->rescan && now - d->last_rescan < VMP_RESCAN_NS)
        return;
    if (nlink > d->last_nlink && d->last_nlink >= 0 && !d->rescan && now - d->last_rescan < VMP_RESCAN_NS &&
        read_births(d, nlink - 2) == 0) {
        d->last_nlink = nlink;
        return;
    }
    if (nlink < d->last_nlink && nlink >= 2 && !d->rescan && now - d->last_rescan < VMP_RESCAN_NS) {
        /* (fewer threads, none found gone yet: a thread that ends has most
         * likely run lately, an active one; their clocks say which) */
        for (size_t i = 0; i < d->n_active; i++) {
            vmp_delivery_thread *t = &d->threads[d->active[i]];
            atomic_fetch_add_explicit(&d->clock_reads, 1, memory_order_relaxed);
            if (thread_cpu_ns(t->tid) < 0) {
                t->delta = -1;
                d->rescan = 1;
            }
        }
    }
    if (d->rescan && nlink >= 2 && now - d->last_rescan < VMP_RESCAN_NS && read_deaths(d, nlink - 2) == 0) {
        d->last_nlink = nlink;
        d->rescan = 0;
        return;
    }
    scan_threads(d);
    d->last_nlink = nlink;
    d->last_rescan = now;
    d->rescan = 0;
}

/* Sleeps to CLOCK_MONOTONIC `wake_at`: 0, or -1 as soon as the stop word
 * is set.  On the stop word's futex: FUTEX_WAIT_BITSET's timeout is an
 * absolute CLOCK_MONOTONIC time, the same deadline clock_nanosleep kept,
 * so the rounds' timing is unchanged; a wake-up that finds the word still
 * 0 (spurious, a signal) waits again for the same deadline. */
static int sleep_until(const vmp_delivery *d, int64_t wake_at)
{
    struct timespec dl = {wake_at / 1000000000LL, wake_at % 1000000000LL};
    while (d->stop && !atomic_load(d->stop)) {
        if (syscall(SYS_futex, (int *)d->stop, FUTEX_WAIT_BITSET_PRIVATE, 0, &dl, NULL, FUTEX_BITSET_MATCH_ANY) == 0)
            continue;
        if (errno == ETIMEDOUT)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            break; /* (no futex here: sleep as before) */
    }
    if (d->stop && atomic_load(d->stop))
        return -1;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &dl, NULL) == EINTR) {
    }
    return 0;
}

int64_t vmp_delivery_wait(vmp_delivery *d)
{
    int64_t wake_at = d->next;
    if (d->catchup && d->last_round + d->catchup_gap < wake_at)
        wake_at = d->last_round + d->catchup_gap;
    if (sleep_until(d, wake_at) < 0) {
        atomic_fetch_add_explicit(&d->stopped_waits, 1, memory_order_relaxed);
        return -1;
    }
    int64_t now = clock_ns(CLOCK_MONOTONIC), periods = 0;
    atomic_fetch_add_explicit(&d->rounds, 1, memory_order_relaxed);
    if (now >= d->next) {
        /* (sources mode: a round stands for round_periods periods) */
        int64_t step = d->period_ns * d->round_periods;
        int64_t rounds = 1 + (now - d->next) / step; /* >1: woken late on a busy machine */
        periods = rounds * d->round_periods;
        atomic_fetch_add_explicit(&d->periods, (uint64_t)d->round_periods, memory_order_relaxed);
        if (rounds > 1)
            atomic_fetch_add_explicit(&d->late, 1, memory_order_relaxed);
        d->next += rounds * step;
        if (now - d->last_scan >= VMP_SCAN_NS) {
            maybe_scan(d, now);
            d->last_scan = now;
        }
    }
    d->last_round = now;
    return periods;
}

/* Wall clock, a round while the program paused sampling: the first one
 * hands over the repeats owed from before the pause (it began somewhere in
 * this round); none is counted while it lasts, and no signal is sent (the
 * handler would record nothing). */
static void pause_round(vmp_delivery *d, int64_t periods)
{
    for (size_t i = 0; i < d->n_threads; i++) {
        vmp_delivery_thread *t = &d->threads[i];
        if (d->sources) {
            /* (sources: the handlers pay nothing while paused either) */
            size_t k = t->place;
            if (!d->was_paused && known_blocking(t))
                count_blocked(d, t, d->last_round - periods * d->period_ns);
            else if (!d->was_paused && t->held)
                count_cut(d, t, d->last_round - periods * d->period_ns);
            else if (!d->was_paused && t->idle_cpu >= 0 && (t->state == STILL || wall_idle(t, k)))
                wall_pay(d, t, d->last_round - periods * d->period_ns, 0);
            if (atomic_load(&base_tid[k]) == t->tid)
                atomic_store(&base_cpu[k], d->last_round);
            t->owed = 0;
            continue;
        }
        if (!d->was_paused) {
            if (t->state == STILL)
                hand_over_repeats(d, t, d->period_no - periods);
            else
                flush_lazy(d, t);
        }
        t->still_from = d->period_no + 1;
        t->lazy = 0;
        t->unasked = 0; /* (as the sources' marks move past a pause) */
        if (t->state == ACTIVE)
            t->owed = 0;
    }
    d->was_paused = 1;
}

/* Sources mode: the rounds' length.  On the wall clock they are
 * VMP_WAIT_ROUND_NS apart for VMP_WAIT_HOLD_NS after a probe found a
 * thread waiting in a system call within VMP_WAIT_HOLD_NS of the last one
 * that found it so (probe_answer_read: one that waits now and then has its
 * short waits found; a crowd that waits from the start does not count).
 * Else, on either clock, VMP_QUIET_ROUND_NS apart once they found nothing
 * to do for VMP_QUIET_AFTER_NS (header), else VMP_SOURCE_ROUND_NS. */
static void round_length(vmp_delivery *d, uint64_t sent_before, uint64_t opened_before)
{
    int fast = !d->cpu_clock && d->last_round < d->fast_until;
    /* (cleared each round: a wait no probe saw counts for the round that
     * reads it) */
    int unseen = !d->cpu_clock && atomic_load_explicit(&unseen_wait, memory_order_relaxed) &&
                 atomic_exchange_explicit(&unseen_wait, 0, memory_order_relaxed);
    if (unseen)
        atomic_fetch_add_explicit(&d->unseen_waits, 1, memory_order_relaxed);
    if (fast || unseen || d->changed || atomic_load_explicit(&d->sent, memory_order_relaxed) != sent_before ||
        atomic_load_explicit(&d->sources_opened, memory_order_relaxed) != opened_before || d->catchup)
        d->steady_since = d->last_round;
    d->changed = 0;
    int64_t ns = fast ? VMP_WAIT_ROUND_NS
                 : d->quiet_rounds && d->last_round - d->steady_since >= VMP_QUIET_AFTER_NS ? VMP_QUIET_ROUND_NS
                                                                                            : VMP_SOURCE_ROUND_NS;
    int64_t want = ns > d->period_ns ? ns / d->period_ns : 1;
    if (want != d->round_periods) {
        d->round_periods = want;
        d->next = d->last_round + want * d->period_ns;
    }
}

void vmp_delivery_send(vmp_delivery *d, int64_t periods)
{
    uint64_t sent_before = atomic_load_explicit(&d->sent, memory_order_relaxed);
    uint64_t opened_before = atomic_load_explicit(&d->sources_opened, memory_order_relaxed);
    d->catchup = 0;
    d->period_no += periods;
    /* The active threads' CPU time (and what a period owes them), the
     * sending thread's own, then the process's: what is left unexplained
     * was used by still threads, new ones or ended ones. */
    for (size_t i = 0; i < d->n_active; i++) {
        vmp_delivery_thread *t = &d->threads[d->active[i]];
        /* (one found gone ended somewhere before this round: its periods
         * are not owed, nor counted lost at its end, scan_threads) */
        if (observe(d, t) >= 0 && !d->cpu_clock)
            t->owed += periods;
    }
    observe_own(d);
    if (d->test_before_process_clock)
        d->test_before_process_clock();
    int64_t process = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    d->unexplained += process - d->process_cpu;
    d->process_cpu = process;
    /* A round's skew (a thread read early counts less than the process
     * saw) comes back with the opposite sign the next round; bounded below
     * so that it never hides more than that. */
    if (d->repeats_on && d->paused && atomic_load_explicit(d->paused, memory_order_relaxed)) {
        pause_round(d, periods);
        return;
    }
    d->was_paused = 0;
    if (d->unexplained > VMP_WAKE_NS)
        explain_again(d);
    if (d->unexplained > VMP_WAKE_NS)
        poll_still(d, periods);
    else if (d->unexplained < -VMP_WAKE_NS)
        d->unexplained = -VMP_WAKE_NS;
    visit_still(d, periods);
    d->last_periods = periods;
    /* Backwards: a thread made still moves the last one into its place. */
    for (size_t i = d->n_active; i-- > 0;) {
        vmp_delivery_thread *t = &d->threads[d->active[i]];
        if (t->delta < 0)
            continue;
        if (d->sources)
            source_round(d, t, d->last_round);
        else
            deliver(d, t, d->last_round);
    }
    if (d->sources)
        round_length(d, sent_before, opened_before);
}

void vmp_delivery_stop(vmp_delivery *d)
{
    /* (a handler from now on pays nothing: below, per period and on the
     * wall clock with sources, the stop counts every period up to now, and
     * one paid after counted it twice; on the CPU clock with sources, one
     * per signal as before: the stop leaves the period its event was
     * counting, less than one, to it) */
    atomic_store(&per_period_claims, d->sources && d->cpu_clock ? 0 : 2);
    atomic_store(&credit_period, 0);
    int wall_sources = atomic_exchange(&wall_counting, 0); /* (the handlers pay no more) */
    int paused = d->paused && atomic_load(d->paused);
    int64_t now = clock_ns(CLOCK_MONOTONIC);
    d->stop_deadline = now + VMP_STOP_WAIT_NS; /* (the repeats below wait for room, bounded) */
    /* Per period, wall clock: the whole periods from the last round's to
     * the stop, which no round counted.  An idle thread's repeat its sample
     * as the rounds' would have (a blocker's are counted blocked:
     * count_blocked_after_last_round); they were counted nowhere (a sender
     * kept from a CPU before the stop left out every one of them). */
    int64_t after = 0, counted_to = d->start_ns + d->period_no * d->period_ns;
    if (!d->cpu_clock && !d->sources && d->repeats_on && !paused && now > counted_to)
        after = (now - counted_to) / d->period_ns;
    for (size_t i = 0; i < d->n_threads; i++) {
        vmp_delivery_thread *t = &d->threads[i];
        size_t k = t->place;
        if (t->awaiting && !signal_pending(k) && atomic_load_explicit(&sampled_tid[k], memory_order_acquire) == t->tid &&
            atomic_load_explicit(&sampled_cpu[k], memory_order_acquire) == NOT_PYTHON &&
            atomic_load_explicit(&sampled_tid[k], memory_order_acquire) == t->tid)
            /* An answer handled after the last round read this thread (a
             * loaded machine let it run late) is counted too: not_python
             * says how many signals were answered so; the last one was
             * left out (3 signals, 2 answers at load ~20). */
            atomic_fetch_add_explicit(&d->not_python, 1, memory_order_relaxed);
        if (!paused)
            read_late_answer(d, t);
        count_capped(d, t, 0);
        count_unpaid_signal(d, t, !paused);
        count_unfound(d, t);
        if (!paused && !d->sources && known_blocking(t))
            count_after_last_round(d, t, now, &d->periods_blocked);
        if (d->sources && known_blocking(t)) {
            int64_t cpu = d->cpu_clock ? thread_cpu_ns(t->tid) : now;
            if (!paused)
                count_blocked(d, t, cpu >= 0 ? cpu : t->last_cpu);
        } else if (wall_sources && (t->held || atomic_load(&cut_cpu[t->place]) >= 0)) {
            if (!paused)
                count_cut(d, t, now);
        } else if (wall_sources) {
            int64_t cpu = !paused && atomic_load(&rep_cpu[t->place]) >= 0 ? thread_cpu_ns(t->tid) : -2;
            if (cpu > -2)
                wall_pay_waited(d, t, now, cpu, cpu >= 0); /* (-1: it ended meanwhile) */
        } else if (t->state == STILL && !d->cpu_clock) {
            /* (one that ran since it was last read woke somewhere in the
             * last round, as in wake(): that round's periods have no
             * sample, nor have those after it, counted lost) */
            if (thread_cpu_ns(t->tid) == t->last_cpu) {
                hand_over_repeats(d, t, d->period_no + (t->blocks ? 0 : after));
            } else {
                int64_t from = d->period_no - d->last_periods + 1;
                from = t->still_from > from ? t->still_from : from;
                if (d->repeats_on && !paused && !t->not_python && !known_blocking(t) && d->period_no + after >= from)
                    atomic_fetch_add_explicit(&d->periods_dropped, (uint64_t)(d->period_no + after - from + 1),
                                              memory_order_relaxed);
                hand_over_repeats(d, t, d->period_no - d->last_periods);
            }
        } else {
            /* (an active one found idle since its sample, not signalled
             * since, that still has not run, repeats it; any other Python
             * thread had no sample for those periods: counted lost, as
             * with sources) */
            if (t->lazy)
                flush_lazy(d, t);
            if (after > 0 && !t->not_python && !known_blocking(t)) {
                if (t->idle_cpu >= 0 && !t->blocks && t->owed <= 0 && thread_cpu_ns(t->tid) == t->last_cpu)
                    give_repeats(d, t->tid, after, 0, d->period_no + 1);
                else
                    atomic_fetch_add_explicit(&d->periods_dropped, (uint64_t)after, memory_order_relaxed);
            }
        }
        if (!paused && !t->not_python && !known_blocking(t)) {
            /* What no sample and no repeat paid, and none will: a thread a
             * loaded machine kept from a CPU with a signal pending (its
             * periods since its mark; per period, those owed), counted
             * lost.  They were counted nowhere: an idle thread starved
             * for 100 ms had 1 sample and no loss for its 100 periods. */
            if (wall_sources) {
                skip_periods(d, t, now, &d->periods_dropped);
            } else if (d->sources) {
                /* (CPU clock: a thread living inside system calls, where
                 * its event sends nothing) */
                int64_t cpu = thread_cpu_ns(t->tid);
                drop_unpaid(d, t, cpu >= 0 ? cpu : t->last_cpu);
            } else {
                drop_owed(d, t);
                if (d->cpu_clock)
                    count_after_last_round(d, t, now, &d->periods_dropped);
            }
        }
        source_close(d, &d->threads[i]);
        atomic_store(&base_tid[d->threads[i].place], 0);
    }
    d->stop_deadline = 0;
    free(d->threads);
    free(d->active);
    free(d->index);
    d->threads = NULL;
    d->active = NULL;
    d->index = NULL;
    d->n_threads = d->cap = d->n_active = 0;
    if (d->task_fd >= 0)
        close(d->task_fd);
    task_dir_fd = -1;
    if (d->has_process_timer)
        timer_delete(d->process_timer);
    d->has_process_timer = 0;
    d->task_fd = -1;
}
