/*
 * vmp_delivery.h - when the sampler thread signals which thread.
 *
 * One thread (the sampler's, or the bench's empty-signal baseline's, which
 * must deliver exactly alike for the comparison to mean anything) sleeps to
 * absolute CLOCK_MONOTONIC deadlines one period apart and sends each thread
 * of the process the samples it is owed with tgkill:
 *   - CPU clock: one per period of CPU time the thread used since the last
 *     round (a thread born during the run: all its CPU time);
 *   - wall clock: one per period, whatever the thread is doing.
 * Threads are found in /proc/self/task (one getdents on a kept descriptor),
 * so none has to register; the table grows with them (no limit but memory).
 *
 * A thread is never sent a second signal before it handled the first (two
 * pending signals of one kind merge into one): the handler calls
 * vmp_delivery_handled(), and what is still owed is sent in catch-up rounds.
 *
 * Cost per round.  A round does not look at every thread: only at the
 * *active* ones, those that ran lately.  A thread whose CPU clock did not
 * move during a whole round becomes *still* and is left out of the rounds.
 * That a still thread ran again is told by the process's CPU clock (the sum
 * of all its threads'): each round adds to `unexplained` what the process
 * used beyond what the threads read that round used; when unexplained
 * exceeds VMP_WAKE_NS, the active threads, its own and the process's clock
 * are read again (an active thread that ran on between its reading and the
 * process's, across a tick, is no still thread: explain_again), and if it
 * still does, the still threads are read once each, and those that
 * ran are active again.  (The readings are not atomic, but the skew of one
 * round cancels against the next: what accumulates is what still threads,
 * new threads and ended ones used.)  The process's thread count (the link
 * count of /proc/self/task, one fstat) tells when to list the threads again;
 * they are listed anyway when the still threads cannot explain the
 * unexplained CPU time, when a clock reading finds a thread gone, and
 * every VMP_RESCAN_NS.
 *
 * Idle threads (wall clock): a thread that has not run since its last sample
 * still has that sample's stack, so instead of waking it with a signal the
 * sender asks for the last sample again (the `repeat` callback, `count`
 * samples at once).  "Has not run" is read off the thread's CPU clock: it
 * used at most VMP_IDLE_SLACK_NS after the sample (the end of the handler
 * and restarting the call it was in), and not a nanosecond more since; and
 * the sample found it inside a system call (the handler reads that from
 * the interrupted registers, vmp_delivery_sampled: on x86-64; elsewhere
 * every sample counts as such).  A thread that was inside a system call
 * and has not run since is still inside it: its Python stack cannot have
 * changed, so no refresh signal is needed, however long it waits.  A sample
 * that caught the thread running (it blocked microseconds later) is not
 * repeated: the thread gets one more signal, which finds it blocked.
 * A still thread's repeats are counted lazily by periods (idle since period
 * k) and handed over in one call: when it runs again (before its new
 * sample, so that the writer repeats the right one), when a visit finds
 * it still idle (its clock read; a thread's first visit comes within
 * VMP_REPEAT_FLUSH_NS of its becoming still, the next ones twice as far
 * apart each time it is found still, from VMP_REPEAT_FLUSH_NS up to
 * VMP_VISIT_MAX_NS: 250 ms, 500 ms, 1 s, 1 s, ..., so that 1,000 idle
 * threads cost 1,000 clock readings a second, not 4,000), when a listing
 * finds it ended, at stop, and when a round
 * sees that the program paused sampling (`paused`: no repeat is owed for
 * the periods of the pause).  A thread found running again after a round
 * that came late (the periods of that round: it woke somewhere in them)
 * gets those periods with its new sample, not its old one.  The handler
 * reports its sample with vmp_delivery_sampled().  Likewise a thread that
 * could not run (a loaded machine keeps it waiting for a CPU) handles its
 * signal late, but its stack did not change meanwhile: the periods it
 * waited repeat the sample it finally took (VMP_WAITED_SLACK_NS), unless
 * it ran after that sample: then the periods of the round that read the
 * answer (it ran somewhere in them) go to its next sample.  Those it owed
 * up to the latest round that found it had run before the signal (a
 * running thread's backlog after a late round) did not wait for it: they
 * go in catch-up rounds.  An answer no
 * round read (it came after the last one, or the thread then ended) is
 * read at stop, or when a listing finds the thread gone: the periods up
 * to the last round that found its signal pending are its repeats.  Repeats are
 * never capped as signals are (VMP_MAX_BACKLOG_NS): a round that came
 * late owes an idle thread every period it missed, and a thread that did
 * not run in a round keeps what it owes beyond the backlog for the sample
 * its next signal takes (one signal a round whatever it owes; before its
 * first sample too).  Repeats that find the
 * ring full at a visit wait for the next one; elsewhere they are lost and
 * counted (repeats_lost, in the profile's samples_dropped).
 *
 * Nothing lost uncounted: each period of a thread from the start to the
 * stop (or to the last reading of its clock before its end) is a sample, a
 * repeat, or counted: lost (periods_dropped and the others that
 * vmp_delivery_dropped sums) or not sampled (periods_blocked); a thread not
 * Python's has none.  At the stop and at a thread's end, what no sample
 * paid and none will is counted lost: per period, what it owes and, at the
 * stop, the periods after the last round of a thread not idle (its CPU
 * time on the CPU clock); with sources, its periods from its paid mark (to
 * the stop, or to the last round that read it alive), less the one its
 * event was counting.  Per period, the period of the signal last sent
 * (counted paid when sent) is its handler's or, when the thread's end or
 * the stop comes first, counted lost: one exchange on the place decides
 * (the handler's in vmp_delivery_take_owed), so a signal still pending at
 * the stop, which the caller's SIG_IGN discards, or handled after it,
 * paying nothing then, is counted once.  With sources on the wall clock,
 * what a thread born during the run waited before a listing found it
 * (from its birth to its mark, the listing less its CPU time) is counted
 * lost once it is known to be Python's; its birth is read from /proc in
 * clock ticks (USER_HZ), so what it waited within its birth's tick (up to
 * 10 ms) is not.  Not counted: what a thread did after the last reading
 * of its clock before its end (less than a round: its clock and /proc
 * entry go with it).
 *
 * First samples (wall clock): a Python thread already waiting when the run
 * starts would need a probe to get its first sample: a signal that wakes
 * it, and the sender's /proc/<tid>/syscall read and tgkill, for each of
 * them (1,000 waiting threads: 1,000 of each).  The caller may read
 * their stacks while none of them can run Python code (enable() holds the
 * GIL) and hand them over with `first_sample`: each such thread is then
 * idle in that sample from the start, paid against the CPU clock baseline
 * the start reads (with the GIL still held): the rule above, read from the
 * baseline instead of a handler's clock reading.  Its stack is one it
 * cannot have left without running (frames change only under the GIL), so
 * the slack is the same; a thread that runs again (one waiting for the
 * GIL) is found running and sampled as any other.
 *
 * Threads that are not Python's (no Python thread state: C library pools,
 * BLAS, watchdogs): the handler reports it; the first such answer is
 * checked once more VMP_NOT_PYTHON_MIN_NS later (a Python thread answers so
 * too in the microseconds before it binds its thread state), and then the
 * thread is signalled again only after it used a further stretch of CPU
 * time,
 * VMP_NOT_PYTHON_MIN_NS (or a period if longer) at first, twice as long
 * after each answer "not Python", at most VMP_NOT_PYTHON_MAX_NS.  A C thread
 * that sleeps is thus signalled twice whatever the clock (or a few times
 * more over a long run if it wakes often); one that computes, about once a
 * second of its CPU time.  The caller may know at the start which threads
 * are Python's (python_tids, read with the GIL); the others there then are
 * taken as having answered "not Python" twice already: a C thread that
 * sleeps is never signalled, and one that computes is asked only after its
 * first stretch.  (Each signal would end a sleep: nanosleep() returns
 * EINTR, and C code rarely sleeps again for the rest.)
 *
 * Threads that block the signal: a signal still pending after
 * VMP_BLOCKED_CHECK_NS makes the sender read that thread's blocked mask
 * (/proc/self/task/TID/status), and once more after as long again (a
 * reading while the thread is inside our handler, between
 * vmp_delivery_entered and vmp_delivery_left, where the signal is blocked
 * too, does not count: a thread kept from a CPU there is no blocker; nor
 * do two readings between which a runnable thread hardly ran, less than
 * VMP_BLOCKED_RAN_NS of CPU time, or handled one of our signals: kept from
 * a CPU, it may be in the handler's few instructions before
 * vmp_delivery_entered or after vmp_delivery_left, and it is read again
 * from the start); a
 * thread that blocks it is sent nothing more and holds back no catch-up
 * round until it handled the pending one (it is counted in
 * threads_blocking when both readings found it blocked).  Its periods
 * (CPU clock: of its CPU time) are not sampled and are counted in
 * periods_blocked, apart from the samples lost (periods_dropped): such a
 * thread may have no Python stack at all (a C library's thread that
 * blocks every signal); with sources the sender moves its paid mark past
 * them each round, so that once it unblocks its handler pays only what
 * came after.  They count from its last answer (or its finding) to the
 * stop on both schedules: per period, the periods a thread not Python's
 * was not asked about (it is asked only after stretches of its CPU time)
 * are kept for that count, as the sources' paid mark keeps them, and the
 * stop counts those after the last round.  Per period, what the backlog cap took before its first
 * signal, and that signal's own period, are counted there too (the cap's
 * periods are counted dropped only once a signal sent after them was
 * handled).  (The caller drops signals still pending when
 * it stops by setting SIG_IGN, which discards them in every thread.)
 *
 * Per-thread sources (CPU clock, `sources` set): the sender wakes per
 * period only to read clocks and send one signal, which costs ~50 us of CPU
 * per wake-up on these machines (5% of a core at 1 kHz, 50% at 10 kHz).
 * Instead, each thread that runs gets its own CPU-time event from the kernel
 * (perf_event_open's task clock, sample period = the profiling period),
 * whose overflow signals that thread (F_SETOWN_EX to its tid): it fires on
 * the thread's own CPU time with a high-resolution timer that runs only
 * while the thread is on a CPU, so a sleeping thread is never woken (a
 * thread's POSIX CPU-time timer would do the same but fires on the tick
 * only, ~250 Hz; a CLOCK_MONOTONIC timer fires in sleep too).  What a
 * thread is owed is counted by the handler itself, from the thread's CPU
 * clock against a base the sender set when it found the thread
 * (vmp_delivery_take_owed): a signal that came late pays for every period
 * since in one sample of weight n.  The sender then wakes every
 * VMP_SOURCE_ROUND_NS (CPU clock: VMP_QUIET_ROUND_NS while nothing changes,
 * below): it lists new threads and opens their events, reads
 * the answers of threads that are not Python's (the handler pauses such a
 * thread's event at once; the sender resumes it as above, after
 * VMP_NOT_PYTHON_MIN_NS and then ever longer stretches of its CPU time),
 * finds threads that block the signal (CPU time owed for
 * VMP_BLOCKED_CHECK_NS and unpaid, then SigBlk read twice: their event is
 * closed), and signals with tgkill, once per round, the threads it could
 * give no event (more than VMP_MAX_SOURCES, or the open failed) for the
 * periods they owe.  Where the kernel refuses the events
 * (perf_event_paranoid above 2, a seccomp filter) or the signal is a
 * real-time one (queued, not merged: a thread that blocks it would fill the
 * queue and the kernel would send SIGIO instead), `sources` is cleared at
 * start and the per-period schedule above runs (so does the wall clock
 * without a `repeat` callback).
 *
 * Wall clock with sources: the same events (they run on the thread's CPU
 * time, and while a thread runs its CPU time is its wall time), so again
 * no thread of ours wakes per period, and the handler pays by wall time:
 * the periods of CLOCK_MONOTONIC time since those paid (base_cpu[] holds
 * the time paid up to, moved by compare-and-swap only; a thread born
 * during the run from when a listing found it, less the CPU time it had
 * used by then: never from before it existed).  A thread that
 * does not run is not signalled by its event: the sender, every
 * VMP_SOURCE_ROUND_NS, probes once a thread that is two periods or more
 * behind and not on a CPU (one tgkill; it waits, waits for a CPU, or has
 * no source) unless it is idle in a sample that may be repeated (taken
 * inside a system call, its clock unmoved since: the rule above), or
 * asleep in pause(), sigsuspend(), a relative nanosleep or a write that
 * waits for room, or runnable inside a write it was found waiting in and
 * handled no signal since (a signal would end the wait or cut the write:
 * waits_for_a_signal in vmp_delivery.c), or back in the absolute sleep its
 * last sample found it in, which that sample's signal ended (same_sleep:
 * CPython's time.sleep sleeps again after one), or in the select sleep for
 * the time left that ends where that one would have (same_select: the same
 * before 3.11); a sample outside a sleep taken within VMP_SLEEP_CARRY_NS of
 * the thread's CPU time after one that found it in one keeps that sleep's
 * record (its wait for the GIL after the signal).  A probe that found it outside a call (kept from a
 * CPU) makes the next one wait twice as long, until it runs again.  While
 * a thread waits now and then (a probe found it waiting within
 * VMP_WAIT_HOLD_NS of the last one that did) the rounds come every
 * VMP_WAIT_ROUND_NS, so that its short waits are seen.  With nothing to do
 * for VMP_QUIET_AFTER_NS they come every VMP_QUIET_ROUND_NS (below); a
 * handler whose thread's own event pays periods it did not run since a
 * sample taken outside a call (a wait, or a wait for a CPU, that no probe
 * saw: it began and ended between two rounds, and its periods go to this
 * sample) tells the sender so, and the rounds are short again.  A thread whose first answer was "not Python" is asked
 * again by a probe too (its event fires only if it runs).  The probe's handler pays
 * every period owed with its sample, which shows where the thread waits.
 * When the thread's last sample found it inside a system call, its next
 * signal's periods are split: those it did not run (its CPU clock since
 * that sample) repeat that sample (the handler hands them over first),
 * the rest are this one's - unless that signal is a probe of a thread
 * that ran since (it waits for a CPU, or in another call): the sender
 * then hands the repeats over up to where it left the call (at the
 * latest: the round less the CPU time it used since), and the periods
 * after are the probe's whole.  (A thread that waits for a CPU is off its
 * CPU too: split by its CPU time alone, the waits of a loaded machine
 * inside what it computed after the call repeated the call.)
 * An idle thread's repeats are otherwise
 * handed over by the sender as above (visits, end, pause, stop), through
 * the same mark: the sender claims the writer's place, then moves the
 * mark; if the thread's handler moved it first, the place stays empty.
 * So each period is paid once, and a repeat is written before any later
 * sample of its thread (the writer repeats the last one written).  A
 * wait shorter than two short rounds may go unseen: it is paid with the
 * thread's next sample (in long rounds, one shorter than two of them, once:
 * the rounds are short again after it).  The sender also visits, polls and
 * lists as above; it no longer counts periods per thread.
 *
 * Cut samples.  In native mode a sample's walk of the C stack may end at a
 * pc it has no unwind rule for yet (VMP_SAMPLE_KEPT_CUT): its outer frames
 * are missing, and the writer learns that pc's rule soon after.  Such a
 * sample is paid (its weight) like any other, but it is never repeated:
 * on the wall clock an idle thread's cut sample stood for its whole wait
 * (one stood for 193 periods).  Without sources the thread is then
 * signalled per period as one whose sample may not be repeated, each
 * signal's sample standing for its own period.  With sources a probe's
 * answer is "cut" (it resets the probe's backoff), and a thread whose last
 * sample was cut and that has not run since (its CPU clock within
 * VMP_CUT_SLACK_NS of that sample's) is not probed again
 * until the rules' generation (rules_generation) moved past the one that
 * sample's walk read: a probe before would be cut at the same pc, and would
 * end the thread's wait for nothing.  Its periods meanwhile are paid by
 * its next sample, which shows where it waits, unless the thread ran more
 * than the slack since the cut one (its clock read when that handler began,
 * vmp_delivery_entered: the handler's own work before it pays changes no
 * stack).  When no sample comes for
 * them (the thread runs again, ends, or the run pauses or stops while it
 * waits so), they are counted lost (periods_cut), never repeated.
 *
 * CPU clock, per period: a thread owed a sample is signalled only while it
 * is on a CPU (its clock moved between two readings microseconds apart):
 * a signal to a thread that went to sleep after using the CPU would cut its
 * sleep short (signal.pause() returned early).  What it owes waits until a
 * round finds it running.
 *
 * Contract:
 *   - vmp_delivery_entered(), vmp_delivery_left(), vmp_delivery_handled(),
 *     vmp_delivery_sampled(), vmp_delivery_this_tid(),
 *     vmp_delivery_is_ours(), vmp_delivery_not_a_probe(), vmp_delivery_take_owed(),
 *     vmp_delivery_in_system_call(), vmp_delivery_source_answer() and
 *     vmp_delivery_forget_tid() are
 *     async-signal-safe; the rest runs in
 *     the sending thread only, one sending thread per process at a time,
 *     except the figures (atomics).
 *   - The `repeat` callback runs in the sending thread and must be as cheap
 *     and lock-free as a signal (the sampler's claims one ring slot).
 *   - vmp_delivery_start, _wait, _send, _stop are called in that order by
 *     the sending thread; start allocates, _send may grow the table, stop
 *     hands over the repeats still counted and frees.
 */
