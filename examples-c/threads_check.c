/* Many host threads on one handle through the C ABI. ADDERS threads add their own metrics
 * with carbon_add_line, many lines a call; FETCHERS threads read random metrics meanwhile with
 * whisper_fetch (a value is missing or exactly the one added, never another); one thread calls
 * carbon_flush over and over. Afterwards every point is in its file: every value is checked,
 * and the counters say each point was received once and written once (a point written twice
 * would count twice). Usage: threads_check DATA_DIR [POINTS_PER_METRIC]; the valgrind run of
 * tests/c_examples.rs passes fewer points. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "carbonlite.h"

#define ADDERS 8
#define FETCHERS 2
#define METRICS 50 /* per adder */
#define STEP 60    /* carbon's default schema: 60s:1d */

static carbon *c;
static int points = 20;
static int64_t base;
static atomic_int adders_left = ADDERS;
static atomic_int failures;
static atomic_long fetched_values;

static double expected(int a, int m, int p) { return a * 1e6 + m * 1e3 + p + 0.5; }

static void name_of(char *out, size_t size, int a, int m) { snprintf(out, size, "threads.a%d.m%02d", a, m); }

static void fail(const char *what, const char *name) {
    if (atomic_fetch_add(&failures, 1) < 10) fprintf(stderr, "%s %s: %s\n", what, name, carbon_last_error());
}

static void *adder(void *arg) {
    int a = (int)(intptr_t)arg;
    char buf[METRICS * 64], name[32];
    for (int p = 0; p < points; p++) {
        size_t len = 0;
        for (int m = 0; m < METRICS; m++) {
            name_of(name, sizeof name, a, m);
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s %.17g %lld\n", name, expected(a, m, p),
                                    (long long)(base + (int64_t)p * STEP));
        }
        if (carbon_add_line(c, buf, len) != METRICS) fail("carbon_add_line", "");
    }
    atomic_fetch_sub(&adders_left, 1);
    return NULL;
}

/* Checks one metric's window: `complete` demands every point, else missing ones are fine. */
static void check_metric(int a, int m, int complete) {
    char name[32];
    name_of(name, sizeof name, a, m);
    whisper_series s;
    int rc = whisper_fetch(c, name, base - STEP, 0, &s);
    if (rc == CARBON_ENOTFOUND && !complete) return; /* not added yet */
    if (rc != 0) {
        fail("whisper_fetch", name);
        return;
    }
    int seen = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (isnan(s.values[i])) continue;
        int64_t p = (s.from + (int64_t)i * s.step - base) / STEP;
        if (p < 0 || p >= points || s.values[i] != expected(a, m, (int)p)) fail("wrong value in", name);
        seen++;
    }
    if (complete && seen != points) fail("points missing in", name);
    atomic_fetch_add(&fetched_values, seen);
    whisper_series_free(&s);
}

static void *fetcher(void *arg) {
    uint32_t x = (uint32_t)(uintptr_t)arg * 2654435761u + 1;
    while (atomic_load(&adders_left) > 0) {
        x = x * 1664525u + 1013904223u; /* an LCG: reproducible, and no shared state */
        check_metric((int)(x >> 8) % ADDERS, (int)(x >> 16) % METRICS, 0);
    }
    return NULL;
}

static void *flusher(void *arg) {
    (void)arg;
    while (atomic_load(&adders_left) > 0)
        if (carbon_flush(c) != 0) fail("carbon_flush", "");
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR [POINTS_PER_METRIC]\n", argv[0]);
        return 2;
    }
    if (argc > 2) points = atoi(argv[2]);
    if (points < 1 || points > 1000) return 2;
    c = carbon_open(argv[1], "[whisper]\nworkers = 2\n");
    if (!c) {
        fprintf(stderr, "carbon_open: %s\n", carbon_last_error());
        return 1;
    }
    base = ((int64_t)time(NULL) / STEP) * STEP - (int64_t)(points - 1) * STEP;
    pthread_t threads[ADDERS + FETCHERS + 1];
    int n = 0;
    for (int a = 0; a < ADDERS; a++) pthread_create(&threads[n++], NULL, adder, (void *)(intptr_t)a);
    for (int f = 0; f < FETCHERS; f++) pthread_create(&threads[n++], NULL, fetcher, (void *)(intptr_t)(f + 1));
    pthread_create(&threads[n++], NULL, flusher, NULL);
    for (int i = 0; i < n; i++) pthread_join(threads[i], NULL);
    long during = atomic_load(&fetched_values);
    if (carbon_flush(c) != 0) fail("final carbon_flush", "");
    for (int a = 0; a < ADDERS; a++)
        for (int m = 0; m < METRICS; m++) check_metric(a, m, 1);
    carbon_counters st;
    uint64_t total = (uint64_t)ADDERS * METRICS * (uint64_t)points;
    if (carbon_stats(c, &st) != 0 || st.metrics_received != total || st.committed_points != total ||
        st.cache_size != 0) {
        fprintf(stderr, "counters: received %llu committed %llu cached %llu, want %llu\n",
                (unsigned long long)st.metrics_received, (unsigned long long)st.committed_points,
                (unsigned long long)st.cache_size, (unsigned long long)total);
        atomic_fetch_add(&failures, 1);
    }
    carbon_close(c);
    if (atomic_load(&failures) != 0) return 1;
    printf("ok: %llu points from %d threads; %ld values read while they ran\n", (unsigned long long)total,
           ADDERS, during);
    return 0;
}
