/*
 * vmp_ring.c - the ring of sample slots (design in vmp_ring.h).
 */
#include "vmp_ring.h"

#include <errno.h>
#include <linux/futex.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static struct {
    vmp_slot *slots;
    uint64_t *rooms; /* VMP_SLOT_WORDS words per slot, after the heads */
    _Atomic uint64_t head, tail;
    _Atomic uint64_t given_up; /* slots given up on, not given back yet */
    int wiped_on_fork; /* a fork child finds every slot free already */
    _Atomic uint32_t bell;    /* rung: bumped (a futex word) */
    _Atomic uint32_t heard;   /* the bell's value the consumer last woke for */
    _Atomic int napping;      /* the consumer is in (or about to enter) its futex wait */
} R;

void vmp_ring_ring(void)
{
    atomic_fetch_add(&R.bell, 1);
    /* (seq_cst: a consumer that set napping after this load reads the bell
     * after the bump, and does not sleep) */
    if (atomic_load(&R.napping))
        syscall(SYS_futex, &R.bell, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

int vmp_ring_nap(int64_t timeout_ns)
{
    atomic_store(&R.napping, 1);
    uint32_t bell = atomic_load(&R.bell);
    if (bell == atomic_load(&R.heard)) {
        struct timespec t = {(time_t)(timeout_ns / 1000000000LL), (long)(timeout_ns % 1000000000LL)};
        /* (returns at once when the bell moved since it was read; early on
         * a stray signal or wake-up: a short nap, harmless) */
        syscall(SYS_futex, &R.bell, FUTEX_WAIT_PRIVATE, bell, &t, NULL, 0);
    }
    atomic_store(&R.napping, 0);
    uint32_t now = atomic_load(&R.bell);
    int rang = now != atomic_load(&R.heard);
    atomic_store(&R.heard, now);
    return rang;
}

/* The mapping: the heads, then the rooms. */
#define RING_BYTES (sizeof(vmp_slot) * VMP_RING_SLOTS + sizeof(uint64_t) * VMP_SLOT_WORDS * VMP_RING_SLOTS)

int vmp_ring_map(void)
{
    if (R.slots)
        return 0;
    void *p = mmap(NULL, RING_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    R.slots = p;
    R.rooms = (uint64_t *)(R.slots + VMP_RING_SLOTS);
#ifdef MADV_WIPEONFORK
    /* A fork child gets these pages as zeros (every slot free) instead of
     * copies made on first touch: its reset costs no page copies, and the
     * fork no copy of the ring's page tables (a 4 MB ring made each fork of a
     * profiled program about 3 ms slower). */
    R.wiped_on_fork = madvise(p, RING_BYTES, MADV_WIPEONFORK) == 0;
#endif
    return 0;
}

uint64_t *vmp_ring_room(const vmp_slot *s)
{
    return R.rooms + (size_t)(s - R.slots) * VMP_SLOT_WORDS;
}

void vmp_ring_reset(int slots_too)
{
    if (slots_too) {
        /* (a fork child's slots are zeros already where the kernel wiped
         * them; in the process that mapped them, the tags left there are
         * for indexes that go on from the head) */
        atomic_store(&R.tail, atomic_load(&R.head));
        atomic_store(&R.given_up, 0);
        if (R.slots && !R.wiped_on_fork)
            for (size_t i = 0; i < VMP_RING_SLOTS; i++)
                atomic_store(&R.slots[i].state, 0);
    } else {
        /* (after a drained run, nothing: the tail is at the head) */
        uint64_t index;
        vmp_slot *s;
        while ((s = vmp_ring_oldest(&index))) {
            if (vmp_ring_look(s, index) == VMP_RING_FILLING)
                vmp_ring_give_up(s, index);
            vmp_ring_release_oldest(s);
        }
    }
    atomic_store(&R.napping, 0);
    atomic_store(&R.heard, atomic_load(&R.bell));
}

vmp_slot *vmp_ring_claim(void)
{
    uint64_t h = atomic_load_explicit(&R.head, memory_order_relaxed), t;
    for (;;) {
        t = atomic_load_explicit(&R.tail, memory_order_acquire);
        if (h - t >= VMP_RING_SLOTS)
            return NULL;
        if (atomic_compare_exchange_weak_explicit(&R.head, &h, h + 1, memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
    vmp_slot *s = &R.slots[h % VMP_RING_SLOTS];
    /* The claim that fills the ring to the mark rings the consumer's bell.
     * (Claims in order read the tail in order, after the claim before
     * theirs: the fill they see grows by one at most, so a filling ring
     * meets the mark exactly.) */
    if (h - t == VMP_RING_WAKE_AT - 1)
        vmp_ring_ring();
    /* The slot is ours when it is free for this index.  It is not while
     * the producer of an earlier index it was given up on still fills it
     * (or once the consumer, giving up on this index, went past it before
     * we got here): then this index is a hole, and the claim fails as on
     * a full ring. */
    /* The first access to the slot is a write: on a fresh page (state 0:
     * every run starts on pages given back, vmp_ring_give_back_pages) a read
     * first mapped the shared zero page, and the write after it then took a
     * copy-on-write fault, whose flush of the old mapping interrupts every
     * other CPU that runs a thread of the process: ~5 us a page, two faults
     * instead of one (the sampler thread's first samples of 1,000 waiting
     * threads: 5 ms of its CPU; each handler's first claims alike).  A
     * compare-and-swap writes even when it fails (x86's LOCK CMPXCHG), so
     * trying "fresh" first faults the page in writable at once; a slot used
     * before fails it and is taken as before. */
    uint64_t v = 0;
    if (!atomic_compare_exchange_strong_explicit(&s->state, &v, VMP_SLOT_TAG(h, VMP_SLOT_BUSY), memory_order_acq_rel,
                                                 memory_order_acquire) &&
        (v != VMP_SLOT_TAG(h, VMP_SLOT_FREE) ||
         !atomic_compare_exchange_strong_explicit(&s->state, &v, VMP_SLOT_TAG(h, VMP_SLOT_BUSY),
                                                  memory_order_acq_rel, memory_order_relaxed)))
        return NULL;
    s->index = h;
    return s;
}

int vmp_ring_publish(vmp_slot *s)
{
    uint64_t busy = VMP_SLOT_TAG(s->index, VMP_SLOT_BUSY);
    if (atomic_compare_exchange_strong_explicit(&s->state, &busy, VMP_SLOT_TAG(s->index, VMP_SLOT_READY),
                                                memory_order_release, memory_order_relaxed))
        return 0;
    /* Given up on: the consumer went past it.  Given back, it is free again
     * at the consumer's next pass; nothing of it is read.  (A state that is
     * neither: a fork child's ring started again; nothing to give back.) */
    uint64_t given_up = VMP_SLOT_TAG(s->index, VMP_SLOT_GIVEN_UP);
    if (atomic_compare_exchange_strong_explicit(&s->state, &given_up, VMP_SLOT_TAG(s->index, VMP_SLOT_GIVEN_BACK),
                                                memory_order_release, memory_order_relaxed))
        atomic_fetch_sub(&R.given_up, 1);
    return -1;
}

int vmp_ring_look(const vmp_slot *s, uint64_t index)
{
    uint64_t v = atomic_load_explicit(&s->state, memory_order_acquire);
    if (v == VMP_SLOT_TAG(index, VMP_SLOT_READY))
        return VMP_RING_READY;
    /* (0 or free for this index: the claimant has not marked it yet) */
    if (v == 0 || v >> 3 == index)
        return VMP_RING_FILLING;
    return VMP_RING_HOLE; /* still an earlier index's: its claim failed */
}

int vmp_ring_give_up(vmp_slot *s, uint64_t index)
{
    for (;;) {
        uint64_t v = atomic_load_explicit(&s->state, memory_order_acquire);
        if (v == VMP_SLOT_TAG(index, VMP_SLOT_READY))
            return VMP_RING_READY;
        if (v == VMP_SLOT_TAG(index, VMP_SLOT_BUSY)) {
            /* (counted first: its producer may give it back at once) */
            atomic_fetch_add(&R.given_up, 1);
            if (atomic_compare_exchange_strong(&s->state, &v, VMP_SLOT_TAG(index, VMP_SLOT_GIVEN_UP)))
                return VMP_RING_HOLE;
            atomic_fetch_sub(&R.given_up, 1);
            continue; /* (published meanwhile) */
        }
        if (v == 0 || v == VMP_SLOT_TAG(index, VMP_SLOT_FREE)) {
            /* The claimant has not taken it: it never will (its compare-
             * and-swap wants "free for its index"), and it is free for the
             * next pass already. */
            if (atomic_compare_exchange_strong(&s->state, &v, VMP_SLOT_TAG(index + VMP_RING_SLOTS, VMP_SLOT_FREE)))
                return VMP_RING_HOLE;
            continue; /* (taken meanwhile) */
        }
        return VMP_RING_HOLE;
    }
}

uint64_t vmp_ring_given_up(void)
{
    return atomic_load(&R.given_up);
}

vmp_slot *vmp_ring_oldest(uint64_t *index)
{
    uint64_t t = atomic_load_explicit(&R.tail, memory_order_relaxed);
    *index = t;
    if (t == atomic_load_explicit(&R.head, memory_order_acquire))
        return NULL;
    return &R.slots[t % VMP_RING_SLOTS];
}

uint64_t vmp_ring_next_index(void)
{
    return atomic_load_explicit(&R.head, memory_order_acquire);
}

void vmp_ring_release_oldest(vmp_slot *s)
{
    uint64_t t = atomic_load_explicit(&R.tail, memory_order_relaxed);
    uint64_t v = atomic_load_explicit(&s->state, memory_order_acquire);
    unsigned phase = (unsigned)(v & 7);
    /* Free for the next pass, unless a producer still holds it (busy for
     * an index passed before, or given up on: its give-back frees it at a
     * later pass) or a give-up made it free for that pass already. */
    if (phase != VMP_SLOT_BUSY && phase != VMP_SLOT_GIVEN_UP && v != VMP_SLOT_TAG(t + VMP_RING_SLOTS, VMP_SLOT_FREE))
        atomic_store_explicit(&s->state, VMP_SLOT_TAG(t + VMP_RING_SLOTS, VMP_SLOT_FREE), memory_order_release);
    atomic_store_explicit(&R.tail, t + 1, memory_order_release);
}

void vmp_ring_give_back_pages(void)
{
    /* (a producer still filling a slot must not find its page wiped under
     * it: then the pages stay, until the next run's end) */
    if (R.slots && atomic_load(&R.given_up) == 0 &&
        atomic_load(&R.tail) == atomic_load(&R.head))
        madvise(R.slots, RING_BYTES, MADV_DONTNEED);
}
