// carbonlite.hpp: header-only C++17 wrapper over carbonlite.h.
//
// RAII handle (carbonlite::Carbon, move-only, closed by its destructor), exceptions built from
// the C error codes (carbonlite::Error and one subclass per code), Series with a
// std::vector<double> (NaN marks a gap). Every function is inline, so the header may be
// included from any number of translation units. Link with -lcarbonlite (pkg-config carbonlite).
#ifndef CARBONLITE_HPP
#define CARBONLITE_HPP

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "carbonlite.h"

namespace carbonlite {

/// Base of every exception: the carbon_error code and carbon_last_error()'s text.
class Error : public std::runtime_error {
public:
    Error(int code, const std::string &what) : std::runtime_error(what), code_(code) {}
    /// A negative carbon_error value (CARBON_EINVAL …); 0 when the C API gave none.
    int code() const noexcept { return code_; }

private:
    int code_;
};

// One class per code, so callers catch what they can handle (a full cache, a missing metric)
// and let the rest propagate.
#define CARBONLITE_ERROR_CLASS(Name)                                                               \
    class Name : public Error {                                                                    \
    public:                                                                                        \
        using Error::Error;                                                                        \
    };
CARBONLITE_ERROR_CLASS(InvalidArgument)
CARBONLITE_ERROR_CLASS(NotFound)
CARBONLITE_ERROR_CLASS(IoError)
CARBONLITE_ERROR_CLASS(CacheFull)
CARBONLITE_ERROR_CLASS(Corrupt)
CARBONLITE_ERROR_CLASS(ConfigError)
CARBONLITE_ERROR_CLASS(AlreadyExists)
CARBONLITE_ERROR_CLASS(OutOfRange)
CARBONLITE_ERROR_CLASS(Closed)
CARBONLITE_ERROR_CLASS(NoSpace)
CARBONLITE_ERROR_CLASS(ParseError)
CARBONLITE_ERROR_CLASS(NameError)
CARBONLITE_ERROR_CLASS(InternalError)
#undef CARBONLITE_ERROR_CLASS

/// Throws the exception for `code`, with this thread's carbon_last_error() text. Must be called
/// on the thread that made the failing call, before any other carbonlite call.
[[noreturn]] inline void throw_error(int code, std::string_view op) {
    std::string msg(op);
    msg += ": ";
    const char *last = carbon_last_error();
    msg += (last && *last) ? last : carbon_strerror(code);
    switch (code) {
    case CARBON_EINVAL: throw InvalidArgument(code, msg);
    case CARBON_ENOTFOUND: throw NotFound(code, msg);
    case CARBON_EIO: throw IoError(code, msg);
    case CARBON_EFULL: throw CacheFull(code, msg);
    case CARBON_ECORRUPT: throw Corrupt(code, msg);
    case CARBON_ECONFIG: throw ConfigError(code, msg);
    case CARBON_EEXIST: throw AlreadyExists(code, msg);
    case CARBON_ERANGE: throw OutOfRange(code, msg);
    case CARBON_ECLOSED: throw Closed(code, msg);
    case CARBON_ENOSPC: throw NoSpace(code, msg);
    case CARBON_EPARSE: throw ParseError(code, msg);
    case CARBON_ENAME: throw NameError(code, msg);
    case CARBON_EPANIC: throw InternalError(code, msg);
    default: throw Error(code, msg);
    }
}

/// A fetched window: values[i] is at from + i*step; until is exclusive; NaN marks a gap.
/// Empty `values` means the window lies outside the retention (whisper.fetch's None).
struct Series {
    std::int64_t from = 0;
    std::int64_t until = 0;
    std::int64_t step = 0;
    std::vector<double> values;
};

/// Counts from add_lines.
struct AddResult {
    std::uint64_t accepted = 0;
    std::uint64_t rejected = 0;
    std::uint64_t refused_full = 0;
};

/// Timestamp meaning "now" for Carbon::add.
inline constexpr std::int64_t now = -1;

/// The linked library's version.
inline std::string version() { return carbon_version(); }

/// An embedded carbon node. Thread-safe (one Carbon may be shared by threads); move-only;
/// the destructor writes the cache out and stops the threads (as close()).
class Carbon {
public:
    /// Opens a node storing whisper files under `data_dir`; `options` is "" or go-carbon.conf TOML.
    explicit Carbon(const std::string &data_dir, const std::string &options = "")
        : c_(carbon_open(data_dir.c_str(), options.empty() ? nullptr : options.c_str())) {
        if (!c_) throw Error(0, "carbon_open(" + data_dir + "): " + carbon_last_error());
    }

