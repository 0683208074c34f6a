/*
 * vmp_ring.h - the ring of sample slots between the producers (signal
 * handlers, the sampler thread's repeats, names of dying code objects) and
 * the writer thread.
 *
 * VMP_RING_SLOTS fixed-size slots, each with room for the deepest stack
 * written.  A slot is a head of VMP_SLOT_BYTES (its state, what it holds,
 * and the first VMP_SLOT_HEAD_WORDS words of its data), the heads side by
 * side, and a room of VMP_SLOT_WORDS words elsewhere (vmp_ring_room), which
 * only a producer whose data do not fit in the head touches (`data` says
 * where they are).  A fresh page is faulted in at its first touch: when each
 * slot was all of a piece (~16 KiB, room for the deepest stack), each of the
 * 1,024 touched a page of its own, and the wall clock's start, which hands
 * over the first samples of 1,000 waiting threads at once, took ~1,000 page
 * faults (~3 us each here) for stacks of a few words; the heads are 128
 * pages.  A producer claims the next index with a compare-and-swap on
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
 * A producer may stall between its claim and its publish (descheduled,
 * stopped by a debugger, the process stopped), and the consumer, which
 * takes slots in order, gives such a slot up after a while (the writer:
 * VMP_STALL_NS, during the run as when waiting for everything to be out),
 * rather than leave every slot behind it waiting, the ring full and every
 * later producer refused.  Its producer still writes into it, so the slot
 * is not reused until the producer is done: each slot's state carries the
 * claim index it is for (VMP_SLOT_TAG), and
 *  - a claim takes its slot by compare-and-swap from "free for this index";
 *    a slot still held by a stalled producer is not free, and that claim
 *    fails as on a full ring (its index is a hole the consumer passes);
 *  - a publish is a compare-and-swap from "busy for this index": on a slot
 *    given up it fails, and the producer gives the slot back instead, so
 *    its late content is never read as some later claim's (a name, told
 *    so, is put in the stream again: vmp_writer_push_name).
 * Indexes go on across runs (the tags stay true); a fresh page (state 0)
 * is free for any index.
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
#define VMP_SLOT_BYTES 512
#define VMP_SLOT_HEAD_WORDS 53 /* (what is left of VMP_SLOT_BYTES: vmp_slot) */

/* A slot's state: (claim index << 3) | phase.  0: a page never touched
 * since it was mapped or given back, free for any index. */
enum {
    VMP_SLOT_FREE = 1,   /* free for the claim of its index */
    VMP_SLOT_BUSY,       /* claimed, its producer filling it */
    VMP_SLOT_READY,      /* published */
    VMP_SLOT_GIVEN_UP,   /* the consumer went past it, its producer still filling it */
    VMP_SLOT_GIVEN_BACK, /* ... and that producer done: free again at the consumer's next pass */
};
#define VMP_SLOT_TAG(index, phase) (((uint64_t)(index) << 3) | (uint64_t)(phase))

/* What a slot holds.  VMP_SLOT_REPEAT: the sampler thread found the thread
 * idle since its last sample (vmp_delivery.h) and asks the writer to write
 * that sample again, n times. */
enum { VMP_SLOT_SAMPLE, VMP_SLOT_NAME, VMP_SLOT_REPEAT };

typedef struct vmp_slot {
    _Atomic uint64_t state; /* VMP_SLOT_TAG */
    uint64_t index;         /* the claim index its producer holds it for */
    int kind;
    int died;           /* NAME: the object is gone, retire the address */
    int capped;         /* SAMPLE: its native walk was capped (vmp_native_walk.capped): repeats of it are cut samples too */
    uint32_t n;         /* words of data (SAMPLE), bytes of name (NAME), samples (REPEAT) */
    uint32_t weight;    /* SAMPLE: written this many times (the periods its signal paid for) */
    pid_t tid;          /* SAMPLE, REPEAT: the sampled thread's kernel tid */
    uint32_t place;     /* SAMPLE, REPEAT: its place (vmp_delivery.h), where the writer keeps its last sample */
    uint64_t thread_id;
    uint64_t rss_kib;
    int64_t from_ns;    /* SAMPLE, REPEAT: CLOCK_MONOTONIC ns where its first period began (0: not known) */
    uint64_t code;      /* NAME: whose name */
    uint64_t *data;     /* its data (up to VMP_SLOT_WORDS words): `head`, or its room (vmp_slot_words) */
    uint64_t head[VMP_SLOT_HEAD_WORDS];
} vmp_slot;
_Static_assert(sizeof(vmp_slot) == VMP_SLOT_BYTES, "a slot's head is VMP_SLOT_BYTES");

