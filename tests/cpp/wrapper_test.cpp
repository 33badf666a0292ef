// Tests include/carbonlite.hpp: RAII, exceptions per code, Series, moves, threads.
// Built from two translation units (this one and second_tu.cpp). Usage: wrapper_test DATA_DIR
#include "carbonlite.hpp"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <vector>

std::size_t add_from_second_tu(carbonlite::Carbon &c, const std::string &prefix, std::int64_t ts);
std::string version_from_second_tu();

static int failures = 0, checks = 0;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
        }                                                                                          \
    } while (0)

template <class E, class F> static bool throws(F f, int code) {
    try {
        f();
    } catch (const E &e) {
        if (e.code() != code) std::fprintf(stderr, "code %d, want %d: %s\n", e.code(), code, e.what());
        return e.code() == code && std::string(e.what()).size() > 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "wrong exception: %s\n", e.what());
        return false;
    }
    return false;
}

static bool exists(const std::string &p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: wrapper_test DATA_DIR\n");
        return 2;
    }
    const std::string dir = argv[1];
    const std::int64_t now = std::time(nullptr);
    CHECK(version_from_second_tu() == carbonlite::version());
    CHECK(!carbonlite::version().empty());
    {
        carbonlite::Carbon c(dir, "[whisper]\nworkers = 2\n");
        c.add("cpp.a", 1.5, now - 60);
        CHECK(add_from_second_tu(c, "cpp.tu2", now) == 10);
        auto r = c.add_lines("cpp.b 2 " + std::to_string(now) + "\nnot a line\n");
        CHECK(r.accepted == 1 && r.rejected == 1 && r.refused_full == 0);

        // Several threads on one handle.
        std::vector<std::thread> ts;
        for (int t = 0; t < 4; t++)
            ts.emplace_back([&c, t, now] {
                for (int i = 0; i < 100; i++)
                    c.add("cpp.thr.t" + std::to_string(t), t * 1000 + i, now - 60 * i);
            });
        for (auto &t : ts) t.join();
        c.flush();
        CHECK(exists(dir + "/cpp/a.wsp") && exists(dir + "/cpp/tu2/m9.wsp"));

        carbonlite::Series s = c.fetch("cpp.a", now - 300);
        CHECK(s.step == 60 && s.values.size() == 5 && s.until - s.from == 300);
        CHECK(s.values[3] == 1.5 && std::isnan(s.values[0]));
        for (int t = 0; t < 4; t++) {
            auto st = c.fetch("cpp.thr.t" + std::to_string(t), now - 86400 + 60);
            bool all = true;
            for (int i = 0; i < 100; i++) {
                std::int64_t at = now - 60 * i;
                all = all && st.values[(at - at % 60 - st.from) / st.step] == t * 1000 + i;
            }
            CHECK(all);
        }
        auto stats = c.stats();
        CHECK(stats.metrics_received == 1 + 10 + 1 + 400 && stats.parse_errors == 1);

        // find: globs over files and cache, branches and leaves, sorted.
        auto found = c.find("cpp.thr.*");
        CHECK(found.size() == 4 && found[0].first == "cpp.thr.t0" && found[0].second);
        auto branches = c.find("cpp.{thr,tu2}");
        CHECK(branches.size() == 2 && branches[0].first == "cpp.thr" && !branches[0].second);

        // Errors become exceptions of the code's class, carrying the library's text.
        CHECK(throws<carbonlite::NotFound>([&] { c.fetch("no.such.metric", now - 60); }, CARBON_ENOTFOUND));
        CHECK(throws<carbonlite::InvalidArgument>([&] { c.add("x.nan", NAN); }, CARBON_EINVAL));
        CHECK(throws<carbonlite::NameError>([&] { c.add("a/../../x", 1); }, CARBON_ENAME));
        CHECK(throws<carbonlite::InvalidArgument>([&] { c.add(std::string("a\0b", 3), 1); }, CARBON_EINVAL));
        CHECK(throws<carbonlite::OutOfRange>([&] { c.fetch("cpp.a", now, now - 100); }, CARBON_ERANGE));
        CHECK(throws<carbonlite::Error>([&] { carbonlite::Carbon bad(dir, "[whisper]\nnope = 1\n"); }, 0));

        // Moves hand the handle over; the moved-from object is closed.
        carbonlite::Carbon moved = std::move(c);
        CHECK(c.closed() && !moved.closed());
        CHECK(throws<carbonlite::Closed>([&] { c.add("cpp.a", 1); }, CARBON_ECLOSED));
        moved.add("cpp.moved", 3, now);
        moved.close();
        moved.close();  // idempotent
        CHECK(exists(dir + "/cpp/moved.wsp"));  // close flushed
        CHECK(throws<carbonlite::Closed>([&] { moved.flush(); }, CARBON_ECLOSED));
    }
    {
        // A full cache refuses points: CacheFull.
        carbonlite::Carbon c(dir + "/full", "[whisper]\nenabled = false\n[cache]\nmax-size = 5\n");
        std::string lines;
        for (int i = 0; i < 8; i++) lines += "full.m" + std::to_string(i) + " 1 " + std::to_string(now) + "\n";
        CHECK(throws<carbonlite::CacheFull>([&] { c.add_lines(lines); }, CARBON_EFULL));
    }
    {
        // The destructor flushes.
        carbonlite::Carbon c(dir);
        c.add("cpp.dtor", 1, now);
    }
    CHECK(exists(dir + "/cpp/dtor.wsp"));
    std::printf("wrapper_test: %d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
