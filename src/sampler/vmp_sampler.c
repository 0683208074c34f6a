/*
 * vmp_sampler.c - the sampler's timing thread, signal handler, sample ring and
 * writer thread (the design is described in vmp_sampler.h).
 *
 * The ring: VMP_RING_SLOTS fixed-size slots, each big enough for the deepest
 * stack written.  A producer (signal handler, or a name from a dying code
 * object) claims the next index with a compare-and-swap on `head` when fewer
 * than VMP_RING_SLOTS slots are undrained, fills the slot and marks it READY;
 * the writer consumes indexes in order from `tail`, so the file order is the
 * claim order.  A handler claims its slot before walking the stack; a code
 * object's death is claimed after it lost its last reference; hence every
 * sample that can hold an address precedes the record that retires it.
 *
 * Memory that a signal handler may touch (the ring, the code set) is mapped
 * once and never unmapped; pages are given back with madvise after a run.
 */
#include "vmp_frames.h" /* Python.h first: it sets the feature macros (_GNU_SOURCE) */
#include "vmp_sampler.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "vmp_codes.h"
#include "vmp_delivery.h"
#include "vmp_encode.h"
#include "vmp_format.h"
#include "vmp_hash.h"
#include "vmp_native_mode.h"

#define VMP_RING_SLOTS 1024
#define VMP_SLOT_WORDS (2 * VMP_MAX_DEPTH_WRITTEN)
#define VMP_CHECK_NS 50000000LL      /* check that our handler is still installed */
#define VMP_WRITER_SLEEP_NS 2000000L /* the writer drains every 2 ms */
#define VMP_WRITE_BUF (1 << 20)
#define VMP_MIN_PERIOD 0.00001 /* 100 kHz: beyond it the signals alone saturate a core */

enum { SLOT_FREE, SLOT_BUSY, SLOT_READY };
/* SLOT_REPEAT: the sampler thread found the thread idle since its last
 * sample (vmp_delivery.h) and asks the writer to write that sample again. */
enum { SLOT_SAMPLE, SLOT_NAME, SLOT_REPEAT };

typedef struct vmp_slot {
    _Atomic int state;
    int kind;
    int died;           /* SLOT_NAME: the object is gone, retire the address */
    uint32_t n;         /* words of data (SAMPLE), bytes of name (NAME) */
    pid_t tid;          /* SAMPLE, REPEAT: the sampled thread's kernel tid */
    uint64_t thread_id;
    uint64_t rss_kib;
    uint64_t code;      /* SLOT_NAME: whose name */
    uint64_t data[VMP_SLOT_WORDS];
} vmp_slot;

static struct {
    /* configuration of the current run */
    int fd;
    int64_t period_ns;
    int memory, lines, real_time, native;
    pid_t pid;
    int signo;
    struct sigaction old_action;

    /* lifecycle */
    int enabled;                /* GIL-protected */
    _Atomic int active;         /* handlers record samples */
    _Atomic int paused;         /* stop_sampling() nesting */
    _Atomic int in_handler;     /* handlers between entry and exit */

    /* the ring */
    vmp_slot *slots;
    _Atomic uint64_t head, tail;

    /* threads */
    pthread_t sampler_thread, writer_thread;
    _Atomic int sampler_stop, writer_stop;
    _Atomic pid_t sampler_tid, writer_tid;
    _Atomic int sampler_ready;  /* its CPU-time baseline is taken */
    vmp_delivery delivery;      /* the sampler thread's schedule (and its figures) */
    int statm_fd;
    _Atomic uint64_t rss_kib;

    /* figures */
    _Atomic uint64_t samples, dropped, received, names_lost;
    _Atomic int write_errno;
} S = {.fd = -1, .statm_fd = -1};

static int atfork_registered;

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void sleep_ns(long ns)
{
    struct timespec t = {ns / 1000000000L, ns % 1000000000L};
    while (nanosleep(&t, &t) < 0 && errno == EINTR) {
    }
}

static pid_t my_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* ---- the ring ---------------------------------------------------------- */

/* Claims the next slot, or returns NULL when the ring is full.
 * Async-signal-safe. */
