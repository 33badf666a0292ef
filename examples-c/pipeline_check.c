/* Exercises the embedded pipeline through the C ABI: 10,000 points over 1,000 metrics,
 * fetched from the cache before carbon_flush and from the whisper files after it, every value
 * checked. Prints "base=<first timestamp>" so tests/c_examples.rs can cross-check the files
 * with python whisper. Usage: pipeline_check DATA_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "carbonlite.h"

#define METRICS 1000
#define POINTS 10
#define STEP 60

static double expected(int m, int p) { return m * 100.0 + p + 0.25; }

static int check_all(carbon *c, int64_t base, const char *phase) {
    int bad = 0;
    char name[64];
    for (int m = 0; m < METRICS; m++) {
        snprintf(name, sizeof name, "check.m%04d.value", m);
        whisper_series s;
        int rc = whisper_fetch(c, name, base - STEP, 0, &s);
        if (rc != 0) {
            fprintf(stderr, "%s: fetch %s: %d %s\n", phase, name, rc, carbon_last_error());
            return 1;
        }
        if (s.step != STEP) {
            fprintf(stderr, "%s: %s step %lld\n", phase, name, (long long)s.step);
            bad++;
        }
        for (int p = 0; p < POINTS; p++) {
            int64_t ts = base + (int64_t)p * STEP;
            int64_t i = (ts - s.from) / s.step;
            if (i < 0 || (size_t)i >= s.len || s.values[i] != expected(m, p)) {
                if (bad++ < 5)
                    fprintf(stderr, "%s: %s@%lld: got %g want %g\n", phase, name, (long long)ts,
                            (i >= 0 && (size_t)i < s.len) ? s.values[i] : NAN, expected(m, p));
            }
        }
        whisper_series_free(&s);
        whisper_series_free(&s); /* freeing twice is documented as harmless */
    }
    return bad != 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    carbon *c = carbon_open(argv[1], "[whisper]\nworkers = 2\n");
    if (!c) {
        fprintf(stderr, "carbon_open: %s\n", carbon_last_error());
        return 1;
    }
    int64_t now = (int64_t)time(NULL);
    int64_t base = (now / STEP) * STEP - (POINTS - 1) * STEP;
    char line[128];
    int64_t accepted = 0;
    for (int p = 0; p < POINTS; p++) {
        for (int m = 0; m < METRICS; m++) {
            if (m % 2 == 0) { /* half through the line protocol, half through carbon_add */
                int n = snprintf(line, sizeof line, "check.m%04d.value %.17g %lld\n", m, expected(m, p),
                                 (long long)(base + (int64_t)p * STEP));
                int64_t r = carbon_add_line(c, line, (size_t)n);
                if (r != 1) {
                    fprintf(stderr, "carbon_add_line: %lld %s\n", (long long)r, carbon_last_error());
                    return 1;
                }
                accepted += r;
            } else {
                char name[64];
                snprintf(name, sizeof name, "check.m%04d.value", m);
                int r = carbon_add(c, name, expected(m, p), base + (int64_t)p * STEP);
                if (r != 0) {
                    fprintf(stderr, "carbon_add: %d %s\n", r, carbon_last_error());
                    return 1;
                }
                accepted++;
            }
        }
    }
    if (check_all(c, base, "before flush")) return 1;
    if (carbon_flush(c) != 0) {
        fprintf(stderr, "carbon_flush: %s\n", carbon_last_error());
        return 1;
    }
    carbon_counters st;
    if (carbon_stats(c, &st) != 0 || st.metrics_received != (uint64_t)accepted) {
        fprintf(stderr, "stats: received %llu, accepted %lld\n", (unsigned long long)st.metrics_received,
                (long long)accepted);
        return 1;
    }
    if (st.cache_size != 0 || st.committed_points != (uint64_t)accepted) {
        fprintf(stderr, "after flush: cache %llu committed %llu\n", (unsigned long long)st.cache_size,
                (unsigned long long)st.committed_points);
        return 1;
    }
    /* A host built against an older header has a shorter struct: the sized call fills what
     * it has and writes nothing past it (here: two counters, then a guard). */
    struct {
        uint64_t metrics_received, parse_errors;
        unsigned char guard[16];
    } old;
    memset(&old, 0xAA, sizeof old);
    int full = carbon_stats_sized(c, (carbon_counters *)(void *)&old, 2 * sizeof(uint64_t));
    if (full != (int)sizeof(carbon_counters) || old.metrics_received != (uint64_t)accepted ||
        old.guard[0] != 0xAA || old.guard[15] != 0xAA) {
        fprintf(stderr, "carbon_stats_sized: %d, received %llu\n", full, (unsigned long long)old.metrics_received);
        return 1;
    }
    if (check_all(c, base, "after flush")) return 1;
    /* Bad input: an error code and text, never a crash; the batch goes on past bad lines. */
    const char *mixed = "ok.one 1 -1\nnot a valid line at all\n../escape 1 1\nok.two 2 -1\n";
    if (carbon_add_line(c, mixed, strlen(mixed)) != 2 || strlen(carbon_last_error()) == 0) {
        fprintf(stderr, "mixed batch: %s\n", carbon_last_error());
        return 1;
    }
    if (carbon_add(c, NULL, 1, 1) != CARBON_EINVAL) return 1;
    carbon_close(c);
    carbon_close(NULL);
    printf("base=%lld metrics=%d points=%d\n", (long long)base, METRICS, POINTS);
    return 0;
}
