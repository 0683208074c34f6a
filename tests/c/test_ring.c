/*
 * test_ring.c - the ring's consumer bell (vmp_ring.h): the consumer naps
 * long and is woken when the ring fills to the mark, or when rung (also
 * from a signal handler), and a ring that came before the nap is not lost;
 * the index it tells where it is seen empty; a slot the consumer gave up
 * on stays its producer's until it is done; and the run's waits for a word
 * (vmp_run.h) sleep rather than poll.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "vmp_ring.h"
#include "vmp_run.h"
#include "vmp_test.h"

#define LONG_NAP_NS 20000000000LL /* a nap that ends on its timeout fails the test by its length */

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static _Atomic int napping_started;
static _Atomic int nap_result = -1;
static _Atomic int64_t nap_ns;

static void *consumer(void *arg)
{
    (void)arg;
    atomic_store(&napping_started, 1);
    int64_t t0 = now_ns();
    atomic_store(&nap_result, vmp_ring_nap(LONG_NAP_NS));
    atomic_store(&nap_ns, now_ns() - t0);
    return NULL;
}

static uint64_t base; /* the first index of a fresh ring (indexes go on across resets) */

static void fresh_ring(void)
{
    REQUIRE(vmp_ring_map() == 0);
    vmp_ring_reset(1);
    base = vmp_ring_next_index();
    atomic_store(&napping_started, 0);
    atomic_store(&nap_result, -1);
    atomic_store(&nap_ns, 0);
}

static void release_all(void)
{
    uint64_t index;
    vmp_slot *s;
    while ((s = vmp_ring_oldest(&index)))
        vmp_ring_release_oldest(s);
}

/* Waits (bounded) until the consumer has returned from its nap. */
static int nap_ended(void)
{
    for (int i = 0; i < 5000 && atomic_load(&nap_result) < 0; i++)
        usleep(1000);
    return atomic_load(&nap_result) >= 0;
}

VMP_TEST(ring_claims_below_the_mark_let_the_consumer_nap_and_the_claim_at_the_mark_wakes_it)
{
    fresh_ring();
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, consumer, NULL) == 0);
    while (!atomic_load(&napping_started))
        usleep(100);
    usleep(20000); /* (in its futex wait by now, or about to be: both must work) */
    for (int i = 0; i < VMP_RING_WAKE_AT - 1; i++) {
        vmp_slot *s = vmp_ring_claim();
        REQUIRE(s != NULL);
        vmp_ring_publish(s);
    }
    usleep(50000);
    CHECK(atomic_load(&nap_result) == -1); /* a ring short of the mark does not wake it */
    vmp_slot *s = vmp_ring_claim();
    REQUIRE(s != NULL);
    vmp_ring_publish(s);
    CHECK(nap_ended());
    CHECK(atomic_load(&nap_result) == 1);
    CHECK(atomic_load(&nap_ns) < LONG_NAP_NS / 4);
    if (atomic_load(&nap_result) < 0)
        vmp_ring_ring(); /* (let it go) */
    pthread_join(th, NULL);
    release_all();
}

VMP_TEST(ring_a_ring_before_the_nap_makes_the_nap_return_at_once)
{
    fresh_ring();
    vmp_ring_ring();
    int64_t t0 = now_ns();
    CHECK(vmp_ring_nap(LONG_NAP_NS) == 1);
    CHECK(now_ns() - t0 < LONG_NAP_NS / 4);
    /* ... once: the next nap sleeps to its timeout */
    t0 = now_ns();
    CHECK(vmp_ring_nap(20000000LL) == 0);
    CHECK(now_ns() - t0 >= 19000000LL);
}

static void ring_from_handler(int sig)
{
    (void)sig;
    vmp_ring_ring();
}

VMP_TEST(ring_seen_empty_tells_the_index_the_next_claim_gets)
{
    /* The writer settles the names beside the ring up to the index where
     * it saw the ring empty (vmp_writer.c, settle_names), not up to the
     * head read again, which later claims may have moved. */
    fresh_ring();
    for (int i = 0; i < 3; i++) {
        vmp_slot *s = vmp_ring_claim();
        REQUIRE(s != NULL);
        vmp_ring_publish(s);
    }
    uint64_t index = UINT64_MAX;
    vmp_slot *s = vmp_ring_oldest(&index);
    CHECK(s != NULL && index == base);
    release_all();
    index = UINT64_MAX;
    CHECK(vmp_ring_oldest(&index) == NULL);
    CHECK(index == base + 3);
}

