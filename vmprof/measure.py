"""Profiler: profile a block of code and get its Stats, as the original vmprof offers.

    prof = vmprof.Profiler()
    with prof.measure():
        work()
    stats = prof.get_stats()      # a Stats, as vmprof.read_profile() returns

measure() takes the options of vmprof.enable() (period, memory, lines, native,
real_time) and `name`, a path to keep the profile in; without it the profile
goes to a temporary file that get_stats() removes once it is read.
"""
import os

from vmprof.errors import VMProfError


class ProfilerContext(object):
    """The `with` block of Profiler.measure(): profiling runs inside it."""

    def __init__(self, name=None, **enable_options):
        self.name = name
        self.enable_options = enable_options
        self.path = None
        self.temporary = name is None
        self.done = False
        self._file = None

    def __enter__(self):
        import vmprof
        if self._file is not None or self.done:
            raise VMProfError("this measure() block was already used; call "
                              "profiler.measure() again for a new profile")
        if self.name is None:
            import tempfile  # here: `import vmprof` should not pay for it
            fd, self.path = tempfile.mkstemp(prefix="vmprof-", suffix=".prof")
            self._file = os.fdopen(fd, "w+b")
        else:
            self.path = self.name
            try:
                self._file = open(self.name, "w+b")
            except OSError as e:
                raise VMProfError("cannot write the profile to %s: %s; give measure() "
                                  "another name" % (self.name, e.strerror or e))
        try:
            vmprof.enable(self._file.fileno(), **self.enable_options)
        except BaseException:
            self._file.close()
            if self.temporary:
                _remove(self.path)
            self._file = None
            raise
        return self

    def __exit__(self, exc_type, exc_value, tb):
        import vmprof
        try:
            vmprof.disable()
        finally:
            self._file.close()
            self.done = True
        return False


class Profiler(object):
    """Profiles `with profiler.measure():` blocks; get_stats() reads the last one."""

    ctx = None

    def measure(self, name=None, period=None, memory=False, native=None,
                real_time=False, lines=False):
        """A context manager that profiles its block (options as vmprof.enable)."""
        options = {"memory": memory, "lines": lines, "real_time": real_time}
        if period is not None:
            options["period"] = period
        if native is not None:
            options["native"] = native
        self.ctx = ProfilerContext(name, **options)
        return self.ctx

    def get_stats(self):
        """The Stats of the last measure() block; its temporary file is removed."""
        import vmprof
        ctx = self.ctx
        if ctx is None:
            raise VMProfError("nothing was profiled yet; run code inside "
                              "`with profiler.measure():` first")
        if not ctx.done:
            raise VMProfError("the profile is still being taken; call get_stats() after "
                              "the `with profiler.measure():` block")
        try:
            stats = vmprof.read_profile(ctx.path)
        finally:
            if ctx.temporary:
                _remove(ctx.path)
            self.ctx = None
        return stats


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass
