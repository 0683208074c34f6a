/*
 * test_native_symbols.c - resolving native addresses to profile names.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "vmp_symbols.h"
#include "vmp_test.h"

__attribute__((noinline)) static int symbols_test_target(int x)
{
    return x * 3 + 1;
}

VMP_TEST(symbols_name_a_static_function_with_file_and_line)
{
    vmp_symbols *s = vmp_symbols_open();
    REQUIRE(s);
    uintptr_t fn = (uintptr_t)&symbols_test_target;
    char name[1100];
    vmp_symbols_name(s, fn, name, sizeof name);
    /* The test binary has debug information: the file and a line near the
     * definition are known. */
    CHECK(strncmp(name, "n:symbols_test_target:", 22) == 0);
    CHECK(strstr(name, "test_native_symbols.c") != NULL);
    int line = 0;
    const char *colon = strchr(name + 22, ':');
    CHECK(colon && sscanf(name + 22, "%d", &line) == 1);
    CHECK(line >= 13 && line <= 16);
    /* Any pc inside the function maps to its start. */
    CHECK(vmp_symbols_function_start(s, fn + 4) == fn);
    CHECK(symbols_test_target(1) == 4);
    vmp_symbols_close(s);
}

VMP_TEST(symbols_name_a_library_function_without_debug_info)
{
    vmp_symbols *s = vmp_symbols_open();
    REQUIRE(s);
    char name[1100];
    uintptr_t fn = (uintptr_t)&deflate;
    CHECK(vmp_symbols_function_start(s, fn + 8) == fn);
    vmp_symbols_name(s, fn, name, sizeof name);
    CHECK(strncmp(name, "n:deflate:", 10) == 0);
    CHECK(strstr(name, "libz") != NULL);
    vmp_symbols_close(s);
}

VMP_TEST(symbols_name_an_unknown_address_by_its_value)
{
    vmp_symbols *s = vmp_symbols_open();
    REQUIRE(s);
    char name[1100];
    size_t n = vmp_symbols_name(s, 0x10, name, sizeof name);
    CHECK(strcmp(name, "n:<native symbol 0x10>:0:-") == 0);
    CHECK(n == strlen(name));
    CHECK(vmp_symbols_function_start(s, 0x10) == 0x10);
    /* Truncation keeps the text NUL-terminated. */
    n = vmp_symbols_name(s, 0x10, name, 8);
    CHECK(n == 7 && strlen(name) == 7);
    CHECK(vmp_symbols_refresh(s) == 0);
    vmp_symbols_close(s);
}

VMP_TEST(symbols_function_ranges_find_an_exported_function)
{
    vmp_symbols *s = vmp_symbols_open();
    REQUIRE(s);
    uintptr_t r[4][2];
    int n = vmp_symbols_function_ranges(s, "deflate", r, 4);
    REQUIRE(n >= 1);
    CHECK(r[0][0] == (uintptr_t)&deflate);
    CHECK(r[0][1] > r[0][0]);
    CHECK(vmp_symbols_function_ranges(s, "no_such_function_anywhere", r, 4) == 0);
    vmp_symbols_close(s);
}