/* Consumer: processes (releases) every published slot up to the first one
 * still filling; returns how many it released. */
static int consume_ready(void)
{
    int n = 0;
    uint64_t index;
    vmp_slot *s;
    while ((s = vmp_ring_oldest(&index)) && vmp_ring_look(s, index) != VMP_RING_FILLING) {
        vmp_ring_release_oldest(s);
        n++;
    }
    return n;
}

VMP_TEST(ring_a_slot_given_up_on_is_not_handed_out_again_while_its_producer_fills_it)
{
    /* The writer, waiting for everything to be out, gives a slot whose
     * producer is stalled (descheduled, stopped) up after a second.  Before,
     * it released the slot, and the claim one lap later got the same slot
     * while the stalled producer still wrote into it, and its late publish
     * made a slot READY before its new claimant filled it. */
    fresh_ring();
    vmp_slot *stalled = vmp_ring_claim();
    REQUIRE(stalled != NULL);
    uint64_t index = UINT64_MAX;
    vmp_slot *s = vmp_ring_oldest(&index);
    REQUIRE(s == stalled && index == base);
    CHECK(vmp_ring_look(s, index) == VMP_RING_FILLING);
    CHECK(vmp_ring_give_up(s, index) == VMP_RING_HOLE);
    CHECK(vmp_ring_given_up() == 1);
    vmp_ring_release_oldest(s);
    for (int i = 1; i < VMP_RING_SLOTS; i++) {
        vmp_slot *o = vmp_ring_claim();
        REQUIRE(o != NULL && o != stalled);
        CHECK(vmp_ring_publish(o) == 0);
    }
    CHECK(consume_ready() == VMP_RING_SLOTS - 1);
    /* one lap on: the stalled producer still holds it, the claim fails */
    CHECK(vmp_ring_claim() == NULL);
    vmp_slot *next = vmp_ring_claim(); /* (the next index has a slot of its own) */
    CHECK(next != NULL && next != stalled);
    /* the late publish is refused: the slot is given back unread */
    stalled->head[0] = 42;
    CHECK(vmp_ring_publish(stalled) == -1);
    CHECK(vmp_ring_given_up() == 0);
    if (next)
        vmp_ring_publish(next);
    s = vmp_ring_oldest(&index);
    REQUIRE(s == stalled && index == base + VMP_RING_SLOTS);
    CHECK(vmp_ring_look(s, index) == VMP_RING_HOLE); /* (the failed claim's index) */
    CHECK(consume_ready() == 2);
    /* and in use again a lap later */
    int got = 0;
    for (int i = 0; i < VMP_RING_SLOTS; i++) {
        vmp_slot *o = vmp_ring_claim();
        REQUIRE(o != NULL);
        got += o == stalled;
        CHECK(vmp_ring_publish(o) == 0);
    }
    CHECK(got == 1);
    CHECK(consume_ready() == VMP_RING_SLOTS);
}

VMP_TEST(ring_a_publish_the_consumer_went_past_is_never_read_as_a_later_claims)
{
    /* The late publish lands on the slot of index 0 after the consumer gave
     * it up; the consumer must not take it for the claim one lap later. */
    fresh_ring();
    vmp_slot *stalled = vmp_ring_claim();
    REQUIRE(stalled != NULL);
    uint64_t index;
    vmp_slot *s = vmp_ring_oldest(&index);
    REQUIRE(s == stalled);
    vmp_ring_give_up(s, index);
    vmp_ring_release_oldest(s);
    for (int i = 1; i < VMP_RING_SLOTS; i++) {
        vmp_slot *o = vmp_ring_claim();
        REQUIRE(o != NULL);
        vmp_ring_publish(o);
    }
    CHECK(consume_ready() == VMP_RING_SLOTS - 1);
    vmp_slot *again = vmp_ring_claim(); /* index VMP_RING_SLOTS */
    vmp_ring_publish(stalled);
    s = vmp_ring_oldest(&index);
    REQUIRE(s == stalled && index == base + VMP_RING_SLOTS);
    CHECK(again == NULL);
    CHECK(vmp_ring_look(s, index) != VMP_RING_READY);
    if (again && again != stalled)
        vmp_ring_publish(again);
    consume_ready();
}

