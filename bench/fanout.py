"""Fan-out benchmark: N raw-socket subscribers on one topic, a paced publisher, server cost."""
import argparse
import base64
import hashlib
import http.client
import json
import multiprocessing as mp
import os
import re
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY, CHANNEL, SERVER_CPU, CLIENT_CPU = "bench-key", "topic:bench", 0, 1
RUN_SECONDS = 60  # overall deadline of one run: start, connect, publish, drain
IDLE_DRAIN = 5.0  # once all is published, give up on the rest after this long without a delivery
IN_FLIGHT = 64  # gevent listens with backlog 128; overflowing it costs a 1 s SYN retry per socket
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# The server encodes compactly in a fixed key order, so t and n are found without json.loads,
# which would otherwise be most of the client's cost per delivery.
MESSAGE, T_N = b'{"type":"message"', re.compile(rb'"data":\{"t":([-0-9.eE+]+),"n":(\d+)\}')
PROBLEM = re.compile(r"ERROR|CRITICAL|Traceback|WARNING")


def raise_nofile():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass  # an unlimited hard limit is refused as a soft one: keep the soft limit


def pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass  # a one-CPU machine: measure anyway; the busy shares show the contention


def proc_stats(pid):
    """(utime + stime in seconds, VmRSS in KiB) of process ``pid``."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()  # fields 14, 15 after a name with spaces
    with open("/proc/%d/status" % pid) as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), rss


def start_server(tmp):
    """A `rulecast serve` on a free port, pinned to SERVER_CPU; returns (Popen, port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(os.path.join(tmp, "rulecast.yaml"), "w") as f:
        json.dump({"secret": "bench-secret-0123456789", "api_keys": [KEY], "rules": [],
                   "public_topics": ["bench*"],
                   "limits": {"max_connections": 50000, "send_queue": 10000}}, f)  # JSON is YAML
    cmd = [sys.executable, "-m", "rulecast", "serve", "--config", "rulecast.yaml",
           "--listen", "127.0.0.1:%d" % port, "--workers", "1"]
    if shutil.which("taskset"):  # taskset execs, so the PID we hold is the server's own
        cmd = ["taskset", "-c", str(SERVER_CPU)] + cmd
    with open(os.path.join(tmp, "server.log"), "wb") as log:
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=ROOT), preexec_fn=raise_nofile)
    for _ in range(300):  # 15 s; it listens only once fully set up
        time.sleep(0.05)
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                break
    stop_server(proc)
    with open(os.path.join(tmp, "server.log")) as f:
        raise RuntimeError("server did not start:\n" + f.read())


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Sub:
    """One subscriber socket. state: 0 TCP connecting, 1 HTTP upgrade, 2 WebSocket, 3 ready."""
    __slots__ = ("sock", "buf", "state", "accept", "seen", "last_n")

    def __init__(self, port):
        self.sock, self.buf, self.state, self.seen, self.last_n = socket.socket(), b"", 0, 0, -1
        self.sock.setblocking(False)
        self.sock.connect_ex(("127.0.0.1", port))  # EINPROGRESS; EPOLLOUT tells when done


