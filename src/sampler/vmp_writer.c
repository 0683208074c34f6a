/*
 * vmp_writer.c - the writer thread (contract in vmp_writer.h).
 *
 * Profile ids: the first code object at an address keeps the address as its
 * id; after it died, the next one there gets the address with a generation
 * number in the top 16 bits (user-space addresses never use them).  The map
 * holds, per address seen, (generation << 1) | retired, where retired says
 * the object there died and the next sample starts a new generation.
 *
 * Wall clock: the last sample written for each thread is kept at its
 * place (vmp_delivery.h: no two live threads share one), for
 * VMP_SLOT_REPEAT; a slot's place and tid are both checked, since a place
 * is taken again after its thread ended.
 */
#include "vmp_frames.h" /* Python.h first: it sets the feature macros (_GNU_SOURCE) */
#include "vmp_writer.h"

#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <sys/uio.h>

#include "vmp_array.h"
#include "vmp_codes.h"
#include "vmp_encode.h"
#include "vmp_fds.h"
#include "vmp_format.h"
#include "vmp_guard.h"
#include "vmp_hash.h"
#include "vmp_native_mode.h"
#include "vmp_ring.h"
#include "vmp_run.h"
#include "vmp_timer_thread.h"

/* The writer drains the ring, then naps as long as the ring took lately to
 * fill a quarter, between these bounds, or until its bell rings (the ring
 * half full, a sync, the stop, a pc native mode must learn: vmp_ring.h).
 * Each wake-up of a thread costs ~50 us of CPU on these machines
 * (bench/RESULTS.md): a writer that woke every 10 ms used 0.5% of a core by
 * itself, as much as everything else it did at 1 kHz. */
#define VMP_WRITER_MIN_SLEEP_NS 2000000LL
#define VMP_WRITER_MAX_SLEEP_NS 100000000LL
#define VMP_NATIVE_TICK_MIN_NS 2000000LL /* native mode: learns at most this often */
#define VMP_WRITE_BUF (1 << 20)
/* vmp_run.writer_stop: 0 runs, 1 finishes the run; a pause (vmp_writer_pause)
 * asked, and taken (the thread then ends, the run going on). */
enum { WRITER_PAUSE = 2, WRITER_PAUSING = 3 };
/* A sample written n times: its record is encoded once and copied up to a
 * block of about this many bytes; the rest of the n are iovecs pointing at
 * that block (write_stacks). */
#define VMP_REPEAT_BLOCK 2048
#define VMP_WRITE_IOVS 1024 /* iovecs in one writev (Linux's IOV_MAX) */
#define VMP_WRITE_STALL_NS 10000000000LL  /* stopping: a full pipe or socket, given up after 10 s */
#define VMP_NAME_WAIT_NS 5000000000LL     /* a name waits this long for room in the ring */
/* A profile on ext4 that grew by VMP_ALLOC_AFTER in this run gets the
 * blocks its next writes need allocated this far ahead (allocate_ahead). */
#define VMP_ALLOC_AFTER ((off_t)8 << 20)
#define VMP_ALLOC_AHEAD ((off_t)8 << 20)
#define VMP_EXT4_MAGIC 0xEF53

#define ID_RETIRED 1u
/* The id's name is written already (name_new_codes): not written again at
 * the stop, nor when its object dies.  Outside the generation's bits. */
#define ID_NAMED 0x80000000u
#define ID_GEN_MAX 0xfffeu
/* The generation of every id written once nothing may be named any more
 * (Lost.unnamed_from): no name is written for it. */
#define ID_GEN_UNNAMED 0xffffu

typedef struct last_sample {
    pid_t tid; /* 0: none */
    uint32_t n, cap;
    int capped; /* its native walk was capped: each repeat is a cut sample (META samples_cut) */
    uint64_t thread_id;
    uint64_t *ids;
} last_sample;

/* What goes out: the bytes of buf, in order, and among them iovecs that
 * point again at a block of repeated records already in buf.  iov[0..niov)
 * is written before buf[from..len). */
static struct {
    vmp_u64map ids_by_addr;
    last_sample *last; /* VMP_PLACES of them, made by the first one kept */
    vmp_wbuf buf;
    unsigned char *mem;
    size_t from;
    struct iovec iov[VMP_WRITE_IOVS];
    int niov;
    uint64_t ids[VMP_SLOT_WORDS];
    /* Python ids given out since their last naming round, to be named
     * during the run (name_new_codes) */
    struct new_code {
        uint64_t addr, id;
    } *fresh;
    size_t nfresh, fresh_cap;
    /* the deaths settled (named or retired in the stream) per bucket of
     * addresses, against vmp_codes_deaths */
    uint64_t settled[VMP_CODES_DEATH_BUCKETS];
} W;

/* Whether the writer may still read code objects during the run: the
 * fault guard is in front (disable() puts the program's handlers back
 * after vmp_writer_end_live_names). */
static _Atomic int live_names, live_naming;

/* Names lost: that found no room in the ring nor beside it (the writer
 * stalled).  The object died, so its address must still be retired, at its
 * place in the stream (before the first slot claimed after the death), or a
 * new object there would be shown under the dead one's id.  (With 1,024
 * places here, 1,301 names lost at once left the last ones' addresses
 * unretired: 606 samples under a wrong name; with 16,384, the 16,385th.)
 * So they are kept in LOST_MAX places of anonymous memory, mapped at the
 * first run (never in signal context) and touched only as names are lost,
 * 16 bytes each: a writer stuck for good in a program whose code objects
 * die by the million.  A name that finds even that full, or the memory not
 * mapped, cannot be retired at its place: then nothing from that place on
 * is named (unnamed_from; the samples keep their frames, under ids no name
 * is written for), which loses names but never shows one under another's.
 * Pushed by GIL holders, one at a time; taken by the writer. */
#define LOST_MAX ((uint64_t)1 << 22)
typedef struct lost_name {
    uint64_t code;
    uint64_t before; /* ring claim index: retire before the slot with this one */
} lost_name;
static struct {
    lost_name *at; /* LOST_MAX of them (NULL: could not be mapped) */
    _Atomic uint64_t head, tail;
    _Atomic uint64_t unnamed_from; /* claim index from which nothing is named; UINT64_MAX: none */
} Lost = {.unnamed_from = UINT64_MAX};

/* Tests only (vmp_writer_test_lost_room): Lost holds at most this many in
 * this run (0: LOST_MAX). */
static uint64_t lost_room;

int vmp_writer_test_lost_room(uint64_t n)
{
    lost_room = n;
    return 0;
}

/* Names that found no room in the ring, held beside it: each is written at
 * its place in the stream, before the first slot claimed after it was
 * pushed (every sample holding a dying object was claimed before its
 * death).  The ring is full whenever the writer waits for a slow reader:
 * it drains the ring, then writes out what it drained, and frees no slot
 * until that is out (seconds, for a reader taking 20-50 KB/s); a name that
 * waited for a slot was lost after VMP_NAME_WAIT_NS although the writer
 * went on (8 of 100 dying code objects' names, the program held up 5 s
 * each time).  Only a name that finds the queue full too waits for the
 * ring, and may be lost (Lost).  Pushed by GIL holders, one at a time;
 * taken by the writer. */
#define HELD_MAX 1024
typedef struct held_name {
    uint64_t code;
    uint64_t before; /* ring claim index: written before the slot with this one */
    uint32_t len;
    int died;
    char text[VMP_MAX_NAME];
} held_name;
static struct {
    held_name at[HELD_MAX];
    _Atomic uint64_t head, tail;
} Held;

/* Set when a name waited VMP_NAME_WAIT_NS in vain: the writer is stuck, and
 * the next names do not wait again until the ring has room. */
static _Atomic int names_stalled;

static uint64_t id_with_gen(uint64_t addr, uint32_t state)
{
    return addr | ((uint64_t)((state & ~ID_NAMED) >> 1) << 48);
}

