"""vmprof: a statistical profiler for Python.

The public API of the package lives here; each part is implemented in its own
module:

    vmprof.profiler   enable(), disable() and the sampler's controls
    vmprof.reader     read_profile()
    vmprof.stats      Stats and Node: a read profile and its call tree
"""
from vmprof.errors import VMProfError
from vmprof.measure import Profiler