static vmp_slot *ring_claim(void)
{
    uint64_t h = atomic_load_explicit(&S.head, memory_order_relaxed);
    for (;;) {
        uint64_t t = atomic_load_explicit(&S.tail, memory_order_acquire);
        if (h - t >= VMP_RING_SLOTS)
            return NULL;
        if (atomic_compare_exchange_weak_explicit(&S.head, &h, h + 1, memory_order_acq_rel,
                                                  memory_order_relaxed))
            break;
    }
    vmp_slot *s = &S.slots[h % VMP_RING_SLOTS];
    atomic_store_explicit(&s->state, SLOT_BUSY, memory_order_relaxed);
    return s;
}

static void ring_publish(vmp_slot *s)
{
    atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
}

/* ---- the signal handler ------------------------------------------------- */

/* A fault guard for the walk.  The thread is interrupted at an arbitrary
 * instruction, and the interpreter does not publish its frames atomically:
 * 3.11 and 3.12 point tstate->cframe at a new C-stack _PyCFrame before its
 * current_frame is written, so for a few instructions the walker may follow
 * garbage.  A fault there jumps back here (the sample is dropped) instead of
 * ending the process; any other fault goes to the program's own handler. */
static __thread sigjmp_buf *walk_guard __attribute__((tls_model("initial-exec")));
static struct sigaction old_segv, old_bus;
static int fault_handler_installed;
static _Atomic uint64_t faults;

static void on_fault(int sig, siginfo_t *info, void *ucontext)
{
    sigjmp_buf *guard = walk_guard;
    if (guard) {
        walk_guard = NULL;
        sigset_t unblock;
        sigemptyset(&unblock);
        sigaddset(&unblock, sig);
        pthread_sigmask(SIG_UNBLOCK, &unblock, NULL); /* we leave without sigreturn */
        siglongjmp(*guard, 1);
    }
    const struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
    if (old->sa_flags & SA_SIGINFO) {
        old->sa_sigaction(sig, info, ucontext);
    } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
    } else {
        /* Default action: put it back; the faulting instruction runs again
         * and the kernel ends the process as it would have without us. */
        signal(sig, SIG_DFL);
    }
}

static size_t guarded_walk(PyThreadState *ts, uint64_t *out, void *ucontext)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 0)) {
        atomic_fetch_add_explicit(&faults, 1, memory_order_relaxed);
        return 0;
    }
    walk_guard = &env;
    /* Native mode: the C stack too, spliced with the Python frames. */
    size_t n = S.native ? vmp_native_mode_sample(ucontext, ts, out, VMP_SLOT_WORDS, S.lines)
                        : vmp_frames_walk(ts, out, VMP_MAX_DEPTH_WRITTEN, S.lines);
    walk_guard = NULL;
    return n;
}

static int run_guarded(void (*fn)(void *), void *arg)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 0)) {
        atomic_fetch_add_explicit(&faults, 1, memory_order_relaxed);
        return -1;
    }
    walk_guard = &env;
    fn(arg);
    walk_guard = NULL;
    return 0;
}

static volatile uintptr_t unmapped_address = 16; /* the first page is never mapped */

static void read_unmapped(void *arg)
{
    (void)arg;
    volatile const char *p = (volatile const char *)unmapped_address;
    (void)*p;
}

int vmp_sampler_guard_selftest(void)
{
    if (!S.enabled)
        return -1;
    return run_guarded(read_unmapped, NULL) < 0 ? 1 : 0;
}

static void install_fault_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    struct sigaction cur;
    /* (Left installed by a run whose last signal never arrived: the
     * program's handlers are already in old_segv and old_bus.) */
    if (sigaction(SIGSEGV, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fault)
        return;
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    fault_handler_installed = 1;
}

