"""Prints what a profile holds, as JSON: samples, distinct threads, the
period the file states (when the reader exposes it), and the samples the
sampler says it dropped (its META "samples_dropped").

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
    threads = {p[2] for p in profiles}
    out = {"samples": len(profiles), "threads": len(threads)}
    summary = getattr(stats, "period_usec", None) or getattr(stats, "period", None)
    if summary:
        out["period"] = summary
    meta = getattr(stats, "meta", None) or {}
    if "samples_dropped" in meta:  # ours: samples the sampler could not keep
        out["dropped"] = int(meta["samples_dropped"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