/* A new Python id, to be named during the run. */
static void note_fresh(uint64_t addr, uint64_t id)
{
    if (vmp_array_grow((void **)&W.fresh, &W.fresh_cap, W.nfresh + 1, sizeof *W.fresh) < 0)
        return; /* (named at the stop, as before) */
    W.fresh[W.nfresh].addr = addr;
    W.fresh[W.nfresh++].id = id;
}

static void settled_death(uint64_t addr)
{
    W.settled[vmp_codes_death_bucket((uintptr_t)addr)]++;
}

/* Set by the writer once it passed Lost.unnamed_from. */
static int unnamed;

static uint64_t id_for_sample(uint64_t addr)
{
    if (unnamed)
        return id_with_gen(addr, ID_GEN_UNNAMED << 1);
    uint32_t state = 0;
    if (vmp_u64map_find(&W.ids_by_addr, addr, &state) && !(state & ID_RETIRED))
        return id_with_gen(addr, state);
    state &= ~ID_NAMED; /* (a new object: not named yet) */
    if (state & ID_RETIRED) /* a new object where a named one died */
        state = ((state >> 1) < ID_GEN_MAX ? (state >> 1) + 1 : ID_GEN_MAX) << 1;
    if (vmp_u64map_put(&W.ids_by_addr, addr, state) < 0)
        return addr; /* out of memory: the address still names something */
    note_fresh(addr, id_with_gen(addr, state));
    return id_with_gen(addr, state);
}

static void retire(uint64_t addr)
{
    uint32_t state = 0;
    vmp_u64map_find(&W.ids_by_addr, addr, &state);
    vmp_u64map_put(&W.ids_by_addr, addr, state | ID_RETIRED);
}

/* Retires the lost names' addresses whose death came before claim index
 * `upto`. */
static void retire_lost(uint64_t upto)
{
    uint64_t t = atomic_load_explicit(&Lost.tail, memory_order_relaxed);
    while (t != atomic_load_explicit(&Lost.head, memory_order_acquire) && Lost.at[t % LOST_MAX].before <= upto) {
        retire(Lost.at[t % LOST_MAX].code); /* (head > tail: at was mapped) */
        settled_death(Lost.at[t % LOST_MAX].code);
        atomic_store_explicit(&Lost.tail, ++t, memory_order_release);
    }
}

/* The id to name; marks it retired when the object died.  Sets *named
 * when its name was written during the run already (name_new_codes). */
static uint64_t id_for_name(uint64_t addr, int died, int *named)
{
    uint32_t state = 0;
    vmp_u64map_find(&W.ids_by_addr, addr, &state);
    if (died)
        settled_death(addr);
    *named = (state & ID_NAMED) != 0;
    if (died && vmp_u64map_put(&W.ids_by_addr, addr, state | ID_RETIRED) < 0)
        return addr;
    return id_with_gen(addr, state);
}

static void flush(void);

/* Writes the held names pushed before claim index `upto`.  One whose place
 * is at or past Lost.unnamed_from is not written: an address whose name
 * was lost there without a place to keep it was not retired, and a name
 * for its next object would be shown on the dead one's samples.  (Read
 * after the queue's head: a name held after that loss is seen with it.) */
static void write_held(uint64_t upto)
{
    uint64_t t = atomic_load_explicit(&Held.tail, memory_order_relaxed);
    while (t != atomic_load_explicit(&Held.head, memory_order_acquire) && Held.at[t % HELD_MAX].before <= upto) {
        const held_name *h = &Held.at[t % HELD_MAX];
        if (unnamed || h->before >= atomic_load_explicit(&Lost.unnamed_from, memory_order_acquire)) {
            atomic_fetch_add(&vmp_run.names_lost, 1);
            atomic_store_explicit(&Held.tail, ++t, memory_order_release);
            continue;
        }
        int named;
        uint64_t id = id_for_name(h->code, h->died, &named);
        if (named) { /* (written during the run) */
            atomic_store_explicit(&Held.tail, ++t, memory_order_release);
            continue;
        }
        if (W.buf.cap - W.buf.len < vmp_enc_name_size(&W.buf, h->len))
            flush();
        vmp_enc_name(&W.buf, VMP_TAG_VIRTUAL_IP, id, h->text, h->len);
        atomic_store_explicit(&Held.tail, ++t, memory_order_release);
    }
}

/* Settles the names beside the ring whose place (`before`) is at or below
 * claim index `upto`, which must be the next slot to write: every slot
 * below it written.  The slots below a name's place were claimed before its
 * push and may hold samples of the dying object; its name or retirement
 * settled before they are written gives them the address's next id, never
 * named, or shown under a later object's name there.  (drain passed the
 * ring's head read again after it found the ring empty: the slots claimed
 * in between were not written yet.)
 *
 * Lost before Held needs no push order between the two: a retirement and a
 * held name's id_for_name both only mark the address retired (neither
 * moves its generation), so they commute.  (Nor are two objects' entries
 * for one address settled by one call: the second object, made after the
 * first one's push, was noted from a sample in a slot between the two
 * places.) */
static void settle_names(uint64_t upto)
{
    retire_lost(upto);
    write_held(upto);
    /* (a slot that may hold a new object at an address lost without a
     * place was claimed after unnamed_from was set: seen here before it) */
    if (!unnamed && upto >= atomic_load_explicit(&Lost.unnamed_from, memory_order_acquire))
        unnamed = 1;
}

/* Where the writer writes: the profile's descriptor, or for a pipe a
 * description of the same pipe of its own, non-blocking (open_output); a
 * socket is written with MSG_DONTWAIT.  So no write of ours ever blocks in
 * the kernel on a pipe or socket nobody reads: it waits in writev_all,
 * bounded, and disable() and an exec are never held up for ever. */
static struct {
    int fd, socket;
    int opened;      /* fd is ours, closed when the writer ends */
    int shared;      /* ... and it is in the program's table (a fork child closes its copy) */
    int own_table;   /* the writer has a table of its own (open_output) */
    int may_block;   /* fd is the program's blocking description of a pipe or terminal */
    int wait_reader; /* a FIFO nobody had open for reading: fd is -1 until one does */
    struct stat st;  /* the profile's file, to know a description opened again is of it */
    int alloc;         /* a regular file on ext4: blocks allocated ahead (allocate_ahead) */
    off_t alloc_start; /* ... the file's offset when the writer began */
    off_t alloc_end;   /* ... up to where they were asked for (0: none past what was written) */
} Out = {.fd = -1};

/* Bytes of blocks allocated ahead in this run (vmp_writer_allocated_ahead),
 * and by the threads before this one (a pause ended one: vmp_writer_pause). */
static uint64_t allocated_ahead, ahead_before;

/* When the write under way last got a byte out, or began (0: none under
 * way); vmp_writer_stuck_ns. */
static _Atomic int64_t write_waiting_since;

/* When disable() began waiting for the writer (0: the run goes on): from
 * then a full pipe or socket is given up after VMP_WRITE_STALL_NS without
 * a byte out.  During the run the writer waits for its reader as long as
 * it takes (a reader may pause: the ring fills meanwhile, and the samples
 * that find no room are counted dropped), as a blocking write did. */
static _Atomic int64_t stopping_since;

void vmp_writer_stopping(void)
{
    atomic_store(&stopping_since, vmp_mono_ns());
}

static int reopen_nonblocking(void);

/* One write of what iov[0..n) holds, never blocking unless Out.may_block:
 * a FIFO still waiting for a reader is opened first (EAGAIN while nobody
 * has it open for reading, as a full pipe gives). */
static ssize_t write_some(struct iovec *iov, int n)
{
    if (Out.wait_reader) {
        if (reopen_nonblocking() < 0) {
            if (errno == ENXIO)
                errno = EAGAIN;
            return -1;
        }
        Out.wait_reader = 0;
    }
    int fd = Out.fd;
    if (Out.socket) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        return sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    return writev(fd, iov, n);
}