    /// Opens a node from a go-carbon.conf file.
    static Carbon from_config(const std::string &path) {
        carbon *c = carbon_open_config(path.c_str());
        if (!c) throw Error(0, "carbon_open_config(" + path + "): " + carbon_last_error());
        return Carbon(c);
    }

    Carbon(const Carbon &) = delete;
    Carbon &operator=(const Carbon &) = delete;
    Carbon(Carbon &&o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
    Carbon &operator=(Carbon &&o) noexcept {
        if (this != &o) {
            close();
            c_ = std::exchange(o.c_, nullptr);
        }
        return *this;
    }
    ~Carbon() { close(); }

    /// Flushes, stops the threads and frees the handle; later calls throw Closed. Not to be
    /// called while another thread uses this object.
    void close() noexcept { carbon_close(std::exchange(c_, nullptr)); }
    bool closed() const noexcept { return c_ == nullptr; }

    /// Stores one point (timestamp in Unix seconds, or carbonlite::now).
    void add(const std::string &metric, double value, std::int64_t timestamp = now) {
        int rc = carbon_add(handle(), cstr(metric, "metric"), value, timestamp);
        if (rc < 0) throw_error(rc, "add " + metric); // the text is built only on failure
    }

    /// Adds plaintext lines; bad lines are skipped and counted (stats().parse_errors).
    /// Throws CacheFull when a full cache refused points (the others were accepted).
    AddResult add_lines(std::string_view lines) {
        carbon_add_result r{};
        int rc = carbon_add_line_ex(handle(), lines.data(), lines.size(), &r);
        if (rc < 0) throw_error(rc, "add_lines");
        return AddResult{r.accepted, r.rejected, r.refused_full};
    }

    /// Returns once every point accepted before the call is in its whisper file.
    void flush() { check(carbon_flush(handle()), "flush"); }

    /// whisper.fetch(from, until) with the cache laid over the file; until 0 = now.
    /// Graphite glob (`*`, `?`, `[a-z]`, `{a,b}`) over the metric tree and the cache, sorted by
    /// path: (path, is_leaf) pairs, as carbonserver's /metrics/find/.
    std::vector<std::pair<std::string, bool>> find(const std::string &pattern) {
        carbon_find_list list{};
        std::int64_t n = carbon_find(handle(), cstr(pattern, "pattern"), &list);
        if (n < 0) throw_error(static_cast<int>(n), "find " + pattern);
        std::vector<std::pair<std::string, bool>> out;
        try {
            out.reserve(list.len);
            for (std::size_t i = 0; i < list.len; i++)
                out.emplace_back(list.matches[i].path, list.matches[i].is_leaf);
        } catch (...) {
            carbon_find_list_free(&list);
            throw;
        }
        carbon_find_list_free(&list);
        return out;
    }

    Series fetch(const std::string &metric, std::int64_t from, std::int64_t until = 0) {
        whisper_series s{};
        int rc = whisper_fetch(handle(), cstr(metric, "metric"), from, until, &s);
        if (rc < 0) throw_error(rc, "fetch " + metric);
        Series out;
        out.from = s.from;
        out.until = s.until;
        out.step = s.step;
        try {
            out.values.assign(s.values, s.values + s.len);
        } catch (...) {
            whisper_series_free(&s);
            throw;
        }
        whisper_series_free(&s);
        return out;
    }

    /// Counters since open and cache gauges.
    carbon_counters stats() {
        carbon_counters st{};
        // Sized: safe against a newer shared library whose struct has grown.
        check(carbon_stats_sized(handle(), &st, sizeof st), "stats");
        return st;
    }

    /// The C handle, for calls this wrapper does not cover.
    carbon *get() const noexcept { return c_; }

private:
    explicit Carbon(carbon *c) noexcept : c_(c) {}

    carbon *handle() const {
        if (!c_) throw Closed(CARBON_ECLOSED, "carbonlite: the Carbon is closed");
        return c_;
    }

    // A NUL inside a std::string would silently shorten the name on the C side.
    static const char *cstr(const std::string &s, std::string_view what) {
        if (s.find('\0') != std::string::npos)
            throw InvalidArgument(CARBON_EINVAL, std::string(what) + " contains a NUL byte");
        return s.c_str();
    }

    static void check(int rc, std::string_view op) {
        if (rc < 0) throw_error(rc, op);
    }

    carbon *c_;
};

}  // namespace carbonlite

#endif  // CARBONLITE_HPP
