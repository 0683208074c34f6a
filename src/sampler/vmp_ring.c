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
    _Atomic uint64_t head, tail;
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

int vmp_ring_map(void)
{
    if (R.slots)
        return 0;
    void *p = mmap(NULL, sizeof(vmp_slot) * VMP_RING_SLOTS, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    R.slots = p;
#ifdef MADV_WIPEONFORK
    /* A fork child gets these pages as zeros (every slot free) instead of
     * copies made on first touch: its reset costs no page copies, and the
     * fork no copy of the ring's page tables (a 4 MB ring made each fork of a
     * profiled program about 3 ms slower). */
    R.wiped_on_fork = madvise(p, sizeof(vmp_slot) * VMP_RING_SLOTS, MADV_WIPEONFORK) == 0;
#endif
    return 0;
}

void vmp_ring_reset(int slots_too)
{
    atomic_store(&R.head, 0);
    atomic_store(&R.tail, 0);
    atomic_store(&R.napping, 0);
    atomic_store(&R.heard, atomic_load(&R.bell));
    if (R.slots && slots_too && !R.wiped_on_fork)
        for (size_t i = 0; i < VMP_RING_SLOTS; i++)
            atomic_store(&R.slots[i].state, VMP_SLOT_FREE);
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
    atomic_store_explicit(&s->state, VMP_SLOT_BUSY, memory_order_relaxed);
    /* The claim that fills the ring to the mark rings the consumer's bell.
     * (Claims in order read the tail in order, after the claim before
     * theirs: the fill they see grows by one at most, so a filling ring
     * meets the mark exactly.) */
    if (h - t == VMP_RING_WAKE_AT - 1)
        vmp_ring_ring();
    return s;
}

void vmp_ring_publish(vmp_slot *s)
{
    atomic_store_explicit(&s->state, VMP_SLOT_READY, memory_order_release);
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
    atomic_store_explicit(&s->state, VMP_SLOT_FREE, memory_order_relaxed);
    atomic_store_explicit(&R.tail, atomic_load_explicit(&R.tail, memory_order_relaxed) + 1,
                          memory_order_release);
}

void vmp_ring_give_back_pages(void)
{
    if (R.slots)
        madvise(R.slots, sizeof(vmp_slot) * VMP_RING_SLOTS, MADV_DONTNEED);
}
