"""Prints what a profile holds, as JSON: samples, distinct threads, samples
per thread id, the period the file states (when the reader exposes it), the
samples the sampler says it dropped (its META "samples_dropped") and, on the
wall clock, how many it repeated for idle threads ("samples_repeated").

    python bench/count_samples.py FILE

Uses whichever vmprof this interpreter imports (ours when it has landed, else
the original in bench-orig), so the bench itself knows nothing of the format.
"""
import json
import sys

import vmprof


def main():
    stats = vmprof.read_profile(sys.argv[1])
    profiles = stats.profiles
    per_thread = {}
    for p in profiles:
        per_thread[p[2]] = per_thread.get(p[2], 0) + 1
    out = {"samples": len(profiles), "threads": len(per_thread),
           "per_thread": {str(k): v for k, v in per_thread.items()}}
    summary = getattr(stats, "period_usec", None) or getattr(stats, "period", None)
    if summary:
        out["period"] = summary
    meta = getattr(stats, "meta", None) or {}
    if "samples_dropped" in meta:  # ours: samples the sampler could not keep
        out["dropped"] = int(meta["samples_dropped"])
    if "samples_repeated" in meta:  # ours, wall clock: idle threads not woken
        out["repeated"] = int(meta["samples_repeated"])
    for warning in ("threads_not_sampled", "threads_blocking_signal"):  # ours, when it happened
        if warning in meta:
            out[warning] = int(meta[warning])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
