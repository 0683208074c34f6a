/* jitlog_seeds.c - writes the fuzzers' seed logs: the sample log (every mark)
 * in every version and word size, into the folder given. */
#include <stdio.h>

#include "jitlog_sample.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: jitlog_seeds DIR\n");
        return 2;
    }
    for (int version = 1; version <= 4; version++)
        for (int word = 4; word <= 8; word += 4) {
            sample_log s;
            sample_build(&s, version, word);
            char path[4096];
            snprintf(path, sizeof path, "%s/sample_v%d_w%d.jitlog", argv[1], version, word);
            FILE *out = fopen(path, "wb");
            if (!out || fwrite(s.w.buf, 1, s.w.len, out) != s.w.len || fclose(out) != 0) {
                perror(path);
                return 1;
            }
            vjl_writer_free(&s.w);
        }
    return 0;
}
