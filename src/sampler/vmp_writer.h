/*
 * vmp_writer.h - the writer thread: turns ring slots into profile records.
 *
 * It drains the ring (vmp_ring.h) in claim order when woken (vmp_ring_nap:
 * every 2-100 ms, as the ring fills, or when its bell rings), maps code
 * addresses to profile ids (an address reused by a new code object gets a
 * fresh id), encodes records with vmp_encode.h and writes them to the run's
 * fd, which may be a pipe (never sought or read).  At the end it drains what
 * is left, writes native names and the closing META records and the trailer.
 * The writer needs no GIL, so a producer waiting for room never deadlocks it.
 */
#ifndef VMP_WRITER_H
#define VMP_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "vmp_sampler.h"

/* Prepares the write buffer and empty id maps.  0, or -1 out of memory. */
int vmp_writer_prepare(void);

/* Puts the profile's header and the META records of cfg in the write
 * buffer (after vmp_writer_prepare), the first bytes the writer writes.
 * A META record that would leave less than half the buffer free is left
 * out.  0, or -1 when the header itself could not be encoded. */
int vmp_writer_write_head(const vmp_sampler_config *cfg, unsigned mode);

/* Starts the thread and waits until it knows its tid (so that the sampler
 * thread never signals it) and has tried the head once: written as far as
 * the file took it without waiting, the rest queued (a full pipe, a
 * terminal nobody reads, a FIFO nobody opened for reading yet); the
 * program's thread never waits for a reader here.  0; -1 when the thread
 * could not be started; -2 with errno when the file refused the head (a
 * pipe whose reader is gone, a full disk): the thread has ended then. */
int vmp_writer_start(void);

/* Tells the thread to finish (drain, end records, trailer) and waits. */
void vmp_writer_stop(void);

/* During the run the writer names the Python code objects it gives ids
 * to, without the GIL, reading them under the fault guard.  Call this,
 * without the GIL, before the guard goes (disable()): it returns once no
 * such reading is under way, and none begins after. */
void vmp_writer_end_live_names(void);

/* Async-signal-safe, from our fault handler (vmp_guard_on_fatal) for a
 * fault the program most likely dies of (a segfault in a C extension):
 * rings the writer and waits, at most VMP_CRASH_FLUSH_NS, for a round of
 * its begun after the call (drain, names, write) to end, so the samples
 * still in the ring (up to ~100 ms of them) are in the profile.  Once a
 * run (a program that recovers from its faults waits once); nothing from
 * the writer's own thread, nor without a run. */
#define VMP_CRASH_FLUSH_NS 200000000LL
void vmp_writer_flush_before_death(void);

/* Python's os.fork on 3.12+ counts the process's threads (vmp_sampler.c):
 * pause ends the thread at the start of a round, the run going on (the
 * ring keeps what is published meanwhile), within timeout_ns: 0 once the
 * thread has been joined, -1 when it did not get there in time (a long
 * native round) or its write under way got no byte out for stuck_ns (a
 * pipe nobody reads): the pause is then called off and the thread goes
 * on.  pause_ask only asks (the caller stops the sampler thread meanwhile;
 * -1: not running).  resume starts a thread again without waiting for it
 * (0, or -1): the sampler thread started after it waits for its tid. */
int vmp_writer_pause_ask(void);
int vmp_writer_pause(int64_t timeout_ns, int64_t stuck_ns);
int vmp_writer_resume(void);

/* Frees the id maps and last samples of a finished run. */
void vmp_writer_release(void);

/* Waits (without needing the GIL; call it without) until the writer has
 * written out everything published so far and, in native mode, the names of
 * the native functions met so far.  0, or -1 after timeout_ns, or once the
 * writer has been stuck for stuck_ns (vmp_writer_stuck_ns). */
int vmp_writer_sync(int64_t timeout_ns, int64_t stuck_ns);

/* How long the write under way has got no byte out (a pipe nobody reads):
 * 0 when the writer is not writing, INT64_MAX once it gave up (the profile
 * could not be written, or failed).  Any thread.
 *
 * The writer never blocks in the kernel on a pipe or socket: it writes to
 * them without blocking and waits for room itself.  During the run it
 * waits as long as the reader takes (the ring fills meanwhile: samples
 * that find no room are counted dropped); once vmp_writer_stopping() was
 * called (disable() begins), it gives the profile up (ETIMEDOUT) after
 * 10 s without a byte out, counted from then at the earliest: so disable()
 * ends within about 10 s even when nobody reads. */