#ifndef VMP_DELIVERY_H
#define VMP_DELIVERY_H

#include <stdatomic.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

/* The thread count is checked every 1 ms (every round), so that a thread
 * started during the run is sampled within a round; the threads are listed
 * again when it changed, when a round finds a thread gone or CPU time that
 * no thread listed explains, and at least every VMP_RESCAN_NS.  (A listing
 * is O(threads) in the kernel: ~1 ms with 1,000 threads here.  Once a
 * second it was the sampler thread's largest cost with 1,000 idle ones; the
 * count and the CPU time tell of every thread that matters sooner: one
 * born as another ended within a round is found by the CPU time it uses,
 * over VMP_WAKE_NS for any Python thread's start.) */
#define VMP_SCAN_NS 1000000LL
#define VMP_RESCAN_NS 10000000000LL

/* A thread whose source could not be opened is signalled by the sender,
 * and given one again no sooner than this later. */
#define VMP_SOURCE_RETRY_NS 1000000000LL

/* Samples owed to a thread are kept for up to 20 ms of periods (at least 16)
 * and sent in catch-up rounds; beyond that they are dropped rather than
 * burst, and counted (periods_dropped, in the profile's samples_dropped).  The sending thread is an ordinary thread: on 2 busy cores the
 * scheduler leaves it waiting 1-3 ms about every 10 ms (measured on the
 * 4-thread bench workload, wall clock at 10 kHz).  A cap of 16 periods lost
 * 13% of that workload's samples there. */