/* Producer (async-signal-safe): slot s's room, VMP_SLOT_WORDS words of its
 * own (its pages are touched only by data that do not fit in the head). */
uint64_t *vmp_ring_room(const vmp_slot *s);

/* Producer: where slot s's data of n words (at most VMP_SLOT_WORDS) go, its
 * head when they fit, else its room; s->data is set to it. */
static inline uint64_t *vmp_slot_words(vmp_slot *s, size_t n)
{
    return s->data = n <= VMP_SLOT_HEAD_WORDS ? s->head : vmp_ring_room(s);
}

/* Maps the slots the first time.  0, or -1 with errno. */
int vmp_ring_map(void);

/* Empties the ring (no consumer may be running).  Without slots_too the
 * indexes go on: what a run left claimed is passed as holes, and a slot a
 * late producer still holds stays out of use until it gives it back.
 * slots_too frees every slot (the child after fork, which has none of its
 * parent's producers): nothing to do where the kernel wipes the ring in a
 * fork child (MADV_WIPEONFORK, Linux 4.14), else it touches every slot's
 * page. */
void vmp_ring_reset(int slots_too);

/* Claims the next slot, or returns NULL when the ring is full (or the
 * slot for the next index is still held by a producer it was given up on). */
vmp_slot *vmp_ring_claim(void);

/* Hands the filled slot to the consumer: 0; or -1 when the consumer gave
 * the slot up (its producer was too long): the slot is given back, its
 * content never read. */
int vmp_ring_publish(vmp_slot *s);

/* Consumer: the oldest claimed slot (published or not) and its claim index
 * in *index, or NULL when the ring is empty, *index then the index the next
 * claim gets (the ring as seen: later claims may have taken it already).
 * Either way every slot below *index has been released. */
vmp_slot *vmp_ring_oldest(uint64_t *index);

/* The claim index the next claim will get: every slot claimed so far has a
 * lower one. */
uint64_t vmp_ring_next_index(void);

/* Consumer: what the oldest slot (index `index`) holds for it. */
enum {
    VMP_RING_FILLING, /* its producer (or claimant) is not done */
    VMP_RING_READY,   /* published: to be processed */
    VMP_RING_HOLE,    /* nothing: a claim that found the slot held by a producer given up on */
};
int vmp_ring_look(const vmp_slot *s, uint64_t index);

/* Consumer: gives up on the oldest slot, which is FILLING.  Returns
 * VMP_RING_READY when it was published meanwhile (process it), else
 * VMP_RING_HOLE: nothing to process; a producer holding it will find its
 * publish refused, and the slot stays out of use until it gave it back
 * (vmp_ring_given_up counts those); a claimant that had not taken it yet
 * finds its claim failed. */
int vmp_ring_give_up(vmp_slot *s, uint64_t index);

/* Slots given up on whose producers have not given them back yet. */
uint64_t vmp_ring_given_up(void);

/* Consumer: frees the oldest slot, done with (processed, a hole, or given
 * up: then it is freed when its producer gives it back). */
void vmp_ring_release_oldest(vmp_slot *s);

/* Returns the slots' memory to the system (they stay mapped), unless a
 * producer may still write into one (a slot given up on or claimed since
 * the ring was last seen empty): then it is kept. */
void vmp_ring_give_back_pages(void);

/* Consumer: sleeps up to timeout_ns, or until the bell rings (a ring after
 * the consumer's last wake-up counts: none is lost).  Returns 1 when the
 * bell rang, 0 on timeout. */
int vmp_ring_nap(int64_t timeout_ns);

/* Anyone, async-signal-safe: wakes the consumer now (or, when it is not
 * napping, makes its next nap return at once). */
void vmp_ring_ring(void);

#endif /* VMP_RING_H */
