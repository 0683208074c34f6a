"""Prints what a profile holds, as JSON: samples, distinct threads, and the
period the file states (when the reader exposes it).

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
    print(json.dumps(out))


if __name__ == "__main__":
    main()
