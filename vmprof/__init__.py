"""vmprof: a statistical profiler for Python.

The public API of the package lives here; each part is implemented in its own
module:

    vmprof.profiler   enable(), disable() and the sampler's controls
    vmprof.reader     read_profile(), export()
    vmprof.stats      Stats and Node: a read profile and its call tree
"""
from vmprof.errors import VMProfError
from vmprof.measure import Profiler
from vmprof.profiler import (  # noqa: E402  (sampler: helper `sampler`)
    DEFAULT_PERIOD, disable, enable, get_profile_path, insert_real_time_thread, is_enabled,
    remove_real_time_thread, resolve_addr, sample_stack_now, start_sampling, stop_sampling)


def __getattr__(name):
    # Reading needs the C extension; importing it lazily keeps `import vmprof`
    # working where it is absent (PyPy, a source checkout).
    if name in ("read_profile", "export"):
        from vmprof import reader
        return getattr(reader, name)
    if name in ("Stats", "Node"):
        from vmprof import stats
        return getattr(stats, name)
    raise AttributeError("module 'vmprof' has no attribute %r" % name)
