"""Embedded Graphite storage: a carbon cache and persister threads writing whisper files.

    with carbonlite.Carbon("/var/lib/metrics") as c:
        c.add("app.requests", 42)
        c.flush()
        (start, end, step), values = c.fetch("app.requests", time.time() - 3600)

Pure ctypes over libcarbonlite (see `_lib` for how the library is found). Files written are
Graphite whisper files: `whisper.fetch` on them gives what `Carbon.fetch` gives after a flush.
A `Carbon` may be used from any number of threads; the GIL is released during every C call.
"""

import ctypes
import math
import threading

from . import _lib
from ._errors import (
    AlreadyExistsError,
    CacheFullError,
    CarbonError,
    CarbonIOError,
    ClosedError,
    ConfigError,
    CorruptFileError,
    InternalError,
    InvalidArgumentError,
    MetricNameError,
    MetricNotFoundError,
    NoSpaceError,
    ParseError,
    TimeRangeError,
    from_code,
    last_error,
    strerror,
)

__version__ = "0.1.0"

__all__ = [
    "Carbon",
    "CarbonError",
    "InvalidArgumentError",
    "MetricNotFoundError",
    "CarbonIOError",
    "CacheFullError",
    "CorruptFileError",
    "ConfigError",
    "AlreadyExistsError",
    "TimeRangeError",
    "ClosedError",
    "NoSpaceError",
    "ParseError",
    "MetricNameError",
    "InternalError",
    "library_version",
    "strerror",
]

_C = _lib.lib
# add_lines hands the library at most this many bytes per call when given an iterable,
# so a generator of lines is streamed rather than joined whole in memory.
_CHUNK = 1 << 20


def library_version():
    """Version of the loaded libcarbonlite (may differ from this package's __version__)."""
    return _C.carbon_version().decode()


def _text(value, what):
    """A str/bytes/PathLike argument as NUL-free UTF-8 bytes for a `const char *`."""
    if hasattr(value, "__fspath__"):
        value = value.__fspath__()
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif not isinstance(value, bytes):
        raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")
    if b"\0" in value:
        # C would silently cut the string there; say so instead.
        raise InvalidArgumentError(f"{what} contains a NUL byte", _lib.CARBON_EINVAL)
    return value


def _int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgumentError(f"{what} is not finite: {value!r}", _lib.CARBON_EINVAL)
    return int(value)


class Carbon:
    """An embedded carbon node storing whisper files under `data_dir`.

    `options` is None or go-carbon.conf TOML text (`"[whisper]\\nworkers = 4\\n"`,
    `[cache] max-size`, ...). Use as a context manager, or call `close()`, which writes every
    cached point to disk and stops the threads; after it every method raises `ClosedError`.
    """

    def __init__(self, data_dir, options=None):
        self._ptr = None
        self._busy = 0
        self._cond = threading.Condition(threading.Lock())
        d = _text(data_dir, "data_dir")
        o = None if options is None else _text(options, "options")
        ptr = _C.carbon_open(d, o)
        if not ptr:
            # carbon_open has no code to return: the class cannot be more precise than this.
            raise CarbonError(f"carbon_open({data_dir!r}): {last_error()}")
        self._ptr = ptr

    @classmethod
    def from_config(cls, path):
        """Opens a Carbon from a go-carbon.conf file (its `[whisper] data-dir` is used)."""
        self = cls.__new__(cls)
        self._ptr = None
        self._busy = 0
        self._cond = threading.Condition(threading.Lock())
        ptr = _C.carbon_open_config(_text(path, "path"))
        if not ptr:
            raise CarbonError(f"carbon_open_config({path!r}): {last_error()}")
        self._ptr = ptr
        return self

    # -- lifetime ---------------------------------------------------------------------------
    # The C handle is freed by carbon_close and must not be used by any thread during or
    # after it. Each call therefore registers itself (_busy) under a lock; close() first
    # marks the object closed, so no new call starts, then waits for running ones to end.

    def _enter(self):
        with self._cond:
            if self._ptr is None:
                raise ClosedError("carbonlite: the Carbon handle is closed", _lib.CARBON_ECLOSED)
            self._busy += 1
            return self._ptr

    def _leave(self):
        with self._cond:
            self._busy -= 1
            if self._busy == 0:
                self._cond.notify_all()

    def close(self):
        """Flushes every cached point, stops the threads, frees the handle. Idempotent."""
        cond = getattr(self, "_cond", None)
        if cond is None:  # __init__ failed before setting up
            return
        with cond:
            ptr, self._ptr = self._ptr, None
            while self._busy:
                cond.wait()
        if ptr:
            _C.carbon_close(ptr)

    @property
    def closed(self):
        """True once close() has been called."""
        return self._ptr is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # A forgotten Carbon still writes its cache out; never raise from a finalizer.
        try:
            self.close()
        except Exception:
            pass

    # -- writing ----------------------------------------------------------------------------

    def add(self, name, value, ts=None):
        """Adds one point; `ts` is Unix seconds (None: now). Raises on a refused point."""
        n = _text(name, "name")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"value must be a number, not {type(value).__name__}")
        t = -1 if ts is None else _int(ts, "ts")
        ptr = self._enter()
        try:
            rc = _C.carbon_add(ptr, n, float(value), t)
            if rc < 0:
                raise from_code(rc, f"add({name!r})")
        finally:
            self._leave()

    def _add_buffer(self, buf):
        """One carbon_add_line_ex call; returns (accepted, rejected, refused_full)."""
        out = _lib.CarbonAddResult()
        ptr = self._enter()
        try:
            rc = _C.carbon_add_line_ex(ptr, buf, len(buf), ctypes.byref(out))
            if rc < 0 and rc != _lib.CARBON_EFULL:
                raise from_code(rc, "add_lines")
            full_text = last_error() if rc == _lib.CARBON_EFULL else None
        finally:
            self._leave()
        return out.accepted, out.rejected, out.refused_full, full_text

    def add_lines(self, lines):
        """Adds plaintext protocol lines (`name value timestamp`), carbon's rules.

        `lines` is a str, bytes-like, or an iterable of str/bytes lines (newlines optional).
        Returns how many points were accepted. Malformed lines are skipped and counted in
        `stats()["parse_errors"]` / `["name_errors"]`, as carbon does. Raises CacheFullError
        (with `.accepted`, `.rejected`, `.refused`) if a full cache refused points.
        """
        if isinstance(lines, str):
            chunks = [lines.encode("utf-8")]
        elif isinstance(lines, (bytes, bytearray, memoryview)):
            chunks = [bytes(lines)]
        else:
            chunks = self._chunks(lines)
        accepted = rejected = refused = 0
        full_text = None
        for buf in chunks:
            if not buf:
                continue
            a, r, f, text = self._add_buffer(buf)
            accepted, rejected, refused = accepted + a, rejected + r, refused + f
            full_text = full_text or text
        if refused:
            e = CacheFullError(f"add_lines: {full_text}", _lib.CARBON_EFULL)
            e.accepted, e.rejected, e.refused = accepted, rejected, refused
            raise e
        return accepted

    @staticmethod
    def _chunks(lines):
        parts, size = [], 0
        for line in lines:
            if isinstance(line, str):
                line = line.encode("utf-8")
            elif isinstance(line, (bytearray, memoryview)):
                line = bytes(line)
            elif not isinstance(line, bytes):
                raise TypeError(f"lines must be str or bytes, not {type(line).__name__}")
            if not line.endswith(b"\n"):
                line += b"\n"
            parts.append(line)
            size += len(line)
            if size >= _CHUNK:
                yield b"".join(parts)
                parts, size = [], 0
        if parts:
            yield b"".join(parts)

    def flush(self):
        """Returns once every point accepted before the call is in its whisper file."""
        ptr = self._enter()
        try:
            rc = _C.carbon_flush(ptr)
            if rc < 0:
                raise from_code(rc, "flush")
        finally:
            self._leave()

    # -- reading ----------------------------------------------------------------------------

    def fetch(self, name, from_, until=None):
        """`whisper.fetch`'s result for metric `name`, cached points included.

        Returns `((from, until, step), values)` with None for gaps, exactly the shape
        `whisper.fetch(path, from_, until)` gives, or None when the window lies entirely
        outside the retention (as whisper.fetch). `until` None means now. Raises
        MetricNotFoundError for a metric with neither a file nor cached points.
        """
        n = _text(name, "name")
        f = _int(from_, "from_")
        u = 0 if until is None else _int(until, "until")
        if until is not None and u <= 0:
            raise InvalidArgumentError(f"until must be positive (or None for now): {until!r}", _lib.CARBON_EINVAL)
        series = _lib.WhisperSeries()
        ptr = self._enter()
        try:
            rc = _C.whisper_fetch(ptr, n, f, u, ctypes.byref(series))
            if rc < 0:
                raise from_code(rc, f"fetch({name!r})")
        finally:
            self._leave()
        try:
            if series.len == 0:
                return None
            raw = series.values[: series.len]
            values = [None if v != v else v for v in raw]
            return (series.from_, series.until, series.step), values
        finally:
            _C.whisper_series_free(ctypes.byref(series))

    def find(self, pattern):
        """Graphite glob (`*`, `?`, `[a-z]`, `{a,b}`) over the files and the cache.

        Returns `[(path, is_leaf), ...]` sorted by path, as carbonserver's /metrics/find/.
        Raises InvalidArgumentError for a malformed glob.
        """
        p = _text(pattern, "pattern")
        out = _lib.CarbonFindList()
        ptr = self._enter()
        try:
            rc = _C.carbon_find(ptr, p, ctypes.byref(out))
            if rc < 0:
                raise from_code(rc, f"find({pattern!r})")
        finally:
            self._leave()
        try:
            return [(out.matches[i].path.decode("utf-8"), bool(out.matches[i].is_leaf)) for i in range(out.len)]
        finally:
            _C.carbon_find_list_free(ctypes.byref(out))

    def stats(self):
        """Counters since open and cache gauges, named after go-carbon's self-metrics."""
        out = _lib.CarbonCounters()
        ptr = self._enter()
        try:
            # Sized: a library newer than this package writes no more than our struct holds,
            # and one older fills only the fields it has, which are the ones returned.
            rc = _C.carbon_stats_sized(ptr, ctypes.byref(out), ctypes.sizeof(out))
            if rc < 0:
                raise from_code(rc, "stats")
        finally:
            self._leave()
        fields = _lib.filled_fields(_lib.CarbonCounters, min(rc, ctypes.sizeof(out)))
        return {name: getattr(out, name) for name in fields}

    def destination_stats(self):
        """Per-destination counters of a `[cluster]` routing handle, in configuration order
        (`[]` without `[cluster]`): dicts named as carbon_destination_counters' fields."""
        out = []
        ptr = self._enter()
        try:
            n = _C.carbon_destination_count(ptr)
            if n < 0:
                raise from_code(n, "destination_stats")
            for i in range(n):
                d = _lib.CarbonDestinationCounters()
                rc = _C.carbon_destination_stats_sized(ptr, i, ctypes.byref(d), ctypes.sizeof(d))
                if rc < 0:
                    raise from_code(rc, "destination_stats")
                fields = _lib.filled_fields(_lib.CarbonDestinationCounters, min(rc, ctypes.sizeof(d)))
                row = {name: getattr(d, name) for name in fields}
                row["destination"] = d.destination.decode("utf-8")
                out.append(row)
        finally:
            self._leave()
        return out

    def __repr__(self):
        return f"<carbonlite.Carbon {'closed' if self.closed else 'open'}>"
