"""Real Python pickle senders for tests/receivers.rs (runs under Python 2.7 and 3).

recv_send.py pickle HOST PORT PREFIX NOW   one frame per protocol this Python has, each
    `[(name, (t, v)), ...]` as carbon-relay builds it, with names as str, bytes (py3) or
    unicode (py2), several (t, v) per entry, ints, longs and floats, and one bad entry in the
    middle. Prints one line per point expected: `name timestamp value`, then `bad N`.
recv_send.py idle HOST PORT N   opens N connections, prints `ready`, waits for stdin EOF.
"""
import pickle
import socket
import struct
import sys


def frame(payload):
    return struct.pack("!L", len(payload)) + payload


def pickle_mode(host, port, prefix, now):
    py = sys.version_info[0]
    s = socket.create_connection((host, port))
    expected = []
    bad = 0
    for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):
        entries = []
        for i in range(5):
            name = "%s.py%d.p%d.m%d" % (prefix, py, proto, i)
            if i == 1:
                # bytes in Python 3, a plain str (bytes) in Python 2
                key = name.encode("ascii")
            elif i == 2 and py == 2:
                key = name.decode("ascii")  # unicode
            else:
                key = name
            points = [(now - 60, i + 0.5), (now, i * 10)]
            if i == 3:
                # a value too large for 32 bits (a Python 2 long), and a float timestamp
                points = [(float(now), 2 ** 40 + i)]
            entries.append((key,) + tuple(points))
            for t, v in points:
                expected.append("%s %d %r" % (name, int(t), float(v)))
            if i == 2:
                # bad entries in the middle: the rest of the frame must still land
                entries.append(("%s.bad" % prefix, ("not-a-time", 1)))
                entries.append(None)
                bad += 2
        s.sendall(frame(pickle.dumps(entries, protocol=proto)))
    s.close()
    for line in expected:
        print(line)
    print("bad %d" % bad)


def idle_mode(host, port, n):
    conns = []
    for i in range(n):
        conns.append(socket.create_connection((host, port)))
        if i % 1000 == 999:
            sys.stderr.write("recv_send.py idle: %d connected\n" % (i + 1))
    sys.stdout.write("ready %d\n" % len(conns))
    sys.stdout.flush()
    sys.stdin.read()
    for c in conns:
        c.close()


def main():
    mode = sys.argv[1]
    host, port = sys.argv[2], int(sys.argv[3])
    if mode == "pickle":
        pickle_mode(host, port, sys.argv[4], int(sys.argv[5]))
    elif mode == "idle":
        idle_mode(host, port, int(sys.argv[4]))
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