/* Writes everything iov[0..n) holds (consumed) to Out, retrying what may
 * be retried: an interrupted write, a non-blocking fd that is full (a pipe
 * whose reader is behind), a FIFO nobody has opened for reading yet, until,
 * once stopping (stopping_since), nothing could be written for
 * VMP_WRITE_STALL_NS (then ETIMEDOUT).  The waits need no GIL of ours: a
 * reader in the same process keeps reading (enable and disable never wait
 * for the writer with the GIL held). */
static int writev_all(struct iovec *iov, int n)
{
    int64_t stalled_since = 0;
    while (n > 0 && iov->iov_len == 0)
        iov++, n--;
    if (n > 0)
        atomic_store_explicit(&write_waiting_since, vmp_mono_ns(), memory_order_relaxed);
    int rc = 0;
    while (n > 0) {
        ssize_t w = write_some(iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                rc = -1;
                break;
            }
            int64_t now = vmp_mono_ns(), stopping = atomic_load_explicit(&stopping_since, memory_order_relaxed);
            if (!stalled_since)
                stalled_since = now;
            if (stopping && now - (stalled_since > stopping ? stalled_since : stopping) > VMP_WRITE_STALL_NS) {
                errno = ETIMEDOUT;
                rc = -1;
                break;
            }
            struct pollfd pfd = {.fd = Out.fd, .events = POLLOUT}; /* (fd -1: a FIFO's reader, 100 ms) */
            poll(&pfd, 1, 100);
            continue;
        }
        if (stalled_since || (size_t)w < iov->iov_len)
            atomic_store_explicit(&write_waiting_since, vmp_mono_ns(), memory_order_relaxed);
        stalled_since = 0;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++, n--;
        }
        if (n > 0) {
            iov->iov_base = (unsigned char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    atomic_store_explicit(&write_waiting_since, 0, memory_order_relaxed);
    return rc;
}

int64_t vmp_writer_stuck_ns(void)
{
    if (atomic_load(&vmp_run.write_errno))
        return INT64_MAX; /* (it gave up: nothing more goes out) */
    int64_t since = atomic_load_explicit(&write_waiting_since, memory_order_relaxed);
    return since ? vmp_mono_ns() - since : 0;
}

/* A description of the profile's pipe or terminal of the writer's own,
 * opened through /proc/thread-self/fd, non-blocking and never made the
 * controlling terminal, into Out.fd (moved out of the program's numbers
 * when the writer shares its table).  0, or -1 with errno (ENXIO: a FIFO
 * nobody has open for reading). */
static int reopen_nonblocking(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/thread-self/fd/%d", vmp_run.fd);
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat again;
    if (fstat(fd, &again) < 0 || again.st_dev != Out.st.st_dev || again.st_ino != Out.st.st_ino ||
        again.st_rdev != Out.st.st_rdev) {
        close(fd); /* (not the same file after all) */
        errno = EBADF;
        return -1;
    }
    Out.fd = Out.own_table ? fd : vmp_fd_out_of_the_way(fd);
    Out.opened = 1;
    Out.shared = !Out.own_table;
    Out.may_block = 0;
    return 0;
}

/* Whether the profile's descriptor is a pipe made by pipe() (its /proc
 * link reads "pipe:[inode]"), not a FIFO with a name a reader may open. */
static int anonymous_pipe(void)
{
    char path[64], link[16];
    snprintf(path, sizeof path, "/proc/thread-self/fd/%d", vmp_run.fd);
    ssize_t n = readlink(path, link, sizeof link);
    return n >= 5 && memcmp(link, "pipe:", 5) == 0;
}

/* The writer thread, at its start: where it writes (Out).  A pipe or a
 * terminal the program opened blocking (os.pipe() is; a terminal whose
 * output is stopped, ^S, or whose reader left a pseudo-terminal unread,
 * blocks a write as a full pipe does) gets a second description of its
 * own (reopen_nonblocking): the program's own description keeps its flags
 * (they are shared by every descriptor of it).  A FIFO with a name that
 * nobody has open for reading yet is opened so once a reader came
 * (write_some): until then the writer waits for one as for room in a full
 * pipe, never through the program's blocking description.  (A pipe() whose
 * reader is gone stays the program's description: its writes fail, EPIPE,
 * and enable() says so.)  own_table: the writer has a table of its own
 * (else a new descriptor is moved out of the program's numbers). */
static void open_output(int own_table)
{
    Out.fd = vmp_run.fd;
    Out.socket = Out.opened = Out.shared = Out.may_block = Out.wait_reader = 0;
    Out.own_table = own_table;
    Out.alloc = 0;
    Out.alloc_end = 0;
    allocated_ahead = ahead_before; /* (0 at enable; a pause's thread goes on counting) */
    if (fstat(vmp_run.fd, &Out.st) < 0)
        return;
    struct statfs fs;
    if (S_ISREG(Out.st.st_mode) && fstatfs(vmp_run.fd, &fs) == 0 && fs.f_type == VMP_EXT4_MAGIC &&
        (Out.alloc_start = lseek(vmp_run.fd, 0, SEEK_CUR)) >= 0)
        Out.alloc = 1;
    if (S_ISSOCK(Out.st.st_mode)) {
        Out.socket = 1;
        return;
    }
    int flags = fcntl(vmp_run.fd, F_GETFL);
    int fifo = S_ISFIFO(Out.st.st_mode), tty = S_ISCHR(Out.st.st_mode) && isatty(vmp_run.fd);
    if (!(fifo || tty) || flags < 0 || (flags & O_NONBLOCK))
        return;
    Out.may_block = 1; /* (until a description of our own replaces it) */
    unsigned int n;
    if (tty && ioctl(vmp_run.fd, TIOCGPTN, &n) == 0)
        return; /* a pseudo-terminal's master: its /proc link names /dev/ptmx, whose open makes a new pair */
    if (reopen_nonblocking() < 0 && errno == ENXIO && fifo) {
        Out.may_block = 0; /* (nobody reads it: a write fails, EPIPE, rather than block) */
        if (!anonymous_pipe()) {
            Out.fd = -1;
            Out.wait_reader = 1;
        }
    }
}

/* The blocks allocated ahead past the end of what was written are given
 * back: the file is truncated to its own size (on ext4 a hole punched past
 * the end frees nothing; a truncation to the same size frees what lies
 * past it, and changes no byte).  Else they would stay the file's until it
 * is truncated or removed. */
static void give_back_ahead(void)
{
    struct stat now;
    if (Out.alloc_end && fstat(Out.fd, &now) == 0 && now.st_size < Out.alloc_end)
        (void)ftruncate(Out.fd, now.st_size);
    Out.alloc_end = 0;
}

static void close_output(void)
{
    give_back_ahead();
    if (Out.opened)
        close(Out.fd);
    Out.fd = -1;
    Out.opened = Out.shared = Out.may_block = Out.wait_reader = 0;
}

/* Before a write of len bytes to a regular file on ext4: once the run
 * wrote VMP_ALLOC_AFTER, the blocks the writes need are allocated
 * VMP_ALLOC_AHEAD at a time (fallocate, the size kept: no byte of the file
 * changes).  A buffered write that reaches past the blocks the file has
 * otherwise reserves each 4 KiB block for delayed allocation one at a time
 * (extent status tree, quota, the free-cluster counts) and the flusher
 * allocates them later: ~a fifth of the CPU a bare thread used to write
 * 140 MiB in 2 s (1,000 waiting threads at 1 kHz on the wall clock),
 * measured with the page cache's pages already in use (bench/RESULTS.md).
 * A small profile never gets here.  A failure (ENOSPC, EOPNOTSUPP) ends it
 * for the run: the writes go on as before. */
static void allocate_ahead(const struct iovec *iov, int n)
{
    if (!Out.alloc)
        return;
    off_t at = lseek(Out.fd, 0, SEEK_CUR);
    if (at < 0) {
        Out.alloc = 0;
        return;
    }
    off_t end = at;
    for (int i = 0; i < n; i++)
        end += (off_t)iov[i].iov_len;
    if (end <= Out.alloc_end || end - Out.alloc_start < VMP_ALLOC_AFTER)
        return;
    off_t from = at > Out.alloc_end ? at : Out.alloc_end, to = end + VMP_ALLOC_AHEAD;
    Out.alloc_end = to; /* (also when it fails: what it allocated before failing is given back too) */
    if (fallocate(Out.fd, FALLOC_FL_KEEP_SIZE, from, to - from) < 0) {
        Out.alloc = 0;
        return;
    }
    allocated_ahead += (uint64_t)(to - from);
}

/* Writes the iovecs out (buf's bytes stay where they are: a block the
 * next iovecs point at stays valid). */
static void write_iovs(void)
{
    if (W.niov && !atomic_load(&vmp_run.write_errno)) {
        allocate_ahead(W.iov, W.niov);
        if (writev_all(W.iov, W.niov) < 0)
            atomic_store(&vmp_run.write_errno, errno ? errno : EIO);
    }
    W.niov = 0;
}

/* Closes the open span of buf into an iovec. */
static void end_span(void)
{
    if (W.buf.len > W.from) {
        if (W.niov == VMP_WRITE_IOVS)
            write_iovs();
        W.iov[W.niov].iov_base = W.buf.data + W.from;
        W.iov[W.niov].iov_len = W.buf.len - W.from;
        W.niov++;
        W.from = W.buf.len;
    }
}

/* Writes everything out; buf is empty again. */
static void flush(void)
{
    end_span();
    write_iovs();
    W.buf.len = W.from = 0;
}

static void keep_last(pid_t tid, uint32_t place, uint64_t thread_id, const uint64_t *ids, uint32_t n,
                      int capped)
{
    if (place >= VMP_PLACES || (!W.last && !(W.last = calloc(VMP_PLACES, sizeof *W.last))))
        return;
    last_sample *l = &W.last[place];
    l->tid = 0;
    if (l->cap < n) {
        uint64_t *grown = realloc(l->ids, n * sizeof *grown);
        if (!grown)
            return; /* no repeat for it: the sampler's next one is dropped */
        l->ids = grown;
        l->cap = n;
    }
    memcpy(l->ids, ids, n * sizeof *ids);
    l->n = n;
    l->capped = capped;
    l->thread_id = thread_id;
    l->tid = tid;
}

static void free_last(void)
{
    if (W.last)
        for (size_t i = 0; i < VMP_PLACES; i++)
            free(W.last[i].ids);
    free(W.last);
    W.last = NULL;
}

/* Writes one stack record `count` times (the format has no weight: a
 * sample that stands for n periods is n records).  It is encoded once and
 * copied, doubling, into a block of up to VMP_REPEAT_BLOCK bytes in buf;
 * the rest of the count are iovecs pointing at that block, which the
 * kernel copies from: 1,000 waiting threads at 1 kHz are a million records
 * a second, and copying each into buf first cost the writer a fifth of its
 * time (bench/RESULTS.md). */
static void write_stacks(const uint64_t *ids, uint32_t n, uint64_t thread_id, uint64_t rss_kib, uint64_t count)
{
    size_t size = vmp_enc_stack_size(&W.buf, n, vmp_run.memory);
    if (size > W.buf.cap || !count)
        return; /* (a record never is: the deepest stack is far smaller) */
    uint64_t per_block = size < VMP_REPEAT_BLOCK ? VMP_REPEAT_BLOCK / size : 1;
    uint64_t k = count < per_block ? count : per_block;
    if (W.buf.cap - W.buf.len < k * size)
        flush();
    unsigned char *block = W.buf.data + W.buf.len;
    vmp_enc_stack(&W.buf, ids, n, thread_id, vmp_run.memory, rss_kib);
    size_t have = size, want = (size_t)k * size;
    while (have < want) {
        size_t c = have < want - have ? have : want - have;
        memcpy(block + have, block, c);
        have += c;
    }
    W.buf.len = (size_t)(block - W.buf.data) + want;
    atomic_fetch_add_explicit(&vmp_run.samples, k, memory_order_relaxed);
    count -= k;
    if (!count)
        return;
    end_span();
    while (count) {
        if (W.niov == VMP_WRITE_IOVS)
            write_iovs();
        uint64_t j = count < k ? count : k;
        W.iov[W.niov].iov_base = block;
        W.iov[W.niov].iov_len = (size_t)j * size;
        W.niov++;
        count -= j;
        atomic_fetch_add_explicit(&vmp_run.samples, j, memory_order_relaxed);
    }
}

/* Writes a stack `count` times for `count` periods, the first of which
 * began at from_ns (0: not known).  In memory mode each record carries the
 * RSS read at its own period (vmp_rss_at: the reading at or before the
 * period's end), not the one of when its slot was filled: a repeat is
 * handed over up to VMP_VISIT_MAX_NS (1 s) after its periods, and a late
 * signal pays every period since the thread's last one.  Without from_ns,
 * every record carries rss_kib. */
static void write_by_rss(const uint64_t *ids, uint32_t n, uint64_t thread_id, uint64_t rss_kib, uint64_t count,
                         int64_t from_ns)
{
    if (!vmp_run.memory || from_ns <= 0) {
        write_stacks(ids, n, thread_id, rss_kib, count);
        return;
    }
    int64_t period = vmp_run.period_ns, t = from_ns + period; /* the first period's end */
    for (uint64_t left = count; left;) {
        int64_t next;
        uint64_t rss = vmp_rss_at(t, rss_kib, &next);
        uint64_t k = next == INT64_MAX ? left : next > t ? (uint64_t)((next - t + period - 1) / period) : 1;
        if (k > left)
            k = left;
        write_stacks(ids, n, thread_id, rss, k);
        left -= k;
        t += (int64_t)k * period;
    }
}

static void process(vmp_slot *s)
{
    if (s->kind == VMP_SLOT_REPEAT) {
        const last_sample *l = W.last && s->place < VMP_PLACES ? &W.last[s->place] : NULL;
        if (l && l->tid == s->tid) {
            write_by_rss(l->ids, l->n, l->thread_id, s->rss_kib, s->n, s->from_ns);
            if (l->capped) /* (the handler counted the sample it repeats, not its repeats) */
                atomic_fetch_add_explicit(&vmp_run.samples_cut, s->n, memory_order_relaxed);
        } else
            atomic_fetch_add_explicit(&vmp_run.dropped, s->n, memory_order_relaxed);
        return;
    }
    if (s->kind == VMP_SLOT_NAME) {
        if (unnamed) { /* (Lost) */
            atomic_fetch_add(&vmp_run.names_lost, 1);
            return;
        }
        int named;
        uint64_t id = id_for_name(s->code, s->died, &named);
        if (named)
            return; /* (written during the run: name_new_codes) */
        if (W.buf.cap - W.buf.len < vmp_enc_name_size(&W.buf, s->n))
            flush();
        vmp_enc_name(&W.buf, VMP_TAG_VIRTUAL_IP, id, (const char *)s->data, s->n);
        return;
    }
    if (s->n == 0)
        return; /* no Python frame to show (a thread between functions) */
    int lines = vmp_run.lines;
    for (size_t i = 0; i < s->n; i++)
        W.ids[i] = (lines && i % 2 == 0)             ? s->data[i]
                   : vmp_native_word_is(s->data[i]) ? vmp_native_mode_entry_id(s->data[i])
                                                    : id_for_sample(s->data[i]);
    write_by_rss(W.ids, s->n, s->thread_id, s->rss_kib, s->weight, s->from_ns);
    if (vmp_run.real_time)
        keep_last(s->tid, s->place, s->thread_id, W.ids, s->n, s->capped);
}

/* Tests only (vmp_writer_test_hold_at_empty): 1 asked, 2 the writer waits
 * at the point asked (hold_where), 0 let go. */
static _Atomic int hold_at_empty;
static _Atomic int hold_where; /* VMP_WRITER_HOLD_* */

static void test_hold_point(int where)
{
    int asked = 1;
    if (atomic_load_explicit(&hold_at_empty, memory_order_relaxed) == 0 || atomic_load(&hold_where) != where ||
        !atomic_compare_exchange_strong(&hold_at_empty, &asked, 2))
        return;
    /* (held while 2: a release followed at once by a new ask, 1, before
     * this nap saw the 0, lets it go too; the new ask holds it at its next
     * point.  While held on any non-0, that ask was never answered and its
     * caller gave up after its bound, with the writer held all along) */
    while (atomic_load(&hold_at_empty) == 2 && !atomic_load(&vmp_run.writer_stop))
        vmp_sleep_ns(1000000);
}

int vmp_writer_test_hold_at_empty(int on, int64_t timeout_ns)
{
    if (!on) {
        atomic_store(&hold_at_empty, 0);
        return 0;
    }
    atomic_store(&hold_where, on);
    atomic_store(&hold_at_empty, 1);
    vmp_ring_ring();
    for (int64_t deadline = vmp_mono_ns() + timeout_ns; atomic_load(&hold_at_empty) != 2;) {
        if (vmp_mono_ns() > deadline) {
            atomic_store(&hold_at_empty, 0);
            return -1;
        }
        vmp_sleep_ns(1000000);
    }
    return 0;
}

/* Tests only (vmp_writer_test_stall_next_name): the next name pushed by
 * a thread that asked waits its stall_here ns between its claim and its
 * publish, as a thread descheduled or stopped there would; stall_state
 * (the last stall asked): 1 asked, 2 waiting, 3 done, 4 done and its
 * publish refused (the writer gave the slot up meanwhile); stall_counts:
 * stalls waiting, done, and refused, of every thread (several stalled at
 * once: vmp_writer_test_stalls).  Both start again with each run; a stall
 * asked and not met stays asked. */
static __thread int64_t stall_here;
static __thread int stalled_here; /* this thread's stall is done, its publish not told yet */
static _Atomic int stall_state;
static _Atomic int stall_counts[3];

static void test_stall_point(int holds_gil)
{
    if (!stall_here)
        return;
    int64_t ns = stall_here;
    stall_here = 0;
    atomic_store(&stall_state, 2);
    atomic_fetch_add(&stall_counts[0], 1);
    if (holds_gil) {
        Py_BEGIN_ALLOW_THREADS
        vmp_sleep_ns(ns);
        Py_END_ALLOW_THREADS
    } else {
        vmp_sleep_ns(ns);
    }
    stalled_here = 1;
    atomic_store(&stall_state, 3);
    atomic_fetch_sub(&stall_counts[0], 1);
    atomic_fetch_add(&stall_counts[1], 1);
}

/* After a publish of this thread's (refused: -1). */
static void test_stall_told(int published)
{
    if (!stalled_here)
        return;
    stalled_here = 0;
    int done = 3;
    if (published < 0) {
        atomic_compare_exchange_strong(&stall_state, &done, 4);
        atomic_fetch_add(&stall_counts[2], 1);
    }
}

int vmp_writer_test_stall_next_name(int64_t ns)
{
    if (ns > 0) {
        atomic_store(&stall_state, 1);
        stall_here = ns;
    }
    return atomic_load(&stall_state);
}

void vmp_writer_test_stalls(int counts[3])
{
    for (int i = 0; i < 3; i++)
        counts[i] = atomic_load(&stall_counts[i]);
}

/* Writes every published slot in order; with `wait`, also waits (bounded)
 * for slots whose producer is still filling them.  Returns 1 when the ring
 * is empty. */
static uint64_t drained; /* slots processed, for the writer's naps */

/* The wait under way for a producer between its claim and its publish:
 * since when, and the claims it covers (those made before it began: each
 * of their producers has had as long).  Kept across drains, so that the
 * rounds of the run count one wait, as the stop's drain does. */
static struct {
    int64_t since; /* 0: none */
    uint64_t covers;
} Stall;
/* Claims below this index are given up at once (vmp_writer_give_up_before). */
static _Atomic uint64_t give_up_below;
/* Tests only (vmp_writer_test_give_ups): slots given up after the wait,
 * and at once. */
static _Atomic uint64_t given_up_waited, given_up_at_once;

void vmp_writer_give_up_before(uint64_t index)
{
    uint64_t was = atomic_load(&give_up_below);
    while (was < index && !atomic_compare_exchange_weak(&give_up_below, &was, index)) {
    }
}

void vmp_writer_test_give_ups(uint64_t counts[2])
{
    counts[0] = atomic_load(&given_up_waited);
    counts[1] = atomic_load(&given_up_at_once);
}

static int drain(int wait)
{
    for (;;) {
        uint64_t index;
        vmp_slot *s = vmp_ring_oldest(&index);
        /* (empty: up to where the ring was seen empty, not its head read
         * again, which may have moved past slots claimed meanwhile) */
        if (!s)
            test_hold_point(VMP_WRITER_HOLD_AT_EMPTY);
        settle_names(index);
        if (vmp_run.native)
            vmp_native_mode_settle(index);
        if (!s)
            return 1;
        int what = vmp_ring_look(s, index);
        if (what == VMP_RING_FILLING) {
            /* A producer is between its claim and its publish; it cannot
             * block, but give up on it after VMP_STALL_NS rather than wait
             * for ever (a thread descheduled or stopped there): during the
             * run too, else the slots behind it, the whole process's
             * samples, waited for it, and the ring filled.  Its publish is
             * then refused: a sample is counted dropped by its producer, a
             * name put in the stream again (vmp_writer_push_name); its slot
             * is not used again until that producer is done with it.
             * One wait for all that claimed before the wait began, not
             * one each: several stalled producers held disable() (or an
             * exec) up a second apiece.  A slot claimed during the wait
             * gets a wait of its own.  A slot claimed before a stop that
             * left handlers behind is given up at once: the stop waited
             * for them already. */
            int64_t now = vmp_mono_ns();
            if (!Stall.since || index >= Stall.covers) {
                Stall.since = now;
                Stall.covers = vmp_ring_next_index();
            }
            int at_once = index < atomic_load(&give_up_below);
            if (!at_once && now - Stall.since < VMP_STALL_NS) {
                if (!wait)
                    return 0; /* (looked at again next round) */
                vmp_sleep_ns(20000);
                continue;
            }
            what = vmp_ring_give_up(s, index);
            if (what == VMP_RING_HOLE) {
                atomic_fetch_add(&vmp_run.slots_given_up, 1);
                atomic_fetch_add(at_once ? &given_up_at_once : &given_up_waited, 1);
            }
        }
        if (what == VMP_RING_READY)
            process(s);
        drained++;
        vmp_ring_release_oldest(s);
    }
}

static void write_meta_u64(const char *key, uint64_t v)
{
    char text[32];
    int n = snprintf(text, sizeof text, "%llu", (unsigned long long)v);
    if (W.buf.cap - W.buf.len < 64 + strlen(key))
        flush();
    vmp_enc_meta(&W.buf, key, strlen(key), text, (size_t)n);
}

static void write_end(void)
{
    if (vmp_run.native)
        vmp_native_mode_write_names(&W.buf, flush);
    write_meta_u64("samples", atomic_load(&vmp_run.samples));
    write_meta_u64("samples_dropped", vmp_run_samples_dropped());
    if (vmp_run.real_time) /* of `samples`: idle threads, written again without waking them */
        write_meta_u64("samples_repeated", atomic_load(&vmp_run.delivery.repeated));
    /* Warnings, only when it happened: threads the schedule had no place
     * for (never sampled), threads that blocked the signal (left alone) and
     * the samples their periods would have been. */
    uint64_t missed = atomic_load(&vmp_run.delivery.threads_missed);
    if (missed)
        write_meta_u64("threads_not_sampled", missed);
    uint64_t blocking = atomic_load(&vmp_run.delivery.threads_blocking);
    if (blocking)
        write_meta_u64("threads_blocking_signal", blocking);
    uint64_t blocked = atomic_load(&vmp_run.delivery.periods_blocked); /* (their periods, not sampled) */
    if (blocked)
        write_meta_u64("samples_blocking_signal", blocked);
    /* (of `samples`: native stacks cut short, for want of an unwind rule or
     * capped by a sample's room in deep recursion) */
    uint64_t cut = atomic_load(&vmp_run.samples_cut);
    if (cut)
        write_meta_u64("samples_cut", cut);
    /* (handlers that stayed inside past the stop's bound - a thread stopped
     * by a debugger, or starved - and were left behind: their samples are
     * counted nowhere, their slots given up) */
    int left = atomic_load(&vmp_run.handlers_left);
    if (left > 0)
        write_meta_u64("handlers_still_running", (uint64_t)left);
    /* (slots whose producer stayed between its claim and its publish past
     * VMP_STALL_NS, given up so that the samples behind them were written:
     * a sample's periods are in samples_dropped once its handler came back
     * during the run, else its handler in handlers_still_running; a name
     * is written again) */
    uint64_t given_up = atomic_load(&vmp_run.slots_given_up);
    if (given_up)
        write_meta_u64("slots_given_up", given_up);
    /* (the program installed a handler of its own for our signal: nothing
     * was sampled from then on) */
    int64_t taken = atomic_load(&vmp_run.signal_taken_ms);
    if (taken >= 0)
        write_meta_u64("signal_taken_over_ms", (uint64_t)taken);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (W.buf.cap - W.buf.len < 64)
        flush();
    vmp_enc_trailer(&W.buf, tv.tv_sec, tv.tv_usec, NULL);
    flush();
}

/* Held by the writer while it works with libraries that take locks of
 * their own (libdw, the loader's through dl_iterate_phdr), so that
 * a fork waits for a point where a child inherits none of them taken. */
static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER;

/* vmp_writer_sync: asked and done counts of "write out all you have". */
static _Atomic uint64_t sync_asked, sync_done;
static _Atomic uint64_t writer_wakeups; /* naps ended (vmp_writer_wakeups) */

/* Everything published so far, the native names met so far, to the fd. */
static void write_out(void)
{
    drain(1);
    if (vmp_run.native)
        vmp_native_mode_write_names(&W.buf, flush);
    flush();
    give_back_ahead(); /* (an exec: the new program would not; if it fails, more are allocated) */
}

/* Names the Python ids given out since the last round, during the run and
 * without the GIL: a program that dies before disable() (SIGKILL from the
 * OOM killer, a crash in a C extension, os._exit) leaves a profile whose
 * samples are named up to what was written, not addresses only.  Run in
 * the writer's round after its drain, so a name goes out in the same write
 * as the first samples of its id.
 *
 * Names never lie: the id named is the address's current one, for the
 * object that lives there now only when no death at that address is in
 * flight.  So an address is named only while every death counted at its
 * bucket (vmp_codes_deaths, moved before the dying object's name is pushed
 * and its memory freed) has been settled here (its name or retirement
 * processed in stream order: its samples already have their id, and a new
 * object there has the next), and when no death was counted there during
 * the reading (else freed or reused memory may have been read); the
 * object is read under the fault guard (its memory may be gone), twice.
 * An id retired meanwhile was named by its death's record.  One that is
 * not a code object with str names (an address noted from a frame being
 * torn down) is left to the stop, which tries it again with the GIL. */
static void name_new_codes(void)
{
    if (!W.nfresh)
        return;
    atomic_store(&live_naming, 1); /* (then live_names: vmp_writer_end_live_names) */
    if (!atomic_load(&live_names) || unnamed ||
        atomic_load_explicit(&Lost.unnamed_from, memory_order_acquire) != UINT64_MAX) {
        atomic_store(&live_naming, 0);
        return;
    }
    /* A fault in a guarded read must reach the guard's handler: this thread
     * blocks every signal, and the kernel kills for a fault it blocks. */
    sigset_t faults, old;
    sigemptyset(&faults);
    sigaddset(&faults, SIGSEGV);
    sigaddset(&faults, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &faults, &old);
    char name[VMP_MAX_NAME + 1];
    size_t kept = 0;
    for (size_t i = 0; i < W.nfresh; i++) {
        struct new_code f = W.fresh[i];
        uint32_t state;
        if (!vmp_u64map_find(&W.ids_by_addr, f.addr, &state) || (state & (ID_RETIRED | ID_NAMED)) ||
            id_with_gen(f.addr, state) != f.id)
            continue; /* (named by its death, or already) */
        unsigned b = vmp_codes_death_bucket((uintptr_t)f.addr);
        uint64_t deaths = vmp_codes_deaths(b);
        if (deaths != W.settled[b]) {
            W.fresh[kept++] = f; /* (a death there not settled yet: next round) */
            continue;
        }
        size_t len = vmp_codes_name_now((uintptr_t)f.addr, name, vmp_guard_run);
        atomic_thread_fence(memory_order_acquire);
        if (vmp_codes_deaths(b) != deaths) {
            W.fresh[kept++] = f;
            continue;
        }
        if (!len)
            continue; /* (left to the stop) */
        if (vmp_u64map_put(&W.ids_by_addr, f.addr, state | ID_NAMED) < 0)
            continue;
        if (W.buf.cap - W.buf.len < vmp_enc_name_size(&W.buf, len))
            flush();
        vmp_enc_name(&W.buf, VMP_TAG_VIRTUAL_IP, f.id, name, len);
    }
    W.nfresh = kept;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    atomic_store(&live_naming, 0);
}

/* vmp_writer_flush_before_death: asked and done counts, and whether this
 * run waited already. */
static _Atomic uint64_t crash_asked, crash_done;
static _Atomic int crash_waited;

void vmp_writer_flush_before_death(void)
{
    if (!vmp_run.enabled || atomic_load(&vmp_run.writer_stop) || !atomic_load(&vmp_run.writer_tid) ||
        vmp_gettid() == atomic_load(&vmp_run.writer_tid) || atomic_exchange(&crash_waited, 1))
        return;
    uint64_t want = atomic_fetch_add(&crash_asked, 1) + 1;
    vmp_ring_ring();
    int64_t deadline = vmp_mono_ns() + VMP_CRASH_FLUSH_NS;
    while (atomic_load(&crash_done) < want && vmp_mono_ns() < deadline)
        vmp_sleep_ns(500000);
}

void vmp_writer_end_live_names(void)
{
    atomic_store(&live_names, 0);
    while (atomic_load(&live_naming))
        vmp_sleep_ns(20000);
}

/* The head's fate, told to enable() (vmp_writer_start): 0, or the errno
 * of its first write. */
static int head_errno;

/* The writer's first write: the head vmp_writer_write_head put in buf, as
 * much of it as goes out without waiting (never when Out may block: the
 * program's thread waits for this).  What is left goes out with the next
 * flush. */
static void try_the_head(void)
{
    head_errno = 0;
    while (W.from < W.buf.len && !Out.may_block && !Out.wait_reader) {
        struct iovec v = {W.buf.data + W.from, W.buf.len - W.from};
        ssize_t w = write_some(&v, 1);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w <= 0) {
            head_errno = w < 0 ? errno : EIO;
            atomic_store(&vmp_run.write_errno, head_errno);
            break;
        }
        W.from += (size_t)w;
    }
    if (W.from == W.buf.len)
        W.buf.len = W.from = 0;
}

