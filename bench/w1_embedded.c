/* W1 as the issue defines it for the embedded engine: a host program links libcarbonlite,
 * feeds a loadgen workload through carbon_add_line, and the clock runs from the first add
 * until carbon_flush returns (every accepted point is then in its whisper file).
 *
 *   w1_embedded LINES_FILE DATA_DIR SCHEMAS AGGREGATION SPARSE(true|false) [WORKERS]
 *
 * LINES_FILE is `loadgen --out` output (the exact lines the TCP peers receive). The whole file
 * is read before the clock starts, as loadgen pre-generates its payload. It is added in
 * 64 KiB pieces cut at line ends, loadgen's write size. Prints one JSON object: lines, points
 * accepted, ingest_secs (last add returned), persist_secs (flush returned), cpu_secs
 * (user+sys of the whole process over the timed window), hwm_kb. Exit status 1 on any error.
 * The caller verifies the files afterwards with the harness's wsp_check.py.
 * tests/c_examples.rs builds and runs it on a small workload, so it cannot rot. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "carbonlite.h"

static double now_secs(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_secs(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static long hwm_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s LINES_FILE DATA_DIR SCHEMAS AGGREGATION SPARSE [WORKERS]\n", argv[0]);
        return 2;
    }
    const char *workers = argc > 6 ? argv[6] : "2";
    FILE *in = fopen(argv[1], "rb");
    if (!in) { perror(argv[1]); return 1; }
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    rewind(in);
    char *buf = malloc((size_t)size);
    if (!buf || fread(buf, 1, (size_t)size, in) != (size_t)size) { perror("read"); return 1; }
    fclose(in);
    long lines = 0;
    for (long i = 0; i < size; i++) lines += buf[i] == '\n';

    char options[4096];
    snprintf(options, sizeof options,
             "[common]\nmetric-interval = \"0\"\n"
             "[whisper]\nschemas-file = \"%s\"\naggregation-file = \"%s\"\nworkers = %s\nsparse-create = %s\n"
             "[cache]\nmax-size = 0\n",
             argv[3], argv[4], workers, argv[5]);
    carbon *c = carbon_open(argv[2], options);
    if (!c) { fprintf(stderr, "carbon_open: %s\n", carbon_last_error()); return 1; }

    const long piece = 65536;
    int64_t accepted = 0;
    double cpu0 = cpu_secs(), t0 = now_secs();
    for (long off = 0; off < size;) {
        long end = off + piece < size ? off + piece : size;
        while (end < size && buf[end - 1] != '\n') end++;
        int64_t n = carbon_add_line(c, buf + off, (size_t)(end - off));
        if (n < 0) { fprintf(stderr, "carbon_add_line: %s\n", carbon_last_error()); return 1; }
        accepted += n;
        off = end;
    }
    double t_ingest = now_secs();
    if (carbon_flush(c) != 0) { fprintf(stderr, "carbon_flush: %s\n", carbon_last_error()); return 1; }
    double t_persist = now_secs(), cpu1 = cpu_secs();

    carbon_counters st;
    int rc = carbon_stats(c, &st);
    carbon_close(c);
    if (rc != 0) { fprintf(stderr, "carbon_stats failed\n"); return 1; }
    if (accepted != lines || st.committed_points != (uint64_t)lines) {
        fprintf(stderr, "accepted %lld and wrote %llu of %ld lines: %s\n", (long long)accepted,
                (unsigned long long)st.committed_points, lines, carbon_last_error());
        return 1;
    }
    printf("{\"lines\": %ld, \"accepted\": %lld, \"created\": %llu, \"committed\": %llu, \"updates\": %llu, "
           "\"ingest_secs\": %.6f, \"persist_secs\": %.6f, \"cpu_secs\": %.3f, \"hwm_kb\": %ld}\n",
           lines, (long long)accepted, (unsigned long long)st.created, (unsigned long long)st.committed_points,
           (unsigned long long)st.update_operations,
           t_ingest - t0, t_persist - t0, cpu1 - cpu0, hwm_kb());
    free(buf);
    return 0;
}