def client_main(pipe, port, n, deadline):
    """The load client: N subscribers on one epoll; reports through ``pipe``."""
    pin(CLIENT_CPU)
    ep, subs, lat, pfd = select.epoll(), {}, [], pipe.fileno()
    ep.register(pfd, select.EPOLLIN)  # the orchestrator's word wakes the same loop
    st = dict(ready=0, failed=0, received=0, dup=0, closed=0, errors=0, last=0.0, why="")
    # A masked client frame: RFC 6455 requires it, and the server closes on unmasked ones.
    payload, mask = json.dumps({"type": "subscribe", "channel": CHANNEL}).encode(), os.urandom(4)
    subscribe = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))
    expect = []

    def drop(fd, s, why):
        st["failed" if s.state < 3 else "closed"] += 1
        st["why"] = st["why"] or why
        ep.unregister(fd)
        s.sock.close()
        del subs[fd]

    def frames(fd, s, buf, now):
        pos, size = 0, len(buf)
        while size - pos >= 2:
            op, ln, hl = buf[pos] & 15, buf[pos + 1] & 127, 2  # server frames are unmasked
            if ln >= 126:
                hl = 4 if ln == 126 else 10
                if size - pos < hl:
                    break
                ln = int.from_bytes(buf[pos + 2:pos + hl], "big")
            if pos + hl + ln > size:
                break
            start, pos = pos + hl, pos + hl + ln
            m = T_N.search(buf, start, pos) if buf.startswith(MESSAGE, start) else None
            if m and int(m.group(2)) > s.last_n:
                s.last_n, st["received"], st["last"] = int(m.group(2)), st["received"] + 1, now
                lat.append(now - float(m.group(1)))
            elif m:  # the hub promises each connection increasing ids
                st["dup"] += 1
            elif op == 8:
                return drop(fd, s, "server closed with %r" % buf[start:pos][:80])
            elif op == 1:
                kind = json.loads(buf[start:pos]).get("type")
                s.seen |= {"welcome": 1, "subscribed": 2}.get(kind, 0)
                st["errors"] += kind == "error"
                if s.state == 2 and s.seen == 3:
                    s.state, st["ready"] = 3, st["ready"] + 1
        s.buf = buf[pos:]

    def pump(timeout):
        for fd, _ in ep.poll(timeout, 1000):
            s = subs.get(fd)
            if fd == pfd:
                expect.append(pipe.recv())
            elif s and s.state == 0:  # connected or refused: send the upgrade request
                err = s.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    drop(fd, s, os.strerror(err))
                    continue
                key = base64.b64encode(os.urandom(16))
                s.accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
                s.sock.send(b"GET /rulecast/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: "
                            b"websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                            b"Sec-WebSocket-Version: 13\r\n\r\n" % (port, key))
                ep.modify(fd, select.EPOLLIN)
                s.state = 1
            elif s:
                why = "server closed the TCP connection"
                try:
                    data = s.sock.recv(65536)  # more is malloc'd with mmap: page faults per read
                except OSError as exc:
                    data, why = b"", str(exc)
                buf, end = s.buf + data, 0
                if s.state == 1 and data:
                    end = buf.find(b"\r\n\r\n") + 4
                    if end < 4:
                        s.buf = buf
                        continue
                    why = buf[:end].split(b"\r\n")[0].decode("latin-1")
                    if buf.startswith(b"HTTP/1.1 101") and s.accept in buf[:end]:
                        s.sock.send(subscribe)
                        s.state = 2
                if s.state < 2 or not data:
                    drop(fd, s, why)
                    continue
                frames(fd, s, buf[end:] if end else buf, time.time())

    opened, t0 = 0, time.time()
    while st["ready"] + st["failed"] < n and time.time() < deadline:
        while opened < min(n, st["ready"] + st["failed"] + IN_FLIGHT):
            s = Sub(port)
            subs[s.sock.fileno()] = s
            ep.register(s.sock.fileno(), select.EPOLLOUT)
            opened += 1
        pump(0.05)
    pipe.send((time.time() - t0, st["ready"], st["why"]))
    if pipe.recv() != "go":  # the orchestrator has read the server's RSS and CPU
        return
    cpu0, wall0 = time.process_time(), time.time()
    while time.time() < deadline and subs:
        pump(0.1)
        if expect and (st["received"] >= expect[0] or
                       time.time() - max(st["last"], wall0) > IDLE_DRAIN):
            break
    busy = (time.process_time() - cpu0) / (time.time() - wall0)
    pipe.send("done")  # before the sums below, so the server's CPU window ends here
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0.0
    pipe.send(dict(st, busy=busy, p50=q(0.50), p99=q(0.99), max=q(1.0)))


def publisher_main(pipe, port, m, rate, deadline):
    """POSTs ``m`` messages at ``rate``/s on one keep-alive connection; reports what it did."""
    pin(CLIENT_CPU)  # CPU 0 stays the server's alone
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
    ok, errors, first, t0 = 0, [], None, time.time()
    for i in range(m):
        time.sleep(max(0.0, t0 + i / rate - time.time()))  # when behind, at once: pub/s shows it
        t = time.time()
        if t > deadline:
            break
        first = first or t
        try:
            conn.request("POST", "/rulecast/api/publish",
                         json.dumps({"channel": CHANNEL, "data": {"t": t, "n": i}}), headers)
            r = conn.getresponse()
            r.read()
            ok += r.status == 202
            errors += [] if r.status == 202 else ["publish: HTTP %d" % r.status]
        except (OSError, http.client.HTTPException) as exc:
            errors.append("publish: %r" % exc)
            conn.close()  # http.client reconnects on the next request
    pipe.send(dict(ok=ok, errors=errors, first=first or t0, last=time.time()))


def wait_for(pipe, deadline, what):
    if not pipe.poll(max(0.0, deadline - time.time())):
        raise TimeoutError("no %s before the deadline" % what)
    return pipe.recv()


def run_once(n, args):
    deadline, ctx = time.time() + RUN_SECONDS, mp.get_context("fork")
    tmp, proc, kids = tempfile.mkdtemp(prefix="rulecast-bench-"), None, []

    def spawn(target, *a):
        mine, theirs = ctx.Pipe()
        kids.append(ctx.Process(target=target, args=(theirs, port) + a, daemon=True))
        kids[-1].start()
        return mine

    try:
        proc, port = start_server(tmp)
        _, rss0 = proc_stats(proc.pid)
        client = spawn(client_main, n, deadline)
        connect_s, ready, why = wait_for(client, deadline + 5, "connect report")
        cpu0, rss1 = proc_stats(proc.pid)
        client.send("go" if ready else "stop")
        if not ready:
            raise RuntimeError("no subscriber got through: %s" % why)
        sent = wait_for(spawn(publisher_main, args.messages, args.rate, deadline),
                        deadline + 15, "publisher report")
        client.send(ready * sent["ok"])
        wait_for(client, deadline + 5, "end of deliveries")
        cpu1, wall = proc_stats(proc.pid)[0], time.time() - sent["first"]
        got = wait_for(client, deadline + 30, "client figures")
        if sent["ok"] + len(sent["errors"]) < args.messages:
            sent["errors"].insert(0, "the %d s deadline stopped the publisher after %d messages"
                                  % (RUN_SECONDS, sent["ok"] + len(sent["errors"])))
    finally:
        for kid in kids:
            kid.terminate()
            kid.join(5)
        if proc:
            stop_server(proc)
            with open(os.path.join(tmp, "server.log"), errors="replace") as f:
                problems = [line.rstrip() for line in f if PROBLEM.search(line)]
        shutil.rmtree(tmp, ignore_errors=True)
    return dict(subscribers=n, connect_s=connect_s, failed_connects=n - ready,
                publish_rate=(sent["ok"] - 1) / max(sent["last"] - sent["first"], 1e-9),
                publish_errors=len(sent["errors"]), deliveries=got["received"],
                lost=n * args.messages - got["received"], duplicates=got["dup"],
                closed_by_server=got["closed"], error_frames=got["errors"],
                deliveries_per_s=got["received"] / max(got["last"] - sent["first"], 1e-9),
                p50_ms=got["p50"], p99_ms=got["p99"], max_ms=got["max"],
                cpu_us_per_delivery=(cpu1 - cpu0) * 1e6 / max(got["received"], 1),
                server_busy=(cpu1 - cpu0) / wall, rss_kib_per_conn=(rss1 - rss0) / n,
                client_busy=got["busy"], server_log_problems=len(problems),
                notes=sorted(({why or got["why"]} | set(sent["errors"][:1]) | set(problems[:3]))
                             - {""}))


COLUMNS = [("subs", "subscribers", "%d"), ("connect s", "connect_s", "%.2f"),
           ("pub/s", "publish_rate", "%.1f"), ("deliv/s", "deliveries_per_s", "%.0f"),
           ("p50 ms", "p50_ms", "%.1f"), ("p99 ms", "p99_ms", "%.1f"), ("max ms", "max_ms", "%.1f"),
           ("lost", "lost", "%.0f"), ("srv us/deliv", "cpu_us_per_delivery", "%.1f"),
           ("srv busy", "server_busy", "%.0f%%"), ("srv KiB/conn", "rss_kib_per_conn", "%.1f"),
           ("client busy", "client_busy", "%.0f%%")]


def table(rows):
    cells = [[h for h, _, _ in COLUMNS]] + [
        [f % (r[k] * 100 if f.endswith("%%") else r[k]) for _, k, f in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--subscribers", default="100,1000", help="comma-separated counts N")
    p.add_argument("--messages", type=int, default=200, help="messages published per run")
    p.add_argument("--rate", type=float, default=50, help="messages published per second")
    p.add_argument("--runs", type=int, default=3, help="runs per N; figures are their medians")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.subscribers.split(",")]
    raise_nofile()  # the forked load client inherits it
    if max(counts) + 100 > resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
        p.error("%d subscribers need more file descriptors than RLIMIT_NOFILE" % max(counts))
    results, runs = [], []
    for n in counts:
        mine = []
        for i in range(args.runs):
            print("N=%d run %d/%d" % (n, i + 1, args.runs), file=sys.stderr, flush=True)
            mine.append(run_once(n, args))
        runs += mine
        results.append({k: statistics.median(r[k] for r in mine) for k in mine[0] if k != "notes"})
        results[-1]["notes"] = sorted({note for r in mine for note in r["notes"]})
    if args.json:
        print(json.dumps({"messages": args.messages, "rate": args.rate, "runs": args.runs,
                          "results": results, "all_runs": runs}, indent=2))
        return
    print("rulecast fan-out: %d messages at %g/s to %s, median of %d run(s)"
          % (args.messages, args.rate, CHANNEL, args.runs))
    print(table(results))
    for r in results:
        for note in r["notes"]:
            print("N=%d: %s" % (r["subscribers"], note))


if __name__ == "__main__":
    main()
