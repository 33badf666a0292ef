/* A small system collector on top of carbonlite: samples /proc/stat, /proc/meminfo and
 * /proc/loadavg every interval into whisper files, as collectd or diamond would feed carbon,
 * but with the storage in-process. SIGINT/SIGTERM stop it after writing everything out.
 *
 * usage: collector [--data DIR] [--interval SECONDS] [--seconds N | --once]
 *                  [--prefix PREFIX] [--options TOML]
 *
 * Metrics (PREFIX defaults to "collector.<hostname>"):
 *   PREFIX.cpu.{user,nice,system,idle,iowait,irq,softirq,steal}  percent of the interval
 *   PREFIX.cpu.context_switches, PREFIX.cpu.forks                 per second
 *   PREFIX.memory.{total,free,available,buffers,cached,swap_total,swap_free,dirty}  bytes
 *   PREFIX.load.{1min,5min,15min}, PREFIX.procs.{running,total}
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "carbonlite.h"

#define CPU_STATES 8
static const char *const cpu_names[CPU_STATES] = {"user", "nice",    "system", "idle",
                                                  "iowait", "irq", "softirq", "steal"};

struct cpu_sample {
    unsigned long long jiffies[CPU_STATES];
    unsigned long long ctxt, forks;
    struct timespec at;
    int ok;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Lines for one sample accumulate here and go to carbon_add_line in one call. */
struct batch {
    char buf[8192];
    size_t len;
    const char *prefix;
    long long ts;
    int count;
};

static void emit(struct batch *b, const char *name, double value) {
    int n = snprintf(b->buf + b->len, sizeof b->buf - b->len, "%s.%s %.15g %lld\n", b->prefix, name,
                     value, b->ts);
    if (n > 0 && (size_t)n < sizeof b->buf - b->len) {
        b->len += (size_t)n;
        b->count++;
    }
}

static int read_cpu(struct cpu_sample *s) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[1024];
    memset(s, 0, sizeof *s);
    while (fgets(line, sizeof line, f)) {
        unsigned long long *j = s->jiffies;
        if (strncmp(line, "cpu ", 4) == 0) {
            if (sscanf(line + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &j[0], &j[1], &j[2],
                       &j[3], &j[4], &j[5], &j[6], &j[7]) >= 4)
                s->ok = 1;
        } else if (strncmp(line, "ctxt ", 5) == 0) {
            s->ctxt = strtoull(line + 5, NULL, 10);
        } else if (strncmp(line, "processes ", 10) == 0) {
            s->forks = strtoull(line + 10, NULL, 10);
        }
    }
    fclose(f);
    clock_gettime(CLOCK_MONOTONIC, &s->at);
    return s->ok ? 0 : -1;
}

static void emit_cpu(struct batch *b, const struct cpu_sample *prev, const struct cpu_sample *cur) {
    unsigned long long total = 0, d[CPU_STATES];
    for (int i = 0; i < CPU_STATES; i++) {
        /* Counters can only grow; a smaller value means a wrap or a hot-plugged CPU. */
        d[i] = cur->jiffies[i] >= prev->jiffies[i] ? cur->jiffies[i] - prev->jiffies[i] : 0;
        total += d[i];
    }
    char name[64];
    if (total > 0) {
        for (int i = 0; i < CPU_STATES; i++) {
            snprintf(name, sizeof name, "cpu.%s", cpu_names[i]);
            emit(b, name, 100.0 * (double)d[i] / (double)total);
        }
    }
    double secs = (double)(cur->at.tv_sec - prev->at.tv_sec) +
                  (double)(cur->at.tv_nsec - prev->at.tv_nsec) / 1e9;
    if (secs > 0 && cur->ctxt >= prev->ctxt && cur->forks >= prev->forks) {
        emit(b, "cpu.context_switches", (double)(cur->ctxt - prev->ctxt) / secs);
        emit(b, "cpu.forks", (double)(cur->forks - prev->forks) / secs);
    }
}

static void emit_meminfo(struct batch *b) {
    static const struct { const char *key, *name; } keys[] = {
        {"MemTotal:", "memory.total"},       {"MemFree:", "memory.free"},
        {"MemAvailable:", "memory.available"}, {"Buffers:", "memory.buffers"},
        {"Cached:", "memory.cached"},        {"SwapTotal:", "memory.swap_total"},
        {"SwapFree:", "memory.swap_free"},   {"Dirty:", "memory.dirty"},
    };
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return;
    char line[256], key[64];
    unsigned long long kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%63s %llu", key, &kb) != 2) continue;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (strcmp(key, keys[i].key) == 0) emit(b, keys[i].name, (double)kb * 1024.0);
    }
    fclose(f);
}

