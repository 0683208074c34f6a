"""Writes small crafted seed profiles for the fuzzer into the folder given:
every mode, 4- and 8-byte words, gzip, and a few corrupt variants."""
import gzip
import os
import struct
import sys


def profile(word=8, mode=0, version=6, trailer=True, rss=False):
    f = "<%d%s" % (1, "q" if word == 8 else "i")
    w = lambda *vs: b"".join(struct.pack(f, v) for v in vs)
    out = w(0, 3, 0, 990, 0) + bytes([5, 0, version]) + (bytes([mode]) if version >= 4 else b"")
    out += bytes([7]) + b"cpython"
    out += bytes([6]) + struct.pack("<qq", 1700000000, 1) + b"UTC\0\0\0\0\0"
    out += bytes([7]) + w(2) + b"os" + w(5) + b"linux"
    pairs = mode & 0x0A
    stacks = [[1, 0x10, 2, 0x20, 3, 0x31] if pairs else [0x10, 0x20, 0x31],
              [5, 0x10, 7, 0x40] if pairs else [0x10, 0x40]]
    if mode & 0x08:
        stacks = [[1, 0x10, 3, 0x20, 5, 0, 6, 0x99], [1, 0x10, 2, 0, 4, 0]]
    for i, st in enumerate(stacks * 3):
        out += bytes([1]) + w(1, len(st), *st) + w(0x7000 + i % 2)
        if rss or mode & 1:
            out += w(1000 + i)
    for addr, name in ((0x10, b"py:main:1:m.py"), (0x20, b"py:f:2:m.py"), (0x31, b"n:c:0:-")):
        out += bytes([2 if name.startswith(b"py") else 8]) + w(addr, len(name)) + name
    if trailer:
        out += bytes([3]) + struct.pack("<qq", 1700000001, 2) + b"UTC\0\0\0\0\0"
    return out


def main(folder):
    os.makedirs(folder, exist_ok=True)
    seeds = {}
    for word in (4, 8):
        for mode in (0, 1, 2, 4, 8, 12, 16):
            seeds["w%d_m%d" % (word, mode)] = profile(word, mode)
    seeds["v0"] = profile(version=0)
    seeds["v3"] = profile(version=3)
    seeds["notrailer"] = profile(trailer=False)
    seeds["gzip"] = gzip.compress(profile(mode=2))
    seeds["cut"] = profile()[:-30]
    seeds["badtag"] = profile()[:-25] + b"\x09"
    for name, data in seeds.items():
        with open(os.path.join(folder, "seed_" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
