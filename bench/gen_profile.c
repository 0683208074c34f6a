/*
 * gen_profile.c - writes a large, realistic CPython profile for the reader and
 * export benchmarks, with the project's own encoder (vmp_encode.h).
 *
 *   gen_profile OUT [N_SAMPLES [N_STACKS [SEED [N_FUNCS [SHAPE]]]]]
 *
 * SHAPE "graph" (the default) is the realistic shape below; "random" draws
 * every frame of every stack uniformly from the N_FUNCS functions and every
 * sample uniformly from the stacks: no shared prefixes, no hot path, the
 * hardest case for a reader that recognises stacks (the read model issue's
 * "4 threads, 4,000 stacks of depth 20-60 over 3,000 functions").
 *
 * Shape, chosen to look like a real program rather than noise:
 *   - a few thousand distinct stacks built as a call graph: a handful of entry
 *     paths (main -> framework -> handler ...) share long prefixes, then fan
 *     out into library code; depth 20..60; some stacks recurse (the same code
 *     id several times in a row, which the call tree folds);
 *   - sample frequencies follow a Zipf law over the distinct stacks (a few hot
 *     paths take most samples, a long tail appears a handful of times);
 *   - four threads, each with its own mix of entry paths;
 *   - code ids look like 64-bit heap addresses; every id gets a
 *     "py:func:line:file" name at the end, as the original writes them when
 *     profiling stops.
 * Deterministic for a given seed, so the file is the same in every run.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmp_encode.h"
#include "vmp_format.h"

#define DEFAULT_FUNCS 2400
#define N_ENTRY_PATHS 12
#define N_THREADS 4
#define MIN_DEPTH 20
#define MAX_DEPTH 60

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64: tiny, fast, good enough for a workload shape */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned rnd_below(unsigned n)
{
    return (unsigned)(rnd() % n);
}

static uint64_t code_id(unsigned func)
{
    /* code objects live in the heap, 16-byte aligned, a few hundred bytes apart */
    return 0x7f3a12000000ull + (uint64_t)func * 0x1b0;
}

typedef struct {
    uint64_t frames[MAX_DEPTH]; /* root first */
    unsigned depth;
    unsigned thread;
} gen_stack;

static void die(const char *what)
{
    fprintf(stderr, "gen_profile: %s\n", what);
    exit(1);
}