#define VMP_MAX_BACKLOG_NS 20000000LL
#define VMP_MIN_BACKLOG_PERIODS 16

/* At stop, every idle thread's owed repeats want a ring slot at once: with
 * thousands of threads waiting and a writer starved on a loaded machine,
 * 4-50% of them found the ring full and were lost.  Stopping waits, naps of
 * VMP_STOP_NAP_NS, up to VMP_STOP_WAIT_NS in all for the writer to make
 * room (none once the caller's room_in_vain says so); what still finds
 * none then is counted lost. */
#define VMP_STOP_WAIT_NS 1000000000LL
#define VMP_STOP_NAP_NS 200000LL

/* See "Idle threads" above.  A waiting thread uses 1-4 us between the
 * handler's clock reading and being asleep again (measured on 3.8 and 3.13,
 * 16 threads waiting on an Event). */
#define VMP_IDLE_SLACK_NS 10000LL
/* Wall clock with sources: the most CPU time a thread taken out of a sleep
 * by a signal may use before a sample inside another call (its wait for
 * the GIL, to look at the program's signals) keeps that sleep's record
 * (same_sleep).  A signal's handler and the wait: 35-100 us measured (3.8,
 * 3.13, load ~11). */
#define VMP_SLEEP_CARRY_NS 500000LL
#define VMP_REPEAT_FLUSH_NS 250000000LL
/* What the visits' spacing costs: a still thread that runs again is found
 * by the next round's poll when the still threads used more than
 * VMP_WAKE_NS since the last one; one that ran for less (with the others)
 * is found at its next visit, and if it waits elsewhere by then, the
 * periods until that visit repeat its old sample: up to VMP_VISIT_MAX_NS of
 * them for a thread idle that long (250 ms when every visit came 250 ms
 * apart).  And at stop each idle thread owes the periods since its last
 * visit: up to VMP_VISIT_MAX_NS of each to write then (at 1 kHz, 3,000
 * idle threads: up to 220 MB of records, which a starved writer may not
 * write within VMP_STOP_WAIT_NS; what it cannot is counted lost). */
