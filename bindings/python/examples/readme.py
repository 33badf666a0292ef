import time
import carbonlite

with carbonlite.Carbon("./data", options="[whisper]\nworkers = 2\n") as c:
    now = int(time.time())
    c.add("app.requests", 42, now - 60)             # ts None = now
    c.add_lines(f"app.latency 0.25 {now}\napp.errors 3 {now}\n")
    c.flush()                                       # every point is in its .wsp file
    (start, end, step), values = c.fetch("app.requests", now - 300, now)  # until None = now
    print("app.requests", values)                   # None marks a gap, as whisper.fetch
    print(c.stats()["committed_points"], "points written")
