/*
 * vmp_ring.h - the ring of sample slots between the producers (signal
 * handlers, the sampler thread's repeats, names of dying code objects) and
 * the writer thread.
 *
 * VMP_RING_SLOTS fixed-size slots, each big enough for the deepest stack
 * written.  A producer claims the next index with a compare-and-swap on
 * `head` when fewer than VMP_RING_SLOTS slots are undrained, fills the slot
 * and publishes it; the one consumer takes indexes in order from `tail`, so
 * the file order is the claim order.  A handler claims its slot before
 * walking the stack; a code object's death is claimed after it lost its last
 * reference; hence every sample that can hold an address precedes the record
 * that retires it.
 *
 * The slots are mapped once and never unmapped (a late signal handler may
 * still touch them); vmp_ring_give_back_pages returns their memory between
 * runs.  claim and publish are async-signal-safe; next and release belong to
 * the one consumer.
 *
 * The consumer's bell: the consumer naps (vmp_ring_nap) until a timeout or
 * until someone rings (vmp_ring_ring: async-signal-safe, one futex wake,
 * and only while the consumer naps).  The claim that makes the ring
 * VMP_RING_WAKE_AT full rings it, so that the consumer may nap long when
 * the ring fills slowly (each wake-up of a thread costs ~50 us of CPU on
 * these machines) and still never lets a burst find it full.
 */
#ifndef VMP_RING_H
#define VMP_RING_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmp_format.h"

#define VMP_RING_SLOTS 1024
#define VMP_RING_WAKE_AT (VMP_RING_SLOTS / 2)
#define VMP_SLOT_WORDS (2 * VMP_MAX_DEPTH_WRITTEN)

enum { VMP_SLOT_FREE, VMP_SLOT_BUSY, VMP_SLOT_READY };

/* What a slot holds.  VMP_SLOT_REPEAT: the sampler thread found the thread
 * idle since its last sample (vmp_delivery.h) and asks the writer to write
 * that sample again, n times. */
enum { VMP_SLOT_SAMPLE, VMP_SLOT_NAME, VMP_SLOT_REPEAT };

typedef struct vmp_slot {
    _Atomic int state;
    int kind;
    int died;           /* NAME: the object is gone, retire the address */
    uint32_t n;         /* words of data (SAMPLE), bytes of name (NAME), samples (REPEAT) */
    uint32_t weight;    /* SAMPLE: written this many times (the periods its signal paid for) */
    pid_t tid;          /* SAMPLE, REPEAT: the sampled thread's kernel tid */
    uint32_t place;     /* SAMPLE, REPEAT: its place (vmp_delivery.h), where the writer keeps its last sample */
    uint64_t thread_id;
    uint64_t rss_kib;
    int64_t from_ns;    /* SAMPLE, REPEAT: CLOCK_MONOTONIC ns where its first period began (0: not known) */
    uint64_t code;      /* NAME: whose name */
    uint64_t data[VMP_SLOT_WORDS];
} vmp_slot;

/* Maps the slots the first time.  0, or -1 with errno. */
int vmp_ring_map(void);

/* Empties the ring (no producer or consumer may be running).  After a
 * drained run every slot is free already; slots_too also frees the slots a
 * run left claimed (the child after fork): nothing to do where the kernel
 * wipes the ring in a fork child (MADV_WIPEONFORK, Linux 4.14), else it
 * touches every slot's page. */
void vmp_ring_reset(int slots_too);

/* Claims the next slot, or returns NULL when the ring is full. */
vmp_slot *vmp_ring_claim(void);

void vmp_ring_publish(vmp_slot *s);

/* Consumer: the oldest claimed slot (published or not) and its claim index
 * in *index, or NULL when the ring is empty, *index then the index the next
 * claim gets (the ring as seen: later claims may have taken it already).
 * Either way every slot below *index has been released. */
vmp_slot *vmp_ring_oldest(uint64_t *index);

/* The claim index the next claim will get: every slot claimed so far has a
 * lower one. */
uint64_t vmp_ring_next_index(void);

/* Consumer: frees the oldest slot, done with. */
void vmp_ring_release_oldest(vmp_slot *s);

/* Returns the slots' memory to the system (they stay mapped). */
void vmp_ring_give_back_pages(void);

/* Consumer: sleeps up to timeout_ns, or until the bell rings (a ring after
 * the consumer's last wake-up counts: none is lost).  Returns 1 when the
 * bell rang, 0 on timeout. */
int vmp_ring_nap(int64_t timeout_ns);

/* Anyone, async-signal-safe: wakes the consumer now (or, when it is not
 * napping, makes its next nap return at once). */
void vmp_ring_ring(void);

#endif /* VMP_RING_H */
