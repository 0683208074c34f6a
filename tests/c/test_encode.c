/* test_encode.c - the encoder writes the layout the original tools write. */
#include <stdint.h>

#include "vmp_encode.h"
#include "vmp_test.h"

VMP_TEST(encode_static_header_is_five_words_with_marker)
{
    unsigned char mem[64];
    vmp_wbuf b;
    uint64_t w[5];
    vmp_wbuf_init_words(&b, mem, sizeof mem, 8);
    REQUIRE(vmp_enc_static_header(&b, 990) == 0);
    CHECK(b.len == 40);
    memcpy(w, mem, sizeof w);
    CHECK(w[0] == 0 && w[1] == 3 && w[2] == 0 && w[3] == 990 && w[4] == 0);
}

VMP_TEST(encode_header_version_is_big_endian)
{
    unsigned char mem[64];
    vmp_wbuf b;
    vmp_wbuf_init(&b, mem, sizeof mem);
    REQUIRE(vmp_enc_header(&b, VMP_MODE_LINES, "cpython") == 0);
    CHECK(b.len == 5 + 7);
    CHECK(mem[0] == VMP_TAG_HEADER && mem[1] == 0 && mem[2] == VMP_FORMAT_VERSION);
    CHECK(mem[3] == VMP_MODE_LINES && mem[4] == 7 && memcmp(mem + 5, "cpython", 7) == 0);
}

VMP_TEST(encode_record_that_does_not_fit_leaves_buffer_unchanged)
{
    unsigned char mem[48]; /* room for a depth-2 stack (41 bytes), not depth 8 */
    uint64_t stack[8] = {2, 4, 6, 8, 10, 12, 14, 16};
    vmp_wbuf b;
    vmp_wbuf_init_words(&b, mem, sizeof mem, 8);
    CHECK(vmp_enc_stack(&b, stack, 8, 99, 0, 0) == -1);
    CHECK(b.len == 0);
    CHECK(vmp_enc_stack(&b, stack, 2, 99, 0, 0) == 0);
    CHECK(b.len == vmp_enc_stack_size(&b, 2, 0));
}

VMP_TEST(encode_four_byte_words)
{
    unsigned char mem[64];
    uint32_t w[5];
    vmp_wbuf b;
    CHECK(vmp_wbuf_init_words(&b, mem, sizeof mem, 5) == -1);
    REQUIRE(vmp_wbuf_init_words(&b, mem, sizeof mem, 4) == 0);
    REQUIRE(vmp_enc_static_header(&b, 1000) == 0);
    CHECK(b.len == 20);
    memcpy(w, mem, sizeof w);
    CHECK(w[1] == 3 && w[3] == 1000);
}
