"""vmprof.Profiler: profile a `with` block and get its Stats."""
import os
import time

import pytest

import vmprof

needs_sampler = pytest.mark.skipif(not hasattr(vmprof, "enable"),
                                   reason="the sampler (vmprof.enable) is not built in")


def measured_burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def samples_in(stats, function):
    ids = {addr for addr, name in stats.adr_dict.items()
           if isinstance(name, str) and name.startswith("py:%s:" % function)}
    return sum(entry[1] for entry in stats.profiles if ids.intersection(entry[0]))


def test_get_stats_before_anything_was_measured():
    with pytest.raises(vmprof.VMProfError, match="nothing was profiled yet"):
        vmprof.Profiler().get_stats()


@needs_sampler
def test_measure_returns_the_stats_of_the_block():
    prof = vmprof.Profiler()
    with prof.measure(period=0.001) as ctx:
        assert vmprof.is_enabled()
        with pytest.raises(vmprof.VMProfError, match="still being taken"):
            prof.get_stats()
        measured_burn(0.15)
    assert not vmprof.is_enabled()
    stats = prof.get_stats()
    assert samples_in(stats, "measured_burn") > 0
    assert not os.path.exists(ctx.path)          # the temporary file is removed
    with pytest.raises(vmprof.VMProfError):      # each block is read once
        prof.get_stats()


@needs_sampler
def test_measure_with_a_name_keeps_the_file_and_options_reach_it(tmp_path):
    prof = vmprof.Profiler()
    path = tmp_path / "kept.prof"
    with prof.measure(name=str(path), lines=True, memory=True):
        measured_burn(0.1)
    stats = prof.get_stats()
    assert stats.profile_lines and stats.profile_memory
    assert path.exists() and samples_in(vmprof.read_profile(str(path)),
                                         "measured_burn") > 0


@needs_sampler
def test_an_exception_in_the_block_stops_profiling():
    prof = vmprof.Profiler()
    with pytest.raises(ZeroDivisionError):
        with prof.measure():
            measured_burn(0.1)
            1 / 0
    assert not vmprof.is_enabled()
    assert samples_in(prof.get_stats(), "measured_burn") > 0


def test_measure_with_an_unwritable_name(tmp_path):
    prof = vmprof.Profiler()
    with pytest.raises(vmprof.VMProfError, match="cannot write the profile"):
        with prof.measure(name=str(tmp_path / "no" / "such" / "dir.prof")):
            pass
