"""Loads libcarbonlite and declares the type of every symbol of include/carbonlite.h.

Every function is declared here with its argtypes/restype (tests/test_header.py checks this
list against the header), so ctypes never guesses an `int` where the C side has a pointer or an
`int64_t`. The library is loaded with `ctypes.CDLL`, which releases the GIL for the duration of
each call: a `flush()` in one thread does not stop the others.
"""

import ctypes
import ctypes.util
import os
from pathlib import Path

# carbon_error (include/carbonlite.h). Stable values: the C side never renumbers them.
CARBON_OK = 0
CARBON_EINVAL = -1
CARBON_ENOTFOUND = -2
CARBON_EIO = -3
CARBON_EFULL = -4
CARBON_ECORRUPT = -5
CARBON_ECONFIG = -6
CARBON_EEXIST = -7
CARBON_ERANGE = -8
CARBON_ECLOSED = -9
CARBON_ENOSPC = -10
CARBON_EPARSE = -11
CARBON_ENAME = -12
CARBON_EPANIC = -99

#: Every carbon_error name with its value, for the header cross-check.
ERROR_CODES = {
    name: value for name, value in globals().items() if name.startswith("CARBON_E") or name == "CARBON_OK"
}


class CarbonHandle(ctypes.Structure):
    """Opaque `carbon` (only ever used through a pointer)."""


CarbonPtr = ctypes.POINTER(CarbonHandle)


class CarbonAddResult(ctypes.Structure):
    """`carbon_add_result`: counts from carbon_add_line_ex."""

    _fields_ = [
        ("accepted", ctypes.c_uint64),
        ("rejected", ctypes.c_uint64),
        ("refused_full", ctypes.c_uint64),
    ]


class WhisperSeries(ctypes.Structure):
    """`whisper_series`: a fetched window, owned by the library until whisper_series_free."""

    _fields_ = [
        ("from_", ctypes.c_int64),
        ("until", ctypes.c_int64),
        ("step", ctypes.c_int64),
        ("len", ctypes.c_size_t),
        ("values", ctypes.POINTER(ctypes.c_double)),
    ]


class CarbonCounters(ctypes.Structure):
    """`carbon_counters`, filled by carbon_stats."""

    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "metrics_received",
            "parse_errors",
            "name_errors",
            "overflow",
            "update_operations",
            "committed_points",
            "created",
            "throttled_creates",
            "write_errors",
            "disk_full_errors",
            "corrupt_files",
            "cache_queries",
            "tcp_metrics_received",
            "tcp_errors",
            "tcp_active",
            "cache_size",
            "cache_metrics",
            "cache_max_size",
            "not_confirmed",
            "workers",
            "udp_metrics_received",
            "udp_errors",
            "pickle_metrics_received",
            "pickle_errors",
            "pickle_active",
            "journal_bytes",
            "journal_segments",
            "journal_appends",
            "journal_appended_bytes",
            "journal_fsyncs",
            "journal_replayed",
            "journal_errors",
            "journal_refused",
            "journal_released",
            "quarantined",
            "dump_points",
            "restored_points",
            "dump_errors",
        )
    ]


class CarbonFindMatch(ctypes.Structure):
    """`carbon_find_match`: one node a glob matched."""

    _fields_ = [("path", ctypes.c_char_p), ("is_leaf", ctypes.c_bool)]


class CarbonFindList(ctypes.Structure):
    """`carbon_find_list`, filled by carbon_find, released by carbon_find_list_free."""

    _fields_ = [("matches", ctypes.POINTER(CarbonFindMatch)), ("len", ctypes.c_size_t)]


#: Bytes of `carbon_destination_counters.destination` (256, as the header spells it).
DESTINATION_NAME_LEN = 256


