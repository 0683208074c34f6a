"""Where the wall clock puts the time of a thread that computes and sleeps in
turn: the share of its samples in the computing part against the share of
its wall time it measured itself spending there (the truth of this very
run), for short compute/sleep patterns at 1 and 10 kHz.

    .venv/3.11/bin/python bench/wall_attribution.py [--seconds S] [--rounds N]

(run with the interpreter whose vmprof is to be measured; medians of
--rounds runs per cell.)  The sampler's own tests read profiles with
tests/python/sampler_util.py, which this reuses.
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import sampler_util  # noqa: E402

PATTERNS = [(3, 7), (2, 30), (1, 9), (0.5, 1.5)]  # ms computing, ms sleeping
PERIODS = [0.001, 0.0001]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print("wall clock attribution, %s, load %s" % (sys.version.split()[0], " ".join(
        "%.1f" % x for x in os.getloadavg())))
    print("\n| compute / sleep | rate | samples / periods | computing share | measured | off by |")
    print("|---|---|---|---|---|---|")
    for c, s in PATTERNS:
        for period in PERIODS:
            got, true, counts = [], [], []
            for _ in range(args.rounds):
                p, (truth, wall), _ = sampler_util.profile(sampler_util.compute_then_sleep, c / 1e3, s / 1e3,
                                                           args.seconds, period=period, real_time=True)
                comp, slept = p.inclusive("computing"), p.inclusive("sleeping")
                got.append(comp / max(1, comp + slept))
                true.append(truth)
                counts.append((comp + slept) / (wall / period))
            g, t = statistics.median(got), statistics.median(true)
            print("| %g / %g ms | %d Hz | %.3f | %.1f%% | %.1f%% | %+.1f |" % (
                c, s, round(1 / period), statistics.median(counts), 100 * g, 100 * t, 100 * (g - t)))


if __name__ == "__main__":
    main()
