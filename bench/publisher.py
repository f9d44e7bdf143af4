"""The publisher process: numbered messages POSTed over keep-alive connections, paced or not."""
import http.client
import itertools
import json
import threading
import time

from procs import CLIENT_CPU, KEY, SERVERS, pin

PUBLISHERS = 4  # keep-alive connections when one cannot keep up: throughput mode, steps


def publisher_main(pipe, port, m, rate, deadline, connections, server="rulecast",
                   base=0):
    """POSTs ``m`` messages, numbered n = base…base+m-1 (a phase's own range), on
    ``connections`` keep-alive connections (one thread each, taking the next n as soon as its previous publish was answered),
    paced at ``rate``/s overall, or as fast as the server answers when ``rate`` is None;
    reports what it did, with its own busy share (near 100 %: the publisher, not the
    server, set the pace)."""
    pin(CLIENT_CPU)  # CPU 0 stays the server's alone (with one worker)
    headers = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
    numbers, t0, cpu0, done = itertools.count(base), time.time(), time.process_time(), []
    path, body = SERVERS[server]["publish"], SERVERS[server]["body"]

    def publish():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        ok, errors, first, last = 0, [], None, None
        while True:  # bounded: every thread stops once n reaches base + m
            i = next(numbers)
            if i >= base + m:
                break
            if rate:  # when behind, at once: pub/s shows it
                time.sleep(max(0.0, t0 + (i - base) / rate - time.time()))
            t = time.time()
            if t > deadline:
                break
            first = first or t
            try:
                conn.request("POST", path, json.dumps(body(t, i)), headers)
                r = conn.getresponse()
                r.read()
                ok += r.status == 202
                errors += [] if r.status == 202 else ["publish: HTTP %d" % r.status]
            except (OSError, http.client.HTTPException) as exc:
                errors.append("publish: %r" % exc)
                conn.close()  # http.client reconnects on the next request
            last = time.time()
        conn.close()
        done.append(dict(ok=ok, errors=errors, first=first, last=last))

    threads = [threading.Thread(target=publish, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.1, deadline + 12 - time.time()))  # a request times out in 10 s
    stuck = len(threads) - len(done)
    done = list(done)
    firsts = [d["first"] for d in done if d["first"]] or [t0]
    lasts = [d["last"] for d in done if d["last"]] or [time.time()]
    pipe.send(dict(ok=sum(d["ok"] for d in done),
                   errors=["%d publisher connection(s) still stuck at the deadline" % stuck]
                   * bool(stuck) + [e for d in done for e in d["errors"]],
                   first=min(firsts), last=max(lasts),
                   busy=(time.process_time() - cpu0) / max(time.time() - t0, 1e-9)))
