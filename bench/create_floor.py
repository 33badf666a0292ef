#!/usr/bin/env python3
"""The kernel's floor for W1's file layout: W1's 10,100 directories (bench/host{H}/cpu{C}) and
10,000 sparse files (open O_EXCL, a 40-byte pwrite, ftruncate to the W1 file size, close),
made by P processes into DIR, which must not exist yet. No whisper, no server: what any
carbon must at least spend creating W1's files on this disk.

    python3 bench/create_floor.py DIR [P]       (P = 1 or more processes; default 1)

Use a fresh DIR on a quiet disk: creating right after deleting many inodes is several times
slower on a journal-less ext4 (README, Performance, "Reproducing W1"). Delete DIR afterwards.
"""
import os
import sys
import time
from multiprocessing import Process

W1_FILE_SIZE = 622120  # 10s:1d,1m:30d


def work(root, k, procs):
    for h in range(k, 100, procs):
        for c in range(100):
            d = f"{root}/bench/host{h}/cpu{c}"
            os.makedirs(d, exist_ok=True)
            fd = os.open(d + "/value.wsp", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            os.pwrite(fd, b"x" * 40, 0)
            os.ftruncate(fd, W1_FILE_SIZE)
            os.close(fd)


def main():
    root = sys.argv[1]
    procs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    os.makedirs(root + "/bench")
    t = time.time()
    ps = [Process(target=work, args=(root, k, procs)) for k in range(procs)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    print("%d process(es): %.3f s for 10,100 mkdirs + 10,000 creates" % (procs, time.time() - t))


if __name__ == "__main__":
    main()