static void emit_loadavg(struct batch *b) {
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return;
    double l1, l5, l15;
    unsigned running, total;
    if (fscanf(f, "%lf %lf %lf %u/%u", &l1, &l5, &l15, &running, &total) == 5) {
        emit(b, "load.1min", l1);
        emit(b, "load.5min", l5);
        emit(b, "load.15min", l15);
        emit(b, "procs.running", running);
        emit(b, "procs.total", total);
    }
    fclose(f);
}

/* Sleeps up to `secs`, returning early when a signal asks to stop. */
static void nap(double secs) {
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    while (!stop_requested && nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Sleeps until `start + offset` on the monotonic clock (sampling on a fixed grid, without
 * drift), returning early when a signal asks to stop. */
static void sleep_until(const struct timespec *start, double offset) {
    struct timespec at = *start;
    long long ns = (long long)(offset * 1e9) + at.tv_nsec;
    at.tv_sec += (time_t)(ns / 1000000000LL);
    at.tv_nsec = (long)(ns % 1000000000LL);
    while (!stop_requested && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR) {
    }
}

static void usage(void) {
    fprintf(stderr, "usage: collector [--data DIR] [--interval SECONDS] [--seconds N | --once] "
                    "[--prefix PREFIX] [--options TOML]\n");
}

int main(int argc, char **argv) {
    const char *data = "./data", *options = NULL;
    char prefix[256] = "";
    double interval = 1.0, seconds = -1; /* -1: until a signal */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--once") == 0) { seconds = 0; continue; }
        if (!v) { usage(); return 2; }
        if (strcmp(a, "--data") == 0) data = v;
        else if (strcmp(a, "--interval") == 0) interval = atof(v);
        else if (strcmp(a, "--seconds") == 0) seconds = atof(v);
        else if (strcmp(a, "--prefix") == 0) snprintf(prefix, sizeof prefix, "%s", v);
        else if (strcmp(a, "--options") == 0) options = v;
        else { usage(); return 2; }
        i++;
    }
    if (interval <= 0) { usage(); return 2; }
    if (!prefix[0]) {
        char host[128] = "localhost";
        gethostname(host, sizeof host - 1);
        for (char *p = host; *p; p++) /* a dot would split the hostname into path levels */
            if (*p == '.') *p = '_';
        snprintf(prefix, sizeof prefix, "collector.%s", host);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: nanosleep returns at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    carbon *c = carbon_open(data, options);
    if (!c) {
        fprintf(stderr, "collector: carbon_open(%s): %s\n", data, carbon_last_error());
        return 1;
    }

    struct cpu_sample prev, cur;
    if (read_cpu(&prev) != 0) fprintf(stderr, "collector: /proc/stat unreadable, no cpu metrics\n");
    if (seconds == 0) nap(0.25); /* --once still needs two /proc/stat readings for cpu % */

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long samples = 0, points = 0;
    int status = 0;
    while (!stop_requested) {
        struct batch b = {.len = 0, .prefix = prefix, .ts = (long long)time(NULL), .count = 0};
        if (read_cpu(&cur) == 0 && prev.ok) emit_cpu(&b, &prev, &cur);
        prev = cur;
        emit_meminfo(&b);
        emit_loadavg(&b);
        int64_t n = carbon_add_line(c, b.buf, b.len);
        if (n < 0) {
            fprintf(stderr, "collector: %s: %s\n", carbon_strerror((int)n), carbon_last_error());
            if (n != CARBON_EFULL) { status = 1; break; }
        } else {
            points += n;
        }
        samples++;
        if (seconds == 0) break;
        /* Sample k is taken at start + k*interval; --seconds N takes those with k*interval <= N. */
        double next = (double)samples * interval;
        if (seconds > 0 && next > seconds + 1e-9) break;
        sleep_until(&start, next);
    }

    int rc = carbon_flush(c);
    if (rc != 0) {
        fprintf(stderr, "collector: flush: %s\n", carbon_last_error());
        status = 1;
    }
    carbon_counters st;
    if (carbon_stats(c, &st) == 0)
        printf("collector: %ld samples, %ld points, %llu written, %llu files created%s\n", samples,
               points, (unsigned long long)st.committed_points, (unsigned long long)st.created,
               stop_requested ? " (stopped by signal)" : "");
    carbon_close(c);
    return status;
}
