"""Times parse_jitlog of whichever `jitlog` package this interpreter imports
(ours through vmprof._core, or the original from PyPI), run by bench_jitlog.py.

    python py_jitlog.py FILE RUNS

JSON on stdout: per run the wall and CPU seconds of parse_jitlog(FILE) (what
a script calls), then of visiting every op of every stage of every trace (the
original builds them all while parsing; ours when asked), and what was read.
"""
import json
import sys
import time


def main():
    path, runs = sys.argv[1], int(sys.argv[2])
    from jitlog.parser import parse_jitlog
    out = []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        forest = parse_jitlog(path)
        w1, c1 = time.perf_counter(), time.process_time()
        ops = 0
        for trace in forest.traces.values():
            for stage in trace.stages.values():
                ops += len(stage.get_ops())
        w2, c2 = time.perf_counter(), time.process_time()
        out.append({"parse": [w1 - w0, c1 - c0], "visit": [w2 - w1, c2 - c1],
                    "traces": len(forest.traces), "ops": ops})
        del forest
    json.dump({"runs": out, "python": sys.version.split()[0],
               "implementation": sys.implementation.name}, sys.stdout)


if __name__ == "__main__":
    main()
