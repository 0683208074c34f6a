"""Times vmprof.read_profile(FILE).get_tree() with whichever vmprof this
interpreter imports: ours in the project's venv, the original in bench-orig.

    python bench/py_read.py time FILE RUNS   JSON: per run read_profile and
                                             get_tree seconds, and a plain
                                             read of the file's bytes (the
                                             size of its buffer is given, to
                                             be taken off the peak RSS)
    python bench/py_read.py mem FILE         JSON: one read + tree; peak RSS
                                             minus the RSS before, in KiB

Run from bench/ (sys.path[0]), never from the repository root, so the source
package cannot shadow the installed one.
"""
import gc
import json
import os
import resource
import sys
import time


def rss_kib():
    """Resident and private (resident minus file-backed) KiB."""
    with open("/proc/self/statm") as f:
        fields = [int(x) for x in f.read().split()]
    kib = os.sysconf("SC_PAGE_SIZE") // 1024
    return fields[1] * kib, (fields[1] - fields[2]) * kib


def read_and_tree(vmprof, path):
    t0 = time.perf_counter()
    stats = vmprof.read_profile(path)
    t1 = time.perf_counter()
    tree = stats.get_tree()
    t2 = time.perf_counter()
    return stats, tree, t1 - t0, t2 - t1


def main():
    mode, path = sys.argv[1], sys.argv[2]
    import vmprof
    where = os.path.dirname(vmprof.__file__)
    if mode == "mem":
        gc.collect()
        before, anon_before = rss_kib()
        stats, tree, tr, tt = read_and_tree(vmprof, path)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"rss_before_kib": before, "anon_before_kib": anon_before,
                          "peak_kib": peak,
                          "seconds": tr + tt, "root_count": tree.count,
                          "vmprof": where}))
        return
    runs = int(sys.argv[3])
    gc.collect()
    before, anon_before = rss_kib()
    out = []
    size = os.path.getsize(path)
    buf = bytearray(size + 1)
    for _ in range(runs):
        t0 = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            n = f.readinto(buf)
        t1 = time.perf_counter()
        assert n == size
        stats, tree, tr, tt = read_and_tree(vmprof, path)
        out.append({"read_bytes": t1 - t0, "read_profile": tr, "get_tree": tt,
                    "root_count": tree.count})
        del stats, tree
        gc.collect()
    # With a parent polling private memory (bench.run_polled), these give the
    # peak over all runs without a separate, slow memory run.
    print(json.dumps({"vmprof": where, "runs": out, "rss_before_kib": before,
                      "anon_before_kib": anon_before, "buffer_kib": len(buf) // 1024,
                      "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


if __name__ == "__main__":
    main()
