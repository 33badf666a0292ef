"""add_lines accepts str, bytes-likes and iterables, and streams large iterables."""
import time

import carbonlite


def test_input_kinds(carbon):
    now = int(time.time())
    assert carbon.add_lines(f"k.a 1 {now}\n") == 1
    assert carbon.add_lines(f"k.b 2 {now}".encode()) == 1  # no trailing newline needed
    assert carbon.add_lines(bytearray(f"k.c 3 {now}\n", "ascii")) == 1
    assert carbon.add_lines(memoryview(f"k.d 4 {now}\n".encode())) == 1
    assert carbon.add_lines([f"k.e 5 {now}", f"k.f 6 {now}\n".encode()]) == 2
    assert carbon.add_lines(f"k.g {i} {now - 60 * i}" for i in range(10)) == 10
    assert carbon.add_lines([]) == 0
    assert carbon.add_lines("") == 0
    carbon.flush()
    assert carbon.fetch("k.f", now - 60, now)[1][-1] == 6.0  # until=None could pass a minute


def test_large_iterable_is_chunked(carbon, monkeypatch):
    monkeypatch.setattr(carbonlite, "_CHUNK", 256)
    calls = []
    real = carbon._add_buffer

    def spy(buf):
        calls.append(len(buf))
        return real(buf)

    monkeypatch.setattr(carbon, "_add_buffer", spy)
    now = int(time.time())
    assert carbon.add_lines(f"chunk.m{i % 7} {i} {now}" for i in range(1000)) == 1000
    assert len(calls) > 10 and max(calls) < 256 + 64
    assert carbon.stats()["metrics_received"] == 1000
