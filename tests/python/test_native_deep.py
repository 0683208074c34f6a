"""Deep recursion with native frames: every Python frame is kept, in order,
and a sample whose C stack did not fit is counted (issue 9, "stacks that
never lie").

A sample holds at most VMP_MAX_DEPTH_WRITTEN (1,000) frames.  Each Python
call costs several C frames on 3.8-3.10, and a call through C (sorted's key,
map) costs several on every version, so a recursion a few hundred deep has
more frames than a sample holds.  Before, the native walk (capped at 512
frames) filled the sample first: on 3.8 a 300-deep recursion was rooted at
`<module>` with the C frames outside it gone and nothing counted (269 of 299
samples, META samples_cut absent); on 3.11 and 3.13 a 300-deep recursion
through `sorted(key=)` lost its outermost ~60 Python frames to the sample's
end and was rooted at a `<lambda>` (160-180 of 300 samples), or at a C frame
halfway to the root (`_PyRun_AnyFileObject`), also uncounted.  Now the Python
frames are counted first, the walk gets the room they leave, and a walk that
needs more is capped and counted in samples_cut.

The profile is read back with sampler_util's own decoder, not the C reader.
"""
import os
import subprocess
import sys
import textwrap

import pytest

import sampler_util

pytestmark = [
    pytest.mark.cpython_only,
    pytest.mark.skipif(not sampler_util.NATIVE_WALK_HERE, reason=sampler_util.NO_NATIVE_WALK),
]

HERE = os.path.dirname(os.path.abspath(__file__))

# A shallow phase first (its samples say where the main thread's C stack is
# rooted), then the deep one: rec() recurses `depth` times, plainly or
# through sorted's key (C calling Python), and spins at the bottom.
PROGRAM = """
    import sys, time, vmprof

    def spin(seconds):
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    def rec(n, seconds):
        if n == 0:
            spin(seconds)
            return 0
        return rec(n - 1, seconds) + 1

    def rec_sorted(n, seconds):
        if n == 0:
            spin(seconds)
            return 0
        return sorted([n], key=lambda v: rec_sorted(n - 1, seconds))[0]

    def shallow():
        spin(0.1)

    def deep(fn, depth):
        end = time.thread_time() + 0.4
        while time.thread_time() < end:
            fn(depth, 0.05)

    f = open(sys.argv[1], "wb")
    vmprof.enable(f.fileno(), period=0.001, native=True)
    shallow()
    sys.setrecursionlimit(1000)  # (the default: 3.8 counts the C call of sorted too)
    deep(rec if sys.argv[2] == "plain" else rec_sorted, int(sys.argv[3]))
    vmprof.disable()
"""


def run(tmp_path, how, depth):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(PROGRAM))
    out = tmp_path / "p.prof"
    env = dict(os.environ, VMPROF_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, str(script), str(out), how, str(depth)], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return sampler_util.read_back(str(out))


def python_funcs(p, entries):
    """Function names of the Python frames, innermost first."""
    return [p.func(e) for e in entries if p.name(e).startswith("py:")]


# Through sorted, 3.8-3.10 count the C call against the recursion limit too
# (1,000 by default): 200 levels there, 300 (600 Python frames) on 3.11+.
SORTED_DEPTH = 300 if sys.version_info >= (3, 11) else 200


@pytest.mark.parametrize("how,depth", [("plain", 300), ("sorted", SORTED_DEPTH)])
def test_deep_recursion_keeps_every_python_frame_and_counts_a_short_c_stack(tmp_path, how, depth):
    p = run(tmp_path, how, depth)
    # The main thread's root: the outermost entry of the shallow phase's
    # samples (a C function: the program's entry).
    shallow_roots = {}
    for entries, _, _ in p.stacks:
        funcs = python_funcs(p, entries)
        if funcs[:2] == ["spin", "shallow"]:
            shallow_roots[entries[-1]] = shallow_roots.get(entries[-1], 0) + 1
    assert shallow_roots, "no sample of the shallow phase"
    root = max(shallow_roots, key=shallow_roots.get)
    assert p.name(root).startswith("n:"), p.name(root)

    # Every sample at the bottom (spin inside the deepest rec) has all its
    # Python frames, in the program's order.
    fn = "rec" if how == "plain" else "rec_sorted"
    per_level = [fn] if how == "plain" else ["<lambda>", fn]
    expected = ["spin", fn] + per_level * depth + ["deep", "<module>"]
    bottom = not_rooted = 0
    for entries, _, _ in p.stacks:
        funcs = python_funcs(p, entries)
        if funcs[:2] != ["spin", fn]:
            continue
        bottom += 1
        assert funcs == expected, (how, len(funcs), len(expected), funcs[-5:], len(entries))
        # Rooted at the thread's root, or (when its C stack did not fit)
        # at the outermost Python frame, nowhere in between.
        outer = entries[-1]
        if outer != root:
            not_rooted += 1
            assert p.name(outer).startswith("py:") and p.func(outer) == "<module>", (
                how, p.name(outer), [p.name(e) for e in entries[-4:]])
    # Not vacuous: most of the time is spent at the bottom.
    assert bottom >= 100, (bottom, len(p.stacks))
    # Each sample whose C stack did not reach the root is counted.
    cut = int(p.meta.get("samples_cut", "0"))
    assert cut >= not_rooted, (how, cut, not_rooted, bottom)
