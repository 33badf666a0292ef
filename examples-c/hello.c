/* The smallest carbonlite program (the README's C example): store, flush, read back. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "carbonlite.h"

int main(int argc, char **argv) {
    carbon *c = carbon_open(argc > 1 ? argv[1] : "./data", NULL); /* NULL: default options */
    if (!c) { fprintf(stderr, "carbon_open: %s\n", carbon_last_error()); return 1; }
    int64_t now = (int64_t)time(NULL);
    char lines[128];
    snprintf(lines, sizeof lines, "hello.world 42 %lld\nhello.other 7 %lld\n", (long long)now, (long long)now);
    if (carbon_add_line(c, lines, strlen(lines)) != 2 || carbon_flush(c) != 0) {
        fprintf(stderr, "add/flush: %s\n", carbon_last_error()); carbon_close(c); return 1;
    }
    whisper_series s;
    if (whisper_fetch(c, "hello.world", now - 120, now, &s) != 0) {
        fprintf(stderr, "fetch: %s\n", carbon_last_error()); carbon_close(c); return 1;
    }
    printf("hello.world = %g (%zu values, step %lld)\n", s.values[s.len - 1], s.len, (long long)s.step);
    whisper_series_free(&s);
    carbon_close(c); /* flushes, stops the threads, frees */
    return 0;
}