class CarbonDestinationCounters(ctypes.Structure):
    """`carbon_destination_counters`, filled by carbon_destination_stats."""

    _fields_ = [("destination", ctypes.c_char * DESTINATION_NAME_LEN), ("local", ctypes.c_bool)] + [
        (name, ctypes.c_uint64)
        for name in ("sent", "queued", "dropped", "reconnects", "connect_failures", "spilled", "query_errors", "stalls")
    ]


#: name -> (restype, argtypes), one entry per function of carbonlite.h.
FUNCTIONS = {
    "carbon_last_error": (ctypes.c_char_p, []),
    "carbon_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "carbon_version": (ctypes.c_char_p, []),
    "carbon_open": (CarbonPtr, [ctypes.c_char_p, ctypes.c_char_p]),
    "carbon_open_config": (CarbonPtr, [ctypes.c_char_p]),
    "carbon_add_line": (ctypes.c_int64, [CarbonPtr, ctypes.c_char_p, ctypes.c_size_t]),
    "carbon_add_line_ex": (
        ctypes.c_int,
        [CarbonPtr, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(CarbonAddResult)],
    ),
    "carbon_add": (ctypes.c_int, [CarbonPtr, ctypes.c_char_p, ctypes.c_double, ctypes.c_int64]),
    "carbon_flush": (ctypes.c_int, [CarbonPtr]),
    "whisper_fetch": (
        ctypes.c_int,
        [CarbonPtr, ctypes.c_char_p, ctypes.c_int64, ctypes.c_int64, ctypes.POINTER(WhisperSeries)],
    ),
    "whisper_series_free": (None, [ctypes.POINTER(WhisperSeries)]),
    "carbon_stats": (ctypes.c_int, [CarbonPtr, ctypes.POINTER(CarbonCounters)]),
    "carbon_stats_sized": (ctypes.c_int, [CarbonPtr, ctypes.POINTER(CarbonCounters), ctypes.c_size_t]),
    "carbon_close": (None, [CarbonPtr]),
    "carbon_find": (ctypes.c_int64, [CarbonPtr, ctypes.c_char_p, ctypes.POINTER(CarbonFindList)]),
    "carbon_find_list_free": (None, [ctypes.POINTER(CarbonFindList)]),
    "carbon_destination_count": (ctypes.c_int, [CarbonPtr]),
    "carbon_destination_stats": (
        ctypes.c_int,
        [CarbonPtr, ctypes.c_size_t, ctypes.POINTER(CarbonDestinationCounters)],
    ),
    "carbon_destination_stats_sized": (
        ctypes.c_int,
        [CarbonPtr, ctypes.c_size_t, ctypes.POINTER(CarbonDestinationCounters), ctypes.c_size_t],
    ),
}


def filled_fields(struct, written):
    """The fields of a ctypes Structure type that lie within its first `written` bytes: what a
    `*_sized` call filled when the loaded library's struct is older (shorter) than ours."""
    return [name for name, _ in struct._fields_ if getattr(struct, name).offset + getattr(struct, name).size <= written]


def _candidates():
    """Where the library may be, most specific first."""
    env = os.environ.get("CARBONLITE_LIB")
    if env:
        yield env
        return  # an explicit choice must not silently fall back to another copy
    here = Path(__file__).resolve().parent
    yield str(here / "libcarbonlite.so")
    found = ctypes.util.find_library("carbonlite")
    if found:
        yield found
    yield "libcarbonlite.so"  # LD_LIBRARY_PATH and the loader cache


def _load():
    tried = []
    for cand in _candidates():
        if os.sep in cand and not os.path.exists(cand):
            tried.append(f"{cand} (missing)")
            continue
        try:
            lib = ctypes.CDLL(cand)
        except OSError as e:
            tried.append(f"{cand} ({e})")
            continue
        for name, (restype, argtypes) in FUNCTIONS.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        return lib
    raise OSError(
        "libcarbonlite not found; set CARBONLITE_LIB to the path of libcarbonlite.so "
        "(tried: " + "; ".join(tried) + ")"
    )


lib = _load()
