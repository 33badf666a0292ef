// Second translation unit: carbonlite.hpp (and carbonlite.h) included again, twice, so the
// link fails if the header defines anything non-inline.
#include "carbonlite.hpp"
#include "carbonlite.hpp"
#include "carbonlite.h"

#include <string>

// Used by wrapper_test.cpp: work done on the same handle from another object file.
std::size_t add_from_second_tu(carbonlite::Carbon &c, const std::string &prefix, std::int64_t ts) {
    std::string lines;
    for (int i = 0; i < 10; i++)
        lines += prefix + ".m" + std::to_string(i) + " " + std::to_string(i) + " " + std::to_string(ts) + "\n";
    return c.add_lines(lines).accepted;
}

std::string version_from_second_tu() { return carbonlite::version(); }