#define VMP_VISIT_MAX_NS 1000000000LL

/* Wall clock: a signal that waited several periods for a thread that used
 * at most this much CPU time from the signal to its handler's entry (its
 * clock read right after the send and when the handler began: what the
 * handler does before its sample, first-touch page faults, a native walk,
 * changes no stack) found the stack the thread had all that time; those
 * periods repeat that sample.  What is left in it: kernel work the thread
 * finished after the send (a system call in progress, the munmap of a
 * 1 MiB buffer took 109-149 us in traced runs, and the thread may be
 * kept from a CPU inside it) and interrupts taken while it ran (a kernel
 * without IRQ time accounting, as this one, charges them to the thread: a
 * timer interrupt of 81 us, a TLB-shootdown IPI of 107 us, seen; the
 * starved thread of test_delivery.c, woken and sampled, was charged about
 * 20 us as a rule, 115-154 us in 3 of 100 runs at load 10-12, its periods
 * then counted dropped). */
#define VMP_WAITED_SLACK_NS 100000LL

/* See "Cut samples": a thread that used at most this much CPU time since
 * its cut sample (the end of that handler, restarting its wait, and the
 * next probe's delivery: 12-25 us measured, the first signal of a thread
 * the slowest) has the stack that sample found. */
#define VMP_CUT_SLACK_NS VMP_WAITED_SLACK_NS

