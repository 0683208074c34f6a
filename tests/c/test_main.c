/* test_main.c - runs every registered C test; optional argv[1] filters by
 * substring of the test name ("=NAME": that test alone). */
#include <stdlib.h>
#include <sys/wait.h>
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

int vmp_test_failed(void)
{
    return current_failed;
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

/* Runs test i; 1 if it passed. */
static int run_test(int i)
{
    current_failed = 0;
    tests[i].fn();
    return !current_failed;
}

/* Runs test i again in a new process of this program (so nothing the first
 * run loaded, started or left behind is seen: several tests take a library
 * this process has not loaded yet, once); 1 if it passed. */
static int rerun_test(int i)
{
    char filter[256];
    snprintf(filter, sizeof filter, "=%s", tests[i].name);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        setenv("VMP_TEST_RERUNS", "0", 1);
        execl("/proc/self/exe", "test_libvmprof", filter, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int selected(const char *name, const char *filter)
{
    if (!filter)
        return 1;
    if (filter[0] == '=')
        return strcmp(name, filter + 1) == 0;
    return strstr(name, filter) != NULL;
}

int64_t vmp_test_clock_ms(clockid_t c)
{
    struct timespec t;
    if (clock_gettime(c, &t) < 0)
        return -1;
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0, passed_again = 0, i;
    /* A test that fails is run once more (VMP_TEST_RERUNS=0: never), as the
     * pytest runs do (scripts/test-python.sh says why: several of these tests
     * time threads and signals, and a shared machine sometimes starves one). */
    const char *reruns = getenv("VMP_TEST_RERUNS");
    int rerun = !(reruns && strcmp(reruns, "0") == 0);
    for (i = 0; i < n_tests; i++) {
        if (!selected(tests[i].name, argc > 1 ? argv[1] : NULL))
            continue;
        if (run_test(i)) {
            passed++;
            continue;
        }
        if (rerun) {
            fprintf(stderr, "RERUN %s (in a new process)\n", tests[i].name);
            if (rerun_test(i)) {
                fprintf(stderr, "FLAKY %s: failed, then passed when run again\n", tests[i].name);
                passed_again++;
                continue;
            }
        }
        fprintf(stderr, "FAIL %s\n", tests[i].name);
        failed++;
    }
    if (passed + passed_again + failed == 0) {
        /* (a rerun must not pass by running nothing) */
        fprintf(stderr, "test_libvmprof: no test matches %s\n", argv[1]);
        return 2;
    }
    if (passed_again)
        printf("%d passed (and %d on a second run: FLAKY above), %d failed\n", passed, passed_again, failed);
    else
        printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
