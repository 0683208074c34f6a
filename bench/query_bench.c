/*
 * query_bench.c - times the queries a server asks of a read profile
 * (vmprof.h), each the median of several runs, once the profile is read.
 *
 *   query_bench FILE [OTHER [RUNS]]
 *
 * Prints one JSON object: the read time and, in milliseconds, the full
 * call tree; the tree from the hottest root path cut at depth 6; one
 * thread's tree; the callers and callees of the hottest function; the tree
 * of a 10% time range; the per-function counts; the diff against OTHER (or
 * against FILE itself).  Each also as CPU time of the process ("..._cpu_ms"),
 * which other processes on a loaded machine do not inflate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmprof.h"

static double clock_s(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what, const vmp_error *err)
{
    fprintf(stderr, "query_bench: %s: %s\n", what, err ? err->message : "");
    exit(1);
}

enum { TREE, ROOTED, THREAD, NEIGHBOURS, RANGE, FUNCTIONS, DIFF, N_QUERIES };
static const char *const names[N_QUERIES] = {"tree_ms", "tree_root_path_depth6_ms",
                                             "one_thread_ms", "callers_callees_ms",
                                             "time_range_10pct_ms", "functions_ms", "diff_ms"};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: query_bench FILE [OTHER [RUNS]]\n");
        return 2;
    }
    int runs = argc > 3 ? atoi(argv[3]) : 7;
    vmp_error err;
    double t0 = now();
    vmp_profile *p = vmp_profile_read_file(argv[1], NULL, &err);
    double read_s = now() - t0;
    if (!p)
        die("read", &err);
    vmp_profile *other = argc > 2 ? vmp_profile_read_file(argv[2], NULL, &err) : p;
    if (!other)
        die("read the other profile", &err);
    vmp_facts f;
    vmp_profile_facts(p, &f);

    /* the hottest function, and the hottest path six levels down */
    vmp_query base = {.frames = VMP_Q_MERGE_RECURSION};
    vmp_func_counts *fc = vmp_query_functions(p, &base, &err);
    if (!fc || !fc->n)
        die("functions", &err);
    uint32_t hottest = fc->items[0].func;
    for (size_t i = 0; i < fc->n; i++)
        if (fc->items[i].self > fc->items[0].self) /* the hottest by its own time */
            hottest = fc->items[i].func;
    vmp_result_free(fc);
    vmp_tree *t = vmp_query_tree(p, &base, &err);
    if (!t)
        die("tree", &err);
    uint32_t path[6];
    size_t path_len = 0;
    for (uint32_t n = t->nodes[0].first_child; n != VMP_NONE && path_len < 6;
         n = t->nodes[n].first_child)
        path[path_len++] = t->nodes[n].func;
    vmp_result_free(t);

    double samples[N_QUERIES][64], cpu[N_QUERIES][64];
    if (runs > 64)
        runs = 64;
    for (int r = 0; r < runs; r++) {
        for (int k = 0; k < N_QUERIES; k++) {
            vmp_query q = base;
            void *res = NULL;
            double s = now(), c = clock_s(CLOCK_PROCESS_CPUTIME_ID);
            switch (k) {
            case TREE:
                res = vmp_query_tree(p, &q, &err);
                break;
            case ROOTED:
                q.root_path = path;
                q.root_path_len = path_len > 2 ? 2 : path_len;
                q.max_depth = 6;
                res = vmp_query_tree(p, &q, &err);
                break;
            case THREAD:
                q.thread_set = 1;
                q.thread = f.n_threads > 1 ? 1 : 0;
                res = vmp_query_tree(p, &q, &err);
                break;
            case NEIGHBOURS:
                res = vmp_query_neighbours(p, &q, hottest, &err);
                break;
            case RANGE:
                q.time_range_set = 1;
                q.time_begin_ms = f.duration_ms * 0.45;
                q.time_end_ms = f.duration_ms * 0.55;
                res = vmp_query_tree(p, &q, &err);
                break;
            case FUNCTIONS:
                res = vmp_query_functions(p, &q, &err);
                break;
            case DIFF:
                res = vmp_query_diff(p, &q, other, &q, &err);
                break;
            }
            samples[k][r] = (now() - s) * 1000.0;
            cpu[k][r] = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c) * 1000.0;
            if (!res)
                die(names[k], &err);
            vmp_result_free(res);
        }
    }
    printf("{\"file\": \"%s\", \"samples\": %llu, \"read_s\": %.4f", argv[1],
           (unsigned long long)f.n_samples, read_s);
    for (int k = 0; k < N_QUERIES; k++) {
        qsort(samples[k], (size_t)runs, sizeof(double), cmp_double);
        printf(", \"%s\": %.3f", names[k], samples[k][runs / 2]);
        qsort(cpu[k], (size_t)runs, sizeof(double), cmp_double);
        printf(", \"%.*s_cpu_ms\": %.3f", (int)(strlen(names[k]) - 3), names[k], cpu[k][runs / 2]);
    }
    printf("}\n");
    if (other != p)
        vmp_profile_free(other);
    vmp_profile_free(p);
    return 0;
}