/* See "Cost per round": CPU time of still threads that makes the sender
 * read them all.  Above the skew of one round's readings (microseconds),
 * below what a woken thread uses before it does anything worth a sample. */
#define VMP_WAKE_NS 20000LL

/* See settle() and poll_still() in vmp_delivery.c: the longest a thread
 * that a poll found running again stays active (read each round) before it
 * is still. */
#define VMP_STILL_AFTER_MAX_NS 1000000000LL

/* Per-thread sources: the sender's round, and the most events open at once
 * (each is a file descriptor of the program's process). */
#define VMP_SOURCE_ROUND_NS 10000000LL
#define VMP_MAX_SOURCES 64

/* Wall clock with sources: a thread whose probe found it outside a system
 * call (waiting for a CPU) is probed next when twice as far behind, up to
 * 2 << VMP_PROBE_SHIFT_MAX periods (one that runs without a source: every
 * round). */
#define VMP_PROBE_SHIFT_MAX 4

/* Wall clock with sources: after a round that read a probe's answer that
 * found a thread waiting within VMP_WAIT_HOLD_NS of the last one that found
 * it so, the rounds come every VMP_WAIT_ROUND_NS (at least a period) for
 * VMP_WAIT_HOLD_NS, so that the waits of a thread that waits now and then
 * are found (with 10 ms rounds a 7 ms sleep was seen one time in two at
 * best, its time paid with the next running sample).  (Waits found further
 * apart have no use for them: they would be over before its next wait.
 * Any second wait found made them before, 50 rounds of 1 ms for the pool
 * bench's main thread, found in its time.sleep and then in join().) */
#define VMP_WAIT_ROUND_NS 1000000LL
#define VMP_WAIT_HOLD_NS 50000000LL

/* Sources (`quiet_rounds` set): once the rounds found nothing to do for
 * VMP_QUIET_AFTER_NS (no thread came or went, none without a source, none
 * that is being asked whether it is Python's or blocks the signal, no
 * still Python thread found running, no signal sent, no event opened; on
 * the wall clock also no short rounds and no handler's word of a wait no
 * probe saw), they come every VMP_QUIET_ROUND_NS instead of
 * VMP_SOURCE_ROUND_NS: each wake-up of the sampler thread costs ~50 us of
 * CPU here, 0.5% of a core at 100 a second.  A thread known not to be
 * Python's (confirmed, asked again only after a stretch of its CPU time)
 * changes nothing when it runs: the pool bench's 16 C threads, waking every
 * 100 ms, kept the rounds short on both clocks.  The first round that finds
 * something makes them short again.  What that costs: a thread born in a
 * quiet stretch gets its event (its first sample, which pays all its CPU
 * time since its birth: the handler's cap is at least a quiet round) up to
 * VMP_QUIET_ROUND_NS late, and one that ends sooner is not sampled (with
 * short rounds: one that ends within 10 ms; on the wall clock, what it
 * waited before it was found has no sample either way); on the wall clock
 * a thread that begins to wait is probed up to VMP_QUIET_ROUND_NS late, and
 * a wait that ends before is paid with its next sample, once (above); the
 * fault guard is put back in front of the program's handler up to
 * VMP_QUIET_ROUND_NS late. */
#define VMP_QUIET_ROUND_NS 40000000LL
#define VMP_QUIET_AFTER_NS 500000000LL

#define VMP_NOT_PYTHON_MIN_NS 10000000LL
#define VMP_NOT_PYTHON_MAX_NS 1000000000LL
#define VMP_BLOCKED_CHECK_NS 10000000LL
/* ... and, between its two readings, a runnable thread ran this much CPU
 * time at least, with none of our signals handled, for them to count
 * (read_mask in vmp_delivery.c) */
#define VMP_BLOCKED_RAN_NS 250000LL

/* Places: the per-thread state shared with the signal handler (signals
 * sent and handled, the latest sample's answer, what a thread is paid up
 * to, its source) lives at the thread's place in a table of VMP_PLACES,
 * found by open addressing on its tid (home: the tid's low bits, so tids
 * handed out in order stay apart; then the next places in turn).  The
 * sending thread alone takes places (when it notes a thread) and gives
 * them back (when the thread ended, leaving a mark that lookups step over:
 * a place is never emptied during a run); a lookup, the handler's, takes no
 * lock and allocates nothing.  So two live threads never share one (before,
 * a thread whose slot tid mod 4096 was another live thread's was counted
 * one sample per signal).  A thread that finds no place (VMP_PLACES live
 * threads; pid_max is 32768 by default) is not sampled and is counted in
 * threads_missed (the profile's META threads_not_sampled). */
#define VMP_PLACES 16384
#define VMP_NO_PLACE ((uint32_t)-1)

static inline size_t vmp_place_home(pid_t tid)
{
    return (size_t)tid & (VMP_PLACES - 1);
}

/* Tests only: a run takes at most n places (VMP_PLACES by default). */
void vmp_delivery_test_limit_places(size_t n);

/* Tests only: tells the sender's next round what a handler tells it of a
 * wait no probe saw (wall clock with sources: round_length in
 * vmp_delivery.c). */
void vmp_delivery_test_unseen_wait(void);

/* Thread tid's place, or VMP_NO_PLACE (async-signal-safe; any thread). */
uint32_t vmp_delivery_place_of(pid_t tid);