static void flush(vmp_wbuf *b, FILE *f)
{
    if (b->len && fwrite(b->data, 1, b->len, f) != b->len)
        die("cannot write the output file (disk full?)");
    b->len = 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: gen_profile OUT [N_SAMPLES [N_STACKS [SEED [N_FUNCS [SHAPE]]]]]\n");
        return 2;
    }
    const char *out = argv[1];
    unsigned long n_samples = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000000;
    unsigned n_stacks = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 3000;
    rng_state = argc > 4 ? strtoull(argv[4], NULL, 10) : 42;
    unsigned N_FUNCS = argc > 5 ? (unsigned)strtoul(argv[5], NULL, 10) : DEFAULT_FUNCS;
    int random_shape = argc > 6 && strcmp(argv[6], "random") == 0;
    if (argc > 6 && !random_shape && strcmp(argv[6], "graph") != 0)
        die("SHAPE is graph or random");
    if (n_stacks < 1 || n_samples < 1)
        die("N_SAMPLES and N_STACKS must be positive");
    if (N_FUNCS < 500)
        die("N_FUNCS must be at least 500");

    /* Entry paths: long shared prefixes (interpreter start-up, framework). */
    uint64_t entry[N_ENTRY_PATHS][24];
    unsigned entry_len[N_ENTRY_PATHS];
    for (unsigned e = 0; e < N_ENTRY_PATHS; e++) {
        entry_len[e] = 8 + rnd_below(12);
        for (unsigned i = 0; i < entry_len[e]; i++)
            /* the first frames are common to every path (<module>, main, run) */
            entry[e][i] = code_id(i < 3 ? i : 3 + e * 24 + i);
    }

    gen_stack *stacks = calloc(n_stacks, sizeof *stacks);
    if (!stacks)
        die("out of memory");
    for (unsigned s = 0; s < n_stacks; s++) {
        gen_stack *st = &stacks[s];
        unsigned e = rnd_below(N_ENTRY_PATHS);
        unsigned target = MIN_DEPTH + rnd_below(MAX_DEPTH - MIN_DEPTH + 1);
        /* threads: each entry path mostly runs on one thread */
        st->thread = rnd_below(8) ? e % N_THREADS : rnd_below(N_THREADS);
        unsigned d = 0;
        for (; d < entry_len[e] && d < target; d++)
            st->frames[d] = entry[e][d];
        /* Mid-level code: drawn from a module-sized neighbourhood so that
         * siblings share callers the way real call graphs do. */
        unsigned base = 300 + rnd_below(N_FUNCS - 400);
        while (d < target) {
            if (d + 4 < target && rnd_below(10) == 0) {
                /* recursion: the same function several times in a row */
                uint64_t f = code_id(base + rnd_below(40));
                unsigned reps = 2 + rnd_below(4);
                for (unsigned r = 0; r < reps && d < target; r++)
                    st->frames[d++] = f;
            } else {
                st->frames[d++] = code_id(base + rnd_below(60));
                if (rnd_below(6) == 0)
                    base = 300 + rnd_below(N_FUNCS - 400);
            }
        }
        st->depth = d;
        if (random_shape) {
            st->thread = rnd_below(N_THREADS);
            for (d = 0; d < target; d++)
                st->frames[d] = code_id(rnd_below(N_FUNCS));
        }
    }

    /* Zipf(1.1) over a random permutation of the stacks. */
    double *cdf = malloc(n_stacks * sizeof *cdf);
    unsigned *perm = malloc(n_stacks * sizeof *perm);
    if (!cdf || !perm)
        die("out of memory");
    for (unsigned i = 0; i < n_stacks; i++)
        perm[i] = i;
    for (unsigned i = n_stacks - 1; i > 0; i--) {
        unsigned j = rnd_below(i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    double total = 0;
    for (unsigned i = 0; i < n_stacks; i++) {
        total += random_shape ? 1.0 : 1.0 / pow(i + 1, 1.1);
        cdf[i] = total;
    }

    FILE *f = fopen(out, "wb");
    if (!f)
        die("cannot open the output file");
    static unsigned char mem[1 << 20];
    vmp_wbuf b;
    vmp_wbuf_init(&b, mem, sizeof mem);
    if (vmp_enc_static_header(&b, 1000) || vmp_enc_header(&b, 0, "cpython") ||
        vmp_enc_time_n_zone(&b, 1795000000, 123456, "UTC"))
        die("header does not fit");
    static const char *meta[][2] = {
        {"argv", "bench/gen_profile (synthetic)"}, {"platform", "linux"},
        {"interpreter", "cpython"}, {"generator", "vmprof bench"}};
    for (unsigned i = 0; i < sizeof meta / sizeof meta[0]; i++)
        vmp_enc_meta(&b, meta[i][0], strlen(meta[i][0]), meta[i][1], strlen(meta[i][1]));

    const uint64_t thread_ids[N_THREADS] = {140123456789504ull, 140123448396800ull,
                                            140123440004096ull, 140123431611392ull};
    uint64_t inner_first[MAX_DEPTH];
    for (unsigned long n = 0; n < n_samples; n++) {
        double u = (double)(rnd() >> 11) / 9007199254740992.0 * total;
        unsigned lo = 0, hi = n_stacks - 1;
        while (lo < hi) {
            unsigned mid = (lo + hi) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        const gen_stack *st = &stacks[perm[lo]];
        for (unsigned i = 0; i < st->depth; i++)
            inner_first[i] = st->frames[st->depth - 1 - i];
        if (b.cap - b.len < vmp_enc_stack_size(&b, MAX_DEPTH, 0))
            flush(&b, f);
        if (vmp_enc_stack(&b, inner_first, st->depth, thread_ids[st->thread], 0, 0))
            die("stack record does not fit");
    }

    char name[256];
    for (unsigned i = 0; i < N_FUNCS; i++) {
        int len = snprintf(name, sizeof name, "py:%s_%u:%u:/srv/app/%s/module_%u.py",
                           i < 3 ? (i == 0 ? "module" : i == 1 ? "main" : "run")
                                 : (i % 5 ? "handle" : "compute"),
                           i, 10 + (i * 37) % 900, (i / 100) % 2 ? "lib" : "core", i / 60);
        if (b.cap - b.len < vmp_enc_name_size(&b, (size_t)len))
            flush(&b, f);
        vmp_enc_name(&b, VMP_TAG_VIRTUAL_IP, code_id(i), name, (size_t)len);
    }
    if (vmp_enc_trailer(&b, 1795000000 + (int64_t)(n_samples / 1000), 654321, "UTC"))
        flush(&b, f), vmp_enc_trailer(&b, 1795000000 + (int64_t)(n_samples / 1000), 654321,
                                      "UTC");
    flush(&b, f);
    if (fclose(f))
        die("cannot close the output file");
    free(stacks);
    free(cdf);
    free(perm);
    return 0;
}