VMP_TEST(ring_a_slot_published_while_the_consumer_gives_it_up_is_processed)
{
    fresh_ring();
    vmp_slot *p = vmp_ring_claim();
    REQUIRE(p != NULL);
    uint64_t index;
    vmp_slot *s = vmp_ring_oldest(&index);
    REQUIRE(s == p);
    CHECK(vmp_ring_look(s, index) == VMP_RING_FILLING);
    CHECK(vmp_ring_publish(p) == 0); /* (just before the give-up) */
    CHECK(vmp_ring_give_up(s, index) == VMP_RING_READY);
    CHECK(vmp_ring_given_up() == 0);
    vmp_ring_release_oldest(s);
    CHECK(vmp_ring_oldest(&index) == NULL && index == base + 1);
}

VMP_TEST(ring_a_run_left_claimed_is_given_up_by_the_next_runs_reset)
{
    /* A run ends with a slot still claimed (a name's producer that claimed
     * after the writer's last look): the next run's reset goes past it,
     * its producer's publish is refused, and the ring goes on. */
    fresh_ring();
    vmp_slot *late = vmp_ring_claim();
    REQUIRE(late != NULL);
    vmp_ring_reset(0);
    uint64_t index;
    CHECK(vmp_ring_oldest(&index) == NULL && index == base + 1);
    CHECK(vmp_ring_publish(late) == -1);
    int got = 0;
    for (int i = 0; i < 2 * VMP_RING_SLOTS; i++) {
        vmp_slot *o = vmp_ring_claim();
        got += o != NULL;
        if (o)
            vmp_ring_publish(o);
        consume_ready();
    }
    CHECK(got == 2 * VMP_RING_SLOTS - 1); /* (one hole: the late one's slot, a lap after) */
    CHECK(vmp_ring_given_up() == 0);
}

VMP_TEST(ring_a_claim_on_a_fresh_page_faults_it_in_once_not_twice)
{
    /* Every run starts on pages given back (vmp_ring_give_back_pages).  A
     * claim that read the slot's state first mapped the shared zero page,
     * and its write then took a second, copy-on-write fault (whose flush
     * interrupts the other CPUs running the process's threads): 2 faults a
     * fresh page; writing first, 1.  (The heads are VMP_SLOT_BYTES apart:
     * a page holds 8.) */
    fresh_ring();
    vmp_ring_give_back_pages();
    enum { N = VMP_RING_SLOTS, PAGES = N * VMP_SLOT_BYTES / 4096 };
    struct rusage r0, r1;
    getrusage(RUSAGE_THREAD, &r0);
    for (int i = 0; i < N; i++) {
        vmp_slot *s = vmp_ring_claim();
        REQUIRE(s != NULL);
        vmp_ring_publish(s);
        uint64_t index;
        vmp_slot *o = vmp_ring_oldest(&index);
        REQUIRE(o == s);
        vmp_ring_release_oldest(o);
    }
    getrusage(RUSAGE_THREAD, &r1);
    long faults = r1.ru_minflt - r0.ru_minflt;
    printf("    %d claims on %d fresh pages: %ld page faults\n", N, PAGES, faults);
    CHECK(faults < PAGES + PAGES / 2);
}

