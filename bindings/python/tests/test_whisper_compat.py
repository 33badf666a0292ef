"""Carbon.fetch must give exactly what Graphite's whisper.fetch gives on the same file."""
import random
import time

import whisper

from conftest import wsp


def same_second(fn):
    """Runs fn until it starts and ends in the same wall-clock second (both fetches use now)."""
    for _ in range(10):
        t0 = int(time.time())
        r = fn()
        if int(time.time()) == t0:
            return r
    raise AssertionError("could not run the comparison within one second")


def both(c, data_dir, name, from_, until=None):
    return same_second(
        lambda: (c.fetch(name, from_, until), whisper.fetch(wsp(data_dir, name), from_, until))
    )


def test_fetch_equals_whisper_fetch_single_archive(carbon, data_dir):
    now = int(time.time())
    rnd = random.Random(7)
    points = [(now - 60 * i, rnd.uniform(-1e6, 1e6)) for i in range(0, 600, 3)]
    for ts, v in points:
        carbon.add("app.single", v, ts)
    carbon.flush()
    info = whisper.info(wsp(data_dir, "app.single"))
    assert [(a["secondsPerPoint"], a["points"]) for a in info["archives"]] == [(60, 1440)]
    for from_, until in [(now - 3600, None), (now - 86400, None), (now - 7200, now - 3600),
                         (now - 100000, now - 80000), (now - 10, None), (now - 59, now - 1)]:
        mine, theirs = both(carbon, data_dir, "app.single", from_, until)
        assert mine == theirs, (from_, until)
    # The values really are there (not two empty windows agreeing).
    (start, _, step), values = carbon.fetch("app.single", now - 3600)
    got = {start + i * step: v for i, v in enumerate(values) if v is not None}
    want = {ts - ts % 60: v for ts, v in points if ts > now - 3600 + 60}
    for ts, v in want.items():
        assert got.get(ts) == v, ts


def test_fetch_equals_whisper_fetch_across_archives(carbon, data_dir):
    now = int(time.time())
    lines = "".join(f"multi.m {i % 17 + 0.5} {now - 10 * i}\n" for i in range(0, 8000, 2))
    assert carbon.add_lines(lines) == 4000
    carbon.flush()
    info = whisper.info(wsp(data_dir, "multi.m"))
    assert [a["secondsPerPoint"] for a in info["archives"]] == [10, 60, 300]
    for from_ in (now - 300, now - 599, now - 1800, now - 7000, now - 43200, now - 86400):
        mine, theirs = both(carbon, data_dir, "multi.m", from_)
        assert mine == theirs, from_
        assert any(v is not None for v in mine[1]), from_


def test_cached_points_show_before_flush_and_match_after(carbon, data_dir):
    now = int(time.time())
    carbon.add("app.cached", 1.0, now - 120)
    carbon.flush()
    carbon.add("app.cached", 2.0, now - 60)  # only in the cache for now
    (start, _, step), values = carbon.fetch("app.cached", now - 300)
    assert values[(now - 60 - start) // step] == 2.0
    carbon.flush()
    mine, theirs = both(carbon, data_dir, "app.cached", now - 300)
    assert mine == theirs
    assert theirs[1][(now - 60 - theirs[0][0]) // theirs[0][2]] == 2.0


def test_window_outside_retention_is_none_like_whisper(carbon, data_dir):
    now = int(time.time())
    carbon.add("app.old", 1.0, now)
    carbon.flush()
    mine, theirs = both(carbon, data_dir, "app.old", now - 10 * 86400, now - 5 * 86400)
    assert theirs is None
    assert mine is None


def test_whisper_written_file_is_readable(data_dir, schemas):
    """The other direction: a file whisper created and filled is fetched identically."""
    import carbonlite

    now = int(time.time())
    path = wsp(data_dir, "ext.series")
    import os

    os.makedirs(os.path.dirname(path))
    whisper.create(path, [(60, 1440)], aggregationMethod="max")
    whisper.update_many(path, [(now - 60 * i, float(i)) for i in range(30)])
    with carbonlite.Carbon(data_dir) as c:
        mine, theirs = both(c, data_dir, "ext.series", now - 3600)
        assert mine == theirs
        assert sum(v is not None for v in mine[1]) >= 29