int64_t vmp_writer_stuck_ns(void);
void vmp_writer_stopping(void);

/* How long a producer may stay between its claim of a ring slot and its
 * publish before the writer gives the slot up, during the run as at the
 * stop.  A handler, a repeat or a name takes microseconds there; one that
 * stays longer is stopped (a debugger, SIGSTOP of the thread through
 * ptrace) or starved, and may stay for ever: the writer, which writes in
 * claim order, wrote nothing more, the ring filled behind the slot and
 * every later sample of the process was dropped until disable().  Giving
 * the slot up loses that one producer's content (counted; a name is put in
 * the stream again) and is safe whenever it resumes (vmp_ring.h). */
#define VMP_STALL_NS 1000000000LL

/* The stop, when it left handlers behind (vmp_sampler.c, stop_signals):
 * every slot claimed before `index` whose producer is not done is given
 * up at once, not after VMP_STALL_NS: a handler left behind may never
 * publish, and the stop has waited VMP_STOP_WAIT_NS for it already
 * (disable() took that twice).  Any thread; indexes only grow. */
void vmp_writer_give_up_before(uint64_t index);

/* Tests only: the slots the writer gave up on in this run, (after waiting
 * VMP_STALL_NS, at once for a stop that left handlers behind). */
void vmp_writer_test_give_ups(uint64_t counts[2]);

/* Wake-ups of the writer thread in the current (or last) run. */
uint64_t vmp_writer_wakeups(void);

/* Bytes of blocks the writer allocated ahead of its writes in the current
 * (or last) run (a large profile on ext4; given back past the end at the
 * stop). */
uint64_t vmp_writer_allocated_ahead(void);

/* fork: the prepare handler holds the writer at a point where it holds no
 * lock of a library (0, or -1 when it did not get there within timeout_ns);
 * the parent lets it go on; the child forgets the parent's writer state
 * without freeing it. */
int vmp_writer_hold(int64_t timeout_ns);
void vmp_writer_unhold(void);
void vmp_writer_after_fork_child(void);

/* Puts a name in the stream (GIL held, normal context); the vmp_codes
 * callback.  When the ring is full the name is held beside it (up to 1,024
 * names); only when that is full too it waits (bounded) for the writer,
 * and a name still without room is lost (names_lost), its address retired. */
void vmp_writer_push_name(uintptr_t code, const char *name, size_t len, int died);

/* Tests only: with on (VMP_WRITER_HOLD_AT_EMPTY), makes the writer wait
 * where it next finds the ring empty, before it settles the names beside
 * the ring (Held, Lost); with VMP_WRITER_HOLD_AFTER_LOOK, at its next
 * round's start, once native mode looked at the loader and before it
 * writes anything; until called again without on (or the writer stops);
 * returns once the writer waits there (0) or after timeout_ns (-1, not
 * held).  Call it without the GIL.  A test fills the ring and pushes names
 * between the writer's look at the ring and its settling of those names,
 * or loads and unloads libraries between its look at the loader and its
 * writing of the samples. */
enum { VMP_WRITER_HOLD_AT_EMPTY = 1, VMP_WRITER_HOLD_AFTER_LOOK = 2 };
int vmp_writer_test_hold_at_empty(int on, int64_t timeout_ns);

/* Tests only: with ns > 0, makes the next name this thread pushes wait ns
 * (without the GIL) between its claim of a slot and its publish, as a
 * thread descheduled or stopped there would.  Returns where the last stall
 * asked (of any thread) is: 0 never asked this run, 1 asked, 2 waiting, 3 done, 4
 * done and its publish refused (the writer gave the slot up meanwhile). */
int vmp_writer_test_stall_next_name(int64_t ns);

/* Tests only: the stalls of every thread in this run: waiting now, done,
 * and of those done, refused. */
void vmp_writer_test_stalls(int counts[3]);

/* Tests only: lost names not yet retired that the writer keeps, in this
 * run, at most n (0: as many as it can), so that a test can lose more
 * than that.  Call it with the GIL, after enable. */
int vmp_writer_test_lost_room(uint64_t n);

#endif /* VMP_WRITER_H */