static void *writer_main(void *arg)
{
    (void)arg;
    /* A descriptor table of our own, with the profile's descriptor only:
     * what native mode opens here (object files when a walk first meets a
     * library, /proc/self/maps when one was loaded, the names cache) never
     * takes, even for a moment, a number the program is about to dup2()
     * onto (vmp_fds.h).  Before enable goes on (it waits for writer_tid). */
    int own_table = vmp_fd_own_table_keeping(vmp_run.fd);
    open_output(own_table);
    if (vmp_run.native)
        vmp_native_mode_writer_table(own_table);
    try_the_head();
    atomic_store(&vmp_run.writer_tid, vmp_gettid());
    vmp_word_changed(&vmp_run.writer_tid);
    int64_t nap = VMP_WRITER_MIN_SLEEP_NS;
    for (;;) {
        int stop = atomic_load(&vmp_run.writer_stop);
        if (stop == WRITER_PAUSE) {
            /* (at a round's start: no lock of a library held, no code
             * object being read, the write buffer flushed at the last
             * round's end) */
            if (atomic_compare_exchange_strong(&vmp_run.writer_stop, &stop, WRITER_PAUSING))
                break;
            continue; /* (the pause was called off meanwhile) */
        }
        if (stop)
            break;
        uint64_t crash = atomic_load(&crash_asked); /* (answered once this round's write is out) */
        pthread_mutex_lock(&busy);
        /* Native mode learns what walks stopped at, and new libraries. */
        if (vmp_run.native)
            vmp_native_mode_tick();
        test_hold_point(VMP_WRITER_HOLD_AFTER_LOOK);
        uint64_t before = drained;
        drain(0);
        name_new_codes();
        if (vmp_run.native)
            vmp_native_mode_write_new_names(&W.buf, flush);
        uint64_t asked = atomic_load(&sync_asked);
        if (asked != atomic_load(&sync_done)) {
            write_out();
            atomic_store(&sync_done, asked);
        }
        pthread_mutex_unlock(&busy);
        flush(); /* (a pipe nobody reads must not hold a fork up) */
        if (crash != atomic_load(&crash_done))
            atomic_store(&crash_done, crash);
        uint64_t n = drained - before;
        nap = n ? nap * (VMP_RING_SLOTS / 4) / (int64_t)n : VMP_WRITER_MAX_SLEEP_NS;
        if (nap < VMP_WRITER_MIN_SLEEP_NS)
            nap = VMP_WRITER_MIN_SLEEP_NS;
        if (nap > VMP_WRITER_MAX_SLEEP_NS)
            nap = VMP_WRITER_MAX_SLEEP_NS;
        atomic_fetch_add_explicit(&writer_wakeups, 1, memory_order_relaxed);
        /* (a burst of new pcs: learned in one round; but a walk that met
         * code outside every known object is answered at once: until the
         * table has the library just loaded, every sample in it is cut.
         * A stop or a pause cuts the rest short: an os.fork on 3.12+ waits
         * for the pause, and waited this whole rest, 1.6 ms per fork on
         * average, in native mode) */
        if (vmp_ring_nap(nap) && vmp_run.native && !vmp_native_mode_refresh_asked())
            vmp_wait_while_for(&vmp_run.writer_stop, 0, VMP_NATIVE_TICK_MIN_NS);
    }
    if (atomic_load(&vmp_run.writer_stop) == WRITER_PAUSING) {
        /* Paused (vmp_writer_pause): the ring keeps what is published
         * meanwhile, the id maps and names stay; what this thread's table
         * holds goes with it, and the next thread opens it again (native
         * mode's session only once it needs it). */
        if (vmp_run.native)
            vmp_native_mode_writer_paused();
        close_output();
        if (own_table)
            vmp_fd_close_own_table();
        return NULL;
    }
    pthread_mutex_lock(&busy);
    drain(1);
    if (vmp_run.native)
        vmp_native_mode_learn_left(); /* (kept for the next run) */
    write_end();
    if (vmp_run.native)
        vmp_native_mode_writer_done();
    pthread_mutex_unlock(&busy);
    close_output();
    /* The table goes when the thread has ended, which is after a join
     * returned: the profile's copy is closed before disable() returns. */
    if (own_table)
        vmp_fd_close_own_table();
    return NULL;
}

