"""The reading path through whichever vmprof this interpreter imports, for
comparing PyPy's bindings of libvmprof: cffi (what `pip install` builds on
PyPy: src/module/pypy) and the C extension under PyPy's C-API emulation
(cpyext, built with -Dpypy_binding=cpyext).  Run by bench/bench_bindings.py.

    python bench/py_bindings.py FILE RUNS

Each run times, on the same file:
    read_bytes   readinto() of the whole file into a ready buffer (baseline)
    read_profile vmprof.read_profile(FILE)
    get_tree     Stats.get_tree()
    walk         every node of that tree visited as vmprofshow's tree does:
                 name, count, children (Node objects built on the way)
    export       vmprof.export(stats, "collapsed", fd of /dev/null)
and prints JSON.  Run from bench/ (sys.path[0]), never from the repository
root, so that the source package cannot shadow the installed one.
"""
import gc
import json
import os
import sys
import time


def walk(top):
    n = 0
    chars = 0
    todo = [top]
    while todo:
        node = todo.pop()
        chars += len(node.name) + node.count
        n += 1
        todo.extend(node.child_nodes)
    return n, chars


def main():
    path, runs = sys.argv[1], int(sys.argv[2])
    import vmprof
    import vmprof._core
    if sys.implementation.name != "pypy":
        binding = "C extension"
    else:
        binding = "cffi" if vmprof._core.__file__.endswith(".py") else "cpyext"
    size = os.path.getsize(path)
    buf = bytearray(size + 1)
    out = []
    null = os.open(os.devnull, os.O_WRONLY)
    for _ in range(runs):
        t0 = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            got = f.readinto(buf)
        t1 = time.perf_counter()
        assert got == size
        stats = vmprof.read_profile(path)
        t2 = time.perf_counter()
        tree = stats.get_tree()
        t3 = time.perf_counter()
        nodes, check = walk(tree)
        t4 = time.perf_counter()
        vmprof.export(stats, "collapsed", null)
        t5 = time.perf_counter()
        out.append({"read_bytes": t1 - t0, "read_profile": t2 - t1, "get_tree": t3 - t2,
                    "walk": t4 - t3, "export": t5 - t4, "nodes": nodes, "check": check})
        del stats, tree
        gc.collect()
    os.close(null)
    print(json.dumps({"binding": binding, "python": sys.version.split()[0],
                      "implementation": sys.implementation.name,
                      "core": sys.modules["vmprof._core"].__file__, "runs": out}))


if __name__ == "__main__":
    main()