VMP_TEST(ring_a_slots_data_that_fit_its_head_touch_no_other_page_and_more_go_to_a_room_of_its_own)
{
    /* A slot is a head of VMP_SLOT_BYTES, with the first words of its data,
     * and a room elsewhere for longer data: every slot of a fresh ring
     * filled with a stack of a few words faults in the heads' pages, not a
     * page a slot (the wall clock's start hands over 1,000 waiting threads'
     * first samples at once: ~1,000 faults when a slot was all of a piece,
     * 16 KiB).  Data one word longer than the head go to the slot's room,
     * VMP_SLOT_WORDS words that no other slot's data share, and the
     * consumer finds them where `data` says. */
    fresh_ring();
    vmp_ring_give_back_pages();
    struct rusage r0, r1;
    getrusage(RUSAGE_THREAD, &r0);
    for (int i = 0; i < VMP_RING_SLOTS; i++) {
        vmp_slot *s = vmp_ring_claim();
        REQUIRE(s != NULL);
        uint64_t *w = vmp_slot_words(s, 8);
        for (int j = 0; j < 8; j++)
            w[j] = (uint64_t)(i * 8 + j);
        s->n = 8;
        CHECK(vmp_ring_publish(s) == 0);
    }
    getrusage(RUSAGE_THREAD, &r1);
    long faults = r1.ru_minflt - r0.ru_minflt;
    printf("    %d slots of 8 words on fresh pages: %ld page faults\n", VMP_RING_SLOTS, faults);
    /* (the heads: 128 pages; a sanitizer's shadow adds its own) */
    CHECK(faults <= 2 * VMP_RING_SLOTS * VMP_SLOT_BYTES / 4096);
    uint64_t index;
    int i = 0, whole = 1;
    for (vmp_slot *s; (s = vmp_ring_oldest(&index)); i++) {
        whole &= s->data == s->head && s->n == 8 && s->data[7] == (uint64_t)(i * 8 + 7);
        vmp_ring_release_oldest(s);
    }
    CHECK(i == VMP_RING_SLOTS && whole);

    vmp_slot *a = vmp_ring_claim(), *b = vmp_ring_claim();
    REQUIRE(a != NULL && b != NULL);
    CHECK(vmp_slot_words(a, VMP_SLOT_HEAD_WORDS) == a->head);
    uint64_t *ra = vmp_slot_words(a, VMP_SLOT_HEAD_WORDS + 1), *rb = vmp_slot_words(b, VMP_SLOT_WORDS);
    CHECK(ra == vmp_ring_room(a) && a->data == ra && rb == vmp_ring_room(b) && b->data == rb);
    /* (rooms apart from each other and from every head) */
    vmp_slot *lo = a < b ? a : b, *hi = a < b ? b : a, *heads = a - a->index % VMP_RING_SLOTS;
    CHECK(vmp_ring_room(hi) - vmp_ring_room(lo) == (hi - lo) * VMP_SLOT_WORDS);
    CHECK((char *)vmp_ring_room(heads) >= (char *)(heads + VMP_RING_SLOTS) ||
          (char *)vmp_ring_room(heads + VMP_RING_SLOTS - 1) + VMP_SLOT_WORDS * sizeof(uint64_t) <= (char *)heads);
    ra[VMP_SLOT_HEAD_WORDS] = 7;
    rb[VMP_SLOT_WORDS - 1] = 9;
    a->n = VMP_SLOT_HEAD_WORDS + 1;
    b->n = VMP_SLOT_WORDS;
    CHECK(vmp_ring_publish(a) == 0 && vmp_ring_publish(b) == 0);
    vmp_slot *s = vmp_ring_oldest(&index);
    REQUIRE(s == a);
    CHECK(s->data[VMP_SLOT_HEAD_WORDS] == 7);
    vmp_ring_release_oldest(s);
    s = vmp_ring_oldest(&index);
    REQUIRE(s == b);
    CHECK(s->data[VMP_SLOT_WORDS - 1] == 9);
    vmp_ring_release_oldest(s);
}

VMP_TEST(ring_a_signal_handler_may_wake_the_consumer)
{
    fresh_ring();
    struct sigaction sa = {0}, old;
    sa.sa_handler = ring_from_handler;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGUSR1, &sa, &old) == 0);
    sigset_t block, was;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &block, &was); /* (the consumer inherits it: the signal goes to this thread) */
    pthread_t th;
    int made = pthread_create(&th, NULL, consumer, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &was, NULL);
    REQUIRE(made);
    while (!atomic_load(&napping_started))
        usleep(100);
    usleep(20000);
    pthread_kill(pthread_self(), SIGUSR1);
    CHECK(nap_ended());
    CHECK(atomic_load(&nap_result) == 1);
    if (atomic_load(&nap_result) < 0)
        vmp_ring_ring();
    pthread_join(th, NULL);
    sigaction(SIGUSR1, &old, NULL);
}

/* ---- vmp_run.h: enable waits for its new threads asleep ------------------- */

static _Atomic int word;

static void *set_word_later(void *arg)
{
    (void)arg;
    usleep(50000);
    atomic_store(&word, 1);
    vmp_word_changed(&word);
    return NULL;
}

VMP_TEST(run_waits_for_a_word_asleep_not_in_naps)
{
    /* Before, enable polled for its threads in 10 us naps: a wait of 50 ms
     * was thousands of wake-ups (each ~50 us of CPU on these machines). */
    atomic_store(&word, 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, set_word_later, NULL) == 0);
    struct rusage before, after;
    getrusage(RUSAGE_THREAD, &before);
    vmp_wait_while(&word, 0);
    getrusage(RUSAGE_THREAD, &after);
    CHECK(atomic_load(&word) == 1);
    CHECK(after.ru_nvcsw - before.ru_nvcsw <= 3);
    pthread_join(th, NULL);
}
