/* test_push.c - the incremental decoder (vmp_decoder_*): bytes pushed in
 * pieces of any size give the same profile as reading them at once; a cut
 * file, bad bytes and gzip input are reported as the readers report them. */
#include <stdint.h>
#include <stdlib.h>

#include "vmp_profile.h"
#include "vmp_test.h"
#include "vmprof.h"

static vmp_profile *push_in_pieces(const unsigned char *d, size_t len, size_t piece,
                                   vmp_error *err)
{
    vmp_decoder *dec = vmp_decoder_new(NULL, err);
    if (!dec)
        return NULL;
    for (size_t at = 0; at < len; at += piece) {
        size_t n = len - at < piece ? len - at : piece;
        if (vmp_decoder_push(dec, d + at, n, err) < 0) {
            vmp_decoder_free(dec);
            return NULL;
        }
    }
    return vmp_decoder_finish(dec, err);
}

static int same_profile(const vmp_profile *a, const vmp_profile *b)
{
    vmp_facts fa, fb;
    vmp_profile_facts(a, &fa);
    vmp_profile_facts(b, &fb);
    if (fa.n_samples != fb.n_samples || fa.n_threads != fb.n_threads ||
        fa.n_functions != fb.n_functions || fa.complete != fb.complete ||
        fa.truncated_at != fb.truncated_at || strcmp(fa.interp, fb.interp) != 0 ||
        vmp_profile_stack_count(a) != vmp_profile_stack_count(b))
        return 0;
    for (uint64_t i = 0; i < fa.n_samples; i++)
        if (vmp_profile_sample_stack(a, i) != vmp_profile_sample_stack(b, i) ||
            vmp_profile_sample_rss(a, i) != vmp_profile_sample_rss(b, i))
            return 0;
    size_t n;
    const vmp_func *f = vmp_profile_funcs(a, &n), *g = vmp_profile_funcs(b, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(f[i].name, g[i].name) || strcmp(f[i].file, g[i].file))
            return 0;
    return 1;
}

VMP_TEST(push_pieces_of_any_size_give_the_same_profile)
{
    static const char *names[] = {"calc_py311.prof", "calc_lines_py311.prof",
                                  "calc_native_py311.prof", "calc_pypy.prof",
                                  "grow_mem_py311.prof", "pool_py311.prof"};
    static const size_t pieces[] = {1, 7, 4096, 1 << 20};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        size_t len;
        unsigned char *d = vmp_test_read_file(vmp_fixture(names[k]), &len);
        REQUIRE(d);
        vmp_error err;
        vmp_profile *whole = vmp_profile_read_memory(d, len, NULL, &err);
        REQUIRE(whole);
        for (size_t j = 0; j < sizeof pieces / sizeof *pieces; j++) {
            vmp_profile *p = push_in_pieces(d, len, pieces[j], &err);
            CHECK(p && same_profile(whole, p));
            vmp_profile_free(p);
        }
        /* cut in the middle of a record: kept up to the cut, as read_memory */
        vmp_profile *cut_whole = vmp_profile_read_memory(d, len - 3, NULL, &err);
        vmp_profile *cut = push_in_pieces(d, len - 3, 100, &err);
        REQUIRE(cut_whole && cut);
        CHECK(same_profile(cut_whole, cut));
        vmp_profile_free(cut);
        vmp_profile_free(cut_whole);
        vmp_profile_free(whole);
        free(d);
    }
}

VMP_TEST(push_reports_bad_input)
{
    vmp_error err;
    static const unsigned char junk[64] = "this is not a vmprof profile at all, sorry...";
    vmp_decoder *d = vmp_decoder_new(NULL, &err);
    REQUIRE(d);
    CHECK(vmp_decoder_push(d, junk, sizeof junk, &err) < 0);
    CHECK(strstr(err.message, "not a vmprof profile") != NULL);
    vmp_decoder_free(d);
    /* too short to be a profile: said at the end */
    d = vmp_decoder_new(NULL, &err);
    REQUIRE(d);
    CHECK(vmp_decoder_push(d, junk, 5, &err) == 0);
    CHECK(vmp_decoder_finish(d, &err) == NULL && strstr(err.message, "at byte 0"));
    static const unsigned char gz[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0};
    d = vmp_decoder_new(NULL, &err);
    REQUIRE(d);
    CHECK(vmp_decoder_push(d, gz, sizeof gz, &err) < 0 && strstr(err.message, "gzip"));
    vmp_decoder_free(d);
    /* strict: a cut record is an error at the end */
    size_t len;
    unsigned char *data = vmp_test_read_file(vmp_fixture("calc_py311.prof"), &len);
    REQUIRE(data);
    vmp_read_options strict = {1};
    d = vmp_decoder_new(&strict, &err);
    REQUIRE(d);
    CHECK(vmp_decoder_push(d, data, len - 3, &err) == 0);
    CHECK(vmp_decoder_finish(d, &err) == NULL && strstr(err.message, "ends inside"));
    free(data);
}

/* vmp_profile_memory counts what a decoded profile holds: at least a stack
 * index per sample, its stacks and functions; more for a profile that also
 * carries an RSS per sample; the same however the bytes arrived. */
VMP_TEST(profile_memory_counts_what_the_model_holds)
{
    static const char *names[] = {"calc_py311.prof", "grow_mem_py311.prof"};
    for (size_t k = 0; k < 2; k++) {
        size_t len;
        unsigned char *d = vmp_test_read_file(vmp_fixture(names[k]), &len);
        REQUIRE(d);
        vmp_error err;
        vmp_profile *whole = vmp_profile_read_memory(d, len, NULL, &err);
        REQUIRE(whole);
        vmp_facts f;
        vmp_profile_facts(whole, &f);
        size_t funcs, mem = vmp_profile_memory(whole);
        vmp_profile_funcs(whole, &funcs);
        CHECK(f.n_samples > 10);
        CHECK(mem >= f.n_samples * sizeof(uint32_t) + funcs * sizeof(vmp_func) +
                         vmp_profile_stack_count(whole) * 2 * sizeof(uint64_t));
        if (f.memory) /* an RSS (8 bytes) per sample of --mem */
            CHECK(mem >= f.n_samples * (sizeof(uint32_t) + sizeof(uint64_t)));
        CHECK(k == 0 || f.memory);
        vmp_profile *pushed = push_in_pieces(d, len, 4096, &err);
        REQUIRE(pushed);
        /* capacities grow the same way whatever the pieces */
        CHECK(vmp_profile_memory(pushed) == mem);
        vmp_profile_free(pushed);
        vmp_profile_free(whole);
        free(d);
    }
}
