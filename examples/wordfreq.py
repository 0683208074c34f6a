"""An example program to profile: counts words in generated text.

Its time is spread over a few functions with different shapes (string
building, a dictionary count, sorting, a recursive helper), so a profile of it
has something to show:

    python -m vmprof examples/wordfreq.py            # summary on the terminal
    python -m vmprof -o wordfreq.prof examples/wordfreq.py 3
    vmprofshow wordfreq.prof

The optional argument scales the work (default 1: about a second on CPython).
"""
import random
import sys

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "en", "dra"]


def make_word(rng):
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))


def make_text(n_words, seed=42):
    rng = random.Random(seed)
    vocabulary = [make_word(rng) for _ in range(5000)]
    words = rng.choices(vocabulary, k=n_words)
    return " ".join(w.capitalize() if rng.random() < 0.1 else w for w in words)


def tokenize(text):
    return [word.strip(".,;").lower() for word in text.split()]


def count_words(words):
    counts = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    return counts


def top_words(counts, n):
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]


def syllable_splits(word):
    """How many ways the word splits into known syllables (recursive)."""
    if not word:
        return 1
    return sum(syllable_splits(word[len(s):]) for s in SYLLABLES if word.startswith(s))


def main(scale):
    text = make_text(500000 * scale)
    words = tokenize(text)
    counts = count_words(words)
    best = top_words(counts, 10)
    ambiguity = sum(syllable_splits(word) for word in words[:100000 * scale])
    print("%d words, %d distinct; most common: %s" % (
        len(words), len(counts), ", ".join("%s (%d)" % wc for wc in best[:5])))
    print("syllable splits of the first words: %d" % ambiguity)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
