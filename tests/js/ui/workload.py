"""The program the UI tests profile: two threads, three levels of calls and a
chain of 30 more (deeper than a screen of flame graph rows), a growing then
released memory (for --mem), and loops on distinct lines (for
--lines).  ROUNDS scales it (argv[1])."""
import sys
import threading

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 40


def squares(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


def strings(n):
    return sorted(str(i) for i in range(n))


def negate(i):
    return -i


def down_a(depth):
    # at the bottom, C code (sorted) calling Python back (the key): the interpreter's
    # own frames show there, as under strings()'s generator
    return down_b(depth - 1) if depth else sorted(range(4000), key=negate)


def down_b(depth):
    return down_a(depth - 1)


def compute(rounds):
    for _ in range(rounds):
        squares(20000)
        strings(3000)
        down_a(30)


def grow():
    keep = []
    for _ in range(ROUNDS * 2):
        keep.append(bytearray(400000))
        squares(4000)
    return len(keep)


def worker():
    compute(ROUNDS // 2)


def main():
    t = threading.Thread(target=worker, name="worker")
    t.start()
    compute(ROUNDS)
    grow()
    t.join()


main()