int vmp_writer_sync(int64_t timeout_ns, int64_t stuck_ns)
{
    uint64_t want = atomic_fetch_add(&sync_asked, 1) + 1;
    vmp_ring_ring();
    int64_t deadline = vmp_mono_ns() + timeout_ns;
    while (atomic_load(&sync_done) < want) {
        if (vmp_mono_ns() > deadline || vmp_writer_stuck_ns() >= stuck_ns)
            return -1;
        vmp_sleep_ns(100000);
    }
    return 0;
}

uint64_t vmp_writer_allocated_ahead(void)
{
    return allocated_ahead;
}

uint64_t vmp_writer_wakeups(void)
{
    return atomic_load(&writer_wakeups);
}

int vmp_writer_hold(int64_t timeout_ns)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(timeout_ns / 1000000000LL);
    until.tv_nsec += (long)(timeout_ns % 1000000000LL);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    return pthread_mutex_timedlock(&busy, &until) == 0 ? 0 : -1;
}

void vmp_writer_unhold(void)
{
    pthread_mutex_unlock(&busy);
}

void vmp_writer_after_fork_child(void)
{
    /* The parent's writer thread is not here; whatever it held is forgotten,
     * never freed (it may have been in the middle of changing it). */
    pthread_mutex_init(&busy, NULL);
    memset(&W.ids_by_addr, 0, sizeof W.ids_by_addr);
    W.last = NULL;
    W.fresh = NULL;
    W.nfresh = W.fresh_cap = 0;
    atomic_store(&live_names, 0);
    atomic_store(&live_naming, 0);
    if (Out.opened && Out.shared)
        close(Out.fd); /* (the child's copy) */
    Out.fd = -1;
    Out.opened = Out.shared = Out.may_block = Out.wait_reader = 0;
    Out.alloc = 0;
    Out.alloc_end = 0; /* (what the parent allocated is the parent's to give back) */
    atomic_store(&write_waiting_since, 0);
    atomic_store(&stopping_since, 0);
    W.buf.len = W.from = 0;
    W.niov = 0;
    atomic_store(&Lost.head, 0);
    atomic_store(&Lost.tail, 0);
    atomic_store(&Lost.unnamed_from, UINT64_MAX);
    unnamed = 0;
    atomic_store(&Held.head, 0);
    atomic_store(&Held.tail, 0);
    atomic_store(&names_stalled, 0);
    Stall.since = 0;
}

