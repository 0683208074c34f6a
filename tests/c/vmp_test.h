/*
 * vmp_test.h - a minimal unit-test harness for the C library.
 *
 * A test is a function declared with VMP_TEST(name); it registers itself at
 * load time, so test files need no central list.  CHECK records a failure and
 * goes on; REQUIRE records it and leaves the test.  The runner (test_main.c)
 * prints one line per failure and closes with "N passed, N failed".
 * VMP_FIXTURES names the folder of upstream fixture profiles.
 */
#ifndef VMP_TEST_H
#define VMP_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <string.h>

typedef void (*vmp_test_fn)(void);
void vmp_test_register(const char *name, vmp_test_fn fn);
void vmp_test_fail(const char *file, int line, const char *what);
/* Whether the running test has failed a check so far (a test then prints
 * the figures it checked, as it does with VMP_TEST_VERBOSE set, so that a
 * failure in CI says what was counted). */
int vmp_test_failed(void);
/* Path of a fixture file under the upstream fixtures folder (static buffer). */
const char *vmp_fixture(const char *name);
/* The whole of a file, malloc'd (the caller frees it), its length in *len;
 * NULL when it cannot be opened or read. */
unsigned char *vmp_test_read_file(const char *path, size_t *len);
/* Waits until thread tid (of this process) is asleep inside system call
 * number nr (its /proc syscall and state S), at most 10 s: 0, or -1.  (A
 * fixed nap after starting a thread was not enough on a loaded machine: a
 * thread kept from a CPU 20 ms and more was still on its way there.) */
int vmp_test_wait_asleep_in(int tid, long nr);
/* Clock c (a thread's CPU clock, CLOCK_MONOTONIC, ...) in ms; -1 when it
 * cannot be read (a thread gone). */
int64_t vmp_test_clock_ms(clockid_t c);

#define VMP_TEST(name)                                                           \
    static void name(void);                                                      \
    __attribute__((constructor)) static void register_##name(void)               \
    {                                                                            \
        vmp_test_register(#name, name);                                          \
    }                                                                            \
    static void name(void)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond))                                                             \
            vmp_test_fail(__FILE__, __LINE__, #cond);                            \
    } while (0)

#define REQUIRE(cond)                                                            \
    do {                                                                         \
        if (!(cond)) {                                                           \
            vmp_test_fail(__FILE__, __LINE__, #cond);                            \
            return;                                                              \
        }                                                                        \
    } while (0)

#endif /* VMP_TEST_H */