/* The calling thread's place, or VMP_NO_PLACE (async-signal-safe; cached). */
uint32_t vmp_delivery_this_place(void);

/* What the handler's sample was (vmp_delivery_sampled). */
enum {
    VMP_SAMPLE_NONE = 0,       /* none kept (paused, buffer full, no frame) */
    VMP_SAMPLE_KEPT = 1,       /* a stack went into the buffer */
    VMP_SAMPLE_NOT_PYTHON = 2, /* the thread has no Python thread state */
    VMP_SAMPLE_KEPT_CUT = 3,   /* kept, but its native walk was cut for want of
                                * an unwind rule (vmp_native_walk.cut): see
                                * "Cut samples" */
};

typedef struct vmp_delivery_thread vmp_delivery_thread; /* vmp_delivery.c */

typedef struct vmp_delivery {
    /* set by the caller before vmp_delivery_start */
    int64_t period_ns;
    int cpu_clock;                /* 1: CPU clock, 0: wall clock */
    int signo;
    int sources;                  /* per-thread events if the kernel has them (cleared at start if not) */
    int own_table;                /* the sending thread has a descriptor table of its own (vmp_fd_own_table) */
    const _Atomic pid_t *skip[2]; /* threads never signalled (the caller's own); NULL: none */
    /* Wall clock only, may be NULL: write thread tid's last sample `count`
     * times more instead of signalling it, for `count` periods from `from`
     * (CLOCK_MONOTONIC ns where the first began; 0: not known); 0 when
     * queued, -1 when there was no room.  With `paid` (wall clock with
     * sources), the writer's place is claimed first, then *paid moved from
     * `from` to `to` by compare-and-swap; if it had moved already, the place
     * stays empty (nothing is written) and the answer is 1.  1 too when the
     * writer gave the place up before it was published (the callback counts
     * those periods lost): 1 is never the caller's to count. */
    int (*repeat)(pid_t tid, int64_t count, _Atomic int64_t *paid, int64_t from, int64_t to);
    /* May be NULL: non-zero when waiting for ring room at stop is in vain
     * (the writer cannot write: a pipe nobody reads, before an exec); the
     * repeats that find no room then are counted lost at once. */
    int (*room_in_vain)(void);
    /* Wall clock, may be NULL: non-zero while the program paused sampling
     * (no repeat is owed for those periods). */
    const _Atomic int *paused;
    /* The tids of the threads known to be Python's when the run starts
     * (read by vmp_delivery_start only), or n_python_tids -1: not known.
     * Every other thread there at the start is taken as one that answered
     * "not Python" (see "Threads that are not Python's"), without a signal
     * that would cut its sleep short. */
    const pid_t *python_tids;
    long n_python_tids;
    /* Wall clock, may be NULL: hands the writer, as the last sample of
     * thread python_tids[i] (at `place`), a stack the caller read while that
     * thread could run no Python code (enable() holds the GIL until the
     * start is done); 0 when it did, -1 when it has none (the caller's own
     * thread, no frame, no room in the ring).  Called by vmp_delivery_start
     * only.  A thread that got one is taken as idle in that sample since the
     * start, as if a probe had found it inside a system call at its CPU
     * clock's baseline: while that clock stands still it is not signalled
     * and its periods repeat that stack (a pool of threads waiting when
     * the run starts is not woken to be found waiting: "First samples"). */
    int (*first_sample)(long i, pid_t tid, uint32_t place);
    /* CPU clock with sources: the rounds may lengthen while nothing
     * changes (VMP_QUIET_ROUND_NS); not when each round must read
     * something for the samples (memory mode's RSS). */
    int quiet_rounds;
    /* Wall clock with sources, may be NULL (then a thread whose last sample
     * was cut is probed as any other): the generation of what the handlers'
     * walks know (vmp_native_rules_generation); see "Cut samples". */
    uint64_t (*rules_generation)(void);
    /* May be NULL: the caller's stop word.  vmp_delivery_wait sleeps on it
     * (a futex, to the round's deadline) and returns -1 at once when it is
     * non-zero: whoever sets it FUTEX_WAKEs it (vmp_word_changed), so that a
     * stop never waits for the end of a round (up to 40 ms: disable() took
     * 1-44 ms of wall time for ~1 ms of CPU). */
    const _Atomic int *stop;
    /* Tests only, NULL otherwise: called per period right before each
     * signal the round sends, after it read the thread's CPU clock (a test
     * lets the thread run there, as a loaded machine may). */
    void (*test_before_signal)(pid_t tid);
    /* Tests only, NULL otherwise: on the CPU clock, called right before the
     * check that a thread owed a signal is on a CPU, after the round read
     * its clock (a test lets it run into a sleep there, as a loaded machine
     * may); on the wall clock, right before the check that it waits in a
     * call a signal would end (a test lets it copy inside its write). */
    void (*test_before_check)(pid_t tid);
    /* Tests only, NULL otherwise: on the wall clock with sources, called
     * right before the check that a thread owed a probe is off its CPU
     * (its clock unmoved since the round read it), for a thread owed two
     * periods or more (a test lets it run there, as a thread with a CPU of
     * its own does). */
    void (*test_before_probe)(pid_t tid);
    /* Tests only, NULL otherwise: called each round between the threads'
     * CPU clock readings and the process's (a test lets a running thread
     * run on there, as a loaded machine may). */
    void (*test_before_process_clock)(void);

    /* figures, readable from any thread */
    _Atomic uint64_t periods;  /* deadlines woken for */
    _Atomic uint64_t rounds;   /* wake-ups (catch-up rounds too) */
    _Atomic uint64_t stopped_waits; /* waits the stop word ended before their deadline (not rounds) */
    _Atomic uint64_t late;     /* wake-ups that missed one or more deadlines */
    _Atomic uint64_t sent;     /* signals sent */
    _Atomic uint64_t repeated; /* samples of idle threads repeated instead */
    _Atomic uint64_t repeats_lost; /* ... that found no room in the ring at a time they could not wait */
    _Atomic uint64_t periods_dropped; /* periods beyond a backlog cap, neither signalled nor repeated (read
                                       * with vmp_delivery_dropped, which adds the handlers' own) */
    _Atomic uint64_t threads_max;     /* most threads in the table at once */
    _Atomic uint64_t threads_missed;  /* threads left out: no memory for the table */
    _Atomic uint64_t threads_blocking; /* threads found blocking the signal */
    _Atomic uint64_t periods_blocked;  /* ... their periods, not sampled (CPU clock: of their CPU time) */
    _Atomic uint64_t blocked_unsure;   /* two readings of a blocked mask that were one: the thread had not run (read again) */
    _Atomic uint64_t periods_cut;      /* wall clock with sources: periods after a cut sample that no
                                        * sample paid ("Cut samples"; in vmp_delivery_dropped) */
    _Atomic uint64_t not_python;      /* answers "no Python thread state" */
    _Atomic uint64_t polls;    /* rounds that read the still threads */
    _Atomic uint64_t cold_polls; /* ... the cold ones too (poll_still in vmp_delivery.c) */
    _Atomic uint64_t clock_reads; /* CPU clocks of other threads read */
    _Atomic uint64_t scans;    /* listings of /proc/self/task */
    _Atomic uint64_t births_read; /* ... of its end only, for the threads born since (read_births) */
    _Atomic uint64_t deaths_read; /* ... of its end only, for threads found gone by their clock (read_deaths) */
    _Atomic uint64_t unseen_waits; /* wall clock with sources: rounds told of a wait no probe saw (round_length) */
    _Atomic uint64_t visits;   /* still threads' clocks read by visits (visit_still) */
    _Atomic uint64_t first_samples; /* threads idle from the start in a stack first_sample handed over */
    _Atomic uint64_t sources_opened; /* per-thread events opened */
    _Atomic uint64_t probes_spared;  /* wall clock with sources: probes not sent to a thread runnable inside a
                                      * write it was found waiting in (waits_for_a_signal in vmp_delivery.c) */

    /* the sending thread's own (vmp_delivery.c) */
    pid_t pid;
    int task_fd;
    int starting;                 /* the start's own listing (note_thread) */
    timer_t process_timer;        /* makes the process's CPU clock cheap to read */
    int has_process_timer;
    vmp_delivery_thread *threads; /* [cap]; the first n_threads in use */
    size_t n_threads, cap;
    int32_t *index;               /* tid hash -> position in threads, -1: free */
    size_t index_mask;
    uint32_t *active;             /* positions of the active threads */
    size_t n_active;
    size_t sweep;                 /* next position the visits of still threads reach */
    int64_t visit_credit;         /* threads x ns owed visits, not made yet (visit_still) */
    int64_t stop_deadline; /* while stopping: when repeats that find the ring full stop waiting (0: not stopping) */
    int64_t max_owed, catchup_gap, next, period_no, round_periods, last_periods;
    int64_t start_ns;             /* per-period schedule: period k (period_no) ends at start_ns + k periods */
    int64_t fast_until;           /* wall clock with sources: short rounds until then (round_length) */
    int64_t steady_since;         /* sources: the rounds found nothing to do since (round_length) */
    int changed;                  /* ... this round found something */
    int repeats_on;               /* wall clock with a `repeat` callback */
    size_t n_sources;             /* per-thread events open */
    int max_sources;
    int64_t last_scan, last_rescan, last_nlink, process_cpu, self_cpu, unexplained;
    int64_t listed;               /* threads the last listing read, with those born since read_births read (-1: not known) */
#define VMP_TAIL_KEPT 16
    pid_t tail[VMP_TAIL_KEPT];    /* ... the last n_tail of them, in the list's order (read_deaths) */
    int n_tail;
    pid_t skip_tid[2];
    int64_t skip_cpu[2];
    int64_t last_round; /* CLOCK_MONOTONIC ns of the latest wake-up (the caller may read it) */
    int catchup, rescan;
    int was_paused;
} vmp_delivery;

