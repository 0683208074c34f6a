"""The profiler's own threads wake when there is work for them, not on a
short timer: each wake-up of a thread costs ~50 us of CPU on these machines,
so ten a second are 0.05% of a core and a hundred 0.5%.  These tests count
wake-ups (the run's figures); bench/process_bench.py measures the CPU."""
import threading
import time

import pytest

from sampler_util import burn_cpu, profile


def timed_burn(seconds):
    t0 = time.monotonic()
    burn_cpu(seconds)
    return time.monotonic() - t0


@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
@pytest.mark.parametrize("real_time", [False, True], ids=["cpu", "wall"])
def test_the_writer_wakes_as_the_ring_fills_not_every_few_milliseconds(native, real_time):
    # One busy thread at 1 kHz fills a quarter of the ring in ~0.25 s: the
    # writer naps its longest (100 ms) between rounds.  Before, it woke
    # every 10 ms at most (100 a second, 0.5% of a core by itself).  Native
    # mode wakes it too for each pc a walk must learn (30-40 at the start:
    # bounded by the code met, not by time).
    prof, elapsed, stats = profile(timed_burn, 1.0, period=0.001, native=native, real_time=real_time)
    assert len(prof.stacks) >= 100, stats  # (it sampled)
    assert stats["writer_rounds"] <= 20 * elapsed + (60 if native else 10), (elapsed, stats)


def test_the_sampler_thread_lengthens_its_rounds_while_nothing_changes_on_the_cpu_clock():
    # A busy thread with its own CPU-time event needs nothing from the
    # sampler thread's rounds: after 0.5 s without a change they come every
    # 40 ms instead of 10 (before: 100 a second all along).
    prof, elapsed, stats = profile(timed_burn, 1.5, period=0.001)
    assert len(prof.stacks) >= 1000, stats
    assert stats["sampler_rounds"] <= 50 * elapsed + 40, (elapsed, stats)


def test_a_thread_born_in_the_long_rounds_is_paid_all_its_cpu_time():
    # Its event is opened up to 40 ms after its birth; its first sample pays
    # every period of CPU time it used until then, none dropped (the
    # handler's cap on one payment was 20 ms: a thread found later than
    # that lost the rest, ~1 time in 2; five such threads here).
    cpu = {}
    done = [threading.Event() for _ in range(5)]
    end = threading.Event()  # (threads stay alive: their idents are not reused)

    def late(k):
        cpu[k] = [threading.get_ident(), time.thread_time()]
        burn_cpu(0.1)
        cpu[k][1] = time.thread_time() - cpu[k][1]
        done[k].set()
        end.wait()

    def run():
        threads = []
        for k in range(5):
            burn_cpu(0.6)  # (the rounds are long by the end of it)
            threads.append(threading.Thread(target=late, args=(k,)))
            threads[-1].start()
            done[k].wait()  # (it has the GIL and a CPU to itself)
        end.set()
        for t in threads:
            t.join()

    prof, _, stats = profile(run, period=0.001)
    # (none dropped by the cap; but a thread's last period of CPU time, when
    # the event's firing for it came inside a system call (burn_cpu reads
    # its clock with one), is paid by no later sample: counted dropped at
    # its end or at the stop, at most one a thread here: 6)
    assert stats["dropped"] <= 6, stats
    for ident, used in cpu.values():
        got = sum(1 for _, tid, _ in prof.stacks if tid == ident)
        assert 0.9 * used / 0.001 <= got <= 1.1 * used / 0.001 + 2, (got, used, stats)


def test_the_sampler_thread_lengthens_its_rounds_while_nothing_changes_on_the_wall_clock():
    # The program waits (its thread found asleep once, idle in that sample
    # from then on): nothing for the rounds to do, so after 0.5 s they come
    # every 40 ms instead of 10 on the wall clock too (before: 100 a second
    # all along, ~150 rounds here).
    t0 = time.monotonic()
    prof, _, stats = profile(time.sleep, 1.5, period=0.001, real_time=True)
    elapsed = time.monotonic() - t0
    if stats["sources_opened"] == 0 and stats["signals_sent"] > 20:
        pytest.skip("the kernel gives no per-thread CPU-time events here (per-period schedule)")
    assert len(prof.stacks) >= 1000, stats  # (the sleep's periods, repeated)
    assert stats["sampler_rounds"] <= 50 * elapsed + 40, (elapsed, stats)


def test_a_thread_found_in_two_waits_far_apart_makes_no_stretch_of_short_rounds():
    # Short rounds (1 ms, for 50 ms) are for a thread whose waits come close
    # together, so that its short ones are seen.  This one is found asleep,
    # then 0.6 s later waiting for an event: before, that second wait found
    # made 50 rounds of 1 ms for nothing (the pool bench's main thread at
    # its mark, in join(): a fifth of the sampler thread's wake-ups).  Here
    # ~115 rounds in 1.6 s (short rounds for 0.5 s after each change, then
    # 40 ms ones), before ~160.  (The thread that sets the event is started
    # before the run: Thread.start() waits for it, and a loaded machine
    # made that a wait found 0.6 s later, next to the event's.)
    done = threading.Event()
    setter = threading.Thread(target=lambda: (time.sleep(1.6), done.set()))
    setter.start()
    try:
        t0 = time.monotonic()
        _, _, stats = profile(lambda: (time.sleep(0.6), done.wait()), period=0.001, real_time=True)
        elapsed = time.monotonic() - t0
    finally:
        setter.join()
    if stats["sources_opened"] == 0:
        pytest.skip("the kernel gives no per-thread CPU-time events here (per-period schedule)")
    assert stats["sampler_rounds"] <= 85 * elapsed + 10, (elapsed, stats)


def test_a_wait_no_probe_saw_makes_the_rounds_short_again():
    # In 40 ms rounds a short wait may begin and end between two of them:
    # no probe shows it, and the thread's next sample of its own pays its
    # periods with the stack it computes in.  Its handler, paying periods
    # it did not run since a sample taken outside a call, says so, and the
    # rounds are short again for 0.5 s at least (its next waits have a
    # round in them four times as often).  Here: 0.8 s computing (the
    # rounds long by then), then a 3 ms sleep every 100 ms for 1 s: a
    # 40 ms round finds one of them about one time in 40.  Without the
    # handler's word the last second has ~25 rounds (~85 in all), with it
    # ~100 (~160).  (A loaded machine, which keeps the thread from its CPU,
    # makes such waits too, and probes: short rounds either way; test_delivery.c's
    # wall_clock_with_sources_makes_its_long_rounds_short_when_a_handler_saw_a_wait_no_probe_did
    # checks the word's effect alone.)
    def run():
        burn_cpu(0.8)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            time.sleep(0.003)
            burn_cpu(0.097)

    t0 = time.monotonic()
    _, _, stats = profile(run, period=0.001, real_time=True)
    elapsed = time.monotonic() - t0
    if stats["sources_opened"] == 0:
        pytest.skip("the kernel gives no per-thread CPU-time events here (per-period schedule)")
    assert stats["unseen_waits"] >= 1, stats
    assert stats["sampler_rounds"] >= 50 * elapsed, (elapsed, stats)
