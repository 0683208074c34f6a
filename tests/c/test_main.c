/* test_main.c - runs every registered C test; optional argv[1] filters by
 * substring of the test name. */
#include <stdlib.h>
#include <unistd.h>

#include "vmp_test.h"

#define MAX_TESTS 1024

static struct {
    const char *name;
    vmp_test_fn fn;
} tests[MAX_TESTS];
static int n_tests;
static int current_failed;

void vmp_test_register(const char *name, vmp_test_fn fn)
{
    if (n_tests < MAX_TESTS) {
        tests[n_tests].name = name;
        tests[n_tests].fn = fn;
        n_tests++;
    }
}

void vmp_test_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "  %s:%d: check failed: %s\n", file, line, what);
    current_failed = 1;
}

const char *vmp_fixture(const char *name)
{
    static char path[4096];
    const char *dir = getenv("VMP_FIXTURES");
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/data/upstream/profiles",
             name);
    return path;
}

unsigned char *vmp_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL; /* (+1: never malloc(0)) */
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = buf ? (size_t)n : 0;
    return buf;
}

/* /proc/self/task/<tid>/<name>'s first bytes, NUL-terminated; -1 if none. */
static int read_task(int tid, const char *name, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/%s", tid, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = 0;
    return n > 0 ? 0 : -1;
}

int vmp_test_wait_asleep_in(int tid, long nr)
{
    for (int i = 0; i < 100000; i++) {
        char sc[128], st[512];
        if (read_task(tid, "syscall", sc, sizeof sc) == 0 && read_task(tid, "stat", st, sizeof st) == 0) {
            char *end;
            long at = strtol(sc, &end, 10);
            const char *paren = strrchr(st, ')');
            if (end != sc && at == nr && paren && paren[1] == ' ' && paren[2] == 'S')
                return 0;
        }
        usleep(100);
    }
    return -1;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0, i;
    for (i = 0; i < n_tests; i++) {
        if (argc > 1 && !strstr(tests[i].name, argv[1]))
            continue;
        current_failed = 0;
        tests[i].fn();
        if (current_failed) {
            fprintf(stderr, "FAIL %s\n", tests[i].name);
            failed++;
        } else {
            passed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