static void restore_fault_handler(void)
{
    struct sigaction cur;
    if (!fault_handler_installed)
        return;
    /* Only when still ours: a handler installed after ours (faulthandler)
     * chains to ours and must keep working. */
    if (sigaction(SIGSEGV, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fault)
        sigaction(SIGSEGV, &old_segv, NULL);
    if (sigaction(SIGBUS, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fault)
        sigaction(SIGBUS, &old_bus, NULL);
    fault_handler_installed = 0;
}

/* Returns 1 when a sample with a stack went into the ring. */
static int take_sample(void *ucontext)
{
    PyThreadState *ts = vmp_frames_this_thread();
    if (!ts)
        return 0;
    vmp_slot *s = ring_claim();
    if (!s) {
        atomic_fetch_add_explicit(&S.dropped, 1, memory_order_relaxed);
        return 0;
    }
    size_t n = guarded_walk(ts, s->data, ucontext);
    for (size_t i = S.lines ? 1 : 0; i < n; i += S.lines ? 2 : 1)
        if (!(s->data[i] & VMP_NATIVE_BIT)) /* native frames (odd) are not code objects */
            vmp_codes_note((uintptr_t)s->data[i]);
    s->kind = SLOT_SAMPLE;
    s->n = (uint32_t)n;
    s->tid = vmp_delivery_this_tid();
    s->thread_id = vmp_frames_thread_id(ts);
    s->rss_kib = atomic_load_explicit(&S.rss_kib, memory_order_relaxed);
    ring_publish(s);
    return n > 0;
}

/* The sampler thread's `repeat` (vmp_delivery.h): thread tid's last sample
 * once more.  Not while paused: a signal then takes no sample either. */
static int repeat_sample(pid_t tid)
{
    if (!atomic_load(&S.active) || atomic_load_explicit(&S.paused, memory_order_relaxed))
        return -1;
    vmp_slot *s = ring_claim();
    if (!s)
        return -1; /* full: the signal sent instead counts the drop */
    s->kind = SLOT_REPEAT;
    s->n = 0;
    s->tid = tid;
    s->rss_kib = atomic_load_explicit(&S.rss_kib, memory_order_relaxed);
    ring_publish(s);
    return 0;
}


static void on_signal(int signo, siginfo_t *info, void *ucontext)
{
    (void)signo;
    int saved_errno = errno;
    atomic_fetch_add(&S.in_handler, 1);
    int kept = 0;
    if (atomic_load(&S.active) && !atomic_load_explicit(&S.paused, memory_order_relaxed))
        kept = take_sample(ucontext);
    if (info && info->si_code == SI_TKILL && info->si_pid == S.pid) {
        atomic_fetch_add_explicit(&S.received, 1, memory_order_relaxed);
        if (S.real_time)
            vmp_delivery_sampled(kept); /* so that an idle thread's sample can be repeated */
        vmp_delivery_handled();         /* the sampler may send this thread its next one */
    }
    atomic_fetch_sub(&S.in_handler, 1);
    errno = saved_errno;
}

/* A signal the program does not handle: SIGPROF (as the original vmprof
 * used), else a real-time signal nobody installed a handler for. */
static int handler_is_mine(const struct sigaction *cur)
{
    return (cur->sa_flags & SA_SIGINFO) && cur->sa_sigaction == on_signal;
}

static int choose_signal(void)
{
    struct sigaction cur;
    if (sigaction(SIGPROF, NULL, &cur) == 0 &&
        (handler_is_mine(&cur) ||
         (!(cur.sa_flags & SA_SIGINFO) && (cur.sa_handler == SIG_DFL || cur.sa_handler == SIG_IGN))))
        return SIGPROF;
    for (int sig = SIGRTMAX - 1; sig >= SIGRTMIN + 1; sig--) {
        if (sigaction(sig, NULL, &cur) == 0 &&
            (handler_is_mine(&cur) || (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_DFL)))
            return sig;
    }
    return -1;
}

/* Whether a thread of the process still has signo pending (sent, not yet
 * handled: the thread is about to run, or blocks the signal). */
static int signal_pending_somewhere(int signo)
{
    DIR *dir = opendir("/proc/self/task");
    if (!dir)
        return 1;
    int pending = 0;
    struct dirent *e;
    while (!pending && (e = readdir(dir)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue; /* ended meanwhile: nothing pending there */
        unsigned long long mask;
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "SigPnd: %llx", &mask) == 1) {
                pending = (mask >> (signo - 1)) & 1;
                break;
            }
        }
        fclose(f);
    }
    closedir(dir);
    return pending;
}

/* ---- the sampler thread -------------------------------------------------- */

