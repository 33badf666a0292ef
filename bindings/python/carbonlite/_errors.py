"""Exceptions mapped from `carbon_error` codes, carrying `carbon_last_error()`'s text."""

from . import _lib


class CarbonError(Exception):
    """Any failure reported by libcarbonlite.

    `code` is the negative `carbon_error` value (None when the C function has no code to give,
    as `carbon_open` returning NULL), `message` the library's text for this failure.
    """

    code = None

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self):
        return self.message


class InvalidArgumentError(CarbonError, ValueError):
    """CARBON_EINVAL: an argument is malformed or out of range (NaN value, bad text …)."""

    code = _lib.CARBON_EINVAL


class MetricNotFoundError(CarbonError, LookupError):
    """CARBON_ENOTFOUND: no such metric (neither a whisper file nor cached points)."""

    code = _lib.CARBON_ENOTFOUND


class CarbonIOError(CarbonError):
    """CARBON_EIO: an operating-system I/O error."""

    code = _lib.CARBON_EIO


class CacheFullError(CarbonError):
    """CARBON_EFULL: a full cache refused points; `accepted`/`refused` say how many."""

    code = _lib.CARBON_EFULL
    accepted = 0
    rejected = 0
    refused = 0


class CorruptFileError(CarbonError):
    """CARBON_ECORRUPT: a whisper file is corrupt or not a whisper file."""

    code = _lib.CARBON_ECORRUPT


class ConfigError(CarbonError, ValueError):
    """CARBON_ECONFIG: invalid options text or configuration file."""

    code = _lib.CARBON_ECONFIG


class AlreadyExistsError(CarbonError):
    """CARBON_EEXIST: the file already exists."""

    code = _lib.CARBON_EEXIST


class TimeRangeError(CarbonError, ValueError):
    """CARBON_ERANGE: a timestamp or interval outside what the file covers (from > until …)."""

    code = _lib.CARBON_ERANGE


class ClosedError(CarbonError, ValueError):
    """CARBON_ECLOSED: the Carbon handle is closed (ValueError, as for a closed Python file)."""

    code = _lib.CARBON_ECLOSED


class NoSpaceError(CarbonError):
    """CARBON_ENOSPC: the disk or quota is full."""

    code = _lib.CARBON_ENOSPC


class ParseError(CarbonError, ValueError):
    """CARBON_EPARSE: a plaintext line could not be parsed."""

    code = _lib.CARBON_EPARSE


class MetricNameError(CarbonError, ValueError):
    """CARBON_ENAME: a metric name was refused (path tricks, name policy)."""

    code = _lib.CARBON_ENAME


class InternalError(CarbonError):
    """CARBON_EPANIC: a bug inside the library (a caught panic); the handle is still usable."""

    code = _lib.CARBON_EPANIC


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        MetricNotFoundError,
        CarbonIOError,
        CacheFullError,
        CorruptFileError,
        ConfigError,
        AlreadyExistsError,
        TimeRangeError,
        ClosedError,
        NoSpaceError,
        ParseError,
        MetricNameError,
        InternalError,
    )
}


def strerror(code):
    """The library's static text for a carbon_error code."""
    return _lib.lib.carbon_strerror(code).decode("utf-8", "replace")


def last_error():
    """This thread's text of the last failure (must be read right after the failing call)."""
    return _lib.lib.carbon_last_error().decode("utf-8", "replace")


def from_code(code, what):
    """The exception for a negative return `code` of the C function named `what`.

    Reads carbon_last_error() at once: it is thread-local, and the ctypes call ran on this
    very thread, so no other call can have replaced it.
    """
    text = last_error() or strerror(code)
    cls = _BY_CODE.get(code, CarbonError)
    return cls(f"{what}: {text}", code)
