"""Where the tests' data files are: every file a test reads is in tests/data/,
so a clone of the repository alone runs them all."""
import os

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
# Files written by the original vmprof tools, with what their reader reports
# (tests/data/upstream/README.md says which tool wrote which file).
UPSTREAM = os.path.join(DATA, "upstream")
PROFILES = os.path.join(UPSTREAM, "profiles")
WORKLOADS = os.path.join(UPSTREAM, "workloads")
# Files written by vmprof 0.6.0 (format version 7), with their own oracle.
VMPROF06 = os.path.join(DATA, "vmprof06")
