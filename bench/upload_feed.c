/*
 * upload_feed.c - the decoder (and the compact writer) fed as vmprof-server
 * feeds them during an upload, to tell what makes the decode dearer there
 * than alone: FILE in pieces of PIECE bytes (libmicrohttpd gives the 1M
 * profile's body in 262,005-byte pieces), each pushed into the decoder and
 * the compact writer (to a sink that drops it), where
 *   mem         the pieces lie in the file read into memory (compact_bench's way)
 *   copy        each piece is first copied into a 512 KiB buffer, as a
 *               receiving thread's buffer holds it
 *   sock-apart  a child process sends the file over loopback TCP (write() of
 *               1 MiB, as the bench's client) and each piece is received into
 *               that buffer; sender and receiver pinned to different cores
 *   sock-same   the same, both pinned to one core (the scheduler's wake-up
 *               affinity puts a loopback client and server there often)
 * RUNS rounds, modes interleaved; per mode the medians of the CPU time of the
 * pushes (the receiving thread's clock, kernel time charged to it included)
 * and of the receiving (recv or copy).
 *
 *   upload_feed FILE [RUNS [PIECE]]     -> one JSON line
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmp_compact.h"
#include "vmprof.h"

#define BUFFER (512 * 1024)
#define MODES 4
static const char *const mode_name[MODES] = {"mem", "copy", "sock-apart", "sock-same"};

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "upload_feed: %s\n", what);
    exit(1);
}

static int drop(void *ctx, const void *data, size_t n)
{
    (void)ctx, (void)data, (void)n;
    return 0;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* A child sending file[0, n) to a loopback port it connects to; returns the
 * accepted socket. */
static int start_sender(const unsigned char *file, size_t n, int cpu, pid_t *child)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (l < 0 || bind(l, (void *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (void *)&a, &al) < 0)
        die("cannot listen on 127.0.0.1");
    *child = fork();
    if (*child == 0) {
        pin(cpu);
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (void *)&a, sizeof a) < 0)
            _exit(1);
        for (size_t at = 0; at < n;) {
            size_t k = n - at < (1u << 20) ? n - at : (1u << 20);
            ssize_t w = write(c, file + at, k);
            if (w <= 0)
                _exit(1);
            at += (size_t)w;
        }
        close(c);
        _exit(0);
    }
    int s = accept(l, NULL, NULL);
    close(l);
    if (s < 0)
        die("accept failed");
    return s;
}

static void feed(int mode, const unsigned char *file, size_t n, size_t piece, double *push,
                 double *receive)
{
    static unsigned char buffer[BUFFER];
    pid_t child = 0;
    int s = -1;
    pin(0);
    if (mode >= 2)
        s = start_sender(file, n, mode == 2 ? 1 : 0, &child);
    vmp_error err;
    vmp_decoder *d = vmp_decoder_new(NULL, &err);
    vmp_compact_writer *w = d ? vmp_compact_writer_new(d, drop, NULL) : NULL;
    if (!w)
        die("out of memory");
    *push = *receive = 0;
    for (size_t at = 0;;) {
        const unsigned char *p;
        size_t k;
        double t0 = cpu_now();
        if (s >= 0) {
            for (k = 0; k < piece;) {
                ssize_t r = recv(s, buffer + k, piece - k, 0);
                if (r < 0)
                    die("recv failed");
                if (r == 0)
                    break;
                k += (size_t)r;
            }
            p = buffer;
        } else {
            k = n - at < piece ? n - at : piece;
            p = file + at;
            if (mode == 1)
                p = memcpy(buffer, file + at, k);
            at += k;
        }
        double t1 = cpu_now();
        *receive += t1 - t0;
        if (!k)
            break;
        if (vmp_decoder_push(d, p, k, &err) < 0)
            die(err.message);
        if (vmp_compact_write(w, p, k) < 0)
            die("the compact writer failed");
        *push += cpu_now() - t1;
    }
    double t0 = cpu_now();
    vmp_profile *prof = vmp_decoder_finish(d, &err);
    if (!prof || vmp_compact_end(w) < 0)
        die(prof ? "the compact writer failed at its end" : err.message);
    *push += cpu_now() - t0;
    vmp_profile_free(prof);
    if (s >= 0)
        close(s);
    if (child > 0)
        waitpid(child, NULL, 0);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: upload_feed FILE [RUNS [PIECE]]\n");
        return 2;
    }
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    size_t piece = argc > 3 ? (size_t)atol(argv[3]) : 262005;
    if (runs < 1 || runs > 100)
        runs = 5;
    if (piece < 1 || piece > BUFFER)
        die("PIECE is 1 to 524288 bytes");
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die("cannot open the file");
    size_t n = (size_t)st.st_size;
    unsigned char *file = malloc(n ? n : 1);
    for (size_t got = 0; got < n;) {
        ssize_t k = read(fd, file + got, n - got);
        if (k <= 0)
            die("cannot read the file");
        got += (size_t)k;
    }
    close(fd);
    double push[MODES][100], receive[MODES][100];
    for (int i = 0; i < runs; i++)
        for (int m = 0; m < MODES; m++)
            feed(m, file, n, piece, &push[m][i], &receive[m][i]);
    printf("{\"file_bytes\": %zu, \"piece\": %zu, \"runs\": %d", n, piece, runs);
    for (int m = 0; m < MODES; m++)
        printf(", \"%s\": {\"push_cpu\": %.4f, \"receive_cpu\": %.4f}", mode_name[m],
               median(push[m], runs), median(receive[m], runs));
    printf("}\n");
    free(file);
    return 0;
}
