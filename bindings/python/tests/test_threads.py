"""One Carbon shared by many threads: no lost points, no crash, close() waits for callers."""
import threading
import time

import whisper

import carbonlite
from conftest import wsp

THREADS = 8
POINTS = 150


def test_threaded_writers_lose_nothing(carbon, data_dir):
    now = int(time.time())
    start = threading.Barrier(THREADS + 1)
    errors = []

    def writer(t):
        try:
            start.wait()
            for i in range(POINTS):
                ts = now - 60 * i
                if i % 2:
                    carbon.add(f"thr.w{t}", t * 1000 + i, ts)
                else:
                    carbon.add_lines([f"thr.w{t} {t * 1000 + i} {ts}"])
                if i % 50 == 0:
                    carbon.flush()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader():
        try:
            start.wait()
            for _ in range(100):
                carbon.stats()
                try:
                    carbon.fetch("thr.w0", now - 3600)
                except carbonlite.MetricNotFoundError:
                    pass
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(THREADS - 1)]
    threads.append(threading.Thread(target=reader))
    for th in threads:
        th.start()
    start.wait()
    for th in threads:
        th.join()
    assert errors == []
    carbon.flush()
    assert carbon.stats()["metrics_received"] == (THREADS - 1) * POINTS
    for t in range(THREADS - 1):
        (s, _, step), values = whisper.fetch(wsp(data_dir, f"thr.w{t}"), now - 86400 + 60)
        for i in range(POINTS):
            ts = now - 60 * i
            assert values[(ts - ts % 60 - s) // step] == t * 1000 + i, (t, i)


def test_close_while_threads_write(data_dir):
    c = carbonlite.Carbon(data_dir)
    now = int(time.time())
    stop = threading.Event()
    outcome = {"ok": 0, "closed": 0, "other": []}
    lock = threading.Lock()

    def writer(t):
        while not stop.is_set():
            try:
                c.add(f"race.w{t}", 1.0, now)
                key = "ok"
            except carbonlite.ClosedError:
                key = "closed"
            except Exception as e:  # pragma: no cover
                with lock:
                    outcome["other"].append(e)
                return
            with lock:
                outcome[key] += 1
            if key == "closed":
                return

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    time.sleep(0.2)
    c.close()
    for th in threads:
        th.join(timeout=10)
    stop.set()
    assert outcome["other"] == []
    assert outcome["ok"] > 0
    assert outcome["closed"] == 4  # every writer saw the close as ClosedError
    # close() wrote everything accepted.
    for t in range(4):
        (s, _, step), values = whisper.fetch(wsp(data_dir, f"race.w{t}"), now - 120)
        assert values[(now - now % 60 - s) // step] == 1.0


def test_flush_does_not_hold_the_gil(data_dir):
    """While one thread flushes many files, another keeps running Python code."""
    with carbonlite.Carbon(data_dir, "[whisper]\nworkers = 1\n") as c:
        now = int(time.time())
        c.add_lines(f"gil.m{i} {i} {now}\n" for i in range(3000))
        ticks = []
        done = threading.Event()

        def flusher():
            c.flush()
            done.set()

        th = threading.Thread(target=flusher)
        t0 = time.perf_counter()
        th.start()
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)
        th.join()
        took = time.perf_counter() - t0
        assert c.stats()["created"] == 3000
        # A flush that held the GIL would let this loop tick once or twice at most.
        if took > 0.05:
            assert len(ticks) >= 5, (took, len(ticks))
