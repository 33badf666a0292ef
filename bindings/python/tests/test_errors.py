"""Bad input and misuse give clear exceptions, never a crash."""
import math
import time

import pytest

import carbonlite
from carbonlite import _lib


def test_error_classes_follow_codes():
    assert issubclass(carbonlite.InvalidArgumentError, carbonlite.CarbonError)
    assert carbonlite.MetricNotFoundError.code == _lib.CARBON_ENOTFOUND
    assert carbonlite.ClosedError.code == _lib.CARBON_ECLOSED
    assert carbonlite.strerror(_lib.CARBON_EFULL) == "cache full"


def test_unknown_metric(carbon):
    with pytest.raises(carbonlite.MetricNotFoundError) as e:
        carbon.fetch("no.such.metric", time.time() - 60)
    assert e.value.code == _lib.CARBON_ENOTFOUND
    assert "no.such.metric" in str(e.value)
    assert isinstance(e.value, LookupError)


def test_bad_values_and_names(carbon):
    with pytest.raises(carbonlite.InvalidArgumentError, match="NaN"):
        carbon.add("a.b", math.nan)
    with pytest.raises(carbonlite.MetricNameError) as e:
        carbon.add("a/../../etc", 1.0)
    assert e.value.code == _lib.CARBON_ENAME
    with pytest.raises(carbonlite.InvalidArgumentError, match="NUL"):
        carbon.add("a\0b", 1.0)
    with pytest.raises(TypeError):
        carbon.add(None, 1.0)
    with pytest.raises(TypeError):
        carbon.add("a.b", "12")
    with pytest.raises(TypeError):
        carbon.add_lines([1, 2])
    with pytest.raises(carbonlite.InvalidArgumentError):
        carbon.add("a.b", 1.0, math.inf)
    st = carbon.stats()
    assert st["parse_errors"] >= 1 and st["name_errors"] >= 1


def test_bad_lines_are_skipped_and_counted(carbon):
    now = int(time.time())
    before = carbon.stats()["parse_errors"]
    n = carbon.add_lines(f"ok.one 1 {now}\nthis is not a line\nok.two nan {now}\n\nok.three 3 {now}\n")
    assert n == 2
    assert carbon.stats()["parse_errors"] - before == 2


def test_bad_time_window(carbon):
    now = int(time.time())
    carbon.add("a.win", 1.0, now)
    with pytest.raises(carbonlite.TimeRangeError) as e:
        carbon.fetch("a.win", now, now - 100)
    assert e.value.code == _lib.CARBON_ERANGE
    with pytest.raises(carbonlite.InvalidArgumentError):
        carbon.fetch("a.win", now - 100, 0)


def test_bad_options_and_paths(tmp_path):
    with pytest.raises(carbonlite.CarbonError, match="no-such-key"):
        carbonlite.Carbon(tmp_path, "[whisper]\nno-such-key = 1\n")
    with pytest.raises(carbonlite.CarbonError):
        carbonlite.Carbon(tmp_path, "this is [ not toml")
    with pytest.raises(carbonlite.CarbonError, match="missing.conf"):
        carbonlite.Carbon.from_config(tmp_path / "missing.conf")
    with pytest.raises(carbonlite.InvalidArgumentError):
        carbonlite.Carbon("dir\0x")


def test_open_config_file(tmp_path):
    conf = tmp_path / "go-carbon.conf"
    conf.write_text(f'[whisper]\ndata-dir = "{tmp_path / "d"}"\nworkers = 1\n')
    with carbonlite.Carbon.from_config(conf) as c:
        c.add("cfg.metric", 5.0)
        c.flush()
        assert c.stats()["workers"] == 1
    assert (tmp_path / "d" / "cfg" / "metric.wsp").exists()


def test_closed_handle_raises_for_every_method(data_dir):
    c = carbonlite.Carbon(data_dir)
    c.close()
    c.close()  # idempotent
    assert c.closed
    for call in (
        lambda: c.add("a.b", 1),
        lambda: c.add_lines("a.b 1 1\n"),
        lambda: c.add_lines(["a.b 1 1"]),
        c.flush,
        c.stats,
        lambda: c.fetch("a.b", 0),
    ):
        with pytest.raises(carbonlite.ClosedError) as e:
            call()
        assert e.value.code == _lib.CARBON_ECLOSED
        assert isinstance(e.value, ValueError)


def test_context_manager_closes_and_writes(data_dir):
    with carbonlite.Carbon(data_dir) as c:
        c.add("cm.metric", 1.0)
    assert c.closed
    assert (data_dir / "cm" / "metric.wsp").exists()


def test_cache_full(data_dir):
    opts = "[whisper]\nenabled = false\n[cache]\nmax-size = 10\n"
    with carbonlite.Carbon(data_dir, opts) as c:
        now = int(time.time())
        with pytest.raises(carbonlite.CacheFullError) as e:
            c.add_lines("".join(f"full.m{i} 1 {now}\n" for i in range(25)))
        assert (e.value.accepted, e.value.refused) == (10, 15)
        assert e.value.code == _lib.CARBON_EFULL
        with pytest.raises(carbonlite.CacheFullError):
            c.add("full.more", 1.0, now)
        assert c.stats()["overflow"] >= 16


def test_find_globs_files_and_cache(carbon):
    now = int(time.time())
    carbon.add("find.a.x", 1.0, now)
    carbon.flush()
    carbon.add("find.b.y", 1.0, now)
    assert carbon.find("find.*") == [("find.a", False), ("find.b", False)]
    assert carbon.find("find.{a,b}.*") == [("find.a.x", True), ("find.b.y", True)]
    assert carbon.find("nothing.*") == []
    with pytest.raises(carbonlite.InvalidArgumentError):
        carbon.find("a..b")


def test_library_version():
    assert carbonlite.library_version() == carbonlite.__version__


def test_stats_read_only_what_the_library_filled(carbon):
    # Same library and package: every field, and the struct sizes agree.
    assert list(carbon.stats()) == [name for name, _ in _lib.CarbonCounters._fields_]
    assert _lib.lib.carbon_stats_sized(None, None, 0) == _lib.CARBON_EINVAL
    # An older library fills a prefix: only the fields inside it are reported.
    size = _lib.CarbonCounters.parse_errors.offset + 8
    assert _lib.filled_fields(_lib.CarbonCounters, size) == ["metrics_received", "parse_errors"]
    assert _lib.filled_fields(_lib.CarbonCounters, size + 7) == ["metrics_received", "parse_errors"]