int vmp_writer_prepare(void)
{
    if (!W.mem && !(W.mem = malloc(VMP_WRITE_BUF)))
        return -1;
    vmp_wbuf_init(&W.buf, W.mem, VMP_WRITE_BUF);
    W.from = 0;
    W.niov = 0;
    vmp_writer_release();
    if (!Lost.at) {
        void *p = mmap(NULL, LOST_MAX * sizeof *Lost.at, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        Lost.at = p == MAP_FAILED ? NULL : p; /* (none: every lost name ends the naming) */
    } else if (atomic_load(&Lost.head)) {
        uint64_t used = atomic_load(&Lost.head) < LOST_MAX ? atomic_load(&Lost.head) : LOST_MAX;
        madvise(Lost.at, used * sizeof *Lost.at, MADV_DONTNEED); /* (the last run's, given back) */
    }
    atomic_store(&Lost.head, 0);
    atomic_store(&Lost.tail, 0);
    atomic_store(&Lost.unnamed_from, UINT64_MAX);
    unnamed = 0;
    atomic_store(&Held.head, 0);
    atomic_store(&Held.tail, 0);
    atomic_store(&names_stalled, 0);
    atomic_store(&stopping_since, 0);
    atomic_store(&hold_at_empty, 0);
    atomic_store(&stall_state, 0);
    for (int i = 0; i < 3; i++)
        atomic_store(&stall_counts[i], 0);
    lost_room = 0;
    Stall.since = 0;
    atomic_store(&given_up_waited, 0);
    atomic_store(&given_up_at_once, 0);
    memset(W.settled, 0, sizeof W.settled);
    atomic_store(&crash_waited, 0);
    W.nfresh = 0;
    atomic_store(&live_names, 1); /* (enable installs the guard before the writer starts) */
    return 0;
}

int vmp_writer_start(void)
{
    ahead_before = 0;
    atomic_store(&vmp_run.writer_stop, 0);
    atomic_store(&vmp_run.writer_tid, 0);
    atomic_store(&writer_wakeups, 0);
    if (vmp_run_start_thread(&vmp_run.writer_thread, writer_main) != 0)
        return -1;
    vmp_wait_while(&vmp_run.writer_tid, 0); /* so the sampler never signals it */
    if (head_errno) {
        int e = head_errno;
        vmp_writer_stop();
        errno = e;
        return -2;
    }
    return 0;
}

int vmp_writer_pause(int64_t timeout_ns, int64_t stuck_ns)
{
    int asked = atomic_load(&vmp_run.writer_stop);
    if (asked != WRITER_PAUSE && asked != WRITER_PAUSING && vmp_writer_pause_ask() < 0)
        return -1;
    int64_t deadline = vmp_mono_ns() + timeout_ns;
    while (atomic_load(&vmp_run.writer_stop) == WRITER_PAUSE && vmp_mono_ns() < deadline &&
           vmp_writer_stuck_ns() < stuck_ns)
        vmp_sleep_ns(20000);
    int want = WRITER_PAUSE;
    if (atomic_compare_exchange_strong(&vmp_run.writer_stop, &want, 0))
        return -1; /* (called off: it was writing to a pipe nobody reads, or busy) */
    /* PAUSING: what is left is closing its files, bounded. */
    pthread_join(vmp_run.writer_thread, NULL);
    return 0;
}

int vmp_writer_pause_ask(void)
{
    int want = 0;
    if (!atomic_compare_exchange_strong(&vmp_run.writer_stop, &want, WRITER_PAUSE))
        return -1;
    vmp_word_changed(&vmp_run.writer_stop); /* (native mode's rest: see writer_main) */
    vmp_ring_ring();
    return 0;
}

int vmp_writer_resume(void)
{
    atomic_store(&vmp_run.writer_stop, 0);
    atomic_store(&vmp_run.writer_tid, 0);
    ahead_before = allocated_ahead;
    return vmp_run_start_thread(&vmp_run.writer_thread, writer_main) != 0 ? -1 : 0;
}

void vmp_writer_stop(void)
{
    atomic_store(&vmp_run.writer_stop, 1);
    vmp_word_changed(&vmp_run.writer_stop);
    vmp_ring_ring();
    pthread_join(vmp_run.writer_thread, NULL);
}

void vmp_writer_release(void)
{
    vmp_u64map_free(&W.ids_by_addr);
    free_last();
    free(W.fresh);
    W.fresh = NULL;
    W.nfresh = W.fresh_cap = 0;
}

/* Holds a name beside the ring (Held): 0, or -1 when the queue is full. */
static int hold_name(uintptr_t code, const char *name, size_t len, int died)
{
    uint64_t h = atomic_load_explicit(&Held.head, memory_order_relaxed);
    if (h - atomic_load_explicit(&Held.tail, memory_order_acquire) >= HELD_MAX)
        return -1;
    held_name *e = &Held.at[h % HELD_MAX];
    e->code = code;
    e->died = died;
    e->len = (uint32_t)(len < sizeof e->text ? len : sizeof e->text);
    memcpy(e->text, name, e->len);
    e->before = vmp_ring_next_index();
    atomic_store_explicit(&Held.head, h + 1, memory_order_release);
    return 0;
}

/* Fills a claimed slot with a name and publishes it: 0, or -1 when the
 * writer gave the slot up before the publish (it waited for everything to
 * be out, and this thread was descheduled or stopped in between for over
 * a second).  Needs no GIL. */
static int put_name(vmp_slot *s, uintptr_t code, const char *name, size_t len, int died, int holds_gil)
{
    test_stall_point(holds_gil);
    if (len > VMP_SLOT_WORDS * sizeof *s->data)
        len = VMP_SLOT_WORDS * sizeof *s->data;
    memcpy(vmp_slot_words(s, (len + sizeof *s->data - 1) / sizeof *s->data), name, len);
    s->kind = VMP_SLOT_NAME;
    s->died = died;
    s->n = (uint32_t)len;
    s->code = code;
    int published = vmp_ring_publish(s);
    test_stall_told(published);
    return published;
}

/* Pushes a name again when the writer gave its slot up, this many times at
 * most (each needs another stall of over a second), then it is lost. */
#define VMP_NAME_TRIES 8

void vmp_writer_push_name(uintptr_t code, const char *name, size_t len, int died)
{
    /* A name whose slot the writer gave up on is pushed again: later in
     * the stream, but still in time.  Samples claimed meanwhile that hold
     * the address are of this same dying object (its memory is freed, and
     * a new object may take the address, only once this returns), so
     * they take the id this name is written for, and the address is
     * retired before anything of a new object there. */
    for (int tries = 0; tries < VMP_NAME_TRIES; tries++) {
        vmp_slot *s = vmp_ring_claim();
        if (s) {
            atomic_store(&names_stalled, 0);
            if (put_name(s, code, name, len, died, 1) == 0)
                return;
            continue;
        }
        if (hold_name(code, name, len, died) == 0)
            return;
        if (atomic_load(&names_stalled))
            break;
        /* Full, and the queue beside it too: the writer makes room without
         * the GIL, but it may be blocked on a pipe that a thread of this
         * program reads, which needs the GIL: wait without it.  The slot
         * is filled and published before the GIL is taken again: left
         * claimed while this thread waits for the GIL (another thread may
         * keep it for seconds), it held the writer up, and a writer
         * waiting for everything to be out gave it up. */
        int put = -1;
        int64_t start = vmp_mono_ns();
        Py_BEGIN_ALLOW_THREADS
        while (!(s = vmp_ring_claim()) && vmp_mono_ns() - start < VMP_NAME_WAIT_NS && !vmp_run_writer_hopeless())
            vmp_sleep_ns(100000);
        if (s)
            put = put_name(s, code, name, len, died, 0);
        Py_END_ALLOW_THREADS
        if (!s) {
            atomic_store(&names_stalled, 1);
            break;
        }
        atomic_store(&names_stalled, 0);
        if (put == 0)
            return;
    }
    atomic_fetch_add(&vmp_run.names_lost, 1);
    if (!died)
        return;
    uint64_t h = atomic_load_explicit(&Lost.head, memory_order_relaxed);
    uint64_t room = lost_room && lost_room < LOST_MAX ? lost_room : LOST_MAX;
    uint64_t before = vmp_ring_next_index();
    if (Lost.at && h - atomic_load_explicit(&Lost.tail, memory_order_acquire) < room) {
        Lost.at[h % LOST_MAX].code = code;
        Lost.at[h % LOST_MAX].before = before;
        atomic_store_explicit(&Lost.head, h + 1, memory_order_release);
        return;
    }
    /* Nowhere to keep it: its address cannot be retired at its place.
     * Nothing from here on is named rather (Lost; the first such place
     * stays). */
    uint64_t none = UINT64_MAX;
    atomic_compare_exchange_strong(&Lost.unnamed_from, &none, before);
}

int vmp_writer_write_head(const vmp_sampler_config *cfg, unsigned mode)
{
    vmp_wbuf *b = &W.buf;
    b->len = W.from = 0;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    time_t now = tv.tv_sec;
    localtime_r(&now, &tm);
    char bits[8];
    snprintf(bits, sizeof bits, "%d", (int)(sizeof(void *) * 8));
    if (vmp_enc_static_header(b, (uint64_t)llround(cfg->period * 1e6)) < 0 || vmp_enc_header(b, mode, "cpython") < 0 ||
        vmp_enc_time_n_zone(b, tv.tv_sec, tv.tv_usec, tm.tm_zone) < 0 || vmp_enc_meta(b, "os", 2, "linux", 5) < 0 ||
        vmp_enc_meta(b, "bits", 4, bits, strlen(bits)) < 0)
        return -1;
    for (size_t i = 0; i < cfg->n_meta; i++) {
        const char *k = cfg->meta[2 * i], *v = cfg->meta[2 * i + 1];
        size_t kl = strlen(k), vl = strlen(v);
        if (vl > VMP_MAX_META_TEXT)
            vl = VMP_MAX_META_TEXT;
        /* (one that does not fit is left out: the buffer holds a megabyte,
         * and the samples need room after the head) */
        if (b->cap - b->len < kl + vl + 32 + VMP_WRITE_BUF / 2 || vmp_enc_meta(b, k, kl, v, vl) < 0)
            continue;
    }
    return 0;
}