/* The attributes of a thread's source (its CPU-time event): the task
 * clock, overflowing every period_ns of the thread's CPU time, disabled
 * until enabled.  bench/signal_floor.c measures what the kernel costs per
 * overflow of this very event. */
struct perf_event_attr;
void vmp_delivery_source_attr(struct perf_event_attr *a, int64_t period_ns);

/* Takes the CPU-time baseline of the threads already there (so CPU burned
 * from now on is sampled even if the sending thread is slow to get its first
 * wake-up).  0, or -1 when out of memory (nothing to stop then). */
int vmp_delivery_start(vmp_delivery *d);

/* Sleeps to the next deadline, or to the next catch-up round when samples
 * are still owed.  Returns the periods that passed (more than one: woken
 * late), or 0 for a catch-up round; lists the threads again when due.
 * Returns -1, no round, as soon as the `stop` word is set (at once when it
 * is set already): the caller stops without calling vmp_delivery_send. */
int64_t vmp_delivery_wait(vmp_delivery *d);

/* Adds what `periods` owe each thread and signals the threads owed one. */
void vmp_delivery_send(vmp_delivery *d, int64_t periods);

/* Hands over the repeats still counted for still threads, then frees. */
void vmp_delivery_stop(vmp_delivery *d);

/* Tests only, the sending thread: what d's table says of thread tid: -1
 * not in it; else VMP_TEST_ACTIVE when it is read each round (not still),
 * plus VMP_TEST_IDLE when it was found idle since its last sample (wall
 * clock: its periods repeat that sample). */
