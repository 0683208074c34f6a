"""The profiler's own threads wake when there is work for them, not on a
short timer: each wake-up of a thread costs ~50 us of CPU on these machines,
so ten a second are 0.05% of a core and a hundred 0.5%.  These tests count
wake-ups (the run's figures); bench/process_bench.py measures the CPU."""
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
