// The README's C++ example: include/carbonlite.hpp, RAII and exceptions.
#include <cstdio>
#include <ctime>
#include "carbonlite.hpp"

int main(int argc, char **argv) try {
    carbonlite::Carbon c(argc > 1 ? argv[1] : "./data", "[whisper]\nworkers = 2\n");
    std::int64_t now = std::time(nullptr);
    c.add("app.requests", 42, now - 60);                    // carbonlite::now = the current time
    c.add_lines("app.errors 3 " + std::to_string(now) + "\n");
    c.flush();                                               // every point is in its .wsp file
    carbonlite::Series s = c.fetch("app.requests", now - 300); // NaN marks a gap
    std::printf("app.requests %g (step %lld)\n", s.values[3], (long long)s.step);
    return 0;                                                // ~Carbon closes: flush + stop
} catch (const carbonlite::Error &e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
}