#define VMP_TEST_ACTIVE 1
#define VMP_TEST_IDLE 2
int vmp_delivery_test_state(const vmp_delivery *d, pid_t tid);

/* In the signal handler: its first and its last call, for every signal
 * (see "Threads that block the signal"). */
void vmp_delivery_entered(void);
void vmp_delivery_left(void);

/* In the signal handler, for every signal of ours (sent by the sending
 * thread, or fired by the thread's source: one sent while the source's
 * was pending merged with it). */
void vmp_delivery_handled(void);

/* In the signal handler, before vmp_delivery_handled(): what this signal's
 * sample was (VMP_SAMPLE_*), so that a kept one may be repeated while the
 * thread stays idle, a cut one never is, and a thread with no Python state
 * is left alone; in_call: the sample found the thread inside a system call
 * (vmp_delivery_in_system_call); generation: for VMP_SAMPLE_KEPT_CUT, the
 * rules' generation its walk read (vmp_native_walk.generation). */
void vmp_delivery_sampled(int outcome, int in_call, uint64_t generation);

/* In the signal handler, from its third argument: whether the interrupted
 * thread was inside a system call (a blocking one: a wait, a read, a
 * sleep): the registers show the instruction that enters the kernel about
 * to run again (a call the kernel restarts: SA_RESTART, restart_syscall),
 * or just run with -EINTR in rax (one it does not restart, like select).
 * Reads the two bytes at the pc, which fault on an execute-only page: call
 * it under a fault guard.  Elsewhere than on x86-64: not known, 1 (every
 * sample counts as one: the CPU clock's rule alone). */
int vmp_delivery_in_system_call(const void *ucontext);

/* The calling thread's kernel tid (cached; async-signal-safe). */
pid_t vmp_delivery_this_tid(void);

/* Normal context: reads /proc/self/task/<tid>/<name> of a thread of this
 * process into buf (NUL-terminated); the bytes read, or -1.  The sampler
 * thread's reads go through its kept /proc/self/task. */
ssize_t vmp_delivery_read_task_file(pid_t tid, const char *name, char *buf, size_t size);

/* In a fork child: the calling thread has a new tid; the parent's
 * per-thread events are closed (never freed: the parent's sender may have
 * been changing its table). */
void vmp_delivery_forget_tid(void);

/* In the signal handler: whether the signal is one the delivery sent
 * (tgkill from process pid) or a thread's source fired. */
int vmp_delivery_is_ours(const siginfo_t *info, pid_t pid);

/* In the signal handler, after vmp_delivery_is_ours: this signal of ours
 * is the thread's own (it sent it itself), not the sender's probe: its
 * answer is not a probe's (a thread whose first probe found it waiting
 * then counted as found waiting again, and made the rounds short for
 * VMP_WAIT_HOLD_NS). */
void vmp_delivery_not_a_probe(void);

/* In the signal handler, for a signal of ours: the samples the calling
 * thread is owed now, taken as paid (with sources: its CPU time since the
 * last one paid, in periods, at most the backlog; wall clock with sources:
 * the time since, see "Wall clock with sources"; 0: none yet).  Per
 * period: 1 for the period of the sender's signal, 0 when the thread's end
 * or the stop counted it lost first ("Nothing lost uncounted"); 1 before
 * any run.  *repeats: how many times to write the
 * thread's last sample again first (wall clock with sources; else 0). */
int64_t vmp_delivery_take_owed(int64_t *repeats);

/* Samples of the run lost by the delivery: repeats that found no room
 * (repeats_lost), periods dropped beyond a backlog cap, by the sender
 * (periods_dropped) or by a handler (a thread far behind on the CPU clock
 * with sources), and the periods after a cut sample no sample paid
 * (periods_cut).  Any thread. */
uint64_t vmp_delivery_dropped(const vmp_delivery *d);
/* Whether the handlers pay by wall time (the wall clock with sources: a
 * sample's repeats are the periods its thread then does not run).  Any
 * thread, async-signal-safe. */
int vmp_delivery_weighs_wall(void);
/* The periods that each thread's first sample of a signal of ours stood for
 * (counted by the handlers; set to 0 at vmp_delivery_start): with weights,
 * a thread born during the run has no earlier sample to repeat until then. */
uint64_t vmp_delivery_first_sample_periods(void);

/* In the signal handler, after vmp_delivery_take_owed(): the
 * CLOCK_MONOTONIC ns where the first period it took began (0: not known),
 * for the RSS of their records (memory mode): its *repeats periods come
 * first (or those lost after a cut sample), then the sample's, which
 * vmp_delivery_sample_from() says where they begin.  Known on the wall clock with sources, where a
 * signal pays the wall time since the thread's last one; the CPU clock's
 * periods are the thread's CPU time, whose wall times are not known (its
 * late signal's sample carries the one reading of its signal); the
 * per-period schedules pay one period a signal. */
int64_t vmp_delivery_owed_from(void);
int64_t vmp_delivery_sample_from(void);

/* In the signal handler, after vmp_delivery_sampled(): a thread whose
 * source fired and that has no Python thread state pauses its source, when
 * the sources are in the program's descriptor table (else the sender
 * pauses it at its next round: the handler's thread cannot reach the
 * sending thread's own table, and the number there may be a file of the
 * program's). */
void vmp_delivery_source_answer(const siginfo_t *info, int outcome);

#endif