static int handler_is_ours(void)
{
    struct sigaction cur;
    return sigaction(S.signo, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
           cur.sa_sigaction == on_signal;
}

static void read_rss(void)
{
    char buf[128];
    ssize_t n = pread(S.statm_fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return;
    buf[n] = 0;
    unsigned long size, resident;
    if (sscanf(buf, "%lu %lu", &size, &resident) == 2)
        atomic_store_explicit(&S.rss_kib, (uint64_t)resident * (uint64_t)(sysconf(_SC_PAGESIZE) / 1024),
                              memory_order_relaxed);
}

static void *sampler_main(void *arg)
{
    (void)arg;
    atomic_store(&S.sampler_tid, my_tid());
    prctl(PR_SET_TIMERSLACK, 1UL); /* wake at the deadline, not up to 50 us late */
    if (S.memory)
        read_rss();
    /* The CPU time of the threads already there counts from now, before
     * enable returns (it waits for `sampler_ready`): a CPU-time baseline taken
     * at this thread's first wake-up instead lost all the time burned before
     * it, every sample of a short run when a loaded machine let this new
     * thread wait longer than the run (seen: 0 samples of 0.1 s of CPU). */
    int started = vmp_delivery_start(&S.delivery);
    atomic_store(&S.sampler_ready, 1); /* enable must not wait for a sampler that gave up */
    if (started < 0)
        return NULL;
    int64_t last_check = 0;
    while (!atomic_load(&S.sampler_stop)) {
        int64_t periods = vmp_delivery_wait(&S.delivery);
        if (periods) {
            int64_t now = S.delivery.last_round; /* when this round woke */
            if (now - last_check >= VMP_CHECK_NS) {
                last_check = now;
                if (!handler_is_ours())
                    break; /* the program took our signal over: stop sending it */
            }
            if (S.memory)
                read_rss();
        }
        vmp_delivery_send(&S.delivery, periods);
    }
    vmp_delivery_stop(&S.delivery);
    return NULL;
}

/* ---- the writer thread ---------------------------------------------------- */

/* Profile ids: the first code object at an address keeps the address as its
 * id; after it died, the next one there gets the address with a generation
 * number in the top 16 bits (user-space addresses never use them).  The map
 * holds, per address seen, (generation << 1) | retired, where retired says
 * the object there died and the next sample starts a new generation. */
#define ID_RETIRED 1u
#define ID_GEN_MAX 0xffffu

/* Wall clock: the last sample written for each thread, by tid slot
 * (vmp_tid_slot), for SLOT_REPEAT.  Two live threads sharing a slot cannot
 * both be repeated: the repeat of the one not held is counted as dropped. */
typedef struct last_sample {
    pid_t tid; /* 0: none */
    uint32_t n, cap;
    uint64_t thread_id;
    uint64_t *ids;
} last_sample;

static struct {
    vmp_u64map ids_by_addr;
    last_sample *last; /* VMP_TID_SLOTS of them, made by the first one kept */
    vmp_wbuf buf;
    unsigned char *mem;
    uint64_t ids[VMP_SLOT_WORDS];
} W;

static uint64_t id_with_gen(uint64_t addr, uint32_t state)
{
    return addr | ((uint64_t)(state >> 1) << 48);
}

static uint64_t id_for_sample(uint64_t addr)
{
    uint32_t state = 0;
    if (vmp_u64map_find(&W.ids_by_addr, addr, &state) && !(state & ID_RETIRED))
        return id_with_gen(addr, state);
    if (state & ID_RETIRED) /* a new object where a named one died */
        state = ((state >> 1) < ID_GEN_MAX ? (state >> 1) + 1 : ID_GEN_MAX) << 1;
    if (vmp_u64map_put(&W.ids_by_addr, addr, state) < 0)
        return addr; /* out of memory: the address still names something */
    return id_with_gen(addr, state);
}

/* The id to name; marks it retired when the object died. */
static uint64_t id_for_name(uint64_t addr, int died)
{
    uint32_t state = 0;
    vmp_u64map_find(&W.ids_by_addr, addr, &state);
    if (died && vmp_u64map_put(&W.ids_by_addr, addr, state | ID_RETIRED) < 0)
        return addr;
    return id_with_gen(addr, state);
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) { /* a non-blocking pipe that is full: wait for the reader */
                sleep_ns(1000000);
                continue;
            }
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void flush(void)
{
    if (W.buf.len && !atomic_load(&S.write_errno) && write_all(S.fd, W.buf.data, W.buf.len) < 0)
        atomic_store(&S.write_errno, errno ? errno : EIO);
    W.buf.len = 0;
}

static void keep_last(pid_t tid, uint64_t thread_id, const uint64_t *ids, uint32_t n)
{
    if (!W.last && !(W.last = calloc(VMP_TID_SLOTS, sizeof *W.last)))
        return;
    last_sample *l = &W.last[vmp_tid_slot(tid)];
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
    l->thread_id = thread_id;
    l->tid = tid;
}

static void free_last(void)
{
    if (W.last)
        for (size_t i = 0; i < VMP_TID_SLOTS; i++)
            free(W.last[i].ids);
    free(W.last);
    W.last = NULL;
}

static void write_stack(const uint64_t *ids, uint32_t n, uint64_t thread_id, uint64_t rss_kib)
{
    if (W.buf.cap - W.buf.len < vmp_enc_stack_size(&W.buf, n, S.memory))
        flush();
    vmp_enc_stack(&W.buf, ids, n, thread_id, S.memory, rss_kib);
    atomic_fetch_add_explicit(&S.samples, 1, memory_order_relaxed);
}

static void process(vmp_slot *s)
{
    if (s->kind == SLOT_REPEAT) {
        const last_sample *l = W.last ? &W.last[vmp_tid_slot(s->tid)] : NULL;
        if (l && l->tid == s->tid)
            write_stack(l->ids, l->n, l->thread_id, s->rss_kib);
        else
            atomic_fetch_add_explicit(&S.dropped, 1, memory_order_relaxed);
        return;
    }
    if (s->kind == SLOT_NAME) {
        uint64_t id = id_for_name(s->code, s->died);
        if (W.buf.cap - W.buf.len < vmp_enc_name_size(&W.buf, s->n))
            flush();
        vmp_enc_name(&W.buf, VMP_TAG_VIRTUAL_IP, id, (const char *)s->data, s->n);
        return;
    }
    if (s->n == 0)
        return; /* no Python frame to show (a thread between functions) */
    for (size_t i = 0; i < s->n; i++)
        W.ids[i] = (S.lines && i % 2 == 0)          ? s->data[i]
                   : (s->data[i] & VMP_NATIVE_BIT) ? vmp_native_mode_entry_id(s->data[i])
                                                   : id_for_sample(s->data[i]);
    write_stack(W.ids, s->n, s->thread_id, s->rss_kib);
    if (S.real_time)
        keep_last(s->tid, s->thread_id, W.ids, s->n);
}

/* Writes every published slot in order; with `wait`, also waits (bounded)
 * for slots whose producer is still filling them.  Returns 1 when the ring
 * is empty. */
static int drain(int wait)
{
    int64_t waited_since = 0;
    for (;;) {
        uint64_t t = atomic_load_explicit(&S.tail, memory_order_relaxed);
        if (t == atomic_load_explicit(&S.head, memory_order_acquire))
            return 1;
        vmp_slot *s = &S.slots[t % VMP_RING_SLOTS];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_READY) {
            if (!wait)
                return 0;
            /* A producer is between its claim and its publish; it cannot
             * block, but give up on it after a second rather than hang. */
            int64_t now = mono_ns();
            if (!waited_since)
                waited_since = now;
            if (now - waited_since < 1000000000LL) {
                sleep_ns(20000);
                continue;
            }
            atomic_fetch_add(&S.dropped, 1);
        } else {
            process(s);
        }
        waited_since = 0;
        atomic_store_explicit(&s->state, SLOT_FREE, memory_order_relaxed);
        atomic_store_explicit(&S.tail, t + 1, memory_order_release);
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
    if (S.native)
        vmp_native_mode_write_names(&W.buf, flush);
    write_meta_u64("samples", atomic_load(&S.samples));
    write_meta_u64("samples_dropped", atomic_load(&S.dropped));
    if (S.real_time) /* of `samples`: idle threads, written again without waking them */
        write_meta_u64("samples_repeated", atomic_load(&S.delivery.repeated));
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (W.buf.cap - W.buf.len < 64)
        flush();
    vmp_enc_trailer(&W.buf, tv.tv_sec, tv.tv_usec, NULL);
    flush();
}

static void *writer_main(void *arg)
{
    (void)arg;
    atomic_store(&S.writer_tid, my_tid());
    unsigned ticks = 0;
    while (!atomic_load(&S.writer_stop)) {
        /* Every ~100 ms, let native mode learn libraries loaded meanwhile. */
        if (S.native && ticks++ % 50 == 0)
            vmp_native_mode_tick();
        drain(0);
        flush();
        sleep_ns(VMP_WRITER_SLEEP_NS);
    }
    drain(1);
    write_end();
    return NULL;
}

/* ---- names ------------------------------------------------------------- */

/* Puts a name in the stream (GIL held, normal context).  When the ring is
 * full it waits for the writer, which needs no GIL to make room. */
static void push_name(uintptr_t code, const char *name, size_t len, int died)
{
    vmp_slot *s;
    int64_t start = 0;
    while (!(s = ring_claim())) {
        int64_t now = mono_ns();
        if (!start)
            start = now;
        if (now - start > 5000000000LL) {
            atomic_fetch_add(&S.names_lost, 1);
            return;
        }
        sleep_ns(100000);
    }
    if (len > sizeof s->data)
        len = sizeof s->data;
    memcpy(s->data, name, len);
    s->kind = SLOT_NAME;
    s->died = died;
    s->n = (uint32_t)len;
    s->code = code;
    ring_publish(s);
}

/* ---- lifecycle ------------------------------------------------------------ */

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int write_head(const vmp_sampler_config *cfg, unsigned mode)
{
    unsigned char mem[16384];
    vmp_wbuf b;
    vmp_wbuf_init(&b, mem, sizeof mem);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    time_t now = tv.tv_sec;
    localtime_r(&now, &tm);
    char bits[8];
    snprintf(bits, sizeof bits, "%d", (int)(sizeof(void *) * 8));
    if (vmp_enc_static_header(&b, (uint64_t)llround(cfg->period * 1e6)) < 0 ||
        vmp_enc_header(&b, mode, "cpython") < 0 ||
        vmp_enc_time_n_zone(&b, tv.tv_sec, tv.tv_usec, tm.tm_zone) < 0 ||
        vmp_enc_meta(&b, "os", 2, "linux", 5) < 0 || vmp_enc_meta(&b, "bits", 4, bits, strlen(bits)) < 0)
        return -1;
    for (size_t i = 0; i < cfg->n_meta; i++) {
        const char *k = cfg->meta[2 * i], *v = cfg->meta[2 * i + 1];
        size_t kl = strlen(k), vl = strlen(v);
        if (vl > VMP_MAX_META_TEXT)
            vl = VMP_MAX_META_TEXT;
        if (b.cap - b.len < kl + vl + 32) {
            if (write_all(cfg->fd, b.data, b.len) < 0)
                return -1;
            b.len = 0;
        }
        if (vmp_enc_meta(&b, k, kl, v, vl) < 0) /* too long for the buffer: write it alone */
            continue;
    }
    return write_all(cfg->fd, b.data, b.len);
}

static void on_fork_child(void)
{
    /* The child has none of our threads and must never write into the
     * parent's profile: forget the run so that it may start its own. */
    vmp_delivery_forget_tid(); /* this thread has a new tid here, profiling or not */
    if (!S.enabled)
        return;
    atomic_store(&S.active, 0);
    sigaction(S.signo, &S.old_action, NULL);
    restore_fault_handler();
    vmp_codes_abandon();
    atomic_store(&S.in_handler, 0); /* handlers of threads the child does not have */
    atomic_store(&S.head, 0);
    atomic_store(&S.tail, 0);
    for (size_t i = 0; i < VMP_RING_SLOTS; i++)
        atomic_store(&S.slots[i].state, SLOT_FREE);
    if (S.statm_fd >= 0)
        close(S.statm_fd);
    S.statm_fd = -1;
    S.enabled = 0;
    S.native = 0; /* the parent's native state is left alone; a new enable renews it */
    S.fd = -1;
}

static int start_thread(pthread_t *th, void *(*fn)(void *))
{
    /* Our threads block every signal: Ctrl-C and the program's signals go to
     * its own threads, and ours are never sampled. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(th, NULL, fn, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Undoes vmp_native_mode_start when enabling fails after it. */
static void native_abandon(void)
{
    if (S.native)
        vmp_native_mode_stop();
    S.native = 0;
}

int vmp_sampler_enable(const vmp_sampler_config *cfg, char *err, size_t errlen)
{
    const char *why;
    if (S.enabled)
        return fail(err, errlen, "vmprof is already enabled: call vmprof.disable() before enabling again");
    if (!vmp_frames_supported(&why))
        return fail(err, errlen, "%s", why);
    if (!(cfg->period > 0 && cfg->period < 1))
        return fail(err, errlen,
                    "period must be above 0 and below 1 second (got %g): e.g. 0.001 for 1000 samples a second",
                    cfg->period);
    if (cfg->period < VMP_MIN_PERIOD)
        return fail(err, errlen, "period %g s is shorter than the 10 microseconds vmprof can sample at: use %g or more",
                    cfg->period, VMP_MIN_PERIOD);
    int flags = fcntl(cfg->fd, F_GETFL);
    if (flags < 0)
        return fail(err, errlen, "file descriptor %d is not open: pass the fileno() of a file opened for writing",
                    cfg->fd);
    if ((flags & O_ACCMODE) == O_RDONLY)
        return fail(err, errlen, "file descriptor %d is open for reading only: open the profile file for writing ('wb')",
                    cfg->fd);
    if (!S.slots) {
        void *p = mmap(NULL, sizeof(vmp_slot) * VMP_RING_SLOTS, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            return fail(err, errlen, "no memory for the sample buffer: %s", strerror(errno));
        S.slots = p;
    }
    int signo = choose_signal();
    if (signo < 0)
        return fail(err, errlen, "every signal vmprof could use already has a handler: free SIGPROF for vmprof");

    /* Native mode first: when it cannot work, nothing is written yet. */
    if (cfg->native && vmp_native_mode_start(err, errlen) < 0)
        return -1;
    S.native = cfg->native;
    unsigned mode = (cfg->memory ? VMP_MODE_MEMORY : 0) | (cfg->lines ? VMP_MODE_LINES : 0) |
                    (cfg->real_time ? VMP_MODE_REAL_TIME : 0) | (cfg->native ? VMP_MODE_NATIVE : 0);
    if (write_head(cfg, mode) < 0) {
        native_abandon();
        return fail(err, errlen, "cannot write the profile to file descriptor %d: %s", cfg->fd, strerror(errno));
    }

    S.fd = cfg->fd;
    S.period_ns = llround(cfg->period * 1e9);
    S.memory = cfg->memory;
    S.lines = cfg->lines;
    S.real_time = cfg->real_time;
    S.pid = getpid();
    S.signo = signo;
    atomic_store(&S.head, 0);
    atomic_store(&S.tail, 0);
    atomic_store(&S.samples, 0);
    atomic_store(&S.dropped, 0);
    atomic_store(&S.received, 0);
    atomic_store(&S.names_lost, 0);
    atomic_store(&S.write_errno, 0);
    atomic_store(&S.rss_kib, 0);
    atomic_store(&faults, 0);
    S.delivery = (vmp_delivery){.period_ns = S.period_ns, .cpu_clock = !S.real_time, .signo = signo,
                                .skip = {&S.sampler_tid, &S.writer_tid}, .repeat = repeat_sample,
                                .task_fd = -1};
    atomic_store(&S.sampler_stop, 0);
    atomic_store(&S.writer_stop, 0);
    atomic_store(&S.sampler_tid, 0);
    atomic_store(&S.writer_tid, 0);
    atomic_store(&S.sampler_ready, 0);
    if (cfg->memory)
        S.statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

    if (!W.mem && !(W.mem = malloc(VMP_WRITE_BUF))) {
        native_abandon();
        return fail(err, errlen, "no memory for the write buffer");
    }
    vmp_wbuf_init(&W.buf, W.mem, VMP_WRITE_BUF);
    vmp_u64map_free(&W.ids_by_addr);
    free_last();

    if (vmp_codes_start(push_name) < 0) {
        PyErr_Clear();
        native_abandon();
        return fail(err, errlen, "no memory for the code-object set");
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    install_fault_handler();
    struct sigaction cur;
    if (sigaction(signo, NULL, &cur) == 0 && handler_is_mine(&cur)) {
        /* ours, left inert by a run whose last signal never arrived: the
         * program's own disposition from that run is still in old_action */
    } else if (sigaction(signo, NULL, &S.old_action) < 0) {
        vmp_codes_stop();
        restore_fault_handler();
        native_abandon();
        return fail(err, errlen, "cannot read the signal disposition: %s", strerror(errno));
    }
    if (sigaction(signo, &sa, NULL) < 0) {
        vmp_codes_stop();
        restore_fault_handler();
        native_abandon();
        return fail(err, errlen, "cannot install the signal handler: %s", strerror(errno));
    }
    atomic_store(&S.paused, 0);
    atomic_store(&S.active, 1);
    if (start_thread(&S.writer_thread, writer_main) != 0) {
        atomic_store(&S.active, 0);
        sigaction(signo, &S.old_action, NULL);
        vmp_codes_stop();
        restore_fault_handler();
        native_abandon();
        return fail(err, errlen, "cannot start the writer thread");
    }
    while (!atomic_load(&S.writer_tid)) /* so the sampler never signals it */
        sleep_ns(10000);
    if (start_thread(&S.sampler_thread, sampler_main) != 0) {
        atomic_store(&S.active, 0);
        atomic_store(&S.writer_stop, 1);
        pthread_join(S.writer_thread, NULL);
        sigaction(signo, &S.old_action, NULL);
        vmp_codes_stop();
        restore_fault_handler();
        native_abandon();
        return fail(err, errlen, "cannot start the sampler thread");
    }
    while (!atomic_load(&S.sampler_ready)) /* the program's CPU time counts from here */
        sleep_ns(10000);
    if (!atfork_registered) {
        pthread_atfork(NULL, NULL, on_fork_child);
        atfork_registered = 1;
    }
    S.enabled = 1;
    return 0;
}

int vmp_sampler_disable(vmp_sampler_stats *stats, char *err, size_t errlen)
{
    if (!S.enabled)
        return fail(err, errlen, "vmprof is not enabled: call vmprof.enable() first");
    atomic_store(&S.sampler_stop, 1);
    pthread_join(S.sampler_thread, NULL);

    /* Signals already sent are delivered within microseconds to a thread that
     * does not block them; wait for them before the old handler returns, so
     * that a late one never meets the default action (which for SIGPROF ends
     * the process).  If some never arrive, ours stays installed, inert. */
    int64_t deadline = mono_ns() + 200000000LL;
    int all_arrived = atomic_load(&S.received) >= atomic_load(&S.delivery.sent);
    while (!all_arrived && mono_ns() < deadline) {
        /* (Signals sent to threads that ended since are never received.) */
        all_arrived = !signal_pending_somewhere(S.signo);
        if (!all_arrived)
            sleep_ns(1000000);
    }
    atomic_store(&S.active, 0);
    while (atomic_load(&S.in_handler))
        sleep_ns(10000);
    if (all_arrived && handler_is_ours()) /* else the program replaced it: leave theirs */
        sigaction(S.signo, &S.old_action, NULL);

    vmp_codes_name_live(push_name, run_guarded);
    vmp_codes_stop();
    if (all_arrived)
        restore_fault_handler(); /* else a late signal may still walk */
    atomic_store(&S.writer_stop, 1);
    pthread_join(S.writer_thread, NULL);
    /* No handler samples any more (active is 0 and none is inside), and the
     * writer is done: native mode's tables can go, even if a late signal
     * still arrives (it records nothing). */
    native_abandon();
    if (S.statm_fd >= 0)
        close(S.statm_fd);
    S.statm_fd = -1;
    madvise(S.slots, sizeof(vmp_slot) * VMP_RING_SLOTS, MADV_DONTNEED);
    vmp_u64map_free(&W.ids_by_addr);
    free_last();
    S.enabled = 0;
    S.fd = -1;

    if (stats) {
        stats->samples = atomic_load(&S.samples);
        stats->dropped = atomic_load(&S.dropped);
        stats->signals_sent = atomic_load(&S.delivery.sent);
        stats->samples_repeated = atomic_load(&S.delivery.repeated);
        stats->periods = atomic_load(&S.delivery.periods);
        stats->periods_late = atomic_load(&S.delivery.late);
        stats->untracked_codes = vmp_codes_untracked();
        stats->walk_faults = atomic_load(&faults);
        stats->signo = S.signo;
    }
    int e = atomic_load(&S.write_errno);
    if (e)
        return fail(err, errlen, "writing the profile failed (%s): it holds the samples written before", strerror(e));
    return 0;
}

int vmp_sampler_is_enabled(void)
{
    return S.enabled;
}

int vmp_sampler_fd(void)
{
    return S.enabled ? S.fd : -1;
}

void vmp_sampler_pause(void)
{
    atomic_fetch_add(&S.paused, 1);
}

void vmp_sampler_resume(void)
{
    if (atomic_fetch_sub(&S.paused, 1) <= 0)
        atomic_fetch_add(&S.paused, 1); /* never below zero */
}

size_t vmp_sampler_stack_now(uint64_t *out, size_t max_frames)
{
    PyThreadState *ts = vmp_frames_this_thread();
    return ts ? vmp_frames_walk(ts, out, max_frames, 0) : 0;
}
