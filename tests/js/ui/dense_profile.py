"""A profile with many samples, written here byte by byte (the format of
/work/shared/spec): 40,000 samples over a skewed call tree 6 to 24 levels deep.
Recording that many real samples would take the tests several seconds of CPU;
the UI needs them to show a zoom that waits for finer levels than the first
answer holds (1/5000 of the run is 8 samples here, not a fraction of one).
    python dense_profile.py OUT [SAMPLES]"""
import random
import struct
import sys

W = struct.Struct("<q")


def words(*vs):
    return b"".join(W.pack(v) for v in vs)


def dense_profile(samples=40000, seed=13):
    rnd = random.Random(seed)
    out = [words(0, 3, 0, 1000, 0) + bytes([5, 0, 6, 0, 7]) + b"cpython"]
    names = {}

    def addr(level, choice):
        key = (level, choice)
        if key not in names:
            names[key] = 0x1000 + 16 * len(names)
        return names[key]

    weights = [40, 25, 15, 10, 6, 4]
    for _ in range(samples):
        depth = rnd.randint(6, 24)
        stack = [addr(0, 0)]
        for level in range(1, depth):
            stack.append(addr(level, rnd.choices(range(len(weights)), weights)[0]))
        out.append(bytes([1]) + words(1, len(stack), *reversed(stack)) + words(7))
    for (level, choice), a in names.items():
        name = "py:level%d_%s:%d:/srv/dense/step%d.py" % (level, "abcdef"[choice], 10 + choice, level)
        out.append(bytes([2]) + words(a, len(name)) + name.encode())
    return b"".join(out)


if __name__ == "__main__":
    with open(sys.argv[1], "wb") as f:
        f.write(dense_profile(*map(int, sys.argv[2:])))
