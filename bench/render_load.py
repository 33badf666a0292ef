#!/usr/bin/env python3
"""Closed-loop HTTP load for carbonserver's /render (used by bench/render_bench.sh).

    render_load.py HOST:PORT PATH_AND_QUERY [--threads N] [--seconds S] [--max-requests M]

Each thread keeps one HTTP/1.1 keep-alive connection and sends the same GET back to back,
reading the whole body (no parsing: the client must not be the bottleneck). Bounded by time
and by request count; only 127.0.0.1 targets are allowed. Prints one JSON line: requests,
errors, seconds, rps, p50/p90/p99/max latency in ms, bytes per response.
"""
import argparse
import http.client
import json
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("path")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=200_000)
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit("render_load.py only targets the loopback address")
    lat, errors, sizes = [], [0], [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + a.seconds
    budget = [a.max_requests]

    def worker():
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        mine = []
        while time.monotonic() < stop_at:
            with lock:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
            t0 = time.perf_counter()
            try:
                conn.request("GET", a.path)
                r = conn.getresponse()
                body = r.read()
                ok = r.status == 200
            except Exception:
                ok, body = False, b""
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
            dt = time.perf_counter() - t0
            if ok:
                mine.append(dt)
                sizes[0] = len(body)
            else:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            lat.extend(mine)

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    secs = time.monotonic() - t0
    lat.sort()

    def pct(p):
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000, 2) if lat else None

    print(json.dumps({
        "requests": len(lat), "errors": errors[0], "seconds": round(secs, 2),
        "rps": round(len(lat) / secs, 1), "p50_ms": pct(50), "p90_ms": pct(90),
        "p99_ms": pct(99), "max_ms": round(lat[-1] * 1000, 2) if lat else None,
        "response_bytes": sizes[0], "threads": a.threads,
    }))


if __name__ == "__main__":
    main()
